using System.Text.RegularExpressions;
using NativeGpt2.Loading;

namespace NativeGpt2;

/// <summary>
/// Finds Hugging Face models in the local hub cache, or downloads them into it. A cached model lives in
/// <c>models--{org}--{name}/snapshots/{commit}/</c>, with <c>refs/{revision}</c> naming the commit, as
/// Hugging Face's own tools lay it out, so models downloaded by either are found by both.
/// </summary>
public static partial class ModelHub
{
    /// <summary>Short names and the repositories they stand for.</summary>
    public static IReadOnlyDictionary<string, string> KnownModels { get; } = new Dictionary<string, string>
    {
        ["gpt2"] = "openai-community/gpt2",
        ["gpt2-medium"] = "openai-community/gpt2-medium",
        ["gpt2-large"] = "openai-community/gpt2-large",
        ["gpt2-xl"] = "openai-community/gpt2-xl",
        ["distilgpt2"] = "distilbert/distilgpt2",
    };

    private static readonly Lazy<HttpClient> SharedClient = new(() => new HttpClient { Timeout = TimeSpan.FromMinutes(30) });

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")]
    private static partial Regex RepositoryId();

    /// <summary>Whether <paramref name="spec"/> names a hub model: a short name from <see cref="KnownModels"/> or <c>org/name</c>.</summary>
    public static bool IsHubName(string spec) => KnownModels.ContainsKey(spec) || (RepositoryId().IsMatch(spec) && !spec.Contains(".."));

    /// <summary>
    /// The local directory of a hub model: from the cache if it holds a complete copy, else downloaded
    /// (unless offline). Each file is written to a temporary name and renamed when complete, so an
    /// interrupted download leaves nothing half-written; the next call fetches what is missing.
    /// </summary>
    /// <exception cref="ModelNotFoundException">Offline and not cached, or the hub has no such model.</exception>
    /// <exception cref="ModelDownloadException">A download failed.</exception>
    public static async Task<string> ResolveAsync(string spec, HubOptions? options = null, IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new HubOptions();
        var environment = (Func<string, string?>)Environment.GetEnvironmentVariable;
        var repository = KnownModels.TryGetValue(spec, out var full) ? full : spec;
        if (!RepositoryId().IsMatch(repository) || repository.Contains(".."))
            throw new ModelNotFoundException(spec, "not a hub model name (expected org/name or one of " + string.Join(", ", KnownModels.Keys) + ")");
        if (!Regex.IsMatch(options.Revision, @"^[A-Za-z0-9][A-Za-z0-9._/-]*$") || options.Revision.Contains(".."))
            throw new ArgumentException($"revision '{options.Revision}' is not a valid branch, tag or commit", nameof(options));

        var repositoryDirectory = Path.Combine(options.ResolvedCacheDirectory(environment), "models--" + repository.Replace("/", "--"));
        if (FindCachedSnapshot(repositoryDirectory, options.Revision) is { } cached && IsComplete(cached))
            return cached;
        if (options.ResolvedOffline(environment))
            throw new ModelNotFoundException(spec, $"offline, and no complete copy of {repository}@{options.Revision} in {repositoryDirectory}");

        var downloader = new HubDownloader(options.HttpClient ?? SharedClient.Value, options.ResolvedEndpoint(environment), repository, options.Revision,
            options.ResolvedToken(environment), repositoryDirectory, progress);
        return await downloader.DownloadAsync(spec, cancellationToken).ConfigureAwait(false);
    }

    private static string? FindCachedSnapshot(string repositoryDirectory, string revision)
    {
        var reference = Path.Combine(repositoryDirectory, "refs", revision);
        var commit = File.Exists(reference) ? File.ReadAllText(reference).Trim() : revision;
        if (commit.Length == 0 || commit.Contains("..") || commit.IndexOfAny(['/', '\\']) >= 0) return null;
        var snapshot = Path.Combine(repositoryDirectory, "snapshots", commit);
        return Directory.Exists(snapshot) ? snapshot : null;
    }

    /// <summary>A snapshot is usable once it has a config and every weight file (and, if present, both tokenizer files).</summary>
    internal static bool IsComplete(string snapshot)
    {
        if (!File.Exists(Path.Combine(snapshot, CheckpointLoader.ConfigFileName))) return false;
        if (File.Exists(Path.Combine(snapshot, "vocab.json")) != File.Exists(Path.Combine(snapshot, "merges.txt"))) return false;
        if (File.Exists(Path.Combine(snapshot, CheckpointLoader.SingleFileName))) return true;
        var index = Path.Combine(snapshot, Loading.ShardIndex.FileName);
        if (!File.Exists(index)) return false;
        try
        {
            return Loading.ShardIndex.Load(index).Shards.All(s => File.Exists(Path.Combine(snapshot, s)));
        }
        catch (ModelFormatException)
        {
            return false;
        }
    }
}
