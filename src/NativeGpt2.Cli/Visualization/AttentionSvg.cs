using System.Globalization;
using System.Security;
using System.Text;

namespace NativeGpt2.Cli.Visualization;

/// <summary>
/// Attention probabilities as a self-contained SVG: one heatmap per (layer, head), rows the query tokens and
/// columns the key tokens they attend to, darker for more weight; the causal mask leaves the upper triangle empty.
/// Every cell carries its value as a tooltip.
/// </summary>
internal static class AttentionSvg
{
    private const int Cell = 18;
    private const int Gap = 28;

    /// <summary>The picture of <paramref name="panels"/>: (layer, head, probabilities T × T) laid out in rows of <paramref name="columns"/>.</summary>
    public static string Render(IReadOnlyList<string> tokens, IReadOnlyList<(int Layer, int Head, float[] Probabilities)> panels, int columns, string title)
    {
        var T = tokens.Count;
        var labels = tokens.Select(TokenLabels.Visible).ToArray();
        var margin = 8 + 7 * Math.Min(12, labels.Max(l => l.Length));   // room for the longest label (up to 12 characters)
        var panelWidth = margin + T * Cell;
        var panelHeight = margin + T * Cell + 20;
        var rows = (panels.Count + columns - 1) / columns;
        var width = Gap + columns * (panelWidth + Gap);
        var height = 40 + rows * (panelHeight + Gap);
        var n = CultureInfo.InvariantCulture;

        var svg = new StringBuilder();
        svg.Append(n, $"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">""").Append('\n');
        svg.Append(n, $"""<rect width="{width}" height="{height}" fill="white"/>""").Append('\n');
        svg.Append(n, $"""<text x="{Gap}" y="24" font-size="14" font-family="sans-serif">{Escape(title)}</text>""").Append('\n');
        for (var p = 0; p < panels.Count; p++)
        {
            var (layer, head, probabilities) = panels[p];
            var x0 = Gap + p % columns * (panelWidth + Gap);
            var y0 = 40 + p / columns * (panelHeight + Gap);
            svg.Append(n, $"""<g transform="translate({x0},{y0})">""").Append('\n');
            svg.Append(n, $"""<text x="{margin}" y="12" font-family="sans-serif" font-size="12">layer {layer}, head {head}</text>""").Append('\n');
            var top = 20 + margin;
            for (var t = 0; t < T; t++)
            {
                // Key labels run up the columns; query labels end at the rows.
                var cx = margin + t * Cell + Cell / 2 + 4;
                svg.Append(n, $"""<text x="{cx}" y="{top - 4}" transform="rotate(-90 {cx} {top - 4})">{Escape(Clip(labels[t]))}</text>""").Append('\n');
                svg.Append(n, $"""<text x="{margin - 4}" y="{top + t * Cell + Cell / 2 + 4}" text-anchor="end">{Escape(Clip(labels[t]))}</text>""").Append('\n');
            }
            for (var q = 0; q < T; q++)
            {
                for (var k = 0; k <= q; k++)
                {
                    var value = probabilities[q * T + k];
                    svg.Append(n, $"""<rect x="{margin + k * Cell}" y="{top + q * Cell}" width="{Cell - 1}" height="{Cell - 1}" fill="{Color(value)}">""");
                    svg.Append(n, $"""<title>{Escape(labels[q])} → {Escape(labels[k])}: {value:F4}</title></rect>""").Append('\n');
                }
            }
            svg.Append("</g>\n");
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>White for 0 to dark blue for 1.</summary>
    private static string Color(float value)
    {
        var v = Math.Clamp(value, 0f, 1f);
        int r = (int)Math.Round(255 - v * (255 - 8)), g = (int)Math.Round(255 - v * (255 - 48)), b = (int)Math.Round(255 - v * (255 - 107));
        return $"#{r:x2}{g:x2}{b:x2}";
    }

    private static string Clip(string label) => label.Length <= 12 ? label : label[..11] + "…";

    private static string Escape(string text) => SecurityElement.Escape(text) ?? "";
}
