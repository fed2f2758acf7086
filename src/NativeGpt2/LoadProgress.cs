namespace NativeGpt2;

/// <summary>Progress of a long load: what is happening and how far along it is (0 to 1).</summary>
/// <param name="Stage">What is being done, e.g. <c>reading model.safetensors</c> or <c>downloading model.safetensors</c>.</param>
/// <param name="Fraction">Completed fraction of that stage, from 0 to 1.</param>
public sealed record LoadProgress(string Stage, double Fraction);
