using NativeGpt2.Generation;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary><see cref="GenerationOptions.NumBeams"/>: Hugging Face's beam search, against searches written out without a cache.</summary>
[Collection(IlgpuAccelerators.Name)]
public class BeamSearchTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    [Theory]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(16)]
    public void Two_steps_find_the_likeliest_pair_whose_first_token_is_among_the_k_likeliest(int k)
    {
        var model = Models.Get("tiny");
        int[] prompt = [5, 77, 300];
        var result = model.GenerateIds(prompt, new GenerationOptions { NumBeams = k, MaxNewTokens = 2, StopAtEndOfText = false });

        // Step one keeps the k likeliest first tokens; step two picks the best pair among their continuations.
        var first = LogSoftmax(Last(model, prompt));
        var kept = Enumerable.Range(0, first.Length).OrderByDescending(v => first[v]).ThenBy(v => v).Take(k);
        var best = kept.SelectMany(t1 => LogSoftmax(Last(model, [.. prompt, t1])).Select((lp, t2) => (Score: first[t1] + lp, Pair: new[] { t1, t2 })))
            .MaxBy(c => c.Score).Pair;
        Assert.Equal(best, result.GeneratedIds);
        Assert.Equal(FinishReason.Length, result.FinishReason);
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void The_search_with_a_cache_finds_what_the_search_without_one_finds(string backend, int k, float lengthPenalty, int noRepeat, int minNew)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("tiny", backend);
        var options = new GenerationOptions { NumBeams = k, MaxNewTokens = 7, LengthPenalty = lengthPenalty, NoRepeatNgramSize = noRepeat, MinNewTokens = minNew };
        // The simulated GPU runs one prompt (its cache gathers are what it adds), the CPU both.
        foreach (int[] prompt in ((int[][])[[400, 12, 12, 12, 9], [1, 2, 3]]).Take(backend == TestBackends.Cpu ? 2 : 1))
        {
            var expected = Ranked(model, prompt, options, endOfText: 511);
            Assert.Equal(expected[0], model.GenerateIds(prompt, options).GeneratedIds);
            // The k best, as Hugging Face's num_return_sequences returns them.
            var sequences = model.GenerateSequencesIds(prompt, k, options);
            Assert.Equal(expected.Take(k).ToArray(), sequences.Select(r => r.GeneratedIds.ToList()).ToArray());
        }
    }

    public static TheoryData<string, int, float, int, int> Cases()
    {
        var cases = new TheoryData<string, int, float, int, int>();
        foreach (var backend in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu, TestBackends.Cuda }) cases.Add(backend, 8, 0.5f, 2, 3);
        cases.Add("cpu", 3, 1f, 0, 0);
        cases.Add("cpu", 32, -1f, 1, 0);
        cases.Add("cpu", 4, 2f, 3, 7);
        return cases;
    }

    [Theory]
    [InlineData(3, 1f, BeamStopping.Heuristic)]
    [InlineData(6, 0.3f, BeamStopping.Heuristic)]
    [InlineData(3, 1f, BeamStopping.Early)]
    [InlineData(6, 0.3f, BeamStopping.Early)]
    [InlineData(3, 1f, BeamStopping.Never)]
    [InlineData(6, -0.5f, BeamStopping.Never)]
    public void Beams_that_end_their_text_become_hypotheses_and_the_best_one_wins(int k, float lengthPenalty, BeamStopping stopping)
    {
        // Every token used once at most: after the 65 others only <|endoftext|> is left, so every beam ends with it.
        var options = new GenerationOptions { NumBeams = k, MaxNewTokens = 80, NoRepeatNgramSize = 1, LengthPenalty = lengthPenalty, EarlyStopping = stopping };
        var prompt = Shakespeare.Tokenizer!.Encode("A");
        var eos = Shakespeare.Config.EosTokenId!.Value;
        var result = Shakespeare.Generate("A", options);
        Assert.Equal(Ranked(Shakespeare, prompt, options, eos)[0], result.GeneratedIds);
        Assert.Equal(eos, result.GeneratedIds[^1]);
        Assert.Equal(FinishReason.EndOfText, result.FinishReason);
        Assert.Equal(Shakespeare.Tokenizer.Decode(result.GeneratedIds.SkipLast(1)), result.Text);
    }

    /// <summary>
    /// Hugging Face's <c>early_stopping</c>, each mode against the search written out, on a model whose end-of-text is as
    /// likely as its favourite token (so that beams finish at many lengths): after [1, 2, 3] with two beams, True stops
    /// with the first two hypotheses, False (the heuristic) later, "never" later still, and each finds another sequence.
    /// </summary>
    [Fact]
    public void Early_stopping_ends_the_search_as_each_of_hugging_faces_modes_does()
    {
        using var temp = new TempDirectory();
        using var model = Gpt2CausalLM.Load(TinyEndingLikeItsFavouriteToken(temp.Path), new ModelLoadOptions { Backend = TestBackends.Cpu });
        int[] prompt = [1, 2, 3];
        foreach (var (k, lengthPenalty) in new[] { (2, 1f), (4, 2f), (8, -1f) })
        {
            var found = new List<IReadOnlyList<int>>();
            foreach (var stopping in Enum.GetValues<BeamStopping>())
            {
                var options = new GenerationOptions { NumBeams = k, MaxNewTokens = 20, LengthPenalty = lengthPenalty, EarlyStopping = stopping };
                var expected = Ranked(model, prompt, options, endOfText: 511);
                var result = model.GenerateIds(prompt, options);
                Assert.Equal(expected[0], result.GeneratedIds);
                Assert.Equal(expected.Take(k).ToArray(), model.GenerateSequencesIds(prompt, k, options).Select(r => r.GeneratedIds.ToList()).ToArray());
                found.Add(result.GeneratedIds);
            }
            // With two beams the three modes part ways: False (the heuristic) 12 tokens, True 3, "never" 18.
            if (k == 2) Assert.Equal([12, 3, 18], found.Select(f => f.Count));
        }
        Assert.Equal(nameof(GenerationOptions.EarlyStopping),
            Assert.Throws<ArgumentOutOfRangeException>(new GenerationOptions { EarlyStopping = (BeamStopping)7 }.Validate).ParamName);
    }

    /// <summary>The tiny model with end-of-text's embedding row that of the token its greedy decoding favours, written into <paramref name="directory"/>.</summary>
    private static string TinyEndingLikeItsFavouriteToken(string directory)
    {
        var greedy = Models.Get("tiny").GenerateIds([1, 2, 3], new GenerationOptions { Greedy = true, MaxNewTokens = 40 }).GeneratedIds;
        var favourite = greedy.GroupBy(t => t).MaxBy(g => g.Count())!.Key;
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        var wte = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(builder.Tensors.Single(t => t.Name == "transformer.wte.weight").Data.AsSpan());
        const int C = 32, EndOfText = 511;
        wte.Slice(favourite * C, C).CopyTo(wte.Slice(EndOfText * C, C));
        return builder.WriteTo(directory);
    }

    [Fact]
    public void Several_sequences_are_the_search_s_best_or_draws_with_consecutive_seeds()
    {
        var beams = new GenerationOptions { NumBeams = 5, MaxNewTokens = 30, LengthPenalty = 0.7f };
        var best = Shakespeare.GenerateSequences("ROMEO:", 3, beams);
        Assert.Equal(3, best.Count);
        Assert.Equal(Shakespeare.Generate("ROMEO:", beams).GeneratedIds, best[0].GeneratedIds);
        Assert.Equal(3, best.Select(r => string.Join(',', r.GeneratedIds)).Distinct().Count());
        Assert.All(best, r => Assert.Equal(Shakespeare.Tokenizer!.Decode(r.GeneratedIds.Where(id => id != Shakespeare.Config.EosTokenId)), r.Text));

        var sampled = new GenerationOptions { Temperature = 0.9f, TopP = 0.95f, MaxNewTokens = 40, Seed = 17 };
        var drawn = Shakespeare.GenerateSequences("JULIET:", 4, sampled);
        for (var j = 0; j < 4; j++)
            Assert.Equal(Shakespeare.Generate("JULIET:", sampled with { Seed = 17 + j }).Text, drawn[j].Text);

        // Greedy and contrastive decoding draw nothing: one sequence, as many times as asked.
        foreach (var deterministic in new GenerationOptions[] { new() { Greedy = true, MaxNewTokens = 20 }, new() { PenaltyAlpha = 0.5f, TopK = 3, MaxNewTokens = 20 } })
        {
            var expected = Shakespeare.Generate("JULIET:", deterministic);
            var results = Shakespeare.GenerateSequences("JULIET:", 3, deterministic);
            Assert.Equal(3, results.Count);
            Assert.All(results, r => Assert.Equal(expected.GeneratedIds, r.GeneratedIds));
            Assert.All(results, r => Assert.Equal(expected.Text, r.Text));
        }

        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateSequences("A", 6, beams)).ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateSequences("A", 0)).ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateSequences("A", Gpt2CausalLM.MaxSequences + 1)).ParamName);
    }

    [Fact]
    public void Each_prompt_of_a_batch_is_searched_as_if_alone()
    {
        var options = new GenerationOptions { NumBeams = 4, MaxNewTokens = 30 };
        var batch = Shakespeare.Generate(["ROMEO:", "JULIET:\n"], options);
        Assert.Equal(Shakespeare.Generate("ROMEO:", options).GeneratedIds, batch[0].GeneratedIds);
        Assert.Equal(Shakespeare.Generate("JULIET:\n", options).GeneratedIds, batch[1].GeneratedIds);
    }

    [Fact]
    public void Options_beam_search_cannot_honour_are_refused_by_name()
    {
        Assert.Equal(nameof(GenerationOptions.NumBeams), Assert.Throws<ArgumentOutOfRangeException>(new GenerationOptions { NumBeams = 0 }.Validate).ParamName);
        Assert.Equal(nameof(GenerationOptions.NumBeams), Assert.Throws<ArgumentOutOfRangeException>(new GenerationOptions { NumBeams = GenerationOptions.MaxBeams + 1 }.Validate).ParamName);
        Assert.Equal(nameof(GenerationOptions.LengthPenalty), Assert.Throws<ArgumentOutOfRangeException>(new GenerationOptions { LengthPenalty = float.NaN }.Validate).ParamName);
        foreach (var (options, name) in new (GenerationOptions, string)[]
        {
            (new() { NumBeams = 2, RepetitionPenalty = 1.2f }, nameof(GenerationOptions.RepetitionPenalty)),
            (new() { NumBeams = 2, StopStrings = ["\n"] }, nameof(GenerationOptions.StopStrings)),
            (new() { NumBeams = 2, LogProbs = 1 }, nameof(GenerationOptions.LogProbs)),
            (new() { NumBeams = 2, LogitBias = new Dictionary<int, float> { [1] = 1 } }, nameof(GenerationOptions.LogitBias)),
            (new() { NumBeams = 2, SlidingWindow = true }, nameof(GenerationOptions.SlidingWindow)),
        })
        {
            var error = Assert.Throws<ArgumentException>(() => Shakespeare.Generate("A", options));
            Assert.Equal(name, error.ParamName);
            Assert.Contains("beam search", error.Message);
        }
        var streaming = Assert.Throws<ArgumentException>(() => Shakespeare.GenerateStreamAsync("A", new GenerationOptions { NumBeams = 2 }));
        Assert.Equal(nameof(GenerationOptions.NumBeams), streaming.ParamName);
    }

    [Fact]
    public void Hypotheses_keep_the_k_best_by_length_normalized_score()
    {
        var kept = new BeamHypotheses(2, lengthPenalty: 1f);
        kept.Add([1], -2, 1);          // -2
        Assert.False(kept.IsDone(-0.1, 1));
        kept.Add([2, 3], -3, 2);       // -1.5
        kept.Add([4, 5, 6], -9, 3);    // -3: worse than both, not kept
        Assert.Equal([2, 3], kept.Best());
        kept.Add([7, 8], -1, 2);       // -0.5: replaces -2
        Assert.Equal(2, kept.Count);
        Assert.Equal([7, 8], kept.Best());
        // Done when no running beam can beat the worst kept (-1.5) even at the length it has reached.
        Assert.True(kept.IsDone(-4, 2));
        Assert.False(kept.IsDone(-2, 2));
    }

    /// <summary>Beam search written out plainly: a full forward pass per beam and step, every candidate sorted. Every hypothesis, best first.</summary>
    private static List<List<int>> Ranked(Gpt2CausalLM model, int[] prompt, GenerationOptions options, int endOfText)
    {
        var k = options.NumBeams;
        var beams = new List<(List<int> Tokens, double Score)> { ([], 0) };
        var hypotheses = new List<(double Score, List<int> Tokens)>();
        double worst = 1e9;
        void Add(List<int> tokens, double sum, int length)
        {
            var score = sum / Math.Pow(length, options.LengthPenalty);
            if (hypotheses.Count >= k && !(score > worst)) return;
            hypotheses.Add((score, tokens));
            if (hypotheses.Count > k)
            {
                hypotheses.RemoveAt(hypotheses.FindIndex(h => h.Score == hypotheses.Min(m => m.Score)));
                worst = hypotheses.Min(h => h.Score);
            }
            else worst = Math.Min(worst, score);
        }
        var done = false;
        for (var step = 1; step <= options.MaxNewTokens && !done; step++)
        {
            var candidates = new List<(double Score, int Flat, int Beam, int Token)>();
            for (var b = 0; b < beams.Count; b++)
            {
                var sequence = prompt.Concat(beams[b].Tokens).ToList();
                var logProbs = LogSoftmax(Last(model, [.. sequence]));
                var n = options.NoRepeatNgramSize;
                for (var start = 0; n > 0 && sequence.Count + 1 >= n && start + n <= sequence.Count; start++)
                {
                    if (sequence.Skip(start).Take(n - 1).SequenceEqual(sequence.Skip(sequence.Count - (n - 1)))) logProbs[sequence[start + n - 1]] = double.NegativeInfinity;
                }
                if (beams[b].Tokens.Count < options.MinNewTokens) logProbs[endOfText] = double.NegativeInfinity;
                for (var v = 0; v < logProbs.Length; v++)
                {
                    if (!double.IsNegativeInfinity(logProbs[v])) candidates.Add((beams[b].Score + logProbs[v], b * logProbs.Length + v, b, v));
                }
            }
            var ranked = candidates.OrderByDescending(c => c.Score).ThenBy(c => c.Flat).Take(2 * k).ToList();
            var next = new List<(List<int> Tokens, double Score)>();
            for (var rank = 0; rank < ranked.Count && next.Count < k; rank++)
            {
                var c = ranked[rank];
                if (c.Token != endOfText) next.Add(([.. beams[c.Beam].Tokens, c.Token], c.Score));
                else if (rank < k) Add([.. beams[c.Beam].Tokens, c.Token], c.Score, step);
            }
            // Hugging Face's early_stopping: True stops once k are finished; False when the best running beam, at the length it
            // has reached, cannot beat the worst of them; "never" at the length where it would score best.
            var reachable = options.EarlyStopping == BeamStopping.Never && options.LengthPenalty > 0 ? options.MaxNewTokens : step;
            done = next.Count == 0 || hypotheses.Count >= k
                && (options.EarlyStopping == BeamStopping.Early || worst >= ranked[0].Score / Math.Pow(reachable, options.LengthPenalty));
            while (next.Count is > 0 && next.Count < k) next.Add((next[^1].Tokens, double.NegativeInfinity));
            if (!done) beams = next;
        }
        if (!done)
        {
            foreach (var (tokens, score) in beams) Add(tokens, score, tokens.Count);
        }
        // Best first; of equal scores, the one kept last first.
        return [.. hypotheses.Select((h, i) => (h, i)).OrderByDescending(x => x.h.Score).ThenByDescending(x => x.i).Select(x => x.h.Tokens)];
    }

    private static float[] Last(Gpt2CausalLM model, int[] ids) => model.Forward(TokenBatch.FromIds(ids)).Logits.Row(0, ids.Length - 1).ToArray();

    private static double[] LogSoftmax(float[] logits)
    {
        var max = logits.Max();
        var logSum = max + Math.Log(logits.Sum(x => Math.Exp(x - max)));
        return [.. logits.Select(x => x - logSum)];
    }
}
