using NativeGpt2.Cli;

return await CliApp.RunAsync(args, Console.Out, Console.Error);
