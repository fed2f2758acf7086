using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// A minimal Hugging Face hub on 127.0.0.1: serves the files of one local model directory under
/// <c>/{repository}/resolve/{revision}/{file}</c>, with the commit header, and can cut a file off midway.
/// </summary>
public sealed class LocalHubServer : IDisposable
{
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";

    private readonly HttpListener _listener = new();
    private readonly string _repository;
    private readonly string _directory;
    private readonly Task _loop;

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

    /// <summary>Paths requested so far.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception) { return; }
            _ = Task.Run(() => Respond(context));
        }
    }

    private async Task Respond(HttpListenerContext context)
    {
        var path = context.Request.Url!.AbsolutePath;
        Requests.Enqueue(path);
        var prefix = $"/{_repository}/resolve/main/";
        var response = context.Response;
        var file = path.StartsWith(prefix) ? Path.Combine(_directory, path[prefix.Length..]) : null;
        if (file is null || !File.Exists(file))
        {
            response.StatusCode = 404;
            response.Close();
            return;
        }
        var bytes = await File.ReadAllBytesAsync(file);
        response.StatusCode = 200;
        response.Headers["X-Repo-Commit"] = Commit;
        response.ContentLength64 = bytes.Length;
        if (Path.GetFileName(file) == CutFile)
        {
            await response.OutputStream.WriteAsync(bytes.AsMemory(0, bytes.Length / 2));
            await response.OutputStream.FlushAsync();
            response.Abort();
            return;
        }
        await response.OutputStream.WriteAsync(bytes);
        response.Close();
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
