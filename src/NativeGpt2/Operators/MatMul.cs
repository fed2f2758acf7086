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
public static class MatMul
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
                Reference(output.Span[(start * OC)..(end * OC)], input.Span[(start * IC)..(end * IC)], weight.Span, bias.Span, end - start, IC, OC));
            return;
        }

        var panels = (OC + PanelCols - 1) / PanelCols;
        Parallelism.For(panels, (long)N * IC * PanelCols, (start, end) =>
        {
            var o = output.Span;
            var x = input.Span;
            var w = weight.Span;
            var b = bias.Span;
            for (var panel = start; panel < end; panel++)
                Panel(o, x, w, b, N, IC, OC, panel * PanelCols, Math.Min(OC, (panel + 1) * PanelCols));
        });
    }

    private static void Panel(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int IC, int OC, int colStart, int colEnd)
    {
        var col = colStart;
        for (; col + TileCols <= colEnd; col += TileCols)
        {
            var n = 0;
            for (; n + TileRows <= N; n += TileRows)
                Tile4x16(output, input, weight, bias, n, col, IC, OC);
            for (; n < N; n++)
                Tile1x16(output, input, weight, bias, n, col, IC, OC);
        }
        // Fewer than 16 channels left at the end of the matrix: plain dot products down the columns.
        for (; col < colEnd; col++)
        {
            for (var n = 0; n < N; n++)
            {
                var acc = bias.IsEmpty ? 0f : bias[col];
                for (var i = 0; i < IC; i++)
                    acc += input[n * IC + i] * weight[i * OC + col];
                output[n * OC + col] = acc;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x16(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int n, int col, int IC, int OC)
    {
        ref var w = ref Unsafe.Add(ref MemoryMarshal.GetReference(weight), col);
        ref var x0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var x2 = ref Unsafe.Add(ref x1, IC);
        ref var x3 = ref Unsafe.Add(ref x2, IC);

        var b0 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col, 8));
        var b1 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col + 8, 8));
        Vector256<float> a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;

        nuint stride = (nuint)OC, offset = 0;
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
        a00.StoreUnsafe(ref o);
        a01.StoreUnsafe(ref o, 8);
        a10.StoreUnsafe(ref o, stride);
        a11.StoreUnsafe(ref o, stride + 8);
        a20.StoreUnsafe(ref o, 2 * stride);
        a21.StoreUnsafe(ref o, 2 * stride + 8);
        a30.StoreUnsafe(ref o, 3 * stride);
        a31.StoreUnsafe(ref o, 3 * stride + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x16(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int n, int col, int IC, int OC)
    {
        ref var w = ref Unsafe.Add(ref MemoryMarshal.GetReference(weight), col);
        ref var x = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        var a0 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col, 8));
        var a1 = bias.IsEmpty ? Vector256<float>.Zero : Vector256.Create(bias.Slice(col + 8, 8));
        nuint stride = (nuint)OC, offset = 0;
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

    /// <summary>Scalar reference: the naive triple loop.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int IC, int OC)
    {
        for (var n = 0; n < N; n++)
        {
            for (var o = 0; o < OC; o++)
            {
                var acc = bias.IsEmpty ? 0f : bias[o];
                for (var i = 0; i < IC; i++)
                    acc += input[n * IC + i] * weight[i * OC + o];
                output[n * OC + o] = acc;
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
