namespace NativeGpt2.Verification;

/// <summary>How one tensor differs between two backends.</summary>
/// <param name="Tensor">The activation: <c>hidden_states.i</c>, <c>attentions.N</c> or <c>logits</c>.</param>
/// <param name="First">The first backend's name.</param>
/// <param name="Second">The second backend's name.</param>
/// <param name="MaxAbsDiff">Largest |a − b|.</param>
/// <param name="MaxRelDiff">Largest |a − b| / max(|a|, |b|) over elements at least 1e-6 in size.</param>
/// <param name="Ok">Whether <see cref="MaxAbsDiff"/> is within the tolerance (and neither side is NaN where the other is not).</param>
public sealed record BackendComparison(string Tensor, string First, string Second, double MaxAbsDiff, double MaxRelDiff, bool Ok);

/// <summary>
/// Runs the same input through the same weights on several backends and compares every hidden state,
/// every layer's attention probabilities and the logits between each pair: what a user runs to trust a
/// new backend or a new machine (<c>nativegpt2 crosscheck</c>).
/// </summary>
public static class CrossCheck
{
    /// <summary>Compares <paramref name="models"/> (one per backend, same weights) pairwise on <paramref name="batch"/>.</summary>
    /// <exception cref="ArgumentException">Fewer than two models, or models of different architectures.</exception>
    public static IReadOnlyList<BackendComparison> Run(IReadOnlyList<Gpt2CausalLM> models, TokenBatch batch, double tolerance)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(tolerance);
        if (models.Count < 2) throw new ArgumentException("comparing needs at least two backends", nameof(models));
        if (models.Any(m => m.Config != models[0].Config)) throw new ArgumentException("the models differ in architecture", nameof(models));

        var options = new ForwardOptions { OutputHiddenStates = true, OutputAttentions = true };
        var outputs = models.Select(m =>
        {
            var output = m.Forward(batch, options: options);
            var tensors = new Dictionary<string, FloatTensor>(output.Backbone.Activations) { ["logits"] = output.Logits };
            return (m.Backend.Name, Tensors: tensors);
        }).ToList();

        var names = outputs[0].Tensors.Keys.OrderBy(n => n, NaturalOrder.Instance).ToList();
        var rows = new List<BackendComparison>();
        for (var i = 0; i < outputs.Count; i++)
        {
            for (var j = i + 1; j < outputs.Count; j++)
            {
                foreach (var name in names)
                    rows.Add(Compare(name, outputs[i].Name, outputs[i].Tensors[name], outputs[j].Name, outputs[j].Tensors[name], tolerance));
            }
        }
        return rows;
    }

    private static BackendComparison Compare(string name, string first, FloatTensor a, string second, FloatTensor b, double tolerance)
    {
        double maxAbs = 0, maxRel = 0;
        var nanMismatch = false;
        for (var k = 0; k < a.Data.Length; k++)
        {
            double x = a.Data[k], y = b.Data[k];
            if (double.IsNaN(x) || double.IsNaN(y))
            {
                nanMismatch |= double.IsNaN(x) != double.IsNaN(y);
                continue;
            }
            var diff = Math.Abs(x - y);
            maxAbs = Math.Max(maxAbs, diff);
            var size = Math.Max(Math.Abs(x), Math.Abs(y));
            if (size >= 1e-6) maxRel = Math.Max(maxRel, diff / size);
        }
        return new BackendComparison(name, first, second, maxAbs, maxRel, !nanMismatch && maxAbs <= tolerance);
    }
}
