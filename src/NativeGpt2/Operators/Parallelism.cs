using System.Runtime.CompilerServices;

namespace NativeGpt2.Operators;

/// <summary>
/// Splits an operator's loop over the cores, but only when the work pays for it. A decoding step is
/// about a hundred operators of a few microseconds each, so the split goes to a persistent team of
/// worker threads that spin briefly between jobs (a few hundred nanoseconds to start one), rather
/// than to <see cref="Parallel.For(int, int, Action{int})"/> (microseconds per call).
/// </summary>
internal static class Parallelism
{
    // Below roughly this many multiply-adds a chunk costs more to hand out than to run.
    private const long MinWorkPerChunk = 1 << 15;

    /// <summary>Most threads the operators on this thread may use; set for a pass by <see cref="Backends.Cpu.CpuBackend.Enter"/>.</summary>
    [ThreadStatic]
    private static int _threadLimit;

    private static readonly Lazy<WorkerTeam> Team = new(() => new WorkerTeam(Environment.ProcessorCount - 1));

    /// <summary>Threads a loop started on this thread may use (all cores unless a pass limits it).</summary>
    public static int Threads => _threadLimit > 0 ? Math.Min(_threadLimit, Environment.ProcessorCount) : Environment.ProcessorCount;

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

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, <paramref name="count"/>) in contiguous chunks, at
    /// most a few per thread. Which chunk runs where never changes a result: each item is computed alone.
    /// </summary>
    /// <param name="count">Number of items.</param>
    /// <param name="workPerItem">Approximate multiply-adds per item, to decide how many chunks to use.</param>
    /// <param name="body">Processes items [start, end).</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void For(int count, long workPerItem, Action<int, int> body)
    {
        if (count <= 0) return;
        var threads = Threads;
        var maxChunks = Math.Min(count, threads * 4);
        var chunks = (int)Math.Clamp(count * Math.Max(workPerItem, 1) / MinWorkPerChunk, 1, maxChunks);
        if (chunks == 1 || threads == 1)
        {
            body(0, count);
            return;
        }
        void Chunk(int k) => body((int)((long)count * k / chunks), (int)((long)count * (k + 1) / chunks));
        // Another pass holds the team (threads sharing one model): this one runs on the thread pool instead.
        if (!Team.Value.TryRun(chunks, threads - 1, Chunk))
            System.Threading.Tasks.Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, Chunk);
    }

    /// <summary>
    /// Worker threads that wait for jobs, spinning for a short while before they sleep. A job is a number of
    /// chunks taken one at a time by the caller and the workers together; the caller returns when all are done.
    /// Each job is its own object, so a worker that wakes late for an old job finds nothing left to take.
    /// </summary>
    private sealed class WorkerTeam
    {
        private const int SpinIterations = 2_000;

        private readonly object _wake = new();
        private int _busy;
        private Job? _current;
        private int _generation;

        public WorkerTeam(int workers)
        {
            for (var i = 0; i < workers; i++)
                new Thread(Work) { IsBackground = true, Name = $"NativeGpt2 worker {i}" }.Start();
        }

        /// <summary>Runs the job with up to <paramref name="workers"/> helpers; false if the team is busy with another.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public bool TryRun(int chunks, int workers, Action<int> body)
        {
            if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0) return false;
            try
            {
                var job = new Job(body, chunks, workers);
                Volatile.Write(ref _current, job);
                lock (_wake)
                {
                    Interlocked.Increment(ref _generation);
                    Monitor.PulseAll(_wake);
                }
                job.TakeChunks();
                var spin = new SpinWait();
                while (Volatile.Read(ref job.Pending) > 0) spin.SpinOnce(sleep1Threshold: -1);
                Volatile.Write(ref _current, null);
                if (job.Failure is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
                return true;
            }
            finally
            {
                Volatile.Write(ref _busy, 0);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Work()
        {
            var seen = 0;
            while (true)
            {
                // Spin for the next job (a decoding step's operators follow each other closely), then sleep.
                var spun = 0;
                while (Volatile.Read(ref _generation) == seen && spun++ < SpinIterations) Thread.SpinWait(20);
                if (Volatile.Read(ref _generation) == seen)
                {
                    lock (_wake)
                    {
                        while (Volatile.Read(ref _generation) == seen) Monitor.Wait(_wake);
                    }
                }
                seen = Volatile.Read(ref _generation);
                if (Volatile.Read(ref _current) is { } job && Interlocked.Increment(ref job.Joined) <= job.Workers) job.TakeChunks();
            }
        }

        private sealed class Job(Action<int> body, int chunks, int workers)
        {
            public readonly int Workers = workers;
            private readonly int _chunks = chunks;
            public int Joined;
            public int Pending = chunks;
            public Exception? Failure;
            private int _next;

            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public void TakeChunks()
            {
                int chunk;
                while ((chunk = Interlocked.Increment(ref _next) - 1) < _chunks)
                {
                    try
                    {
                        body(chunk);
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref Failure, e, null);
                    }
                    Interlocked.Decrement(ref Pending);
                }
            }
        }
    }
}
