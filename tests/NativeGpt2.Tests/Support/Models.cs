using NativeGpt2.Weights;
using System.Collections.Concurrent;

namespace NativeGpt2.Tests.Support;

/// <summary>Loads each model once per test run and backend: loading is tested separately, and models are immutable.</summary>
public static class Models
{
    private static readonly ConcurrentDictionary<(string, string, WeightFormat?), Lazy<Gpt2CausalLM>> Cache = new();

    /// <summary>
    /// A model from reference-data/models by directory name, or a <c>synthetic:</c> spec, on <paramref name="backend"/>,
    /// its weight matrices held as <paramref name="format"/> (null: as stored).
    /// </summary>
    public static Gpt2CausalLM Get(string name, string backend = TestBackends.Cpu, WeightFormat? format = null) =>
        Cache.GetOrAdd((name, backend, format), key => new Lazy<Gpt2CausalLM>(() =>
            Gpt2CausalLM.Load(key.Item1.StartsWith(Gpt2CausalLM.SyntheticPrefix) ? key.Item1 : Paths.Model(key.Item1),
                new ModelLoadOptions { BackendInstance = TestBackends.Get(key.Item2), WeightFormat = key.Item3 }))).Value;
}
