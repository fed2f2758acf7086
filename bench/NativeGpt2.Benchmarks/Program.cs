using BenchmarkDotNet.Running;
using NativeGpt2;
using NativeGpt2.Benchmarks;
using NativeGpt2.Verification;

if (args.Contains("--check"))
{
    // Before timing anything: the two engines compute the same logits.
    using var model = Gpt2CausalLM.Load("synthetic:gpt2");
    using var onnx = new OnnxPeer(Repository.ReferenceData, Environment.ProcessorCount);
    var reference = ReferenceFile.Load(Path.Combine(Repository.ReferenceData, "refs", "synthetic-124M.safetensors"));
    var ids = reference["input_ids"].AsInt32();
    var ours = model.Forward(TokenBatch.FromIds(ids)).Logits.Data;
    var theirs = onnx.Forward(ids.Select(i => (long)i).ToArray());
    // The timed paths write into kept buffers: they must give the same logits as the plain calls.
    var oursKept = model.ForwardInto(TokenBatch.FromIds(ids), FloatTensor.Zeros(1, ids.Length, model.Config.VocabSize)).Logits.Data;
    var theirsKept = new float[theirs.Length];
    onnx.ForwardInto(ids.Select(i => (long)i).ToArray(), theirsKept);
    Console.WriteLine($"kept-buffer passes equal to the plain ones: NativeGpt2 {oursKept.AsSpan().SequenceEqual(ours)}, ONNX Runtime {theirsKept.AsSpan().SequenceEqual(theirs)}");
    var positions = reference["logit_positions"].AsInt32();
    var expected = reference["logits_at_positions"].AsFloat32();
    const int V = 50257;
    double oursVsOnnx = 0, oursVsRef = 0, onnxVsRef = 0;
    for (var i = 0; i < ours.Length; i++) oursVsOnnx = Math.Max(oursVsOnnx, Math.Abs(ours[i] - theirs[i]));
    for (var p = 0; p < positions.Length; p++)
    for (var v = 0; v < V; v++)
    {
        var e = expected[p * V + v];
        oursVsRef = Math.Max(oursVsRef, Math.Abs(ours[positions[p] * V + v] - e));
        onnxVsRef = Math.Max(onnxVsRef, Math.Abs(theirs[positions[p] * V + v] - e));
    }
    Console.WriteLine($"max |NativeGpt2 - ONNX Runtime| over all {ids.Length} x {V} logits: {oursVsOnnx:E2}");
    Console.WriteLine($"max |NativeGpt2 - float64 reference| at the reference positions: {oursVsRef:E2}");
    Console.WriteLine($"max |ONNX Runtime - float64 reference| at the reference positions: {onnxVsRef:E2}");
    return;
}

if (args.Contains("--plot"))
{
    // --plot RESULTS.jsonl OUT.svg: the chart of a --compare run.
    var rest = args.SkipWhile(a => a != "--plot").Skip(1).ToArray();
    if (rest.Length < 2) throw new ArgumentException("usage: --plot RESULTS.jsonl OUT.svg");
    File.WriteAllText(rest[1], SvgChart.Draw(File.ReadLines(rest[0]), "GPT-2 124M forward pass on the CPU, float32, all cores"));
    return;
}

if (args.Contains("--peak"))
{
    // The float32 multiply-add peak at each width, one thread and every core, as JSON lines.
    FmaPeak.Run(Console.Out);
    return;
}

if (args.Contains("--compare"))
{
    // A quick side-by-side in one process: median of several runs per engine and length, as JSON lines.
    var lengths = args.SkipWhile(a => a != "--compare").Skip(1).TakeWhile(a => !a.StartsWith("--")).Select(int.Parse).DefaultIfEmpty(128).ToArray();
    SideBySide.Run(lengths, Console.Out);
    return;
}

// Job settings come from the command line (e.g. --warmupCount 3 --iterationCount 10).
BenchmarkSwitcher.FromAssembly(typeof(ForwardBenchmarks).Assembly).Run(args);
