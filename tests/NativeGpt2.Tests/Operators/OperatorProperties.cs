using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Backends;
using NativeGpt2.Operators;
using NativeGpt2.Weights;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Operators;

/// <summary>
/// Each vectorized operator equals its scalar reference for random sizes, including sizes that are not
/// multiples of a vector width or a 32-column panel, at every SIMD width (a width the machine lacks is
/// emulated, so every path is tested on any machine) and in every weight format, and the mathematical
/// identities each operator must satisfy.
/// </summary>
public class OperatorProperties
{
    /// <summary>Sizes from 1 to 70 cover empty vector loops, exact multiples of 8 and 16 and every tail length.</summary>
    private static Gen<int> Size(int max = 70) => Gen.Choose(1, max);

    private static Gen<int> Seed => Gen.Choose(0, int.MaxValue);

    /// <summary>Every SIMD width: 512 and 256 bits (AVX-512, AVX2), 128 (NEON, SSE with FMA) and scalar.</summary>
    private static readonly VectorWidth[] Widths = [VectorWidth.Vector512, VectorWidth.Vector256, VectorWidth.Vector128, VectorWidth.Scalar];

    private static Gen<VectorWidth> Width => Gen.Elements(Widths);

    private static Gen<WeightFormat> Format => Gen.Elements(WeightFormat.F32, WeightFormat.F16, WeightFormat.BF16, WeightFormat.Q8);

    /// <summary>The weight in <paramref name="format"/> and <paramref name="layout"/>, and the float32 values it holds after rounding.</summary>
    private static (WeightData Data, float[] Values) Stored(float[] weight, int rows, int cols, WeightFormat format, WeightLayout layout)
    {
        var data = WeightData.Wrap(weight, rows, cols).ConvertTo(format, layout);
        var values = new float[rows * cols];
        data.CopyTo(values);
        return (data, values);
    }

    [Property(MaxTest = 400)]
    public Property MatMul_equals_the_naive_triple_loop_at_every_width_and_format() =>
        Prop.ForAll((from n in Size() from ic in Size() from oc in Size(80) from seed in Seed from width in Width from format in Format
                     from epilogue in Gen.Elements(ProjectionReference.Epilogues)
                     select (n, ic, oc, seed, width, format, epilogue)).ToArbitrary(), c =>
        {
            var (n, ic, oc, seed, width, format, epilogue) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ic);
            var (weight, values) = Stored(Numerics.RandomFloats(random, ic * oc), ic, oc, format, WeightLayout.Panels);
            var bias = Numerics.RandomFloats(random, oc);
            var residual = Numerics.RandomFloats(random, n * oc);
            var expected = new float[n * oc];
            MatMul.Reference(expected, input, values, bias, n, ic, oc);
            for (var i = 0; i < expected.Length; i++)
            {
                if (epilogue.Activation() is { } activation) expected[i] = (float)Activations.Reference(expected[i], activation);
                if (epilogue == MatMulEpilogue.Residual) expected[i] += residual[i];
            }
            var actual = (float[])residual.Clone();
            MatMul.Forward(actual, input, weight, bias, n, ic, oc, epilogue, width);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative * Math.Sqrt(ic), $"matmul {width} {format} {epilogue} N={n} IC={ic} OC={oc}");
        });

    [Property(MaxTest = 60)]
    public Property MatMul_results_are_identical_at_every_width_and_for_every_batch() =>
        Prop.ForAll((from n in Gen.OneOf(Gen.Choose(2, 20), Gen.Elements(7, 8, 50, 51, 53, 56, 98, 99, 128))
                     from ic in Size(100) from oc in Size(80) from seed in Seed from format in Format select (n, ic, oc, seed, format)).ToArbitrary(), c =>
        {
            // Every output is bias + Σ fused multiply-adds in input order, whatever tile (6, 5, 4 rows, 7 or 8 with Vector512,
            // the padded tile of a batch of two or three, a lone row), width or batch: so a row alone equals the same row among
            // others, bit for bit, on every path. The longer batches end their last block of rows in 4- and 5-row tiles (56:
            // a block of 48 and one of 8).
            var (n, ic, oc, seed, format) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ic);
            var (weight, _) = Stored(Numerics.RandomFloats(random, ic * oc), ic, oc, format, WeightLayout.Panels);
            var bias = Numerics.RandomFloats(random, oc);
            var batched = new float[n * oc];
            MatMul.Forward(batched, input, weight, bias, n, ic, oc, MatMulEpilogue.Bias, VectorWidth.Vector512);
            foreach (var (width, row) in Widths.SelectMany(w => new[] { (w, random.Next(n)), (w, n - 1) }))
            {
                var alone = new float[oc];
                MatMul.Forward(alone, input.AsMemory(row * ic, ic), weight, bias, 1, ic, oc, MatMulEpilogue.Bias, width);
                Assert.Equal(batched.AsSpan(row * oc, oc).ToArray(), alone);
            }
        });

    [Property(MaxTest = 120)]
    public Property MatMul_decoding_a_wide_matrix_equals_the_reference_and_the_same_row_in_a_batch() =>
        Prop.ForAll((from ic in Size(100) from oc in Gen.Choose(100, 300) from seed in Seed from width in Width from format in Format
                     from epilogue in Gen.Elements(ProjectionReference.Epilogues)
                     select (ic, oc, seed, width, format, epilogue)).ToArbitrary(), c =>
        {
            // One row of 16-bit weights reads four panels side by side (and the panels left over, and a partial last
            // panel, one at a time); of float32 and 8-bit weights, one panel at a time. A batch of seven widens the
            // panels and runs the 7-row tile (Vector512) or a 6-row tile and a lone row. All sum every output in the same order, so the row is the same bit for bit.
            var (ic, oc, seed, width, format, epilogue) = c;
            const int batch = 7;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, batch * ic);
            var (weight, values) = Stored(Numerics.RandomFloats(random, ic * oc), ic, oc, format, WeightLayout.Panels);
            var bias = Numerics.RandomFloats(random, oc);
            var residual = Numerics.RandomFloats(random, batch * oc);
            var batched = (float[])residual.Clone();
            MatMul.Forward(batched, input, weight, bias, batch, ic, oc, epilogue, width);

            var row = random.Next(batch);
            var alone = residual.AsSpan(row * oc, oc).ToArray();
            MatMul.Forward(alone, input.AsMemory(row * ic, ic), weight, bias, 1, ic, oc, epilogue, width);
            Assert.Equal(batched.AsSpan(row * oc, oc).ToArray(), alone);

            var expected = new float[oc];
            MatMul.Reference(expected, input.AsSpan(row * ic, ic), values, bias, 1, ic, oc);
            for (var i = 0; i < oc; i++)
            {
                if (epilogue.Activation() is { } activation) expected[i] = (float)Activations.Reference(expected[i], activation);
                if (epilogue == MatMulEpilogue.Residual) expected[i] += residual[row * oc + i];
            }
            Numerics.AssertClose(expected, alone, Tolerances.OperatorRelative * Math.Sqrt(ic), $"decoding matmul {width} {format} {epilogue} IC={ic} OC={oc}");
        });

    [Fact]
    public void Every_float16_pattern_widens_exactly_at_every_width_and_the_finite_path_agrees_on_finite_values()
    {
        var all = new Half[65536];
        for (var i = 0; i < all.Length; i++) all[i] = BitConverter.UInt16BitsToHalf((ushort)i);
        for (var i = 0; i < all.Length; i += 16)
        {
            var wide = new float[16];
            Simd512.Store(ref wide[0], Simd512.LoadFloat16(ref all[i]));
            var finiteWide = new float[16];
            Simd512.Store(ref finiteWide[0], Simd512.LoadFiniteFloat16(ref all[i]));
            var narrow = new float[16];
            Simd256.Store(ref narrow[0], Simd256.LoadFloat16(ref all[i]));
            Simd256.Store(ref narrow[8], Simd256.LoadFloat16(ref all[i + 8]));
            var finiteNarrow = new float[16];
            Simd256.Store(ref finiteNarrow[0], Simd256.LoadFiniteFloat16(ref all[i]));
            Simd256.Store(ref finiteNarrow[8], Simd256.LoadFiniteFloat16(ref all[i + 8]));
            var quarter = new float[16];
            var finiteQuarter = new float[16];
            for (var j = 0; j < 16; j += 4)
            {
                Simd128.Store(ref quarter[j], Simd128.LoadFloat16(ref all[i + j]));
                Simd128.Store(ref finiteQuarter[j], Simd128.LoadFiniteFloat16(ref all[i + j]));
            }
            for (var j = 0; j < 16; j++)
            {
                var h = all[i + j];
                var expected = (float)h;
                AssertSameFloat(expected, wide[j], h);
                AssertSameFloat(expected, narrow[j], h);
                AssertSameFloat(expected, quarter[j], h);
                Assert.Equal(expected, SimdScalar.LoadFiniteFloat16(ref all[i + j]).Value);
                if (Half.IsFinite(h))
                {
                    AssertSameFloat(expected, finiteWide[j], h);
                    AssertSameFloat(expected, finiteNarrow[j], h);
                    AssertSameFloat(expected, finiteQuarter[j], h);
                }
            }
        }

        static void AssertSameFloat(float expected, float actual, Half h)
        {
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"half 0x{BitConverter.HalfToUInt16Bits(h):X4} widened to {actual}, not NaN");
            else Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(actual),
                $"half 0x{BitConverter.HalfToUInt16Bits(h):X4} widened to {actual:R} (0x{BitConverter.SingleToUInt32Bits(actual):X8}), expected {expected:R}");
        }
    }

    [Theory]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    [InlineData(float.NaN)]
    public void A_float16_weight_with_an_infinity_or_NaN_takes_the_exact_widening_and_matches_the_reference(float special)
    {
        const int ic = 40, oc = 160;
        var random = new Random(7);
        var values = Numerics.RandomFloats(random, ic * oc);
        var finite = (Float16Data)WeightData.Wrap(values, ic, oc).ConvertTo(WeightFormat.F16, WeightLayout.Panels);
        Assert.True(finite.AllFinite);

        values[5 * oc + 133] = special;
        var (weight, stored) = Stored(values, ic, oc, WeightFormat.F16, WeightLayout.Panels);
        Assert.False(((Float16Data)weight).AllFinite);
        var input = Numerics.RandomFloats(random, ic);
        input[5] = 0.5f;
        var bias = new float[oc];
        var expected = new float[oc];
        MatMul.Reference(expected, input, stored, bias, 1, ic, oc);
        foreach (var width in Widths)
        {
            var actual = new float[oc];
            MatMul.Forward(actual, input, weight, bias, 1, ic, oc, MatMulEpilogue.Bias, width);
            Assert.Equal(expected[133], actual[133]);
            Numerics.AssertClose(expected.AsSpan(0, 133), actual.AsSpan(0, 133), Tolerances.OperatorRelative * Math.Sqrt(ic), $"f16 with {special}, {width}");
        }
    }

    [Property(MaxTest = 300)]
    public Property MatMulTransposed_equals_the_naive_triple_loop_at_every_width_and_format() =>
        // 7, 8, 13 and 14 rows end in the two-wide tile of seven or eight rows with Vector512; drawn more often than Size would.
        Prop.ForAll((from n in Gen.OneOf(Size(), Gen.Elements(7, 8, 13, 14)) from ic in Size() from oc in Size(150) from seed in Seed from width in Width from format in Format select (n, ic, oc, seed, width, format)).ToArbitrary(), c =>
        {
            var (n, ic, oc, seed, width, format) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ic);
            var (weight, values) = Stored(Numerics.RandomFloats(random, oc * ic), oc, ic, format, WeightLayout.RowMajor);
            var expected = new float[n * oc];
            var actual = new float[n * oc];
            MatMulTransposed.Reference(expected, input, values, n, ic, oc);
            MatMulTransposed.Forward(actual, input, weight, n, ic, oc, width);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative * Math.Sqrt(ic), $"matmul-transposed {width} {format} N={n} IC={ic} OC={oc}");

            // A row's logits do not depend on the other rows of the batch.
            var row = random.Next(n);
            var alone = new float[oc];
            MatMulTransposed.Forward(alone, input.AsMemory(row * ic, ic), weight, 1, ic, oc, width);
            Assert.Equal(actual.AsSpan(row * oc, oc).ToArray(), alone);
        });

    [Property(MaxTest = 80)]
    public Property MatMulTransposed_batches_on_the_panel_tile_equal_every_row_alone_in_every_format() =>
        Prop.ForAll((from n in Gen.Choose(MatMulTransposed.PanelRowsFrom, MatMulTransposed.PanelRowsFrom + 30) from ic in Size(100) from oc in Size(150)
                     from seed in Seed from format in Format select (n, ic, oc, seed, format)).ToArbitrary(), c =>
        {
            // Many rows run on transposed panels with Vector512 (float32 as stored, float16 and q8 widened first; bfloat16
            // on the row tiles), one row on the register tiles: every row of the batch is the row alone, bit for bit,
            // whatever the lanes' tail, the last panel or the last tile.
            var (n, ic, oc, seed, format) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ic);
            var (weight, _) = Stored(Numerics.RandomFloats(random, oc * ic), oc, ic, format, WeightLayout.RowMajor);
            var batched = new float[n * oc];
            MatMulTransposed.Forward(batched, input, weight, n, ic, oc, VectorWidth.Vector512);
            for (var row = 0; row < n; row++)
            {
                var alone = new float[oc];
                MatMulTransposed.Forward(alone, input.AsMemory(row * ic, ic), weight, 1, ic, oc, VectorWidth.Vector512);
                Assert.Equal(alone, batched.AsSpan(row * oc, oc).ToArray());
            }
        });

    [Fact]
    public void A_16_by_16_block_transposes_exactly()
    {
        var random = new Random(16);
        const int stride = 37, destinationStride = 41;
        var source = Numerics.RandomFloats(random, 16 * stride);
        var transposed = new float[16 * destinationStride];
        Simd512.Transpose(ref source[0], stride, ref transposed[0], destinationStride);
        for (var r = 0; r < 16; r++)
        {
            for (var c = 0; c < 16; c++) Assert.Equal(source[r * stride + c], transposed[c * destinationStride + r]);
        }
    }

    [Theory]
    [InlineData("512", VectorWidth.Vector512)]
    [InlineData(" Vector256 ", VectorWidth.Vector256)]
    [InlineData("128", VectorWidth.Vector128)]
    [InlineData("vector128", VectorWidth.Vector128)]
    [InlineData("SCALAR", VectorWidth.Scalar)]
    [InlineData("1", VectorWidth.Scalar)]
    public void The_width_switch_names_every_width(string value, VectorWidth expected) =>
        Assert.Equal(expected, CpuVectors.FromEnvironment(value));

    [Theory]
    [InlineData("64")]
    [InlineData("avx2")]
    public void The_width_switch_rejects_what_is_not_a_width_and_lists_the_choices(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => CpuVectors.FromEnvironment(value));
        Assert.Contains("512, 256, 128 or scalar", e.Message);
        Assert.Contains(CpuVectors.Variable, e.Message);
    }

    [Fact]
    public void No_value_for_the_switch_picks_the_widest_accelerated_width() =>
        Assert.Equal(CpuVectors.Widest, CpuVectors.FromEnvironment(null));

    [Fact]
    public void Sums_add_lanes_by_halving_at_every_width()
    {
        // The order the head's panel route reproduces column by column: lane j + lane j + Count/2, and so on.
        Check<Simd512>();
        Check<Simd256>();
        Check<Simd128>();
        Check<SimdScalar>();

        static void Check<V>() where V : struct, ISimd<V>
        {
            var random = new Random(V.Count);
            for (var trial = 0; trial < 100; trial++)
            {
                var lanes = Numerics.RandomFloats(random, V.Count);
                var expected = (float[])lanes.Clone();
                for (var half = V.Count / 2; half > 0; half /= 2)
                {
                    for (var j = 0; j < half; j++) expected[j] += expected[j + half];
                }
                Assert.Equal(expected[0], V.Sum(V.Load(ref lanes[0])));
            }
        }
    }

    [Property(MaxTest = 300)]
    public Property ArgMax_equals_the_scalar_definition_with_ties_signed_zeros_and_specials() =>
        Prop.ForAll((from n in Gen.Choose(1, 4) from v in Gen.Choose(1, 90) from seed in Seed select (n, v, seed)).ToArbitrary(), c =>
        {
            // Few distinct values, so maxima tie often; -0 and +0 tie; NaN, +inf and -inf appear now and then.
            var (n, v, seed) = c;
            var random = new Random(seed);
            float[] pool = [-0f, 0f, 1f, 1f, 2f, -3f, float.NegativeInfinity, float.NegativeInfinity];
            var logits = new float[n * v];
            for (var i = 0; i < logits.Length; i++)
            {
                var roll = random.Next(200);
                logits[i] = roll == 0 ? float.NaN : roll == 1 ? float.PositiveInfinity : pool[random.Next(pool.Length)];
            }
            var expected = new int[n];
            var actual = new int[n];
            ArgMax.Reference(expected, logits, n, v);
            ArgMax.Forward(actual, logits, n, v);
            Assert.Equal(expected, actual);
        });

    [Property(MaxTest = 200)]
    public Property LayerNorm_equals_reference() =>
        Prop.ForAll((from n in Size(8) from ch in Size(300) from seed in Seed from width in Width select (n, ch, seed, width)).ToArbitrary(), c =>
        {
            var (n, ch, seed, width) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ch, 3f);
            var weight = Numerics.RandomFloats(random, ch);
            var bias = Numerics.RandomFloats(random, ch);
            var expected = new float[n * ch];
            var actual = new float[n * ch];
            LayerNorm.Reference(expected, input, weight, bias, n, ch, 1e-5f);
            LayerNorm.Forward(actual, input, weight, bias, n, ch, 1e-5f, width);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, $"layernorm {width} N={n} C={ch}");
        });

    [Property(MaxTest = 200)]
    public Property LayerNorm_output_has_mean_0_and_variance_1_before_the_affine_step() =>
        Prop.ForAll((from ch in Gen.Choose(2, 300) from seed in Seed from offset in Gen.Choose(-100, 100) from width in Width select (ch, seed, offset, width)).ToArbitrary(), c =>
        {
            var (ch, seed, offset, width) = c;
            var random = new Random(seed);
            // An offset and a spread far from 0 and 1, so the normalisation has work to do.
            var input = Numerics.RandomFloats(random, ch, 5f).Select(v => v + offset).ToArray();
            var output = new float[ch];
            LayerNorm.Forward(output, input, Enumerable.Repeat(1f, ch).ToArray(), new float[ch], 1, ch, 1e-12f, width);
            var mean = output.Average(v => (double)v);
            var variance = output.Average(v => (v - mean) * (v - mean));
            // Float32 inputs far from zero relative to their spread lose digits in x - mean (about one
            // rounding of |x| per element); the bound scales with that ratio, not a fixed constant.
            var inputMean = input.Average(v => (double)v);
            var spread = Math.Sqrt(input.Average(v => (v - inputMean) * (v - inputMean)));
            var cancellation = 4 * Math.Pow(2, -24) * input.Max(v => Math.Abs(v)) / spread;
            Assert.InRange(mean, -1e-5 - cancellation, 1e-5 + cancellation);
            Assert.InRange(variance, 1 - 1e-4 - 2 * cancellation, 1 + 1e-4 + 2 * cancellation);
        });

    [Property(MaxTest = 300)]
    public Property Activations_equal_reference() =>
        Prop.ForAll((from n in Gen.Choose(1, 9000) from seed in Seed from width in Width from activation in Gen.Elements(Enum.GetValues<MlpActivation>())
                     select (n, seed, width, activation)).ToArbitrary(), c =>
        {
            var (n, seed, width, activation) = c;
            var random = new Random(seed);
            // Mostly the model's range, some far out where the exponentials clamp.
            var input = Numerics.RandomFloats(random, n, 6f);
            for (var i = 0; i < n; i += 50) input[i] *= 20f;
            var expected = new float[n];
            var actual = new float[n];
            Activations.Reference(expected, input, activation);
            Activations.Forward(actual, input, activation, width);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, $"{activation} N={n} {width}");

            // The same per element at every width, wherever the element falls (vector or tail).
            var scalar = new float[n];
            Activations.Forward(scalar, input, activation, VectorWidth.Scalar);
            Assert.Equal(scalar, actual);
        });

    /// <summary>Values from C's erfc (Python's math.erfc); the exact GELU below is 0.5·x·erfc(−x/√2) by the same.</summary>
    [Theory]
    [InlineData(0.5, 0.4795001221869535)]
    [InlineData(1.0, 0.15729920705028513)]
    [InlineData(2.0, 0.004677734981047265)]
    [InlineData(2.5, 4.069520174449589e-4)]
    [InlineData(3.0, 2.2090496998585438e-5)]
    [InlineData(5.0, 1.5374597944280351e-12)]
    [InlineData(-1.0, 1.842700792949715)]
    public void Erfc_reference_matches_an_independent_one(double z, double erfc) =>
        Assert.Equal(erfc, Activations.Erfc(z), erfc * 1e-13);

    [Theory]
    [InlineData(1.0, 0.8413447460685429)]
    [InlineData(-1.0, -0.15865525393145707)]
    [InlineData(-3.0, -0.004049694094890287)]
    [InlineData(-5.0, -1.4332578593959731e-6)]
    [InlineData(-8.0, -4.9767684594174555e-15)]
    [InlineData(4.0, 3.9998733150326675)]
    public void Exact_gelu_keeps_its_relative_accuracy_far_out_at_every_width(double x, double gelu)
    {
        // x·Φ(x): on the negative side each value is a product, not 1 − erf(…) cancelling.
        Assert.Equal(gelu, Activations.Reference(x, MlpActivation.Gelu), Math.Abs(gelu) * 1e-12);
        foreach (var width in Widths)
        {
            var input = Enumerable.Repeat((float)x, 19).ToArray();
            var actual = new float[input.Length];
            Activations.Forward(actual, input, MlpActivation.Gelu, width);
            Assert.All(actual, v => Assert.Equal(gelu, v, Math.Abs(gelu) * 1e-6));
        }
        var infinite = new float[16];
        Activations.Forward(infinite, Enumerable.Repeat(float.PositiveInfinity, 16).ToArray(), MlpActivation.Gelu, VectorWidth.Vector256);
        Assert.All(infinite, v => Assert.Equal(float.PositiveInfinity, v));
    }

    [Property(MaxTest = 200)]
    public Property Softmax_rows_sum_to_1_and_equal_reference() =>
        Prop.ForAll((from n in Size(300) from seed in Seed select (n, seed)).ToArbitrary(), c =>
        {
            var (n, seed) = c;
            var input = Numerics.RandomFloats(new Random(seed), n, 20f);
            var expected = new float[n];
            var actual = new float[n];
            Softmax.Reference(expected, input);
            Softmax.Forward(actual, input);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, $"softmax N={n}");
            Assert.InRange(actual.Sum(v => (double)v), 1 - Tolerances.ProbabilitySum, 1 + Tolerances.ProbabilitySum);
            Assert.All(actual, p => Assert.InRange(p, 0f, 1f));
        });

    [Property(MaxTest = 200)]
    public Property Softmax_is_unchanged_by_adding_a_constant() =>
        Prop.ForAll((from n in Size(300) from seed in Seed from shift in Gen.Choose(-1000, 1000) select (n, seed, shift)).ToArbitrary(), c =>
        {
            var (n, seed, shift) = c;
            var input = Numerics.RandomFloats(new Random(seed), n, 10f);
            var shifted = input.Select(v => v + shift).ToArray();
            var a = new float[n];
            var b = new float[n];
            Softmax.Forward(a, input);
            Softmax.Forward(b, shifted);
            // Adding up to 1000 loses up to 1000·2^-24 ≈ 6e-5 absolute precision in the inputs themselves.
            Numerics.AssertClose(a, b, 1e-4, $"softmax shift {shift}");
        });

    [Fact]
    public void Softmax_of_a_fully_masked_row_is_zero_not_nan()
    {
        var output = new float[4];
        Softmax.Forward(output, new[] { float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity });
        Assert.All(output, p => Assert.Equal(0f, p));
    }

    [Fact]
    public void Softmax_does_not_overflow_on_large_logits()
    {
        var output = new float[3];
        Softmax.Forward(output, new[] { 1000f, 1000f, -1000f });
        Assert.Equal(new[] { 0.5f, 0.5f, 0f }, output);
    }

    [Property(MaxTest = 200)]
    public Property LogSoftmax_equals_reference_and_exponentiates_to_1() =>
        Prop.ForAll((from n in Size(600) from seed in Seed select (n, seed)).ToArbitrary(), c =>
        {
            var (n, seed) = c;
            var input = Numerics.RandomFloats(new Random(seed), n, 15f);
            var expected = new float[n];
            var actual = new float[n];
            LogSoftmax.Reference(expected, input);
            LogSoftmax.Forward(actual, input);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, $"log-softmax N={n}");
            Assert.InRange(actual.Sum(v => Math.Exp(v)), 1 - Tolerances.ProbabilitySum, 1 + Tolerances.ProbabilitySum);
        });

    [Property(MaxTest = 100)]
    public Property Embedding_equals_reference() =>
        Prop.ForAll((from n in Size(20) from ch in Size(70) from seed in Seed select (n, ch, seed)).ToArbitrary(), c =>
        {
            var (n, ch, seed) = c;
            var random = new Random(seed);
            const int vocab = 50, context = 30;
            var ids = Enumerable.Range(0, n).Select(_ => random.Next(vocab)).ToArray();
            var positions = Enumerable.Range(0, n).Select(_ => random.Next(context)).ToArray();
            var wte = Numerics.RandomFloats(random, vocab * ch);
            var wpe = Numerics.RandomFloats(random, context * ch);
            var expected = new float[n * ch];
            var actual = new float[n * ch];
            Embedding.Reference(expected, ids, positions, wte, wpe, ch);
            Embedding.Forward(actual, ids, positions, WeightData.Wrap(wte, vocab, ch), wpe, ch);
            Assert.Equal(expected, actual);
        });

    [Property(MaxTest = 150)]
    public Property Attention_equals_reference_with_cache_and_padding() =>
        Prop.ForAll((from batch in Size(3) from tq in Size(9) from past in Gen.Choose(0, 12) from nh in Size(4) from hs in Size(40) from seed in Seed from width in Width select (batch, tq, past, nh, hs, seed, width)).ToArbitrary(),
            c => AttentionEqualsReference(c.batch, c.tq, c.past, c.nh, c.hs, c.seed, c.width));

    /// <summary>
    /// Shapes where the products' widest tiles run: six or more queries of a tile, 64 or more keys and channels
    /// (Vector512's 6 × 4 registers), with the rows and columns those tiles leave over; and heads wider than GPT-2's
    /// (Cerebras-GPT's 80 and 128).
    /// </summary>
    [Property(MaxTest = 60)]
    public Property Attention_equals_reference_on_long_rows() =>
        Prop.ForAll((from tq in Gen.Choose(6, 40) from past in Gen.Choose(0, 90) from hs in Gen.OneOf(Gen.Choose(60, 72), Gen.Choose(73, 136)) from seed in Seed from width in Width select (tq, past, hs, seed, width)).ToArbitrary(),
            c => AttentionEqualsReference(1, c.tq, c.past, 2, c.hs, c.seed, c.width));

    private static void AttentionEqualsReference(int batch, int tq, int past, int nh, int hs, int seed, VectorWidth width)
    {
        var random = new Random(seed);
        var capacity = past + tq + random.Next(3);
        var ch = nh * hs;
        var qkv = Numerics.RandomFloats(random, batch * tq * 3 * ch, 2f);
        // The cache's earlier positions come from a qkv of `past` earlier tokens, appended in each layout.
        var earlier = Numerics.RandomFloats(random, batch * past * 3 * ch, 2f);
        // Some rows left-padded; occasionally a row masked entirely, which must give zeros, not NaN.
        var mask = Enumerable.Range(0, batch * capacity).Select(_ => random.NextDouble() < 0.2 ? 0 : 1).ToArray();
        var referenceKeys = new float[batch * nh * capacity * hs];
        var referenceValues = new float[batch * nh * capacity * hs];
        CausalSelfAttention.AppendKeyValuesReference(referenceKeys, referenceValues, earlier, batch, past, 0, capacity, nh, hs);
        CausalSelfAttention.AppendKeyValuesReference(referenceKeys, referenceValues, qkv, batch, tq, past, capacity, nh, hs);
        var keys = new float[batch * nh * capacity * hs];
        var values = new float[batch * nh * capacity * hs];
        CausalSelfAttention.AppendKeyValues(keys, values, earlier, batch, past, 0, capacity, nh, hs);
        CausalSelfAttention.AppendKeyValues(keys, values, qkv, batch, tq, past, capacity, nh, hs);

        var tk = past + tq;
        var expected = new float[batch * tq * ch];
        var actual = new float[batch * tq * ch];
        var expectedProbabilities = new float[batch * nh * tq * tk];
        var actualProbabilities = new float[batch * nh * tq * tk];
        // GPT-2's 1/√HS, or a smaller one (scale_attn_by_inverse_layer_idx divides it by the layer index + 1).
        var scale = 1f / MathF.Sqrt(hs) / (random.Next(2) == 0 ? 1 : random.Next(2, 9));
        CausalSelfAttention.Reference(expected, expectedProbabilities, qkv, referenceKeys, referenceValues, mask, batch, tq, past, capacity, nh, hs, scale);
        CausalSelfAttention.Forward(actual, actualProbabilities, qkv, keys, values, mask, batch, tq, past, capacity, nh, hs, scale, width);
        Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, "attention output");
        Numerics.AssertClose(expectedProbabilities, actualProbabilities, Tolerances.OperatorRelative, "attention probabilities");

        // Causality: no query gives weight to a key after its own position.
        for (var b = 0; b < batch; b++)
        for (var h = 0; h < nh; h++)
        for (var t = 0; t < tq; t++)
        for (var j = past + t + 1; j < tk; j++)
            Assert.Equal(0f, actualProbabilities[((b * nh + h) * tq + t) * tk + j]);
    }

    [Fact]
    public void Cache_slots_per_head_are_an_odd_multiple_of_16_at_least_the_capacity()
    {
        for (var capacity = 1; capacity <= 4096; capacity++)
        {
            var stride = KvCache.SlotStride(capacity);
            Assert.InRange(stride, capacity, capacity + 31);
            Assert.Equal(0, stride % 16);
            Assert.Equal(1, stride / 16 % 2);
        }
    }
}
