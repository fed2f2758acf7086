using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Tests.Support;
using NativeGpt2.Tokenization;
using Xunit;

namespace NativeGpt2.Tests.Tokenization;

public class TokenizerTests
{
    private static readonly Lazy<Gpt2Tokenizer> FromFiles = new(() => Gpt2Tokenizer.TryLoad(Paths.Model("gpt2-mini"))!);

    /// <summary>gpt2-mini's vocabulary and merges written as a tokenizer.json (merges as pairs, as tokenizers 0.20 saves them).</summary>
    private static readonly Lazy<Gpt2Tokenizer> FromTokenizerJson = new(() =>
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.File(Gpt2Tokenizer.TokenizerJsonFile), TokenizerJson.FromVocabularyFiles(Paths.Model("gpt2-mini"), mergesAsPairs: true));
        return Gpt2Tokenizer.TryLoad(temp.Path)!;
    });

    public sealed record Case(string Text, int[] Ids, string Decoded);

    private static readonly JsonElement References = JsonDocument.Parse(File.ReadAllText(Paths.Ref("tokenizer.json"))).RootElement;

    public static TheoryData<int, string> CaseIndices()
    {
        var data = new TheoryData<int, string>();
        var i = 0;
        foreach (var c in References.GetProperty("cases").EnumerateArray())
            data.Add(i++, c.GetProperty("text").GetString()!.Length > 40 ? c.GetProperty("text").GetString()![..40] + "…" : c.GetProperty("text").GetString()!);
        return data;
    }

    private static Case Reference(int index)
    {
        var c = References.GetProperty("cases")[index];
        return new Case(c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(), c.GetProperty("decoded").GetString()!);
    }

    public static TheoryData<string> Vocabularies() => ["files", "package", "tokenizer.json"];

    private static Gpt2Tokenizer Tokenizer(string source) => source switch
    {
        "files" => FromFiles.Value,
        "tokenizer.json" => FromTokenizerJson.Value,
        _ => Gpt2Tokenizer.Gpt2,
    };

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Every_reference_string_gives_its_ids_and_decodes_back(int index, string label)
    {
        var reference = Reference(index);
        foreach (var source in new[] { "files", "package", "tokenizer.json" })
        {
            var tokenizer = Tokenizer(source);
            Assert.True(reference.Ids.SequenceEqual(tokenizer.Encode(reference.Text)), $"{source}: {label}: ids differ");
            Assert.Equal(reference.Decoded, tokenizer.Decode(reference.Ids));
            Assert.Equal(reference.Text, tokenizer.Decode(tokenizer.Encode(reference.Text)));
        }
    }

    /// <summary>
    /// The 2,000 generated strings of refs/tokenizer-generated.json (ids from OpenAI's encoder algorithm): every one gives
    /// its ids and decodes back. The failures are listed together, each with its text, so one run shows all of them.
    /// </summary>
    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void Every_generated_string_gives_the_reference_encoders_ids(string source)
    {
        var tokenizer = Tokenizer(source);
        using var generated = JsonDocument.Parse(File.ReadAllText(Paths.Ref("tokenizer-generated.json")));
        var cases = generated.RootElement.GetProperty("cases").EnumerateArray().ToList();
        Assert.Equal(2000, cases.Count);
        var wrong = new List<string>();
        foreach (var c in cases)
        {
            var text = c.GetProperty("text").GetString()!;
            var ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var encoded = tokenizer.Encode(text);
            if (!ids.SequenceEqual(encoded)) wrong.Add($"{JsonSerializer.Serialize(text)}: [{string.Join(",", ids)}] but got [{string.Join(",", encoded)}]");
            else if (tokenizer.Decode(encoded) != text) wrong.Add($"{JsonSerializer.Serialize(text)}: does not decode back");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {cases.Count} strings:\n{string.Join("\n", wrong.Take(20))}");
    }

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void End_of_text_is_plain_text_unless_special_tokens_are_allowed(string source)
    {
        var special = References.GetProperty("special");
        var text = special.GetProperty("text").GetString()!;
        var tokenizer = Tokenizer(source);
        Assert.Equal(special.GetProperty("ids_special_as_text").EnumerateArray().Select(e => e.GetInt32()), tokenizer.Encode(text));
        Assert.Equal(special.GetProperty("ids_special_allowed").EnumerateArray().Select(e => e.GetInt32()), tokenizer.Encode(text, allowSpecialTokens: true));
        Assert.Equal(50256, tokenizer.EndOfTextId);
        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text, allowSpecialTokens: true)));
    }

    [Fact]
    public void Shakespeare_char_encodes_one_id_per_character()
    {
        var tokenizer = Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!;
        const string text = "ROMEO:\nWhat, ho! apothecary!\n\nJULIET: O Romeo, Romeo; wherefore art thou?";
        var ids = tokenizer.Encode(text);
        Assert.Equal(text.Length, ids.Length);
        Assert.Equal(66, tokenizer.VocabSize);
        Assert.Equal(65, tokenizer.EndOfTextId);
        Assert.Equal(0, tokenizer.Encode("\n").Single());
        Assert.Equal(1, tokenizer.Encode(" ").Single());
        Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Fact]
    public void Streaming_decoding_never_emits_half_a_character()
    {
        var tokenizer = FromFiles.Value;
        const string text = "naïve café 😀 日本語 🎉!";
        var ids = tokenizer.Encode(text);
        var decoder = tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(decoder.Append).Append(decoder.Flush()).ToList();
        Assert.Equal(text, string.Concat(pieces));
        // Every piece is valid text on its own: no lone surrogate, no replacement character.
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.All(pieces, p => Assert.False(p.Length > 0 && char.IsHighSurrogate(p[^1]), $"piece ends in half a surrogate pair: {p}"));
        // The emoji takes several byte-level tokens, so some steps must have held bytes back.
        Assert.Contains("", pieces);
    }

    /// <summary>Pieces of text that stress pre-tokenization and byte-level BPE: scripts, emoji, whitespace runs, controls.</summary>
    private static readonly string[] Atoms =
        ["a", "Z", "hello", " the", "'s", "'ll", "  ", "\n", "\t", "\r\n", "0", "42", "3.14", "!", "?!", "<|", "|>", "endoftext",
         "é", "ß", "日本", "語", "😀", "👍🏽", "🎉", "Ω", "Я", "ש", "ह", "\u0000", "\u001b", "\u00a0", "\u200b", "ﬁ", "Ａ", "𝕏"];

    [Property(MaxTest = 500)]
    public Property Any_valid_text_round_trips_and_special_tokens_stay_text() =>
        Prop.ForAll(Gen.ArrayOf(Gen.Elements(Atoms)).Select(string.Concat).ToArbitrary(), text =>
        {
            var tokenizer = FromFiles.Value;
            var ids = tokenizer.Encode(text);
            Assert.Equal(text, tokenizer.Decode(ids));
            Assert.DoesNotContain(50256, ids);
            Assert.Equal(ids, Gpt2Tokenizer.Gpt2.Encode(text));
        });

    [Property(MaxTest = 300)]
    public Property A_character_vocabulary_skips_exactly_the_characters_it_names_missing() =>
        Prop.ForAll(Gen.ArrayOf(Gen.Elements(Atoms)).Select(string.Concat).ToArbitrary(), text =>
        {
            // shakespeare-char has tokens for 65 ASCII characters: every other character is skipped, as Hugging Face skips
            // it, and MissingCharacters names each of those once, in order. GPT-2's vocabulary has every byte: none missing.
            var shakespeare = Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!;
            var missing = shakespeare.MissingCharacters(text);
            Assert.Equal(missing.Distinct(), missing);
            var kept = string.Concat(text.EnumerateRunes().Select(r => r.ToString()).Where(c => !missing.Contains(c)));
            Assert.Equal(kept, shakespeare.Decode(shakespeare.Encode(text)));
            Assert.Empty(FromFiles.Value.MissingCharacters(text));
        });

    [Fact]
    public void Missing_characters_are_named_in_order_of_appearance()
    {
        var shakespeare = Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!;
        Assert.Equal(["é", "😀", "ï"], shakespeare.MissingCharacters("Café 😀 naïve, café"));
        Assert.Empty(shakespeare.MissingCharacters("ROMEO:\nWhat, ho!"));
        Assert.Equal(["\uFFFD"], shakespeare.MissingCharacters("a\uD800b"));
        Assert.Equal("'é' (U+00E9), '😀' (U+1F600), U+0007", Gpt2Tokenizer.Describe(["é", "😀", "\u0007"]));
        Assert.EndsWith("and 2 more", Gpt2Tokenizer.Describe(Enumerable.Range(0, 12).Select(i => ((char)('À' + i)).ToString()).ToList()));
    }

    [Fact]
    public void Lone_surrogates_encode_as_the_replacement_character()
    {
        var tokenizer = FromFiles.Value;
        Assert.Equal(tokenizer.Encode("a\uFFFDb"), tokenizer.Encode("a\uD800b"));
        Assert.Equal("a\uFFFDb", tokenizer.Decode(tokenizer.Encode("a\uDC00b")));
    }

    public static TheoryData<string> Sources() => ["files", "package", "shakespeare"];

    private static Gpt2Tokenizer Source(string name) => name switch
    {
        "shakespeare" => Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!,
        _ => Tokenizer(name),
    };

    /// <summary>Long pieces go through the O(n log n) heap encoder; it must give exactly the library's ids.</summary>
    [Property(MaxTest = 150)]
    public Property Heap_encoder_equals_the_library_on_any_piece() =>
        Prop.ForAll((from source in Gen.Elements("files", "package", "shakespeare")
                     from alphabet in Gen.Elements<string[]>(["a"], ["a", "b"], ["a", "a", "b"], ["a", "b", "c", " "], ["t", "h", "e"], ["^"], ["é", "😀"], ["0", "1"], ["x", "yz", "zy"], ["Ġ"], ["日", "本", "語", "!"])
                     from length in Gen.Choose(1, 700)
                     from seed in Gen.Choose(0, int.MaxValue)
                     select (source, alphabet, length, seed)).ToArbitrary(), c =>
        {
            var (source, alphabet, length, seed) = c;
            var random = new Random(seed);
            // Whole characters (an emoji is two chars): pieces never hold lone surrogates, the encoder replaces them first.
            var piece = string.Concat(Enumerable.Range(0, length).Select(_ => alphabet[random.Next(alphabet.Length)]));
            var tokenizer = Source(source);
            Assert.Equal(tokenizer.EncodePiece(piece, heap: false), tokenizer.EncodePiece(piece, heap: true));
        });

    [Theory]
    [InlineData("a")]
    [InlineData("^")]
    [InlineData(" ")]
    [InlineData("ab")]
    [InlineData("😀")]
    public async Task A_megabyte_of_one_pattern_encodes_without_hanging_and_round_trips(string unit)
    {
        var text = string.Concat(Enumerable.Repeat(unit, 1_000_000 / unit.Length));
        foreach (var tokenizer in new[] { FromFiles.Value, Gpt2Tokenizer.Gpt2 })
        {
            // A hang guard, not a performance claim: the library alone needs minutes for this input.
            var ids = await Task.Run(() => tokenizer.Encode(text)).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(text, tokenizer.Decode(ids));
        }
    }
}
