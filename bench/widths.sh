#!/usr/bin/env bash
# Every SIMD width of the CPU backend on this machine, forced in turn (NATIVEGPT2_CPU_VECTOR), for a few rounds:
# nativegpt2 bench on synthetic:gpt2 in float32, forward and prefill of 128 tokens, then 64 tokens decoded.
# A width the CPU lacks is emulated by the runtime (correct, slower); on x86 the 128-bit path is SSE with FMA,
# on Arm64 NEON, the path such machines take by default.
# Usage: bench/widths.sh [rounds, default 2]. Results go to bench/results/<date>-<time>-<cpu>-widths.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
dotnet build -c Release src/NativeGpt2.Cli >/dev/null
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
out="bench/results/$(date +%F-%H%M)-${cpu:-cpu}-widths.jsonl"
cli="dotnet src/NativeGpt2.Cli/bin/Release/net10.0/NativeGpt2.Cli.dll"
for round in $(seq "$rounds"); do
  for width in 512 256 128 scalar; do
    NATIVEGPT2_CPU_VECTOR=$width $cli bench --model synthetic:gpt2 --backend cpu --prompt-tokens 128 --new-tokens 64 --json >> "$out"
  done
done
echo "$out"
