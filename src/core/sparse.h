/* The sparse plan (ak_sparse) as the library holds it, and helpers shared by the plan code, the
 * executor (src/exec/sparse.c), the reference and the pattern builders (src/patterns/). */
#ifndef AK_CORE_SPARSE_H
#define AK_CORE_SPARSE_H

#include "core/internal.h"

struct ak_sparse {
    ak_ctx *ctx;
    int32_t n_batch, n_heads, nq, nk, causal, block_q, n_qblocks;
    int64_t n_lists;              /* R = n_batch * n_heads * n_qblocks */
    int64_t *qrow_off;            /* [R+1] or NULL (fixed blocks) */
    int32_t *qrows;
    int64_t *span_off;            /* [R+1], always present (all zero when no spans) */
    int32_t *span_lo, *span_hi;
    int64_t *col_off;
    int32_t *col_idx;
    int64_t *band_off;
    int32_t *band_lo, *band_hi;
    uint8_t *na;                  /* [R], always present */
    ak_sparse_na na_geom;
    char name[256];
    float *key_bias;              /* [n_batch * n_heads][nk] or NULL */
    float *key_score;             /* [n_batch * n_heads][nk] or NULL (then row_thresh is NULL too) */
    float *row_thresh;            /* [n_batch * n_heads][nq] */
    int32_t combine;              /* AK_SPARSE_WRITE / AK_SPARSE_MEAN */
};

/* Rows of list r: fixed block rows [*first, *first + *n) when *list is NULL, else the gathered list. */
static inline void ak__sparse_rows(const ak_sparse *sp, int64_t r, const int32_t **list, int64_t *first, int64_t *n) {
    if (sp->qrow_off) {
        *list = sp->qrows + sp->qrow_off[r];
        *first = 0;
        *n = sp->qrow_off[r + 1] - sp->qrow_off[r];
    } else {
        int64_t qb = r % sp->n_qblocks;
        int64_t a = qb * sp->block_q, b = a + sp->block_q;
        if (b > sp->nq) b = sp->nq;
        *list = NULL;
        *first = a;
        *n = b > a ? b - a : 0;
    }
}

/* NATTEN window of coordinate x on one axis: dilation group g and in-group window [ulo, uhi]
 * (keys g + dil * u). Exact rules in attnkit.h (ak_sparse_na). */
static inline void ak__na_window(int32_t L, int32_t k, int32_t dil, int32_t s, int32_t causal, int32_t x, int32_t *g,
                                 int32_t *ulo, int32_t *uhi) {
    int32_t gg = x % dil, u = x / dil;
    int32_t Lg = (L - gg + dil - 1) / dil;
    int32_t left = k / 2, right = k - 1 - left;
    *g = gg;
    if (!causal) {
        int32_t leader = (u / s) * s + s / 2;
        if (leader > Lg - 1) leader = Lg - 1;
        int32_t c = leader < left ? left : leader;
        if (c > Lg - 1 - right) c = Lg - 1 - right;
        *ulo = c - left;
        *uhi = c + right;
    } else {
        int32_t leader = (u / s) * s + s - 1;
        if (leader > Lg - 1) leader = Lg - 1;
        int32_t lo = leader - k + 1;
        *ulo = lo < 0 ? 0 : lo;
        *uhi = u;
    }
}

/* Coordinates of flat token index t on the grid (last axis fastest). */
static inline void ak__na_coords(const ak_sparse_na *na, int64_t t, int32_t *x) {
    for (int a = na->ndim - 1; a >= 0; a--) {
        x[a] = (int32_t)(t % na->extent[a]);
        t /= na->extent[a];
    }
}

/* Plan head of query head h: n_heads = Hq (and Hq != Hkv): h; = 1: 0; else (= Hkv): h / (Hq / Hkv). */
static inline int32_t ak__sparse_plan_head(const ak_sparse *sp, int32_t Hq, int32_t Hkv, int32_t h) {
    if (sp->n_heads == 1) return 0;
    if (sp->n_heads == Hq) return h;
    return h / (Hq / Hkv);
}

/* Bitmap (nk bits, words = (nk + 63) / 64) of the keys row `row` of list r sees (plan causal applied). */
void ak__sparse_row_bits(const ak_sparse *sp, int64_t r, int64_t row, uint64_t *bits);
/* Copy a plan (the executor keeps its own). */
ak_status ak__sparse_clone(ak_ctx *ctx, const ak_sparse *sp, ak_sparse **out);
/* Validate parameters common to the builders and make a plan from a finished builder, naming it. */
ak_status ak__sparse_finish_named(ak_sparse_builder *b, const char *name, ak_sparse **out);

/* A tiny JSON reader (src/core/sparse_json.c), enough for plan files and MoA plans. */
typedef enum ak_jtype { AK_J_NULL, AK_J_BOOL, AK_J_NUM, AK_J_STR, AK_J_ARR, AK_J_OBJ } ak_jtype;
typedef struct ak_jval {
    ak_jtype type;
    double num;
    const char *str;              /* into the text (not terminated), strings without escapes only */
    int32_t str_len;
    int32_t n;                    /* children of an array / object */
    int32_t first;                /* index of the first child in the node pool; children are chained by next */
    int32_t next;
    const char *key;              /* object member name (into the text) */
    int32_t key_len;
} ak_jval;
typedef struct ak_json {
    ak_jval *v;
    int32_t n, cap;
} ak_json;
/* Parse; on error returns AK_ERR_BAD_PLAN with the byte offset in the context's message. Node 0 is the root. */
ak_status ak__json_parse(ak_ctx *ctx, const char *text, size_t len, ak_json *out);
void ak__json_free(ak_ctx *ctx, ak_json *j);
/* Member of an object by name, or -1. */
int32_t ak__json_get(const ak_json *j, int32_t obj, const char *key);

#endif
