using System.Diagnostics;
using System.Globalization;

namespace NativeGpt2.Backends.Cpu;

/// <summary>
/// Where a CPU pass spends its time, operator by operator and shape by shape: with
/// <c>NATIVEGPT2_CPU_PROFILE=1</c> every operator call adds its time to its line, and the table is written to
/// stderr when the process exits (the CPU backend is a shared instance that is never disposed). The operators
/// run as they always do, so the totals are those of a normal run, plus a timestamp per call.
/// </summary>
internal sealed class OperatorProfile
{
    /// <summary>The environment variable that turns profiling on (1, true, on or yes).</summary>
    public const string Variable = "NATIVEGPT2_CPU_PROFILE";

    private readonly Dictionary<(string Operator, int N, int In, int Out), (long Calls, long Ticks)> _lines = [];

    /// <summary>The process's profile when <see cref="Variable"/> asks for one (reported at exit), else null.</summary>
    public static OperatorProfile? Current { get; } = Requested(Environment.GetEnvironmentVariable(Variable)) ? ReportedAtExit() : null;

    internal static bool Requested(string? value) => value?.Trim().ToLowerInvariant() is "1" or "true" or "on" or "yes";

    private static OperatorProfile ReportedAtExit()
    {
        var profile = new OperatorProfile();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => profile.Report(Console.Error);
        return profile;
    }

    /// <summary>Adds the time since <paramref name="start"/> (a <see cref="Stopwatch.GetTimestamp"/>) to the operator's line for this shape.</summary>
    public void Add(string name, int n, int input, int output, long start) => AddTicks(name, n, input, output, Stopwatch.GetTimestamp() - start);

    /// <summary>Adds <paramref name="ticks"/> (of <see cref="Stopwatch.Frequency"/>) to the operator's line for this shape.</summary>
    internal void AddTicks(string name, int n, int input, int output, long ticks)
    {
        lock (_lines)
        {
            var (calls, total) = _lines.GetValueOrDefault((name, n, input, output));
            _lines[(name, n, input, output)] = (calls + 1, total + ticks);
        }
    }

    /// <summary>One line per operator and shape, the most time first: calls, total milliseconds, share, microseconds per call.</summary>
    public void Report(TextWriter writer)
    {
        lock (_lines)
        {
            var all = _lines.Values.Sum(k => k.Ticks);
            if (all == 0) return;
            var c = CultureInfo.InvariantCulture;
            writer.WriteLine("operator            N      in     out    calls     total ms   share   µs/call");
            foreach (var ((name, n, input, output), (calls, ticks)) in _lines.OrderByDescending(k => k.Value.Ticks))
            {
                var ms = ticks * 1000.0 / Stopwatch.Frequency;
                writer.WriteLine(string.Create(c, $"{name,-16} {n,4} {input,7} {output,7} {calls,8} {ms,12:F1} {100.0 * ticks / all,6:F1}% {1000 * ms / calls,9:F1}"));
            }
        }
    }
}

/// <summary>Times one operator call into <see cref="OperatorProfile.Current"/>, when there is one, until disposed.</summary>
internal readonly struct OperatorTiming(string name, int n, int input, int output) : IDisposable
{
    private readonly long _start = OperatorProfile.Current is null ? 0 : Stopwatch.GetTimestamp();

    public void Dispose() => OperatorProfile.Current?.Add(name, n, input, output, _start);
}
