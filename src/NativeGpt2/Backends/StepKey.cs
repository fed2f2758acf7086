namespace NativeGpt2.Backends;

/// <summary>
/// What a decoding step's launches work on: the pass's workspace, the cache's buffers, and the rows. Two steps with
/// equal keys launch the same kernels with the same arguments but for the cache's length, so a backend that records
/// launches (CUDA graphs) may replay the first step's for the second (<see cref="IBackend.RunStep"/>).
/// </summary>
/// <remarks>Parts are compared as their own types do: objects by reference (a buffer is itself, not its contents), numbers by value.</remarks>
public sealed class StepKey : IEquatable<StepKey>
{
    private readonly object[] _parts;
    private readonly int _hash;

    internal StepKey(params object[] parts)
    {
        _parts = parts;
        var hash = new HashCode();
        foreach (var part in parts) hash.Add(part);
        _hash = hash.ToHashCode();
    }

    /// <inheritdoc />
    public bool Equals(StepKey? other) =>
        other is not null && _hash == other._hash && _parts.AsSpan().SequenceEqual(other._parts);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as StepKey);

    /// <inheritdoc />
    public override int GetHashCode() => _hash;
}
