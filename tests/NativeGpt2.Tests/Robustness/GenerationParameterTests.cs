using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

public class GenerationParameterTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    public static TheoryData<string, GenerationOptions> OutOfRange() => new()
    {
        { "MaxNewTokens", new GenerationOptions { MaxNewTokens = 0 } },
        { "MaxNewTokens", new GenerationOptions { MaxNewTokens = -5 } },
        { "Temperature", new GenerationOptions { Temperature = -0.1f } },
        { "Temperature", new GenerationOptions { Temperature = float.NaN } },
        { "Temperature", new GenerationOptions { Temperature = float.PositiveInfinity } },
        { "TopP", new GenerationOptions { TopP = 0f } },
        { "TopP", new GenerationOptions { TopP = 1.01f } },
        { "TopP", new GenerationOptions { TopP = float.NaN } },
        { "TopK", new GenerationOptions { TopK = -1 } },
        { "RepetitionPenalty", new GenerationOptions { RepetitionPenalty = 0f } },
        { "RepetitionPenalty", new GenerationOptions { RepetitionPenalty = float.NaN } },
        { "PresencePenalty", new GenerationOptions { PresencePenalty = 2.01f } },
        { "PresencePenalty", new GenerationOptions { PresencePenalty = float.NaN } },
        { "FrequencyPenalty", new GenerationOptions { FrequencyPenalty = -2.5f } },
        { "FrequencyPenalty", new GenerationOptions { FrequencyPenalty = float.NegativeInfinity } },
        { "LogitBias", new GenerationOptions { LogitBias = new Dictionary<int, float> { [3] = 100.5f } } },
        { "LogitBias", new GenerationOptions { LogitBias = new Dictionary<int, float> { [3] = float.NaN } } },
        { "LogitBias", new GenerationOptions { LogitBias = new Dictionary<int, float> { [-1] = 1 } } },
    };

    [Fact]
    public void A_logit_bias_for_a_token_outside_the_vocabulary_is_rejected_before_anything_runs()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.Generate("ROMEO:", new GenerationOptions { LogitBias = new Dictionary<int, float> { [66] = 5 } }));
        Assert.Equal("LogitBias", error.ParamName);
        Assert.Contains("token 66, outside the vocabulary [0, 66)", error.Message);
    }

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void Out_of_range_options_name_the_parameter_and_its_range(string parameter, GenerationOptions options)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.Generate("ROMEO:", options));
        Assert.Equal(parameter, error.ParamName);
        Assert.Matches(@"must be|at least", error.Message);
    }

    [Fact]
    public void Empty_stop_strings_are_rejected()
    {
        var error = Assert.Throws<ArgumentException>(() => Shakespeare.Generate("ROMEO:", new GenerationOptions { StopStrings = [""] }));
        Assert.Equal("StopStrings", error.ParamName);
    }

    [Fact]
    public void Temperature_zero_means_greedy()
    {
        var greedy = Shakespeare.Generate("ROMEO:", new GenerationOptions { Greedy = true, MaxNewTokens = 30 });
        var zero = Shakespeare.Generate("ROMEO:", new GenerationOptions { Temperature = 0f, MaxNewTokens = 30, Seed = 99 });
        Assert.Equal(greedy.GeneratedIds, zero.GeneratedIds);
    }

    [Fact]
    public void Token_ids_out_of_range_are_rejected()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateIds([1, 2, 66]));
        Assert.Contains("[0, 66)", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.GenerateIds([-1]));
    }

    [Fact]
    public void A_prompt_longer_than_the_context_is_rejected()
    {
        var prompt = new string('a', 300);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.Generate(prompt, new GenerationOptions { MaxNewTokens = 1 }));
        Assert.StartsWith("the prompt has 300 tokens, and the context length of 256 leaves no room for a new one (shorten it to at most 255 tokens", error.Message);
        Assert.Contains("SlidingWindow", error.Message);
        Assert.Equal("prompts", error.ParamName);
    }

    [Fact]
    public void In_a_batch_the_prompt_that_does_not_fit_is_named_with_the_largest_count_that_would()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Shakespeare.Generate(["ROMEO:", new string('a', 200)], new GenerationOptions { MaxNewTokens = 100 }));
        Assert.StartsWith("MaxNewTokens is too large: prompt 1 has 200 tokens", error.Message);
        Assert.Contains("at most 56", error.Message);
    }

    [Fact]
    public void An_empty_prompt_without_an_end_of_text_token_is_rejected()
    {
        // tiny-untied's config names eos 511; a config without any is built here.
        var tiny = Models.Get("tiny");
        var config = tiny.Config with { BosTokenId = null, EosTokenId = null };
        using var model = new Gpt2CausalLM(config, tiny.Backbone.Weights);
        var error = Assert.Throws<ArgumentException>(() => model.GenerateIds(Array.Empty<int>()));
        Assert.Contains("empty", error.Message);
    }

    [Fact]
    public void All_nan_logits_are_a_numerical_error_not_token_zero()
    {
        // A model whose final LayerNorm gain is NaN: every logit is NaN.
        var tiny = Models.Get("tiny");
        var weights = tiny.Backbone.Weights;
        var poisoned = new Gpt2Weights
        {
            TokenEmbedding = weights.TokenEmbedding,
            PositionEmbedding = weights.PositionEmbedding,
            Blocks = weights.Blocks,
            FinalNormWeight = new Weight("ln_f.weight", weights.FinalNormWeight.Shape, Enumerable.Repeat(float.NaN, weights.FinalNormWeight.Data.Length).ToArray()),
            FinalNormBias = weights.FinalNormBias,
        };
        using var model = new Gpt2CausalLM(tiny.Config, poisoned);
        Assert.Throws<NumericalException>(() => model.GenerateIds([1, 2, 3], new GenerationOptions { Greedy = true }));
        Assert.Throws<NumericalException>(() => model.GenerateIds([1, 2, 3], new GenerationOptions { Seed = 1 }));
        Assert.Throws<NumericalException>(() => model.ScoreIds([1, 2, 3]));
    }
}
