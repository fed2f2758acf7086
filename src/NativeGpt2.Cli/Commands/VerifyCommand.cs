using System.CommandLine;
using System.Globalization;
using NativeGpt2.Verification;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 verify --model SPEC --reference FILE [--tolerance X] [--json]</c>: runs the reference's inputs and
/// compares every tensor both have; exit code 0 only if all are within the tolerance.
/// </summary>
internal static class VerifyCommand
{
    /// <summary>Default absolute tolerance: what Hugging Face's own model tests use for logits.</summary>
    public const double DefaultTolerance = 1e-4;

    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var reference = new Option<FileInfo>("--reference", "-r") { Description = "Reference activations (safetensors) with input_ids.", Required = true };
        var tolerance = new Option<double>("--tolerance", "-t")
        {
            Description = $"Largest allowed absolute difference (default {DefaultTolerance.ToString(CultureInfo.InvariantCulture)}).",
            DefaultValueFactory = _ => DefaultTolerance,
        };
        var json = CliJson.Option("the comparisons ({\"ok\", \"tolerance\", \"tensors\": [{\"name\", \"compared\", \"max_abs_diff\", \"max_rel_diff\", \"ok\", \"first_mismatch\"}]})");
        var command = new Command("verify", "Compare a model's activations with a reference file, tensor by tensor.") { model, backend, weights, reference, tolerance, json };
        command.SetAction(async (parse, cancellation) =>
        {
            var limit = parse.GetValue(tolerance);
            if (!(limit >= 0) || double.IsInfinity(limit))
                throw new UsageException($"--tolerance must be a finite number >= 0, got {limit.ToString(CultureInfo.InvariantCulture)}");
            var referenceFile = parse.GetValue(reference)!;
            if (!referenceFile.Exists) throw new FileNotFoundException($"reference file {referenceFile.FullName} does not exist");

            using var lm = await Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation);
            var rows = ReferenceVerifier.Verify(lm, referenceFile.FullName, limit);
            if (rows.Count == 0)
                throw new NativeGpt2Exception("the reference holds no tensor this model computes (hidden_states.*, layerN.*, attentions.*, logits, logits_at_positions, next_token_logprob)");
            if (parse.GetValue(json)) WriteJson(lm, rows, limit, context.Out);
            else Print(rows, limit, context.Out);
            return rows.All(r => r.Ok) ? CliApp.Success : CliApp.BadInput;
        });
        return command;
    }

    private static void WriteJson(Gpt2CausalLM lm, IReadOnlyList<TensorComparison> rows, double tolerance, TextWriter o) =>
        CliJson.Write(o, new Dictionary<string, object?>
        {
            ["model"] = lm.Source,
            ["backend"] = lm.Backend.Name,
            ["tolerance"] = tolerance,
            ["ok"] = rows.All(r => r.Ok),
            ["tensors"] = rows.Select(r => new Dictionary<string, object?>
            {
                ["name"] = r.Name, ["compared"] = r.Compared, ["max_abs_diff"] = r.MaxAbsDiff, ["max_rel_diff"] = r.MaxRelDiff,
                ["ok"] = r.Ok, ["first_mismatch"] = r.FirstMismatch,
            }).ToArray(),
        });

    private static void Print(IReadOnlyList<TensorComparison> rows, double tolerance, TextWriter o)
    {
        var n = CultureInfo.InvariantCulture;
        var width = Math.Max(6, rows.Max(r => r.Name.Length));
        o.WriteLine($"{"tensor".PadRight(width)}  {"max_abs_diff",12}  {"max_rel_diff",12}  ok");
        foreach (var row in rows)
        {
            o.WriteLine(string.Create(n, $"{row.Name.PadRight(width)}  {row.MaxAbsDiff,12:E3}  {row.MaxRelDiff,12:E3}  {(row.Ok ? "ok" : "FAIL")}"));
            if (!row.Ok) o.WriteLine($"{"".PadRight(width)}  first mismatch {row.FirstMismatch}");
        }
        var failed = rows.Count(r => !r.Ok);
        o.WriteLine(failed == 0
            ? $"all {rows.Count} tensors within {tolerance.ToString(n)}"
            : $"{failed} of {rows.Count} tensors exceed {tolerance.ToString(n)}");
    }
}
