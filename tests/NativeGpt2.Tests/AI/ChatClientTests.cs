using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using NativeGpt2.AI;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.AI;

/// <summary>The Microsoft.Extensions.AI clients over a loaded model, and their registration.</summary>
public class ChatClientTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "A scene from a play."),
        new(ChatRole.User, "Who is there?"),
        new(ChatRole.Assistant, "A friend."),
        new(ChatRole.User, "Speak, friend."),
    ];

    [Fact]
    public void The_plain_template_is_a_transcript_ending_with_the_assistant_label()
    {
        var prompt = ChatTemplate.Plain.Format(Conversation, "Be brief.");
        Assert.Equal("Be brief.\n\nA scene from a play.\n\nUser: Who is there?\nAssistant: A friend.\nUser: Speak, friend.\nAssistant:", prompt);
        Assert.Equal("User: hi\nTool: 42\nAssistant:", ChatTemplate.Plain.Format([new(ChatRole.User, "hi"), new(ChatRole.Tool, "42")]));
    }

    [Fact]
    public async Task A_greedy_reply_is_the_models_continuation_of_the_template_with_usage()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        var response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 40 });

        var prompt = ChatTemplate.Plain.Format(Conversation);
        var expected = Shakespeare.Generate(prompt, new GenerationOptions { Greedy = true, MaxNewTokens = 40, StopStrings = ChatTemplate.Plain.StopSequences });
        Assert.Equal(expected.Text.StartsWith(' ') ? expected.Text[1..] : expected.Text, response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal(Shakespeare.Tokenizer!.Encode(prompt).Length, response.Usage!.InputTokenCount);
        Assert.Equal(expected.GeneratedIds.Count, response.Usage.OutputTokenCount);
        Assert.Equal(response.Usage.InputTokenCount + response.Usage.OutputTokenCount, response.Usage.TotalTokenCount);
        Assert.Equal(expected.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(Shakespeare.Source, response.ModelId);
    }

    [Fact]
    public async Task Characters_the_vocabulary_lacks_are_warned_about_and_the_messages_are_read_once()
    {
        var logs = new CapturingLoggerProvider();
        using var model = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"), new ModelLoadOptions { Backend = TestBackends.Cpu, Logger = logs.CreateLogger("test") });
        using var client = new Gpt2ChatClient(model);
        var reads = 0;
        IEnumerable<ChatMessage> Once()
        {
            reads++;
            yield return new ChatMessage(ChatRole.User, "Où est Roméo?");
        }
        var response = await client.GetResponseAsync(Once(), new ChatOptions { Temperature = 0, MaxOutputTokens = 5 });
        Assert.Equal(1, reads);
        Assert.Equal(model.Tokenizer!.Encode("User: O est Romo?\nAssistant:").Length, response.Usage!.InputTokenCount);
        Assert.Contains(logs.Messages, m => m.Contains("no token for 'ù' (U+00F9), 'é' (U+00E9); the text is encoded without them", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Streaming_gives_the_same_text_in_pieces_then_the_finish_reason_and_usage()
    {
        using var client = new Gpt2ChatClient(Shakespeare, modelId: "shakespeare");
        var options = new ChatOptions { Temperature = 0.8f, TopK = 20, Seed = 7, MaxOutputTokens = 30, StopSequences = ["zzz"] };
        var whole = await client.GetResponseAsync(Conversation, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options)) updates.Add(update);

        Assert.True(updates.Count > 2);
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.Equal("shakespeare", u.ModelId));
        var last = updates[^1];
        Assert.NotNull(last.FinishReason);
        var usage = Assert.IsType<UsageContent>(Assert.Single(last.Contents));
        Assert.Equal(whole.Usage!.OutputTokenCount, usage.Details.OutputTokenCount);
        // Same seed, same options: the same reply; another seed: another one.
        Assert.Equal(whole.Text, (await client.GetResponseAsync(Conversation, options)).Text);
        var otherSeed = options.Clone();
        otherSeed.Seed = 8;
        Assert.NotEqual(whole.Text, (await client.GetResponseAsync(Conversation, otherSeed)).Text);
    }

    [Fact]
    public async Task Additional_properties_set_the_repetition_penalty_min_p_and_the_n_gram_rule()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        var options = new ChatOptions
        {
            Temperature = 0.9f, Seed = 3, MaxOutputTokens = 40,
            AdditionalProperties = new() { ["repetition_penalty"] = 1.3f, ["min_p"] = 0.1f, ["typical_p"] = 0.9f, ["no_repeat_ngram_size"] = 4, ["min_tokens"] = 2 },
        };
        var response = await client.GetResponseAsync(Conversation, options);
        var expected = Shakespeare.Generate(ChatTemplate.Plain.Format(Conversation), new GenerationOptions
        {
            Temperature = 0.9f, Seed = 3, MaxNewTokens = 40, RepetitionPenalty = 1.3f, MinP = 0.1f, TypicalP = 0.9f, NoRepeatNgramSize = 4, MinNewTokens = 2,
            StopStrings = ChatTemplate.Plain.StopSequences,
        });
        Assert.Equal(expected.Text.StartsWith(' ') ? expected.Text[1..] : expected.Text, response.Text);
        // The n-gram rule changes this reply: without it the same seed gives another.
        var without = Shakespeare.Generate(ChatTemplate.Plain.Format(Conversation), new GenerationOptions
        {
            Temperature = 0.9f, Seed = 3, MaxNewTokens = 40, RepetitionPenalty = 1.3f, MinP = 0.1f, TypicalP = 0.9f, StopStrings = ChatTemplate.Plain.StopSequences,
        });
        Assert.NotEqual(without.Text, expected.Text);
    }

    [Fact]
    public async Task Penalty_alpha_in_additional_properties_runs_contrastive_search()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        var options = new ChatOptions { TopK = 4, MaxOutputTokens = 40, AdditionalProperties = new() { ["penalty_alpha"] = 0.6f } };
        var response = await client.GetResponseAsync(Conversation, options);
        var expected = Shakespeare.Generate(ChatTemplate.Plain.Format(Conversation), new GenerationOptions
        {
            PenaltyAlpha = 0.6f, TopK = 4, MaxNewTokens = 40, StopStrings = ChatTemplate.Plain.StopSequences,
        });
        Assert.Equal(expected.Text.StartsWith(' ') ? expected.Text[1..] : expected.Text, response.Text);
        // Contrastive search is deterministic: no seed, the same reply.
        Assert.Equal(response.Text, (await client.GetResponseAsync(Conversation, options)).Text);
    }

    [Fact]
    public async Task A_stop_sequence_ends_the_reply_before_it()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        var response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 100, StopSequences = ["e"] });
        Assert.DoesNotContain("e", response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public async Task Cancelling_stops_the_stream()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        using var cancel = new CancellationTokenSource();
        var received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 200, StopSequences = ["zzz"] }, cancel.Token))
            {
                received++;
                cancel.Cancel();
            }
        });
        Assert.Equal(1, received);
    }

    [Fact]
    public async Task What_gpt2_cannot_do_is_refused_clearly()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        var tools = new ChatOptions { Tools = [AIFunctionFactory.Create(() => 42, "answer")] };
        Assert.Contains("tools", (await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(Conversation, tools))).Message);
        Assert.Contains("JSON", (await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(Conversation, new ChatOptions { ResponseFormat = ChatResponseFormat.Json }))).Message);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 0 }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(Conversation, new ChatOptions { TopP = 2 }));
    }

    [Fact]
    public async Task A_conversation_longer_than_the_context_keeps_its_latest_part()
    {
        using var client = new Gpt2ChatClient(Shakespeare);
        var longTalk = Enumerable.Range(0, 40).Select(i => new ChatMessage(i % 2 == 0 ? ChatRole.User : ChatRole.Assistant, "Good morrow, good morrow, good morrow.")).ToList();
        var response = await client.GetResponseAsync(longTalk, new ChatOptions { Temperature = 0, MaxOutputTokens = 20 });
        Assert.Equal(Shakespeare.Config.ContextLength - 20, response.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task The_embedding_generator_gives_the_models_normalized_mean_embeddings()
    {
        using var generator = new Gpt2EmbeddingGenerator(Models.Get("gpt2-mini"), modelId: "mini");
        string[] texts = ["Hello world", "The meaning of life is"];
        var embeddings = await generator.GenerateAsync(texts);
        var expected = Models.Get("gpt2-mini").Embed(texts, new EmbeddingOptions { Normalize = true });
        Assert.Equal(2, embeddings.Count);
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(expected[i].Vectors, embeddings[i].Vector.ToArray());
            Assert.Equal("mini", embeddings[i].ModelId);
        }
        Assert.Equal(expected.Sum(e => e.TokenCount), embeddings.Usage!.InputTokenCount);
        Assert.Equal(Models.Get("gpt2-mini").Config.EmbeddingSize, generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);
        await Assert.ThrowsAsync<NotSupportedException>(() => generator.GenerateAsync(texts, new EmbeddingGenerationOptions { Dimensions = 3 }));
        Assert.Throws<ArgumentException>(() => new Gpt2EmbeddingGenerator(Models.Get("gpt2-mini"), new EmbeddingOptions { Pooling = EmbeddingPooling.None }));
    }

    [Fact]
    public async Task One_call_registers_the_model_the_chat_client_and_the_embedding_generator()
    {
        var services = new ServiceCollection();
        services.AddNativeGpt2(Paths.Model("shakespeare-char"), o => (o.ModelId, o.MaxBatchSize, o.PrefillChunkTokens) = ("bard", 3, 32));
        Gpt2CausalLM model;
        await using (var provider = services.BuildServiceProvider())
        {
            var batcher = provider.GetRequiredService<NativeGpt2.Generation.GenerationBatcher>();
            Assert.Equal((3, 32), (batcher.MaxBatchSize, batcher.PrefillChunkTokens));
            var chat = provider.GetRequiredService<IChatClient>();
            var embeddings = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();
            model = provider.GetRequiredService<Gpt2CausalLM>();
            Assert.Same(model, chat.GetService<Gpt2CausalLM>());
            Assert.Same(model, embeddings.GetService<Gpt2CausalLM>());
            Assert.Equal("bard", chat.GetService<ChatClientMetadata>()!.DefaultModelId);
            var reply = await chat.GetResponseAsync("Who goes there?", new ChatOptions { MaxOutputTokens = 10, Temperature = 0 });
            Assert.InRange(reply.Usage!.OutputTokenCount!.Value, 1, 10);
            Assert.Equal(model.Config.EmbeddingSize, (await embeddings.GenerateAsync(["ROMEO"]))[0].Vector.Length);
        }
        // The container loaded the model, so it disposed it.
        Assert.Throws<ObjectDisposedException>(() => model.Embed("ROMEO"));
        Assert.Equal(nameof(NativeGpt2ServiceOptions.MaxBatchSize),
            Assert.Throws<ArgumentOutOfRangeException>(() => new ServiceCollection().AddNativeGpt2("gpt2", o => o.MaxBatchSize = 0)).ParamName);
        Assert.Equal(nameof(NativeGpt2ServiceOptions.PrefillChunkTokens),
            Assert.Throws<ArgumentOutOfRangeException>(() => new ServiceCollection().AddNativeGpt2("gpt2", o => o.PrefillChunkTokens = 0)).ParamName);
    }

    /// <summary>Replies decoded in a shared batch, several at once, are the replies each call gets on its own.</summary>
    [Fact]
    public async Task Replies_decoded_in_a_shared_batch_are_those_each_gets_alone()
    {
        using var batcher = new NativeGpt2.Generation.GenerationBatcher(Shakespeare, maxBatchSize: 4);
        var shared = new Gpt2ChatClient(Shakespeare, batcher: batcher);
        var alone = new Gpt2ChatClient(Shakespeare);
        var options = Enumerable.Range(0, 5).Select(i => new ChatOptions { MaxOutputTokens = 20 + 5 * i, Seed = 10 + i, Temperature = 0.9f }).ToArray();
        var replies = await Task.WhenAll(options.Select(o => shared.GetResponseAsync(Conversation, o)));
        for (var i = 0; i < options.Length; i++)
        {
            var expected = await alone.GetResponseAsync(Conversation, options[i]);
            Assert.Equal(expected.Text, replies[i].Text);
            Assert.Equal(expected.Usage!.OutputTokenCount, replies[i].Usage!.OutputTokenCount);
        }
        using var other = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"), new ModelLoadOptions { Backend = TestBackends.Cpu });
        Assert.Equal("batcher", Assert.Throws<ArgumentException>(() => new Gpt2ChatClient(other, batcher: batcher)).ParamName);
    }
}
