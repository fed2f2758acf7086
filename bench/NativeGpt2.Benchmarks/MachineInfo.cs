using System.Runtime.Intrinsics;
using NativeGpt2.Operators;

namespace NativeGpt2.Benchmarks;

/// <summary>The machine a benchmark ran on, in the words docs/performance.md uses: CPU model, cores, vector support.</summary>
public static class MachineInfo
{
    public static string Describe()
    {
        var cpu = CpuModel();
        var vectors = Vector512.IsHardwareAccelerated ? "AVX-512" : Vector256.IsHardwareAccelerated ? "AVX2" : "no 256-bit vectors";
        return $"{cpu}, {Environment.ProcessorCount} cores, {vectors}";
    }

    /// <summary>"model name" from /proc/cpuinfo with its family and model numbers (VMs often hide the name), else the architecture.</summary>
    private static string CpuModel()
    {
        const string path = "/proc/cpuinfo";
        if (!File.Exists(path)) return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
        var fields = File.ReadLines(path).TakeWhile(l => l.Length > 0)
            .Select(l => l.Split(':', 2)).Where(p => p.Length == 2)
            .GroupBy(p => p[0].Trim()).ToDictionary(g => g.Key, g => g.First()[1].Trim());
        var name = fields.GetValueOrDefault("model name", "unknown CPU");
        return fields.TryGetValue("cpu family", out var family) && fields.TryGetValue("model", out var model)
            ? $"{name} (family {family}, model {model})"
            : name;
    }

    /// <summary>The widths NativeGpt2 can run here, widest first.</summary>
    public static IEnumerable<VectorWidth> Widths() =>
        new[] { VectorWidth.Vector512, VectorWidth.Vector256 }.Where(w => w != VectorWidth.Vector512 || Vector512.IsHardwareAccelerated);
}
