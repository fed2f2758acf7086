using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using NativeGpt2.Server;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Server;

/// <summary>The OpenAI-compatible server on 127.0.0.1 (a free port) over the bundled shakespeare-char model.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string ModelId = "shakespeare-char";

    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>
    /// Starts a server over a bundled model (shakespeare-char unless <paramref name="model"/> names another); <paramref name="server"/>
    /// sets its limits, <paramref name="batchSize"/> the shared batch's rows, <paramref name="prefillChunkTokens"/> its prompt parts.
    /// </summary>
    public static async Task<WebApplication> StartAsync(Action<NativeGpt2ServerOptions>? server = null, string model = ModelId, int? batchSize = null,
        int? prefillChunkTokens = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddNativeGpt2Server(Paths.Model(model), o =>
        {
            o.ModelId = model;
            if (batchSize is { } rows) o.MaxBatchSize = rows;
            if (prefillChunkTokens is { } tokens) o.PrefillChunkTokens = tokens;
        }, server);
        var app = builder.Build();
        app.MapNativeGpt2OpenAI();
        await app.StartAsync();
        return app;
    }

    public async Task InitializeAsync()
    {
        _app = await StartAsync();
        BaseAddress = new Uri(_app.Urls.Single());
    }

    public async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }
}
