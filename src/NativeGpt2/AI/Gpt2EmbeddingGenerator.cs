using Microsoft.Extensions.AI;

namespace NativeGpt2.AI;

/// <summary>
/// <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over a loaded <see cref="Gpt2CausalLM"/>: one
/// vector per text, pooled as <see cref="EmbeddingOptions"/> says (default: mean of the final hidden
/// states, L2-normalized), the texts batched through the model on the thread pool.
/// </summary>
public sealed class Gpt2EmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly Gpt2CausalLM _model;
    private readonly EmbeddingGeneratorMetadata _metadata;

    /// <summary>A generator over <paramref name="model"/>, which the caller keeps and disposes.</summary>
    /// <param name="model">A model with a tokenizer.</param>
    /// <param name="options">Pooling, layer and normalization (default: mean, final layer, normalized). <see cref="EmbeddingPooling.None"/> is not allowed: one vector per text.</param>
    /// <param name="modelId">The name reported as the model id (default: the model's source).</param>
    public Gpt2EmbeddingGenerator(Gpt2CausalLM model, EmbeddingOptions? options = null, string? modelId = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (model.Tokenizer is null) throw new ArgumentException($"model '{model.Source}' has no tokenizer, which embedding text needs", nameof(model));
        Options = options ?? new EmbeddingOptions { Normalize = true };
        Options.Validate(model.Config.LayerCount);
        if (Options.Pooling == EmbeddingPooling.None)
            throw new ArgumentException("an embedding generator gives one vector per text: use Mean or Last pooling", nameof(options));
        ModelId = modelId ?? model.Source;
        _metadata = new EmbeddingGeneratorMetadata("NativeGpt2", null, ModelId, model.Config.EmbeddingSize);
    }

    /// <summary>How texts become vectors.</summary>
    public EmbeddingOptions Options { get; }

    /// <summary>The model id reported with each embedding.</summary>
    public string ModelId { get; }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException"><see cref="EmbeddingGenerationOptions.Dimensions"/> asks for another size than the model's.</exception>
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        var texts = values.ToArray();
        var dimensions = _model.Config.EmbeddingSize;
        if (options?.Dimensions is { } asked && asked != dimensions)
            throw new NotSupportedException($"this model's embeddings have {dimensions} dimensions, not {asked}");
        var results = await Task.Run(() => _model.Embed(texts, Options, cancellationToken), cancellationToken).ConfigureAwait(false);
        var created = DateTimeOffset.UtcNow;
        var embeddings = new GeneratedEmbeddings<Embedding<float>>(results.Select(r => new Embedding<float>(r.Vectors) { ModelId = ModelId, CreatedAt = created }))
        {
            Usage = new UsageDetails { InputTokenCount = results.Sum(r => r.TokenCount), TotalTokenCount = results.Sum(r => r.TokenCount) },
        };
        return embeddings;
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return _metadata;
        if (serviceType == typeof(Gpt2CausalLM)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to release: the model belongs to the caller.</summary>
    public void Dispose()
    {
    }
}
