using ILGPU;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;
using ILGPU.IR.Values;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// c + a · b, the step of every sum of products in the kernels, computed the same way in all of them.
/// </summary>
/// <remarks>
/// Written as <c>c += a * b</c>, the PTX is a <c>mul.f32</c> and an <c>add.f32</c>, which the driver's compiler may fuse
/// into one instruction or not, and on an H200 it did not decide alike everywhere: a row's projection by the
/// matrix-vector kernels and by the tiled kernel differed in the last bits, so a row's result depended on how many rows
/// were projected with it, and batched generation could differ from one-by-one generation. On CUDA, <see cref="MulAdd"/>
/// is therefore an intrinsic (<see cref="Register"/>) that ILGPU compiles to one <c>fma.rn.f32</c> on registers, the
/// instruction the fusing made anyway, which leaves the compiler no choice. (Inline PTX through <c>CudaAsm.Emit</c> would
/// do the same, but ILGPU passes its result through local memory: on an H200 that made the tiled matmul eleven times
/// slower.) .NET never fuses a multiply and an add, so on ILGPU's CPU accelerator the method's own body runs: a multiply
/// and an add, again the same in every kernel.
/// </remarks>
internal static class Fused
{
    [IntrinsicImplementation]
    public static float MulAdd(float a, float b, float c) => a * b + c;

    /// <summary>Has the PTX backend of contexts built by <paramref name="builder"/> compile <see cref="MulAdd"/> to <c>fma.rn.f32</c>.</summary>
    public static Context.Builder Register(Context.Builder builder)
    {
        builder.GetIntrinsicManager().RegisterMethod(
            typeof(Fused).GetMethod(nameof(MulAdd))!,
            new PTXIntrinsic(typeof(Fused), nameof(GenerateMulAdd), IntrinsicImplementationMode.GenerateCode));
        return builder;
    }

    /// <summary>The PTX of a call to <see cref="MulAdd"/>: target = a · b + c, rounded once.</summary>
    public static void GenerateMulAdd(PTXBackend backend, PTXCodeGenerator codeGenerator, Value value)
    {
        var call = (MethodCall)value;
        var a = codeGenerator.LoadPrimitive(call[0]);
        var b = codeGenerator.LoadPrimitive(call[1]);
        var c = codeGenerator.LoadPrimitive(call[2]);
        var target = codeGenerator.AllocateHardware(call);
        using var command = codeGenerator.BeginCommand("fma.rn.f32");
        command.AppendArgument(target);
        command.AppendArgument(a);
        command.AppendArgument(b);
        command.AppendArgument(c);
    }
}
