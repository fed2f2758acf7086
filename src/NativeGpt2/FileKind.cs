using System.Runtime.InteropServices;

namespace NativeGpt2;

/// <summary>
/// Tells a regular file from the other things a path can name on Unix: a device (<c>/dev/null</c>), a pipe or FIFO
/// (<c>/dev/stdout</c> in a pipeline), a socket, a terminal. .NET reports all of them as plain files, so this asks the
/// system. <see cref="AtomicFile"/> writes such a path in place (renaming a new file over it would replace it: as root,
/// even <c>/dev/null</c>), and <see cref="Loading.ModelFiles"/> refuses one before opening it (a FIFO would block).
/// </summary>
internal static partial class FileKind
{
    /// <summary>What a path names, its symbolic links followed.</summary>
    public enum Kind
    {
        /// <summary>Missing, or the system cannot say (Windows, or a C library without <c>statx</c>).</summary>
        Unknown,
        /// <summary>A regular file.</summary>
        Regular,
        /// <summary>A folder.</summary>
        Folder,
        /// <summary>A device, pipe or FIFO, socket or terminal.</summary>
        Special,
    }

    /// <summary>What <paramref name="path"/> names, its symbolic links followed.</summary>
    public static Kind Of(string path) => FileTypeBits(path) switch
    {
        null => Kind.Unknown,
        RegularFile => Kind.Regular,
        Folder => Kind.Folder,
        _ => Kind.Special,
    };

    /// <summary>
    /// Whether <paramref name="path"/>, its symbolic links followed, exists and is not a regular file or a folder.
    /// False where the system cannot say: there a path is taken for a regular file, as .NET takes it.
    /// </summary>
    public static bool IsSpecial(string path) => Of(path) == Kind.Special;

    private const int TypeMask = 0xF000;   // S_IFMT: the same bits on Linux and macOS
    private const int RegularFile = 0x8000;
    private const int Folder = 0x4000;

    /// <summary>The file-type bits of <c>st_mode</c> (links followed), or null when missing or unknown.</summary>
    private static int? FileTypeBits(string path)
    {
        try
        {
            if (OperatingSystem.IsLinux()) return LinuxTypeBits(path);
            if (OperatingSystem.IsMacOS()) return MacTypeBits(path);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        return null;
    }

    // statx(2) has one layout on every Linux architecture (unlike stat's): stx_mode is the 16 bits at offset 28 of a
    // 256-byte buffer. It is in glibc since 2.28 and musl since 1.2.5.
    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;

    private static unsafe int? LinuxTypeBits(string path)
    {
        var buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return null;
        return *(ushort*)(buffer + StatxModeOffset) & TypeMask;
    }

    // macOS's struct stat, in both its layouts (32- and 64-bit inode numbers), starts with a 32-bit st_dev and then the
    // 16-bit st_mode. The buffer is larger than either layout.
    private const int MacStatSize = 512;
    private const int MacModeOffset = 4;

    private static unsafe int? MacTypeBits(string path)
    {
        var buffer = stackalloc byte[MacStatSize];
        if (Stat(path, buffer) != 0) return null;
        return *(ushort*)(buffer + MacModeOffset) & TypeMask;
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directory, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buffer);
}
