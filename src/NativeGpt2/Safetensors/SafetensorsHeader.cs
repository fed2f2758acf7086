using System.Text.Json;
using System.Text.Unicode;

namespace NativeGpt2.Safetensors;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor name as stored.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions, outermost first.</param>
/// <param name="Begin">Byte offset of the first element, relative to the start of the data section.</param>
/// <param name="End">Byte offset one past the last element, relative to the start of the data section.</param>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements (product of <see cref="Shape"/>; 1 for a scalar).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Number of bytes in the data section.</summary>
    public long ByteLength => End - Begin;

    /// <summary>The shape as <c>[a, b, c]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// The parsed and validated header of a safetensors file: the rules are those of the format's
/// reference implementation, so a file it rejects is rejected here, with the file and field named.
/// </summary>
public sealed class SafetensorsHeader
{
    /// <summary>Largest header the reference implementation accepts, in bytes.</summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>Length of the little-endian header-size prefix.</summary>
    public const int PrefixLength = 8;

    private const string MetadataKey = "__metadata__";

    private SafetensorsHeader(IReadOnlyList<SafetensorsTensorInfo> tensors, IReadOnlyDictionary<string, string> metadata, long headerLength)
    {
        Tensors = tensors;
        Metadata = metadata;
        HeaderLength = headerLength;
        ByName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Tensors in data-section order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>Tensors by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> ByName { get; }

    /// <summary>The optional string-to-string <c>__metadata__</c> map.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Length of the JSON header in bytes (without the 8-byte prefix).</summary>
    public long HeaderLength { get; }

    /// <summary>File offset where the data section starts.</summary>
    public long DataStart => PrefixLength + HeaderLength;

    /// <summary>Reads the 8-byte prefix and checks the header length against the file length.</summary>
    /// <returns>The header length, safe to allocate.</returns>
    public static long ReadHeaderLength(ReadOnlySpan<byte> prefix, long fileLength, string path)
    {
        if (fileLength < PrefixLength)
            throw new ModelFormatException(path, "header", $"file is {fileLength} bytes, shorter than the 8-byte header-size prefix");
        var length = BitConverter.ToUInt64(prefix[..PrefixLength]);
        if (length > MaxHeaderLength)
            throw new ModelFormatException(path, "header", $"header length {length} exceeds the limit of {MaxHeaderLength} bytes");
        if ((long)length > fileLength - PrefixLength)
            throw new ModelFormatException(path, "header", $"header length {length} runs past the end of the {fileLength}-byte file");
        return (long)length;
    }

    /// <summary>
    /// Parses the JSON header and validates every entry against the size of the data section.
    /// </summary>
    /// <param name="json">The header bytes (after the 8-byte prefix).</param>
    /// <param name="dataLength">Bytes in the file after the header.</param>
    /// <param name="path">The file, for error messages.</param>
    public static SafetensorsHeader Parse(ReadOnlySpan<byte> json, long dataLength, string path)
    {
        if (!Utf8.IsValid(json))
            throw new ModelFormatException(path, "header", "header is not valid UTF-8");

        using (var document = Loading.JsonFile.Parse(json.ToArray(), path, "header"))
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, "header", $"header must be a JSON object, found {root.ValueKind}");

            // JsonFile.Parse has already rejected duplicate names, at every level.
            var tensors = new List<SafetensorsTensorInfo>();
            IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                    metadata = ParseMetadata(property.Value, path);
                else
                    tensors.Add(ParseTensor(property.Name, property.Value, path));
            }

            ValidateLayout(tensors, dataLength, path);
            tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            return new SafetensorsHeader(tensors, metadata, json.Length);
        }
    }

    private static Dictionary<string, string> ParseMetadata(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, MetadataKey, $"must be an object of strings, found {value.ValueKind} (a tensor may not be named {MetadataKey})");
        if (value.TryGetProperty("data_offsets", out _) || value.TryGetProperty("dtype", out _))
            throw new ModelFormatException(path, MetadataKey, $"a tensor may not be named {MetadataKey}: the name is reserved for string metadata");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, $"{MetadataKey}.{entry.Name}", $"metadata values must be strings, found {entry.Value.ValueKind}");
            metadata.Add(entry.Name, entry.Value.GetString()!);
        }
        return metadata;
    }

    private static SafetensorsTensorInfo ParseTensor(string name, JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, name, $"tensor entry must be an object, found {value.ValueKind}");

        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new ModelFormatException(path, $"{name}.dtype", "missing or not a string");
        var dtypeText = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeText, out var dtype))
            throw new ModelFormatException(path, $"{name}.dtype", $"unknown dtype '{dtypeText}'");

        var shape = ReadUnsignedArray(value, "shape", name, path, expectedLength: null);
        var offsets = ReadUnsignedArray(value, "data_offsets", name, path, expectedLength: 2);

        // Checked arithmetic: a header can claim dimensions whose product overflows.
        ulong elements = 1;
        try
        {
            foreach (var dim in shape) elements = checked(elements * dim);
            var bytes = checked(elements * (ulong)SafetensorsDTypes.SizeOf(dtype));
            if (offsets[0] > long.MaxValue || offsets[1] > long.MaxValue || bytes > long.MaxValue)
                throw new OverflowException();
            if (offsets[1] < offsets[0])
                throw new ModelFormatException(path, $"{name}.data_offsets", $"offsets are reversed ([{offsets[0]}, {offsets[1]}])");
            if (offsets[1] - offsets[0] != bytes)
                throw new ModelFormatException(path, $"{name}.data_offsets",
                    $"byte range [{offsets[0]}, {offsets[1]}) holds {offsets[1] - offsets[0]} bytes but shape [{string.Join(", ", shape)}] of {dtypeText} needs {bytes}");
        }
        catch (OverflowException e)
        {
            throw new ModelFormatException(path, $"{name}.shape", $"shape [{string.Join(", ", shape)}] or offsets overflow 64-bit sizes", e);
        }

        // Each dimension fits in a long because the product of all of them, times the element size, does
        // (a zero dimension makes the product 0, so the others are checked against long on their own).
        if (shape.Any(d => d > long.MaxValue))
            throw new ModelFormatException(path, $"{name}.shape", "dimension exceeds 64-bit signed range");
        return new SafetensorsTensorInfo(name, dtype, shape.Select(d => (long)d).ToArray(), (long)offsets[0], (long)offsets[1]);
    }

    private static ulong[] ReadUnsignedArray(JsonElement entry, string field, string name, string path, int? expectedLength)
    {
        if (!entry.TryGetProperty(field, out var array) || array.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"{name}.{field}", "missing or not an array");
        var length = array.GetArrayLength();
        if (expectedLength is { } expected && length != expected)
            throw new ModelFormatException(path, $"{name}.{field}", $"must have {expected} entries, found {length}");
        var values = new ulong[length];
        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetUInt64(out values[i]))
                throw new ModelFormatException(path, $"{name}.{field}[{i}]", $"must be a non-negative integer, found {item.GetRawText()}");
            i++;
        }
        return values;
    }

    private static void ValidateLayout(List<SafetensorsTensorInfo> tensors, long dataLength, string path)
    {
        // The reference implementation requires the tensors, sorted by offset, to tile the data
        // section exactly: first at 0, each starting where the previous ended, the last ending at EOF.
        var ordered = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long expectedBegin = 0;
        foreach (var tensor in ordered)
        {
            if (tensor.Begin != expectedBegin)
            {
                var what = expectedBegin == 0 ? "the first tensor must start at offset 0"
                    : tensor.Begin < expectedBegin ? $"overlaps the previous tensor, which ends at {expectedBegin}"
                    : $"leaves a gap after the previous tensor, which ends at {expectedBegin}";
                throw new ModelFormatException(path, $"{tensor.Name}.data_offsets", $"starts at {tensor.Begin}: {what}");
            }
            expectedBegin = tensor.End;
        }
        if (expectedBegin != dataLength)
        {
            var what = expectedBegin < dataLength
                ? $"{dataLength - expectedBegin} trailing bytes follow the last tensor"
                : $"the file is truncated: tensors need {expectedBegin} data bytes, the file has {dataLength}";
            throw new ModelFormatException(path, "data_offsets", what);
        }
    }
}
