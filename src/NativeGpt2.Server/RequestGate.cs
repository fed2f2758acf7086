namespace NativeGpt2.Server;

/// <summary>
/// Admission for the work that runs the model: at most <see cref="NativeGpt2ServerOptions.MaxConcurrentRequests"/>
/// run, at most <see cref="NativeGpt2ServerOptions.MaxQueuedRequests"/> wait in arrival order, and any more are
/// turned away at once (the endpoint answers 503) instead of piling up.
/// </summary>
internal sealed class RequestGate(NativeGpt2ServerOptions options)
{
    private readonly SemaphoreSlim _slots = new(options.MaxConcurrentRequests, options.MaxConcurrentRequests);
    private readonly int _capacity = options.MaxConcurrentRequests + options.MaxQueuedRequests;
    private int _admitted;

    /// <summary>Requests running or waiting now.</summary>
    public int Admitted => Volatile.Read(ref _admitted);

    /// <summary>A slot, held until the returned lease is disposed; null when the queue is full. Waiting ends with the request.</summary>
    public async Task<IDisposable?> EnterAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _admitted) > _capacity)
        {
            Interlocked.Decrement(ref _admitted);
            return null;
        }
        try
        {
            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Interlocked.Decrement(ref _admitted);
            throw;
        }
        return new Lease(this);
    }

    private sealed class Lease(RequestGate gate) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            gate._slots.Release();
            Interlocked.Decrement(ref gate._admitted);
        }
    }
}
