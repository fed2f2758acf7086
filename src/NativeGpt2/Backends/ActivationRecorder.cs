namespace NativeGpt2.Backends;

/// <summary>
/// Copies the activations a caller asked for (<see cref="ForwardOptions"/>) from the backend to the host,
/// under the reference files' names, as the graph produces them. Asked for nothing, it copies nothing.
/// </summary>
internal sealed class ActivationRecorder(IBackend backend, Workspace workspace, ForwardOptions options, int B, int T, int C)
{
    /// <summary>What was recorded, by name.</summary>
    public Dictionary<string, FloatTensor> Activations { get; } = [];

    /// <summary>Whether nothing is recorded: the graph's launches are then all its work (<see cref="IBackend.RunStep"/>).</summary>
    public bool RecordsNothing => !options.OutputHiddenStates && !options.OutputAttentions && !options.OutputLayerActivations;

    /// <summary>Whether <c>layerN.*</c> are recorded (the graph then keeps each sublayer's output apart).</summary>
    public bool RecordsLayers => options.OutputLayerActivations;

    /// <summary><c>hidden_states.i</c>: the embeddings (i = 0), block i − 1's output, or ln_f's (i = L).</summary>
    public void HiddenState(int index, DeviceBuffer<float> x)
    {
        if (options.OutputHiddenStates) Activations[$"hidden_states.{index}"] = Download(x, C);
    }

    /// <summary><c>layerN.ln_1|attn|ln_2|mlp|out</c>.</summary>
    public void Layer(int layer, string name, DeviceBuffer<float> x)
    {
        if (options.OutputLayerActivations) Activations[$"layer{layer}.{name}"] = Download(x, C);
    }

    /// <summary>Where attention probabilities go when they are asked for (null otherwise: none are computed).</summary>
    public DeviceBuffer<float>? AttentionBuffer(int NH, int keys) =>
        options.OutputAttentions ? workspace.Probabilities((long)B * NH * T * keys) : null;

    /// <summary><c>attentions.N</c> (B, NH, T, past + T).</summary>
    public void Attention(int layer, DeviceBuffer<float>? probabilities, int NH, int keys)
    {
        if (probabilities is null) return;
        var data = new float[B * NH * T * keys];
        backend.Download(data, probabilities, 0);
        Activations[$"attentions.{layer}"] = new FloatTensor(data, B, NH, T, keys);
    }

    /// <summary>The first B·T rows of <paramref name="buffer"/> as a (B, T, width) tensor.</summary>
    public FloatTensor Download(DeviceBuffer<float> buffer, int width)
    {
        var data = new float[B * T * width];
        backend.Download(data, buffer, 0);
        return new FloatTensor(data, B, T, width);
    }
}
