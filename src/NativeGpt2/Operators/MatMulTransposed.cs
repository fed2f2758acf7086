using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// A projection whose weight is stored one row per output channel: <c>out = input · weightᵀ</c>.
/// This is the LM head, where the weight is the token-embedding matrix (V, C) read in place.
/// </summary>
/// <remarks>
/// Shapes: out (N, OC), input (N, IC), weight (OC, IC). Each output is the dot product of an input row
/// and a weight row, both contiguous, so the fast path runs dot products over 8-float vectors.
/// </remarks>
internal static class MatMulTransposed
{
    // 2 input rows × 4 weight rows = 8 vector accumulators, plus the 2 input vectors and 1 weight vector.
    private const int TileRows = 2;
    private const int TileWeights = 4;

    // Weight rows per work item: a panel of 64 rows is re-read from cache for every input row.
    private const int PanelRows = 64;

    /// <summary>Vectorized projection, spread over all cores.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, ReadOnlyMemory<float> weight, int N, int IC, int OC)
    {
        MatMul.CheckShapes(output.Length, input.Length, weight.Length, 0, N, IC, OC);
        var panels = (OC + PanelRows - 1) / PanelRows;
        Parallelism.For(panels, (long)N * IC * PanelRows, (start, end) =>
        {
            var o = output.Span;
            var x = input.Span;
            var w = weight.Span;
            for (var panel = start; panel < end; panel++)
            {
                var from = panel * PanelRows;
                var to = Math.Min(OC, from + PanelRows);
                if (Vector256.IsHardwareAccelerated && IC >= Vector256<float>.Count)
                    Panel(o, x, w, N, IC, OC, from, to);
                else
                    ScalarRows(o, x, w, N, IC, OC, from, to);
            }
        });
    }

    private static void Panel(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight, int N, int IC, int OC, int from, int to)
    {
        // Every output is accumulated the same way (8 lanes in order, then the lane sum, then the IC % 8
        // tail) whichever tile computes it, so a row's logits do not depend on which other rows share the
        // batch: batched generation gives exactly the one-by-one result.
        var n = 0;
        for (; n + TileRows <= N; n += TileRows)
        {
            var k = from;
            for (; k + TileWeights <= to; k += TileWeights)
                Tile2x4(output, input, weight, n, k, IC, OC);
            for (; k < to; k++)
            {
                output[n * OC + k] = Dot(input.Slice(n * IC, IC), weight.Slice(k * IC, IC));
                output[(n + 1) * OC + k] = Dot(input.Slice((n + 1) * IC, IC), weight.Slice(k * IC, IC));
            }
        }
        for (; n < N; n++)
        {
            var k = from;
            for (; k + TileWeights <= to; k += TileWeights)
                Tile1x4(output, input, weight, n, k, IC, OC);
            for (; k < to; k++)
                output[n * OC + k] = Dot(input.Slice(n * IC, IC), weight.Slice(k * IC, IC));
        }
    }

    /// <summary>
    /// One row against 4 weight rows: four independent dot products in flight, each accumulated exactly
    /// as in <see cref="Tile2x4"/>. This is the generation path (one position per sequence).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x4(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight, int n, int k, int IC, int OC)
    {
        ref var x = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        ref var w0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(weight), k * IC);
        ref var w1 = ref Unsafe.Add(ref w0, IC);
        ref var w2 = ref Unsafe.Add(ref w1, IC);
        ref var w3 = ref Unsafe.Add(ref w2, IC);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var i = 0;
        for (; i <= IC - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var u = (nuint)i;
            var v = Vector256.LoadUnsafe(ref x, u);
            a0 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w0, u), a0);
            a1 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w1, u), a1);
            a2 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w2, u), a2);
            a3 = Vector256.MultiplyAddEstimate(v, Vector256.LoadUnsafe(ref w3, u), a3);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        for (; i < IC; i++)
        {
            var p = Unsafe.Add(ref x, i);
            s0 += p * Unsafe.Add(ref w0, i);
            s1 += p * Unsafe.Add(ref w1, i);
            s2 += p * Unsafe.Add(ref w2, i);
            s3 += p * Unsafe.Add(ref w3, i);
        }
        var row = output.Slice(n * OC + k, TileWeights);
        row[0] = s0; row[1] = s1; row[2] = s2; row[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile2x4(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight, int n, int k, int IC, int OC)
    {
        ref var x0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(input), n * IC);
        ref var x1 = ref Unsafe.Add(ref x0, IC);
        ref var w0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(weight), k * IC);
        ref var w1 = ref Unsafe.Add(ref w0, IC);
        ref var w2 = ref Unsafe.Add(ref w1, IC);
        ref var w3 = ref Unsafe.Add(ref w2, IC);

        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        var i = 0;
        for (; i <= IC - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var u = (nuint)i;
            var v0 = Vector256.LoadUnsafe(ref x0, u);
            var v1 = Vector256.LoadUnsafe(ref x1, u);
            var w = Vector256.LoadUnsafe(ref w0, u);
            a00 = Vector256.MultiplyAddEstimate(v0, w, a00);
            a10 = Vector256.MultiplyAddEstimate(v1, w, a10);
            w = Vector256.LoadUnsafe(ref w1, u);
            a01 = Vector256.MultiplyAddEstimate(v0, w, a01);
            a11 = Vector256.MultiplyAddEstimate(v1, w, a11);
            w = Vector256.LoadUnsafe(ref w2, u);
            a02 = Vector256.MultiplyAddEstimate(v0, w, a02);
            a12 = Vector256.MultiplyAddEstimate(v1, w, a12);
            w = Vector256.LoadUnsafe(ref w3, u);
            a03 = Vector256.MultiplyAddEstimate(v0, w, a03);
            a13 = Vector256.MultiplyAddEstimate(v1, w, a13);
        }
        float s00 = Vector256.Sum(a00), s01 = Vector256.Sum(a01), s02 = Vector256.Sum(a02), s03 = Vector256.Sum(a03);
        float s10 = Vector256.Sum(a10), s11 = Vector256.Sum(a11), s12 = Vector256.Sum(a12), s13 = Vector256.Sum(a13);
        // The last IC % 8 channels, one at a time.
        for (; i < IC; i++)
        {
            float p = Unsafe.Add(ref x0, i), q = Unsafe.Add(ref x1, i);
            float c0 = Unsafe.Add(ref w0, i), c1 = Unsafe.Add(ref w1, i), c2 = Unsafe.Add(ref w2, i), c3 = Unsafe.Add(ref w3, i);
            s00 += p * c0; s01 += p * c1; s02 += p * c2; s03 += p * c3;
            s10 += q * c0; s11 += q * c1; s12 += q * c2; s13 += q * c3;
        }
        var row0 = output.Slice(n * OC + k, TileWeights);
        row0[0] = s00; row0[1] = s01; row0[2] = s02; row0[3] = s03;
        var row1 = output.Slice((n + 1) * OC + k, TileWeights);
        row1[0] = s10; row1[1] = s11; row1[2] = s12; row1[3] = s13;
    }

    /// <summary>One output, accumulated exactly as <see cref="Tile2x4"/> accumulates each of its eight.</summary>
    private static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> w)
    {
        ref var xr = ref MemoryMarshal.GetReference(x);
        ref var wr = ref MemoryMarshal.GetReference(w);
        var acc = Vector256<float>.Zero;
        var i = 0;
        for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            acc = Vector256.MultiplyAddEstimate(Vector256.LoadUnsafe(ref xr, (nuint)i), Vector256.LoadUnsafe(ref wr, (nuint)i), acc);
        var sum = Vector256.Sum(acc);
        for (; i < x.Length; i++)
            sum += Unsafe.Add(ref xr, i) * Unsafe.Add(ref wr, i);
        return sum;
    }

    /// <summary>The path without SIMD (or with fewer than 8 channels): plain float dot products.</summary>
    private static void ScalarRows(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight, int N, int IC, int OC, int from, int to)
    {
        for (var n = 0; n < N; n++)
        {
            for (var k = from; k < to; k++)
            {
                var acc = 0f;
                for (var i = 0; i < IC; i++) acc += input[n * IC + i] * weight[k * IC + i];
                output[n * OC + k] = acc;
            }
        }
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
