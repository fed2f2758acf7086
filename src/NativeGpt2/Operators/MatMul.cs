using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// The projection of GPT-2's <c>Conv1D</c> layers: <c>out = input · weight + bias</c>.
/// </summary>
/// <remarks>
/// Shapes: out (N, OC), input (N, IC), weight (IC, OC), bias (OC) or empty.
/// The weight is stored <c>[in, out]</c> exactly as in the checkpoint (the transpose of <c>nn.Linear</c>),
/// so a row of the weight holds one input channel's contribution to every output channel, and the fast
/// path streams those rows: each step broadcasts one input value and adds it times a weight row segment.
/// </remarks>
internal static class MatMul
{
    // The register tile: 4 rows of input by 16 output channels (two 8-float vectors) keeps 8 accumulators,
    // 2 weight vectors and 1 broadcast live, within the 16 vector registers of AVX2.
    private const int TileRows = 4;
    private const int TileCols = 16;

    // Output channels handled by one work item: the weight panel (IC × 64 floats) stays in cache while
    // every row of the input streams past it.
    private const int PanelCols = 64;

    /// <summary>Vectorized matmul, spread over all cores.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, ReadOnlyMemory<float> weight,
        ReadOnlyMemory<float> bias, int N, int IC, int OC)
    {
        CheckShapes(output.Length, input.Length, weight.Length, bias.Length, N, IC, OC);
        if (!Vector256.IsHardwareAccelerated)
        {
            Parallelism.For(N, (long)IC * OC, (start, end) =>
                Scalar(output.Span[(start * OC)..(end * OC)], input.Span[(start * IC)..(end * IC)], weight.Span, bias.Span, end - start, IC, OC));
            return;
        }

        var panels = (OC + PanelCols - 1) / PanelCols;
        Parallelism.For(panels, (long)N * IC * PanelCols, (start, end) =>
        {
            // With several rows, each 16-channel strip of the weight is first copied into a contiguous
            // buffer: read in place, its rows lie OC floats apart, so every step of the inner loop would
            // touch a new page. One row reads each weight once anyway and streams it in place.
            var packed = N >= TileRows ? ArrayPool<float>.Shared.Rent(IC * TileCols) : null;
            try
            {
                for (var panel = start; panel < end; panel++)
                    Panel(output.Span, input.Span, weight.Span, bias.Span, N, IC, OC, panel * PanelCols, Math.Min(OC, (panel + 1) * PanelCols), packed);
            }
            finally
            {
                if (packed is not null) ArrayPool<float>.Shared.Return(packed);
            }
        });
    }

    private static void Panel(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int IC, int OC, int colStart, int colEnd, float[]? packed)
    {
        var col = colStart;
        if (packed is not null)
        {
            for (; col + TileCols <= colEnd; col += TileCols)
            {
                // packed (IC, 16) = weight[:, col..col+16]
                for (var i = 0; i < IC; i++)
                    weight.Slice(i * OC + col, TileCols).CopyTo(packed.AsSpan(i * TileCols, TileCols));
                ref var strip = ref MemoryMarshal.GetArrayDataReference(packed);
                var n = 0;
                for (; n + TileRows <= N; n += TileRows)
                    Tile4x16(output, input, ref strip, TileCols, bias, n, col, IC, OC);
                for (; n < N; n++)
                    Tile1x16(output, input, ref strip, TileCols, bias, n, col, IC, OC);
            }
        }
        else
        {
            ref var w = ref MemoryMarshal.GetReference(weight);
            for (; col + 4 * TileCols <= colEnd; col += 4 * TileCols)
                for (var n = 0; n < N; n++)
                    Tile1x64(output, input, ref Unsafe.Add(ref w, col), (nuint)OC, bias, n, col, IC, OC);
            for (; col + TileCols <= colEnd; col += TileCols)
                for (var n = 0; n < N; n++)
                    Tile1x16(output, input, ref Unsafe.Add(ref w, col), (nuint)OC, bias, n, col, IC, OC);
        }
        // Fewer than 16 channels left at the end of the matrix: plain dot products down the columns.
        for (; col < colEnd; col++)
        {
            for (var n = 0; n < N; n++)
            {
                var acc = bias.IsEmpty ? 0f : bias[col];
                for (var i = 0; i < IC; i++)
                    acc = float.MultiplyAddEstimate(input[n * IC + i], weight[i * OC + col], acc);
                output[n * OC + col] = acc;
            }
        }
    }

    // Every tile computes each output the same way: start from the bias and add x[n, i] · w[i, o] for
    // i = 0, 1, … with one fused multiply-add each. So an output does not depend on the tile that computed
    // it, nor on the other rows in the batch, and batched generation equals one-by-one generation.

    /// <summary>4 rows × 16 channels; <paramref name="w"/> is weight[0, col] and consecutive rows are <paramref name="stride"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x16(Span<float> output, ReadOnlySpan<float> input, ref float w, nuint stride,
        ReadOnlySpan<float> bias, int n, int col, int IC, int OC)
    {
        ref var x0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        ref var x3 = ref Unsafe.Add(ref x2, IC);

        var b0 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col, 8));
        var b1 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col + 8, 8));
        Vector256<float> a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;

        nuint offset = 0;
        for (var i = 0; i < IC; i++, offset += stride)
        {
            var w0 = Vector256.LoadUnsafe(ref w, offset);
            var w1 = Vector256.LoadUnsafe(ref w, offset + 8);
            var v = Vector256.Create(Unsafe.Add(ref x0, i));
            a00 = Vector256.MultiplyAddEstimate(v, w0, a00);
            a01 = Vector256.MultiplyAddEstimate(v, w1, a01);
            v = Vector256.Create(Unsafe.Add(ref x1, i));
            a10 = Vector256.MultiplyAddEstimate(v, w0, a10);
            a11 = Vector256.MultiplyAddEstimate(v, w1, a11);
            v = Vector256.Create(Unsafe.Add(ref x2, i));
            a20 = Vector256.MultiplyAddEstimate(v, w0, a20);
            a21 = Vector256.MultiplyAddEstimate(v, w1, a21);
            v = Vector256.Create(Unsafe.Add(ref x3, i));
            a30 = Vector256.MultiplyAddEstimate(v, w0, a30);
            a31 = Vector256.MultiplyAddEstimate(v, w1, a31);
        }

        ref var o = ref Unsafe.Add(ref MemoryMarshal.GetReference(output), n * OC + col);
        var rowStride = (nuint)OC;
        a00.StoreUnsafe(ref o);
        a01.StoreUnsafe(ref o, 8);
        a10.StoreUnsafe(ref o, rowStride);
        a11.StoreUnsafe(ref o, rowStride + 8);
        a20.StoreUnsafe(ref o, 2 * rowStride);
        a21.StoreUnsafe(ref o, 2 * rowStride + 8);
        a30.StoreUnsafe(ref o, 3 * rowStride);
        a31.StoreUnsafe(ref o, 3 * rowStride + 8);
    }

    /// <summary>1 row × 16 channels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x16(Span<float> output, ReadOnlySpan<float> input, ref float w, nuint stride,
        ReadOnlySpan<float> bias, int n, int col, int IC, int OC)
    {
        ref var x = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        var a0 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col, 8));
        var a1 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col + 8, 8));
        nuint offset = 0;
        for (var i = 0; i < IC; i++, offset += stride)
        {
            var v = Vector256.Create(Unsafe.Add(ref x, i));
            a0 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset), a0);
            a1 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 8), a1);
        }
        ref var o = ref Unsafe.Add(ref MemoryMarshal.GetReference(output), n * OC + col);
        a0.StoreUnsafe(ref o);
        a1.StoreUnsafe(ref o, 8);
    }

    /// <summary>
    /// 1 row × 64 channels, for a single row read in place: each step reads 256 contiguous bytes of a
    /// weight row (four cache lines) rather than one line at a time, which keeps the memory system busy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x64(Span<float> output, ReadOnlySpan<float> input, ref float w, nuint stride,
        ReadOnlySpan<float> bias, int n, int col, int IC, int OC)
    {
        ref var x = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        Vector256<float> a0, a1, a2, a3, a4, a5, a6, a7;
        if (bias.IsEmpty)
        {
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector256<float>.Zero;
        }
        else
        {
            var b = bias.Slice(col, 64);
            a0 = Vector256.Create(b[..8]); a1 = Vector256.Create(b.Slice(8, 8)); a2 = Vector256.Create(b.Slice(16, 8)); a3 = Vector256.Create(b.Slice(24, 8));
            a4 = Vector256.Create(b.Slice(32, 8)); a5 = Vector256.Create(b.Slice(40, 8)); a6 = Vector256.Create(b.Slice(48, 8)); a7 = Vector256.Create(b.Slice(56, 8));
        }
        nuint offset = 0;
        for (var i = 0; i < IC; i++, offset += stride)
        {
            var v = Vector256.Create(Unsafe.Add(ref x, i));
            a0 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset), a0);
            a1 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 8), a1);
            a2 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 16), a2);
            a3 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 24), a3);
            a4 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 32), a4);
            a5 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 40), a5);
            a6 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 48), a6);
            a7 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w, offset + 56), a7);
        }
        ref var o = ref Unsafe.Add(ref MemoryMarshal.GetReference(output), n * OC + col);
        a0.StoreUnsafe(ref o); a1.StoreUnsafe(ref o, 8); a2.StoreUnsafe(ref o, 16); a3.StoreUnsafe(ref o, 24);
        a4.StoreUnsafe(ref o, 32); a5.StoreUnsafe(ref o, 40); a6.StoreUnsafe(ref o, 48); a7.StoreUnsafe(ref o, 56);
    }

    /// <summary>The path without SIMD: the triple loop in float.</summary>
    private static void Scalar(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int IC, int OC)
    {
        for (var n = 0; n < N; n++)
        {
            for (var o = 0; o < OC; o++)
            {
                var acc = bias.IsEmpty ? 0f : bias[o];
                for (var i = 0; i < IC; i++)
                    acc = float.MultiplyAddEstimate(input[n * IC + i], weight[i * OC + o], acc);
                output[n * OC + o] = acc;
            }
        }
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

    internal static void CheckShapes(int outputLength, int inputLength, int weightLength, int biasLength, int N, int IC, int OC)
    {
        // The unchecked loads above rely on these; a wrong caller must fail here, not read out of bounds.
        if (N < 0 || IC <= 0 || OC <= 0) throw new ArgumentOutOfRangeException(nameof(N), $"sizes N={N}, IC={IC}, OC={OC} must be positive");
        if (inputLength < (long)N * IC) throw new ArgumentException($"input holds {inputLength} values, needs N·IC = {(long)N * IC}", "input");
        if (outputLength < (long)N * OC) throw new ArgumentException($"output holds {outputLength} values, needs N·OC = {(long)N * OC}", "output");
        if (weightLength != (long)IC * OC) throw new ArgumentException($"weight holds {weightLength} values, needs IC·OC = {(long)IC * OC}", "weight");
        if (biasLength != 0 && biasLength != OC) throw new ArgumentException($"bias holds {biasLength} values, needs OC = {OC} or none", "bias");
    }
}
