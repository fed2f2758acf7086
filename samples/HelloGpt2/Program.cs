// Embeds GPT-2 in a console app: load a checkpoint, stream a continuation.
// Usage: HelloGpt2 [MODEL] [PROMPT]; MODEL is a checkpoint folder, a hub name (gpt2) or synthetic:gpt2.
using NativeGpt2;

var model = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "models", "shakespeare-char");
var prompt = args.Length > 1 ? args[1] : "ROMEO:";

using var lm = Gpt2CausalLM.Load(model);
var options = new GenerationOptions { MaxNewTokens = 120, Temperature = 0.8f, TopK = 40, Seed = 42 };

Console.Write(prompt);
await foreach (var piece in lm.GenerateStreamAsync(prompt, options))
{
    Console.Write(piece);
}
Console.WriteLine();
