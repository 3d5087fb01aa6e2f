/*
 * A user block mask as a sparse plan: mask[(h * n_qb + m) * n_kb + k] != 0 lets query block m
 * (rows [m*block_q, (m+1)*block_q)) of plan head h see key block k (keys [k*block_k, (k+1)*block_k),
 * the last one cut at nk).
 *
 * Choices where attnkit.h leaves room (also in the final report of the task that wrote this file):
 *  - query blocks are row blocks (fixed blocks of block_q rows, block_q of the plan = block_q); key
 *    blocks are key-index blocks. With causal the plan's token-level causal flag applies (row i at
 *    position i + nk - nq, bottom-right).
 *  - each run of consecutive allowed key blocks becomes one span (adjacent blocks merged).
 *  - mask may be NULL only when it has no entries (nq = 0 or nk = 0).
 *  - name: "block_mask(heads=2,bq=64,bk=64)" plus ",causal".
 *  - an all-zero mask is made with ak_sparse_create (ak__sparse_finish_named would qsort a NULL array).
 */
#include "core/sparse.h"

#include <stdio.h>

ak_status ak_sparse_block_mask(ak_ctx *ctx, int32_t nq, int32_t nk, int32_t n_heads, int32_t block_q, int32_t block_k,
                               const uint8_t *mask, int32_t causal, ak_sparse **out) {
    const char *fn = "ak_sparse_block_mask";
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (nq < 0 || nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: nq = %d, nk = %d, must be >= 0", fn, nq, nk);
    if (n_heads < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: n_heads = %d, must be >= 1", fn, n_heads);
    if (block_q < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block_q = %d, must be >= 1", fn, block_q);
    if (block_k < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block_k = %d, must be >= 1", fn, block_k);
    if (causal != 0 && causal != 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: causal = %d, must be 0 or 1", fn, causal);
    int64_t n_qb = ((int64_t)nq + block_q - 1) / block_q, n_kb = ((int64_t)nk + block_k - 1) / block_k;
    if (!mask && n_qb * n_kb > 0)
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: mask is NULL (it has n_heads * n_qb * n_kb = %d * %lld * %lld entries)", fn,
                        n_heads, (long long)n_qb, (long long)n_kb);
    char name[128];
    snprintf(name, sizeof name, "block_mask(heads=%d,bq=%d,bk=%d%s)", n_heads, block_q, block_k, causal ? ",causal" : "");

    ak_sparse_desc g;
    ak_sparse_desc_init(&g);
    g.n_heads = n_heads;
    g.nq = nq;
    g.nk = nk;
    g.causal = causal;
    g.block_q = block_q;
    g.n_qblocks = (int32_t)n_qb;
    ak_sparse_builder *b = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &g, &b);
    if (st != AK_OK) return st;
    int64_t n_entries = 0;
    for (int32_t h = 0; h < n_heads && st == AK_OK; h++)
        for (int64_t m = 0; m < n_qb && st == AK_OK; m++) {
            const uint8_t *row = mask + ((size_t)h * (size_t)n_qb + (size_t)m) * (size_t)n_kb;
            for (int64_t k = 0; k < n_kb && st == AK_OK;) {
                if (!row[k]) {
                    k++;
                    continue;
                }
                int64_t k1 = k + 1;
                while (k1 < n_kb && row[k1]) k1++;
                int64_t hi = k1 * block_k < nk ? k1 * block_k : nk;
                st = ak_sparse_builder_add_span(b, 0, h, (int32_t)m, (int32_t)(k * block_k), (int32_t)hi);
                n_entries++; /* never empty: k * block_k < nk */
                k = k1;
            }
        }
    if (st == AK_OK && n_entries > 0) {
        st = ak__sparse_finish_named(b, name, out);
    } else if (st == AK_OK) { /* an empty mask: ak__sparse_finish_named would qsort a NULL array (UB) */
        g.name = name;
        st = ak_sparse_create(ctx, &g, out);
    }
    ak_sparse_builder_destroy(b);
    return st;
}
