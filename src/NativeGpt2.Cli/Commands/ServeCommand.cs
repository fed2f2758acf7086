using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NativeGpt2.Server;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 serve [--model SPEC] [--urls URL] [--max-concurrent N] [--max-queue N] [--max-batch-size N] [--model-id NAME] [--cors-origin ORIGIN]... [--api-key KEY]</c>:
/// the OpenAI-compatible API (<see cref="OpenAIEndpoints"/>) until Ctrl+C or SIGTERM.
/// </summary>
internal static class ServeCommand
{
    public const string DefaultUrls = "http://127.0.0.1:8080";

    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model(required: false);
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var urls = new Option<string>("--urls") { Description = $"Addresses to listen on, ';'-separated (default {DefaultUrls}; port 0 picks a free one).", DefaultValueFactory = _ => DefaultUrls };
        var defaults = new NativeGpt2ServerOptions();
        var modelDefaults = new AI.NativeGpt2ServiceOptions();
        var concurrent = new Option<int>("--max-concurrent") { Description = $"Requests that run the model at once (default {defaults.MaxConcurrentRequests}).", DefaultValueFactory = _ => defaults.MaxConcurrentRequests };
        var queue = new Option<int>("--max-queue") { Description = $"Requests that may wait; beyond that the answer is 503 (default {defaults.MaxQueuedRequests}).", DefaultValueFactory = _ => defaults.MaxQueuedRequests };
        var batch = new Option<int>("--max-batch-size")
        {
            Description = $"Sequences of all requests decoded side by side in one shared batch (default {modelDefaults.MaxBatchSize}, at most {Gpt2CausalLM.MaxSequences}; 1: one after another).",
            DefaultValueFactory = _ => modelDefaults.MaxBatchSize,
        };
        var chunk = new Option<int>("--prefill-chunk-tokens")
        {
            Description = $"Prompt tokens run a step while other sequences decode: a longer prompt runs in parts, and the others go on between them (default {modelDefaults.PrefillChunkTokens}).",
            DefaultValueFactory = _ => modelDefaults.PrefillChunkTokens,
        };
        var modelId = new Option<string?>("--model-id") { Description = "The model name in responses and /v1/models (default: the model spec)." };
        var corsOrigins = new Option<string[]>("--cors-origin")
        {
            Description = "Let web pages from this origin call the API from a browser (e.g. http://localhost:3000; * for any); may be repeated. Default: none.",
            AllowMultipleArgumentsPerToken = false,
        };
        var apiKey = new Option<string?>("--api-key")
        {
            Description = $"Answer only requests that send 'Authorization: Bearer KEY' (OpenAI's clients: api_key); /health stays open. Default: ${ApiKeyVariable}, else none.",
        };
        var command = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models, /tokenize, /detokenize, /health.")
        {
            model, backend, weights, urls, concurrent, queue, batch, chunk, modelId, corsOrigins, apiKey,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var spec = parse.GetValue(model) ?? CommonOptions.BundledModel;
            var key = parse.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable(ApiKeyVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null);
            var server = new NativeGpt2ServerOptions { MaxConcurrentRequests = parse.GetValue(concurrent), MaxQueuedRequests = parse.GetValue(queue), ApiKey = key };
            CommonOptions.ValidateAsUsage(server.Validate);
            var batchSize = parse.GetValue(batch);
            var chunkTokens = parse.GetValue(chunk);
            CommonOptions.ValidateAsUsage(new AI.NativeGpt2ServiceOptions { MaxBatchSize = batchSize, PrefillChunkTokens = chunkTokens }.Validate);
            var addresses = CheckedUrls(parse.GetValue(urls)!);
            var origins = CheckedOrigins(parse.GetValue(corsOrigins) ?? []);
            var load = context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights));

            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls(addresses);
            builder.Logging.ClearProviders();
            builder.Logging.SetMinimumLevel(context.Verbose ? LogLevel.Debug : LogLevel.Warning);
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            // A failed start (a port in use) is reported once, as an error: line, not also as the host's stack trace.
            if (!context.Verbose) builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
            // Our own signal handling (Program.cs) stops the server; the host must not also claim Ctrl+C.
            builder.Services.AddSingleton<IHostLifetime, NoSignalLifetime>();
            builder.Services.AddNativeGpt2Server(spec,
                o => { o.Load = load; o.ModelId = parse.GetValue(modelId) ?? (spec == CommonOptions.BundledModel ? "shakespeare-char" : spec); o.MaxBatchSize = batchSize; o.PrefillChunkTokens = chunkTokens; },
                o => { o.MaxConcurrentRequests = server.MaxConcurrentRequests; o.MaxQueuedRequests = server.MaxQueuedRequests; o.ApiKey = server.ApiKey; });
            if (origins.Length > 0)
            {
                // Browsers ask first (a preflight OPTIONS without the API key); the answer names the origin, or any with *.
                builder.Services.AddCors(o => o.AddDefaultPolicy(policy =>
                {
                    if (origins.Contains("*")) policy.AllowAnyOrigin();
                    else policy.WithOrigins(origins);
                    policy.AllowAnyHeader().AllowAnyMethod();
                }));
            }
            await using var app = builder.Build();
            if (origins.Length > 0) app.UseCors();
            app.MapNativeGpt2OpenAI();

            // Load before listening: a bad model ends the command with its error, and /health answers only when ready.
            var lm = app.Services.GetRequiredService<Gpt2CausalLM>();
            await app.StartAsync(cancellation);
            context.Error.WriteLine($"serving {spec} ({lm.Backend.Description}) on {string.Join(", ", app.Urls)}{(key is null ? "" : ", API key required")}; Ctrl+C stops");
            if (key is null && addresses.Any(IsReachableFromOtherMachines))
                context.Logger.LogWarning("listening beyond this machine ({Urls}) without an API key: anyone who reaches it can use the model; give --api-key or ${Variable}",
                    string.Join(", ", addresses), ApiKeyVariable);
            try
            {
                await Task.Delay(Timeout.Infinite, cancellation);
            }
            catch (OperationCanceledException)
            {
                // Ctrl+C or SIGTERM: a clean stop, not a failure.
            }
            await app.StopAsync(CancellationToken.None);
            context.Error.WriteLine("stopped");
            return CliApp.Success;
        });
        return command;
    }

    /// <summary>The <c>--cors-origin</c> values, each <c>*</c> or an origin as a browser sends it: scheme, host and port, no path.</summary>
    internal static string[] CheckedOrigins(string[] origins)
    {
        foreach (var origin in origins)
        {
            if (origin == "*") continue;
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")
                || uri.GetLeftPart(UriPartial.Authority) != origin.TrimEnd('/'))
                throw new UsageException($"--cors-origin: '{origin}' is not an origin such as http://localhost:3000 (scheme, host and port, no path), or *");
        }
        return origins.Select(o => o == "*" ? o : o.TrimEnd('/')).ToArray();
    }

    /// <summary>The environment variable <c>--api-key</c> defaults to, so that the key need not appear in the process list.</summary>
    public const string ApiKeyVariable = "NATIVEGPT2_API_KEY";

    /// <summary>Whether <paramref name="address"/> listens on more than the loopback interface (<c>0.0.0.0</c>, <c>*</c>, a LAN address).</summary>
    internal static bool IsReachableFromOtherMachines(string address)
    {
        var binding = Microsoft.AspNetCore.Http.BindingAddress.Parse(address);
        if (binding.IsUnixPipe || binding.Host is "localhost") return false;
        return !(System.Net.IPAddress.TryParse(binding.Host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));
    }

    /// <summary>The <c>--urls</c> list, each address checked as Kestrel will read it: http or https, a host, a port from 0 to 65,535.</summary>
    internal static string[] CheckedUrls(string urls)
    {
        var addresses = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (addresses.Length == 0) throw new UsageException("--urls is empty: give an address such as " + DefaultUrls);
        foreach (var address in addresses)
        {
            Microsoft.AspNetCore.Http.BindingAddress binding;
            try
            {
                binding = Microsoft.AspNetCore.Http.BindingAddress.Parse(address);
            }
            catch (FormatException)
            {
                throw new UsageException($"--urls: '{address}' is not an address such as {DefaultUrls}");
            }
            if (binding.Scheme is not ("http" or "https"))
                throw new UsageException($"--urls: '{address}' must use http or https");
            if (!binding.IsUnixPipe && binding.Port is < 0 or > 65535)
                throw new UsageException($"--urls: the port of '{address}' must be from 0 to 65535");
        }
        return addresses;
    }

    /// <summary>A host lifetime that leaves signals to the command line.</summary>
    private sealed class NoSignalLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
