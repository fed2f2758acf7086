using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeGpt2.Weights;
using V = NativeGpt2.Operators.Simd512;

namespace NativeGpt2.Operators;

/// <summary>
/// The head over a float32 table for many rows with Vector512, on a tile that broadcasts inputs over transposed panels
/// (as <see cref="MatMul"/>'s does) instead of one that reads table rows and input rows side by side: the same sums, bit
/// for bit, in fewer loads per multiply-add.
/// </summary>
/// <remarks>
/// <para>A dot product in registers of C = 16 lanes is 16 interleaved dot products (lane j sums channels j, j + 16,
/// j + 32, … one fused multiply-add at a time), then its lanes added by halving (<see cref="ISimd{TSelf}.Sum"/>), then
/// the last IC % 16 channels one at a time (<see cref="Finish"/>). Here each work item's 32 table rows are transposed
/// into a panel (IC × 32) whose rows, the input channels, are in lane-major order (<see cref="LanePosition"/>): lane j's
/// channels are the S = IC / 16 contiguous rows [j·S, (j + 1)·S). The input is packed once per call in the order the tile
/// reads it (<see cref="Pack"/>): per tile of 12 rows, per lane, per channel, the tile's rows side by side.</para>
/// <para>The tile (12 input rows × 32 table rows, 24 sums in registers; a last tile of up to 8 or 4 rows sums only those)
/// sums one lane at a time, lanes in bit-reversed
/// order (0, 8, 4, 12, 2, …), and folds each lane's sums into the pending ones like a binary counter, which adds them in
/// pairs exactly as halving does: lane 0 + lane 8, lane 4 + lane 12, then those two, and so on. The last channels follow
/// in order (<see cref="PanelInLanes"/>).</para>
/// </remarks>
internal static partial class MatMulTransposed
{
    // Input rows per work item: a multiple of the tile, small enough to spread N = 128 over the cores.
    private const int RowBlock = 48;

    private const int PanelWidth = WeightData.PanelWidth;

    // Input rows of the broadcast tile: 24 sums, two registers of weights and a broadcast in Vector512's 32 registers.
    private const int LaneTileRows = 12;

    /// <summary>
    /// From how many input rows a float32 table takes this route, with Vector512: below, transposing the panels costs more
    /// than the faster tile saves (measured on the 124M head, AMD EPYC Zen 5, 2 threads, against the row tiles: 15 % slower
    /// at 16 rows, 5 % slower at 24, 9 % faster at 32, 10-14 % at 48). With Vector256 the row tiles are as fast as this one
    /// already (230 GFLOP/s of 258).
    /// </summary>
    internal const int PanelRowsFrom = 32;

    /// <summary>
    /// <c>out = input · tableᵀ</c> for a batch of rows, on transposed panels: see the remarks of this part of the class. A
    /// float32 table (<paramref name="table"/>) is transposed as it is; a 16- or 8-bit one has each item's 32 rows
    /// widened to float32 first, exactly, so the sums are the row tiles' in every format.
    /// </summary>
    private static unsafe void OverPanels<T>(Memory<float> output, ReadOnlyMemory<float> input, T rows, float[]? table, int N, int IC, int OC)
        where T : struct, IRowView
    {
        const int R = LaneTileRows;
        var panelCount = (OC + PanelWidth - 1) / PanelWidth;
        var rowBlock = Math.Min((N + R - 1) / R * R, RowBlock);
        var rowBlocks = (N + rowBlock - 1) / rowBlock;
        var S = IC / V.Count;
        var packed = ArrayPool<float>.Shared.Rent((N + R - 1) / R * R * S * V.Count);
        try
        {
            Pack(input.Span, packed, N, IC);
            // Items run panel-major: each thread transposes its panel once and runs every block of rows against it.
            // The bytes of a panel's rows as stored, which the next panel's hints cover.
            var panelBytes = (int)(rows.Address(rows.Start(PanelWidth)) - rows.Address(rows.Start(0)));
            Parallelism.For(panelCount * rowBlocks, (long)rowBlock * IC * PanelWidth, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
            {
                var panel = ArrayPool<float>.Shared.Rent(IC * PanelWidth);
                var widened = table is null ? ArrayPool<float>.Shared.Rent(PanelWidth * IC) : null;
                var transposed = -1;
                for (var item = start; item < end; item++)
                {
                    int p = item / rowBlocks, rb = item % rowBlocks;
                    if (p != transposed)
                    {
                        if (table is not null) TransposeInLanes(table, p, IC, OC, panel);
                        else
                        {
                            int from = p * PanelWidth, to = Math.Min(OC, from + PanelWidth);
                            Widen<V, T>(rows, from, to, IC, widened!);
                            TransposeInLanes(widened!, 0, IC, to - from, panel);
                        }
                        transposed = p;
                    }
                    var next = rows.Address(rows.Start((p + 1) * PanelWidth));
                    PanelInLanes(panel, p, next, panelBytes, output.Span, input.Span, packed, rb * rowBlock, Math.Min(N, (rb + 1) * rowBlock), N, IC, OC);
                }
                ArrayPool<float>.Shared.Return(panel);
                if (widened is not null) ArrayPool<float>.Shared.Return(widened);
            });
        }
        finally
        {
            ArrayPool<float>.Shared.Return(packed);
        }
    }

    /// <summary>Where input channel i goes in lane-major order: channel s·C + j to j·S + s (S = IC / C); the last IC % C stay.</summary>
    private static int LanePosition(int i, int C, int S) => i < S * C ? i % C * S + i / C : i;

    /// <summary>
    /// The first S·C channels of the input, per tile of R rows (the last tile padded with zero rows), per lane j, per step
    /// s: channel s·C + j of the tile's R rows side by side, so the tile's broadcasts read one address after another.
    /// </summary>
    private static void Pack(ReadOnlySpan<float> input, float[] packed, int N, int IC)
    {
        const int R = LaneTileRows;
        var C = V.Count;
        var S = IC / C;
        var tiles = (N + R - 1) / R;
        for (var tile = 0; tile < tiles; tile++)
        {
            var to = packed.AsSpan(tile * R * S * C, R * S * C);
            var rows = Math.Min(R, N - tile * R);
            if (rows < R) to.Clear();
            for (var m = 0; m < rows; m++)
            {
                var row = input.Slice((tile * R + m) * IC, IC);
                for (var j = 0; j < C; j++)
                {
                    for (var s = 0; s < S; s++) to[(j * S + s) * R + m] = row[s * C + j];
                }
            }
        }
    }

    /// <summary>
    /// Rows [32·p, 32·p + 32) of the table as a panel (IC × 32, zeros past row OC) whose rows are the input channels in
    /// lane-major order. Moves only, so the values are exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeInLanes(float[] table, int p, int IC, int OC, float[] panel)
    {
        const int W = PanelWidth;
        var k0 = p * W;
        var rows = Math.Min(W, OC - k0);
        var S = IC / V.Count;
        ref var t = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(table), (nint)k0 * IC);
        ref var d = ref MemoryMarshal.GetArrayDataReference(panel);
        if (rows < W)
        {
            // The last panel of a table whose rows are not a multiple of 32: once per call, so one value at a time.
            for (var i = 0; i < IC; i++)
            {
                ref var to = ref Unsafe.Add(ref d, (nint)LanePosition(i, V.Count, S) * W);
                for (var r = 0; r < W; r++) Unsafe.Add(ref to, r) = r < rows ? Unsafe.Add(ref t, (nint)r * IC + i) : 0f;
            }
            return;
        }
        // Channels [s·C, s·C + C) of rows [g, g + C) are a block transposed in registers into panel rows j·S + s,
        // j = 0 … C − 1: S · 32 floats apart. The rows were asked for while the previous panel was computed (Lanes).
        for (var s = 0; s < S; s++)
        {
            var i = s * V.Count;
            for (var g = 0; g < W; g += V.Count)
                V.Transpose(ref Unsafe.Add(ref t, (nint)g * IC + i), IC, ref Unsafe.Add(ref d, (nint)s * W + g), (nint)S * W);
        }
        for (var i = S * V.Count; i < IC; i++)
        {
            for (var r = 0; r < W; r++) Unsafe.Add(ref d, (nint)i * W + r) = Unsafe.Add(ref t, (nint)r * IC + i);
        }
    }

    /// <summary>
    /// Input rows [r0, r1) of N against the 32 table rows of <paramref name="panel"/> (panel <paramref name="p"/> of the
    /// table), 2·C columns at a time: every lane's sums folded by the tile (from the packed input), then the last IC % C
    /// channels one at a time (from the input itself), as <see cref="Finish"/> adds them. The next panel's rows as stored
    /// are <paramref name="nextBytes"/> from <paramref name="next"/>.
    /// </summary>
    /// <remarks>
    /// The next panel's rows, which follow this panel's in the table, are asked for meanwhile, a slice after each lane of
    /// each tile, so that reading them from memory overlaps this panel's sums. Asked for in one burst while transposing,
    /// they had stalled it: 25.5 → 23.2 ms for the 124M head at 128 rows, 90 → 88 ms at 512 (AMD EPYC Zen 5, 2 threads).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void PanelInLanes(float[] panel, int p, byte* next, int nextBytes, Span<float> output, ReadOnlySpan<float> input, float[] packed,
        int r0, int r1, int N, int IC, int OC)
    {
        const int W = PanelWidth;
        var C = V.Count;
        var S = IC / C;
        const int R = LaneTileRows;
        var col0 = p * W;
        var columns = Math.Min(W, OC - col0);
        // The pending sums: levels 0 … 4, one per halving of 16 lanes (the last holds the totals), each R rows × 2 registers.
        Span<float> pending = stackalloc float[5 * R * 2 * 16];
        ref var totals = ref pending[4 * R * 2 * C];
        ref var x = ref MemoryMarshal.GetReference(input);
        ref var weights = ref MemoryMarshal.GetArrayDataReference(panel);
        ref var o = ref MemoryMarshal.GetReference(output);
        // A raw address, never read: past the table's end it is only a wasted hint.
        var lanes = (N + R - 1) / R * C;
        var slice = ((nextBytes + 63) / 64 + lanes - 1) / lanes * 64;
        for (var c = 0; c < columns; c += 2 * C)
        {
            for (var r = r0; r < r1; r += R)
            {
                ref var tile = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(packed), (nint)r * S * C);
                // Only the first pass over the columns asks; there is one pass with Vector512's 32 columns.
                // A last tile of fewer rows sums only as many rows as it has, rounded up to four (the packed input is
                // padded with zero rows to twelve).
                var hint = next + (nint)(r / R) * C * slice;
                switch (r1 - r)
                {
                    case <= 4: Lanes<FourRows>(ref Unsafe.Add(ref weights, c), ref tile, S, ref pending[0], hint, c == 0 ? slice : 0); break;
                    case <= 8: Lanes<EightRows>(ref Unsafe.Add(ref weights, c), ref tile, S, ref pending[0], hint, c == 0 ? slice : 0); break;
                    default: Lanes<TwelveRows>(ref Unsafe.Add(ref weights, c), ref tile, S, ref pending[0], hint, c == 0 ? slice : 0); break;
                }
                for (var i = 0; i < R && r + i < r1; i++)
                {
                    ref var xi = ref Unsafe.Add(ref x, (nint)(r + i) * IC);
                    for (var v = 0; v < 2 && c + v * C < columns; v++)
                    {
                        ref var total = ref Unsafe.Add(ref totals, (2 * i + v) * C);
                        var sum = V.Load(ref total);
                        for (var q = S * C; q < IC; q++)
                            V.MultiplyAdd(ref sum, V.Broadcast(Unsafe.Add(ref xi, q)), V.Load(ref Unsafe.Add(ref weights, (nint)q * W + c + v * C)));
                        var at = c + v * C;
                        ref var target = ref Unsafe.Add(ref o, (nint)(r + i) * OC + col0 + at);
                        if (at + C <= columns) V.Store(ref target, sum);
                        else
                        {
                            // The last panel's valid columns only.
                            V.Store(ref total, sum);
                            for (var k = 0; at + k < columns; k++) Unsafe.Add(ref target, k) = Unsafe.Add(ref total, k);
                        }
                    }
                }
            }
        }
    }

    /// <summary>The lanes in bit-reversed order, so that folding them one after another pairs them as halving does.</summary>
    private static ReadOnlySpan<byte> LaneOrder => [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

    // The tiles make no calls: values live across a call would be spilled to the stack in the inner loop.

    /// <summary>
    /// <typeparamref name="R"/> input rows (12, or 8 or 4 for a last tile of fewer rows) × 2 registers of columns, for every
    /// lane in bit-reversed order: the sum over its S panel rows, then folded into <paramref name="pending"/> (levels of 24
    /// registers, the first 2·R used): the t-th lane (from 1) adds the pending sum of each level while t is even there, and
    /// leaves its own at the first level it does not fill. The totals end at level 4. The packed input holds 12 rows a
    /// step whatever R. After each lane's sums it asks for <paramref name="slice"/> bytes from <paramref name="ahead"/> on,
    /// the next slice after each lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Lanes<R>(ref float panel, ref float x, int S, ref float pending, byte* ahead, int slice) where R : struct, ITileRows
    {
        const int W = PanelWidth;
        var C = V.Count;
        for (var t = 0; t < C; t++)
        {
            var j = LaneOrder[t];
            ref var w = ref Unsafe.Add(ref panel, (nint)j * S * W);
            ref var xj = ref Unsafe.Add(ref x, (nint)j * S * 12);
            V a000 = V.Zero, a001 = V.Zero, a010 = V.Zero, a011 = V.Zero, a020 = V.Zero, a021 = V.Zero;
            V a030 = V.Zero, a031 = V.Zero, a040 = V.Zero, a041 = V.Zero, a050 = V.Zero, a051 = V.Zero;
            V a060 = V.Zero, a061 = V.Zero, a070 = V.Zero, a071 = V.Zero, a080 = V.Zero, a081 = V.Zero;
            V a090 = V.Zero, a091 = V.Zero, a100 = V.Zero, a101 = V.Zero, a110 = V.Zero, a111 = V.Zero;
            nint offset = 0, packed = 0;
            for (var k = 0; k < S; k++, offset += W, packed += 12)
            {
                var w0 = V.Load(ref Unsafe.Add(ref w, offset));
                var w1 = V.Load(ref Unsafe.Add(ref w, offset + C));
                ref var xk = ref Unsafe.Add(ref xj, packed);
                var v = V.Broadcast(xk);
                V.MultiplyAdd(ref a000, v, w0); V.MultiplyAdd(ref a001, v, w1);
                v = V.Broadcast(Unsafe.Add(ref xk, 1));
                V.MultiplyAdd(ref a010, v, w0); V.MultiplyAdd(ref a011, v, w1);
                v = V.Broadcast(Unsafe.Add(ref xk, 2));
                V.MultiplyAdd(ref a020, v, w0); V.MultiplyAdd(ref a021, v, w1);
                v = V.Broadcast(Unsafe.Add(ref xk, 3));
                V.MultiplyAdd(ref a030, v, w0); V.MultiplyAdd(ref a031, v, w1);
                if (R.Count > 4)
                {
                    v = V.Broadcast(Unsafe.Add(ref xk, 4));
                    V.MultiplyAdd(ref a040, v, w0); V.MultiplyAdd(ref a041, v, w1);
                    v = V.Broadcast(Unsafe.Add(ref xk, 5));
                    V.MultiplyAdd(ref a050, v, w0); V.MultiplyAdd(ref a051, v, w1);
                    v = V.Broadcast(Unsafe.Add(ref xk, 6));
                    V.MultiplyAdd(ref a060, v, w0); V.MultiplyAdd(ref a061, v, w1);
                    v = V.Broadcast(Unsafe.Add(ref xk, 7));
                    V.MultiplyAdd(ref a070, v, w0); V.MultiplyAdd(ref a071, v, w1);
                }
                if (R.Count > 8)
                {
                    v = V.Broadcast(Unsafe.Add(ref xk, 8));
                    V.MultiplyAdd(ref a080, v, w0); V.MultiplyAdd(ref a081, v, w1);
                    v = V.Broadcast(Unsafe.Add(ref xk, 9));
                    V.MultiplyAdd(ref a090, v, w0); V.MultiplyAdd(ref a091, v, w1);
                    v = V.Broadcast(Unsafe.Add(ref xk, 10));
                    V.MultiplyAdd(ref a100, v, w0); V.MultiplyAdd(ref a101, v, w1);
                    v = V.Broadcast(Unsafe.Add(ref xk, 11));
                    V.MultiplyAdd(ref a110, v, w0); V.MultiplyAdd(ref a111, v, w1);
                }
            }
            CacheHint.PrefetchBytes(ahead + (nint)t * slice, slice);
            var l = 0;
            for (var u = t + 1; (u & 1) == 0; u >>= 1, l++)
            {
                ref var at = ref Unsafe.Add(ref pending, l * 24 * C);
                a000 = V.Add(a000, V.Load(ref at));
                a001 = V.Add(a001, V.Load(ref Unsafe.Add(ref at, 1 * C)));
                a010 = V.Add(a010, V.Load(ref Unsafe.Add(ref at, 2 * C)));
                a011 = V.Add(a011, V.Load(ref Unsafe.Add(ref at, 3 * C)));
                a020 = V.Add(a020, V.Load(ref Unsafe.Add(ref at, 4 * C)));
                a021 = V.Add(a021, V.Load(ref Unsafe.Add(ref at, 5 * C)));
                a030 = V.Add(a030, V.Load(ref Unsafe.Add(ref at, 6 * C)));
                a031 = V.Add(a031, V.Load(ref Unsafe.Add(ref at, 7 * C)));
                if (R.Count > 4)
                {
                    a040 = V.Add(a040, V.Load(ref Unsafe.Add(ref at, 8 * C)));
                    a041 = V.Add(a041, V.Load(ref Unsafe.Add(ref at, 9 * C)));
                    a050 = V.Add(a050, V.Load(ref Unsafe.Add(ref at, 10 * C)));
                    a051 = V.Add(a051, V.Load(ref Unsafe.Add(ref at, 11 * C)));
                    a060 = V.Add(a060, V.Load(ref Unsafe.Add(ref at, 12 * C)));
                    a061 = V.Add(a061, V.Load(ref Unsafe.Add(ref at, 13 * C)));
                    a070 = V.Add(a070, V.Load(ref Unsafe.Add(ref at, 14 * C)));
                    a071 = V.Add(a071, V.Load(ref Unsafe.Add(ref at, 15 * C)));
                }
                if (R.Count > 8)
                {
                    a080 = V.Add(a080, V.Load(ref Unsafe.Add(ref at, 16 * C)));
                    a081 = V.Add(a081, V.Load(ref Unsafe.Add(ref at, 17 * C)));
                    a090 = V.Add(a090, V.Load(ref Unsafe.Add(ref at, 18 * C)));
                    a091 = V.Add(a091, V.Load(ref Unsafe.Add(ref at, 19 * C)));
                    a100 = V.Add(a100, V.Load(ref Unsafe.Add(ref at, 20 * C)));
                    a101 = V.Add(a101, V.Load(ref Unsafe.Add(ref at, 21 * C)));
                    a110 = V.Add(a110, V.Load(ref Unsafe.Add(ref at, 22 * C)));
                    a111 = V.Add(a111, V.Load(ref Unsafe.Add(ref at, 23 * C)));
                }
            }
            ref var to = ref Unsafe.Add(ref pending, l * 24 * C);
            V.Store(ref to, a000);
            V.Store(ref Unsafe.Add(ref to, 1 * C), a001);
            V.Store(ref Unsafe.Add(ref to, 2 * C), a010);
            V.Store(ref Unsafe.Add(ref to, 3 * C), a011);
            V.Store(ref Unsafe.Add(ref to, 4 * C), a020);
            V.Store(ref Unsafe.Add(ref to, 5 * C), a021);
            V.Store(ref Unsafe.Add(ref to, 6 * C), a030);
            V.Store(ref Unsafe.Add(ref to, 7 * C), a031);
            if (R.Count > 4)
            {
                V.Store(ref Unsafe.Add(ref to, 8 * C), a040);
                V.Store(ref Unsafe.Add(ref to, 9 * C), a041);
                V.Store(ref Unsafe.Add(ref to, 10 * C), a050);
                V.Store(ref Unsafe.Add(ref to, 11 * C), a051);
                V.Store(ref Unsafe.Add(ref to, 12 * C), a060);
                V.Store(ref Unsafe.Add(ref to, 13 * C), a061);
                V.Store(ref Unsafe.Add(ref to, 14 * C), a070);
                V.Store(ref Unsafe.Add(ref to, 15 * C), a071);
            }
            if (R.Count > 8)
            {
                V.Store(ref Unsafe.Add(ref to, 16 * C), a080);
                V.Store(ref Unsafe.Add(ref to, 17 * C), a081);
                V.Store(ref Unsafe.Add(ref to, 18 * C), a090);
                V.Store(ref Unsafe.Add(ref to, 19 * C), a091);
                V.Store(ref Unsafe.Add(ref to, 20 * C), a100);
                V.Store(ref Unsafe.Add(ref to, 21 * C), a101);
                V.Store(ref Unsafe.Add(ref to, 22 * C), a110);
                V.Store(ref Unsafe.Add(ref to, 23 * C), a111);
            }
        }
    }
}
