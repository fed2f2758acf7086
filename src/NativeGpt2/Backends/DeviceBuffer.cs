namespace NativeGpt2.Backends;

/// <summary>
/// <paramref name="length"/> elements of <typeparamref name="T"/> in a backend's memory: a managed array
/// for the CPU backend, device memory for a GPU. Only the backend that made it reads or writes it.
/// </summary>
public abstract class DeviceBuffer<T>(IBackend backend, long length) : IDisposable where T : unmanaged
{
    /// <summary>The backend whose memory holds it.</summary>
    public IBackend Backend { get; } = backend;

    /// <summary>Number of elements.</summary>
    public long Length { get; } = length;

    /// <summary>Releases device memory (nothing for managed arrays).</summary>
    public abstract void Dispose();

    /// <inheritdoc />
    public override string ToString() => $"{typeof(T).Name}[{Length}] on {Backend.Name}";
}

/// <summary>
/// A table (rows, cols) read by rows, made once by <see cref="IBackend.PrepareTable"/>: the token
/// embedding, which the tied head reads too. Opaque to the graph.
/// </summary>
public abstract class DeviceTable(int rows, int cols) : IDisposable
{
    /// <summary>Rows (V for wte).</summary>
    public int Rows { get; } = rows;

    /// <summary>Columns (C for wte).</summary>
    public int Cols { get; } = cols;

    /// <summary>Releases what the backend holds for it.</summary>
    public abstract void Dispose();
}

/// <summary>
/// A Conv1D weight (IC, OC) in the layout a backend's matmul reads, made once at load by
/// <see cref="IBackend.PrepareMatrix"/>: opaque to the graph.
/// </summary>
public abstract class DeviceMatrix(int inputs, int outputs) : IDisposable
{
    /// <summary>IC: rows of the checkpoint's <c>[in, out]</c> weight.</summary>
    public int Inputs { get; } = inputs;

    /// <summary>OC: columns of the checkpoint's <c>[in, out]</c> weight.</summary>
    public int Outputs { get; } = outputs;

    /// <summary>Releases what the backend holds for it.</summary>
    public abstract void Dispose();
}
