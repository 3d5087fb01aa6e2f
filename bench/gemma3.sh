#!/usr/bin/env bash
# bench/gemma3.sh OUTDIR — Gemma 3 270M end to end on the CPU: attnkit (dense and one sparse method on the global
# layers) against llama.cpp (llama-cpp-python) in the same run, same model, same threads, same prompt tokens.
#
#   1. attnkit eval speed -o json: prefill tok/s of an L-token prompt and decode tok/s of GEN tokens after it,
#      median of REPS, for dense and SPARSE, at LENGTHS              -> OUTDIR/attnkit.json
#   2. bench/llama_cpp_speed.py: the same for llama.cpp with flash attention off and on, KV f16 (its default),
#      n_batch = n_ubatch = 512, n_ctx = L + GEN                       -> OUTDIR/llama_cpp.json
#   3. bench/gemma3_table.py: the markdown tables with the ratios ours / llama.cpp -> OUTDIR/gemma3.md (and stdout)
# The exact commands go to OUTDIR/command.txt. Without llama-cpp-python step 2 is skipped (a note in the table).
# At 32k a dense prefill of this model is ~15 TFLOP: on 2 busy cores expect tens of minutes per repetition;
# run on an idle machine (QUICK=1 for a smoke test).
#
# Environment:
#   ATTNKIT   the attnkit binary [build/attnkit; built with cmake if missing]
#   MODEL     the GGUF [$AK_MODEL_GGUF]
#   THREADS   threads for both engines [all online CPUs]
#   LENGTHS   prompt lengths [1024,8192,32768] (capped at the model's context minus GEN by both tools)
#   GEN       decoded tokens [32]
#   REPS      repetitions, median reported [3]
#   SPARSE    the sparse method for the global layers ["flexprefill:gamma=0.9"]
#   KV        attnkit's KV cache type [f32]; llama.cpp runs with LLAMA_KV [f16]
#   TEXT      prompt text file for both engines [a deterministic synthetic text]
#   QUICK=1   LENGTHS=512,1024, GEN=4, REPS=1
set -euo pipefail

out=${1:?usage: bench/gemma3.sh OUTDIR   (env: ATTNKIT MODEL THREADS LENGTHS GEN REPS SPARSE KV LLAMA_KV TEXT QUICK=1)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ATTNKIT:-$root/build/attnkit}
model=${MODEL:-${AK_MODEL_GGUF:-}}
threads=${THREADS:-$(nproc)}
if [ "${QUICK:-0}" = 1 ]; then lengths=${LENGTHS:-512,1024}; gen=${GEN:-4}; reps=${REPS:-1}
else lengths=${LENGTHS:-1024,8192,32768}; gen=${GEN:-32}; reps=${REPS:-3}; fi
sparse=${SPARSE:-flexprefill:gamma=0.9}
kv=${KV:-f32}
llama_kv=${LLAMA_KV:-f16}

if [ -z "$model" ] || [ ! -f "$model" ]; then
  echo "gemma3.sh: no model: set MODEL or AK_MODEL_GGUF to gemma-3-270m-q4_k_m.gguf" >&2; exit 1
fi
if [ ! -x "$bin" ]; then
  if [ -n "${ATTNKIT:-}" ]; then echo "gemma3.sh: $bin is not executable" >&2; exit 1; fi
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target attnkit_cli >/dev/null
fi
mkdir -p "$out"
: > "$out/command.txt"
text_args=()
if [ -n "${TEXT:-}" ]; then text_args=(-f "$TEXT"); fi

ak=("$bin" eval speed -m "$model" -t "$threads" --lengths "$lengths" --gen "$gen" --reps "$reps" --kv "$kv"
    --attn "$sparse" "${text_args[@]}")
printf '%q ' "${ak[@]}" >> "$out/command.txt"; echo "-o json > attnkit.json" >> "$out/command.txt"
echo "gemma3.sh: ${ak[*]}" >&2
"${ak[@]}" -o json > "$out/attnkit.json"

ll=(python3 "$root/bench/llama_cpp_speed.py" -m "$model" -t "$threads" --lengths "$lengths" --gen "$gen"
    --reps "$reps" --flash-attn off,on --kv "$llama_kv" "${text_args[@]}")
printf '%q ' "${ll[@]}" >> "$out/command.txt"; echo "> llama_cpp.json" >> "$out/command.txt"
echo "gemma3.sh: ${ll[*]}" >&2
"${ll[@]}" > "$out/llama_cpp.json" 2> "$out/llama_cpp.log" || { cat "$out/llama_cpp.log" >&2; exit 1; }
if grep -q "^skipped" "$out/llama_cpp.log"; then echo "gemma3.sh: llama-cpp-python not installed: no llama.cpp column" >&2; fi

python3 "$root/bench/gemma3_table.py" "$out/attnkit.json" "$out/llama_cpp.json" | tee "$out/gemma3.md"
