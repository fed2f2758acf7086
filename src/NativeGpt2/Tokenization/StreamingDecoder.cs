using System.Text;

namespace NativeGpt2.Tokenization;

/// <summary>
/// Turns token ids into text one at a time without ever emitting half a UTF-8 character: a token can
/// end in the middle of a multi-byte character (an emoji spans several byte-level tokens), so its bytes
/// are held until the character is complete. Invalid byte sequences become U+FFFD, as in Hugging Face's
/// <c>errors="replace"</c>.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly Gpt2Tokenizer _tokenizer;
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    internal StreamingDecoder(Gpt2Tokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Adds one token; returns the text it completes (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    public string Append(int id) => Convert(_tokenizer.TokenBytes(id), flush: false);

    /// <summary>Ends the stream: any held bytes that never formed a character come out as U+FFFD.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        var needed = _utf8.GetCharCount(bytes, flush);
        if (needed > _chars.Length) _chars = new char[Math.Max(needed, 2 * _chars.Length)];
        var written = _utf8.GetChars(bytes, _chars, flush);
        return new string(_chars, 0, written);
    }
}
