using NativeGpt2.Tests.Support;
using NativeGpt2.Verification;
using NativeGpt2.Weights;
using Xunit;

namespace NativeGpt2.Tests.Loading;

public class SyntheticWeightsTests
{
    private static readonly ReferenceFile Reference = ReferenceFile.Load(Paths.Ref("synthetic-124M.safetensors"));

    [Fact]
    public void Formula_reproduces_the_probe_values_exactly()
    {
        var wte = Reference["probe_wte_first8"].AsFloat32();
        var cAttn = Reference["probe_h0_c_attn_weight_first8"].AsFloat32();
        var lnF = Reference["probe_ln_f_weight_first8"].AsFloat32();
        const int C = 768;
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(wte[i], SyntheticWeights.Element("wte.weight", i));
            Assert.Equal(wte[4 + i], SyntheticWeights.Element("wte.weight", C + i));
            Assert.Equal(cAttn[i], SyntheticWeights.Element("h.0.attn.c_attn.weight", i));
            Assert.Equal(cAttn[4 + i], SyntheticWeights.Element("h.0.attn.c_attn.weight", 3 * C + i));
        }
        for (var i = 0; i < 8; i++)
            Assert.Equal(lnF[i], SyntheticWeights.Element("ln_f.weight", i));
    }

    [Fact]
    public void Documented_check_values_match()
    {
        // The check values printed in SYNTHETIC.md.
        Assert.Equal(-0.08278360f, SyntheticWeights.Element("wte.weight", 0), 7);
        Assert.Equal(0.01201638f, SyntheticWeights.Element("wte.weight", 768 + 2), 7);
        Assert.Equal(0.96088398f, SyntheticWeights.Element("ln_f.weight", 3), 7);
    }

    [Fact]
    public void Parallel_fill_equals_element_by_element()
    {
        var data = new float[200_000];
        SyntheticWeights.Fill("h.3.mlp.c_fc.weight", data);
        foreach (var i in new[] { 0, 1, 65_535, 65_536, 131_073, 199_999 })
            Assert.Equal(SyntheticWeights.Element("h.3.mlp.c_fc.weight", i), data[i]);
    }

    [Theory]
    [InlineData("gpt2", 124_439_808L)]
    [InlineData("gpt2-medium", 354_823_168L)]
    [InlineData("gpt2-large", 774_030_080L)]
    [InlineData("gpt2-xl", 1_557_611_200L)]
    public void Synthetic_configs_have_the_published_gpt2_parameter_counts(string name, long parameters) =>
        Assert.Equal(parameters, SyntheticWeights.Configs[name].ParameterCount);
}
