using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// Runs this assembly's tests without the .NET SDK: <c>dotnet NativeGpt2.Tests.dll [--cases TEXT]... [--except TEXT]...
/// [--list]</c>, with only a .NET runtime present, as on a GPU machine that has the NVIDIA driver and nothing else
/// (scripts/gpu-check.sh). It runs the test cases whose display name holds any of the <c>--cases</c> texts (every case
/// when none is given) and none of the <c>--except</c> texts, the Slow category included, in xunit's own executor; prints
/// each failure and skip and a summary line; and exits 1 when a case failed or none matched, 2 on an unknown argument.
/// <c>dotnet test</c> does not use this entry point.
/// </summary>
public static class TestRunner
{
    public static int Main(string[] args) => Run(args, Console.Out);

    /// <summary>What <see cref="Main"/> does, writing to <paramref name="output"/>.</summary>
    public static int Run(string[] args, TextWriter output)
    {
        // The executor reports from its own threads.
        output = TextWriter.Synchronized(output);
        var filters = new List<string>();
        var exceptions = new List<string>();
        var listOnly = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--cases" when i + 1 < args.Length: filters.Add(args[++i]); break;
                case "--except" when i + 1 < args.Length: exceptions.Add(args[++i]); break;
                case "--list": listOnly = true; break;
                default:
                    output.WriteLine($"error: unknown argument '{args[i]}' (usage: NativeGpt2.Tests [--cases TEXT]... [--except TEXT]... [--list])");
                    return 2;
            }
        }

        var assembly = typeof(TestRunner).Assembly;
        var diagnostics = new Sink(output);
        using var framework = new XunitTestFramework(diagnostics);

        var discovery = new Sink(output);
        using (var discoverer = framework.GetDiscoverer(Reflector.Wrap(assembly)))
        {
            discoverer.Find(includeSourceInformation: false, discovery, new Options());
            discovery.Finished.Wait();
        }
        var cases = discovery.TestCases
            .Where(c => filters.Count == 0 || filters.Any(f => c.DisplayName.Contains(f, StringComparison.Ordinal)))
            .Where(c => !exceptions.Any(e => c.DisplayName.Contains(e, StringComparison.Ordinal)))
            .ToList();
        output.WriteLine($"{cases.Count} of {discovery.TestCases.Count} test cases match" +
            (filters.Count == 0 ? "" : " " + string.Join(", ", filters.Select(f => $"'{f}'"))) +
            (exceptions.Count == 0 ? "" : ", except " + string.Join(", ", exceptions.Select(e => $"'{e}'"))));
        if (listOnly)
        {
            foreach (var testCase in cases) output.WriteLine($"  {testCase.DisplayName}");
            return 0;
        }
        if (cases.Count == 0) return 1;

        var clock = Stopwatch.StartNew();
        var execution = new Sink(output);
        using (var executor = framework.GetExecutor(assembly.GetName()))
        {
            executor.RunTests(cases, execution, new Options());
            execution.Finished.Wait();
        }
        output.WriteLine(
            $"{(execution.Failed == 0 ? "Passed" : "Failed")}: {execution.Failed} failed, {execution.Passed} passed, {execution.Skipped} skipped, " +
            $"{execution.Passed + execution.Failed + execution.Skipped} in all, {clock.Elapsed.TotalSeconds:F0} s");
        return execution.Failed == 0 ? 0 : 1;
    }

    /// <summary>Collects the discovered cases and counts the results, printing failures and skips as they come.</summary>
    private sealed class Sink(TextWriter output) : Xunit.LongLivedMarshalByRefObject, IMessageSink
    {
        public ConcurrentBag<ITestCase> TestCases { get; } = [];
        public ManualResetEventSlim Finished { get; } = new();
        public int Passed, Failed, Skipped;

        public bool OnMessage(IMessageSinkMessage message)
        {
            switch (message)
            {
                case ITestCaseDiscoveryMessage found: TestCases.Add(found.TestCase); break;
                case IDiscoveryCompleteMessage: Finished.Set(); break;
                case ITestPassed: Interlocked.Increment(ref Passed); break;
                case ITestSkipped skipped:
                    Interlocked.Increment(ref Skipped);
                    output.WriteLine($"  skipped {skipped.Test.DisplayName}: {skipped.Reason}");
                    break;
                case ITestFailed failed:
                    Interlocked.Increment(ref Failed);
                    output.WriteLine($"  FAILED {failed.Test.DisplayName} ({failed.ExecutionTime:F1} s)");
                    for (var i = 0; i < failed.Messages.Length; i++)
                        output.WriteLine($"    {failed.ExceptionTypes[i]}: {failed.Messages[i]}\n{failed.StackTraces[i]}");
                    break;
                case IErrorMessage error:
                    Interlocked.Increment(ref Failed);
                    output.WriteLine($"  ERROR {string.Join("; ", error.Messages)}");
                    break;
                case ITestAssemblyFinished: Finished.Set(); break;
            }
            return true;
        }
    }

    /// <summary>Discovery and execution options with xunit's defaults (the runner library's option types are not referenced).</summary>
    private sealed class Options : ITestFrameworkDiscoveryOptions, ITestFrameworkExecutionOptions
    {
        private readonly Dictionary<string, object?> _values = new();
        public TValue GetValue<TValue>(string name) => _values.TryGetValue(name, out var value) && value is TValue typed ? typed : default!;
        public void SetValue<TValue>(string name, TValue value) => _values[name] = value;
    }
}
