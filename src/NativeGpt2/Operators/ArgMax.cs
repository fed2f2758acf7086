using System.Runtime.CompilerServices;
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
    /// <summary>Two vectorized passes per row: the largest value (and whether any is NaN), then the first index holding it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(Span<int> output, ReadOnlySpan<float> logits, int N, int V)
    {
        for (var n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            var max = Max(row, out var nan);
            output[n] = !nan && float.IsFinite(max) ? First(row, max) : -1;
        }
    }

    /// <summary>
    /// The largest value of the row, ignoring NaN, which <paramref name="nan"/> reports. Written here rather than
    /// TensorPrimitives.Max so that it is compiled optimized at once: a call per token is too few for tiered
    /// compilation to promote that loop soon (it ran 25× slower for the first hundreds of tokens).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Max(ReadOnlySpan<float> row, out bool nan)
    {
        ref var r = ref MemoryMarshal.GetReference(row);
        var i = 0;
        var largest = Vector256.Create(float.NegativeInfinity);
        var unordered = Vector256<float>.Zero;
        for (; i + Vector256<float>.Count <= row.Length; i += Vector256<float>.Count)
        {
            var v = Vector256.LoadUnsafe(ref r, (nuint)i);
            largest = Vector256.MaxNative(largest, v);
            unordered |= ~Vector256.Equals(v, v);
        }
        nan = unordered != Vector256<float>.Zero;
        var max = float.NegativeInfinity;
        for (var lane = 0; lane < Vector256<float>.Count; lane++) max = MathF.Max(max, largest[lane]);
        for (; i < row.Length; i++)
        {
            var x = Unsafe.Add(ref r, i);
            if (float.IsNaN(x)) nan = true;
            else if (x > max) max = x;
        }
        return max;
    }

    /// <summary>The first index i with row[i] == value (IEEE equality); value occurs in the row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
