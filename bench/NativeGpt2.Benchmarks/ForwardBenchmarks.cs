using BenchmarkDotNet.Attributes;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// Full-size GPT-2 124M (synthetic weights) on one sequence: a forward pass with logits at every
/// position, NativeGpt2 against ONNX Runtime on the same graph, threads and input; and NativeGpt2's
/// cached decoding step, which the exported graph (no KV cache) has no counterpart for.
/// </summary>
[MemoryDiagnoser]
public class ForwardBenchmarks
{
    private Gpt2CausalLM _model = null!;
    private OnnxPeer _onnx = null!;
    private int[] _ids = null!;
    private long[] _ids64 = null!;
    private KvCache _cache = null!;
    private FloatTensor _logits = null!;
    private float[] _onnxLogits = null!;

    [Params(1, 64, 256)]
    public int T { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _model = Gpt2CausalLM.Load("synthetic:gpt2");
        _onnx = new OnnxPeer(Repository.ReferenceData, Environment.ProcessorCount);
        var random = new Random(1);
        _ids = Enumerable.Range(0, T).Select(_ => random.Next(50257)).ToArray();
        _ids64 = _ids.Select(i => (long)i).ToArray();
        _cache = _model.CreateCache(1);
        // Both engines write their logits into a buffer kept across calls (ForwardInto, ONNX Runtime's I/O binding).
        _logits = FloatTensor.Zeros(1, T, _model.Config.VocabSize);
        _onnxLogits = new float[T * _model.Config.VocabSize];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _onnx.Dispose();
        _model.Dispose();
    }

    [Benchmark(Baseline = true, Description = "NativeGpt2 forward (logits at all T)")]
    public float[] NativeGpt2Forward() => _model.ForwardInto(TokenBatch.FromIds(_ids), _logits).Logits.Data;

    [Benchmark(Description = "ONNX Runtime forward (logits at all T)")]
    public float[] OnnxRuntimeForward()
    {
        _onnx.ForwardInto(_ids64, _onnxLogits);
        return _onnxLogits;
    }

    [Benchmark(Description = "NativeGpt2 decode 1 token after T cached")]
    public float[] NativeGpt2DecodeStep()
    {
        // The prompt is prefilled once; each measured step decodes one token and rolls the cache back.
        if (_cache.Length != T)
        {
            _cache.Reset();
            _model.Backbone.Forward(TokenBatch.FromIds(_ids), _cache);
        }
        var hidden = _model.Backbone.Forward(TokenBatch.FromIds([_ids[^1]]), _cache);
        _cache.Truncate(T);
        return _model.Head.ForwardLast(hidden.LastHiddenState).Data;
    }
}
