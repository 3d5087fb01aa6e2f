#!/usr/bin/env bash
# bench/decode.sh OUTDIR — the decode-attention benchmark, written as JSON and markdown into OUTDIR.
#
# One go: `attnkit peak`, then `attnkit bench` (each bench run measures its own peak too, and its
# "% DRAM" divides by that) over:
#   (a) MHA: B=1, Hq=Hkv=8, d=128, bf16 and f16 KV, L = 16384, 32768, 65536, 131072; contiguous and
#       page16 (NHD, block table, shuffled pages): the cost of paging
#   (b) GQA at the same KV bytes as (a) bf16: Hq=32/Hkv=8 at L, and Hq=8/Hkv=1 at 8L; time ratio to MHA
#   (c) B=1, one KV head, one query head, L=65536, bf16, with AK_NUM_THREADS=1 and 2: the speedup
#   (d) i8 KV vs f16 KV (f16 Q/O), MHA, L = 32768 and 131072: the speedup
#   (e) a ragged batch: B=16, Hq=8/Hkv=2, bf16, lengths 1024 + floor(130048 * b / 15) (1k .. 128k)
# About 1-3 minutes on 2 cores (mostly filling the caches); the largest problem holds 1.1 GB of KV.
# QUICK=1: L = 4096 and 8192 (8x for Hkv=1), ragged B=4 up to 16k, L=16384 for (c): seconds.
#
# Environment:
#   ATTNKIT   the attnkit binary [build/attnkit; built with cmake if missing]
#   THREADS   threads of everything but (c) [all online CPUs]
#   REPS      timed repetitions per problem [10], after one warm-up
# Writes: OUTDIR/peak.json, OUTDIR/decode.json (a, b, d, e), OUTDIR/threads1.json and
#         OUTDIR/threads2.json (c), OUTDIR/command.txt, OUTDIR/decode.md (the tables).
set -euo pipefail

out=${1:?usage: bench/decode.sh OUTDIR   (env: ATTNKIT THREADS REPS QUICK=1)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ATTNKIT:-$root/build/attnkit}
threads=${THREADS:-$(nproc)}
reps=${REPS:-10}
if [ "${QUICK:-0}" = 1 ]; then
  L=4096,8192; L8=32768,65536; LD=4096,8192; LC=16384; ragged=decode_b4_h8_hkv2_k16384_d128_bf16_ragged1024
else
  L=16384,32768,65536,131072; L8=131072,262144,524288,1048576; LD=32768,131072; LC=65536
  ragged=decode_b16_h8_hkv2_k131072_d128_bf16_ragged1024
fi
main=(
  "decode_b1_h8_hkv8_k${L}_d128_bf16,f16_page0,16"      # (a) + paging cost
  "decode_b1_h32_hkv8_k${L}_d128_bf16"                   # (b) GQA 4, same L
  "decode_b1_h8_hkv1_k${L8}_d128_bf16"                   # (b) GQA 8, 8x L
  "decode_b1_h8_hkv8_k${LD}_d128_f16_kvi8"               # (d) i8 (f16 rows: from (a))
  "$ragged"                                              # (e)
)
single="decode_b1_h1_hkv1_k${LC}_d128_bf16"                # (c)

if [ ! -x "$bin" ]; then
  if [ -n "${ATTNKIT:-}" ]; then echo "decode.sh: $bin is not executable" >&2; exit 1; fi
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target attnkit_cli >/dev/null
fi

mkdir -p "$out"
: > "$out/command.txt"
status=0
run() {   # run OUTFILE [ENV=VALUE...] -- CMD...: record the command, keep going on failure
  local file=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  { [ ${#envs[@]} -gt 0 ] && printf '%q ' "${envs[@]}"; printf '%q ' "$@"; echo "> $file"; } >> "$out/command.txt"
  echo "decode.sh: ${envs[*]} $* > $out/$file" >&2
  env "${envs[@]}" "$@" > "$out/$file" || status=$?
}
t0=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
run peak.json -- "$bin" peak -t "$threads" -o json
run decode.json -- "$bin" bench -t "$threads" -r "$reps" -o json "${main[@]}"
run threads1.json AK_NUM_THREADS=1 -- "$bin" bench -r "$reps" -o json "$single"
run threads2.json AK_NUM_THREADS=2 -- "$bin" bench -r "$reps" -o json "$single"
secs=$(( $(date +%s) - t0 ))
load1=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
echo "decode.sh: benchmarks took $secs s" >&2

python3 - "$out" "$secs" "$load0" "$load1" <<'EOF' | tee "$out/decode.md"
import json, os, sys

out, secs, load0, load1 = sys.argv[1:5]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            data = json.load(f)
        return data if isinstance(data, list) else [data]
    except (OSError, ValueError):
        return []

peak = (load("peak.json") or [{}])[0]
rows = load("decode.json")
t1, t2 = load("threads1.json"), load("threads2.json")

def find(rs, **kw):
    for r in rs:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None

def ms(r): return f"{r['median_ms']:.2f}" if r else "-"
def gbs(r): return f"{r['gbs']:.2f}" if r else "-"
def pct(r): return f"{r['pct_peak']:.1f}%" if r and r.get("pct_peak") is not None else "-"
def ratio(a, b): return f"{a['median_ms'] / b['median_ms']:.2f}" if a and b else "-"

first = rows[0] if rows else {}
print("# attnkit decode benchmark\n")
print(f"- cpu: {peak.get('cpu', first.get('cpu', '?'))}; isa {first.get('isa', peak.get('isa', '?'))}; "
      f"commit {peak.get('build_commit', '?')}")
print(f"- `attnkit peak` ({peak.get('n_threads', '?')} threads): DRAM read {peak.get('dram_read_gbs', 0):.2f} GB/s, "
      f"fp32 FMA {peak.get('fma_f32_gflops', 0):.1f} GFLOP/s")
if first:
    print(f"- bench run ({first['threads']} threads, median of {first['reps']} after {first['warmup']} warm-up): "
          f"its own DRAM read peak {first['peak_dram_gbs']:.2f} GB/s is the denominator of % DRAM")
print("- GB/s = K+V bytes a call must read (plus i8 scales) / median time; kernel: "
      f"{first.get('kernel', '?')}")
print(f"- benchmarks took {secs} s; load average (1, 5, 15 min) before: {load0}, after: {load1} "
      "(another busy process on the host lowers every figure)\n")

Ls = sorted({r["kv_len"] for r in rows if r["heads_q"] == 8 and r["heads_kv"] == 8 and r["dtype_kv"] != "i8"})

print("## (a) MHA (B=1, Hq=Hkv=8, d=128) and the cost of paging (page16, NHD, shuffled pages)\n")
print("| L | KV | KV MB | contiguous ms | GB/s | % DRAM | page16 ms | GB/s | % DRAM | page16 / contiguous |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for dt in ("bf16", "f16"):
    for L in Ls:
        c = find(rows, heads_q=8, heads_kv=8, kv_len=L, dtype_kv=dt, page_size=0, batch=1)
        p = find(rows, heads_q=8, heads_kv=8, kv_len=L, dtype_kv=dt, page_size=16, batch=1)
        mb = f"{c['kv_mb']:.0f}" if c else "-"
        print(f"| {L} | {dt} | {mb} | {ms(c)} | {gbs(c)} | {pct(c)} | {ms(p)} | {gbs(p)} | {pct(p)} | {ratio(p, c)} |")

print("\n## (b) GQA at the same KV bytes as MHA (bf16, contiguous); goal: time ratio <= 1.15\n")
print("| KV MB | MHA 8/8 (L) ms | GQA 32/8 (L) ms | ratio | GQA 8/1 (8L) ms | ratio | % DRAM 32/8 | % DRAM 8/1 |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for L in Ls:
    m = find(rows, heads_q=8, heads_kv=8, kv_len=L, dtype_kv="bf16", page_size=0, batch=1)
    a = find(rows, heads_q=32, heads_kv=8, kv_len=L, dtype_kv="bf16", page_size=0, batch=1)
    b = find(rows, heads_q=8, heads_kv=1, kv_len=8 * L, dtype_kv="bf16", page_size=0, batch=1)
    mb = f"{m['kv_mb']:.0f}" if m else "-"
    print(f"| {mb} (L={L}) | {ms(m)} | {ms(a)} | {ratio(a, m)} | {ms(b)} | {ratio(b, m)} | {pct(a)} | {pct(b)} |")

print("\n## (c) one sequence, one KV head, one query head, bf16: threads (AK_NUM_THREADS)\n")
print("| problem | threads | ms | GB/s | % DRAM (of that run's peak) | speedup |")
print("|---|---:|---:|---:|---:|---:|")
a, b = (t1 or [None])[0], (t2 or [None])[0]
for r, base in ((a, None), (b, a)):
    if r:
        sp = ratio(base, r) if base else "1.00"
        print(f"| {r['problem']} | {r['threads']} | {ms(r)} | {gbs(r)} | {pct(r)} | {sp} |")

print("\n## (d) i8 KV vs f16 KV (f16 Q/O, MHA 8/8, contiguous)\n")
print("| L | f16 ms | f16 GB/s | i8 ms | i8 GB/s | i8 % DRAM | speedup (f16 / i8 time) |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for L in sorted({r["kv_len"] for r in rows if r["dtype_kv"] == "i8"}):
    f = find(rows, heads_q=8, heads_kv=8, kv_len=L, dtype_kv="f16", page_size=0, batch=1)
    q = find(rows, heads_q=8, heads_kv=8, kv_len=L, dtype_kv="i8", page_size=0, batch=1)
    print(f"| {L} | {ms(f)} | {gbs(f)} | {ms(q)} | {gbs(q)} | {pct(q)} | {ratio(f, q)} |")

print("\n## (e) ragged batch (lengths lo + floor((k - lo) * b / (B - 1)))\n")
print("| problem | B | lengths | KV MB | ms | GB/s | % DRAM |")
print("|---|---:|---|---:|---:|---:|---:|")
for r in rows:
    if r.get("ragged"):
        print(f"| {r['problem']} | {r['batch']} | {r['kv_len_min']} .. {r['kv_len_max']} | {r['kv_mb']:.0f} | "
              f"{ms(r)} | {gbs(r)} | {pct(r)} |")
EOF
echo "decode.sh: wrote $out/decode.md" >&2
exit "$status"
