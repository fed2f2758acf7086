using System.Runtime.InteropServices;
using ILGPU.Runtime.Cuda;
using NativeGpt2.Backends;

namespace NativeGpt2.Ilgpu;

/// <summary>
/// Decoding steps as CUDA graphs: the launches of a step are recorded once per <see cref="StepKey"/> (stream capture)
/// and replayed with one call, where each launch costs the host several microseconds through ILGPU and the driver
/// (about 60 of them a step for GPT-2 124M). ILGPU 1.5.3 has no graph API, so the driver's is called directly.
/// </summary>
/// <remarks>
/// <para>A key's first step runs its launches directly (buffers a step grows into are allocated then, outside any
/// recording), its second records them and replays the recording, later ones replay it. A replay runs the same kernels
/// with the same arguments: the attention reads the cache's length from <see cref="IlgpuBackend"/>'s device copy,
/// written before each replay.</para>
/// <para>When the driver refuses to record or replay, recording stops for good (<see cref="Failure"/> says why) and
/// every step runs its launches directly, which computes the same values.</para>
/// </remarks>
internal sealed class StepGraphs : IDisposable
{
    /// <summary>The environment variable that turns graphs on: <c>1</c> (off by default until measured on a GPU).</summary>
    public const string Variable = "NATIVEGPT2_CUDA_GRAPHS";

    /// <summary>Whether <see cref="Variable"/> asks for graphs.</summary>
    public static bool Requested => Environment.GetEnvironmentVariable(Variable)?.Trim().ToLowerInvariant() is "1" or "true" or "on" or "yes";

    /// <summary>Recordings kept: keys beyond this evict the oldest (each is a cache and a workspace, a few per model).</summary>
    private const int MaxGraphs = 16;

    private readonly CudaStream _stream;
    private readonly Dictionary<StepKey, nint> _graphs = [];
    private readonly Queue<StepKey> _order = new();
    private readonly HashSet<StepKey> _seen = [];
    private bool _disposed;

    public StepGraphs(CudaStream stream) => _stream = stream;

    /// <summary>Why recording stopped, or null while it works.</summary>
    public string? Failure { get; private set; }

    /// <summary>Steps replayed from a recording so far.</summary>
    public long Replays { get; private set; }

    /// <summary>Steps recorded so far.</summary>
    public int Recordings { get; private set; }

    /// <summary>
    /// Runs the step of <paramref name="key"/>: replays its recording, or records <paramref name="launches"/> and
    /// replays that, or runs them directly (a key's first step, or after a failure). <paramref name="recording"/>
    /// brackets the launches made while recording (the backend then launches what a replay may repeat).
    /// </summary>
    public void Run(StepKey key, Action launches, Action<bool> recording)
    {
        if (Failure is not null || _disposed)
        {
            launches();
            return;
        }
        if (_graphs.TryGetValue(key, out var graph))
        {
            Launch(graph, launches);
            return;
        }
        if (!_seen.Contains(key))
        {
            // Keys seen once hold their cache's buffers: a server making a cache per request would otherwise keep them all.
            if (_seen.Count >= 4 * MaxGraphs) _seen.Clear();
            _seen.Add(key);
            launches();
            return;
        }
        graph = Record(launches, recording);
        if (graph == 0)
        {
            launches();
            return;
        }
        if (_graphs.Count >= MaxGraphs && _order.TryDequeue(out var oldest) && _graphs.Remove(oldest, out var old))
        {
            // Replays are queued on the stream; the driver keeps an executable graph until they are done.
            Driver.GraphExecDestroy(old);
            _seen.Remove(oldest);
        }
        _graphs[key] = graph;
        _order.Enqueue(key);
        Recordings++;
        Launch(graph, launches);
    }

    /// <summary>The launches of one step, recorded and instantiated; 0 when the driver refused (then <see cref="Failure"/> says why).</summary>
    private nint Record(Action launches, Action<bool> recording)
    {
        int begun;
        try
        {
            begun = Driver.StreamBeginCapture(_stream.StreamPtr, Driver.CaptureModeRelaxed);
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException)
        {
            return Fail($"the driver's graph calls could not be loaded ({e.InnerException?.Message ?? e.Message})");
        }
        if (begun != 0) return Fail($"cuStreamBeginCapture failed ({begun})");
        Exception? error = null;
        recording(true);
        try
        {
            launches();
        }
        catch (Exception e)
        {
            error = e;
        }
        finally
        {
            recording(false);
        }
        // The stream leaves recording mode whatever happened. Nothing recorded has run: on any failure the caller runs
        // the launches directly.
        var ended = Driver.StreamEndCapture(_stream.StreamPtr, out var captured);
        if (error is not null || ended != 0 || captured == 0)
        {
            if (captured != 0) Driver.GraphDestroy(captured);
            return Fail(error is not null ? $"a launch failed while recording ({error.Message})"
                : ended != 0 ? $"cuStreamEndCapture failed ({ended})" : "cuStreamEndCapture returned no graph");
        }
        var instantiated = Driver.GraphInstantiate(out var executable, captured, 0);
        Driver.GraphDestroy(captured);
        return instantiated == 0 ? executable : Fail($"cuGraphInstantiateWithFlags failed ({instantiated})");
    }

    private void Launch(nint graph, Action launches)
    {
        var launched = Driver.GraphLaunch(graph, _stream.StreamPtr);
        if (launched == 0)
        {
            Replays++;
            return;
        }
        Fail($"cuGraphLaunch failed ({launched})");
        launches();
    }

    private nint Fail(string reason)
    {
        Failure ??= reason;
        return 0;
    }

    /// <summary>
    /// Drops every recording (a buffer they name has moved: the backend's scratch buffers grow for larger shapes); keys
    /// already seen are recorded again at their next step. Never called while recording: buffers grow in direct steps.
    /// </summary>
    public void Forget()
    {
        foreach (var graph in _graphs.Values) Driver.GraphExecDestroy(graph);
        _graphs.Clear();
        _order.Clear();
    }

    /// <summary>One line for the backend's description.</summary>
    public string Summary => Failure is null
        ? $"decoding steps as CUDA graphs ({Variable}=1): {Recordings} recorded, {Replays} replayed"
        : $"CUDA graphs off after a failure: {Failure}";

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Forget();
    }

    /// <summary>The CUDA driver's graph calls (the driver library ILGPU loads: libcuda on Linux, nvcuda on Windows).</summary>
    private static unsafe class Driver
    {
        /// <summary>CU_STREAM_CAPTURE_MODE_RELAXED: other threads may make calls that are unsafe while a stream records.</summary>
        public const int CaptureModeRelaxed = 2;

        private static readonly nint Library = NativeLibrary.Load(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1");

        private static readonly delegate* unmanaged<nint, int, int> BeginCapture =
            (delegate* unmanaged<nint, int, int>)NativeLibrary.GetExport(Library, "cuStreamBeginCapture_v2");

        private static readonly delegate* unmanaged<nint, nint*, int> EndCapture =
            (delegate* unmanaged<nint, nint*, int>)NativeLibrary.GetExport(Library, "cuStreamEndCapture");

        private static readonly delegate* unmanaged<nint*, nint, ulong, int> Instantiate =
            (delegate* unmanaged<nint*, nint, ulong, int>)NativeLibrary.GetExport(Library, "cuGraphInstantiateWithFlags");

        private static readonly delegate* unmanaged<nint, nint, int> LaunchGraph =
            (delegate* unmanaged<nint, nint, int>)NativeLibrary.GetExport(Library, "cuGraphLaunch");

        private static readonly delegate* unmanaged<nint, int> DestroyExec =
            (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(Library, "cuGraphExecDestroy");

        private static readonly delegate* unmanaged<nint, int> Destroy =
            (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(Library, "cuGraphDestroy");

        public static int StreamBeginCapture(nint stream, int mode) => BeginCapture(stream, mode);

        public static int StreamEndCapture(nint stream, out nint graph)
        {
            nint g = 0;
            var result = EndCapture(stream, &g);
            graph = g;
            return result;
        }

        public static int GraphInstantiate(out nint executable, nint graph, ulong flags)
        {
            nint e = 0;
            var result = Instantiate(&e, graph, flags);
            executable = e;
            return result;
        }

        public static int GraphLaunch(nint executable, nint stream) => LaunchGraph(executable, stream);

        public static int GraphExecDestroy(nint executable) => DestroyExec(executable);

        public static int GraphDestroy(nint graph) => Destroy(graph);
    }
}
