/*
 * AVX-512-BF16 micro-kernels of the fused forward attention for bf16 Q/K/V: both products run on
 * vdpbf16ps, which multiplies PAIRS of bf16 values and accumulates in fp32 (2x the fp32 FMA rate).
 *   qk:  st[j][q] = scale * sum_c k[j][c] q[c][q]  with qt2[c/2][q] = (q[c][q], q[c+1][q]) packed
 *        as one dword per lane, and (k[j][c], k[j][c+1]) broadcast straight from the K row.
 *   pv:  ot[c][q] += sum_j v[j][c] p[j][q]  with P rounded to bf16 (as FlashAttention does) and
 *        packed in key pairs, V interleaved in key pairs per tile.
 * Everything except vdpbf16ps is AVX-512F integer work. Compiled twice: with -mavx512bf16 (the real
 * kernel) and, from src/kernels/avx512/fwd_bf16emu_avx512.c, with AK_BF16_EMULATE, where vdpbf16ps is
 * emulated by two fp32 FMAs so the same code is tested on CPUs without the instruction.
 */
#include "core/internal.h"

#include <immintrin.h>

#define AK_AI static inline __attribute__((always_inline))

#ifdef AK_BF16_EMULATE
#define AK_BF16_NAME "ak_k_fwd_bf16_12x32__avx512bf16emu"
#define AK_BF16_TABLE ak_fwd_bf16_kernels_emu
/* acc[i] += a[2i]*b[2i] + a[2i+1]*b[2i+1] on bf16 halves, by two fp32 FMAs */
AK_AI __m512 dpbf16(__m512 acc, __m512i a, __m512i b) {
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 ae = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), be = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
    __m512 ao = _mm512_castsi512_ps(_mm512_and_si512(a, hi)), bo = _mm512_castsi512_ps(_mm512_and_si512(b, hi));
    acc = _mm512_fmadd_ps(ae, be, acc);
    return _mm512_fmadd_ps(ao, bo, acc);
}
#else
#define AK_BF16_NAME "ak_k_fwd_bf16_12x32__avx512bf16"
#define AK_BF16_TABLE ak_fwd_bf16_kernels_avx512bf16
AK_AI __m512 dpbf16(__m512 acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
#endif

/* One dword broadcast into a register (kept out of the FMA's memory operand, see fwd_avx512.c). */
AK_AI __m512i bcast32(const void *p) {
    int32_t x; /* a bf16 pair is only 2-byte aligned: memcpy, which compiles to vpbroadcastd from memory */
    __builtin_memcpy(&x, p, 4);
    __m512i a = _mm512_set1_epi32(x);
    __asm__("" : "+v"(a));
    return a;
}

/* Pair (k[c], k[c+1]) of a bf16 row as a dword; the last, odd element pairs with 0 (no over-read). */
AK_AI int32_t pair_or_last(const uint16_t *row, int c, int d) {
    if (c + 1 < d) {
        int32_t x;
        __builtin_memcpy(&x, row + c, 4);
        return x;
    }
    return (int32_t)row[c];
}

AK_AI void qk_tile(const int MR, const int NV, int d, const uint16_t *k, int64_t ldk, const uint32_t *qt2, int64_t ldq,
                   float scale, float *st, int64_t ldst) {
    __m512 acc[12][2];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    int dp = d / 2;
    for (int c2 = 0; c2 < dp; c2++) {
        __m512i b[2];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_si512(qt2 + (size_t)c2 * ldq + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512i a = bcast32(k + (size_t)r * ldk + 2 * c2);
            for (int v = 0; v < NV; v++) acc[r][v] = dpbf16(acc[r][v], b[v], a);
        }
    }
    if (d & 1) {
        __m512i b[2];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_si512(qt2 + (size_t)dp * ldq + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512i a = _mm512_set1_epi32(pair_or_last(k + (size_t)r * ldk, d - 1, d));
            for (int v = 0; v < NV; v++) acc[r][v] = dpbf16(acc[r][v], b[v], a);
        }
    }
    __m512 s = _mm512_set1_ps(scale);
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(st + (size_t)r * ldst + 16 * v, _mm512_mul_ps(acc[r][v], s));
}

static void qk_bf16(int nk, int d, int mpad, const uint16_t *k, int64_t ldk, const uint32_t *qt2, int64_t ldq, float scale,
                    float *st, int64_t ldst) {
    for (int q = 0; q < mpad; q += 32) {
        const uint32_t *qq = qt2 + q;
        float *sq = st + q;
        if (mpad - q >= 32) {
            int j = 0;
            for (; j + 12 <= nk; j += 12) qk_tile(12, 2, d, k + (size_t)j * ldk, ldk, qq, ldq, scale, sq + (size_t)j * ldst, ldst);
            for (; j + 4 <= nk; j += 4) qk_tile(4, 2, d, k + (size_t)j * ldk, ldk, qq, ldq, scale, sq + (size_t)j * ldst, ldst);
            for (; j < nk; j++) qk_tile(1, 2, d, k + (size_t)j * ldk, ldk, qq, ldq, scale, sq + (size_t)j * ldst, ldst);
        } else {
            int j = 0;
            for (; j + 12 <= nk; j += 12) qk_tile(12, 1, d, k + (size_t)j * ldk, ldk, qq, ldq, scale, sq + (size_t)j * ldst, ldst);
            for (; j + 4 <= nk; j += 4) qk_tile(4, 1, d, k + (size_t)j * ldk, ldk, qq, ldq, scale, sq + (size_t)j * ldst, ldst);
            for (; j < nk; j++) qk_tile(1, 1, d, k + (size_t)j * ldk, ldk, qq, ldq, scale, sq + (size_t)j * ldst, ldst);
        }
    }
}

/* f32 -> bf16 (round to nearest even) left in the HIGH half of each dword. P is finite and >= 0. */
AK_AI __m512i round_hi(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_and_si512(u, _mm512_set1_epi32((int)0xFFFF0000u));
}

AK_AI void pv_tile(const int MR, const int NV, int np, const uint32_t *v2, int64_t ldv2, const uint32_t *p2, int64_t ldp2,
                   float *ot, int64_t ldot) {
    __m512 acc[12][2];
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = _mm512_loadu_ps(ot + (size_t)r * ldot + 16 * u);
    for (int j2 = 0; j2 < np; j2++) {
        __m512i b[2];
        for (int u = 0; u < NV; u++) b[u] = _mm512_loadu_si512(p2 + (size_t)j2 * ldp2 + 16 * u);
        const uint32_t *vr = v2 + (size_t)j2 * ldv2;
        for (int r = 0; r < MR; r++) {
            __m512i a = bcast32(vr + r);
            for (int u = 0; u < NV; u++) acc[r][u] = dpbf16(acc[r][u], b[u], a);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int u = 0; u < NV; u++) _mm512_storeu_ps(ot + (size_t)r * ldot + 16 * u, acc[r][u]);
}

/* pbuf: [np][mpad] dwords (P[2j2][q], P[2j2+1][q]);  vbuf: [np][dv] dwords (V[2j2][c], V[2j2+1][c]). */
static void pv_bf16(int nk, int dv, int mpad, const uint16_t *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                    int64_t ldot, uint32_t *pbuf, uint32_t *vbuf) {
    int np = (nk + 1) / 2;
    const int64_t ldp2 = mpad + 16; /* padded like the other tiles */
    for (int j2 = 0; j2 < np; j2++) {
        const float *p0 = pt + (size_t)(2 * j2) * ldpt;
        const float *p1 = 2 * j2 + 1 < nk ? p0 + ldpt : NULL;
        for (int q = 0; q < mpad; q += 16) {
            __m512i lo = _mm512_srli_epi32(round_hi(_mm512_loadu_ps(p0 + q)), 16);
            __m512i hi = p1 ? round_hi(_mm512_loadu_ps(p1 + q)) : _mm512_setzero_si512();
            _mm512_storeu_si512(pbuf + (size_t)j2 * ldp2 + q, _mm512_or_si512(lo, hi));
        }
        const uint16_t *v0 = v + (size_t)(2 * j2) * ldv;
        const uint16_t *v1 = 2 * j2 + 1 < nk ? v0 + ldv : NULL;
        int c = 0;
        for (; c + 16 <= dv; c += 16) {
            __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v0 + c)));
            __m512i hi = v1 ? _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v1 + c))), 16)
                            : _mm512_setzero_si512();
            _mm512_storeu_si512(vbuf + (size_t)j2 * dv + c, _mm512_or_si512(lo, hi));
        }
        for (; c < dv; c++) vbuf[(size_t)j2 * dv + c] = (uint32_t)v0[c] | (v1 ? (uint32_t)v1[c] << 16 : 0u);
    }
    for (int q = 0; q < mpad; q += 32) {
        const uint32_t *pp = pbuf + q;
        float *oq = ot + q;
        if (mpad - q >= 32) {
            int c = 0;
            for (; c + 12 <= dv; c += 12) pv_tile(12, 2, np, vbuf + c, dv, pp, ldp2, oq + (size_t)c * ldot, ldot);
            for (; c + 4 <= dv; c += 4) pv_tile(4, 2, np, vbuf + c, dv, pp, ldp2, oq + (size_t)c * ldot, ldot);
            for (; c < dv; c++) pv_tile(1, 2, np, vbuf + c, dv, pp, ldp2, oq + (size_t)c * ldot, ldot);
        } else {
            int c = 0;
            for (; c + 12 <= dv; c += 12) pv_tile(12, 1, np, vbuf + c, dv, pp, ldp2, oq + (size_t)c * ldot, ldot);
            for (; c + 4 <= dv; c += 4) pv_tile(4, 1, np, vbuf + c, dv, pp, ldp2, oq + (size_t)c * ldot, ldot);
            for (; c < dv; c++) pv_tile(1, 1, np, vbuf + c, dv, pp, ldp2, oq + (size_t)c * ldot, ldot);
        }
    }
}

const ak_fwd_bf16_kernels AK_BF16_TABLE = {AK_BF16_NAME, qk_bf16, pv_bf16};
