using NativeGpt2.Generation;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary><see cref="GenerationBatcher"/>: sequences of many callers in one batch, each what it is alone.</summary>
[Collection(IlgpuAccelerators.Name)]
public class GenerationBatcherTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    /// <summary>The updates of one sequence, as comparable values.</summary>
    private static async Task<List<(string Text, int Id, double? LogProb, int Prompt, int Generated, FinishReason? Finish)>> Collect(
        IAsyncEnumerable<GenerationUpdate> updates, Func<int, Task>? afterEach = null)
    {
        var list = new List<(string, int, double?, int, int, FinishReason?)>();
        await foreach (var u in updates)
        {
            list.Add((u.Text, u.TokenId, u.LogProbs?.LogProb, u.PromptTokenCount, u.GeneratedTokenCount, u.FinishReason));
            if (afterEach is not null) await afterEach(list.Count);
        }
        return list;
    }

    /// <summary>Sequences asked of a batcher as a test goes, each compared at the end with generating it alone.</summary>
    private sealed class Asked(GenerationBatcher batcher)
    {
        private readonly List<(int[] Prompt, GenerationOptions Options, Task<List<(string, int, double?, int, int, FinishReason?)>> Updates)> _sequences = [];

        public void Ask(int[] prompt, GenerationOptions options) => _sequences.Add((prompt, options, Collect(batcher.GenerateUpdatesAsync(prompt, options))));

        public async Task AssertEachAsAloneAsync(Gpt2CausalLM model)
        {
            foreach (var (prompt, options, updates) in _sequences)
                Assert.Equal(await Collect(model.GenerateUpdatesAsync(prompt, options)), await updates);
        }
    }

    /// <summary>
    /// The steps a batcher runs, recorded from its thread, with holds: the thread waits at the first step a hold matches
    /// until the test releases it, so that a test asks for sequences between two known steps.
    /// </summary>
    private sealed class Schedule : IDisposable
    {
        private readonly GenerationBatcher _batcher;
        private readonly List<(int PromptTokens, int DecodingRows)> _steps = [];
        private readonly List<Hold> _holds = [];

        public Schedule(GenerationBatcher batcher)
        {
            _batcher = batcher;
            batcher.Stepped += step =>
            {
                _steps.Add(step);
                // The first hold that matches this step and was not reached before holds it.
                foreach (var hold in _holds)
                {
                    if (!hold.Matches(step) || !hold.Reach()) continue;
                    hold.Wait();
                    break;
                }
            };
        }

        /// <summary>A hold at the first step that <paramref name="matches"/>; every hold is made before the first sequence is asked for.</summary>
        public Hold HoldAt(Func<(int PromptTokens, int DecodingRows), bool> matches)
        {
            var hold = new Hold(matches);
            _holds.Add(hold);
            return hold;
        }

        /// <summary>The steps run, read once the batch's thread has stopped: it records a step just after its last sequence ends.</summary>
        public List<(int PromptTokens, int DecodingRows)> Stopped()
        {
            _batcher.Dispose();
            return _steps;
        }

        public void Dispose()
        {
            foreach (var hold in _holds) hold.Dispose();
        }
    }

    /// <summary>A step of <see cref="Schedule"/> that the batch's thread waits at until <see cref="Release"/>.</summary>
    private sealed class Hold(Func<(int PromptTokens, int DecodingRows), bool> matches) : IDisposable
    {
        private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ManualResetEventSlim _released = new();

        /// <summary>Completes when the batch's thread reaches the step and waits there.</summary>
        public Task Reached => _reached.Task;

        public bool Matches((int PromptTokens, int DecodingRows) step) => matches(step);

        /// <summary>Marks the hold reached: false when it was before.</summary>
        public bool Reach() => _reached.TrySetResult();

        public void Wait() => _released.Wait(TimeSpan.FromMinutes(1));

        public void Release() => _released.Set();

        public void Dispose() => _released.Dispose();
    }

    private static Task<List<(string Text, int Id, double? LogProb, int Prompt, int Generated, FinishReason? Finish)>> Alone(Gpt2CausalLM model, string prompt, GenerationOptions options) =>
        Collect(model.GenerateUpdatesAsync(prompt, options));

    /// <summary>
    /// Sequences of different prompts and options, asked for at once and one after another while others run (so the batch
    /// takes rows in and lets rows go, moving them into new caches), each as it is alone: text, tokens, log-probabilities and
    /// finish; on every backend.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public async Task Each_sequence_of_the_shared_batch_is_what_it_is_alone(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        // Fewer tokens on ILGPU's simulated GPU, which runs an OS thread per GPU thread.
        var tokens = backend == TestBackends.IlgpuCpu ? 6 : 40;
        var requests = new (string Prompt, GenerationOptions Options)[]
        {
            ("ROMEO:\n", new() { MaxNewTokens = tokens, Seed = 1, LogProbs = 2 }),
            ("First Citizen:\nBefore we proceed", new() { MaxNewTokens = tokens / 2, Seed = 2, Temperature = 0.7f, TopK = 10 }),
            ("O", new() { MaxNewTokens = tokens, Greedy = true, StopStrings = ["\n"] }),
            ("KING HENRY VI:\nWhat, will", new() { MaxNewTokens = tokens, Seed = 4, TopP = 0.9f, RepetitionPenalty = 1.3f, FrequencyPenalty = 0.5f, MinNewTokens = 3 }),
            ("ROMEO:\n", new() { MaxNewTokens = tokens, Seed = 5, StopStrings = ["e"] }),
        };
        // Prompts that join while others decode run 4 positions a step (chunked prefill).
        using var batcher = new GenerationBatcher(model, maxBatchSize: 3, prefillChunkTokens: 4);
        // The first two at once; the others join while they run, and with three rows at most the last wait for rows to end.
        var first = Collect(batcher.GenerateUpdatesAsync(requests[0].Prompt, requests[0].Options));
        var joined = new TaskCompletionSource();
        var second = Collect(batcher.GenerateUpdatesAsync(requests[1].Prompt, requests[1].Options), count =>
        {
            if (count == 3) joined.TrySetResult();
            return Task.CompletedTask;
        });
        await joined.Task;
        var rest = requests.Skip(2).Select(r => Collect(batcher.GenerateUpdatesAsync(r.Prompt, r.Options))).ToArray();
        var results = await Task.WhenAll([first, second, .. rest]);
        for (var i = 0; i < requests.Length; i++)
        {
            var alone = await Alone(model, requests[i].Prompt, requests[i].Options);
            Assert.Equal(alone, results[i]);
        }
        Assert.Contains(results, r => r[^1].Finish == FinishReason.StopString);
    }

    /// <summary>
    /// Top-k sequences of different k and a greedy one sharing the batch: its steps bring back the candidates of the largest
    /// k, and each sequence, picking from those (the greedy one their first largest), is what it is alone, where its own k's
    /// candidates or its argmax come back; one with a penalty joining makes the steps bring back the logits again.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public async Task Top_k_and_greedy_sequences_sharing_the_batch_are_each_what_they_are_alone(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        var tokens = backend == TestBackends.IlgpuCpu ? 4 : 24;
        var requests = new (string Prompt, GenerationOptions Options)[]
        {
            ("ROMEO:\n", new() { MaxNewTokens = tokens, Seed = 1, TopK = 3 }),
            ("JULIET:\n", new() { MaxNewTokens = tokens, Seed = 2, TopK = 40, Temperature = 1.3f, TopP = 0.9f }),
            ("O", new() { MaxNewTokens = tokens, Seed = 3, TopK = 8, MinP = 0.1f }),
            ("MENENIUS:", new() { MaxNewTokens = tokens, Greedy = true }),
            ("KING:", new() { MaxNewTokens = tokens, Seed = 4, TopK = 8, RepetitionPenalty = 1.2f }),
        };
        using var batcher = new GenerationBatcher(model, maxBatchSize: 5, prefillChunkTokens: 4);
        // The three top-k sequences and the greedy one at once; the one with a penalty after the first has three tokens.
        var joined = new TaskCompletionSource();
        var first = Collect(batcher.GenerateUpdatesAsync(requests[0].Prompt, requests[0].Options), count =>
        {
            if (count == 3) joined.TrySetResult();
            return Task.CompletedTask;
        });
        var others = requests[1..4].Select(r => Collect(batcher.GenerateUpdatesAsync(r.Prompt, r.Options))).ToArray();
        await joined.Task;
        var last = Collect(batcher.GenerateUpdatesAsync(requests[4].Prompt, requests[4].Options));
        var results = await Task.WhenAll([first, .. others, last]);
        for (var i = 0; i < requests.Length; i++)
            Assert.Equal(await Alone(model, requests[i].Prompt, requests[i].Options), results[i]);
    }

    /// <summary>
    /// Random mixes: prompts from one token to nearly the whole context, lengths that fill it, every sampling rule, and
    /// sequences arriving while others are part-way (each after a random number of another's updates, or at once), at batch sizes from
    /// one to eight rows and prompt parts from one token to whole. Every sequence is what it is alone.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Random_arrivals_lengths_and_options_each_give_what_they_give_alone(int seed)
    {
        var random = new Random(seed);
        var model = Shakespeare;
        var context = model.Config.ContextLength;
        var text = Paths.ShakespeareValidationText;
        var chunk = random.Next(3) == 0 ? GenerationBatcher.DefaultPrefillChunkTokens : random.Next(1, 64);
        using var batcher = new GenerationBatcher(model, maxBatchSize: random.Next(1, 9), prefillChunkTokens: chunk);
        var requests = Enumerable.Range(0, 7).Select(_ =>
        {
            var length = random.Next(4) == 0 ? random.Next(150, context - 10) : random.Next(1, 40);
            var start = random.Next(text.Length - 1000);
            var prompt = model.Tokenizer!.Encode(text.Substring(start, 1000))[..length];
            var options = new GenerationOptions
            {
                MaxNewTokens = random.Next(1, Math.Min(80, context - length) + 1),
                Seed = random.Next(),
                Temperature = random.Next(3) == 0 ? 0f : 0.5f + (float)random.NextDouble(),
                TopK = random.Next(2) == 0 ? 0 : random.Next(1, 20),
                TopP = random.Next(2) == 0 ? 1f : 0.8f,
                StopStrings = random.Next(3) == 0 ? ["\n"] : [],
                LogProbs = random.Next(2) == 0 ? null : random.Next(0, 3),
                PresencePenalty = random.Next(3) == 0 ? 0.7f : 0f,
            };
            return (Prompt: prompt, Options: options with { Greedy = options.Temperature == 0f }, After: random.Next(-3, 12), Delay: random.Next(1, 30));
        }).ToArray();

        // Sequence i is asked for once sequence i − 1 has given After updates (or has ended); when After < 0, Delay ms after i − 1
        // was asked for, so that it may arrive while i − 1's prompt runs (and go between its parts).
        var results = new Task<List<(string, int, double?, int, int, FinishReason?)>>[requests.Length];
        for (var i = 0; i < requests.Length; i++)
        {
            var reached = new TaskCompletionSource();
            var after = i + 1 < requests.Length ? requests[i + 1].After : 0;
            results[i] = Collect(batcher.GenerateUpdatesAsync(requests[i].Prompt, requests[i].Options), count =>
            {
                if (count >= after) reached.TrySetResult();
                return Task.CompletedTask;
            });
            if (after >= 0) await Task.WhenAny(reached.Task, results[i]);
            else await Task.Delay(requests[i + 1].Delay);
        }
        for (var i = 0; i < requests.Length; i++)
            Assert.Equal(await Collect(model.GenerateUpdatesAsync(requests[i].Prompt, requests[i].Options)), await results[i]);
    }

    /// <summary>
    /// A prompt that joins while a row decodes runs in parts of at most the chunk's tokens, the row decoding a token after
    /// each part; a prompt that arrives when nothing decodes runs whole. Both sequences are what they are alone.
    /// </summary>
    [Fact]
    public async Task A_long_prompt_runs_in_parts_between_the_decoding_steps_and_whole_when_nothing_decodes()
    {
        var model = Shakespeare;
        var text = Paths.ShakespeareValidationText;
        int[] first = model.Tokenizer!.Encode(text[..40]), second = model.Tokenizer.Encode(text[1000..1100]);
        var (firstOptions, secondOptions) = (new GenerationOptions { MaxNewTokens = 150, Seed = 7 }, new GenerationOptions { MaxNewTokens = 20, Seed = 8 });
        const int chunk = 16;
        using var batcher = new GenerationBatcher(model, prefillChunkTokens: chunk);
        using var schedule = new Schedule(batcher);
        // The batch's thread holds its first decoding step until the second sequence has arrived: it joins at the next step.
        var decoding = schedule.HoldAt(s => s.DecodingRows > 0);
        var running = Collect(batcher.GenerateUpdatesAsync(first, firstOptions));
        await decoding.Reached;
        var joining = Collect(batcher.GenerateUpdatesAsync(second, secondOptions));
        decoding.Release();
        Assert.Equal(await Collect(model.GenerateUpdatesAsync(first, firstOptions)), await running);
        Assert.Equal(await Collect(model.GenerateUpdatesAsync(second, secondOptions)), await joining);

        var steps = schedule.Stopped();
        // The first prompt alone, whole; then the second, 16 positions a step, each step decoding the first sequence (and,
        // after the last part, the second too).
        Assert.Equal((first.Length, 1), steps[0]);
        var parts = steps.Skip(1).Where(s => s.PromptTokens > 0).ToList();
        Assert.Equal(Enumerable.Repeat(chunk, second.Length / chunk).Append(second.Length % chunk).Where(n => n > 0), parts.Select(p => p.PromptTokens));
        Assert.Equal([.. Enumerable.Repeat(1, parts.Count - 1), 2], parts.Select(p => p.DecodingRows));
        Assert.All(steps, s => Assert.True(s.DecodingRows == 0 || s == steps[0] || s.PromptTokens <= chunk, $"a decoding step waited for {s.PromptTokens} prompt tokens"));
    }

    /// <summary>
    /// Prompts of different lengths waiting together: the short ones run first, as one group, while the long one waits
    /// rather than padding them to its length; the long one, passed over once, leads the next group even though a shorter
    /// prompt has arrived meanwhile, which then goes between its parts. Every sequence is what it is alone.
    /// </summary>
    [Fact]
    public async Task Short_prompts_run_before_a_long_one_that_arrived_with_them_and_a_passed_over_prompt_leads_the_next_group()
    {
        var model = Shakespeare;
        var text = Paths.ShakespeareValidationText;
        var options = new GenerationOptions { MaxNewTokens = 30, Seed = 11 };
        int[] running = model.Tokenizer!.Encode("ROMEO:"), longest = model.Tokenizer.Encode(text[..100]);
        int[] shortA = model.Tokenizer.Encode(text[200..240]), shortB = model.Tokenizer.Encode(text[300..340]), latest = model.Tokenizer.Encode(text[400..405]);
        const int chunk = 16;
        using var batcher = new GenerationBatcher(model, prefillChunkTokens: chunk);
        using var schedule = new Schedule(batcher);
        // Held: the first decoding step until the long prompt and the two short ones wait; the short ones' first part
        // until the latest prompt waits too.
        var decoding = schedule.HoldAt(s => s.DecodingRows > 0);
        var firstPart = schedule.HoldAt(s => s.PromptTokens > 0);
        var asked = new Asked(batcher);
        asked.Ask(running, options with { MaxNewTokens = 200 });
        await decoding.Reached;
        asked.Ask(longest, options with { Seed = 12 });
        asked.Ask(shortA, options with { Seed = 13 });
        asked.Ask(shortB, options with { Seed = 14 });
        decoding.Release();
        await firstPart.Reached;
        asked.Ask(latest, options with { Seed = 15 });
        firstPart.Release();
        await asked.AssertEachAsAloneAsync(model);

        // The two short prompts (40 tokens each) in parts of 8 columns; then the long one's first part, alone; the latest,
        // shorter than half of what the long one has left, between its parts; the rest of the long one.
        static IEnumerable<int> Parts(int tokens, int rows) =>
            Enumerable.Range(0, (tokens + chunk / rows - 1) / (chunk / rows)).Select(i => rows * Math.Min(chunk / rows, tokens - i * (chunk / rows)));
        Assert.Equal(shortA.Length, shortB.Length);
        var expected = Parts(shortA.Length, 2).Append(chunk).Concat(Parts(latest.Length, 1)).Concat(Parts(longest.Length - chunk, 1));
        Assert.Equal(expected, schedule.Stopped().Skip(1).Where(s => s.PromptTokens > 0).Select(s => s.PromptTokens));
    }

    /// <summary>
    /// Short prompts arriving while a long one runs in parts go first, between two of its parts, and the long one then
    /// runs to its end: a prompt arriving after that waits for it, rather than setting it aside a second time. Every
    /// sequence is what it is alone; on every backend (the group set aside keeps its cache in buffers of its own).
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public async Task Short_prompts_arriving_while_a_long_one_runs_go_between_its_parts_once(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        var text = Paths.ShakespeareValidationText;
        // Fewer tokens on ILGPU's simulated GPU; the first sequence still decodes through every prompt part.
        var simulated = backend == TestBackends.IlgpuCpu;
        var tokens = simulated ? 3 : 30;
        var options = new GenerationOptions { MaxNewTokens = tokens, Seed = 21 };
        int[] running = model.Tokenizer!.Encode("ROMEO:"), longest = model.Tokenizer.Encode(text[..(simulated ? 40 : 100)]);
        int[] shortA = model.Tokenizer.Encode(text[200..205]), shortB = model.Tokenizer.Encode(text[300..305]), latest = model.Tokenizer.Encode(text[400..405]);
        const int chunk = 16;
        using var batcher = new GenerationBatcher(model, prefillChunkTokens: chunk);
        using var schedule = new Schedule(batcher);
        // Held: the first decoding step until the long prompt waits; its first part until the short ones wait; theirs
        // until the latest waits.
        var decoding = schedule.HoldAt(s => s.DecodingRows > 0);
        var longPart = schedule.HoldAt(s => s.PromptTokens == chunk);
        var shortPart = schedule.HoldAt(s => s.PromptTokens == shortA.Length + shortB.Length);
        var asked = new Asked(batcher);
        asked.Ask(running, options with { MaxNewTokens = simulated ? 10 : 200 });
        await decoding.Reached;
        asked.Ask(longest, options with { Seed = 22 });
        decoding.Release();
        await longPart.Reached;
        asked.Ask(shortA, options with { Seed = 23 });
        asked.Ask(shortB, options with { Seed = 24 });
        longPart.Release();
        await shortPart.Reached;
        asked.Ask(latest, options with { Seed = 25 });
        shortPart.Release();
        await asked.AssertEachAsAloneAsync(model);

        // The long prompt's first part; the two short ones, whole; the rest of the long one; the latest.
        Assert.Equal(shortA.Length, shortB.Length);
        var rest = Enumerable.Repeat(chunk, (longest.Length - chunk) / chunk).Append((longest.Length - chunk) % chunk).Where(n => n > 0);
        int[] expected = [chunk, 2 * shortA.Length, .. rest, latest.Length];
        Assert.Equal(expected, schedule.Stopped().Skip(1).Where(s => s.PromptTokens > 0).Select(s => s.PromptTokens));
    }

    /// <summary>A long prompt set aside for short ones and cancelled meanwhile leaves; the short ones and a later prompt go on.</summary>
    [Fact]
    public async Task A_prompt_set_aside_and_cancelled_leaves_and_the_others_go_on()
    {
        var model = Shakespeare;
        var text = Paths.ShakespeareValidationText;
        var options = new GenerationOptions { MaxNewTokens = 20, Seed = 31 };
        const int chunk = 16;
        using var batcher = new GenerationBatcher(model, prefillChunkTokens: chunk);
        using var cancel = new CancellationTokenSource();
        using var schedule = new Schedule(batcher);
        var decoding = schedule.HoldAt(s => s.DecodingRows > 0);
        var longPart = schedule.HoldAt(s => s.PromptTokens == chunk);
        // The short prompt's step: the long one is set aside; cancel it.
        batcher.Stepped += step =>
        {
            if (step.PromptTokens == 5) cancel.Cancel();
        };
        var running = Collect(batcher.GenerateUpdatesAsync("ROMEO:", options with { MaxNewTokens = 150 }));
        await decoding.Reached;
        var cancelled = Collect(batcher.GenerateUpdatesAsync(text[..100], options with { Seed = 32 }, cancel.Token));
        decoding.Release();
        await longPart.Reached;
        var shortPrompt = Collect(batcher.GenerateUpdatesAsync(text[200..205], options with { Seed = 33 }));
        longPart.Release();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(await Alone(model, text[200..205], options with { Seed = 33 }), await shortPrompt);
        Assert.Equal(await Alone(model, text[300..340], options with { Seed = 34 }), await Collect(batcher.GenerateUpdatesAsync(text[300..340], options with { Seed = 34 })));
        Assert.Equal(await Alone(model, "ROMEO:", options with { MaxNewTokens = 150 }), await running);
        var steps = schedule.Stopped();
        // The long prompt ran one part, then the short one; after that only the later prompt's 40 positions ran.
        Assert.Equal([chunk, 5], steps.Skip(1).Where(s => s.PromptTokens > 0).Take(2).Select(s => s.PromptTokens));
        Assert.Equal(40, steps.SkipWhile(s => s.PromptTokens != 5).Skip(1).Sum(s => s.PromptTokens));
    }

    /// <summary>A sequence cancelled while its prompt runs in parts leaves before its first token; the others go on.</summary>
    [Fact]
    public async Task A_sequence_cancelled_while_its_prompt_runs_leaves_and_the_others_go_on()
    {
        var model = Shakespeare;
        var text = Paths.ShakespeareValidationText;
        var options = new GenerationOptions { MaxNewTokens = 120, Seed = 5 };
        using var batcher = new GenerationBatcher(model, prefillChunkTokens: 8);
        using var cancel = new CancellationTokenSource();
        var decoding = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var arrived = new ManualResetEventSlim();
        var parts = 0;
        batcher.Stepped += step =>
        {
            if (step.DecodingRows > 0 && decoding.TrySetResult()) arrived.Wait(TimeSpan.FromMinutes(1));
            // The joining prompt's second part has run: cancel it.
            else if (step.PromptTokens > 0 && ++parts == 2) cancel.Cancel();
        };
        var running = Collect(batcher.GenerateUpdatesAsync("ROMEO:", options));
        await decoding.Task;
        var cancelled = Collect(batcher.GenerateUpdatesAsync(text[..120], options with { Seed = 6 }, cancel.Token));
        arrived.Set();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(await Alone(model, "ROMEO:", options), await running);
        Assert.InRange(parts, 2, 3);
    }

    [Fact]
    public async Task A_cancelled_or_abandoned_sequence_leaves_the_batch_and_the_others_go_on()
    {
        using var batcher = new GenerationBatcher(Shakespeare);
        var options = new GenerationOptions { MaxNewTokens = 60, Seed = 3 };
        using var cancel = new CancellationTokenSource();
        var cancelled = Collect(batcher.GenerateUpdatesAsync("ROMEO:", options with { Seed = 9 }, cancel.Token), count =>
        {
            if (count == 5) cancel.Cancel();
            return Task.CompletedTask;
        });
        var abandoned = Task.Run(async () =>
        {
            await foreach (var _ in batcher.GenerateUpdatesAsync("JULIET:", options)) break;
        });
        var kept = Collect(batcher.GenerateUpdatesAsync("JULIET:", options));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        await abandoned;
        Assert.Equal(await Alone(Shakespeare, "JULIET:", options), await kept);
    }

    [Fact]
    public async Task A_model_disposed_under_the_batch_ends_its_sequences_with_that_error()
    {
        var model = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"), new ModelLoadOptions { Backend = TestBackends.Cpu });
        using var batcher = new GenerationBatcher(model);
        var started = new TaskCompletionSource();
        var running = Collect(batcher.GenerateUpdatesAsync("ROMEO:", new GenerationOptions { MaxNewTokens = 240, Seed = 2 }), _ =>
        {
            started.TrySetResult();
            return Task.CompletedTask;
        });
        await started.Task;
        model.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running);
        Assert.Throws<ObjectDisposedException>(() => batcher.GenerateUpdatesAsync("A"));
    }

    [Fact]
    public async Task Options_it_cannot_batch_are_refused_and_a_disposed_batcher_ends_its_sequences()
    {
        var batcher = new GenerationBatcher(Shakespeare, maxBatchSize: 1);
        foreach (var (options, name) in new (GenerationOptions, string)[]
        {
            (new() { NumBeams = 2 }, nameof(GenerationOptions.NumBeams)),
            (new() { PenaltyAlpha = 0.5f, TopK = 3 }, nameof(GenerationOptions.PenaltyAlpha)),
            (new() { SlidingWindow = true }, nameof(GenerationOptions.SlidingWindow)),
        })
        {
            Assert.Equal(name, Assert.Throws<ArgumentException>(() => batcher.GenerateUpdatesAsync("A", options)).ParamName);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => batcher.GenerateUpdatesAsync("A", new GenerationOptions { MaxNewTokens = 10_000 }));
        Assert.Equal("maxBatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationBatcher(Shakespeare, 0)).ParamName);
        Assert.Equal("prefillChunkTokens", Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationBatcher(Shakespeare, 2, 0)).ParamName);

        // One row at a time: the second waits behind the first, and the batcher's end ends both.
        var long1 = new GenerationOptions { MaxNewTokens = 240, Seed = 1 };
        var started = new TaskCompletionSource();
        var running = Collect(batcher.GenerateUpdatesAsync("ROMEO:", long1), _ =>
        {
            started.TrySetResult();
            return Task.CompletedTask;
        });
        var waiting = Collect(batcher.GenerateUpdatesAsync("JULIET:", long1));
        await started.Task;
        batcher.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting);
        Assert.Throws<ObjectDisposedException>(() => batcher.GenerateUpdatesAsync("A"));
    }
}
