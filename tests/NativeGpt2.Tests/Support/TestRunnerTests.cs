using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// The test assembly's own entry point (<see cref="TestRunner"/>), which a GPU machine without the .NET SDK runs: it picks
/// cases by their names, runs them in xunit's executor and says by its exit code whether all passed.
/// </summary>
public class TestRunnerTests
{
    private static (int Code, string Output) Run(params string[] args)
    {
        var output = new StringWriter();
        var code = TestRunner.Run(args, output);
        return (code, output.ToString());
    }

    [Fact]
    public void A_chosen_case_runs_and_passes()
    {
        var (code, output) = Run("--cases", "Add_adds(name: \"cpu\")");
        Assert.Equal(0, code);
        Assert.Contains("1 of ", output);
        Assert.Contains("Passed: 0 failed, 1 passed, 0 skipped, 1 in all", output);
    }

    [Fact]
    public void A_cuda_case_passes_or_is_skipped_with_the_reason()
    {
        var (code, output) = Run("--cases", "Add_adds(name: \"cuda\")");
        Assert.Equal(0, code);
        if (TestBackends.CudaSkipReason is null) Assert.Contains("1 passed", output);
        else Assert.Contains($"skipped NativeGpt2.Tests.Backends.BackendConformanceTests.Add_adds(name: \"cuda\"): {TestBackends.CudaSkipReason}", output);
    }

    [Fact]
    public void Listing_names_the_matching_cases_and_leaves_out_the_excepted_ones()
    {
        var (code, output) = Run("--cases", "BackendConformanceTests.Add_adds(", "--except", "\"cuda\"", "--list");
        Assert.Equal(0, code);
        Assert.Contains("Add_adds(name: \"cpu\")", output);
        Assert.Contains("Add_adds(name: \"ilgpu-cpu\")", output);
        Assert.DoesNotContain("Add_adds(name: \"cuda\")", output);
        Assert.DoesNotContain("Passed", output);
    }

    [Fact]
    public void No_matching_case_is_a_failure()
    {
        var (code, output) = Run("--cases", "no test has this in its name");
        Assert.Equal(1, code);
        Assert.StartsWith("0 of ", output);
    }

    [Fact]
    public void An_unknown_argument_is_refused_with_the_usage()
    {
        var (code, output) = Run("--filter", "x");
        Assert.Equal(2, code);
        Assert.Contains("unknown argument '--filter'", output);
        Assert.Contains("usage:", output);
    }
}
