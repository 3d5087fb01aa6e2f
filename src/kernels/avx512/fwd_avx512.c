/*
 * AVX-512F micro-kernels of the fused forward attention (compiled with -mavx512f -mavx512bw ...).
 * Queries run along the 16 lanes of a zmm register; keys (qk) or value columns (pv) are broadcast.
 * Register tile: 6 broadcast rows x 4 zmm (64 queries) = 24 accumulators.
 */
#include "core/internal.h"

#include <immintrin.h>

#define AK_AI static inline __attribute__((always_inline))

/* st[j][q] = sum_c k[j][c] * qt[c][q] for j < MR, q < 16*NV */
AK_AI void qk_tile(const int MR, const int NV, int d, const float *k, int64_t ldk, const float *qt, int64_t ldqt,
                   float *st, int64_t ldst) {
    __m512 acc[6][4];
    const float *kr[6];
    for (int r = 0; r < MR; r++) {
        kr[r] = k + (size_t)r * ldk;
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (int c = 0; c < d; c++) {
        __m512 b[4];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(qt + (size_t)c * ldqt + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(kr[r][c]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(st + (size_t)r * ldst + 16 * v, acc[r][v]);
}

#define QK_CASE(mr, nv) qk_tile(mr, nv, d, k, ldk, qt, ldqt, st, ldst)
static void qk_rows(int mr, int nv, int d, const float *k, int64_t ldk, const float *qt, int64_t ldqt, float *st,
                    int64_t ldst) {
    switch (mr * 8 + nv) {
    case 6 * 8 + 4: QK_CASE(6, 4); break;
    case 6 * 8 + 3: QK_CASE(6, 3); break;
    case 6 * 8 + 2: QK_CASE(6, 2); break;
    case 6 * 8 + 1: QK_CASE(6, 1); break;
    case 5 * 8 + 4: QK_CASE(5, 4); break;
    case 5 * 8 + 3: QK_CASE(5, 3); break;
    case 5 * 8 + 2: QK_CASE(5, 2); break;
    case 5 * 8 + 1: QK_CASE(5, 1); break;
    case 4 * 8 + 4: QK_CASE(4, 4); break;
    case 4 * 8 + 3: QK_CASE(4, 3); break;
    case 4 * 8 + 2: QK_CASE(4, 2); break;
    case 4 * 8 + 1: QK_CASE(4, 1); break;
    case 3 * 8 + 4: QK_CASE(3, 4); break;
    case 3 * 8 + 3: QK_CASE(3, 3); break;
    case 3 * 8 + 2: QK_CASE(3, 2); break;
    case 3 * 8 + 1: QK_CASE(3, 1); break;
    case 2 * 8 + 4: QK_CASE(2, 4); break;
    case 2 * 8 + 3: QK_CASE(2, 3); break;
    case 2 * 8 + 2: QK_CASE(2, 2); break;
    case 2 * 8 + 1: QK_CASE(2, 1); break;
    case 1 * 8 + 4: QK_CASE(1, 4); break;
    case 1 * 8 + 3: QK_CASE(1, 3); break;
    case 1 * 8 + 2: QK_CASE(1, 2); break;
    default: QK_CASE(1, 1); break;
    }
}

static void qk_avx512(int nk, int d, int mpad, const float *k, int64_t ldk, const float *qt, int64_t ldqt, float *st,
                      int64_t ldst) {
    for (int q = 0; q < mpad; q += 64) {
        int nv = (mpad - q) >= 64 ? 4 : (mpad - q) / 16;
        for (int j = 0; j < nk; j += 6) {
            int mr = nk - j < 6 ? nk - j : 6;
            qk_rows(mr, nv, d, k + (size_t)j * ldk, ldk, qt + q, ldqt, st + (size_t)j * ldst + q, ldst);
        }
    }
}

/* ot[c][q] += sum_j v[j][c] * pt[j][q] for c < MR, q < 16*NV */
AK_AI void pv_tile(const int MR, const int NV, int nk, const float *v, int64_t ldv, const float *pt, int64_t ldpt,
                   float *ot, int64_t ldot) {
    __m512 acc[6][4];
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = _mm512_loadu_ps(ot + (size_t)r * ldot + 16 * u);
    for (int j = 0; j < nk; j++) {
        __m512 b[4];
        const float *vr = v + (size_t)j * ldv;
        for (int u = 0; u < NV; u++) b[u] = _mm512_loadu_ps(pt + (size_t)j * ldpt + 16 * u);
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(vr[r]);
            for (int u = 0; u < NV; u++) acc[r][u] = _mm512_fmadd_ps(a, b[u], acc[r][u]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(ot + (size_t)r * ldot + 16 * u, acc[r][u]);
}

#define PV_CASE(mr, nv) pv_tile(mr, nv, nk, v, ldv, pt, ldpt, ot, ldot)
static void pv_rows(int mr, int nv, int nk, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                    int64_t ldot) {
    switch (mr * 8 + nv) {
    case 6 * 8 + 4: PV_CASE(6, 4); break;
    case 6 * 8 + 3: PV_CASE(6, 3); break;
    case 6 * 8 + 2: PV_CASE(6, 2); break;
    case 6 * 8 + 1: PV_CASE(6, 1); break;
    case 5 * 8 + 4: PV_CASE(5, 4); break;
    case 5 * 8 + 3: PV_CASE(5, 3); break;
    case 5 * 8 + 2: PV_CASE(5, 2); break;
    case 5 * 8 + 1: PV_CASE(5, 1); break;
    case 4 * 8 + 4: PV_CASE(4, 4); break;
    case 4 * 8 + 3: PV_CASE(4, 3); break;
    case 4 * 8 + 2: PV_CASE(4, 2); break;
    case 4 * 8 + 1: PV_CASE(4, 1); break;
    case 3 * 8 + 4: PV_CASE(3, 4); break;
    case 3 * 8 + 3: PV_CASE(3, 3); break;
    case 3 * 8 + 2: PV_CASE(3, 2); break;
    case 3 * 8 + 1: PV_CASE(3, 1); break;
    case 2 * 8 + 4: PV_CASE(2, 4); break;
    case 2 * 8 + 3: PV_CASE(2, 3); break;
    case 2 * 8 + 2: PV_CASE(2, 2); break;
    case 2 * 8 + 1: PV_CASE(2, 1); break;
    case 1 * 8 + 4: PV_CASE(1, 4); break;
    case 1 * 8 + 3: PV_CASE(1, 3); break;
    case 1 * 8 + 2: PV_CASE(1, 2); break;
    default: PV_CASE(1, 1); break;
    }
}

static void pv_avx512(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                      int64_t ldot) {
    for (int q = 0; q < mpad; q += 64) {
        int nv = (mpad - q) >= 64 ? 4 : (mpad - q) / 16;
        for (int c = 0; c < dv; c += 6) {
            int mr = dv - c < 6 ? dv - c : 6;
            pv_rows(mr, nv, nk, v + c, ldv, pt + q, ldpt, ot + (size_t)c * ldot + q, ldot);
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
        for (int c = 0; c < dv; c++) {
            float *p = ot + (size_t)c * ldot + q;
            _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), a));
        }
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
    "ak_k_fwd_f32_6x64__avx512", AK_ISA_AVX512, qk_avx512, pv_avx512, softmax_avx512, rescale_avx512, to_f32_avx512,
};
