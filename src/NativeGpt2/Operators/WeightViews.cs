using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeGpt2.Weights;

namespace NativeGpt2.Operators;

/// <summary>
/// A Conv1D weight (IC, OC) packed in panels of 32 columns (<see cref="WeightLayout.Panels"/>), read
/// two SIMD registers at a time and widened to float32 in registers: the matmul is written once over
/// this interface and specialized by the JIT for each storage format.
/// </summary>
internal interface IPanelView
{
    /// <summary>
    /// Row k of panel p as one index, p · rows + k: the panel's 32 values of that row are block b, so row k of
    /// panel p + 1 is b + <see cref="Rows"/>.
    /// </summary>
    nint Block(int panel, int k);

    /// <summary>Rows per panel (IC): the distance in blocks from a panel to the next.</summary>
    int Rows { get; }

    /// <summary>Bytes from one block's values to the next's: the step from row k of a panel to row k + 1.</summary>
    int BlockBytes { get; }

    /// <summary>
    /// Value <paramref name="c"/> of block <paramref name="block"/>, as a reference: a loop over the rows keeps it and
    /// adds <see cref="BlockBytes"/> to an offset per row (row k of the next panel is <see cref="Rows"/> · BlockBytes
    /// further on), so it only adds, where an address recomputed from the block index for every load cost about four
    /// instructions; and the reference itself never points past the panel.
    /// </summary>
    ref byte At(nint block, int c);

    /// <summary>
    /// Values [c, c + 2·V.Count) of block <paramref name="block"/>, as float32, from <paramref name="at"/> =
    /// <see cref="At"/>(block, c) (the block index is for what is stored beside the values: q8's scales).
    /// </summary>
    void Load<V>(ref byte at, nint block, out V w0, out V w1) where V : struct, ISimd<V>;

    /// <summary>
    /// How many rows ahead a pass that reads the panel from memory asks for (<see cref="Prefetch"/>): 8 KB of the panel,
    /// every format. Four panels read side by side (16-bit decoding with Vector512) ask for a quarter of it each.
    /// </summary>
    int PrefetchRows { get; }

    /// <summary>
    /// A hint: the block <paramref name="block"/>, whose values start at <paramref name="at"/>, is wanted soon. A raw
    /// address, never read, so it may be past the end of the array.
    /// </summary>
    unsafe void Prefetch(byte* at, nint block);
}

/// <summary>Cache hints that never fault: an address past the end of an array is only a wasted hint.</summary>
internal static class CacheHint
{
    private const int LineBytes = 64;

    /// <summary>How far ahead of its reads a pass streaming a panel from memory asks for it (<see cref="IPanelView.PrefetchRows"/>).</summary>
    public const int StreamAheadBytes = 8192;

    /// <summary>Hints for elements [index, index + count) of the array, one per 64 bytes from index on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchRange<T>(T[] array, nint index, int count)
    {
        var perLine = LineBytes / Unsafe.SizeOf<T>();
        for (var i = 0; i < count; i += perLine) Prefetch(array, index + i);
    }

    /// <summary>Hints for [at, at + bytes), one per 64 bytes: a raw address, so nothing is read and the GC is not involved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void PrefetchBytes(byte* at, int bytes)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        for (var i = 0; i < bytes; i += LineBytes) System.Runtime.Intrinsics.X86.Sse.Prefetch0(at + i);
    }

    /// <summary>A hint for the line holding <paramref name="at"/>: a raw address, so nothing is read and the GC is not involved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void PrefetchLine(byte* at)
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.Prefetch0(at);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Prefetch<T>(T[] array, nint index)
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.Prefetch0(Address(array, index));
    }

    /// <summary>Where element <paramref name="index"/> of the array is, as a raw address for hints: it may be past the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe byte* Address<T>(T[] array, nint index) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array)) + index * Unsafe.SizeOf<T>();
}

internal static class PanelWidening
{
    /// <summary>
    /// Panel <paramref name="panel"/> (<paramref name="rows"/> × 32) as float32 in <paramref name="destination"/>, panel 0 of a
    /// <c>Panels&lt;float, Float32Widening&gt;</c> view over it: exactly the values <see cref="IPanelView.Load"/> gives.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Widen<V, P>(P panels, int panel, int rows, float[] destination) where V : struct, ISimd<V> where P : struct, IPanelView
    {
        ref var d = ref MemoryMarshal.GetArrayDataReference(destination);
        for (var k = 0; k < rows; k++)
        {
            for (var c = 0; c < WeightData.PanelWidth; c += 2 * V.Count)
            {
                var block = panels.Block(panel, k);
                panels.Load<V>(ref panels.At(block, c), block, out var w0, out var w1);
                ref var at = ref Unsafe.Add(ref d, k * WeightData.PanelWidth + c);
                V.Store(ref at, w0);
                V.Store(ref Unsafe.Add(ref at, V.Count), w1);
            }
        }
    }
}

/// <summary>A row-major table (rows, cols) in any format, read along a row: the head over wte.</summary>
internal interface IRowView
{
    /// <summary>Where row <paramref name="row"/> starts, for <see cref="Load"/> and <see cref="Element"/>: computed once per row, not per load.</summary>
    nint Start(int row);

    /// <summary>row[k … k + V.Count), as float32, for the row at <paramref name="start"/>; k is a multiple of V.Count.</summary>
    V Load<V>(nint start, int k) where V : struct, ISimd<V>;

    /// <summary>row[k], as float32.</summary>
    float Element(nint start, int k);

    /// <summary>How many rows ahead a decoding step asks for (<see cref="Prefetch"/>); 0 where the hardware's prefetcher keeps up alone.</summary>
    int PrefetchRows { get; }

    /// <summary>
    /// A hint: values [<paramref name="start"/>, start + <paramref name="count"/>) of the table (counted from a
    /// <see cref="Start"/>) are wanted soon; every cache line they span is asked for (it may be past the end).
    /// </summary>
    void Prefetch(nint start, int count);

    /// <summary>
    /// Where stored value <paramref name="start"/> (counted as <see cref="Start"/> counts) is, for cache hints only: a raw
    /// address, never read, so it may be past the end, and a moving collection only makes the hint useless.
    /// </summary>
    unsafe byte* Address(nint start);
}

/// <summary>How a stored element type becomes float32: the one thing the float32, float16 and bfloat16 views differ in.</summary>
internal interface IWidening<T> where T : unmanaged
{
    /// <summary>V.Count elements from <paramref name="source"/> on, as float32.</summary>
    static abstract V Load<V>(ref T source) where V : struct, ISimd<V>;

    /// <summary>One element, as float32.</summary>
    static abstract float Element(T value);
}

internal readonly struct Float32Widening : IWidening<float>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<V>(ref float source) where V : struct, ISimd<V> => V.Load(ref source);

    public static float Element(float value) => value;
}

internal readonly struct Float16Widening : IWidening<Half>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<V>(ref Half source) where V : struct, ISimd<V> => V.LoadFloat16(ref source);

    public static float Element(Half value) => (float)value;
}

/// <summary>Float16 known to hold no infinity or NaN (<see cref="Float16Data.AllFinite"/>): the cheaper widening.</summary>
internal readonly struct FiniteFloat16Widening : IWidening<Half>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<V>(ref Half source) where V : struct, ISimd<V> => V.LoadFiniteFloat16(ref source);

    public static float Element(Half value) => (float)value;
}

internal readonly struct BFloat16Widening : IWidening<ushort>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Load<V>(ref ushort source) where V : struct, ISimd<V> => V.LoadBFloat16(ref source);

    public static float Element(ushort value) => BFloat16Data.Widen(value);
}

/// <summary>Panels of float32, float16 or bfloat16 values, widened by <typeparamref name="W"/>.</summary>
internal readonly struct Panels<T, W>(T[] values, int rows) : IPanelView where T : unmanaged where W : struct, IWidening<T>
{
    // 8 KB: float32 64 rows, 16-bit 128. Float32 streams one panel at a time; measured over the 48 projections of 124M,
    // runs of each distance interleaved in one process (AMD EPYC Zen 5, 2 threads): decoding read 10-13 % faster at 48
    // to 192 rows (6-24 KB) ahead than leaving the stream to the hardware prefetcher, and 1-3 % slower at 8 or 16 rows
    // (1-2 KB); a 128-row prompt's projections ran 4-5 % faster at 64 to 256 rows ahead. 16-bit values decoding one
    // panel at a time (Vector256): 64-256 rows ahead alike, 25-40 % faster than four panels side by side.
    public int PrefetchRows => CacheHint.StreamAheadBytes / BlockBytes;

    public int Rows => rows;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Block(int panel, int k) => (nint)panel * rows + k;

    public int BlockBytes => WeightData.PanelWidth * Unsafe.SizeOf<T>();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref byte At(nint block, int c) =>
        ref Unsafe.As<T, byte>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(values), block * WeightData.PanelWidth + c));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load<V>(ref byte at, nint block, out V w0, out V w1) where V : struct, ISimd<V>
    {
        ref var first = ref Unsafe.As<byte, T>(ref at);
        w0 = W.Load<V>(ref first);
        w1 = W.Load<V>(ref Unsafe.Add(ref first, V.Count));
    }

    /// <summary>Every line of the block: one for 16-bit values, two for float32 (128 bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Prefetch(byte* at, nint block) => CacheHint.PrefetchBytes(at, BlockBytes);
}

internal readonly struct Q8Panels(sbyte[] values, float[] scales, int rows) : IPanelView
{
    public int Rows => rows;

    // One panel at a time, 256 rows (8 KB) ahead, as float32. The 48 projections decoding, one binary taking turns
    // (AMD EPYC Zen 5, 2 threads): 4-8 KB ahead 1.96-2.00 ms, 2 KB 2.16-2.29, 16 KB 2.08-2.12.
    public int PrefetchRows => CacheHint.StreamAheadBytes / BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Block(int panel, int k) => (nint)panel * rows + k;

    public int BlockBytes => WeightData.PanelWidth;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref byte At(nint block, int c) =>
        ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(values), block * WeightData.PanelWidth + c));

    /// <summary>The scale of <paramref name="block"/>, followed by the next blocks' scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref float ScaleAt(nint block) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(scales), block);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load<V>(ref byte at, nint block, out V w0, out V w1) where V : struct, ISimd<V>
    {
        // w = q · scale, one scale for the block's 32 values.
        ref var q = ref Unsafe.As<byte, sbyte>(ref at);
        var scale = V.Broadcast(ScaleAt(block));
        w0 = V.Multiply(V.LoadInt8(ref q), scale);
        w1 = V.Multiply(V.LoadInt8(ref Unsafe.Add(ref q, V.Count)), scale);
    }

    /// <summary>
    /// The line where the block's 32 values (half a line) start: a block split over two lines has its second asked
    /// for by the next block's hint. Every 16th block, its line of scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Prefetch(byte* at, nint block)
    {
        CacheHint.PrefetchLine(at);
        if ((block & 15) == 0) CacheHint.Prefetch(scales, block);
    }
}

/// <summary>A row-major table of float32, float16 or bfloat16 values, widened by <typeparamref name="W"/>.</summary>
internal readonly struct TableRows<T, W>(T[] values, int stride) : IRowView where T : unmanaged where W : struct, IWidening<T>
{
    // How far ahead the 1 × 4 tile asks for rows: eight rows (two tiles) for 16-bit tables; sixteen for float32
    // (48 KB at GPT-2's 768 columns): the 124M head at 256 bits on two Zen 5 cores took 5.1-6.1 ms a call without
    // hints, 4.0-4.6 with 16 rows ahead. Float32 decoding with Vector512 reads one row after another instead and asks
    // for its rows itself (MatMulTransposed.Float32RowsAhead).
    public int PrefetchRows => Unsafe.SizeOf<T>() < sizeof(float) ? 8 : 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch(nint start, int count) => CacheHint.PrefetchRange(values, start, count);

    public nint Start(int row) => (nint)row * stride;

    public unsafe byte* Address(nint start) => CacheHint.Address(values, start);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public V Load<V>(nint start, int k) where V : struct, ISimd<V> =>
        W.Load<V>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(values), start + k));

    public float Element(nint start, int k) => W.Element(values[start + k]);
}

/// <summary>float32 rows [first, first + n) of a table, widened into a scratch buffer: row r is at (r - first) · stride.</summary>
internal readonly struct WidenedRows(float[] values, int stride, int first) : IRowView
{
    public int PrefetchRows => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch(nint start, int count) => CacheHint.PrefetchRange(values, start, count);

    public nint Start(int row) => (nint)(row - first) * stride;

    public unsafe byte* Address(nint start) => CacheHint.Address(values, start);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public V Load<V>(nint start, int k) where V : struct, ISimd<V> =>
        V.Load(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(values), start + k));

    public float Element(nint start, int k) => values[start + k];
}

/// <summary>Row-major Q8: each row is blocks of 32 values (the last padded), one scale per block.</summary>
internal readonly struct Q8Rows(sbyte[] values, float[] scales, int blocks) : IRowView
{
    public int PrefetchRows => 8;

    /// <summary>The values' lines, and the line of scales where the range starts a group of 16 blocks (512 values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch(nint start, int count)
    {
        CacheHint.PrefetchRange(values, start, count);
        if ((start & 511) == 0) CacheHint.Prefetch(scales, (nint)((nuint)start / WeightData.PanelWidth));
    }

    /// <summary>The row's first value; rows are whole blocks, so value i's scale is scales[i / 32].</summary>
    public nint Start(int row) => (nint)row * blocks * WeightData.PanelWidth;

    /// <summary>The values' address (the scales, an eighth of the bytes, are read as one stream behind them).</summary>
    public unsafe byte* Address(nint start) => CacheHint.Address(values, start);

    /// <summary>row[k … k + V.Count): the integers at <see cref="ValueAt"/> times their block's <see cref="ScaleAt"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public V Load<V>(nint start, int k) where V : struct, ISimd<V> => V.Multiply(V.LoadInt8(ref ValueAt(start + k)), V.Broadcast(ScaleAt(start + k)));

    /// <summary>Value <paramref name="index"/> of the table, followed by the rest of its row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref sbyte ValueAt(nint index) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(values), index);

    /// <summary>The scale of the block holding value <paramref name="index"/> (at a row's start, its first block), followed by the next blocks' scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref float ScaleAt(nint index) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(scales), (nint)((nuint)index / WeightData.PanelWidth));

    public float Element(nint start, int k) => values[start + k] * scales[(start + k) / WeightData.PanelWidth];
}
