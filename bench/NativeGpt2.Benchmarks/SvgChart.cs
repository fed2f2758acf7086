using System.Globalization;
using System.Security;
using System.Text;
using System.Text.Json;

namespace NativeGpt2.Benchmarks;

/// <summary>
/// Draws the side-by-side results (<see cref="SideBySide"/>'s JSON lines) as a self-contained SVG line chart:
/// tokens per second against sequence length (log scale), one line per engine and kernel width.
/// </summary>
public static class SvgChart
{
    private const int Width = 720, Height = 420, Left = 70, Right = 230, Top = 50, Bottom = 60;
    private static readonly string[] Colors = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b"];

    public static string Draw(IEnumerable<string> jsonLines, string title)
    {
        var points = jsonLines.Where(l => l.TrimStart().StartsWith('{'))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("engine", out _))
            .Select(e => (Series: $"{e.GetProperty("engine").GetString()} ({e.GetProperty("kernels").GetString()})",
                T: e.GetProperty("T").GetInt32(), Rate: e.GetProperty("tokens_per_s").GetDouble(),
                Machine: e.TryGetProperty("machine", out var m) ? m.GetString() : null))
            .ToList();
        if (points.Count == 0) throw new InvalidDataException("no results to plot");
        var n = CultureInfo.InvariantCulture;
        double minT = points.Min(p => p.T), maxT = points.Max(p => p.T);
        var maxRate = NiceCeiling(points.Max(p => p.Rate));
        double X(double t) => Left + (maxT == minT ? 0.5 : (Math.Log2(t) - Math.Log2(minT)) / (Math.Log2(maxT) - Math.Log2(minT))) * (Width - Left - Right);
        double Y(double rate) => Height - Bottom - rate / maxRate * (Height - Top - Bottom);

        var svg = new StringBuilder();
        svg.Append(n, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        svg.Append(n, $"<text x=\"{Width / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>\n");
        if (points[0].Machine is { } machine)
            svg.Append(n, $"<text x=\"{Width / 2}\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">{Escape(machine)}</text>\n");
        // Axes, grid and ticks.
        for (var i = 0; i <= 5; i++)
        {
            var rate = maxRate * i / 5;
            svg.Append(n, $"<line x1=\"{Left}\" y1=\"{Y(rate):F1}\" x2=\"{Width - Right}\" y2=\"{Y(rate):F1}\" stroke=\"#ddd\"/>\n");
            svg.Append(n, $"<text x=\"{Left - 8}\" y=\"{Y(rate) + 4:F1}\" text-anchor=\"end\">{rate:0}</text>\n");
        }
        foreach (var t in points.Select(p => p.T).Distinct().Order())
        {
            svg.Append(n, $"<line x1=\"{X(t):F1}\" y1=\"{Height - Bottom}\" x2=\"{X(t):F1}\" y2=\"{Height - Bottom + 5}\" stroke=\"black\"/>\n");
            svg.Append(n, $"<text x=\"{X(t):F1}\" y=\"{Height - Bottom + 20}\" text-anchor=\"middle\">{t}</text>\n");
        }
        svg.Append(n, $"<line x1=\"{Left}\" y1=\"{Height - Bottom}\" x2=\"{Width - Right}\" y2=\"{Height - Bottom}\" stroke=\"black\"/>\n");
        svg.Append(n, $"<line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{Height - Bottom}\" stroke=\"black\"/>\n");
        svg.Append(n, $"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 15}\" text-anchor=\"middle\">tokens in the sequence (T), logits at every position</text>\n");
        svg.Append(n, $"<text transform=\"translate(18 {(Top + Height - Bottom) / 2}) rotate(-90)\" text-anchor=\"middle\">tokens / s</text>\n");
        // One polyline per series, with its legend entry.
        var series = points.GroupBy(p => p.Series).ToList();
        for (var s = 0; s < series.Count; s++)
        {
            var color = Colors[s % Colors.Length];
            var line = string.Join(" ", series[s].OrderBy(p => p.T).Select(p => string.Create(n, $"{X(p.T):F1},{Y(p.Rate):F1}")));
            svg.Append(n, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{line}\"/>\n");
            foreach (var p in series[s])
                svg.Append(n, $"<circle cx=\"{X(p.T):F1}\" cy=\"{Y(p.Rate):F1}\" r=\"3\" fill=\"{color}\"><title>{Escape(series[s].Key)}: T={p.T}, {p.Rate:F0} tokens/s</title></circle>\n");
            var ly = Top + 10 + s * 20;
            svg.Append(n, $"<line x1=\"{Width - Right + 15}\" y1=\"{ly}\" x2=\"{Width - Right + 35}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/>\n");
            svg.Append(n, $"<text x=\"{Width - Right + 40}\" y=\"{ly + 4}\">{Escape(series[s].Key)}</text>\n");
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Escape(string text) => SecurityElement.Escape(text) ?? "";

    /// <summary>1, 2 or 5 times a power of ten, at or above <paramref name="value"/>.</summary>
    private static double NiceCeiling(double value)
    {
        var power = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (var step in new[] { 1.0, 2.0, 2.5, 5.0, 10.0 })
            if (step * power >= value) return step * power;
        return 10 * power;
    }
}
