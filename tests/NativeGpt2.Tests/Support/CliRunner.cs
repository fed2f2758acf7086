using NativeGpt2.Cli;

namespace NativeGpt2.Tests.Support;

/// <summary>Runs the nativegpt2 command line in-process and captures what it prints.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Out, string Error);

    public static Result Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.RunAsync(args, stdout, stderr).GetAwaiter().GetResult();
        return new Result(code, stdout.ToString(), stderr.ToString());
    }
}
