/*
 * peak_avx512bf16.c — AVX512_BF16 loop for ak_measure_peak() (see src/core/peak.h).
 * Compiled with -mavx512bf16; called only when the context's ISA is AVX512BF16.
 * vdpbf16ps zmm: 16 fp32 lanes, each += two bf16 products = 32 pairs = 64 FLOP per instruction.
 */
#include <immintrin.h>

#include "core/peak.h"

/* 12 zmm chains of vdpbf16ps, unrolled 4x: 12 * 4 * 64 = 3072 FLOP per iteration. */
double ak_peak_dot_avx512bf16(int64_t iters, float *sink) {
    volatile float vx = 1.0e-3f;
    __m512 xf = _mm512_set1_ps(vx);
    __m512bh x = _mm512_cvtne2ps_pbh(xf, xf), y = _mm512_cvtne2ps_pbh(xf, xf);
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f), a2 = _mm512_set1_ps(1.2f);
    __m512 a3 = _mm512_set1_ps(1.3f), a4 = _mm512_set1_ps(1.4f), a5 = _mm512_set1_ps(1.5f);
    __m512 a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f), a8 = _mm512_set1_ps(1.8f);
    __m512 a9 = _mm512_set1_ps(1.9f), a10 = _mm512_set1_ps(2.0f), a11 = _mm512_set1_ps(2.1f);
    for (int64_t it = 0; it < iters; it++) {
        for (int u = 0; u < 4; u++) {
            a0 = _mm512_dpbf16_ps(a0, x, y);   a1 = _mm512_dpbf16_ps(a1, x, y);
            a2 = _mm512_dpbf16_ps(a2, x, y);   a3 = _mm512_dpbf16_ps(a3, x, y);
            a4 = _mm512_dpbf16_ps(a4, x, y);   a5 = _mm512_dpbf16_ps(a5, x, y);
            a6 = _mm512_dpbf16_ps(a6, x, y);   a7 = _mm512_dpbf16_ps(a7, x, y);
            a8 = _mm512_dpbf16_ps(a8, x, y);   a9 = _mm512_dpbf16_ps(a9, x, y);
            a10 = _mm512_dpbf16_ps(a10, x, y); a11 = _mm512_dpbf16_ps(a11, x, y);
        }
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    *sink = _mm512_reduce_add_ps(s);
    return (double)iters * 4.0 * 12.0 * 64.0;
}
