using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Layer normalisation, one group per row: <c>out[n, :] = (x[n, :] − mean) / √(var + eps) · weight + bias</c>
/// with the biased variance. Threads stride over the C channels; warp shuffles, then shared memory, sum them.
/// </summary>
/// <remarks>
/// Shapes: out (N, C), input (N, C), weight (C), bias (C). A whole group per row, not a warp: decoding normalizes
/// one row at a time, and one warp walking 768 channels three times was a fifth of a GPT-2 decoding step. Every row
/// is summed in the same shape whatever N is, so a row's result does not depend on the batch. The decoding
/// projections normalize their input themselves with <see cref="Statistics"/> and <see cref="Normalize"/>, in
/// groups of the same size, so they produce the same values bit for bit.
/// </remarks>
internal static class LayerNormKernel
{
    public static void Forward(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias,
        int N, int C, float epsilon)
    {
        var scratch = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        // A group's rows are uniform across its threads, so every thread reaches the group sums below.
        for (var row = Grid.IdxX; row < N; row += Grid.DimX)
        {
            int start = row * C;
            var stats = Statistics(input, start, C, epsilon, scratch);
            // Four channels a thread with their weights and biases requested together, as in the statistics.
            int G = Group.DimX;
            for (var c = Group.IdxX; c < C; c += 4 * G)
            {
                var x = FourChannels.Load(input, start, c, G, C);
                var w = FourChannels.Load(weight, 0, c, G, C);
                var b = FourChannels.Load(bias, 0, c, G, C);
                x.Normalize(stats, w, b).Store(output, start, c, G);
            }
        }
    }

    /// <summary>
    /// The mean and 1 / √(var + eps) of input[start, start + C), in every thread of the group; every thread must call it.
    /// Two passes (mean, then squared deviations) rather than E[x²] − E[x]², which cancels badly.
    /// </summary>
    /// <remarks>
    /// A thread requests four of its channels at once (<see cref="FourChannels"/>) and adds them in order of c: one load
    /// after another, each waiting for the sum before it, made the row's first read a chain of C / G memory latencies.
    /// </remarks>
    public static RowStatistics Statistics(ArrayView<float> input, int start, int C, float epsilon, ArrayView<float> scratch)
    {
        int tid = Group.IdxX, G = Group.DimX;
        var sum = 0f;
        for (var c = tid; c < C; c += 4 * G) sum = FourChannels.Load(input, start, c, G, C).Sum(sum);
        var mean = Reductions.GroupSum(sum, scratch) / C;
        var squares = 0f;
        for (var c = tid; c < C; c += 4 * G) squares = FourChannels.Load(input, start, c, G, C).SquaredDeviations(squares, mean);
        return new RowStatistics(mean, XMath.Rsqrt(Reductions.GroupSum(squares, scratch) / C + epsilon));
    }

    /// <summary>One channel normalized: (x − mean) · rstd · weight + bias, the last step fused (<see cref="Fused"/>).</summary>
    public static float Normalize(float x, RowStatistics stats, float weight, float bias) => Fused.MulAdd((x - stats.Mean) * stats.Rstd, weight, bias);
}

/// <summary>A row's mean and reciprocal standard deviation 1 / √(var + eps).</summary>
internal readonly struct RowStatistics(float mean, float rstd)
{
    public readonly float Mean = mean;
    public readonly float Rstd = rstd;
}
