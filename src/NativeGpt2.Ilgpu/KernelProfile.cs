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
    private readonly Dictionary<string, Entry> _kernels = [];
    private readonly List<(Launch Launch, ProfilingMarker Start, ProfilingMarker End)> _pending = [];

    /// <summary>What the next launch on each thread works on, from <see cref="Describe"/>.</summary>
    private readonly ThreadLocal<Description?> _next = new();

    /// <summary>The shape a launch was given, and the bytes it reads and arithmetic it does (0 when not given).</summary>
    private readonly record struct Description(string Shape, double Bytes, double Flops);

    /// <summary>A timed launch: the kernel and its description.</summary>
    private readonly record struct Launch(string Name, Description What);

    /// <summary>The totals of one kernel at one shape.</summary>
    public readonly record struct Entry(string Name, string Shape, long Calls, TimeSpan Time, double Bytes, double Flops);

    /// <summary>
    /// Names the shape of the next launch made on this thread (such as <c>1×768×2304</c>), so that the table keeps it
    /// apart from the same kernel's other shapes, and what the launch must read (<paramref name="bytes"/>: its weights)
    /// or compute (<paramref name="flops"/>), so that the table gives the rate it reached.
    /// </summary>
    public void Describe(string shape, double bytes = 0, double flops = 0) => _next.Value = new Description(shape, bytes, flops);

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
        // The description was for this launch only.
        var launch = new Launch(name, _next.Value ?? new Description("", 0, 0));
        _next.Value = null;
        lock (_kernels)
        {
            if (start.Marker is { } marker)
            {
                _pending.Add((launch, marker, _accelerator.AddProfilingMarker()));
                if (_pending.Count >= MaxPending) Measure();
                return;
            }
            _accelerator.Synchronize();
            Add(launch, Stopwatch.GetElapsedTime(start.Ticks));
        }
    }

    /// <summary>Reads the pending markers (waiting for the last of them) and releases their events.</summary>
    private void Measure()
    {
        foreach (var (launch, start, end) in _pending)
        {
            end.Synchronize();
            Add(launch, end - start);
            start.Dispose();
            end.Dispose();
        }
        _pending.Clear();
    }

    private void Add(Launch launch, TimeSpan time)
    {
        var (name, what) = launch;
        var key = what.Shape.Length == 0 ? name : $"{name} {what.Shape}";
        var entry = _kernels.GetValueOrDefault(key, new Entry(name, what.Shape, 0, TimeSpan.Zero, 0, 0));
        _kernels[key] = entry with
        {
            Calls = entry.Calls + 1, Time = entry.Time + time, Bytes = entry.Bytes + what.Bytes, Flops = entry.Flops + what.Flops,
        };
    }

    /// <summary>The kernels timed so far, by kernel and shape (the name alone for launches not described).</summary>
    public IReadOnlyDictionary<string, Entry> Totals()
    {
        lock (_kernels)
        {
            Measure();
            return new Dictionary<string, Entry>(_kernels);
        }
    }

    /// <summary>
    /// One line per kernel and shape, the most time first: calls, total milliseconds, share, microseconds per call, and the
    /// rate reached where the launches said what they read (GB/s) or compute (TFLOP/s).
    /// </summary>
    public void Report(TextWriter writer)
    {
        var totals = Totals();
        var all = totals.Values.Sum(k => k.Time.Ticks);
        if (all == 0) return;
        var n = CultureInfo.InvariantCulture;
        writer.WriteLine(_mode == Mode.Device
            ? "kernel                                   calls     total ms   share   µs/call        rate   (device time between stream markers)"
            : "kernel                                   calls     total ms   share   µs/call        rate   (each launch waited for)");
        foreach (var (key, entry) in totals.OrderByDescending(k => k.Value.Time))
        {
            var ms = entry.Time.TotalMilliseconds;
            var seconds = entry.Time.TotalSeconds;
            var rate = seconds <= 0 ? ""
                : entry.Bytes > 0 ? string.Create(n, $"{entry.Bytes / seconds / 1e9:F1} GB/s")
                : entry.Flops > 0 ? string.Create(n, $"{entry.Flops / seconds / 1e12:F2} TFLOP/s")
                : "";
            writer.WriteLine(string.Create(n, $"{key,-38} {entry.Calls,7} {ms,12:F1} {100.0 * entry.Time.Ticks / all,6:F1}% {1000 * ms / entry.Calls,9:F1} {rate,14}"));
        }
    }
}
