using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeGpt2.Operators;

/// <summary>
/// GELU, tanh approximation (<c>gelu_new</c>):
/// <c>out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c>.
/// </summary>
/// <remarks>
/// Shapes: out (N), input (N); may be the same buffer. The model applies GELU inside the MLP's first
/// matmul, on each tile as soon as it is written (<c>MatMulEpilogue.BiasGelu</c>); this standalone form
/// computes every element with the same <see cref="VectorMath.Gelu{V}"/>, so the two agree exactly.
/// </remarks>
internal static class Gelu
{
    /// <summary>Vectorized GELU at the given SIMD width.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> input, VectorWidth width)
    {
        if (output.Length < input.Length)
            throw new ArgumentException($"output holds {output.Length} values, input {input.Length}", nameof(output));
        switch (width)
        {
            case VectorWidth.Vector512: Run<Simd512>(output, input); break;
            case VectorWidth.Vector256: Run<Simd256>(output, input); break;
            default: Run<SimdScalar>(output, input); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<V>(Span<float> output, ReadOnlySpan<float> input) where V : struct, ISimd<V>
    {
        ref var x = ref MemoryMarshal.GetReference(input);
        ref var o = ref MemoryMarshal.GetReference(output);
        var i = 0;
        for (; i <= input.Length - V.Count; i += V.Count)
            V.Store(ref Unsafe.Add(ref o, i), VectorMath.Gelu(V.Load(ref Unsafe.Add(ref x, i))));
        for (; i < input.Length; i++)
            Unsafe.Add(ref o, i) = VectorMath.Gelu(new SimdScalar(Unsafe.Add(ref x, i))).Value;
    }

    /// <summary>Scalar reference in double.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input)
    {
        for (var i = 0; i < input.Length; i++)
        {
            double x = input[i];
            output[i] = (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));
        }
    }
}
