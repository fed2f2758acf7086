using System.Diagnostics;
using NativeGpt2.Cli;
using NativeGpt2.Loading;
using NativeGpt2.Safetensors;
using NativeGpt2.Tests.Support;
using NativeGpt2.Tokenization;
using NativeGpt2.Verification;
using NativeGpt2.Weights;
using Xunit;
using NativeGpt2.Generation;

namespace NativeGpt2.Tests.Robustness;

/// <summary>
/// Files that are not regular files, too large, links leaving the checkpoint, JSON with duplicate keys,
/// and numbers that overflow or are not finite: each gets a typed error naming the file or parameter.
/// </summary>
public class FileAndNumberRulesTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string CopyOf(string model, string name = "copy")
    {
        var directory = Directory.CreateDirectory(_temp.File(name)).FullName;
        foreach (var file in Directory.GetFiles(Paths.Model(model)))
            File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        return directory;
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start("mkfifo", [path])!;
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }

    private static ModelFormatException LoadFails(string directory, TimeSpan? within = null)
    {
        ModelFormatException? error = null;
        Guard.Within(within ?? TimeSpan.FromSeconds(20), () => error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2CausalLM.Load(directory)), "load");
        return error!;
    }

    [Theory]
    [InlineData("config.json")]
    [InlineData("model.safetensors")]
    public void A_fifo_in_place_of_a_model_file_is_rejected_instead_of_blocking(string file)
    {
        if (!OperatingSystem.IsLinux()) return;   // mkfifo
        var directory = CopyOf("tiny");
        File.Delete(Path.Combine(directory, file));
        MakeFifo(Path.Combine(directory, file));

        var error = LoadFails(directory);

        Assert.Equal(Path.Combine(directory, file), error.FilePath);
        Assert.Contains("not a regular file", error.Message);
    }

    [Fact]
    public void An_empty_file_and_a_fifo_are_told_apart_where_the_system_can_say()
    {
        if (!OperatingSystem.IsLinux()) return;   // mkfifo, statx
        var empty = CopyOf("tiny", "empty");
        File.WriteAllText(Path.Combine(empty, "config.json"), "");
        var fifo = CopyOf("shakespeare-char", "fifo-merges");
        File.Delete(Path.Combine(fifo, "merges.txt"));
        MakeFifo(Path.Combine(fifo, "merges.txt"));

        Assert.Equal("is empty", LoadFails(empty).Problem);
        // An empty merges.txt is allowed (no merges), but a FIFO in its place is not taken for one.
        ModelFormatException? error = null;
        Guard.Within(TimeSpan.FromSeconds(20), () => error = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.TryLoad(fifo)), "tokenizer load");
        Assert.Equal(Path.Combine(fifo, "merges.txt"), error!.FilePath);
        Assert.Equal("is a FIFO, a device or a socket, not a regular file; only regular files are read", error.Problem);
    }

    [Fact]
    public void An_empty_prompt_or_text_file_is_an_empty_text()
    {
        var empty = _temp.File("empty.txt");
        File.WriteAllText(empty, "");

        var fromFile = CliRunner.Run("generate", "--prompt-file", empty, "--greedy", "--max-new-tokens", "20");
        var inline = CliRunner.Run("generate", "--prompt", "", "--greedy", "--max-new-tokens", "20");
        var tokens = CliRunner.Run("tokenize", "--model", Paths.Model("gpt2-mini"), "--file", empty, "--count");

        Assert.Equal(CliApp.Success, fromFile.ExitCode);
        Assert.Equal(inline.Out, fromFile.Out);
        Assert.Equal("0", tokens.Out.Trim());
    }

    [Fact]
    public void A_config_that_links_to_dev_zero_is_rejected_without_reading_it()
    {
        if (!OperatingSystem.IsLinux()) return;
        var directory = CopyOf("tiny");
        File.Delete(Path.Combine(directory, "config.json"));
        File.CreateSymbolicLink(Path.Combine(directory, "config.json"), "/dev/zero");

        var error = LoadFails(directory);
        // Outside the checkpoint, and not a regular file: either rule stops it before a byte is read.
        Assert.Equal(Path.Combine(directory, "config.json"), error.FilePath);
        Assert.Equal("/dev/zero", Assert.Throws<ModelFormatException>(() => Gpt2Config.Load("/dev/zero")).FilePath);
    }

    [Fact]
    public void A_link_to_nothing_says_where_it_points()
    {
        var directory = CopyOf("tiny");
        File.Delete(Path.Combine(directory, "config.json"));
        File.CreateSymbolicLink(Path.Combine(directory, "config.json"), "gone.json");

        var error = LoadFails(directory);

        Assert.Equal(Path.Combine(directory, "config.json"), error.FilePath);
        Assert.Contains("is a symbolic link to gone.json, which is not an existing file", error.Message);
    }

    [Fact]
    public void Json_files_over_their_cap_are_rejected_before_they_are_read()
    {
        var directory = CopyOf("tiny");
        using (var config = File.OpenWrite(Path.Combine(directory, "config.json")))
            config.SetLength(ModelFiles.MaxConfigBytes + 1);   // sparse: nothing is written

        var error = LoadFails(directory);

        Assert.Equal(Path.Combine(directory, "config.json"), error.FilePath);
        Assert.Contains($"more than the {ModelFiles.MaxConfigBytes:N0} bytes allowed", error.Message);
    }

    [Fact]
    public void A_vocabulary_over_its_cap_is_rejected_naming_the_file()
    {
        var directory = CopyOf("shakespeare-char");
        using (var vocab = File.OpenWrite(Path.Combine(directory, "vocab.json")))
            vocab.SetLength(ModelFiles.MaxTokenizerFileBytes + 1);

        var error = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.TryLoad(directory));

        Assert.Equal(Path.Combine(directory, "vocab.json"), error.FilePath);
        Assert.Contains("bytes allowed", error.Message);
    }

    [Fact]
    public void A_shard_index_over_its_cap_is_rejected()
    {
        var directory = CopyOf("tiny-sharded");
        using (var index = File.OpenWrite(Path.Combine(directory, "model.safetensors.index.json")))
            index.SetLength(ModelFiles.MaxIndexBytes + 1);

        Assert.Equal(Path.Combine(directory, "model.safetensors.index.json"), LoadFails(directory).FilePath);
    }

    [Fact]
    public void A_shard_that_links_outside_the_checkpoint_is_refused()
    {
        var directory = CopyOf("tiny-sharded");
        var outside = Directory.CreateDirectory(_temp.File("elsewhere")).FullName;
        var shard = "model-00002-of-00005.safetensors";
        File.Move(Path.Combine(directory, shard), Path.Combine(outside, shard));
        File.CreateSymbolicLink(Path.Combine(directory, shard), Path.Combine(outside, shard));

        var error = LoadFails(directory);

        Assert.Equal(Path.Combine(directory, shard), error.FilePath);
        Assert.Contains("outside the checkpoint directory", error.Message);
    }

    [Fact]
    public void Links_inside_the_checkpoint_and_into_a_hub_cache_blobs_folder_are_followed()
    {
        // Inside the folder.
        var directory = CopyOf("tiny");
        File.Move(Path.Combine(directory, "model.safetensors"), Path.Combine(directory, "weights.bin"));
        File.CreateSymbolicLink(Path.Combine(directory, "model.safetensors"), "weights.bin");
        Gpt2CausalLM.Load(directory).Dispose();

        // The layout huggingface_hub writes: snapshots/<commit>/file -> ../../blobs/<hash>.
        var repository = _temp.File("models--org--tiny");
        var blobs = Directory.CreateDirectory(Path.Combine(repository, "blobs")).FullName;
        var snapshot = Directory.CreateDirectory(Path.Combine(repository, "snapshots", LocalHubServer.Commit)).FullName;
        foreach (var file in Directory.GetFiles(Paths.Model("tiny")))
        {
            var blob = Path.Combine(blobs, Guid.NewGuid().ToString("N"));
            File.Copy(file, blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), Path.Combine("..", "..", "blobs", Path.GetFileName(blob)));
        }
        using var model = Gpt2CausalLM.Load(snapshot);
        Assert.Equal(Models.Get("tiny").Backbone.Weights.TokenEmbedding.Data, model.Backbone.Weights.TokenEmbedding.Data);
    }

    [Fact]
    public void Duplicate_fields_in_a_safetensors_tensor_entry_are_rejected()
    {
        var path = _temp.File("dup.safetensors");
        var header = """{"w":{"dtype":"BF16","dtype":"F32","shape":[1],"data_offsets":[0,4]}}"""u8.ToArray();
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header, 0, 0, 0, 0]);

        var error = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));

        Assert.Equal("w.dtype", error.Field);
        Assert.Contains("duplicate entry", error.Message);
    }

    private static void PrependByteOrderMark(string path) => File.WriteAllBytes(path, [0xEF, 0xBB, 0xBF, .. File.ReadAllBytes(path)]);

    [Fact]
    public void Json_files_may_begin_with_a_utf8_byte_order_mark()
    {
        // Windows editors write one; the model and its tokenizer read as without it.
        var directory = CopyOf("gpt2-mini");
        foreach (var file in new[] { "config.json", "generation_config.json", "vocab.json", "merges.txt" })
            PrependByteOrderMark(Path.Combine(directory, file));
        var sharded = CopyOf("tiny-sharded", "sharded");
        PrependByteOrderMark(Path.Combine(sharded, ShardIndex.FileName));

        using var model = Gpt2CausalLM.Load(directory);
        using var original = Gpt2CausalLM.Load(Paths.Model("gpt2-mini"));
        using var shardedModel = Gpt2CausalLM.Load(sharded);
        using var shardedOriginal = Gpt2CausalLM.Load(Paths.Model("tiny-sharded"));

        Assert.Equal(original.Config with { AdditionalEosTokenIds = [], DefaultedSizes = [] }, model.Config with { AdditionalEosTokenIds = [], DefaultedSizes = [] });
        Assert.Equal(original.Config.AdditionalEosTokenIds, model.Config.AdditionalEosTokenIds);
        const string text = "Hello, world: naïve café";
        Assert.Equal(original.Tokenizer!.Encode(text), model.Tokenizer!.Encode(text));
        Assert.Equal(original.Forward(TokenBatch.FromIds([1, 2, 3])).Logits.Data, model.Forward(TokenBatch.FromIds([1, 2, 3])).Logits.Data);
        Assert.Equal(shardedOriginal.Forward(TokenBatch.FromIds([1, 2, 3])).Logits.Data, shardedModel.Forward(TokenBatch.FromIds([1, 2, 3])).Logits.Data);
    }

    [Fact]
    public void A_safetensors_header_may_not_begin_with_a_byte_order_mark()
    {
        var path = _temp.File("bom.safetensors");
        byte[] header = [0xEF, 0xBB, 0xBF, .. """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"""u8];
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header, 0, 0, 0, 0]);

        var error = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));

        Assert.Equal("header", error.Field);
    }

    [Theory]
    [InlineData("config.json", "\"n_embd\": 32,", "\"n_embd\": 32, \"n_embd\": 64,", "n_embd")]
    [InlineData("model.safetensors.index.json", "\"weight_map\": {", "\"weight_map\": {\"transformer.wte.weight\": \"model-00001-of-00005.safetensors\",", "weight_map.transformer.wte.weight")]
    public void Duplicate_keys_in_the_checkpoint_json_files_are_rejected(string file, string find, string replace, string field)
    {
        var directory = CopyOf(file == "config.json" ? "tiny" : "tiny-sharded");
        var path = Path.Combine(directory, file);
        var text = File.ReadAllText(path);
        Assert.Contains(find, text);
        File.WriteAllText(path, text.Replace(find, replace));

        var error = LoadFails(directory);

        Assert.Equal(path, error.FilePath);
        Assert.Equal(field, error.Field);
        Assert.Contains("duplicate entry", error.Message);
    }

    [Fact]
    public void A_vocabulary_with_too_many_special_tokens_is_rejected()
    {
        var tokens = Enumerable.Range(0, 256).Select(b => ByteLevel.Char((byte)b).ToString())
            .Concat(Enumerable.Range(0, Gpt2Tokenizer.MaxSpecialTokens + 1).Select(i => $"<|special{i}|>"));
        File.WriteAllText(_temp.File("vocab.json"), System.Text.Json.JsonSerializer.Serialize(tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i)));
        File.WriteAllText(_temp.File("merges.txt"), "");

        var error = Assert.Throws<ModelFormatException>(() => Gpt2Tokenizer.TryLoad(_temp.Path));

        Assert.Equal(_temp.File("vocab.json"), error.FilePath);
        Assert.Contains($"more than {Gpt2Tokenizer.MaxSpecialTokens} special tokens", error.Message);
    }

    [Fact]
    public void The_special_token_pattern_is_built_only_when_special_tokens_are_allowed()
    {
        var tokenizer = Gpt2Tokenizer.TryLoad(CopyOf("shakespeare-char"))!;
        tokenizer.Encode("ROMEO: <|endoftext|>");
        Assert.False(tokenizer.SpecialPatternBuilt);
        Assert.Equal(tokenizer.EndOfTextId, tokenizer.Encode("<|endoftext|>", allowSpecialTokens: true).Single());
        Assert.True(tokenizer.SpecialPatternBuilt);
    }

    [Fact]
    public void Greedy_decoding_rejects_infinite_logits_as_sampling_does()
    {
        float[] logits = [0f, float.PositiveInfinity, 1f];
        var greedy = Assert.Throws<NumericalException>(() => Sampler.Sample(logits, new GenerationOptions { Greedy = true }, [], new Random(1)));
        var sampled = Assert.Throws<NumericalException>(() => Sampler.Sample(logits, new GenerationOptions(), [], new Random(1)));
        Assert.Contains("+infinity", greedy.Message);
        Assert.Equal(greedy.Message, sampled.Message);
        Assert.Throws<NumericalException>(() => Sampler.Sample([float.NegativeInfinity, float.NegativeInfinity], new GenerationOptions { Greedy = true }, [], new Random(1)));
    }

    [Fact]
    public void Activation_sizes_are_computed_in_64_bits_and_fail_before_allocating()
    {
        // A config that passes validation (n_inner up to 16 × the channel limit) but whose MLP activation
        // for 4,096 tokens has 4,096 × 2^20 floats: more than an array holds.
        var config = new Gpt2Config { VocabSize = 4, ContextLength = 4096, EmbeddingSize = 4, LayerCount = 1, HeadCount = 1, InnerSize = 1 << 20 };
        config.Validate("test");
        var weights = Gpt2Weights.Assemble(config, name => Zeros(name, config));
        using var model = new Gpt2CausalLM(config, weights);

        var error = Assert.Throws<ArgumentOutOfRangeException>(() => model.Backbone.Forward(new TokenBatch(new int[4096], 1, 4096)));

        Assert.Contains("more than the largest .NET array", error.Message);
        Assert.Equal(4, model.Backbone.Forward(TokenBatch.FromIds([1, 2])).LastHiddenState.Shape[2]);
    }

    [Theory]
    [InlineData(0, 3, "batchSize", "a batch needs at least one sequence")]
    [InlineData(1, 0, "sequenceLength", "a sequence needs at least one token")]
    public void An_empty_batch_says_what_is_missing(int batchSize, int length, string parameter, string message)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBatch(new int[batchSize * length], batchSize, length));
        Assert.Equal(parameter, error.ParamName);
        Assert.StartsWith(message, error.Message);
    }

    [Fact]
    public void No_ids_at_all_is_an_empty_sequence() =>
        Assert.StartsWith("a sequence needs at least one token", Assert.Throws<ArgumentOutOfRangeException>(() => TokenBatch.FromIds(Array.Empty<int>())).Message);

    private static Weight Zeros(string name, Gpt2Config config)
    {
        var shape = Gpt2Weights.ExpectedTensors(config).Single(t => t.Name == name).Shape;
        return new Weight(name, shape, new float[shape.Aggregate(1, (a, b) => a * b)]);
    }

    [Fact]
    public void Max_new_tokens_near_int_max_is_a_usage_error_before_anything_is_printed()
    {
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "--max-new-tokens", int.MaxValue.ToString());

        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Equal("", result.Out);
        Assert.StartsWith("error: --max-new-tokens is too large: the prompt has 6 tokens", result.Error);
        Assert.Contains("exceeds the context length of 256", result.Error);
        // What to do, in the command's own words: the largest value that fits, and the option that lifts the limit.
        Assert.Contains("lower --max-new-tokens to at most 250, or enable --sliding-window", result.Error);
        Assert.DoesNotContain("MaxNewTokens", result.Error);
        Assert.DoesNotContain("capacity", result.Error);
    }

    [Fact]
    public void A_prompt_that_fills_the_context_is_a_usage_error_naming_the_prompt()
    {
        var result = CliRunner.Run("generate", "--prompt", new string('a', 300), "--max-new-tokens", "5");

        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Equal("", result.Out);
        Assert.StartsWith("error: --prompt: the prompt has 300 tokens, and the context length of 256 leaves no room for a new one (shorten it to at most 255 tokens, or enable --sliding-window)", result.Error);
    }

    [Theory]
    [InlineData("--seed", "abc", "Cannot parse argument 'abc' for option '--seed' as an integer.")]
    [InlineData("--temperature", "warm", "Cannot parse argument 'warm' for option '--temperature' as a number.")]
    public void A_value_of_the_wrong_kind_says_what_kind_in_words(string option, string value, string message)
    {
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", option, value);

        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Equal($"error: {message} (see nativegpt2 --help)", result.Error.Trim());
    }

    [Fact]
    public void A_malformed_reference_file_is_bad_input_not_a_usage_error()
    {
        var path = _temp.File("bad-ref.safetensors");
        new SafetensorsWriter()
            .Add("input_ids", [7, 99999], 1, 2)
            .Add("logits", new float[2 * 512], 1, 2, 512)
            .Save(path);

        var result = CliRunner.Run("verify", "--model", Paths.Model("tiny"), "--reference", path);

        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains(path, result.Error);
        Assert.Contains("input_ids", result.Error);
    }

    [Theory]
    [InlineData(1e300)]
    [InlineData(-1e12)]
    [InlineData(2.5)]
    [InlineData(double.NaN)]
    public void A_reference_id_that_is_not_a_32_bit_integer_is_a_typed_error(double value)
    {
        var path = _temp.File("f64-ids.safetensors");
        new SafetensorsWriter().Add("input_ids", [value], 1, 1).Save(path);

        var error = Assert.Throws<ModelFormatException>(() => ReferenceVerifier.Verify(Models.Get("tiny"), path, 1e-4));

        Assert.Equal(path, error.FilePath);
        Assert.Equal("input_ids", error.Field);
        Assert.Equal(CliApp.BadInput, CliRunner.Run("verify", "--model", Paths.Model("tiny"), "--reference", path).ExitCode);
    }

    [Fact]
    public void A_reference_attention_mask_value_other_than_0_or_1_is_named_with_its_place()
    {
        var path = _temp.File("mask.safetensors");
        new SafetensorsWriter()
            .Add("input_ids", [5, 6, 7], 1, 3)
            .Add("attention_mask", [1, 2, 1], 1, 3)
            .Save(path);

        var error = Assert.Throws<ModelFormatException>(() => ReferenceVerifier.Verify(Models.Get("tiny"), path, 1e-4));

        Assert.Equal($"{path}: attention_mask: values must be 0 (padding) or 1 (token), found 2 at index 1", error.Message);
    }

    [Fact]
    public async Task Score_reads_a_fifo_to_its_end_as_it_reads_standard_input()
    {
        if (!OperatingSystem.IsLinux()) return;
        var fifo = _temp.File("text.fifo");
        MakeFifo(fifo);
        var text = Paths.ShakespeareValidationText[..300];
        var expected = CliRunner.RunWithInput(text, "score", "--model", Paths.Model("shakespeare-char"), "--file", "-", "--json");
        // What a shell's <(…) hands over: a pipe that a writer fills and closes.
        var writer = Task.Run(() => File.WriteAllText(fifo, text));

        CliRunner.Result? result = null;
        Guard.Within(TimeSpan.FromSeconds(30), () => result = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", fifo, "--json"), "score on a FIFO");

        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(CliApp.Success, result!.ExitCode);
        Assert.Equal(expected.Out, result.Out);
    }
}
