using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// A minimal Hugging Face hub on 127.0.0.1: serves the files of one local model directory under
/// <c>/{repository}/resolve/{revision}/{file}</c>, with the commit header, and misbehaves on request:
/// cuts a file off, stalls mid-body or before answering, drips, redirects, or names a bad commit.
/// </summary>
public sealed class LocalHubServer : IDisposable
{
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";

    /// <summary>
    /// The response and read timeouts of a test that expects its download to succeed. The server answers in milliseconds,
    /// but while the simulated-GPU tests run a thousand OS threads on two cores, an answer has waited more than the hub's
    /// default 10 s. A test of the timeouts themselves sets its own.
    /// </summary>
    public static readonly TimeSpan PatientTimeout = TimeSpan.FromMinutes(2);

    private readonly HttpListener _listener = new();
    private readonly string _repository;
    private readonly string _directory;
    private readonly Task _loop;
    private readonly CancellationTokenSource _stopping = new();
    private int _stalls;

    public LocalHubServer(string repository, string directory)
    {
        _repository = repository;
        _directory = directory;
        var port = FreePort();
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    /// <summary>Base address to pass as the hub endpoint.</summary>
    public string Endpoint { get; }

    /// <summary>A file name whose response stops after half its bytes (the connection is then dropped).</summary>
    public string? CutFile { get; set; }

    /// <summary>A file name whose response sends half its bytes, then nothing, with the connection left open.</summary>
    public string? StallFile { get; set; }

    /// <summary>How many responses of <see cref="StallFile"/> stall (then it is served normally).</summary>
    public int StallCount { get; set; } = int.MaxValue;

    /// <summary>Accept requests but never answer them.</summary>
    public bool StallBeforeHeaders { get; set; }

    /// <summary>Advertise <c>Accept-Ranges: bytes</c> and answer range requests with 206.</summary>
    public bool SupportsRanges { get; set; }

    /// <summary>Send bodies in 1 KB pieces with this pause between them.</summary>
    public TimeSpan? Drip { get; set; }

    /// <summary>Answer every <c>/resolve/</c> request with a 302 to <c>/cdn/…</c>, which serves the file.</summary>
    public bool Redirect { get; set; }

    /// <summary>A private repository: every request without <c>Authorization: Bearer</c> this token is answered 401 (none) or 403 (another).</summary>
    public string? RequiredToken { get; set; }

    /// <summary>The one revision (branch, tag or commit) served; any other is answered 404, as the hub answers an unknown one.</summary>
    public string Revision { get; set; } = "main";

    /// <summary>The <c>X-Repo-Commit</c> header sent; null sends none.</summary>
    public string? CommitHeader { get; set; } = Commit;

    /// <summary>Files served instead of (or besides) the directory's.</summary>
    public ConcurrentDictionary<string, byte[]> Overrides { get; } = new();

    /// <summary>Paths requested so far.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>Every request's path with its Authorization and Range headers.</summary>
    public ConcurrentQueue<(string Path, string? Authorization, string? Range)> Log { get; } = new();

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception) { return; }
            _ = Task.Run(async () =>
            {
                try { await Respond(context); }
                catch (Exception) { try { context.Response.Abort(); } catch (Exception) { } }
            });
        }
    }

    private async Task Respond(HttpListenerContext context)
    {
        var path = context.Request.Url!.AbsolutePath;
        Requests.Enqueue(context.Request.RawUrl ?? path);
        Log.Enqueue((path, context.Request.Headers["Authorization"], context.Request.Headers["Range"]));
        var response = context.Response;
        if (StallBeforeHeaders)
        {
            await Wait();
            response.Abort();
            return;
        }
        if (RequiredToken is not null && context.Request.Headers["Authorization"] != $"Bearer {RequiredToken}")
        {
            response.StatusCode = context.Request.Headers["Authorization"] is null ? 401 : 403;
            response.Close();
            return;
        }
        var resolve = $"/{_repository}/resolve/{Revision}/";
        var cdn = $"/cdn/{_repository}/";
        string? name = path.StartsWith(resolve) ? path[resolve.Length..] : path.StartsWith(cdn) ? path[cdn.Length..] : null;
        if (name is not null && Redirect && path.StartsWith(resolve))
        {
            response.StatusCode = 302;
            response.RedirectLocation = cdn + name;
            if (CommitHeader is not null) response.Headers["X-Repo-Commit"] = CommitHeader;
            response.Close();
            return;
        }
        var bytes = name is null ? null : Overrides.TryGetValue(name, out var o) ? o : File.Exists(Path.Combine(_directory, name)) ? await File.ReadAllBytesAsync(Path.Combine(_directory, name)) : null;
        if (bytes is null)
        {
            response.StatusCode = 404;
            response.Close();
            return;
        }
        if (CommitHeader is not null) response.Headers["X-Repo-Commit"] = CommitHeader;
        long from = 0;
        if (SupportsRanges)
        {
            response.Headers["Accept-Ranges"] = "bytes";
            if (context.Request.Headers["Range"] is { } range && range.StartsWith("bytes=") && range.EndsWith('-'))
            {
                from = long.Parse(range["bytes=".Length..^1]);
                response.StatusCode = 206;
                response.Headers["Content-Range"] = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
            }
        }
        if (response.StatusCode != 206) response.StatusCode = 200;
        var body = bytes.AsMemory((int)from);
        response.ContentLength64 = body.Length;
        if (name == CutFile)
        {
            await response.OutputStream.WriteAsync(body[..(body.Length / 2)]);
            await response.OutputStream.FlushAsync();
            response.Abort();
            return;
        }
        if (name == StallFile && Interlocked.Increment(ref _stalls) <= StallCount)
        {
            await response.OutputStream.WriteAsync(body[..(body.Length / 2)]);
            await response.OutputStream.FlushAsync();
            await Wait();
            response.Abort();
            return;
        }
        if (Drip is { } pause)
        {
            for (var at = 0; at < body.Length; at += 1024)
            {
                await response.OutputStream.WriteAsync(body[at..Math.Min(body.Length, at + 1024)]);
                await response.OutputStream.FlushAsync();
                await Task.Delay(pause);
            }
            response.Close();
            return;
        }
        await response.OutputStream.WriteAsync(body);
        response.Close();
    }

    /// <summary>Holds a response open until the server is disposed.</summary>
    private async Task Wait()
    {
        try { await Task.Delay(Timeout.Infinite, _stopping.Token); }
        catch (OperationCanceledException) { }
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _listener.Stop();
        _listener.Close();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
