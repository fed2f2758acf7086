using NativeGpt2.Operators;
using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Cli;

/// <summary>The backend choice on the command line: --backend, crosscheck and bench.</summary>
[Collection(IlgpuAccelerators.Name)]
public class BackendCommandTests
{
    [Fact]
    public void Verify_runs_on_the_ilgpu_cpu_accelerator()
    {
        var result = CliRunner.Run("verify", "--backend", "ilgpu-cpu", "--model", Paths.Model("odd"), "--reference", Paths.Ref("odd.left_padded.safetensors"));
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Matches(@"all \d+ tensors within 0\.0001", result.Out);
    }

    [SkippableFact]
    public void Asking_for_cuda_without_a_device_is_one_error_line_and_exit_1()
    {
        Skip.If(TestBackends.CudaSkipReason is null, "this machine has a CUDA device");
        var result = CliRunner.Run("generate", "--backend", "cuda", "--prompt", "ROMEO:");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Equal("", result.Out);
        var line = Assert.Single(result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: backend 'cuda': no CUDA device found", line);
    }

    [Fact]
    public void An_unknown_backend_is_a_usage_error_on_one_line()
    {
        var result = CliRunner.Run("generate", "--backend", "gpu", "--prompt", "ROMEO:");
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        var line = Assert.Single(result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("'gpu'", line);
        Assert.Contains("ilgpu-cpu", line);
    }

    [Fact]
    public void Crosscheck_compares_every_hidden_state_attention_and_the_logits()
    {
        var result = CliRunner.Run("crosscheck", "--model", Paths.Model("shakespeare-char"), "--backends", "cpu,ilgpu-cpu", "--text", "ROMEO:\nWhat");

        Assert.Equal(CliApp.Success, result.ExitCode);
        // 4 layers: hidden_states.0..4, attentions.0..3, logits.
        foreach (var name in Enumerable.Range(0, 5).Select(i => $"hidden_states.{i}").Concat(Enumerable.Range(0, 4).Select(i => $"attentions.{i}")).Append("logits"))
            Assert.Contains(result.Out.Split('\n'), line => line.StartsWith(name + " ") && line.Contains("cpu vs ilgpu-cpu") && line.TrimEnd().EndsWith("ok"));
        Assert.Contains("all 10 comparisons within 0.0001", result.Out);
    }

    [Fact]
    public void Crosscheck_fails_when_a_difference_exceeds_the_tolerance()
    {
        var result = CliRunner.Run("crosscheck", "--model", Paths.Model("tiny"), "--backends", "cpu,ilgpu-cpu", "--ids", "1,2,3,4,5", "--tolerance", "0");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains("FAIL", result.Out);
        Assert.Contains("comparisons exceed 0", result.Out);
    }

    [Theory]
    [InlineData("--backends", "cpu", "--ids", "1,2", "name at least two different backends")]
    [InlineData("--backends", "cpu,cpu", "--ids", "1,2", "name at least two different backends")]
    [InlineData("--backends", "cpu,tpu", "--ids", "1,2", "'tpu' is not a backend")]
    [InlineData("--backends", "cpu,ilgpu-cpu", "--ids", "1,99999", "outside the vocabulary")]
    public void Crosscheck_usage_errors(string option, string value, string inputOption, string input, string message)
    {
        var result = CliRunner.Run("crosscheck", "--model", Paths.Model("tiny"), option, value, inputOption, input);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains(message, result.Error);
    }

    [Fact]
    public void Crosscheck_needs_exactly_one_input()
    {
        var neither = CliRunner.Run("crosscheck", "--model", Paths.Model("tiny"), "--backends", "cpu,ilgpu-cpu");
        var both = CliRunner.Run("crosscheck", "--model", Paths.Model("tiny"), "--backends", "cpu,ilgpu-cpu", "--ids", "1", "--text", "a");
        Assert.Equal(CliApp.UsageError, neither.ExitCode);
        Assert.Equal(CliApp.UsageError, both.ExitCode);
        Assert.Contains("exactly one of --ids 1,2,3 or --text TEXT", both.Error);
    }

    [SkippableFact]
    public void A_process_without_256_bit_vectors_runs_at_128_bits_warns_why_and_generates_the_same_text()
    {
        // DOTNET_PreferredVectorBitWidth=128 leaves the runtime 128-bit vectors only, as on Arm64 (NEON) or in an app
        // compiled ahead of time for the x86-64 baseline: the CPU backend then takes Vector128, and says what it leaves.
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "needs an x86 CPU with AVX2 and FMA, for the runtime to leave them unused");
        string[] generate = ["generate", "--model", Paths.Model("shakespeare-char"), "--prompt", "ROMEO:", "--greedy", "--max-new-tokens", "40"];
        using var process = ExternalProcess.StartCli([.. generate, "--verbose"], new Dictionary<string, string?>
        {
            ["DOTNET_PreferredVectorBitWidth"] = "128", [CpuVectors.Variable] = null,
        });
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "the CLI did not finish");
        Assert.True(process.ExitCode == 0, stderr.Result);

        Assert.Contains("CPU: Vector128 (", stderr.Result);
        Assert.Contains("the operators run Vector128 (4 floats at a time)", stderr.Result);
        Assert.Contains("DOTNET_PreferredVectorBitWidth", stderr.Result);
        var widest = CliRunner.Run(generate);
        Assert.Equal(CliApp.Success, widest.ExitCode);
        Assert.Equal(widest.Out, stdout);
    }

    [Fact]
    public void Bench_json_reports_every_figure()
    {
        var result = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--threads", "1", "--prompt-tokens", "16", "--new-tokens", "8", "--json");

        Assert.Equal(CliApp.Success, result.ExitCode);
        using var json = JsonDocument.Parse(result.Out);
        var root = json.RootElement;
        Assert.Equal("cpu", root.GetProperty("backend").GetString());
        Assert.Equal(1, root.GetProperty("threads").GetInt32());
        Assert.Equal(1, root.GetProperty("batch").GetInt32());
        foreach (var key in new[] { "forward_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s", "load_ms", "peak_rss_mb", "read_bandwidth_gb_s", "decode_bound_tokens_per_s", "decode_fraction_of_bound" })
            Assert.True(root.GetProperty(key).GetDouble() > 0, key);
        Assert.Equal(CpuVectors.Default.ToString(), root.GetProperty("vector_width").GetString());
        Assert.Equal("f32", root.GetProperty("weights").GetString());
        // The bound is the bytes a step reads over the measured rate, and the fraction is decoding over that bound.
        var bound = root.GetProperty("read_bandwidth_gb_s").GetDouble() * 1e9 / root.GetProperty("weight_bytes_per_token").GetDouble();
        Assert.Equal(bound, root.GetProperty("decode_bound_tokens_per_s").GetDouble(), bound * 0.01);
        Assert.Equal(root.GetProperty("decode_tokens_per_s").GetDouble() / root.GetProperty("decode_bound_tokens_per_s").GetDouble(),
            root.GetProperty("decode_fraction_of_bound").GetDouble(), 0.01);
        Assert.Equal(0, root.GetProperty("top_k").GetInt32());
    }

    [Theory]
    [InlineData("f16", "f16", 2)]
    [InlineData("bf16", "bf16", 2)]
    [InlineData("q8", "q8", 1)]
    public void Bench_holds_the_weights_in_the_format_asked_for(string option, string reported, int bytesPerWeight)
    {
        var f32 = JsonDocument.Parse(CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--prompt-tokens", "8", "--new-tokens", "2", "--json").Out).RootElement;
        var result = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--weights", option, "--prompt-tokens", "8", "--new-tokens", "2", "--json");
        Assert.Equal(CliApp.Success, result.ExitCode);
        var root = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal(reported, root.GetProperty("weights").GetString());
        // Fewer bytes read per token: 16-bit halves the matrices, 8-bit quarters them plus a scale per 32 values.
        Assert.True(root.GetProperty("weight_bytes_per_token").GetInt64() < f32.GetProperty("weight_bytes_per_token").GetInt64() * (bytesPerWeight + 1) / 4.0);
    }

    [Fact]
    public void Generate_with_8_bit_weights_still_writes_shakespeare()
    {
        var result = CliRunner.Run("generate", "--weights", "q8", "--prompt", "ROMEO:\n", "--greedy", "--max-new-tokens", "20");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.StartsWith("ROMEO:\n", result.Out);
        Assert.True(result.Out.Length > 20);
    }

    [Fact]
    public void An_unknown_weight_format_is_a_usage_error()
    {
        var result = CliRunner.Run("generate", "--weights", "int4", "--prompt", "ROMEO:");
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains("int4", result.Error);
    }

    [Theory]
    [InlineData("--prompt-tokens", "0", "--prompt-tokens must be at least 1")]
    [InlineData("--new-tokens", "200", "exceed the context length of 128")]
    [InlineData("--batch", "0", "--batch must be from 1 to 64, got 0")]
    [InlineData("--batch", "65", "--batch must be from 1 to 64, got 65")]
    public void Bench_rejects_sizes_it_cannot_run(string option, string value, string message)
    {
        var result = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", option, value);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains(message, result.Error);
    }

    /// <summary>
    /// <c>--batch N</c> runs N sequences side by side: the rates count every row's tokens, and the decoding bound is N
    /// times one row's (a step reads every weight once for all its rows).
    /// </summary>
    [Fact]
    public void Bench_runs_a_batch_and_counts_every_row()
    {
        var result = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--batch", "3", "--prompt-tokens", "100", "--new-tokens", "28", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var root = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal(3, root.GetProperty("batch").GetInt32());
        var bound = 3 * root.GetProperty("read_bandwidth_gb_s").GetDouble() * 1e9 / root.GetProperty("weight_bytes_per_token").GetDouble();
        Assert.Equal(bound, root.GetProperty("decode_bound_tokens_per_s").GetDouble(), bound * 0.01);
        foreach (var key in new[] { "forward_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s" })
            Assert.True(root.GetProperty(key).GetDouble() > 0, key);
        var table = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--batch", "2", "--prompt-tokens", "8", "--new-tokens", "4");
        Assert.Contains("(B = 2, T = 8, logits at every position)", table.Out);
        Assert.Contains("(B = 2, 4 tokens each after 8, KV cache)", table.Out);
    }

    [Fact]
    public void Bench_decodes_up_to_the_last_position_of_the_context_and_no_further()
    {
        // tiny has 128 positions: 100 prompt tokens + 28 decoded fill them (the untimed warm-up pass reuses them).
        var fits = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--prompt-tokens", "100", "--new-tokens", "28", "--json");
        Assert.True(fits.ExitCode == 0, fits.Error);
        Assert.True(JsonDocument.Parse(fits.Out).RootElement.GetProperty("decode_tokens_per_s").GetDouble() > 0);

        var over = CliRunner.Run("bench", "--model", Paths.Model("tiny"), "--backend", "cpu", "--prompt-tokens", "100", "--new-tokens", "29");
        Assert.Equal(CliApp.UsageError, over.ExitCode);
        Assert.Contains("--prompt-tokens 100 + --new-tokens 29 exceed the context length of 128", over.Error);
    }
}
