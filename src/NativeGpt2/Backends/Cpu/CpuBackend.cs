using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeGpt2.Operators;
using NativeGpt2.Weights;

namespace NativeGpt2.Backends.Cpu;

/// <summary>
/// The vectorized CPU backend: buffers are managed arrays, Conv1D weights are held packed in panels
/// (loaders read them straight into that layout, in float32, 16-bit or 8-bit), and each operator is the
/// <c>Forward</c> of its file in <c>Operators/</c>, at the chosen SIMD width, spread over the cores.
/// </summary>
/// <remarks>
/// Operators keep no state, so passes from several threads run side by side, each with its own
/// workspace and cache; <see cref="Enter"/> only sets the pass's thread limit.
/// </remarks>
public sealed class CpuBackend : IBackend
{
    /// <summary>The shared instance, on every core at the default width: it holds nothing that needs releasing.</summary>
    public static CpuBackend Instance { get; } = new(Environment.ProcessorCount);

    /// <summary>
    /// A CPU backend whose passes use at most <paramref name="threads"/> threads, at <paramref name="width"/>
    /// (default: <see cref="CpuVectors.Default"/>, the widest the hardware accelerates unless
    /// <c>NATIVEGPT2_CPU_VECTOR</c> forces a narrower one).
    /// </summary>
    public CpuBackend(int threads, VectorWidth? width = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        Width = width ?? CpuVectors.Default;
        if (!Enum.IsDefined(Width)) throw new ArgumentOutOfRangeException(nameof(width), width, "not a vector width");
    }

    /// <summary>Threads a pass uses.</summary>
    public int Threads { get; }

    /// <summary>The SIMD width the operators run at.</summary>
    public VectorWidth Width { get; }

    /// <inheritdoc />
    public string Name => "cpu";

    /// <inheritdoc />
    public string Description => $"CPU: {CpuVectors.Describe(Width)}, {Threads} threads";

    /// <inheritdoc />
    /// <remarks>At the default width only: a width forced narrower is the caller's choice.</remarks>
    public string? Advice => Width == CpuVectors.Widest ? CpuVectors.UnusedHardware() : null;

    /// <inheritdoc />
    public IDisposable Enter() => Parallelism.Limit(Threads);

    /// <inheritdoc />
    /// <exception cref="OutOfDeviceMemoryException">The process's memory cannot hold it, or it is longer than a .NET array.</exception>
    public DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged
    {
        // A buffer here is one array: longer than the longest .NET array is as impossible as more than memory.
        if (length > System.Array.MaxLength) throw OutOfMemory<T>(length, $" ({length:N0} values, more than a .NET array holds)", null);
        try
        {
            return new CpuBuffer<T>(this, new T[length]);
        }
        catch (OutOfMemoryException e)
        {
            throw OutOfMemory<T>(length, "", e);
        }
    }

    private OutOfDeviceMemoryException OutOfMemory<T>(long length, string detail, Exception? cause) where T : unmanaged
    {
        var bytes = length * Unsafe.SizeOf<T>();
        return new OutOfDeviceMemoryException(Name, bytes,
            $"out of memory: {OutOfDeviceMemoryException.Size(bytes)} asked of the process's memory{detail}. Run a shorter context or "
            + "batch. " + OutOfDeviceMemoryException.HostAdvice, cause);
    }

    /// <inheritdoc />
    public DeviceBuffer<T> Upload<T>(T[] data) where T : unmanaged => new CpuBuffer<T>(this, data);

    /// <inheritdoc />
    public void CopyFromHost<T>(DeviceBuffer<T> destination, long offset, ReadOnlySpan<T> source) where T : unmanaged =>
        source.CopyTo(Array(destination).AsSpan((int)offset, source.Length));

    /// <inheritdoc />
    public DeviceBuffer<T>? Wrap<T>(T[] host) where T : unmanaged => new CpuBuffer<T>(this, host);

    /// <inheritdoc />
    public void Download<T>(Span<T> destination, DeviceBuffer<T> source, long offset) where T : unmanaged
    {
        var from = Array(source).AsSpan((int)offset, destination.Length);
        // A wrapped output already is the destination.
        if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(from), ref MemoryMarshal.GetReference(destination))) from.CopyTo(destination);
    }

    /// <inheritdoc />
    public WeightLayout MatrixLayout => WeightLayout.Panels;

    /// <inheritdoc />
    /// <remarks>A weight loaded for this backend is already in panels and is used in place; any other is packed once (a copy).</remarks>
    public DeviceMatrix PrepareMatrix(Weight weight) => new CpuMatrix(Checked(weight.Storage.ConvertTo(weight.Storage.Format, WeightLayout.Panels)));

    /// <inheritdoc />
    public DeviceTable PrepareTable(Weight weight) => new CpuTable(Checked(weight.Storage.ConvertTo(weight.Storage.Format, WeightLayout.RowMajor)));

    /// <summary>Float16 weights are scanned here, once, for infinities and NaN (<see cref="Float16Data.AllFinite"/>), not in the first pass.</summary>
    private static WeightData Checked(WeightData data)
    {
        if (data is Float16Data f) _ = f.AllFinite;
        return data;
    }

    /// <inheritdoc />
    public void Embedding(DeviceBuffer<float> output, DeviceBuffer<int> ids, DeviceBuffer<int> positions,
        DeviceTable wte, DeviceBuffer<float> wpe, int N, int C)
    {
        using var timing = new OperatorTiming("embedding", N, 0, C);
        Operators.Embedding.Forward(Array(output).AsSpan(0, N * C), Array(ids).AsSpan(0, N), Array(positions).AsSpan(0, N), ((CpuTable)wte).Data, Array(wpe), C);
    }

    /// <inheritdoc />
    public void LayerNorm(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float> bias,
        int N, int C, float epsilon)
    {
        using var timing = new OperatorTiming("layernorm", N, C, C);
        Operators.LayerNorm.Forward(Array(output), Array(input), Array(weight), Array(bias), N, C, epsilon, Width);
    }

    /// <inheritdoc />
    public void MatMul(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceMatrix weight, DeviceBuffer<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        using var timing = new OperatorTiming("matmul", N, IC, OC);
        Operators.MatMul.Forward(Array(output), Array(input), ((CpuMatrix)weight).Data, Array(bias).AsMemory(0, OC), N, IC, OC, epilogue, Width);
    }

    /// <inheritdoc />
    /// <remarks>The two steps one after the other: the normalization is a small part of the matmul's time here.</remarks>
    public void LayerNormMatMul(DeviceBuffer<float> output, DeviceBuffer<float> normalized, DeviceBuffer<float> input,
        DeviceBuffer<float> normWeight, DeviceBuffer<float> normBias, float epsilon,
        DeviceMatrix weight, DeviceBuffer<float> bias, int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        LayerNorm(normalized, input, normWeight, normBias, N, IC, epsilon);
        MatMul(output, normalized, weight, bias, N, IC, OC, epilogue);
    }

    /// <inheritdoc />
    public void MatMulTransposed(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceTable weight, int N, int IC, int OC)
    {
        using var timing = new OperatorTiming("head", N, IC, OC);
        Operators.MatMulTransposed.Forward(Array(output).AsMemory(0, N * OC), Array(input).AsMemory(0, N * IC), ((CpuTable)weight).Data, N, IC, OC, Width);
    }

    /// <inheritdoc />
    public void Add(DeviceBuffer<float> output, DeviceBuffer<float> a, DeviceBuffer<float> b, long count)
    {
        using var timing = new OperatorTiming("add", 1, (int)count, (int)count);
        VectorMath.Add(Array(a).AsSpan(0, (int)count), Array(b).AsSpan(0, (int)count), Array(output).AsSpan(0, (int)count));
    }

    /// <inheritdoc />
    public void Attention(DeviceBuffer<float> output, DeviceBuffer<float>? probabilities, DeviceBuffer<float> qkv,
        DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<int> keyMask,
        int B, int T, int past, int Tmax, int NH, int HS, float scale)
    {
        using (new OperatorTiming("append-kv", B * T, NH * HS, NH * HS))
            CausalSelfAttention.AppendKeyValues(Array(keys), Array(values), Array(qkv), B, T, past, Tmax, NH, HS);
        using var timing = new OperatorTiming("attention", B * T, NH * HS, NH * HS);
        CausalSelfAttention.Forward(Array(output), probabilities is null ? Memory<float>.Empty : Array(probabilities).AsMemory(0, B * NH * T * (past + T)),
            Array(qkv), Array(keys), Array(values), Array(keyMask), B, T, past, Tmax, NH, HS, scale, Width);
    }

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
    public void GatherCacheSlots(DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<float> sourceKeys, DeviceBuffer<float> sourceValues,
        DeviceBuffer<int> rows, int B, int from, int to, int Tmax, int NH, int HS, int sourceFrom, int sourceTmax)
    {
        float[] k = Array(keys), v = Array(values), sk = Array(sourceKeys), sv = Array(sourceValues);
        var sources = Array(rows);
        var count = to - from;
        if (count <= 0) return;
        for (var r = 0; r < B; r++)
        {
            var source = sources[r];
            if (source < 0 || source == r && ReferenceEquals(k, sk) && sourceFrom == from) continue;
            for (var h = 0; h < NH; h++)
            {
                // Values (B, NH, Tmax, HS): the positions' channels side by side. Keys transposed (B, NH, HS, Tmax): a run of
                // positions per channel.
                long into = (long)r * NH + h, at = (long)source * NH + h;
                sv.AsSpan((int)((at * sourceTmax + sourceFrom) * HS), count * HS).CopyTo(v.AsSpan((int)((into * Tmax + from) * HS), count * HS));
                for (var d = 0; d < HS; d++)
                    sk.AsSpan((int)((at * HS + d) * sourceTmax + sourceFrom), count).CopyTo(k.AsSpan((int)((into * HS + d) * Tmax + from), count));
            }
        }
    }

    /// <inheritdoc />
    public void TargetLogProbabilities(DeviceBuffer<float> output, DeviceBuffer<float> logits, DeviceBuffer<int> targets, int N, int V)
    {
        using var timing = new OperatorTiming("log-softmax", N, V, 1);
        LogSoftmax.TargetLogProbabilities(Array(output), Array(logits), Array(targets), N, V);
    }

    /// <inheritdoc />
    public void ArgMax(DeviceBuffer<int> output, DeviceBuffer<float> logits, int N, int V)
    {
        using var timing = new OperatorTiming("argmax", N, V, 1);
        Operators.ArgMax.Forward(Array(output), Array(logits), N, V);
    }

    /// <inheritdoc />
    public void TopKCandidates(DeviceBuffer<int> candidates, DeviceBuffer<float> logits, int N, int V, int k, int capacity)
    {
        using var timing = new OperatorTiming("top-k", N, V, 1);
        Operators.TopKCandidates.Forward(Array(candidates), Array(logits), N, V, k, capacity);
    }

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

    private sealed class CpuMatrix(WeightData data) : DeviceMatrix(data.Rows, data.Cols)
    {
        /// <summary>(IC, OC) in panels of 32 columns, in the weight's format.</summary>
        public WeightData Data { get; } = data;

        public override void Dispose()
        {
        }
    }

    private sealed class CpuTable(WeightData data) : DeviceTable(data.Rows, data.Cols)
    {
        /// <summary>(rows, cols) row-major, in the weight's format.</summary>
        public WeightData Data { get; } = data;

        public override void Dispose()
        {
        }
    }
}
