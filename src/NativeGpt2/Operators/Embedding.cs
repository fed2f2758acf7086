using System.Runtime.CompilerServices;
using NativeGpt2.Weights;

namespace NativeGpt2.Operators;

/// <summary>
/// Token plus position embedding: <c>out[n, :] = wte[ids[n], :] + wpe[positions[n], :]</c>.
/// </summary>
/// <remarks>
/// Shapes: out (N, C), ids (N), positions (N), wte (V, C) row-major in any format (a row is widened to
/// float32 first), wpe (context length, C). Callers check id and position ranges.
/// </remarks>
internal static class Embedding
{
    /// <summary>Vectorized embedding lookup.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(Span<float> output, ReadOnlySpan<int> ids, ReadOnlySpan<int> positions,
        WeightData wte, ReadOnlySpan<float> wpe, int C)
    {
        for (var n = 0; n < ids.Length; n++)
        {
            var row = output.Slice(n * C, C);
            wte.GetRow(ids[n], row);
            VectorMath.Add(row, wpe.Slice(positions[n] * C, C), row);
        }
    }

    /// <summary>Scalar reference.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<int> ids, ReadOnlySpan<int> positions,
        ReadOnlySpan<float> wte, ReadOnlySpan<float> wpe, int C)
    {
        for (var n = 0; n < ids.Length; n++)
            for (var c = 0; c < C; c++)
                output[n * C + c] = wte[ids[n] * C + c] + wpe[positions[n] * C + c];
    }
}
