using System.IO.Compression;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Packaging;

/// <summary>
/// <c>dotnet pack</c> makes the four packages, and the tool installed from them runs: what a user gets from NuGet.
/// Packs a version of its own so that no cached package of the same number stands in for this build.
/// </summary>
public class PackageTests
{
    private static readonly string[] Projects = ["NativeGpt2", "NativeGpt2.Ilgpu", "NativeGpt2.Server", "NativeGpt2.Cli"];

    [Fact]
    public void Pack_makes_every_package_and_the_installed_tool_generates()
    {
        var root = Directory.CreateTempSubdirectory("nativegpt2-pack-");
        try
        {
            var feed = Path.Combine(root.FullName, "feed");
            var version = $"0.0.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
            foreach (var project in Projects)
                Run("dotnet", ["pack", Path.Combine(Paths.Repository, "src", project), "-c", "Release", "-o", feed, $"-p:Version={version}", "-nologo"]);

            foreach (var project in Projects)
            {
                var package = Path.Combine(feed, $"{project}.{version}.nupkg");
                Assert.True(File.Exists(package), $"no {package}");
                Assert.True(File.Exists(Path.ChangeExtension(package, ".snupkg")), $"no symbols for {project}");
                using var zip = ZipFile.OpenRead(package);
                var names = zip.Entries.Select(e => e.FullName).ToArray();
                Assert.Contains("README.md", names);
                Assert.Contains("LICENSE", names);
                using var nuspec = new StreamReader(zip.GetEntry($"{project}.nuspec")!.Open());
                var metadata = nuspec.ReadToEnd();
                Assert.Contains("<license type=\"expression\">MIT</license>", metadata);
                Assert.Contains("<readme>README.md</readme>", metadata);
                Assert.Contains("<repository type=\"git\"", metadata);
                if (project != "NativeGpt2.Cli") Assert.Contains($"lib/net10.0/{project}.xml", names);
                else Assert.Contains(names, n => n.StartsWith("tools/net10.0/any/models/shakespeare-char/", StringComparison.Ordinal));
            }

            var tools = Path.Combine(root.FullName, "tools");
            Run("dotnet", ["tool", "install", "NativeGpt2.Cli", "--tool-path", tools, "--add-source", feed, "--version", version]);
            var output = Run(Path.Combine(tools, "nativegpt2"), ["generate", "--prompt", "ROMEO:", "--greedy", "--max-new-tokens", "40"]);
            var expected = Models.Get("shakespeare-char").Generate("ROMEO:", new GenerationOptions { Greedy = true, MaxNewTokens = 40 });
            Assert.Equal("ROMEO:" + expected.Text, output.TrimEnd('\n'));
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    private static string Run(string file, string[] arguments) => ExternalProcess.Run(file, arguments, TimeSpan.FromMinutes(5));
}
