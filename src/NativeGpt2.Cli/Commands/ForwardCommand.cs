using System.CommandLine;
using NativeGpt2.Safetensors;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 forward --model SPEC (--ids 1,2,3 | --text TEXT) --out FILE.safetensors</c>: writes <c>input_ids</c>,
/// <c>hidden_states.0..L</c> and <c>logits</c> under the reference files' names, dtypes and shapes.
/// </summary>
internal static class ForwardCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model();
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var ids = new Option<string?>("--ids") { Description = "Token ids, comma-separated: 1,2,3; or give --text." };
        var text = new Option<string?>("--text", "-t") { Description = "Input text, tokenized by the model's tokenizer." };
        var output = CommonOptions.OutputFile("Where to write the activations (safetensors).");
        var command = new Command("forward", "Run one forward pass and save input_ids, hidden_states.0..L and logits as safetensors.") { model, backend, weights, ids, text, output };
        command.SetAction(async (parse, cancellation) =>
        {
            var given = CommonOptions.ParseInput(parse.GetValue(ids), parse.GetValue(text));
            using var lm = await Gpt2CausalLM.LoadAsync(parse.GetValue(model)!, context.LoadOptionsOn(parse.GetValue(backend), parse.GetValue(weights)), cancellation);
            var tokens = CommonOptions.InputTokens(lm, given, parse.GetValue(text));
            var result = lm.Forward(TokenBatch.FromIds(tokens), options: new ForwardOptions { OutputHiddenStates = true });

            var writer = new SafetensorsWriter()
                .AddMetadata("format", "pt")
                .AddMetadata("producer", "nativegpt2 forward")
                .Add("input_ids", tokens, 1, tokens.Length);
            var hidden = result.Backbone.HiddenStates!;
            for (var i = 0; i < hidden.Count; i++)
                writer.Add($"hidden_states.{i}", hidden[i].Data, Shape(hidden[i]));
            writer.Add("logits", result.Logits.Data, Shape(result.Logits));
            CommonOptions.WriteOutput(context, parse.GetValue(output)!, "--out", writer.Save,
                path => $"wrote {path}: input_ids [1, {tokens.Length}], hidden_states.0..{hidden.Count - 1}, logits {result.Logits.ShapeText}");
            return CliApp.Success;
        });
        return command;
    }

    private static long[] Shape(FloatTensor tensor) => tensor.Shape.Select(d => (long)d).ToArray();
}
