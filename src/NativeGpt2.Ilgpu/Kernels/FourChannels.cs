using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Channels c, c + G, c + 2G and c + 3G of a row (those below C), loaded together: four loads in flight where a loop
/// taking one channel at a time waits for each (ILGPU does not unroll loops).
/// </summary>
internal readonly struct FourChannels(float v0, float v1, float v2, float v3, int count)
{
    public static FourChannels Load(ArrayView<float> row, int start, int c, int G, int C) => new(
        row[start + c],
        c + G < C ? row[start + c + G] : 0f,
        c + 2 * G < C ? row[start + c + 2 * G] : 0f,
        c + 3 * G < C ? row[start + c + 3 * G] : 0f,
        XMath.Min(4, (C - c + G - 1) / G));

    /// <summary>sum + the channels, added in order.</summary>
    public float Sum(float sum)
    {
        sum += v0;
        if (count > 1) sum += v1;
        if (count > 2) sum += v2;
        if (count > 3) sum += v3;
        return sum;
    }

    /// <summary>squares + (x − mean)² of each channel, added in order.</summary>
    public float SquaredDeviations(float squares, float mean)
    {
        squares = Square(squares, v0 - mean);
        if (count > 1) squares = Square(squares, v1 - mean);
        if (count > 2) squares = Square(squares, v2 - mean);
        if (count > 3) squares = Square(squares, v3 - mean);
        return squares;
    }

    /// <summary>target[start + c + i·G] = channel i, for those below C (the c and G it was loaded with).</summary>
    public void Store(ArrayView<float> target, int start, int c, int G)
    {
        target[start + c] = v0;
        if (count > 1) target[start + c + G] = v1;
        if (count > 2) target[start + c + 2 * G] = v2;
        if (count > 3) target[start + c + 3 * G] = v3;
    }

    private static float Square(float squares, float deviation) => squares + deviation * deviation;
}
