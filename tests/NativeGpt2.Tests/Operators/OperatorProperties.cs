using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Operators;

/// <summary>
/// Each vectorized operator equals its scalar reference for random sizes, including sizes that are not
/// multiples of the 8-float vector width, and the mathematical identities each operator must satisfy.
/// </summary>
public class OperatorProperties
{
    /// <summary>Sizes from 1 to 70 cover empty vector loops, exact multiples of 8 and every tail length.</summary>
    private static Gen<int> Size(int max = 70) => Gen.Choose(1, max);

    private static Gen<int> Seed => Gen.Choose(0, int.MaxValue);

    [Property(MaxTest = 200)]
    public Property MatMul_equals_the_naive_triple_loop() =>
        Prop.ForAll((from n in Size() from ic in Size() from oc in Size(80) from seed in Seed from withBias in Gen.Elements(true, false) select (n, ic, oc, seed, withBias)).ToArbitrary(), c =>
        {
            var (n, ic, oc, seed, withBias) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ic);
            var weight = Numerics.RandomFloats(random, ic * oc);
            var bias = withBias ? Numerics.RandomFloats(random, oc) : [];
            var expected = new float[n * oc];
            var actual = new float[n * oc];
            MatMul.Reference(expected, input, weight, bias, n, ic, oc);
            MatMul.Forward(actual, input, weight, bias, n, ic, oc);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative * Math.Sqrt(ic), $"matmul N={n} IC={ic} OC={oc}");
        });

    [Property(MaxTest = 200)]
    public Property MatMulTransposed_equals_the_naive_triple_loop() =>
        Prop.ForAll((from n in Size() from ic in Size() from oc in Size(150) from seed in Seed select (n, ic, oc, seed)).ToArbitrary(), c =>
        {
            var (n, ic, oc, seed) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ic);
            var weight = Numerics.RandomFloats(random, oc * ic);
            var expected = new float[n * oc];
            var actual = new float[n * oc];
            MatMulTransposed.Reference(expected, input, weight, n, ic, oc);
            MatMulTransposed.Forward(actual, input, weight, n, ic, oc);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative * Math.Sqrt(ic), $"matmul-transposed N={n} IC={ic} OC={oc}");
        });

    [Property(MaxTest = 200)]
    public Property LayerNorm_equals_reference() =>
        Prop.ForAll((from n in Size(8) from ch in Size(300) from seed in Seed select (n, ch, seed)).ToArbitrary(), c =>
        {
            var (n, ch, seed) = c;
            var random = new Random(seed);
            var input = Numerics.RandomFloats(random, n * ch, 3f);
            var weight = Numerics.RandomFloats(random, ch);
            var bias = Numerics.RandomFloats(random, ch);
            var expected = new float[n * ch];
            var actual = new float[n * ch];
            LayerNorm.Reference(expected, input, weight, bias, n, ch, 1e-5f);
            LayerNorm.Forward(actual, input, weight, bias, n, ch, 1e-5f);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, $"layernorm N={n} C={ch}");
        });

    [Property(MaxTest = 200)]
    public Property LayerNorm_output_has_mean_0_and_variance_1_before_the_affine_step() =>
        Prop.ForAll((from ch in Gen.Choose(2, 300) from seed in Seed from offset in Gen.Choose(-100, 100) select (ch, seed, offset)).ToArbitrary(), c =>
        {
            var (ch, seed, offset) = c;
            var random = new Random(seed);
            // An offset and a spread far from 0 and 1, so the normalisation has work to do.
            var input = Numerics.RandomFloats(random, ch, 5f).Select(v => v + offset).ToArray();
            var output = new float[ch];
            LayerNorm.Forward(output, input, Enumerable.Repeat(1f, ch).ToArray(), new float[ch], 1, ch, 1e-12f);
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

    [Property(MaxTest = 200)]
    public Property Gelu_equals_reference() =>
        Prop.ForAll((from n in Gen.Choose(1, 9000) from seed in Seed select (n, seed)).ToArbitrary(), c =>
        {
            var (n, seed) = c;
            var input = Numerics.RandomFloats(new Random(seed), n, 6f);
            var expected = new float[n];
            var actual = new float[n];
            Gelu.Reference(expected, input);
            Gelu.Forward(actual, input, n);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, $"gelu N={n}");
        });

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
            Embedding.Forward(actual, ids, positions, wte, wpe, ch);
            Assert.Equal(expected, actual);
        });

    [Property(MaxTest = 150)]
    public Property Attention_equals_reference_with_cache_and_padding() =>
        Prop.ForAll((from batch in Size(3) from tq in Size(9) from past in Gen.Choose(0, 12) from nh in Size(4) from hs in Size(20) from seed in Seed select (batch, tq, past, nh, hs, seed)).ToArbitrary(), c =>
        {
            var (batch, tq, past, nh, hs, seed) = c;
            var random = new Random(seed);
            var capacity = past + tq + random.Next(3);
            var ch = nh * hs;
            var qkv = Numerics.RandomFloats(random, batch * tq * 3 * ch, 2f);
            var keys = Numerics.RandomFloats(random, batch * nh * capacity * hs, 2f);
            var values = Numerics.RandomFloats(random, batch * nh * capacity * hs, 2f);
            // Some rows left-padded; occasionally a row masked entirely, which must give zeros, not NaN.
            var mask = Enumerable.Range(0, batch * capacity).Select(_ => random.NextDouble() < 0.2 ? 0 : 1).ToArray();
            CausalSelfAttention.AppendKeyValues(keys, values, qkv, batch, tq, past, capacity, nh, hs);

            var tk = past + tq;
            var expected = new float[batch * tq * ch];
            var actual = new float[batch * tq * ch];
            var expectedProbabilities = new float[batch * nh * tq * tk];
            var actualProbabilities = new float[batch * nh * tq * tk];
            CausalSelfAttention.Reference(expected, expectedProbabilities, qkv, keys, values, mask, batch, tq, past, capacity, nh, hs);
            CausalSelfAttention.Forward(actual, actualProbabilities, qkv, keys, values, mask, batch, tq, past, capacity, nh, hs);
            Numerics.AssertClose(expected, actual, Tolerances.OperatorRelative, "attention output");
            Numerics.AssertClose(expectedProbabilities, actualProbabilities, Tolerances.OperatorRelative, "attention probabilities");

            // Causality: no query gives weight to a key after its own position.
            for (var b = 0; b < batch; b++)
            for (var h = 0; h < nh; h++)
            for (var t = 0; t < tq; t++)
            for (var j = past + t + 1; j < tk; j++)
                Assert.Equal(0f, actualProbabilities[((b * nh + h) * tq + t) * tk + j]);
        });
}
