using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using NativeGpt2.Ilgpu.Kernels;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// Every ILGPU kernel compiles to PTX for sm_80, the code a CUDA device runs (its driver compiles the PTX for newer
/// GPUs), on any machine: ILGPU's PTX backend needs no GPU. ILGPU's CPU accelerator runs the kernels' IL, so a construct
/// the PTX backend cannot translate would otherwise first fail on a GPU.
/// </summary>
public class PtxCompilationTests
{
    /// <summary>The kernels: public static methods of the kernel classes whose first parameter is a view, none by reference.</summary>
    public static TheoryData<string> Kernels
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var method in KernelMethods()) data.Add($"{method.DeclaringType!.Name}.{method.Name}");
            return data;
        }
    }

    private static IEnumerable<MethodInfo> KernelMethods() =>
        typeof(MatMulKernels).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(MatMulKernels).Namespace)
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => m.ReturnType == typeof(void) && m.GetParameters() is { Length: > 0 } p
                && p[0].ParameterType.IsGenericType && p[0].ParameterType.GetGenericTypeDefinition() == typeof(ArrayView<>)
                && p.All(q => !q.ParameterType.IsByRef))
            .OrderBy(m => m.DeclaringType!.Name).ThenBy(m => m.Name);

    [Fact]
    public void Every_kernel_the_backend_loads_is_found()
    {
        var names = KernelMethods().Select(m => $"{m.DeclaringType!.Name}.{m.Name}").ToHashSet();
        foreach (var name in new[] { "MatMulKernels.Tiled", "MatMulKernels.TiledChunkSums", "MatMulKernels.AddChunkSumsInOrder", "MatMulKernels.MatVec", "MatMulKernels.MatVecColumns", "MatMulKernels.MatVecWords", "MatMulKernels.AddColumnChunkSums", "MatMulKernels.MatVecTransposed",
                     "AttentionKernel.PrefillTiles", "AttentionKernel.PrefillWarps", "AttentionKernel.Decode", "LayerNormKernel.Forward",
                     "RowKernels.ArgMax", "RowKernels.TopKCandidates", "RowKernels.TargetLogProbabilities", "ElementwiseKernels.Embedding", "ElementwiseKernels.AppendKeyValues" })
            Assert.Contains(name, names);
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_to_ptx_for_sm_80(string name)
    {
        var ptx = CompileToPtx(name);
        Assert.Contains(".target sm_80", ptx);
        Assert.Contains(".entry", ptx);
    }

    /// <summary>
    /// The kernels' sums of products are explicit fused multiply-adds (<see cref="Fused"/>) on registers: a plain
    /// multiply and add would leave the driver's compiler to fuse them or not, kernel by kernel, and a call or local
    /// memory would mean ILGPU compiled the method's body instead of the intrinsic.
    /// </summary>
    [Theory]
    [InlineData("MatMulKernels.Tiled")]
    [InlineData("MatMulKernels.TiledChunkSums")]
    [InlineData("MatMulKernels.MatVec")]
    [InlineData("MatMulKernels.MatVecColumns")]
    [InlineData("MatMulKernels.MatVecWords")]
    [InlineData("MatMulKernels.MatVecTransposed")]
    [InlineData("AttentionKernel.PrefillTiles")]
    [InlineData("AttentionKernel.PrefillWarps")]
    [InlineData("AttentionKernel.Decode")]
    [InlineData("LayerNormKernel.Forward")]
    public void Sums_of_products_compile_to_fused_multiply_adds_on_registers(string name)
    {
        var ptx = CompileToPtx(name);
        Assert.Contains("fma.rn.f32", ptx);
        Assert.DoesNotContain("call", ptx);
        Assert.DoesNotContain(".local", ptx);
    }

    private static string CompileToPtx(string name)
    {
        var method = KernelMethods().Single(m => $"{m.DeclaringType!.Name}.{m.Name}" == name);
        using var context = Context.Create(builder => Fused.Register(builder.Cuda().EnableAlgorithms()));
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80,
            CudaInstructionSet.ISA_70, nvvmAPI: null!);
        return ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), KernelSpecialization.Empty)).PTXAssembly;
    }
}
