/*
 * AVX2+FMA micro-kernels of the fused forward attention (compiled with -mavx2 -mfma -mf16c).
 * Queries run along the 8 lanes of a ymm register; keys (qk) or value columns (pv) are broadcast.
 * Register tile: 6 broadcast rows x 2 ymm (16 queries) = 12 accumulators.
 */
#include "core/internal.h"

#include <immintrin.h>
#include <string.h>

#define AK_AI static inline __attribute__((always_inline))
/* full unrolling of register-tile loops (GCC keeps arrays of accumulators in memory otherwise) */
#define AK_UNROLL _Pragma("GCC unroll 16")
#define AK_DEC_PF 8 /* decode: prefetch distance in keys */

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
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < 2; u++) acc[r][u] = _mm256_loadu_ps(ot + (size_t)r * ldot + 8 * u);
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

/* beta first (a pass over the output block), then pv */
static void pvb_avx2(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                     int64_t ldot, float beta) {
    if (beta != 1.0f) {
        const __m256 bv = _mm256_set1_ps(beta);
        for (int c = 0; c < dv; c++)
            for (int q = 0; q < mpad; q += 8) {
                float *o = ot + (size_t)c * ldot + q;
                _mm256_storeu_ps(o, beta == 0.0f ? _mm256_setzero_ps() : _mm256_mul_ps(bv, _mm256_loadu_ps(o)));
            }
    }
    pv_avx2(nk, dv, mpad, v, ldv, pt, ldpt, ot, ldot);
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

/* Decode tile rows to f32 (see ak_fwd_kernels.rows_f32). */
static void rows_f32_avx2(ak_dtype t, int n, int cols, const void *const *rows, const float *scales, float *dst,
                          int64_t ld) {
    int cpad = (cols + 15) / 16 * 16;
    for (int j = 0; j < n; j++) {
        float *d = dst + (size_t)j * ld;
        if (t == AK_I8) {
            const int8_t *r = (const int8_t *)rows[j];
            float sc = scales[j];
            for (int c = 0; c < cols; c++) d[c] = (float)r[c] * sc;
        } else {
            to_f32_avx2(t, rows[j], d, cols);
        }
        for (int c = cols; c < cpad; c++) d[c] = 0.0f;
    }
}

/* ---- decode products straight from the cache (a few query rows, no tile copies) ----
 * Chunks of 16 elements; for bf16 a chunk is one 32-byte load split into its even elements
 * (dword << 16) and odd elements (dword & 0xffff0000), so q and o hold each chunk as
 * [8 even | 8 odd] ("layout"); other dtypes keep natural order. Partial chunks are copied to a
 * zeroed buffer first (AVX2 has no masked 16-bit loads), so nothing past a row is read. */

AK_AI void load16x(const ak_dtype t, const void *row, int c, int cnt, __m256 *v0, __m256 *v1) {
    size_t es = t == AK_F32 ? 4 : t == AK_I8 ? 1 : 2;
    const char *src = (const char *)row + (size_t)c * es;
    char buf[64] __attribute__((aligned(32)));
    if (cnt < 16) {
        memset(buf, 0, sizeof buf);
        if (cnt > 0) memcpy(buf, src, (size_t)cnt * es);
        src = buf;
    }
    switch (t) {
    case AK_BF16: {
        __m256i w = _mm256_loadu_si256((const __m256i *)src);
        *v0 = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
        *v1 = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xFFFF0000u)));
        break;
    }
    case AK_F16:
        *v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src));
        *v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 16)));
        break;
    case AK_I8:
        *v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)src)));
        *v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(src + 8))));
        break;
    default:
        *v0 = _mm256_loadu_ps((const float *)src);
        *v1 = _mm256_loadu_ps((const float *)src + 8);
        break;
    }
}

/* [sum a, sum b, sum c, sum e] of four 8-lane vectors */
AK_AI __m128 hsum4x(__m256 a, __m256 b, __m256 c, __m256 e) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, e));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

AK_AI void dec_qk_t(const ak_dtype t, const int MR, int nk, int d, const float *q, int64_t ldq, const void *const *krows,
                    const float *kscale, float scale, float *st, int64_t ldst) {
    const int KB = MR <= 3 ? 4 : 2;
    int j = 0;
    const size_t row_bytes = (size_t)d * (t == AK_F32 ? 4 : t == AK_I8 ? 1 : 2);
    for (; j + KB <= nk; j += KB) {
        /* rows a few keys ahead: pages scatter rows where the hardware prefetcher cannot follow */
        for (int k = 0; k < KB && j + AK_DEC_PF + k < nk; k++)
            for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch((const char *)krows[j + AK_DEC_PF + k] + b, 0, 3);
        __m256 a[4][AK_DEC_DIRECT_ROWS], a2[4][AK_DEC_DIRECT_ROWS]; /* a2: second chain for few rows */
        AK_UNROLL
        for (int k = 0; k < KB; k++)
            AK_UNROLL
            for (int m = 0; m < MR; m++) a[k][m] = a2[k][m] = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 16)
            AK_UNROLL
            for (int k = 0; k < KB; k++) {
                __m256 v0, v1;
                load16x(t, krows[j + k], c, d - c, &v0, &v1);
                AK_UNROLL
                for (int m = 0; m < MR; m++) {
                    a[k][m] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)m * ldq + c), v0, a[k][m]);
                    if (MR <= 3) /* two chains per accumulator: FMA latency, not throughput, limits few rows */
                        a2[k][m] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)m * ldq + c + 8), v1, a2[k][m]);
                    else
                        a[k][m] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)m * ldq + c + 8), v1, a[k][m]);
                }
            }
        if (MR <= 3)
            AK_UNROLL
            for (int k = 0; k < KB; k++)
                AK_UNROLL
                for (int m = 0; m < MR; m++) a[k][m] = _mm256_add_ps(a[k][m], a2[k][m]);
        float sc[4] = {0, 0, 0, 0};
        AK_UNROLL
        for (int k = 0; k < KB; k++) sc[k] = t == AK_I8 ? scale * kscale[j + k] : scale;
        AK_UNROLL
        for (int m = 0; m < MR; m++) {
            float out[4];
            __m256 z = _mm256_setzero_ps();
            __m128 r = KB == 4 ? hsum4x(a[0][m], a[1][m], a[2][m], a[3][m]) : hsum4x(a[0][m], a[1][m], z, z);
            _mm_storeu_ps(out, _mm_mul_ps(r, _mm_loadu_ps(sc)));
            AK_UNROLL
            for (int k = 0; k < KB; k++) st[(size_t)m * ldst + j + k] = out[k];
        }
    }
    for (; j < nk; j++) {
        __m256 a0[AK_DEC_DIRECT_ROWS];
        AK_UNROLL
        for (int m = 0; m < MR; m++) a0[m] = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 16) {
            __m256 v0, v1;
            load16x(t, krows[j], c, d - c, &v0, &v1);
            AK_UNROLL
            for (int m = 0; m < MR; m++) {
                a0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)m * ldq + c), v0, a0[m]);
                a0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)m * ldq + c + 8), v1, a0[m]);
            }
        }
        float sc1 = t == AK_I8 ? scale * kscale[j] : scale;
        AK_UNROLL
        for (int m = 0; m < MR; m++) {
            float out[4];
            __m256 z = _mm256_setzero_ps();
            _mm_storeu_ps(out, hsum4x(a0[m], z, z, z));
            st[(size_t)m * ldst + j] = sc1 * out[0];
        }
    }
}

AK_AI void dec_pv_block(const ak_dtype t, const int MR, const int NB, int nk, int dv, int c0, const float *pt,
                        int64_t ldpt, const void *const *vrows, float *o, int64_t ldo) {
    __m256 acc[AK_DEC_DIRECT_ROWS][6];
    AK_UNROLL
    for (int m = 0; m < MR; m++)
        AK_UNROLL
        for (int u = 0; u < 2 * NB; u++) acc[m][u] = _mm256_loadu_ps(o + (size_t)m * ldo + c0 + 8 * u);
    const size_t row_bytes = (size_t)dv * (t == AK_F32 ? 4 : t == AK_I8 ? 1 : 2);
    for (int j = 0; j < nk; j++) {
        if (c0 == 0 && j + AK_DEC_PF < nk)
            for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch((const char *)vrows[j + AK_DEC_PF] + b, 0, 3);
        __m256 vv[6];
        AK_UNROLL
        for (int b = 0; b < NB; b++) load16x(t, vrows[j], c0 + 16 * b, dv - c0 - 16 * b, &vv[2 * b], &vv[2 * b + 1]);
        AK_UNROLL
        for (int m = 0; m < MR; m++) {
            __m256 pm = _mm256_set1_ps(pt[(size_t)m * ldpt + j]); /* folds into the FMA as a memory broadcast */
            AK_UNROLL
            for (int u = 0; u < 2 * NB; u++) acc[m][u] = _mm256_fmadd_ps(pm, vv[u], acc[m][u]);
        }
    }
    AK_UNROLL
    for (int m = 0; m < MR; m++)
        AK_UNROLL
        for (int u = 0; u < 2 * NB; u++) _mm256_storeu_ps(o + (size_t)m * ldo + c0 + 8 * u, acc[m][u]);
}

AK_AI void dec_pv_t(const ak_dtype t, const int MR, int nk, int dv, const float *pt, int64_t ldpt,
                    const void *const *vrows, float *o, int64_t ldo) {
    const int NB = MR == 1 ? 3 : MR == 2 ? 2 : 1;
    const int chunks = (dv + 15) / 16;
    int ch = 0;
    for (; ch + NB <= chunks; ch += NB) dec_pv_block(t, MR, NB, nk, dv, 16 * ch, pt, ldpt, vrows, o, ldo);
    for (; ch < chunks; ch++) dec_pv_block(t, MR, 1, nk, dv, 16 * ch, pt, ldpt, vrows, o, ldo);
}

#define AK_DEC_ROWS_SWITCH(CALL, T)                                                                                     \
    switch (M) {                                                                                                       \
    case 1: CALL(T, 1); break;                                                                                         \
    case 2: CALL(T, 2); break;                                                                                         \
    case 3: CALL(T, 3); break;                                                                                         \
    case 4: CALL(T, 4); break;                                                                                         \
    case 5: CALL(T, 5); break;                                                                                         \
    case 6: CALL(T, 6); break;                                                                                         \
    default: CALL(T, 7); break;                                                                                        \
    }
#define AK_DEC_TYPE_SWITCH(CALL)                                                                                        \
    switch (t) {                                                                                                       \
    case AK_BF16: AK_DEC_ROWS_SWITCH(CALL, AK_BF16) break;                                                             \
    case AK_F16: AK_DEC_ROWS_SWITCH(CALL, AK_F16) break;                                                               \
    case AK_I8: AK_DEC_ROWS_SWITCH(CALL, AK_I8) break;                                                                 \
    default: AK_DEC_ROWS_SWITCH(CALL, AK_F32) break;                                                                   \
    }

static void dec_qk_avx2(ak_dtype t, int M, int nk, int d, const float *q, int64_t ldq, const void *const *krows,
                        const float *kscale, float scale, float *st, int64_t ldst) {
#define AK_QK_CALL(T, R) dec_qk_t(T, R, nk, d, q, ldq, krows, kscale, scale, st, ldst)
    AK_DEC_TYPE_SWITCH(AK_QK_CALL)
#undef AK_QK_CALL
}

static void dec_pv_avx2(ak_dtype t, int M, int nk, int dv, const float *pt, int64_t ldpt, const void *const *vrows,
                        float *o, int64_t ldo) {
#define AK_PV_CALL(T, R) dec_pv_t(T, R, nk, dv, pt, ldpt, vrows, o, ldo)
    AK_DEC_TYPE_SWITCH(AK_PV_CALL)
#undef AK_PV_CALL
}

/* bf16: each 16-chunk natural <-> [8 even | 8 odd]; x holds roundup16(n) floats, zero beyond n. */
static void dec_layout_avx2(ak_dtype t, int n, float *x, int dir) {
    if (t != AK_BF16) return;
    for (int c = 0; c < n; c += 16) {
        float tmp[16];
        for (int i = 0; i < 8; i++) {
            if (dir > 0) {
                tmp[i] = x[c + 2 * i];
                tmp[8 + i] = x[c + 2 * i + 1];
            } else {
                tmp[2 * i] = x[c + i];
                tmp[2 * i + 1] = x[c + 8 + i];
            }
        }
        memcpy(x + c, tmp, sizeof tmp);
    }
}

/* Online softmax along each row of s[M][n] (see ak_fwd_kernels.softmax); lanes past n untouched. */
static void softmax_rows_avx2(int M, int n, float *s, int64_t lds, float *m, float *l, float *alpha) {
    for (int r = 0; r < M; r++) {
        float *row = s + (size_t)r * lds;
        float mnew = m[r];
        for (int j = 0; j < n; j++) mnew = row[j] > mnew ? row[j] : mnew;
        if (mnew == -INFINITY) {
            alpha[r] = 1.0f;
            for (int j = 0; j < n; j++) row[j] = 0.0f;
            continue;
        }
        __m256 mv = _mm256_set1_ps(mnew), sum = _mm256_setzero_ps();
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(row + j), mv));
            _mm256_storeu_ps(row + j, e);
            sum = _mm256_add_ps(sum, e);
        }
        if (j < n) {
            float tmp[8];
            for (int i = 0; i < 8; i++) tmp[i] = j + i < n ? row[j + i] : -INFINITY;
            __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(tmp), mv));
            _mm256_storeu_ps(tmp, e);
            for (int i = 0; j + i < n; i++) row[j + i] = tmp[i];
            sum = _mm256_add_ps(sum, e);
        }
        float part[8], a[8];
        _mm256_storeu_ps(part, sum);
        _mm256_storeu_ps(a, exp_neg(_mm256_set1_ps(m[r] - mnew)));
        float tot = 0.0f;
        for (int i = 0; i < 8; i++) tot += part[i];
        alpha[r] = a[0];
        l[r] = l[r] * a[0] + tot;
        m[r] = mnew;
    }
}

const ak_fwd_kernels ak_fwd_kernels_avx2 = {
    "ak_k_fwd_f32_6x16__avx2", AK_ISA_AVX2, qk_avx2, pv_avx2, softmax_avx2, rescale_avx2, mask_avx2, softcap_avx2, to_f32_avx2,
    rows_f32_avx2, ak__kt_pack_c, dec_qk_avx2, dec_pv_avx2, dec_layout_avx2,
    softmax_rows_avx2, ak__tpose_c, pvb_avx2,
};
