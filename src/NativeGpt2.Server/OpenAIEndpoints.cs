using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NativeGpt2.AI;

namespace NativeGpt2.Server;

/// <summary>
/// The OpenAI-compatible HTTP API over one shared model, mapped into an app's own pipeline:
/// <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c>, <c>POST /v1/embeddings</c>,
/// <c>GET /v1/models</c>, <c>POST /tokenize</c>, <c>POST /detokenize</c> and <c>GET /health</c>.
/// </summary>
/// <remarks>
/// Register the model first with <see cref="ServerServiceCollectionExtensions.AddNativeGpt2Server"/>. Requests
/// that run the model pass a bounded queue (<see cref="NativeGpt2ServerOptions"/>; full: 503); a client that
/// disconnects cancels its generation before the next token; a malformed or oversized body, a field of the
/// wrong type or out of range, gets a 400 with OpenAI's error object naming the field.
/// </remarks>
public static class OpenAIEndpoints
{
    /// <summary>Maps the endpoints under <paramref name="prefix"/> (default: the root) and returns their group.</summary>
    /// <exception cref="InvalidOperationException">The services were not registered.</exception>
    public static RouteGroupBuilder MapNativeGpt2OpenAI(this IEndpointRouteBuilder endpoints, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<NativeGpt2ServerOptions>() is null || endpoints.ServiceProvider.GetService<NativeGpt2ServiceOptions>() is null)
            throw new InvalidOperationException("call services.AddNativeGpt2Server(model) before MapNativeGpt2OpenAI");
        var group = endpoints.MapGroup(prefix);
        group.MapPost("/v1/completions", (HttpContext http) => RunAsync(http, Completions.CompleteAsync));
        group.MapPost("/v1/chat/completions", (HttpContext http) => RunAsync(http, Completions.ChatAsync));
        group.MapPost("/v1/embeddings", (HttpContext http) => RunAsync(http, Embeddings.EmbedAsync));
        group.MapPost("/tokenize", (HttpContext http) => RunAsync(http, Tokens.TokenizeAsync));
        group.MapPost("/detokenize", (HttpContext http) => RunAsync(http, Tokens.DetokenizeAsync));
        group.MapGet("/v1/models", (HttpContext http) => RunAsync(http, Tokens.ModelsAsync, readBody: false));
        // /health answers without the API key: a load balancer's probe does not hold it.
        group.MapGet("/health", (HttpContext http) => RunAsync(http, Tokens.HealthAsync, readBody: false, needsKey: false));
        return group;
    }

    private static async Task RunAsync(HttpContext http, Func<ServerRequest, Task> handler, bool readBody = true, bool needsKey = true)
    {
        var services = http.RequestServices;
        var options = services.GetRequiredService<NativeGpt2ServerOptions>();
        var logger = services.GetService<ILoggerFactory>()?.CreateLogger("NativeGpt2.Server");
        var aborted = http.RequestAborted;
        JsonRequest? body = null;
        try
        {
            // The key is checked before the body is read: a client without it costs no more than its headers.
            if (needsKey && options.ApiKey is { } key) CheckApiKey(http, key);
            if (readBody) body = await JsonRequest.ReadAsync(http.Request, options.MaxRequestBodyBytes, aborted).ConfigureAwait(false);
            using var request = new ServerRequest(http, body, services.GetRequiredService<Gpt2CausalLM>(), services.GetRequiredService<NativeGpt2ServiceOptions>(),
                options, services.GetRequiredService<RequestGate>());
            await handler(request).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client went away: its generation has stopped, and there is no one to answer.
            logger?.LogInformation("{Path}: the client disconnected; its request was cancelled", http.Request.Path);
        }
        catch (OpenAIError e)
        {
            await WriteErrorAsync(http, e).ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            // The library names its own parameters (MaxNewTokens); the client knows the request's (max_tokens).
            var param = e.ParamName is { } name ? RequestNames.GetValueOrDefault(name, name) : null;
            var message = RequestWords(OneLine(e).Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal));
            var prefixed = param is null || message.StartsWith(param + " ", StringComparison.Ordinal) ? message : $"{param}: {message}";
            await WriteErrorAsync(http, OpenAIError.BadRequest(prefixed, param)).ConfigureAwait(false);
        }
        catch (NativeGpt2Exception e)
        {
            logger?.LogError(e, "{Path} failed", http.Request.Path);
            await WriteErrorAsync(http, new OpenAIError(500, OneLine(e), type: "server_error")).ConfigureAwait(false);
        }
        finally
        {
            body?.Dispose();
        }
    }

    /// <summary>Throws a 401 unless the request carries <c>Authorization: Bearer <paramref name="key"/></c>; compared in constant time.</summary>
    private static void CheckApiKey(HttpContext http, string key)
    {
        var header = http.Request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
            throw Unauthorized(http, header.Length == 0
                ? "no API key: this server needs one, sent as 'Authorization: Bearer KEY' (the api_key of OpenAI's clients)"
                : "the Authorization header is not 'Bearer KEY'");
        var sent = Encoding.UTF8.GetBytes(header[Scheme.Length..].Trim());
        if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(sent, Encoding.UTF8.GetBytes(key)))
            throw Unauthorized(http, "incorrect API key");
    }

    private static OpenAIError Unauthorized(HttpContext http, string message)
    {
        http.Response.Headers.WWWAuthenticate = "Bearer";
        return new OpenAIError(StatusCodes.Status401Unauthorized, message, code: "invalid_api_key");
    }

    /// <summary>Request fields for the library's parameter names.</summary>
    private static readonly Dictionary<string, string> RequestNames = new()
    {
        ["MaxNewTokens"] = "max_tokens", ["Temperature"] = "temperature", ["TopP"] = "top_p", ["TopK"] = "top_k", ["MinP"] = "min_p", ["TypicalP"] = "typical_p",
        ["RepetitionPenalty"] = "repetition_penalty", ["StopStrings"] = "stop", ["LogProbs"] = "logprobs",
        ["PresencePenalty"] = "presence_penalty", ["FrequencyPenalty"] = "frequency_penalty", ["LogitBias"] = "logit_bias", ["MinNewTokens"] = "min_tokens", ["NoRepeatNgramSize"] = "no_repeat_ngram_size",
        ["PenaltyAlpha"] = "penalty_alpha",
        ["prompts"] = "prompt", ["prompt"] = "prompt", ["texts"] = "input", ["sequences"] = "input",
    };

    /// <summary>
    /// A library message in the request's words: the options it names become the request's fields (<c>MaxNewTokens</c>
    /// becomes <c>max_tokens</c>), and its advice to enable <c>SlidingWindow</c>, which requests cannot, is left out, as is the value the client sent (".. Actual value was 5000.").
    /// </summary>
    private static string RequestWords(string message)
    {
        message = message.Replace(", or enable SlidingWindow", "", StringComparison.Ordinal);
        // The client sent the value; the exception's "Actual value was …" line repeats it.
        message = System.Text.RegularExpressions.Regex.Replace(message, @";? ?Actual value was [^;]*$", "");
        return System.Text.RegularExpressions.Regex.Replace(message, @"\b[A-Z][A-Za-z]+\b", m => RequestNames.GetValueOrDefault(m.Value, m.Value));
    }

    /// <summary>JSON as APIs write it: characters such as ' and + as themselves (the body is never HTML).</summary>
    internal static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string OneLine(Exception e) =>
        string.Join("; ", e.Message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));

    /// <summary>The error as a JSON response, or, once a stream has started, as its last event.</summary>
    private static async Task WriteErrorAsync(HttpContext http, OpenAIError error)
    {
        if (http.Response.HasStarted)
        {
            await ServerSentEvents.WriteAsync(http.Response, error.ToJson(), CancellationToken.None).ConfigureAwait(false);
            return;
        }
        if (error.Status == StatusCodes.Status503ServiceUnavailable) http.Response.Headers.RetryAfter = "1";
        await WriteJsonAsync(http.Response, error.ToJson(), error.Status).ConfigureAwait(false);
    }

    /// <summary>Writes <paramref name="json"/> as the whole response.</summary>
    internal static async Task WriteJsonAsync(HttpResponse response, JsonNode json, int status = StatusCodes.Status200OK)
    {
        response.StatusCode = status;
        response.ContentType = "application/json";
        await response.WriteAsync(json.ToJsonString(Json), Encoding.UTF8, CancellationToken.None).ConfigureAwait(false);
    }
}

/// <summary>One request's view of the server: its body, the model, the options and the queue.</summary>
internal sealed class ServerRequest(HttpContext http, JsonRequest? body, Gpt2CausalLM model, NativeGpt2ServiceOptions modelOptions,
    NativeGpt2ServerOptions serverOptions, RequestGate gate) : IDisposable
{
    private IDisposable? _lease;

    public HttpContext Http { get; } = http;
    public JsonRequest Body { get; } = body!;
    public Gpt2CausalLM Model { get; } = model;
    public NativeGpt2ServiceOptions ModelOptions { get; } = modelOptions;
    public NativeGpt2ServerOptions ServerOptions { get; } = serverOptions;
    public string ModelId => ModelOptions.ModelId ?? Model.Source;
    public CancellationToken Aborted => Http.RequestAborted;

    /// <summary>The batch every request's sequences decode in.</summary>
    public Generation.GenerationBatcher Batcher => Http.RequestServices.GetRequiredService<Generation.GenerationBatcher>();

    public Tokenization.Gpt2Tokenizer Tokenizer =>
        Model.Tokenizer ?? throw new OpenAIError(400, $"model '{ModelId}' has no tokenizer ({Tokenization.Gpt2Tokenizer.NoTokenizerFiles}): only token-id prompts work");

    /// <summary>Waits for a slot to run the model (after the request was checked); a full queue is a 503.</summary>
    public async Task EnterAsync()
    {
        _lease = await gate.EnterAsync(Aborted).ConfigureAwait(false)
            ?? throw new OpenAIError(StatusCodes.Status503ServiceUnavailable, "the server is at capacity: every slot and queue place is taken; retry later", type: OpenAIError.ServerBusy);
    }

    public void Dispose() => _lease?.Dispose();
}

/// <summary>Server-sent events as OpenAI streams them: <c>data: {json}</c> events, the last one <c>data: [DONE]</c>.</summary>
internal static class ServerSentEvents
{
    public static void Start(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
    }

    public static async Task WriteAsync(HttpResponse response, JsonNode json, CancellationToken cancellationToken)
    {
        await response.WriteAsync("data: " + json.ToJsonString(OpenAIEndpoints.Json) + "\n\n", Encoding.UTF8, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public static async Task DoneAsync(HttpResponse response, CancellationToken cancellationToken)
    {
        await response.WriteAsync("data: [DONE]\n\n", Encoding.UTF8, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
