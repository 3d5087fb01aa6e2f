/* The sparse plan: validation of the raw CSR form, copies, the incremental builder, the element mask
 * (the oracle's view of a plan) and statistics. The executor lives in src/exec/sparse.c. */
#include "core/sparse.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ak_sparse_desc_init(ak_sparse_desc *d) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->size = sizeof *d;
    d->n_batch = 1;
    d->n_heads = 1;
    d->block_q = 64;
}

void ak_free(ak_ctx *ctx, void *p) {
    if (ctx && p) ak__free(ctx, p);
}

void ak_sparse_destroy(ak_sparse *sp) {
    if (!sp) return;
    ak_ctx *c = sp->ctx;
    ak__free(c, sp->qrow_off);
    ak__free(c, sp->qrows);
    ak__free(c, sp->span_off);
    ak__free(c, sp->span_lo);
    ak__free(c, sp->span_hi);
    ak__free(c, sp->col_off);
    ak__free(c, sp->col_idx);
    ak__free(c, sp->band_off);
    ak__free(c, sp->band_lo);
    ak__free(c, sp->band_hi);
    ak__free(c, sp->na);
    ak__free(c, sp->key_bias);
    ak__free(c, sp->key_score);
    ak__free(c, sp->row_thresh);
    ak__free(c, sp);
}

const char *ak_sparse_name(const ak_sparse *sp) { return sp ? sp->name : ""; }

/* Validate an offsets array [R+1]: 0-based, non-decreasing; total in *n. */
static ak_status check_off(const ak_ctx *ctx, const char *what, const int64_t *off, int64_t R, int64_t *n) {
    if (off[0] != 0) return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s_off[0] = %lld, must be 0", what, (long long)off[0]);
    for (int64_t r = 0; r < R; r++)
        if (off[r + 1] < off[r])
            return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s_off decreases at list %lld (%lld -> %lld)", what, (long long)r,
                            (long long)off[r], (long long)off[r + 1]);
    if (off[R] > (int64_t)1 << 40) return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s_off[R] = %lld is implausibly large", what, (long long)off[R]);
    *n = off[R];
    return AK_OK;
}

/* Position of list r as text: "list r (b, h, qblock)". */
static void list_name(const ak_sparse_desc *d, int64_t r, char *buf, size_t len) {
    int64_t qb = r % (d->n_qblocks ? d->n_qblocks : 1), bh = r / (d->n_qblocks ? d->n_qblocks : 1);
    snprintf(buf, len, "list %lld (batch %lld, head %lld, query block %lld)", (long long)r, (long long)(bh / d->n_heads),
             (long long)(bh % d->n_heads), (long long)qb);
}

static ak_status check_na_geom(const ak_ctx *ctx, const ak_sparse_na *na, int32_t nq, int32_t nk) {
    if (na->ndim < 1 || na->ndim > 3) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: ndim = %d, must be 1, 2 or 3", na->ndim);
    int64_t prod = 1;
    for (int a = 0; a < na->ndim; a++) {
        int32_t L = na->extent[a], k = na->kernel[a], dl = na->dilation[a], s = na->stride[a];
        if (L < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: extent[%d] = %d, must be >= 1", a, L);
        if (dl < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: dilation[%d] = %d, must be >= 1", a, dl);
        if (k < 1 || k > L)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: kernel[%d] = %d, must be in [1, extent %d]", a, k, L);
        if ((int64_t)k * dl > L)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: kernel[%d] * dilation[%d] = %d * %d exceeds the extent %d", a, a, k,
                            dl, L);
        if (s < 1 || s > k)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: stride[%d] = %d, must be in [1, kernel %d]", a, s, k);
        if (na->causal[a] != 0 && na->causal[a] != 1)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: causal[%d] = %d, must be 0 or 1", a, na->causal[a]);
        prod *= L;
        if (prod > INT32_MAX) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: the grid has more than 2^31-1 tokens");
    }
    if (prod != nq || prod != nk)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "na: the grid has %lld tokens but nq = %d, nk = %d (self-attention: all equal)",
                        (long long)prod, nq, nk);
    return AK_OK;
}

static ak_status validate(const ak_ctx *ctx, const ak_sparse_desc *d, int any_qblocks, int64_t *R_out) {
    if (d->size != sizeof(ak_sparse_desc))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: size = %zu, expected %zu (call ak_sparse_desc_init)", d->size,
                        sizeof(ak_sparse_desc));
    if (d->n_batch < 1 || d->n_heads < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: n_batch = %d, n_heads = %d, both must be >= 1", d->n_batch,
                        d->n_heads);
    if (d->nq < 0 || d->nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: nq = %d, nk = %d, must be >= 0", d->nq, d->nk);
    if (d->causal != 0 && d->causal != 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: causal = %d, must be 0 or 1", d->causal);
    if (d->block_q < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: block_q = %d, must be >= 1", d->block_q);
    if (d->qrows && !d->qrow_off)
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse desc: qrows given without qrow_off");
    if (d->combine != AK_SPARSE_WRITE && d->combine != AK_SPARSE_MEAN)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: combine = %d, must be AK_SPARSE_WRITE (0) or AK_SPARSE_MEAN (1)",
                        d->combine);
    if (d->combine == AK_SPARSE_MEAN && !d->qrow_off && !any_qblocks)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: combine = AK_SPARSE_MEAN needs gathered rows (qrow_off)");
    if ((d->key_score == NULL) != (d->row_thresh == NULL))
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse desc: key_score and row_thresh go together (one is NULL)");
    if (!d->qrow_off && !any_qblocks) {
        int64_t want = ((int64_t)d->nq + d->block_q - 1) / d->block_q;
        if (d->n_qblocks != want)
            return ak__fail(ctx, AK_ERR_BAD_PLAN, "sparse desc: n_qblocks = %d, but nq = %d in blocks of %d rows makes %lld", d->n_qblocks,
                            d->nq, d->block_q, (long long)want);
    } else if (d->n_qblocks < 0) {
        return ak__fail(ctx, AK_ERR_BAD_PLAN, "sparse desc: n_qblocks = %d, must be >= 0", d->n_qblocks);
    }
    int64_t R = (int64_t)d->n_batch * d->n_heads * d->n_qblocks;
    if (R > ((int64_t)1 << 31)) return ak__fail(ctx, AK_ERR_BAD_PLAN, "sparse desc: %lld lists, at most 2^31", (long long)R);
    *R_out = R;
    char where[128];
    int64_t n;
    ak_status st;
    if (d->qrow_off) {
        if ((st = check_off(ctx, "qrow", d->qrow_off, R, &n)) != AK_OK) return st;
        if (n > 0 && !d->qrows) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse desc: qrows is NULL");
        /* every row at most once per (b, h) (AK_SPARSE_MEAN: once per block): seen[row] = the last list holding it */
        int64_t *seen = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * ((size_t)d->nq + 1));
        if (!seen) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "row check");
        for (int64_t i = 0; i <= d->nq; i++) seen[i] = -1;
        st = AK_OK;
        for (int64_t r = 0; r < R && st == AK_OK; r++) {
            int64_t first = d->combine == AK_SPARSE_MEAN ? r : r - r % d->n_qblocks;
            for (int64_t e = d->qrow_off[r]; e < d->qrow_off[r + 1]; e++) {
                int32_t row = d->qrows[e];
                if (row < 0 || row >= d->nq) {
                    list_name(d, r, where, sizeof where);
                    st = ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: row %d outside [0, nq = %d)", where, row, d->nq);
                    break;
                }
                if (seen[row] >= first) {
                    list_name(d, r, where, sizeof where);
                    st = ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: row %d already belongs to %s", where, row,
                                  d->combine == AK_SPARSE_MEAN ? "this block" : "a block of this batch and head");
                    break;
                }
                seen[row] = r;
            }
        }
        ak__free(ctx, seen);
        if (st != AK_OK) return st;
    }
    if (d->span_off) {
        if ((st = check_off(ctx, "span", d->span_off, R, &n)) != AK_OK) return st;
        if (n > 0 && (!d->span_lo || !d->span_hi)) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse desc: span_lo/span_hi is NULL");
        for (int64_t r = 0; r < R; r++)
            for (int64_t e = d->span_off[r]; e < d->span_off[r + 1]; e++) {
                int32_t lo = d->span_lo[e], hi = d->span_hi[e];
                if (lo < 0 || hi > d->nk || lo >= hi) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: span %lld = [%d, %d) is empty or outside [0, nk = %d]", where,
                                    (long long)(e - d->span_off[r]), lo, hi, d->nk);
                }
                if (e > d->span_off[r] && lo < d->span_hi[e - 1]) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: span %lld = [%d, %d) is unsorted or overlaps the previous [%d, %d)", where,
                                    (long long)(e - d->span_off[r]), lo, hi, d->span_lo[e - 1], d->span_hi[e - 1]);
                }
            }
    }
    if (d->col_off) {
        if ((st = check_off(ctx, "col", d->col_off, R, &n)) != AK_OK) return st;
        if (n > 0 && !d->col_idx) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse desc: col_idx is NULL");
        for (int64_t r = 0; r < R; r++) {
            int64_t s0 = d->span_off ? d->span_off[r] : 0, s1 = d->span_off ? d->span_off[r + 1] : 0, sp = s0;
            for (int64_t e = d->col_off[r]; e < d->col_off[r + 1]; e++) {
                int32_t j = d->col_idx[e];
                if (j < 0 || j >= d->nk) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: col %d outside [0, nk = %d)", where, j, d->nk);
                }
                if (e > d->col_off[r] && j <= d->col_idx[e - 1]) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: cols not strictly increasing (%d after %d)", where, j, d->col_idx[e - 1]);
                }
                while (sp < s1 && d->span_hi[sp] <= j) sp++;
                if (sp < s1 && d->span_lo[sp] <= j) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: col %d lies inside span [%d, %d) (normal form: drop it)", where, j,
                                    d->span_lo[sp], d->span_hi[sp]);
                }
            }
        }
    }
    if (d->band_off) {
        if ((st = check_off(ctx, "band", d->band_off, R, &n)) != AK_OK) return st;
        if (n > 0 && (!d->band_lo || !d->band_hi)) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse desc: band_lo/band_hi is NULL");
        int64_t lim = (int64_t)d->nq + d->nk;
        for (int64_t r = 0; r < R; r++)
            for (int64_t e = d->band_off[r]; e < d->band_off[r + 1]; e++) {
                int32_t lo = d->band_lo[e], hi = d->band_hi[e];
                if (lo > hi || lo < -lim || hi > lim) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: band [%d, %d] is empty or beyond +-(nq + nk)", where, lo, hi);
                }
                if (e > d->band_off[r] && lo <= d->band_hi[e - 1]) {
                    list_name(d, r, where, sizeof where);
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: band [%d, %d] is unsorted or overlaps the previous [%d, %d]", where, lo, hi,
                                    d->band_lo[e - 1], d->band_hi[e - 1]);
                }
            }
    }
    int any_na = 0;
    if (d->na)
        for (int64_t r = 0; r < R; r++) {
            if (d->na[r] > 1) {
                list_name(d, r, where, sizeof where);
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: na = %d, must be 0 or 1", where, d->na[r]);
            }
            any_na |= d->na[r];
        }
    if (any_na || d->na_geom.ndim != 0) {
        if ((st = check_na_geom(ctx, &d->na_geom, d->nq, d->nk)) != AK_OK) return st;
        /* every row of a list with na in one dilation group of the last axis */
        const ak_sparse_na *g = &d->na_geom;
        int32_t last = g->ndim - 1, dl = g->dilation[last], L = g->extent[last];
        if (dl > 1 && any_na)
            for (int64_t r = 0; r < R; r++) {
                if (!d->na[r]) continue;
                int64_t q0, q1;
                if (d->qrow_off) {
                    q0 = d->qrow_off[r];
                    q1 = d->qrow_off[r + 1];
                } else {
                    int64_t qb = r % d->n_qblocks;
                    q0 = qb * d->block_q;
                    q1 = q0 + d->block_q > d->nq ? d->nq : q0 + d->block_q;
                }
                int32_t grp = -1;
                for (int64_t e = q0; e < q1; e++) {
                    int64_t row = d->qrow_off ? d->qrows[e] : e;
                    int32_t gg = (int32_t)(row % L) % dl;
                    if (grp >= 0 && gg != grp) {
                        list_name(d, r, where, sizeof where);
                        return ak__fail(ctx, AK_ERR_BAD_PLAN, "%s: rows of dilation groups %d and %d of the last axis in one na list", where,
                                        grp, gg);
                    }
                    grp = gg;
                }
            }
    }
    int64_t BH = (int64_t)d->n_batch * d->n_heads;
    if (d->key_bias)
        for (int64_t x = 0; x < BH * d->nk; x++)
            if (!isfinite(d->key_bias[x]))
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "sparse desc: key_bias[%lld][%lld] = %g is not finite", (long long)(x / d->nk),
                                (long long)(x % d->nk), (double)d->key_bias[x]);
    if (d->key_score) {
        for (int64_t x = 0; x < BH * d->nk; x++)
            if (d->key_score[x] != d->key_score[x])
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "sparse desc: key_score[%lld][%lld] is NaN", (long long)(x / d->nk),
                                (long long)(x % d->nk));
        for (int64_t x = 0; x < BH * d->nq; x++)
            if (d->row_thresh[x] != d->row_thresh[x])
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "sparse desc: row_thresh[%lld][%lld] is NaN", (long long)(x / d->nq),
                                (long long)(x % d->nq));
    }
    return AK_OK;
}

static void *dup_arr(const ak_ctx *ctx, const void *src, size_t bytes, int *fail) {
    void *p = ak__alloc(ctx, bytes ? bytes : 1);
    if (!p) {
        *fail = 1;
        return NULL;
    }
    if (bytes && src) memcpy(p, src, bytes);
    else memset(p, 0, bytes ? bytes : 1);
    return p;
}

ak_status ak_sparse_create(ak_ctx *ctx, const ak_sparse_desc *d, ak_sparse **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (!d) return ak__fail(ctx, AK_ERR_NULL_POINTER, "desc is NULL");
    int64_t R;
    ak_status st = validate(ctx, d, 0, &R);
    if (st != AK_OK) return st;
    ak_sparse *sp = (ak_sparse *)ak__alloc(ctx, sizeof *sp);
    if (!sp) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse plan");
    memset(sp, 0, sizeof *sp);
    sp->ctx = ctx;
    sp->n_batch = d->n_batch;
    sp->n_heads = d->n_heads;
    sp->nq = d->nq;
    sp->nk = d->nk;
    sp->causal = d->causal;
    sp->block_q = d->block_q;
    sp->n_qblocks = d->n_qblocks;
    sp->n_lists = R;
    sp->na_geom = d->na_geom;
    if (sp->na_geom.ndim == 0) memset(&sp->na_geom, 0, sizeof sp->na_geom);
    if (d->name) snprintf(sp->name, sizeof sp->name, "%s", d->name);
    int fail = 0;
    size_t offb = sizeof(int64_t) * (size_t)(R + 1);
    if (d->qrow_off) {
        sp->qrow_off = (int64_t *)dup_arr(ctx, d->qrow_off, offb, &fail);
        sp->qrows = (int32_t *)dup_arr(ctx, d->qrows, sizeof(int32_t) * (size_t)d->qrow_off[R], &fail);
    }
    int64_t ns = d->span_off ? d->span_off[R] : 0, nc = d->col_off ? d->col_off[R] : 0, nb = d->band_off ? d->band_off[R] : 0;
    sp->span_off = (int64_t *)dup_arr(ctx, d->span_off, offb, &fail);
    sp->span_lo = (int32_t *)dup_arr(ctx, d->span_lo, sizeof(int32_t) * (size_t)ns, &fail);
    sp->span_hi = (int32_t *)dup_arr(ctx, d->span_hi, sizeof(int32_t) * (size_t)ns, &fail);
    sp->col_off = (int64_t *)dup_arr(ctx, d->col_off, offb, &fail);
    sp->col_idx = (int32_t *)dup_arr(ctx, d->col_idx, sizeof(int32_t) * (size_t)nc, &fail);
    sp->band_off = (int64_t *)dup_arr(ctx, d->band_off, offb, &fail);
    sp->band_lo = (int32_t *)dup_arr(ctx, d->band_lo, sizeof(int32_t) * (size_t)nb, &fail);
    sp->band_hi = (int32_t *)dup_arr(ctx, d->band_hi, sizeof(int32_t) * (size_t)nb, &fail);
    sp->na = (uint8_t *)dup_arr(ctx, d->na, (size_t)R, &fail);
    size_t BH = (size_t)d->n_batch * (size_t)d->n_heads;
    sp->combine = d->combine;
    if (d->key_bias) sp->key_bias = (float *)dup_arr(ctx, d->key_bias, sizeof(float) * BH * (size_t)d->nk, &fail);
    if (d->key_score) {
        sp->key_score = (float *)dup_arr(ctx, d->key_score, sizeof(float) * BH * (size_t)d->nk, &fail);
        sp->row_thresh = (float *)dup_arr(ctx, d->row_thresh, sizeof(float) * BH * (size_t)d->nq, &fail);
    }
    if (fail) {
        ak_sparse_destroy(sp);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse plan arrays");
    }
    *out = sp;
    return AK_OK;
}

ak_status ak_sparse_get_desc(const ak_sparse *sp, ak_sparse_desc *d) {
    if (!sp || !d) return AK_ERR_NULL_POINTER;
    ak_sparse_desc_init(d);
    d->n_batch = sp->n_batch;
    d->n_heads = sp->n_heads;
    d->nq = sp->nq;
    d->nk = sp->nk;
    d->causal = sp->causal;
    d->block_q = sp->block_q;
    d->n_qblocks = sp->n_qblocks;
    d->qrow_off = sp->qrow_off;
    d->qrows = sp->qrows;
    d->span_off = sp->span_off;
    d->span_lo = sp->span_lo;
    d->span_hi = sp->span_hi;
    d->col_off = sp->col_off;
    d->col_idx = sp->col_idx;
    d->band_off = sp->band_off;
    d->band_lo = sp->band_lo;
    d->band_hi = sp->band_hi;
    d->na = sp->na;
    d->na_geom = sp->na_geom;
    d->name = sp->name;
    d->key_bias = sp->key_bias;
    d->key_score = sp->key_score;
    d->row_thresh = sp->row_thresh;
    d->combine = sp->combine;
    return AK_OK;
}

ak_status ak__sparse_clone(ak_ctx *ctx, const ak_sparse *sp, ak_sparse **out) {
    ak_sparse_desc d;
    ak_sparse_get_desc(sp, &d);
    return ak_sparse_create(ctx, &d, out);
}

/* ---- the element view: which keys a row sees ---- */

static void set_range(uint64_t *bits, int64_t a, int64_t b) { /* [a, b] inclusive */
    for (int64_t j = a; j <= b;) {
        if ((j & 63) == 0 && j + 63 <= b) {
            bits[j >> 6] = ~(uint64_t)0;
            j += 64;
        } else {
            bits[j >> 6] |= (uint64_t)1 << (j & 63);
            j++;
        }
    }
}

/* NATTEN neighborhood of token `row`: every key of the box (each axis's window in the row's group). */
static void na_bits(const ak_sparse_na *g, int64_t row, uint64_t *bits, int64_t vis_hi) {
    int32_t x[3], grp[3], lo[3], hi[3];
    ak__na_coords(g, row, x);
    for (int a = 0; a < g->ndim; a++)
        ak__na_window(g->extent[a], g->kernel[a], g->dilation[a], g->stride[a], g->causal[a], x[a], &grp[a], &lo[a], &hi[a]);
    int nd = g->ndim;
    for (int a = nd; a < 3; a++) {
        grp[a] = 0;
        lo[a] = hi[a] = 0;
    }
    int32_t e1 = nd > 1 ? g->extent[1] : 1, e2 = nd > 2 ? g->extent[2] : 1;
    int32_t d0 = g->dilation[0], d1 = nd > 1 ? g->dilation[1] : 1, d2 = nd > 2 ? g->dilation[2] : 1;
    for (int32_t u0 = lo[0]; u0 <= hi[0]; u0++)
        for (int32_t u1 = lo[1]; u1 <= hi[1]; u1++)
            for (int32_t u2 = lo[2]; u2 <= hi[2]; u2++) {
                int64_t c0 = grp[0] + (int64_t)d0 * u0, c1 = grp[1] + (int64_t)d1 * u1, c2 = grp[2] + (int64_t)d2 * u2;
                int64_t j = (c0 * e1 + c1) * e2 + c2;
                if (nd == 1) j = c0;
                else if (nd == 2) j = c0 * e1 + c1;
                if (j <= vis_hi) bits[j >> 6] |= (uint64_t)1 << (j & 63);
            }
}

void ak__sparse_row_bits(const ak_sparse *sp, int64_t r, int64_t row, uint64_t *bits) {
    int64_t words = ((int64_t)sp->nk + 63) / 64;
    memset(bits, 0, sizeof(uint64_t) * (size_t)(words ? words : 1));
    int64_t pos = row + sp->nk - sp->nq;
    int64_t vis_hi = sp->nk - 1;
    if (sp->causal && pos < vis_hi) vis_hi = pos;
    if (vis_hi < 0) return;
    for (int64_t e = sp->span_off[r]; e < sp->span_off[r + 1]; e++) {
        int64_t a = sp->span_lo[e], b = sp->span_hi[e] - 1;
        if (b > vis_hi) b = vis_hi;
        if (a <= b) set_range(bits, a, b);
    }
    for (int64_t e = sp->col_off[r]; e < sp->col_off[r + 1]; e++) {
        int64_t j = sp->col_idx[e];
        if (j <= vis_hi) bits[j >> 6] |= (uint64_t)1 << (j & 63);
    }
    for (int64_t e = sp->band_off[r]; e < sp->band_off[r + 1]; e++) {
        int64_t a = pos - sp->band_hi[e], b = pos - sp->band_lo[e];
        if (a < 0) a = 0;
        if (b > vis_hi) b = vis_hi;
        if (a <= b) set_range(bits, a, b);
    }
    if (sp->na[r]) na_bits(&sp->na_geom, row, bits, vis_hi);
    if (sp->key_score) { /* the per-row cut: key_score[j] >= row_thresh[row] */
        int64_t bh = r / sp->n_qblocks;
        const float *ks = sp->key_score + bh * sp->nk;
        float th = sp->row_thresh[bh * sp->nq + row];
        for (int64_t w = 0; w <= vis_hi >> 6; w++)
            for (uint64_t m = bits[w]; m; m &= m - 1) {
                int64_t j = (w << 6) + __builtin_ctzll(m);
                if (!(ks[j] >= th)) bits[w] &= ~((uint64_t)1 << (j & 63));
            }
    }
}

static ak_status check_bh(const ak_sparse *sp, int32_t b, int32_t h) {
    if (b < 0 || b >= sp->n_batch || h < 0 || h >= sp->n_heads)
        return ak__fail(sp->ctx, AK_ERR_INVALID_ARGUMENT, "(batch %d, head %d) outside the plan's %d x %d", b, h, sp->n_batch,
                        sp->n_heads);
    return AK_OK;
}

ak_status ak_sparse_mask(const ak_sparse *sp, int32_t b, int32_t h, uint8_t *mask) {
    if (!sp) return AK_ERR_NULL_POINTER;
    ak__clear_error(sp->ctx);
    if (!mask) return ak__fail(sp->ctx, AK_ERR_NULL_POINTER, "mask is NULL");
    ak_status st = check_bh(sp, b, h);
    if (st != AK_OK) return st;
    int64_t words = ((int64_t)sp->nk + 63) / 64;
    uint64_t *bits = (uint64_t *)ak__alloc(sp->ctx, sizeof(uint64_t) * (size_t)(words + 1));
    if (!bits) return ak__fail(sp->ctx, AK_ERR_OUT_OF_MEMORY, "mask row");
    memset(mask, 0, (size_t)sp->nq * (size_t)sp->nk);
    int64_t r0 = ((int64_t)b * sp->n_heads + h) * sp->n_qblocks;
    for (int64_t r = r0; r < r0 + sp->n_qblocks; r++) {
        const int32_t *list;
        int64_t first, n;
        ak__sparse_rows(sp, r, &list, &first, &n);
        for (int64_t e = 0; e < n; e++) {
            int64_t row = list ? list[e] : first + e;
            ak__sparse_row_bits(sp, r, row, bits);
            uint8_t *m = mask + (size_t)row * (size_t)sp->nk;
            for (int64_t j = 0; j < sp->nk; j++) m[j] |= (uint8_t)((bits[j >> 6] >> (j & 63)) & 1); /* MEAN: union */
        }
    }
    ak__free(sp->ctx, bits);
    return AK_OK;
}

ak_status ak_sparse_row_mask(const ak_sparse *sp, int32_t b, int32_t h, int32_t row, uint8_t *keys) {
    if (!sp) return AK_ERR_NULL_POINTER;
    ak__clear_error(sp->ctx);
    if (!keys) return ak__fail(sp->ctx, AK_ERR_NULL_POINTER, "keys is NULL");
    ak_status st = check_bh(sp, b, h);
    if (st != AK_OK) return st;
    if (row < 0 || row >= sp->nq) return ak__fail(sp->ctx, AK_ERR_INVALID_ARGUMENT, "row %d outside [0, nq = %d)", row, sp->nq);
    int64_t words = ((int64_t)sp->nk + 63) / 64;
    uint64_t *bits = (uint64_t *)ak__alloc(sp->ctx, sizeof(uint64_t) * (size_t)(words + 1));
    if (!bits) return ak__fail(sp->ctx, AK_ERR_OUT_OF_MEMORY, "mask row");
    memset(keys, 0, (size_t)sp->nk);
    int64_t r0 = ((int64_t)b * sp->n_heads + h) * sp->n_qblocks;
    for (int64_t r = r0; r < r0 + sp->n_qblocks; r++) {
        const int32_t *list;
        int64_t first, n, hit = 0;
        ak__sparse_rows(sp, r, &list, &first, &n);
        if (!list) hit = row >= first && row < first + n;
        for (int64_t e = 0; list && e < n && !hit; e++) hit = list[e] == row;
        if (!hit) continue;
        ak__sparse_row_bits(sp, r, row, bits);
        for (int64_t j = 0; j < sp->nk; j++) keys[j] |= (uint8_t)((bits[j >> 6] >> (j & 63)) & 1);
    }
    ak__free(sp->ctx, bits);
    return AK_OK;
}

ak_status ak_sparse_density_grid(const ak_sparse *sp, int32_t b, int32_t h, int32_t rows, int32_t cols, float *grid) {
    if (!sp) return AK_ERR_NULL_POINTER;
    ak__clear_error(sp->ctx);
    if (!grid) return ak__fail(sp->ctx, AK_ERR_NULL_POINTER, "grid is NULL");
    ak_status st = check_bh(sp, b, h);
    if (st != AK_OK) return st;
    if (rows < 1 || cols < 1 || rows > sp->nq || cols > sp->nk)
        return ak__fail(sp->ctx, AK_ERR_INVALID_ARGUMENT, "grid %d x %d: must be within [1, nq = %d] x [1, nk = %d]", rows, cols, sp->nq,
                        sp->nk);
    int64_t words = ((int64_t)sp->nk + 63) / 64;
    uint64_t *bits = (uint64_t *)ak__alloc(sp->ctx, sizeof(uint64_t) * (size_t)(words + 1));
    double *acc = (double *)ak__alloc(sp->ctx, sizeof(double) * (size_t)rows * (size_t)cols);
    if (!bits || !acc) {
        ak__free(sp->ctx, bits);
        ak__free(sp->ctx, acc);
        return ak__fail(sp->ctx, AK_ERR_OUT_OF_MEMORY, "density grid");
    }
    memset(acc, 0, sizeof(double) * (size_t)rows * (size_t)cols);
    int64_t r0 = ((int64_t)b * sp->n_heads + h) * sp->n_qblocks;
    for (int64_t r = r0; r < r0 + sp->n_qblocks; r++) {
        const int32_t *list;
        int64_t first, n;
        ak__sparse_rows(sp, r, &list, &first, &n);
        for (int64_t e = 0; e < n; e++) {
            int64_t row = list ? list[e] : first + e;
            ak__sparse_row_bits(sp, r, row, bits);
            /* row belongs to grid row i with floor(i*nq/rows) <= row < floor((i+1)*nq/rows) */
            double *arow = acc + (size_t)(((row + 1) * rows - 1) / sp->nq) * (size_t)cols;
            for (int32_t c = 0; c < cols; c++) {
                int64_t j0 = (int64_t)c * sp->nk / cols, j1 = (int64_t)(c + 1) * sp->nk / cols, cnt = 0;
                for (int64_t j = j0; j < j1;) {
                    if ((j & 63) == 0 && j + 64 <= j1) {
                        cnt += __builtin_popcountll(bits[j >> 6]);
                        j += 64;
                    } else {
                        cnt += (int64_t)((bits[j >> 6] >> (j & 63)) & 1);
                        j++;
                    }
                }
                arow[c] += (double)cnt;
            }
        }
    }
    for (int32_t i = 0; i < rows; i++) {
        int64_t q0 = (int64_t)i * sp->nq / rows, q1 = (int64_t)(i + 1) * sp->nq / rows;
        for (int32_t c = 0; c < cols; c++) {
            int64_t j0 = (int64_t)c * sp->nk / cols, j1 = (int64_t)(c + 1) * sp->nk / cols;
            double cells = (double)(q1 - q0) * (double)(j1 - j0);
            double f = cells > 0 ? acc[(size_t)i * cols + c] / cells : 0.0;
            grid[(size_t)i * cols + c] = (float)(f > 1.0 ? 1.0 : f); /* AK_SPARSE_MEAN counts a pair per block */
        }
    }
    ak__free(sp->ctx, bits);
    ak__free(sp->ctx, acc);
    return AK_OK;
}

ak_status ak_sparse_get_stats(const ak_sparse *sp, ak_sparse_stats *s) {
    if (!sp || !s) return AK_ERR_NULL_POINTER;
    memset(s, 0, sizeof *s);
    int64_t words = ((int64_t)sp->nk + 63) / 64;
    uint64_t *bits = (uint64_t *)ak__alloc(sp->ctx, sizeof(uint64_t) * (size_t)(words + 1));
    if (!bits) return ak__fail(sp->ctx, AK_ERR_OUT_OF_MEMORY, "stats row");
    double pairs = 0;
    for (int64_t r = 0; r < sp->n_lists; r++) {
        const int32_t *list;
        int64_t first, n;
        ak__sparse_rows(sp, r, &list, &first, &n);
        for (int64_t e = 0; e < n; e++) {
            ak__sparse_row_bits(sp, r, list ? list[e] : first + e, bits);
            int64_t cnt = 0;
            for (int64_t w = 0; w < words; w++) cnt += __builtin_popcountll(bits[w]);
            pairs += (double)cnt;
        }
        s->n_na += sp->na[r];
    }
    ak__free(sp->ctx, bits);
    double bh = (double)sp->n_batch * sp->n_heads, causal = 0;
    for (int64_t i = 0; i < sp->nq; i++) {
        int64_t v = i + sp->nk - sp->nq + 1;
        causal += (double)(v < 0 ? 0 : v > sp->nk ? sp->nk : v);
    }
    s->pairs = pairs;
    s->dense_pairs = bh * (double)sp->nq * (double)sp->nk;
    s->causal_pairs = bh * causal;
    double den = sp->causal ? s->causal_pairs : s->dense_pairs;
    s->density = den > 0 ? pairs / den : 0.0;
    s->n_lists = sp->n_lists;
    s->n_spans = sp->span_off[sp->n_lists];
    s->n_cols = sp->col_off[sp->n_lists];
    s->n_bands = sp->band_off[sp->n_lists];
    s->n_rows_gathered = sp->qrow_off ? sp->qrow_off[sp->n_lists] : 0;
    return AK_OK;
}

/* ---- the builder ---- */

typedef struct bentry {
    int64_t r;
    int32_t kind; /* 0 span, 1 col, 2 band, 3 na, 4 row */
    int32_t a, b;
} bentry;

struct ak_sparse_builder {
    ak_ctx *ctx;
    ak_sparse_desc geom;
    bentry *e;
    int64_t n, cap;
    int gather;
    float *key_bias, *key_score, *row_thresh; /* [n_batch * n_heads][nk | nq], allocated when first set */
};

ak_status ak_sparse_builder_create(ak_ctx *ctx, const ak_sparse_desc *geom, ak_sparse_builder **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out || !geom) return ak__fail(ctx, AK_ERR_NULL_POINTER, "geom or out is NULL");
    *out = NULL;
    ak_sparse_desc g;
    ak_sparse_desc_init(&g);
    if (geom->size != sizeof g)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sparse desc: size = %zu, expected %zu (call ak_sparse_desc_init)", geom->size,
                        sizeof g);
    g.n_batch = geom->n_batch;
    g.n_heads = geom->n_heads;
    g.nq = geom->nq;
    g.nk = geom->nk;
    g.causal = geom->causal;
    g.block_q = geom->block_q;
    g.n_qblocks = geom->n_qblocks;
    g.na_geom = geom->na_geom;
    g.combine = geom->combine;
    if (g.block_q >= 1 && g.nq >= 0 && g.n_qblocks == 0) g.n_qblocks = (g.nq + g.block_q - 1) / g.block_q;
    int64_t R;
    /* any block count: gather rows (add_row) may follow; finish checks fixed blocks against nq */
    ak_status st = validate(ctx, &g, 1, &R);
    if (st != AK_OK) return st;
    if (g.na_geom.ndim != 0 && (st = check_na_geom(ctx, &g.na_geom, g.nq, g.nk)) != AK_OK) return st;
    ak_sparse_builder *b = (ak_sparse_builder *)ak__alloc(ctx, sizeof *b);
    if (!b) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "builder");
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->geom = g;
    *out = b;
    return AK_OK;
}

void ak_sparse_builder_destroy(ak_sparse_builder *b) {
    if (!b) return;
    ak__free(b->ctx, b->e);
    ak__free(b->ctx, b->key_bias);
    ak__free(b->ctx, b->key_score);
    ak__free(b->ctx, b->row_thresh);
    ak__free(b->ctx, b);
}

static ak_status check_builder_bh(ak_sparse_builder *b, int32_t bb, int32_t h) {
    if (bb < 0 || bb >= b->geom.n_batch || h < 0 || h >= b->geom.n_heads)
        return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: (batch %d, head %d) outside %d x %d", bb, h, b->geom.n_batch,
                        b->geom.n_heads);
    return AK_OK;
}

/* The [n_batch * n_heads][n] array *arr, allocated on first use and filled with `fill`. */
static float *builder_arr(ak_sparse_builder *b, float **arr, int64_t n, float fill) {
    if (!*arr) {
        size_t cnt = (size_t)b->geom.n_batch * (size_t)b->geom.n_heads * (size_t)n;
        *arr = (float *)ak__alloc(b->ctx, sizeof(float) * (cnt ? cnt : 1));
        if (*arr)
            for (size_t x = 0; x < cnt; x++) (*arr)[x] = fill;
    }
    return *arr;
}

ak_status ak_sparse_builder_set_key_bias(ak_sparse_builder *b, int32_t bb, int32_t h, const float *bias) {
    if (!b) return AK_ERR_NULL_POINTER;
    ak_status st = check_builder_bh(b, bb, h);
    if (st != AK_OK) return st;
    int64_t nk = b->geom.nk, bh = (int64_t)bb * b->geom.n_heads + h;
    if (bias)
        for (int64_t j = 0; j < nk; j++)
            if (!isfinite(bias[j])) return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: key bias[%lld] = %g is not finite",
                                                    (long long)j, (double)bias[j]);
    if (!bias && !b->key_bias) return AK_OK;
    if (!builder_arr(b, &b->key_bias, nk, 0.0f)) return ak__fail(b->ctx, AK_ERR_OUT_OF_MEMORY, "builder key bias");
    for (int64_t j = 0; j < nk; j++) b->key_bias[bh * nk + j] = bias ? bias[j] : 0.0f;
    return AK_OK;
}

ak_status ak_sparse_builder_set_row_thresh(ak_sparse_builder *b, int32_t bb, int32_t h, const float *key_score,
                                           const float *row_thresh) {
    if (!b) return AK_ERR_NULL_POINTER;
    ak_status st = check_builder_bh(b, bb, h);
    if (st != AK_OK) return st;
    if (!key_score || !row_thresh) return ak__fail(b->ctx, AK_ERR_NULL_POINTER, "builder: key_score or row_thresh is NULL");
    int64_t nk = b->geom.nk, nq = b->geom.nq, bh = (int64_t)bb * b->geom.n_heads + h;
    for (int64_t j = 0; j < nk; j++)
        if (key_score[j] != key_score[j]) return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: key_score[%lld] is NaN", (long long)j);
    for (int64_t i = 0; i < nq; i++)
        if (row_thresh[i] != row_thresh[i])
            return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: row_thresh[%lld] is NaN", (long long)i);
    if (!builder_arr(b, &b->key_score, nk, 0.0f) || !builder_arr(b, &b->row_thresh, nq, -INFINITY))
        return ak__fail(b->ctx, AK_ERR_OUT_OF_MEMORY, "builder key scores");
    memcpy(b->key_score + bh * nk, key_score, sizeof(float) * (size_t)nk);
    memcpy(b->row_thresh + bh * nq, row_thresh, sizeof(float) * (size_t)nq);
    return AK_OK;
}

static ak_status badd(ak_sparse_builder *b, int32_t bb, int32_t h, int32_t qb, int32_t kind, int32_t x, int32_t y) {
    if (!b) return AK_ERR_NULL_POINTER;
    const ak_sparse_desc *g = &b->geom;
    if (bb < 0 || bb >= g->n_batch || h < 0 || h >= g->n_heads || qb < 0 || qb >= g->n_qblocks)
        return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: (batch %d, head %d, query block %d) outside %d x %d x %d", bb, h, qb,
                        g->n_batch, g->n_heads, g->n_qblocks);
    if (b->n == b->cap) {
        int64_t nc = b->cap ? b->cap * 2 : 1024;
        bentry *ne = (bentry *)ak__alloc(b->ctx, sizeof(bentry) * (size_t)nc);
        if (!ne) return ak__fail(b->ctx, AK_ERR_OUT_OF_MEMORY, "builder entries");
        if (b->n) memcpy(ne, b->e, sizeof(bentry) * (size_t)b->n);
        ak__free(b->ctx, b->e);
        b->e = ne;
        b->cap = nc;
    }
    bentry *e = &b->e[b->n++];
    e->r = ((int64_t)bb * g->n_heads + h) * g->n_qblocks + qb;
    e->kind = kind;
    e->a = x;
    e->b = y;
    return AK_OK;
}

ak_status ak_sparse_builder_add_span(ak_sparse_builder *b, int32_t bb, int32_t h, int32_t qb, int32_t lo, int32_t hi) {
    if (!b) return AK_ERR_NULL_POINTER;
    if (lo < 0) lo = 0;
    if (hi > b->geom.nk) hi = b->geom.nk;
    if (lo >= hi) return AK_OK; /* empty after clipping: nothing to add */
    return badd(b, bb, h, qb, 0, lo, hi);
}
ak_status ak_sparse_builder_add_col(ak_sparse_builder *b, int32_t bb, int32_t h, int32_t qb, int32_t j) {
    if (!b) return AK_ERR_NULL_POINTER;
    if (j < 0 || j >= b->geom.nk) return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: col %d outside [0, nk = %d)", j, b->geom.nk);
    return badd(b, bb, h, qb, 1, j, j);
}
ak_status ak_sparse_builder_add_band(ak_sparse_builder *b, int32_t bb, int32_t h, int32_t qb, int32_t dlo, int32_t dhi) {
    if (!b) return AK_ERR_NULL_POINTER;
    int64_t lim = (int64_t)b->geom.nq + b->geom.nk;
    if (dlo > dhi) return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: band [%d, %d] is empty", dlo, dhi);
    if (dlo < -lim) dlo = (int32_t)-lim;
    if (dhi > lim) dhi = (int32_t)lim;
    if (dlo > dhi) return AK_OK;
    return badd(b, bb, h, qb, 2, dlo, dhi);
}
ak_status ak_sparse_builder_set_na(ak_sparse_builder *b, int32_t bb, int32_t h, int32_t qb) {
    if (!b) return AK_ERR_NULL_POINTER;
    if (b->geom.na_geom.ndim == 0)
        return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: set_na needs na_geom in the builder's geometry");
    return badd(b, bb, h, qb, 3, 0, 0);
}
ak_status ak_sparse_builder_add_row(ak_sparse_builder *b, int32_t bb, int32_t h, int32_t qb, int32_t row) {
    if (!b) return AK_ERR_NULL_POINTER;
    if (row < 0 || row >= b->geom.nq) return ak__fail(b->ctx, AK_ERR_INVALID_ARGUMENT, "builder: row %d outside [0, nq = %d)", row, b->geom.nq);
    b->gather = 1;
    return badd(b, bb, h, qb, 4, row, row);
}

static int cmp_bentry(const void *x, const void *y) {
    const bentry *a = (const bentry *)x, *b = (const bentry *)y;
    if (a->r != b->r) return a->r < b->r ? -1 : 1;
    if (a->kind != b->kind) return a->kind - b->kind;
    if (a->a != b->a) return a->a < b->a ? -1 : 1;
    return a->b < b->b ? -1 : (a->b > b->b);
}

ak_status ak__sparse_finish_named(ak_sparse_builder *b, const char *name, ak_sparse **out) {
    if (!b) return AK_ERR_NULL_POINTER;
    ak_ctx *ctx = b->ctx;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (b->n > 1) qsort(b->e, (size_t)b->n, sizeof(bentry), cmp_bentry);
    ak_sparse_desc d = b->geom;
    int64_t R = (int64_t)d.n_batch * d.n_heads * d.n_qblocks;
    size_t offb = sizeof(int64_t) * (size_t)(R + 1);
    size_t nn = (size_t)(b->n ? b->n : 1);
    int64_t *qo = (int64_t *)ak__alloc(ctx, offb), *so = (int64_t *)ak__alloc(ctx, offb), *co = (int64_t *)ak__alloc(ctx, offb),
            *bo = (int64_t *)ak__alloc(ctx, offb);
    int32_t *qr = (int32_t *)ak__alloc(ctx, 4 * nn), *slo = (int32_t *)ak__alloc(ctx, 4 * nn), *shi = (int32_t *)ak__alloc(ctx, 4 * nn),
            *ci = (int32_t *)ak__alloc(ctx, 4 * nn), *blo = (int32_t *)ak__alloc(ctx, 4 * nn), *bhi = (int32_t *)ak__alloc(ctx, 4 * nn);
    uint8_t *na = (uint8_t *)ak__alloc(ctx, (size_t)R + 1);
    ak_status st = AK_OK;
    if (!qo || !so || !co || !bo || !qr || !slo || !shi || !ci || !blo || !bhi || !na) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "builder finish");
        goto done;
    }
    memset(na, 0, (size_t)R + 1);
    int64_t nq = 0, ns = 0, nc = 0, nb = 0, e = 0;
    for (int64_t r = 0; r < R; r++) {
        qo[r] = nq;
        so[r] = ns;
        co[r] = nc;
        bo[r] = nb;
        int64_t s_first = ns;
        for (; e < b->n && b->e[e].r == r; e++) {
            const bentry *x = &b->e[e];
            switch (x->kind) {
            case 0: /* spans arrive sorted by lo: merge overlapping or touching */
                if (ns > s_first && x->a <= shi[ns - 1]) {
                    if (x->b > shi[ns - 1]) shi[ns - 1] = x->b;
                } else {
                    slo[ns] = x->a;
                    shi[ns] = x->b;
                    ns++;
                }
                break;
            case 1: { /* cols sorted: drop duplicates and cols inside a span (spans of r are complete) */
                int32_t j = x->a;
                if (nc > co[r] && ci[nc - 1] == j) break;
                int inside = 0;
                int64_t lo = s_first, hi = ns; /* binary search the span with the largest lo <= j */
                while (lo < hi) {
                    int64_t mid = (lo + hi) / 2;
                    if (slo[mid] <= j) lo = mid + 1;
                    else hi = mid;
                }
                if (lo > s_first && shi[lo - 1] > j) inside = 1;
                if (!inside) ci[nc++] = j;
                break;
            }
            case 2:
                if (nb > bo[r] && x->a <= bhi[nb - 1] + 1) {
                    if (x->b > bhi[nb - 1]) bhi[nb - 1] = x->b;
                } else {
                    blo[nb] = x->a;
                    bhi[nb] = x->b;
                    nb++;
                }
                break;
            case 3: na[r] = 1; break;
            case 4:
                if (nq > qo[r] && qr[nq - 1] == x->a) break;
                qr[nq++] = x->a;
                break;
            }
        }
    }
    qo[R] = nq;
    so[R] = ns;
    co[R] = nc;
    bo[R] = nb;
    d.qrow_off = b->gather ? qo : NULL;
    d.qrows = b->gather ? qr : NULL;
    d.span_off = so;
    d.span_lo = slo;
    d.span_hi = shi;
    d.col_off = co;
    d.col_idx = ci;
    d.band_off = bo;
    d.band_lo = blo;
    d.band_hi = bhi;
    d.na = na;
    d.name = name;
    d.key_bias = b->key_bias;
    d.key_score = b->key_score;
    d.row_thresh = b->row_thresh;
    st = ak_sparse_create(ctx, &d, out);
done:
    ak__free(ctx, qo);
    ak__free(ctx, so);
    ak__free(ctx, co);
    ak__free(ctx, bo);
    ak__free(ctx, qr);
    ak__free(ctx, slo);
    ak__free(ctx, shi);
    ak__free(ctx, ci);
    ak__free(ctx, blo);
    ak__free(ctx, bhi);
    ak__free(ctx, na);
    return st;
}

ak_status ak_sparse_builder_finish(ak_sparse_builder *b, ak_sparse **out) { return ak__sparse_finish_named(b, NULL, out); }
