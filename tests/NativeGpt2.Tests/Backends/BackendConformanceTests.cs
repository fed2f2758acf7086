using NativeGpt2.Backends;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// Every operation of <see cref="IBackend"/>, on every backend, against the double-precision scalar
/// references in <c>Operators/</c>: random shapes, including sizes that are not multiples of a tile, a
/// vector or a warp, and the row counts on both sides of the matrix-vector / tiled switch. Errors are
/// normalised by the output's magnitude (<see cref="Numerics.AssertClose"/>). Runs for cpu and
/// ilgpu-cpu everywhere and for cuda where a device is present.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class BackendConformanceTests
{
    /// <summary>Relative bound for one operation in float32 against its double reference.</summary>
    private const double Bound = 2e-5;

    public static TheoryData<string> Backends => TestBackends.AllWithSimulators;

    private static IBackend Prepare(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        return TestBackends.Get(name);
    }

    /// <summary>
    /// Shapes drawn per case from a seeded generator, so a failure names a reproducible case (fewer cases on the slowest
    /// simulator: <see cref="TestBackends.Cases"/>).
    /// </summary>
    private static IEnumerable<Random> Cases(string backend, int count) =>
        Enumerable.Range(0, TestBackends.Cases(backend, count)).Select(seed => new Random(1000 + seed));

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Embedding_gathers_and_adds_rows(string name)
    {
        var backend = Prepare(name);
        foreach (var random in Cases(name, 6))
        {
            int N = random.Next(1, 40), C = random.Next(1, 70), V = random.Next(1, 60), P = random.Next(1, 50);
            var wte = Numerics.RandomFloats(random, V * C);
            var wpe = Numerics.RandomFloats(random, P * C);
            var ids = Enumerable.Range(0, N).Select(_ => random.Next(V)).ToArray();
            var positions = Enumerable.Range(0, N).Select(_ => random.Next(P)).ToArray();
            var expected = new float[N * C];
            Embedding.Reference(expected, ids, positions, wte, wpe, C);
            var actual = Run(backend, N * C, o =>
            {
                using var i = backend.Upload(ids);
                using var p = backend.Upload(positions);
                using var t = backend.PrepareTable(new Weight("wte", [V, C], wte));
                using var e = backend.Upload(wpe);
                backend.Embedding(o, i, p, t, e, N, C);
            });
            Numerics.AssertClose(expected, actual, 0, $"{name} embedding N={N} C={C}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void LayerNorm_matches_the_reference(string name)
    {
        var backend = Prepare(name);
        foreach (var random in Cases(name, 8))
        {
            int N = random.Next(1, 20), C = random.Next(1, 300);
            var x = Numerics.RandomFloats(random, N * C, 3f);
            var w = Numerics.RandomFloats(random, C);
            var b = Numerics.RandomFloats(random, C);
            var expected = new float[N * C];
            LayerNorm.Reference(expected, x, w, b, N, C, 1e-5f);
            var actual = Run(backend, N * C, o =>
            {
                using var input = backend.Upload(x);
                using var weight = backend.Upload(w);
                using var bias = backend.Upload(b);
                backend.LayerNorm(o, input, weight, bias, N, C, 1e-5f);
            });
            Numerics.AssertClose(expected, actual, Bound, $"{name} layernorm N={N} C={C}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void MatMul_matches_the_reference_with_every_epilogue(string name)
    {
        var backend = Prepare(name);
        foreach (var random in Cases(name, 12))
        {
            // Rows on both sides of the matrix-vector switch; inputs across several 64-input chunks and slabs of chunks.
            int N = random.Next(2) == 0 ? random.Next(1, 5) : random.Next(5, 90), IC = random.Next(1, 700), OC = random.Next(1, 140);
            // Half the shapes in whole 16-byte words, as the models' are: kernels may load those differently.
            if (random.Next(2) == 0) (IC, OC) = ((IC + 3) / 4 * 4, (OC + 3) / 4 * 4);
            var epilogue = ProjectionReference.Epilogues[random.Next(ProjectionReference.Epilogues.Length)];
            var x = Numerics.RandomFloats(random, N * IC);
            var w = Numerics.RandomFloats(random, IC * OC);
            var b = Numerics.RandomFloats(random, OC);
            var residual = Numerics.RandomFloats(random, N * OC);
            var expected = ProjectionReference.Expected(x, w, b, residual, N, IC, OC, epilogue);
            var actual = Run(backend, N * OC, o =>
            {
                using var input = backend.Upload(x);
                using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
                using var bias = backend.Upload(b);
                backend.CopyFromHost(o, 0, residual);
                backend.MatMul(o, input, weight, bias, N, IC, OC, epilogue);
            });
            Numerics.AssertClose(expected, actual, Bound * Math.Sqrt(IC), $"{name} matmul {epilogue} N={N} IC={IC} OC={OC}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void LayerNormMatMul_equals_LayerNorm_then_MatMul_bit_for_bit(string name)
    {
        // The fused call must give what the two steps give, or a row decoded alone (fused on a GPU) would differ from
        // the same row in a batch (two steps).
        var backend = Prepare(name);
        foreach (var random in Cases(name, 10))
        {
            int N = random.Next(2) == 0 ? random.Next(1, 5) : random.Next(5, 30), IC = random.Next(1, 700), OC = random.Next(1, 140);
            var epilogue = ProjectionReference.Epilogues[random.Next(ProjectionReference.Epilogues.Length)];
            var (x, g, beta, w, b, residual) = ProjectionReference.DrawInputs(random, N, IC, OC);
            using var scope = backend.Enter();
            using var input = backend.Upload(x);
            using var normWeight = backend.Upload(g);
            using var normBias = backend.Upload(beta);
            using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
            using var bias = backend.Upload(b);
            using var twoStepsNormalized = backend.Allocate<float>(N * IC);
            using var twoSteps = backend.Allocate<float>(N * OC);
            using var fusedNormalized = backend.Allocate<float>(N * IC);
            using var fused = backend.Allocate<float>(N * OC);
            backend.CopyFromHost(twoSteps, 0, residual);
            backend.CopyFromHost(fused, 0, residual);
            backend.LayerNorm(twoStepsNormalized, input, normWeight, normBias, N, IC, 1e-5f);
            backend.MatMul(twoSteps, twoStepsNormalized, weight, bias, N, IC, OC, epilogue);
            backend.LayerNormMatMul(fused, fusedNormalized, input, normWeight, normBias, 1e-5f, weight, bias, N, IC, OC, epilogue);
            var what = $"{name} layernorm-matmul {epilogue} N={N} IC={IC} OC={OC}";
            Assert.True(Download(backend, twoStepsNormalized).AsSpan().SequenceEqual(Download(backend, fusedNormalized)), what + ": normalized input differs");
            Assert.True(Download(backend, twoSteps).AsSpan().SequenceEqual(Download(backend, fused)), what + ": output differs");
        }
    }

    private const int ProjectionRows = 40, ProjectionInputs = 150, ProjectionOutputs = 70;

    /// <summary>The projection the row tests below run: x (40, 150), w (150, 70) and b (70), from a fixed seed.</summary>
    private static (float[] X, float[] W, float[] B) Projection()
    {
        var random = new Random(7);
        return (Numerics.RandomFloats(random, ProjectionRows * ProjectionInputs),
            Numerics.RandomFloats(random, ProjectionInputs * ProjectionOutputs),
            Numerics.RandomFloats(random, ProjectionOutputs));
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void An_epilogue_that_is_not_one_is_refused(string name)
    {
        var backend = Prepare(name);
        var (x, w, b) = Projection();
        const int N = ProjectionRows, IC = ProjectionInputs, OC = ProjectionOutputs;
        using var scope = backend.Enter();
        using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
        using var bias = backend.Upload(b);
        using var input = backend.Upload(x);
        using var output = backend.Allocate<float>(N * OC);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => backend.MatMul(output, input, weight, bias, N, IC, OC, (MatMulEpilogue)99));
        Assert.Equal("epilogue", error.ParamName);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Repeated_passes_give_the_same_output_across_garbage_collections(string name)
    {
        // Host arrays must stay put while a copy uses their address: ILGPU copies to and from raw addresses, and a
        // collection that moved a fresh array before the copy into it had finished left it all zeros, about once in
        // a few hundred of these rounds on ILGPU's CPU accelerator (the first collection of the loop, typically).
        // The copies are the host's, the same whatever shape a simulator has, so the two shaped simulators (their
        // kernels are what the other cases check) take two rounds (their 225 rounds took 85 s).
        var backend = Prepare(name);
        var rounds = name is TestBackends.IlgpuCpuWarp32 or TestBackends.IlgpuCpuCudaShaped ? 2 : 300;
        var (x, w, b) = Projection();
        const int N = ProjectionRows, IC = ProjectionInputs, OC = ProjectionOutputs;
        float[]? first = null;
        for (var i = 0; i < rounds; i++)
        {
            using var scope = backend.Enter();
            using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
            using var bias = backend.Upload(b);
            using var input = backend.Upload(x);
            using var output = backend.Allocate<float>(N * OC);
            backend.MatMul(output, input, weight, bias, N, IC, OC, MatMulEpilogue.BiasGelu);
            var result = new float[N * OC];
            backend.Download(result, output, 0);
            first ??= result;
            Assert.True(first.AsSpan().SequenceEqual(result), $"{name}: round {i} differs from the first ({result.Count(v => v == 0)} of {result.Length} values are 0)");
        }
    }

    /// <summary>
    /// Random shapes, then three large enough to be queued or running still when the test disposes the inputs right
    /// after the launch (a GPU runs launches asynchronously): disposing a buffer must not take it from a kernel that
    /// has yet to read it.
    /// </summary>
    private static IEnumerable<(Random Random, int N, int IC, int OC)> TransposedShapes(string name)
    {
        foreach (var random in Cases(name, 10))
        {
            int N = random.Next(2) == 0 ? random.Next(1, 5) : random.Next(5, 70), IC = random.Next(1, 150), OC = random.Next(1, 300);
            if (random.Next(2) == 0) (IC, OC) = ((IC + 3) / 4 * 4, (OC + 3) / 4 * 4);
            yield return (random, N, IC, OC);
        }
        for (var seed = 77; seed < 80; seed++) yield return (new Random(seed), 48, 96, 3000);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void MatMulTransposed_matches_the_reference(string name)
    {
        var backend = Prepare(name);
        foreach (var (random, N, IC, OC) in TransposedShapes(name))
        {
            var x = Numerics.RandomFloats(random, N * IC);
            var w = Numerics.RandomFloats(random, OC * IC);
            var expected = new float[N * OC];
            MatMulTransposed.Reference(expected, x, w, N, IC, OC);
            var actual = Run(backend, N * OC, o =>
            {
                using var input = backend.Upload(x);
                using var weight = backend.PrepareTable(new Weight("wte", [OC, IC], w));
                backend.MatMulTransposed(o, input, weight, N, IC, OC);
            });
            Numerics.AssertClose(expected, actual, Bound * Math.Sqrt(IC), $"{name} matmul-transposed N={N} IC={IC} OC={OC}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void A_row_of_a_projection_does_not_depend_on_the_other_rows(string name)
    {
        // One row alone, four and eight rows together (the matrix-vector kernels) and the same rows among 40 (the tiled
        // kernel) agree exactly: what makes batched generation equal one-by-one generation. The wider input has more chunk
        // sums than the matrix-vector kernel adds in one pass, and comes in whole 16-byte words, as a model's shapes do.
        // The head over a table of 71 rows, as over GPT-2's 50,257, too. So do LayerNorm and the projection after it, whose
        // matrix-vector kernels normalize their rows themselves (the statistics of four rows at a time, or of one).
        var backend = Prepare(name);
        // Eight rows take the matrix-vector kernels on every ILGPU device, as on a GPU.
        using var allRows = TestBackends.AllMatVecRows(backend);
        var random = new Random(21);
        const int N = 40;
        foreach (var (IC, OC) in new[] { (150, 70), (2200, 72) })
        {
            var x = Numerics.RandomFloats(random, N * IC);
            var w = Numerics.RandomFloats(random, IC * OC);
            var b = Numerics.RandomFloats(random, OC);
            using var scope = backend.Enter();
            using var weight = backend.PrepareMatrix(new Weight("w", [IC, OC], w));
            using var bias = backend.Upload(b);
            const int V = 71;
            using var table = backend.PrepareTable(new Weight("wte", [V, IC], Numerics.RandomFloats(random, V * IC)));
            using var normWeight = backend.Upload(Numerics.RandomFloats(random, IC));
            using var normBias = backend.Upload(Numerics.RandomFloats(random, IC));
            var batched = Project(backend, x, weight, bias, N, IC, OC);
            var batchedHead = Head(backend, x, table, N, IC, V);
            // LayerNorm's rows on the narrower input alone: the wider one adds nothing to them but the simulators' time. Not on
            // the CUDA-shaped simulator, whose groups of 1,024 OS threads take seconds a launch: the four-row and one-row
            // statistics meet on the other two, which run their 40 rows in one group.
            var normalizes = IC < 1000 && name != TestBackends.IlgpuCpuCudaShaped;
            var batchedNorm = normalizes ? Normalize(backend, x, normWeight, normBias, N, IC) : [];
            var batchedNormProjection = normalizes ? NormalizeAndProject(backend, x, normWeight, normBias, weight, bias, N, IC, OC) : [];
            foreach (var (first, rows) in new[] { (0, 1), (17, 1), (39, 1), (20, 4), (31, 8), (3, 7) })
            {
                var part = x[(first * IC)..((first + rows) * IC)];
                Assert.Equal(batched[(first * OC)..((first + rows) * OC)], Project(backend, part, weight, bias, rows, IC, OC));
                Assert.Equal(batchedHead[(first * V)..((first + rows) * V)], Head(backend, part, table, rows, IC, V));
                if (!normalizes || !NormalizedParts.Contains((first, rows))) continue;
                Assert.Equal(batchedNorm[(first * IC)..((first + rows) * IC)], Normalize(backend, part, normWeight, normBias, rows, IC));
                Assert.Equal(batchedNormProjection[(first * OC)..((first + rows) * OC)],
                    NormalizeAndProject(backend, part, normWeight, normBias, weight, bias, rows, IC, OC));
            }
        }
    }

    /// <summary>The parts of the 40 rows whose LayerNorm the row test compares: one row, four, and seven (four, then three one at a time).</summary>
    private static readonly (int First, int Rows)[] NormalizedParts = [(0, 1), (20, 4), (3, 7)];

    private static float[] Project(IBackend backend, float[] x, DeviceMatrix weight, DeviceBuffer<float> bias, int N, int IC, int OC) =>
        Run(backend, N * OC, output =>
        {
            using var input = backend.Upload(x);
            backend.MatMul(output, input, weight, bias, N, IC, OC, MatMulEpilogue.BiasGelu);
        });

    private static float[] Normalize(IBackend backend, float[] x, DeviceBuffer<float> weight, DeviceBuffer<float> bias, int N, int C) =>
        Run(backend, N * C, output =>
        {
            using var input = backend.Upload(x);
            backend.LayerNorm(output, input, weight, bias, N, C, 1e-5f);
        });

    private static float[] NormalizeAndProject(IBackend backend, float[] x, DeviceBuffer<float> normWeight, DeviceBuffer<float> normBias,
        DeviceMatrix weight, DeviceBuffer<float> bias, int N, int IC, int OC) =>
        Run(backend, N * OC, output =>
        {
            using var input = backend.Upload(x);
            using var normalized = backend.Allocate<float>(N * IC);
            backend.LayerNormMatMul(output, normalized, input, normWeight, normBias, 1e-5f, weight, bias, N, IC, OC, MatMulEpilogue.Bias);
        });

    private static float[] Head(IBackend backend, float[] x, DeviceTable table, int N, int IC, int V) =>
        Run(backend, N * V, output =>
        {
            using var input = backend.Upload(x);
            backend.MatMulTransposed(output, input, table, N, IC, V);
        });

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Add_adds(string name)
    {
        var backend = Prepare(name);
        var random = new Random(3);
        var a = Numerics.RandomFloats(random, 1001);
        var b = Numerics.RandomFloats(random, 1001);
        var actual = Run(backend, a.Length, o =>
        {
            using var x = backend.Upload(a);
            using var y = backend.Upload(b);
            backend.Add(o, x, y, a.Length);
        });
        Assert.Equal(a.Zip(b, (p, q) => p + q).ToArray(), actual);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Attention_over_a_cache_matches_the_reference(string name)
    {
        var backend = Prepare(name);
        foreach (var random in Cases(name, 16))
        {
            // Decoding (one new token, the keys split in chunks) in about half the cases; long caches, whose chunks
            // grow so that their number stays bounded, in a quarter.
            int B = random.Next(1, 4), T = random.Next(2) == 0 ? 1 : random.Next(2, 12), past = random.Next(4) == 0 ? random.Next(500, 700) : random.Next(0, 40), NH = random.Next(1, 4), HS = random.Next(1, 40);
            // Heads wider than GPT-2's 64 in a quarter of the cases (Cerebras-GPT's 80 and 128, the most the kernels take).
            if (random.Next(4) == 0) HS = random.Next(65, 129);
            // The simulated GPUs run a thread per simulated thread, and the GPU-shaped ones take minutes to fill 500
            // positions: their long caches are a quarter as long (still four to six decoding chunks, more than a warp of the
            // small simulator merges at once), the rest of the case as drawn.
            if (name is TestBackends.IlgpuCpu or TestBackends.IlgpuCpuWarp32 or TestBackends.IlgpuCpuCudaShaped && past >= 500) past /= 4;
            int Tmax = past + T + 1 + random.Next(0, 5), C = NH * HS;
            var withProbabilities = random.Next(2) == 0;
            // GPT-2's 1/√HS, or that over a layer index + 1 (scale_attn_by_inverse_layer_idx), or 1 (no scaling).
            var scale = random.Next(3) switch { 0 => 1f / MathF.Sqrt(HS), 1 => 1f / MathF.Sqrt(HS) / random.Next(2, 13), _ => 1f };
            // The cache's layout belongs to the backend, so its earlier positions are filled the way a model
            // fills them: by an attention call over `past` earlier tokens, which appends their keys and values.
            var earlier = Numerics.RandomFloats(random, B * past * 3 * C, 2f);
            var qkv = Numerics.RandomFloats(random, B * T * 3 * C, 2f);
            var mask = new int[B * Tmax];
            for (var b = 0; b < B; b++)
            {
                var pad = random.Next(0, past + T);
                for (var j = 0; j < Tmax; j++) mask[b * Tmax + j] = j >= pad ? 1 : 0;
            }
            var expectedKeys = new float[B * NH * Tmax * HS];
            var expectedValues = new float[B * NH * Tmax * HS];
            CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, earlier, B, past, 0, Tmax, NH, HS);
            CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, qkv, B, T, past, Tmax, NH, HS);
            var expected = new float[B * T * C];
            var expectedProbabilities = new float[B * NH * T * (past + T)];
            CausalSelfAttention.Reference(expected, expectedProbabilities, qkv, expectedKeys, expectedValues, mask, B, T, past, Tmax, NH, HS, scale);

            using var scope = backend.Enter();
            using var k = backend.Allocate<float>(expectedKeys.Length);
            using var v = backend.Allocate<float>(expectedValues.Length);
            using var e = backend.Upload(earlier.Length > 0 ? earlier : [0f]);
            using var earlierOut = backend.Allocate<float>(B * past * C);
            using var q = backend.Upload(qkv);
            using var m = backend.Upload(mask);
            using var o = backend.Allocate<float>(expected.Length);
            using var p = withProbabilities ? backend.Allocate<float>(expectedProbabilities.Length) : null;
            if (past > 0) backend.Attention(earlierOut, null, e, k, v, m, B, past, 0, Tmax, NH, HS, scale);
            backend.Attention(o, p, q, k, v, m, B, T, past, Tmax, NH, HS, scale);
            var what = $"{name} attention B={B} T={T} past={past} NH={NH} HS={HS} scale={scale}";
            Numerics.AssertClose(expected, Download(backend, o), Bound, what);
            if (p is not null) Numerics.AssertClose(expectedProbabilities, Download(backend, p), Bound, what + " probabilities");

            // The cache now holds this pass's keys and values too (its layout is the backend's): one more token attends to them all.
            var next = Numerics.RandomFloats(random, B * 3 * C, 2f);
            CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, next, B, 1, past + T, Tmax, NH, HS);
            var expectedNext = new float[B * C];
            CausalSelfAttention.Reference(expectedNext, new float[B * NH * (past + T + 1)], next, expectedKeys, expectedValues, mask, B, 1, past + T, Tmax, NH, HS, scale);
            using var n = backend.Upload(next);
            using var nextOut = backend.Allocate<float>(B * C);
            backend.Attention(nextOut, null, n, k, v, m, B, 1, past + T, Tmax, NH, HS, scale);
            Numerics.AssertClose(expectedNext, Download(backend, nextOut), Bound, what + " next token");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void GatherRows_copies_the_chosen_rows(string name)
    {
        var backend = Prepare(name);
        var random = new Random(5);
        int N = 9, C = 13;
        var x = Numerics.RandomFloats(random, N * C);
        int[] rows = [8, 0, 3, 3];
        var actual = Run(backend, rows.Length * C, o =>
        {
            using var input = backend.Upload(x);
            using var r = backend.Upload(rows);
            backend.GatherRows(o, input, r, rows.Length, C);
        });
        Assert.Equal(rows.SelectMany(r => x[(r * C)..((r + 1) * C)]).ToArray(), actual);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void GatherCacheSlots_gives_rows_the_positions_of_other_rows(string name)
    {
        var backend = Prepare(name);
        // In place, one position (contrastive search): rows 1 and 4 take position 1 of rows 0 and 3, the others keep theirs.
        GatherAndAttend(backend, new Random(12), B: 5, sources: null, T: 3, Tmax: 7, NH: 3, HS: 20, rows: [0, 0, 2, 3, 3], from: 1, to: 2);
        // From another cache of three rows, a range (beam search): positions 1 and 2 of every row; 0 and 3 stay.
        GatherAndAttend(backend, new Random(13), B: 5, sources: 3, T: 4, Tmax: 9, NH: 2, HS: 24, rows: [2, 0, 0, 1, 2], from: 1, to: 3);
        // Moved (a batch of sequences rebuilt): positions 2 to 4 of rows 1 and 2 take 0 to 2 of a source with other slots
        // per head; rows 0 and 3 (-1) keep theirs.
        GatherAndAttend(backend, new Random(14), B: 4, sources: 3, T: 5, Tmax: 11, NH: 2, HS: 17, rows: [-1, 2, 0, -1], from: 2, to: 5, sourceFrom: 0, sourceTmax: 7);
    }

    /// <summary>
    /// Fills a cache of B rows (and a source cache of <paramref name="sources"/> rows, or none: the cache itself) with T
    /// tokens each through <see cref="IBackend.Attention"/>, gathers positions [from, to), and has one more token attend to
    /// every position: the cache is in the backend's own layout, so attention is what reads what each row holds.
    /// </summary>
    private static void GatherAndAttend(IBackend backend, Random random, int B, int? sources, int T, int Tmax, int NH, int HS, int[] rows, int from, int to,
        int? sourceFrom = null, int? sourceTmax = null)
    {
        int C = NH * HS, S = sources ?? B, at = sourceFrom ?? from, sourceSlots = sourceTmax ?? Tmax;
        var scale = 1f / MathF.Sqrt(HS);
        var own = Numerics.RandomFloats(random, B * T * 3 * C, 2f);
        var other = sources is null ? own : Numerics.RandomFloats(random, S * T * 3 * C, 2f);
        var gathered = (float[])own.Clone();
        for (var b = 0; b < B; b++)
        {
            if (rows[b] >= 0) other.AsSpan((rows[b] * T + at) * 3 * C, (to - from) * 3 * C).CopyTo(gathered.AsSpan((b * T + from) * 3 * C, (to - from) * 3 * C));
        }
        var mask = Enumerable.Repeat(1, B * Tmax).ToArray();
        var expectedKeys = new float[B * NH * Tmax * HS];
        var expectedValues = new float[B * NH * Tmax * HS];
        CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, gathered, B, T, 0, Tmax, NH, HS);
        var next = Numerics.RandomFloats(random, B * 3 * C, 2f);
        CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, next, B, 1, T, Tmax, NH, HS);
        var expected = new float[B * C];
        CausalSelfAttention.Reference(expected, new float[B * NH * (T + 1)], next, expectedKeys, expectedValues, mask, B, 1, T, Tmax, NH, HS, scale);

        using var scope = backend.Enter();
        using var k = backend.Allocate<float>(expectedKeys.Length);
        using var v = backend.Allocate<float>(expectedValues.Length);
        using var sk = sources is null ? null : backend.Allocate<float>(S * NH * sourceSlots * HS);
        using var sv = sources is null ? null : backend.Allocate<float>(S * NH * sourceSlots * HS);
        using var sm = backend.Upload(Enumerable.Repeat(1, S * sourceSlots).ToArray());
        using var q = backend.Upload(own);
        using var sq = backend.Upload(other);
        using var m = backend.Upload(mask);
        using var r = backend.Upload(rows);
        using var n = backend.Upload(next);
        using var prompt = backend.Allocate<float>(B * T * C);
        using var o = backend.Allocate<float>(B * C);
        backend.Attention(prompt, null, q, k, v, m, B, T, 0, Tmax, NH, HS, scale);
        if (sources is not null) backend.Attention(prompt, null, sq, sk!, sv!, sm, S, T, 0, sourceSlots, NH, HS, scale);
        backend.GatherCacheSlots(k, v, sk ?? k, sv ?? v, r, B, from, to, Tmax, NH, HS, at, sourceSlots);
        backend.Attention(o, null, n, k, v, m, B, 1, T, Tmax, NH, HS, scale);
        Numerics.AssertClose(expected, Download(backend, o), Bound, $"{backend.Name} attention after GatherCacheSlots [{from}, {to}) from {(sources is null ? "the cache itself" : $"{S} rows")}");
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Target_log_probabilities_match_the_reference(string name)
    {
        var backend = Prepare(name);
        foreach (var random in Cases(name, 6))
        {
            int N = random.Next(1, 9), V = random.Next(1, 3000);
            var logits = Numerics.RandomFloats(random, N * V, 8f);
            var targets = Enumerable.Range(0, N).Select(_ => random.Next(V)).ToArray();
            var expected = new float[N];
            var row = new float[V];
            for (var n = 0; n < N; n++)
            {
                LogSoftmax.Reference(row, logits.AsSpan(n * V, V));
                expected[n] = row[targets[n]];
            }
            var actual = Run(backend, N, o =>
            {
                using var l = backend.Upload(logits);
                using var t = backend.Upload(targets);
                backend.TargetLogProbabilities(o, l, t, N, V);
            });
            Numerics.AssertClose(expected, actual, Bound, $"{name} log-probabilities N={N} V={V}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void ArgMax_takes_the_first_maximum_and_flags_unusable_rows(string name)
    {
        var backend = Prepare(name);
        const int V = 1003;
        var random = new Random(11);
        var rows = new List<float[]>();
        for (var r = 0; r < 4; r++) rows.Add(Numerics.RandomFloats(random, V));
        rows[1][500] = 7f; rows[1][900] = 7f;               // a tie: the first index wins
        rows[2][17] = float.NaN;                            // NaN: unusable
        rows[3][3] = float.PositiveInfinity;                // +inf: unusable
        rows.Add(Enumerable.Repeat(float.NegativeInfinity, V).ToArray()); // all -inf: unusable
        var logits = rows.SelectMany(r => r).ToArray();
        using var scope = backend.Enter();
        using var l = backend.Upload(logits);
        using var o = backend.Allocate<int>(rows.Count);
        backend.ArgMax(o, l, rows.Count, V);
        var actual = new int[rows.Count];
        backend.Download(actual, o, 0);
        Assert.Equal([Array.IndexOf(rows[0], rows[0].Max()), 500, -1, -1, -1], actual);
    }

    /// <summary>
    /// Top-k candidates: every token at least the k-th largest (ties, −0 with +0 and −∞ included), in id order, with its
    /// logit; −1 for rows with NaN or +∞ and for rows with more tied candidates than the capacity.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void TopK_candidates_are_the_tokens_at_least_the_kth_largest_in_id_order(string name)
    {
        var backend = Prepare(name);
        foreach (var random in Cases(name, 8))
        {
            int N = random.Next(1, 6), V = random.Next(1, 3000), k = random.Next(1, Math.Min(V, 64) + 1);
            var capacity = random.Next(k, IBackend.MaxTopKCapacity + 1);
            // Few distinct values (many ties) or many, signed zeros (in a third of the cases the largest values, where
            // −0 and +0 must count as one value), and tokens ruled out.
            var decimals = random.Next(3);
            var negative = random.Next(3) == 0;
            var logits = Enumerable.Range(0, N * V).Select(_ => random.Next(20) switch
            {
                0 => float.NegativeInfinity,
                1 => random.Next(2) == 0 ? 0f : -0f,
                _ => (float)Math.Round(negative ? -4 * random.NextDouble() : random.NextDouble() * 8 - 4, decimals),
            }).ToArray();
            // A row with NaN, one with +∞ and one of −∞ alone, now and then.
            if (N > 1 && random.Next(2) == 0) logits[random.Next(V)] = float.NaN;
            if (N > 2 && random.Next(2) == 0) logits[2 * V + random.Next(V)] = float.PositiveInfinity;
            if (N > 3 && random.Next(2) == 0) Array.Fill(logits, float.NegativeInfinity, 3 * V, V);
            using var scope = backend.Enter();
            using var l = backend.Upload(logits);
            var actual = TopKCandidates(backend, l, N, V, k, capacity);
            Assert.Equal(N, actual.Rows);
            for (var n = 0; n < N; n++)
            {
                var row = logits.AsSpan(n * V, V).ToArray();
                var what = $"{name} top-k row {n} of N={N} V={V} k={k} capacity={capacity}";
                if (row.Any(x => float.IsNaN(x) || float.IsPositiveInfinity(x)) || row.All(float.IsNegativeInfinity))
                {
                    Assert.True(actual.CountOf(n) == -1, what);
                    continue;
                }
                var kth = row.OrderByDescending(x => x).ElementAt(k - 1);
                var expected = Enumerable.Range(0, V).Where(v => row[v] >= kth).ToArray();
                if (expected.Length > capacity)
                {
                    Assert.True(actual.CountOf(n) == -1, what);
                    continue;
                }
                Assert.True(expected.Length == actual.CountOf(n), $"{what}: {actual.CountOf(n)} candidates, expected {expected.Length}");
                Assert.Equal(expected, actual.IdsOf(n).ToArray());
                // The logits themselves, bit for bit (−0 stays −0).
                Assert.Equal(expected.Select(v => BitConverter.SingleToInt32Bits(row[v])), actual.ValuesOf(n).ToArray().Select(BitConverter.SingleToInt32Bits));
            }
        }

        // A short row of −∞ alone fits the capacity, and is still no set of candidates; the row after it is.
        using (backend.Enter())
        {
            float[] twoRows = [.. Enumerable.Repeat(float.NegativeInfinity, 50), .. Enumerable.Range(0, 50).Select(i => i % 7 - 3f)];
            using var l = backend.Upload(twoRows);
            var actual = TopKCandidates(backend, l, 2, 50, 3, 64);
            // The second row's largest, 3, is at i ≡ 6 (mod 7): seven of them, all kept.
            Assert.Equal([-1, 7], [actual.CountOf(0), actual.CountOf(1)]);
        }
    }

    /// <summary>The backend's top-k candidates of the (N, V) logits, as generation reads them: every record in one download.</summary>
    private static TopKRows TopKCandidates(IBackend backend, DeviceBuffer<float> logits, int N, int V, int k, int capacity)
    {
        var rows = TopKRows.For(N, capacity);
        using var records = backend.Allocate<int>(rows.Records.Length);
        backend.TopKCandidates(records, logits, N, V, k, capacity);
        backend.Download(rows.Records, records, 0);
        return rows;
    }

    private static float[] Run(IBackend backend, int outputLength, Action<DeviceBuffer<float>> operation)
    {
        using var scope = backend.Enter();
        using var output = backend.Allocate<float>(outputLength);
        operation(output);
        return Download(backend, output);
    }

    private static float[] Download(IBackend backend, DeviceBuffer<float> buffer)
    {
        var host = new float[buffer.Length];
        backend.Download(host, buffer, 0);
        return host;
    }
}
