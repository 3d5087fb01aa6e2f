#!/usr/bin/env python3
"""llama.cpp's perplexity of a GGUF model on a text file, with llama-perplexity's protocol, through llama-cpp-python.

    bench/llama_cpp_ppl.py -m MODEL -f FILE -c CTX [--chunks K] [--threads N] [--kv f16|f32]
                           [--flash-attn off|on] [--batch 512] [--out FILE] [--top1 FILE.npy]

The protocol (the one `attnkit eval ppl` follows, docs/CLI.md): tokenize the whole file with BOS and without
special-token parsing; at least 2*CTX tokens; chunk i = tokens[i*CTX, (i+1)*CTX) with its first token replaced
by BOS; the KV cache cleared before each chunk; positions j in [CTX/2, CTX-2] scored, nll_j = -log softmax(
logits_j)[token_{j+1}] (natural log, float64 from llama.cpp's float32 logits). PPL = exp(mean nll) and its error
as llama-perplexity prints it: PPL * sqrt(var(nll) / (count - 1)).

The chunk is decoded in batches of --batch tokens (n_batch = n_ubatch) asking llama.cpp for the logits of the
scored positions only, so memory stays at batch x n_vocab floats (a Python Llama(logits_all=True) would hold
n_ctx x n_vocab floats: 34 GB at 32k for a 262k vocabulary).

Output: the running "[i]ppl" and "Final estimate: PPL = x +/- err" on stderr, and JSON lines on stdout (or
appended to --out) in the shape of `attnkit eval ppl -o json`: a row per chunk, then a final row with ppl,
ppl_err, nll_mean, scored, tok_s, and the settings (flash_attn, type_k / type_v). --top1 FILE.npy saves the
argmax of every scored position (int32, chunk-major) for a top-1 comparison with attnkit; --nll-out FILE
writes every scored position (chunk, pos, next token, nll, argmax; tab-separated, the columns of
`attnkit eval ppl --nll-out`) for a position-by-position comparison.
Reference settings for a tight comparison: --kv f32 --flash-attn off (spec gemma3-runner.md §5).
Without llama-cpp-python installed: prints "skipped: llama-cpp-python not installed" to stderr, exits 0.
"""
import argparse
import json
import math
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.environ.get("AK_MODEL_GGUF"))
    ap.add_argument("-f", "--file", required=True)
    ap.add_argument("-c", "--ctx", type=int, required=True)
    ap.add_argument("--chunks", type=int, default=0, help="at most this many chunks (default all)")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--kv", default="f16", choices=["f16", "f32"], help="KV cache type (llama.cpp's default f16)")
    ap.add_argument("--flash-attn", default="off", choices=["off", "on"])
    ap.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch (default 512)")
    ap.add_argument("--out", help="append the JSON lines to this file (default stdout)")
    ap.add_argument("--top1", help="save the argmax of every scored position to this .npy file")
    ap.add_argument("--nll-out", help="every scored position to this file, tab-separated like attnkit eval ppl "
                    "--nll-out: chunk, pos, next token, nll, argmax")
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
    if a.ctx < 16 or a.batch < 1 or a.threads < 1 or a.chunks < 0:
        ap.error("-c >= 16, --batch >= 1, --threads >= 1, --chunks >= 0")
    if not os.path.isfile(a.file):
        ap.error(f"cannot open {a.file}")
    C = a.ctx
    kvt = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[a.kv]
    nb = min(a.batch, C)
    llm = Llama(model_path=a.model, n_ctx=C, n_batch=nb, n_ubatch=nb, n_threads=a.threads,
                n_threads_batch=a.threads, flash_attn=(a.flash_attn == "on"), type_k=kvt, type_v=kvt,
                logits_all=False, verbose=False)
    if C > llm._model.n_ctx_train():
        print(f"llama_cpp_ppl.py: -c {C} exceeds the model's context of {llm._model.n_ctx_train()}", file=sys.stderr)
        return 2
    with open(a.file, "rb") as f:
        tokens = llm.tokenize(f.read(), add_bos=True, special=False)
    n = len(tokens)
    if n < 2 * C:
        print(f"llama_cpp_ppl.py: {a.file} has {n} tokens; a context of {C} needs at least 2*{C} = {2 * C}",
              file=sys.stderr)
        return 1
    n_chunk = n // C
    if a.chunks and a.chunks < n_chunk:
        n_chunk = a.chunks
    first = C // 2
    bos = llm.token_bos()
    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(nb, 0, 1)
    name = llm.metadata.get("general.name", os.path.basename(a.model))
    out = open(a.out, "a") if a.out else sys.stdout
    base = {"cmd": "ppl", "engine": "llama.cpp", "model": name, "method": "dense", "attn_layers": "all",
            "kv": a.kv, "threads": a.threads, "file": a.file, "ctx": C, "flash_attn": a.flash_attn == "on",
            "type_k": a.kv, "type_v": a.kv, "n_batch": nb, "n_ubatch": nb,
            "swa_full": bool(getattr(llm.context_params, "swa_full", False)),
            "llama_cpp_python": getattr(llama_cpp, "__version__", "?")}
    s1 = s2 = 0.0
    cnt = 0
    secs = 0.0
    top1 = []
    fo = open(a.nll_out, "w") if a.nll_out else None
    if fo:
        fo.write("chunk\tpos\tnext\tnll:llama.cpp\ttop1:llama.cpp\n")
    print(f"perplexity (llama.cpp): {a.file}, {n} tokens, context {C}, {n_chunk} chunks, "
          f"{C - 1 - first} scored tokens per chunk", file=sys.stderr)
    try:
        for c in range(n_chunk):
            toks = list(tokens[c * C:(c + 1) * C])
            toks[0] = bos
            llama_cpp.llama_memory_clear(mem, True)
            t0 = time.perf_counter()
            for b0 in range(0, C, nb):
                m = min(nb, C - b0)
                batch.n_tokens = m
                rows = []
                for i in range(m):
                    j = b0 + i
                    batch.token[i] = toks[j]
                    batch.pos[i] = j
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    want = first <= j <= C - 2
                    batch.logits[i] = want
                    if want:
                        rows.append(j)
                rc = llama_cpp.llama_decode(ctx, batch)
                if rc != 0:
                    print(f"llama_cpp_ppl.py: llama_decode returned {rc}", file=sys.stderr)
                    return 1
                if not rows:
                    continue
                # the outputs come in batch order, one row of n_vocab floats per position that asked for logits
                z = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(len(rows), n_vocab))
                z = z.astype(np.float64)
                mx = z.max(axis=1)
                lse = mx + np.log(np.exp(z - mx[:, None]).sum(axis=1))
                nxt = np.array([toks[j + 1] for j in rows])
                nll = lse - z[np.arange(len(rows)), nxt]
                s1 += float(nll.sum())
                s2 += float((nll * nll).sum())
                cnt += len(rows)
                am = np.argmax(z, axis=1).astype(np.int32)
                if a.top1:
                    top1.append(am)
                if fo:
                    for r, j in enumerate(rows):
                        fo.write(f"{c}\t{j}\t{toks[j + 1]}\t{nll[r]:.6f}\t{am[r]}\n")
            secs += time.perf_counter() - t0
            ppl = math.exp(s1 / cnt)
            print(f"[{c + 1}]{ppl:.4f},", end="", file=sys.stderr, flush=True)
            out.write(json.dumps(dict(base, chunk=c + 1, n_chunks=n_chunk, ppl=round(ppl, 6))) + "\n")
            out.flush()
    finally:
        llama_cpp.llama_batch_free(batch)
        if fo:
            fo.close()
    mean = s1 / cnt
    ppl = math.exp(mean)
    var = s2 / cnt - mean * mean
    err = ppl * math.sqrt(var / (cnt - 1)) if var > 0 and cnt > 1 else 0.0
    print(f"\nFinal estimate: PPL = {ppl:.4f} +/- {err:.5f}", file=sys.stderr)
    out.write(json.dumps(dict(base, n_chunks=n_chunk, tokens=n, scored=cnt, final=True, ppl=round(ppl, 6),
                              ppl_err=round(err, 6), nll_mean=round(mean, 8), tok_s=round(n_chunk * C / secs, 2),
                              seconds=round(secs, 3))) + "\n")
    if a.top1:
        np.save(a.top1, np.concatenate(top1) if top1 else np.zeros(0, np.int32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
