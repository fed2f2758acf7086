namespace NativeGpt2.Generation;

/// <summary>
/// Which waiting prompts <see cref="GenerationBatcher"/> runs together next. Prompts that run together are left-padded to the
/// longest, and every padded position costs as much as a real one, so a group is formed from prompts of similar length:
/// short prompts are neither padded to a long one's length nor held behind it. The oldest waiting prompt, once passed over,
/// leads the next group, so no prompt waits for more than one group after it becomes the oldest.
/// </summary>
internal static class PromptGrouping
{
    /// <summary>
    /// The next group: indices into <paramref name="lengths"/> (the waiting prompts' lengths, oldest first), its lead first.
    /// The oldest leads when <paramref name="oldestPassedOver"/>, else the shortest prompt (the oldest of the shortest); the
    /// others join shortest first, at most <paramref name="room"/> in all, while the group's padding stays within a quarter
    /// of its padded positions or the whole group within <paramref name="partTokens"/> positions (a prompt part's worth).
    /// </summary>
    public static List<int> Choose(IReadOnlyList<int> lengths, bool oldestPassedOver, int room, int partTokens)
    {
        ArgumentOutOfRangeException.ThrowIfZero(lengths.Count, nameof(lengths));
        ArgumentOutOfRangeException.ThrowIfLessThan(room, 1, nameof(room));
        var lead = 0;
        if (!oldestPassedOver)
        {
            for (var i = 1; i < lengths.Count; i++)
                if (lengths[i] < lengths[lead]) lead = i;
        }
        List<int> group = [lead];
        long longest = lengths[lead], total = longest;
        foreach (var candidate in Enumerable.Range(0, lengths.Count).Where(i => i != lead).OrderBy(i => lengths[i]))
        {
            if (group.Count == room) break;
            long length = lengths[candidate], padded = (group.Count + 1) * Math.Max(longest, length);
            if (padded > partTokens && padded - (total + length) > padded / 4) continue;
            group.Add(candidate);
            (longest, total) = (Math.Max(longest, length), total + length);
        }
        return group;
    }
}
