using System.Text.Json;

namespace NativeGpt2.Loading;

/// <summary>Parses the JSON files of a checkpoint, turning a syntax error into a <see cref="ModelFormatException"/> that names the file.</summary>
internal static class JsonFile
{
    /// <summary>Parses <paramref name="utf8"/>; <paramref name="path"/> and <paramref name="field"/> name it in errors.</summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string path, string? field = null)
    {
        try
        {
            return JsonDocument.Parse(utf8);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, field, $"not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>Reads and parses the file at <paramref name="path"/>.</summary>
    public static JsonDocument Read(string path) => Parse(File.ReadAllBytes(path), path);
}
