using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NativeGpt2.Operators;

/// <summary>
/// Layer normalisation over the channel axis:
/// <c>out[n, :] = (x[n, :] - mean) / sqrt(var + eps) * weight + bias</c>, with the biased variance.
/// </summary>
/// <remarks>Shapes: out (N, C), input (N, C), weight (C), bias (C).</remarks>
internal static class LayerNorm
{
    /// <summary>Vectorized layer norm at the given SIMD width, rows spread over all cores.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, ReadOnlyMemory<float> weight,
        ReadOnlyMemory<float> bias, int N, int C, float epsilon, VectorWidth width)
    {
        switch (width)
        {
            case VectorWidth.Vector512: Run<Simd512>(output, input, weight, bias, N, C, epsilon); break;
            case VectorWidth.Vector256: Run<Simd256>(output, input, weight, bias, N, C, epsilon); break;
            case VectorWidth.Vector128: Run<Simd128>(output, input, weight, bias, N, C, epsilon); break;
            default: Run<SimdScalar>(output, input, weight, bias, N, C, epsilon); break;
        }
    }

    private static void Run<V>(Memory<float> output, ReadOnlyMemory<float> input, ReadOnlyMemory<float> weight,
        ReadOnlyMemory<float> bias, int N, int C, float epsilon) where V : struct, ISimd<V>
    {
        Parallelism.For(N, 8L * C, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var x = input.Span;
            var o = output.Span;
            var w = weight.Span;
            var b = bias.Span;
            for (var n = start; n < end; n++)
                Row<V>(o.Slice(n * C, C), x.Slice(n * C, C), w, b, epsilon);
        });
    }

    /// <summary>
    /// One row in three passes: the mean; the deviations from it, stored, with their sum and the sum of their squares;
    /// then (deviation − correction) · rstd · weight + bias. Two passes rather than E[x²] − E[x]², which cancels badly,
    /// and the corrected form (Björck): the deviations' own sum is the rounding error of the first mean, so
    /// correction = Σd / C fixes the mean and Σd² / C − correction² the variance, however the first sum was ordered
    /// (a plain sum of 255 values near 80 had left the output's mean 2e-5 off). Written on <see cref="ISimd{TSelf}"/>
    /// rather than with TensorPrimitives so that it is compiled optimized at once: a model calls it 25 times a pass,
    /// too few for tiered compilation to promote a library loop within the first second (20× slower until then).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row<V>(Span<float> output, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon)
        where V : struct, ISimd<V>
    {
        var C = x.Length;
        ref var xs = ref MemoryMarshal.GetReference(x);
        ref var o = ref MemoryMarshal.GetReference(output);
        ref var w = ref MemoryMarshal.GetReference(weight);
        ref var b = ref MemoryMarshal.GetReference(bias);
        var sums = V.Zero;
        var i = 0;
        for (; i + V.Count <= C; i += V.Count) sums = V.Add(sums, V.Load(ref Unsafe.Add(ref xs, i)));
        var sum = V.Sum(sums);
        for (; i < C; i++) sum += Unsafe.Add(ref xs, i);
        var mean = sum / C;

        var m = V.Broadcast(mean);
        var deviations = V.Zero;
        var squares = V.Zero;
        for (i = 0; i + V.Count <= C; i += V.Count)
        {
            var d = V.Subtract(V.Load(ref Unsafe.Add(ref xs, i)), m);
            V.Store(ref Unsafe.Add(ref o, i), d);
            deviations = V.Add(deviations, d);
            V.MultiplyAdd(ref squares, d, d);
        }
        var deviation = V.Sum(deviations);
        var square = V.Sum(squares);
        for (; i < C; i++)
        {
            var d = Unsafe.Add(ref xs, i) - mean;
            Unsafe.Add(ref o, i) = d;
            deviation += d;
            square = MathF.FusedMultiplyAdd(d, d, square);
        }
        var correction = deviation / C;
        var variance = MathF.Max(square / C - correction * correction, 0f);
        var rstd = 1f / MathF.Sqrt(variance + epsilon);

        V r = V.Broadcast(rstd), shift = V.Broadcast(correction);
        for (i = 0; i + V.Count <= C; i += V.Count)
        {
            ref var at = ref Unsafe.Add(ref o, i);
            var t = V.Multiply(V.Subtract(V.Load(ref at), shift), r);
            V.Store(ref at, V.Fma(t, V.Load(ref Unsafe.Add(ref w, i)), V.Load(ref Unsafe.Add(ref b, i))));
        }
        for (; i < C; i++)
            Unsafe.Add(ref o, i) = MathF.FusedMultiplyAdd((Unsafe.Add(ref o, i) - correction) * rstd, Unsafe.Add(ref w, i), Unsafe.Add(ref b, i));
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
