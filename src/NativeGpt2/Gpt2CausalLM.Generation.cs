using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using NativeGpt2.Generation;
using NativeGpt2.Tokenization;

namespace NativeGpt2;

public sealed partial class Gpt2CausalLM
{
    /// <summary>Generates a continuation of <paramref name="prompt"/>.</summary>
    /// <param name="prompt">The text to continue; an empty prompt starts from <c>&lt;|endoftext|&gt;</c>, as GPT-2 was trained.</param>
    /// <param name="options">Decoding options (default: sample 100 tokens at temperature 1).</param>
    /// <param name="cancellationToken">Checked between tokens.</param>
    /// <exception cref="NativeGpt2Exception">The model has no tokenizer.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or the prompt plus new tokens exceed the context without a sliding window.</exception>
    public GenerationResult Generate(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        Generate([prompt], options, cancellationToken)[0];

    /// <summary>
    /// Generates a continuation of each prompt in one left-padded batch; each result is exactly what
    /// generating that prompt alone gives (with the same seed).
    /// </summary>
    public IReadOnlyList<GenerationResult> Generate(IReadOnlyList<string> prompts, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var tokenizer = RequireTokenizer();
        options ??= new GenerationOptions();
        var ids = prompts.Select(p => Encode(tokenizer, p ?? throw new ArgumentNullException(nameof(prompts)), options.AllowSpecialTokens)).ToArray();
        return Run(ids, options, tokenizer, cancellationToken);
    }

    /// <summary>
    /// Several continuations of one prompt, in one batch. With beam search (<see cref="GenerationOptions.NumBeams"/>), the
    /// <paramref name="count"/> best sequences the search finds, best first (Hugging Face's <c>num_return_sequences</c>);
    /// otherwise <paramref name="count"/> sequences decoded side by side, the j-th drawn with seed
    /// <see cref="GenerationOptions.Seed"/> + j (each what <see cref="Generate(string, GenerationOptions?, CancellationToken)"/>
    /// gives with that seed), or each with a fresh seed when there is none. Greedy and contrastive decoding, which draw
    /// nothing, run once and give that sequence <paramref name="count"/> times.
    /// </summary>
    /// <param name="prompt">The text to continue.</param>
    /// <param name="count">How many sequences: 1 to <see cref="MaxSequences"/>, and at most NumBeams with beam search.</param>
    /// <param name="options">Decoding options.</param>
    /// <param name="cancellationToken">Checked between tokens.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> or an option is out of range.</exception>
    public IReadOnlyList<GenerationResult> GenerateSequences(string prompt, int count, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokenizer = RequireTokenizer();
        options ??= new GenerationOptions();
        CheckSequenceCount(count, options);
        return Sequences(Encode(tokenizer, prompt, options.AllowSpecialTokens), count, options, tokenizer, cancellationToken);
    }

    /// <summary><see cref="GenerateSequences(string, int, GenerationOptions?, CancellationToken)"/> from token ids.</summary>
    public IReadOnlyList<GenerationResult> GenerateSequencesIds(IReadOnlyList<int> prompt, int count, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        CheckSequenceCount(count, options);
        return Sequences([.. prompt], count, options, Tokenizer, cancellationToken);
    }

    /// <summary>The most sequences <see cref="GenerateSequences(string, int, GenerationOptions?, CancellationToken)"/> returns.</summary>
    public const int MaxSequences = 64;

    private static void CheckSequenceCount(int count, GenerationOptions options)
    {
        var most = options.NumBeams > 1 ? Math.Min(options.NumBeams, MaxSequences) : MaxSequences;
        if (count < 1 || count > most)
            throw new ArgumentOutOfRangeException(nameof(count), count, options.NumBeams > 1
                ? $"must be in [1, {most}]: beam search (NumBeams {options.NumBeams}) finds at most NumBeams sequences"
                : $"must be in [1, {most}]");
    }

    private IReadOnlyList<GenerationResult> Sequences(int[] prompt, int count, GenerationOptions options, Gpt2Tokenizer? tokenizer, CancellationToken cancellationToken)
    {
        if (options.NumBeams > 1) return Search([prompt], options, tokenizer, cancellationToken, count)[0];
        if (options.IsGreedy || options.IsContrastive)
        {
            var result = Run([prompt], options, tokenizer, cancellationToken)[0];
            return [.. Enumerable.Repeat(result, count)];
        }
        // Without a seed, each row draws its own.
        int[]? seeds = options.Seed is { } seed ? [.. Enumerable.Range(0, count).Select(j => unchecked(seed + j))] : null;
        return Run([.. Enumerable.Repeat(prompt, count)], options, tokenizer, cancellationToken, seeds);
    }

    /// <summary>Generates from token ids, for models without a tokenizer or callers who tokenize themselves.</summary>
    /// <param name="prompt">Prompt token ids; empty starts from the end-of-text token.</param>
    /// <param name="options">Decoding options; stop strings need a tokenizer.</param>
    /// <param name="cancellationToken">Checked between tokens.</param>
    public GenerationResult GenerateIds(IReadOnlyList<int> prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        GenerateIds([prompt], options, cancellationToken)[0];

    /// <summary>Generates from several id prompts in one left-padded batch.</summary>
    public IReadOnlyList<GenerationResult> GenerateIds(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        return Run(prompts.Select(p => p.ToArray()).ToArray(), options ?? new GenerationOptions(), Tokenizer, cancellationToken);
    }

    /// <summary>
    /// Streams the continuation of <paramref name="prompt"/> as it is produced. Each piece is whole
    /// characters (bytes of a character split across tokens are held until it is complete), and never
    /// part of a stop string. The model runs on the thread pool between pieces; cancellation stops it
    /// before the next token.
    /// </summary>
    /// <remarks>Options and the prompt are checked when this method is called, before the first piece is awaited.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or the prompt plus new tokens exceed the context without a sliding window.</exception>
    public IAsyncEnumerable<string> GenerateStreamAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        Pieces(GenerateUpdatesAsync(prompt, options, cancellationToken));

    private static async IAsyncEnumerable<string> Pieces(IAsyncEnumerable<GenerationUpdate> updates)
    {
        await foreach (var update in updates.ConfigureAwait(false))
        {
            if (update.Text.Length > 0) yield return update.Text;
        }
    }

    /// <summary>
    /// Streams generation one token at a time: each update carries the token, the text it released (possibly
    /// none), its log-probabilities when asked for, the token counts so far, and on the last update why
    /// generation stopped. The model runs on the thread pool between updates; cancellation stops it before
    /// the next token.
    /// </summary>
    /// <remarks>Options and the prompt are checked when this method is called, before the first update is awaited.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or the prompt plus new tokens exceed the context without a sliding window.</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateUpdatesAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ThrowIfDisposed();
        var tokenizer = RequireTokenizer();
        options ??= new GenerationOptions();
        return BatchUpdates([Encode(tokenizer, prompt, options.AllowSpecialTokens)], options, tokenizer, seeds: null, cancellationToken);
    }

    /// <summary>
    /// <see cref="GenerateUpdatesAsync(string, GenerationOptions?, CancellationToken)"/> from token ids: for prompts
    /// already tokenized or truncated to the context (the chat client and the server's token prompts).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option or a token id is out of range, or the prompt plus new tokens exceed the context without a sliding window.</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateUpdatesAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        ThrowIfDisposed();
        var tokenizer = RequireTokenizer();
        options ??= new GenerationOptions();
        return BatchUpdates([promptIds.ToArray()], options, tokenizer, seeds: null, cancellationToken);
    }

    /// <summary>
    /// Streams several sequences decoded side by side in one left-padded batch, as
    /// <see cref="Generate(IReadOnlyList{string}, GenerationOptions?, CancellationToken)"/> decodes them: each step brings one update
    /// for every sequence still running, in prompt order, naming it by <see cref="GenerationUpdate.Sequence"/>. A sequence's
    /// updates are exactly those streaming its prompt alone gives with its seed, and a step of the batch costs little more
    /// than a step of one sequence where decoding waits on reading the weights (the CPU at small batches, the GPU): the way to
    /// serve several choices of one prompt, or several prompts, at once.
    /// </summary>
    /// <param name="prompts">The prompts, one sequence each (1 to <see cref="MaxSequences"/>; the same prompt may come more than once).</param>
    /// <param name="options">Decoding options, shared by every sequence.</param>
    /// <param name="seeds">
    /// Each sequence's seed, as many as there are prompts; null: <see cref="GenerationOptions.Seed"/> for every sequence, or
    /// without it a fresh seed each.
    /// </param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <remarks>Options and prompts are checked when this method is called, before the first update is awaited.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">An option or a token id is out of range, a prompt plus new tokens exceed the context without a sliding window, or the counts of prompts and seeds are wrong.</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateUpdatesAsync(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions? options = null,
        IReadOnlyList<int>? seeds = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ThrowIfDisposed();
        var tokenizer = RequireTokenizer();
        options ??= new GenerationOptions();
        var ids = prompts.Select(p => (p ?? throw new ArgumentNullException(nameof(prompts))).ToArray()).ToArray();
        return BatchUpdates(ids, options, tokenizer, seeds, cancellationToken);
    }

    /// <summary>
    /// <see cref="GenerateUpdatesAsync(IReadOnlyList{IReadOnlyList{int}}, GenerationOptions?, IReadOnlyList{int}?, CancellationToken)"/>
    /// from texts.
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateUpdatesAsync(IReadOnlyList<string> prompts, GenerationOptions? options = null,
        IReadOnlyList<int>? seeds = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ThrowIfDisposed();
        var tokenizer = RequireTokenizer();
        options ??= new GenerationOptions();
        var ids = prompts.Select(p => Encode(tokenizer, p ?? throw new ArgumentNullException(nameof(prompts)), options.AllowSpecialTokens)).ToArray();
        return BatchUpdates(ids, options, tokenizer, seeds, cancellationToken);
    }

    private IAsyncEnumerable<GenerationUpdate> BatchUpdates(int[][] prompts, GenerationOptions options, Gpt2Tokenizer tokenizer, IReadOnlyList<int>? seeds,
        CancellationToken cancellationToken)
    {
        if (prompts.Length > MaxSequences)
            throw new ArgumentOutOfRangeException(nameof(prompts), prompts.Length, $"at most {MaxSequences} sequences are decoded in one batch");
        if (seeds is not null && seeds.Count != prompts.Length)
            throw new ArgumentOutOfRangeException(nameof(seeds), seeds.Count, $"give one seed per prompt: {prompts.Length} prompts, {seeds.Count} seeds");
        GenerationSession.Prepare(Config, prompts, options, tokenizer);
        RefuseBeams(options);
        return Updates(prompts, options, tokenizer, seeds is null ? null : [.. seeds], cancellationToken);
    }

    /// <summary>Streaming goes token by token; beam search knows its sequence only at the end.</summary>
    private static void RefuseBeams(GenerationOptions options)
    {
        if (options.NumBeams > 1)
            throw new ArgumentException($"beam search (NumBeams {options.NumBeams}) returns whole sequences: use Generate, or NumBeams 1 to stream", nameof(options.NumBeams));
    }

    private async IAsyncEnumerable<GenerationUpdate> Updates(int[][] prompts, GenerationOptions options, Gpt2Tokenizer tokenizer, int[]? seeds,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var session = await Task.Run(() => Start(prompts, options, tokenizer, seeds), cancellationToken).ConfigureAwait(false);
        var rows = session.Rows;
        var running = new bool[rows.Count];
        while (!session.IsFinished)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ThrowIfDisposed();
            for (var b = 0; b < rows.Count; b++) running[b] = rows[b].FinishReason is null;
            await Task.Run(session.Step, cancellationToken).ConfigureAwait(false);
            for (var b = 0; b < rows.Count; b++)
            {
                if (running[b]) yield return GenerationSession.Update(rows[b], b);
            }
        }
    }

    private IReadOnlyList<GenerationResult> Run(int[][] prompts, GenerationOptions options, Gpt2Tokenizer? tokenizer, CancellationToken cancellationToken,
        IReadOnlyList<int>? seeds = null)
    {
        if (options.NumBeams > 1) return [.. Search(prompts, options, tokenizer, cancellationToken, count: 1).Select(found => found[0])];
        using var session = Start(prompts, options, tokenizer, seeds);
        while (!session.IsFinished)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ThrowIfDisposed();
            session.Step();
        }
        return Enumerable.Range(0, prompts.Length).Select(session.Result).ToArray();
    }

    /// <summary>Beam search of each prompt alone, its beams the cache's rows: each prompt's <paramref name="count"/> best sequences, best first.</summary>
    private IReadOnlyList<IReadOnlyList<GenerationResult>> Search(int[][] prompts, GenerationOptions options, Gpt2Tokenizer? tokenizer,
        CancellationToken cancellationToken, int count)
    {
        ThrowIfDisposed();
        var prepared = GenerationSession.Prepare(Config, prompts, options, tokenizer);
        var ends = GenerationSession.EndOfTextIds(Config, tokenizer, options);
        return [.. prepared.Select(prompt => BeamSearch.Run(this, prompt, options, tokenizer, ends, cancellationToken, count))];
    }

    private GenerationSession Start(int[][] prompts, GenerationOptions options, Gpt2Tokenizer? tokenizer, IReadOnlyList<int>? seeds = null)
    {
        ThrowIfDisposed();
        return new GenerationSession(this, prompts, options, tokenizer, seeds);
    }

    private Gpt2Tokenizer RequireTokenizer() =>
        Tokenizer ?? throw new NativeGpt2Exception($"model '{Source}' has no tokenizer ({Gpt2Tokenizer.NoTokenizerFiles}): use GenerateIds with token ids");

    /// <summary>
    /// <paramref name="text"/> as token ids, with a warning to the load's logger when the vocabulary has no token for some of
    /// its characters (they are skipped, as Hugging Face skips them): a prompt that lost characters should not look whole.
    /// </summary>
    private int[] Encode(Gpt2Tokenizer tokenizer, string text, bool allowSpecialTokens)
    {
        WarnAboutMissingCharacters(tokenizer, text);
        return tokenizer.Encode(text, allowSpecialTokens);
    }

    /// <summary>The warning of <see cref="Encode"/>, for callers that encode <paramref name="text"/> themselves (the chat client).</summary>
    internal void WarnAboutMissingCharacters(Gpt2Tokenizer tokenizer, string text)
    {
        if (Logger.IsEnabled(LogLevel.Warning) && tokenizer.MissingCharacters(text) is { Count: > 0 } missing)
            Logger.LogWarning("{Source}: {Warning}", Source, Gpt2Tokenizer.MissingCharactersWarning(missing));
    }
}
