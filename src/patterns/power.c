/*
 * PowerAttention (Chen et al. 2025, structured-sparse.md §3): causal, block-granular. Query block m
 * sees key blocks {0} U {m-W+1 .. m} U {m - 2^e : 2^e >= W, m - 2^e >= 0}; token mask (§3.3)
 *   allowed(p, j) = j <= p && (j < bs || (D = p/bs - j/bs) < W || (D & (D-1)) == 0).
 *
 * Choices where attnkit.h leaves room (also in the final report of the task that wrote this file):
 *  - blocks are taken on absolute positions p = i + nk - nq for the queries as for the keys: a row
 *    at position p belongs to query block m = p / bs (decode at position t: m = t / bs, §3.3). When
 *    nk - nq is not a multiple of bs, fixed row blocks would straddle two position blocks, so the plan
 *    then holds gather lists, one per position block (exact); otherwise fixed blocks, block_q = bs.
 *    Rows at negative positions (nq > nk) see nothing and sit in no block.
 *  - each listed key block is a block-aligned span (the last one cut at nk); adjacent blocks merge.
 *  - name: "power(bs=256,w=5)".
 */
#include "core/sparse.h"

#include <stdio.h>
#include <string.h>

void ak_power_params_init(ak_power_params *p) {
    if (!p) return;
    p->block = 256;
    p->window = 5;
}

/* ---- a plan assembled list by list (spans, optional gathered rows), made with ak_sparse_create ----
 * ak_sparse_builder cannot hold gather lists whose count differs from ceil(nq / block_q) (its
 * geometry check assumes fixed blocks), so the position-aligned blocks are assembled here. Spans of a
 * list must arrive with non-decreasing lo; overlapping or touching ones are merged. */
typedef struct csr {
    ak_ctx *ctx;
    int32_t nk;
    int64_t n_lists, cur;
    int64_t *qoff, *soff;   /* [n_lists + 1] */
    int32_t *rows;          /* gathered rows, or NULL (fixed blocks) */
    int64_t nrows;
    int32_t *lo, *hi;
    int64_t ns, cap;
    int oom;
} csr;

static void csr_free(csr *c) {
    ak__free(c->ctx, c->qoff);
    ak__free(c->ctx, c->soff);
    ak__free(c->ctx, c->rows);
    ak__free(c->ctx, c->lo);
    ak__free(c->ctx, c->hi);
}

static int csr_init(csr *c, ak_ctx *ctx, int32_t nk, int64_t n_lists, int gather, int64_t max_rows) {
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    c->nk = nk;
    c->n_lists = n_lists;
    c->qoff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(n_lists + 1));
    c->soff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(n_lists + 1));
    if (gather) c->rows = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(max_rows + 1));
    if (!c->qoff || !c->soff || (gather && !c->rows)) c->oom = 1;
    return !c->oom;
}

static void csr_list(csr *c) { /* begin the next list */
    c->qoff[c->cur] = c->nrows;
    c->soff[c->cur] = c->ns;
    c->cur++;
}

static void csr_span(csr *c, int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > c->nk) hi = c->nk;
    if (lo >= hi || c->oom) return;
    int64_t first = c->soff[c->cur - 1];
    if (c->ns > first && lo <= c->hi[c->ns - 1]) {
        if (hi > c->hi[c->ns - 1]) c->hi[c->ns - 1] = (int32_t)hi;
        return;
    }
    if (c->ns == c->cap) {
        int64_t nc = c->cap ? 2 * c->cap : 256;
        int32_t *nl = (int32_t *)ak__alloc(c->ctx, sizeof(int32_t) * (size_t)nc);
        int32_t *nh = (int32_t *)ak__alloc(c->ctx, sizeof(int32_t) * (size_t)nc);
        if (!nl || !nh) {
            ak__free(c->ctx, nl);
            ak__free(c->ctx, nh);
            c->oom = 1;
            return;
        }
        if (c->ns) {
            memcpy(nl, c->lo, sizeof(int32_t) * (size_t)c->ns);
            memcpy(nh, c->hi, sizeof(int32_t) * (size_t)c->ns);
        }
        ak__free(c->ctx, c->lo);
        ak__free(c->ctx, c->hi);
        c->lo = nl;
        c->hi = nh;
        c->cap = nc;
    }
    c->lo[c->ns] = (int32_t)lo;
    c->hi[c->ns] = (int32_t)hi;
    c->ns++;
}

/* Every fixed block of bs rows lies within one position block (rows at negative positions, which see
 * nothing, may share a block with position block 0). Always true when (nk - nq) % bs == 0 or nq <= 1. */
static int fixed_blocks_aligned(int32_t nq, int32_t nk, int32_t bs) {
    int64_t off = (int64_t)nk - nq;
    if (off % bs == 0) return 1;
    for (int64_t a = 0; a < nq; a += bs) {
        int64_t b = a + bs < nq ? a + bs : nq;
        int64_t p0 = a + off, p1 = b - 1 + off;
        if (p1 < 0) continue;
        if (p0 < 0) p0 = 0;
        if (p0 / bs != p1 / bs) return 0;
    }
    return 1;
}

/* The key blocks of query block M, as spans in increasing order: sink, power blocks, window. */
static void power_spans(csr *c, int64_t M, int64_t bs, int64_t W) {
    csr_span(c, 0, bs);
    for (int e = 62; e >= 0; e--) {
        int64_t dlt = (int64_t)1 << e;
        if (dlt > M || dlt < W) continue;
        csr_span(c, (M - dlt) * bs, (M - dlt + 1) * bs);
    }
    int64_t w0 = M - W + 1 < 0 ? 0 : M - W + 1;
    csr_span(c, w0 * bs, (M + 1) * bs);
}

ak_status ak_sparse_power(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_power_params *p, ak_sparse **out) {
    const char *fn = "ak_sparse_power";
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (!p) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: params is NULL", fn);
    if (nq < 0 || nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: nq = %d, nk = %d, must be >= 0", fn, nq, nk);
    if (p->block < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block = %d, must be >= 1", fn, p->block);
    if (p->window < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: window = %d blocks, must be >= 1", fn, p->window);
    char name[96];
    snprintf(name, sizeof name, "power(bs=%d,w=%d)", p->block, p->window);

    int32_t bs = p->block;
    int64_t off = (int64_t)nk - nq, Mlo = 0, Mhi = -1, n_lists;
    int fixed = fixed_blocks_aligned(nq, nk, bs);
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
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: %lld lists", fn, (long long)n_lists);
    }
    if (fixed) {
        for (int64_t qb = 0; qb < n_lists; qb++) {
            csr_list(&c);
            int64_t end = (qb + 1) * bs < nq ? (qb + 1) * bs : nq, plast = end - 1 + off;
            if (plast >= 0) power_spans(&c, plast / bs, bs, p->window);
        }
    } else {
        for (int64_t M = Mlo; M <= Mhi; M++) {
            csr_list(&c);
            int64_t i0 = M * bs - off, i1 = (M + 1) * bs - off;
            if (i0 < 0) i0 = 0;
            if (i1 > nq) i1 = nq;
            for (int64_t i = i0; i < i1; i++) c.rows[c.nrows++] = (int32_t)i;
            power_spans(&c, M, bs, p->window);
        }
    }
    c.qoff[n_lists] = c.nrows;
    c.soff[n_lists] = c.ns;
    if (c.oom) {
        csr_free(&c);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: spans", fn);
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
