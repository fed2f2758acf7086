namespace NativeGpt2.Backends;

/// <summary>
/// Where the operators of the GPT-2 graph run: the vectorized CPU code (<see cref="Cpu.CpuBackend"/>) or
/// ILGPU kernels on CUDA or ILGPU's CPU accelerator (the NativeGpt2.Ilgpu package). The backbone graph
/// is written once against this interface and never asks which backend it has.
/// </summary>
/// <remarks>
/// <para>Every operator takes outputs first, then inputs, then sizes, as in llm.c; arguments are opaque
/// <see cref="DeviceBuffer{T}"/>s, since device memory cannot be a <see cref="Span{T}"/>. Sizes use the
/// model's vocabulary: B batch, T new tokens, N = B·T rows, C channels, NH heads, HS head size, V vocabulary.</para>
/// <para>Calls from one thread are ordered; <see cref="Enter"/> brackets one forward pass and makes the
/// backend usable from the calling thread (a GPU backend serializes passes there, the CPU backend lets
/// them run side by side). Data becomes visible to the host when <see cref="Download{T}"/> returns.</para>
/// <para>Results must not depend on which other rows share a batch (batch invariance): every row is
/// accumulated the same way whatever B is, so batched generation equals one-by-one generation.</para>
/// </remarks>
public interface IBackend : IDisposable
{
    /// <summary>The most candidates a row may hold in <see cref="TopKCandidates"/> (a GPU kernel keeps them in shared memory).</summary>
    public const int MaxTopKCapacity = 128;

    /// <summary>The name a user selects it by: <c>cpu</c>, <c>ilgpu-cpu</c>, <c>cuda</c>.</summary>
    string Name { get; }

    /// <summary>One line for the load log: the device, its memory and capability, or the CPU's vector width and threads.</summary>
    string Description { get; }

    /// <summary>
    /// A setup problem the user can fix, as one warning for the load log (e.g. an app compiled ahead of time for an
    /// instruction set that leaves this CPU's wider vectors unused), or null.
    /// </summary>
    string? Advice => null;

    /// <summary>
    /// Why this backend cannot run a model of <paramref name="config"/>'s shape (one line, with what to do instead), or
    /// null when it can. Asked once, before the weights are handed over.
    /// </summary>
    string? CannotRun(Gpt2Config config) => null;

    /// <summary>Makes the backend usable on this thread for one pass; dispose the scope when the pass is done.</summary>
    IDisposable Enter();

    /// <summary>
    /// Runs one decoding step's operators, the calls <paramref name="launches"/> makes: directly, or, where the backend
    /// records launches (CUDA graphs), as a replay of what they launched for an earlier step of the same
    /// <paramref name="key"/>. A replay runs the same kernels on the same buffers with the same arguments, except the
    /// cache's length <paramref name="past"/> (which <see cref="Attention"/> then reads from the device), so what the
    /// step computes may depend on nothing else that changes between steps but the buffers' contents.
    /// </summary>
    void RunStep(StepKey key, int past, Action launches) => launches();

    /// <summary>A buffer of <paramref name="length"/> elements (contents undefined).</summary>
    /// <exception cref="OutOfDeviceMemoryException">The backend's memory cannot hold it (the model turns this into a load or pass
    /// that fails whole, naming the model where it can).</exception>
    DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged;

    /// <summary>A buffer holding <paramref name="data"/>; the CPU backend may keep the array itself, so the caller must not change it afterwards.</summary>
    DeviceBuffer<T> Upload<T>(T[] data) where T : unmanaged;

    /// <summary>
    /// <paramref name="host"/> itself as a buffer where this backend computes in host memory (the CPU), so an
    /// output written there needs no copy back (<see cref="Download"/> from it is then a no-op); null elsewhere.
    /// </summary>
    DeviceBuffer<T>? Wrap<T>(T[] host) where T : unmanaged;

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> at element <paramref name="offset"/>.</summary>
    void CopyFromHost<T>(DeviceBuffer<T> destination, long offset, ReadOnlySpan<T> source) where T : unmanaged;

    /// <summary>Copies elements [<paramref name="offset"/>, offset + destination.Length) of <paramref name="source"/> to the host, waiting for earlier work.</summary>
    void Download<T>(Span<T> destination, DeviceBuffer<T> source, long offset) where T : unmanaged;

    /// <summary>
    /// The layout <see cref="PrepareMatrix"/> takes without copying: loaders read Conv1D weights straight into
    /// it, so a model is held once (panels for the CPU's matmul, row-major for the ILGPU kernels).
    /// </summary>
    Weights.WeightLayout MatrixLayout { get; }

    /// <summary>
    /// Takes a Conv1D weight (IC, OC), stored <c>[in, out]</c> as in the checkpoint, into the layout and
    /// format this backend's matmul reads (used in place, packed, widened or uploaded), once at load.
    /// </summary>
    DeviceMatrix PrepareMatrix(Weights.Weight weight);

    /// <summary>
    /// Takes a table (rows, cols) read by rows, once at load: <c>wte</c> (the embedding gathers its rows, the
    /// tied head reads all of them) or an untied <c>lm_head</c>.
    /// </summary>
    DeviceTable PrepareTable(Weights.Weight weight);

    /// <summary>out[n, :] = wte[ids[n], :] + wpe[positions[n], :]; out (N, C). Ids and positions are in range.</summary>
    void Embedding(DeviceBuffer<float> output, DeviceBuffer<int> ids, DeviceBuffer<int> positions,
        DeviceTable wte, DeviceBuffer<float> wpe, int N, int C);

    /// <summary>out[n, :] = (x[n, :] − mean) / √(var + eps) · weight + bias over C channels; out, x (N, C).</summary>
    void LayerNorm(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float> bias,
        int N, int C, float epsilon);

    /// <summary>
    /// out = epilogue(input · weight + bias) for a Conv1D weight (IC, OC); out (N, OC), input (N, IC).
    /// With <see cref="MatMulEpilogue.Residual"/>, out += input · weight + bias (out holds the residual stream).
    /// </summary>
    void MatMul(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceMatrix weight, DeviceBuffer<float> bias,
        int N, int IC, int OC, MatMulEpilogue epilogue);

    /// <summary>
    /// normalized = <see cref="LayerNorm"/>(input) over IC channels, then out = epilogue(normalized · weight + bias)
    /// as <see cref="MatMul"/> computes it, both bit for bit: the two steps each sublayer of a block starts with,
    /// in one call so that a backend may fuse them (a GPU then needs one launch, not two, per decoding step).
    /// out, normalized and input are distinct buffers.
    /// </summary>
    void LayerNormMatMul(DeviceBuffer<float> output, DeviceBuffer<float> normalized, DeviceBuffer<float> input,
        DeviceBuffer<float> normWeight, DeviceBuffer<float> normBias, float epsilon,
        DeviceMatrix weight, DeviceBuffer<float> bias, int N, int IC, int OC, MatMulEpilogue epilogue);

    /// <summary>out = input · weightᵀ with weight (OC, IC) row-major: the LM head over wte (V, C); out (N, OC).</summary>
    void MatMulTransposed(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceTable weight, int N, int IC, int OC);

    /// <summary>out = a + b, element-wise over <paramref name="count"/> values; out may be a.</summary>
    void Add(DeviceBuffer<float> output, DeviceBuffer<float> a, DeviceBuffer<float> b, long count);

    /// <summary>
    /// Causal self-attention of the T new tokens over the cache, which it first extends with their keys and
    /// values: qkv (B, T, 3C) holds them, and they go to positions [past, past + T) of keys and values
    /// (B, NH, Tmax, HS). Query t of row b attends to the keys j ≤ past + t whose mask is 1; out (B, T, C).
    /// Masked keys are left out, not set to −∞, so padding never changes a row's arithmetic; a query that sees
    /// no key gets zeros. When <paramref name="probabilities"/> is given it receives the weights (B, NH, T, past + T).
    /// The scores are <paramref name="scale"/> · q·k before the softmax (<see cref="Gpt2Config.AttentionScale"/>).
    /// </summary>
    void Attention(DeviceBuffer<float> output, DeviceBuffer<float>? probabilities, DeviceBuffer<float> qkv,
        DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<int> keyMask,
        int B, int T, int past, int Tmax, int NH, int HS, float scale);

    /// <summary>out[r, :] = input[rows[r], :] for R rows of C values.</summary>
    void GatherRows(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<int> rows, int R, int C);

    /// <summary>
    /// Positions [from, to) of cache row r take positions [sourceFrom, sourceFrom + to − from) of row rows[r] of the source,
    /// keys and values of every head, in one layer's cache of B rows (in the layout <see cref="Attention"/> keeps, Tmax slots
    /// a head; the source's sourceTmax); a row r with rows[r] &lt; 0, and other positions, are left as they are. The source
    /// may be the cache itself when no row read is written (rows[rows[r]] = rows[r], sourceFrom = from). Beam search follows
    /// its beams this way over the positions they do not share, contrastive search spreads the candidate it keeps over its
    /// other candidates' rows, one position a step (gathering whole rows would read and write the cache's capacity), and
    /// <see cref="Generation.GenerationBatcher"/> moves each sequence it decodes into a new cache, at the positions the batch gives it.
    /// </summary>
    void GatherCacheSlots(DeviceBuffer<float> keys, DeviceBuffer<float> values, DeviceBuffer<float> sourceKeys, DeviceBuffer<float> sourceValues,
        DeviceBuffer<int> rows, int B, int from, int to, int Tmax, int NH, int HS, int sourceFrom, int sourceTmax);

    /// <summary>out[n] = logits[n, targets[n]] − log Σ_v exp(logits[n, v]): each row's log-probability of its target.</summary>
    void TargetLogProbabilities(DeviceBuffer<float> output, DeviceBuffer<float> logits, DeviceBuffer<int> targets, int N, int V);

    /// <summary>
    /// out[n] = the first index of the largest logit of row n (greedy decoding, 4 bytes back per row), or −1
    /// when the row holds NaN or +∞ or is all −∞, so the host can report it.
    /// </summary>
    void ArgMax(DeviceBuffer<int> output, DeviceBuffer<float> logits, int N, int V);

    /// <summary>
    /// Top-k sampling's candidates of each row (<see cref="Operators.TopKCandidates"/>): every token whose logit is at least
    /// the row's k-th largest, in id order. Row n's go to one record of <paramref name="candidates"/>, at
    /// n · <see cref="Operators.TopKCandidates.RecordLength"/>(capacity), so that a step brings them all back in one copy: their
    /// number (or −1 when the host must read the row's logits instead: NaN, +∞, nothing but −∞, or more than capacity tied
    /// tokens), then capacity ids, then capacity logits as their bits. 1 ≤ k ≤ V and k ≤ capacity ≤ <see cref="MaxTopKCapacity"/>.
    /// </summary>
    void TopKCandidates(DeviceBuffer<int> candidates, DeviceBuffer<float> logits, int N, int V, int k, int capacity);
}

/// <summary>What a matmul does with its result before storing it.</summary>
public enum MatMulEpilogue
{
    /// <summary>out = x·W + b.</summary>
    Bias,

    /// <summary>out = gelu(x·W + b), GPT-2's tanh approximation: the MLP's first projection.</summary>
    BiasGelu,

    /// <summary>out += x·W + b: a projection added into the residual stream.</summary>
    Residual,

    /// <summary>out = x·Φ(x) of x·W + b, the erf GELU (<see cref="MlpActivation.Gelu"/>).</summary>
    BiasGeluErf,

    /// <summary>out = max(x·W + b, 0).</summary>
    BiasRelu,

    /// <summary>out = x·σ(x) of x·W + b.</summary>
    BiasSilu,

    /// <summary>out = x·σ(1.702·x) of x·W + b.</summary>
    BiasQuickGelu,
}
