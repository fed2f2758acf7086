using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

[Collection(IlgpuAccelerators.Name)]
public class KvCacheProperties
{
    /// <summary>
    /// For random prompts and step counts, decoding one token at a time through the cache gives the
    /// logits a full forward gives at the same position.
    /// </summary>
    [Property(MaxTest = 40)]
    public Property Cached_decoding_equals_the_full_forward() =>
        Prop.ForAll((from backend in Gen.Elements(TestBackends.Available)
                     from model in Gen.Elements("tiny", "odd", "tiny-untied")
                     from promptLength in Gen.Choose(1, 12)
                     from steps in Gen.Choose(1, 12)
                     from seed in Gen.Choose(0, int.MaxValue)
                     select (backend, model, promptLength, steps, seed)).ToArbitrary(), c =>
        {
            var (backend, name, promptLength, steps, seed) = c;
            var model = Models.Get(name, backend);
            var random = new Random(seed);
            var tokens = Enumerable.Range(0, promptLength + steps).Select(_ => random.Next(model.Config.VocabSize)).ToArray();

            var full = model.Forward(TokenBatch.FromIds(tokens)).Logits;

            using var cache = model.CreateCache(1);
            var prefill = model.Forward(TokenBatch.FromIds(tokens[..promptLength]), cache: cache).Logits;
            Numerics.AssertClose(full.Row(0, promptLength - 1).ToArray(), prefill.Row(0, promptLength - 1).ToArray(), Tolerances.CachedDecoding, "prefill");
            for (var t = promptLength; t < tokens.Length; t++)
            {
                var step = model.Forward(TokenBatch.FromIds([tokens[t]]), cache: cache).Logits;
                Numerics.AssertClose(full.Row(0, t).ToArray(), step.Row(0, 0).ToArray(), Tolerances.CachedDecoding, $"{name} on {backend} position {t}");
            }
            Assert.Equal(tokens.Length, cache.Length);
        });
}

public class KvCacheTests
{
    [Fact]
    public void Truncate_rolls_back_to_an_earlier_point()
    {
        var model = Models.Get("odd");
        int[] prompt = [5, 9, 2, 7, 1, 1000, 3];
        var cache = model.CreateCache(1);
        model.Forward(TokenBatch.FromIds(prompt), cache: cache);
        var first = model.Forward(TokenBatch.FromIds([42]), cache: cache).Logits.Data;
        model.Forward(TokenBatch.FromIds([17]), cache: cache);
        model.Forward(TokenBatch.FromIds([99]), cache: cache);

        cache.Truncate(prompt.Length);
        Assert.Equal(prompt.Length, cache.Length);
        Assert.Equal(first, model.Forward(TokenBatch.FromIds([42]), cache: cache).Logits.Data);
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(cache.Length + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(-1));
    }
}
