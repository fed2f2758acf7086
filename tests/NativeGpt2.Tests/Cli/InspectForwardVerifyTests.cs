using System.Text.RegularExpressions;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using Xunit;

namespace NativeGpt2.Tests.Cli;

public class InspectForwardVerifyTests
{
    [Fact]
    public void Inspect_shows_config_parameters_dtypes_tying_and_tensors()
    {
        var result = CliRunner.Run("inspect", "--model", Paths.Model("tiny-hub"));
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Contains("V=512", result.Out);
        Assert.Contains("L=2", result.Out);
        Assert.Contains("parameters    45,952", result.Out);
        Assert.Contains("tied", result.Out);
        Assert.Matches(new Regex(@"^attention     softmax\(q·kᵀ / √HS\)\r?$", RegexOptions.Multiline), result.Out);
        Assert.Contains("dtypes        F32", result.Out);
        Assert.Matches(@"h\.0\.attn\.bias\s+F32\s+\[1, 1, 128, 128\]\s+ignored", result.Out);
        Assert.Matches(@"wte\.weight\s+F32\s+\[512, 32\]", result.Out);
    }

    [Fact]
    public void Forward_takes_text_as_well_as_ids_and_exactly_one_of_them()
    {
        using var temp = new TempDirectory();
        const string Text = "Hello, world! The meaning of life is";
        var ids = string.Join(",", Models.Get("gpt2-mini").Tokenizer!.Encode(Text));
        string[] forward = ["forward", "--model", Paths.Model("gpt2-mini"), "--backend", "cpu"];

        var byText = CliRunner.Run([.. forward, "--text", Text, "--out", temp.File("text.safetensors")]);
        var byIds = CliRunner.Run([.. forward, "--ids", ids, "--out", temp.File("ids.safetensors")]);
        var both = CliRunner.Run(["forward", "--model", "/no/such/model", "--ids", "1", "--text", "a", "--out", temp.File("x.safetensors")]);
        var neither = CliRunner.Run(["forward", "--model", "/no/such/model", "--out", temp.File("x.safetensors")]);
        var noTokenizer = CliRunner.Run(["forward", "--model", Paths.Model("tiny"), "--text", "a", "--out", temp.File("x.safetensors")]);

        Assert.Equal(CliApp.Success, byText.ExitCode);
        Assert.Equal(File.ReadAllBytes(temp.File("ids.safetensors")), File.ReadAllBytes(temp.File("text.safetensors")));
        Assert.Equal(CliApp.Success, byIds.ExitCode);
        Assert.All([both, neither], r => Assert.Equal("error: give the input as exactly one of --ids 1,2,3 or --text TEXT", r.Error.Trim()));
        Assert.Equal(CliApp.UsageError, noTokenizer.ExitCode);
        Assert.Contains("has no tokenizer; give --ids", noTokenizer.Error);
    }

    [Fact]
    public void Inspect_of_a_safetensors_file_on_its_own_lists_its_metadata_and_tensors()
    {
        using var temp = new TempDirectory();
        var path = temp.File("activations.safetensors");
        var forward = CliRunner.Run("forward", "--model", Paths.Model("tiny"), "--backend", "cpu", "--ids", "1,2,3", "--out", path);
        Assert.Equal(CliApp.Success, forward.ExitCode);
        using var file = NativeGpt2.Safetensors.SafetensorsFile.Open(path);

        var table = CliRunner.Run("inspect", "--model", path);
        var json = CliRunner.Run("inspect", "--model", path, "--json");
        var bad = temp.File("bad.safetensors");
        File.WriteAllBytes(bad, [1, 2, 3]);
        var refused = CliRunner.Run("inspect", "--model", bad);

        Assert.Equal(CliApp.Success, table.ExitCode);
        Assert.Contains("metadata  producer = nativegpt2 forward", table.Out);
        Assert.Contains($"tensors   {file.Header.Tensors.Count}", table.Out);
        foreach (var tensor in file.Header.Tensors)
            Assert.Matches($@"(?m)^{Regex.Escape(tensor.Name)}\s+{tensor.DType}\s+{Regex.Escape(tensor.ShapeText)}\r?$", table.Out);
        var root = System.Text.Json.JsonDocument.Parse(json.Out).RootElement;
        Assert.Equal(new FileInfo(path).Length, root.GetProperty("bytes").GetInt64());
        Assert.Equal("nativegpt2 forward", root.GetProperty("metadata").GetProperty("producer").GetString());
        Assert.Equal(file.Header.Tensors.Select(t => (t.Name, t.DType.ToString(), t.ShapeText)),
            root.GetProperty("tensors").EnumerateArray().Select(t => (t.GetProperty("name").GetString()!, t.GetProperty("dtype").GetString()!,
                "[" + string.Join(", ", t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())) + "]")));
        Assert.Equal(CliApp.BadInput, refused.ExitCode);
        Assert.StartsWith($"error: {bad}: ", refused.Error);
    }

    [Theory]
    [InlineData(true, true, "softmax(q·kᵀ / (√HS · (layer + 1)))")]
    [InlineData(false, true, "softmax(q·kᵀ / (layer + 1))")]
    [InlineData(false, false, "softmax(q·kᵀ), unscaled")]
    public void Inspect_says_how_attention_scores_are_scaled(bool byHeadSize, bool byLayer, string expected)
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["scale_attn_weights"] = byHeadSize;
        builder.Config["scale_attn_by_inverse_layer_idx"] = byLayer;
        var result = CliRunner.Run("inspect", "--model", builder.WriteTo(temp.Path));
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Contains("attention     " + expected, result.Out);
    }

    [Fact]
    public void Inspect_names_the_sizes_config_json_leaves_out_and_loading_names_them_in_its_error()
    {
        Assert.DoesNotContain("defaults", CliRunner.Run("inspect", "--model", Paths.Model("tiny")).Out);
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config.Remove("n_positions");
        builder.Config.Remove("n_layer");
        var directory = builder.WriteTo(temp.Path);
        var inspected = CliRunner.Run("inspect", "--model", directory);
        Assert.Equal(CliApp.BadInput, inspected.ExitCode);
        Assert.Contains("context=1024", inspected.Out);
        Assert.Contains("defaults      n_positions 1024, n_layer 12 (left out of config.json", inspected.Out);
        Assert.Contains("  wpe.weight: shape [128, 32]", inspected.Out);
        var generated = CliRunner.Run("generate", "--model", directory, "--prompt", "hi", "--max-new-tokens", "1");
        Assert.Equal(1, generated.ExitCode);
        Assert.Contains("config.json leaves out n_positions 1024, n_layer 12", generated.Error);
        Assert.Contains("wpe.weight: shape [128, 32]", generated.Error);
    }

    [Fact]
    public void Inspect_lists_what_keeps_a_checkpoint_from_loading_as_loading_does_and_exits_1()
    {
        using var temp = new TempDirectory();
        var directory = CheckpointBuilder.From(Paths.Model("tiny"))
            .Remove("transformer.ln_f.bias")
            .Reshape("transformer.h.0.ln_2.bias", [16, 2], new byte[32 * 4])
            .Rename("transformer.wpe.weight", "transformer.wpe")
            .WriteTo(temp.Path);
        var refused = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(directory));

        var description = NativeGpt2.Loading.ModelInspector.Inspect(directory);
        var table = CliRunner.Run("inspect", "--model", directory);
        var json = CliRunner.Run("inspect", "--model", directory, "--json");

        Assert.Equal(3, refused.Problems.Count);
        Assert.Equal(refused.Problems, description.Problems);
        Assert.Equal(CliApp.BadInput, table.ExitCode);
        Assert.Contains("transformer.wpe  ", table.Out);   // the table is printed in full first
        Assert.Contains("problems      3: the model would not load", table.Out);
        foreach (var problem in refused.Problems) Assert.Contains("  " + problem + "\n", table.Out);
        Assert.Equal($"error: {directory}: 3 problem(s), listed under problems: the model would not load", table.Error.Trim());
        Assert.Contains("tokenizer     none: text cannot be encoded, token ids only (--ids)", table.Out);
        Assert.Equal(CliApp.BadInput, json.ExitCode);
        var problems = System.Text.Json.JsonDocument.Parse(json.Out).RootElement.GetProperty("problems").EnumerateArray().Select(p => p.GetString());
        Assert.Equal(refused.Problems, problems);
    }

    [Fact]
    public void Inspect_of_a_checkpoint_without_tensors_lists_every_one_missing()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        var expected = builder.Tensors.Count;
        builder.Tensors.Clear();

        var result = CliRunner.Run("inspect", "--model", builder.WriteTo(temp.Path));

        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains("dtypes        none", result.Out);
        Assert.Contains("(no tensors)", result.Out);
        Assert.Contains($"problems      {expected}: the model would not load", result.Out);
        Assert.Equal(expected, Regex.Matches(result.Out, ": missing \\(expected").Count);
    }

    [Fact]
    public void Inspect_names_the_tokenizer_and_lists_its_problem_as_loading_reports_it()
    {
        using var temp = new TempDirectory();
        var json = System.Text.Json.JsonDocument.Parse(CliRunner.Run("inspect", "--model", Paths.Model("gpt2-mini"), "--json").Out).RootElement;
        Assert.Equal("vocab.json + merges.txt", json.GetProperty("tokenizer").GetProperty("source").GetString());
        Assert.Equal(50257, json.GetProperty("tokenizer").GetProperty("tokens").GetInt32());
        Assert.Contains("tokenizer     vocab.json + merges.txt, 50,257 tokens", CliRunner.Run("inspect", "--model", Paths.Model("gpt2-mini")).Out);
        Assert.Contains($"tokenizer     {NativeGpt2.Loading.ModelInspector.BuiltInTokenizer}, 50,257 tokens", CliRunner.Run("inspect", "--model", "synthetic:gpt2").Out);

        // The real GPT-2 tokenizer beside a model of 512 rows: too many tokens. Loading refuses it; inspect says why, and exits 1.
        var tooSmall = CheckpointBuilder.From(Paths.Model("tiny")).WriteTo(temp.File("small"));
        foreach (var file in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(Paths.Model("gpt2-mini"), file), Path.Combine(tooSmall, file));
        // merges.txt naming a symbol vocab.json lacks: malformed.
        var malformed = CheckpointBuilder.Gpt2MiniWithVocabRows(temp.File("malformed"), rows: 50257);
        File.AppendAllText(Path.Combine(malformed, "merges.txt"), "\nzzqx qqzz\n");
        foreach (var directory in new[] { tooSmall, malformed })
        {
            var refused = Assert.ThrowsAny<ModelFormatException>(() => Gpt2CausalLM.Load(directory));
            var description = NativeGpt2.Loading.ModelInspector.Inspect(directory);
            var result = CliRunner.Run("inspect", "--model", directory);

            Assert.Equal(refused.Message, Assert.Single(description.Problems));
            Assert.Equal(CliApp.BadInput, result.ExitCode);
            Assert.Contains("problems      1: the model would not load", result.Out);
            Assert.Contains("  " + refused.Message, result.Out);
        }
        Assert.Equal(50257, NativeGpt2.Loading.ModelInspector.Inspect(tooSmall).TokenizerTokens);
        Assert.Null(NativeGpt2.Loading.ModelInspector.Inspect(malformed).TokenizerTokens);
    }

    [Fact]
    public void Inspect_of_a_loadable_checkpoint_lists_no_problems()
    {
        foreach (var model in new[] { "tiny", "tiny-untied", "tiny-sharded", "tiny-bf16", "gpt2-mini" })
        {
            var result = CliRunner.Run("inspect", "--model", Paths.Model(model), "--json");
            Assert.Equal(CliApp.Success, result.ExitCode);
            Assert.Empty(System.Text.Json.JsonDocument.Parse(result.Out).RootElement.GetProperty("problems").EnumerateArray());
            Assert.DoesNotContain("problems", CliRunner.Run("inspect", "--model", Paths.Model(model)).Out);
        }
    }

    [Fact]
    public void Inspect_shows_generation_config_json_ids_and_warns_of_one_it_skips()
    {
        using var temp = new TempDirectory();
        var directory = CheckpointBuilder.From(Paths.Model("tiny")).WriteTo(temp.Path);
        var path = Path.Combine(directory, "generation_config.json");
        File.WriteAllText(path, """{"eos_token_id": [3, 4]}""");
        var used = CliRunner.Run("inspect", "--model", directory);
        Assert.Equal(CliApp.Success, used.ExitCode);
        Assert.Contains("special ids   bos=511  eos=3,4", used.Out);

        // A file it cannot use: config.json's ids, and the load options' logger hears why (the CLI's logs go to stderr).
        File.WriteAllText(path, """{"eos_token_id": 99999}""");
        var skipped = CliRunner.Run("inspect", "--model", directory);
        Assert.Equal(CliApp.Success, skipped.ExitCode);
        Assert.Contains("special ids   bos=511  eos=511", skipped.Out);
        var logs = new CapturingLoggerProvider();
        var description = NativeGpt2.Loading.ModelInspector.Inspect(directory, new ModelLoadOptions { Logger = logs.CreateLogger("test") });
        Assert.Equal(511, description.Config.EosTokenId);
        Assert.Equal($"{path}: eos_token_id: 99999 is outside the vocabulary [0, 512); using config.json's special ids instead", Assert.Single(logs.Messages));
    }

    [Fact]
    public void Inspect_reports_an_untied_half_precision_and_sharded_checkpoint()
    {
        Assert.Contains("untied", CliRunner.Run("inspect", "--model", Paths.Model("tiny-untied")).Out);
        Assert.Contains("dtypes        BF16", CliRunner.Run("inspect", "--model", Paths.Model("tiny-bf16")).Out);
        var sharded = CliRunner.Run("inspect", "--model", Paths.Model("tiny-sharded")).Out;
        Assert.Equal(5, sharded.Split('\n').Count(l => l.StartsWith("file ")));
    }

    [Fact]
    public void Inspect_describes_a_synthetic_model_without_generating_it()
    {
        var result = CliRunner.Run("inspect", "--model", "synthetic:gpt2-xl");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Contains("1,557,611,200", result.Out);
        Assert.Contains("h.47.mlp.c_proj.weight", result.Out);
    }

    [Fact]
    public void Forward_writes_the_reference_names_dtypes_and_shapes_and_verify_accepts_it()
    {
        using var temp = new TempDirectory();
        var path = temp.File("out.safetensors");
        var reference = ReferenceFile.Load(Paths.Ref("odd.single.safetensors"));
        var ids = string.Join(",", reference["input_ids"].AsInt32());

        var forward = CliRunner.Run("forward", "--model", Paths.Model("odd"), "--ids", ids, "--out", path);
        Assert.Equal(CliApp.Success, forward.ExitCode);

        var written = ReferenceFile.Load(path);
        Assert.Equal(["hidden_states.0", "hidden_states.1", "hidden_states.2", "hidden_states.3", "input_ids", "logits"], written.Tensors.Keys.Order());
        foreach (var name in written.Tensors.Keys)
        {
            Assert.Equal(reference[name].Shape, written[name].Shape);
            Assert.Equal(reference[name].DType, written[name].DType);
        }
        Assert.Equal(reference["input_ids"].Values, written["input_ids"].Values);
        Numerics.AssertClose(reference["logits"].AsFloat32(), written["logits"].AsFloat32(), Tolerances.SmallModel, "forward --out logits");

        // The written file is itself a reference the same model verifies against exactly.
        var verify = CliRunner.Run("verify", "--model", Paths.Model("odd"), "--reference", path, "--tolerance", "0");
        Assert.Equal(CliApp.Success, verify.ExitCode);
        Assert.Contains("all 5 tensors within 0", verify.Out);
    }

    [Fact]
    public void Verify_passes_a_matching_reference_with_one_row_per_tensor()
    {
        var result = CliRunner.Run("verify", "--model", Paths.Model("tiny"), "--reference", Paths.Ref("tiny.left_padded.safetensors"));
        Assert.Equal(CliApp.Success, result.ExitCode);
        var rows = result.Out.Split('\n').Skip(1).Where(l => l.TrimEnd().EndsWith(" ok")).ToList();
        Assert.Equal(17, rows.Count); // 3 hidden states, 10 layer activations, 2 attentions, logits, next_token_logprob
        Assert.Matches(@"hidden_states\.2\s+\S+E-\d+\s+\S+\s+ok", result.Out);
    }

    [Fact]
    public void Verify_fails_with_exit_code_1_when_a_tensor_differs()
    {
        // bf16 weights against float32 references differ by about 1e-2.
        var result = CliRunner.Run("verify", "--model", Paths.Model("tiny-bf16"), "--reference", Paths.Ref("tiny.single.safetensors"));
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains("FAIL", result.Out);
        Assert.Contains("first mismatch [", result.Out);

        var loose = CliRunner.Run("verify", "--model", Paths.Model("tiny-bf16"), "--reference", Paths.Ref("tiny.single.safetensors"), "--tolerance", "0.15");
        Assert.Equal(CliApp.Success, loose.ExitCode);
    }

    [Theory]
    [InlineData("verify", "--model", "x")]
    [InlineData("forward", "--model", "x", "--ids", "1,b", "--out", "y")]
    [InlineData("no-such-command")]
    public void Usage_errors_exit_2_with_one_error_line(params string[] args)
    {
        var result = CliRunner.Run(args);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.StartsWith("error: ", result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", result.Error);
    }

    [Theory]
    [InlineData("1,2,999", "--ids: token id 999 at index 2 is outside the vocabulary [0, 512)")]
    [InlineData("-1", "--ids: token id -1 at index 0 is outside the vocabulary [0, 512)")]
    [InlineData("1,,2", "--ids: entry 2 of 3 is empty; give ids separated by single commas, e.g. 1,2,3")]
    [InlineData("1,2,", "--ids: entry 3 of 3 is empty; give ids separated by single commas, e.g. 1,2,3")]
    [InlineData(" ", "--ids: give at least one token id, e.g. 1,2,3")]
    public void Ids_the_model_cannot_take_are_one_line_naming_the_option(string ids, string message)
    {
        var result = CliRunner.Run("forward", "--model", Paths.Model("tiny"), "--backend", "cpu", "--ids", ids, "--out", Path.Combine(Path.GetTempPath(), "unused.safetensors"));
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Equal($"error: {message}", result.Error.Trim());
    }

    [Fact]
    public void Missing_model_exits_1_with_one_error_line()
    {
        var result = CliRunner.Run("inspect", "--model", "/no/such/model");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.StartsWith("error: model '/no/such/model': no such directory, and not a hub name", result.Error.Trim());
        Assert.Single(result.Error.Trim().Split('\n'));
    }
}

public class CliErrorTests
{
    [Fact]
    public void A_corrupt_checkpoint_is_one_line_naming_the_file_and_exit_1()
    {
        using var temp = new TempDirectory();
        File.Copy(Path.Combine(Paths.Model("tiny"), "config.json"), temp.File("config.json"));
        File.WriteAllBytes(temp.File("model.safetensors"), [1, 2, 3]);
        var result = CliRunner.Run("inspect", "--model", temp.Path);
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Equal($"error: {temp.File("model.safetensors")}: header: file is 3 bytes, shorter than the 8-byte header-size prefix", result.Error.Trim());
    }

    [Fact]
    public void Every_tensor_problem_is_on_the_one_error_line()
    {
        using var temp = new TempDirectory();
        var builder = CheckpointBuilder.From(Paths.Model("tiny")).Remove("transformer.ln_f.bias").Remove("transformer.wpe.weight");
        var result = CliRunner.Run("forward", "--model", builder.WriteTo(temp.Path), "--ids", "1", "--out", temp.File("o.safetensors"));
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        var line = Assert.Single(result.Error.Trim().Split('\n'));
        Assert.Contains("ln_f.bias: missing", line);
        Assert.Contains("wpe.weight: missing", line);
        Assert.Contains("of this config: wpe.weight: missing", line);   // the list follows its heading's colon, not ":;"
    }

    [Theory]
    [InlineData("forward", "--ids", "1,2")]
    [InlineData("attention", "--text", "ROMEO:")]
    public void An_output_path_that_is_a_folder_is_refused_before_the_model_loads(string command, string option, string value)
    {
        using var temp = new TempDirectory();
        // No such model: the folder is reported first, so nothing was loaded.
        var result = CliRunner.Run(command, "--model", "/no/such/model", option, value, "--out", temp.Path);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        var line = Assert.Single(result.Error.Trim().Split('\n'));
        Assert.StartsWith($"error: --out: {temp.Path} is a folder; name a file", line);
    }

    [Theory]
    [InlineData("forward", "--ids", "1,2", "out.safetensors")]
    [InlineData("attention", "--text", "ROMEO:", "out.svg")]
    public void An_output_file_is_written_into_a_folder_created_for_it(string command, string option, string value, string name)
    {
        using var temp = new TempDirectory();
        var path = Path.Combine(temp.Path, "new", "deeper", name);
        var result = CliRunner.Run(command, "--model", Paths.Model("shakespeare-char"), "--backend", "cpu", option, value, "--out", path);
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.True(new FileInfo(path).Length > 0);
    }

    [Theory]
    [InlineData("forward", "--ids", "1,2", "out.safetensors")]
    [InlineData("attention", "--text", "ROMEO:", "out.svg")]
    public void An_output_file_that_cannot_be_written_is_one_line_naming_the_option_and_the_path(string command, string option, string value, string name)
    {
        using var temp = new TempDirectory();
        // Its folder would have to be made inside a file: refused whoever runs the test.
        File.WriteAllText(temp.File("a-file"), "");
        var path = Path.Combine(temp.File("a-file"), name);
        var result = CliRunner.Run(command, "--model", Paths.Model("shakespeare-char"), "--backend", "cpu", option, value, "--out", path);
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        var line = Assert.Single(result.Error.Trim().Split('\n'));
        Assert.StartsWith($"error: --out: cannot write {path}: ", line);
        Assert.DoesNotContain(".tmp", line);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Verbose_adds_the_stack_trace()
    {
        var quiet = CliRunner.Run("inspect", "--model", "/no/such/model");
        var verbose = CliRunner.Run("inspect", "--model", "/no/such/model", "--verbose");
        Assert.DoesNotContain("   at ", quiet.Error);
        Assert.Contains("   at ", verbose.Error);
        Assert.StartsWith(quiet.Error.Split('\n')[0], verbose.Error);
    }
}
