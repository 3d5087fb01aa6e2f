/*
 * AVX-512F micro-kernels of the fused forward attention (compiled with -mavx512f -mavx512bw ...).
 * Queries run along the 16 lanes of a zmm register; keys (qk) or value columns (pv) are broadcast.
 * Register tile: 12 broadcast rows x 2 zmm (32 queries) = 24 accumulators.
 */
#include "core/internal.h"

#include <immintrin.h>

#define AK_AI static inline __attribute__((always_inline))

/* Broadcast into a register, used by NV FMAs. Without the empty asm the compiler folds the broadcast
 * into every FMA ({1to16} memory operand): NV loads per broadcast, and the load ports become the limit. */
AK_AI __m512 bcast(const float *p) {
    __m512 a = _mm512_set1_ps(*p);
    __asm__("" : "+v"(a));
    return a;
}

/* st[j][q] = sum_c k[j][c] * qt[c][q] for j < MR, q < 16*NV.  12 keys x 2 zmm: the 32-query strip of
 * qt (d x 128 bytes) stays in L1 while the key rows stream through. */
AK_AI void qk_tile(const int MR, const int NV, int d, const float *k, int64_t ldk, const float *qt, int64_t ldqt,
                   __m512 scale, float *st, int64_t ldst) {
    __m512 acc[12][2];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int c = 0; c < d; c++) {
        __m512 b[2];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(qt + (size_t)c * ldqt + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512 a = bcast(k + (size_t)r * ldk + c);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(st + (size_t)r * ldst + 16 * v, _mm512_mul_ps(acc[r][v], scale));
}

static void qk_avx512(int nk, int d, int mpad, const float *k, int64_t ldk, const float *qt, int64_t ldqt, float scale,
                      float *st, int64_t ldst) {
    const __m512 sc = _mm512_set1_ps(scale);
    for (int q = 0; q < mpad; q += 32) {
        const float *qq = qt + q;
        if (mpad - q >= 32) {
            int j = 0;
            for (; j + 12 <= nk; j += 12) qk_tile(12, 2, d, k + (size_t)j * ldk, ldk, qq, ldqt, sc, st + (size_t)j * ldst + q, ldst);
            for (; j + 4 <= nk; j += 4) qk_tile(4, 2, d, k + (size_t)j * ldk, ldk, qq, ldqt, sc, st + (size_t)j * ldst + q, ldst);
            for (; j < nk; j++) qk_tile(1, 2, d, k + (size_t)j * ldk, ldk, qq, ldqt, sc, st + (size_t)j * ldst + q, ldst);
        } else {
            int j = 0;
            for (; j + 12 <= nk; j += 12) qk_tile(12, 1, d, k + (size_t)j * ldk, ldk, qq, ldqt, sc, st + (size_t)j * ldst + q, ldst);
            for (; j + 4 <= nk; j += 4) qk_tile(4, 1, d, k + (size_t)j * ldk, ldk, qq, ldqt, sc, st + (size_t)j * ldst + q, ldst);
            for (; j < nk; j++) qk_tile(1, 1, d, k + (size_t)j * ldk, ldk, qq, ldqt, sc, st + (size_t)j * ldst + q, ldst);
        }
    }
}

/* ot[c][q] += sum_j v[j][c] * pt[j][q] for c < MR, q < 16*NV.  12 value columns x 2 zmm. */
AK_AI void pv_tile(const int MR, const int NV, int nk, const float *v, int64_t ldv, const float *pt, int64_t ldpt,
                   float *ot, int64_t ldot) {
    __m512 acc[12][2];
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = _mm512_loadu_ps(ot + (size_t)r * ldot + 16 * u);
    for (int j = 0; j < nk; j++) {
        __m512 b[2];
        const float *vr = v + (size_t)j * ldv;
        for (int u = 0; u < NV; u++) b[u] = _mm512_loadu_ps(pt + (size_t)j * ldpt + 16 * u);
        for (int r = 0; r < MR; r++) {
            __m512 a = bcast(vr + r);
            for (int u = 0; u < NV; u++) acc[r][u] = _mm512_fmadd_ps(a, b[u], acc[r][u]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(ot + (size_t)r * ldot + 16 * u, acc[r][u]);
}

static void pv_avx512(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                      int64_t ldot) {
    for (int q = 0; q < mpad; q += 32) {
        const float *pp = pt + q;
        if (mpad - q >= 32) {
            int c = 0;
            for (; c + 12 <= dv; c += 12) pv_tile(12, 2, nk, v + c, ldv, pp, ldpt, ot + (size_t)c * ldot + q, ldot);
            for (; c + 4 <= dv; c += 4) pv_tile(4, 2, nk, v + c, ldv, pp, ldpt, ot + (size_t)c * ldot + q, ldot);
            for (; c < dv; c++) pv_tile(1, 2, nk, v + c, ldv, pp, ldpt, ot + (size_t)c * ldot + q, ldot);
        } else {
            int c = 0;
            for (; c + 12 <= dv; c += 12) pv_tile(12, 1, nk, v + c, ldv, pp, ldpt, ot + (size_t)c * ldot + q, ldot);
            for (; c + 4 <= dv; c += 4) pv_tile(4, 1, nk, v + c, ldv, pp, ldpt, ot + (size_t)c * ldot + q, ldot);
            for (; c < dv; c++) pv_tile(1, 1, nk, v + c, ldv, pp, ldpt, ot + (size_t)c * ldot + q, ldot);
        }
    }
}

/* e^x for x <= 0 (and -inf): Cephes polynomial on [-ln2/2, ln2/2], 2^n by scalef; 0 below -87.3. */
AK_AI __m512 exp_neg(__m512 x) {
    __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.33654f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    y = _mm512_scalef_ps(y, n);
    return _mm512_maskz_mov_ps((__mmask16)~tiny, y);
}

static void softmax_avx512(int nk, int mpad, float *st, int64_t ldst, float *m, float *l, float *alpha) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int q = 0; q < mpad; q += 16) {
        __m512 mold = _mm512_loadu_ps(m + q), mx = mold;
        for (int j = 0; j < nk; j++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(st + (size_t)j * ldst + q));
        /* columns with nothing visible yet: subtract 0 instead of -inf, so e^(-inf - 0) = 0 */
        __mmask16 none = _mm512_cmp_ps_mask(mx, ninf, _CMP_EQ_OQ);
        __m512 msub = _mm512_mask_mov_ps(mx, none, _mm512_setzero_ps());
        __m512 a = _mm512_mask_mov_ps(exp_neg(_mm512_sub_ps(mold, msub)), none, _mm512_set1_ps(1.0f));
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < nk; j++) {
            float *p = st + (size_t)j * ldst + q;
            __m512 e = exp_neg(_mm512_sub_ps(_mm512_loadu_ps(p), msub));
            _mm512_storeu_ps(p, e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_storeu_ps(alpha + q, a);
        _mm512_storeu_ps(l + q, _mm512_fmadd_ps(_mm512_loadu_ps(l + q), a, sum));
        _mm512_storeu_ps(m + q, mx);
    }
}

static void rescale_avx512(int dv, int mpad, float *ot, int64_t ldot, const float *alpha) {
    for (int q = 0; q < mpad; q += 16) {
        __m512 a = _mm512_loadu_ps(alpha + q);
        if (_mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ) == 0) continue; /* x * 1 == x */
        for (int c = 0; c < dv; c++) {
            float *p = ot + (size_t)c * ldot + q;
            _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), a));
        }
    }
}

static void mask_avx512(int nk, int mpad, float *st, int64_t ldst, const int32_t *lo, const int32_t *hi) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int q = 0; q < mpad; q += 16) {
        __m512i l = _mm512_loadu_si512(lo + q), h = _mm512_loadu_si512(hi + q);
        for (int j = 0; j < nk; j++) {
            __m512i jj = _mm512_set1_epi32(j);
            __mmask16 out = _mm512_cmp_epi32_mask(jj, l, _MM_CMPINT_LT) | _mm512_cmp_epi32_mask(jj, h, _MM_CMPINT_NLE);
            _mm512_mask_storeu_ps(st + (size_t)j * ldst + q, out, ninf);
        }
    }
}

/* tanh as in Cephes tanhf: odd polynomial below 0.625, else (1 - e^-2|x|) / (1 + e^-2|x|). */
AK_AI __m512 tanh_ps(__m512 x) {
    __m512 ax = _mm512_abs_ps(x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745E-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954E-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531E-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036E-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422E-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    __m512 e = exp_neg(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    __m512 big = _mm512_div_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), e), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big),
                                              _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))));
    __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(big, is_small, small);
}

static void softcap_avx512(int nk, int mpad, float *st, int64_t ldst, float cap) {
    __m512 c = _mm512_set1_ps(cap), inv = _mm512_set1_ps(1.0f / cap);
    for (int j = 0; j < nk; j++)
        for (int q = 0; q < mpad; q += 16) {
            float *p = st + (size_t)j * ldst + q;
            _mm512_storeu_ps(p, _mm512_mul_ps(c, tanh_ps(_mm512_mul_ps(_mm512_loadu_ps(p), inv))));
        }
}

static void to_f32_avx512(ak_dtype t, const void *src, float *dst, int64_t n) {
    int64_t i = 0;
    if (t == AK_BF16) {
        const uint16_t *s = (const uint16_t *)src;
        for (; i + 16 <= n; i += 16) {
            __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
        }
    } else if (t == AK_F16) {
        const uint16_t *s = (const uint16_t *)src;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
    } else if (t == AK_F32) {
        const float *s = (const float *)src;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(s + i));
    }
    for (; i < n; i++) dst[i] = ak__load(src, t, i);
}

const ak_fwd_kernels ak_fwd_kernels_avx512 = {
    "ak_k_fwd_f32_12x32__avx512", AK_ISA_AVX512, qk_avx512, pv_avx512, softmax_avx512, rescale_avx512, mask_avx512, softcap_avx512, to_f32_avx512,
    ak__rows_f32_c, ak__kt_pack_c,
};
