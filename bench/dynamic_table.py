#!/usr/bin/env python3
"""bench/dynamic_table.py OUTDIR: the markdown tables of bench/dynamic.sh's *.jsonl rows -> OUTDIR/dynamic.md."""
import glob, json, os, sys

out = sys.argv[1]
lines = ["# attnkit sparse-eval results", ""]
for path in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    if not rows:
        continue
    r0 = rows[0]
    lines += ["## %s — input %s" % (r0["problem"], r0["input"]), "",
              "%d threads, isa %s; every speedup against our dense kernel on the same input (mean of the dense runs "
              "before and after the method); recall = mean (min, 1st percentile) attention-mass recall." %
              (r0["threads"], r0["isa"]), "",
              "| method | recall | min | p1 | rel. error | density | est. ms | plan ms | compute ms | total ms | dense ms | speedup | est. share |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = lambda k, fmt: (fmt % r[k]) if isinstance(r.get(k), (int, float)) else "n/a"
        lines.append("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %sx | %s |" % (
            r["method"], f("recall_mean", "%.4f"), f("recall_min", "%.4f"), f("recall_p1", "%.4f"), f("rel_err", "%.2e"),
            f("density", "%.4f"), f("est_ms", "%.0f"), f("plan_ms", "%.0f"), f("compute_ms", "%.0f"), f("total_ms", "%.0f"),
            f("dense_ms", "%.0f"), f("speedup", "%.2f"), f("est_fraction", "%.3f")))
    lines += ["", "![speedup vs recall](%s)" % (os.path.basename(path)[:-6] + ".png"), ""]
open(os.path.join(out, "dynamic.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
