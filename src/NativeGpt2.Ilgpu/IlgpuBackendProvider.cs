using NativeGpt2.Backends;

namespace NativeGpt2.Ilgpu;

/// <summary>
/// Offers <c>cuda</c> and <c>ilgpu-cpu</c> to <see cref="BackendRegistry"/>, and <c>cuda</c> as the choice of
/// <c>auto</c> when a CUDA device is present. Found by the registry on its own when this assembly is
/// deployed; <see cref="Register"/> makes it explicit.
/// </summary>
public sealed class IlgpuBackendProvider : IBackendProvider
{
    /// <summary>The CUDA backend's name.</summary>
    public const string Cuda = "cuda";

    /// <summary>The name of ILGPU's CPU accelerator, which runs the kernels without a GPU.</summary>
    public const string CpuSimulator = "ilgpu-cpu";

    private static readonly Lazy<bool> CudaPresent = new(IlgpuBackend.CudaAvailable);

    /// <summary>Registers the ILGPU backends with <see cref="BackendRegistry"/>.</summary>
    public static void Register() => BackendRegistry.Register(new IlgpuBackendProvider());

    /// <inheritdoc />
    public IReadOnlyList<string> Names { get; } = [Cuda, CpuSimulator];

    /// <inheritdoc />
    public string? AutoCandidate => CudaPresent.Value ? Cuda : null;

    /// <inheritdoc />
    public IBackend Create(string name) => name.ToLowerInvariant() switch
    {
        Cuda => IlgpuBackend.CreateCuda(),
        CpuSimulator => IlgpuBackend.CreateCpuSimulator(),
        _ => throw new BackendUnavailableException(name, $"not an ILGPU backend (known: {string.Join(", ", Names)})"),
    };
}
