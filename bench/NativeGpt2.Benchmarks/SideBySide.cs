using System.Diagnostics;
using System.Text.Json;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// NativeGpt2 and ONNX Runtime on the same 124M graph, weights, input and thread count, timed in one
/// process: the median of several forward passes (logits at every position) per sequence length, one
/// JSON line per engine and length, for docs/performance.md and its chart (bench/plot.py).
/// </summary>
public static class SideBySide
{
    public static void Run(int[] lengths, TextWriter output)
    {
        var threads = Environment.ProcessorCount;
        using var model = Gpt2CausalLM.Load("synthetic:gpt2");
        using var onnx = new OnnxPeer(Repository.ReferenceData, threads);
        foreach (var T in lengths)
        {
            var random = new Random(1);
            var ids = Enumerable.Range(0, T).Select(_ => random.Next(50257)).ToArray();
            var ids64 = ids.Select(i => (long)i).ToArray();
            var ours = Median(() => model.Forward(TokenBatch.FromIds(ids)));
            var theirs = Median(() => onnx.Forward(ids64));
            foreach (var (engine, seconds) in new[] { ("NativeGpt2", ours), ("ONNX Runtime 1.31.1", theirs) })
            {
                output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["engine"] = engine,
                    ["T"] = T,
                    ["threads"] = threads,
                    ["ms"] = Math.Round(seconds * 1000, 1),
                    ["tokens_per_s"] = Math.Round(T / seconds, 1),
                }));
            }
        }
    }

    private static double Median(Action run)
    {
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
        return times[times.Count / 2];
    }
}
