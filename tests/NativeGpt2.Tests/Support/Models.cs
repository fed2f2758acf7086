using System.Collections.Concurrent;

namespace NativeGpt2.Tests.Support;

/// <summary>Loads each model once per test run: loading is tested separately, and models are immutable.</summary>
public static class Models
{
    private static readonly ConcurrentDictionary<string, Lazy<Gpt2CausalLM>> Cache = new();

    /// <summary>A model from reference-data/models by directory name, or a <c>synthetic:</c> spec.</summary>
    public static Gpt2CausalLM Get(string name) =>
        Cache.GetOrAdd(name, n => new Lazy<Gpt2CausalLM>(() =>
            Gpt2CausalLM.Load(n.StartsWith(Gpt2CausalLM.SyntheticPrefix) ? n : Paths.Model(n)))).Value;
}
