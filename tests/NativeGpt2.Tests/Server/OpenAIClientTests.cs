using System.ClientModel;
using System.Text;
using NativeGpt2.Tests.Support;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using Xunit;

namespace NativeGpt2.Tests.Server;

/// <summary>The server as users meet it: through the official OpenAI .NET client, on 127.0.0.1.</summary>
public class OpenAIClientTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    private OpenAIClient Client => new(new ApiKeyCredential("not-checked"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });

    private static readonly ChatMessage[] Conversation = [new SystemChatMessage("A scene from a play."), new UserChatMessage("Who is there?")];

    /// <summary>What the library's chat client answers, greedy: the server must say the same.</summary>
    private static async Task<string> ExpectedReply(int maxTokens, float? presencePenalty = null, float? frequencyPenalty = null)
    {
        using var chat = new NativeGpt2.AI.Gpt2ChatClient(Shakespeare);
        var reply = await chat.GetResponseAsync(
            [new(Microsoft.Extensions.AI.ChatRole.System, "A scene from a play."), new(Microsoft.Extensions.AI.ChatRole.User, "Who is there?")],
            new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = maxTokens, PresencePenalty = presencePenalty, FrequencyPenalty = frequencyPenalty });
        return reply.Text;
    }

    [Fact]
    public async Task Presence_and_frequency_penalties_and_logit_biases_reach_the_sampler()
    {
        var chat = Client.GetChatClient(ServerFixture.ModelId);
        var penalized = await chat.CompleteChatAsync(Conversation,
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30, PresencePenalty = 1.5f, FrequencyPenalty = 1f });
        var expected = await ExpectedReply(30, 1.5f, 1f);
        Assert.Equal(expected, penalized.Value.Content.Single().Text);
        Assert.NotEqual(await ExpectedReply(30), expected);

        // "e" at +100: every token of the reply is "e" (the reply has no leading space to trim: the template's space is not an "e").
        var e = Shakespeare.Tokenizer!.Encode("e").Single();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 };
        options.LogitBiases[e] = 100;
        var forced = await chat.CompleteChatAsync(Conversation, options);
        Assert.Equal("eeeeeeee", forced.Value.Content.Single().Text);
    }

    [Fact]
    public async Task A_chat_completion_is_the_greedy_reply_with_usage_and_finish_reason()
    {
        var chat = Client.GetChatClient(ServerFixture.ModelId);
        ChatCompletion completion = await chat.CompleteChatAsync(Conversation, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30 });

        Assert.Equal(await ExpectedReply(30), completion.Content.Single().Text);
        Assert.Equal(ServerFixture.ModelId, completion.Model);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        var prompt = NativeGpt2.AI.ChatTemplate.Plain.Format(
            [new(Microsoft.Extensions.AI.ChatRole.System, "A scene from a play."), new(Microsoft.Extensions.AI.ChatRole.User, "Who is there?")]);
        Assert.Equal(Shakespeare.Tokenizer!.Encode(prompt).Length, completion.Usage.InputTokenCount);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, 30);
        Assert.True(completion.FinishReason is ChatFinishReason.Length or ChatFinishReason.Stop);
    }

    [Fact]
    public async Task Streaming_chat_delivers_the_same_text_in_pieces_and_usage_at_the_end()
    {
        var chat = Client.GetChatClient(ServerFixture.ModelId);
        var text = new StringBuilder();
        var pieces = 0;
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync(Conversation, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30 }))
        {
            foreach (var part in update.ContentUpdate) { text.Append(part.Text); pieces++; }
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal(await ExpectedReply(30), text.ToString());
        Assert.True(pieces > 1, "the reply arrived in one piece, not streamed");
        Assert.NotNull(finish);
        Assert.NotNull(usage);
        Assert.Equal(usage!.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);
    }

    [Fact]
    public async Task Log_probabilities_are_the_models_own_and_sorted()
    {
        var chat = Client.GetChatClient(ServerFixture.ModelId);
        ChatCompletion completion = await chat.CompleteChatAsync(Conversation,
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 });
        Assert.Equal(10, completion.ContentTokenLogProbabilities.Count);
        foreach (var token in completion.ContentTokenLogProbabilities)
        {
            Assert.Equal(3, token.TopLogProbabilities.Count);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(token.TopLogProbabilities[0].LogProbability, token.LogProbability, 9);
            Assert.True(token.TopLogProbabilities[0].LogProbability >= token.TopLogProbabilities[1].LogProbability);
            Assert.True(token.LogProbability <= 0);
        }
    }

    [Fact]
    public async Task Embeddings_equal_the_libraries_mean_pooled_normalized_vectors()
    {
        var embeddings = Client.GetEmbeddingClient(ServerFixture.ModelId);
        // The .NET client asks for base64 and decodes it.
        OpenAIEmbeddingCollection result = await embeddings.GenerateEmbeddingsAsync(["ROMEO:", "JULIET: O Romeo"]);
        var expected = Shakespeare.Embed(["ROMEO:", "JULIET: O Romeo"], new EmbeddingOptions { Normalize = true });
        Assert.Equal(2, result.Count);
        for (var i = 0; i < 2; i++)
        {
            var vector = result[i].ToFloats().ToArray();
            Assert.Equal(expected[i].Vectors, vector);
            Assert.Equal(1.0, Math.Sqrt(vector.Sum(v => (double)v * v)), 5);
        }
    }

    [Fact]
    public async Task Parallel_requests_each_get_their_own_greedy_reply()
    {
        var chat = Client.GetChatClient(ServerFixture.ModelId);
        var prompts = new[] { "Who is there?", "What news?", "Good morrow.", "Speak!", "Away!", "Peace, ho!" };
        var replies = await Task.WhenAll(prompts.Select(p =>
            chat.CompleteChatAsync([new UserChatMessage(p)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 20 })));
        for (var i = 0; i < prompts.Length; i++)
        {
            using var alone = new NativeGpt2.AI.Gpt2ChatClient(Shakespeare);
            var expected = await alone.GetResponseAsync([new(Microsoft.Extensions.AI.ChatRole.User, prompts[i])],
                new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 20 });
            Assert.Equal(expected.Text, replies[i].Value.Content.Single().Text);
        }
    }

    [Fact]
    public async Task The_model_list_names_the_served_model()
    {
        var models = await Client.GetOpenAIModelClient().GetModelsAsync();
        Assert.Equal(ServerFixture.ModelId, models.Value.Single().Id);
    }
}
