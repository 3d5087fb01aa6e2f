/* A sparse plan assembled list by list (spans, optional gathered rows) and made with ak_sparse_create;
 * shared by the position-aligned block patterns (src/patterns/power.c, window.c). Internal. */
#ifndef AK_PATTERNS_SPAN_CSR_H
#define AK_PATTERNS_SPAN_CSR_H

#include "core/sparse.h"

/* ---- a plan assembled list by list (spans, optional gathered rows), made with ak_sparse_create ----
 * (written while ak_sparse_builder refused gather lists whose count differs from ceil(nq / block_q);
 * it accepts them now, so the builder could replace this). Spans of a list must arrive with
 * non-decreasing lo; overlapping or touching ones are merged. */
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

static inline void csr_free(csr *c) {
    ak__free(c->ctx, c->qoff);
    ak__free(c->ctx, c->soff);
    ak__free(c->ctx, c->rows);
    ak__free(c->ctx, c->lo);
    ak__free(c->ctx, c->hi);
}

static inline int csr_init(csr *c, ak_ctx *ctx, int32_t nk, int64_t n_lists, int gather, int64_t max_rows) {
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

static inline void csr_list(csr *c) { /* begin the next list */
    c->qoff[c->cur] = c->nrows;
    c->soff[c->cur] = c->ns;
    c->cur++;
}

static inline void csr_span(csr *c, int64_t lo, int64_t hi) {
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
static inline int fixed_blocks_aligned(int32_t nq, int32_t nk, int32_t bs) {
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

#endif
