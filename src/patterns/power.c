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
#include "patterns/span_csr.h"

#include <stdio.h>
#include <string.h>

void ak_power_params_init(ak_power_params *p) {
    if (!p) return;
    p->block = 256;
    p->window = 5;
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
