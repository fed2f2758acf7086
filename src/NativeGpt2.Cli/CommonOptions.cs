using System.CommandLine;
using NativeGpt2.Hub;

namespace NativeGpt2.Cli;

/// <summary>Options shared by several commands, and the parsing of their values.</summary>
internal static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Log progress and details to stderr; print stack traces with errors.",
        Recursive = true,
    };

    public static readonly Option<bool> Offline = new("--offline")
    {
        Description = "Never use the network: hub models must already be in the cache (also HF_HUB_OFFLINE=1).",
        Recursive = true,
    };

    /// <summary><c>--revision REV</c>: the branch, tag or commit of a hub model (main by default).</summary>
    public static readonly Option<string> Revision = CreateRevision();

    private static Option<string> CreateRevision()
    {
        var option = new Option<string>("--revision")
        {
            Description = "Hub models: the branch, tag or commit to use (default main), as huggingface_hub's revision.",
            Recursive = true,
            DefaultValueFactory = _ => new HubOptions().Revision,
        };
        option.Validators.Add(result =>
        {
            var revision = result.GetValueOrDefault<string>();
            if (!ModelHub.IsRevision(revision))
                result.AddError($"--revision: '{revision}' is not a branch, tag or commit (letters, digits, '_', '-', '.' in '/'-separated parts, no '..')");
        });
        return option;
    }

    /// <summary><c>--backend NAME</c>: where the model runs (auto, cpu, ilgpu-cpu, cuda).</summary>
    public static Option<string> Backend() => new Option<string>("--backend", "-b")
    {
        Description = "Where the model runs: auto (CUDA when a device is present, else cpu), cpu, cuda, or ilgpu-cpu (ILGPU's CPU accelerator, for testing kernels without a GPU).",
        DefaultValueFactory = _ => Backends.BackendRegistry.Auto,
    }.AcceptOnlyFromAmong([.. Backends.BackendRegistry.Names]);

    /// <summary><c>--weights FORMAT</c>: how the weight matrices are held in memory (f32, f16, bf16, q8); default: as stored.</summary>
    public static Option<string?> Weights() => new Option<string?>("--weights")
    {
        Description = "How weight matrices are held: f32, f16, bf16 or q8 (8-bit blocks of 32 with a scale), converted at load. Default: as the checkpoint stores them.",
    }.AcceptOnlyFromAmong("f32", "f16", "bf16", "q8");

    /// <summary>The format named by <c>--weights</c>, or null to keep the checkpoint's.</summary>
    public static NativeGpt2.Weights.WeightFormat? ParseWeights(string? name) => name?.ToLowerInvariant() switch
    {
        null => null,
        "f32" => NativeGpt2.Weights.WeightFormat.F32,
        "f16" => NativeGpt2.Weights.WeightFormat.F16,
        "bf16" => NativeGpt2.Weights.WeightFormat.BF16,
        "q8" => NativeGpt2.Weights.WeightFormat.Q8,
        _ => throw new UsageException($"--weights: '{name}' is not a weight format (f32, f16, bf16, q8)"),
    };

    /// <summary>The model <c>generate</c> uses when none is named: the trained shakespeare-char, copied next to the executable.</summary>
    public static string BundledModel => Path.Combine(AppContext.BaseDirectory, "models", "shakespeare-char");

    /// <summary><c>--model SPEC</c>: a checkpoint directory, a hub name or <c>synthetic:NAME</c>.</summary>
    public static Option<string> Model(bool required = true) => new("--model", "-m")
    {
        Description = "Model: a checkpoint directory, a hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, org/name), or synthetic:gpt2 (-medium, -large, -xl)."
            + (required ? "" : " Default: the bundled shakespeare-char model."),
        Required = required,
    };

    /// <summary>
    /// Runs a library validation and reports its <see cref="ArgumentException"/> as a usage error naming the
    /// command-line option (<c>TopP</c> becomes <c>--top-p</c>).
    /// </summary>
    public static void ValidateAsUsage(Action validate)
    {
        try
        {
            validate();
        }
        catch (ArgumentException e)
        {
            var option = e.ParamName is { } name ? OptionFor(name) : "option";
            var message = OptionNames(CliApp.ArgumentMessage(e));
            // "--top-p must be in (0, 1]", "--max-new-tokens is too large: …", "--prompt: the prompt has 300 tokens, …".
            throw new UsageException(
                message.StartsWith(option + " ", StringComparison.Ordinal) ? message
                : System.Text.RegularExpressions.Regex.IsMatch(message, "^(must|is|are|has|cannot) ") ? $"{option} {message}"
                : $"{option}: {message}");
        }
    }

    /// <summary>
    /// A library message with the <see cref="GenerationOptions"/> properties it names (<c>MaxNewTokens</c>,
    /// <c>SlidingWindow</c>) written as the options that set them (<c>--max-new-tokens</c>, <c>--sliding-window</c>).
    /// </summary>
    private static string OptionNames(string message) =>
        System.Text.RegularExpressions.Regex.Replace(message, @"\b(MaxNewTokens|MinNewTokens|NoRepeatNgramSize|NumBeams|LengthPenalty|PenaltyAlpha|StopStrings|SlidingWindow|TopK|TopP|MinP|TypicalP|RepetitionPenalty|PresencePenalty|FrequencyPenalty|LogitBias|AllowSpecialTokens)\b", m => OptionFor(m.Value));

    /// <summary>The option that sets a library parameter: <c>TopP</c> is <c>--top-p</c>, <c>StopStrings</c> <c>--stop</c>.</summary>
    private static string OptionFor(string parameter) => parameter switch
    {
        "StopStrings" => "--stop",
        "AllowSpecialTokens" => "--allow-special",
        "prompts" or "prompt" => "--prompt",
        "count" => "--num-return-sequences",
        _ => "--" + System.Text.RegularExpressions.Regex.Replace(parameter, "(?<=[a-z])([A-Z])", "-$1").ToLowerInvariant(),
    };

    /// <summary>
    /// <c>--out FILE</c>: where a command writes its result. A folder is refused when the command line is parsed, before
    /// any model is loaded; a file already there is replaced.
    /// </summary>
    public static Option<FileInfo> OutputFile(string description)
    {
        var option = new Option<FileInfo>("--out", "-o") { Description = description, Required = true };
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<FileInfo>() is { } file && Directory.Exists(file.FullName))
                result.AddError($"--out: {file.FullName} is a folder; name a file (in it, or elsewhere)");
        });
        return option;
    }

    /// <summary>
    /// Writes <paramref name="file"/> whole or not at all (<see cref="AtomicFile"/>: its folder created when missing), and
    /// reports a file that cannot be written as an <see cref="IOException"/> that names the option and the path (exit code 1).
    /// Then prints <paramref name="confirmation"/> of the full path written: on stdout, or on stderr when the output went
    /// in place to a device, pipe or descriptor (<c>--out /dev/stdout</c>), so that stream holds the file alone.
    /// </summary>
    public static void WriteOutput(CliContext context, FileInfo file, string option, Action<string> write, Func<string, string> confirmation)
    {
        bool inPlace;
        try
        {
            inPlace = AtomicFile.WritesInPlace(file.FullName);
            write(file.FullName);
        }
        catch (IOException e)
        {
            throw new IOException($"{option}: {e.Message}", e);
        }
        (inPlace ? context.Error : context.Out).WriteLine(confirmation(file.FullName));
    }

    /// <summary>
    /// The input of a command that takes <c>--ids</c> or <c>--text</c> (forward, crosscheck), checked before the model
    /// loads: exactly one of them, and the ids parsed (null for text, which needs the model's tokenizer).
    /// </summary>
    public static int[]? ParseInput(string? ids, string? text)
    {
        if ((ids is null) == (text is null)) throw new UsageException("give the input as exactly one of --ids 1,2,3 or --text TEXT");
        return ids is null ? null : ParseIds(ids, "--ids");
    }

    /// <summary>
    /// The input's tokens once <paramref name="lm"/> is loaded: <paramref name="ids"/> from <see cref="ParseInput"/>, or
    /// <paramref name="text"/> encoded; checked against the vocabulary and the context.
    /// </summary>
    public static int[] InputTokens(Gpt2CausalLM lm, int[]? ids, string? text)
    {
        var tokens = ids ?? (lm.Tokenizer ?? throw new UsageException($"--text: model '{lm.Source}' has no tokenizer; give --ids")).Encode(text!);
        if (tokens.Length == 0) throw new UsageException("--text: the text encodes to no tokens");
        CheckIds(tokens, lm.Config.VocabSize, ids is not null ? "--ids" : "--text", lm.Config.ContextLength);
        return tokens;
    }

    /// <summary>
    /// Parses <c>1,2,3</c> into token ids, also written as a JSON or Python list (<c>[1, 2, 3]</c>, as
    /// <c>tokenize --json</c> prints them): an empty entry (<c>1,,2</c>) is an error, not skipped.
    /// </summary>
    public static int[] ParseIds(string text, string option)
    {
        text = text.Trim();
        if (text.StartsWith('[') && text.EndsWith(']')) text = text[1..^1];
        if (string.IsNullOrWhiteSpace(text)) throw new UsageException($"{option}: give at least one token id, e.g. 1,2,3");
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (parts[i].Length == 0)
                throw new UsageException($"{option}: entry {i + 1} of {parts.Length} is empty; give ids separated by single commas, e.g. 1,2,3");
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
                throw new UsageException($"{option}: '{parts[i]}' is not an integer token id");
        }
        return ids;
    }

    /// <summary>
    /// Checks token ids against the model before it runs: each inside the vocabulary and, when
    /// <paramref name="contextLength"/> is given, no more of them than the context holds.
    /// </summary>
    public static void CheckIds(IReadOnlyList<int> ids, int vocabSize, string option, int? contextLength = null)
    {
        if (ids.Count > contextLength)
            throw new UsageException($"{option}: {ids.Count} tokens exceed the context length of {contextLength}");
        for (var i = 0; i < ids.Count; i++)
        {
            if ((uint)ids[i] >= (uint)vocabSize)
                throw new UsageException($"{option}: token id {ids[i]} at index {i} is outside the vocabulary [0, {vocabSize})");
        }
    }
}

/// <summary>A model and one text encoded for it: what the reading commands (top, trace, attention) start from.</summary>
internal sealed record TextInput(Gpt2CausalLM Model, Tokenization.Gpt2Tokenizer Tokenizer, string Text, int[] Ids) : IDisposable
{
    /// <summary>
    /// Loads <c>--model</c> (default: the bundled model) on <c>--backend</c> with <c>--weights</c>, and encodes
    /// <paramref name="text"/>: a usage error when it is empty or longer than <paramref name="maxTokens"/> (default: the context).
    /// </summary>
    public static async Task<TextInput> LoadAsync(CliContext context, ParseResult parse, Option<string> model, Option<string> backend, Option<string?> weights,
        string text, CancellationToken cancellation, int? maxTokens = null)
    {
        var lm = await Gpt2CausalLM.LoadAsync(parse.GetValue(model) ?? CommonOptions.BundledModel, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation);
        try
        {
            var tokenizer = lm.Tokenizer ?? throw new NativeGpt2Exception($"model '{lm.Source}' has no tokenizer ({Tokenization.Gpt2Tokenizer.NoTokenizerFiles})");
            var ids = tokenizer.Encode(text);
            var limit = Math.Min(maxTokens ?? int.MaxValue, lm.Config.ContextLength);
            if (ids.Length == 0) throw new UsageException("--text gives no tokens for this model: it is empty, or holds only characters the vocabulary lacks");
            if (ids.Length > limit) throw new UsageException($"--text is {ids.Length} tokens; at most {limit} can be used here");
            return new TextInput(lm, tokenizer, text, ids);
        }
        catch
        {
            lm.Dispose();
            throw;
        }
    }

    public void Dispose() => Model.Dispose();
}
