using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace NativeGpt2.Safetensors;

/// <summary>
/// Writes a safetensors file: tensors are added in order, then <see cref="Save"/> writes the header
/// (padded with spaces to 8-byte alignment, as Hugging Face does) and the data, to a temporary file
/// that is renamed into place, so a reader never sees half a file.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<(string Name, SafetensorsDType DType, long[] Shape, byte[] Data)> _tensors = [];
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Adds a float32 tensor.</summary>
    public SafetensorsWriter Add(string name, ReadOnlySpan<float> data, params long[] shape) =>
        Add(name, SafetensorsDType.F32, MemoryMarshal.AsBytes(data), shape);

    /// <summary>Adds an int32 tensor.</summary>
    public SafetensorsWriter Add(string name, ReadOnlySpan<int> data, params long[] shape) =>
        Add(name, SafetensorsDType.I32, MemoryMarshal.AsBytes(data), shape);

    /// <summary>Adds a float64 tensor.</summary>
    public SafetensorsWriter Add(string name, ReadOnlySpan<double> data, params long[] shape) =>
        Add(name, SafetensorsDType.F64, MemoryMarshal.AsBytes(data), shape);

    /// <summary>Adds a tensor from its raw little-endian bytes.</summary>
    public SafetensorsWriter Add(string name, SafetensorsDType dtype, ReadOnlySpan<byte> bytes, params long[] shape)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == "__metadata__")
            throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", nameof(name));
        if (_tensors.Any(t => t.Name == name))
            throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        var elements = shape.Aggregate(1L, (a, b) => b >= 0 ? checked(a * b) : throw new ArgumentOutOfRangeException(nameof(shape), "dimensions must be >= 0"));
        if (elements * SafetensorsDTypes.SizeOf(dtype) != bytes.Length)
            throw new ArgumentException($"{bytes.Length} bytes do not match shape [{string.Join(", ", shape)}] of {dtype}", nameof(bytes));
        _tensors.Add((name, dtype, shape, bytes.ToArray()));
        return this;
    }

    /// <summary>Adds a string entry to the header's <c>__metadata__</c>.</summary>
    public SafetensorsWriter AddMetadata(string key, string value)
    {
        _metadata[key] = value;
        return this;
    }

    /// <summary>
    /// Writes the file atomically, creating its folder when missing; a file already at <paramref name="path"/> is replaced
    /// (through a symbolic link, which stays a link). A device, pipe or descriptor (<c>/dev/stdout</c>) is written in place.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written: the message names <paramref name="path"/> and why.</exception>
    public void Save(string path)
    {
        var header = BuildHeader();
        AtomicFile.Write(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[SafetensorsHeader.PrefixLength];
            BitConverter.TryWriteBytes(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            foreach (var tensor in _tensors) stream.Write(tensor.Data);
        });
    }

    private byte[] BuildHeader()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (_metadata.Count > 0)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in _metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var tensor in _tensors)
            {
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.DType.ToString());
                json.WriteStartArray("shape");
                foreach (var dim in tensor.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + tensor.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += tensor.Data.Length;
            }
            json.WriteEndObject();
        }
        var padded = (buffer.Length + 7) / 8 * 8;
        while (buffer.Length < padded) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}
