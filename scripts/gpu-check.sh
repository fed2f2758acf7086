#!/usr/bin/env bash
# The CUDA checks, in one run on a machine with an NVIDIA GPU and no .NET SDK.
#
# Prepare on a machine with the SDK (from the repository root):
#   dotnet publish src/NativeGpt2.Cli -c Release -r linux-x64 --self-contained \
#     -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -o .gpu
# then run this script from the repository root on the GPU machine. It prints every result and
# writes the bench figures to $OUT (or ./gpu-results) as JSON lines for docs/performance.md.
#
# Or pack a .NET runtime and the framework-dependent build with scripts/gpu-bundle.sh DIR and run DIR/run.sh there.
# With a .NET runtime there instead (no SDK needed), these variables run the framework-dependent build:
#   NATIVEGPT2   the command that runs the CLI, e.g. "dotnet tests/NativeGpt2.Tests/bin/Release/net10.0/NativeGpt2.Cli.dll"
#                (default ./.gpu/nativegpt2)
#   TESTS        NativeGpt2.Tests.dll: when set, its CUDA test cases run too (its own entry point, Support/TestRunner.cs),
#                with DOTNET (default dotnet) as the runtime's host; TESTS_EXCEPT names cases to leave out.
#   SECTIONS     the sections to run, e.g. "1 2 2a 2b", then "3 3c 3d 6", then "3b 4 5" (checks run 4 passed): a whole
#                run takes longer than one 10-minute command on the GPU machines (default: all of them).
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
N=${NATIVEGPT2:-./.gpu/nativegpt2}
RESULTS=${OUT:-./gpu-results}
mkdir -p "$RESULTS"
failures=0
run() { echo "+ $* (at ${SECONDS} s)"; "$@" || { echo "FAILED ($?): $*"; failures=$((failures + 1)); }; }
# The bundled trained model, which sections 1 and 5 run when it is here.
bundled=reference-data/models/shakespeare-char
# SECTIONS (e.g. "1 2a 6") runs only those sections, so that a run can be split over several commands; all by default.
want() { [ -z "${SECTIONS:-}" ] || [[ " $SECTIONS " == *" $1 "* ]]; }
# The CPU's greedy continuation of synthetic:gpt2, which every CUDA configuration must reproduce (computed once).
synthetic_greedy=
cpu_greedy() {
  [ -n "$synthetic_greedy" ] || synthetic_greedy=$($N generate --backend cpu --model synthetic:gpt2 --prompt "The meaning of life is" --greedy --max-new-tokens 40)
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv || true

if want 1; then
echo "== 1. agreement (at ${SECONDS} s)"
# 1. Quick agreement first: CPU against CUDA on every hidden state, attention and the logits, and greedy text
#    (decoding: the fused LayerNorm + matrix-vector kernels and the one-launch decoding attention).
run $N crosscheck --model synthetic:gpt2 --backends cpu,cuda --text "The meaning of life is that every backend agrees with every other one." --tolerance 2e-4
if [ -e $bundled/config.json ]; then
  expected=$($N generate --backend cpu --model $bundled --prompt "ROMEO:" --greedy --max-new-tokens 100)
  actual=$($N generate --backend cuda --model $bundled --prompt "ROMEO:" --greedy --max-new-tokens 100)
  if [ "$expected" == "$actual" ]; then echo "greedy: cuda equals cpu"; else echo "FAILED: greedy text differs"; failures=$((failures + 1)); fi
  # Beam and contrastive search: several rows a step, and the cache's positions gathered between rows (GatherCacheSlots).
  for search in "--num-beams 4" "--penalty-alpha 0.6 --top-k 4"; do
    expected=$($N generate --backend cpu --model $bundled --prompt "ROMEO:" --max-new-tokens 60 $search)
    actual=$($N generate --backend cuda --model $bundled --prompt "ROMEO:" --max-new-tokens 60 $search)
    if [ "$expected" == "$actual" ]; then echo "$search: cuda equals cpu"; else echo "FAILED: $search text differs"; failures=$((failures + 1)); fi
  done
else
  echo "skip greedy on $bundled: model not present"
fi
cpu_greedy
actual=$($N generate --backend cuda --model synthetic:gpt2 --prompt "The meaning of life is" --greedy --max-new-tokens 40)
if [ "$synthetic_greedy" == "$actual" ]; then echo "greedy synthetic:gpt2: cuda equals cpu"; else echo "FAILED: greedy text of synthetic:gpt2 differs"; failures=$((failures + 1)); fi
fi

if want 2; then
echo "== 2. speed (at ${SECONDS} s)"
# 2. Launch overhead (10,000 empty launches) and speed, batch 1, float32.
run $N bench --backend cuda --model reference-data/models/tiny --prompt-tokens 16 --new-tokens 16 --launches 10000
for model in gpt2 gpt2-medium gpt2-xl; do
  timeout 150 $N bench --backend cuda --model synthetic:$model --prompt-tokens 1024 --new-tokens 0 --json 2>&1 | tee -a "$RESULTS/bench-cuda.jsonl" || true
  timeout 150 $N bench --backend cuda --model synthetic:$model --prompt-tokens 128 --new-tokens 256 --json 2>&1 | tee -a "$RESULTS/bench-cuda.jsonl" || failures=$((failures + 1))
done
# Eight sequences decoding side by side (what the server's shared batch runs): every row's tokens counted.
for model in gpt2 gpt2-xl; do
  timeout 150 $N bench --backend cuda --model synthetic:$model --batch 8 --prompt-tokens 128 --new-tokens 128 --json 2>&1 | tee -a "$RESULTS/bench-cuda.jsonl" || failures=$((failures + 1))
done
# Sampled decoding (top-k 40, the picks on the host from the candidates the GPU sends back), one row and eight.
timeout 150 $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 128 --new-tokens 256 --top-k 40 --json 2>&1 | tee -a "$RESULTS/bench-cuda.jsonl" || failures=$((failures + 1))
timeout 150 $N bench --backend cuda --model synthetic:gpt2 --batch 8 --prompt-tokens 128 --new-tokens 128 --top-k 40 --json 2>&1 | tee -a "$RESULTS/bench-cuda.jsonl" || failures=$((failures + 1))
fi

if want 2a; then
echo "== 2a. decoding steps as CUDA graphs (at ${SECONDS} s)"
# 2a. NATIVEGPT2_CUDA_GRAPHS=1: each cache's decoding steps recorded once and replayed (StepGraphs.cs). Greedy text equal
#     to the CPU's (single and batched through the tests), then the same decoding benchmarks as step 2; each JSON line's
#     backend_description says how many steps were recorded and replayed, or why recording stopped.
export NATIVEGPT2_CUDA_GRAPHS=1
cpu_greedy
graphs=$($N generate --backend cuda --model synthetic:gpt2 --prompt "The meaning of life is" --greedy --max-new-tokens 40)
if [ "$synthetic_greedy" == "$graphs" ]; then echo "greedy synthetic:gpt2 with CUDA graphs: cuda equals cpu"; else echo "FAILED: greedy text of synthetic:gpt2 differs with CUDA graphs"; failures=$((failures + 1)); fi
for model in gpt2 gpt2-xl; do
  timeout 150 $N bench --backend cuda --model synthetic:$model --prompt-tokens 128 --new-tokens 256 --json 2>&1 | tee -a "$RESULTS/bench-cuda-graphs.jsonl" || failures=$((failures + 1))
done
timeout 150 $N bench --backend cuda --model synthetic:gpt2 --batch 8 --prompt-tokens 128 --new-tokens 128 --json 2>&1 | tee -a "$RESULTS/bench-cuda-graphs.jsonl" || failures=$((failures + 1))
if [ -n "${TESTS:-}" ]; then
  run timeout 120 ${DOTNET:-dotnet} "$TESTS" --cases 'IlgpuStepTests' --cases 'Greedy_' --cases 'Batched_left_padded' --cases 'GenerationBatcherTests' \
    --cases 'search_with_a_cache' --cases 'KvCache' --except 'ilgpu-cpu' --except '"cpu' --except 'gpt2-mini'
fi
unset NATIVEGPT2_CUDA_GRAPHS
fi

if want 2b; then
echo "== 2b. tests (at ${SECONDS} s)"
# 2b. The test suite's CUDA cases (conformance of every operation, the kernels' own tests, references, greedy,
#     batching, scoring, sharing between threads), when the test assembly is here.
#     TESTS_EXCEPT leaves out the cases whose names hold any of its space-separated words, e.g. '"gpt2-mini' for a model
#     left out of the upload.
if [ -n "${TESTS:-}" ]; then
  except=()
  for word in ${TESTS_EXCEPT:-}; do except+=(--except "$word"); done
  run timeout 300 ${DOTNET:-dotnet} "$TESTS" --cases '"cuda"' "${except[@]}"
fi
fi

if want 3; then
echo "== 3. profiles (at ${SECONDS} s)"
# 3. Where the time goes, 124M decoding and prefill: each kernel's device time (CUDA events, no launch waited for),
#    then decoding once more with every launch waited for (what launching costs on top).
#    Each projection and attention shape has its own line, with the GB/s or TFLOP/s it reached.
NATIVEGPT2_ILGPU_PROFILE=1 timeout 100 $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 128 --new-tokens 128 2>&1 | tail -40
NATIVEGPT2_ILGPU_PROFILE=1 timeout 100 $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 1024 --new-tokens 0 2>&1 | tail -30
NATIVEGPT2_ILGPU_PROFILE=1 timeout 150 $N bench --backend cuda --model synthetic:gpt2-xl --prompt-tokens 128 --new-tokens 64 2>&1 | tail -40
NATIVEGPT2_ILGPU_PROFILE=wait timeout 100 $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 128 --new-tokens 128 2>&1 | tail -40
fi

if want 3b; then
echo "== 3b. general kernels (at ${SECONDS} s)"
# 3b. Agreement with the CPU with only the general kernels (NATIVEGPT2_ILGPU_KERNELS=general: the split matrix-vector
#     kernel for every decoding projection, a warp per query for prefill attention), which stay as fallbacks. Their
#     speed against the shape-specific ones was measured in run 4 (bench/results/*-run4-f864bdc-general.jsonl).
export NATIVEGPT2_ILGPU_KERNELS=general
run $N crosscheck --model synthetic:gpt2 --backends cpu,cuda --text "The meaning of life is that every backend agrees with every other one." --tolerance 2e-4
cpu_greedy
general=$($N generate --backend cuda --model synthetic:gpt2 --prompt "The meaning of life is" --greedy --max-new-tokens 40)
if [ "$synthetic_greedy" == "$general" ]; then echo "greedy synthetic:gpt2, general kernels: cuda equals cpu"; else echo "FAILED: greedy text of synthetic:gpt2 differs with the general kernels"; failures=$((failures + 1)); fi
unset NATIVEGPT2_ILGPU_KERNELS
fi

if want 3c; then
echo "== 3c. tile shapes (at ${SECONDS} s)"
# 3c. Prefill of 1,024 tokens of 124M with every tiled matmul in one tile shape (NATIVEGPT2_ILGPU_TILES=ROWSxCOLUMNS),
#     each projection's device time and TFLOP/s per shape, against the shapes the launch chooses (3's second profile):
#     the data to choose tiles by output shape (1,024 x 768 outputs are 192 tiles of 64 x 64, 2,304 columns 576).
#     Then the inputs split in 2 and 4 runs of chunks (NATIVEGPT2_ILGPU_SPLIT: each chunk's sums written, then added in
#     order by a second kernel; the same values), with the launch's own tiles and with 64 x 64, and split by shape (auto:
#     IlgpuBackend.SplitFor, 64-row tiles). Last, prompts of 128 tokens split by shape, for 124M and 1.5B: section 3's
#     first and third profiles have them unsplit (run 4: 0.8-3.2 TFLOP/s in 16-row tiles, the MLP's projection 706 µs).
for run in 64x64:1 32x64:1 64x32:1 32x32:1 16x64:1 :2 :4 64x64:4 :auto; do
  tiles=${run%%:*} split=${run##*:}
  [ "$split" = 1 ] && split=
  echo "-- tiles ${tiles:-chosen by shape}, inputs in ${split:-1}"
  NATIVEGPT2_ILGPU_TILES=$tiles NATIVEGPT2_ILGPU_SPLIT=$split NATIVEGPT2_ILGPU_PROFILE=1 timeout 60 $N bench --backend cuda --model synthetic:gpt2 \
    --prompt-tokens 1024 --new-tokens 0 2>&1 | grep -E 'ignored|prefill|MatMulTiled|AddChunkSums|AttentionPrefillTiles'
done
for model in gpt2 gpt2-xl; do
  echo "-- synthetic:$model, 128 tokens, inputs split by shape"
  NATIVEGPT2_ILGPU_SPLIT=auto NATIVEGPT2_ILGPU_PROFILE=1 timeout 100 $N bench --backend cuda --model synthetic:$model \
    --prompt-tokens 128 --new-tokens 0 2>&1 | grep -E 'ignored|prefill|MatMulTiled|AddChunkSums|AttentionPrefillTiles'
done
fi

if want 3d; then
echo "== 3d. decoding column blocks (at ${SECONDS} s)"
# 3d. Decoding of 1.5B and 124M with the column-block kernel at 8, 16 and 32 columns a group and with the split kernel
#     (NATIVEGPT2_ILGPU_MATVEC_COLUMNS; the same values in each): each projection's GB/s by width. 1.5B's projections
#     read at 0.6-1.5 TB/s in run 4 with 8 or 16 columns (32 or 64 contiguous bytes of each weight row a group); 32
#     columns read whole 128-byte lines. "words" reads along the weight rows (MatMulKernels.MatVecWords: a warp per 128
#     columns and chunk, a 16-byte word of four columns a lane, 512 contiguous bytes a load instruction) and adds the
#     chunk sums in a second launch: the MatVecWords and AddColumnChunkSums lines together are its time.
#     124M at 32 and words only: section 3 has its default widths.
for run in "gpt2-xl words" "gpt2-xl 8" "gpt2-xl 16" "gpt2-xl 32" "gpt2-xl 0" "gpt2 32" "gpt2 words"; do
  set -- $run
  echo "-- synthetic:$1, $2 columns"
  NATIVEGPT2_ILGPU_MATVEC_COLUMNS=$2 NATIVEGPT2_ILGPU_PROFILE=1 timeout 100 $N bench --backend cuda --model synthetic:$1 --prompt-tokens 128 --new-tokens 64 2>&1 \
    | grep -E 'ignored|decode|MatVec|ChunkSums|AttentionDecode'
done
# The rate itself, without the profile's stream markers (section 2 has the default kernels' for 1.5B).
echo "-- synthetic:gpt2-xl, words, not profiled"
NATIVEGPT2_ILGPU_MATVEC_COLUMNS=words timeout 100 $N bench --backend cuda --model synthetic:gpt2-xl --prompt-tokens 128 --new-tokens 64 2>&1 \
  | grep -E 'ignored|decode'
fi

if want 4; then
echo "== 4. references (at ${SECONDS} s)"
# 4. Every reference file on CUDA, each against the model it was made from.
for ref in reference-data/refs/*.safetensors; do
  case=$(basename "$ref" .safetensors)
  model=${case%%.*}
  # Greedy continuations are checked in step 1; scoring windows hold no activations to verify.
  case $case in *.greedy|*.val_windows) continue ;; esac
  [ -e "reference-data/models/$model/config.json" ] || [ "$model" == synthetic-124M ] || { echo "skip $case: model not present"; continue; }
  case $model in
    synthetic-124M) spec=synthetic:gpt2 ;;
    *) spec=reference-data/models/$model ;;
  esac
  run $N verify --backend cuda --model "$spec" --reference "$ref" --tolerance 2e-4
done
for layout in tiny-hub tiny-sharded; do
  run $N verify --backend cuda --model reference-data/models/$layout --reference reference-data/refs/tiny.left_padded.safetensors
done
fi

if want 5; then
echo "== 5. long crosschecks (at ${SECONDS} s)"
# 5. The long crosschecks: 1,000 tokens of synthetic GPT-2, and all three backends on the bundled model.
run $N crosscheck --model synthetic:gpt2 --backends cpu,cuda --ids "$(seq -s, 1 1000)" --tolerance 2e-4
[ -e $bundled/config.json ] && run $N crosscheck --model $bundled --backends cpu,ilgpu-cpu,cuda --text "ROMEO:
What, ho!" --tolerance 2e-4
fi

if want 6; then
echo "== 6. hardware counters (at ${SECONDS} s)"
# 6. What the device does in a decoding step, where Nsight Compute reads the counters (ncu replays each kernel: the
#    durations are the kernels' own, without the host's gaps that step 3's stream markers count). First every
#    projection and attention launch of one step of 124M (60 launches, after two steps; a 16-token prompt takes the
#    tiled kernels, so only decoding launches these) with its duration, DRAM throughput, occupancy and registers, and
#    their sum: most of the device's share of the step (the head adds about 80 µs), against the step's time in step 2.
#    Then the full sections (memory, occupancy, stalls) of one layer's decoding kernels, in $RESULTS/ncu-decode.txt,
#    for why the 768-input projections read slower than the MLP's.
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  # Kernels are named Kernel_<method> in the PTX: MatMulKernels.MatVec and .MatVecColumns, AttentionKernel.Decode.
  decoding='regex:^Kernel_(MatVecColumns|MatVec|Decode)$'
  timeout 100 "$NCU" --clock-control none --kernel-name "$decoding" --launch-skip 120 --launch-count 60 --csv --page raw --print-units base \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread \
    $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 16 --new-tokens 8 > "$RESULTS/ncu-step.csv" 2> "$RESULTS/ncu-step.err"
  echo "ncu exit $?"
  python3 scripts/ncu-table.py "$RESULTS/ncu-step.csv" || tail -5 "$RESULTS/ncu-step.err"
  timeout 80 "$NCU" --clock-control none --kernel-name "$decoding" --launch-skip 120 --launch-count 5 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
    $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 16 --new-tokens 8 > "$RESULTS/ncu-decode.txt" 2>&1
  echo "ncu exit $?"
  grep -E 'Kernel_|Duration|DRAM Throughput|Achieved Occupancy|Registers Per Thread|Stall|==ERROR==' "$RESULTS/ncu-decode.txt" | head -80
  # The head of one row (the same kernel and shape after a prompt as after a decoding step): run 4's stream markers had it
  # at 77.6 µs for 154 MB (2.0 TB/s of the H200's 4.8), about a tenth of a decoding step's device time.
  timeout 60 "$NCU" --clock-control none --kernel-name 'regex:^Kernel_MatVecTransposed$' --launch-skip 2 --launch-count 2 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
    $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 16 --new-tokens 8 > "$RESULTS/ncu-head.txt" 2>&1
  echo "ncu exit $?"
  grep -E 'Kernel_|Duration|DRAM Throughput|Achieved Occupancy|Registers Per Thread|Stall|==ERROR==' "$RESULTS/ncu-head.txt" | head -30
  # 6b. One layer of a 1,024-token pass of 124M: the four tiled projections and the attention by query tiles (the bench's
  #     first pass, layer 0), for why c_attn (576 tiles) and the 768-column outputs ran at 5-10 TFLOP/s where c_fc ran
  #     at 22: waves per multiprocessor, the groups per multiprocessor that registers and shared memory allow, and the
  #     occupancy reached.
  prefill='regex:^Kernel_(Tiled|PrefillTiles)$'
  timeout 100 "$NCU" --clock-control none --kernel-name "$prefill" --launch-count 5 --csv --page raw --print-units base \
    --metrics gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__waves_per_multiprocessor,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem \
    $N bench --backend cuda --model synthetic:gpt2 --prompt-tokens 1024 --new-tokens 0 > "$RESULTS/ncu-prefill.csv" 2> "$RESULTS/ncu-prefill.err"
  echo "ncu exit $?"
  python3 scripts/ncu-table.py "$RESULTS/ncu-prefill.csv" || tail -5 "$RESULTS/ncu-prefill.err"
else
  echo "skip: no ncu here"
fi
fi

echo "gpu-check: $failures failure(s) in ${SECONDS} s"
exit $((failures > 0))
