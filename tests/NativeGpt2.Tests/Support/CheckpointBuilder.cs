using System.Text.Json.Nodes;
using NativeGpt2.Safetensors;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// Copies a reference checkpoint's tensors and config into memory so a test can change them
/// (drop, rename, reshape, edit the config) and write a new checkpoint directory.
/// </summary>
public sealed class CheckpointBuilder
{
    public List<(string Name, SafetensorsDType DType, long[] Shape, byte[] Data)> Tensors { get; } = [];

    public JsonObject Config { get; private set; } = new();

    public static CheckpointBuilder From(string modelDirectory)
    {
        var builder = new CheckpointBuilder
        {
            Config = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDirectory, "config.json")))!.AsObject(),
        };
        using var file = SafetensorsFile.Open(Path.Combine(modelDirectory, "model.safetensors"));
        foreach (var info in file.Header.Tensors)
        {
            var bytes = new byte[info.ByteLength];
            file.ReadBytes(info, bytes);
            builder.Tensors.Add((info.Name, info.DType, info.Shape, bytes));
        }
        return builder;
    }

    public CheckpointBuilder Remove(string name)
    {
        Tensors.RemoveAll(t => t.Name == name);
        return this;
    }

    public CheckpointBuilder Rename(string from, string to)
    {
        var i = Tensors.FindIndex(t => t.Name == from);
        Tensors[i] = Tensors[i] with { Name = to };
        return this;
    }

    public CheckpointBuilder Add(string name, SafetensorsDType dtype, long[] shape, byte[] data)
    {
        Tensors.Add((name, dtype, shape, data));
        return this;
    }

    public CheckpointBuilder Reshape(string name, long[] shape, byte[] data)
    {
        var i = Tensors.FindIndex(t => t.Name == name);
        Tensors[i] = Tensors[i] with { Shape = shape, Data = data };
        return this;
    }

    /// <summary>Writes config.json and model.safetensors into <paramref name="directory"/>.</summary>
    public string WriteTo(string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), Config.ToJsonString());
        var writer = new SafetensorsWriter().AddMetadata("format", "pt");
        foreach (var (name, dtype, shape, data) in Tensors) writer.Add(name, dtype, data, shape);
        writer.Save(Path.Combine(directory, "model.safetensors"));
        return directory;
    }

    /// <summary>
    /// gpt2-mini (the real GPT-2 tokenizer files) with <paramref name="rows"/> rows of wte, the extra ones small values as
    /// untrained rows are, and vocab_size saying so; with <paramref name="addedTokens"/> as added_tokens.json if given.
    /// Written into <paramref name="directory"/>, which it returns.
    /// </summary>
    public static string Gpt2MiniWithVocabRows(string directory, int rows, string? addedTokens = null)
    {
        var builder = CheckpointBuilder.From(Paths.Model("gpt2-mini"));
        var wte = builder.Tensors.Single(t => t.Name == "transformer.wte.weight");
        var data = new byte[rows * wte.Shape[1] * sizeof(float)];
        wte.Data.CopyTo(data, 0);
        var random = new Random(7);
        for (var i = wte.Data.Length; i < data.Length; i += sizeof(float))
            BitConverter.TryWriteBytes(data.AsSpan(i), (float)(random.NextDouble() - 0.5) * 0.02f);
        builder.Reshape("transformer.wte.weight", [rows, wte.Shape[1]], data);
        builder.Config["vocab_size"] = rows;
        builder.WriteTo(directory);
        foreach (var file in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(Paths.Model("gpt2-mini"), file), Path.Combine(directory, file));
        if (addedTokens is not null) File.WriteAllText(Path.Combine(directory, NativeGpt2.Tokenization.Gpt2Tokenizer.AddedTokensFile), addedTokens);
        return directory;
    }
}
