using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Samples;

/// <summary>Each sample under samples/, run as a user runs it, with its output checked.</summary>
public class SampleTests
{
    /// <summary>The sample's built assembly, in the configuration these tests were built in.</summary>
    private static string Sample(string name)
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name; // bin/<configuration>/net10.0/
        var path = Path.Combine(Paths.Repository, "samples", name, "bin", configuration, "net10.0", name + ".dll");
        Assert.True(File.Exists(path), $"the sample was not built: {path}");
        return path;
    }

    private static Process Start(string sample, params string[] arguments) => ExternalProcess.Start("dotnet", [Sample(sample), .. arguments]);

    private static string Run(string sample, params string[] arguments) => ExternalProcess.Run("dotnet", [Sample(sample), .. arguments], TimeSpan.FromMinutes(2));

    [Fact]
    public void HelloGpt2_streams_the_seeded_continuation()
    {
        var output = Run("HelloGpt2");
        var expected = Models.Get("shakespeare-char").Generate("ROMEO:", new GenerationOptions { MaxNewTokens = 120, Temperature = 0.8f, TopK = 40, Seed = 42 });
        Assert.Equal("ROMEO:" + expected.Text, output.TrimEnd('\n'));
    }

    [Fact]
    public void SemanticSearch_ranks_a_document_first_for_its_own_text()
    {
        const string Document = "If music be the food of love, play on.";
        var lines = Run("SemanticSearch", Document).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal($"query: {Document}", lines[0]);
        Assert.Equal(4, lines.Length);
        Assert.Equal($"1.0000  {Document}", lines[1]);
        var scores = lines[1..].Select(l => double.Parse(l[..6], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(scores.OrderDescending(), scores);
    }

    [Fact]
    public async Task WebApi_serves_its_own_routes_and_the_models_under_its_prefix()
    {
        using var process = Start("WebApi", "--urls", "http://127.0.0.1:0");
        try
        {
            // ASP.NET Core logs the address it bound: "Now listening on: http://127.0.0.1:PORT".
            var reading = Task.Run(() =>
            {
                while (process.StandardOutput.ReadLine() is { } line)
                {
                    if (Regex.Match(line, @"Now listening on: (http://\S+)") is { Success: true } match) return new Uri(match.Groups[1].Value);
                }
                return null;
            });
            var address = await reading.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.NotNull(address);

            using var http = new HttpClient { BaseAddress = address };
            Assert.StartsWith("A web app", await http.GetStringAsync("/"));
            using var response = await http.PostAsJsonAsync("/ai/v1/chat/completions",
                new { messages = new[] { new { role = "user", content = "Who is there?" } }, max_tokens = 10, temperature = 0 });
            response.EnsureSuccessStatusCode();
            Assert.Equal("WebApi sample", response.Headers.GetValues("X-Served-By").Single());
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("bard", body.GetProperty("model").GetString());
            Assert.InRange(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 1, 10);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }
}
