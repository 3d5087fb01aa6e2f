#!/usr/bin/env python3
"""Markdown tables of the Gemma 3 speed benchmark: attnkit (dense and sparse) against llama.cpp.

    bench/gemma3_table.py FILE.json [FILE.json ...] > gemma3.md

Reads JSON lines of `attnkit eval speed -o json` (engine "attnkit") and of bench/llama_cpp_speed.py (engine
"llama.cpp"), in any number of files. Prints for prefill and for decode one row per prompt length L: tokens/s of
every attnkit method and of every llama.cpp setting (flash attention off / on, KV type), the ratio of each attnkit
method to each llama.cpp setting (ours / llama.cpp: above 1 = attnkit faster), and attnkit's attention share of
the time. Lines that are not JSON objects with cmd "speed" are ignored.
"""
import json
import sys


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("cmd") == "speed":
                    rows.append(r)
    return rows


def label(r):
    if r["engine"] == "attnkit":
        lab = "attnkit " + r["method"]
        if r["method"] != "dense" and r.get("attn_layers") not in (None, "global"):
            lab += " @" + r["attn_layers"]
        return lab + (" kv " + r["kv"] if r.get("kv", "f32") != "f32" else "")
    fa = "fa on" if r.get("flash_attn") else "fa off"
    return f"llama.cpp {fa} kv {r.get('type_k', r.get('kv', '?'))}"


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def table(rows, key, title, share_key):
    ours = sorted({label(r) for r in rows if r["engine"] == "attnkit"}, key=lambda s: (" dense" not in s, s))
    peers = sorted({label(r) for r in rows if r["engine"] != "attnkit"})
    Ls = sorted({r["L"] for r in rows})
    by = {(label(r), r["L"]): r for r in rows}
    head = ["L"] + [f"{o} tok/s" for o in ours] + [f"{p} tok/s" for p in peers]
    head += [f"{o} / {p}" for o in ours for p in peers]
    head += [f"{o} attn %" for o in ours]
    out = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for L in Ls:
        cells = [str(L)]
        for c in ours + peers:
            r = by.get((c, L))
            cells.append(fmt(r[key] if r else None))
        for o in ours:
            for p in peers:
                ro, rp = by.get((o, L)), by.get((p, L))
                cells.append(fmt(ro[key] / rp[key], 2) if ro and rp and rp[key] else "-")
        for o in ours:
            r = by.get((o, L))
            cells.append(fmt(100 * r[share_key], 0) if r and share_key in r else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = load(sys.argv[1:])
    if not rows:
        print("gemma3_table.py: no speed rows in " + " ".join(sys.argv[1:]), file=sys.stderr)
        return 1
    r0 = next((r for r in rows if r["engine"] == "attnkit"), rows[0])
    gen = sorted({r.get("gen") for r in rows})
    print(f"Model {r0.get('model', '?')}, {r0.get('threads', '?')} threads, prompt {r0.get('text', 'synthetic')}, "
          f"decode {'/'.join(str(g) for g in gen)} tokens after the prompt, medians of {r0.get('reps', '?')} runs. "
          "Ratios: ours / llama.cpp (above 1 = attnkit faster). attn %: share of attnkit's time inside attention.")
    print()
    print(table(rows, "prefill_tok_s", "Prefill (tokens/s)", "attn_share_prefill"))
    print()
    print(table(rows, "decode_tok_s", "Decode at context L (tokens/s)", "attn_share_decode"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
