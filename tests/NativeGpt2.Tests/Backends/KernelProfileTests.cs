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

        var entry = profile.Totals()["Add"];
        Assert.Equal(5, entry.Calls);
        Assert.True(entry.Time > TimeSpan.Zero, $"{mode}: no time recorded");
        Assert.Equal(8190f, sum.GetAsArray1D()[4095]);
        var table = new StringWriter();
        profile.Report(table);
        var lines = table.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(header, lines[0]);
        Assert.StartsWith("Add ", lines[1]);
        Assert.Equal("5", lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    }

    [Theory]
    [InlineData("Device")]
    [InlineData("Wait")]
    public void Described_launches_are_kept_apart_by_shape_with_the_rate_they_reached(string modeName)
    {
        var mode = Enum.Parse<KernelProfile.Mode>(modeName);
        using var context = Context.Create(builder => builder.CPU(new CPUDevice(4, 4, 1)).Profiling());
        using var accelerator = context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
        var profile = new KernelProfile(accelerator, mode);
        var add = profile.Timed("Add", accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ElementwiseKernels.Add));
        using var a = accelerator.Allocate1D<float>(4096);
        using var sum = accelerator.Allocate1D<float>(4096);
        for (var i = 0; i < 3; i++)
        {
            profile.Describe("4096 floats", bytes: 2 * 4096 * 4);
            add(new KernelConfig(1, 16), sum.View, a.View, a.View, 4096);
        }
        profile.Describe("1024 floats", flops: 1024);
        add(new KernelConfig(1, 16), sum.View, a.View, a.View, 1024);
        // A description holds for one launch only.
        add(new KernelConfig(1, 16), sum.View, a.View, a.View, 16);

        var totals = profile.Totals();
        Assert.Equal(3, totals["Add 4096 floats"].Calls);
        Assert.Equal(3 * 2 * 4096 * 4, totals["Add 4096 floats"].Bytes);
        Assert.Equal(1, totals["Add 1024 floats"].Calls);
        Assert.Equal(1, totals["Add"].Calls);
        var table = new StringWriter();
        profile.Report(table);
        var lines = table.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.Matches(@"^Add 4096 floats\s+3\s.*\sGB/s$", lines.Single(l => l.StartsWith("Add 4096")).TrimEnd());
        Assert.Matches(@"^Add 1024 floats\s+1\s.*\sTFLOP/s$", lines.Single(l => l.StartsWith("Add 1024")).TrimEnd());
        Assert.DoesNotMatch("/s$", lines.Single(l => l.StartsWith("Add ") && !l.StartsWith("Add 1") && !l.StartsWith("Add 4")).TrimEnd());
    }
}
