using System.Text;

namespace NativeGpt2.Weights;

/// <summary>
/// Full-size GPT-2 weights computed from a formula instead of read from a file (reference-data/SYNTHETIC.md),
/// so full-size models can be tested and benchmarked without a download. Element <c>i</c> of tensor
/// <c>name</c> is a SplitMix64-style hash of the name's FNV-1a hash and <c>i</c>, mapped to
/// <c>center ± scale</c>.
/// </summary>
public static class SyntheticWeights
{
    /// <summary>The names accepted after <c>synthetic:</c>, with their architectures.</summary>
    public static IReadOnlyDictionary<string, Gpt2Config> Configs { get; } = new Dictionary<string, Gpt2Config>
    {
        ["gpt2"] = Gpt2Config.Gpt2Small,
        ["gpt2-medium"] = Gpt2Config.Gpt2Medium,
        ["gpt2-large"] = Gpt2Config.Gpt2Large,
        ["gpt2-xl"] = Gpt2Config.Gpt2XL,
    };

    private const ulong Seed = 0x5EED;

    /// <summary>Builds every weight of <paramref name="config"/>, each tensor filled in parallel.</summary>
    /// <param name="config">The architecture (tied head: synthetic models have no <c>lm_head</c>).</param>
    /// <param name="progress">Receives the fraction of parameters generated, from 0 to 1.</param>
    public static Gpt2Weights Create(Gpt2Config config, IProgress<double>? progress = null) => Create(config, WeightStorage.Plain, progress);

    /// <summary>Builds every weight straight into <paramref name="storage"/>'s formats and layouts, a row at a time.</summary>
    internal static Gpt2Weights Create(Gpt2Config config, WeightStorage storage, IProgress<double>? progress = null)
    {
        var expected = Gpt2Weights.ExpectedTensorKinds(config).ToList();
        var total = expected.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        long done = 0;
        var tensors = new Dictionary<string, Weight>();
        foreach (var (name, shape, kind) in expected)
        {
            var count = shape.Aggregate(1L, (a, b) => a * b);
            var format = storage.FormatFor(kind, WeightFormat.F32);
            var layout = storage.LayoutFor(kind);
            if (format == WeightFormat.F32 && layout == WeightLayout.RowMajor)
            {
                var values = new float[count];
                Fill(name, values);
                tensors[name] = new Weight(name, shape, values);
            }
            else
            {
                int rows = Weight.Rows(shape), cols = Weight.Columns(shape);
                var data = WeightData.Create(format, layout, rows, cols);
                var (center, scale) = Range(name);
                var seed = Fnv1a64(name) ^ Seed;
                // Rows are independent (a Q8 block never spans two), so they fill in parallel.
                Parallel.For(0, rows, () => new float[cols], (r, _, row) =>
                {
                    for (var c = 0; c < cols; c++) row[c] = Value(seed, (ulong)((long)r * cols + c), center, scale);
                    data.SetRow(r, row);
                    return row;
                }, _ => { });
                tensors[name] = new Weight(name, shape, data);
            }
            done += count;
            progress?.Report((double)done / total);
        }
        return Gpt2Weights.Assemble(config, name => tensors[name]);
    }

    /// <summary>Fills <paramref name="destination"/> with elements 0, 1, … of tensor <paramref name="name"/>.</summary>
    public static void Fill(string name, float[] destination)
    {
        var (center, scale) = Range(name);
        var seed = Fnv1a64(name) ^ Seed;
        const int chunk = 1 << 16;
        Parallel.For(0, (destination.Length + chunk - 1) / chunk, k =>
        {
            var end = Math.Min(destination.Length, (k + 1) * chunk);
            for (var i = k * chunk; i < end; i++)
                destination[i] = Value(seed, (ulong)i, center, scale);
        });
    }

    /// <summary>Element <paramref name="index"/> of tensor <paramref name="name"/>.</summary>
    public static float Element(string name, long index)
    {
        var (center, scale) = Range(name);
        return Value(Fnv1a64(name) ^ Seed, (ulong)index, center, scale);
    }

    private static float Value(ulong seed, ulong index, double center, double scale)
    {
        // SplitMix64's finaliser over seed + golden-ratio increments: a counter-based generator, so any
        // element can be computed without the ones before it.
        var z = unchecked(seed + 0x9E3779B97F4A7C15UL * (index + 1));
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        var u = (z >> 11) * (1.0 / (1UL << 53)); // exact: 53 bits into [0, 1)
        return (float)(center + scale * (2.0 * u - 1.0));
    }

    /// <summary>Center and half-width of the uniform range for a tensor, by the table in SYNTHETIC.md.</summary>
    private static (double Center, double Scale) Range(string name)
    {
        var isNorm = name.EndsWith(".ln_1.weight") || name.EndsWith(".ln_2.weight") || name == "ln_f.weight";
        var isNormBias = name.EndsWith(".ln_1.bias") || name.EndsWith(".ln_2.bias") || name == "ln_f.bias";
        if (isNorm) return (1.0, 0.2);
        if (isNormBias) return (0.0, 0.05);
        if (name == "wte.weight") return (0.0, 0.1);
        if (name == "wpe.weight") return (0.0, 0.02);
        if (name.EndsWith(".bias")) return (0.0, 0.02);
        return (0.0, 0.05);
    }

    private static ulong Fnv1a64(string name)
    {
        var hash = 0xCBF29CE484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(name))
            hash = unchecked((hash ^ b) * 0x100000001B3UL);
        return hash;
    }
}
