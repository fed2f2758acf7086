using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Util;

namespace NativeGpt2.Ilgpu.Kernels;

/// <summary>
/// Sums and maxima across a warp (butterfly shuffles: every lane ends with the result) and across a
/// group (each warp's result through shared memory, then one warp). The order of operations depends only
/// on the group's shape, never on the data or on other rows, so results are reproducible.
/// </summary>
internal static class Reductions
{
    /// <summary>Most warps a group may have; the group reductions hold one value per warp in shared memory.</summary>
    public const int MaxWarpsPerGroup = 32;

    public static float WarpSum(float value)
    {
        for (var offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            value += Warp.ShuffleXor(value, offset);
        return value;
    }

    public static float WarpMax(float value)
    {
        for (var offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            value = XMath.Max(value, Warp.ShuffleXor(value, offset));
        return value;
    }

    /// <summary>The sum over the whole group, in every thread. Every thread of the group must call it.</summary>
    public static float GroupSum(float value, ArrayView<float> scratch)
    {
        value = WarpSum(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        var warps = Group.DimX / Warp.WarpSize;
        value = Warp.LaneIdx < warps ? scratch[Warp.LaneIdx] : 0f;
        value = WarpSum(value);
        // The scratch may be reused by the next reduction only after every warp has read it.
        Group.Barrier();
        return value;
    }

    /// <summary>
    /// <see cref="GroupSum(float, ArrayView{float})"/> of four values at once (four rows' sums), each summed in exactly its
    /// order: each step shuffles the four as one value, which a GPU does as four shuffles and ILGPU's CPU accelerator as
    /// one round of barriers between the warp's OS threads instead of four. Every thread of the group must call it.
    /// </summary>
    public static Float4 GroupSum(Float4 value, ArrayView<Float4> scratch)
    {
        value = WarpSumOfFour(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        var warps = Group.DimX / Warp.WarpSize;
        value = Warp.LaneIdx < warps ? scratch[Warp.LaneIdx] : default;
        value = WarpSumOfFour(value);
        Group.Barrier();
        return value;
    }

    private static Float4 WarpSumOfFour(Float4 value)
    {
        for (var offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            value += Warp.ShuffleXor(value, offset);
        return value;
    }

    /// <summary>The maximum over the whole group, in every thread. Every thread of the group must call it.</summary>
    public static float GroupMax(float value, ArrayView<float> scratch)
    {
        value = WarpMax(value);
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = value;
        Group.Barrier();
        var warps = Group.DimX / Warp.WarpSize;
        value = Warp.LaneIdx < warps ? scratch[Warp.LaneIdx] : float.NegativeInfinity;
        value = WarpMax(value);
        Group.Barrier();
        return value;
    }

    /// <summary>
    /// The group's largest value and the first index holding it, in every thread: (a wins over b) when
    /// a is larger, or equal with a smaller index. Every thread of the group must call it.
    /// </summary>
    public static void GroupArgMax(ref float value, ref int index, ArrayView<float> values, ArrayView<int> indices)
    {
        WarpArgMax(ref value, ref index);
        if (Warp.LaneIdx == 0)
        {
            values[Warp.WarpIdx] = value;
            indices[Warp.WarpIdx] = index;
        }
        Group.Barrier();
        var warps = Group.DimX / Warp.WarpSize;
        value = Warp.LaneIdx < warps ? values[Warp.LaneIdx] : float.NegativeInfinity;
        index = Warp.LaneIdx < warps ? indices[Warp.LaneIdx] : int.MaxValue;
        WarpArgMax(ref value, ref index);
        Group.Barrier();
    }

    private static void WarpArgMax(ref float value, ref int index)
    {
        for (var offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            // Value and index as one shuffle: two shuffles of 32 bits on a GPU, one round of barriers on the CPU accelerator.
            var other = Warp.ShuffleXor(new Candidate(value, index), offset);
            if (other.Value > value || (other.Value == value && other.Index < index))
            {
                value = other.Value;
                index = other.Index;
            }
        }
    }

    /// <summary>A value and its index, shuffled together.</summary>
    private readonly struct Candidate(float value, int index)
    {
        public readonly float Value = value;
        public readonly int Index = index;
    }
}
