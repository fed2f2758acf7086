namespace NativeGpt2;

/// <summary>A dense, row-major float32 tensor: a shape and the array that holds it.</summary>
public sealed class FloatTensor
{
    /// <summary>Wraps <paramref name="data"/> (not copied) as a tensor of <paramref name="shape"/>.</summary>
    public FloatTensor(float[] data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (var dim in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(dim, nameof(shape));
            count *= dim;
        }
        if (count != data.Length)
            throw new ArgumentException($"{data.Length} values do not fill shape {ShapeToString(shape)}", nameof(data));
        Data = data;
        Shape = shape;
    }

    /// <summary>A zero-filled tensor of <paramref name="shape"/>.</summary>
    public static FloatTensor Zeros(params int[] shape) => new(new float[shape.Aggregate(1L, (a, b) => a * b)], shape);

    /// <summary>Dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>Row-major values.</summary>
    public float[] Data { get; }

    /// <summary>The shape as <c>[a, b, c]</c>.</summary>
    public string ShapeText => ShapeToString(Shape);

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>The element at the given indices.</summary>
    public float this[params int[] indices]
    {
        get => Data[Offset(indices)];
        set => Data[Offset(indices)] = value;
    }

    /// <summary>The innermost row at the given leading indices (one fewer than the rank).</summary>
    public Span<float> Row(params int[] leading)
    {
        if (leading.Length != Rank - 1)
            throw new ArgumentException($"a rank-{Rank} tensor needs {Rank - 1} leading indices, got {leading.Length}", nameof(leading));
        var offset = 0;
        for (var d = 0; d < leading.Length; d++)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)leading[d], (uint)Shape[d], nameof(leading));
            offset = offset * Shape[d] + leading[d];
        }
        var width = Shape[^1];
        return Data.AsSpan(offset * width, width);
    }

    /// <inheritdoc />
    public override string ToString() => $"FloatTensor {ShapeToString(Shape)}";

    internal static string ShapeToString(IEnumerable<int> shape) => "[" + string.Join(", ", shape) + "]";

    private int Offset(int[] indices)
    {
        if (indices.Length != Rank)
            throw new ArgumentException($"a rank-{Rank} tensor needs {Rank} indices, got {indices.Length}", nameof(indices));
        var offset = 0;
        for (var d = 0; d < Rank; d++)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)indices[d], (uint)Shape[d], nameof(indices));
            offset = offset * Shape[d] + indices[d];
        }
        return offset;
    }
}
