using NativeGpt2.Tokenization;

namespace NativeGpt2.Generation;

/// <summary>
/// Beam search as Hugging Face's <c>generate</c> runs it with <c>num_beams</c> &gt; 1 and no sampling: one row of the
/// key/value cache per beam, reordered after every step to follow the beams that survive.
/// </summary>
/// <remarks>
/// A step scores every continuation v of every beam b as score(b) + log p(v | beam b), the log-probability taken from
/// the log-softmax of the logits with the n-gram and minimum-length rules' tokens at −∞ (not renormalized), and ranks
/// the best (1 + number of end-of-text ids) · k of them, highest first, ties to the lower beam and token. In that order
/// an end-of-text continuation among the first k becomes a finished hypothesis; the others fill the k beams of the next
/// step. The search ends when k hypotheses are finished and, as <see cref="GenerationOptions.EarlyStopping"/> says, at once
/// or when none of the running beams could still beat the worst of them, or after <see cref="GenerationOptions.MaxNewTokens"/>
/// steps, when the running beams join the hypotheses. The results are the hypotheses with the best scores, best first.
/// </remarks>
internal static class BeamSearch
{
    /// <summary>The <paramref name="count"/> (at most k) best sequences the search finds for <paramref name="prompt"/>, best first.</summary>
    public static IReadOnlyList<GenerationResult> Run(Gpt2CausalLM model, int[] prompt, GenerationOptions options, Gpt2Tokenizer? tokenizer,
        IReadOnlySet<int> endOfText, CancellationToken cancellationToken, int count)
    {
        int k = options.NumBeams, V = model.Config.VocabSize;
        var capacity = prompt.Length + options.MaxNewTokens;
        using var cache = model.CreateCache(k, capacity);
        float[] logits;
        // The prompt runs once, in a one-row cache, then every beam starts from a copy of it.
        using (var first = model.CreateCache(1, capacity))
        {
            var row = model.Next(new TokenBatch(prompt, 1, prompt.Length), first, greedy: false).Logits!;
            cache.GatherFrom(first, new int[k]);
            logits = new float[k * V];
            for (var b = 0; b < k; b++) row.CopyTo(logits, b * V);
        }

        var beams = Enumerable.Range(0, k).Select(_ => new List<int>()).ToArray();
        // Only the first beam is live at the start: the others hold the same prompt and must not be picked twice.
        var scores = Enumerable.Range(0, k).Select(b => b == 0 ? 0.0 : -1e9).ToArray();
        var hypotheses = new BeamHypotheses(k, options.LengthPenalty, options.EarlyStopping, options.MaxNewTokens);
        var done = false;
        for (var step = 1; ; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var ranked = Candidates(logits, scores, beams, prompt, options, endOfText, (1 + endOfText.Count) * k, V);
            var next = new List<(int Beam, int Token, double Score)>(k);
            for (var rank = 0; rank < ranked.Count && next.Count < k; rank++)
            {
                var (score, beam, token) = ranked[rank];
                if (!endOfText.Contains(token)) next.Add((beam, token, score));
                else if (rank < k) hypotheses.Add([.. beams[beam], token], score, step);
            }
            // Every continuation left ends the text: the hypotheses are all there is (Hugging Face's beams would go on at −∞).
            done = next.Count == 0 || hypotheses.IsDone(ranked[0].Score, step);
            if (done) break;
            // Too few continuations left to fill every beam (a small vocabulary under the n-gram rule): the rest go on at
            // −∞, never to win, as Hugging Face's do.
            while (next.Count < k) next.Add(next[^1] with { Score = double.NegativeInfinity });

            beams = [.. next.Select(n => new List<int>(beams[n.Beam]) { n.Token })];
            scores = [.. next.Select(n => n.Score)];
            // The beams share the prompt: only the positions after it differ.
            cache.GatherFrom(cache, [.. next.Select(n => n.Beam)], shared: prompt.Length);
            if (step == options.MaxNewTokens) break;
            logits = model.Next(new TokenBatch([.. next.Select(n => n.Token)], k, 1), cache, greedy: false).Logits!;
        }
        if (!done)
        {
            for (var b = 0; b < k; b++)
            {
                if (beams[b].Count > 0) hypotheses.Add(beams[b], scores[b], beams[b].Count);
            }
        }

        var best = hypotheses.Ranked(count);
        return best.Count == 0 ? [Result([])] : [.. best.Select(Result)];

        GenerationResult Result(IReadOnlyList<int> tokens)
        {
            var ended = tokens.Count > 0 && endOfText.Contains(tokens[^1]);
            var text = tokenizer?.Decode(ended ? tokens.Take(tokens.Count - 1) : tokens) ?? "";
            return new GenerationResult(text, prompt, tokens, ended ? FinishReason.EndOfText : FinishReason.Length);
        }
    }

    /// <summary>The <paramref name="count"/> best continuations of all beams, best first: (score, beam, token).</summary>
    private static List<(double Score, int Beam, int Token)> Candidates(float[] logits, double[] scores, List<int>[] beams, int[] prompt,
        GenerationOptions options, IReadOnlySet<int> endOfText, int count, int V)
    {
        // A min-heap of the best so far: its root is the one to drop. Lower beam and token win ties, as they come first.
        var best = new PriorityQueue<(double Score, int Beam, int Token), (double Score, int Flat)>(count + 1,
            Comparer<(double Score, int Flat)>.Create((a, b) => a.Score != b.Score ? a.Score.CompareTo(b.Score) : b.Flat.CompareTo(a.Flat)));
        for (var b = 0; b < beams.Length; b++)
        {
            var row = logits.AsSpan(b * V, V);
            var banned = Banned(prompt, beams[b], options, endOfText, V);
            foreach (var x in row)
            {
                if (float.IsNaN(x) || float.IsPositiveInfinity(x))
                    throw new NumericalException($"the logits of beam {b} contain {x}; the model's weights or inputs are not usable");
            }
            var logSum = Sampler.LogSumExp(row);
            for (var v = 0; v < V; v++)
            {
                if (banned.Contains(v) || float.IsNegativeInfinity(row[v])) continue;
                var score = scores[b] + (row[v] - logSum);
                if (best.Count == count && best.TryPeek(out _, out var worst) && score <= worst.Score) continue;
                best.Enqueue((score, b, v), (score, b * V + v));
                if (best.Count > count) best.Dequeue();
            }
        }
        var ranked = new List<(double Score, int Beam, int Token)>(best.Count);
        while (best.Count > 0) ranked.Add(best.Dequeue());
        ranked.Reverse();
        if (ranked.Count == 0) throw new NativeGpt2Exception("beam search has no continuation left: every token of every beam is ruled out");
        return ranked;
    }

    /// <summary>The tokens the n-gram rule and the minimum length rule out after this beam.</summary>
    private static HashSet<int> Banned(int[] prompt, List<int> beam, GenerationOptions options, IReadOnlySet<int> endOfText, int V)
    {
        var banned = new HashSet<int>();
        if (beam.Count < options.MinNewTokens) banned.UnionWith(endOfText);
        if (options.NoRepeatNgramSize > 0)
            banned.UnionWith(Sampler.RepeatedNgramEnds([.. prompt, .. beam], options.NoRepeatNgramSize).Where(id => (uint)id < (uint)V));
        return banned;
    }
}

/// <summary>
/// The k best finished hypotheses of a beam search, as Hugging Face's <c>BeamHypotheses</c> keeps them: each scored by its
/// summed log-probability over (its new tokens)^lengthPenalty.
/// </summary>
/// <param name="k">Hypotheses kept: the beams.</param>
/// <param name="lengthPenalty">The power of the length a summed log-probability is divided by.</param>
/// <param name="stopping">When <see cref="IsDone"/> ends the search once k are kept.</param>
/// <param name="maxLength">The most new tokens a hypothesis may reach (<see cref="BeamStopping.Never"/> scores the best running beam there).</param>
internal sealed class BeamHypotheses(int k, float lengthPenalty, BeamStopping stopping = BeamStopping.Heuristic, int maxLength = int.MaxValue)
{
    private readonly List<(double Score, IReadOnlyList<int> Tokens)> _kept = [];
    private double _worst = 1e9;

    public int Count => _kept.Count;

    /// <summary>Keeps <paramref name="tokens"/> if there is room, or if it beats the worst kept (which then goes).</summary>
    public void Add(IReadOnlyList<int> tokens, double sumLogProbs, int length)
    {
        var score = sumLogProbs / Math.Pow(length, lengthPenalty);
        if (_kept.Count >= k && !(score > _worst)) return;
        _kept.Add((score, tokens));
        if (_kept.Count > k)
        {
            var worst = Enumerable.Range(0, _kept.Count).MinBy(i => _kept[i].Score);
            _kept.RemoveAt(worst);
            _worst = _kept.Min(h => h.Score);
        }
        else _worst = Math.Min(score, _worst);
    }

    /// <summary>
    /// Whether the search can stop: k hypotheses are kept, and then at once (<see cref="BeamStopping.Early"/>), or when the best
    /// running sum over the length it has reached (<see cref="BeamStopping.Heuristic"/>), or over the length where it would
    /// score best (<see cref="BeamStopping.Never"/>: the longest when lengthPenalty is above 0), is no better than the worst of them.
    /// </summary>
    public bool IsDone(double bestRunningSum, int length)
    {
        if (_kept.Count < k) return false;
        if (stopping == BeamStopping.Early) return true;
        var best = stopping == BeamStopping.Never && lengthPenalty > 0 ? maxLength : length;
        return _worst >= bestRunningSum / Math.Pow(best, lengthPenalty);
    }

    /// <summary>The tokens of the best-scoring hypothesis (of equals, the one kept last).</summary>
    public IReadOnlyList<int> Best() => Ranked(1) is [var best] ? best : [];

    /// <summary>
    /// The tokens of the <paramref name="count"/> best-scoring hypotheses, best first; of equals, the one kept last first
    /// (Hugging Face sorts them by score, a stable sort, and takes them from the end).
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int>> Ranked(int count) =>
        [.. _kept.Select((h, i) => (h.Score, Index: i, h.Tokens)).OrderByDescending(h => h.Score).ThenByDescending(h => h.Index).Take(count).Select(h => h.Tokens)];
}
