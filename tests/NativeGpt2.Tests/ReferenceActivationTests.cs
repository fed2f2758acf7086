using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;
using Xunit.Abstractions;

namespace NativeGpt2.Tests;

/// <summary>
/// Every case in reference-data/refs, on every model and layout: embeddings, every layer's
/// intermediates, attention probabilities, final hidden states, logits and next-token log-probs
/// against float64 activations from Hugging Face transformers.
/// </summary>
public class ReferenceActivationTests(ITestOutputHelper output)
{
    public static TheoryData<string, string, double> Cases()
    {
        var data = new TheoryData<string, string, double>();
        string[] tinyCases = ["single", "batch", "left_padded", "full_context"];
        foreach (var c in tinyCases)
        {
            // tiny's weights in every layout share tiny's references.
            data.Add("tiny", $"tiny.{c}", Tolerances.SmallModel);
            data.Add("tiny-hub", $"tiny.{c}", Tolerances.SmallModel);
            data.Add("tiny-sharded", $"tiny.{c}", Tolerances.SmallModel);
            data.Add("tiny-fp16", $"tiny.{c}", Tolerances.Float16Weights);
            data.Add("tiny-bf16", $"tiny.{c}", Tolerances.BFloat16Weights);
            data.Add("tiny-untied", $"tiny-untied.{c}", Tolerances.SmallModel);
            data.Add("odd", $"odd.{c}", Tolerances.SmallModel);
        }
        foreach (var c in new[] { "prompt0", "prompt1", "prompt2", "long1024" })
            data.Add("gpt2-mini", $"gpt2-mini.{c}", Tolerances.SmallModel);
        data.Add("shakespeare-char", "shakespeare-char.romeo", Tolerances.SmallModel);
        data.Add("synthetic:gpt2", "synthetic-124M", Tolerances.Synthetic124M);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_reference_activations(string model, string referenceCase, double tolerance)
    {
        var reference = ReferenceFile.Load(Paths.Ref($"{referenceCase}.safetensors"));
        var rows = ReferenceVerifier.Verify(Models.Get(model), reference, tolerance);

        foreach (var row in rows)
            output.WriteLine($"{row.Name,-24} compared {row.Compared,9}  max abs {row.MaxAbsDiff:E2}  max rel {row.MaxRelDiff:E2}  {(row.Ok ? "ok" : "FAIL " + row.FirstMismatch)}");

        // Every activation in the reference must have been computed and compared, not silently skipped.
        var activations = reference.Tensors.Keys.Where(IsActivation).OrderBy(n => n).ToList();
        Assert.Equal(activations, rows.Select(r => r.Name).OrderBy(n => n).ToList());
        Assert.All(rows, row => Assert.True(row.Compared > 0, $"{row.Name}: nothing compared"));
        var failures = rows.Where(r => !r.Ok).Select(r => $"{r.Name}: max abs diff {r.MaxAbsDiff:E3} > {tolerance:E1}, first mismatch at {r.FirstMismatch}").ToList();
        Assert.True(failures.Count == 0, $"{model} on {referenceCase}:\n" + string.Join("\n", failures));
    }

    private static bool IsActivation(string name) =>
        name.StartsWith("hidden_states.") || name.StartsWith("layer") || name.StartsWith("attentions.")
        || name is "logits" or "logits_at_positions" or "next_token_logprob";
}
