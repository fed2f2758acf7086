namespace NativeGpt2;

/// <summary>
/// Where hub models are cached and fetched from. Defaults follow Hugging Face's own tools:
/// <c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else <c>~/.cache/huggingface/hub</c>; <c>HF_ENDPOINT</c>,
/// else https://huggingface.co; <c>HF_HUB_OFFLINE=1</c> for offline; <c>HF_TOKEN</c> for private repositories.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The hub cache directory (the one holding <c>models--org--name</c> folders); null for the default.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Base address of the hub; null for <c>HF_ENDPOINT</c> or https://huggingface.co.</summary>
    public string? Endpoint { get; init; }

    /// <summary>Never use the network: a model must already be in the cache. Also set by <c>HF_HUB_OFFLINE=1</c>.</summary>
    public bool Offline { get; init; }

    /// <summary>Branch, tag or commit to load. Default <c>main</c>.</summary>
    public string Revision { get; init; } = "main";

    /// <summary>Access token for private or gated repositories; null for <c>HF_TOKEN</c>.</summary>
    public string? Token { get; init; }

    /// <summary>The HTTP client to download with; null for a shared default one.</summary>
    public HttpClient? HttpClient { get; init; }

    internal string ResolvedCacheDirectory(Func<string, string?> environment)
    {
        if (CacheDirectory is not null) return CacheDirectory;
        if (environment("HF_HUB_CACHE") is { Length: > 0 } hubCache) return hubCache;
        if (environment("HF_HOME") is { Length: > 0 } home) return Path.Combine(home, "hub");
        var xdg = environment("XDG_CACHE_HOME") is { Length: > 0 } x ? x : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(xdg, "huggingface", "hub");
    }

    internal string ResolvedEndpoint(Func<string, string?> environment) =>
        (Endpoint ?? (environment("HF_ENDPOINT") is { Length: > 0 } e ? e : "https://huggingface.co")).TrimEnd('/');

    internal bool ResolvedOffline(Func<string, string?> environment) =>
        Offline || environment("HF_HUB_OFFLINE") is "1" or "true" or "TRUE" or "yes";

    internal string? ResolvedToken(Func<string, string?> environment) => Token ?? environment("HF_TOKEN");
}
