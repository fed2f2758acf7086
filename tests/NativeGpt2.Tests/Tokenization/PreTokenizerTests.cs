using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Tests.Support;
using NativeGpt2.Tokenization;
using Xunit;

namespace NativeGpt2.Tests.Tokenization;

/// <summary>
/// GPT-2's pre-tokenization pattern applied to code points: exactly .NET's Regex within the Basic Multilingual Plane,
/// and letters and digits beyond it counted as letters and digits, as the reference tokenizers count them.
/// </summary>
public class PreTokenizerTests
{
    private static readonly Regex Pattern = new(Gpt2Tokenizer.PreTokenizationPattern);

    private static string[] Pieces(string text) => PreTokenizer.Pieces(text).Select(p => text.Substring(p.Start, p.Length)).ToArray();

    public static TheoryData<string, string[]> Splits() => new()
    {
        // 𝔘 (U+1D518) and 𐍈 (U+10348) are letters: a contraction after them stays one piece.
        { "𝔘's", ["𝔘", "'s"] },
        { "𐍈'll go", ["𐍈", "'ll", " go"] },
        // A letter run crosses the planes; a space joins the run it precedes.
        { "𝐇ello 𝐰orld", ["𝐇ello", " 𝐰orld"] },
        // 𝟙 (U+1D7D9) is a digit; 😀 is a symbol, and symbols run together.
        { "x 𝟙𝟚!", ["x", " 𝟙𝟚", "!"] },
        { "😀's", ["😀'", "s"] },
        // 𠀀 (U+20000, CJK Extension B) is a letter like 日.
        { "日𠀀本.", ["日𠀀本", "."] },
        // Whitespace: a run before a word leaves its last space to the word; a lone tab stands alone.
        { "a   b\tc  ", ["a", "  ", " b", "\t", "c", "  "] },
        { "'x''s", ["'", "x", "''", "s"] },
    };

    [Theory]
    [MemberData(nameof(Splits))]
    public void Splits_as_the_pattern_does_over_code_points(string text, string[] pieces) =>
        Assert.Equal(pieces, Pieces(text));

    /// <summary>
    /// Characters of every kind the pattern tells apart, in both planes: ASCII and other letters, digits and symbols,
    /// whitespace, apostrophes and the letters of contractions.
    /// </summary>
    private static readonly string[] Atoms =
        ["a", "s", "t", "re", "ve", "m", "ll", "d", "'", "''", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2028", "\u3000", "\u0085",
         "0", "42", "½", "Ⅻ", "!", "?", ".", "é", "e\u0301", "日", "Я", "\u200b", "\u0000",
         "𝔘", "𐍈", "𝐇", "𠀀", "𝟙", "🄁", "😀", "👍🏽", "𝄞", "\U0001F1EB"];

    /// <summary>
    /// A code point beyond U+FFFF replaced by two BMP characters of its kind (letter, digit, symbol), so .NET's Regex, which
    /// sees UTF-16 units, meets the same kinds at the same offsets as the pre-tokenizer meets code points.
    /// </summary>
    private static string InTheBasicPlane(string text)
    {
        var result = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.IsBmp) result.Append((char)rune.Value);
            else result.Append(Rune.GetUnicodeCategory(rune) switch
            {
                UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                    or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => "aa",
                UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => "00",
                _ => "!!",
            });
        }
        return result.ToString();
    }

    [Property(MaxTest = 1000)]
    public Property Pieces_are_the_patterns_matches_with_code_points_for_units() =>
        Prop.ForAll(Gen.ArrayOf(Gen.Elements(Atoms)).Select(string.Concat).ToArbitrary(), text =>
        {
            var stand = InTheBasicPlane(text);
            Assert.Equal(text.Length, stand.Length);
            var expected = Pattern.Matches(stand).Select(m => (m.Index, m.Length)).ToArray();
            var actual = PreTokenizer.Pieces(text).ToArray();
            Assert.Equal(expected, actual);
        });

    [Property(MaxTest = 300)]
    public Property Within_the_basic_plane_pieces_are_exactly_the_regex_matches() =>
        Prop.ForAll(Gen.ArrayOf(Gen.Choose(0, 0xFFFF).Where(c => c is < 0xD800 or > 0xDFFF).Select(c => (char)c)).Select(cs => new string(cs)).ToArbitrary(), text =>
            Assert.Equal(Pattern.Matches(text).Select(m => (m.Index, m.Length)), PreTokenizer.Pieces(text)));

    [Fact]
    public void A_supplementary_letter_before_a_contraction_encodes_as_its_two_pieces()
    {
        var tokenizer = Gpt2Tokenizer.TryLoad(Paths.Model("gpt2-mini"))!;
        Assert.Equal(tokenizer.Encode("𝔘").Concat(tokenizer.Encode("'s")), tokenizer.Encode("𝔘's"));
        Assert.Equal([338], tokenizer.Encode("'s"));
    }
}
