using NativeGpt2.Weights;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

[Collection(IlgpuAccelerators.Name)]
public class GenerationTests
{
    [Fact]
    public void Text_with_characters_the_vocabulary_lacks_is_encoded_without_them_and_a_warning_names_them()
    {
        // shakespeare-char has no token for 'é': "Café ROMEO:" is encoded as "Caf ROMEO:", as Hugging Face encodes it,
        // and the load's logger hears of it from generation, scoring and embedding alike.
        var logs = new CapturingLoggerProvider();
        using var model = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"), new ModelLoadOptions { Backend = TestBackends.Cpu, Logger = logs.CreateLogger("test") });
        var options = new GenerationOptions { MaxNewTokens = 4, Greedy = true };
        logs.Messages.Clear();
        var plain = model.Generate("Caf ROMEO:", options);
        Assert.Empty(logs.Messages);
        var accented = model.Generate("Café ROMEO:", options);
        Assert.Equal(plain.PromptIds, accented.PromptIds);
        Assert.Equal(plain.GeneratedIds, accented.GeneratedIds);
        Assert.Contains(logs.Messages, m => m.Contains("no token for 'é' (U+00E9); the text is encoded without it", StringComparison.Ordinal));

        logs.Messages.Clear();
        Assert.Equal(model.Score("Caf ROMEO:").MeanNll, model.Score("Café ROMEO:").MeanNll);
        model.Embed("naïve");
        Assert.Equal(2, logs.Messages.Count(m => m.Contains("no token for", StringComparison.Ordinal)));
        Assert.Contains(logs.Messages, m => m.Contains("'ï' (U+00EF)", StringComparison.Ordinal));
    }

    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");
    private static Gpt2CausalLM Mini => Models.Get("gpt2-mini");

    public static TheoryData<string, bool> BackendsAndModes()
    {
        var data = new TheoryData<string, bool>();
        string[] backends = [TestBackends.Cpu, TestBackends.IlgpuCpu, TestBackends.Cuda, .. TestBackends.CpuWidths];
        foreach (var backend in backends)
        {
            data.Add(backend, true);
            data.Add(backend, false);
        }
        return data;
    }

    /// <summary>
    /// Exactly equal, token for token, on every backend and at every CPU vector width: every kernel sums a row the same way
    /// whatever else is in the batch.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(BackendsAndModes))]
    public void Batched_left_padded_generation_equals_one_by_one(string backend, bool greedy)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        string[] prompts = ["ROMEO:\n", "First Citizen:\nBefore we proceed", "O", "KING HENRY VI:\nWhat, will"];
        // Fewer tokens on ILGPU's simulated GPU, which runs an OS thread per GPU thread.
        var tokens = backend == TestBackends.IlgpuCpu ? 5 : 40;
        var options = new GenerationOptions { Greedy = greedy, MaxNewTokens = tokens, Seed = 11, TopK = 30, Temperature = 0.9f, StopAtEndOfText = false };
        AssertBatchEqualsOneByOne(model, prompts, options);
    }

    /// <summary>Each prompt of a left-padded batch gives the tokens and text it gives alone.</summary>
    private static void AssertBatchEqualsOneByOne(Gpt2CausalLM model, string[] prompts, GenerationOptions options)
    {
        var batched = model.Generate(prompts, options);
        for (var i = 0; i < prompts.Length; i++)
        {
            var alone = model.Generate(prompts[i], options);
            Assert.Equal(alone.GeneratedIds, batched[i].GeneratedIds);
            Assert.Equal(alone.Text, batched[i].Text);
        }
    }

    /// <summary>
    /// The same in every weight format: a 16- or 8-bit matrix is widened exactly, whether inside a tile
    /// (decoding) or once per panel (prompts of several rows), so a row's result never depends on the batch.
    /// </summary>
    [Theory]
    [InlineData(WeightFormat.F16, true)]
    [InlineData(WeightFormat.BF16, true)]
    [InlineData(WeightFormat.Q8, true)]
    [InlineData(WeightFormat.Q8, false)]
    public void Batched_generation_equals_one_by_one_in_every_weight_format(WeightFormat format, bool greedy)
    {
        string[] prompts = ["ROMEO:\n", "First Citizen:\nBefore we proceed", "O", "KING HENRY VI:\nWhat, will"];
        var options = new GenerationOptions { Greedy = greedy, MaxNewTokens = 30, Seed = 11, TopK = 30, Temperature = 0.9f, StopAtEndOfText = false };
        foreach (var name in new[] { "shakespeare-char", "gpt2-mini" })
        {
            AssertBatchEqualsOneByOne(Models.Get(name, TestBackends.Cpu, format), prompts, options);
        }
    }

    /// <summary>
    /// OpenAI's penalties count what each sequence has generated, so a batch still equals its prompts alone; and a
    /// greedy pick with a bias is made on the host from the adjusted logits, not by the backend's plain argmax.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Presence_and_frequency_penalties_and_logit_bias_act_per_sequence_on_every_backend(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        string[] prompts = ["ROMEO:\n", "First Citizen:\nBefore we proceed", "O"];
        // Fewer tokens on ILGPU's simulated GPU, which runs an OS thread per GPU thread.
        var simulated = backend == TestBackends.IlgpuCpu;
        var tokens = simulated ? 6 : 16;
        var penalized = new GenerationOptions { MaxNewTokens = tokens, Seed = 3, PresencePenalty = 1.5f, FrequencyPenalty = 0.8f, StopAtEndOfText = false };
        AssertBatchEqualsOneByOne(model, prompts, penalized);

        var greedy = new GenerationOptions { Greedy = true, MaxNewTokens = tokens, StopAtEndOfText = false };
        var e = model.Tokenizer!.Encode("e").Single();
        var forced = model.Generate("ROMEO:\n", greedy with { LogitBias = new Dictionary<int, float> { [e] = 100 } });
        Assert.All(forced.GeneratedIds, id => Assert.Equal(e, id));
        // The rest is the host's arithmetic, the same whatever computed the logits: once, on the fast backends.
        if (simulated) return;

        // Greedy with penalties on the output only departs from plain greedy where plain greedy repeats itself: the first
        // token that differs is one plain greedy had already produced.
        var plain = model.Generate("ROMEO:\n", greedy).GeneratedIds;
        var spread = model.Generate("ROMEO:\n", greedy with { FrequencyPenalty = 2f, PresencePenalty = 2f }).GeneratedIds;
        var first = Enumerable.Range(0, tokens).First(i => plain[i] != spread[i]);
        Assert.Contains(plain[first], plain.Take(first));
        var banned = model.Generate("ROMEO:\n", greedy with { LogitBias = plain.Distinct().ToDictionary(id => id, _ => -100f) });
        Assert.DoesNotContain(banned.GeneratedIds, plain.Contains);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Batched_generation_with_a_real_bpe_vocabulary_equals_one_by_one(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var mini = Models.Get("gpt2-mini", backend);
        string[] prompts = ["The meaning of life is", "Hello", "In 1999, the city of Paris"];
        var options = new GenerationOptions { MaxNewTokens = 12, Seed = 5, StopAtEndOfText = false };
        AssertBatchEqualsOneByOne(mini, prompts, options);
    }

    [Fact]
    public void Same_seed_same_text_and_different_seeds_differ()
    {
        var options = new GenerationOptions { MaxNewTokens = 60, Seed = 42 };
        var a = Shakespeare.Generate("JULIET:\n", options);
        var b = Shakespeare.Generate("JULIET:\n", options);
        var c = Shakespeare.Generate("JULIET:\n", options with { Seed = 43 });
        Assert.Equal(a.Text, b.Text);
        Assert.NotEqual(a.Text, c.Text);
        Assert.Equal(FinishReason.Length, a.FinishReason);
        Assert.Equal(60, a.GeneratedIds.Count);
    }

    [Fact]
    public void Stop_strings_end_the_text_just_before_them()
    {
        var greedy = new GenerationOptions { Greedy = true, MaxNewTokens = 100 };
        var full = Shakespeare.Generate("ROMEO:\n", greedy).Text;
        var stop = full.Substring(20, 3);
        var stopped = Shakespeare.Generate("ROMEO:\n", greedy with { StopStrings = ["@@@", stop] });
        Assert.Equal(FinishReason.StopString, stopped.FinishReason);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
    }

    [Fact]
    public void End_of_text_stops_generation_and_is_not_in_the_text()
    {
        // tiny's random weights make end-of-text one token among 512; hot sampling reaches it within a few seeds.
        var model = Models.Get("tiny");
        var eos = model.Config.EosTokenId!.Value;
        var found = false;
        for (var seed = 0; seed < 200 && !found; seed++)
        {
            var result = model.GenerateIds([1, 2, 3], new GenerationOptions { MaxNewTokens = 100, Seed = seed, Temperature = 3f });
            if (result.FinishReason != FinishReason.EndOfText) continue;
            found = true;
            Assert.Equal(eos, result.GeneratedIds[^1]);
            Assert.DoesNotContain(eos, result.GeneratedIds.SkipLast(1));
        }
        Assert.True(found, "no seed reached end-of-text in 200 tries at temperature 3");
    }

    [Fact]
    public async Task Streaming_yields_the_same_text_as_generate()
    {
        var options = new GenerationOptions { MaxNewTokens = 80, Seed = 3, StopStrings = ["\n\n"] };
        var pieces = new List<string>();
        await foreach (var piece in Shakespeare.GenerateStreamAsync("MERCUTIO:\n", options))
            pieces.Add(piece);
        Assert.Equal(Shakespeare.Generate("MERCUTIO:\n", options).Text, string.Concat(pieces));
        Assert.True(pieces.Count > 1);
        Assert.DoesNotContain("\n\n", string.Concat(pieces));
    }

    /// <summary>
    /// A batch streamed: each step brings one update per running sequence, in prompt order, and each sequence's updates are
    /// those streaming its prompt alone with its seed gives, whatever finishes early (a stop string, end-of-text, a length).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_streamed_batch_gives_each_sequence_the_updates_it_gives_alone(bool contrastive)
    {
        string[] prompts = ["ROMEO:\n", "First Citizen:\nBefore we proceed", "ROMEO:\n", "O"];
        int[] seeds = [4, 9, 5, 4];
        var common = new GenerationOptions { MaxNewTokens = 60, StopStrings = ["\n"], LogProbs = 2 };
        var options = contrastive ? common with { PenaltyAlpha = 0.6f, TopK = 4 } : common with { Temperature = 1.1f };
        var updates = new List<GenerationUpdate>();
        await foreach (var update in Shakespeare.GenerateUpdatesAsync(prompts, options, seeds)) updates.Add(update);

        for (var b = 0; b < prompts.Length; b++)
        {
            var alone = new List<GenerationUpdate>();
            await foreach (var update in Shakespeare.GenerateUpdatesAsync(prompts[b], options with { Seed = seeds[b] })) alone.Add(update);
            var mine = updates.Where(u => u.Sequence == b).ToArray();
            Assert.Equal(alone.Select(u => (u.Text, u.TokenId, u.LogProbs!.LogProb, u.PromptTokenCount, u.GeneratedTokenCount, u.FinishReason)),
                mine.Select(u => (u.Text, u.TokenId, u.LogProbs!.LogProb, u.PromptTokenCount, u.GeneratedTokenCount, u.FinishReason)));
            Assert.Equal(Shakespeare.Generate(prompts[b], options with { Seed = seeds[b] }).Text, string.Concat(mine.Select(u => u.Text)));
        }
        // Step by step: the sequences still running, in order, each one token further.
        var step = 0;
        for (var i = 0; i < updates.Count; step++)
        {
            var previous = -1;
            for (; i < updates.Count && updates[i].GeneratedTokenCount == step + 1; i++)
            {
                Assert.True(updates[i].Sequence > previous);
                previous = updates[i].Sequence;
            }
            Assert.True(previous >= 0, $"no update for step {step}");
        }
        // The sequences ended at different steps: the batch ran on with some of them finished.
        Assert.True(updates.Where(u => u.FinishReason is not null).Select(u => u.GeneratedTokenCount).Distinct().Count() > 1,
            string.Join(", ", updates.Where(u => u.FinishReason is not null).Select(u => $"{u.Sequence}: {u.GeneratedTokenCount} {u.FinishReason}")));
    }

    [Fact]
    public async Task A_streamed_batch_without_a_seed_draws_each_sequence_on_its_own_and_checks_its_arguments()
    {
        var options = new GenerationOptions { MaxNewTokens = 40, Temperature = 1.2f, StopAtEndOfText = false };
        var texts = new string[3];
        await foreach (var update in Shakespeare.GenerateUpdatesAsync(["ROMEO:", "ROMEO:", "ROMEO:"], options)) texts[update.Sequence] += update.Text;
        // Three draws of 40 characters at temperature 1.2: alike only by a chance far below one in a billion.
        Assert.Equal(3, texts.Distinct().Count());
        Assert.Equal(3, Shakespeare.Generate(["ROMEO:", "ROMEO:", "ROMEO:"], options).Select(r => r.Text).Distinct().Count());

        var seeds = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateUpdatesAsync(["a", "b"], options, seeds: [1]));
        Assert.Equal("seeds", seeds.ParamName);
        var many = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateUpdatesAsync(Enumerable.Repeat("a", Gpt2CausalLM.MaxSequences + 1).ToArray(), options));
        Assert.Equal("prompts", many.ParamName);
        Assert.Throws<ArgumentException>(() => Shakespeare.GenerateUpdatesAsync(["a", "b"], options with { NumBeams = 2 }));
        var ids = Shakespeare.Tokenizer!.Encode("ROMEO:");
        var tooLong = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateUpdatesAsync([ids, [.. ids, .. ids]], options with { MaxNewTokens = Shakespeare.Config.ContextLength - ids.Length }));
        Assert.Contains("prompt 1", tooLong.Message);
    }

    [Fact]
    public async Task Streaming_multibyte_text_emits_only_whole_characters()
    {
        // Sampling at a high temperature from a real BPE vocabulary produces partial UTF-8 tokens.
        var options = new GenerationOptions { MaxNewTokens = 60, Seed = 9, Temperature = 2f, StopAtEndOfText = false };
        var pieces = new List<string>();
        await foreach (var piece in Mini.GenerateStreamAsync("日本語 😀", options)) pieces.Add(piece);
        Assert.All(pieces, p => Assert.False(p.Length > 0 && char.IsHighSurrogate(p[^1])));
        Assert.Equal(Mini.Generate("日本語 😀", options).Text, string.Concat(pieces));
    }

    [Fact]
    public async Task Cancellation_stops_streaming_promptly()
    {
        using var cancellation = new CancellationTokenSource();
        var received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in Shakespeare.GenerateStreamAsync("ROMEO:\n", new GenerationOptions { MaxNewTokens = 200, Seed = 1 }, cancellation.Token))
            {
                if (++received == 5) cancellation.Cancel();
            }
        });
        Assert.Equal(5, received);
    }

    [Fact]
    public void Cancellation_stops_generate()
    {
        using var cancellation = new CancellationTokenSource();
        cancellation.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => Shakespeare.Generate("ROMEO:", new GenerationOptions { MaxNewTokens = 50 }, cancellation.Token));
    }

    [Fact]
    public void Exceeding_the_context_is_an_error_unless_the_window_slides()
    {
        var model = Models.Get("odd"); // context 37
        var prompt = Enumerable.Range(1, 30).ToArray();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => model.GenerateIds(prompt, new GenerationOptions { MaxNewTokens = 10 }));
        Assert.Contains("context length of 37", error.Message);

        var slid = model.GenerateIds(prompt, new GenerationOptions { MaxNewTokens = 60, Greedy = true, SlidingWindow = true, StopAtEndOfText = false });
        Assert.Equal(60, slid.GeneratedIds.Count);
        // A prompt longer than the whole context also works with a sliding window.
        var longPrompt = Enumerable.Range(1, 80).ToArray();
        Assert.Equal(5, model.GenerateIds(longPrompt, new GenerationOptions { MaxNewTokens = 5, SlidingWindow = true, StopAtEndOfText = false }).GeneratedIds.Count);
    }

    [Fact]
    public void Sliding_window_continues_from_the_most_recent_tokens()
    {
        // After a slide the model sees only the newer half of the window, recomputed from scratch, so
        // the next greedy token is what a plain forward over those tokens picks.
        var model = Models.Get("odd");
        var prompt = Enumerable.Range(1, 37).ToArray();
        var result = model.GenerateIds(prompt, new GenerationOptions { MaxNewTokens = 1, Greedy = true, SlidingWindow = true, StopAtEndOfText = false });
        var logits = model.Head.ForwardLast(model.Backbone.Forward(TokenBatch.FromIds(prompt)).LastHiddenState).Row(0).ToArray();
        Assert.Equal(Array.IndexOf(logits, logits.Max()), result.GeneratedIds[0]);
    }

    [Fact]
    public void An_empty_prompt_starts_from_end_of_text()
    {
        var result = Shakespeare.Generate("", new GenerationOptions { MaxNewTokens = 5, Seed = 1 });
        Assert.Equal([65], result.PromptIds);
        Assert.Equal(5, result.GeneratedIds.Count);
    }

    [Fact]
    public void Text_generation_needs_a_tokenizer()
    {
        var error = Assert.Throws<NativeGpt2Exception>(() => Models.Get("tiny").Generate("hello"));
        Assert.Contains("GenerateIds", error.Message);
    }
}
