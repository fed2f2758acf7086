using NativeGpt2.Generation;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary><see cref="GenerationOptions.PenaltyAlpha"/>: Hugging Face's contrastive search, against a search written out without a cache.</summary>
[Collection(IlgpuAccelerators.Name)]
public class ContrastiveSearchTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void The_search_with_a_cache_picks_what_the_search_without_one_picks(string backend, int k, float alpha, float repetition, int noRepeat, int minNew)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("tiny", backend);
        var options = new GenerationOptions
        {
            // The simulated GPU runs a full pass per candidate for the reference, slowly: fewer steps there.
            PenaltyAlpha = alpha, TopK = k, MaxNewTokens = backend == TestBackends.Cpu ? 12 : 6, RepetitionPenalty = repetition, NoRepeatNgramSize = noRepeat, MinNewTokens = minNew,
        };
        // The simulated GPU runs one prompt (its batched candidates and cache gathers are what it adds), the CPU both.
        foreach (int[] prompt in ((int[][])[[400, 12, 12, 12, 9], [1, 2, 3, 1, 2]]).Take(backend == TestBackends.Cpu ? 2 : 1))
        {
            var expected = Reference(model, prompt, options, endOfText: 511);
            Assert.Equal(expected, model.GenerateIds(prompt, options).GeneratedIds);
        }
    }

    public static TheoryData<string, int, float, float, int, int> Cases()
    {
        var cases = new TheoryData<string, int, float, float, int, int>();
        foreach (var backend in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu, TestBackends.Cuda }) cases.Add(backend, 5, 0.6f, 1.3f, 3, 4);
        cases.Add("cpu", 2, 0.6f, 1f, 0, 0);
        cases.Add("cpu", 4, 1f, 1f, 0, 0);
        cases.Add("cpu", 32, 0.2f, 1f, 2, 12);
        return cases;
    }

    [Fact]
    public void The_penalty_turns_the_search_away_from_what_the_text_already_says()
    {
        // Greedy decoding of the small trained model repeats its lines ("Second Murderer:" twice in 240 characters); the
        // contrastive search of the same length does not.
        var greedy = Shakespeare.Generate("ROMEO:", new GenerationOptions { Greedy = true, MaxNewTokens = 240 });
        var contrastive = Shakespeare.Generate("ROMEO:", new GenerationOptions { PenaltyAlpha = 0.6f, TopK = 4, MaxNewTokens = 240 });
        Assert.True(DistinctLines(contrastive.Text) > DistinctLines(greedy.Text),
            $"greedy:\n{greedy.Text}\n---\ncontrastive:\n{contrastive.Text}");
        Assert.Equal(Reference(Shakespeare, [.. Shakespeare.Tokenizer!.Encode("ROMEO:")], new GenerationOptions { PenaltyAlpha = 0.6f, TopK = 4, MaxNewTokens = 40 },
            Shakespeare.Config.EosTokenId!.Value), contrastive.GeneratedIds.Take(40));

        static double DistinctLines(string text)
        {
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            return (double)lines.Distinct().Count() / lines.Length;
        }
    }

    [Fact]
    public void Each_prompt_of_a_batch_is_searched_as_if_alone()
    {
        var options = new GenerationOptions { PenaltyAlpha = 0.5f, TopK = 3, MaxNewTokens = 40, RepetitionPenalty = 1.1f };
        string[] prompts = ["ROMEO:", "JULIET:\nO", "A"];
        var batch = Shakespeare.Generate(prompts, options);
        for (var i = 0; i < prompts.Length; i++)
            Assert.Equal(Shakespeare.Generate(prompts[i], options).GeneratedIds, batch[i].GeneratedIds);
    }

    [Fact]
    public async Task Streaming_stop_strings_and_log_probs_work_as_for_any_decoding()
    {
        var options = new GenerationOptions { PenaltyAlpha = 0.6f, TopK = 4, MaxNewTokens = 200, StopStrings = ["\n\n"], LogProbs = 2 };
        var whole = Shakespeare.Generate("ROMEO:", options);
        Assert.Equal(FinishReason.StopString, whole.FinishReason);
        Assert.DoesNotContain("\n\n", whole.Text);

        var updates = new List<GenerationUpdate>();
        await foreach (var update in Shakespeare.GenerateUpdatesAsync("ROMEO:", options)) updates.Add(update);
        Assert.Equal(whole.GeneratedIds, updates.Select(u => u.TokenId));
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        // The log-probabilities are the model's own at each place: those of a full pass over the text.
        var ids = whole.PromptIds.Concat(whole.GeneratedIds).ToArray();
        var logits = Shakespeare.Forward(TokenBatch.FromIds(ids)).Logits;
        for (var i = 0; i < whole.GeneratedIds.Count; i++)
        {
            var expected = Sampler.LogProbs(logits.Row(0, whole.PromptIds.Count - 1 + i), whole.GeneratedIds[i], 2);
            Assert.Equal(expected.LogProb, whole.LogProbs![i].LogProb, 1e-4);
            Assert.Equal(expected.Top.Select(t => t.Id), whole.LogProbs[i].Top.Select(t => t.Id));
        }
    }

    [Fact]
    public void A_candidate_like_a_token_already_there_loses_to_a_less_likely_new_one()
    {
        var search = new ContrastiveSearch(sequences: 1, k: 3, alpha: 0.5f, embeddingSize: 2);
        // A left-padded prompt of one token, pointing along x: the pad before it, (9, 9), is not context.
        search.AddPrompts([9, 9, 2, 0], T: 2, lengths: [1]);
        Assert.Equal(1, search.ContextLength(0));
        // Along x again (similarity 1): 0.5·0.5 − 0.5·1 = −0.25; at 45° (0.707): 0.5·0.3 − 0.354 = −0.204; along −y (0): 0.1.
        Assert.Equal(2, search.Select(0, [(7, 0.5), (8, 0.3), (9, 0.2)], [5, 0, 1, 1, 0, -3]));
        Assert.Equal(2, search.ContextLength(0));
        // A zero hidden state is like nothing (0.5·0.6 = 0.3); (−1, 0) is most like −y, at 0 (0.5·0.4 = 0.2).
        Assert.Equal(0, search.Select(0, [(7, 0.6), (8, 0.4)], [0, 0, -1, 0, 4, 4]));
        // Of equal scores the first, the likelier, wins: both along x at the same probability.
        Assert.Equal(0, search.Select(0, [(7, 0.5), (8, 0.5)], [1, 0, 3, 0, 0, 0]));
    }

    [Fact]
    public void Options_contrastive_search_cannot_honour_are_refused_by_name()
    {
        foreach (var (options, name) in new (GenerationOptions, string)[]
        {
            (new() { PenaltyAlpha = -0.1f }, nameof(GenerationOptions.PenaltyAlpha)),
            (new() { PenaltyAlpha = 1.5f, TopK = 4 }, nameof(GenerationOptions.PenaltyAlpha)),
            (new() { PenaltyAlpha = float.NaN, TopK = 4 }, nameof(GenerationOptions.PenaltyAlpha)),
            (new() { PenaltyAlpha = 0.6f }, nameof(GenerationOptions.TopK)),
            (new() { PenaltyAlpha = 0.6f, TopK = 1 }, nameof(GenerationOptions.TopK)),
            (new() { PenaltyAlpha = 0.6f, TopK = GenerationOptions.MaxContrastiveCandidates + 1 }, nameof(GenerationOptions.TopK)),
        })
        {
            Assert.Equal(name, Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
        }
        foreach (var (options, name) in new (GenerationOptions, string)[]
        {
            (new() { PenaltyAlpha = 0.6f, TopK = 4, NumBeams = 2 }, nameof(GenerationOptions.NumBeams)),
            (new() { PenaltyAlpha = 0.6f, TopK = 4, SlidingWindow = true }, nameof(GenerationOptions.SlidingWindow)),
        })
        {
            var error = Assert.Throws<ArgumentException>(() => Shakespeare.Generate("A", options));
            Assert.Equal(name, error.ParamName);
            Assert.Contains("contrastive search", error.Message);
        }
    }

    /// <summary>
    /// Contrastive search written out plainly: a full forward pass over the text for its logits and hidden states, and one
    /// over the text and each candidate for the candidate's hidden state, every similarity in double.
    /// </summary>
    private static List<int> Reference(Gpt2CausalLM model, int[] prompt, GenerationOptions options, int endOfText)
    {
        var tokens = prompt.ToList();
        var generated = new List<int>();
        var C = model.Config.EmbeddingSize;
        for (var step = 0; step < options.MaxNewTokens; step++)
        {
            var (logits, context) = Pass(model, tokens);
            var scores = logits.Select(x => (double)x).ToArray();
            foreach (var id in tokens.Distinct())
                scores[id] = scores[id] < 0 ? scores[id] * options.RepetitionPenalty : scores[id] / options.RepetitionPenalty;
            var n = options.NoRepeatNgramSize;
            for (var start = 0; n > 0 && start + n <= tokens.Count; start++)
            {
                if (tokens.Skip(start).Take(n - 1).SequenceEqual(tokens.Skip(tokens.Count - (n - 1)))) scores[tokens[start + n - 1]] = double.NegativeInfinity;
            }
            if (generated.Count < options.MinNewTokens) scores[endOfText] = double.NegativeInfinity;
            var max = scores.Max();
            var sum = scores.Sum(x => Math.Exp(x - max));
            var candidates = Enumerable.Range(0, scores.Length).Where(v => !double.IsNegativeInfinity(scores[v]))
                .OrderByDescending(v => scores[v]).ThenBy(v => v).Take(options.TopK).ToArray();

            var best = -1;
            var bestScore = double.NegativeInfinity;
            foreach (var v in candidates)
            {
                var h = Pass(model, [.. tokens, v]).Hidden[^1];
                var penalty = context[..tokens.Count].Max(c => Cosine(c, h));
                var score = (1 - options.PenaltyAlpha) * Math.Exp(scores[v] - max) / sum - options.PenaltyAlpha * penalty;
                if (best < 0 || score > bestScore) (best, bestScore) = (v, score);
            }
            tokens.Add(best);
            generated.Add(best);
            if (best == endOfText) break;
        }
        return generated;
    }

    /// <summary>The last position's logits and every position's final hidden state, from one pass without a cache.</summary>
    private static (float[] Logits, double[][] Hidden) Pass(Gpt2CausalLM model, List<int> ids)
    {
        var output = model.Forward(TokenBatch.FromIds([.. ids]));
        var hidden = Enumerable.Range(0, ids.Count).Select(t => output.Backbone.LastHiddenState.Row(0, t).ToArray().Select(x => (double)x).ToArray()).ToArray();
        return (output.Logits.Row(0, ids.Count - 1).ToArray(), hidden);
    }

    private static double Cosine(double[] a, double[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++) (dot, na, nb) = (dot + a[i] * b[i], na + a[i] * a[i], nb + b[i] * b[i]);
        return dot / Math.Sqrt(na * nb);
    }
}
