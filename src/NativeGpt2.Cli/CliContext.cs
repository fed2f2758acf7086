using Microsoft.Extensions.Logging;
using NativeGpt2.Hub;

namespace NativeGpt2.Cli;

/// <summary>The output streams and logging of one command-line run.</summary>
internal sealed class CliContext(TextWriter stdout, TextWriter stderr, Func<Stream>? stdin = null) : IDisposable
{
    private ILoggerFactory? _loggers;

    /// <summary>Opens standard input, for a file option given as <c>-</c>.</summary>
    public Stream OpenInput() => (stdin ?? Console.OpenStandardInput)();

    /// <summary>Where results go.</summary>
    public TextWriter Out { get; } = stdout;

    /// <summary>Where errors, logs and progress go.</summary>
    public TextWriter Error { get; } = stderr;

    /// <summary>Set from <c>--verbose</c> once the command line is parsed: debug logs and stack traces.</summary>
    public bool Verbose { get; set; }

    /// <summary>Set from <c>--offline</c>: hub models only from the cache.</summary>
    public bool Offline { get; set; }

    /// <summary>Set from <c>--revision</c>: the branch, tag or commit of a hub model.</summary>
    public string Revision { get; set; } = new HubOptions().Revision;

    /// <summary>Logs to stderr: warnings, or everything down to debug with <c>--verbose</c>.</summary>
    public ILogger Logger => (_loggers ??= LoggerFactory.Create(builder =>
    {
        builder.SetMinimumLevel(Verbose ? LogLevel.Debug : LogLevel.Warning);
        // Logs go to stderr, so stdout holds only the command's own output.
        builder.AddSimpleConsole(o => o.SingleLine = true);
        builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    })).CreateLogger("nativegpt2");

    /// <summary>A progress bar on stderr when stderr is a terminal; null otherwise (redirected, or a test's writer).</summary>
    public IProgress<LoadProgress>? ProgressBar => ReferenceEquals(Error, Console.Error) && !Console.IsErrorRedirected ? new ConsoleProgressBar(Error) : null;

    /// <summary>Load options that log here and draw a progress bar when stderr is a terminal.</summary>
    public ModelLoadOptions LoadOptions => new()
    {
        Logger = Logger,
        Progress = ProgressBar,
        Hub = new HubOptions { Offline = Offline, Revision = Revision },
    };

    /// <summary><see cref="LoadOptions"/> on the backend named by <c>--backend</c>, weights held as <c>--weights</c> says.</summary>
    public ModelLoadOptions LoadOptionsOn(string? backend, string? weights = null) => LoadOptions with
    {
        Backend = backend ?? Backends.BackendRegistry.Auto,
        WeightFormat = CommonOptions.ParseWeights(weights),
    };

    public void Dispose() => _loggers?.Dispose();
}
