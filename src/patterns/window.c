/*
 * Sliding window with sink tokens (StreamingLLM / MInference A-shape, structured-sparse.md §6.4) and
 * the strided pattern of the Sparse Transformer (Child et al. 2019): causal plan builders.
 *
 * Row i sits at position p = i + nk - nq (bottom-right, as every plan). Choices where attnkit.h leaves
 * room (also in the final report of the task that wrote this file):
 *  - token-exact window: one list per fixed block of p->block_q rows, each holding the band [0, w-1]
 *    (keys p-w+1 .. p) and the span [0, n_sink); the plan's causal flag clips the sinks at p.
 *  - dilation r > 1: on self-attention with window * r <= N, causal 1-D Neighborhood Attention with
 *    kernel = window and dilation r (window_dilated below: exact and without the bands' waste); else
 *    the single-delta bands [r*t, r*t], t = 0 .. window-1, cut at the block's largest position (deltas
 *    beyond it reach no key). Token-exact only: dilation > 1 with block > 0 is AK_ERR_INVALID_ARGUMENT.
 *  - block-granular (block = b > 0): blocks are taken on absolute positions, both for the keys
 *    (key block k = [k*b, (k+1)*b)) and for the queries: a row at position p belongs to query block
 *    M = p / b and sees the key blocks M - window/b + 1 .. M (clipped at p by causality) plus the sinks.
 *    When nk - nq is not a multiple of b, fixed row blocks would straddle two position blocks, so the
 *    plan then holds gather lists, one per position block (exact); otherwise fixed blocks,
 *    block_q = b. Rows at negative positions (nq > nk) see nothing and sit in no block.
 *    p->block_q is ignored in this mode (not validated either).
 *  - strided: band [0, local-1] plus the single-delta bands at every multiple of `stride` that is
 *    >= local, again cut at the block's largest position (stride 1: one band), plus [0, n_sink).
 *  - names: "window(w=512,sink=4)" plus ",dil=r" / ",block=b" when set;
 *    "strided(local=256,stride=256,sink=0)".
 *  - cost note: the executor runs a single-delta band over its hull (block_q keys per band for a
 *    block of block_q rows, one useful per row), so dilated windows and strided slash lines compute
 *    up to block_q times their useful pairs (ak_plan_sparse_stats waste at 128K tokens, block_q 64:
 *    63.5 for the default window with dilation 4, 32.5 for the default strided plan); exact, not fast.
 *  - a plan with no entry at all (nq = 0, nk = 0, every row before the first key) is made with
 *    ak_sparse_create: ak__sparse_finish_named would qsort a NULL entry array (undefined behaviour).
 */
#include "patterns/span_csr.h"

#include <stdio.h>
#include <string.h>

void ak_window_params_init(ak_window_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->window = 512;
    p->n_sink = 4;
    p->dilation = 1;
    p->block = 0;
    p->block_q = 64;
}

void ak_strided_params_init(ak_strided_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->local = 256;
    p->stride = 256;
    p->n_sink = 0;
    p->block_q = 64;
}


/* The keys of position block M (window blocks M - wb + 1 .. M, the sinks). */
static void window_block_spans(csr *c, int64_t M, int64_t bs, int64_t wb, int64_t n_sink) {
    if (n_sink > 0) csr_span(c, 0, n_sink);
    csr_span(c, (M - wb + 1) * bs, (M + 1) * bs);
}

static ak_status window_blocks(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_window_params *p, const char *name, ak_sparse **out) {
    int32_t bs = p->block;
    int64_t wb = p->window / bs, off = (int64_t)nk - nq;
    int fixed = fixed_blocks_aligned(nq, nk, bs);
    int64_t n_lists;
    int64_t Mlo = 0, Mhi = -1;
    if (fixed) {
        n_lists = ((int64_t)nq + bs - 1) / bs;
    } else { /* gather: one list per position block with a row at position >= 0 */
        int64_t pfirst = off > 0 ? off : 0, plast = (int64_t)nq - 1 + off;
        if (plast >= pfirst) {
            Mlo = pfirst / bs;
            Mhi = plast / bs;
        }
        n_lists = Mhi - Mlo + 1;
    }
    csr c;
    if (!csr_init(&c, ctx, nk, n_lists, !fixed, nq)) {
        csr_free(&c);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "window plan (%lld lists)", (long long)n_lists);
    }
    if (fixed) {
        for (int64_t qb = 0; qb < n_lists; qb++) {
            csr_list(&c);
            int64_t end = (qb + 1) * bs < nq ? (qb + 1) * bs : nq, plast = end - 1 + off;
            if (plast >= 0) window_block_spans(&c, plast / bs, bs, wb, p->n_sink);
        }
    } else {
        for (int64_t M = Mlo; M <= Mhi; M++) {
            csr_list(&c);
            int64_t i0 = M * bs - off, i1 = (M + 1) * bs - off;
            if (i0 < 0) i0 = 0;
            if (i1 > nq) i1 = nq;
            for (int64_t i = i0; i < i1; i++) c.rows[c.nrows++] = (int32_t)i;
            window_block_spans(&c, M, bs, wb, p->n_sink);
        }
    }
    c.qoff[n_lists] = c.nrows;
    c.soff[n_lists] = c.ns;
    if (c.oom) {
        csr_free(&c);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "window plan spans");
    }
    ak_sparse_desc d;
    ak_sparse_desc_init(&d);
    d.nq = nq;
    d.nk = nk;
    d.causal = 1;
    d.block_q = bs;
    d.n_qblocks = (int32_t)n_lists;
    d.qrow_off = fixed ? NULL : c.qoff;
    d.qrows = fixed ? NULL : c.rows;
    d.span_off = c.soff;
    d.span_lo = c.lo;
    d.span_hi = c.hi;
    d.name = name;
    ak_status st = ak_sparse_create(ctx, &d, out);
    csr_free(&c);
    return st;
}

/* Shared entry checks: ctx, out, params, sizes. */
static ak_status entry(ak_ctx *ctx, const char *fn, int32_t nq, int32_t nk, const void *p, ak_sparse **out) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (!p) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: params is NULL", fn);
    if (nq < 0 || nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: nq = %d, nk = %d, must be >= 0", fn, nq, nk);
    return AK_OK;
}

/* The geometry of a causal plan of n_heads = 1 with fixed blocks of block_q rows. */
static ak_sparse_desc fixed_geom(int32_t nq, int32_t nk, int32_t block_q) {
    ak_sparse_desc g;
    ak_sparse_desc_init(&g);
    g.nq = nq;
    g.nk = nk;
    g.causal = 1;
    g.block_q = block_q;
    g.n_qblocks = (int32_t)(((int64_t)nq + block_q - 1) / block_q);
    return g;
}

/* Finish a builder; with no entry at all (every row before the first key, nq = 0, nk = 0) make the
 * empty plan directly: ak__sparse_finish_named would qsort a NULL entry array (undefined behaviour). */
static ak_status finish(ak_ctx *ctx, ak_sparse_builder *b, const ak_sparse_desc *g, int64_t n_entries, const char *name,
                        ak_sparse **out) {
    if (n_entries > 0) return ak__sparse_finish_named(b, name, out);
    ak_sparse_desc d = *g;
    d.name = name;
    return ak_sparse_create(ctx, &d, out);
}

/* A dilated causal window on self-attention (nq = nk = N, window * dilation <= N) is causal 1-D
 * Neighborhood Attention with kernel = window and that dilation: in dilation group g (positions
 * g + r*u) NATTEN's causal window is [max(u - w + 1, 0), u], i.e. exactly the keys p - r*t, t < w.
 * Queries are grouped by residue into tiles of 64 in-group rows, so each tile's keys are one strided
 * run of 64 + w - 1 keys instead of w single-key bands of 64 keys (waste ~(64 + w - 1)/w, not ~64). */
static ak_status window_dilated(ak_ctx *ctx, int32_t n, const ak_window_params *p, const char *name, ak_sparse **out) {
    const int32_t r = p->dilation, tq = 64;
    int64_t nqb = 0;
    for (int32_t g = 0; g < r && g < n; g++) nqb += ((n - g + r - 1) / r + tq - 1) / tq;
    ak_sparse_desc geo;
    ak_sparse_desc_init(&geo);
    geo.nq = geo.nk = n;
    geo.causal = 1;
    geo.block_q = tq;
    geo.n_qblocks = (int32_t)nqb;
    geo.na_geom.ndim = 1;
    geo.na_geom.extent[0] = n;
    geo.na_geom.kernel[0] = p->window;
    geo.na_geom.dilation[0] = r;
    geo.na_geom.stride[0] = 1;
    geo.na_geom.causal[0] = 1;
    ak_sparse_builder *b = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &geo, &b);
    if (st != AK_OK) return st;
    int32_t qb = 0;
    for (int32_t g = 0; g < r && g < n && st == AK_OK; g++) {
        int32_t Lg = (n - g + r - 1) / r;
        for (int32_t u0 = 0; u0 < Lg && st == AK_OK; u0 += tq, qb++) {
            for (int32_t u = u0; u < Lg && u < u0 + tq && st == AK_OK; u++) st = ak_sparse_builder_add_row(b, 0, 0, qb, g + r * u);
            if (st == AK_OK) st = ak_sparse_builder_set_na(b, 0, 0, qb);
            if (st == AK_OK && p->n_sink > 0) st = ak_sparse_builder_add_span(b, 0, 0, qb, 0, p->n_sink);
        }
    }
    if (st == AK_OK) st = ak__sparse_finish_named(b, name, out);
    ak_sparse_builder_destroy(b);
    return st;
}

ak_status ak_sparse_window(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_window_params *p, ak_sparse **out) {
    const char *fn = "ak_sparse_window";
    ak_status st = entry(ctx, fn, nq, nk, p, out);
    if (st != AK_OK) return st;
    if (p->window < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: window = %d, must be >= 1", fn, p->window);
    if (p->n_sink < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: n_sink = %d, must be >= 0", fn, p->n_sink);
    if (p->dilation < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: dilation = %d, must be >= 1", fn, p->dilation);
    if (p->block < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block = %d, must be >= 0 (0 = token-exact)", fn, p->block);
    if (p->block > 0) {
        if (p->window % p->block != 0)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: window = %d is not a multiple of block = %d (block-granular form)", fn,
                            p->window, p->block);
        if (p->dilation != 1)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: dilation = %d needs the token-exact form (block = 0), block = %d", fn,
                            p->dilation, p->block);
    } else if (p->block_q < 1) {
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block_q = %d, must be >= 1", fn, p->block_q);
    }
    char name[128];
    int n = snprintf(name, sizeof name, "window(w=%d,sink=%d", p->window, p->n_sink);
    if (p->dilation > 1) n += snprintf(name + n, sizeof name - (size_t)n, ",dil=%d", p->dilation);
    if (p->block > 0) n += snprintf(name + n, sizeof name - (size_t)n, ",block=%d", p->block);
    snprintf(name + n, sizeof name - (size_t)n, ")");
    if (p->block > 0) return window_blocks(ctx, nq, nk, p, name, out);
    if (p->dilation > 1 && nq == nk && nk > 0 && (int64_t)p->window * p->dilation <= nk) return window_dilated(ctx, nk, p, name, out);

    ak_sparse_builder *b = NULL;
    ak_sparse_desc g = fixed_geom(nq, nk, p->block_q);
    if ((st = ak_sparse_builder_create(ctx, &g, &b)) != AK_OK) return st;
    int64_t nqb = g.n_qblocks, off = (int64_t)nk - nq, n_entries = 0;
    for (int64_t qb = 0; qb < nqb && st == AK_OK; qb++) {
        int64_t end = (qb + 1) * p->block_q < nq ? (qb + 1) * p->block_q : nq, plast = end - 1 + off;
        if (plast < 0) continue; /* every row of the block precedes the first key */
        n_entries++;             /* the band below (never empty: plast >= 0) */
        if (p->n_sink > 0) st = ak_sparse_builder_add_span(b, 0, 0, (int32_t)qb, 0, p->n_sink);
        if (st != AK_OK) break;
        if (p->dilation == 1) {
            int64_t hi = (int64_t)p->window - 1 < plast ? (int64_t)p->window - 1 : plast;
            st = ak_sparse_builder_add_band(b, 0, 0, (int32_t)qb, 0, (int32_t)hi);
        } else {
            for (int64_t t = 0; t < p->window && t * p->dilation <= plast && st == AK_OK; t++)
                st = ak_sparse_builder_add_band(b, 0, 0, (int32_t)qb, (int32_t)(t * p->dilation), (int32_t)(t * p->dilation));
        }
    }
    if (st == AK_OK) st = finish(ctx, b, &g, n_entries, name, out);
    ak_sparse_builder_destroy(b);
    return st;
}

ak_status ak_sparse_strided(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_strided_params *p, ak_sparse **out) {
    const char *fn = "ak_sparse_strided";
    ak_status st = entry(ctx, fn, nq, nk, p, out);
    if (st != AK_OK) return st;
    if (p->local < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: local = %d, must be >= 1", fn, p->local);
    if (p->stride < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: stride = %d, must be >= 1", fn, p->stride);
    if (p->n_sink < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: n_sink = %d, must be >= 0", fn, p->n_sink);
    if (p->block_q < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block_q = %d, must be >= 1", fn, p->block_q);
    char name[128];
    snprintf(name, sizeof name, "strided(local=%d,stride=%d,sink=%d)", p->local, p->stride, p->n_sink);

    ak_sparse_builder *b = NULL;
    ak_sparse_desc g = fixed_geom(nq, nk, p->block_q);
    if ((st = ak_sparse_builder_create(ctx, &g, &b)) != AK_OK) return st;
    int64_t nqb = g.n_qblocks, off = (int64_t)nk - nq, s = p->stride, n_entries = 0;
    for (int64_t qb = 0; qb < nqb && st == AK_OK; qb++) {
        int64_t end = (qb + 1) * p->block_q < nq ? (qb + 1) * p->block_q : nq, plast = end - 1 + off;
        if (plast < 0) continue;
        n_entries++; /* the local band below (never empty: plast >= 0) */
        int32_t q = (int32_t)qb;
        if (p->n_sink > 0) st = ak_sparse_builder_add_span(b, 0, 0, q, 0, p->n_sink);
        if (st != AK_OK) break;
        int64_t local_hi = (int64_t)p->local - 1 < plast ? (int64_t)p->local - 1 : plast;
        st = ak_sparse_builder_add_band(b, 0, 0, q, 0, (int32_t)local_hi);
        if (s == 1) { /* every distance: the whole causal past */
            if (st == AK_OK && plast > local_hi) st = ak_sparse_builder_add_band(b, 0, 0, q, (int32_t)(local_hi + 1), (int32_t)plast);
            continue;
        }
        for (int64_t dlt = ((int64_t)p->local + s - 1) / s * s; dlt <= plast && st == AK_OK; dlt += s)
            st = ak_sparse_builder_add_band(b, 0, 0, q, (int32_t)dlt, (int32_t)dlt);
    }
    if (st == AK_OK) st = finish(ctx, b, &g, n_entries, name, out);
    ak_sparse_builder_destroy(b);
    return st;
}
