using System.Text;
using NativeGpt2.Safetensors;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

/// <summary>One test per rule of the safetensors reference implementation, each with a hand-made file.</summary>
public class SafetensorsRulesTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>A file of: 8-byte little-endian header length (or <paramref name="declaredLength"/>), header bytes, data.</summary>
    private string File(string header, int dataBytes = 0, ulong? declaredLength = null, byte[]? headerBytes = null)
    {
        var json = headerBytes ?? Encoding.UTF8.GetBytes(header);
        var bytes = new List<byte>(BitConverter.GetBytes(declaredLength ?? (ulong)json.Length));
        bytes.AddRange(json);
        bytes.AddRange(new byte[dataBytes]);
        var path = _temp.File($"{Guid.NewGuid():N}.safetensors");
        System.IO.File.WriteAllBytes(path, bytes.ToArray());
        return path;
    }

    private static ModelFormatException Rejects(string path, string fieldOrText)
    {
        var error = Assert.ThrowsAny<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Equal(path, error.FilePath);
        Assert.Contains(path, error.Message);
        Assert.Contains(fieldOrText, error.Message);
        return error;
    }

    private const string Valid = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";

    [Fact]
    public void A_valid_file_opens() => SafetensorsFile.Open(File(Valid, 8)).Dispose();

    [Fact]
    public void File_under_8_bytes()
    {
        var path = _temp.File("short.safetensors");
        System.IO.File.WriteAllBytes(path, [1, 2, 3]);
        Rejects(path, "shorter than the 8-byte header-size prefix");
    }

    [Fact]
    public void Header_length_over_100_MB() => Rejects(File(Valid, 8, declaredLength: 100_000_001), "exceeds the limit of 100000000");

    [Fact]
    public void Header_length_past_the_end_of_the_file() => Rejects(File(Valid, 8, declaredLength: 5000), "runs past the end");

    [Fact]
    public void Header_length_near_ulong_max_is_not_allocated() => Rejects(File(Valid, 8, declaredLength: ulong.MaxValue), "exceeds the limit");

    [Fact]
    public void Header_not_utf8() => Rejects(File("", 0, headerBytes: [(byte)'{', 0xC3, 0x28, (byte)'}']), "not valid UTF-8");

    [Fact]
    public void Header_not_json() => Rejects(File("{\"a\":", 0), "not valid JSON");

    [Theory]
    [InlineData("[]")]
    [InlineData("\"text\"")]
    [InlineData("42")]
    public void Header_not_a_json_object(string header) => Rejects(File(header), "must be a JSON object");

    [Fact]
    public void Leading_and_trailing_whitespace_is_accepted() =>
        SafetensorsFile.Open(File("  \n\t" + Valid + "    ", 8)).Dispose();

    [Fact]
    public void Zero_size_tensors_are_accepted()
    {
        using var file = SafetensorsFile.Open(File("""{"empty":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8));
        Assert.Empty(file.ReadFloat32(file.GetInfo("empty")));
    }

    [Fact]
    public void Duplicate_tensor_names() =>
        Rejects(File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8), "a: duplicate entry");

    [Fact]
    public void Unknown_dtype() => Rejects(File("""{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}""", 8), "a.dtype: unknown dtype 'F17'");

    [Fact]
    public void Negative_dimension() => Rejects(File("""{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8), "a.shape[0]: must be a non-negative integer");

    [Fact]
    public void Non_integer_dimension() => Rejects(File("""{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8), "a.shape[0]");

    [Fact]
    public void Overflowing_dimensions() =>
        Rejects(File("""{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}""", 8), "a.shape: shape [4294967296, 4294967296, 16] or offsets overflow");

    [Fact]
    public void Reversed_offsets() => Rejects(File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8), "a.data_offsets: offsets are reversed");

    [Fact]
    public void Overlapping_tensors() =>
        Rejects(File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12), "b.data_offsets: starts at 4: overlaps");

    [Fact]
    public void Gap_between_tensors() =>
        Rejects(File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12), "b.data_offsets: starts at 8: leaves a gap");

    [Fact]
    public void Offsets_not_starting_at_zero() => Rejects(File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12), "the first tensor must start at offset 0");

    [Fact]
    public void Byte_range_not_equal_to_shape_times_dtype_size() =>
        Rejects(File("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8), "a.data_offsets: byte range [0, 8) holds 8 bytes but shape [3] of F32 needs 12");

    [Fact]
    public void Trailing_bytes_after_the_last_tensor() => Rejects(File(Valid, 12), "4 trailing bytes");

    [Fact]
    public void Truncated_file() => Rejects(File(Valid, 5), "truncated");

    [Fact]
    public void Offsets_must_be_two_integers() => Rejects(File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}""", 8), "a.data_offsets: must have 2 entries");

    [Fact]
    public void Missing_fields() => Rejects(File("""{"a":{"shape":[2],"data_offsets":[0,8]}}""", 8), "a.dtype: missing");

    [Fact]
    public void A_tensor_named_metadata() =>
        Rejects(File("""{"__metadata__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8), "__metadata__: a tensor may not be named __metadata__");

    [Fact]
    public void Metadata_that_is_not_an_object() => Rejects(File("""{"__metadata__":[1],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8), "a tensor may not be named __metadata__");

    [Fact]
    public void Non_string_metadata_values() =>
        Rejects(File("""{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8), "__metadata__.format: metadata values must be strings");

    [Fact]
    public void File_handles_are_released_after_a_rejected_file()
    {
        var path = File(Valid, 12);
        Assert.ThrowsAny<ModelFormatException>(() => SafetensorsFile.Open(path));
        // An exclusive open succeeds only if no handle of ours is still open.
        using var exclusive = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
    }
}
