using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Tests.Support;
using NativeGpt2.Tokenization;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

/// <summary>
/// Mutates the valid reference checkpoints, configs, shard indexes and tokenizer files (bit flips,
/// truncation, header and field edits, offset swaps, duplicated JSON keys, files past their size cap)
/// and loads the result. Loading must either succeed
/// or raise one of NativeGpt2's typed exceptions, and must never hang. 5,500 cases in all.
/// </summary>
public class FuzzTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(20);
    private readonly TempDirectory _temp = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _outcomes = new();

    /// <summary>Reports how the cases ended, so a fuzzer that only ever hits one error path is noticed.</summary>
    public void Dispose()
    {
        foreach (var (outcome, count) in _outcomes.OrderByDescending(o => o.Value))
            output.WriteLine($"{count,6}  {outcome}");
        _temp.Dispose();
    }

    private void Count(string outcome) => _outcomes.AddOrUpdate(outcome, 1, (_, n) => n + 1);

    private static readonly string[] CheckpointModels = ["tiny", "tiny-untied", "tiny-hub", "tiny-fp16", "tiny-bf16", "odd"];

    private static readonly Dictionary<string, byte[]> Weights = CheckpointModels.ToDictionary(m => m, m => File.ReadAllBytes(Path.Combine(Paths.Model(m), "model.safetensors")));
    private static readonly Dictionary<string, string> Configs = CheckpointModels.ToDictionary(m => m, m => File.ReadAllText(Path.Combine(Paths.Model(m), "config.json")));

    public enum Mutation { BitFlips, Truncate, HeaderLength, HeaderNumber, HeaderText, SwapOffsets, DTypeEdit, DuplicateKey }

    [Property(MaxTest = 3000)]
    public Property Mutated_checkpoints_load_or_fail_with_a_typed_error() =>
        Prop.ForAll((from model in Gen.Elements(CheckpointModels)
                     from mutation in Gen.Elements(Enum.GetValues<Mutation>())
                     from seed in Gen.Choose(0, int.MaxValue)
                     select (model, mutation, seed)).ToArbitrary(), c =>
        {
            var (model, mutation, seed) = c;
            var bytes = MutateCheckpoint(Weights[model], mutation, new Random(seed));
            var directory = Prepare($"ckpt", Configs[model]);
            File.WriteAllBytes(Path.Combine(directory, "model.safetensors"), bytes);
            LoadExpectingSuccessOrTypedError(directory, $"{model} {mutation} {seed}");
        });

    [Property(MaxTest = 1500)]
    public Property Mutated_configs_load_or_fail_with_a_typed_error() =>
        Prop.ForAll((from model in Gen.Elements("tiny", "odd", "tiny-untied")
                     from seed in Gen.Choose(0, int.MaxValue)
                     select (model, seed)).ToArbitrary(), c =>
        {
            var (model, seed) = c;
            var config = MutateConfig(Configs[model], new Random(seed));
            var directory = Prepare("config", config);
            File.WriteAllBytes(Path.Combine(directory, "model.safetensors"), Weights[model]);
            LoadExpectingSuccessOrTypedError(directory, $"{model} config {seed}");
        });

    [Property(MaxTest = 500)]
    public Property Mutated_shard_indexes_load_or_fail_with_a_typed_error() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var directory = Path.Combine(_temp.Path, "sharded");
            if (!Directory.Exists(directory))
            {
                Directory.CreateDirectory(directory);
                foreach (var file in Directory.GetFiles(Paths.Model("tiny-sharded"))) File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
            }
            var original = File.ReadAllText(Path.Combine(Paths.Model("tiny-sharded"), "model.safetensors.index.json"));
            File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"), MutateIndex(original, random));
            LoadExpectingSuccessOrTypedError(directory, $"index {seed}");
        });

    [Property(MaxTest = 500)]
    public Property Mutated_tokenizer_files_load_or_fail_with_a_typed_error() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var directory = Path.Combine(_temp.Path, "tokenizer");
            Directory.CreateDirectory(directory);
            var vocab = File.ReadAllText(Path.Combine(Paths.Model("shakespeare-char"), "vocab.json"))
                .Replace("\"<|endoftext|>\": 65", "\"ab\": 65, \"abc\": 66, \"<|endoftext|>\": 67");
            var merges = "#version: 0.2\na b\nab c\n";
            switch (random.Next(5))
            {
                case 0: vocab = DuplicateKey(vocab, random); break;
                case 1 or 2: vocab = MutateText(vocab, random); break;
                default: merges = MutateText(merges, random); break;
            }
            File.WriteAllText(Path.Combine(directory, "vocab.json"), vocab);
            File.WriteAllText(Path.Combine(directory, "merges.txt"), merges);
            TokenizerLoadsOrFailsTyped(directory, $"tokenizer {seed}");
        });

    [Property(MaxTest = 500)]
    public Property Mutated_tokenizer_json_files_load_or_fail_with_a_typed_error() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var directory = Path.Combine(_temp.Path, "tokenizer-json");
            Directory.CreateDirectory(directory);
            var vocab = File.ReadAllText(Path.Combine(Paths.Model("shakespeare-char"), "vocab.json"))
                .Replace("\"<|endoftext|>\": 65", "\"ab\": 65, \"abc\": 66, \"<|endoftext|>\": 67");
            var json = $$$"""
                {"version": "1.0", "added_tokens": [{"id": 67, "content": "<|endoftext|>", "special": true}, {"id": 68, "content": "<|pad|>", "special": true}],
                 "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
                 "model": {"type": "BPE", "dropout": null, "continuing_subword_prefix": "", "end_of_word_suffix": "", "byte_fallback": false,
                           "vocab": {{{vocab}}}, "merges": ["a b", ["ab", "c"]]}}
                """;
            json = random.Next(3) == 0 ? DuplicateKey(json, random) : MutateText(json, random);
            File.WriteAllText(Path.Combine(directory, Gpt2Tokenizer.TokenizerJsonFile), json);
            TokenizerLoadsOrFailsTyped(directory, $"tokenizer.json {seed}");
        });

    /// <summary>
    /// The directory's tokenizer loads, then encodes and decodes without failing (what it maps "abc" to may change), or
    /// its loading fails with a <see cref="NativeGpt2Exception"/>; anything else fails the case.
    /// </summary>
    private void TokenizerLoadsOrFailsTyped(string directory, string label) =>
        Guard.Within(CaseLimit, () =>
        {
            try
            {
                var tokenizer = Gpt2Tokenizer.TryLoad(directory);
                tokenizer?.Decode(tokenizer.Encode("abc ab a, <|endoftext|><|pad|>", allowSpecialTokens: true));
                Count("loaded");
            }
            catch (NativeGpt2Exception e)
            {
                Count(e.GetType().Name);
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"{label}: untyped {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
        }, label);

    private string Prepare(string name, string config)
    {
        var directory = Path.Combine(_temp.Path, name);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), config);
        return directory;
    }

    private void LoadExpectingSuccessOrTypedError(string directory, string what) =>
        Guard.Within(CaseLimit, () =>
        {
            try
            {
                using var model = Gpt2CausalLM.Load(directory);
                // A file that loads is a usable model: a forward pass runs (values may be anything).
                var logits = model.Forward(TokenBatch.FromIds([0, 1])).Logits;
                Assert.Equal(model.Config.VocabSize, logits.Shape[2]);
                Count("loaded");
            }
            catch (NativeGpt2Exception e)
            {
                // A typed error: what a bad file must give.
                Count(e.GetType().Name);
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"{what}: untyped {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
        }, what);

    private static byte[] MutateCheckpoint(byte[] original, Mutation mutation, Random random)
    {
        var bytes = (byte[])original.Clone();
        var headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        var headerEnd = 8 + headerLength;
        switch (mutation)
        {
            case Mutation.BitFlips:
                for (var i = random.Next(1, 9); i > 0; i--)
                {
                    // Mostly in the header, where a flip changes structure rather than a weight.
                    var at = random.Next(4) == 0 ? random.Next(bytes.Length) : random.Next(Math.Min(headerEnd, bytes.Length));
                    bytes[at] ^= (byte)(1 << random.Next(8));
                }
                return bytes;
            case Mutation.Truncate:
                return bytes[..random.Next(bytes.Length)];
            case Mutation.HeaderLength:
                var lengths = new ulong[] { 0, 1, 7, (ulong)headerLength - 1, (ulong)headerLength + 1, (ulong)bytes.Length, 100_000_001, ulong.MaxValue, (ulong)random.NextInt64() };
                BitConverter.GetBytes(lengths[random.Next(lengths.Length)]).CopyTo(bytes, 0);
                return bytes;
            case Mutation.HeaderNumber:
                return ReplaceHeader(bytes, headerLength, header =>
                {
                    var numbers = System.Text.RegularExpressions.Regex.Matches(header, @"\d+");
                    var target = numbers[random.Next(numbers.Count)];
                    string[] replacements = ["0", "1", "-1", "4", "99999999999999999999", "18446744073709551615", "9223372036854775807", "2147483648", "1.5", "1e3", (long.Parse(target.Value.Length > 18 ? "1" : target.Value) + random.Next(-8, 9)).ToString()];
                    return header[..target.Index] + replacements[random.Next(replacements.Length)] + header[(target.Index + target.Length)..];
                });
            case Mutation.HeaderText:
                return ReplaceHeader(bytes, headerLength, header => MutateText(header, random));
            case Mutation.SwapOffsets:
                return ReplaceHeader(bytes, headerLength, header =>
                {
                    var offsets = System.Text.RegularExpressions.Regex.Matches(header, @"\[\d+,\s*\d+\]");
                    var a = offsets[random.Next(offsets.Count)];
                    var b = offsets[random.Next(offsets.Count)];
                    if (a.Index > b.Index) (a, b) = (b, a);
                    if (a.Index == b.Index) return header;
                    return header[..a.Index] + b.Value + header[(a.Index + a.Length)..b.Index] + a.Value + header[(b.Index + b.Length)..];
                });
            case Mutation.DTypeEdit:
                return ReplaceHeader(bytes, headerLength, header =>
                {
                    var dtypes = System.Text.RegularExpressions.Regex.Matches(header, "\"dtype\":\\s*\"[A-Z0-9_]+\"");
                    var target = dtypes[random.Next(dtypes.Count)];
                    string[] replacements = ["F64", "F16", "BF16", "I32", "U8", "BOOL", "F8_E4M3", "f32", "F128", "", "F32"];
                    return header[..target.Index] + $"\"dtype\":\"{replacements[random.Next(replacements.Length)]}\"" + header[(target.Index + target.Length)..];
                });
            case Mutation.DuplicateKey:
                return ReplaceHeader(bytes, headerLength, header => DuplicateKey(header, random));
            default:
                throw new ArgumentOutOfRangeException(nameof(mutation));
        }
    }

    /// <summary>Rewrites the JSON header and its length prefix, keeping the data section.</summary>
    private static byte[] ReplaceHeader(byte[] bytes, int headerLength, Func<string, string> edit)
    {
        var header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        var edited = Encoding.UTF8.GetBytes(edit(header));
        return [.. BitConverter.GetBytes((ulong)edited.Length), .. edited, .. bytes[(8 + headerLength)..]];
    }

    private const string Inserts = "{}[]\",:-0123456789aé\0\\ ";

    private static string MutateText(string text, Random random)
    {
        var chars = text.ToCharArray().ToList();
        for (var edits = random.Next(1, 4); edits > 0 && chars.Count > 0; edits--)
        {
            var at = random.Next(chars.Count);
            switch (random.Next(4))
            {
                case 0: chars.RemoveAt(at); break;
                case 1: chars.Insert(at, Inserts[random.Next(Inserts.Length)]); break;
                case 2: chars[at] = (char)(chars[at] ^ (1 << random.Next(7))); break;
                default: chars.RemoveRange(at, chars.Count - at); break;
            }
        }
        return new string(chars.ToArray());
    }

    /// <summary>Repeats one "key": value pair right after itself, at any depth: the JSON stays well-formed.</summary>
    private static string DuplicateKey(string json, Random random)
    {
        var pairs = System.Text.RegularExpressions.Regex.Matches(json, @"""[^""\\]*""\s*:\s*(""[^""\\]*""|-?[0-9.eE+-]+|true|false|null|\[[^\[\]{}]*\])");
        if (pairs.Count == 0) return json;
        var pair = pairs[random.Next(pairs.Count)];
        var copy = random.Next(2) == 0 ? pair.Value : pair.Value[..(pair.Value.IndexOf(':') + 1)] + "0";
        return json[..(pair.Index + pair.Length)] + "," + copy + json[(pair.Index + pair.Length)..];
    }

    /// <summary>Pads the text with spaces (still valid JSON) past the loader's cap for its kind of file.</summary>
    private static string Oversize(string json, long cap) => json + new string(' ', (int)(cap - json.Length + 1));

    private static string MutateJson(string json, Random random, long cap) => random.Next(12) switch
    {
        0 => Oversize(json, cap),
        1 or 2 => DuplicateKey(json, random),
        _ => json,
    };

    private static string MutateConfig(string config, Random random)
    {
        if (random.Next(8) == 0) return MutateJson(config, random, NativeGpt2.Loading.ModelFiles.MaxConfigBytes);
        if (random.Next(4) == 0) return MutateText(config, random);
        var json = System.Text.Json.Nodes.JsonNode.Parse(config)!.AsObject();
        string[] fields = ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "activation_function",
                           "tie_word_embeddings", "bos_token_id", "eos_token_id", "model_type", "scale_attn_weights"];
        System.Text.Json.Nodes.JsonNode?[] values = [-1, 0, 1, 2, 3, 4, 5, 8, 31, 32, 33, 40, 64, 127, 128, 129, 511, 512, 1003, 2048, int.MaxValue, 1e30, 0.5,
            "32", "gelu", "gelu_new", "relu", null, true, false, new System.Text.Json.Nodes.JsonArray(), new System.Text.Json.Nodes.JsonObject()];
        for (var edits = random.Next(1, 4); edits > 0; edits--)
        {
            var field = fields[random.Next(fields.Length)];
            if (random.Next(6) == 0) json.Remove(field);
            else json[field] = values[random.Next(values.Length)]?.DeepClone();
        }
        return json.ToJsonString();
    }

    private static string MutateIndex(string index, Random random)
    {
        if (random.Next(6) == 0) return MutateJson(index, random, NativeGpt2.Loading.ModelFiles.MaxIndexBytes);
        if (random.Next(3) == 0) return MutateText(index, random);
        var json = System.Text.Json.Nodes.JsonNode.Parse(index)!.AsObject();
        var map = json["weight_map"]!.AsObject();
        var names = map.Select(p => p.Key).ToList();
        string[] shards = ["model-00001-of-00005.safetensors", "model-00003-of-00005.safetensors", "model-00009-of-00005.safetensors",
                           "../model-00001-of-00005.safetensors", "/tmp/x", "a/b", "", "."];
        for (var edits = random.Next(1, 4); edits > 0; edits--)
        {
            var name = names[random.Next(names.Count)];
            switch (random.Next(3))
            {
                case 0: map[name] = shards[random.Next(shards.Length)]; break;
                case 1: map.Remove(name); names.Remove(name); break;
                default: map["h.99.extra"] = shards[random.Next(shards.Length)]; break;
            }
            if (names.Count == 0) break;
        }
        return json.ToJsonString();
    }
}
