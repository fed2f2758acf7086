namespace NativeGpt2.Weights;

/// <summary>
/// A float32 weight tensor: its checkpoint name (without the <c>transformer.</c> prefix), shape and data.
/// </summary>
public sealed class Weight
{
    /// <summary>Creates a weight; <paramref name="data"/> must hold exactly the product of <paramref name="shape"/>.</summary>
    public Weight(string name, int[] shape, float[] data)
    {
        var count = shape.Aggregate(1L, (a, b) => a * b);
        if (count != data.Length)
            throw new ArgumentException($"{name}: {data.Length} values for shape [{string.Join(", ", shape)}]", nameof(data));
        Name = name;
        Shape = shape;
        Data = data;
    }

    /// <summary>Checkpoint name, e.g. <c>h.0.attn.c_attn.weight</c>.</summary>
    public string Name { get; }

    /// <summary>Dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>Row-major values.</summary>
    public float[] Data { get; }

    /// <inheritdoc />
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// Weights of one transformer block, named as in the checkpoint (<c>h.{l}.…</c>).
/// </summary>
/// <remarks>
/// GPT-2 stores its projections as <c>Conv1D</c>: the weight is <c>[in, out]</c> and y = x·W + b,
/// the transpose of <c>nn.Linear</c>. Every matrix here keeps that layout as loaded; the operators that
/// read it (<see cref="Operators.MatMul"/>) index it as <c>[in, out]</c>.
/// </remarks>
public sealed class Gpt2BlockWeights
{
    /// <summary>ln_1 gain (C).</summary>
    public required Weight Ln1Weight { get; init; }
    /// <summary>ln_1 bias (C).</summary>
    public required Weight Ln1Bias { get; init; }
    /// <summary>attn.c_attn weight (C, 3C): query, key and value projections side by side.</summary>
    public required Weight AttnWeight { get; init; }
    /// <summary>attn.c_attn bias (3C).</summary>
    public required Weight AttnBias { get; init; }
    /// <summary>attn.c_proj weight (C, C).</summary>
    public required Weight AttnProjWeight { get; init; }
    /// <summary>attn.c_proj bias (C).</summary>
    public required Weight AttnProjBias { get; init; }
    /// <summary>ln_2 gain (C).</summary>
    public required Weight Ln2Weight { get; init; }
    /// <summary>ln_2 bias (C).</summary>
    public required Weight Ln2Bias { get; init; }
    /// <summary>mlp.c_fc weight (C, 4C).</summary>
    public required Weight FcWeight { get; init; }
    /// <summary>mlp.c_fc bias (4C).</summary>
    public required Weight FcBias { get; init; }
    /// <summary>mlp.c_proj weight (4C, C).</summary>
    public required Weight FcProjWeight { get; init; }
    /// <summary>mlp.c_proj bias (C).</summary>
    public required Weight FcProjBias { get; init; }

    /// <summary>All twelve weights in checkpoint order.</summary>
    public IEnumerable<Weight> All =>
        [Ln1Weight, Ln1Bias, AttnWeight, AttnBias, AttnProjWeight, AttnProjBias, Ln2Weight, Ln2Bias, FcWeight, FcBias, FcProjWeight, FcProjBias];
}

/// <summary>
/// All weights of a GPT-2 model. The LM head either reads <see cref="TokenEmbedding"/> (tied: the
/// same array, never copied) or has its own <see cref="LmHead"/> matrix (untied).
/// </summary>
public sealed class Gpt2Weights
{
    /// <summary>wte (V, C): token embeddings, and the tied LM head.</summary>
    public required Weight TokenEmbedding { get; init; }
    /// <summary>wpe (context length, C): position embeddings.</summary>
    public required Weight PositionEmbedding { get; init; }
    /// <summary>h.0 … h.{L-1}.</summary>
    public required IReadOnlyList<Gpt2BlockWeights> Blocks { get; init; }
    /// <summary>ln_f gain (C).</summary>
    public required Weight FinalNormWeight { get; init; }
    /// <summary>ln_f bias (C).</summary>
    public required Weight FinalNormBias { get; init; }
    /// <summary>lm_head (V, C) of an untied checkpoint; null when the head is tied to wte.</summary>
    public Weight? LmHead { get; init; }

    /// <summary>Every weight once (a tied head is not listed twice).</summary>
    public IEnumerable<Weight> All
    {
        get
        {
            yield return TokenEmbedding;
            yield return PositionEmbedding;
            foreach (var block in Blocks)
                foreach (var w in block.All) yield return w;
            yield return FinalNormWeight;
            yield return FinalNormBias;
            if (LmHead is not null) yield return LmHead;
        }
    }

    /// <summary>
    /// The tensors a checkpoint of <paramref name="config"/> must hold, with their shapes, in checkpoint
    /// order (names without the <c>transformer.</c> prefix; <c>lm_head.weight</c> only when untied).
    /// </summary>
    public static IEnumerable<(string Name, int[] Shape)> ExpectedTensors(Gpt2Config config)
    {
        int v = config.VocabSize, c = config.EmbeddingSize, inner = config.InnerSize;
        yield return ("wte.weight", [v, c]);
        yield return ("wpe.weight", [config.ContextLength, c]);
        for (var l = 0; l < config.LayerCount; l++)
        {
            yield return ($"h.{l}.ln_1.weight", [c]);
            yield return ($"h.{l}.ln_1.bias", [c]);
            yield return ($"h.{l}.attn.c_attn.weight", [c, 3 * c]);
            yield return ($"h.{l}.attn.c_attn.bias", [3 * c]);
            yield return ($"h.{l}.attn.c_proj.weight", [c, c]);
            yield return ($"h.{l}.attn.c_proj.bias", [c]);
            yield return ($"h.{l}.ln_2.weight", [c]);
            yield return ($"h.{l}.ln_2.bias", [c]);
            yield return ($"h.{l}.mlp.c_fc.weight", [c, inner]);
            yield return ($"h.{l}.mlp.c_fc.bias", [inner]);
            yield return ($"h.{l}.mlp.c_proj.weight", [inner, c]);
            yield return ($"h.{l}.mlp.c_proj.bias", [c]);
        }
        yield return ("ln_f.weight", [c]);
        yield return ("ln_f.bias", [c]);
        if (!config.TieWordEmbeddings) yield return ("lm_head.weight", [v, c]);
    }

    /// <summary>
    /// Assembles the weights from tensors named as in <see cref="ExpectedTensors"/>; the lookup must
    /// hold every expected name with the expected shape (loaders check this first).
    /// </summary>
    public static Gpt2Weights Assemble(Gpt2Config config, Func<string, Weight> get)
    {
        var blocks = new Gpt2BlockWeights[config.LayerCount];
        for (var l = 0; l < blocks.Length; l++)
        {
            blocks[l] = new Gpt2BlockWeights
            {
                Ln1Weight = get($"h.{l}.ln_1.weight"),
                Ln1Bias = get($"h.{l}.ln_1.bias"),
                AttnWeight = get($"h.{l}.attn.c_attn.weight"),
                AttnBias = get($"h.{l}.attn.c_attn.bias"),
                AttnProjWeight = get($"h.{l}.attn.c_proj.weight"),
                AttnProjBias = get($"h.{l}.attn.c_proj.bias"),
                Ln2Weight = get($"h.{l}.ln_2.weight"),
                Ln2Bias = get($"h.{l}.ln_2.bias"),
                FcWeight = get($"h.{l}.mlp.c_fc.weight"),
                FcBias = get($"h.{l}.mlp.c_fc.bias"),
                FcProjWeight = get($"h.{l}.mlp.c_proj.weight"),
                FcProjBias = get($"h.{l}.mlp.c_proj.bias"),
            };
        }
        return new Gpt2Weights
        {
            TokenEmbedding = get("wte.weight"),
            PositionEmbedding = get("wpe.weight"),
            Blocks = blocks,
            FinalNormWeight = get("ln_f.weight"),
            FinalNormBias = get("ln_f.bias"),
            LmHead = config.TieWordEmbeddings ? null : get("lm_head.weight"),
        };
    }
}
