using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NativeGpt2.Server;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Server;

/// <summary>The endpoints over raw HTTP: the legacy completions API, token endpoints, and every way a request can be refused.</summary>
public class OpenAIEndpointTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private static Gpt2CausalLM Shakespeare => Models.Get("shakespeare-char");

    private HttpClient Http => new() { BaseAddress = server.BaseAddress };

    private async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(string path, string json)
    {
        using var response = await Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    [Fact]
    public async Task A_greedy_completion_is_the_libraries_continuation()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"model":"any","prompt":"ROMEO:\n","max_tokens":40,"temperature":0}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 40 });
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.Equal(7, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(40, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Token_id_prompts_seeds_and_stop_sequences_work_as_in_the_library()
    {
        var ids = Shakespeare.Tokenizer!.Encode("JULIET:\n");
        var (_, body) = await PostAsync("/v1/completions",
            $$"""{"prompt":[{{string.Join(",", ids)}}],"max_tokens":60,"temperature":0.8,"top_p":0.9,"seed":7,"stop":["\n\n"]}""");
        var expected = Shakespeare.GenerateIds(ids, new GenerationOptions { MaxNewTokens = 60, Temperature = 0.8f, TopP = 0.9f, Seed = 7 ^ 0, StopStrings = ["\n\n"] });
        var text = Shakespeare.Tokenizer.Decode(expected.GeneratedIds);
        var cut = text.IndexOf("\n\n", StringComparison.Ordinal);
        Assert.Equal(cut >= 0 ? text[..cut] : text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(cut >= 0 ? "stop" : "length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Completions_take_OpenAIs_penalties_and_logit_bias_as_the_library_does()
    {
        var ids = Shakespeare.Tokenizer!.Encode("z");
        var (status, body) = await PostAsync("/v1/completions",
            $$$"""{"prompt":"ROMEO:\n","max_tokens":30,"temperature":0.9,"seed":5,"min_p":0.02,"presence_penalty":0.5,"frequency_penalty":1.25,"logit_bias":{"{{{ids[0]}}}":-100}}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = Shakespeare.Generate("ROMEO:\n", new GenerationOptions
        {
            MaxNewTokens = 30, Temperature = 0.9f, Seed = 5, MinP = 0.02f, PresencePenalty = 0.5f, FrequencyPenalty = 1.25f,
            LogitBias = new Dictionary<int, float> { [ids[0]] = -100 },
        });
        Assert.Equal(expected.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.DoesNotContain(ids[0], expected.GeneratedIds);
    }

    [Fact]
    public async Task Completion_log_probabilities_list_each_token_with_its_alternatives()
    {
        var (_, body) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:\n","max_tokens":5,"temperature":0,"logprobs":3}""");
        var logprobs = body.GetProperty("choices")[0].GetProperty("logprobs");
        var tokens = logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()).ToArray();
        Assert.Equal(body.GetProperty("choices")[0].GetProperty("text").GetString(), string.Concat(tokens));
        var top = logprobs.GetProperty("top_logprobs");
        for (var i = 0; i < 5; i++)
        {
            var alternatives = top[i].EnumerateObject().ToArray();
            Assert.Equal(3, alternatives.Length);
            // Greedy: the chosen token is the first alternative.
            Assert.Equal(tokens[i], alternatives[0].Name);
            Assert.Equal(logprobs.GetProperty("token_logprobs")[i].GetDouble(), alternatives[0].Value.GetDouble());
        }
        Assert.Equal(7, logprobs.GetProperty("text_offset")[0].GetInt32());
    }

    [Fact]
    public async Task Echo_with_no_new_tokens_scores_the_prompt_as_evaluation_harnesses_ask()
    {
        const string Prompt = "ROMEO:\nWhat light through yonder window breaks?";
        var (status, body) = await PostAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 0, echo = true, logprobs = 2 }));
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(Prompt, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var ids = Shakespeare.Tokenizer!.Encode(Prompt);
        Assert.Equal(ids.Length, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(0, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var logprobs = choice.GetProperty("logprobs");
        var tokens = logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()).ToArray();
        Assert.Equal(Prompt, string.Concat(tokens));
        Assert.Equal(Enumerable.Range(0, ids.Length), logprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()));
        // Nothing predicts the first token; every other is scored after the ones before it, as the library scores it.
        Assert.Equal(JsonValueKind.Null, logprobs.GetProperty("token_logprobs")[0].ValueKind);
        Assert.Equal(JsonValueKind.Null, logprobs.GetProperty("top_logprobs")[0].ValueKind);
        var scored = Shakespeare.ScoreIds(ids).TokenLogProbs;
        for (var i = 1; i < ids.Length; i++)
        {
            Assert.Equal(scored[i - 1], logprobs.GetProperty("token_logprobs")[i].GetDouble(), 4);
            var top = logprobs.GetProperty("top_logprobs")[i].EnumerateObject().ToArray();
            Assert.Equal(2, top.Length);
            Assert.True(top[0].Value.GetDouble() >= logprobs.GetProperty("token_logprobs")[i].GetDouble());
        }
    }

    [Fact]
    public async Task Echo_puts_the_prompt_before_the_continuation_whole_or_streamed()
    {
        var expected = Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 12, LogProbs = 1 });
        var (_, body) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:\n","max_tokens":12,"temperature":0,"echo":true,"logprobs":1}""");
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("ROMEO:\n" + expected.Text, choice.GetProperty("text").GetString());
        var logprobs = choice.GetProperty("logprobs");
        Assert.Equal(7 + 12, logprobs.GetProperty("tokens").GetArrayLength());
        // The continuation's columns are a plain completion's: its offsets go on from the end of the prompt.
        for (var i = 0; i < 12; i++)
        {
            Assert.Equal(expected.LogProbs![i].LogProb, logprobs.GetProperty("token_logprobs")[7 + i].GetDouble(), 9);
            Assert.Equal(7 + i, logprobs.GetProperty("text_offset")[7 + i].GetInt32());
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt":"ROMEO:\n","max_tokens":12,"temperature":0,"echo":true,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var texts = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()).ToArray();
        Assert.Equal("ROMEO:\n", texts[0]);
        Assert.Equal("ROMEO:\n" + expected.Text, string.Concat(texts));
    }

    [Fact]
    public async Task Echo_splits_a_multibyte_prompt_into_tokens_whose_offsets_add_up_to_its_text()
    {
        await using var app = await ServerFixture.StartAsync(model: "gpt2-mini");
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        const string Prompt = "naïve café, 日本語 and 🙂🙂 ok";
        using var response = await http.PostAsync("/v1/completions",
            new StringContent(JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = 0, echo = true, logprobs = 0 }), Encoding.UTF8, "application/json"));
        var choice = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0];
        Assert.Equal(Prompt, choice.GetProperty("text").GetString());
        var logprobs = choice.GetProperty("logprobs");
        var offsets = logprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToArray();
        var tokens = logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
        Assert.Equal(tokens.Length, offsets.Length);
        Assert.True(tokens.Length > Prompt.Split(' ').Length, "the emoji and the CJK characters take several tokens");
        Assert.Equal(0, offsets[0]);
        for (var i = 1; i < offsets.Length; i++) Assert.InRange(offsets[i], offsets[i - 1], Prompt.Length);
        // A token that holds whole characters starts where its text stands in the prompt.
        for (var i = 0; i < tokens.Length; i++)
        {
            if (!tokens[i].Contains('\uFFFD')) Assert.Equal(tokens[i], Prompt.Substring(offsets[i], tokens[i].Length));
        }
        Assert.Equal(JsonValueKind.Null, logprobs.GetProperty("token_logprobs")[0].ValueKind);
        Assert.All(logprobs.GetProperty("top_logprobs").EnumerateArray().Skip(1), top => Assert.Empty(top.EnumerateObject()));
    }

    [Fact]
    public async Task Several_prompts_are_several_choices_each_as_the_prompt_alone_gives_it()
    {
        var prompts = new[] { "ROMEO:\n", "JULIET:\n", "KING HENRY:\n" };
        var expected = prompts.Select(p => Shakespeare.Generate(p, new GenerationOptions { Greedy = true, MaxNewTokens = 8 })).ToArray();
        var (status, body) = await PostAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = prompts, max_tokens = 8, temperature = 0 }));
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(expected.Select(e => e.Text), choices.Select(c => c.GetProperty("text").GetString()));
        Assert.Equal(expected.Sum(e => e.PromptIds.Count), body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(24, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Token-id prompts, echoed and scored with no new tokens, streamed: a harness's batch of texts to score.
        var ids = prompts.Select(p => Shakespeare.Tokenizer!.Encode(p)).ToArray();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { prompt = ids, max_tokens = 0, echo = true, logprobs = 1, stream = true }), Encoding.UTF8, "application/json"),
        };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        var streamed = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0]).ToArray();
        Assert.Equal([0, 1, 2], streamed.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(prompts, streamed.Select(c => c.GetProperty("text").GetString()));
        for (var p = 0; p < prompts.Length; p++)
        {
            var scored = Shakespeare.ScoreIds(ids[p]).TokenLogProbs;
            var values = streamed[p].GetProperty("logprobs").GetProperty("token_logprobs");
            for (var i = 1; i < ids[p].Length; i++) Assert.Equal(scored[i - 1], values[i].GetDouble(), 4);
        }
    }

    [Fact]
    public async Task A_prompt_of_several_that_does_not_fit_is_named_by_its_index()
    {
        var (status, body) = await PostAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = new[] { "ROMEO:", new string('a', 300) }, max_tokens = 1 }));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("prompt", body.GetProperty("error").GetProperty("param").GetString());
        Assert.EndsWith("(prompt[1])", body.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task N_gram_and_minimum_length_rules_are_taken_as_the_library_takes_them()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:\n","max_tokens":60,"temperature":0,"no_repeat_ngram_size":3,"min_tokens":10}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 60, NoRepeatNgramSize = 3, MinNewTokens = 10 });
        Assert.Equal(expected.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.NotEqual(Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 60 }).Text, expected.Text);
    }

    [Fact]
    public async Task Typical_p_is_taken_as_the_library_takes_it()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:\n","max_tokens":40,"temperature":1.2,"seed":9,"typical_p":0.3}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var options = new GenerationOptions { Temperature = 1.2f, Seed = 9, MaxNewTokens = 40, TypicalP = 0.3f };
        var expected = Shakespeare.Generate("ROMEO:\n", options);
        Assert.Equal(expected.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.NotEqual(Shakespeare.Generate("ROMEO:\n", options with { TypicalP = 1f }).Text, expected.Text);
    }

    [Fact]
    public async Task Best_of_returns_the_n_candidates_with_the_highest_log_probability_per_token()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"prompt":["ROMEO:","JULIET:"],"n":2,"best_of":5,"max_tokens":15,"temperature":1.3,"seed":21}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(choices, c => Assert.Equal(JsonValueKind.Null, c.GetProperty("logprobs").ValueKind));
        var generated = 0;
        foreach (var (prompt, i) in new[] { ("ROMEO:", 0), ("JULIET:", 1) })
        {
            // The five candidates are the draws with seeds 21 … 25; the two with the best mean log-probability return, best first.
            var candidates = Enumerable.Range(0, 5)
                .Select(j => Shakespeare.Generate(prompt, new GenerationOptions { Temperature = 1.3f, Seed = 21 + j, MaxNewTokens = 15, LogProbs = 0 }))
                .ToArray();
            generated += candidates.Sum(c => c.GeneratedIds.Count);
            var best = candidates.Select((c, j) => (c, j)).OrderByDescending(x => x.c.LogProbs!.Average(t => t.LogProb)).ThenBy(x => x.j).Take(2).Select(x => x.c.Text);
            Assert.Equal(best, choices.Skip(2 * i).Take(2).Select(c => c.GetProperty("text").GetString()));
        }
        // Every candidate's tokens are billed; each prompt once.
        Assert.Equal(generated, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(Shakespeare.Tokenizer!.Encode("ROMEO:").Length + Shakespeare.Tokenizer.Encode("JULIET:").Length,
            body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // With logprobs, the chosen candidates show theirs.
        var (_, shown) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:","best_of":3,"max_tokens":5,"seed":2,"logprobs":1}""");
        var choice = Assert.Single(shown.GetProperty("choices").EnumerateArray());
        Assert.Equal(5, choice.GetProperty("logprobs").GetProperty("tokens").GetArrayLength());
    }

    [Fact]
    public async Task Penalty_alpha_runs_contrastive_search_among_top_k_candidates()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:\n","max_tokens":50,"penalty_alpha":0.6,"top_k":4}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = Shakespeare.Generate("ROMEO:\n", new GenerationOptions { PenaltyAlpha = 0.6f, TopK = 4, MaxNewTokens = 50 });
        Assert.Equal(expected.Text, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.NotEqual(Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 50 }).Text, expected.Text);

        var (refused, error) = await PostAsync("/v1/completions", """{"prompt":"x","penalty_alpha":0.6,"top_k":1}""");
        Assert.Equal(HttpStatusCode.BadRequest, refused);
        Assert.Equal("top_k", error.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("contrastive search (penalty_alpha 0.6)", error.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task N_choices_of_each_prompt_draw_with_seed_plus_their_rank()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"prompt":["ROMEO:","JULIET:"],"n":3,"max_tokens":12,"temperature":0.9,"seed":40}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(Enumerable.Range(0, 6), choices.Select(c => c.GetProperty("index").GetInt32()));
        for (var index = 0; index < 6; index++)
        {
            var prompt = index < 3 ? "ROMEO:" : "JULIET:";
            var expected = Shakespeare.Generate(prompt, new GenerationOptions { MaxNewTokens = 12, Temperature = 0.9f, Seed = 40 + index % 3 });
            Assert.Equal(expected.Text, choices[index].GetProperty("text").GetString());
        }
        // Each prompt counts once, each choice's tokens count.
        Assert.Equal(Shakespeare.Tokenizer!.Encode("ROMEO:").Length + Shakespeare.Tokenizer.Encode("JULIET:").Length, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(6 * 12, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // The chat endpoint alike: choice j is what a request with seed + j answers.
        const string Chat = """{"messages":[{"role":"user","content":"Who is there?"}],"max_tokens":10,"temperature":0.8,"seed":SEED,"n":N}""";
        var (_, two) = await PostAsync("/v1/chat/completions", Chat.Replace("SEED", "9").Replace("N", "2"));
        var (_, second) = await PostAsync("/v1/chat/completions", Chat.Replace("SEED", "10").Replace("N", "1"));
        Assert.Equal(2, two.GetProperty("choices").GetArrayLength());
        Assert.Equal(1, two.GetProperty("choices")[1].GetProperty("index").GetInt32());
        Assert.Equal(second.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            two.GetProperty("choices")[1].GetProperty("message").GetProperty("content").GetString());
    }

    /// <summary>Server-sent events of a streamed reply, without the closing [DONE], as JSON.</summary>
    private static async Task<JsonElement[]> StreamAsync(HttpClient http, string path, string json)
    {
        using var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        return [.. events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.Clone())];
    }

    /// <summary>
    /// A request's choices decode side by side, in batches of at most MaxBatchSize: however the batches are cut, each choice
    /// is what it is alone (the same text, log-probabilities and finish), and streamed, each choice's chunks add up to it.
    /// </summary>
    [Fact]
    public async Task Choices_decode_in_batches_and_are_the_same_however_the_batches_are_cut()
    {
        const string Request = """{"prompt":["ROMEO:\n","First Citizen:\nBefore we proceed","O"],"n":2,"max_tokens":30,"temperature":1.1,"seed":8,"stop":"\n","logprobs":1,"echo":true}""";
        var (status, body) = await PostAsync("/v1/completions", Request);
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(6, choices.Length);
        // Cut into one choice a batch, and into batches of 4 and 2.
        foreach (var size in new[] { 1, 4 })
        {
            await using var app = await ServerFixture.StartAsync(batchSize: size);
            using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
            using var response = await http.PostAsync("/v1/completions", new StringContent(Request, Encoding.UTF8, "application/json"));
            var cut = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(body.GetProperty("usage").ToString(), cut.GetProperty("usage").ToString());
            Assert.Equal(choices.Select(c => c.ToString()), cut.GetProperty("choices").EnumerateArray().Select(c => c.ToString()));
        }
        // Each choice as the library streams it alone: prompt i's choice j draws with seed 8 + j.
        var finishes = new HashSet<string>();
        for (var index = 0; index < 6; index++)
        {
            var prompt = new[] { "ROMEO:\n", "First Citizen:\nBefore we proceed", "O" }[index / 2];
            var alone = Shakespeare.Generate(prompt, new GenerationOptions { MaxNewTokens = 30, Temperature = 1.1f, Seed = 8 + index % 2, StopStrings = ["\n"] });
            Assert.Equal(prompt + alone.Text, choices[index].GetProperty("text").GetString());
            finishes.Add(choices[index].GetProperty("finish_reason").GetString()!);
        }
        Assert.Equal(["length", "stop"], finishes.Order());

        // Streamed: the chunks of the choices interleave, each naming its choice; each choice's add up to it, its finish last.
        var chunks = await StreamAsync(Http, "/v1/completions", Request.Replace("\"echo\":true", "\"echo\":true,\"stream\":true"));
        for (var index = 0; index < 6; index++)
        {
            var mine = chunks.Select(c => c.GetProperty("choices")[0]).Where(c => c.GetProperty("index").GetInt32() == index).ToArray();
            Assert.Equal(choices[index].GetProperty("text").GetString(), string.Concat(mine.Select(c => c.GetProperty("text").GetString())));
            Assert.Equal(choices[index].GetProperty("finish_reason").GetString(), mine[^1].GetProperty("finish_reason").GetString());
            Assert.All(mine[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("finish_reason").ValueKind));
        }
        var order = chunks.Select(c => c.GetProperty("choices")[0].GetProperty("index").GetInt32()).ToArray();
        Assert.Contains(order.Zip(order.Skip(1)), pair => pair.First > pair.Second);
    }

    /// <summary>Requests running at once share one batch; each reply is what the library gives its prompt and seed alone.</summary>
    [Fact]
    public async Task Concurrent_requests_share_the_batch_and_each_gets_its_own_continuation()
    {
        var requests = Enumerable.Range(0, 4).Select(i => (Prompt: new[] { "ROMEO:\n", "JULIET:", "O", "First Citizen:\n" }[i], Seed: 30 + i, Tokens: 20 + 7 * i)).ToArray();
        var replies = await Task.WhenAll(requests.Select(r =>
            PostAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = r.Prompt, max_tokens = r.Tokens, seed = r.Seed, temperature = 0.9, logprobs = 1 }))));
        for (var i = 0; i < requests.Length; i++)
        {
            var (prompt, seed, tokens) = requests[i];
            Assert.Equal(HttpStatusCode.OK, replies[i].Status);
            var expected = Shakespeare.Generate(prompt, new GenerationOptions { MaxNewTokens = tokens, Seed = seed, Temperature = 0.9f, LogProbs = 1 });
            var choice = replies[i].Body.GetProperty("choices")[0];
            Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
            Assert.Equal(expected.LogProbs!.Select(t => t.LogProb), choice.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Select(v => v.GetDouble()));
        }
    }

    /// <summary>
    /// Long prompts that join while another request decodes run in parts (here 8 positions a step); every reply is still
    /// what the library gives its prompt and seed alone.
    /// </summary>
    [Fact]
    public async Task Long_prompts_joining_a_busy_batch_run_in_parts_and_each_reply_is_its_own()
    {
        await using var app = await ServerFixture.StartAsync(prefillChunkTokens: 8);
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        var text = Paths.ShakespeareValidationText;
        (string Prompt, int Seed, int Tokens)[] requests = [("R", 1, 200), (text[..150], 2, 40), (text[500..690], 3, 30), (text[1000..1100], 4, 50)];
        async Task<JsonElement> Post((string Prompt, int Seed, int Tokens) r)
        {
            var json = JsonSerializer.Serialize(new { prompt = r.Prompt, max_tokens = r.Tokens, seed = r.Seed, temperature = 0.9 });
            using var response = await http.PostAsync("/v1/completions", new StringContent(json, Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        }
        // The first streams 200 tokens; the long prompts are sent once its first token has come, so they join while it decodes.
        using var streamed = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { prompt = requests[0].Prompt, max_tokens = requests[0].Tokens, seed = requests[0].Seed, temperature = 0.9, stream = true }),
                Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(streamed, HttpCompletionOption.ResponseHeadersRead);
        using var events = new StreamReader(await response.Content.ReadAsStreamAsync());
        var pieces = new StringBuilder();
        async Task<bool> ReadChunk()
        {
            while (await events.ReadLineAsync() is { } line)
            {
                if (line == "data: [DONE]") return false;
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    pieces.Append(JsonDocument.Parse(line["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
                    return true;
                }
            }
            return false;
        }
        Assert.True(await ReadChunk());
        var joined = requests.Skip(1).Select(Post).ToArray();
        while (await ReadChunk()) { }
        var texts = new List<string?> { pieces.ToString() };
        foreach (var reply in await Task.WhenAll(joined)) texts.Add(reply.GetProperty("choices")[0].GetProperty("text").GetString());
        for (var i = 0; i < requests.Length; i++)
        {
            var (prompt, seed, tokens) = requests[i];
            var expected = Shakespeare.Generate(prompt, new GenerationOptions { MaxNewTokens = tokens, Seed = seed, Temperature = 0.9f });
            Assert.Equal(expected.Text, texts[i]);
        }
    }

    [Fact]
    public async Task Streamed_chat_choices_each_start_with_the_role_and_end_with_their_finish()
    {
        const string Chat = """{"messages":[{"role":"user","content":"Who is there?"}],"max_tokens":24,"temperature":0.9,"seed":3,"n":3,"logprobs":true}""";
        var (_, whole) = await PostAsync("/v1/chat/completions", Chat);
        var chunks = await StreamAsync(Http, "/v1/chat/completions", Chat.Replace("\"n\":3", "\"n\":3,\"stream\":true"));
        for (var index = 0; index < 3; index++)
        {
            var mine = chunks.Select(c => c.GetProperty("choices")[0]).Where(c => c.GetProperty("index").GetInt32() == index).ToArray();
            Assert.Equal("assistant", mine[0].GetProperty("delta").GetProperty("role").GetString());
            Assert.All(mine[1..], c => Assert.False(c.GetProperty("delta").TryGetProperty("role", out _)));
            var expected = whole.GetProperty("choices")[index];
            var content = string.Concat(mine.Select(c => c.GetProperty("delta").TryGetProperty("content", out var piece) ? piece.GetString() : ""));
            Assert.Equal(expected.GetProperty("message").GetProperty("content").GetString(), content);
            Assert.Equal(expected.GetProperty("logprobs").GetProperty("content").GetArrayLength(),
                mine.Count(c => c.GetProperty("logprobs").ValueKind == JsonValueKind.Object));
            Assert.Equal(expected.GetProperty("finish_reason").GetString(), mine[^1].GetProperty("finish_reason").GetString());
            Assert.Single(mine, c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.String);
        }
    }

    [Fact]
    public async Task A_streamed_completion_is_server_sent_events_ending_with_done()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt":"ROMEO:\n","max_tokens":25,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""", Encoding.UTF8, "application/json"),
        };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToArray();
        var text = string.Concat(chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(Shakespeare.Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 25 }).Text, text);
        Assert.Equal(25, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Contains(chunks, c => c.GetProperty("choices").GetArrayLength() > 0 && c.GetProperty("choices")[0].GetProperty("finish_reason").GetString() == "length");
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip()
    {
        var (_, tokens) = await PostAsync("/tokenize", """{"content":"ROMEO: What, ho!"}""");
        var ids = tokens.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(Shakespeare.Tokenizer!.Encode("ROMEO: What, ho!"), ids);
        var (_, text) = await PostAsync("/detokenize", JsonSerializer.Serialize(new { tokens = ids }));
        Assert.Equal("ROMEO: What, ho!", text.GetProperty("content").GetString());
        var health = await Http.GetFromJsonAsync<JsonElement>("/health");
        Assert.Equal("ok", health.GetProperty("status").GetString());
    }

    [Theory]
    [InlineData("""{"prompt":"x","max_tokens":5""", null)]
    [InlineData("""[1,2,3]""", null)]
    [InlineData("""{"prompt":"x","max_tokens":"5"}""", "max_tokens")]
    [InlineData("""{"prompt":"x","temperature":"hot"}""", "temperature")]
    [InlineData("""{"prompt":"x","temperature":3}""", "temperature")]
    [InlineData("""{"prompt":"x","top_p":0}""", "top_p")]
    [InlineData("""{"prompt":"x","stop":[1]}""", "stop")]
    [InlineData("""{"prompt":"x","stop":""}""", "stop")]
    [InlineData("""{"prompt":"x","stream":"yes"}""", "stream")]
    [InlineData("""{"prompt":"x","n":17}""", "n")]
    [InlineData("""{"prompt":["a","b","c","d","e"],"n":16}""", "n")]
    [InlineData("""{"prompt":"x","logprobs":99}""", "logprobs")]
    [InlineData("""{"prompt":[99999]}""", "prompt")]
    [InlineData("""{"prompt":{"a":1}}""", "prompt")]
    [InlineData("""{"max_tokens":5}""", "prompt")]
    [InlineData("""{"prompt":"x","max_tokens":5000}""", "max_tokens")]
    [InlineData("""{"prompt":"x","max_tokens":5,"max_tokens":6}""", null)]
    [InlineData("""{"prompt":"x","model":42}""", "model")]
    [InlineData("""{"prompt":"x","seed":1.5}""", "seed")]
    [InlineData("""{"prompt":"x","n":0}""", "n")]
    [InlineData("""{"prompt":"x","presence_penalty":2.5}""", "presence_penalty")]
    [InlineData("""{"prompt":"x","frequency_penalty":"high"}""", "frequency_penalty")]
    [InlineData("""{"prompt":"x","logit_bias":[1]}""", "logit_bias")]
    [InlineData("""{"prompt":"x","logit_bias":{"a":1}}""", "logit_bias")]
    [InlineData("""{"prompt":"x","logit_bias":{"-1":1}}""", "logit_bias")]
    [InlineData("""{"prompt":"x","logit_bias":{"66":1}}""", "logit_bias")]
    [InlineData("""{"prompt":"x","logit_bias":{"5":101}}""", "logit_bias")]
    [InlineData("""{"prompt":"x","logit_bias":{"5":"1"}}""", "logit_bias")]
    [InlineData("""{"prompt":"x","logit_bias":{"5":1,"05":2}}""", "logit_bias")]
    [InlineData("""{"prompt":"x","max_tokens":0}""", "max_tokens")]
    [InlineData("""{"prompt":"x","echo":"yes"}""", "echo")]
    [InlineData("""{"prompt":"x","no_repeat_ngram_size":-1}""", "no_repeat_ngram_size")]
    [InlineData("""{"prompt":"x","min_p":1.5}""", "min_p")]
    [InlineData("""{"prompt":"x","typical_p":0}""", "typical_p")]
    [InlineData("""{"prompt":"x","typical_p":1.5}""", "typical_p")]
    [InlineData("""{"prompt":"x","penalty_alpha":-0.5,"top_k":4}""", "penalty_alpha")]
    [InlineData("""{"prompt":"x","max_tokens":2,"min_tokens":3}""", "min_tokens")]
    [InlineData("""{"prompt":[]}""", "prompt")]
    [InlineData("""{"prompt":["a",[1]]}""", "prompt")]
    [InlineData("""{"prompt":[[1],[99999]]}""", "prompt")]
    [InlineData("""{"prompt":"x","echo":true,"max_tokens":-1}""", "max_tokens")]
    public async Task A_bad_completion_request_is_a_400_naming_the_field(string json, string? param)
    {
        var (status, body) = await PostAsync("/v1/completions", json);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = body.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        if (param is not null) Assert.Equal(param, error.GetProperty("param").GetString());
    }

    public static TheoryData<string, byte[]> NotText() => new()
    {
        { "not valid UTF-8", [.. "{\"prompt\":\""u8, 0xFF, 0xFE, .. "\",\"max_tokens\":2}"u8] },
        { "not text", Encoding.UTF8.GetBytes("""{"prompt":"\ud800","max_tokens":2}""") },
        { "not text", Encoding.UTF8.GetBytes("""{"\ud800":1,"prompt":"hi"}""") },
        { "not text", Encoding.UTF8.GetBytes("""{"messages":[{"role":"user","content":"a\udc00"}]}""") },
    };

    [Theory]
    [MemberData(nameof(NotText))]
    public async Task A_body_whose_strings_are_not_text_is_a_400_not_a_crash(string message, byte[] body)
    {
        foreach (var path in new[] { "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/tokenize" })
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using var response = await Http.PostAsync(path, content);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Contains(message, error.GetProperty("message").GetString());
        }
    }

    [Fact]
    public async Task A_prompt_that_fills_the_context_is_named_as_the_problem()
    {
        var (status, body) = await PostAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = new string('a', 300), max_tokens = 1 }));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var error = body.GetProperty("error");
        Assert.Equal("prompt", error.GetProperty("param").GetString());
        Assert.Equal("prompt: the prompt has 300 tokens, and the context length of 256 leaves no room for a new one (shorten it to at most 255 tokens)",
            error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task An_echoed_prompt_longer_than_the_context_is_named_as_the_problem()
    {
        var (status, body) = await PostAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = new string('a', 300), max_tokens = 0, echo = true }));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("prompt", body.GetProperty("error").GetProperty("param").GetString());
        Assert.Equal("prompt: the prompt has 300 tokens, more than the context length of 256", body.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task Max_tokens_beyond_the_context_says_how_many_fit_in_the_request_s_words()
    {
        var (status, body) = await PostAsync("/v1/completions", """{"prompt":"ROMEO:","max_tokens":5000}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var message = body.GetProperty("error").GetProperty("message").GetString()!;
        Assert.StartsWith("max_tokens is too large: the prompt has 6 tokens", message);
        Assert.Contains("lower max_tokens to at most 250)", message);
        Assert.DoesNotContain("MaxNewTokens", message);
        Assert.DoesNotContain("SlidingWindow", message);
    }

    [Theory]
    [InlineData("/v1/chat/completions", """{"messages":"hi"}""", "messages")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"wizard","content":"hi"}]}""", "messages[0].role")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}""", "messages[0].content")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}""", "top_logprobs")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}""", "tools")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tools":{}}""", "tools")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"functions":[{"name":"f"}]}""", "functions")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}""", "response_format")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{}}}""", "response_format")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"response_format":"json"}""", "response_format")]
    [InlineData("/v1/completions", """{"prompt":"x","suffix":"end"}""", "suffix")]
    [InlineData("/v1/completions", """{"prompt":"x","best_of":3,"stream":true}""", "best_of")]
    [InlineData("/v1/completions", """{"prompt":"x","best_of":2,"n":3}""", "best_of")]
    [InlineData("/v1/completions", """{"prompt":"x","best_of":17}""", "best_of")]
    [InlineData("/v1/completions", """{"prompt":["a","b","c","d","e"],"best_of":16}""", "best_of")]
    [InlineData("/v1/embeddings", """{"input":""}""", "input")]
    [InlineData("/v1/embeddings", """{"input":[true]}""", "input")]
    [InlineData("/v1/embeddings", """{"input":"x","dimensions":3}""", "dimensions")]
    [InlineData("/v1/embeddings", """{"input":"x","encoding_format":"int8"}""", "encoding_format")]
    [InlineData("/detokenize", """{"tokens":[-1]}""", "tokens")]
    [InlineData("/tokenize", """{"content":5}""", "content")]
    public async Task Bad_requests_to_the_other_endpoints_are_400s_naming_the_field(string path, string json, string param)
    {
        var (status, body) = await PostAsync(path, json);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(param, body.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Unknown_fields_are_ignored()
    {
        var (status, _) = await PostAsync("/v1/completions", """{"prompt":"x","max_tokens":2,"user":"u1","store":true,"whatever":{"a":[1]}}""");
        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Theory]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"tools":[],"response_format":{"type":"text"},"tool_choice":"none"}""")]
    [InlineData("/v1/completions", """{"prompt":"x","max_tokens":2,"suffix":"","best_of":1}""")]
    public async Task Tools_json_and_insertion_fields_that_ask_for_nothing_are_accepted(string path, string json)
    {
        var (status, body) = await PostAsync(path, json);
        Assert.True(status == HttpStatusCode.OK, body.ToString());
    }

    [Fact]
    public async Task An_oversized_body_is_a_400_before_it_is_read_whole()
    {
        var prompt = new string('a', 2 << 20);
        var (status, body) = await PostAsync("/v1/completions", $$"""{"prompt":"{{prompt}}"}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("exceeds", body.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_full_queue_answers_503_and_frees_when_the_slot_does()
    {
        await using var app = await ServerFixture.StartAsync(o => { o.MaxConcurrentRequests = 1; o.MaxQueuedRequests = 0; });
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        var gate = app.Services.GetRequiredService<RequestGate>();
        const string Request = """{"prompt":"x","max_tokens":2}""";

        var held = await gate.EnterAsync(CancellationToken.None);
        using (var busy = await http.PostAsync("/v1/completions", new StringContent(Request)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, busy.StatusCode);
            var error = JsonDocument.Parse(await busy.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("server_busy", error.GetProperty("type").GetString());
        }
        held!.Dispose();
        using var served = await http.PostAsync("/v1/completions", new StringContent(Request));
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
    }

    [Fact]
    public async Task A_client_that_disconnects_stops_its_generation()
    {
        var logs = new CapturingLoggerProvider();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        // GPT-2 124M (synthetic weights): 1,000 tokens take half a minute here, so the stream is still running when the client leaves.
        builder.Services.AddNativeGpt2Server("synthetic:gpt2");
        await using var app = builder.Build();
        app.MapNativeGpt2OpenAI();
        await app.StartAsync();
        var gate = app.Services.GetRequiredService<RequestGate>();

        using (var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = new StringContent("""{"prompt":"Hello","max_tokens":1000,"seed":1,"stream":true}"""),
            };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
            Assert.Equal(1, gate.Admitted);
        }

        // The slot is freed as the request ends, and the line is logged just after: wait for both.
        bool Logged() => logs.Messages.Any(m => m.Contains("client disconnected", StringComparison.Ordinal));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((gate.Admitted > 0 || !Logged()) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(0, gate.Admitted);
        Assert.True(Logged(), string.Join("\n", logs.Messages));
    }
}
