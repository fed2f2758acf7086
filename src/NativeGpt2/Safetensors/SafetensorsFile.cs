using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace NativeGpt2.Safetensors;

/// <summary>
/// An open safetensors file: the validated header, and reads of tensor data straight from the file
/// into the caller's array (no intermediate copy of the weights).
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    private readonly SafeFileHandle _handle;

    private SafetensorsFile(string path, SafeFileHandle handle, SafetensorsHeader header, long fileLength)
    {
        Path = path;
        _handle = handle;
        Header = header;
        FileLength = fileLength;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>The validated header.</summary>
    public SafetensorsHeader Header { get; }

    /// <summary>Length of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>Opens a file and validates its header; the handle is closed again if validation fails.</summary>
    /// <exception cref="ModelFormatException">The file does not exist, is not a regular file, or is not a valid safetensors file.</exception>
    public static SafetensorsFile Open(string path) => Open(path, checkpoint: null);

    /// <summary>Opens a file of a checkpoint: as <see cref="Open(string)"/>, and a link must not leave <paramref name="checkpoint"/>.</summary>
    internal static SafetensorsFile Open(string path, string? checkpoint)
    {
        // Only regular files: open() on a FIFO would block forever, and a device never ends.
        Loading.ModelFiles.CheckRegularFile(path, checkpoint);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian machines are not supported");

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var fileLength = RandomAccess.GetLength(handle);
            Span<byte> prefix = stackalloc byte[SafetensorsHeader.PrefixLength];
            if (fileLength >= SafetensorsHeader.PrefixLength)
                ReadExactly(handle, prefix, 0, path);
            var headerLength = SafetensorsHeader.ReadHeaderLength(prefix, fileLength, path);

            // headerLength is now known to be at most 100 MB and within the file.
            var json = new byte[headerLength];
            ReadExactly(handle, json, SafetensorsHeader.PrefixLength, path);
            var header = SafetensorsHeader.Parse(json, fileLength - SafetensorsHeader.PrefixLength - headerLength, path);
            return new SafetensorsFile(path, handle, header, fileLength);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The tensor's header entry, or a <see cref="ModelFormatException"/> naming the missing tensor.</summary>
    public SafetensorsTensorInfo GetInfo(string name) =>
        Header.ByName.TryGetValue(name, out var info) ? info : throw new ModelFormatException(Path, name, "no such tensor in this file");

    /// <summary>Reads a tensor's raw bytes into <paramref name="destination"/>, which must be exactly its size.</summary>
    public void ReadBytes(SafetensorsTensorInfo tensor, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (destination.Length != tensor.ByteLength)
            throw new ArgumentException($"destination holds {destination.Length} bytes, tensor {tensor.Name} has {tensor.ByteLength}", nameof(destination));
        ReadExactly(_handle, destination, Header.DataStart + tensor.Begin, Path);
    }

    /// <summary>
    /// Reads a floating-point tensor as float32: F32 is read straight into the result, F16 and BF16
    /// are widened exactly, F64 is rounded to nearest.
    /// </summary>
    public float[] ReadFloat32(SafetensorsTensorInfo tensor)
    {
        var result = new float[CheckedElementCount(tensor)];
        ReadFloat32(tensor, result);
        return result;
    }

    /// <summary>Reads a floating-point tensor as float32 into <paramref name="destination"/> (exactly its element count).</summary>
    public void ReadFloat32(SafetensorsTensorInfo tensor, Span<float> destination)
    {
        if (destination.Length != tensor.ElementCount)
            throw new ArgumentException($"destination holds {destination.Length} floats, tensor {tensor.Name} has {tensor.ElementCount}", nameof(destination));
        ReadFloat32(tensor, 0, destination);
    }

    /// <summary>Reads elements [<paramref name="first"/>, first + destination.Length) of a floating-point tensor as float32.</summary>
    public void ReadFloat32(SafetensorsTensorInfo tensor, long first, Span<float> destination)
    {
        if (first < 0 || first + destination.Length > tensor.ElementCount)
            throw new ArgumentOutOfRangeException(nameof(first), $"elements [{first}, {first + destination.Length}) are outside tensor {tensor.Name} of {tensor.ElementCount}");
        switch (tensor.DType)
        {
            case SafetensorsDType.F32:
                ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
                ReadExactly(_handle, MemoryMarshal.AsBytes(destination), Header.DataStart + tensor.Begin + first * sizeof(float), Path);
                break;
            case SafetensorsDType.F16:
                ReadConverted<Half>(tensor, first, destination, (src, dst) => TensorPrimitives.ConvertToSingle(src, dst));
                break;
            case SafetensorsDType.BF16:
                ReadConverted<ushort>(tensor, first, destination, WidenBFloat16);
                break;
            case SafetensorsDType.F64:
                ReadConverted<double>(tensor, first, destination, (src, dst) => TensorPrimitives.ConvertTruncating(src, dst));
                break;
            default:
                throw new ModelFormatException(Path, tensor.Name, $"dtype {tensor.DType} is not a floating-point type");
        }
    }

    /// <summary>Reads an F64 tensor (F32 is widened exactly).</summary>
    public double[] ReadFloat64(SafetensorsTensorInfo tensor)
    {
        var result = new double[CheckedElementCount(tensor)];
        switch (tensor.DType)
        {
            case SafetensorsDType.F64:
                ReadBytes(tensor, MemoryMarshal.AsBytes(result.AsSpan()));
                break;
            case SafetensorsDType.F32:
                var floats = ReadFloat32(tensor);
                for (var i = 0; i < floats.Length; i++) result[i] = floats[i];
                break;
            default:
                throw new ModelFormatException(Path, tensor.Name, $"dtype {tensor.DType} cannot be read as float64");
        }
        return result;
    }

    /// <summary>Reads an integer tensor (I32, or I64 whose values fit in 32 bits) as int32.</summary>
    public int[] ReadInt32(SafetensorsTensorInfo tensor)
    {
        var result = new int[CheckedElementCount(tensor)];
        switch (tensor.DType)
        {
            case SafetensorsDType.I32:
                ReadBytes(tensor, MemoryMarshal.AsBytes(result.AsSpan()));
                break;
            case SafetensorsDType.I64:
                var wide = new long[result.Length];
                ReadBytes(tensor, MemoryMarshal.AsBytes(wide.AsSpan()));
                for (var i = 0; i < wide.Length; i++)
                {
                    if (wide[i] is < int.MinValue or > int.MaxValue)
                        throw new ModelFormatException(Path, tensor.Name, $"element {i} = {wide[i]} does not fit in 32 bits");
                    result[i] = (int)wide[i];
                }
                break;
            default:
                throw new ModelFormatException(Path, tensor.Name, $"dtype {tensor.DType} is not a 32- or 64-bit integer type");
        }
        return result;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();

    private int CheckedElementCount(SafetensorsTensorInfo tensor) =>
        tensor.ElementCount <= Array.MaxLength
            ? (int)tensor.ElementCount
            : throw new ModelFormatException(Path, tensor.Name, $"{tensor.ElementCount} elements exceed the largest .NET array");

    private delegate void Converter<TSource>(ReadOnlySpan<TSource> source, Span<float> destination);

    private void ReadConverted<TSource>(SafetensorsTensorInfo tensor, long first, Span<float> destination, Converter<TSource> convert)
        where TSource : unmanaged
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        // Convert in chunks so a large half-precision tensor never needs a second full-size buffer.
        const int chunkElements = 1 << 16;
        var elementSize = Marshal.SizeOf<TSource>();
        var buffer = ArrayPool<TSource>.Shared.Rent(chunkElements);
        try
        {
            for (var start = 0; start < destination.Length; start += chunkElements)
            {
                var count = Math.Min(chunkElements, destination.Length - start);
                var chunk = buffer.AsSpan(0, count);
                ReadExactly(_handle, MemoryMarshal.AsBytes(chunk), Header.DataStart + tensor.Begin + (first + start) * elementSize, Path);
                convert(chunk, destination.Slice(start, count));
            }
        }
        finally
        {
            ArrayPool<TSource>.Shared.Return(buffer);
        }
    }

    // bfloat16 is the high 16 bits of a float32, so widening is a shift.
    private static void WidenBFloat16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        for (var i = 0; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> destination, long offset, string path)
    {
        while (!destination.IsEmpty)
        {
            var read = RandomAccess.Read(handle, destination, offset);
            if (read == 0)
                throw new ModelFormatException(path, null, $"unexpected end of file at offset {offset}");
            destination = destination[read..];
            offset += read;
        }
    }
}
