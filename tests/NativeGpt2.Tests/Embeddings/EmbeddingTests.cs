using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Embeddings;

/// <summary>
/// Text embeddings against the float64 reference hidden states: the reference's own rows, pooled here in
/// double over the real tokens, must match what <see cref="Gpt2CausalLM.EmbedIds"/> computes.
/// </summary>
public class EmbeddingTests
{
    /// <summary>Reference cases with several rows; left_padded masks some of them.</summary>
    public static TheoryData<string, string> Cases() => new()
    {
        { "tiny", "tiny.batch" },
        { "tiny", "tiny.left_padded" },
        { "odd", "odd.left_padded" },
        { "gpt2-mini", "gpt2-mini.prompt1" },
        { "shakespeare-char", "shakespeare-char.romeo" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_pooling_and_layer_matches_the_reference_hidden_states(string modelName, string referenceCase)
    {
        var model = Models.Get(modelName);
        var reference = ReferenceFile.Load(Paths.Ref($"{referenceCase}.safetensors"));
        var (rows, T) = (reference["input_ids"].Shape[0], reference["input_ids"].Shape[^1]);
        var ids = reference["input_ids"].AsInt32();
        var mask = reference.Tensors.TryGetValue("attention_mask", out var m) ? m.AsInt32() : Enumerable.Repeat(1, ids.Length).ToArray();
        var C = model.Config.EmbeddingSize;
        // Each row's real tokens, in order (left padding removed).
        var sequences = Enumerable.Range(0, rows)
            .Select(b => Enumerable.Range(0, T).Where(t => mask[b * T + t] == 1).Select(t => ids[b * T + t]).ToArray())
            .ToArray();

        foreach (var layer in new[] { model.Config.LayerCount, 1, 0 })
        {
            var hidden = reference[$"hidden_states.{layer}"].Values;
            var mean = model.EmbedIds(sequences, new EmbeddingOptions { Layer = layer });
            var last = model.EmbedIds(sequences, new EmbeddingOptions { Layer = layer, Pooling = EmbeddingPooling.Last });
            var none = model.EmbedIds(sequences, new EmbeddingOptions { Layer = layer, Pooling = EmbeddingPooling.None });
            for (var b = 0; b < rows; b++)
            {
                var real = Enumerable.Range(0, T).Where(t => mask[b * T + t] == 1).ToArray();
                var expectedMean = Enumerable.Range(0, C).Select(c => real.Average(t => hidden[(b * T + t) * C + c])).ToArray();
                var expectedLast = Enumerable.Range(0, C).Select(c => hidden[(b * T + real[^1]) * C + c]).ToArray();
                var expectedTokens = real.SelectMany(t => Enumerable.Range(0, C).Select(c => hidden[(b * T + t) * C + c])).ToArray();
                var what = $"{referenceCase} row {b} hidden_states.{layer}";
                AssertClose(expectedMean, mean[b].Vectors, what + " mean");
                AssertClose(expectedLast, last[b].Vectors, what + " last");
                AssertClose(expectedTokens, none[b].Vectors, what + " per token");
                Assert.Equal((1, real.Length), (mean[b].Rows, mean[b].TokenCount));
                Assert.Equal(real.Length, none[b].Rows);
            }
        }
    }

    [Fact]
    public void A_batch_gives_exactly_what_each_text_gives_alone()
    {
        var model = Models.Get("gpt2-mini");
        string[] texts = ["The meaning of life is", "Hello", "In 1999, the city of Paris had", "Hello"];
        foreach (var pooling in Enum.GetValues<EmbeddingPooling>())
        {
            var options = new EmbeddingOptions { Pooling = pooling, Normalize = true, BatchSize = 3 };
            var batched = model.Embed(texts, options);
            for (var i = 0; i < texts.Length; i++)
                Assert.Equal(model.Embed(texts[i], options).Vectors, batched[i].Vectors);
        }
    }

    [Fact]
    public void Normalized_vectors_have_unit_length_and_point_the_same_way()
    {
        var model = Models.Get("shakespeare-char");
        var plain = model.Embed("ROMEO:\nWhat light");
        var unit = model.Embed("ROMEO:\nWhat light", new EmbeddingOptions { Normalize = true });
        var norm = Math.Sqrt(plain.Vectors.Sum(v => (double)v * v));
        Assert.Equal(1.0, Math.Sqrt(unit.Vectors.Sum(v => (double)v * v)), 1e-5);
        for (var c = 0; c < plain.Dimensions; c++) Assert.Equal(plain.Vectors[c] / norm, unit.Vectors[c], 1e-5);
    }

    [Fact]
    public void Bad_input_is_a_clear_error()
    {
        var model = Models.Get("shakespeare-char");
        Assert.Contains("text 1 is empty", Assert.Throws<ArgumentException>(() => model.Embed(["ROMEO", ""])).Message);
        Assert.Equal("Layer", Assert.Throws<ArgumentOutOfRangeException>(() => model.Embed("x", new EmbeddingOptions { Layer = model.Config.LayerCount + 1 })).ParamName);
        Assert.Equal("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => model.Embed("x", new EmbeddingOptions { BatchSize = 0 })).ParamName);
        var tooLong = new string('a', model.Config.ContextLength + 5);
        Assert.Contains("more than the context length", Assert.Throws<ArgumentException>(() => model.Embed(tooLong)).Message);
        var truncated = model.Embed(tooLong, new EmbeddingOptions { Truncate = true });
        Assert.Equal(model.Config.ContextLength, truncated.TokenCount);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => model.EmbedIds([[1, 99999]])).Message);
    }

    private static void AssertClose(double[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst <= Tolerances.SmallModel, $"{what}: max abs diff {worst:E2} > {Tolerances.SmallModel:E1}");
    }
}
