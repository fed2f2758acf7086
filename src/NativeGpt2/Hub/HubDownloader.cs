using System.Net;
using System.Net.Http.Headers;
using NativeGpt2.Loading;

namespace NativeGpt2.Hub;

/// <summary>
/// Downloads one repository revision's GPT-2 files into the hub cache. Every file goes to a staging
/// folder of this download (<c>snapshots/.staging-*</c>, locked while it runs) and is renamed into the
/// snapshot only when complete; the revision's ref is written only when every file is there. A download
/// that stalls for longer than the read timeout fails (or resumes, where the server takes byte ranges).
/// </summary>
internal sealed class HubDownloader(HttpClient client, string endpoint, string repository, string revision, string? token,
    string repositoryDirectory, TimeSpan responseTimeout, TimeSpan readTimeout, IProgress<LoadProgress>? progress)
{
    private const string CommitHeader = "X-Repo-Commit";

    /// <summary>Times a download is resumed after a stall or a cut, when the server takes byte ranges.</summary>
    private const int MaxResumes = 3;

    private string? _commit;

    public async Task<string> DownloadAsync(string spec, CancellationToken cancellationToken)
    {
        var snapshots = Path.Combine(repositoryDirectory, "snapshots");
        Directory.CreateDirectory(snapshots);
        StagingFolder.SweepStale(snapshots);
        using var staging = StagingFolder.Create(snapshots);

        // config.json first: it tells whether the repository exists, and its response names the commit.
        if (!await FetchAsync(CheckpointLoader.ConfigFileName, staging.Path, staging, cancellationToken).ConfigureAwait(false))
            throw new ModelNotFoundException(spec, $"{endpoint}/{repository} has no {CheckpointLoader.ConfigFileName} at revision {revision}");
        var snapshotName = _commit ?? (ModelHub.IsPlainSegment(revision) ? revision
            : throw new ModelDownloadException(Url(CheckpointLoader.ConfigFileName), $"the server named no commit ({CommitHeader}), and revision '{revision}' cannot name a snapshot folder"));
        var snapshot = Path.Combine(snapshots, snapshotName);
        Directory.CreateDirectory(snapshot);
        File.Move(Path.Combine(staging.Path, CheckpointLoader.ConfigFileName), Path.Combine(snapshot, CheckpointLoader.ConfigFileName), overwrite: true);

        foreach (var optional in new[] { CheckpointLoader.GenerationConfigFileName, "vocab.json", "merges.txt", Tokenization.Gpt2Tokenizer.AddedTokensFile })
            await EnsureAsync(optional, snapshot, staging, cancellationToken).ConfigureAwait(false);
        // A repository without vocab.json may have its tokenizer in tokenizer.json alone (PreTrainedTokenizerFast saves only that).
        if (!File.Exists(Path.Combine(snapshot, "vocab.json")))
            await EnsureAsync(Tokenization.Gpt2Tokenizer.TokenizerJsonFile, snapshot, staging, cancellationToken).ConfigureAwait(false);
        if (!await EnsureAsync(CheckpointLoader.SingleFileName, snapshot, staging, cancellationToken).ConfigureAwait(false))
        {
            if (!await EnsureAsync(ShardIndex.FileName, snapshot, staging, cancellationToken).ConfigureAwait(false))
                throw new ModelNotFoundException(spec, $"{repository} has neither {CheckpointLoader.SingleFileName} nor {ShardIndex.FileName} (only safetensors checkpoints are supported)");
            // The index is checked (plain shard names only) before any shard is requested.
            foreach (var shard in ShardIndex.Load(Path.Combine(snapshot, ShardIndex.FileName), snapshot).Shards)
            {
                if (!await EnsureAsync(shard, snapshot, staging, cancellationToken).ConfigureAwait(false))
                    throw new ModelDownloadException(Url(shard), "HTTP 404: the shard named in the index is not on the hub");
            }
        }

        // Only a complete snapshot is recorded as the revision's current commit.
        var reference = Path.Combine(repositoryDirectory, "refs", revision);
        Directory.CreateDirectory(Path.GetDirectoryName(reference)!);
        await File.WriteAllTextAsync(reference, snapshotName, cancellationToken).ConfigureAwait(false);
        return snapshot;
    }

    /// <summary>Downloads a file into the snapshot unless an earlier attempt already completed it; false if the hub does not have it.</summary>
    private async Task<bool> EnsureAsync(string file, string snapshot, StagingFolder staging, CancellationToken cancellationToken) =>
        File.Exists(Path.Combine(snapshot, file)) || await FetchAsync(file, snapshot, staging, cancellationToken).ConfigureAwait(false);

    private string Url(string file) =>
        $"{endpoint}/{string.Join('/', repository.Split('/').Select(Uri.EscapeDataString))}/resolve/{Uri.EscapeDataString(revision)}/{Uri.EscapeDataString(file)}";

    /// <summary>The most bytes a file of this name may have, checked against Content-Length and while receiving.</summary>
    private static long MaxBytes(string file) => file switch
    {
        CheckpointLoader.ConfigFileName or CheckpointLoader.GenerationConfigFileName => ModelFiles.MaxConfigBytes,
        ShardIndex.FileName => ModelFiles.MaxIndexBytes,
        "vocab.json" or "merges.txt" or Tokenization.Gpt2Tokenizer.AddedTokensFile or Tokenization.Gpt2Tokenizer.TokenizerJsonFile => ModelFiles.MaxTokenizerFileBytes,
        _ => ModelFiles.MaxWeightsFileBytes,
    };

    /// <summary>
    /// Downloads one file into the staging folder, then renames it into <paramref name="directory"/>; false on
    /// HTTP 404. A stall or a cut is resumed from the bytes already received when the server takes ranges.
    /// </summary>
    private async Task<bool> FetchAsync(string file, string directory, StagingFolder staging, CancellationToken cancellationToken)
    {
        if (!ShardIndex.IsPlainFileName(file))
            throw new ModelDownloadException(file, "not a plain file name; refusing to request it");
        var url = Url(file);
        var temporary = Path.Combine(staging.Path, file + ".incomplete");
        var stage = $"downloading {file}";
        try
        {
            await using var target = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
            long received = 0;
            long? total = null;
            for (var attempt = 0; ; attempt++)
            {
                var before = received;
                try
                {
                    var outcome = await ReceiveAsync(url, file, target, received, cancellationToken).ConfigureAwait(false);
                    if (outcome is null) return false;
                    (received, total) = outcome.Value;
                    break;
                }
                catch (PartialDownloadException partial) when (partial.Resumable && attempt < MaxResumes && partial.Received > before)
                {
                    // Progress was made and the server takes ranges: ask for the rest.
                    received = partial.Received;
                    total = partial.Total;
                }
                catch (PartialDownloadException partial)
                {
                    throw new ModelDownloadException(url, partial.Message, partial.InnerException);
                }
            }
            if (total is { } expected && received != expected)
                throw new ModelDownloadException(url, $"the connection ended after {received} of {expected} bytes");
            await target.DisposeAsync().ConfigureAwait(false);
            File.Move(temporary, Path.Combine(directory, file), overwrite: true);
            progress?.Report(new LoadProgress(stage, 1));
            return true;
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            throw new ModelDownloadException(url, e.Message, e);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>
    /// One request: from byte <paramref name="offset"/> on (a range request when above 0), appending to
    /// <paramref name="target"/>. Returns the bytes now held and the file's full length when known, or null on 404.
    /// </summary>
    /// <exception cref="PartialDownloadException">The body stalled or was cut after some bytes.</exception>
    private async Task<(long Received, long? Total)?> ReceiveAsync(string url, string file, FileStream target, long offset, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (offset > 0) request.Headers.Range = new RangeHeaderValue(offset, null);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(responseTimeout);
        HttpResponseMessage response;
        try
        {
            response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ModelDownloadException(url, $"no response within {responseTimeout.TotalSeconds:0.###} s (HF_HUB_ETAG_TIMEOUT sets the wait)");
        }
        using (response)
        {
            if (response.StatusCode == HttpStatusCode.NotFound && offset == 0) return null;
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                throw new ModelDownloadException(url, token is null
                    ? $"HTTP {(int)response.StatusCode}: the repository is private or gated; set HF_TOKEN to an access token, or log in with 'hf auth login'"
                    : $"HTTP {(int)response.StatusCode}: the access token sent was refused for this repository (a gated model also needs its terms accepted on the hub)");
            if (!response.IsSuccessStatusCode)
                throw new ModelDownloadException(url, $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            ReadCommit(response, url);

            long? total;
            if (offset > 0 && response.StatusCode == HttpStatusCode.PartialContent)
            {
                var range = response.Content.Headers.ContentRange;
                if (range?.From != offset)
                    throw new ModelDownloadException(url, $"asked to resume at byte {offset}, the server answered with range {range}");
                total = range.Length;
            }
            else
            {
                // A full answer (also to a range request the server ignored): start the file over.
                offset = 0;
                target.SetLength(0);
                target.Position = 0;
                total = response.Content.Headers.ContentLength;
            }
            var limit = MaxBytes(file);
            if (total > limit)
                throw new ModelDownloadException(url, $"the server announces {total:N0} bytes, more than the {limit:N0} allowed for {file}");
            var resumable = response.Headers.AcceptRanges.Contains("bytes") || response.StatusCode == HttpStatusCode.PartialContent;

            var received = offset;
            var stage = $"downloading {file}";
            progress?.Report(new LoadProgress(stage, total is > 0 ? (double)received / total.Value : 0));
            var buffer = new byte[1 << 16];
            try
            {
                await using var source = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
                while (true)
                {
                    // A fresh deadline for every read: slow is fine, silent is not.
                    timeout.CancelAfter(readTimeout);
                    var read = await source.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
                    if (read == 0) break;
                    received += read;
                    if (received > limit)
                        throw new ModelDownloadException(url, $"more than the {limit:N0} bytes allowed for {file}");
                    await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                    if (total is > 0) progress?.Report(new LoadProgress(stage, (double)received / total.Value));
                }
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                await target.FlushAsync(cancellationToken).ConfigureAwait(false);
                throw new PartialDownloadException(
                    $"no data for {readTimeout.TotalSeconds:0.###} s after {received} of {total?.ToString() ?? "?"} bytes: the server stalled (HF_HUB_DOWNLOAD_TIMEOUT sets the wait)",
                    received, total, resumable, e);
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                await target.FlushAsync(cancellationToken).ConfigureAwait(false);
                throw new PartialDownloadException($"the connection ended after {received} of {total?.ToString() ?? "?"} bytes ({e.Message})", received, total, resumable, e);
            }
            return (received, total);
        }
    }

    /// <summary>Takes the commit from the first response that names one; it must be a full commit hash.</summary>
    private void ReadCommit(HttpResponseMessage response, string url)
    {
        if (_commit is not null || !response.Headers.TryGetValues(CommitHeader, out var values)) return;
        var commit = values.FirstOrDefault()?.Trim() ?? "";
        if (!ModelHub.IsCommit(commit))
            throw new ModelDownloadException(url, $"the server's {CommitHeader} header '{commit}' is not a 40-digit commit hash");
        _commit = commit;
    }

    /// <summary>A body that stopped early: how far it got, and whether the server takes ranges to resume.</summary>
    private sealed class PartialDownloadException(string message, long received, long? total, bool resumable, Exception inner)
        : Exception(message, inner)
    {
        public long Received { get; } = received;
        public long? Total { get; } = total;
        public bool Resumable { get; } = resumable;
    }
}

/// <summary>
/// The folder one download stages its files in, <c>snapshots/.staging-{id}</c>, holding an exclusive lock on
/// its <c>.lock</c> file for as long as the download runs. A later download deletes any staging folder
/// whose lock nobody holds: what a killed process left behind, never another process's live download.
/// </summary>
internal sealed class StagingFolder : IDisposable
{
    public const string Prefix = ".staging-";
    private const string LockName = ".lock";

    /// <summary>A staging folder with no lock file yet is only stale when older than this (its creator may be about to lock it).</summary>
    private static readonly TimeSpan UnlockedGrace = TimeSpan.FromMinutes(10);

    private readonly FileStream _lock;

    private StagingFolder(string path, FileStream lockFile)
    {
        Path = path;
        _lock = lockFile;
    }

    public string Path { get; }

    public static StagingFolder Create(string snapshots)
    {
        var path = System.IO.Path.Combine(snapshots, Prefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        // FileShare.None is an exclusive lock, across processes too (flock on Unix).
        var lockFile = new FileStream(System.IO.Path.Combine(path, LockName), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
        return new StagingFolder(path, lockFile);
    }

    /// <summary>Deletes staging folders that no running download holds, and temporary files older versions left in snapshots.</summary>
    public static void SweepStale(string snapshots)
    {
        foreach (var folder in Directory.EnumerateDirectories(snapshots, Prefix + "*"))
        {
            if (IsLive(folder)) continue;
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another sweeper got there first, or the folder is not ours to delete: leave it.
            }
        }
        foreach (var snapshot in Directory.EnumerateDirectories(snapshots))
        {
            if (System.IO.Path.GetFileName(snapshot).StartsWith(Prefix, StringComparison.Ordinal)) continue;
            foreach (var partial in Directory.EnumerateFiles(snapshot, "*.incomplete"))
            {
                if (DateTime.UtcNow - File.GetLastWriteTimeUtc(partial) > UnlockedGrace)
                    File.Delete(partial);
            }
        }
    }

    private static bool IsLive(string folder)
    {
        var lockPath = System.IO.Path.Combine(folder, LockName);
        try
        {
            using (new FileStream(lockPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) return false;
        }
        catch (FileNotFoundException)
        {
            return DateTime.UtcNow - Directory.GetCreationTimeUtc(folder) < UnlockedGrace;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }

    /// <summary>Releases the lock and deletes the folder with whatever is left in it.</summary>
    public void Dispose()
    {
        _lock.Dispose();
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
