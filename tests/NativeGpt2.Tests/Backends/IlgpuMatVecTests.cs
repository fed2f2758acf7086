using NativeGpt2.Backends;
using NativeGpt2.Ilgpu;
using NativeGpt2.Ilgpu.Kernels;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// The ILGPU backend's decoding-projection kernels, by blocks of 8, 16 or 32 columns over all the inputs, split over the
/// inputs across groups, and along the weight rows a word of four columns a lane: the same values for every epilogue, with and without the fused LayerNorm, on shapes with
/// partial chunks and partial column blocks, and the same as the double-precision reference within its bound.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class IlgpuMatVecTests
{
    public static TheoryData<string> Accelerators => TestBackends.Ilgpu;

    /// <summary>Column widths to compare: 0 is the split kernel, <see cref="IlgpuBackend.MatVecWords"/> the kernel that reads along the weight rows.</summary>
    private static readonly int[] Widths = [0, 8, 16, 32, IlgpuBackend.MatVecWords];

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void Column_blocks_equal_the_split_kernel(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        // Every row count the kernels hold, also where the backend sends five or more rows to the tiled matmul by default.
        using var allRows = TestBackends.AllMatVecRows(backend);
        for (var seed = 0; seed < TestBackends.Cases(name, 10); seed++)
        {
            var random = new Random(500 + seed);
            // Inputs from under one chunk to a dozen, whole chunks or not; outputs that leave a partial block of 8 or 16.
            int N = random.Next(1, MatMulKernels.MaxMatVecRows + 1), IC = random.Next(1, 13) * MatMulKernels.Chunk - (random.Next(2) == 0 ? 0 : random.Next(1, 60));
            var OC = random.Next(1, 90);
            var epilogue = ProjectionReference.Epilogues[random.Next(ProjectionReference.Epilogues.Length)];
            var normalize = random.Next(2) == 0;
            var (x, g, beta, w, b, residual) = ProjectionReference.DrawInputs(random, N, IC, OC);
            var what = $"{name} N={N} IC={IC} OC={OC} {epilogue}{(normalize ? " after LayerNorm" : "")}";

            var results = Widths.Select(columns => Project(backend, columns, normalize, x, g, beta, w, b, residual, N, IC, OC, epilogue)).ToArray();
            for (var i = 1; i < Widths.Length; i++)
            {
                if (name == TestBackends.IlgpuCpu)
                    Assert.True(results[0].Normalized.AsSpan().SequenceEqual(results[i].Normalized), $"{what}: {Widths[i]} columns, normalized input differs");
                AssertKernelsAgree(name, results[0].Output, results[i].Output, $"{what}: {Widths[i]} columns");
            }

            var input = x;
            if (normalize)
            {
                input = new float[N * IC];
                LayerNorm.Reference(input, x, g, beta, N, IC, 1e-5f);
            }
            var expected = ProjectionReference.Expected(input, w, b, residual, N, IC, OC, epilogue);
            foreach (var (columns, result) in Widths.Zip(results))
                Numerics.AssertClose(expected, result.Output, 2e-5 * Math.Sqrt(IC), $"{what}: {columns} columns against the reference");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void A_group_given_several_column_blocks_keeps_each_blocks_sums_apart(string name)
    {
        // A simulator launches fewer groups than blocks, so each group takes block after block: one row's sums alternate
        // between two halves of shared memory, eight rows' (more than half of it) share one region, and a barrier must
        // keep the next block from overwriting sums still being added. Both against the split kernel, bit for bit.
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        using var allRows = TestBackends.AllMatVecRows(backend);
        const int IC = 5 * MatMulKernels.Chunk, OC = 32 * 4 + 3, Columns = 32;
        foreach (var N in new[] { 1, MatMulKernels.MaxMatVecRows })
        {
            var sums = N * (IC / MatMulKernels.Chunk) * Columns;
            Assert.True(sums <= MatMulKernels.MaxColumnSums && N * IC <= MatMulKernels.MaxColumnInputs, "the shape takes the column blocks");
            var random = new Random(40 + N);
            var (x, g, beta, w, b, residual) = ProjectionReference.DrawInputs(random, N, IC, OC);
            var what = $"{name} N={N} ({(2 * sums <= MatMulKernels.MaxColumnSums ? "alternating halves" : "one region")})";
            var split = Project(backend, 0, true, x, g, beta, w, b, residual, N, IC, OC, MatMulEpilogue.Residual);
            var blocks = Project(backend, Columns, true, x, g, beta, w, b, residual, N, IC, OC, MatMulEpilogue.Residual);
            AssertKernelsAgree(name, split.Output, blocks.Output, what);
        }
    }

    /// <summary>
    /// Two kernels' outputs: the same bit for bit on the CPU accelerator, which runs both kernels' operations exactly as
    /// written; within 1e-6 elsewhere, where a GPU compiler may fuse a product and a sum differently in each kernel.
    /// </summary>
    private static void AssertKernelsAgree(string name, float[] expected, float[] actual, string what)
    {
        if (name == TestBackends.IlgpuCpu) Assert.True(expected.AsSpan().SequenceEqual(actual), $"{what}, output differs");
        else Numerics.AssertClose(expected, actual, 1e-6, what);
    }

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void Shapes_too_large_for_column_blocks_take_the_split_kernel(string name)
    {
        // Four rows of 3,072 inputs (a 124M MLP projection decoding four sequences) do not fit the staged inputs: the
        // launch must fall back, not overrun shared memory.
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        var random = new Random(9);
        const int N = 4, IC = 3072, OC = 20;
        Assert.True(N * IC > MatMulKernels.MaxColumnInputs);
        var x = Numerics.RandomFloats(random, N * IC);
        var w = Numerics.RandomFloats(random, IC * OC);
        var b = Numerics.RandomFloats(random, OC);
        var zeros = new float[N * OC];
        var split = Project(backend, 0, false, x, x, x, w, b, zeros, N, IC, OC, MatMulEpilogue.Bias);
        var chosen = Project(backend, 16, false, x, x, x, w, b, zeros, N, IC, OC, MatMulEpilogue.Bias);
        Assert.Equal(split.Output, chosen.Output);
        // The kernel along the weight rows takes any shape; its 48 chunk sums of four rows are added in two passes.
        var words = Project(backend, IlgpuBackend.MatVecWords, false, x, x, x, w, b, zeros, N, IC, OC, MatMulEpilogue.Bias);
        AssertKernelsAgree(name, split.Output, words.Output, $"{name} N={N} IC={IC} OC={OC} along the weight rows");
        var expected = ProjectionReference.Expected(x, w, b, zeros, N, IC, OC, MatMulEpilogue.Bias);
        Numerics.AssertClose(expected, chosen.Output, 2e-5 * Math.Sqrt(IC), $"{name} N={N} IC={IC} OC={OC}");
    }

    private static (float[] Output, float[] Normalized) Project(IlgpuBackend backend, int columns, bool normalize, float[] x, float[] g, float[] beta,
        float[] w, float[] b, float[] residual, int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        backend.MatVecColumnWidth = columns;
        try
        {
            using var scope = backend.Enter();
            using var input = backend.Upload(x);
            using var normWeight = backend.Upload(g);
            using var normBias = backend.Upload(beta);
            using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
            using var bias = backend.Upload(b);
            using var normalized = backend.Allocate<float>(N * IC);
            using var output = backend.Allocate<float>(N * OC);
            backend.CopyFromHost(output, 0, residual);
            if (normalize) backend.LayerNormMatMul(output, normalized, input, normWeight, normBias, 1e-5f, weight, bias, N, IC, OC, epilogue);
            else backend.MatMul(output, input, weight, bias, N, IC, OC, epilogue);
            var host = new float[N * OC];
            backend.Download(host, output, 0);
            var hostNormalized = new float[N * IC];
            if (normalize) backend.Download(hostNormalized, normalized, 0);
            return (host, hostNormalized);
        }
        finally
        {
            backend.MatVecColumnWidth = null;
        }
    }
}
