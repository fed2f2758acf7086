using ILGPU;
using ILGPU.Algorithms;
using NativeGpt2.Backends;

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
    /// <summary>
    /// Top-k sampling's candidates of each row (<see cref="IBackend.TopKCandidates"/>), a group per row: the k-th largest
    /// logit found exactly by a radix select (four passes over the row, one byte of an order-preserving key a pass, counted
    /// in a shared histogram per warp, then added up), then every token whose key is at least its key gathered in shared
    /// memory and written out in id order. A histogram per warp, because a row's logits share few leading bytes: one
    /// histogram would have every thread of the group adding to the same two or three counters. Logits (N, V); a record of
    /// 1 + 2 · capacity ints a row (<see cref="Operators.TopKCandidates.RecordLength"/>): the count, −1 for a row with NaN or
    /// +∞ or nothing but −∞, or with more than capacity candidates (ties); capacity ids; capacity logits' bits.
    /// 1 ≤ k ≤ capacity ≤ <see cref="IBackend.MaxTopKCapacity"/>.
    /// </summary>
    public static void TopKCandidates(ArrayView<int> records, ArrayView<float> logits, int N, int V, int k, int capacity)
    {
        var histogram = SharedMemory.Allocate<int>(256 * Reductions.MaxWarpsPerGroup);
        // The key's bits chosen so far, the rank still sought among the keys that have them, a NaN-or-+∞ flag, the count,
        // and whether any value is above −∞.
        var state = SharedMemory.Allocate<int>(5);
        var candidateIds = SharedMemory.Allocate<int>(IBackend.MaxTopKCapacity);
        var candidateValues = SharedMemory.Allocate<float>(IBackend.MaxTopKCapacity);
        for (var row = Grid.IdxX; row < N; row += Grid.DimX)
            TopKRow(records, logits, V, k, capacity, row, histogram, state, candidateIds, candidateValues);
    }

    private static void TopKRow(ArrayView<int> records, ArrayView<float> logits, int V, int k, int capacity, int row,
        ArrayView<int> histogram, ArrayView<int> state, ArrayView<int> candidateIds, ArrayView<float> candidateValues)
    {
        int tid = Group.IdxX, G = Group.DimX, start = row * V, warps = G / Warp.WarpSize, mine = 256 * Warp.WarpIdx;
        if (tid == 0)
        {
            state[0] = 0;
            state[1] = k;
            state[2] = 0;
            state[3] = 0;
            state[4] = 0;
        }
        Group.Barrier();
        for (var pass = 0; pass < 4; pass++)
        {
            var shift = 24 - 8 * pass;
            for (var b = tid; b < 256 * warps; b += G) histogram[b] = 0;
            Group.Barrier();
            var prefix = (uint)state[0];
            var fixedBits = pass == 0 ? 0u : 0xFFFFFFFFu << (32 - 8 * pass);
            for (var v = tid; v < V; v += G)
            {
                var x = logits[start + v];
                if (pass == 0 && (float.IsNaN(x) || float.IsPositiveInfinity(x))) state[2] = 1;
                if (pass == 0 && x > float.NegativeInfinity) state[4] = 1;
                var key = OrderedKey(x);
                if ((key & fixedBits) == prefix) Atomic.Add(ref histogram[mine + (int)((key >> shift) & 0xFF)], 1);
            }
            Group.Barrier();
            // Each byte's count over the warps, into the first warp's histogram.
            for (var b = tid; b < 256; b += G)
            {
                var total = histogram[b];
                for (var w = 1; w < warps; w++) total += histogram[256 * w + b];
                histogram[b] = total;
            }
            Group.Barrier();
            if (tid == 0)
            {
                // From the highest byte down, the one whose keys hold the rank sought.
                int rank = state[1], bin = 255;
                for (; bin > 0 && histogram[bin] < rank; bin--) rank -= histogram[bin];
                state[0] = (int)(prefix | ((uint)bin << shift));
                state[1] = rank;
            }
            Group.Barrier();
        }
        var threshold = (uint)state[0];
        for (var v = tid; v < V; v += G)
        {
            var x = logits[start + v];
            if (OrderedKey(x) < threshold) continue;
            var slot = Atomic.Add(ref state[3], 1);
            if (slot < capacity)
            {
                candidateIds[slot] = v;
                candidateValues[slot] = x;
            }
        }
        Group.Barrier();
        var count = state[3];
        var usable = state[2] == 0 && state[4] != 0 && count <= capacity;
        // Each candidate's place in id order is the number of candidates with smaller ids.
        var record = row * (1 + 2 * capacity);
        for (var j = tid; usable && j < count; j += G)
        {
            var id = candidateIds[j];
            var place = 0;
            for (var i = 0; i < count; i++) place += candidateIds[i] < id ? 1 : 0;
            records[record + 1 + place] = id;
            records[record + 1 + capacity + place] = (int)Interop.FloatAsInt(candidateValues[j]);
        }
        if (tid == 0) records[record] = usable ? count : -1;
        // The shared state is read before the next row resets it.
        Group.Barrier();
    }

    /// <summary>
    /// An unsigned key in the order of the floats (−0 as +0): the sign bit set for positive values, every bit flipped for
    /// negative ones.
    /// </summary>
    private static uint OrderedKey(float x)
    {
        var bits = Interop.FloatAsInt(x == 0f ? 0f : x);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }
}
