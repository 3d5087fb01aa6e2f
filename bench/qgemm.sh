#!/usr/bin/env bash
# bench/qgemm.sh OUTDIR — ak_qgemm on the weight shapes of Gemma 3 270M (Q4_K_M): JSON (bench/qgemm.c) and the
# markdown table of docs/model/qgemm.md, in OUTDIR.
#
# Environment:
#   BUILD     a configured attnkit build directory [build]; `make qgemm_bench` is run in it
#   THREADS   threads [all online CPUs] (AK_NUM_THREADS of the run)
#   REPS      timed calls per row, the median is reported [7]
#   QUICK=1   m <= 256 only;  FULL=1: also the LM head at m = 512 and 2048 (minutes)
#   ISA       cap the ISA (scalar, avx2, avx512) [best available]
#   CPU=1     one thread, timed in thread CPU time against an interleaved FMA loop (qgemm_bench --cpu-time):
#             for a busy machine, where wall-clock medians measure the other processes
# Writes: OUTDIR/qgemm.json, OUTDIR/qgemm.md, OUTDIR/command.txt. About 1-2 minutes on 2 cores.
set -euo pipefail

out=${1:?usage: bench/qgemm.sh OUTDIR   (env: BUILD THREADS REPS QUICK=1 FULL=1 ISA)}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
threads=${THREADS:-$(nproc)}
reps=${REPS:-7}
mkdir -p "$out"
make -C "$build" qgemm_bench >/dev/null
bin=$build/tests/qgemm_bench
args=(--reps "$reps")
[ "${QUICK:-0}" = 1 ] && args+=(--quick)
[ "${FULL:-0}" = 1 ] && args+=(--full)
[ -n "${ISA:-}" ] && args+=(--isa "$ISA")
if [ "${CPU:-0}" = 1 ]; then args+=(--cpu-time); threads=1; fi
echo "AK_NUM_THREADS=$threads $bin ${args[*]}   # $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" \
  > "$out/command.txt"
AK_NUM_THREADS=$threads "$bin" "${args[@]}" > "$out/qgemm.json"

python3 - "$out/qgemm.json" > "$out/qgemm.md" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["peak"]
print(f"threads {d['threads']}, ISA {d['isa']}, median of {d['reps']} calls; measured peaks: "
      f"fp32 FMA {p['fma_f32_gflops']:.0f} GFLOP/s, DRAM read {p['dram_read_gbs']:.1f} GB/s\n")
if d.get("cpu_time"):
    print("thread CPU time, fastest call; % FMA ref = its GFLOP/s over the best of an FMA loop timed the same way\n")
    print("| type | n_out x n_in | tensor | m | weights | min ms | GFLOP/s | % FMA ref | weight GB/s |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|")
    for r in d["rows"]:
        print(f"| {r['type']} | {r['n_out']} x {r['n_in']} | {r['what']} | {r['m']} | {'DRAM' if r['cold'] else 'cache'} "
              f"| {r['min_ms']:.3f} | {r.get('min_gflops', 0):.1f} | {100 * r.get('frac_fma_ref', 0):.0f} "
              f"| {r.get('min_weight_gbs', 0):.2f} |")
else:
    print("| type | n_out x n_in | tensor | m | weights | ms | GFLOP/s | % FMA peak | weight GB/s | % DRAM |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in d["rows"]:
        print(f"| {r['type']} | {r['n_out']} x {r['n_in']} | {r['what']} | {r['m']} | {'DRAM' if r['cold'] else 'cache'} "
              f"| {r['ms']:.3f} | {r['gflops']:.1f} | {100 * r['frac_fma_peak']:.0f} | {r['weight_gbs']:.1f} "
              f"| {100 * r['frac_dram']:.0f} |")
EOF
cat "$out/qgemm.md"
