using System.CommandLine;
using System.Globalization;
using NativeGpt2.Cli.Visualization;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 score --model SPEC --file PATH [--context N] [--stride N] [--per-token] [--top N] [--json]</c>: token
/// count, mean negative log-likelihood (nats per token) and perplexity of a text file, or of standard input with
/// <c>--file -</c>; with <c>--per-token</c> each token's log-probability too, and with <c>--top</c> the likeliest tokens at its place.
/// </summary>
internal static class ScoreCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var file = new Option<string>("--file", "-f") { Description = "UTF-8 text file to score; - reads standard input.", Required = true };
        var window = new Option<int?>("--context") { Description = "Tokens per window (default: the model's context length)." };
        var stride = new Option<int?>("--stride") { Description = "Tokens the window advances (default: a full window, no overlap)." };
        var perToken = new Option<bool>("--per-token") { Description = "Also list each token (after the first) with its log-probability." };
        var top = new Option<int?>("--top") { Description = $"With each token, the N likeliest tokens at its place (1 to {GenerationOptions.MaxLogProbs}; implies --per-token)." };
        var json = new Option<bool>("--json") { Description = "Print {\"tokens\": N, \"mean_nll\": x, \"perplexity\": y}, and \"per_token\": [{\"id\", \"text\", \"logprob\", \"top\"}] with --per-token." };
        var command = new Command("score", "Mean negative log-likelihood and perplexity of a text (sliding window for long texts).") { model, backend, weights, file, window, stride, perToken, top, json };
        command.SetAction((parse, cancellation) =>
        {
            var alternatives = parse.GetValue(top);
            if (alternatives is < 1 or > GenerationOptions.MaxLogProbs)
                throw new UsageException($"--top must be in [1, {GenerationOptions.MaxLogProbs}], got {alternatives}");
            var listed = parse.GetValue(perToken) || alternatives is not null;
            var path = parse.GetValue(file)!;
            var text = TextFile.Read(context, path, "--file", "score");
            using var lm = Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation).GetAwaiter().GetResult();
            var bar = context.ProgressBar;
            var progress = bar is null ? null : new ScoringBar(bar);
            var options = new ScoreOptions { Context = parse.GetValue(window), Stride = parse.GetValue(stride), Progress = progress, TopLogProbs = listed ? alternatives ?? 0 : null };
            var result = lm.Score(text, options, cancellation);
            string Text(int id) => TokenLabels.Text(lm.Tokenizer!, id);
            string Quoted(int id) => TokenLabels.Quoted(Text(id));
            if (parse.GetValue(json))
            {
                var summary = new Dictionary<string, object>
                {
                    ["tokens"] = result.TokenCount,
                    ["mean_nll"] = result.MeanNll,
                    ["perplexity"] = result.Perplexity,
                };
                if (result.Tokens is { } tokens)
                {
                    summary["per_token"] = tokens.Select(t => new Dictionary<string, object>
                    {
                        ["id"] = t.Id, ["text"] = Text(t.Id), ["logprob"] = t.LogProb,
                        ["top"] = t.Top.Select(a => new Dictionary<string, object> { ["id"] = a.Id, ["text"] = Text(a.Id), ["logprob"] = a.LogProb }).ToArray(),
                    }).ToArray();
                }
                CliJson.Write(context.Out, summary);
            }
            else
            {
                var n = CultureInfo.InvariantCulture;
                context.Out.WriteLine($"tokens      {result.TokenCount.ToString(n)}");
                context.Out.WriteLine($"mean NLL    {result.MeanNll.ToString("F5", n)} nats/token");
                context.Out.WriteLine($"perplexity  {result.Perplexity.ToString("F4", n)}");
                if (result.Tokens is { } tokens)
                {
                    // Position in the text's tokens, the token quoted (so that spaces and line breaks show), its log-probability.
                    for (var i = 0; i < tokens.Count; i++)
                    {
                        var line = $"{(i + 1).ToString(n),6}  {Quoted(tokens[i].Id),-14} {tokens[i].LogProb.ToString("F4", n),9}";
                        if (tokens[i].Top.Count > 0) line += "   " + string.Join("  ", tokens[i].Top.Select(a => $"{Quoted(a.Id)} {a.LogProb.ToString("F4", n)}"));
                        context.Out.WriteLine(line);
                    }
                }
            }
            return Task.FromResult(CliApp.Success);
        });
        return command;
    }

    /// <summary>Scoring's progress on the progress bar, as it is reported (no thread hop, so in order).</summary>
    private sealed class ScoringBar(IProgress<LoadProgress> bar) : IProgress<ScoreProgress>
    {
        public void Report(ScoreProgress value) => bar.Report(new LoadProgress($"scoring {value.Total:N0} tokens", value.Fraction));
    }
}
