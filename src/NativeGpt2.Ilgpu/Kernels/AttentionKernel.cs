using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Causal self-attention over the key/value cache with an online softmax: keys are visited in order and
/// each unmasked key updates the running maximum m, the running sum l and the weighted sum of values,
/// so no T × T matrix is formed (probabilities are written in a second pass only when asked for).
/// </summary>
/// <remarks>
/// <para>Shapes: qkv (B, T, 3C) the new tokens' queries, keys and values; keys and values (B, NH, Tmax, HS);
/// mask (B, Tmax); out (B, T, C); probabilities (B, NH, T, past + T). Masked keys are skipped, not set
/// to −∞, so a row's arithmetic does not change with padding in front of it. A query that sees no key gets zeros.</para>
/// <para><see cref="Prefill"/>: one thread per query; a group takes consecutive queries of one (b, h) and
/// stages tiles of keys and values in shared memory for all of them. <see cref="Decode"/>: one new token per
/// row, so the keys are split into chunks processed side by side, then merged in chunk order. Chunks start at the row's first unmasked key, so a left-padded row splits
/// its real keys exactly as the same row without padding: batched decoding equals one-by-one decoding.</para>
/// </remarks>
internal static class AttentionKernel
{
    /// <summary>Largest head size (GPT-2's is 64 at every size).</summary>
    public const int MaxHeadSize = 128;

    /// <summary>Keys per shared-memory tile in <see cref="Prefill"/>: two tiles of 32 × 128 floats fit in 32 KB.</summary>
    public const int TileKeys = 32;

    /// <summary>
    /// Keys per chunk in <see cref="Decode"/>: a warp walks its chunk key by key, so short chunks mean more warps side
    /// by side (GPT-2 124M after 144 tokens: 19 chunks × 12 heads) and shorter chains; merging them is cheap.
    /// </summary>
    public const int DecodeChunk = 8;

    /// <summary>
    /// A group takes blocks of G consecutive queries of one (b, h); thread i of block (x, h, b) is query
    /// t = x·G + i of head h, row b.
    /// </summary>
    public static void Prefill(ArrayView<float> output, ArrayView<float> probabilities, ArrayView<float> qkv,
        ArrayView<float> keys, ArrayView<float> values, ArrayView<int> mask, AttentionShape s)
    {
        var tileK = SharedMemory.Allocate<float>(TileKeys * MaxHeadSize);
        var tileV = SharedMemory.Allocate<float>(TileKeys * MaxHeadSize);
        var tileMask = SharedMemory.Allocate<int>(TileKeys);
        var blocks = (s.T + Group.DimX - 1) / Group.DimX;
        for (var item = Grid.IdxX; item < blocks * s.NH * s.B; item += Grid.DimX)
            PrefillBlock(output, probabilities, qkv, keys, values, mask, s, tileK, tileV, tileMask, item % blocks, item / blocks % s.NH, item / (blocks * s.NH));
    }

    private static void PrefillBlock(ArrayView<float> output, ArrayView<float> probabilities, ArrayView<float> qkv,
        ArrayView<float> keys, ArrayView<float> values, ArrayView<int> mask, AttentionShape s,
        ArrayView<float> tileK, ArrayView<float> tileV, ArrayView<int> tileMask, int block, int h, int b)
    {
        int G = Group.DimX, tid = Group.IdxX, t = block * G + tid;
        int C = s.NH * s.HS, head = (b * s.NH + h) * s.Tmax;
        var active = t < s.T;
        // Keys the group needs: up to the last query it holds.
        var groupLast = s.Past + XMath.Min(s.T, (block + 1) * G) - 1;
        var last = s.Past + t;

        var q = LocalMemory.Allocate<float>(MaxHeadSize);
        var acc = LocalMemory.Allocate<float>(MaxHeadSize);
        for (var d = 0; d < s.HS; d++)
        {
            q[d] = active ? qkv[(b * s.T + t) * 3 * C + h * s.HS + d] : 0f;
            acc[d] = 0f;
        }

        var m = float.NegativeInfinity;
        var l = 0f;
        for (var j0 = 0; j0 <= groupLast; j0 += TileKeys)
        {
            Stage(tileK, tileV, tileMask, keys, values, mask, s, head, b, j0, groupLast);
            Group.Barrier();
            var count = XMath.Min(TileKeys, last - j0 + 1);
            for (var jj = 0; active && jj < count; jj++)
            {
                if (tileMask[jj] == 0) continue;
                var score = Dot(q, tileK, jj * s.HS, s.HS) * s.Scale;
                // Rescale what was summed under the old maximum (exp(−∞) = 0 for the first key).
                var next = XMath.Max(m, score);
                var correction = XMath.Exp(m - next);
                var p = XMath.Exp(score - next);
                l = l * correction + p;
                for (var d = 0; d < s.HS; d++)
                    acc[d] = acc[d] * correction + p * tileV[jj * s.HS + d];
                m = next;
            }
            Group.Barrier();
        }

        var inverse = l > 0f ? 1f / l : 0f;
        if (active)
        {
            for (var d = 0; d < s.HS; d++)
                output[(b * s.T + t) * C + h * s.HS + d] = acc[d] * inverse;
        }
        if (s.WriteProbabilities == 0) return;

        // Second pass, only when asked: p_j = exp(score_j − m) / l; masked and future keys get 0.
        var keysSeen = s.Past + s.T;
        var rowStart = ((b * s.NH + h) * s.T + t) * keysSeen;
        for (var j0 = 0; j0 < keysSeen; j0 += TileKeys)
        {
            Stage(tileK, tileV, tileMask, keys, values, mask, s, head, b, j0, groupLast);
            Group.Barrier();
            var count = XMath.Min(TileKeys, keysSeen - j0);
            for (var jj = 0; active && jj < count; jj++)
            {
                var j = j0 + jj;
                var weight = 0f;
                if (j <= last && tileMask[jj] != 0)
                    weight = XMath.Exp(Dot(q, tileK, jj * s.HS, s.HS) * s.Scale - m) * inverse;
                probabilities[rowStart + j] = weight;
            }
            Group.Barrier();
        }
    }

    /// <summary>Copies keys [j0, j0 + TileKeys) of one head (up to <paramref name="last"/>) and their mask into shared memory, all threads together.</summary>
    private static void Stage(ArrayView<float> tileK, ArrayView<float> tileV, ArrayView<int> tileMask,
        ArrayView<float> keys, ArrayView<float> values, ArrayView<int> mask, AttentionShape s, int head, int b, int j0, int last)
    {
        var count = XMath.Min(TileKeys, last - j0 + 1);
        for (var e = Group.IdxX; e < count * s.HS; e += Group.DimX)
        {
            var at = (head + j0) * s.HS + e;
            tileK[e] = keys[at];
            tileV[e] = values[at];
        }
        for (var jj = Group.IdxX; jj < TileKeys; jj += Group.DimX)
            tileMask[jj] = jj < count ? mask[b * s.Tmax + j0 + jj] : 0;
    }

    private static float Dot(ArrayView<float> q, ArrayView<float> k, int offset, int HS)
    {
        var sum = 0f;
        for (var d = 0; d < HS; d++) sum += q[d] * k[offset + d];
        return sum;
    }

    /// <summary>Most warps per group <see cref="Decode"/> keeps a head's query and sums for, in shared memory.</summary>
    public const int MaxDecodeWarps = 8;

    /// <summary>
    /// One new token per row (T = 1): a warp per (chunk, h, b). Each takes keys [first + c·K, first + (c + 1)·K)
    /// of row b's cache, first being the row's first unmasked key, and keeps its own running m, l and weighted
    /// sum of values in <paramref name="partial"/>. The lanes split the head's channels: lane i holds channels
    /// i, i + W, …, a score is their warp sum, and every lane reads consecutive keys (coalesced).
    /// </summary>
    /// <remarks>
    /// One launch does the whole step. The new token's key and value are read from qkv, and the warp of chunk 0
    /// stores them in the cache at position past (no other warp reads that slot in this launch). The warp that
    /// finishes a (b, h)'s last chunk (a ticket per (b, h), taken after a device-wide fence) merges the chunks in
    /// chunk order (<see cref="CombineChannel"/>) into out and resets the ticket for the next launch.
    /// </remarks>
    public static void Decode(ArrayView<float> output, ArrayView<float> partial, ArrayView<float> qkv, ArrayView<float> keys,
        ArrayView<float> values, ArrayView<int> mask, ArrayView<int> tickets, AttentionShape s, int chunks)
    {
        // Each lane touches only its own channels of its warp's rows: no barrier is needed between lanes.
        var q = SharedMemory.Allocate<float>(MaxDecodeWarps * MaxHeadSize);
        var acc = SharedMemory.Allocate<float>(MaxDecodeWarps * MaxHeadSize);
        var warps = Group.DimX / Warp.WarpSize;
        var mine = Warp.WarpIdx * MaxHeadSize;
        for (var i = Grid.IdxX * warps + Warp.WarpIdx; i < chunks * s.NH * s.B; i += Grid.DimX * warps)
            DecodeOneChunk(output, partial, qkv, keys, values, mask, tickets, s, chunks, i % chunks, i / chunks % s.NH, i / (chunks * s.NH),
                q.SubView(mine, MaxHeadSize), acc.SubView(mine, MaxHeadSize));
    }

    private static void DecodeOneChunk(ArrayView<float> output, ArrayView<float> partial, ArrayView<float> qkv, ArrayView<float> keys,
        ArrayView<float> values, ArrayView<int> mask, ArrayView<int> tickets, AttentionShape s, int chunks, int c, int h, int b,
        ArrayView<float> q, ArrayView<float> acc)
    {
        int C = s.NH * s.HS, last = s.Past, lane = Warp.LaneIdx, fresh = b * 3 * C + h * s.HS;
        if (c == 0)
        {
            var slot = ((b * s.NH + h) * s.Tmax + last) * s.HS;
            for (var d = lane; d < s.HS; d += Warp.WarpSize)
            {
                keys[slot + d] = qkv[fresh + C + d];
                values[slot + d] = qkv[fresh + 2 * C + d];
            }
        }
        var first = FirstKey(mask, b * s.Tmax, last);
        var at = ((b * s.NH + h) * chunks + c) * (s.HS + 2);
        LoadQuery(q, acc, qkv, fresh, s.HS);
        var state = Attend(q, acc, keys, values, mask, s, h, b, first + c * DecodeChunk, XMath.Min(last, first + (c + 1) * DecodeChunk - 1), qkv, fresh);
        for (var d = lane; d < s.HS; d += Warp.WarpSize) partial[at + d] = acc[d];
        if (lane == 0)
        {
            partial[at + s.HS] = state.M;
            partial[at + s.HS + 1] = state.L;
        }

        // The last chunk of (b, h) to finish merges them all.
        MemoryFence.DeviceLevel();
        Warp.Barrier();
        var ticket = 0;
        if (lane == 0) ticket = Atomic.Add(ref tickets[b * s.NH + h], 1);
        ticket = Warp.Shuffle(ticket, 0);
        if (ticket != chunks - 1) return;
        MemoryFence.DeviceLevel();
        for (var d = lane; d < s.HS; d += Warp.WarpSize) CombineChannel(output, partial, s, chunks, d, h, b);
        if (lane == 0) tickets[b * s.NH + h] = 0;
    }

    /// <summary>
    /// Prefill without probabilities: a warp per (query t, h, b), each over all the keys its query sees, with the
    /// running m, l and weighted sum of values of <see cref="Attend"/>, normalized at the end. Consecutive warps take
    /// consecutive queries of one head, so they read the same keys from cache.
    /// </summary>
    public static void PrefillWarps(ArrayView<float> output, ArrayView<float> qkv, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s)
    {
        var q = SharedMemory.Allocate<float>(MaxDecodeWarps * MaxHeadSize);
        var acc = SharedMemory.Allocate<float>(MaxDecodeWarps * MaxHeadSize);
        var warps = Group.DimX / Warp.WarpSize;
        var mine = Warp.WarpIdx * MaxHeadSize;
        for (var i = Grid.IdxX * warps + Warp.WarpIdx; i < s.T * s.NH * s.B; i += Grid.DimX * warps)
            PrefillOneQuery(output, qkv, keys, values, mask, s, i % s.T, i / s.T % s.NH, i / (s.T * s.NH),
                q.SubView(mine, MaxHeadSize), acc.SubView(mine, MaxHeadSize));
    }

    private static void PrefillOneQuery(ArrayView<float> output, ArrayView<float> qkv, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s, int t, int h, int b, ArrayView<float> q, ArrayView<float> acc)
    {
        int C = s.NH * s.HS, last = s.Past + t;
        LoadQuery(q, acc, qkv, (b * s.T + t) * 3 * C + h * s.HS, s.HS);
        var state = Attend(q, acc, keys, values, mask, s, h, b, FirstKey(mask, b * s.Tmax, last), last, qkv, fresh: -1);
        // A query that sees no key (all masked) gets zeros.
        var inverse = state.L > 0f ? 1f / state.L : 0f;
        for (var d = Warp.LaneIdx; d < s.HS; d += Warp.WarpSize)
            output[(b * s.T + t) * C + h * s.HS + d] = acc[d] * inverse;
    }

    /// <summary>The warp's query channels into <paramref name="q"/> (each lane its own), and its value sums cleared.</summary>
    private static void LoadQuery(ArrayView<float> q, ArrayView<float> acc, ArrayView<float> qkv, int at, int HS)
    {
        for (var d = Warp.LaneIdx; d < HS; d += Warp.WarpSize)
        {
            q[d] = qkv[at + d];
            acc[d] = 0f;
        }
    }

    /// <summary>
    /// One warp's online softmax over the unmasked keys [from, to] of head h, row b: lane i holds channels i, i + W, …
    /// of the query and of the weighted value sum in <paramref name="acc"/>; a score is the warp sum of the lanes'
    /// products (a butterfly: every lane ends with the same score and takes the same path); every lane reads
    /// consecutive channels of a key (coalesced). Returns the running maximum m and sum l. Key s.Past, the new token's
    /// when decoding, comes from qkv at <paramref name="fresh"/> (its query's place) if fresh ≥ 0, not from the cache.
    /// </summary>
    private static SoftmaxState Attend(ArrayView<float> q, ArrayView<float> acc, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s, int h, int b, int from, int to, ArrayView<float> qkv, int fresh)
    {
        int C = s.NH * s.HS;
        int head = (b * s.NH + h) * s.Tmax, W = Warp.WarpSize, lane = Warp.LaneIdx;
        var m = float.NegativeInfinity;
        var l = 0f;
        for (var j = from; j <= to; j++)
        {
            if (mask[b * s.Tmax + j] == 0) continue;
            var partialScore = 0f;
            var fromQkv = fresh >= 0 && j == s.Past;
            for (var d = lane; d < s.HS; d += W) partialScore += q[d] * (fromQkv ? qkv[fresh + C + d] : keys[(head + j) * s.HS + d]);
            var score = Reductions.WarpSum(partialScore) * s.Scale;
            var next = XMath.Max(m, score);
            var correction = XMath.Exp(m - next);
            var p = XMath.Exp(score - next);
            l = l * correction + p;
            for (var d = lane; d < s.HS; d += W)
                acc[d] = acc[d] * correction + p * (fromQkv ? qkv[fresh + 2 * C + d] : values[(head + j) * s.HS + d]);
            m = next;
        }
        return new SoftmaxState(m, l);
    }

    /// <summary>
    /// Merges the chunks of <see cref="Decode"/> for channel d of (h, b), in chunk order: m = max_c m_c,
    /// l = Σ_c l_c·exp(m_c − m), out = Σ_c acc_c·exp(m_c − m) / l.
    /// </summary>
    private static void CombineChannel(ArrayView<float> output, ArrayView<float> partial, AttentionShape s, int chunks, int d, int h, int b)
    {
        var C = s.NH * s.HS;
        var base0 = (b * s.NH + h) * chunks * (s.HS + 2);
        var m = float.NegativeInfinity;
        for (var c = 0; c < chunks; c++) m = XMath.Max(m, partial[base0 + c * (s.HS + 2) + s.HS]);
        var l = 0f;
        var sum = 0f;
        for (var c = 0; c < chunks; c++)
        {
            var slot = base0 + c * (s.HS + 2);
            var chunkMax = partial[slot + s.HS];
            // A chunk with no unmasked key has m = −∞ and contributes nothing.
            var scale = chunkMax == float.NegativeInfinity ? 0f : XMath.Exp(chunkMax - m);
            l += partial[slot + s.HS + 1] * scale;
            sum += partial[slot + d] * scale;
        }
        output[b * C + h * s.HS + d] = l > 0f ? sum / l : 0f;
    }

    /// <summary>Chunks <see cref="Decode"/> splits the keys [0, past] of a T = 1 pass into.</summary>
    public static int DecodeChunks(int past) => past / DecodeChunk + 1;

    /// <summary>The first unmasked key of a row among [0, last], or last + 1 when there is none.</summary>
    private static int FirstKey(ArrayView<int> mask, int rowStart, int last)
    {
        var j = 0;
        while (j <= last && mask[rowStart + j] == 0) j++;
        return j;
    }
}

/// <summary>An online softmax's running maximum M and sum L.</summary>
internal readonly struct SoftmaxState(float m, float l)
{
    public readonly float M = m;
    public readonly float L = l;
}

/// <summary>Sizes of one attention call (and of an append to the cache): B rows of T new tokens after Past cached ones, NH heads of HS channels, Tmax cache slots.</summary>
internal readonly struct AttentionShape(int B, int T, int past, int Tmax, int NH, int HS, bool writeProbabilities)
{
    public readonly int B = B;
    public readonly int T = T;
    public readonly int Past = past;
    public readonly int Tmax = Tmax;
    public readonly int NH = NH;
    public readonly int HS = HS;
    public readonly float Scale = 1f / MathF.Sqrt(HS);
    public readonly int WriteProbabilities = writeProbabilities ? 1 : 0;
}
