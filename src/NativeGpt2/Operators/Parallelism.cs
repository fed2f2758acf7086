namespace NativeGpt2.Operators;

/// <summary>Splits a loop over all cores, but only when the work is large enough to pay for it.</summary>
internal static class Parallelism
{
    // Below roughly this many multiply-adds a chunk costs more to schedule than to run.
    private const long MinWorkPerChunk = 1 << 16;

    /// <summary>Runs <paramref name="body"/>(start, end) over [0, <paramref name="count"/>) in contiguous chunks.</summary>
    /// <param name="count">Number of items.</param>
    /// <param name="workPerItem">Approximate multiply-adds per item, to decide how many chunks to use.</param>
    /// <param name="body">Processes items [start, end).</param>
    public static void For(int count, long workPerItem, Action<int, int> body)
    {
        if (count <= 0) return;
        var maxChunks = Math.Min(count, Environment.ProcessorCount * 4);
        var chunks = (int)Math.Clamp(count * Math.Max(workPerItem, 1) / MinWorkPerChunk, 1, maxChunks);
        if (chunks == 1)
        {
            body(0, count);
            return;
        }
        Parallel.For(0, chunks, k => body((int)((long)count * k / chunks), (int)((long)count * (k + 1) / chunks)));
    }
}
