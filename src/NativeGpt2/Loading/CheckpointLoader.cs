using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using NativeGpt2.Safetensors;
using NativeGpt2.Weights;

namespace NativeGpt2.Loading;

/// <summary>
/// Loads a Hugging Face GPT-2 checkpoint directory: <c>config.json</c> and either <c>model.safetensors</c>
/// or a sharded <c>model.safetensors.index.json</c>. Every tensor is checked against the config before
/// any is read, and all problems are reported together.
/// </summary>
internal static partial class CheckpointLoader
{
    public const string ConfigFileName = "config.json";

    /// <summary>Where transformers keeps the special ids <c>generate</c> uses (<see cref="Gpt2Config.WithGenerationConfig"/>).</summary>
    public const string GenerationConfigFileName = "generation_config.json";
    public const string SingleFileName = "model.safetensors";

    // Causal-mask buffers that older checkpoints saved as if they were weights.
    [GeneratedRegex(@"^h\.\d+\.attn\.(bias|masked_bias)$")]
    private static partial Regex AttentionBuffer();

    private const string Prefix = "transformer.";

    /// <summary>The config and weights of a checkpoint directory; <paramref name="cancellationToken"/> stops it between tensors.</summary>
    public static (Gpt2Config Config, Gpt2Weights Weights) Load(string directory, ILogger logger, IProgress<LoadProgress>? progress,
        WeightStorage? storage = null, CancellationToken cancellationToken = default) =>
        WithCheckpoint(directory, logger, (config, files) =>
        {
            var (tensors, duplicates) = Catalogue(files, directory);
            return (config, Read(config, directory, tensors, duplicates, logger, progress, storage ?? WeightStorage.Plain, cancellationToken));
        });

    /// <summary>
    /// Reads the config, opens the checkpoint's files, runs <paramref name="use"/>, and closes every file
    /// whatever happens, so a failed load leaves no handle open.
    /// </summary>
    private static T WithCheckpoint<T>(string directory, ILogger logger, Func<Gpt2Config, List<SafetensorsFile>, T> use)
    {
        var configPath = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(configPath))
            throw new ModelNotFoundException(directory, $"no {ConfigFileName} in this directory");
        var config = WithGenerationConfig(Gpt2Config.Load(configPath, directory), directory, logger);
        var files = OpenCheckpoint(directory, logger);
        try
        {
            return use(config, files);
        }
        finally
        {
            foreach (var file in files) file.Dispose();
        }
    }

    /// <summary>
    /// <paramref name="config"/> with the special ids of the directory's generation_config.json, if it has one. A file that
    /// cannot be used (malformed, or an id outside the vocabulary) is skipped with a warning, as transformers falls back to
    /// the model's config then: the model itself is sound, and config.json's ids stand.
    /// </summary>
    private static Gpt2Config WithGenerationConfig(Gpt2Config config, string directory, ILogger logger)
    {
        var path = Path.Combine(directory, GenerationConfigFileName);
        if (!File.Exists(path)) return config;
        try
        {
            return config.WithGenerationConfig(ModelFiles.ReadBounded(path, ModelFiles.MaxConfigBytes, directory), path);
        }
        catch (ModelFormatException e)
        {
            logger.LogWarning("{Problem}; using config.json's special ids instead", e.Message);
            return config;
        }
    }

    /// <summary>Describes a checkpoint directory from its config and headers, reading no weights; <paramref name="logger"/> hears of a generation_config.json skipped.</summary>
    public static ModelDescription Describe(string directory, ILogger logger) =>
        WithCheckpoint(directory, logger, (config, files) =>
        {
            var expected = Gpt2Weights.ExpectedTensors(config).Select(e => e.Name).ToHashSet();
            var (catalogue, problems) = Catalogue(files, directory);
            AddTensorProblems(config, catalogue, problems);
            var tensors = new List<TensorDescription>();
            foreach (var file in files)
            {
                foreach (var info in file.Header.Tensors)
                {
                    var name = CanonicalName(info.Name);
                    var role = expected.Contains(name) ? TensorRole.Weight
                        : AttentionBuffer().IsMatch(name) ? TensorRole.IgnoredBuffer
                        : name == "lm_head.weight" ? TensorRole.IgnoredTiedHead
                        : TensorRole.Unused;
                    tensors.Add(new TensorDescription(name, info.Name, info.DType.ToString(), info.Shape, Path.GetFileName(file.Path), role));
                }
            }
            return new ModelDescription(directory, config, files.Select(f => (Path.GetFileName(f.Path), f.FileLength)).ToList(), tensors)
            {
                Problems = problems,
            };
        });

    private static string CanonicalName(string stored) =>
        stored.StartsWith(Prefix, StringComparison.Ordinal) ? stored[Prefix.Length..] : stored;

    /// <summary>
    /// Opens the single file or every shard; if any fails, the ones already open are closed. A folder holding both is
    /// read from its single file, as transformers' <c>from_pretrained</c> and the hub download read it.
    /// </summary>
    private static List<SafetensorsFile> OpenCheckpoint(string directory, ILogger logger)
    {
        var indexPath = Path.Combine(directory, ShardIndex.FileName);
        var singlePath = Path.Combine(directory, SingleFileName);
        var files = new List<SafetensorsFile>();
        try
        {
            if (File.Exists(singlePath))
            {
                if (File.Exists(indexPath))
                    logger.LogInformation("{Directory} holds both {Single} and {Index}: reading {Single}, as transformers does", directory, SingleFileName, ShardIndex.FileName, SingleFileName);
                files.Add(SafetensorsFile.Open(singlePath, directory));
            }
            else if (File.Exists(indexPath))
            {
                var index = ShardIndex.Load(indexPath, directory);
                foreach (var shard in index.Shards)
                {
                    var shardPath = Path.Combine(directory, shard);
                    if (!File.Exists(shardPath))
                        throw new ModelFormatException(indexPath, "weight_map", $"shard file '{shard}' does not exist");
                    files.Add(SafetensorsFile.Open(shardPath, directory));
                }
                CheckIndexAgainstShards(index, indexPath, files);
            }
            else
            {
                var other = new[] { "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack" }.FirstOrDefault(f => File.Exists(Path.Combine(directory, f)));
                var hint = other is null ? "" : $" ({other} is present, but only safetensors checkpoints are read)";
                throw new ModelNotFoundException(directory, $"neither {SingleFileName} nor {ShardIndex.FileName} in this directory{hint}");
            }
            return files;
        }
        catch
        {
            foreach (var file in files) file.Dispose();
            throw;
        }
    }

    private static void CheckIndexAgainstShards(ShardIndex index, string indexPath, List<SafetensorsFile> files)
    {
        var byName = files.ToDictionary(f => Path.GetFileName(f.Path));
        foreach (var (tensor, shard) in index.WeightMap)
        {
            if (!byName[shard].Header.ByName.ContainsKey(tensor))
                throw new ModelFormatException(indexPath, $"weight_map.{tensor}", $"the index places this tensor in '{shard}', which does not contain it");
        }
    }

    /// <summary>Maps canonical names (no <c>transformer.</c> prefix) to where each tensor is stored.</summary>
    private static (Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)> Tensors, List<string> Problems)
        Catalogue(List<SafetensorsFile> files, string directory)
    {
        var tensors = new Dictionary<string, (SafetensorsFile, SafetensorsTensorInfo)>(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var file in files)
        {
            foreach (var info in file.Header.Tensors)
            {
                var name = CanonicalName(info.Name);
                if (tensors.TryGetValue(name, out var first))
                    problems.Add($"{name}: stored twice, as '{first.Item2.Name}' in {Path.GetFileName(first.Item1.Path)} and as '{info.Name}' in {Path.GetFileName(file.Path)}");
                else
                    tensors[name] = (file, info);
            }
        }
        return (tensors, problems);
    }

    /// <summary>
    /// Adds to <paramref name="problems"/> every weight the config expects that is missing, mis-shaped or of a dtype that
    /// cannot be read: what keeps the checkpoint from loading, all of it, so that one attempt (or <c>inspect</c>) lists it.
    /// </summary>
    private static void AddTensorProblems(Gpt2Config config,
        Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)> tensors, List<string> problems)
    {
        foreach (var (name, shape) in Gpt2Weights.ExpectedTensors(config))
        {
            var shapeText = FloatTensor.ShapeToString(shape);
            if (!tensors.TryGetValue(name, out var found))
            {
                problems.Add($"{name}: missing (expected {shapeText})");
                continue;
            }
            if (!found.Info.Shape.SequenceEqual(shape.Select(d => (long)d)))
            {
                var hint = name is "wte.weight" or "lm_head.weight" ? $" (config vocab_size {config.VocabSize}, n_embd {config.EmbeddingSize})" : "";
                problems.Add($"{name}: shape {found.Info.ShapeText} in {Path.GetFileName(found.File.Path)}, expected {shapeText}{hint}");
            }
            // F64 (a model saved after .double(), as float64 references are computed) is rounded to float32 as it is read.
            if (found.Info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64))
                problems.Add($"{name}: dtype {found.Info.DType} is not F32, F16, BF16 or F64");
        }
    }

    private static Gpt2Weights Read(Gpt2Config config, string directory,
        Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)> tensors, List<string> problems,
        ILogger logger, IProgress<LoadProgress>? progress, WeightStorage storage, CancellationToken cancellationToken)
    {
        AddTensorProblems(config, tensors, problems);
        if (problems.Count > 0)
        {
            // Sizes the config left out are GPT-2 small's, which a smaller checkpoint's tensors then contradict.
            var note = config.DefaultedSizes.Count == 0 ? null
                : $"{ConfigFileName} leaves out {string.Join(", ", config.DefaultedSizes)}: those are transformers' defaults (GPT-2 small's); write this checkpoint's sizes into it";
            throw new CheckpointMismatchException(directory, problems, note);
        }

        var expected = Gpt2Weights.ExpectedTensors(config).ToList();
        var kinds = Gpt2Weights.ExpectedTensorKinds(config).ToDictionary(t => t.Name, t => t.Kind);
        var used = expected.Select(e => e.Name).ToHashSet();
        var unused = tensors.Keys.Where(n => !used.Contains(n) && !AttentionBuffer().IsMatch(n) && !(n == "lm_head.weight" && config.TieWordEmbeddings)).ToList();
        if (unused.Count > 0)
            logger.LogWarning("Ignoring {Count} tensor(s) that GPT-2 does not use: {Names}", unused.Count, string.Join(", ", unused.Take(10)));

        var totalBytes = expected.Sum(e => tensors[e.Name].Info.ByteLength);
        long readBytes = 0;
        var weights = new Dictionary<string, Weight>(StringComparer.Ordinal);
        // Tensors are read side by side, the largest first (reads at offsets are independent, and converting or packing
        // a tensor costs about as much as reading it). 124M from the page cache on 2 cores, load_ms of bench: float32
        // 520-560 -> 490-530 ms, held as f16 630 -> 537, as q8 778 -> 568.
        var largestFirst = expected.OrderByDescending(e => tensors[e.Name].Info.ByteLength);
        try
        {
            Parallel.ForEach(largestFirst, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount, CancellationToken = cancellationToken }, tensor =>
            {
                var (name, shape) = tensor;
                var (file, info) = tensors[name];
                var weight = ReadWeight(file, info, name, shape, kinds[name], storage);
                // One thread at a time records its tensor and reports, each fraction larger than the last.
                lock (weights)
                {
                    weights[name] = weight;
                    readBytes += info.ByteLength;
                    progress?.Report(new LoadProgress($"reading {Path.GetFileName(file.Path)}", (double)readBytes / Math.Max(totalBytes, 1)));
                }
            });
        }
        catch (AggregateException e)
        {
            // The first failure as itself (a ModelFormatException naming the file, an I/O error), not wrapped.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        var dtypes = string.Join(", ", expected.Select(e => tensors[e.Name].Info.DType).Distinct());
        logger.LogInformation("Read {Count} tensors ({Bytes:N0} bytes, {DTypes}) from {Directory}", expected.Count, totalBytes, dtypes, directory);
        return Gpt2Weights.Assemble(config, name => weights[name]);
    }

    /// <summary>
    /// One tensor into the storage its kind gets: float32 row-major straight from the file when nothing
    /// changes, else a block of rows at a time converted and placed (so a model is never held twice).
    /// </summary>
    private static Weight ReadWeight(SafetensorsFile file, SafetensorsTensorInfo info, string name, int[] shape, TensorKind kind, WeightStorage storage)
    {
        var stored = info.DType switch { SafetensorsDType.F16 => WeightFormat.F16, SafetensorsDType.BF16 => WeightFormat.BF16, _ => WeightFormat.F32 };
        var format = storage.FormatFor(kind, stored);
        var layout = storage.LayoutFor(kind);
        if (format == WeightFormat.F32 && layout == WeightLayout.RowMajor) return new Weight(name, shape, file.ReadFloat32(info));

        int rows = Weight.Rows(shape), cols = Weight.Columns(shape);
        var data = WeightData.Create(format, layout, rows, cols);
        var block = Math.Max(1, (1 << 18) / cols);
        var buffer = new float[(long)block * cols];
        for (var r = 0; r < rows; r += block)
        {
            var count = Math.Min(block, rows - r);
            var values = buffer.AsSpan(0, count * cols);
            file.ReadFloat32(info, (long)r * cols, values);
            for (var i = 0; i < count; i++) data.SetRow(r + i, values.Slice(i * cols, cols));
        }
        return new Weight(name, shape, data);
    }
}
