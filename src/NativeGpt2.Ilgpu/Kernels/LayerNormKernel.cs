using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Util;

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
/// groups of the same size, so they produce the same values bit for bit. A group with rows to spare takes four at a
/// time (<see cref="FourRowStatistics"/>), each summed exactly as alone: ILGPU's CPU accelerator, which runs one group
/// for all the rows and pays a round of barriers between OS threads for every shuffle, then pays a quarter as many.
/// </remarks>
internal static class LayerNormKernel
{
    public static void Forward(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias,
        int N, int C, float epsilon)
    {
        var scratch = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        var scratch4 = SharedMemory.Allocate<Float4>(Reductions.MaxWarpsPerGroup);
        // A group's rows are uniform across its threads, so every thread reaches the group sums below. A group with four
        // rows or more to go (a launch of fewer groups than rows, as on the CPU accelerator) takes four at a time, each
        // summed as alone, their reductions shuffled together (a GPU launches a group per row).
        int D = Grid.DimX, row = Grid.IdxX, G = Group.DimX;
        for (; row + 3 * D < N; row += 4 * D)
        {
            var stats = FourRowStatistics.Of(input, row * C, D * C, C, epsilon, scratch4);
            for (var c = Group.IdxX; c < C; c += 4 * G)
            {
                var w = FourChannels.Load(weight, 0, c, G, C);
                var b = FourChannels.Load(bias, 0, c, G, C);
                for (var i = 0; i < 4; i++)
                {
                    var start = (row + i * D) * C;
                    FourChannels.Load(input, start, c, G, C).Normalize(stats.Row(i), w, b).Store(output, start, c, G);
                }
            }
        }
        for (; row < N; row += D)
        {
            int start = row * C;
            var stats = Statistics(input, start, C, epsilon, scratch);
            // Four channels a thread with their weights and biases requested together, as in the statistics.
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

/// <summary>
/// The statistics of four rows, start + i · stride for i in [0, 4), computed together: each row's sums in exactly the order
/// of <see cref="LayerNormKernel.Statistics"/> (so the same values bit for bit), their group reductions shuffled as one.
/// </summary>
internal readonly struct FourRowStatistics(Float4 mean, Float4 rstd)
{
    public readonly Float4 Mean = mean;
    public readonly Float4 Rstd = rstd;

    /// <summary>Row i's statistics (0 to 3).</summary>
    public RowStatistics Row(int i) => i switch
    {
        0 => new RowStatistics(Mean.X, Rstd.X),
        1 => new RowStatistics(Mean.Y, Rstd.Y),
        2 => new RowStatistics(Mean.Z, Rstd.Z),
        _ => new RowStatistics(Mean.W, Rstd.W),
    };

    /// <summary>Every thread of the group must call it.</summary>
    public static FourRowStatistics Of(ArrayView<float> input, int start, int stride, int C, float epsilon, ArrayView<Float4> scratch)
    {
        int tid = Group.IdxX, G = Group.DimX;
        var sum = default(Float4);
        for (var c = tid; c < C; c += 4 * G)
            sum = new Float4(
                FourChannels.Load(input, start, c, G, C).Sum(sum.X),
                FourChannels.Load(input, start + stride, c, G, C).Sum(sum.Y),
                FourChannels.Load(input, start + 2 * stride, c, G, C).Sum(sum.Z),
                FourChannels.Load(input, start + 3 * stride, c, G, C).Sum(sum.W));
        var total = Reductions.GroupSum(sum, scratch);
        var mean = new Float4(total.X / C, total.Y / C, total.Z / C, total.W / C);
        var squares = default(Float4);
        for (var c = tid; c < C; c += 4 * G)
            squares = new Float4(
                FourChannels.Load(input, start, c, G, C).SquaredDeviations(squares.X, mean.X),
                FourChannels.Load(input, start + stride, c, G, C).SquaredDeviations(squares.Y, mean.Y),
                FourChannels.Load(input, start + 2 * stride, c, G, C).SquaredDeviations(squares.Z, mean.Z),
                FourChannels.Load(input, start + 3 * stride, c, G, C).SquaredDeviations(squares.W, mean.W));
        var deviations = Reductions.GroupSum(squares, scratch);
        return new FourRowStatistics(mean, new Float4(
            XMath.Rsqrt(deviations.X / C + epsilon), XMath.Rsqrt(deviations.Y / C + epsilon),
            XMath.Rsqrt(deviations.Z / C + epsilon), XMath.Rsqrt(deviations.W / C + epsilon)));
    }
}
