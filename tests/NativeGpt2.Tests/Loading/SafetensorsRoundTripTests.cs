using NativeGpt2.Safetensors;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Loading;

public class SafetensorsRoundTripTests
{
    [Fact]
    public void Writer_output_reads_back_identically_and_is_aligned()
    {
        using var temp = new TempDirectory();
        var path = temp.File("x.safetensors");
        float[] floats = [1.5f, -2.25f, float.MaxValue, float.Epsilon, 0f, -0f];
        int[] ints = [7, -3, int.MaxValue];
        double[] doubles = [Math.PI];
        new SafetensorsWriter()
            .AddMetadata("format", "pt")
            .Add("a", floats, 2, 3)
            .Add("b", ints, 3)
            .Add("c", doubles)
            .Add("empty", ReadOnlySpan<float>.Empty, 0, 4)
            .Save(path);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(0, file.Header.DataStart % 8);
        Assert.Equal("pt", file.Header.Metadata["format"]);
        Assert.Equal(floats, file.ReadFloat32(file.GetInfo("a")));
        Assert.Equal(new long[] { 2, 3 }, file.GetInfo("a").Shape);
        Assert.Equal(ints, file.ReadInt32(file.GetInfo("b")));
        Assert.Equal(doubles, file.ReadFloat64(file.GetInfo("c")));
        Assert.Empty(file.GetInfo("c").Shape);
        Assert.Empty(file.ReadFloat32(file.GetInfo("empty")));
        Assert.Empty(Directory.GetFiles(temp.Path, "*.tmp"));
    }

    [Fact]
    public void Saving_over_a_file_replaces_it_and_into_a_missing_folder_creates_it()
    {
        using var temp = new TempDirectory();
        var path = Path.Combine(temp.Path, "made", "x.safetensors");
        new SafetensorsWriter().Add("a", [1f], 1).Save(path);
        new SafetensorsWriter().Add("b", [2f, 3f], 2).Save(path);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal([2f, 3f], file.ReadFloat32(file.GetInfo("b")));
        Assert.Single(file.Header.Tensors);
    }

    [Fact]
    public void A_file_that_cannot_be_written_is_an_IOException_naming_it_not_the_temporary_file()
    {
        using var temp = new TempDirectory();
        var writer = new SafetensorsWriter().Add("a", [1f], 1);

        var folder = Assert.Throws<IOException>(() => writer.Save(temp.Path));
        Assert.Equal($"cannot write {temp.Path}: it is a folder", folder.Message);

        File.WriteAllText(temp.File("a-file"), "");
        var inside = Path.Combine(temp.File("a-file"), "x.safetensors");
        var blocked = Assert.Throws<IOException>(() => writer.Save(inside));
        Assert.StartsWith($"cannot write {inside}: ", blocked.Message);
        Assert.DoesNotContain(".tmp", blocked.Message);
        Assert.Equal("", File.ReadAllText(temp.File("a-file")));
    }

    [Fact]
    public void Bfloat16_and_float16_widen_exactly()
    {
        using var temp = new TempDirectory();
        var path = temp.File("h.safetensors");
        float[] values = [1f, -2f, 0.5f, 3.140625f];
        var halves = values.Select(v => BitConverter.HalfToUInt16Bits((Half)v)).SelectMany(BitConverter.GetBytes).ToArray();
        var bf16 = values.Select(v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16)).SelectMany(BitConverter.GetBytes).ToArray();
        new SafetensorsWriter()
            .Add("f16", SafetensorsDType.F16, halves, 4)
            .Add("bf16", SafetensorsDType.BF16, bf16, 4)
            .Save(path);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(values, file.ReadFloat32(file.GetInfo("f16")));
        Assert.Equal(values, file.ReadFloat32(file.GetInfo("bf16")));
    }
}
