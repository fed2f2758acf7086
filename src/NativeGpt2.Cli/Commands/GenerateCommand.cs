using System.CommandLine;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 generate [--model SPEC] (--prompt TEXT | --prompt-file PATH) [--max-new-tokens N] [--greedy] [--temperature T]
/// [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--presence-penalty P] [--frequency-penalty F] [--logit-bias ID=B]...
/// [--no-repeat-ngram-size N] [--min-new-tokens N] [--num-beams K] [--length-penalty L] [--early-stopping false|true|never]
/// [--penalty-alpha A] [--num-return-sequences N] [--seed S] [--stop STR]... [--json]</c>:
/// streams the prompt's continuation to stdout as it is produced (beam search prints it when the search ends; --json
/// prints one object when generation ends).
/// </summary>
internal static class GenerateCommand
{
    public static Command Create(CliContext context)
    {
        var defaults = new GenerationOptions();
        var model = CommonOptions.Model(required: false);
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text to continue (empty: start from <|endoftext|>); or give --prompt-file." };
        var promptFile = new Option<string?>("--prompt-file") { Description = "UTF-8 text file whose text to continue, as it is (line breaks included); - reads standard input." };
        var maxNewTokens = new Option<int>("--max-new-tokens", "-n") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 200 };
        var greedy = new Option<bool>("--greedy") { Description = "Always take the most likely token (ignores temperature, top-k, top-p)." };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy.", DefaultValueFactory = _ => defaults.Temperature };
        var topK = new Option<int>("--top-k") { Description = "Sample among the K most likely tokens; 0 for no limit.", DefaultValueFactory = _ => defaults.TopK };
        var topP = new Option<float>("--top-p") { Description = "Sample from the smallest set of tokens with probability ≥ P; 1 for no limit.", DefaultValueFactory = _ => defaults.TopP };
        var minP = new Option<float>("--min-p") { Description = "Sample only among tokens at least P times as likely as the most likely; 0 for no limit.", DefaultValueFactory = _ => defaults.MinP };
        var typicalP = new Option<float>("--typical-p") { Description = "Sample among the tokens whose surprise is nearest the entropy, the fewest holding probability P; 1 for no limit.", DefaultValueFactory = _ => defaults.TypicalP };
        var repetitionPenalty = new Option<float>("--repetition-penalty") { Description = "Penalty > 1 for tokens already seen; 1 for none.", DefaultValueFactory = _ => defaults.RepetitionPenalty };
        var presencePenalty = new Option<float>("--presence-penalty") { Description = "Subtracted once from the logit of each token the output already holds, in [-2, 2]; 0 for none.", DefaultValueFactory = _ => defaults.PresencePenalty };
        var frequencyPenalty = new Option<float>("--frequency-penalty") { Description = "Subtracted from a token's logit for each time the output already holds it, in [-2, 2]; 0 for none.", DefaultValueFactory = _ => defaults.FrequencyPenalty };
        var logitBias = new Option<string[]>("--logit-bias") { Description = "ID=BIAS: added to that token's logit, BIAS in [-100, 100] (-100 bans it); may be repeated.", AllowMultipleArgumentsPerToken = false };
        logitBias.Validators.Add(result =>
        {
            foreach (var entry in result.GetValueOrDefault<string[]>() ?? [])
            {
                if (ParseBias(entry) is null) result.AddError($"--logit-bias: '{entry}' is not ID=BIAS, e.g. 50256=-100");
            }
        });
        var noRepeat = new Option<int>("--no-repeat-ngram-size") { Description = "Never repeat an n-gram of N tokens (prompt included); 0 for no limit.", DefaultValueFactory = _ => defaults.NoRepeatNgramSize };
        var minNewTokens = new Option<int>("--min-new-tokens") { Description = "Generate at least N tokens before <|endoftext|> may end the text; 0 for none.", DefaultValueFactory = _ => defaults.MinNewTokens };
        var numBeams = new Option<int>("--num-beams") { Description = $"Beam search over K sequences (1 to {GenerationOptions.MaxBeams}; 1: none); the text is printed when the search ends.", DefaultValueFactory = _ => defaults.NumBeams };
        var lengthPenalty = new Option<float>("--length-penalty") { Description = "Beam search: a finished sequence scores its log-probability over (its length)^L; above 0 favours longer ones.", DefaultValueFactory = _ => defaults.LengthPenalty };
        var earlyStopping = new Option<string>("--early-stopping")
        {
            Description = "Beam search: false ends when no running beam can beat the finished ones at its length, true as soon as K are finished, never when none could at any length (as Hugging Face's early_stopping).",
            DefaultValueFactory = _ => "false",
        };
        earlyStopping.AcceptOnlyFromAmong("false", "true", "never");
        var penaltyAlpha = new Option<float>("--penalty-alpha") { Description = "Contrastive search: among the --top-k likeliest tokens, keep the best (1 - A)·p - A·(likeness to the text so far), A in [0, 1]; 0: none.", DefaultValueFactory = _ => defaults.PenaltyAlpha };
        var sequences = new Option<int>("--num-return-sequences") { Description = $"Print N continuations (1 to {Gpt2CausalLM.MaxSequences}), separated by lines of ---: the search's N best with --num-beams, else N drawn in one batch with seeds S, S + 1, ….", DefaultValueFactory = _ => 1 };
        var seed = new Option<int?>("--seed") { Description = "Seed for reproducible sampling (default: random)." };
        var stop = new Option<string[]>("--stop") { Description = "Stop before this text; may be repeated.", AllowMultipleArgumentsPerToken = false };
        var slidingWindow = new Option<bool>("--sliding-window") { Description = "Allow prompt + new tokens beyond the context length by sliding the window." };
        var special = new Option<bool>("--allow-special") { Description = "Treat <|endoftext|> in the prompt as the special token." };
        var json = CliJson.Option("the result ({\"prompt\", \"prompt_tokens\", \"choices\": [{\"text\", \"ids\", \"finish_reason\"}]}; finish_reason length, end_of_text or stop_string)",
            "when generation ends, instead of streaming the text");

        var command = new Command("generate", "Continue a prompt, streaming the text as it is produced.")
        {
            model, backend, weights, prompt, promptFile, maxNewTokens, greedy, temperature, topK, topP, minP, typicalP, repetitionPenalty, presencePenalty, frequencyPenalty, logitBias,
            noRepeat, minNewTokens, numBeams, lengthPenalty, earlyStopping, penaltyAlpha, sequences, seed, stop, slidingWindow, special, json,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var options = new GenerationOptions
            {
                MaxNewTokens = parse.GetValue(maxNewTokens),
                Greedy = parse.GetValue(greedy),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                MinP = parse.GetValue(minP),
                TypicalP = parse.GetValue(typicalP),
                RepetitionPenalty = parse.GetValue(repetitionPenalty),
                PresencePenalty = parse.GetValue(presencePenalty),
                FrequencyPenalty = parse.GetValue(frequencyPenalty),
                LogitBias = parse.GetValue(logitBias) is { Length: > 0 } biases ? Biases(biases) : null,
                NoRepeatNgramSize = parse.GetValue(noRepeat),
                MinNewTokens = parse.GetValue(minNewTokens),
                NumBeams = parse.GetValue(numBeams),
                LengthPenalty = parse.GetValue(lengthPenalty),
                EarlyStopping = parse.GetValue(earlyStopping) switch { "true" => BeamStopping.Early, "never" => BeamStopping.Never, _ => BeamStopping.Heuristic },
                PenaltyAlpha = parse.GetValue(penaltyAlpha),
                Seed = parse.GetValue(seed),
                StopStrings = parse.GetValue(stop) ?? [],
                SlidingWindow = parse.GetValue(slidingWindow),
                AllowSpecialTokens = parse.GetValue(special),
            };
            // Bad options are usage errors: report them, under the option's name, before spending time on loading.
            CommonOptions.ValidateAsUsage(options.Validate);

            var text = TextFile.Either(context, parse.GetValue(prompt), parse.GetValue(promptFile), "--prompt", "--prompt-file", "the prompt", "generate");
            using var lm = await Gpt2CausalLM.LoadAsync(parse.GetValue(model) ?? CommonOptions.BundledModel, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation);
            if (lm.Tokenizer is null)
                throw new NativeGpt2Exception($"model '{lm.Source}' has no tokenizer ({Tokenization.Gpt2Tokenizer.NoTokenizerFiles}), so --prompt cannot be read; 'nativegpt2 forward --ids' runs it on token ids");
            var returned = parse.GetValue(sequences);
            if (parse.GetValue(json) || returned != 1 || options.NumBeams > 1)
            {
                // Printed when generation ends: --json, several sequences (each as the prompt and its continuation), and beam
                // search, which knows its text only at the end. Generate and GenerateSequences check the prompt before they
                // start, and that is the only ArgumentException they throw: a usage error, as with streaming.
                IReadOnlyList<GenerationResult> results = null!;
                CommonOptions.ValidateAsUsage(() => results = returned == 1 ? [lm.Generate(text, options, cancellation)] : lm.GenerateSequences(text, returned, options, cancellation));
                if (parse.GetValue(json))
                {
                    CliJson.Write(context.Out, new Dictionary<string, object?>
                    {
                        ["prompt"] = text,
                        ["prompt_tokens"] = results[0].PromptIds.Count,
                        ["choices"] = results.Select(r => new Dictionary<string, object?>
                        {
                            ["text"] = r.Text, ["ids"] = r.GeneratedIds, ["finish_reason"] = FinishReasonName(r.FinishReason),
                        }).ToArray(),
                    });
                }
                else await context.Out.WriteLineAsync(string.Join(Environment.NewLine + "---" + Environment.NewLine, results.Select(r => text + r.Text)));
                return CliApp.Success;
            }
            // The prompt is checked against the context here, before anything is printed.
            IAsyncEnumerable<string> stream = null!;
            CommonOptions.ValidateAsUsage(() => stream = lm.GenerateStreamAsync(text, options, cancellation));
            await context.Out.WriteAsync(text);
            await context.Out.FlushAsync(cancellation);
            await foreach (var piece in stream)
            {
                await context.Out.WriteAsync(piece);
                await context.Out.FlushAsync(cancellation);
            }
            await context.Out.WriteLineAsync();
            return CliApp.Success;
        });
        return command;
    }

    /// <summary>Why a sequence ended, as <c>--json</c> spells it.</summary>
    private static string FinishReasonName(FinishReason reason) => reason switch
    {
        FinishReason.Length => "length",
        FinishReason.EndOfText => "end_of_text",
        _ => "stop_string",
    };

    /// <summary>ID=BIAS as a token id and a number, or null when it is not that.</summary>
    private static (int Id, float Bias)? ParseBias(string entry)
    {
        var parts = entry.Split('=', 2);
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        return parts.Length == 2
            && int.TryParse(parts[0].Trim(), System.Globalization.NumberStyles.Integer, invariant, out var id)
            && float.TryParse(parts[1].Trim(), System.Globalization.NumberStyles.Float, invariant, out var bias)
            ? (id, bias) : null;
    }

    /// <summary>The biases of the --logit-bias entries (validated already); a token named twice keeps the last.</summary>
    private static Dictionary<int, float> Biases(string[] entries)
    {
        var biases = new Dictionary<int, float>();
        foreach (var entry in entries)
        {
            var (id, bias) = ParseBias(entry)!.Value;
            biases[id] = bias;
        }
        return biases;
    }
}
