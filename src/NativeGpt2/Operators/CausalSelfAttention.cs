using System.Buffers;
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
    /// positions [past, past + Tq), one (b, h) per work item.
    /// </summary>
    public static void AppendKeyValues(Memory<float> keys, Memory<float> values, ReadOnlyMemory<float> qkv,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        // A decoding step writes one position: each key channel lands on a cache line of its own (the keys are transposed),
        // one miss each. Counted as the work it is (a miss costs about as long as a few hundred multiply-adds), the lines of
        // a batch's rows are written side by side by the cores rather than one after another by one.
        var work = 2L * Tq * HS + (long)HS * Math.Max(0, KeyBlock - Tq) * 16;
        Parallelism.For(B * NH, work, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var k = keys.Span;
            var v = values.Span;
            var x = qkv.Span;
            for (var item = start; item < end; item++)
            {
                int b = item / NH, h = item % NH;
                for (var t = 0; t < Tq; t++)
                    x.Slice((b * Tq + t) * 3 * C + 2 * C + h * HS, HS).CopyTo(v.Slice((item * Tmax + past + t) * HS, HS));
                // Keys, transposed: a block of positions at a time (their HS channels stay in L1), one channel at a time
                // within it, so the writes run along a row of the transposed cache.
                for (var t0 = 0; t0 < Tq; t0 += KeyBlock)
                {
                    var count = Math.Min(KeyBlock, Tq - t0);
                    for (var d = 0; d < HS; d++)
                    {
                        var row = k.Slice((item * HS + d) * Tmax + past + t0, count);
                        var from = (b * Tq + t0) * 3 * C + C + h * HS + d;
                        for (var t = 0; t < row.Length; t++) row[t] = x[from + t * 3 * C];
                    }
                }
            }
        });
    }

    // Positions per block when keys are written transposed.
    private const int KeyBlock = 32;

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
    private const int QueryTile = 32;


    /// <summary>
    /// Fused causal attention at the given SIMD width. Work items are (b, h, tile of queries): the tile's
    /// scores against the keys it can see, each row's softmax in place, then the tile's weighted sums of
    /// values; no T × T matrix exists unless <paramref name="probabilities"/> asks for one. The scores are
    /// <paramref name="scale"/> · q·k before the softmax (1/√HS for GPT-2).
    /// </summary>
    /// <remarks>
    /// A score is Σ_d q[d]·k[d] in order, one fused multiply-add each; an output channel is Σ_j p_j·v_j[c]
    /// in order over j. Keys a query may not see (after its position, or masked) get p = 0 and add an exact
    /// zero, and the softmax runs over the visible keys only: so a query's result does not depend on the
    /// other queries of its tile, on the rows of the batch, or on padding in front of its row.
    /// </remarks>
    public static void Forward(Memory<float> output, Memory<float> probabilities, ReadOnlyMemory<float> qkv,
        ReadOnlyMemory<float> keys, ReadOnlyMemory<float> values, ReadOnlyMemory<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS, float scale, VectorWidth width)
    {
        switch (width)
        {
            case VectorWidth.Vector512: Run<Simd512>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS, scale); break;
            case VectorWidth.Vector256: Run<Simd256>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS, scale); break;
            case VectorWidth.Vector128: Run<Simd128>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS, scale); break;
            default: Run<SimdScalar>(output, probabilities, qkv, keys, values, keyMask, B, Tq, past, Tmax, NH, HS, scale); break;
        }
    }

    private static void Run<V>(Memory<float> output, Memory<float> probabilities, ReadOnlyMemory<float> qkv,
        ReadOnlyMemory<float> keys, ReadOnlyMemory<float> values, ReadOnlyMemory<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS, float scale) where V : struct, ISimd<V>
    {
        var Tk = past + Tq;
        var tiles = (Tq + QueryTile - 1) / QueryTile;
        Parallelism.For(B * NH * tiles, 2L * QueryTile * Tk * HS, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            // The tile's rows of scores, then probabilities, QueryTile × Tk; and one row's visible scores.
            var rows = ArrayPool<float>.Shared.Rent(QueryTile * Tk);
            var visible = ArrayPool<float>.Shared.Rent(Tk);
            for (var item = start; item < end; item++)
            {
                // item enumerates (b, h, tile) with the tile fastest.
                int tile = item % tiles, h = item / tiles % NH, b = item / (tiles * NH);
                int t0 = tile * QueryTile, t1 = Math.Min(Tq, t0 + QueryTile);
                Tile<V>(output.Span, probabilities.Span, qkv.Span, keys.Span, values.Span, keyMask.Span, rows, visible,
                    b, h, t0, t1, Tq, past, Tmax, NH, HS, scale);
            }
            ArrayPool<float>.Shared.Return(rows);
            ArrayPool<float>.Shared.Return(visible);
        });
    }

    /// <summary>Queries [t0, t1) of head h in row b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<V>(Span<float> output, Span<float> probabilities, ReadOnlySpan<float> qkv,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, ReadOnlySpan<int> keyMask, float[] rows, float[] visible,
        int b, int h, int t0, int t1, int Tq, int past, int Tmax, int NH, int HS, float scale) where V : struct, ISimd<V>
    {
        var C = NH * HS;
        var Tk = past + Tq;
        // Keys [0, width) cover every query of the tile: the last one sees up to past + t1 - 1.
        var width = past + t1;
        var stride = width;
        var queries = qkv.Slice((b * Tq + t0) * 3 * C + h * HS);
        var mask = keyMask.IsEmpty ? ReadOnlySpan<int>.Empty : keyMask.Slice(b * Tmax, width);

        // scores (t1 − t0, width) = q · Kᵀ, the keys cached transposed (HS, Tmax).
        TileProduct<V>(ref MemoryMarshal.GetArrayDataReference(rows), stride, ref MemoryMarshal.GetReference(queries), 3 * C, t1 - t0,
            ref MemoryMarshal.GetReference(keys.Slice((b * NH + h) * HS * Tmax)), Tmax, width, HS);

        for (var t = t0; t < t1; t++)
        {
            var row = rows.AsSpan((t - t0) * stride, width);
            Softmax<V>(row, past + t + 1, mask, scale, visible);
            if (!probabilities.IsEmpty)
            {
                var target = probabilities.Slice(((b * NH + h) * Tq + t) * Tk, Tk);
                row[..(past + t + 1)].CopyTo(target);
                target[(past + t + 1)..].Clear();
            }
        }

        // out (t1 − t0, HS) = p · V, the values cached (Tmax, HS).
        TileProduct<V>(ref MemoryMarshal.GetReference(output.Slice((b * Tq + t0) * C + h * HS)), C, ref MemoryMarshal.GetArrayDataReference(rows), stride, t1 - t0,
            ref MemoryMarshal.GetReference(values.Slice((b * NH + h) * Tmax * HS)), HS, HS, width);
    }

    /// <summary>
    /// row[j] ← softmax over the visible keys j &lt; count (mask 1) of scale · row[j]; 0 for the others, and
    /// for j ≥ count up to the end of the row. A row with no visible key becomes all zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax<V>(Span<float> row, int count, ReadOnlySpan<int> mask, float scale, float[] visible)
        where V : struct, ISimd<V>
    {
        var masked = !mask.IsEmpty && mask[..count].Contains(0);
        if (!masked)
        {
            ScaledSoftmax<V>(row[..count], scale);
        }
        else
        {
            // The visible scores side by side, so their softmax is computed exactly as without the padding.
            var n = 0;
            for (var j = 0; j < count; j++)
                if (mask[j] != 0) visible[n++] = row[j];
            ScaledSoftmax<V>(visible.AsSpan(0, n), scale);
            n = 0;
            for (var j = 0; j < count; j++) row[j] = mask[j] != 0 ? visible[n++] : 0f;
        }
        row[count..].Clear();
    }

    /// <summary>
    /// x ← softmax(scale · x) in place: e^(scale·x - max) over the sum of them. The sum runs in registers
    /// then across lanes in a fixed order, so it depends only on the values and their count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaledSoftmax<V>(Span<float> x, float scale) where V : struct, ISimd<V>
    {
        if (x.IsEmpty) return;
        ref var r = ref MemoryMarshal.GetReference(x);
        var n = x.Length;
        var j = 0;
        var maxima = V.Broadcast(float.NegativeInfinity);
        for (; j + V.Count <= n; j += V.Count) maxima = V.Max(maxima, V.Load(ref Unsafe.Add(ref r, j)));
        var max = V.Max(maxima);
        for (; j < n; j++) max = MathF.Max(max, Unsafe.Add(ref r, j));
        var shift = V.Broadcast(max * scale);
        var factor = V.Broadcast(scale);

        var sums = V.Zero;
        for (j = 0; j + V.Count <= n; j += V.Count)
        {
            ref var slot = ref Unsafe.Add(ref r, j);
            var e = VectorMath.Exp(V.Subtract(V.Multiply(V.Load(ref slot), factor), shift));
            V.Store(ref slot, e);
            sums = V.Add(sums, e);
        }
        var sum = V.Sum(sums);
        for (; j < n; j++)
        {
            var e = VectorMath.Exp(new SimdScalar(Unsafe.Add(ref r, j) * scale - max * scale)).Value;
            Unsafe.Add(ref r, j) = e;
            sum += e;
        }
        VectorMath.Scale(x, 1f / sum);
    }

    /// <summary>
    /// c[i, n] = Σ_k a[i, k]·b[k, n] for rows i &lt; rowCount, columns n &lt; columns and k &lt; depth, each sum over k in
    /// order, on register tiles of 6, 5 or 4 rows. Row i of a starts at a[i · lda], row k of b at b[k · ldb],
    /// row i of c at c[i · ldc]. Attention's two products are this: the scores q · Kᵀ (a = the queries, b = the keys,
    /// cached transposed) and the weighted values p · V (a = the probabilities, b = the values).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileProduct<V>(ref float c, int ldc, ref float a, int lda, int rowCount, ref float b, int ldb, int columns, int depth)
        where V : struct, ISimd<V>
    {
        var i = 0;
        // Tiles of six rows, the last ones of five or four (a tile of 32 queries: 6 × 4 + 4 + 4); fewer than four rows
        // in all go row by row.
        for (int rows; rowCount - i >= 4; i += rows)
        {
            rows = RowTiles.Next(rowCount - i);
            ref var ci = ref Unsafe.Add(ref c, (nint)i * ldc);
            ref var ai = ref Unsafe.Add(ref a, (nint)i * lda);
            switch (rows)
            {
                case 6: Rows<V, SixRows>(ref ci, ldc, ref ai, lda, ref b, ldb, columns, depth); break;
                case 5: Rows<V, FiveRows>(ref ci, ldc, ref ai, lda, ref b, ldb, columns, depth); break;
                default: Rows<V, FourRows>(ref ci, ldc, ref ai, lda, ref b, ldb, columns, depth); break;
            }
        }
        for (; i < rowCount; i++)
            TileProductRow<V>(ref Unsafe.Add(ref c, (nint)i * ldc), ref Unsafe.Add(ref a, (nint)i * lda), ref b, ldb, 0, columns, depth);
    }

    /// <summary><typeparamref name="R"/> rows of <see cref="TileProduct{V}"/>, every column.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<V, R>(ref float c, int ldc, ref float a, int lda, ref float b, int ldb, int columns, int depth)
        where V : struct, ISimd<V> where R : struct, ITileRows
    {
        // Vector512's 32 registers hold R rows × 4 registers of sums (six rows: ten loads per 24 multiply-adds); the columns
        // left over, and every column at the other widths, go R rows × 2 registers at a time, then row by row.
        var n = typeof(V) == typeof(Simd512) ? RowsFourRegisters<V, R>(ref c, ldc, ref a, lda, ref b, ldb, columns, depth) : 0;
        n = RowsTwoRegisters<V, R>(ref c, ldc, ref a, lda, ref b, ldb, n, columns, depth);
        for (var r = 0; r < R.Count; r++)
            TileProductRow<V>(ref Unsafe.Add(ref c, (nint)r * ldc), ref Unsafe.Add(ref a, (nint)r * lda), ref b, ldb, n, columns, depth);
    }

    /// <summary>
    /// <typeparamref name="R"/> rows of <see cref="TileProduct{V}"/>: R rows × 4 registers of columns at a time; returns the
    /// columns done. Every sum is the same multiply-adds in the same order as in the narrower tiles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int RowsFourRegisters<V, R>(ref float c, int ldc, ref float a, int lda, ref float b, int ldb, int columns, int depth)
        where V : struct, ISimd<V> where R : struct, ITileRows
    {
        ref var a0 = ref a;
        ref var a1 = ref Unsafe.Add(ref a0, lda);
        ref var a2 = ref Unsafe.Add(ref a1, lda);
        ref var a3 = ref Unsafe.Add(ref a2, lda);
        // Rows a smaller tile does not have are never addressed: their references stay on its last row.
        ref var a4 = ref R.Count > 4 ? ref Unsafe.Add(ref a3, lda) : ref a3;
        ref var a5 = ref R.Count > 5 ? ref Unsafe.Add(ref a4, lda) : ref a4;
        var n = 0;
        for (; n + 4 * V.Count <= columns; n += 4 * V.Count)
        {
            V s00 = V.Zero, s01 = V.Zero, s02 = V.Zero, s03 = V.Zero;
            V s10 = V.Zero, s11 = V.Zero, s12 = V.Zero, s13 = V.Zero;
            V s20 = V.Zero, s21 = V.Zero, s22 = V.Zero, s23 = V.Zero;
            V s30 = V.Zero, s31 = V.Zero, s32 = V.Zero, s33 = V.Zero;
            V s40 = V.Zero, s41 = V.Zero, s42 = V.Zero, s43 = V.Zero;
            V s50 = V.Zero, s51 = V.Zero, s52 = V.Zero, s53 = V.Zero;
            for (var k = 0; k < depth; k++)
            {
                ref var br = ref Unsafe.Add(ref b, (nint)k * ldb + n);
                var b0 = V.Load(ref br);
                var b1 = V.Load(ref Unsafe.Add(ref br, V.Count));
                var b2 = V.Load(ref Unsafe.Add(ref br, 2 * V.Count));
                var b3 = V.Load(ref Unsafe.Add(ref br, 3 * V.Count));
                var x = V.Broadcast(Unsafe.Add(ref a0, k));
                V.MultiplyAdd(ref s00, x, b0); V.MultiplyAdd(ref s01, x, b1); V.MultiplyAdd(ref s02, x, b2); V.MultiplyAdd(ref s03, x, b3);
                x = V.Broadcast(Unsafe.Add(ref a1, k));
                V.MultiplyAdd(ref s10, x, b0); V.MultiplyAdd(ref s11, x, b1); V.MultiplyAdd(ref s12, x, b2); V.MultiplyAdd(ref s13, x, b3);
                x = V.Broadcast(Unsafe.Add(ref a2, k));
                V.MultiplyAdd(ref s20, x, b0); V.MultiplyAdd(ref s21, x, b1); V.MultiplyAdd(ref s22, x, b2); V.MultiplyAdd(ref s23, x, b3);
                x = V.Broadcast(Unsafe.Add(ref a3, k));
                V.MultiplyAdd(ref s30, x, b0); V.MultiplyAdd(ref s31, x, b1); V.MultiplyAdd(ref s32, x, b2); V.MultiplyAdd(ref s33, x, b3);
                if (R.Count > 4)
                {
                    x = V.Broadcast(Unsafe.Add(ref a4, k));
                    V.MultiplyAdd(ref s40, x, b0); V.MultiplyAdd(ref s41, x, b1); V.MultiplyAdd(ref s42, x, b2); V.MultiplyAdd(ref s43, x, b3);
                }
                if (R.Count > 5)
                {
                    x = V.Broadcast(Unsafe.Add(ref a5, k));
                    V.MultiplyAdd(ref s50, x, b0); V.MultiplyAdd(ref s51, x, b1); V.MultiplyAdd(ref s52, x, b2); V.MultiplyAdd(ref s53, x, b3);
                }
            }
            ref var o = ref Unsafe.Add(ref c, n);
            Store4(ref o, s00, s01, s02, s03);
            Store4(ref Unsafe.Add(ref o, ldc), s10, s11, s12, s13);
            Store4(ref Unsafe.Add(ref o, 2 * ldc), s20, s21, s22, s23);
            Store4(ref Unsafe.Add(ref o, 3 * ldc), s30, s31, s32, s33);
            if (R.Count > 4) Store4(ref Unsafe.Add(ref o, 4 * ldc), s40, s41, s42, s43);
            if (R.Count > 5) Store4(ref Unsafe.Add(ref o, 5 * ldc), s50, s51, s52, s53);
        }
        return n;

        static void Store4(ref float o, V s0, V s1, V s2, V s3)
        {
            V.Store(ref o, s0);
            V.Store(ref Unsafe.Add(ref o, V.Count), s1);
            V.Store(ref Unsafe.Add(ref o, 2 * V.Count), s2);
            V.Store(ref Unsafe.Add(ref o, 3 * V.Count), s3);
        }
    }

    /// <summary>
    /// <typeparamref name="R"/> rows of <see cref="TileProduct{V}"/> for columns [from, columns), R rows × 2 registers at a
    /// time; returns the columns done.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int RowsTwoRegisters<V, R>(ref float c, int ldc, ref float a, int lda, ref float b, int ldb, int from, int columns, int depth)
        where V : struct, ISimd<V> where R : struct, ITileRows
    {
        ref var a0 = ref a;
        ref var a1 = ref Unsafe.Add(ref a0, lda);
        ref var a2 = ref Unsafe.Add(ref a1, lda);
        ref var a3 = ref Unsafe.Add(ref a2, lda);
        // Rows a smaller tile does not have are never addressed: their references stay on its last row.
        ref var a4 = ref R.Count > 4 ? ref Unsafe.Add(ref a3, lda) : ref a3;
        ref var a5 = ref R.Count > 5 ? ref Unsafe.Add(ref a4, lda) : ref a4;
        var n = from;
        for (; n + 2 * V.Count <= columns; n += 2 * V.Count)
        {
            V s00 = V.Zero, s01 = V.Zero, s10 = V.Zero, s11 = V.Zero, s20 = V.Zero, s21 = V.Zero;
            V s30 = V.Zero, s31 = V.Zero, s40 = V.Zero, s41 = V.Zero, s50 = V.Zero, s51 = V.Zero;
            for (var k = 0; k < depth; k++)
            {
                ref var br = ref Unsafe.Add(ref b, (nint)k * ldb + n);
                var b0 = V.Load(ref br);
                var b1 = V.Load(ref Unsafe.Add(ref br, V.Count));
                var x = V.Broadcast(Unsafe.Add(ref a0, k));
                V.MultiplyAdd(ref s00, x, b0); V.MultiplyAdd(ref s01, x, b1);
                x = V.Broadcast(Unsafe.Add(ref a1, k));
                V.MultiplyAdd(ref s10, x, b0); V.MultiplyAdd(ref s11, x, b1);
                x = V.Broadcast(Unsafe.Add(ref a2, k));
                V.MultiplyAdd(ref s20, x, b0); V.MultiplyAdd(ref s21, x, b1);
                x = V.Broadcast(Unsafe.Add(ref a3, k));
                V.MultiplyAdd(ref s30, x, b0); V.MultiplyAdd(ref s31, x, b1);
                if (R.Count > 4)
                {
                    x = V.Broadcast(Unsafe.Add(ref a4, k));
                    V.MultiplyAdd(ref s40, x, b0); V.MultiplyAdd(ref s41, x, b1);
                }
                if (R.Count > 5)
                {
                    x = V.Broadcast(Unsafe.Add(ref a5, k));
                    V.MultiplyAdd(ref s50, x, b0); V.MultiplyAdd(ref s51, x, b1);
                }
            }
            ref var o = ref Unsafe.Add(ref c, n);
            V.Store(ref o, s00); V.Store(ref Unsafe.Add(ref o, V.Count), s01);
            o = ref Unsafe.Add(ref o, ldc);
            V.Store(ref o, s10); V.Store(ref Unsafe.Add(ref o, V.Count), s11);
            o = ref Unsafe.Add(ref o, ldc);
            V.Store(ref o, s20); V.Store(ref Unsafe.Add(ref o, V.Count), s21);
            o = ref Unsafe.Add(ref o, ldc);
            V.Store(ref o, s30); V.Store(ref Unsafe.Add(ref o, V.Count), s31);
            if (R.Count > 4)
            {
                o = ref Unsafe.Add(ref o, ldc);
                V.Store(ref o, s40); V.Store(ref Unsafe.Add(ref o, V.Count), s41);
            }
            if (R.Count > 5)
            {
                o = ref Unsafe.Add(ref o, ldc);
                V.Store(ref o, s50); V.Store(ref Unsafe.Add(ref o, V.Count), s51);
            }
        }
        return n;
    }

    /// <summary>
    /// One row of <see cref="TileProduct{V}"/> for columns [from, columns): eight registers, four, two, one, then single columns.
    /// A decoding step is this row alone: eight registers read 8 · V.Count consecutive floats of each row of b
    /// (512 bytes with Vector512) per visit, where two registers left the prefetcher 64 short streams to follow.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileProductRow<V>(ref float c, ref float a, ref float b, int ldb, int from, int columns, int depth) where V : struct, ISimd<V>
    {
        var n = from;
        for (; n + 8 * V.Count <= columns; n += 8 * V.Count)
        {
            V s0 = V.Zero, s1 = V.Zero, s2 = V.Zero, s3 = V.Zero, s4 = V.Zero, s5 = V.Zero, s6 = V.Zero, s7 = V.Zero;
            for (var k = 0; k < depth; k++)
            {
                ref var br = ref Unsafe.Add(ref b, (nint)k * ldb + n);
                var x = V.Broadcast(Unsafe.Add(ref a, k));
                V.MultiplyAdd(ref s0, x, V.Load(ref br));
                V.MultiplyAdd(ref s1, x, V.Load(ref Unsafe.Add(ref br, V.Count)));
                V.MultiplyAdd(ref s2, x, V.Load(ref Unsafe.Add(ref br, 2 * V.Count)));
                V.MultiplyAdd(ref s3, x, V.Load(ref Unsafe.Add(ref br, 3 * V.Count)));
                V.MultiplyAdd(ref s4, x, V.Load(ref Unsafe.Add(ref br, 4 * V.Count)));
                V.MultiplyAdd(ref s5, x, V.Load(ref Unsafe.Add(ref br, 5 * V.Count)));
                V.MultiplyAdd(ref s6, x, V.Load(ref Unsafe.Add(ref br, 6 * V.Count)));
                V.MultiplyAdd(ref s7, x, V.Load(ref Unsafe.Add(ref br, 7 * V.Count)));
            }
            ref var o = ref Unsafe.Add(ref c, n);
            V.Store(ref o, s0);
            V.Store(ref Unsafe.Add(ref o, V.Count), s1);
            V.Store(ref Unsafe.Add(ref o, 2 * V.Count), s2);
            V.Store(ref Unsafe.Add(ref o, 3 * V.Count), s3);
            V.Store(ref Unsafe.Add(ref o, 4 * V.Count), s4);
            V.Store(ref Unsafe.Add(ref o, 5 * V.Count), s5);
            V.Store(ref Unsafe.Add(ref o, 6 * V.Count), s6);
            V.Store(ref Unsafe.Add(ref o, 7 * V.Count), s7);
        }
        // Four registers: a decoding step's weighted values, 64 channels with Vector512, in one pass over the positions.
        for (; n + 4 * V.Count <= columns; n += 4 * V.Count)
        {
            V s0 = V.Zero, s1 = V.Zero, s2 = V.Zero, s3 = V.Zero;
            for (var k = 0; k < depth; k++)
            {
                ref var br = ref Unsafe.Add(ref b, (nint)k * ldb + n);
                var x = V.Broadcast(Unsafe.Add(ref a, k));
                V.MultiplyAdd(ref s0, x, V.Load(ref br));
                V.MultiplyAdd(ref s1, x, V.Load(ref Unsafe.Add(ref br, V.Count)));
                V.MultiplyAdd(ref s2, x, V.Load(ref Unsafe.Add(ref br, 2 * V.Count)));
                V.MultiplyAdd(ref s3, x, V.Load(ref Unsafe.Add(ref br, 3 * V.Count)));
            }
            ref var o = ref Unsafe.Add(ref c, n);
            V.Store(ref o, s0);
            V.Store(ref Unsafe.Add(ref o, V.Count), s1);
            V.Store(ref Unsafe.Add(ref o, 2 * V.Count), s2);
            V.Store(ref Unsafe.Add(ref o, 3 * V.Count), s3);
        }
        for (; n + 2 * V.Count <= columns; n += 2 * V.Count)
        {
            V s0 = V.Zero, s1 = V.Zero;
            for (var k = 0; k < depth; k++)
            {
                ref var br = ref Unsafe.Add(ref b, (nint)k * ldb + n);
                var x = V.Broadcast(Unsafe.Add(ref a, k));
                V.MultiplyAdd(ref s0, x, V.Load(ref br));
                V.MultiplyAdd(ref s1, x, V.Load(ref Unsafe.Add(ref br, V.Count)));
            }
            V.Store(ref Unsafe.Add(ref c, n), s0);
            V.Store(ref Unsafe.Add(ref c, n + V.Count), s1);
        }
        for (; n + V.Count <= columns; n += V.Count)
        {
            var sum = V.Zero;
            for (var k = 0; k < depth; k++)
                V.MultiplyAdd(ref sum, V.Broadcast(Unsafe.Add(ref a, k)), V.Load(ref Unsafe.Add(ref b, (nint)k * ldb + n)));
            V.Store(ref Unsafe.Add(ref c, n), sum);
        }
        for (; n < columns; n++)
        {
            var sum = 0f;
            for (var k = 0; k < depth; k++)
                sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref a, k), Unsafe.Add(ref b, (nint)k * ldb + n), sum);
            Unsafe.Add(ref c, n) = sum;
        }
    }

    /// <summary>Scalar reference in double, reading the same cache layout; the scores are <paramref name="scale"/> · q·k.</summary>
    public static void Reference(Span<float> output, Span<float> probabilities, ReadOnlySpan<float> qkv,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, ReadOnlySpan<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS, double scale)
    {
        var C = NH * HS;
        var Tk = past + Tq;
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
