using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NativeGpt2.Cli;

/// <summary>
/// The <c>--json</c> output of the commands: one object on one line, keys in snake_case as Hugging Face's and
/// OpenAI's JSON spell them. A difference that is not a number (a model that computed NaN) is written as the string
/// <c>"NaN"</c> or <c>"Infinity"</c>, where plain JSON has no number for it.
/// </summary>
internal static class CliJson
{
    private static readonly JsonSerializerOptions Options = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>The <c>--json</c> option, described as printing <paramref name="what"/> as one object, and then <paramref name="when"/>.</summary>
    public static Option<bool> Option(string what, string? when = null) => new("--json") { Description = $"Print {what} as one JSON object{(when is null ? "" : " " + when)}." };

    /// <summary>Writes <paramref name="value"/> (dictionaries, lists, numbers, strings) as one line.</summary>
    public static void Write(TextWriter output, object value) => output.WriteLine(JsonSerializer.Serialize(value, Options));
}
