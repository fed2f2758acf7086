using NativeGpt2.Operators;
using NativeGpt2.Weights;

namespace NativeGpt2;

/// <summary>
/// The LM head: <c>logits = hidden · Wᵀ</c>, where W (V, C) is the token-embedding matrix read in
/// place (tied weights: the same array as the backbone's <c>wte</c>, never copied) or, for an untied
/// checkpoint, its own <c>lm_head.weight</c>. It can project only chosen positions, which is all
/// generation needs.
/// </summary>
public sealed class EmbeddingTransposeProjection
{
    private readonly ModelLifetime _lifetime;

    /// <summary>Creates a head over <paramref name="weight"/> (V, C).</summary>
    public EmbeddingTransposeProjection(Weight weight) : this(weight, new ModelLifetime())
    {
    }

    internal EmbeddingTransposeProjection(Weight weight, ModelLifetime lifetime)
    {
        _lifetime = lifetime;
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"{weight.Name} must be (V, C), found rank {weight.Shape.Length}", nameof(weight));
        Weight = weight;
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
        var logits = new float[CheckLogitCount(B * T)];
        MatMulTransposed.Forward(logits, hidden.Data, Weight.Data, B * T, EmbeddingSize, VocabSize);
        return new FloatTensor(logits, B, T, VocabSize);
    }

    /// <summary>Logits (B, P, V) at the chosen <paramref name="positions"/> of every sequence in hidden states (B, T, C).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A position is outside [0, T).</exception>
    public FloatTensor Forward(FloatTensor hidden, IReadOnlyList<int> positions)
    {
        ArgumentNullException.ThrowIfNull(positions);
        var (B, T) = CheckHidden(hidden);
        var C = EmbeddingSize;
        var P = positions.Count;
        var rows = new float[B * P * C];
        for (var b = 0; b < B; b++)
        {
            for (var p = 0; p < P; p++)
            {
                if ((uint)positions[p] >= (uint)T)
                    throw new ArgumentOutOfRangeException(nameof(positions), positions[p], $"position is outside the sequence [0, {T})");
                hidden.Data.AsSpan((b * T + positions[p]) * C, C).CopyTo(rows.AsSpan((b * P + p) * C, C));
            }
        }
        var logits = new float[CheckLogitCount(B * P)];
        MatMulTransposed.Forward(logits, rows, Weight.Data, B * P, C, VocabSize);
        return new FloatTensor(logits, B, P, VocabSize);
    }

    /// <summary>Logits (B, V) at the last position of each sequence: what the next token is drawn from.</summary>
    public FloatTensor ForwardLast(FloatTensor hidden)
    {
        var T = CheckHidden(hidden).T;
        var logits = Forward(hidden, [T - 1]);
        return new FloatTensor(logits.Data, logits.Shape[0], VocabSize);
    }

    private (int B, int T) CheckHidden(FloatTensor hidden)
    {
        _lifetime.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(hidden);
        if (hidden.Rank != 3 || hidden.Shape[2] != EmbeddingSize)
            throw new ArgumentException($"hidden states must be (B, T, {EmbeddingSize}), found {FloatTensor.ShapeToString(hidden.Shape)}", nameof(hidden));
        return (hidden.Shape[0], hidden.Shape[1]);
    }

    private long CheckLogitCount(int rows)
    {
        var count = (long)rows * VocabSize;
        if (count > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(rows), $"{rows} positions × {VocabSize} logits exceed the largest .NET array; project fewer positions at a time");
        return count;
    }
}
