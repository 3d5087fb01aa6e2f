/*
 * MInference 1.0 (Jiang et al., NeurIPS 2024; spec dynamic-sparse.md §3) as a sparse-plan planner:
 * per query head one pattern -- dense, A-shape, vertical-slash (dynamic), block-sparse (dynamic) or
 * Tri-shape -- from a per-head configuration (MInference's JSON config, ak_minference_load_config).
 *
 * Geometry: causal, bottom-right (row i sits at pos(i) = i + nk - nq); query blocks of `block` rows
 * aligned at row 0 (fixed tiles; gathered rows only when a Tri-shape head's dense tail starts inside a
 * tile). Plan n_batch = B, n_heads = Hq (each query head has its own estimate, as the reference, which
 * repeats K/V over the group and loops over the query heads).
 *
 * Vertical-slash, per (b, h):
 *   P = softmax of the last L = min(last_q, nq) query rows over the keys (causal), f32 rows, double sums;
 *   vs[j] = sum_r P[r][j] with vs[0 .. forced_v-1] = +inf; ss[delta] = sum_r P[r][pos(r) - delta] with
 *   ss[0 .. forced_s-1] = +inf; V = top-v of vs, S = top-s of ss (ties -> lower index); 0 is always in S.
 *   exact (default, [paper]): query block sees cols V (<= its last position) and bands S (consecutive
 *     offsets merged); row i sees {j in V, j <= pos(i)} u {pos(i) - delta : delta in S}.
 *   ref ([ref] convert_vertical_slash_indexes): per query block with first position p0 and end
 *     E = p0 + block, the offsets delta < E in descending order give ranges ending at
 *     e = max(E - delta, block), each [e - block, e); a range starting more than `block` past the current
 *     one's end is a new range, one ending past it extends the current end by `block`; spans = the
 *     ranges (cut at nk), cols = V below the last range's end and outside every range.
 * Block-sparse, per (b, h): means of each block of query rows and of keys (over the real rows, or over
 *   `block` rows incl. the reference's zero padding with block_dilute = 1), score qp[r] . kp[c] (raw, no
 *   scale), candidates = key blocks whose first key is visible to the query block's last row, top
 *   min(v, #candidates) blocks (ties -> lower block), each a span.
 * A-shape: span [0, n_init) + band [0, n_local - 1]. Tri-shape: A-shape for rows < nq - n_last, dense
 *   for the others. Dense: span [0, pos_last + 1).
 * The lists are written directly as the plan's CSR arrays in normal form (ak_sparse_create), and
 * ak_minference_search (the reference's offline pattern search) scores candidate plans by recall.
 */
#include "dynamic/dyn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

#define MINF_SCORE_CHUNK 256 /* query blocks per block-sparse score product */
#define MINF_EST_ROWS 16     /* estimation rows per probability chunk */

static const char *const kind_names[5] = {"dense", "vertical_slash", "a_shape", "block_sparse", "tri_shape"};

void ak_minference_params_init(ak_minference_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->heads = NULL;
    p->n_heads = 0;
    p->default_head.kind = AK_MINF_VS;
    p->default_head.v = 1000;
    p->default_head.s = 6096;
    p->exact = 1;
    p->last_q = 64;
    p->block = 64;
    p->forced_v = 30;
    p->forced_s = 100;
    p->min_v = 30;
    p->min_s = 50;
    p->ratio = 1.0f;
    p->layer = 0;
    p->starting_layer = 0;
    p->block_dilute = 0;
    p->n_last = 100;
}

/* ---- options ("key=value") ---- */

static int parse_kind(const char *val, int32_t *kind) {
    static const char *const alias[][2] = {
        {"dense", "0"},        {"vs", "1"},      {"vertical_and_slash", "1"}, {"vertical_slash", "1"},
        {"ashape", "2"},       {"a_shape", "2"}, {"stream_llm", "2"},         {"block", "3"},
        {"block_sparse", "3"}, {"tri", "4"},     {"tri_shape", "4"}};
    for (size_t a = 0; a < sizeof alias / sizeof alias[0]; a++)
        if (!strcmp(val, alias[a][0])) val = alias[a][1];
    return ak__dyn_int(val, kind);
}

int ak__minference_opt(void *params, const char *key, const char *val) {
    ak_minference_params *p = (ak_minference_params *)params;
    struct {
        const char *name;
        int32_t *field;
    } ints[] = {{"exact", &p->exact},
                {"last_q", &p->last_q},
                {"block", &p->block},
                {"forced_v", &p->forced_v},
                {"forced_s", &p->forced_s},
                {"min_v", &p->min_v},
                {"min_s", &p->min_s},
                {"layer", &p->layer},
                {"starting_layer", &p->starting_layer},
                {"block_dilute", &p->block_dilute},
                {"n_last", &p->n_last},
                {"v", &p->default_head.v},
                {"s", &p->default_head.s}};
    for (size_t f = 0; f < sizeof ints / sizeof ints[0]; f++)
        if (!strcmp(key, ints[f].name)) return ak__dyn_int(val, ints[f].field);
    if (!strcmp(key, "ratio")) return ak__dyn_float(val, &p->ratio);
    if (!strcmp(key, "kind")) return parse_kind(val, &p->default_head.kind);
    return 0;
}

/* ---- parameters ---- */

static ak_status bad(const ak_ctx *ctx, const char *field, long long v, const char *rule) {
    return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "minference: params.%s = %lld, %s", field, v, rule);
}

static ak_status check_head(const ak_ctx *ctx, const ak_minf_head *hd, const char *where) {
    char f[64];
    if (hd->kind < AK_MINF_DENSE || hd->kind > AK_MINF_TRI) {
        snprintf(f, sizeof f, "%s.kind", where);
        return bad(ctx, f, hd->kind, "must be AK_MINF_DENSE, _VS, _ASHAPE, _BLOCK or _TRI (0..4)");
    }
    int32_t vmin = hd->kind == AK_MINF_BLOCK ? 1 : 0,
            smin = (hd->kind == AK_MINF_ASHAPE || hd->kind == AK_MINF_TRI) ? 1 : 0;
    if (hd->kind == AK_MINF_DENSE) return AK_OK;
    if (hd->v < vmin) {
        snprintf(f, sizeof f, "%s.v", where);
        return bad(ctx, f, hd->v, vmin ? "must be >= 1 (top-k key blocks)" : "must be >= 0");
    }
    if (hd->kind != AK_MINF_BLOCK && hd->s < smin) {
        snprintf(f, sizeof f, "%s.s", where);
        return bad(ctx, f, hd->s, smin ? "must be >= 1 (n_local, the window counts the row itself)" : "must be >= 0");
    }
    return AK_OK;
}

static ak_status check_params(const ak_ctx *ctx, const ak_minference_params *p, int32_t Hq) {
    if (p->exact != 0 && p->exact != 1)
        return bad(ctx, "exact", p->exact, "must be 0 ([ref] ranges) or 1 ([paper] bands)");
    if (p->last_q < 1) return bad(ctx, "last_q", p->last_q, "must be >= 1");
    if (p->block < 1) return bad(ctx, "block", p->block, "must be >= 1");
    if (p->forced_v < 0) return bad(ctx, "forced_v", p->forced_v, "must be >= 0");
    if (p->forced_s < 0) return bad(ctx, "forced_s", p->forced_s, "must be >= 0");
    if (p->min_v < 0) return bad(ctx, "min_v", p->min_v, "must be >= 0");
    if (p->min_s < 0) return bad(ctx, "min_s", p->min_s, "must be >= 0");
    if (!(p->ratio > 0.0f) || !isfinite(p->ratio))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "minference: params.ratio = %g, must be finite and > 0",
                        (double)p->ratio);
    if (p->layer < 0) return bad(ctx, "layer", p->layer, "must be >= 0");
    if (p->starting_layer < 0) return bad(ctx, "starting_layer", p->starting_layer, "must be >= 0");
    if (p->block_dilute != 0 && p->block_dilute != 1)
        return bad(ctx, "block_dilute", p->block_dilute, "must be 0 or 1");
    if (p->n_last < 0) return bad(ctx, "n_last", p->n_last, "must be >= 0");
    ak_status st = check_head(ctx, &p->default_head, "default_head");
    if (st != AK_OK) return st;
    if (!p->heads) return AK_OK;
    if (p->n_heads != Hq) return bad(ctx, "n_heads", p->n_heads, "must equal num_heads_q when heads is given");
    for (int32_t h = 0; h < p->n_heads; h++) {
        char where[32];
        snprintf(where, sizeof where, "heads[%d]", (int)h);
        if ((st = check_head(ctx, &p->heads[h], where)) != AK_OK) return st;
    }
    return AK_OK;
}

/* ---- per-head resolution ---- */

typedef struct head_cfg {
    int32_t kind;    /* after the dense overrides */
    int64_t v, s;    /* effective sizes (VS: counts; A-shape/Tri: n_init, n_local; block: top-k) */
    int64_t v0, s0;  /* as configured */
    const char *why; /* reason for a dense override, or NULL */
} head_cfg;

/* floor(x * ratio) (minference_ratio), capped far above any length so the conversion cannot overflow. */
static int64_t scaled(int32_t x, float ratio) {
    double y = floor((double)x * (double)ratio);
    return y > 1e15 ? (int64_t)1e15 : (int64_t)y;
}

static void resolve_head(const ak_minference_params *p, int32_t h, int32_t nq, int32_t nk, head_cfg *c) {
    const ak_minf_head *hd = p->heads ? &p->heads[h] : &p->default_head;
    memset(c, 0, sizeof *c);
    c->kind = hd->kind;
    c->v0 = hd->v;
    c->s0 = hd->s;
    if (p->layer < p->starting_layer)
        c->why = "layer < starting_layer";
    else if (nq == 1)
        c->why = "decode (nq = 1)";
    if (c->why) c->kind = AK_MINF_DENSE;
    switch (c->kind) {
    case AK_MINF_VS: {
        int64_t v = scaled(hd->v, p->ratio), s = scaled(hd->s, p->ratio);
        v = v < p->min_v ? p->min_v : v;
        s = s < p->min_s ? p->min_s : s;
        c->v = v < nk ? v : nk;
        c->s = s < nk ? s : nk;
        break;
    }
    case AK_MINF_ASHAPE:
    case AK_MINF_TRI: {
        int64_t s = scaled(hd->s, p->ratio);
        c->v = scaled(hd->v, p->ratio);
        c->s = s < 1 ? 1 : s;
        break;
    }
    case AK_MINF_BLOCK: c->v = hd->v; break;
    default: break;
    }
}

/* ---- estimation, one (b, h) at a time (runs on the context's threads) ---- */

typedef struct head_est {
    int32_t *V, *S; /* VS: sorted ascending key ids / offsets */
    int64_t nv, ns;
    int32_t *sel; /* block: [n_qb][k] selected key blocks (ascending), cnt[qb] of them */
    int32_t *cnt;
    int64_t k;
    ak_status st;
} head_est;

/* vs[j] and ss[delta] of the last L query rows, accumulated over chunks of MINF_EST_ROWS rows so that the
 * probabilities take MINF_EST_ROWS * nk floats (not L * nk) per task. */
static ak_status vs_sums(const ak_dyn_in *in, int64_t b, int32_t h, int32_t L, double *vs, double *ss) {
    const int32_t nk = in->nk, CH = L < MINF_EST_ROWS ? L : MINF_EST_ROWS;
    float *P = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)CH * (size_t)nk);
    double *tv = (double *)ak__alloc(in->ctx, sizeof(double) * 2 * (size_t)nk);
    int32_t rows[MINF_EST_ROWS];
    ak_status st = P && tv ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    for (int32_t j = 0; j < nk; j++) vs[j] = ss[j] = 0.0;
    for (int32_t r0 = 0; r0 < L && st == AK_OK; r0 += CH) {
        int32_t n = L - r0 < CH ? L - r0 : CH;
        for (int32_t r = 0; r < n; r++) rows[r] = in->nq - L + r0 + r;
        st = ak__dyn_rows_probs(in, b, h, h / in->G, rows, n, 1, P);
        if (st != AK_OK) break;
        ak__dyn_vs_sums(P, n, nk, (int64_t)rows[0] + nk - in->nq, tv, tv + nk);
        for (int32_t j = 0; j < nk; j++) vs[j] += tv[j], ss[j] += tv[nk + j];
    }
    ak__free(in->ctx, P);
    ak__free(in->ctx, tv);
    return st;
}

static ak_status vs_estimate(const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *c, int64_t b,
                             int32_t h, head_est *e) {
    const int32_t nk = in->nk, L = p->last_q < in->nq ? p->last_q : in->nq;
    double *vs = (double *)ak__alloc(in->ctx, sizeof(double) * 2 * (size_t)nk);
    e->V = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(c->v + 1));
    e->S = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(c->s + 2));
    ak_status st = (vs && e->V && e->S) ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK) st = vs_sums(in, b, h, L, vs, vs + nk);
    if (st == AK_OK) {
        double *ss = vs + nk;
        for (int32_t j = 0; j < p->forced_v && j < nk; j++) vs[j] = INFINITY;
        for (int32_t t = 0; t < p->forced_s && t < nk; t++) ss[t] = INFINITY;
        e->nv = ak__dyn_topk(in->ctx, vs, nk, c->v, 0, e->V);
        e->ns = ak__dyn_topk(in->ctx, ss, nk, c->s, 0, e->S + 1);
        if (e->nv < 0 || e->ns < 0)
            st = AK_ERR_OUT_OF_MEMORY;
        else if (e->ns > 0 && e->S[1] == 0)
            memmove(e->S, e->S + 1, sizeof(int32_t) * (size_t)e->ns);
        else
            e->S[0] = 0, e->ns++; /* the diagonal is always kept (spec 3.4) */
    }
    ak__free(in->ctx, vs);
    return st;
}

/* Last position of query block qb (rows [qb*bs, min(nq, (qb+1)*bs))), may be negative (nq > nk). */
static int64_t block_last_pos(const ak_dyn_in *in, int64_t qb, int64_t bs) {
    int64_t r1 = (qb + 1) * bs < in->nq ? (qb + 1) * bs : in->nq;
    return r1 - 1 + (int64_t)in->nk - in->nq;
}

/* Block means (over real rows, or over bs rows with dilute) of rows [0, n) of X, head hx: [nb][d]. */
static void block_means(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int64_t hx, int64_t n, int32_t bs,
                        int dilute, float *m, int32_t *cnt) {
    int64_t nb = (n + bs - 1) / bs;
    ak__dyn_block_sums(in, X, b, hx, n, bs, in->d, m, cnt);
    for (int64_t c = 0; c < nb; c++) {
        float inv = 1.0f / (float)(dilute ? bs : cnt[c]);
        for (int k = 0; k < in->d; k++) m[c * in->d + k] *= inv;
    }
}

static ak_status block_estimate(const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *c, int64_t b,
                                int32_t h, head_est *e) {
    const int32_t bs = p->block, d = in->d;
    const int64_t nbq = ((int64_t)in->nq + bs - 1) / bs, nbk = ((int64_t)in->nk + bs - 1) / bs;
    e->k = c->v < nbk ? c->v : nbk;
    size_t ch = (size_t)(nbq < MINF_SCORE_CHUNK ? nbq : MINF_SCORE_CHUNK);
    float *qp =
        (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(nbq * d + nbk * d) + sizeof(float) * ch * (size_t)nbk);
    int32_t *qc = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(nbq + nbk));
    e->sel = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(nbq * e->k + 1));
    e->cnt = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(nbq + 1));
    ak_status st = (qp && qc && e->sel && e->cnt) ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK) {
        float *kp = qp + nbq * d, *S = kp + nbk * d;
        block_means(in, &in->t->q, b, h, in->nq, bs, p->block_dilute, qp, qc);
        block_means(in, &in->t->k, b, h / in->G, in->nk, bs, p->block_dilute, kp, qc + nbq);
        for (int64_t r0 = 0; r0 < nbq && st == AK_OK; r0 += (int64_t)ch) {
            int m = (int)(nbq - r0 < (int64_t)ch ? nbq - r0 : (int64_t)ch);
            st = ak__dyn_scores(in, m, nbk, d, qp + r0 * d, d, kp, d, 1.0f, S, nbk);
            for (int r = 0; r < m && st == AK_OK; r++) {
                int64_t pl = block_last_pos(in, r0 + r, bs), ncand = pl < 0 ? 0 : pl / bs + 1;
                if (ncand > nbk) ncand = nbk;
                int64_t got =
                    ak__dyn_topk_f(in->ctx, S + (size_t)r * (size_t)nbk, ncand, e->k, 0, e->sel + (r0 + r) * e->k);
                if (got < 0) st = AK_ERR_OUT_OF_MEMORY;
                e->cnt[r0 + r] = (int32_t)(got < 0 ? 0 : got);
            }
        }
    }
    ak__free(in->ctx, qp);
    ak__free(in->ctx, qc);
    return st;
}

static void est_free(const ak_ctx *ctx, head_est *e) {
    ak__free(ctx, e->V);
    ak__free(ctx, e->S);
    ak__free(ctx, e->sel);
    ak__free(ctx, e->cnt);
    memset(e, 0, sizeof *e);
}

/* Estimate every (b, h) that needs it: est[b * Hq + h]. */
static ak_status estimate_all(const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *cfg, head_est *est) {
    const int64_t n = (int64_t)in->B * in->Hq;
    if (in->nq == 0 || in->nk == 0) return AK_OK;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic)
#endif
    for (int64_t x = 0; x < n; x++) {
        int32_t h = (int32_t)(x % in->Hq);
        int64_t b = x / in->Hq;
        if (cfg[h].kind == AK_MINF_VS)
            est[x].st = vs_estimate(in, p, &cfg[h], b, h, &est[x]);
        else if (cfg[h].kind == AK_MINF_BLOCK)
            est[x].st = block_estimate(in, p, &cfg[h], b, h, &est[x]);
    }
    for (int64_t x = 0; x < n; x++)
        if (est[x].st != AK_OK)
            return ak__fail(in->ctx, est[x].st, "minference: estimation of batch %lld, head %lld: %s",
                            (long long)(x / in->Hq), (long long)(x % in->Hq), ak_status_string(est[x].st));
    return AK_OK;
}

/* ---- lowering: the plan's CSR arrays, written list by list in normal form ---- */

/* A growable int32 array. */
typedef struct ivec {
    int32_t *v;
    int64_t n, cap;
} ivec;

typedef struct lower {
    const ak_ctx *ctx;
    int64_t nk, R, r;                   /* lists, the current list */
    int64_t *qoff, *soff, *coff, *boff; /* [R + 1] */
    ivec rows, slo, shi, col, blo, bhi;
    int oom;
} lower;

static void push(lower *w, ivec *a, int64_t x) {
    if (a->n == a->cap) {
        int64_t nc = a->cap ? 2 * a->cap : 1024;
        int32_t *nv = (int32_t *)ak__alloc(w->ctx, sizeof(int32_t) * (size_t)nc);
        if (!nv) {
            w->oom = 1;
            return;
        }
        if (a->n) memcpy(nv, a->v, sizeof(int32_t) * (size_t)a->n);
        ak__free(w->ctx, a->v);
        a->v = nv, a->cap = nc;
    }
    a->v[a->n++] = (int32_t)x;
}

/* Close list r (its entries are the ones pushed since the previous close). */
static void close_list(lower *w) {
    w->r++;
    w->qoff[w->r] = w->rows.n, w->soff[w->r] = w->slo.n, w->coff[w->r] = w->col.n, w->boff[w->r] = w->blo.n;
}

/* Callers add spans in increasing, disjoint order (touching merges), cols increasing, bands increasing and disjoint. */
static void add_span(lower *w, int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > w->nk) hi = w->nk;
    if (lo >= hi || w->oom) return;
    if (w->slo.n > w->soff[w->r] && w->shi.v[w->shi.n - 1] == lo) {
        w->shi.v[w->shi.n - 1] = (int32_t)hi;
        return;
    }
    push(w, &w->slo, lo);
    push(w, &w->shi, hi);
}
static void add_band(lower *w, int64_t lo, int64_t hi) {
    if (lo > hi || w->oom) return;
    push(w, &w->blo, lo);
    push(w, &w->bhi, hi);
}
static void add_col(lower *w, int64_t j) {
    if (!w->oom) push(w, &w->col, j);
}

/* Exact ([paper]) vertical-slash list of a block whose last row is at position pl. */
static void lower_vs_exact(lower *w, const head_est *e, int64_t pl) {
    for (int64_t t = 0; t < e->nv && e->V[t] <= pl; t++) add_col(w, e->V[t]);
    for (int64_t t = 0; t < e->ns && e->S[t] <= pl;) {
        int64_t u = t;
        while (u + 1 < e->ns && e->S[u + 1] == e->S[u] + 1 && e->S[u + 1] <= pl) u++;
        add_band(w, e->S[t], e->S[u]);
        t = u + 1;
    }
}

/* [ref] index conversion for a block whose first row is at position p0 (block size bs): the ranges in
 * increasing order (each new range starts past the previous end), then the verticals below the last
 * range's end that no range holds. */
static void lower_vs_ref(lower *w, const head_est *e, int64_t p0, int64_t bs) {
    const int64_t E = p0 + bs, s0 = w->slo.n;
    int64_t lo = 0, hi = -1; /* current range [lo, hi); none while hi < 0 */
    for (int64_t t = e->ns - 1; t >= 0; t--) {
        int64_t delta = e->S[t];
        if (delta >= E) continue;
        int64_t end = E - delta > bs ? E - delta : bs;
        if (hi < 0) {
            lo = end - bs, hi = end;
        } else if (end > hi + bs) {
            add_span(w, lo, hi);
            lo = end - bs, hi = end;
        } else if (end > hi) {
            hi += bs;
        }
    }
    if (hi < 0) return; /* no offset reaches the block (cannot happen: 0 is in S) */
    add_span(w, lo, hi);
    int64_t k = s0, ns = w->slo.n;
    for (int64_t t = 0; t < e->nv && e->V[t] < hi && e->V[t] < w->nk; t++) {
        while (k < ns && w->shi.v[k] <= e->V[t]) k++;
        if (k < ns && w->slo.v[k] <= e->V[t]) continue; /* inside a range */
        add_col(w, e->V[t]);
    }
}

/* The list of one (b, h, block) for head config c; rows [r0, r1) of the block (r1 > r0). */
static void lower_block(lower *w, const ak_minference_params *p, const head_cfg *c, const head_est *e, int64_t qb,
                        int64_t r0, int64_t r1, int64_t off, int dense) {
    const int64_t p0 = r0 + off, pl = r1 - 1 + off;
    if (pl < 0) return; /* rows before the first key see nothing (causal, nq > nk) */
    if (dense || c->kind == AK_MINF_DENSE) {
        add_span(w, 0, pl + 1);
    } else if (c->kind == AK_MINF_ASHAPE || c->kind == AK_MINF_TRI) {
        add_span(w, 0, c->v < pl + 1 ? c->v : pl + 1);
        add_band(w, 0, c->s - 1 < pl ? c->s - 1 : pl);
    } else if (c->kind == AK_MINF_VS) {
        if (p->exact)
            lower_vs_exact(w, e, pl);
        else
            lower_vs_ref(w, e, p0, p->block);
    } else { /* block-sparse: the block's selected key blocks, ascending */
        const int32_t *sel = e->sel + qb * e->k;
        for (int32_t t = 0; t < e->cnt[qb]; t++)
            add_span(w, (int64_t)sel[t] * p->block, ((int64_t)sel[t] + 1) * p->block);
    }
}

/* Rows where the Tri-shape heads turn dense, and whether that needs gathered rows. */
static int64_t tri_start(const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *cfg, int *gather) {
    int64_t r = (int64_t)in->nq - p->n_last;
    if (r < 0) r = 0;
    *gather = 0;
    for (int32_t h = 0; h < in->Hq; h++)
        if (cfg[h].kind == AK_MINF_TRI && r > 0 && r < in->nq && r % p->block != 0) *gather = 1;
    return r;
}

/* The lists of (b, h): blocks 0 .. nfix-1, then (gather mode) the extra block of a Tri-shape dense tail. */
static void lower_head(lower *w, const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *c,
                       const head_est *e, int gather, int64_t rt) {
    const int64_t bs = p->block, off = (int64_t)in->nk - in->nq, nfix = ((int64_t)in->nq + bs - 1) / bs;
    const int tri = c->kind == AK_MINF_TRI;
    int64_t xr0 = 0, xr1 = 0; /* rows of the extra block */
    for (int64_t qb = 0; qb < nfix; qb++) {
        int64_t r0 = qb * bs, r1 = r0 + bs < in->nq ? r0 + bs : in->nq, cut = tri && rt > r0 && rt < r1 ? rt : r1;
        for (int64_t i = r0; gather && i < cut; i++) push(w, &w->rows, i);
        lower_block(w, p, c, e, qb, r0, cut, off, tri && r0 >= rt);
        if (cut < r1) xr0 = cut, xr1 = r1;
        close_list(w);
    }
    if (!gather) return;
    for (int64_t i = xr0; i < xr1; i++) push(w, &w->rows, i);
    if (xr1 > xr0) lower_block(w, p, c, e, nfix, xr0, xr1, off, 1);
    close_list(w);
}

static ak_status build_plan(const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *cfg,
                            const head_est *est, const char *name, ak_sparse **out) {
    const int64_t nfix = ((int64_t)in->nq + p->block - 1) / p->block;
    int gather;
    const int64_t rt = tri_start(in, p, cfg, &gather), nqb = nfix + gather, R = (int64_t)in->B * in->Hq * nqb;
    lower w;
    memset(&w, 0, sizeof w);
    w.ctx = in->ctx, w.nk = in->nk, w.R = R;
    int64_t *offs = (int64_t *)ak__alloc(in->ctx, sizeof(int64_t) * 4 * (size_t)(R + 1));
    ak_status st = AK_OK;
    if (!offs) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "minference: plan offsets (%lld lists)", (long long)R);
    w.qoff = offs, w.soff = offs + (R + 1), w.coff = offs + 2 * (R + 1), w.boff = offs + 3 * (R + 1);
    w.qoff[0] = w.soff[0] = w.coff[0] = w.boff[0] = 0;
    for (int32_t b = 0; b < in->B && !w.oom; b++)
        for (int32_t h = 0; h < in->Hq && !w.oom; h++)
            lower_head(&w, in, p, &cfg[h], &est[(int64_t)b * in->Hq + h], gather, rt);
    if (w.oom) {
        st = ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "minference: plan entries");
    } else {
        ak_sparse_desc g;
        ak_sparse_desc_init(&g);
        g.n_batch = in->B, g.n_heads = in->Hq, g.nq = in->nq, g.nk = in->nk, g.causal = 1;
        g.block_q = p->block, g.n_qblocks = (int32_t)nqb;
        g.qrow_off = gather ? w.qoff : NULL, g.qrows = gather ? w.rows.v : NULL;
        g.span_off = w.soff, g.span_lo = w.slo.v, g.span_hi = w.shi.v;
        g.col_off = w.coff, g.col_idx = w.col.v;
        g.band_off = w.boff, g.band_lo = w.blo.v, g.band_hi = w.bhi.v;
        g.name = name;
        st = ak_sparse_create(in->ctx, &g, out);
    }
    ivec *vs[6] = {&w.rows, &w.slo, &w.shi, &w.col, &w.blo, &w.bhi};
    for (int k = 0; k < 6; k++) ak__free(in->ctx, vs[k]->v);
    ak__free(in->ctx, offs);
    return st;
}

/* ---- the planner ---- */

static void explain_heads(const ak_dyn_in *in, const ak_minference_params *p, const head_cfg *cfg, const head_est *est,
                          ak_dyn_info *info) {
    for (int32_t h = 0; h < in->Hq; h++) {
        const head_cfg *c = &cfg[h];
        const head_est *e = &est[h]; /* batch 0 */
        if (c->why) {
            ak__dyn_explain(info, "h%d: dense (%s)\n", (int)h, c->why);
        } else if (c->kind == AK_MINF_VS) {
            ak__dyn_explain(
                info, "h%d: vertical_slash v=%lld s=%lld (configured %lld, %lld) %s: b0 %lld verticals, %lld slashes\n",
                (int)h, (long long)c->v, (long long)c->s, (long long)c->v0, (long long)c->s0,
                p->exact ? "exact" : "ref-ranges", (long long)e->nv, (long long)e->ns);
        } else if (c->kind == AK_MINF_BLOCK) {
            ak__dyn_explain(info, "h%d: block_sparse top-%lld of %d-blocks%s\n", (int)h, (long long)c->v, (int)p->block,
                            p->block_dilute ? " (zero-padding means)" : "");
        } else if (c->kind == AK_MINF_ASHAPE || c->kind == AK_MINF_TRI) {
            ak__dyn_explain(info, "h%d: %s n_init=%lld n_local=%lld%s\n", (int)h, kind_names[c->kind], (long long)c->v,
                            (long long)c->s, c->kind == AK_MINF_TRI ? " + dense last rows" : "");
        } else {
            ak__dyn_explain(info, "h%d: dense (configured)\n", (int)h);
        }
        if (info && c->kind == AK_MINF_DENSE) info->n_dense_heads++;
    }
}

ak_status ak_minference_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                             const ak_minference_params *params, ak_sparse **out, ak_dyn_info *info) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "minference: out is NULL");
    ak_minference_params defaults;
    if (!params) {
        ak_minference_params_init(&defaults);
        params = &defaults;
    }
    ak_dyn_in in;
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, "minference", &in);
    if (st != AK_OK) return st;
    if (!desc->causal)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "minference: desc.causal = 0; MInference is causal prefill only");
    if (st == AK_OK) st = check_params(ctx, params, in.Hq);
    head_cfg *cfg = NULL;
    head_est *est = NULL;
    if (st == AK_OK) {
        cfg = (head_cfg *)ak__alloc(ctx, sizeof(head_cfg) * (size_t)in.Hq);
        est = (head_est *)ak__alloc(ctx, sizeof(head_est) * (size_t)in.B * (size_t)in.Hq);
        if (!cfg || !est)
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "minference: per-head state");
        else
            memset(est, 0, sizeof(head_est) * (size_t)in.B * (size_t)in.Hq);
    }
    if (st == AK_OK) {
        for (int32_t h = 0; h < in.Hq; h++) resolve_head(params, h, in.nq, in.nk, &cfg[h]);
        st = estimate_all(&in, params, cfg, est);
    }
    if (st == AK_OK) {
        char name[128];
        snprintf(name, sizeof name, "minference(%s,bs=%d,last_q=%d,layer=%d)", params->exact ? "exact" : "ref",
                 (int)params->block, (int)params->last_q, (int)params->layer);
        st = build_plan(&in, params, cfg, est, name, out);
    }
    if (st == AK_OK && info) {
        memset(info, 0, sizeof *info);
        explain_heads(&in, params, cfg, est, info);
        ak__dyn_info_finish(&in, *out, info);
    }
    for (int64_t x = 0; est && x < (int64_t)in.B * in.Hq; x++) est_free(ctx, &est[x]);
    ak__free(ctx, est);
    ak__free(ctx, cfg);
    ak__dyn_end(&in);
    return st;
}

/* ---- MInference's JSON config ---- */

/* Head id from an object key: decimal digits only, no sign, no leading zero (except "0"); -1 if not. */
static int64_t head_id(const char *k, int32_t n) {
    if (n < 1 || n > 9 || (n > 1 && k[0] == '0')) return -1;
    int64_t v = 0;
    for (int32_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return -1;
        v = v * 10 + (k[i] - '0');
    }
    return v;
}

static int str_is(const ak_jval *v, const char *s) {
    return v->type == AK_J_STR && (size_t)v->str_len == strlen(s) && !strncmp(v->str, s, strlen(s));
}

/* One entry [type, vertical_size, slash_size(, score)] of layer li, head hid -> *out. */
static ak_status read_entry(ak_ctx *ctx, const ak_json *j, int32_t node, int32_t li, int64_t hid, ak_minf_head *out) {
    const ak_jval *a = &j->v[node];
    if (a->type != AK_J_ARR || (a->n != 3 && a->n != 4))
        return ak__fail(ctx, AK_ERR_BAD_PLAN,
                        "minference config: layer %d head %lld: not an array [type, vertical_size, slash_size, score]",
                        (int)li, (long long)hid);
    const ak_jval *ty = &j->v[a->first];
    const ak_jval *x[2] = {&j->v[ty->next], &j->v[j->v[ty->next].next]};
    if (str_is(ty, "vertical_and_slash"))
        out->kind = AK_MINF_VS;
    else if (str_is(ty, "stream_llm"))
        out->kind = AK_MINF_ASHAPE;
    else if (str_is(ty, "block_sparse"))
        out->kind = AK_MINF_BLOCK;
    else
        return ak__fail(ctx, AK_ERR_BAD_PLAN,
                        "minference config: layer %d head %lld: type is not \"vertical_and_slash\", \"stream_llm\" or "
                        "\"block_sparse\"",
                        (int)li, (long long)hid);
    double sz[2];
    for (int k = 0; k < 2; k++) {
        sz[k] = x[k]->num;
        if (x[k]->type != AK_J_NUM || !(sz[k] >= 0.0 && sz[k] <= (double)INT32_MAX) || sz[k] != floor(sz[k]))
            return ak__fail(ctx, AK_ERR_BAD_PLAN,
                            "minference config: layer %d head %lld: %s is not an integer in [0, 2^31)", (int)li,
                            (long long)hid, k ? "slash_size" : "vertical_size");
    }
    if (a->n == 4 && j->v[x[1]->next].type != AK_J_NUM)
        return ak__fail(ctx, AK_ERR_BAD_PLAN, "minference config: layer %d head %lld: score is not a number", (int)li,
                        (long long)hid);
    out->v = (int32_t)sz[0];
    out->s = (int32_t)sz[1];
    if (out->kind == AK_MINF_BLOCK) out->v = 100, out->s = 0; /* the reference's fixed top-100, sizes ignored */
    return AK_OK;
}

static ak_status read_config(ak_ctx *ctx, const ak_json *j, int32_t layer, int32_t n_heads, ak_minf_head *tmp,
                             uint8_t *seen, int32_t *found) {
    if (j->v[0].type != AK_J_ARR)
        return ak__fail(ctx, AK_ERR_BAD_PLAN, "minference config: the root is not an array (one object per layer)");
    int32_t li = 0;
    for (int32_t l = j->v[0].first; l >= 0; l = j->v[l].next, li++) {
        if (j->v[l].type != AK_J_OBJ)
            return ak__fail(ctx, AK_ERR_BAD_PLAN, "minference config: layer %d is not an object", (int)li);
        memset(seen, 0, (size_t)n_heads);
        for (int32_t m = j->v[l].first; m >= 0; m = j->v[m].next) {
            int64_t hid = head_id(j->v[m].key, j->v[m].key_len);
            if (hid < 0 || hid >= n_heads)
                return ak__fail(ctx, AK_ERR_BAD_PLAN,
                                "minference config: layer %d: key \"%.*s\" is not a head id in [0, n_heads = %d)",
                                (int)li, (int)(j->v[m].key_len < 40 ? j->v[m].key_len : 40), j->v[m].key, (int)n_heads);
            if (seen[hid])
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "minference config: layer %d: head %lld twice", (int)li,
                                (long long)hid);
            seen[hid] = 1;
            ak_minf_head e;
            ak_status st = read_entry(ctx, j, m, li, hid, &e);
            if (st != AK_OK) return st;
            if (li == layer) tmp[hid] = e, (*found)++;
        }
    }
    return AK_OK;
}

ak_status ak_minference_load_config(ak_ctx *ctx, const char *json, size_t len, int32_t layer, int32_t n_heads,
                                    ak_minf_head *heads, int32_t *n_found) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!json) return ak__fail(ctx, AK_ERR_NULL_POINTER, "minference config: json is NULL");
    if (!heads) return ak__fail(ctx, AK_ERR_NULL_POINTER, "minference config: heads is NULL");
    if (n_heads < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "minference config: n_heads = %d, must be >= 1", (int)n_heads);
    if (layer < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "minference config: layer = %d, must be >= 0", (int)layer);
    ak_minf_head *tmp = (ak_minf_head *)ak__alloc(ctx, sizeof(ak_minf_head) * (size_t)n_heads);
    uint8_t *seen = (uint8_t *)ak__alloc(ctx, (size_t)n_heads);
    if (!tmp || !seen) {
        ak__free(ctx, tmp);
        ak__free(ctx, seen);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "minference config: %d heads", (int)n_heads);
    }
    for (int32_t h = 0; h < n_heads; h++) tmp[h].kind = AK_MINF_VS, tmp[h].v = 1000, tmp[h].s = 6096;
    ak_json j;
    int32_t found = 0;
    ak_status st = ak__json_parse(ctx, json, len, &j);
    if (st == AK_OK) {
        st = read_config(ctx, &j, layer, n_heads, tmp, seen, &found);
        ak__json_free(ctx, &j);
    }
    if (st == AK_OK) {
        memcpy(heads, tmp, sizeof(ak_minf_head) * (size_t)n_heads);
        if (n_found) *n_found = found;
    }
    ak__free(ctx, tmp);
    ak__free(ctx, seen);
    return st;
}

/* ---- offline pattern search (spec 3.3) ---- */

void ak_minference_search_params_init(ak_minference_search_params *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->cands = NULL;
    s->n_cands = 0;
    s->row_start = 2500;
    s->ref_post = 0;
}

/* The reference's candidates: stream_llm (100, 800); VS (30, 800), (100, 750), (500, 700), (3500, 100);
 * block-sparse top 1/8 of the key blocks. */
static int32_t default_cands(int64_t nk, int32_t bs, ak_minf_head *c) {
    static const int32_t vs[4][2] = {{30, 800}, {100, 750}, {500, 700}, {3500, 100}};
    int64_t nb = (nk + bs - 1) / bs, k = nb / 8 > 1 ? nb / 8 : 1;
    c[0].kind = AK_MINF_ASHAPE, c[0].v = 100, c[0].s = 800;
    for (int i = 0; i < 4; i++) c[1 + i].kind = AK_MINF_VS, c[1 + i].v = vs[i][0], c[1 + i].s = vs[i][1];
    c[5].kind = AK_MINF_BLOCK, c[5].v = (int32_t)k, c[5].s = 0;
    return 6;
}

/* Recall sums of every candidate plan for (b, h): rec[c] += sum over rows >= r0 of the dense mass the plan keeps. */
static ak_status search_head(const ak_dyn_in *in, ak_sparse *const *plans, int32_t nc, int64_t b, int32_t h, int32_t r0,
                             double *rec) {
    const int32_t nk = in->nk, CH = MINF_EST_ROWS;
    float *P = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)CH * (size_t)nk);
    uint8_t *keys = (uint8_t *)ak__alloc(in->ctx, (size_t)nk + 1);
    int32_t rows[MINF_EST_ROWS];
    ak_status st = P && keys ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    for (int32_t a = r0; a < in->nq && st == AK_OK; a += CH) {
        int32_t n = in->nq - a < CH ? in->nq - a : CH;
        for (int32_t r = 0; r < n; r++) rows[r] = a + r;
        st = ak__dyn_rows_probs(in, b, h, h / in->G, rows, n, 1, P);
        for (int32_t c = 0; c < nc && st == AK_OK; c++)
            for (int32_t r = 0; r < n && st == AK_OK; r++) {
                st = ak_sparse_row_mask(plans[c], (int32_t)b, h, rows[r], keys);
                double m = 0.0;
                for (int32_t j = 0; j < nk; j++) m += keys[j] ? P[(size_t)r * nk + j] : 0.0f;
                rec[c] += m;
            }
    }
    ak__free(in->ctx, P);
    ak__free(in->ctx, keys);
    return st;
}

static ak_status search_check(ak_ctx *ctx, const ak_minference_search_params *s, const ak_minf_head *cands,
                              int32_t nc) {
    if (s->row_start < 0) return bad(ctx, "row_start", s->row_start, "must be >= 0");
    if (s->ref_post != 0 && s->ref_post != 1) return bad(ctx, "ref_post", s->ref_post, "must be 0 or 1");
    if (s->cands && s->n_cands < 1) return bad(ctx, "n_cands", s->n_cands, "must be >= 1 when cands is given");
    for (int32_t c = 0; c < nc; c++) {
        char where[32];
        snprintf(where, sizeof where, "cands[%d]", (int)c);
        ak_status st = check_head(ctx, &cands[c], where);
        if (st != AK_OK) return st;
    }
    return AK_OK;
}

ak_status ak_minference_search(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                               const ak_minference_params *params, const ak_minference_search_params *search,
                               ak_minf_head *best, float *recall) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!best) return ak__fail(ctx, AK_ERR_NULL_POINTER, "minference search: best is NULL");
    ak_minference_params base;
    ak_minference_search_params sdef;
    if (!params)
        ak_minference_params_init(&base);
    else
        base = *params;
    if (!search) ak_minference_search_params_init(&sdef), search = &sdef;
    ak_dyn_in in;
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, "minference search", &in);
    if (st != AK_OK) return st;
    ak_minf_head dc[6];
    const ak_minf_head *cands = search->cands;
    int32_t nc = search->cands ? search->n_cands : default_cands(in.nk, base.block > 0 ? base.block : 64, dc);
    if (!cands) cands = dc;
    if (!desc->causal)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                      "minference search: desc.causal = 0; MInference is causal prefill only");
    if (st == AK_OK) st = search_check(ctx, search, cands, nc);
    ak_sparse **plans = st == AK_OK ? (ak_sparse **)ak__alloc(ctx, sizeof(ak_sparse *) * (size_t)nc) : NULL;
    double *rec =
        st == AK_OK ? (double *)ak__alloc(ctx, sizeof(double) * (size_t)nc * (size_t)in.B * (size_t)in.Hq) : NULL;
    if (st == AK_OK && (!plans || !rec))
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "minference search: %d candidates", (int)nc);
    for (int32_t c = 0; c < nc && plans; c++) plans[c] = NULL;
    base.heads = NULL, base.n_heads = 0, base.layer = 0, base.starting_layer = 0;
    for (int32_t c = 0; c < nc && st == AK_OK; c++) { /* one plan per candidate, every head with it */
        base.default_head = cands[c];
        st = ak_minference_plan(ctx, desc, t, &base, &plans[c], NULL);
    }
    const int32_t r0 = in.nq == 0 ? 0 : (search->row_start < in.nq ? search->row_start : in.nq - 1);
    const int64_t n = (int64_t)in.B * in.Hq;
    if (st == AK_OK) {
        memset(rec, 0, sizeof(double) * (size_t)nc * (size_t)n);
        ak_status *sts = (ak_status *)ak__alloc(ctx, sizeof(ak_status) * (size_t)(n + 1));
        if (!sts) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "minference search");
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic)
#endif
        for (int64_t x = 0; x < (sts ? n : 0); x++)
            sts[x] = search_head(&in, plans, nc, x / in.Hq, (int32_t)(x % in.Hq), r0, rec + x * nc);
        for (int64_t x = 0; sts && x < n && st == AK_OK; x++)
            if (sts[x] != AK_OK) st = ak__fail(ctx, sts[x], "minference search: head %lld", (long long)(x % in.Hq));
        ak__free(ctx, sts);
    }
    for (int32_t h = 0; h < in.Hq && st == AK_OK;
         h++) { /* mean over sequences and rows; ties -> the earlier candidate */
        double rows = (double)in.B * (double)(in.nq - r0), bestv = -1.0;
        int32_t bc = 0;
        for (int32_t c = 0; c < nc; c++) {
            double m = 0.0;
            for (int64_t b = 0; b < in.B; b++) m += rec[(b * in.Hq + h) * nc + c];
            m = rows > 0 ? m / rows : 0.0;
            if (m > bestv) bestv = m, bc = c;
        }
        best[h] = cands[bc];
        if (search->ref_post && best[h].kind == AK_MINF_ASHAPE) best[h].kind = AK_MINF_VS;
        if (search->ref_post && best[h].kind == AK_MINF_BLOCK)
            best[h].kind = AK_MINF_VS, best[h].v = 1000, best[h].s = 6096;
        if (recall) recall[h] = (float)bestv;
    }
    for (int32_t c = 0; c < nc && plans; c++) ak_sparse_destroy(plans[c]);
    ak__free(ctx, plans);
    ak__free(ctx, rec);
    ak__dyn_end(&in);
    return st;
}
