using System.Text.Json;

namespace NativeGpt2.Loading;

/// <summary>
/// Parses the JSON files of a checkpoint, turning a syntax error into a <see cref="ModelFormatException"/>
/// that names the file. A property given twice in one object is an error, as in the safetensors reference
/// implementation: "last one wins" would let two readers of one file see different models. A JSON file may begin with
/// a UTF-8 byte order mark, as Windows editors write one (RFC 8259 lets a parser ignore it); a safetensors header may not.
/// </summary>
internal static class JsonFile
{
    private static readonly JsonDocumentOptions Options = new() { MaxDepth = 64 };

    /// <summary>Parses <paramref name="utf8"/>; <paramref name="path"/> and <paramref name="field"/> name it in errors.</summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string path, string? field = null)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8, Options);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, field, $"not valid JSON ({e.Message})", e);
        }
        try
        {
            RejectDuplicates(document.RootElement, path, null);
            return document;
        }
        catch
        {
            document.Dispose();
            throw;
        }
    }

    /// <summary>Parses the content of a JSON file, which may begin with a UTF-8 byte order mark.</summary>
    public static JsonDocument ParseFile(ReadOnlyMemory<byte> utf8, string path) =>
        Parse(utf8.Span.StartsWith(Utf8Bom) ? utf8[Utf8Bom.Length..] : utf8, path);

    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    /// <summary>Reads (at most <paramref name="maxBytes"/>, see <see cref="ModelFiles"/>) and parses the file at <paramref name="path"/>.</summary>
    public static JsonDocument Read(string path, long maxBytes, string? checkpoint = null) =>
        ParseFile(ModelFiles.ReadBounded(path, maxBytes, checkpoint), path);

    /// <summary>Walks every object; the error names the duplicated property by its dotted path (<c>w.dtype</c>).</summary>
    private static void RejectDuplicates(JsonElement element, string path, string? where)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    var name = where is null ? property.Name : $"{where}.{property.Name}";
                    if (!seen.Add(property.Name))
                        throw new ModelFormatException(path, name, "duplicate entry: this property is given twice in one object");
                    RejectDuplicates(property.Value, path, name);
                }
                break;
            case JsonValueKind.Array:
                var i = 0;
                foreach (var item in element.EnumerateArray())
                    RejectDuplicates(item, path, $"{where}[{i++}]");
                break;
        }
    }
}
