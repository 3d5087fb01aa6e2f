/*
 * main.c — the attnkit command-line tool: options, --help, --version, the `peak` mode, and the
 * dispatch to `check`, `bitwise` (check.c), `bench` (bench.c) and `plan` (plan.c).
 * Exit status: 0 ok, 1 a failed check / differing bits / library error, 2 a usage error.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_cli.h"

static void usage(FILE *f) {
    ak_ctx *ctx = NULL;
    int threads = 1;
    const char *isa = ak_isa_name(ak_isa_detect());
    if (ak_ctx_create(&ctx) == AK_OK) {
        threads = ak_ctx_get_num_threads(ctx);
        isa = ak_isa_name(ak_ctx_get_isa(ctx));
    }
    fprintf(f,
        "usage: attnkit <mode> [options] <problem>...\n"
        "\n"
        "modes:\n"
        "  check <problem>...    run ak_attention, the double reference and a naive fp32 attention on\n"
        "                        seeded random inputs; PASS if err <= 2*err_naive32 + 1e-6 (+ 2 ulp of\n"
        "                        max|O| for bf16/f16 outputs), else FAIL and exit 1 (decode problems:\n"
        "                        ak_decode_run vs ak_decode_ref on a subset of (sequence, KV head) pairs;\n"
        "                        linear problems: ak_la_* vs ak_la_*_ref on a subset of (sequence, head) pairs;\n"
        "                        srms: of sequences, all heads)\n"
        "  bitwise <problem>...  run twice on N threads and once on 1 thread; memcmp O (and LSE)\n"
        "  bench <problem>...    time ak_attention_run (plan, workspace and inputs reused); comma lists\n"
        "                        sweep; time, useful GFLOP/s, %% of the peak measured in the same run\n"
        "                        (decode problems: ak_decode_run, KV GB/s, %% of the DRAM read peak;\n"
        "                        linear problems: ms/token, tokens/s per head, GFLOP/s, %% of the fp32 FMA peak;\n"
        "                        sparse problems: the sparse plan, then the dense plan of the same problem: both\n"
        "                        times, density, speedup, ideal = 1/density, speedup/ideal, waste, balance)\n"
        "  plan <problem>...     sparse problems: build the pattern, print its statistics, the plan's with the\n"
        "                        problem's heads and ak_plan_explain; --png / --json write it out\n"
        "  sparse-eval <problem> <method>...  content-aware sparse methods on one input: attention-mass\n"
        "                        recall, output error vs dense, estimation / compute time, density, speedup\n"
        "                        over our dense kernel; table, --png trade-off picture (attnkit sparse-eval\n"
        "                        with no argument prints its usage; docs/DYNAMIC.md)\n"
        "  peak                  measure fp32 FMA and bf16 dot peaks and DRAM read bandwidth\n"
        "  run -m MODEL -p TEXT  run a GGUF model (Gemma 3): prefill, generate; --attn METHOD on chosen\n"
        "                        layers (attnkit run --help; docs/MODEL.md)\n"
        "  eval ppl|passkey|speed  the model on long texts: perplexity, passkey retrieval (table, PNG heat\n"
        "                        map), prefill/decode tokens/s; dense and methods side by side (attnkit eval --help)\n"
        "\n"
        "options [default]:\n"
        "  -h, --help            print this help and exit\n"
        "      --version         version, build (commit, compiler), detected and selected ISA\n"
        "  -t, --threads N       threads per run [AK_NUM_THREADS or all online CPUs: %d here]\n"
        "  -r, --reps N          bench: timed repetitions per problem [5]\n"
        "  -w, --warmup N        bench: untimed runs before them [1]\n"
        "  -o, --output FMT      bench, peak: human|md|csv|json|jsonl [human]\n"
        "      --isa NAME        cap the ISA: scalar|avx2|avx512|avx512bf16 [AK_MAX_ISA or best: %s here]\n"
        "      --ref             run everything through the double reference [off; AK_FORCE_REF=1]\n"
        "      --deterministic B 1 = bitwise identical for any thread count, 0 = allow faster [1]\n"
        "  -v, --verbose         library prints its kernel choice and rejections to stderr [off; AK_VERBOSE=1]\n"
        "      --explain         print ak_plan_explain() for every problem [off]\n"
        "      --seed N          seed of the random inputs and ragged lengths [1]\n"
        "      --no-peak         bench: skip the peak measurement (no %% of peak column) [off]\n"
        "      --dense-every     bench, sparse problems: time the dense comparison for every problem, not once\n"
        "                        per distinct dense problem; sparse-eval: time dense again after every method\n"
        "                        and compare each with the mean of the dense runs around it [off]\n"
        "      --interleave      bench, sparse problems: alternate sparse and dense runs rep by rep (robust to\n"
        "                        the host changing speed during the run; implies --dense-every) [off]\n"
        "      --full            check: compare every (sequence, KV head) pair of a decode problem\n"
        "                        [off: those within 2^27 reference multiply-adds, at least one], every\n"
        "                        (sequence, head) pair of a linear problem whole [off: within 2^28]\n"
        "      --png FILE        plan: picture of the mask of one plan head (white = empty, black = all\n"
        "                        pairs active; several problems: FILE-<index>.png) [none]\n"
        "      --grid N          plan: the picture's mask pixels, at most N x N (aspect kept) [512]\n"
        "      --head H          plan: the plan head pictured [0]\n"
        "      --json FILE       plan: the pattern as JSON, reloadable with sp-json-FILE [none]\n"
        "      --input SRC       sparse-eval: syn:lines|needle|local|mix|random (planted structure) or npy:DIR\n"
        "                        (DIR/q.npy, k.npy, v.npy: <f4 or <f2, [H][L][D] or [B][H][L][D]) [syn:mix]\n"
        "      --png FILE        sparse-eval: speedup (log2) against recall, one colour per method [none]\n"
        "\n"
        "problem string: tokens joined by '_' (q and d required, the rest optional):\n"
        "  b<B> [1]  h<Hq> [1]  hkv<Hkv> [=Hq]  q<Lq>  k<Lk> [=Lq]  d<d>  dv<dv> [=d]\n"
        "  causal  win<left>  wr<right>  softcap<x>  alibi  sinks  lse  scale<x> [1/sqrt(d)]\n"
        "  f32|bf16|f16 [f32] (q; also kv and o unless given)  kv<dtype>  o<dtype>\n"
        "  bshd|bhsd [bhsd] (memory layout)  varlen (ragged batch, lengths random in [0, q] / [0, k])\n"
        "  k=q  hkv=h  dv=d  (the defaults, spelled out)   no<flag>: nocausal nowin nowr nosoftcap\n"
        "  noalibi nosinks nolse noscale novarlen (the default of that field)\n"
        "  e.g. b2_h32_hkv8_q4096_k4096_d128_causal_bf16   b3_h6_hkv2_q113_d59_win17_sinks_lse_varlen\n"
        "\n"
        "decode problem: decode_ then the tokens above (no layout, varlen, k=q) plus:\n"
        "  k<N> keys per sequence's cache (required)  q<N> query rows per sequence [1]\n"
        "  page<N> [0 = contiguous]  nhd|hnd [nhd]  csr (FlashInfer metadata) [seqlens + block_table]\n"
        "  kvi8 (also kvf32, kvbf16, kvf16; i8 alone = f32 Q/O, i8 cache)  prefix<N> shared prefix [0]\n"
        "  ragged (lengths lo + (k-lo)*b/(B-1), lo = k/16)  ragged<lo>  workers<N> tile<N> [0 = auto]\n"
        "  e.g. decode_b4_h32_hkv8_k131072_d128_bf16_page16   decode_b16_h8_hkv2_k131072_d128_bf16_ragged1024\n"
        "\n"
        "linear-attention problem (Lightning Attention): linear_ then b<B> h<H> q<T> d<d> e<e> (= dv<e>)\n"
        "  f32|bf16|f16 (q, k, v; o too unless o<dtype>)  scale<x> [1]  decay (official slopes; also\n"
        "  decayofficial, decayminimax, decaypaper: ak_la_log_decay, layer 0 of 1) [none]  state (random\n"
        "  initial state, final state returned)  blk<N> [0 = auto]  ragged | ragged<lo> (as decode)\n"
        "  srms (output SRMSNorm over the heads of a token)  gate (random output gate; bwd: d_gate too)\n"
        "  rec (recurrent form)  bwd (backward: ak_la_backward)  nodecay nostate nosrms nogate norec nobwd:\n"
        "  the defaults   e.g. linear_b1_h8_q4096_d128_e64_bf16_decay_state_blk64\n"
        "  linear_b4_h8_q2048_d64_ragged_state_bwd   linear_b1_h8_q4096_d128_bf16_decay_srms_gate\n"
        "\n"
        "sparse problem: a dense problem (no varlen) plus one pattern token sp-<kind>-<param>..., last;\n"
        "  parameters in any order, [default]; window, strided, power, moa, sfattn need causal; s2, doc,\n"
        "  blocks, dense take the problem's causal flag:\n"
        "  sp-window-w<tokens>[512]-sink<n>[4]-dil<d>[1]-blk<b>[0 = token-exact]-bq<rows>[64]\n"
        "  sp-strided-l<local>[256]-s<stride>[256]-sink<n>[0]-bq<rows>[64]\n"
        "  sp-power-bs<block>[256]-w<blocks>[5]\n"
        "  sp-na1d-<n>[q]-k<K>  sp-na2d-<E>x<E>-k<K>x<K>  sp-na3d-<E>x<E>x<E>-k<K>x<K>x<K> (q = k = grid tokens;\n"
        "    K alone = every axis) -d<dilation>[1] -s<stride>[1] -c<causal 0|1 per axis>[0] -t<query tile>[auto]\n"
        "  sp-s2-bs<block>[64]-local<blocks>[16]-vs<vert stride>[8] [-homo] [-dense<heads>] [-off<n>] [-rel]\n"
        "    [-lr<blocks>] [-nofix] (one pattern per KV head)\n"
        "  sp-moa-a<alpha>-b<beta>[0] (every head) | sp-moa-FILE-layer<n>[0] (a MoA plan file); -new<n>[1024] -exact\n"
        "  sp-sfattn-g<group> (required: even, divides k)-sink<n>[4]-slo<head>[Hq/2]-shi<head>[Hq] (shifted heads)\n"
        "  sp-doc-<len>[+<len>...] documents of these lengths, repeated to fill q (= k); -bq<rows>[64]\n"
        "  sp-blocks-bs<block>[64]-density<x>[0.25]-seed<n>[1] random block mask (diagonal kept when causal)\n"
        "  sp-dense-bs<block>[64] every block   sp-json-FILE a saved pattern   nosp: no pattern\n"
        "  FILE runs to the end of the problem string (may hold '_'); a numeric sweep alternative replaces the\n"
        "  last parameter's value: sp-blocks-bs64-density0.1,0.25,0.5\n"
        "  e.g. b1_h8_hkv2_q4096_d128_causal_bf16_sp-power-bs256-w5   b1_h4_q4096_d64_sp-na2d-64x64-k13\n"
        "\n"
        "sweeps (any mode): a token may hold a comma list; a numeric alternative keeps the prefix:\n"
        "  b1_h8_hkv8,2_q4096,16384_k=q_d64,128,256_causal,nocausal_f32,bf16  (48 problems,\n"
        "  the first token varying slowest)\n"
        "\n"
        "exit status: 0 ok, 1 failure (check FAIL, bits differ, library error), 2 usage error\n",
        threads, isa);
    ak_ctx_destroy(ctx);
}

static void version(void) {
    ak_ctx *ctx = NULL;
    printf("attnkit %s\n", ak_version());
    printf("build: %s\n", ak_build_info());
    printf("isa detected: %s\n", ak_isa_name(ak_isa_detect()));
    if (ak_ctx_create(&ctx) == AK_OK) {
        printf("isa selected: %s\n", ak_isa_name(ak_ctx_get_isa(ctx)));
        printf("threads: %d\n", ak_ctx_get_num_threads(ctx));
        ak_ctx_destroy(ctx);
    }
}

static int parse_isa(const char *s, int *isa) {
    const char *names[] = {"scalar", "avx2", "avx512", "avx512bf16"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) { *isa = i; return 0; }
    return -1;
}

static int parse_format(const char *s, out_format *f) {
    if (strcmp(s, "human") == 0) *f = OUT_HUMAN;
    else if (strcmp(s, "md") == 0) *f = OUT_MD;
    else if (strcmp(s, "csv") == 0) *f = OUT_CSV;
    else if (strcmp(s, "json") == 0) *f = OUT_JSON;
    else if (strcmp(s, "jsonl") == 0) *f = OUT_JSONL;
    else return -1;
    return 0;
}

/* A context configured from the options; n_threads > 0 overrides -t. Prints the error. */
int ctx_from_options(const options *o, int n_threads, ak_ctx **out) {
    ak_ctx *ctx = NULL;
    ak_status st = ak_ctx_create(&ctx);
    if (st != AK_OK) {
        fprintf(stderr, "attnkit: ak_ctx_create: %s\n", ak_status_string(st));
        return -1;
    }
    int n = n_threads > 0 ? n_threads : o->threads;
    if (st == AK_OK && n > 0) st = ak_ctx_set_num_threads(ctx, n);
    if (st == AK_OK && o->isa >= 0) st = ak_ctx_set_max_isa(ctx, (ak_isa)o->isa);
    if (st == AK_OK && o->force_ref) st = ak_ctx_set_force_ref(ctx, 1);
    if (st == AK_OK && o->verbose) st = ak_ctx_set_verbose(ctx, 1);
    if (st == AK_OK && o->deterministic >= 0) st = ak_ctx_set_deterministic(ctx, o->deterministic);
    if (st != AK_OK) {
        fprintf(stderr, "attnkit: %s\n", error_text(ctx, st));
        ak_ctx_destroy(ctx);
        return -1;
    }
    *out = ctx;
    return 0;
}

/* `attnkit peak`: measure and print the ceilings. */
static int mode_peak(const options *o) {
    ak_ctx *ctx = NULL;
    if (ctx_from_options(o, 0, &ctx) != 0) return 1;
    ak_peak pk;
    ak_status st = ak_measure_peak(ctx, &pk);
    if (st != AK_OK) {
        fprintf(stderr, "attnkit: ak_measure_peak: %s\n", error_text(ctx, st));
        ak_ctx_destroy(ctx);
        return 1;
    }
    char cpu[256], commit[64];
    cpu_model(cpu, sizeof(cpu));
    build_commit(commit, sizeof(commit));
    const char *isa = ak_isa_name(pk.isa);
    if (o->out == OUT_JSON || o->out == OUT_JSONL) {
        printf("{\"fma_f32_gflops\": %.3f, \"dot_bf16_gflops\": %.3f, \"dram_read_gbs\": %.3f, "
               "\"n_threads\": %d, \"isa\": ", pk.fma_f32_gflops, pk.dot_bf16_gflops, pk.dram_read_gbs,
               pk.n_threads);
        json_string(stdout, isa);
        printf(", \"cpu\": ");
        json_string(stdout, cpu);
        printf(", \"build_commit\": ");
        json_string(stdout, commit);
        printf("}\n");
    } else if (o->out == OUT_CSV) {
        printf("fma_f32_gflops,dot_bf16_gflops,dram_read_gbs,n_threads,isa,cpu,build_commit\n");
        printf("%.3f,%.3f,%.3f,%d,%s,\"%s\",%s\n", pk.fma_f32_gflops, pk.dot_bf16_gflops,
               pk.dram_read_gbs, pk.n_threads, isa, cpu, commit);
    } else if (o->out == OUT_MD) {
        printf("| fp32 FMA GFLOP/s | bf16 dot GFLOP/s | DRAM read GB/s | threads | isa | cpu | commit |\n");
        printf("|---:|---:|---:|---:|---|---|---|\n");
        printf("| %.1f | %.1f | %.1f | %d | %s | %s | %s |\n", pk.fma_f32_gflops, pk.dot_bf16_gflops,
               pk.dram_read_gbs, pk.n_threads, isa, cpu, commit);
    } else {
        printf("attnkit peak: %s, %d threads, isa %s, commit %s\n", cpu, pk.n_threads, isa, commit);
        printf("  fp32 FMA   %9.1f GFLOP/s\n", pk.fma_f32_gflops);
        if (pk.dot_bf16_gflops > 0) printf("  bf16 dot   %9.1f GFLOP/s\n", pk.dot_bf16_gflops);
        else printf("  bf16 dot         n/a (no AVX512_BF16 at this ISA level)\n");
        printf("  DRAM read  %9.1f GB/s\n", pk.dram_read_gbs);
    }
    ak_ctx_destroy(ctx);
    return 0;
}

/* The value of option argv[*i] ("--opt=value" or "--opt value"); NULL if missing. */
static const char *option_value(int argc, char **argv, int *i, const char *eq) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "attnkit: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(attnkit --help lists the modes and options)\n");
    return 2;
}

int main(int argc, char **argv) {
    /* the model commands have their own options (tools/attnkit/run.c, model_eval.c) */
    if (argc >= 2 && !strcmp(argv[1], "run")) return mode_run(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "eval")) return mode_model_eval(argc - 1, argv + 1);
    options o;
    memset(&o, 0, sizeof o);
    o.reps = 5;
    o.warmup = 1;
    o.out = OUT_HUMAN;
    o.isa = -1;
    o.deterministic = -1;
    o.seed = 1;
    o.grid = 512;
    const char *plan_only = NULL;   /* a plan-mode option given (refused in the other modes) */
    const char *mode = NULL;
    char **args = calloc((size_t)argc + 1, sizeof(char *));
    int n_args = 0;
    if (!args) return 1;
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *a = argv[i], *eq = strchr(a, '='), *val = NULL;
        if (a[0] != '-' || a[1] == '\0') {
            if (!mode) mode = a;
            else args[n_args++] = argv[i];
            continue;
        }
        if (a[1] != '-' && strlen(a) > 2 && strchr("trwo", a[1])) eq = a + 1;   /* -r5, -ojson */
        else if (a[1] != '-' || !eq) eq = NULL;                                  /* --reps=5 */
        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) + (a[1] != '-') : (int)strlen(a), a);
        int bad = 0;
        if (!strcmp(name, "-h") || !strcmp(name, "--help")) { usage(stdout); free(args); return 0; }
        else if (!strcmp(name, "--version")) { version(); free(args); return 0; }
        else if (!strcmp(name, "-t") || !strcmp(name, "--threads"))
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 1, 4096, &o.threads);
        else if (!strcmp(name, "-r") || !strcmp(name, "--reps"))
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 1, 1000000, &o.reps);
        else if (!strcmp(name, "-w") || !strcmp(name, "--warmup"))
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 0, 1000000, &o.warmup);
        else if (!strcmp(name, "-o") || !strcmp(name, "--output"))
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_format(val, &o.out);
        else if (!strcmp(name, "--isa"))
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_isa(val, &o.isa);
        else if (!strcmp(name, "--deterministic"))
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 0, 1, &o.deterministic);
        else if (!strcmp(name, "--seed")) {
            int s = 0;
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 0, 2147483647L, &s);
            o.seed = (uint64_t)s;
        }
        else if (!strcmp(name, "--ref") && !eq) o.force_ref = 1;
        else if ((!strcmp(name, "-v") || !strcmp(name, "--verbose")) && !eq) o.verbose = 1;
        else if (!strcmp(name, "--explain") && !eq) o.explain = 1;
        else if (!strcmp(name, "--no-peak") && !eq) o.no_peak = 1;
        else if (!strcmp(name, "--full") && !eq) o.full_check = 1;
        else if (!strcmp(name, "--dense-every") && !eq) o.dense_every = 1;
        else if (!strcmp(name, "--interleave") && !eq) o.interleave = 1;
        else if (!strcmp(name, "--png")) {
            bad = !(val = option_value(argc, argv, &i, eq)) || !*val;
            o.png = val;
            plan_only = "--png";
        } else if (!strcmp(name, "--json")) {
            bad = !(val = option_value(argc, argv, &i, eq)) || !*val;
            o.json = val;
            plan_only = "--json";
        } else if (!strcmp(name, "--input")) {
            bad = !(val = option_value(argc, argv, &i, eq)) || !*val;
            o.input = val;
        } else if (!strcmp(name, "--grid")) {
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 1, 16384, &o.grid);
            plan_only = "--grid";
        } else if (!strcmp(name, "--head")) {
            bad = !(val = option_value(argc, argv, &i, eq)) || parse_int(val, 0, 1 << 30, &o.head);
            plan_only = "--head";
        }
        else { free(args); return bad_usage("unknown option '%s'", a); }
        if (bad) { free(args); return bad_usage(val ? "bad value for %s" : "%s needs a value", name); }
    }
    int rc;
    if (!mode) { usage(stderr); rc = 2; }
    else if (plan_only && strcmp(mode, "plan") != 0 && !(!strcmp(mode, "sparse-eval") && !strcmp(plan_only, "--png")))
        rc = bad_usage("%s applies to the plan mode only", plan_only);
    else if (o.input && strcmp(mode, "sparse-eval") != 0) rc = bad_usage("%s applies to sparse-eval only", "--input");
    else if (!strcmp(mode, "sparse-eval")) rc = mode_eval(&o, args, n_args);
    else if (!strcmp(mode, "plan"))
        rc = n_args ? mode_plan(&o, args, n_args) : bad_usage("%s needs at least one sparse problem string", mode);
    else if (!strcmp(mode, "peak")) rc = n_args ? bad_usage("peak takes no problem ('%s')", args[0]) : mode_peak(&o);
    else if (!strcmp(mode, "check") || !strcmp(mode, "bitwise") || !strcmp(mode, "bench")) {
        if (n_args == 0) rc = bad_usage("%s needs at least one problem string", mode);
        else if (!strcmp(mode, "check")) rc = mode_check(&o, args, n_args);
        else if (!strcmp(mode, "bitwise")) rc = mode_bitwise(&o, args, n_args);
        else rc = mode_bench(&o, args, n_args);
    } else rc = bad_usage("unknown mode '%s' (check, bitwise, bench, plan, sparse-eval, peak)", mode);
    free(args);
    return rc;
}
