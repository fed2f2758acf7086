using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary>Greedy decoding with the KV cache reproduces Hugging Face's <c>generate</c>.</summary>
public class GreedyReferenceTests
{
    /// <summary>A step whose top-1/top-2 logit gap is below this may legitimately differ: float32 rounding can flip it.</summary>
    private const double DecisiveMargin = 1e-3;

    [Theory]
    [InlineData("tiny", "tiny.greedy", "")]
    [InlineData("tiny-untied", "tiny-untied.greedy", "")]
    [InlineData("odd", "odd.greedy", "")]
    [InlineData("gpt2-mini", "gpt2-mini.greedy", "")]
    [InlineData("synthetic:gpt2", "synthetic-124M", "greedy.")]
    public void Greedy_decoding_reproduces_the_reference_sequences(string model, string referenceCase, string prefix)
    {
        var reference = ReferenceFile.Load(Paths.Ref($"{referenceCase}.safetensors"));
        var prompts = Rows(reference[prefix + "prompt_ids"]);
        var sequences = Rows(reference[prefix + "sequences"]);
        var margins = reference[prefix + "top2_margin"];
        var steps = margins.Shape[1];

        var options = new GenerationOptions { Greedy = true, MaxNewTokens = steps, StopAtEndOfText = false };
        var results = Models.Get(model).GenerateIds(prompts, options);

        var compared = 0;
        for (var b = 0; b < prompts.Length; b++)
        {
            Assert.Equal(steps, results[b].GeneratedIds.Count);
            for (var s = 0; s < steps; s++)
            {
                var expected = sequences[b][prompts[b].Length + s];
                var actual = results[b].GeneratedIds[s];
                var margin = margins.Values[b * steps + s];
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

    [Fact]
    public void Shakespeare_romeo_greedy_follows_the_reference_logits_and_the_uncached_forward()
    {
        var reference = ReferenceFile.Load(Paths.Ref("shakespeare-char.romeo.safetensors"));
        var prompt = reference["input_ids"].AsInt32();
        var logits = reference["logits"].AsFloat32();
        var V = reference["logits"].Shape[2];
        var model = Models.Get("shakespeare-char");

        var result = model.GenerateIds(prompt, new GenerationOptions { Greedy = true, MaxNewTokens = 100, StopAtEndOfText = false });

        // The first token is the argmax of the reference logits at the last prompt position.
        var last = logits[((prompt.Length - 1) * V)..(prompt.Length * V)];
        Assert.Equal(Array.IndexOf(last, last.Max()), result.GeneratedIds[0]);

        // Every later token is what a full forward over everything so far (no cache) picks.
        var tokens = prompt.ToList();
        foreach (var id in result.GeneratedIds)
        {
            var row = model.Head.ForwardLast(model.Backbone.Forward(TokenBatch.FromIds(tokens)).LastHiddenState).Row(0).ToArray();
            Assert.Equal(Array.IndexOf(row, row.Max()), id);
            tokens.Add(id);
        }
        Assert.Equal(model.Tokenizer!.Decode(result.GeneratedIds), model.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 100 }).Text);
    }

    /// <summary>
    /// The romeo file's greedy sequence cannot come from the weights its own logits come from: at the first
    /// step its logits rank token 21 ('I') first by 0.12, while its greedy sequence takes token 32 ('T') with
    /// a stated margin of 0.19. No float32 engine can match both; this engine matches the logits (within
    /// 5e-6). This test pins that contradiction down so a corrected reference is noticed and checked exactly.
    /// </summary>
    [Fact]
    public void Shakespeare_romeo_greedy_reference_contradicts_the_files_own_logits()
    {
        var reference = ReferenceFile.Load(Paths.Ref("shakespeare-char.romeo.safetensors"));
        var prompt = reference["input_ids"].AsInt32();
        var logits = reference["logits"].AsFloat32();
        var V = reference["logits"].Shape[2];
        var last = logits[((prompt.Length - 1) * V)..(prompt.Length * V)];
        var referenceFirst = reference["greedy.sequences"].AsInt32()[prompt.Length];
        var margin = reference["greedy.top2_margin"].Values[0];

        Assert.Equal(32, referenceFirst);
        Assert.Equal(21, Array.IndexOf(last, last.Max()));
        Assert.True(last[21] - last[referenceFirst] > 0.3 && margin > 0.1,
            "if this fails the reference was regenerated: compare all 100 greedy tokens exactly instead");
    }

    private static int[][] Rows(ReferenceTensor tensor)
    {
        var values = tensor.AsInt32();
        var width = tensor.Shape[1];
        return Enumerable.Range(0, tensor.Shape[0]).Select(b => values[(b * width)..((b + 1) * width)]).ToArray();
    }
}
