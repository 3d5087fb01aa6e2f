/*
 * MoA (Fu et al. 2024; reference thu-nics/MoA) prefill as a sparse plan, and the reader of MoA plan
 * files ({"alphas": [L][H], "betas": [L][H]}).
 *
 * Per head h (spec 5.2): N_plan = nk + max_new_tokens, S_h = trunc(alpha_h + beta_h * N_plan) (Python's
 * int(), computed in double from the float alpha/beta), S_h = min(S_h, N_plan),
 * S_h = 64 * ceil(max(S_h, 128) / 64), sink_h = min(S_h, 64), band_h = S_h - sink_h.
 *   block granular (default, the reference's prefill): query block m (64 positions) sees the key blocks
 *     [0, sink_h / 64) and [m + 1 - band_h / 64, m], the diagonal block token-causal;
 *   token_exact = 1: row at position p sees keys [0, sink_h) and [p - band_h + 1, p] (the decode rule).
 * Causal only. n_heads = the number of alphas (one per KV head or one per query head).
 *
 * Choices:
 *  - Block indices are positions: row i sits at pos(i) = i + nk - nq, query block m = floor(pos / 64).
 *    When nk - nq is not a multiple of 64 the rows are gathered by query block (one list per block).
 *  - The reference's fallback to dense prefill when the average KV length is <= 64 is not reproduced:
 *    the plan is always the pattern above.
 *  - ak_moa_load: a layer with more heads than max_heads sets *n_heads to the layer's head count, writes
 *    nothing and returns AK_ERR_INVALID_ARGUMENT (call again with room for *n_heads). Values must be
 *    finite and representable as float; every row of both arrays must have the same length; alphas and
 *    betas must have the same number of layers; a layer with no heads is refused (AK_ERR_BAD_PLAN).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/sparse.h"

#define MOA_BLOCK 64

void ak_moa_params_init(ak_moa_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->n_heads = 0;
    p->alpha = NULL;
    p->beta = NULL;
    p->max_new_tokens = 1024;
    p->token_exact = 0;
}

static int64_t floordiv64(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* S_h of spec 5.2 for N_plan tokens. */
static int64_t moa_span(float alpha, float beta, int64_t n_plan) {
    double s = trunc((double)alpha + (double)beta * (double)n_plan);
    if (s > (double)n_plan) s = (double)n_plan;
    if (s < 128.0) s = 128.0;
    int64_t si = (int64_t)s;
    return (si + MOA_BLOCK - 1) / MOA_BLOCK * MOA_BLOCK;
}

/* Query blocks by position, as in s2.c: list t is query block m0 + t (fixed blocks when each lies in one
 * query block, else gathered rows). */
typedef struct qgeom {
    int gather;
    int32_t block_q, n_qblocks;
    int64_t m0, n_pos, D, bs;
} qgeom;

static void qgeom_init(qgeom *g, int32_t nq, int32_t nk, int32_t bs) {
    g->bs = bs;
    g->D = (int64_t)nk - nq;
    g->m0 = floordiv64(g->D, bs);
    int64_t r = g->D - g->m0 * bs, fixed_n = ((int64_t)nq + bs - 1) / bs;
    g->n_pos = nq > 0 ? floordiv64(g->D + nq - 1, bs) - g->m0 + 1 : 0;
    g->gather = !(r == 0 || nq <= bs - r);
    g->block_q = bs; /* with gathered rows: the largest block's size */
    g->n_qblocks = (int32_t)(g->gather ? g->n_pos : fixed_n);
}

static void qgeom_rows(const qgeom *g, int32_t nq, int64_t t, int64_t *lo, int64_t *hi) {
    int64_t m = g->m0 + t;
    *lo = m * g->bs - g->D;
    *hi = (m + 1) * g->bs - g->D;
    if (*lo < 0) *lo = 0;
    if (*hi > nq) *hi = nq;
}

static ak_status add_span64(ak_sparse_builder *b, int32_t h, int32_t t, int64_t lo, int64_t hi, int64_t nk) {
    if (lo < 0) lo = 0;
    if (hi > nk) hi = nk;
    if (lo >= hi) return AK_OK;
    return ak_sparse_builder_add_span(b, 0, h, t, (int32_t)lo, (int32_t)hi);
}

ak_status ak_sparse_moa(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_moa_params *p, ak_sparse **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "moa: out is NULL");
    *out = NULL;
    if (!p) return ak__fail(ctx, AK_ERR_NULL_POINTER, "moa: params is NULL");
    if (nq < 0 || nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "moa: nq = %d, nk = %d, must be >= 0", nq, nk);
    if (p->n_heads < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "moa: n_heads = %d, must be >= 1", p->n_heads);
    if (!p->alpha || !p->beta) return ak__fail(ctx, AK_ERR_NULL_POINTER, "moa: alpha or beta is NULL");
    if (p->max_new_tokens < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "moa: max_new_tokens = %d, must be >= 0", p->max_new_tokens);
    if (p->token_exact != 0 && p->token_exact != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "moa: token_exact = %d, must be 0 or 1", p->token_exact);
    for (int32_t h = 0; h < p->n_heads; h++)
        if (!isfinite(p->alpha[h]) || !isfinite(p->beta[h]))
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "moa: head %d: alpha = %g, beta = %g, both must be finite", h, (double)p->alpha[h],
                            (double)p->beta[h]);
    int64_t n_plan = (int64_t)nk + p->max_new_tokens, lim = (int64_t)nq + nk + 1;

    qgeom q;
    qgeom_init(&q, nq, nk, MOA_BLOCK);
    ak_sparse_desc geom;
    ak_sparse_desc_init(&geom);
    geom.n_batch = 1;
    geom.n_heads = p->n_heads;
    geom.nq = nq;
    geom.nk = nk;
    geom.causal = 1;
    if (p->token_exact) {
        geom.block_q = MOA_BLOCK;
        geom.n_qblocks = (nq + MOA_BLOCK - 1) / MOA_BLOCK;
    } else {
        geom.block_q = q.block_q;
        geom.n_qblocks = q.n_qblocks;
    }
    ak_sparse_builder *b = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &geom, &b);
    if (st != AK_OK) return st;
    int64_t smin = INT64_MAX, smax = 0;
    for (int32_t h = 0; h < p->n_heads && st == AK_OK; h++) {
        int64_t S = moa_span(p->alpha[h], p->beta[h], n_plan);
        int64_t sink = S < MOA_BLOCK ? S : MOA_BLOCK, band = S - sink;
        if (S < smin) smin = S;
        if (S > smax) smax = S;
        if (p->token_exact) {
            int64_t dhi = band - 1 < lim ? band - 1 : lim; /* keys pos - [0, band - 1] */
            for (int32_t t = 0; t < geom.n_qblocks && st == AK_OK; t++) {
                st = add_span64(b, h, t, 0, sink, nk);
                if (st == AK_OK && dhi >= 0) st = ak_sparse_builder_add_band(b, 0, h, t, 0, (int32_t)dhi);
            }
        } else {
            int64_t nb = band / MOA_BLOCK;
            for (int64_t t = 0; t < q.n_pos && st == AK_OK; t++) {
                int64_t m = q.m0 + t;
                if (q.gather) {
                    int64_t lo, hi;
                    qgeom_rows(&q, nq, t, &lo, &hi);
                    for (int64_t i = lo; i < hi && st == AK_OK; i++) st = ak_sparse_builder_add_row(b, 0, h, (int32_t)t, (int32_t)i);
                }
                if (st != AK_OK || m < 0) continue; /* a block before the first key sees nothing (causal) */
                st = add_span64(b, h, (int32_t)t, 0, sink / MOA_BLOCK * MOA_BLOCK, nk);
                if (st == AK_OK && nb > 0) st = add_span64(b, h, (int32_t)t, (m + 1 - nb) * MOA_BLOCK, (m + 1) * MOA_BLOCK, nk);
            }
        }
    }
    if (st == AK_OK) {
        char name[256];
        snprintf(name, sizeof name, "moa(h=%d,S=%lld..%lld,n_plan=%lld,%s)", p->n_heads, (long long)smin, (long long)smax,
                 (long long)n_plan, p->token_exact ? "token" : "block64");
        st = ak__sparse_finish_named(b, name, out);
    }
    ak_sparse_builder_destroy(b);
    return st;
}

/* One numeric row of the plan file: its length, and the values when `dst` is given. */
static ak_status read_row(ak_ctx *ctx, const ak_json *j, int32_t row, const char *what, int32_t layer, float *dst, int32_t *len) {
    if (j->v[row].type != AK_J_ARR)
        return ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: %s[%d] is not an array", what, layer);
    int32_t n = 0;
    for (int32_t c = j->v[row].first; c >= 0; c = j->v[c].next, n++) {
        const ak_jval *v = &j->v[c];
        if (v->type != AK_J_NUM) return ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: %s[%d][%d] is not a number", what, layer, n);
        if (!isfinite(v->num) || fabs(v->num) > FLT_MAX)
            return ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: %s[%d][%d] = %g is not a finite float", what, layer, n, v->num);
        if (dst) dst[n] = (float)v->num;
    }
    *len = n;
    return AK_OK;
}

ak_status ak_moa_load(ak_ctx *ctx, const char *json, size_t len, int32_t layer, int32_t max_heads, float *alpha, float *beta,
                      int32_t *n_heads) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!json || !n_heads) return ak__fail(ctx, AK_ERR_NULL_POINTER, "MoA plan: json or n_heads is NULL");
    if (max_heads < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "MoA plan: max_heads = %d, must be >= 0", max_heads);
    if (max_heads > 0 && (!alpha || !beta)) return ak__fail(ctx, AK_ERR_NULL_POINTER, "MoA plan: alpha or beta is NULL");
    if (layer < 0) return ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: layer %d is absent (negative)", layer);
    ak_json j;
    ak_status st = ak__json_parse(ctx, json, len, &j);
    if (st != AK_OK) return st;
    const char *names[2] = {"alphas", "betas"};
    int32_t arr[2], rows[2] = {0, 0}, sel[2] = {-1, -1}, width = -1;
    if (j.v[0].type != AK_J_OBJ) st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: the root is not an object");
    for (int a = 0; a < 2 && st == AK_OK; a++) {
        arr[a] = ak__json_get(&j, 0, names[a]);
        if (arr[a] < 0) {
            st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: no \"%s\" member", names[a]);
            break;
        }
        arr[a] = j.v[arr[a]].type == AK_J_ARR ? arr[a] : -1;
        if (arr[a] < 0) {
            st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: \"%s\" is not an array", names[a]);
            break;
        }
        for (int32_t c = j.v[arr[a]].first; c >= 0 && st == AK_OK; c = j.v[c].next, rows[a]++) {
            int32_t w = 0;
            st = read_row(ctx, &j, c, names[a], rows[a], NULL, &w);
            if (st != AK_OK) break;
            if (width >= 0 && w != width)
                st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: %s[%d] has %d heads, the rows before it %d", names[a], rows[a], w, width);
            width = w;
            if (rows[a] == layer) sel[a] = c;
        }
    }
    if (st == AK_OK && rows[0] != rows[1])
        st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: %d layers of alphas but %d of betas", rows[0], rows[1]);
    if (st == AK_OK && layer >= rows[0])
        st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: layer %d is absent (the plan has %d layers)", layer, rows[0]);
    if (st == AK_OK && width < 1) st = ak__fail(ctx, AK_ERR_BAD_PLAN, "MoA plan: layer %d has no heads", layer);
    if (st == AK_OK) {
        *n_heads = width;
        if (width > max_heads) {
            st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "MoA plan: layer %d has %d heads, max_heads = %d", layer, width, max_heads);
        } else {
            int32_t w;
            st = read_row(ctx, &j, sel[0], names[0], layer, alpha, &w);
            if (st == AK_OK) st = read_row(ctx, &j, sel[1], names[1], layer, beta, &w);
        }
    }
    ak__json_free(ctx, &j);
    return st;
}
