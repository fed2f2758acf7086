using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using NativeGpt2.Weights;
using Xunit;
using Xunit.Abstractions;

namespace NativeGpt2.Tests;

/// <summary>
/// Every case in reference-data/refs, on every model and layout: embeddings, every layer's
/// intermediates, attention probabilities, final hidden states, logits and next-token log-probs
/// against float64 activations from Hugging Face transformers.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class ReferenceActivationTests(ITestOutputHelper output)
{
    public static TheoryData<string, string, double> Cases() => CasesOn(includeLong: true);

    private static TheoryData<string, string, double> CasesOn(bool includeLong)
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
        foreach (var c in new[] { "prompt0", "prompt1", "prompt2" })
            data.Add("gpt2-mini", $"gpt2-mini.{c}", Tolerances.SmallModel);
        if (includeLong) data.Add("gpt2-mini", "gpt2-mini.long1024", Tolerances.SmallModel);
        data.Add("shakespeare-char", "shakespeare-char.romeo", Tolerances.SmallModel);
        if (includeLong) data.Add("synthetic:gpt2", "synthetic-124M", Tolerances.Synthetic124M);
        return data;
    }

    /// <summary>
    /// Every case on the ILGPU backends; on its CPU accelerator the 1,024-token and full-size cases run in
    /// the Slow category (<see cref="Matches_the_long_references_on_the_ilgpu_cpu_accelerator"/>).
    /// </summary>
    public static TheoryData<string, string, string, double> BackendCases()
    {
        var data = new TheoryData<string, string, string, double>();
        foreach (var backend in new[] { TestBackends.IlgpuCpu, TestBackends.Cuda })
        {
            foreach (var row in CasesOn(includeLong: backend == TestBackends.Cuda))
                data.Add(backend, (string)row[0], (string)row[1], Tolerances.OnBackend(backend, (double)row[2]));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_reference_activations(string model, string referenceCase, double tolerance) =>
        Check(TestBackends.Cpu, model, referenceCase, tolerance);

    /// <summary>Every case with the weight matrices converted at load to each format, within that format's bound.</summary>
    public static TheoryData<string, string, WeightFormat, double> FormatCases()
    {
        var data = new TheoryData<string, string, WeightFormat, double>();
        foreach (var format in new[] { WeightFormat.F32, WeightFormat.F16, WeightFormat.BF16, WeightFormat.Q8 })
        {
            foreach (var row in Cases())
                data.Add((string)row[0], (string)row[1], format, Tolerances.InFormat(format, (double)row[2]));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(FormatCases))]
    public void Matches_reference_activations_in_every_weight_format(string model, string referenceCase, WeightFormat format, double tolerance) =>
        Check(TestBackends.Cpu, model, referenceCase, tolerance, format);

    /// <summary>
    /// The short cases of every model and layout with the CPU backend forced to each SIMD width, so that the paths this
    /// machine does not take by default (Vector256 on AVX-512, Vector128 as on Arm64, scalar) run the whole model too.
    /// </summary>
    public static TheoryData<string, string, string, double> WidthCases()
    {
        var data = new TheoryData<string, string, string, double>();
        foreach (var width in TestBackends.CpuWidths)
        {
            foreach (var row in CasesOn(includeLong: false))
                data.Add(width, (string)row[0], (string)row[1], (double)row[2]);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(WidthCases))]
    public void Matches_reference_activations_at_every_cpu_vector_width(string backend, string model, string referenceCase, double tolerance) =>
        Check(backend, model, referenceCase, tolerance);

    [SkippableTheory]
    [MemberData(nameof(BackendCases))]
    public void Matches_reference_activations_on_the_ilgpu_backends(string backend, string model, string referenceCase, double tolerance)
    {
        TestBackends.SkipIfUnavailable(backend);
        Check(backend, model, referenceCase, tolerance);
    }

    /// <summary>
    /// A whole forward pass with a CUDA device's group sizes (<see cref="TestBackends.IlgpuCpuCudaShaped"/>), over the
    /// real GPT-2 vocabulary's 50,257 logits a position (the slowest simulator: one case).
    /// </summary>
    [Fact]
    public void Matches_reference_activations_with_a_CUDA_device_s_group_sizes() =>
        Check(TestBackends.IlgpuCpuCudaShaped, "gpt2-mini", "gpt2-mini.prompt0", Tolerances.SmallModel);

    /// <summary>
    /// The 1,024-token gpt2-mini case (its next-token log-probs need 1,024 × 50,257 logits) and the
    /// full-size model on ILGPU's CPU accelerator, which simulates every GPU thread with an OS thread:
    /// minutes, so a category of their own (<c>dotnet test --filter Category=Slow</c>).
    /// </summary>
    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("gpt2-mini", "gpt2-mini.long1024", Tolerances.SmallModel)]
    [InlineData("synthetic:gpt2", "synthetic-124M", Tolerances.Synthetic124M)]
    public void Matches_the_long_references_on_the_ilgpu_cpu_accelerator(string model, string referenceCase, double tolerance) =>
        Check(TestBackends.IlgpuCpu, model, referenceCase, tolerance);

    private void Check(string backend, string model, string referenceCase, double tolerance, WeightFormat? format = null)
    {
        var reference = ReferenceFile.Load(Paths.Ref($"{referenceCase}.safetensors"));
        var lm = Models.Get(model, backend, format);
        if (format is { } f) Assert.All(lm.Backbone.Weights.All.Where(w => w.Shape.Length == 2 && w.Name != "wpe.weight"), w => Assert.Equal(f, w.Format));
        var rows = ReferenceVerifier.Verify(lm, reference, tolerance);

        foreach (var row in rows)
            output.WriteLine($"{row.Name,-24} compared {row.Compared,9}  max abs {row.MaxAbsDiff:E2}  max rel {row.MaxRelDiff:E2}  {(row.Ok ? "ok" : "FAIL " + row.FirstMismatch)}");

        // Every activation in the reference must have been computed and compared, not silently skipped.
        var activations = reference.Tensors.Keys.Where(IsActivation).OrderBy(n => n).ToList();
        Assert.Equal(activations, rows.Select(r => r.Name).OrderBy(n => n).ToList());
        Assert.All(rows, row => Assert.True(row.Compared > 0, $"{row.Name}: nothing compared"));
        var failures = rows.Where(r => !r.Ok).Select(r => $"{r.Name}: max abs diff {r.MaxAbsDiff:E3} > {tolerance:E1}, first mismatch at {r.FirstMismatch}").ToList();
        Assert.True(failures.Count == 0, $"{model} on {referenceCase} ({backend}, weights {format?.ToString() ?? "as stored"}):\n" + string.Join("\n", failures));
    }

    private static bool IsActivation(string name) =>
        name.StartsWith("hidden_states.") || name.StartsWith("layer") || name.StartsWith("attentions.")
        || name is "logits" or "logits_at_positions" or "next_token_logprob";
}
