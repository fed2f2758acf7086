using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Channels c, c + G, c + 2G and c + 3G of a row (those below C), loaded together: four loads in flight where a loop
/// taking one channel at a time waits for each (ILGPU does not unroll loops).
/// </summary>
internal readonly struct FourChannels(float v0, float v1, float v2, float v3, int count)
{
    public readonly float V0 = v0, V1 = v1, V2 = v2, V3 = v3;

    /// <summary>How many of the four are channels of the row (below C): 1 to 4.</summary>
    public readonly int Count = count;

    public static FourChannels Load(ArrayView<float> row, int start, int c, int G, int C) => new(
        row[start + c],
        c + G < C ? row[start + c + G] : 0f,
        c + 2 * G < C ? row[start + c + 2 * G] : 0f,
        c + 3 * G < C ? row[start + c + 3 * G] : 0f,
        XMath.Min(4, (C - c + G - 1) / G));

    /// <summary>sum + the channels, added in order.</summary>
    public float Sum(float sum)
    {
        sum += V0;
        if (Count > 1) sum += V1;
        if (Count > 2) sum += V2;
        if (Count > 3) sum += V3;
        return sum;
    }

    /// <summary>squares + (x − mean)² of each channel, added in order.</summary>
    public float SquaredDeviations(float squares, float mean)
    {
        squares = Square(squares, V0 - mean);
        if (Count > 1) squares = Square(squares, V1 - mean);
        if (Count > 2) squares = Square(squares, V2 - mean);
        if (Count > 3) squares = Square(squares, V3 - mean);
        return squares;
    }

    /// <summary>Each channel normalized with its own weight and bias (<see cref="LayerNormKernel.Normalize"/>).</summary>
    public FourChannels Normalize(RowStatistics stats, FourChannels weight, FourChannels bias) => new(
        LayerNormKernel.Normalize(V0, stats, weight.V0, bias.V0),
        LayerNormKernel.Normalize(V1, stats, weight.V1, bias.V1),
        LayerNormKernel.Normalize(V2, stats, weight.V2, bias.V2),
        LayerNormKernel.Normalize(V3, stats, weight.V3, bias.V3),
        Count);

    /// <summary>target[start + c + i·G] = channel i, for those below C (the c and G it was loaded with).</summary>
    public void Store(ArrayView<float> target, int start, int c, int G)
    {
        target[start + c] = V0;
        if (Count > 1) target[start + c + G] = V1;
        if (Count > 2) target[start + c + 2 * G] = V2;
        if (Count > 3) target[start + c + 3 * G] = V3;
    }

    private static float Square(float squares, float deviation) => Fused.MulAdd(deviation, deviation, squares);
}
