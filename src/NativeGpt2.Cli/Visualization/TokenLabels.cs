using System.Text;
using NativeGpt2.Tokenization;

namespace NativeGpt2.Cli.Visualization;

/// <summary>How a token is shown to a reader: its text, with what is invisible made visible.</summary>
internal static class TokenLabels
{
    /// <summary>The token's bytes as UTF-8 (a split character shows as U+FFFD).</summary>
    public static string Text(Gpt2Tokenizer tokenizer, int id) => Encoding.UTF8.GetString(tokenizer.TokenBytes(id));

    /// <summary>Quoted with C-style escapes, for terminal tables: <c>"\n"</c>, <c>" the"</c>.</summary>
    public static string Quoted(string text)
    {
        var quoted = new StringBuilder("\"");
        foreach (var c in text)
        {
            quoted.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '"' => "\\\"",
                '\\' => "\\\\",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }
        return quoted.Append('"').ToString();
    }

    /// <summary>For picture labels: a space as ␣, a line break as ↵, other control characters as their code.</summary>
    public static string Visible(string text)
    {
        var visible = new StringBuilder();
        foreach (var c in text)
        {
            visible.Append(c switch
            {
                ' ' => "␣",
                '\n' => "↵",
                '\t' => "⇥",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }
        return visible.ToString();
    }
}
