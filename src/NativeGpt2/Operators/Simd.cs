using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace NativeGpt2.Operators;

/// <summary>The SIMD width the CPU operators run at.</summary>
public enum VectorWidth
{
    /// <summary>One float at a time: the path for machines without SIMD fused multiply-adds, and a reference for the others.</summary>
    Scalar = 1,

    /// <summary>4 floats: NEON on Arm64 (Apple silicon, Graviton, Ampere), or SSE with FMA on x86.</summary>
    Vector128 = 4,

    /// <summary>8 floats (AVX2 on x86).</summary>
    Vector256 = 8,

    /// <summary>16 floats (AVX-512).</summary>
    Vector512 = 16,
}

/// <summary>Which <see cref="VectorWidth"/> this machine runs by default, and the switch that forces a narrower one.</summary>
public static class CpuVectors
{
    /// <summary>Environment variable that forces a width: <c>512</c>, <c>256</c>, <c>128</c> or <c>scalar</c>.</summary>
    public const string Variable = "NATIVEGPT2_CPU_VECTOR";

    /// <summary>The widest width the hardware accelerates, unless <see cref="Variable"/> asks for another.</summary>
    public static VectorWidth Default { get; } = FromEnvironment(Environment.GetEnvironmentVariable(Variable));

    /// <summary>
    /// The widest width the hardware accelerates. 128-bit vectors count only with a fused multiply-add instruction
    /// (NEON has one; x86 needs FMA): every path fuses its multiply-adds, and without the instruction each one is a
    /// library call, as slow at any width.
    /// </summary>
    public static VectorWidth Widest =>
        Vector512.IsHardwareAccelerated ? VectorWidth.Vector512
        : Vector256.IsHardwareAccelerated ? VectorWidth.Vector256
        : Vector128.IsHardwareAccelerated && (Fma.IsSupported || AdvSimd.IsSupported) ? VectorWidth.Vector128
        : VectorWidth.Scalar;

    internal static VectorWidth FromEnvironment(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" => Widest,
        "512" or "vector512" => VectorWidth.Vector512,
        "256" or "vector256" => VectorWidth.Vector256,
        "128" or "vector128" => VectorWidth.Vector128,
        "scalar" or "1" => VectorWidth.Scalar,
        _ => throw new ArgumentException($"{Variable}='{value}' is not a vector width (512, 256, 128 or scalar)"),
    };

    /// <summary>
    /// What the runtime leaves unused of this CPU's vector units, and how to get it, or null. It happens to an app
    /// compiled ahead of time (Native AOT) for the default x86-64 baseline, which has neither AVX2 nor FMA whatever the
    /// machine it runs on: the operators then run 4 floats at a time, or one, where the CPU takes 8 or 16.
    /// </summary>
    public static string? UnusedHardware()
    {
        if (!X86Base.IsSupported || Widest >= VectorWidth.Vector256) return null;
        var (_, _, features, _) = X86Base.CpuId(1, 0);
        var (_, extended, _, _) = X86Base.CpuId(7, 0);
        bool fma = (features & (1 << 12)) != 0, avx2 = (extended & (1 << 5)) != 0, avx512 = (extended & (1 << 16)) != 0;
        if (!fma || !avx2) return null;
        var target = avx512 ? "x86-64-v4 (AVX-512)" : "x86-64-v3 (AVX2 and FMA)";
        var how = RuntimeFeature.IsDynamicCodeCompiled
            ? "256-bit vectors are switched off for this process (DOTNET_EnableAVX2=0, DOTNET_EnableFMA=0 or DOTNET_PreferredVectorBitWidth=128)"
            : $"this app was compiled ahead of time for an instruction set without them; publish it with <IlcInstructionSet>native</IlcInstructionSet> (this CPU's) or {target}";
        return $"this CPU has {(avx512 ? "AVX-512, " : "")}AVX2 and FMA, but the operators run {Widest} ({(int)Widest} float{(Widest == VectorWidth.Scalar ? "" : "s")} at a time), several times slower: {how}";
    }

    /// <summary>e.g. <c>Vector512 (AVX-512F, FMA)</c>; a width wider than the hardware's is emulated (correct, slow).</summary>
    public static string Describe(VectorWidth width)
    {
        var features = new List<string>();
        if (Avx512F.IsSupported) features.Add("AVX-512F");
        else if (Avx2.IsSupported) features.Add("AVX2");
        else if (Sse41.IsSupported) features.Add("SSE4.1");
        if (Fma.IsSupported) features.Add("FMA");
        if (AdvSimd.IsSupported) features.Add("NEON");
        var emulated = width > Widest ? ", emulated" : "";
        return $"{width} ({string.Join(", ", features.DefaultIfEmpty("no SIMD"))}{emulated})";
    }
}

/// <summary>
/// One SIMD register of floats, so a kernel is written once and specialized by the JIT for each width
/// (<see cref="Simd512"/>, <see cref="Simd256"/>, <see cref="SimdScalar"/>). Every operation is
/// element-wise except <see cref="Sum"/>, whose order is fixed per width.
/// </summary>
internal interface ISimd<TSelf> where TSelf : struct, ISimd<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Broadcast(float value);
    static abstract TSelf Load(ref float source);
    static abstract void Store(ref float destination, TSelf value);

    /// <summary>a · b + c with one rounding: every path, the scalar one too, so results agree across widths.</summary>
    static abstract TSelf Fma(TSelf a, TSelf b, TSelf c);

    /// <summary>
    /// <c>sum = Fma(a, b, sum)</c>, written into <paramref name="sum"/>'s register: the form for a running sum. Assigned
    /// through the wrapper instead, RyuJIT targets a multiplicand that dies there and copies the result back
    /// (<c>vfmadd213ps</c> + <c>vmovaps</c> where this is one <c>vfmadd231ps</c>): a copy per multiply-add, which a tile
    /// of 6 × 2 sums pays six times per input channel. CPUs that rename the copy away (Zen 5) do not notice; a Zen 1
    /// ran such a tile at 70 % of its FMA peak, and at 100 % with this.
    /// </summary>
    static abstract void MultiplyAdd(ref TSelf sum, TSelf a, TSelf b);
    static abstract TSelf Add(TSelf a, TSelf b);
    static abstract TSelf Multiply(TSelf a, TSelf b);
    static abstract TSelf Subtract(TSelf a, TSelf b);
    static abstract TSelf Divide(TSelf a, TSelf b);
    static abstract TSelf Max(TSelf a, TSelf b);
    static abstract TSelf Min(TSelf a, TSelf b);

    /// <summary>
    /// 2^n from <c>t = n + 1.5·2²³</c>, the sum that rounds a float to the integer n held in its low mantissa
    /// bits (|n| ≤ 126): the exponent field built from those bits.
    /// </summary>
    static abstract TSelf Pow2OfRounded(TSelf t);

    /// <summary>Count half-precision values widened exactly.</summary>
    static abstract TSelf LoadFloat16(ref Half source);

    /// <summary>
    /// Count half-precision values that are finite (no infinity or NaN) widened exactly, in four instructions
    /// instead of <see cref="LoadFloat16"/>'s ten: for weights checked once at load (<see cref="Weights.Float16Data.AllFinite"/>).
    /// </summary>
    static abstract TSelf LoadFiniteFloat16(ref Half source);

    /// <summary>Count bfloat16 values widened exactly.</summary>
    static abstract TSelf LoadBFloat16(ref ushort source);

    /// <summary>Count signed bytes converted to float.</summary>
    static abstract TSelf LoadInt8(ref sbyte source);

    /// <summary>
    /// The lanes added by halving: lane j + lane j + Count/2 for j &lt; Count/2, then the same on those, down to one
    /// (<see cref="Operators.MatMul"/> adds partial sums in this order when it stands in for a dot product's lanes).
    /// </summary>
    static abstract float Sum(TSelf value);

    /// <summary>The largest lane.</summary>
    static abstract float Max(TSelf value);
}


internal readonly struct Simd512(Vector512<float> value) : ISimd<Simd512>
{
    public readonly Vector512<float> Value = value;

    public static int Count => Vector512<float>.Count;
    public static Simd512 Zero => new(Vector512<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Broadcast(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Load(ref float source) => new(Vector512.LoadUnsafe(ref source));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(ref float destination, Simd512 value) => value.Value.StoreUnsafe(ref destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Fma(Simd512 a, Simd512 b, Simd512 c) => new(Vector512.FusedMultiplyAdd(a.Value, b.Value, c.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void MultiplyAdd(ref Simd512 sum, Simd512 a, Simd512 b) => Unsafe.AsRef(in sum.Value) = Vector512.FusedMultiplyAdd(a.Value, b.Value, sum.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Add(Simd512 a, Simd512 b) => new(a.Value + b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Multiply(Simd512 a, Simd512 b) => new(a.Value * b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Max(Simd512 a, Simd512 b) => new(Vector512.Max(a.Value, b.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Min(Simd512 a, Simd512 b) => new(Vector512.Min(a.Value, b.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Subtract(Simd512 a, Simd512 b) => new(a.Value - b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Divide(Simd512 a, Simd512 b) => new(a.Value / b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 Pow2OfRounded(Simd512 t) => new(((t.Value.AsInt32() - Vector512.Create(VectorMath.RoundingBits - 127)) << 23).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 LoadFloat16(ref Half source) => new(HalfBits.Widen(Widen(ref Unsafe.As<Half, ushort>(ref source))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 LoadFiniteFloat16(ref Half source)
    {
        var h = Vector256.LoadUnsafe(ref Unsafe.As<Half, short>(ref source));
        return new(HalfBits.WidenFinite(Avx512F.IsSupported ? Avx512F.ConvertToVector512Int32(h) : Vector512.Create(Vector256.WidenLower(h), Vector256.WidenUpper(h))));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 LoadBFloat16(ref ushort source) => new((Widen(ref source) << 16).AsSingle());

    /// <summary>16 ushorts zero-extended to 32-bit lanes (one vpmovzxwd with AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Widen(ref ushort source)
    {
        var h = Vector256.LoadUnsafe(ref source);
        return Avx512F.IsSupported ? Avx512F.ConvertToVector512UInt32(h) : Vector512.Create(Vector256.WidenLower(h), Vector256.WidenUpper(h));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd512 LoadInt8(ref sbyte source)
    {
        var bytes = Vector128.LoadUnsafe(ref source);
        if (Avx512F.IsSupported) return new(Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(bytes)));
        var shorts = Vector256.Create(Vector128.WidenLower(bytes), Vector128.WidenUpper(bytes));
        return new(Vector512.ConvertToSingle(Vector512.Create(Vector256.WidenLower(shorts), Vector256.WidenUpper(shorts))));
    }

    /// <summary>The two 256-bit halves, then as <see cref="Simd256.Sum"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(Simd512 value) => Simd256.Max(new(Vector256.Max(value.Value.GetLower(), value.Value.GetUpper())));

    public static float Sum(Simd512 value) => Simd256.Sum(new(value.Value.GetLower() + value.Value.GetUpper()));

    /// <summary>
    /// The 16 × 16 block whose rows start <paramref name="sourceStride"/> floats apart from <paramref name="source"/>,
    /// transposed into rows <paramref name="destinationStride"/> apart: destination[c · destinationStride + r] =
    /// source[r · sourceStride + c]. Moves only.
    /// </summary>
    /// <remarks>
    /// In registers: each of four stages swaps one bit of the row index with the same bit of the lane index. At stage b
    /// (1, 2, 4, 8), rows r and r + b (r without bit b) trade what the other needs: lane c of the new low row is lane c
    /// without bit b of the low row (when c has bit b clear) or of the high row (when set); the new high row takes lane
    /// c with bit b set, likewise. As vpermt2ps indices, 16 + … picks the high row: 64 shuffles for 256 values.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose(ref float source, nint sourceStride, ref float destination, nint destinationStride)
    {
        if (!Avx512F.IsSupported)
        {
            for (var r = 0; r < 16; r++)
            {
                for (var c = 0; c < 16; c++) Unsafe.Add(ref destination, c * destinationStride + r) = Unsafe.Add(ref source, r * sourceStride + c);
            }
            return;
        }
        var r0 = Vector512.LoadUnsafe(ref source);
        var r1 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 1 * sourceStride));
        var r2 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 2 * sourceStride));
        var r3 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 3 * sourceStride));
        var r4 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 4 * sourceStride));
        var r5 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 5 * sourceStride));
        var r6 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 6 * sourceStride));
        var r7 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 7 * sourceStride));
        var r8 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 8 * sourceStride));
        var r9 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 9 * sourceStride));
        var r10 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 10 * sourceStride));
        var r11 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 11 * sourceStride));
        var r12 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 12 * sourceStride));
        var r13 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 13 * sourceStride));
        var r14 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 14 * sourceStride));
        var r15 = Vector512.LoadUnsafe(ref Unsafe.Add(ref source, 15 * sourceStride));
        Vector512<int> low1 = Vector512.Create(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        Vector512<int> high1 = Vector512.Create(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
        Swap(ref r0, ref r1, low1, high1);
        Swap(ref r2, ref r3, low1, high1);
        Swap(ref r4, ref r5, low1, high1);
        Swap(ref r6, ref r7, low1, high1);
        Swap(ref r8, ref r9, low1, high1);
        Swap(ref r10, ref r11, low1, high1);
        Swap(ref r12, ref r13, low1, high1);
        Swap(ref r14, ref r15, low1, high1);
        Vector512<int> low2 = Vector512.Create(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        Vector512<int> high2 = Vector512.Create(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        Swap(ref r0, ref r2, low2, high2);
        Swap(ref r1, ref r3, low2, high2);
        Swap(ref r4, ref r6, low2, high2);
        Swap(ref r5, ref r7, low2, high2);
        Swap(ref r8, ref r10, low2, high2);
        Swap(ref r9, ref r11, low2, high2);
        Swap(ref r12, ref r14, low2, high2);
        Swap(ref r13, ref r15, low2, high2);
        Vector512<int> low4 = Vector512.Create(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        Vector512<int> high4 = Vector512.Create(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        Swap(ref r0, ref r4, low4, high4);
        Swap(ref r1, ref r5, low4, high4);
        Swap(ref r2, ref r6, low4, high4);
        Swap(ref r3, ref r7, low4, high4);
        Swap(ref r8, ref r12, low4, high4);
        Swap(ref r9, ref r13, low4, high4);
        Swap(ref r10, ref r14, low4, high4);
        Swap(ref r11, ref r15, low4, high4);
        Vector512<int> low8 = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        Vector512<int> high8 = Vector512.Create(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        Swap(ref r0, ref r8, low8, high8);
        Swap(ref r1, ref r9, low8, high8);
        Swap(ref r2, ref r10, low8, high8);
        Swap(ref r3, ref r11, low8, high8);
        Swap(ref r4, ref r12, low8, high8);
        Swap(ref r5, ref r13, low8, high8);
        Swap(ref r6, ref r14, low8, high8);
        Swap(ref r7, ref r15, low8, high8);
        r0.StoreUnsafe(ref destination);
        r1.StoreUnsafe(ref Unsafe.Add(ref destination, 1 * destinationStride));
        r2.StoreUnsafe(ref Unsafe.Add(ref destination, 2 * destinationStride));
        r3.StoreUnsafe(ref Unsafe.Add(ref destination, 3 * destinationStride));
        r4.StoreUnsafe(ref Unsafe.Add(ref destination, 4 * destinationStride));
        r5.StoreUnsafe(ref Unsafe.Add(ref destination, 5 * destinationStride));
        r6.StoreUnsafe(ref Unsafe.Add(ref destination, 6 * destinationStride));
        r7.StoreUnsafe(ref Unsafe.Add(ref destination, 7 * destinationStride));
        r8.StoreUnsafe(ref Unsafe.Add(ref destination, 8 * destinationStride));
        r9.StoreUnsafe(ref Unsafe.Add(ref destination, 9 * destinationStride));
        r10.StoreUnsafe(ref Unsafe.Add(ref destination, 10 * destinationStride));
        r11.StoreUnsafe(ref Unsafe.Add(ref destination, 11 * destinationStride));
        r12.StoreUnsafe(ref Unsafe.Add(ref destination, 12 * destinationStride));
        r13.StoreUnsafe(ref Unsafe.Add(ref destination, 13 * destinationStride));
        r14.StoreUnsafe(ref Unsafe.Add(ref destination, 14 * destinationStride));
        r15.StoreUnsafe(ref Unsafe.Add(ref destination, 15 * destinationStride));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Swap(ref Vector512<float> low, ref Vector512<float> high, Vector512<int> lowIndices, Vector512<int> highIndices)
    {
        var a = low;
        low = Avx512F.PermuteVar16x32x2(a, lowIndices, high);
        high = Avx512F.PermuteVar16x32x2(a, highIndices, high);
    }
}

internal readonly struct Simd256(Vector256<float> value) : ISimd<Simd256>
{
    public readonly Vector256<float> Value = value;

    public static int Count => Vector256<float>.Count;
    public static Simd256 Zero => new(Vector256<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Broadcast(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Load(ref float source) => new(Vector256.LoadUnsafe(ref source));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(ref float destination, Simd256 value) => value.Value.StoreUnsafe(ref destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Fma(Simd256 a, Simd256 b, Simd256 c) => new(Vector256.FusedMultiplyAdd(a.Value, b.Value, c.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void MultiplyAdd(ref Simd256 sum, Simd256 a, Simd256 b) => Unsafe.AsRef(in sum.Value) = Vector256.FusedMultiplyAdd(a.Value, b.Value, sum.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Add(Simd256 a, Simd256 b) => new(a.Value + b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Multiply(Simd256 a, Simd256 b) => new(a.Value * b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Max(Simd256 a, Simd256 b) => new(Vector256.Max(a.Value, b.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Min(Simd256 a, Simd256 b) => new(Vector256.Min(a.Value, b.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Subtract(Simd256 a, Simd256 b) => new(a.Value - b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Divide(Simd256 a, Simd256 b) => new(a.Value / b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 Pow2OfRounded(Simd256 t) => new(((t.Value.AsInt32() - Vector256.Create(VectorMath.RoundingBits - 127)) << 23).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 LoadFloat16(ref Half source) => new(HalfBits.Widen(Widen(ref Unsafe.As<Half, ushort>(ref source))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 LoadFiniteFloat16(ref Half source)
    {
        var h = Vector128.LoadUnsafe(ref Unsafe.As<Half, short>(ref source));
        return new(HalfBits.WidenFinite(Avx2.IsSupported ? Avx2.ConvertToVector256Int32(h) : Vector256.Create(Vector128.WidenLower(h), Vector128.WidenUpper(h))));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 LoadBFloat16(ref ushort source) => new((Widen(ref source) << 16).AsSingle());

    /// <summary>8 ushorts zero-extended to 32-bit lanes (one vpmovzxwd with AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Widen(ref ushort source)
    {
        var h = Vector128.LoadUnsafe(ref source);
        return Avx2.IsSupported ? Avx2.ConvertToVector256Int32(h).AsUInt32() : Vector256.Create(Vector128.WidenLower(h), Vector128.WidenUpper(h));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd256 LoadInt8(ref sbyte source)
    {
        var bytes = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref Unsafe.As<sbyte, byte>(ref source))).AsSByte();
        if (Avx2.IsSupported) return new(Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(bytes)));
        var shorts = Vector128.WidenLower(bytes);
        return new(Vector256.ConvertToSingle(Vector256.Create(Vector128.WidenLower(shorts), Vector128.WidenUpper(shorts))));
    }

    public static float Max(Simd256 value)
    {
        var half = Vector128.Max(value.Value.GetLower(), value.Value.GetUpper());
        var pair = Vector128.Max(half, Vector128.Shuffle(half, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(pair.ToScalar(), pair.GetElement(1));
    }

    /// <summary>((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): halves, then quarters, then the pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Simd256 value)
    {
        var quarter = value.Value.GetLower() + value.Value.GetUpper();
        var pair = quarter + Vector128.Shuffle(quarter, Vector128.Create(2, 3, 0, 1));
        return pair.ToScalar() + pair.GetElement(1);
    }
}

/// <summary>
/// Four floats: NEON on Arm64, SSE with FMA on x86. The narrow loads read 8 or 4 bytes and widen them with the
/// platform-neutral <c>Vector128.WidenLower</c> (one <c>uxtl</c>/<c>sxtl</c>, or one <c>pmovzx</c>/<c>pmovsx</c>, a step).
/// </summary>
internal readonly struct Simd128(Vector128<float> value) : ISimd<Simd128>
{
    public readonly Vector128<float> Value = value;

    public static int Count => Vector128<float>.Count;
    public static Simd128 Zero => new(Vector128<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Broadcast(float value) => new(Vector128.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Load(ref float source) => new(Vector128.LoadUnsafe(ref source));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(ref float destination, Simd128 value) => value.Value.StoreUnsafe(ref destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Fma(Simd128 a, Simd128 b, Simd128 c) => new(Vector128.FusedMultiplyAdd(a.Value, b.Value, c.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void MultiplyAdd(ref Simd128 sum, Simd128 a, Simd128 b) => Unsafe.AsRef(in sum.Value) = Vector128.FusedMultiplyAdd(a.Value, b.Value, sum.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Add(Simd128 a, Simd128 b) => new(a.Value + b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Multiply(Simd128 a, Simd128 b) => new(a.Value * b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Max(Simd128 a, Simd128 b) => new(Vector128.Max(a.Value, b.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Min(Simd128 a, Simd128 b) => new(Vector128.Min(a.Value, b.Value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Subtract(Simd128 a, Simd128 b) => new(a.Value - b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Divide(Simd128 a, Simd128 b) => new(a.Value / b.Value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 Pow2OfRounded(Simd128 t) => new(((t.Value.AsInt32() - Vector128.Create(VectorMath.RoundingBits - 127)) << 23).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 LoadFloat16(ref Half source) => new(HalfBits.Widen(Vector128.WidenLower(Load4(ref Unsafe.As<Half, ushort>(ref source)))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 LoadFiniteFloat16(ref Half source) =>
        new(HalfBits.WidenFinite(Vector128.WidenLower(Load4(ref Unsafe.As<Half, ushort>(ref source)).AsInt16())));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 LoadBFloat16(ref ushort source) => new((Vector128.WidenLower(Load4(ref source)) << 16).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Simd128 LoadInt8(ref sbyte source)
    {
        var bytes = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<int>(ref Unsafe.As<sbyte, byte>(ref source))).AsSByte();
        return new(Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(bytes))));
    }

    /// <summary>Four 16-bit values in the low half of a register (an 8-byte read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ushort> Load4(ref ushort source) =>
        Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref Unsafe.As<ushort, byte>(ref source))).AsUInt16();

    /// <summary>(v0 + v2) + (v1 + v3): the halves, then the pair, as the wider registers end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Simd128 value)
    {
        var pair = value.Value + Vector128.Shuffle(value.Value, Vector128.Create(2, 3, 0, 1));
        return pair.ToScalar() + pair.GetElement(1);
    }

    public static float Max(Simd128 value)
    {
        var pair = Vector128.Max(value.Value, Vector128.Shuffle(value.Value, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(pair.ToScalar(), pair.GetElement(1));
    }
}

internal readonly struct SimdScalar(float value) : ISimd<SimdScalar>
{
    public readonly float Value = value;

    public static int Count => 1;
    public static SimdScalar Zero => new(0f);
    public static SimdScalar Broadcast(float value) => new(value);
    public static SimdScalar Load(ref float source) => new(source);
    public static void Store(ref float destination, SimdScalar value) => destination = value.Value;
    public static SimdScalar Fma(SimdScalar a, SimdScalar b, SimdScalar c) => new(MathF.FusedMultiplyAdd(a.Value, b.Value, c.Value));
    public static void MultiplyAdd(ref SimdScalar sum, SimdScalar a, SimdScalar b) => Unsafe.AsRef(in sum.Value) = MathF.FusedMultiplyAdd(a.Value, b.Value, sum.Value);
    public static SimdScalar Add(SimdScalar a, SimdScalar b) => new(a.Value + b.Value);
    public static SimdScalar Multiply(SimdScalar a, SimdScalar b) => new(a.Value * b.Value);
    public static SimdScalar Max(SimdScalar a, SimdScalar b) => new(MathF.Max(a.Value, b.Value));
    public static SimdScalar Min(SimdScalar a, SimdScalar b) => new(MathF.Min(a.Value, b.Value));
    public static SimdScalar Subtract(SimdScalar a, SimdScalar b) => new(a.Value - b.Value);
    public static SimdScalar Divide(SimdScalar a, SimdScalar b) => new(a.Value / b.Value);
    public static SimdScalar Pow2OfRounded(SimdScalar t) =>
        new(BitConverter.Int32BitsToSingle((BitConverter.SingleToInt32Bits(t.Value) - (VectorMath.RoundingBits - 127)) << 23));
    public static SimdScalar LoadFloat16(ref Half source) => new((float)source);
    public static SimdScalar LoadFiniteFloat16(ref Half source) => new((float)source);
    public static SimdScalar LoadBFloat16(ref ushort source) => new(BitConverter.UInt32BitsToSingle((uint)source << 16));
    public static SimdScalar LoadInt8(ref sbyte source) => new(source);
    public static float Sum(SimdScalar value) => value.Value;
    public static float Max(SimdScalar value) => value.Value;
}

/// <summary>IEEE half → float32 on 32-bit lanes holding the 16-bit patterns, exactly, subnormals, infinities and NaN included.</summary>
internal static class HalfBits
{
    // (exponent, mantissa) shifted into place reads as a float 2^112 too small; one multiply fixes normals and
    // subnormals alike. Infinities and NaN (exponent all ones) only need the float exponent set to all ones.
    private const uint TwoTo112 = 0x77800000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector512<uint> h)
    {
        var magnitude = h & Vector512.Create(0x7FFFu);
        var scaled = (magnitude << 13).AsSingle() * Vector512.Create(TwoTo112).AsSingle();
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u));
        var bits = Vector512.ConditionalSelect(special, (magnitude << 13) | Vector512.Create(0x7F800000u), scaled.AsUInt32());
        return (bits | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    // A finite half h, sign-extended to 32 bits and shifted left by 13, holds the sign in bit 31 (and copies of
    // it in bits 30-28, masked off) and exponent and mantissa in bits 27-13: a float 2^112 too small, as above.
    private const int SignExponentMantissa = unchecked((int)0x8FFFE000);

    /// <summary>Finite halves (no infinity or NaN), sign-extended to 32-bit lanes: shift, mask, multiply.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenFinite(Vector512<int> h) =>
        ((h << 13) & Vector512.Create(SignExponentMantissa)).AsSingle() * Vector512.Create(TwoTo112).AsSingle();

    /// <inheritdoc cref="WidenFinite(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenFinite(Vector256<int> h) =>
        ((h << 13) & Vector256.Create(SignExponentMantissa)).AsSingle() * Vector256.Create(TwoTo112).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen(Vector256<uint> h)
    {
        var magnitude = h & Vector256.Create(0x7FFFu);
        var scaled = (magnitude << 13).AsSingle() * Vector256.Create(TwoTo112).AsSingle();
        var special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u));
        var bits = Vector256.ConditionalSelect(special, (magnitude << 13) | Vector256.Create(0x7F800000u), scaled.AsUInt32());
        return (bits | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <inheritdoc cref="WidenFinite(Vector512{int})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> WidenFinite(Vector128<int> h) =>
        ((h << 13) & Vector128.Create(SignExponentMantissa)).AsSingle() * Vector128.Create(TwoTo112).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Widen(Vector128<uint> h)
    {
        var magnitude = h & Vector128.Create(0x7FFFu);
        var scaled = (magnitude << 13).AsSingle() * Vector128.Create(TwoTo112).AsSingle();
        var special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(0x7C00u));
        var bits = Vector128.ConditionalSelect(special, (magnitude << 13) | Vector128.Create(0x7F800000u), scaled.AsUInt32());
        return (bits | ((h & Vector128.Create(0x8000u)) << 16)).AsSingle();
    }
}
