#!/usr/bin/env bash
# bench/dynamic.sh OUTDIR — the content-aware sparse benchmark of issue #5, written into OUTDIR.
#
# attnkit sparse-eval on d = 128, Hq = 8, Hkv = 2, bf16, causal, planted inputs (syn:mix: vertical-slash,
# needle and local heads; docs/DYNAMIC.md), against our dense kernel on the same input in the same run
# (--dense-every: dense timed again after each method, each method compared with the mean of the dense
# runs around it — this host changes speed by up to 2.8x):
#   1. L = 32768: every method with a budget sweep (the speedup vs recall curves)
#   2. L = 65536: FlexPrefill gamma 0.9 (ref and paper mode) and 0.95 (paper) — the issue's gate: gamma 0.9
#      >= 4x, recall >= 0.9, estimation <= 10% of its total
#   3. L = 32768 on syn:random (no structure: what the estimators do when there is nothing to find)
# Each part: OUTDIR/<part>.json (rows), <part>.txt (the human table), <part>.png (speedup vs recall).
#
# Environment:
#   ATTNKIT   the attnkit binary [build/attnkit; built with cmake if missing]
#   THREADS   threads [all online CPUs]
#   REPS      timed repetitions (planner and sparse run) [3]; dense: REPS then one per method
#   REPS2     the same for part 2 (64k) [REPS]
#   QUICK=1   L = 8192 / 16384, one repetition
#   PARTS     parts to run ["1 2"; 3 is optional]
set -euo pipefail

out=${1:?usage: bench/dynamic.sh OUTDIR   (env: ATTNKIT THREADS REPS QUICK=1 PARTS)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ATTNKIT:-$root/build/attnkit}
threads=${THREADS:-$(nproc)}
if [ "${QUICK:-0}" = 1 ]; then L1=8192; L2=16384; reps=${REPS:-1}; else L1=32768; L2=65536; reps=${REPS:-3}; fi
parts=${PARTS:-"1 2"}

if [ ! -x "$bin" ]; then
  if [ -n "${ATTNKIT:-}" ]; then echo "dynamic.sh: $bin is not executable" >&2; exit 1; fi
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target attnkit_cli >/dev/null
fi
mkdir -p "$out"
: > "$out/command.txt"
run() { # name input problem methods...
  local name=$1 input=$2 prob=$3; shift 3
  local cmd=("$bin" sparse-eval -t "$threads" -r "$reps" -w 0 --dense-every --input "$input" --png "$out/$name.png" "$prob" "$@")
  printf '%q ' "${cmd[@]}" >> "$out/command.txt"; echo >> "$out/command.txt"
  echo "dynamic.sh: ${cmd[*]}" >&2
  "${cmd[@]}" -o jsonl > "$out/$name.jsonl"
}

all_methods=(
  "flexprefill:gamma=0.8/0.9/0.95"
  "flexprefill:gamma=0.9,mode=paper"
  "minference:kind=vs,v=1000,s=1024/6096"
  "minference:kind=block,v=50"
  "minference:kind=ashape,v=128,s=3968"
  "anchor:theta=8/12"
  "dhsa:budget=1024/2048"
  "dma:window=2048"
  "routing"
  "mminference"
)
for part in $parts; do
  case $part in
    1) run "L${L1}-mix" syn:mix "b1_h8_hkv2_q${L1}_k=q_d128_causal_bf16" "${all_methods[@]}" ;;
    2) reps=${REPS2:-$reps}
       run "L${L2}-mix" syn:mix "b1_h8_hkv2_q${L2}_k=q_d128_causal_bf16" "flexprefill:gamma=0.9" \
         "flexprefill:gamma=0.9/0.95,mode=paper" ;;
    3) run "L${L1}-random" syn:random "b1_h8_hkv2_q${L1}_k=q_d128_causal_bf16" "flexprefill:gamma=0.9" "minference" \
         "anchor" "dhsa" "dma" ;;
  esac
done
echo "dynamic.sh: results in $out" >&2
