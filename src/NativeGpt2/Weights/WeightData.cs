using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Weights;

/// <summary>How a weight matrix's values are stored.</summary>
public enum WeightFormat
{
    /// <summary>32-bit floats, as computed.</summary>
    F32,

    /// <summary>IEEE half precision: 10-bit mantissa; widened exactly inside the matmul.</summary>
    F16,

    /// <summary>bfloat16: the top 16 bits of a float32 (7-bit mantissa); widened exactly inside the matmul.</summary>
    BF16,

    /// <summary>
    /// 8-bit integers in blocks of 32 consecutive values with one float32 scale per block
    /// (value = q · scale, scale = max |x| / 127), as llama.cpp's Q8_0; dequantized inside the matmul.
    /// </summary>
    Q8,
}

/// <summary>How a matrix's elements are ordered in memory.</summary>
public enum WeightLayout
{
    /// <summary>Row-major, as in the checkpoint: element (r, c) at r · cols + c.</summary>
    RowMajor,

    /// <summary>
    /// Panels of <see cref="WeightData.PanelWidth"/> columns: panel p holds columns [32p, 32p + 32) of every
    /// row, row after row, so a matmul streams one panel through the cache. The last panel is padded with zeros.
    /// </summary>
    Panels,
}

/// <summary>
/// The values of a weight matrix (rows, cols) in one <see cref="WeightFormat"/> and <see cref="WeightLayout"/>.
/// Vectors (biases, gains) are one-row matrices. Q8 blocks run along a row, 32 columns each; in panel
/// layout a block is one panel's 32 columns of one row.
/// </summary>
internal abstract class WeightData
{
    /// <summary>Columns per panel and values per Q8 block.</summary>
    public const int PanelWidth = 32;

    protected WeightData(int rows, int cols, WeightLayout layout)
    {
        Rows = rows;
        Cols = cols;
        Layout = layout;
        Panels = (cols + PanelWidth - 1) / PanelWidth;
    }

    public int Rows { get; }
    public int Cols { get; }
    public WeightLayout Layout { get; }
    public abstract WeightFormat Format { get; }

    /// <summary>Panels across the columns (meaningful in panel layout; also the Q8 blocks per row).</summary>
    public int Panels { get; }

    /// <summary>Bytes held.</summary>
    public abstract long ByteLength { get; }

    /// <summary>The arrays that hold the values, each with its size in bytes (what a pass over the weights reads).</summary>
    public abstract IEnumerable<(Array Array, long Bytes)> Buffers { get; }

    /// <summary>Elements stored: rows · cols, or rows · panels · 32 in panel layout.</summary>
    protected long StoredLength => Layout == WeightLayout.Panels ? (long)Rows * Panels * PanelWidth : (long)Rows * Cols;

    /// <summary>Where element (row, col) is stored.</summary>
    protected long Index(int row, int col) => Layout == WeightLayout.Panels
        ? ((long)(col / PanelWidth) * Rows + row) * PanelWidth + col % PanelWidth
        : (long)row * Cols + col;

    /// <summary>Writes row <paramref name="row"/> from float32 values (converting, quantizing, placing).</summary>
    public abstract void SetRow(int row, ReadOnlySpan<float> values);

    /// <summary>Reads row <paramref name="row"/> as float32 values.</summary>
    public abstract void GetRow(int row, Span<float> values);

    /// <summary>The whole matrix as row-major float32.</summary>
    public void CopyTo(Span<float> destination)
    {
        for (var r = 0; r < Rows; r++) GetRow(r, destination.Slice(r * Cols, Cols));
    }

    public static WeightData Create(WeightFormat format, WeightLayout layout, int rows, int cols) => format switch
    {
        WeightFormat.F32 => new Float32Data(rows, cols, layout),
        WeightFormat.F16 => new Float16Data(rows, cols, layout),
        WeightFormat.BF16 => new BFloat16Data(rows, cols, layout),
        WeightFormat.Q8 => new Q8Data(rows, cols, layout),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    };

    /// <summary>The same values in another format and layout (a copy; the same object when nothing changes).</summary>
    public WeightData ConvertTo(WeightFormat format, WeightLayout layout)
    {
        if (format == Format && layout == Layout) return this;
        var result = Create(format, layout, Rows, Cols);
        var row = new float[Cols];
        for (var r = 0; r < Rows; r++)
        {
            GetRow(r, row);
            result.SetRow(r, row);
        }
        return result;
    }

    /// <summary>Row-major float32 over <paramref name="values"/> (not copied).</summary>
    public static Float32Data Wrap(float[] values, int rows, int cols) => new(rows, cols, values);
}

/// <summary>float32 values.</summary>
internal sealed class Float32Data : WeightData
{
    public Float32Data(int rows, int cols, WeightLayout layout) : base(rows, cols, layout) => Values = new float[StoredLength];

    public Float32Data(int rows, int cols, float[] values) : base(rows, cols, WeightLayout.RowMajor) => Values = values;

    public float[] Values { get; }
    public override WeightFormat Format => WeightFormat.F32;
    public override long ByteLength => Values.LongLength * sizeof(float);
    public override IEnumerable<(Array Array, long Bytes)> Buffers => [(Values, ByteLength)];

    public override void SetRow(int row, ReadOnlySpan<float> values)
    {
        if (Layout == WeightLayout.RowMajor) values.CopyTo(Values.AsSpan((int)Index(row, 0), Cols));
        else for (var c = 0; c < Cols; c += PanelWidth) values[c..Math.Min(Cols, c + PanelWidth)].CopyTo(Values.AsSpan((int)Index(row, c)));
    }

    public override void GetRow(int row, Span<float> values)
    {
        if (Layout == WeightLayout.RowMajor) Values.AsSpan((int)Index(row, 0), Cols).CopyTo(values);
        else for (var c = 0; c < Cols; c += PanelWidth) Values.AsSpan((int)Index(row, c), Math.Min(PanelWidth, Cols - c)).CopyTo(values[c..]);
    }
}

/// <summary>IEEE half-precision values, stored as their 16-bit patterns.</summary>
internal sealed class Float16Data(int rows, int cols, WeightLayout layout) : WeightData(rows, cols, layout)
{
    // 0 not yet checked, 1 all finite, 2 holds an infinity or NaN.
    private int _finite;

    public Half[] Values { get; } = new Half[(long)rows * (layout == WeightLayout.Panels ? (cols + PanelWidth - 1) / PanelWidth * PanelWidth : cols)];

    /// <summary>
    /// Whether no value is an infinity or NaN, so the matmul may widen with the four-instruction
    /// <see cref="Operators.ISimd{TSelf}.LoadFiniteFloat16"/>. Checked once, on first use (the backend asks at
    /// load, after the loader has filled <see cref="Values"/>): the values must not change afterwards.
    /// </summary>
    public bool AllFinite
    {
        get
        {
            if (_finite == 0) _finite = HasNonFinite(Values) ? 2 : 1;
            return _finite == 1;
        }
    }

    private static bool HasNonFinite(Half[] values)
    {
        // An infinity or NaN has every exponent bit set: (bits & 0x7C00) == 0x7C00.
        var bits = MemoryMarshal.Cast<Half, ushort>(values.AsSpan());
        var exponent = Vector512.Create((ushort)0x7C00);
        var i = 0;
        for (; i + 32 <= bits.Length; i += 32)
        {
            var v = Vector512.Create(bits.Slice(i, 32));
            if (Vector512.EqualsAny(v & exponent, exponent)) return true;
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & 0x7C00) == 0x7C00) return true;
        return false;
    }

    public override WeightFormat Format => WeightFormat.F16;
    public override long ByteLength => Values.LongLength * 2;
    public override IEnumerable<(Array Array, long Bytes)> Buffers => [(Values, ByteLength)];

    public override void SetRow(int row, ReadOnlySpan<float> values)
    {
        _finite = 0;
        for (var c = 0; c < Cols; c += PanelWidth)
        {
            var n = Math.Min(PanelWidth, Cols - c);
            TensorPrimitives.ConvertToHalf(values.Slice(c, n), Values.AsSpan((int)Index(row, c), n));
        }
    }

    public override void GetRow(int row, Span<float> values)
    {
        for (var c = 0; c < Cols; c += PanelWidth)
        {
            var n = Math.Min(PanelWidth, Cols - c);
            TensorPrimitives.ConvertToSingle(Values.AsSpan((int)Index(row, c), n), values.Slice(c, n));
        }
    }
}

/// <summary>bfloat16 values: the top 16 bits of float32, rounded to nearest even.</summary>
internal sealed class BFloat16Data(int rows, int cols, WeightLayout layout) : WeightData(rows, cols, layout)
{
    public ushort[] Values { get; } = new ushort[(long)rows * (layout == WeightLayout.Panels ? (cols + PanelWidth - 1) / PanelWidth * PanelWidth : cols)];
    public override WeightFormat Format => WeightFormat.BF16;
    public override long ByteLength => Values.LongLength * 2;
    public override IEnumerable<(Array Array, long Bytes)> Buffers => [(Values, ByteLength)];

    public override void SetRow(int row, ReadOnlySpan<float> values)
    {
        for (var c = 0; c < Cols; c++) Values[Index(row, c)] = Round(values[c]);
    }

    public override void GetRow(int row, Span<float> values)
    {
        for (var c = 0; c < Cols; c++) values[c] = Widen(Values[Index(row, c)]);
    }

    /// <summary>float32 → bfloat16, round to nearest even (NaN stays NaN).</summary>
    public static ushort Round(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>bfloat16 → float32, exactly.</summary>
    public static float Widen(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);
}

/// <summary>
/// 8-bit values in blocks of 32 along a row with one float32 scale each: x ≈ q · scale, scale = max |x| / 127,
/// q = round(x / scale). Quantization error per value is at most scale / 2.
/// </summary>
internal sealed class Q8Data : WeightData
{
    public Q8Data(int rows, int cols, WeightLayout layout) : base(rows, cols, layout)
    {
        // Blocks are padded to 32 values in both layouts, so every block has the same shape.
        Values = new sbyte[(long)rows * Panels * PanelWidth];
        Scales = new float[(long)rows * Panels];
    }

    public sbyte[] Values { get; }

    /// <summary>Scale of block (row, b): at b · rows + row in panel layout, row · panels + b in row-major.</summary>
    public float[] Scales { get; }

    public override WeightFormat Format => WeightFormat.Q8;
    public override long ByteLength => Values.LongLength + Scales.LongLength * sizeof(float);
    public override IEnumerable<(Array Array, long Bytes)> Buffers => [(Values, Values.LongLength), (Scales, Scales.LongLength * sizeof(float))];

    private long BlockIndex(int row, int block) => Layout == WeightLayout.Panels ? (long)block * Rows + row : (long)row * Panels + block;

    /// <summary>Where value (row, col) is stored: blocks of 32 are contiguous in both layouts.</summary>
    private long ValueIndex(int row, int col) => BlockIndex(row, col / PanelWidth) * PanelWidth + col % PanelWidth;

    public override void SetRow(int row, ReadOnlySpan<float> values)
    {
        for (var b = 0; b < Panels; b++)
        {
            var block = values.Slice(b * PanelWidth, Math.Min(PanelWidth, Cols - b * PanelWidth));
            var max = TensorPrimitives.MaxMagnitude(block);
            var scale = float.IsFinite(max) ? Math.Abs(max) / 127f : float.NaN;
            Scales[BlockIndex(row, b)] = scale;
            var inverse = scale > 0 ? 1f / scale : 0f;
            var at = BlockIndex(row, b) * PanelWidth;
            for (var i = 0; i < block.Length; i++)
                Values[at + i] = (sbyte)Math.Clamp(MathF.Round(block[i] * inverse, MidpointRounding.ToEven), -127, 127);
        }
    }

    public override void GetRow(int row, Span<float> values)
    {
        for (var c = 0; c < Cols; c++)
            values[c] = Values[ValueIndex(row, c)] * Scales[BlockIndex(row, c / PanelWidth)];
    }
}
