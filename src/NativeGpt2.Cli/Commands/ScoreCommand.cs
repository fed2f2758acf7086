using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 score --model SPEC --file PATH [--context N] [--stride N] [--json]</c>: token count, mean
/// negative log-likelihood (nats per token) and perplexity of a text file.
/// </summary>
internal static class ScoreCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var file = new Option<FileInfo>("--file", "-f") { Description = "UTF-8 text file to score.", Required = true };
        var window = new Option<int?>("--context") { Description = "Tokens per window (default: the model's context length)." };
        var stride = new Option<int?>("--stride") { Description = "Tokens the window advances (default: a full window, no overlap)." };
        var json = new Option<bool>("--json") { Description = "Print {\"tokens\": N, \"mean_nll\": x, \"perplexity\": y}." };
        var command = new Command("score", "Mean negative log-likelihood and perplexity of a text (sliding window for long texts).") { model, backend, weights, file, window, stride, json };
        command.SetAction((parse, cancellation) =>
        {
            var path = parse.GetValue(file)!;
            // Regular files only, and bounded: a FIFO or /dev/zero would otherwise block or fill memory.
            var bytes = Loading.ModelFiles.ReadBounded(path.FullName, Loading.ModelFiles.MaxTextBytes);
            var text = new StreamReader(new MemoryStream(bytes), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true).ReadToEnd();
            using var lm = Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation).GetAwaiter().GetResult();
            var bar = context.ProgressBar;
            var progress = bar is null ? null : new ScoringBar(bar);
            var result = lm.Score(text, new ScoreOptions { Context = parse.GetValue(window), Stride = parse.GetValue(stride), Progress = progress }, cancellation);
            if (parse.GetValue(json))
            {
                context.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["tokens"] = result.TokenCount,
                    ["mean_nll"] = result.MeanNll,
                    ["perplexity"] = result.Perplexity,
                }));
            }
            else
            {
                var n = CultureInfo.InvariantCulture;
                context.Out.WriteLine($"tokens      {result.TokenCount.ToString(n)}");
                context.Out.WriteLine($"mean NLL    {result.MeanNll.ToString("F5", n)} nats/token");
                context.Out.WriteLine($"perplexity  {result.Perplexity.ToString("F4", n)}");
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
