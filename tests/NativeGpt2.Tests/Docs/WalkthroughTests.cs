using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using NativeGpt2.Cli;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Docs;

/// <summary>
/// The documents show real outputs: every <c>nativegpt2</c> command quoted in docs/walkthrough.md runs as shown
/// and prints what the page says it prints; every SVG under docs/ is well-formed.
/// </summary>
[Collection(IlgpuAccelerators.Name)]
public partial class WalkthroughTests
{
    /// <summary>A command quoted on a page, and the output block that follows it.</summary>
    public sealed record Example(string Command, string Output)
    {
        public override string ToString() => Command;
    }

    public static TheoryData<Example> WalkthroughExamples() => [.. Examples(File.ReadAllText(Path.Combine(Paths.Repository, "docs", "walkthrough.md")))];

    /// <summary>Each <c>```sh</c> block holding one <c>nativegpt2</c> command, with the <c>```text</c> block right after it.</summary>
    internal static IEnumerable<Example> Examples(string markdown)
    {
        foreach (Match match in ExampleBlocks().Matches(markdown))
            yield return new Example(match.Groups["command"].Value.Trim(), match.Groups["output"].Value);
    }

    [GeneratedRegex(@"```sh\n(?<command>nativegpt2 [^\n]*)\n```\s*\n```text\n(?<output>.*?)```", RegexOptions.Singleline)]
    private static partial Regex ExampleBlocks();

    [Fact]
    public void The_walkthrough_quotes_the_commands_it_explains()
    {
        var commands = Examples(File.ReadAllText(Path.Combine(Paths.Repository, "docs", "walkthrough.md"))).Select(e => e.Command.Split(' ')[1]).ToHashSet();
        Assert.Superset(new HashSet<string> { "inspect", "tokenize", "trace", "attention", "top", "generate" }, commands);
    }

    [Theory]
    [MemberData(nameof(WalkthroughExamples))]
    public void A_quoted_command_prints_what_the_page_shows(Example example)
    {
        var scratch = Directory.CreateTempSubdirectory("walkthrough-");
        try
        {
            var args = ShellWords(example.Command)[1..].Select(a => Localize(a, scratch.FullName)).ToArray();
            var result = CliRunner.Run(args);
            Assert.True(result.ExitCode == CliApp.Success, $"{example.Command} failed: {result.Error}");
            var printed = result.Out.Replace(Paths.Repository + Path.DirectorySeparatorChar, "", StringComparison.Ordinal);
            AssertSameOutput(example.Output, printed, example.Command);

            // A picture the page shows is the one the command draws: same layout, same number of cells.
            var outIndex = Array.IndexOf(args, "--out");
            if (outIndex >= 0)
            {
                var committed = XDocument.Load(Path.Combine(Paths.Repository, ShellWords(example.Command)[outIndex + 2]));
                var drawn = XDocument.Load(args[outIndex + 1]);
                Assert.Equal(committed.Descendants().Count(), drawn.Descendants().Count());
            }
        }
        finally
        {
            scratch.Delete(recursive: true);
        }
    }

    public static TheoryData<Example> VerificationExamples() => [.. Examples(File.ReadAllText(Path.Combine(Paths.Repository, "docs", "verification.md")))];

    /// <summary>
    /// verification.md quotes a run on one machine: its differences depend on the CPU, so here the command must
    /// pass and print the same tensors in the same order, whatever the digits.
    /// </summary>
    [Theory]
    [MemberData(nameof(VerificationExamples))]
    public void A_check_quoted_in_the_verification_guide_passes_and_lists_the_same_tensors(Example example)
    {
        var args = ShellWords(example.Command)[1..].Select(a => Localize(a, Path.GetTempPath())).ToArray();
        var result = CliRunner.Run(args);
        Assert.True(result.ExitCode == CliApp.Success, $"{example.Command} failed: {result.Error}");
        static string[] Names(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => !l.StartsWith("backend ", StringComparison.Ordinal))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0]).ToArray();
        Assert.Equal(Names(example.Output), Names(result.Out));
    }

    [Fact]
    public void Every_svg_under_docs_is_well_formed_svg()
    {
        var pictures = Directory.GetFiles(Path.Combine(Paths.Repository, "docs"), "*.svg", SearchOption.AllDirectories);
        Assert.True(pictures.Length >= 4, "expected the architecture, attention and performance pictures");
        foreach (var picture in pictures)
        {
            var svg = XDocument.Load(picture);
            Assert.Equal(XName.Get("svg", "http://www.w3.org/2000/svg"), svg.Root!.Name);
            Assert.NotNull(svg.Root.Attribute("viewBox"));
        }
    }

    /// <summary>Paths in the repository resolve against it; files the command writes go to the scratch folder.</summary>
    private static string Localize(string argument, string scratch)
    {
        if (argument.StartsWith("docs/", StringComparison.Ordinal)) return Path.Combine(scratch, Path.GetFileName(argument));
        if (argument.StartsWith("reference-data/", StringComparison.Ordinal)) return Path.Combine(Paths.Repository, argument);
        return argument;
    }

    /// <summary>
    /// Text equal word for word; numbers equal to the last digit shown, give or take one unit of it (a CPU
    /// with another vector width rounds the fifth significant digit differently now and then).
    /// </summary>
    private static void AssertSameOutput(string expected, string actual, string command)
    {
        var e = Number().Split(expected.TrimEnd());
        var a = Number().Split(actual.TrimEnd());
        Assert.True(e.Length == a.Length, $"{command}: the output changed shape.\nexpected:\n{expected}\nactual:\n{actual}");
        for (var i = 0; i < e.Length; i++)
        {
            if (i % 2 == 0)
            {
                Assert.True(e[i] == a[i], $"{command}: text differs: '{e[i]}' against '{a[i]}'.\nactual:\n{actual}");
                continue;
            }
            var decimals = e[i].Contains('.') ? e[i].Length - e[i].IndexOf('.') - 1 : 0;
            var unit = Math.Pow(10, -decimals);
            var difference = Math.Abs(double.Parse(e[i], CultureInfo.InvariantCulture) - double.Parse(a[i], CultureInfo.InvariantCulture));
            Assert.True(difference <= unit * 1.01 && (decimals > 0 || difference == 0), $"{command}: {a[i]} where the page shows {e[i]}.\nactual:\n{actual}");
        }
    }

    // Captured, so Split keeps the numbers at the odd indices. Digits inside words (ids in "gpt2") are text.
    [GeneratedRegex(@"(?<![\w.])([+-]?\d[\d,]*(?:\.\d+)?)(?![\w])")]
    private static partial Regex Number();

    /// <summary>Splits a command as a POSIX shell would: spaces, "double", 'single' and $'ANSI-C \n' quotes.</summary>
    internal static string[] ShellWords(string command)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        var inWord = false;
        for (var i = 0; i < command.Length; i++)
        {
            var c = command[i];
            if (c == ' ' && word.Length == 0 && !inWord) continue;
            if (c == ' ') { words.Add(word.ToString()); word.Clear(); inWord = false; continue; }
            inWord = true;
            if (c == '$' && i + 1 < command.Length && command[i + 1] == '\'')
            {
                for (i += 2; command[i] != '\''; i++)
                {
                    if (command[i] != '\\') { word.Append(command[i]); continue; }
                    i++;
                    word.Append(command[i] switch { 'n' => '\n', 't' => '\t', var other => other });
                }
            }
            else if (c == '\'')
            {
                for (i++; command[i] != '\''; i++) word.Append(command[i]);
            }
            else if (c == '"')
            {
                for (i++; command[i] != '"'; i++)
                {
                    if (command[i] == '\\' && i + 1 < command.Length && command[i + 1] is '"' or '\\' or '$') i++;
                    word.Append(command[i]);
                }
            }
            else word.Append(c);
        }
        if (inWord) words.Add(word.ToString());
        return [.. words];
    }
}
