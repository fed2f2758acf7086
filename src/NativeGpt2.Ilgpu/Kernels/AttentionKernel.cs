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
    /// Fewest keys per chunk in <see cref="Decode"/>: one block of a GPU warp (<see cref="AttendBlocks"/>), so a chunk's keys
    /// are scored side by side; more, shorter chunks would only lengthen the merge.
    /// </summary>
    public const int DecodeChunk = 32;

    /// <summary>
    /// Most chunks a row's keys are split into: longer rows get longer chunks, so that merging them (one warp, a lane per
    /// chunk) stays short. The split depends only on the row's own unmasked keys, never on the batch.
    /// </summary>
    public const int MaxDecodeChunks = 64;

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
                var score = Sixteen.DotInOrder(q, 0, tileK, jj * s.HS, 1, s.HS) * s.Scale;
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
                    weight = XMath.Exp(Sixteen.DotInOrder(q, 0, tileK, jj * s.HS, 1, s.HS) * s.Scale - m) * inverse;
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

    /// <summary>
    /// Warps per group of <see cref="Decode"/> and <see cref="PrefillWarps"/>: each warp stages a block of W keys in shared
    /// memory (W × (MaxHeadSize + 1) floats, 16.5 KB on a GPU), so two fit in the 48 KB a group may have.
    /// </summary>
    public const int BlockWarps = 2;

    /// <summary>Largest warp whose block of keys the shared memory holds.</summary>
    public const int MaxBlockKeys = 32;

    /// <summary>Pitch of a staged key in floats: one more than the head size, so lane i reading key i hits its own bank.</summary>
    private const int KeyPitch = MaxHeadSize + 1;

    /// <summary>
    /// One new token per row (T = 1): a warp per (chunk, h, b). Each takes keys [first + c·K, first + (c + 1)·K)
    /// of row b's cache, first being the row's first unmasked key, and keeps its own running m, l and weighted
    /// sum of values in <paramref name="partial"/> (<see cref="AttendBlocks"/>).
    /// </summary>
    /// <remarks>
    /// One launch does the whole step. The new token's key and value are read from qkv, and the warp of chunk 0
    /// stores them in the cache at position past (no other warp reads that slot in this launch). The warp that
    /// finishes a (b, h)'s last chunk (a ticket per (b, h), taken after a device-wide fence) merges the chunks
    /// (<see cref="Combine"/>) into out and resets the ticket for the next launch. Chunk sizes grow with the row so
    /// that there are at most <see cref="MaxDecodeChunks"/>.
    /// </remarks>
    public static void Decode(ArrayView<float> output, ArrayView<float> partial, ArrayView<float> qkv, ArrayView<float> keys,
        ArrayView<float> values, ArrayView<int> mask, ArrayView<int> tickets, AttentionShape s, int chunks)
    {
        var scratch = WarpScratch.Allocate();
        var warps = Group.DimX / Warp.WarpSize;
        for (var i = Grid.IdxX * warps + Warp.WarpIdx; i < chunks * s.NH * s.B; i += Grid.DimX * warps)
            DecodeOneChunk(output, partial, qkv, keys, values, mask, tickets, s, chunks, i % chunks, i / chunks % s.NH, i / (chunks * s.NH), scratch);
    }

    private static void DecodeOneChunk(ArrayView<float> output, ArrayView<float> partial, ArrayView<float> qkv, ArrayView<float> keys,
        ArrayView<float> values, ArrayView<int> mask, ArrayView<int> tickets, AttentionShape s, int chunks, int c, int h, int b,
        WarpScratch scratch)
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
        var keysPerChunk = KeysPerChunk(last - first + 1);
        var at = ((b * s.NH + h) * chunks + c) * (s.HS + 2);
        LoadQuery(scratch.Q, scratch.Acc, qkv, fresh, s.HS);
        var state = AttendBlocks(scratch, keys, values, mask, s, h, b, first + c * keysPerChunk, XMath.Min(last, first + (c + 1) * keysPerChunk - 1), qkv, fresh);
        for (var d = lane; d < s.HS; d += Warp.WarpSize) partial[at + d] = scratch.Acc[d];
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
        Combine(output, partial, scratch.Scales, s, chunks, h, b);
        if (lane == 0) tickets[b * s.NH + h] = 0;
    }

    /// <summary>Keys per chunk for a row of n unmasked keys: at least <see cref="DecodeChunk"/>, at most <see cref="MaxDecodeChunks"/> chunks.</summary>
    private static int KeysPerChunk(int n) => XMath.Max(DecodeChunk, (n + MaxDecodeChunks - 1) / MaxDecodeChunks);

    /// <summary>
    /// Merges the chunks of (h, b), one warp: m = max_c m_c and l = Σ_c l_c·exp(m_c − m) with the lanes taking chunks
    /// (warp reductions of a fixed shape: chunks that saw no key add exact zeros), then for each channel, lanes taking
    /// channels, out = Σ_c acc_c·exp(m_c − m) / l in chunk order. A chunk with no unmasked key has m = −∞ and counts for nothing.
    /// </summary>
    private static void Combine(ArrayView<float> output, ArrayView<float> partial, ArrayView<float> scales, AttentionShape s, int chunks, int h, int b)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx, C = s.NH * s.HS, slot = s.HS + 2;
        var base0 = (b * s.NH + h) * chunks * slot;
        var m = float.NegativeInfinity;
        for (var c = lane; c < chunks; c += W) m = XMath.Max(m, partial[base0 + c * slot + s.HS]);
        m = Reductions.WarpMax(m);
        var l = 0f;
        for (var c = lane; c < chunks; c += W)
        {
            var chunkMax = partial[base0 + c * slot + s.HS];
            var scale = chunkMax == float.NegativeInfinity ? 0f : XMath.Exp(chunkMax - m);
            scales[c] = scale;
            l += partial[base0 + c * slot + s.HS + 1] * scale;
        }
        l = Reductions.WarpSum(l);
        Warp.Barrier();
        for (var d = lane; d < s.HS; d += W)
        {
            var sum = Sixteen.DotInOrder(scales, 0, partial, base0 + d, slot, chunks);
            output[b * C + h * s.HS + d] = l > 0f ? sum / l : 0f;
        }
        // The scales may be overwritten by this warp's next merge only after every lane has read them.
        Warp.Barrier();
    }

    /// <summary>
    /// Prefill without probabilities: a warp per (query t, h, b), over all the keys its query sees (<see cref="AttendBlocks"/>).
    /// Consecutive warps take consecutive queries of one head, so they read the same keys from cache.
    /// </summary>
    public static void PrefillWarps(ArrayView<float> output, ArrayView<float> qkv, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s)
    {
        var scratch = WarpScratch.Allocate();
        var warps = Group.DimX / Warp.WarpSize;
        for (var i = Grid.IdxX * warps + Warp.WarpIdx; i < s.T * s.NH * s.B; i += Grid.DimX * warps)
            PrefillOneQuery(output, qkv, keys, values, mask, s, i % s.T, i / s.T % s.NH, i / (s.T * s.NH), scratch);
    }

    private static void PrefillOneQuery(ArrayView<float> output, ArrayView<float> qkv, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s, int t, int h, int b, WarpScratch scratch)
    {
        int C = s.NH * s.HS, last = s.Past + t;
        LoadQuery(scratch.Q, scratch.Acc, qkv, (b * s.T + t) * 3 * C + h * s.HS, s.HS);
        var state = AttendBlocks(scratch, keys, values, mask, s, h, b, FirstKey(mask, b * s.Tmax, last), last, qkv, fresh: -1);
        // A query that sees no key (all masked) gets zeros.
        var inverse = state.L > 0f ? 1f / state.L : 0f;
        for (var d = Warp.LaneIdx; d < s.HS; d += Warp.WarpSize)
            output[(b * s.T + t) * C + h * s.HS + d] = scratch.Acc[d] * inverse;
    }

    /// <summary>
    /// One warp's online softmax over the unmasked keys [from, to] of head h, row b, in blocks of W keys (W the warp size):
    /// the warp copies a block's keys into shared memory (lanes taking channels: coalesced), lane i scores key i of the
    /// block from there, the block's maximum updates the running m and l, and then the lanes, taking channels, add the
    /// block's weighted values in key order to the sums in scratch.Acc. Returns m and l. Key s.Past, the new token's when
    /// decoding, comes from qkv at <paramref name="fresh"/> (its query's place) if fresh ≥ 0, not from the cache; it is
    /// always the last key, so it is added last.
    /// </summary>
    private static SoftmaxState AttendBlocks(WarpScratch scratch, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s, int h, int b, int from, int to, ArrayView<float> qkv, int fresh)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx, C = s.NH * s.HS, head = (b * s.NH + h) * s.Tmax;
        var m = float.NegativeInfinity;
        var l = 0f;
        for (var j0 = from; j0 <= to; j0 += W)
        {
            var count = XMath.Min(W, to - j0 + 1);
            // The new key, if this block holds it, is the block's last.
            var cached = fresh >= 0 && j0 + count - 1 == s.Past ? count - 1 : count;
            // The previous block's keys and weights are read before they are overwritten (and the query is in place).
            Warp.Barrier();
            StageKeys(scratch.Keys, keys, (head + j0) * s.HS, s.HS, cached);
            if (cached < count)
            {
                for (var d = lane; d < s.HS; d += W) scratch.Keys[cached * KeyPitch + d] = qkv[fresh + C + d];
            }
            Warp.Barrier();

            var seen = lane < count && mask[b * s.Tmax + j0 + lane] != 0;
            var score = seen ? Sixteen.DotInOrder(scratch.Q, 0, scratch.Keys, lane * KeyPitch, 1, s.HS) * s.Scale : float.NegativeInfinity;
            var blockMax = Reductions.WarpMax(score);
            // Every key of the block masked: nothing changes.
            if (blockMax == float.NegativeInfinity) continue;
            var next = XMath.Max(m, blockMax);
            var correction = XMath.Exp(m - next);
            var p = seen ? XMath.Exp(score - next) : 0f;
            l = l * correction + Reductions.WarpSum(p);
            scratch.Weights[lane] = p;
            Warp.Barrier();
            for (var d = lane; d < s.HS; d += W)
            {
                var sum = WeightedValues(scratch.Acc[d] * correction, scratch.Weights, values, (head + j0) * s.HS + d, s.HS, cached);
                if (cached < count && scratch.Weights[cached] != 0f) sum += scratch.Weights[cached] * qkv[fresh + 2 * C + d];
                scratch.Acc[d] = sum;
            }
            m = next;
        }
        return new SoftmaxState(m, l);
    }

    /// <summary>
    /// Keys at[0, count) (count ≤ W rows of HS channels from <paramref name="at"/>) into the warp's shared block, row i at
    /// i · KeyPitch; lanes take channels, sixteen rows in flight.
    /// </summary>
    private static void StageKeys(ArrayView<float> block, ArrayView<float> keys, int at, int HS, int count)
    {
        int W = Warp.WarpSize;
        for (var d = Warp.LaneIdx; d < HS; d += W)
        {
            var i = 0;
            for (; i + 16 <= count; i += 16)
            {
                var a = Sixteen.Load(keys, at + i * HS + d, HS);
                a.Store(block, i * KeyPitch + d, KeyPitch);
            }
            for (; i < count; i++) block[i * KeyPitch + d] = keys[at + i * HS + d];
        }
    }

    /// <summary>
    /// total + Σ_i w[i] · v[at + i·stride] over i in [0, count), in order of i; keys of weight 0 (masked, or too far below
    /// the maximum to count) are skipped, so whatever a masked slot of the cache holds never enters. Sixteen loads in flight.
    /// </summary>
    private static float WeightedValues(float total, ArrayView<float> w, ArrayView<float> v, int at, int stride, int count)
    {
        var i = 0;
        for (; i + 16 <= count; i += 16)
        {
            var x = Sixteen.Load(v, at, stride);
            total = x.AddWeighted(total, w, i);
            at += 16 * stride;
        }
        for (; i < count; i++)
        {
            if (w[i] != 0f) total += w[i] * v[at];
            at += stride;
        }
        return total;
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
    /// Chunks a <see cref="Decode"/> launch holds for rows of at most <paramref name="keys"/> unmasked keys (a T = 1 pass
    /// sees keys [0, past]): enough for any shorter row too; a row's chunks past its own count are empty.
    /// </summary>
    public static int DecodeChunks(int keys) => XMath.Min(MaxDecodeChunks, (keys + DecodeChunk - 1) / DecodeChunk);

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

/// <summary>
/// A warp's shared memory in the attention kernels: its query and value sums (MaxHeadSize each), a block of staged keys,
/// the block's softmax weights, and (decoding) the merge's chunk scales. Every warp of the group gets its own slices.
/// </summary>
internal readonly struct WarpScratch
{
    public readonly ArrayView<float> Q;
    public readonly ArrayView<float> Acc;
    public readonly ArrayView<float> Keys;
    public readonly ArrayView<float> Weights;
    public readonly ArrayView<float> Scales;

    private WarpScratch(ArrayView<float> q, ArrayView<float> acc, ArrayView<float> keys, ArrayView<float> weights, ArrayView<float> scales)
    {
        Q = q;
        Acc = acc;
        Keys = keys;
        Weights = weights;
        Scales = scales;
    }

    /// <summary>The group's shared memory, and this warp's slices of it.</summary>
    public static WarpScratch Allocate()
    {
        const int Warps = AttentionKernel.BlockWarps, Head = AttentionKernel.MaxHeadSize, Block = AttentionKernel.MaxBlockKeys;
        var q = SharedMemory.Allocate<float>(Warps * Head);
        var acc = SharedMemory.Allocate<float>(Warps * Head);
        var keys = SharedMemory.Allocate<float>(Warps * Block * (Head + 1));
        var weights = SharedMemory.Allocate<float>(Warps * Block);
        var scales = SharedMemory.Allocate<float>(Warps * AttentionKernel.MaxDecodeChunks);
        var w = Warp.WarpIdx;
        return new WarpScratch(q.SubView(w * Head, Head), acc.SubView(w * Head, Head),
            keys.SubView(w * Block * (Head + 1), Block * (Head + 1)), weights.SubView(w * Block, Block),
            scales.SubView(w * AttentionKernel.MaxDecodeChunks, AttentionKernel.MaxDecodeChunks));
    }
}
