using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace NativeGpt2.Server;

/// <summary><c>/v1/embeddings</c>: one vector per input, pooled as the registered <see cref="AI.NativeGpt2ServiceOptions.Embeddings"/> say.</summary>
internal static class Embeddings
{
    /// <summary>Inputs one request may hold (OpenAI's limit).</summary>
    private const int MaxInputs = 2048;

    public static async Task EmbedAsync(ServerRequest request)
    {
        var body = request.Body;
        var model = request.Model;
        var format = body.String("encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw OpenAIError.BadRequest($"'encoding_format' must be float or base64, not '{format}'", "encoding_format");
        var dimensions = model.Config.EmbeddingSize;
        if (body.Int("dimensions", 1, int.MaxValue) is { } asked && asked != dimensions)
            throw OpenAIError.BadRequest($"this model's embeddings have {dimensions} dimensions, not {asked}", "dimensions");
        var (texts, ids) = Inputs(request);
        var options = request.ModelOptions.Embeddings;
        if (options.Pooling == EmbeddingPooling.None) options = options with { Pooling = EmbeddingPooling.Mean };
        await request.EnterAsync().ConfigureAwait(false);
        var results = await Task.Run(() => texts is not null ? model.Embed(texts, options, request.Aborted) : model.EmbedIds(ids!, options, request.Aborted), request.Aborted)
            .ConfigureAwait(false);

        var data = new JsonArray();
        for (var i = 0; i < results.Count; i++)
        {
            var vector = results[i].Vectors;
            data.Add(new JsonObject
            {
                ["object"] = "embedding",
                ["index"] = i,
                // base64: the float32 values' little-endian bytes, as OpenAI sends them.
                ["embedding"] = format == "base64"
                    ? Convert.ToBase64String(MemoryMarshal.AsBytes(vector.AsSpan()))
                    : new JsonArray([.. vector.Select(v => (JsonNode)v)]),
            });
        }
        var tokens = results.Sum(r => r.TokenCount);
        await OpenAIEndpoints.WriteJsonAsync(request.Http.Response, new JsonObject
        {
            ["object"] = "list",
            ["data"] = data,
            ["model"] = request.ModelId,
            ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens },
        }).ConfigureAwait(false);
    }

    /// <summary><c>input</c>: a string, an array of strings, an array of token ids, or an array of such arrays.</summary>
    private static (string[]? Texts, int[][]? Ids) Inputs(ServerRequest request)
    {
        const string Expected = "a string, an array of strings, an array of token ids, or an array of token-id arrays";
        if (request.Body.Field("input") is not { } input) throw OpenAIError.BadRequest("'input' is required", "input");
        var vocabulary = request.Model.Config.VocabSize;
        if (input.ValueKind == JsonValueKind.String) return (Checked([input.GetString()!]), null);
        if (input.ValueKind != JsonValueKind.Array) throw JsonRequest.WrongType("input", Expected);
        var items = input.EnumerateArray().ToArray();
        if (items.Length == 0) throw OpenAIError.BadRequest("'input' is empty", "input");
        if (items.Length > MaxInputs) throw OpenAIError.BadRequest($"'input' may hold at most {MaxInputs} items, not {items.Length}", "input");
        if (items.All(i => i.ValueKind == JsonValueKind.String)) return (Checked([.. items.Select(i => i.GetString()!)]), null);
        if (items.All(i => i.ValueKind == JsonValueKind.Number)) return (null, [JsonRequest.Ids(input, "input", vocabulary)]);
        if (items.All(i => i.ValueKind == JsonValueKind.Array))
        {
            var ids = items.Select(i => JsonRequest.Ids(i, "input", vocabulary)).ToArray();
            if (ids.Any(s => s.Length == 0)) throw OpenAIError.BadRequest("'input' holds an empty token array", "input");
            return (null, ids);
        }
        throw JsonRequest.WrongType("input", Expected);

        string[] Checked(string[] texts)
        {
            _ = request.Tokenizer;
            return texts.Any(t => t.Length == 0) ? throw OpenAIError.BadRequest("'input' must not hold an empty string", "input") : texts;
        }
    }
}
