using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace NativeGpt2.Operators;

/// <summary>
/// Layer normalisation over the channel axis:
/// <c>out[n, :] = (x[n, :] - mean) / sqrt(var + eps) * weight + bias</c>, with the biased variance.
/// </summary>
/// <remarks>Shapes: out (N, C), input (N, C), weight (C), bias (C).</remarks>
internal static class LayerNorm
{
    /// <summary>Vectorized layer norm, rows spread over all cores.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, ReadOnlyMemory<float> weight,
        ReadOnlyMemory<float> bias, int N, int C, float epsilon)
    {
        Parallelism.For(N, 8L * C, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var x = input.Span;
            var o = output.Span;
            var w = weight.Span;
            var b = bias.Span;
            for (var n = start; n < end; n++)
                Row(o.Slice(n * C, C), x.Slice(n * C, C), w, b, epsilon);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row(Span<float> output, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon)
    {
        // Two passes (mean, then squared deviations) rather than E[x²]-E[x]², which cancels badly.
        var mean = TensorPrimitives.Sum(x) / x.Length;
        TensorPrimitives.Subtract(x, mean, output);
        var variance = TensorPrimitives.Dot(output, output) / x.Length;
        var rstd = 1f / MathF.Sqrt(variance + epsilon);
        TensorPrimitives.Multiply(output, rstd, output);
        TensorPrimitives.FusedMultiplyAdd(output, weight, bias, output);
    }

    /// <summary>Scalar reference, accumulating in double.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> bias, int N, int C, float epsilon)
    {
        for (var n = 0; n < N; n++)
        {
            var x = input.Slice(n * C, C);
            double sum = 0;
            for (var c = 0; c < C; c++) sum += x[c];
            var mean = sum / C;
            double squares = 0;
            for (var c = 0; c < C; c++) squares += (x[c] - mean) * (x[c] - mean);
            var rstd = 1.0 / Math.Sqrt(squares / C + epsilon);
            for (var c = 0; c < C; c++)
                output[n * C + c] = (float)((x[c] - mean) * rstd * weight[c] + bias[c]);
        }
    }
}
