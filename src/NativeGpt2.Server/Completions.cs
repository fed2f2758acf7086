using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using NativeGpt2.AI;
using NativeGpt2.Generation;

namespace NativeGpt2.Server;

/// <summary><c>/v1/completions</c> and <c>/v1/chat/completions</c>: the request mapped onto <see cref="GenerationOptions"/>, the reply whole or streamed.</summary>
internal static class Completions
{
    /// <summary>Stop sequences a request may add (OpenAI allows 4).</summary>
    private const int MaxStopSequences = 16;

    /// <summary>Prompts one completions request may hold, each its own choice.</summary>
    private const int MaxPrompts = 64;

    /// <summary>Choices (<c>n</c>) a request may ask for of each prompt; a completions request's prompts × n may not exceed <see cref="MaxPrompts"/>.</summary>
    private const int MaxChoices = 16;

    public static async Task CompleteAsync(ServerRequest request)
    {
        var body = request.Body;
        var model = request.Model;
        var prompts = Prompts(request);
        var echo = body.Bool("echo") ?? false;
        // With echo, max_tokens 0 asks for the prompt alone: with logprobs, how an evaluation harness scores a text.
        var maxTokens = body.Int("max_tokens", echo ? 0 : 1, int.MaxValue) ?? request.ServerOptions.DefaultMaxTokens;
        var logProbCount = body.Int("logprobs", 0, GenerationOptions.MaxLogProbs);
        var options = Options(request, Math.Max(maxTokens, 1), logProbCount, stops: []);
        if (body.String("suffix") is { Length: > 0 }) throw OpenAIError.BadRequest("'suffix' is not supported: GPT-2 continues text, it does not fill in", "suffix");
        var stream = body.Bool("stream") ?? false;
        var includeUsage = IncludeUsage(body, stream);
        var n = Choices(body);
        // best_of: that many candidates of each prompt, of which the n with the highest log-probability per token return.
        var bestOf = body.Int("best_of", 1, MaxChoices) ?? 1;
        if (bestOf > 1 && stream) throw OpenAIError.BadRequest("'best_of' cannot be used with 'stream': the best candidates are known only at the end", "best_of");
        if (bestOf > 1 && bestOf < n) throw OpenAIError.BadRequest($"'best_of' ({bestOf}) must be at least 'n' ({n})", "best_of");
        var candidates = Math.Max(n, bestOf);
        if (prompts.Length * candidates > MaxPrompts)
            throw OpenAIError.BadRequest($"{prompts.Length} prompts × {(bestOf > 1 ? $"best_of {bestOf}" : $"n {n}")} is {prompts.Length * candidates} choices; at most {MaxPrompts} per request", bestOf > 1 ? "best_of" : "n");
        // Ranking the candidates needs their tokens' log-probabilities, whether or not the reply shows them.
        if (bestOf > 1 && options.LogProbs is null) options = options with { LogProbs = 0 };
        // Every prompt is checked against the context before a slot is taken or anything is sent. Candidate i·c + j is
        // prompt i's j-th, in that order (c: n, or best_of).
        for (var i = 0; i < prompts.Length; i++)
        {
            var prompt = prompts[i].Ids;
            var which = prompts.Length > 1 ? $" (prompt[{i}])" : "";
            if (maxTokens == 0 && prompt.Length > model.Config.ContextLength)
                throw OpenAIError.BadRequest($"prompt: the prompt has {prompt.Length} tokens, more than the context length of {model.Config.ContextLength}{which}", "prompt");
            try
            {
                // Checks the prompt and options as decoding will; runs nothing.
                if (maxTokens > 0) _ = model.GenerateUpdatesAsync(prompt, options, request.Aborted);
            }
            catch (ArgumentException e) when (which.Length > 0)
            {
                // The first line: an out-of-range value's second repeats what the client sent.
                var message = e.Message.Split('\n')[0].Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
                throw new ArgumentException(message + which, e.ParamName, e);
            }
        }
        var tokenizer = echo || logProbCount is not null ? request.Tokenizer : null;
        await request.EnterAsync().ConfigureAwait(false);

        var id = "cmpl-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var response = request.Http.Response;
        JsonObject Reply(JsonArray choices) => new() { ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = request.ModelId, ["choices"] = choices };
        JsonObject Choice(int index, string text, JsonNode? logprobs, string? finish) =>
            new() { ["index"] = index, ["text"] = text, ["logprobs"] = logprobs, ["finish_reason"] = finish };
        if (stream) ServerSentEvents.Start(response);

        var runs = new CompletionRun[prompts.Length * candidates];
        for (var index = 0; index < runs.Length; index++)
        {
            var (prompt, promptText) = prompts[index / candidates];
            var run = runs[index] = new CompletionRun(prompt, logProbCount is null ? null : new CompletionLogProbs(tokenizer!, echo ? 0 : promptText.Length));
            if (!echo) continue;
            // A prompt's choices echo it alike: it is scored once. Streamed, every choice's echo comes before the tokens of any.
            var echoed = index % candidates == 0
                ? await Task.Run(() => Echo(model, tokenizer!, prompt, logProbCount, request.Aborted), request.Aborted).ConfigureAwait(false)
                : runs[index - 1].Echoed!;
            run.Echo(echoed);
            if (!stream) continue;
            // The echo chunk carries the prompt's columns on their own; the choice's go on after them.
            var columns = logProbCount is null ? null : new CompletionLogProbs(tokenizer!, 0);
            for (var i = 0; i < prompt.Length; i++) columns?.Add(prompt[i], echoed.LogProbs?[i], echoed.Pieces[i]);
            var chunk = Reply([Choice(index, echoed.Text, columns?.ToJson(), maxTokens == 0 ? "length" : null)]);
            await ServerSentEvents.WriteAsync(response, chunk, request.Aborted).ConfigureAwait(false);
        }

        if (maxTokens > 0)
        {
            // Without a seed, each candidate draws its own.
            var seeds = options.Seed is { } seed ? runs.Select((_, index) => unchecked(seed + index % candidates)).ToArray() : null;
            await foreach (var update in DecodeAsync(request, [.. runs.Select(r => r.Prompt)], options, seeds).ConfigureAwait(false))
            {
                var run = runs[update.Sequence];
                // A streamed chunk carries its own token's columns, at the offset the whole text has reached.
                var piece = stream && run.LogProbs is not null ? new CompletionLogProbs(tokenizer!, run.LogProbs.Offset) : null;
                piece?.Add(update);
                run.Add(update);
                if (!stream) continue;
                if (update.Text.Length == 0 && update.LogProbs is null && update.FinishReason is null) continue;
                var chunk = Reply([Choice(update.Sequence, update.Text, piece?.ToJson(), Finish(update.FinishReason))]);
                await ServerSentEvents.WriteAsync(response, chunk, request.Aborted).ConfigureAwait(false);
            }
        }

        // A prompt counts once, however many choices it has (as OpenAI counts it); every candidate's tokens count, as OpenAI bills best_of.
        var promptTokens = runs.Where((_, index) => index % candidates == 0).Sum(r => r.Last?.PromptTokenCount ?? r.Prompt.Length);
        var completionTokens = runs.Sum(r => r.Last?.GeneratedTokenCount ?? 0);
        var choices = new JsonArray();
        for (var i = 0; i < prompts.Length && !stream; i++)
        {
            // A prompt's n best candidates by log-probability per token (of equals, the earlier) are its choices; without best_of, all of them.
            var ofPrompt = runs.Skip(i * candidates).Take(candidates).Select((run, j) => (run, j));
            if (bestOf > 1) ofPrompt = ofPrompt.OrderByDescending(c => c.run.MeanLogProb).ThenBy(c => c.j).Take(n);
            foreach (var (run, r) in ofPrompt.Select((c, r) => (c.run, r)))
                choices.Add(Choice(i * n + r, run.Text.ToString(), run.LogProbs?.ToJson(), run.Last is null ? "length" : Finish(run.Last.FinishReason)));
        }
        var usage = Usage(promptTokens, completionTokens);
        if (stream)
        {
            if (includeUsage)
            {
                var chunk = Reply([]);
                chunk["usage"] = usage;
                await ServerSentEvents.WriteAsync(response, chunk, request.Aborted).ConfigureAwait(false);
            }
            await ServerSentEvents.DoneAsync(response, request.Aborted).ConfigureAwait(false);
            return;
        }
        var whole = Reply(choices);
        whole["usage"] = usage;
        await OpenAIEndpoints.WriteJsonAsync(response, whole).ConfigureAwait(false);
    }

    /// <summary>
    /// Decodes <paramref name="prompts"/> (the j-th with seed <paramref name="seeds"/>[j], or each with a fresh one) in the
    /// server's shared batch, beside every other request's sequences; each update's <see cref="GenerationUpdate.Sequence"/> is
    /// its prompt's index in <paramref name="prompts"/>. Options the shared batch does not take (contrastive search, which runs
    /// k candidates a sequence) decode the request's sequences in batches of their own, at most the shared batch's <see cref="GenerationBatcher.MaxBatchSize"/> at a time.
    /// </summary>
    private static async IAsyncEnumerable<GenerationUpdate> DecodeAsync(ServerRequest request, int[][] prompts, GenerationOptions options, int[]? seeds)
    {
        if (GenerationBatcher.CanBatch(options))
        {
            var merged = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true });
            var batcher = request.Batcher;
            // Ends the sequences if this reply ends before they do (a failed write).
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(request.Aborted);
            async Task Forward(int j)
            {
                var sequence = batcher.GenerateUpdatesAsync(prompts[j], seeds is null ? options : options with { Seed = seeds[j] }, stop.Token);
                await foreach (var update in sequence.ConfigureAwait(false)) merged.Writer.TryWrite(update with { Sequence = j });
            }
            var forwarding = Task.WhenAll(Enumerable.Range(0, prompts.Length).Select(Forward));
            _ = forwarding.ContinueWith(done => merged.Writer.TryComplete(done.Exception?.InnerException), TaskScheduler.Default);
            try
            {
                await foreach (var update in merged.Reader.ReadAllAsync(request.Aborted).ConfigureAwait(false)) yield return update;
            }
            finally
            {
                stop.Cancel();
            }
            yield break;
        }
        var size = request.Batcher.MaxBatchSize;
        for (var start = 0; start < prompts.Length; start += size)
        {
            var count = Math.Min(size, prompts.Length - start);
            var batch = request.Model.GenerateUpdatesAsync(prompts[start..(start + count)], options, seeds?[start..(start + count)], request.Aborted);
            await foreach (var update in batch.ConfigureAwait(false)) yield return update with { Sequence = start + update.Sequence };
        }
    }

    /// <summary>One candidate of a completions request as its tokens come in: its text, its log-probability columns, its last update.</summary>
    private sealed class CompletionRun(int[] prompt, CompletionLogProbs? logProbs)
    {
        public int[] Prompt { get; } = prompt;
        public StringBuilder Text { get; } = new();
        public CompletionLogProbs? LogProbs { get; } = logProbs;
        public EchoedPrompt? Echoed { get; private set; }
        public GenerationUpdate? Last { get; private set; }
        private double _sumLogProbs;

        /// <summary>Log-probability per generated token: how <c>best_of</c> ranks candidates (0 for none).</summary>
        public double MeanLogProb => Last is { GeneratedTokenCount: > 0 } last ? _sumLogProbs / last.GeneratedTokenCount : 0;

        public void Echo(EchoedPrompt echoed)
        {
            Echoed = echoed;
            Text.Append(echoed.Text);
            for (var i = 0; i < Prompt.Length; i++) LogProbs?.Add(Prompt[i], echoed.LogProbs?[i], echoed.Pieces[i]);
        }

        public void Add(GenerationUpdate update)
        {
            Last = update;
            _sumLogProbs += update.LogProbs?.LogProb ?? 0;
            Text.Append(update.Text);
            LogProbs?.Add(update);
        }
    }

    /// <summary>The prompt as <c>echo</c> returns it: its text, and each token's share of that text.</summary>
    /// <param name="Text">The prompt's tokens decoded (the prompt itself, for a text prompt).</param>
    /// <param name="Pieces">The text each token released, decoded as generation decodes: a character split across tokens comes with its last.</param>
    /// <param name="LogProbs">With <c>logprobs</c>: null for the first token, which nothing predicts, then each token's log-probability after those before it.</param>
    private sealed record EchoedPrompt(string Text, string[] Pieces, TokenLogProbs?[]? LogProbs);

    private static EchoedPrompt Echo(Gpt2CausalLM model, Tokenization.Gpt2Tokenizer tokenizer, int[] prompt, int? top, CancellationToken cancellationToken)
    {
        var decoder = tokenizer.CreateStreamingDecoder();
        var pieces = prompt.Select(decoder.Append).ToArray();
        if (pieces.Length > 0) pieces[^1] += decoder.Flush();
        TokenLogProbs?[]? logProbs = null;
        if (top is not null)
        {
            logProbs = new TokenLogProbs?[prompt.Length];
            if (prompt.Length >= 2)
            {
                var scored = model.ScoreIds(prompt, new ScoreOptions { TopLogProbs = top }, cancellationToken).Tokens!;
                for (var i = 0; i < scored.Count; i++) logProbs[i + 1] = scored[i];
            }
        }
        return new EchoedPrompt(string.Concat(pieces), pieces, logProbs);
    }

    public static async Task ChatAsync(ServerRequest request)
    {
        var body = request.Body;
        var model = request.Model;
        var messages = Messages(body);
        RefuseToolsAndJson(body);
        var context = model.Config.ContextLength;
        var maxTokens = body.Int("max_completion_tokens", 1, int.MaxValue) ?? body.Int("max_tokens", 1, int.MaxValue) ?? Gpt2ChatClient.DefaultMaxOutputTokensFor(context);
        if (maxTokens >= context)
            throw OpenAIError.BadRequest($"'max_tokens' must be below the context length of {context}, not {maxTokens}", "max_tokens");
        var wantLogProbs = body.Bool("logprobs") ?? false;
        var top = body.Int("top_logprobs", 0, GenerationOptions.MaxLogProbs);
        if (top is not null && !wantLogProbs) throw OpenAIError.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        var template = request.ModelOptions.ChatTemplate;
        var options = Options(request, maxTokens, wantLogProbs ? top ?? 0 : null, template.StopSequences);
        var stream = body.Bool("stream") ?? false;
        var includeUsage = IncludeUsage(body, stream);
        var n = Choices(body);
        // A conversation longer than the context keeps its most recent tokens.
        var prompt = template.Encode(request.Tokenizer, messages, null, context - maxTokens);
        // Checks the prompt and options as decoding will; runs nothing.
        _ = model.GenerateUpdatesAsync(prompt, options, request.Aborted);
        await request.EnterAsync().ConfigureAwait(false);

        var id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var response = request.Http.Response;
        JsonObject Reply(string kind, JsonArray choices) => new() { ["id"] = id, ["object"] = kind, ["created"] = created, ["model"] = request.ModelId, ["choices"] = choices };
        JsonObject Chunk(int index, JsonObject delta, JsonNode? logprobs, string? finish) =>
            Reply("chat.completion.chunk", [new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finish }]);
        var texts = Enumerable.Range(0, n).Select(_ => new StringBuilder()).ToArray();
        var contents = Enumerable.Range(0, n).Select(_ => new JsonArray()).ToArray();
        var started = new bool[n];
        var lasts = new GenerationUpdate?[n];
        if (stream)
        {
            ServerSentEvents.Start(response);
            // Each choice's first chunk carries the role; then the choices' tokens come as they are decoded, each naming its choice.
            for (var index = 0; index < n; index++)
                await ServerSentEvents.WriteAsync(response, Chunk(index, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null, null), request.Aborted).ConfigureAwait(false);
        }
        // Choice j draws with seed + j; without a seed, each draws its own.
        var seeds = options.Seed is { } seed ? Enumerable.Range(0, n).Select(j => unchecked(seed + j)).ToArray() : null;
        await foreach (var update in DecodeAsync(request, [.. Enumerable.Repeat(prompt, n)], options, seeds).ConfigureAwait(false))
        {
            var index = update.Sequence;
            lasts[index] = update;
            // The reply follows "Assistant:" after one space, which is the template's, not the reply's.
            var piece = ChatTemplate.TrimReplyStart(update.Text, ref started[index]);
            texts[index].Append(piece);
            var entry = update.LogProbs is { } lp ? ChatLogProb(request.Tokenizer, lp) : null;
            if (!stream)
            {
                if (entry is not null) contents[index].Add(entry);
                continue;
            }
            if (piece.Length > 0 || entry is not null)
            {
                await ServerSentEvents.WriteAsync(response, Chunk(index, new JsonObject { ["content"] = piece },
                    entry is null ? null : new JsonObject { ["content"] = new JsonArray(entry) }, null), request.Aborted).ConfigureAwait(false);
            }
            if (update.FinishReason is not null)
                await ServerSentEvents.WriteAsync(response, Chunk(index, new JsonObject(), null, Finish(update.FinishReason)), request.Aborted).ConfigureAwait(false);
        }
        var promptTokens = lasts[0]?.PromptTokenCount ?? prompt.Length;
        var completionTokens = lasts.Sum(last => last?.GeneratedTokenCount ?? 0);
        var choices = new JsonArray();
        for (var index = 0; index < n && !stream; index++)
        {
            choices.Add(new JsonObject
            {
                ["index"] = index,
                ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = texts[index].ToString() },
                ["logprobs"] = wantLogProbs ? new JsonObject { ["content"] = contents[index] } : null,
                ["finish_reason"] = Finish(lasts[index]?.FinishReason),
            });
        }
        var usage = Usage(promptTokens, completionTokens);
        if (stream)
        {
            if (includeUsage)
            {
                var chunk = Reply("chat.completion.chunk", []);
                chunk["usage"] = usage;
                await ServerSentEvents.WriteAsync(response, chunk, request.Aborted).ConfigureAwait(false);
            }
            await ServerSentEvents.DoneAsync(response, request.Aborted).ConfigureAwait(false);
            return;
        }
        var whole = Reply("chat.completion", choices);
        whole["usage"] = usage;
        await OpenAIEndpoints.WriteJsonAsync(response, whole).ConfigureAwait(false);
    }

    /// <summary>
    /// The options both endpoints share: OpenAI's sampling fields (<c>presence_penalty</c>, <c>frequency_penalty</c> and
    /// <c>logit_bias</c> included); <c>top_k</c>, <c>min_p</c>, <c>typical_p</c> and <c>repetition_penalty</c> are extensions, as in llama.cpp's server,
    /// and <c>min_tokens</c> (vLLM's name), <c>no_repeat_ngram_size</c> and <c>penalty_alpha</c> (contrastive search with
    /// <c>top_k</c> candidates; Hugging Face's names) too.
    /// </summary>
    private static GenerationOptions Options(ServerRequest request, int maxTokens, int? logProbs, IReadOnlyList<string> stops)
    {
        var body = request.Body;
        // One model is served, whatever the request names; the name must still be a string.
        _ = body.String("model");
        var temperature = body.Number("temperature", 0, 2) ?? 1f;
        var seed = body.Long("seed");
        var options = new GenerationOptions
        {
            MaxNewTokens = maxTokens,
            Temperature = temperature,
            Greedy = temperature == 0f,
            TopP = body.Number("top_p", 0, 1) is { } p ? (p == 0 ? throw OpenAIError.BadRequest("'top_p' must be in (0, 1]", "top_p") : p) : 1f,
            TopK = body.Int("top_k", 0, int.MaxValue) ?? 0,
            MinP = body.Number("min_p", 0, 1) ?? 0f,
            TypicalP = body.Number("typical_p", 0, 1) is { } typical ? (typical == 0 ? throw OpenAIError.BadRequest("'typical_p' must be in (0, 1]", "typical_p") : typical) : 1f,
            RepetitionPenalty = body.Number("repetition_penalty", 1e-3, 1e3) ?? 1f,
            NoRepeatNgramSize = body.Int("no_repeat_ngram_size", 0, int.MaxValue) ?? 0,
            MinNewTokens = body.Int("min_tokens", 0, int.MaxValue) ?? 0,
            PenaltyAlpha = body.Number("penalty_alpha", 0, 1) ?? 0f,
            PresencePenalty = body.Number("presence_penalty", -GenerationOptions.MaxPresenceOrFrequencyPenalty, GenerationOptions.MaxPresenceOrFrequencyPenalty) ?? 0f,
            FrequencyPenalty = body.Number("frequency_penalty", -GenerationOptions.MaxPresenceOrFrequencyPenalty, GenerationOptions.MaxPresenceOrFrequencyPenalty) ?? 0f,
            LogitBias = body.LogitBias("logit_bias", request.Model.Config.VocabSize, GenerationOptions.MaxLogitBias),
            Seed = seed is { } s ? unchecked((int)(s ^ (s >> 32))) : null,
            StopStrings = [.. stops, .. body.StopStrings("stop", MaxStopSequences)],
            LogProbs = logProbs,
        };
        options.Validate();
        return options;
    }

    /// <summary><c>n</c>: choices of each prompt, 1 to <see cref="MaxChoices"/>.</summary>
    private static int Choices(JsonRequest body) => body.Int("n", 1, MaxChoices) ?? 1;

    private static bool IncludeUsage(JsonRequest body, bool stream)
    {
        if (body.Field("stream_options") is not { } streamOptions) return false;
        if (streamOptions.ValueKind != JsonValueKind.Object) throw JsonRequest.WrongType("stream_options", "an object");
        if (!stream) throw OpenAIError.BadRequest("'stream_options' is only allowed with 'stream': true", "stream_options");
        return streamOptions.TryGetProperty("include_usage", out var include) && include.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False or JsonValueKind.Null => false,
            _ => throw JsonRequest.WrongType("stream_options.include_usage", "a boolean"),
        };
    }

    /// <summary>
    /// <c>prompt</c>: a string, an array of token ids, or an array of several of one of those (at most
    /// <see cref="MaxPrompts"/>), each its own choice.
    /// </summary>
    private static (int[] Ids, string Text)[] Prompts(ServerRequest request)
    {
        var vocabulary = request.Model.Config.VocabSize;
        if (request.Body.Field("prompt") is not { } prompt) throw OpenAIError.BadRequest("'prompt' is required", "prompt");
        const string Expected = "a string, an array of token ids, or an array of several strings or of several such arrays";
        if (prompt.ValueKind == JsonValueKind.String) return [Text(prompt.GetString()!)];
        if (prompt.ValueKind != JsonValueKind.Array) throw JsonRequest.WrongType("prompt", Expected);
        var items = prompt.EnumerateArray().ToArray();
        if (items.Length == 0) throw OpenAIError.BadRequest("'prompt' is empty", "prompt");
        if (items.All(i => i.ValueKind == JsonValueKind.Number)) return [(JsonRequest.Ids(prompt, "prompt", vocabulary), "")];
        if (items.Length > MaxPrompts) throw OpenAIError.BadRequest($"'prompt' holds {items.Length} prompts; at most {MaxPrompts} per request", "prompt");
        if (items.All(i => i.ValueKind == JsonValueKind.String)) return [.. items.Select(i => Text(i.GetString()!))];
        if (items.All(i => i.ValueKind == JsonValueKind.Array)) return [.. items.Select(i => (JsonRequest.Ids(i, "prompt", vocabulary), ""))];
        throw JsonRequest.WrongType("prompt", Expected);

        (int[], string) Text(string text) => (request.Tokenizer.Encode(text), text);
    }

    /// <summary>
    /// Tools and JSON output are refused, as <see cref="Gpt2ChatClient"/> refuses them: GPT-2 can neither call a tool nor
    /// promise JSON, and answering in free text as if the request had been honoured would mislead the client.
    /// </summary>
    private static void RefuseToolsAndJson(JsonRequest body)
    {
        foreach (var name in new[] { "tools", "functions" })
        {
            if (body.Field(name) is not { } list) continue;
            if (list.ValueKind != JsonValueKind.Array) throw JsonRequest.WrongType(name, "an array");
            if (list.GetArrayLength() > 0) throw OpenAIError.BadRequest($"'{name}' is not supported: GPT-2 cannot call tools", name);
        }
        if (body.Field("response_format") is not { } format) return;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw JsonRequest.WrongType("response_format", "an object with a string 'type'");
        if (type.GetString() != "text")
            throw OpenAIError.BadRequest($"'response_format' type '{type.GetString()}' is not supported: GPT-2 cannot promise JSON output; use 'text'", "response_format");
    }

    /// <summary><c>messages</c>: objects with a <c>role</c> and a <c>content</c> string, array of text parts, or null.</summary>
    private static List<ChatMessage> Messages(JsonRequest body)
    {
        if (body.Field("messages") is not { ValueKind: JsonValueKind.Array } array)
            throw OpenAIError.BadRequest("'messages' is required: an array of {role, content} objects", "messages");
        var messages = new List<ChatMessage>();
        foreach (var item in array.EnumerateArray())
        {
            var at = $"messages[{messages.Count}]";
            if (item.ValueKind != JsonValueKind.Object) throw JsonRequest.WrongType(at, "an object");
            if (!item.TryGetProperty("role", out var roleValue) || roleValue.ValueKind != JsonValueKind.String)
                throw JsonRequest.WrongType(at + ".role", "a string");
            var role = roleValue.GetString() switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                "tool" => ChatRole.Tool,
                var other => throw OpenAIError.BadRequest($"'{at}.role' must be system, developer, user, assistant or tool, not '{other}'", at + ".role"),
            };
            messages.Add(new ChatMessage(role, Content(item, at)));
        }
        if (messages.Count == 0) throw OpenAIError.BadRequest("'messages' is empty", "messages");
        return messages;
    }

    private static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null) return "";
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array) throw JsonRequest.WrongType(at + ".content", "a string or an array of text parts");
        var text = new StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw JsonRequest.WrongType(at + ".content", "an array of {type, text} parts");
            if (type.GetString() != "text") throw OpenAIError.BadRequest($"'{at}.content' holds a '{type.GetString()}' part: GPT-2 reads text only", at + ".content");
            if (!part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
                throw JsonRequest.WrongType(at + ".content.text", "a string");
            text.Append(partText.GetString());
        }
        return text.ToString();
    }

    private static string? Finish(FinishReason? reason) => reason switch
    {
        null => null,
        FinishReason.Length => "length",
        _ => "stop",
    };

    /// <summary>Token counts: a prompt's as generation counted it (an empty prompt is its start token), or as given when nothing was generated.</summary>
    private static JsonObject Usage(int promptTokens, int completionTokens) => new()
    {
        ["prompt_tokens"] = promptTokens,
        ["completion_tokens"] = completionTokens,
        ["total_tokens"] = promptTokens + completionTokens,
    };

    /// <summary>A token as text: its bytes as UTF-8, a broken character shown as U+FFFD (the bytes say exactly).</summary>
    internal static string TokenText(Tokenization.Gpt2Tokenizer tokenizer, int id) => Encoding.UTF8.GetString(tokenizer.TokenBytes(id));

    private static JsonObject ChatLogProb(Tokenization.Gpt2Tokenizer tokenizer, TokenLogProbs logProbs)
    {
        JsonObject Entry(int id, double logProb) => new()
        {
            ["token"] = TokenText(tokenizer, id),
            ["logprob"] = logProb,
            ["bytes"] = new JsonArray([.. tokenizer.TokenBytes(id).ToArray().Select(b => (JsonNode)(int)b)]),
        };
        var entry = Entry(logProbs.Id, logProbs.LogProb);
        entry["top_logprobs"] = new JsonArray([.. logProbs.Top.Select(t => (JsonNode)Entry(t.Id, t.LogProb))]);
        return entry;
    }

    /// <summary>The completions API's log-probability columns: tokens, their log-probabilities, the alternatives, the text offsets.</summary>
    private sealed class CompletionLogProbs(Tokenization.Gpt2Tokenizer tokenizer, int offset)
    {
        private readonly JsonArray _tokens = [], _logProbs = [], _top = [], _offsets = [];

        public int Offset { get; private set; } = offset;

        public void Add(GenerationUpdate update)
        {
            if (update.LogProbs is { } lp) Add(lp.Id, lp, update.Text);
        }

        /// <summary>Token <paramref name="id"/>, which released <paramref name="text"/>; null columns when nothing predicted it (an echoed prompt's first token).</summary>
        public void Add(int id, TokenLogProbs? lp, string text)
        {
            _tokens.Add(TokenText(tokenizer, id));
            _logProbs.Add(lp is null ? null : JsonValue.Create(lp.LogProb));
            JsonObject? top = null;
            if (lp is not null)
            {
                top = [];
                foreach (var alternative in lp.Top) top.TryAdd(TokenText(tokenizer, alternative.Id), alternative.LogProb);
            }
            _top.Add(top);
            _offsets.Add(Offset);
            Offset += text.Length;
        }

        public JsonObject ToJson() => new()
        {
            ["tokens"] = _tokens.DeepClone(), ["token_logprobs"] = _logProbs.DeepClone(), ["top_logprobs"] = _top.DeepClone(), ["text_offset"] = _offsets.DeepClone(),
        };
    }
}
