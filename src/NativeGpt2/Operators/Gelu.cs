using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// GELU, tanh approximation (<c>gelu_new</c>):
/// <c>out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c>.
/// </summary>
/// <remarks>Shapes: out (N, W), input (N, W); may be the same buffer.</remarks>
internal static class Gelu
{
    private const float Sqrt2OverPi = 0.7978845608028654f;
    private const float Cubic = 0.044715f;

    /// <summary>
    /// Vectorized GELU over rows of <paramref name="width"/> values, spread over all cores. Each row is
    /// processed on its own (in pieces of at most 4096), so an element's result depends only on its place
    /// in its row, not on how many rows there are.
    /// </summary>
    public static void Forward(Memory<float> output, ReadOnlyMemory<float> input, int width)
    {
        const int piece = 4096;
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        if (input.Length % width != 0 || output.Length < input.Length)
            throw new ArgumentException($"input of {input.Length} values is not whole rows of {width}, or output is shorter", nameof(input));
        var rows = input.Length / width;
        Parallelism.For(rows, 16L * width, (start, end) =>
        {
            for (var r = start; r < end; r++)
            {
                for (var from = r * width; from < (r + 1) * width; from += piece)
                {
                    var to = Math.Min(from + piece, (r + 1) * width);
                    Span(output.Span[from..to], input.Span[from..to]);
                }
            }
        });
    }

    /// <summary>GELU in place over one piece of a row (at most 4096 values); the same per element wherever the piece starts.</summary>
    public static void Apply(Span<float> values) => Span(values, values);

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
        // The same arithmetic as the vector lanes (fused where they fuse), so an element's result does
        // not depend on whether it falls in the tail.
        for (; i < x.Length; i++)
            inner[i] = Sqrt2OverPi * float.MultiplyAddEstimate(Cubic * x[i] * x[i], x[i], x[i]);

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
