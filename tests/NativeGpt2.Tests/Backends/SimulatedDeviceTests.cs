using NativeGpt2.Ilgpu;
using NativeGpt2.Ilgpu.Kernels;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>
/// The simulated GPU the kernel tests run on in place of CUDA launches what a CUDA device launches, so that the
/// kernels meet their group-size limits and many groups' merges without a GPU.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class SimulatedDeviceTests
{
    [Fact]
    public void The_CUDA_shaped_simulator_launches_the_groups_a_CUDA_device_launches()
    {
        // Every CUDA device: warps of 32 threads, groups of at most 1,024.
        var cuda = IlgpuBackend.LaunchSizes.For(warp: 32, maxThreadsPerGroup: 1024);
        var simulator = (IlgpuBackend)TestBackends.Get(TestBackends.IlgpuCpuCudaShaped);
        Assert.Equal(cuda, simulator.Sizes);

        // Those are the kernels' limits: a matrix-vector group splits its inputs over the most slabs it merges, and a
        // row's reductions merge the most warps they hold.
        Assert.Equal(MatMulKernels.MaxSlabChunks * 32, cuda.Group);
        Assert.Equal(Reductions.MaxWarpsPerGroup * 32, cuda.RowGroup);

        // A GPU launches many groups per multiprocessor; the simulator runs as many as the largest test shapes fill.
        Assert.True(simulator.MaxGroups >= 64, $"{simulator.MaxGroups} groups a launch");
    }

    [Fact]
    public void The_other_simulators_are_smaller_than_a_CUDA_device()
    {
        // What only the CUDA-shaped simulator reaches: the small one has warps of 4, the warp-32 one groups of 128.
        var cuda = IlgpuBackend.LaunchSizes.For(warp: 32, maxThreadsPerGroup: 1024);
        foreach (var name in new[] { TestBackends.IlgpuCpu, TestBackends.IlgpuCpuWarp32 })
        {
            var simulator = (IlgpuBackend)TestBackends.Get(name);
            Assert.True(simulator.Sizes.Group < cuda.Group && simulator.Sizes.RowGroup < cuda.RowGroup, $"{name}: {simulator.Sizes}");
            Assert.True(simulator.MaxGroups <= 2, $"{name}: {simulator.MaxGroups} groups a launch");
        }
    }
}
