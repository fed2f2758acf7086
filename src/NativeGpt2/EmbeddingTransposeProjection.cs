using NativeGpt2.Backends;
using NativeGpt2.Backends.Cpu;
using NativeGpt2.Weights;

namespace NativeGpt2;

/// <summary>
/// The LM head: <c>logits = hidden · Wᵀ</c>, where W (V, C) is the token-embedding matrix read in
/// place (tied weights: the same buffer as the backbone's <c>wte</c>, never copied) or, for an untied
/// checkpoint, its own <c>lm_head.weight</c>. It can project only chosen positions, which is all
/// generation needs.
/// </summary>
public sealed class EmbeddingTransposeProjection
{
    private readonly ModelLifetime _lifetime;
    private readonly IBackend _backend;
    private readonly DeviceTable _matrix;

    /// <summary>Creates a head over <paramref name="weight"/> (V, C), on the CPU.</summary>
    public EmbeddingTransposeProjection(Weight weight)
        : this(CheckWeight(weight), CpuBackend.Instance, CpuBackend.Instance.PrepareTable(weight), new ModelLifetime())
    {
    }

    internal EmbeddingTransposeProjection(Weight weight, IBackend backend, DeviceTable matrix, ModelLifetime lifetime)
    {
        Weight = CheckWeight(weight);
        _backend = backend;
        _matrix = matrix;
        _lifetime = lifetime;
    }

    private static Weight CheckWeight(Weight weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"{weight.Name} must be (V, C), found rank {weight.Shape.Length}", nameof(weight));
        return weight;
    }

    /// <summary>The matrix (V, C) this head reads.</summary>
    public Weight Weight { get; }

    /// <summary>V: logits per position.</summary>
    public int VocabSize => Weight.Shape[0];

    /// <summary>C: channels of the hidden states.</summary>
    public int EmbeddingSize => Weight.Shape[1];

    /// <summary>Logits (B, T, V) for every position of hidden states (B, T, C).</summary>
    public FloatTensor Forward(FloatTensor hidden)
    {
        var (B, T) = CheckHidden(hidden);
        return Forward(hidden, Enumerable.Range(0, T).ToArray(), B, T);
    }

    /// <summary>Logits (B, P, V) at the chosen <paramref name="positions"/> of every sequence in hidden states (B, T, C).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A position is outside [0, T).</exception>
    public FloatTensor Forward(FloatTensor hidden, IReadOnlyList<int> positions)
    {
        ArgumentNullException.ThrowIfNull(positions);
        var (B, T) = CheckHidden(hidden);
        return Forward(hidden, positions, B, T);
    }

    /// <summary>Logits (B, V) at the last position of each sequence: what the next token is drawn from.</summary>
    public FloatTensor ForwardLast(FloatTensor hidden)
    {
        var (B, T) = CheckHidden(hidden);
        var logits = Forward(hidden, [T - 1], B, T);
        return new FloatTensor(logits.Data, B, VocabSize);
    }

    private FloatTensor Forward(FloatTensor hidden, IReadOnlyList<int> positions, int B, int T)
    {
        var rows = Rows(positions, B, T);
        // Every element is written (by the head, or by the copy back from a device), so it need not be cleared first.
        var logits = GC.AllocateUninitializedArray<float>((int)CheckLogitCount(rows.Length));
        using var call = _lifetime.Enter();
        using var scope = _backend.Enter();
        using var input = _backend.Upload(hidden.Data);
        using var rowIds = _backend.Upload(rows);
        using var gathered = _backend.Allocate<float>((long)rows.Length * EmbeddingSize);
        using var output = _backend.Wrap(logits) ?? _backend.Allocate<float>(logits.Length);
        _backend.GatherRows(gathered, input, rowIds, rows.Length, EmbeddingSize);
        Project(output, gathered, rows.Length);
        _backend.Download(logits, output, 0);
        return new FloatTensor(logits, B, positions.Count, VocabSize);
    }

    /// <summary>logits (R, V) = hidden (R, C) · Wᵀ, on the backend. The caller holds the backend's scope.</summary>
    internal void Project(DeviceBuffer<float> logits, DeviceBuffer<float> hidden, int rows) =>
        _backend.MatMulTransposed(logits, hidden, _matrix, rows, EmbeddingSize, VocabSize);

    /// <summary>The flat row index of every (sequence, position) pair, sequence-major.</summary>
    internal static int[] Rows(IReadOnlyList<int> positions, int B, int T)
    {
        var rows = new int[B * positions.Count];
        for (var b = 0; b < B; b++)
        {
            for (var p = 0; p < positions.Count; p++)
            {
                if ((uint)positions[p] >= (uint)T)
                    throw new ArgumentOutOfRangeException(nameof(positions), positions[p], $"position is outside the sequence [0, {T})");
                rows[b * positions.Count + p] = b * T + positions[p];
            }
        }
        return rows;
    }

    private (int B, int T) CheckHidden(FloatTensor hidden)
    {
        _lifetime.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(hidden);
        if (hidden.Rank != 3 || hidden.Shape[2] != EmbeddingSize)
            throw new ArgumentException($"hidden states must be (B, T, {EmbeddingSize}), found {FloatTensor.ShapeToString(hidden.Shape)}", nameof(hidden));
        return (hidden.Shape[0], hidden.Shape[1]);
    }

    /// <summary>Logits of <paramref name="rows"/> positions must fit one array.</summary>
    internal long CheckLogitCount(int rows)
    {
        var count = (long)rows * VocabSize;
        if (count > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(rows), $"{rows} positions × {VocabSize} logits exceed the largest .NET array; project fewer positions at a time");
        return count;
    }
}
