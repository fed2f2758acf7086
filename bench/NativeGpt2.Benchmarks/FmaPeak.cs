using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using NativeGpt2.Operators;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// The machine's float32 fused multiply-add peak at each vector width it accelerates, on one thread and on every core:
/// twelve independent running sums, each <c>sum = FusedMultiplyAdd(a, b, sum)</c>, and nothing else in the loop. The
/// ceiling a compute-bound operator (a prompt's projections) is judged against, measured in the same run as the engines,
/// since the CPU model changes between VMs and a shared VM's clock with it. One JSON line per width and thread count.
/// </summary>
public static class FmaPeak
{
    // Twelve sums: more than a multiply-add's latency (4 cycles) times the two units most x86 cores have.
    private const int Sums = 12;

    // Iterations per thread per timing: 0.2-0.8 s at 30-120 GFLOP/s a core. Timings of 30 ms sometimes ran the two
    // threads of a 2-core VM one after the other (every core's figure equal to one core's).
    private const long Iterations = 100_000_000;

    private const int Timings = 5;

    public static void Run(TextWriter output)
    {
        var machine = MachineInfo.Describe();
        var widths = new[] { VectorWidth.Vector512, VectorWidth.Vector256, VectorWidth.Vector128 }.Where(w => w <= CpuVectors.Widest);
        foreach (var width in widths)
        {
            foreach (var threads in new[] { 1, Environment.ProcessorCount }.Distinct())
            {
                var gflops = Measure(width, threads);
                output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["probe"] = "fma_peak",
                    ["kernels"] = width.ToString(),
                    ["threads"] = threads,
                    ["gflop_s"] = Math.Round(gflops, 1),
                    ["machine"] = machine,
                }));
            }
        }
    }

    /// <summary>GFLOP/s of <paramref name="threads"/> threads each running the loop at <paramref name="width"/>; the best of a few timings.</summary>
    public static double Measure(VectorWidth width, int threads)
    {
        Func<long, float> loop = width switch
        {
            VectorWidth.Vector512 => n => Loop512(n).ToScalar(),
            VectorWidth.Vector256 => n => Loop256(n).ToScalar(),
            VectorWidth.Vector128 => n => Loop128(n).ToScalar(),
            _ => throw new ArgumentOutOfRangeException(nameof(width), width, "the probe times vector widths only"),
        };
        loop(1000);
        var best = double.MaxValue;
        var sink = new float[threads];
        for (var timing = 0; timing < Timings; timing++)
        {
            using var start = new Barrier(threads + 1);
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                sink[t] = loop(Iterations);
            })).ToList();
            workers.ForEach(w => w.Start());
            start.SignalAndWait();
            var clock = Stopwatch.StartNew();
            workers.ForEach(w => w.Join());
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        // Two floating-point operations per lane per multiply-add.
        return Iterations * Sums * (int)width * 2.0 * threads / best / 1e9;
    }

    // One method per width, so that each loop is exactly the twelve multiply-adds, its sums in registers.

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<float> Loop512(long n)
    {
        Vector512<float> a = Vector512.Create(0.999999f), b = Vector512.Create(1e-7f);
        Vector512<float> s0 = b, s1 = b, s2 = b, s3 = b, s4 = b, s5 = b, s6 = b, s7 = b, s8 = b, s9 = b, s10 = b, s11 = b;
        for (var i = 0L; i < n; i++)
        {
            s0 = Vector512.FusedMultiplyAdd(a, s0, b); s1 = Vector512.FusedMultiplyAdd(a, s1, b); s2 = Vector512.FusedMultiplyAdd(a, s2, b);
            s3 = Vector512.FusedMultiplyAdd(a, s3, b); s4 = Vector512.FusedMultiplyAdd(a, s4, b); s5 = Vector512.FusedMultiplyAdd(a, s5, b);
            s6 = Vector512.FusedMultiplyAdd(a, s6, b); s7 = Vector512.FusedMultiplyAdd(a, s7, b); s8 = Vector512.FusedMultiplyAdd(a, s8, b);
            s9 = Vector512.FusedMultiplyAdd(a, s9, b); s10 = Vector512.FusedMultiplyAdd(a, s10, b); s11 = Vector512.FusedMultiplyAdd(a, s11, b);
        }
        return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> Loop256(long n)
    {
        Vector256<float> a = Vector256.Create(0.999999f), b = Vector256.Create(1e-7f);
        Vector256<float> s0 = b, s1 = b, s2 = b, s3 = b, s4 = b, s5 = b, s6 = b, s7 = b, s8 = b, s9 = b, s10 = b, s11 = b;
        for (var i = 0L; i < n; i++)
        {
            s0 = Vector256.FusedMultiplyAdd(a, s0, b); s1 = Vector256.FusedMultiplyAdd(a, s1, b); s2 = Vector256.FusedMultiplyAdd(a, s2, b);
            s3 = Vector256.FusedMultiplyAdd(a, s3, b); s4 = Vector256.FusedMultiplyAdd(a, s4, b); s5 = Vector256.FusedMultiplyAdd(a, s5, b);
            s6 = Vector256.FusedMultiplyAdd(a, s6, b); s7 = Vector256.FusedMultiplyAdd(a, s7, b); s8 = Vector256.FusedMultiplyAdd(a, s8, b);
            s9 = Vector256.FusedMultiplyAdd(a, s9, b); s10 = Vector256.FusedMultiplyAdd(a, s10, b); s11 = Vector256.FusedMultiplyAdd(a, s11, b);
        }
        return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Loop128(long n)
    {
        Vector128<float> a = Vector128.Create(0.999999f), b = Vector128.Create(1e-7f);
        Vector128<float> s0 = b, s1 = b, s2 = b, s3 = b, s4 = b, s5 = b, s6 = b, s7 = b, s8 = b, s9 = b, s10 = b, s11 = b;
        for (var i = 0L; i < n; i++)
        {
            s0 = Vector128.FusedMultiplyAdd(a, s0, b); s1 = Vector128.FusedMultiplyAdd(a, s1, b); s2 = Vector128.FusedMultiplyAdd(a, s2, b);
            s3 = Vector128.FusedMultiplyAdd(a, s3, b); s4 = Vector128.FusedMultiplyAdd(a, s4, b); s5 = Vector128.FusedMultiplyAdd(a, s5, b);
            s6 = Vector128.FusedMultiplyAdd(a, s6, b); s7 = Vector128.FusedMultiplyAdd(a, s7, b); s8 = Vector128.FusedMultiplyAdd(a, s8, b);
            s9 = Vector128.FusedMultiplyAdd(a, s9, b); s10 = Vector128.FusedMultiplyAdd(a, s10, b); s11 = Vector128.FusedMultiplyAdd(a, s11, b);
        }
        return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11;
    }
}
