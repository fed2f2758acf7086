namespace NativeGpt2.Server;

/// <summary>Limits, names and the API key of the OpenAI-compatible endpoints (<see cref="OpenAIEndpoints.MapNativeGpt2OpenAI"/>).</summary>
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

    /// <summary>
    /// The key clients must send as <c>Authorization: Bearer KEY</c>, as OpenAI's clients send theirs; null (the default)
    /// for none. With a key, every endpoint but <c>/health</c> answers a request without it 401 (<c>invalid_api_key</c>).
    /// </summary>
    public string? ApiKey { get; set; }

    /// <summary>Checks every limit, naming the one out of range.</summary>
    public void Validate()
    {
        if (ApiKey is not null && (ApiKey.Length == 0 || ApiKey.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))))
            throw new ArgumentException("must be a non-empty key without spaces or control characters (it travels in an HTTP header)", nameof(ApiKey));
        if (MaxConcurrentRequests < 1) throw new ArgumentOutOfRangeException(nameof(MaxConcurrentRequests), MaxConcurrentRequests, "must be at least 1");
        if (MaxQueuedRequests < 0) throw new ArgumentOutOfRangeException(nameof(MaxQueuedRequests), MaxQueuedRequests, "must be at least 0");
        if (MaxRequestBodyBytes < 1024) throw new ArgumentOutOfRangeException(nameof(MaxRequestBodyBytes), MaxRequestBodyBytes, "must be at least 1024");
        if (DefaultMaxTokens < 1) throw new ArgumentOutOfRangeException(nameof(DefaultMaxTokens), DefaultMaxTokens, "must be at least 1");
    }
}
