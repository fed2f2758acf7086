using System.Globalization;
using System.Xml.Linq;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Cli;

/// <summary><c>top</c>, <c>trace</c> and <c>attention</c>: the commands the walkthrough reads the model with.</summary>
public class ReadingCommandTests
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");
    private static string Model => Paths.Model("shakespeare-char");

    [Fact]
    public void Top_lists_the_softmax_of_the_last_logits_in_order()
    {
        var result = CliRunner.Run("top", "--model", Model, "--text", "JULIET:\nO Rome", "--k", "7");
        Assert.Equal(CliApp.Success, result.ExitCode);
        var rows = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)[2..];
        Assert.Equal(7, rows.Length);

        var ids = Shakespeare.Tokenizer!.Encode("JULIET:\nO Rome");
        var logits = Shakespeare.Forward(TokenBatch.FromIds(ids)).Logits.Row(0, ids.Length - 1).ToArray();
        var max = logits.Max();
        var sum = logits.Sum(l => Math.Exp(l - max));
        var expected = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(7).ToArray();
        for (var r = 0; r < rows.Length; r++)
        {
            var fields = rows[r].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(r + 1, int.Parse(fields[0], CultureInfo.InvariantCulture));
            var id = int.Parse(fields[^3], CultureInfo.InvariantCulture);
            Assert.Equal(expected[r], id);
            Assert.Equal(Math.Exp(logits[id] - max) / sum, double.Parse(fields[^2], CultureInfo.InvariantCulture), 6);
        }
    }

    [Fact]
    public void Trace_shows_the_activations_of_every_step_at_the_last_position()
    {
        var result = CliRunner.Run("trace", "--model", Model, "--text", "ROMEO:", "--values", "3");
        Assert.Equal(CliApp.Success, result.ExitCode);
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var ids = Shakespeare.Tokenizer!.Encode("ROMEO:");
        var output = Shakespeare.Forward(TokenBatch.FromIds(ids), options: new ForwardOptions { OutputHiddenStates = true, OutputLayerActivations = true });
        float[] Shown(string label) => lines.Single(l => l.StartsWith(label + " ", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(f => f.StartsWith('+') || f.StartsWith('-'))
            .Select(f => float.Parse(f, CultureInfo.InvariantCulture)).ToArray();
        void Check(string label, FloatTensor tensor)
        {
            var expected = tensor.Row(0, ids.Length - 1)[..3].ToArray();
            var shown = Shown(label);
            Assert.Equal(3, shown.Length);
            for (var i = 0; i < 3; i++) Assert.Equal(expected[i], shown[i], 4);
        }
        var a = output.Backbone.Activations;
        Check("embeddings", a["hidden_states.0"]);
        Check("block 0 attn", a["layer0.attn"]);
        Check("block 1 out", a["hidden_states.2"]);
        Check("block 3 out", a["layer3.out"]);
        Check("ln_f", a["hidden_states.4"]);
        Check("logits", output.Logits);
        Assert.Equal(1 + 4 * 5 + 2, lines.Count(l => l.StartsWith("block", StringComparison.Ordinal) || l.StartsWith("embeddings", StringComparison.Ordinal) || l.StartsWith("ln_f", StringComparison.Ordinal) || l.StartsWith("logits", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData(null, null, 16)]
    [InlineData(2, null, 4)]
    [InlineData(null, 1, 4)]
    [InlineData(3, 0, 1)]
    public void Attention_draws_one_heatmap_per_layer_and_head_asked_for(int? layer, int? head, int panels)
    {
        var path = Path.Combine(Path.GetTempPath(), $"attention-{Guid.NewGuid():N}.svg");
        try
        {
            string[] args = ["attention", "--model", Model, "--text", "ROMEO: What, ho!", "--out", path,
                .. layer is null ? Array.Empty<string>() : ["--layer", layer.Value.ToString(CultureInfo.InvariantCulture)],
                .. head is null ? Array.Empty<string>() : ["--head", head.Value.ToString(CultureInfo.InvariantCulture)]];
            var result = CliRunner.Run(args);
            Assert.Equal(CliApp.Success, result.ExitCode);

            var svg = XDocument.Load(path);   // well-formed XML, or this throws
            XNamespace ns = "http://www.w3.org/2000/svg";
            Assert.Equal(ns + "svg", svg.Root!.Name);
            var T = Shakespeare.Tokenizer!.Encode("ROMEO: What, ho!").Length;
            var cells = svg.Descendants(ns + "rect").Where(r => r.Element(ns + "title") is not null).ToArray();
            Assert.Equal(panels * T * (T + 1) / 2, cells.Length);   // the causal triangle, diagonal included
            Assert.Equal(panels, svg.Descendants(ns + "text").Count(t => t.Value.StartsWith("layer ", StringComparison.Ordinal)));

            // Each query row's probabilities (the tooltips) sum to 1.
            var first = cells.Take(T * (T + 1) / 2).Select(c => double.Parse(c.Element(ns + "title")!.Value.Split(": ")[^1], CultureInfo.InvariantCulture)).ToArray();
            for (int q = 0, at = 0; q < T; at += ++q) Assert.Equal(1.0, first.Skip(at).Take(q + 1).Sum(), 3);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("--layer", "4")]
    [InlineData("--head", "-1")]
    public void Attention_outside_the_model_is_a_usage_error(string option, string value)
    {
        var result = CliRunner.Run("attention", "--model", Model, "--text", "ROMEO:", "--out", Path.Combine(Path.GetTempPath(), "unused.svg"), option, value);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains(option, result.Error);
    }
}
