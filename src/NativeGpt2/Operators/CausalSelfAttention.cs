using System.Numerics.Tensors;

namespace NativeGpt2.Operators;

/// <summary>
/// Causal multi-head self-attention over a key/value cache:
/// <c>out[b, t, h] = Σ_j softmax_j(q·k_j / √HS) · v_j</c> over the keys j at or before the query's
/// own position whose mask is 1.
/// </summary>
/// <remarks>
/// Shapes: qkv (B, Tq, 3C) is the <c>c_attn</c> output of the Tq new tokens, queries, keys and values
/// side by side, each split into NH heads of HS channels. keys and values (B, NH, Tmax, HS) are the cache:
/// positions [0, past) hold earlier tokens and [past, past + Tq) receive the new ones. keyMask (B, Tmax)
/// is 1 for real tokens and 0 for padding (empty: all real). out (B, Tq, C) has the heads side by side
/// again; probabilities (B, NH, Tq, past + Tq), when not empty, receives the attention weights.
/// </remarks>
internal static class CausalSelfAttention
{
    /// <summary>Copies the new tokens' keys and values from <paramref name="qkv"/> into the cache at positions [past, past + Tq).</summary>
    public static void AppendKeyValues(Span<float> keys, Span<float> values, ReadOnlySpan<float> qkv,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        for (var b = 0; b < B; b++)
        {
            for (var t = 0; t < Tq; t++)
            {
                var row = qkv.Slice((b * Tq + t) * 3 * C, 3 * C);
                for (var h = 0; h < NH; h++)
                {
                    var slot = ((b * NH + h) * Tmax + past + t) * HS;
                    row.Slice(C + h * HS, HS).CopyTo(keys.Slice(slot, HS));
                    row.Slice(2 * C + h * HS, HS).CopyTo(values.Slice(slot, HS));
                }
            }
        }
    }

    /// <summary>Vectorized attention, queries spread over all cores.</summary>
    public static void Forward(Memory<float> output, Memory<float> probabilities, ReadOnlyMemory<float> qkv,
        ReadOnlyMemory<float> keys, ReadOnlyMemory<float> values, ReadOnlyMemory<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        var Tk = past + Tq;
        var scale = 1f / MathF.Sqrt(HS);
        Parallelism.For(B * NH * Tq, 2L * Tk * HS, (start, end) =>
        {
            var scores = new float[Tk];
            var keyIndex = new int[Tk];
            for (var item = start; item < end; item++)
            {
                // item enumerates (b, h, t) with t fastest.
                var t = item % Tq;
                var h = item / Tq % NH;
                var b = item / (Tq * NH);
                var query = qkv.Span.Slice((b * Tq + t) * 3 * C + h * HS, HS);
                var k = keys.Span.Slice((b * NH + h) * Tmax * HS, Tmax * HS);
                var v = values.Span.Slice((b * NH + h) * Tmax * HS, Tmax * HS);
                var mask = keyMask.IsEmpty ? ReadOnlySpan<int>.Empty : keyMask.Span.Slice(b * Tmax, Tmax);

                // Causal: the query at position past + t sees keys 0..past + t. Masked keys are left out
                // altogether rather than set to -inf, so a row's arithmetic is the same with or without
                // padding in front of it: left-padded batches give exactly the unpadded results.
                var count = 0;
                for (var j = 0; j <= past + t; j++)
                {
                    if (!mask.IsEmpty && mask[j] == 0) continue;
                    keyIndex[count] = j;
                    scores[count++] = TensorPrimitives.Dot(query, k.Slice(j * HS, HS)) * scale;
                }
                var weights = scores.AsSpan(0, count);
                Softmax.Forward(weights, weights);

                // out = Σ_j p_j · v_j; a query with no visible key (padding at the start of a row) gets zeros.
                var o = output.Span.Slice((b * Tq + t) * C + h * HS, HS);
                o.Clear();
                for (var c = 0; c < count; c++)
                    TensorPrimitives.MultiplyAdd(v.Slice(keyIndex[c] * HS, HS), weights[c], o, o);

                if (!probabilities.IsEmpty)
                {
                    var row = probabilities.Span.Slice(((b * NH + h) * Tq + t) * Tk, Tk);
                    row.Clear();
                    for (var c = 0; c < count; c++) row[keyIndex[c]] = weights[c];
                }
            }
        });
    }

    /// <summary>Scalar reference in double, reading the same cache layout.</summary>
    public static void Reference(Span<float> output, Span<float> probabilities, ReadOnlySpan<float> qkv,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, ReadOnlySpan<int> keyMask,
        int B, int Tq, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        var Tk = past + Tq;
        var scale = 1.0 / Math.Sqrt(HS);
        var weights = new double[Tk];
        for (var b = 0; b < B; b++)
        for (var h = 0; h < NH; h++)
        for (var t = 0; t < Tq; t++)
        {
            var q = (b * Tq + t) * 3 * C + h * HS;
            var max = double.NegativeInfinity;
            for (var j = 0; j < Tk; j++)
            {
                var allowed = j <= past + t && (keyMask.IsEmpty || keyMask[b * Tmax + j] != 0);
                var dot = 0.0;
                for (var d = 0; d < HS && allowed; d++)
                    dot += (double)qkv[q + d] * keys[((b * NH + h) * Tmax + j) * HS + d];
                weights[j] = allowed ? dot * scale : double.NegativeInfinity;
                max = Math.Max(max, weights[j]);
            }
            double sum = 0;
            for (var j = 0; j < Tk; j++)
            {
                weights[j] = double.IsNegativeInfinity(max) ? 0 : Math.Exp(weights[j] - max);
                sum += weights[j];
            }
            for (var j = 0; j < Tk; j++)
            {
                if (sum > 0) weights[j] /= sum;
                if (!probabilities.IsEmpty) probabilities[((b * NH + h) * Tq + t) * Tk + j] = (float)weights[j];
            }
            for (var d = 0; d < HS; d++)
            {
                var acc = 0.0;
                for (var j = 0; j < Tk; j++)
                    acc += weights[j] * values[((b * NH + h) * Tmax + j) * HS + d];
                output[(b * Tq + t) * C + h * HS + d] = (float)acc;
            }
        }
    }
}
