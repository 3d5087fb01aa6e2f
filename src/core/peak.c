/*
 * peak.c — ak_measure_peak(): this machine's ceilings, measured with the context's threads and ISA.
 *
 *   fma_f32_gflops   12 independent chains of vfmadd231ps (zmm for avx512, ymm for avx2, C mul+add
 *                    for scalar) on every thread.
 *   dot_bf16_gflops  the same with vdpbf16ps zmm; 0 unless the context's ISA is AVX512BF16.
 *   dram_read_gbs    vector sum over a 512 MiB buffer split across the threads (each thread first
 *                    touches, then reads, its own part).
 * Each figure is the median of several timed repetitions after a calibration run that also warms
 * the cores up (frequency ramp, AVX-512 licence). Total time is about 1-2 s.
 * The per-ISA loops live in src/kernels/<isa>/peak_<isa>.c (declared in core/peak.h).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(AK_USE_OPENMP)
#include <omp.h>
#endif

#include "attnkit.h"
#include "core/internal.h"
#include "core/peak.h"

typedef double (*ak_flop_loop)(int64_t iters, float *sink);
typedef float (*ak_sum_loop)(const float *x, size_t n);

static const double ak_peak_target_s = 0.040;          /* length of one timed repetition */
static const int ak_peak_flop_reps = 5;
static const int ak_peak_dram_reps = 7;
static const size_t ak_peak_dram_bytes = (size_t)512 << 20;

static double ak_peak_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int ak_peak_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ak_peak_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), ak_peak_cmp_double);
    return (n % 2) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Run `loop(iters)` once on each of n threads; returns the wall time, adds FLOPs to *flops. */
static double ak_peak_time_flops(ak_flop_loop loop, int64_t iters, int n, double *flops,
                                 int *n_used, float *sink) {
    double t0 = 0.0, t1 = 0.0, total = 0.0;
    float s_all = 0.0f;
    int used = 1;
#if defined(AK_USE_OPENMP)
#pragma omp parallel num_threads(n) reduction(+ : total, s_all)
    {
#pragma omp barrier
#pragma omp master
        {
            t0 = ak_peak_now();
            used = omp_get_num_threads();
        }
        float s = 0.0f;
        total += loop(iters, &s);
        s_all += s;
#pragma omp barrier
#pragma omp master
        t1 = ak_peak_now();
    }
#else
    (void)n;
    t0 = ak_peak_now();
    total = loop(iters, &s_all);
    t1 = ak_peak_now();
#endif
    *flops = total;
    *n_used = used;
    *sink += s_all;
    return t1 - t0;
}

/* Calibrate the iteration count to ~ak_peak_target_s, then return the median GFLOP/s. */
static double ak_peak_flop_rate(ak_flop_loop loop, int n, int *n_used, float *sink) {
    int64_t iters = 1024;
    double flops = 0.0, t = 0.0;
    for (;;) {   /* doubling also warms every core up */
        t = ak_peak_time_flops(loop, iters, n, &flops, n_used, sink);
        if (t >= 0.25 * ak_peak_target_s || iters > ((int64_t)1 << 40)) break;
        iters *= 2;
    }
    double scaled = (double)iters * ak_peak_target_s / (t > 1e-9 ? t : 1e-9);
    iters = scaled < 1.0 ? 1 : (int64_t)scaled;
    double rate[16];
    for (int r = 0; r < ak_peak_flop_reps; r++) {
        t = ak_peak_time_flops(loop, iters, n, &flops, n_used, sink);
        rate[r] = flops / (t > 1e-12 ? t : 1e-12) * 1e-9;
    }
    return ak_peak_median(rate, ak_peak_flop_reps);
}

#if defined(AK_USE_OPENMP)
/* The part [lo, hi) of n floats owned by thread t of nt (cache-line aligned bounds). */
static void ak_peak_chunk(size_t n, int t, int nt, size_t *lo, size_t *hi) {
    size_t lines = n / 16;
    *lo = lines * (size_t)t / (size_t)nt * 16;
    *hi = (t == nt - 1) ? n : lines * (size_t)(t + 1) / (size_t)nt * 16;
}
#endif

/* Parallel first touch: each thread writes the part it will later read. */
static void ak_peak_fill(float *x, size_t n, int nt) {
#if defined(AK_USE_OPENMP)
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), used = omp_get_num_threads();
        size_t lo, hi;
        ak_peak_chunk(n, t, used, &lo, &hi);
        for (size_t i = lo; i < hi; i++) x[i] = (float)(i & 7) * 0.125f;
    }
#else
    (void)nt;
    for (size_t i = 0; i < n; i++) x[i] = (float)(i & 7) * 0.125f;
#endif
}

/* One timed pass over the buffer on nt threads; returns the wall time. */
static double ak_peak_time_sum(ak_sum_loop sum, const float *x, size_t n, int nt, float *sink) {
    double t0 = 0.0, t1 = 0.0;
    float s_all = 0.0f;
#if defined(AK_USE_OPENMP)
#pragma omp parallel num_threads(nt) reduction(+ : s_all)
    {
        int t = omp_get_thread_num(), used = omp_get_num_threads();
        size_t lo, hi;
        ak_peak_chunk(n, t, used, &lo, &hi);
#pragma omp barrier
#pragma omp master
        t0 = ak_peak_now();
        s_all += sum(x + lo, hi - lo);
#pragma omp barrier
#pragma omp master
        t1 = ak_peak_now();
    }
#else
    (void)nt;
    t0 = ak_peak_now();
    s_all = sum(x, n);
    t1 = ak_peak_now();
#endif
    *sink += s_all;
    return t1 - t0;
}

/* Median streaming-read bandwidth in GB/s (1e9 bytes/s); 0 and *status set if out of memory. */
static double ak_peak_dram(ak_sum_loop sum, int nt, float *sink, ak_status *status) {
    void *mem = NULL;
    if (posix_memalign(&mem, (size_t)2 << 20, ak_peak_dram_bytes) != 0 || mem == NULL) {
        *status = AK_ERR_OUT_OF_MEMORY;
        return 0.0;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(mem, ak_peak_dram_bytes, MADV_HUGEPAGE);   /* fewer TLB misses; advisory only */
#endif
    float *x = (float *)mem;
    size_t n = ak_peak_dram_bytes / sizeof(float);
    ak_peak_fill(x, n, nt);
    ak_peak_time_sum(sum, x, n, nt, sink);   /* warm-up pass */
    double rate[16];
    for (int r = 0; r < ak_peak_dram_reps; r++) {
        double t = ak_peak_time_sum(sum, x, n, nt, sink);
        rate[r] = (double)ak_peak_dram_bytes / (t > 1e-12 ? t : 1e-12) * 1e-9;
    }
    free(mem);
    return ak_peak_median(rate, ak_peak_dram_reps);
}

/* The best FMA and streaming-sum loops built into this library at or below `isa`. */
static ak_isa ak_peak_pick_loops(ak_isa isa, ak_flop_loop *fma, ak_sum_loop *sum) {
    *fma = ak_peak_fma_scalar;
    *sum = ak_peak_sum_scalar;
#if defined(AK_HAVE_AVX512_KERNELS)
    if (isa >= AK_ISA_AVX512) {
        *fma = ak_peak_fma_avx512;
        *sum = ak_peak_sum_avx512;
        return AK_ISA_AVX512;
    }
#endif
#if defined(AK_HAVE_AVX2_KERNELS)
    if (isa >= AK_ISA_AVX2) {
        *fma = ak_peak_fma_avx2;
        *sum = ak_peak_sum_avx2;
        return AK_ISA_AVX2;
    }
#endif
    (void)isa;
    return AK_ISA_SCALAR;
}

ak_status ak_measure_peak(ak_ctx *ctx, ak_peak *out) {
    if (out != NULL) memset(out, 0, sizeof(*out));
    if (ctx == NULL) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_measure_peak: ctx is NULL");
    if (out == NULL) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_measure_peak: out is NULL");
    int nt = ak_ctx_get_num_threads(ctx);
    if (nt < 1) nt = 1;
    ak_isa isa = ak_ctx_get_isa(ctx);
    ak_flop_loop fma;
    ak_sum_loop sum;
    ak_isa used_isa = ak_peak_pick_loops(isa, &fma, &sum);

    float sink = 0.0f;
    int n_used = 1;
    out->fma_f32_gflops = ak_peak_flop_rate(fma, nt, &n_used, &sink);
    out->n_threads = n_used;
    out->isa = used_isa;
#if defined(AK_HAVE_AVX512BF16_KERNELS)
    if (isa >= AK_ISA_AVX512BF16) {
        int n_bf16 = 1;
        out->dot_bf16_gflops = ak_peak_flop_rate(ak_peak_dot_avx512bf16, nt, &n_bf16, &sink);
        out->isa = AK_ISA_AVX512BF16;
    }
#endif
    ak_status st = AK_OK;
    out->dram_read_gbs = ak_peak_dram(sum, nt, &sink, &st);
    if (st != AK_OK)
        return ak__fail(ctx, st, "ak_measure_peak: cannot allocate the %zu MiB bandwidth buffer",
                        ak_peak_dram_bytes >> 20);
    /* sink is a sum of finite accumulators; this test is never true but keeps the work alive. */
    if (isnan(sink)) return ak__fail(ctx, AK_ERR_INTERNAL, "ak_measure_peak: accumulators are NaN");
    ak__clear_error(ctx);
    return AK_OK;
}
