using System.CommandLine;
using System.Globalization;
using NativeGpt2.Cli.Visualization;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 trace [--model SPEC] --text TEXT [--values N] [--layers N]</c>: a text followed through the
/// forward pass, one line per step (embeddings, each block's LayerNorms, attention, MLP and residual stream, the
/// final LayerNorm, the logits), showing the first values at the last position, as the walkthrough quotes them.
/// </summary>
internal static class TraceCommand
{
    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model(required: false);
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var text = new Option<string>("--text", "-t") { Description = "The text to follow through the model.", Required = true };
        var values = new Option<int>("--values") { Description = "Values shown per step, from the start of the last position's vector (default 4).", DefaultValueFactory = _ => 4 };
        var layers = new Option<int?>("--layers") { Description = "Blocks shown step by step (default: all); the rest show their output only." };
        var command = new Command("trace", "Follow a text through the forward pass: the first values of every step at the last position.") { model, backend, weights, text, values, layers };
        command.SetAction(async (parse, cancellation) =>
        {
            var shown = parse.GetValue(values);
            if (shown < 1) throw new UsageException($"--values must be at least 1, not {shown}");
            using var input = await TextInput.LoadAsync(context, parse, model, backend, weights, parse.GetValue(text)!, cancellation);
            var (lm, tokenizer, ids) = (input.Model, input.Tokenizer, input.Ids);
            var detailed = parse.GetValue(layers) ?? lm.Config.LayerCount;
            if (detailed < 0) throw new UsageException($"--layers must be at least 0, not {detailed}");

            var result = lm.Forward(TokenBatch.FromIds(ids), options: new ForwardOptions { OutputHiddenStates = true, OutputLayerActivations = true });
            var activations = result.Backbone.Activations;
            var out_ = context.Out;
            out_.WriteLine($"text    {TokenLabels.Quoted(input.Text)}");
            out_.WriteLine($"tokens  {string.Join(" ", ids.Select(id => TokenLabels.Quoted(TokenLabels.Text(tokenizer, id))))}");
            out_.WriteLine($"ids     {string.Join(" ", ids)}");
            out_.WriteLine($"step               shape          first {shown} values at the last position (token {ids.Length - 1})");
            void Step(string name, string label) => out_.WriteLine($"{label,-18} {activations[name].ShapeText,-14} {Values(activations[name], shown)}");

            Step("hidden_states.0", "embeddings");
            for (var l = 0; l < lm.Config.LayerCount; l++)
            {
                if (l < detailed)
                {
                    Step($"layer{l}.ln_1", $"block {l} ln_1");
                    Step($"layer{l}.attn", $"block {l} attn");
                    Step($"layer{l}.ln_2", $"block {l} ln_2");
                    Step($"layer{l}.mlp", $"block {l} mlp");
                }
                // The last block's output is only seen after ln_f; hidden_states.L is that final LayerNorm's output.
                if (l < lm.Config.LayerCount - 1) Step($"hidden_states.{l + 1}", $"block {l} out");
                else Step($"layer{l}.out", $"block {l} out");
            }
            Step($"hidden_states.{lm.Config.LayerCount}", "ln_f");
            out_.WriteLine($"{"logits",-18} {result.Logits.ShapeText,-14} {Values(result.Logits, shown)}");
            return CliApp.Success;
        });
        return command;
    }

    /// <summary>The first <paramref name="count"/> values of the last position's vector (B = 1).</summary>
    private static string Values(FloatTensor tensor, int count)
    {
        var last = tensor.Row(0, tensor.Shape[1] - 1);
        var n = CultureInfo.InvariantCulture;
        return string.Join(" ", last[..Math.Min(count, last.Length)].ToArray().Select(v => v.ToString("+0.0000;-0.0000", n))) + (count < last.Length ? " …" : "");
    }
}
