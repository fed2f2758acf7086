using NativeGpt2.Safetensors;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Loading;

public class CheckpointLoadingTests
{
    private static Gpt2CausalLM Tiny => Models.Get("tiny");

    [Theory]
    [InlineData("tiny-hub")]
    [InlineData("tiny-sharded")]
    public void Every_float32_layout_loads_the_same_weights_as_tiny(string layout)
    {
        var model = Models.Get(layout);
        var expected = Tiny.Backbone.Weights.All.ToList();
        var actual = model.Backbone.Weights.All.ToList();
        Assert.Equal(expected.Select(w => w.Name), actual.Select(w => w.Name));
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Shape, actual[i].Shape);
            Assert.Equal(expected[i].Data, actual[i].Data);
        }
    }

    [Theory]
    [InlineData("tiny-fp16", 11)]
    [InlineData("tiny-bf16", 8)]
    public void Half_precision_layouts_widen_to_the_float32_weights_rounded(string layout, int mantissaBits)
    {
        // Rounding to nearest with this many stored mantissa bits moves a value by at most half an ulp.
        var bound = Math.Pow(2, -mantissaBits);
        var expected = Tiny.Backbone.Weights.All.ToList();
        var actual = Models.Get(layout).Backbone.Weights.All.ToList();
        for (var i = 0; i < expected.Count; i++)
        {
            for (var j = 0; j < expected[i].Data.Length; j++)
            {
                var e = expected[i].Data[j];
                var a = actual[i].Data[j];
                Assert.True(Math.Abs(a - e) <= bound * Math.Abs(e) + 1e-7,
                    $"{expected[i].Name}[{j}]: {a} is not {e} rounded to {mantissaBits} mantissa bits");
            }
        }
    }

    [Fact]
    public void Tied_head_reads_the_token_embedding_array_itself()
    {
        Assert.True(Tiny.IsTied);
        Assert.Same(Tiny.Backbone.Weights.TokenEmbedding.Data, Tiny.Head.Weight.Data);
        Assert.Null(Tiny.Backbone.Weights.LmHead);
    }

    [Fact]
    public void Untied_head_uses_lm_head_weight()
    {
        var model = Models.Get("tiny-untied");
        Assert.False(model.IsTied);
        Assert.Equal("lm_head.weight", model.Head.Weight.Name);
        Assert.NotSame(model.Backbone.Weights.TokenEmbedding.Data, model.Head.Weight.Data);
        Assert.NotEqual(model.Backbone.Weights.TokenEmbedding.Data, model.Head.Weight.Data);
    }

    [Fact]
    public void Config_is_read_from_config_json()
    {
        var config = Models.Get("odd").Config;
        Assert.Equal(1003, config.VocabSize);
        Assert.Equal(37, config.ContextLength);
        Assert.Equal(40, config.EmbeddingSize);
        Assert.Equal(3, config.LayerCount);
        Assert.Equal(5, config.HeadCount);
        Assert.Equal(8, config.HeadSize);
        Assert.Equal(160, config.InnerSize); // n_inner null → 4·n_embd
        Assert.Equal("gelu_new", config.ActivationFunction);
    }

    [Fact]
    public void All_missing_and_misshaped_tensors_are_reported_in_one_error()
    {
        using var temp = new TempDirectory();
        var directory = CheckpointBuilder.From(Paths.Model("tiny"))
            .Remove("transformer.h.1.mlp.c_fc.bias")
            .Remove("transformer.ln_f.weight")
            .Reshape("transformer.wpe.weight", [64, 32], new byte[64 * 32 * 4])
            .WriteTo(temp.Path);

        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(directory));
        Assert.Equal(3, error.Problems.Count);
        Assert.Contains(error.Problems, p => p.StartsWith("h.1.mlp.c_fc.bias: missing"));
        Assert.Contains(error.Problems, p => p.StartsWith("ln_f.weight: missing"));
        Assert.Contains(error.Problems, p => p.StartsWith("wpe.weight: shape [64, 32]") && p.Contains("expected [128, 32]"));
    }

    [Fact]
    public void A_folder_with_both_a_single_file_and_an_index_is_read_from_the_single_file_as_transformers_reads_it()
    {
        using var temp = new TempDirectory();
        // The shards hold tiny's weights; the single file, tiny's with ln_f.bias moved, so the two give different logits.
        foreach (var file in Directory.GetFiles(Paths.Model("tiny-sharded"))) File.Copy(file, temp.File(Path.GetFileName(file)));
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        var bias = builder.Tensors.Single(t => t.Name == "transformer.ln_f.bias");
        builder.Reshape(bias.Name, bias.Shape, [.. Enumerable.Range(0, bias.Data.Length / 4).SelectMany(i => BitConverter.GetBytes(0.5f))]);
        var single = builder.WriteTo(temp.File("single"));
        File.Copy(Path.Combine(single, "model.safetensors"), temp.File("model.safetensors"));
        var ids = TokenBatch.FromIds([1, 2, 3]);

        using var both = Gpt2CausalLM.Load(temp.Path);
        using var singleOnly = Gpt2CausalLM.Load(single);
        var inspected = NativeGpt2.Loading.ModelInspector.Inspect(temp.Path);

        Assert.Equal(singleOnly.Forward(ids).Logits.Data, both.Forward(ids).Logits.Data);
        Assert.NotEqual(Models.Get("tiny-sharded").Forward(ids).Logits.Data, both.Forward(ids).Logits.Data);
        Assert.Equal(["model.safetensors"], inspected.Files.Select(f => f.File));
    }

    [Fact]
    public void A_failed_load_closes_every_shard_it_opened()
    {
        using var temp = new TempDirectory();
        foreach (var file in Directory.GetFiles(Paths.Model("tiny-sharded"))) File.Copy(file, temp.File(Path.GetFileName(file)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File("config.json")))!.AsObject();
        config["n_layer"] = 3;
        File.WriteAllText(temp.File("config.json"), config.ToJsonString());

        Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(temp.Path));
        // Exclusive opens succeed only if no handle of the failed load is still open.
        foreach (var shard in Directory.GetFiles(temp.Path, "*.safetensors"))
            using (new FileStream(shard, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { }
    }

    [Fact]
    public void Untied_config_without_lm_head_is_reported_missing()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["tie_word_embeddings"] = false;
        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(builder.WriteTo(temp.Path)));
        Assert.Contains(error.Problems, p => p.StartsWith("lm_head.weight: missing"));
    }

    [Fact]
    public void A_vocabulary_padded_past_the_tokenizer_loads_and_its_extra_ids_decode_to_nothing()
    {
        // nanoGPT trains GPT-2 with 50,304 rows (a multiple of 64); vocab.json has 50,257 tokens.
        using var temp = new TempDirectory();
        using var padded = Gpt2CausalLM.Load(CheckpointBuilder.Gpt2MiniWithVocabRows(temp.Path, 50_304), new ModelLoadOptions { Backend = "cpu" });
        using var original = Gpt2CausalLM.Load(Paths.Model("gpt2-mini"), new ModelLoadOptions { Backend = "cpu" });
        Assert.Equal(50_304, padded.Tokenizer!.VocabSize);
        Assert.Equal("", padded.Tokenizer.Decode([50_257, 50_303]));

        // The extra rows change no other logit.
        var ids = original.Tokenizer!.Encode("Hello, world");
        var expected = original.Forward(TokenBatch.FromIds(ids)).Logits;
        var actual = padded.Forward(TokenBatch.FromIds(ids)).Logits;
        for (var t = 0; t < ids.Length; t++)
            Assert.Equal(expected.Row(0, t).ToArray(), actual.Row(0, t)[..50_257].ToArray());

        // Sampling may pick an extra row; its text is empty, never an error.
        var result = padded.Generate("Hello", new GenerationOptions { MaxNewTokens = 16, Seed = 3 });
        Assert.Equal(16, result.GeneratedIds.Count);
        Assert.Equal(padded.Tokenizer.Decode(result.GeneratedIds), result.Text);
    }

    [Fact]
    public void The_tokenizer_alone_of_a_padded_model_is_padded_as_the_models()
    {
        using var temp = new TempDirectory();
        var directory = CheckpointBuilder.Gpt2MiniWithVocabRows(temp.Path, 50_304);
        var tokenizer = NativeGpt2.Tokenization.Gpt2Tokenizer.ForModel(directory);
        Assert.Equal(50_304, tokenizer.VocabSize);
        Assert.Equal("", tokenizer.Decode([50_300]));
        var result = CliRunner.Run("detokenize", "--model", directory, "--ids", "15496,50300");
        Assert.Equal(NativeGpt2.Cli.CliApp.Success, result.ExitCode);
        Assert.Equal("Hello", result.Out.Trim());
    }

    [Fact]
    public void A_pad_token_added_by_a_fine_tune_is_a_token_of_the_model()
    {
        using var temp = new TempDirectory();
        using var model = Gpt2CausalLM.Load(CheckpointBuilder.Gpt2MiniWithVocabRows(temp.Path, 50_258, """{"<|pad|>": 50257}"""), new ModelLoadOptions { Backend = "cpu" });
        Assert.Equal(50_258, model.Tokenizer!.VocabSize);
        Assert.Equal("<|pad|>", model.Tokenizer.Decode([50_257]));
        Assert.Equal(50_257, model.Tokenizer.Encode("<|pad|>", allowSpecialTokens: true).Single());
    }

    [Fact]
    public void A_tokenizer_with_more_tokens_than_the_model_has_rows_is_an_error()
    {
        using var temp = new TempDirectory();
        var directory = CheckpointBuilder.Gpt2MiniWithVocabRows(temp.Path, 50_257, """{"<|pad|>": 50257}""");
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(directory, new ModelLoadOptions { Backend = "cpu" }));
        Assert.Equal(temp.File("vocab.json"), error.FilePath);
        Assert.Contains("has 50258 tokens (added tokens included) but config.json's vocab_size is 50257", error.Message);
    }

    [Fact]
    public void A_tensor_stored_with_and_without_the_prefix_is_a_conflict()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        var wte = builder.Tensors.Single(t => t.Name == "transformer.wte.weight");
        builder.Add("wte.weight", wte.DType, wte.Shape, wte.Data);
        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(builder.WriteTo(temp.Path)));
        Assert.Contains(error.Problems, p => p.StartsWith("wte.weight: stored twice"));
    }

    [Fact]
    public void A_malformed_tokenizer_is_reported_before_the_weights_problems()
    {
        // The tokenizer and the weights are read side by side; the tokenizer's error is the one reported.
        using var temp = new TempDirectory();
        CheckpointBuilder.From(Paths.Model("gpt2-mini")).Remove("transformer.ln_f.bias").WriteTo(temp.Path);
        File.WriteAllText(temp.File("vocab.json"), "{\"a\": 0,");
        File.Copy(Path.Combine(Paths.Model("gpt2-mini"), "merges.txt"), temp.File("merges.txt"));
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(temp.Path, new ModelLoadOptions { Backend = "cpu" }));
        Assert.Equal(temp.File("vocab.json"), error.FilePath);
        // Without the tokenizer's fault, the weights' is reported.
        File.Delete(temp.File("vocab.json"));
        File.Delete(temp.File("merges.txt"));
        Assert.Contains(Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(temp.Path, new ModelLoadOptions { Backend = "cpu" })).Problems,
            p => p.StartsWith("ln_f.bias"));
    }

    [Fact]
    public void A_tokenizer_json_too_large_for_the_model_is_named()
    {
        // tiny's 512 rows against GPT-2's 50,257 tokens: the error names the file the vocabulary came from.
        using var temp = new TempDirectory();
        CheckpointBuilder.From(Paths.Model("tiny")).WriteTo(temp.Path);
        File.WriteAllText(temp.File(NativeGpt2.Tokenization.Gpt2Tokenizer.TokenizerJsonFile), TokenizerJson.FromVocabularyFiles(Paths.Model("gpt2-mini"), mergesAsPairs: true));
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(temp.Path, new ModelLoadOptions { Backend = "cpu" }));
        Assert.Equal(temp.File(NativeGpt2.Tokenization.Gpt2Tokenizer.TokenizerJsonFile), error.FilePath);
        Assert.Contains("has 50257 tokens (added tokens included) but config.json's vocab_size is 512: the model has no row for the rest", error.Message);
    }

    [Fact]
    public void Float64_weights_load_rounded_to_float32()
    {
        // tiny's float32 weights written as float64 (a model saved after .double()): exactly the same model.
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        foreach (var tensor in builder.Tensors.ToList())
        {
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensor.Data.AsSpan()).ToArray().Select(v => (double)v).ToArray();
            builder.Remove(tensor.Name).Add(tensor.Name, SafetensorsDType.F64, tensor.Shape,
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        }
        using var model = Gpt2CausalLM.Load(builder.WriteTo(temp.Path), new ModelLoadOptions { Backend = "cpu" });
        int[] ids = [5, 17, 301, 42];
        Assert.Equal(Models.Get("tiny").Forward(TokenBatch.FromIds(ids)).Logits.Data, model.Forward(TokenBatch.FromIds(ids)).Logits.Data);
    }

    [Fact]
    public void Integer_weights_are_rejected_by_dtype()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        var bias = builder.Tensors.Single(t => t.Name == "transformer.ln_f.bias");
        builder.Remove(bias.Name).Add(bias.Name, SafetensorsDType.I32, bias.Shape, bias.Data);
        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(builder.WriteTo(temp.Path)));
        Assert.Contains(error.Problems, p => p.StartsWith("ln_f.bias: dtype I32"));
    }

    [Fact]
    public void Directory_without_weights_names_what_it_looked_for()
    {
        using var temp = new TempDirectory();
        File.Copy(Path.Combine(Paths.Model("tiny"), "config.json"), temp.File("config.json"));
        var error = Assert.Throws<ModelNotFoundException>(() => Gpt2CausalLM.Load(temp.Path));
        Assert.Contains("model.safetensors", error.Message);
    }

    [Fact]
    public void Directory_without_config_is_not_a_model()
    {
        using var temp = new TempDirectory();
        var error = Assert.Throws<ModelNotFoundException>(() => Gpt2CausalLM.Load(temp.Path));
        Assert.Contains("config.json", error.Message);
    }

    [Theory]
    [InlineData("synthetic:gpt3")]
    [InlineData("no/such/directory")]
    public void Unknown_specs_are_not_found(string spec) =>
        Assert.Throws<ModelNotFoundException>(() => Gpt2CausalLM.Load(spec));

    [Fact]
    public void Progress_reaches_completion()
    {
        var reports = new List<LoadProgress>();
        Gpt2CausalLM.Load(Paths.Model("tiny-sharded"), new ModelLoadOptions { Progress = new SynchronousProgress<LoadProgress>(reports.Add) });
        Assert.NotEmpty(reports);
        Assert.Equal(1.0, reports[^1].Fraction, 6);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.Fraction <= p.Second.Fraction));
    }
}

/// <summary>An IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
