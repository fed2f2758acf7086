using System.Text.Json.Nodes;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

public class ShardIndexRulesTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public ShardIndexRulesTests()
    {
        foreach (var file in Directory.GetFiles(Paths.Model("tiny-sharded")))
            File.Copy(file, _temp.File(Path.GetFileName(file)));
    }

    public void Dispose() => _temp.Dispose();

    private string IndexPath => _temp.File("model.safetensors.index.json");

    private void EditIndex(Action<JsonObject> edit)
    {
        var index = JsonNode.Parse(File.ReadAllText(IndexPath))!.AsObject();
        edit(index["weight_map"]!.AsObject());
        File.WriteAllText(IndexPath, index.ToJsonString());
    }

    [Fact]
    public void The_unmodified_copy_loads() => Gpt2CausalLM.Load(_temp.Path).Dispose();

    [Theory]
    [InlineData("../model-00001-of-00005.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("sub/model-00001-of-00005.safetensors")]
    [InlineData("sub\\model-00001-of-00005.safetensors")]
    [InlineData("..")]
    public void Shard_names_that_leave_the_directory_are_rejected(string shard)
    {
        EditIndex(map => map["transformer.wte.weight"] = shard);
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(_temp.Path));
        Assert.Equal(IndexPath, error.FilePath);
        Assert.Equal("weight_map.transformer.wte.weight", error.Field);
    }

    [Fact]
    public void A_missing_shard_file_is_named()
    {
        File.Delete(_temp.File("model-00003-of-00005.safetensors"));
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(_temp.Path));
        Assert.Equal(IndexPath, error.FilePath);
        Assert.Contains("model-00003-of-00005.safetensors", error.Message);
        Assert.Contains("does not exist", error.Message);
    }

    [Fact]
    public void A_tensor_missing_from_the_shard_that_should_hold_it()
    {
        EditIndex(map => map["transformer.wte.weight"] = "model-00002-of-00005.safetensors");
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(_temp.Path));
        Assert.Equal("weight_map.transformer.wte.weight", error.Field);
        Assert.Contains("does not contain it", error.Message);
    }

    [Fact]
    public void One_tensor_in_two_shards()
    {
        // Shard 5 gets a second copy of wte.weight (from shard 1).
        var builder = new CheckpointBuilder();
        using (var one = NativeGpt2.Safetensors.SafetensorsFile.Open(_temp.File("model-00001-of-00005.safetensors")))
        using (var five = NativeGpt2.Safetensors.SafetensorsFile.Open(_temp.File("model-00005-of-00005.safetensors")))
        {
            foreach (var (file, info) in five.Header.Tensors.Select(t => (five, t)).Append((one, one.GetInfo("transformer.wte.weight"))))
            {
                var bytes = new byte[info.ByteLength];
                file.ReadBytes(info, bytes);
                builder.Add(info.Name, info.DType, info.Shape, bytes);
            }
        }
        var writer = new NativeGpt2.Safetensors.SafetensorsWriter();
        foreach (var (name, dtype, shape, data) in builder.Tensors) writer.Add(name, dtype, data, shape);
        writer.Save(_temp.File("model-00005-of-00005.safetensors"));

        var error = Assert.Throws<CheckpointMismatchException>(() => Gpt2CausalLM.Load(_temp.Path));
        Assert.Contains(error.Problems, p => p.StartsWith("wte.weight: stored twice") && p.Contains("model-00005-of-00005.safetensors"));
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"weight_map\": []}")]
    [InlineData("{\"weight_map\": {}}")]
    [InlineData("{\"weight_map\": {\"transformer.wte.weight\": 3}}")]
    [InlineData("not json")]
    public void Malformed_indexes_are_rejected(string content)
    {
        File.WriteAllText(IndexPath, content);
        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(_temp.Path));
        Assert.Equal(IndexPath, error.FilePath);
    }
}
