using System.Runtime.CompilerServices;
using System.Threading.Channels;
using NativeGpt2.Backends;
using NativeGpt2.Tokenization;

namespace NativeGpt2.Generation;

/// <summary>
/// Decodes the sequences of many callers as the rows of one batch (continuous batching): a sequence joins the batch at the
/// next step after it is asked for, and leaves it when it ends, while the others go on. A decoding step reads every weight
/// once for all its rows, so where decoding waits on memory (the CPU at small batches, a GPU) several callers are served
/// about as fast as one. Each sequence is exactly what <see cref="Gpt2CausalLM.GenerateUpdatesAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/>
/// gives it alone with its seed, whatever else shares the batch: rows never change each other's arithmetic.
/// </summary>
/// <remarks>
/// One thread of its own runs the batch. Each step it takes in a group of the sequences that arrived (at most
/// <see cref="MaxBatchSize"/> rows; the rest wait), runs their prompts together, picks a token for
/// every row on the host (each row with its own options and seed), and runs the rows that go on through the model as one
/// batch of single tokens. Prompts that run together are padded to the longest, so a group is formed from prompts of
/// similar length: the shortest waiting prompt leads and takes in the others whose padding stays small, and the oldest,
/// once passed over, leads the next group. Prompts longer than <see cref="PrefillChunkTokens"/> run a part of that many
/// tokens a step, so that the rows already decoding go on between the parts instead of waiting for the whole prompt
/// (chunked prefill), and a group that forms meanwhile and would run in under half the positions the running group has
/// left goes first, between two of its parts (no group is set aside more than once); when
/// no row is decoding, a prompt runs whole. When the rows change, or the cache fills, the rows move into a new cache sized for them, each
/// sequence's positions ending where the batch's end, so that no row keeps the positions a finished one held. Safe to use
/// from any number of threads; dispose it before the model.
/// </remarks>
public sealed class GenerationBatcher : IDisposable
{
    private readonly Gpt2CausalLM _model;
    private readonly Channel<Sequence> _arrivals = Channel.CreateUnbounded<Sequence>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _disposed = new();
    private readonly Thread _thread;

    /// <summary>A sequence being decoded: its row's state, its options and where its updates go.</summary>
    private sealed class Sequence(GenerationSession.Row row, GenerationOptions options, IReadOnlySet<int> ends, CancellationTokenSource cancellation)
    {
        public GenerationSession.Row Row { get; } = row;
        public GenerationOptions Options { get; } = options;
        public IReadOnlySet<int> Ends { get; } = ends;
        public CancellationTokenSource Cancellation { get; } = cancellation;
        public Channel<GenerationUpdate> Updates { get; } = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });

        /// <summary>What its next token is picked from: its row (<see cref="StepRow"/>) of the last step's (or of its prompt's) logits or top-k candidates.</summary>
        public NextTokens? Step { get; set; }
        public int StepRow { get; set; }

        /// <summary>Its row in the cache that holds it: the batch's, or its prompt group's (<see cref="Prefilled"/>).</summary>
        public int CacheRow { get; set; }
        public bool Prefilled { get; set; }

        /// <summary>Positions its cache row holds: every token but the last picked, which the next step runs.</summary>
        public int Held => Row.Tokens.Count - 1;

        /// <summary>Its updates are complete: finished, cancelled, or failed.</summary>
        public bool Ended { get; set; }

        public bool IsDone => Ended || Row.FinishReason is not null || Cancellation.IsCancellationRequested;

        /// <summary>It was the oldest waiting sequence when a prompt group formed without it: it leads the next group.</summary>
        public bool PassedOver { get; set; }
    }

    /// <summary>The default of <see cref="PrefillChunkTokens"/>.</summary>
    public const int DefaultPrefillChunkTokens = 256;

    /// <param name="model">The model every sequence runs on.</param>
    /// <param name="maxBatchSize">Rows decoded at once, 1 to <see cref="Gpt2CausalLM.MaxSequences"/> (default 8); sequences beyond wait their turn.</param>
    /// <param name="prefillChunkTokens">
    /// Prompt tokens run a step while other rows decode (default <see cref="DefaultPrefillChunkTokens"/>, at least 1): see
    /// <see cref="PrefillChunkTokens"/>.
    /// </param>
    public GenerationBatcher(Gpt2CausalLM model, int maxBatchSize = 8, int prefillChunkTokens = DefaultPrefillChunkTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        CheckBatchSize(maxBatchSize, nameof(maxBatchSize));
        CheckPrefillChunk(prefillChunkTokens, nameof(prefillChunkTokens));
        _model = model;
        MaxBatchSize = maxBatchSize;
        PrefillChunkTokens = prefillChunkTokens;
        _thread = new Thread(Run) { IsBackground = true, Name = "NativeGpt2 generation batcher" };
        _thread.Start();
    }

    /// <summary>The most rows a step decodes.</summary>
    public int MaxBatchSize { get; }

    /// <summary>
    /// The most prompt tokens (all joining prompts together, at least a position of each) run in one step while other rows
    /// are decoding: the longest a decoding row waits for a prompt is a pass over this many tokens, and a prompt of n tokens
    /// joining a busy batch takes about n ÷ this many steps to start. When no row is decoding, a prompt runs whole.
    /// </summary>
    public int PrefillChunkTokens { get; }

    /// <summary>A prompt part of fewer than one token is refused under <paramref name="name"/>.</summary>
    internal static void CheckPrefillChunk(int tokens, string name)
    {
        if (tokens < 1) throw new ArgumentOutOfRangeException(name, tokens, "must be at least 1");
    }

    /// <summary>A batch size out of [1, <see cref="Gpt2CausalLM.MaxSequences"/>] is refused under <paramref name="name"/>.</summary>
    internal static void CheckBatchSize(int size, string name)
    {
        if (size is < 1 or > Gpt2CausalLM.MaxSequences)
            throw new ArgumentOutOfRangeException(name, size, $"must be from 1 to {Gpt2CausalLM.MaxSequences}");
    }

    /// <summary>
    /// Whether sequences with these options decode in a shared batch: beam search, contrastive search and the sliding window
    /// decode on their own, through the model.
    /// </summary>
    public static bool CanBatch(GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return !Unbatched(options).Any();
    }

    /// <summary>The options set that keep a sequence out of a shared batch: the option's name, and what it asks for.</summary>
    private static IEnumerable<(string Name, string What)> Unbatched(GenerationOptions options)
    {
        if (options.NumBeams > 1) yield return (nameof(GenerationOptions.NumBeams), "beam search");
        if (options.IsContrastive) yield return (nameof(GenerationOptions.PenaltyAlpha), "contrastive search");
        if (options.SlidingWindow) yield return (nameof(GenerationOptions.SlidingWindow), "the sliding window");
    }

    /// <summary>The model every sequence runs on.</summary>
    public Gpt2CausalLM Model => _model;

    /// <summary>
    /// Raised on the batch's thread at each step, before its rows decode: the prompt positions the step ran (all prompts
    /// together), and the rows it is about to decode. What the tests watch the batch's schedule through.
    /// </summary>
    internal event Action<(int PromptTokens, int DecodingRows)>? Stepped;

    /// <summary>
    /// Streams the continuation of <paramref name="prompt"/>, decoded in the shared batch: the updates
    /// <see cref="Gpt2CausalLM.GenerateUpdatesAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/> gives, with
    /// <see cref="GenerationOptions.Seed"/> (or a fresh seed). The sequence joins the batch when this is first enumerated;
    /// cancelling, or leaving the enumeration, takes it out at the next step.
    /// </summary>
    /// <remarks>Options and the prompt are checked when this method is called. Beam search, contrastive search and the sliding window decode on their own: use the model.</remarks>
    /// <exception cref="ArgumentException">An option is out of range or one of those above, or the prompt does not fit the context.</exception>
    /// <exception cref="ObjectDisposedException">The batcher or the model is disposed.</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateUpdatesAsync(IReadOnlyList<int> prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
        _model.ThrowIfDisposed();
        options ??= new GenerationOptions();
        var tokenizer = _model.Tokenizer;
        var ids = GenerationSession.Prepare(_model.Config, [prompt.ToArray()], options, tokenizer)[0];
        if (Unbatched(options).FirstOrDefault() is ({ } name, var what))
            throw new ArgumentException($"{what} decodes on its own, not in a shared batch: use the model's Generate or GenerateUpdatesAsync", name);
        return Decode(ids, options, tokenizer, cancellationToken);
    }

    /// <summary><see cref="GenerateUpdatesAsync(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/> from text.</summary>
    /// <exception cref="NativeGpt2Exception">The model has no tokenizer.</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateUpdatesAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokenizer = _model.Tokenizer ?? throw new NativeGpt2Exception($"model '{_model.Source}' has no tokenizer ({Gpt2Tokenizer.NoTokenizerFiles}): pass token ids");
        return GenerateUpdatesAsync(tokenizer.Encode(prompt, (options ?? new GenerationOptions()).AllowSpecialTokens), options, cancellationToken);
    }

    private async IAsyncEnumerable<GenerationUpdate> Decode(int[] prompt, GenerationOptions options, Gpt2Tokenizer? tokenizer,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // The batch's thread disposes it when it is done with the sequence.
        var cancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposed.Token);
        var ends = GenerationSession.EndOfTextIds(_model.Config, tokenizer, options);
        var sequence = new Sequence(GenerationSession.NewRow(prompt, options.Seed, options, tokenizer), options, ends, cancellation);
        if (!_arrivals.Writer.TryWrite(sequence))
        {
            cancellation.Dispose();
            throw new ObjectDisposedException(nameof(GenerationBatcher));
        }
        var updates = sequence.Updates.Reader;
        try
        {
            while (true)
            {
                bool more;
                try
                {
                    more = await updates.WaitToReadAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (_disposed.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    throw new ObjectDisposedException(nameof(GenerationBatcher));
                }
                if (!more) yield break;
                while (updates.TryRead(out var update)) yield return update;
            }
        }
        finally
        {
            // Left early or cancelled: the batch drops the row at its next step.
            Cancel(sequence);
        }
    }

    private static void Cancel(Sequence sequence)
    {
        try
        {
            sequence.Cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The batch was done with it already.
        }
    }

    /// <summary>
    /// The buffers a batch's cache lives in, kept from one move to the next while the batch runs, and grown when it needs more: fresh memory
    /// costs the CPU a page fault a page on its first write (moving 8 rows of 66 positions of GPT-2 124M into fresh buffers
    /// took 140–200 ms, into used ones under 10).
    /// </summary>
    private sealed class CacheBuffers(Gpt2CausalLM model) : IDisposable
    {
        private DeviceBuffer<float>[] _keys = [], _values = [];
        private DeviceBuffer<int>? _mask;
        private long _floats, _slots;

        /// <summary>A cache of <paramref name="rows"/> rows and <paramref name="capacity"/> positions over these buffers.</summary>
        public KvCache Cache(int rows, int capacity)
        {
            var config = model.Config;
            var backend = model.Backend;
            var stride = KvCache.SlotStride(capacity);
            long floats = (long)rows * config.HeadCount * stride * config.HeadSize, slots = (long)rows * stride;
            if (floats > _floats)
            {
                Release();
                // A quarter more than asked: the next batch is often a row or a few positions larger.
                _floats = Math.Min(floats + floats / 4, Array.MaxLength);
                _keys = new DeviceBuffer<float>[config.LayerCount];
                _values = new DeviceBuffer<float>[config.LayerCount];
                for (var l = 0; l < config.LayerCount; l++)
                {
                    _keys[l] = backend.Allocate<float>(_floats);
                    _values[l] = backend.Allocate<float>(_floats);
                }
            }
            if (slots > _slots)
            {
                _mask?.Dispose();
                _slots = slots + slots / 4;
                _mask = backend.Allocate<int>(_slots);
            }
            return new KvCache(config, backend, rows, capacity, _keys, _values, _mask);
        }

        private void Release()
        {
            foreach (var buffer in _keys.Concat(_values)) buffer?.Dispose();
            (_keys, _values, _floats) = ([], [], 0);
        }

        public void Dispose()
        {
            Release();
            _mask?.Dispose();
            (_mask, _slots) = (null, 0);
        }
    }

    /// <summary>
    /// The prompts of sequences gathered into one group, left-padded into one batch and run into a cache of their own: whole,
    /// or a part each step while the batch's other rows go on decoding.
    /// </summary>
    private sealed class PromptGroup
    {
        private readonly TokenBatch _prompts;

        public PromptGroup(List<Sequence> members, CacheBuffers buffers)
        {
            // Padding is masked out: its id never reaches a row's arithmetic.
            _prompts = GenerationSession.PromptBatch([.. members.Select(s => s.Row.PromptIds)], padId: 0);
            Cache = buffers.Cache(members.Count, _prompts.SequenceLength);
            (Members, Buffers) = (members, buffers);
        }

        public List<Sequence> Members { get; }

        /// <summary>The kept buffers <see cref="Cache"/> lives in.</summary>
        public CacheBuffers Buffers { get; }

        /// <summary>Positions left to run, padding included, over all members.</summary>
        public long Remaining => (long)Members.Count * (_prompts.SequenceLength - Cache.Length);

        /// <summary>It was set aside once for a shorter group: it is not set aside again.</summary>
        public bool WasPaused { get; set; }

        /// <summary>The prompts' keys and values: every position once the last part has run.</summary>
        public KvCache Cache { get; }

        /// <summary>
        /// Runs the next part, at most <paramref name="tokens"/> tokens (at least a position of each prompt). True once the
        /// last part has run: every member then has its first logits and its row of <see cref="Cache"/>.
        /// </summary>
        public bool Advance(Gpt2CausalLM model, int tokens)
        {
            int done = Cache.Length, length = _prompts.SequenceLength;
            var part = _prompts.Columns(done, Math.Min(length - done, Math.Max(1, tokens / Members.Count)));
            if (done + part.SequenceLength < length)
            {
                model.Extend(part, Cache);
                return false;
            }
            var (greedy, topK) = PicksFor([.. Members.Select(m => m.Options)], model.Config.VocabSize);
            var step = model.Next(part, Cache, greedy, topK: topK);
            for (var b = 0; b < Members.Count; b++)
            {
                (Members[b].Step, Members[b].StepRow) = (step, b);
                (Members[b].CacheRow, Members[b].Prefilled) = (b, true);
            }
            return true;
        }
    }

    private void Run()
    {
        List<Sequence> live = [];
        // The last step's logits (when it brought any back), which every live row has picked from by the next step: that
        // step's come back in it.
        float[]? stepLogits = null;
        // The batch's cache: a view over one of the kept sets of buffers below, owning no memory of its own.
        KvCache? cache = null;
        // Prompts that run together, a part a step, while the live rows decode; and a group set aside while a much shorter
        // one that formed as it ran goes first (once: a group set aside, then resumed, runs to its end).
        PromptGroup? group = null, paused = null;
        // Sequences that arrived and wait for a group, oldest first.
        List<Sequence> waiting = [];
        // The batch's cache lives in one set of buffers and moves into the other; the prompt groups run in two more.
        using var current = new CacheBuffers(_model);
        using var spare = new CacheBuffers(_model);
        using var prompting = new CacheBuffers(_model);
        using var promptingAside = new CacheBuffers(_model);
        var (into, from) = (spare, current);
        while (true)
        {
            if (group is null && paused is not null) (group, paused) = (paused, null);
            if (live.Count == 0 && group is null && waiting.Count == 0)
            {
                cache = null;
                // Idle: wait for a sequence, or for the end. After a while the buffers go back, to be made again for the next
                // sequences (made afresh, they cost a page fault a page).
                if (!WaitForArrival(IdleRelease))
                {
                    current.Dispose();
                    spare.Dispose();
                    prompting.Dispose();
                    promptingAside.Dispose();
                    if (!WaitForArrival(Timeout.InfiniteTimeSpan)) break;
                }
            }
            // The sequences taken out of waiting for a new group this step: they fail with the step if the group cannot be made.
            List<Sequence> gathered = [];
            List<Sequence> joining = [];
            PromptGroup? joined = null;
            try
            {
                while (_arrivals.Reader.TryRead(out var arrival)) waiting.Add(arrival);
                foreach (var sequence in waiting.Where(s => s.IsDone)) Complete(sequence);
                waiting.RemoveAll(s => s.Ended);
                if (group is null && waiting.Count > 0 && live.Count < MaxBatchSize)
                {
                    gathered = Take(waiting, Choose(waiting, MaxBatchSize - live.Count));
                    group = new PromptGroup(gathered, prompting);
                }
                else if (group is { WasPaused: false } && paused is null && waiting.Count > 0 && live.Count + group.Members.Count < MaxBatchSize)
                {
                    // A group that would run in under half the positions the running one has left goes first: short prompts
                    // arriving just after a long one start at once instead of after all its parts.
                    var chosen = Choose(waiting, MaxBatchSize - live.Count - group.Members.Count);
                    if (2 * (long)chosen.Count * chosen.Max(i => waiting[i].Row.PromptIds.Length) < group.Remaining)
                    {
                        gathered = Take(waiting, chosen);
                        (paused, group) = (group, new PromptGroup(gathered, group.Buffers == prompting ? promptingAside : prompting));
                        paused.WasPaused = true;
                    }
                }
                foreach (var set in new[] { group, paused })
                {
                    if (set is null || !set.Members.All(s => s.IsDone)) continue;
                    // Every prompt of the group was cancelled before it finished running.
                    foreach (var sequence in set.Members.Where(s => !s.Ended)) Complete(sequence);
                    if (set == group) (group, paused) = (paused, null);
                    else paused = null;
                }
                var promptTokens = 0;
                if (group is not null)
                {
                    var before = group.Cache.Length;
                    var last = group.Advance(_model, live.Count == 0 ? int.MaxValue : PrefillChunkTokens);
                    promptTokens = (group.Cache.Length - before) * group.Members.Count;
                    if (last)
                    {
                        (joined, group) = (group, null);
                        joining = joined.Members;
                    }
                }

                // Every row picks its token from its logits, each with its own options and seed, side by side.
                var batch = live.Concat(joining).ToArray();
                GenerationSession.ForEachRow(batch.Length, b =>
                {
                    if (!batch[b].IsDone) Pick(batch[b]);
                });
                List<Sequence> going = [];
                foreach (var sequence in batch)
                {
                    if (!sequence.IsDone) going.Add(sequence);
                    else if (!sequence.Ended) Complete(sequence);
                }
                // New rows, rows gone, or no room for another position: the rows that go on move into a cache of their own.
                if (going.Count > 0 && (joining.Count > 0 || going.Count < live.Count || cache!.Length == cache.Capacity))
                {
                    cache = Rebuild(going, cache, joined?.Cache, into);
                    (into, from) = (from, into);
                }
                live = going;
                Stepped?.Invoke((promptTokens, live.Count));
                if (live.Count == 0) continue;
                var (greedy, topK) = PicksFor([.. live.Select(s => s.Options)], _model.Config.VocabSize);
                var step = _model.Next(new TokenBatch([.. live.Select(s => s.Row.Tokens[^1])], live.Count, 1), cache!, greedy, logitsInto: stepLogits, topK: topK);
                stepLogits = step.Logits ?? stepLogits;
                for (var b = 0; b < live.Count; b++) (live[b].Step, live[b].StepRow) = (step, b);
            }
            catch (Exception e)
            {
                // The model failed (disposed, or out of memory): every row in the batch, and every prompt running, fails with it.
                foreach (var sequence in live.Concat(gathered).Concat(joining).Concat(group?.Members ?? []).Concat(paused?.Members ?? []).Distinct().Where(s => !s.Ended))
                    End(sequence, e);
                live.Clear();
                cache = null;
                (group, paused) = (null, null);
            }
        }
        foreach (var sequence in live.Concat(group?.Members ?? []).Concat(paused?.Members ?? []).Concat(waiting).Where(s => !s.Ended))
            End(sequence, new ObjectDisposedException(nameof(GenerationBatcher)));
        while (_arrivals.Reader.TryRead(out var unread)) End(unread, new ObjectDisposedException(nameof(GenerationBatcher)));
    }

    /// <summary>The next prompt group of at most <paramref name="room"/> sequences (<see cref="PromptGrouping.Choose"/>): indices into <paramref name="waiting"/>.</summary>
    private List<int> Choose(List<Sequence> waiting, int room) =>
        PromptGrouping.Choose([.. waiting.Select(s => s.Row.PromptIds.Length)], waiting[0].PassedOver, room, PrefillChunkTokens);

    /// <summary>Takes the <paramref name="chosen"/> sequences out of <paramref name="waiting"/>; the oldest, if left out, leads the next group.</summary>
    private static List<Sequence> Take(List<Sequence> waiting, List<int> chosen)
    {
        var group = chosen.Select(i => waiting[i]).ToList();
        if (!chosen.Contains(0)) waiting[0].PassedOver = true;
        waiting.RemoveAll(group.Contains);
        return group;
    }

    /// <summary>How long the batch keeps its buffers when no sequence is left: traffic that pauses briefly finds them made.</summary>
    private static readonly TimeSpan IdleRelease = TimeSpan.FromSeconds(2);

    /// <summary>Waits up to <paramref name="timeout"/> for a sequence to arrive: false when none came or the batcher was disposed.</summary>
    private bool WaitForArrival(TimeSpan timeout)
    {
        try
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token);
            wait.CancelAfter(timeout);
            return _arrivals.Reader.WaitToReadAsync(wait.Token).AsTask().GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>
    /// What a step of sequences with these options brings back for their picks: each row's argmax (4 bytes a row) when every
    /// sequence is greedy with nothing that reads other tokens; else, when candidates decide every pick
    /// (<see cref="Sampler.CandidatesNeeded"/>: greedy too), the top-k candidates of the largest k the sequences need; else the
    /// logits (k = 0). A sequence that needs a smaller k picks from the larger set what it would pick from its own: every
    /// token at least its k-th largest is among them.
    /// </summary>
    internal static (bool Greedy, int TopK) PicksFor(IReadOnlyCollection<GenerationOptions> sequences, int V)
    {
        var needed = sequences.Select(options => Sampler.CandidatesNeeded(options, V)).ToArray();
        if (needed.Length == 0 || needed.Contains(0)) return (false, 0);
        return (sequences.All(Sampler.PicksArgMax), needed.Max());
    }

    /// <summary>Picks the sequence's next token and sends the update; a sampling failure (NaN logits) ends that sequence alone.</summary>
    private void Pick(Sequence sequence)
    {
        var row = sequence.Row;
        var V = _model.Config.VocabSize;
        try
        {
            var (step, b) = (sequence.Step!, sequence.StepRow);
            var id = GenerationSession.Pick(step, b, V, row, sequence.Options, sequence.Ends);
            GenerationSession.Advance(row, id, step.Logits is { } logits ? logits.AsSpan(b * V, V) : default, sequence.Options, sequence.Ends);
        }
        catch (Exception e) when (e is NumericalException or NativeGpt2Exception)
        {
            End(sequence, e);
            return;
        }
        sequence.Updates.Writer.TryWrite(GenerationSession.Update(row, sequence: 0));
    }

    /// <summary>Ends a sequence that finished or was cancelled.</summary>
    private static void Complete(Sequence sequence) =>
        End(sequence, sequence.Row.FinishReason is null ? new OperationCanceledException("the sequence was cancelled") : null);

    /// <summary>Ends a sequence's updates (with <paramref name="error"/>, if any) and releases its cancellation source.</summary>
    private static void End(Sequence sequence, Exception? error)
    {
        sequence.Updates.Writer.TryComplete(error);
        sequence.Ended = true;
        sequence.Cancellation.Dispose();
    }

    /// <summary>
    /// A cache for <paramref name="going"/>, each row's positions ending where the batch's end (the longest row's start at 0),
    /// with room for the most tokens any row may still take (at most the context).
    /// </summary>
    private KvCache Rebuild(List<Sequence> going, KvCache? batch, KvCache? prompts, CacheBuffers buffers)
    {
        var length = going.Max(s => s.Held);
        var room = going.Max(s => s.Options.MaxNewTokens - s.Row.Generated.Count);
        var cache = buffers.Cache(going.Count, Math.Min(_model.Config.ContextLength, length + room));
        for (var r = 0; r < going.Count; r++)
        {
            var sequence = going[r];
            cache.Place(r, sequence.Prefilled ? prompts! : batch!, sequence.CacheRow, sequence.Held, length - sequence.Held);
        }
        cache.Length = length;
        for (var r = 0; r < going.Count; r++) (going[r].CacheRow, going[r].Prefilled) = (r, false);
        return cache;
    }

    /// <summary>Ends the batch: sequences still decoding or waiting end with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed.IsCancellationRequested) return;
        _arrivals.Writer.TryComplete();
        _disposed.Cancel();
        if (Thread.CurrentThread != _thread) _thread.Join();
    }
}
