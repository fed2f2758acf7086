using NativeGpt2.Cli;

namespace NativeGpt2.Tests.Support;

/// <summary>Runs the nativegpt2 command line in-process and captures what it prints.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Out, string Error);

    public static Result Run(params string[] args) => RunWithInput(null, args);

    /// <summary>Runs with <paramref name="input"/> (UTF-8) as standard input.</summary>
    public static Result RunWithInput(string? input, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Func<Stream>? stdin = input is null ? null : () => new MemoryStream(System.Text.Encoding.UTF8.GetBytes(input));
        var code = CliApp.RunAsync(args, stdout, stderr, stdin: stdin).GetAwaiter().GetResult();
        return new Result(code, stdout.ToString(), stderr.ToString());
    }
}
