using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Util;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// The projections: <c>out = epilogue(input · W + bias)</c> for GPT-2's Conv1D weights W (IC, OC), and
/// <c>out = input · Wᵀ</c> for the head over wte (OC = V, IC = C). Two kernels compute each: a tiled one
/// (shared-memory tiles, a 4 × 8 register micro-tile per thread) for many rows, and a matrix-vector one
/// for decoding (a thread per output column and chunk of inputs: a group per block of columns, or split
/// across groups when the inputs are too many to stage; for the head, a warp per block of weight rows).
/// </summary>
/// <remarks>
/// <para>Every output is accumulated in one canonical order, whichever kernel computes it: the sum over
/// i runs in chunks of <see cref="Chunk"/> consecutive inputs, each chunk summed in order from zero, the
/// chunk sums added in order to the bias. So an output does not depend on the kernel, the tile, or the
/// other rows of the batch, and batched generation equals one-by-one generation on the GPU too.</para>
/// <para>ILGPU 1.5.3 does not unroll loops: the micro-tile is written out by hand (<see cref="MicroTile"/>).</para>
/// </remarks>
internal static class MatMulKernels
{
    /// <summary>Inputs summed together before they are added to the running total.</summary>
    public const int Chunk = 64;

    /// <summary>Inputs per shared-memory tile: one chunk, so each tile's sum joins the total once.</summary>
    public const int TileK = Chunk;

    /// <summary>Largest tile side: 64 rows (16 threads × 4) by 64 columns (8 threads × 8).</summary>
    public const int MaxTile = 64;

    /// <summary>Columns of a matrix-vector block, and rows of a head tile: the widest warp the kernels hold.</summary>
    public const int MaxWarp = 32;

    /// <summary>
    /// Most input rows the matrix-vector kernels hold (decoding: one per sequence of the batch), reading each weight once for
    /// all of them: eight, the server's shared batch by default. The backend takes them up to
    /// <see cref="NativeGpt2.Ilgpu.IlgpuBackend.MatVecRowLimit"/> rows.
    /// </summary>
    public const int MaxMatVecRows = 8;

    /// <summary>Most warps, and so chunks, per group of the matrix-vector kernel: its slab of inputs in shared memory.</summary>
    public const int MaxSlabChunks = 8;

    /// <summary>Most warps per group of the head kernel: each holds a tile of MaxWarp rows × (Chunk + 1) floats, 33 KB for four.</summary>
    public const int MaxHeadWarps = 4;

    /// <summary>Pitch of a head tile's rows: one padding column, so lane r reading row r hits bank (r + j) mod 32, no conflicts.</summary>
    public const int HeadPitch = Chunk + 1;

    /// <summary>
    /// Tiled matmul: groups of TX · TY threads, each group computing tiles of BM = 4 · TY rows by BN = 8 · TX columns,
    /// every (grid size)-th tile of the output. Thread (tx, ty) holds rows 4·ty + [0, 4) of columns 4·tx + [0, 4) and
    /// BN/2 + 4·tx + [0, 4): consecutive lanes read consecutive 16-byte words of the weight tile, without bank conflicts.
    /// </summary>
    /// <remarks>
    /// The tile sides are specialized values, so the compiled kernel divides by constants. With
    /// <paramref name="aligned"/> (IC a multiple of 4, and OC too for a Conv1D weight) the tiles are loaded 16 bytes at a
    /// time, the next tile's requested before the current tile's products (<see cref="TileWords"/>).
    /// Shared memory: the input tile row-major (BM × 64, pitch 68: a thread reads 4 inputs of a row as one word) and the
    /// weight tile k-major (64 × BN, pitch BN + 4: <see cref="WeightTilePitch"/>), 35 KB at most, within the 48 KB ILGPU allows a group.
    /// </remarks>
    public static void Tiled(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, MatMulShape s,
        SpecializedValue<int> tileX, SpecializedValue<int> tileY, SpecializedValue<int> aligned)
    {
        var As = SharedMemory.Allocate<Float4>(MaxTile * APitch / 4);
        var Bs = SharedMemory.Allocate<Float4>(TileK * (MaxTile + 4) / 4);
        int BM = 4 * tileY.Value, BN = 8 * tileX.Value;
        int tilesAcross = (s.OC + BN - 1) / BN, tiles = tilesAcross * ((s.N + BM - 1) / BM);
        for (var tile = Grid.IdxX; tile < tiles; tile += Grid.DimX)
            Tile(output, input, weight, bias, s, As, Bs, tileX.Value, tileY.Value, aligned.Value != 0, tile / tilesAcross * BM, tile % tilesAcross * BN,
                0, s.IC, chunkSums: false);
    }

    /// <summary>
    /// <see cref="Tiled"/> split over the inputs: a work item is a tile and one of <paramref name="splits"/> runs of
    /// consecutive chunks, and writes each chunk's sums, summed from zero as <see cref="Tiled"/> sums them, to
    /// <paramref name="partials"/> (chunks, N, OC); <see cref="AddChunkSumsInOrder"/> then adds them to the bias in order.
    /// So every output keeps the canonical order, while a shape of few tiles (a prompt's 768-column projections) gives
    /// the device several times as many groups.
    /// </summary>
    public static void TiledChunkSums(ArrayView<float> partials, ArrayView<float> input, ArrayView<float> weight, MatMulShape s,
        SpecializedValue<int> tileX, SpecializedValue<int> tileY, SpecializedValue<int> aligned, int splits)
    {
        var As = SharedMemory.Allocate<Float4>(MaxTile * APitch / 4);
        var Bs = SharedMemory.Allocate<Float4>(TileK * (MaxTile + 4) / 4);
        int BM = 4 * tileY.Value, BN = 8 * tileX.Value;
        int tilesAcross = (s.OC + BN - 1) / BN, tiles = tilesAcross * ((s.N + BM - 1) / BM);
        int chunks = (s.IC + Chunk - 1) / Chunk, perSplit = (chunks + splits - 1) / splits;
        for (var item = Grid.IdxX; item < tiles * splits; item += Grid.DimX)
        {
            int tile = item % tiles, first = item / tiles * perSplit * Chunk, end = XMath.Min(s.IC, first + perSplit * Chunk);
            // Every thread of the group takes the same item, so the barriers inside the tile are reached by all or none.
            if (first >= end) continue;
            Tile(partials, input, weight, weight, s, As, Bs, tileX.Value, tileY.Value, aligned.Value != 0, tile / tilesAcross * BM, tile % tilesAcross * BN,
                first, end, chunkSums: true);
        }
    }

    /// <summary>
    /// out[n, o] = epilogue(bias[o] + Σ_c partials[c, n, o]), the chunk sums of <see cref="TiledChunkSums"/> added in order
    /// of c: what <see cref="Tiled"/> computes, operation for operation. A thread per output.
    /// </summary>
    public static void AddChunkSumsInOrder(ArrayView<float> output, ArrayView<float> partials, ArrayView<float> bias, MatMulShape s)
    {
        var chunks = (s.IC + Chunk - 1) / Chunk;
        var outputs = s.N * s.OC;
        for (var e = Grid.GlobalIndex.X; e < outputs; e += Grid.DimX * Group.DimX)
        {
            var total = AddInOrder(s.HasBias != 0 ? bias[e % s.OC] : 0f, partials, e, outputs, chunks);
            output[e] = Epilogue(total, s.Epilogue, output[e]);
        }
    }

    /// <summary>
    /// total + from[at] + from[at + stride] + … (<paramref name="count"/> terms), added in that order, eight values requested
    /// before they are added: one after another, each load would wait for the sum before it, and the 48 chunk sums of
    /// GPT-2's MLP projection would take 48 latencies of the memory they are in.
    /// </summary>
    private static float AddInOrder(float total, ArrayView<float> from, int at, int stride, int count)
    {
        var c = 0;
        for (; c + 8 <= count; c += 8, at += 8 * stride)
        {
            float p0 = from[at], p1 = from[at + stride], p2 = from[at + 2 * stride], p3 = from[at + 3 * stride];
            float p4 = from[at + 4 * stride], p5 = from[at + 5 * stride], p6 = from[at + 6 * stride], p7 = from[at + 7 * stride];
            total += p0;
            total += p1;
            total += p2;
            total += p3;
            total += p4;
            total += p5;
            total += p6;
            total += p7;
        }
        for (; c < count; c++, at += stride) total += from[at];
        return total;
    }

    /// <summary>Pitch of the input tile's rows in floats: 64 inputs and 4 of padding, a whole number of 16-byte words.</summary>
    public const int APitch = TileK + 4;

    /// <summary>Pitch of the weight tile's rows in floats for TX threads across: its 8·TX columns and 4 of padding, a whole number of 16-byte words.</summary>
    public static int WeightTilePitch(int TX) => 8 * TX + 4;

    /// <summary>
    /// One BM × BN tile of the output, starting at (row0, col0), over inputs [first, end) (whole chunks but the last). With
    /// <paramref name="chunkSums"/>, each chunk's sums go to <paramref name="output"/> as (chunks, N, OC) partial sums
    /// instead of joining a total that starts from the bias.
    /// </summary>
    private static void Tile(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, MatMulShape s,
        ArrayView<Float4> As, ArrayView<Float4> Bs, int TX, int TY, bool aligned, int row0, int col0, int first, int end, bool chunkSums)
    {
        int tid = Group.IdxX, tx = tid % TX, ty = tid / TX;
        int BN = 8 * TX, BPitch4 = WeightTilePitch(TX) / 4;
        int r = ty * 4, c = tx * 4, c2 = BN / 2 + tx * 4;
        // The thread's first row of the input tile, and its two runs of four columns in the weight tile (16-byte words).
        var aRows = As.SubView(r * (APitch / 4));
        ArrayView<Float4> bLo = Bs.SubView(c / 4), bHi = Bs.SubView(c2 / 4);

        var chunk = new MicroTile();
        var total = new MicroTile();
        if (s.HasBias != 0 && !chunkSums)
        {
            total.SetRows(Bias(bias, col0 + c, s.OC), Bias(bias, col0 + c + 1, s.OC), Bias(bias, col0 + c + 2, s.OC), Bias(bias, col0 + c + 3, s.OC),
                Bias(bias, col0 + c2, s.OC), Bias(bias, col0 + c2 + 1, s.OC), Bias(bias, col0 + c2 + 2, s.OC), Bias(bias, col0 + c2 + 3, s.OC));
        }

        // Rows in whole 16-byte words: the next tile's first words are requested before the current tile's products, so
        // their latency passes while the group computes. Otherwise the tiles are staged a float at a time.
        var words = aligned ? TileWords.Load(input, weight, s, TX, TY, row0, col0, first) : default;
        for (var k0 = first; k0 < end; k0 += TileK)
        {
            if (aligned)
            {
                words.Store(input, weight, s, As, Bs, TX, TY, row0, col0, k0);
                Group.Barrier();
                if (k0 + TileK < end) words = TileWords.Load(input, weight, s, TX, TY, row0, col0, k0 + TileK);
            }
            else
            {
                Stage(input, weight, s, As.Cast<float>(), Bs.Cast<float>(), TX, TY, row0, col0, k0);
                Group.Barrier();
            }
            for (var q = 0; q < TileK / 4; q++)
            {
                // Four inputs of each of the thread's rows, then four steps of the sum, in order of k. Each index is a view
                // fixed for the tile plus a multiple of the loop counter, so the compiler can fold it into the load.
                Float4 a0 = aRows[q], a1 = aRows[APitch / 4 + q], a2 = aRows[2 * APitch / 4 + q], a3 = aRows[3 * APitch / 4 + q];
                var b = 4 * q * BPitch4;
                chunk.Update(a0.X, a1.X, a2.X, a3.X, bLo[b], bHi[b]);
                b += BPitch4;
                chunk.Update(a0.Y, a1.Y, a2.Y, a3.Y, bLo[b], bHi[b]);
                b += BPitch4;
                chunk.Update(a0.Z, a1.Z, a2.Z, a3.Z, bLo[b], bHi[b]);
                b += BPitch4;
                chunk.Update(a0.W, a1.W, a2.W, a3.W, bLo[b], bHi[b]);
            }
            Group.Barrier();
            // A tile is a chunk; zero padding beyond IC adds nothing to the last one.
            if (chunkSums)
            {
                var at = k0 / TileK * s.N * s.OC;
                StoreSums(output, s, at, row0 + r, col0 + c, col0 + c2, chunk);
                chunk = default;
            }
            else total.AddAndClear(ref chunk);
        }
        if (chunkSums) return;

        Store(output, s, row0 + r, col0 + c, total.R00, total.R01, total.R02, total.R03);
        Store(output, s, row0 + r, col0 + c2, total.R04, total.R05, total.R06, total.R07);
        Store(output, s, row0 + r + 1, col0 + c, total.R10, total.R11, total.R12, total.R13);
        Store(output, s, row0 + r + 1, col0 + c2, total.R14, total.R15, total.R16, total.R17);
        Store(output, s, row0 + r + 2, col0 + c, total.R20, total.R21, total.R22, total.R23);
        Store(output, s, row0 + r + 2, col0 + c2, total.R24, total.R25, total.R26, total.R27);
        Store(output, s, row0 + r + 3, col0 + c, total.R30, total.R31, total.R32, total.R33);
        Store(output, s, row0 + r + 3, col0 + c2, total.R34, total.R35, total.R36, total.R37);
    }

    /// <summary>A thread's 4 × 8 sums as they are (no epilogue) into rows row, …, row + 3 of a (N, OC) matrix at <paramref name="at"/>.</summary>
    private static void StoreSums(ArrayView<float> target, MatMulShape s, int at, int row, int col, int col2, MicroTile t)
    {
        var sums = target.SubView(at, s.N * s.OC);
        StoreRaw(sums, s, row, col, t.R00, t.R01, t.R02, t.R03);
        StoreRaw(sums, s, row, col2, t.R04, t.R05, t.R06, t.R07);
        StoreRaw(sums, s, row + 1, col, t.R10, t.R11, t.R12, t.R13);
        StoreRaw(sums, s, row + 1, col2, t.R14, t.R15, t.R16, t.R17);
        StoreRaw(sums, s, row + 2, col, t.R20, t.R21, t.R22, t.R23);
        StoreRaw(sums, s, row + 2, col2, t.R24, t.R25, t.R26, t.R27);
        StoreRaw(sums, s, row + 3, col, t.R30, t.R31, t.R32, t.R33);
        StoreRaw(sums, s, row + 3, col2, t.R34, t.R35, t.R36, t.R37);
    }

    private static void StoreRaw(ArrayView<float> target, MatMulShape s, int row, int col, float v0, float v1, float v2, float v3)
    {
        if (row >= s.N) return;
        var at = row * s.OC + col;
        if (col < s.OC) target[at] = v0;
        if (col + 1 < s.OC) target[at + 1] = v1;
        if (col + 2 < s.OC) target[at + 2] = v2;
        if (col + 3 < s.OC) target[at + 3] = v3;
    }

    /// <summary>Inputs [k0, k0 + 64) of the tile's rows and the matching weights into shared memory, a float at a time (any IC, OC).</summary>
    private static void Stage(ArrayView<float> input, ArrayView<float> weight, MatMulShape s, ArrayView<float> As, ArrayView<float> Bs,
        int TX, int TY, int row0, int col0, int k0)
    {
        int G = Group.DimX, tid = Group.IdxX, BM = 4 * TY, BN = 8 * TX, BPitch = WeightTilePitch(TX);
        for (var e = tid; e < BM * TileK; e += G)
        {
            int m = e / TileK, kk = e % TileK, row = row0 + m, k = k0 + kk;
            As[m * APitch + kk] = row < s.N && k < s.IC ? input[row * s.IC + k] : 0f;
        }
        for (var e = tid; e < TileK * BN; e += G)
        {
            // Conv1D: a weight row is contiguous along the outputs; transposed: along the inputs.
            int kk = s.Transposed != 0 ? e % TileK : e / BN;
            int n = s.Transposed != 0 ? e / TileK : e % BN;
            int col = col0 + n, k = k0 + kk;
            Bs[kk * BPitch + n] = col < s.OC && k < s.IC
                ? weight[s.Transposed != 0 ? col * s.IC + k : k * s.OC + col]
                : 0f;
        }
    }

    /// <summary>
    /// Matrix-vector products for few rows (decoding) with a Conv1D weight, split over the inputs across the whole
    /// GPU. A work item is a block of <see cref="MaxWarp"/> consecutive columns and a slab of consecutive chunks, one
    /// chunk per warp of the group; lanes take columns (consecutive lanes read consecutive weights: coalesced). Each
    /// chunk sum goes to <paramref name="partials"/> (N, chunks, OC); the group that finishes a column block's last
    /// slab (a ticket per block, taken after a device-wide fence) adds the chunk sums in order to the bias and
    /// applies the epilogue, and resets the ticket for the next launch. So no group waits for another and the sum
    /// keeps the canonical order whichever group finishes last.
    /// </summary>
    /// <remarks>
    /// With <see cref="MatMulShape.Normalize"/> the input is first layer-normalized (the block's ln_1 or ln_2) with
    /// <see cref="LayerNormKernel.Statistics"/> in a group of the LayerNorm kernel's size, so the values are those
    /// <see cref="LayerNormKernel.Forward"/> computes; the groups of column block 0 also store them in
    /// <paramref name="normalized"/>. A group stages its slab of the (normalized) input rows in shared memory.
    /// </remarks>
    public static void MatVec(ArrayView<float> output, ArrayView<float> normalized, ArrayView<float> input,
        ArrayView<float> normWeight, ArrayView<float> normBias, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> partials, ArrayView<int> tickets, MatMulShape s)
    {
        var xs = SharedMemory.Allocate<float>(MaxMatVecRows * MaxSlabChunks * Chunk);
        var stats = SharedMemory.Allocate<float>(2 * MaxMatVecRows);
        var scratch = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        var scratch4 = SharedMemory.Allocate<Float4>(Reductions.MaxWarpsPerGroup);
        var ticket = SharedMemory.Allocate<int>(1);
        int tid = Group.IdxX, G = Group.DimX, warps = G / Warp.WarpSize;
        int chunks = (s.IC + Chunk - 1) / Chunk, slabs = (chunks + warps - 1) / warps, blocks = (s.OC + MaxWarp - 1) / MaxWarp;

        for (var item = Grid.IdxX; item < blocks * slabs; item += Grid.DimX)
        {
            int block = item % blocks, slab = item / blocks, chunk = slab * warps + Warp.WarpIdx;
            int k0 = slab * warps * Chunk, width = XMath.Min(s.IC, k0 + warps * Chunk) - k0;

            // The weights of this lane's first column are requested first, so that their latency passes while the
            // group computes the statistics and stages the inputs (the loads complete in registers across the barriers).
            var firstColumn = block * MaxWarp + Warp.LaneIdx;
            var preloaded = chunk < chunks && firstColumn < s.OC && (chunk + 1) * Chunk <= s.IC;
            var first = preloaded ? WholeChunk.Load(weight, chunk * Chunk * s.OC + firstColumn, s.OC) : default;

            // Every group normalizes the rows it reads the same way: it computes the statistics of all N rows once.
            if (s.Normalize != 0 && item == Grid.IdxX) RowStatisticsOfAll(input, s, stats, scratch, scratch4);

            for (var e = tid; e < s.N * width; e += G)
            {
                int row = e / width, k = k0 + e % width;
                xs[row * MaxSlabChunks * Chunk + k - k0] = StagedInput(input, normWeight, normBias, normalized, stats, s, row, k, block == 0);
            }
            Group.Barrier();

            SlabChunk(weight, partials, s, xs, chunks, block * MaxWarp, chunk, k0, preloaded, first);
            // Every thread's partial sums are visible device-wide before the group takes its ticket.
            MemoryFence.DeviceLevel();
            Group.Barrier();
            if (tid == 0) ticket[0] = Atomic.Add(ref tickets[block], 1);
            Group.Barrier();
            if (ticket[0] == slabs - 1)
            {
                MemoryFence.DeviceLevel();
                AddChunkSums(output, bias, partials, s, xs, chunks, block);
                if (tid == 0) tickets[block] = 0;
            }
            // The staged inputs and the ticket may be overwritten by the next item only after they are read.
            Group.Barrier();
        }
    }

    /// <summary>Most inputs (rows × IC) <see cref="MatVecColumns"/> stages in shared memory: 32 KB.</summary>
    public const int MaxColumnInputs = 8192;

    /// <summary>Most chunk sums (rows × chunks × columns) <see cref="MatVecColumns"/> keeps in shared memory: 8 KB.</summary>
    public const int MaxColumnSums = 2048;

    /// <summary>
    /// Matrix-vector products for few rows (decoding) with a Conv1D weight, a group per block of
    /// <paramref name="columns"/> consecutive columns over all the inputs: no partial sums leave the group, so there is
    /// no second phase (no fence, ticket or reload of partial sums, which <see cref="MatVec"/> needs). Thread e of the
    /// group takes (chunk e / columns, column e mod columns), then e + G, and so on: consecutive lanes read consecutive
    /// columns (runs of 4 · columns bytes, several chunks' rows per load instruction), a pair's 64 weights in flight
    /// together, the first pair's requested before anything else. The chunk sums go to shared memory, and a thread per
    /// (row, column) adds them in order to the bias: the canonical order of every kernel here.
    /// </summary>
    /// <remarks>
    /// For shapes whose staged inputs fit (<see cref="MaxColumnInputs"/>, <see cref="MaxColumnSums"/>); the launch chooses
    /// 16 columns (a 64-byte run per row) when that still gives every multiprocessor a block, else 8 (32, a whole line of
    /// each row, when <c>NATIVEGPT2_ILGPU_MATVEC_COLUMNS</c> asks for it). The optional
    /// normalization is <see cref="MatVec"/>'s: statistics of every row in each group, in a group of the LayerNorm
    /// kernel's size; column block 0 also stores the normalized rows in <paramref name="normalized"/>. A group given
    /// several blocks (the CPU accelerator runs one group per multiprocessor) stages the inputs once and alternates its
    /// blocks' sums between two halves of shared memory, one barrier a block: on a simulator, where each barrier makes every
    /// OS thread of the group run, that is a third of the barriers of staging and summing each block afresh.
    /// </remarks>
    public static void MatVecColumns(ArrayView<float> output, ArrayView<float> normalized, ArrayView<float> input,
        ArrayView<float> normWeight, ArrayView<float> normBias, ArrayView<float> weight, ArrayView<float> bias,
        MatMulShape s, SpecializedValue<int> columns)
    {
        var xs = SharedMemory.Allocate<float>(MaxColumnInputs);
        var sums = SharedMemory.Allocate<float>(MaxColumnSums);
        var stats = SharedMemory.Allocate<float>(2 * MaxMatVecRows);
        var scratch = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        var scratch4 = SharedMemory.Allocate<Float4>(Reductions.MaxWarpsPerGroup);
        int tid = Group.IdxX, G = Group.DimX, CB = columns.Value;
        int chunks = (s.IC + Chunk - 1) / Chunk, pairs = chunks * CB, blocks = (s.OC + CB - 1) / CB;

        // A group that takes several blocks (a launch of fewer groups than blocks, as on the CPU accelerator) stages the
        // inputs once, with its first block, and its blocks' chunk sums alternate between the two halves of the sums where
        // they fit in one: a block's sums then never overwrite sums still being read, and a block needs one barrier.
        int used = s.N * chunks * CB, half = 2 * used <= MaxColumnSums ? MaxColumnSums / 2 : 0;
        for (int block = Grid.IdxX, turn = 0; block < blocks; block += Grid.DimX, turn++)
        {
            var col0 = block * CB;
            // This thread's first weights are requested before anything else, so that their latency passes while the group
            // computes the statistics and stages the inputs.
            var current = ColumnChunk(weight, s, col0, CB, tid, pairs);
            var at = (turn & 1) * half;

            if (turn == 0)
            {
                if (s.Normalize != 0) RowStatisticsOfAll(input, s, stats, scratch, scratch4);
                for (var e = tid; e < s.N * s.IC; e += 4 * G)
                    FourInputs.Load(input, normWeight, normBias, s, e, G).Store(xs, normalized, stats, s, e, G, block == 0);
                Group.Barrier();
            }
            // Sums in one place for every block: the previous block's are read before these overwrite them.
            else if (half == 0) Group.Barrier();

            for (var e = tid; e < pairs; e += G)
            {
                // Later pairs (inputs of more than G / CB chunks) load their weights here: holding the next pair's in
                // registers too would leave room for one group per multiprocessor instead of two.
                if (e != tid) current = ColumnChunk(weight, s, col0, CB, e, pairs);
                int chunk = e / CB, j = e % CB, col = col0 + j, k = chunk * Chunk, count = XMath.Min(s.IC, k + Chunk) - k;
                for (var row = 0; row < s.N; row++)
                {
                    var sum = col >= s.OC ? 0f
                        : count == Chunk ? current.Dot(xs, row * s.IC + k)
                        : Sixteen.DotInOrder(xs, row * s.IC + k, weight, k * s.OC + col, s.OC, count);
                    sums[at + (row * chunks + chunk) * CB + j] = sum;
                }
            }
            Group.Barrier();

            for (var e = tid; e < s.N * CB; e += G)
            {
                int row = e / CB, j = e % CB, col = col0 + j;
                if (col >= s.OC) continue;
                var total = AddInOrder(s.HasBias != 0 ? bias[col] : 0f, sums, at + row * chunks * CB + j, CB, chunks);
                output[row * s.OC + col] = Epilogue(total, s.Epilogue, output[row * s.OC + col]);
            }
        }
    }

    /// <summary>
    /// Matrix-vector products for few rows (decoding) with a Conv1D weight, read along its rows: a warp takes a block of
    /// 4·W consecutive columns (W the warp size: 128 columns on a GPU) and one chunk of inputs, each lane four adjacent
    /// columns as one 16-byte word, so that each load instruction of the warp reads 16·W contiguous bytes of one weight row
    /// (512 on a GPU; the column-block kernels read runs of 32 to 128 bytes, rows apart). Sixteen inputs' words are
    /// requested before the sums that need them. Each chunk sum goes to <paramref name="partials"/> (N, chunks, OC), as
    /// <see cref="MatVec"/>'s do, and <see cref="AddColumnChunkSums"/> then adds them in order to the bias and applies the
    /// epilogue: the canonical order.
    /// </summary>
    /// <remarks>
    /// The warp stages its chunk of the N input rows in shared memory, normalized with <see cref="MatVec"/>'s statistics
    /// when the projection normalizes (every group computes them for all rows, in a group of the LayerNorm kernel's size);
    /// the warps of column block 0 also store the normalized inputs in <paramref name="normalized"/>. With more than one
    /// row, the rows after the first read the chunk's weights again, from the caches. OC need not be a multiple of 4: the
    /// words are then read and stored a float at a time.
    /// </remarks>
    public static void MatVecWords(ArrayView<float> partials, ArrayView<float> normalized, ArrayView<float> input,
        ArrayView<float> normWeight, ArrayView<float> normBias, ArrayView<float> weight, MatMulShape s)
    {
        var xs = SharedMemory.Allocate<float>(MaxSlabChunks * MaxMatVecRows * Chunk);
        var stats = SharedMemory.Allocate<float>(2 * MaxMatVecRows);
        var scratch = SharedMemory.Allocate<float>(Reductions.MaxWarpsPerGroup);
        var scratch4 = SharedMemory.Allocate<Float4>(Reductions.MaxWarpsPerGroup);
        int W = Warp.WarpSize, warps = Group.DimX / W, lane = Warp.LaneIdx;
        int chunks = (s.IC + Chunk - 1) / Chunk, blocks = (s.OC + 4 * W - 1) / (4 * W);
        var aligned = s.OC % 4 == 0;
        var mine = xs.SubView(Warp.WarpIdx * MaxMatVecRows * Chunk, MaxMatVecRows * Chunk);
        // Items are uniform across a warp: (chunk, column block), the blocks of one chunk on neighbouring warps. Each item's
        // first sixteen inputs' words are requested first, the first item's even before the group computes the statistics:
        // their latency passes meanwhile, and while the inputs are staged.
        int first = Grid.IdxX * warps + Warp.WarpIdx, items = blocks * chunks;
        var words = FirstWords(weight, s, first, items, blocks, aligned);
        if (s.Normalize != 0) RowStatisticsOfAll(input, s, stats, scratch, scratch4);

        for (var item = first; item < items; item += Grid.DimX * warps)
        {
            int block = item % blocks, chunk = item / blocks, k = chunk * Chunk, count = XMath.Min(Chunk, s.IC - k);
            var col = block * 4 * W + 4 * lane;
            var whole = count == Chunk && col < s.OC;
            if (item != first) words = FirstWords(weight, s, item, items, blocks, aligned);
            // The previous item's inputs are read before they are overwritten.
            Warp.Barrier();
            for (var e = lane; e < s.N * count; e += W)
            {
                int row = e / count, i = e % count;
                mine[row * Chunk + i] = StagedInput(input, normWeight, normBias, normalized, stats, s, row, k + i, block == 0);
            }
            Warp.Barrier();
            // Lanes past the matrix's columns wait at the next item's first barrier, as the others will.
            for (var row = 0; col < s.OC && row < s.N; row++)
            {
                var sum = default(Float4);
                if (whole)
                {
                    for (var i = 0; i < Chunk; i += 16)
                    {
                        if (row > 0 || i > 0) words = SixteenWords.Load(weight, s, k + i, col, aligned);
                        sum = words.Dot(sum, mine, row * Chunk + i);
                    }
                }
                else
                {
                    for (var i = 0; i < count; i++)
                        sum = SixteenWords.MulAdd(mine[row * Chunk + i], SixteenWords.Word(weight, s, k + i, col, aligned), sum);
                }
                SixteenWords.Store(partials, s, (row * chunks + chunk) * s.OC + col, col, sum, aligned);
            }
        }
    }

    /// <summary>This lane's words of the first sixteen inputs of item <paramref name="item"/> of <see cref="MatVecWords"/>, or nothing past the items, the columns or the last whole chunk.</summary>
    private static SixteenWords FirstWords(ArrayView<float> weight, MatMulShape s, int item, int items, int blocks, bool aligned)
    {
        int chunk = item / blocks, col = item % blocks * 4 * Warp.WarpSize + 4 * Warp.LaneIdx;
        return item < items && (chunk + 1) * Chunk <= s.IC && col < s.OC ? SixteenWords.Load(weight, s, chunk * Chunk, col, aligned) : default;
    }

    /// <summary>
    /// The second launch of <see cref="MatVecWords"/>: a group per block of <see cref="MaxWarp"/> columns copies the block's
    /// chunk sums (N, chunks, OC) into shared memory, all its threads with eight loads in flight each, and a thread per
    /// (row, column) adds them in order to the bias and applies the epilogue (<see cref="MatVec"/>'s last step). A thread per
    /// output reading its own sums, as <see cref="AddChunkSumsInOrder"/> does, would wait for 1.5B's 100 chunk sums of the
    /// MLP's projection eight at a time: thirteen memory latencies.
    /// </summary>
    public static void AddColumnChunkSums(ArrayView<float> output, ArrayView<float> bias, ArrayView<float> partials, MatMulShape s)
    {
        var xs = SharedMemory.Allocate<float>(MaxMatVecRows * MaxSlabChunks * Chunk);
        int chunks = (s.IC + Chunk - 1) / Chunk, blocks = (s.OC + MaxWarp - 1) / MaxWarp;
        // AddChunkSums ends with a barrier: the next block's sums overwrite this one's only once they are read.
        for (var block = Grid.IdxX; block < blocks; block += Grid.DimX)
            AddChunkSums(output, bias, partials, s, xs, chunks, block);
    }

    /// <summary>
    /// The mean and 1 / √(var + eps) of each of the N input rows into stats (2·row, 2·row + 1), as the LayerNorm kernel
    /// computes them (four rows at a time while four are left, as it does); every thread of the group must call it.
    /// </summary>
    private static void RowStatisticsOfAll(ArrayView<float> input, MatMulShape s, ArrayView<float> stats, ArrayView<float> scratch,
        ArrayView<Float4> scratch4)
    {
        var row = 0;
        for (; row + 4 <= s.N; row += 4)
        {
            var four = FourRowStatistics.Of(input, row * s.IC, s.IC, s.IC, s.Epsilon, scratch4);
            if (Group.IdxX == 0)
            {
                for (var i = 0; i < 4; i++) StoreStatistics(stats, row + i, four.Row(i));
            }
        }
        for (; row < s.N; row++)
        {
            var rowStats = LayerNormKernel.Statistics(input, row * s.IC, s.IC, s.Epsilon, scratch);
            if (Group.IdxX == 0) StoreStatistics(stats, row, rowStats);
        }
        Group.Barrier();
    }

    private static void StoreStatistics(ArrayView<float> stats, int row, RowStatistics rowStats)
    {
        stats[2 * row] = rowStats.Mean;
        stats[2 * row + 1] = rowStats.Rstd;
    }

    /// <summary>Row <paramref name="row"/>'s statistics as <see cref="RowStatisticsOfAll"/> stored them.</summary>
    public static RowStatistics StoredStatistics(ArrayView<float> stats, int row) => new(stats[2 * row], stats[2 * row + 1]);

    /// <summary>
    /// Input (row, k) as a decoding projection stages it: layer-normalized with the rows' statistics when the projection
    /// normalizes, and then also stored in <paramref name="normalized"/> when <paramref name="storeNormalized"/>.
    /// </summary>
    private static float StagedInput(ArrayView<float> input, ArrayView<float> normWeight, ArrayView<float> normBias, ArrayView<float> normalized,
        ArrayView<float> stats, MatMulShape s, int row, int k, bool storeNormalized)
    {
        var x = input[row * s.IC + k];
        if (s.Normalize == 0) return x;
        x = LayerNormKernel.Normalize(x, StoredStatistics(stats, row), normWeight[k], normBias[k]);
        if (storeNormalized) normalized[row * s.IC + k] = x;
        return x;
    }

    /// <summary>The 64 weights of pair e (chunk e / CB, column col0 + e mod CB) of a column block, or nothing for a pair past the block, the matrix's columns or its last whole chunk.</summary>
    private static WholeChunk ColumnChunk(ArrayView<float> weight, MatMulShape s, int col0, int CB, int e, int pairs)
    {
        int chunk = e / CB, col = col0 + e % CB;
        return e < pairs && col < s.OC && (chunk + 1) * Chunk <= s.IC ? WholeChunk.Load(weight, chunk * Chunk * s.OC + col, s.OC) : default;
    }

    /// <summary>
    /// The last group of column block <paramref name="block"/>: each output's chunk sums added in order to its bias, then the
    /// epilogue. The group first copies as many chunk sums of the block as <paramref name="xs"/> holds into it, all its
    /// threads together with eight loads in flight each (coalesced: a chunk's sums for the block's columns are adjacent),
    /// and then a thread per (row, column) adds them from there; one after another, each load would wait for the
    /// previous sum, and the kernel's last step would be a chain of as many latencies as there are chunks.
    /// </summary>
    private static void AddChunkSums(ArrayView<float> output, ArrayView<float> bias, ArrayView<float> partials, MatMulShape s,
        ArrayView<float> xs, int chunks, int block)
    {
        int tid = Group.IdxX, G = Group.DimX;
        var perPass = MaxMatVecRows * MaxSlabChunks * Chunk / (s.N * MaxWarp);
        // A group smaller than the block's outputs (the CPU accelerator's) takes them in turns.
        for (var e0 = 0; e0 < s.N * MaxWarp; e0 += G)
        {
            int e = e0 + tid, row = e / MaxWarp, lane = e % MaxWarp, col = block * MaxWarp + lane;
            var mine = e < s.N * MaxWarp && col < s.OC;
            var total = mine && s.HasBias != 0 ? bias[col] : 0f;
            for (var c0 = 0; c0 < chunks; c0 += perPass)
            {
                var count = XMath.Min(perPass, chunks - c0);
                var n = s.N * count * MaxWarp;
                for (var i = tid; i < n; i += 8 * G)
                {
                    var p = new EightChunkSums();
                    p.Load(partials, i, G, n, count, chunks, c0, block, s.OC);
                    p.Store(xs, i, G, n);
                }
                Group.Barrier();
                if (mine) total = AddInOrder(total, xs, row * count * MaxWarp + lane, MaxWarp, count);
                // The sums are read before the next pass overwrites them.
                Group.Barrier();
            }
            if (mine) output[row * s.OC + col] = Epilogue(total, s.Epilogue, output[row * s.OC + col]);
        }
    }

    /// <summary>
    /// This warp's chunk of the slab (if it has one): for every row, each of its lanes' columns summed over the chunk's
    /// inputs. A lane's first column uses the weights it loaded at the start (<paramref name="preloaded"/>).
    /// </summary>
    private static void SlabChunk(ArrayView<float> weight, ArrayView<float> partials, MatMulShape s, ArrayView<float> xs,
        int chunks, int col0, int chunk, int k0, bool preloaded, WholeChunk first)
    {
        if (chunk >= chunks) return;
        int k = chunk * Chunk, count = XMath.Min(s.IC, k + Chunk) - k;
        for (var lane = Warp.LaneIdx; lane < MaxWarp; lane += Warp.WarpSize)
        {
            var col = col0 + lane;
            if (col >= s.OC) break;
            var mine = preloaded && lane == Warp.LaneIdx;
            for (var row = 0; row < s.N; row++)
            {
                var x = row * MaxSlabChunks * Chunk + k - k0;
                var sum = mine ? first.Dot(xs, x) : ChunkSum(xs, x, weight, k * s.OC + col, s.OC, count);
                partials[(row * chunks + chunk) * s.OC + col] = sum;
            }
        }
    }

    /// <summary>
    /// Σ_i x[i] · w[i · stride] for i in [0, count), summed in order from zero. A whole chunk's 64 weight loads are issued
    /// before the sums that need them: a decoding projection is a few megabytes, so its time is a chain of memory
    /// latencies, and this makes the chain one latency long per chunk.
    /// </summary>
    private static float ChunkSum(ArrayView<float> xs, int x, ArrayView<float> weight, int w, int stride, int count) =>
        count == Chunk ? WholeChunk.Load(weight, w, stride).Dot(xs, x) : Sixteen.DotInOrder(xs, x, weight, w, stride, count);

    /// <summary>
    /// Matrix-vector product for few rows with a transposed weight (OC, IC), the head over wte: a warp takes W
    /// consecutive weight rows (W the warp size), one per lane. Chunk by chunk, the warp copies the W rows' next
    /// <see cref="Chunk"/> inputs into shared memory with coalesced reads (consecutive lanes, consecutive addresses
    /// of one row), and then each lane sums its own row from there, in order.
    /// </summary>
    public static void MatVecTransposed(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, MatMulShape s)
    {
        var tiles = SharedMemory.Allocate<float>(MaxHeadWarps * MaxWarp * HeadPitch);
        int W = Warp.WarpSize, warps = Group.DimX / W, lane = Warp.LaneIdx;
        var slice = tiles.SubView(Warp.WarpIdx * MaxWarp * HeadPitch, MaxWarp * HeadPitch);
        var blocks = (s.OC + W - 1) / W;
        var aligned = s.IC % 4 == 0;
        // A warp of at most half the largest warp's lanes (a simulator's) has room for two tiles in its slice, and stages
        // each chunk into the other one: the chunk before is then never overwritten while being read, and the barrier
        // that waits for its reads goes. On the CPU accelerator each barrier makes the warp's OS threads take turns.
        var buffers = 2 * W <= MaxWarp ? 2 : 1;
        var turn = 0;
        // Items are uniform across a warp: (row block, input row), the input rows of a block side by side.
        for (var item = Grid.IdxX * warps + Warp.WarpIdx; item < blocks * s.N; item += Grid.DimX * warps)
        {
            int n = item % s.N, r0 = item / s.N * W, row = r0 + lane;
            var total = 0f;
            // Rows in whole 16-byte words: a lane holds sixteen words of the next chunk, requested before the current
            // chunk's sums. Otherwise the chunk is staged a float at a time.
            var words = aligned ? HeadChunk.Load(weight, s, r0, 0) : default;
            for (var k0 = 0; k0 < s.IC; k0 += Chunk, turn++)
            {
                var count = XMath.Min(Chunk, s.IC - k0);
                var tile = slice.SubView(turn % buffers * W * HeadPitch, W * HeadPitch);
                // With one tile, the previous chunk's rows are read before they are overwritten.
                if (buffers == 1) Warp.Barrier();
                if (aligned) words.Store(tile);
                else
                {
                    for (var r = 0; r < W; r += 16)
                        StageRows(tile, weight, s, r0, r, W, k0, count, lane);
                }
                Warp.Barrier();
                if (aligned && k0 + Chunk < s.IC) words = HeadChunk.Load(weight, s, r0, k0 + Chunk);
                total += Sixteen.DotInOrder(input, n * s.IC + k0, tile, lane * HeadPitch, 1, count);
            }
            if (row < s.OC) output[n * s.OC + row] = total;
        }
    }

    /// <summary>
    /// Rows r0 + [r, r + 16) (those below the warp's W and OC) of inputs [k0, k0 + count) into the tile: per lane, inputs j
    /// and j + W of sixteen rows, thirty-two loads in flight before the stores.
    /// </summary>
    private static void StageRows(ArrayView<float> tile, ArrayView<float> weight, MatMulShape s, int r0, int r, int W, int k0, int count, int lane)
    {
        for (var j = lane; j < count; j += 2 * W)
        {
            var second = j + W < count;
            var a = ColumnOfRows(weight, s, r0, r, W, k0 + j);
            var b = second ? ColumnOfRows(weight, s, r0, r, W, k0 + j + W) : default;
            StoreColumn(tile, a, r, W, j);
            if (second) StoreColumn(tile, b, r, W, j + W);
        }
    }

    /// <summary>Input k of rows r0 + [r, r + 16).</summary>
    private static Sixteen ColumnOfRows(ArrayView<float> weight, MatMulShape s, int r0, int r, int W, int k)
    {
        var x = new Sixteen();
        x.V0 = Row(weight, s, r0, r + 0, W, k);
        x.V1 = Row(weight, s, r0, r + 1, W, k);
        x.V2 = Row(weight, s, r0, r + 2, W, k);
        x.V3 = Row(weight, s, r0, r + 3, W, k);
        x.V4 = Row(weight, s, r0, r + 4, W, k);
        x.V5 = Row(weight, s, r0, r + 5, W, k);
        x.V6 = Row(weight, s, r0, r + 6, W, k);
        x.V7 = Row(weight, s, r0, r + 7, W, k);
        x.V8 = Row(weight, s, r0, r + 8, W, k);
        x.V9 = Row(weight, s, r0, r + 9, W, k);
        x.V10 = Row(weight, s, r0, r + 10, W, k);
        x.V11 = Row(weight, s, r0, r + 11, W, k);
        x.V12 = Row(weight, s, r0, r + 12, W, k);
        x.V13 = Row(weight, s, r0, r + 13, W, k);
        x.V14 = Row(weight, s, r0, r + 14, W, k);
        x.V15 = Row(weight, s, r0, r + 15, W, k);
        return x;
    }

    /// <summary>Column j of tile rows [r, r + 16), those below W.</summary>
    private static void StoreColumn(ArrayView<float> tile, Sixteen x, int r, int W, int j)
    {
        if (r + 0 < W) tile[(r + 0) * HeadPitch + j] = x.V0;
        if (r + 1 < W) tile[(r + 1) * HeadPitch + j] = x.V1;
        if (r + 2 < W) tile[(r + 2) * HeadPitch + j] = x.V2;
        if (r + 3 < W) tile[(r + 3) * HeadPitch + j] = x.V3;
        if (r + 4 < W) tile[(r + 4) * HeadPitch + j] = x.V4;
        if (r + 5 < W) tile[(r + 5) * HeadPitch + j] = x.V5;
        if (r + 6 < W) tile[(r + 6) * HeadPitch + j] = x.V6;
        if (r + 7 < W) tile[(r + 7) * HeadPitch + j] = x.V7;
        if (r + 8 < W) tile[(r + 8) * HeadPitch + j] = x.V8;
        if (r + 9 < W) tile[(r + 9) * HeadPitch + j] = x.V9;
        if (r + 10 < W) tile[(r + 10) * HeadPitch + j] = x.V10;
        if (r + 11 < W) tile[(r + 11) * HeadPitch + j] = x.V11;
        if (r + 12 < W) tile[(r + 12) * HeadPitch + j] = x.V12;
        if (r + 13 < W) tile[(r + 13) * HeadPitch + j] = x.V13;
        if (r + 14 < W) tile[(r + 14) * HeadPitch + j] = x.V14;
        if (r + 15 < W) tile[(r + 15) * HeadPitch + j] = x.V15;
    }

    /// <summary>weight[r0 + r, k], or 0 past the warp's rows or the matrix (a row the tile holds but no lane reads).</summary>
    private static float Row(ArrayView<float> weight, MatMulShape s, int r0, int r, int W, int k) =>
        r < W && r0 + r < s.OC ? weight[(r0 + r) * s.IC + k] : 0f;

    private static float Bias(ArrayView<float> bias, int col, int OC) => col < OC ? bias[col] : 0f;

    private static void Store(ArrayView<float> output, MatMulShape s, int row, int col, float v0, float v1, float v2, float v3)
    {
        if (row >= s.N) return;
        var at = row * s.OC + col;
        if (col < s.OC) output[at] = Epilogue(v0, s.Epilogue, output[at]);
        if (col + 1 < s.OC) output[at + 1] = Epilogue(v1, s.Epilogue, output[at + 1]);
        if (col + 2 < s.OC) output[at + 2] = Epilogue(v2, s.Epilogue, output[at + 2]);
        if (col + 3 < s.OC) output[at + 3] = Epilogue(v3, s.Epilogue, output[at + 3]);
    }

    /// <summary>What is stored: the value, an activation of it, or it added to what the output holds (the residual stream).</summary>
    private static float Epilogue(float value, int kind, float existing) => kind switch
    {
        MatMulShape.Gelu => Gelu(value),
        MatMulShape.Residual => existing + value,
        MatMulShape.GeluErf => GeluErf(value),
        MatMulShape.Relu => XMath.Max(value, 0f),
        MatMulShape.Silu => value / (1f + XMath.Exp(-value)),
        MatMulShape.QuickGelu => value / (1f + XMath.Exp(-1.702f * value)),
        _ => value,
    };

    /// <summary>
    /// x·Φ(x) = max(x, 0) − 0.5·|x|·erfc(|x|/√2), as the CPU's <c>VectorMath.GeluErf</c> computes it (erfc by Numerical
    /// Recipes' erfcc, relative error below 1.2e-7; |x| capped at 16, where the term is below 1e-37).
    /// </summary>
    public static float GeluErf(float x)
    {
        var m = XMath.Min(XMath.Abs(x), 16f);
        var a = m * 0.70710678118654752f;
        var t = 1f / (1f + 0.5f * a);
        // Horner's rule, each step fused (Fused): every kernel's epilogue computes the same bits.
        var p = Fused.MulAdd(t, 0.17087277f, -0.82215223f);
        p = Fused.MulAdd(t, p, 1.48851587f);
        p = Fused.MulAdd(t, p, -1.13520398f);
        p = Fused.MulAdd(t, p, 0.27886807f);
        p = Fused.MulAdd(t, p, -0.18628806f);
        p = Fused.MulAdd(t, p, 0.09678418f);
        p = Fused.MulAdd(t, p, 0.37409196f);
        p = Fused.MulAdd(t, p, 1.00002368f);
        p = Fused.MulAdd(t, p, -1.26551223f);
        return XMath.Max(x, 0f) - 0.5f * m * t * XMath.Exp(p - a * a);
    }

    /// <summary>gelu(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the tanh approximation GPT-2 uses.</summary>
    public static float Gelu(float x)
    {
        var u = 0.7978845608028654f * Fused.MulAdd(0.044715f * x * x, x, x);
        // tanh(u) = sign(u)·(1 − 2 / (e^{2|u|} + 1)): no overflow for large |u| (e^{2|u|} = ∞ gives 1).
        var t = 1f - 2f / (XMath.Exp(2f * XMath.Abs(u)) + 1f);
        return 0.5f * x * (1f + (u < 0 ? -t : t));
    }
}

/// <summary>Sizes of one matmul, what it does with its result, and whether it first layer-normalizes its input (epsilon).</summary>
internal readonly struct MatMulShape(int N, int IC, int OC, int epilogue, bool hasBias, bool transposed,
    bool normalize = false, float epsilon = 0f)
{
    public const int Bias = 0;
    public const int Gelu = 1;
    public const int Residual = 2;
    public const int GeluErf = 3;
    public const int Relu = 4;
    public const int Silu = 5;
    public const int QuickGelu = 6;

    public readonly int N = N;
    public readonly int IC = IC;
    public readonly int OC = OC;
    public readonly int Epilogue = epilogue;
    public readonly int HasBias = hasBias ? 1 : 0;
    public readonly int Transposed = transposed ? 1 : 0;
    public readonly int Normalize = normalize ? 1 : 0;
    public readonly float Epsilon = epsilon;
}

/// <summary>A thread's 4 × 8 block of outputs (rows i, columns j), written out because ILGPU does not unroll loops.</summary>
internal struct MicroTile
{
    public float R00, R01, R02, R03, R04, R05, R06, R07;
    public float R10, R11, R12, R13, R14, R15, R16, R17;
    public float R20, R21, R22, R23, R24, R25, R26, R27;
    public float R30, R31, R32, R33, R34, R35, R36, R37;

    /// <summary>Every row starts from the same eight values (the bias of the eight columns).</summary>
    public void SetRows(float b0, float b1, float b2, float b3, float b4, float b5, float b6, float b7)
    {
        R00 = b0; R01 = b1; R02 = b2; R03 = b3; R04 = b4; R05 = b5; R06 = b6; R07 = b7;
        R10 = b0; R11 = b1; R12 = b2; R13 = b3; R14 = b4; R15 = b5; R16 = b6; R17 = b7;
        R20 = b0; R21 = b1; R22 = b2; R23 = b3; R24 = b4; R25 = b5; R26 = b6; R27 = b7;
        R30 = b0; R31 = b1; R32 = b2; R33 = b3; R34 = b4; R35 = b5; R36 = b6; R37 = b7;
    }

    /// <summary>R[i, j] += a[i] · b[j] (fused), b = (lo, hi): one step of the inner sum for 32 outputs.</summary>
    public void Update(float a0, float a1, float a2, float a3, Float4 lo, Float4 hi)
    {
        R00 = Fused.MulAdd(a0, lo.X, R00); R01 = Fused.MulAdd(a0, lo.Y, R01); R02 = Fused.MulAdd(a0, lo.Z, R02); R03 = Fused.MulAdd(a0, lo.W, R03);
        R04 = Fused.MulAdd(a0, hi.X, R04); R05 = Fused.MulAdd(a0, hi.Y, R05); R06 = Fused.MulAdd(a0, hi.Z, R06); R07 = Fused.MulAdd(a0, hi.W, R07);
        R10 = Fused.MulAdd(a1, lo.X, R10); R11 = Fused.MulAdd(a1, lo.Y, R11); R12 = Fused.MulAdd(a1, lo.Z, R12); R13 = Fused.MulAdd(a1, lo.W, R13);
        R14 = Fused.MulAdd(a1, hi.X, R14); R15 = Fused.MulAdd(a1, hi.Y, R15); R16 = Fused.MulAdd(a1, hi.Z, R16); R17 = Fused.MulAdd(a1, hi.W, R17);
        R20 = Fused.MulAdd(a2, lo.X, R20); R21 = Fused.MulAdd(a2, lo.Y, R21); R22 = Fused.MulAdd(a2, lo.Z, R22); R23 = Fused.MulAdd(a2, lo.W, R23);
        R24 = Fused.MulAdd(a2, hi.X, R24); R25 = Fused.MulAdd(a2, hi.Y, R25); R26 = Fused.MulAdd(a2, hi.Z, R26); R27 = Fused.MulAdd(a2, hi.W, R27);
        R30 = Fused.MulAdd(a3, lo.X, R30); R31 = Fused.MulAdd(a3, lo.Y, R31); R32 = Fused.MulAdd(a3, lo.Z, R32); R33 = Fused.MulAdd(a3, lo.W, R33);
        R34 = Fused.MulAdd(a3, hi.X, R34); R35 = Fused.MulAdd(a3, hi.Y, R35); R36 = Fused.MulAdd(a3, hi.Z, R36); R37 = Fused.MulAdd(a3, hi.W, R37);
    }

    /// <summary>this += chunk, then chunk = 0: a finished chunk sum joins the total.</summary>
    public void AddAndClear(ref MicroTile chunk)
    {
        R00 += chunk.R00; R01 += chunk.R01; R02 += chunk.R02; R03 += chunk.R03; R04 += chunk.R04; R05 += chunk.R05; R06 += chunk.R06; R07 += chunk.R07;
        R10 += chunk.R10; R11 += chunk.R11; R12 += chunk.R12; R13 += chunk.R13; R14 += chunk.R14; R15 += chunk.R15; R16 += chunk.R16; R17 += chunk.R17;
        R20 += chunk.R20; R21 += chunk.R21; R22 += chunk.R22; R23 += chunk.R23; R24 += chunk.R24; R25 += chunk.R25; R26 += chunk.R26; R27 += chunk.R27;
        R30 += chunk.R30; R31 += chunk.R31; R32 += chunk.R32; R33 += chunk.R33; R34 += chunk.R34; R35 += chunk.R35; R36 += chunk.R36; R37 += chunk.R37;
        chunk = default;
    }
}

/// <summary>
/// Elements e, e + G, e + 2G and e + 3G of a projection's input rows (those below N · IC), with their channels' LayerNorm
/// weight and bias when the projection normalizes: twelve loads in flight, where one element at a time waited for each.
/// </summary>
internal readonly struct FourInputs(FourChannels x, Float4 weight, Float4 bias)
{
    public static FourInputs Load(ArrayView<float> input, ArrayView<float> normWeight, ArrayView<float> normBias, MatMulShape s, int e, int G)
    {
        var n = s.N * s.IC;
        var x = FourChannels.Load(input, 0, e, G, n);
        return s.Normalize == 0 ? new FourInputs(x, default, default)
            : new FourInputs(x, OfChannels(normWeight, s, e, G), OfChannels(normBias, s, e, G));
    }

    /// <summary>The elements (normalized with the rows' statistics, if the projection normalizes) into xs at their own index, and into normalized too if asked.</summary>
    public void Store(ArrayView<float> xs, ArrayView<float> normalized, ArrayView<float> stats, MatMulShape s, int e, int G, bool storeNormalized)
    {
        Put(xs, normalized, stats, s, e, x.V0, weight.X, bias.X, storeNormalized);
        if (x.Count > 1) Put(xs, normalized, stats, s, e + G, x.V1, weight.Y, bias.Y, storeNormalized);
        if (x.Count > 2) Put(xs, normalized, stats, s, e + 2 * G, x.V2, weight.Z, bias.Z, storeNormalized);
        if (x.Count > 3) Put(xs, normalized, stats, s, e + 3 * G, x.V3, weight.W, bias.W, storeNormalized);
    }

    /// <summary>The LayerNorm weight or bias of the channel of each of elements e, e + G, e + 2G, e + 3G (0 past N · IC).</summary>
    private static Float4 OfChannels(ArrayView<float> values, MatMulShape s, int e, int G) =>
        new(values[e % s.IC], Channel(values, s, e + G), Channel(values, s, e + 2 * G), Channel(values, s, e + 3 * G));

    private static float Channel(ArrayView<float> values, MatMulShape s, int e) => e < s.N * s.IC ? values[e % s.IC] : 0f;

    private static void Put(ArrayView<float> xs, ArrayView<float> normalized, ArrayView<float> stats, MatMulShape s, int e, float x, float weight, float bias,
        bool storeNormalized)
    {
        if (s.Normalize != 0)
        {
            var row = e / s.IC;
            x = LayerNormKernel.Normalize(x, MatMulKernels.StoredStatistics(stats, row), weight, bias);
            if (storeNormalized) normalized[e] = x;
        }
        xs[e] = x;
    }
}

/// <summary>
/// Sixteen consecutive inputs' weights of four adjacent columns of a Conv1D weight, a 16-byte word an input, all in flight
/// together (<see cref="MatMulKernels.MatVecWords"/>); the four columns' sums advance side by side, each in order.
/// </summary>
internal struct SixteenWords
{
    private Float4 _w0, _w1, _w2, _w3, _w4, _w5, _w6, _w7, _w8, _w9, _w10, _w11, _w12, _w13, _w14, _w15;

    /// <summary>Columns [col, col + 4) of inputs [k, k + 16) (all within the matrix's inputs).</summary>
    public static SixteenWords Load(ArrayView<float> weight, MatMulShape s, int k, int col, bool aligned)
    {
        var x = new SixteenWords();
        x._w0 = Word(weight, s, k, col, aligned);
        x._w1 = Word(weight, s, k + 1, col, aligned);
        x._w2 = Word(weight, s, k + 2, col, aligned);
        x._w3 = Word(weight, s, k + 3, col, aligned);
        x._w4 = Word(weight, s, k + 4, col, aligned);
        x._w5 = Word(weight, s, k + 5, col, aligned);
        x._w6 = Word(weight, s, k + 6, col, aligned);
        x._w7 = Word(weight, s, k + 7, col, aligned);
        x._w8 = Word(weight, s, k + 8, col, aligned);
        x._w9 = Word(weight, s, k + 9, col, aligned);
        x._w10 = Word(weight, s, k + 10, col, aligned);
        x._w11 = Word(weight, s, k + 11, col, aligned);
        x._w12 = Word(weight, s, k + 12, col, aligned);
        x._w13 = Word(weight, s, k + 13, col, aligned);
        x._w14 = Word(weight, s, k + 14, col, aligned);
        x._w15 = Word(weight, s, k + 15, col, aligned);
        return x;
    }

    /// <summary>sum + xs[at + i] · w_i for i in [0, 16), in order, each column's sum on its own.</summary>
    public readonly Float4 Dot(Float4 sum, ArrayView<float> xs, int at)
    {
        sum = MulAdd(xs[at], _w0, sum);
        sum = MulAdd(xs[at + 1], _w1, sum);
        sum = MulAdd(xs[at + 2], _w2, sum);
        sum = MulAdd(xs[at + 3], _w3, sum);
        sum = MulAdd(xs[at + 4], _w4, sum);
        sum = MulAdd(xs[at + 5], _w5, sum);
        sum = MulAdd(xs[at + 6], _w6, sum);
        sum = MulAdd(xs[at + 7], _w7, sum);
        sum = MulAdd(xs[at + 8], _w8, sum);
        sum = MulAdd(xs[at + 9], _w9, sum);
        sum = MulAdd(xs[at + 10], _w10, sum);
        sum = MulAdd(xs[at + 11], _w11, sum);
        sum = MulAdd(xs[at + 12], _w12, sum);
        sum = MulAdd(xs[at + 13], _w13, sum);
        sum = MulAdd(xs[at + 14], _w14, sum);
        sum = MulAdd(xs[at + 15], _w15, sum);
        return sum;
    }

    /// <summary>Each column's sum + x · its weight.</summary>
    public static Float4 MulAdd(float x, Float4 w, Float4 sum) =>
        new(Fused.MulAdd(x, w.X, sum.X), Fused.MulAdd(x, w.Y, sum.Y), Fused.MulAdd(x, w.Z, sum.Z), Fused.MulAdd(x, w.W, sum.W));

    /// <summary>weight[k, col + j] for j in [0, 4): one 16-byte load when OC is a multiple of 4, else a float at a time (0 past OC).</summary>
    public static Float4 Word(ArrayView<float> weight, MatMulShape s, int k, int col, bool aligned)
    {
        var at = k * s.OC + col;
        if (aligned) return weight.Cast<Float4>()[at / 4];
        return new(weight[at], col + 1 < s.OC ? weight[at + 1] : 0f, col + 2 < s.OC ? weight[at + 2] : 0f, col + 3 < s.OC ? weight[at + 3] : 0f);
    }

    /// <summary>The four columns' sums into target[at + j], those below OC.</summary>
    public static void Store(ArrayView<float> target, MatMulShape s, int at, int col, Float4 sum, bool aligned)
    {
        if (aligned)
        {
            target.Cast<Float4>()[at / 4] = sum;
            return;
        }
        target[at] = sum.X;
        if (col + 1 < s.OC) target[at + 1] = sum.Y;
        if (col + 2 < s.OC) target[at + 2] = sum.Z;
        if (col + 3 < s.OC) target[at + 3] = sum.W;
    }
}

/// <summary>A chunk's 64 weights of one column in registers: four loads of sixteen, all in flight together.</summary>
internal readonly struct WholeChunk(Sixteen a, Sixteen b, Sixteen c, Sixteen d)
{
    /// <summary>source[at + i · stride] for i in [0, 64).</summary>
    public static WholeChunk Load(ArrayView<float> source, int at, int stride) =>
        new(Sixteen.Load(source, at, stride), Sixteen.Load(source, at + 16 * stride, stride),
            Sixteen.Load(source, at + 32 * stride, stride), Sixteen.Load(source, at + 48 * stride, stride));

    /// <summary>Σ_i xs[x + i] · w_i over the 64 weights, in order from zero.</summary>
    public float Dot(ArrayView<float> xs, int x) => d.Dot(c.Dot(b.Dot(a.Dot(0f, xs, x), xs, x + 16), xs, x + 32), xs, x + 48);
}

/// <summary>
/// Eight chunk sums of one column block in registers, loaded together: elements e, e + G, …, e + 7G of the block's
/// (row, chunk, column) sums for chunks [c0, c0 + count), those below n.
/// </summary>
internal struct EightChunkSums
{
    private float _v0, _v1, _v2, _v3, _v4, _v5, _v6, _v7;

    public void Load(ArrayView<float> partials, int e, int G, int n, int count, int chunks, int c0, int block, int OC)
    {
        _v0 = Sum(partials, e, n, count, chunks, c0, block, OC);
        _v1 = Sum(partials, e + G, n, count, chunks, c0, block, OC);
        _v2 = Sum(partials, e + 2 * G, n, count, chunks, c0, block, OC);
        _v3 = Sum(partials, e + 3 * G, n, count, chunks, c0, block, OC);
        _v4 = Sum(partials, e + 4 * G, n, count, chunks, c0, block, OC);
        _v5 = Sum(partials, e + 5 * G, n, count, chunks, c0, block, OC);
        _v6 = Sum(partials, e + 6 * G, n, count, chunks, c0, block, OC);
        _v7 = Sum(partials, e + 7 * G, n, count, chunks, c0, block, OC);
    }

    /// <summary>target[e + i · G] = value i, for those below n.</summary>
    public readonly void Store(ArrayView<float> target, int e, int G, int n)
    {
        target[e] = _v0;
        if (e + G < n) target[e + G] = _v1;
        if (e + 2 * G < n) target[e + 2 * G] = _v2;
        if (e + 3 * G < n) target[e + 3 * G] = _v3;
        if (e + 4 * G < n) target[e + 4 * G] = _v4;
        if (e + 5 * G < n) target[e + 5 * G] = _v5;
        if (e + 6 * G < n) target[e + 6 * G] = _v6;
        if (e + 7 * G < n) target[e + 7 * G] = _v7;
    }

    /// <summary>Element e of the pass: (row, chunk c0 + c, column) of the block, or 0 past n or the matrix's columns.</summary>
    private static float Sum(ArrayView<float> partials, int e, int n, int count, int chunks, int c0, int block, int OC)
    {
        if (e >= n) return 0f;
        int lane = e % MatMulKernels.MaxWarp, rc = e / MatMulKernels.MaxWarp, row = rc / count, c = c0 + rc % count;
        var col = block * MatMulKernels.MaxWarp + lane;
        return col < OC ? partials[(row * chunks + c) * OC + col] : 0f;
    }
}

/// <summary>
/// A thread's share of the next input and weight tiles of <see cref="MatMulKernels.Tiled"/> (IC a multiple of 4, and OC too
/// for a Conv1D weight, so that no word crosses a row's end), held in registers between the request and the store into shared memory: the
/// input tile's 16-byte words tid + i·G and the weight tile's words tid + i·G, i in [0, 8) (G threads in the group; all
/// of both tiles for a 64 × 64 tile of 128 threads). Words past those (smaller groups) are copied directly when the tile
/// is stored. A Conv1D weight word is four columns of one input, stored as it is; a transposed weight's (the head's
/// table) is four inputs of one column, stored down the tile's column.
/// </summary>
internal struct TileWords
{
    private const int Held = 8;
    private Float4 _a0, _a1, _a2, _a3, _a4, _a5, _a6, _a7;
    private Float4 _b0, _b1, _b2, _b3, _b4, _b5, _b6, _b7;

    /// <summary>Requests the words of the tiles at inputs [k0, k0 + 64).</summary>
    public static TileWords Load(ArrayView<float> input, ArrayView<float> weight, MatMulShape s, int TX, int TY, int row0, int col0, int k0)
    {
        int tid = Group.IdxX, G = Group.DimX;
        var input4 = input.Cast<Float4>();
        var weight4 = weight.Cast<Float4>();
        var w = new TileWords();
        w._a0 = A(input4, s, TY, row0, k0, tid);
        w._a1 = A(input4, s, TY, row0, k0, tid + G);
        w._a2 = A(input4, s, TY, row0, k0, tid + 2 * G);
        w._a3 = A(input4, s, TY, row0, k0, tid + 3 * G);
        w._a4 = A(input4, s, TY, row0, k0, tid + 4 * G);
        w._a5 = A(input4, s, TY, row0, k0, tid + 5 * G);
        w._a6 = A(input4, s, TY, row0, k0, tid + 6 * G);
        w._a7 = A(input4, s, TY, row0, k0, tid + 7 * G);
        w._b0 = B(weight4, s, TX, col0, k0, tid);
        w._b1 = B(weight4, s, TX, col0, k0, tid + G);
        w._b2 = B(weight4, s, TX, col0, k0, tid + 2 * G);
        w._b3 = B(weight4, s, TX, col0, k0, tid + 3 * G);
        w._b4 = B(weight4, s, TX, col0, k0, tid + 4 * G);
        w._b5 = B(weight4, s, TX, col0, k0, tid + 5 * G);
        w._b6 = B(weight4, s, TX, col0, k0, tid + 6 * G);
        w._b7 = B(weight4, s, TX, col0, k0, tid + 7 * G);
        return w;
    }

    /// <summary>The held words into the shared tiles, and the words past them read and stored directly.</summary>
    public readonly void Store(ArrayView<float> input, ArrayView<float> weight, MatMulShape s, ArrayView<Float4> As, ArrayView<Float4> Bs,
        int TX, int TY, int row0, int col0, int k0)
    {
        int tid = Group.IdxX, G = Group.DimX;
        PutA(As, TY, tid, _a0); PutA(As, TY, tid + G, _a1); PutA(As, TY, tid + 2 * G, _a2); PutA(As, TY, tid + 3 * G, _a3);
        PutA(As, TY, tid + 4 * G, _a4); PutA(As, TY, tid + 5 * G, _a5); PutA(As, TY, tid + 6 * G, _a6); PutA(As, TY, tid + 7 * G, _a7);
        PutB(Bs, s, TX, tid, _b0); PutB(Bs, s, TX, tid + G, _b1); PutB(Bs, s, TX, tid + 2 * G, _b2); PutB(Bs, s, TX, tid + 3 * G, _b3);
        PutB(Bs, s, TX, tid + 4 * G, _b4); PutB(Bs, s, TX, tid + 5 * G, _b5); PutB(Bs, s, TX, tid + 6 * G, _b6); PutB(Bs, s, TX, tid + 7 * G, _b7);
        var input4 = input.Cast<Float4>();
        var weight4 = weight.Cast<Float4>();
        for (var e = tid + Held * G; e < InputWords(TY); e += G) PutA(As, TY, e, A(input4, s, TY, row0, k0, e));
        for (var e = tid + Held * G; e < WeightWords(TX); e += G) PutB(Bs, s, TX, e, B(weight4, s, TX, col0, k0, e));
    }

    /// <summary>Words of the input tile: 4·TY rows of 16.</summary>
    private static int InputWords(int TY) => 4 * TY * (MatMulKernels.TileK / 4);

    /// <summary>Words of the weight tile: 64 rows of 2·TX.</summary>
    private static int WeightWords(int TX) => MatMulKernels.TileK * 2 * TX;

    /// <summary>Word e of the input tile: row e / 16, inputs k0 + 4·(e mod 16) + [0, 4); zero past the rows, the inputs or the tile.</summary>
    private static Float4 A(ArrayView<Float4> input4, MatMulShape s, int TY, int row0, int k0, int e)
    {
        int m = e / (MatMulKernels.TileK / 4), row = row0 + m, k = k0 + 4 * (e % (MatMulKernels.TileK / 4));
        return e < InputWords(TY) && row < s.N && k < s.IC ? input4[(row * s.IC + k) / 4] : default;
    }

    /// <summary>
    /// Word e of the weight tile. Conv1D: input k0 + e / (2·TX), columns col0 + 4·(e mod 2·TX) + [0, 4). Transposed: column
    /// col0 + e mod 8·TX, inputs k0 + 4·(e / 8·TX) + [0, 4), so that consecutive threads take consecutive columns and
    /// their stores down the tile's columns fall in different banks. Zero past the columns, the inputs or the tile.
    /// </summary>
    private static Float4 B(ArrayView<Float4> weight4, MatMulShape s, int TX, int col0, int k0, int e)
    {
        if (s.Transposed != 0)
        {
            int column = col0 + e % (8 * TX), input = k0 + 4 * (e / (8 * TX));
            return e < WeightWords(TX) && column < s.OC && input < s.IC ? weight4[(column * s.IC + input) / 4] : default;
        }
        int kk = e / (2 * TX), col = col0 + 4 * (e % (2 * TX)), k = k0 + kk;
        return e < WeightWords(TX) && col < s.OC && k < s.IC ? weight4[(k * s.OC + col) / 4] : default;
    }

    private static void PutA(ArrayView<Float4> As, int TY, int e, Float4 word)
    {
        if (e < InputWords(TY)) As[e / (MatMulKernels.TileK / 4) * (MatMulKernels.APitch / 4) + e % (MatMulKernels.TileK / 4)] = word;
    }

    private static void PutB(ArrayView<Float4> Bs, MatMulShape s, int TX, int e, Float4 word)
    {
        if (e >= WeightWords(TX)) return;
        var pitch = MatMulKernels.WeightTilePitch(TX);
        if (s.Transposed == 0)
        {
            Bs[e / (2 * TX) * (pitch / 4) + e % (2 * TX)] = word;
            return;
        }
        var bs = Bs.Cast<float>();
        int n = e % (8 * TX), k = 4 * (e / (8 * TX));
        bs[k * pitch + n] = word.X;
        bs[(k + 1) * pitch + n] = word.Y;
        bs[(k + 2) * pitch + n] = word.Z;
        bs[(k + 3) * pitch + n] = word.W;
    }
}

/// <summary>
/// A lane's share of a head tile (W weight rows × one chunk of 64 inputs, rows of whole 16-byte words) in registers:
/// words lane + i·W, i in [0, 16), word w being inputs k0 + 4·(w mod 16) + [0, 4) of row r0 + w / 16. Sixteen loads
/// of 16 bytes in flight per lane; each load instruction of the warp reads whole rows' runs of 256 bytes.
/// </summary>
internal struct HeadChunk
{
    private const int RowWords = MatMulKernels.Chunk / 4;
    private Float4 _w0, _w1, _w2, _w3, _w4, _w5, _w6, _w7, _w8, _w9, _w10, _w11, _w12, _w13, _w14, _w15;

    public static HeadChunk Load(ArrayView<float> weight, MatMulShape s, int r0, int k0)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx;
        var weight4 = weight.Cast<Float4>();
        var x = new HeadChunk();
        x._w0 = Word(weight4, s, r0, k0, lane);
        x._w1 = Word(weight4, s, r0, k0, lane + W);
        x._w2 = Word(weight4, s, r0, k0, lane + 2 * W);
        x._w3 = Word(weight4, s, r0, k0, lane + 3 * W);
        x._w4 = Word(weight4, s, r0, k0, lane + 4 * W);
        x._w5 = Word(weight4, s, r0, k0, lane + 5 * W);
        x._w6 = Word(weight4, s, r0, k0, lane + 6 * W);
        x._w7 = Word(weight4, s, r0, k0, lane + 7 * W);
        x._w8 = Word(weight4, s, r0, k0, lane + 8 * W);
        x._w9 = Word(weight4, s, r0, k0, lane + 9 * W);
        x._w10 = Word(weight4, s, r0, k0, lane + 10 * W);
        x._w11 = Word(weight4, s, r0, k0, lane + 11 * W);
        x._w12 = Word(weight4, s, r0, k0, lane + 12 * W);
        x._w13 = Word(weight4, s, r0, k0, lane + 13 * W);
        x._w14 = Word(weight4, s, r0, k0, lane + 14 * W);
        x._w15 = Word(weight4, s, r0, k0, lane + 15 * W);
        return x;
    }

    /// <summary>The words into the warp's tile: row w / 16 at HeadPitch floats a row (a float at a time: the pitch is odd).</summary>
    public readonly void Store(ArrayView<float> tile)
    {
        int W = Warp.WarpSize, lane = Warp.LaneIdx;
        Put(tile, lane, _w0); Put(tile, lane + W, _w1); Put(tile, lane + 2 * W, _w2); Put(tile, lane + 3 * W, _w3);
        Put(tile, lane + 4 * W, _w4); Put(tile, lane + 5 * W, _w5); Put(tile, lane + 6 * W, _w6); Put(tile, lane + 7 * W, _w7);
        Put(tile, lane + 8 * W, _w8); Put(tile, lane + 9 * W, _w9); Put(tile, lane + 10 * W, _w10); Put(tile, lane + 11 * W, _w11);
        Put(tile, lane + 12 * W, _w12); Put(tile, lane + 13 * W, _w13); Put(tile, lane + 14 * W, _w14); Put(tile, lane + 15 * W, _w15);
    }

    /// <summary>Word w of the tile, or zeros past the matrix's rows or inputs (a row or input no lane sums).</summary>
    private static Float4 Word(ArrayView<Float4> weight4, MatMulShape s, int r0, int k0, int w)
    {
        int row = r0 + w / RowWords, k = k0 + 4 * (w % RowWords);
        return row < s.OC && k < s.IC ? weight4[(row * s.IC + k) / 4] : default;
    }

    private static void Put(ArrayView<float> tile, int w, Float4 word)
    {
        var at = w / RowWords * MatMulKernels.HeadPitch + 4 * (w % RowWords);
        tile[at] = word.X;
        tile[at + 1] = word.Y;
        tile[at + 2] = word.Z;
        tile[at + 3] = word.W;
    }
}
