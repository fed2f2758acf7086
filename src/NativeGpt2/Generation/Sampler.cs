using System.Buffers;
using System.Numerics.Tensors;

namespace NativeGpt2.Generation;

/// <summary>
/// Picks the next token from logits: a pure function of the logits, the options, the tokens so far
/// (prompt and output, for the repetition penalty; the output alone, for the presence and frequency penalties)
/// and a seeded random source.
/// </summary>
public static class Sampler
{
    /// <summary>The next token id.</summary>
    /// <param name="logits">The model's logits at the position to fill.</param>
    /// <param name="options">The options; see <see cref="GenerationOptions"/> for the order they apply in.</param>
    /// <param name="previousTokens">Prompt and output so far, in order: what the repetition penalty and the n-gram rule look at.</param>
    /// <param name="random">The seeded random source.</param>
    /// <param name="generatedTokens">The output so far: what the presence and frequency penalties count (null: none yet).</param>
    /// <exception cref="NumericalException">The logits contain NaN: nothing can be sampled from them.</exception>
    public static int Sample(ReadOnlySpan<float> logits, GenerationOptions options, IReadOnlyCollection<int> previousTokens, Random random,
        IReadOnlyList<int>? generatedTokens = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(random);
        // Every sampled step of every sequence comes here: its two vocabulary-sized buffers (large-object-heap arrays
        // for GPT-2's 50,257 tokens, each a full collection's worth of garbage) are borrowed, not allocated.
        var V = logits.Length;
        var scoreBuffer = ArrayPool<float>.Shared.Rent(V);
        try
        {
            var scores = scoreBuffer.AsSpan(0, V);
            Adjust(scores, logits, options, previousTokens, generatedTokens);
            return options.IsGreedy ? ArgMax(scores) : DrawFrom(scores, options, random);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scoreBuffer);
        }
    }

    /// <summary>The position in <paramref name="scores"/> drawn from their distribution under the options, in a borrowed buffer.</summary>
    private static int DrawFrom(ReadOnlySpan<float> scores, GenerationOptions options, Random random)
    {
        var buffer = ArrayPool<double>.Shared.Rent(scores.Length);
        try
        {
            var probabilities = buffer.AsSpan(0, scores.Length);
            Distribution(probabilities, scores, options);
            return Draw(probabilities, random);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// The token <see cref="Sample"/> picks from a whole row, from that row's top-k candidates alone: every token whose logit
    /// is at least the k-th largest, in id order (<see cref="Backends.IBackend.TopKCandidates"/>), for options whose pick
    /// depends on nothing else, with k at least <see cref="CandidatesNeeded"/>. The same token, bit for bit: the tokens top-k
    /// leaves out add nothing to any sum, and every step takes the kept ones in id order, as the whole row's does. Greedy
    /// options take the first largest, which is the row's: its ties are all candidates, in id order.
    /// </summary>
    internal static int SampleCandidates(ReadOnlySpan<int> ids, ReadOnlySpan<float> logits, GenerationOptions options, Random random)
    {
        if (ids.IsEmpty || ids.Length != logits.Length) throw new ArgumentException("the candidates are empty or their ids and logits differ in number", nameof(ids));
        if (options.IsGreedy) return ids[ArgMax(logits)];
        // Top-k again over the candidates keeps them all: their k-th largest is the row's.
        return ids[DrawFrom(logits, options, random)];
    }

    /// <summary>
    /// The least k whose top-k candidates decide a row's pick under <paramref name="options"/> over a vocabulary of
    /// <paramref name="V"/>, or 0 when the pick needs the whole row. Only options that read no other token qualify (no
    /// penalty, bias, n-gram rule, minimum length or log-probabilities): greedy, which needs 1 (the largest and its ties),
    /// and sampling with 1 ≤ TopK &lt; V, TopK at most half of <see cref="Backends.IBackend.MaxTopKCapacity"/> (room for ties).
    /// </summary>
    internal static int CandidatesNeeded(GenerationOptions options, int V)
    {
        if (ReadsOtherTokens(options)) return 0;
        if (options.IsGreedy) return 1;
        return options.TopK >= 1 && options.TopK < V && options.TopK <= Backends.IBackend.MaxTopKCapacity / 2 ? options.TopK : 0;
    }

    /// <summary>Whether the pick is the row's argmax, which a backend finds (<see cref="Backends.IBackend.ArgMax"/>): greedy, reading no other token.</summary>
    internal static bool PicksArgMax(GenerationOptions options) => options.IsGreedy && !ReadsOtherTokens(options);

    /// <summary>Whether a pick under these options reads more than the row's largest logits: a penalty, bias, n-gram rule, minimum length, log-probabilities, contrastive or beam search.</summary>
    private static bool ReadsOtherTokens(GenerationOptions options) =>
        options.AdjustsLogits || options.MinNewTokens != 0 || options.LogProbs is not null || options.IsContrastive || options.NumBeams > 1;

    /// <summary>
    /// The distribution a token is drawn from after the penalties and bias, temperature, top-k, top-p and min-p:
    /// V probabilities summing to 1, zero outside the kept tokens. For greedy options, one-hot on the argmax.
    /// Parameters as in <see cref="Sample"/>.
    /// </summary>
    public static double[] Distribution(ReadOnlySpan<float> logits, GenerationOptions options, IReadOnlyCollection<int> previousTokens,
        IReadOnlyList<int>? generatedTokens = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var scores = Adjusted(logits, options, previousTokens, generatedTokens);
        var probabilities = new double[scores.Length];
        if (options.IsGreedy) probabilities[ArgMax(scores)] = 1;
        else Distribution(probabilities, scores, options);
        return probabilities;
    }

    /// <summary>
    /// The log-probability of <paramref name="id"/> under log-softmax(<paramref name="logits"/>), computed in double, and the
    /// <paramref name="top"/> most likely tokens (ties: lower id first).
    /// </summary>
    public static TokenLogProbs LogProbs(ReadOnlySpan<float> logits, int id, int top)
    {
        if ((uint)id >= (uint)logits.Length) throw new ArgumentOutOfRangeException(nameof(id), id, "not a token of these logits");
        ArgumentOutOfRangeException.ThrowIfNegative(top);
        var logSum = LogSumExp(logits);
        var best = new List<(int Id, double Value)>(top + 1);
        if (top > 0)
        {
            for (var i = 0; i < logits.Length; i++) KeepHighest(best, i, logits[i] - logSum, top);
        }
        return new TokenLogProbs(id, logits[id] - logSum, [.. best.Select(b => new TokenAlternative(b.Id, b.Value))]);
    }

    /// <summary>log Σ exp(logits), in double, the largest subtracted first: log-softmax(x) = x − this.</summary>
    internal static double LogSumExp(ReadOnlySpan<float> logits)
    {
        double max = float.NegativeInfinity;
        foreach (var x in logits) max = Math.Max(max, x);
        double sum = 0;
        foreach (var x in logits) sum += Math.Exp(x - max);
        return max + Math.Log(sum);
    }

    /// <summary>
    /// Keeps (<paramref name="id"/>, <paramref name="value"/>) in <paramref name="best"/> if it is among the
    /// <paramref name="count"/> highest values offered so far: the list stays sorted highest first, and of equal values the
    /// one offered first stays first (offered in id order: the lower id). Insertion into a short list: count is at most a
    /// few dozen, far below the cost of the V values offered.
    /// </summary>
    private static void KeepHighest(List<(int Id, double Value)> best, int id, double value, int count)
    {
        if (best.Count == count && value <= best[^1].Value) return;
        var at = best.Count;
        while (at > 0 && best[at - 1].Value < value) at--;
        best.Insert(at, (id, value));
        if (best.Count > count) best.RemoveAt(count);
    }

    /// <summary>
    /// Contrastive search's candidates: the <paramref name="k"/> most likely tokens under softmax of the logits after the
    /// penalties, bias and n-gram rule (no temperature), most likely first (ties: lower id first), with their
    /// probabilities. Tokens at −∞ (ruled out) are never candidates, so there may be fewer than k.
    /// </summary>
    internal static (int Id, double Probability)[] Candidates(ReadOnlySpan<float> logits, GenerationOptions options, IReadOnlyCollection<int> previousTokens,
        IReadOnlyList<int>? generatedTokens, int k)
    {
        var scores = Adjusted(logits, options, previousTokens, generatedTokens);
        double max = scores.Max(), sum = 0;
        foreach (var x in scores) sum += Math.Exp(x - max);
        var best = new List<(int Id, double Value)>(k + 1);
        for (var i = 0; i < scores.Length; i++)
        {
            if (!float.IsNegativeInfinity(scores[i])) KeepHighest(best, i, Math.Exp(scores[i] - max) / sum, k);
        }
        return [.. best];
    }

    /// <summary>
    /// The logits after the repetition penalty (Hugging Face's, over prompt and output), then OpenAI's presence and
    /// frequency penalties (over the output: logit − count · frequency − [count &gt; 0] · presence) and logit bias.
    /// </summary>
    private static float[] Adjusted(ReadOnlySpan<float> logits, GenerationOptions options, IReadOnlyCollection<int> previousTokens, IReadOnlyList<int>? generatedTokens)
    {
        var scores = new float[logits.Length];
        Adjust(scores, logits, options, previousTokens, generatedTokens);
        return scores;
    }

    /// <summary><see cref="Adjusted"/> into <paramref name="scores"/> (as long as the logits).</summary>
    /// <exception cref="ArgumentException">There are no logits.</exception>
    private static void Adjust(Span<float> scores, ReadOnlySpan<float> logits, GenerationOptions options, IReadOnlyCollection<int> previousTokens,
        IReadOnlyList<int>? generatedTokens)
    {
        if (logits.IsEmpty) throw new ArgumentException("there are no logits to sample from", nameof(logits));
        Penalize(scores, logits, options.RepetitionPenalty, previousTokens);
        if ((options.PresencePenalty != 0f || options.FrequencyPenalty != 0f) && generatedTokens is { Count: > 0 })
        {
            var counts = new Dictionary<int, int>();
            foreach (var id in generatedTokens)
            {
                if ((uint)id < (uint)scores.Length) counts[id] = counts.GetValueOrDefault(id) + 1;
            }
            foreach (var (id, count) in counts) scores[id] -= count * options.FrequencyPenalty + options.PresencePenalty;
        }
        if (options.LogitBias is { } bias)
        {
            options.CheckLogitBias(scores.Length);
            foreach (var (id, value) in bias) scores[id] += value;
        }
        if (options.NoRepeatNgramSize > 0) BanRepeatedNgrams(scores, options.NoRepeatNgramSize, previousTokens);
    }

    /// <summary>
    /// Hugging Face's no-repeat-n-gram rule: every token that follows an earlier occurrence of the last n − 1 tokens
    /// (for n = 1, every token so far) gets −∞, so that no n-gram occurs twice. Nothing is banned before the tokens
    /// reach n − 1.
    /// </summary>
    /// <exception cref="NativeGpt2Exception">The rule leaves no token to pick.</exception>
    private static void BanRepeatedNgrams(Span<float> scores, int n, IReadOnlyCollection<int>? previousTokens)
    {
        if (previousTokens is null) return;
        var tokens = previousTokens as IReadOnlyList<int> ?? [.. previousTokens];
        foreach (var id in RepeatedNgramEnds(tokens, n))
        {
            if ((uint)id < (uint)scores.Length) scores[id] = float.NegativeInfinity;
        }
        if (float.IsNegativeInfinity(TensorPrimitives.Max(scores)))
            throw new NativeGpt2Exception($"NoRepeatNgramSize {n} rules out every token of the vocabulary after {tokens.Count} tokens: there is nothing left to generate");
    }

    /// <summary>
    /// The tokens that would complete an n-gram <paramref name="tokens"/> already holds: each one that follows an earlier
    /// occurrence of its last n − 1 tokens (for n = 1, every token). None before the tokens reach n − 1.
    /// </summary>
    internal static IEnumerable<int> RepeatedNgramEnds(IReadOnlyList<int> tokens, int n)
    {
        if (n < 1 || tokens.Count + 1 < n) yield break;
        var prefix = tokens.Count - (n - 1);
        for (var start = 0; start + n <= tokens.Count; start++)
        {
            var matches = true;
            for (var i = 0; i < n - 1 && matches; i++) matches = tokens[start + i] == tokens[prefix + i];
            if (matches) yield return tokens[start + n - 1];
        }
    }

    /// <summary>The logits copied into <paramref name="scores"/>, checked, with Hugging Face's repetition penalty applied.</summary>
    private static void Penalize(Span<float> scores, ReadOnlySpan<float> logits, float penalty, IReadOnlyCollection<int> previousTokens)
    {
        logits.CopyTo(scores);
        // The same checks for greedy and sampling: an argmax over NaN or +∞ would be a wrong answer, not an error.
        // The vectorized maximum is NaN when any value is; the scans for which one run only then.
        var max = TensorPrimitives.Max(logits);
        if (float.IsNaN(max) || float.IsPositiveInfinity(max))
        {
            var nan = logits.IndexOfAnyExceptInRange(float.NegativeInfinity, float.PositiveInfinity);
            if (nan >= 0)
                throw new NumericalException($"the logits contain NaN (first at token {nan}); the model's weights or inputs are not usable");
            var infinite = logits.IndexOf(float.PositiveInfinity);
            if (infinite >= 0)
                throw new NumericalException($"the logits contain +infinity (first at token {infinite}); the model's weights or inputs are not usable");
        }
        if (float.IsNegativeInfinity(max))
            throw new NumericalException("every logit is -infinity; no token can be chosen");
        if (penalty != 1f && previousTokens is not null)
        {
            foreach (var id in previousTokens.Distinct())
            {
                if ((uint)id >= (uint)scores.Length) continue;
                // Hugging Face's rule: divide positive logits, multiply negative ones, so the token always becomes less likely.
                scores[id] = scores[id] < 0 ? scores[id] * penalty : scores[id] / penalty;
            }
        }
    }

    /// <summary>
    /// The distribution of <paramref name="scores"/> under the options' temperature, top-k, top-p, min-p and typical-p, into
    /// <paramref name="probabilities"/> (as long as the scores): Hugging Face's order. Top-k acts on the scores, before the
    /// softmax, so that only the tokens it keeps take an exponential (a few dozen of GPT-2's 50,257 with a top-k of 40).
    /// Every sum runs in id order, in double.
    /// </summary>
    private static void Distribution(Span<double> probabilities, ReadOnlySpan<float> scores, GenerationOptions options)
    {
        var V = scores.Length;
        // Every token whose score is at least the k-th largest stays (ties at the boundary too, as in Hugging Face).
        var kth = options.TopK > 0 && options.TopK < V ? Operators.TopKCandidates.KthLargest(scores, options.TopK) : float.NegativeInfinity;
        // Softmax at the given temperature, with the maximum subtracted first.
        var max = float.NegativeInfinity;
        foreach (var x in scores) max = Math.Max(max, x);
        double sum = 0;
        for (var i = 0; i < V; i++)
        {
            var p = scores[i] >= kth ? Math.Exp((scores[i] - (double)max) / options.Temperature) : 0;
            probabilities[i] = p;
            sum += p;
        }
        Divide(probabilities, sum);

        if (options.TopP < 1f)
        {
            // The smallest set of most likely tokens whose total probability reaches p (never empty), most likely first
            // (ties: lower id first). Only the likeliest tokens can be in it: those of the top powers of two of probability
            // that hold p of the mass (and a margin for rounding) are sorted, the rest never are.
            var ids = Likeliest(probabilities, options.TopP + 1e-9);
            var keys = new double[ids.Length];
            for (var j = 0; j < ids.Length; j++) keys[j] = -probabilities[ids[j]];
            Array.Sort(keys, ids);
            for (int start = 0, end; start < ids.Length; start = end)
            {
                for (end = start + 1; end < ids.Length && keys[end] == keys[start]; end++) { }
                if (end - start > 1) Array.Sort(ids, start, end - start);
            }
            double cumulative = 0;
            var keep = 0;
            while (keep < ids.Length && (keep == 0 || cumulative < options.TopP)) cumulative += probabilities[ids[keep++]];
            // What was left out of the sort is less likely than all of it: only the sorted tokens past the set, and the
            // unsorted ones, go.
            var kept = new bool[V];
            for (var j = 0; j < keep; j++) kept[ids[j]] = true;
            for (var i = 0; i < V; i++) if (!kept[i]) probabilities[i] = 0;
            Normalize(probabilities);
        }
        if (options.MinP > 0f)
        {
            // Tokens less likely than min-p times the most likely one go (the most likely always stays).
            double most = 0;
            foreach (var p in probabilities) most = Math.Max(most, p);
            var floor = options.MinP * most;
            for (var i = 0; i < V; i++) if (probabilities[i] < floor) probabilities[i] = 0;
            Normalize(probabilities);
        }
        if (options.TypicalP < 1f) KeepTypical(probabilities, options.TypicalP);
    }

    /// <summary>
    /// Hugging Face's typical-p rule: with H the entropy of the distribution, the tokens ordered by |−log p − H| (ties: lower
    /// id first) are kept up to and including the one at which their probability reaches <paramref name="mass"/>, with every
    /// token as typical as that one; the rest get 0.
    /// </summary>
    private static void KeepTypical(Span<double> probabilities, double mass)
    {
        double entropy = 0;
        foreach (var p in probabilities)
        {
            if (p > 0) entropy -= p * Math.Log(p);
        }
        var ids = new List<int>();
        for (var i = 0; i < probabilities.Length; i++) if (probabilities[i] > 0) ids.Add(i);
        var distance = new double[ids.Count];
        for (var j = 0; j < ids.Count; j++) distance[j] = Math.Abs(-Math.Log(probabilities[ids[j]]) - entropy);
        var order = Enumerable.Range(0, ids.Count).OrderBy(j => distance[j]).ThenBy(j => ids[j]).ToArray();
        // The first token at which the cumulative probability reaches the mass (the last one if it never does).
        double cumulative = 0;
        var last = 0;
        while (last < order.Length - 1 && (cumulative += probabilities[ids[order[last]]]) < mass) last++;
        var threshold = distance[order[last]];
        for (var j = 0; j < ids.Count; j++)
        {
            if (distance[j] > threshold) probabilities[ids[j]] = 0;
        }
        Normalize(probabilities);
    }

    /// <summary>
    /// The ids of the tokens whose probability is at least 2^-e for the smallest e at which those tokens hold
    /// <paramref name="mass"/> (all tokens of nonzero probability when none does), in id order: every token left out is
    /// less likely than every token taken.
    /// </summary>
    private static int[] Likeliest(ReadOnlySpan<double> probabilities, double mass)
    {
        const int Buckets = 64;
        // Bucket e holds the tokens with probability in [2^-e, 2^-(e-1)); the last also every smaller one.
        Span<double> held = stackalloc double[Buckets + 1];
        foreach (var p in probabilities)
        {
            if (p > 0) held[Math.Min(-Math.ILogB(p), Buckets)] += p;
        }
        var last = 0;
        for (double total = held[0]; total < mass && last < Buckets; ) total += held[++last];
        var ids = new List<int>();
        for (var i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] > 0 && Math.Min(-Math.ILogB(probabilities[i]), Buckets) <= last) ids.Add(i);
        }
        return [.. ids];
    }

    /// <summary>Divides the probabilities by their sum (in id order).</summary>
    private static void Normalize(Span<double> probabilities)
    {
        double sum = 0;
        foreach (var p in probabilities) sum += p;
        Divide(probabilities, sum);
    }

    private static void Divide(Span<double> probabilities, double sum)
    {
        for (var i = 0; i < probabilities.Length; i++) probabilities[i] /= sum;
    }

    /// <summary>Inverse-CDF draw: the first token whose cumulative probability exceeds a uniform number.</summary>
    private static int Draw(ReadOnlySpan<double> probabilities, Random random)
    {
        var u = random.NextDouble();
        double cumulative = 0;
        var last = -1;
        for (var i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] <= 0) continue;
            cumulative += probabilities[i];
            last = i;
            if (u < cumulative) return i;
        }
        // Rounding can leave the total a hair under 1; the draw then belongs to the last kept token.
        return last;
    }

    private static int ArgMax(ReadOnlySpan<float> scores)
    {
        var best = 0;
        for (var i = 1; i < scores.Length; i++) if (scores[i] > scores[best]) best = i;
        return best;
    }
}
