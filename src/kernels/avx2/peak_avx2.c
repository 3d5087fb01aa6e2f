/*
 * peak_avx2.c — AVX2+FMA loops for ak_measure_peak() (see src/core/peak.h).
 * Compiled with -mavx2 -mfma -mf16c; called only when the context's ISA is at least AVX2.
 */
#include <immintrin.h>

#include "core/peak.h"

/* 12 ymm chains of vfmadd231ps, unrolled 4x: 12 * 4 * 8 lanes * 2 = 768 FLOP per iteration. */
double ak_peak_fma_avx2(int64_t iters, float *sink) {
    volatile float vx = 1.0e-4f;
    __m256 x = _mm256_set1_ps(vx), y = _mm256_set1_ps(vx);
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f);
    __m256 a3 = _mm256_set1_ps(1.3f), a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f);
    __m256 a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f), a8 = _mm256_set1_ps(1.8f);
    __m256 a9 = _mm256_set1_ps(1.9f), a10 = _mm256_set1_ps(2.0f), a11 = _mm256_set1_ps(2.1f);
    for (int64_t it = 0; it < iters; it++) {
        for (int u = 0; u < 4; u++) {
            a0 = _mm256_fmadd_ps(x, y, a0);   a1 = _mm256_fmadd_ps(x, y, a1);
            a2 = _mm256_fmadd_ps(x, y, a2);   a3 = _mm256_fmadd_ps(x, y, a3);
            a4 = _mm256_fmadd_ps(x, y, a4);   a5 = _mm256_fmadd_ps(x, y, a5);
            a6 = _mm256_fmadd_ps(x, y, a6);   a7 = _mm256_fmadd_ps(x, y, a7);
            a8 = _mm256_fmadd_ps(x, y, a8);   a9 = _mm256_fmadd_ps(x, y, a9);
            a10 = _mm256_fmadd_ps(x, y, a10); a11 = _mm256_fmadd_ps(x, y, a11);
        }
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    *sink = lanes[0] + lanes[7];
    return (double)iters * 4.0 * 12.0 * 8.0 * 2.0;
}

/* Streaming sum, 8 ymm accumulators (64 floats = 4 cache lines per step). */
float ak_peak_sum_avx2(const float *x, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(x + i + 24));
        s4 = _mm256_add_ps(s4, _mm256_load_ps(x + i + 32));
        s5 = _mm256_add_ps(s5, _mm256_load_ps(x + i + 40));
        s6 = _mm256_add_ps(s6, _mm256_load_ps(x + i + 48));
        s7 = _mm256_add_ps(s7, _mm256_load_ps(x + i + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                             _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    float t = 0.0f;
    for (int u = 0; u < 8; u++) t += lanes[u];
    for (; i < n; i++) t += x[i];
    return t;
}
