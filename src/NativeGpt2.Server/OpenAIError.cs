using System.Text.Json.Nodes;

namespace NativeGpt2.Server;

/// <summary>
/// A request the server refuses, answered with OpenAI's error object:
/// <c>{"error": {"message", "type", "param", "code"}}</c> and the HTTP status.
/// </summary>
public sealed class OpenAIError(int status, string message, string? param = null, string type = OpenAIError.InvalidRequest, string? code = null)
    : Exception(message)
{
    /// <summary>The error type of a request the client must change.</summary>
    public const string InvalidRequest = "invalid_request_error";

    /// <summary>The error type of a request turned away because the server is full.</summary>
    public const string ServerBusy = "server_busy";

    /// <summary>The HTTP status code.</summary>
    public int Status { get; } = status;

    /// <summary>The request field at fault, if one is.</summary>
    public string? Param { get; } = param;

    /// <summary>OpenAI's error type.</summary>
    public string Type { get; } = type;

    /// <summary>A machine-readable code, if any.</summary>
    public string? Code { get; } = code;

    /// <summary>A 400 naming the field at fault.</summary>
    public static OpenAIError BadRequest(string message, string? param = null) => new(400, message, param);

    /// <summary>The JSON body.</summary>
    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message,
            ["type"] = Type,
            ["param"] = Param,
            ["code"] = Code,
        },
    };
}
