using Microsoft.Extensions.Logging;
using NativeGpt2.Hub;

namespace NativeGpt2;

/// <summary>How <see cref="Gpt2CausalLM.Load"/> finds and reports on a model.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Receives the backend choice, what was read, and warnings. Default: no logging.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Receives progress of long stages (reading, generating, downloading).</summary>
    public IProgress<LoadProgress>? Progress { get; init; }

    /// <summary>
    /// Where the model runs: <c>auto</c> (the default: CUDA when the NativeGpt2.Ilgpu package is present and a
    /// CUDA device is found, else <c>cpu</c>), <c>cpu</c>, <c>cuda</c> or <c>ilgpu-cpu</c> (the last two need
    /// NativeGpt2.Ilgpu). The choice is logged.
    /// </summary>
    public string Backend { get; init; } = Backends.BackendRegistry.Auto;

    /// <summary>
    /// A backend instance to run on instead of one made from <see cref="Backend"/>: several models can share
    /// one device context this way. The caller owns it and disposes it after the models.
    /// </summary>
    public Backends.IBackend? BackendInstance { get; init; }

    /// <summary>
    /// How the weight matrices (the projections, wte and an untied lm_head) are held: <c>F32</c>, <c>F16</c>,
    /// <c>BF16</c> or <c>Q8</c> (8-bit blocks of 32 with a float scale), converted once at load and widened
    /// inside the matmul. Null (the default) keeps each tensor's checkpoint format: F16 and BF16 checkpoints
    /// stay 16-bit in memory. Gains, biases and position embeddings always stay float32.
    /// </summary>
    public Weights.WeightFormat? WeightFormat { get; init; }

    /// <summary>Where hub models (<c>gpt2</c>, <c>org/name</c>) are cached and downloaded from.</summary>
    public HubOptions Hub { get; init; } = new();
}
