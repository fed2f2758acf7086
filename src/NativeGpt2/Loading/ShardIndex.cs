using System.Text.Json;

namespace NativeGpt2.Loading;

/// <summary>
/// <c>model.safetensors.index.json</c> of a sharded checkpoint: which shard file holds each tensor.
/// Shard names are plain file names in the checkpoint's directory (<see cref="IsPlainFileName"/>).
/// </summary>
internal sealed class ShardIndex
{
    public const string FileName = "model.safetensors.index.json";

    private ShardIndex(IReadOnlyDictionary<string, string> weightMap) => WeightMap = weightMap;

    /// <summary>Tensor name → shard file name.</summary>
    public IReadOnlyDictionary<string, string> WeightMap { get; }

    /// <summary>The distinct shard file names, in first-mention order.</summary>
    public IEnumerable<string> Shards => WeightMap.Values.Distinct();

    public static ShardIndex Load(string path, string? checkpoint = null)
    {
        using (var document = JsonFile.Read(path, ModelFiles.MaxIndexBytes, checkpoint))
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
                weightMap.Add(entry.Name, shard);   // JsonFile.Parse has rejected duplicate names
            }
            if (weightMap.Count == 0)
                throw new ModelFormatException(path, "weight_map", "lists no tensors");
            return new ShardIndex(weightMap);
        }
    }

    /// <summary>
    /// A shard name becomes a path in the checkpoint directory and, on the hub, a URL path segment: only
    /// plain file names qualify, letters, digits and <c>. _ - +</c>, not starting with a dot. Anything else
    /// (separators, <c>..</c>, <c>%</c> escapes, <c>?</c> or <c>#</c>, control characters) is rejected before
    /// any file is opened or any request is made.
    /// </summary>
    internal static bool IsPlainFileName(string name) =>
        name.Length is > 0 and <= 255 && name[0] != '.' && !name.Contains("..")
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '+');

    private static void CheckShardName(string shard, string path, string tensor)
    {
        if (!IsPlainFileName(shard))
            throw new ModelFormatException(path, $"weight_map.{tensor}",
                $"shard '{shard}' must be a plain file name in the checkpoint directory (letters, digits and . _ - +; no separators, '..', '%', '?' or '#')");
    }
}
