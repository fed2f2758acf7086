using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeGpt2.Backends;
using NativeGpt2.Weights;

namespace NativeGpt2.Operators;

/// <summary>
/// The projection of GPT-2's <c>Conv1D</c> layers: <c>out = epilogue(input · weight + bias)</c>, with the
/// epilogue bias only, the MLP's activation (GELU for GPT-2), or an add into the existing output (the residual stream).
/// </summary>
/// <remarks>
/// <para>Shapes: out (N, OC), input (N, IC), weight (IC, OC) packed once at load into panels of 32 output
/// columns (<see cref="WeightLayout.Panels"/>), in any <see cref="WeightFormat"/>; bias (OC).</para>
/// <para>A register tile computes 6 rows × 2 SIMD registers of columns (6 × 32 with Vector512, 6 × 16
/// twice per panel with Vector256): per input channel it loads two registers of weights (widened from
/// 16 or 8 bits in the registers), broadcasts six inputs and issues twelve fused multiply-adds. Work items
/// are (panel, block of rows): a panel of 32 columns × IC rows streams through the cache once per block.
/// Rows that six does not divide end a block in tiles of four or five (8 = 4 + 4, 9 = 5 + 4: eight sums or more in
/// flight), except that with Vector512 seven or eight rows left are one tile (a batch of eight sequences decoding
/// together reads each panel once: 16 sums in 32 registers); a batch of two or three rows runs the 6-row tile on a copy padded with zero rows, made once per call; a lone row its
/// own loop (with Vector256 the panel's 32 columns in four registers, with Vector128 in eight: one pass), asking for the panel 8 KB ahead, in
/// every format; so do up to five rows of 16-bit weights. A decoding step (one row) of 16-bit weights with Vector512
/// reads four panels side by side instead, eight sums in flight, and asks for the rows 2 KB ahead in each
/// (<see cref="IPanelView.Prefetch"/>).</para>
/// <para>Every output is computed the same way whatever tile, width or batch computes it: start from the
/// bias and add x[n, i] · w[i, o] for i = 0, 1, … with one fused multiply-add each. So batched generation
/// equals one-by-one generation, and the four widths give identical results.</para>
/// </remarks>
internal static class MatMul
{
    private const int TileRows = RowTiles.Most;

    // The most rows a 512-bit tile sums: a batch of seven or eight rows (sequences decoding together) in one pass.
    private const int WideTileRows = 8;

    // Panels a decoding step reads side by side.
    private const int PanelsSideBySide = 4;

    // Rows per work item when there are many: a multiple of the tile, small enough to spread N = 128 over the cores.
    private const int RowBlock = 48;

    /// <summary>Whether <typeparamref name="P"/> holds 16-bit values (float16, bfloat16).</summary>
    private static bool Holds16Bits<P>() where P : struct, IPanelView =>
        typeof(P) != typeof(Panels<float, Float32Widening>) && typeof(P) != typeof(Q8Panels);

    /// <summary>Runs the matmul on the weight's format at the given SIMD width, spread over the cores.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, WeightData weight, ReadOnlyMemory<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue, VectorWidth width)
    {
        CheckShapes(output.Length, input.Length, weight, bias.Length, N, IC, OC);
        if (!Enum.IsDefined(epilogue)) throw new ArgumentOutOfRangeException(nameof(epilogue), epilogue, "not a MatMulEpilogue");
        switch (width)
        {
            case VectorWidth.Vector512: Run<Simd512>(output, input, weight, bias, N, IC, OC, epilogue); break;
            case VectorWidth.Vector256: Run<Simd256>(output, input, weight, bias, N, IC, OC, epilogue); break;
            case VectorWidth.Vector128: Run<Simd128>(output, input, weight, bias, N, IC, OC, epilogue); break;
            default: Run<SimdScalar>(output, input, weight, bias, N, IC, OC, epilogue); break;
        }
    }

    private static void Run<V>(Memory<float> output, ReadOnlyMemory<float> input, WeightData weight, ReadOnlyMemory<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue) where V : struct, ISimd<V>
    {
        switch (weight)
        {
            case Float32Data f: Run<V, Panels<float, Float32Widening>>(new(f.Values, IC), output, input, bias, N, IC, OC, epilogue); break;
            case Float16Data { AllFinite: true } f: Run<V, Panels<Half, FiniteFloat16Widening>>(new(f.Values, IC), output, input, bias, N, IC, OC, epilogue); break;
            case Float16Data f: Run<V, Panels<Half, Float16Widening>>(new(f.Values, IC), output, input, bias, N, IC, OC, epilogue); break;
            case BFloat16Data f: Run<V, Panels<ushort, BFloat16Widening>>(new(f.Values, IC), output, input, bias, N, IC, OC, epilogue); break;
            case Q8Data q: Run<V, Q8Panels>(new(q.Values, q.Scales, IC), output, input, bias, N, IC, OC, epilogue); break;
            default: throw new ArgumentException($"unsupported weight storage {weight.GetType().Name}", nameof(weight));
        }
    }

    private static unsafe void Run<V, P>(P panels, Memory<float> output, ReadOnlyMemory<float> input, ReadOnlyMemory<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue) where V : struct, ISimd<V> where P : struct, IPanelView
    {
        var panelCount = (OC + WeightData.PanelWidth - 1) / WeightData.PanelWidth;
        var fullPanels = OC / WeightData.PanelWidth;
        var rowBlock = N <= RowBlock ? N : RowBlock;
        var rowBlocks = (N + rowBlock - 1) / rowBlock;
        // Two or three rows after the last full block join it (50 rows: 6 × 7 + 4 + 4), so that only a
        // batch of two or three rows needs the padded tile.
        if (N > RowBlock && N % RowBlock is 2 or 3) rowBlocks--;
        if (N == 1 && Holds16Bits<P>() && !LoneRowOnWholePanel<V>())
        {
            // Decoding 16-bit weights with Vector512: four panels side by side, eight sums in flight, asking for the rows
            // they will read next. One panel at a time has two sums in flight there, and from cache it ran 20-40 % slower
            // (from memory alike). Vector256 takes a panel in four registers (Tile1Of4; Vector128 in eight), and there one
            // panel at a time, 8 KB ahead, read 25-40 % faster from memory than this. Float32 and 8-bit panels take the
            // per-panel path below: one stream per thread reads fastest (float32 54-56 GB/s where four panels side by
            // side read 45; q8 decoding in the model 281-287 → 312-324 tokens/s, 73-76 → 82 % of the read rate).
            var groups = (panelCount + PanelsSideBySide - 1) / PanelsSideBySide;
            Parallelism.For(groups, (long)PanelsSideBySide * IC * WeightData.PanelWidth, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
            {
                for (var g = start; g < end; g++)
                {
                    var p = g * PanelsSideBySide;
                    if (p + PanelsSideBySide <= fullPanels) RowOfFourPanels<V, P>(panels, p, output.Span, input.Span, bias.Span, IC, epilogue);
                    else
                    {
                        for (; p < Math.Min(panelCount, (g + 1) * PanelsSideBySide); p++)
                            Panel<V, P>(panels, p, p, output.Span, input.Span, bias.Span, 0, 1, IC, OC, epilogue, ahead: 0);
                    }
                }
            });
            return;
        }
        // Two or three rows in all (a batch decoding) are copied once, padded with zero rows to a whole tile, for every
        // panel's tile to read.
        var padded = N is 2 or 3 ? ArrayPool<float>.Shared.Rent(TileRows * IC) : null;
        if (padded is not null)
        {
            input.Span[..(N * IC)].CopyTo(padded);
            padded.AsSpan(N * IC, (TileRows - N) * IC).Clear();
        }
        // Items run panel-major: each thread streams its own panels, and a panel stays in cache across its row blocks.
        Parallelism.For(panelCount * rowBlocks, (long)rowBlock * IC * WeightData.PanelWidth, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var paddedBatch = padded.AsSpan(0, padded is null ? 0 : TileRows * IC);
            float[]? widened = null;
            var widenedPanel = -1;
            for (var item = start; item < end; item++)
            {
                int p = item / rowBlocks, rb = item % rowBlocks;
                int r0 = rb * rowBlock, r1 = rb == rowBlocks - 1 ? N : r0 + rowBlock;
                if (typeof(P) != typeof(Panels<float, Float32Widening>) && r1 - r0 >= TileRows)
                {
                    // Several rows reuse the panel: widen it to float32 once rather than in every tile (exact,
                    // so the results are the same), and once for this thread's row blocks of it that follow.
                    widened ??= ArrayPool<float>.Shared.Rent(IC * WeightData.PanelWidth);
                    if (p != widenedPanel) PanelWidening.Widen<V, P>(panels, p, IC, widened);
                    widenedPanel = p;
                    // Its tiles ask for the next stored panel meanwhile, which follows this one: widening it then reads
                    // from cache, not from memory in one burst (a raw address, never read: past the end only a wasted hint).
                    var next = new NextPanel((byte*)Unsafe.AsPointer(ref panels.At(panels.Block(p, 0), 0)) + (nint)IC * panels.BlockBytes,
                        IC * panels.BlockBytes, (N + TileRows - 1) / TileRows);
                    Panel<V, Panels<float, Float32Widening>>(new(widened, IC), 0, p, output.Span, input.Span, bias.Span, r0, r1, IC, OC, epilogue, ahead: 0,
                        paddedBatch, next);
                }
                else Panel<V, P>(panels, p, p, output.Span, input.Span, bias.Span, r0, r1, IC, OC, epilogue, panels.PrefetchRows, paddedBatch);
            }
            if (widened is not null) ArrayPool<float>.Shared.Return(widened);
        });
        if (padded is not null) ArrayPool<float>.Shared.Return(padded);
    }

    /// <summary>
    /// One row (a decoding step) of four full panels p … p + 3: each output summed exactly as <see cref="Tile1"/>
    /// sums it, with the eight registers' sums independent so they overlap. The loop only adds to a byte offset
    /// (<see cref="IPanelView.At"/>), and the activation runs on the stored outputs, so the loop keeps its registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RowOfFourPanels<V, P>(P panels, int p, Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> bias,
        int IC, MatMulEpilogue epilogue) where V : struct, ISimd<V> where P : struct, IPanelView
    {
        const int W = WeightData.PanelWidth;
        var residual = epilogue == MatMulEpilogue.Residual;
        ref var x = ref MemoryMarshal.GetReference(input);
        ref var o = ref Unsafe.Add(ref MemoryMarshal.GetReference(output), p * W);
        ref var b = ref Unsafe.Add(ref MemoryMarshal.GetReference(bias), p * W);
        nint first = panels.Block(p, 0), next = panels.Rows;
        nint step = panels.BlockBytes, panelBytes = next * step;
        for (var c = 0; c < W; c += 2 * V.Count)
        {
            V a0 = V.Load(ref Unsafe.Add(ref b, c)), a1 = V.Load(ref Unsafe.Add(ref b, c + V.Count));
            V a2 = V.Load(ref Unsafe.Add(ref b, W + c)), a3 = V.Load(ref Unsafe.Add(ref b, W + c + V.Count));
            V a4 = V.Load(ref Unsafe.Add(ref b, 2 * W + c)), a5 = V.Load(ref Unsafe.Add(ref b, 2 * W + c + V.Count));
            V a6 = V.Load(ref Unsafe.Add(ref b, 3 * W + c)), a7 = V.Load(ref Unsafe.Add(ref b, 3 * W + c + V.Count));
            // The pass over the first columns reads the blocks from memory and asks for them ahead; the further passes
            // of a narrower width (the scalar path) find them in cache.
            nint ahead = c == 0 ? panels.PrefetchRows / PanelsSideBySide * step : 0;
            // Row 0 of each panel; row k is `offset` bytes on (so no reference ever points past a panel's end).
            ref var p0 = ref panels.At(first, c);
            ref var p1 = ref Unsafe.Add(ref p0, panelBytes);
            ref var p2 = ref Unsafe.Add(ref p1, panelBytes);
            ref var p3 = ref Unsafe.Add(ref p2, panelBytes);
            nint offset = 0;
            for (var k = 0; k < IC; k++, offset += step)
            {
                var block = first + k;
                if (ahead > 0)
                {
                    var soon = (byte*)Unsafe.AsPointer(ref Unsafe.Add(ref p0, offset)) + ahead;
                    panels.Prefetch(soon, block);
                    panels.Prefetch(soon + panelBytes, block + next);
                    panels.Prefetch(soon + 2 * panelBytes, block + 2 * next);
                    panels.Prefetch(soon + 3 * panelBytes, block + 3 * next);
                }
                var v = V.Broadcast(Unsafe.Add(ref x, k));
                panels.Load<V>(ref Unsafe.Add(ref p0, offset), block, out var w0, out var w1);
                panels.Load<V>(ref Unsafe.Add(ref p1, offset), block + next, out var w2, out var w3);
                V.MultiplyAdd(ref a0, v, w0);
                V.MultiplyAdd(ref a1, v, w1);
                V.MultiplyAdd(ref a2, v, w2);
                V.MultiplyAdd(ref a3, v, w3);
                panels.Load<V>(ref Unsafe.Add(ref p2, offset), block + 2 * next, out w0, out w1);
                panels.Load<V>(ref Unsafe.Add(ref p3, offset), block + 3 * next, out w2, out w3);
                V.MultiplyAdd(ref a4, v, w0);
                V.MultiplyAdd(ref a5, v, w1);
                V.MultiplyAdd(ref a6, v, w2);
                V.MultiplyAdd(ref a7, v, w3);
            }
            Store(ref Unsafe.Add(ref o, c), a0, a1, residual);
            Store(ref Unsafe.Add(ref o, W + c), a2, a3, residual);
            Store(ref Unsafe.Add(ref o, 2 * W + c), a4, a5, residual);
            Store(ref Unsafe.Add(ref o, 3 * W + c), a6, a7, residual);
        }
        if (epilogue.Activation() is { } activation) Activations.InPlace<V>(output.Slice(p * W, 4 * W), activation);
    }

    /// <summary>
    /// Rows [r0, r1) of panel p's 32 columns, read from panel <paramref name="view"/> of <paramref name="panels"/>; each
    /// tile asks for its slice of <paramref name="next"/>, if any, a line every few input channels. A batch of two or three
    /// rows reads <paramref name="paddedBatch"/> instead of the input: those rows, padded with zero rows to six.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Panel<V, P>(P panels, int view, int p, Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> bias,
        int r0, int r1, int IC, int OC, MatMulEpilogue epilogue, int ahead, ReadOnlySpan<float> paddedBatch = default, NextPanel next = default)
        where V : struct, ISimd<V> where P : struct, IPanelView
    {
        var col0 = p * WeightData.PanelWidth;
        var columns = Math.Min(WeightData.PanelWidth, OC - col0);
        var residual = epilogue == MatMulEpilogue.Residual;
        var activation = epilogue.Activation();
        ref var x = ref MemoryMarshal.GetReference(input);
        if (LoneRowOnWholePanel<V>() && r1 - r0 == 1 && columns == WeightData.PanelWidth)
        {
            // A lone row with Vector256 or Vector128: the panel's 32 columns in four or eight registers, one pass over
            // the panel.
            ref var o = ref MemoryMarshal.GetReference(output.Slice(r0 * OC + col0, WeightData.PanelWidth));
            ref var xr = ref Unsafe.Add(ref x, (nint)r0 * IC);
            ref var b = ref MemoryMarshal.GetReference(bias.Slice(col0));
            if (V.Count == 4) Tile1Of8<V, P>(panels, view, ref xr, IC, ref o, ref b, residual, ahead);
            else Tile1Of4<V, P>(panels, view, ref xr, IC, ref o, ref b, residual, ahead);
            if (activation is { } a) Activations.InPlace<V>(output.Slice(r0 * OC + col0, WeightData.PanelWidth), a);
            return;
        }
        // The last panel of a matrix whose OC is not a multiple of 32 is computed into a scratch tile
        // (the panel is zero-padded) and its valid columns copied out.
        Span<float> scratch = stackalloc float[WideTileRows * 2 * 16];
        Span<float> padded = stackalloc float[2 * 16];
        // A block of two or three rows (two or three sequences decoding together) runs the 6-row tile on a copy padded with
        // zero rows (made once per call): one pass over the panel instead of one per row, each row summed as ever.
        if (r1 - r0 is 2 or 3 && paddedBatch.Length < TileRows * IC) throw new ArgumentException("the rows were not padded", nameof(paddedBatch));
        for (var c = 0; c < columns; c += 2 * V.Count)
        {
            var width = Math.Min(2 * V.Count, columns - c);
            var full = width == 2 * V.Count;
            V b0, b1;
            if (full)
            {
                ref var bc = ref Unsafe.Add(ref MemoryMarshal.GetReference(bias), col0 + c);
                b0 = V.Load(ref bc);
                b1 = V.Load(ref Unsafe.Add(ref bc, V.Count));
            }
            else
            {
                padded.Clear();
                bias.Slice(col0 + c, width).CopyTo(padded);
                b0 = V.Load(ref padded[0]);
                b1 = V.Load(ref padded[V.Count]);
            }
            for (int r = r0, rows; r < r1; r += rows)
            {
                rows = RowTiles.Next(r1 - r, wide: typeof(V) == typeof(Simd512));
                var target = output.Slice(r * OC + col0 + c);
                // Where the tile writes: the output itself, or the scratch tile (2·V.Count columns a row) for a partial
                // last panel or the padded rows of a block of two or three.
                var viaScratch = !full || rows is 2 or 3;
                var stride = viaScratch ? 2 * V.Count : OC;
                ref var o = ref viaScratch ? ref scratch[0] : ref MemoryMarshal.GetReference(target);
                if (viaScratch && residual)
                {
                    for (var i = 0; i < rows; i++) target.Slice(i * OC, width).CopyTo(scratch.Slice(i * stride, width));
                }
                // The pass that first reads the panel from memory asks for it ahead: the tile (or, decoding, the row) that
                // starts at row 0; the others find the panel in cache.
                var first = r == 0 ? ahead : 0;
                var hint = c == 0 ? next.Slice(r / TileRows, IC) : default;
                ref var xr = ref Unsafe.Add(ref x, (nint)r * IC);
                switch (rows)
                {
                    case 8: Tile<V, P, EightRows>(panels, view, c, ref xr, IC, ref o, stride, b0, b1, residual, first, hint); break;
                    case 7: Tile<V, P, SevenRows>(panels, view, c, ref xr, IC, ref o, stride, b0, b1, residual, first, hint); break;
                    case 6: Tile<V, P, SixRows>(panels, view, c, ref xr, IC, ref o, stride, b0, b1, residual, first, hint); break;
                    case 5: Tile<V, P, FiveRows>(panels, view, c, ref xr, IC, ref o, stride, b0, b1, residual, first, hint); break;
                    case 4: Tile<V, P, FourRows>(panels, view, c, ref xr, IC, ref o, stride, b0, b1, residual, first, hint); break;
                    case 1: Tile1<V, P>(panels, view, c, ref xr, IC, ref o, b0, b1, residual, first); break;
                    default: Tile<V, P, SixRows>(panels, view, c, ref MemoryMarshal.GetReference(paddedBatch), IC, ref o, stride, b0, b1, residual, first, hint); break;
                }
                if (viaScratch)
                {
                    for (var i = 0; i < rows; i++) scratch.Slice(i * stride, width).CopyTo(target.Slice(i * OC, width));
                }
                // The activation on the tile just written, still in L1 (not inside the tile: there its registers
                // would push the accumulators out of theirs).
                if (activation is { } a)
                {
                    for (var i = 0; i < rows; i++) Activations.InPlace<V>(target.Slice(i * OC, width), a);
                }
            }
        }
    }

    // The tiles make no calls: values live across a call would be spilled to the stack in the inner loop.

    /// <summary>
    /// <typeparamref name="R"/> rows (4 to 6; 7 or 8 with Vector512, whose 32 registers hold their 16 sums) × 2 registers of
    /// columns: eight to sixteen sums in flight, each output summed from the bias over the input channels in order,
    /// whatever the rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile<V, P, R>(P panels, int p, int c, ref float x, int IC, ref float o, int stride, V b0, V b1, bool residual, int ahead, Hint hint)
        where V : struct, ISimd<V> where P : struct, IPanelView where R : struct, ITileRows
    {
        var line = hint.At;
        var countdown = hint.Every;
        ref var x0 = ref x;
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        ref var x3 = ref Unsafe.Add(ref x2, IC);
        // Rows a smaller tile does not have are never addressed: their references stay on its last row.
        ref var x4 = ref R.Count > 4 ? ref Unsafe.Add(ref x3, IC) : ref x3;
        ref var x5 = ref R.Count > 5 ? ref Unsafe.Add(ref x4, IC) : ref x4;
        ref var x6 = ref R.Count > 6 ? ref Unsafe.Add(ref x5, IC) : ref x5;
        ref var x7 = ref R.Count > 7 ? ref Unsafe.Add(ref x6, IC) : ref x6;
        V a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1, a40 = b0, a41 = b1, a50 = b0, a51 = b1;
        V a60 = b0, a61 = b1, a70 = b0, a71 = b1;
        var first = panels.Block(p, 0);
        nint step = panels.BlockBytes, soon = ahead * step, offset = 0;
        ref var at = ref panels.At(first, c);
        for (var k = 0; k < IC; k++, offset += step)
        {
            if (ahead > 0) panels.Prefetch((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref at, offset)) + soon, first + k + ahead);
            if (--countdown == 0)
            {
                CacheHint.PrefetchLine(line);
                line += 64;
                countdown = hint.Every;
            }
            panels.Load<V>(ref Unsafe.Add(ref at, offset), first + k, out var w0, out var w1);
            var v = V.Broadcast(Unsafe.Add(ref x0, k));
            V.MultiplyAdd(ref a00, v, w0); V.MultiplyAdd(ref a01, v, w1);
            v = V.Broadcast(Unsafe.Add(ref x1, k));
            V.MultiplyAdd(ref a10, v, w0); V.MultiplyAdd(ref a11, v, w1);
            v = V.Broadcast(Unsafe.Add(ref x2, k));
            V.MultiplyAdd(ref a20, v, w0); V.MultiplyAdd(ref a21, v, w1);
            v = V.Broadcast(Unsafe.Add(ref x3, k));
            V.MultiplyAdd(ref a30, v, w0); V.MultiplyAdd(ref a31, v, w1);
            if (R.Count > 4)
            {
                v = V.Broadcast(Unsafe.Add(ref x4, k));
                V.MultiplyAdd(ref a40, v, w0); V.MultiplyAdd(ref a41, v, w1);
            }
            if (R.Count > 5)
            {
                v = V.Broadcast(Unsafe.Add(ref x5, k));
                V.MultiplyAdd(ref a50, v, w0); V.MultiplyAdd(ref a51, v, w1);
            }
            if (R.Count > 6)
            {
                v = V.Broadcast(Unsafe.Add(ref x6, k));
                V.MultiplyAdd(ref a60, v, w0); V.MultiplyAdd(ref a61, v, w1);
            }
            if (R.Count > 7)
            {
                v = V.Broadcast(Unsafe.Add(ref x7, k));
                V.MultiplyAdd(ref a70, v, w0); V.MultiplyAdd(ref a71, v, w1);
            }
        }
        Store(ref o, a00, a01, residual);
        Store(ref Unsafe.Add(ref o, stride), a10, a11, residual);
        Store(ref Unsafe.Add(ref o, 2 * stride), a20, a21, residual);
        Store(ref Unsafe.Add(ref o, 3 * stride), a30, a31, residual);
        if (R.Count > 4) Store(ref Unsafe.Add(ref o, 4 * stride), a40, a41, residual);
        if (R.Count > 5) Store(ref Unsafe.Add(ref o, 5 * stride), a50, a51, residual);
        if (R.Count > 6) Store(ref Unsafe.Add(ref o, 6 * stride), a60, a61, residual);
        if (R.Count > 7) Store(ref Unsafe.Add(ref o, 7 * stride), a70, a71, residual);
    }

    /// <summary>One row: decoding, and a lone row a 6-row tile leaves over. Each output is summed exactly as in <see cref="Tile{V, P, R}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile1<V, P>(P panels, int p, int c, ref float x, int IC, ref float o, V b0, V b1, bool residual, int ahead)
        where V : struct, ISimd<V> where P : struct, IPanelView
    {
        V a0 = b0, a1 = b1;
        var first = panels.Block(p, 0);
        nint step = panels.BlockBytes, soon = ahead * step, offset = 0;
        ref var at = ref panels.At(first, c);
        for (var k = 0; k < IC; k++, offset += step)
        {
            // Asking for rows past the panel's end is harmless: they are the next panel's, usually this thread's next.
            if (ahead > 0) panels.Prefetch((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref at, offset)) + soon, first + k + ahead);
            panels.Load<V>(ref Unsafe.Add(ref at, offset), first + k, out var w0, out var w1);
            var v = V.Broadcast(Unsafe.Add(ref x, k));
            V.MultiplyAdd(ref a0, v, w0);
            V.MultiplyAdd(ref a1, v, w1);
        }
        Store(ref o, a0, a1, residual);
    }

    /// <summary>
    /// Whether a lone row takes a panel's 32 columns in one pass, in four registers (<see cref="Tile1Of4"/>, Vector256) or
    /// eight (<see cref="Tile1Of8"/>, Vector128).
    /// </summary>
    private static bool LoneRowOnWholePanel<V>() where V : struct, ISimd<V> => typeof(V) == typeof(Simd256) || typeof(V) == typeof(Simd128);

    /// <summary>
    /// One row against a panel's 32 columns in four registers (Vector256), so that the panel is read once, row by row,
    /// where <see cref="Tile1"/> takes it in two passes of 16 columns. Each output summed as in <see cref="Tile1"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile1Of4<V, P>(P panels, int p, ref float x, int IC, ref float o, ref float bias, bool residual, int ahead)
        where V : struct, ISimd<V> where P : struct, IPanelView
    {
        V a0 = V.Load(ref bias), a1 = V.Load(ref Unsafe.Add(ref bias, V.Count));
        V a2 = V.Load(ref Unsafe.Add(ref bias, 2 * V.Count)), a3 = V.Load(ref Unsafe.Add(ref bias, 3 * V.Count));
        var first = panels.Block(p, 0);
        nint step = panels.BlockBytes, soon = ahead * step, offset = 0;
        ref var at = ref panels.At(first, 0);
        if (typeof(P) == typeof(Q8Panels))
        {
            // 8-bit weights, w = q · scale as Q8Panels.Load computes it, but with the block scales' reference found once,
            // where each load found it from the block index (an index, a null check and a second row reference per
            // input channel, in a loop short of instructions). The 48 projections of a decoding step (AMD EPYC Zen 5,
            // 2 threads, old and new taking turns, medians): Vector256 3.5-4.8 → 2.9-3.3 ms, Vector128 (then two passes
            // of this tile) 8.6-9.6 → 6.7-7.7; one layer's from cache, Vector256, 0.20-0.27 → 0.18-0.22. With Vector512
            // (Tile1) the same change gained nothing measurable.
            ref var scales = ref Unsafe.As<P, Q8Panels>(ref panels).ScaleAt(first);
            for (var k = 0; k < IC; k++, offset += step)
            {
                if (ahead > 0) panels.Prefetch((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref at, offset)) + soon, first + k + ahead);
                ref var q = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref at, offset));
                var scale = V.Broadcast(Unsafe.Add(ref scales, k));
                var v = V.Broadcast(Unsafe.Add(ref x, k));
                V.MultiplyAdd(ref a0, v, V.Multiply(V.LoadInt8(ref q), scale));
                V.MultiplyAdd(ref a1, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, V.Count)), scale));
                V.MultiplyAdd(ref a2, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 2 * V.Count)), scale));
                V.MultiplyAdd(ref a3, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 3 * V.Count)), scale));
            }
            Store(ref o, a0, a1, residual);
            Store(ref Unsafe.Add(ref o, 2 * V.Count), a2, a3, residual);
            return;
        }
        ref var half = ref panels.At(first, 2 * V.Count);
        for (var k = 0; k < IC; k++, offset += step)
        {
            if (ahead > 0) panels.Prefetch((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref at, offset)) + soon, first + k + ahead);
            panels.Load<V>(ref Unsafe.Add(ref at, offset), first + k, out var w0, out var w1);
            panels.Load<V>(ref Unsafe.Add(ref half, offset), first + k, out var w2, out var w3);
            var v = V.Broadcast(Unsafe.Add(ref x, k));
            V.MultiplyAdd(ref a0, v, w0);
            V.MultiplyAdd(ref a1, v, w1);
            V.MultiplyAdd(ref a2, v, w2);
            V.MultiplyAdd(ref a3, v, w3);
        }
        Store(ref o, a0, a1, residual);
        Store(ref Unsafe.Add(ref o, 2 * V.Count), a2, a3, residual);
    }

    /// <summary>
    /// One row against a panel's 32 columns in eight registers (Vector128), so that the panel is read once, row by row,
    /// with eight sums in flight. Four registers took the panel in two passes, the second from L2 for a float32 panel
    /// of 768 inputs (96 KB), and the four sums of a pass kept one core to about a multiply-add a cycle. Each output
    /// summed as in <see cref="Tile1"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile1Of8<V, P>(P panels, int p, ref float x, int IC, ref float o, ref float bias, bool residual, int ahead)
        where V : struct, ISimd<V> where P : struct, IPanelView
    {
        V a0 = V.Load(ref bias), a1 = V.Load(ref Unsafe.Add(ref bias, V.Count));
        V a2 = V.Load(ref Unsafe.Add(ref bias, 2 * V.Count)), a3 = V.Load(ref Unsafe.Add(ref bias, 3 * V.Count));
        V a4 = V.Load(ref Unsafe.Add(ref bias, 4 * V.Count)), a5 = V.Load(ref Unsafe.Add(ref bias, 5 * V.Count));
        V a6 = V.Load(ref Unsafe.Add(ref bias, 6 * V.Count)), a7 = V.Load(ref Unsafe.Add(ref bias, 7 * V.Count));
        var first = panels.Block(p, 0);
        nint step = panels.BlockBytes, soon = ahead * step, offset = 0;
        ref var q0 = ref panels.At(first, 0);
        ref var q1 = ref panels.At(first, 2 * V.Count);
        ref var q2 = ref panels.At(first, 4 * V.Count);
        ref var q3 = ref panels.At(first, 6 * V.Count);
        if (typeof(P) == typeof(Q8Panels))
        {
            // 8-bit weights with the block scales' reference found once, as in Tile1Of4.
            ref var scales = ref Unsafe.As<P, Q8Panels>(ref panels).ScaleAt(first);
            for (var k = 0; k < IC; k++, offset += step)
            {
                if (ahead > 0) panels.Prefetch((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref q0, offset)) + soon, first + k + ahead);
                ref var q = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref q0, offset));
                var scale = V.Broadcast(Unsafe.Add(ref scales, k));
                var v = V.Broadcast(Unsafe.Add(ref x, k));
                V.MultiplyAdd(ref a0, v, V.Multiply(V.LoadInt8(ref q), scale));
                V.MultiplyAdd(ref a1, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, V.Count)), scale));
                V.MultiplyAdd(ref a2, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 2 * V.Count)), scale));
                V.MultiplyAdd(ref a3, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 3 * V.Count)), scale));
                V.MultiplyAdd(ref a4, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 4 * V.Count)), scale));
                V.MultiplyAdd(ref a5, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 5 * V.Count)), scale));
                V.MultiplyAdd(ref a6, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 6 * V.Count)), scale));
                V.MultiplyAdd(ref a7, v, V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, 7 * V.Count)), scale));
            }
        }
        else
        {
            for (var k = 0; k < IC; k++, offset += step)
            {
                if (ahead > 0) panels.Prefetch((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref q0, offset)) + soon, first + k + ahead);
                panels.Load<V>(ref Unsafe.Add(ref q0, offset), first + k, out var w0, out var w1);
                panels.Load<V>(ref Unsafe.Add(ref q1, offset), first + k, out var w2, out var w3);
                panels.Load<V>(ref Unsafe.Add(ref q2, offset), first + k, out var w4, out var w5);
                panels.Load<V>(ref Unsafe.Add(ref q3, offset), first + k, out var w6, out var w7);
                var v = V.Broadcast(Unsafe.Add(ref x, k));
                V.MultiplyAdd(ref a0, v, w0);
                V.MultiplyAdd(ref a1, v, w1);
                V.MultiplyAdd(ref a2, v, w2);
                V.MultiplyAdd(ref a3, v, w3);
                V.MultiplyAdd(ref a4, v, w4);
                V.MultiplyAdd(ref a5, v, w5);
                V.MultiplyAdd(ref a6, v, w6);
                V.MultiplyAdd(ref a7, v, w7);
            }
        }
        Store(ref o, a0, a1, residual);
        Store(ref Unsafe.Add(ref o, 2 * V.Count), a2, a3, residual);
        Store(ref Unsafe.Add(ref o, 4 * V.Count), a4, a5, residual);
        Store(ref Unsafe.Add(ref o, 6 * V.Count), a6, a7, residual);
    }

    /// <summary>The next stored panel, <paramref name="bytes"/> from <paramref name="at"/>, asked for a slice per tile of <paramref name="tiles"/>.</summary>
    private readonly unsafe struct NextPanel(byte* at, int bytes, int tiles)
    {
        /// <summary>Tile <paramref name="tile"/>'s slice, a line every few of its <paramref name="IC"/> input channels; none without a panel.</summary>
        public Hint Slice(int tile, int IC)
        {
            if (at is null) return default;
            var lines = Math.Max(1, ((bytes + 63) / 64 + tiles - 1) / tiles);
            return new Hint(at + (nint)tile * lines * 64, Math.Max(1, IC / lines));
        }
    }

    /// <summary>A line to ask for every <see cref="Every"/> input channels, from <see cref="At"/> on; none when Every is 0.</summary>
    private readonly unsafe struct Hint(byte* at, int every)
    {
        public byte* At { get; } = at;
        public int Every { get; } = every;
    }

    /// <summary>Stores two registers, or adds them to what is there (the residual epilogue).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<V>(ref float o, V a0, V a1, bool residual) where V : struct, ISimd<V>
    {
        ref var o1 = ref Unsafe.Add(ref o, V.Count);
        if (residual)
        {
            a0 = V.Add(V.Load(ref o), a0);
            a1 = V.Add(V.Load(ref o1), a1);
        }
        V.Store(ref o, a0);
        V.Store(ref o1, a1);
    }

    /// <summary>Scalar reference: the naive triple loop, accumulating in double. The oracle for every backend, never the fast path.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int IC, int OC)
    {
        for (var n = 0; n < N; n++)
        {
            for (var o = 0; o < OC; o++)
            {
                var acc = bias.IsEmpty ? 0.0 : bias[o];
                for (var i = 0; i < IC; i++)
                    acc += (double)input[n * IC + i] * weight[i * OC + o];
                output[n * OC + o] = (float)acc;
            }
        }
    }

    internal static void CheckShapes(int outputLength, int inputLength, WeightData weight, int biasLength, int N, int IC, int OC)
    {
        // The unchecked loads above rely on these; a wrong caller must fail here, not read out of bounds.
        if (N < 0 || IC <= 0 || OC <= 0) throw new ArgumentOutOfRangeException(nameof(N), $"sizes N={N}, IC={IC}, OC={OC} must be positive");
        if (inputLength < (long)N * IC) throw new ArgumentException($"input holds {inputLength} values, needs N·IC = {(long)N * IC}", "input");
        if (outputLength < (long)N * OC) throw new ArgumentException($"output holds {outputLength} values, needs N·OC = {(long)N * OC}", "output");
        if (weight.Rows != IC || weight.Cols != OC || weight.Layout != WeightLayout.Panels)
            throw new ArgumentException($"weight is ({weight.Rows}, {weight.Cols}) in {weight.Layout}, needs ({IC}, {OC}) in panels", nameof(weight));
        if (biasLength != OC) throw new ArgumentException($"bias holds {biasLength} values, needs OC = {OC}", "bias");
    }
}
