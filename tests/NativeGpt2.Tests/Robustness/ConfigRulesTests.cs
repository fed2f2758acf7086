using System.Text;
using System.Text.Json.Nodes;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

public class ConfigRulesTests
{
    private static readonly string TinyConfig = File.ReadAllText(Path.Combine(Paths.Model("tiny"), "config.json"));

    private static ModelFormatException Rejects(Action<JsonObject> edit, string field)
    {
        var config = JsonNode.Parse(TinyConfig)!.AsObject();
        edit(config);
        var error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2Config.Parse(Encoding.UTF8.GetBytes(config.ToJsonString()), "config.json"));
        Assert.Equal("config.json", error.FilePath);
        Assert.Equal(field, error.Field);
        Assert.StartsWith($"config.json: {field}: ", error.Message);
        return error;
    }

    [Fact]
    public void N_embd_not_divisible_by_n_head() =>
        Assert.Contains("not divisible", Rejects(c => c["n_head"] = 5, "n_head").Message);

    [Theory]
    [InlineData("vocab_size", 0)]
    [InlineData("n_positions", -1)]
    [InlineData("n_embd", 0)]
    [InlineData("n_layer", -3)]
    [InlineData("n_head", 0)]
    [InlineData("n_inner", 0)]
    public void Zero_or_negative_sizes(string field, int value) => Rejects(c => c[field] = value, field);

    [Theory]
    [InlineData("vocab_size", 2_000_000_000)]
    [InlineData("n_positions", 100_000_000)]
    [InlineData("n_embd", 1_000_000)]
    [InlineData("n_layer", 100_000)]
    public void Absurd_sizes_are_rejected_before_anything_is_allocated(string field, int value) => Rejects(c => c[field] = value, field);

    [Fact]
    public void A_parameter_count_beyond_any_gpt2_is_rejected()
    {
        // Each size is allowed on its own; together they describe a model no machine holds.
        var config = JsonNode.Parse(TinyConfig)!.AsObject();
        config["n_embd"] = 32768;
        config["n_head"] = 64;
        config["n_layer"] = 1000;
        config["vocab_size"] = 60000;
        var error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2Config.Parse(Encoding.UTF8.GetBytes(config.ToJsonString()), "config.json"));
        Assert.Contains("exceed", error.Message);
    }

    [Theory]
    [InlineData("gelu_10")]
    [InlineData("tanh")]
    [InlineData("Gelu_New")]
    [InlineData("")]
    public void Unknown_or_unsupported_activation(string activation)
    {
        var message = Rejects(c => c["activation_function"] = activation, "activation_function").Message;
        Assert.Contains($"'{activation}' is not supported", message);
        Assert.Contains("gelu_new", message);
        Assert.Contains("quick_gelu", message);
    }

    [Theory]
    [InlineData("n_embd", "\"32\"")]
    [InlineData("n_layer", "2.5")]
    [InlineData("vocab_size", "true")]
    [InlineData("layer_norm_epsilon", "\"small\"")]
    [InlineData("tie_word_embeddings", "1")]
    [InlineData("activation_function", "7")]
    [InlineData("n_head", "[4]")]
    public void Wrong_json_types(string field, string json) => Rejects(c => c[field] = JsonNode.Parse(json), field);

    private static Gpt2Config Parse(string json) => Gpt2Config.Parse(Encoding.UTF8.GetBytes(json), "config.json");

    [Fact]
    public void Sizes_left_out_take_the_defaults_transformers_gives_them()
    {
        // transformers' GPT2Config fills what config.json leaves out with GPT-2 small's values, <|endoftext|> included.
        var empty = Parse("{}");
        var small = Gpt2Config.Gpt2Small;
        Assert.Equal((small.VocabSize, small.ContextLength, small.EmbeddingSize, small.LayerCount, small.HeadCount, small.InnerSize),
            (empty.VocabSize, empty.ContextLength, empty.EmbeddingSize, empty.LayerCount, empty.HeadCount, empty.InnerSize));
        Assert.Equal((50256, 50256), (empty.BosTokenId, empty.EosTokenId));
        Assert.Equal(["n_embd 768", "vocab_size 50257", "n_positions 1024", "n_layer 12", "n_head 12"], empty.DefaultedSizes);
        Assert.Equal(1e-5, empty.LayerNormEpsilon);
        Assert.Equal("gelu_new", empty.ActivationFunction);

        // <|endoftext|>'s id only where the vocabulary has it; null says "none" outright.
        var small66 = Parse("""{"vocab_size": 66, "n_embd": 32, "n_head": 4}""");
        Assert.Null(small66.BosTokenId);
        Assert.Null(small66.EosTokenId);
        Assert.Equal(["n_positions 1024", "n_layer 12"], small66.DefaultedSizes);
        var none = Parse("""{"bos_token_id": null, "eos_token_id": null}""");
        Assert.Null(none.BosTokenId);
        Assert.Null(none.EosTokenId);
        Assert.Empty(Parse(TinyConfig).DefaultedSizes);
        // A config is a value: the same file parses to equal records.
        Assert.Equal(Parse(TinyConfig), Parse(TinyConfig));
    }

    [Fact]
    public void The_attribute_map_names_of_the_sizes_load_the_same_model()
    {
        // hidden_size, max_position_embeddings, num_hidden_layers and num_attention_heads are transformers' other names
        // for n_embd, n_positions, n_layer and n_head.
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        foreach (var (name, alias) in new[] { ("n_embd", "hidden_size"), ("n_positions", "max_position_embeddings"), ("n_layer", "num_hidden_layers"), ("n_head", "num_attention_heads") })
        {
            builder.Config[alias] = builder.Config[name]!.DeepClone();
            builder.Config.Remove(name);
        }
        using var model = Gpt2CausalLM.Load(builder.WriteTo(temp.Path), new ModelLoadOptions { Backend = "cpu" });
        Assert.Equal((32, 128, 2, 4), (model.Config.EmbeddingSize, model.Config.ContextLength, model.Config.LayerCount, model.Config.HeadCount));
        int[] ids = [5, 17, 301, 42];
        Assert.Equal(Models.Get("tiny").Forward(TokenBatch.FromIds(ids)).Logits.Data, model.Forward(TokenBatch.FromIds(ids)).Logits.Data);

        // Both names at once: the same value is one size; different values contradict each other.
        Assert.Equal(32, Parse("""{"n_embd": 32, "hidden_size": 32, "n_head": 4}""").EmbeddingSize);
        Assert.Contains("64 contradicts n_embd 32", Rejects(c => c["hidden_size"] = 64, "hidden_size").Message);
        Rejects(c => c["num_hidden_layers"] = 3, "num_hidden_layers");
    }

    [Theory]
    [InlineData("n_layer")]
    [InlineData("vocab_size")]
    [InlineData("max_position_embeddings")]
    public void A_size_written_as_null_is_refused(string field) =>
        Assert.Contains("must be an integer, found null", Rejects(c => c[field] = null, field).Message);

    [Fact]
    public void Sizes_left_out_that_the_tensors_contradict_are_named_with_the_defaults_they_took()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config.Remove("n_positions");
        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(builder.WriteTo(temp.Path)));
        Assert.Contains(error.Problems, p => p.StartsWith("wpe.weight: shape [128, 32]") && p.Contains("expected [1024, 32]"));
        Assert.Single(error.Problems);
        Assert.EndsWith($"{Environment.NewLine}config.json leaves out n_positions 1024: those are transformers' defaults (GPT-2 small's); write this checkpoint's sizes into it", error.Message);
    }

    [Fact]
    public void Not_a_gpt2_model() => Rejects(c => c["model_type"] = "llama", "model_type");

    [Fact]
    public void Cross_attention_is_rejected() => Rejects(c => c["add_cross_attention"] = true, "add_cross_attention");

    /// <summary>
    /// tiny with layer l's query projection (c_attn's first C columns and biases) multiplied by <paramref name="factor"/>(l):
    /// the same attention scores as scaling them.
    /// </summary>
    private static CheckpointBuilder TinyWithQueriesScaled(Func<int, double> factor)
    {
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        const int C = 32;
        for (var l = 0; l < 2; l++)
        {
            var f = (float)factor(l);
            var weight = builder.Tensors.Single(t => t.Name == $"transformer.h.{l}.attn.c_attn.weight");
            var w = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(weight.Data.AsSpan());
            for (var i = 0; i < C; i++)
                for (var o = 0; o < C; o++) w[i * 3 * C + o] *= f;
            var bias = builder.Tensors.Single(t => t.Name == $"transformer.h.{l}.attn.c_attn.bias");
            var b = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bias.Data.AsSpan());
            for (var o = 0; o < C; o++) b[o] *= f;
        }
        return builder;
    }

    [Theory]
    [InlineData("scale_attn_by_inverse_layer_idx", true)]
    [InlineData("scale_attn_weights", false)]
    public void Attention_scaled_by_the_layer_index_or_not_at_all_equals_the_queries_scaled_so(string field, bool value)
    {
        // Stanford CRFM's GPT-2 runs divide layer l's scores by l + 1 as well; scale_attn_weights: false leaves out 1/√HS.
        using var flagged = new TempDirectory();
        using var scaled = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config[field] = value;
        using var byFlag = Gpt2CausalLM.Load(builder.WriteTo(flagged.Path), new ModelLoadOptions { Backend = "cpu" });
        using var byWeights = Gpt2CausalLM.Load(TinyWithQueriesScaled(l => field == "scale_attn_weights" ? Math.Sqrt(8) : 1.0 / (l + 1)).WriteTo(scaled.Path),
            new ModelLoadOptions { Backend = "cpu" });
        Assert.Equal(field == "scale_attn_weights" ? 1f : 1f / MathF.Sqrt(8) / 2, byFlag.Config.AttentionScale(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => byFlag.Config.AttentionScale(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => byFlag.Config.AttentionScale(2));

        int[] ids = [5, 17, 301, 42, 7, 99, 250];
        var expected = byWeights.Forward(TokenBatch.FromIds(ids)).Logits.Data;
        var actual = byFlag.Forward(TokenBatch.FromIds(ids)).Logits.Data;
        Numerics.AssertClose(expected, actual, Tolerances.SmallModel, field);
        // And not the model without the flag.
        var plain = Models.Get("tiny").Forward(TokenBatch.FromIds(ids)).Logits.Data;
        Assert.True(plain.Zip(actual).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "the flag changed nothing");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Upcasting_attention_for_mixed_precision_is_the_same_model(bool upcast)
    {
        // reorder_and_upcast_attn only moves a float16 training run's attention to float32: here it is float32 already.
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["reorder_and_upcast_attn"] = upcast;
        using var model = Gpt2CausalLM.Load(builder.WriteTo(temp.Path), new ModelLoadOptions { Backend = "cpu" });
        int[] ids = [1, 2, 3, 4];
        Assert.Equal(Models.Get("tiny").Forward(TokenBatch.FromIds(ids)).Logits.Data, model.Forward(TokenBatch.FromIds(ids)).Logits.Data);
        var error = Assert.ThrowsAny<ModelFormatException>(() => { builder.Config["reorder_and_upcast_attn"] = "yes"; Gpt2CausalLM.Load(builder.WriteTo(temp.Path)); });
        Assert.Contains("reorder_and_upcast_attn", error.Message);
    }

    [Fact]
    public void Special_token_ids_outside_the_vocabulary() => Rejects(c => c["eos_token_id"] = 512, "eos_token_id");

    [Theory]
    [InlineData("[]", "between 1 and 64")]
    [InlineData("[5, \"x\"]", "at index 1")]
    [InlineData("[5, 1.5]", "at index 1")]
    [InlineData("[5, 512]", "outside the vocabulary")]
    [InlineData("{\"id\": 5}", "must be an integer")]
    public void A_malformed_list_of_end_ids(string json, string problem) =>
        Assert.Contains(problem, Rejects(c => c["eos_token_id"] = JsonNode.Parse(json), "eos_token_id").Message);

    [Fact]
    public void Too_many_end_ids() =>
        Assert.Contains("between 1 and 64", Rejects(c => c["eos_token_id"] = new JsonArray(Enumerable.Range(0, 65).Select(i => (JsonNode?)i).ToArray()), "eos_token_id").Message);

    /// <summary>tiny's greedy continuation of a prompt that runs to its length: what the end-id tests then stop early.</summary>
    private static (int[] Prompt, GenerationOptions Greedy, GenerationResult Free) GreedyRunToTheLength()
    {
        int[] prompt = [5, 17, 301];
        var greedy = new GenerationOptions { Greedy = true, MaxNewTokens = 8 };
        var free = Models.Get("tiny").GenerateIds(prompt, greedy);
        Assert.Equal(FinishReason.Length, free.FinishReason);
        return (prompt, greedy, free);
    }

    [Fact]
    public void A_list_of_end_ids_ends_generation_at_any_of_them()
    {
        // transformers lets eos_token_id be a list; the first is where an empty prompt starts, and any ends a sequence.
        var (prompt, greedy, free) = GreedyRunToTheLength();
        // The first generated token becomes a second end id.
        const int at = 0;
        var end = free.GeneratedIds[at];
        Assert.NotEqual(511, end);

        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["eos_token_id"] = new JsonArray(511, end, 511);
        using var model = Gpt2CausalLM.Load(builder.WriteTo(temp.Path), new ModelLoadOptions { Backend = "cpu" });
        Assert.Equal(511, model.Config.EosTokenId);
        Assert.Equal([end], model.Config.AdditionalEosTokenIds);
        var stopped = model.GenerateIds(prompt, greedy);
        Assert.Equal(FinishReason.EndOfText, stopped.FinishReason);
        Assert.Equal(free.GeneratedIds.Take(at + 1), stopped.GeneratedIds);
        Assert.Equal(free.GeneratedIds, model.GenerateIds(prompt, greedy with { StopAtEndOfText = false }).GeneratedIds);
    }

    [Fact]
    public void Generation_config_json_gives_the_special_ids_generation_uses()
    {
        // transformers' generate takes bos_token_id and eos_token_id from generation_config.json, which a fine-tune may
        // set apart from config.json's (e.g. an added end-of-turn token).
        var (prompt, greedy, free) = GreedyRunToTheLength();
        var end = free.GeneratedIds[0];
        Assert.DoesNotContain(511, free.GeneratedIds);

        using var temp = new TempDirectory();
        var directory = CheckpointBuilder.From(Paths.Model("tiny")).WriteTo(temp.Path);
        var generationConfig = Path.Combine(directory, "generation_config.json");
        File.WriteAllText(generationConfig, $$"""{"_from_model_config": false, "bos_token_id": 3, "eos_token_id": [{{end}}, 511], "do_sample": true}""");
        using (var model = Gpt2CausalLM.Load(directory, new ModelLoadOptions { Backend = "cpu" }))
        {
            Assert.Equal((3, end), (model.Config.BosTokenId, model.Config.EosTokenId));
            Assert.Equal([511], model.Config.AdditionalEosTokenIds);
            var stopped = model.GenerateIds(prompt, greedy);
            Assert.Equal(FinishReason.EndOfText, stopped.FinishReason);
            Assert.Equal(free.GeneratedIds.Take(1), stopped.GeneratedIds);
        }

        // Ids the file leaves out or writes as null stay config.json's.
        File.WriteAllText(generationConfig, """{"bos_token_id": null, "max_length": 50}""");
        using (var model = Gpt2CausalLM.Load(directory, new ModelLoadOptions { Backend = "cpu" }))
        {
            Assert.Equal((511, 511), (model.Config.BosTokenId, model.Config.EosTokenId));
            Assert.Empty(model.Config.AdditionalEosTokenIds);
        }
    }

    [Theory]
    [InlineData("[1, 2]", null, "must be a JSON object")]
    [InlineData("{\"eos_token_id\": 512}", "eos_token_id", "outside the vocabulary")]
    [InlineData("{\"bos_token_id\": \"a\"}", "bos_token_id", "must be an integer")]
    [InlineData("{\"eos_token_id\": [1, \"x\"]}", "eos_token_id", "at index 1")]
    [InlineData("{\"eos_token_id\": 1,", null, "not valid JSON")]
    public void A_generation_config_json_that_cannot_be_used_is_skipped_with_a_warning_naming_it(string json, string? field, string problem)
    {
        // As transformers falls back to the model's config: the weights are sound, so the model loads with config.json's ids.
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["eos_token_id"] = 7;
        var directory = builder.WriteTo(temp.Path);
        var path = Path.Combine(directory, "generation_config.json");
        File.WriteAllText(path, json);
        var logs = new CapturingLoggerProvider();
        using var model = Gpt2CausalLM.Load(directory, new ModelLoadOptions { Backend = "cpu", Logger = logs.CreateLogger("test") });
        Assert.Equal(7, model.Config.EosTokenId);
        var warning = Assert.Single(logs.Messages, m => m.Contains("generation_config.json"));
        Assert.StartsWith(field is null ? $"{path}: " : $"{path}: {field}: ", warning);
        Assert.Contains(problem, warning);
        Assert.EndsWith("using config.json's special ids instead", warning);
    }

    [Fact]
    public void Malformed_json_names_the_file()
    {
        var error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2Config.Parse("{\"n_embd\": 32,"u8, "config.json"));
        Assert.Contains("not valid JSON", error.Message);
    }

    [Fact]
    public void Vocab_size_different_from_the_embedding_rows()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["vocab_size"] = 500;
        builder.Config["bos_token_id"] = 0;
        builder.Config["eos_token_id"] = 0;
        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(builder.WriteTo(temp.Path)));
        Assert.Contains(error.Problems, p => p.StartsWith("wte.weight: shape [512, 32]") && p.Contains("config vocab_size 500"));
    }

    [Fact]
    public void Vocab_size_different_from_vocab_json()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.WriteTo(temp.Path);
        // shakespeare-char's 66-token vocabulary next to a 512-token model.
        File.Copy(Path.Combine(Paths.Model("shakespeare-char"), "vocab.json"), temp.File("vocab.json"));
        File.Copy(Path.Combine(Paths.Model("shakespeare-char"), "merges.txt"), temp.File("merges.txt"));
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(temp.Path));
        Assert.Equal(temp.File("vocab.json"), error.FilePath);
        Assert.Contains("vocab_size is 512: more rows than padding explains (at most 255); is this another model's tokenizer?", error.Message);
    }
}
