using NativeGpt2.Tests.Support;
using NativeGpt2.Tokenization;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

public class TokenizerRulesTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private ModelFormatException Rejects(string vocab, string merges, string expectedText, string file = "vocab.json")
    {
        File.WriteAllText(_temp.File("vocab.json"), vocab);
        File.WriteAllText(_temp.File("merges.txt"), merges);
        var error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2Tokenizer.TryLoad(_temp.Path));
        Assert.Equal(_temp.File(file), error.FilePath);
        Assert.Contains(expectedText, error.Message);
        return error;
    }

    private ModelFormatException RejectsTokenizerJson(Action<System.Text.Json.Nodes.JsonObject> edit, string field, string expectedText)
    {
        File.WriteAllText(_temp.File(Gpt2Tokenizer.TokenizerJsonFile), TokenizerJson.FromVocabularyFiles(Paths.Model("gpt2-mini"), mergesAsPairs: false, edit));
        var error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2Tokenizer.TryLoad(_temp.Path));
        Assert.Equal(_temp.File(Gpt2Tokenizer.TokenizerJsonFile), error.FilePath);
        Assert.Equal(field, error.Field);
        Assert.Contains(expectedText, error.Message);
        return error;
    }

    [Fact]
    public void A_tokenizer_json_alone_loads_with_its_added_tokens()
    {
        // Merges as "a b" strings (the pair form runs through every tokenizer test); a pad token after the vocabulary.
        File.WriteAllText(_temp.File(Gpt2Tokenizer.TokenizerJsonFile), TokenizerJson.FromVocabularyFiles(Paths.Model("gpt2-mini"), mergesAsPairs: false,
            root => root["added_tokens"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject { ["id"] = 50257, ["content"] = "<|pad|>", ["special"] = true })));
        var tokenizer = Gpt2Tokenizer.TryLoad(_temp.Path)!;
        var reference = Gpt2Tokenizer.TryLoad(Paths.Model("gpt2-mini"))!;
        Assert.Equal(50258, tokenizer.VocabSize);
        const string text = "Hello, world! It's 2026 — ünïcödé and 𝔘's.";
        Assert.Equal(reference.Encode(text), tokenizer.Encode(text));
        Assert.Equal([50257], tokenizer.Encode("<|pad|>", allowSpecialTokens: true));
        Assert.Equal("<|pad|>", tokenizer.Decode([50257]));
        // vocab.json wins where both are present.
        File.Copy(Path.Combine(Paths.Model("gpt2-mini"), "vocab.json"), _temp.File("vocab.json"));
        File.Copy(Path.Combine(Paths.Model("gpt2-mini"), "merges.txt"), _temp.File("merges.txt"));
        Assert.Equal(50257, Gpt2Tokenizer.TryLoad(_temp.Path)!.VocabSize);
    }

    [Fact]
    public void A_tokenizer_json_that_is_not_gpt2s_pipeline_is_refused_naming_the_field()
    {
        RejectsTokenizerJson(r => r["model"]!["type"] = "WordPiece", "model.type", "\"WordPiece\" is not supported");
        RejectsTokenizerJson(r => r["model"]!["continuing_subword_prefix"] = "##", "model.continuing_subword_prefix", "is not supported");
        RejectsTokenizerJson(r => r["model"]!["byte_fallback"] = true, "model.byte_fallback", "not GPT-2's byte-level BPE");
        RejectsTokenizerJson(r => r["normalizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "NFC" }, "normalizer", "GPT-2's tokenizer has none");
        RejectsTokenizerJson(r => r["pre_tokenizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "Whitespace" }, "pre_tokenizer.type", "is not supported");
        RejectsTokenizerJson(r => r["pre_tokenizer"]!["add_prefix_space"] = true, "pre_tokenizer.add_prefix_space", "GPT-2 adds no space");
        RejectsTokenizerJson(r => r.Remove("pre_tokenizer"), "pre_tokenizer", "required object is missing");
        RejectsTokenizerJson(r => r["pre_tokenizer"]!.AsObject().Remove("type"), "pre_tokenizer.type", "required field is missing");
        RejectsTokenizerJson(r => r["model"]!.AsObject().Remove("vocab"), "model.vocab", "required object");
        RejectsTokenizerJson(r => r["model"]!["merges"]!.AsArray()[0] = 5, "model.merges[0]", "a merge is");
        RejectsTokenizerJson(r => r["model"]!["merges"]!.AsArray()[1] = "Ġ zzzz", "model.merges[1]", "which is not in model.vocab");
        RejectsTokenizerJson(r => r["added_tokens"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject { ["id"] = 50300, ["content"] = "<|pad|>" }),
            "<|pad|>", "ids must continue model.vocab's 0..50256");
        RejectsTokenizerJson(r => r["added_tokens"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject { ["id"] = "x", ["content"] = "<|pad|>" }),
            "added_tokens[1]", "non-negative integer id");
        RejectsTokenizerJson(r => r["model"]!["vocab"]!["Ġthe"] = -1, "model.vocab.Ġthe", "non-negative integer");
    }

    [Fact]
    public void A_small_valid_vocabulary_loads()
    {
        File.WriteAllText(_temp.File("vocab.json"), """{"a": 0, "b": 1, "ab": 2}""");
        File.WriteAllText(_temp.File("merges.txt"), "#version: 0.2\na b\n");
        Assert.Equal([2, 0], Gpt2Tokenizer.TryLoad(_temp.Path)!.Encode("aba"));
    }

    [Fact]
    public void Duplicate_ids() => Rejects("""{"a": 0, "b": 0}""", "", "id 0 is already the id of 'a'");

    [Fact]
    public void Duplicate_tokens() => Rejects("""{"a": 0, "a": 1}""", "", "a: duplicate entry");

    [Fact]
    public void Ids_with_gaps() => Rejects("""{"a": 0, "b": 5}""", "", "without gaps");

    [Fact]
    public void Negative_or_non_integer_ids() => Rejects("""{"a": -1}""", "", "must be a non-negative integer");

    [Fact]
    public void Vocab_that_is_not_an_object() => Rejects("""["a", "b"]""", "", "must be a JSON object");

    [Fact]
    public void Tokens_outside_the_byte_level_alphabet() => Rejects("""{"a": 0, "\u4e00": 1}""", "", "outside GPT-2's byte-level alphabet");

    [Fact]
    public void Merges_naming_unknown_symbols() =>
        Rejects("""{"a": 0, "b": 1, "ab": 2}""", "#version: 0.2\na c\n", "line 2: merge 'a c' names 'c'", "merges.txt");

    [Fact]
    public void Merges_whose_result_is_not_in_the_vocabulary() =>
        Rejects("""{"a": 0, "b": 1}""", "a b\n", "names 'ab'", "merges.txt");

    [Fact]
    public void Duplicate_merges() =>
        Rejects("""{"a": 0, "b": 1, "ab": 2}""", "a b\na b\n", "line 2: merge 'a b' is already listed on line 1", "merges.txt");

    [Fact]
    public void Malformed_merge_lines() => Rejects("""{"a": 0, "b": 1, "ab": 2}""", "a b c\n", "two symbols separated by one space", "merges.txt");

    [Fact]
    public void Vocab_without_merges_is_an_error_not_a_silent_character_tokenizer()
    {
        File.WriteAllText(_temp.File("vocab.json"), """{"a": 0}""");
        var error = Assert.ThrowsAny<ModelFormatException>(() => Gpt2Tokenizer.TryLoad(_temp.Path));
        Assert.Equal(_temp.File("merges.txt"), error.FilePath);
    }

    [Fact]
    public void Control_characters_and_nul_are_ordinary_bytes()
    {
        var tokenizer = Gpt2Tokenizer.TryLoad(Paths.Model("gpt2-mini"))!;
        const string text = "a\0b\u0001c\u001b[0m\u007f\r\n";
        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [Fact]
    public void Characters_a_vocabulary_cannot_represent_are_skipped()
    {
        // shakespeare-char has 65 characters; its tokenizer drops the others (documented behaviour).
        var tokenizer = Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!;
        Assert.Equal(tokenizer.Encode("abc"), tokenizer.Encode("aé😀b\tc"));
    }

    private Gpt2Tokenizer WithAddedTokens(string addedTokens)
    {
        File.WriteAllText(_temp.File("vocab.json"), """{"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}""");
        File.WriteAllText(_temp.File("merges.txt"), "a b\n");
        File.WriteAllText(_temp.File(Gpt2Tokenizer.AddedTokensFile), addedTokens);
        return Gpt2Tokenizer.TryLoad(_temp.Path)!;
    }

    [Fact]
    public void Added_tokens_follow_the_vocabulary_and_are_special()
    {
        // As a fine-tune saves them: a pad token and another, after vocab.json's ids; a repeated vocab entry is allowed.
        var tokenizer = WithAddedTokens("""{"[SEP]": 5, "<|pad|>": 4, "<|endoftext|>": 3}""");
        Assert.Equal(6, tokenizer.VocabSize);
        Assert.Equal(4, tokenizer.SpecialTokens["<|pad|>"]);
        Assert.Equal(5, tokenizer.SpecialTokens["[SEP]"]);
        Assert.Equal("ab<|pad|>[SEP]", tokenizer.Decode([2, 4, 5]));
        Assert.Equal([2, 4, 0, 5], tokenizer.Encode("ab<|pad|>a[SEP]", allowSpecialTokens: true));
        // Not allowed, they are text like any other (here only their a and b are in this small vocabulary).
        Assert.DoesNotContain(4, tokenizer.Encode("ab<|pad|>"));
    }

    [Theory]
    [InlineData("""{"<|pad|>": 5}""", "<|pad|>: ids must continue vocab.json's 0..3 without gaps or repeats: expected 4, found 5")]
    [InlineData("""{"<|pad|>": 4, "[SEP]": 4}""", "[SEP]: ids must continue vocab.json's 0..3 without gaps or repeats: expected 5, found 4")]
    [InlineData("""{"<|pad|>": 2}""", "<|pad|>: id 2 is already vocab.json's id of another token")]
    [InlineData("""{"ab": 4}""", "ab: id 4, but vocab.json gives this token id 2")]
    [InlineData("""{"<|pad|>": -1}""", "<|pad|>: id must be a non-negative integer")]
    [InlineData("""{"": 4}""", "id 4 names an empty token")]
    [InlineData("""["<|pad|>"]""", "must be a JSON object of token to id")]
    public void Malformed_added_tokens_name_the_file_and_the_token(string addedTokens, string expected)
    {
        var error = Assert.ThrowsAny<ModelFormatException>(() => WithAddedTokens(addedTokens));
        Assert.Equal(_temp.File(Gpt2Tokenizer.AddedTokensFile), error.FilePath);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void A_tokenizer_padded_to_a_larger_model_decodes_the_extra_ids_to_nothing()
    {
        var tokenizer = Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!;
        var padded = tokenizer.PaddedTo(128);
        Assert.Equal(128, padded.VocabSize);
        Assert.Equal(tokenizer.Decode([20, 21]), padded.Decode([20, 100, 21, 127]));
        Assert.Equal(tokenizer.Encode("ROMEO: what"), padded.Encode("ROMEO: what"));
        Assert.Same(tokenizer, tokenizer.PaddedTo(tokenizer.VocabSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.PaddedTo(tokenizer.VocabSize - 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.PaddedTo(int.MaxValue));
    }

    [Fact]
    public void Decoding_an_id_outside_the_vocabulary_is_an_argument_error()
    {
        var tokenizer = Gpt2Tokenizer.TryLoad(Paths.Model("shakespeare-char"))!;
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([1, 66]));
        Assert.Contains("[0, 66)", error.Message);
    }
}
