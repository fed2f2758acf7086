using System.Numerics.Tensors;

namespace NativeGpt2.Operators;

/// <summary>
/// Token plus position embedding: <c>out[n, :] = wte[ids[n], :] + wpe[positions[n], :]</c>.
/// </summary>
/// <remarks>Shapes: out (N, C), ids (N), positions (N), wte (V, C), wpe (context length, C). Callers check id and position ranges.</remarks>
internal static class Embedding
{
    /// <summary>Vectorized embedding lookup.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<int> ids, ReadOnlySpan<int> positions,
        ReadOnlySpan<float> wte, ReadOnlySpan<float> wpe, int C)
    {
        for (var n = 0; n < ids.Length; n++)
            TensorPrimitives.Add(wte.Slice(ids[n] * C, C), wpe.Slice(positions[n] * C, C), output.Slice(n * C, C));
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
