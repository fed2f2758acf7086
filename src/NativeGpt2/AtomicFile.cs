namespace NativeGpt2;

/// <summary>
/// Writes a file whole or not at all: into a temporary file beside it, renamed into place, so a reader never sees half
/// a file. Shared by the library's writers and the command line's <c>--out</c>.
/// </summary>
/// <remarks>
/// A symbolic link is followed and the file it ends at is replaced, so the link stays a link. What is not a regular
/// file (a device such as <c>/dev/null</c>, a pipe or FIFO, a socket, a terminal) or names an open descriptor
/// (<c>/dev/stdout</c>, <c>/dev/fd/N</c>, <c>/proc/self/fd/N</c>; <c>NUL</c> on Windows) is written in place,
/// appending as a shell's <c>&gt;&gt;</c> does: a rename would put a file where the device or descriptor was.
/// </remarks>
internal static partial class AtomicFile
{
    /// <summary>Symbolic links followed at most, as Linux's own limit.</summary>
    private const int MaxLinks = 40;

    /// <summary>
    /// Writes <paramref name="path"/> with <paramref name="write"/>, creating its folder when missing; a file already there
    /// is replaced.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written: the message names <paramref name="path"/> and why, never the temporary file.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        if (Directory.Exists(path)) throw new IOException($"cannot write {path}: it is a folder");
        var destination = Destination(path);
        if (destination is null) WriteInPlace(path, write);
        else WriteAndRename(path, destination, write);
    }

    /// <summary>
    /// Whether <see cref="Write"/> would write <paramref name="path"/> in place (a device, pipe, socket, terminal or open
    /// descriptor) rather than replace a file: the command line then keeps its own messages off that stream.
    /// </summary>
    public static bool WritesInPlace(string path) => !Directory.Exists(path) && Destination(path) is null;

    /// <summary>
    /// The file to replace: <paramref name="path"/>, or the file its symbolic links end at; null when the path is to be
    /// written in place (see the remarks on <see cref="AtomicFile"/>).
    /// </summary>
    private static string? Destination(string path)
    {
        if (FileKind.IsSpecial(path)) return null;
        var current = Path.GetFullPath(path);
        for (var links = 0; links <= MaxLinks; links++)
        {
            if (IsDescriptorOrDevicePath(current)) return null;
            if (new FileInfo(current).LinkTarget is not { } target) return current;
            current = Path.GetFullPath(target, Path.GetDirectoryName(current)!);
        }
        throw new IOException($"cannot write {path}: more than {MaxLinks} symbolic links");
    }

    /// <summary>
    /// Linux's paths of open descriptors, which <c>/dev/stdout</c> and <c>/dev/stderr</c> link to; and Windows's device
    /// paths, which <c>NUL</c> and <c>CON</c> become in full (<c>\\.\NUL</c>).
    /// </summary>
    private static bool IsDescriptorOrDevicePath(string fullPath) =>
        fullPath.StartsWith("/proc/", StringComparison.Ordinal) || fullPath.StartsWith("/dev/fd/", StringComparison.Ordinal)
        || (OperatingSystem.IsWindows() && fullPath.StartsWith(@"\\.\", StringComparison.Ordinal));

    private static void WriteInPlace(string path, Action<Stream> write)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Append, FileAccess.Write);
            write(stream);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {path}: {Reason(e, temporary: null)}", e);
        }
    }

    private static void WriteAndRename(string path, string destination, Action<Stream> write)
    {
        var directory = Path.GetDirectoryName(destination)!;
        var temporary = Path.Combine(directory, $".{Path.GetFileName(destination)}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(directory);
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
                write(stream);
            File.Move(temporary, destination, overwrite: true);
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
    private static string Reason(Exception e, string? temporary) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        DirectoryNotFoundException => "its folder does not exist",
        FileNotFoundException missing when missing.FileName == temporary => "its folder does not take new files",
        _ => QuotedPath().Replace(e.Message, ""),
    };

    /// <summary>The <c> : '/the/path'</c> that .NET ends a system error's message with on Unix: the temporary file's, or the path already named.</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"\s*:\s*'[^']*'\s*$")]
    private static partial System.Text.RegularExpressions.Regex QuotedPath();
}
