using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NativeGpt2.Operators;

/// <summary>Describes the CPU code path the operators take on this machine, for the load-time log.</summary>
public static class CpuBackend
{
    /// <summary>e.g. <c>CPU: Vector256 (AVX2, FMA), 16 threads</c>, or the scalar fallback.</summary>
    public static string Description
    {
        get
        {
            var vectors = Vector256.IsHardwareAccelerated
                ? $"Vector256 ({(Avx2.IsSupported ? "AVX2" : "256-bit")}{(Fma.IsSupported ? ", FMA" : "")})"
                : "scalar (no 256-bit SIMD)";
            return $"CPU: {vectors}, {Environment.ProcessorCount} threads";
        }
    }
}
