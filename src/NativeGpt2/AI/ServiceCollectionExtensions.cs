using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using NativeGpt2.Generation;

namespace NativeGpt2.AI;

/// <summary>What <see cref="ServiceCollectionExtensions.AddNativeGpt2"/> registers, and how.</summary>
public sealed class NativeGpt2ServiceOptions
{
    /// <summary>How the model is loaded (backend, weight format, hub). Its logger defaults to the container's <see cref="ILoggerFactory"/>.</summary>
    public ModelLoadOptions Load { get; set; } = new();

    /// <summary>How the embedding generator pools (default: mean of the final hidden states, normalized).</summary>
    public EmbeddingOptions Embeddings { get; set; } = new() { Normalize = true };

    /// <summary>How the chat client turns messages into a prompt.</summary>
    public ChatTemplate ChatTemplate { get; set; } = ChatTemplate.Plain;

    /// <summary>The model id reported by the clients (default: the model spec).</summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// Rows of the <see cref="GenerationBatcher"/> the chat client and the server decode in (default 8, at most
    /// <see cref="Gpt2CausalLM.MaxSequences"/>): every caller's sequences share it, and more wait their turn. A decoding step
    /// of a batch costs little more than a step of one sequence, so several come about as fast as one; the batch holds a
    /// key/value cache of its rows, so a lower value bounds the memory (1: one sequence after another).
    /// </summary>
    public int MaxBatchSize { get; set; } = 8;

    /// <summary>
    /// Prompt tokens the <see cref="GenerationBatcher"/> runs a step while other sequences decode (default
    /// <see cref="GenerationBatcher.DefaultPrefillChunkTokens"/>, at least 1): a long prompt runs in parts of this size, so the
    /// sequences already decoding wait at most one part's pass between tokens (see <see cref="GenerationBatcher.PrefillChunkTokens"/>).
    /// </summary>
    public int PrefillChunkTokens { get; set; } = GenerationBatcher.DefaultPrefillChunkTokens;

    /// <summary>Checks the options, naming the one out of range.</summary>
    public void Validate()
    {
        GenerationBatcher.CheckBatchSize(MaxBatchSize, nameof(MaxBatchSize));
        GenerationBatcher.CheckPrefillChunk(PrefillChunkTokens, nameof(PrefillChunkTokens));
    }
}

/// <summary>Registers a NativeGpt2 model and its Microsoft.Extensions.AI clients in a service collection.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>
    /// Registers, as singletons, the <see cref="Gpt2CausalLM"/> loaded from <paramref name="model"/> (on first use;
    /// the container disposes it), the <see cref="GenerationBatcher"/> its callers' sequences decode in, an
    /// <see cref="IChatClient"/> decoding there and an <see cref="IEmbeddingGenerator{String, Embedding}"/> over the model,
    /// and the <see cref="NativeGpt2ServiceOptions"/> themselves (for the server's endpoints). Registrations already present
    /// for those services are kept.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="model">A checkpoint directory, a hub name or <c>synthetic:NAME</c>, as for <see cref="Gpt2CausalLM.Load"/>.</param>
    /// <param name="configure">Adjusts loading, pooling, the chat template and the model id.</param>
    public static IServiceCollection AddNativeGpt2(this IServiceCollection services, string model, Action<NativeGpt2ServiceOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(model);
        var options = new NativeGpt2ServiceOptions();
        configure?.Invoke(options);
        options.Validate();
        var modelId = options.ModelId ??= model;
        services.TryAddSingleton(options);
        services.TryAddSingleton(provider =>
        {
            var load = options.Load.Logger is null && provider.GetService<ILoggerFactory>() is { } loggers
                ? options.Load with { Logger = loggers.CreateLogger("NativeGpt2") }
                : options.Load;
            return Gpt2CausalLM.Load(model, load);
        });
        // Made after the model, so the container disposes it first.
        services.TryAddSingleton(provider => new GenerationBatcher(provider.GetRequiredService<Gpt2CausalLM>(), options.MaxBatchSize, options.PrefillChunkTokens));
        services.TryAddSingleton<IChatClient>(provider =>
            new Gpt2ChatClient(provider.GetRequiredService<Gpt2CausalLM>(), modelId, options.ChatTemplate, provider.GetRequiredService<GenerationBatcher>()));
        services.TryAddSingleton<IEmbeddingGenerator<string, Embedding<float>>>(provider =>
            new Gpt2EmbeddingGenerator(provider.GetRequiredService<Gpt2CausalLM>(), options.Embeddings, modelId));
        return services;
    }
}
