/*
 * loop_probe.c — how fast can the AVX-512 attention micro-kernel loop run on this machine?
 * The qk/pv inner loop of src/kernels/avx512/fwd_avx512.c (12 broadcasts + 2 loads + 24 FMAs per
 * step) with its operands walking a footprint of `span` steps, against a register-only FMA loop, in
 * one process. span 8 keeps everything in a few cache lines; span 128 is the kernel's real footprint
 * (a 32-query strip of Q^T plus 12 K rows, about 23 KiB). Prints the best of 15 runs, GFLOP/s, 1 thread.
 *
 *   cc -O3 -mavx512f -mfma bench/loop_probe.c -o loop_probe && ./loop_probe
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float buf[65536] __attribute__((aligned(64)));

/* 12 rows (stride 144 floats, as a copied K tile) broadcast against a 2-vector Q strip. */
__attribute__((noinline)) static void loop_12x2(long n, long mask, const float *k, const float *q, float *out) {
    __m512 acc[12][2];
    for (int r = 0; r < 12; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long i = 0; i < n; i++) {
        const float *kk = k + (i & mask), *qq = q + (i & mask) * 32;
        __m512 b0 = _mm512_loadu_ps(qq), b1 = _mm512_loadu_ps(qq + 16);
        for (int r = 0; r < 12; r++) {
            __m512 a = _mm512_set1_ps(kk[r * 144]);
            __asm__("" : "+v"(a));
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < 12; r++) {
        _mm512_storeu_ps(out + 32 * r, acc[r][0]);
        _mm512_storeu_ps(out + 32 * r + 16, acc[r][1]);
    }
}

/* The same 24 FMAs per step on registers only: the FMA ceiling. */
__attribute__((noinline)) static void loop_reg(long n, float *out) {
    __m512 acc[12][2], a[12], b0 = _mm512_set1_ps(0.5f), b1 = _mm512_set1_ps(0.25f);
    for (int r = 0; r < 12; r++) {
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        a[r] = _mm512_set1_ps(r * 0.01f);
    }
    for (long i = 0; i < n; i++) {
        for (int r = 0; r < 12; r++) {
            acc[r][0] = _mm512_fmadd_ps(a[r], b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a[r], b1, acc[r][1]);
        }
        __asm__("" : "+v"(b0));
    }
    for (int r = 0; r < 12; r++) {
        _mm512_storeu_ps(out + 32 * r, acc[r][0]);
        _mm512_storeu_ps(out + 32 * r + 16, acc[r][1]);
    }
}

int main(void) {
    static float out[1024];
    const long n = 1000000;
    const long spans[] = {8, 32, 128};
    double best = 1e9;
    for (int t = 0; t < 15; t++) {
        double t0 = now();
        loop_reg(n, out);
        if (now() - t0 < best) best = now() - t0;
    }
    double peak = n * 24.0 * 32 / best * 1e-9;
    printf("register-only FMA loop: %.1f GFLOP/s\n", peak);
    for (int s = 0; s < 3; s++) {
        best = 1e9;
        for (int t = 0; t < 15; t++) {
            double t0 = now();
            loop_12x2(n, spans[s] - 1, buf, buf + 8192, out);
            if (now() - t0 < best) best = now() - t0;
        }
        double g = n * 24.0 * 32 / best * 1e-9;
        printf("12x2 kernel loop, span %3ld: %.1f GFLOP/s (%.0f%% of the register loop)\n", spans[s], g, 100 * g / peak);
    }
    return 0;
}
