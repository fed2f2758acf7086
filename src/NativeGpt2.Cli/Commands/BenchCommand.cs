using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NativeGpt2.Backends;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Generation;
using NativeGpt2.Ilgpu;
using NativeGpt2.Operators;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 bench --model SPEC [--backend B] [--prompt-tokens N] [--new-tokens N] [--batch N] [--threads N] [--json]</c>:
/// load time, a full forward with logits at every position, prefill (last logits only) and KV-cached
/// decoding, each in tokens per second (all rows of the batch together), and peak resident memory.
/// </summary>
internal static class BenchCommand
{
    /// <summary>Each timed stage repeats until it has run this long (and at least three times), then reports the median.</summary>
    private static readonly TimeSpan StageTime = TimeSpan.FromSeconds(2);

    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Tokens in the forward and prefill input, and the context decoding starts from.", DefaultValueFactory = _ => 128 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens to decode, timed after one untimed pass over the same tokens (0: measure no decoding).", DefaultValueFactory = _ => 64 };
        var batchSize = new Option<int>("--batch")
        {
            Description = $"Sequences run side by side, each of --prompt-tokens random tokens and decoding --new-tokens (default 1, at most {Gpt2CausalLM.MaxSequences}); rates count the tokens of all of them.",
            DefaultValueFactory = _ => 1,
        };
        var topK = new Option<int>("--top-k")
        {
            Description = "Decode by sampling among the K most likely tokens (temperature 1, a fixed seed), each pick on the host timed too, instead of greedily (0).",
            DefaultValueFactory = _ => 0,
        };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for the cpu backend (default: all cores)." };
        var launches = new Option<int?>("--launches") { Description = "Also time this many empty kernel launches (ILGPU backends)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of the table." };
        var command = new Command("bench", "Measure load time, forward, prefill and decoding speed, and peak memory.")
        {
            model, backend, weights, promptTokens, newTokens, batchSize, topK, threads, launches, json,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var (prompt, decode) = (parse.GetValue(promptTokens), parse.GetValue(newTokens));
            if (prompt < 1) throw new UsageException($"--prompt-tokens must be at least 1, got {prompt}");
            if (decode < 0) throw new UsageException($"--new-tokens must be at least 0, got {decode}");
            var rows = parse.GetValue(batchSize);
            if (rows is < 1 or > Gpt2CausalLM.MaxSequences) throw new UsageException($"--batch must be from 1 to {Gpt2CausalLM.MaxSequences}, got {rows}");
            var threadCount = parse.GetValue(threads);
            if (threadCount is < 1) throw new UsageException($"--threads must be at least 1, got {threadCount}");
            var sampleTopK = parse.GetValue(topK);
            if (sampleTopK < 0) throw new UsageException($"--top-k must be at least 0 (0: greedy decoding), got {sampleTopK}");
            var launchCount = parse.GetValue(launches);
            if (launchCount is < 1) throw new UsageException($"--launches must be at least 1, got {launchCount}");

            var options = context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights));
            if (threadCount is { } t)
            {
                if (!options.Backend.Equals(BackendRegistry.Cpu, StringComparison.OrdinalIgnoreCase))
                    throw new UsageException("--threads applies to the cpu backend; add --backend cpu");
                options = options with { BackendInstance = new CpuBackend(t) };
            }

            var clock = Stopwatch.StartNew();
            using var lm = await Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, options, cancellation);
            var loadMs = clock.Elapsed.TotalMilliseconds;
            var config = lm.Config;
            var positions = (long)prompt + decode;
            if (positions > config.ContextLength)
                throw new UsageException($"--prompt-tokens {prompt} + --new-tokens {decode} exceed the context length of {config.ContextLength}");

            var random = new Random(1234);
            var ids = Enumerable.Range(0, rows * prompt).Select(_ => random.Next(config.VocabSize)).ToArray();
            var batch = new TokenBatch(ids, rows, prompt);

            // Full forward, logits at every position, into one tensor kept across the passes (as a caller running many
            // passes would keep it), so that the passes time the model rather than fresh memory for 4·B·T·V bytes.
            var logits = FloatTensor.Zeros(rows, prompt, config.VocabSize);
            var forward = Median(() => lm.ForwardInto(batch, logits), cancellation);
            // Prefill: the prompts into a cache, logits at the last position only.
            using var cache = lm.CreateCache(rows, (int)positions);
            var prefill = Median(() =>
            {
                cache.Reset();
                lm.Next(batch, cache, greedy: true);
            }, cancellation);
            // What bounds decoding on the CPU: every weight read once per token (wpe only a row), at the rate
            // this machine reads memory, measured over those same bytes with the same threads, in turns with
            // the decoding itself: a shared machine's read rate drifts by tens of percent within minutes.
            var read = lm.Backbone.Weights.All.Where(w => !ReferenceEquals(w, lm.Backbone.Weights.PositionEmbedding)).ToList();
            var bytesPerToken = read.Sum(w => w.Storage.ByteLength);
            var buffers = read.SelectMany(w => w.Storage.Buffers).ToList();
            Func<double>? measureBandwidth = lm.Backend is CpuBackend cpu
                ? () => ReadBandwidth.Measure(buffers, cpu.Threads, passes: 2)
                : null;
            var (decodeRate, bandwidth) = decode > 0
                ? Decode(lm, batch, cache, decode, sampleTopK, measureBandwidth, cancellation)
                : (null, measureBandwidth?.Invoke());

            double? launchMicroseconds = launchCount is { } n && lm.Backend is IlgpuBackend ilgpu ? ilgpu.MeasureLaunchOverhead(n).TotalMicroseconds : null;
            using var process = Process.GetCurrentProcess();
            process.Refresh();
            var result = new BenchResult(
                lm.Source, lm.Backend.Name, lm.Backend.Description, (lm.Backend as CpuBackend)?.Threads ?? 1,
                (lm.Backend as CpuBackend)?.Width.ToString(), WeightFormats(read), rows, prompt, decode, sampleTopK, config.ParameterCount,
                loadMs, rows * prompt / forward.TotalSeconds, rows * prompt / prefill.TotalSeconds, decodeRate,
                bytesPerToken, bandwidth, process.PeakWorkingSet64 / (1024.0 * 1024.0), launchMicroseconds);
            if (parse.GetValue(json)) context.Out.WriteLine(result.ToJson());
            else result.Print(context.Out);
            return CliApp.Success;
        });
        return command;
    }

    /// <summary>The formats the weight matrices are held in, e.g. <c>f32</c> or <c>q8 (vectors f32)</c>.</summary>
    private static string WeightFormats(IReadOnlyList<Weights.Weight> weights)
    {
        var matrices = weights.Where(w => w.Shape.Length == 2).Select(w => w.Format).Distinct().ToList();
        return string.Join("+", matrices.Select(f => f.ToString().ToLowerInvariant()));
    }

    // Decoding is timed in this many stretches, with a read-rate measurement before each.
    private const int DecodeStretches = 4;

    /// <summary>
    /// Tokens per second (every row's) decoding one token a row at a time through the cache after the prompts; and, when
    /// <paramref name="measureBandwidth"/> is given, the mean of the read rates measured before each of
    /// <see cref="DecodeStretches"/> stretches of the decoding, so both sample the same minutes. The same tokens
    /// are decoded once untimed first, so that what is timed runs code the JIT has already optimized: a step
    /// calls each operator once, too few calls for tiered compilation to promote them within a few tokens. With
    /// <paramref name="topK"/> above 0 each row's token is drawn as generation draws it (from the backend's top-k
    /// candidates when they decide the pick, else from the row's logits), from a source seeded anew with the prompts.
    /// </summary>
    private static (double? TokensPerSecond, double? Bandwidth) Decode(Gpt2CausalLM lm, TokenBatch prompt, KvCache cache, int tokens,
        int topK, Func<double>? measureBandwidth, CancellationToken cancellation)
    {
        var sampling = topK > 0 ? new GenerationOptions { TopK = topK } : null;
        int V = lm.Config.VocabSize, candidates = sampling is not null ? Sampler.CandidatesNeeded(sampling, V) : 0;
        var random = new Random(1);
        Steps(Prefill(), tokens);
        var elapsed = TimeSpan.Zero;
        var rates = new List<double>();
        var done = 0;
        var next = Prefill();
        for (var stretch = 0; stretch < DecodeStretches && done < tokens; stretch++)
        {
            if (measureBandwidth is not null) rates.Add(measureBandwidth());
            var count = (tokens - done) / (DecodeStretches - stretch);
            var clock = Stopwatch.StartNew();
            next = Steps(next, count);
            elapsed += clock.Elapsed;
            done += count;
        }
        return ((double)prompt.BatchSize * tokens / elapsed.TotalSeconds, rates.Count > 0 ? rates.Average() : null);

        int[] Prefill()
        {
            cache.Reset();
            random = new Random(1);
            return Picked(lm.Next(prompt, cache, greedy: sampling is null, topK: candidates));
        }

        int[] Steps(int[] next, int count)
        {
            for (var i = 0; i < count; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                next = Picked(lm.Next(new TokenBatch(next, next.Length, 1), cache, greedy: sampling is null, topK: candidates));
            }
            return next;
        }

        // A greedy row whose logits were not finite picks -1: it goes on from token 0.
        int[] Picked(NextTokens step) => sampling is null
            ? [.. step.Picks!.Select(id => Math.Max(0, id))]
            : [.. Enumerable.Range(0, prompt.BatchSize).Select(b => step.Candidates is { } c && c.IsUsable(b)
                ? Sampler.SampleCandidates(c.IdsOf(b), c.ValuesOf(b), sampling, random)
                : Sampler.Sample(step.Logits.AsSpan(b * V, V), sampling, [], random))];
    }

    /// <summary>Runs <paramref name="stage"/> once to warm up, then until <see cref="StageTime"/> has passed (at least three times); the median.</summary>
    private static TimeSpan Median(Action stage, CancellationToken cancellation)
    {
        stage();
        var times = new List<TimeSpan>();
        var total = Stopwatch.StartNew();
        while (times.Count < 3 || (total.Elapsed < StageTime && times.Count < 50))
        {
            cancellation.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            stage();
            times.Add(clock.Elapsed);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}

/// <summary>One bench run's numbers.</summary>
internal sealed record BenchResult(
    string Model, string Backend, string BackendDescription, int Threads, string? VectorWidth, string WeightFormat,
    int Batch, int PromptTokens, int NewTokens, int TopK, long Parameters,
    double LoadMs, double ForwardTokensPerSecond, double PrefillTokensPerSecond, double? DecodeTokensPerSecond,
    long WeightBytesPerToken, double? ReadBytesPerSecond, double PeakRssMb, double? LaunchOverheadMicroseconds)
{
    /// <summary>
    /// Decoding's bound on this machine: the read rate over the bytes a step reads, times the rows a step decodes (a step
    /// reads every weight once for all its rows; with many rows the multiply-adds bind first).
    /// </summary>
    public double? DecodeBound => Batch * ReadBytesPerSecond / WeightBytesPerToken;

    /// <summary>Measured decoding as a fraction of <see cref="DecodeBound"/>.</summary>
    public double? DecodeFractionOfBound => DecodeTokensPerSecond / DecodeBound;

    public string ToJson()
    {
        var fields = new Dictionary<string, object?>
        {
            ["model"] = Model,
            ["backend"] = Backend,
            ["backend_description"] = BackendDescription,
            ["threads"] = Threads,
            ["vector_width"] = VectorWidth,
            ["weights"] = WeightFormat,
            ["batch"] = Batch,
            ["prompt_tokens"] = PromptTokens,
            ["new_tokens"] = NewTokens,
            ["top_k"] = TopK,
            ["parameters"] = Parameters,
            ["load_ms"] = Math.Round(LoadMs, 1),
            ["forward_tokens_per_s"] = Math.Round(ForwardTokensPerSecond, 2),
            ["prefill_tokens_per_s"] = Math.Round(PrefillTokensPerSecond, 2),
            ["decode_tokens_per_s"] = DecodeTokensPerSecond is { } d ? Math.Round(d, 2) : null,
            ["weight_bytes_per_token"] = WeightBytesPerToken,
            ["read_bandwidth_gb_s"] = ReadBytesPerSecond is { } r ? Math.Round(r / 1e9, 2) : null,
            ["decode_bound_tokens_per_s"] = DecodeBound is { } b ? Math.Round(b, 2) : null,
            ["decode_fraction_of_bound"] = DecodeFractionOfBound is { } f ? Math.Round(f, 3) : null,
            ["peak_rss_mb"] = Math.Round(PeakRssMb, 1),
        };
        if (LaunchOverheadMicroseconds is { } launch) fields["launch_overhead_us"] = Math.Round(launch, 3);
        return JsonSerializer.Serialize(fields);
    }

    public void Print(TextWriter o)
    {
        var n = CultureInfo.InvariantCulture;
        o.WriteLine(string.Create(n, $"model      {Model} ({Parameters:N0} parameters)"));
        o.WriteLine($"backend    {Backend}: {BackendDescription}");
        o.WriteLine(string.Create(n, $"weights    {WeightFormat}, {WeightBytesPerToken / 1e6:F1} MB read per decoded token"));
        o.WriteLine(string.Create(n, $"load       {LoadMs:F0} ms"));
        var rows = Batch == 1 ? "" : string.Create(n, $"B = {Batch}, ");
        var each = Batch == 1 ? "" : " each";
        o.WriteLine(string.Create(n, $"forward    {ForwardTokensPerSecond,10:F1} tokens/s  ({rows}T = {PromptTokens}, logits at every position)"));
        o.WriteLine(string.Create(n, $"prefill    {PrefillTokensPerSecond,10:F1} tokens/s  ({rows}T = {PromptTokens}, logits at the last position)"));
        if (DecodeTokensPerSecond is { } decode)
            o.WriteLine(string.Create(n, $"decode     {decode,10:F1} tokens/s  ({rows}{NewTokens} tokens{each} after {PromptTokens}, KV cache{(TopK > 0 ? $", top-k {TopK} sampling" : "")})"));
        if (ReadBytesPerSecond is { } read)
        {
            o.WriteLine(string.Create(n, $"memory     {read / 1e9,10:F1} GB/s read (measured over the weights): decoding bound {DecodeBound:F1} tokens/s"));
            if (DecodeFractionOfBound is { } fraction) o.WriteLine(string.Create(n, $"           decoding runs at {fraction:P0} of that bound"));
        }
        o.WriteLine(string.Create(n, $"peak RSS   {PeakRssMb:F0} MB"));
        if (LaunchOverheadMicroseconds is { } launch) o.WriteLine(string.Create(n, $"launch     {launch:F2} µs per empty kernel launch"));
    }
}
