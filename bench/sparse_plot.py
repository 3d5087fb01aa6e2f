#!/usr/bin/env python3
"""bench/sparse_plot.py OUTDIR: tables (markdown, stdout) and OUTDIR/speedup.png from bench/sparse.sh's JSON.

Reads every OUTDIR/*.json written by `attnkit bench -o json` on sparse problems. The PNG (speedup over
our dense kernel vs density, with the ideal 1/density and the 0.85 x ideal goal) needs matplotlib; without
it the tables are still printed and the plot is skipped with a note.
"""
import glob
import json
import os
import sys


def rows_of(path):
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        data = data.get("rows", [data])
    return [r for r in data if isinstance(r, dict) and "density" in r]


def main():
    out = sys.argv[1]
    groups = {}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        try:
            rows = rows_of(path)
        except (OSError, ValueError):
            continue
        if rows:
            groups[os.path.basename(path)[:-5]] = rows
    if not groups:
        print("no sparse rows found in", out)
        return 1
    for name, rows in groups.items():
        print(f"\n### {name}\n")
        print("| problem | density | sparse ms | dense ms | speedup | ideal | speedup / ideal | waste | balance | GFLOP/s | % peak |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print("| {} | {:.4f} | {:.1f} | {:.1f} | {:.2f} | {:.2f} | {:.3f} | {:.3f} | {:.3f} | {:.1f} | {} |".format(
                r.get("problem", "?"), r["density"], r["median_ms"], r["dense_median_ms"], r["speedup"], r["ideal"],
                r["speedup"] / r["ideal"] if r.get("ideal") else float("nan"), r.get("waste", float("nan")),
                r.get("balance", float("nan")), r.get("gflops", float("nan")),
                "{:.1f}".format(r["pct_peak"]) if isinstance(r.get("pct_peak"), (int, float)) else "-"))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not available: speedup.png not written)")
        return 0
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    dens_all = []
    for name, rows in groups.items():
        if not name.startswith("density"):
            continue
        pts = sorted((r["density"], r["speedup"]) for r in rows)
        dens_all += [p[0] for p in pts]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"attnkit sparse ({name[8:]})")
    if dens_all:
        lo, hi = min(dens_all), max(dens_all)
        xs = [lo * (hi / lo) ** (i / 50) for i in range(51)]
        ax.plot(xs, [1 / x for x in xs], "k--", lw=1, label="ideal 1/density")
        ax.plot(xs, [0.85 / x for x in xs], ":", color="gray", lw=1, label="goal 0.85/density")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("density (active pairs / causal pairs)")
    ax.set_ylabel("speedup over attnkit dense causal")
    ax.set_title("Block-sparse (64x64) vs dense, causal, d=128, 8 heads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "speedup.png"))
    print(f"\n(plot: {os.path.join(out, 'speedup.png')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
