namespace NativeGpt2.Cli;

/// <summary>
/// Text a command reads from a file or, for <c>-</c>, from standard input (<c>score --file</c>,
/// <c>generate --prompt-file</c>, <c>tokenize --file</c>): bounded in size, and decoded strictly, so that bytes that
/// are not text are an error naming where they are rather than U+FFFD characters the model would then read.
/// </summary>
internal static class TextFile
{
    /// <summary>
    /// The text given inline by <paramref name="textOption"/> (<paramref name="text"/>) or read by
    /// <paramref name="fileOption"/> (<paramref name="path"/>, see <see cref="Read"/>): exactly one of them.
    /// <paramref name="what"/> names the text in the usage error (<c>the prompt</c>).
    /// </summary>
    public static string Either(CliContext context, string? text, string? path, string textOption, string fileOption, string what, string command)
    {
        if ((text is null) == (path is null))
            throw new UsageException($"give {what} as exactly one of {textOption} TEXT or {fileOption} PATH");
        return text ?? Read(context, path!, fileOption, command);
    }

    /// <summary>
    /// The text of <paramref name="path"/> (<c>-</c>: standard input), given by <paramref name="option"/> to
    /// <paramref name="command"/>, which the messages name.
    /// </summary>
    public static string Read(CliContext context, string path, string option, string command)
    {
        var bytes = ReadBytes(context, path, option);
        return Decode(bytes, path == "-" ? "standard input" : path, command);
    }

    /// <summary>
    /// The text's bytes: standard input for <c>-</c>, a pipe or FIFO read to its end (<c>/dev/stdin</c>, a shell's
    /// <c>&lt;(…)</c>), or a regular file, its size checked before it is read. All bounded by
    /// <see cref="Loading.ModelFiles.MaxTextBytes"/>, so that <c>/dev/zero</c> stops there.
    /// </summary>
    private static byte[] ReadBytes(CliContext context, string path, string option)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new UsageException($"{option}: give a file path, or - for standard input");
        if (path == "-") return ReadToEnd(context.OpenInput(), $"{option} -: standard input");
        var fullPath = Path.GetFullPath(path);
        if (FileKind.IsSpecial(fullPath))
        {
            try
            {
                return ReadToEnd(new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1), $"{option}: {path}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ModelFormatException(fullPath, null, $"cannot be read: {e.Message}");
            }
        }
        // An empty file is an empty text, as empty standard input is: the command says whether that is enough.
        return Loading.ModelFiles.ReadBounded(fullPath, Loading.ModelFiles.MaxTextBytes, allowEmpty: true);
    }

    /// <summary>Reads <paramref name="input"/> to its end, at most <see cref="Loading.ModelFiles.MaxTextBytes"/>; <paramref name="source"/> names it.</summary>
    private static byte[] ReadToEnd(Stream input, string source)
    {
        using (input)
        {
            using var bytes = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = input.Read(buffer)) > 0)
            {
                if (bytes.Length + read > Loading.ModelFiles.MaxTextBytes)
                    throw new UsageException($"{source} holds more than the {Loading.ModelFiles.MaxTextBytes:N0} bytes a text may have");
                bytes.Write(buffer, 0, read);
            }
            return bytes.ToArray();
        }
    }

    /// <summary>
    /// The text of <paramref name="bytes"/>: UTF-8 (a byte-order mark is dropped), or UTF-16/32 where a byte-order mark
    /// says so. Bytes that are not UTF-8 are an error naming where, not replacement characters: scored, those would
    /// change the perplexity without a word; continued, they would be a prompt nobody wrote.
    /// </summary>
    private static string Decode(byte[] bytes, string source, string command)
    {
        ReadOnlySpan<byte> utf8Bom = [0xEF, 0xBB, 0xBF];
        if (bytes.Length >= 2 && (bytes[0], bytes[1]) is (0xFF, 0xFE) or (0xFE, 0xFF) || bytes.AsSpan().StartsWith<byte>([0, 0, 0xFE, 0xFF]))
            return new StreamReader(new MemoryStream(bytes), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true).ReadToEnd();
        var start = bytes.AsSpan().StartsWith(utf8Bom) ? utf8Bom.Length : 0;
        var body = bytes.AsSpan(start);
        var chars = new char[body.Length];
        if (System.Text.Unicode.Utf8.ToUtf16(body, chars, out var read, out var written, replaceInvalidSequences: false) != System.Buffers.OperationStatus.Done)
            throw new NativeGpt2Exception($"{source}: not UTF-8 text (byte {start + read:N0} of {bytes.Length:N0} is 0x{bytes[start + read]:X2}); {command} reads UTF-8, or UTF-16 with a byte-order mark");
        return new string(chars, 0, written);
    }
}
