/*
 * AVX-512F kernels of ak_qgemm (src/model/qgemm.h); compiled with -mavx512f/bw/vl/dq -mfma -mf16c.
 *
 * Block decoders turn one quant block into 16-lane f32 vectors holding exactly the values of ak_dequantize
 * (src/model/quant.c): the same products in the same order. Where the reference computes d * (q - c) with an
 * integer q - c, the decoders use fma(q, d, -c * d), which is the same single rounding of the same exact value
 * (c * d is a power-of-two multiple of d, exact); where it computes a * q +- b with an exact product a * q
 * (see mul_add2), one FMA rounds the same way.
 *   gemv: per weight row, blocks decoded in registers and FMA'd with the m activation rows; per row 2 x 16
 *         lanes of partial sums (lane = k mod 32; K-quants: 2 to 8 x 16), reduced once at the end, 16 rows at a
 *         time.
 *   pack: 16 rows at a time dequantized into scratch, then 16 x 16 transposes into the k-major panel.
 *   tile: 12 x 32 register tile (24 accumulators); x[i][k] broadcast, two panel vectors per k.
 */
#include <immintrin.h>
#include <string.h>

#include "core/internal.h"
#include "model/qgemm.h"
#include "model/quant.h"

#define AK_AI static inline __attribute__((always_inline))
#define AK_UNROLL _Pragma("GCC unroll 16")

#define MR 12
#define NR 32

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
AK_AI __m512i u8x16(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)); }
AK_AI __m512i s8x16(const uint8_t *p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)); }
AK_AI __m512 cvt(__m512i v) { return _mm512_cvtepi32_ps(v); }
/* a * q + b as one FMA. The reference rounds the product first, but for every type that has this form
 * (Q4_1, Q5_1: fp16 d times a 4/5-bit q; Q4_K, Q5_K: d * sc (fp16 times 6 bits, exact in f32) times a 4/5-bit q)
 * the product needs at most 22 significant bits, so it is exact in f32 and both round once, identically. */
AK_AI __m512 mul_add2(__m512 a, __m512 q, __m512 b) { return _mm512_fmadd_ps(a, q, b); }
AK_AI __m512 mul_sub2(__m512 a, __m512 q, __m512 b) { return _mm512_fmsub_ps(a, q, b); }
/* Scales are read from small float tables (filled 16 blocks or one K-block at a time) and broadcast from
 * memory: a load-port operation, where a per-block fp16 conversion plus register broadcast would take
 * port 5, which the decoders and FMAs need. The asm tells the compiler that the table was written to
 * memory, so that it loads from it instead of extracting lanes with shuffles. */
AK_AI __m512 bc(const float *p) { return _mm512_set1_ps(*p); }
#define TABLE_WRITTEN(t) __asm__("" : : "r"(t) : "memory")

/* ---- scale tables ----
 * 32-blocks, for n <= TAB consecutive blocks at b0 (stride BB): ta[j] = d; tb[j] = -c d (Q4_0: c = 8, Q5_0:
 * c = 16; exact) or m (Q4_1, Q5_1). The fp16 fields are copied with scalar loads and stores (load and store
 * ports only; a vpgatherdd costs more than 16 blocks' arithmetic) and converted 16 at a time. */
#define TAB 64
AK_AI void prep32(const int32_t T, const int BB, const uint8_t *b0, int n, float *ta, float *tb) {
    uint32_t raw[TAB] __attribute__((aligned(64)));
    const int two = T == AK_Q_Q4_1 || T == AK_Q_Q5_1;   /* d and m */
    int j0 = 0;
    for (; j0 + 4 <= n; j0 += 4) {   /* 4 bytes per block: inside the block for every type */
        AK_UNROLL
        for (int u = 0; u < 4; u++) memcpy(raw + j0 + u, b0 + (size_t)(j0 + u) * BB, 4);
    }
    for (; j0 < n; j0++) memcpy(raw + j0, b0 + (size_t)j0 * BB, 4);
    for (int j = 0; j < n; j += 16) {
        const __m512i g = _mm512_maskz_load_epi32(n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u), raw + j);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));   /* the low halves: d */
        _mm512_store_ps(ta + j, d);
        if (T == AK_Q_Q4_0) _mm512_store_ps(tb + j, _mm512_mul_ps(d, _mm512_set1_ps(-8.0f)));
        if (T == AK_Q_Q5_0) _mm512_store_ps(tb + j, _mm512_mul_ps(d, _mm512_set1_ps(-16.0f)));
        if (two) _mm512_store_ps(tb + j, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16))));
    }
    TABLE_WRITTEN(ta);
    TABLE_WRITTEN(tb);
}

/* Q4_K / Q5_K block: t[s] = d * sc_s, t[8 + s] = dmin * m_s (s = 0..7; the reference's two products), from
 * the 12 packed bytes: for s < 4 sc = B[s] & 63, m = B[s+4] & 63; for s >= 4 sc = (B[s+4] & 15) |
 * (B[s-4] >> 6) << 4, m = (B[s+4] >> 4) | (B[s] >> 6) << 4. */
AK_AI void prep_k45(const uint8_t *b, float *t) {
    const __m512i W = u8x16(b + 4);   /* the 12 scale bytes (+ 4 bytes of the block, unused) */
    const __m512i A = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11), W);
    const __m512i C = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 4, 5, 6, 7), W);
    __m512i r = _mm512_and_si512(_mm512_srlv_epi32(A, _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4)),
                                 _mm512_setr_epi32(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
    r = _mm512_mask_or_epi32(r, (__mmask16)0xF0F0, r, _mm512_and_si512(_mm512_srli_epi32(C, 2), _mm512_set1_epi32(0x30)));
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)u32_at(b)));   /* d, dmin */
    const __m512 dv = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                            _mm512_castps128_ps512(dd));
    _mm512_store_ps(t, _mm512_mul_ps(dv, cvt(r)));
    TABLE_WRITTEN(t);
}

/* Q6_K block: t[i] = d * sc_i, t[16 + i] = -32 t[i] (exact), i = 0..15 */
AK_AI void prep_q6k(const uint8_t *b, float *t) {
    const __m512 ds = _mm512_mul_ps(_mm512_set1_ps(f16_at(b + 208)), cvt(s8x16(b + 192)));
    _mm512_store_ps(t, ds);
    _mm512_store_ps(t + 16, _mm512_mul_ps(ds, _mm512_set1_ps(-32.0f)));
    TABLE_WRITTEN(t);
}

/* ---- block decoders: v[j] = elements [16 j, 16 j + 16) of the block ----
 * 32-blocks take their two table entries (ta, tb: this block's); K-blocks a per-block table kt (32 floats) */

/* Q5_0 / Q5_1: bit j of qh is the fifth bit of element j; AVX-512 masks take its 16-bit halves directly */
AK_AI void q5_bits(const uint8_t *qh, const uint8_t *qs, __m512i *lo, __m512i *hi) {
    const __m512i q = u8x16(qs), sixteen = _mm512_set1_epi32(16);
    const __m512i l = _mm512_and_si512(q, _mm512_set1_epi32(15)), h = _mm512_srli_epi32(q, 4);
    uint16_t h0, h1;
    memcpy(&h0, qh, 2);
    memcpy(&h1, qh + 2, 2);
    *lo = _mm512_mask_or_epi32(l, (__mmask16)h0, l, sixteen);
    *hi = _mm512_mask_or_epi32(h, (__mmask16)h1, h, sixteen);
}

AK_AI void dq32(const int32_t T, const uint8_t *b, const float *ta, const float *tb, __m512 *v) {
    switch (T) {
    case AK_Q_Q8_0:
        v[0] = _mm512_mul_ps(cvt(s8x16(b + 2)), bc(ta));
        v[1] = _mm512_mul_ps(cvt(s8x16(b + 18)), bc(ta));
        break;
    case AK_Q_Q4_0: {
        const __m512i q = u8x16(b + 2);
        v[0] = _mm512_fmadd_ps(cvt(_mm512_and_si512(q, _mm512_set1_epi32(15))), bc(ta), bc(tb));
        v[1] = _mm512_fmadd_ps(cvt(_mm512_srli_epi32(q, 4)), bc(ta), bc(tb));
        break;
    }
    case AK_Q_Q4_1: {
        const __m512i q = u8x16(b + 4);
        v[0] = mul_add2(bc(ta), cvt(_mm512_and_si512(q, _mm512_set1_epi32(15))), bc(tb));
        v[1] = mul_add2(bc(ta), cvt(_mm512_srli_epi32(q, 4)), bc(tb));
        break;
    }
    case AK_Q_Q5_0: {
        __m512i lo, hi;
        q5_bits(b + 2, b + 6, &lo, &hi);
        v[0] = _mm512_fmadd_ps(cvt(lo), bc(ta), bc(tb));   /* d * (q - 16), one rounding */
        v[1] = _mm512_fmadd_ps(cvt(hi), bc(ta), bc(tb));
        break;
    }
    case AK_Q_Q5_1: {
        __m512i lo, hi;
        q5_bits(b + 4, b + 8, &lo, &hi);
        v[0] = mul_add2(bc(ta), cvt(lo), bc(tb));
        v[1] = mul_add2(bc(ta), cvt(hi), bc(tb));
        break;
    }
    }
}

/* Q4_K / Q5_K: group g (64 elements) uses sub-blocks 2g (low nibbles) and 2g + 1 (high nibbles);
 * x = (d * sc) * q - dmin * m */
AK_AI void dq_k45(const int five, const uint8_t *b, const float *kt, __m512 *v) {
    const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);
    const __m512i m15 = _mm512_set1_epi32(15), m16 = _mm512_set1_epi32(16);
    __m512i h0 = _mm512_setzero_si512(), h1 = h0;
    if (five) {
        h0 = u8x16(qh);
        h1 = u8x16(qh + 16);
    }
    AK_UNROLL
    for (int g = 0; g < 4; g++) {
        const __m512i qa = u8x16(qs + 32 * g), qb = u8x16(qs + 32 * g + 16);
        __m512i la = _mm512_and_si512(qa, m15), lb = _mm512_and_si512(qb, m15);
        __m512i ha = _mm512_srli_epi32(qa, 4), hb = _mm512_srli_epi32(qb, 4);
        if (five) {
            /* bit 2g of qh[l] -> +16 on the low nibble, bit 2g + 1 -> +16 on the high nibble */
            la = _mm512_or_si512(la, _mm512_and_si512(_mm512_slli_epi32(_mm512_srli_epi32(h0, 2 * g), 4), m16));
            lb = _mm512_or_si512(lb, _mm512_and_si512(_mm512_slli_epi32(_mm512_srli_epi32(h1, 2 * g), 4), m16));
            ha = _mm512_or_si512(ha, _mm512_and_si512(_mm512_slli_epi32(_mm512_srli_epi32(h0, 2 * g + 1), 4), m16));
            hb = _mm512_or_si512(hb, _mm512_and_si512(_mm512_slli_epi32(_mm512_srli_epi32(h1, 2 * g + 1), 4), m16));
        }
        v[4 * g + 0] = mul_sub2(bc(kt + 2 * g), cvt(la), bc(kt + 8 + 2 * g));
        v[4 * g + 1] = mul_sub2(bc(kt + 2 * g), cvt(lb), bc(kt + 8 + 2 * g));
        v[4 * g + 2] = mul_sub2(bc(kt + 2 * g + 1), cvt(ha), bc(kt + 9 + 2 * g));
        v[4 * g + 3] = mul_sub2(bc(kt + 2 * g + 1), cvt(hb), bc(kt + 9 + 2 * g));
    }
}

/* Q6_K: half h (128 elements), lanes l = 16 c .. 16 c + 15 of its 32: q1..q4 at element offsets 0, 32, 64, 96,
 * scales sc[8 h + c + 2 j]; x = (d * sc) * (q - 32) = fma(q, d sc, -32 d sc) */
AK_AI void dq_q6_k(const uint8_t *b, const float *kt, __m512 *v) {
    const uint8_t *ql = b, *qh = b + 128;
    const __m512i m15 = _mm512_set1_epi32(15), m48 = _mm512_set1_epi32(0x30);
    AK_UNROLL
    for (int h = 0; h < 2; h++) {
        AK_UNROLL
        for (int c = 0; c < 2; c++) {
            const __m512i A = u8x16(ql + 64 * h + 16 * c), B = u8x16(ql + 64 * h + 32 + 16 * c);
            const __m512i H = u8x16(qh + 32 * h + 16 * c);
            const __m512i q1 = _mm512_or_si512(_mm512_and_si512(A, m15), _mm512_and_si512(_mm512_slli_epi32(H, 4), m48));
            const __m512i q2 = _mm512_or_si512(_mm512_and_si512(B, m15), _mm512_and_si512(_mm512_slli_epi32(H, 2), m48));
            const __m512i q3 = _mm512_or_si512(_mm512_srli_epi32(A, 4), _mm512_and_si512(H, m48));
            const __m512i q4 = _mm512_or_si512(_mm512_srli_epi32(B, 4), _mm512_and_si512(_mm512_srli_epi32(H, 2), m48));
            const int s = 8 * h + c;
            v[s + 0] = _mm512_fmadd_ps(cvt(q1), bc(kt + s), bc(kt + 16 + s));
            v[s + 2] = _mm512_fmadd_ps(cvt(q2), bc(kt + s + 2), bc(kt + 16 + s + 2));
            v[s + 4] = _mm512_fmadd_ps(cvt(q3), bc(kt + s + 4), bc(kt + 16 + s + 4));
            v[s + 6] = _mm512_fmadd_ps(cvt(q4), bc(kt + s + 6), bc(kt + 16 + s + 6));
        }
    }
}

/* Types with a decoder here; the others (F32, F16, BF16) go through ak__dequant_row. */
AK_AI int fused(int32_t t) {
    switch (t) {
    case AK_Q_Q8_0: case AK_Q_Q4_0: case AK_Q_Q4_1: case AK_Q_Q5_0: case AK_Q_Q5_1:
    case AK_Q_Q4_K: case AK_Q_Q5_K: case AK_Q_Q6_K: return 1;
    }
    return 0;
}
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

/* The blocks of one row, decoded in order: for each block q, BODY runs with v[0 .. BE/16) holding its elements
 * (the table work done per 16 blocks for the 32-blocks, per block for the K-quants). T is a constant. */
#define FOR_BLOCKS(T, row, nb, q, v, BODY)                                                                       \
    do {                                                                                                         \
        const int BE_ = be_of(T), BB_ = bb_of(T);                                                                \
        float ta_[32] __attribute__((aligned(64))), tb_[16] __attribute__((aligned(64)));                       \
        for (int64_t q0_ = 0; q0_ < (nb); q0_ += 16) {                                                          \
            const int n_ = (nb) - q0_ < 16 ? (int)((nb) - q0_) : 16;                                             \
            if (BE_ == 32) prep32(T, BB_, (row) + (size_t)q0_ * BB_, n_, ta_, tb_);                              \
            for (int j_ = 0; j_ < n_; j_++) {                                                                    \
                const int64_t q = q0_ + j_;                                                                      \
                const uint8_t *b_ = (row) + (size_t)q * BB_;                                                     \
                __m512 v[16];                                                                                    \
                if (T == AK_Q_Q4_K || T == AK_Q_Q5_K) {                                                          \
                    prep_k45(b_, ta_);                                                                           \
                    dq_k45(T == AK_Q_Q5_K, b_, ta_, v);                                                          \
                } else if (T == AK_Q_Q6_K) {                                                                     \
                    prep_q6k(b_, ta_);                                                                           \
                    dq_q6_k(b_, ta_, v);                                                                         \
                } else {                                                                                         \
                    dq32(T, b_, ta_ + j_, tb_ + j_, v);                                                          \
                }                                                                                                \
                BODY                                                                                             \
            }                                                                                                    \
        }                                                                                                        \
    } while (0)

/* ================================= gemv ================================= */

/* out[r] = the sum of the 16 lanes of v[r], r = 0..15: a 16 x 16 transpose-and-add in four levels (about 3
 * operations per row instead of 9 for a reduction of its own). Every row's lanes are added in the same fixed
 * tree, whatever the other rows hold: a row's sum does not depend on which rows share the call. */
AK_AI __m512 reduce16(const __m512 *v) {
    __m512 u[8], w[4];
    AK_UNROLL
    for (int i = 0; i < 8; i++) u[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    AK_UNROLL
    for (int i = 0; i < 4; i++) {
        const __m512d a = _mm512_castps_pd(u[2 * i]), b = _mm512_castps_pd(u[2 * i + 1]);
        w[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* w[i], 128-bit lane L: rows 4 i .. 4 i + 3, partial sums of their lane L */
    const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xDD));
    const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(w[2], w[3], 0x88), _mm512_shuffle_f32x4(w[2], w[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xDD));
}

/* The finished rows' partial sums are parked in part[i][r % 16] and reduced 16 rows at a time (the last
 * group padded with zero vectors: the same per-row tree). */
AK_AI void park(const int M, __m512 (*part)[16], const __m512 *sum, int64_t r, int64_t r_first, int64_t n_rows,
                float *y, int64_t ldy) {
    const int slot = (int)((r - r_first) & 15);
    AK_UNROLL
    for (int i = 0; i < M; i++) part[i][slot] = sum[i];
    if (slot == 15 || r == n_rows - 1) {
        const int cnt = slot + 1;
        const int64_t r0 = r - slot;
        AK_UNROLL
        for (int i = 0; i < M; i++) {
            for (int j = cnt; j < 16; j++) part[i][j] = _mm512_setzero_ps();
            _mm512_mask_storeu_ps(y + (size_t)i * (size_t)ldy + (size_t)r0, (__mmask16)((1u << cnt) - 1u), reduce16(part[i]));
        }
    }
}

AK_AI void gemv_tm(const int32_t T, const int M, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in,
                   const float *x, int64_t ldx, float *y, int64_t ldy) {
    const int BE = be_of(T), BB = bb_of(T), NV = BE / 16;
    const int64_t nb = n_in / BE;
    __m512 acc[AK_QG_GEMV_MAX][2];
    __m512 part[AK_QG_GEMV_MAX][16];
    AK_UNROLL
    for (int i = 0; i < AK_QG_GEMV_MAX; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    if (BE == 32) {
        /* (row, chunk of up to TAB blocks: a whole row of the model) in sequence; the scale table of the next
         * chunk is built before the current one is decoded (double buffer): its scalar stores reach the vector
         * load through memory, a store-forwarding stall that the current chunk's work hides */
        const int64_t nch = (nb + TAB - 1) / TAB, total = n_rows * nch;
        float tab[2][2][TAB] __attribute__((aligned(64)));
        prep32(T, BB, w, nb < TAB ? (int)nb : TAB, tab[0][0], tab[0][1]);
        int64_t r = 0, c = 0;   /* row and chunk of step it (no divisions: an idiv costs more than a block) */
        for (int64_t it = 0; it < total; it++) {
            int64_t r1 = r, c1 = c + 1;
            if (c1 == nch) {
                c1 = 0;
                r1++;
            }
            if (it + 1 < total) {
                const int n1 = nb - TAB * c1 < TAB ? (int)(nb - TAB * c1) : TAB;
                prep32(T, BB, w + (size_t)r1 * rb + (size_t)(TAB * c1) * BB, n1, tab[(it + 1) & 1][0], tab[(it + 1) & 1][1]);
            }
            const float *ta = tab[it & 1][0], *tb = tab[it & 1][1];
            if (c == 0) {
                AK_UNROLL
                for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
            }
            const int n = nb - TAB * c < TAB ? (int)(nb - TAB * c) : TAB;
            const uint8_t *b = w + (size_t)r * rb + (size_t)(TAB * c) * BB;
            const float *xc = x + (size_t)(TAB * c) * 32;
            for (int j = 0; j < n; j++) {
                __m512 v[2];
                dq32(T, b + (size_t)j * BB, ta + j, tb + j, v);
                AK_UNROLL
                for (int i = 0; i < M; i++) {
                    acc[i][0] = _mm512_fmadd_ps(v[0], _mm512_loadu_ps(xc + (size_t)i * (size_t)ldx + 32 * j), acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(v[1], _mm512_loadu_ps(xc + (size_t)i * (size_t)ldx + 32 * j + 16), acc[i][1]);
                }
            }
            if (c == nch - 1) {
                __m512 sum[AK_QG_GEMV_MAX];
                AK_UNROLL
                for (int i = 0; i < M; i++) sum[i] = _mm512_add_ps(acc[i][0], acc[i][1]);
                park(M, part, sum, r, 0, n_rows, y, ldy);
            }
            r = r1;
            c = c1;
        }
        return;
    }
    /* K-quants: 16 vectors per block; NA partial sums per activation row, so that the FMA chains are short
     * enough (16 / NA FMAs per chain and block) for the 4-cycle FMA latency not to be the limit */
    const int NA = M == 1 ? 8 : M == 2 ? 4 : 2;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m512 ak[AK_QG_GEMV_MAX][8];
        AK_UNROLL
        for (int i = 0; i < M; i++)
            AK_UNROLL
            for (int a = 0; a < NA; a++) ak[i][a] = _mm512_setzero_ps();
        FOR_BLOCKS(T, row, nb, q, v, {
            const float *xb = x + (size_t)q * BE;
            AK_UNROLL
            for (int j = 0; j < NV; j++)
                AK_UNROLL
                for (int i = 0; i < M; i++)
                    ak[i][j % NA] = _mm512_fmadd_ps(v[j], _mm512_loadu_ps(xb + (size_t)i * (size_t)ldx + 16 * j), ak[i][j % NA]);
        });
        __m512 sum[AK_QG_GEMV_MAX];
        AK_UNROLL
        for (int i = 0; i < M; i++) {
            AK_UNROLL
            for (int h = NA / 2; h >= 1; h /= 2)   /* fixed pairwise tree */
                AK_UNROLL
                for (int a = 0; a < h; a++) ak[i][a] = _mm512_add_ps(ak[i][a], ak[i][a + h]);
            sum[i] = ak[i][0];
        }
        park(M, part, sum, r, 0, n_rows, y, ldy);
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

/* F32 / F16 / BF16 rows: dequantized into scratch (any n_in), then the same 2 x 16-lane dot with a masked tail */
static void gemv_generic(int32_t type, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in, const float *x,
                         int64_t ldx, int m, float *y, int64_t ldy, float *scratch) {
    const int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    for (int64_t r = 0; r < n_rows; r++) {
        __m512 a0[AK_QG_GEMV_MAX], a1[AK_QG_GEMV_MAX];
        for (int i = 0; i < m; i++) a0[i] = a1[i] = _mm512_setzero_ps();
        for (int64_t c0 = 0; c0 < n_in; c0 += AK_QG_GEMV_CHUNK) {   /* chunks keep the lane pattern (32 | chunk) */
            const int64_t cn = n_in - c0 < AK_QG_GEMV_CHUNK ? n_in - c0 : AK_QG_GEMV_CHUNK;
            ak__dequant_row(type, w + (size_t)r * rb + (size_t)(c0 / be) * (size_t)bb, scratch, cn);
            for (int i = 0; i < m; i++) {
                const float *xi = x + (size_t)i * (size_t)ldx + (size_t)c0;
                int64_t k = 0;
                for (; k + 32 <= cn; k += 32) {
                    a0[i] = _mm512_fmadd_ps(_mm512_loadu_ps(scratch + k), _mm512_loadu_ps(xi + k), a0[i]);
                    a1[i] = _mm512_fmadd_ps(_mm512_loadu_ps(scratch + k + 16), _mm512_loadu_ps(xi + k + 16), a1[i]);
                }
                if (k + 16 <= cn) {
                    a0[i] = _mm512_fmadd_ps(_mm512_loadu_ps(scratch + k), _mm512_loadu_ps(xi + k), a0[i]);
                    k += 16;
                }
                if (k < cn) {
                    __mmask16 mk = (__mmask16)((1u << (cn - k)) - 1u);
                    a1[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, scratch + k), _mm512_maskz_loadu_ps(mk, xi + k), a1[i]);
                }
            }
        }
        for (int i = 0; i < m; i++) y[(size_t)i * (size_t)ldy + (size_t)r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
    }
}

static void gemv_avx512(int32_t type, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in, const float *x,
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

static int gemv_scratch_avx512(int32_t type) { return !fused(type); }

/* ================================= pack ================================= */

AK_AI void dq_row_t(const int32_t T, const uint8_t *src, float *dst, int64_t n) {
    const int BE = be_of(T), NV = BE / 16;
    FOR_BLOCKS(T, src, n / BE, q, v, {
        AK_UNROLL
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(dst + (size_t)q * BE + 16 * j, v[j]);
    });
}

/* n elements (a multiple of the block) of one row into dst */
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

/* r[0..15] (rows) -> r[c] = column c, in place */
AK_AI void transpose16(__m512 *r) {
    __m512 a[16], b[16];
    AK_UNROLL
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    AK_UNROLL
    for (int i = 0; i < 4; i++) {
        __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]);
        __m512d a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
        b[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* b[4 i + j], 128-bit lane L: rows 4 i .. 4 i + 3 at column 4 L + j */
    AK_UNROLL
    for (int j = 0; j < 4; j++) {
        __m512 e0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x44), e1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xEE);
        __m512 f0 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x44), f1 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xEE);
        r[j] = _mm512_shuffle_f32x4(e0, f0, 0x88);
        r[4 + j] = _mm512_shuffle_f32x4(e0, f0, 0xDD);
        r[8 + j] = _mm512_shuffle_f32x4(e1, f1, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(e1, f1, 0xDD);
    }
}

static void pack_avx512(int32_t type, const uint8_t *w, size_t rb, int nrows, int64_t k0, int64_t kc, float *dst,
                        float *scratch) {
    const int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    const size_t off = (size_t)(k0 / be) * (size_t)bb;
    for (int r = 0; r < nrows; r++) dq_row(type, w + (size_t)r * rb + off, scratch + (size_t)r * (size_t)kc, kc);
    const int64_t k16 = kc & ~(int64_t)15;
    for (int half = 0; half < 2; half++) {
        const int r0 = 16 * half, rn = nrows - r0 < 0 ? 0 : nrows - r0 > 16 ? 16 : nrows - r0;
        for (int64_t k = 0; k < k16; k += 16) {
            __m512 v[16];
            AK_UNROLL
            for (int i = 0; i < 16; i++)
                v[i] = i < rn ? _mm512_loadu_ps(scratch + (size_t)(r0 + i) * (size_t)kc + (size_t)k) : _mm512_setzero_ps();
            transpose16(v);
            AK_UNROLL
            for (int c = 0; c < 16; c++) _mm512_storeu_ps(dst + (size_t)(k + c) * NR + (size_t)r0, v[c]);
        }
        for (int64_t k = k16; k < kc; k++)
            for (int i = 0; i < 16; i++)
                dst[(size_t)k * NR + (size_t)(r0 + i)] = i < rn ? scratch[(size_t)(r0 + i) * (size_t)kc + (size_t)k] : 0.0f;
    }
}

/* ================================= tile ================================= */

/* Broadcast into a register used by two FMAs (without the asm the compiler folds the broadcast into each
 * FMA as a {1to16} memory operand: twice the loads). */
AK_AI __m512 bcast(const float *p) {
    __m512 a = _mm512_set1_ps(*p);
    __asm__("" : "+v"(a));
    return a;
}

AK_AI void tile_t(const int M, const int NV, int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y,
                  int64_t ldy, int accumulate) {
    const __mmask16 m0 = NV == 1 ? (__mmask16)((1u << nr) - 1u) : (__mmask16)0xFFFF;
    const __mmask16 m1 = NV == 2 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
    __m512 c[MR][2];
    AK_UNROLL
    for (int i = 0; i < M; i++) {
        float *yi = y + (size_t)i * (size_t)ldy;
        c[i][0] = accumulate ? _mm512_maskz_loadu_ps(m0, yi) : _mm512_setzero_ps();
        if (NV == 2) c[i][1] = accumulate ? _mm512_maskz_loadu_ps(m1, yi + 16) : _mm512_setzero_ps();
    }
    _Pragma("GCC unroll 4")
    for (int64_t k = 0; k < kc; k++) {
        const float *pk = p + (size_t)k * NR;
        const __m512 b0 = _mm512_loadu_ps(pk);
        const __m512 b1 = NV == 2 ? _mm512_loadu_ps(pk + 16) : b0;
        AK_UNROLL
        for (int i = 0; i < M; i++) {
            const __m512 a = bcast(x + (size_t)i * (size_t)ldx + (size_t)k);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            if (NV == 2) c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
    AK_UNROLL
    for (int i = 0; i < M; i++) {
        float *yi = y + (size_t)i * (size_t)ldy;
        _mm512_mask_storeu_ps(yi, m0, c[i][0]);
        if (NV == 2) _mm512_mask_storeu_ps(yi + 16, m1, c[i][1]);
    }
}

#define TILE_M(M)                                                                                                     \
    static void tile_m##M(int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y, int64_t ldy,    \
                          int acc) {                                                                                  \
        if (nr > 16) tile_t(M, 2, nr, kc, x, ldx, p, y, ldy, acc);                                                    \
        else tile_t(M, 1, nr, kc, x, ldx, p, y, ldy, acc);                                                            \
    }
TILE_M(1) TILE_M(2) TILE_M(3) TILE_M(4) TILE_M(5) TILE_M(6) TILE_M(7) TILE_M(8) TILE_M(9) TILE_M(10) TILE_M(11) TILE_M(12)

static void tile_avx512(int mr, int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y, int64_t ldy,
                        int accumulate) {
    typedef void (*fn)(int, int64_t, const float *, int64_t, const float *, float *, int64_t, int);
    static const fn tab[MR] = {tile_m1, tile_m2, tile_m3, tile_m4, tile_m5, tile_m6,
                               tile_m7, tile_m8, tile_m9, tile_m10, tile_m11, tile_m12};
    tab[mr - 1](nr, kc, x, ldx, p, y, ldy, accumulate);
}

const ak_qgemm_kernels ak_qgemm_kernels_avx512 = {
    "ak_k_qgemm_f32_12x32__avx512", AK_ISA_AVX512, MR, NR, gemv_avx512, gemv_scratch_avx512, pack_avx512, tile_avx512,
};
