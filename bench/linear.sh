#!/usr/bin/env bash
# bench/linear.sh OUTDIR — linear attention (Lightning Attention) against causal softmax attention, as JSON
# and a markdown table in OUTDIR.
#
# H = 8 heads, d = e = 128, batch 1, per-head decay (the official slopes, one layer), default block:
#   linear forward  (ak_la_forward, chunked), bf16 Q/K/V/O, T = 1k, 4k, 16k, 64k, 256k, 1M (no 1M with QUICK=1)
#   linear backward (ak_la_backward), bf16, T = 1k .. BWD_MAX
#   linear forward, f32, and dense causal softmax (ak_attention_run, b1_h8_q<T>_k<T>_d128_causal_f32), T = 1k,
#   2k, 4k, 16k (up to DENSE_MAX): the same shapes and dtype for the "faster than dense from L >= 2k" comparison
# Two `attnkit bench` runs (each measures its own fp32 FMA peak; % peak divides by it): the small problems
# with REPS timed runs after one warm-up, the large ones (forward and backward T >= 64k, dense T >= 16k)
# with one timed run and no warm-up. About 3-4 minutes on 2 cores; the 1M forward holds 8.6 GB.
# The backward holds q, k, v, dO, dq, dk, dv (bf16, 8 heads: 14 GB at T = 1M), hence BWD_MAX = 256k by default.
#
# Environment:
#   ATTNKIT     the attnkit binary [build/attnkit; built with cmake if missing]
#   THREADS     threads [all online CPUs]
#   REPS        timed runs of the small problems [3]
#   QUICK=1     no T = 1M
#   BWD_MAX     longest T of the backward [262144]
#   DENSE_MAX   longest T of the dense comparison (and the f32 linear forward) [16384]
# Writes: OUTDIR/small.json, OUTDIR/large.json (attnkit bench -o json), OUTDIR/command.txt, OUTDIR/linear.md.
set -euo pipefail

out=${1:?usage: bench/linear.sh OUTDIR   (env: ATTNKIT THREADS REPS QUICK=1 BWD_MAX DENSE_MAX)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ATTNKIT:-$root/build/attnkit}
threads=${THREADS:-$(nproc)}
reps=${REPS:-3}
bwd_max=${BWD_MAX:-262144}
dense_max=${DENSE_MAX:-16384}
Ts=(1024 4096 16384 65536 262144)
[ "${QUICK:-0}" = 1 ] || Ts+=(1048576)

small=() large=()
add() {   # add PROBLEM IS_LARGE: the large problems get one timed run and no warm-up
  if [ "$2" = 1 ]; then large+=("$1"); else small+=("$1"); fi
}
for T in "${Ts[@]}"; do
  add "linear_b1_h8_q${T}_d128_bf16_decay" "$([ "$T" -ge 65536 ] && echo 1 || echo 0)"
  if [ "$T" -le "$bwd_max" ]; then add "linear_b1_h8_q${T}_d128_bf16_decay_bwd" "$([ "$T" -ge 65536 ] && echo 1 || echo 0)"; fi
done
Tc=()
for T in 1024 2048 4096 16384; do
  if [ "$T" -le "$dense_max" ]; then Tc+=("$T"); fi
done
for T in "${Tc[@]}"; do
  add "linear_b1_h8_q${T}_d128_f32_decay" 0
  add "b1_h8_q${T}_k${T}_d128_causal_f32" "$([ "$T" -ge 16384 ] && echo 1 || echo 0)"
done

if [ ! -x "$bin" ]; then
  if [ -n "${ATTNKIT:-}" ]; then echo "linear.sh: $bin is not executable" >&2; exit 1; fi
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target attnkit_cli >/dev/null
fi

mkdir -p "$out"
: > "$out/command.txt"
status=0
run() {   # run OUTFILE CMD...: record the command, keep going on failure
  local file=$1; shift
  { printf '%q ' "$@"; echo "> $file"; } >> "$out/command.txt"
  echo "linear.sh: $* > $out/$file" >&2
  "$@" > "$out/$file" || status=$?
}
t0=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
run small.json "$bin" bench -t "$threads" -r "$reps" -w 1 -o json "${small[@]}"
if [ ${#large[@]} -gt 0 ]; then run large.json "$bin" bench -t "$threads" -r 1 -w 0 -o json "${large[@]}"; else echo '[]' > "$out/large.json"; fi
secs=$(( $(date +%s) - t0 ))
load1=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
echo "linear.sh: benchmarks took $secs s" >&2

python3 - "$out" "$secs" "$load0" "$load1" "$bwd_max" "${Ts[*]}" "${Tc[*]}" <<'EOF' | tee "$out/linear.md"
import json, os, sys

out, secs, load0, load1, bwd_max, Ts, Tc = sys.argv[1:8]
Ts = [int(t) for t in Ts.split()]
Tc = [int(t) for t in Tc.split()]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            data = json.load(f)
        return data if isinstance(data, list) else [data]
    except (OSError, ValueError):
        return []

rows = load("small.json") + load("large.json")

def find(**kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None

def lin(T, dt, bwd):
    return find(seqlen=T, dtype_qkv=dt, **{"pass": "backward" if bwd else "forward"})

def dense(T):
    return find(seqlen_q=T, seqlen_k=T, causal=1)

def ms(r): return f"{r['median_ms']:.1f}" if r else "-"
def us_tok(r): return f"{r['ms_per_token'] * 1e3:.2f}" if r and r.get("ms_per_token") is not None else "-"
def ktok(r): return f"{r['tokens_per_s_per_head'] / 1e3:.0f}" if r else "-"
def gfl(r): return f"{r['gflops']:.1f}" if r else "-"
def pct(r): return f"{r['pct_peak']:.1f}%" if r and r.get("pct_peak") is not None else "-"
def reps(r): return str(r["reps"]) if r else "-"

first = rows[0] if rows else {}
print("# attnkit linear attention benchmark (Lightning Attention vs causal softmax)\n")
print(f"- cpu: {first.get('cpu', '?')}; isa {first.get('isa', '?')}; {first.get('threads', '?')} threads; "
      f"commit {first.get('build_commit', '?')}")
peaks = sorted({r["peak_fma_f32_gflops"] for r in rows if r.get("peak_fma_f32_gflops")})
print("- fp32 FMA peak measured by each bench run: " + (", ".join(f"{p:.1f}" for p in peaks) or "-") +
      " GFLOP/s (the denominator of % peak of that run's rows)")
print("- H = 8, d = e = 128, batch 1, decay (official slopes, one layer), block 64; linear rows bf16 Q/K/V/O "
      "unless marked f32 (the fp32 state and arithmetic either way)")
print("- useful GFLOP per head: forward 2T(B(d+e)/2 + 2de), backward 2T(B(3d+2e)/2 + 5de) (B = 64); "
      "dense: 2(d+e) x visible pairs")
print(f"- median of the timed runs (column reps: forward/backward; forward T >= 64k, backward T >= 4k and dense "
      "T >= 16k: 1 run, no warm-up)")
print(f"- benchmarks took {secs} s; load average (1, 5, 15 min) before: {load0}, after: {load1}\n")

print("| T | fwd ms | fwd µs/token | fwd ktok/s/head | fwd GFLOP/s | fwd % peak | bwd ms | bwd µs/token | "
      "bwd GFLOP/s | bwd % peak | reps |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for T in Ts:
    f, b = lin(T, "bf16", False), lin(T, "bf16", True)
    bms = ms(b) if b or T <= int(bwd_max) else f"(T > BWD_MAX={bwd_max})"
    print(f"| {T} | {ms(f)} | {us_tok(f)} | {ktok(f)} | {gfl(f)} | {pct(f)} | {bms} | {us_tok(b)} | {gfl(b)} | "
          f"{pct(b)} | {reps(f)}/{reps(b)} |")

print("\n## Linear vs dense causal softmax, f32, same shapes (b1_h8_q<T>_k<T>_d128_causal_f32)\n")
print("| T | linear f32 ms | dense causal ms | dense GFLOP/s | dense % peak | dense / linear time | faster |")
print("|---:|---:|---:|---:|---:|---:|---|")
for T in Tc:
    l, d = lin(T, "f32", False), dense(T)
    ratio = f"{d['median_ms'] / l['median_ms']:.1f}x" if l and d else "-"
    faster = "-" if not (l and d) else ("linear" if l["median_ms"] < d["median_ms"] else "dense")
    print(f"| {T} | {ms(l)} | {ms(d)} | {gfl(d)} | {pct(d)} | {ratio} | {faster} |")
EOF
echo "linear.sh: wrote $out/linear.md" >&2
exit "$status"
