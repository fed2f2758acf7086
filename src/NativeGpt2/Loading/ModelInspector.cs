using Microsoft.Extensions.Logging.Abstractions;
using NativeGpt2.Loading;
using NativeGpt2.Safetensors;
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
    /// What keeps the checkpoint from loading, one line per tensor (missing, mis-shaped, of a dtype that cannot be read,
    /// stored twice), as <see cref="CheckpointMismatchException.Problems"/> would list them; empty when its tensors fit the
    /// config. The config itself was already checked: a malformed one fails <see cref="ModelInspector.Inspect"/>.
    /// </summary>
    public IReadOnlyList<string> Problems { get; init; } = [];

    /// <summary>Whether the head reads the token embedding (no separate lm_head is used).</summary>
    public bool IsTied => Config.TieWordEmbeddings;

    /// <summary>Distinct dtypes of the weights.</summary>
    public IEnumerable<string> WeightDTypes => Tensors.Where(t => t.Role == TensorRole.Weight).Select(t => t.DType).Distinct();
}

/// <summary>Describes checkpoints for <c>nativegpt2 inspect</c>: config and tensor table from headers only, fast for any size.</summary>
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
            return new ModelDescription(spec, config, [], tensors);
        }
        options ??= new ModelLoadOptions();
        var directory = ModelSpec.ResolveDirectory(spec, options, cancellationToken);
        return Loading.CheckpointLoader.Describe(directory, options.Logger ?? NullLogger.Instance) with { Source = spec };
    }
}
