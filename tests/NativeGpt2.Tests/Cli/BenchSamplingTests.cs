using System.Text.Json;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Cli;

/// <summary>
/// <c>nativegpt2 bench --top-k K</c>: decoding by top-k sampling on the CPU backend (the ILGPU backends' candidates are
/// checked by the generation tests), beside the ILGPU collection rather than in it.
/// </summary>
public class BenchSamplingTests
{
    /// <summary>From the backend's candidates (k 5), and from the logits (k 70, past the candidates' room).</summary>
    [Theory]
    [InlineData(5)]
    [InlineData(70)]
    public void Bench_decodes_by_top_k_sampling_when_asked(int k)
    {
        var result = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--prompt-tokens", "8", "--new-tokens", "4", "--top-k", k.ToString(), "--json");

        Assert.Equal(CliApp.Success, result.ExitCode);
        using var json = JsonDocument.Parse(result.Out);
        Assert.Equal(k, json.RootElement.GetProperty("top_k").GetInt32());
        Assert.True(json.RootElement.GetProperty("decode_tokens_per_s").GetDouble() > 0);
    }

    [Fact]
    public void The_table_names_the_sampling()
    {
        var table = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--prompt-tokens", "8", "--new-tokens", "4", "--top-k", "5");

        Assert.Equal(CliApp.Success, table.ExitCode);
        Assert.Contains("KV cache, top-k 5 sampling)", table.Out);
    }

    [Fact]
    public void A_negative_top_k_is_refused() =>
        Assert.Equal("error: --top-k must be at least 0 (0: greedy decoding), got -1",
            CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--top-k", "-1").Error.Trim());
}
