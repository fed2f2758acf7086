using NativeGpt2.Operators;

namespace NativeGpt2.Verification;

/// <summary>How one computed tensor compares with its reference.</summary>
/// <param name="Name">The tensor name shared by reference and computation.</param>
/// <param name="Compared">Number of elements compared (padding excluded).</param>
/// <param name="MaxAbsDiff">Largest |computed − reference|.</param>
/// <param name="MaxRelDiff">Largest |computed − reference| / |reference| over elements whose reference is at least 1e-6 in size.</param>
/// <param name="FirstMismatch">The first element beyond the tolerance, as <c>[i, j, k] expected x, got y</c>; null if none.</param>
/// <param name="Ok">Whether every compared element is within the tolerance (and the shapes agree).</param>
public sealed record TensorComparison(string Name, long Compared, double MaxAbsDiff, double MaxRelDiff, string? FirstMismatch, bool Ok);

/// <summary>
/// Runs a model on a reference file's inputs and compares every tensor both have: the cross-backend
/// and cross-implementation correctness check behind <c>nativegpt2 verify</c>.
/// </summary>
/// <remarks>
/// Inputs are <c>input_ids</c> and, when present, <c>attention_mask</c> and <c>position_ids</c>.
/// Comparable names: <c>hidden_states.i</c>, <c>layerN.ln_1|attn|ln_2|mlp|out</c>, <c>attentions.N</c>,
/// <c>logits</c>, <c>logits_at_positions</c> (at <c>logit_positions</c>) and <c>next_token_logprob</c>.
/// A reference without the position axis ((B, C) where the model gives (B, T, C)) is compared at the
/// last position. Positions whose mask is 0 are excluded: their values are meaningless.
/// </remarks>
public static class ReferenceVerifier
{
    /// <summary>Inputs and data that are not activations: never compared.</summary>
    private static readonly HashSet<string> InputNames = ["input_ids", "attention_mask", "position_ids", "logit_positions"];

    /// <summary>Verifies <paramref name="model"/> against the reference file at <paramref name="path"/>.</summary>
    public static IReadOnlyList<TensorComparison> Verify(Gpt2CausalLM model, string path, double tolerance) =>
        Verify(model, ReferenceFile.Load(path), tolerance);

    /// <summary>Verifies <paramref name="model"/> against an already-loaded reference.</summary>
    /// <exception cref="ModelFormatException">The reference has no <c>input_ids</c> or its inputs are malformed.</exception>
    public static IReadOnlyList<TensorComparison> Verify(Gpt2CausalLM model, ReferenceFile reference, double tolerance)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tolerance);
        var ids = reference["input_ids"];
        if (ids.Shape.Length != 2)
            throw new ModelFormatException(reference.Path, "input_ids", $"must be (B, T), found {FloatTensor.ShapeToString(ids.Shape)}");
        int B = ids.Shape[0], T = ids.Shape[1];
        var mask = reference.Tensors.GetValueOrDefault("attention_mask")?.AsInt32();
        var positions = reference.Tensors.GetValueOrDefault("position_ids")?.AsInt32();
        var batch = InputError(reference, () => new TokenBatch(ids.AsInt32(), B, T, mask, positions));

        var names = reference.Tensors.Keys.Where(n => !InputNames.Contains(n)).ToList();
        var options = new ForwardOptions
        {
            OutputHiddenStates = names.Any(n => n.StartsWith("hidden_states.", StringComparison.Ordinal)),
            OutputAttentions = names.Any(n => n.StartsWith("attentions.", StringComparison.Ordinal)),
            OutputLayerActivations = names.Any(n => n.StartsWith("layer", StringComparison.Ordinal)),
        };
        var computed = InputError(reference, () => Compute(model, batch, reference, names, options));

        var results = new List<TensorComparison>();
        foreach (var name in names.OrderBy(n => n, NaturalOrder.Instance))
        {
            if (!computed.TryGetValue(name, out var actual)) continue;
            results.Add(Compare(reference[name], actual, mask, B, T, tolerance));
        }
        return results;
    }

    /// <summary>
    /// Runs <paramref name="step"/>, reporting an argument the reference file supplied (an id outside the
    /// vocabulary, a mask value other than 0 or 1, a position beyond the context) as a fault of the file.
    /// </summary>
    private static T InputError<T>(ReferenceFile reference, Func<T> step)
    {
        try
        {
            return step();
        }
        catch (ArgumentException e)
        {
            var field = e.ParamName switch
            {
                "attentionMask" => "attention_mask",
                "positionIds" => "position_ids",
                "positions" => "logit_positions",
                _ => "input_ids",
            };
            var message = e.Message;
            var suffix = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            throw new ModelFormatException(reference.Path, field, suffix >= 0 ? message[..suffix] : message, e);
        }
    }

    private static Dictionary<string, FloatTensor> Compute(Gpt2CausalLM model, TokenBatch batch, ReferenceFile reference, List<string> names, ForwardOptions options)
    {
        var hidden = model.Backbone.Forward(batch, options: options);
        var computed = new Dictionary<string, FloatTensor>(hidden.Activations);
        var needLogits = names.Contains("logits") || names.Contains("next_token_logprob");
        if (needLogits)
        {
            var logits = model.Head.Forward(hidden.LastHiddenState);
            computed["logits"] = logits;
            computed["next_token_logprob"] = NextTokenLogProb(logits, batch);
        }
        if (names.Contains("logits_at_positions") && reference.Tensors.TryGetValue("logit_positions", out var positions))
            computed["logits_at_positions"] = model.Head.Forward(hidden.LastHiddenState, positions.AsInt32());
        return computed;
    }

    /// <summary>log p(ids[t + 1] | ids[..t]) for t in [0, T - 1): (B, T - 1).</summary>
    internal static FloatTensor NextTokenLogProb(FloatTensor logits, TokenBatch batch)
    {
        int B = batch.BatchSize, T = batch.SequenceLength, V = logits.Shape[2];
        var result = new float[B * Math.Max(T - 1, 0)];
        var scratch = new float[V];
        for (var b = 0; b < B; b++)
        {
            for (var t = 0; t + 1 < T; t++)
            {
                var row = logits.Row(b, t);
                var logSumExp = LogSoftmax.LogSumExp(row, scratch);
                result[b * (T - 1) + t] = (float)(row[batch.Ids[b * T + t + 1]] - logSumExp);
            }
        }
        return new FloatTensor(result, B, Math.Max(T - 1, 0));
    }

    private static TensorComparison Compare(ReferenceTensor expected, FloatTensor actual, int[]? mask, int B, int T, double tolerance)
    {
        var name = expected.Name;
        var actualShape = actual.Shape;
        var lastPositionOnly = false;
        if (!expected.Shape.SequenceEqual(actualShape))
        {
            // (B, C) against (B, T, C): the reference kept only the last position.
            lastPositionOnly = expected.Shape.Length == 2 && actualShape.Length == 3
                && expected.Shape[0] == actualShape[0] && expected.Shape[1] == actualShape[2];
            if (!lastPositionOnly)
                return new TensorComparison(name, 0, double.PositiveInfinity, double.PositiveInfinity,
                    $"shape {FloatTensor.ShapeToString(expected.Shape)} in the reference, {FloatTensor.ShapeToString(actualShape)} computed", false);
        }

        long compared = 0;
        double maxAbs = 0, maxRel = 0;
        string? firstMismatch = null;
        var index = new int[expected.Shape.Length];
        for (long i = 0; i < expected.Values.Length; i++)
        {
            Unravel(i, expected.Shape, index);
            if (!IsReal(name, index, mask, B, T)) continue;
            var e = expected.Values[i];
            var a = lastPositionOnly ? actual.Data[(index[0] * actualShape[1] + actualShape[1] - 1) * actualShape[2] + index[1]] : actual.Data[i];
            var diff = Math.Abs(a - e);
            if (double.IsNaN(diff)) diff = double.PositiveInfinity;
            compared++;
            maxAbs = Math.Max(maxAbs, diff);
            if (Math.Abs(e) >= 1e-6) maxRel = Math.Max(maxRel, diff / Math.Abs(e));
            if (diff > tolerance && firstMismatch is null)
                firstMismatch = $"{FloatTensor.ShapeToString(index)} expected {e:R}, got {a:R}";
        }
        return new TensorComparison(name, compared, maxAbs, maxRel, firstMismatch, firstMismatch is null);
    }

    /// <summary>Whether the element at <paramref name="index"/> belongs to a real (unpadded) token.</summary>
    private static bool IsReal(string name, int[] index, int[]? mask, int B, int T)
    {
        if (mask is null) return true;
        var b = index[0];
        bool Real(int t) => t < 0 || t >= T || mask[b * T + t] == 1;
        if (name.StartsWith("attentions.", StringComparison.Ordinal)) return Real(index[2]);
        if (name == "next_token_logprob") return Real(index[1]) && Real(index[1] + 1);
        // logits_at_positions cannot map back to a mask without its positions; references with padding do not use it.
        if (name == "logits_at_positions") return true;
        return index.Length < 3 || Real(index[1]);
    }

    private static void Unravel(long flat, int[] shape, int[] index)
    {
        for (var d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = (int)(flat % shape[d]);
            flat /= shape[d];
        }
    }
}

/// <summary>Orders names with embedded numbers by value: <c>hidden_states.2</c> before <c>hidden_states.10</c>.</summary>
internal sealed class NaturalOrder : IComparer<string>
{
    public static readonly NaturalOrder Instance = new();

    public int Compare(string? x, string? y)
    {
        if (x is null || y is null) return string.CompareOrdinal(x, y);
        int i = 0, j = 0;
        while (i < x.Length && j < y.Length)
        {
            if (char.IsAsciiDigit(x[i]) && char.IsAsciiDigit(y[j]))
            {
                var si = i;
                var sj = j;
                while (i < x.Length && char.IsAsciiDigit(x[i])) i++;
                while (j < y.Length && char.IsAsciiDigit(y[j])) j++;
                var a = x[si..i].TrimStart('0');
                var b = y[sj..j].TrimStart('0');
                var byValue = a.Length != b.Length ? a.Length.CompareTo(b.Length) : string.CompareOrdinal(a, b);
                if (byValue != 0) return byValue;
            }
            else
            {
                if (x[i] != y[j]) return x[i].CompareTo(y[j]);
                i++;
                j++;
            }
        }
        return (x.Length - i).CompareTo(y.Length - j);
    }
}
