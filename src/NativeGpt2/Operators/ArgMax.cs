using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// Greedy selection: <c>out[n] = the first v with logits[n, v] = max_v logits[n, :]</c>, or −1 when the
/// row holds NaN or +∞ or is all −∞ (nothing can be chosen; the caller reports why).
/// </summary>
/// <remarks>Shapes: out (N), logits (N, V). The first index wins ties, as <c>torch.argmax</c> and the sampler do (−0 ties with +0).</remarks>
internal static class ArgMax
{
    /// <summary>Two vectorized passes per row: the largest value (NaN if any is NaN), then the first index holding it.</summary>
    public static void Forward(Span<int> output, ReadOnlySpan<float> logits, int N, int V)
    {
        for (var n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            var max = TensorPrimitives.Max(row);
            output[n] = float.IsFinite(max) ? First(row, max) : -1;
        }
    }

    /// <summary>The first index i with row[i] == value (IEEE equality); value occurs in the row.</summary>
    private static int First(ReadOnlySpan<float> row, float value)
    {
        ref var r = ref MemoryMarshal.GetReference(row);
        var i = 0;
        var target = Vector256.Create(value);
        for (; i + Vector256<float>.Count <= row.Length; i += Vector256<float>.Count)
        {
            var equal = Vector256.Equals(Vector256.LoadUnsafe(ref r, (nuint)i), target);
            if (equal != Vector256<float>.Zero) return i + System.Numerics.BitOperations.TrailingZeroCount(equal.ExtractMostSignificantBits());
        }
        for (; i < row.Length; i++)
            if (row[i] == value) return i;
        return -1;
    }

    /// <summary>The scalar definition, one comparison at a time: the oracle for <see cref="Forward"/>.</summary>
    public static void Reference(Span<int> output, ReadOnlySpan<float> logits, int N, int V)
    {
        for (var n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            var best = 0;
            var usable = true;
            for (var v = 0; v < V; v++)
            {
                var x = row[v];
                if (float.IsNaN(x) || float.IsPositiveInfinity(x)) usable = false;
                if (x > row[best]) best = v;
            }
            output[n] = usable && !float.IsNegativeInfinity(row[best]) ? best : -1;
        }
    }
}
