using System.Diagnostics;
using System.Globalization;
using ILGPU;
using ILGPU.Runtime;

namespace NativeGpt2.Ilgpu;

/// <summary>
/// Where a GPU pass spends its time, kernel by kernel, written to stderr when the backend is disposed.
/// <c>NATIVEGPT2_ILGPU_PROFILE=1</c> (or <c>device</c>) brackets every launch with two stream markers (CUDA events) and
/// adds the device time between them to that kernel's total: launches are not waited for, so the pass runs as it
/// normally does. <c>NATIVEGPT2_ILGPU_PROFILE=wait</c> waits for every kernel instead and times launch plus run on the
/// host: that removes the overlap of launching and running, so its totals are larger, but it shows what a launch costs.
/// </summary>
/// <remarks>
/// A marker records when the stream reaches it: when the host launches more slowly than the device runs, the device
/// waits for the next launch between the two markers, and that wait counts too. A kernel's device time is then at most
/// what the table says.
/// </remarks>
internal sealed class KernelProfile
{
    /// <summary>The environment variable that turns profiling on.</summary>
    public const string Variable = "NATIVEGPT2_ILGPU_PROFILE";

    /// <summary>How kernels are timed.</summary>
    public enum Mode
    {
        /// <summary>Not at all.</summary>
        Off,

        /// <summary>Device time between stream markers around each launch (1, true, on, yes, device).</summary>
        Device,

        /// <summary>Each launch waited for and timed on the host (wait).</summary>
        Wait,
    }

    /// <summary>What <see cref="Variable"/> asks for.</summary>
    public static Mode Requested => RequestedMode(Environment.GetEnvironmentVariable(Variable));

    /// <summary>The mode a value of <see cref="Variable"/> asks for; anything unrecognized leaves profiling off.</summary>
    public static Mode RequestedMode(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        "1" or "true" or "on" or "yes" or "device" => Mode.Device,
        "wait" => Mode.Wait,
        _ => Mode.Off,
    };

    /// <summary>Markers measured at a time: each holds a device event until it is read.</summary>
    private const int MaxPending = 2048;

    private readonly Accelerator _accelerator;
    private readonly Mode _mode;
    private readonly Dictionary<string, (long Calls, TimeSpan Time)> _kernels = [];
    private readonly List<(string Name, ProfilingMarker Start, ProfilingMarker End)> _pending = [];

    /// <param name="accelerator">The accelerator; for <see cref="Mode.Device"/> its context must have been built with profiling on.</param>
    /// <param name="mode">How to time; not <see cref="Mode.Off"/>.</param>
    public KernelProfile(Accelerator accelerator, Mode mode)
    {
        ArgumentOutOfRangeException.ThrowIfEqual(mode, Mode.Off);
        _accelerator = accelerator;
        _mode = mode;
    }

    public Action<KernelConfig, T1, T2, T3, T4> Timed<T1, T2, T3, T4>(string name, Action<KernelConfig, T1, T2, T3, T4> kernel) =>
        (config, a, b, c, d) => { var start = Start(); kernel(config, a, b, c, d); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5> Timed<T1, T2, T3, T4, T5>(string name, Action<KernelConfig, T1, T2, T3, T4, T5> kernel) =>
        (config, a, b, c, d, e) => { var start = Start(); kernel(config, a, b, c, d, e); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6> Timed<T1, T2, T3, T4, T5, T6>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6> kernel) =>
        (config, a, b, c, d, e, f) => { var start = Start(); kernel(config, a, b, c, d, e, f); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> Timed<T1, T2, T3, T4, T5, T6, T7>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> kernel) =>
        (config, a, b, c, d, e, f, g) => { var start = Start(); kernel(config, a, b, c, d, e, f, g); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Timed<T1, T2, T3, T4, T5, T6, T7, T8>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> kernel) =>
        (config, a, b, c, d, e, f, g, h) => { var start = Start(); kernel(config, a, b, c, d, e, f, g, h); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Timed<T1, T2, T3, T4, T5, T6, T7, T8, T9>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel) =>
        (config, a, b, c, d, e, f, g, h, i) => { var start = Start(); kernel(config, a, b, c, d, e, f, g, h, i); Done(name, start); };

    public Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> Timed<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(string name, Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> kernel) =>
        (config, a, b, c, d, e, f, g, h, i, j) => { var start = Start(); kernel(config, a, b, c, d, e, f, g, h, i, j); Done(name, start); };

    private (long Ticks, ProfilingMarker? Marker) Start() =>
        _mode == Mode.Device ? (0, _accelerator.AddProfilingMarker()) : (Stopwatch.GetTimestamp(), null);

    private void Done(string name, (long Ticks, ProfilingMarker? Marker) start)
    {
        lock (_kernels)
        {
            if (start.Marker is { } marker)
            {
                _pending.Add((name, marker, _accelerator.AddProfilingMarker()));
                if (_pending.Count >= MaxPending) Measure();
                return;
            }
            _accelerator.Synchronize();
            Add(name, Stopwatch.GetElapsedTime(start.Ticks));
        }
    }

    /// <summary>Reads the pending markers (waiting for the last of them) and releases their events.</summary>
    private void Measure()
    {
        foreach (var (name, start, end) in _pending)
        {
            end.Synchronize();
            Add(name, end - start);
            start.Dispose();
            end.Dispose();
        }
        _pending.Clear();
    }

    private void Add(string name, TimeSpan time)
    {
        var (calls, total) = _kernels.GetValueOrDefault(name);
        _kernels[name] = (calls + 1, total + time);
    }

    /// <summary>The kernels timed so far: calls and total time, by name.</summary>
    public IReadOnlyDictionary<string, (long Calls, TimeSpan Time)> Totals()
    {
        lock (_kernels)
        {
            Measure();
            return new Dictionary<string, (long Calls, TimeSpan Time)>(_kernels);
        }
    }

    /// <summary>One line per kernel, the most time first: calls, total milliseconds, share, microseconds per call.</summary>
    public void Report(TextWriter writer)
    {
        var totals = Totals();
        var all = totals.Values.Sum(k => k.Time.Ticks);
        if (all == 0) return;
        var n = CultureInfo.InvariantCulture;
        writer.WriteLine(_mode == Mode.Device
            ? "kernel                 calls     total ms   share   µs/call   (device time between stream markers)"
            : "kernel                 calls     total ms   share   µs/call   (each launch waited for)");
        foreach (var (name, (calls, time)) in totals.OrderByDescending(k => k.Value.Time))
        {
            var ms = time.TotalMilliseconds;
            writer.WriteLine(string.Create(n, $"{name,-20} {calls,7} {ms,12:F1} {100.0 * time.Ticks / all,6:F1}% {1000 * ms / calls,9:F1}"));
        }
    }
}
