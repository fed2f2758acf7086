using System.CommandLine;
using System.Globalization;
using NativeGpt2.Cli.Visualization;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 top [--model SPEC] --text TEXT [--k 5] [--json]</c>: the most likely next tokens after a text, with their
/// probabilities (softmax of the last position's logits, in double precision) and logits.
/// </summary>
internal static class TopCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model(required: false);
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var text = new Option<string>("--text", "-t") { Description = "The text whose next token is predicted.", Required = true };
        var k = new Option<int>("--k", "-k") { Description = "How many tokens to list (default 5).", DefaultValueFactory = _ => 5 };
        var json = CliJson.Option("the tokens ({\"tokens\": N, \"top\": [{\"id\", \"text\", \"probability\", \"logit\"}]})");
        var command = new Command("top", "The most likely next tokens after a text, with their probabilities.") { model, backend, weights, text, k, json };
        command.SetAction(async (parse, cancellation) =>
        {
            var count = parse.GetValue(k);
            if (count < 1) throw new UsageException($"--k must be at least 1, not {count}");
            using var input = await TextInput.LoadAsync(context, parse, model, backend, weights, parse.GetValue(text)!, cancellation);
            var (lm, tokenizer, ids) = (input.Model, input.Tokenizer, input.Ids);

            var logits = lm.Forward(TokenBatch.FromIds(ids)).Logits.Row(0, ids.Length - 1);
            var probabilities = Softmax(logits);
            var best = Enumerable.Range(0, logits.Length).OrderByDescending(i => probabilities[i]).ThenBy(i => i).Take(Math.Min(count, logits.Length)).ToArray();

            if (parse.GetValue(json))
            {
                var top = new List<Dictionary<string, object?>>(best.Length);
                foreach (var id in best)
                    top.Add(new() { ["id"] = id, ["text"] = TokenLabels.Text(tokenizer, id), ["probability"] = probabilities[id], ["logit"] = logits[id] });
                CliJson.Write(context.Out, new Dictionary<string, object?> { ["tokens"] = ids.Length, ["top"] = top });
                return CliApp.Success;
            }
            var n = CultureInfo.InvariantCulture;
            context.Out.WriteLine($"after {TokenLabels.Quoted(input.Text)} ({ids.Length} tokens), the next token:");
            context.Out.WriteLine("rank  token         id  probability   logit");
            for (var r = 0; r < best.Length; r++)
            {
                var id = best[r];
                context.Out.WriteLine(string.Create(n, $"{r + 1,4}  {TokenLabels.Quoted(TokenLabels.Text(tokenizer, id)),-10} {id,5}  {probabilities[id],11:F6}  {logits[id],6:F3}"));
            }
            return CliApp.Success;
        });
        return command;
    }

    /// <summary>softmax(x) in double precision: exp(x − max) / Σ exp(x − max).</summary>
    internal static double[] Softmax(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (var x in logits) max = Math.Max(max, x);
        var p = new double[logits.Length];
        double sum = 0;
        for (var i = 0; i < p.Length; i++) sum += p[i] = Math.Exp(logits[i] - max);
        for (var i = 0; i < p.Length; i++) p[i] /= sum;
        return p;
    }
}
