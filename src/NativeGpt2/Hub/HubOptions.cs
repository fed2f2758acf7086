using System.Globalization;

namespace NativeGpt2.Hub;

/// <summary>
/// Where hub models are cached and fetched from, and how patiently. Defaults follow Hugging Face's own
/// tools (huggingface_hub): <c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else <c>~/.cache/huggingface/hub</c>;
/// <c>HF_ENDPOINT</c>, else https://huggingface.co; <c>HF_HUB_OFFLINE</c> (or <c>TRANSFORMERS_OFFLINE</c>);
/// <c>HF_TOKEN</c>; <c>HF_HUB_ETAG_TIMEOUT</c> and <c>HF_HUB_DOWNLOAD_TIMEOUT</c> (seconds, default 10).
/// A property set here wins over its environment variable.
/// </summary>
public sealed record HubOptions
{
    /// <summary>Seconds huggingface_hub waits by default, for a response and for each read of a body.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The hub cache directory (the one holding <c>models--org--name</c> folders); null for the default.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Base address of the hub, http or https; null for <c>HF_ENDPOINT</c> or https://huggingface.co.</summary>
    public string? Endpoint { get; init; }

    /// <summary>Never use the network: a model must already be in the cache. Also set by <c>HF_HUB_OFFLINE</c>.</summary>
    public bool Offline { get; init; }

    /// <summary>Branch, tag or commit to load. Default <c>main</c>.</summary>
    public string Revision { get; init; } = "main";

    /// <summary>Access token for private or gated repositories; null for <c>HF_TOKEN</c>.</summary>
    public string? Token { get; init; }

    /// <summary>How long to wait for a response's headers; null for <c>HF_HUB_ETAG_TIMEOUT</c> or 10 s.</summary>
    public TimeSpan? ResponseTimeout { get; init; }

    /// <summary>
    /// How long one read of a download may wait for data before the server counts as stalled; null for
    /// <c>HF_HUB_DOWNLOAD_TIMEOUT</c> or 10 s. A slow download that keeps delivering is never cut off.
    /// </summary>
    public TimeSpan? ReadTimeout { get; init; }

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

    /// <exception cref="HubConfigurationException">The endpoint is not an absolute http or https address.</exception>
    internal string ResolvedEndpoint(Func<string, string?> environment)
    {
        var (setting, value) = Endpoint is not null ? (nameof(Endpoint), Endpoint)
            : environment("HF_ENDPOINT") is { Length: > 0 } e ? ("HF_ENDPOINT", e) : ("HF_ENDPOINT", "https://huggingface.co");
        if (!Uri.TryCreate(value.Trim(), UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment) || !string.IsNullOrEmpty(uri.UserInfo))
            throw new HubConfigurationException(setting, $"'{value}' is not an http:// or https:// address without query or credentials (e.g. https://huggingface.co)");
        return uri.GetLeftPart(UriPartial.Path).TrimEnd('/');
    }

    /// <exception cref="HubConfigurationException">An offline variable is set to something that is not a boolean.</exception>
    internal bool ResolvedOffline(Func<string, string?> environment) =>
        Offline
        || EnvironmentFlag.Parse("HF_HUB_OFFLINE", environment("HF_HUB_OFFLINE"))
        || EnvironmentFlag.Parse("TRANSFORMERS_OFFLINE", environment("TRANSFORMERS_OFFLINE"));

    /// <summary>The token to send, or null for none: an empty <c>HF_TOKEN</c> means no token.</summary>
    /// <exception cref="HubConfigurationException">The token holds a line break or another control character.</exception>
    internal string? ResolvedToken(Func<string, string?> environment)
    {
        var (setting, value) = Token is not null ? (nameof(Token), Token) : ("HF_TOKEN", environment("HF_TOKEN"));
        value = value?.Trim();
        if (string.IsNullOrEmpty(value)) return null;
        if (value.Any(char.IsControl) || value.Any(char.IsWhiteSpace))
            throw new HubConfigurationException(setting, "the token contains a line break, a space or another control character; copy the token alone (hf_…)");
        return value;
    }

    internal TimeSpan ResolvedResponseTimeout(Func<string, string?> environment) =>
        ResponseTimeout ?? Seconds("HF_HUB_ETAG_TIMEOUT", environment("HF_HUB_ETAG_TIMEOUT"));

    internal TimeSpan ResolvedReadTimeout(Func<string, string?> environment) =>
        ReadTimeout ?? Seconds("HF_HUB_DOWNLOAD_TIMEOUT", environment("HF_HUB_DOWNLOAD_TIMEOUT"));

    private static TimeSpan Seconds(string variable, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return DefaultTimeout;
        if (!double.TryParse(value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || !(seconds > 0) || seconds > TimeSpan.MaxValue.TotalSeconds / 2)
            throw new HubConfigurationException(variable, $"'{value}' is not a positive number of seconds");
        return TimeSpan.FromSeconds(seconds);
    }
}

/// <summary>Boolean environment variables, spelled as huggingface_hub accepts them.</summary>
internal static class EnvironmentFlag
{
    private static readonly string[] True = ["1", "ON", "YES", "TRUE"];
    private static readonly string[] False = ["0", "OFF", "NO", "FALSE", ""];

    /// <summary>1/ON/YES/TRUE in any case is true; 0/OFF/NO/FALSE, empty or unset is false.</summary>
    /// <exception cref="HubConfigurationException">Anything else: a typo should not silently mean false.</exception>
    public static bool Parse(string variable, string? value)
    {
        if (value is null) return false;
        var word = value.Trim().ToUpperInvariant();
        if (True.Contains(word)) return true;
        if (False.Contains(word)) return false;
        throw new HubConfigurationException(variable, $"'{value}' is not a boolean (1, ON, YES, TRUE or 0, OFF, NO, FALSE, in any case)");
    }
}
