using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using NativeGpt2.Generation;
using Xunit;

namespace NativeGpt2.Tests.Generation;

/// <summary><see cref="PromptGrouping"/>: which waiting prompts the shared batch runs together, on random waiting lists.</summary>
public class PromptGroupingProperties
{
    /// <summary>Prompt lengths, oldest first: short chat turns and long documents mixed, with repeats.</summary>
    private static Gen<int[]> Lengths =>
        from count in Gen.Choose(1, 20)
        from seed in Gen.Choose(0, int.MaxValue)
        let random = new Random(seed)
        select Enumerable.Range(0, count).Select(_ => random.Next(3) switch { 0 => random.Next(1, 16), 1 => random.Next(16, 200), _ => random.Next(200, 1025) }).ToArray();

    [Property(MaxTest = 500)]
    public Property A_group_is_led_by_the_shortest_or_a_passed_over_oldest_fits_the_room_and_pads_little() =>
        Prop.ForAll((from lengths in Lengths from passedOver in Gen.Elements(false, true) from room in Gen.Choose(1, 8) from part in Gen.Elements(1, 16, 256)
                     select (lengths, passedOver, room, part)).ToArbitrary(), c =>
        {
            var (lengths, passedOver, room, part) = c;
            var group = PromptGrouping.Choose(lengths, passedOver, room, part);
            Assert.InRange(group.Count, 1, Math.Min(room, lengths.Length));
            Assert.Equal(group.Count, group.Distinct().Count());
            Assert.All(group, i => Assert.InRange(i, 0, lengths.Length - 1));
            // The lead: the oldest once passed over, else the oldest of the shortest.
            Assert.Equal(passedOver ? 0 : Array.IndexOf(lengths, lengths.Min()), group[0]);
            // Padded to the longest, the group wastes at most a quarter of its positions, unless it is within a part.
            long padded = (long)group.Count * group.Max(i => lengths[i]), real = group.Sum(i => (long)lengths[i]);
            Assert.True(padded <= part || padded - real <= padded / 4, $"{group.Count} prompts of {string.Join(", ", group.Select(i => lengths[i]))} padded to {padded}");
        });

    [Property(MaxTest = 200)]
    public Property Prompts_of_one_length_run_together_as_many_as_there_is_room_for() =>
        Prop.ForAll((from count in Gen.Choose(1, 12) from length in Gen.Choose(1, 1024) from room in Gen.Choose(1, 8) select (count, length, room)).ToArbitrary(), c =>
        {
            var (count, length, room) = c;
            Assert.Equal(Math.Min(count, room), PromptGrouping.Choose(Enumerable.Repeat(length, count).ToArray(), false, room, 256).Count);
        });

    /// <summary>
    /// Prompts arriving at random while groups form (as the batcher does it: the oldest, left out, is passed over): every
    /// prompt runs, and none waits through more than one group after it has become the oldest waiting.
    /// </summary>
    [Property(MaxTest = 300)]
    public Property No_prompt_waits_for_more_than_one_group_once_it_is_the_oldest() =>
        Prop.ForAll((from seed in Gen.Choose(0, int.MaxValue) from room in Gen.Choose(1, 8) select (seed, room)).ToArbitrary(), c =>
        {
            var (seed, room) = c;
            var random = new Random(seed);
            List<(int Id, int Length)> waiting = [];
            var passedOver = false;
            var oldestSince = new Dictionary<int, int>();
            var ran = new HashSet<int>();
            var next = 0;
            for (var formation = 0; formation < 200 && (next < 60 || waiting.Count > 0); formation++)
            {
                // Short prompts keep arriving (the case that could starve a long one), now and then a long one.
                for (var k = random.Next(0, 4); k > 0 && next < 60; k--)
                    waiting.Add((next++, random.Next(4) == 0 ? random.Next(300, 1025) : random.Next(1, 20)));
                if (waiting.Count == 0) continue;
                oldestSince.TryAdd(waiting[0].Id, formation);
                var chosen = PromptGrouping.Choose([.. waiting.Select(w => w.Length)], passedOver, room, 256);
                passedOver = !chosen.Contains(0);
                foreach (var i in chosen) ran.Add(waiting[i].Id);
                var oldest = waiting[0].Id;
                waiting = [.. waiting.Where((_, i) => !chosen.Contains(i))];
                if (!passedOver) Assert.True(formation - oldestSince[oldest] <= 1, $"prompt {oldest} waited {formation - oldestSince[oldest]} groups as the oldest");
            }
            Assert.Empty(waiting);
            Assert.Equal(next, ran.Count);
        });
}
