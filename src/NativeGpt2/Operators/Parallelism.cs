namespace NativeGpt2.Operators;

/// <summary>Splits a loop over all cores, but only when the work is large enough to pay for it.</summary>
internal static class Parallelism
{
    /// <summary>Most threads the operators on this thread may use; set for a pass by <see cref="Backends.Cpu.CpuBackend.Enter"/>.</summary>
    [ThreadStatic]
    private static int _threadLimit;

    /// <summary>Threads a loop started on this thread may use (all cores unless a pass limits it).</summary>
    public static int Threads => _threadLimit > 0 ? _threadLimit : Environment.ProcessorCount;

    /// <summary>Limits the loops started on this thread to <paramref name="threads"/> until the result is disposed.</summary>
    public static IDisposable Limit(int threads)
    {
        var previous = _threadLimit;
        _threadLimit = threads;
        return new Restore(previous);
    }

    private sealed class Restore(int previous) : IDisposable
    {
        public void Dispose() => _threadLimit = previous;
    }

    // Below roughly this many multiply-adds a chunk costs more to schedule than to run.
    private const long MinWorkPerChunk = 1 << 16;

    /// <summary>Runs <paramref name="body"/>(start, end) over [0, <paramref name="count"/>) in contiguous chunks.</summary>
    /// <param name="count">Number of items.</param>
    /// <param name="workPerItem">Approximate multiply-adds per item, to decide how many chunks to use.</param>
    /// <param name="body">Processes items [start, end).</param>
    public static void For(int count, long workPerItem, Action<int, int> body)
    {
        if (count <= 0) return;
        var threads = Threads;
        var maxChunks = Math.Min(count, threads * 4);
        var chunks = (int)Math.Clamp(count * Math.Max(workPerItem, 1) / MinWorkPerChunk, 1, maxChunks);
        if (chunks == 1)
        {
            body(0, count);
            return;
        }
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads },
            k => body((int)((long)count * k / chunks), (int)((long)count * (k + 1) / chunks)));
    }
}
