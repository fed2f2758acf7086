namespace NativeGpt2.Loading;

/// <summary>
/// The rules every file of a checkpoint is read under: it must be a regular file with content (a FIFO
/// or a device would block or never end), no larger than a per-kind cap checked before anything is read,
/// and, when it is a symbolic link, its target must stay inside the checkpoint (or, for a Hugging Face
/// cache snapshot, inside the repository's <c>blobs/</c> folder, where the hub's own tools point links).
/// </summary>
/// <remarks>The caps are listed in docs/errors.md; they are far above any real GPT-2 file.</remarks>
internal static class ModelFiles
{
    /// <summary>Cap on <c>config.json</c> and <c>generation_config.json</c> (real ones are about 1 KB).</summary>
    public const long MaxConfigBytes = 1L << 20;

    /// <summary>Cap on <c>model.safetensors.index.json</c> (GPT-2 XL's is about 30 KB).</summary>
    public const long MaxIndexBytes = 16L << 20;

    /// <summary>Cap on <c>vocab.json</c> and <c>merges.txt</c> (GPT-2's are about 1 MB and 0.5 MB).</summary>
    public const long MaxTokenizerFileBytes = 64L << 20;

    /// <summary>Cap on one downloaded weights file: float32 weights of the largest model a config may describe, plus its header.</summary>
    public const long MaxWeightsFileBytes = 4 * Gpt2Config.MaxParameterCount + Safetensors.SafetensorsHeader.MaxHeaderLength;

    /// <summary>Cap on a text file given to <c>score</c>, <c>generate --prompt-file</c> or <c>tokenize --file</c>.</summary>
    public const long MaxTextBytes = 1L << 30;

    /// <summary>
    /// Reads the whole file after checking that it is a regular, non-empty file of at most
    /// <paramref name="maxBytes"/>; reads no more than that even if the file grows meanwhile.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is empty, not a regular file, too large, or a link leaving <paramref name="checkpoint"/>.</exception>
    /// <param name="path">The file.</param>
    /// <param name="maxBytes">The cap for this kind of file.</param>
    /// <param name="checkpoint">The checkpoint directory a link must stay in; null for a file given on its own.</param>
    /// <param name="allowEmpty">Whether an empty file is valid content (merges.txt with no merges); it is then
    /// returned as empty without being opened, so a FIFO in its place cannot block.</param>
    public static byte[] ReadBounded(string path, long maxBytes, string? checkpoint = null, bool allowEmpty = false)
    {
        var length = CheckRegularFile(path, checkpoint, allowEmpty);
        if (length == 0) return [];
        if (length > maxBytes)
            throw new ModelFormatException(path, null, $"is {length:N0} bytes, more than the {maxBytes:N0} bytes allowed for this file");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        var buffer = new byte[length];
        var read = 0;
        while (read < buffer.Length)
        {
            var n = stream.Read(buffer, read, buffer.Length - read);
            if (n == 0) break;
            read += n;
        }
        if (read != length)
            throw new ModelFormatException(path, null, $"changed while being read ({read} of {length} bytes)");
        return buffer;
    }

    /// <summary>
    /// Checks that <paramref name="path"/> is a regular file with content, and that a link stays inside
    /// <paramref name="checkpoint"/> when one is given. Returns its length.
    /// </summary>
    /// <exception cref="ModelFormatException">It is not.</exception>
    public static long CheckRegularFile(string path, string? checkpoint = null, bool allowEmpty = false)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new ModelFormatException(path, null, Directory.Exists(path) ? "is a directory, not a file" : "does not exist");
        if (checkpoint is not null) CheckInside(checkpoint, info);
        // FileInfo describes a link itself (lstat); its length is that of the target path's text.
        if (info.LinkTarget is not null)
        {
            info = info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo is { Exists: true } target
                ? target
                : throw new ModelFormatException(path, null, $"is a symbolic link to {info.LinkTarget}, which is not an existing file (a pipe such as <(…) is not one); only regular files are read");
        }
        // Rejecting a FIFO or a device here, before open(), is what keeps a FIFO from blocking forever and /dev/zero
        // from being read until memory runs out. Where the system cannot tell them from files (FileKind), all of them,
        // and /proc files, report length 0 as an empty file does, and length 0 stops them instead.
        var kind = FileKind.Of(path);
        if (kind == FileKind.Kind.Special)
            throw new ModelFormatException(path, null, "is a FIFO, a device or a socket, not a regular file; only regular files are read");
        if (info.Length == 0 && !allowEmpty)
            throw new ModelFormatException(path, null, kind == FileKind.Kind.Regular ? "is empty" : "is empty or not a regular file (a FIFO or a device); only regular files are read");
        return info.Length;
    }

    /// <summary>
    /// A file reached through a symbolic link must resolve inside the checkpoint directory, or inside the
    /// <c>blobs/</c> folder of the Hugging Face cache repository the directory is a snapshot of.
    /// </summary>
    private static void CheckInside(string checkpoint, FileInfo file)
    {
        if (file.LinkTarget is null && !HasLinkedParent(file, checkpoint)) return;
        var target = RealPath(file.FullName);
        var root = RealPath(Path.GetFullPath(checkpoint));
        if (IsUnder(target, root)) return;
        // models--org--name/snapshots/<commit>/file -> ../../blobs/<hash>
        var snapshots = Directory.GetParent(root);
        if (snapshots is { Name: "snapshots", Parent: { } repository } && IsUnder(target, Path.Combine(repository.FullName, "blobs")))
            return;
        throw new ModelFormatException(file.FullName, null,
            $"is a symbolic link to {target}, outside the checkpoint directory {root}; links may only point inside it (or into a hub cache's blobs/ folder)");
    }

    /// <summary>Whether a folder between the checkpoint and the file is a link (only possible for names with separators, which loaders reject, but cheap to check).</summary>
    private static bool HasLinkedParent(FileInfo file, string checkpoint)
    {
        var root = Path.GetFullPath(checkpoint);
        for (var dir = file.Directory; dir is not null && dir.FullName.Length > root.Length; dir = dir.Parent)
        {
            if (dir.LinkTarget is not null) return true;
        }
        return false;
    }

    /// <summary>The path with every symbolic link on the way resolved (as realpath(3) does).</summary>
    internal static string RealPath(string path, int depth = 0)
    {
        if (depth > 40) throw new IOException($"too many levels of symbolic links resolving {path}");
        var full = Path.GetFullPath(path);
        var root = Path.GetPathRoot(full)!;
        var resolved = root;
        foreach (var part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(resolved, part);
            FileSystemInfo entry = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            resolved = entry.LinkTarget is { } target ? RealPath(Path.Combine(resolved, target), depth + 1) : next;
        }
        return resolved;
    }

    private static bool IsUnder(string path, string directory)
    {
        var prefix = Path.TrimEndingDirectorySeparator(directory) + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase);
    }
}
