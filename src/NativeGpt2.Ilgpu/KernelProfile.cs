using System.Diagnostics;
using System.Globalization;
using ILGPU;
using ILGPU.Runtime;

namespace NativeGpt2.Ilgpu;

/// <summary>
/// Where a GPU pass spends its time, kernel by kernel: with <c>NATIVEGPT2_ILGPU_PROFILE=1</c> every launch waits for
/// its kernel to finish and adds the time to that kernel's total, and the table is written to stderr when the
/// backend is disposed. Waiting after every launch removes the overlap of launching and running, so totals are
/// larger than a normal run's; the proportions are what it is for.
/// </summary>
internal sealed class KernelProfile(Accelerator accelerator)
{
    /// <summary>The environment variable that turns profiling on (1, true, on or yes).</summary>
    public const string Variable = "NATIVEGPT2_ILGPU_PROFILE";

    private readonly Dictionary<string, (long Calls, long Ticks)> _kernels = [];

    /// <summary>Whether <see cref="Variable"/> asks for a profile.</summary>
    public static bool Requested => Environment.GetEnvironmentVariable(Variable)?.Trim().ToLowerInvariant() is "1" or "true" or "on" or "yes";

    public Action<KernelConfig, T1, T2, T3, T4> Timed<T1, T2, T3, T4>(string name, Action<KernelConfig, T1, T2, T3, T4> kernel) =>
        (config, a, b, c, d) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5> Timed<T1, T2, T3, T4, T5>(string name, Action<KernelConfig, T1, T2, T3, T4, T5> kernel) =>
        (config, a, b, c, d, e) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d, e); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6> Timed<T1, T2, T3, T4, T5, T6>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6> kernel) =>
        (config, a, b, c, d, e, f) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d, e, f); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> Timed<T1, T2, T3, T4, T5, T6, T7>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> kernel) =>
        (config, a, b, c, d, e, f, g) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d, e, f, g); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Timed<T1, T2, T3, T4, T5, T6, T7, T8>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> kernel) =>
        (config, a, b, c, d, e, f, g, h) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d, e, f, g, h); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Timed<T1, T2, T3, T4, T5, T6, T7, T8, T9>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel) =>
        (config, a, b, c, d, e, f, g, h, i) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d, e, f, g, h, i); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> Timed<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> kernel) =>
        (config, a, b, c, d, e, f, g, h, i, j) => { var start = Stopwatch.GetTimestamp(); kernel(config, a, b, c, d, e, f, g, h, i, j); Done(name, start); };

    private void Done(string name, long start)
    {
        accelerator.Synchronize();
        var ticks = Stopwatch.GetTimestamp() - start;
        lock (_kernels)
        {
            var (calls, total) = _kernels.GetValueOrDefault(name);
            _kernels[name] = (calls + 1, total + ticks);
        }
    }

    /// <summary>One line per kernel, the most time first: calls, total milliseconds, share, microseconds per call.</summary>
    public void Report(TextWriter writer)
    {
        lock (_kernels)
        {
            var all = _kernels.Values.Sum(k => k.Ticks);
            if (all == 0) return;
            var n = CultureInfo.InvariantCulture;
            writer.WriteLine("kernel                 calls     total ms   share   µs/call");
            foreach (var (name, (calls, ticks)) in _kernels.OrderByDescending(k => k.Value.Ticks))
            {
                var ms = ticks * 1000.0 / Stopwatch.Frequency;
                writer.WriteLine(string.Create(n, $"{name,-20} {calls,7} {ms,12:F1} {100.0 * ticks / all,6:F1}% {1000 * ms / calls,9:F1}"));
            }
        }
    }
}
