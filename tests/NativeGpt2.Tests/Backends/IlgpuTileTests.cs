using NativeGpt2.Backends;
using NativeGpt2.Ilgpu;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// The ILGPU backend's tiled matmul in every tile shape an accelerator can run (<see cref="IlgpuBackend.ForcedTiles"/>,
/// what <see cref="IlgpuBackend.TilesVariable"/> sets): the same values as the shape the launch chooses, for Conv1D weights
/// with every epilogue and for the head's transposed table, on shapes with partial tiles and partial chunks; and the same
/// values again with the inputs split into runs of chunks (<see cref="IlgpuBackend.InputSplits"/>).
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
            var random = new Random(700 + seed);
            // More rows than the matrix-vector kernels take; inputs in whole 16-byte words (the staged loads) or not.
            int N = random.Next(backend.MatVecRowLimit + 1, 70), IC = random.Next(1, 200), OC = random.Next(1, 150);
            if (random.Next(2) == 0) IC = (IC + 3) / 4 * 4;
            var epilogue = ProjectionReference.Epilogues[random.Next(ProjectionReference.Epilogues.Length)];
            var x = Numerics.RandomFloats(random, N * IC, 3f);
            var w = Numerics.RandomFloats(random, IC * OC);
            var b = Numerics.RandomFloats(random, OC);
            var residual = Numerics.RandomFloats(random, N * OC);
            var table = Numerics.RandomFloats(random, OC * IC);
            var what = $"{name} N={N} IC={IC} OC={OC} {epilogue}";

            var (chosen, chosenHead) = Project(backend, null, x, w, b, residual, table, N, IC, OC, epilogue);
            foreach (var tile in shapes)
            {
                var (output, head) = Project(backend, tile, x, w, b, residual, table, N, IC, OC, epilogue);
                // Every tile sums each output in the same order; on a GPU only the compiler's fusing could differ, and the
                // kernels fuse explicitly (Fused), so every backend must agree bit for bit.
                Assert.True(chosen.AsSpan().SequenceEqual(output), $"{what}: {tile} tiles, projection differs");
                Assert.True(chosenHead.AsSpan().SequenceEqual(head), $"{what}: {tile} tiles, head differs");
            }

            Numerics.AssertClose(ProjectionReference.Expected(x, w, b, residual, N, IC, OC, epilogue), chosen, 2e-5 * Math.Sqrt(IC), what);
            var expectedHead = new float[N * OC];
            MatMulTransposed.Reference(expectedHead, x, table, N, IC, OC);
            Numerics.AssertClose(expectedHead, chosenHead, 2e-5 * Math.Sqrt(IC), $"{what}: head");
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
            var random = new Random(800 + seed);
            // Inputs of two to seven chunks, the last one whole or not, so that runs of chunks are uneven and a split can
            // be left with none.
            int N = random.Next(backend.MatVecRowLimit + 1, 60), IC = random.Next(65, 450), OC = random.Next(1, 100);
            if (random.Next(2) == 0) IC = (IC + 3) / 4 * 4;
            var epilogue = ProjectionReference.Epilogues[random.Next(ProjectionReference.Epilogues.Length)];
            var x = Numerics.RandomFloats(random, N * IC, 3f);
            var w = Numerics.RandomFloats(random, IC * OC);
            var b = Numerics.RandomFloats(random, OC);
            var residual = Numerics.RandomFloats(random, N * OC);
            var table = Numerics.RandomFloats(random, OC * IC);
            var what = $"{name} N={N} IC={IC} OC={OC} {epilogue}";

            var (whole, wholeHead) = Project(backend, null, x, w, b, residual, table, N, IC, OC, epilogue);
            foreach (var splits in new[] { 2, 3, 8 })
            {
                backend.InputSplits = splits;
                try
                {
                    var (output, head) = Project(backend, null, x, w, b, residual, table, N, IC, OC, epilogue);
                    Assert.True(whole.AsSpan().SequenceEqual(output), $"{what}: inputs in {splits}, projection differs");
                    Assert.True(wholeHead.AsSpan().SequenceEqual(head), $"{what}: inputs in {splits}, head differs");
                }
                finally
                {
                    backend.InputSplits = 1;
                }
            }
            Numerics.AssertClose(ProjectionReference.Expected(x, w, b, residual, N, IC, OC, epilogue), whole, 2e-5 * Math.Sqrt(IC), what);
        }
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

    private static (float[] Output, float[] Head) Project(IlgpuBackend backend, TileShape? tile, float[] x, float[] w, float[] b,
        float[] residual, float[] table, int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        backend.ForcedTiles = tile;
        try
        {
            using var scope = backend.Enter();
            using var input = backend.Upload(x);
            using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
            using var rows = backend.PrepareTable(new Weight("t", [OC, IC], table));
            using var bias = backend.Upload(b);
            using var output = backend.Allocate<float>(N * OC);
            using var head = backend.Allocate<float>(N * OC);
            backend.CopyFromHost(output, 0, residual);
            backend.MatMul(output, input, weight, bias, N, IC, OC, epilogue);
            backend.MatMulTransposed(head, input, rows, N, IC, OC);
            var hostOutput = new float[N * OC];
            var hostHead = new float[N * OC];
            backend.Download(hostOutput, output, 0);
            backend.Download(hostHead, head, 0);
            return (hostOutput, hostHead);
        }
        finally
        {
            backend.ForcedTiles = null;
        }
    }
}
