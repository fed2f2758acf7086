using NativeGpt2.Tests.Support;
using Xunit;
using NativeGpt2.Hub;

namespace NativeGpt2.Tests.Hub;

public class ModelHubTests
{
    private const string Repository = "test-org/tiny-gpt2";

    private static ModelLoadOptions Options(string cache, string endpoint, bool offline = false, IProgress<LoadProgress>? progress = null) => new()
    {
        Hub = new HubOptions
        {
            CacheDirectory = cache, Endpoint = endpoint, Offline = offline,
            ResponseTimeout = LocalHubServer.PatientTimeout, ReadTimeout = LocalHubServer.PatientTimeout,
        },
        Progress = progress,
    };

    [Fact]
    public void Downloads_into_the_hub_cache_layout_and_loads()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("gpt2-mini"));
        var reports = new List<LoadProgress>();

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, progress: new Loading.SynchronousProgress<LoadProgress>(reports.Add)));

        var snapshot = Path.Combine(cache.Path, "models--test-org--tiny-gpt2", "snapshots", LocalHubServer.Commit);
        foreach (var file in new[] { "config.json", "model.safetensors", "vocab.json", "merges.txt", "generation_config.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(Paths.Model("gpt2-mini"), file)), File.ReadAllBytes(Path.Combine(snapshot, file)));
        Assert.Equal(LocalHubServer.Commit, File.ReadAllText(Path.Combine(cache.Path, "models--test-org--tiny-gpt2", "refs", "main")));
        Assert.Empty(Directory.GetFiles(cache.Path, "*.incomplete", SearchOption.AllDirectories));
        Assert.Contains(reports, r => r.Stage == "downloading model.safetensors" && r.Fraction == 1.0);

        // The downloaded model is the model: same weights, same tokenizer.
        Assert.Equal(Models.Get("gpt2-mini").Backbone.Weights.TokenEmbedding.Data, model.Backbone.Weights.TokenEmbedding.Data);
        Assert.Equal([464, 3616, 286, 1204, 318], model.Tokenizer!.Encode("The meaning of life is"));
    }

    [Fact]
    public void A_fine_tunes_added_tokens_are_downloaded_with_the_tokenizer()
    {
        using var cache = new TempDirectory();
        using var source = new TempDirectory();
        CheckpointBuilder.Gpt2MiniWithVocabRows(source.Path, 50_258, """{"<|pad|>": 50257}""");
        using var server = new LocalHubServer(Repository, source.Path);

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint));

        var snapshot = Path.Combine(cache.Path, "models--test-org--tiny-gpt2", "snapshots", LocalHubServer.Commit);
        Assert.True(File.Exists(Path.Combine(snapshot, NativeGpt2.Tokenization.Gpt2Tokenizer.AddedTokensFile)));
        Assert.Equal("<|pad|>", model.Tokenizer!.Decode([50_257]));
    }

    [Fact]
    public void A_repository_with_only_a_tokenizer_json_gives_a_model_with_a_tokenizer()
    {
        using var cache = new TempDirectory();
        using var source = new TempDirectory();
        foreach (var file in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Paths.Model("gpt2-mini"), file), source.File(file));
        File.WriteAllText(source.File(NativeGpt2.Tokenization.Gpt2Tokenizer.TokenizerJsonFile), TokenizerJson.FromVocabularyFiles(Paths.Model("gpt2-mini"), mergesAsPairs: true));
        using var server = new LocalHubServer(Repository, source.Path);

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint));

        var snapshot = Path.Combine(cache.Path, "models--test-org--tiny-gpt2", "snapshots", LocalHubServer.Commit);
        Assert.True(File.Exists(Path.Combine(snapshot, NativeGpt2.Tokenization.Gpt2Tokenizer.TokenizerJsonFile)));
        Assert.Equal([464, 3616, 286, 1204, 318], model.Tokenizer!.Encode("The meaning of life is"));
    }

    [Fact]
    public void A_cached_model_loads_offline_without_the_network()
    {
        using var cache = new TempDirectory();
        using (var server = new LocalHubServer(Repository, Paths.Model("tiny")))
            Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint)).Dispose();

        // The server is gone: offline, and even online with a dead endpoint, the cache answers.
        using var offline = Gpt2CausalLM.Load(Repository, Options(cache.Path, "http://127.0.0.1:9", offline: true));
        using var online = Gpt2CausalLM.Load(Repository, Options(cache.Path, "http://127.0.0.1:9"));
        Assert.Equal(512, offline.Config.VocabSize);
        Assert.Null(online.Tokenizer);
    }

    [Fact]
    public void Offline_without_a_cached_copy_is_not_found()
    {
        using var cache = new TempDirectory();
        var error = Assert.Throws<ModelNotFoundException>(() => Gpt2CausalLM.Load("gpt2", Options(cache.Path, "http://127.0.0.1:9", offline: true)));
        Assert.Contains("offline", error.Message);
        Assert.Contains("openai-community/gpt2", error.Message);
    }

    [Fact]
    public void A_connection_cut_mid_file_leaves_nothing_half_written_and_a_retry_completes()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("gpt2-mini")) { CutFile = "model.safetensors" };

        var error = Assert.Throws<ModelDownloadException>(() => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint)));
        Assert.Contains("model.safetensors", error.Url);

        var snapshot = Path.Combine(cache.Path, "models--test-org--tiny-gpt2", "snapshots", LocalHubServer.Commit);
        Assert.False(File.Exists(Path.Combine(snapshot, "model.safetensors")));
        Assert.Empty(Directory.GetFiles(cache.Path, "*.incomplete", SearchOption.AllDirectories));
        Assert.False(File.Exists(Path.Combine(cache.Path, "models--test-org--tiny-gpt2", "refs", "main")), "an incomplete snapshot must not be recorded");
        Assert.Throws<ModelNotFoundException>(() => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, offline: true)));

        server.CutFile = null;
        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint));
        Assert.Equal(Models.Get("gpt2-mini").Backbone.Weights.TokenEmbedding.Data, model.Backbone.Weights.TokenEmbedding.Data);
        // Files the first attempt completed are kept, not fetched again.
        Assert.Single(server.Requests, r => r.EndsWith("/vocab.json"));
        Assert.Equal(2, server.Requests.Count(r => r.EndsWith("/model.safetensors")));
    }

    [Fact]
    public void An_unknown_repository_is_not_found()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny"));
        Assert.Throws<ModelNotFoundException>(() => Gpt2CausalLM.Load("test-org/other", Options(cache.Path, server.Endpoint)));
    }

    [Fact]
    public void Cache_and_endpoint_follow_the_hugging_face_environment_variables()
    {
        string? Env(Dictionary<string, string> values, string name) => values.GetValueOrDefault(name);
        var options = new HubOptions();
        Assert.Equal("/hf/hub", options.ResolvedCacheDirectory(n => Env(new() { ["HF_HOME"] = "/hf" }, n)));
        Assert.Equal("/cache", options.ResolvedCacheDirectory(n => Env(new() { ["HF_HOME"] = "/hf", ["HF_HUB_CACHE"] = "/cache" }, n)));
        Assert.Equal(Path.Combine("/xdg", "huggingface", "hub"), options.ResolvedCacheDirectory(n => Env(new() { ["XDG_CACHE_HOME"] = "/xdg" }, n)));
        Assert.Equal("https://huggingface.co", options.ResolvedEndpoint(_ => null));
        Assert.Equal("http://mirror:8080", options.ResolvedEndpoint(n => Env(new() { ["HF_ENDPOINT"] = "http://mirror:8080/" }, n)));
        Assert.True(options.ResolvedOffline(n => Env(new() { ["HF_HUB_OFFLINE"] = "1" }, n)));
        Assert.False(options.ResolvedOffline(_ => null));
    }

    [Theory]
    [InlineData("gpt2", true)]
    [InlineData("distilgpt2", true)]
    [InlineData("openai-community/gpt2-xl", true)]
    [InlineData("a/b/c", false)]
    [InlineData("../x", false)]
    [InlineData("org/..", false)]
    [InlineData("synthetic:gpt2", false)]
    public void Hub_names_are_recognised(string spec, bool isHub) => Assert.Equal(isHub, ModelHub.IsHubName(spec));
}
