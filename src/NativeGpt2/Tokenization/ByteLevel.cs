namespace NativeGpt2.Tokenization;

/// <summary>
/// GPT-2's reversible byte-to-character map: each of the 256 byte values is drawn as a printable
/// character (printable Latin-1 bytes as themselves, the rest as U+0100 onwards), so that BPE tokens,
/// which are sequences of bytes, can be stored as strings in vocab.json (a space is <c>Ġ</c>, a newline <c>Ċ</c>).
/// </summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    /// <summary>The character GPT-2 uses for byte <paramref name="b"/>.</summary>
    public static char Char(byte b) => ByteToChar[b];

    /// <summary>The bytes a vocab.json token string stands for, or null if it holds a character outside the map.</summary>
    public static byte[]? TokenBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (var i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i])) return null;
        }
        return bytes;
    }
}
