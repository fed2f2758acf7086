using NativeGpt2.Backends;
using NativeGpt2.Ilgpu;
using NativeGpt2.Ilgpu.Kernels;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// The ILGPU backend's tiled matmul in every tile shape an accelerator can run (<see cref="IlgpuBackend.ForcedTiles"/>,
/// what <see cref="IlgpuBackend.TilesVariable"/> sets): the same values as the shape the launch chooses, for Conv1D weights
/// with every epilogue and for the head's transposed table, on shapes with partial tiles and partial chunks; and the same
/// values again with the inputs split into runs of chunks (<see cref="IlgpuBackend.InputSplits"/>), a fixed number of them
/// or by shape (<see cref="IlgpuBackend.SplitFor"/>).
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class IlgpuTileTests
{
    public static TheoryData<string> Accelerators => TestBackends.Ilgpu;

    private static readonly int[] Sides = [8, 16, 32, 64];

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void Every_tile_shape_gives_the_values_of_the_chosen_one(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        var shapes = (from rows in Sides from columns in Sides
                      let tile = new TileShape(rows, columns)
                      where backend.TileProblem(tile) is null
                      select tile).ToArray();
        Assert.True(shapes.Length >= 2, $"{name}: only {shapes.Length} tile shape(s) run here");
        for (var seed = 0; seed < TestBackends.Cases(name, 2); seed++)
        {
            // More rows than the matrix-vector kernels take; inputs in whole 16-byte words (the staged loads) or not.
            var c = Case.Draw(new Random(700 + seed), backend.MatVecRowLimit + 1, 70, 1, 200, 150);
            var what = $"{name} {c}";
            var (chosen, chosenHead) = Project(backend, c);
            foreach (var tile in shapes)
            {
                backend.ForcedTiles = tile;
                try
                {
                    var (output, head) = Project(backend, c);
                    // Every tile sums each output in the same order; on a GPU only the compiler's fusing could differ, and
                    // the kernels fuse explicitly (Fused), so every backend must agree bit for bit.
                    Assert.True(chosen.AsSpan().SequenceEqual(output), $"{what}: {tile} tiles, projection differs");
                    Assert.True(chosenHead.AsSpan().SequenceEqual(head), $"{what}: {tile} tiles, head differs");
                }
                finally
                {
                    backend.ForcedTiles = null;
                }
            }

            Numerics.AssertClose(c.Expected(), chosen, 2e-5 * Math.Sqrt(c.IC), what);
            var expectedHead = new float[c.N * c.OC];
            MatMulTransposed.Reference(expectedHead, c.X, c.Table, c.N, c.IC, c.OC);
            Numerics.AssertClose(expectedHead, chosenHead, 2e-5 * Math.Sqrt(c.IC), $"{what}: head");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void Splitting_the_inputs_gives_the_values_of_one_pass(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        for (var seed = 0; seed < TestBackends.Cases(name, 2); seed++)
        {
            // Inputs of two to seven chunks, the last one whole or not, so that runs of chunks are uneven and a split can
            // be left with none.
            var c = Case.Draw(new Random(800 + seed), backend.MatVecRowLimit + 1, 60, 65, 450, 100);
            var what = $"{name} {c}";
            var whole = Project(backend, c);
            foreach (var splits in new[] { 2, 3, 8 }) AssertSplitGivesOnePass(backend, c, whole, splits, $"{what}: inputs in {splits}");
            Numerics.AssertClose(c.Expected(), whole.Output, 2e-5 * Math.Sqrt(c.IC), what);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void Splitting_by_shape_gives_the_values_of_one_pass(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        for (var seed = 0; seed < TestBackends.Cases(name, 2); seed++)
        {
            // One tile of outputs (at most 16 rows by 32 columns, the smallest tile a simulator takes) over three to eleven
            // chunks (their sums are added eight at a time, then the rest): too few tiles for any device, so the rule splits
            // the inputs.
            var c = Case.Draw(new Random(900 + seed), backend.MatVecRowLimit + 1, 17, 130, 700, 33);
            var what = $"{name} {c}";
            Assert.True(IlgpuBackend.SplitFor(tiles: 1, chunks: (c.IC + MatMulKernels.Chunk - 1) / MatMulKernels.Chunk, multiprocessors: 1) > 1,
                $"{what}: the rule would not split");
            AssertSplitGivesOnePass(backend, c, Project(backend, c), IlgpuBackend.AutoInputSplits, $"{what}: inputs split by shape");
        }
    }

    /// <summary>The case's projection and head with <see cref="IlgpuBackend.InputSplits"/> set to <paramref name="splits"/> equal <paramref name="whole"/>, bit for bit.</summary>
    private static void AssertSplitGivesOnePass(IlgpuBackend backend, Case c, (float[] Output, float[] Head) whole, int splits, string what)
    {
        backend.InputSplits = splits;
        try
        {
            var (output, head) = Project(backend, c);
            Assert.True(whole.Output.AsSpan().SequenceEqual(output), $"{what}: projection differs");
            Assert.True(whole.Head.AsSpan().SequenceEqual(head), $"{what}: head differs");
        }
        finally
        {
            backend.InputSplits = 1;
        }
    }

    [Theory]
    // GPT-2 124M on an H200 (132 multiprocessors): a prompt of 128 tokens in 64 × 64 tiles.
    [InlineData(2 * 12, 48, 132, 22)]   // the MLP's projection, 128 × 768 outputs over 3,072 inputs
    [InlineData(2 * 12, 12, 132, 12)]   // attention's, over 768 inputs: a run per chunk
    [InlineData(2 * 36, 12, 132, 8)]    // c_attn, 128 × 2,304 outputs
    // 1,024 tokens: c_attn's 576 tiles and c_fc's 768 fill the device; the 768-column outputs (192 tiles) do not.
    [InlineData(16 * 36, 12, 132, 1)]
    [InlineData(16 * 48, 12, 132, 1)]
    [InlineData(16 * 12, 48, 132, 3)]
    [InlineData(300, 12, 132, 1)]       // more than half full: not worth the chunk sums
    [InlineData(1, 1, 132, 1)]          // one chunk: nothing to split
    [InlineData(1, 5, 1, 4)]
    public void The_split_by_shape_fills_the_device_with_at_most_a_run_per_chunk(int tiles, int chunks, int multiprocessors, int expected)
    {
        var splits = IlgpuBackend.SplitFor(tiles, chunks, multiprocessors);
        Assert.Equal(expected, splits);
        Assert.InRange(splits, 1, chunks);
        if (splits > 1) Assert.True(tiles * (splits - 1) < IlgpuBackend.SplitGroupsPerMultiprocessor * multiprocessors, "more runs than needed");
    }

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void A_tile_shape_the_accelerator_cannot_run_is_refused(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        foreach (var tile in new TileShape[] { new(0, 32), new(6, 32), new(128, 32), new(32, 12), new(32, 128) })
        {
            Assert.NotNull(backend.TileProblem(tile));
            Assert.Throws<ArgumentOutOfRangeException>(() => backend.ForcedTiles = tile);
            Assert.Null(backend.ForcedTiles);
        }
    }

    [Theory]
    [InlineData("32x64", 32, 64)]
    [InlineData(" 16 X 8 ", 16, 8)]
    public void Tile_shapes_parse_as_rows_by_columns(string text, int rows, int columns)
    {
        Assert.True(TileShape.TryParse(text, out var shape));
        Assert.Equal(new TileShape(rows, columns), shape);
        Assert.Equal($"{rows}x{columns}", shape.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("32")]
    [InlineData("32x")]
    [InlineData("-8x32")]
    [InlineData("32x64x2")]
    [InlineData("a x b")]
    public void Other_text_is_not_a_tile_shape(string text) => Assert.False(TileShape.TryParse(text, out _));

    /// <summary>A projection's inputs, weights, bias and existing output, and a head's table over the same inputs.</summary>
    private sealed record Case(int N, int IC, int OC, MatMulEpilogue Epilogue, float[] X, float[] W, float[] B, float[] Residual, float[] Table)
    {
        /// <summary>Rows in [minRows, maxRows), inputs in [minInputs, maxInputs) (half the time a multiple of 4), outputs in [1, maxOutputs).</summary>
        public static Case Draw(Random random, int minRows, int maxRows, int minInputs, int maxInputs, int maxOutputs)
        {
            int N = random.Next(minRows, maxRows), IC = random.Next(minInputs, maxInputs), OC = random.Next(1, maxOutputs);
            if (random.Next(2) == 0) IC = (IC + 3) / 4 * 4;
            var epilogue = ProjectionReference.Epilogues[random.Next(ProjectionReference.Epilogues.Length)];
            return new Case(N, IC, OC, epilogue, Numerics.RandomFloats(random, N * IC, 3f), Numerics.RandomFloats(random, IC * OC),
                Numerics.RandomFloats(random, OC), Numerics.RandomFloats(random, N * OC), Numerics.RandomFloats(random, OC * IC));
        }

        /// <summary>The projection by the double-precision reference.</summary>
        public float[] Expected() => ProjectionReference.Expected(X, W, B, Residual, N, IC, OC, Epilogue);

        public override string ToString() => $"N={N} IC={IC} OC={OC} {Epilogue}";
    }

    /// <summary>The case's projection (into its existing output) and head, on the backend as it is set.</summary>
    private static (float[] Output, float[] Head) Project(IlgpuBackend backend, Case c)
    {
        using var scope = backend.Enter();
        using var input = backend.Upload(c.X);
        using var weight = backend.PrepareMatrix(new Weight("w", [c.IC, c.OC], c.W));
        using var rows = backend.PrepareTable(new Weight("t", [c.OC, c.IC], c.Table));
        using var bias = backend.Upload(c.B);
        using var output = backend.Allocate<float>(c.N * c.OC);
        using var head = backend.Allocate<float>(c.N * c.OC);
        backend.CopyFromHost(output, 0, c.Residual);
        backend.MatMul(output, input, weight, bias, c.N, c.IC, c.OC, c.Epilogue);
        backend.MatMulTransposed(head, input, rows, c.N, c.IC, c.OC);
        var hostOutput = new float[c.N * c.OC];
        var hostHead = new float[c.N * c.OC];
        backend.Download(hostOutput, output, 0);
        backend.Download(hostHead, head, 0);
        return (hostOutput, hostHead);
    }
}
