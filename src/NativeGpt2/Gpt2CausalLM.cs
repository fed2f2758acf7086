using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NativeGpt2.Loading;
using NativeGpt2.Operators;
using NativeGpt2.Tokenization;
using NativeGpt2.Weights;

namespace NativeGpt2;

/// <summary>
/// GPT-2 as a language model: a <see cref="Gpt2Backbone"/> whose hidden states feed an
/// <see cref="EmbeddingTransposeProjection"/> head.
/// </summary>
/// <example>
/// <code>
/// using var model = Gpt2CausalLM.Load("reference-data/models/tiny");
/// var output = model.Forward(TokenBatch.FromIds([1, 2, 3]));
/// float[] logits = output.Logits.Data; // (1, 3, V)
/// </code>
/// </example>
public sealed partial class Gpt2CausalLM : IDisposable
{
    /// <summary>Prefix of a model spec that builds a full-size model from the synthetic-weights formula.</summary>
    public const string SyntheticPrefix = "synthetic:";

    private readonly ModelLifetime _lifetime = new();

    /// <summary>Builds a model from weights already in memory, with an optional tokenizer.</summary>
    /// <exception cref="ModelFormatException">The config is invalid, or the tokenizer's vocabulary size differs from the config's.</exception>
    /// <exception cref="ArgumentException">A weight is missing or has the wrong shape for the config.</exception>
    public Gpt2CausalLM(Gpt2Config config, Gpt2Weights weights, Gpt2Tokenizer? tokenizer = null, string source = "in-memory")
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        CheckShapes(config, weights);
        if (tokenizer is not null && tokenizer.VocabSize != config.VocabSize)
            throw new ModelFormatException(source, "vocab_size", $"config.json says {config.VocabSize} tokens but vocab.json has {tokenizer.VocabSize}");
        Config = config;
        Source = source;
        Tokenizer = tokenizer;
        Backbone = new Gpt2Backbone(config, weights, _lifetime);
        // Tied: the head reads wte itself (the same array). Untied: lm_head.weight.
        Head = new EmbeddingTransposeProjection(weights.LmHead ?? weights.TokenEmbedding, _lifetime);
    }

    /// <summary>The architecture.</summary>
    public Gpt2Config Config { get; }

    /// <summary>Weights built in memory get the same shape check as a loaded checkpoint, so the kernels never see a mismatch.</summary>
    private static void CheckShapes(Gpt2Config config, Gpt2Weights weights)
    {
        config.Validate("config");
        var actual = weights.All.ToDictionary(w => w.Name, w => w.Shape);
        var problems = Gpt2Weights.ExpectedTensors(config)
            .Where(e => !actual.TryGetValue(e.Name, out var shape) || !shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: {(actual.TryGetValue(e.Name, out var shape) ? FloatTensor.ShapeToString(shape) : "missing")}, expected {FloatTensor.ShapeToString(e.Shape)}")
            .ToList();
        if (problems.Count > 0)
            throw new ArgumentException($"the weights do not fit the config: {string.Join("; ", problems)}", nameof(weights));
    }

    /// <summary>Where the model came from: a directory or a <c>synthetic:</c> name.</summary>
    public string Source { get; }

    /// <summary>The tokenizer from the checkpoint's vocab.json and merges.txt (the original GPT-2 vocabulary for synthetic models); null if the checkpoint has none.</summary>
    public Gpt2Tokenizer? Tokenizer { get; }

    /// <summary>Token ids (B, T) → hidden states (B, T, C).</summary>
    public Gpt2Backbone Backbone { get; }

    /// <summary>Hidden states → logits (V per position).</summary>
    public EmbeddingTransposeProjection Head { get; }

    /// <summary>Whether the head reads the token-embedding matrix in place.</summary>
    public bool IsTied => ReferenceEquals(Head.Weight, Backbone.Weights.TokenEmbedding);

    /// <summary>
    /// Loads a model from a spec: a Hugging Face checkpoint directory; a hub name (<c>gpt2</c>,
    /// <c>gpt2-medium</c>, <c>gpt2-large</c>, <c>gpt2-xl</c>, <c>distilgpt2</c> or <c>org/name</c>), found in the
    /// hub cache or downloaded into it; or <c>synthetic:gpt2</c> (also <c>-medium</c>, <c>-large</c>, <c>-xl</c>)
    /// for a full-size model built from the synthetic-weights formula.
    /// </summary>
    /// <exception cref="ModelNotFoundException">The spec names no loadable model.</exception>
    /// <exception cref="ModelFormatException">A file is malformed or does not fit the config.</exception>
    /// <exception cref="ModelDownloadException">A hub download failed.</exception>
    public static Gpt2CausalLM Load(string spec, ModelLoadOptions? options = null) =>
        LoadAsync(spec, options).GetAwaiter().GetResult();

    /// <summary>Loads a model from a spec (see <see cref="Load"/>); downloads and file reads do not block the caller.</summary>
    public static async Task<Gpt2CausalLM> LoadAsync(string spec, ModelLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        options ??= new ModelLoadOptions();
        var logger = options.Logger ?? NullLogger.Instance;

        Gpt2Config config;
        Gpt2Weights weights;
        Gpt2Tokenizer? tokenizer;
        if (ModelSpec.SyntheticConfig(spec) is { } synthetic)
        {
            config = synthetic;
            tokenizer = Gpt2Tokenizer.Gpt2;
            var progress = options.Progress is { } p ? new Progress<double>(f => p.Report(new LoadProgress("generating synthetic weights", f))) : null;
            weights = await Task.Run(() => SyntheticWeights.Create(config, progress), cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var directory = await ModelSpec.ResolveDirectoryAsync(spec, options, cancellationToken).ConfigureAwait(false);
            // The tokenizer first: it is cheap, and a malformed one should fail before the weights are read.
            tokenizer = Gpt2Tokenizer.TryLoad(directory);
            (config, weights) = await Task.Run(() => CheckpointLoader.Load(directory, logger, options.Progress), cancellationToken).ConfigureAwait(false);
            if (tokenizer is not null && tokenizer.VocabSize != config.VocabSize)
                throw new ModelFormatException(Path.Combine(directory, "vocab.json"), null,
                    $"has {tokenizer.VocabSize} tokens but config.json's vocab_size is {config.VocabSize}");
        }

        var model = new Gpt2CausalLM(config, weights, tokenizer, spec);
        logger.LogInformation("Loaded {Spec}: {Parameters:N0} parameters, V={V} C={C} L={L} NH={NH} context={Context}, head {Head}; backend {Backend}",
            spec, config.ParameterCount, config.VocabSize, config.EmbeddingSize, config.LayerCount, config.HeadCount, config.ContextLength,
            model.IsTied ? "tied to wte" : "untied lm_head", CpuBackend.Description);
        if (tokenizer is null) logger.LogInformation("No vocab.json in {Spec}: the model takes token ids only", spec);
        return model;
    }

    /// <summary>
    /// Runs backbone and head; logits are computed for every position. Parameters as in
    /// <see cref="Gpt2Backbone.Forward"/>; project chosen positions with <see cref="Head"/> instead when
    /// only some are needed.
    /// </summary>
    public CausalLMOutput Forward(TokenBatch batch, KvCache? cache = null, ForwardOptions? options = null)
    {
        ThrowIfDisposed();
        var hidden = Backbone.Forward(batch, cache, options);
        return new CausalLMOutput(Head.Forward(hidden.LastHiddenState), hidden);
    }

    /// <summary>Creates a key/value cache for incremental decoding (see <see cref="Gpt2Backbone.CreateCache"/>).</summary>
    public KvCache CreateCache(int batchSize, int? capacity = null)
    {
        ThrowIfDisposed();
        return Backbone.CreateCache(batchSize, capacity);
    }

    /// <summary>
    /// Marks the model, its backbone and its head disposed: later calls on any of them throw
    /// <see cref="ObjectDisposedException"/>, and a generation in progress stops before its next token.
    /// The weights are released once nothing references the model.
    /// </summary>
    public void Dispose() => _lifetime.Dispose();

    internal void ThrowIfDisposed() => _lifetime.ThrowIfDisposed();
}

/// <summary>The result of <see cref="Gpt2CausalLM.Forward"/>.</summary>
/// <param name="Logits">(B, T, V) next-token logits at every position.</param>
/// <param name="Backbone">The backbone's hidden states and any requested activations.</param>
public sealed record CausalLMOutput(FloatTensor Logits, BackboneOutput Backbone);

/// <summary>Shared disposed flag of a model and the backbone and head it owns.</summary>
internal sealed class ModelLifetime
{
    private volatile bool _disposed;

    public void Dispose() => _disposed = true;

    public void ThrowIfDisposed()
    {
        if (_disposed) throw new ObjectDisposedException(nameof(Gpt2CausalLM), "the model has been disposed");
    }
}
