namespace NativeGpt2.Benchmarks;

public static class Repository
{
    /// <summary>reference-data/, found by walking up from the working directory.</summary>
    public static string ReferenceData
    {
        get
        {
            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "reference-data");
                if (Directory.Exists(Path.Combine(candidate, "onnx"))) return candidate;
            }
            throw new DirectoryNotFoundException("run from inside the repository: reference-data/ was not found");
        }
    }
}
