using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NativeGpt2.Backends;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Loading;
using NativeGpt2.Tokenization;
using NativeGpt2.Weights;

namespace NativeGpt2;

/// <summary>
/// GPT-2 as a language model: a <see cref="Gpt2Backbone"/> whose hidden states feed an
/// <see cref="EmbeddingTransposeProjection"/> head.
/// </summary>
/// <example>
/// <code>
/// using var model = Gpt2CausalLM.Load("reference-data/models/tiny");
/// var output = model.Forward(TokenBatch.FromIds([1, 2, 3]));
/// float[] logits = output.Logits.Data; // (1, 3, V)
/// </code>
/// </example>
public sealed partial class Gpt2CausalLM : IDisposable
{
    /// <summary>Prefix of a model spec that builds a full-size model from the synthetic-weights formula.</summary>
    public const string SyntheticPrefix = "synthetic:";

    /// <summary>
    /// How many more rows a model may have than its tokenizer has tokens: a vocabulary padded to a multiple of 64, 128 or
    /// 256 (nanoGPT pads GPT-2's 50,257 to 50,304). The extra ids decode to nothing. More than this is taken for the
    /// tokenizer of another model.
    /// </summary>
    public const int MaxPaddingRows = 255;

    private readonly ModelLifetime _lifetime;
    private readonly BackendWeights _deviceWeights;
    private readonly WorkspacePool _workspaces;

    /// <summary>Builds a model from weights already in memory, with an optional tokenizer, on the CPU backend.</summary>
    /// <exception cref="ModelFormatException">The config is invalid, or the tokenizer has more tokens than the config's vocabulary, or more than <see cref="MaxPaddingRows"/> fewer.</exception>
    /// <exception cref="ArgumentException">A weight is missing or has the wrong shape for the config.</exception>
    public Gpt2CausalLM(Gpt2Config config, Gpt2Weights weights, Gpt2Tokenizer? tokenizer = null, string source = "in-memory")
        : this(config, weights, tokenizer, source, CpuBackend.Instance, ownsBackend: false)
    {
    }

    /// <summary>
    /// Builds a model on <paramref name="backend"/>: the weights are handed to it once, here. With
    /// <paramref name="ownsBackend"/>, disposing the model disposes the backend.
    /// </summary>
    /// <exception cref="BackendUnavailableException">The backend cannot run a model of this shape (<see cref="IBackend.CannotRun"/>).</exception>
    /// <exception cref="OutOfDeviceMemoryException">The backend's memory cannot hold the weights.</exception>
    public Gpt2CausalLM(Gpt2Config config, Gpt2Weights weights, Gpt2Tokenizer? tokenizer, string source, IBackend backend, bool ownsBackend)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(backend);
        CheckShapes(config, weights);
        if (backend.CannotRun(config) is { } reason) throw new BackendUnavailableException(backend.Name, reason);
        if (tokenizer is not null && !tokenizer.FitsModelOf(config.VocabSize))
            throw new ModelFormatException(source, "vocab_size", $"config.json says {config.VocabSize} tokens but the tokenizer has {tokenizer.VocabSize}");
        Config = config;
        Source = source;
        // Rows past the tokenizer's tokens (a padded vocabulary) decode to nothing.
        Tokenizer = tokenizer?.PaddedTo(config.VocabSize);
        Backend = backend;
        try
        {
            using (backend.Enter())
                _deviceWeights = new BackendWeights(backend, weights);
        }
        catch (OutOfDeviceMemoryException e)
        {
            // What was placed before is freed (BackendWeights disposes its own on failure); say which model did not fit.
            throw new OutOfDeviceMemoryException(e.Backend, e.RequestedBytes,
                $"the weights of {source} ({config.ParameterCount:N0} parameters) do not fit: {e.Problem}", e);
        }
        catch (OutOfMemoryException e)
        {
            // The process's own memory, running out while a backend converted or packed a weight.
            throw new OutOfDeviceMemoryException(backend.Name, 0,
                $"the weights of {source} ({config.ParameterCount:N0} parameters) do not fit: the process ran out of memory placing them. "
                + OutOfDeviceMemoryException.HostAdvice, e);
        }
        _workspaces = new WorkspacePool(backend, config);
        // Device memory is released when the model is disposed and no call is still using it.
        _lifetime = new ModelLifetime(() =>
        {
            using (backend.Enter())
            {
                _workspaces.Dispose();
                _deviceWeights.Dispose();
            }
            if (ownsBackend) backend.Dispose();
        });
        Backbone = new Gpt2Backbone(config, weights, backend, _deviceWeights, _workspaces, _lifetime);
        // Tied: the head reads wte itself (the same buffer). Untied: lm_head.weight.
        Head = new EmbeddingTransposeProjection(weights.LmHead ?? weights.TokenEmbedding, backend, _deviceWeights.Head, _lifetime);
    }

    /// <summary>Where the model runs: <c>cpu</c>, <c>ilgpu-cpu</c> or <c>cuda</c>.</summary>
    public IBackend Backend { get; }

    /// <summary>The architecture.</summary>
    public Gpt2Config Config { get; }

    /// <summary>Weights built in memory get the same shape check as a loaded checkpoint, so the kernels never see a mismatch.</summary>
    private static void CheckShapes(Gpt2Config config, Gpt2Weights weights)
    {
        config.Validate("config");
        var actual = weights.All.ToDictionary(w => w.Name, w => w.Shape);
        var problems = Gpt2Weights.ExpectedTensors(config)
            .Where(e => !actual.TryGetValue(e.Name, out var shape) || !shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: {(actual.TryGetValue(e.Name, out var shape) ? FloatTensor.ShapeToString(shape) : "missing")}, expected {FloatTensor.ShapeToString(e.Shape)}")
            .ToList();
        if (problems.Count > 0)
            throw new ArgumentException($"the weights do not fit the config: {string.Join("; ", problems)}", nameof(weights));
    }

    /// <summary>Where the model came from: a directory or a <c>synthetic:</c> name.</summary>
    public string Source { get; }

    /// <summary>The tokenizer from the checkpoint's vocab.json and merges.txt (the original GPT-2 vocabulary for synthetic models); null if the checkpoint has none.</summary>
    public Gpt2Tokenizer? Tokenizer { get; }

    /// <summary><see cref="ModelLoadOptions.Logger"/> of the load, for warnings about the texts this model is given.</summary>
    internal ILogger Logger { get; private set; } = NullLogger.Instance;

    /// <summary>Token ids (B, T) → hidden states (B, T, C).</summary>
    public Gpt2Backbone Backbone { get; }

    /// <summary>Hidden states → logits (V per position).</summary>
    public EmbeddingTransposeProjection Head { get; }

    /// <summary>Whether the head reads the token-embedding matrix in place.</summary>
    public bool IsTied => ReferenceEquals(Head.Weight, Backbone.Weights.TokenEmbedding);

    /// <summary>
    /// Loads a model from a spec: a Hugging Face checkpoint directory; a hub name (<c>gpt2</c>,
    /// <c>gpt2-medium</c>, <c>gpt2-large</c>, <c>gpt2-xl</c>, <c>distilgpt2</c> or <c>org/name</c>), found in the
    /// hub cache or downloaded into it; or <c>synthetic:gpt2</c> (also <c>-medium</c>, <c>-large</c>, <c>-xl</c>)
    /// for a full-size model built from the synthetic-weights formula.
    /// </summary>
    /// <exception cref="ModelNotFoundException">The spec names no loadable model.</exception>
    /// <exception cref="ModelFormatException">A file is malformed or does not fit the config.</exception>
    /// <exception cref="ModelDownloadException">A hub download failed.</exception>
    /// <exception cref="BackendUnavailableException">The backend cannot run here, or cannot run this model.</exception>
    /// <exception cref="OutOfDeviceMemoryException">The backend's memory (the GPU's, for <c>cuda</c>) cannot hold the weights.</exception>
    public static Gpt2CausalLM Load(string spec, ModelLoadOptions? options = null) =>
        LoadAsync(spec, options).GetAwaiter().GetResult();

    /// <summary>Loads a model from a spec (see <see cref="Load"/>); downloads and file reads do not block the caller.</summary>
    public static async Task<Gpt2CausalLM> LoadAsync(string spec, ModelLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        options ??= new ModelLoadOptions();
        var logger = options.Logger ?? NullLogger.Instance;

        // The backend first: the weights are read straight into the layout its matmul reads.
        var (backend, owned) = options.BackendInstance is { } shared ? (shared, false) : BackendRegistry.Create(options.Backend);
        Gpt2CausalLM model;
        try
        {
            var storage = new WeightStorage(options.WeightFormat, backend.MatrixLayout);
            Gpt2Config config;
            Gpt2Weights weights;
            Gpt2Tokenizer? tokenizer;
            if (ModelSpec.SyntheticConfig(spec) is { } synthetic)
            {
                config = synthetic;
                tokenizer = Gpt2Tokenizer.Gpt2;
                var progress = options.Progress is { } p ? new Progress<double>(f => p.Report(new LoadProgress("generating synthetic weights", f))) : null;
                weights = await Task.Run(() => SyntheticWeights.Create(config, storage, progress), cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var directory = await ModelSpec.ResolveDirectoryAsync(spec, options, cancellationToken).ConfigureAwait(false);
                // The tokenizer and the weights side by side (building the tokenizer is mostly compiling its code, one
                // thread). Its errors come first: a malformed tokenizer stops the weights between tensors and is reported.
                using var abandon = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var reading = Task.Run(() => CheckpointLoader.Load(directory, logger, options.Progress, storage, abandon.Token), abandon.Token);
                try
                {
                    tokenizer = await Task.Run(() => Gpt2Tokenizer.TryLoad(directory), cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    await abandon.CancelAsync().ConfigureAwait(false);
                    try
                    {
                        await reading.ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        // Stopped, or failed on its own: the tokenizer's error is the one to report.
                    }
                    throw;
                }
                (config, weights) = await reading.ConfigureAwait(false);
                if (tokenizer?.MismatchWithModelOf(config.VocabSize, Gpt2Tokenizer.VocabularyFile(directory)!) is { } mismatch)
                    throw mismatch;
                if (tokenizer is not null && tokenizer.VocabSize < config.VocabSize)
                    logger.LogInformation("{Spec}: the tokenizer has {Tokens:N0} tokens and the model {Rows:N0} rows (a padded vocabulary): ids {First:N0}-{Last:N0} decode to nothing",
                        spec, tokenizer.VocabSize, config.VocabSize, tokenizer.VocabSize, config.VocabSize - 1);
            }
            model = new Gpt2CausalLM(config, weights, tokenizer, spec, backend, owned);
        }
        catch (OutOfMemoryException e)
        {
            // The process's own memory, running out while the checkpoint was read (or the synthetic weights made).
            if (owned) backend.Dispose();
            throw new OutOfDeviceMemoryException(backend.Name, 0,
                $"loading {spec} ran out of the process's memory. {OutOfDeviceMemoryException.HostAdvice}", e);
        }
        catch
        {
            if (owned) backend.Dispose();
            throw;
        }
        model.Logger = logger;
        var loaded = model.Config;
        logger.LogInformation("Loaded {Spec}: {Parameters:N0} parameters, V={V} C={C} L={L} NH={NH} context={Context}, head {Head}",
            spec, loaded.ParameterCount, loaded.VocabSize, loaded.EmbeddingSize, loaded.LayerCount, loaded.HeadCount, loaded.ContextLength,
            model.IsTied ? "tied to wte" : "untied lm_head");
        logger.LogInformation("Backend {Name}: {Description}; weights {Formats}", backend.Name, backend.Description,
            string.Join(", ", model.Backbone.Weights.All.Select(w => w.Format).Distinct()));
        if (backend.Advice is { } advice) logger.LogWarning("Backend {Name}: {Advice}", backend.Name, advice);
        if (model.Tokenizer is null) logger.LogInformation("No vocab.json in {Spec}: the model takes token ids only", spec);
        return model;
    }

    /// <summary>
    /// Runs backbone and head; logits are computed for every position. Parameters as in
    /// <see cref="Gpt2Backbone.Forward"/>; project chosen positions with <see cref="Head"/> instead when
    /// only some are needed.
    /// </summary>
    public CausalLMOutput Forward(TokenBatch batch, KvCache? cache = null, ForwardOptions? options = null) =>
        Project(batch, logits: null, cache, options);

    /// <summary>
    /// Runs backbone and head as <see cref="Forward(TokenBatch, KvCache?, ForwardOptions?)"/> does, writing the logits
    /// into <paramref name="logits"/>, a (B, T, V) tensor the caller keeps: repeated passes then allocate no logits
    /// (4·T·V bytes a sequence: 100 MB for 512 tokens of GPT-2, whose first write into fresh memory costs as much as
    /// 5 % of the pass). The output's <see cref="CausalLMOutput.Logits"/> is that tensor, overwritten by the next call
    /// that is given it.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="logits"/> is not (B, T, V) for this batch and model;
    /// checked before the pass, so the cache is untouched.</exception>
    public CausalLMOutput ForwardInto(TokenBatch batch, FloatTensor logits, KvCache? cache = null, ForwardOptions? options = null)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(logits);
        int[] shape = [batch.BatchSize, batch.SequenceLength, Config.VocabSize];
        if (!logits.Shape.AsSpan().SequenceEqual(shape))
            throw new ArgumentException($"logits must be {FloatTensor.ShapeToString(shape)} for this batch and model, found {logits.ShapeText}", nameof(logits));
        return Project(batch, logits, cache, options);
    }

    /// <summary>The pass of both forward methods: logits into <paramref name="logits"/>, or a new tensor when null.</summary>
    private CausalLMOutput Project(TokenBatch batch, FloatTensor? logits, KvCache? cache, ForwardOptions? options)
    {
        using var call = _lifetime.Enter();
        using var scope = Backend.Enter();
        using var pass = Backbone.Run(batch, cache, options ?? ForwardOptions.None);
        var N = pass.B * pass.T;
        // Every element is written (by the head, or by the copy back from a device), so it need not be cleared first.
        logits ??= new FloatTensor(GC.AllocateUninitializedArray<float>((int)Head.CheckLogitCount(N)), pass.B, pass.T, Config.VocabSize);
        // The head writes into the caller's array where the backend computes in host memory.
        var output = Backend.Wrap(logits.Data) ?? pass.Workspace.Logits(N);
        Head.Project(output, pass.Workspace.Output, N);
        Backend.Download(logits.Data, output, 0);
        var hidden = pass.Activations.TryGetValue($"hidden_states.{Config.LayerCount}", out var recorded)
            ? recorded
            : pass.Download(pass.Workspace.Output, Config.EmbeddingSize);
        return new CausalLMOutput(logits, new BackboneOutput(hidden, pass.Activations, Config.LayerCount));
    }

    /// <summary>
    /// Runs a batch into <paramref name="cache"/> and nothing more: a prompt's part whose logits no one reads (the shared
    /// batch runs a long prompt in parts of this kind, then its last part through <see cref="Next"/>).
    /// </summary>
    internal void Extend(TokenBatch batch, KvCache cache)
    {
        using var call = _lifetime.Enter();
        using var scope = Backend.Enter();
        using var pass = Backbone.Run(batch, cache, ForwardOptions.None);
    }

    /// <summary>
    /// Runs a batch through the model and takes each row's next-token logits at its last position, all on the
    /// backend: with <paramref name="greedy"/>, only the argmax of each row comes back (4 bytes a row), else
    /// the (B, V) logits. What generation runs every step. With <paramref name="hiddenStates"/>, the final hidden states
    /// of every position (B·T rows of C, after ln_f) come back too: contrastive search compares them. The logits come
    /// back in <paramref name="logitsInto"/> when it holds at least B·V values (a caller's buffer from an earlier step,
    /// no longer read; row b at b·V), else in a new array of B·V: each is a large-object-heap array, and one a step would cost a full
    /// collection every few steps. With <paramref name="topK"/> above 0 (and not greedy), each row's top-k candidates
    /// (<see cref="IBackend.TopKCandidates"/>) come back instead of the logits, and the logits too only when a row's
    /// candidates cannot be used (NaN or +∞, or too many ties).
    /// </summary>
    internal NextTokens Next(TokenBatch batch, KvCache cache, bool greedy, bool hiddenStates = false, float[]? logitsInto = null, int topK = 0)
    {
        using var call = _lifetime.Enter();
        using var scope = Backend.Enter();
        using var pass = Backbone.Run(batch, cache, ForwardOptions.None);
        int B = pass.B, T = pass.T, V = Config.VocabSize;
        var workspace = pass.Workspace;
        float[]? hidden = null;
        if (hiddenStates)
        {
            hidden = new float[B * T * Config.EmbeddingSize];
            Backend.Download(hidden, workspace.Output, 0);
        }
        // One token per row (a decoding step): the output rows are the last positions already, nothing to gather.
        var last = workspace.Output;
        if (T > 1)
        {
            var rows = workspace.Rows(B);
            Backend.CopyFromHost(rows, 0, Enumerable.Range(0, B).Select(b => b * T + T - 1).ToArray());
            last = workspace.Gathered(B);
            Backend.GatherRows(last, workspace.Output, rows, B, Config.EmbeddingSize);
        }
        var logits = workspace.Logits(B);
        Head.Project(logits, last, B);
        int[]? picks = null;
        if (greedy)
        {
            var device = workspace.Picks(B);
            Backend.ArgMax(device, logits, B, V);
            picks = new int[B];
            Backend.Download(picks, device, 0);
            // A row with NaN or +∞ is -1: its logits come back so the sampler can say what is wrong.
            if (!picks.Contains(-1)) return new NextTokens(picks, null, hidden);
        }
        TopKRows? candidates = null;
        if (topK > 0 && !greedy)
        {
            var capacity = IBackend.MaxTopKCapacity;
            var records = workspace.Candidates(B, capacity);
            Backend.TopKCandidates(records, logits, B, V, topK, capacity);
            candidates = TopKRows.For(B, capacity);
            Backend.Download(candidates.Records, records, 0);
            // A row with NaN or +∞, or too many ties: its logits come back too.
            if (candidates.AllUsable) return new NextTokens(null, null, hidden, candidates);
        }
        var host = logitsInto?.Length >= B * V ? logitsInto : new float[B * V];
        Backend.Download(host.AsSpan(0, B * V), logits, 0);
        return new NextTokens(picks, host, hidden, candidates);
    }

    /// <summary>Creates a key/value cache for incremental decoding (see <see cref="Gpt2Backbone.CreateCache"/>).</summary>
    public KvCache CreateCache(int batchSize, int? capacity = null) => Backbone.CreateCache(batchSize, capacity);

    /// <summary>
    /// Marks the model, its backbone and its head disposed: later calls on any of them throw
    /// <see cref="ObjectDisposedException"/>, and a generation in progress stops before its next token.
    /// Device memory is released as soon as no call is using it.
    /// </summary>
    public void Dispose() => _lifetime.Dispose();

    internal void ThrowIfDisposed() => _lifetime.ThrowIfDisposed();

    /// <summary>A call in progress: the model's memory is not released while one is open.</summary>
    internal IDisposable EnterCall() => _lifetime.Enter();
}

/// <summary>The result of <see cref="Gpt2CausalLM.Forward"/>.</summary>
/// <param name="Logits">(B, T, V) next-token logits at every position.</param>
/// <param name="Backbone">The backbone's hidden states and any requested activations.</param>
public sealed record CausalLMOutput(FloatTensor Logits, BackboneOutput Backbone);

/// <summary>
/// Shared lifetime of a model and the backbone and head it owns: a disposed flag, and the release of
/// device memory once the model is disposed and the last call using it has ended.
/// </summary>
internal sealed class ModelLifetime(Action? release = null)
{
    private readonly object _gate = new();
    private int _calls;
    private bool _disposed;
    private bool _released;

    /// <summary>Starts a call; throws if the model is disposed. Dispose the result when the call ends.</summary>
    public IDisposable Enter()
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            _calls++;
        }
        return new Call(this);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            if (_calls > 0) return;
        }
        Release();
    }

    public void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed)) throw new ObjectDisposedException(nameof(Gpt2CausalLM), "the model has been disposed");
    }

    private void Exit()
    {
        lock (_gate)
        {
            if (--_calls > 0 || !_disposed) return;
        }
        Release();
    }

    private void Release()
    {
        lock (_gate)
        {
            if (_released) return;
            _released = true;
        }
        release?.Invoke();
    }

    private sealed class Call(ModelLifetime owner) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) owner.Exit();
        }
    }
}

/// <summary>
/// What one generation step brings back from the backend: each row's argmax when decoding greedily
/// (-1 where a row holds NaN or +∞), the (B, V) logits when sampling or when a row could not be chosen, the final
/// hidden states of every position (B·T·C) when asked for, and each row's top-k candidates when asked for.
/// </summary>
internal sealed record NextTokens(int[]? Picks, float[]? Logits, float[]? Hidden = null, TopKRows? Candidates = null);

/// <summary>
/// Each row's top-k candidates as the backend wrote them (<see cref="IBackend.TopKCandidates"/>): a record a row of their
/// count (−1: read the row's logits), their ids and their logits' bits.
/// </summary>
internal sealed record TopKRows(int[] Records, int Capacity)
{
    /// <summary>Room for the records of <paramref name="rows"/> rows of up to <paramref name="capacity"/> candidates.</summary>
    public static TopKRows For(int rows, int capacity) => new(new int[rows * Operators.TopKCandidates.RecordLength(capacity)], capacity);

    private int RecordLength => Operators.TopKCandidates.RecordLength(Capacity);

    public int Rows => Records.Length / RecordLength;

    /// <summary>How many candidates row <paramref name="row"/> has, or −1 when its logits must be read instead.</summary>
    public int CountOf(int row) => Records[row * RecordLength];

    /// <summary>Whether the pick of row <paramref name="row"/> can be made from its candidates.</summary>
    public bool IsUsable(int row) => CountOf(row) >= 0;

    public bool AllUsable => Enumerable.Range(0, Rows).All(IsUsable);

    public ReadOnlySpan<int> IdsOf(int row) => Records.AsSpan(row * RecordLength + 1, CountOf(row));

    public ReadOnlySpan<float> ValuesOf(int row) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<int, float>(Records.AsSpan(row * RecordLength + 1 + Capacity, CountOf(row)));
}
