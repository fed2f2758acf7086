using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeGpt2.Operators;

/// <summary>
/// The MLP's activation, element by element: GPT-2's tanh GELU, or another of <see cref="MlpActivation"/>.
/// </summary>
/// <remarks>
/// Shapes: out (N), input (N); may be the same buffer. The model applies the activation inside the MLP's first
/// matmul, on each tile as soon as it is written (<c>MatMulEpilogue.BiasGelu</c> and the others); that calls
/// <see cref="InPlace{V}"/>, and this standalone form computes every element the same way, so the two agree exactly.
/// </remarks>
internal static class Activations
{
    /// <summary>Vectorized <paramref name="activation"/> at the given SIMD width.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input, MlpActivation activation, VectorWidth width)
    {
        if (output.Length < input.Length)
            throw new ArgumentException($"output holds {output.Length} values, input {input.Length}", nameof(output));
        input.CopyTo(output);
        var values = output[..input.Length];
        switch (width)
        {
            case VectorWidth.Vector512: InPlace<Simd512>(values, activation); break;
            case VectorWidth.Vector256: InPlace<Simd256>(values, activation); break;
            case VectorWidth.Vector128: InPlace<Simd128>(values, activation); break;
            default: InPlace<SimdScalar>(values, activation); break;
        }
    }

    /// <summary>values = activation(values): the matmul's epilogue, on outputs just stored (still in L1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void InPlace<V>(Span<float> values, MlpActivation activation) where V : struct, ISimd<V>
    {
        switch (activation)
        {
            case MlpActivation.GeluTanh: Apply<V, GeluTanh>(values); break;
            case MlpActivation.Gelu: Apply<V, GeluErf>(values); break;
            case MlpActivation.Relu: Apply<V, Relu>(values); break;
            case MlpActivation.Silu: Apply<V, Silu>(values); break;
            case MlpActivation.QuickGelu: Apply<V, QuickGelu>(values); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, null);
        }
    }

    /// <summary>Every element through <typeparamref name="A"/>, the tail with the same operations one lane wide.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Apply<V, A>(Span<float> values) where V : struct, ISimd<V> where A : struct, IActivation
    {
        ref var g = ref MemoryMarshal.GetReference(values);
        var j = 0;
        for (; j + V.Count <= values.Length; j += V.Count) V.Store(ref Unsafe.Add(ref g, j), A.Apply(V.Load(ref Unsafe.Add(ref g, j))));
        for (; j < values.Length; j++) Unsafe.Add(ref g, j) = A.Apply(new SimdScalar(Unsafe.Add(ref g, j))).Value;
    }

    private interface IActivation
    {
        static abstract V Apply<V>(V x) where V : struct, ISimd<V>;
    }

    private readonly struct GeluTanh : IActivation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V Apply<V>(V x) where V : struct, ISimd<V> => VectorMath.Gelu(x);
    }

    private readonly struct GeluErf : IActivation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V Apply<V>(V x) where V : struct, ISimd<V> => VectorMath.GeluErf(x);
    }

    private readonly struct Relu : IActivation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V Apply<V>(V x) where V : struct, ISimd<V> => V.Max(x, V.Zero);
    }

    private readonly struct Silu : IActivation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V Apply<V>(V x) where V : struct, ISimd<V> => VectorMath.TimesSigmoid(x, 1f);
    }

    private readonly struct QuickGelu : IActivation
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V Apply<V>(V x) where V : struct, ISimd<V> => VectorMath.TimesSigmoid(x, 1.702f);
    }

    /// <summary>Scalar reference in double: the oracle for every backend.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input, MlpActivation activation)
    {
        for (var i = 0; i < input.Length; i++) output[i] = (float)Reference(input[i], activation);
    }

    /// <summary>The activation of one value, in double.</summary>
    public static double Reference(double x, MlpActivation activation) => activation switch
    {
        MlpActivation.GeluTanh => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        // x·Φ(x), each side from erfc so that neither subtracts nearly equal numbers.
        MlpActivation.Gelu => x >= 0 ? x * (1 - 0.5 * Erfc(x / Math.Sqrt(2))) : 0.5 * x * Erfc(-x / Math.Sqrt(2)),
        MlpActivation.Relu => Math.Max(x, 0),
        MlpActivation.Silu => x / (1 + Math.Exp(-x)),
        MlpActivation.QuickGelu => x / (1 + Math.Exp(-1.702 * x)),
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    /// <summary>
    /// erfc(z) = 1 − erf(z) in double (.NET has no erf): the Maclaurin series of erf up to 1 and Laplace's continued
    /// fraction beyond, evaluated from its 200th term; within 1e-15 of C's erfc, relatively, on either side of 1.
    /// </summary>
    public static double Erfc(double z)
    {
        if (double.IsNaN(z)) return double.NaN;
        if (z < 0) return 2 - Erfc(-z);
        if (z <= 1)
        {
            // erf(z) = 2/√π · Σ (−1)ⁿ z^(2n+1) / (n! (2n+1))
            double sum = 0, power = z;
            for (var n = 0; n < 100; n++)
            {
                var term = power / (2 * n + 1);
                sum += term;
                if (Math.Abs(term) < 1e-17 * Math.Abs(sum)) break;
                power *= -z * z / (n + 1);
            }
            return 1 - 2 / Math.Sqrt(Math.PI) * sum;
        }
        // erfc(z) = e^(−z²)/√π · 1 / (z + (1/2) / (z + 1 / (z + (3/2) / (z + 2 / (z + …)))))
        double tail = 0;
        for (var n = 200; n >= 1; n--) tail = n / 2.0 / (z + tail);
        return Math.Exp(-z * z) / Math.Sqrt(Math.PI) / (z + tail);
    }
}
