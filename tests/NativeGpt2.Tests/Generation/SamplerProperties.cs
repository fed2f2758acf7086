using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;
using NativeGpt2.Generation;

namespace NativeGpt2.Tests.Generation;

public class SamplerProperties
{
    private static Gen<float[]> Logits(int minV = 2, int maxV = 60) =>
        from v in Gen.Choose(minV, maxV)
        from seed in Gen.Choose(0, int.MaxValue)
        let random = new Random(seed)
        // Some repeated values, so ties at the top-k boundary occur.
        select Enumerable.Range(0, v).Select(_ => (float)Math.Round(random.NextDouble() * 8 - 4, random.Next(2) == 0 ? 0 : 3)).ToArray();

    [Property(MaxTest = 300)]
    public Property TopK_never_emits_outside_the_k_best() =>
        Prop.ForAll((from logits in Logits() from k in Gen.Choose(1, 10) from seed in Gen.Choose(0, int.MaxValue) select (logits, k, seed)).ToArbitrary(), c =>
        {
            var (logits, k, seed) = c;
            var kth = logits.OrderByDescending(v => v).ElementAt(Math.Min(k, logits.Length) - 1);
            var options = new GenerationOptions { TopK = k, Temperature = 1.5f };
            var random = new Random(seed);
            for (var i = 0; i < 50; i++)
                Assert.True(logits[Sampler.Sample(logits, options, [], random)] >= kth);
            var distribution = Sampler.Distribution(logits, options, []);
            Assert.All(Enumerable.Range(0, logits.Length), i => Assert.True(logits[i] >= kth || distribution[i] == 0));
        });

    [Property(MaxTest = 300)]
    public Property TopP_keeps_the_smallest_set_reaching_p() =>
        Prop.ForAll((from logits in Logits() from p in Gen.Choose(1, 100) select (logits, p / 100f)).ToArbitrary(), c =>
        {
            var (logits, p) = c;
            var full = Sampler.Distribution(logits, new GenerationOptions(), []);
            var kept = Sampler.Distribution(logits, new GenerationOptions { TopP = p }, []);
            var keptIds = Enumerable.Range(0, logits.Length).Where(i => kept[i] > 0).ToList();
            var mass = keptIds.Sum(i => full[i]);
            // Reaches p…
            Assert.True(mass >= p - 1e-9, $"kept mass {mass} < p {p}");
            // …with the most likely tokens…
            var minKept = keptIds.Min(i => full[i]);
            Assert.All(Enumerable.Range(0, logits.Length).Except(keptIds), i => Assert.True(full[i] <= minKept + 1e-12));
            // …and no smaller set would: without its least likely member the set falls short of p.
            Assert.True(mass - minKept < p + 1e-9, $"dropping {minKept} still leaves {mass - minKept} >= {p}");
            Assert.Equal(1.0, kept.Sum(), 9);
        });

    [Property(MaxTest = 200)]
    public Property TopK_and_TopP_equal_a_full_sort_of_the_vocabulary() =>
        Prop.ForAll((from v in Gen.Choose(1, 3000) from spread in Gen.Choose(0, 40) from p in Gen.Choose(1, 100) from k in Gen.Choose(0, 50)
                     from seed in Gen.Choose(0, int.MaxValue) select (v, spread, p / 100f, k, seed)).ToArbitrary(), c =>
        {
            // Probabilities over many powers of two (a wide spread) or few (none), with ties, as the sampler's shortcuts see them.
            var (V, spread, p, k, seed) = c;
            var random = new Random(seed);
            var logits = Enumerable.Range(0, V).Select(_ => (float)Math.Round(random.NextDouble() * spread, random.Next(3))).ToArray();
            var options = new GenerationOptions { TopP = p, TopK = k, Temperature = 0.7f };
            Assert.Equal(Reference(logits, options), Sampler.Distribution(logits, options, []));
        });

    /// <summary>
    /// Top-k on the logits, softmax at the temperature, then top-p (Hugging Face's order), written out with full sorts: what
    /// the sampler computes without its shortcuts.
    /// </summary>
    private static double[] Reference(float[] scores, GenerationOptions options)
    {
        var V = scores.Length;
        var kth = options.TopK > 0 && options.TopK < V ? scores.OrderBy(x => x).ElementAt(V - options.TopK) : float.NegativeInfinity;
        var max = scores.Max();
        var probabilities = scores.Select(x => x >= kth ? Math.Exp((x - (double)max) / options.Temperature) : 0).ToArray();
        Normalize(probabilities);
        if (options.TopP >= 1f) return probabilities;
        var order = Enumerable.Range(0, V).Where(i => probabilities[i] > 0).OrderByDescending(i => probabilities[i]).ThenBy(i => i).ToArray();
        double cumulative = 0;
        var keep = 0;
        while (keep < order.Length && (keep == 0 || cumulative < options.TopP)) cumulative += probabilities[order[keep++]];
        for (var r = keep; r < order.Length; r++) probabilities[order[r]] = 0;
        Normalize(probabilities);
        return probabilities;

        static void Normalize(double[] q)
        {
            var sum = q.Sum();
            for (var i = 0; i < q.Length; i++) q[i] /= sum;
        }
    }

    [Property(MaxTest = 300)]
    public Property TypicalP_keeps_the_fewest_most_typical_tokens_reaching_the_mass() =>
        Prop.ForAll((from logits in Logits() from p in Gen.Choose(1, 100) select (logits, p / 100.0)).ToArbitrary(), c =>
        {
            var (logits, mass) = c;
            var full = Sampler.Distribution(logits, new GenerationOptions { Temperature = 0.9f }, []);
            var kept = Sampler.Distribution(logits, new GenerationOptions { Temperature = 0.9f, TypicalP = (float)mass }, []);
            // How far each token's information is from the entropy, as Hugging Face measures typicality.
            var entropy = -full.Where(q => q > 0).Sum(q => q * Math.Log(q));
            var distance = full.Select(q => q > 0 ? Math.Abs(-Math.Log(q) - entropy) : double.PositiveInfinity).ToArray();
            var keptIds = Enumerable.Range(0, logits.Length).Where(i => kept[i] > 0).ToList();
            var dropped = Enumerable.Range(0, logits.Length).Where(i => full[i] > 0 && kept[i] == 0).ToList();
            var threshold = keptIds.Max(i => distance[i]);
            // Every kept token is at least as typical as every dropped one…
            Assert.All(dropped, i => Assert.True(distance[i] > threshold));
            // …the kept ones reach the mass (float rounding aside) unless every token is kept…
            var keptMass = keptIds.Sum(i => full[i]);
            Assert.True(dropped.Count == 0 || keptMass >= (float)mass - 1e-6, $"kept mass {keptMass} < {mass}");
            // …and without the least typical of them the rest would not.
            var inner = keptIds.Where(i => distance[i] < threshold).Sum(i => full[i]);
            Assert.True(inner < (float)mass + 1e-6, $"the more typical tokens alone hold {inner} >= {mass}");
            Assert.Equal(1.0, kept.Sum(), 9);
            foreach (var i in keptIds) Assert.Equal(full[i] / keptMass, kept[i], 12);
        });

    [Property(MaxTest = 300)]
    public Property MinP_keeps_the_tokens_at_least_p_times_as_likely_as_the_best() =>
        Prop.ForAll((from logits in Logits() from p in Gen.Choose(0, 100) from seed in Gen.Choose(0, int.MaxValue) select (logits, p / 100f, seed)).ToArbitrary(), c =>
        {
            var (logits, p, seed) = c;
            var full = Sampler.Distribution(logits, new GenerationOptions { Temperature = 0.8f }, []);
            var options = new GenerationOptions { Temperature = 0.8f, MinP = p };
            var kept = Sampler.Distribution(logits, options, []);
            var floor = p * full.Max();
            var keptMass = full.Where(q => q >= floor).Sum();
            for (var i = 0; i < logits.Length; i++)
                Assert.Equal(full[i] >= floor ? full[i] / keptMass : 0, kept[i], 12);
            var random = new Random(seed);
            for (var i = 0; i < 30; i++) Assert.True(full[Sampler.Sample(logits, options, [], random)] >= floor);
        });

    [Property(MaxTest = 200)]
    public Property Temperature_towards_zero_equals_greedy() =>
        Prop.ForAll((from logits in Logits() from seed in Gen.Choose(0, int.MaxValue) select (logits, seed)).ToArbitrary(), c =>
        {
            var (logits, seed) = c;
            var greedy = Sampler.Sample(logits, new GenerationOptions { Greedy = true }, [], new Random(seed));
            Assert.Equal(greedy, Sampler.Sample(logits, new GenerationOptions { Temperature = 0f }, [], new Random(seed)));
            var sorted = logits.OrderByDescending(v => v).ToArray();
            // With a clear maximum, a tiny temperature puts all the mass on it.
            if (sorted[0] - sorted[1] > 0.01f)
                Assert.Equal(greedy, Sampler.Sample(logits, new GenerationOptions { Temperature = 1e-3f }, [], new Random(seed)));
        });

    [Fact]
    public void Token_frequencies_match_the_softmax()
    {
        float[] logits = [2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f];
        var expected = Sampler.Distribution(logits, new GenerationOptions(), []);
        var softmax = logits.Select(v => Math.Exp(v)).ToArray();
        Assert.All(Enumerable.Range(0, logits.Length), i => Assert.Equal(softmax[i] / softmax.Sum(), expected[i], 12));

        const int draws = 100_000;
        var counts = new int[logits.Length];
        var random = new Random(1234);
        for (var i = 0; i < draws; i++) counts[Sampler.Sample(logits, new GenerationOptions(), [], random)]++;

        // Pearson's chi-square with 5 degrees of freedom: 20.5 is its 0.999 quantile.
        var chiSquare = Enumerable.Range(0, logits.Length).Sum(i => Math.Pow(counts[i] - draws * expected[i], 2) / (draws * expected[i]));
        Assert.True(chiSquare < 20.5, $"chi-square {chiSquare:F2}; counts {string.Join(", ", counts)}");
    }

    [Property(MaxTest = 200)]
    public Property Presence_and_frequency_penalties_and_logit_bias_shift_the_logits_as_OpenAI_defines_them() =>
        Prop.ForAll((from logits in Logits() from seed in Gen.Choose(0, int.MaxValue) select (logits, seed)).ToArbitrary(), c =>
        {
            // logit[j] − count[j] · frequency − [count[j] > 0] · presence + bias[j], count over the output only; then
            // temperature, top-k and top-p as ever. The prompt's tokens (the repetition penalty's) play no part.
            var (logits, seed) = c;
            var random = new Random(seed);
            var V = logits.Length;
            var generated = Enumerable.Range(0, random.Next(12)).Select(_ => random.Next(V)).ToArray();
            var prompt = Enumerable.Range(0, 5).Select(_ => random.Next(V)).ToArray();
            var bias = Enumerable.Range(0, random.Next(4)).Select(_ => random.Next(V)).Distinct().ToDictionary(id => id, _ => (float)Math.Round(random.NextDouble() * 20 - 10, 2));
            var options = new GenerationOptions
            {
                PresencePenalty = (float)Math.Round(random.NextDouble() * 4 - 2, 2),
                FrequencyPenalty = (float)Math.Round(random.NextDouble() * 4 - 2, 2),
                LogitBias = bias,
                Temperature = 0.7f,
                TopK = random.Next(2) * random.Next(1, V),
            };
            var expected = (float[])logits.Clone();
            foreach (var group in generated.GroupBy(id => id))
                expected[group.Key] -= group.Count() * options.FrequencyPenalty + options.PresencePenalty;
            foreach (var (id, b) in bias) expected[id] += b;
            var plain = options with { PresencePenalty = 0, FrequencyPenalty = 0, LogitBias = null };
            Assert.Equal(Sampler.Distribution(expected, plain, prompt), Sampler.Distribution(logits, options, prompt, generated));
            Assert.Equal(Sampler.Sample(expected, plain, prompt, new Random(seed)), Sampler.Sample(logits, options, prompt, new Random(seed), generated));
            // Greedy picks the argmax of the adjusted logits too.
            Assert.Equal(Sampler.Sample(expected, new GenerationOptions { Greedy = true }, prompt, random),
                Sampler.Sample(logits, options with { Greedy = true }, prompt, random, generated));
        });

    [Fact]
    public void A_logit_bias_of_minus_100_bans_a_token_and_plus_100_forces_one()
    {
        float[] logits = [5f, 1f, 0f, -3f];
        var banned = Sampler.Distribution(logits, new GenerationOptions { LogitBias = new Dictionary<int, float> { [0] = -100 } }, []);
        Assert.True(banned[0] < 1e-40);
        var forced = Sampler.Distribution(logits, new GenerationOptions { LogitBias = new Dictionary<int, float> { [3] = 100 } }, []);
        Assert.All(forced.Take(3), p => Assert.True(p < 1e-30));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Sample(logits, new GenerationOptions { LogitBias = new Dictionary<int, float> { [4] = 1 } }, [], new Random(1)));
        Assert.Contains("outside the vocabulary [0, 4)", error.Message);
    }

    [Fact]
    public void Repetition_penalty_makes_seen_tokens_less_likely()
    {
        float[] logits = [2f, -1f, 1f];
        var options = new GenerationOptions { RepetitionPenalty = 2f };
        var before = Sampler.Distribution(logits, new GenerationOptions(), []);
        var after = Sampler.Distribution(logits, options, [0, 1, 1]);
        Assert.True(after[0] < before[0]);
        Assert.True(after[1] < before[1]);
        Assert.True(after[2] > before[2]);
        // Hugging Face's rule: positive logits divided, negative multiplied.
        var expected = new[] { Math.Exp(1), Math.Exp(-2), Math.Exp(1) };
        Assert.Equal(expected[0] / expected.Sum(), after[0], 12);
    }

    [Fact]
    public void Same_seed_gives_the_same_tokens()
    {
        float[] logits = Enumerable.Range(0, 50).Select(i => (float)Math.Sin(i)).ToArray();
        var options = new GenerationOptions { TopK = 20, TopP = 0.9f, Temperature = 0.8f };
        int[] Draw(int seed)
        {
            var random = new Random(seed);
            return Enumerable.Range(0, 40).Select(_ => Sampler.Sample(logits, options, [], random)).ToArray();
        }
        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void Nan_logits_are_a_numerical_error_not_token_zero()
    {
        var error = Assert.Throws<NumericalException>(() => Sampler.Sample([float.NaN, float.NaN], new GenerationOptions(), [], new Random(1)));
        Assert.Contains("NaN", error.Message);
        Assert.Throws<NumericalException>(() => Sampler.Sample([float.NaN, float.NaN], new GenerationOptions { Greedy = true }, [], new Random(1)));
        Assert.Throws<NumericalException>(() => Sampler.Sample([1f, float.PositiveInfinity], new GenerationOptions(), [], new Random(1)));
        Assert.Throws<NumericalException>(() => Sampler.Sample([float.NegativeInfinity, float.NegativeInfinity], new GenerationOptions(), [], new Random(1)));
    }

    /// <summary>
    /// Over a whole vocabulary, the first NaN is named, and before any infinity; +∞ is named where there is no NaN; −∞ and
    /// finite logits whose sum overflows are no error.
    /// </summary>
    [Property(MaxTest = 100)]
    public Property The_first_bad_logit_is_named() =>
        Prop.ForAll((from nan in Gen.Choose(-1, 2999) from infinity in Gen.Choose(-1, 2999) from seed in Gen.Choose(0, int.MaxValue)
                     select (nan, infinity, seed)).ToArbitrary(), c =>
        {
            var (nan, infinity, seed) = c;
            var random = new Random(seed);
            // Huge finite logits (their float sum overflows) and a few ruled-out tokens.
            var logits = Enumerable.Range(0, 3000).Select(_ => random.Next(10) == 0 ? float.NegativeInfinity : (float)(random.NextDouble() * 3e38)).ToArray();
            logits[random.Next(3000)] = 1f;
            if (infinity >= 0) logits[infinity] = float.PositiveInfinity;
            if (nan >= 0) logits[nan] = float.NaN;
            var options = new GenerationOptions { Temperature = 0.7f, TopK = 5 };
            if (nan < 0 && infinity < 0)
            {
                var id = Sampler.Sample(logits, options, [], random);
                Assert.True(float.IsFinite(logits[id]));
                return;
            }
            var error = Assert.Throws<NumericalException>(() => Sampler.Sample(logits, options, [], random));
            Assert.Contains(nan >= 0 ? $"NaN (first at token {nan})" : $"+infinity (first at token {infinity})", error.Message);
        });
}
