using NativeGpt2.Weights;
using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary>Scoring on the CPU backend: windows, alternatives, formats, progress and bad options.</summary>
public class ScoringTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

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
