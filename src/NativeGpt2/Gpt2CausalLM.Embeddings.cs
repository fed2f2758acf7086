using System.Numerics.Tensors;

namespace NativeGpt2;

public sealed partial class Gpt2CausalLM
{
    /// <summary>
    /// Embeds each text: its tokens' hidden states at <see cref="EmbeddingOptions.Layer"/>, pooled as
    /// <see cref="EmbeddingOptions.Pooling"/> says. Texts go through the model in left-padded batches; each
    /// result is exactly what embedding that text alone gives.
    /// </summary>
    /// <exception cref="NativeGpt2Exception">The model has no tokenizer.</exception>
    /// <exception cref="ArgumentException">A text is null or empty, or longer than the context without <see cref="EmbeddingOptions.Truncate"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public IReadOnlyList<TextEmbedding> Embed(IReadOnlyList<string> texts, EmbeddingOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var tokenizer = RequireTokenizer();
        options ??= new EmbeddingOptions();
        var ids = new int[texts.Count][];
        for (var i = 0; i < texts.Count; i++)
        {
            if (string.IsNullOrEmpty(texts[i])) throw new ArgumentException($"text {i} is {(texts[i] is null ? "null" : "empty")}: there is nothing to embed", nameof(texts));
            ids[i] = Encode(tokenizer, texts[i], options.AllowSpecialTokens);
        }
        return EmbedIds(ids, options, cancellationToken);
    }

    /// <summary>Embeds one text (see <see cref="Embed(IReadOnlyList{string}, EmbeddingOptions?, CancellationToken)"/>).</summary>
    public TextEmbedding Embed(string text, EmbeddingOptions? options = null, CancellationToken cancellationToken = default) =>
        Embed([text], options, cancellationToken)[0];

    /// <summary>Embeds token-id sequences (see <see cref="Embed(IReadOnlyList{string}, EmbeddingOptions?, CancellationToken)"/>).</summary>
    /// <exception cref="ArgumentException">A sequence is empty, holds an id outside the vocabulary, or is longer than the context without truncation.</exception>
    public IReadOnlyList<TextEmbedding> EmbedIds(IReadOnlyList<IReadOnlyList<int>> sequences, EmbeddingOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        options ??= new EmbeddingOptions();
        options.Validate(Config.LayerCount);
        ThrowIfDisposed();
        var prepared = new int[sequences.Count][];
        for (var i = 0; i < sequences.Count; i++)
        {
            var sequence = sequences[i] ?? throw new ArgumentException($"sequence {i} is null", nameof(sequences));
            if (sequence.Count == 0) throw new ArgumentException($"sequence {i} is empty: there is nothing to embed", nameof(sequences));
            if (sequence.Count > Config.ContextLength && !options.Truncate)
                throw new ArgumentException($"text {i} has {sequence.Count} tokens, more than the context length of {Config.ContextLength} (set Truncate to keep the first {Config.ContextLength})", nameof(sequences));
            prepared[i] = sequence.Take(Config.ContextLength).ToArray();
            foreach (var id in prepared[i])
            {
                if ((uint)id >= (uint)Config.VocabSize)
                    throw new ArgumentException($"sequence {i} holds token id {id}, outside the vocabulary [0, {Config.VocabSize})", nameof(sequences));
            }
        }

        var results = new TextEmbedding[prepared.Length];
        var layer = options.Layer ?? Config.LayerCount;
        var forward = layer == Config.LayerCount ? ForwardOptions.None : new ForwardOptions { OutputHiddenStates = true };
        for (var start = 0; start < prepared.Length; start += options.BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var group = prepared.Skip(start).Take(options.BatchSize).ToArray();
            var batch = TokenBatch.LeftPadded(group, EndOfTextOrZero);
            var output = Backbone.Forward(batch, options: forward);
            var hidden = layer == Config.LayerCount ? output.LastHiddenState : output.HiddenStates![layer];
            for (var b = 0; b < group.Length; b++)
                results[start + b] = Pool(hidden, b, batch.SequenceLength, group[b].Length, options);
        }
        return results;
    }

    /// <summary>What pads a batch: the end-of-text token where there is one (its rows are masked out either way).</summary>
    private int EndOfTextOrZero => Config.EosTokenId ?? Tokenizer?.EndOfTextId ?? 0;

    /// <summary>Row b's real tokens (the last <paramref name="count"/> of T, after the left padding) pooled.</summary>
    private TextEmbedding Pool(FloatTensor hidden, int b, int T, int count, EmbeddingOptions options)
    {
        var C = Config.EmbeddingSize;
        var tokens = hidden.Data.AsSpan((b * T + T - count) * C, count * C);
        float[] vectors;
        switch (options.Pooling)
        {
            case EmbeddingPooling.Last:
                vectors = tokens[^C..].ToArray();
                break;
            case EmbeddingPooling.None:
                vectors = tokens.ToArray();
                break;
            default:
                // The mean in double, token by token in order: the same for a text alone or in any batch.
                var sum = new double[C];
                for (var t = 0; t < count; t++)
                {
                    var row = tokens.Slice(t * C, C);
                    for (var c = 0; c < C; c++) sum[c] += row[c];
                }
                vectors = sum.Select(s => (float)(s / count)).ToArray();
                break;
        }
        var rows = vectors.Length / C;
        if (options.Normalize)
        {
            for (var r = 0; r < rows; r++)
            {
                var row = vectors.AsSpan(r * C, C);
                var norm = TensorPrimitives.Norm(row);
                if (norm > 0) TensorPrimitives.Divide(row, norm, row);
            }
        }
        return new TextEmbedding(vectors, rows, C, count);
    }
}
