namespace NativeGpt2.Operators;

/// <summary>
/// Top-k sampling's candidates: for each row, every token whose logit is at least the row's k-th largest (the tokens tied
/// with the k-th stay, as Hugging Face keeps them), in id order, with their logits. The sampler's pick from these equals its
/// pick from the whole row when nothing but temperature, top-k, top-p, min-p and typical-p shapes it
/// (<see cref="Generation.Sampler.SampleCandidates"/>), so a GPU sends back a few hundred bytes a row instead of the
/// vocabulary's logits, and the host takes exponentials of k tokens instead of V.
/// </summary>
/// <remarks>
/// Shapes: counts (N), ids and values (N, capacity), logits (N, V); 1 ≤ k ≤ capacity ≤ <see cref="Backends.IBackend.MaxTopKCapacity"/>.
/// counts[n] is −1 when the host must read the row's logits instead: the row holds NaN or +∞ (which the sampler reports),
/// or more than capacity tokens are at least the k-th largest (ties). −0 ties with +0, as float comparison has it.
/// </remarks>
internal static class TopKCandidates
{
    /// <summary>Each row's k-th largest logit by a heap of k, then the tokens at least as large, in one pass each.</summary>
    public static void Forward(Span<int> counts, Span<int> ids, Span<float> values, ReadOnlySpan<float> logits, int N, int V, int k, int capacity)
    {
        Check(N, V, k, capacity);
        var heap = new PriorityQueue<float, float>(k);
        for (var n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            counts[n] = -1;
            // NaN and +∞ are errors, which the sampler names from the row itself.
            if (row.ContainsAnyExceptInRange(float.NegativeInfinity, float.MaxValue)) continue;
            heap.Clear();
            foreach (var x in row)
            {
                if (heap.Count < k) heap.Enqueue(x, x);
                else if (x > heap.Peek()) heap.EnqueueDequeue(x, x);
            }
            var kth = heap.Peek();
            var count = 0;
            for (var v = 0; v < V && count <= capacity; v++)
            {
                if (row[v] < kth) continue;
                if (count < capacity)
                {
                    ids[n * capacity + count] = v;
                    values[n * capacity + count] = row[v];
                }
                count++;
            }
            if (count <= capacity) counts[n] = count;
        }
    }

    /// <summary>Throws unless 1 ≤ k ≤ capacity ≤ <see cref="Backends.IBackend.MaxTopKCapacity"/> and the shapes are positive.</summary>
    public static void Check(int N, int V, int k, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(N, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(V, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, Backends.IBackend.MaxTopKCapacity);
    }
}
