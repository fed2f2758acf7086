using System.CommandLine;
using System.Globalization;
using NativeGpt2.Loading;
using NativeGpt2.Safetensors;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 inspect --model SPEC [--json]</c>: config, parameter count, dtypes, tying, and the tensor table. A
/// <c>.safetensors</c> file on its own (a reference, or one shard) lists its metadata and tensors.
/// </summary>
internal static class InspectCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        model.Description += " Or a .safetensors file on its own: its metadata and tensors.";
        var json = CliJson.Option("the description ({\"model\", \"config\", \"parameters\", \"tied\", \"dtypes\", \"files\", \"tensors\", \"tokenizer\", \"problems\"}; config with config.json's names)");
        var command = new Command("inspect", "Show a model's config, parameter count, dtypes, head tying, tokenizer and tensors, and what keeps it from loading (reads no weights).") { model, json };
        command.SetAction(async (parse, cancellation) =>
        {
            var spec = parse.GetValue(model)!;
            if (spec.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) && File.Exists(spec))
            {
                using var file = SafetensorsFile.Open(Path.GetFullPath(spec));
                if (parse.GetValue(json)) WriteJson(file, context.Out);
                else Print(file, context.Out);
                return CliApp.Success;
            }
            var description = await Task.Run(() => ModelInspector.Inspect(parse.GetValue(model)!, context.LoadOptions, cancellation), cancellation);
            if (parse.GetValue(json)) WriteJson(description, context.Out);
            else Print(description, context.Out);
            if (description.Problems.Count == 0) return CliApp.Success;
            // Described in full, and still a failure: a script asking "will this load?" gets its answer from the exit code.
            context.Error.WriteLine($"error: {description.Source}: {description.Problems.Count} problem(s), listed under problems: the model would not load");
            return CliApp.BadInput;
        });
        return command;
    }

    /// <summary>How the scores are scaled before the softmax (<c>scale_attn_weights</c>, <c>scale_attn_by_inverse_layer_idx</c>).</summary>
    private static string AttentionScores(Gpt2Config c) => (c.ScaleAttentionWeights, c.ScaleAttentionByInverseLayerIndex) switch
    {
        (true, false) => "softmax(q·kᵀ / √HS)",
        (true, true) => "softmax(q·kᵀ / (√HS · (layer + 1)))  (scale_attn_by_inverse_layer_idx)",
        (false, true) => "softmax(q·kᵀ / (layer + 1))  (scale_attn_weights false, scale_attn_by_inverse_layer_idx)",
        (false, false) => "softmax(q·kᵀ), unscaled  (scale_attn_weights false)",
    };

    private static void WriteJson(ModelDescription d, TextWriter o)
    {
        var c = d.Config;
        CliJson.Write(o, new Dictionary<string, object?>
        {
            ["model"] = d.Source,
            ["config"] = new Dictionary<string, object?>
            {
                ["vocab_size"] = c.VocabSize, ["n_positions"] = c.ContextLength, ["n_embd"] = c.EmbeddingSize, ["n_layer"] = c.LayerCount,
                ["n_head"] = c.HeadCount, ["n_inner"] = c.InnerSize, ["activation_function"] = c.ActivationFunction,
                ["layer_norm_epsilon"] = c.LayerNormEpsilon, ["scale_attn_weights"] = c.ScaleAttentionWeights,
                ["scale_attn_by_inverse_layer_idx"] = c.ScaleAttentionByInverseLayerIndex, ["tie_word_embeddings"] = c.TieWordEmbeddings,
                ["bos_token_id"] = c.BosTokenId,
                ["eos_token_id"] = c.EosTokenId is null ? null : c.AdditionalEosTokenIds.Count == 0 ? c.EosTokenId : c.AdditionalEosTokenIds.Prepend(c.EosTokenId.Value).ToArray(),
                ["defaulted"] = c.DefaultedSizes.ToArray(),
            },
            ["head_size"] = c.HeadSize,
            ["parameters"] = c.ParameterCount,
            ["tied"] = d.IsTied,
            ["dtypes"] = d.WeightDTypes.ToArray(),
            ["files"] = d.Files.Select(f => new Dictionary<string, object?> { ["name"] = f.File, ["bytes"] = f.Bytes }).ToArray(),
            ["tensors"] = d.Tensors.Select(t => new Dictionary<string, object?>
            {
                ["name"] = t.StoredName, ["dtype"] = t.DType, ["shape"] = t.Shape, ["file"] = t.File, ["role"] = RoleName(t.Role),
            }).ToArray(),
            ["tokenizer"] = d.Tokenizer is null ? null : new Dictionary<string, object?> { ["source"] = d.Tokenizer, ["tokens"] = d.TokenizerTokens },
            ["problems"] = d.Problems.ToArray(),
        });
    }

    private static void WriteJson(SafetensorsFile file, TextWriter o) =>
        CliJson.Write(o, new Dictionary<string, object?>
        {
            ["file"] = file.Path,
            ["bytes"] = file.FileLength,
            ["metadata"] = file.Header.Metadata,
            ["tensors"] = file.Header.Tensors.Select(t => new Dictionary<string, object?>
            {
                ["name"] = t.Name, ["dtype"] = t.DType.ToString(), ["shape"] = t.Shape,
            }).ToArray(),
        });

    private static void Print(SafetensorsFile file, TextWriter o)
    {
        var n = CultureInfo.InvariantCulture;
        var tensors = file.Header.Tensors;
        o.WriteLine($"file      {file.Path} ({file.FileLength.ToString("N0", n)} bytes)");
        foreach (var (key, value) in file.Header.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal))
            o.WriteLine($"metadata  {key} = {value}");
        o.WriteLine($"tensors   {tensors.Count.ToString(n)}");
        if (tensors.Count == 0) return;
        o.WriteLine();
        var nameWidth = Math.Max(4, tensors.Max(t => t.Name.Length));
        o.WriteLine($"{"name".PadRight(nameWidth)}  {"dtype",-5}  shape");
        foreach (var t in tensors)
            o.WriteLine($"{t.Name.PadRight(nameWidth)}  {t.DType,-5}  {t.ShapeText}");
    }

    /// <summary>A tensor's role as <c>--json</c> spells it.</summary>
    private static string RoleName(TensorRole role) => role switch
    {
        TensorRole.Weight => "weight",
        TensorRole.IgnoredBuffer => "ignored_buffer",
        TensorRole.IgnoredTiedHead => "ignored_tied_head",
        _ => "unused",
    };

    private static void Print(ModelDescription d, TextWriter o)
    {
        var c = d.Config;
        var n = CultureInfo.InvariantCulture;
        o.WriteLine($"model         {d.Source}");
        o.WriteLine($"architecture  GPT-2  V={c.VocabSize}  context={c.ContextLength}  C={c.EmbeddingSize}  L={c.LayerCount}  NH={c.HeadCount}  HS={c.HeadSize}  inner={c.InnerSize}");
        if (c.DefaultedSizes.Count > 0)
            o.WriteLine($"defaults      {string.Join(", ", c.DefaultedSizes)} (left out of config.json: transformers' GPT-2 small values)");
        o.WriteLine($"activation    {c.ActivationFunction}, layer_norm_epsilon {c.LayerNormEpsilon.ToString(n)}");
        o.WriteLine($"attention     {AttentionScores(c)}");
        o.WriteLine($"parameters    {c.ParameterCount.ToString("N0", n)}");
        o.WriteLine($"head          {(d.IsTied ? "tied: logits = hidden · wteᵀ (wte read in place)" : "untied: its own lm_head.weight")}");
        o.WriteLine($"dtypes        {(d.WeightDTypes.Any() ? string.Join(", ", d.WeightDTypes) : "none")}");
        o.WriteLine($"special ids   bos={c.BosTokenId?.ToString(n) ?? "none"}  eos={(c.EosTokenId is null ? "none" : string.Join(",", c.AdditionalEosTokenIds.Prepend(c.EosTokenId.Value).Select(id => id.ToString(n))))}");
        o.WriteLine($"tokenizer     {d.Tokenizer switch
        {
            null => "none: text cannot be encoded, token ids only (--ids)",
            { } source when d.TokenizerTokens is { } tokens => $"{source}, {tokens.ToString("N0", n)} tokens",
            { } source => $"{source}, not readable (see problems)",
        }}");
        foreach (var (file, bytes) in d.Files)
            o.WriteLine($"file          {file} ({bytes.ToString("N0", n)} bytes)");
        o.WriteLine();

        static string Shape(TensorDescription t) => "[" + string.Join(", ", t.Shape) + "]";
        var nameWidth = d.Tensors.Select(t => t.StoredName.Length).Append(4).Max();
        var shapeWidth = d.Tensors.Select(t => Shape(t).Length).Append(5).Max();
        o.WriteLine($"{"name".PadRight(nameWidth)}  {"dtype",-5}  {"shape".PadRight(shapeWidth)}  note".TrimEnd());
        foreach (var t in d.Tensors)
        {
            var note = t.Role switch
            {
                TensorRole.IgnoredBuffer => "ignored: attention mask buffer",
                TensorRole.IgnoredTiedHead => "ignored: head is tied to wte",
                TensorRole.Unused => "ignored: not a GPT-2 weight",
                _ => d.Files.Count > 1 ? t.File : "",
            };
            o.WriteLine($"{t.StoredName.PadRight(nameWidth)}  {t.DType,-5}  {Shape(t).PadRight(shapeWidth)}  {note}".TrimEnd());
        }
        if (d.Tensors.Count == 0) o.WriteLine("(no tensors)");
        if (d.Problems.Count == 0) return;
        o.WriteLine();
        o.WriteLine($"problems      {d.Problems.Count.ToString(n)}: the model would not load");
        foreach (var problem in d.Problems)
            o.WriteLine($"  {problem}");
    }
}
