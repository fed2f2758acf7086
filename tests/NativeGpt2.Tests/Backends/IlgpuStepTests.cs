using NativeGpt2.Backends;
using NativeGpt2.Ilgpu;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// Decoding steps as a recorded CUDA graph replays them: the attention reads the cache's length from the device, its
/// launch has warps for the most chunks, and the values equal those of a step given the length by the host, bit for bit.
/// The simulators run this through <see cref="IlgpuBackend.StepsReadLengthFromDevice"/>; recording itself needs CUDA.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class IlgpuStepTests
{
    // The simulator with CUDA's warps adds nothing here that the kernel tests do not run, at three times the cost.
    public static TheoryData<string> Backends => [TestBackends.IlgpuCpu, TestBackends.Cuda];

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Decoding_attention_reading_the_cache_length_from_the_device_equals_the_hosts(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        for (var seed = 0; seed < 4; seed++)
        {
            var random = new Random(700 + seed);
            // Caches of one chunk and of several, so that the chunk count read on the device varies too.
            int B = random.Next(1, 3), past = seed % 2 == 0 ? random.Next(0, 40) : random.Next(100, 300);
            // A cache with room for many more positions than it holds, now and then: the launch then has warps for far more
            // chunks than the length gives, which must find nothing to do.
            int NH = random.Next(1, 3), HS = 4 * random.Next(1, 17), C = NH * HS;
            var Tmax = past + 1 + (seed < 2 ? random.Next(0, 4) : random.Next(200, 600));
            var earlier = Numerics.RandomFloats(random, B * Math.Max(past, 1) * 3 * C, 2f);
            var qkv = Numerics.RandomFloats(random, B * 3 * C, 2f);
            var mask = new int[B * Tmax];
            for (var b = 0; b < B; b++)
            {
                var pad = random.Next(0, past + 1);
                for (var j = 0; j < Tmax; j++) mask[b * Tmax + j] = j >= pad && random.Next(9) != 0 || j == past ? 1 : 0;
            }

            var byHost = Decode(backend, fromDevice: false, earlier, qkv, mask, B, past, Tmax, NH, HS);
            var byDevice = Decode(backend, fromDevice: true, earlier, qkv, mask, B, past, Tmax, NH, HS);
            Assert.All(byHost.Output, x => Assert.True(float.IsFinite(x)));
            Assert.Equal(byHost.Output, byDevice.Output);
            Assert.Equal(byHost.Keys, byDevice.Keys);
            Assert.Equal(byHost.Values, byDevice.Values);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Decoding_steps_reading_the_cache_length_from_the_device_equal_the_default(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var model = Models.Get("tiny", name);
        var backend = (IlgpuBackend)model.Backend;
        // Two rows, the second left-padded, and tokens decoded one step at a time after the prompt.
        var prompt = new TokenBatch([3, 14, 15, 92, 65, 0, 0, 35, 89, 79], 2, 5, attentionMask: [1, 1, 1, 1, 1, 0, 0, 1, 1, 1]);
        int[][] steps = [[26, 53], [58, 97], [93, 23], [84, 62], [64, 33], [83, 27]];

        var expected = Decode(model, backend, fromDevice: false, prompt, steps);
        var actual = Decode(model, backend, fromDevice: true, prompt, steps);
        for (var i = 0; i < steps.Length; i++) Assert.Equal(expected[i], actual[i]);
    }

    [Fact]
    public void Step_keys_compare_buffers_by_reference_and_numbers_by_value()
    {
        var backend = TestBackends.Get(TestBackends.Cpu);
        using var first = backend.Allocate<float>(4);
        using var second = backend.Allocate<float>(4);
        Assert.Equal(new StepKey(first, 2), new StepKey(first, 2));
        Assert.Equal(new StepKey(first, 2).GetHashCode(), new StepKey(first, 2).GetHashCode());
        Assert.NotEqual(new StepKey(first, 2), new StepKey(second, 2));
        Assert.NotEqual(new StepKey(first, 2), new StepKey(first, 3));
        Assert.NotEqual(new StepKey(first, 2), new StepKey(first, 2, 0));
    }

    private static List<float[]> Decode(Gpt2CausalLM model, IlgpuBackend backend, bool fromDevice, TokenBatch prompt, int[][] steps)
    {
        using var length = LengthFromDevice(backend, fromDevice);
        using var cache = model.CreateCache(prompt.BatchSize);
        model.Forward(prompt, cache: cache);
        return [.. steps.Select(step => model.Forward(new TokenBatch(step, step.Length, 1), cache: cache).Logits.Data.ToArray())];
    }

    /// <summary>Until disposed, the backend's decoding steps read the cache's length from the device when <paramref name="fromDevice"/>.</summary>
    private static IDisposable LengthFromDevice(IlgpuBackend backend, bool fromDevice)
    {
        backend.StepsReadLengthFromDevice = fromDevice;
        return new Restore(() => backend.StepsReadLengthFromDevice = false);
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    private static (float[] Output, float[] Keys, float[] Values) Decode(IlgpuBackend backend, bool fromDevice, float[] earlier, float[] qkv,
        int[] mask, int B, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        var scale = 1f / MathF.Sqrt(HS);
        using var length = LengthFromDevice(backend, fromDevice);
        using var scope = backend.Enter();
        // Zeros where nothing is written, so that the slots past the new token compare equal too.
        using var k = backend.Upload(new float[B * NH * Tmax * HS]);
        using var v = backend.Upload(new float[B * NH * Tmax * HS]);
        using var e = backend.Upload(earlier);
        using var earlierOut = backend.Allocate<float>(B * Math.Max(past, 1) * C);
        using var q = backend.Upload(qkv);
        using var m = backend.Upload(mask);
        // NaN until written: every output must be.
        using var o = backend.Upload(Enumerable.Repeat(float.NaN, B * C).ToArray());
        if (past > 0) backend.Attention(earlierOut, null, e, k, v, m, B, past, 0, Tmax, NH, HS, scale);
        backend.RunStep(new StepKey(o, k, v, m, B), past, () => backend.Attention(o, null, q, k, v, m, B, 1, past, Tmax, NH, HS, scale));
        var output = new float[B * C];
        var keys = new float[B * NH * Tmax * HS];
        var values = new float[B * NH * Tmax * HS];
        backend.Download(output, o, 0);
        backend.Download(keys, k, 0);
        backend.Download(values, v, 0);
        return (output, keys, values);
    }
}
