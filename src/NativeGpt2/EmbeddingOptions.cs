namespace NativeGpt2;

/// <summary>How a text's per-token hidden states become its embedding.</summary>
public enum EmbeddingPooling
{
    /// <summary>The mean over the text's tokens (padding excluded): one vector per text.</summary>
    Mean,

    /// <summary>The last token's hidden state, which has seen the whole text: one vector per text.</summary>
    Last,

    /// <summary>No pooling: one vector per token.</summary>
    None,
}

/// <summary>Options of <see cref="Gpt2CausalLM.Embed(IReadOnlyList{string}, EmbeddingOptions?, CancellationToken)"/>.</summary>
public sealed record EmbeddingOptions
{
    /// <summary>How token vectors are combined. Default <see cref="EmbeddingPooling.Mean"/>.</summary>
    public EmbeddingPooling Pooling { get; init; } = EmbeddingPooling.Mean;

    /// <summary>
    /// Which hidden state to read, as in <c>hidden_states.i</c>: 0 is the embeddings, i in 1 … L−1 the output of
    /// block i, L the final output after <c>ln_f</c>. Null (the default) means L.
    /// </summary>
    public int? Layer { get; init; }

    /// <summary>Scale each vector to unit L2 length (a zero vector stays zero). Default false.</summary>
    public bool Normalize { get; init; }

    /// <summary>Texts run through the model together, in one left-padded batch. Default 16.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Keep the first context-length tokens of a longer text instead of failing. Default false.</summary>
    public bool Truncate { get; init; }

    /// <summary>Treat <c>&lt;|endoftext|&gt;</c> in a text as the special token rather than plain text.</summary>
    public bool AllowSpecialTokens { get; init; }

    /// <summary>Checks the options against a model with <paramref name="layerCount"/> blocks, naming the one out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is outside its range.</exception>
    public void Validate(int layerCount)
    {
        if (!Enum.IsDefined(Pooling)) throw new ArgumentOutOfRangeException(nameof(Pooling), Pooling, "not a pooling mode");
        if (Layer is < 0 || Layer > layerCount)
            throw new ArgumentOutOfRangeException(nameof(Layer), Layer, $"must be in [0, {layerCount}] (hidden_states.0 … hidden_states.{layerCount})");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "must be at least 1");
    }
}

/// <summary>The embedding of one text.</summary>
/// <param name="Vectors">Row-major (rows, dimensions): one row for pooled embeddings, one per token for <see cref="EmbeddingPooling.None"/>.</param>
/// <param name="Rows">1, or the token count without pooling.</param>
/// <param name="Dimensions">The model's embedding size (C).</param>
/// <param name="TokenCount">Tokens the text was read as (after truncation).</param>
public sealed record TextEmbedding(float[] Vectors, int Rows, int Dimensions, int TokenCount)
{
    /// <summary>The pooled vector (the first row).</summary>
    public ReadOnlyMemory<float> Vector => Vectors.AsMemory(0, Dimensions);

    /// <summary>Row <paramref name="row"/>: the token's vector without pooling.</summary>
    public ReadOnlySpan<float> this[int row] => Vectors.AsSpan(row * Dimensions, Dimensions);
}
