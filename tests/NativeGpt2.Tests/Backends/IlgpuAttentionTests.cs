using NativeGpt2.Backends;
using NativeGpt2.Ilgpu;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// The ILGPU backend's two prefill attention kernels, by tiles of queries and by a warp per query: the same values
/// on prompts of several tiles, after earlier tokens, with padding and with holes in the mask.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class IlgpuAttentionTests
{
    public static TheoryData<string> Accelerators => TestBackends.Ilgpu;

    [SkippableTheory]
    [MemberData(nameof(Accelerators))]
    public void Prefill_by_query_tiles_equals_prefill_by_warps(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = (IlgpuBackend)TestBackends.Get(name);
        for (var seed = 0; seed < TestBackends.Cases(name, 6); seed++)
        {
            var random = new Random(300 + seed);
            int B = random.Next(1, 3), T = random.Next(20, 80), past = random.Next(3) == 0 ? 0 : random.Next(1, 40);
            int NH = random.Next(1, 3), HS = 4 * random.Next(1, 17), Tmax = past + T + random.Next(0, 4), C = NH * HS;
            var earlier = Numerics.RandomFloats(random, B * Math.Max(past, 1) * 3 * C, 2f);
            var qkv = Numerics.RandomFloats(random, B * T * 3 * C, 2f);
            var mask = new int[B * Tmax];
            for (var b = 0; b < B; b++)
            {
                // Left padding (sometimes past the first tile's queries), and now and then a few masked keys among the rest.
                var pad = random.Next(0, Math.Min(past + T, 45));
                var holes = random.Next(2) == 0;
                for (var j = 0; j < Tmax; j++) mask[b * Tmax + j] = j >= pad && !(holes && random.Next(7) == 0) ? 1 : 0;
            }
            var what = $"{name} prefill B={B} T={T} past={past} NH={NH} HS={HS}";

            var byTiles = Prefill(backend, tiles: true, earlier, qkv, mask, B, T, past, Tmax, NH, HS);
            var byWarps = Prefill(backend, tiles: false, earlier, qkv, mask, B, T, past, Tmax, NH, HS);
            // The CPU accelerator runs both kernels' operations exactly as written; a GPU compiler may fuse a product and
            // a sum differently in each kernel.
            if (name == TestBackends.IlgpuCpu) Assert.Equal(byWarps, byTiles);
            else Numerics.AssertClose(byWarps, byTiles, 1e-6, what);

            var expectedKeys = new float[B * NH * Tmax * HS];
            var expectedValues = new float[B * NH * Tmax * HS];
            CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, earlier, B, past, 0, Tmax, NH, HS);
            CausalSelfAttention.AppendKeyValuesReference(expectedKeys, expectedValues, qkv, B, T, past, Tmax, NH, HS);
            var expected = new float[B * T * C];
            CausalSelfAttention.Reference(expected, new float[B * NH * T * (past + T)], qkv, expectedKeys, expectedValues, mask, B, T, past, Tmax, NH, HS, 1f / MathF.Sqrt(HS));
            Numerics.AssertClose(expected, byTiles, 2e-5, what);
        }
    }

    private static float[] Prefill(IlgpuBackend backend, bool tiles, float[] earlier, float[] qkv, int[] mask,
        int B, int T, int past, int Tmax, int NH, int HS)
    {
        var C = NH * HS;
        backend.PrefillByQueryTiles = tiles;
        try
        {
            using var scope = backend.Enter();
            using var k = backend.Allocate<float>(B * NH * Tmax * HS);
            using var v = backend.Allocate<float>(B * NH * Tmax * HS);
            using var e = backend.Upload(earlier);
            using var earlierOut = backend.Allocate<float>(B * Math.Max(past, 1) * C);
            using var q = backend.Upload(qkv);
            using var m = backend.Upload(mask);
            using var o = backend.Allocate<float>(B * T * C);
            if (past > 0) backend.Attention(earlierOut, null, e, k, v, m, B, past, 0, Tmax, NH, HS, 1f / MathF.Sqrt(HS));
            backend.Attention(o, null, q, k, v, m, B, T, past, Tmax, NH, HS, 1f / MathF.Sqrt(HS));
            var host = new float[B * T * C];
            backend.Download(host, o, 0);
            return host;
        }
        finally
        {
            backend.PrefillByQueryTiles = true;
        }
    }
}
