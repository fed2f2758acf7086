using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NativeGpt2.Operators;
using NativeGpt2.Weights;

namespace NativeGpt2.Backends.Cpu;

/// <summary>
/// The vectorized CPU backend: buffers are managed arrays (weights are used in place, never copied) and
/// each operator is the <c>Forward</c> of its file in <c>Operators/</c>, spread over all cores.
/// </summary>
/// <remarks>
/// Operators keep no state, so passes from several threads run side by side, each with its own
/// workspace and cache; <see cref="Enter"/> only sets the pass's thread limit.
/// </remarks>
public sealed class CpuBackend : IBackend
{
    /// <summary>The shared instance, on every core: it holds nothing that needs releasing.</summary>
    public static CpuBackend Instance { get; } = new(Environment.ProcessorCount);

    /// <summary>A CPU backend whose passes use at most <paramref name="threads"/> threads.</summary>
    public CpuBackend(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
    }

    /// <summary>Threads a pass uses.</summary>
    public int Threads { get; }

    /// <inheritdoc />
    public string Name => "cpu";

    /// <inheritdoc />
    public string Description
    {
        get
        {
            var vectors = Vector256.IsHardwareAccelerated
                ? $"Vector256 ({(Avx2.IsSupported ? "AVX2" : "256-bit")}{(Fma.IsSupported ? ", FMA" : "")})"
                : "scalar (no 256-bit SIMD)";
            return $"CPU: {vectors}, {Threads} threads";
        }
    }

    /// <inheritdoc />
    public IDisposable Enter() => Parallelism.Limit(Threads);

    /// <inheritdoc />
    public DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged => new CpuBuffer<T>(this, new T[length]);

    /// <inheritdoc />
    public DeviceBuffer<T> Upload<T>(T[] data) where T : unmanaged => new CpuBuffer<T>(this, data);

    /// <inheritdoc />
    public void CopyFromHost<T>(DeviceBuffer<T> destination, long offset, ReadOnlySpan<T> source) where T : unmanaged =>
        source.CopyTo(Array(destination).AsSpan((int)offset, source.Length));

    /// <inheritdoc />
    public void Download<T>(Span<T> destination, DeviceBuffer<T> source, long offset) where T : unmanaged =>
        Array(source).AsSpan((int)offset, destination.Length).CopyTo(destination);

    /// <inheritdoc />
    public DeviceMatrix PrepareMatrix(Weight weight) => new CpuMatrix(weight.Shape[0], weight.Shape[1], weight.Data);

    /// <inheritdoc />
    public void Embedding(DeviceBuffer<float> output, DeviceBuffer<int> ids, DeviceBuffer<int> positions,
        DeviceBuffer<float> wte, DeviceBuffer<float> wpe, int N, int C) =>
        Operators.Embedding.Forward(Array(output).AsSpan(0, N * C), Array(ids).AsSpan(0, N), Array(positions).AsSpan(0, N), Array(wte), Array(wpe), C);

    /// <inheritdoc />
    public void LayerNorm(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float> bias,
        int N, int C, float epsilon) =>
        Operators.LayerNorm.Forward(Array(output), Array(input), Array(weight), Array(bias), N, C, epsilon);

    /// <inheritdoc />
    public void MatMul(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceMatrix weight, DeviceBuffer<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        var w = ((CpuMatrix)weight).Data;
        var o = Array(output).AsMemory(0, N * OC);
        switch (epilogue)
        {
            case MatMulEpilogue.Bias:
                Operators.MatMul.Forward(o, Array(input), w, Array(bias), N, IC, OC);
                break;
            case MatMulEpilogue.BiasGelu:
                Operators.MatMul.Forward(o, Array(input), w, Array(bias), N, IC, OC);
                Gelu.Forward(o, o, OC);
                break;
            case MatMulEpilogue.Residual:
                // x + (x·W + b), summed in that order, as the unfused graph would.
                var product = ArrayPool<float>.Shared.Rent(N * OC);
                try
                {
                    Operators.MatMul.Forward(product.AsMemory(0, N * OC), Array(input), w, Array(bias), N, IC, OC);
                    TensorPrimitives.Add(o.Span, product.AsSpan(0, N * OC), o.Span);
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(product);
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(epilogue), epilogue, null);
        }
    }

    /// <inheritdoc />
    public void MatMulTransposed(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, int N, int IC, int OC) =>
        Operators.MatMulTransposed.Forward(Array(output).AsMemory(0, N * OC), Array(input).AsMemory(0, N * IC), Array(weight), N, IC, OC);

    /// <inheritdoc />
    public void Add(DeviceBuffer<float> output, DeviceBuffer<float> a, DeviceBuffer<float> b, long count) =>
        TensorPrimitives.Add(Array(a).AsSpan(0, (int)count), Array(b).AsSpan(0, (int)count), Array(output).AsSpan(0, (int)count));

    /// <inheritdoc />
    public void AppendKeyValues(DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<float> qkv,
        int B, int T, int past, int Tmax, int NH, int HS) =>
        CausalSelfAttention.AppendKeyValues(Array(keys), Array(values), Array(qkv), B, T, past, Tmax, NH, HS);

    /// <inheritdoc />
    public void Attention(DeviceBuffer<float> output, DeviceBuffer<float>? probabilities, DeviceBuffer<float> qkv,
        DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<int> keyMask,
        int B, int T, int past, int Tmax, int NH, int HS) =>
        CausalSelfAttention.Forward(Array(output), probabilities is null ? Memory<float>.Empty : Array(probabilities).AsMemory(0, B * NH * T * (past + T)),
            Array(qkv), Array(keys), Array(values), Array(keyMask), B, T, past, Tmax, NH, HS);

    /// <inheritdoc />
    public void GatherRows(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<int> rows, int R, int C)
    {
        var o = Array(output);
        var x = Array(input);
        var r = Array(rows);
        for (var i = 0; i < R; i++)
            x.AsSpan(r[i] * C, C).CopyTo(o.AsSpan(i * C, C));
    }

    /// <inheritdoc />
    public void TargetLogProbabilities(DeviceBuffer<float> output, DeviceBuffer<float> logits, DeviceBuffer<int> targets, int N, int V) =>
        LogSoftmax.TargetLogProbabilities(Array(output), Array(logits), Array(targets), N, V);

    /// <inheritdoc />
    public void ArgMax(DeviceBuffer<int> output, DeviceBuffer<float> logits, int N, int V) =>
        Operators.ArgMax.Forward(Array(output), Array(logits), N, V);

    /// <summary>Nothing to release.</summary>
    public void Dispose()
    {
    }

    private static T[] Array<T>(DeviceBuffer<T> buffer) where T : unmanaged => ((CpuBuffer<T>)buffer).Data;

    private sealed class CpuBuffer<T>(CpuBackend backend, T[] data) : DeviceBuffer<T>(backend, data.Length) where T : unmanaged
    {
        public T[] Data { get; } = data;

        public override void Dispose()
        {
        }
    }

    private sealed class CpuMatrix(int inputs, int outputs, float[] data) : DeviceMatrix(inputs, outputs)
    {
        /// <summary>(IC, OC) as in the checkpoint.</summary>
        public float[] Data { get; } = data;

        public override void Dispose()
        {
        }
    }
}
