using System.Net;
using System.Net.Http.Headers;
using NativeGpt2.Loading;

namespace NativeGpt2;

/// <summary>Downloads one repository revision's GPT-2 files into the hub cache, one file at a time, atomically.</summary>
internal sealed class HubDownloader(HttpClient client, string endpoint, string repository, string revision, string? token,
    string repositoryDirectory, IProgress<LoadProgress>? progress)
{
    private const string CommitHeader = "X-Repo-Commit";
    private string? _commit;

    public async Task<string> DownloadAsync(string spec, CancellationToken cancellationToken)
    {
        // config.json first: it tells whether the repository exists, and its response names the commit.
        var staging = Path.Combine(repositoryDirectory, "snapshots", ".staging-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        try
        {
            if (!await FetchAsync(CheckpointLoader.ConfigFileName, staging, cancellationToken).ConfigureAwait(false))
                throw new ModelNotFoundException(spec, $"{endpoint}/{repository} has no {CheckpointLoader.ConfigFileName} at revision {revision}");
            var snapshot = Path.Combine(repositoryDirectory, "snapshots", _commit ?? revision);
            Directory.CreateDirectory(snapshot);
            MoveInto(staging, snapshot, CheckpointLoader.ConfigFileName);

            foreach (var optional in new[] { "generation_config.json", "vocab.json", "merges.txt" })
                await EnsureAsync(optional, snapshot, cancellationToken).ConfigureAwait(false);
            if (!await EnsureAsync(CheckpointLoader.SingleFileName, snapshot, cancellationToken).ConfigureAwait(false))
            {
                if (!await EnsureAsync(ShardIndex.FileName, snapshot, cancellationToken).ConfigureAwait(false))
                    throw new ModelNotFoundException(spec, $"{repository} has neither {CheckpointLoader.SingleFileName} nor {ShardIndex.FileName} (only safetensors checkpoints are supported)");
                foreach (var shard in ShardIndex.Load(Path.Combine(snapshot, ShardIndex.FileName)).Shards)
                {
                    if (!await EnsureAsync(shard, snapshot, cancellationToken).ConfigureAwait(false))
                        throw new ModelDownloadException($"{endpoint}/{repository}/resolve/{revision}/{shard}", "HTTP 404: the shard named in the index is not on the hub");
                }
            }

            // Only a complete snapshot is recorded as the revision's current commit.
            var refs = Path.Combine(repositoryDirectory, "refs");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(refs, revision))!);
            await File.WriteAllTextAsync(Path.Combine(refs, revision), _commit ?? revision, cancellationToken).ConfigureAwait(false);
            return snapshot;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>Downloads a file into the snapshot unless an earlier attempt already completed it; false if the hub does not have it.</summary>
    private async Task<bool> EnsureAsync(string file, string snapshot, CancellationToken cancellationToken) =>
        File.Exists(Path.Combine(snapshot, file)) || await FetchAsync(file, snapshot, cancellationToken).ConfigureAwait(false);

    /// <summary>Downloads one file to a temporary name in <paramref name="directory"/>, then renames it into place; false on HTTP 404.</summary>
    private async Task<bool> FetchAsync(string file, string directory, CancellationToken cancellationToken)
    {
        var url = $"{endpoint}/{repository}/resolve/{Uri.EscapeDataString(revision)}/{file}";
        var destination = Path.Combine(directory, file);
        var temporary = destination + "." + Guid.NewGuid().ToString("N") + ".incomplete";
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.NotFound) return false;
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                throw new ModelDownloadException(url, $"HTTP {(int)response.StatusCode}: the repository is private or gated; set HF_TOKEN to an access token");
            if (!response.IsSuccessStatusCode)
                throw new ModelDownloadException(url, $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            if (_commit is null && response.Headers.TryGetValues(CommitHeader, out var commits) && commits.FirstOrDefault() is { } commit
                && commit.Length > 0 && commit.IndexOfAny(['/', '\\']) < 0 && !commit.Contains(".."))
                _commit = commit;

            var length = response.Content.Headers.ContentLength;
            long received = 0;
            var stage = $"downloading {file}";
            progress?.Report(new LoadProgress(stage, 0));
            await using (var source = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false))
            await using (var target = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                int read;
                while ((read = await source.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                    received += read;
                    if (length is > 0) progress?.Report(new LoadProgress(stage, (double)received / length.Value));
                }
            }
            if (length is { } expected && received != expected)
                throw new ModelDownloadException(url, $"the connection ended after {received} of {expected} bytes");
            File.Move(temporary, destination, overwrite: true);
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

    private static void MoveInto(string from, string to, string file) =>
        File.Move(Path.Combine(from, file), Path.Combine(to, file), overwrite: true);
}
