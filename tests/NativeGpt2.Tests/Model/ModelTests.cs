using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Model;

public class ModelTests
{
    [Fact]
    public void Logits_match_the_reference_directly()
    {
        // The same check as the verifier makes, written out by hand, so a verifier bug cannot hide a model bug.
        var reference = ReferenceFile.Load(Paths.Ref("tiny.single.safetensors"));
        var ids = reference["input_ids"].AsInt32();
        var logits = Models.Get("tiny").Forward(TokenBatch.FromIds(ids)).Logits;
        Assert.Equal(reference["logits"].Shape, logits.Shape);
        Numerics.AssertClose(reference["logits"].AsFloat32(), logits.Data, Tolerances.SmallModel, "tiny single logits");
    }

    [Fact]
    public void Backbone_alone_gives_the_final_hidden_states()
    {
        var reference = ReferenceFile.Load(Paths.Ref("odd.single.safetensors"));
        var model = Models.Get("odd");
        var hidden = model.Backbone.Forward(TokenBatch.FromIds(reference["input_ids"].AsInt32()));
        Assert.Equal(new[] { 1, 16, 40 }, hidden.LastHiddenState.Shape);
        Assert.Null(hidden.HiddenStates);
        Assert.Empty(hidden.Activations);
        Numerics.AssertClose(reference["hidden_states.3"].AsFloat32(), hidden.LastHiddenState.Data, Tolerances.SmallModel, "odd final hidden");
    }

    [Fact]
    public void Hidden_states_of_every_layer_are_returned_on_request()
    {
        var model = Models.Get("odd");
        var hidden = model.Backbone.Forward(TokenBatch.FromIds([1, 2, 3]), options: new ForwardOptions { OutputHiddenStates = true });
        Assert.Equal(model.Config.LayerCount + 1, hidden.HiddenStates!.Count);
        Assert.Same(hidden.LastHiddenState, hidden.HiddenStates[^1]);
    }

    [Fact]
    public void Head_at_chosen_positions_equals_the_full_projection_there()
    {
        var model = Models.Get("odd");
        var batch = new TokenBatch([5, 9, 2, 7, 1, 1000, 3, 3, 4, 8], 2, 5);
        var hidden = model.Backbone.Forward(batch).LastHiddenState;
        var full = model.Head.Forward(hidden);
        var chosen = model.Head.Forward(hidden, [4, 1]);
        var last = model.Head.ForwardLast(hidden);
        Assert.Equal(new[] { 2, 2, 1003 }, chosen.Shape);
        Assert.Equal(new[] { 2, 1003 }, last.Shape);
        for (var b = 0; b < 2; b++)
        {
            Assert.Equal(full.Row(b, 4).ToArray(), chosen.Row(b, 0).ToArray());
            Assert.Equal(full.Row(b, 1).ToArray(), chosen.Row(b, 1).ToArray());
            Assert.Equal(full.Row(b, 4).ToArray(), last.Row(b).ToArray());
        }
    }

    [SkippableTheory]
    [MemberData(nameof(BackendNames))]
    public void Forward_into_a_kept_tensor_writes_what_forward_returns(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("odd", backend);
        var batch = new TokenBatch([5, 9, 2, 7, 1, 1000, 3, 3, 4, 8], 2, 5);
        var expected = model.Forward(batch).Logits;
        var kept = new FloatTensor(Enumerable.Repeat(float.NaN, expected.Data.Length).ToArray(), 2, 5, model.Config.VocabSize);
        var output = model.ForwardInto(batch, kept);
        Assert.Same(kept, output.Logits);
        Assert.Equal(expected.Data, kept.Data);

        // Used again, the tensor holds the new batch's logits and nothing of the first.
        var other = new TokenBatch([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 2, 5);
        model.ForwardInto(other, kept);
        Assert.Equal(model.Forward(other).Logits.Data, kept.Data);

        // With a cache, as prefill and decoding use it: the same logits as Forward with an equal cache.
        var cacheA = model.CreateCache(2);
        var cacheB = model.CreateCache(2);
        model.Forward(batch, cacheA);
        model.Forward(batch, cacheB);
        var step = new TokenBatch([11, 12], 2, 1);
        var next = new FloatTensor(new float[2 * model.Config.VocabSize], 2, 1, model.Config.VocabSize);
        model.ForwardInto(step, next, cacheB);
        Assert.Equal(model.Forward(step, cacheA).Logits.Data, next.Data);
        Assert.Equal(cacheA.Length, cacheB.Length);
    }

    [Fact]
    public void Forward_into_a_tensor_of_the_wrong_shape_is_refused_before_the_pass()
    {
        var model = Models.Get("odd");
        var V = model.Config.VocabSize;
        var cache = model.CreateCache(1);
        var batch = TokenBatch.FromIds([1, 2, 3]);
        foreach (var shape in new[] { new[] { 1, 2, V }, [3, V], [1, 3, V + 1], [3, 1, V] })
        {
            var error = Assert.Throws<ArgumentException>(() =>
                model.ForwardInto(batch, new FloatTensor(new float[shape.Aggregate(1, (a, b) => a * b)], shape), cache));
            Assert.Equal("logits", error.ParamName);
            Assert.Contains($"[1, 3, {V}]", error.Message);
        }
        Assert.Equal(0, cache.Length);
        Assert.Throws<ArgumentNullException>(() => model.ForwardInto(batch, null!));
    }

    public static TheoryData<string> BackendNames => TestBackends.All;

    [Fact]
    public void Verifier_flags_a_perturbed_reference_and_names_the_element()
    {
        var reference = ReferenceFile.Load(Paths.Ref("tiny.single.safetensors"));
        reference["layer1.mlp"].Values[37] += 1e-3;
        var rows = ReferenceVerifier.Verify(Models.Get("tiny"), reference, Tolerances.SmallModel);
        var bad = Assert.Single(rows, r => !r.Ok);
        Assert.Equal("layer1.mlp", bad.Name);
        Assert.StartsWith("[0, 1, 5]", bad.FirstMismatch); // 37 = 1·32 + 5 in a (1, 16, 32) tensor
        Assert.InRange(bad.MaxAbsDiff, 9e-4, 1.1e-3);
    }

    [Fact]
    public void Token_ids_outside_the_vocabulary_are_rejected()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Models.Get("tiny").Forward(TokenBatch.FromIds([1, 512])));
        Assert.Contains("[0, 512)", error.Message);
    }

    [Fact]
    public void Sequences_longer_than_the_context_are_rejected()
    {
        var ids = Enumerable.Repeat(1, 38).ToArray();
        Assert.Throws<ArgumentOutOfRangeException>(() => Models.Get("odd").Forward(TokenBatch.FromIds(ids)));
    }

    [Fact]
    public void Weights_built_in_memory_must_fit_the_config()
    {
        var tiny = Models.Get("tiny");
        var error = Assert.Throws<ArgumentException>(() => new Gpt2CausalLM(tiny.Config with { InnerSize = 64 }, tiny.Backbone.Weights));
        Assert.Contains("h.0.mlp.c_fc.weight: [32, 128], expected [32, 64]", error.Message);
        Assert.Throws<ArgumentException>(() => new Gpt2CausalLM(tiny.Config with { TieWordEmbeddings = false }, tiny.Backbone.Weights));
    }
}
