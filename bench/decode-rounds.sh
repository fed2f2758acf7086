#!/usr/bin/env bash
# Decoding rounds of docs/performance.md: each weight format decodes 64 tokens after a 128-token prompt, the four
# formats one after the other, ROUNDS times (default 6), so that formats compare at the read rate of the same minutes.
# Usage: bench/decode-rounds.sh [ROUNDS] [VECTOR]   (VECTOR: 256 forces the 256-bit path, as NATIVEGPT2_CPU_VECTOR does;
#   avx2 runs the runtime without AVX-512 (DOTNET_EnableAVX512=0), so that the 256-bit path is also compiled for AVX2's
#   16 vector registers: forced on an AVX-512 machine it keeps the 32 that EVEX encoding gives)
# Writes bench/results/<date>-<time>-<cpu>-decode-rounds[-vector256|-avx2].jsonl and prints, per format, the medians and the
# speed relative to float32 at the same read rate: (float32's bytes / its bytes) × (its fraction / float32's fraction).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
vector=${2:-}
dotnet build -c Release src/NativeGpt2.Cli >/dev/null
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
suffix=${vector:+-vector$vector}; [ "$vector" = avx2 ] && suffix=-avx2
out="bench/results/$(date +%F-%H%M)-${cpu:-cpu}-decode-rounds$suffix.jsonl"
cli="dotnet src/NativeGpt2.Cli/bin/Release/net10.0/NativeGpt2.Cli.dll"
for round in $(seq "$rounds"); do
  for weights in f32 f16 bf16 q8; do
    if [ "$vector" = avx2 ]; then export DOTNET_EnableAVX512=0; forced=; else forced=$vector; fi
    NATIVEGPT2_CPU_VECTOR=${forced:-} $cli bench --model synthetic:gpt2 --backend cpu --weights "$weights" \
      --prompt-tokens 128 --new-tokens 64 --json >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for r in runs: by.setdefault(r["weights"], []).append(r)
def med(rs, key): return statistics.median(r[key] for r in rs)
base = by["f32"]
print("weights  decode tok/s (median, range)  read GB/s  fraction of bound (median)  / f32 (medians)  / f32 at the same rate")
for w, rs in by.items():
    same = base[0]["weight_bytes_per_token"] / rs[0]["weight_bytes_per_token"] * med(rs, "decode_fraction_of_bound") / med(base, "decode_fraction_of_bound")
    print(f"{w:7}  {med(rs, 'decode_tokens_per_s'):7.1f} ({min(r['decode_tokens_per_s'] for r in rs):.0f}-{max(r['decode_tokens_per_s'] for r in rs):.0f})"
          f"  {min(r['read_bandwidth_gb_s'] for r in rs):.0f}-{max(r['read_bandwidth_gb_s'] for r in rs):.0f}"
          f"  {min(r['decode_fraction_of_bound'] for r in rs):.0%}-{max(r['decode_fraction_of_bound'] for r in rs):.0%} ({med(rs, 'decode_fraction_of_bound'):.0%})"
          f"  {med(rs, 'decode_tokens_per_s') / med(base, 'decode_tokens_per_s'):.2f}  {same:.2f}")
PY
echo "$out"
