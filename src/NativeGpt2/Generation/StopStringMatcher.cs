namespace NativeGpt2.Generation;

/// <summary>
/// Watches streamed text for stop strings. Text that could still be the start of a stop string is held
/// back until the next piece shows whether it is one, so a stop string is never half-emitted.
/// </summary>
internal sealed class StopStringMatcher(IReadOnlyList<string> stopStrings)
{
    private string _pending = "";

    /// <summary>Whether a stop string has been seen; no more text will be emitted.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds the next piece of text; returns the text now safe to emit.</summary>
    public string Push(string piece)
    {
        if (Stopped) return "";
        _pending += piece;
        var stop = -1;
        foreach (var s in stopStrings)
        {
            var at = _pending.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (stop < 0 || at < stop)) stop = at;
        }
        if (stop >= 0)
        {
            Stopped = true;
            var before = _pending[..stop];
            _pending = "";
            return before;
        }
        var hold = HeldSuffixLength();
        var emit = _pending[..^hold];
        _pending = _pending[^hold..];
        return emit;
    }

    /// <summary>The end of the stream: whatever was held back is not a stop string after all.</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }

    /// <summary>Length of the longest suffix of the pending text that is a proper prefix of some stop string.</summary>
    private int HeldSuffixLength()
    {
        var longest = 0;
        foreach (var s in stopStrings)
        {
            for (var length = Math.Min(s.Length - 1, _pending.Length); length > longest; length--)
            {
                if (_pending.AsSpan(_pending.Length - length).SequenceEqual(s.AsSpan(0, length)))
                {
                    longest = length;
                    break;
                }
            }
        }
        return longest;
    }
}
