/*
 * AVX2 + FMA kernels of ak_qgemm (src/model/qgemm.h); compiled with -mavx2 -mfma -mf16c.
 * Same design and the same exactness rules as src/kernels/avx512/qgemm_avx512.c, on 8 lanes:
 *   decoders yield a block in "parts" of at most 8 ymm vectors (a whole 32-block; 64 elements of a K-quant
 *   block) so that a part and the gemv accumulators fit in the 16 registers;
 *   gemv: 2 x 8 lanes of partial sums per (activation row, weight row);
 *   pack: 8 rows at a time, 8 x 8 transposes into the k-major panel (16 wide);
 *   tile: 6 x 16 register tile (12 accumulators).
 */
#include <immintrin.h>
#include <string.h>

#include "core/internal.h"
#include "model/qgemm.h"
#include "model/quant.h"

#define AK_AI static inline __attribute__((always_inline))
#define AK_UNROLL _Pragma("GCC unroll 16")

#define MR 6
#define NR 16

AK_AI float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}
AK_AI uint32_t u32_at(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
AK_AI __m256i u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)); }
AK_AI __m256i s8x8(const uint8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)); }
AK_AI __m256 cvt(__m256i v) { return _mm256_cvtepi32_ps(v); }
AK_AI __m256i and_c(__m256i v, int c) { return _mm256_and_si256(v, _mm256_set1_epi32(c)); }
/* a * q + b as one FMA: exact products (at most 22 significant bits, see the AVX-512 file), so the same
 * rounding as the reference's product-then-add */
AK_AI __m256 mul_add2(__m256 a, __m256 q, __m256 b) { return _mm256_fmadd_ps(a, q, b); }
/* d * (q - c) for integer-valued q, one rounding: fma(q, d, -c * d) */
AK_AI __m256 scale_off(__m256 q, float d, float c) { return _mm256_fmadd_ps(q, _mm256_set1_ps(d), _mm256_set1_ps(-c * d)); }

AK_AI void k_scale_min(const uint8_t *sc, int s, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4);
        *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
}

/* The fifth bits of elements 8 t .. 8 t + 7 of a Q5_0 / Q5_1 block, as 0 or 16 per lane. */
AK_AI __m256i q5_hi(uint32_t h, int t) {
    const __m256i sh = _mm256_setr_epi32(8 * t, 8 * t + 1, 8 * t + 2, 8 * t + 3, 8 * t + 4, 8 * t + 5, 8 * t + 6, 8 * t + 7);
    return and_c(_mm256_slli_epi32(_mm256_srlv_epi32(_mm256_set1_epi32((int)h), sh), 4), 16);
}

/* ---- decoders: part `pt` of a block -> v[0 .. NV_PART), element offset of v[t] = off_of(T, pt, t) ---- */

AK_AI int be_of(const int32_t T) { return T == AK_Q_Q4_K || T == AK_Q_Q5_K || T == AK_Q_Q6_K ? 256 : 32; }
AK_AI int bb_of(const int32_t T) {
    switch (T) {
    case AK_Q_Q8_0: return 34;
    case AK_Q_Q4_0: return 18;
    case AK_Q_Q4_1: return 20;
    case AK_Q_Q5_0: return 22;
    case AK_Q_Q5_1: return 24;
    case AK_Q_Q4_K: return 144;
    case AK_Q_Q5_K: return 176;
    case AK_Q_Q6_K: return 210;
    }
    return 0;
}
/* parts per block and vectors per part */
AK_AI int parts_of(const int32_t T) { return be_of(T) == 256 ? 4 : 1; }
AK_AI int nv_of(const int32_t T) { return be_of(T) == 256 ? 8 : 4; }
AK_AI int off_of(const int32_t T, int pt, int t) {
    if (T == AK_Q_Q6_K) return 128 * (pt >> 1) + 16 * (pt & 1) + 32 * (t >> 1) + 8 * (t & 1);
    return 64 * pt + 8 * t;   /* Q4_K / Q5_K groups; pt = 0 for the 32-blocks */
}

AK_AI void dq_part(const int32_t T, const uint8_t *b, int pt, __m256 *v) {
    switch (T) {
    case AK_Q_Q8_0: {
        const __m256 d = _mm256_set1_ps(f16_at(b));
        AK_UNROLL
        for (int t = 0; t < 4; t++) v[t] = _mm256_mul_ps(d, cvt(s8x8(b + 2 + 8 * t)));
        break;
    }
    case AK_Q_Q4_0: {
        const float d = f16_at(b);
        const __m256i q0 = u8x8(b + 2), q1 = u8x8(b + 10);
        v[0] = scale_off(cvt(and_c(q0, 15)), d, 8.0f);
        v[1] = scale_off(cvt(and_c(q1, 15)), d, 8.0f);
        v[2] = scale_off(cvt(_mm256_srli_epi32(q0, 4)), d, 8.0f);
        v[3] = scale_off(cvt(_mm256_srli_epi32(q1, 4)), d, 8.0f);
        break;
    }
    case AK_Q_Q4_1: {
        const __m256 d = _mm256_set1_ps(f16_at(b)), mn = _mm256_set1_ps(f16_at(b + 2));
        const __m256i q0 = u8x8(b + 4), q1 = u8x8(b + 12);
        v[0] = mul_add2(d, cvt(and_c(q0, 15)), mn);
        v[1] = mul_add2(d, cvt(and_c(q1, 15)), mn);
        v[2] = mul_add2(d, cvt(_mm256_srli_epi32(q0, 4)), mn);
        v[3] = mul_add2(d, cvt(_mm256_srli_epi32(q1, 4)), mn);
        break;
    }
    case AK_Q_Q5_0: case AK_Q_Q5_1: {
        const int one = T == AK_Q_Q5_1;
        const uint8_t *qs = b + (one ? 8 : 6);
        const uint32_t h = u32_at(b + (one ? 4 : 2));
        const __m256i q0 = u8x8(qs), q1 = u8x8(qs + 8);
        __m256i q[4];
        q[0] = _mm256_or_si256(and_c(q0, 15), q5_hi(h, 0));
        q[1] = _mm256_or_si256(and_c(q1, 15), q5_hi(h, 1));
        q[2] = _mm256_or_si256(_mm256_srli_epi32(q0, 4), q5_hi(h, 2));
        q[3] = _mm256_or_si256(_mm256_srli_epi32(q1, 4), q5_hi(h, 3));
        if (one) {
            const __m256 d = _mm256_set1_ps(f16_at(b)), mn = _mm256_set1_ps(f16_at(b + 2));
            AK_UNROLL
            for (int t = 0; t < 4; t++) v[t] = mul_add2(d, cvt(q[t]), mn);
        } else {
            const float d = f16_at(b);
            AK_UNROLL
            for (int t = 0; t < 4; t++) v[t] = scale_off(cvt(q[t]), d, 16.0f);
        }
        break;
    }
    case AK_Q_Q4_K: case AK_Q_Q5_K: {
        const int five = T == AK_Q_Q5_K;
        const int g = pt;
        const float d = f16_at(b), dmin = f16_at(b + 2);
        const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16) + 32 * g;
        int s0, m0, s1, m1;
        k_scale_min(sc, 2 * g, &s0, &m0);
        k_scale_min(sc, 2 * g + 1, &s1, &m1);
        const __m256 d0 = _mm256_set1_ps(d * (float)s0), n0 = _mm256_set1_ps(-(dmin * (float)m0));
        const __m256 d1 = _mm256_set1_ps(d * (float)s1), n1 = _mm256_set1_ps(-(dmin * (float)m1));
        AK_UNROLL
        for (int u = 0; u < 4; u++) {
            const __m256i q = u8x8(qs + 8 * u);
            __m256i lo = and_c(q, 15), hi = _mm256_srli_epi32(q, 4);
            if (five) {
                const __m256i H = u8x8(qh + 8 * u);
                lo = _mm256_or_si256(lo, and_c(_mm256_slli_epi32(_mm256_srli_epi32(H, 2 * g), 4), 16));
                hi = _mm256_or_si256(hi, and_c(_mm256_slli_epi32(_mm256_srli_epi32(H, 2 * g + 1), 4), 16));
            }
            v[u] = mul_add2(d0, cvt(lo), n0);
            v[4 + u] = mul_add2(d1, cvt(hi), n1);
        }
        break;
    }
    case AK_Q_Q6_K: {
        const int h = pt >> 1, c = pt & 1;
        const uint8_t *ql = b + 64 * h + 16 * c, *qh = b + 128 + 32 * h + 16 * c;
        const int8_t *s = (const int8_t *)(const void *)(b + 192) + 8 * h + c;
        const float d = f16_at(b + 208);
        AK_UNROLL
        for (int u = 0; u < 2; u++) {
            const __m256i A = u8x8(ql + 8 * u), B = u8x8(ql + 32 + 8 * u), H = u8x8(qh + 8 * u);
            const __m256i q1 = _mm256_or_si256(and_c(A, 15), and_c(_mm256_slli_epi32(H, 4), 0x30));
            const __m256i q2 = _mm256_or_si256(and_c(B, 15), and_c(_mm256_slli_epi32(H, 2), 0x30));
            const __m256i q3 = _mm256_or_si256(_mm256_srli_epi32(A, 4), and_c(H, 0x30));
            const __m256i q4 = _mm256_or_si256(_mm256_srli_epi32(B, 4), and_c(_mm256_srli_epi32(H, 2), 0x30));
            v[0 + u] = scale_off(cvt(q1), d * (float)s[0], 32.0f);
            v[2 + u] = scale_off(cvt(q2), d * (float)s[2], 32.0f);
            v[4 + u] = scale_off(cvt(q3), d * (float)s[4], 32.0f);
            v[6 + u] = scale_off(cvt(q4), d * (float)s[6], 32.0f);
        }
        break;
    }
    }
}

AK_AI int fused(int32_t t) {
    switch (t) {
    case AK_Q_Q8_0: case AK_Q_Q4_0: case AK_Q_Q4_1: case AK_Q_Q5_0: case AK_Q_Q5_1:
    case AK_Q_Q4_K: case AK_Q_Q5_K: case AK_Q_Q6_K: return 1;
    }
    return 0;
}

AK_AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ================================= gemv ================================= */

AK_AI void gemv_tm(const int32_t T, const int M, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in,
                   const float *x, int64_t ldx, float *y, int64_t ldy) {
    const int BE = be_of(T), BB = bb_of(T), NP = parts_of(T), NV = nv_of(T);
    const int64_t nb = n_in / BE;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 acc[AK_QG_GEMV_MAX][2];
        AK_UNROLL
        for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (int64_t q = 0; q < nb; q++) {
            const float *xb = x + (size_t)q * BE;
            AK_UNROLL
            for (int pt = 0; pt < NP; pt++) {
                __m256 v[8];
                dq_part(T, row + (size_t)q * BB, pt, v);
                AK_UNROLL
                for (int t = 0; t < NV; t++) {
                    const int o = off_of(T, pt, t);
                    AK_UNROLL
                    for (int i = 0; i < M; i++)
                        acc[i][(o >> 3) & 1] = _mm256_fmadd_ps(v[t], _mm256_loadu_ps(xb + (size_t)i * (size_t)ldx + o), acc[i][(o >> 3) & 1]);
                }
            }
        }
        AK_UNROLL
        for (int i = 0; i < M; i++) y[(size_t)i * (size_t)ldy + (size_t)r] = hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
    }
}

#define GEMV_TYPE(name, T)                                                                                          \
    static void name(int m, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in, const float *x, int64_t ldx, \
                     float *y, int64_t ldy) {                                                                       \
        switch (m) {                                                                                                \
        case 1: gemv_tm(T, 1, w, rb, n_rows, n_in, x, ldx, y, ldy); break;                                          \
        case 2: gemv_tm(T, 2, w, rb, n_rows, n_in, x, ldx, y, ldy); break;                                          \
        case 3: gemv_tm(T, 3, w, rb, n_rows, n_in, x, ldx, y, ldy); break;                                          \
        default: gemv_tm(T, 4, w, rb, n_rows, n_in, x, ldx, y, ldy); break;                                         \
        }                                                                                                           \
    }
GEMV_TYPE(gemv_q8_0, AK_Q_Q8_0)
GEMV_TYPE(gemv_q4_0, AK_Q_Q4_0)
GEMV_TYPE(gemv_q4_1, AK_Q_Q4_1)
GEMV_TYPE(gemv_q5_0, AK_Q_Q5_0)
GEMV_TYPE(gemv_q5_1, AK_Q_Q5_1)
GEMV_TYPE(gemv_q4_k, AK_Q_Q4_K)
GEMV_TYPE(gemv_q5_k, AK_Q_Q5_K)
GEMV_TYPE(gemv_q6_k, AK_Q_Q6_K)

static void gemv_generic(int32_t type, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in, const float *x,
                         int64_t ldx, int m, float *y, int64_t ldy, float *scratch) {
    const int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    for (int64_t r = 0; r < n_rows; r++) {
        __m256 a0[AK_QG_GEMV_MAX], a1[AK_QG_GEMV_MAX];
        float tail[AK_QG_GEMV_MAX] = {0};
        for (int i = 0; i < m; i++) a0[i] = a1[i] = _mm256_setzero_ps();
        for (int64_t c0 = 0; c0 < n_in; c0 += AK_QG_GEMV_CHUNK) {   /* chunks keep the lane pattern (16 | chunk) */
            const int64_t cn = n_in - c0 < AK_QG_GEMV_CHUNK ? n_in - c0 : AK_QG_GEMV_CHUNK;
            ak__dequant_row(type, w + (size_t)r * rb + (size_t)(c0 / be) * (size_t)bb, scratch, cn);
            for (int i = 0; i < m; i++) {
                const float *xi = x + (size_t)i * (size_t)ldx + (size_t)c0;
                int64_t k = 0;
                for (; k + 16 <= cn; k += 16) {
                    a0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(scratch + k), _mm256_loadu_ps(xi + k), a0[i]);
                    a1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(scratch + k + 8), _mm256_loadu_ps(xi + k + 8), a1[i]);
                }
                for (; k < cn; k++) tail[i] = fmaf(scratch[k], xi[k], tail[i]);   /* only in the last chunk */
            }
        }
        for (int i = 0; i < m; i++) y[(size_t)i * (size_t)ldy + (size_t)r] = hsum(_mm256_add_ps(a0[i], a1[i])) + tail[i];
    }
}

static void gemv_avx2(int32_t type, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in, const float *x,
                      int64_t ldx, int m, float *y, int64_t ldy, float *scratch) {
    switch (type) {
    case AK_Q_Q8_0: gemv_q8_0(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q4_0: gemv_q4_0(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q4_1: gemv_q4_1(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q5_0: gemv_q5_0(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q5_1: gemv_q5_1(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q4_K: gemv_q4_k(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q5_K: gemv_q5_k(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    case AK_Q_Q6_K: gemv_q6_k(m, w, rb, n_rows, n_in, x, ldx, y, ldy); return;
    }
    gemv_generic(type, w, rb, n_rows, n_in, x, ldx, m, y, ldy, scratch);
}

static int gemv_scratch_avx2(int32_t type) { return !fused(type); }

/* ================================= pack ================================= */

AK_AI void dq_row_t(const int32_t T, const uint8_t *src, float *dst, int64_t n) {
    const int BE = be_of(T), BB = bb_of(T), NP = parts_of(T), NV = nv_of(T);
    for (int64_t q = 0; q < n / BE; q++) {
        AK_UNROLL
        for (int pt = 0; pt < NP; pt++) {
            __m256 v[8];
            dq_part(T, src + (size_t)q * BB, pt, v);
            AK_UNROLL
            for (int t = 0; t < NV; t++) _mm256_storeu_ps(dst + (size_t)q * BE + off_of(T, pt, t), v[t]);
        }
    }
}

static void dq_row(int32_t type, const uint8_t *src, float *dst, int64_t n) {
    switch (type) {
    case AK_Q_Q8_0: dq_row_t(AK_Q_Q8_0, src, dst, n); return;
    case AK_Q_Q4_0: dq_row_t(AK_Q_Q4_0, src, dst, n); return;
    case AK_Q_Q4_1: dq_row_t(AK_Q_Q4_1, src, dst, n); return;
    case AK_Q_Q5_0: dq_row_t(AK_Q_Q5_0, src, dst, n); return;
    case AK_Q_Q5_1: dq_row_t(AK_Q_Q5_1, src, dst, n); return;
    case AK_Q_Q4_K: dq_row_t(AK_Q_Q4_K, src, dst, n); return;
    case AK_Q_Q5_K: dq_row_t(AK_Q_Q5_K, src, dst, n); return;
    case AK_Q_Q6_K: dq_row_t(AK_Q_Q6_K, src, dst, n); return;
    }
    ak__dequant_row(type, src, dst, n);
}

/* r[0..7] (rows) -> r[c] = column c */
AK_AI void transpose8(__m256 *r) {
    __m256 t[8], s[8];
    AK_UNROLL
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    AK_UNROLL
    for (int i = 0; i < 2; i++) {
        s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    AK_UNROLL
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
    }
}

static void pack_avx2(int32_t type, const uint8_t *w, size_t rb, int nrows, int64_t k0, int64_t kc, float *dst,
                      float *scratch) {
    const int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    const size_t off = (size_t)(k0 / be) * (size_t)bb;
    for (int r = 0; r < nrows; r++) dq_row(type, w + (size_t)r * rb + off, scratch + (size_t)r * (size_t)kc, kc);
    const int64_t k8 = kc & ~(int64_t)7;
    for (int half = 0; half < 2; half++) {
        const int r0 = 8 * half, rn = nrows - r0 < 0 ? 0 : nrows - r0 > 8 ? 8 : nrows - r0;
        for (int64_t k = 0; k < k8; k += 8) {
            __m256 v[8];
            AK_UNROLL
            for (int i = 0; i < 8; i++)
                v[i] = i < rn ? _mm256_loadu_ps(scratch + (size_t)(r0 + i) * (size_t)kc + (size_t)k) : _mm256_setzero_ps();
            transpose8(v);
            AK_UNROLL
            for (int c = 0; c < 8; c++) _mm256_storeu_ps(dst + (size_t)(k + c) * NR + (size_t)r0, v[c]);
        }
        for (int64_t k = k8; k < kc; k++)
            for (int i = 0; i < 8; i++)
                dst[(size_t)k * NR + (size_t)(r0 + i)] = i < rn ? scratch[(size_t)(r0 + i) * (size_t)kc + (size_t)k] : 0.0f;
    }
}

/* ================================= tile ================================= */

AK_AI __m256 bcast(const float *p) {
    __m256 a = _mm256_broadcast_ss(p);
    __asm__("" : "+x"(a));
    return a;
}

AK_AI __m256i lane_mask(int n) {   /* lanes < n set (n in 0..8) */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AK_AI void tile_t(const int M, const int NV, int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y,
                  int64_t ldy, int accumulate) {
    const __m256i k0 = lane_mask(NV == 1 ? nr : 8), k1 = lane_mask(NV == 2 ? nr - 8 : 0);
    __m256 c[MR][2];
    AK_UNROLL
    for (int i = 0; i < M; i++) {
        float *yi = y + (size_t)i * (size_t)ldy;
        c[i][0] = accumulate ? _mm256_maskload_ps(yi, k0) : _mm256_setzero_ps();
        if (NV == 2) c[i][1] = accumulate ? _mm256_maskload_ps(yi + 8, k1) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        const float *pk = p + (size_t)k * NR;
        const __m256 b0 = _mm256_loadu_ps(pk);
        const __m256 b1 = NV == 2 ? _mm256_loadu_ps(pk + 8) : b0;
        AK_UNROLL
        for (int i = 0; i < M; i++) {
            const __m256 a = bcast(x + (size_t)i * (size_t)ldx + (size_t)k);
            c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
            if (NV == 2) c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
        }
    }
    AK_UNROLL
    for (int i = 0; i < M; i++) {
        float *yi = y + (size_t)i * (size_t)ldy;
        _mm256_maskstore_ps(yi, k0, c[i][0]);
        if (NV == 2) _mm256_maskstore_ps(yi + 8, k1, c[i][1]);
    }
}

#define TILE_M(M)                                                                                                     \
    static void tile_m##M(int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y, int64_t ldy,    \
                          int acc) {                                                                                  \
        if (nr > 8) tile_t(M, 2, nr, kc, x, ldx, p, y, ldy, acc);                                                     \
        else tile_t(M, 1, nr, kc, x, ldx, p, y, ldy, acc);                                                            \
    }
TILE_M(1) TILE_M(2) TILE_M(3) TILE_M(4) TILE_M(5) TILE_M(6)

static void tile_avx2(int mr, int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y, int64_t ldy,
                      int accumulate) {
    typedef void (*fn)(int, int64_t, const float *, int64_t, const float *, float *, int64_t, int);
    static const fn tab[MR] = {tile_m1, tile_m2, tile_m3, tile_m4, tile_m5, tile_m6};
    tab[mr - 1](nr, kc, x, ldx, p, y, ldy, accumulate);
}

const ak_qgemm_kernels ak_qgemm_kernels_avx2 = {
    "ak_k_qgemm_f32_6x16__avx2", AK_ISA_AVX2, MR, NR, gemv_avx2, gemv_scratch_avx2, pack_avx2, tile_avx2,
};
