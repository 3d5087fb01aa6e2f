#!/usr/bin/env bash
# bench/sparse.sh OUTDIR — the sparse-engine benchmark of issue #4, written as JSON into OUTDIR.
#
# 1. Speedup vs density: random causal block masks (64 x 64 blocks, diagonal kept) at densities 5%,
#    10%, 25%, 50% and all blocks, L = 32768, d = 128, Hq = Hkv = 8, f32 and bf16. Each sparse run is
#    compared with our dense causal kernel on the same shape, timed in the same run, rep by rep in
#    alternation (attnkit bench --interleave).
# 2. NA-2D: a 128 x 128 token grid, kernel 13 x 13, d = 128, Hq = 8, f32 and bf16, against dense
#    non-causal attention on the same 16384 tokens.
# 3. The structured patterns at L = 32768 (PowerAttention, S2, sliding window + sinks, MoA, SF-Attn),
#    for the record.
# Then bench/sparse_plot.py writes OUTDIR/sparse.md (tables) and OUTDIR/speedup.png (speedup vs
# density; needs matplotlib: PYTHON, or .venv/bin/python, else python3; skipped cleanly without it).
#
# Environment:
#   ATTNKIT   the attnkit binary [build/attnkit; built with cmake if missing]
#   THREADS   threads [all online CPUs]
#   REPS      timed repetitions per problem [3]
#   L         sequence length of parts 1 and 3 [32768]
#   QUICK=1   L = 8192, one repetition, part 3 skipped
#   PATTERNS=0  skip part 3
set -euo pipefail

out=${1:?usage: bench/sparse.sh OUTDIR   (env: ATTNKIT THREADS REPS L QUICK=1)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ATTNKIT:-$root/build/attnkit}
threads=${THREADS:-$(nproc)}
if [ "${QUICK:-0}" = 1 ]; then L=${L:-8192}; reps=${REPS:-1}; else L=${L:-32768}; reps=${REPS:-3}; fi

if [ ! -x "$bin" ]; then
  if [ -n "${ATTNKIT:-}" ]; then echo "sparse.sh: $bin is not executable" >&2; exit 1; fi
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target attnkit_cli >/dev/null
fi
mkdir -p "$out"
: > "$out/command.txt"
run() { # name spec...
  local name=$1; shift
  local cmd=("$bin" bench -t "$threads" -r "$reps" -o json "$@")
  printf '%q ' "${cmd[@]}" >> "$out/command.txt"; echo " > $name.json" >> "$out/command.txt"
  echo "sparse.sh: ${cmd[*]} > $out/$name.json" >&2
  "${cmd[@]}" > "$out/$name.json"
}

# Speedup goals are ratios measured in one run: --interleave alternates the sparse and the dense run rep
# by rep, so that this host's speed changes (up to 2.8x between modes) hit both alike.
for dt in f32 bf16; do
  run "density-$dt" --interleave -w 0 "b1_h8_hkv8_q${L}_k=q_d128_causal_${dt}_sp-blocks-bs64-density0.05,0.1,0.25,0.5" \
                    "b1_h8_hkv8_q${L}_k=q_d128_causal_${dt}_sp-dense-bs64"
  run "na2d-$dt" --interleave -w 0 "b1_h8_hkv8_q16384_k=q_d128_${dt}_sp-na2d-128x128-k13x13"
done
if [ "${QUICK:-0}" != 1 ] && [ "${PATTERNS:-1}" = 1 ]; then
  run "patterns-bf16" \
    "b1_h8_hkv2_q${L}_k=q_d128_causal_bf16_sp-power-bs256-w5" \
    "b1_h8_hkv2_q${L}_k=q_d128_causal_bf16_sp-s2-bs64-local16-vs8" \
    "b1_h8_hkv2_q${L}_k=q_d128_causal_bf16_sp-window-w1024-sink64-blk64" \
    "b1_h8_hkv2_q${L}_k=q_d128_causal_bf16_sp-window-w1024-sink4" \
    "b1_h8_hkv2_q${L}_k=q_d128_causal_bf16_sp-moa-a1024-b0.125" \
    "b1_h8_hkv2_q${L}_k=q_d128_causal_bf16_sp-sfattn-g2048-sink4"
fi

py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
fi
"$py" "$root/bench/sparse_plot.py" "$out" | tee "$out/sparse.md"
