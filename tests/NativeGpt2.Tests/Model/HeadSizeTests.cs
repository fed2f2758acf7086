using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Model;

/// <summary>
/// Heads of other widths than GPT-2's 64 channels, from one (the tiny test checkpoints on the hub have n_embd 2, n_head 2)
/// to Cerebras-GPT's 80 and 128: every backend runs them up to 128 and agrees with the others; past what a backend's
/// kernels hold, the model is refused at load, naming the head size.
/// </summary>
public class HeadSizeTests
{
    private static Gpt2Config Config(int headSize) => new()
    {
        VocabSize = 300, ContextLength = 64, EmbeddingSize = 2 * headSize, LayerCount = 2, HeadCount = 2, InnerSize = 8 * headSize,
    };

    public static TheoryData<int> HeadSizes => [1, 3, 80, 128];

    [SkippableTheory]
    [MemberData(nameof(HeadSizes))]
    public void Every_backend_gives_the_cpu_backends_logits(int headSize)
    {
        var config = Config(headSize);
        var weights = SyntheticWeights.Create(config);
        using var cpu = new Gpt2CausalLM(config, weights);
        int[] prompt = [5, 17, 201, 42, 7, 99, 250, 3, 64, 11, 12, 13];
        var expected = cpu.Forward(TokenBatch.FromIds(prompt)).Logits.Data;
        Assert.All(expected, v => Assert.True(float.IsFinite(v)));
        foreach (var name in TestBackends.Available.Where(n => n != TestBackends.Cpu))
        {
            using var model = new Gpt2CausalLM(config, weights, null, "wide heads", TestBackends.Get(name), ownsBackend: false);
            Numerics.AssertClose(expected, model.Forward(TokenBatch.FromIds(prompt)).Logits.Data, Tolerances.SmallModel, $"HS = {headSize} on {name}");
            // Decoding (the split-key kernel) as well: greedy ids equal the CPU's.
            var options = new GenerationOptions { MaxNewTokens = 6, Greedy = true };
            Assert.Equal(cpu.GenerateIds(prompt, options).GeneratedIds, model.GenerateIds(prompt, options).GeneratedIds);
        }
    }

    [Fact]
    public void Heads_wider_than_the_ilgpu_kernels_hold_are_refused_at_load_and_run_on_the_cpu()
    {
        var config = Config(144);
        var weights = SyntheticWeights.Create(config);
        var error = Assert.Throws<BackendUnavailableException>(() =>
            new Gpt2CausalLM(config, weights, null, "wide heads", TestBackends.Get(TestBackends.IlgpuCpu), ownsBackend: false));
        Assert.Equal(TestBackends.IlgpuCpu, error.Backend);
        Assert.Contains("heads of 144 channels (n_embd 288 / n_head 2) exceed 128", error.Message);
        Assert.Contains("cpu backend", error.Message);

        using var cpu = new Gpt2CausalLM(config, weights);
        Assert.All(cpu.Forward(TokenBatch.FromIds([1, 2, 3])).Logits.Data, v => Assert.True(float.IsFinite(v)));
    }
}
