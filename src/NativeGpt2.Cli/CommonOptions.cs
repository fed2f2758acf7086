using System.CommandLine;

namespace NativeGpt2.Cli;

/// <summary>Options shared by several commands, and the parsing of their values.</summary>
internal static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Log progress and details to stderr; print stack traces with errors.",
        Recursive = true,
    };

    /// <summary><c>--model SPEC</c>: a checkpoint directory or <c>synthetic:NAME</c>.</summary>
    public static Option<string> Model(bool required = true) => new("--model", "-m")
    {
        Description = "Model: a Hugging Face checkpoint directory, or synthetic:gpt2 (-medium, -large, -xl).",
        Required = required,
    };

    /// <summary>Parses <c>1,2,3</c> into token ids.</summary>
    public static int[] ParseIds(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageException($"{option}: give at least one token id, e.g. 1,2,3");
        var ids = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"{option}: '{parts[i]}' is not an integer token id");
        }
        return ids;
    }
}
