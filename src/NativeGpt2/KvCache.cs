namespace NativeGpt2;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, so that generation runs the backbone
/// over the prompt once and then over one new token per step.
/// </summary>
/// <remarks>
/// Create one with <see cref="Gpt2Backbone.CreateCache"/> and pass it to every forward pass of the same
/// sequences. A cache belongs to one sequence batch and one thread at a time.
/// </remarks>
public sealed class KvCache
{
    internal KvCache(Gpt2Config config, int batchSize, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, config.ContextLength);
        BatchSize = batchSize;
        Capacity = capacity;
        var perLayer = (long)batchSize * config.HeadCount * capacity * config.HeadSize;
        if (perLayer > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"a cache of batch {batchSize} × {capacity} positions exceeds the largest .NET array per layer");
        Keys = new float[config.LayerCount][];
        Values = new float[config.LayerCount][];
        for (var l = 0; l < config.LayerCount; l++)
        {
            Keys[l] = new float[perLayer];
            Values[l] = new float[perLayer];
        }
        Mask = new int[batchSize * capacity];
        NextPosition = new int[batchSize];
    }

    /// <summary>B: sequences in the cache.</summary>
    public int BatchSize { get; }

    /// <summary>Positions the cache can hold (at most the model's context length).</summary>
    public int Capacity { get; }

    /// <summary>Positions filled so far (including padding).</summary>
    public int Length { get; internal set; }

    /// <summary>Keys per layer (B, NH, Capacity, HS).</summary>
    internal float[][] Keys { get; }

    /// <summary>Values per layer (B, NH, Capacity, HS).</summary>
    internal float[][] Values { get; }

    /// <summary>Attention mask of the cached positions (B, Capacity).</summary>
    internal int[] Mask { get; }

    /// <summary>Position id the next real token of each row gets (B): the count of real tokens so far.</summary>
    internal int[] NextPosition { get; }

    /// <summary>
    /// Keeps the first <paramref name="length"/> positions and forgets the rest, so decoding can continue
    /// from an earlier point (a shared prompt, a rejected draft). Positions of later tokens continue from
    /// the number of real tokens kept.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or beyond <see cref="Length"/>.</exception>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        for (var b = 0; b < BatchSize; b++)
        {
            var row = Mask.AsSpan(b * Capacity, Capacity);
            row[length..].Clear();
            NextPosition[b] = row[..length].Count(1);
        }
        Length = length;
    }

    /// <summary>Forgets every cached token, keeping the buffers.</summary>
    public void Reset()
    {
        Length = 0;
        Array.Clear(Mask);
        Array.Clear(NextPosition);
    }
}
