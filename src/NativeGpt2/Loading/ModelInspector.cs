using Microsoft.Extensions.Logging.Abstractions;
using NativeGpt2.Safetensors;
using NativeGpt2.Tokenization;
using NativeGpt2.Weights;

namespace NativeGpt2.Loading;

/// <summary>What a tensor of a checkpoint is used for.</summary>
public enum TensorRole
{
    /// <summary>A weight of the model.</summary>
    Weight,
    /// <summary>A causal-mask buffer (<c>h.N.attn.bias</c>, <c>attn.masked_bias</c>) that is not a weight and is ignored.</summary>
    IgnoredBuffer,
    /// <summary><c>lm_head.weight</c> of a tied model: a copy of <c>wte</c>, ignored in favour of the real one.</summary>
    IgnoredTiedHead,
    /// <summary>A tensor GPT-2 has no use for.</summary>
    Unused,
}

/// <summary>One tensor as stored in a checkpoint.</summary>
/// <param name="Name">Canonical name (no <c>transformer.</c> prefix).</param>
/// <param name="StoredName">Name in the file.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Shape">Stored shape.</param>
/// <param name="File">File name holding it (or <c>synthetic</c>).</param>
/// <param name="Role">How the loader treats it.</param>
public sealed record TensorDescription(string Name, string StoredName, string DType, long[] Shape, string File, TensorRole Role);

/// <summary>A model described from its config and checkpoint headers, without reading any weights.</summary>
/// <param name="Source">The spec inspected.</param>
/// <param name="Config">The architecture.</param>
/// <param name="Files">Weight files with their sizes in bytes.</param>
/// <param name="Tensors">Every stored tensor, in file order.</param>
public sealed record ModelDescription(string Source, Gpt2Config Config, IReadOnlyList<(string File, long Bytes)> Files, IReadOnlyList<TensorDescription> Tensors)
{
    /// <summary>
    /// What keeps the model from loading, one line each: every tensor missing, mis-shaped, of a dtype that cannot be read
    /// or stored twice, as <see cref="CheckpointMismatchException.Problems"/> would list them, then the tokenizer's
    /// problem, if it has one (malformed files, or more or fewer tokens than the model has rows); empty when the model
    /// loads. The config itself was already checked: a malformed one fails <see cref="ModelInspector.Inspect"/>.
    /// </summary>
    public IReadOnlyList<string> Problems { get; init; } = [];

    /// <summary>
    /// Where the tokenizer comes from (<c>vocab.json + merges.txt</c>, <c>tokenizer.json</c>, or GPT-2's built-in
    /// vocabulary for a synthetic model); null when the checkpoint has none and takes token ids only.
    /// </summary>
    public string? Tokenizer { get; init; }

    /// <summary>The tokenizer's tokens, added ones included; null when it has none or its files could not be read.</summary>
    public int? TokenizerTokens { get; init; }

    /// <summary>Whether the head reads the token embedding (no separate lm_head is used).</summary>
    public bool IsTied => Config.TieWordEmbeddings;

    /// <summary>Distinct dtypes of the weights.</summary>
    public IEnumerable<string> WeightDTypes => Tensors.Where(t => t.Role == TensorRole.Weight).Select(t => t.DType).Distinct();
}

/// <summary>
/// Describes checkpoints for <c>nativegpt2 inspect</c>: config, tensor table from headers only, and tokenizer, with what
/// would keep the model from loading; no weight is read, so it is fast for any size.
/// </summary>
public static class ModelInspector
{
    /// <summary>Describes the model a spec names (a checkpoint directory, a hub name or a <c>synthetic:</c> name).</summary>
    /// <exception cref="ModelNotFoundException">The spec names no model.</exception>
    /// <exception cref="ModelFormatException">A header or the config is malformed.</exception>
    public static ModelDescription Inspect(string spec, ModelLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        if (ModelSpec.SyntheticConfig(spec) is { } config)
        {
            var tensors = Gpt2Weights.ExpectedTensors(config)
                .Select(t => new TensorDescription(t.Name, t.Name, "F32", t.Shape.Select(d => (long)d).ToArray(), "synthetic", TensorRole.Weight))
                .ToList();
            return new ModelDescription(spec, config, [], tensors) { Tokenizer = BuiltInTokenizer, TokenizerTokens = Gpt2Tokenizer.Gpt2.VocabSize };
        }
        options ??= new ModelLoadOptions();
        var directory = ModelSpec.ResolveDirectory(spec, options, cancellationToken);
        return WithTokenizer(CheckpointLoader.Describe(directory, options.Logger ?? NullLogger.Instance) with { Source = spec }, directory);
    }

    /// <summary>How <see cref="ModelDescription.Tokenizer"/> names the vocabulary a synthetic model takes.</summary>
    public const string BuiltInTokenizer = "GPT-2's vocabulary (built in)";

    /// <summary>
    /// <paramref name="description"/> with the directory's tokenizer, read as loading reads it, and its problem if it has
    /// one (malformed, or not fitting the config's vocab_size).
    /// </summary>
    private static ModelDescription WithTokenizer(ModelDescription description, string directory)
    {
        if (Gpt2Tokenizer.FilesRead(directory) is not { } files) return description;
        try
        {
            var tokenizer = Gpt2Tokenizer.TryLoad(directory)!;
            var mismatch = tokenizer.MismatchWithModelOf(description.Config.VocabSize, Gpt2Tokenizer.VocabularyFile(directory)!);
            return description with
            {
                Tokenizer = files,
                TokenizerTokens = tokenizer.VocabSize,
                Problems = mismatch is null ? description.Problems : [.. description.Problems, mismatch.Message],
            };
        }
        catch (ModelFormatException e)
        {
            return description with { Tokenizer = files, Problems = [.. description.Problems, e.Message] };
        }
    }
}
