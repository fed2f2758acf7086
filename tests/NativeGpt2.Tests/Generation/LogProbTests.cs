using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary><see cref="GenerationOptions.LogProbs"/>: the model's own log-probabilities of what it generated.</summary>
public class LogProbTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    [Theory]
    [InlineData(true, 0)]
    [InlineData(true, 5)]
    [InlineData(false, 3)]
    public void Each_generated_token_carries_the_log_probability_scoring_gives_it(bool greedy, int top)
    {
        var result = Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = greedy, Temperature = 0.9f, Seed = 11, MaxNewTokens = 30, LogProbs = top });
        var logProbs = result.LogProbs!;
        Assert.Equal(result.GeneratedIds, logProbs.Select(l => l.Id));

        // Scoring the whole sequence computes log p(token | everything before it) with one forward pass.
        var scored = Shakespeare.ScoreIds([.. result.PromptIds, .. result.GeneratedIds]).TokenLogProbs;
        for (var i = 0; i < logProbs.Count; i++)
        {
            Assert.Equal(scored[result.PromptIds.Count - 1 + i], logProbs[i].LogProb, 4);
            var alternatives = logProbs[i].Top;
            Assert.Equal(top, alternatives.Count);
            for (var k = 1; k < alternatives.Count; k++) Assert.True(alternatives[k - 1].LogProb >= alternatives[k].LogProb);
            if (greedy && top > 0) Assert.Equal(logProbs[i].Id, alternatives[0].Id);
            if (top > 0) Assert.True(alternatives[0].LogProb >= logProbs[i].LogProb - 1e-9);
        }

        // Scoring with alternatives lists the same ones at each generated token's place.
        var listed = Shakespeare.ScoreIds([.. result.PromptIds, .. result.GeneratedIds], new ScoreOptions { TopLogProbs = top }).Tokens!;
        for (var i = 0; i < logProbs.Count; i++)
        {
            var token = listed[result.PromptIds.Count - 1 + i];
            Assert.Equal(logProbs[i].Id, token.Id);
            Assert.Equal(logProbs[i].LogProb, token.LogProb, 4);
            Assert.Equal(logProbs[i].Top.Select(a => a.Id), token.Top.Select(a => a.Id));
        }
    }

    [Fact]
    public void Without_the_option_there_are_none_and_out_of_range_is_refused()
    {
        Assert.Null(Shakespeare.Generate("A", new GenerationOptions { MaxNewTokens = 2 }).LogProbs);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.Generate("A", new GenerationOptions { LogProbs = GenerationOptions.MaxLogProbs + 1 }));
        Assert.Equal(nameof(GenerationOptions.LogProbs), error.ParamName);
    }
}
