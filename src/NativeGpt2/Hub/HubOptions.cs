using System.Globalization;

namespace NativeGpt2.Hub;

/// <summary>
/// Where hub models are cached and fetched from, and how patiently. Defaults follow Hugging Face's own
/// tools (huggingface_hub), so a machine set up for them needs nothing more:
/// <list type="bullet">
/// <item>the cache: <c>HF_HUB_CACHE</c>, else the older <c>HUGGINGFACE_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else
/// <c>$XDG_CACHE_HOME/huggingface/hub</c>, else <c>~/.cache/huggingface/hub</c> (a leading <c>~</c> is the home folder);</item>
/// <item>the endpoint: <c>HF_ENDPOINT</c>, else https://huggingface.co;</item>
/// <item>offline: <c>HF_HUB_OFFLINE</c> (or <c>TRANSFORMERS_OFFLINE</c>);</item>
/// <item>the token: <c>HF_TOKEN</c>, else the older <c>HUGGING_FACE_HUB_TOKEN</c>, else the file that <c>hf auth login</c>
/// writes (<c>HF_TOKEN_PATH</c>, else <c>HF_HOME/token</c>); none of these when <c>HF_HUB_DISABLE_IMPLICIT_TOKEN</c> is
/// set, which leaves only <see cref="Token"/>;</item>
/// <item>patience: <c>HF_HUB_ETAG_TIMEOUT</c> and <c>HF_HUB_DOWNLOAD_TIMEOUT</c> (seconds, default 10).</item>
/// </list>
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

    /// <summary>Access token for private or gated repositories; null for <c>HF_TOKEN</c> or the saved token (see above).</summary>
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

    /// <summary>Files longer than this are not a token file (a token is under 100 bytes).</summary>
    private const int MaxTokenFileBytes = 4096;

    internal string ResolvedCacheDirectory(Func<string, string?> environment)
    {
        if (CacheDirectory is not null) return CacheDirectory;
        if ((Variable(environment, "HF_HUB_CACHE") ?? Variable(environment, "HUGGINGFACE_HUB_CACHE")) is { } hubCache) return hubCache;
        return Path.Combine(Home(environment), "hub");
    }

    /// <summary>huggingface_hub's home folder: <c>HF_HOME</c>, else <c>$XDG_CACHE_HOME/huggingface</c>, else <c>~/.cache/huggingface</c>.</summary>
    private static string Home(Func<string, string?> environment) =>
        Variable(environment, "HF_HOME")
        ?? Path.Combine(Variable(environment, "XDG_CACHE_HOME") ?? Path.Combine(UserHome(environment), ".cache"), "huggingface");

    /// <summary>A path variable's value with a leading <c>~</c> made the home folder, as huggingface_hub reads it; null when unset or empty.</summary>
    private static string? Variable(Func<string, string?> environment, string name)
    {
        var value = environment(name);
        if (string.IsNullOrEmpty(value)) return null;
        return value == "~" ? UserHome(environment)
            : value.StartsWith("~/", StringComparison.Ordinal) || value.StartsWith("~\\", StringComparison.Ordinal) ? Path.Combine(UserHome(environment), value[2..])
            : value;
    }

    private static string UserHome(Func<string, string?> environment) =>
        environment("HOME") is { Length: > 0 } home ? home : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

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

    /// <summary>
    /// The token to send, or null for none: <see cref="Token"/>, else (unless <c>HF_HUB_DISABLE_IMPLICIT_TOKEN</c>) the
    /// first of <c>HF_TOKEN</c>, <c>HUGGING_FACE_HUB_TOKEN</c> and the saved token file that is not empty or blank.
    /// </summary>
    /// <exception cref="HubConfigurationException">
    /// The token holds a line break inside it, a space or another control character; or the token file cannot be read.
    /// </exception>
    internal string? ResolvedToken(Func<string, string?> environment)
    {
        if (Token is not null) return Checked(nameof(Token), Token);
        if (EnvironmentFlag.Parse("HF_HUB_DISABLE_IMPLICIT_TOKEN", environment("HF_HUB_DISABLE_IMPLICIT_TOKEN"))) return null;
        foreach (var variable in (string[])["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
        {
            if (Checked(variable, environment(variable)) is { } token) return token;
        }
        var (setting, path) = Variable(environment, "HF_TOKEN_PATH") is { } tokenPath ? ("HF_TOKEN_PATH", tokenPath) : ("HF_HOME", Path.Combine(Home(environment), "token"));
        return Checked(setting, ReadTokenFile(setting, path), path);
    }

    /// <summary>The token trimmed, or null when empty or blank; <paramref name="file"/> names the file it was read from.</summary>
    private static string? Checked(string setting, string? token, string? file = null)
    {
        token = token?.Trim();
        if (string.IsNullOrEmpty(token)) return null;
        if (token.Any(char.IsControl) || token.Any(char.IsWhiteSpace))
            throw new HubConfigurationException(setting, file is null
                ? "the token contains a line break, a space or another control character; copy the token alone (hf_…)"
                : $"the token file {file} holds more than a token (a line break, a space or another control character inside it); it should hold the token alone (hf_…)");
        return token;
    }

    /// <summary>The saved token file's text, or null when there is none.</summary>
    private static string? ReadTokenFile(string setting, string path)
    {
        if (Directory.Exists(path)) throw new HubConfigurationException(setting, $"the token file {path} is a folder");
        if (!File.Exists(path)) return null;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1);
            var bytes = new byte[MaxTokenFileBytes + 1];
            var length = file.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            if (length > MaxTokenFileBytes)
                throw new HubConfigurationException(setting, $"{path} is not a token file: it is over {MaxTokenFileBytes} bytes");
            return System.Text.Encoding.UTF8.GetString(bytes, 0, length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HubConfigurationException(setting, $"cannot read the token file {path}: {e.Message}");
        }
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
