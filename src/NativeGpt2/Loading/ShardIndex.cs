using System.Text.Json;

namespace NativeGpt2.Loading;

/// <summary>
/// <c>model.safetensors.index.json</c> of a sharded checkpoint: which shard file holds each tensor.
/// Shard names are plain file names in the checkpoint's directory; anything that could reach outside
/// it (<c>..</c>, an absolute path, a directory separator) is rejected.
/// </summary>
internal sealed class ShardIndex
{
    public const string FileName = "model.safetensors.index.json";

    private ShardIndex(IReadOnlyDictionary<string, string> weightMap) => WeightMap = weightMap;

    /// <summary>Tensor name → shard file name.</summary>
    public IReadOnlyDictionary<string, string> WeightMap { get; }

    /// <summary>The distinct shard file names, in first-mention order.</summary>
    public IEnumerable<string> Shards => WeightMap.Values.Distinct();

    public static ShardIndex Load(string path)
    {
        using (var document = JsonFile.Read(path))
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map)
                || map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, "weight_map", "missing, or not an object of tensor name to shard file");
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException(path, $"weight_map.{entry.Name}", $"shard must be a file name string, found {entry.Value.ValueKind}");
                var shard = entry.Value.GetString()!;
                CheckShardName(shard, path, entry.Name);
                if (!weightMap.TryAdd(entry.Name, shard))
                    throw new ModelFormatException(path, $"weight_map.{entry.Name}", "tensor is listed twice");
            }
            if (weightMap.Count == 0)
                throw new ModelFormatException(path, "weight_map", "lists no tensors");
            return new ShardIndex(weightMap);
        }
    }

    private static void CheckShardName(string shard, string path, string tensor)
    {
        var field = $"weight_map.{tensor}";
        if (shard.Length == 0 || shard == "." || shard == "..")
            throw new ModelFormatException(path, field, $"'{shard}' is not a file name");
        if (shard.Contains("..") || Path.IsPathRooted(shard) || shard.IndexOfAny(['/', '\\', '\0']) >= 0 || shard.Contains(':'))
            throw new ModelFormatException(path, field, $"shard '{shard}' must be a plain file name in the checkpoint directory (no '..', separators or absolute paths)");
    }
}
