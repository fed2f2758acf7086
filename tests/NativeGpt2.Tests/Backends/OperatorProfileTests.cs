using System.Diagnostics;
using NativeGpt2.Backends.Cpu;
using Xunit;

namespace NativeGpt2.Tests.Backends;

/// <summary>The CPU operator profile (<c>NATIVEGPT2_CPU_PROFILE=1</c>): what it counts and the table it writes.</summary>
public class OperatorProfileTests
{
    [Theory]
    [InlineData("1", true)]
    [InlineData(" ON ", true)]
    [InlineData("yes", true)]
    [InlineData("true", true)]
    [InlineData("0", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    public void The_variable_takes_the_usual_boolean_spellings(string? value, bool requested) =>
        Assert.Equal(requested, OperatorProfile.Requested(value));

    [Fact]
    public void Calls_add_up_per_operator_and_shape_and_the_table_puts_the_most_time_first()
    {
        // Exact durations: a wall-clock interval would grow whenever the machine pauses the test.
        var profile = new OperatorProfile();
        profile.AddTicks("matmul", 1, 768, 3072, Stopwatch.Frequency / 100);   // 10 ms
        profile.AddTicks("matmul", 1, 768, 3072, Stopwatch.Frequency / 100);   // and 10 ms more
        profile.AddTicks("matmul", 1, 3072, 768, Stopwatch.Frequency / 1000);  // another shape, 1 ms
        profile.AddTicks("layernorm", 1, 768, 768, Stopwatch.Frequency / 200); // 5 ms
        var table = new StringWriter();
        profile.Report(table);
        var lines = table.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);

        Assert.StartsWith("operator", lines[0]);
        Assert.Equal(4, lines.Length);
        var first = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["matmul", "1", "768", "3072", "2"], first[..5]);
        Assert.Equal(20.0, double.Parse(first[5], System.Globalization.CultureInfo.InvariantCulture), 1e-9);
        Assert.StartsWith("layernorm", lines[2]);
        Assert.Contains(" 3072     768 ", lines[3]);
    }

    [Fact]
    public void An_empty_profile_writes_nothing()
    {
        var table = new StringWriter();
        new OperatorProfile().Report(table);
        Assert.Equal("", table.ToString());
    }
}
