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
    private readonly int _heads, _headSize;
    private bool _maskStale = true;

    /// <summary>Buffers <see cref="GatherFrom"/> writes into when it gathers within this cache, then swaps in; made on first use.</summary>
    private DeviceBuffer<float>[]? _spareKeys, _spareValues;

    /// <summary>A cache with buffers of its own.</summary>
    internal KvCache(Gpt2Config config, IBackend backend, int batchSize, int capacity)
        : this(config, backend, batchSize, capacity, null, null, null)
    {
    }

    /// <summary>
    /// A cache over existing buffers of at least B·NH·<see cref="SlotStride"/>(capacity)·HS floats per layer and
    /// B·<see cref="SlotStride"/>(capacity) mask entries (a workspace's scratch cache), or new ones when null.
    /// </summary>
    internal KvCache(Gpt2Config config, IBackend backend, int batchSize, int capacity,
        DeviceBuffer<float>[]? keys, DeviceBuffer<float>[]? values, DeviceBuffer<int>? mask)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, config.ContextLength);
        BatchSize = batchSize;
        Capacity = capacity;
        Stride = SlotStride(capacity);
        Backend = backend;
        RowFloats = config.HeadCount * Stride * config.HeadSize;
        (_heads, _headSize) = (config.HeadCount, config.HeadSize);
        var perLayer = (long)batchSize * RowFloats;
        if (perLayer > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"a cache of batch {batchSize} × {capacity} positions exceeds the largest .NET array per layer");
        Mask = new int[batchSize * Stride];
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

    /// <summary>
    /// Slots per row and head in the buffers: <see cref="Capacity"/> rounded up to the next odd multiple of 16, so that
    /// the rows of keys a CPU backend caches transposed (one row of <see cref="Stride"/> floats per channel) start on
    /// different cache sets; 1,024 floats (4 KB) apart, all 64 rows of a head fell on the same few sets and attention
    /// read them from L2. At most 31 slots more than the capacity.
    /// </summary>
    internal int Stride { get; }

    /// <summary>The slots per row and head for a capacity: see <see cref="Stride"/>.</summary>
    internal static int SlotStride(int capacity)
    {
        var stride = (capacity + 15) / 16 * 16;
        return stride / 16 % 2 == 0 ? stride + 16 : stride;
    }

    /// <summary>Floats one row (one sequence) takes in a layer's keys, and in its values.</summary>
    internal int RowFloats { get; }

    /// <summary>Positions filled so far (including padding).</summary>
    public int Length { get; internal set; }

    /// <summary>The backend whose memory holds the keys and values.</summary>
    internal IBackend Backend { get; }

    /// <summary>Keys per layer (B, NH, Stride, HS), positions [0, Capacity) of each used.</summary>
    internal DeviceBuffer<float>[] Keys { get; }

    /// <summary>Values per layer (B, NH, Stride, HS), positions [0, Capacity) of each used.</summary>
    internal DeviceBuffer<float>[] Values { get; }

    /// <summary>Attention mask of the cached positions (B, Stride) on the backend.</summary>
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
            var row = Mask.AsSpan(b * Stride + past, T);
            if (attentionMask is null) row.Fill(1);
            else attentionMask.AsSpan(b * T, T).CopyTo(row);
            if (!_maskStale) Backend.CopyFromHost(DeviceMask, b * Stride + past, row);
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
            var row = Mask.AsSpan(b * Stride, Capacity);
            row[length..].Clear();
            NextPosition[b] = row[..length].Count(1);
        }
        Length = length;
        _maskStale = true;
    }

    /// <summary>
    /// Row b takes what row <paramref name="rows"/>[b] of <paramref name="source"/> holds: its keys and values, mask and
    /// positions. Beam search follows its surviving beams this way, and spreads a prompt cached once in a one-row cache
    /// over every beam. <paramref name="source"/> may be this cache; otherwise it must have the same capacity.
    /// </summary>
    /// <param name="source">The cache the rows come from.</param>
    /// <param name="rows">For each row b of this cache, the row of <paramref name="source"/> it takes.</param>
    /// <param name="shared">
    /// Positions [0, shared) are not copied: every row of this cache already holds there what the gathered rows hold, and
    /// has since before this cache's first gather within itself (a prompt every beam shares, spread over the rows before
    /// the search).
    /// </param>
    internal void GatherFrom(KvCache source, int[] rows, int shared = 0)
    {
        if (!_ownsBuffers) throw new InvalidOperationException("a workspace's scratch cache cannot gather rows");
        if (rows.Length != BatchSize) throw new ArgumentException($"{rows.Length} rows named for a cache of {BatchSize}", nameof(rows));
        if (source.Stride != Stride || source.RowFloats != RowFloats || source.Keys.Length != Keys.Length)
            throw new ArgumentException("the caches differ in shape or capacity", nameof(source));
        foreach (var row in rows)
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)source.BatchSize, nameof(rows));
        var within = ReferenceEquals(source, this);
        if (within && rows.Select((row, b) => row == b).All(same => same)) return;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(shared, source.Length);
        // Within one cache a row may be read after another row took its place: gather into the spare buffers, then swap.
        // Fresh spare buffers hold no shared positions yet: their first gather copies every position.
        if (within && _spareKeys is null) (_spareKeys, _spareValues, shared) = (AllocateLike(Keys), AllocateLike(Values), 0);
        // Only the filled positions: the rest of a row is never read before it is written.
        CopySlots(within ? _spareKeys! : Keys, within ? _spareValues! : Values, source, rows, shared, source.Length, shared);
        if (within)
        {
            for (var l = 0; l < Keys.Length; l++)
            {
                (Keys[l], _spareKeys![l]) = (_spareKeys[l], Keys[l]);
                (Values[l], _spareValues![l]) = (_spareValues[l], Values[l]);
            }
        }
        var mask = new int[Mask.Length];
        var positions = new int[BatchSize];
        for (var b = 0; b < BatchSize; b++)
        {
            source.Mask.AsSpan(rows[b] * Stride, Stride).CopyTo(mask.AsSpan(b * Stride, Stride));
            positions[b] = source.NextPosition[rows[b]];
        }
        mask.CopyTo(Mask, 0);
        positions.CopyTo(NextPosition, 0);
        Length = source.Length;
        _maskStale = true;
    }

    /// <summary>
    /// Position <paramref name="slot"/> of row b takes row <paramref name="rows"/>[b]'s, in every layer (keys, values and
    /// mask): contrastive search spreads the candidate it keeps over the rows of its other candidates, whose caches differ
    /// only there. A row named as a source must keep its own slot (rows[rows[b]] = rows[b]).
    /// </summary>
    internal void CopySlot(int slot, int[] rows)
    {
        if (rows.Length != BatchSize) throw new ArgumentException($"{rows.Length} rows named for a cache of {BatchSize}", nameof(rows));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)slot, (uint)Length, nameof(slot));
        foreach (var row in rows)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)BatchSize, nameof(rows));
            if (rows[row] != row) throw new ArgumentException($"row {row} is copied from and also overwritten", nameof(rows));
        }
        if (rows.Select((row, b) => row == b).All(same => same)) return;
        CopySlots(Keys, Values, this, rows, slot, slot + 1, slot);
        for (var b = 0; b < BatchSize; b++)
        {
            Mask[b * Stride + slot] = Mask[rows[b] * Stride + slot];
            NextPosition[b] = NextPosition[rows[b]];
        }
        _maskStale = true;
    }

    /// <summary>
    /// Row <paramref name="row"/> takes the last <paramref name="count"/> filled positions of row <paramref name="sourceRow"/> of
    /// <paramref name="source"/> (a sequence's tokens, which end where the source's filled positions end) at positions
    /// [<paramref name="at"/>, at + count), with their mask and the row's next position; its other positions are masked out.
    /// The caches may differ in capacity and rows, not in model. <see cref="Length"/> is the caller's to set.
    /// </summary>
    internal void Place(int row, KvCache source, int sourceRow, int count, int at)
    {
        if (source.Keys.Length != Keys.Length || source._heads != _heads || source._headSize != _headSize)
            throw new ArgumentException("the caches belong to different models", nameof(source));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)BatchSize, nameof(row));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)sourceRow, (uint)source.BatchSize, nameof(sourceRow));
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)count, (uint)source.Length, nameof(count));
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)at + (uint)count, (uint)Capacity, nameof(at));
        var rows = new int[BatchSize];
        Array.Fill(rows, -1);
        rows[row] = sourceRow;
        var from = source.Length - count;
        CopySlots(Keys, Values, source, rows, at, at + count, from);
        var mask = Mask.AsSpan(row * Stride, Stride);
        mask.Clear();
        source.Mask.AsSpan(sourceRow * source.Stride + from, count).CopyTo(mask[at..]);
        NextPosition[row] = source.NextPosition[sourceRow];
        _maskStale = true;
    }

    /// <summary>
    /// In every layer, positions [<paramref name="from"/>, <paramref name="to"/>) of row b of <paramref name="keys"/> and
    /// <paramref name="values"/> (this cache's shape) take positions from <paramref name="sourceFrom"/> of row rows[b] of
    /// <paramref name="source"/>; rows named −1 are left as they are.
    /// </summary>
    private void CopySlots(DeviceBuffer<float>[] keys, DeviceBuffer<float>[] values, KvCache source, int[] rows, int from, int to, int sourceFrom)
    {
        // Between passes: the backend is this thread's only inside a scope (a GPU's context bound, no other pass on it).
        using var scope = Backend.Enter();
        using var indices = Backend.Upload(rows);
        for (var l = 0; l < keys.Length; l++)
            Backend.GatherCacheSlots(keys[l], values[l], source.Keys[l], source.Values[l], indices, BatchSize, from, to, Stride, _heads, _headSize, sourceFrom, source.Stride);
    }

    private DeviceBuffer<float>[] AllocateLike(DeviceBuffer<float>[] buffers)
    {
        var spare = new DeviceBuffer<float>[buffers.Length];
        try
        {
            for (var l = 0; l < spare.Length; l++) spare[l] = Backend.Allocate<float>((long)BatchSize * RowFloats);
        }
        catch
        {
            foreach (var buffer in spare) buffer?.Dispose();
            throw;
        }
        return spare;
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
        foreach (var buffer in Keys.Concat(Values).Concat(_spareKeys ?? []).Concat(_spareValues ?? [])) buffer?.Dispose();
        DeviceMask?.Dispose();
    }
}
