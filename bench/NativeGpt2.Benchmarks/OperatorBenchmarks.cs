using BenchmarkDotNet.Attributes;
using NativeGpt2.Backends;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Operators;
using NativeGpt2.Weights;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// The CPU backend's two heaviest operators alone, at each SIMD width this CPU accelerates, through the public
/// <see cref="IBackend"/> seam the model calls: the MLP's first projection of a 128-token prompt (128 × 768 · 768 × 3072,
/// 604 MFLOP, compute-bound: GFLOP/s = 604 / ms) and the tied head of one decoding step (768 · 50,257 × 768, a 154 MB
/// read: GB/s = 154 / ms). Compare with the FMA peak and read rate of docs/performance.md; run with
/// <c>--affinity 1</c> for one core.
/// </summary>
public class OperatorBenchmarks
{
    private const int Rows = 128, Channels = 768, Hidden = 3072, Vocabulary = 50257;

    private CpuBackend _backend = null!;
    private DeviceMatrix _fc = null!;
    private DeviceTable _wte = null!;
    private DeviceBuffer<float> _input = null!, _bias = null!, _output = null!, _logits = null!;

    public static IEnumerable<VectorWidth> AcceleratedWidths() =>
        new[] { VectorWidth.Vector512, VectorWidth.Vector256, VectorWidth.Vector128 }.Where(w => w <= CpuVectors.Widest);

    [ParamsSource(nameof(AcceleratedWidths))]
    public VectorWidth Width { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        float[] Values(int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        _backend = new CpuBackend(Environment.ProcessorCount, Width);
        _fc = _backend.PrepareMatrix(new Weight("h.0.mlp.c_fc.weight", [Channels, Hidden], Values(Channels * Hidden)));
        _wte = _backend.PrepareTable(new Weight("wte.weight", [Vocabulary, Channels], Values(Vocabulary * Channels)));
        _input = _backend.Upload(Values(Rows * Channels));
        _bias = _backend.Upload(Values(Hidden));
        _output = _backend.Allocate<float>(Rows * Hidden);
        _logits = _backend.Allocate<float>(Vocabulary);
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    [Benchmark(Description = "MatMul 128 x 768 x 3072 (+ bias)")]
    public void MatMul()
    {
        using var _ = _backend.Enter();
        _backend.MatMul(_output, _input, _fc, _bias, Rows, Channels, Hidden, MatMulEpilogue.Bias);
    }

    [Benchmark(Description = "Head, 1 row over the 50,257 x 768 table")]
    public void Head()
    {
        using var _ = _backend.Enter();
        _backend.MatMulTransposed(_logits, _input, _wte, 1, Channels, Vocabulary);
    }
}
