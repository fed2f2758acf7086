using System.Runtime.InteropServices;
using NativeGpt2.Cli;

// Ctrl+C and SIGTERM cancel the running command instead of killing the process, so a download in
// progress removes its temporary files; the command then reports "error: cancelled" and exits with 130.
// A second signal is not intercepted and ends the process at once.
using var cancellation = new CancellationTokenSource();
void Cancel(PosixSignalContext signal)
{
    if (cancellation.IsCancellationRequested) return;
    signal.Cancel = true;
    cancellation.Cancel();
}
using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);
return await CliApp.RunAsync(args, Console.Out, Console.Error, cancellation.Token);
