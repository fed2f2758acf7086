using System.CommandLine;
using System.Globalization;
using NativeGpt2.Verification;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 verify --model SPEC --reference FILE [--tolerance X]</c>: runs the reference's inputs and
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
        var command = new Command("verify", "Compare a model's activations with a reference file, tensor by tensor.") { model, backend, weights, reference, tolerance };
        command.SetAction(async (parse, cancellation) =>
        {
            var limit = parse.GetValue(tolerance);
            if (!(limit >= 0) || double.IsInfinity(limit))
                throw new UsageException($"--tolerance must be a finite number >= 0, got {limit.ToString(CultureInfo.InvariantCulture)}");
            var referenceFile = parse.GetValue(reference)!;
            if (!referenceFile.Exists) throw new FileNotFoundException($"reference file {referenceFile.FullName} does not exist");

            using var lm = await Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation);
            var rows = ReferenceVerifier.Verify(lm, referenceFile.FullName, limit);
            return Print(rows, limit, context.Out);
        });
        return command;
    }

    private static int Print(IReadOnlyList<TensorComparison> rows, double tolerance, TextWriter o)
    {
        var n = CultureInfo.InvariantCulture;
        if (rows.Count == 0)
            throw new NativeGpt2Exception("the reference holds no tensor this model computes (hidden_states.*, layerN.*, attentions.*, logits, logits_at_positions, next_token_logprob)");
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
        return failed == 0 ? CliApp.Success : CliApp.BadInput;
    }
}
