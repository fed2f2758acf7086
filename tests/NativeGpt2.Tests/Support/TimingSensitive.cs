using Xunit;

namespace NativeGpt2.Tests.Support;

/// <summary>
/// Tests whose subject is time (a server that stalls, one that drips bytes slowly, read timeouts of a few
/// seconds): they run after the parallel tests, alone, so a busy 2-core machine cannot starve the local server
/// they talk to into a stall it never meant.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingSensitive
{
    public const string Name = "timing-sensitive, run alone";
}
