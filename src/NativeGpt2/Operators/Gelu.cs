using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// GELU, tanh approximation (<c>gelu_new</c>):
/// <c>out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c>.
/// </summary>
/// <remarks>Shapes: out (N), input (N); may be the same buffer.</remarks>
public static class Gelu
{
    private const float Sqrt2OverPi = 0.7978845608028654f;
    private const float Cubic = 0.044715f;

    /// <summary>Vectorized GELU, spread over all cores for long inputs.</summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input)
    {
        const int chunk = 4096;
        var chunks = (input.Length + chunk - 1) / chunk;
        Parallelism.For(chunks, 16L * chunk, (start, end) =>
        {
            var from = start * chunk;
            var to = Math.Min(end * chunk, input.Length);
            Span(output.Span[from..to], input.Span[from..to]);
        });
    }

    private static void Span(Span<float> output, ReadOnlySpan<float> x)
    {
        // The tanh argument goes to a scratch row, then TensorPrimitives' accurate vector tanh runs
        // in place, then the outer product; every step is element-for-element, so output may alias x.
        Span<float> inner = stackalloc float[x.Length];
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref var xr = ref MemoryMarshal.GetReference(x);
            ref var ir = ref MemoryMarshal.GetReference(inner);
            var k = Vector256.Create(Sqrt2OverPi);
            var c = Vector256.Create(Cubic);
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                (k * Vector256.MultiplyAddEstimate(c * v * v, v, v)).StoreUnsafe(ref ir, (nuint)i);
            }
        }
        for (; i < x.Length; i++)
            inner[i] = Sqrt2OverPi * (x[i] + Cubic * x[i] * x[i] * x[i]);

        TensorPrimitives.Tanh(inner, inner);
        // out = 0.5·x·(1 + t) = 0.5·x + 0.5·x·t
        TensorPrimitives.MultiplyAdd(inner, x, x, output);
        TensorPrimitives.Multiply(output, 0.5f, output);
    }

    /// <summary>Scalar reference in double.</summary>
    public static void Reference(Span<float> output, ReadOnlySpan<float> input)
    {
        for (var i = 0; i < input.Length; i++)
        {
            double x = input[i];
            output[i] = (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));
        }
    }
}
