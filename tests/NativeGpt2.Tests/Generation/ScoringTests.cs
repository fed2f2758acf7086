using NativeGpt2.Weights;
using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Generation;

[Collection(IlgpuAccelerators.Name)]
public class ScoringTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

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

    /// <summary>
    /// The quality cost of holding the weights in fewer bits (docs/performance.md): perplexity of the bundled model on
    /// the whole validation text, against float32's. Measured: F16 +0.0003 %, BF16 −0.005 %, Q8 +0.012 %.
    /// </summary>
    [Theory]
    [InlineData(WeightFormat.F16)]
    [InlineData(WeightFormat.BF16)]
    [InlineData(WeightFormat.Q8)]
    public void Narrower_weights_cost_almost_no_perplexity(WeightFormat format)
    {
        var text = Paths.ShakespeareValidationText;
        var full = Models.Get("shakespeare-char", TestBackends.Cpu, WeightFormat.F32).Score(text);
        var narrow = Models.Get("shakespeare-char", TestBackends.Cpu, format).Score(text);
        Assert.Equal(full.TokenCount, narrow.TokenCount);
        Assert.InRange(narrow.Perplexity / full.Perplexity - 1, -Tolerances.PerplexityInFormat, Tolerances.PerplexityInFormat);
        // Not identical either: the narrower weights were really used.
        Assert.NotEqual(full.MeanNll, narrow.MeanNll);
    }

    [Fact]
    public void Text_is_scored_through_the_tokenizer()
    {
        var text = Paths.ShakespeareValidationText[..300];
        var result = Shakespeare.Score(text);
        Assert.Equal(299, result.TokenCount);
        Assert.Equal(Math.Exp(result.MeanNll), result.Perplexity, 1e-9);
        // A trained character model on unseen Shakespeare: well under the 4.19 nats of a uniform guess over 66 characters.
        Assert.InRange(result.MeanNll, 0.8, 2.0);
    }

    [Fact]
    public void Sliding_window_scores_every_token_once_and_agrees_with_a_full_window_where_they_overlap()
    {
        var ids = Shakespeare.Tokenizer!.Encode(Paths.ShakespeareValidationText[..600]);
        var strided = Shakespeare.ScoreIds(ids, new ScoreOptions { Context = 256, Stride = 128 });
        var disjoint = Shakespeare.ScoreIds(ids, new ScoreOptions { Context = 256 });
        Assert.Equal(ids.Length - 1, strided.TokenCount);
        Assert.Equal(ids.Length - 1, strided.TokenLogProbs.Count);
        // The first window is identical in both; after it, the strided run gives each token more context.
        for (var t = 0; t < 255; t++)
            Assert.Equal(disjoint.TokenLogProbs[t], strided.TokenLogProbs[t], 1e-5);
        Assert.True(strided.MeanNll < disjoint.MeanNll, "more context should predict better on average");
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

    [Fact]
    public void Zero_alternatives_list_each_token_alone() =>
        Assert.All(Shakespeare.Score("ROMEO: What, ho!", new ScoreOptions { TopLogProbs = 0 }).Tokens!, t => Assert.Empty(t.Top));

    [Theory]
    [InlineData(-1)]
    [InlineData(GenerationOptions.MaxLogProbs + 1)]
    public void Out_of_range_alternatives_are_rejected(int top)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.ScoreIds([1, 2, 3], new ScoreOptions { TopLogProbs = top }));
        Assert.Equal(nameof(ScoreOptions.TopLogProbs), error.ParamName);
    }

    [Theory]
    [InlineData(1, null)]
    [InlineData(257, null)]
    [InlineData(100, 0)]
    [InlineData(100, 101)]
    public void Out_of_range_windows_are_rejected(int context, int? stride) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.ScoreIds([1, 2, 3], new ScoreOptions { Context = context, Stride = stride }));

    [Fact]
    public void Fewer_than_two_tokens_cannot_be_scored() =>
        Assert.Throws<ArgumentException>(() => Shakespeare.ScoreIds([5]));

    [Fact]
    public void Scoring_reports_its_progress_window_by_window_up_to_every_token()
    {
        var ids = Enumerable.Range(0, 700).Select(i => i * 7 % 60).ToArray();
        var reports = new List<ScoreProgress>();
        var result = Shakespeare.ScoreIds(ids, new ScoreOptions { Context = 256, Stride = 128, Progress = new Recorder(reports) });

        // Windows of 256 advancing by 128: tokens 1..255 first, then 128 more a window, the last one shorter.
        Assert.Equal([255, 383, 511, 639, 699], reports.Select(r => r.Scored));
        Assert.All(reports, r => Assert.Equal(result.TokenCount, r.Total));
        Assert.Equal(1.0, reports[^1].Fraction);
    }

    private sealed class Recorder(List<ScoreProgress> reports) : IProgress<ScoreProgress>
    {
        public void Report(ScoreProgress value) => reports.Add(value);
    }
}
