namespace NativeGpt2.Weights;

/// <summary>
/// A weight tensor: its checkpoint name (without the <c>transformer.</c> prefix), shape, and values in a
/// <see cref="WeightFormat"/> (float32, or 16- or 8-bit for matrices loaded that way).
/// </summary>
public sealed class Weight
{
    private float[]? _float32;

    /// <summary>Creates a float32 weight; <paramref name="data"/> must hold exactly the product of <paramref name="shape"/>.</summary>
    public Weight(string name, int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var count = shape.Aggregate(1L, (a, b) => a * b);
        if (count != data.Length)
            throw new ArgumentException($"{name}: {data.Length} values for shape [{string.Join(", ", shape)}]", nameof(data));
        Name = name;
        Shape = shape;
        Storage = WeightData.Wrap(data, Rows(shape), Columns(shape));
        _float32 = data;
    }

    /// <summary>A weight over values already stored in some format and layout.</summary>
    internal Weight(string name, int[] shape, WeightData storage)
    {
        Name = name;
        Shape = shape;
        Storage = storage;
        if (storage is Float32Data { Layout: WeightLayout.RowMajor } dense) _float32 = dense.Values;
    }

    /// <summary>Checkpoint name, e.g. <c>h.0.attn.c_attn.weight</c>.</summary>
    public string Name { get; }

    /// <summary>Dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>How the values are stored: <see cref="WeightFormat.F32"/> unless the model was loaded with 16- or 8-bit weights.</summary>
    public WeightFormat Format => Storage.Format;

    /// <summary>How the values are ordered: row-major as in the checkpoint, or packed in panels for the CPU's matmul.</summary>
    public WeightLayout Layout => Storage.Layout;

    /// <summary>Writes the values into <paramref name="destination"/> as row-major float32 (widening or unpacking as needed).</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is not exactly the weight's size.</exception>
    public void CopyTo(Span<float> destination)
    {
        if (destination.Length != (long)Storage.Rows * Storage.Cols)
            throw new ArgumentException($"{Name} has {(long)Storage.Rows * Storage.Cols} values, the destination {destination.Length}", nameof(destination));
        if (_float32 is { } data) data.CopyTo(destination);
        else Storage.CopyTo(destination);
    }

    /// <summary>
    /// The values as row-major float32. For a weight stored otherwise (16- or 8-bit, or packed into panels
    /// for the CPU's matmul), the first access builds a float32 copy and keeps it.
    /// </summary>
    public float[] Data
    {
        get
        {
            if (_float32 is { } data) return data;
            var copy = new float[Storage.Rows * (long)Storage.Cols];
            Storage.CopyTo(copy);
            return _float32 = copy;
        }
    }

    /// <summary>The stored values.</summary>
    internal WeightData Storage { get; }

    /// <summary>Rows of the weight read as a matrix: the product of all dimensions but the last (1 for a vector).</summary>
    internal static int Rows(int[] shape) => shape.Length <= 1 ? 1 : shape[..^1].Aggregate(1, (a, b) => a * b);

    /// <summary>Columns: the last dimension.</summary>
    internal static int Columns(int[] shape) => shape.Length == 0 ? 1 : shape[^1];

    /// <inheritdoc />
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}] {Format}";
}

/// <summary>
/// Weights of one transformer block, named as in the checkpoint (<c>h.{l}.…</c>).
/// </summary>
/// <remarks>
/// GPT-2 stores its projections as <c>Conv1D</c>: the weight is <c>[in, out]</c> and y = x·W + b,
/// the transpose of <c>nn.Linear</c>. Every matrix here keeps that layout as loaded; each backend's
/// <see cref="Backends.IBackend.PrepareMatrix"/> is the one place that turns it into what its matmul reads.
/// </remarks>
public sealed class Gpt2BlockWeights
{
    /// <summary>
    /// The twelve tensors of block l, named <c>h.{l}.{suffix}</c>, with their shapes, in checkpoint order:
    /// the one list of them. The properties below index it.
    /// </summary>
    internal static readonly (string Suffix, Func<Gpt2Config, int[]> Shape, TensorKind Kind)[] Tensors =
    [
        ("ln_1.weight", c => [c.EmbeddingSize], TensorKind.Vector),
        ("ln_1.bias", c => [c.EmbeddingSize], TensorKind.Vector),
        ("attn.c_attn.weight", c => [c.EmbeddingSize, 3 * c.EmbeddingSize], TensorKind.Matrix),
        ("attn.c_attn.bias", c => [3 * c.EmbeddingSize], TensorKind.Vector),
        ("attn.c_proj.weight", c => [c.EmbeddingSize, c.EmbeddingSize], TensorKind.Matrix),
        ("attn.c_proj.bias", c => [c.EmbeddingSize], TensorKind.Vector),
        ("ln_2.weight", c => [c.EmbeddingSize], TensorKind.Vector),
        ("ln_2.bias", c => [c.EmbeddingSize], TensorKind.Vector),
        ("mlp.c_fc.weight", c => [c.EmbeddingSize, c.InnerSize], TensorKind.Matrix),
        ("mlp.c_fc.bias", c => [c.InnerSize], TensorKind.Vector),
        ("mlp.c_proj.weight", c => [c.InnerSize, c.EmbeddingSize], TensorKind.Matrix),
        ("mlp.c_proj.bias", c => [c.EmbeddingSize], TensorKind.Vector),
    ];

    private readonly Weight[] _tensors;

    /// <summary>A block from its twelve tensors in the order of <c>h.{l}.ln_1.weight</c> … <c>h.{l}.mlp.c_proj.bias</c>.</summary>
    /// <exception cref="ArgumentException">Not twelve tensors.</exception>
    public Gpt2BlockWeights(IReadOnlyList<Weight> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count != Tensors.Length)
            throw new ArgumentException($"a block has {Tensors.Length} tensors, got {tensors.Count}", nameof(tensors));
        _tensors = [.. tensors];
    }

    /// <summary>ln_1 gain (C).</summary>
    public Weight Ln1Weight => _tensors[0];
    /// <summary>ln_1 bias (C).</summary>
    public Weight Ln1Bias => _tensors[1];
    /// <summary>attn.c_attn weight (C, 3C): query, key and value projections side by side.</summary>
    public Weight AttnWeight => _tensors[2];
    /// <summary>attn.c_attn bias (3C).</summary>
    public Weight AttnBias => _tensors[3];
    /// <summary>attn.c_proj weight (C, C).</summary>
    public Weight AttnProjWeight => _tensors[4];
    /// <summary>attn.c_proj bias (C).</summary>
    public Weight AttnProjBias => _tensors[5];
    /// <summary>ln_2 gain (C).</summary>
    public Weight Ln2Weight => _tensors[6];
    /// <summary>ln_2 bias (C).</summary>
    public Weight Ln2Bias => _tensors[7];
    /// <summary>mlp.c_fc weight (C, 4C).</summary>
    public Weight FcWeight => _tensors[8];
    /// <summary>mlp.c_fc bias (4C).</summary>
    public Weight FcBias => _tensors[9];
    /// <summary>mlp.c_proj weight (4C, C).</summary>
    public Weight FcProjWeight => _tensors[10];
    /// <summary>mlp.c_proj bias (C).</summary>
    public Weight FcProjBias => _tensors[11];

    /// <summary>All twelve weights in checkpoint order.</summary>
    public IReadOnlyList<Weight> All => _tensors;
}

/// <summary>
/// All weights of a GPT-2 model. The LM head either reads <see cref="TokenEmbedding"/> (tied: the
/// same array, never copied) or has its own <see cref="LmHead"/> matrix (untied).
/// </summary>
public sealed class Gpt2Weights
{
    private const string TokenEmbeddingName = "wte.weight";
    private const string PositionEmbeddingName = "wpe.weight";
    private const string FinalNormWeightName = "ln_f.weight";
    private const string FinalNormBiasName = "ln_f.bias";
    private const string LmHeadName = "lm_head.weight";

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

    /// <summary>Every weight once (a tied head is not listed twice), in checkpoint order.</summary>
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
    public static IEnumerable<(string Name, int[] Shape)> ExpectedTensors(Gpt2Config config) =>
        ExpectedTensorKinds(config).Select(t => (t.Name, t.Shape));

    /// <summary><see cref="ExpectedTensors"/> with what each is read as: how a loader stores it.</summary>
    internal static IEnumerable<(string Name, int[] Shape, TensorKind Kind)> ExpectedTensorKinds(Gpt2Config config)
    {
        int v = config.VocabSize, c = config.EmbeddingSize;
        yield return (TokenEmbeddingName, [v, c], TensorKind.Table);
        // wpe is gathered a row per token, small, and kept float32.
        yield return (PositionEmbeddingName, [config.ContextLength, c], TensorKind.Vector);
        for (var l = 0; l < config.LayerCount; l++)
        {
            foreach (var (suffix, shape, kind) in Gpt2BlockWeights.Tensors)
                yield return ($"h.{l}.{suffix}", shape(config), kind);
        }
        yield return (FinalNormWeightName, [c], TensorKind.Vector);
        yield return (FinalNormBiasName, [c], TensorKind.Vector);
        if (!config.TieWordEmbeddings) yield return (LmHeadName, [v, c], TensorKind.Table);
    }

    /// <summary>
    /// Assembles the weights from tensors named as in <see cref="ExpectedTensors"/>; the lookup must
    /// hold every expected name with the expected shape (loaders check this first).
    /// </summary>
    public static Gpt2Weights Assemble(Gpt2Config config, Func<string, Weight> get) => new()
    {
        TokenEmbedding = get(TokenEmbeddingName),
        PositionEmbedding = get(PositionEmbeddingName),
        Blocks = Enumerable.Range(0, config.LayerCount)
            .Select(l => new Gpt2BlockWeights(Gpt2BlockWeights.Tensors.Select(t => get($"h.{l}.{t.Suffix}")).ToArray()))
            .ToArray(),
        FinalNormWeight = get(FinalNormWeightName),
        FinalNormBias = get(FinalNormBiasName),
        LmHead = config.TieWordEmbeddings ? null : get(LmHeadName),
    };
}

/// <summary>How a tensor is read, and so how it is stored.</summary>
internal enum TensorKind
{
    /// <summary>Read whole or a row at a time (gains, biases, wpe): always float32.</summary>
    Vector,

    /// <summary>A Conv1D weight (IC, OC) read by the matmul: in the backend's layout and the chosen format.</summary>
    Matrix,

    /// <summary>A table read by rows (wte, lm_head): row-major, in the chosen format.</summary>
    Table,
}

/// <summary>How a loader stores the matrices and tables it reads (vectors stay float32 row-major).</summary>
/// <param name="Format">The format of matrices and tables; null keeps each checkpoint tensor's own (F32, F16 or BF16).</param>
/// <param name="MatrixLayout">The layout of Conv1D matrices: the backend's <see cref="Backends.IBackend.MatrixLayout"/>.</param>
internal sealed record WeightStorage(WeightFormat? Format, WeightLayout MatrixLayout)
{
    /// <summary>Float32 row-major for everything: what an in-memory model starts from.</summary>
    public static WeightStorage Plain { get; } = new(WeightFormat.F32, WeightLayout.RowMajor);

    /// <summary>The format a tensor of <paramref name="kind"/> stored as <paramref name="stored"/> is held in.</summary>
    public WeightFormat FormatFor(TensorKind kind, WeightFormat stored) => kind == TensorKind.Vector ? WeightFormat.F32 : Format ?? stored;

    /// <summary>The layout a tensor of <paramref name="kind"/> is held in.</summary>
    public WeightLayout LayoutFor(TensorKind kind) => kind == TensorKind.Matrix ? MatrixLayout : WeightLayout.RowMajor;
}
