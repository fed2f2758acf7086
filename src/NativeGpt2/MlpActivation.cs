using System.Collections.Frozen;
using NativeGpt2.Backends;

namespace NativeGpt2;

/// <summary>The nonlinearity between the MLP's two projections (<c>activation_function</c> in config.json).</summary>
public enum MlpActivation
{
    /// <summary>GPT-2's GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (<c>gelu_new</c>).</summary>
    GeluTanh,

    /// <summary>GELU as defined: x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (<c>gelu</c>; Cerebras-GPT, for one, trained with it).</summary>
    Gelu,

    /// <summary>max(x, 0) (<c>relu</c>).</summary>
    Relu,

    /// <summary>x·σ(x) (<c>silu</c>, <c>swish</c>).</summary>
    Silu,

    /// <summary>x·σ(1.702·x) (<c>quick_gelu</c>).</summary>
    QuickGelu,
}

/// <summary>The <c>activation_function</c> names of Hugging Face transformers this engine computes, and their epilogues.</summary>
public static class MlpActivations
{
    /// <summary>
    /// Each supported name, GPT-2's first, and what it computes. transformers' <c>gelu_new</c>, <c>gelu_pytorch_tanh</c>,
    /// <c>gelu_fast</c> and <c>gelu_accurate</c> all write the same tanh formula; <c>gelu</c> and <c>gelu_python</c> the erf.
    /// </summary>
    public static IReadOnlyList<(string Name, MlpActivation Activation)> Supported { get; } =
    [
        ("gelu_new", MlpActivation.GeluTanh),
        ("gelu_pytorch_tanh", MlpActivation.GeluTanh),
        ("gelu_fast", MlpActivation.GeluTanh),
        ("gelu_accurate", MlpActivation.GeluTanh),
        ("gelu", MlpActivation.Gelu),
        ("gelu_python", MlpActivation.Gelu),
        ("relu", MlpActivation.Relu),
        ("silu", MlpActivation.Silu),
        ("swish", MlpActivation.Silu),
        ("quick_gelu", MlpActivation.QuickGelu),
    ];

    /// <summary><see cref="Supported"/> by name (case-sensitive, as transformers reads it).</summary>
    public static IReadOnlyDictionary<string, MlpActivation> ByName { get; } =
        Supported.ToFrozenDictionary(s => s.Name, s => s.Activation, StringComparer.Ordinal);

    /// <summary>The matmul epilogue that adds the bias and applies <paramref name="activation"/>.</summary>
    public static MatMulEpilogue Epilogue(this MlpActivation activation) => activation switch
    {
        MlpActivation.GeluTanh => MatMulEpilogue.BiasGelu,
        MlpActivation.Gelu => MatMulEpilogue.BiasGeluErf,
        MlpActivation.Relu => MatMulEpilogue.BiasRelu,
        MlpActivation.Silu => MatMulEpilogue.BiasSilu,
        MlpActivation.QuickGelu => MatMulEpilogue.BiasQuickGelu,
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    /// <summary>The activation a matmul epilogue applies after its bias, or null for none (bias only, or the residual add).</summary>
    public static MlpActivation? Activation(this MatMulEpilogue epilogue) => epilogue switch
    {
        MatMulEpilogue.BiasGelu => MlpActivation.GeluTanh,
        MatMulEpilogue.BiasGeluErf => MlpActivation.Gelu,
        MatMulEpilogue.BiasRelu => MlpActivation.Relu,
        MatMulEpilogue.BiasSilu => MlpActivation.Silu,
        MatMulEpilogue.BiasQuickGelu => MlpActivation.QuickGelu,
        _ => null,
    };
}
