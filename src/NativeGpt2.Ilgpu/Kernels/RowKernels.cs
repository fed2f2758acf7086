using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>Reductions over a row of V logits, one group per row: what scoring and greedy decoding read from the head.</summary>
internal static class RowKernels
{
    /// <summary>
    /// out[n] = logits[n, targets[n]] − log Σ_v exp(logits[n, v] − max) − max: the log-probability of each
    /// row's target. Logits (N, V), targets (N), out (N).
    /// </summary>
    public static void TargetLogProbabilities(ArrayView<float> output, ArrayView<float> logits, ArrayView<int> targets, int N, int V)
    {
        var scratch = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        for (var row = Grid.IdxX; row < N; row += Grid.DimX)
            TargetLogProbability(output, logits, targets, V, row, scratch);
    }

    private static void TargetLogProbability(ArrayView<float> output, ArrayView<float> logits, ArrayView<int> targets, int V, int row, ArrayView<float> scratch)
    {
        var start = row * V;
        // A thread's logits in its stride order, sixteen loads in flight (then the tail one by one).
        int G = Group.DimX, v = Group.IdxX;
        var max = float.NegativeInfinity;
        for (; v + 15 * G < V; v += 16 * G) max = Sixteen.Load(logits, start + v, G).Max(max);
        for (; v < V; v += G) max = XMath.Max(max, logits[start + v]);
        max = Reductions.GroupMax(max, scratch);
        // Subtract the maximum so exp cannot overflow; an infinite maximum is its own log-sum-exp.
        var sum = 0f;
        if (!float.IsInfinity(max))
        {
            for (v = Group.IdxX; v + 15 * G < V; v += 16 * G) sum = Sixteen.Load(logits, start + v, G).SumOfExponentials(sum, max);
            for (; v < V; v += G) sum += XMath.Exp(logits[start + v] - max);
        }
        sum = Reductions.GroupSum(sum, scratch);
        if (Group.IdxX == 0)
        {
            var logSumExp = float.IsInfinity(max) ? max : max + XMath.Log(sum);
            output[row] = logits[start + targets[row]] - logSumExp;
        }
    }

    /// <summary>
    /// out[n] = the first index of row n's largest logit, or −1 when the row holds NaN or +∞ or is all −∞.
    /// Logits (N, V), out (N).
    /// </summary>
    public static void ArgMax(ArrayView<int> output, ArrayView<float> logits, int N, int V)
    {
        var values = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        var indices = SharedMemory.Allocate<int>(Reductions.MaxWarpsPerGroup);
        var unusable = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        for (var row = Grid.IdxX; row < N; row += Grid.DimX)
            ArgMaxRow(output, logits, V, row, values, indices, unusable);
    }

    private static void ArgMaxRow(ArrayView<int> output, ArrayView<float> logits, int V, int row,
        ArrayView<float> values, ArrayView<int> indices, ArrayView<float> unusable)
    {
        var start = row * V;
        var best = float.NegativeInfinity;
        var bestIndex = int.MaxValue;
        var bad = 0f;
        // Each thread's first maximum over its stride; ties between threads go to the smaller index.
        // Sixteen loads in flight, taken in the order of their indices.
        int G = Group.DimX, v = Group.IdxX;
        for (; v + 15 * G < V; v += 16 * G)
        {
            var x = Sixteen.Load(logits, start + v, G);
            Consider(x.V0, v, ref best, ref bestIndex, ref bad);
            Consider(x.V1, v + G, ref best, ref bestIndex, ref bad);
            Consider(x.V2, v + 2 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V3, v + 3 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V4, v + 4 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V5, v + 5 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V6, v + 6 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V7, v + 7 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V8, v + 8 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V9, v + 9 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V10, v + 10 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V11, v + 11 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V12, v + 12 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V13, v + 13 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V14, v + 14 * G, ref best, ref bestIndex, ref bad);
            Consider(x.V15, v + 15 * G, ref best, ref bestIndex, ref bad);
        }
        for (; v < V; v += G) Consider(logits[start + v], v, ref best, ref bestIndex, ref bad);
        bad = Reductions.GroupMax(bad, unusable);
        Reductions.GroupArgMax(ref best, ref bestIndex, values, indices);
        if (Group.IdxX == 0)
            output[row] = bad > 0 || bestIndex == int.MaxValue ? -1 : bestIndex;
    }

    /// <summary>One logit: unusable (NaN, +∞) or a new first maximum.</summary>
    private static void Consider(float x, int index, ref float best, ref int bestIndex, ref float bad)
    {
        if (float.IsNaN(x) || float.IsPositiveInfinity(x)) bad = 1f;
        else if (x > best)
        {
            best = x;
            bestIndex = index;
        }
    }
}
