using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace NativeGpt2.Operators;

/// <summary>
/// Log-softmax of one row: <c>out[i] = x[i] - max - log Σ exp(x[j] - max)</c>, the log-probabilities
/// of the next token given its logits.
/// </summary>
/// <remarks>Shapes: out (V), logits (V); may be the same buffer.</remarks>
internal static class LogSoftmax
{
    /// <summary>Vectorized log-softmax of one row.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> logits)
    {
        var logSumExp = LogSumExp(logits, output);
        TensorPrimitives.Subtract(logits, (float)logSumExp, output);
    }

    /// <summary>
    /// <c>log Σ exp(x)</c>, computed as <c>max + log Σ exp(x - max)</c>; <paramref name="scratch"/> (same length) is overwritten.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double LogSumExp(ReadOnlySpan<float> logits, Span<float> scratch)
    {
        var max = TensorPrimitives.Max(logits);
        if (float.IsInfinity(max)) return max;
        TensorPrimitives.Subtract(logits, max, scratch);
        TensorPrimitives.Exp(scratch, scratch);
        return max + Math.Log(TensorPrimitives.Sum(scratch));
    }

    /// <summary>
    /// out[n] = logits[n, targets[n]] − log Σ_v exp(logits[n, v]): the log-probability of each row's target,
    /// what scoring needs; rows spread over all cores.
    /// </summary>
    public static void TargetLogProbabilities(Memory<float> output, ReadOnlyMemory<float> logits, ReadOnlyMemory<int> targets, int N, int V)
    {
        Parallelism.For(N, 4L * V, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var scratch = new float[V];
            for (var n = start; n < end; n++)
            {
                var row = logits.Span.Slice(n * V, V);
                output.Span[n] = (float)(row[targets.Span[n]] - LogSumExp(row, scratch));
            }
        });
    }

    /// <summary>Scalar reference in double.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> logits)
    {
        var max = double.NegativeInfinity;
        foreach (var x in logits) max = Math.Max(max, x);
        double sum = 0;
        foreach (var x in logits) sum += Math.Exp(x - max);
        var logSumExp = max + Math.Log(sum);
        for (var i = 0; i < logits.Length; i++) output[i] = (float)(logits[i] - logSumExp);
    }
}
