using System.Text.Json;
using System.Text.Json.Nodes;

namespace NativeGpt2.Server;

/// <summary>The endpoints that do not generate: <c>/tokenize</c>, <c>/detokenize</c>, <c>/v1/models</c>, <c>/health</c>.</summary>
internal static class Tokens
{
    private static readonly long Started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary><c>{"content": TEXT, "with_pieces": bool?}</c> → <c>{"tokens": [ids]}</c>, or <c>[{"id", "piece"}]</c> with pieces.</summary>
    public static Task TokenizeAsync(ServerRequest request)
    {
        var content = request.Body.String("content") ?? throw OpenAIError.BadRequest("'content' is required: the text to tokenize", "content");
        var tokenizer = request.Tokenizer;
        var ids = tokenizer.Encode(content);
        var tokens = request.Body.Bool("with_pieces") == true
            ? new JsonArray([.. ids.Select(id => (JsonNode)new JsonObject { ["id"] = id, ["piece"] = Completions.TokenText(tokenizer, id) })])
            : new JsonArray([.. ids.Select(id => (JsonNode)id)]);
        return OpenAIEndpoints.WriteJsonAsync(request.Http.Response, new JsonObject { ["tokens"] = tokens });
    }

    /// <summary><c>{"tokens": [ids]}</c> → <c>{"content": TEXT}</c>.</summary>
    public static Task DetokenizeAsync(ServerRequest request)
    {
        if (request.Body.Field("tokens") is not { ValueKind: JsonValueKind.Array } tokens)
            throw OpenAIError.BadRequest("'tokens' is required: an array of token ids", "tokens");
        var tokenizer = request.Tokenizer;
        var ids = JsonRequest.Ids(tokens, "tokens", tokenizer.VocabSize);
        return OpenAIEndpoints.WriteJsonAsync(request.Http.Response, new JsonObject { ["content"] = tokenizer.Decode(ids) });
    }

    /// <summary>The one model served, with its sizes under <c>meta</c>.</summary>
    public static Task ModelsAsync(ServerRequest request)
    {
        var config = request.Model.Config;
        return OpenAIEndpoints.WriteJsonAsync(request.Http.Response, new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new JsonObject
            {
                ["id"] = request.ModelId,
                ["object"] = "model",
                ["created"] = Started,
                ["owned_by"] = "nativegpt2",
                ["meta"] = new JsonObject
                {
                    ["n_ctx"] = config.ContextLength, ["n_vocab"] = config.VocabSize, ["n_embd"] = config.EmbeddingSize,
                    ["n_layer"] = config.LayerCount, ["backend"] = request.Model.Backend.Description,
                },
            }),
        });
    }

    /// <summary><c>{"status": "ok"}</c> once the model is loaded (resolving it here loads it).</summary>
    public static Task HealthAsync(ServerRequest request) =>
        OpenAIEndpoints.WriteJsonAsync(request.Http.Response, new JsonObject { ["status"] = "ok", ["model"] = request.ModelId });
}
