namespace NativeGpt2.Tokenization;

/// <summary>
/// Byte-pair encoding of one pre-tokenized piece in O(n log n): the symbols form a linked list and the
/// mergeable adjacent pairs wait in a priority queue by (merge rank, position), so the lowest-ranked pair,
/// leftmost among equals, is merged first, exactly as GPT-2's BPE and Hugging Face's tokenizers do.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers encodes ordinary pieces; its merge loop grows faster than linearly in the
/// piece length (a megabyte of one letter takes minutes), so pieces longer than
/// <see cref="Gpt2Tokenizer.LongPieceLength"/> come here instead. Property tests check both give the same ids.
/// </remarks>
internal sealed class HeapBpe
{
    private readonly int[] _byteTokens;
    private readonly Dictionary<(int Left, int Right), (int Rank, int Merged)> _merges;

    /// <param name="byteTokens">Token id of each single byte, or -1 where the vocabulary has none (such bytes are skipped).</param>
    /// <param name="merges">For each mergeable pair of token ids, its priority (lower first) and the merged token id.</param>
    public HeapBpe(int[] byteTokens, Dictionary<(int Left, int Right), (int Rank, int Merged)> merges)
    {
        _byteTokens = byteTokens;
        _merges = merges;
    }

    public void Encode(ReadOnlySpan<byte> bytes, List<int> output)
    {
        var ids = new List<int>(bytes.Length);
        foreach (var b in bytes)
        {
            if (_byteTokens[b] >= 0) ids.Add(_byteTokens[b]);
        }
        var n = ids.Count;
        var id = ids.ToArray();
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        for (var i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
            alive[i] = true;
        }

        var queue = new PriorityQueue<(int Position, int Left, int Right), (int Rank, int Position)>();
        void Offer(int position)
        {
            var right = next[position];
            if (right >= 0 && _merges.TryGetValue((id[position], id[right]), out var merge))
                queue.Enqueue((position, id[position], id[right]), (merge.Rank, position));
        }
        for (var i = 0; i + 1 < n; i++) Offer(i);

        while (queue.TryDequeue(out var pair, out _))
        {
            var (position, left, right) = pair;
            // Entries go stale when a neighbour merges first; only a pair still present is merged.
            var j = next[position];
            if (!alive[position] || j < 0 || id[position] != left || id[j] != right) continue;
            id[position] = _merges[(left, right)].Merged;
            alive[j] = false;
            next[position] = next[j];
            if (next[j] >= 0) prev[next[j]] = position;
            if (prev[position] >= 0) Offer(prev[position]);
            Offer(position);
        }

        for (var i = n > 0 ? 0 : -1; i >= 0; i = next[i]) output.Add(id[i]);
    }
}
