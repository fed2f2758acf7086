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
        // One engine at a time, the other not yet loaded or already disposed: ONNX Runtime's idle worker
        // threads spin for a while after each run and would otherwise take cores from NativeGpt2.
        var ours = new Dictionary<int, double>();
        using (var model = Gpt2CausalLM.Load("synthetic:gpt2"))
        {
            foreach (var T in lengths)
            {
                var ids = Input(T);
                ours[T] = Median(() => model.Forward(TokenBatch.FromIds(ids)));
            }
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var theirs = new Dictionary<int, double>();
        using (var onnx = new OnnxPeer(Repository.ReferenceData, threads))
        {
            foreach (var T in lengths)
            {
                var ids = Input(T).Select(i => (long)i).ToArray();
                theirs[T] = Median(() => onnx.Forward(ids));
            }
        }
        foreach (var T in lengths)
        {
            foreach (var (engine, seconds) in new[] { ("NativeGpt2", ours[T]), ("ONNX Runtime 1.31.1", theirs[T]) })
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

    /// <summary>The same pseudo-random token ids for both engines.</summary>
    private static int[] Input(int T)
    {
        var random = new Random(1);
        return Enumerable.Range(0, T).Select(_ => random.Next(50257)).ToArray();
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
