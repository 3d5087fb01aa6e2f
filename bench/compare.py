#!/usr/bin/env python3
"""Markdown comparison of `attnkit bench -o json` with bench/torch_sdpa.py output.

    bench/compare.py ATTNKIT_JSON [TORCH_JSON]

Columns: attnkit time, GFLOP/s and % of the peak measured in the same attnkit run; torch SDPA time
and attnkit's speedup over it (rows matched by problem string); and llama.cpp / ggml CPU flash
attention figures copied from shared/specs/performance.md (2 threads of a Zen 4 EPYC). Those are a
FIXED REFERENCE, NOT MEASURED IN THIS RUN: the ratio to them is meaningful only on a similar machine.
"""
import json
import sys

# performance.md §3, llama.cpp at d3cf1f14, 2 threads, AMD EPYC Zen 4 (not measured here).
LLAMA_CAUSAL_D128_H8_MS = {4096: 8 * 53.5, 16384: 8 * 833.0}   # "53.5 / 833 ms per head", f16 K/V
LLAMA_DENSE_GFLOPS = (110.0, 120.0)      # 512-row prefill, d 64/128/256, f16 or f32 K/V, no mask
LLAMA_BF16_GFLOPS = (24.0, 28.0)         # bf16 K/V falls to a row-by-row path
LLAMA_CAUSAL_USEFUL_PCT = 35.0           # "ggml ~35% useful" of the 231 GFLOP/s fp32 peak
PERF_MD_FMA_PEAK = 231.0


def llama_ref(r):
    """(text, GFLOP/s) of llama.cpp's figure for this shape, or ("-", None)."""
    causal, d, dt = r["causal"], r["head_dim"], r["dtype_kv"]
    square = r["seqlen_q"] == r["seqlen_k"]
    if causal and d == 128 and r["heads_q"] == 8 and square and r["seqlen_q"] in LLAMA_CAUSAL_D128_H8_MS \
            and r["batch"] == 1 and r.get("window_left", -1) < 0:
        ms = LLAMA_CAUSAL_D128_H8_MS[r["seqlen_q"]]
        gflops = r["gflop"] / (ms * 1e-3)
        return f"{ms:.0f} ms (f16 K/V), {gflops:.0f} GFLOP/s", gflops
    if dt == "bf16":
        lo, hi = LLAMA_BF16_GFLOPS
        return f"{lo:.0f}-{hi:.0f} GFLOP/s (bf16 K/V path)", 0.5 * (lo + hi)
    if causal:
        g = PERF_MD_FMA_PEAK * LLAMA_CAUSAL_USEFUL_PCT / 100
        return f"~{g:.0f} GFLOP/s useful (~35% of peak)", g
    lo, hi = LLAMA_DENSE_GFLOPS
    return f"{lo:.0f}-{hi:.0f} GFLOP/s (512-row prefill)", 0.5 * (lo + hi)


def load_attnkit(path):
    with open(path) as f:
        text = f.read().strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]   # jsonl


def load_torch(path):
    if not path:
        return {}, "torch: not given"
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return {}, f"torch: unreadable ({e})"
    if "skipped" in doc:
        return {}, f"torch: skipped ({doc['skipped']})"
    rows = {r["problem"]: r for r in doc.get("results", [])}
    return rows, f"torch {doc.get('torch_version', '?')}, {doc.get('threads', '?')} threads, " \
                 f"{doc.get('cpu', '?')}"


def fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2 if len(argv) < 2 else 0
    ours = load_attnkit(argv[1])
    torch_rows, torch_note = load_torch(argv[2] if len(argv) > 2 else None)
    if not ours:
        print("compare: no attnkit rows", file=sys.stderr)
        return 1
    r0 = ours[0]
    print(f"attnkit {r0['build_commit']} on {r0['cpu']}, isa {r0['isa']}, {r0['threads']} threads, "
          f"median of {r0['reps']} after {r0['warmup']} warm-up; peak measured in the same run: "
          f"fp32 FMA {fmt(r0.get('peak_fma_f32_gflops'), '.1f')} GFLOP/s, "
          f"bf16 dot {fmt(r0.get('peak_dot_bf16_gflops') or None, '.1f', 'n/a')}"
          f"{' GFLOP/s' if r0.get('peak_dot_bf16_gflops') else ''}.  ")
    print(f"{torch_note}.  ")
    print("llama.cpp column: fixed figures from performance.md (llama.cpp d3cf1f14, 2 threads, "
          "AMD EPYC Zen 4), NOT measured in this run; goal: attnkit >= 1.7x (f32) / 3x (bf16).")
    print()
    print("| problem | attnkit ms | GFLOP/s | % peak (ceiling) | torch ms | speedup vs torch "
          "| llama.cpp (reference) | x llama.cpp |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for r in ours:
        t = torch_rows.get(r["problem"])
        speed = t["median_ms"] / r["median_ms"] if t else None
        pct = r.get("pct_peak")
        pct_s = f"{pct:.1f}% ({r['ceiling']})" if pct is not None else "-"
        ref_text, ref_gflops = llama_ref(r)
        x_llama = r["gflops"] / ref_gflops if ref_gflops else None
        print(f"| {r['problem']} | {r['median_ms']:.2f} | {r['gflops']:.1f} | {pct_s} | "
              f"{fmt(t['median_ms'] if t else None, '.2f')} | {fmt(speed, '.2f', '-')}{'x' if speed else ''} | "
              f"{ref_text} | {fmt(x_llama, '.2f')}{'x' if x_llama else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
