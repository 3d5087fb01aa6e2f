/* The executor of sparse plans: work items over (sequence, plan list, query heads, rows). */
#ifndef AK_EXEC_SPARSE_H
#define AK_EXEC_SPARSE_H

#include "core/sparse.h"
#include "exec/fwd.h"

typedef struct ak_sitem {
    int32_t b;                  /* sequence */
    int32_t h0, nh;             /* query heads [h0, h0 + nh) (one KV head's, sharing one plan head) */
    int64_t r;                  /* plan list, or -1: rows no list covers (output 0, LSE -inf / sink) */
    int64_t r2;                 /* -1, or list r + 1 merged into this item (Merge-Q: two fixed blocks of spans
                                   only; rows [0, n1) are list r's, the others list r2's) */
    int64_t n1;
    const int32_t *rows;        /* the item's rows: rows[0..nr), or first + 0..nr when rows is NULL */
    int64_t first, nr;
    int64_t cost;
} ak_sitem;

struct ak_splan {
    ak_sparse *sp;              /* the plan's own copy */
    ak_sitem *items;
    int64_t n_items;
    int32_t *unc_rows;          /* rows in no block, per plan (b, h), concatenated */
    double exec_pairs;          /* products computed over all items */
    double balance;
};

ak_status ak__splan_build(ak_plan *pl, const ak_sparse *sp);
void ak__splan_free(const ak_ctx *ctx, struct ak_splan *s);
size_t ak__sparse_walk_bytes(void);
ak_status ak__sparse_execute(const ak_plan *pl, const ak_attn_tensors *t, void *ws);
/* Reference: every (b, h) with the plan's element mask. */
ak_status ak__ref_run_masked(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t, const ak_sparse *sp);

#endif
