/*
 * The sparse executor: runs any ak_sparse plan with the dense kernel's micro-kernels.
 *
 * A work item is (sequence b, plan list r, the query heads sharing it, some of the list's rows); its
 * columns are heads x rows, as in the dense executor. The item walks the list's entries in a fixed
 * order -- spans, cols, bands, neighborhood -- and cuts each into key tiles of at most bc keys:
 *   span [lo, hi)      contiguous tiles; masked only where a column's visible range (causal, window)
 *                      ends inside the tile
 *   cols               gathered tiles of up to bc listed keys; a column's visible keys are a run of them
 *   band [dlo, dhi]    contiguous tiles over the band's hull; column c sees [pos_c - dhi, pos_c - dlo]
 *   na                 per key row of the neighborhood box (outer axes), tiles along the last axis
 *                      (stride = dilation); column c sees its window's run when the row is in its box
 * So every tile's mask is one interval per column (the mask micro-kernel), except where entries of
 * one list overlap: a band or na tile drops the keys of the list's spans and cols (whole tile rows),
 * and an na tile also the keys of the list's bands (element by element): each pair once.
 * The same walk, without the arithmetic, prices every item at plan time; items run costliest first
 * (OpenMP dynamic), each by one thread in a fixed key order: bitwise identical for any thread count.
 */
#include "exec/sparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

#define AK_SP_MAXCOL 272        /* columns of a tile: mpad <= 256 */

typedef struct walk {
    const ak_plan *pl;
    const ak_sparse *sp;
    const ak_attn_tensors *t;   /* NULL: pricing only */
    ak_fwd_scratch *s;
    int64_t b, r;
    int M, mpad;
    const int64_t *lo, *hi, *pos;   /* per column: visible range (desc masks and plan causal), position */
    int32_t *rlo, *rhi;
    int32_t *jidx;
    int first;
    double cost, pairs;
    ak_fwd_emask em0;               /* the walk's own element mask under refine_emask */
    const float *kbias, *kscore, *rthresh; /* the plan's per-key bias / score and per-row threshold of this (b, h) */
    uint8_t excl[256];
    /* na: per column and axis the window (group, in-group [ulo, uhi]) */
    int32_t g[3][AK_SP_MAXCOL], ulo[3][AK_SP_MAXCOL], uhi[3][AK_SP_MAXCOL];
} walk;

static int32_t clamp_rel(int64_t x, int nk) { return (int32_t)(x < -1 ? -1 : x > nk ? nk : x); }

/* The plan's refinements on a tile's scores (after the walk's own element mask, if any): a key whose
 * score is below a row's threshold is dropped for that row; the key bias joins every logit. */
static void refine_emask(void *user, const ak_fwd_scratch *s, int nk, int mpad, int64_t ld) {
    walk *w = (walk *)user;
    if (w->em0) w->em0(user, s, nk, mpad, ld);
    for (int t = 0; t < nk; t++) {
        float *row = s->st + (size_t)t * ld;
        int64_t j = s->jidx[t];
        if (w->kscore) {
            float ks = w->kscore[j];
            for (int c = 0; c < w->M; c++)
                if (!(ks >= w->rthresh[s->coli[c]])) row[c] = -INFINITY;
        }
        if (w->kbias && w->kbias[j] != 0.0f) {
            float kb = w->kbias[j];
            for (int c = 0; c < w->M; c++) row[c] += kb;
        }
    }
}

/* Run (or price) one tile whose rlo/rhi are set (masked) or not needed. */
static void emit(walk *w, int nk, int contiguous, int masked, const uint8_t *excl, ak_fwd_emask em) {
    int c0 = 0, c1 = w->mpad; /* the columns ak__fwd_tile computes */
    if (masked && !ak__fwd_col_range(w->M, nk, w->rlo, w->rhi, &c0, &c1)) return;
    w->cost += (double)(nk + 16) * (c1 - c0);
    w->pairs += (double)nk * ((c1 < w->M ? c1 : w->M) - c0);
    if (w->kbias || w->kscore) {
        w->em0 = em;
        em = refine_emask;
    }
    if (w->t) ak__fwd_tile(w->pl, w->t, w->s, w->b, w->M, nk, contiguous, masked, excl, em, w, &w->first);
}

/* First index of sorted v[0..n) with v[k] >= x (n if none). */
static int64_t lower_bound(const int32_t *v, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Does the key range [a, b] meet a span or a col of list r?  If so, mark the tile rows to drop. */
static const uint8_t *exclusions(walk *w, int nk) {
    const ak_sparse *sp = w->sp;
    int64_t a = w->jidx[0], b = w->jidx[nk - 1];
    int64_t s0 = sp->span_off[w->r], s1 = sp->span_off[w->r + 1], c0 = sp->col_off[w->r], c1 = sp->col_off[w->r + 1];
    int hit = 0;
    for (int64_t e = s0; e < s1 && !hit; e++) hit = sp->span_lo[e] <= b && sp->span_hi[e] > a;
    const int32_t *cv = sp->col_idx + c0;
    if (!hit && c1 > c0) {
        int64_t k = lower_bound(cv, c1 - c0, a); /* first col >= a */
        hit = k < c1 - c0 && cv[k] <= b;
    }
    if (!hit) return NULL;
    for (int t = 0; t < nk; t++) {
        int64_t j = w->jidx[t];
        int x = 0;
        for (int64_t e = s0; e < s1 && !x; e++) x = sp->span_lo[e] <= j && j < sp->span_hi[e];
        if (!x && c1 > c0) {
            int64_t k = lower_bound(cv, c1 - c0, j);
            x = k < c1 - c0 && cv[k] == j;
        }
        w->excl[t] = (uint8_t)x;
    }
    return w->excl;
}

/* na tiles: drop the elements a band of the list already covered. */
static void band_emask(void *user, const ak_fwd_scratch *s, int nk, int mpad, int64_t ld) {
    walk *w = (walk *)user;
    const ak_sparse *sp = w->sp;
    for (int t = 0; t < nk; t++)
        for (int c = 0; c < w->M; c++) {
            int64_t delta = w->pos[c] - s->jidx[t];
            for (int64_t e = sp->band_off[w->r]; e < sp->band_off[w->r + 1]; e++)
                if (delta >= sp->band_lo[e] && delta <= sp->band_hi[e]) {
                    s->st[(size_t)t * ld + c] = -INFINITY;
                    break;
                }
        }
    (void)mpad;
}

static void walk_spans(walk *w, int64_t Hlo, int64_t Hhi, int64_t Ilo, int64_t Ihi) {
    const ak_sparse *sp = w->sp;
    const int bc = w->pl->bc;
    for (int64_t e = sp->span_off[w->r]; e < sp->span_off[w->r + 1]; e++) {
        int64_t a = sp->span_lo[e] > Hlo ? sp->span_lo[e] : Hlo;
        int64_t z = sp->span_hi[e] - 1 < Hhi ? sp->span_hi[e] - 1 : Hhi;
        for (int64_t j0 = a; j0 <= z;) {
            int nk = (int)(z + 1 - j0 < bc ? z + 1 - j0 : bc);
            int full = j0 >= Ilo && j0 + nk - 1 <= Ihi;
            /* a tile that some column's range ends in goes in halves: the columns that see nothing of
             * a half are not computed (the upper half of a causal diagonal block) */
            if (!full && nk > bc / 2) nk = bc / 2;
            for (int t = 0; t < nk; t++) w->jidx[t] = (int32_t)(j0 + t);
            if (!full)
                for (int c = 0; c < w->mpad; c++) {
                    w->rlo[c] = clamp_rel(w->lo[c] - j0, nk);
                    w->rhi[c] = clamp_rel(w->hi[c] - j0, nk);
                }
            emit(w, nk, 1, !full, NULL, NULL);
            j0 += nk;
        }
    }
}

/* Merge-Q item: the spans of lists r (rows [0, n1): columns [0, cb)) and r2 (columns [cb, M)) swept
 * together; each segment of keys runs once, on the columns of the lists that hold it. */
static void walk_spans2(walk *w, int64_t r2, int cb, int64_t Hlo, int64_t Hhi, int64_t Ilo, int64_t Ihi) {
    const ak_sparse *sp = w->sp;
    const int bc = w->pl->bc;
    const int64_t INF = INT64_MAX;
    int64_t ia = sp->span_off[w->r], a1 = sp->span_off[w->r + 1], ib = sp->span_off[r2], b1 = sp->span_off[r2 + 1];
    int64_t x = INT64_MIN;
    for (;;) {
        int64_t alo = ia < a1 ? sp->span_lo[ia] : INF, ahi = ia < a1 ? sp->span_hi[ia] : INF;
        int64_t blo = ib < b1 ? sp->span_lo[ib] : INF, bhi = ib < b1 ? sp->span_hi[ib] : INF;
        if (alo == INF && blo == INF) break;
        int64_t m = alo < blo ? alo : blo;
        if (x < m) x = m;
        int la = alo <= x && x < ahi, lb = blo <= x && x < bhi;
        int64_t end = INF, v[4] = {alo, ahi, blo, bhi};
        for (int k = 0; k < 4; k++)
            if (v[k] > x && v[k] < end) end = v[k];
        /* keys [x, end) belong to list r iff la, to r2 iff lb */
        int64_t a = x > Hlo ? x : Hlo, z = end - 1 < Hhi ? end - 1 : Hhi;
        for (int64_t j0 = a; j0 <= z;) {
            int nk = (int)(z + 1 - j0 < bc ? z + 1 - j0 : bc);
            int inside = j0 >= Ilo && j0 + nk - 1 <= Ihi, full = la && lb && inside;
            /* halve only where a column's range ends inside the tile (the diagonal), as walk_spans;
             * a segment of one list runs whole on that list's columns */
            if (!inside && nk > bc / 2) {
                nk = bc / 2;
                inside = j0 >= Ilo && j0 + nk - 1 <= Ihi;
                full = la && lb && inside;
            }
            for (int t = 0; t < nk; t++) w->jidx[t] = (int32_t)(j0 + t);
            if (!full)
                for (int c = 0; c < w->mpad; c++) {
                    int own = c < cb ? la : lb;
                    w->rlo[c] = own ? clamp_rel(w->lo[c] - j0, nk) : 0;
                    w->rhi[c] = own ? clamp_rel(w->hi[c] - j0, nk) : -1;
                }
            emit(w, nk, 1, !full, NULL, NULL);
            j0 += nk;
        }
        x = end;
        if (ia < a1 && ahi <= x) ia++;
        if (ib < b1 && bhi <= x) ib++;
    }
}

static void walk_cols(walk *w, int64_t Hlo, int64_t Hhi, int64_t Ilo, int64_t Ihi) {
    const ak_sparse *sp = w->sp;
    const int bc = w->pl->bc;
    const int32_t *cv = sp->col_idx + sp->col_off[w->r];
    int64_t n = sp->col_off[w->r + 1] - sp->col_off[w->r];
    int64_t a = lower_bound(cv, n, Hlo), z = lower_bound(cv, n, Hhi + 1);
    for (int64_t e0 = a; e0 < z; e0 += bc) {
        int nk = (int)(z - e0 < bc ? z - e0 : bc);
        for (int t = 0; t < nk; t++) w->jidx[t] = cv[e0 + t];
        int contiguous = w->jidx[nk - 1] - w->jidx[0] == nk - 1;
        int full = w->jidx[0] >= Ilo && w->jidx[nk - 1] <= Ihi;
        if (!full)
            for (int c = 0; c < w->mpad; c++) {
                if (c >= w->M) {
                    w->rlo[c] = 0;
                    w->rhi[c] = nk - 1;
                    continue;
                }
                w->rlo[c] = (int32_t)lower_bound(w->jidx, nk, w->lo[c]);
                w->rhi[c] = (int32_t)lower_bound(w->jidx, nk, w->hi[c] + 1) - 1;
            }
        emit(w, nk, contiguous, !full, NULL, NULL);
    }
}

static void walk_bands(walk *w) {
    const ak_sparse *sp = w->sp;
    const int bc = w->pl->bc;
    for (int64_t e = sp->band_off[w->r]; e < sp->band_off[w->r + 1]; e++) {
        int64_t Hlo = INT64_MAX, Hhi = INT64_MIN;
        for (int c = 0; c < w->M; c++) {
            int64_t a = w->pos[c] - sp->band_hi[e], z = w->pos[c] - sp->band_lo[e];
            if (a < w->lo[c]) a = w->lo[c];
            if (z > w->hi[c]) z = w->hi[c];
            if (a > z) continue;
            if (a < Hlo) Hlo = a;
            if (z > Hhi) Hhi = z;
        }
        for (int64_t j0 = Hlo; j0 <= Hhi; j0 += bc) {
            int nk = (int)(Hhi + 1 - j0 < bc ? Hhi + 1 - j0 : bc);
            for (int t = 0; t < nk; t++) w->jidx[t] = (int32_t)(j0 + t);
            for (int c = 0; c < w->mpad; c++) {
                if (c >= w->M) {
                    w->rlo[c] = 0;
                    w->rhi[c] = -1;
                    continue;
                }
                int64_t a = w->pos[c] - sp->band_hi[e], z = w->pos[c] - sp->band_lo[e];
                if (a < w->lo[c]) a = w->lo[c];
                if (z > w->hi[c]) z = w->hi[c];
                w->rlo[c] = clamp_rel(a - j0, nk);
                w->rhi[c] = clamp_rel(z - j0, nk);
            }
            emit(w, nk, 1, 1, exclusions(w, nk), NULL);
        }
    }
}

static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* One key row of the neighborhood box: outer coordinates fixed (key index base), the last axis in
 * group gl; columns in[c] take part. */
static void na_key_row(walk *w, int64_t base, const uint8_t *in) {
    const ak_sparse *sp = w->sp;
    const ak_sparse_na *g = &sp->na_geom;
    const int bc = w->pl->bc, la = g->ndim - 1, dl = g->dilation[la];
    int64_t ua = INT64_MAX, uz = INT64_MIN;
    int32_t gl = -1;
    for (int c = 0; c < w->M; c++)
        if (in[c]) {
            if (w->ulo[la][c] < ua) ua = w->ulo[la][c];
            if (w->uhi[la][c] > uz) uz = w->uhi[la][c];
            gl = w->g[la][c];
        }
    if (gl < 0) return;
    int has_bands = sp->band_off[w->r + 1] > sp->band_off[w->r];
    for (int64_t u0 = ua; u0 <= uz; u0 += bc) {
        int nk = (int)(uz + 1 - u0 < bc ? uz + 1 - u0 : bc);
        for (int t = 0; t < nk; t++) w->jidx[t] = (int32_t)(base + gl + (int64_t)dl * (u0 + t));
        for (int c = 0; c < w->mpad; c++) {
            if (c >= w->M || !in[c]) {
                w->rlo[c] = 0;
                w->rhi[c] = -1;
                continue;
            }
            int64_t a = w->ulo[la][c], z = w->uhi[la][c];
            int64_t va = w->lo[c] - base - gl, vz = w->hi[c] - base - gl;
            if (dl > 1) {
                va = ceil_div(va, dl);
                vz = floor_div(vz, dl);
            }
            if (a < va) a = va;
            if (z > vz) z = vz;
            w->rlo[c] = clamp_rel(a - u0, nk);
            w->rhi[c] = clamp_rel(z - u0, nk);
        }
        emit(w, nk, dl == 1, 1, exclusions(w, nk), has_bands ? band_emask : NULL);
    }
}

static void walk_na(walk *w, const int64_t *coli) {
    const ak_sparse_na *g = &w->sp->na_geom;
    const int nd = g->ndim;
    for (int c = 0; c < w->M; c++) {
        int32_t x[3];
        ak__na_coords(g, coli[c], x);
        for (int a = 0; a < nd; a++)
            ak__na_window(g->extent[a], g->kernel[a], g->dilation[a], g->stride[a], g->causal[a], x[a], &w->g[a][c], &w->ulo[a][c],
                          &w->uhi[a][c]);
    }
    uint8_t in[AK_SP_MAXCOL];
    if (nd == 1) {
        for (int c = 0; c < w->M; c++) in[c] = 1;
        na_key_row(w, 0, in);
        return;
    }
    /* outer key coordinates: axis 0 (and axis 1 in 3-d), each over the union of the columns' windows */
    int64_t x0a = INT64_MAX, x0z = INT64_MIN, x1a = 0, x1z = 0;
    for (int c = 0; c < w->M; c++) {
        int64_t a = w->g[0][c] + (int64_t)g->dilation[0] * w->ulo[0][c], z = w->g[0][c] + (int64_t)g->dilation[0] * w->uhi[0][c];
        if (a < x0a) x0a = a;
        if (z > x0z) x0z = z;
    }
    if (nd == 3) {
        x1a = INT64_MAX;
        x1z = INT64_MIN;
        for (int c = 0; c < w->M; c++) {
            int64_t a = w->g[1][c] + (int64_t)g->dilation[1] * w->ulo[1][c], z = w->g[1][c] + (int64_t)g->dilation[1] * w->uhi[1][c];
            if (a < x1a) x1a = a;
            if (z > x1z) x1z = z;
        }
    }
    for (int64_t x0 = x0a; x0 <= x0z; x0++)
        for (int64_t x1 = x1a; x1 <= x1z; x1++) {
            int any = 0;
            for (int c = 0; c < w->M; c++) {
                int ok = (int)(x0 % g->dilation[0]) == w->g[0][c];
                if (ok) {
                    int64_t u = x0 / g->dilation[0];
                    ok = u >= w->ulo[0][c] && u <= w->uhi[0][c];
                }
                if (ok && nd == 3) {
                    ok = (int)(x1 % g->dilation[1]) == w->g[1][c];
                    int64_t u = x1 / g->dilation[1];
                    ok = ok && u >= w->ulo[1][c] && u <= w->uhi[1][c];
                }
                in[c] = (uint8_t)ok;
                any |= ok;
            }
            if (!any) continue;
            int64_t base = nd == 2 ? x0 * g->extent[1] : (x0 * g->extent[1] + x1) * g->extent[2];
            na_key_row(w, base, in);
        }
}

/* Walk item `it`: run it (t != NULL) or price it. lo/hi/pos are the columns' ranges (priced: computed here).
 * tout (AK_SPARSE_MEAN): the per-slot outputs, written at the rows' slots (their index in the (b, h)'s row
 * lists) instead of t's O / LSE at the rows; NULL otherwise. */
static void walk_item(const ak_plan *pl, const ak_sparse *sp, const ak_sitem *it, const ak_attn_tensors *t,
                      const ak_attn_tensors *tout, ak_fwd_scratch *s, walk *w, int64_t *lo, int64_t *hi, int64_t *pos,
                      int32_t *rlo, int32_t *rhi, int32_t *jidx, int32_t *colh, int64_t *coli) {
    const ak_problem *p = &pl->p;
    int M = (int)(it->nh * it->nr), mpad = (M + 15) / 16 * 16;
    /* row-major columns (col = row * nh + head): the columns that see a key of a masked tile are then
     * a contiguous range for causal and band masks, whatever the number of heads */
    for (int c = 0; c < M; c++) {
        int64_t e = c / it->nh;
        colh[c] = it->h0 + (int32_t)(c % it->nh);
        coli[c] = it->rows ? it->rows[e] : it->first + e;
    }
    memset(w, 0, offsetof(walk, excl));
    w->pl = pl;
    w->sp = sp;
    w->t = t;
    w->s = s;
    w->b = it->b;
    w->r = it->r;
    w->M = M;
    w->mpad = mpad;
    w->first = 1;
    w->rlo = rlo;
    w->rhi = rhi;
    w->jidx = jidx;
    if (it->r >= 0) {
        int64_t bh = it->r / sp->n_qblocks;
        w->kbias = sp->key_bias ? sp->key_bias + bh * sp->nk : NULL;
        w->kscore = sp->key_score ? sp->key_score + bh * sp->nk : NULL;
        w->rthresh = sp->key_score ? sp->row_thresh + bh * sp->nq : NULL;
    }
    if (t) {
        ak__fwd_begin(pl, t, s, it->b, M, sp->causal);
    } else {
        ak_seq sq = ak__seq(p, it->b);
        for (int c = 0; c < mpad; c++) {
            if (c >= M) {
                lo[c] = 0;
                hi[c] = INT64_MAX / 4;
                pos[c] = 0;
                continue;
            }
            ak__row_range(p, &sq, coli[c], &lo[c], &hi[c]);
            pos[c] = coli[c] + sq.Lk - sq.Lq;
            if (sp->causal && hi[c] > pos[c]) hi[c] = pos[c];
        }
    }
    w->lo = lo;
    w->hi = hi;
    w->pos = pos;
    if (it->r >= 0 && M > 0) {
        int64_t Hlo = INT64_MAX, Hhi = INT64_MIN, Ilo = INT64_MIN, Ihi = INT64_MAX;
        for (int c = 0; c < M; c++) {
            if (lo[c] < Hlo) Hlo = lo[c];
            if (hi[c] > Hhi) Hhi = hi[c];
            if (lo[c] > Ilo) Ilo = lo[c];
            if (hi[c] < Ihi) Ihi = hi[c];
        }
        if (it->r2 >= 0) {
            walk_spans2(w, it->r2, (int)(it->n1 * it->nh), Hlo, Hhi, Ilo, Ihi);
            if (t) ak__fwd_end(pl, t, s, it->b, M);
            return;
        }
        walk_spans(w, Hlo, Hhi, Ilo, Ihi);
        walk_cols(w, Hlo, Hhi, Ilo, Ihi);
        walk_bands(w);
        if (sp->na[it->r]) walk_na(w, coli);
    }
    if (t && tout) { /* AK_SPARSE_MEAN: column c's output goes to its row's slot */
        if (it->r < 0) return; /* rows in no block: the final combine writes them */
        int64_t base = (int64_t)(it->rows - sp->qrows) - sp->qrow_off[it->r - it->r % sp->n_qblocks];
        for (int c = 0; c < M; c++) coli[c] = base + c / it->nh;
        ak__fwd_end(pl, tout, s, it->b, M);
        return;
    }
    if (t) ak__fwd_end(pl, t, s, it->b, M);
}

/* Cost classes of about 9% (log2 in eighths): items run costliest class first (balance), and in plan
 * order within a class (neighbouring query blocks share K/V in the caches). */
static int cost_class(int64_t c) {
    int e = 0;
    while (c >= 16) {
        c >>= 1;
        e++;
    }
    return e * 8 + (int)(c & 7);
}

static int cmp_item(const void *a, const void *b) {
    const ak_sitem *x = (const ak_sitem *)a, *y = (const ak_sitem *)b;
    int cx = cost_class(x->cost), cy = cost_class(y->cost);
    if (cx != cy) return cx < cy ? 1 : -1;
    if (x->b != y->b) return x->b - y->b;
    if (x->h0 != y->h0) return x->h0 - y->h0;
    if (x->r != y->r) return x->r < y->r ? -1 : 1;
    return x->first < y->first ? -1 : (x->first > y->first);
}

void ak__splan_free(const ak_ctx *ctx, struct ak_splan *s) {
    if (!s) return;
    ak_sparse_destroy(s->sp);
    ak__free(ctx, s->items);
    ak__free(ctx, s->unc_rows);
    ak__free(ctx, s);
}

static int span_only(const ak_sparse *sp, int64_t r) {
    return sp->col_off[r + 1] == sp->col_off[r] && sp->band_off[r + 1] == sp->band_off[r] && !sp->na[r];
}

ak_status ak__splan_build(ak_plan *pl, const ak_sparse *src) {
    ak_ctx *ctx = pl->ctx;
    const ak_problem *p = &pl->p;
    struct ak_splan *S = (struct ak_splan *)ak__alloc(ctx, sizeof *S);
    if (!S) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse plan");
    memset(S, 0, sizeof *S);
    pl->sparse = S;
    ak_status st = ak__sparse_clone(ctx, src, &S->sp);
    if (st != AK_OK) return st;
    const ak_sparse *sp = S->sp;
    /* query-head units sharing one plan head and one KV head */
    int per_q = sp->n_heads == p->Hq && p->Hq != p->Hkv && p->Hq > 1;
    int unit = per_q ? 1 : p->g;
    const char *e = getenv("AK_TILE_M");
    int mt = 128;
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        if (v >= 16 && v <= 256) mt = (int)v;
    }
    int nh_max = unit < mt ? unit : mt;
    int rows_max = mt / nh_max > 0 ? mt / nh_max : 1;
    pl->bc = 64;
    pl->nh = nh_max;
    pl->bq = rows_max;
    pl->mpad_max = (nh_max * rows_max + 15) / 16 * 16;

    /* rows in no block (gather lists), per plan (b, h) */
    int64_t nbh = (int64_t)sp->n_batch * sp->n_heads;
    int64_t *unc_off = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(nbh + 1));
    if (!unc_off) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse plan rows");
    unc_off[0] = 0;
    if (sp->qrow_off) {
        uint8_t *seen = (uint8_t *)ak__alloc(ctx, (size_t)sp->nq + 1);
        S->unc_rows = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(nbh * sp->nq + 1));
        if (!seen || !S->unc_rows) {
            ak__free(ctx, seen);
            ak__free(ctx, unc_off);
            return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse plan rows");
        }
        int64_t n = 0;
        for (int64_t bh = 0; bh < nbh; bh++) {
            memset(seen, 0, (size_t)sp->nq + 1);
            for (int64_t r = bh * sp->n_qblocks; r < (bh + 1) * sp->n_qblocks; r++)
                for (int64_t x = sp->qrow_off[r]; x < sp->qrow_off[r + 1]; x++) seen[sp->qrows[x]] = 1;
            for (int32_t i = 0; i < sp->nq; i++)
                if (!seen[i]) S->unc_rows[n++] = i;
            unc_off[bh + 1] = n;
        }
        ak__free(ctx, seen);
    } else {
        for (int64_t bh = 0; bh < nbh; bh++) unc_off[bh + 1] = 0;
    }

    /* count and fill the items */
    int64_t count = 0;
    for (int pass = 0; pass < 2; pass++) {
        int64_t n = 0;
        for (int32_t b = 0; b < p->B; b++)
            for (int32_t hu = 0; hu < p->Hq; hu += unit) {
                int32_t ph = sp->n_heads == 1 ? 0 : per_q ? hu : hu / p->g;
                int64_t pb = sp->n_batch == 1 ? 0 : b;
                int64_t bh = pb * sp->n_heads + ph;
                for (int32_t h0 = hu; h0 < hu + unit; h0 += nh_max) {
                    int32_t nh = hu + unit - h0 < nh_max ? hu + unit - h0 : nh_max;
                    for (int64_t r = bh * sp->n_qblocks; r <= (bh + 1) * sp->n_qblocks; r++) {
                        const int32_t *list;
                        int64_t first, nr, rr = r;
                        if (r == (bh + 1) * sp->n_qblocks) { /* the uncovered rows */
                            list = S->unc_rows ? S->unc_rows + unc_off[bh] : NULL;
                            first = 0;
                            nr = unc_off[bh + 1] - unc_off[bh];
                            rr = -1;
                        } else {
                            ak__sparse_rows(sp, r, &list, &first, &nr);
                        }
                        /* Merge-Q: a whole fixed block of spans only and the next one of the same (b, h)
                         * go in one item when both fit: keys both lists hold then run at full width */
                        if (rr >= 0 && !list && nr <= rows_max / 2 && r + 1 < (bh + 1) * sp->n_qblocks &&
                            span_only(sp, r) && span_only(sp, r + 1)) {
                            int64_t f2, n2;
                            const int32_t *l2;
                            ak__sparse_rows(sp, r + 1, &l2, &f2, &n2);
                            if (pass == 1) {
                                ak_sitem *it = &S->items[n];
                                it->b = b;
                                it->h0 = h0;
                                it->nh = nh;
                                it->r = r;
                                it->r2 = r + 1;
                                it->n1 = nr;
                                it->rows = NULL;
                                it->first = first;
                                it->nr = nr + n2;
                            }
                            n++;
                            r++; /* list r + 1 is done */
                            continue;
                        }
                        for (int64_t e0 = 0; e0 < nr; e0 += rows_max, n++) {
                            if (pass == 0) continue;
                            ak_sitem *it = &S->items[n];
                            it->b = b;
                            it->h0 = h0;
                            it->nh = nh;
                            it->r = rr;
                            it->r2 = -1;
                            it->n1 = 0;
                            it->rows = list ? list + e0 : NULL;
                            it->first = list ? 0 : first + e0;
                            it->nr = nr - e0 < rows_max ? nr - e0 : rows_max;
                        }
                    }
                }
            }
        if (pass == 0) {
            count = n;
            S->items = (ak_sitem *)ak__alloc(ctx, sizeof(ak_sitem) * (size_t)(count + 1));
            if (!S->items) {
                ak__free(ctx, unc_off);
                return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse work list (%lld items)", (long long)count);
            }
        }
    }
    S->n_items = count;
    ak__free(ctx, unc_off);

    /* price every item with the executor's own walk */
    walk *w = (walk *)ak__alloc(ctx, sizeof(walk));
    int64_t *lo = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * 3 * AK_SP_MAXCOL);
    int32_t *small = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (3 * AK_SP_MAXCOL + 256));
    int64_t *coli = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * AK_SP_MAXCOL);
    if (!w || !lo || !small || !coli) {
        ak__free(ctx, w);
        ak__free(ctx, lo);
        ak__free(ctx, small);
        ak__free(ctx, coli);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "sparse plan pricing");
    }
    double total = 0;
    S->exec_pairs = 0;
    for (int64_t i = 0; i < count; i++) {
        ak_sitem *it = &S->items[i];
        walk_item(pl, sp, it, NULL, NULL, NULL, w, lo, lo + AK_SP_MAXCOL, lo + 2 * AK_SP_MAXCOL, small, small + AK_SP_MAXCOL,
                  small + 3 * AK_SP_MAXCOL, small + 2 * AK_SP_MAXCOL, coli);
        it->cost = (int64_t)w->cost + 64 * ((it->nh * it->nr + 15) / 16 * 16); /* + packing and output */
        S->exec_pairs += w->pairs;
        total += (double)it->cost;
    }
    ak__free(ctx, w);
    ak__free(ctx, lo);
    ak__free(ctx, small);
    ak__free(ctx, coli);
    qsort(S->items, (size_t)count, sizeof(ak_sitem), cmp_item);
    /* balance: longest first onto the least-loaded thread */
    int nt = pl->n_threads > 0 ? pl->n_threads : 1;
    double *load = (double *)ak__alloc(ctx, sizeof(double) * (size_t)nt);
    if (!load) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "balance");
    for (int k = 0; k < nt; k++) load[k] = 0;
    for (int64_t i = 0; i < count; i++) {
        int best = 0;
        for (int k = 1; k < nt; k++)
            if (load[k] < load[best]) best = k;
        load[best] += (double)S->items[i].cost;
    }
    double mx = 0;
    for (int k = 0; k < nt; k++) mx = load[k] > mx ? load[k] : mx;
    S->balance = total > 0 ? mx / (total / nt) : 1.0;
    ak__free(ctx, load);
    return AK_OK;
}

/* AK_SPARSE_MEAN, after the items: each row's output = the mean of its slots' outputs, LSE = log(sum e^LSE_slot). */
static void combine_mean(const ak_plan *pl, const ak_sparse *sp, const ak_attn_tensors *t, const float *ob, const float *lb,
                         int64_t smax, double *acc, int32_t *cnt, double *lsum) {
    const ak_problem *p = &pl->p;
    const int dv = p->dv;
    const ak_tensor *O = &t->o, *LSE = &t->lse;
    for (int32_t b = 0; b < p->B; b++)
        for (int32_t h = 0; h < p->Hq; h++) {
            int64_t bh = (sp->n_batch == 1 ? 0 : b) * (int64_t)sp->n_heads + ak__sparse_plan_head(sp, p->Hq, p->Hkv, h);
            int64_t r0 = bh * sp->n_qblocks, s0 = sp->qrow_off[r0];
            memset(acc, 0, sizeof(double) * (size_t)sp->nq * (size_t)dv);
            memset(cnt, 0, sizeof(int32_t) * (size_t)sp->nq);
            for (int64_t i = 0; i < sp->nq; i++) lsum[i] = -INFINITY;
            const float *obh = ob + ((size_t)b * p->Hq + h) * (size_t)smax * dv;
            const float *lbh = lb ? lb + ((size_t)b * p->Hq + h) * (size_t)smax : NULL;
            for (int64_t x = s0; x < sp->qrow_off[r0 + sp->n_qblocks]; x++) {
                int32_t row = sp->qrows[x];
                const float *o = obh + (size_t)(x - s0) * dv;
                for (int c = 0; c < dv; c++) acc[(size_t)row * dv + c] += o[c];
                cnt[row]++;
                if (lbh) {
                    double a = lsum[row], z = lbh[x - s0], m = a > z ? a : z;
                    if (m != -INFINITY) lsum[row] = m + log(exp(a - m) + exp(z - m));
                }
            }
            for (int64_t i = 0; i < sp->nq; i++) {
                int64_t off = (int64_t)b * O->stride[0] + h * O->stride[1] + i * O->stride[2];
                double inv = cnt[i] ? 1.0 / cnt[i] : 0.0;
                for (int c = 0; c < dv; c++) ak__store(O->data, O->dtype, off + c * O->stride[3], acc[(size_t)i * dv + c] * inv);
                if (p->desc.return_lse) {
                    int64_t lo = (int64_t)b * LSE->stride[0] + h * LSE->stride[1] + i * LSE->stride[2];
                    ak__store(LSE->data, LSE->dtype, lo, cnt[i] ? lsum[i] : -INFINITY);
                }
            }
        }
}

ak_status ak__sparse_execute(const ak_plan *pl, const ak_attn_tensors *t, void *ws) {
    const struct ak_splan *S = pl->sparse;
    const ak_sparse *sp = S->sp;
    const ak_problem *p = &pl->p;
    ak_attn_tensors tm, *tout = NULL;
    float *ob = NULL;
    double *acc = NULL, *lsum = NULL;
    int32_t *cnt = NULL;
    int64_t smax = 0;
    if (sp->combine == AK_SPARSE_MEAN && sp->qrow_off) {
        /* per-slot outputs [B][Hq][smax][dv] (+ LSE [B][Hq][smax]), combined after the items */
        for (int64_t bh = 0; bh < (int64_t)sp->n_batch * sp->n_heads; bh++) {
            int64_t n = sp->qrow_off[(bh + 1) * sp->n_qblocks] - sp->qrow_off[bh * sp->n_qblocks];
            if (n > smax) smax = n;
        }
        size_t no = (size_t)p->B * p->Hq * (size_t)smax * p->dv, nl = (size_t)p->B * p->Hq * (size_t)smax;
        ob = (float *)ak__alloc(pl->ctx, sizeof(float) * (no + nl + 1));
        acc = (double *)ak__alloc(pl->ctx, sizeof(double) * ((size_t)sp->nq * p->dv + 1));
        lsum = (double *)ak__alloc(pl->ctx, sizeof(double) * ((size_t)sp->nq + 1));
        cnt = (int32_t *)ak__alloc(pl->ctx, sizeof(int32_t) * ((size_t)sp->nq + 1));
        if (!ob || !acc || !lsum || !cnt) {
            ak__free(pl->ctx, ob);
            ak__free(pl->ctx, acc);
            ak__free(pl->ctx, lsum);
            ak__free(pl->ctx, cnt);
            return ak__fail(pl->ctx, AK_ERR_OUT_OF_MEMORY, "per-block outputs of a mean-combined plan (%zu floats)", no + nl);
        }
        tm = *t;
        tm.o = ak_tensor_4d(ob, AK_F32, p->B, p->Hq, smax, p->dv);
        tm.lse = ak_tensor_3d(ob + no, AK_F32, p->B, p->Hq, smax);
        tout = &tm;
    }
    char *base = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    int nt = pl->n_threads;
    if ((int64_t)nt > S->n_items) nt = S->n_items > 0 ? (int)S->n_items : 1;
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        ak_fwd_scratch s = ak__fwd_carve(base + (size_t)tid * pl->ws_per_thread, pl->p.d, pl->p.dv, pl->mpad_max, pl->bc);
        walk *w = (walk *)(base + (size_t)tid * pl->ws_per_thread + (pl->ws_per_thread - ak__sparse_walk_bytes()));
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t i = 0; i < S->n_items; i++)
            walk_item(pl, S->sp, &S->items[i], t, tout, &s, w, s.lo, s.hi, s.pos, s.rlo, s.rhi, s.jidx, s.colh, s.coli);
    }
    if (tout) {
        combine_mean(pl, sp, t, ob, p->desc.return_lse ? (const float *)tm.lse.data : NULL, smax, acc, cnt, lsum);
        ak__free(pl->ctx, ob);
        ak__free(pl->ctx, acc);
        ak__free(pl->ctx, lsum);
        ak__free(pl->ctx, cnt);
    }
    return AK_OK;
}

size_t ak__sparse_walk_bytes(void) { return (sizeof(walk) + 63) / 64 * 64; }

/* ---- public entry points ---- */

static ak_status check_geometry(const ak_ctx *ctx, const ak_problem *p, const ak_sparse *sp) {
    if (p->ragged)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "sparse plans take fixed-length batches (no cu_seqlens); pack documents with ak_sparse_document");
    if (sp->nq != p->desc.seqlen_q || sp->nk != p->desc.seqlen_k)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "sparse plan is %d x %d (nq x nk), the problem %d x %d", sp->nq, sp->nk,
                        p->desc.seqlen_q, p->desc.seqlen_k);
    if (sp->n_batch != 1 && sp->n_batch != p->B)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "sparse plan has n_batch = %d; the problem has batch %d (must be 1 or equal)",
                        sp->n_batch, p->B);
    if (sp->n_heads != 1 && sp->n_heads != p->Hkv && sp->n_heads != p->Hq)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "sparse plan has n_heads = %d; must be 1, num_heads_kv = %d or num_heads_q = %d",
                        sp->n_heads, p->Hkv, p->Hq);
    return AK_OK;
}

ak_status ak_plan_create_sparse(ak_ctx *ctx, const ak_attn_desc *desc, const ak_sparse *sp, ak_plan **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (!sp) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse plan is NULL");
    ak_plan *pl = (ak_plan *)ak__alloc(ctx, sizeof *pl);
    if (!pl) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "plan");
    memset(pl, 0, sizeof *pl);
    pl->ctx = ctx;
    ak_status st = ak__problem_init(ctx, desc, 0, &pl->p);
    if (st != AK_OK) {
        ak__free(ctx, pl);
        return st;
    }
    if ((st = check_geometry(ctx, &pl->p, sp)) != AK_OK) {
        ak_plan_destroy(pl);
        return st;
    }
    pl->n_threads = ctx->n_threads;
    pl->kern = ctx->force_ref ? NULL : ak__kernel_for(ctx->isa);
    pl->kbf16 = pl->kern ? ak__bf16_kernel_for(ctx, &pl->p) : NULL;
    if ((st = ak__splan_build(pl, sp)) != AK_OK) {
        ak_plan_destroy(pl);
        return st;
    }
    pl->ws_per_thread = ak__fwd_thread_ws(pl->p.d, pl->p.dv, pl->mpad_max, pl->bc) + ak__sparse_walk_bytes();
    const struct ak_splan *S = pl->sparse;
    if (!pl->kern) {
        snprintf(pl->kernel_name, sizeof pl->kernel_name, "ak_ref_fwd_f64");
        snprintf(pl->explain, sizeof pl->explain,
                 "chosen: %s with the sparse pattern's element mask (AK_FORCE_REF / ak_ctx_set_force_ref)\n", pl->kernel_name);
    } else {
        snprintf(pl->kernel_name, sizeof pl->kernel_name, "%s", pl->kbf16 ? pl->kbf16->name : pl->kern->name);
        snprintf(pl->explain, sizeof pl->explain,
                 "chosen: sparse executor on %s (ISA cap %s; pattern \"%s\": %d batch x %d heads x %d query blocks, %lld spans, "
                 "%lld cols, %lld bands%s; tiles of up to %d heads x %d rows, %d keys; %lld work items, %d threads, "
                 "estimated balance %.3f)\n"
                 "why: every pattern runs on the dense kernel's micro-kernels; key tiles follow the pattern's spans, "
                 "gathered cols, band hulls and neighborhood rows, masked per column only where a range ends inside a tile\n",
                 pl->kernel_name, ak_isa_name(ctx->isa), sp->name, sp->n_batch, sp->n_heads, sp->n_qblocks,
                 (long long)sp->span_off[sp->n_lists], (long long)sp->col_off[sp->n_lists], (long long)sp->band_off[sp->n_lists],
                 sp->na_geom.ndim ? ", neighborhood" : "", pl->nh, pl->bq, pl->bc, (long long)S->n_items, pl->n_threads, S->balance);
    }
    if (ctx->verbose) fprintf(stderr, "attnkit: sparse plan\n%s", pl->explain);
    *out = pl;
    return AK_OK;
}

ak_status ak_plan_sparse_stats(const ak_plan *pl, ak_sparse_stats *st) {
    if (!pl || !st) return AK_ERR_NULL_POINTER;
    if (!pl->sparse) return ak__fail(pl->ctx, AK_ERR_PLAN_MISMATCH, "not a sparse plan (ak_plan_create_sparse)");
    const struct ak_splan *S = pl->sparse;
    const ak_sparse *sp = S->sp;
    const ak_problem *p = &pl->p;
    ak_status s = ak_sparse_get_stats(sp, st);
    if (s != AK_OK) return s;
    /* active pairs of the whole problem: the pattern intersected with desc's masks, per query head */
    int64_t words = ((int64_t)sp->nk + 63) / 64;
    uint64_t *bits = (uint64_t *)ak__alloc(pl->ctx, sizeof(uint64_t) * (size_t)(words + 1));
    if (!bits) return ak__fail(pl->ctx, AK_ERR_OUT_OF_MEMORY, "stats");
    double active = 0;
    ak_seq sq = ak__seq(p, 0);
    for (int64_t r = 0; r < sp->n_lists; r++) {
        int64_t bh = r / sp->n_qblocks;
        int32_t pb = (int32_t)(bh / sp->n_heads), ph = (int32_t)(bh % sp->n_heads);
        double mult = 0; /* query heads and sequences this list serves */
        for (int32_t h = 0; h < p->Hq; h++) mult += ak__sparse_plan_head(sp, p->Hq, p->Hkv, h) == ph;
        mult *= sp->n_batch == 1 ? p->B : 1;
        (void)pb;
        const int32_t *list;
        int64_t first, n;
        ak__sparse_rows(sp, r, &list, &first, &n);
        for (int64_t e = 0; e < n; e++) {
            int64_t row = list ? list[e] : first + e, lo, hi, cnt = 0;
            ak__sparse_row_bits(sp, r, row, bits);
            ak__row_range(p, &sq, row, &lo, &hi);
            for (int64_t j = lo; j <= hi;) {
                if ((j & 63) == 0 && j + 63 <= hi) {
                    cnt += __builtin_popcountll(bits[j >> 6]);
                    j += 64;
                } else {
                    cnt += (int64_t)((bits[j >> 6] >> (j & 63)) & 1);
                    j++;
                }
            }
            active += (double)cnt * mult;
        }
    }
    ak__free(pl->ctx, bits);
    st->useful_flops = 2.0 * (p->d + p->dv) * active;
    st->exec_pairs = S->exec_pairs;
    st->waste = active > 0 ? S->exec_pairs / active : 1.0;
    st->balance = S->balance;
    st->n_items = S->n_items;
    return AK_OK;
}

ak_status ak_attention_ref_sparse(ak_ctx *ctx, const ak_attn_desc *desc, const ak_sparse *sp, const ak_attn_tensors *t) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!sp) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sparse plan is NULL");
    ak_problem p;
    ak_status st = ak__problem_init(ctx, desc, 1, &p);
    if (st != AK_OK) return st;
    st = check_geometry(ctx, &p, sp);
    if (st == AK_OK) st = ak__check_tensors(ctx, &p, t, 1);
    if (st == AK_OK) st = ak__ref_run_masked(ctx, &p, t, sp);
    ak__problem_free(ctx, &p);
    return st;
}
