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
