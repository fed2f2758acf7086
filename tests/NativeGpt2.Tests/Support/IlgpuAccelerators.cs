using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// Test classes that run ILGPU accelerators (the shared <c>ilgpu-cpu</c> and <c>cuda</c> backends, or accelerators a
/// command creates for itself) take turns, one test at a time, alongside the CPU-only tests. Several ILGPU CPU
/// accelerators working at once in one process, under a fully loaded 2-core machine, have now and then produced a
/// wrong activation (a recorded tensor of zeros) that no run of one accelerator at a time, nor a stress run of
/// four threads on shared and separate accelerators, reproduced; a real GPU is one device that runs one pass at a
/// time anyway.
/// </summary>
[CollectionDefinition(Name)]
public sealed class IlgpuAccelerators
{
    public const string Name = "ILGPU accelerators, one test at a time";
}
