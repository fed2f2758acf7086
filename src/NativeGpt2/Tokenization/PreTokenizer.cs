using System.Buffers;
using System.Globalization;
using System.Text;

namespace NativeGpt2.Tokenization;

/// <summary>
/// GPT-2's pre-tokenization, <see cref="Gpt2Tokenizer.PreTokenizationPattern"/>, applied to Unicode code points as the
/// reference tokenizers apply it (OpenAI's encoder, Hugging Face tokenizers, tiktoken): the first alternative that
/// matches at a position, each run as long as it goes.
/// </summary>
/// <remarks>
/// .NET's <see cref="System.Text.RegularExpressions.Regex"/> matches UTF-16 code units. A letter or digit outside the
/// Basic Multilingual Plane (𝐇, 𝔘, 𐍈, 𝟙, CJK Extension B) is two surrogates to it, neither of them <c>\p{L}</c> or
/// <c>\p{N}</c>, so the pattern would count it among the symbols: "𝔘's" would split as "𝔘'" + "s", not "𝔘" + "'s",
/// and give other ids. Within the Basic Multilingual Plane this splits exactly as the pattern does.
/// </remarks>
internal static class PreTokenizer
{
    private enum Kind { Space, Letter, Number, Other }

    /// <summary>The pieces of <paramref name="text"/>, in order, as (start, length) in UTF-16 units; together they cover it.</summary>
    public static IEnumerable<(int Start, int Length)> Pieces(string text)
    {
        for (var start = 0; start < text.Length;)
        {
            var end = PieceEnd(text, start);
            yield return (start, end - start);
            start = end;
        }
    }

    /// <summary>Where the piece that starts at <paramref name="i"/> ends.</summary>
    internal static int PieceEnd(ReadOnlySpan<char> s, int i)
    {
        // 's|'t|'re|'ve|'m|'ll|'d
        if (s[i] == '\'' && ContractionLength(s[(i + 1)..]) is > 0 and var contraction) return i + 1 + contraction;

        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one kind.
        var at = s[i] == ' ' && i + 1 < s.Length ? i + 1 : i;
        var kind = KindAt(s, at, out var width);
        if (kind != Kind.Space)
        {
            var end = at + width;
            while (end < s.Length && KindAt(s, end, out width) == kind) end += width;
            return end;
        }

        // `\s+(?!\S)`: a run of whitespace that is not followed by anything else, or all of it but its last character,
        // which then starts the next piece (so " world" keeps its space); `\s+`: a single one before anything else.
        var run = i;
        while (run < s.Length && KindAt(s, run, out _) == Kind.Space) run++;
        return run == s.Length || run - i == 1 ? run : run - 1;
    }

    private static int ContractionLength(ReadOnlySpan<char> rest) =>
        rest.StartsWith("s") || rest.StartsWith("t") || rest.StartsWith("m") || rest.StartsWith("d") ? 1
        : rest.StartsWith("re") || rest.StartsWith("ve") || rest.StartsWith("ll") ? 2
        : 0;

    /// <summary>The kind of the code point at <paramref name="i"/> and its width in UTF-16 units (2 for a surrogate pair).</summary>
    private static Kind KindAt(ReadOnlySpan<char> s, int i, out int width)
    {
        if (Rune.DecodeFromUtf16(s[i..], out var rune, out width) != OperationStatus.Done)
        {
            // A lone surrogate (the tokenizer replaces them before splitting): one unit, a symbol.
            width = 1;
            return Kind.Other;
        }
        var c = rune.Value;
        // \s is [\f\n\r\t\v\x85\p{Z}], all of it in the Basic Multilingual Plane.
        if (c is >= '\t' and <= '\r' or '\x85') return Kind.Space;
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => Kind.Space,
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Kind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Kind.Number,
            _ => Kind.Other,
        };
    }
}
