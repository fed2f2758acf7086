using NativeGpt2.Tests.Support;
using Xunit;

namespace NativeGpt2.Tests.Robustness;

[Collection(IlgpuAccelerators.Name)]
public class LifetimeAndConcurrencyTests
{
    /// <summary>
    /// The CPU backend runs the threads' passes side by side (each with its own workspace); an ILGPU backend
    /// serializes them on the device. Either way every thread gets exactly its serial result.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void One_model_shared_by_8_threads_gives_exactly_the_serial_results(string backend)
    {
        TestBackends.SkipIfUnavailable(backend);
        var model = Models.Get("shakespeare-char", backend);
        var prompts = Enumerable.Range(0, 8).Select(i => new[] { "ROMEO:", "JULIET:", "First Citizen:", "KING RICHARD III:", "MERCUTIO:", "Nurse:", "TYBALT:", "PRINCE:" }[i]).ToArray();
        // Fewer tokens on ILGPU's simulated GPU (an OS thread per GPU thread): three steps of eight threads still interleave.
        var tokens = backend == TestBackends.IlgpuCpu ? 3 : 60;
        var options = Enumerable.Range(0, 8).Select(i => new GenerationOptions { MaxNewTokens = tokens, Seed = 100 + i, Temperature = 0.9f, TopK = 30 }).ToArray();

        var serial = prompts.Select((p, i) => model.Generate(p, options[i])).ToArray();

        var parallel = new GenerationResult[8];
        using var start = new Barrier(8);
        var threads = Enumerable.Range(0, 8).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            parallel[i] = model.Generate(prompts[i], options[i]);
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) thread.Join();

        for (var i = 0; i < 8; i++)
        {
            Assert.Equal(serial[i].GeneratedIds, parallel[i].GeneratedIds);
            Assert.Equal(serial[i].Text, parallel[i].Text);
        }
    }

    [Fact]
    public async Task Cancellation_mid_generation_stops_promptly_and_the_model_stays_usable()
    {
        using var model = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"));
        using var cancellation = new CancellationTokenSource();
        var pieces = 0;
        var stream = model.GenerateStreamAsync("ROMEO:", new GenerationOptions { MaxNewTokens = 250, Seed = 4 }, cancellation.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in stream)
            {
                if (++pieces == 3) cancellation.Cancel();
            }
        });
        // Stopped before the next token, not at the end of the 250.
        Assert.Equal(3, pieces);
        Assert.Equal(10, model.Generate("ROMEO:", new GenerationOptions { MaxNewTokens = 10, Seed = 4 }).GeneratedIds.Count);
    }

    [Fact]
    public void Use_after_dispose_throws_object_disposed_everywhere()
    {
        var model = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"));
        var backbone = model.Backbone;
        var head = model.Head;
        var hidden = backbone.Forward(TokenBatch.FromIds([1, 2])).LastHiddenState;
        model.Dispose();
        model.Dispose(); // idempotent

        Assert.Throws<ObjectDisposedException>(() => model.Forward(TokenBatch.FromIds([1, 2])));
        Assert.Throws<ObjectDisposedException>(() => model.ForwardInto(TokenBatch.FromIds([1, 2]), FloatTensor.Zeros(1, 2, model.Config.VocabSize)));
        Assert.Throws<ObjectDisposedException>(() => model.Generate("ROMEO:"));
        Assert.Throws<ObjectDisposedException>(() => model.GenerateIds([1]));
        Assert.Throws<ObjectDisposedException>(() => model.ScoreIds([1, 2]));
        Assert.Throws<ObjectDisposedException>(() => model.CreateCache(1));
        Assert.Throws<ObjectDisposedException>(() => backbone.Forward(TokenBatch.FromIds([1, 2])));
        Assert.Throws<ObjectDisposedException>(() => head.Forward(hidden));
    }

    [Fact]
    public async Task Disposing_during_streaming_stops_it_with_object_disposed()
    {
        var model = Gpt2CausalLM.Load(Paths.Model("shakespeare-char"));
        var pieces = 0;
        await Assert.ThrowsAsync<ObjectDisposedException>(async () =>
        {
            await foreach (var _ in model.GenerateStreamAsync("ROMEO:", new GenerationOptions { MaxNewTokens = 250, Seed = 4 }))
            {
                if (++pieces == 2) model.Dispose();
            }
        });
        Assert.Equal(2, pieces);
    }
}
