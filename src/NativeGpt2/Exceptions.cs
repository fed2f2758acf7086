namespace NativeGpt2;

/// <summary>
/// Base type of every error NativeGpt2 raises about files, models and numerics.
/// Bad arguments to an API raise the usual <see cref="ArgumentException"/> family instead,
/// naming the parameter and the allowed range.
/// </summary>
public class NativeGpt2Exception : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public NativeGpt2Exception(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public NativeGpt2Exception(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>
/// A file (checkpoint, config, index, tokenizer data) is malformed. <see cref="FilePath"/> names the file
/// and <see cref="Field"/>, when known, the header field, JSON property or tensor at fault.
/// </summary>
public class ModelFormatException : NativeGpt2Exception
{
    /// <summary>Creates the exception; the message is prefixed with the file and field.</summary>
    public ModelFormatException(string filePath, string? field, string problem, Exception? innerException = null)
        : base(Compose(filePath, field, problem), innerException)
    {
        FilePath = filePath;
        Field = field;
        Problem = problem;
    }

    /// <summary>The file that is malformed.</summary>
    public string FilePath { get; }

    /// <summary>The field, property or tensor name at fault, when one can be named.</summary>
    public string? Field { get; }

    /// <summary>What is wrong, without the file and field prefix.</summary>
    public string Problem { get; }

    private static string Compose(string filePath, string? field, string problem) =>
        field is null ? $"{filePath}: {problem}" : $"{filePath}: {field}: {problem}";
}

/// <summary>
/// The checkpoint's tensors do not fit the config: every missing, mis-shaped or unusable tensor is
/// listed in <see cref="Problems"/>, so one load attempt reports them all.
/// </summary>
public sealed class CheckpointMismatchException : ModelFormatException
{
    /// <summary>Creates the exception for a checkpoint location and its list of problems.</summary>
    public CheckpointMismatchException(string checkpointPath, IReadOnlyList<string> problems)
        : this(checkpointPath, problems, note: null)
    {
    }

    /// <summary>Creates the exception for a checkpoint location, its list of problems, and a line that follows them.</summary>
    /// <param name="checkpointPath">The checkpoint directory.</param>
    /// <param name="problems">One line per problem, each naming its tensor.</param>
    /// <param name="note">What the message adds after the problems (which sizes the config left out), if anything.</param>
    public CheckpointMismatchException(string checkpointPath, IReadOnlyList<string> problems, string? note)
        : base(checkpointPath, null,
            $"{problems.Count} tensor problem(s) for a GPT-2 of this config:{Environment.NewLine}  " +
            string.Join(Environment.NewLine + "  ", problems) + (note is null ? "" : Environment.NewLine + note))
    {
        Problems = problems;
    }

    /// <summary>One line per problem, each naming its tensor.</summary>
    public IReadOnlyList<string> Problems { get; }
}

/// <summary>A model spec names nothing that can be loaded: no such directory, unknown synthetic or hub name, or no weights file.</summary>
public sealed class ModelNotFoundException : NativeGpt2Exception
{
    /// <summary>Creates the exception for the spec that could not be resolved.</summary>
    public ModelNotFoundException(string spec, string problem) : base($"model '{spec}': {problem}")
    {
        Spec = spec;
    }

    /// <summary>The model spec as the caller wrote it.</summary>
    public string Spec { get; }
}

/// <summary>
/// The model produced numbers that cannot be used, such as logits that are all NaN (usually corrupt
/// weights); raised instead of silently picking token 0.
/// </summary>
public sealed class NumericalException(string message) : NativeGpt2Exception(message);

/// <summary>A download from the model hub failed (network error, HTTP error, or a connection cut mid-file); nothing half-written is left in the cache.</summary>
public sealed class ModelDownloadException(string url, string problem, Exception? innerException = null)
    : NativeGpt2Exception($"download of {url} failed: {problem}", innerException)
{
    /// <summary>The address that failed.</summary>
    public string Url { get; } = url;
}

/// <summary>
/// A hub setting is unusable: <c>HF_ENDPOINT</c> is not an http(s) address, <c>HF_TOKEN</c> holds a line
/// break, the saved token file cannot be read or holds more than a token, a boolean variable such as
/// <c>HF_HUB_OFFLINE</c> is not a boolean, a timeout is not a positive number. <see cref="Setting"/> names the
/// variable or <see cref="Hub.HubOptions"/> property to fix.
/// </summary>
public sealed class HubConfigurationException(string setting, string problem)
    : NativeGpt2Exception($"{setting}: {problem}")
{
    /// <summary>The environment variable or option at fault.</summary>
    public string Setting { get; } = setting;
}

/// <summary>
/// The backend asked for cannot run here: <c>cuda</c> without a CUDA device or driver, a backend name
/// whose package is not installed, or a model it cannot run (ILGPU's attention kernels hold heads of up to 128
/// channels). <see cref="Backend"/> names it.
/// </summary>
public sealed class BackendUnavailableException(string backend, string problem, Exception? innerException = null)
    : NativeGpt2Exception($"backend '{backend}': {problem}", innerException)
{
    /// <summary>The backend name as asked for.</summary>
    public string Backend { get; } = backend;
}

/// <summary>
/// A backend could not allocate what a model or a pass needs: <see cref="Backend"/> names whose memory ran out
/// (<c>cuda</c>: the GPU's), <see cref="RequestedBytes"/> the allocation that failed. Nothing is left half-made: a load
/// that fails frees what it had placed, and a pass that fails leaves the model usable.
/// </summary>
public sealed class OutOfDeviceMemoryException(string backend, long requestedBytes, string problem, Exception? innerException = null)
    : NativeGpt2Exception($"backend '{backend}': {problem}", innerException)
{
    /// <summary>The backend whose memory ran out.</summary>
    public string Backend { get; } = backend;

    /// <summary>The size of the allocation that failed, in bytes; 0 where the process's own memory ran out and the size is not known.</summary>
    public long RequestedBytes { get; } = requestedBytes;

    /// <summary>What went wrong and what to do, without the backend prefix.</summary>
    public string Problem { get; } = problem;

    /// <summary>What to do when the process's memory cannot hold a model.</summary>
    internal const string HostAdvice = "Load 16- or 8-bit weights (ModelLoadOptions.WeightFormat, --weights f16|q8) or a smaller model";

    /// <summary><paramref name="bytes"/> for a message: 412.3 MB, 6.23 GB (decimal units, as the benchmarks write them).</summary>
    internal static string Size(long bytes) => bytes switch
    {
        < 1_000_000 => $"{bytes:N0} bytes",
        < 1_000_000_000 => $"{bytes / 1e6:0.0} MB",
        < 1_000_000_000_000 => $"{bytes / 1e9:0.00} GB",
        _ => $"{bytes / 1e12:N1} TB",
    };
}
