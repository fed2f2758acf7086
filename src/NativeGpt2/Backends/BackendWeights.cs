using NativeGpt2.Weights;

namespace NativeGpt2.Backends;

/// <summary>
/// A model's weights handed to its backend once, at load: vectors and tables as buffers, Conv1D
/// matrices prepared in the backend's own layout. The tied head is the token-embedding buffer itself.
/// </summary>
internal sealed class BackendWeights : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public BackendWeights(IBackend backend, Gpt2Weights weights)
    {
        try
        {
            TokenEmbedding = Table(backend, weights.TokenEmbedding);
            PositionEmbedding = Buffer(backend, weights.PositionEmbedding);
            Blocks = weights.Blocks.Select(b => new Block(this, backend, b)).ToArray();
            FinalNormWeight = Buffer(backend, weights.FinalNormWeight);
            FinalNormBias = Buffer(backend, weights.FinalNormBias);
            // Tied: the head reads wte, the same buffer as the embedding. Untied: lm_head.weight.
            Head = weights.LmHead is null ? TokenEmbedding : Table(backend, weights.LmHead);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>wte (V, C).</summary>
    public DeviceTable TokenEmbedding { get; }

    /// <summary>wpe (context length, C).</summary>
    public DeviceBuffer<float> PositionEmbedding { get; }

    /// <summary>h.0 … h.{L-1}.</summary>
    public Block[] Blocks { get; }

    /// <summary>ln_f gain (C).</summary>
    public DeviceBuffer<float> FinalNormWeight { get; }

    /// <summary>ln_f bias (C).</summary>
    public DeviceBuffer<float> FinalNormBias { get; }

    /// <summary>The head's matrix (V, C): <see cref="TokenEmbedding"/> when tied.</summary>
    public DeviceTable Head { get; }

    public void Dispose()
    {
        foreach (var item in _owned) item.Dispose();
        _owned.Clear();
    }

    private DeviceBuffer<float> Buffer(IBackend backend, Weight weight) => Own(backend.Upload(weight.Data));

    private DeviceMatrix Matrix(IBackend backend, Weight weight) => Own(backend.PrepareMatrix(weight));

    private DeviceTable Table(IBackend backend, Weight weight) => Own(backend.PrepareTable(weight));

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    /// <summary>One transformer block's weights on the backend.</summary>
    internal sealed class Block(BackendWeights owner, IBackend backend, Gpt2BlockWeights w)
    {
        public DeviceBuffer<float> Ln1Weight { get; } = owner.Buffer(backend, w.Ln1Weight);
        public DeviceBuffer<float> Ln1Bias { get; } = owner.Buffer(backend, w.Ln1Bias);
        /// <summary>c_attn (C, 3C).</summary>
        public DeviceMatrix Attn { get; } = owner.Matrix(backend, w.AttnWeight);
        public DeviceBuffer<float> AttnBias { get; } = owner.Buffer(backend, w.AttnBias);
        /// <summary>attn.c_proj (C, C).</summary>
        public DeviceMatrix AttnProj { get; } = owner.Matrix(backend, w.AttnProjWeight);
        public DeviceBuffer<float> AttnProjBias { get; } = owner.Buffer(backend, w.AttnProjBias);
        public DeviceBuffer<float> Ln2Weight { get; } = owner.Buffer(backend, w.Ln2Weight);
        public DeviceBuffer<float> Ln2Bias { get; } = owner.Buffer(backend, w.Ln2Bias);
        /// <summary>mlp.c_fc (C, 4C).</summary>
        public DeviceMatrix Fc { get; } = owner.Matrix(backend, w.FcWeight);
        public DeviceBuffer<float> FcBias { get; } = owner.Buffer(backend, w.FcBias);
        /// <summary>mlp.c_proj (4C, C).</summary>
        public DeviceMatrix FcProj { get; } = owner.Matrix(backend, w.FcProjWeight);
        public DeviceBuffer<float> FcProjBias { get; } = owner.Buffer(backend, w.FcProjBias);
    }
}
