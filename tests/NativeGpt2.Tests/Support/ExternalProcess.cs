using System.Diagnostics;
using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>Programs the tests run as a user would (dotnet pack, an installed tool, a sample), with their output captured.</summary>
public static class ExternalProcess
{
    /// <summary>
    /// Starts <paramref name="file"/> with <paramref name="arguments"/>, stdout and stderr redirected, without the .NET CLI's
    /// banners; <paramref name="environment"/> sets variables, and removes those it maps to null.
    /// </summary>
    public static Process Start(string file, IEnumerable<string> arguments, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) start.Environment.Remove(name);
            else start.Environment[name] = value;
        }
        return Process.Start(start)!;
    }

    /// <summary>The command line (NativeGpt2.Cli.dll beside the tests) in a process of its own, started as <see cref="Start"/> starts one.</summary>
    public static Process StartCli(IEnumerable<string> arguments, IReadOnlyDictionary<string, string?>? environment = null) =>
        Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "NativeGpt2.Cli.dll"), .. arguments], environment);

    /// <summary>Runs the program to its end within <paramref name="limit"/> and returns its stdout; a failure or a hang fails the test with stderr.</summary>
    public static string Run(string file, IEnumerable<string> arguments, TimeSpan limit)
    {
        var shown = $"{file} {string.Join(' ', arguments)}";
        using var process = Start(file, arguments);
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{shown} did not finish within {limit}");
        }
        Assert.True(process.ExitCode == 0, $"{shown} exited {process.ExitCode}:\n{stdout}\n{stderr.Result}");
        return stdout;
    }
}
