using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NativeGpt2.Operators;

/// <summary>
/// How fast this machine reads memory, measured on the bytes a decoding step reads: every weight array,
/// read once by the same worker team the operators use, summed as integers (nothing else to slow it).
/// Bytes ÷ this rate is the time a decoding step cannot beat on this machine.
/// </summary>
internal static class ReadBandwidth
{
    private const int ChunkBytes = 1 << 20;

    /// <summary>Bytes per second over <paramref name="buffers"/>: the best of <paramref name="passes"/> full passes.</summary>
    public static double Measure(IReadOnlyList<(Array Array, long Bytes)> buffers, int threads, int passes = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(passes, 1);
        // Chunks of at most 1 MiB, each within one array, so the team can split the pass evenly.
        var chunks = new List<(Array Array, long Offset, int Length)>();
        long total = 0;
        foreach (var (array, bytes) in buffers)
        {
            for (long offset = 0; offset < bytes; offset += ChunkBytes)
                chunks.Add((array, offset, (int)Math.Min(ChunkBytes, bytes - offset)));
            total += bytes;
        }
        if (total == 0) throw new ArgumentException("no bytes to read", nameof(buffers));

        var best = double.MaxValue;
        var sink = 0UL;
        using var limit = Parallelism.Limit(threads);
        for (var pass = 0; pass < passes; pass++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Parallelism.For(chunks.Count, ChunkBytes, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
            {
                var sum = 0UL;
                for (var i = start; i < end; i++)
                {
                    var (array, offset, length) = chunks[i];
                    sum += Sum(MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(array), (nint)offset), length));
                }
                Interlocked.Add(ref sink, sum);
            });
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        GC.KeepAlive(sink);
        return total / best;
    }

    /// <summary>A checksum of the bytes, four registers of 64-bit lanes at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong Sum(ReadOnlySpan<byte> bytes)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(bytes);
        ref var w = ref MemoryMarshal.GetReference(words);
        var i = 0;
        ulong sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<ulong> a = default, b = default, c = default, d = default;
            for (; i + 32 <= words.Length; i += 32)
            {
                a += Vector512.LoadUnsafe(ref w, (nuint)i);
                b += Vector512.LoadUnsafe(ref w, (nuint)(i + 8));
                c += Vector512.LoadUnsafe(ref w, (nuint)(i + 16));
                d += Vector512.LoadUnsafe(ref w, (nuint)(i + 24));
            }
            sum = Vector512.Sum(a + b + c + d);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<ulong> a = default, b = default, c = default, d = default;
            for (; i + 16 <= words.Length; i += 16)
            {
                a += Vector256.LoadUnsafe(ref w, (nuint)i);
                b += Vector256.LoadUnsafe(ref w, (nuint)(i + 4));
                c += Vector256.LoadUnsafe(ref w, (nuint)(i + 8));
                d += Vector256.LoadUnsafe(ref w, (nuint)(i + 12));
            }
            sum = Vector256.Sum(a + b + c + d);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            Vector128<ulong> a = default, b = default, c = default, d = default;
            for (; i + 8 <= words.Length; i += 8)
            {
                a += Vector128.LoadUnsafe(ref w, (nuint)i);
                b += Vector128.LoadUnsafe(ref w, (nuint)(i + 2));
                c += Vector128.LoadUnsafe(ref w, (nuint)(i + 4));
                d += Vector128.LoadUnsafe(ref w, (nuint)(i + 6));
            }
            sum = Vector128.Sum(a + b + c + d);
        }
        for (; i < words.Length; i++) sum += Unsafe.Add(ref w, i);
        foreach (var t in bytes[(words.Length * sizeof(ulong))..]) sum += t;
        return sum;
    }
}
