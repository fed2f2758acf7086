using System.CommandLine;
using Microsoft.Extensions.Logging;
using NativeGpt2.Cli.Visualization;
using NativeGpt2.Tokenization;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 tokenize --model SPEC (--text TEXT | --file PATH) [--json] [--pieces] [--count]</c> and
/// <c>nativegpt2 detokenize --model SPEC --ids 1,2,3</c>. Only the tokenizer is loaded, not the weights.
/// </summary>
internal static class TokenizeCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var text = new Option<string?>("--text", "-t") { Description = "Text to tokenize; or give --file." };
        var file = new Option<string?>("--file", "-f") { Description = "UTF-8 text file to tokenize; - reads standard input." };
        var json = new Option<bool>("--json") { Description = "Print {\"ids\": [...]}." };
        var count = new Option<bool>("--count") { Description = "Print only the number of tokens." };
        var pieces = new Option<bool>("--pieces") { Description = "Print each token on a line of its own, its id and its text quoted (with --json: a \"pieces\" list of the texts)." };
        var special = new Option<bool>("--allow-special") { Description = "Treat <|endoftext|> in the text as the special token." };
        var command = new Command("tokenize", "Print the token ids of a text.") { model, text, file, json, count, pieces, special };
        command.SetAction(async (parse, cancellation) =>
        {
            if (parse.GetValue(count) && (parse.GetValue(json) || parse.GetValue(pieces))) throw new UsageException("--count prints the number alone: give it without --json and --pieces");
            var input = TextFile.Either(context, parse.GetValue(text), parse.GetValue(file), "--text", "--file", "the text", "tokenize");
            var tokenizer = await Task.Run(() => Gpt2Tokenizer.ForModel(parse.GetValue(model)!, context.LoadOptions, cancellation), cancellation);
            var ids = tokenizer.Encode(input, parse.GetValue(special));
            if (tokenizer.MissingCharacters(input) is { Count: > 0 } missing)
                context.Logger.LogWarning("{Warning}", Gpt2Tokenizer.MissingCharactersWarning(missing));
            if (parse.GetValue(json))
            {
                var result = new Dictionary<string, object> { ["ids"] = ids };
                if (parse.GetValue(pieces)) result["pieces"] = ids.Select(id => TokenLabels.Text(tokenizer, id)).ToArray();
                CliJson.Write(context.Out, result);
            }
            else if (parse.GetValue(pieces))
            {
                // The id, then the text quoted so that spaces and line breaks show (part of a character split across tokens as U+FFFD).
                foreach (var id in ids) context.Out.WriteLine($"{id,6}  {TokenLabels.Quoted(TokenLabels.Text(tokenizer, id))}");
            }
            else context.Out.WriteLine(parse.GetValue(count) ? ids.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) : string.Join(",", ids));
            return CliApp.Success;
        });
        return command;
    }

    public static Command CreateDetokenize(CliContext context)
    {
        var model = CommonOptions.Model();
        var ids = new Option<string>("--ids") { Description = "Token ids, comma-separated: 1,2,3.", Required = true };
        var command = new Command("detokenize", "Print the text of token ids.") { model, ids };
        command.SetAction(async (parse, cancellation) =>
        {
            var tokenizer = await Task.Run(() => Gpt2Tokenizer.ForModel(parse.GetValue(model)!, context.LoadOptions, cancellation), cancellation);
            var tokens = CommonOptions.ParseIds(parse.GetValue(ids)!, "--ids");
            CommonOptions.CheckIds(tokens, tokenizer.VocabSize, "--ids");
            context.Out.WriteLine(tokenizer.Decode(tokens));
            return CliApp.Success;
        });
        return command;
    }
}
