using System.Text.Json;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Cli;

/// <summary>
/// <c>--json</c> of inspect, verify, crosscheck and top: the same facts as the table, one object a script can read, and
/// the same exit code.
/// </summary>
public class JsonOutputTests
{
    private static JsonElement Parse(CliRunner.Result result)
    {
        var line = Assert.Single(result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        return JsonDocument.Parse(line).RootElement;
    }

    [Fact]
    public void Inspect_json_holds_the_config_with_config_json_names_and_every_tensor_with_its_role()
    {
        var model = Models.Get("tiny-hub");
        var table = CliRunner.Run("inspect", "--model", Paths.Model("tiny-hub"));
        var result = CliRunner.Run("inspect", "--model", Paths.Model("tiny-hub"), "--json");

        Assert.Equal(CliApp.Success, result.ExitCode);
        var json = Parse(result);
        var config = json.GetProperty("config");
        Assert.Equal(model.Config.VocabSize, config.GetProperty("vocab_size").GetInt32());
        Assert.Equal(model.Config.ContextLength, config.GetProperty("n_positions").GetInt32());
        Assert.Equal(model.Config.EmbeddingSize, config.GetProperty("n_embd").GetInt32());
        Assert.Equal(model.Config.LayerCount, config.GetProperty("n_layer").GetInt32());
        Assert.Equal(model.Config.HeadCount, config.GetProperty("n_head").GetInt32());
        Assert.Equal(model.Config.LayerNormEpsilon, config.GetProperty("layer_norm_epsilon").GetDouble());
        Assert.Equal(model.Config.ParameterCount, json.GetProperty("parameters").GetInt64());
        Assert.True(json.GetProperty("tied").GetBoolean());
        Assert.Equal(["F32"], json.GetProperty("dtypes").EnumerateArray().Select(d => d.GetString()));

        var tensors = json.GetProperty("tensors").EnumerateArray().ToArray();
        foreach (var tensor in tensors)
            Assert.Contains(tensor.GetProperty("name").GetString()!, table.Out);
        var buffer = tensors.Single(t => t.GetProperty("name").GetString()!.EndsWith("h.0.attn.bias"));
        Assert.Equal("ignored_buffer", buffer.GetProperty("role").GetString());
        Assert.Equal([1L, 1, 128, 128], buffer.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal("weight", tensors.Single(t => t.GetProperty("name").GetString()!.EndsWith("wte.weight")).GetProperty("role").GetString());
    }

    [Theory]
    [InlineData("1e-4", CliApp.Success)]
    [InlineData("0", CliApp.BadInput)]
    public void Verify_json_lists_each_tensor_and_fails_as_the_table_does(string tolerance, int exitCode)
    {
        string[] verify = ["verify", "--model", Paths.Model("tiny"), "--backend", "cpu", "--reference", Paths.Ref("tiny.single.safetensors"), "--tolerance", tolerance];
        var table = CliRunner.Run(verify);
        var result = CliRunner.Run([.. verify, "--json"]);

        Assert.Equal(exitCode, table.ExitCode);
        Assert.Equal(exitCode, result.ExitCode);
        var json = Parse(result);
        Assert.Equal(exitCode == CliApp.Success, json.GetProperty("ok").GetBoolean());
        Assert.Equal("cpu", json.GetProperty("backend").GetString());
        var tensors = json.GetProperty("tensors").EnumerateArray().ToArray();
        Assert.Contains(tensors, t => t.GetProperty("name").GetString() == "logits");
        foreach (var tensor in tensors)
        {
            var name = tensor.GetProperty("name").GetString()!;
            Assert.Contains(name, table.Out);
            Assert.True(tensor.GetProperty("compared").GetInt64() > 0, name);
            Assert.Equal(tensor.GetProperty("max_abs_diff").GetDouble() <= double.Parse(tolerance, System.Globalization.CultureInfo.InvariantCulture), tensor.GetProperty("ok").GetBoolean());
        }
    }

    [Fact]
    public void Crosscheck_json_names_the_backends_and_every_comparison()
    {
        string[] crosscheck = ["crosscheck", "--model", Paths.Model("tiny"), "--backends", "cpu,ilgpu-cpu", "--ids", "1,2,3,4,5"];
        var table = CliRunner.Run(crosscheck);
        var result = CliRunner.Run([.. crosscheck, "--json"]);

        Assert.Equal(CliApp.Success, result.ExitCode);
        var json = Parse(result);
        Assert.True(json.GetProperty("ok").GetBoolean());
        Assert.Equal(5, json.GetProperty("tokens").GetInt32());
        Assert.Equal(["cpu", "ilgpu-cpu"], json.GetProperty("backends").EnumerateArray().Select(b => b.GetProperty("name").GetString()));
        var comparisons = json.GetProperty("comparisons").EnumerateArray().ToArray();
        // The table's rows are the lines naming the pair.
        Assert.Equal(table.Out.Split('\n').Count(line => line.Contains(" cpu vs ilgpu-cpu ")), comparisons.Length);
        Assert.All(comparisons, c => Assert.Equal(("cpu", "ilgpu-cpu"), (c.GetProperty("first").GetString(), c.GetProperty("second").GetString())));
    }

    [Fact]
    public void Top_json_lists_the_likeliest_tokens_in_order_with_their_probabilities_and_logits()
    {
        var model = Models.Get("shakespeare-char");
        const string Text = "JULIET:\nO Rome";
        var ids = model.Tokenizer!.Encode(Text);
        var logits = model.Forward(TokenBatch.FromIds(ids)).Logits.Row(0, ids.Length - 1).ToArray();

        var result = CliRunner.Run("top", "--model", Paths.Model("shakespeare-char"), "--text", Text, "--k", "4", "--json");

        Assert.Equal(CliApp.Success, result.ExitCode);
        var json = Parse(result);
        Assert.Equal(ids.Length, json.GetProperty("tokens").GetInt32());
        var top = json.GetProperty("top").EnumerateArray().ToArray();
        Assert.Equal(4, top.Length);
        Assert.Equal(logits.Select((l, i) => (l, i)).OrderByDescending(p => p.l).Take(4).Select(p => p.i), top.Select(t => t.GetProperty("id").GetInt32()));
        Assert.All(top, t => Assert.Equal(logits[t.GetProperty("id").GetInt32()], t.GetProperty("logit").GetSingle()));
        var probabilities = top.Select(t => t.GetProperty("probability").GetDouble()).ToArray();
        Assert.Equal(probabilities.OrderByDescending(p => p), probabilities);
        Assert.True(probabilities.Sum() <= 1 + 1e-12);
        Assert.All(top, t => Assert.Equal(model.Tokenizer.Decode([t.GetProperty("id").GetInt32()]), t.GetProperty("text").GetString()));
    }

    [Fact]
    public void A_difference_that_is_not_a_number_is_written_as_a_string_not_refused()
    {
        var output = new StringWriter();
        CliJson.Write(output, new Dictionary<string, object?> { ["max_abs_diff"] = double.NaN, ["max_rel_diff"] = double.PositiveInfinity, ["ok"] = false });
        Assert.Equal("""{"max_abs_diff":"NaN","max_rel_diff":"Infinity","ok":false}""", output.ToString().Trim());
    }
}
