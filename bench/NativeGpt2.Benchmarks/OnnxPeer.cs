using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NativeGpt2.Weights;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// ONNX Runtime running reference-data/onnx/gpt2-124M.graph.onnx (exported from Hugging Face's
/// GPT2LMHeadModel) with the synthetic weights written into its external-data file, so both engines
/// run the same model on the same input.
/// </summary>
public sealed class OnnxPeer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _directory;
    private readonly RunOptions _runOptions = new();

    public OnnxPeer(string referenceData, int threads)
    {
        var onnx = Path.Combine(referenceData, "onnx");
        using var layout = JsonDocument.Parse(File.ReadAllText(Path.Combine(onnx, "gpt2-124M.layout.json")));
        _directory = Path.Combine(Path.GetTempPath(), "nativegpt2-onnx-peer");
        Directory.CreateDirectory(_directory);
        File.Copy(Path.Combine(onnx, "gpt2-124M.graph.onnx"), Path.Combine(_directory, "gpt2-124M.graph.onnx"), overwrite: true);
        var weightsPath = Path.Combine(_directory, layout.RootElement.GetProperty("external_data_file").GetString()!);
        var totalBytes = layout.RootElement.GetProperty("total_bytes").GetInt64();
        if (!File.Exists(weightsPath) || new FileInfo(weightsPath).Length != totalBytes)
            WriteWeights(layout.RootElement.GetProperty("tensors"), weightsPath);

        var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        _session = new InferenceSession(Path.Combine(_directory, "gpt2-124M.graph.onnx"), options);
    }

    /// <summary>Logits (1, T, V) for one sequence, in a new array.</summary>
    public float[] Forward(long[] ids)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]);
        using var outputs = _session.Run(_runOptions, ["input_ids"], [input], _session.OutputNames);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>
    /// Logits (1, T, V) for one sequence written into <paramref name="logits"/> (T·V values) through an I/O binding:
    /// the graph's output is the caller's buffer, kept across calls, as <see cref="Gpt2CausalLM.ForwardInto"/> keeps
    /// NativeGpt2's.
    /// </summary>
    public void ForwardInto(long[] ids, float[] logits)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]);
        using var output = OrtValue.CreateTensorValueFromMemory(logits, [1, ids.Length, logits.Length / ids.Length]);
        using var binding = _session.CreateIoBinding();
        binding.BindInput("input_ids", input);
        binding.BindOutput(_session.OutputNames[0], output);
        _session.RunWithBinding(_runOptions, binding);
    }

    private static void WriteWeights(JsonElement tensors, string path)
    {
        using var file = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write);
        foreach (var tensor in tensors.EnumerateArray())
        {
            var name = tensor.GetProperty("weight").GetString()!;
            var length = tensor.GetProperty("length").GetInt64();
            var values = new float[length / sizeof(float)];
            SyntheticWeights.Fill(name, values);
            file.Position = tensor.GetProperty("offset").GetInt64();
            file.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        file.Close();
        File.Move(path + ".tmp", path, overwrite: true);
    }

    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }
}
