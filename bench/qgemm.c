/*
 * qgemm.c — speed of ak_qgemm on the weight shapes of Gemma 3 270M (Q4_K_M file), as JSON on stdout.
 *
 *   make -C BUILD qgemm_bench && BUILD/tests/qgemm_bench [--reps N] [--quick] [--full] [--isa NAME] > out.json
 *   bench/qgemm.sh OUTDIR   (the same, plus the markdown table of docs/model/qgemm.md)
 *
 * For every (type, n_out x n_in) of the model and m in {1, 16, 64, 256, 512, 2048}: the median wall time of
 * --reps calls (default 7) after one warm-up call, GFLOP/s = 2 m n_out n_in / t, weight GB/s = bytes of W / t,
 * and both as fractions of the machine's measured ceilings (ak_measure_peak: fp32 FMA peak and streaming
 * DRAM read bandwidth, same threads and ISA). Rows marked "cold" cycle through enough copies of W (>= 256 MiB)
 * that every call reads its weights from DRAM, as in a real decode step (the whole model is ~250 MB);
 * the others are cache-hot repeated calls. The LM head (Q8_0 262144 x 640, 178 MB) is always cold; its
 * m >= 512 rows take seconds each and run only with --full.
 * Weights are random blocks with moderate fp16 scales; speed does not depend on the values.
 * Threads: AK_NUM_THREADS (default all online CPUs).
 *
 * --cpu-time (one thread only; for a busy machine): every call is timed in thread CPU time, and after every
 * call an FMA loop (12 chains of vfmadd231ps, AVX-512 or AVX2 as the context's ISA) is timed the same way;
 * rows report the fastest call ("min_ms") and "frac_fma_ref" = its GFLOP/s over the best GFLOP/s of that loop.
 * Time slices lost to other processes then drop out; a busy sibling hyperthread or shared caches do not.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attnkit.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Reference FMA loops for --cpu-time: seconds per FLOP of 12 independent chains. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FMA_REF_LOOP(NAME, ATTR, VT, SET1, FMADD, LANES)                                                     \
    ATTR static double NAME(long iters) {                                                                    \
        volatile float one = 1e-4f;                                                                          \
        VT a = SET1(one), c[12];                                                                             \
        for (int i = 0; i < 12; i++) c[i] = SET1((float)i);                                                  \
        double t0 = cpu_now();                                                                               \
        for (long it = 0; it < iters; it++)                                                                  \
            for (int i = 0; i < 12; i++) c[i] = FMADD(a, a, c[i]);                                           \
        double t = cpu_now() - t0;                                                                           \
        float sink[LANES];                                                                                   \
        memcpy(sink, &c[0], sizeof sink);                                                                    \
        for (int i = 1; i < 12; i++) {                                                                       \
            float v[LANES];                                                                                  \
            memcpy(v, &c[i], sizeof v);                                                                      \
            sink[0] += v[0];                                                                                 \
        }                                                                                                    \
        if (sink[0] == 12345.678f) fputc(' ', stderr);                                                       \
        return t / ((double)iters * 12.0 * 2.0 * LANES);                                                     \
    }
FMA_REF_LOOP(fma_ref_avx512, __attribute__((target("avx512f,fma"))), __m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)
FMA_REF_LOOP(fma_ref_avx2, __attribute__((target("avx2,fma"))), __m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
static double fma_ref(ak_isa isa) {
    if (isa >= AK_ISA_AVX512) return fma_ref_avx512(4000);
    if (isa >= AK_ISA_AVX2) return fma_ref_avx2(4000);
    return 0.0;
}
#else
static double fma_ref(ak_isa isa) {
    (void)isa;
    return 0.0;
}
#endif

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static void fill_weights(int32_t type, uint8_t *w, int64_t nblocks) {
    int64_t bb = ak_qtype_block_bytes(type);
    for (int64_t q = 0; q < nblocks; q++) {
        uint8_t *b = w + q * bb;
        for (int64_t j = 0; j < bb; j += 8) {
            uint64_t v = rnd();
            memcpy(b + j, &v, (size_t)(bb - j < 8 ? bb - j : 8));
        }
        /* fp16 scale ~ 2^-7 .. 2^-4 (exponent 8..11), where each type keeps it */
        uint16_t d = (uint16_t)(((8 + rnd() % 4) << 10) | (rnd() & 0x3ff));
        int off = type == AK_Q_Q6_K ? 208 : 0;
        memcpy(b + off, &d, 2);
        if (type == AK_Q_Q4_K || type == AK_Q_Q5_K || type == AK_Q_Q4_1 || type == AK_Q_Q5_1) memcpy(b + 2, &d, 2);
    }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct shape {
    int32_t type;
    int64_t n_out, n_in;
    const char *what;
} shape;

int main(int argc, char **argv) {
    int reps = 7, quick = 0, full = 0, cpu = 0;
    const char *isa_name = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--full") == 0) full = 1;
        else if (strcmp(argv[i], "--cpu-time") == 0) cpu = 1;
        else if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc) isa_name = argv[++i];
        else {
            fprintf(stderr, "usage: qgemm_bench [--reps N] [--quick] [--full] [--cpu-time] [--isa scalar|avx2|avx512]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) return 1;
    if (isa_name) {
        for (int i = AK_ISA_SCALAR; i <= AK_ISA_AVX512BF16; i++)
            if (strcmp(isa_name, ak_isa_name((ak_isa)i)) == 0 && ak_ctx_set_max_isa(ctx, (ak_isa)i) != AK_OK) {
                fprintf(stderr, "qgemm_bench: %s\n", ak_ctx_last_error(ctx));
                return 1;
            }
    }
    if (cpu && ak_ctx_get_num_threads(ctx) != 1) {
        fprintf(stderr, "qgemm_bench: --cpu-time needs one thread (AK_NUM_THREADS=1)\n");
        return 2;
    }
    ak_peak peak;
    if (ak_measure_peak(ctx, &peak) != AK_OK) return 1;
    double ref_best = 1e30;   /* --cpu-time: the fastest reference FMA loop, seconds per FLOP */

    static const shape shapes[] = {
        {AK_Q_Q8_0, 262144, 640, "token_embd (LM head)"},
        {AK_Q_Q5_0, 2048, 640, "ffn_gate / ffn_up"},
        {AK_Q_Q5_0, 1024, 640, "attn_q"},
        {AK_Q_Q5_0, 256, 640, "attn_k / attn_v"},
        {AK_Q_Q8_0, 256, 640, "attn_v (9 layers)"},
        {AK_Q_Q4_K, 640, 2048, "ffn_down (9 layers)"},
        {AK_Q_Q6_K, 640, 2048, "ffn_down (9 layers)"},
        {AK_Q_Q4_K, 640, 1024, "attn_output"},
    };
    static const int64_t ms[] = {1, 16, 64, 256, 512, 2048};
    const int64_t cold_bytes = (int64_t)256 << 20;

    printf("{\"bench\": \"qgemm\", \"threads\": %d, \"isa\": \"%s\", \"reps\": %d, \"cpu_time\": %s,\n",
           ak_ctx_get_num_threads(ctx), ak_isa_name(ak_ctx_get_isa(ctx)), reps, cpu ? "true" : "false");
    printf(" \"peak\": {\"fma_f32_gflops\": %.1f, \"dram_read_gbs\": %.2f},\n \"rows\": [\n", peak.fma_f32_gflops,
           peak.dram_read_gbs);
    int first = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        int64_t be = ak_qtype_block_elems(sh->type), bb = ak_qtype_block_bytes(sh->type);
        int64_t wbytes = sh->n_out * (sh->n_in / be) * bb;
        int lm = wbytes > ((int64_t)64 << 20);
        int64_t copies_cold = lm ? 1 : (cold_bytes + wbytes - 1) / wbytes;
        uint8_t *w = (uint8_t *)malloc((size_t)(wbytes * copies_cold));
        if (!w) return 1;
        fill_weights(sh->type, w, sh->n_out * (sh->n_in / be) * copies_cold);
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            int64_t m = ms[mi];
            if (lm && m >= 512 && !full) continue;
            if (quick && m > 256) continue;
            for (int cold = 0; cold <= 1; cold++) {
                if (lm && !cold) continue;              /* the LM head never fits a cache */
                if (!lm && cold && m > 16) continue;    /* prefill is compute-bound: cache-hot only */
                int64_t copies = cold ? copies_cold : 1;
                float *x = (float *)malloc((size_t)(m * sh->n_in) * sizeof(float));
                float *y = (float *)malloc((size_t)(m * sh->n_out) * sizeof(float));
                for (int64_t i = 0; i < m * sh->n_in; i++) x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 1e-3f;
                double *t = (double *)malloc((size_t)reps * sizeof(double));
                int64_t c = 0;
                ak_status st = ak_qgemm(ctx, sh->type, w, sh->n_out, sh->n_in, x, m, sh->n_in, y, sh->n_out);
                if (st != AK_OK) {
                    fprintf(stderr, "qgemm_bench: %s\n", ak_ctx_last_error(ctx));
                    return 1;
                }
                for (int r = 0; r < reps; r++) {
                    /* cold: one rep = one pass over all copies, timed per call */
                    int64_t calls = copies;
                    double t0 = cpu ? cpu_now() : now();
                    for (int64_t k = 0; k < calls; k++) {
                        ak_qgemm(ctx, sh->type, w + (size_t)(c * wbytes), sh->n_out, sh->n_in, x, m, sh->n_in, y, sh->n_out);
                        c = (c + 1) % copies;
                    }
                    t[r] = ((cpu ? cpu_now() : now()) - t0) / (double)calls;
                    if (cpu) {
                        double f = fma_ref(ak_ctx_get_isa(ctx));
                        if (f > 0 && f < ref_best) ref_best = f;
                    }
                }
                qsort(t, (size_t)reps, sizeof(double), cmp_d);
                double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
                double gflops = 2.0 * (double)m * (double)sh->n_out * (double)sh->n_in / med * 1e-9;
                double gbs = (double)wbytes / med * 1e-9;
                printf("%s  {\"type\": \"%s\", \"n_out\": %lld, \"n_in\": %lld, \"what\": \"%s\", \"m\": %lld, "
                       "\"cold\": %s, \"ms\": %.4f, \"min_ms\": %.4f, \"gflops\": %.2f, \"weight_gbs\": %.2f, "
                       "\"frac_fma_peak\": %.3f, \"frac_dram\": %.3f",
                       first ? "" : ",\n", ak_qtype_name(sh->type), (long long)sh->n_out, (long long)sh->n_in, sh->what,
                       (long long)m, cold ? "true" : "false", med * 1e3, t[0] * 1e3, gflops, gbs,
                       gflops / peak.fma_f32_gflops, gbs / peak.dram_read_gbs);
                if (cpu && ref_best < 1e29) {
                    double best_gflops = 2.0 * (double)m * (double)sh->n_out * (double)sh->n_in / t[0] * 1e-9;
                    printf(", \"min_gflops\": %.2f, \"min_weight_gbs\": %.2f, \"fma_ref_gflops\": %.1f, \"frac_fma_ref\": %.3f",
                           best_gflops, (double)wbytes / t[0] * 1e-9, 1e-9 / ref_best, best_gflops * 1e9 * ref_best);
                }
                printf("}");
                fflush(stdout);
                first = 0;
                free(t);
                free(y);
                free(x);
            }
        }
        free(w);
    }
    printf("\n]}\n");
    ak_ctx_destroy(ctx);
    return 0;
}
