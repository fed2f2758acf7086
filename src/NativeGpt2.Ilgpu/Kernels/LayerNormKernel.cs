using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Layer normalisation, one warp per row: <c>out[n, :] = (x[n, :] − mean) / √(var + eps) · weight + bias</c>
/// with the biased variance. Lanes stride over the C channels; warp shuffles sum them.
/// </summary>
/// <remarks>Shapes: out (N, C), input (N, C), weight (C), bias (C). Groups hold several warps, so several rows.</remarks>
internal static class LayerNormKernel
{
    public static void Forward(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias,
        int N, int C, float epsilon)
    {
        var warpsPerGroup = Group.DimX / Warp.WarpSize;
        // A warp's rows are uniform across its lanes, so the shuffles below never miss a lane.
        for (var row = Grid.IdxX * warpsPerGroup + Warp.WarpIdx; row < N; row += Grid.DimX * warpsPerGroup)
        {
            int lane = Warp.LaneIdx, W = Warp.WarpSize, start = row * C;

            // Two passes (mean, then squared deviations) rather than E[x²] − E[x]², which cancels badly.
            var sum = 0f;
            for (var c = lane; c < C; c += W) sum += input[start + c];
            var mean = Reductions.WarpSum(sum) / C;
            var squares = 0f;
            for (var c = lane; c < C; c += W)
            {
                var d = input[start + c] - mean;
                squares += d * d;
            }
            var rstd = XMath.Rsqrt(Reductions.WarpSum(squares) / C + epsilon);
            for (var c = lane; c < C; c += W)
                output[start + c] = (input[start + c] - mean) * rstd * weight[c] + bias[c];
        }
    }
}
