using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// Top-k sampling's candidates: for each row, every token whose logit is at least the row's k-th largest (the tokens tied
/// with the k-th stay, as Hugging Face keeps them), in id order, with their logits. The sampler's pick from these equals its
/// pick from the whole row when nothing but temperature, top-k, top-p, min-p and typical-p shapes it
/// (<see cref="Generation.Sampler.SampleCandidates"/>), so a GPU sends back a few hundred bytes a row instead of the
/// vocabulary's logits, and the host takes exponentials of k tokens instead of V.
/// </summary>
/// <remarks>
/// Shapes: logits (N, V), and a record of <see cref="RecordLength"/>(capacity) ints a row for the candidates: their count,
/// then capacity ids, then capacity logits as their bits (<see cref="BitConverter.SingleToInt32Bits"/>), so that a GPU's
/// step brings every row's back in one copy. 1 ≤ k ≤ V and k ≤ capacity ≤ <see cref="Backends.IBackend.MaxTopKCapacity"/>.
/// The count is −1 when the host must read the row's logits instead: the row holds NaN or +∞ or nothing but −∞ (which the
/// sampler reports), or more than capacity tokens are at least the k-th largest (ties). −0 ties with +0, as float comparison has it.
/// </remarks>
internal static class TopKCandidates
{
    /// <summary>Ints of a row's record: the count, <paramref name="capacity"/> ids, <paramref name="capacity"/> logits' bits.</summary>
    public static int RecordLength(int capacity) => 1 + 2 * capacity;

    /// <summary>
    /// Each row's k-th largest logit (<see cref="KthLargest(ReadOnlySpan{float}, int)"/>), then the tokens at least as large, which a vectorized
    /// comparison finds. Compiled optimized at once, as <see cref="ArgMax"/> is: a call a token is too few
    /// for tiered compilation to promote these loops soon.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(Span<int> records, ReadOnlySpan<float> logits, int N, int V, int k, int capacity)
    {
        Check(N, V, k, capacity);
        var largest = new LargestK(k);
        for (var n = 0; n < N; n++)
        {
            var row = logits.Slice(n * V, V);
            var record = records.Slice(n * RecordLength(capacity), RecordLength(capacity));
            record[0] = -1;
            // NaN, +∞ and a row of −∞ alone are errors, which the sampler names from the row itself (the vectorized
            // maximum is NaN when any value is).
            var max = TensorPrimitives.Max(row);
            if (!float.IsFinite(max)) continue;
            var kth = KthLargest(row, largest);
            var count = 0;
            var width = Vector256<float>.Count;
            var v = 0;
            for (; v + width <= V && count <= capacity; v += width)
            {
                var atLeast = Vector256.GreaterThanOrEqual(Vector256.Create(row.Slice(v, width)), Vector256.Create(kth)).ExtractMostSignificantBits();
                for (; atLeast != 0 && count <= capacity; atLeast &= atLeast - 1)
                    Keep(record, row, capacity, ref count, v + BitOperations.TrailingZeroCount(atLeast));
            }
            for (; v < V && count <= capacity; v++)
            {
                if (row[v] >= kth) Keep(record, row, capacity, ref count, v);
            }
            if (count <= capacity) record[0] = count;
        }
    }

    /// <summary>Token <paramref name="id"/> is a candidate: stored at the record's next place while there is one, and counted.</summary>
    private static void Keep(Span<int> record, ReadOnlySpan<float> row, int capacity, ref int count, int id)
    {
        if (count < capacity)
        {
            record[1 + count] = id;
            record[1 + capacity + count] = BitConverter.SingleToInt32Bits(row[id]);
        }
        count++;
    }

    /// <summary>
    /// The k-th largest of <paramref name="row"/> (equal values counted apart), 1 ≤ k ≤ its length, by a heap of the k
    /// largest so far fed only the values that can be among them: those at least the k-th largest of the maxima of blocks
    /// of 64, which are k distinct values, so that none below it is among the k largest. Feeding every value above the
    /// heap's root instead took hundreds of heap steps a row where the logits rise along the vocabulary. The sampler's
    /// top-k takes its threshold from here too.
    /// </summary>
    public static float KthLargest(ReadOnlySpan<float> row, int k) => KthLargest(row, new LargestK(k));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float KthLargest(ReadOnlySpan<float> row, LargestK heap)
    {
        const int Block = 64;
        var floor = float.NegativeInfinity;
        if (row.Length >= heap.K * Block)
        {
            heap.Clear();
            for (var start = 0; start < row.Length; start += Block)
                heap.Offer(TensorPrimitives.Max(row.Slice(start, Math.Min(Block, row.Length - start))));
            floor = heap.Root;
        }
        heap.Clear();
        var width = Vector256<float>.Count;
        var v = 0;
        for (; v + width <= row.Length; v += width)
        {
            var atLeast = Vector256.GreaterThanOrEqual(Vector256.Create(row.Slice(v, width)), Vector256.Create(floor)).ExtractMostSignificantBits();
            for (; atLeast != 0; atLeast &= atLeast - 1) heap.Offer(row[v + BitOperations.TrailingZeroCount(atLeast)]);
        }
        for (; v < row.Length; v++)
        {
            if (row[v] >= floor) heap.Offer(row[v]);
        }
        return heap.Root;
    }

    /// <summary>
    /// The k largest values offered so far (equal ones counted apart), in a min-heap whose root is the k-th largest once k
    /// were offered. Written out rather than a <see cref="PriorityQueue{TElement, TPriority}"/>, whose methods tiered
    /// compilation would leave unoptimized for the first hundred tokens.
    /// </summary>
    private sealed class LargestK(int k)
    {
        private readonly float[] _heap = new float[k];
        private int _count;

        public int K => _heap.Length;

        public float Root => _heap[0];

        public void Clear() => _count = 0;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Offer(float x)
        {
            var at = 0;
            if (_count < _heap.Length)
            {
                // Up from the new leaf while the parent is larger.
                for (at = _count++; at > 0 && _heap[(at - 1) / 2] > x; at = (at - 1) / 2) _heap[at] = _heap[(at - 1) / 2];
            }
            else
            {
                if (x <= _heap[0]) return;
                // x replaces the root and goes down while a child is smaller.
                for (int child; (child = 2 * at + 1) < _count; at = child)
                {
                    if (child + 1 < _count && _heap[child + 1] < _heap[child]) child++;
                    if (_heap[child] >= x) break;
                    _heap[at] = _heap[child];
                }
            }
            _heap[at] = x;
        }
    }

    /// <summary>Throws unless 1 ≤ k ≤ V, k ≤ capacity ≤ <see cref="Backends.IBackend.MaxTopKCapacity"/> and N ≥ 1.</summary>
    public static void Check(int N, int V, int k, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(N, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(V, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, V);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, Backends.IBackend.MaxTopKCapacity);
    }
}
