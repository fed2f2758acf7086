using System.Runtime.InteropServices;
using NativeGpt2.Operators;
using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Model;

/// <summary>
/// Every <c>activation_function</c> a GPT-2 config may name runs in the MLP, on every backend: each layer's MLP output is
/// what the double-precision operators give from that layer's recorded ln_2 output through the named activation.
/// </summary>
public class ActivationFunctionTests
{
    private const int C = 32, Inner = 128, Layers = 2;

    public static TheoryData<string, string> Cases
    {
        get
        {
            var cases = new TheoryData<string, string>();
            foreach (var (name, _) in MlpActivations.Supported)
                foreach (var backend in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu, TestBackends.Cuda }) cases.Add(name, backend);
            return cases;
        }
    }

    /// <summary>
    /// tiny with each c_fc's weights and biases doubled, so that its pre-activations reach about ±4, where the activations
    /// part ways; and each c_proj passing hidden unit c to output c, so that the MLP's outputs are activations themselves.
    /// The two GELUs differ by 4.7e-4 at most (at ±2.7), which a sum over 128 units of weight 0.02 would hide.
    /// </summary>
    private static CheckpointBuilder TinyWithWideMlpInputs(string activation)
    {
        var builder = CheckpointBuilder.From(Paths.Model("tiny"));
        builder.Config["activation_function"] = activation;
        for (var l = 0; l < Layers; l++)
        {
            foreach (var part in new[] { "weight", "bias" })
            {
                var values = Floats(builder, $"transformer.h.{l}.mlp.c_fc.{part}");
                for (var i = 0; i < values.Length; i++) values[i] *= 2f;
            }
            var proj = Floats(builder, $"transformer.h.{l}.mlp.c_proj.weight");
            proj.Clear();
            for (var c = 0; c < C; c++) proj[c * C + c] = 1f;
            Floats(builder, $"transformer.h.{l}.mlp.c_proj.bias").Clear();
        }
        return builder;
    }

    private static Span<float> Floats(CheckpointBuilder builder, string name) =>
        MemoryMarshal.Cast<byte, float>(builder.Tensors.Single(t => t.Name == name).Data.AsSpan());

    /// <summary>c_proj(activation(c_fc(x))) of layer <paramref name="layer"/> in double, x (N, C).</summary>
    private static float[] Mlp(CheckpointBuilder builder, int layer, float[] x, MlpActivation activation)
    {
        var fc = Floats(builder, $"transformer.h.{layer}.mlp.c_fc.weight").ToArray();
        var fcBias = Floats(builder, $"transformer.h.{layer}.mlp.c_fc.bias").ToArray();
        var proj = Floats(builder, $"transformer.h.{layer}.mlp.c_proj.weight").ToArray();
        var projBias = Floats(builder, $"transformer.h.{layer}.mlp.c_proj.bias").ToArray();
        var N = x.Length / C;
        var output = new float[N * C];
        var hidden = new double[Inner];
        for (var n = 0; n < N; n++)
        {
            for (var j = 0; j < Inner; j++)
            {
                double sum = fcBias[j];
                for (var i = 0; i < C; i++) sum += (double)x[n * C + i] * fc[i * Inner + j];
                hidden[j] = Activations.Reference(sum, activation);
            }
            for (var c = 0; c < C; c++)
            {
                double sum = projBias[c];
                for (var j = 0; j < Inner; j++) sum += hidden[j] * proj[j * C + c];
                output[n * C + c] = (float)sum;
            }
        }
        return output;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void The_mlp_applies_the_configured_activation(string name, string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        using var temp = new TempDirectory();
        var builder = TinyWithWideMlpInputs(name);
        using var model = Gpt2CausalLM.Load(builder.WriteTo(temp.Path), new ModelLoadOptions { Backend = backend });
        var activation = MlpActivations.ByName[name];
        Assert.Equal(activation, model.Config.Activation);

        int[] ids = [5, 17, 301, 42, 7, 99, 250, 3, 64];
        var recorded = model.Forward(TokenBatch.FromIds(ids), options: new ForwardOptions { OutputLayerActivations = true }).Backbone.Activations;
        for (var l = 0; l < Layers; l++)
        {
            var x = recorded[$"layer{l}.ln_2"].Data;
            var expected = Mlp(builder, l, x, activation);
            Numerics.AssertClose(expected, recorded[$"layer{l}.mlp"].Data, Tolerances.OperatorRelative, $"{name} on {backend}, layer {l}'s mlp");
            // And the test can tell the activations apart: any other is beyond that bound.
            var bound = Tolerances.OperatorRelative * (1 + expected.Max(Math.Abs));
            foreach (var other in Enum.GetValues<MlpActivation>().Where(a => a != activation))
            {
                var difference = Mlp(builder, l, x, other).Zip(expected).Max(p => Math.Abs(p.First - p.Second));
                Assert.True(difference > 3 * bound, $"{other} differs from {activation} by {difference:E2} only, within 3 × {bound:E2}");
            }
        }
    }
}
