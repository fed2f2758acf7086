using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using NativeGpt2.Ilgpu;
using NativeGpt2.Ilgpu.Kernels;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>The ILGPU kernel profile (<c>NATIVEGPT2_ILGPU_PROFILE</c>): its modes, what it counts and the table it writes.</summary>
[Collection(IlgpuAccelerators.Name)]
public class KernelProfileTests
{
    [Theory]
    [InlineData("1", "Device")]
    [InlineData(" Device ", "Device")]
    [InlineData("on", "Device")]
    [InlineData("wait", "Wait")]
    [InlineData("0", "Off")]
    [InlineData("", "Off")]
    [InlineData(null, "Off")]
    public void The_variable_names_a_mode(string? value, string mode) =>
        Assert.Equal(Enum.Parse<KernelProfile.Mode>(mode), KernelProfile.RequestedMode(value));

    [Theory]
    [InlineData("Device", "device time")]
    [InlineData("Wait", "waited for")]
    public void Every_launch_is_counted_and_timed(string modeName, string header)
    {
        var mode = Enum.Parse<KernelProfile.Mode>(modeName);
        using var context = Context.Create(builder => builder.CPU(new CPUDevice(4, 4, 1)).Profiling());
        using var accelerator = context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
        var profile = new KernelProfile(accelerator, mode);
        var add = profile.Timed("Add", accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ElementwiseKernels.Add));
        using var a = accelerator.Allocate1D(Enumerable.Range(0, 4096).Select(i => (float)i).ToArray());
        using var sum = accelerator.Allocate1D<float>(4096);
        for (var i = 0; i < 5; i++) add(new KernelConfig(1, 16), sum.View, a.View, a.View, 4096);

        var (calls, time) = profile.Totals()["Add"];
        Assert.Equal(5, calls);
        Assert.True(time > TimeSpan.Zero, $"{mode}: no time recorded");
        Assert.Equal(8190f, sum.GetAsArray1D()[4095]);
        var table = new StringWriter();
        profile.Report(table);
        var lines = table.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(header, lines[0]);
        Assert.StartsWith("Add ", lines[1]);
        Assert.Equal("5", lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    }
}
