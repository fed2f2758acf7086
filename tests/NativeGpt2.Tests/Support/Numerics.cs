using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>Random test data and closeness assertions that report the worst element and the first mismatch.</summary>
public static class Numerics
{
    /// <summary>Uniform values in [-scale, scale) from a seeded generator.</summary>
    public static float[] RandomFloats(Random random, int count, float scale = 1f)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++) values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return values;
    }

    /// <summary>
    /// Asserts |actual - expected| ≤ tolerance · (1 + max |expected|) element-wise, so the bound scales with
    /// the magnitude of the output; the failure names the largest difference and the first element beyond it.
    /// </summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = 0;
        foreach (var e in expected) scale = Math.Max(scale, Math.Abs(e));
        var bound = tolerance * (1 + scale);
        double maxDiff = 0;
        var first = -1;
        for (var i = 0; i < expected.Length; i++)
        {
            var diff = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(diff)) diff = double.PositiveInfinity;
            maxDiff = Math.Max(maxDiff, diff);
            if (diff > bound && first < 0) first = i;
        }
        Assert.True(first < 0,
            $"{what}: max abs diff {maxDiff:E3} exceeds {bound:E3}; first mismatch at [{first}]: expected {(first >= 0 ? expected[first] : 0):R}, got {(first >= 0 ? actual[first] : 0):R}");
    }
}
