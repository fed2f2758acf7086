using System.Text;
using NativeGpt2.Tokenization;

namespace NativeGpt2.Generation;

/// <summary>
/// Generation of one or more sequences, one token per <see cref="Step"/>: the prompts are run through
/// the model once (left-padded into one batch), then each step samples a token per unfinished sequence
/// and runs only those tokens through the model, reusing the key/value cache. Only the last position
/// goes through the head.
/// </summary>
internal sealed class GenerationSession : IDisposable
{
    private readonly Gpt2CausalLM _model;
    private readonly GenerationOptions _options;
    private readonly Row[] _rows;
    private readonly KvCache _cache;
    private readonly IReadOnlySet<int> _ends;
    private readonly int _padId;
    private readonly ContrastiveSearch? _contrastive;
    private NextTokens _next;

    /// <summary>State of one sequence.</summary>
    public sealed class Row
    {
        public required int[] PromptIds { get; init; }
        public List<int> Tokens { get; } = [];
        public List<int> Generated { get; } = [];
        public required Random Random { get; init; }
        public StreamingDecoder? Decoder { get; init; }
        public StopStringMatcher? Stops { get; init; }
        public StringBuilder Text { get; } = new();
        /// <summary>Text released by the latest step (streaming).</summary>
        public string LastPiece { get; set; } = "";
        public FinishReason? FinishReason { get; set; }
        /// <summary>Log-probabilities of each generated token, when asked for.</summary>
        public List<TokenLogProbs>? LogProbs { get; init; }
    }

    /// <param name="model">The model.</param>
    /// <param name="prompts">The prompts, one sequence each.</param>
    /// <param name="options">The options every sequence decodes with.</param>
    /// <param name="tokenizer">Decodes the text, when the model has one.</param>
    /// <param name="seeds">Each sequence's seed; null: <see cref="GenerationOptions.Seed"/> for every one, or without it a fresh seed each.</param>
    public GenerationSession(Gpt2CausalLM model, IReadOnlyList<int[]> prompts, GenerationOptions options, Gpt2Tokenizer? tokenizer,
        IReadOnlyList<int>? seeds = null)
    {
        var prepared = Prepare(model.Config, prompts, options, tokenizer);
        _model = model;
        _options = options;
        var context = model.Config.ContextLength;
        _ends = EndOfTextIds(model.Config, tokenizer, options);
        _padId = EndOfText(model.Config, tokenizer) ?? 0;

        // Each sequence draws from its own source, seeded as it would be alone, so it samples exactly what it would alone.
        // Without a seed each draws its own: the same prompt twice in a batch gives two draws, not one twice.
        _rows = [.. prepared.Select((prompt, b) => NewRow(prompt, seeds?[b] ?? options.Seed, options, tokenizer))];

        var longest = _rows.Max(r => r.PromptIds.Length);
        var capacity = options.SlidingWindow ? context : longest + options.MaxNewTokens;
        if (options.IsContrastive)
        {
            _contrastive = new ContrastiveSearch(_rows.Length, options.TopK, options.PenaltyAlpha, model.Config.EmbeddingSize);
            (_cache, _next) = StartContrastive(capacity);
            return;
        }
        _cache = model.CreateCache(_rows.Length, capacity);
        // A prompt longer than the window keeps its most recent tokens.
        try
        {
            _next = Prefill(_rows.Select(r => r.Tokens.TakeLast(context).ToArray()).ToArray(), _cache);
        }
        catch
        {
            _cache.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs the prompts once, keeping their hidden states, and returns a cache of k rows a sequence, each a copy of the
    /// sequence's (every step of contrastive search runs its k candidates there), with the prompts' next-token logits.
    /// </summary>
    private (KvCache, NextTokens) StartContrastive(int capacity)
    {
        var k = _contrastive!.K;
        var cache = _model.CreateCache(_rows.Length * k, capacity);
        try
        {
            using var prompts = _model.CreateCache(_rows.Length, capacity);
            var next = Prefill([.. _rows.Select(r => r.PromptIds)], prompts, hiddenStates: true);
            _contrastive.AddPrompts(next.Hidden!, _rows.Max(r => r.PromptIds.Length), [.. _rows.Select(r => r.PromptIds.Length)]);
            cache.GatherFrom(prompts, [.. Enumerable.Range(0, cache.BatchSize).Select(row => row / k)]);
            return (cache, next with { Hidden = null });
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>A sequence about to continue <paramref name="prompt"/>, drawing with <paramref name="seed"/> (or a fresh seed).</summary>
    internal static Row NewRow(int[] prompt, int? seed, GenerationOptions options, Gpt2Tokenizer? tokenizer)
    {
        var row = new Row
        {
            PromptIds = prompt,
            Random = new Random(seed ?? Random.Shared.Next()),
            Decoder = tokenizer?.CreateStreamingDecoder(),
            Stops = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null,
            LogProbs = options.LogProbs is null ? null : [],
        };
        row.Tokens.AddRange(prompt);
        return row;
    }

    /// <summary>
    /// The k of the top-k candidates that come back instead of the logits when they decide the pick
    /// (<see cref="Sampler.CandidatesNeeded"/>), else 0; greedy steps that pick on the backend need neither.
    /// </summary>
    private int TopKOnBackend => PicksOnBackend ? 0 : Sampler.CandidatesNeeded(_options, _model.Config.VocabSize);

    /// <summary>Greedy without a penalty or bias picks on the backend; anything else needs the logits (or the top-k candidates) here.</summary>
    private bool PicksOnBackend => Sampler.PicksArgMax(_options);

    /// <summary>The ids that end generation: the end-of-text token and the config's other eos ids; none when the options don't stop there.</summary>
    public static IReadOnlySet<int> EndOfTextIds(Gpt2Config config, Gpt2Tokenizer? tokenizer, GenerationOptions options)
    {
        var ids = new HashSet<int>();
        if (!options.StopAtEndOfText) return ids;
        if (EndOfText(config, tokenizer) is { } end) ids.Add(end);
        ids.UnionWith(config.AdditionalEosTokenIds);
        return ids;
    }

    /// <summary>The config's eos_token_id, else the tokenizer's &lt;|endoftext|&gt;: where an empty prompt starts and where generation stops.</summary>
    private static int? EndOfText(Gpt2Config config, Gpt2Tokenizer? tokenizer) => config.EosTokenId ?? tokenizer?.EndOfTextId;

    /// <summary>
    /// Checks options and prompts before anything runs (and before a caller prints anything), and returns the
    /// prompts with an empty one replaced by the end-of-text token.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, an id is outside the vocabulary, or a prompt plus its new tokens exceed the context.</exception>
    /// <exception cref="ArgumentException">Stop strings without a tokenizer, or an empty prompt with no end-of-text token.</exception>
    public static int[][] Prepare(Gpt2Config config, IReadOnlyList<int[]> prompts, GenerationOptions options, Gpt2Tokenizer? tokenizer)
    {
        options.Validate();
        if (options.StopStrings.Count > 0 && tokenizer is null)
            throw new ArgumentException("stop strings need a tokenizer to decode the output; this model has none", nameof(options));
        if (prompts.Count == 0) throw new ArgumentException("at least one prompt is needed", nameof(prompts));
        options.CheckLogitBias(config.VocabSize);
        var eos = EndOfText(config, tokenizer);
        var context = config.ContextLength;
        var prepared = new int[prompts.Count][];
        for (var b = 0; b < prompts.Count; b++)
        {
            var prompt = prompts[b];
            if (prompt.Length == 0)
            {
                // GPT-2 was trained on documents separated by <|endoftext|>, so that is where a text begins.
                prompt = eos is { } start ? [start] : throw new ArgumentException("the prompt is empty and the model has no end-of-text token to start from", nameof(prompts));
            }
            foreach (var id in prompt)
            {
                if ((uint)id >= (uint)config.VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(prompts), id, $"prompt {b} holds a token id outside the vocabulary [0, {config.VocabSize})");
            }
            var which = prompts.Count == 1 ? "the prompt" : $"prompt {b}";
            if (!options.SlidingWindow && prompt.Length >= context)
                throw new ArgumentOutOfRangeException(nameof(prompts), prompt.Length,
                    $"{which} has {prompt.Length} tokens, and the context length of {context} leaves no room for a new one (shorten it to at most {context - 1} tokens, or enable SlidingWindow)");
            // In 64 bits: MaxNewTokens may be int.MaxValue.
            if (!options.SlidingWindow && (long)prompt.Length + options.MaxNewTokens > context)
                throw new ArgumentOutOfRangeException(nameof(options.MaxNewTokens), options.MaxNewTokens,
                    $"MaxNewTokens is too large: {which} has {prompt.Length} token{(prompt.Length == 1 ? "" : "s")}, and with {options.MaxNewTokens} new ones "
                    + $"that exceeds the context length of {context} (shorten the prompt, lower MaxNewTokens to at most {context - prompt.Length}, or enable SlidingWindow)");
            prepared[b] = prompt;
        }
        return prepared;
    }

    public IReadOnlyList<Row> Rows => _rows;

    public bool IsFinished => _rows.All(r => r.FinishReason is not null);

    /// <summary>Samples the next token of every unfinished sequence and advances the model past them.</summary>
    public void Step()
    {
        // Contrastive search runs its candidates before it picks: the picked ones are then in the cache already.
        var (contrastivePicks, following) = _contrastive is null ? (null, null) : RunCandidates();
        // Each row draws from its own source and touches only its own state, so the rows pick side by side.
        ForEachRow(_rows.Length, b =>
        {
            var row = _rows[b];
            row.LastPiece = "";
            if (row.FinishReason is not null) return;

            var id = contrastivePicks?[b] ?? Pick(_next, b, _model.Config.VocabSize, row, _options, _ends);
            Advance(row, id, _next.Logits is null ? default : LogitsOf(b), _options, _ends);
        });
        if (IsFinished) return;
        if (following is not null)
        {
            _next = following;
            return;
        }

        if (_cache.Length == _cache.Capacity)
        {
            // The window is full: keep the newer half of each sequence and recompute its cache.
            var keep = Math.Max(1, _cache.Capacity / 2);
            _cache.Reset();
            _next = Prefill(_rows.Select(r => r.Tokens.TakeLast(keep).ToArray()).ToArray(), _cache);
            return;
        }
        // Finished sequences still take a slot in the batch; they repeat their last token and their output is ignored.
        var next = _rows.Select(r => r.Tokens[^1]).ToArray();
        // The step's logits were read: the next step's come back in the same array.
        _next = _model.Next(new TokenBatch(next, _rows.Length, 1), _cache, PicksOnBackend, logitsInto: _next.Logits, topK: TopKOnBackend);
    }

    /// <summary>
    /// A step of contrastive search: each unfinished sequence's candidates (from the logits of its last step) run through
    /// the model as k rows of one batch; each sequence picks its best, whose logits are the sequence's next and whose new
    /// cache position is copied into the sequence's other rows (the rows differ nowhere else). Returns the picks (null
    /// for finished sequences) and the picked rows' logits.
    /// </summary>
    private (int?[] Picks, NextTokens Following) RunCandidates()
    {
        int B = _rows.Length, k = _contrastive!.K, V = _model.Config.VocabSize;
        var candidates = new (int Id, double Probability)[B][];
        var tokens = new int[B * k];
        for (var b = 0; b < B; b++)
        {
            var row = _rows[b];
            if (row.FinishReason is null)
                candidates[b] = Sampler.Candidates(Pickable(LogitsOf(b), row, _options, _ends), _options, row.Tokens, row.Generated, k);
            // Fewer candidates than rows (tokens ruled out), or a finished sequence: the spare rows repeat a token, unread.
            for (var j = 0; j < k; j++)
                tokens[b * k + j] = candidates[b] is { } c ? c[Math.Min(j, c.Length - 1)].Id : row.Tokens[^1];
        }
        var run = _model.Next(new TokenBatch(tokens, B * k, 1), _cache, greedy: false, hiddenStates: true);

        var picks = new int?[B];
        var logits = new float[B * V];
        var sources = Enumerable.Range(0, B * k).ToArray();
        for (var b = 0; b < B; b++)
        {
            if (candidates[b] is not { } c) continue;
            var best = _contrastive.Select(b, c, run.Hidden!);
            picks[b] = c[best].Id;
            Array.Copy(run.Logits!, (b * k + best) * V, logits, b * V, V);
            Array.Fill(sources, b * k + best, b * k, k);
        }
        _cache.CopySlot(_cache.Length - 1, sources);
        return (picks, new NextTokens(null, logits));
    }

    /// <summary>
    /// Runs <paramref name="pick"/> for rows 0 … count − 1, side by side when there are several: sampling from a vocabulary's
    /// logits takes milliseconds a row, as long as a decoding step of a small model. An exception comes out as itself.
    /// </summary>
    internal static void ForEachRow(int count, Action<int> pick)
    {
        if (count == 1)
        {
            pick(0);
            return;
        }
        try
        {
            Parallel.For(0, count, pick);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }
    }

    /// <summary>
    /// Token <paramref name="id"/> is <paramref name="row"/>'s next: its log-probabilities from <paramref name="logits"/> when
    /// asked for, the text it releases (held back while it may be the start of a stop string), and the end of the row at
    /// end-of-text, a stop string or the length.
    /// </summary>
    internal static void Advance(Row row, int id, ReadOnlySpan<float> logits, GenerationOptions options, IReadOnlySet<int> ends)
    {
        row.LastPiece = "";
        if (options.LogProbs is { } top) row.LogProbs!.Add(Sampler.LogProbs(logits, id, top));
        row.Tokens.Add(id);
        row.Generated.Add(id);
        if (ends.Contains(id))
            Finish(row, FinishReason.EndOfText);
        else
        {
            Emit(row, row.Decoder?.Append(id) ?? "");
            if (row.Stops?.Stopped == true) Finish(row, FinishReason.StopString);
            else if (row.Generated.Count == options.MaxNewTokens) Finish(row, FinishReason.Length);
        }
    }

    /// <summary>
    /// Row <paramref name="b"/>'s token from a step: the backend's argmax when the step brought picks back (and the row's
    /// is one), else drawn from its top-k candidates when the step brought them back and they are usable, else from its
    /// logits (vocabulary <paramref name="V"/>).
    /// </summary>
    internal static int Pick(NextTokens step, int b, int V, Row row, GenerationOptions options, IReadOnlySet<int> ends) =>
        step.Picks?[b] is int pick and >= 0 ? pick
        : step.Candidates is { } candidates && candidates.IsUsable(b)
            ? Sampler.SampleCandidates(candidates.IdsOf(b), candidates.ValuesOf(b), options, row.Random)
            : Sampler.Sample(Pickable(step.Logits.AsSpan(b * V, V), row, options, ends), options, row.Tokens, row.Random, row.Generated);

    /// <summary>A row's logits, with the end-of-text tokens at −∞ while the row is short of <see cref="GenerationOptions.MinNewTokens"/>.</summary>
    internal static ReadOnlySpan<float> Pickable(ReadOnlySpan<float> logits, Row row, GenerationOptions options, IReadOnlySet<int> ends)
    {
        if (row.Generated.Count >= options.MinNewTokens || ends.Count == 0) return logits;
        var copy = logits.ToArray();
        foreach (var id in ends)
        {
            if ((uint)id < (uint)copy.Length) copy[id] = float.NegativeInfinity;
        }
        return copy;
    }

    private ReadOnlySpan<float> LogitsOf(int row)
    {
        var V = _model.Config.VocabSize;
        return _next.Logits.AsSpan(row * V, V);
    }

    private NextTokens Prefill(int[][] sequences, KvCache cache, bool hiddenStates = false) =>
        _model.Next(PromptBatch(sequences, _padId), cache, PicksOnBackend, hiddenStates, topK: TopKOnBackend);

    /// <summary>Prompts as one batch: as they are when their lengths agree, else left-padded with <paramref name="padId"/>.</summary>
    internal static TokenBatch PromptBatch(int[][] sequences, int padId) =>
        sequences.All(s => s.Length == sequences[0].Length)
            ? new TokenBatch(sequences.SelectMany(s => s).ToArray(), sequences.Length, sequences[0].Length)
            : TokenBatch.LeftPadded(sequences, padId);

    /// <summary>Releases the cache's memory.</summary>
    public void Dispose() => _cache.Dispose();

    private static void Emit(Row row, string piece)
    {
        var text = row.Stops is null ? piece : row.Stops.Push(piece);
        row.Text.Append(text);
        row.LastPiece += text;
    }

    private static void Finish(Row row, FinishReason reason)
    {
        row.FinishReason = reason;
        // Bytes of an unfinished character, and text held back as a possible stop string, are released now.
        if (reason != FinishReason.StopString)
        {
            var rest = row.Decoder?.Flush() ?? "";
            var text = row.Stops is null ? rest : row.Stops.Push(rest) + row.Stops.Flush();
            row.Text.Append(text);
            row.LastPiece += text;
        }
    }

    /// <summary>What a row's latest step gave, as streaming reports it, naming the row as <paramref name="sequence"/>.</summary>
    internal static GenerationUpdate Update(Row row, int sequence) =>
        new(row.LastPiece, row.Generated[^1], row.LogProbs?[^1], row.PromptIds.Length, row.Generated.Count, row.FinishReason) { Sequence = sequence };

    public GenerationResult Result(int b)
    {
        var row = _rows[b];
        return new GenerationResult(row.Text.ToString(), row.PromptIds, row.Generated.ToArray(), row.FinishReason ?? FinishReason.Length, row.LogProbs?.ToArray());
    }
}
