/*
 * Block-diagonal (document) mask for packed sequences: doc_off cuts the n tokens (nq = nk = n) into
 * documents [doc_off[d], doc_off[d+1]); a row sees the keys of its own document only, and with causal
 * only the earlier ones (the plan's causal flag).
 *
 * Choices where attnkit.h leaves room (also in the final report of the task that wrote this file):
 *  - every list holds one span, its document [doc_off[d], doc_off[d+1]).
 *  - exactness when a fixed block of block_q rows would straddle a document boundary: the query blocks
 *    are then cut at the boundaries -- gather lists of consecutive rows, each document cut into
 *    ceil(len / block_q) blocks of at most block_q rows (empty documents: no block). When every
 *    boundary is a multiple of block_q (or n), the plan uses plain fixed blocks instead.
 *  - n_docs = 0 is allowed for n = 0 only (doc_off = {0}); empty documents are allowed.
 *  - the plan is assembled directly in CSR form (ak_sparse_create): ak_sparse_builder cannot hold
 *    gather lists whose count differs from ceil(nq / block_q).
 *  - name: "document(docs=3,causal)" or "document(docs=3)".
 */
#include "core/sparse.h"

#include <stdio.h>
#include <string.h>

ak_status ak_sparse_document(ak_ctx *ctx, int32_t n, const int32_t *doc_off, int32_t n_docs, int32_t causal, int32_t block_q,
                             ak_sparse **out) {
    const char *fn = "ak_sparse_document";
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (n < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: n = %d, must be >= 0", fn, n);
    if (n_docs < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: n_docs = %d, must be >= 0", fn, n_docs);
    if (!doc_off) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: doc_off is NULL (it has n_docs + 1 = %lld entries)", fn,
                                  (long long)n_docs + 1);
    if (causal != 0 && causal != 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: causal = %d, must be 0 or 1", fn, causal);
    if (block_q < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block_q = %d, must be >= 1", fn, block_q);
    if (doc_off[0] != 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: doc_off[0] = %d, must be 0", fn, doc_off[0]);
    for (int32_t d = 0; d < n_docs; d++)
        if (doc_off[d + 1] < doc_off[d])
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: doc_off decreases at entry %d (%d -> %d)", fn, d + 1, doc_off[d],
                            doc_off[d + 1]);
    if (doc_off[n_docs] != n)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: doc_off[n_docs = %d] = %d, must equal n = %d (the total token count)", fn,
                        n_docs, doc_off[n_docs], n);
    char name[96];
    snprintf(name, sizeof name, "document(docs=%d%s)", n_docs, causal ? ",causal" : "");

    int fixed = 1;
    for (int32_t d = 0; d <= n_docs && fixed; d++) fixed = doc_off[d] % block_q == 0 || doc_off[d] == n;
    int64_t n_lists = 0;
    if (fixed) {
        n_lists = ((int64_t)n + block_q - 1) / block_q;
    } else {
        for (int32_t d = 0; d < n_docs; d++) n_lists += ((int64_t)doc_off[d + 1] - doc_off[d] + block_q - 1) / block_q;
    }
    if (n_lists > INT32_MAX) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: %lld query blocks, at most 2^31-1", fn, (long long)n_lists);
    size_t offb = sizeof(int64_t) * (size_t)(n_lists + 1), nb = sizeof(int32_t) * (size_t)(n_lists + 1);
    int64_t *qoff = fixed ? NULL : (int64_t *)ak__alloc(ctx, offb), *soff = (int64_t *)ak__alloc(ctx, offb);
    int32_t *rows = fixed ? NULL : (int32_t *)ak__alloc(ctx, sizeof(int32_t) * ((size_t)n + 1));
    int32_t *lo = (int32_t *)ak__alloc(ctx, nb), *hi = (int32_t *)ak__alloc(ctx, nb);
    ak_status st = AK_OK;
    if (!soff || !lo || !hi || (!fixed && (!qoff || !rows))) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: %lld lists", fn, (long long)n_lists);
        goto done;
    }
    int64_t r = 0, ns = 0;
    if (fixed) { /* block [a, a + block_q) lies in one document: the one that holds row a */
        int32_t d = 0;
        for (int64_t a = 0; a < n; a += block_q, r++) {
            while (doc_off[d + 1] <= a) d++;
            soff[r] = ns;
            lo[ns] = doc_off[d];
            hi[ns] = doc_off[d + 1];
            ns++;
        }
    } else {
        int64_t nr = 0;
        for (int32_t d = 0; d < n_docs; d++)
            for (int64_t a = doc_off[d]; a < doc_off[d + 1]; a += block_q, r++) {
                int64_t b = a + block_q < doc_off[d + 1] ? a + block_q : doc_off[d + 1];
                qoff[r] = nr;
                for (int64_t i = a; i < b; i++) rows[nr++] = (int32_t)i;
                soff[r] = ns;
                lo[ns] = doc_off[d];
                hi[ns] = doc_off[d + 1];
                ns++;
            }
        qoff[r] = nr;
    }
    soff[r] = ns;
    ak_sparse_desc desc;
    ak_sparse_desc_init(&desc);
    desc.nq = n;
    desc.nk = n;
    desc.causal = causal;
    desc.block_q = block_q;
    desc.n_qblocks = (int32_t)n_lists;
    desc.qrow_off = qoff;
    desc.qrows = rows;
    desc.span_off = soff;
    desc.span_lo = lo;
    desc.span_hi = hi;
    desc.name = name;
    st = ak_sparse_create(ctx, &desc, out);
done:
    ak__free(ctx, qoff);
    ak__free(ctx, soff);
    ak__free(ctx, rows);
    ak__free(ctx, lo);
    ak__free(ctx, hi);
    return st;
}
