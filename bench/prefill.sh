#!/usr/bin/env bash
# bench/prefill.sh OUTDIR — the dense-prefill benchmark of issue #2, written as JSON into OUTDIR.
#
# Shapes: B=1, Hq=8 with Hkv=8 and 2, L=4096 and 16384 (Lk = Lq), d=128, 64 and 256, causal and
# not, f32 and bf16 (48 problems; with 2 threads the full run takes tens of minutes).
# QUICK=1: d=128, L=4096 only (8 problems, 3 repetitions).
#
# Environment:
#   ATTNKIT   the attnkit binary [build/attnkit; built with cmake if missing]
#   THREADS   threads for attnkit and torch [all online CPUs]
#   REPS      timed repetitions per problem [5; QUICK: 3]
#   TORCH=1   also run bench/torch_sdpa.py on the same shapes (python: PYTHON, or .venv/bin/python
#             when present, else python3; skipped cleanly without torch) and bench/compare.py
# Writes: OUTDIR/attnkit.json (attnkit bench -o json), OUTDIR/command.txt, and with TORCH=1
#         OUTDIR/torch.json and OUTDIR/compare.md.
set -euo pipefail

out=${1:?usage: bench/prefill.sh OUTDIR   (env: ATTNKIT THREADS REPS QUICK=1 TORCH=1)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ATTNKIT:-$root/build/attnkit}
threads=${THREADS:-$(nproc)}
if [ "${QUICK:-0}" = 1 ]; then
  spec="b1_h8_hkv8,2_q4096_k=q_d128_causal,nocausal_f32,bf16"
  reps=${REPS:-3}
else
  spec="b1_h8_hkv8,2_q4096,16384_k=q_d128,64,256_causal,nocausal_f32,bf16"
  reps=${REPS:-5}
fi

if [ ! -x "$bin" ]; then
  if [ -n "${ATTNKIT:-}" ]; then echo "prefill.sh: $bin is not executable" >&2; exit 1; fi
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target attnkit_cli >/dev/null
fi

mkdir -p "$out"
cmd=("$bin" bench -t "$threads" -r "$reps" -o json "$spec")
printf '%q ' "${cmd[@]}" > "$out/command.txt"
echo >> "$out/command.txt"
echo "prefill.sh: ${cmd[*]} > $out/attnkit.json" >&2
"${cmd[@]}" > "$out/attnkit.json"

if [ "${TORCH:-0}" = 1 ]; then
  py=${PYTHON:-}
  if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
  fi
  tcmd=("$py" "$root/bench/torch_sdpa.py" --threads "$threads" --reps "$reps" --out "$out/torch.json" "$spec")
  printf '%q ' "${tcmd[@]}" >> "$out/command.txt"
  echo >> "$out/command.txt"
  "${tcmd[@]}"
  python3 "$root/bench/compare.py" "$out/attnkit.json" "$out/torch.json" | tee "$out/compare.md"
else
  python3 "$root/bench/compare.py" "$out/attnkit.json" | tee "$out/compare.md"
fi
