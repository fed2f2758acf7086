using System.Collections.Concurrent;
using NativeGpt2.Backends;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Ilgpu;
using NativeGpt2.Ilgpu.Kernels;
using NativeGpt2.Operators;
using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// One instance of each backend per test run (an ILGPU context compiles its kernels once), and the
/// names the backend tests run over: cpu and ilgpu-cpu always, cuda where a device is present.
/// </summary>
public static class TestBackends
{
    public const string Cpu = "cpu";
    public const string IlgpuCpu = "ilgpu-cpu";
    public const string Cuda = "cuda";

    /// <summary>
    /// ILGPU's CPU accelerator shaped like a GPU: warps of 32 threads (CUDA's), groups of 128 and two groups at once,
    /// where <see cref="IlgpuCpu"/> has warps of 4 and one group. The kernels split rows, channels and chunks by the warp
    /// and merge the groups' sums, so this runs the lane counts and the cross-group merges a GPU runs. It is slower
    /// (an OS thread per simulated thread), so only the kernel tests use it.
    /// </summary>
    public const string IlgpuCpuWarp32 = "ilgpu-cpu-warp32";

    /// <summary>
    /// ILGPU's CPU accelerator with a CUDA device's group sizes: warps of 32, groups of 256 and row groups of 1,024 (32
    /// warps: the most the reductions merge), and up to 64 groups a launch, where <see cref="IlgpuCpuWarp32"/> has groups
    /// of 128 and two a launch. A GPU launches many groups per multiprocessor (more than the work on small shapes), and
    /// the kernels' group-size limits and cross-group merges are reached only here. The slowest simulator: its tests
    /// take fewer cases.
    /// </summary>
    public const string IlgpuCpuCudaShaped = "ilgpu-cpu-cuda-shaped";

    /// <summary>
    /// The CPU backend at each SIMD width, forced: 512 and 256 bits (AVX-512, AVX2), 128 (NEON on Arm64, SSE with FMA) and
    /// scalar. A width the machine lacks is emulated by the runtime (correct, slower), so every path runs on any machine.
    /// </summary>
    public const string CpuVector512 = "cpu-vector512", CpuVector256 = "cpu-vector256", CpuVector128 = "cpu-vector128", CpuScalar = "cpu-scalar";

    /// <summary>The CPU backend at every forced width.</summary>
    public static string[] CpuWidths => [CpuVector512, CpuVector256, CpuVector128, CpuScalar];

    /// <summary>
    /// How many of a test's <paramref name="count"/> random cases or rounds run on <paramref name="backend"/>: all of
    /// them, but half on <see cref="IlgpuCpuWarp32"/> and a quarter on the slowest simulator,
    /// <see cref="IlgpuCpuCudaShaped"/> (at least two on each). Both run the same kernels as <see cref="IlgpuCpu"/>, which
    /// takes every case; what only they reach (lane counts, group sizes, cross-group merges) every case reaches.
    /// </summary>
    public static int Cases(string backend, int count) => backend switch
    {
        IlgpuCpuWarp32 => Math.Max(2, count / 2),
        IlgpuCpuCudaShaped => Math.Max(2, count / 4),
        _ => count,
    };

    /// <summary>Why CUDA tests are skipped on this machine, or null when a device is present.</summary>
    public static string? CudaSkipReason { get; } = IlgpuBackend.CudaAvailable() ? null : "no CUDA device on this machine (the same tests run on ilgpu-cpu)";

    private static readonly ConcurrentDictionary<string, Lazy<IBackend>> Instances = new();

    public static IBackend Get(string name) => Instances.GetOrAdd(name, n => new Lazy<IBackend>(() => n switch
    {
        Cpu => CpuBackend.Instance,
        IlgpuCpu => IlgpuBackend.CreateCpuSimulator(),
        IlgpuCpuWarp32 => IlgpuBackend.CreateCpuSimulator(warp: 32, warps: 4, multiprocessors: 2),
        Cuda => IlgpuBackend.CreateCuda(),
        IlgpuCpuCudaShaped => IlgpuBackend.CreateCpuSimulator(warp: 32, warps: 32, multiprocessors: 1, maxGroups: 64),
        CpuVector512 => new CpuBackend(Environment.ProcessorCount, VectorWidth.Vector512),
        CpuVector256 => new CpuBackend(Environment.ProcessorCount, VectorWidth.Vector256),
        CpuVector128 => new CpuBackend(Environment.ProcessorCount, VectorWidth.Vector128),
        CpuScalar => new CpuBackend(Environment.ProcessorCount, VectorWidth.Scalar),
        _ => throw new ArgumentOutOfRangeException(nameof(name), n, null),
    })).Value;

    /// <summary>Backends for [Theory] data: every name, with CUDA included so its tests can report their skip.</summary>
    public static TheoryData<string> All => [Cpu, IlgpuCpu, Cuda];

    /// <summary>
    /// Every backend and the GPU-shaped simulators (<see cref="IlgpuCpuWarp32"/>, <see cref="IlgpuCpuCudaShaped"/>), for the
    /// tests of single operations and kernels on small shapes.
    /// </summary>
    public static TheoryData<string> AllWithSimulators => [Cpu, IlgpuCpu, IlgpuCpuWarp32, IlgpuCpuCudaShaped, Cuda];

    /// <summary>The ILGPU accelerators and simulators, for tests of the ILGPU backend's own kernels (CUDA included, as in <see cref="All"/>).</summary>
    public static TheoryData<string> Ilgpu => [IlgpuCpu, IlgpuCpuWarp32, IlgpuCpuCudaShaped, Cuda];

    /// <summary>The names usable on this machine, for property tests that draw a backend.</summary>
    public static string[] Available => CudaSkipReason is null ? [Cpu, IlgpuCpu, Cuda] : [Cpu, IlgpuCpu];

    /// <summary>Skips the calling test with the reason when <paramref name="backend"/> is CUDA and there is none.</summary>
    public static void SkipIfUnavailable(string backend) =>
        Xunit.Skip.If(backend == Cuda && CudaSkipReason is not null, CudaSkipReason);

    /// <summary>
    /// Until disposed, an ILGPU backend sends projections of up to <see cref="MatMulKernels.MaxMatVecRows"/> rows to the
    /// matrix-vector kernels, as on a GPU (the CPU accelerator stops at four by default:
    /// <see cref="IlgpuBackend.MatVecRowLimit"/>); any other backend is left as it is.
    /// </summary>
    public static IDisposable AllMatVecRows(IBackend backend) => new MatVecRowLimitScope(backend as IlgpuBackend);

    private sealed class MatVecRowLimitScope : IDisposable
    {
        private readonly IlgpuBackend? _backend;
        private readonly int _previous;

        public MatVecRowLimitScope(IlgpuBackend? backend)
        {
            _backend = backend;
            if (backend is null) return;
            _previous = backend.MatVecRowLimit;
            backend.MatVecRowLimit = MatMulKernels.MaxMatVecRows;
        }

        public void Dispose()
        {
            if (_backend is not null) _backend.MatVecRowLimit = _previous;
        }
    }
}
