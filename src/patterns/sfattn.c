/*
 * SF-Attn (SinkLoRA, spec 6.2, a reconstruction: the reference repository has no SF-Attn code) as a
 * sparse plan, causal, one plan head per query head. Self-attention: nq = nk = N, N % G == 0, G even.
 *
 * Head h is shifted iff shift_lo <= h < shift_hi (defaults [Hq/2, Hq), LongLoRA's choice). Groups:
 *   unshifted: [kG, (k+1)G)
 *   shifted:   [0, G/2), [G/2, 3G/2), ..., [N - G/2, N)   (segmentation and reassembly: no wrap-around)
 * Row i of head h sees key j iff j <= i and (j < n_sink or gid_h(i) == gid_h(j)), with
 * gid_h(p) = shifted ? (p + G/2) div G : p div G.
 *
 * Choices: the sink rows are causal (spec 8's recommended default: a sink row sees only j <= i, not the
 * Longformer-style B(i,:) = 1); a default (-1) shift bound is resolved on its own (shift_lo = -1 ->
 * Hq/2, shift_hi = -1 -> Hq) and the resolved set must satisfy 0 <= shift_lo <= shift_hi <= Hq (an
 * empty set, e.g. [0, 0), is valid); num_heads_q and group have no default (0 in
 * ak_sfattn_params_init; the builder refuses them until set).
 * Plan blocks: fixed blocks of block_q rows, block_q = the largest divisor of G/2 that is <= 64, so
 * that every block lies inside one group of both kinds; a block's list is the span of its group plus
 * the sink span [0, n_sink) (the causal cut is the plan's). With G/2 prime (and > 64) this is one row
 * per block: correct but slow; such group sizes are unusual.
 */
#include <stdio.h>
#include <string.h>

#include "core/sparse.h"

void ak_sfattn_params_init(ak_sfattn_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->num_heads_q = 0;
    p->group = 0;
    p->n_sink = 4;
    p->shift_lo = -1;
    p->shift_hi = -1;
}

ak_status ak_sparse_sfattn(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_sfattn_params *p, ak_sparse **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sfattn: out is NULL");
    *out = NULL;
    if (!p) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sfattn: params is NULL");
    if (nq < 0 || nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: nq = %d, nk = %d, must be >= 0", nq, nk);
    if (nq != nk)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: nq = %d != nk = %d (SF-Attn is self-attention over one sequence)", nq, nk);
    const int32_t Hq = p->num_heads_q, G = p->group, N = nk;
    if (Hq < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: num_heads_q = %d, must be >= 1", Hq);
    if (G < 2 || G % 2 != 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: group = %d, must be even and >= 2", G);
    if (N % G != 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: nk = %d is not a multiple of group = %d", N, G);
    if (p->n_sink < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: n_sink = %d, must be >= 0", p->n_sink);
    if (p->shift_lo < -1 || p->shift_hi < -1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: shift set [%d, %d): bounds must be >= 0 (or -1 = default)", p->shift_lo,
                        p->shift_hi);
    int32_t lo = p->shift_lo < 0 ? Hq / 2 : p->shift_lo, hi = p->shift_hi < 0 ? Hq : p->shift_hi;
    if (lo > hi || hi > Hq)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sfattn: shift set [%d, %d) must satisfy 0 <= lo <= hi <= num_heads_q = %d", lo, hi,
                        Hq);
    const int32_t half = G / 2;
    int32_t bq = 1;
    for (int32_t d = half < 64 ? half : 64; d >= 1; d--)
        if (half % d == 0) {
            bq = d;
            break;
        }
    ak_sparse_desc geom;
    ak_sparse_desc_init(&geom);
    geom.n_batch = 1;
    geom.n_heads = Hq;
    geom.nq = N;
    geom.nk = N;
    geom.causal = 1;
    geom.block_q = bq;
    geom.n_qblocks = N / bq;
    ak_sparse_builder *b = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &geom, &b);
    if (st != AK_OK) return st;
    for (int32_t h = 0; h < Hq && st == AK_OK; h++) {
        int shifted = h >= lo && h < hi;
        for (int32_t t = 0; t < geom.n_qblocks && st == AK_OK; t++) {
            int64_t i0 = (int64_t)t * bq, g0, g1;
            if (shifted) {
                g0 = (i0 + half) / G * G - half;
                g1 = g0 + G;
            } else {
                g0 = i0 / G * G;
                g1 = g0 + G;
            }
            if (g0 < 0) g0 = 0;
            if (g1 > N) g1 = N;
            st = ak_sparse_builder_add_span(b, 0, h, t, (int32_t)g0, (int32_t)g1);
            if (st == AK_OK && p->n_sink > 0) st = ak_sparse_builder_add_span(b, 0, h, t, 0, p->n_sink < N ? p->n_sink : N);
        }
    }
    if (st == AK_OK) {
        char name[256];
        snprintf(name, sizeof name, "sfattn(G=%d,sink=%d,shift=[%d,%d))", G, p->n_sink, lo, hi);
        st = ak__sparse_finish_named(b, name, out);
    }
    ak_sparse_builder_destroy(b);
    return st;
}
