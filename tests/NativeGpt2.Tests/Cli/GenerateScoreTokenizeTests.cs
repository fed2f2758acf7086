using System.Text.Json;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Cli;

public class GenerateScoreTokenizeTests
{
    [Fact]
    public void Generate_uses_the_bundled_model_and_streams_prompt_and_continuation()
    {
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:\n", "--greedy", "--max-new-tokens", "40");
        Assert.Equal(CliApp.Success, result.ExitCode);
        var expected = Models.Get("shakespeare-char").Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 40 }).Text;
        Assert.Equal("ROMEO:\n" + expected + Environment.NewLine, result.Out);
    }

    [Fact]
    public void Generate_continues_the_text_of_a_prompt_file_or_of_standard_input()
    {
        // A prompt of several lines, with a UTF-8 byte-order mark a Windows editor may write: the text alone is continued.
        using var directory = new TempDirectory();
        const string Prompt = "ROMEO:\nWhat, ho! apothecary!\n\nJULIET:\n";
        var path = directory.File("prompt.txt");
        File.WriteAllBytes(path, [0xEF, 0xBB, 0xBF, .. System.Text.Encoding.UTF8.GetBytes(Prompt)]);
        var inline = CliRunner.Run("generate", "--prompt", Prompt, "--greedy", "--max-new-tokens", "30");

        var fromFile = CliRunner.Run("generate", "--prompt-file", path, "--greedy", "--max-new-tokens", "30");
        var fromInput = CliRunner.RunWithInput(Prompt, "generate", "--prompt-file", "-", "--greedy", "--max-new-tokens", "30");

        Assert.Equal(CliApp.Success, inline.ExitCode);
        Assert.StartsWith(Prompt, inline.Out);
        Assert.Equal(inline.Out, fromFile.Out);
        Assert.Equal(inline.Out, fromInput.Out);
    }

    [Fact]
    public void Generate_json_prints_each_choice_with_its_ids_and_finish_reason_when_generation_ends()
    {
        var model = Models.Get("shakespeare-char");
        var greedy = new GenerationOptions { Greedy = true, MaxNewTokens = 30 };
        var expected = model.Generate("ROMEO:", greedy);
        var sampled = new GenerationOptions { MaxNewTokens = 40, Seed = 3, StopStrings = ["\n\n"] };
        var expectedSequences = model.GenerateSequences("JULIET:", 3, sampled);

        var one = CliRunner.Run("generate", "--prompt", "ROMEO:", "--greedy", "--max-new-tokens", "30", "--json");
        var three = CliRunner.Run("generate", "--prompt", "JULIET:", "--seed", "3", "--max-new-tokens", "40", "--stop", "\n\n", "--num-return-sequences", "3", "--json");

        Assert.Equal(CliApp.Success, one.ExitCode);
        var json = JsonDocument.Parse(one.Out).RootElement;
        Assert.Equal("ROMEO:", json.GetProperty("prompt").GetString());
        Assert.Equal(expected.PromptIds.Count, json.GetProperty("prompt_tokens").GetInt32());
        var choice = Assert.Single(json.GetProperty("choices").EnumerateArray());
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal(expected.GeneratedIds, choice.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()));
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());

        Assert.Equal(CliApp.Success, three.ExitCode);
        var choices = JsonDocument.Parse(three.Out).RootElement.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(expectedSequences.Select(r => r.Text), choices.Select(c => c.GetProperty("text").GetString()));
        Assert.Equal(expectedSequences.Select(r => r.FinishReason == FinishReason.StopString ? "stop_string" : r.FinishReason == FinishReason.Length ? "length" : "end_of_text"),
            choices.Select(c => c.GetProperty("finish_reason").GetString()));
    }

    [Theory]
    [InlineData(new string[0], "error: give the prompt as exactly one of --prompt TEXT or --prompt-file PATH")]
    [InlineData(new[] { "--prompt", "ROMEO:", "--prompt-file", "-" }, "error: give the prompt as exactly one of --prompt TEXT or --prompt-file PATH")]
    [InlineData(new[] { "--prompt-file", "" }, "error: --prompt-file: give a file path, or - for standard input")]
    public void Generate_takes_exactly_one_prompt(string[] prompt, string error)
    {
        var result = CliRunner.Run(["generate", "--model", "/no/such/model", .. prompt]);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Equal(error, result.Error.Trim());
    }

    [Fact]
    public void Generate_refuses_a_prompt_file_that_is_not_text_naming_it()
    {
        using var directory = new TempDirectory();
        var latin1 = directory.File("latin1.txt");
        File.WriteAllBytes(latin1, [.. System.Text.Encoding.UTF8.GetBytes("ROMEO: caf"), 0xE9]);

        var refused = CliRunner.Run("generate", "--prompt-file", latin1, "--max-new-tokens", "5");
        var missing = CliRunner.Run("generate", "--prompt-file", directory.File("missing.txt"), "--max-new-tokens", "5");

        Assert.Equal(CliApp.BadInput, refused.ExitCode);
        Assert.Equal($"error: {latin1}: not UTF-8 text (byte 10 of 11 is 0xE9); generate reads UTF-8, or UTF-16 with a byte-order mark", refused.Error.Trim());
        Assert.Equal(CliApp.BadInput, missing.ExitCode);
        Assert.Contains(directory.File("missing.txt"), missing.Error);
    }

    [Fact]
    public void Generate_passes_every_sampling_option_through()
    {
        string[] args = ["generate", "--model", Paths.Model("shakespeare-char"), "--prompt", "JULIET:", "--max-new-tokens", "50",
            "--temperature", "0.7", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.05", "--repetition-penalty", "1.2", "--presence-penalty", "0.4",
            "--frequency-penalty", "-0.3", "--logit-bias", "1=-100", "--logit-bias", " 7 = 2.5", "--seed", "17", "--stop", "\n\n", "--stop", "xyz"];
        var first = CliRunner.Run(args);
        Assert.Equal(CliApp.Success, first.ExitCode);
        var options = new GenerationOptions
        {
            MaxNewTokens = 50, Temperature = 0.7f, TopK = 20, TopP = 0.9f, MinP = 0.05f, RepetitionPenalty = 1.2f, Seed = 17, StopStrings = ["\n\n", "xyz"],
            PresencePenalty = 0.4f, FrequencyPenalty = -0.3f, LogitBias = new Dictionary<int, float> { [1] = -100, [7] = 2.5f },
        };
        Assert.Equal("JULIET:" + Models.Get("shakespeare-char").Generate("JULIET:", options).Text + Environment.NewLine, first.Out);
        Assert.Equal(first.Out, CliRunner.Run(args).Out);
    }

    [Theory]
    [InlineData("--top-p", "1.5", "--top-p must be in (0, 1]")]
    [InlineData("--top-k", "-1", "--top-k must be >= 0")]
    [InlineData("--temperature", "NaN", "--temperature must be a finite number >= 0")]
    [InlineData("--max-new-tokens", "0", "--max-new-tokens must be at least 1")]
    [InlineData("--repetition-penalty", "0", "--repetition-penalty must be a finite number > 0")]
    [InlineData("--presence-penalty", "2.5", "--presence-penalty must be in [-2, 2]")]
    [InlineData("--frequency-penalty", "-3", "--frequency-penalty must be in [-2, 2]")]
    [InlineData("--logit-bias", "5", "--logit-bias: '5' is not ID=BIAS")]
    [InlineData("--logit-bias", "x=1", "--logit-bias: 'x=1' is not ID=BIAS")]
    [InlineData("--logit-bias", "5=101", "--logit-bias: the bias of token 5 must be in [-100, 100]")]
    public void Generate_rejects_out_of_range_options_as_usage_errors(string option, string value, string message)
    {
        var result = CliRunner.Run("generate", "--prompt", "x", option, value);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.StartsWith($"error: {message}", result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
    }

    [Fact]
    public void Generate_beyond_the_context_is_a_usage_error()
    {
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "--max-new-tokens", "300");
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains("context length of 256", result.Error);
        Assert.Equal(CliApp.Success, CliRunner.Run("generate", "--prompt", "ROMEO:", "--max-new-tokens", "300", "--sliding-window", "--seed", "1").ExitCode);
    }

    [Fact]
    public void Generate_takes_the_n_gram_and_minimum_length_rules()
    {
        var expected = Models.Get("shakespeare-char").Generate("ROMEO:", new GenerationOptions { Greedy = true, MaxNewTokens = 50, NoRepeatNgramSize = 2, MinNewTokens = 3 });
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "--greedy", "-n", "50", "--no-repeat-ngram-size", "2", "--min-new-tokens", "3");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Equal("ROMEO:" + expected.Text + Environment.NewLine, result.Out);

        var refused = CliRunner.Run("generate", "--prompt", "ROMEO:", "-n", "5", "--min-new-tokens", "6");
        Assert.Equal(CliApp.UsageError, refused.ExitCode);
        Assert.Equal("error: --min-new-tokens must be in [0, 5] (--max-new-tokens; 0 means none), got 6", refused.Error.Trim());
    }

    [Fact]
    public void Generate_searches_beams_and_prints_the_best_sequence()
    {
        var expected = Models.Get("shakespeare-char").Generate("ROMEO:", new GenerationOptions { NumBeams = 3, MaxNewTokens = 40, LengthPenalty = 0.8f });
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "-n", "40", "--num-beams", "3", "--length-penalty", "0.8");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Equal("ROMEO:" + expected.Text + Environment.NewLine, result.Out);

        var refused = CliRunner.Run("generate", "--prompt", "ROMEO:", "--num-beams", "2", "--stop", "\n");
        Assert.Equal(CliApp.UsageError, refused.ExitCode);
        Assert.Equal("error: --stop does not apply to beam search (--num-beams 2): leave it unset, or use --num-beams 1", refused.Error.Trim());

        // Hugging Face's early_stopping values; the modes themselves are checked against the search written out (BeamSearchTests).
        var never = Models.Get("shakespeare-char").Generate("ROMEO:", new GenerationOptions { NumBeams = 3, MaxNewTokens = 20, EarlyStopping = BeamStopping.Never });
        var stopped = CliRunner.Run("generate", "--prompt", "ROMEO:", "-n", "20", "--num-beams", "3", "--early-stopping", "never");
        Assert.Equal("ROMEO:" + never.Text + Environment.NewLine, stopped.Out);
        var unknown = CliRunner.Run("generate", "--prompt", "ROMEO:", "--num-beams", "3", "--early-stopping", "soon");
        Assert.Equal(CliApp.UsageError, unknown.ExitCode);
        Assert.Contains("'soon' not recognized. Must be one of", unknown.Error);
    }

    [Fact]
    public void Generate_prints_several_sequences_separated_by_dashes()
    {
        var options = new GenerationOptions { NumBeams = 4, MaxNewTokens = 25 };
        var expected = Models.Get("shakespeare-char").GenerateSequences("ROMEO:", 3, options);
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "-n", "25", "--num-beams", "4", "--num-return-sequences", "3");
        Assert.Equal(CliApp.Success, result.ExitCode);
        var nl = Environment.NewLine;
        Assert.Equal(string.Join(nl + "---" + nl, expected.Select(r => "ROMEO:" + r.Text)) + nl, result.Out);

        var refused = CliRunner.Run("generate", "--prompt", "ROMEO:", "--num-beams", "2", "--num-return-sequences", "3");
        Assert.Equal(CliApp.UsageError, refused.ExitCode);
        Assert.Equal("error: --num-return-sequences must be in [1, 2]: beam search (--num-beams 2) finds at most --num-beams sequences, got 3", refused.Error.Trim());
    }

    [Fact]
    public void Generate_runs_contrastive_search_with_penalty_alpha_and_top_k()
    {
        var expected = Models.Get("shakespeare-char").Generate("ROMEO:", new GenerationOptions { PenaltyAlpha = 0.6f, TopK = 4, MaxNewTokens = 40 });
        var result = CliRunner.Run("generate", "--prompt", "ROMEO:", "-n", "40", "--penalty-alpha", "0.6", "--top-k", "4");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Equal("ROMEO:" + expected.Text + Environment.NewLine, result.Out);

        var typical = CliRunner.Run("generate", "--prompt", "ROMEO:", "--typical-p", "0");
        Assert.Equal(CliApp.UsageError, typical.ExitCode);
        Assert.Equal("error: --typical-p must be in (0, 1] (1 means no limit), got 0", typical.Error.Trim());

        var refused = CliRunner.Run("generate", "--prompt", "ROMEO:", "--penalty-alpha", "0.6");
        Assert.Equal(CliApp.UsageError, refused.ExitCode);
        Assert.Equal("error: --top-k: contrastive search (--penalty-alpha 0.6) compares --top-k candidates: --top-k must be in [2, 32], got 0", refused.Error.Trim());
    }

    [Fact]
    public void Score_prints_tokens_mean_nll_and_perplexity_and_json()
    {
        using var temp = new TempDirectory();
        var file = temp.File("text.txt");
        File.WriteAllText(file, Paths.ShakespeareValidationText[..700]);
        var expected = Models.Get("shakespeare-char").Score(File.ReadAllText(file), new ScoreOptions { Stride = 128 });

        var json = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", file, "--stride", "128", "--json");
        Assert.Equal(CliApp.Success, json.ExitCode);
        var parsed = JsonDocument.Parse(json.Out).RootElement;
        Assert.Equal(["tokens", "mean_nll", "perplexity"], parsed.EnumerateObject().Select(p => p.Name));
        Assert.Equal(699, parsed.GetProperty("tokens").GetInt32());
        Assert.Equal(expected.MeanNll, parsed.GetProperty("mean_nll").GetDouble(), 12);
        Assert.Equal(expected.Perplexity, parsed.GetProperty("perplexity").GetDouble(), 12);

        var text = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", file, "--stride", "128");
        Assert.Matches(@"tokens\s+699", text.Out);
        Assert.Matches(@"mean NLL\s+\d\.\d{5} nats/token", text.Out);
        Assert.Matches(@"perplexity\s+\d+\.\d{4}", text.Out);
    }

    [Fact]
    public void Score_lists_each_token_with_its_likeliest_alternatives_when_asked()
    {
        using var temp = new TempDirectory();
        var file = temp.File("text.txt");
        File.WriteAllText(file, "ROMEO:\nWhat, ho!");
        var expected = Models.Get("shakespeare-char").Score("ROMEO:\nWhat, ho!", new ScoreOptions { TopLogProbs = 3 }).Tokens!;

        var json = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", file, "--top", "3", "--json");
        Assert.Equal(CliApp.Success, json.ExitCode);
        var listed = JsonDocument.Parse(json.Out).RootElement.GetProperty("per_token").EnumerateArray().ToArray();
        Assert.Equal(expected.Select(t => t.Id), listed.Select(t => t.GetProperty("id").GetInt32()));
        Assert.Equal("ROMEO:\nWhat, ho!"[1..], string.Concat(listed.Select(t => t.GetProperty("text").GetString())));
        for (var i = 0; i < listed.Length; i++)
        {
            Assert.Equal(expected[i].LogProb, listed[i].GetProperty("logprob").GetDouble(), 12);
            Assert.Equal(expected[i].Top.Select(a => a.Id), listed[i].GetProperty("top").EnumerateArray().Select(a => a.GetProperty("id").GetInt32()));
        }

        // The table: a line per token after the summary, the token quoted so that the line break shows.
        var text = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", file, "--per-token");
        var lines = text.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3 + expected.Count, lines.Length);
        Assert.Matches(@"^\s+6  ""\\n""\s+-\d\.\d{4}$", lines[3 + 5]);

        var refused = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", file, "--top", "21");
        Assert.Equal(CliApp.UsageError, refused.ExitCode);
        Assert.Equal("error: --top must be in [1, 20], got 21", refused.Error.Trim());
    }

    [Fact]
    public void Score_reads_standard_input_for_a_file_named_dash()
    {
        var text = Paths.ShakespeareValidationText[..500];
        var expected = Models.Get("shakespeare-char").Score(text, new ScoreOptions { Stride = 128 });
        var result = CliRunner.RunWithInput(text, "score", "--model", Paths.Model("shakespeare-char"), "--file", "-", "--stride", "128", "--json");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Equal(expected.MeanNll, JsonDocument.Parse(result.Out).RootElement.GetProperty("mean_nll").GetDouble(), 12);

        var empty = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", "");
        Assert.Equal(CliApp.UsageError, empty.ExitCode);
        Assert.Equal("error: --file: give a file path, or - for standard input", empty.Error.Trim());
    }

    [Fact]
    public void Score_of_a_missing_file_is_bad_input()
    {
        var result = CliRunner.Run("score", "--model", Paths.Model("shakespeare-char"), "--file", "/no/such/file.txt");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains("/no/such/file.txt", result.Error);
    }

    [Fact]
    public void Score_reads_UTF8_or_a_byte_order_mark_and_refuses_other_bytes_naming_where()
    {
        // Bytes that are not UTF-8 would become U+FFFD and be scored as such: an error instead, as Python's open() gives.
        using var directory = new TempDirectory();
        const string Text = "ROMEO:\nWhat, ho! apothecary!";
        string[] score = ["score", "--model", Paths.Model("shakespeare-char"), "--json", "--file"];
        var utf8 = CliRunner.Run([.. score, Write("utf8.txt", System.Text.Encoding.UTF8.GetBytes(Text))]);
        Assert.Equal(CliApp.Success, utf8.ExitCode);
        foreach (var encoding in new System.Text.Encoding[] { new System.Text.UTF8Encoding(true), System.Text.Encoding.Unicode, System.Text.Encoding.BigEndianUnicode, System.Text.Encoding.UTF32 })
        {
            var marked = CliRunner.Run([.. score, Write($"{encoding.WebName}.txt", [.. encoding.GetPreamble(), .. encoding.GetBytes(Text)])]);
            Assert.Equal(utf8.Out, marked.Out);
        }

        var latin1 = Write("latin1.txt", [.. System.Text.Encoding.UTF8.GetBytes("ROMEO: caf"), 0xE9, .. System.Text.Encoding.UTF8.GetBytes(" au lait")]);
        var refused = CliRunner.Run([.. score, latin1]);
        Assert.Equal(CliApp.BadInput, refused.ExitCode);
        Assert.Equal($"error: {latin1}: not UTF-8 text (byte 10 of 19 is 0xE9); score reads UTF-8, or UTF-16 with a byte-order mark", refused.Error.Trim());
        var cut = CliRunner.RunWithInput(null, [.. score, Write("cut.txt", [.. System.Text.Encoding.UTF8.GetBytes("ROMEO: caf"), 0xC3])]);
        Assert.Contains("not UTF-8 text (byte 10 of 11 is 0xC3)", cut.Error);

        string Write(string name, byte[] bytes)
        {
            var path = Path.Combine(directory.Path, name);
            File.WriteAllBytes(path, bytes);
            return path;
        }
    }

    [Fact]
    public void Tokenize_and_detokenize_round_trip()
    {
        var tokens = CliRunner.Run("tokenize", "--model", Paths.Model("gpt2-mini"), "--text", "Hello, world!");
        Assert.Equal("15496,11,995,0", tokens.Out.Trim());
        var json = CliRunner.Run("tokenize", "--model", Paths.Model("gpt2-mini"), "--text", "Hi<|endoftext|>there", "--json", "--allow-special");
        Assert.Equal("{\"ids\":[17250,50256,8117]}", json.Out.Trim());
        var text = CliRunner.Run("detokenize", "--model", Paths.Model("gpt2-mini"), "--ids", "15496,11,995,0");
        Assert.Equal("Hello, world!", text.Out.TrimEnd('\r', '\n'));
        // As tokenize --json and Python print them.
        Assert.Equal(text.Out, CliRunner.Run("detokenize", "--model", Paths.Model("gpt2-mini"), "--ids", "[15496, 11, 995, 0]").Out);
        Assert.Equal("error: --ids: give at least one token id, e.g. 1,2,3", CliRunner.Run("detokenize", "--model", Paths.Model("gpt2-mini"), "--ids", "[]").Error.Trim());
        // A synthetic model uses the original GPT-2 vocabulary.
        Assert.Equal("15496,11,995,0", CliRunner.Run("tokenize", "--model", "synthetic:gpt2-xl", "--text", "Hello, world!").Out.Trim());
    }

    [Fact]
    public void Tokenize_reads_a_file_or_standard_input_and_counts_when_asked()
    {
        using var directory = new TempDirectory();
        var text = Paths.ShakespeareValidationText[..2000];
        var path = directory.File("text.txt");
        File.WriteAllText(path, text);
        var expected = Models.Get("gpt2-mini").Tokenizer!.Encode(text);
        string[] tokenize = ["tokenize", "--model", Paths.Model("gpt2-mini")];

        var inline = CliRunner.Run([.. tokenize, "--text", text]);
        var fromFile = CliRunner.Run([.. tokenize, "--file", path]);
        var fromInput = CliRunner.RunWithInput(text, [.. tokenize, "--file", "-"]);
        var counted = CliRunner.Run([.. tokenize, "--file", path, "--count"]);

        Assert.Equal(string.Join(",", expected), inline.Out.Trim());
        Assert.Equal(inline.Out, fromFile.Out);
        Assert.Equal(inline.Out, fromInput.Out);
        Assert.Equal(expected.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), counted.Out.Trim());
    }

    [Fact]
    public void Tokenize_pieces_shows_each_tokens_text()
    {
        const string Text = "Hello, world!\n  café";
        var tokenizer = Models.Get("gpt2-mini").Tokenizer!;
        var ids = tokenizer.Encode(Text);

        var lines = CliRunner.Run("tokenize", "--model", Paths.Model("gpt2-mini"), "--text", Text, "--pieces");
        var json = CliRunner.Run("tokenize", "--model", Paths.Model("gpt2-mini"), "--text", Text, "--pieces", "--json");

        Assert.Equal(CliApp.Success, lines.ExitCode);
        var rows = lines.Out.TrimEnd().Split('\n').Select(l => l.Trim().Split("  ", 2)).ToArray();
        Assert.Equal(ids, rows.Select(r => int.Parse(r[0], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Equal(["\"Hello\"", "\",\"", "\" world\"", "\"!\"", "\"\\n\""], rows.Take(5).Select(r => r[1]));
        var root = JsonDocument.Parse(json.Out).RootElement;
        Assert.Equal(ids, root.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()));
        Assert.Equal(Text, string.Concat(root.GetProperty("pieces").EnumerateArray().Select(p => p.GetString())));
    }

    [Theory]
    [InlineData(new string[0], "error: give the text as exactly one of --text TEXT or --file PATH")]
    [InlineData(new[] { "--text", "x", "--file", "-" }, "error: give the text as exactly one of --text TEXT or --file PATH")]
    [InlineData(new[] { "--text", "x", "--json", "--count" }, "error: --count prints the number alone: give it without --json and --pieces")]
    [InlineData(new[] { "--text", "x", "--pieces", "--count" }, "error: --count prints the number alone: give it without --json and --pieces")]
    public void Tokenize_takes_exactly_one_text_and_one_output_form(string[] arguments, string error)
    {
        // No such model: the usage error comes before any loading.
        var result = CliRunner.Run(["tokenize", "--model", "/no/such/model", .. arguments]);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Equal(error, result.Error.Trim());
    }

    [Fact]
    public void Detokenize_rejects_ids_outside_the_vocabulary()
    {
        var result = CliRunner.Run("detokenize", "--model", Paths.Model("shakespeare-char"), "--ids", "1,66");
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains("[0, 66)", result.Error);
    }

    [Fact]
    public void Tokenize_rejects_an_unknown_synthetic_name()
    {
        var result = CliRunner.Run("tokenize", "--model", "synthetic:gpt3", "--text", "x");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains("unknown synthetic model", result.Error);
    }

    [Fact]
    public void Tokenize_needs_a_model_with_a_tokenizer()
    {
        var result = CliRunner.Run("tokenize", "--model", Paths.Model("tiny"), "--text", "x");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Contains("no tokenizer", result.Error);
    }

    [Fact]
    public void Generate_on_an_ids_only_model_says_which_command_takes_ids()
    {
        var result = CliRunner.Run("generate", "--model", Paths.Model("tiny"), "--backend", "cpu", "--prompt", "x");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        var line = Assert.Single(result.Error.Trim().Split('\n'));
        Assert.Equal($"error: model '{Paths.Model("tiny")}' has no tokenizer (no vocab.json and merges.txt, nor tokenizer.json), so --prompt cannot be read; 'nativegpt2 forward --ids' runs it on token ids", line);
    }
}
