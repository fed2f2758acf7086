using NativeGpt2;
using var m = Gpt2CausalLM.Load(args[0]);
Console.WriteLine(m.Config);
return 0;
