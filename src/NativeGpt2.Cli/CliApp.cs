using System.CommandLine;
using System.CommandLine.Invocation;
using NativeGpt2.Cli.Commands;

namespace NativeGpt2.Cli;

/// <summary>
/// The <c>nativegpt2</c> command line: builds the commands, and turns every failure into one
/// <c>error: …</c> line on stderr with exit code 2 for usage errors and 1 for bad input.
/// </summary>
public static class CliApp
{
    /// <summary>Exit code of a successful run.</summary>
    public const int Success = 0;
    /// <summary>Exit code for bad input: a malformed file, a model that cannot be found, a failed check.</summary>
    public const int BadInput = 1;
    /// <summary>Exit code for a usage error: unknown option, missing or out-of-range argument.</summary>
    public const int UsageError = 2;
    /// <summary>Exit code when the run was cancelled (Ctrl+C, SIGTERM), as shells report 128 + SIGINT.</summary>
    public const int Cancelled = 130;

    /// <summary>Runs the command line and returns the exit code; <paramref name="stdin"/> stands for standard input when given.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellation = default, Func<Stream>? stdin = null)
    {
        // The tool ships the ILGPU backends: cuda and ilgpu-cpu are known by name.
        Ilgpu.IlgpuBackendProvider.Register();
        using var context = new CliContext(stdout, stderr, stdin);
        var root = BuildRootCommand(context);
        var parse = root.Parse(args);
        var verbose = context.Verbose = parse.GetValue(CommonOptions.Verbose);
        context.Offline = parse.GetValue(CommonOptions.Offline);
        context.Revision = parse.GetValue(CommonOptions.Revision) ?? context.Revision;
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"error: {ParseErrorLine(parse)} (see nativegpt2 --help)");
            return UsageError;
        }

        try
        {
            // Signals are handled by the host (Program.cs), which cancels this token; System.CommandLine's own
            // handler would return after a fixed delay even while a download is still cleaning up.
            // System.CommandLine's own output (help, version) names the command as users type it.
            var configuration = new InvocationConfiguration
            {
                Output = new ToolNameWriter(stdout), Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null,
            };
            return await parse.InvokeAsync(configuration, cancellation);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            stderr.WriteLine("error: cancelled");
            return Cancelled;
        }
        catch (Exception e) when (ExitCodeFor(e) is { } code)
        {
            stderr.WriteLine($"error: {UserMessage(e)}");
            if (verbose) stderr.WriteLine(e);
            return code;
        }
        catch (Exception e)
        {
            // Not the user's doing: still one line, but say so, and where to find the details.
            stderr.WriteLine($"error: internal error ({e.GetType().Name}): {OneLine(e)}{(verbose ? "" : " (run with --verbose for the stack trace)")}");
            if (verbose) stderr.WriteLine(e);
            return BadInput;
        }
    }

    /// <summary>
    /// The parse error a user most needs, on one line: an unrecognized word before "Required command was not
    /// provided" (which it causes), with System.CommandLine's typo suggestion ("Did you mean …") when it has one.
    /// </summary>
    private static string ParseErrorLine(ParseResult parse)
    {
        var errors = parse.Errors.Select(e => ReadableTypes(OneLine(e.Message))).ToList();
        if (errors.Count > 1) errors.RemoveAll(e => e.StartsWith("Required command was not provided", StringComparison.Ordinal));
        var suggestion = "";
        if (parse.Action is ParseErrorAction action)
        {
            action.ShowHelp = false;
            action.ShowTypoCorrections = true;
            var report = new StringWriter();
            parse.Invoke(new InvocationConfiguration { Output = report, Error = report });
            // Suggestions follow the errors: "'genrate' was not matched. Did you mean one of the following?" and the candidates.
            var lines = report.ToString().Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var at = Array.FindIndex(lines, l => l.Contains("Did you mean", StringComparison.Ordinal));
            var candidates = at < 0 ? [] : lines.Skip(at + 1).TakeWhile(l => !l.Contains(' ')).ToArray();
            if (candidates.Length > 0) suggestion = $" Did you mean '{string.Join("' or '", candidates)}'?";
        }
        return errors[0] + suggestion;
    }

    /// <summary>
    /// "Cannot parse argument 'abc' for option '--seed' as expected type 'System.Nullable`1[System.Int32]'" says
    /// what is expected in words: "… as an integer".
    /// </summary>
    private static string ReadableTypes(string message) =>
        System.Text.RegularExpressions.Regex.Replace(message, @"as expected type '(?:System\.Nullable`1\[)?System\.(\w+)\]?'", m => "as " + m.Groups[1].Value switch
        {
            "Int32" or "Int64" or "Int16" => "an integer",
            "UInt32" or "UInt64" or "UInt16" => "a whole number",
            "Single" or "Double" or "Decimal" => "a number",
            "Boolean" => "true or false",
            var other => $"a value of type {other}",
        });

    private static string OneLine(string message) =>
        string.Join(" ", message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));

    /// <summary>The message on one line: multi-line messages (a list of tensor problems, an argument's actual value) are joined.</summary>
    internal static string OneLine(Exception e)
    {
        // "N tensor problem(s) …:" then a problem a line reads "…: first; second", not "…:; first".
        var lines = e.Message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return string.Concat(lines.Select((line, i) => i == 0 ? line : (lines[i - 1].EndsWith(':') ? " " : "; ") + line));
    }

    /// <summary>
    /// The message on one line, without what only a caller of the library can use (<see cref="ArgumentMessage"/> for an
    /// argument the library names).
    /// </summary>
    internal static string UserMessage(Exception e) =>
        e is ArgumentException { ParamName: not null } argument ? OneLine(ArgumentMessage(argument)) : OneLine(e);

    /// <summary>
    /// An argument's message without its " (Parameter 'name')" (the library's parameter, not the command's option), its
    /// actual value reading ", got 999".
    /// </summary>
    internal static string ArgumentMessage(ArgumentException e)
    {
        var message = e.Message;
        var suffix = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (suffix >= 0) message = message[..suffix];
        var actual = e is ArgumentOutOfRangeException { ActualValue: { } value } ? $", got {Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)}" : "";
        return message + actual;
    }

    /// <summary>Which failures are the user's to fix (and so get one line, not a stack trace).</summary>
    internal static int? ExitCodeFor(Exception e) => e switch
    {
        UsageException or ArgumentException => UsageError,
        NativeGpt2Exception or IOException or UnauthorizedAccessException => BadInput,
        OperationCanceledException => BadInput,
        _ => null,
    };

    private static RootCommand BuildRootCommand(CliContext context)
    {
        var root = new RootCommand("NativeGpt2: GPT-2 inference in pure managed C#.")
        {
            GenerateCommand.Create(context),
            ScoreCommand.Create(context),
            TokenizeCommand.Create(context),
            TokenizeCommand.CreateDetokenize(context),
            InspectCommand.Create(context),
            ForwardCommand.Create(context),
            VerifyCommand.Create(context),
            CrosscheckCommand.Create(context),
            BenchCommand.Create(context),
            ServeCommand.Create(context),
            TopCommand.Create(context),
            TraceCommand.Create(context),
            AttentionCommand.Create(context),
        };
        root.Options.Add(CommonOptions.Verbose);
        root.Options.Add(CommonOptions.Offline);
        root.Options.Add(CommonOptions.Revision);
        return root;
    }
}

/// <summary>
/// Writes System.CommandLine's help with the command named <c>nativegpt2</c>, as users type it: the library
/// names the root command after the running assembly (<c>NativeGpt2.Cli</c>, which cannot be renamed to
/// <c>nativegpt2</c> without colliding with <c>NativeGpt2.dll</c> on case-insensitive file systems).
/// </summary>
internal sealed class ToolNameWriter(TextWriter inner) : TextWriter
{
    public override System.Text.Encoding Encoding => inner.Encoding;
    public override void Write(char value) => inner.Write(value);
    public override void Write(string? value) => inner.Write(Rename(value));
    public override void WriteLine(string? value) => inner.WriteLine(Rename(value));
    public override void Flush() => inner.Flush();

    private static string? Rename(string? text) =>
        text?.Replace(RootCommand.ExecutableName + " ", "nativegpt2 ", StringComparison.Ordinal);
}

/// <summary>A command-line value that parsed but cannot be used (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);
