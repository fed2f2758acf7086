using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;
using NativeGpt2.Hub;

namespace NativeGpt2.Tests.Hub;

/// <summary>Downloads that stall, drip, redirect, are interrupted or are fed hostile names and settings.</summary>
[Collection(TimingSensitive.Name)]
public class HubHardeningTests
{
    private const string Repository = "test-org/tiny-gpt2";
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(1);

    private static ModelLoadOptions Options(string cache, string endpoint, TimeSpan? readTimeout = null, TimeSpan? responseTimeout = null, string? token = null) => new()
    {
        Hub = new HubOptions
        {
            CacheDirectory = cache, Endpoint = endpoint, Token = token,
            ReadTimeout = readTimeout ?? LocalHubServer.PatientTimeout, ResponseTimeout = responseTimeout ?? LocalHubServer.PatientTimeout,
        },
    };

    private static string RepositoryDirectory(string cache) => Path.Combine(cache, "models--test-org--tiny-gpt2");

    private static void AssertNoLeftovers(string cache)
    {
        Assert.Empty(Directory.GetFiles(cache, "*.incomplete", SearchOption.AllDirectories));
        var snapshots = Path.Combine(RepositoryDirectory(cache), "snapshots");
        if (Directory.Exists(snapshots)) Assert.Empty(Directory.GetDirectories(snapshots, ".staging-*"));
    }

    [Fact]
    public void A_body_that_stalls_fails_within_the_read_timeout_naming_the_file()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { StallFile = "model.safetensors" };
        var clock = Stopwatch.StartNew();

        ModelDownloadException? error = null;
        Guard.Within(TimeSpan.FromSeconds(30), () => error = Assert.Throws<ModelDownloadException>(
            () => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, readTimeout: Short))), "stalled download");

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30));
        Assert.EndsWith("/model.safetensors", error!.Url);
        Assert.Contains("stalled", error.Message);
        Assert.Contains("HF_HUB_DOWNLOAD_TIMEOUT", error.Message);
        AssertNoLeftovers(cache.Path);
        Assert.False(File.Exists(Path.Combine(RepositoryDirectory(cache.Path), "refs", "main")));
    }

    [Fact]
    public void A_server_that_never_answers_fails_within_the_response_timeout()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { StallBeforeHeaders = true };

        ModelDownloadException? error = null;
        Guard.Within(TimeSpan.FromSeconds(30), () => error = Assert.Throws<ModelDownloadException>(
            () => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, responseTimeout: Short))), "silent server");

        Assert.EndsWith("/config.json", error!.Url);
        Assert.Contains("HF_HUB_ETAG_TIMEOUT", error.Message);
        AssertNoLeftovers(cache.Path);
    }

    [Fact]
    public void A_stall_is_resumed_with_a_range_request_when_the_server_takes_ranges()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { StallFile = "model.safetensors", StallCount = 1, SupportsRanges = true };

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, readTimeout: Short));

        var expected = File.ReadAllBytes(Path.Combine(Paths.Model("tiny"), "model.safetensors"));
        var snapshot = Path.Combine(RepositoryDirectory(cache.Path), "snapshots", LocalHubServer.Commit);
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        var weightRequests = server.Log.Where(r => r.Path.EndsWith("/model.safetensors")).ToList();
        Assert.Equal(2, weightRequests.Count);
        Assert.Null(weightRequests[0].Range);
        Assert.Equal($"bytes={expected.Length / 2}-", weightRequests[1].Range);
        AssertNoLeftovers(cache.Path);
    }

    [Fact]
    public void A_slow_download_that_keeps_delivering_is_not_cut_off()
    {
        using var cache = new TempDirectory();
        // 1 KB every 30 ms: the 186 KB weights take about 5.5 s, longer than the 3 s read timeout, yet no
        // read waits more than a few tens of milliseconds (the margin absorbs a loaded test machine).
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { Drip = TimeSpan.FromMilliseconds(30) };
        var clock = Stopwatch.StartNew();

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, readTimeout: TimeSpan.FromSeconds(3)));

        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(3), $"the download took {clock.Elapsed}, not longer than the read timeout");
        Assert.Equal(512, model.Config.VocabSize);
    }

    [Fact]
    public void Redirects_to_a_download_location_are_followed()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { Redirect = true };

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, token: "hf_secret"));

        Assert.Equal(Models.Get("tiny").Backbone.Weights.TokenEmbedding.Data, model.Backbone.Weights.TokenEmbedding.Data);
        Assert.Contains(server.Log, r => r.Path.StartsWith("/cdn/") && r.Path.EndsWith("/model.safetensors"));
        Assert.All(server.Log.Where(r => r.Path.Contains("/resolve/")), r => Assert.Equal("Bearer hf_secret", r.Authorization));
    }

    [Fact]
    public void An_empty_token_sends_no_authorization_header()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny"));

        Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, token: "  ")).Dispose();

        Assert.NotEmpty(server.Log);
        Assert.All(server.Log, r => Assert.Null(r.Authorization));
    }

    [Fact]
    public void A_private_repository_loads_with_its_token_and_without_it_says_how_to_give_one()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { RequiredToken = "hf_right" };

        var none = Assert.Throws<ModelDownloadException>(() => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, token: " ")));
        Assert.Contains("HTTP 401: the repository is private or gated; set HF_TOKEN", none.Message);
        Assert.Contains("hf auth login", none.Message);
        var wrong = Assert.Throws<ModelDownloadException>(() => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, token: "hf_wrong")));
        Assert.Contains("HTTP 403: the access token sent was refused", wrong.Message);
        AssertNoLeftovers(cache.Path);

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, token: "hf_right"));
        Assert.Equal(Models.Get("tiny").Backbone.Weights.TokenEmbedding.Data, model.Backbone.Weights.TokenEmbedding.Data);
    }

    [Theory]
    [InlineData("x?y=1#f")]
    [InlineData("..%2f..%2fvictim")]
    [InlineData("%2e%2e")]
    [InlineData(".hidden.safetensors")]
    [InlineData("a b.safetensors")]
    [InlineData("shard\u0001.safetensors")]
    public void Shard_names_from_a_downloaded_index_that_are_not_plain_file_names_are_never_requested(string shard)
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny-sharded"));
        var index = File.ReadAllText(Path.Combine(Paths.Model("tiny-sharded"), "model.safetensors.index.json"))
            .Replace("model-00002-of-00005.safetensors", shard.Replace("\u0001", "\\u0001"));
        server.Overrides["model.safetensors.index.json"] = Encoding.UTF8.GetBytes(index);

        var error = Assert.Throws<ModelFormatException>(() => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint, token: "hf_secret")));

        Assert.Contains("plain file name", error.Message);
        Assert.DoesNotContain(server.Requests, r => r.Contains("safetensors") && !r.EndsWith("/model.safetensors") && !r.EndsWith(".index.json"));
        AssertNoLeftovers(cache.Path);
    }

    [Theory]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("main")]
    [InlineData("0123456789abcdef0123456789abcdef0123456")]
    [InlineData("../../outside")]
    public void A_commit_header_that_is_not_a_commit_hash_is_refused(string commit)
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { CommitHeader = commit };

        var error = Assert.Throws<ModelDownloadException>(() => Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint)));

        Assert.Contains("not a 40-digit commit hash", error.Message);
        var snapshots = Path.Combine(RepositoryDirectory(cache.Path), "snapshots");
        Assert.Empty(Directory.GetFiles(snapshots, "*", SearchOption.AllDirectories));
        AssertNoLeftovers(cache.Path);
    }

    [Fact]
    public void Without_a_commit_header_the_snapshot_is_named_after_a_plain_revision()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { CommitHeader = null };

        using var model = Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint));

        Assert.True(File.Exists(Path.Combine(RepositoryDirectory(cache.Path), "snapshots", "main", "model.safetensors")));
        Assert.Equal("main", File.ReadAllText(Path.Combine(RepositoryDirectory(cache.Path), "refs", "main")));
    }

    [Theory]
    [InlineData("a--b/c")]
    [InlineData("a/b--c")]
    [InlineData("org/name\n")]
    [InlineData("org/name\r\n")]
    [InlineData("-org/name")]
    [InlineData("org/name.")]
    [InlineData("org/na me")]
    [InlineData("org/name.git")]
    [InlineData("org/ümlaut")]
    public void Repository_ids_are_validated_as_huggingface_hub_does(string id)
    {
        Assert.False(ModelHub.IsHubName(id));
        using var cache = new TempDirectory();
        var error = Assert.Throws<ModelNotFoundException>(() => ModelHub.ResolveAsync(id, new HubOptions { CacheDirectory = cache.Path, Endpoint = "http://127.0.0.1:9" }).GetAwaiter().GetResult());
        Assert.Contains("not a hub model name", error.Message);
    }

    [Fact]
    public void A_repository_id_may_have_at_most_96_characters()
    {
        Assert.True(ModelHub.IsHubName("o/" + new string('n', 94)));
        Assert.False(ModelHub.IsHubName("o/" + new string('n', 95)));
    }

    [Theory]
    [InlineData("refs/pr/1", true)]
    [InlineData("v1.0", true)]
    [InlineData(LocalHubServer.Commit, true)]
    [InlineData(".", false)]
    [InlineData("a/../b", false)]
    [InlineData("main\n", false)]
    [InlineData("/main", false)]
    public void Revisions_are_branch_tag_or_commit_names(string revision, bool valid) =>
        Assert.Equal(valid, ModelHub.IsRevision(revision));

    [Theory]
    [InlineData("1", true)] [InlineData("ON", true)] [InlineData("on", true)] [InlineData("True", true)] [InlineData("YES", true)] [InlineData(" yes ", true)]
    [InlineData("0", false)] [InlineData("OFF", false)] [InlineData("no", false)] [InlineData("False", false)] [InlineData("", false)]
    public void Boolean_environment_variables_take_the_spellings_huggingface_hub_takes(string value, bool expected)
    {
        var options = new HubOptions();
        Assert.Equal(expected, options.ResolvedOffline(n => n == "HF_HUB_OFFLINE" ? value : null));
        Assert.Equal(expected, options.ResolvedOffline(n => n == "TRANSFORMERS_OFFLINE" ? value : null));
    }

    [Theory]
    [InlineData("y")]
    [InlineData("enabled")]
    [InlineData("2")]
    public void A_boolean_environment_variable_with_another_value_is_a_typed_error(string value)
    {
        var error = Assert.Throws<HubConfigurationException>(() => new HubOptions().ResolvedOffline(n => n == "HF_HUB_OFFLINE" ? value : null));
        Assert.Equal("HF_HUB_OFFLINE", error.Setting);
        Assert.Contains("not a boolean", error.Message);
    }

    [Fact]
    public void Offline_spelled_ON_never_touches_the_network()
    {
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny"));
        var options = new HubOptions { CacheDirectory = cache.Path, Endpoint = server.Endpoint };
        Environment.SetEnvironmentVariable("TRANSFORMERS_OFFLINE", "ON");
        try
        {
            Assert.Throws<ModelNotFoundException>(() => ModelHub.ResolveAsync(Repository, options).GetAwaiter().GetResult());
        }
        finally
        {
            Environment.SetEnvironmentVariable("TRANSFORMERS_OFFLINE", null);
        }
        Assert.Empty(server.Requests);
    }

    [Theory]
    [InlineData("file:///etc")]
    [InlineData("ftp://mirror.example")]
    [InlineData("huggingface.co")]
    [InlineData("http://")]
    [InlineData("https://user:pass@hub.example")]
    [InlineData("https://hub.example/?x=1")]
    public void A_malformed_endpoint_is_a_typed_error_naming_the_setting(string endpoint)
    {
        var error = Assert.Throws<HubConfigurationException>(() => new HubOptions().ResolvedEndpoint(n => n == "HF_ENDPOINT" ? endpoint : null));
        Assert.Equal("HF_ENDPOINT", error.Setting);
        Assert.Contains("http:// or https://", error.Message);
        var property = Assert.Throws<HubConfigurationException>(() => new HubOptions { Endpoint = endpoint }.ResolvedEndpoint(_ => null));
        Assert.Equal(nameof(HubOptions.Endpoint), property.Setting);
    }

    /// <summary>An environment of <paramref name="variables"/> alone, its home a fresh folder: no token file of the machine's is read.</summary>
    private static Func<string, string?> Variables(TempDirectory home, params (string Name, string Value)[] variables) =>
        name => name == "HOME" ? home.Path : variables.FirstOrDefault(v => v.Name == name).Value;

    [Theory]
    [InlineData("hf_abc\n", "hf_abc")]
    [InlineData("hf_abc", "hf_abc")]
    [InlineData("", null)]
    [InlineData("   ", null)]
    public void Tokens_are_trimmed_and_an_empty_one_means_none(string token, string? expected)
    {
        using var home = new TempDirectory();
        Assert.Equal(expected, new HubOptions().ResolvedToken(Variables(home, ("HF_TOKEN", token))));
    }

    [Theory]
    [InlineData("hf_a\nb")]
    [InlineData("hf_a\rb")]
    [InlineData("hf_a b")]
    [InlineData("hf_\u0000")]
    public void A_token_with_a_line_break_or_control_character_is_a_typed_error(string token)
    {
        using var home = new TempDirectory();
        var error = Assert.Throws<HubConfigurationException>(() => new HubOptions().ResolvedToken(Variables(home, ("HF_TOKEN", token))));
        Assert.Equal("HF_TOKEN", error.Setting);
    }

    [Fact]
    public void The_token_comes_from_the_option_then_HF_TOKEN_then_the_older_variable_then_the_saved_file()
    {
        using var home = new TempDirectory();
        var saved = Path.Combine(home.Path, ".cache", "huggingface", "token");
        Directory.CreateDirectory(Path.GetDirectoryName(saved)!);
        File.WriteAllText(saved, "hf_saved\n");   // as `hf auth login` leaves it
        var options = new HubOptions();

        Assert.Equal("hf_option", new HubOptions { Token = "hf_option" }.ResolvedToken(Variables(home, ("HF_TOKEN", "hf_env"))));
        Assert.Equal("hf_env", options.ResolvedToken(Variables(home, ("HF_TOKEN", "hf_env"), ("HUGGING_FACE_HUB_TOKEN", "hf_old"))));
        Assert.Equal("hf_old", options.ResolvedToken(Variables(home, ("HF_TOKEN", ""), ("HUGGING_FACE_HUB_TOKEN", "hf_old"))));
        Assert.Equal("hf_saved", options.ResolvedToken(Variables(home)));
        Assert.Equal("hf_saved", options.ResolvedToken(Variables(home, ("HF_TOKEN", " "))));

        // The file lives in HF_HOME (or XDG_CACHE_HOME/huggingface), or where HF_TOKEN_PATH says.
        File.WriteAllText(home.File("elsewhere"), "hf_path");
        Assert.Equal("hf_path", options.ResolvedToken(Variables(home, ("HF_TOKEN_PATH", home.File("elsewhere")))));
        Assert.Equal("hf_path", options.ResolvedToken(Variables(home, ("HF_TOKEN_PATH", "~/elsewhere"))));
        Directory.CreateDirectory(home.File("hf"));
        File.WriteAllText(Path.Combine(home.File("hf"), "token"), "hf_home");
        Assert.Equal("hf_home", options.ResolvedToken(Variables(home, ("HF_HOME", home.File("hf")))));
        Assert.Null(options.ResolvedToken(Variables(home, ("HF_TOKEN_PATH", home.File("missing")))));
        Assert.Null(options.ResolvedToken(Variables(home, ("XDG_CACHE_HOME", home.File("empty-xdg")))));
    }

    [Fact]
    public void HF_HUB_DISABLE_IMPLICIT_TOKEN_sends_only_a_token_given_in_the_options()
    {
        using var home = new TempDirectory();
        File.WriteAllText(home.File("token"), "hf_saved");
        var environment = Variables(home, ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1"), ("HF_TOKEN", "hf_env"), ("HF_TOKEN_PATH", home.File("token")));

        Assert.Null(new HubOptions().ResolvedToken(environment));
        Assert.Equal("hf_option", new HubOptions { Token = "hf_option" }.ResolvedToken(environment));
        var typo = Assert.Throws<HubConfigurationException>(() => new HubOptions().ResolvedToken(Variables(home, ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "yes please"))));
        Assert.Equal("HF_HUB_DISABLE_IMPLICIT_TOKEN", typo.Setting);
    }

    [Fact]
    public void A_token_file_that_is_a_folder_too_long_or_holds_more_than_a_token_is_a_typed_error_naming_it()
    {
        using var home = new TempDirectory();
        var options = new HubOptions();
        Directory.CreateDirectory(home.File("folder"));
        File.WriteAllText(home.File("long"), new string('x', 5000));
        File.WriteAllText(home.File("two-lines"), "hf_a\nhf_b\n");

        foreach (var name in (string[])["folder", "long", "two-lines"])
        {
            var error = Assert.Throws<HubConfigurationException>(() => options.ResolvedToken(Variables(home, ("HF_TOKEN_PATH", home.File(name)))));
            Assert.Equal("HF_TOKEN_PATH", error.Setting);
            Assert.Contains(home.File(name), error.Message);
        }
    }

    [Fact]
    public void The_cache_follows_HF_HUB_CACHE_then_the_older_variable_then_HF_HOME_then_XDG_CACHE_HOME_then_the_home_folder()
    {
        using var home = new TempDirectory();
        var options = new HubOptions();
        Assert.Equal("/new", options.ResolvedCacheDirectory(Variables(home, ("HF_HUB_CACHE", "/new"), ("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/hf"))));
        Assert.Equal("/old", options.ResolvedCacheDirectory(Variables(home, ("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/hf"))));
        Assert.Equal(Path.Combine("/hf", "hub"), options.ResolvedCacheDirectory(Variables(home, ("HF_HOME", "/hf"), ("XDG_CACHE_HOME", "/xdg"))));
        Assert.Equal(Path.Combine("/xdg", "huggingface", "hub"), options.ResolvedCacheDirectory(Variables(home, ("XDG_CACHE_HOME", "/xdg"))));
        Assert.Equal(Path.Combine(home.Path, ".cache", "huggingface", "hub"), options.ResolvedCacheDirectory(Variables(home)));
        Assert.Equal(Path.Combine(home.Path, "models"), options.ResolvedCacheDirectory(Variables(home, ("HF_HUB_CACHE", "~/models"))));
        Assert.Equal(Path.Combine(home.Path, "hf", "hub"), options.ResolvedCacheDirectory(Variables(home, ("HF_HOME", "~/hf"))));
        Assert.Equal("/set", new HubOptions { CacheDirectory = "/set" }.ResolvedCacheDirectory(Variables(home, ("HF_HUB_CACHE", "/new"))));
    }

    [Fact]
    public async Task The_command_line_sends_the_token_hf_auth_login_saved_in_HF_HOME()
    {
        using var hfHome = new TempDirectory();
        File.WriteAllText(hfHome.File("token"), "hf_saved_by_login\n");
        using var server = new LocalHubServer(Repository, Paths.Model("tiny"));
        var (exitCode, stdout, stderr) = await RunCliAsync(hfHome.Path, server, "inspect", "--model", Repository);

        Assert.True(exitCode == 0, stderr);
        Assert.Contains("model.safetensors", stdout);
        Assert.True(Directory.Exists(Path.Combine(hfHome.Path, "hub", "models--test-org--tiny-gpt2")), "the model was not cached under HF_HOME/hub");
        Assert.All(server.Log.Where(r => r.Path.Contains("/resolve/")), r => Assert.Equal("Bearer hf_saved_by_login", r.Authorization));
        Assert.NotEmpty(server.Log);
    }

    [Fact]
    public async Task The_command_line_downloads_the_revision_it_is_given()
    {
        using var hfHome = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { Revision = "v1.0" };

        var main = await RunCliAsync(hfHome.Path, server, "inspect", "--model", Repository);
        var tagged = await RunCliAsync(hfHome.Path, server, "inspect", "--model", Repository, "--revision", "v1.0");
        var cached = await RunCliAsync(hfHome.Path, server, "inspect", "--model", Repository, "--revision", "v1.0", "--offline");
        var invalid = await RunCliAsync(hfHome.Path, server, "inspect", "--model", Repository, "--revision", "../v1.0");

        Assert.Equal(CliApp.BadInput, main.ExitCode);   // the hub has no main here
        Assert.Contains("/resolve/main/config.json", string.Join(" ", server.Requests));
        Assert.True(tagged.ExitCode == 0, tagged.Error);
        Assert.Contains("model.safetensors", tagged.Out);
        Assert.Contains(server.Requests, r => r.EndsWith("/resolve/v1.0/model.safetensors", StringComparison.Ordinal));
        Assert.Equal(LocalHubServer.Commit, File.ReadAllText(Path.Combine(hfHome.Path, "hub", "models--test-org--tiny-gpt2", "refs", "v1.0")).Trim());
        Assert.True(cached.ExitCode == 0, cached.Error);
        Assert.Equal(CliApp.UsageError, invalid.ExitCode);
        Assert.StartsWith("error: --revision: '../v1.0' is not a branch, tag or commit", invalid.Error);
    }

    /// <summary>Runs <c>nativegpt2</c> in a process of its own with <paramref name="hfHome"/> as HF_HOME and the hub at <paramref name="server"/>.</summary>
    private static async Task<(int ExitCode, string Out, string Error)> RunCliAsync(string hfHome, LocalHubServer server, params string[] args)
    {
        using var process = ExternalProcess.StartCli(args, new Dictionary<string, string?>
        {
            ["HF_HOME"] = hfHome, ["HF_ENDPOINT"] = server.Endpoint,
            ["HF_TOKEN"] = null, ["HUGGING_FACE_HUB_TOKEN"] = null, ["HF_HUB_CACHE"] = null, ["HF_TOKEN_PATH"] = null, ["HF_HUB_OFFLINE"] = null,
        });
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = await process.StandardOutput.ReadToEndAsync();
        using (var limit = new CancellationTokenSource(TimeSpan.FromMinutes(1)))
            await process.WaitForExitAsync(limit.Token);
        return (process.ExitCode, stdout, await stderr);
    }

    [Theory]
    [InlineData("HF_HUB_DOWNLOAD_TIMEOUT")]
    [InlineData("HF_HUB_ETAG_TIMEOUT")]
    public void Timeouts_come_from_the_environment_in_seconds(string variable)
    {
        var options = new HubOptions();
        Func<HubOptions, Func<string, string?>, TimeSpan> read = variable == "HF_HUB_DOWNLOAD_TIMEOUT"
            ? (o, e) => o.ResolvedReadTimeout(e) : (o, e) => o.ResolvedResponseTimeout(e);
        Assert.Equal(HubOptions.DefaultTimeout, read(options, _ => null));
        Assert.Equal(TimeSpan.FromSeconds(2.5), read(options, n => n == variable ? "2.5" : null));
        Assert.Throws<HubConfigurationException>(() => read(options, n => n == variable ? "-1" : null));
        Assert.Throws<HubConfigurationException>(() => read(options, n => n == variable ? "soon" : null));
    }

    [Fact]
    public void The_next_download_sweeps_leftovers_of_killed_runs_but_not_live_downloads()
    {
        using var cache = new TempDirectory();
        var snapshots = Path.Combine(RepositoryDirectory(cache.Path), "snapshots");
        // A killed run: its lock file is there but nobody holds it.
        var dead = Directory.CreateDirectory(Path.Combine(snapshots, ".staging-dead")).FullName;
        File.WriteAllText(Path.Combine(dead, ".lock"), "");
        File.WriteAllText(Path.Combine(dead, "model.safetensors.incomplete"), "partial");
        // A live download in another process: it holds its lock.
        var live = Directory.CreateDirectory(Path.Combine(snapshots, ".staging-live")).FullName;
        using var held = new FileStream(Path.Combine(live, ".lock"), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        File.WriteAllText(Path.Combine(live, "model.safetensors.incomplete"), "partial");
        // A temporary file an older version left in a snapshot, untouched for a day.
        var old = Directory.CreateDirectory(Path.Combine(snapshots, LocalHubServer.Commit)).FullName;
        var stale = Path.Combine(old, "model.safetensors.0123.incomplete");
        File.WriteAllText(stale, "partial");
        File.SetLastWriteTimeUtc(stale, DateTime.UtcNow.AddDays(-1));

        using (var server = new LocalHubServer(Repository, Paths.Model("tiny")))
            Gpt2CausalLM.Load(Repository, Options(cache.Path, server.Endpoint)).Dispose();

        Assert.False(Directory.Exists(dead));
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(Path.Combine(live, "model.safetensors.incomplete")));
    }

    [Theory]
    [InlineData(PosixSignal.SIGINT)]
    [InlineData(PosixSignal.SIGTERM)]
    public async Task A_signal_during_a_download_cancels_cleans_up_and_exits_130(PosixSignal signal)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;   // POSIX signals only
        using var cache = new TempDirectory();
        using var server = new LocalHubServer(Repository, Paths.Model("tiny")) { StallFile = "model.safetensors" };
        var cli = Path.Combine(AppContext.BaseDirectory, "NativeGpt2.Cli.dll");
        string[] command = ["dotnet", cli, "inspect", "--model", Repository];
        // A shell starts a background job with SIGINT ignored, its children inherit that, and the CLI then ignores SIGINT
        // as any program does (so would the test, run from a background job): env gives the CLI the default action back.
        if (signal == PosixSignal.SIGINT && IgnoresSigint()) command = ["env", "--default-signal=INT", .. command];
        var start = new ProcessStartInfo(command[0], command[1..])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            Environment = { ["HF_HUB_CACHE"] = cache.Path, ["HF_ENDPOINT"] = server.Endpoint, ["HF_HUB_DOWNLOAD_TIMEOUT"] = "600" },
        };
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            // Wait until the weights are half downloaded and the server has gone silent.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (Directory.GetFiles(cache.Path, "model.safetensors.incomplete", SearchOption.AllDirectories).Length == 0 || !server.Requests.Any(r => r.EndsWith("/model.safetensors")))
            {
                if (process.HasExited) Assert.Fail($"the CLI exited early: {await stderr}");
                Assert.True(DateTime.UtcNow < deadline, "the download never started");
                await Task.Delay(50);
            }
            await Task.Delay(200);
            Assert.Equal(0, Kill(process.Id, signal == PosixSignal.SIGINT ? 2 : 15));
            using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await process.WaitForExitAsync(exit.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill();
                Assert.Fail($"the CLI did not exit within 30 s of {signal}; it wrote: {await stderr}");
            }
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }

        Assert.Equal(130, process.ExitCode);
        Assert.Contains("error: cancelled", await stderr);
        AssertNoLeftovers(cache.Path);
    }

    /// <summary>Whether this process ignores SIGINT (Linux: the SigIgn mask of /proc/self/status; elsewhere assumed not).</summary>
    private static bool IgnoresSigint()
    {
        if (!OperatingSystem.IsLinux()) return false;
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (2 - 1))) != 0;
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
