namespace NativeGpt2.Tests.Support;

/// <summary>Runs code on its own thread and fails if it does not finish in time: a hang detector for fuzzing.</summary>
public static class Guard
{
    public static void Within(TimeSpan limit, Action action, string what)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { action(); }
            catch (Exception e) { failure = e; }
        }, maxStackSize: 16 << 20) { IsBackground = true };
        thread.Start();
        if (!thread.Join(limit))
            throw new TimeoutException($"{what} did not finish within {limit.TotalSeconds} s");
        if (failure is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
    }
}
