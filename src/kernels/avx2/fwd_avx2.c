/*
 * AVX2+FMA micro-kernels of the fused forward attention (compiled with -mavx2 -mfma -mf16c).
 * Queries run along the 8 lanes of a ymm register; keys (qk) or value columns (pv) are broadcast.
 * Register tile: 6 broadcast rows x 2 ymm (16 queries) = 12 accumulators.
 */
#include "core/internal.h"

#include <immintrin.h>

#define AK_AI static inline __attribute__((always_inline))

AK_AI void qk_tile(const int MR, int d, const float *k, int64_t ldk, const float *qt, int64_t ldqt, __m256 scale,
                   float *st, int64_t ldst) {
    __m256 acc[6][2];
    const float *kr[6];
    for (int r = 0; r < MR; r++) {
        kr[r] = k + (size_t)r * ldk;
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    }
    for (int c = 0; c < d; c++) {
        __m256 b0 = _mm256_loadu_ps(qt + (size_t)c * ldqt), b1 = _mm256_loadu_ps(qt + (size_t)c * ldqt + 8);
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(kr[r] + c);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_ps(st + (size_t)r * ldst, _mm256_mul_ps(acc[r][0], scale));
        _mm256_storeu_ps(st + (size_t)r * ldst + 8, _mm256_mul_ps(acc[r][1], scale));
    }
}

static void qk_avx2(int nk, int d, int mpad, const float *k, int64_t ldk, const float *qt, int64_t ldqt, float scale,
                    float *st, int64_t ldst) {
    const __m256 sc = _mm256_set1_ps(scale);
    for (int q = 0; q < mpad; q += 16)
        for (int j = 0; j < nk; j += 6) {
            const float *kk = k + (size_t)j * ldk;
            const float *qq = qt + q;
            float *ss = st + (size_t)j * ldst + q;
            switch (nk - j < 6 ? nk - j : 6) {
            case 6: qk_tile(6, d, kk, ldk, qq, ldqt, sc, ss, ldst); break;
            case 5: qk_tile(5, d, kk, ldk, qq, ldqt, sc, ss, ldst); break;
            case 4: qk_tile(4, d, kk, ldk, qq, ldqt, sc, ss, ldst); break;
            case 3: qk_tile(3, d, kk, ldk, qq, ldqt, sc, ss, ldst); break;
            case 2: qk_tile(2, d, kk, ldk, qq, ldqt, sc, ss, ldst); break;
            default: qk_tile(1, d, kk, ldk, qq, ldqt, sc, ss, ldst); break;
            }
        }
}

AK_AI void pv_tile(const int MR, int nk, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                   int64_t ldot) {
    __m256 acc[6][2];
    for (int r = 0; r < MR; r++) {
        acc[r][0] = _mm256_loadu_ps(ot + (size_t)r * ldot);
        acc[r][1] = _mm256_loadu_ps(ot + (size_t)r * ldot + 8);
    }
    for (int j = 0; j < nk; j++) {
        const float *vr = v + (size_t)j * ldv;
        __m256 b0 = _mm256_loadu_ps(pt + (size_t)j * ldpt), b1 = _mm256_loadu_ps(pt + (size_t)j * ldpt + 8);
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(vr + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_ps(ot + (size_t)r * ldot, acc[r][0]);
        _mm256_storeu_ps(ot + (size_t)r * ldot + 8, acc[r][1]);
    }
}

static void pv_avx2(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                    int64_t ldot) {
    for (int q = 0; q < mpad; q += 16)
        for (int c = 0; c < dv; c += 6) {
            const float *vv = v + c;
            const float *pp = pt + q;
            float *oo = ot + (size_t)c * ldot + q;
            switch (dv - c < 6 ? dv - c : 6) {
            case 6: pv_tile(6, nk, vv, ldv, pp, ldpt, oo, ldot); break;
            case 5: pv_tile(5, nk, vv, ldv, pp, ldpt, oo, ldot); break;
            case 4: pv_tile(4, nk, vv, ldv, pp, ldpt, oo, ldot); break;
            case 3: pv_tile(3, nk, vv, ldv, pp, ldpt, oo, ldot); break;
            case 2: pv_tile(2, nk, vv, ldv, pp, ldpt, oo, ldot); break;
            default: pv_tile(1, nk, vv, ldv, pp, ldpt, oo, ldot); break;
            }
        }
}

/* e^x for x <= 0 (and -inf): Cephes polynomial, 2^n through the exponent field; 0 below -87.3. */
AK_AI __m256 exp_neg(__m256 x) {
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-126, 0]: 2^n = (n + 127) << 23 */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(tiny, y);
}

static void softmax_avx2(int nk, int mpad, float *st, int64_t ldst, float *m, float *l, float *alpha) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int q = 0; q < mpad; q += 8) {
        __m256 mold = _mm256_loadu_ps(m + q), mx = mold;
        for (int j = 0; j < nk; j++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(st + (size_t)j * ldst + q));
        __m256 none = _mm256_cmp_ps(mx, ninf, _CMP_EQ_OQ);
        __m256 msub = _mm256_andnot_ps(none, mx);
        __m256 a = _mm256_blendv_ps(exp_neg(_mm256_sub_ps(mold, msub)), _mm256_set1_ps(1.0f), none);
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < nk; j++) {
            float *p = st + (size_t)j * ldst + q;
            __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(p), msub));
            _mm256_storeu_ps(p, e);
            sum = _mm256_add_ps(sum, e);
        }
        _mm256_storeu_ps(alpha + q, a);
        _mm256_storeu_ps(l + q, _mm256_fmadd_ps(_mm256_loadu_ps(l + q), a, sum));
        _mm256_storeu_ps(m + q, mx);
    }
}

static void rescale_avx2(int dv, int mpad, float *ot, int64_t ldot, const float *alpha) {
    for (int q = 0; q < mpad; q += 8) {
        __m256 a = _mm256_loadu_ps(alpha + q);
        if (_mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(1.0f), _CMP_NEQ_UQ)) == 0) continue; /* x * 1 == x */
        for (int c = 0; c < dv; c++) {
            float *p = ot + (size_t)c * ldot + q;
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), a));
        }
    }
}

static void mask_avx2(int nk, int mpad, float *st, int64_t ldst, const int32_t *lo, const int32_t *hi) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int q = 0; q < mpad; q += 8) {
        __m256i l = _mm256_loadu_si256((const __m256i *)(lo + q)), h = _mm256_loadu_si256((const __m256i *)(hi + q));
        for (int j = 0; j < nk; j++) {
            __m256i jj = _mm256_set1_epi32(j);
            __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(l, jj), _mm256_cmpgt_epi32(jj, h));
            float *p = st + (size_t)j * ldst + q;
            _mm256_storeu_ps(p, _mm256_blendv_ps(_mm256_loadu_ps(p), ninf, _mm256_castsi256_ps(out)));
        }
    }
}

/* tanh as in Cephes tanhf: odd polynomial below 0.625, else (1 - e^-2|x|) / (1 + e^-2|x|). */
AK_AI __m256 tanh_ps(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745E-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954E-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531E-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036E-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422E-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    __m256 e = exp_neg(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), e), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    big = _mm256_or_ps(big, _mm256_and_ps(x, sign));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

static void softcap_avx2(int nk, int mpad, float *st, int64_t ldst, float cap) {
    __m256 c = _mm256_set1_ps(cap), inv = _mm256_set1_ps(1.0f / cap);
    for (int j = 0; j < nk; j++)
        for (int q = 0; q < mpad; q += 8) {
            float *p = st + (size_t)j * ldst + q;
            _mm256_storeu_ps(p, _mm256_mul_ps(c, tanh_ps(_mm256_mul_ps(_mm256_loadu_ps(p), inv))));
        }
}

static void to_f32_avx2(ak_dtype t, const void *src, float *dst, int64_t n) {
    int64_t i = 0;
    if (t == AK_BF16) {
        const uint16_t *s = (const uint16_t *)src;
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
    } else if (t == AK_F16) {
        const uint16_t *s = (const uint16_t *)src;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    } else if (t == AK_F32) {
        const float *s = (const float *)src;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(s + i));
    }
    for (; i < n; i++) dst[i] = ak__load(src, t, i);
}

const ak_fwd_kernels ak_fwd_kernels_avx2 = {
    "ak_k_fwd_f32_6x16__avx2", AK_ISA_AVX2, qk_avx2, pv_avx2, softmax_avx2, rescale_avx2, mask_avx2, softcap_avx2, to_f32_avx2,
    ak__rows_f32_c, ak__kt_pack_c,
};
