using NativeGpt2.Backends;
using NativeGpt2.Weights;

namespace NativeGpt2;

/// <summary>
/// The GPT-2 transformer without its head: token and position embeddings, L pre-LayerNorm blocks of
/// causal self-attention and a GELU MLP, and a final LayerNorm. It maps token ids (B, T) to hidden
/// states (B, T, C); <see cref="EmbeddingTransposeProjection"/> turns those into logits.
/// </summary>
/// <remarks>
/// The graph (<see cref="Graph"/>) is written once against <see cref="IBackend"/> and runs wherever the
/// model was loaded. A backbone holds only weights; each pass borrows a workspace from a pool, so one
/// instance can serve many threads at once (each with its own <see cref="KvCache"/>).
/// </remarks>
public sealed class Gpt2Backbone
{
    private readonly ModelLifetime _lifetime;
    private readonly IBackend _backend;
    private readonly BackendWeights _weights;
    private readonly WorkspacePool _workspaces;

    internal Gpt2Backbone(Gpt2Config config, Gpt2Weights weights, IBackend backend, BackendWeights deviceWeights, WorkspacePool workspaces, ModelLifetime lifetime)
    {
        Config = config;
        Weights = weights;
        _backend = backend;
        _weights = deviceWeights;
        _workspaces = workspaces;
        _lifetime = lifetime;
    }

    /// <summary>The architecture.</summary>
    public Gpt2Config Config { get; }

    /// <summary>The weights, named as in the checkpoint.</summary>
    public Gpt2Weights Weights { get; }

    /// <summary>A cache for <paramref name="batchSize"/> sequences of up to <paramref name="capacity"/> positions (default: the context length).</summary>
    public KvCache CreateCache(int batchSize, int? capacity = null)
    {
        using var call = _lifetime.Enter();
        using var scope = _backend.Enter();
        return new(Config, _backend, batchSize, capacity ?? Config.ContextLength);
    }

    /// <summary>
    /// Runs the backbone over <paramref name="batch"/>. With a <paramref name="cache"/>, the batch's tokens
    /// follow the tokens already in it (their keys and values are reused, and these are appended);
    /// without one, the batch is a whole sequence.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary, a position outside the context, or the cache is full.</exception>
    /// <exception cref="ArgumentException">The cache holds a different number of sequences, or belongs to another backend.</exception>
    /// <exception cref="ObjectDisposedException">The model this backbone belongs to was disposed.</exception>
    public BackboneOutput Forward(TokenBatch batch, KvCache? cache = null, ForwardOptions? options = null)
    {
        using var call = _lifetime.Enter();
        using var scope = _backend.Enter();
        using var pass = Run(batch, cache, options ?? ForwardOptions.None);
        var last = pass.Activations.TryGetValue($"hidden_states.{Config.LayerCount}", out var recorded)
            ? recorded
            : pass.Download(pass.Workspace.Output, Config.EmbeddingSize);
        return new BackboneOutput(last, pass.Activations, Config.LayerCount);
    }

    /// <summary>
    /// Checks the inputs, records the new tokens in the cache, and runs the graph; the final hidden states
    /// stay on the backend in the pass's workspace, for the head. The caller holds the backend's scope.
    /// </summary>
    internal Pass Run(TokenBatch batch, KvCache? cache, ForwardOptions options)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(options);
        int B = batch.BatchSize, T = batch.SequenceLength;
        if (cache is null && T > Config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(batch), $"sequence length {T} exceeds the context length of {Config.ContextLength} positions");
        if (cache is not null)
        {
            if (cache.BatchSize != B)
                throw new ArgumentException($"the cache holds {cache.BatchSize} sequences, the batch {B}", nameof(cache));
            if (!ReferenceEquals(cache.Backend, _backend))
                throw new ArgumentException($"the cache was made by another model's backend ({cache.Backend.Name}); create it with this model's CreateCache", nameof(cache));
            if (cache.Length + T > cache.Capacity)
                throw new ArgumentOutOfRangeException(nameof(batch), $"{cache.Length} cached + {T} new tokens exceed the cache capacity of {cache.Capacity} positions (context length {Config.ContextLength})");
        }
        CheckTokenIds(batch.Ids);
        CheckActivationSizes(B, T, cache?.Length ?? 0, options);
        var (positions, nextPositions) = PositionsFor(batch, cache);

        var workspace = _workspaces.Rent(B * T);
        var pass = new Pass(this, workspace, cache ?? workspace.ScratchCache(B, T), B, T, options);
        try
        {
            // Every input is valid: from here on the cache takes the new tokens.
            var past = pass.Cache.Length;
            pass.Cache.AppendMask(T, batch.AttentionMask);
            nextPositions.CopyTo(pass.Cache.NextPosition, 0);
            _backend.CopyFromHost(workspace.Ids, 0, batch.Ids);
            _backend.CopyFromHost(workspace.Positions, 0, positions);
            if (T == 1 && cache is not null && pass.Recorder.RecordsNothing)
            {
                // A decoding step: the same launches every time but for the cache's length, which a GPU may record once and replay.
                _backend.RunStep(StepOf(workspace, cache), past, () => Graph(pass, past));
            }
            else
            {
                Graph(pass, past);
            }
            pass.Cache.Length = past + T;
            return pass;
        }
        catch
        {
            pass.Dispose();
            throw;
        }
    }

    /// <summary>What a decoding step's launches work on: the workspace, every buffer of the cache, and its rows.</summary>
    private static StepKey StepOf(Workspace workspace, KvCache cache) =>
        new([workspace, cache.DeviceMask, cache.BatchSize, cache.Stride, .. cache.Keys, .. cache.Values]);

    /// <summary>GPT-2, written once for every backend. Shapes in the comments; N = B·T rows.</summary>
    private void Graph(Pass pass, int past)
    {
        var ops = _backend;
        var w = _weights;
        var x = pass.Workspace;
        var cache = pass.Cache;
        var record = pass.Recorder;
        int B = pass.B, T = pass.T, N = B * T;
        int C = Config.EmbeddingSize, NH = Config.HeadCount, HS = Config.HeadSize, inner = Config.InnerSize;
        var eps = (float)Config.LayerNormEpsilon;
        var activation = Config.Activation.Epilogue();

        // x = wte[ids] + wpe[positions]                                         x (N, C)
        ops.Embedding(x.X, x.Ids, x.Positions, w.TokenEmbedding, w.PositionEmbedding, N, C);
        record.HiddenState(0, x.X);

        for (var l = 0; l < Config.LayerCount; l++)
        {
            var block = w.Blocks[l];

            // x = x + attn(ln_1(x))
            // ln = ln_1(x), qkv = ln · c_attn.W + b (one call: a GPU fuses them)   ln (N, C), qkv (N, 3C)
            ops.LayerNormMatMul(x.Qkv, x.Ln, x.X, block.Ln1Weight, block.Ln1Bias, eps, block.Attn, block.AttnBias, N, C, 3 * C, MatMulEpilogue.Bias);
            record.Layer(l, "ln_1", x.Ln);
            // The new keys and values join the cache; each query attends to the keys up to its own.
            var probabilities = record.AttentionBuffer(NH, past + T);                              // (B, NH, T, past + T) if asked
            ops.Attention(x.Attn, probabilities, x.Qkv, cache.Keys[l], cache.Values[l], cache.DeviceMask, B, T, past, cache.Stride, NH, HS, Config.AttentionScale(l));
            record.Attention(l, probabilities, NH, past + T);
            AddProjection(pass, x.Attn, block.AttnProj, block.AttnProjBias, C, l, "attn");        // x += c_proj(attn)

            // x = x + mlp(ln_2(x)), mlp(h) = c_proj(gelu(c_fc(h)))   (gelu: GPT-2's; the config may name another)
            // ln = ln_2(x), h = gelu(ln · c_fc.W + b)                                h (N, 4C)
            ops.LayerNormMatMul(x.Hidden, x.Ln, x.X, block.Ln2Weight, block.Ln2Bias, eps, block.Fc, block.FcBias, N, C, inner, activation);
            record.Layer(l, "ln_2", x.Ln);
            AddProjection(pass, x.Hidden, block.FcProj, block.FcProjBias, inner, l, "mlp");          // x += c_proj(h)

            record.Layer(l, "out", x.X);
            // hidden_states.L is the ln_f output below, not the last block's raw output.
            if (l < Config.LayerCount - 1) record.HiddenState(l + 1, x.X);
        }

        // out = ln_f(x)                                                         out (N, C)
        ops.LayerNorm(x.Output, x.X, w.FinalNormWeight, w.FinalNormBias, N, C, eps);
        record.HiddenState(Config.LayerCount, x.Output);
    }

    /// <summary>
    /// x += input · W + b in one fused matmul; when the sublayer's own output is to be recorded
    /// (<c>layerN.attn</c>, <c>layerN.mlp</c>), it is computed on its own first, then added.
    /// </summary>
    private void AddProjection(Pass pass, DeviceBuffer<float> input, DeviceMatrix weight, DeviceBuffer<float> bias, int IC, int layer, string name)
    {
        var x = pass.Workspace;
        int N = pass.B * pass.T, C = Config.EmbeddingSize;
        if (!pass.Recorder.RecordsLayers)
        {
            _backend.MatMul(x.X, input, weight, bias, N, IC, C, MatMulEpilogue.Residual);
            return;
        }
        _backend.MatMul(x.Sublayer, input, weight, bias, N, IC, C, MatMulEpilogue.Bias);
        pass.Recorder.Layer(layer, name, x.Sublayer);
        _backend.Add(x.X, x.X, x.Sublayer, (long)N * C);
    }

    private void CheckTokenIds(int[] ids)
    {
        for (var i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException("ids", ids[i], $"token id at index {i} is outside the vocabulary [0, {Config.VocabSize})");
        }
    }

    /// <summary>
    /// Every activation is one array: the largest must fit before anything is allocated. Sizes are computed
    /// in 64 bits, since N·n_inner overflows int for configs that are otherwise valid.
    /// </summary>
    private void CheckActivationSizes(int B, int T, int past, ForwardOptions options)
    {
        long N = (long)B * T;
        var perToken = Math.Max(3L * Config.EmbeddingSize, Config.InnerSize);
        var largest = N * perToken;
        if (options.OutputAttentions) largest = Math.Max(largest, (long)B * Config.HeadCount * T * (past + T));
        if (largest > Array.MaxLength)
            throw new ArgumentOutOfRangeException("batch", $"{B} × {T} tokens need an activation of {largest:N0} floats, more than the largest .NET array ({Array.MaxLength:N0}); pass fewer tokens per call");
    }

    /// <summary>
    /// Position ids of the new tokens, and each row's position counter after them. Without explicit ids,
    /// a real token's position is the number of real tokens before it in its row and padding gets
    /// position 1, which is what Hugging Face derives from the attention mask.
    /// </summary>
    private (int[] Positions, int[] NextPositions) PositionsFor(TokenBatch batch, KvCache? cache)
    {
        int B = batch.BatchSize, T = batch.SequenceLength;
        var positions = new int[B * T];
        var nextPositions = new int[B];
        for (var b = 0; b < B; b++)
        {
            var next = cache?.NextPosition[b] ?? 0;
            for (var t = 0; t < T; t++)
            {
                var i = b * T + t;
                var real = batch.AttentionMask is null || batch.AttentionMask[i] == 1;
                var position = batch.PositionIds?[i] ?? (real ? next : 1);
                if ((uint)position >= (uint)Config.ContextLength)
                    throw new ArgumentOutOfRangeException("positionIds", position, $"position of token {t} in sequence {b} is outside the context [0, {Config.ContextLength})");
                positions[i] = position;
                if (real) next = Math.Max(next, position + 1);
            }
            nextPositions[b] = next;
        }
        return (positions, nextPositions);
    }

    /// <summary>
    /// One forward pass in progress: its workspace (lent by the pool until disposed), its cache, and the
    /// activations recorded for the caller.
    /// </summary>
    internal sealed class Pass : IDisposable
    {
        private readonly Gpt2Backbone _owner;

        public Pass(Gpt2Backbone owner, Workspace workspace, KvCache cache, int B, int T, ForwardOptions options)
        {
            _owner = owner;
            Workspace = workspace;
            Cache = cache;
            this.B = B;
            this.T = T;
            Recorder = new ActivationRecorder(owner._backend, workspace, options, B, T, owner.Config.EmbeddingSize);
        }

        public Workspace Workspace { get; }
        public KvCache Cache { get; }
        public int B { get; }
        public int T { get; }
        public ActivationRecorder Recorder { get; }
        public Dictionary<string, FloatTensor> Activations => Recorder.Activations;

        /// <summary>A (B, T, width) tensor of <paramref name="buffer"/>'s first N rows.</summary>
        public FloatTensor Download(DeviceBuffer<float> buffer, int width) => Recorder.Download(buffer, width);

        public void Dispose() => _owner._workspaces.Return(Workspace);
    }
}
