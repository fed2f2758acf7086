using System.Text;
using Microsoft.Extensions.AI;
using NativeGpt2.Tokenization;

namespace NativeGpt2.AI;

/// <summary>
/// Turns chat messages into a plain-text prompt for a model that was never trained on chat (GPT-2): a
/// transcript with one speaker label per message, ending with the assistant's label for the model to
/// continue, and the stop sequences that end its turn when it starts writing the next speaker's line.
/// </summary>
/// <remarks>
/// <code>
/// {instructions and system messages, one paragraph each}
///
/// User: {text}
/// Assistant: {text}
/// User: {text}
/// Assistant:
/// </code>
/// Other roles are labelled by their name, capitalized (<c>Tool:</c>). Line breaks inside a message are
/// kept. The reply is what the model writes after <c>Assistant:</c>, without the one space that usually follows.
/// </remarks>
public sealed class ChatTemplate
{
    /// <summary>The template above, with the stop sequences <c>"\nUser:"</c> and <c>"\nSystem:"</c>.</summary>
    public static ChatTemplate Plain { get; } = new();

    /// <summary>Where the model's turn ends: the start of another speaker's line.</summary>
    public IReadOnlyList<string> StopSequences { get; } = ["\nUser:", "\nSystem:"];

    /// <summary>The prompt for <paramref name="messages"/>, with <paramref name="instructions"/> (e.g. <see cref="ChatOptions.Instructions"/>) first.</summary>
    public string Format(IEnumerable<ChatMessage> messages, string? instructions = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var prompt = new StringBuilder();
        var preamble = new List<string>();
        if (!string.IsNullOrWhiteSpace(instructions)) preamble.Add(instructions.Trim());
        var turns = new List<ChatMessage>();
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            if (message.Role == ChatRole.System) { if (!string.IsNullOrWhiteSpace(message.Text)) preamble.Add(message.Text.Trim()); }
            else turns.Add(message);
        }
        if (preamble.Count > 0) prompt.Append(string.Join("\n\n", preamble)).Append("\n\n");
        foreach (var turn in turns) prompt.Append(Label(turn.Role)).Append(": ").Append(turn.Text.Trim()).Append('\n');
        prompt.Append(Label(ChatRole.Assistant)).Append(':');
        return prompt.ToString();
    }

    /// <summary>
    /// The prompt as token ids: <see cref="Format"/> encoded (special-token text stays plain text), keeping the
    /// most recent <paramref name="maxTokens"/> tokens of a conversation longer than that.
    /// </summary>
    public int[] Encode(Gpt2Tokenizer tokenizer, IEnumerable<ChatMessage> messages, string? instructions, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 1);
        return EncodeFormatted(tokenizer, Format(messages, instructions), maxTokens);
    }

    /// <summary>A prompt <see cref="Format"/> made, encoded as <see cref="Encode"/> encodes it.</summary>
    internal static int[] EncodeFormatted(Gpt2Tokenizer tokenizer, string prompt, int maxTokens)
    {
        var ids = tokenizer.Encode(prompt);
        return ids.Length > maxTokens ? ids[^maxTokens..] : ids;
    }

    /// <summary>
    /// Removes the one space the model usually writes after <c>Assistant:</c> from the first piece of a reply
    /// (<paramref name="started"/> false until a non-empty piece has passed).
    /// </summary>
    public static string TrimReplyStart(string piece, ref bool started)
    {
        if (started || piece.Length == 0) return piece;
        started = true;
        return piece[0] == ' ' ? piece[1..] : piece;
    }

    private static string Label(ChatRole role) =>
        role == ChatRole.User ? "User"
        : role == ChatRole.Assistant ? "Assistant"
        : role.Value.Length == 0 ? "Unknown" : char.ToUpperInvariant(role.Value[0]) + role.Value[1..];
}
