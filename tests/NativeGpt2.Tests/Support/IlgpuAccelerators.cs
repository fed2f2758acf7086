using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// Test classes that run ILGPU accelerators (the shared <c>ilgpu-cpu</c> and <c>cuda</c> backends, or accelerators a
/// command creates for itself) take turns, one test at a time, alongside the CPU-only tests: a real GPU is one device
/// that runs one pass at a time anyway, and it keeps a 2-core machine from running several simulated GPUs of 16 OS
/// threads each at once. (The wrong activations of zeros once blamed on that were copies into host arrays that a
/// garbage collection moved mid-copy; the backend now pins them.)
/// </summary>
[CollectionDefinition(Name)]
public sealed class IlgpuAccelerators
{
    public const string Name = "ILGPU accelerators, one test at a time";
}
