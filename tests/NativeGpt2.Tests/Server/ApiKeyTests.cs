using System.ClientModel;
using System.Net;
using System.Text.Json;
using NativeGpt2.Cli.Commands;
using NativeGpt2.Server;
using NativeGpt2.Tests.Support;
using OpenAI;
using OpenAI.Chat;
using Xunit;

namespace NativeGpt2.Tests.Server;

/// <summary>A server started with an API key: OpenAI's client with the key is served, any other request gets a 401.</summary>
public class ApiKeyTests
{
    private const string Key = "sk-local-test-key";

    private static OpenAIClient Client(Uri server, string key) =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server, "/v1") });

    [Fact]
    public async Task The_official_client_with_the_key_is_served_and_with_another_key_is_refused()
    {
        await using var app = await ServerFixture.StartAsync(o => o.ApiKey = Key);
        var address = new Uri(app.Urls.Single());
        ChatMessage[] conversation = [new UserChatMessage("Who is there?")];
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 };

        var served = await Client(address, Key).GetChatClient(ServerFixture.ModelId).CompleteChatAsync(conversation, options);
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Client(address, "sk-wrong").GetChatClient(ServerFixture.ModelId).CompleteChatAsync(conversation, options));

        Assert.False(string.IsNullOrEmpty(served.Value.Content.Single().Text));
        Assert.Equal(401, refused.Status);
        Assert.Contains("incorrect API key", refused.Message);
    }

    [Theory]
    [InlineData(null, "no API key")]
    [InlineData("Bearer sk-wrong", "incorrect API key")]
    [InlineData("Bearer sk-local-test-key-and-more", "incorrect API key")]
    [InlineData("Basic c2s6a2V5", "is not 'Bearer KEY'")]
    public async Task Every_endpoint_but_health_answers_401_with_OpenAIs_error_without_the_key(string? authorization, string message)
    {
        await using var app = await ServerFixture.StartAsync(o => o.ApiKey = Key);
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        if (authorization is not null) http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", authorization);

        foreach (var (method, path) in new[] { ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("POST", "/tokenize"), ("POST", "/detokenize"), ("GET", "/v1/models") })
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (method == "POST") request.Content = new StringContent("""{"prompt": "ROMEO:", "max_tokens": 2}""", System.Text.Encoding.UTF8, "application/json");
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
            Assert.Contains(message, error.GetProperty("message").GetString());
        }
        using var health = await http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task Without_a_key_configured_no_key_is_asked_for()
    {
        await using var app = await ServerFixture.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        using var models = await http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a key")]
    [InlineData("key\n")]
    public void A_key_that_cannot_travel_in_a_header_is_refused_when_the_server_is_set_up(string key)
    {
        var error = Assert.Throws<ArgumentException>(() => new NativeGpt2ServerOptions { ApiKey = key }.Validate());
        Assert.Equal(nameof(NativeGpt2ServerOptions.ApiKey), error.ParamName);
    }

    [Theory]
    [InlineData("http://127.0.0.1:8080", false)]
    [InlineData("http://localhost:8080", false)]
    [InlineData("http://[::1]:8080", false)]
    [InlineData("http://0.0.0.0:8080", true)]
    [InlineData("http://*:8080", true)]
    [InlineData("http://192.168.1.20:8080", true)]
    public void Serve_warns_only_when_it_listens_beyond_this_machine_without_a_key(string address, bool reachable) =>
        Assert.Equal(reachable, ServeCommand.IsReachableFromOtherMachines(address));
}
