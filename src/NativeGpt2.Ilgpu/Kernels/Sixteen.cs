using ILGPU;
using ILGPU.Algorithms;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Sixteen floats held in registers. ILGPU does not unroll loops, and a load followed at once by the arithmetic that needs
/// it waits its whole latency; loading sixteen values into one of these first puts sixteen loads in flight together.
/// The sums below add the values one by one in index order, as the scalar loops they replace did.
/// </summary>
internal struct Sixteen
{
    public float V0, V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15;

    /// <summary>source[at + i · stride] for i in [0, 16).</summary>
    public static Sixteen Load(ArrayView<float> source, int at, int stride)
    {
        var x = new Sixteen();
        x.V0 = source[at];
        x.V1 = source[at + 1 * stride];
        x.V2 = source[at + 2 * stride];
        x.V3 = source[at + 3 * stride];
        x.V4 = source[at + 4 * stride];
        x.V5 = source[at + 5 * stride];
        x.V6 = source[at + 6 * stride];
        x.V7 = source[at + 7 * stride];
        x.V8 = source[at + 8 * stride];
        x.V9 = source[at + 9 * stride];
        x.V10 = source[at + 10 * stride];
        x.V11 = source[at + 11 * stride];
        x.V12 = source[at + 12 * stride];
        x.V13 = source[at + 13 * stride];
        x.V14 = source[at + 14 * stride];
        x.V15 = source[at + 15 * stride];
        return x;
    }

    /// <summary>target[at + i · stride] = V_i for i in [0, 16).</summary>
    public readonly void Store(ArrayView<float> target, int at, int stride)
    {
        target[at] = V0;
        target[at + 1 * stride] = V1;
        target[at + 2 * stride] = V2;
        target[at + 3 * stride] = V3;
        target[at + 4 * stride] = V4;
        target[at + 5 * stride] = V5;
        target[at + 6 * stride] = V6;
        target[at + 7 * stride] = V7;
        target[at + 8 * stride] = V8;
        target[at + 9 * stride] = V9;
        target[at + 10 * stride] = V10;
        target[at + 11 * stride] = V11;
        target[at + 12 * stride] = V12;
        target[at + 13 * stride] = V13;
        target[at + 14 * stride] = V14;
        target[at + 15 * stride] = V15;
    }

    /// <summary>sum + x[at] · V0 + x[at + 1] · V1 + … + x[at + 15] · V15, added in that order, each step fused (<see cref="Fused"/>).</summary>
    public readonly float Dot(float sum, ArrayView<float> x, int at)
    {
        sum = Fused.MulAdd(x[at], V0, sum);
        sum = Fused.MulAdd(x[at + 1], V1, sum);
        sum = Fused.MulAdd(x[at + 2], V2, sum);
        sum = Fused.MulAdd(x[at + 3], V3, sum);
        sum = Fused.MulAdd(x[at + 4], V4, sum);
        sum = Fused.MulAdd(x[at + 5], V5, sum);
        sum = Fused.MulAdd(x[at + 6], V6, sum);
        sum = Fused.MulAdd(x[at + 7], V7, sum);
        sum = Fused.MulAdd(x[at + 8], V8, sum);
        sum = Fused.MulAdd(x[at + 9], V9, sum);
        sum = Fused.MulAdd(x[at + 10], V10, sum);
        sum = Fused.MulAdd(x[at + 11], V11, sum);
        sum = Fused.MulAdd(x[at + 12], V12, sum);
        sum = Fused.MulAdd(x[at + 13], V13, sum);
        sum = Fused.MulAdd(x[at + 14], V14, sum);
        sum = Fused.MulAdd(x[at + 15], V15, sum);
        return sum;
    }

    /// <summary>
    /// Σ_i x[xAt + i] · w[wAt + i · stride] for i in [0, count), summed in order from zero, sixteen of w's values loaded
    /// ahead of their products: the in-order dot product every kernel here uses (a chunk of a projection, a key's score,
    /// a row of the head, a merge of attention chunks).
    /// </summary>
    public static float DotInOrder(ArrayView<float> x, int xAt, ArrayView<float> w, int wAt, int stride, int count)
    {
        var sum = 0f;
        var i = 0;
        for (; i + 16 <= count; i += 16)
        {
            sum = Load(w, wAt, stride).Dot(sum, x, xAt + i);
            wAt += 16 * stride;
        }
        for (; i < count; i++)
        {
            sum = Fused.MulAdd(x[xAt + i], w[wAt], sum);
            wAt += stride;
        }
        return sum;
    }

    /// <summary>total + Σ_i w[from + i] · V_i in order of i, skipping the values whose weight is 0.</summary>
    public readonly float AddWeighted(float total, ArrayView<float> w, int from)
    {
        if (w[from + 0] != 0f) total = Fused.MulAdd(w[from + 0], V0, total);
        if (w[from + 1] != 0f) total = Fused.MulAdd(w[from + 1], V1, total);
        if (w[from + 2] != 0f) total = Fused.MulAdd(w[from + 2], V2, total);
        if (w[from + 3] != 0f) total = Fused.MulAdd(w[from + 3], V3, total);
        if (w[from + 4] != 0f) total = Fused.MulAdd(w[from + 4], V4, total);
        if (w[from + 5] != 0f) total = Fused.MulAdd(w[from + 5], V5, total);
        if (w[from + 6] != 0f) total = Fused.MulAdd(w[from + 6], V6, total);
        if (w[from + 7] != 0f) total = Fused.MulAdd(w[from + 7], V7, total);
        if (w[from + 8] != 0f) total = Fused.MulAdd(w[from + 8], V8, total);
        if (w[from + 9] != 0f) total = Fused.MulAdd(w[from + 9], V9, total);
        if (w[from + 10] != 0f) total = Fused.MulAdd(w[from + 10], V10, total);
        if (w[from + 11] != 0f) total = Fused.MulAdd(w[from + 11], V11, total);
        if (w[from + 12] != 0f) total = Fused.MulAdd(w[from + 12], V12, total);
        if (w[from + 13] != 0f) total = Fused.MulAdd(w[from + 13], V13, total);
        if (w[from + 14] != 0f) total = Fused.MulAdd(w[from + 14], V14, total);
        if (w[from + 15] != 0f) total = Fused.MulAdd(w[from + 15], V15, total);
        return total;
    }

    /// <summary>The largest of <paramref name="max"/> and the sixteen values, taken in index order.</summary>
    public readonly float Max(float max)
    {
        max = XMath.Max(max, V0); max = XMath.Max(max, V1); max = XMath.Max(max, V2); max = XMath.Max(max, V3);
        max = XMath.Max(max, V4); max = XMath.Max(max, V5); max = XMath.Max(max, V6); max = XMath.Max(max, V7);
        max = XMath.Max(max, V8); max = XMath.Max(max, V9); max = XMath.Max(max, V10); max = XMath.Max(max, V11);
        max = XMath.Max(max, V12); max = XMath.Max(max, V13); max = XMath.Max(max, V14); max = XMath.Max(max, V15);
        return max;
    }

    /// <summary>sum + Σ_i exp(V_i − shift), added in index order.</summary>
    public readonly float SumOfExponentials(float sum, float shift)
    {
        sum += XMath.Exp(V0 - shift); sum += XMath.Exp(V1 - shift); sum += XMath.Exp(V2 - shift); sum += XMath.Exp(V3 - shift);
        sum += XMath.Exp(V4 - shift); sum += XMath.Exp(V5 - shift); sum += XMath.Exp(V6 - shift); sum += XMath.Exp(V7 - shift);
        sum += XMath.Exp(V8 - shift); sum += XMath.Exp(V9 - shift); sum += XMath.Exp(V10 - shift); sum += XMath.Exp(V11 - shift);
        sum += XMath.Exp(V12 - shift); sum += XMath.Exp(V13 - shift); sum += XMath.Exp(V14 - shift); sum += XMath.Exp(V15 - shift);
        return sum;
    }
}
