using System.Globalization;

namespace NativeGpt2.Ilgpu;

/// <summary>
/// A tile of the tiled matmul (<see cref="Kernels.MatMulKernels.Tiled"/>): <paramref name="Rows"/> output rows by
/// <paramref name="Columns"/> output columns, a thread per 4 × 8 of them. Written and read as <c>ROWSxCOLUMNS</c>.
/// </summary>
internal readonly record struct TileShape(int Rows, int Columns)
{
    /// <summary>The group's threads: each holds a 4 × 8 micro-tile.</summary>
    public int Threads => Rows / 4 * (Columns / 8);

    /// <summary>Reads <c>ROWSxCOLUMNS</c> (e.g. <c>32x64</c>; x or X, spaces around the numbers allowed).</summary>
    public static bool TryParse(string text, out TileShape shape)
    {
        shape = default;
        var parts = text.Split('x', 'X');
        if (parts.Length != 2
            || !int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var rows)
            || !int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var columns))
            return false;
        shape = new TileShape(rows, columns);
        return true;
    }

    public override string ToString() => $"{Rows}x{Columns}";
}
