namespace NativeGpt2.Tests.Support;

/// <summary>Locates the repository's reference-data folder from wherever the tests run.</summary>
public static class Paths
{
    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "reference-data");
            if (Directory.Exists(Path.Combine(candidate, "refs"))) return candidate;
        }
        throw new DirectoryNotFoundException($"reference-data/ not found above {AppContext.BaseDirectory}");
    });

    /// <summary>The reference-data folder.</summary>
    public static string ReferenceData => Root.Value;

    /// <summary>The repository root (the folder that holds reference-data).</summary>
    public static string Repository => Path.GetDirectoryName(ReferenceData)!;

    /// <summary>A checkpoint directory under reference-data/models.</summary>
    public static string Model(string name) => Path.Combine(ReferenceData, "models", name);

    /// <summary>The text of reference-data/data/tinyshakespeare-val.txt: the bundled model's held-out text.</summary>
    public static string ShakespeareValidationText => File.ReadAllText(Path.Combine(ReferenceData, "data", "tinyshakespeare-val.txt"));

    /// <summary>A file under reference-data/refs.</summary>
    public static string Ref(string file) => Path.Combine(ReferenceData, "refs", file);
}
