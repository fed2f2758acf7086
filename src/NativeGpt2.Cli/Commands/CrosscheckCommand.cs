using System.CommandLine;
using System.Globalization;
using NativeGpt2.Backends;
using NativeGpt2.Verification;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 crosscheck --model SPEC --backends cpu,ilgpu-cpu[,cuda] (--text TEXT | --ids 1,2,3) [--tolerance X] [--json]</c>:
/// the same input through each backend; for every hidden state, attention and the logits, the largest
/// absolute and relative difference between each pair. Exit 0 only when all are within the tolerance.
/// </summary>
internal static class CrosscheckCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var weights = CommonOptions.Weights();
        var backends = new Option<string>("--backends") { Description = "Backends to compare, comma-separated: cpu,ilgpu-cpu[,cuda].", Required = true };
        var text = new Option<string?>("--text") { Description = "Input text (needs the model's tokenizer)." };
        var ids = new Option<string?>("--ids") { Description = "Input token ids, comma-separated: 1,2,3." };
        var tolerance = new Option<double>("--tolerance", "-t")
        {
            Description = $"Largest allowed absolute difference (default {VerifyCommand.DefaultTolerance.ToString(CultureInfo.InvariantCulture)}).",
            DefaultValueFactory = _ => VerifyCommand.DefaultTolerance,
        };
        var json = CliJson.Option("the comparisons ({\"ok\", \"tolerance\", \"tokens\", \"backends\": [{\"name\", \"description\"}], \"comparisons\": [{\"tensor\", \"first\", \"second\", \"max_abs_diff\", \"max_rel_diff\", \"ok\"}]})");
        var command = new Command("crosscheck", "Run the same input on several backends and compare every hidden state, attention and the logits.")
        {
            model, backends, weights, text, ids, tolerance, json,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var limit = parse.GetValue(tolerance);
            if (!(limit >= 0) || double.IsInfinity(limit))
                throw new UsageException($"--tolerance must be a finite number >= 0, got {limit.ToString(CultureInfo.InvariantCulture)}");
            var names = parse.GetValue(backends)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (names.Length < 2 || names.Distinct(StringComparer.OrdinalIgnoreCase).Count() != names.Length)
                throw new UsageException("--backends: name at least two different backends, e.g. cpu,ilgpu-cpu");
            var unknown = names.FirstOrDefault(n => !BackendRegistry.Names.Contains(n, StringComparer.OrdinalIgnoreCase) || n.Equals(BackendRegistry.Auto, StringComparison.OrdinalIgnoreCase));
            if (unknown is not null)
                throw new UsageException($"--backends: '{unknown}' is not a backend (one of {string.Join(", ", BackendRegistry.Names.Where(n => n != BackendRegistry.Auto))})");
            var given = CommonOptions.ParseInput(parse.GetValue(ids), parse.GetValue(text));

            var models = new List<Gpt2CausalLM>();
            try
            {
                // The weights are read once; each further backend gets the same weights.
                var first = await Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, context.LoadOptionsOn(names[0], parse.GetValue(weights)), cancellation);
                models.Add(first);
                foreach (var name in names.Skip(1))
                {
                    var (backend, owned) = BackendRegistry.Create(name);
                    try
                    {
                        models.Add(new Gpt2CausalLM(first.Config, first.Backbone.Weights, first.Tokenizer, first.Source, backend, owned));
                    }
                    catch
                    {
                        if (owned) backend.Dispose();
                        throw;
                    }
                }
                var tokens = CommonOptions.InputTokens(first, given, parse.GetValue(text));

                var rows = CrossCheck.Run(models, TokenBatch.FromIds(tokens), limit);
                if (parse.GetValue(json)) WriteJson(models, tokens.Length, rows, limit, context.Out);
                else Print(models, tokens.Length, rows, limit, context.Out);
                return rows.All(r => r.Ok) ? CliApp.Success : CliApp.BadInput;
            }
            finally
            {
                foreach (var m in models) m.Dispose();
            }
        });
        return command;
    }

    private static void WriteJson(IReadOnlyList<Gpt2CausalLM> models, int tokens, IReadOnlyList<BackendComparison> rows, double tolerance, TextWriter o) =>
        CliJson.Write(o, new Dictionary<string, object?>
        {
            ["model"] = models[0].Source,
            ["tokens"] = tokens,
            ["tolerance"] = tolerance,
            ["ok"] = rows.All(r => r.Ok),
            ["backends"] = models.Select(m => new Dictionary<string, object?> { ["name"] = m.Backend.Name, ["description"] = m.Backend.Description }).ToArray(),
            ["comparisons"] = rows.Select(r => new Dictionary<string, object?>
            {
                ["tensor"] = r.Tensor, ["first"] = r.First, ["second"] = r.Second, ["max_abs_diff"] = r.MaxAbsDiff, ["max_rel_diff"] = r.MaxRelDiff, ["ok"] = r.Ok,
            }).ToArray(),
        });

    private static void Print(IReadOnlyList<Gpt2CausalLM> models, int tokens, IReadOnlyList<BackendComparison> rows, double tolerance, TextWriter o)
    {
        foreach (var m in models) o.WriteLine($"backend {m.Backend.Name}: {m.Backend.Description}");
        o.WriteLine($"input   {tokens} tokens");
        var n = CultureInfo.InvariantCulture;
        var width = Math.Max(6, rows.Max(r => r.Tensor.Length));
        var pairWidth = Math.Max(4, rows.Max(r => r.First.Length + r.Second.Length + 4));
        o.WriteLine($"{"tensor".PadRight(width)}  {"pair".PadRight(pairWidth)}  {"max_abs_diff",12}  {"max_rel_diff",12}  ok");
        foreach (var row in rows)
            o.WriteLine(string.Create(n, $"{row.Tensor.PadRight(width)}  {$"{row.First} vs {row.Second}".PadRight(pairWidth)}  {row.MaxAbsDiff,12:E3}  {row.MaxRelDiff,12:E3}  {(row.Ok ? "ok" : "FAIL")}"));
        var failed = rows.Count(r => !r.Ok);
        o.WriteLine(failed == 0
            ? $"all {rows.Count} comparisons within {tolerance.ToString(n)}"
            : $"{failed} of {rows.Count} comparisons exceed {tolerance.ToString(n)}");
    }
}
