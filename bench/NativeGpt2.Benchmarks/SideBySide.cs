using System.Diagnostics;
using System.Text.Json;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Operators;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// NativeGpt2 (at each SIMD width the machine has) and ONNX Runtime on the same 124M graph, weights,
/// input and thread count, timed in one process: the median of several forward passes (logits at every
/// position) per sequence length, one JSON line per engine, width and length, for docs/performance.md
/// and its chart (<see cref="SvgChart"/>). Each engine writes its logits into a buffer kept across the passes
/// (<see cref="Gpt2CausalLM.ForwardInto"/>, ONNX Runtime's I/O binding), so neither pays for fresh memory each pass.
/// </summary>
public static class SideBySide
{
    private const int Vocabulary = 50257;

    public static void Run(int[] lengths, TextWriter output)
    {
        var threads = Environment.ProcessorCount;
        var machine = MachineInfo.Describe();
        var lines = new List<Dictionary<string, object>>();
        // One engine at a time, the other not yet loaded or already disposed: ONNX Runtime's idle worker
        // threads spin for a while after each run and would otherwise take cores from NativeGpt2.
        foreach (var width in MachineInfo.Widths())
        {
            using (var model = Gpt2CausalLM.Load("synthetic:gpt2", new ModelLoadOptions { BackendInstance = new CpuBackend(threads, width) }))
            {
                foreach (var T in lengths)
                {
                    var ids = Input(T);
                    var logits = new FloatTensor(new float[T * Vocabulary], 1, T, Vocabulary);
                    lines.Add(Line("NativeGpt2", width.ToString(), T, Median(() => model.ForwardInto(TokenBatch.FromIds(ids), logits))));
                }
            }
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        using (var onnx = new OnnxPeer(Repository.ReferenceData, threads))
        {
            foreach (var T in lengths)
            {
                var ids = Input(T).Select(i => (long)i).ToArray();
                var logits = new float[T * Vocabulary];
                lines.Add(Line("ONNX Runtime 1.31.1", "MLAS", T, Median(() => onnx.ForwardInto(ids, logits))));
            }
        }
        foreach (var line in lines)
        {
            line["machine"] = machine;
            line["threads"] = threads;
            output.WriteLine(JsonSerializer.Serialize(line));
        }
    }

    private static Dictionary<string, object> Line(string engine, string kernels, int T, (double Median, double Best) seconds) => new()
    {
        ["engine"] = engine,
        ["kernels"] = kernels,
        ["T"] = T,
        ["ms"] = Math.Round(seconds.Median * 1000, 1),
        ["best_ms"] = Math.Round(seconds.Best * 1000, 1),
        ["tokens_per_s"] = Math.Round(T / seconds.Median, 1),
    };

    /// <summary>The same pseudo-random token ids for both engines.</summary>
    private static int[] Input(int T)
    {
        var random = new Random(1);
        return Enumerable.Range(0, T).Select(_ => random.Next(Vocabulary)).ToArray();
    }

    /// <summary>
    /// The median and the fastest of at least five runs (up to 30 within 5 s), after a full collection and one untimed
    /// run: the logits of the lengths before (up to 200 MB a run at T = 1,024) are collected before the clock starts,
    /// not in the middle of this length's runs.
    /// </summary>
    private static (double Median, double Best) Median(Action run)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        run();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < 5 || (total.Elapsed.TotalSeconds < 5 && times.Count < 30))
        {
            var clock = Stopwatch.StartNew();
            run();
            times.Add(clock.Elapsed.TotalSeconds);
        }
        times.Sort();
        return (times[times.Count / 2], times[0]);
    }
}
