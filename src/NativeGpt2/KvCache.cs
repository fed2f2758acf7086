using NativeGpt2.Backends;

namespace NativeGpt2;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, so that generation runs the backbone
/// over the prompt once and then over one new token per step. They live in the model's backend (device
/// memory on a GPU); the mask and position counters are also kept on the host.
/// </summary>
/// <remarks>
/// Create one with <see cref="Gpt2Backbone.CreateCache"/> and pass it to every forward pass of the same
/// sequences. A cache belongs to one sequence batch and one thread at a time. Dispose it to release its
/// device memory at once (on the CPU backend it is ordinary managed memory).
/// </remarks>
public sealed class KvCache : IDisposable
{
    private readonly bool _ownsBuffers;
    private bool _maskStale = true;

    /// <summary>A cache with buffers of its own.</summary>
    internal KvCache(Gpt2Config config, IBackend backend, int batchSize, int capacity)
        : this(config, backend, batchSize, capacity, null, null, null)
    {
    }

    /// <summary>A cache over existing buffers of at least B·NH·capacity·HS floats per layer (a workspace's scratch cache), or new ones when null.</summary>
    internal KvCache(Gpt2Config config, IBackend backend, int batchSize, int capacity,
        DeviceBuffer<float>[]? keys, DeviceBuffer<float>[]? values, DeviceBuffer<int>? mask)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, config.ContextLength);
        BatchSize = batchSize;
        Capacity = capacity;
        Backend = backend;
        var perLayer = (long)batchSize * config.HeadCount * capacity * config.HeadSize;
        if (perLayer > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"a cache of batch {batchSize} × {capacity} positions exceeds the largest .NET array per layer");
        Mask = new int[batchSize * capacity];
        NextPosition = new int[batchSize];
        _ownsBuffers = keys is null;
        if (!_ownsBuffers)
        {
            Keys = keys!;
            Values = values!;
            DeviceMask = mask!;
            return;
        }
        Keys = new DeviceBuffer<float>[config.LayerCount];
        Values = new DeviceBuffer<float>[config.LayerCount];
        try
        {
            for (var l = 0; l < config.LayerCount; l++)
            {
                Keys[l] = backend.Allocate<float>(perLayer);
                Values[l] = backend.Allocate<float>(perLayer);
            }
            DeviceMask = backend.Allocate<int>(Mask.Length);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>B: sequences in the cache.</summary>
    public int BatchSize { get; }

    /// <summary>Positions the cache can hold (at most the model's context length).</summary>
    public int Capacity { get; }

    /// <summary>Positions filled so far (including padding).</summary>
    public int Length { get; internal set; }

    /// <summary>The backend whose memory holds the keys and values.</summary>
    internal IBackend Backend { get; }

    /// <summary>Keys per layer (B, NH, Capacity, HS).</summary>
    internal DeviceBuffer<float>[] Keys { get; }

    /// <summary>Values per layer (B, NH, Capacity, HS).</summary>
    internal DeviceBuffer<float>[] Values { get; }

    /// <summary>Attention mask of the cached positions (B, Capacity) on the backend.</summary>
    internal DeviceBuffer<int> DeviceMask { get; } = null!;

    /// <summary>The same mask on the host: 1 for a real token, 0 for padding or an empty slot.</summary>
    internal int[] Mask { get; }

    /// <summary>Position id the next real token of each row gets (B): the count of real tokens so far.</summary>
    internal int[] NextPosition { get; }

    /// <summary>
    /// Records the mask of T new tokens at [Length, Length + T) of every row, on the host and the backend
    /// (only the new slice is copied, unless the whole mask changed since the last pass).
    /// </summary>
    internal void AppendMask(int T, int[]? attentionMask)
    {
        var past = Length;
        for (var b = 0; b < BatchSize; b++)
        {
            var row = Mask.AsSpan(b * Capacity + past, T);
            if (attentionMask is null) row.Fill(1);
            else attentionMask.AsSpan(b * T, T).CopyTo(row);
            if (!_maskStale) Backend.CopyFromHost(DeviceMask, b * Capacity + past, row);
        }
        if (_maskStale)
        {
            Backend.CopyFromHost(DeviceMask, 0, Mask);
            _maskStale = false;
        }
    }

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
        _maskStale = true;
    }

    /// <summary>Forgets every cached token, keeping the buffers.</summary>
    public void Reset()
    {
        Length = 0;
        Array.Clear(Mask);
        Array.Clear(NextPosition);
        _maskStale = true;
    }

    /// <summary>Releases the keys and values.</summary>
    public void Dispose()
    {
        if (!_ownsBuffers) return;
        foreach (var buffer in Keys.Concat(Values)) buffer?.Dispose();
        DeviceMask?.Dispose();
    }
}
