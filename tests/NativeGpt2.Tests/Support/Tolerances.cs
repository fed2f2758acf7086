namespace NativeGpt2.Tests.Support;

/// <summary>
/// Every numeric tolerance of the test suite, in one place. References are float64 activations of the
/// same float32 weights (reference-data/README.md); Hugging Face's own float32 forward lands within
/// 3e-6 (tiny) to 1e-5 (gpt2-mini) of them in logits.
/// </summary>
public static class Tolerances
{
    /// <summary>Small float32 models (tiny, odd, gpt2-mini, shakespeare-char): absolute, every activation.</summary>
    public const double SmallModel = 1e-4;

    /// <summary>
    /// Full-size synthetic GPT-2 124M: 12 layers of 768 channels accumulate more rounding. The reference
    /// notes allow about 1e-3; this engine measures 1.4e-5, so the bound is kept tight enough to catch regressions.
    /// </summary>
    public const double Synthetic124M = 1e-4;

    /// <summary>
    /// Weights stored or held as F16 (10-bit mantissa, relative rounding ≤ 2^-11) compared with the
    /// float32 references: the weight rounding, not the arithmetic, dominates. Measured worst: 1.4e-2
    /// (gpt2-mini's logits).
    /// </summary>
    public const double Float16Weights = 2e-2;

    /// <summary>
    /// Weights stored or held as BF16 (7-bit mantissa, relative rounding ≤ 2^-8): eight times coarser than F16.
    /// Measured worst: 9.5e-2 (gpt2-mini's logits).
    /// </summary>
    public const double BFloat16Weights = 1.5e-1;

    /// <summary>
    /// Weights converted to 8-bit blocks at load (<see cref="Weights.WeightFormat.Q8"/>): 32 values share the scale
    /// max|w| / 127, so each is rounded to within 1/254 of its block's largest magnitude, about sixteen times
    /// coarser than float16 for the block's largest weights. Measured worst: 0.28 (gpt2-mini's logits).
    /// </summary>
    public const double Q8Weights = 5e-1;

    /// <summary>
    /// Relative change of the bundled model's perplexity on the validation text when its weights are held in a
    /// narrower format: rounding errors of single weights average out over 110,000 tokens (measured ≤ 1.2e-4).
    /// </summary>
    public const double PerplexityInFormat = 1e-3;

    /// <summary>The bound for weights held in <paramref name="format"/>, never tighter than the case's own.</summary>
    public static double InFormat(Weights.WeightFormat format, double tolerance) => Math.Max(tolerance, format switch
    {
        Weights.WeightFormat.F16 => Float16Weights,
        Weights.WeightFormat.BF16 => BFloat16Weights,
        Weights.WeightFormat.Q8 => Q8Weights,
        _ => tolerance,
    });

    /// <summary>A vectorized operator against its scalar reference, relative to the output's magnitude.</summary>
    public const double OperatorRelative = 1e-5;

    /// <summary>Softmax rows sum to one within this.</summary>
    public const double ProbabilitySum = 1e-5;

    /// <summary>KV-cached decoding against a full forward at the same position.</summary>
    public const double CachedDecoding = 1e-5;

    /// <summary>
    /// The ILGPU kernels sum in a different order (chunks of 64, warp shuffles) and compute exp through
    /// ILGPU's math library: a reference bound holds on every backend, widened only for CUDA's
    /// approximate exp2 (relative error about 2^-22 per call).
    /// </summary>
    public static double OnBackend(string backend, double tolerance) => backend == TestBackends.Cuda ? 2 * tolerance : tolerance;
}
