using System.Collections.Concurrent;

namespace NativeGpt2.Backends;

/// <summary>
/// The activations of one forward pass, in the backend's memory, for up to <see cref="Tokens"/> rows.
/// Workspaces are pooled per model and reused, so repeated passes (every decoding step) allocate nothing.
/// </summary>
internal sealed class Workspace : IDisposable
{
    private readonly IBackend _backend;
    private readonly Gpt2Config _config;
    private readonly List<IDisposable> _owned = [];
    private DeviceBuffer<int>? _rows, _targets, _picks, _candidates;
    private DeviceBuffer<float>? _gathered, _logits, _logProbs, _probabilities;
    private DeviceBuffer<float>[]? _scratchKeys, _scratchValues;
    private DeviceBuffer<int>? _scratchMask;

    public Workspace(IBackend backend, Gpt2Config config, int tokens)
    {
        _backend = backend;
        _config = config;
        Tokens = tokens;
        long n = tokens, c = config.EmbeddingSize;
        try
        {
            X = Own(backend.Allocate<float>(n * c));
            Ln = Own(backend.Allocate<float>(n * c));
            Qkv = Own(backend.Allocate<float>(n * 3 * c));
            Attn = Own(backend.Allocate<float>(n * c));
            Sublayer = Own(backend.Allocate<float>(n * c));
            Hidden = Own(backend.Allocate<float>(n * config.InnerSize));
            Output = Own(backend.Allocate<float>(n * c));
            Ids = Own(backend.Allocate<int>(n));
            Positions = Own(backend.Allocate<int>(n));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>N: rows (tokens) the fixed buffers hold.</summary>
    public int Tokens { get; }

    /// <summary>(N, C) the residual stream.</summary>
    public DeviceBuffer<float> X { get; }
    /// <summary>(N, C) a LayerNorm's output.</summary>
    public DeviceBuffer<float> Ln { get; }
    /// <summary>(N, 3C) queries, keys and values.</summary>
    public DeviceBuffer<float> Qkv { get; }
    /// <summary>(N, C) attention output, heads side by side, before c_proj.</summary>
    public DeviceBuffer<float> Attn { get; }
    /// <summary>(N, C) a sublayer's output before the residual add (only when it is recorded).</summary>
    public DeviceBuffer<float> Sublayer { get; }
    /// <summary>(N, 4C) the MLP's hidden layer.</summary>
    public DeviceBuffer<float> Hidden { get; }
    /// <summary>(N, C) the backbone's output, after ln_f.</summary>
    public DeviceBuffer<float> Output { get; }
    /// <summary>(N) token ids.</summary>
    public DeviceBuffer<int> Ids { get; }
    /// <summary>(N) position ids.</summary>
    public DeviceBuffer<int> Positions { get; }

    /// <summary>(R) row indices for <see cref="IBackend.GatherRows"/>.</summary>
    public DeviceBuffer<int> Rows(int count) => Grow(ref _rows, count);
    /// <summary>(R, C) gathered rows.</summary>
    public DeviceBuffer<float> Gathered(int count) => Grow(ref _gathered, (long)count * _config.EmbeddingSize);
    /// <summary>(R, V) logits.</summary>
    public DeviceBuffer<float> Logits(int count) => Grow(ref _logits, (long)count * _config.VocabSize);
    /// <summary>(R) greedy picks.</summary>
    public DeviceBuffer<int> Picks(int count) => Grow(ref _picks, count);
    /// <summary>(R) records of top-k candidates (<see cref="IBackend.TopKCandidates"/>).</summary>
    public DeviceBuffer<int> Candidates(int count, int capacity) => Grow(ref _candidates, (long)count * Operators.TopKCandidates.RecordLength(capacity));
    /// <summary>(R) scoring targets.</summary>
    public DeviceBuffer<int> Targets(int count) => Grow(ref _targets, count);
    /// <summary>(R) log-probabilities of the targets.</summary>
    public DeviceBuffer<float> LogProbabilities(int count) => Grow(ref _logProbs, count);
    /// <summary>Attention probabilities of one layer (B, NH, T, Tk), when requested.</summary>
    public DeviceBuffer<float> Probabilities(long count) => Grow(ref _probabilities, count);

    /// <summary>
    /// A cache for a pass that has none: (B, NH, T, HS) keys and values per layer (with <see cref="KvCache.Stride"/>
    /// slots for T) over this workspace's own buffers, reused from pass to pass.
    /// </summary>
    public KvCache ScratchCache(int batchSize, int length)
    {
        var slots = (long)batchSize * KvCache.SlotStride(length);
        var perLayer = slots * _config.EmbeddingSize;
        if (_scratchKeys is null || _scratchKeys[0].Length < perLayer)
        {
            _scratchKeys ??= new DeviceBuffer<float>[_config.LayerCount];
            _scratchValues ??= new DeviceBuffer<float>[_config.LayerCount];
            for (var l = 0; l < _config.LayerCount; l++)
            {
                DeviceBuffer<float>? keys = _scratchKeys[l], values = _scratchValues[l];
                _scratchKeys[l] = Grow(ref keys, perLayer);
                _scratchValues[l] = Grow(ref values, perLayer);
            }
        }
        Grow(ref _scratchMask, slots);
        return new KvCache(_config, _backend, batchSize, length, _scratchKeys, _scratchValues!, _scratchMask!);
    }

    private DeviceBuffer<T> Grow<T>(ref DeviceBuffer<T>? buffer, long count) where T : unmanaged
    {
        if (buffer is null || buffer.Length < count)
        {
            if (buffer is not null)
            {
                _owned.Remove(buffer);
                buffer.Dispose();
            }
            buffer = Own(_backend.Allocate<T>(Math.Max(count, 1)));
        }
        return buffer;
    }

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    public void Dispose()
    {
        foreach (var item in _owned) item.Dispose();
        _owned.Clear();
    }
}

/// <summary>Workspaces of one model, lent out one per pass: concurrent passes each get their own.</summary>
internal sealed class WorkspacePool(IBackend backend, Gpt2Config config) : IDisposable
{
    // Beyond this many idle workspaces, returned ones are released rather than kept.
    private const int MaxIdle = 4;
    private readonly ConcurrentBag<Workspace> _idle = [];

    /// <summary>A workspace for at least <paramref name="tokens"/> rows; return it with <see cref="Return"/>.</summary>
    public Workspace Rent(int tokens)
    {
        var rejected = new List<Workspace>();
        try
        {
            while (_idle.TryTake(out var workspace))
            {
                if (workspace.Tokens >= tokens) return workspace;
                rejected.Add(workspace);
            }
            return new Workspace(backend, config, tokens);
        }
        finally
        {
            // Smaller ones are released: the new one serves their sizes too.
            foreach (var small in rejected) small.Dispose();
        }
    }

    public void Return(Workspace workspace)
    {
        if (_idle.Count >= MaxIdle) workspace.Dispose();
        else _idle.Add(workspace);
    }

    public void Dispose()
    {
        while (_idle.TryTake(out var workspace)) workspace.Dispose();
    }
}
