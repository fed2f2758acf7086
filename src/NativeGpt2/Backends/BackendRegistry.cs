using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using NativeGpt2.Backends.Cpu;

namespace NativeGpt2.Backends;

/// <summary>Makes backends by name for a package that offers them (NativeGpt2.Ilgpu offers <c>cuda</c> and <c>ilgpu-cpu</c>).</summary>
public interface IBackendProvider
{
    /// <summary>The names it makes.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>The name <c>auto</c> should pick on this machine (<c>cuda</c> when a CUDA device is present), or null.</summary>
    string? AutoCandidate { get; }

    /// <summary>A new backend of one of <see cref="Names"/>; the caller owns it.</summary>
    /// <exception cref="BackendUnavailableException">It cannot run here.</exception>
    IBackend Create(string name);
}

/// <summary>
/// Backend names and how each is made: <c>cpu</c> is built in; other packages register theirs (the
/// NativeGpt2.Ilgpu assembly is also found on its own when it is deployed next to this one).
/// <c>auto</c> picks a registered candidate (CUDA when a device is present), else <c>cpu</c>.
/// </summary>
public static class BackendRegistry
{
    /// <summary>The CPU backend's name.</summary>
    public const string Cpu = "cpu";

    /// <summary>The name that picks the best backend this machine has.</summary>
    public const string Auto = "auto";

    private const string IlgpuProvider = "NativeGpt2.Ilgpu.IlgpuBackendProvider, NativeGpt2.Ilgpu";

    private static readonly ConcurrentDictionary<string, IBackendProvider> Providers = new(StringComparer.OrdinalIgnoreCase);
    private static readonly Lazy<bool> Discovered = new(Discover);

    /// <summary>Registers the names <paramref name="provider"/> makes (a later registration of a name wins).</summary>
    public static void Register(IBackendProvider provider)
    {
        ArgumentNullException.ThrowIfNull(provider);
        foreach (var name in provider.Names) Providers[name] = provider;
    }

    /// <summary>Every name that can be asked for here: <c>auto</c>, <c>cpu</c>, and the registered ones.</summary>
    public static IReadOnlyList<string> Names
    {
        get
        {
            _ = Discovered.Value;
            return [Auto, Cpu, .. Providers.Keys.Order(StringComparer.Ordinal)];
        }
    }

    /// <summary>
    /// The backend <paramref name="name"/> names, and whether the caller owns it (must dispose it):
    /// the CPU backend is shared, others are made anew.
    /// </summary>
    /// <exception cref="BackendUnavailableException">An unknown name, or a backend that cannot run here.</exception>
    public static (IBackend Backend, bool Owned) Create(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        _ = Discovered.Value;
        if (name.Equals(Auto, StringComparison.OrdinalIgnoreCase))
        {
            var candidate = Providers.Values.Distinct().Select(p => p.AutoCandidate).FirstOrDefault(c => c is not null);
            if (candidate is null) return (CpuBackend.Instance, false);
            name = candidate;
        }
        if (name.Equals(Cpu, StringComparison.OrdinalIgnoreCase)) return (CpuBackend.Instance, false);
        if (!Providers.TryGetValue(name, out var provider))
        {
            var hint = Providers.IsEmpty ? "; cuda and ilgpu-cpu need the NativeGpt2.Ilgpu package" : "";
            throw new BackendUnavailableException(name, $"unknown backend (known: {string.Join(", ", Names)}){hint}");
        }
        return (provider.Create(name), true);
    }

    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "The provider type is named by a constant string, so the trimmer keeps it when its assembly is part of the app.")]
    [UnconditionalSuppressMessage("Trimming", "IL2072", Justification = "As above: a constant type name with a public parameterless constructor.")]
    private static bool Discover()
    {
        // The ILGPU package registers itself when its assembly is loaded; an app that deploys it without
        // touching it still gets its backends by name.
        try
        {
            if (Type.GetType(IlgpuProvider, throwOnError: false) is { } type && Activator.CreateInstance(type) is IBackendProvider provider)
                Register(provider);
        }
        catch (Exception e) when (e is FileLoadException or BadImageFormatException or TypeLoadException)
        {
            // Present but unusable on this platform: cpu remains.
        }
        return true;
    }
}
