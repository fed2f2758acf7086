using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Backends;
using NativeGpt2.Generation;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary>
/// Top-k sampling from each row's candidates (the tokens at least the k-th largest, which the backend finds) picks what
/// sampling from the whole row picks, and generation asks the backend for the candidates instead of the logits exactly
/// when they decide the pick.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class TopKCandidateTests
{
    [Property(MaxTest = 300)]
    public Property Sampling_from_the_candidates_of_any_larger_k_draws_what_sampling_from_the_row_draws() =>
        Prop.ForAll((from v in Gen.Choose(2, 3000) from spread in Gen.Choose(0, 30) from k in Gen.Choose(1, 64) from asked in Gen.Choose(0, 64)
                     from rule in Gen.Choose(0, 4) from p in Gen.Choose(1, 100) from t in Gen.Choose(1, 30) from seed in Gen.Choose(0, int.MaxValue)
                     select (v, spread, k, asked, rule, p / 100f, t / 10f, seed)).ToArbitrary(), c =>
        {
            // The candidates of a k at least the options' (a shared batch asks for its rows' largest k); rule 4 is greedy,
            // which needs a k of 1.
            var (V, spread, k, asked, rule, p, temperature, seed) = c;
            var random = new Random(seed);
            // Values over a narrow or wide range, some rounded (ties at the boundary), some ruled out.
            var logits = Enumerable.Range(0, V).Select(_ => random.Next(25) == 0 ? float.NegativeInfinity
                : (float)Math.Round(random.NextDouble() * spread - spread / 2.0, random.Next(3))).ToArray();
            logits[random.Next(V)] = 1f;
            var options = new GenerationOptions
            {
                Temperature = temperature,
                TopK = Math.Min(k, V - 1),
                TopP = rule == 1 ? p : 1f,
                MinP = rule == 2 ? p / 2 : 0f,
                TypicalP = rule == 3 ? p : 1f,
                Greedy = rule == 4,
            };
            Assert.Equal(rule == 4 ? 1 : options.TopK, Sampler.CandidatesNeeded(options, V));
            var candidates = TopKRows.For(1, IBackend.MaxTopKCapacity);
            TopKCandidates.Forward(candidates.Records, logits, 1, V, Math.Clamp(asked, options.TopK, Math.Min(IBackend.MaxTopKCapacity / 2, V - 1)), IBackend.MaxTopKCapacity);
            // More ties at the boundary than the capacity: generation reads the whole row instead.
            if (!candidates.IsUsable(0)) return;
            Random fromRow = new(seed), fromCandidates = new(seed);
            for (var draw = 0; draw < 20; draw++)
            {
                Assert.Equal(Sampler.Sample(logits, options, [], fromRow),
                    Sampler.SampleCandidates(candidates.IdsOf(0), candidates.ValuesOf(0), options, fromCandidates));
            }
        });

    [Fact]
    public void Candidates_decide_the_pick_only_without_what_reads_other_tokens()
    {
        var plain = new GenerationOptions { TopK = 40, Temperature = 0.8f, TopP = 0.9f, MinP = 0.05f, TypicalP = 0.95f };
        Assert.Equal(40, Sampler.CandidatesNeeded(plain, 50257));
        Assert.Equal(0, Sampler.CandidatesNeeded(plain with { TopK = 0 }, 50257));
        Assert.Equal(0, Sampler.CandidatesNeeded(plain with { TopK = IBackend.MaxTopKCapacity / 2 + 1 }, 50257));
        Assert.Equal(0, Sampler.CandidatesNeeded(plain, 40));
        // Greedy needs the largest logit and its ties, whatever TopK says; temperature 0 is greedy.
        Assert.Equal(1, Sampler.CandidatesNeeded(plain with { Greedy = true }, 50257));
        Assert.Equal(1, Sampler.CandidatesNeeded(plain with { Temperature = 0f, TopK = 0 }, 50257));
        foreach (var greedy in new[] { false, true })
        {
            var options = plain with { Greedy = greedy };
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { RepetitionPenalty = 1.2f }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { PresencePenalty = 0.5f }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { FrequencyPenalty = 0.5f }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { LogitBias = new Dictionary<int, float> { [3] = 1f } }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { NoRepeatNgramSize = 2 }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { MinNewTokens = 1 }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { LogProbs = 2 }, 50257));
            Assert.Equal(0, Sampler.CandidatesNeeded(options with { PenaltyAlpha = 0.6f, TopK = 4 }, 50257));
        }
    }

    /// <summary>
    /// A shared batch's step brings back each row's argmax when every row is plainly greedy, the candidates of the largest k
    /// its rows need when every row can pick from candidates (greedy rows among sampled ones too), else the logits.
    /// </summary>
    [Fact]
    public void A_shared_batch_asks_for_the_least_that_decides_every_rows_pick()
    {
        GenerationOptions greedy = new() { Greedy = true }, k8 = new() { TopK = 8 }, k40 = new() { TopK = 40, TopP = 0.9f }, full = new() { TopP = 0.9f };
        Assert.Equal((true, 1), GenerationBatcher.PicksFor([greedy, greedy with { Seed = 3 }], 50257));
        Assert.Equal((false, 40), GenerationBatcher.PicksFor([greedy, k8, k40], 50257));
        Assert.Equal((false, 8), GenerationBatcher.PicksFor([k8, greedy], 50257));
        Assert.Equal((false, 0), GenerationBatcher.PicksFor([greedy, full], 50257));
        Assert.Equal((false, 0), GenerationBatcher.PicksFor([greedy, greedy with { LogProbs = 1 }], 50257));
        Assert.Equal((false, 0), GenerationBatcher.PicksFor([k8, k40 with { RepetitionPenalty = 1.1f }], 50257));
    }

    /// <summary>
    /// A decoding step asked for candidates brings back those of the logits it would have brought back (the backend's own
    /// operation on the same head output), and no logits; the session's tokens are then those of the host's full pick.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void A_step_asked_for_candidates_brings_back_those_of_its_logits_and_not_the_logits(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        int V = model.Config.VocabSize, k = 5;
        var batch = TokenBatch.LeftPadded([model.Tokenizer!.Encode("ROMEO:\n"), model.Tokenizer.Encode("O")], 0);
        using var full = model.CreateCache(2);
        using var asked = model.CreateCache(2);
        var logits = model.Next(batch, full, greedy: false).Logits!;
        var step = model.Next(batch, asked, greedy: false, topK: k);

        Assert.Null(step.Logits);
        var candidates = step.Candidates!;
        var expected = TopKRows.For(2, candidates.Capacity);
        TopKCandidates.Forward(expected.Records, logits, 2, V, k, candidates.Capacity);
        Assert.Equal(2, candidates.Rows);
        for (var b = 0; b < 2; b++)
        {
            Assert.True(expected.CountOf(b) >= k);
            Assert.Equal(expected.CountOf(b), candidates.CountOf(b));
            Assert.Equal(expected.IdsOf(b).ToArray(), candidates.IdsOf(b).ToArray());
            Assert.Equal(expected.ValuesOf(b).ToArray(), candidates.ValuesOf(b).ToArray());
        }

        // Generation through the candidates gives the tokens of a loop that samples from the whole row at every step.
        // Fewer tokens on ILGPU's simulated GPU, where each of the loop's full forwards takes seconds.
        var options = new GenerationOptions { TopK = k, Temperature = 0.9f, TopP = 0.95f, MaxNewTokens = backend == TestBackends.IlgpuCpu ? 4 : 12, Seed = 5, StopAtEndOfText = false };
        var generated = model.GenerateIds(model.Tokenizer.Encode("ROMEO:\n"), options).GeneratedIds;
        var tokens = model.Tokenizer.Encode("ROMEO:\n").ToList();
        var random = new Random(5);
        for (var s = 0; s < options.MaxNewTokens; s++)
        {
            var row = model.Forward(TokenBatch.FromIds(tokens)).Logits.Data.AsSpan((tokens.Count - 1) * V, V);
            tokens.Add(Sampler.Sample(row, options, tokens, random));
        }
        Assert.Equal(tokens.Skip(tokens.Count - options.MaxNewTokens), generated);
    }
}
