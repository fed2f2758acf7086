namespace NativeGpt2;

/// <summary>
/// Writes a file whole or not at all: into a temporary file beside it, renamed into place, so a reader never sees half
/// a file. Shared by the library's writers and the command line's <c>--out</c>.
/// </summary>
internal static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="path"/> with <paramref name="write"/>, creating its folder when missing; a file already there
    /// is replaced.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written: the message names <paramref name="path"/> and why, never the temporary file.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        if (Directory.Exists(path)) throw new IOException($"cannot write {path}: it is a folder");
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(directory);
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
                write(stream);
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {path}: {Reason(e, temporary)}", e);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>Why the write failed, in words that do not name the temporary file.</summary>
    private static string Reason(Exception e, string temporary) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        DirectoryNotFoundException => "its folder does not exist",
        FileNotFoundException missing when missing.FileName == temporary => "its folder does not take new files",
        _ => e.Message,
    };
}
