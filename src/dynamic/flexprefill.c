/*
 * FlexPrefill (Lai et al., ICLR 2025; dynamic-sparse.md §2; docs/dynamic/flexprefill.md): per query head, the
 * softmax of the last bs query rows gives a vertical and a slash distribution; a Jensen-Shannon test against a
 * block-pooled estimate decides between a vertical-slash block pattern and a query-aware block set, each sized
 * so that the estimated coverage reaches gamma. The exact rule is in attnkit.h above ak_flexprefill_plan.
 *
 * Work: (1) key block means per (sequence, KV head); (2) in waves of heads, the probabilities of the last bs rows
 * in chunks of FP_ROWS rows (one OpenMP unit per (head, chunk); their column / diagonal sums kept per chunk and
 * added in chunk order, so the result does not depend on the thread count); (3) per head: distributions, JS
 * decision, budgets, vertical / slash selection, the query-aware set (nb^2/2 pooled products, coverage cut by
 * partial selection); (4) the plan, built sequentially from the per-head results.
 */
#include "dynamic/dyn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP_MIN_BLOCK 8
#define FP_MAX_BLOCK 2048
#define FP_MAX_NB 16384
#define FP_ROWS 32 /* representative rows per probability chunk (the micro-kernel's 32 query lanes) */

void ak_flexprefill_params_init(ak_flexprefill_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->block = 128;
    p->gamma = 0.9f;
    p->tau = 0.1f;
    p->min_budget = 0;
    p->max_budget = 0;
    p->gqa_interleave = 0;
    p->mode = AK_FLEXPREFILL_REF;
    p->heads = NULL;
}

int ak__flexprefill_opt(void *params, const char *key, const char *val) {
    ak_flexprefill_params *p = (ak_flexprefill_params *)params;
    if (!strcmp(key, "block")) return ak__dyn_int(val, &p->block);
    if (!strcmp(key, "gamma")) return ak__dyn_float(val, &p->gamma);
    if (!strcmp(key, "tau")) return ak__dyn_float(val, &p->tau);
    if (!strcmp(key, "min_budget")) return ak__dyn_int(val, &p->min_budget);
    if (!strcmp(key, "max_budget")) return ak__dyn_int(val, &p->max_budget);
    if (!strcmp(key, "gqa_interleave")) return ak__dyn_int(val, &p->gqa_interleave);
    if (!strcmp(key, "mode")) {
        if (!strcmp(val, "ref")) p->mode = AK_FLEXPREFILL_REF;
        else if (!strcmp(val, "paper")) p->mode = AK_FLEXPREFILL_PAPER;
        else return ak__dyn_int(val, &p->mode);
        return 1;
    }
    return 0;
}

double ak_flexprefill_js(const double *p, const double *q, int64_t n) {
    if (!p || !q || n < 1) return NAN;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double a = p[i], b = q[i], m = 0.5 * (a + b);
        if (a > 0.0) s += a * log(a / m);
        if (b > 0.0) s += b * log(b / m);
    }
    s *= 0.5;
    if (s < 0.0) s = 0.0; /* rounding */
    return sqrt(s);
}

/* ---- coverage cut by partial selection ---- */

typedef struct fp_key {
    float v;
    int32_t i;
} fp_key;

static int fp_before(const fp_key *a, const fp_key *b) { /* value descending, index ascending */
    if (a->v != b->v) return a->v > b->v;
    return a->i < b->i;
}

/* In the order fp_before, with S_k = the sum of the first k values (values >= 0): inclusive = 0 returns the
 * largest k with S_k <= target, inclusive = 1 the smallest k with S_k >= target (n if none). a[0..k) then
 * holds exactly those first k entries (in no particular order). Expected O(n): quickselect that keeps the
 * sum of the part already known to come first. */
static int64_t fp_cover(fp_key *a, int64_t n, double target, int inclusive) {
    if (inclusive ? target <= 0.0 : target < 0.0) return 0;
    int64_t lo = 0, hi = n;
    double acc = 0.0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    while (lo < hi) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t pi = lo + (int64_t)((seed >> 33) % (uint64_t)(hi - lo));
        fp_key piv = a[pi];
        a[pi] = a[hi - 1];
        a[hi - 1] = piv;
        int64_t s = lo;
        double sl = 0.0;
        for (int64_t t = lo; t < hi - 1; t++)
            if (fp_before(&a[t], &piv)) {
                sl += a[t].v;
                fp_key x = a[t];
                a[t] = a[s];
                a[s++] = x;
            }
        a[hi - 1] = a[s];
        a[s] = piv;
        double with = acc + sl + piv.v;
        if (inclusive) {
            if (acc + sl >= target) hi = s;
            else if (with >= target) return s + 1;
            else acc = with, lo = s + 1;
        } else {
            if (acc + sl > target) hi = s;
            else if (with > target) return s;
            else acc = with, lo = s + 1;
        }
    }
    return lo;
}

/* The cover count of x[0..n) skipping index `skip` (-1: none), see fp_cover. -1 on out of memory. */
static int64_t fp_cover_vec(const ak_ctx *ctx, const double *x, int64_t n, int64_t skip, double target, int inclusive) {
    fp_key *a = (fp_key *)ak__alloc(ctx, sizeof(fp_key) * (size_t)(n > 0 ? n : 1));
    if (!a) return -1;
    int64_t m = 0;
    for (int64_t t = 0; t < n; t++)
        if (t != skip) {
            float v = (float)x[t];
            a[m].v = v > 0.0f ? v : 0.0f; /* NaN (non-finite inputs) counts as no mass */
            a[m++].i = (int32_t)t;
        }
    int64_t k = fp_cover(a, m, target, inclusive);
    ak__free(ctx, a);
    return k;
}

/* ---- validation ---- */

static int64_t cdiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }

static ak_status fp_check_params(ak_ctx *ctx, const char *fn, const ak_flexprefill_params *p) {
    if (p->block < FP_MIN_BLOCK || p->block > FP_MAX_BLOCK)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block = %d, must be in [%d, %d]", fn, p->block, FP_MIN_BLOCK,
                        FP_MAX_BLOCK);
    if (!(p->gamma > 0.0f && p->gamma <= 1.0f))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: gamma = %g, must be in (0, 1]", fn, (double)p->gamma);
    if (!(p->tau >= 0.0f))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: tau = %g, must be >= 0", fn, (double)p->tau);
    if (p->min_budget < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: min_budget = %d tokens, must be >= 0", fn, p->min_budget);
    if (p->max_budget < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: max_budget = %d tokens, must be >= 0 (0 = no cap)", fn,
                        p->max_budget);
    int64_t minb = cdiv64(p->min_budget, p->block);
    if (minb < 1) minb = 1;
    if (p->max_budget > 0 && cdiv64(p->max_budget, p->block) < minb)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "%s: max_budget = %d tokens is below min_budget (%lld blocks of %d)", fn, p->max_budget,
                        (long long)minb, p->block);
    if (p->gqa_interleave != 0 && p->gqa_interleave != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: gqa_interleave = %d, must be 0 or 1", fn, p->gqa_interleave);
    if (p->mode != AK_FLEXPREFILL_REF && p->mode != AK_FLEXPREFILL_PAPER)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "%s: mode = %d, must be AK_FLEXPREFILL_REF (0) or AK_FLEXPREFILL_PAPER (1)", fn, p->mode);
    return AK_OK;
}

/* dyn begin + params + the problems FlexPrefill defines (causal prefill, nb within bounds). */
static ak_status fp_begin(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                          const ak_flexprefill_params *params, const char *fn, ak_flexprefill_params *prm,
                          ak_dyn_in *in) {
    if (params) *prm = *params;
    else ak_flexprefill_params_init(prm);
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, fn, in);
    if (st != AK_OK) return st;
    if ((st = fp_check_params(ctx, fn, prm)) != AK_OK) {
        ak__dyn_end(in);
        return st;
    }
    if (!desc->causal)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: FlexPrefill is causal prefill only: desc.causal = 0", fn);
    else if (in->nq != in->nk)
        st = ak__fail(
            ctx, AK_ERR_INVALID_ARGUMENT,
            "%s: FlexPrefill needs seqlen_q == seqlen_k (prefill; got %d and %d): its estimation rows are the last "
            "block of a square causal problem",
            fn, in->nq, in->nk);
    else if (cdiv64(in->nq, prm->block) > FP_MAX_NB)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                      "%s: %lld key blocks of %d tokens (N = %d), at most %d: use a larger block", fn,
                      (long long)cdiv64(in->nq, prm->block), prm->block, in->nq, FP_MAX_NB);
    if (st != AK_OK) ak__dyn_end(in);
    return st;
}

static int32_t fp_kv_head(const ak_dyn_in *in, const ak_flexprefill_params *p, int32_t h) {
    return p->gqa_interleave ? h % in->Hkv : h / in->G;
}

/* ---- estimation ---- */

/* Column and diagonal sums (ak__dyn_vs_sums) of the probabilities of rows N-L+r0 .. N-L+r0+n-1 of head h. */
static ak_status fp_chunk_sums(const ak_dyn_in *in, int64_t b, int32_t h, int32_t kvh, int32_t L, int32_t r0, int32_t n,
                               double *vs, double *ss) {
    const int32_t N = in->nk;
    int32_t rows[FP_ROWS];
    for (int32_t r = 0; r < n; r++) rows[r] = N - L + r0 + r;
    float *P = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)n * (size_t)N);
    if (!P) return AK_ERR_OUT_OF_MEMORY;
    ak_status st = ak__dyn_rows_probs(in, b, h, kvh, rows, n, 1, P);
    if (st == AK_OK) ak__dyn_vs_sums(P, n, N, (int64_t)N - L + r0, vs, ss);
    ak__free(in->ctx, P);
    return st;
}

/* vert[j] and slash[t] (t = N-1-delta) from the per-chunk sums sums[c] = {vs[N], ss[N]}, added in chunk order. */
static void fp_combine(const double *sums, int32_t nch, int32_t N, int32_t L, double *vert, double *slash) {
    for (int32_t j = 0; j < N; j++) vert[j] = slash[j] = 0.0;
    for (int32_t c = 0; c < nch; c++) {
        const double *vs = sums + (size_t)c * 2 * (size_t)N, *ss = vs + N;
        for (int32_t j = 0; j < N; j++) {
            vert[j] += vs[j];
            slash[N - 1 - j] += ss[j];
        }
    }
    double inv = 1.0 / L;
    for (int32_t j = 0; j < N; j++) vert[j] *= inv, slash[j] *= inv;
}

/* D = sqrt(JSD(softmax_c(qbar . kbar_c), vblk)); qbar = mean of scale * q over the last bs rows. */
static ak_status fp_js(const ak_dyn_in *in, int64_t b, int32_t h, int32_t bs, int32_t nb, const float *kbar,
                       const double *vblk, double *D) {
    const int d = in->d;
    float *rows = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)bs * (size_t)d);
    double *est = (double *)ak__alloc(in->ctx, sizeof(double) * (size_t)nb);
    if (!rows || !est) {
        ak__free(in->ctx, rows);
        ak__free(in->ctx, est);
        return AK_ERR_OUT_OF_MEMORY;
    }
    double qbar[AK_MAX_HEAD_DIM];
    ak__dyn_rows(in, &in->t->q, b, h, in->nq - bs, bs, d, rows, d);
    for (int c = 0; c < d; c++) {
        double s = 0.0;
        for (int32_t r = 0; r < bs; r++) s += rows[(size_t)r * d + c];
        qbar[c] = s / bs * in->scale;
    }
    double mx = -INFINITY, sum = 0.0;
    for (int32_t c = 0; c < nb; c++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += qbar[k] * kbar[(size_t)c * d + k];
        est[c] = s;
        if (s > mx) mx = s;
    }
    for (int32_t c = 0; c < nb; c++) sum += (est[c] = exp(est[c] - mx));
    for (int32_t c = 0; c < nb; c++) est[c] /= sum;
    *D = ak_flexprefill_js(est, vblk, nb);
    ak__free(in->ctx, rows);
    ak__free(in->ctx, est);
    return AK_OK;
}

typedef struct fp_head {
    ak_flexprefill_head d; /* the decision */
    int32_t *vsel, *ssel;  /* [nb]: selected vertical blocks / slash block offsets (d.nvb / d.nsb of them) */
    int32_t *qa;           /* kept query-aware entries r * nb + c (d.n_qa of them) */
    double pairs;          /* active (row, key) pairs of the head in the plan */
    ak_status st;
} fp_head;

typedef struct fp_geom {
    int32_t N, bs, nb, minb, maxb;
} fp_geom;

/* Step 4: the budgets nvb, nsb of a head (d.kind set), from the token distributions and block masses. */
static ak_status fp_budgets(const ak_dyn_in *in, const ak_flexprefill_params *p, const fp_geom *g, const double *vert,
                            const double *slash, const double *vblk, const double *sblk, ak_flexprefill_head *d) {
    const int paper = p->mode == AK_FLEXPREFILL_PAPER, full = p->gamma >= 1.0f;
    int64_t cv, cs;
    if (!paper) { /* token counts, then the reference's // 128 + 1 */
        cv = full ? g->N : fp_cover_vec(in->ctx, vert, g->N, -1, p->gamma, 0) + 1;
        cs = full ? g->N : fp_cover_vec(in->ctx, slash, g->N, -1, p->gamma, 0) + 1;
    } else { /* block counts, the forced block first */
        cv = full ? g->nb : fp_cover_vec(in->ctx, vblk, g->nb, 0, p->gamma - vblk[0], 1) + 1;
        cs = full ? g->nb : fp_cover_vec(in->ctx, sblk, g->nb, g->nb - 1, p->gamma - sblk[g->nb - 1], 1) + 1;
    }
    if (cv <= 0 || cs <= 0) return AK_ERR_OUT_OF_MEMORY;
    d->cnt_v = (int32_t)cv;
    d->cnt_s = (int32_t)cs;
    int64_t nv = paper ? cv : cv / 128 + 1, ns = paper ? cs : cs / 128 + 1;
    nv = nv < g->minb ? g->minb : nv > g->maxb ? g->maxb : nv;
    ns = ns < g->minb ? g->minb : ns > g->maxb ? g->maxb : ns;
    if (d->kind == AK_FLEXPREFILL_QUERY_AWARE) nv = ns = paper ? 1 : g->minb;
    d->nvb = (int32_t)nv;
    d->nsb = (int32_t)ns;
    return AK_OK;
}

/* Step 5: the nvb best vertical blocks (block 0 first) and nsb best slash bins (the diagonal first). */
static ak_status fp_select_vs(const ak_dyn_in *in, const fp_geom *g, const double *vblk, const double *sblk,
                              fp_head *hd) {
    const int32_t nb = g->nb;
    double *x = (double *)ak__alloc(in->ctx, sizeof(double) * (size_t)nb);
    if (!x) return AK_ERR_OUT_OF_MEMORY;
    memcpy(x, vblk, sizeof(double) * (size_t)nb);
    x[0] = INFINITY;
    int64_t kv = ak__dyn_topk(in->ctx, x, nb, hd->d.nvb, 0, hd->vsel);
    memcpy(x, sblk, sizeof(double) * (size_t)nb);
    x[nb - 1] = INFINITY;
    int64_t ks = kv < 0 ? -1 : ak__dyn_topk(in->ctx, x, nb, hd->d.nsb, 0, hd->ssel);
    ak__free(in->ctx, x);
    if (kv < 0 || ks < 0) return AK_ERR_OUT_OF_MEMORY;
    hd->d.v_mass = hd->d.s_mass = 0.0;
    for (int64_t t = 0; t < kv; t++) hd->d.v_mass += vblk[hd->vsel[t]];
    for (int64_t t = 0; t < ks; t++) {
        hd->d.s_mass += sblk[hd->ssel[t]];
        hd->ssel[t] = nb - 1 - hd->ssel[t]; /* bin -> block offset */
    }
    hd->d.nvb = (int32_t)kv;
    hd->d.nsb = (int32_t)ks;
    return AK_OK;
}

/* Step 6: the query-aware set of head h: pooled block scores Ab[r][c], c <= r, cut at gamma * nb. */
static ak_status fp_query_aware(const ak_dyn_in *in, const ak_flexprefill_params *p, const fp_geom *g, int64_t b,
                                int32_t h, const float *kbar, fp_head *hd) {
    const int d = in->d;
    const int32_t nb = g->nb;
    const int64_t ne = (int64_t)nb * (nb + 1) / 2;
    float *qb = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)nb * (size_t)d);
    float *S = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)nb * (size_t)nb);
    int32_t *cnt = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)nb);
    fp_key *a = (fp_key *)ak__alloc(in->ctx, sizeof(fp_key) * (size_t)ne);
    ak_status st = (qb && S && cnt && a) ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK) {
        ak__dyn_block_sums(in, &in->t->q, b, h, g->N, g->bs, d, qb, cnt);
        for (int32_t r = 0; r < nb; r++)
            for (int k = 0; k < d; k++) qb[(size_t)r * d + k] /= (float)cnt[r];
        st = ak__dyn_scores(in, nb, nb, d, qb, d, kbar, d, in->scale, S, nb);
    }
    int64_t n = 0, k = 0;
    if (st == AK_OK) {
        for (int32_t r = 0; r < nb; r++) {
            const float *s = S + (size_t)r * nb;
            float mx = -INFINITY;
            for (int32_t c = 0; c <= r; c++) mx = s[c] > mx ? s[c] : mx;
            double sum = 0.0;
            for (int32_t c = 0; c <= r; c++) sum += exp((double)s[c] - mx);
            for (int32_t c = 0; c <= r; c++) {
                double v = exp((double)s[c] - mx) / sum;
                a[n].v = v > 0.0 ? (float)v : 0.0f;
                a[n++].i = r * nb + c;
            }
        }
        k = p->gamma >= 1.0f ? n : fp_cover(a, n, (double)p->gamma * nb, p->mode == AK_FLEXPREFILL_PAPER);
        hd->qa = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(k > 0 ? k : 1));
        if (!hd->qa) st = AK_ERR_OUT_OF_MEMORY;
    }
    if (st == AK_OK) {
        hd->d.qa_mass = 0.0;
        for (int64_t t = 0; t < k; t++) {
            hd->qa[t] = a[t].i;
            hd->d.qa_mass += a[t].v;
        }
        hd->d.n_qa = k;
    }
    ak__free(in->ctx, qb);
    ak__free(in->ctx, S);
    ak__free(in->ctx, cnt);
    ak__free(in->ctx, a);
    return st;
}

/* Steps 2-6 for one head, from its chunk sums. */
static ak_status fp_decide(const ak_dyn_in *in, const ak_flexprefill_params *p, const fp_geom *g, int64_t b, int32_t h,
                           const double *sums, int32_t nch, const float *kbar, fp_head *hd) {
    const int32_t N = g->N, bs = g->bs, nb = g->nb;
    double *vert = (double *)ak__alloc(in->ctx, sizeof(double) * (2 * (size_t)N + 2 * (size_t)nb));
    hd->vsel = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)nb);
    hd->ssel = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)nb);
    if (!vert || !hd->vsel || !hd->ssel) {
        ak__free(in->ctx, vert);
        return AK_ERR_OUT_OF_MEMORY;
    }
    double *slash = vert + N, *vblk = slash + N, *sblk = vblk + nb;
    fp_combine(sums, nch, N, bs, vert, slash);
    for (int32_t c = 0; c < nb; c++) {
        double sv = 0.0, sl = 0.0;
        for (int32_t j = c * bs; j < N && j < (c + 1) * bs; j++) sv += vert[j], sl += slash[j];
        vblk[c] = sv;
        sblk[c] = sl;
    }
    double D = NAN;
    ak_status st = fp_js(in, b, h, bs, nb, kbar, vblk, &D);
    if (st == AK_OK) {
        hd->d.js = D;
        hd->d.kind = D < (double)p->tau ? AK_FLEXPREFILL_QUERY_AWARE : AK_FLEXPREFILL_VERTICAL_SLASH;
        st = fp_budgets(in, p, g, vert, slash, vblk, sblk, &hd->d);
    }
    if (st == AK_OK) st = fp_select_vs(in, g, vblk, sblk, hd);
    if (st == AK_OK && hd->d.kind == AK_FLEXPREFILL_QUERY_AWARE) st = fp_query_aware(in, p, g, b, h, kbar, hd);
    ak__free(in->ctx, vert);
    return st;
}

/* Key block means kbar[(b * Hkv + kvh)][nb][d] (a short last block over its real keys). */
static ak_status fp_key_means(const ak_dyn_in *in, const fp_geom *g, float *kbar) {
    const int64_t n = (int64_t)in->B * in->Hkv;
    const int d = in->d;
    int32_t *cnt = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)n * (size_t)g->nb);
    if (!cnt) return AK_ERR_OUT_OF_MEMORY;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic)
#endif
    for (int64_t x = 0; x < n; x++) {
        float *kb = kbar + (size_t)x * g->nb * d;
        int32_t *ct = cnt + (size_t)x * g->nb;
        ak__dyn_block_sums(in, &in->t->k, x / in->Hkv, x % in->Hkv, g->N, g->bs, d, kb, ct);
        for (int32_t c = 0; c < g->nb; c++)
            for (int k = 0; k < d; k++) kb[(size_t)c * d + k] /= (float)ct[c];
    }
    ak__free(in->ctx, cnt);
    return AK_OK;
}

/* Every (sequence, head): estimation and decision into hd[b * Hq + h]. */
static ak_status fp_estimate(const ak_dyn_in *in, const ak_flexprefill_params *p, const fp_geom *g, fp_head *hd) {
    const int64_t BH = (int64_t)in->B * in->Hq;
    const int32_t N = g->N, bs = g->bs, nch = (bs + FP_ROWS - 1) / FP_ROWS;
    const int nt = in->ctx->n_threads > 0 ? in->ctx->n_threads : 1;
    int64_t W = (2 * (int64_t)nt + nch - 1) / nch; /* heads per wave: about 2 units per thread */
    W = W < 1 ? 1 : W > BH ? BH : W;
    float *kbar = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)in->B * in->Hkv * g->nb * in->d);
    double *sums = (double *)ak__alloc(in->ctx, sizeof(double) * (size_t)W * nch * 2 * (size_t)N);
    ak_status *ust = (ak_status *)ak__alloc(in->ctx, sizeof(ak_status) * (size_t)W * nch);
    ak_status st = (kbar && sums && ust) ? fp_key_means(in, g, kbar) : AK_ERR_OUT_OF_MEMORY;
    for (int64_t w0 = 0; w0 < BH && st == AK_OK; w0 += W) {
        const int64_t nw = BH - w0 < W ? BH - w0 : W, nu = nw * nch;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic)
#endif
        for (int64_t u = 0; u < nu; u++) {
            int64_t bh = w0 + u / nch;
            int32_t h = (int32_t)(bh % in->Hq), r0 = (int32_t)(u % nch) * FP_ROWS;
            int32_t n = bs - r0 < FP_ROWS ? bs - r0 : FP_ROWS;
            double *vs = sums + (size_t)u * 2 * (size_t)N;
            ust[u] = fp_chunk_sums(in, bh / in->Hq, h, fp_kv_head(in, p, h), bs, r0, n, vs, vs + N);
        }
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic)
#endif
        for (int64_t x = 0; x < nw; x++) {
            int64_t bh = w0 + x, b = bh / in->Hq;
            int32_t h = (int32_t)(bh % in->Hq), kvh = fp_kv_head(in, p, h);
            ak_status s = AK_OK;
            for (int32_t c = 0; c < nch && s == AK_OK; c++) s = ust[x * nch + c];
            const float *kb = kbar + ((size_t)b * in->Hkv + kvh) * g->nb * in->d;
            hd[bh].st = s == AK_OK ? fp_decide(in, p, g, b, h, sums + (size_t)x * nch * 2 * N, nch, kb, &hd[bh]) : s;
        }
        for (int64_t x = 0; x < nw && st == AK_OK; x++) st = hd[w0 + x].st;
    }
    ak__free(in->ctx, kbar);
    ak__free(in->ctx, sums);
    ak__free(in->ctx, ust);
    if (st == AK_ERR_OUT_OF_MEMORY) return ak__fail(in->ctx, st, "ak_flexprefill_plan: estimation buffers (N = %d)", N);
    return st;
}

/* ---- the plan ---- */

/* The key blocks of query block r of one head as merged spans; returns the block count and adds the block's
 * active pairs to hd->pairs (full blocks below the diagonal, the causal triangle of the diagonal block). */
static int64_t fp_row_spans(ak_sparse_builder *bld, int32_t b, int32_t h, int32_t r, const fp_geom *g, fp_head *hd,
                            const int32_t *qa_row, int64_t nqa_row, uint8_t *mark, ak_status *st) {
    memset(mark, 0, (size_t)r + 1);
    if (hd->d.kind == AK_FLEXPREFILL_DENSE) {
        memset(mark, 1, (size_t)r + 1);
    } else {
        for (int32_t t = 0; t < hd->d.nvb; t++)
            if (hd->vsel[t] <= r) mark[hd->vsel[t]] = 1;
        for (int32_t t = 0; t < hd->d.nsb; t++)
            if (hd->ssel[t] <= r) mark[r - hd->ssel[t]] = 1;
        for (int64_t t = 0; t < nqa_row; t++) mark[qa_row[t] % g->nb] = 1;
    }
    int64_t n = 0;
    for (int32_t c = 0; c <= r && *st == AK_OK; c++) {
        if (!mark[c]) continue;
        int32_t c1 = c;
        while (c1 + 1 <= r && mark[c1 + 1]) c1++;
        int64_t hi = (int64_t)(c1 + 1) * g->bs;
        *st = ak_sparse_builder_add_span(bld, b, h, r, c * g->bs, (int32_t)(hi < g->N ? hi : g->N));
        n += c1 - c + 1;
        c = c1;
    }
    const double rows = (double)((int64_t)(r + 1) * g->bs < g->N ? g->bs : g->N - (int64_t)r * g->bs);
    hd->pairs += rows * g->bs * (double)(n - mark[r]) + (mark[r] ? rows * (rows + 1) / 2 : 0.0);
    return n;
}

/* All lists of one head; the query-aware entries are bucketed by row first (counting sort). */
static ak_status fp_head_spans(ak_sparse_builder *bld, const ak_dyn_in *in, const fp_geom *g, int64_t bh, fp_head *hd,
                               uint8_t *mark, int64_t *roff, int32_t *byrow) {
    const int32_t nb = g->nb, b = (int32_t)(bh / in->Hq), h = (int32_t)(bh % in->Hq);
    const int64_t nqa = hd->d.kind == AK_FLEXPREFILL_QUERY_AWARE ? hd->d.n_qa : 0;
    for (int32_t r = 0; r <= nb; r++) roff[r] = 0;
    for (int64_t t = 0; t < nqa; t++) roff[hd->qa[t] / nb + 1]++;
    for (int32_t r = 0; r < nb; r++) roff[r + 1] += roff[r];
    for (int64_t t = 0; t < nqa; t++) byrow[roff[hd->qa[t] / nb]++] = hd->qa[t];
    for (int32_t r = nb; r > 0; r--) roff[r] = roff[r - 1];
    roff[0] = 0;
    ak_status st = AK_OK;
    hd->d.n_blocks = 0;
    hd->pairs = 0.0;
    for (int32_t r = 0; r < nb && st == AK_OK; r++)
        hd->d.n_blocks += fp_row_spans(bld, b, h, r, g, hd, byrow + roff[r], roff[r + 1] - roff[r], mark, &st);
    return st;
}

static ak_status fp_build(const ak_dyn_in *in, const ak_flexprefill_params *p, const fp_geom *g, fp_head *hd,
                          ak_sparse **out) {
    ak_ctx *ctx = in->ctx;
    const int64_t BH = (int64_t)in->B * in->Hq;
    int64_t maxqa = 1;
    for (int64_t x = 0; x < BH; x++)
        if (hd[x].d.kind == AK_FLEXPREFILL_QUERY_AWARE && hd[x].d.n_qa > maxqa) maxqa = hd[x].d.n_qa;
    ak_sparse_desc geom;
    ak_sparse_desc_init(&geom);
    geom.n_batch = in->B;
    geom.n_heads = in->Hq;
    geom.nq = geom.nk = g->N;
    geom.causal = 1;
    geom.block_q = g->bs;
    ak_sparse_builder *bld = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &geom, &bld);
    uint8_t *mark = (uint8_t *)ak__alloc(ctx, (size_t)g->nb + 1);
    int64_t *roff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * ((size_t)g->nb + 1));
    int32_t *byrow = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)maxqa);
    if (st == AK_OK && (!mark || !roff || !byrow))
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_flexprefill_plan: plan rows");
    for (int64_t x = 0; x < BH && st == AK_OK; x++) st = fp_head_spans(bld, in, g, x, &hd[x], mark, roff, byrow);
    if (st == AK_OK) {
        char name[128];
        snprintf(name, sizeof name, "flexprefill(bs=%d,gamma=%g,tau=%g,mode=%s)", g->bs, (double)p->gamma,
                 (double)p->tau, p->mode == AK_FLEXPREFILL_PAPER ? "paper" : "ref");
        st = ak__sparse_finish_named(bld, name, out);
    }
    ak_sparse_builder_destroy(bld);
    ak__free(ctx, mark);
    ak__free(ctx, roff);
    ak__free(ctx, byrow);
    return st;
}

static void fp_explain(ak_dyn_info *info, const fp_geom *g, int32_t Hq, int64_t bh, const ak_flexprefill_head *d) {
    static const char *const kinds[] = {"dense", "vertical-slash", "query-aware"};
    int b = (int)(bh / Hq), h = (int)(bh % Hq);
    if (d->kind == AK_FLEXPREFILL_DENSE) {
        ak__dyn_explain(info, "b%d h%d: dense (N = %d <= max(2 bs, min budget) = %d)\n", b, h, g->N,
                        2 * g->bs > g->minb * g->bs ? 2 * g->bs : g->minb * g->bs);
        return;
    }
    ak__dyn_explain(
        info, "b%d h%d: %s js=%.4f cnt_v=%d cnt_s=%d nvb=%d nsb=%d v_mass=%.4f s_mass=%.4f qa=%lld blocks=%lld/%lld\n",
        b, h, kinds[d->kind], d->js, d->cnt_v, d->cnt_s, d->nvb, d->nsb, d->v_mass, d->s_mass, (long long)d->n_qa,
        (long long)d->n_blocks, (long long)g->nb * (g->nb + 1) / 2);
}

ak_status ak_flexprefill_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                              const ak_flexprefill_params *params, ak_sparse **out, ak_dyn_info *info) {
    const char *fn = "ak_flexprefill_plan";
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (info) {
        memset(info, 0, sizeof *info);
        info->size = sizeof *info;
    }
    ak_flexprefill_params p;
    ak_dyn_in in;
    ak_status st = fp_begin(ctx, desc, t, params, fn, &p, &in);
    if (st != AK_OK) return st;
    fp_geom g;
    g.N = in.nq;
    g.bs = p.block;
    g.nb = (int32_t)cdiv64(g.N, g.bs);
    g.minb = (int32_t)cdiv64(p.min_budget, g.bs);
    g.minb = g.minb < 1 ? 1 : g.minb;
    g.maxb = p.max_budget > 0 && cdiv64(p.max_budget, g.bs) < g.nb ? (int32_t)cdiv64(p.max_budget, g.bs) : g.nb;
    const int dense =
        (int64_t)g.N <= (2 * (int64_t)g.bs > (int64_t)g.minb * g.bs ? 2 * (int64_t)g.bs : (int64_t)g.minb * g.bs);
    const int64_t BH = (int64_t)in.B * in.Hq;
    fp_head *hd = (fp_head *)ak__alloc(ctx, sizeof(fp_head) * (size_t)(BH > 0 ? BH : 1));
    if (!hd) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: %lld heads", fn, (long long)BH);
    else memset(hd, 0, sizeof(fp_head) * (size_t)BH);
    for (int64_t x = 0; hd && x < BH; x++) {
        hd[x].d.kind = dense ? AK_FLEXPREFILL_DENSE : AK_FLEXPREFILL_VERTICAL_SLASH;
        hd[x].d.js = NAN;
    }
    if (st == AK_OK && !dense) st = fp_estimate(&in, &p, &g, hd);
    if (st == AK_OK) st = fp_build(&in, &p, &g, hd, out);
    for (int64_t x = 0; hd && x < BH; x++) {
        if (st == AK_OK) {
            if (p.heads) p.heads[x] = hd[x].d;
            if (info) info->n_dense_heads += hd[x].d.kind == AK_FLEXPREFILL_DENSE;
            fp_explain(info, &g, in.Hq, x, &hd[x].d);
        }
        ak__free(ctx, hd[x].vsel);
        ak__free(ctx, hd[x].ssel);
        ak__free(ctx, hd[x].qa);
    }
    if (st == AK_OK && info) { /* the density from the block counts (exact; ak_sparse_get_stats would scan rows) */
        double pairs = 0.0;
        for (int64_t x = 0; x < BH; x++) pairs += hd[x].pairs;
        ak__dyn_info_finish(&in, NULL, info);
        info->density = BH > 0 && g.N > 0 ? pairs / ((double)BH * g.N * (g.N + 1.0) / 2) : 1.0;
    }
    ak__free(ctx, hd);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_flexprefill_distributions(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                       const ak_flexprefill_params *params, int32_t b, int32_t h, double *vert,
                                       double *slash) {
    const char *fn = "ak_flexprefill_distributions";
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!vert || !slash) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: vert or slash is NULL", fn);
    ak_flexprefill_params p;
    ak_dyn_in in;
    ak_status st = fp_begin(ctx, desc, t, params, fn, &p, &in);
    if (st != AK_OK) return st;
    if (b < 0 || b >= in.B || h < 0 || h >= in.Hq) {
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: (b, h) = (%d, %d) outside %d x %d", fn, b, h, in.B, in.Hq);
        ak__dyn_end(&in);
        return st;
    }
    const int32_t N = in.nq, L = p.block < N ? p.block : N, nch = (L + FP_ROWS - 1) / FP_ROWS;
    double *sums = (double *)ak__alloc(ctx, sizeof(double) * ((size_t)nch * 2 * (size_t)N + 1));
    if (!sums) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: sums", fn);
    for (int32_t c = 0; c < nch && st == AK_OK; c++) {
        int32_t r0 = c * FP_ROWS, n = L - r0 < FP_ROWS ? L - r0 : FP_ROWS;
        double *vs = sums + (size_t)c * 2 * N;
        st = fp_chunk_sums(&in, b, h, fp_kv_head(&in, &p, h), L, r0, n, vs, vs + N);
        if (st != AK_OK) st = ak__fail(ctx, st, "%s: probabilities of the last rows", fn);
    }
    if (st == AK_OK && N > 0) fp_combine(sums, nch, N, L, vert, slash);
    ak__free(ctx, sums);
    ak__dyn_end(&in);
    return st;
}
