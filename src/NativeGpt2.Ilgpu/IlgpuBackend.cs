using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using NativeGpt2.Backends;
using NativeGpt2.Ilgpu.Kernels;
using NativeGpt2.Weights;

namespace NativeGpt2.Ilgpu;

/// <summary>
/// The GPT-2 operators as ILGPU kernels (<c>Kernels/</c>), on a CUDA GPU (<c>cuda</c>) or on ILGPU's CPU
/// accelerator (<c>ilgpu-cpu</c>), which runs the same kernels with one OS thread per simulated GPU thread:
/// it exists to test the kernels on a machine without a GPU.
/// </summary>
/// <remarks>
/// <para>Kernels are compiled once, when the backend is made, and their launchers kept (ILGPU's own cache
/// holds them weakly). Buffers are device memory; weights are uploaded once at load.</para>
/// <para>Passes from several threads are serialized: <see cref="Enter"/> takes a lock and binds the
/// accelerator to the calling thread (launchers do not do it themselves). One pass already fills the device.</para>
/// </remarks>
public sealed class IlgpuBackend : IBackend
{
    /// <summary>Threads per group on a real GPU; the simulator's device is smaller.</summary>
    private const int PreferredGroupSize = 256;

    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly object _gate = new();
    private bool _disposed;
    private readonly int _groupSize;
    private readonly int _tileX, _tileY;

    /// <summary>Threads per group of argmax, a group per row of logits: the most a group holds (1,024 on a GPU), so a row is read widely at once.</summary>
    private readonly int _rowGroupSize;

    /// <summary>Threads per group of the head's matrix-vector kernel: at most <see cref="MatMulKernels.MaxHeadWarps"/> warps, for its shared memory.</summary>
    private readonly int _headGroupSize;

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int> _embedding;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _add;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape> _appendKeyValues;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _gatherRows;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, CacheSlots> _gatherCacheSlots;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _layerNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape,
        SpecializedValue<int>, SpecializedValue<int>, SpecializedValue<int>> _matMulTiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape,
        SpecializedValue<int>, SpecializedValue<int>, SpecializedValue<int>, int> _matMulTiledChunkSums;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape> _addChunkSumsInOrder;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, MatMulShape> _matVec;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, MatMulShape, SpecializedValue<int>> _matVecColumns;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, MatMulShape> _matVecWords;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape> _addColumnChunkSums;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape> _matVecTransposed;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionShape> _attention;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionShape> _attentionPrefillWarps;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionShape> _attentionPrefillTiles;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
        ArrayView<int>, ArrayView<int>, AttentionShape, int> _attentionDecode;

    // Partial sums of the kernels split across the GPU (decoding projections and attention), and their tickets (zero
    // between launches: the group that takes the last one resets it). One pass runs at a time (Enter), so one set serves all.
    private readonly Scratch<float> _matVecPartials;
    private readonly Scratch<int> _matVecTickets;
    private readonly Scratch<float> _attentionPartials;
    private readonly Scratch<int> _attentionTickets;
    private readonly Scratch<float> _tiledPartials;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _targetLogProbabilities;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<float>, int, int> _argMax;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<float>, int, int, int, int> _topKCandidates;

    /// <summary>The stream every launch and copy goes to: ILGPU's default, or on CUDA with graphs one that can record.</summary>
    private readonly AcceleratorStream _stream;

    /// <summary>Decoding steps recorded as CUDA graphs (<see cref="StepGraphs.Variable"/>), or null.</summary>
    private readonly StepGraphs? _graphs;

    /// <summary>The cache's length during a decoding step, for the attention of a replayed one (<see cref="RunStep"/>).</summary>
    private readonly DeviceBuffer<int> _cacheLength;

    /// <summary>Whether the step being launched has its attention read the cache's length from <see cref="_cacheLength"/>.</summary>
    private bool _lengthFromDevice;

    /// <summary>
    /// Whether every decoding step reads the cache's length from the device, as a replayed CUDA graph does, without
    /// recording anything: so that the simulator runs what a graph runs (tests).
    /// </summary>
    internal bool StepsReadLengthFromDevice { get; set; }

    /// <summary>
    /// Most groups a launch uses; kernels loop over the rest. Enough to fill every multiprocessor several
    /// times over on a GPU; one per multiprocessor on the CPU accelerator, where each group costs a barrier
    /// between OS threads.
    /// </summary>
    private readonly int _maxGroups;


    private IlgpuBackend(string name, Context context, Accelerator accelerator, string description, int? maxGroups = null)
    {
        Name = name;
        _description = GeneralKernelsRequested ? $"{description}; general kernels only ({KernelsVariable}=general)" : description;
        _context = context;
        _accelerator = accelerator;
        var warp = accelerator.WarpSize;
        var sizes = LaunchSizes.For(warp, accelerator.MaxNumThreadsPerGroup);
        (_groupSize, _tileX, _tileY, _headGroupSize, _rowGroupSize) = sizes;
        if (8 * _tileX > MatMulKernels.MaxTile || 4 * _tileY > MatMulKernels.MaxTile || _tileX * _tileY != sizes.TileThreads)
            throw new BackendUnavailableException(name, $"a group of {sizes.TileThreads} threads does not make a matmul tile");
        if (warp > Math.Min(MatMulKernels.MaxWarp, AttentionKernel.MaxBlockKeys) || _groupSize / warp > Math.Min(Reductions.MaxWarpsPerGroup, MatMulKernels.MaxSlabChunks))
            throw new BackendUnavailableException(name, $"warps of {warp} threads are not supported (at most {MatMulKernels.MaxWarp})");
        _maxGroups = maxGroups ?? (accelerator.AcceleratorType == AcceleratorType.CPU
            ? accelerator.NumMultiprocessors
            : accelerator.NumMultiprocessors * Math.Max(1, accelerator.MaxNumThreadsPerMultiprocessor / _groupSize) * 4);
        _matVecRowLimit = accelerator.AcceleratorType == AcceleratorType.CPU ? CpuAcceleratorMatVecRows : MatMulKernels.MaxMatVecRows;
        if (!GeneralKernelsRequested && Environment.GetEnvironmentVariable(MatVecColumnsVariable) is { Length: > 0 } columns)
        {
            MatVecColumnWidth = columns.Trim().ToLowerInvariant() switch { "0" => 0, "8" => 8, "16" => 16, "32" => 32, "words" => MatVecWords, _ => null };
            _description += MatVecColumnWidth switch
            {
                null => $"; {MatVecColumnsVariable}={columns} ignored: not 0, 8, 16, 32 or words",
                0 => $"; decoding projections split over the inputs ({MatVecColumnsVariable})",
                MatVecWords => $"; decoding projections read along the weight rows, {4 * accelerator.WarpSize} columns a warp ({MatVecColumnsVariable})",
                var width => $"; decoding projections in blocks of {width} columns ({MatVecColumnsVariable})",
            };
        }
        if (Environment.GetEnvironmentVariable(SplitVariable) is { Length: > 0 } split)
        {
            if (split.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase))
            {
                _inputSplits = AutoInputSplits;
                _description += $"; tiled matmuls' inputs split by shape ({SplitVariable}=auto)";
            }
            else
            {
                var known = int.TryParse(split.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var runs)
                    && runs is >= 1 and <= MaxInputSplits;
                if (known) _inputSplits = runs;
                _description += !known ? $"; {SplitVariable}={split} ignored: not auto or 1 to {MaxInputSplits}"
                    : runs == 1 ? $"; tiled matmuls' inputs not split ({SplitVariable}=1)"
                    : $"; tiled matmuls' inputs split in {runs} ({SplitVariable})";
            }
        }
        if (Environment.GetEnvironmentVariable(TilesVariable) is { Length: > 0 } tiles)
        {
            var problem = TileShape.TryParse(tiles, out var shape) ? TileProblem(shape) : "not ROWSxCOLUMNS";
            _forcedTiles = problem is null ? shape : null;
            _description += problem is null ? $"; every tiled matmul in {shape} tiles ({TilesVariable})" : $"; {TilesVariable}={tiles} ignored: {problem}";
        }
        _copiesInStreamOrder = accelerator.AcceleratorType == AcceleratorType.Cuda;
        var profiling = KernelProfile.Requested;
        // Stream markers need a context built with profiling on (Create* does it when the variable asks for device time).
        if (profiling == KernelProfile.Mode.Device && !context.Properties.EnableProfiling) profiling = KernelProfile.Mode.Wait;
        _profile = profiling == KernelProfile.Mode.Off ? null : new KernelProfile(accelerator, profiling);
        // Graphs record a stream of their own (ILGPU's default is CUDA's legacy stream, which cannot record); profiling
        // times launches one by one, so the two do not mix.
        if (accelerator is CudaAccelerator && StepGraphs.Requested && _profile is null)
        {
            _stream = accelerator.CreateStream();
            _graphs = new StepGraphs((CudaStream)_stream);
        }
        else
        {
            _stream = accelerator.DefaultStream;
        }
        // A recorded step names the scratch buffers it was recorded with: when one moves, the recordings go.
        Action grown = () => _graphs?.Forget();
        _matVecPartials = new Scratch<float>(accelerator, name, _stream, grown);
        _matVecTickets = new Scratch<int>(accelerator, name, _stream, grown);
        _attentionPartials = new Scratch<float>(accelerator, name, _stream, grown);
        _attentionTickets = new Scratch<int>(accelerator, name, _stream, grown);
        _tiledPartials = new Scratch<float>(accelerator, name, _stream, grown);
        _cacheLength = Allocate<int>(1);
        _embedding = Load<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int>("Embedding", ElementwiseKernels.Embedding);
        _add = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>("Add", ElementwiseKernels.Add);
        _appendKeyValues = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>("AppendKeyValues", ElementwiseKernels.AppendKeyValues);
        _gatherRows = Load<ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>("GatherRows", ElementwiseKernels.GatherRows);
        _gatherCacheSlots = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, CacheSlots>("GatherCacheSlots", ElementwiseKernels.GatherCacheSlots);
        _layerNorm = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>("LayerNorm", LayerNormKernel.Forward);
        _matMulTiled = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape,
            SpecializedValue<int>, SpecializedValue<int>, SpecializedValue<int>>("MatMulTiled", MatMulKernels.Tiled);
        _matMulTiledChunkSums = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape,
            SpecializedValue<int>, SpecializedValue<int>, SpecializedValue<int>, int>("MatMulTiledChunkSums", MatMulKernels.TiledChunkSums);
        _addChunkSumsInOrder = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>("AddChunkSumsInOrder", MatMulKernels.AddChunkSumsInOrder);
        _matVec = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, MatMulShape>("MatVec", MatMulKernels.MatVec);
        _matVecColumns = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, MatMulShape, SpecializedValue<int>>("MatVecColumns", MatMulKernels.MatVecColumns);
        _matVecWords = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, MatMulShape>("MatVecWords", MatMulKernels.MatVecWords);
        _addColumnChunkSums = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>("AddColumnChunkSums", MatMulKernels.AddColumnChunkSums);
        _matVecTransposed = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, MatMulShape>("MatVecTransposed", MatMulKernels.MatVecTransposed);
        _attention = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionShape>("AttentionPrefill", AttentionKernel.Prefill);
        _attentionPrefillWarps = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionShape>("AttentionPrefillWarps", AttentionKernel.PrefillWarps);
        _attentionPrefillTiles = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionShape>("AttentionPrefillTiles", AttentionKernel.PrefillTiles);
        _attentionDecode = Load<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<int>, ArrayView<int>, ArrayView<int>, AttentionShape, int>("AttentionDecode", AttentionKernel.Decode);
        _targetLogProbabilities = Load<ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>("TargetLogProbabilities", RowKernels.TargetLogProbabilities);
        _argMax = Load<ArrayView<int>, ArrayView<float>, int, int>("ArgMax", RowKernels.ArgMax);
        _topKCandidates = Load<ArrayView<int>, ArrayView<float>, int, int, int, int>("TopKCandidates", RowKernels.TopKCandidates);
    }

    /// <summary>The threads per group the kernels launch with (see <see cref="LaunchSizes"/>).</summary>
    internal LaunchSizes Sizes => new(_groupSize, _tileX, _tileY, _headGroupSize, _rowGroupSize);

    /// <summary>Most groups a launch uses (<see cref="_maxGroups"/>).</summary>
    internal int MaxGroups => _maxGroups;

    /// <summary>
    /// Threads per group: <paramref name="Group"/> for most kernels, a matmul tile of <paramref name="TileX"/> ·
    /// <paramref name="TileY"/> threads, <paramref name="HeadGroup"/> for the head's matrix-vector kernel and
    /// <paramref name="RowGroup"/> for the kernels that take a group per row of logits.
    /// </summary>
    internal readonly record struct LaunchSizes(int Group, int TileX, int TileY, int HeadGroup, int RowGroup)
    {
        /// <summary>The threads of a matmul tile, TileX · TileY: the group's, at most 128.</summary>
        public int TileThreads => TileThreadsOf(Group);

        private static int TileThreadsOf(int group) => Math.Min(group, 128);

        /// <summary>The sizes on a device of warps of <paramref name="warp"/> threads and groups of at most <paramref name="maxThreadsPerGroup"/>.</summary>
        public static LaunchSizes For(int warp, int maxThreadsPerGroup)
        {
            var group = Math.Max(warp, Math.Min(PreferredGroupSize, maxThreadsPerGroup) / warp * warp);
            // The tile is TileX · TileY threads (a power-of-two split of TileThreads), each computing 4 × 8 outputs.
            var tileThreads = TileThreadsOf(group);
            var tileX = 1 << (int)Math.Floor(Math.Log2(tileThreads) / 2);
            return new LaunchSizes(group, tileX, tileThreads / tileX,
                Math.Min(group, MatMulKernels.MaxHeadWarps * warp),
                Math.Max(group, Math.Min(Math.Min(1024, maxThreadsPerGroup), Reductions.MaxWarpsPerGroup * warp) / warp * warp));
        }
    }

    /// <summary>Per-kernel timing when <see cref="KernelProfile.Variable"/> asks for it, else null.</summary>
    private readonly KernelProfile? _profile;

    // Kernels are loaded once, each launcher bound to the backend's stream and, when profiling asks, timed.

    private Action<KernelConfig, T1, T2, T3, T4> Load<T1, T2, T3, T4>(string name, Action<T1, T2, T3, T4> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4> bound = (config, a1, a2, a3, a4) => launch(stream, config, a1, a2, a3, a4);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    private Action<KernelConfig, T1, T2, T3, T4, T5> Load<T1, T2, T3, T4, T5>(string name, Action<T1, T2, T3, T4, T5> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4, T5> bound = (config, a1, a2, a3, a4, a5) => launch(stream, config, a1, a2, a3, a4, a5);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6> Load<T1, T2, T3, T4, T5, T6>(string name, Action<T1, T2, T3, T4, T5, T6> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4, T5, T6> bound = (config, a1, a2, a3, a4, a5, a6) => launch(stream, config, a1, a2, a3, a4, a5, a6);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> Load<T1, T2, T3, T4, T5, T6, T7>(string name, Action<T1, T2, T3, T4, T5, T6, T7> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> bound = (config, a1, a2, a3, a4, a5, a6, a7) => launch(stream, config, a1, a2, a3, a4, a5, a6, a7);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Load<T1, T2, T3, T4, T5, T6, T7, T8>(string name, Action<T1, T2, T3, T4, T5, T6, T7, T8> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> bound = (config, a1, a2, a3, a4, a5, a6, a7, a8) => launch(stream, config, a1, a2, a3, a4, a5, a6, a7, a8);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9>(string name, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> bound = (config, a1, a2, a3, a4, a5, a6, a7, a8, a9) => launch(stream, config, a1, a2, a3, a4, a5, a6, a7, a8, a9);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(string name, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> kernel)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct
    {
        var launch = _accelerator.LoadKernel(kernel);
        var stream = _stream;
        Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> bound = (config, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10) => launch(stream, config, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10);
        return _profile is null ? bound : _profile.Timed(name, bound);
    }

    /// <summary>The CUDA device <paramref name="deviceIndex"/>; needs only the NVIDIA driver (ILGPU emits PTX, the driver compiles it).</summary>
    /// <exception cref="BackendUnavailableException">No CUDA device or driver.</exception>
    public static IlgpuBackend CreateCuda(int deviceIndex = 0)
    {
        Context? context = null;
        try
        {
            context = Context.Create(builder => Profiled(Fused.Register(builder.Cuda().EnableAlgorithms())));
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
                throw new BackendUnavailableException("cuda", "no CUDA device found (no NVIDIA driver, or it reports no device); use --backend cpu");
            if ((uint)deviceIndex >= (uint)devices.Count)
                throw new BackendUnavailableException("cuda", $"device {deviceIndex} does not exist ({devices.Count} found)");
            var accelerator = devices[deviceIndex].CreateCudaAccelerator(context);
            var description = $"CUDA: {accelerator.Name}, {accelerator.MemorySize / (1L << 30)} GiB, compute {accelerator.Architecture.Major}.{accelerator.Architecture.Minor}, "
                + $"{accelerator.NumMultiprocessors} multiprocessors";
            return new IlgpuBackend("cuda", context, accelerator, description);
        }
        catch (Exception e) when (e is not BackendUnavailableException)
        {
            context?.Dispose();
            throw new BackendUnavailableException("cuda", $"the CUDA accelerator could not be started ({e.Message})", e);
        }
        catch
        {
            context?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator with a small simulated device (warps of 4 threads, groups of 16, one
    /// multiprocessor): the kernels run as on a GPU, one OS thread per simulated thread. Measured on a
    /// 2-core machine, barriers between OS threads, not arithmetic, set its speed, so a small group is fastest.
    /// </summary>
    public static IlgpuBackend CreateCpuSimulator() => CreateCpuSimulator(4, 4, 1);

    /// <summary>
    /// A simulated device of <paramref name="multiprocessors"/> multiprocessors, each running <paramref name="warps"/>
    /// warps of <paramref name="warp"/> threads. A launch uses at most <paramref name="maxGroups"/> groups, by default
    /// one per multiprocessor; a GPU launches many more than it has multiprocessors (see <see cref="_maxGroups"/>),
    /// and the simulator runs them one after another.
    /// </summary>
    internal static IlgpuBackend CreateCpuSimulator(int warp, int warps, int multiprocessors, int? maxGroups = null)
    {
        var device = new CPUDevice(numThreadsPerWarp: warp, numWarpsPerMultiprocessor: warps, numMultiprocessors: multiprocessors);
        var context = Context.Create(builder => Profiled(builder.CPU(device).EnableAlgorithms()));
        try
        {
            var accelerator = context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
            var description = $"ILGPU CPU accelerator: {accelerator.NumMultiprocessors} simulated multiprocessors, groups of {accelerator.MaxNumThreadsPerGroup} threads, warps of {accelerator.WarpSize}";
            return new IlgpuBackend("ilgpu-cpu", context, accelerator, description, maxGroups);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>The context builder with profiling on when <see cref="KernelProfile.Variable"/> asks for device time.</summary>
    private static Context.Builder Profiled(Context.Builder builder) =>
        KernelProfile.Requested == KernelProfile.Mode.Device ? builder.Profiling() : builder;

    /// <summary>Whether a CUDA device can be used here (the NVIDIA driver loads and reports one).</summary>
    public static bool CudaAvailable()
    {
        try
        {
            using var context = Context.Create(builder => builder.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or InvalidOperationException or NotSupportedException)
        {
            return false;
        }
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    /// <remarks>With graphs, also how many steps were recorded and replayed so far, or why recording stopped.</remarks>
    public string Description => _graphs is null ? _description : $"{_description}; {_graphs.Summary}";

    private readonly string _description;

    /// <inheritdoc />
    /// <remarks>
    /// With <see cref="StepGraphs.Variable"/>=1 on CUDA, a cache's decoding steps are recorded once and replayed
    /// (<see cref="StepGraphs"/>); the cache's length goes to the device first, for the attention.
    /// </remarks>
    public void RunStep(StepKey key, int past, Action launches)
    {
        if (_graphs is null && !StepsReadLengthFromDevice)
        {
            launches();
            return;
        }
        ReadOnlySpan<int> length = [past];
        CopyFromHost(_cacheLength, 0, length);
        if (_graphs is not null)
        {
            _graphs.Run(key, launches, recording => _lengthFromDevice = recording);
            return;
        }
        _lengthFromDevice = true;
        try
        {
            launches();
        }
        finally
        {
            _lengthFromDevice = false;
        }
    }

    /// <inheritdoc />
    public IDisposable Enter() => new Scope(this, Exclusive());

    /// <inheritdoc />
    public DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged
    {
        using var exclusive = Exclusive();
        return new IlgpuBuffer<T>(this, AllocateOnDevice<T>(_accelerator, Name, Math.Max(length, 1)), length);
    }

    /// <summary>
    /// <paramref name="length"/> values of device memory, or, where the device has too little, an
    /// <see cref="OutOfDeviceMemoryException"/> that says how much was asked for and how much is free.
    /// </summary>
    private static MemoryBuffer1D<T, Stride1D.Dense> AllocateOnDevice<T>(Accelerator accelerator, string backend, long length) where T : unmanaged
    {
        try
        {
            return accelerator.Allocate1D<T>(length);
        }
        catch (Exception e) when (e is OutOfMemoryException or CudaException { Error: nameof(CudaError.CUDA_ERROR_OUT_OF_MEMORY) })
        {
            var bytes = length * Unsafe.SizeOf<T>();
            static string Megabytes(long count) => $"{count / 1e6:N0} MB";
            var free = accelerator is CudaAccelerator cuda && FreeMemory(cuda) is >= 0 and var left ? $" ({Megabytes(left)} free of {Megabytes(cuda.MemorySize)})" : "";
            throw new OutOfDeviceMemoryException(backend, bytes,
                $"out of memory: {Megabytes(bytes)} asked of {accelerator.Name}{free}. This backend holds weights as float32 "
                + "(4 bytes a parameter, with the activations and the key/value cache on top): run a smaller model, a shorter context or "
                + "batch, or the cpu backend (--backend cpu), which also holds 16- and 8-bit weights", e);
        }
    }

    /// <summary>The device's free memory now, or -1 where the driver does not say.</summary>
    private static long FreeMemory(CudaAccelerator cuda)
    {
        try
        {
            return cuda.GetFreeMemory();
        }
        catch (Exception e) when (e is CudaException or InvalidOperationException)
        {
            return -1;
        }
    }

    /// <summary>
    /// The pass lock (re-entered when this thread is in a pass) and the accelerator bound to this thread, for
    /// memory operations outside a pass (loading, a cache disposed on another thread): an ILGPU accelerator is not
    /// safe to use from several threads at once, and one thread loading a model while another ran a pass once
    /// left a recorded activation zero on the CPU accelerator.
    /// </summary>
    private Exclusivity Exclusive()
    {
        Monitor.Enter(_gate);
        try
        {
            return new Exclusivity(_gate, _accelerator.BindScoped());
        }
        catch
        {
            Monitor.Exit(_gate);
            throw;
        }
    }

    private readonly struct Exclusivity(object gate, ScopedAcceleratorBinding binding) : IDisposable
    {
        public void Dispose()
        {
            binding.Dispose();
            Monitor.Exit(gate);
        }
    }

    /// <inheritdoc />
    public DeviceBuffer<T>? Wrap<T>(T[] host) where T : unmanaged => null;

    /// <inheritdoc />
    public DeviceBuffer<T> Upload<T>(T[] data) where T : unmanaged
    {
        var buffer = Allocate<T>(data.Length);
        CopyFromHost(buffer, 0, data);
        return buffer;
    }

    /// <inheritdoc />
    public unsafe void CopyFromHost<T>(DeviceBuffer<T> destination, long offset, ReadOnlySpan<T> source) where T : unmanaged
    {
        if (source.IsEmpty) return;
        using var exclusive = Exclusive();
        var target = View(destination).SubView(offset, source.Length);
        // ILGPU copies from the address of the reference it is given: the host memory stays pinned until the copy is
        // done, or a garbage collection that moves the array mid-copy leaves the device reading the old place.
        fixed (T* from = source)
        {
            if (_copiesInStreamOrder)
            {
                // Queued behind the kernels; CUDA has taken the managed (pageable) memory into its staging buffer when
                // the call returns, so nothing waits. ILGPU's CopyFromCPU would wait for the stream.
                target.CopyFromCPUUnsafeAsync(_stream, ref Unsafe.AsRef<T>(from), source.Length);
                return;
            }
            // Kernels still running may read this buffer; ILGPU's CPU accelerator copies at once, not in stream order.
            _accelerator.Synchronize();
            target.CopyFromCPU(_stream, ref Unsafe.AsRef<T>(from), source.Length);
            _accelerator.Synchronize();
        }
    }

    /// <inheritdoc />
    public unsafe void Download<T>(Span<T> destination, DeviceBuffer<T> source, long offset) where T : unmanaged
    {
        if (destination.IsEmpty) return;
        using var exclusive = Exclusive();
        // The kernels that write this buffer must have finished: ILGPU's CPU accelerator copies at once, not in
        // stream order, and a recorded activation once came back as zeros. (On CUDA the copy waits its turn on the
        // stream, and CopyToCPU waits for it.)
        if (!_copiesInStreamOrder) _accelerator.Synchronize();
        // Pinned until the copy is done, as above: a download into an array that a collection moved mid-copy landed
        // in the array's old place and left the new one all zeros (ILGPU's CPU accelerator, about one run in a
        // hundred of a loop that allocates).
        fixed (T* to = destination)
        {
            View(source).SubView(offset, destination.Length).CopyToCPU(_stream, ref Unsafe.AsRef<T>(to), destination.Length);
            if (!_copiesInStreamOrder) _accelerator.Synchronize();
        }
    }

    /// <inheritdoc />
    public WeightLayout MatrixLayout => WeightLayout.RowMajor;

    /// <inheritdoc />
    /// <remarks>The kernels read float32 <c>[in, out]</c>: 16- and 8-bit weights are widened once, here.</remarks>
    public DeviceMatrix PrepareMatrix(Weight weight) => new IlgpuMatrix(weight.Shape[0], weight.Shape[1], UploadFloat32(weight));

    /// <inheritdoc />
    public DeviceTable PrepareTable(Weight weight) => new IlgpuTable(weight.Shape[0], weight.Shape[1], UploadFloat32(weight));

    /// <summary>A weight's values as row-major float32 in device memory, through one host buffer.</summary>
    private DeviceBuffer<float> UploadFloat32(Weight weight)
    {
        if (weight is { Format: WeightFormat.F32, Layout: WeightLayout.RowMajor }) return Upload(weight.Data);
        var values = new float[weight.Shape.Aggregate(1L, (a, b) => a * b)];
        weight.CopyTo(values);
        return Upload(values);
    }

    /// <inheritdoc />
    public void Embedding(DeviceBuffer<float> output, DeviceBuffer<int> ids, DeviceBuffer<int> positions,
        DeviceTable wte, DeviceBuffer<float> wpe, int N, int C) =>
        _embedding(Threads(N * C), View(output), View(ids), View(positions), View(((IlgpuTable)wte).Buffer), View(wpe), N, C);

    /// <inheritdoc />
    public void LayerNorm(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float> bias,
        int N, int C, float epsilon)
    {
        _layerNorm(Launch(N), View(output), View(input), View(weight), View(bias), N, C, epsilon);
    }

    /// <inheritdoc />
    public void MatMul(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceMatrix weight, DeviceBuffer<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        var shape = new MatMulShape(N, IC, OC, Kind(epilogue), hasBias: true, transposed: false);
        var w = ((IlgpuMatrix)weight).Buffer;
        if (N <= MatVecRowLimit)
        {
            LaunchMatVec(View(output), View(input), View(input), View(input), View(input), w, bias, shape);
            return;
        }
        LaunchTiled(output, input, w, bias, shape);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Decoding (up to <see cref="MatVecRowLimit"/> rows) fuses the two: the matrix-vector kernel normalizes
    /// its input as it stages it. More rows run the LayerNorm kernel, then the tiled matmul.
    /// </remarks>
    public void LayerNormMatMul(DeviceBuffer<float> output, DeviceBuffer<float> normalized, DeviceBuffer<float> input,
        DeviceBuffer<float> normWeight, DeviceBuffer<float> normBias, float epsilon,
        DeviceMatrix weight, DeviceBuffer<float> bias, int N, int IC, int OC, MatMulEpilogue epilogue)
    {
        var w = ((IlgpuMatrix)weight).Buffer;
        if (N <= MatVecRowLimit)
        {
            var shape = new MatMulShape(N, IC, OC, Kind(epilogue), hasBias: true, transposed: false, normalize: true, epsilon);
            LaunchMatVec(View(output), View(normalized), View(input), View(normWeight), View(normBias), w, bias, shape);
            return;
        }
        LayerNorm(normalized, input, normWeight, normBias, N, IC, epsilon);
        LaunchTiled(output, normalized, w, bias, new MatMulShape(N, IC, OC, Kind(epilogue), hasBias: true, transposed: false));
    }

    private static int Kind(MatMulEpilogue epilogue) => epilogue switch
    {
        MatMulEpilogue.BiasGelu => MatMulShape.Gelu,
        MatMulEpilogue.Residual => MatMulShape.Residual,
        MatMulEpilogue.BiasGeluErf => MatMulShape.GeluErf,
        MatMulEpilogue.BiasRelu => MatMulShape.Relu,
        MatMulEpilogue.BiasSilu => MatMulShape.Silu,
        MatMulEpilogue.BiasQuickGelu => MatMulShape.QuickGelu,
        MatMulEpilogue.Bias => MatMulShape.Bias,
        _ => throw new ArgumentOutOfRangeException(nameof(epilogue), epilogue, null),
    };

    /// <summary>
    /// A decoding projection, in groups of the LayerNorm kernel's size (so a fused normalization matches it bit for bit).
    /// Where the rows' inputs and chunk sums fit in shared memory, a group per block of 16 columns (8 when 16 would leave
    /// multiprocessors without a block) over all the inputs (<see cref="MatMulKernels.MatVecColumns"/>); otherwise, or
    /// with <see cref="MatVecColumnWidth"/> 0 (which also sets any other width), the kernel split over the inputs across groups, a group per (block of
    /// columns, slab of one chunk per warp), with the partial sums and tickets it needs (<see cref="MatMulKernels.MatVec"/>).
    /// </summary>
    private void LaunchMatVec(ArrayView<float> output, ArrayView<float> normalized, ArrayView<float> input, ArrayView<float> normWeight,
        ArrayView<float> normBias, DeviceBuffer<float> weight, DeviceBuffer<float> bias, MatMulShape shape)
    {
        var chunks = Groups(shape.IC, MatMulKernels.Chunk);
        if (MatVecColumnWidth == MatVecWords)
        {
            // A warp per (block of 4·W columns, chunk): every chunk's sums to scratch, then a group per block of columns adds
            // them in order.
            var outputs = (long)shape.N * shape.OC;
            var items = Groups(shape.OC, 4 * _accelerator.WarpSize) * chunks;
            var sums = _matVecPartials.View(outputs * chunks);
            _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}, words of {4 * _accelerator.WarpSize} columns", bytes: 4.0 * shape.IC * shape.OC);
            _matVecWords(Launch(Groups(items, _groupSize / _accelerator.WarpSize)), sums, normalized, input, normWeight, normBias, View(weight), shape);
            _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}, {chunks} chunk sums", bytes: 4.0 * outputs * (chunks + 2));
            _addColumnChunkSums(Launch(Groups(shape.OC, MatMulKernels.MaxWarp)), output, View(bias), sums, shape);
            return;
        }
        var columns = MatVecColumnWidth ?? (Groups(shape.OC, 16) >= _accelerator.NumMultiprocessors ? 16 : 8);
        if (columns > 0 && shape.N * shape.IC <= MatMulKernels.MaxColumnInputs && shape.N * chunks * columns <= MatMulKernels.MaxColumnSums)
        {
            // A group per block of columns over all the inputs: one phase, nothing to merge across groups.
            _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}, {columns} columns a group", bytes: 4.0 * shape.IC * shape.OC);
            _matVecColumns(Launch(Groups(shape.OC, columns)), output, normalized, input, normWeight, normBias, View(weight), View(bias), shape,
                SpecializedValue.New(columns));
            return;
        }
        var blocks = Groups(shape.OC, MatMulKernels.MaxWarp);
        var slabs = Groups(chunks, _groupSize / _accelerator.WarpSize);
        var partials = _matVecPartials.View((long)shape.N * chunks * shape.OC);
        var tickets = _matVecTickets.View(blocks);
        _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}", bytes: 4.0 * shape.IC * shape.OC);
        _matVec(Launch(blocks * slabs), output, normalized, input, normWeight, normBias, View(weight), View(bias), partials, tickets, shape);
    }

    /// <inheritdoc />
    public void MatMulTransposed(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceTable table, int N, int IC, int OC)
    {
        var weight = ((IlgpuTable)table).Buffer;
        var shape = new MatMulShape(N, IC, OC, MatMulShape.Bias, hasBias: false, transposed: true);
        if (N <= MatVecRowLimit)
        {
            // A warp per block of warp-size weight rows.
            var warps = _headGroupSize / _accelerator.WarpSize;
            var groups = Groups(Groups(OC, _accelerator.WarpSize) * N, warps);
            _profile?.Describe($"{N}x{IC}x{OC}", bytes: 4.0 * IC * OC);
            _matVecTransposed(new KernelConfig(Math.Min(groups, _maxGroups), _headGroupSize), View(output), View(input), View(weight), shape);
            return;
        }
        LaunchTiled(output, input, weight, bias: weight, shape);
    }

    /// <summary>
    /// The tiled matmul. Tiles are 4·TileY rows by 8·TileX columns; when that makes fewer than two tiles per
    /// multiprocessor (a prompt's attention projection: 1,024 × 768 outputs are 192 tiles of 64 × 64), tiles of half
    /// as many rows are taken, down to 16, so that every multiprocessor has work; <see cref="ForcedTiles"/> overrides the
    /// choice. With <see cref="InputSplits"/> set to <see cref="AutoInputSplits"/>, the tiles keep their rows (fewer only
    /// where the matrix has fewer) and the inputs are split instead (<see cref="SplitFor"/>). Every output is summed in
    /// the same order whatever the tile and the split.
    /// </summary>
    private void LaunchTiled(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float> bias, MatMulShape shape)
    {
        int tileX = _tileX, tileY = _tileY;
        var auto = InputSplits == AutoInputSplits;
        if (_forcedTiles is { } forced) (tileX, tileY) = (forced.Columns / 8, forced.Rows / 4);
        else if (auto)
        {
            // Rows of padding do no work: half the rows while half still hold every row of the matrix.
            while (tileY > 4 && 2 * tileY >= shape.N) tileY /= 2;
        }
        else
        {
            while (tileY > 4 && Groups(shape.OC, 8 * tileX) * Groups(shape.N, 4 * tileY) < 2 * _accelerator.NumMultiprocessors) tileY /= 2;
        }
        var tiles = Groups(shape.OC, 8 * tileX) * Groups(shape.N, 4 * tileY);
        // Tiles load whole 16-byte words when no word crosses a row's end: rows of IC inputs, and for a Conv1D weight rows of
        // OC columns too (the head's table is read along its rows of IC: GPT-2's 50,257 columns are no obstacle).
        var aligned = shape.IC % 4 == 0 && (shape.Transposed != 0 || shape.OC % 4 == 0) ? 1 : 0;
        var tile = new TileShape(4 * tileY, 8 * tileX);
        var chunks = Groups(shape.IC, MatMulKernels.Chunk);
        var splits = auto ? SplitFor(tiles, chunks, _accelerator.NumMultiprocessors) : Math.Min(InputSplits, chunks);
        if (splits > 1 && (long)shape.N * shape.OC * chunks <= (auto ? AutoSplitPartials : MaxSplitPartials))
        {
            // Split over the inputs: every chunk's sums to scratch, then added in order (the values of one pass).
            var outputs = (long)shape.N * shape.OC;
            var partials = _tiledPartials.View(outputs * chunks);
            _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}, {tile} tiles, inputs in {splits}", flops: 2.0 * shape.N * shape.IC * shape.OC);
            _matMulTiledChunkSums(new KernelConfig((int)Math.Min((long)tiles * splits, _maxGroups), tileX * tileY), partials, View(input),
                View(weight), shape, SpecializedValue.New(tileX), SpecializedValue.New(tileY), SpecializedValue.New(aligned), splits);
            _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}, {chunks} chunk sums", bytes: 4.0 * outputs * (chunks + 2));
            _addChunkSumsInOrder(Threads(outputs), View(output), partials, View(bias), shape);
            return;
        }
        _profile?.Describe($"{shape.N}x{shape.IC}x{shape.OC}, {tile} tiles", flops: 2.0 * shape.N * shape.IC * shape.OC);
        _matMulTiled(new KernelConfig(Math.Min(tiles, _maxGroups), tileX * tileY), View(output), View(input), View(weight), View(bias), shape,
            SpecializedValue.New(tileX), SpecializedValue.New(tileY), SpecializedValue.New(aligned));
    }

    /// <summary>
    /// Set to a number S of 2 or more, every tiled matmul of more than one chunk of inputs is split over its inputs into up to
    /// S runs of chunks (<see cref="MatMulKernels.TiledChunkSums"/>, then <see cref="MatMulKernels.AddChunkSumsInOrder"/>):
    /// S times as many groups, for shapes of few tiles, at the cost of writing and reading every chunk's sums (a matmul
    /// with more than <see cref="MaxSplitPartials"/> of them runs in one pass). Set to <c>auto</c>, each matmul's split
    /// follows its shape (<see cref="SplitFor"/>). The values are the same; the variable is there to measure the split
    /// on a device. Another value is ignored, and the backend's description says so.
    /// </summary>
    public const string SplitVariable = "NATIVEGPT2_ILGPU_SPLIT";

    /// <summary>
    /// Runs of chunks each tiled matmul's inputs are split into (1, the default: none), or <see cref="AutoInputSplits"/>;
    /// the tests set it.
    /// </summary>
    internal int InputSplits
    {
        get => _inputSplits;
        set => _inputSplits = value is >= AutoInputSplits and <= MaxInputSplits ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, $"between 1 and {MaxInputSplits}, or {AutoInputSplits} (by shape)");
    }

    private int _inputSplits = 1;

    /// <summary>The <see cref="InputSplits"/> that splits each matmul by its shape (<see cref="SplitFor"/>).</summary>
    internal const int AutoInputSplits = 0;

    /// <summary>Groups a tiled matmul should have to fill a device, per multiprocessor (see <see cref="SplitFor"/>).</summary>
    internal const int SplitGroupsPerMultiprocessor = 4;

    /// <summary>
    /// Runs of chunks for a tiled matmul of <paramref name="tiles"/> tiles over <paramref name="chunks"/> chunks of inputs
    /// on <paramref name="multiprocessors"/> multiprocessors: none (1) when the tiles alone give the device at least half
    /// of <see cref="SplitGroupsPerMultiprocessor"/> groups a multiprocessor, else as many as make that many work items,
    /// at most one per chunk. Each group runs its chunks one after another, so a prompt of 128 tokens (128 × 768 outputs
    /// are 24 tiles of 64 × 64) otherwise leaves most of a GPU idle while a few groups each run all 48 chunks of the MLP's
    /// projection. A split writes every chunk's sums and reads them back once: 8 bytes per chunk and output, an eighth of
    /// a byte per multiply-add whatever the split, so it is only taken where the device would be mostly idle without it
    /// (and the launch keeps to <see cref="AutoSplitPartials"/> of them).
    /// </summary>
    internal static int SplitFor(int tiles, int chunks, int multiprocessors)
    {
        var wanted = SplitGroupsPerMultiprocessor * multiprocessors;
        if (chunks < 2 || 2L * tiles >= wanted) return 1;
        return Math.Min(chunks, (wanted + tiles - 1) / tiles);
    }

    /// <summary>
    /// Most chunk sums (outputs × chunks) a split by shape keeps, 256 MB: a prompt of 1,024 tokens through GPT-2 124M
    /// needs 151 MB for the MLP's projection, and a larger split would rather run in one pass than take a small GPU's
    /// memory.
    /// </summary>
    private const long AutoSplitPartials = 1L << 26;

    /// <summary>Most runs <see cref="InputSplits"/> takes.</summary>
    internal const int MaxInputSplits = 64;

    /// <summary>Most chunk sums (outputs × chunks) a split matmul keeps, 1 GB: a larger one (a long prompt's head) runs in one pass.</summary>
    private const long MaxSplitPartials = 1L << 28;

    /// <inheritdoc />
    public void Add(DeviceBuffer<float> output, DeviceBuffer<float> a, DeviceBuffer<float> b, long count) =>
        _add(Threads(count), View(output), View(a), View(b), (int)count);

    /// <inheritdoc />
    public string? CannotRun(Gpt2Config config) => config.HeadSize > AttentionKernel.MaxHeadSize
        ? $"heads of {config.HeadSize} channels (n_embd {config.EmbeddingSize} / n_head {config.HeadCount}) exceed {AttentionKernel.MaxHeadSize}, the most its attention kernels hold; use the cpu backend"
        : null;

    /// <inheritdoc />
    public void Attention(DeviceBuffer<float> output, DeviceBuffer<float>? probabilities, DeviceBuffer<float> qkv,
        DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<int> keyMask,
        int B, int T, int past, int Tmax, int NH, int HS, float scale)
    {
        if (HS > AttentionKernel.MaxHeadSize)
            throw new NotSupportedException($"head size {HS} exceeds {AttentionKernel.MaxHeadSize}, the most the {Name} attention kernels hold");
        var shape = new AttentionShape(B, T, past, Tmax, NH, HS, scale, probabilities is not null);
        if (T == 1 && probabilities is null)
        {
            // Decoding: few queries, many keys; split the keys into chunks worked on side by side, one launch with the append.
            // A step that reads its length from the device (chunk count 0) is launched for the chunks of a full cache (Tmax
            // positions a row), since the launch is replayed as the cache grows; the kernel loops over whatever it finds.
            // The partial sums are sized for the most chunks whatever the length, so that a step being recorded finds
            // them allocated.
            var chunks = AttentionKernel.DecodeChunks(past + 1);
            var partials = _attentionPartials.View((long)B * NH * AttentionKernel.MaxDecodeChunks * (HS + 2));
            var tickets = _attentionTickets.View(B * NH);
            _profile?.Describe($"up to {1 << (int)Math.Ceiling(Math.Log2(past + 1))} keys");
            var launched = _lengthFromDevice ? AttentionKernel.DecodeChunks(Tmax) : chunks;
            _attentionDecode(AttentionLaunch(launched * NH * B), View(output), partials, View(qkv), View(keys), View(values), View(keyMask),
                tickets, View(_cacheLength), shape, _lengthFromDevice ? 0 : chunks);
            return;
        }
        _appendKeyValues(Threads((long)B * T * NH * HS), View(keys), View(values), View(qkv), shape);
        // Scores and weighted values: 2 · HS multiply-adds for each (query, key seen) pair.
        _profile?.Describe($"T={T} past={past}", flops: 4.0 * B * NH * HS * (T * (double)past + T * (T + 1.0) / 2));
        if (probabilities is null && PrefillByQueryTiles && AttentionKernel.Tiles(HS))
        {
            // Tiles of queries sharing each staged block of keys.
            var tiles = Groups(T, AttentionKernel.TileQueries) * NH * B;
            _attentionPrefillTiles(new KernelConfig(Math.Min(tiles, _maxGroups), AttentionKernel.TileWarps * _accelerator.WarpSize),
                View(output), View(qkv), View(keys), View(values), View(keyMask), shape);
            return;
        }
        if (probabilities is null)
        {
            // A warp per query (heads the tiles do not take); the kernel below is kept for when the probabilities are written too.
            _attentionPrefillWarps(AttentionLaunch(T * NH * B), View(output), View(qkv), View(keys), View(values), View(keyMask), shape);
            return;
        }
        _attention(Launch(Groups(T, _groupSize) * NH * B),
            View(output), View(probabilities), View(qkv), View(keys), View(values), View(keyMask), shape);
    }

    /// <summary>
    /// Whether prefill attention without probabilities runs by tiles of queries (<see cref="AttentionKernel.PrefillTiles"/>,
    /// the default) or a warp per query (<see cref="AttentionKernel.PrefillWarps"/>): the two give the same values, which
    /// the tests check by switching this off.
    /// </summary>
    internal bool PrefillByQueryTiles { get; set; } = !GeneralKernelsRequested;

    /// <summary>
    /// Columns per group of the decoding projections' column-block kernel (<see cref="MatMulKernels.MatVecColumns"/>): 8,
    /// 16 or 32, or 0 for the split kernel (<see cref="MatMulKernels.MatVec"/>) whatever the shape, or <see cref="MatVecWords"/>
    /// for the kernel that reads the weight along its rows; null (the default) chooses by shape. The kernels give the same
    /// values, which the tests check by setting this.
    /// </summary>
    internal int? MatVecColumnWidth { get; set; } = GeneralKernelsRequested ? 0 : null;

    /// <summary>
    /// The <see cref="MatVecColumnWidth"/> of the kernel that reads the weight along its rows
    /// (<see cref="MatMulKernels.MatVecWords"/>): a warp per block of 4·W columns, four a lane, and its chunk sums added
    /// in order by a second launch. <see cref="MatVecColumnsVariable"/> <c>words</c>.
    /// </summary>
    internal const int MatVecWords = -4;

    /// <summary>
    /// Set to 8, 16 or 32, every decoding projection whose rows fit the column-block kernel takes it with that many columns
    /// a group (32: a whole 128-byte line of each weight row); 0, the split kernel; <c>words</c>, every decoding projection
    /// reads its weight along the rows, 512 contiguous bytes a load instruction of a warp, and adds its chunk sums in a
    /// second launch (<see cref="MatMulKernels.MatVecWords"/>). By default the launch takes 16, or 8
    /// where 16 would leave multiprocessors without a block. The values are the same whatever the kernel; the variable is
    /// there to measure the widths on a device. Another value is ignored, and the backend's description says so;
    /// <see cref="KernelsVariable"/> takes precedence.
    /// </summary>
    public const string MatVecColumnsVariable = "NATIVEGPT2_ILGPU_MATVEC_COLUMNS";

    /// <summary>
    /// Set to ROWSxCOLUMNS (e.g. <c>32x64</c>), every tiled matmul takes tiles of that shape, where by default the launch
    /// chooses by the output's shape (<see cref="LaunchTiled"/>). Rows are a multiple of 4 and columns of 8, at most
    /// <see cref="MatMulKernels.MaxTile"/> each, and the tile's threads (rows/4 · columns/8) a multiple of the warp and at
    /// most a group's. The values are the same whatever the tile; the variable is there to measure tile shapes on a
    /// device. A value that does not fit is ignored, and the backend's description says why.
    /// </summary>
    public const string TilesVariable = "NATIVEGPT2_ILGPU_TILES";

    /// <summary>
    /// The tile of every tiled matmul, or null (the default, or <see cref="TilesVariable"/>'s) to choose by shape. The
    /// tests set it to compare tiles.
    /// </summary>
    internal TileShape? ForcedTiles
    {
        get => _forcedTiles;
        set => _forcedTiles = value is { } tile && TileProblem(tile) is { } problem
            ? throw new ArgumentOutOfRangeException(nameof(value), tile, problem)
            : value;
    }

    private TileShape? _forcedTiles;

    /// <summary>Why tiles of <paramref name="tile"/>'s shape cannot run on this accelerator, or null when they can.</summary>
    internal string? TileProblem(TileShape tile)
    {
        if (tile.Rows <= 0 || tile.Rows % 4 != 0 || tile.Rows > MatMulKernels.MaxTile) return $"rows must be a multiple of 4 up to {MatMulKernels.MaxTile}";
        if (tile.Columns <= 0 || tile.Columns % 8 != 0 || tile.Columns > MatMulKernels.MaxTile) return $"columns must be a multiple of 8 up to {MatMulKernels.MaxTile}";
        var threads = tile.Threads;
        if (threads % _accelerator.WarpSize != 0 || threads > _accelerator.MaxNumThreadsPerGroup)
            return $"its {threads} threads must be a multiple of the warp ({_accelerator.WarpSize}) and at most a group's ({_accelerator.MaxNumThreadsPerGroup})";
        return null;
    }

    /// <summary>
    /// Projections of up to this many rows take the matrix-vector kernels, more the tiled matmul. On a GPU it is
    /// <see cref="MatMulKernels.MaxMatVecRows"/> (8): a decoding step of the server's shared batch reads each weight once,
    /// where the tiled matmul made a dozen tiles of a 768-column output (on an H200, eight sequences of 124M decoded 472
    /// tokens/s in all, one alone 1,387). On the CPU accelerator it is <see cref="CpuAcceleratorMatVecRows"/> (4): there a
    /// prompt of five to eight tokens runs slower through the matrix-vector kernels (three simulator tests took 60 s
    /// instead of 25), so the kernel tests set it to 8 to cover those shapes. Both kernels give a row the same values.
    /// </summary>
    internal int MatVecRowLimit
    {
        get => _matVecRowLimit;
        set => _matVecRowLimit = value is >= 1 and <= MatMulKernels.MaxMatVecRows
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, $"between 1 and {MatMulKernels.MaxMatVecRows}");
    }

    private int _matVecRowLimit;

    /// <summary>
    /// Whether copies between host and device run in the order of the launches (CUDA: on the stream the kernels use,
    /// ILGPU's default; a copy from a managed array is staged before the call returns), so that an upload waits for
    /// nothing and a download only for itself. A decoding step makes four: the token, its position and its mask in, the
    /// pick out; each waited for the device twice, and ILGPU's CopyFromCPU once more. ILGPU's CPU accelerator copies at
    /// once, beside any kernel still running, and waits before and after each.
    /// </summary>
    private readonly bool _copiesInStreamOrder;

    /// <summary><see cref="MatVecRowLimit"/> on the CPU accelerator.</summary>
    internal const int CpuAcceleratorMatVecRows = 4;

    /// <summary>
    /// Set to <c>general</c>, the backend runs only its general kernels: the split matrix-vector kernel for every decoding
    /// projection and a warp per query for prefill attention, where by default it picks the kernels made for the shape.
    /// Both give the same values; the variable is there to compare their speed on a device, or to rule a kernel out.
    /// </summary>
    public const string KernelsVariable = "NATIVEGPT2_ILGPU_KERNELS";

    private static bool GeneralKernelsRequested =>
        string.Equals(Environment.GetEnvironmentVariable(KernelsVariable), "general", StringComparison.OrdinalIgnoreCase);

    /// <inheritdoc />
    public void GatherRows(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<int> rows, int R, int C) =>
        _gatherRows(Threads((long)R * C), View(output), View(input), View(rows), R, C);

    /// <inheritdoc />
    public void GatherCacheSlots(DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<float> sourceKeys, DeviceBuffer<float> sourceValues,
        DeviceBuffer<int> rows, int B, int from, int to, int Tmax, int NH, int HS, int sourceFrom, int sourceTmax)
    {
        if (to <= from) return;
        _gatherCacheSlots(Threads((long)B * NH * (to - from) * HS), View(keys), View(values), View(sourceKeys), View(sourceValues), View(rows),
            new CacheSlots(B, from, to - from, Tmax, NH, HS, sourceFrom, sourceTmax));
    }

    /// <inheritdoc />
    public void TargetLogProbabilities(DeviceBuffer<float> output, DeviceBuffer<float> logits, DeviceBuffer<int> targets, int N, int V) =>
        _targetLogProbabilities(Launch(N), View(output), View(logits), View(targets), N, V);

    /// <inheritdoc />
    public void ArgMax(DeviceBuffer<int> output, DeviceBuffer<float> logits, int N, int V) =>
        _argMax(new KernelConfig(Math.Min(N, _maxGroups), _rowGroupSize), View(output), View(logits), N, V);

    /// <inheritdoc />
    public void TopKCandidates(DeviceBuffer<int> candidates, DeviceBuffer<float> logits, int N, int V, int k, int capacity)
    {
        if (N < 1 || k < 1 || k > V || capacity < k || capacity > IBackend.MaxTopKCapacity)
            throw new ArgumentOutOfRangeException(nameof(k), $"top-k candidates need N ≥ 1, 1 ≤ k ≤ V and k ≤ capacity ≤ {IBackend.MaxTopKCapacity}; got N={N}, V={V}, k={k}, capacity={capacity}");
        _topKCandidates(new KernelConfig(Math.Min(N, _maxGroups), _rowGroupSize), View(candidates), View(logits), N, V, k, capacity);
    }

    /// <summary>
    /// The time one launch of an empty kernel takes, averaged over <paramref name="launches"/> launches and
    /// their completion: the floor under every operator, and why a decoding step's ~100 launches matter.
    /// </summary>
    public TimeSpan MeasureLaunchOverhead(int launches)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(launches, 1);
        using var scope = Enter();
        using var buffer = _accelerator.Allocate1D<float>(1);
        var empty = _accelerator.LoadStreamKernel<ArrayView<float>, int>(ElementwiseKernels.Nothing);
        empty(new KernelConfig(1, _groupSize), buffer.View, 0);
        _accelerator.Synchronize();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < launches; i++) empty(new KernelConfig(1, _groupSize), buffer.View, i);
        _accelerator.Synchronize();
        return clock.Elapsed / launches;
    }

    /// <summary>Releases the accelerator and its context (and with them every buffer).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _profile?.Report(Console.Error);
            _graphs?.Dispose();
            if (_stream != _accelerator.DefaultStream) _stream.Dispose();
            _accelerator.Dispose();
            _context.Dispose();
        }
    }

    private static int Groups(int count, int perGroup) => Math.Max(1, (count + perGroup - 1) / perGroup);

    /// <summary>A launch of <paramref name="groups"/> groups (at most <see cref="_maxGroups"/>: the kernels loop over the rest).</summary>
    private KernelConfig Launch(int groups) => new(Math.Min(groups, _maxGroups), _groupSize);

    /// <summary>A launch of the warp-per-item attention kernels: groups of <see cref="AttentionKernel.BlockWarps"/> warps, for their shared memory.</summary>
    private KernelConfig AttentionLaunch(int warps) =>
        new(Math.Min(Groups(warps, AttentionKernel.BlockWarps), _maxGroups * (_groupSize / _accelerator.WarpSize) / AttentionKernel.BlockWarps),
            AttentionKernel.BlockWarps * _accelerator.WarpSize);

    /// <summary>A launch with a thread per element, capped likewise.</summary>
    private KernelConfig Threads(long elements) => Launch((int)Math.Min(int.MaxValue, (elements + _groupSize - 1) / _groupSize));

    private static ArrayView<T> View<T>(DeviceBuffer<T> buffer) where T : unmanaged
    {
        var ilgpu = (IlgpuBuffer<T>)buffer;
        return ilgpu.Memory.View.SubView(0, Math.Max(ilgpu.Length, 1));
    }

    private sealed class IlgpuBuffer<T>(IlgpuBackend backend, MemoryBuffer1D<T, Stride1D.Dense> memory, long length)
        : DeviceBuffer<T>(backend, length) where T : unmanaged
    {
        public MemoryBuffer1D<T, Stride1D.Dense> Memory { get; } = memory;

        public override void Dispose()
        {
            lock (backend._gate)
            {
                // Disposing the accelerator released every buffer already.
                if (backend._disposed || Memory.IsDisposed) return;
                using var exclusive = backend.Exclusive();
                Memory.Dispose();
            }
        }
    }

    /// <summary>
    /// A device buffer that grows to the largest size asked for, zero-filled when (re)allocated; <paramref name="grown"/>
    /// is called when it moves (recorded steps name the old buffer).
    /// </summary>
    private sealed class Scratch<T>(Accelerator accelerator, string backend, AcceleratorStream stream, Action grown) where T : unmanaged
    {
        private MemoryBuffer1D<T, Stride1D.Dense>? _buffer;

        public ArrayView<T> View(long length)
        {
            length = Math.Max(length, 1);
            if (_buffer is null || _buffer.Length < length)
            {
                // Launches still queued may use the old buffer.
                if (_buffer is not null) accelerator.Synchronize();
                _buffer?.Dispose();
                // The old buffer is forgotten, and the recordings that name it go, before the allocation, which may fail
                // (out of memory): a later request then allocates anew rather than finding the freed buffer.
                _buffer = null;
                grown();
                _buffer = AllocateOnDevice<T>(accelerator, backend, length);
                _buffer.MemSetToZero(stream);
            }
            return _buffer.View.SubView(0, length);
        }
    }

    private sealed class IlgpuMatrix(int inputs, int outputs, DeviceBuffer<float> buffer) : DeviceMatrix(inputs, outputs)
    {
        /// <summary>(IC, OC) as in the checkpoint: the kernels read rows along the outputs.</summary>
        public DeviceBuffer<float> Buffer { get; } = buffer;

        public override void Dispose() => Buffer.Dispose();
    }

    private sealed class IlgpuTable(int rows, int cols, DeviceBuffer<float> buffer) : DeviceTable(rows, cols)
    {
        /// <summary>(rows, cols) row-major float32.</summary>
        public DeviceBuffer<float> Buffer { get; } = buffer;

        public override void Dispose() => Buffer.Dispose();
    }

    /// <summary>One pass: the lock and the accelerator bound to this thread, released together once the pass's work is done.</summary>
    private sealed class Scope(IlgpuBackend owner, Exclusivity exclusive) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            // Work still queued must finish before another thread's pass may run.
            owner._accelerator.Synchronize();
            exclusive.Dispose();
        }
    }
}
