using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using NativeGpt2.Generation;

namespace NativeGpt2.AI;

/// <summary>
/// <see cref="IChatClient"/> over a loaded <see cref="Gpt2CausalLM"/>: messages become a plain-text prompt
/// (<see cref="ChatTemplate"/>), <see cref="ChatOptions"/> become <see cref="GenerationOptions"/>, and the
/// reply streams token by token with its usage at the end. Safe to share between threads, as the model is.
/// </summary>
/// <remarks>
/// Mapped options: <see cref="ChatOptions.Temperature"/> (0: greedy), <see cref="ChatOptions.TopP"/>,
/// <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.MaxOutputTokens"/> (default
/// <see cref="DefaultMaxOutputTokens"/>), <see cref="ChatOptions.Seed"/>, <see cref="ChatOptions.StopSequences"/>
/// (added to the template's) and <see cref="ChatOptions.Instructions"/>. A conversation longer than the context
/// keeps its most recent tokens. GPT-2 cannot call tools or promise JSON: options asking for either are
/// rejected with <see cref="NotSupportedException"/>. The frequency and presence penalties are OpenAI's
/// (<see cref="GenerationOptions.FrequencyPenalty"/>); <c>AdditionalProperties["repetition_penalty"]</c> sets Hugging Face's, and
/// <c>AdditionalProperties["min_p"]</c> min-p sampling (<see cref="GenerationOptions.MinP"/>), <c>["typical_p"]</c> typical
/// sampling (<see cref="GenerationOptions.TypicalP"/>), <c>["no_repeat_ngram_size"]</c> and
/// <c>["min_tokens"]</c> the n-gram and minimum-length rules (<see cref="GenerationOptions.NoRepeatNgramSize"/>,
/// <see cref="GenerationOptions.MinNewTokens"/>), and <c>["penalty_alpha"]</c> contrastive search among
/// <see cref="ChatOptions.TopK"/> candidates (<see cref="GenerationOptions.PenaltyAlpha"/>).
/// </remarks>
public sealed class Gpt2ChatClient : IChatClient
{
    private readonly Gpt2CausalLM _model;
    private readonly GenerationBatcher? _batcher;
    private readonly ChatClientMetadata _metadata;

    /// <summary>A chat client over <paramref name="model"/>, which the caller keeps and disposes.</summary>
    /// <param name="model">A model with a tokenizer.</param>
    /// <param name="modelId">The name reported as the model id (default: the model's source).</param>
    /// <param name="template">How messages become a prompt (default <see cref="ChatTemplate.Plain"/>).</param>
    /// <param name="batcher">
    /// A batch over the same model that replies decode in beside other callers' sequences (contrastive search excepted),
    /// which the caller keeps and disposes; null (the default): each reply decodes on its own.
    /// </param>
    public Gpt2ChatClient(Gpt2CausalLM model, string? modelId = null, ChatTemplate? template = null, GenerationBatcher? batcher = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (model.Tokenizer is null) throw new ArgumentException($"model '{model.Source}' has no tokenizer, which chat needs", nameof(model));
        if (batcher is not null && !ReferenceEquals(batcher.Model, model))
            throw new ArgumentException("the batcher decodes with another model", nameof(batcher));
        _batcher = batcher;
        Template = template ?? ChatTemplate.Plain;
        ModelId = modelId ?? model.Source;
        _metadata = new ChatClientMetadata("NativeGpt2", null, ModelId);
    }

    /// <summary>Tokens a reply may have when <see cref="ChatOptions.MaxOutputTokens"/> is not set (at most half the context, <see cref="DefaultMaxOutputTokensFor"/>).</summary>
    public const int DefaultMaxOutputTokens = 256;

    /// <summary>The reply length used when none is asked for: <see cref="DefaultMaxOutputTokens"/>, or half of a smaller context.</summary>
    public static int DefaultMaxOutputTokensFor(int contextLength) => Math.Min(DefaultMaxOutputTokens, contextLength / 2);

    /// <summary>The prompt format.</summary>
    public ChatTemplate Template { get; }

    /// <summary>The model id reported in responses.</summary>
    public string ModelId { get; }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false)) updates.Add(update);
        return updates.ToChatResponse();
    }

    /// <inheritdoc />
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, options);
        return Stream(prompt, generation, cancellationToken);
    }

    /// <summary>The prompt's token ids (the most recent that fit) and the generation options for a request.</summary>
    private (int[] Prompt, GenerationOptions Options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (options?.Tools is { Count: > 0 }) throw new NotSupportedException("GPT-2 cannot call tools: remove ChatOptions.Tools");
        if (options?.ResponseFormat is ChatResponseFormatJson) throw new NotSupportedException("GPT-2 cannot promise JSON output: use ChatResponseFormat.Text");
        var context = _model.Config.ContextLength;
        var maxOutput = options?.MaxOutputTokens ?? DefaultMaxOutputTokensFor(context);
        if (maxOutput < 1 || maxOutput >= context)
            throw new ArgumentOutOfRangeException(nameof(options), maxOutput, $"MaxOutputTokens must be in [1, {context - 1}] for a context of {context}");
        // A conversation longer than the context keeps its most recent tokens.
        var prompt = Template.Format(messages, options?.Instructions);
        _model.WarnAboutMissingCharacters(_model.Tokenizer!, prompt);
        var ids = ChatTemplate.EncodeFormatted(_model.Tokenizer!, prompt, context - maxOutput);
        var temperature = options?.Temperature ?? 1f;
        var generation = new GenerationOptions
        {
            MaxNewTokens = maxOutput,
            Temperature = temperature,
            Greedy = temperature == 0f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            Seed = options?.Seed is { } seed ? unchecked((int)(seed ^ (seed >> 32))) : null,
            RepetitionPenalty = options?.AdditionalProperties?.TryGetValue("repetition_penalty", out float penalty) == true ? penalty : 1f,
            MinP = options?.AdditionalProperties?.TryGetValue("min_p", out float minP) == true ? minP : 0f,
            TypicalP = options?.AdditionalProperties?.TryGetValue("typical_p", out float typicalP) == true ? typicalP : 1f,
            NoRepeatNgramSize = options?.AdditionalProperties?.TryGetValue("no_repeat_ngram_size", out int noRepeat) == true ? noRepeat : 0,
            MinNewTokens = options?.AdditionalProperties?.TryGetValue("min_tokens", out int minTokens) == true ? minTokens : 0,
            PenaltyAlpha = options?.AdditionalProperties?.TryGetValue("penalty_alpha", out float alpha) == true ? alpha : 0f,
            PresencePenalty = options?.PresencePenalty ?? 0f,
            FrequencyPenalty = options?.FrequencyPenalty ?? 0f,
            StopStrings = [.. Template.StopSequences, .. options?.StopSequences ?? []],
        };
        generation.Validate();
        return (ids, generation);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Stream(int[] prompt, GenerationOptions options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var responseId = "chatcmpl-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow;
        var started = false;
        GenerationUpdate? last = null;
        var updates = _batcher is not null && GenerationBatcher.CanBatch(options)
            ? _batcher.GenerateUpdatesAsync(prompt, options, cancellationToken)
            : _model.GenerateUpdatesAsync(prompt, options, cancellationToken);
        await foreach (var update in updates.ConfigureAwait(false))
        {
            last = update;
            // The reply follows "Assistant:" after one space, which is the template's, not the reply's.
            var text = ChatTemplate.TrimReplyStart(update.Text, ref started);
            if (text.Length > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, text) { ResponseId = responseId, MessageId = responseId, CreatedAt = created, ModelId = ModelId };
        }
        var usage = new UsageDetails
        {
            InputTokenCount = prompt.Length,
            OutputTokenCount = last?.GeneratedTokenCount ?? 0,
            TotalTokenCount = prompt.Length + (last?.GeneratedTokenCount ?? 0),
        };
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(usage)])
        {
            ResponseId = responseId,
            MessageId = responseId,
            CreatedAt = created,
            ModelId = ModelId,
            FinishReason = last?.FinishReason == NativeGpt2.FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop,
        };
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(Gpt2CausalLM)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to release: the model belongs to the caller.</summary>
    public void Dispose()
    {
    }
}
