using System.Text;
using System.Text.RegularExpressions;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Docs;

/// <summary>
/// Every relative link of the repository's Markdown pages leads somewhere: the file or folder exists, and a
/// <c>#fragment</c> names a heading of the page it points to, by the anchors GitHub gives headings. Links in code
/// (fenced blocks and inline spans) are text, not links, and web addresses are not followed.
/// </summary>
public partial class DocumentLinkTests
{
    public static TheoryData<string> Pages() => [.. PagePaths()];

    /// <summary>The Markdown pages, relative to the repository root: all but those in build output and hidden folders.</summary>
    private static IEnumerable<string> PagePaths() =>
        Directory.EnumerateFiles(Paths.Repository, "*.md", SearchOption.AllDirectories)
            .Select(page => Path.GetRelativePath(Paths.Repository, page).Replace('\\', '/'))
            .Where(page => !page.Split('/').Any(part => part is "bin" or "obj" || part.StartsWith('.')))
            .Order(StringComparer.Ordinal);

    [Fact]
    public void The_pages_are_found()
    {
        var pages = PagePaths().ToList();
        Assert.Contains("README.md", pages);
        Assert.Contains("docs/performance.md", pages);
    }

    [Theory]
    [MemberData(nameof(Pages))]
    public void Every_relative_link_resolves(string page)
    {
        var path = Path.Combine(Paths.Repository, page);
        var broken = BrokenLinks(path, File.ReadAllText(path)).ToList();
        Assert.True(broken.Count == 0, $"{page}: {string.Join("; ", broken)}");
    }

    [Fact]
    public void A_missing_file_and_a_missing_heading_are_reported()
    {
        var page = Path.Combine(Paths.Repository, "README.md");
        const string text = "# Title\n\n## Two words\n\n[ok](#two-words) [file](docs/performance.md) [web](https://example.com)\n" +
                            "[gone](docs/no-such-page.md) [no heading](#three-words) `[code](#not-a-link)`\n" +
                            "```\n[fenced](#not-a-link-either)\n```\n";
        Assert.Equal(["docs/no-such-page.md: no such file or folder", "#three-words: no such heading"], BrokenLinks(page, text));
    }

    [Theory]
    [InlineData("Two commands", "two-commands")]
    [InlineData("The seam: `IBackend`", "the-seam-ibackend")]
    [InlineData("CPU, 2026-12-01: AMD EPYC (AVX2 + FMA)", "cpu-2026-12-01-amd-epyc-avx2--fma")]
    [InlineData("Finding the model — `ModelNotFoundException`", "finding-the-model--modelnotfoundexception")]
    [InlineData("snake_case stays", "snake_case-stays")]
    public void Headings_get_GitHub_anchors(string heading, string anchor) => Assert.Equal(anchor, Anchor(heading));

    [Fact]
    public void A_repeated_heading_gets_a_numbered_anchor() =>
        Assert.Equal(new HashSet<string> { "notes", "notes-1", "notes-2" }, Anchors("## Notes\n### Notes\n## Notes\n"));

    /// <summary>The links of <paramref name="text"/> (the page at <paramref name="page"/>) that lead nowhere, each with why.</summary>
    internal static IEnumerable<string> BrokenLinks(string page, string text)
    {
        var folder = Path.GetDirectoryName(page)!;
        foreach (Match link in Link().Matches(WithoutCode(text)))
        {
            var target = link.Groups["target"].Value;
            if (Scheme().IsMatch(target)) continue;
            var hash = target.IndexOf('#');
            var (file, fragment) = hash < 0 ? (target, "") : (target[..hash], target[(hash + 1)..]);
            var linked = file.Length == 0 ? page : Path.GetFullPath(Path.Combine(folder, Uri.UnescapeDataString(file)));
            if (!File.Exists(linked) && !Directory.Exists(linked))
            {
                yield return $"{target}: no such file or folder";
                continue;
            }
            if (fragment.Length == 0) continue;
            if (!linked.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
                yield return $"{target}: a heading asked of a file that is not Markdown";
            else if (!Anchors(linked == page ? text : File.ReadAllText(linked)).Contains(fragment))
                yield return $"{target}: no such heading";
        }
    }

    /// <summary>The anchors of a page's headings, a repeated one numbered -1, -2, … as GitHub numbers them.</summary>
    internal static HashSet<string> Anchors(string markdown)
    {
        var seen = new Dictionary<string, int>();
        var anchors = new HashSet<string>();
        foreach (Match heading in Heading().Matches(Fenced().Replace(markdown, "")))
        {
            var anchor = Anchor(heading.Groups["title"].Value);
            var count = seen.GetValueOrDefault(anchor);
            seen[anchor] = count + 1;
            anchors.Add(count == 0 ? anchor : $"{anchor}-{count}");
        }
        return anchors;
    }

    /// <summary>GitHub's anchor of a heading: lower case, every character but letters, digits, '_', '-' and spaces dropped, spaces as '-'.</summary>
    internal static string Anchor(string heading)
    {
        var anchor = new StringBuilder(heading.Length);
        foreach (var c in heading.Trim().ToLowerInvariant())
        {
            if (char.IsLetterOrDigit(c) || c is '_' or '-') anchor.Append(c);
            else if (c == ' ') anchor.Append('-');
        }
        return anchor.ToString();
    }

    private static string WithoutCode(string markdown) => InlineCode().Replace(Fenced().Replace(markdown, ""), "");

    [GeneratedRegex(@"^```.*?^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fenced();

    [GeneratedRegex(@"`[^`\n]*`")]
    private static partial Regex InlineCode();

    [GeneratedRegex(@"\]\((?<target>[^)\s]+)\)")]
    private static partial Regex Link();

    [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9+.-]*:")]
    private static partial Regex Scheme();

    [GeneratedRegex(@"^#{1,6} +(?<title>.+?) *$", RegexOptions.Multiline)]
    private static partial Regex Heading();
}
