/*
 * AVX-512F micro-kernels of the fused forward attention (compiled with -mavx512f -mavx512bw ...).
 * Queries run along the 16 lanes of a zmm register; keys (qk) or value columns (pv) are broadcast.
 * Register tile: 12 broadcast rows x 2 zmm (32 queries) = 24 accumulators.
 */
#include "core/internal.h"

#include <immintrin.h>

#define AK_AI static inline __attribute__((always_inline))
/* full unrolling of register-tile loops (GCC keeps arrays of accumulators in memory otherwise) */
#define AK_UNROLL _Pragma("GCC unroll 16")
#ifndef AK_DEC_PF
#define AK_DEC_PF 8 /* decode: prefetch distance in keys */
#endif

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

/* beta first (a pass over the output block: the tile loops stay those of pv, no extra live register),
 * then pv */
static void pvb_avx512(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                       int64_t ldot, float beta) {
    if (beta != 1.0f) {
        const __m512 bv = _mm512_set1_ps(beta);
        for (int c = 0; c < dv; c++)
            for (int q = 0; q < mpad; q += 16) {
                float *o = ot + (size_t)c * ldot + q;
                _mm512_storeu_ps(o, beta == 0.0f ? _mm512_setzero_ps() : _mm512_mul_ps(bv, _mm512_loadu_ps(o)));
            }
    }
    pv_avx512(nk, dv, mpad, v, ldv, pt, ldpt, ot, ldot);
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

/* ---- decode tile loads from a KV cache ---- */

/* Elements [c, c+cnt) (cnt <= 16) of a cache row as f32; masked lanes are 0, nothing read past cnt. */
AK_AI __m512 load16(ak_dtype t, const void *row, int c, int cnt, __m512 scale) {
    __mmask16 k = (__mmask16)(cnt >= 16 ? 0xFFFF : (1u << cnt) - 1u);
    switch (t) {
    case AK_BF16:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, (const uint16_t *)row + c)), 16));
    case AK_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)row + c));
    case AK_I8:
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, (const int8_t *)row + c))), scale);
    default: return _mm512_maskz_loadu_ps(k, (const float *)row + c);
    }
}

AK_AI void rows_f32_t(const ak_dtype t, int n, int cols, const void *const *rows, const float *scales, float *dst,
                      int64_t ld) {
    for (int j = 0; j < n; j++) {
        __m512 sc = _mm512_set1_ps(t == AK_I8 ? scales[j] : 1.0f);
        float *d = dst + (size_t)j * ld;
        int c = 0;
        for (; c + 16 <= cols; c += 16) _mm512_storeu_ps(d + c, load16(t, rows[j], c, 16, sc));
        if (c < cols) _mm512_storeu_ps(d + c, load16(t, rows[j], c, cols - c, sc));
    }
}

static void rows_f32_avx512(ak_dtype t, int n, int cols, const void *const *rows, const float *scales, float *dst,
                            int64_t ld) {
    switch (t) {
    case AK_BF16: rows_f32_t(AK_BF16, n, cols, rows, scales, dst, ld); break;
    case AK_F16: rows_f32_t(AK_F16, n, cols, rows, scales, dst, ld); break;
    case AK_I8: rows_f32_t(AK_I8, n, cols, rows, scales, dst, ld); break;
    default: rows_f32_t(AK_F32, n, cols, rows, scales, dst, ld); break;
    }
}

/* ---- decode products straight from the cache (a few query rows, no tile copies) ----
 * Elements come in chunks of 32. For bf16 a chunk is one 64-byte load split into its even elements
 * (dword << 16) and odd elements (dword & 0xffff0000): two port-0 ops instead of a port-5 widening,
 * so q and o hold each 32-chunk as [16 even | 16 odd] ("layout"); other dtypes keep natural order. */

AK_AI void load32(const ak_dtype t, const void *row, int c, int cnt, __m512 *v0, __m512 *v1) {
    __mmask16 k0 = (__mmask16)(cnt >= 16 ? 0xFFFF : cnt <= 0 ? 0 : (1u << cnt) - 1u);
    __mmask16 k1 = (__mmask16)(cnt >= 32 ? 0xFFFF : cnt <= 16 ? 0 : (1u << (cnt - 16)) - 1u);
    switch (t) {
    case AK_BF16: {
        __mmask32 k = cnt >= 32 ? 0xFFFFFFFFu : cnt <= 0 ? 0u : (1u << cnt) - 1u;
        __m512i w = cnt >= 32 ? _mm512_loadu_si512((const uint16_t *)row + c) /* full chunk: a plain load */
                              : _mm512_maskz_loadu_epi16(k, (const uint16_t *)row + c);
        *v0 = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
        *v1 = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xFFFF0000u)));
        break;
    }
    case AK_F16:
        *v0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k0, (const uint16_t *)row + c));
        *v1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k1, (const uint16_t *)row + c + 16));
        break;
    case AK_I8:
        *v0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k0, (const int8_t *)row + c)));
        *v1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k1, (const int8_t *)row + c + 16)));
        break;
    default:
        *v0 = _mm512_maskz_loadu_ps(k0, (const float *)row + c);
        *v1 = _mm512_maskz_loadu_ps(k1, (const float *)row + c + 16);
        break;
    }
}

/* Sums of the 16 lanes of a, b, c, e as one xmm [sum a, sum b, sum c, sum e]: 8 shuffles, 5 adds. */
AK_AI __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 e) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); /* per 128-bit lane: a b a b */
    __m512 ce = _mm512_add_ps(_mm512_unpacklo_ps(c, e), _mm512_unpackhi_ps(c, e));
    __m512 x = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(ce))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(ce))));
    x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0x4E)); /* + the other 256-bit half */
    x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1)); /* + the neighbouring 128-bit lane */
    return _mm512_castps512_ps128(x);
}

/* Four keys at a time: 4 x MR independent accumulators (<= 28 zmm), each row's four sums reduced
 * together by one shuffle tree. */
AK_AI void dec_qk_t(const ak_dtype t, const int MR, int nk, int d, const float *q, int64_t ldq, const void *const *krows,
                    const float *kscale, float scale, float *st, int64_t ldst) {
    const int KB = 4;
    int j = 0;
    const size_t row_bytes = (size_t)d * (t == AK_F32 ? 4 : t == AK_I8 ? 1 : 2);
    for (; j + KB <= nk; j += KB) {
        /* rows a few keys ahead: pages scatter rows where the hardware prefetcher cannot follow */
        for (int k = 0; k < KB && j + AK_DEC_PF + k < nk; k++)
            for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch((const char *)krows[j + AK_DEC_PF + k] + b, 0, 3);
        __m512 a[4][AK_DEC_DIRECT_ROWS], a2[4][AK_DEC_DIRECT_ROWS]; /* a2: second chain for few rows */
        AK_UNROLL
        for (int k = 0; k < KB; k++)
            AK_UNROLL
            for (int m = 0; m < MR; m++) a[k][m] = a2[k][m] = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 32) {
            AK_UNROLL
            for (int k = 0; k < KB; k++) {
                __m512 v0, v1;
                load32(t, krows[j + k], c, d - c, &v0, &v1);
                AK_UNROLL
                for (int m = 0; m < MR; m++) {
                    a[k][m] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)m * ldq + c), v0, a[k][m]);
                    if (MR <= 3) /* two chains per accumulator: FMA latency, not throughput, limits few rows */
                        a2[k][m] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)m * ldq + c + 16), v1, a2[k][m]);
                    else
                        a[k][m] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)m * ldq + c + 16), v1, a[k][m]);
                }
            }
        }
        if (MR <= 3)
            AK_UNROLL
            for (int k = 0; k < KB; k++)
                AK_UNROLL
                for (int m = 0; m < MR; m++) a[k][m] = _mm512_add_ps(a[k][m], a2[k][m]);
        float sc[4] = {0, 0, 0, 0};
        AK_UNROLL
        for (int k = 0; k < KB; k++) sc[k] = t == AK_I8 ? scale * kscale[j + k] : scale;
        AK_UNROLL
        for (int m = 0; m < MR; m++) {
            if (KB == 4) {
                __m128 r = hsum4(a[0][m], a[1][m], a[2][m], a[3][m]);
                _mm_storeu_ps(st + (size_t)m * ldst + j, _mm_mul_ps(r, _mm_loadu_ps(sc)));
            } else {
                float out[4];
                __m128 r = hsum4(a[0][m], a[1][m], _mm512_setzero_ps(), _mm512_setzero_ps());
                _mm_storeu_ps(out, _mm_mul_ps(r, _mm_loadu_ps(sc)));
                AK_UNROLL
                for (int k = 0; k < KB; k++) st[(size_t)m * ldst + j + k] = out[k];
            }
        }
    }
    for (; j < nk; j++) {
        __m512 a0[AK_DEC_DIRECT_ROWS];
        AK_UNROLL
        for (int m = 0; m < MR; m++) a0[m] = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 32) {
            __m512 v0, v1;
            load32(t, krows[j], c, d - c, &v0, &v1);
            AK_UNROLL
            for (int m = 0; m < MR; m++) {
                a0[m] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)m * ldq + c), v0, a0[m]);
                a0[m] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)m * ldq + c + 16), v1, a0[m]);
            }
        }
        float sc1 = t == AK_I8 ? scale * kscale[j] : scale;
        AK_UNROLL
        for (int m = 0; m < MR; m++) st[(size_t)m * ldst + j] = sc1 * _mm512_reduce_add_ps(a0[m]);
    }
}

/* o[m][c0 .. c0 + 32*NB) += sum_j p[j][m] v_j (chunks of 32 in layout order) */
AK_AI void dec_pv_block(const ak_dtype t, const int MR, const int NB, int nk, int dv, int c0, const float *pt,
                        int64_t ldpt, const void *const *vrows, float *o, int64_t ldo) {
    __m512 acc[AK_DEC_DIRECT_ROWS][8];
    AK_UNROLL
    for (int m = 0; m < MR; m++)
        AK_UNROLL
        for (int u = 0; u < 2 * NB; u++) acc[m][u] = _mm512_loadu_ps(o + (size_t)m * ldo + c0 + 16 * u);
    const size_t row_bytes = (size_t)dv * (t == AK_F32 ? 4 : t == AK_I8 ? 1 : 2);
    for (int j = 0; j < nk; j++) {
        if (c0 == 0 && j + AK_DEC_PF < nk)
            for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch((const char *)vrows[j + AK_DEC_PF] + b, 0, 3);
        __m512 vv[8];
        AK_UNROLL
        for (int b = 0; b < NB; b++) load32(t, vrows[j], c0 + 32 * b, dv - c0 - 32 * b, &vv[2 * b], &vv[2 * b + 1]);
        AK_UNROLL
        for (int m = 0; m < MR; m++) {
            __m512 pm = _mm512_set1_ps(pt[(size_t)m * ldpt + j]); /* folds into the FMA as a memory broadcast */
            AK_UNROLL
            for (int u = 0; u < 2 * NB; u++) acc[m][u] = _mm512_fmadd_ps(pm, vv[u], acc[m][u]);
        }
    }
    AK_UNROLL
    for (int m = 0; m < MR; m++)
        AK_UNROLL
        for (int u = 0; u < 2 * NB; u++) _mm512_storeu_ps(o + (size_t)m * ldo + c0 + 16 * u, acc[m][u]);
}

/* Column blocks of NB chunks (32 columns each): MR * 2NB accumulators + 2NB values stay in registers;
 * one pass over the value rows when dv <= 32 NB. */
AK_AI void dec_pv_t(const ak_dtype t, const int MR, int nk, int dv, const float *pt, int64_t ldpt,
                    const void *const *vrows, float *o, int64_t ldo) {
    const int NB = MR <= 2 ? 4 : MR == 3 ? 3 : MR <= 6 ? 2 : 1;
    const int chunks = (dv + 31) / 32;
    int ch = 0;
    for (; ch + NB <= chunks; ch += NB) dec_pv_block(t, MR, NB, nk, dv, 32 * ch, pt, ldpt, vrows, o, ldo);
    for (; ch < chunks; ch++) dec_pv_block(t, MR, 1, nk, dv, 32 * ch, pt, ldpt, vrows, o, ldo);
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

static void dec_qk_avx512(ak_dtype t, int M, int nk, int d, const float *q, int64_t ldq, const void *const *krows,
                          const float *kscale, float scale, float *st, int64_t ldst) {
#define AK_QK_CALL(T, R) dec_qk_t(T, R, nk, d, q, ldq, krows, kscale, scale, st, ldst)
    AK_DEC_TYPE_SWITCH(AK_QK_CALL)
#undef AK_QK_CALL
}

static void dec_pv_avx512(ak_dtype t, int M, int nk, int dv, const float *pt, int64_t ldpt, const void *const *vrows,
                          float *o, int64_t ldo) {
#define AK_PV_CALL(T, R) dec_pv_t(T, R, nk, dv, pt, ldpt, vrows, o, ldo)
    AK_DEC_TYPE_SWITCH(AK_PV_CALL)
#undef AK_PV_CALL
}

/* bf16: each 32-chunk natural <-> [16 even | 16 odd]; other dtypes: natural order, nothing to do.
 * x holds at least roundup32(n) floats, zero beyond n. */
static void dec_layout_avx512(ak_dtype t, int n, float *x, int dir) {
    if (t != AK_BF16) return;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int c = 0; c < n; c += 32) {
        __m512 a = _mm512_loadu_ps(x + c), b = _mm512_loadu_ps(x + c + 16);
        __m512 r0 = dir > 0 ? _mm512_permutex2var_ps(a, ev, b) : _mm512_permutex2var_ps(a, lo, b);
        __m512 r1 = dir > 0 ? _mm512_permutex2var_ps(a, od, b) : _mm512_permutex2var_ps(a, hi, b);
        _mm512_storeu_ps(x + c, r0);
        _mm512_storeu_ps(x + c + 16, r1);
    }
}

/* Online softmax along each row of s[M][n] (see ak_fwd_kernels.softmax); lanes past n untouched. */
static void softmax_rows_avx512(int M, int n, float *s, int64_t lds, float *m, float *l, float *alpha) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < M; r++) {
        float *row = s + (size_t)r * lds;
        __m512 mx = ninf;
        for (int j = 0; j < n; j += 16) {
            __mmask16 k = (__mmask16)(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1u);
            mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, k, row + j));
        }
        float mnew = _mm512_reduce_max_ps(mx);
        if (m[r] > mnew) mnew = m[r];
        if (mnew == -INFINITY) { /* nothing visible yet: zeros, never (-inf) - (-inf) */
            alpha[r] = 1.0f;
            for (int j = 0; j < n; j++) row[j] = 0.0f;
            continue;
        }
        __m512 mv = _mm512_set1_ps(mnew), sum = _mm512_setzero_ps();
        for (int j = 0; j < n; j += 16) {
            __mmask16 k = (__mmask16)(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1u);
            __m512 e = exp_neg(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, k, row + j), mv));
            _mm512_mask_storeu_ps(row + j, k, e);
            sum = _mm512_add_ps(sum, e);
        }
        float a = _mm512_cvtss_f32(exp_neg(_mm512_set1_ps(m[r] - mnew)));
        alpha[r] = a;
        l[r] = l[r] * a + _mm512_reduce_add_ps(sum);
        m[r] = mnew;
    }
}

/* In-register 16 x 16 transpose: on exit r[c] = column c of the 16 input rows. */
AK_AI void tr16x16(__m512 r[16]) {
    __m512 t[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) { /* r[4k + m], lane L: column 4L + m of rows 4k .. 4k+3 */
        __m512d a = _mm512_castps_pd(t[4 * k]), b = _mm512_castps_pd(t[4 * k + 2]);
        __m512d c = _mm512_castps_pd(t[4 * k + 1]), d = _mm512_castps_pd(t[4 * k + 3]);
        r[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int k = 0; k < 2; k++)
        for (int m = 0; m < 4; m++) {
            t[8 * k + m] = _mm512_shuffle_f32x4(r[8 * k + m], r[8 * k + 4 + m], 0x88);
            t[8 * k + 4 + m] = _mm512_shuffle_f32x4(r[8 * k + m], r[8 * k + 4 + m], 0xdd);
        }
    for (int m = 0; m < 8; m++) {
        r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xdd);
    }
}

static void tpose_avx512(int n, int m, const float *src, int64_t lds, float *dst, int64_t ldd) {
    const int npad = (n + 15) / 16 * 16;
    for (int i0 = 0; i0 < npad; i0 += 16) {
        const int ni = n - i0 < 16 ? n - i0 : 16;
        for (int c0 = 0; c0 < m; c0 += 16) {
            const int nc = m - c0 < 16 ? m - c0 : 16;
            const __mmask16 cm = (__mmask16)((1u << nc) - 1u);
            __m512 r[16];
            AK_UNROLL
            for (int i = 0; i < 16; i++)
                r[i] = i < ni ? _mm512_maskz_loadu_ps(cm, src + (size_t)(i0 + i) * lds + c0) : _mm512_setzero_ps();
            tr16x16(r);
            for (int c = 0; c < nc; c++) _mm512_storeu_ps(dst + (size_t)(c0 + c) * ldd + i0, r[c]);
        }
    }
}

const ak_fwd_kernels ak_fwd_kernels_avx512 = {
    "ak_k_fwd_f32_12x32__avx512", AK_ISA_AVX512, qk_avx512, pv_avx512, softmax_avx512, rescale_avx512, mask_avx512, softcap_avx512, to_f32_avx512,
    rows_f32_avx512, ak__kt_pack_c, dec_qk_avx512, dec_pv_avx512, dec_layout_avx512,
    softmax_rows_avx512, tpose_avx512, pvb_avx512,
};
