using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeGpt2.Weights;

namespace NativeGpt2.Operators;

/// <summary>
/// A projection whose weight is stored one row per output channel: <c>out = input · weightᵀ</c>.
/// This is the LM head, where the weight is the token-embedding matrix (V, C) read in place, in any
/// <see cref="WeightFormat"/> (16- and 8-bit rows are widened in registers).
/// </summary>
/// <remarks>
/// Shapes: out (N, OC), input (N, IC), weight (OC, IC) row-major. Each output is the dot product of an
/// input row and a weight row, both contiguous: a register tile of 3 input rows × 4 weight rows keeps
/// twelve accumulators (6 × 4, or 7 or 8 rows × 2, with Vector512's 32 registers), each summing IC / width
/// lanes, then its lanes in a fixed order, then the IC % width tail. Every output is computed that way
/// whatever tile computes it, so a row's logits do not depend on the batch.
/// </remarks>
internal static partial class MatMulTransposed
{
    private const int TileRows = 3;
    private const int TileWeights = 4;

    // Weight rows per work item: the item's slice of the table is read once per block of input rows.
    private const int PanelRows = 128;

    // How far ahead a float32 decoding step with Vector512 asks for the table's rows. Measured on the 124M head, runs
    // of each distance interleaved in one process (AMD EPYC Zen 5, 2 threads): two rows ahead read 8-9 % faster than
    // leaving the stream to the hardware prefetcher, four 7 %, eight 3 %.
    private const int Float32RowsAhead = 2;

    /// <summary>Runs the projection at the given SIMD width, spread over the cores.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, WeightData weight, int N, int IC, int OC, VectorWidth width)
    {
        if (N < 0 || IC <= 0 || OC <= 0) throw new ArgumentOutOfRangeException(nameof(N), $"sizes N={N}, IC={IC}, OC={OC} must be positive");
        if (input.Length < (long)N * IC) throw new ArgumentException($"input holds {input.Length} values, needs N·IC = {(long)N * IC}", nameof(input));
        if (output.Length < (long)N * OC) throw new ArgumentException($"output holds {output.Length} values, needs N·OC = {(long)N * OC}", nameof(output));
        if (weight.Rows != OC || weight.Cols != IC || weight.Layout != WeightLayout.RowMajor)
            throw new ArgumentException($"weight is ({weight.Rows}, {weight.Cols}) in {weight.Layout}, needs ({OC}, {IC}) row-major", nameof(weight));
        switch (width)
        {
            case VectorWidth.Vector512: Run<Simd512>(output, input, weight, N, IC, OC); break;
            case VectorWidth.Vector256: Run<Simd256>(output, input, weight, N, IC, OC); break;
            case VectorWidth.Vector128: Run<Simd128>(output, input, weight, N, IC, OC); break;
            default: Run<SimdScalar>(output, input, weight, N, IC, OC); break;
        }
    }

    private static void Run<V>(Memory<float> output, ReadOnlyMemory<float> input, WeightData weight, int N, int IC, int OC) where V : struct, ISimd<V>
    {
        switch (weight)
        {
            case Float32Data f: Run<V, TableRows<float, Float32Widening>>(new(f.Values, IC), output, input, N, IC, OC, f.Values); break;
            case Float16Data { AllFinite: true } f: Run<V, TableRows<Half, FiniteFloat16Widening>>(new(f.Values, IC), output, input, N, IC, OC); break;
            case Float16Data f: Run<V, TableRows<Half, Float16Widening>>(new(f.Values, IC), output, input, N, IC, OC); break;
            case BFloat16Data f: Run<V, TableRows<ushort, BFloat16Widening>>(new(f.Values, IC), output, input, N, IC, OC); break;
            case Q8Data q: Run<V, Q8Rows>(new(q.Values, q.Scales, q.Panels), output, input, N, IC, OC); break;
            default: throw new ArgumentException($"unsupported weight storage {weight.GetType().Name}", nameof(weight));
        }
    }

    /// <summary>The projection over <paramref name="rows"/>; <paramref name="table"/> holds them when they are float32.</summary>
    private static void Run<V, R>(R rows, Memory<float> output, ReadOnlyMemory<float> input, int N, int IC, int OC, float[]? table = null)
        where V : struct, ISimd<V> where R : struct, IRowView
    {
        if (typeof(V) == typeof(Simd512) && N >= PanelRowsFrom && typeof(R) != typeof(TableRows<ushort, BFloat16Widening>))
        {
            // Many rows with Vector512: the same sums on a tile that broadcasts inputs over transposed panels. bfloat16
            // stays on the row tiles, which widen it with one shift as they read it: they ran the 124M head at 128 rows
            // in 22.5 ms where the panels took 24.8-25.8 (float16 30 → 24.7 ms on the panels, q8 28.6-32.7 → 25.7-31).
            OverPanels(output, input, rows, table, N, IC, OC);
            return;
        }
        var panels = (OC + PanelRows - 1) / PanelRows;
        // Several input rows reuse each weight row: a float16 or 8-bit panel is widened to float32 once per work
        // item (exactly, so the results are the same) rather than in every tile. bfloat16 widens with one shift,
        // cheaper inline.
        var widen = (typeof(R) == typeof(TableRows<Half, Float16Widening>) || typeof(R) == typeof(TableRows<Half, FiniteFloat16Widening>) || typeof(R) == typeof(Q8Rows)) && N >= 2 * TileRows;
        Parallelism.For(panels, (long)N * IC * PanelRows, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var scratch = widen ? ArrayPool<float>.Shared.Rent(PanelRows * IC) : null;
            for (var panel = start; panel < end; panel++)
            {
                int from = panel * PanelRows, to = Math.Min(OC, from + PanelRows);
                if (scratch is null) Panel<V, R>(rows, output.Span, input.Span, N, IC, OC, from, to);
                else
                {
                    Widen<V, R>(rows, from, to, IC, scratch);
                    Panel<V, WidenedRows>(new(scratch, IC, from), output.Span, input.Span, N, IC, OC, from, to);
                }
            }
            if (scratch is not null) ArrayPool<float>.Shared.Return(scratch);
        });
    }

    /// <summary>Rows [from, to) as float32, row-major in <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Widen<V, R>(R rows, int from, int to, int IC, float[] destination) where V : struct, ISimd<V> where R : struct, IRowView
    {
        ref var d = ref MemoryMarshal.GetArrayDataReference(destination);
        for (var k = from; k < to; k++)
        {
            var start = rows.Start(k);
            ref var row = ref Unsafe.Add(ref d, (nint)(k - from) * IC);
            var i = 0;
            for (; i <= IC - V.Count; i += V.Count) V.Store(ref Unsafe.Add(ref row, i), rows.Load<V>(start, i));
            for (; i < IC; i++) Unsafe.Add(ref row, i) = rows.Element(start, i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panel<V, R>(R rows, Span<float> output, ReadOnlySpan<float> input, int N, int IC, int OC, int from, int to)
        where V : struct, ISimd<V> where R : struct, IRowView
    {
        ref var x = ref MemoryMarshal.GetReference(input);
        ref var o = ref MemoryMarshal.GetReference(output);
        var n = 0;
        // Six rows a tile where 32 registers hold 24 accumulators (Vector512); three rows otherwise.
        if (V.Count == 16)
        {
            for (; n + 2 * TileRows <= N && N - n is not (7 or 8); n += 2 * TileRows)
                Rows<V, R>(rows, ref x, ref o, n, 2 * TileRows, IC, OC, from, to);
            if (N - n is 7 or 8)
            {
                // Seven or eight rows (a batch of that many sequences decoding): one pass of a tile two weight rows wide,
                // where 6 + 2 or 6 + 1 read the panel twice.
                Rows<V, R>(rows, ref x, ref o, n, N - n, IC, OC, from, to);
                return;
            }
        }
        if (V.Count == 16 && N - n == 4)
        {
            // Four rows left (four sequences decoding together: beams, contrastive candidates, a batch): one pass of a
            // 4-row tile, where a 3-row pass and a 1-row pass read the panel twice.
            Rows<V, R>(rows, ref x, ref o, n, 4, IC, OC, from, to);
            return;
        }
        for (; n + TileRows <= N; n += TileRows)
            Rows<V, R>(rows, ref x, ref o, n, TileRows, IC, OC, from, to);
        if (n + 2 == N)
        {
            Rows<V, R>(rows, ref x, ref o, n, 2, IC, OC, from, to);
            return;
        }
        if (V.Count == 16 && N == 1 && typeof(R) == typeof(TableRows<float, Float32Widening>))
        {
            // Decoding float32 with Vector512: one weight row after another, the most sequential read of the table,
            // which is what bounds this case, each row asked for Float32RowsAhead rows before it is summed. On the
            // Zen 5 it read 12-19 % faster than the 1 × 4 tile below. Narrower vectors take the tile: one row's sum is
            // a chain of IC / V.Count dependent multiply-adds, 96 at 256 bits for GPT-2's head and 192 at 128, too long
            // for one core to keep up with memory (with the tile the Zen 5 read the head 5-20 % faster at 256 bits on
            // one core, 0-10 % on two, and twice as fast at 128 bits; a Zen 1 read it 15-20 % faster at 256). Narrower
            // formats take the tile too: widening makes one sum at a time too slow.
            for (var k = from; k < to; k++)
            {
                rows.Prefetch(rows.Start(k + Float32RowsAhead), IC);
                Unsafe.Add(ref o, k) = Dot<V, R>(rows, ref x, IC, k);
            }
            return;
        }
        // The rows a tile leaves over: four weight rows at a time, four sums in flight.
        for (; n < N; n++)
            Rows<V, R>(rows, ref x, ref o, n, 1, IC, OC, from, to);
    }

    /// <summary>Input rows [n, n + count) against weight rows [from, to), by the tile for that count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows<V, R>(R rows, ref float x, ref float o, int n, int count, int IC, int OC, int from, int to)
        where V : struct, ISimd<V> where R : struct, IRowView
    {
        ref var xn = ref Unsafe.Add(ref x, (nint)n * IC);
        ref var on = ref Unsafe.Add(ref o, (nint)n * OC);
        var width = WeightsPerTile(count);
        var k = from;
        for (; k + width <= to; k += width)
        {
            ref var ok = ref Unsafe.Add(ref on, k);
            // The first rows of the batch read the table from memory: they ask for the next tile's weight rows as they go
            // (a separate compilation of the tile, so the others carry no test for it).
            var ahead = rows.Start(k + width);
            if (n == 0) Tile<V, R, AskAhead>(rows, count, ref xn, IC, k, ref ok, OC, ahead);
            else Tile<V, R, InCache>(rows, count, ref xn, IC, k, ref ok, OC, ahead);
        }
        for (; k < to; k++)
        {
            for (var r = 0; r < count; r++)
                Unsafe.Add(ref on, (nint)r * OC + k) = Dot<V, R>(rows, ref Unsafe.Add(ref xn, (nint)r * IC), IC, k);
        }
    }

    /// <summary>
    /// 7 or 8 input rows × weight rows [k, k + 2): sixteen dot products in flight, the two weight vectors and the
    /// input vector of the row being summed in three more of the 32 registers (Vector512 only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8x2<V, R, T, A>(R rows, ref float x0, int IC, int k, ref float o, int OC, nint ahead)
        where V : struct, ISimd<V> where R : struct, IRowView where T : struct, ITileRows where A : struct, IReadAhead
    {
        nint r0 = rows.Start(k), r1 = rows.Start(k + 1);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        ref var x3 = ref Unsafe.Add(ref x2, IC);
        ref var x4 = ref Unsafe.Add(ref x3, IC);
        ref var x5 = ref Unsafe.Add(ref x4, IC);
        ref var x6 = ref Unsafe.Add(ref x5, IC);
        // The eighth row's reference when there are seven: never read.
        ref var x7 = ref T.Count == 8 ? ref Unsafe.Add(ref x6, IC) : ref x6;
        V a00 = V.Zero, a01 = V.Zero, a10 = V.Zero, a11 = V.Zero, a20 = V.Zero, a21 = V.Zero, a30 = V.Zero, a31 = V.Zero;
        V a40 = V.Zero, a41 = V.Zero, a50 = V.Zero, a51 = V.Zero, a60 = V.Zero, a61 = V.Zero, a70 = V.Zero, a71 = V.Zero;
        var i = 0;
        for (; i <= IC - V.Count; i += V.Count)
        {
            // Values [ahead, ahead + 2·IC): the next tile's rows, a slice per step. A hint: past the table's end is harmless.
            if (A.Asks) rows.Prefetch(ahead + 2 * i, 2 * V.Count);
            var w0 = rows.Load<V>(r0, i);
            var w1 = rows.Load<V>(r1, i);
            var v = V.Load(ref Unsafe.Add(ref x0, i));
            V.MultiplyAdd(ref a00, v, w0); V.MultiplyAdd(ref a01, v, w1);
            v = V.Load(ref Unsafe.Add(ref x1, i));
            V.MultiplyAdd(ref a10, v, w0); V.MultiplyAdd(ref a11, v, w1);
            v = V.Load(ref Unsafe.Add(ref x2, i));
            V.MultiplyAdd(ref a20, v, w0); V.MultiplyAdd(ref a21, v, w1);
            v = V.Load(ref Unsafe.Add(ref x3, i));
            V.MultiplyAdd(ref a30, v, w0); V.MultiplyAdd(ref a31, v, w1);
            v = V.Load(ref Unsafe.Add(ref x4, i));
            V.MultiplyAdd(ref a40, v, w0); V.MultiplyAdd(ref a41, v, w1);
            v = V.Load(ref Unsafe.Add(ref x5, i));
            V.MultiplyAdd(ref a50, v, w0); V.MultiplyAdd(ref a51, v, w1);
            v = V.Load(ref Unsafe.Add(ref x6, i));
            V.MultiplyAdd(ref a60, v, w0); V.MultiplyAdd(ref a61, v, w1);
            if (T.Count == 8)
            {
                v = V.Load(ref Unsafe.Add(ref x7, i));
                V.MultiplyAdd(ref a70, v, w0); V.MultiplyAdd(ref a71, v, w1);
            }
        }
        FinishTwo<V, R>(rows, ref o, ref x0, IC, r0, r1, i, a00, a01);
        FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, OC), ref x1, IC, r0, r1, i, a10, a11);
        FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, 2 * OC), ref x2, IC, r0, r1, i, a20, a21);
        FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, 3 * OC), ref x3, IC, r0, r1, i, a30, a31);
        FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, 4 * OC), ref x4, IC, r0, r1, i, a40, a41);
        FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, 5 * OC), ref x5, IC, r0, r1, i, a50, a51);
        FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, 6 * OC), ref x6, IC, r0, r1, i, a60, a61);
        if (T.Count == 8) FinishTwo<V, R>(rows, ref Unsafe.Add(ref o, 7 * OC), ref x7, IC, r0, r1, i, a70, a71);
    }

    /// <summary>Weight rows a tile of <paramref name="count"/> input rows sums: two for seven or eight (Vector512 only), else four.</summary>
    private static int WeightsPerTile(int count) => count is 7 or 8 ? 2 : TileWeights;

    /// <summary>
    /// Input rows [0, count) from <paramref name="x0"/> × weight rows [k, k + <see cref="WeightsPerTile"/>(count)), by the
    /// tile for that count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile<V, R, A>(R rows, int count, ref float x0, int IC, int k, ref float o, int OC, nint ahead)
        where V : struct, ISimd<V> where R : struct, IRowView where A : struct, IReadAhead
    {
        if (count == 8) Tile8x2<V, R, EightRows, A>(rows, ref x0, IC, k, ref o, OC, ahead);
        else if (count == 7) Tile8x2<V, R, SevenRows, A>(rows, ref x0, IC, k, ref o, OC, ahead);
        else if (count == 6) Tile6x4<V, R, A>(rows, ref x0, IC, k, ref o, OC, ahead);
        else if (count == 4) Tile4x4<V, R, A>(rows, ref x0, IC, k, ref o, OC, ahead);
        else if (count == 3) Tile3x4<V, R, A>(rows, ref x0, IC, k, ref o, OC, ahead);
        else if (count == 2) Tile2x4<V, R, A>(rows, ref x0, IC, k, ref o, OC, ahead);
        else Tile1x4<V, R>(rows, ref x0, IC, k, ref o);
    }

    /// <summary>2 input rows × weight rows [k, k + 4): eight dot products in flight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile2x4<V, R, A>(R rows, ref float x0, int IC, int k, ref float o, int OC, nint ahead)
        where V : struct, ISimd<V> where R : struct, IRowView where A : struct, IReadAhead
    {
        nint r0 = rows.Start(k), r1 = rows.Start(k + 1), r2 = rows.Start(k + 2), r3 = rows.Start(k + 3);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        V a00 = V.Zero, a01 = V.Zero, a02 = V.Zero, a03 = V.Zero;
        V a10 = V.Zero, a11 = V.Zero, a12 = V.Zero, a13 = V.Zero;
        var i = 0;
        for (; i <= IC - V.Count; i += V.Count)
        {
            // Values [ahead, ahead + 4·IC): the next tile's rows, a slice per step. A hint: past the table's end is harmless.
            if (A.Asks) rows.Prefetch(ahead + TileWeights * i, TileWeights * V.Count);
            var v0 = V.Load(ref Unsafe.Add(ref x0, i));
            var v1 = V.Load(ref Unsafe.Add(ref x1, i));
            var w = rows.Load<V>(r0, i);
            V.MultiplyAdd(ref a00, v0, w); V.MultiplyAdd(ref a10, v1, w);
            w = rows.Load<V>(r1, i);
            V.MultiplyAdd(ref a01, v0, w); V.MultiplyAdd(ref a11, v1, w);
            w = rows.Load<V>(r2, i);
            V.MultiplyAdd(ref a02, v0, w); V.MultiplyAdd(ref a12, v1, w);
            w = rows.Load<V>(r3, i);
            V.MultiplyAdd(ref a03, v0, w); V.MultiplyAdd(ref a13, v1, w);
        }
        Finish<V, R>(rows, ref o, ref x0, IC, r0, r1, r2, r3, i, a00, a01, a02, a03);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, OC), ref x1, IC, r0, r1, r2, r3, i, a10, a11, a12, a13);
    }

    /// <summary>1 input row × weight rows [k, k + 4): four dot products in flight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x4<V, R>(R rows, ref float x0, int IC, int k, ref float o) where V : struct, ISimd<V> where R : struct, IRowView
    {
        nint r0 = rows.Start(k), r1 = rows.Start(k + 1), r2 = rows.Start(k + 2), r3 = rows.Start(k + 3);
        V a00 = V.Zero, a01 = V.Zero, a02 = V.Zero, a03 = V.Zero;
        // The rows a few tiles ahead, contiguous in the table, asked for a slice per step: 4 · V.Count values.
        var ahead = rows.PrefetchRows;
        var next = rows.Start(k + ahead);
        var i = 0;
        if (typeof(R) == typeof(Q8Rows))
        {
            // q8, the same sums block by block: each row's block scale read and broadcast once per 32 values instead
            // of once per register (an index computation, a load and a broadcast every 8 or 16 values, which made
            // the q8 head a third of a 256-bit decoding step). The loop below takes a last partial block.
            // Each row's values and scales are addressed from references found once (Q8Rows.Load finds them from the
            // row's start in every load: an address computation and a null check each).
            const int B = WeightData.PanelWidth;
            var q8 = Unsafe.As<R, Q8Rows>(ref rows);
            ref sbyte q0 = ref q8.ValueAt(r0), q1 = ref q8.ValueAt(r1), q2 = ref q8.ValueAt(r2), q3 = ref q8.ValueAt(r3);
            ref float c0 = ref q8.ScaleAt(r0), c1 = ref q8.ScaleAt(r1), c2 = ref q8.ScaleAt(r2), c3 = ref q8.ScaleAt(r3);
            for (var block = 0; i + B <= IC; i += B, block++)
            {
                q8.Prefetch(next + TileWeights * i, TileWeights * B);
                V s0 = V.Broadcast(Unsafe.Add(ref c0, block)), s1 = V.Broadcast(Unsafe.Add(ref c1, block));
                V s2 = V.Broadcast(Unsafe.Add(ref c2, block)), s3 = V.Broadcast(Unsafe.Add(ref c3, block));
                for (var j = i; j < i + B; j += V.Count)
                {
                    var v0 = V.Load(ref Unsafe.Add(ref x0, j));
                    V.MultiplyAdd(ref a00, v0, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q0, j)), s0));
                    V.MultiplyAdd(ref a01, v0, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q1, j)), s1));
                    V.MultiplyAdd(ref a02, v0, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q2, j)), s2));
                    V.MultiplyAdd(ref a03, v0, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q3, j)), s3));
                }
            }
        }
        for (; i <= IC - V.Count; i += V.Count)
        {
            if (ahead > 0) rows.Prefetch(next + TileWeights * i, TileWeights * V.Count);
            var v0 = V.Load(ref Unsafe.Add(ref x0, i));
            V.MultiplyAdd(ref a00, v0, rows.Load<V>(r0, i));
            V.MultiplyAdd(ref a01, v0, rows.Load<V>(r1, i));
            V.MultiplyAdd(ref a02, v0, rows.Load<V>(r2, i));
            V.MultiplyAdd(ref a03, v0, rows.Load<V>(r3, i));
        }
        Finish<V, R>(rows, ref o, ref x0, IC, r0, r1, r2, r3, i, a00, a01, a02, a03);
    }

    /// <summary>3 input rows × weight rows [k, k + 4): twelve dot products in flight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile3x4<V, R, A>(R rows, ref float x0, int IC, int k, ref float o, int OC, nint ahead)
        where V : struct, ISimd<V> where R : struct, IRowView where A : struct, IReadAhead
    {
        nint r0 = rows.Start(k), r1 = rows.Start(k + 1), r2 = rows.Start(k + 2), r3 = rows.Start(k + 3);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        V a00 = V.Zero, a01 = V.Zero, a02 = V.Zero, a03 = V.Zero;
        V a10 = V.Zero, a11 = V.Zero, a12 = V.Zero, a13 = V.Zero;
        V a20 = V.Zero, a21 = V.Zero, a22 = V.Zero, a23 = V.Zero;
        var i = 0;
        for (; i <= IC - V.Count; i += V.Count)
        {
            // Values [ahead, ahead + 4·IC): the next tile's rows, a slice per step. A hint: past the table's end is harmless.
            if (A.Asks) rows.Prefetch(ahead + TileWeights * i, TileWeights * V.Count);
            var v0 = V.Load(ref Unsafe.Add(ref x0, i));
            var v1 = V.Load(ref Unsafe.Add(ref x1, i));
            var v2 = V.Load(ref Unsafe.Add(ref x2, i));
            var w = rows.Load<V>(r0, i);
            V.MultiplyAdd(ref a00, v0, w); V.MultiplyAdd(ref a10, v1, w); V.MultiplyAdd(ref a20, v2, w);
            w = rows.Load<V>(r1, i);
            V.MultiplyAdd(ref a01, v0, w); V.MultiplyAdd(ref a11, v1, w); V.MultiplyAdd(ref a21, v2, w);
            w = rows.Load<V>(r2, i);
            V.MultiplyAdd(ref a02, v0, w); V.MultiplyAdd(ref a12, v1, w); V.MultiplyAdd(ref a22, v2, w);
            w = rows.Load<V>(r3, i);
            V.MultiplyAdd(ref a03, v0, w); V.MultiplyAdd(ref a13, v1, w); V.MultiplyAdd(ref a23, v2, w);
        }
        Finish<V, R>(rows, ref o, ref x0, IC, r0, r1, r2, r3, i, a00, a01, a02, a03);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, OC), ref x1, IC, r0, r1, r2, r3, i, a10, a11, a12, a13);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 2 * OC), ref x2, IC, r0, r1, r2, r3, i, a20, a21, a22, a23);
    }

    /// <summary>4 input rows × weight rows [k, k + 4): sixteen dot products in flight (Vector512 only: 32 registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4<V, R, A>(R rows, ref float x0, int IC, int k, ref float o, int OC, nint ahead)
        where V : struct, ISimd<V> where R : struct, IRowView where A : struct, IReadAhead
    {
        nint r0 = rows.Start(k), r1 = rows.Start(k + 1), r2 = rows.Start(k + 2), r3 = rows.Start(k + 3);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        ref var x3 = ref Unsafe.Add(ref x2, IC);
        V a00 = V.Zero, a01 = V.Zero, a02 = V.Zero, a03 = V.Zero;
        V a10 = V.Zero, a11 = V.Zero, a12 = V.Zero, a13 = V.Zero;
        V a20 = V.Zero, a21 = V.Zero, a22 = V.Zero, a23 = V.Zero;
        V a30 = V.Zero, a31 = V.Zero, a32 = V.Zero, a33 = V.Zero;
        var i = 0;
        for (; i <= IC - V.Count; i += V.Count)
        {
            // Values [ahead, ahead + 4·IC): the next tile's rows, a slice per step. A hint: past the table's end is harmless.
            if (A.Asks) rows.Prefetch(ahead + TileWeights * i, TileWeights * V.Count);
            var v0 = V.Load(ref Unsafe.Add(ref x0, i));
            var v1 = V.Load(ref Unsafe.Add(ref x1, i));
            var v2 = V.Load(ref Unsafe.Add(ref x2, i));
            var v3 = V.Load(ref Unsafe.Add(ref x3, i));
            var w = rows.Load<V>(r0, i);
            V.MultiplyAdd(ref a00, v0, w); V.MultiplyAdd(ref a10, v1, w); V.MultiplyAdd(ref a20, v2, w); V.MultiplyAdd(ref a30, v3, w);
            w = rows.Load<V>(r1, i);
            V.MultiplyAdd(ref a01, v0, w); V.MultiplyAdd(ref a11, v1, w); V.MultiplyAdd(ref a21, v2, w); V.MultiplyAdd(ref a31, v3, w);
            w = rows.Load<V>(r2, i);
            V.MultiplyAdd(ref a02, v0, w); V.MultiplyAdd(ref a12, v1, w); V.MultiplyAdd(ref a22, v2, w); V.MultiplyAdd(ref a32, v3, w);
            w = rows.Load<V>(r3, i);
            V.MultiplyAdd(ref a03, v0, w); V.MultiplyAdd(ref a13, v1, w); V.MultiplyAdd(ref a23, v2, w); V.MultiplyAdd(ref a33, v3, w);
        }
        Finish<V, R>(rows, ref o, ref x0, IC, r0, r1, r2, r3, i, a00, a01, a02, a03);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, OC), ref x1, IC, r0, r1, r2, r3, i, a10, a11, a12, a13);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 2 * OC), ref x2, IC, r0, r1, r2, r3, i, a20, a21, a22, a23);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 3 * OC), ref x3, IC, r0, r1, r2, r3, i, a30, a31, a32, a33);
    }

    /// <summary>6 input rows × weight rows [k, k + 4): twenty-four dot products in flight (Vector512 only: 32 registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6x4<V, R, A>(R rows, ref float x0, int IC, int k, ref float o, int OC, nint ahead)
        where V : struct, ISimd<V> where R : struct, IRowView where A : struct, IReadAhead
    {
        nint r0 = rows.Start(k), r1 = rows.Start(k + 1), r2 = rows.Start(k + 2), r3 = rows.Start(k + 3);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        ref var x3 = ref Unsafe.Add(ref x2, IC);
        ref var x4 = ref Unsafe.Add(ref x3, IC);
        ref var x5 = ref Unsafe.Add(ref x4, IC);
        V a00 = V.Zero, a01 = V.Zero, a02 = V.Zero, a03 = V.Zero;
        V a10 = V.Zero, a11 = V.Zero, a12 = V.Zero, a13 = V.Zero;
        V a20 = V.Zero, a21 = V.Zero, a22 = V.Zero, a23 = V.Zero;
        V a30 = V.Zero, a31 = V.Zero, a32 = V.Zero, a33 = V.Zero;
        V a40 = V.Zero, a41 = V.Zero, a42 = V.Zero, a43 = V.Zero;
        V a50 = V.Zero, a51 = V.Zero, a52 = V.Zero, a53 = V.Zero;
        var i = 0;
        for (; i <= IC - V.Count; i += V.Count)
        {
            // Values [ahead, ahead + 4·IC): the next tile's rows, a slice per step. A hint: past the table's end is harmless.
            if (A.Asks) rows.Prefetch(ahead + TileWeights * i, TileWeights * V.Count);
            var v0 = V.Load(ref Unsafe.Add(ref x0, i));
            var v1 = V.Load(ref Unsafe.Add(ref x1, i));
            var v2 = V.Load(ref Unsafe.Add(ref x2, i));
            var v3 = V.Load(ref Unsafe.Add(ref x3, i));
            var v4 = V.Load(ref Unsafe.Add(ref x4, i));
            var v5 = V.Load(ref Unsafe.Add(ref x5, i));
            var w = rows.Load<V>(r0, i);
            V.MultiplyAdd(ref a00, v0, w); V.MultiplyAdd(ref a10, v1, w); V.MultiplyAdd(ref a20, v2, w); V.MultiplyAdd(ref a30, v3, w); V.MultiplyAdd(ref a40, v4, w); V.MultiplyAdd(ref a50, v5, w);
            w = rows.Load<V>(r1, i);
            V.MultiplyAdd(ref a01, v0, w); V.MultiplyAdd(ref a11, v1, w); V.MultiplyAdd(ref a21, v2, w); V.MultiplyAdd(ref a31, v3, w); V.MultiplyAdd(ref a41, v4, w); V.MultiplyAdd(ref a51, v5, w);
            w = rows.Load<V>(r2, i);
            V.MultiplyAdd(ref a02, v0, w); V.MultiplyAdd(ref a12, v1, w); V.MultiplyAdd(ref a22, v2, w); V.MultiplyAdd(ref a32, v3, w); V.MultiplyAdd(ref a42, v4, w); V.MultiplyAdd(ref a52, v5, w);
            w = rows.Load<V>(r3, i);
            V.MultiplyAdd(ref a03, v0, w); V.MultiplyAdd(ref a13, v1, w); V.MultiplyAdd(ref a23, v2, w); V.MultiplyAdd(ref a33, v3, w); V.MultiplyAdd(ref a43, v4, w); V.MultiplyAdd(ref a53, v5, w);
        }
        Finish<V, R>(rows, ref o, ref x0, IC, r0, r1, r2, r3, i, a00, a01, a02, a03);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, OC), ref x1, IC, r0, r1, r2, r3, i, a10, a11, a12, a13);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 2 * OC), ref x2, IC, r0, r1, r2, r3, i, a20, a21, a22, a23);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 3 * OC), ref x3, IC, r0, r1, r2, r3, i, a30, a31, a32, a33);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 4 * OC), ref x4, IC, r0, r1, r2, r3, i, a40, a41, a42, a43);
        Finish<V, R>(rows, ref Unsafe.Add(ref o, 5 * OC), ref x5, IC, r0, r1, r2, r3, i, a50, a51, a52, a53);
    }

    /// <summary>The lanes of each accumulator summed, then the IC % width tail one multiply-add at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish<V, R>(R rows, ref float o, ref float x, int IC, nint r0, nint r1, nint r2, nint r3, int i, V a0, V a1, V a2, V a3)
        where V : struct, ISimd<V> where R : struct, IRowView
    {
        float s0 = V.Sum(a0), s1 = V.Sum(a1), s2 = V.Sum(a2), s3 = V.Sum(a3);
        for (; i < IC; i++)
        {
            var p = Unsafe.Add(ref x, i);
            s0 = MathF.FusedMultiplyAdd(p, rows.Element(r0, i), s0);
            s1 = MathF.FusedMultiplyAdd(p, rows.Element(r1, i), s1);
            s2 = MathF.FusedMultiplyAdd(p, rows.Element(r2, i), s2);
            s3 = MathF.FusedMultiplyAdd(p, rows.Element(r3, i), s3);
        }
        o = s0;
        Unsafe.Add(ref o, 1) = s1;
        Unsafe.Add(ref o, 2) = s2;
        Unsafe.Add(ref o, 3) = s3;
    }

    /// <summary><see cref="Finish"/> for a tile two weight rows wide.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishTwo<V, R>(R rows, ref float o, ref float x, int IC, nint r0, nint r1, int i, V a0, V a1)
        where V : struct, ISimd<V> where R : struct, IRowView
    {
        float s0 = V.Sum(a0), s1 = V.Sum(a1);
        for (; i < IC; i++)
        {
            var p = Unsafe.Add(ref x, i);
            s0 = MathF.FusedMultiplyAdd(p, rows.Element(r0, i), s0);
            s1 = MathF.FusedMultiplyAdd(p, rows.Element(r1, i), s1);
        }
        o = s0;
        Unsafe.Add(ref o, 1) = s1;
    }

    /// <summary>One output, accumulated exactly as every tile accumulates each of its outputs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot<V, R>(R rows, ref float x, int IC, int k) where V : struct, ISimd<V> where R : struct, IRowView
    {
        var r0 = rows.Start(k);
        var acc = V.Zero;
        var i = 0;
        for (; i <= IC - V.Count; i += V.Count)
            V.MultiplyAdd(ref acc, V.Load(ref Unsafe.Add(ref x, i)), rows.Load<V>(r0, i));
        var sum = V.Sum(acc);
        for (; i < IC; i++)
            sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref x, i), rows.Element(r0, i), sum);
        return sum;
    }

    /// <summary>Scalar reference: the naive triple loop, accumulating in double. The oracle for every backend, never the fast path.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight, int N, int IC, int OC)
    {
        for (var n = 0; n < N; n++)
        {
            for (var k = 0; k < OC; k++)
            {
                var acc = 0.0;
                for (var i = 0; i < IC; i++) acc += (double)input[n * IC + i] * weight[k * IC + i];
                output[n * OC + k] = (float)acc;
            }
        }
    }
}

/// <summary>Whether a tile asks for the next tile's weight rows as it goes: a type, so each choice is its own compilation.</summary>
internal interface IReadAhead
{
    static abstract bool Asks { get; }
}

/// <summary>The tile that first reads a slice of the table from memory.</summary>
internal readonly struct AskAhead : IReadAhead
{
    public static bool Asks => true;
}

/// <summary>The tiles that find the slice in cache.</summary>
internal readonly struct InCache : IReadAhead
{
    public static bool Asks => false;
}
