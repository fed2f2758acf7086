#!/usr/bin/env bash
# The CPU measurements of docs/performance.md, in one run on one machine:
#   0. the float32 multiply-add peak at each vector width, one thread and every core (the compute ceiling);
#   1. NativeGpt2 (each SIMD width the CPU has) and ONNX Runtime side by side, forward pass of T tokens;
#   2. nativegpt2 bench for each weight format, decoding after 128 and 512 tokens (with the measured
#      read bandwidth and the bound it implies), and the narrower 256-bit path forced;
#   3. the chart of (1), beside the results as <same name>.svg. It replaces docs/images/cpu-forward.svg only when asked
#      (CHART=docs/images/cpu-forward.svg), so that a run on another machine leaves the chart of the run the docs report.
# Results go to bench/results/<date>-<time>-<cpu>.jsonl (one JSON object per line). Takes about 3-5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release src/NativeGpt2.Cli >/dev/null
dotnet build -c Release bench/NativeGpt2.Benchmarks >/dev/null
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
out="bench/results/$(date +%F-%H%M)-${cpu:-cpu}.jsonl"
cli="dotnet src/NativeGpt2.Cli/bin/Release/net10.0/NativeGpt2.Cli.dll"

dotnet bench/NativeGpt2.Benchmarks/bin/Release/net10.0/NativeGpt2.Benchmarks.dll --peak > "$out"
dotnet bench/NativeGpt2.Benchmarks/bin/Release/net10.0/NativeGpt2.Benchmarks.dll --compare 16 32 64 128 256 512 1024 >> "$out"
for prompt in 128 512; do
  for weights in f32 f16 bf16 q8; do
    $cli bench --model synthetic:gpt2 --backend cpu --weights "$weights" --prompt-tokens "$prompt" --new-tokens 64 --json >> "$out"
  done
  NATIVEGPT2_CPU_VECTOR=256 $cli bench --model synthetic:gpt2 --backend cpu --prompt-tokens "$prompt" --new-tokens 64 --json >> "$out"
done
dotnet bench/NativeGpt2.Benchmarks/bin/Release/net10.0/NativeGpt2.Benchmarks.dll --plot "$out" "${CHART:-${out%.jsonl}.svg}"
echo "$out"
