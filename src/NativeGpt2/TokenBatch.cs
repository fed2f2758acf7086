namespace NativeGpt2;

/// <summary>
/// Token ids (B, T) for one forward pass, with an optional attention mask (1 = real token, 0 = padding)
/// and optional explicit position ids, as Hugging Face takes them.
/// </summary>
public sealed class TokenBatch
{
    /// <summary>Creates a batch from row-major arrays of <paramref name="batchSize"/> × <paramref name="sequenceLength"/>.</summary>
    /// <exception cref="ArgumentException">An array does not have B·T entries, or a mask value is not 0 or 1.</exception>
    public TokenBatch(int[] ids, int batchSize, int sequenceLength, int[]? attentionMask = null, int[]? positionIds = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (batchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "a batch needs at least one sequence");
        if (sequenceLength < 1)
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, "a sequence needs at least one token (an empty prompt can start from <|endoftext|>)");
        var count = (long)batchSize * sequenceLength;
        if (ids.Length != count)
            throw new ArgumentException($"ids holds {ids.Length} values; batch {batchSize} × length {sequenceLength} needs {count}", nameof(ids));
        if (attentionMask is not null)
        {
            if (attentionMask.Length != count)
                throw new ArgumentException($"attentionMask holds {attentionMask.Length} values, needs {count}", nameof(attentionMask));
            var bad = Array.FindIndex(attentionMask, m => m is not (0 or 1));
            if (bad >= 0)
                throw new ArgumentException($"values must be 0 (padding) or 1 (token), found {attentionMask[bad]} at index {bad}", nameof(attentionMask));
        }
        if (positionIds is not null && positionIds.Length != count)
            throw new ArgumentException($"positionIds holds {positionIds.Length} values, needs {count}", nameof(positionIds));
        Ids = ids;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        AttentionMask = attentionMask;
        PositionIds = positionIds;
    }

    /// <summary>One unpadded sequence.</summary>
    public static TokenBatch FromIds(IReadOnlyCollection<int> ids) => new(ids.ToArray(), 1, ids.Count);

    /// <summary>
    /// Several sequences of different lengths, left-padded with <paramref name="padId"/> to the longest;
    /// the mask marks the padding and positions count real tokens only (pads get position 1, as Hugging Face does).
    /// </summary>
    public static TokenBatch LeftPadded(IReadOnlyList<IReadOnlyList<int>> sequences, int padId)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0) throw new ArgumentException("at least one sequence is needed", nameof(sequences));
        if (sequences.Any(s => s.Count == 0)) throw new ArgumentException("sequences must not be empty", nameof(sequences));
        var B = sequences.Count;
        var T = sequences.Max(s => s.Count);
        var ids = new int[B * T];
        var mask = new int[B * T];
        var positions = new int[B * T];
        for (var b = 0; b < B; b++)
        {
            var pad = T - sequences[b].Count;
            for (var t = 0; t < T; t++)
            {
                var real = t >= pad;
                ids[b * T + t] = real ? sequences[b][t - pad] : padId;
                mask[b * T + t] = real ? 1 : 0;
                positions[b * T + t] = real ? t - pad : 1;
            }
        }
        return new TokenBatch(ids, B, T, mask, positions);
    }

    /// <summary>
    /// Columns [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of every row, with their mask
    /// and position ids: a batch run in parts through a cache (parts after the first derive the same positions from it).
    /// </summary>
    internal TokenBatch Columns(int start, int count)
    {
        if (start == 0 && count == SequenceLength) return this;
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(start + count, SequenceLength, nameof(count));
        int[]? Slice(int[]? values)
        {
            if (values is null) return null;
            var part = new int[BatchSize * count];
            for (var b = 0; b < BatchSize; b++) Array.Copy(values, b * SequenceLength + start, part, b * count, count);
            return part;
        }
        return new TokenBatch(Slice(Ids)!, BatchSize, count, Slice(AttentionMask), Slice(PositionIds));
    }

    /// <summary>Token ids (B, T), row-major.</summary>
    public int[] Ids { get; }

    /// <summary>B: number of sequences.</summary>
    public int BatchSize { get; }

    /// <summary>T: tokens per sequence.</summary>
    public int SequenceLength { get; }

    /// <summary>Attention mask (B, T): 1 for tokens, 0 for padding; null when every position is a token.</summary>
    public int[]? AttentionMask { get; }

    /// <summary>Explicit position ids (B, T); null to derive them from the mask and the cache.</summary>
    public int[]? PositionIds { get; }
}
