using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary><see cref="GenerationOptions.NoRepeatNgramSize"/> and <see cref="GenerationOptions.MinNewTokens"/>, Hugging Face's rules.</summary>
public class NgramAndMinimumLengthTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    [InlineData(4, true)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    public void No_n_gram_occurs_twice_and_only_repeats_are_ruled_out(int n, bool greedy)
    {
        var options = new GenerationOptions { MaxNewTokens = n == 1 ? 30 : 80, Greedy = greedy, Seed = 3, NoRepeatNgramSize = n };
        var result = Shakespeare.Generate("ROMEO:\nWhat", options);
        var tokens = result.PromptIds.Concat(result.GeneratedIds).ToArray();
        var seen = new HashSet<string>();
        for (var end = n; end <= tokens.Length; end++)
        {
            var gram = string.Join(',', tokens[(end - n)..end]);
            // The prompt may repeat itself; what is generated never completes an n-gram already there.
            Assert.True(seen.Add(gram) || end <= result.PromptIds.Count, $"the {n}-gram {gram} ends at {end} and occurred before");
        }
        if (!greedy) return;

        // The oracle: each step's logits from a full forward pass, the tokens the rule bans set aside, then the argmax.
        var oracle = result.PromptIds.ToList();
        for (var step = 0; step < result.GeneratedIds.Count; step++)
        {
            var logits = Shakespeare.Forward(TokenBatch.FromIds([.. oracle])).Logits.Row(0, oracle.Count - 1).ToArray();
            var prefix = oracle.Skip(oracle.Count - (n - 1)).ToArray();
            for (var start = 0; start + n <= oracle.Count; start++)
            {
                if (oracle.Skip(start).Take(n - 1).SequenceEqual(prefix)) logits[oracle[start + n - 1]] = float.NegativeInfinity;
            }
            oracle.Add(Array.IndexOf(logits, logits.Max()));
        }
        Assert.Equal(oracle.Skip(result.PromptIds.Count), result.GeneratedIds);
    }

    [Fact]
    public void A_batch_bans_each_row_s_own_repeats_as_that_row_alone()
    {
        var options = new GenerationOptions { MaxNewTokens = 40, Greedy = true, NoRepeatNgramSize = 2 };
        var batch = Shakespeare.Generate(["ROMEO:", "KING HENRY VI:"], options);
        Assert.Equal(Shakespeare.Generate("ROMEO:", options).GeneratedIds, batch[0].GeneratedIds);
        Assert.Equal(Shakespeare.Generate("KING HENRY VI:", options).GeneratedIds, batch[1].GeneratedIds);
    }

    [Fact]
    public void A_rule_that_leaves_no_token_is_an_error_that_names_it()
    {
        // Every one of the 66 tokens, end-of-text included, may occur once: the 67th pick has nothing left.
        var options = new GenerationOptions { MaxNewTokens = 200, Greedy = true, NoRepeatNgramSize = 1, StopAtEndOfText = false };
        var error = Assert.Throws<NativeGpt2Exception>(() => Shakespeare.Generate("A", options));
        Assert.Contains("NoRepeatNgramSize 1 rules out every token", error.Message);
    }

    [Fact]
    public void End_of_text_waits_for_the_minimum_and_then_ends_the_text()
    {
        var model = Models.Get("gpt2-mini");
        var eos = model.Config.EosTokenId!.Value;
        // A bias that makes the end-of-text token all but certain: without a minimum it ends the text at once.
        var forced = new GenerationOptions { MaxNewTokens = 20, Greedy = true, LogitBias = new Dictionary<int, float> { [eos] = 100 } };
        var plain = model.Generate("Hello", forced);
        Assert.Equal([eos], plain.GeneratedIds);
        Assert.Equal(FinishReason.EndOfText, plain.FinishReason);

        var waited = model.Generate("Hello", forced with { MinNewTokens = 5 });
        Assert.Equal(6, waited.GeneratedIds.Count);
        Assert.DoesNotContain(eos, waited.GeneratedIds.Take(5));
        Assert.Equal(eos, waited.GeneratedIds[^1]);
        Assert.Equal(FinishReason.EndOfText, waited.FinishReason);
        // Until the minimum, the pick is the argmax of the other tokens: what the same bias gives when the token is banned instead.
        var banned = model.Generate("Hello", new GenerationOptions { MaxNewTokens = 5, Greedy = true, LogitBias = new Dictionary<int, float> { [eos] = -100 } });
        Assert.Equal(banned.GeneratedIds, waited.GeneratedIds.Take(5));
    }

    [Theory]
    [InlineData(-1, 0, nameof(GenerationOptions.NoRepeatNgramSize))]
    [InlineData(0, -1, nameof(GenerationOptions.MinNewTokens))]
    [InlineData(0, 11, nameof(GenerationOptions.MinNewTokens))]
    public void Out_of_range_values_are_refused_by_name(int noRepeat, int minimum, string name)
    {
        var options = new GenerationOptions { MaxNewTokens = 10, NoRepeatNgramSize = noRepeat, MinNewTokens = minimum };
        Assert.Equal(name, Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
    }
}
