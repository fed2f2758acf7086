namespace NativeGpt2;

/// <summary>
/// How to pick new tokens. The defaults sample from the full distribution at temperature 1; set
/// <see cref="Greedy"/> (or <see cref="Temperature"/> 0) for the single most likely continuation.
/// Processing follows Hugging Face: repetition penalty, then temperature, then top-k, then top-p, then min-p, then typical-p; OpenAI's
/// presence and frequency penalties and logit bias adjust the logits after the repetition penalty, before the rest;
/// the tokens <see cref="NoRepeatNgramSize"/> and <see cref="MinNewTokens"/> rule out get probability 0 whatever follows.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most (≥ 1). Default 100.</summary>
    public int MaxNewTokens { get; init; } = 100;

    /// <summary>Always take the most likely token (ties: the lowest id). Temperature, top-k and top-p are then ignored.</summary>
    public bool Greedy { get; init; }

    /// <summary>Divides the logits before sampling: below 1 sharpens, above 1 flattens. 0 means greedy. Must be ≥ 0 and finite.</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Sample only among the k most likely tokens (tokens tied with the k-th are kept); 0 means no limit.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: sample only from the smallest set of most likely tokens whose probability reaches p, in (0, 1]; 1 means no limit.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>
    /// Min-p sampling: keep only the tokens at least this fraction as likely as the most likely one (after temperature,
    /// top-k and top-p), in [0, 1]; 0 (the default) means no limit. Hugging Face's <c>min_p</c>, llama.cpp's and vLLM's.
    /// </summary>
    public float MinP { get; init; }

    /// <summary>
    /// Locally typical sampling (Hugging Face's <c>typical_p</c>, Meister et al., 2022): keep the tokens whose information
    /// −log p is closest to the distribution's entropy, the fewest whose probability reaches this mass (after temperature,
    /// top-k, top-p and min-p), in (0, 1]; 1 (the default) means no limit.
    /// </summary>
    public float TypicalP { get; init; } = 1f;

    /// <summary>Penalty for tokens already in the prompt or output (logit / r if positive, · r if negative); 1 means none. Must be &gt; 0.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>
    /// OpenAI's presence penalty: subtracted once from the logit of every token the output already holds (not the
    /// prompt), in [-2, 2]; positive values favour new tokens. 0 (the default) means none.
    /// </summary>
    public float PresencePenalty { get; init; }

    /// <summary>
    /// OpenAI's frequency penalty: subtracted from a token's logit once for each time the output already holds it (not
    /// the prompt), in [-2, 2]; positive values discourage repeating lines. 0 (the default) means none.
    /// </summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>
    /// Added to these tokens' logits before every pick (OpenAI's <c>logit_bias</c>): values in [-100, 100], where -100
    /// in effect bans a token and 100 in effect forces it. Ids must be in the model's vocabulary. Null or empty: none.
    /// </summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>
    /// Never repeat an n-gram of this many tokens: a token that would complete an n-gram the prompt or the output already
    /// holds gets probability 0 (Hugging Face's <c>no_repeat_ngram_size</c>; 1 bans every token seen). 0 (the default)
    /// means no limit. Should it rule out every token, generation stops with a <see cref="NativeGpt2Exception"/>.
    /// </summary>
    public int NoRepeatNgramSize { get; init; }

    /// <summary>
    /// Generate at least this many tokens before the end-of-text token may end generation: until then it gets probability 0
    /// (Hugging Face's <c>min_new_tokens</c>; a stop string can still end generation sooner). 0 (the default) means none;
    /// at most <see cref="MaxNewTokens"/>.
    /// </summary>
    public int MinNewTokens { get; init; }

    /// <summary>
    /// Beam search over this many sequences (Hugging Face's <c>num_beams</c> without sampling; 1, the default, picks one
    /// token at a time). Each step ranks every beam's continuations by their summed log-probability and keeps the best
    /// <c>NumBeams</c>; a beam that emits end-of-text becomes a finished hypothesis, scored by that sum over its length
    /// to the power <see cref="LengthPenalty"/>, and the best hypothesis is the result. Deterministic: temperature,
    /// top-k, top-p, min-p and the seed do not apply. Whole sequences only (no streaming); it takes
    /// <see cref="NoRepeatNgramSize"/> and <see cref="MinNewTokens"/> but no penalty, bias, stop string, log-probabilities
    /// or sliding window. At most <see cref="MaxBeams"/>.
    /// </summary>
    public int NumBeams { get; init; } = 1;

    /// <summary>The most beams <see cref="NumBeams"/> may ask for.</summary>
    public const int MaxBeams = 32;

    /// <summary>
    /// Beam search's length normalization (Hugging Face's <c>length_penalty</c>): a hypothesis scores its summed
    /// log-probability over (its new tokens)^LengthPenalty; above 0 favours longer ones, below 0 shorter. Default 1.
    /// </summary>
    public float LengthPenalty { get; init; } = 1f;

    /// <summary>
    /// When beam search ends before <see cref="MaxNewTokens"/> (Hugging Face's <c>early_stopping</c>): with
    /// <see cref="BeamStopping.Heuristic"/> (the default, its <c>False</c>) once <see cref="NumBeams"/> hypotheses are finished
    /// and no running beam, scored at the length it has reached, beats the worst of them; with <see cref="BeamStopping.Early"/>
    /// (its <c>True</c>) as soon as they are finished; with <see cref="BeamStopping.Never"/> (its <c>"never"</c>, canonical beam
    /// search) only when no running beam could beat the worst at any length it may still reach.
    /// </summary>
    public BeamStopping EarlyStopping { get; init; } = BeamStopping.Heuristic;

    /// <summary>
    /// Contrastive search (Hugging Face's <c>penalty_alpha</c>; Su et al., 2022): each step takes the <see cref="TopK"/>
    /// most likely tokens v and keeps the one with the best (1 − α)·p(v) − α·max_j cos(h_v, h_j), where h_v is the final
    /// hidden state the model gives v and h_j those of every token before it (prompt and output), so that a continuation
    /// saying again what the text has said loses to a fresh one. In [0, 1]; 0 (the default) means none. It needs a
    /// <see cref="TopK"/> of 2 to <see cref="MaxContrastiveCandidates"/>, and is deterministic: temperature, top-p, min-p
    /// and the seed do not apply. The penalties, bias and rules shape p(v), as Hugging Face's logits processors do (a
    /// token they rule out is never a candidate); stop strings, log-probabilities, streaming and batches work as for any
    /// decoding, beams and the sliding window do not. Each step runs the candidates through the model together: one
    /// batched step of <see cref="TopK"/> rows a sequence.
    /// </summary>
    public float PenaltyAlpha { get; init; }

    /// <summary>The most candidates (<see cref="TopK"/>) contrastive search may compare.</summary>
    public const int MaxContrastiveCandidates = 32;

    /// <summary>Whether tokens are picked by contrastive search (<see cref="PenaltyAlpha"/> above 0).</summary>
    internal bool IsContrastive => PenaltyAlpha > 0f;

    /// <summary>The most a presence or frequency penalty may be, either way.</summary>
    public const float MaxPresenceOrFrequencyPenalty = 2f;

    /// <summary>The most a logit bias may be, either way.</summary>
    public const float MaxLogitBias = 100f;

    /// <summary>Seed of the random source: the same seed, prompt and options give the same output. Null: a fresh random seed.</summary>
    public int? Seed { get; init; }

    /// <summary>Stop when the generated text contains one of these; the returned text ends just before it.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Stop when the model emits its end-of-text token (the config's eos_token_id, else the tokenizer's <c>&lt;|endoftext|&gt;</c>). Default true.</summary>
    public bool StopAtEndOfText { get; init; } = true;

    /// <summary>
    /// Allow the prompt plus new tokens to exceed the context length: when the window is full, its older
    /// half is dropped and the rest recomputed. Without it, such a request is an error.
    /// </summary>
    public bool SlidingWindow { get; init; }

    /// <summary>Treat <c>&lt;|endoftext|&gt;</c> in a text prompt as the special token rather than plain text.</summary>
    public bool AllowSpecialTokens { get; init; }

    /// <summary>
    /// Report the log-probability of each generated token and of the <c>LogProbs</c> most likely tokens at
    /// its place (0: the chosen token only; at most 20), in <see cref="GenerationResult.LogProbs"/>. They are
    /// the model's own distribution (log-softmax of the logits, before penalty, temperature, top-k and top-p).
    /// Null (the default): none.
    /// </summary>
    public int? LogProbs { get; init; }

    /// <summary>The most alternatives <see cref="LogProbs"/> may ask for.</summary>
    public const int MaxLogProbs = 20;

    /// <summary>Whether tokens are picked by argmax: <see cref="Greedy"/>, or temperature 0.</summary>
    public bool IsGreedy => Greedy || Temperature == 0f;

    /// <summary>Whether any penalty, bias or ban changes the logits before a pick.</summary>
    internal bool AdjustsLogits =>
        RepetitionPenalty != 1f || PresencePenalty != 0f || FrequencyPenalty != 0f || LogitBias is { Count: > 0 } || NoRepeatNgramSize > 0;

    /// <summary>Checks that <see cref="LogitBias"/> names only tokens of a vocabulary of <paramref name="vocabularySize"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside [0, vocabularySize).</exception>
    internal void CheckLogitBias(int vocabularySize)
    {
        foreach (var id in LogitBias?.Keys ?? [])
        {
            if ((uint)id >= (uint)vocabularySize)
                throw new ArgumentOutOfRangeException(nameof(LogitBias), id, $"LogitBias names token {id}, outside the vocabulary [0, {vocabularySize})");
        }
    }

    /// <summary>Checks every option, naming the one out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is outside its allowed range.</exception>
    /// <exception cref="ArgumentException">A stop string is null or empty.</exception>
    public void Validate()
    {
        if (MaxNewTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "must be at least 1");
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "must be a finite number >= 0 (0 means greedy)");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "must be >= 0 (0 means no limit)");
        if (!(TopP > 0 && TopP <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1] (1 means no limit)");
        if (!(MinP >= 0 && MinP <= 1))
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "must be in [0, 1] (0 means no limit)");
        if (!(TypicalP > 0 && TypicalP <= 1))
            throw new ArgumentOutOfRangeException(nameof(TypicalP), TypicalP, "must be in (0, 1] (1 means no limit)");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "must be a finite number > 0 (1 means none)");
        foreach (var (name, penalty) in new[] { (nameof(PresencePenalty), PresencePenalty), (nameof(FrequencyPenalty), FrequencyPenalty) })
        {
            if (!(Math.Abs(penalty) <= MaxPresenceOrFrequencyPenalty))
                throw new ArgumentOutOfRangeException(name, penalty, $"must be in [-{MaxPresenceOrFrequencyPenalty}, {MaxPresenceOrFrequencyPenalty}] (0 means none)");
        }
        if (LogitBias is not null)
        {
            foreach (var (id, bias) in LogitBias)
            {
                if (id < 0) throw new ArgumentOutOfRangeException(nameof(LogitBias), id, "token ids must be >= 0");
                if (!(Math.Abs(bias) <= MaxLogitBias))
                    throw new ArgumentOutOfRangeException(nameof(LogitBias), bias, $"the bias of token {id} must be in [-{MaxLogitBias}, {MaxLogitBias}]");
            }
        }
        if (NoRepeatNgramSize < 0)
            throw new ArgumentOutOfRangeException(nameof(NoRepeatNgramSize), NoRepeatNgramSize, "must be >= 0 (0 means no limit)");
        if (MinNewTokens < 0 || MinNewTokens > MaxNewTokens)
            throw new ArgumentOutOfRangeException(nameof(MinNewTokens), MinNewTokens, $"must be in [0, {MaxNewTokens}] (MaxNewTokens; 0 means none)");
        if (LogProbs is < 0 or > MaxLogProbs)
            throw new ArgumentOutOfRangeException(nameof(LogProbs), LogProbs, $"must be in [0, {MaxLogProbs}] (null: none)");
        if (NumBeams is < 1 or > MaxBeams)
            throw new ArgumentOutOfRangeException(nameof(NumBeams), NumBeams, $"must be in [1, {MaxBeams}] (1: no beam search)");
        if (!float.IsFinite(LengthPenalty))
            throw new ArgumentOutOfRangeException(nameof(LengthPenalty), LengthPenalty, "must be a finite number");
        if (!Enum.IsDefined(EarlyStopping))
            throw new ArgumentOutOfRangeException(nameof(EarlyStopping), EarlyStopping, "must be Heuristic, Early or Never");
        if (!(PenaltyAlpha >= 0 && PenaltyAlpha <= 1))
            throw new ArgumentOutOfRangeException(nameof(PenaltyAlpha), PenaltyAlpha, "must be in [0, 1] (0 means no contrastive search)");
        if (IsContrastive)
        {
            if (TopK is < 2 or > MaxContrastiveCandidates)
                throw new ArgumentOutOfRangeException(nameof(TopK), TopK,
                    $"contrastive search (PenaltyAlpha {PenaltyAlpha}) compares TopK candidates: TopK must be in [2, {MaxContrastiveCandidates}]");
            if (NumBeams > 1)
                throw new ArgumentException($"NumBeams does not apply to contrastive search (PenaltyAlpha {PenaltyAlpha}): use one or the other", nameof(NumBeams));
            if (SlidingWindow)
                throw new ArgumentException($"SlidingWindow does not apply to contrastive search (PenaltyAlpha {PenaltyAlpha}): it compares every token of the text", nameof(SlidingWindow));
        }
        if (NumBeams > 1)
        {
            foreach (var (name, set) in new[]
            {
                (nameof(RepetitionPenalty), RepetitionPenalty != 1f), (nameof(PresencePenalty), PresencePenalty != 0f),
                (nameof(FrequencyPenalty), FrequencyPenalty != 0f), (nameof(LogitBias), LogitBias is { Count: > 0 }),
                (nameof(StopStrings), StopStrings is { Count: > 0 }), (nameof(LogProbs), LogProbs is not null), (nameof(SlidingWindow), SlidingWindow),
            })
            {
                if (set) throw new ArgumentException($"{name} does not apply to beam search (NumBeams {NumBeams}): leave it unset, or use NumBeams 1", name);
            }
        }
        ArgumentNullException.ThrowIfNull(StopStrings, nameof(StopStrings));
        if (StopStrings.Any(string.IsNullOrEmpty))
            throw new ArgumentException("stop strings must not be null or empty", nameof(StopStrings));
    }
}

/// <summary>When beam search may end before its last step (<see cref="GenerationOptions.EarlyStopping"/>; Hugging Face's <c>early_stopping</c>).</summary>
public enum BeamStopping
{
    /// <summary>
    /// <c>early_stopping=False</c>, the default: once <see cref="GenerationOptions.NumBeams"/> hypotheses are finished and the
    /// best running beam, its score over the length it has reached, is no better than the worst of them.
    /// </summary>
    Heuristic,
    /// <summary><c>early_stopping=True</c>: as soon as <see cref="GenerationOptions.NumBeams"/> hypotheses are finished.</summary>
    Early,
    /// <summary>
    /// <c>early_stopping="never"</c>: once no running beam could beat the worst finished hypothesis at any length up to
    /// <see cref="GenerationOptions.MaxNewTokens"/> (with a positive <see cref="GenerationOptions.LengthPenalty"/>, a longer
    /// beam scores its sum over a larger power, so the best it can reach is its sum over the longest length).
    /// </summary>
    Never,
}

/// <summary>Why generation of a sequence ended.</summary>
public enum FinishReason
{
    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> tokens were generated.</summary>
    Length,
    /// <summary>The model emitted its end-of-text token.</summary>
    EndOfText,
    /// <summary>The text reached one of <see cref="GenerationOptions.StopStrings"/>.</summary>
    StopString,
}

/// <summary>One generated continuation.</summary>
/// <param name="Text">The new text, without the prompt, the end-of-text token or the stop string (empty for id-only generation).</param>
/// <param name="PromptIds">The prompt as token ids (<c>&lt;|endoftext|&gt;</c> alone for an empty prompt).</param>
/// <param name="GeneratedIds">Every token generated, including a final end-of-text token.</param>
/// <param name="FinishReason">Why generation stopped.</param>
/// <param name="LogProbs">One entry per generated token when <see cref="GenerationOptions.LogProbs"/> asked for them, else null.</param>
public sealed record GenerationResult(string Text, IReadOnlyList<int> PromptIds, IReadOnlyList<int> GeneratedIds, FinishReason FinishReason,
    IReadOnlyList<TokenLogProbs>? LogProbs = null);

/// <summary>A token's log-probability under the model, and the most likely tokens at its place: one generated, or one scored.</summary>
/// <param name="Id">The token generated (or scored).</param>
/// <param name="LogProb">Its natural-log probability.</param>
/// <param name="Top">
/// The <see cref="GenerationOptions.LogProbs"/> (or <see cref="ScoreOptions.TopLogProbs"/>) most likely tokens, most likely
/// first (ties: lower id first).
/// </param>
public sealed record TokenLogProbs(int Id, double LogProb, IReadOnlyList<TokenAlternative> Top);

/// <summary>A token and its natural-log probability.</summary>
public readonly record struct TokenAlternative(int Id, double LogProb);

/// <summary>One step of streamed generation (<see cref="Gpt2CausalLM.GenerateUpdatesAsync(string, GenerationOptions?, CancellationToken)"/>): a generated token and the text it released.</summary>
/// <param name="Text">Text released by this token: whole characters, never part of a stop string; may be empty.</param>
/// <param name="TokenId">The token generated.</param>
/// <param name="LogProbs">Its log-probabilities, when <see cref="GenerationOptions.LogProbs"/> asked for them.</param>
/// <param name="PromptTokenCount">Tokens in the prompt.</param>
/// <param name="GeneratedTokenCount">Tokens generated so far, this one included.</param>
/// <param name="FinishReason">Set on the last update: why generation stopped.</param>
public sealed record GenerationUpdate(string Text, int TokenId, TokenLogProbs? LogProbs, int PromptTokenCount, int GeneratedTokenCount, FinishReason? FinishReason)
{
    /// <summary>
    /// Which sequence of a batch this token belongs to: its prompt's index in
    /// <see cref="Gpt2CausalLM.GenerateUpdatesAsync(IReadOnlyList{IReadOnlyList{int}}, GenerationOptions?, IReadOnlyList{int}?, CancellationToken)"/>;
    /// 0 when one prompt is streamed.
    /// </summary>
    public int Sequence { get; init; }
}
