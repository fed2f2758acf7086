using System.Text.RegularExpressions;
using NativeGpt2.Loading;

namespace NativeGpt2.Hub;

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

    /// <summary>Longest repository id huggingface_hub accepts.</summary>
    private const int MaxRepositoryIdLength = 96;

    // Timeouts are per response and per read (HubOptions), not per download: a 6 GB file may take an hour.
    private static readonly Lazy<HttpClient> SharedClient = new(() => new HttpClient { Timeout = Timeout.InfiniteTimeSpan });

    // huggingface_hub's validate_repo_id, in ASCII: an optional namespace and a name, each of letters,
    // digits, '_', '-' and '.', starting and ending with a letter, digit or '_'. \z, not $: $ also matches
    // before a trailing newline.
    [GeneratedRegex(@"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?/)?[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\z")]
    private static partial Regex RepositoryIdPattern();

    // A branch or tag: segments of safe characters separated by '/', as in refs/pr/1.
    [GeneratedRegex(@"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*\z")]
    private static partial Regex RevisionPattern();

    // What the hub sends in X-Repo-Commit and stores in refs/: a full SHA-1.
    [GeneratedRegex(@"^[0-9a-f]{40}\z")]
    private static partial Regex CommitPattern();

    /// <summary>Whether <paramref name="spec"/> names a hub model: a short name from <see cref="KnownModels"/> or <c>org/name</c>.</summary>
    public static bool IsHubName(string spec) => KnownModels.ContainsKey(spec) || (IsRepositoryId(spec) && spec.Contains('/'));

    /// <summary>
    /// Whether <paramref name="id"/> is a repository id huggingface_hub accepts. Besides the pattern, <c>--</c>
    /// is refused (the cache folder is <c>models--org--name</c>, so <c>a--b/c</c> and <c>a/b--c</c> would share one)
    /// and so is <c>..</c>.
    /// </summary>
    internal static bool IsRepositoryId(string id) =>
        id.Length <= MaxRepositoryIdLength && RepositoryIdPattern().IsMatch(id) && !id.Contains("--") && !id.Contains("..") && !id.EndsWith(".git", StringComparison.Ordinal);

    /// <summary>Whether <paramref name="revision"/> is a usable branch, tag or commit name.</summary>
    internal static bool IsRevision(string revision) =>
        revision.Length <= 255 && RevisionPattern().IsMatch(revision) && !revision.Contains("..");

    /// <summary>Whether <paramref name="text"/> is a full commit hash.</summary>
    internal static bool IsCommit(string text) => CommitPattern().IsMatch(text);

    /// <summary>
    /// The local directory of a hub model: from the cache if it holds a complete copy, else downloaded
    /// (unless offline). Each file is downloaded into a locked staging folder and renamed into the snapshot
    /// when complete, so an interrupted download leaves nothing half-written in the snapshot; leftovers of
    /// interrupted runs are swept by the next download. The next call fetches only what is missing.
    /// </summary>
    /// <exception cref="ModelNotFoundException">Offline and not cached, or the hub has no such model.</exception>
    /// <exception cref="ModelDownloadException">A download failed or stalled.</exception>
    /// <exception cref="HubConfigurationException">A hub setting (endpoint, token, offline flag, timeout) is unusable.</exception>
    /// <exception cref="ArgumentException">The revision is not a valid branch, tag or commit name.</exception>
    public static async Task<string> ResolveAsync(string spec, HubOptions? options = null, IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        options ??= new HubOptions();
        var environment = (Func<string, string?>)Environment.GetEnvironmentVariable;
        var repository = KnownModels.TryGetValue(spec, out var full) ? full : spec;
        if (!IsRepositoryId(repository) || !repository.Contains('/'))
            throw new ModelNotFoundException(spec, $"not a hub model name (expected org/name of letters, digits, '_', '-', '.', at most {MaxRepositoryIdLength} characters, no '--' or '..'; or one of {string.Join(", ", KnownModels.Keys)})");
        if (!IsRevision(options.Revision))
            throw new ArgumentException($"revision '{options.Revision}' is not a valid branch, tag or commit (letters, digits, '_', '-', '.' in '/'-separated parts, no '..')", nameof(options));

        var repositoryDirectory = Path.Combine(options.ResolvedCacheDirectory(environment), "models--" + repository.Replace("/", "--"));
        if (FindCachedSnapshot(repositoryDirectory, options.Revision) is { } cached && IsComplete(cached))
            return cached;
        if (options.ResolvedOffline(environment))
            throw new ModelNotFoundException(spec, $"offline, and no complete copy of {repository}@{options.Revision} in {repositoryDirectory}");

        var downloader = new HubDownloader(options.HttpClient ?? SharedClient.Value, options.ResolvedEndpoint(environment), repository, options.Revision,
            options.ResolvedToken(environment), repositoryDirectory, options.ResolvedResponseTimeout(environment), options.ResolvedReadTimeout(environment), progress);
        return await downloader.DownloadAsync(spec, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The snapshot folder name of a revision: the commit its ref file records; a commit given directly; or,
    /// for a server that names no commits, a one-segment revision itself. Null when none of these applies.
    /// </summary>
    internal static string? SnapshotName(string repositoryDirectory, string revision)
    {
        var reference = Path.Combine(repositoryDirectory, "refs", revision);
        if (File.Exists(reference))
        {
            var info = new FileInfo(reference);
            if (info.Length is <= 0 or > 4096) return null;
            var commit = File.ReadAllText(reference).Trim();
            return IsCommit(commit) || IsPlainSegment(commit) ? commit : null;
        }
        return IsPlainSegment(revision) ? revision : null;
    }

    /// <summary>A name usable as one folder name: a revision without '/' (a commit hash is one too).</summary>
    internal static bool IsPlainSegment(string name) => IsRevision(name) && !name.Contains('/');

    private static string? FindCachedSnapshot(string repositoryDirectory, string revision)
    {
        var name = SnapshotName(repositoryDirectory, revision);
        if (name is null) return null;
        var snapshot = Path.Combine(repositoryDirectory, "snapshots", name);
        return Directory.Exists(snapshot) ? snapshot : null;
    }

    /// <summary>A snapshot is usable once it has a config and every weight file (and, if present, both tokenizer files).</summary>
    internal static bool IsComplete(string snapshot)
    {
        if (!File.Exists(Path.Combine(snapshot, CheckpointLoader.ConfigFileName))) return false;
        if (File.Exists(Path.Combine(snapshot, "vocab.json")) != File.Exists(Path.Combine(snapshot, "merges.txt"))) return false;
        if (File.Exists(Path.Combine(snapshot, CheckpointLoader.SingleFileName))) return true;
        var index = Path.Combine(snapshot, ShardIndex.FileName);
        if (!File.Exists(index)) return false;
        try
        {
            return ShardIndex.Load(index, snapshot).Shards.All(s => File.Exists(Path.Combine(snapshot, s)));
        }
        catch (ModelFormatException)
        {
            return false;
        }
    }
}
