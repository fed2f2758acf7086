using BenchmarkDotNet.Attributes;
using NativeGpt2.Generation;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// Picking one sampled token on the host from GPT-2's 50,257 logits (<see cref="Sampler.Sample"/>), as every sampled
/// decoding step does for every sequence. Peaked logits are a trained model's (a few hundred tokens hold most of the
/// mass); flat ones are random weights' (logits uniform in [−1, 1]: the nucleus is most of the vocabulary).
/// </summary>
[MemoryDiagnoser]
public class SamplerBenchmarks
{
    public enum Rule { Temperature, TopK40, TopK40PeakedTopP, TopPPeaked, TopPFlat }

    private const int V = 50257;
    private float[] _logits = null!;
    private GenerationOptions _options = null!;
    private Random _random = null!;

    [Params(Rule.Temperature, Rule.TopK40, Rule.TopK40PeakedTopP, Rule.TopPPeaked, Rule.TopPFlat)]
    public Rule Options { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        var flat = Options == Rule.TopPFlat;
        // Peaked: Gaussian logits of standard deviation 3, the spread a trained GPT-2's next-token logits have.
        _logits = Enumerable.Range(0, V).Select(_ => flat
            ? (float)(2 * random.NextDouble() - 1)
            : (float)(3 * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()))).ToArray();
        _options = Options switch
        {
            Rule.Temperature => new GenerationOptions(),
            Rule.TopK40 => new GenerationOptions { Temperature = 0.8f, TopK = 40 },
            Rule.TopK40PeakedTopP => new GenerationOptions { Temperature = 0.8f, TopK = 40, TopP = 0.9f },
            _ => new GenerationOptions { Temperature = 0.8f, TopP = 0.9f },
        };
        _random = new Random(2);
    }

    [Benchmark]
    public int Sample() => Sampler.Sample(_logits, _options, [], _random);
}
