using System.Diagnostics;
using NativeGpt2.Cli;
using NativeGpt2.Safetensors;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

/// <summary>
/// Where a written file goes when its path is not a plain file: a symbolic link stays a link and its file is replaced;
/// a FIFO, a device or an open descriptor is written in place, never renamed over (as root, a rename would have put a
/// regular file where <c>/dev/null</c> was). Unix only: Windows has no FIFOs or descriptor paths.
/// </summary>
public class OutputPathTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(1);

    private static SafetensorsWriter Writer() => new SafetensorsWriter().AddMetadata("format", "pt").Add("a", [1f, 2f, 3f], 3);

    private static byte[] RegularFileBytes(TempDirectory temp)
    {
        var path = temp.File("regular.safetensors");
        Writer().Save(path);
        return File.ReadAllBytes(path);
    }

    /// <summary>Makes a FIFO at <paramref name="path"/> with the system's <c>mkfifo</c>.</summary>
    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start("mkfifo", [path])!;
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }

    /// <summary>Reads everything written into the FIFO at <paramref name="path"/> until its writer closes it.</summary>
    private static Task<byte[]> ReadFifo(string path) => Task.Run(() => File.ReadAllBytes(path));

    [SkippableFact]
    public void A_device_a_fifo_and_links_to_them_are_special_files_and_regular_files_and_folders_are_not()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "FIFOs and /dev/null are Unix's");
        using var temp = new TempDirectory();
        MakeFifo(temp.File("fifo"));
        File.WriteAllText(temp.File("regular"), "x");
        File.CreateSymbolicLink(temp.File("to-fifo"), temp.File("fifo"));
        File.CreateSymbolicLink(temp.File("to-regular"), temp.File("regular"));

        Assert.True(FileKind.IsSpecial("/dev/null"));
        Assert.True(FileKind.IsSpecial(temp.File("fifo")));
        Assert.True(FileKind.IsSpecial(temp.File("to-fifo")));
        Assert.False(FileKind.IsSpecial(temp.File("regular")));
        Assert.False(FileKind.IsSpecial(temp.File("to-regular")));
        Assert.False(FileKind.IsSpecial(temp.Path));
        Assert.False(FileKind.IsSpecial(temp.File("missing")));
    }

    [SkippableFact]
    public void A_fifo_gets_the_whole_file_written_into_it_and_stays_a_fifo()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "FIFOs are Unix's");
        using var temp = new TempDirectory();
        var fifo = temp.File("out.safetensors");
        MakeFifo(fifo);
        var read = ReadFifo(fifo);

        Writer().Save(fifo);

        Assert.True(read.Wait(Limit), "the FIFO's reader did not see the writer close it");
        Assert.Equal(RegularFileBytes(temp), read.Result);
        Assert.True(FileKind.IsSpecial(fifo), "the FIFO was replaced by a file");
        Assert.Empty(Directory.GetFiles(temp.Path, "*.tmp"));
    }

    [SkippableFact]
    public void A_symbolic_link_stays_a_link_and_the_file_it_names_is_replaced()
    {
        Skip.IfNot(!OperatingSystem.IsWindows(), "symbolic links need privileges on Windows");
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp.File("data"));
        File.WriteAllText(temp.File("data/out.safetensors"), "old");
        File.CreateSymbolicLink(temp.File("hop"), "data/out.safetensors");
        File.CreateSymbolicLink(temp.File("link.safetensors"), temp.File("hop"));

        Writer().Save(temp.File("link.safetensors"));

        Assert.Equal("data/out.safetensors", new FileInfo(temp.File("hop")).LinkTarget);
        Assert.Equal(temp.File("hop"), new FileInfo(temp.File("link.safetensors")).LinkTarget);
        Assert.Equal(RegularFileBytes(temp), File.ReadAllBytes(temp.File("data/out.safetensors")));
        Assert.Empty(Directory.GetFiles(temp.Path, "*.tmp", SearchOption.AllDirectories));
    }

    [SkippableFact]
    public void A_link_to_a_missing_file_creates_that_file_and_its_folder()
    {
        Skip.IfNot(!OperatingSystem.IsWindows(), "symbolic links need privileges on Windows");
        using var temp = new TempDirectory();
        var target = Path.Combine(temp.Path, "made", "out.safetensors");
        File.CreateSymbolicLink(temp.File("link.safetensors"), target);

        Writer().Save(temp.File("link.safetensors"));

        Assert.Equal(target, new FileInfo(temp.File("link.safetensors")).LinkTarget);
        Assert.Equal(RegularFileBytes(temp), File.ReadAllBytes(target));
    }

    [SkippableFact]
    public void A_loop_of_links_is_an_IOException_naming_the_path()
    {
        Skip.IfNot(!OperatingSystem.IsWindows(), "symbolic links need privileges on Windows");
        using var temp = new TempDirectory();
        File.CreateSymbolicLink(temp.File("a"), temp.File("b"));
        File.CreateSymbolicLink(temp.File("b"), temp.File("a"));

        var error = Assert.Throws<IOException>(() => Writer().Save(temp.File("a")));
        Assert.StartsWith($"cannot write {temp.File("a")}: ", error.Message);
    }

    [Fact]
    public void A_failed_write_names_the_path_and_never_the_temporary_file()
    {
        using var temp = new TempDirectory();
        var path = temp.File("out.svg");
        // What .NET throws when the disk fills during the write: the system's words, then the file it was writing.
        var error = Assert.Throws<IOException>(() => AtomicFile.Write(path, stream => throw new IOException($"No space left on device : '{temp.File(".out.svg.0123.tmp")}'")));

        Assert.Equal($"cannot write {path}: No space left on device", error.Message);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(temp.Path));
    }

    [SkippableTheory]
    [InlineData("forward", "--ids", "1,2")]
    [InlineData("attention", "--text", "ROMEO:")]
    public void An_out_fifo_carries_the_file_and_the_confirmation_goes_to_stderr(string command, string option, string value)
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "FIFOs are Unix's");
        using var temp = new TempDirectory();
        var fifo = temp.File("out");
        MakeFifo(fifo);
        var read = ReadFifo(fifo);

        var result = CliRunner.Run(command, "--model", Paths.Model("shakespeare-char"), "--backend", "cpu", option, value, "--out", fifo);

        Assert.Equal(CliApp.Success, result.ExitCode);
        Assert.True(read.Wait(Limit), "the FIFO's reader did not see the command close it");
        Assert.True(read.Result.Length > 100, $"{read.Result.Length} bytes came through the FIFO");
        Assert.Equal("", result.Out);
        Assert.StartsWith("wrote ", result.Error);
        Assert.True(FileKind.IsSpecial(fifo), "the FIFO was replaced by a file");
    }

    [SkippableFact]
    public void Out_dev_stdout_prints_the_file_alone_on_stdout()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "/dev/stdout as a link to the process's descriptor is Linux's");
        // A link of the test's own made as /dev/stdout is (to /proc/self/fd/1), so that a regression replaces it, not the
        // machine's /dev/stdout.
        using var temp = new TempDirectory();
        var stdoutLink = temp.File("stdout");
        File.CreateSymbolicLink(stdoutLink, "/proc/self/fd/1");
        using var process = ExternalProcess.StartCli(["attention", "--model", Paths.Model("shakespeare-char"), "--backend", "cpu", "--text", "ROMEO:", "--out", stdoutLink]);
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(Limit), "attention --out (a link to /proc/self/fd/1) did not finish");

        Assert.True(process.ExitCode == 0, stderr.Result);
        Assert.StartsWith("<svg ", stdout);
        Assert.EndsWith("</svg>\n", stdout);
        Assert.StartsWith("wrote stdout: ", stderr.Result);
        Assert.Equal("/proc/self/fd/1", new FileInfo(stdoutLink).LinkTarget);
    }
}
