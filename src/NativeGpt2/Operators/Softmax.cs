using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace NativeGpt2.Operators;

/// <summary>
/// Softmax of one row: <c>out[i] = exp(x[i] - max) / Σ exp(x[j] - max)</c>.
/// </summary>
/// <remarks>
/// Shapes: out (N), input (N); may be the same buffer. Subtracting the maximum keeps exp from
/// overflowing and changes nothing mathematically. A row whose entries are all -∞ (every key masked)
/// has no distribution; it becomes all zeros rather than NaN.
/// </remarks>
internal static class Softmax
{
    /// <summary>Vectorized softmax of one row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(Span<float> output, ReadOnlySpan<float> input)
    {
        if (input.IsEmpty) return;
        var max = TensorPrimitives.Max(input);
        if (float.IsNegativeInfinity(max))
        {
            output.Clear();
            return;
        }
        TensorPrimitives.Subtract(input, max, output);
        TensorPrimitives.Exp(output, output);
        var sum = TensorPrimitives.Sum(output);
        TensorPrimitives.Multiply(output, 1f / sum, output);
    }

    /// <summary>Scalar reference in double.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input)
    {
        if (input.IsEmpty) return;
        var max = double.NegativeInfinity;
        foreach (var x in input) max = Math.Max(max, x);
        if (double.IsNegativeInfinity(max))
        {
            output.Clear();
            return;
        }
        double sum = 0;
        for (var i = 0; i < input.Length; i++) sum += Math.Exp(input[i] - max);
        for (var i = 0; i < input.Length; i++) output[i] = (float)(Math.Exp(input[i] - max) / sum);
    }
}
