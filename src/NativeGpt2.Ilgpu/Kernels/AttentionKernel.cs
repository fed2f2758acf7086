using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Util;

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
    /// Warps per group of <see cref="Decode"/> and <see cref="PrefillWarps"/>: each warp stages a block of W keys and their
    /// values in shared memory (about 33 KB on a GPU), so one fits in the 48 KB a group may have.
    /// </summary>
    public const int BlockWarps = 1;

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
    /// that there are at most <see cref="MaxDecodeChunks"/>. With <paramref name="chunks"/> 0 the cache's length
    /// (s.Past) is read from <paramref name="cacheLength"/> instead, for a step recorded once and replayed as it grows.
    /// </remarks>
    public static void Decode(ArrayView<float> output, ArrayView<float> partial, ArrayView<float> qkv, ArrayView<float> keys,
        ArrayView<float> values, ArrayView<int> mask, ArrayView<int> tickets, ArrayView<int> cacheLength, AttentionShape s, int chunks)
    {
        if (chunks == 0)
        {
            // A replayed step (a recorded CUDA graph): the cache's length, and so the chunks, come from the device; the
            // launch has warps for a full cache's chunks, and those past the count have nothing to do.
            var past = cacheLength[0];
            s = new AttentionShape(s.B, s.T, past, s.Tmax, s.NH, s.HS, s.Scale, writeProbabilities: false);
            chunks = DecodeChunks(past + 1);
        }
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
            for (var d = lane; d < s.HS; d += 4 * Warp.WarpSize)
            {
                var key = FourChannels.Load(qkv, fresh + C, d, Warp.WarpSize, s.HS);
                var value = FourChannels.Load(qkv, fresh + 2 * C, d, Warp.WarpSize, s.HS);
                key.Store(keys, slot, d, Warp.WarpSize);
                value.Store(values, slot, d, Warp.WarpSize);
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
            l = Fused.MulAdd(partial[base0 + c * slot + s.HS + 1], scale, l);
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

    /// <summary>Warps per group of <see cref="PrefillTiles"/>.</summary>
    public const int TileWarps = 4;

    /// <summary>Queries each warp of <see cref="PrefillTiles"/> holds.</summary>
    public const int QueriesPerWarp = 8;

    /// <summary>Queries per tile of <see cref="PrefillTiles"/>: those of all its warps.</summary>
    public const int TileQueries = TileWarps * QueriesPerWarp;

    /// <summary>Largest head size <see cref="PrefillTiles"/> takes (a key row is held in a lane's registers); larger heads run <see cref="PrefillWarps"/>.</summary>
    public const int MaxTiledHeadSize = 64;

    /// <summary>Pitch of a staged key in <see cref="PrefillTiles"/>, in floats: lane i reading key i's 16-byte words hits its own banks.</summary>
    private const int TileKeyPitch = MaxTiledHeadSize + 4;

    /// <summary>Pitch of the block's weights (key j's row holds the tile's queries), a whole number of 16-byte words.</summary>
    private const int WeightPitch = TileQueries + 4;

    /// <summary>
    /// Whether <see cref="PrefillTiles"/> takes heads of <paramref name="HS"/> channels: at most <see cref="MaxTiledHeadSize"/>,
    /// a multiple of 4 (its rows are read 16 bytes at a time).
    /// </summary>
    public static bool Tiles(int HS) => HS <= MaxTiledHeadSize && HS % 4 == 0;

    /// <summary>
    /// Prefill without probabilities by tiles of queries: a group of <see cref="TileWarps"/> warps takes
    /// <see cref="TileQueries"/> consecutive queries of one (b, h), and stages each block of W keys and values (W the warp
    /// size) once for all of them, where a warp per query (<see cref="PrefillWarps"/>) stages it once per query.
    /// </summary>
    /// <remarks>
    /// Every query gets the arithmetic of <see cref="AttendBlocks"/>, operation for operation: blocks of W keys from
    /// the row's first unmasked key, lane i scoring key i (an in-order dot product), the block's maximum and the sum of
    /// its weights by the same warp reductions, and the weighted values added in key order, skipping weights of 0. So the
    /// result of a query does not depend on the tile it falls in or on the other rows of the batch. Warp w holds queries
    /// w·8 + [0, 8): it scores the eight side by side against the lane's key (held in registers), and then, lanes taking
    /// channels, adds the block's values into their sums, which live in shared memory with each query's running maximum
    /// and sum. The longest tiles (the last queries) are handed out first.
    /// </remarks>
    public static void PrefillTiles(ArrayView<float> output, ArrayView<float> qkv, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s)
    {
        var queries = SharedMemory.Allocate<Float4>(TileQueries * MaxTiledHeadSize / 4);
        var blockKeys = SharedMemory.Allocate<Float4>(MaxBlockKeys * TileKeyPitch / 4);
        var blockValues = SharedMemory.Allocate<Float4>(MaxBlockKeys * MaxTiledHeadSize / 4);
        var weights = SharedMemory.Allocate<Float4>(MaxBlockKeys * WeightPitch / 4);
        var sums = SharedMemory.Allocate<float>(TileQueries * MaxTiledHeadSize);
        var state = SharedMemory.Allocate<float>(3 * TileQueries);
        var keyMask = SharedMemory.Allocate<int>(MaxBlockKeys);
        var firstKey = SharedMemory.Allocate<int>(1);
        var tile = new QueryTile(queries, blockKeys, blockValues, weights, sums, state, keyMask, firstKey);

        // Unused channels of the staged keys and queries stay zero.
        for (var e = Group.IdxX; e < MaxBlockKeys * TileKeyPitch / 4; e += Group.DimX) blockKeys[e] = default;
        for (var e = Group.IdxX; e < TileQueries * MaxTiledHeadSize / 4; e += Group.DimX) queries[e] = default;
        var tiles = (s.T + TileQueries - 1) / TileQueries;
        var heads = s.NH * s.B;
        for (var item = Grid.IdxX; item < tiles * heads; item += Grid.DimX)
        {
            var head = item % heads;
            PrefillTile(output, qkv, keys, values, mask, s, tile, tiles - 1 - item / heads, head % s.NH, head / s.NH);
        }
    }

    private static void PrefillTile(ArrayView<float> output, ArrayView<float> qkv, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<int> mask, AttentionShape s, QueryTile tile, int tileIndex, int h, int b)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx, tid = Group.IdxX, G = Group.DimX, C = s.NH * s.HS, HS4 = s.HS / 4;
        int t0 = tileIndex * TileQueries, q0 = Warp.WarpIdx * QueriesPerWarp, head = (b * s.NH + h) * s.Tmax;
        var lastKey = s.Past + XMath.Min(s.T, t0 + TileQueries) - 1;

        // The previous tile's sums and state are read before they are overwritten.
        Group.Barrier();
        if (tid == 0) tile.FirstKey[0] = lastKey + 1;
        var qkv4 = qkv.Cast<Float4>();
        for (var e = tid; e < TileQueries * HS4; e += G)
        {
            int q = e / HS4, d4 = e % HS4, t = t0 + q;
            tile.Queries[q * (MaxTiledHeadSize / 4) + d4] = t < s.T ? qkv4[((b * s.T + t) * 3 * C + h * s.HS) / 4 + d4] : default;
        }
        for (var e = tid; e < TileQueries * s.HS; e += G) tile.Sums[e / s.HS * MaxTiledHeadSize + e % s.HS] = 0f;
        for (var q = tid; q < TileQueries; q += G)
        {
            tile.State[q] = float.NegativeInfinity;
            tile.State[TileQueries + q] = 0f;
        }
        Group.Barrier();
        // The row's first unmasked key (for every query that sees one, its own first key): blocks start there.
        for (var j = tid; j <= lastKey; j += G)
        {
            if (mask[b * s.Tmax + j] == 0) continue;
            Atomic.Min(ref tile.FirstKey[0], j);
            break;
        }
        Group.Barrier();

        for (var j0 = tile.FirstKey[0]; j0 <= lastKey; j0 += W)
        {
            var count = XMath.Min(W, lastKey - j0 + 1);
            StageBlock(tile, keys, values, mask, s, head, b, j0, count);
            Group.Barrier();

            var key = new KeyRow(tile.Keys, lane * (TileKeyPitch / 4), HS4);
            ScoreBlock(tile, s, key, q0, t0 + q0, j0, count);
            Warp.Barrier();
            // Two channels a lane at a time where the head has them (GPT-2's 64 with warps of 32): the block's weights are
            // read once for both, and sixteen sums are in flight instead of eight.
            var d = lane;
            for (; d + W < s.HS; d += 2 * W)
                AddBlockValues(tile, d, d + W, q0, count);
            if (d < s.HS) AddBlockValues(tile, d, q0, count);
            // The block is read by every warp before the next one is staged.
            Group.Barrier();
        }

        for (var i = 0; i < QueriesPerWarp; i++)
        {
            int q = q0 + i, t = t0 + q;
            if (t >= s.T) break;
            var l = tile.State[TileQueries + q];
            var inverse = l > 0f ? 1f / l : 0f;
            for (var d = lane; d < s.HS; d += W)
                output[(b * s.T + t) * C + h * s.HS + d] = tile.Sums[q * MaxTiledHeadSize + d] * inverse;
        }
    }

    /// <summary>
    /// Keys and values [j0, j0 + count) of one head into the tile, 16 bytes at a time, eight words of keys and eight of
    /// values in flight per thread (<see cref="EightWords"/>, as a warp stages its block), and their mask.
    /// </summary>
    private static void StageBlock(QueryTile tile, ArrayView<float> keys, ArrayView<float> values, ArrayView<int> mask, AttentionShape s,
        int head, int b, int j0, int count)
    {
        int G = Group.DimX, tid = Group.IdxX, HS4 = s.HS / 4, n = count * HS4, at = (head + j0) * HS4;
        var keys4 = keys.Cast<Float4>().SubView(at);
        var values4 = values.Cast<Float4>().SubView(at);
        // The thread's first key's mask is requested with the keys, not after them.
        var firstMask = tid < count ? mask[b * s.Tmax + j0 + tid] : 0;
        for (var e = tid; e < n; e += 8 * G)
        {
            var k = EightWords.Load(keys4, e, G, n);
            var v = EightWords.Load(values4, e, G, n);
            k.Store(tile.Keys.Cast<float>(), e, G, n, HS4, TileKeyPitch);
            v.Store(tile.Values.Cast<float>(), e, G, n, HS4, MaxTiledHeadSize);
        }
        if (tid < MaxBlockKeys) tile.KeyMask[tid] = firstMask;
        for (var j = tid + G; j < MaxBlockKeys; j += G)
            tile.KeyMask[j] = j < count ? mask[b * s.Tmax + j0 + j] : 0;
    }

    /// <summary>
    /// The warp's eight queries q0 + [0, 8) (tokens t0 + [0, 8)) against the block, lane i scoring key j0 + i: for each, the
    /// online-softmax step of <see cref="AttendBlocks"/>. The weights go to the tile's weight rows, the corrections of the
    /// queries' sums to their state.
    /// </summary>
    /// <remarks>
    /// The eight queries go side by side, each through the same operations in the same order as one query alone: their
    /// dot products are eight independent chains, and their maxima and sums are reduced by the same shuffles, eight at
    /// each step. One query after another, each step waited for the one before it (an in-order dot product is 64
    /// dependent multiply-adds, and each reduction five dependent shuffles), eight times over.
    /// </remarks>
    private static void ScoreBlock(QueryTile tile, AttentionShape s, KeyRow key, int q0, int t0, int j0, int count)
    {
        int lane = Warp.LaneIdx, j = j0 + lane;
        // Key j is in the block and unmasked; query t also needs t < T and j <= Past + t.
        var open = lane < count && tile.KeyMask[lane] != 0;
        var scores = key.Dot(tile.Queries, q0 * (MaxTiledHeadSize / 4), MaxTiledHeadSize / 4);
        scores.Mask(open, j - s.Past, t0, s.T, s.Scale);
        var blockMax = scores;
        blockMax.WarpMax();
        var state = tile.State.SubView(q0, QueriesPerWarp);
        var sums = tile.State.SubView(TileQueries + q0, QueriesPerWarp);
        var m = Eight.Load(state);
        var l = Eight.Load(sums);
        // Per query: every key of the block masked or in its future (a maximum of −∞) changes nothing.
        var next = m.MaxWhereFinite(blockMax);
        var correction = m.CorrectionsTo(next, blockMax);
        var p = scores.Weights(next, blockMax);
        var total = p;
        total.WarpSum();
        var updated = l.ScaledPlus(correction, total, blockMax);
        // Every lane has read the state before lane 0 writes it.
        Warp.Barrier();
        if (lane == 0)
        {
            next.Store(state);
            updated.Store(sums);
            correction.Store(tile.State.SubView(2 * TileQueries + q0, QueriesPerWarp));
        }
        if (lane < MaxBlockKeys) p.Store(tile.Weights.Cast<float>().SubView(lane * WeightPitch + q0, QueriesPerWarp));
    }

    /// <summary>
    /// Channel d of the warp's eight queries: sum · correction, then the block's weighted values added in key order,
    /// weights of 0 skipped (<see cref="WeightedValues"/>).
    /// </summary>
    private static void AddBlockValues(QueryTile tile, int d, int q0, int count)
    {
        var a = CorrectedSums(tile, d, q0);
        var values = tile.Values.Cast<float>();
        for (var j = 0; j < count; j++)
        {
            var v = values[j * MaxTiledHeadSize + d];
            a.Add(tile.Weights[(j * WeightPitch + q0) / 4], tile.Weights[(j * WeightPitch + q0 + 4) / 4], v);
        }
        a.Store(tile.Sums, q0 * MaxTiledHeadSize + d, MaxTiledHeadSize);
    }

    /// <summary>Channels d and e of the warp's eight queries, each exactly as <see cref="AddBlockValues(QueryTile, int, int, int)"/> computes it.</summary>
    private static void AddBlockValues(QueryTile tile, int d, int e, int q0, int count)
    {
        var a = CorrectedSums(tile, d, q0);
        var b = CorrectedSums(tile, e, q0);
        var values = tile.Values.Cast<float>();
        for (var j = 0; j < count; j++)
        {
            var w0 = tile.Weights[(j * WeightPitch + q0) / 4];
            var w1 = tile.Weights[(j * WeightPitch + q0 + 4) / 4];
            a.Add(w0, w1, values[j * MaxTiledHeadSize + d]);
            b.Add(w0, w1, values[j * MaxTiledHeadSize + e]);
        }
        a.Store(tile.Sums, q0 * MaxTiledHeadSize + d, MaxTiledHeadSize);
        b.Store(tile.Sums, q0 * MaxTiledHeadSize + e, MaxTiledHeadSize);
    }

    /// <summary>Channel d's sums of the warp's eight queries, each times its query's correction for the block.</summary>
    private static EightSums CorrectedSums(QueryTile tile, int d, int q0)
    {
        var sums = tile.Sums;
        var corrections = tile.State.SubView(2 * TileQueries + q0, QueriesPerWarp);
        return new EightSums(
            sums[(q0 + 0) * MaxTiledHeadSize + d] * corrections[0], sums[(q0 + 1) * MaxTiledHeadSize + d] * corrections[1],
            sums[(q0 + 2) * MaxTiledHeadSize + d] * corrections[2], sums[(q0 + 3) * MaxTiledHeadSize + d] * corrections[3],
            sums[(q0 + 4) * MaxTiledHeadSize + d] * corrections[4], sums[(q0 + 5) * MaxTiledHeadSize + d] * corrections[5],
            sums[(q0 + 6) * MaxTiledHeadSize + d] * corrections[6], sums[(q0 + 7) * MaxTiledHeadSize + d] * corrections[7]);
    }

    /// <summary>
    /// One warp's online softmax over the unmasked keys [from, to] of head h, row b, in blocks of W keys (W the warp size):
    /// the warp copies a block's keys and values into shared memory (<see cref="StageWarpBlock"/>), lane i scores key i of
    /// the block from there, the block's maximum updates the running m and l, and then the lanes, taking channels, add
    /// the block's weighted values in key order to the sums in scratch.Acc. Returns m and l. Key s.Past, the new token's
    /// when decoding, comes from qkv at <paramref name="fresh"/> (its query's place) if fresh ≥ 0, not from the cache;
    /// it is always the last key, so it is added last.
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
            // The keys' mask is requested with the block, not after it.
            var seen = lane < count && mask[b * s.Tmax + j0 + lane] != 0;
            // The previous block's keys, values and weights are read before they are overwritten (and the query is in place).
            Warp.Barrier();
            StageWarpBlock(scratch, keys, values, (head + j0) * s.HS, s.HS, cached);
            if (cached < count)
            {
                for (var d = lane; d < s.HS; d += 4 * W)
                {
                    var key = FourChannels.Load(qkv, fresh + C, d, W, s.HS);
                    var value = FourChannels.Load(qkv, fresh + 2 * C, d, W, s.HS);
                    key.Store(scratch.Keys, cached * KeyPitch, d, W);
                    value.Store(scratch.Values, cached * MaxHeadSize, d, W);
                }
            }
            Warp.Barrier();

            var score = seen ? Sixteen.DotInOrder(scratch.Q, 0, scratch.Keys, lane * KeyPitch, 1, s.HS) * s.Scale : float.NegativeInfinity;
            var blockMax = Reductions.WarpMax(score);
            // Every key of the block masked: nothing changes.
            if (blockMax == float.NegativeInfinity) continue;
            var next = XMath.Max(m, blockMax);
            var correction = XMath.Exp(m - next);
            var p = seen ? XMath.Exp(score - next) : 0f;
            l = Fused.MulAdd(l, correction, Reductions.WarpSum(p));
            scratch.Weights[lane] = p;
            Warp.Barrier();
            for (var d = lane; d < s.HS; d += W)
                scratch.Acc[d] = WeightedValues(scratch.Acc[d] * correction, scratch.Weights, scratch.Values, d, MaxHeadSize, count);
            m = next;
        }
        return new SoftmaxState(m, l);
    }

    /// <summary>
    /// Keys and values at[0, count) (count ≤ W rows of HS channels from <paramref name="at"/>) into the warp's shared
    /// block: key i at i · KeyPitch, value i at i · MaxHeadSize. When HS is a multiple of 4 the lanes take 16-byte words,
    /// eight of keys and eight of values in flight each; otherwise they take channels, sixteen of each in flight.
    /// </summary>
    private static void StageWarpBlock(WarpScratch scratch, ArrayView<float> keys, ArrayView<float> values, int at, int HS, int count)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx;
        if (HS % 4 == 0)
        {
            int HS4 = HS / 4, n = count * HS4;
            var keys4 = keys.Cast<Float4>().SubView(at / 4);
            var values4 = values.Cast<Float4>().SubView(at / 4);
            for (var e = lane; e < n; e += 8 * W)
            {
                var k = EightWords.Load(keys4, e, W, n);
                var v = EightWords.Load(values4, e, W, n);
                k.Store(scratch.Keys, e, W, n, HS4, KeyPitch);
                v.Store(scratch.Values, e, W, n, HS4, MaxHeadSize);
            }
            return;
        }
        for (var d = lane; d < HS; d += W)
        {
            var i = 0;
            for (; i + 16 <= count; i += 16)
            {
                var k = Sixteen.Load(keys, at + i * HS + d, HS);
                var v = Sixteen.Load(values, at + i * HS + d, HS);
                k.Store(scratch.Keys, i * KeyPitch + d, KeyPitch);
                v.Store(scratch.Values, i * MaxHeadSize + d, MaxHeadSize);
            }
            for (; i < count; i++)
            {
                scratch.Keys[i * KeyPitch + d] = keys[at + i * HS + d];
                scratch.Values[i * MaxHeadSize + d] = values[at + i * HS + d];
            }
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
            if (w[i] != 0f) total = Fused.MulAdd(w[i], v[at], total);
            at += stride;
        }
        return total;
    }

    /// <summary>The warp's query channels into <paramref name="q"/> (each lane its own), and its value sums cleared.</summary>
    private static void LoadQuery(ArrayView<float> q, ArrayView<float> acc, ArrayView<float> qkv, int at, int HS)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx;
        for (var d = lane; d < HS; d += 4 * W) FourChannels.Load(qkv, at, d, W, HS).Store(q, 0, d, W);
        for (var d = lane; d < HS; d += W) acc[d] = 0f;
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
internal readonly struct AttentionShape(int B, int T, int past, int Tmax, int NH, int HS, float scale, bool writeProbabilities)
{
    public readonly int B = B;
    public readonly int T = T;
    public readonly int Past = past;
    public readonly int Tmax = Tmax;
    public readonly int NH = NH;
    public readonly int HS = HS;
    public readonly float Scale = scale;
    public readonly int WriteProbabilities = writeProbabilities ? 1 : 0;
}

/// <summary>
/// A warp's shared memory in the attention kernels: its query and value sums (MaxHeadSize each), a block of staged keys
/// and values, the block's softmax weights, and (decoding) the merge's chunk scales. Every warp of the group gets its own slices.
/// </summary>
internal readonly struct WarpScratch
{
    public readonly ArrayView<float> Q;
    public readonly ArrayView<float> Acc;
    public readonly ArrayView<float> Keys;
    public readonly ArrayView<float> Values;
    public readonly ArrayView<float> Weights;
    public readonly ArrayView<float> Scales;

    private WarpScratch(ArrayView<float> q, ArrayView<float> acc, ArrayView<float> keys, ArrayView<float> values, ArrayView<float> weights,
        ArrayView<float> scales)
    {
        Q = q;
        Acc = acc;
        Keys = keys;
        Values = values;
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
        var values = SharedMemory.Allocate<Float4>(Warps * Block * Head / 4);
        var weights = SharedMemory.Allocate<float>(Warps * Block);
        var scales = SharedMemory.Allocate<float>(Warps * AttentionKernel.MaxDecodeChunks);
        var w = Warp.WarpIdx;
        return new WarpScratch(q.SubView(w * Head, Head), acc.SubView(w * Head, Head),
            keys.SubView(w * Block * (Head + 1), Block * (Head + 1)), values.Cast<float>().SubView(w * Block * Head, Block * Head),
            weights.SubView(w * Block, Block), scales.SubView(w * AttentionKernel.MaxDecodeChunks, AttentionKernel.MaxDecodeChunks));
    }
}

/// <summary>
/// Eight 16-byte words of a block of keys or values in registers, loaded together: words e, e + W, …, e + 7W of the
/// block (those below n; W the stride between the threads that share the block: a warp's, or a group's), word e being
/// channels [4·(e mod HS4), +4) of row e / HS4.
/// </summary>
internal struct EightWords
{
    private Float4 _w0, _w1, _w2, _w3, _w4, _w5, _w6, _w7;

    public static EightWords Load(ArrayView<Float4> source, int e, int W, int n)
    {
        var x = new EightWords();
        x._w0 = source[e];
        if (e + W < n) x._w1 = source[e + W];
        if (e + 2 * W < n) x._w2 = source[e + 2 * W];
        if (e + 3 * W < n) x._w3 = source[e + 3 * W];
        if (e + 4 * W < n) x._w4 = source[e + 4 * W];
        if (e + 5 * W < n) x._w5 = source[e + 5 * W];
        if (e + 6 * W < n) x._w6 = source[e + 6 * W];
        if (e + 7 * W < n) x._w7 = source[e + 7 * W];
        return x;
    }

    /// <summary>The words into rows of <paramref name="pitch"/> floats of <paramref name="target"/> (a float at a time: the pitch may be odd).</summary>
    public readonly void Store(ArrayView<float> target, int e, int W, int n, int HS4, int pitch)
    {
        Put(target, _w0, e, HS4, pitch);
        if (e + W < n) Put(target, _w1, e + W, HS4, pitch);
        if (e + 2 * W < n) Put(target, _w2, e + 2 * W, HS4, pitch);
        if (e + 3 * W < n) Put(target, _w3, e + 3 * W, HS4, pitch);
        if (e + 4 * W < n) Put(target, _w4, e + 4 * W, HS4, pitch);
        if (e + 5 * W < n) Put(target, _w5, e + 5 * W, HS4, pitch);
        if (e + 6 * W < n) Put(target, _w6, e + 6 * W, HS4, pitch);
        if (e + 7 * W < n) Put(target, _w7, e + 7 * W, HS4, pitch);
    }

    private static void Put(ArrayView<float> target, Float4 word, int e, int HS4, int pitch)
    {
        var at = e / HS4 * pitch + 4 * (e % HS4);
        target[at] = word.X;
        target[at + 1] = word.Y;
        target[at + 2] = word.Z;
        target[at + 3] = word.W;
    }
}

/// <summary>The shared memory of a <see cref="AttentionKernel.PrefillTiles"/> group.</summary>
internal readonly struct QueryTile(ArrayView<Float4> queries, ArrayView<Float4> keys, ArrayView<Float4> values, ArrayView<Float4> weights,
    ArrayView<float> sums, ArrayView<float> state, ArrayView<int> keyMask, ArrayView<int> firstKey)
{
    /// <summary>The tile's queries, a row of MaxTiledHeadSize channels each (unused channels zero).</summary>
    public readonly ArrayView<Float4> Queries = queries;

    /// <summary>The block's keys, a row of TileKeyPitch floats each (unused channels zero).</summary>
    public readonly ArrayView<Float4> Keys = keys;

    /// <summary>The block's values, a row of MaxTiledHeadSize channels each.</summary>
    public readonly ArrayView<Float4> Values = values;

    /// <summary>The block's softmax weights: key j's row holds one per query.</summary>
    public readonly ArrayView<Float4> Weights = weights;

    /// <summary>Each query's weighted sum of values, a row of MaxTiledHeadSize channels.</summary>
    public readonly ArrayView<float> Sums = sums;

    /// <summary>Each query's running maximum, running sum and the block's correction of its sums, TileQueries apart.</summary>
    public readonly ArrayView<float> State = state;

    /// <summary>The block's mask.</summary>
    public readonly ArrayView<int> KeyMask = keyMask;

    /// <summary>The row's first unmasked key.</summary>
    public readonly ArrayView<int> FirstKey = firstKey;
}

/// <summary>A lane's key, up to 64 channels in registers, and its in-order dot product with a query.</summary>
internal readonly struct KeyRow
{
    private readonly Float4 _k0, _k1, _k2, _k3, _k4, _k5, _k6, _k7, _k8, _k9, _k10, _k11, _k12, _k13, _k14, _k15;
    private readonly int _words;

    /// <summary>The first <paramref name="words"/> 16-byte words of the row at <paramref name="at"/> (the rest zero).</summary>
    public KeyRow(ArrayView<Float4> source, int at, int words)
    {
        _words = words;
        _k0 = source[at]; _k1 = source[at + 1]; _k2 = source[at + 2]; _k3 = source[at + 3];
        _k4 = source[at + 4]; _k5 = source[at + 5]; _k6 = source[at + 6]; _k7 = source[at + 7];
        _k8 = source[at + 8]; _k9 = source[at + 9]; _k10 = source[at + 10]; _k11 = source[at + 11];
        _k12 = source[at + 12]; _k13 = source[at + 13]; _k14 = source[at + 14]; _k15 = source[at + 15];
    }

    /// <summary>
    /// For each of eight queries (rows of <paramref name="pitch"/> words from <paramref name="at"/>), Σ_d query[d] · key[d]
    /// over the row's channels, summed in order from zero, as <see cref="Sixteen.DotInOrder"/> does: eight independent chains.
    /// </summary>
    public Eight Dot(ArrayView<Float4> queries, int at, int pitch)
    {
        var sums = new Eight();
        AddWord(ref sums, queries, at, pitch, _k0);
        if (_words > 1) AddWord(ref sums, queries, at + 1, pitch, _k1);
        if (_words > 2) AddWord(ref sums, queries, at + 2, pitch, _k2);
        if (_words > 3) AddWord(ref sums, queries, at + 3, pitch, _k3);
        if (_words > 4) AddWord(ref sums, queries, at + 4, pitch, _k4);
        if (_words > 5) AddWord(ref sums, queries, at + 5, pitch, _k5);
        if (_words > 6) AddWord(ref sums, queries, at + 6, pitch, _k6);
        if (_words > 7) AddWord(ref sums, queries, at + 7, pitch, _k7);
        if (_words > 8) AddWord(ref sums, queries, at + 8, pitch, _k8);
        if (_words > 9) AddWord(ref sums, queries, at + 9, pitch, _k9);
        if (_words > 10) AddWord(ref sums, queries, at + 10, pitch, _k10);
        if (_words > 11) AddWord(ref sums, queries, at + 11, pitch, _k11);
        if (_words > 12) AddWord(ref sums, queries, at + 12, pitch, _k12);
        if (_words > 13) AddWord(ref sums, queries, at + 13, pitch, _k13);
        if (_words > 14) AddWord(ref sums, queries, at + 14, pitch, _k14);
        if (_words > 15) AddWord(ref sums, queries, at + 15, pitch, _k15);
        return sums;
    }

    /// <summary>Word k of the key against the same word of each of the eight queries.</summary>
    private static void AddWord(ref Eight sums, ArrayView<Float4> queries, int at, int pitch, Float4 k)
    {
        sums.A0 = Add(sums.A0, queries[at], k);
        sums.A1 = Add(sums.A1, queries[at + pitch], k);
        sums.A2 = Add(sums.A2, queries[at + 2 * pitch], k);
        sums.A3 = Add(sums.A3, queries[at + 3 * pitch], k);
        sums.A4 = Add(sums.A4, queries[at + 4 * pitch], k);
        sums.A5 = Add(sums.A5, queries[at + 5 * pitch], k);
        sums.A6 = Add(sums.A6, queries[at + 6 * pitch], k);
        sums.A7 = Add(sums.A7, queries[at + 7 * pitch], k);
    }

    private static float Add(float sum, Float4 q, Float4 k)
    {
        sum = Fused.MulAdd(q.X, k.X, sum);
        sum = Fused.MulAdd(q.Y, k.Y, sum);
        sum = Fused.MulAdd(q.Z, k.Z, sum);
        sum = Fused.MulAdd(q.W, k.W, sum);
        return sum;
    }
}

/// <summary>One channel's value sums for a warp's eight queries, in registers.</summary>
internal struct EightSums(float a0, float a1, float a2, float a3, float a4, float a5, float a6, float a7)
{
    private float _a0 = a0, _a1 = a1, _a2 = a2, _a3 = a3, _a4 = a4, _a5 = a5, _a6 = a6, _a7 = a7;

    /// <summary>Each sum += its query's weight · v, skipped where the weight is 0 (a masked or future key adds nothing).</summary>
    public void Add(Float4 w0, Float4 w1, float v)
    {
        if (w0.X != 0f) _a0 = Fused.MulAdd(w0.X, v, _a0);
        if (w0.Y != 0f) _a1 = Fused.MulAdd(w0.Y, v, _a1);
        if (w0.Z != 0f) _a2 = Fused.MulAdd(w0.Z, v, _a2);
        if (w0.W != 0f) _a3 = Fused.MulAdd(w0.W, v, _a3);
        if (w1.X != 0f) _a4 = Fused.MulAdd(w1.X, v, _a4);
        if (w1.Y != 0f) _a5 = Fused.MulAdd(w1.Y, v, _a5);
        if (w1.Z != 0f) _a6 = Fused.MulAdd(w1.Z, v, _a6);
        if (w1.W != 0f) _a7 = Fused.MulAdd(w1.W, v, _a7);
    }

    /// <summary>target[at + i · stride] = sum i.</summary>
    public readonly void Store(ArrayView<float> target, int at, int stride)
    {
        target[at] = _a0;
        target[at + stride] = _a1;
        target[at + 2 * stride] = _a2;
        target[at + 3 * stride] = _a3;
        target[at + 4 * stride] = _a4;
        target[at + 5 * stride] = _a5;
        target[at + 6 * stride] = _a6;
        target[at + 7 * stride] = _a7;
    }
}

/// <summary>
/// One value per query for a warp's eight queries (<see cref="AttentionKernel.QueriesPerWarp"/>), in registers: the steps
/// of one query's online softmax, written out for eight side by side (ILGPU does not unroll loops).
/// </summary>
internal struct Eight
{
    public float A0, A1, A2, A3, A4, A5, A6, A7;

    /// <summary>source[0, 8).</summary>
    public static Eight Load(ArrayView<float> source)
    {
        var x = new Eight();
        x.A0 = source[0]; x.A1 = source[1]; x.A2 = source[2]; x.A3 = source[3];
        x.A4 = source[4]; x.A5 = source[5]; x.A6 = source[6]; x.A7 = source[7];
        return x;
    }

    /// <summary>target[0, 8) = the values.</summary>
    public readonly void Store(ArrayView<float> target)
    {
        target[0] = A0; target[1] = A1; target[2] = A2; target[3] = A3;
        target[4] = A4; target[5] = A5; target[6] = A6; target[7] = A7;
    }

    /// <summary>
    /// Dot products into scores: each times <paramref name="scale"/> where query t0 + i sees the key (it is
    /// <paramref name="open"/>, t &lt; T, and the key is not in t's future: key − past ≤ t), else −∞.
    /// </summary>
    public void Mask(bool open, int keyAfterPast, int t0, int T, float scale)
    {
        A0 = Score(A0, open, keyAfterPast, t0, T, scale);
        A1 = Score(A1, open, keyAfterPast, t0 + 1, T, scale);
        A2 = Score(A2, open, keyAfterPast, t0 + 2, T, scale);
        A3 = Score(A3, open, keyAfterPast, t0 + 3, T, scale);
        A4 = Score(A4, open, keyAfterPast, t0 + 4, T, scale);
        A5 = Score(A5, open, keyAfterPast, t0 + 5, T, scale);
        A6 = Score(A6, open, keyAfterPast, t0 + 6, T, scale);
        A7 = Score(A7, open, keyAfterPast, t0 + 7, T, scale);
    }

    private static float Score(float dot, bool open, int keyAfterPast, int t, int T, float scale) =>
        open && t < T && keyAfterPast <= t ? dot * scale : float.NegativeInfinity;

    /// <summary>
    /// Each value the maximum over the warp (<see cref="Reductions.WarpMax"/>'s steps, the eight at each step). A step
    /// shuffles the eight as one value: on a GPU ILGPU splits it into eight shuffles of one float, the same as shuffling
    /// each; ILGPU's CPU accelerator makes every shuffle a round of barriers between the warp's OS threads, and then makes
    /// one round instead of eight.
    /// </summary>
    public void WarpMax()
    {
        for (var offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            var other = Warp.ShuffleXor(this, offset);
            A0 = XMath.Max(A0, other.A0);
            A1 = XMath.Max(A1, other.A1);
            A2 = XMath.Max(A2, other.A2);
            A3 = XMath.Max(A3, other.A3);
            A4 = XMath.Max(A4, other.A4);
            A5 = XMath.Max(A5, other.A5);
            A6 = XMath.Max(A6, other.A6);
            A7 = XMath.Max(A7, other.A7);
        }
    }

    /// <summary>Each value the sum over the warp (<see cref="Reductions.WarpSum"/>'s steps, the eight shuffled together as in <see cref="WarpMax"/>).</summary>
    public void WarpSum()
    {
        for (var offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            var other = Warp.ShuffleXor(this, offset);
            A0 += other.A0;
            A1 += other.A1;
            A2 += other.A2;
            A3 += other.A3;
            A4 += other.A4;
            A5 += other.A5;
            A6 += other.A6;
            A7 += other.A7;
        }
    }

    /// <summary>These running maxima raised to the block's (max(m, block)), except where the block's is −∞ (nothing seen).</summary>
    public readonly Eight MaxWhereFinite(Eight block)
    {
        var x = new Eight();
        x.A0 = NextMax(A0, block.A0); x.A1 = NextMax(A1, block.A1); x.A2 = NextMax(A2, block.A2); x.A3 = NextMax(A3, block.A3);
        x.A4 = NextMax(A4, block.A4); x.A5 = NextMax(A5, block.A5); x.A6 = NextMax(A6, block.A6); x.A7 = NextMax(A7, block.A7);
        return x;
    }

    private static float NextMax(float m, float block) => block != float.NegativeInfinity ? XMath.Max(m, block) : m;

    /// <summary>exp(m − next) for these running maxima m: what the sums so far are scaled by; 1 where the block saw nothing.</summary>
    public readonly Eight CorrectionsTo(Eight next, Eight block)
    {
        var x = new Eight();
        x.A0 = Correction(A0, next.A0, block.A0); x.A1 = Correction(A1, next.A1, block.A1);
        x.A2 = Correction(A2, next.A2, block.A2); x.A3 = Correction(A3, next.A3, block.A3);
        x.A4 = Correction(A4, next.A4, block.A4); x.A5 = Correction(A5, next.A5, block.A5);
        x.A6 = Correction(A6, next.A6, block.A6); x.A7 = Correction(A7, next.A7, block.A7);
        return x;
    }

    private static float Correction(float m, float next, float block) => block != float.NegativeInfinity ? XMath.Exp(m - next) : 1f;

    /// <summary>exp(score − next) for these scores: the key's weight for each query; 0 for a key not seen, or a block that saw nothing.</summary>
    public readonly Eight Weights(Eight next, Eight block)
    {
        var x = new Eight();
        x.A0 = Weight(A0, next.A0, block.A0); x.A1 = Weight(A1, next.A1, block.A1);
        x.A2 = Weight(A2, next.A2, block.A2); x.A3 = Weight(A3, next.A3, block.A3);
        x.A4 = Weight(A4, next.A4, block.A4); x.A5 = Weight(A5, next.A5, block.A5);
        x.A6 = Weight(A6, next.A6, block.A6); x.A7 = Weight(A7, next.A7, block.A7);
        return x;
    }

    private static float Weight(float score, float next, float block) =>
        block != float.NegativeInfinity && score != float.NegativeInfinity ? XMath.Exp(score - next) : 0f;

    /// <summary>These running sums l as l · correction + total (one fused multiply-add), except where the block saw nothing.</summary>
    public readonly Eight ScaledPlus(Eight correction, Eight total, Eight block)
    {
        var x = new Eight();
        x.A0 = Sum(A0, correction.A0, total.A0, block.A0); x.A1 = Sum(A1, correction.A1, total.A1, block.A1);
        x.A2 = Sum(A2, correction.A2, total.A2, block.A2); x.A3 = Sum(A3, correction.A3, total.A3, block.A3);
        x.A4 = Sum(A4, correction.A4, total.A4, block.A4); x.A5 = Sum(A5, correction.A5, total.A5, block.A5);
        x.A6 = Sum(A6, correction.A6, total.A6, block.A6); x.A7 = Sum(A7, correction.A7, total.A7, block.A7);
        return x;
    }

    private static float Sum(float l, float correction, float total, float block) =>
        block != float.NegativeInfinity ? Fused.MulAdd(l, correction, total) : l;
}
