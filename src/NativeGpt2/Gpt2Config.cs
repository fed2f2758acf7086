using System.Text.Json;

namespace NativeGpt2;

/// <summary>
/// The architecture of a GPT-2 model, read from a Hugging Face <c>config.json</c>.
/// Sizes use one vocabulary throughout the code: V (vocabulary), C (channels, <c>n_embd</c>),
/// NH (heads), HS (head size = C / NH), L (layers) and the context length (<c>n_positions</c>).
/// </summary>
public sealed record Gpt2Config
{
    /// <summary>Largest vocabulary accepted; anything bigger is treated as a corrupt config, not allocated.</summary>
    public const int MaxVocabSize = 4_000_000;
    /// <summary>Largest context length accepted.</summary>
    public const int MaxContextLength = 1 << 20;
    /// <summary>Largest channel count accepted.</summary>
    public const int MaxEmbeddingSize = 1 << 16;
    /// <summary>Largest layer count accepted.</summary>
    public const int MaxLayerCount = 1024;
    /// <summary>Largest parameter count accepted (about 68 billion, far above any GPT-2).</summary>
    public const long MaxParameterCount = 1L << 36;

    /// <summary>V: number of token ids (<c>vocab_size</c>).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Maximum sequence length, the rows of the position embedding (<c>n_positions</c>).</summary>
    public required int ContextLength { get; init; }

    /// <summary>C: channels of the residual stream (<c>n_embd</c>).</summary>
    public required int EmbeddingSize { get; init; }

    /// <summary>L: number of transformer blocks (<c>n_layer</c>).</summary>
    public required int LayerCount { get; init; }

    /// <summary>NH: attention heads per block (<c>n_head</c>).</summary>
    public required int HeadCount { get; init; }

    /// <summary>Hidden width of the MLP (<c>n_inner</c>; 4·C when the config leaves it null).</summary>
    public required int InnerSize { get; init; }

    /// <summary>LayerNorm epsilon (<c>layer_norm_epsilon</c>).</summary>
    public double LayerNormEpsilon { get; init; } = 1e-5;

    /// <summary>
    /// The MLP activation's name in config.json (<c>activation_function</c>): GPT-2's <c>gelu_new</c>, or another of
    /// <see cref="MlpActivations.ByName"/>.
    /// </summary>
    public string ActivationFunction { get; init; } = "gelu_new";

    /// <summary>What <see cref="ActivationFunction"/> computes.</summary>
    /// <exception cref="KeyNotFoundException">The name is not one of <see cref="SupportedActivations"/> (<see cref="Validate"/> reports it).</exception>
    public MlpActivation Activation => MlpActivations.ByName[ActivationFunction];

    /// <summary>Whether attention scores are divided by √HS (<c>scale_attn_weights</c>; GPT-2 does).</summary>
    public bool ScaleAttentionWeights { get; init; } = true;

    /// <summary>
    /// Whether layer l's attention scores are also divided by l + 1 (<c>scale_attn_by_inverse_layer_idx</c>, as Stanford
    /// CRFM's GPT-2 runs trained); GPT-2 does not.
    /// </summary>
    public bool ScaleAttentionByInverseLayerIndex { get; init; }

    /// <summary>The factor on q·k before layer <paramref name="layer"/>'s softmax: 1/√HS for GPT-2, with the flags above.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="layer"/> is not in [0, L).</exception>
    public float AttentionScale(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, LayerCount);
        return (float)((ScaleAttentionWeights ? 1.0 / Math.Sqrt(HeadSize) : 1.0) / (ScaleAttentionByInverseLayerIndex ? layer + 1 : 1));
    }

    /// <summary>Whether the LM head reads the token-embedding matrix (<c>tie_word_embeddings</c>).</summary>
    public bool TieWordEmbeddings { get; init; } = true;

    /// <summary>Beginning-of-sequence token id (<c>bos_token_id</c>; a checkpoint's generation_config.json's when it gives one), if any.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>
    /// End-of-sequence token id (<c>eos_token_id</c>, the first when it is a list; a checkpoint's generation_config.json's
    /// when it gives one, as transformers' <c>generate</c> uses), if any: where an empty prompt starts.
    /// </summary>
    public int? EosTokenId { get; init; }

    /// <summary>
    /// Further ids that end a sequence as <see cref="EosTokenId"/> does: the rest of <c>eos_token_id</c> when config.json
    /// gives a list, as transformers allows (generation stops at any of them).
    /// </summary>
    public IReadOnlyList<int> AdditionalEosTokenIds { get; init; } = [];

    /// <summary>
    /// The sizes config.json left out, each with the default it took (e.g. <c>n_positions 1024</c>), as transformers
    /// fills them from GPT-2 small's: named when the weights disagree with them.
    /// </summary>
    public IReadOnlyList<string> DefaultedSizes { get; init; } = [];

    /// <summary>The most ids <c>eos_token_id</c> may list.</summary>
    public const int MaxEosTokenIds = 64;

    /// <summary>HS: channels per attention head.</summary>
    public int HeadSize => EmbeddingSize / HeadCount;

    /// <summary>Number of parameters, counting a tied head once.</summary>
    public long ParameterCount
    {
        get
        {
            long c = EmbeddingSize, inner = InnerSize;
            var perLayer = 2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * inner + inner) + (inner * c + c);
            var embeddings = (long)VocabSize * c + (long)ContextLength * c;
            var head = TieWordEmbeddings ? 0 : (long)VocabSize * c;
            return embeddings + LayerCount * perLayer + 2 * c + head;
        }
    }

    /// <summary>The <c>activation_function</c> names this engine computes (<see cref="MlpActivations.Supported"/>), GPT-2's first.</summary>
    public static IReadOnlyList<string> SupportedActivations { get; } = [.. MlpActivations.Supported.Select(s => s.Name)];

    /// <summary>GPT-2 small (124M): 768 channels, 12 layers, 12 heads.</summary>
    public static Gpt2Config Gpt2Small => Preset(768, 12, 12);

    /// <summary>GPT-2 medium (355M): 1024 channels, 24 layers, 16 heads.</summary>
    public static Gpt2Config Gpt2Medium => Preset(1024, 24, 16);

    /// <summary>GPT-2 large (774M): 1280 channels, 36 layers, 20 heads.</summary>
    public static Gpt2Config Gpt2Large => Preset(1280, 36, 20);

    /// <summary>GPT-2 XL (1.5B): 1600 channels, 48 layers, 25 heads.</summary>
    public static Gpt2Config Gpt2XL => Preset(1600, 48, 25);

    private static Gpt2Config Preset(int c, int layers, int heads) => new()
    {
        VocabSize = 50257,
        ContextLength = 1024,
        EmbeddingSize = c,
        LayerCount = layers,
        HeadCount = heads,
        InnerSize = 4 * c,
        BosTokenId = 50256,
        EosTokenId = 50256,
    };

    /// <summary>Reads and validates a <c>config.json</c>.</summary>
    /// <exception cref="ModelFormatException">The file is missing, not a regular file, larger than 1 MiB, malformed JSON, a field has the wrong type, or the sizes are invalid.</exception>
    public static Gpt2Config Load(string path) => Load(path, checkpoint: null);

    /// <summary>Reads a <c>config.json</c> that must not be a link leaving <paramref name="checkpoint"/>.</summary>
    internal static Gpt2Config Load(string path, string? checkpoint) =>
        Parse(Loading.ModelFiles.ReadBounded(path, Loading.ModelFiles.MaxConfigBytes, checkpoint), path);

    /// <summary>Parses and validates <c>config.json</c> content; <paramref name="path"/> names it in errors.</summary>
    public static Gpt2Config Parse(ReadOnlySpan<byte> json, string path)
    {
        using (var document = Loading.JsonFile.ParseFile(json.ToArray(), path))
        {
            var reader = ConfigReader.Of(document, path);

            var modelType = reader.String("model_type");
            if (modelType is not null && modelType != "gpt2")
                throw new ModelFormatException(path, "model_type", $"'{modelType}' is not 'gpt2'");
            // reorder_and_upcast_attn upcasts attention to float32 for mixed-precision training, the same math in another
            // order, and this engine's attention is float32 throughout: either value is this model.
            _ = reader.Bool("reorder_and_upcast_attn");
            if (reader.Bool("add_cross_attention") is true)
                throw new ModelFormatException(path, "add_cross_attention", "true is not supported (only GPT-2's default, false): cross-attention needs an encoder");

            // As transformers reads the file: a size left out takes GPT2Config's default (GPT-2 small's), and the names
            // of its attribute_map (hidden_size, max_position_embeddings, num_hidden_layers, num_attention_heads) stand
            // for GPT-2's own.
            var small = Gpt2Small;
            var defaulted = new List<string>();
            var c = reader.Size("n_embd", "hidden_size", small.EmbeddingSize, defaulted);
            var vocabSize = reader.Size("vocab_size", alias: null, small.VocabSize, defaulted);
            // bos_token_id and eos_token_id default to GPT-2's <|endoftext|> (50256) where the vocabulary has it; an
            // explicit null means none.
            var bos = reader.Present("bos_token_id") ? reader.Int("bos_token_id") : DefaultSpecialToken(vocabSize);
            var eos = reader.Present("eos_token_id") ? reader.IntOrInts("eos_token_id", MaxEosTokenIds) : DefaultSpecialToken(vocabSize) is { } id ? [id] : [];
            var config = new Gpt2Config
            {
                VocabSize = vocabSize,
                ContextLength = reader.Size("n_positions", "max_position_embeddings", small.ContextLength, defaulted),
                EmbeddingSize = c,
                LayerCount = reader.Size("n_layer", "num_hidden_layers", small.LayerCount, defaulted),
                HeadCount = reader.Size("n_head", "num_attention_heads", small.HeadCount, defaulted),
                // n_inner null means 4·C; an out-of-range C is reported by Validate, so it must not overflow here.
                InnerSize = reader.Int("n_inner") ?? (c is > 0 and <= MaxEmbeddingSize ? 4 * c : 0),
                LayerNormEpsilon = reader.Double("layer_norm_epsilon") ?? 1e-5,
                ActivationFunction = reader.String("activation_function") ?? "gelu_new",
                TieWordEmbeddings = reader.Bool("tie_word_embeddings") ?? true,
                ScaleAttentionWeights = reader.Bool("scale_attn_weights") ?? true,
                ScaleAttentionByInverseLayerIndex = reader.Bool("scale_attn_by_inverse_layer_idx") ?? false,
                BosTokenId = bos,
                EosTokenId = eos.Count > 0 ? eos[0] : null,
                AdditionalEosTokenIds = AfterTheFirst(eos),
                DefaultedSizes = defaulted.Count == 0 ? [] : defaulted.ToArray(),
            };
            config.Validate(path);
            return config;
        }
    }

    /// <summary>
    /// This config with the special ids a <c>generation_config.json</c> gives (<c>bos_token_id</c>, <c>eos_token_id</c>,
    /// an id or a list), which are the ones transformers' <c>generate</c> uses; an id the file leaves out or writes as
    /// null stays config.json's. Its other fields (sampling defaults and the like) are not read. The loader skips, with a
    /// warning, a file this refuses.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is not a JSON object, or an id is malformed or outside the vocabulary.</exception>
    internal Gpt2Config WithGenerationConfig(ReadOnlySpan<byte> json, string path)
    {
        using var document = Loading.JsonFile.ParseFile(json.ToArray(), path);
        var reader = ConfigReader.Of(document, path);
        var eos = reader.IntOrInts("eos_token_id", MaxEosTokenIds);
        var config = this with
        {
            BosTokenId = reader.Int("bos_token_id") ?? BosTokenId,
            EosTokenId = eos.Count > 0 ? eos[0] : EosTokenId,
            AdditionalEosTokenIds = eos.Count > 0 ? AfterTheFirst(eos) : AdditionalEosTokenIds,
        };
        config.Validate(path);
        return config;
    }

    /// <summary>The ids of an <c>eos_token_id</c> list after its first, each once and none equal to the first.</summary>
    private static int[] AfterTheFirst(IReadOnlyList<int> eos) => eos.Skip(1).Where(id => id != eos[0]).Distinct().ToArray();

    /// <summary>transformers' default bos_token_id and eos_token_id, <c>&lt;|endoftext|&gt;</c>, when the vocabulary has that id.</summary>
    private static int? DefaultSpecialToken(int vocabSize) => EndOfTextTokenId < vocabSize ? EndOfTextTokenId : null;

    /// <summary>GPT-2's <c>&lt;|endoftext|&gt;</c> id, its bos and eos token.</summary>
    private const int EndOfTextTokenId = 50256;

    /// <summary>
    /// Checks that the sizes describe a GPT-2 that can be built: everything positive, C divisible by NH,
    /// nothing absurdly large, every weight matrix small enough for one .NET array.
    /// </summary>
    /// <param name="source">Names the config in errors (a path, or a synthetic model name).</param>
    /// <exception cref="ModelFormatException">A size is invalid; the message names the field.</exception>
    public void Validate(string source)
    {
        Positive("vocab_size", VocabSize, MaxVocabSize);
        Positive("n_positions", ContextLength, MaxContextLength);
        Positive("n_embd", EmbeddingSize, MaxEmbeddingSize);
        Positive("n_layer", LayerCount, MaxLayerCount);
        Positive("n_head", HeadCount, EmbeddingSize);
        Positive("n_inner", InnerSize, 16 * MaxEmbeddingSize);
        if (EmbeddingSize % HeadCount != 0)
            throw new ModelFormatException(source, "n_head", $"n_embd {EmbeddingSize} is not divisible by n_head {HeadCount}");
        if (!(LayerNormEpsilon > 0) || double.IsInfinity(LayerNormEpsilon))
            throw new ModelFormatException(source, "layer_norm_epsilon", $"must be a positive finite number, found {LayerNormEpsilon}");
        if (!SupportedActivations.Contains(ActivationFunction))
            throw new ModelFormatException(source, "activation_function", $"'{ActivationFunction}' is not supported (supported: {string.Join(", ", SupportedActivations)})");
        foreach (var (field, rows, cols) in new[] { ("vocab_size", (long)VocabSize, (long)EmbeddingSize), ("n_positions", ContextLength, EmbeddingSize), ("n_inner", EmbeddingSize, InnerSize) })
        {
            if (rows * cols > Array.MaxLength)
                throw new ModelFormatException(source, field, $"a [{rows}, {cols}] weight matrix exceeds the largest .NET array");
        }
        if ((long)EmbeddingSize * 3 * EmbeddingSize > Array.MaxLength)
            throw new ModelFormatException(source, "n_embd", $"the [{EmbeddingSize}, {3 * EmbeddingSize}] attention weight exceeds the largest .NET array");
        if (ParameterCount > MaxParameterCount)
            throw new ModelFormatException(source, null, $"{ParameterCount} parameters exceed the limit of {MaxParameterCount}");
        if (AdditionalEosTokenIds is null || 1 + AdditionalEosTokenIds.Count > MaxEosTokenIds)
            throw new ModelFormatException(source, "eos_token_id", $"must list between 1 and {MaxEosTokenIds} ids");
        foreach (var (field, id) in new[] { ("bos_token_id", BosTokenId), ("eos_token_id", EosTokenId) }
                     .Concat(AdditionalEosTokenIds.Select(id => ("eos_token_id", (int?)id))))
        {
            if (id is { } value && (value < 0 || value >= VocabSize))
                throw new ModelFormatException(source, field, $"{value} is outside the vocabulary [0, {VocabSize})");
        }

        void Positive(string field, int value, int max)
        {
            if (value <= 0 || value > max)
                throw new ModelFormatException(source, field, $"must be in [1, {max}], found {value}");
        }
    }

    private readonly struct ConfigReader(JsonElement root, string path)
    {
        /// <summary>A reader of the document's top-level object; <paramref name="path"/> names the file in errors.</summary>
        /// <exception cref="ModelFormatException">The document is not a JSON object.</exception>
        public static ConfigReader Of(JsonDocument document, string path) =>
            document.RootElement.ValueKind == JsonValueKind.Object
                ? new ConfigReader(document.RootElement, path)
                : throw new ModelFormatException(path, null, $"must be a JSON object, found {document.RootElement.ValueKind}");

        /// <summary>Whether the field is in the file at all (null included).</summary>
        public bool Present(string name) => root.TryGetProperty(name, out _);

        /// <summary>
        /// A size: the field, else its <paramref name="alias"/> (refused when both are there and differ), else
        /// <paramref name="fallback"/>, recorded in <paramref name="defaulted"/>. A size written as null is refused:
        /// transformers would fail on it too.
        /// </summary>
        public int Size(string name, string? alias, int fallback, List<string> defaulted)
        {
            var value = SizeField(name);
            var aliased = alias is null ? null : SizeField(alias);
            if (value is { } v && aliased is { } a && v != a)
                throw new ModelFormatException(path, alias, $"{a} contradicts {name} {v} (both name the same size)");
            if ((value ?? aliased) is { } found) return found;
            defaulted.Add($"{name} {fallback}");
            return fallback;
        }

        private int? SizeField(string name)
        {
            if (root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Null)
                throw new ModelFormatException(path, name, "must be an integer, found null");
            return Int(name);
        }

        /// <summary>An integer field; null when it is absent or null.</summary>
        public int? Int(string name)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind != JsonValueKind.Number)
                throw new ModelFormatException(path, name, $"must be an integer, found {value.ValueKind} {value.GetRawText()}");
            if (value.TryGetInt32(out var result)) return result;
            // A value like 768.0 is an integer written as a float; anything else is not.
            if (value.TryGetDouble(out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue) return (int)d;
            throw new ModelFormatException(path, name, $"must be a 32-bit integer, found {value.GetRawText()}");
        }

        /// <summary>An integer, or a list of at most <paramref name="max"/> of them (empty when absent or null).</summary>
        public IReadOnlyList<int> IntOrInts(string name, int max)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.Array)
                return Int(name) is { } single ? [single] : [];
            var count = value.GetArrayLength();
            if (count == 0 || count > max)
                throw new ModelFormatException(path, name, $"must list between 1 and {max} ids, found {count}");
            var ids = new int[count];
            var i = 0;
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[i]))
                    throw new ModelFormatException(path, name, $"must be an integer or a list of integers, found {item.GetRawText()} at index {i}");
                i++;
            }
            return ids;
        }

        public double? Double(string name)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var result))
                throw new ModelFormatException(path, name, $"must be a number, found {value.ValueKind} {value.GetRawText()}");
            return result;
        }

        public bool? Bool(string name)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            return value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ModelFormatException(path, name, $"must be true or false, found {value.GetRawText()}"),
            };
        }

        public string? String(string name)
        {
            if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
            if (value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(path, name, $"must be a string, found {value.ValueKind} {value.GetRawText()}");
            return value.GetString();
        }
    }
}
