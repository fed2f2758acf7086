namespace NativeGpt2;

/// <summary>Why a file could not be written, in words for its user: shared by the library's writers and the command line.</summary>
internal static class WriteFailure
{
    /// <summary>
    /// The reason <paramref name="e"/> gives for a failed write of <paramref name="attempted"/> (the file itself, or the
    /// temporary file written beside it), without naming the temporary file.
    /// </summary>
    public static string Reason(Exception e, string attempted) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        DirectoryNotFoundException => "its folder does not exist",
        FileNotFoundException missing when missing.FileName == attempted => "its folder does not take new files",
        _ => e.Message,
    };
}
