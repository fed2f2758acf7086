using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary>Scoring on every backend: the trained model's reference log-likelihoods, and the listed alternatives.</summary>
[Collection(IlgpuAccelerators.Name)]
public class ScoringOnEveryBackendTests
{
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Validation_windows_reproduce_the_reference_mean_nll(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        var reference = ReferenceFile.Load(Paths.Ref("shakespeare-char.val_windows.safetensors"));
        var ids = reference["input_ids"].AsInt32();
        var expectedNll = reference["nll"].Values;
        int windows = reference["input_ids"].Shape[0], length = reference["input_ids"].Shape[1];

        // ILGPU's simulated GPU runs an OS thread per GPU thread: there, the first 96 tokens of two windows (a token's
        // log-probability depends only on the tokens before it, so they are the reference's first 95 values); elsewhere,
        // all eight windows whole.
        var (scored, prefix) = backend == TestBackends.IlgpuCpu ? (2, 96) : (windows, length);
        var total = 0.0;
        for (var w = 0; w < scored; w++)
        {
            var result = model.ScoreIds(ids[(w * length)..(w * length + prefix)]);
            Assert.Equal(prefix - 1, result.TokenCount);
            for (var t = 0; t < prefix - 1; t++)
                Assert.True(Math.Abs(-result.TokenLogProbs[t] - expectedNll[w * (length - 1) + t]) < 1e-4, $"window {w} token {t + 1}");
            total += result.MeanNll * result.TokenCount;
        }
        if (scored < windows) return;
        var meanNll = total / (windows * (length - 1));
        Assert.Equal(reference["mean_nll"].Values[0], meanNll, 1e-4);
        Assert.Equal(1.22097, meanNll, 1e-4);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Asked_for_alternatives_each_scored_token_lists_them_and_keeps_its_log_probability(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        var ids = model.Tokenizer!.Encode(Paths.ShakespeareValidationText[..60]);
        // Windows of 48 advancing by 32, so that the list is filled across windows as the values are.
        var windows = new ScoreOptions { Context = 48, Stride = 32 };
        var plain = model.ScoreIds(ids, windows);
        var listed = model.ScoreIds(ids, windows with { TopLogProbs = 4 });
        Assert.Null(plain.Tokens);
        var tokens = listed.Tokens!;
        Assert.Equal(ids.Skip(1), tokens.Select(t => t.Id));
        Assert.Equal(listed.TokenLogProbs, tokens.Select(t => t.LogProb));
        for (var i = 0; i < tokens.Count; i++)
        {
            // Computed in double from the logits rather than by the backend's float log-softmax: the same to about 1e-6.
            Assert.Equal(plain.TokenLogProbs[i], tokens[i].LogProb, 4);
            var top = tokens[i].Top;
            Assert.Equal(4, top.Count);
            for (var k = 1; k < top.Count; k++) Assert.True(top[k - 1].LogProb >= top[k].LogProb);
            Assert.True(top[0].LogProb >= tokens[i].LogProb);
            // The token is among the alternatives exactly when it is at least as likely as the last of them.
            var among = top.FirstOrDefault(a => a.Id == tokens[i].Id);
            if (tokens[i].LogProb > top[^1].LogProb) Assert.Equal(tokens[i].LogProb, among.LogProb);
            if (tokens[i].LogProb < top[^1].LogProb) Assert.DoesNotContain(top, a => a.Id == tokens[i].Id);
        }
        Assert.Equal(plain.MeanNll, listed.MeanNll, 5);
    }
}
