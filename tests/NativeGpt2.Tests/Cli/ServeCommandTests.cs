using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Cli;

/// <summary><c>nativegpt2 serve</c>: listens where told, answers, and stops cleanly when cancelled (Ctrl+C, SIGTERM).</summary>
public class ServeCommandTests
{
    /// <summary>A <c>serve</c> command running in-process until <see cref="Stop"/>, with what it wrote to stderr.</summary>
    private sealed class RunningServe : IDisposable
    {
        private readonly StringWriter _buffer = new();
        // Synchronized writers lock on themselves: reading under that lock sees whole lines.
        private readonly TextWriter _stderr;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<int> _run;

        private RunningServe(string[] arguments)
        {
            _stderr = TextWriter.Synchronized(_buffer);
            _run = CliApp.RunAsync(["serve", "--model", Paths.Model("shakespeare-char"), "--urls", "http://127.0.0.1:0", .. arguments], TextWriter.Null, _stderr, _stop.Token);
        }

        public Uri Address { get; private set; } = null!;

        public string Errors() { lock (_stderr) return _buffer.ToString(); }

        /// <summary>Starts serve with <paramref name="arguments"/> and waits for its "serving … on ADDRESS" line, which must match <paramref name="line"/>.</summary>
        public static async Task<RunningServe> StartAsync(string line, params string[] arguments)
        {
            var serve = new RunningServe(arguments);
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!serve._run.IsCompleted && DateTime.UtcNow < deadline)
            {
                if (Regex.Match(serve.Errors(), line) is { Success: true } match)
                {
                    serve.Address = new Uri(match.Groups[1].Value);
                    return serve;
                }
                await Task.Delay(50);
            }
            Assert.Fail($"serve did not report {line}: {serve.Errors()}");
            return serve;
        }

        /// <summary>Cancels the command, as Ctrl+C does, and returns its exit code.</summary>
        public async Task<int> Stop()
        {
            await _stop.CancelAsync();
            return await _run;
        }

        public void Dispose() => _stop.Dispose();
    }

    [Fact]
    public async Task Serve_answers_completions_and_stops_with_exit_code_zero()
    {
        using var serve = await RunningServe.StartAsync(@" on (http://127\.0\.0\.1:\d+)", "--model-id", "bard");

        using var http = new HttpClient { BaseAddress = serve.Address };
        using var fromPage = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Headers = { { "Origin", "http://localhost:3000" } } };
        using var modelsResponse = await http.SendAsync(fromPage);
        // No --cors-origin: a browser gets no permission to read the answer.
        Assert.False(modelsResponse.Headers.Contains("Access-Control-Allow-Origin"));
        var models = JsonDocument.Parse(await modelsResponse.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("bard", models.GetProperty("data")[0].GetProperty("id").GetString());
        using var response = await http.PostAsync("/v1/completions", new StringContent("""{"prompt":"ROMEO:\n","max_tokens":12,"temperature":0}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("text").GetString();
        Assert.Equal(Models.Get("shakespeare-char").Generate("ROMEO:\n", new GenerationOptions { Greedy = true, MaxNewTokens = 12 }).Text, text);

        Assert.Equal(CliApp.Success, await serve.Stop());
        Assert.Contains("stopped", serve.Errors());
    }

    [Fact]
    public async Task Serve_with_an_api_key_asks_every_request_for_it()
    {
        using var serve = await RunningServe.StartAsync(@" on (http://127\.0\.0\.1:\d+), API key required", "--api-key", "sk-cli");

        using var http = new HttpClient { BaseAddress = serve.Address };
        using var without = await http.GetAsync("/v1/models");
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "sk-cli");
        using var with = await http.GetAsync("/v1/models");

        Assert.Equal(HttpStatusCode.Unauthorized, without.StatusCode);
        Assert.Equal(HttpStatusCode.OK, with.StatusCode);
        Assert.Equal(CliApp.Success, await serve.Stop());
        Assert.DoesNotContain("without an API key", serve.Errors());
    }

    [Fact]
    public async Task Serve_answers_a_browsers_preflight_for_the_origins_it_is_given_and_no_others()
    {
        using var serve = await RunningServe.StartAsync(@" on (http://127\.0\.0\.1:\d+)", "--cors-origin", "http://localhost:3000", "--api-key", "sk-cors");
        using var http = new HttpClient { BaseAddress = serve.Address };

        async Task<HttpResponseMessage> Preflight(string origin)
        {
            using var request = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
            request.Headers.Add("Origin", origin);
            request.Headers.Add("Access-Control-Request-Method", "POST");
            request.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
            return await http.SendAsync(request);
        }
        using var allowed = await Preflight("http://localhost:3000");
        using var other = await Preflight("http://elsewhere.test");
        using var call = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Headers = { { "Origin", "http://localhost:3000" }, { "Authorization", "Bearer sk-cors" } } };
        using var answered = await http.SendAsync(call);

        // The preflight carries no API key, and needs none; the call itself still does.
        Assert.Equal(HttpStatusCode.NoContent, allowed.StatusCode);
        Assert.Equal("http://localhost:3000", allowed.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Contains("authorization", allowed.Headers.GetValues("Access-Control-Allow-Headers").Single());
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        Assert.Equal("http://localhost:3000", answered.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal(CliApp.Success, await serve.Stop());
    }

    [Theory]
    [InlineData("http://localhost:3000/app")]
    [InlineData("localhost:3000")]
    [InlineData("ftp://host")]
    public void A_cors_origin_that_is_not_an_origin_is_a_usage_error(string origin)
    {
        var result = CliRunner.Run("serve", "--model", Paths.Model("shakespeare-char"), "--cors-origin", origin);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.StartsWith($"error: --cors-origin: '{origin}' is not an origin", result.Error);
    }

    [Theory]
    [InlineData("notaurl")]
    [InlineData("http://127.0.0.1:99999")]
    [InlineData("ftp://127.0.0.1:21")]
    [InlineData(" ; ")]
    public void A_bad_address_is_a_usage_error_naming_urls(string urls)
    {
        var result = CliRunner.Run("serve", "--model", Paths.Model("shakespeare-char"), "--urls", urls);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.StartsWith("error: --urls", result.Error);
    }

    [Fact]
    public void A_port_in_use_is_one_error_line_and_exit_code_1()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var result = CliRunner.Run("serve", "--model", Paths.Model("shakespeare-char"), "--urls", $"http://127.0.0.1:{port}");
        Assert.Equal(CliApp.BadInput, result.ExitCode);
        Assert.Equal($"error: Failed to bind to address http://127.0.0.1:{port}: address already in use.", result.Error.Trim());
    }

    [Theory]
    [InlineData("--max-concurrent", "0", "must be at least 1")]
    [InlineData("--max-batch-size", "0", "must be from 1 to 64")]
    [InlineData("--max-batch-size", "65", "must be from 1 to 64")]
    [InlineData("--prefill-chunk-tokens", "0", "must be at least 1")]
    [InlineData("--api-key", "two words", "without spaces")]
    public void A_bad_queue_or_batch_size_is_a_usage_error(string option, string value, string rule)
    {
        var result = CliRunner.Run("serve", "--model", Paths.Model("shakespeare-char"), option, value);
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.Contains(option, result.Error);
        Assert.Contains(rule, result.Error);
    }
}

/// <summary>The command line as users meet it: its name in help, and a mistyped command.</summary>
public class CommandLineSurfaceTests
{
    [Fact]
    public void Help_names_the_command_as_users_type_it()
    {
        var result = CliRunner.Run("--help");
        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.Contains("nativegpt2 [command] [options]", result.Out);
        Assert.DoesNotContain(RootCommandName, result.Out);
        Assert.Contains("nativegpt2 serve [options]", CliRunner.Run("serve", "--help").Out);
    }

    private static string RootCommandName => System.CommandLine.RootCommand.ExecutableName + " ";

    [Theory]
    [InlineData("genrate", "generate")]
    [InlineData("tokenise", "tokenize")]
    [InlineData("serv", "serve")]
    public void A_mistyped_command_is_named_with_the_likely_one(string typed, string meant)
    {
        var result = CliRunner.Run(typed, "--model", "x");
        Assert.Equal(CliApp.UsageError, result.ExitCode);
        Assert.StartsWith($"error: Unrecognized command or argument '{typed}'.", result.Error);
        Assert.Contains($"Did you mean '{meant}'", result.Error);
        Assert.DoesNotContain("Required command was not provided", result.Error);
    }
}
