/*
 * peak_avx512.c — AVX-512F loops for ak_measure_peak() (see src/core/peak.h).
 * Compiled with -mavx512f/bw/vl/dq -mfma; called only when the context's ISA is at least AVX512.
 */
#include <immintrin.h>

#include "core/peak.h"

/* 12 zmm chains of vfmadd231ps, unrolled 4x: 12 * 4 * 16 lanes * 2 = 1536 FLOP per iteration. */
double ak_peak_fma_avx512(int64_t iters, float *sink) {
    volatile float vx = 1.0e-4f;
    __m512 x = _mm512_set1_ps(vx), y = _mm512_set1_ps(vx);
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f), a2 = _mm512_set1_ps(1.2f);
    __m512 a3 = _mm512_set1_ps(1.3f), a4 = _mm512_set1_ps(1.4f), a5 = _mm512_set1_ps(1.5f);
    __m512 a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f), a8 = _mm512_set1_ps(1.8f);
    __m512 a9 = _mm512_set1_ps(1.9f), a10 = _mm512_set1_ps(2.0f), a11 = _mm512_set1_ps(2.1f);
    for (int64_t it = 0; it < iters; it++) {
        for (int u = 0; u < 4; u++) {
            a0 = _mm512_fmadd_ps(x, y, a0);   a1 = _mm512_fmadd_ps(x, y, a1);
            a2 = _mm512_fmadd_ps(x, y, a2);   a3 = _mm512_fmadd_ps(x, y, a3);
            a4 = _mm512_fmadd_ps(x, y, a4);   a5 = _mm512_fmadd_ps(x, y, a5);
            a6 = _mm512_fmadd_ps(x, y, a6);   a7 = _mm512_fmadd_ps(x, y, a7);
            a8 = _mm512_fmadd_ps(x, y, a8);   a9 = _mm512_fmadd_ps(x, y, a9);
            a10 = _mm512_fmadd_ps(x, y, a10); a11 = _mm512_fmadd_ps(x, y, a11);
        }
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    *sink = _mm512_reduce_add_ps(s);
    return (double)iters * 4.0 * 12.0 * 16.0 * 2.0;
}

/* Streaming sum, 8 zmm accumulators (128 floats = 8 cache lines per step). */
float ak_peak_sum_avx512(const float *x, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(x + i + 48));
        s4 = _mm512_add_ps(s4, _mm512_load_ps(x + i + 64));
        s5 = _mm512_add_ps(s5, _mm512_load_ps(x + i + 80));
        s6 = _mm512_add_ps(s6, _mm512_load_ps(x + i + 96));
        s7 = _mm512_add_ps(s7, _mm512_load_ps(x + i + 112));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                             _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7)));
    float t = _mm512_reduce_add_ps(s);
    for (; i < n; i++) t += x[i];
    return t;
}
