using System.Text.Json;
using System.Text.Json.Nodes;

namespace NativeGpt2.Tests.Support;

/// <summary>A Hugging Face tokenizer.json for GPT-2's pipeline, written from a model's vocab.json and merges.txt.</summary>
public static class TokenizerJson
{
    /// <summary>
    /// The tokenizer.json of <paramref name="modelDirectory"/>'s vocab.json and merges.txt, as <c>tokenizers</c> saves GPT-2's:
    /// no normalizer, a ByteLevel pre-tokenizer and decoder, a BPE model; merges as "a b" strings, or as ["a", "b"] pairs.
    /// </summary>
    public static string FromVocabularyFiles(string modelDirectory, bool mergesAsPairs, Action<JsonObject>? edit = null)
    {
        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDirectory, "vocab.json")))!.AsObject();
        var merges = new JsonArray();
        foreach (var line in File.ReadLines(Path.Combine(modelDirectory, "merges.txt")))
        {
            if (line.Length == 0 || line.StartsWith("#version", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ');
            merges.Add(mergesAsPairs ? new JsonArray(parts[0], parts[1]) : JsonValue.Create(line));
        }
        var added = new JsonArray();
        if (vocab.TryGetPropertyValue("<|endoftext|>", out var endOfText))
            added.Add(new JsonObject { ["id"] = endOfText!.GetValue<int>(), ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = true, ["special"] = true });
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocab.DeepClone(),
                ["merges"] = merges,
            },
        };
        edit?.Invoke(root);
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
    }
}
