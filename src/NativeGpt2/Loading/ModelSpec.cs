using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NativeGpt2.Weights;
using NativeGpt2.Hub;

namespace NativeGpt2.Loading;

/// <summary>
/// What a model spec names: a checkpoint directory, a hub name (found in the hub cache or downloaded), or
/// <c>synthetic:NAME</c> for a full-size model built from the synthetic-weights formula. Loading, the
/// tokenizer and the inspector all resolve specs here.
/// </summary>
internal static class ModelSpec
{
    /// <summary>The architecture a <c>synthetic:NAME</c> spec names; null for any other spec.</summary>
    /// <exception cref="ModelNotFoundException">The spec is <c>synthetic:</c> with an unknown name.</exception>
    public static Gpt2Config? SyntheticConfig(string spec)
    {
        if (!spec.StartsWith(Gpt2CausalLM.SyntheticPrefix, StringComparison.Ordinal)) return null;
        return SyntheticWeights.Configs.TryGetValue(spec[Gpt2CausalLM.SyntheticPrefix.Length..], out var config)
            ? config
            : throw new ModelNotFoundException(spec, $"unknown synthetic model (known: {string.Join(", ", SyntheticWeights.Configs.Keys)})");
    }

    /// <summary>The checkpoint directory a (non-synthetic) spec names: the directory itself, or a hub model's cached snapshot.</summary>
    public static async Task<string> ResolveDirectoryAsync(string spec, ModelLoadOptions options, CancellationToken cancellationToken)
    {
        if (Directory.Exists(spec)) return spec;
        if (File.Exists(spec))
            throw new ModelNotFoundException(spec, "is a file; give the checkpoint directory that holds config.json");
        if (!ModelHub.IsHubName(spec))
            throw new ModelNotFoundException(spec, $"no such directory, and not a hub name (org/name, or {string.Join(", ", ModelHub.KnownModels.Keys)}) or a '{Gpt2CausalLM.SyntheticPrefix}' name");
        var snapshot = await ModelHub.ResolveAsync(spec, options.Hub, options.Progress, cancellationToken).ConfigureAwait(false);
        (options.Logger ?? NullLogger.Instance).LogInformation("{Spec} resolved to {Snapshot}", spec, snapshot);
        return snapshot;
    }

    /// <summary><see cref="ResolveDirectoryAsync"/> for synchronous callers.</summary>
    public static string ResolveDirectory(string spec, ModelLoadOptions options, CancellationToken cancellationToken) =>
        ResolveDirectoryAsync(spec, options, cancellationToken).GetAwaiter().GetResult();
}
