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
}
