using NativeGpt2.Safetensors;

namespace NativeGpt2.Verification;

/// <summary>One tensor of a reference file, its values widened to double for comparison.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Values">Values, row-major (integers exactly, floats widened).</param>
public sealed record ReferenceTensor(string Name, int[] Shape, SafetensorsDType DType, double[] Values)
{
    /// <summary>The file this tensor was read from, for error messages.</summary>
    public string FilePath { get; init; } = "reference";

    /// <summary>The values as int32 (for ids, masks and positions).</summary>
    /// <exception cref="ModelFormatException">A value is not an integer in the 32-bit range.</exception>
    public int[] AsInt32()
    {
        var result = new int[Values.Length];
        for (var i = 0; i < Values.Length; i++)
        {
            var v = Values[i];
            if (!(v >= int.MinValue && v <= int.MaxValue) || v != Math.Floor(v))
                throw new ModelFormatException(FilePath, Name, $"element {i} = {v} is not a 32-bit integer");
            result[i] = (int)v;
        }
        return result;
    }

    /// <summary>The values rounded to float32.</summary>
    public float[] AsFloat32() => Values.Select(v => (float)v).ToArray();
}

/// <summary>
/// A safetensors file of reference activations (<c>input_ids</c>, <c>hidden_states.i</c>, <c>logits</c>, …),
/// read whole into memory.
/// </summary>
public sealed class ReferenceFile
{
    private ReferenceFile(string path, IReadOnlyDictionary<string, ReferenceTensor> tensors)
    {
        Path = path;
        Tensors = tensors;
    }

    /// <summary>The file read.</summary>
    public string Path { get; }

    /// <summary>Every tensor by name.</summary>
    public IReadOnlyDictionary<string, ReferenceTensor> Tensors { get; }

    /// <summary>The named tensor, or a <see cref="ModelFormatException"/> naming what is missing.</summary>
    public ReferenceTensor this[string name] =>
        Tensors.TryGetValue(name, out var tensor) ? tensor : throw new ModelFormatException(Path, name, "the reference file has no such tensor");

    /// <summary>Reads every tensor of a safetensors file.</summary>
    public static ReferenceFile Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        var tensors = new Dictionary<string, ReferenceTensor>(StringComparer.Ordinal);
        foreach (var info in file.Header.Tensors)
        {
            var shape = info.Shape.Select(d => d <= int.MaxValue ? (int)d : throw new ModelFormatException(path, info.Name, "dimension too large")).ToArray();
            double[] values = info.DType switch
            {
                SafetensorsDType.F64 or SafetensorsDType.F32 => file.ReadFloat64(info),
                SafetensorsDType.F16 or SafetensorsDType.BF16 => file.ReadFloat32(info).Select(v => (double)v).ToArray(),
                SafetensorsDType.I32 or SafetensorsDType.I64 => file.ReadInt32(info).Select(v => (double)v).ToArray(),
                _ => throw new ModelFormatException(path, info.Name, $"dtype {info.DType} is not used by reference files"),
            };
            tensors[info.Name] = new ReferenceTensor(info.Name, shape, info.DType, values) { FilePath = path };
        }
        return new ReferenceFile(path, tensors);
    }
}
