using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// The projections: <c>out = epilogue(input · W + bias)</c> for GPT-2's Conv1D weights W (IC, OC), and
/// <c>out = input · Wᵀ</c> for the head over wte (OC = V, IC = C). Two kernels compute each: a tiled one
/// (shared-memory tiles, a 4 × 4 register micro-tile per thread) for many rows, and a matrix-vector one
/// for decoding (one thread per output column, the input split over warps).
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

    /// <summary>Largest tile side: a 16 × 16 group of threads, each computing 4 × 4 outputs.</summary>
    public const int MaxTile = 64;

    /// <summary>Most chunks the matrix-vector kernel keeps per column (IC up to 8,192 inputs).</summary>
    public const int MaxChunks = 128;

    /// <summary>Widest warp the matrix-vector kernel's shared memory holds.</summary>
    public const int MaxWarp = 32;

    /// <summary>
    /// Tiled matmul: groups of TileX · TileY threads, each group computing tiles of BM = 4 · TileY rows by
    /// BN = 4 · TileX columns, every (grid size)-th tile of the output.
    /// </summary>
    public static void Tiled(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, MatMulShape s)
    {
        // As[k][r] holds input rows k-major, Bs[k][c] weight columns, so a thread reads 4 neighbours of each.
        // Two 64 × 64 tiles are 32 KB, within the 48 KB of shared memory ILGPU allows a group.
        var As = SharedMemory.Allocate<float>(TileK * MaxTile);
        var Bs = SharedMemory.Allocate<float>(TileK * MaxTile);
        int BM = 4 * s.TileY, BN = 4 * s.TileX;
        int tilesAcross = (s.OC + BN - 1) / BN, tiles = tilesAcross * ((s.N + BM - 1) / BM);
        for (var tile = Grid.IdxX; tile < tiles; tile += Grid.DimX)
            Tile(output, input, weight, bias, s, As, Bs, tile / tilesAcross * BM, tile % tilesAcross * BN);
    }

    /// <summary>One BM × BN tile of the output, starting at (row0, col0).</summary>
    private static void Tile(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, MatMulShape s,
        ArrayView<float> As, ArrayView<float> Bs, int row0, int col0)
    {
        int G = Group.DimX, tid = Group.IdxX;
        int tx = tid % s.TileX, ty = tid / s.TileX;
        int BM = 4 * s.TileY, BN = 4 * s.TileX;
        int r = ty * 4, c = tx * 4;

        var chunk = new MicroTile();
        var total = new MicroTile();
        if (s.HasBias != 0) total.SetRows(Bias(bias, col0 + c, s.OC), Bias(bias, col0 + c + 1, s.OC), Bias(bias, col0 + c + 2, s.OC), Bias(bias, col0 + c + 3, s.OC));

        for (var k0 = 0; k0 < s.IC; k0 += TileK)
        {
            for (var e = tid; e < BM * TileK; e += G)
            {
                int m = e / TileK, kk = e % TileK, row = row0 + m, k = k0 + kk;
                As[kk * BM + m] = row < s.N && k < s.IC ? input[row * s.IC + k] : 0f;
            }
            for (var e = tid; e < TileK * BN; e += G)
            {
                // Conv1D: a weight row is contiguous along the outputs; transposed: along the inputs.
                int kk = s.Transposed != 0 ? e % TileK : e / BN;
                int n = s.Transposed != 0 ? e / TileK : e % BN;
                int col = col0 + n, k = k0 + kk;
                Bs[kk * BN + n] = col < s.OC && k < s.IC
                    ? weight[s.Transposed != 0 ? col * s.IC + k : k * s.OC + col]
                    : 0f;
            }
            Group.Barrier();
            for (var kk = 0; kk < TileK; kk++)
            {
                var a = kk * BM + r;
                var b = kk * BN + c;
                chunk.Update(As[a], As[a + 1], As[a + 2], As[a + 3], Bs[b], Bs[b + 1], Bs[b + 2], Bs[b + 3]);
            }
            Group.Barrier();
            // A tile is a chunk; zero padding beyond IC adds nothing to the last one.
            total.AddAndClear(ref chunk);
        }

        Store(output, s, row0 + r, col0 + c, total.R00, total.R01, total.R02, total.R03);
        Store(output, s, row0 + r + 1, col0 + c, total.R10, total.R11, total.R12, total.R13);
        Store(output, s, row0 + r + 2, col0 + c, total.R20, total.R21, total.R22, total.R23);
        Store(output, s, row0 + r + 3, col0 + c, total.R30, total.R31, total.R32, total.R33);
    }

    /// <summary>
    /// Matrix-vector product for few rows (decoding) with a Conv1D weight: a group takes blocks of
    /// <see cref="MaxWarp"/> consecutive columns of one row; lanes take columns (consecutive lanes,
    /// consecutive columns, so reads along a weight row are coalesced) and each warp of the group takes every
    /// (warps)-th chunk of the inputs. The chunk sums meet in shared memory and are added in order.
    /// </summary>
    public static void MatVec(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, MatMulShape s)
    {
        var partial = SharedMemory.Allocate<float>(MaxChunks * MaxWarp);
        var across = (s.OC + MaxWarp - 1) / MaxWarp;
        for (var block = Grid.IdxX; block < across * s.N; block += Grid.DimX)
            Columns(output, input, weight, bias, s, partial, block / across, block % across * MaxWarp);
    }

    /// <summary>Columns [col0, col0 + MaxWarp) of one row.</summary>
    private static void Columns(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, ArrayView<float> bias, MatMulShape s,
        ArrayView<float> partial, int row, int col0)
    {
        int W = Warp.WarpSize, warps = Group.DimX / W, slice = Warp.WarpIdx;
        var chunks = (s.IC + Chunk - 1) / Chunk;
        for (var lane = Warp.LaneIdx; lane < MaxWarp; lane += W)
        {
            var col = col0 + lane;
            if (col >= s.OC) break;
            for (var chunk = slice; chunk < chunks; chunk += warps)
            {
                var sum = 0f;
                var end = XMath.Min(s.IC, (chunk + 1) * Chunk);
                var k = chunk * Chunk;
                var x = row * s.IC;
                // Eight loads in flight before the sums that need them (ILGPU does not unroll); the sum keeps its order.
                for (; k + 8 <= end; k += 8)
                {
                    float w0 = weight[k * s.OC + col], w1 = weight[(k + 1) * s.OC + col], w2 = weight[(k + 2) * s.OC + col], w3 = weight[(k + 3) * s.OC + col];
                    float w4 = weight[(k + 4) * s.OC + col], w5 = weight[(k + 5) * s.OC + col], w6 = weight[(k + 6) * s.OC + col], w7 = weight[(k + 7) * s.OC + col];
                    sum += input[x + k] * w0; sum += input[x + k + 1] * w1; sum += input[x + k + 2] * w2; sum += input[x + k + 3] * w3;
                    sum += input[x + k + 4] * w4; sum += input[x + k + 5] * w5; sum += input[x + k + 6] * w6; sum += input[x + k + 7] * w7;
                }
                for (; k < end; k++) sum += input[x + k] * weight[k * s.OC + col];
                partial[chunk * MaxWarp + lane] = sum;
            }
        }
        Group.Barrier();
        for (var lane = Group.IdxX; lane < MaxWarp; lane += Group.DimX)
        {
            var col = col0 + lane;
            if (col >= s.OC) break;
            var total = s.HasBias != 0 ? bias[col] : 0f;
            for (var chunk = 0; chunk < chunks; chunk++) total += partial[chunk * MaxWarp + lane];
            output[row * s.OC + col] = Epilogue(total, s.Epilogue, output[row * s.OC + col]);
        }
        // The next block may overwrite the partial sums only after they are read.
        Group.Barrier();
    }

    /// <summary>
    /// Matrix-vector product for few rows with a transposed weight (OC, IC), the head over wte: one thread
    /// per output, reading its weight row in order.
    /// </summary>
    public static void MatVecTransposed(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, MatMulShape s)
    {
        for (var i = Grid.GlobalIndex.X; i < s.N * s.OC; i += Grid.DimX * Group.DimX)
            TransposedOutput(output, input, weight, s, i / s.OC, i % s.OC);
    }

    private static void TransposedOutput(ArrayView<float> output, ArrayView<float> input, ArrayView<float> weight, MatMulShape s, int row, int col)
    {
        var total = 0f;
        for (var k0 = 0; k0 < s.IC; k0 += Chunk)
        {
            var sum = 0f;
            var end = XMath.Min(s.IC, k0 + Chunk);
            int x = row * s.IC, w = col * s.IC, k = k0;
            // Eight loads in flight before the sums that need them (ILGPU does not unroll); the sum keeps its order.
            for (; k + 8 <= end; k += 8)
            {
                float w0 = weight[w + k], w1 = weight[w + k + 1], w2 = weight[w + k + 2], w3 = weight[w + k + 3];
                float w4 = weight[w + k + 4], w5 = weight[w + k + 5], w6 = weight[w + k + 6], w7 = weight[w + k + 7];
                sum += input[x + k] * w0; sum += input[x + k + 1] * w1; sum += input[x + k + 2] * w2; sum += input[x + k + 3] * w3;
                sum += input[x + k + 4] * w4; sum += input[x + k + 5] * w5; sum += input[x + k + 6] * w6; sum += input[x + k + 7] * w7;
            }
            for (; k < end; k++) sum += input[x + k] * weight[w + k];
            total += sum;
        }
        output[row * s.OC + col] = total;
    }

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

    /// <summary>What is stored: the value, gelu of it, or it added to what the output holds (the residual stream).</summary>
    private static float Epilogue(float value, int kind, float existing) => kind switch
    {
        MatMulShape.Gelu => Gelu(value),
        MatMulShape.Residual => existing + value,
        _ => value,
    };

    /// <summary>gelu(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the tanh approximation GPT-2 uses.</summary>
    public static float Gelu(float x)
    {
        var u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        // tanh(u) = sign(u)·(1 − 2 / (e^{2|u|} + 1)): no overflow for large |u| (e^{2|u|} = ∞ gives 1).
        var t = 1f - 2f / (XMath.Exp(2f * XMath.Abs(u)) + 1f);
        return 0.5f * x * (1f + (u < 0 ? -t : t));
    }
}

/// <summary>Sizes of one matmul, and what it does with its result.</summary>
internal readonly struct MatMulShape(int N, int IC, int OC, int epilogue, bool hasBias, bool transposed, int tileX, int tileY)
{
    public const int Bias = 0;
    public const int Gelu = 1;
    public const int Residual = 2;

    public readonly int N = N;
    public readonly int IC = IC;
    public readonly int OC = OC;
    public readonly int Epilogue = epilogue;
    public readonly int HasBias = hasBias ? 1 : 0;
    public readonly int Transposed = transposed ? 1 : 0;
    public readonly int TileX = tileX;
    public readonly int TileY = tileY;
}

/// <summary>A thread's 4 × 4 block of outputs, written out because ILGPU does not unroll loops.</summary>
internal struct MicroTile
{
    public float R00, R01, R02, R03, R10, R11, R12, R13, R20, R21, R22, R23, R30, R31, R32, R33;

    /// <summary>Every row starts from the same four values (the bias of the four columns).</summary>
    public void SetRows(float b0, float b1, float b2, float b3)
    {
        R00 = b0; R01 = b1; R02 = b2; R03 = b3;
        R10 = b0; R11 = b1; R12 = b2; R13 = b3;
        R20 = b0; R21 = b1; R22 = b2; R23 = b3;
        R30 = b0; R31 = b1; R32 = b2; R33 = b3;
    }

    /// <summary>R[i, j] += a[i] · b[j]: one step of the inner sum for 16 outputs.</summary>
    public void Update(float a0, float a1, float a2, float a3, float b0, float b1, float b2, float b3)
    {
        R00 += a0 * b0; R01 += a0 * b1; R02 += a0 * b2; R03 += a0 * b3;
        R10 += a1 * b0; R11 += a1 * b1; R12 += a1 * b2; R13 += a1 * b3;
        R20 += a2 * b0; R21 += a2 * b1; R22 += a2 * b2; R23 += a2 * b3;
        R30 += a3 * b0; R31 += a3 * b1; R32 += a3 * b2; R33 += a3 * b3;
    }

    /// <summary>this += chunk, then chunk = 0: a finished chunk sum joins the total.</summary>
    public void AddAndClear(ref MicroTile chunk)
    {
        R00 += chunk.R00; R01 += chunk.R01; R02 += chunk.R02; R03 += chunk.R03;
        R10 += chunk.R10; R11 += chunk.R11; R12 += chunk.R12; R13 += chunk.R13;
        R20 += chunk.R20; R21 += chunk.R21; R22 += chunk.R22; R23 += chunk.R23;
        R30 += chunk.R30; R31 += chunk.R31; R32 += chunk.R32; R33 += chunk.R33;
        chunk = default;
    }
}
