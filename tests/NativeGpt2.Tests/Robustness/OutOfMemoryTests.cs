using System.Reflection;
using NativeGpt2.Backends;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

/// <summary>
/// Memory a backend cannot give is a typed error that says how much was asked for and what to do, never an untyped
/// exception out of the allocator; a load that runs out frees what it had placed.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public class OutOfMemoryTests
{
    // 2^50 floats: 4 PiB, more than any machine's memory and than a 64-bit process's address space, whatever the
    // operating system's overcommit policy.
    private const long Impossible = 1L << 50;

    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void An_allocation_larger_than_memory_is_a_typed_error_and_the_backend_stays_usable(string name)
    {
        TestBackends.SkipIfUnavailable(name);
        var backend = TestBackends.Get(name);

        var error = Assert.Throws<OutOfDeviceMemoryException>(() =>
        {
            using (backend.Enter()) backend.Allocate<float>(Impossible).Dispose();
        });

        Assert.Equal(backend.Name, error.Backend);
        Assert.Equal(Impossible * sizeof(float), error.RequestedBytes);
        Assert.StartsWith($"backend '{backend.Name}': out of memory: ", error.Message);
        Assert.Contains(" asked of ", error.Message);
        // An ILGPU device's allocator ran out; a CPU buffer is one array, refused before it is tried.
        if (name != TestBackends.Cpu) Assert.IsAssignableFrom<OutOfMemoryException>(error.InnerException);

        // The failed allocation left nothing behind: the backend allocates and copies as before.
        using (backend.Enter())
        {
            using var buffer = backend.Upload(new[] { 1f, 2f, 3f });
            var back = new float[3];
            backend.Download(back, buffer, 0);
            Assert.Equal([1f, 2f, 3f], back);
        }
    }

    /// <summary>
    /// A device that runs out part way through the weights (its own typed error), or the process's memory running out while
    /// a backend packs a weight (.NET's <see cref="OutOfMemoryException"/>): either way the load names the model.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_model_whose_weights_do_not_fit_fails_to_load_with_its_name_and_frees_what_it_placed(bool processMemory)
    {
        var spec = Paths.Model("tiny");
        var backend = FailingBackend.Create(CpuBackend.Instance, matricesBeforeFailure: 3, processMemory);

        var error = Assert.Throws<OutOfDeviceMemoryException>(() => Gpt2CausalLM.Load(spec, new ModelLoadOptions { BackendInstance = backend }));

        Assert.Equal("cpu", error.Backend);
        Assert.Contains($"the weights of {spec} (", error.Message);
        if (processMemory)
        {
            Assert.Equal(0, error.RequestedBytes);
            Assert.Contains(" parameters) do not fit: the process ran out of memory placing them. Load 16- or 8-bit weights", error.Message);
            Assert.IsType<OutOfMemoryException>(error.InnerException);
        }
        else
        {
            Assert.Equal(FailingBackend.RequestedBytes, error.RequestedBytes);
            Assert.Contains(" parameters) do not fit: out of memory: 123 MB asked of the test's device", error.Message);
        }
        var failing = (FailingBackend)(object)backend;
        Assert.Equal(3, failing.Prepared.Count);
        Assert.All(failing.Prepared, matrix => Assert.True(matrix.Disposed));
    }

    [Fact]
    public void The_command_line_reports_running_out_of_memory_as_bad_input()
    {
        var error = new OutOfDeviceMemoryException("cuda", 1L << 30, "out of memory: 1,074 MB asked of the GPU");

        Assert.Equal(CliApp.BadInput, CliApp.ExitCodeFor(error));
        Assert.Equal("backend 'cuda': out of memory: 1,074 MB asked of the GPU", error.Message);
    }

    /// <summary>
    /// A backend that forwards every call to <c>target</c> and runs out of memory at its n-th weight matrix, as a GPU does
    /// part way through a model that does not fit; the matrices it prepared before remember whether they were disposed.
    /// </summary>
    public class FailingBackend : DispatchProxy
    {
        public const long RequestedBytes = 123_456_789;

        private IBackend _target = null!;
        private int _matricesBeforeFailure;
        private bool _processMemory;

        public List<TrackedMatrix> Prepared { get; } = [];

        /// <summary>
        /// Fails at matrix number <paramref name="matricesBeforeFailure"/> + 1 with its own <see cref="OutOfDeviceMemoryException"/>,
        /// or, with <paramref name="processMemory"/>, with the <see cref="OutOfMemoryException"/> .NET throws.
        /// </summary>
        public static IBackend Create(IBackend target, int matricesBeforeFailure, bool processMemory = false)
        {
            var proxy = Create<IBackend, FailingBackend>();
            var failing = (FailingBackend)(object)proxy;
            failing._target = target;
            failing._matricesBeforeFailure = matricesBeforeFailure;
            failing._processMemory = processMemory;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            ArgumentNullException.ThrowIfNull(targetMethod);
            if (targetMethod.Name == nameof(IBackend.Dispose)) return null; // the shared CPU backend stays
            if (targetMethod.Name == nameof(IBackend.PrepareMatrix))
            {
                if (Prepared.Count == _matricesBeforeFailure)
                {
                    throw _processMemory ? new OutOfMemoryException()
                        : new OutOfDeviceMemoryException(_target.Name, RequestedBytes, "out of memory: 123 MB asked of the test's device");
                }
                var matrix = new TrackedMatrix(_target.PrepareMatrix((Weight)args![0]!));
                Prepared.Add(matrix);
                return matrix;
            }
            try
            {
                return targetMethod.Invoke(_target, args);
            }
            catch (TargetInvocationException e) when (e.InnerException is not null)
            {
                throw e.InnerException;
            }
        }
    }

    /// <summary>A prepared matrix that records its disposal.</summary>
    public sealed class TrackedMatrix(DeviceMatrix inner) : DeviceMatrix(inner.Inputs, inner.Outputs)
    {
        public bool Disposed { get; private set; }

        public override void Dispose()
        {
            Disposed = true;
            inner.Dispose();
        }
    }
}
