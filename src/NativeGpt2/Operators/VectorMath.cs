using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// exp and the MLP's activations on SIMD registers, written once over <see cref="ISimd{TSelf}"/> with the same operations
/// in the same order at every width (the scalar path included), so an element's result does not depend
/// on the width or on whether it falls in a vector or in a tail.
/// </summary>
internal static class VectorMath
{
    /// <summary>1.5·2²³: adding it rounds a float below 2²² to an integer (to nearest, ties to even).</summary>
    public const float Rounding = 12582912f;

    /// <summary>The bits of <see cref="Rounding"/> as a float.</summary>
    public const int RoundingBits = 0x4B400000;

    private const float Log2E = 1.44269504088896341f;
    // ln 2 split so that n · Ln2High is exact for |n| ≤ 2⁹ (Cody and Waite).
    private const float Ln2High = 0.693359375f;
    private const float Ln2Low = -2.12194440e-4f;

    /// <summary>
    /// e^x, within 2 ulp over [-86, 88]; inputs beyond are clamped there (e^-86 ≈ 4.5e-38, e^88 ≈ 1.7e38).
    /// The lower bound keeps 2^n · e^r a normal number: a subnormal result costs a slow microcode path.
    /// x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by a degree-7 polynomial (Cephes' expf), then scaled by 2^n.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Exp<V>(V x) where V : struct, ISimd<V>
    {
        x = V.Min(V.Max(x, V.Broadcast(-86f)), V.Broadcast(88f));
        var t = V.Fma(x, V.Broadcast(Log2E), V.Broadcast(Rounding));
        var n = V.Subtract(t, V.Broadcast(Rounding));
        var r = V.Fma(n, V.Broadcast(-Ln2High), x);
        V.MultiplyAdd(ref r, n, V.Broadcast(-Ln2Low));
        var p = V.Broadcast(1.9875691500e-4f);
        p = V.Fma(p, r, V.Broadcast(1.3981999507e-3f));
        p = V.Fma(p, r, V.Broadcast(8.3334519073e-3f));
        p = V.Fma(p, r, V.Broadcast(4.1665795894e-2f));
        p = V.Fma(p, r, V.Broadcast(1.6666665459e-1f));
        p = V.Fma(p, r, V.Broadcast(5.0000001201e-1f));
        var y = V.Add(V.Fma(p, V.Multiply(r, r), r), V.Broadcast(1f));
        return V.Multiply(y, V.Pow2OfRounded(t));
    }

    private const float Sqrt2OverPi = 0.7978845608028654f;
    private const float Cubic = 0.044715f;

    /// <summary>
    /// GELU, tanh approximation: 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), computed as the
    /// equal x / (1 + e^(-2u)), which needs one exp and is exact in the limits (x for large x, -0 for very negative x).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Gelu<V>(V x) where V : struct, ISimd<V>
    {
        var cube = V.Multiply(V.Multiply(x, x), V.Broadcast(Cubic));
        var minusTwoU = V.Multiply(V.Fma(cube, x, x), V.Broadcast(-2f * Sqrt2OverPi));
        return V.Divide(x, V.Add(V.Broadcast(1f), Exp(minusTwoU)));
    }

    /// <summary>
    /// GELU as defined, x·Φ(x) = 0.5·x·(1 + erf(x/√2)), computed as max(x, 0) − 0.5·|x|·erfc(|x|/√2), equal on both
    /// sides and with nothing cancelling. erfc(a) = t·e^(−a² + P(t)) with t = 1 / (1 + a/2) and a degree-9 polynomial P
    /// (Numerical Recipes' erfcc, Chebyshev-fitted): relative error below 1.2e-7 for every a ≥ 0. |x| is capped at 16
    /// there, where 0.5·|x|·erfc is below 1e-37, so that x = ∞ gives ∞, not ∞ · 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V GeluErf<V>(V x) where V : struct, ISimd<V>
    {
        var magnitude = V.Min(V.Max(x, V.Subtract(V.Zero, x)), V.Broadcast(16f));
        var a = V.Multiply(magnitude, V.Broadcast(0.70710678118654752f));
        var t = V.Divide(V.Broadcast(1f), V.Fma(a, V.Broadcast(0.5f), V.Broadcast(1f)));
        var p = V.Broadcast(0.17087277f);
        p = V.Fma(p, t, V.Broadcast(-0.82215223f));
        p = V.Fma(p, t, V.Broadcast(1.48851587f));
        p = V.Fma(p, t, V.Broadcast(-1.13520398f));
        p = V.Fma(p, t, V.Broadcast(0.27886807f));
        p = V.Fma(p, t, V.Broadcast(-0.18628806f));
        p = V.Fma(p, t, V.Broadcast(0.09678418f));
        p = V.Fma(p, t, V.Broadcast(0.37409196f));
        p = V.Fma(p, t, V.Broadcast(1.00002368f));
        p = V.Fma(p, t, V.Broadcast(-1.26551223f));
        var erfc = V.Multiply(t, Exp(V.Fma(V.Subtract(V.Zero, a), a, p)));
        return V.Fma(V.Multiply(magnitude, V.Broadcast(-0.5f)), erfc, V.Max(x, V.Zero));
    }

    /// <summary>x·σ(k·x) = x / (1 + e^(−k·x)): SiLU for k = 1, the quick GELU for k = 1.702; x for large x, −0 for very negative x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V TimesSigmoid<V>(V x, float k) where V : struct, ISimd<V> =>
        V.Divide(x, V.Add(V.Broadcast(1f), Exp(V.Multiply(x, V.Broadcast(-k)))));

    /// <summary>
    /// output = a + b, element by element. Here rather than TensorPrimitives.Add so that it is compiled optimized at
    /// once: called a few times a pass, a library loop stays unoptimized for the first second (20× slower).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> output)
    {
        if (b.Length < a.Length || output.Length < a.Length) throw new ArgumentException("spans of different lengths");
        ref var x = ref MemoryMarshal.GetReference(a);
        ref var y = ref MemoryMarshal.GetReference(b);
        ref var o = ref MemoryMarshal.GetReference(output);
        var i = 0;
        for (; i + Vector256<float>.Count <= a.Length; i += Vector256<float>.Count)
            (Vector256.LoadUnsafe(ref x, (nuint)i) + Vector256.LoadUnsafe(ref y, (nuint)i)).StoreUnsafe(ref o, (nuint)i);
        for (; i < a.Length; i++) Unsafe.Add(ref o, i) = Unsafe.Add(ref x, i) + Unsafe.Add(ref y, i);
    }

    /// <summary>values ·= factor, element by element; compiled optimized at once, as <see cref="Add"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(Span<float> values, float factor)
    {
        ref var x = ref MemoryMarshal.GetReference(values);
        var f = Vector256.Create(factor);
        var i = 0;
        for (; i + Vector256<float>.Count <= values.Length; i += Vector256<float>.Count)
            (Vector256.LoadUnsafe(ref x, (nuint)i) * f).StoreUnsafe(ref x, (nuint)i);
        for (; i < values.Length; i++) Unsafe.Add(ref x, i) *= factor;
    }
}
