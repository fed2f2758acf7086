using System.Numerics.Tensors;
using NativeGpt2.Operators;
using NativeGpt2.Weights;

namespace NativeGpt2;

/// <summary>
/// The GPT-2 transformer without its head: token and position embeddings, L pre-LayerNorm blocks of
/// causal self-attention and a GELU MLP, and a final LayerNorm. It maps token ids (B, T) to hidden
/// states (B, T, C); <see cref="EmbeddingTransposeProjection"/> turns those into logits.
/// </summary>
/// <remarks>
/// A backbone holds only weights; every call allocates its own activations, so one instance can serve
/// many threads at once (each with its own <see cref="KvCache"/>).
/// </remarks>
public sealed class Gpt2Backbone
{
    private readonly ModelLifetime _lifetime;

    internal Gpt2Backbone(Gpt2Config config, Gpt2Weights weights, ModelLifetime lifetime)
    {
        Config = config;
        Weights = weights;
        _lifetime = lifetime;
    }

    /// <summary>The architecture.</summary>
    public Gpt2Config Config { get; }

    /// <summary>The weights, named as in the checkpoint.</summary>
    public Gpt2Weights Weights { get; }

    /// <summary>A cache for <paramref name="batchSize"/> sequences of up to <paramref name="capacity"/> positions (default: the context length).</summary>
    public KvCache CreateCache(int batchSize, int? capacity = null)
    {
        _lifetime.ThrowIfDisposed();
        return new(Config, batchSize, capacity ?? Config.ContextLength);
    }

    /// <summary>
    /// Runs the backbone over <paramref name="batch"/>. With a <paramref name="cache"/>, the batch's tokens
    /// follow the tokens already in it (their keys and values are reused, and these are appended);
    /// without one, the batch is a whole sequence.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary, a position outside the context, or the cache is full.</exception>
    /// <exception cref="ArgumentException">The cache holds a different number of sequences.</exception>
    /// <exception cref="ObjectDisposedException">The model this backbone belongs to was disposed.</exception>
    public BackboneOutput Forward(TokenBatch batch, KvCache? cache = null, ForwardOptions? options = null)
    {
        _lifetime.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(batch);
        options ??= ForwardOptions.None;
        int B = batch.BatchSize, T = batch.SequenceLength;
        int C = Config.EmbeddingSize, NH = Config.HeadCount, HS = Config.HeadSize, inner = Config.InnerSize;
        var N = B * T;
        var eps = (float)Config.LayerNormEpsilon;

        if (cache is null && T > Config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(batch), $"sequence length {T} exceeds the context length of {Config.ContextLength} positions");
        cache ??= CreateCache(B, T);
        if (cache.BatchSize != B)
            throw new ArgumentException($"the cache holds {cache.BatchSize} sequences, the batch {B}", nameof(cache));
        var past = cache.Length;
        if (past + T > cache.Capacity)
            throw new ArgumentOutOfRangeException(nameof(batch), $"{past} cached + {T} new tokens exceed the cache capacity of {cache.Capacity} positions (context length {Config.ContextLength})");

        CheckTokenIds(batch.Ids);
        CheckActivationSizes(B, T, past, options);
        var (positions, nextPositions) = PositionsFor(batch, cache);
        var activations = new Dictionary<string, FloatTensor>();
        void Keep(bool wanted, string name, float[] data, int width)
        {
            if (wanted) activations[name] = new FloatTensor((float[])data.Clone(), B, T, width);
        }

        var x = new float[N * C];          // (B, T, C) the residual stream
        var ln = new float[N * C];         // (B, T, C) LayerNorm output
        var qkv = new float[N * 3 * C];    // (B, T, 3C) queries, keys, values
        var attn = new float[N * C];       // (B, T, C) attention output before c_proj
        var sublayer = new float[N * C];   // (B, T, C) attention or MLP output before the residual add
        var hidden = new float[N * inner]; // (B, T, 4C) MLP hidden layer

        // Every input is valid: from here on the cache takes the new tokens.
        for (var b = 0; b < B; b++)
        {
            var mask = cache.Mask.AsSpan(b * cache.Capacity + past, T);
            if (batch.AttentionMask is null) mask.Fill(1);
            else batch.AttentionMask.AsSpan(b * T, T).CopyTo(mask);
        }
        nextPositions.CopyTo(cache.NextPosition, 0);

        // x = wte[ids] + wpe[positions]
        Embedding.Forward(x, batch.Ids, positions, Weights.TokenEmbedding.Data, Weights.PositionEmbedding.Data, C);
        Keep(options.OutputHiddenStates, "hidden_states.0", x, C);

        for (var l = 0; l < Config.LayerCount; l++)
        {
            var w = Weights.Blocks[l];
            var layer = $"layer{l}";
            var Tk = past + T;

            // x = x + attn(ln_1(x))
            LayerNorm.Forward(ln, x, w.Ln1Weight.Data, w.Ln1Bias.Data, N, C, eps);
            Keep(options.OutputLayerActivations, $"{layer}.ln_1", ln, C);
            MatMul.Forward(qkv, ln, w.AttnWeight.Data, w.AttnBias.Data, N, C, 3 * C);
            CausalSelfAttention.AppendKeyValues(cache.Keys[l], cache.Values[l], qkv, B, T, past, cache.Capacity, NH, HS);
            var probabilities = options.OutputAttentions ? new float[B * NH * T * Tk] : [];
            CausalSelfAttention.Forward(attn, probabilities, qkv, cache.Keys[l], cache.Values[l], cache.Mask, B, T, past, cache.Capacity, NH, HS);
            if (options.OutputAttentions) activations[$"attentions.{l}"] = new FloatTensor(probabilities, B, NH, T, Tk);
            MatMul.Forward(sublayer, attn, w.AttnProjWeight.Data, w.AttnProjBias.Data, N, C, C);
            Keep(options.OutputLayerActivations, $"{layer}.attn", sublayer, C);
            TensorPrimitives.Add(x, sublayer, x);

            // x = x + mlp(ln_2(x)), mlp(h) = c_proj(gelu(c_fc(h)))
            LayerNorm.Forward(ln, x, w.Ln2Weight.Data, w.Ln2Bias.Data, N, C, eps);
            Keep(options.OutputLayerActivations, $"{layer}.ln_2", ln, C);
            MatMul.Forward(hidden, ln, w.FcWeight.Data, w.FcBias.Data, N, C, inner);
            Gelu.Forward(hidden, hidden, inner);
            MatMul.Forward(sublayer, hidden, w.FcProjWeight.Data, w.FcProjBias.Data, N, inner, C);
            Keep(options.OutputLayerActivations, $"{layer}.mlp", sublayer, C);
            TensorPrimitives.Add(x, sublayer, x);

            Keep(options.OutputLayerActivations, $"{layer}.out", x, C);
            // hidden_states.L is the ln_f output below, not the last block's raw output.
            if (l < Config.LayerCount - 1) Keep(options.OutputHiddenStates, $"hidden_states.{l + 1}", x, C);
        }
        cache.Length = past + T;

        var output = new float[N * C];
        LayerNorm.Forward(output, x, Weights.FinalNormWeight.Data, Weights.FinalNormBias.Data, N, C, eps);
        var last = new FloatTensor(output, B, T, C);
        if (options.OutputHiddenStates) activations[$"hidden_states.{Config.LayerCount}"] = last;
        return new BackboneOutput(last, activations, Config.LayerCount);
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

    private void CheckTokenIds(int[] ids)
    {
        for (var i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException("ids", ids[i], $"token id at index {i} is outside the vocabulary [0, {Config.VocabSize})");
        }
    }

    /// <summary>
    /// Position ids of the new tokens, and each row's position counter after them. Without explicit ids,
    /// a real token's position is the number of real tokens before it in its row and padding gets
    /// position 1, which is what Hugging Face derives from the attention mask.
    /// </summary>
    private (int[] Positions, int[] NextPositions) PositionsFor(TokenBatch batch, KvCache cache)
    {
        int B = batch.BatchSize, T = batch.SequenceLength;
        var positions = new int[B * T];
        var nextPositions = new int[B];
        for (var b = 0; b < B; b++)
        {
            var next = cache.NextPosition[b];
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
}
