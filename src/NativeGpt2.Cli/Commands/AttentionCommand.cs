using System.CommandLine;
using NativeGpt2.Cli.Visualization;

namespace NativeGpt2.Cli.Commands;

/// <summary>
/// <c>nativegpt2 attention [--model SPEC] --text TEXT --out FILE.svg [--layer N] [--head N]</c>: heatmaps of the
/// attention probabilities, every layer × head or the ones asked for, with the tokens as labels, as one SVG.
/// </summary>
internal static class AttentionCommand
{
    /// <summary>Longest text pictured: beyond this the cells are too small to read.</summary>
    public const int MaxTokens = 64;

    public static Command Create(CliContext context)
    {
        var model = CommonOptions.Model(required: false);
        var backend = CommonOptions.Backend();
        var weights = CommonOptions.Weights();
        var text = new Option<string>("--text", "-t") { Description = $"The text whose attention to draw (at most {MaxTokens} tokens).", Required = true };
        var output = CommonOptions.OutputFile("Where to write the picture (SVG).");
        var layer = new Option<int?>("--layer") { Description = "Only this layer (from 0)." };
        var head = new Option<int?>("--head") { Description = "Only this head (from 0)." };
        var command = new Command("attention", "Draw the attention probabilities of a text as heatmaps (SVG), every layer × head or the ones asked for.")
        {
            model, backend, weights, text, output, layer, head,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            using var input = await TextInput.LoadAsync(context, parse, model, backend, weights, parse.GetValue(text)!, cancellation, MaxTokens);
            var (lm, tokenizer, ids) = (input.Model, input.Tokenizer, input.Ids);
            var config = lm.Config;
            var onlyLayer = parse.GetValue(layer);
            var onlyHead = parse.GetValue(head);
            if (onlyLayer is { } badLayer && (badLayer < 0 || badLayer >= config.LayerCount)) throw new UsageException($"--layer must be in [0, {config.LayerCount - 1}], not {badLayer}");
            if (onlyHead is { } badHead && (badHead < 0 || badHead >= config.HeadCount)) throw new UsageException($"--head must be in [0, {config.HeadCount - 1}], not {badHead}");

            var attentions = lm.Forward(TokenBatch.FromIds(ids), options: new ForwardOptions { OutputAttentions = true }).Backbone.Attentions!;
            var T = ids.Length;
            var panels = new List<(int, int, float[])>();
            for (var l = 0; l < config.LayerCount; l++)
            {
                if (onlyLayer is { } wantLayer && l != wantLayer) continue;
                for (var h = 0; h < config.HeadCount; h++)
                {
                    if (onlyHead is { } wantHead && h != wantHead) continue;
                    panels.Add((l, h, attentions[l].Data.AsSpan(h * T * T, T * T).ToArray()));   // (1, NH, T, T)
                }
            }
            var tokens = ids.Select(id => TokenLabels.Text(tokenizer, id)).ToArray();
            var columns = onlyHead is null ? config.HeadCount : 1;
            var svg = AttentionSvg.Render(tokens, panels, columns, $"Attention of {Path.GetFileName(lm.Source)} over {TokenLabels.Quoted(input.Text)}: rows attend to columns");
            CommonOptions.WriteOutput(context, parse.GetValue(output)!, "--out", path => AtomicFile.Write(path, stream => stream.Write(System.Text.Encoding.UTF8.GetBytes(svg))),
                path => $"wrote {Path.GetFileName(path)}: {panels.Count} heatmap(s) of {T} × {T} tokens");
            return CliApp.Success;
        });
        return command;
    }
}
