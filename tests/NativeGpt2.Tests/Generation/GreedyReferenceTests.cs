using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary>Greedy decoding with the KV cache reproduces Hugging Face's <c>generate</c>.</summary>
[Collection(IlgpuAccelerators.Name)]
public class GreedyReferenceTests
{
    /// <summary>A step whose top-1/top-2 logit gap is below this may legitimately differ: float32 rounding can flip it.</summary>
    private const double DecisiveMargin = 1e-3;

    /// <summary>
    /// Every greedy reference on every backend (the full-size one not on ILGPU's simulated GPU, which is too slow for it), and
    /// the smallest on the GPU-shaped simulator.
    /// </summary>
    public static TheoryData<string, string, string, string> GreedyCases()
    {
        var data = new TheoryData<string, string, string, string>();
        foreach (var backend in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu, TestBackends.Cuda })
        {
            data.Add(backend, "tiny", "tiny.greedy", "");
            data.Add(backend, "tiny-untied", "tiny-untied.greedy", "");
            data.Add(backend, "odd", "odd.greedy", "");
            data.Add(backend, "gpt2-mini", "gpt2-mini.greedy", "");
            if (backend != TestBackends.IlgpuCpu) data.Add(backend, "synthetic:gpt2", "synthetic-124M", "greedy.");
        }
        // The kernels as a GPU runs them (warps of 32, two groups at once): batched prompts through prefill and decoding.
        data.Add(TestBackends.IlgpuCpuWarp32, "tiny", "tiny.greedy", "");
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(GreedyCases))]
    public void Greedy_decoding_reproduces_the_reference_sequences(string backend, string model, string referenceCase, string prefix)
    {
        TestBackends.SkipIfUnavailable(backend);
        var reference = ReferenceFile.Load(Paths.Ref($"{referenceCase}.safetensors"));
        var prompts = Rows(reference[prefix + "prompt_ids"]);
        var sequences = Rows(reference[prefix + "sequences"]);
        var margins = reference[prefix + "top2_margin"];
        // The GPU-shaped simulator (warps of 32, an OS thread per GPU thread) checks the first eight steps.
        var width = margins.Shape[1];
        var steps = backend == TestBackends.IlgpuCpuWarp32 ? Math.Min(8, width) : width;

        var options = new GenerationOptions { Greedy = true, MaxNewTokens = steps, StopAtEndOfText = false };
        var results = Models.Get(model, backend).GenerateIds(prompts, options);

        var compared = 0;
        for (var b = 0; b < prompts.Length; b++)
        {
            Assert.Equal(steps, results[b].GeneratedIds.Count);
            for (var s = 0; s < steps; s++)
            {
                var expected = sequences[b][prompts[b].Length + s];
                var actual = results[b].GeneratedIds[s];
                var margin = margins.Values[b * width + s];
                if (actual != expected)
                {
                    // A near-tie may flip; after it the two continuations are no longer comparable.
                    Assert.True(margin <= DecisiveMargin,
                        $"{model} row {b} step {s}: generated {actual}, reference {expected}, although the reference margin is {margin:E2}");
                    break;
                }
                compared++;
            }
        }
        Assert.True(compared >= prompts.Length * steps / 2, $"only {compared} steps were comparable");
    }

    /// <summary>
    /// The trained model's 100 greedy tokens after "ROMEO:\n" (recomputed in float64 with a full forward at
    /// every step; its smallest top-2 margin is 0.0072, far above float32 error), so every token must match.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Shakespeare_romeo_greedy_reproduces_all_100_reference_tokens_with_the_kv_cache(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var (prompt, expected) = RomeoReference();
        var model = Models.Get("shakespeare-char", backend);

        var result = model.GenerateIds(prompt, new GenerationOptions { Greedy = true, MaxNewTokens = expected.Length, StopAtEndOfText = false });

        Assert.Equal(expected, result.GeneratedIds);
        Assert.StartsWith("I will not see thee to thee to thee.", model.Tokenizer!.Decode(result.GeneratedIds));
    }

    [Fact]
    public void Shakespeare_romeo_greedy_reproduces_all_100_reference_tokens_with_uncached_full_forwards()
    {
        var (prompt, expected) = RomeoReference();
        var model = Models.Get("shakespeare-char");

        // Every token is the argmax of a full forward over everything so far: no cache involved.
        var tokens = prompt.ToList();
        for (var s = 0; s < expected.Length; s++)
        {
            var row = model.Head.ForwardLast(model.Backbone.Forward(TokenBatch.FromIds(tokens)).LastHiddenState).Row(0).ToArray();
            var id = Array.IndexOf(row, row.Max());
            Assert.True(expected[s] == id, $"step {s}: full forward picks {id}, reference {expected[s]}");
            tokens.Add(id);
        }
    }

    [Fact]
    public void Shakespeare_romeo_greedy_reproduces_all_100_reference_tokens_through_the_cli()
    {
        var (prompt, expected) = RomeoReference();
        var tokenizer = Models.Get("shakespeare-char").Tokenizer!;
        Assert.Equal(prompt, tokenizer.Encode("ROMEO:\n"));

        var result = CliRunner.Run("generate", "--prompt", "ROMEO:\n", "--greedy", "--max-new-tokens", "100");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("ROMEO:\n" + tokenizer.Decode(expected) + Environment.NewLine, result.Out);
    }

    [Fact]
    public void The_greedy_output_quoted_in_the_readme_is_what_the_cli_prints()
    {
        var readme = File.ReadAllText(Path.Combine(Paths.Repository, "README.md")).ReplaceLineEndings("\n");
        var block = readme[readme.IndexOf("<!-- greedy-output -->", StringComparison.Ordinal)..];
        var start = block.IndexOf("```text\n", StringComparison.Ordinal) + "```text\n".Length;
        var quoted = block[start..block.IndexOf("\n```", start, StringComparison.Ordinal)];

        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "--greedy", "--max-new-tokens", "100");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(quoted, result.Out.TrimEnd('\n', '\r').ReplaceLineEndings("\n"));
    }

    /// <summary>The romeo file's prompt and its 100 greedy continuation tokens.</summary>
    private static (int[] Prompt, int[] Continuation) RomeoReference()
    {
        var reference = ReferenceFile.Load(Paths.Ref("shakespeare-char.romeo.safetensors"));
        var prompt = reference["input_ids"].AsInt32();
        var sequence = reference["greedy.sequences"].AsInt32();
        Assert.Equal(prompt, sequence[..prompt.Length]);
        return (prompt, sequence[prompt.Length..]);
    }

    private static int[][] Rows(ReferenceTensor tensor)
    {
        var values = tensor.AsInt32();
        var width = tensor.Shape[1];
        return Enumerable.Range(0, tensor.Shape[0]).Select(b => values[(b * width)..((b + 1) * width)]).ToArray();
    }
}
