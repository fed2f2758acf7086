using System.Text.Json;

namespace NativeGpt2.Server;

/// <summary>
/// A request body read strictly: a bounded size, well-formed JSON with no duplicate fields, an object at the
/// top, and each known field of the type and range it must have. Unknown fields are ignored, as OpenAI's
/// clients send fields this server has no use for (<c>user</c>, <c>store</c>, …). Every failure
/// is an <see cref="OpenAIError"/> (400) naming the field.
/// </summary>
internal sealed class JsonRequest : IDisposable
{
    private static readonly JsonDocumentOptions Strict = new() { MaxDepth = 64, AllowDuplicateProperties = false };

    private readonly JsonDocument _document;

    private JsonRequest(JsonDocument document)
    {
        _document = document;
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw OpenAIError.BadRequest("the request body must be a JSON object");
        }
    }

    /// <summary>The top-level object.</summary>
    public JsonElement Root => _document.RootElement;

    /// <summary>Reads and parses the body of <paramref name="request"/>, at most <paramref name="maxBytes"/> bytes.</summary>
    public static async Task<JsonRequest> ReadAsync(Microsoft.AspNetCore.Http.HttpRequest request, long maxBytes, CancellationToken cancellationToken)
    {
        if (request.ContentLength > maxBytes) throw TooLarge(maxBytes);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > maxBytes) throw TooLarge(maxBytes);
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0) throw OpenAIError.BadRequest("the request has no body: send a JSON object");
        var body = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        // The parser checks the structure only; text inside strings is decoded when read, and would fail there.
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
            throw OpenAIError.BadRequest("the request body is not valid UTF-8: send JSON as UTF-8 text");
        JsonDocument? document = null;
        try
        {
            // Parsing compares property names (duplicates are refused), so a name can fail to decode here already.
            document = JsonDocument.Parse(body, Strict);
            CheckStrings(document.RootElement);
            return new JsonRequest(document);
        }
        catch (JsonException e)
        {
            throw OpenAIError.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
        catch (InvalidOperationException)
        {
            document?.Dispose();
            throw OpenAIError.BadRequest("the request body holds a string that is not text: an escaped lone surrogate such as \\ud800");
        }
    }

    /// <summary>
    /// Decodes every string and property name once: an escaped lone surrogate (<c>"\ud800"</c>) is valid JSON but not
    /// text, and would otherwise fail (<see cref="InvalidOperationException"/>) wherever the field is read.
    /// </summary>
    private static void CheckStrings(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                element.GetString();
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray()) CheckStrings(item);
                break;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    _ = property.Name;
                    CheckStrings(property.Value);
                }
                break;
        }
    }

    private static OpenAIError TooLarge(long maxBytes) => OpenAIError.BadRequest($"the request body exceeds {maxBytes} bytes");

    /// <summary>The field, or null when it is absent or JSON null.</summary>
    public JsonElement? Field(string name) =>
        Root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public string? String(string name) => Field(name) is { } value
        ? value.ValueKind == JsonValueKind.String ? value.GetString() : throw WrongType(name, "a string")
        : null;

    public bool? Bool(string name) => Field(name) is { } value
        ? value.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw WrongType(name, "a boolean") }
        : null;

    public int? Int(string name, int min, int max) => Field(name) is { } value ? Int(value, name, min, max) : null;

    public static int Int(JsonElement value, string name, int min, int max)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number)) throw WrongType(name, "an integer");
        if (number < min || number > max) throw OpenAIError.BadRequest($"'{name}' must be in [{min}, {max}], not {number}", name);
        return (int)number;
    }

    public long? Long(string name) => Field(name) is { } value
        ? value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) ? number : throw WrongType(name, "an integer")
        : null;

    public float? Number(string name, double min, double max)
    {
        if (Field(name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var number) || !double.IsFinite(number)) throw WrongType(name, "a number");
        if (number < min || number > max) throw OpenAIError.BadRequest($"'{name}' must be in [{min}, {max}], not {number}", name);
        return (float)number;
    }

    /// <summary><c>stop</c>: a string or an array of non-empty strings.</summary>
    public IReadOnlyList<string> StopStrings(string name, int max)
    {
        if (Field(name) is not { } value) return [];
        string[] stops = value.ValueKind switch
        {
            JsonValueKind.String => [value.GetString()!],
            JsonValueKind.Array => [.. value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw WrongType(name, "a string or an array of strings"))],
            _ => throw WrongType(name, "a string or an array of strings"),
        };
        if (stops.Length > max) throw OpenAIError.BadRequest($"'{name}' may hold at most {max} sequences, not {stops.Length}", name);
        if (stops.Any(s => s.Length == 0)) throw OpenAIError.BadRequest($"'{name}' must not hold an empty string", name);
        return stops;
    }

    /// <summary>
    /// <c>logit_bias</c>: an object from token ids (as strings, JSON's only keys) to a bias in [-max, max]; null when
    /// absent. Ids outside the vocabulary are refused: the bias would apply to no token.
    /// </summary>
    public IReadOnlyDictionary<int, float>? LogitBias(string name, int vocabularySize, float max)
    {
        if (Field(name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Object) throw WrongType(name, "an object mapping token ids to biases");
        var biases = new Dictionary<int, float>();
        foreach (var entry in value.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) || id >= vocabularySize)
                throw OpenAIError.BadRequest($"'{name}' keys must be token ids in [0, {vocabularySize - 1}], not \"{entry.Name}\"", name);
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetDouble(out var bias) || !double.IsFinite(bias))
                throw OpenAIError.BadRequest($"'{name}' values must be numbers (token {id})", name);
            if (Math.Abs(bias) > max) throw OpenAIError.BadRequest($"'{name}' values must be in [-{max}, {max}], not {bias} (token {id})", name);
            if (!biases.TryAdd(id, (float)bias)) throw OpenAIError.BadRequest($"'{name}' names token {id} twice", name);
        }
        return biases;
    }

    /// <summary>An array of token ids.</summary>
    public static int[] Ids(JsonElement array, string name, int vocabularySize) =>
        [.. array.EnumerateArray().Select(e => Int(e, name, 0, vocabularySize - 1))];

    public static OpenAIError WrongType(string name, string expected) => OpenAIError.BadRequest($"'{name}' must be {expected}", name);

    public void Dispose() => _document.Dispose();
}
