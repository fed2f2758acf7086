using ILGPU;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Kernels with one thread per output element and no cooperation: the embedding lookup, the residual
/// add, the append of keys and values to the cache, and the gather of rows for the head.
/// </summary>
/// <remarks>
/// Like every kernel here they loop over their work with the grid's stride, so a launch may use fewer
/// groups than elements: the backend caps the grid at what the device keeps busy (and the CPU
/// accelerator, where every group costs a barrier between OS threads, at one group per multiprocessor).
/// </remarks>
internal static class ElementwiseKernels
{
    /// <summary>out[n, c] = wte[ids[n], c] + wpe[positions[n], c]; one thread per (n, c) of out (N, C).</summary>
    public static void Embedding(ArrayView<float> output, ArrayView<int> ids, ArrayView<int> positions,
        ArrayView<float> wte, ArrayView<float> wpe, int N, int C)
    {
        for (var i = Grid.GlobalIndex.X; i < N * C; i += Grid.DimX * Group.DimX)
        {
            int n = i / C, c = i % C;
            output[i] = wte[ids[n] * C + c] + wpe[positions[n] * C + c];
        }
    }

    /// <summary>out[i] = a[i] + b[i].</summary>
    public static void Add(ArrayView<float> output, ArrayView<float> a, ArrayView<float> b, int count)
    {
        for (var i = Grid.GlobalIndex.X; i < count; i += Grid.DimX * Group.DimX)
            output[i] = a[i] + b[i];
    }

    /// <summary>
    /// The T new tokens' keys and values, qkv (B, T, 3C) → cache (B, NH, Tmax, HS) at positions
    /// [past, past + T); one thread per (b, t, c) of the C channels.
    /// </summary>
    public static void AppendKeyValues(ArrayView<float> keys, ArrayView<float> values, ArrayView<float> qkv, AttentionShape shape)
    {
        var C = shape.NH * shape.HS;
        for (var i = Grid.GlobalIndex.X; i < shape.B * shape.T * C; i += Grid.DimX * Group.DimX)
        {
            int c = i % C, bt = i / C;
            int t = bt % shape.T, b = bt / shape.T;
            int h = c / shape.HS, d = c % shape.HS;
            var slot = ((b * shape.NH + h) * shape.Tmax + shape.Past + t) * shape.HS + d;
            keys[slot] = qkv[bt * 3 * C + C + c];
            values[slot] = qkv[bt * 3 * C + 2 * C + c];
        }
    }

    /// <summary>Does nothing (writes only when <paramref name="flag"/> is negative, which it never is): the launch-overhead probe.</summary>
    public static void Nothing(ArrayView<float> output, int flag)
    {
        if (flag < 0) output[0] = flag;
    }

    /// <summary>
    /// Positions [from, from + count) of cache row r take positions [sourceFrom, sourceFrom + count) of source row rows[r]
    /// (none when rows[r] &lt; 0), keys and values (B, NH, Tmax, HS; the source's sourceTmax slots); one thread per (r, head,
    /// position, channel). A row copied onto itself writes what it reads.
    /// </summary>
    public static void GatherCacheSlots(ArrayView<float> keys, ArrayView<float> values, ArrayView<float> sourceKeys, ArrayView<float> sourceValues,
        ArrayView<int> rows, CacheSlots s)
    {
        int HS = s.HS, count = s.Count, NH = s.NH;
        for (var i = Grid.GlobalIndex.X; i < s.B * NH * count * HS; i += Grid.DimX * Group.DimX)
        {
            int d = i % HS, t = i / HS % count, h = i / (HS * count) % NH, r = i / (HS * count * NH);
            var source = rows[r];
            if (source < 0) continue;
            var into = (((long)r * NH + h) * s.Tmax + s.From + t) * HS + d;
            var at = (((long)source * NH + h) * s.SourceTmax + s.SourceFrom + t) * HS + d;
            keys[into] = sourceKeys[at];
            values[into] = sourceValues[at];
        }
    }


    /// <summary>out[r, c] = input[rows[r], c]; one thread per (r, c) of out (R, C).</summary>
    public static void GatherRows(ArrayView<float> output, ArrayView<float> input, ArrayView<int> rows, int R, int C)
    {
        for (var i = Grid.GlobalIndex.X; i < R * C; i += Grid.DimX * Group.DimX)
        {
            int r = i / C, c = i % C;
            output[i] = input[rows[r] * C + c];
        }
    }
}

/// <summary>
/// Which positions <see cref="ElementwiseKernels.GatherCacheSlots"/> copies: [From, From + Count) of B rows of NH heads × Tmax
/// slots × HS, from [SourceFrom, SourceFrom + Count) of a source of SourceTmax slots.
/// </summary>
internal readonly struct CacheSlots(int B, int from, int count, int Tmax, int NH, int HS, int sourceFrom, int sourceTmax)
{
    public readonly int B = B;
    public readonly int From = from;
    public readonly int Count = count;
    public readonly int Tmax = Tmax;
    public readonly int NH = NH;
    public readonly int HS = HS;
    public readonly int SourceFrom = sourceFrom;
    public readonly int SourceTmax = sourceTmax;
}
