#!/usr/bin/env python3
"""Time PyTorch's CPU scaled_dot_product_attention on attnkit problem strings.

    bench/torch_sdpa.py [--threads N] [--reps 5] [--warmup 1] [--gqa best|enable|repeat]
                        [--out FILE] SPEC...

SPEC uses the attnkit problem-string grammar (docs/CLI.md), restricted to what SDPA expresses:
b, h, hkv, q, k, d, dv, k=q, hkv=h, dv=d, causal/nocausal, f32/bf16/f16, bhsd; comma lists
sweep exactly as in `attnkit bench`. Each problem: random inputs once, `warmup` untimed calls,
then `reps` timed calls; median / min / stddev in ms, useful GFLOP/s counted as attnkit does
(2 (d + dv) x visible pairs x Hq; causal = bottom-right aligned, the same as attnkit's).

GQA (Hkv < Hq): "enable" passes enable_gqa=True, "repeat" expands K/V with repeat_interleave
once, outside the timed region; "best" (default) times both and keeps the faster.
Causal with Lq != Lk uses torch.nn.attention.bias.causal_lower_right (bottom-right alignment).

Output: JSON {"tool": "torch_sdpa", ..., "results": [...]} to --out (or stdout).
Without torch installed it prints "skipped: torch not installed", writes
{"skipped": "torch not installed"} to --out if given, and exits 0.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time

INT_TOKENS = [("hkv", "Hkv"), ("h", "Hq"), ("dv", "dv"), ("d", "d"), ("b", "B"), ("q", "Lq"), ("k", "Lk")]
DTYPES = ("f32", "bf16", "f16")


def expand(spec):
    """Comma lists -> list of problem strings (first token varies slowest), as attnkit does."""
    combos = [""]
    for tok in spec.split("_"):
        alts = tok.split(",")
        prefix = re.match(r"[^0-9.\-]*", alts[0]).group(0)
        full = []
        for i, a in enumerate(alts):
            if not a:
                raise ValueError(f"empty alternative in '{tok}'")
            full.append(prefix + a if i > 0 and re.match(r"[0-9.\-]", a) else a)
        combos = [c + ("_" if c else "") + a for c in combos for a in full]
    return combos


def parse(s):
    """One problem string -> dict; raises ValueError on a token SDPA cannot express."""
    p = {"B": 1, "Hq": 1, "Hkv": None, "Lq": None, "Lk": None, "d": None, "dv": None,
         "causal": 0, "dtype": "f32"}
    seen = set()
    for tok in s.split("_"):
        field = None
        if tok == "causal":
            p["causal"], field = 1, "causal"
        elif tok == "nocausal":
            field = "causal"
        elif tok in DTYPES:
            p["dtype"], field = tok, "dtype"
        elif tok == "bhsd":
            field = "layout"
        elif tok in ("k=q", "hkv=h", "dv=d"):
            field = {"k=q": "Lk", "hkv=h": "Hkv", "dv=d": "dv"}[tok]
        else:
            for prefix, key in INT_TOKENS:
                rest = tok[len(prefix):]
                if tok.startswith(prefix) and rest.isdigit():
                    p[key], field = int(rest), key
                    break
        if field is None:
            raise ValueError(f"token '{tok}' of '{s}' is not supported by this script")
        if field in seen:
            raise ValueError(f"token '{tok}' sets {field} twice in '{s}'")
        seen.add(field)
    if p["Lq"] is None or p["d"] is None:
        raise ValueError(f"problem '{s}' needs q<Lq> and d<head_dim>")
    p["Hkv"] = p["Hq"] if p["Hkv"] is None else p["Hkv"]
    p["Lk"] = p["Lq"] if p["Lk"] is None else p["Lk"]
    p["dv"] = p["d"] if p["dv"] is None else p["dv"]
    if p["Hq"] % p["Hkv"]:
        raise ValueError(f"'{s}': h must be a multiple of hkv")
    return p


def name(p):
    """The canonical attnkit problem string (what `attnkit bench` prints), used to match rows."""
    s = f"b{p['B']}_h{p['Hq']}_hkv{p['Hkv']}_q{p['Lq']}_k{p['Lk']}_d{p['d']}"
    if p["dv"] != p["d"]:
        s += f"_dv{p['dv']}"
    if p["causal"]:
        s += "_causal"
    return s + "_" + p["dtype"]


def visible_pairs(p):
    """Exact (row, key) pairs of one head, bottom-right causal: row i sees j <= i + Lk - Lq."""
    lq, lk = p["Lq"], p["Lk"]
    if not p["causal"]:
        return lq * lk * p["B"]
    n = sum(max(0, min(lk - 1, i + lk - lq) + 1) for i in range(lq))
    return n * p["B"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def time_calls(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def bench_one(torch, F, p, args):
    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[p["dtype"]]
    g = torch.Generator().manual_seed(1)
    q = torch.randn(p["B"], p["Hq"], p["Lq"], p["d"], generator=g).to(dt)
    k = torch.randn(p["B"], p["Hkv"], p["Lk"], p["d"], generator=g).to(dt)
    v = torch.randn(p["B"], p["Hkv"], p["Lk"], p["dv"], generator=g).to(dt)
    kw = {}
    if p["causal"] and p["Lq"] != p["Lk"]:
        from torch.nn.attention.bias import causal_lower_right
        kw["attn_mask"] = causal_lower_right(p["Lq"], p["Lk"])
    elif p["causal"]:
        kw["is_causal"] = True
    modes = ["mha"]
    if p["Hkv"] != p["Hq"]:
        modes = ["enable", "repeat"] if args.gqa == "best" else [args.gqa]
    best = None
    for mode in modes:
        kk, vv, extra = k, v, {}
        if mode == "repeat":
            r = p["Hq"] // p["Hkv"]
            kk, vv = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
        elif mode == "enable":
            extra = {"enable_gqa": True}
        try:
            with torch.inference_mode():
                ms = time_calls(lambda: F.scaled_dot_product_attention(q, kk, vv, **kw, **extra),
                                args.reps, args.warmup)
        except (TypeError, RuntimeError) as e:   # enable_gqa missing in old torch, ...
            print(f"torch_sdpa: {name(p)} gqa={mode}: {e}", file=sys.stderr)
            continue
        med = statistics.median(ms)
        if best is None or med < best[0]:
            best = (med, ms, mode)
    if best is None:
        return None
    med, ms, mode = best
    flops = 2.0 * (p["d"] + p["dv"]) * visible_pairs(p) * p["Hq"]
    return {"problem": name(p), "batch": p["B"], "heads_q": p["Hq"], "heads_kv": p["Hkv"],
            "seqlen_q": p["Lq"], "seqlen_k": p["Lk"], "head_dim": p["d"], "head_dim_v": p["dv"],
            "causal": p["causal"], "dtype": p["dtype"], "gqa": mode, "reps": args.reps,
            "warmup": args.warmup, "median_ms": med, "min_ms": min(ms),
            "stddev_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
            "gflop": flops * 1e-9, "gflops": flops / (med * 1e-3) * 1e-9}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="+", help="problem strings / sweep specs")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all CPUs)")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per problem (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before them (default 1)")
    ap.add_argument("--gqa", choices=("best", "enable", "repeat"), default="best",
                    help="how GQA is given to SDPA (default best: time both, keep the faster)")
    ap.add_argument("--out", help="JSON output file (default stdout)")
    args = ap.parse_args()
    try:
        problems = [parse(s) for spec in args.specs for s in expand(spec)]
    except ValueError as e:
        print(f"torch_sdpa: {e}", file=sys.stderr)
        return 2
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("skipped: torch not installed")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"skipped": "torch not installed"}, f)
                f.write("\n")
        return 0
    torch.set_num_threads(args.threads)
    results = []
    for p in problems:
        r = bench_one(torch, F, p, args)
        if r is None:
            continue
        print(f"torch_sdpa: {r['problem']:44s} {r['median_ms']:10.3f} ms {r['gflops']:8.1f} GFLOP/s"
              f" (gqa {r['gqa']})", file=sys.stderr, flush=True)
        results.append(r)
    doc = {"tool": "torch_sdpa", "torch_version": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": cpu_model(), "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    else:
        json.dump(doc, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
