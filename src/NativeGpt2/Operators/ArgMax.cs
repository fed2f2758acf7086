namespace NativeGpt2.Operators;

/// <summary>
/// Greedy selection: <c>out[n] = the first v with logits[n, v] = max_v logits[n, :]</c>, or −1 when the
/// row holds NaN or +∞ or is all −∞ (nothing can be chosen; the caller reports why).
/// </summary>
/// <remarks>Shapes: out (N), logits (N, V). The first index wins ties, as <c>torch.argmax</c> and the sampler do.</remarks>
internal static class ArgMax
{
    /// <summary>One pass per row.</summary>
    public static void Forward(Span<int> output, ReadOnlySpan<float> logits, int N, int V)
    {
        for (var n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            var best = 0;
            var usable = true;
            for (var v = 0; v < V; v++)
            {
                var x = row[v];
                if (float.IsNaN(x) || float.IsPositiveInfinity(x)) usable = false;
                if (x > row[best]) best = v;
            }
            output[n] = usable && !float.IsNegativeInfinity(row[best]) ? best : -1;
        }
    }
}
