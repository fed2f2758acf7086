namespace NativeGpt2.Server;

/// <summary>Limits and names of the OpenAI-compatible endpoints (<see cref="OpenAIEndpoints.MapNativeGpt2OpenAI"/>).</summary>
public sealed class NativeGpt2ServerOptions
{
    /// <summary>Generation and embedding requests running at once (default 4). They share the model; the CPU backend runs them side by side.</summary>
    public int MaxConcurrentRequests { get; set; } = 4;

    /// <summary>Requests that may wait for a free slot (default 32); beyond that a request is answered 503 at once.</summary>
    public int MaxQueuedRequests { get; set; } = 32;

    /// <summary>Largest request body in bytes (default 1 MiB); a larger one is answered 400.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1 << 20;

    /// <summary>Completion tokens when a request gives no <c>max_tokens</c> (default 16, as OpenAI's completions API).</summary>
    public int DefaultMaxTokens { get; set; } = 16;

    /// <summary>Checks every limit, naming the one out of range.</summary>
    public void Validate()
    {
        if (MaxConcurrentRequests < 1) throw new ArgumentOutOfRangeException(nameof(MaxConcurrentRequests), MaxConcurrentRequests, "must be at least 1");
        if (MaxQueuedRequests < 0) throw new ArgumentOutOfRangeException(nameof(MaxQueuedRequests), MaxQueuedRequests, "must be at least 0");
        if (MaxRequestBodyBytes < 1024) throw new ArgumentOutOfRangeException(nameof(MaxRequestBodyBytes), MaxRequestBodyBytes, "must be at least 1024");
        if (DefaultMaxTokens < 1) throw new ArgumentOutOfRangeException(nameof(DefaultMaxTokens), DefaultMaxTokens, "must be at least 1");
    }
}
