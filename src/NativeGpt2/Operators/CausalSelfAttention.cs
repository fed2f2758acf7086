using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeGpt2.Operators;

/// <summary>
/// Causal multi-head self-attention over a key/value cache:
/// <c>out[b, t, h] = Σ_j softmax_j(q·k_j / √HS) · v_j</c> over the keys j at or before the query's
/// own position whose mask is 1.
/// </summary>
/// <remarks>
/// <para>Shapes: qkv (B, Tq, 3C) is the <c>c_attn</c> output of the Tq new tokens, queries, keys and values
/// side by side, each split into NH heads of HS channels. The cache holds positions [0, past) of earlier
/// tokens and receives the new ones at [past, past + Tq): values (B, NH, Tmax, HS), and keys transposed,
/// (B, NH, HS, Tmax), so that one channel of consecutive keys is contiguous and a query's scores come out
/// a register of keys at a time. keyMask (B, Tmax) is 1 for real tokens and 0 for padding (empty: all
/// real). out (B, Tq, C) has the heads side by side again; probabilities (B, NH, Tq, past + Tq), when
/// not empty, receives the attention weights.</para>
/// <para>A score is Σ_d q[d]·k[d] with one fused multiply-add per channel, d = 0, 1, …, whether its key
/// falls in a register of keys or in the scalar tail: so a query's scores do not depend on the other
/// rows of the batch, nor on padding in front of its row.</para>
/// </remarks>
internal static class CausalSelfAttention
{
    /// <summary>
    /// Copies the new tokens' keys (transposed) and values from <paramref name="qkv"/> into the cache at
    /// positions [past, past + Tq).
    /// </summary>
    public static void AppendKeyValues(Span<float> keys, Span<float> values, ReadOnlySpan<float> qkv,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        for (var b = 0; b < B; b++)
        {
            for (var t = 0; t < Tq; t++)
            {
                var row = qkv.Slice((b * Tq + t) * 3 * C, 3 * C);
                for (var h = 0; h < NH; h++)
                {
                    row.Slice(2 * C + h * HS, HS).CopyTo(values.Slice(((b * NH + h) * Tmax + past + t) * HS, HS));
                    var key = row.Slice(C + h * HS, HS);
                    var column = (b * NH + h) * HS * Tmax + past + t;
                    for (var d = 0; d < HS; d++) keys[column + d * Tmax] = key[d];
                }
            }
        }
    }

    /// <summary>The reference's cache layout, keys (B, NH, Tmax, HS) like the values: what <see cref="Reference"/> reads.</summary>
    public static void AppendKeyValuesReference(Span<float> keys, Span<float> values, ReadOnlySpan<float> qkv,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        for (var b = 0; b < B; b++)
        for (var t = 0; t < Tq; t++)
        for (var h = 0; h < NH; h++)
        {
            var slot = ((b * NH + h) * Tmax + past + t) * HS;
            qkv.Slice((b * Tq + t) * 3 * C + C + h * HS, HS).CopyTo(keys.Slice(slot, HS));
            qkv.Slice((b * Tq + t) * 3 * C + 2 * C + h * HS, HS).CopyTo(values.Slice(slot, HS));
        }
    }

    // Queries per work item: one (b, h) and a run of consecutive queries, which read the same keys.
    private const int QueryTile = 16;

    /// <summary>
    /// Fused causal attention at the given SIMD width: per query, the scores of its visible keys, their
    /// softmax and the weighted sum of values, with only one row of scores at a time (no T × T matrix
    /// unless <paramref name="probabilities"/> asks for one). Work items are (b, h, tile of queries).
    /// </summary>
    public static void Forward(Memory<float> output, Memory<float> probabilities, ReadOnlyMemory<float> qkv,
        ReadOnlyMemory<float> keys, ReadOnlyMemory<float> values, ReadOnlyMemory<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS, VectorWidth width)
    {
        switch (width)
        {
            case VectorWidth.Vector512: Run<Simd512>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS); break;
            case VectorWidth.Vector256: Run<Simd256>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS); break;
            default: Run<SimdScalar>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS); break;
        }
    }

    private static void Run<V>(Memory<float> output, Memory<float> probabilities, ReadOnlyMemory<float> qkv,
        ReadOnlyMemory<float> keys, ReadOnlyMemory<float> values, ReadOnlyMemory<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS) where V : struct, ISimd<V>
    {
        var Tk = past + Tq;
        var tiles = (Tq + QueryTile - 1) / QueryTile;
        Parallelism.For(B * NH * tiles, 2L * QueryTile * Tk * HS, (start, end) =>
        {
            var all = ArrayPool<float>.Shared.Rent(Tk);
            var scores = ArrayPool<float>.Shared.Rent(Tk);
            var keyIndex = ArrayPool<int>.Shared.Rent(Tk);
            for (var item = start; item < end; item++)
            {
                // item enumerates (b, h, tile) with the tile fastest.
                int tile = item % tiles, h = item / tiles % NH, b = item / (tiles * NH);
                for (var t = tile * QueryTile; t < Math.Min(Tq, (tile + 1) * QueryTile); t++)
                    Query<V>(output.Span, probabilities.Span, qkv.Span, keys.Span, values.Span, keyMask.Span, all, scores, keyIndex, b, h, t, Tq, past, Tmax, NH, HS);
            }
            ArrayPool<float>.Shared.Return(all);
            ArrayPool<float>.Shared.Return(scores);
            ArrayPool<int>.Shared.Return(keyIndex);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Query<V>(Span<float> output, Span<float> probabilities, ReadOnlySpan<float> qkv,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, ReadOnlySpan<int> keyMask, float[] all, float[] scores, int[] keyIndex,
        int b, int h, int t, int Tq, int past, int Tmax, int NH, int HS) where V : struct, ISimd<V>
    {
        var C = NH * HS;
        var scale = 1f / MathF.Sqrt(HS);
        var last = past + t;
        var query = qkv.Slice((b * Tq + t) * 3 * C + h * HS, HS);
        var v = values.Slice((b * NH + h) * Tmax * HS, Tmax * HS);
        var mask = keyMask.IsEmpty ? ReadOnlySpan<int>.Empty : keyMask.Slice(b * Tmax, Tmax);

        // Scores of keys 0..last (the query at past + t sees no later key), masked ones included for now.
        Scores<V>(all, query, keys.Slice((b * NH + h) * HS * Tmax, HS * Tmax), last + 1, Tmax, HS);

        // Masked keys are left out altogether rather than set to -inf, so a row's arithmetic is the same with
        // or without padding in front of it: left-padded batches give exactly the unpadded results.
        var count = 0;
        for (var j = 0; j <= last; j++)
        {
            if (!mask.IsEmpty && mask[j] == 0) continue;
            keyIndex[count] = j;
            scores[count++] = all[j] * scale;
        }
        var weights = scores.AsSpan(0, count);
        Softmax.Forward(weights, weights);

        // out = Σ_j p_j · v_j; a query with no visible key (padding at the start of a row) gets zeros.
        var o = output.Slice((b * Tq + t) * C + h * HS, HS);
        o.Clear();
        ref var or = ref MemoryMarshal.GetReference(o);
        for (var c = 0; c < count; c++)
        {
            var p = weights[c];
            ref var vr = ref MemoryMarshal.GetReference(v.Slice(keyIndex[c] * HS, HS));
            var d = 0;
            for (; d <= HS - V.Count; d += V.Count)
                V.Store(ref Unsafe.Add(ref or, d), V.Fma(V.Broadcast(p), V.Load(ref Unsafe.Add(ref vr, d)), V.Load(ref Unsafe.Add(ref or, d))));
            for (; d < HS; d++)
                Unsafe.Add(ref or, d) = MathF.FusedMultiplyAdd(p, Unsafe.Add(ref vr, d), Unsafe.Add(ref or, d));
        }

        if (!probabilities.IsEmpty)
        {
            var Tk = past + Tq;
            var row = probabilities.Slice(((b * NH + h) * Tq + t) * Tk, Tk);
            row.Clear();
            for (var c = 0; c < count; c++) row[keyIndex[c]] = weights[c];
        }
    }

    /// <summary>
    /// scores[j] = Σ_d q[d]·keysT[d, j] for j in [0, count): four registers of keys at a time (four independent
    /// sums in flight), then one register, then single keys, each summed over d in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores<V>(Span<float> scores, ReadOnlySpan<float> query, ReadOnlySpan<float> keysT, int count, int Tmax, int HS)
        where V : struct, ISimd<V>
    {
        ref var q = ref MemoryMarshal.GetReference(query);
        ref var k = ref MemoryMarshal.GetReference(keysT);
        ref var s = ref MemoryMarshal.GetReference(scores);
        var j = 0;
        for (; j + 4 * V.Count <= count; j += 4 * V.Count)
        {
            V a0 = V.Zero, a1 = V.Zero, a2 = V.Zero, a3 = V.Zero;
            for (var d = 0; d < HS; d++)
            {
                var qd = V.Broadcast(Unsafe.Add(ref q, d));
                ref var row = ref Unsafe.Add(ref k, (nint)d * Tmax + j);
                a0 = V.Fma(qd, V.Load(ref row), a0);
                a1 = V.Fma(qd, V.Load(ref Unsafe.Add(ref row, V.Count)), a1);
                a2 = V.Fma(qd, V.Load(ref Unsafe.Add(ref row, 2 * V.Count)), a2);
                a3 = V.Fma(qd, V.Load(ref Unsafe.Add(ref row, 3 * V.Count)), a3);
            }
            V.Store(ref Unsafe.Add(ref s, j), a0);
            V.Store(ref Unsafe.Add(ref s, j + V.Count), a1);
            V.Store(ref Unsafe.Add(ref s, j + 2 * V.Count), a2);
            V.Store(ref Unsafe.Add(ref s, j + 3 * V.Count), a3);
        }
        for (; j + V.Count <= count; j += V.Count)
        {
            var a = V.Zero;
            for (var d = 0; d < HS; d++)
                a = V.Fma(V.Broadcast(Unsafe.Add(ref q, d)), V.Load(ref Unsafe.Add(ref k, (nint)d * Tmax + j)), a);
            V.Store(ref Unsafe.Add(ref s, j), a);
        }
        for (; j < count; j++)
        {
            var a = 0f;
            for (var d = 0; d < HS; d++)
                a = MathF.FusedMultiplyAdd(Unsafe.Add(ref q, d), Unsafe.Add(ref k, (nint)d * Tmax + j), a);
            Unsafe.Add(ref s, j) = a;
        }
    }

    /// <summary>Scalar reference in double, reading the same cache layout.</summary>
    public static void Reference(Span<float> output, Span<float> probabilities, ReadOnlySpan<float> qkv,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, ReadOnlySpan<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        var Tk = past + Tq;
        var scale = 1.0 / Math.Sqrt(HS);
        var weights = new double[Tk];
        for (var b = 0; b < B; b++)
        for (var h = 0; h < NH; h++)
        for (var t = 0; t < Tq; t++)
        {
            var q = (b * Tq + t) * 3 * C + h * HS;
            var max = double.NegativeInfinity;
            for (var j = 0; j < Tk; j++)
            {
                var allowed = j <= past + t && (keyMask.IsEmpty || keyMask[b * Tmax + j] != 0);
                var dot = 0.0;
                for (var d = 0; d < HS && allowed; d++)
                    dot += (double)qkv[q + d] * keys[((b * NH + h) * Tmax + j) * HS + d];
                weights[j] = allowed ? dot * scale : double.NegativeInfinity;
                max = Math.Max(max, weights[j]);
            }
            double sum = 0;
            for (var j = 0; j < Tk; j++)
            {
                weights[j] = double.IsNegativeInfinity(max) ? 0 : Math.Exp(weights[j] - max);
                sum += weights[j];
            }
            for (var j = 0; j < Tk; j++)
            {
                if (sum > 0) weights[j] /= sum;
                if (!probabilities.IsEmpty) probabilities[((b * NH + h) * Tq + t) * Tk + j] = (float)weights[j];
            }
            for (var d = 0; d < HS; d++)
            {
                var acc = 0.0;
                for (var j = 0; j < Tk; j++)
                    acc += weights[j] * values[((b * NH + h) * Tmax + j) * HS + d];
                output[(b * Tq + t) * C + h * HS + d] = (float)acc;
            }
        }
    }
}
