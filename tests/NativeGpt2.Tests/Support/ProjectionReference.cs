using NativeGpt2.Backends;
using NativeGpt2.Operators;

namespace NativeGpt2.Tests.Support;

/// <summary>What a projection with an epilogue must give: the double-precision operator references, then the epilogue.</summary>
public static class ProjectionReference
{
    /// <summary>Every epilogue: bias only, each activation, the residual add.</summary>
    public static MatMulEpilogue[] Epilogues { get; } = Enum.GetValues<MatMulEpilogue>();

    /// <summary>
    /// x (N, IC) · w (IC, OC) + b by <see cref="MatMul.Reference"/>, then the activation (<see cref="Activations.Reference(double, MlpActivation)"/>) or the add to
    /// <paramref name="residual"/> (N, OC) that the epilogue asks for.
    /// </summary>
    public static float[] Expected(float[] x, float[] w, float[] b, float[] residual, int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        var expected = new float[N * OC];
        MatMul.Reference(expected, x, w, b, N, IC, OC);
        if (epilogue.Activation() is { } activation) Activations.Reference(expected, expected, activation);
        if (epilogue == MatMulEpilogue.Residual)
        {
            for (var i = 0; i < expected.Length; i++) expected[i] = (float)((double)residual[i] + expected[i]);
        }
        return expected;
    }

    /// <summary>
    /// A projection's inputs, drawn from <paramref name="random"/> in this order: x (N, IC) within ±3, a LayerNorm's weight
    /// and bias (IC), w (IC, OC), b (OC) and a residual (N, OC).
    /// </summary>
    public static (float[] X, float[] NormWeight, float[] NormBias, float[] W, float[] B, float[] Residual) DrawInputs(Random random, int N, int IC, int OC) =>
        (Numerics.RandomFloats(random, N * IC, 3f), Numerics.RandomFloats(random, IC), Numerics.RandomFloats(random, IC),
            Numerics.RandomFloats(random, IC * OC), Numerics.RandomFloats(random, OC), Numerics.RandomFloats(random, N * OC));
}
