using NativeGpt2.Generation;

namespace NativeGpt2;

/// <summary>How <see cref="Gpt2CausalLM.Score"/> windows a long text.</summary>
public sealed record ScoreOptions
{
    /// <summary>Tokens per window, from 2 to the context length; null for the model's context length.</summary>
    public int? Context { get; init; }

    /// <summary>
    /// Tokens the window advances each time, from 1 to <see cref="Context"/>; null for a full window (no overlap).
    /// A smaller stride gives each scored token more context at more cost.
    /// </summary>
    public int? Stride { get; init; }

    /// <summary>Told after each window how many tokens are scored so far (a long text takes many windows).</summary>
    public IProgress<ScoreProgress>? Progress { get; init; }

    /// <summary>
    /// When set, from 0 to <see cref="GenerationOptions.MaxLogProbs"/>: <see cref="ScoreResult.Tokens"/> lists each scored token
    /// with this many most likely tokens at its place, as generation's <see cref="GenerationOptions.LogProbs"/> lists them
    /// (what an OpenAI completion with <c>echo</c> and <c>logprobs</c> returns for its prompt). Null (the default): no list.
    /// </summary>
    public int? TopLogProbs { get; init; }
}

/// <summary>How far <see cref="Gpt2CausalLM.Score"/> has got: <paramref name="Scored"/> of <paramref name="Total"/> tokens.</summary>
public sealed record ScoreProgress(int Scored, int Total)
{
    /// <summary>The fraction done, from 0 to 1.</summary>
    public double Fraction => Total == 0 ? 1 : (double)Scored / Total;
}

/// <summary>How well a model predicts a text.</summary>
/// <param name="TokenCount">Tokens scored: every token but the first, which has nothing to be predicted from.</param>
/// <param name="MeanNll">Mean negative log-likelihood in nats per token.</param>
/// <param name="Perplexity">exp(<paramref name="MeanNll"/>).</param>
/// <param name="TokenLogProbs">log p(token i | tokens before it in its window), for i = 1 … n − 1.</param>
public sealed record ScoreResult(int TokenCount, double MeanNll, double Perplexity, IReadOnlyList<double> TokenLogProbs)
{
    /// <summary>
    /// Tokens 1 … n − 1, each with its log-probability and the <see cref="ScoreOptions.TopLogProbs"/> most likely tokens at
    /// its place; null unless that option asked for them. The log-probabilities are then computed from the logits in
    /// double, as generation's are, and <see cref="TokenLogProbs"/> holds the same values (without the option they come
    /// from the backend's log-softmax, in float: the two agree to about 1e-6).
    /// </summary>
    public IReadOnlyList<TokenLogProbs>? Tokens { get; init; }
}

public sealed partial class Gpt2CausalLM
{
    /// <summary>Tokenizes and scores a text (see <see cref="ScoreIds"/>).</summary>
    /// <exception cref="NativeGpt2Exception">The model has no tokenizer.</exception>
    public ScoreResult Score(string text, ScoreOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(text);
        return ScoreIds(Encode(RequireTokenizer(), text, allowSpecialTokens: false), options, cancellationToken);
    }

    /// <summary>
    /// Per-token log-probabilities, mean negative log-likelihood and perplexity of a token sequence.
    /// A sequence longer than the window is scored with a sliding window: each window scores only the
    /// tokens the previous one did not, using the rest as context, so every token is scored once.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than two tokens.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id, the context or the stride is out of range.</exception>
    public ScoreResult ScoreIds(IReadOnlyList<int> ids, ScoreOptions? options = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count < 2) throw new ArgumentException($"scoring needs at least 2 tokens, got {ids.Count}", nameof(ids));
        var context = options?.Context ?? Config.ContextLength;
        if (context < 2 || context > Config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(ScoreOptions.Context), context, $"must be in [2, {Config.ContextLength}]");
        var stride = options?.Stride ?? context;
        if (stride < 1 || stride > context)
            throw new ArgumentOutOfRangeException(nameof(ScoreOptions.Stride), stride, $"must be in [1, {context}] (the context)");
        var top = options?.TopLogProbs;
        if (top is < 0 or > GenerationOptions.MaxLogProbs)
            throw new ArgumentOutOfRangeException(nameof(ScoreOptions.TopLogProbs), top, $"must be in [0, {GenerationOptions.MaxLogProbs}] (null: none)");

        var n = ids.Count;
        var logProbs = new double[n - 1];
        var tokens = top is null ? null : new TokenLogProbs[n - 1];
        var scoredUpTo = 0;   // tokens before this index are already scored (or are the first token)
        for (var begin = 0; ; begin += stride)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var end = Math.Min(begin + context, n);
            var window = new int[end - begin];
            for (var i = 0; i < window.Length; i++) window[i] = ids[begin + i];

            // Token j (absolute) is predicted at window position j - 1 - begin.
            var first = Math.Max(begin + 1, scoredUpTo);
            ScoreWindow(window, first - 1 - begin, logProbs.AsSpan(first - 1, end - first), top, tokens is null ? default : tokens.AsMemory(first - 1, end - first));
            for (var target = first; target < end; target++)
            {
                if (double.IsNaN(logProbs[target - 1]))
                    throw new NumericalException($"the log-probability of token {target} is NaN; the model's weights are not usable");
            }
            scoredUpTo = end;
            options?.Progress?.Report(new ScoreProgress(end - 1, n - 1));
            if (end == n) break;
        }
        var meanNll = -logProbs.Average();
        return new ScoreResult(n - 1, meanNll, Math.Exp(meanNll), logProbs) { Tokens = tokens };
    }

    // Positions projected through the head at a time: bounds the (rows, V) logits on the backend.
    private const int ScoringRows = 128;

    /// <summary>
    /// log p(window[p + 1] | window[..p + 1]) for p = from, from + 1, …, into <paramref name="logProbs"/>,
    /// computed on the backend: only one float per scored token comes back. With <paramref name="top"/> set, each
    /// position's logits come back instead, and <paramref name="tokens"/> gets the token with its top alternatives.
    /// </summary>
    private void ScoreWindow(int[] window, int from, Span<double> logProbs, int? top, Memory<TokenLogProbs> tokens)
    {
        using var call = EnterCall();
        using var scope = Backend.Enter();
        using var pass = Backbone.Run(TokenBatch.FromIds(window), cache: null, ForwardOptions.None);
        var workspace = pass.Workspace;
        var host = new float[Math.Min(ScoringRows, logProbs.Length) * (top is null ? 1 : Config.VocabSize)];
        for (var start = 0; start < logProbs.Length; start += ScoringRows)
        {
            var count = Math.Min(ScoringRows, logProbs.Length - start);
            var rows = workspace.Rows(count);
            var targets = workspace.Targets(count);
            Backend.CopyFromHost(rows, 0, Enumerable.Range(from + start, count).ToArray());
            Backend.CopyFromHost(targets, 0, window.AsSpan(from + start + 1, count));
            var hidden = workspace.Gathered(count);
            Backend.GatherRows(hidden, workspace.Output, rows, count, Config.EmbeddingSize);
            var logits = workspace.Logits(count);
            Head.Project(logits, hidden, count);
            if (top is { } alternatives)
            {
                var V = Config.VocabSize;
                Backend.Download(host.AsSpan(0, count * V), logits, 0);
                var scored = tokens.Slice(start, count);
                Parallel.For(0, count, i => scored.Span[i] = Sampler.LogProbs(host.AsSpan(i * V, V), window[from + start + i + 1], alternatives));
                for (var i = 0; i < count; i++) logProbs[start + i] = scored.Span[i].LogProb;
                continue;
            }
            var result = workspace.LogProbabilities(count);
            Backend.TargetLogProbabilities(result, logits, targets, count, Config.VocabSize);
            Backend.Download(host.AsSpan(0, count), result, 0);
            for (var i = 0; i < count; i++) logProbs[start + i] = host[i];
        }
    }
}
