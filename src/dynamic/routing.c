/*
 * Routing attention (Routing Transformer, Roy et al., TACL 2021; spec dynamic-sparse.md §7;
 * docs/dynamic/routing.md): online k-means routing of normalised query / key vectors, balanced routing
 * (per centroid the top-w tokens), attention inside each cluster, outputs averaged over a row's clusters
 * (plan combine = AK_SPARSE_MEAN). Exact rule in attnkit.h.
 *
 * Per (sequence b, KV head g), one after the other: the routing vectors of the group (the G query heads'
 * rows, then the keys) as normalised f32 rows; the centroids, given or fitted (farthest-point init, then
 * Lloyd steps whose assignments run on the micro-kernel in fixed chunks of RCH rows in parallel, and whose
 * centroid sums run serially in row order, in double); then per query head (and once for the keys) the
 * similarities [centroids][rows] on the micro-kernel in fixed chunks, and per centroid a top-w selection
 * (ak__dyn_topk_f: ties to the lower index, returned in index order) in parallel over centroids. Every
 * chunking is fixed (independent of the thread count) and every list lands at a fixed place, so the plan
 * is the same for any thread count. Lists have fixed lengths (wq rows, wk keys): the CSR arrays are laid
 * out before the estimation and go to ak_sparse_create as they are.
 *
 * Choices (docs/dynamic/routing.md): centroids per KV head (the G query heads of a group share them; keys
 * are routed once per KV head); position-causal masking (the TF code masks by rank in the cluster, §7.4);
 * similarity = dot product in both normalisations (TF ranks by Euclidean distance, which LayerNorm makes
 * nearly equivalent); fitted centroids per sequence; no memory / null key-values; no self-match penalty.
 */
#include "dynamic/dyn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RCH 256                    /* rows per similarity chunk (a multiple of the kernel's 64-row tiles) */
#define SIM_CAP ((int64_t)1 << 24) /* most floats of one similarity block [centroids][rows] */
#define CG_MAX 1024                /* most centroids per similarity block */
#define LN_EPS 1e-6
#define L2_EPS 1e-12

void ak_routing_params_init(ak_routing_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->n_clusters = 0;
    p->window = 0;
    p->window_k = 0;
    p->share_qk = 0;
    p->norm = AK_ROUTING_NORM_L2;
    p->centroids = NULL;
    p->centroids_per_batch = 0;
    p->iters = 10;
    p->init = AK_ROUTING_INIT_FARTHEST;
    p->decay = 0.999f;
}

int ak__routing_opt(void *params, const char *key, const char *val) {
    ak_routing_params *p = (ak_routing_params *)params;
    if (!strcmp(key, "n_clusters")) return ak__dyn_int(val, &p->n_clusters);
    if (!strcmp(key, "window")) return ak__dyn_int(val, &p->window);
    if (!strcmp(key, "window_k")) return ak__dyn_int(val, &p->window_k);
    if (!strcmp(key, "share_qk")) return ak__dyn_int(val, &p->share_qk);
    if (!strcmp(key, "norm")) {
        if (!strcmp(val, "l2")) return p->norm = AK_ROUTING_NORM_L2, 1;
        if (!strcmp(val, "layernorm") || !strcmp(val, "ln")) return p->norm = AK_ROUTING_NORM_LAYER, 1;
        return ak__dyn_int(val, &p->norm);
    }
    if (!strcmp(key, "iters")) return ak__dyn_int(val, &p->iters);
    if (!strcmp(key, "init")) {
        if (!strcmp(val, "farthest")) return p->init = AK_ROUTING_INIT_FARTHEST, 1;
        if (!strcmp(val, "even")) return p->init = AK_ROUTING_INIT_EVEN, 1;
        return ak__dyn_int(val, &p->init);
    }
    if (!strcmp(key, "decay")) return ak__dyn_float(val, &p->decay);
    return 0; /* centroids / centroids_per_batch: pointers, not options */
}

/* Checks that need no shapes. */
static ak_status check_params(const ak_ctx *ctx, const char *fn, const ak_routing_params *p) {
    const ak_status INV = AK_ERR_INVALID_ARGUMENT;
    if (p->n_clusters < 0 || p->n_clusters > AK_ROUTING_MAX_CLUSTERS)
        return ak__fail(ctx, INV, "%s: n_clusters = %d, must be in [1, %d] (0 = round(sqrt(nk)))", fn, p->n_clusters,
                        AK_ROUTING_MAX_CLUSTERS);
    if (p->window < 0) return ak__fail(ctx, INV, "%s: window = %d, must be >= 1 (0 = ceil(nq / C))", fn, p->window);
    if (p->window_k < 0) return ak__fail(ctx, INV, "%s: window_k = %d, must be >= 1 (0 = automatic)", fn, p->window_k);
    if (p->share_qk != 0 && p->share_qk != 1)
        return ak__fail(ctx, INV, "%s: share_qk = %d, must be 0 or 1", fn, p->share_qk);
    if (p->share_qk && p->window_k)
        return ak__fail(ctx, INV,
                        "%s: window_k = %d with share_qk = 1: the keys of a cluster are its query rows; leave it 0", fn,
                        p->window_k);
    if (p->norm != AK_ROUTING_NORM_L2 && p->norm != AK_ROUTING_NORM_LAYER)
        return ak__fail(ctx, INV, "%s: norm = %d, must be AK_ROUTING_NORM_L2 (0) or AK_ROUTING_NORM_LAYER (1)", fn,
                        p->norm);
    if (p->centroids_per_batch != 0 && p->centroids_per_batch != 1)
        return ak__fail(ctx, INV, "%s: centroids_per_batch = %d, must be 0 or 1", fn, p->centroids_per_batch);
    if (p->centroids_per_batch && !p->centroids)
        return ak__fail(ctx, INV, "%s: centroids_per_batch = 1 but centroids is NULL", fn);
    if (p->centroids && p->n_clusters == 0)
        return ak__fail(ctx, INV, "%s: n_clusters = 0 with given centroids: say how many there are", fn);
    if (p->iters < 0 || p->iters > 1000)
        return ak__fail(ctx, INV, "%s: iters = %d, must be in [0, 1000]", fn, p->iters);
    if (p->init != AK_ROUTING_INIT_FARTHEST && p->init != AK_ROUTING_INIT_EVEN)
        return ak__fail(ctx, INV, "%s: init = %d, must be AK_ROUTING_INIT_FARTHEST (0) or AK_ROUTING_INIT_EVEN (1)", fn,
                        p->init);
    if (!(p->decay > 0.0f && p->decay < 1.0f))
        return ak__fail(ctx, INV, "%s: decay = %g, must be in (0, 1)", fn, (double)p->decay);
    return AK_OK;
}

/* Index of the first non-finite value of x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* Resolved geometry of one problem. */
typedef struct rgeo {
    int64_t C, wq, wk; /* clusters, query rows and keys per cluster */
    int64_t G, P;      /* query heads per KV head; routing vectors in a group's fitting pool */
} rgeo;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static ak_status resolve(const ak_dyn_in *in, const char *fn, const ak_routing_params *p, rgeo *g) {
    const ak_ctx *ctx = in->ctx;
    int64_t nq = in->nq, nk = in->nk;
    if (p->share_qk && nq != nk)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: share_qk = 1 needs nq == nk (here %lld, %lld)", fn,
                        (long long)nq, (long long)nk);
    g->C = p->n_clusters ? p->n_clusters : (int64_t)llround(sqrt((double)nk));
    if (g->C < 1) g->C = 1;
    g->wq = p->window ? (p->window < nq ? p->window : nq) : ceil_div(nq, g->C);
    if (p->share_qk)
        g->wk = g->wq;
    else if (p->window_k)
        g->wk = p->window_k < nk ? p->window_k : nk;
    else if (p->window)
        g->wk = p->window < nk ? p->window : nk;
    else
        g->wk = ceil_div(nk, g->C);
    g->G = in->G;
    g->P = g->G * nq + (p->share_qk ? 0 : nk);
    int64_t w = g->wq > g->wk ? g->wq : g->wk;
    if ((int64_t)in->B * in->Hq * g->C * (w > 0 ? w : 1) > INT32_MAX)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "%s: B * Hq * n_clusters * window = %d * %d * %lld * %lld must stay below 2^31", fn, in->B,
                        in->Hq, (long long)g->C, (long long)w);
    if (p->centroids) {
        int64_t n = (p->centroids_per_batch ? in->B : 1) * (int64_t)in->Hkv * g->C * in->d,
                bad = first_nonfinite(p->centroids, n);
        if (bad >= 0) {
            int64_t k = bad % in->d, c = bad / in->d % g->C, h = bad / in->d / g->C % in->Hkv;
            int64_t b = bad / in->d / g->C / in->Hkv;
            if (p->centroids_per_batch)
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                                "%s: centroids[%lld][%lld][%lld][%lld] = %g is not finite", fn, (long long)b,
                                (long long)h, (long long)c, (long long)k, (double)p->centroids[bad]);
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: centroids[%lld][%lld][%lld] = %g is not finite", fn,
                            (long long)h, (long long)c, (long long)k, (double)p->centroids[bad]);
        }
    }
    return AK_OK;
}

/* ---- routing vectors ---- */

/* x <- x / max(|x|, 1e-12) (L2) or (x - mean) / sqrt(var + 1e-6) (LayerNorm without gain), in double. */
static void norm_row(float *x, int d, int mode) {
    if (mode == AK_ROUTING_NORM_L2) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += (double)x[k] * x[k];
        double nrm = sqrt(s), inv = 1.0 / (nrm > L2_EPS ? nrm : L2_EPS);
        for (int k = 0; k < d; k++) x[k] = (float)(x[k] * inv);
        return;
    }
    double m = 0.0, v = 0.0;
    for (int k = 0; k < d; k++) m += x[k];
    m /= d;
    for (int k = 0; k < d; k++) v += (x[k] - m) * (x[k] - m);
    double inv = 1.0 / sqrt(v / d + LN_EPS);
    for (int k = 0; k < d; k++) x[k] = (float)((x[k] - m) * inv);
}

/* Rows [0, n) of head h, sequence b of X, normalised: out [n][d]. */
static void load_rows(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int64_t h, int64_t n, int mode, float *out) {
    const int d = in->d;
    const int64_t nch = ceil_div(n, RCH);
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(static) if (nch > 1)
#endif
    for (int64_t c = 0; c < nch; c++) {
        int64_t i0 = c * RCH, cnt = n - i0 < RCH ? n - i0 : RCH;
        ak__dyn_rows(in, X, b, h, i0, cnt, d, out + i0 * d, d);
        for (int64_t r = 0; r < cnt; r++) norm_row(out + (i0 + r) * d, d, mode);
    }
}

/* ---- k-means ---- */

/* a[t] = argmax_c X[t] . mu[c] (ties: lower c) for t < n, products on the micro-kernel in chunks of RCH
 * rows. Returns how many a[t] changed, or -1 when out of memory. */
static int64_t assign_rows(const ak_dyn_in *in, const float *X, int64_t n, const float *mu, int64_t C, int32_t *a) {
    const int d = in->d;
    const int64_t nch = ceil_div(n, RCH);
    int64_t changed = 0;
    int failed = 0;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic) reduction(+ : changed) if (nch > 1)
#endif
    for (int64_t ch = 0; ch < nch; ch++) {
        int64_t i0 = ch * RCH, cnt = n - i0 < RCH ? n - i0 : RCH;
        float *S = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(cnt * C));
        if (!S || ak__dyn_scores(in, (int)cnt, C, d, X + i0 * d, d, mu, d, 1.0f, S, C) != AK_OK) {
            ak__free(in->ctx, S);
#ifdef AK_USE_OPENMP
#pragma omp atomic write
#endif
            failed = 1;
            continue;
        }
        for (int64_t r = 0; r < cnt; r++) {
            const float *s = S + r * C;
            int32_t best = 0;
            for (int64_t c = 1; c < C; c++)
                if (s[c] > s[best]) best = (int32_t)c;
            if (a[i0 + r] != best) changed++, a[i0 + r] = best;
        }
        ak__free(in->ctx, S);
    }
    return failed ? -1 : changed;
}

/* mu[c] <- decay * mu[c] + (1 - decay) * m_c for every cluster with vectors, m_c = the mean of the rows of
 * X [n][d] assigned to c (renormalised under L2 unless 0); sums in row order, in double. Scratch acc [C][d],
 * cnt [C]. Returns the number of clusters without vectors (their centroids unchanged). */
static int64_t update_mu(const float *X, int64_t n, int d, const int32_t *a, int64_t C, int mode, double decay,
                         float *mu, double *acc, int64_t *cnt) {
    memset(acc, 0, sizeof(double) * (size_t)(C * d));
    memset(cnt, 0, sizeof(int64_t) * (size_t)C);
    for (int64_t t = 0; t < n; t++) {
        double *m = acc + (int64_t)a[t] * d;
        cnt[a[t]]++;
        for (int k = 0; k < d; k++) m[k] += X[t * d + k];
    }
    int64_t empty = 0;
    for (int64_t c = 0; c < C; c++) {
        if (!cnt[c]) {
            empty++;
            continue;
        }
        double *m = acc + c * d, s = 0.0;
        for (int k = 0; k < d; k++) m[k] /= (double)cnt[c];
        for (int k = 0; k < d; k++) s += m[k] * m[k];
        if (mode == AK_ROUTING_NORM_L2 && s > 0.0)
            for (int k = 0; k < d; k++) m[k] /= sqrt(s);
        for (int k = 0; k < d; k++) mu[c * d + k] = (float)(decay * mu[c * d + k] + (1.0 - decay) * m[k]);
    }
    return empty;
}

/* Squared Euclidean distance, eight partial sums (vectorisable, fixed order). */
static float dist2(const float *x, const float *y, int d) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tot = 0.0f;
    int k = 0;
    for (; k + 8 <= d; k += 8)
        for (int u = 0; u < 8; u++) {
            float t = x[k + u] - y[k + u];
            s[u] += t * t;
        }
    for (; k < d; k++) tot += (x[k] - y[k]) * (x[k] - y[k]);
    for (int u = 0; u < 8; u++) tot += s[u];
    return tot;
}

/* Farthest-point init: mu[0] = X[0], then the row farthest from its nearest centroid (ties: first row). */
static ak_status init_farthest(const ak_dyn_in *in, const float *X, int64_t P, int64_t C, float *mu) {
    const int d = in->d;
    const int64_t nch = ceil_div(P, RCH);
    float *mind = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)P);
    if (!mind) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "routing: k-means init (%lld rows)", (long long)P);
    int64_t pick = 0;
    for (int64_t c = 0; c < C; c++) {
        memcpy(mu + c * d, X + pick * d, sizeof(float) * (size_t)d);
        if (c + 1 == C) break;
        const float *m = mu + c * d;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(static) if (nch > 1)
#endif
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t t1 = (ch + 1) * RCH < P ? (ch + 1) * RCH : P;
            for (int64_t t = ch * RCH; t < t1; t++) {
                float v = dist2(X + t * d, m, d);
                if (c == 0 || v < mind[t]) mind[t] = v;
            }
        }
        float best = -1.0f;
        pick = 0;
        for (int64_t t = 0; t < P; t++)
            if (mind[t] > best) best = mind[t], pick = t;
    }
    ak__free(in->ctx, mind);
    return AK_OK;
}

typedef struct fitstat {
    int32_t iters;     /* Lloyd steps done */
    int32_t converged; /* stopped because no assignment changed */
    int64_t empty;     /* clusters without vectors in the last step */
} fitstat;

/* Fit mu [C][d] on the pool X [P][d] (init + Lloyd). */
static ak_status fit(const ak_dyn_in *in, const float *X, int64_t P, int64_t C, const ak_routing_params *p, float *mu,
                     fitstat *fs) {
    const int d = in->d;
    memset(fs, 0, sizeof *fs);
    if (P == 0) {
        memset(mu, 0, sizeof(float) * (size_t)(C * d));
        return AK_OK;
    }
    ak_status st = AK_OK;
    if (p->init == AK_ROUTING_INIT_FARTHEST) {
        if ((st = init_farthest(in, X, P, C, mu)) != AK_OK) return st;
    } else {
        for (int64_t c = 0; c < C; c++) memcpy(mu + c * d, X + c * P / C * d, sizeof(float) * (size_t)d);
    }
    int32_t *a = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)P);
    double *acc = (double *)ak__alloc(in->ctx, sizeof(double) * (size_t)(C * d));
    int64_t *cnt = (int64_t *)ak__alloc(in->ctx, sizeof(int64_t) * (size_t)C);
    if (!a || !acc || !cnt) {
        st = ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "routing: k-means (%lld rows, %lld clusters)", (long long)P,
                      (long long)C);
    } else {
        for (int64_t t = 0; t < P; t++) a[t] = -1;
        for (int32_t it = 0; it < p->iters; it++) {
            int64_t ch = assign_rows(in, X, P, mu, C, a);
            if (ch < 0) {
                st = ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "routing: k-means similarities");
                break;
            }
            if (ch == 0) { /* the update would give the same centroids */
                fs->converged = 1;
                break;
            }
            fs->empty = update_mu(X, P, d, a, C, p->norm, 0.0, mu, acc, cnt);
            fs->iters = it + 1;
        }
    }
    ak__free(in->ctx, a);
    ak__free(in->ctx, acc);
    ak__free(in->ctx, cnt);
    return st;
}

/* ---- balanced routing ---- */

/* lists[c * w + x], x < w: the w rows of X [n][d] with the largest X . mu[c] (ties: lower row), ascending. */
static ak_status route(const ak_dyn_in *in, const float *mu, int64_t C, const float *X, int64_t n, int64_t w,
                       int32_t *lists) {
    const int d = in->d;
    if (w == 0 || n == 0) return AK_OK;
    int64_t CG = SIM_CAP / n;
    CG = CG < 1 ? 1 : CG > CG_MAX ? CG_MAX : CG;
    CG = CG > C ? C : CG;
    float *S = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(CG * n));
    if (!S)
        return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "routing: similarities (%lld x %lld)", (long long)CG,
                        (long long)n);
    const int64_t nch = ceil_div(n, RCH);
    int failed = 0;
    for (int64_t c0 = 0; c0 < C && !failed; c0 += CG) {
        int64_t cg = C - c0 < CG ? C - c0 : CG;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic) if (nch > 1)
#endif
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t j0 = ch * RCH, cnt = n - j0 < RCH ? n - j0 : RCH;
            if (ak__dyn_scores(in, (int)cg, cnt, d, mu + c0 * d, d, X + j0 * d, d, 1.0f, S + j0, n) != AK_OK) {
#ifdef AK_USE_OPENMP
#pragma omp atomic write
#endif
                failed = 1;
            }
        }
        if (failed) break;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic) if (cg * n > 16384)
#endif
        for (int64_t c = 0; c < cg; c++) {
            if (ak__dyn_topk_f(in->ctx, S + c * n, n, w, 0, lists + (c0 + c) * w) != w) {
#ifdef AK_USE_OPENMP
#pragma omp atomic write
#endif
                failed = 1;
            }
        }
    }
    ak__free(in->ctx, S);
    return failed ? ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "routing: top-w selection") : AK_OK;
}

/* ---- planner ---- */

/* Scratch of one (b, g) group. */
typedef struct rwork {
    float *X;    /* [G * nq + nk][d] routing vectors: query heads of the group, then the keys */
    float *mu;   /* [C][d] */
    int32_t *kl; /* [C][wk] key members of the KV head */
} rwork;

static void work_free(const ak_ctx *ctx, rwork *w) {
    ak__free(ctx, w->X);
    ak__free(ctx, w->mu);
    ak__free(ctx, w->kl);
    memset(w, 0, sizeof *w);
}

static ak_status work_alloc(const ak_dyn_in *in, const rgeo *g, rwork *w) {
    int64_t rows = g->G * in->nq + in->nk;
    w->X = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(rows * in->d + 1));
    w->mu = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(g->C * in->d));
    w->kl = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(g->C * g->wk + 1));
    if (w->X && w->mu && w->kl) return AK_OK;
    work_free(in->ctx, w);
    return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "routing: %lld routing vectors of %d floats", (long long)rows,
                    in->d);
}

/* Routing vectors and centroids of group (b, kvh): loads w->X and sets w->mu (given or fitted). */
static ak_status group_centroids(const ak_dyn_in *in, const rgeo *g, const ak_routing_params *p, int32_t b, int32_t kvh,
                                 rwork *w, fitstat *fs) {
    const int64_t nq = in->nq, d = in->d;
    for (int64_t gi = 0; gi < g->G; gi++) load_rows(in, &in->t->q, b, kvh * g->G + gi, nq, p->norm, w->X + gi * nq * d);
    if (!p->share_qk) load_rows(in, &in->t->k, b, kvh, in->nk, p->norm, w->X + g->G * nq * d);
    memset(fs, 0, sizeof *fs);
    if (p->centroids) {
        int64_t set = (p->centroids_per_batch ? (int64_t)b * in->Hkv : 0) + kvh;
        memcpy(w->mu, p->centroids + set * g->C * d, sizeof(float) * (size_t)(g->C * d));
        return AK_OK;
    }
    return fit(in, w->X, g->P, g->C, p, w->mu, fs);
}

/* Members of every cluster of group (b, kvh) into the plan's arrays (list r = (b * Hq + h) * C + c holds
 * qrows [r * wq, (r + 1) * wq) and cols [r * wk, (r + 1) * wk)). */
static ak_status group_route(const ak_dyn_in *in, const rgeo *g, const ak_routing_params *p, int32_t b, int32_t kvh,
                             rwork *w, int32_t *qrows, int32_t *cols) {
    const int64_t nq = in->nq, d = in->d, C = g->C;
    ak_status st = AK_OK;
    if (!p->share_qk && (st = route(in, w->mu, C, w->X + g->G * nq * d, in->nk, g->wk, w->kl)) != AK_OK) return st;
    for (int64_t gi = 0; gi < g->G && st == AK_OK; gi++) {
        int64_t r0 = ((int64_t)b * in->Hq + kvh * g->G + gi) * C;
        st = route(in, w->mu, C, w->X + gi * nq * d, nq, g->wq, qrows + r0 * g->wq);
        const int32_t *src = p->share_qk ? qrows + r0 * g->wq : w->kl; /* share_qk: nq == nk, key = row */
        if (st == AK_OK && g->wk > 0) memcpy(cols + r0 * g->wk, src, sizeof(int32_t) * (size_t)(C * g->wk));
    }
    return st;
}

/* Common entry: tensors and desc (ak__dyn_begin), *p resolved (defaults when NULL), checked, geometry. */
static ak_status begin(ak_ctx *ctx, const char *fn, const ak_attn_desc *desc, const ak_attn_tensors *t,
                       const ak_routing_params *params, ak_routing_params *p, ak_dyn_in *in, rgeo *g) {
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, fn, in);
    if (st != AK_OK) return st;
    if (params)
        *p = *params;
    else
        ak_routing_params_init(p);
    if ((st = check_params(ctx, fn, p)) == AK_OK) st = resolve(in, fn, p, g);
    if (st != AK_OK) ak__dyn_end(in);
    return st;
}

/* Coverage of the rows of list range [r0, r0 + C): rows in no cluster, in several, the most clusters of a row. */
static void coverage(const int32_t *qrows, int64_t r0, const rgeo *g, int64_t nq, int32_t *seen, int64_t *none,
                     int64_t *multi, int32_t *most) {
    memset(seen, 0, sizeof(int32_t) * (size_t)(nq + 1));
    for (int64_t x = r0 * g->wq; x < (r0 + g->C) * g->wq; x++) seen[qrows[x]]++;
    *none = *multi = 0;
    *most = 0;
    for (int64_t i = 0; i < nq; i++) {
        *none += seen[i] == 0;
        *multi += seen[i] > 1;
        *most = seen[i] > *most ? seen[i] : *most;
    }
}

static void explain(ak_dyn_info *info, const ak_dyn_in *in, const rgeo *g, const ak_routing_params *p,
                    const int32_t *qrows, const fitstat *fs, int32_t *seen) {
    if (!info) return;
    for (int32_t b = 0; b < in->B; b++)
        for (int32_t h = 0; h < in->Hq; h++) {
            int64_t none, multi;
            int32_t most;
            coverage(qrows, ((int64_t)b * in->Hq + h) * g->C, g, in->nq, seen, &none, &multi, &most);
            const fitstat *f = fs + (int64_t)b * in->Hkv + h / g->G;
            char cen[96];
            if (p->centroids)
                snprintf(cen, sizeof cen, "given");
            else
                snprintf(cen, sizeof cen, "fitted (%s init, %d Lloyd steps%s, %lld empty)",
                         p->init ? "even" : "farthest", f->iters, f->converged ? ", converged" : "",
                         (long long)f->empty);
            ak__dyn_explain(info,
                            "b%d h%d: %lld clusters x %lld rows / %lld keys; rows in no cluster %lld, in several %lld "
                            "(at most %d); centroids %s\n",
                            b, h, (long long)g->C, (long long)g->wq, (long long)g->wk, (long long)none,
                            (long long)multi, most, cen);
        }
}

static ak_status assemble(ak_ctx *ctx, const ak_dyn_in *in, const rgeo *g, const ak_routing_params *p, int32_t *qrows,
                          int32_t *cols, ak_sparse **out) {
    int64_t R = (int64_t)in->B * in->Hq * g->C;
    int64_t *qoff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(R + 1));
    int64_t *coff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(R + 1));
    ak_status st;
    if (!qoff || !coff) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_routing_plan: %lld lists", (long long)R);
    } else {
        for (int64_t r = 0; r <= R; r++) qoff[r] = r * g->wq, coff[r] = r * g->wk;
        char name[160];
        snprintf(name, sizeof name, "routing(C=%lld,wq=%lld,wk=%lld,norm=%s,%s%s)", (long long)g->C, (long long)g->wq,
                 (long long)g->wk, p->norm ? "layernorm" : "l2",
                 p->centroids ? "given"
                 : p->init    ? "fit-even"
                              : "fit-farthest",
                 p->share_qk ? ",share_qk" : "");
        ak_sparse_desc d;
        ak_sparse_desc_init(&d);
        d.n_batch = in->B;
        d.n_heads = in->Hq;
        d.nq = in->nq;
        d.nk = in->nk;
        d.causal = in->p.desc.causal ? 1 : 0;
        d.block_q = g->wq > 0 ? (int32_t)g->wq : 1;
        d.n_qblocks = (int32_t)g->C;
        d.qrow_off = qoff;
        d.qrows = qrows;
        d.col_off = coff;
        d.col_idx = cols;
        d.combine = AK_SPARSE_MEAN;
        d.name = name;
        st = ak_sparse_create(ctx, &d, out);
    }
    ak__free(ctx, qoff);
    ak__free(ctx, coff);
    return st;
}

ak_status ak_routing_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                          const ak_routing_params *params, ak_sparse **out, ak_dyn_info *info) {
    const char *fn = "ak_routing_plan";
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (info) memset(info, 0, sizeof *info);
    ak_routing_params p;
    ak_dyn_in in;
    rgeo g;
    ak_status st = begin(ctx, fn, desc, t, params, &p, &in, &g);
    if (st != AK_OK) return st;
    int64_t R = (int64_t)in.B * in.Hq * g.C, ngroups = (int64_t)in.B * in.Hkv;
    int32_t *qrows = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(R * g.wq + 1));
    int32_t *cols = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(R * g.wk + 1));
    fitstat *fs = (fitstat *)ak__alloc(ctx, sizeof(fitstat) * (size_t)ngroups);
    rwork w;
    memset(&w, 0, sizeof w);
    if (!qrows || !cols || !fs)
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: member lists (%lld lists)", fn, (long long)R);
    else
        st = work_alloc(&in, &g, &w);
    for (int32_t b = 0; b < in.B && st == AK_OK; b++)
        for (int32_t kvh = 0; kvh < in.Hkv && st == AK_OK; kvh++) {
            st = group_centroids(&in, &g, &p, b, kvh, &w, fs + (int64_t)b * in.Hkv + kvh);
            if (st == AK_OK) st = group_route(&in, &g, &p, b, kvh, &w, qrows, cols);
        }
    work_free(ctx, &w);
    if (st == AK_OK) st = assemble(ctx, &in, &g, &p, qrows, cols, out);
    if (st == AK_OK && info) {
        int32_t *seen = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(in.nq + 1));
        if (seen) explain(info, &in, &g, &p, qrows, fs, seen);
        ak__free(ctx, seen);
        if (g.C == 1 && g.wq == in.nq && g.wk == in.nk) info->n_dense_heads = in.Hq;
        ak__dyn_info_finish(&in, *out, info);
    }
    ak__free(ctx, qrows);
    ak__free(ctx, cols);
    ak__free(ctx, fs);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_routing_fit(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                         const ak_routing_params *params, float *centroids) {
    const char *fn = "ak_routing_fit";
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak_routing_params p;
    ak_dyn_in in;
    rgeo g;
    ak_status st = begin(ctx, fn, desc, t, params, &p, &in, &g);
    if (st != AK_OK) return st;
    if (!centroids)
        st = ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: centroids is NULL", fn);
    else if (p.centroids)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: params->centroids must be NULL (this fits them)", fn);
    else if (p.n_clusters < 1)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                      "%s: n_clusters = 0: give the cluster count (the output holds B * Hkv * "
                      "n_clusters * d floats)",
                      fn);
    rwork w;
    memset(&w, 0, sizeof w);
    if (st == AK_OK) st = work_alloc(&in, &g, &w);
    for (int32_t b = 0; b < in.B && st == AK_OK; b++)
        for (int32_t kvh = 0; kvh < in.Hkv && st == AK_OK; kvh++) {
            fitstat fs;
            st = group_centroids(&in, &g, &p, b, kvh, &w, &fs);
            if (st == AK_OK)
                memcpy(centroids + ((int64_t)b * in.Hkv + kvh) * g.C * in.d, w.mu,
                       sizeof(float) * (size_t)(g.C * in.d));
        }
    work_free(ctx, &w);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_routing_kmeans_update(ak_ctx *ctx, const ak_routing_params *params, int32_t n_heads, int32_t n,
                                   int32_t dim, const float *x, float *centroids, int32_t *assign) {
    const char *fn = "ak_routing_kmeans_update";
    const ak_status INV = AK_ERR_INVALID_ARGUMENT;
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    ak_routing_params p;
    if (params)
        p = *params;
    else
        ak_routing_params_init(&p);
    ak_status st = check_params(ctx, fn, &p);
    if (st != AK_OK) return st;
    if (p.n_clusters < 1) return ak__fail(ctx, INV, "%s: n_clusters = 0: give the cluster count", fn);
    if (n_heads < 1) return ak__fail(ctx, INV, "%s: n_heads = %d, must be >= 1", fn, n_heads);
    if (n < 0) return ak__fail(ctx, INV, "%s: n = %d, must be >= 0", fn, n);
    if (dim < 1 || dim > AK_MAX_HEAD_DIM)
        return ak__fail(ctx, INV, "%s: dim = %d, must be in [1, %d]", fn, dim, AK_MAX_HEAD_DIM);
    if (!centroids) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: centroids is NULL", fn);
    if (n > 0 && !x) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: x is NULL", fn);
    const int64_t C = p.n_clusters, nx = (int64_t)n_heads * n * dim, nc = (int64_t)n_heads * C * dim;
    int64_t bad = first_nonfinite(x, nx);
    if (bad >= 0)
        return ak__fail(ctx, INV, "%s: x[%lld][%lld][%lld] = %g is not finite", fn, (long long)(bad / dim / n),
                        (long long)(bad / dim % n), (long long)(bad % dim), (double)x[bad]);
    if ((bad = first_nonfinite(centroids, nc)) >= 0)
        return ak__fail(ctx, INV, "%s: centroids[%lld][%lld][%lld] = %g is not finite", fn, (long long)(bad / dim / C),
                        (long long)(bad / dim % C), (long long)(bad % dim), (double)centroids[bad]);
    ak_dyn_in in;
    memset(&in, 0, sizeof in);
    in.ctx = ctx;
    in.d = dim;
    in.kern = ak__kernel_for(ctx->force_ref ? AK_ISA_SCALAR : ctx->isa);
    float *X = (float *)ak__alloc(ctx, sizeof(float) * (size_t)((int64_t)n * dim + 1));
    float *mu = (float *)ak__alloc(ctx, sizeof(float) * (size_t)nc);
    int32_t *a = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)((int64_t)n_heads * n + 1));
    double *acc = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(C * dim));
    int64_t *cnt = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)C);
    if (!X || !mu || !a || !acc || !cnt) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: scratch", fn);
    for (int32_t h = 0; h < n_heads && st == AK_OK; h++) {
        float *m = mu + (int64_t)h * C * dim;
        int32_t *ah = a + (int64_t)h * n;
        memcpy(m, centroids + (int64_t)h * C * dim, sizeof(float) * (size_t)(C * dim));
        if (n > 0) memcpy(X, x + (int64_t)h * n * dim, sizeof(float) * (size_t)((int64_t)n * dim));
        for (int64_t t = 0; t < n; t++) {
            norm_row(X + t * dim, dim, p.norm);
            ah[t] = -1;
        }
        if (assign_rows(&in, X, n, m, C, ah) < 0)
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: similarities", fn);
        else
            update_mu(X, n, dim, ah, C, p.norm, (double)p.decay, m, acc, cnt);
    }
    if (st == AK_OK) {
        memcpy(centroids, mu, sizeof(float) * (size_t)nc);
        if (assign && n > 0) memcpy(assign, a, sizeof(int32_t) * (size_t)((int64_t)n_heads * n));
    }
    ak__free(ctx, X);
    ak__free(ctx, mu);
    ak__free(ctx, a);
    ak__free(ctx, acc);
    ak__free(ctx, cnt);
    return st;
}
