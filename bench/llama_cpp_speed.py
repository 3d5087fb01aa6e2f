#!/usr/bin/env python3
"""llama.cpp's prefill and decode speed on a GGUF model, measured the way `attnkit eval speed` measures ours.

    bench/llama_cpp_speed.py -m MODEL [--threads N] [--lengths 1024,8192,32768] [--gen 32] [--reps 3]
                             [--flash-attn off,on] [--kv f16] [-f FILE] [--out FILE]

Uses llama-cpp-python (pip install llama-cpp-python; it builds llama.cpp from source, which takes minutes).
For each length L (capped at the model's context minus --gen, as attnkit caps it) and each flash-attention
setting: a fresh llama.cpp context with n_ctx = L + gen, n_batch = n_ubatch = 512, n_threads = n_threads_batch
= --threads; a 64-token warm-up; then --reps repetitions of
  prefill: Llama.reset(), Llama.eval(the L prompt tokens), timed (llama.cpp computes the logits of the last
           token of every 512-token batch; attnkit those of the last token only);
  decode:  --gen times: greedy argmax of the last logits (not timed), Llama.eval([token]) (timed).
The median of the repetitions is reported. The prompt is the same deterministic synthetic text attnkit generates
(the generator is reproduced below), or -f FILE; both engines tokenize it with BOS and without special-token
parsing (llama.cpp's tokenizer; attnkit's gives the same ids).

Output: JSON lines of the same shape as `attnkit eval speed -o json`, with engine "llama.cpp" and the settings
llama.cpp ran with: flash_attn, type_k / type_v (the KV cache type; llama.cpp's default is f16), n_batch,
n_ubatch, the llama-cpp-python version and the vendored llama.cpp commit when known.
Without llama-cpp-python installed: prints "skipped: llama-cpp-python not installed" to stderr, exits 0.
"""
import argparse
import json
import os
import statistics
import sys
import time

WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
         "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you",
         "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will",
         "would", "who", "so", "no", "time", "people", "water", "river", "mountain", "city", "garden", "letter",
         "morning", "window", "number", "system", "history", "question", "answer"]
M64 = (1 << 64) - 1


def synthetic_text(nbytes):
    """The text of synthetic_text() in tools/attnkit/model_eval.c, byte for byte."""
    out, n, r, in_sentence = [], 0, 0x2545F4914F6CDD1D, 0
    while n < nbytes:
        r ^= (r << 13) & M64
        r ^= r >> 7
        r ^= (r << 17) & M64
        w = WORDS[r % len(WORDS)]
        if in_sentence == 0:
            tmp = (" " if n else "") + w[0].upper() + w[1:]
        else:
            tmp = " " + w
        in_sentence += 1
        if in_sentence > 6 and (r >> 20) % 6 == 0:
            tmp += "."
            in_sentence = 0
        out.append(tmp)
        n += len(tmp)
    return "".join(out)


def kv_type(name):
    import llama_cpp
    # ggml type ids (GGML_TYPE_BF16 = 30 is missing from some llama-cpp-python versions' constants)
    return {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16, "bf16": 30,
            "q8_0": llama_cpp.GGML_TYPE_Q8_0}[name]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.environ.get("AK_MODEL_GGUF"))
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lengths", default="1024,8192,32768")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--flash-attn", default="off,on", help="comma list of off|on (default: both)")
    ap.add_argument("--kv", default="f16", choices=["f16", "f32", "bf16", "q8_0"], help="KV cache type for K and V: f16 (llama.cpp's default), f32, bf16, q8_0")
    ap.add_argument("-f", "--file", help="prompt text (default: attnkit's synthetic text)")
    ap.add_argument("--out", help="append the JSON lines to this file (default stdout)")
    a = ap.parse_args()
    try:
        import numpy as np
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        print("skipped: llama-cpp-python not installed", file=sys.stderr)
        return 0
    if not a.model or not os.path.exists(a.model):
        ap.error("no model: give -m FILE or set AK_MODEL_GGUF")
    if a.file and not os.path.isfile(a.file):
        ap.error(f"cannot open {a.file}")
    lengths = []
    try:
        for s in a.lengths.split(","):
            s = s.strip().lower()
            lengths.append(int(s[:-1]) * 1024 if s.endswith("k") else int(s))
    except ValueError:
        ap.error(f"--lengths '{a.lengths}': comma-separated integers ('32k' = 32768)")
    if any(L < 2 for L in lengths) or a.gen < 0 or a.reps < 1 or a.threads < 1:
        ap.error("lengths >= 2, --gen >= 0, --reps >= 1, --threads >= 1")
    fas = [x.strip() for x in a.flash_attn.split(",")]
    if any(x not in ("off", "on") for x in fas):
        ap.error("--flash-attn: a comma list of off and on")
    out = open(a.out, "a") if a.out else sys.stdout

    # the tokenizer and the model's context from a small context
    probe = Llama(model_path=a.model, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=a.threads,
                  n_threads_batch=a.threads, verbose=False)
    n_ctx_train = probe._model.n_ctx_train()
    name = probe.metadata.get("general.name", os.path.basename(a.model))
    cap = n_ctx_train - a.gen
    lengths = [min(L, cap) for L in lengths]
    maxlen = max(lengths)
    if a.file:
        with open(a.file, "rb") as f:
            tokens = probe.tokenize(f.read(), add_bos=True, special=False)
        if len(tokens) < maxlen:
            print(f"llama_cpp_speed.py: {a.file} has {len(tokens)} tokens, fewer than the longest prompt ({maxlen})",
                  file=sys.stderr)
            return 1
    else:
        nbytes = maxlen * 6 + 1024
        while True:
            tokens = probe.tokenize(synthetic_text(nbytes).encode(), add_bos=True, special=False)
            if len(tokens) >= maxlen:
                break
            nbytes *= 2
    del probe
    n_vocab = None
    for L in lengths:
        for fa in fas:
            llm = Llama(model_path=a.model, n_ctx=L + a.gen, n_batch=512, n_ubatch=512, n_threads=a.threads,
                        n_threads_batch=a.threads, flash_attn=(fa == "on"), type_k=kv_type(a.kv),
                        type_v=kv_type(a.kv), logits_all=False, verbose=False)
            n_vocab = llm.n_vocab()
            ctx = llm._ctx.ctx

            def last_logits():
                return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))

            llm.reset()
            llm.eval(tokens[:min(64, L)])   # warm-up: touch the weights
            pf, dc = [], []
            for _ in range(a.reps):
                llm.reset()
                t0 = time.perf_counter()
                llm.eval(tokens[:L])
                pf.append(L / (time.perf_counter() - t0))
                td = 0.0
                for _ in range(a.gen):
                    tok = int(np.argmax(last_logits()))
                    t1 = time.perf_counter()
                    llm.eval([tok])
                    td += time.perf_counter() - t1
                dc.append(a.gen / td if a.gen else 0.0)
            p, d = statistics.median(pf), statistics.median(dc)
            row = {"cmd": "speed", "engine": "llama.cpp", "model": name, "method": "dense",
                   "attn_layers": "all", "kv": a.kv, "threads": a.threads, "L": L, "prompt_tokens": L,
                   "gen": a.gen, "reps": a.reps, "chunk": 512, "prefill_tok_s": round(p, 3),
                   "prefill_s": round(L / p, 5), "decode_tok_s": round(d, 3),
                   "decode_ms_per_tok": round(1000.0 / d, 4) if d else 0.0,
                   "flash_attn": fa == "on", "type_k": a.kv, "type_v": a.kv, "n_batch": 512, "n_ubatch": 512,
                   "n_ctx": L + a.gen, "swa_full": bool(getattr(llm.context_params, "swa_full", False)), "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
                   "text": a.file or "synthetic"}
            out.write(json.dumps(row) + "\n")
            out.flush()
            del llm
    return 0


if __name__ == "__main__":
    sys.exit(main())
