namespace NativeGpt2;

/// <summary>Which intermediate activations a forward pass keeps, beyond the final hidden states.</summary>
public sealed record ForwardOptions
{
    /// <summary>Keep <c>hidden_states.0 … hidden_states.L</c>: the embeddings, each block's output, and the final (ln_f) output.</summary>
    public bool OutputHiddenStates { get; init; }

    /// <summary>Keep <c>attentions.N</c>: each block's attention probabilities (B, NH, T, past + T).</summary>
    public bool OutputAttentions { get; init; }

    /// <summary>Keep <c>layerN.ln_1</c>, <c>layerN.attn</c>, <c>layerN.ln_2</c>, <c>layerN.mlp</c>, <c>layerN.out</c> for every block.</summary>
    public bool OutputLayerActivations { get; init; }

    /// <summary>Keep everything: what a reference comparison needs.</summary>
    public static ForwardOptions All { get; } = new() { OutputHiddenStates = true, OutputAttentions = true, OutputLayerActivations = true };

    /// <summary>Keep nothing beyond the final hidden states.</summary>
    public static ForwardOptions None { get; } = new();
}

/// <summary>The result of <see cref="Gpt2Backbone.Forward"/>.</summary>
public sealed class BackboneOutput
{
    internal BackboneOutput(FloatTensor lastHiddenState, IReadOnlyDictionary<string, FloatTensor> activations, int layerCount)
    {
        LastHiddenState = lastHiddenState;
        Activations = activations;
        if (activations.ContainsKey("hidden_states.0"))
            HiddenStates = Enumerable.Range(0, layerCount + 1).Select(i => activations[$"hidden_states.{i}"]).ToArray();
        if (activations.ContainsKey("attentions.0"))
            Attentions = Enumerable.Range(0, layerCount).Select(i => activations[$"attentions.{i}"]).ToArray();
    }

    /// <summary>The backbone's output (B, T, C): the last block's output after the final LayerNorm.</summary>
    public FloatTensor LastHiddenState { get; }

    /// <summary><c>hidden_states.0 … L</c> when requested (L + 1 tensors of (B, T, C)), else null.</summary>
    public IReadOnlyList<FloatTensor>? HiddenStates { get; }

    /// <summary>Attention probabilities of each block (B, NH, T, past + T) when requested, else null.</summary>
    public IReadOnlyList<FloatTensor>? Attentions { get; }

    /// <summary>Every kept activation under its reference name (<c>hidden_states.i</c>, <c>layerN.attn</c>, <c>attentions.N</c>, …).</summary>
    public IReadOnlyDictionary<string, FloatTensor> Activations { get; }
}
