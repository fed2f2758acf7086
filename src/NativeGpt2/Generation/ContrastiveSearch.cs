using System.Numerics.Tensors;

namespace NativeGpt2.Generation;

/// <summary>
/// Contrastive search's memory and choice (<see cref="GenerationOptions.PenaltyAlpha"/>), as Hugging Face's
/// <c>_contrastive_search</c> runs it: for each sequence, the final hidden state (after ln_f) of every token it holds,
/// normalized to length 1, and the pick among a step's candidates.
/// </summary>
/// <remarks>
/// Candidate j of sequence b is row b·k + j of a step's batch. A candidate's degeneration penalty is its largest cosine
/// similarity with any token before it; its score (1 − α)·p − α·penalty; the first best score wins (the likeliest, of
/// equals). A hidden state of length 0 has no direction: its similarity to anything counts as 0.
/// </remarks>
internal sealed class ContrastiveSearch(int sequences, int k, float alpha, int embeddingSize)
{
    private readonly List<float[]>[] _context = [.. Enumerable.Range(0, sequences).Select(_ => new List<float[]>())];

    /// <summary>Candidates compared a step: the batch has this many rows a sequence.</summary>
    public int K { get; } = k;

    /// <summary>The hidden states sequence b holds (prompt and output).</summary>
    public int ContextLength(int b) => _context[b].Count;

    /// <summary>
    /// Takes the prompts' hidden states: <paramref name="hidden"/> is (B, T, C) for a left-padded batch, sequence b's own
    /// tokens its last <paramref name="lengths"/>[b] positions.
    /// </summary>
    public void AddPrompts(float[] hidden, int T, IReadOnlyList<int> lengths)
    {
        var C = embeddingSize;
        for (var b = 0; b < _context.Length; b++)
        {
            for (var t = T - lengths[b]; t < T; t++) _context[b].Add(Normalized(hidden.AsSpan((b * T + t) * C, C)));
        }
    }

    /// <summary>
    /// The index of sequence b's best candidate, given their probabilities and the step's hidden states (one row per
    /// candidate, k per sequence); its hidden state joins the sequence's.
    /// </summary>
    public int Select(int b, IReadOnlyList<(int Id, double Probability)> candidates, float[] hidden)
    {
        var C = embeddingSize;
        var context = _context[b];
        float[]? chosen = null;
        var best = -1;
        var bestScore = double.NegativeInfinity;
        for (var j = 0; j < candidates.Count; j++)
        {
            var h = Normalized(hidden.AsSpan((b * K + j) * C, C));
            var penalty = float.NegativeInfinity;
            foreach (var c in context) penalty = Math.Max(penalty, TensorPrimitives.Dot(c, h));
            var score = (1.0 - alpha) * candidates[j].Probability - alpha * (double)penalty;
            if (best < 0 || score > bestScore)
            {
                (best, bestScore, chosen) = (j, score, h);
            }
        }
        context.Add(chosen!);
        return best;
    }

    /// <summary><paramref name="h"/> over its Euclidean length (zeros when that is 0 or not finite).</summary>
    private static float[] Normalized(ReadOnlySpan<float> h)
    {
        var result = h.ToArray();
        var norm = TensorPrimitives.Norm(h);
        if (norm > 0 && float.IsFinite(norm)) TensorPrimitives.Divide(result, norm, result);
        else Array.Clear(result);
        return result;
    }
}
