/*
 * test_dyn_routing.c — Routing attention planner (ak_routing_plan, ak_routing_fit, ak_routing_kmeans_update;
 * attnkit.h, dynamic-sparse.md §7, docs/dynamic/routing.md).
 *
 * The rule is re-implemented here plainly in double precision (normalisation, similarities, top-w by a full
 * qsort, k-means init and Lloyd steps, per-cluster attention with its own softmax, scatter-mean) without
 * library code. Selections may differ from the double re-implementation only at near-ties (the library
 * decides in f32): a selected token must lie within a rounding tolerance of the w-th value.
 * Groups (`test_dyn_routing <group>`, no argument = all):
 *   dense    §7.7.1: C = 1, w = N (auto, clamped, given or fitted centroids, share_qk, nq != nk, not causal):
 *            the plan's mask is the causal (or full) mask and the executor output = ak_attention_ref (dense)
 *   planted  planted clusters are recovered by the fitted k-means (each cluster's query and key members are
 *            exactly one planted cluster: recall 1) and the attention-mass recall is >= 0.99 (L2 and
 *            LayerNorm, GQA); control: twice the clusters at half the window loses the structure
 *   brute    §7.7.2: every cluster has exactly w members, sorted, unique; membership = the brute-force top-w
 *            for odd lengths (1, 17, 113, 300, 1023), C not dividing N, C > N, GQA 1/3/4, B = 2, both norms,
 *            share_qk, nq != nk, bf16, given and fitted centroids (ak_routing_fit); fitted centroids passed
 *            back (centroids_per_batch) give the same lists
 *   mean     §7.7.3: scatter-mean: a token in two clusters gets the average of its two per-cluster outputs,
 *            a token in none gets O = 0 and LSE = -inf (executor, NaN-poisoned outputs, vs the double
 *            computation here); random overlapping cases
 *   causal   §7.7.5: position-causality with unshared QK on a case where the rank-causal mask of the TF code
 *            differs (mask and output); random cases: mask = position-causal brute-force mask
 *   exec     executor (NaN-poisoned outputs) vs ak_attention_ref_sparse (f64), which is itself checked
 *            against the double computation here: f32 / bf16, GQA, B = 2, causal or not, nq != nk, share_qk
 *   kmeans   §7.7.4: ak_routing_kmeans_update vs hand computations (L2 and LayerNorm, ties, an empty
 *            cluster, two heads); assignments stable over EMA steps on well-separated data; ak_routing_fit
 *            vs the double k-means here (both inits, 0..3 Lloyd steps)
 *   threads  the same plan (JSON) and explain text for 1, 2 and 3 threads
 *   invalid  every invalid argument: status, *out NULL, the field in the message; nothing written on failure
 * AK_DYN_ROUTING_QUICK=1 (sanitizer builds) runs fewer and smaller cases; AK_DYN_ROUTING_VERBOSE=1 prints more.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

static int g_quick, g_verbose;

/* ---- problems and plans ---------------------------------------------------------------------- */

static int make_problem(problem *p, int B, int Hq, int Hkv, int nq, int nk, int d, ak_dtype dt, int causal, rng *r) {
    ak_attn_desc de;
    ak_attn_desc_init(&de);
    de.batch = B, de.num_heads_q = Hq, de.num_heads_kv = Hkv, de.seqlen_q = nq, de.seqlen_k = nk;
    de.head_dim = d, de.head_dim_v = d, de.dtype_q = dt, de.dtype_kv = dt, de.dtype_o = AK_F32;
    de.causal = causal, de.return_lse = 1;
    problem_opts po;
    problem_opts_default(&po);
    return problem_create(p, &de, 0, 0, &po, r);
}

static ak_sparse *plan_of(ak_ctx *ctx, const problem *p, const ak_routing_params *rp, ak_dyn_info *info,
                          const char *tag) {
    ak_sparse *sp = NULL;
    ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
    ak_status st = ak_routing_plan(ctx, &p->d, &t, rp, &sp, info);
    CHECK(st == AK_OK && sp, "%s: ak_routing_plan: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    return st == AK_OK ? sp : NULL;
}

static int64_t pos_of(const problem *p, int64_t i) { return i + p->d.seqlen_k - p->d.seqlen_q; }

/* Index of the first non-finite value, or -1. */
static int64_t first_bad(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* Rows [0, n) of head h, sequence b of X as doubles [n][d]. */
static double *head_rows(const tbuf *X, int64_t b, int64_t h, int64_t n, int64_t d) {
    double *o = (double *)malloc(sizeof(double) * (size_t)(n * d + 1));
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++) o[i * d + c] = ten_get4(&X->t, b, h, i, c);
    return o;
}

/* ---- the rule, written from attnkit.h -------------------------------------------------------- */

/* L2: x / max(|x|, 1e-12); LayerNorm without gain: (x - mean) / sqrt(var + 1e-6). */
static void bf_norm(double *x, int64_t d, int mode) {
    if (mode == AK_ROUTING_NORM_L2) {
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += x[k] * x[k];
        double n = sqrt(s) > 1e-12 ? sqrt(s) : 1e-12;
        for (int64_t k = 0; k < d; k++) x[k] /= n;
        return;
    }
    double m = 0.0, v = 0.0;
    for (int64_t k = 0; k < d; k++) m += x[k] / (double)d;
    for (int64_t k = 0; k < d; k++) v += (x[k] - m) * (x[k] - m) / (double)d;
    for (int64_t k = 0; k < d; k++) x[k] = (x[k] - m) / sqrt(v + 1e-6);
}

/* Normalised rows of head h (sequence b): [n][d]. */
static double *norm_rows(const tbuf *X, int64_t b, int64_t h, int64_t n, int64_t d, int mode) {
    double *o = head_rows(X, b, h, n, d);
    for (int64_t i = 0; i < n; i++) bf_norm(o + i * d, d, mode);
    return o;
}

typedef struct bsize {
    int64_t C, wq, wk;
} bsize;

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

static bsize bf_sizes(const ak_routing_params *rp, int64_t nq, int64_t nk) {
    bsize s;
    s.C = rp->n_clusters ? rp->n_clusters : (int64_t)floor(sqrt((double)nk) + 0.5);
    if (s.C < 1) s.C = 1;
    s.wq = rp->window ? imin(rp->window, nq) : (nq + s.C - 1) / s.C;
    if (rp->share_qk)
        s.wk = s.wq;
    else if (rp->window_k)
        s.wk = imin(rp->window_k, nk);
    else if (rp->window)
        s.wk = imin(rp->window, nk);
    else
        s.wk = (nk + s.C - 1) / s.C;
    return s;
}

/* s[t] = X[t] . mu for t < n. */
static void bf_sims(const double *X, int64_t n, int64_t d, const float *mu, double *s) {
    for (int64_t t = 0; t < n; t++) {
        double a = 0.0;
        for (int64_t k = 0; k < d; k++) a += X[t * d + k] * (double)mu[k];
        s[t] = a;
    }
}

typedef struct sidx {
    double s;
    int64_t i;
} sidx;

static int cmp_sidx(const void *x, const void *y) { /* similarity descending, then index ascending */
    const sidx *a = (const sidx *)x, *b = (const sidx *)y;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* The w largest of s[0..n) (ties: lower index), by a full sort; sel[0..w) ascending. */
static void bf_topw(const double *s, int64_t n, int64_t w, int32_t *sel) {
    sidx *a = (sidx *)malloc(sizeof(sidx) * (size_t)(n + 1));
    for (int64_t t = 0; t < n; t++) a[t].s = s[t], a[t].i = t;
    qsort(a, (size_t)n, sizeof *a, cmp_sidx);
    for (int64_t t = 0; t < w; t++) sel[t] = (int32_t)a[t].i;
    qsort(sel, (size_t)w, sizeof *sel, cmp_i32);
    free(a);
}

/* A plan list (len entries) must hold w strictly increasing indices in [0, n) forming a top-w set of s up to tol
 * (min over the list >= max over the others - tol). Returns 1 if so; *diff += entries not in the brute list. */
static int check_list(const int32_t *list, int64_t len, int64_t w, int64_t n, const double *s, double tol,
                      int64_t *diff, const char *tag) {
    if (len != w) {
        CHECK(0, "%s: %lld members, expected %lld", tag, (long long)len, (long long)w);
        return 0;
    }
    uint8_t *in = (uint8_t *)calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int64_t x = 0; x < len && ok; x++) {
        if (list[x] < 0 || list[x] >= n || (x > 0 && list[x] <= list[x - 1])) {
            CHECK(0, "%s: member %lld = %d: not strictly increasing in [0, %lld)", tag, (long long)x, list[x],
                  (long long)n);
            ok = 0;
            break;
        }
        in[list[x]] = 1;
    }
    if (ok) {
        double mn = INFINITY, mx = -INFINITY;
        for (int64_t t = 0; t < n; t++) {
            if (in[t])
                mn = fmin(mn, s[t]);
            else
                mx = fmax(mx, s[t]);
        }
        if (!(mn >= mx - tol)) {
            CHECK(0, "%s: a member has similarity %.9g below a non-member's %.9g (tol %.3g)", tag, mn, mx, tol);
            ok = 0;
        }
        int32_t *bf = (int32_t *)malloc(sizeof(int32_t) * (size_t)(w + 1));
        bf_topw(s, n, w, bf);
        for (int64_t x = 0; x < w; x++) *diff += !in[bf[x]];
        free(bf);
    }
    free(in);
    return ok;
}

/* ---- routing attention in double ------------------------------------------------------------- */

/* Query head h of sequence b, clusters r0 .. r0 + C - 1 of the lists (CSR): each row of a cluster attends to
 * the cluster's keys (j <= pos(i) when causal) with its own softmax; O (nq x dv) = the mean over the row's
 * clusters (a cluster without visible key adds 0), L = log sum_c e^lse_c (-inf for rows in no cluster). oc
 * (may be NULL): oc[(c * nq + i) * dv + .] = the row's output in cluster c (0 when not a member). */
static void bf_attend(const problem *p, int64_t b, int64_t h, const int64_t *qoff, const int32_t *qrows,
                      const int64_t *coff, const int32_t *cols, int64_t r0, int64_t C, double *O, double *L,
                      double *oc) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, dv = p->dv,
            G = p->d.num_heads_q / p->d.num_heads_kv;
    double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d),
           *V = head_rows(&p->v, b, h / G, nk, dv);
    double scale = 1.0 / sqrt((double)d), *sc = (double *)malloc(sizeof(double) * (size_t)(nk + 1));
    int *cnt = (int *)calloc((size_t)nq + 1, sizeof(int));
    for (int64_t x = 0; x < nq * dv; x++) O[x] = 0.0;
    for (int64_t i = 0; i < nq; i++) L[i] = -INFINITY;
    if (oc)
        for (int64_t x = 0; x < C * nq * dv; x++) oc[x] = 0.0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t e = qoff[r0 + c]; e < qoff[r0 + c + 1]; e++) {
            int64_t i = qrows[e];
            cnt[i]++;
            double mx = -INFINITY;
            for (int64_t x = coff[r0 + c]; x < coff[r0 + c + 1]; x++) {
                int64_t j = cols[x];
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) s += Q[i * d + k] * K[j * d + k];
                sc[x - coff[r0 + c]] = (p->d.causal && j > pos_of(p, i)) ? -INFINITY : scale * s;
                mx = fmax(mx, sc[x - coff[r0 + c]]);
            }
            if (mx == -INFINITY) continue;
            double den = 0.0;
            for (int64_t x = coff[r0 + c]; x < coff[r0 + c + 1]; x++) den += exp(sc[x - coff[r0 + c]] - mx);
            for (int64_t v = 0; v < dv; v++) {
                double a = 0.0;
                for (int64_t x = coff[r0 + c]; x < coff[r0 + c + 1]; x++)
                    a += exp(sc[x - coff[r0 + c]] - mx) * V[cols[x] * dv + v];
                O[i * dv + v] += a / den;
                if (oc) oc[(c * nq + i) * dv + v] = a / den;
            }
            double l = mx + log(den), m = fmax(l, L[i]);
            L[i] = m + log(exp(L[i] - m) + exp(l - m));
        }
    for (int64_t i = 0; i < nq; i++)
        for (int64_t v = 0; v < dv; v++) O[i * dv + v] = cnt[i] ? O[i * dv + v] / cnt[i] : 0.0;
    free(Q), free(K), free(V), free(sc), free(cnt);
}

/* bf_attend for every (b, h) with the plan's own lists: O [B][Hq][nq][dv], L [B][Hq][nq]. */
static void bf_attend_plan(const problem *p, const ak_sparse *sp, double *O, double *L) {
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    int64_t nq = p->d.seqlen_q, Hq = p->d.num_heads_q;
    for (int64_t b = 0; b < p->d.batch; b++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t row0 = (b * Hq + h) * nq;
            bf_attend(p, b, h, sd.qrow_off, sd.qrows, sd.col_off, sd.col_idx, (b * Hq + h) * sd.n_qblocks, sd.n_qblocks,
                      O + row0 * p->dv, L + row0, NULL);
        }
}

/* ---- running the plan ------------------------------------------------------------------------ */

/* Executor outputs (poisoned first) vs reference O [B][Hq][nq][dv] and L [B][Hq][nq] (doubles). */
static int check_outputs(const problem *p, const double *ro, const double *rl, const char *tag) {
    const ak_attn_desc *d = &p->d;
    int64_t B = d->batch, Hq = d->num_heads_q, nq = d->seqlen_q, dv = p->dv;
    double omax = 0.0, lmax = 0.0, eo = 0.0;
    for (int64_t x = 0; x < B * Hq * nq * dv; x++) omax = fmax(omax, fabs(ro[x]));
    for (int64_t x = 0; x < B * Hq * nq; x++)
        if (isfinite(rl[x])) lmax = fmax(lmax, fabs(rl[x]));
    double tol_o = 5e-5 * fmax(1.0, omax), tol_l = 5e-5 * fmax(1.0, lmax);
    int ok = 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < nq; i++) {
                int64_t row = (b * Hq + h) * nq + i;
                double l = ten_get3(&p->lse.t, b, h, i);
                if (isinf(rl[row]) != isinf(l) || (!isinf(l) && !(fabs(l - rl[row]) <= tol_l))) {
                    if (ok)
                        CHECK(0, "%s: LSE (b%lld h%lld i%lld) = %g, reference %g", tag, (long long)b, (long long)h,
                              (long long)i, l, rl[row]);
                    ok = 0;
                }
                for (int64_t c = 0; c < dv; c++) {
                    double o = ten_get4(&p->o.t, b, h, i, c), e = fabs(o - ro[row * dv + c]);
                    if (!(e <= tol_o)) {
                        if (ok)
                            CHECK(0, "%s: O (b%lld h%lld i%lld c%lld) = %g, reference %g", tag, (long long)b,
                                  (long long)h, (long long)i, (long long)c, o, ro[row * dv + c]);
                        ok = 0;
                    }
                    eo = fmax(eo, isnan(e) ? INFINITY : e);
                }
            }
    CHECK(tbuf_outside_untouched(&p->o) && tbuf_outside_untouched(&p->lse), "%s: memory around the outputs written",
          tag);
    if (g_verbose) printf("%s: max err O %.3g (tol %.3g)\n", tag, eo, tol_o);
    return ok;
}

/* Run the executor on sp with NaN-poisoned outputs. */
static int run_exec(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    tbuf_poison(&p->o);
    tbuf_poison(&p->lse);
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &p->d, sp, &pl);
    CHECK(st == AK_OK, "%s: ak_plan_create_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    if (!pl) return 0;
    ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
    st = ak_attention_run(pl, &t, NULL, 0);
    CHECK(st == AK_OK, "%s: ak_attention_run: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    ak_plan_destroy(pl);
    return st == AK_OK;
}

/* Executor vs the double computation of this file on the plan's lists. */
static int exec_vs_bf(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    int64_t rows = (int64_t)p->d.batch * p->d.num_heads_q * p->d.seqlen_q;
    double *O = (double *)malloc(sizeof(double) * (size_t)(rows * p->dv + 1)),
           *L = (double *)malloc(sizeof(double) * (size_t)(rows + 1));
    bf_attend_plan(p, sp, O, L);
    int ok = run_exec(ctx, p, sp, tag) && check_outputs(p, O, L, tag);
    free(O), free(L);
    return ok;
}

/* The element mask of every (b, h) equals the causal (or full) mask. */
static void expect_full_mask(const ak_sparse *sp, const problem *p, const char *tag) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k;
    uint8_t *m = (uint8_t *)malloc((size_t)(nq * nk) + 1);
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < p->d.num_heads_q; h++) {
            CHECK_STATUS(ak_sparse_mask(sp, b, h, m), AK_OK);
            int64_t bad = -1;
            for (int64_t x = 0; x < nq * nk && bad < 0; x++)
                if (m[x] != (!p->d.causal || x % nk <= pos_of(p, x / nk))) bad = x;
            CHECK(bad < 0, "%s: b%d h%d: mask at row %lld key %lld is not the %s mask", tag, b, h,
                  (long long)(bad / (nk ? nk : 1)), (long long)(bad % (nk ? nk : 1)), p->d.causal ? "causal" : "full");
        }
    free(m);
}

/* The executor output against the dense reference (harness accuracy rule), outputs poisoned first. */
static void expect_dense_output(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    naive_out ref, n32;
    ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
    naive_alloc(&ref, &p->d, &t), naive_alloc(&n32, &p->d, &t);
    naive_attention32(&p->d, &t, &n32);
    CHECK_STATUS(run_ref64(ctx, p, &ref, &n32), AK_OK);
    if (run_exec(ctx, p, sp, tag)) {
        char msg[512];
        int ok = check_rule(p, &p->o, &p->lse, &ref, &n32, msg, sizeof msg);
        CHECK(ok, "%s: routing output vs dense reference: %s", tag, msg);
    }
    naive_free(&ref), naive_free(&n32);
}

/* ---- dense: C = 1, w = N ----------------------------------------------------------------------- */

static void group_dense(ak_ctx *ctx) {
    static const int shapes[][7] = {/* B, Hq, Hkv, nq, nk, d, causal */
                                    {1, 1, 1, 1, 1, 8, 1},      {1, 3, 1, 17, 17, 16, 1},  {2, 4, 4, 113, 113, 32, 1},
                                    {1, 4, 2, 300, 300, 24, 1}, {1, 2, 1, 50, 113, 16, 1}, {1, 3, 3, 70, 40, 8, 1},
                                    {2, 2, 1, 61, 61, 12, 0},   {1, 2, 2, 30, 77, 9, 0},   {1, 2, 1, 5, 0, 8, 1},
                                    {1, 1, 1, 0, 6, 8, 1}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    rng r = rng_seed(11);
    for (int c = 0; c < ns; c++) {
        const int *S = shapes[c];
        if (g_quick && S[3] > 200) continue;
        problem p;
        if (make_problem(&p, S[0], S[1], S[2], S[3], S[4], S[5], c % 2 ? AK_BF16 : AK_F32, S[6], &r)) {
            CHECK(0, "problem_create");
            continue;
        }
        float *cent = (float *)malloc(sizeof(float) * (size_t)(S[2] * S[5]));
        for (int x = 0; x < S[2] * S[5]; x++) cent[x] = (float)rng_range(&r, -1, 1);
        for (int k = 0; k < 5; k++) {
            ak_routing_params rp;
            ak_routing_params_init(&rp);
            rp.n_clusters = 1;
            const char *what = "auto window, fitted";
            if (k == 1) rp.window = 1 << 20, rp.norm = AK_ROUTING_NORM_LAYER, what = "window > N (clamped), layernorm";
            if (k == 2) rp.centroids = cent, rp.window = S[3], rp.window_k = S[4], what = "given centroids, w = N";
            if (k == 3) {
                if (S[3] != S[4]) continue;
                rp.share_qk = 1, what = "share_qk";
            }
            if (k == 4) rp.init = AK_ROUTING_INIT_EVEN, rp.iters = 0, what = "even init, 0 iterations";
            char tag[200];
            snprintf(tag, sizeof tag, "dense %s B%d Hq%d Hkv%d nq%d nk%d causal%d", what, S[0], S[1], S[2], S[3], S[4],
                     S[6]);
            ak_dyn_info info;
            ak_sparse *sp = plan_of(ctx, &p, &rp, &info, tag);
            if (!sp) continue;
            expect_full_mask(sp, &p, tag);
            if (k < 3) expect_dense_output(ctx, &p, sp, tag);
            CHECK(info.n_dense_heads == S[1], "%s: n_dense_heads = %d", tag, info.n_dense_heads);
            CHECK(info.density > 0.999 || S[3] * S[4] == 0 || (S[6] && S[3] > S[4]), "%s: density %g", tag,
                  info.density);
            ak_sparse_destroy(sp);
        }
        free(cent);
        problem_destroy(&p);
    }
}

/* ---- planted clusters ------------------------------------------------------------------------ */

#define PL_AMP 10.6 /* planted same-cluster logits a^2 / sqrt(64) = 14 */

/* m clusters of N/m tokens (a random permutation): q and k of a token = PL_AMP * e_{cluster} + noise 0.1,
 * same cluster ids for every head. lab[t] = the cluster of token t. */
static void plant_clusters(problem *p, int m, int *lab, rng *r) {
    int64_t N = p->d.seqlen_q, d = p->d.head_dim;
    int *perm = (int *)malloc(sizeof(int) * (size_t)N);
    for (int64_t t = 0; t < N; t++) perm[t] = (int)t;
    for (int64_t t = N - 1; t > 0; t--) {
        int u = rng_int(r, (int)t + 1), x = perm[t];
        perm[t] = perm[u], perm[u] = x;
    }
    for (int64_t t = 0; t < N; t++) lab[perm[t]] = (int)(t * m / N);
    free(perm);
    for (int b = 0; b < p->d.batch; b++) {
        for (int h = 0; h < p->d.num_heads_q; h++)
            for (int64_t t = 0; t < N; t++)
                for (int64_t c = 0; c < d; c++)
                    ten_set4(&p->q.t, b, h, t, c, 0.1 * rng_range(r, -1, 1) + (c == lab[t] ? PL_AMP : 0.0));
        for (int h = 0; h < p->d.num_heads_kv; h++)
            for (int64_t t = 0; t < N; t++)
                for (int64_t c = 0; c < d; c++)
                    ten_set4(&p->k.t, b, h, t, c, 0.1 * rng_range(r, -1, 1) + (c == lab[t] ? PL_AMP : 0.0));
    }
}

/* 1 if every list of the plan (rows, and cols) is exactly one planted cluster, each cluster once per head. */
static int clusters_recovered(const ak_sparse *sp, const problem *p, const int *lab, int m, const char *tag) {
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    int ok = 1;
    for (int64_t bh = 0; bh < (int64_t)sd.n_batch * sd.n_heads; bh++)
        for (int side = 0; side < 2; side++) {
            int *used = (int *)calloc((size_t)m, sizeof(int));
            for (int64_t c = 0; c < sd.n_qblocks; c++) {
                int64_t r = bh * sd.n_qblocks + c;
                const int64_t *off = side ? sd.col_off : sd.qrow_off;
                const int32_t *v = side ? sd.col_idx : sd.qrows;
                int64_t n = off[r + 1] - off[r];
                int l0 = n ? lab[v[off[r]]] : -1, same = n == p->d.seqlen_q / m;
                for (int64_t x = off[r]; x < off[r + 1]; x++) same &= lab[v[x]] == l0;
                if (same && !used[l0])
                    used[l0] = 1;
                else
                    ok = 0;
            }
            free(used);
        }
    CHECK(ok, "%s: the cluster lists are not the planted clusters", tag);
    return ok;
}

/* Min (and mean) attention-mass recall over every row: dense causal softmax in double, plan mask. */
static double min_recall(const ak_sparse *sp, const problem *p, double *mean) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, G = p->d.num_heads_q / p->d.num_heads_kv, n = 0;
    double mn = 1.0, tot = 0.0, *P = (double *)malloc(sizeof(double) * (size_t)(nk + 1));
    uint8_t *m = (uint8_t *)malloc((size_t)(nq * nk) + 1);
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < p->d.num_heads_q; h++) {
            double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d);
            ak_sparse_mask(sp, b, h, m);
            for (int64_t i = 0; i < nq; i++) {
                double mx = -INFINITY, sum = 0.0, rc = 0.0;
                for (int64_t j = 0; j <= pos_of(p, i) && j < nk; j++) {
                    double s = 0.0;
                    for (int64_t c = 0; c < d; c++) s += Q[i * d + c] * K[j * d + c];
                    P[j] = s / sqrt((double)d);
                    mx = fmax(mx, P[j]);
                }
                if (mx == -INFINITY) continue;
                for (int64_t j = 0; j <= pos_of(p, i) && j < nk; j++) sum += exp(P[j] - mx);
                for (int64_t j = 0; j <= pos_of(p, i) && j < nk; j++) rc += m[i * nk + j] ? exp(P[j] - mx) / sum : 0.0;
                mn = fmin(mn, rc), tot += rc, n++;
            }
            free(Q), free(K);
        }
    free(P), free(m);
    if (mean) *mean = n ? tot / (double)n : 1.0;
    return mn;
}

static void group_planted(ak_ctx *ctx) {
    int N = g_quick ? 512 : 1024, m = 8;
    int *lab = (int *)malloc(sizeof(int) * (size_t)N);
    rng r = rng_seed(21);
    for (int cs = 0; cs < 3; cs++) {
        problem p;
        int Hq = cs == 2 ? 4 : 2, Hkv = cs == 2 ? 2 : 2;
        if (make_problem(&p, 1, Hq, Hkv, N, N, 64, AK_F32, 1, &r) != 0) {
            CHECK(0, "problem_create");
            continue;
        }
        plant_clusters(&p, m, lab, &r);
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = m;
        rp.norm = cs == 1 ? AK_ROUTING_NORM_LAYER : AK_ROUTING_NORM_L2;
        char tag[128];
        snprintf(tag, sizeof tag, "planted (%s, Hq %d Hkv %d, N %d)", rp.norm ? "layernorm" : "l2", Hq, Hkv, N);
        ak_dyn_info info;
        ak_sparse *sp = plan_of(ctx, &p, &rp, &info, tag);
        if (sp) {
            clusters_recovered(sp, &p, lab, m, tag);
            double mean, mn = min_recall(sp, &p, &mean);
            printf("%s: recall min %.5f mean %.5f, density %.3f\n", tag, mn, mean, info.density);
            if (g_verbose) printf("%s", info.explain);
            CHECK(mn >= 0.99, "%s: min recall %.5f < 0.99", tag, mn);
            CHECK(info.density < 0.3, "%s: density %.3f: the plan is not sparse", tag, info.density);
            ak_sparse_destroy(sp);
        }
        /* control: half the window per cluster cannot hold a planted cluster */
        rp.n_clusters = 2 * m;
        sp = plan_of(ctx, &p, &rp, NULL, "planted control");
        if (sp) {
            double mn = min_recall(sp, &p, NULL);
            CHECK(mn < 0.9, "%s control (C = %d): min recall %.5f", tag, 2 * m, mn);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
    free(lab);
}

/* ---- brute force: membership ------------------------------------------------------------------ */

/* The plan's geometry and lists against the brute-force rule with centroids cent ([Hkv][C][d], or
 * [B][Hkv][C][d] when per_batch). Returns the number of members that differ from the brute-force lists
 * (allowed only at near-ties, which check_list bounds). */
static int64_t check_members(const problem *p, const ak_sparse *sp, const ak_routing_params *rp, const float *cent,
                             int per_batch, const char *tag) {
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    int64_t B = p->d.batch, Hq = p->d.num_heads_q, Hkv = p->d.num_heads_kv, G = Hq / Hkv;
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, diff = 0;
    bsize z = bf_sizes(rp, nq, nk);
    CHECK(sd.n_batch == B && sd.n_heads == Hq && sd.nq == nq && sd.nk == nk, "%s: plan geometry %d x %d, %d x %d", tag,
          sd.n_batch, sd.n_heads, sd.nq, sd.nk);
    CHECK(sd.n_qblocks == z.C && sd.block_q == (z.wq > 0 ? z.wq : 1),
          "%s: n_qblocks %d (expected %lld), block_q %d (wq %lld)", tag, sd.n_qblocks, (long long)z.C, sd.block_q,
          (long long)z.wq);
    CHECK(sd.combine == AK_SPARSE_MEAN && sd.causal == p->d.causal && sd.qrow_off && sd.col_off,
          "%s: combine %d, causal %d, qrow_off %p, col_off %p", tag, sd.combine, sd.causal, (const void *)sd.qrow_off,
          (const void *)sd.col_off);
    if (sd.n_qblocks != z.C || !sd.qrow_off || !sd.col_off) return 0;
    double *s = (double *)malloc(sizeof(double) * (size_t)(nq + nk + 1)),
           xn = rp->norm == AK_ROUTING_NORM_L2 ? 1.0 : sqrt((double)d);
    char t2[512];
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < Hkv; g++) {
            double *K = rp->share_qk ? NULL : norm_rows(&p->k, b, g, nk, d, rp->norm);
            const float *mu0 = cent + ((per_batch ? b * Hkv : 0) + g) * z.C * d;
            for (int64_t gi = 0; gi < G; gi++) {
                int64_t h = g * G + gi;
                double *Q = norm_rows(&p->q, b, h, nq, d, rp->norm);
                for (int64_t c = 0; c < z.C; c++) {
                    int64_t r = (b * Hq + h) * z.C + c;
                    const float *mu = mu0 + c * d;
                    double mn = 0.0;
                    for (int64_t k = 0; k < d; k++) mn += (double)mu[k] * mu[k];
                    double tol = 1e-5 * (1.0 + sqrt(mn) * xn);
                    snprintf(t2, sizeof t2, "%.300s: b%lld h%lld cluster %lld rows", tag, (long long)b, (long long)h,
                             (long long)c);
                    bf_sims(Q, nq, d, mu, s);
                    int64_t nr = sd.qrow_off[r + 1] - sd.qrow_off[r], nc = sd.col_off[r + 1] - sd.col_off[r];
                    check_list(sd.qrows + sd.qrow_off[r], nr, z.wq, nq, s, tol, &diff, t2);
                    snprintf(t2, sizeof t2, "%.300s: b%lld h%lld cluster %lld keys", tag, (long long)b, (long long)h,
                             (long long)c);
                    if (rp->share_qk) {
                        CHECK(nc == nr && memcmp(sd.col_idx + sd.col_off[r], sd.qrows + sd.qrow_off[r],
                                                 sizeof(int32_t) * (size_t)nr) == 0,
                              "%s: share_qk: the keys are not the query members", t2);
                    } else {
                        bf_sims(K, nk, d, mu, s);
                        check_list(sd.col_idx + sd.col_off[r], nc, z.wk, nk, s, tol, &diff, t2);
                    }
                }
                free(Q);
            }
            free(K);
        }
    free(s);
    return diff;
}

/* 1 iff two plans hold the same lists. */
static int same_lists(const ak_sparse *a, const ak_sparse *b) {
    ak_sparse_desc x, y;
    ak_sparse_get_desc(a, &x);
    ak_sparse_get_desc(b, &y);
    if (x.n_batch != y.n_batch || x.n_heads != y.n_heads || x.n_qblocks != y.n_qblocks) return 0;
    int64_t R = (int64_t)x.n_batch * x.n_heads * x.n_qblocks;
    if (memcmp(x.qrow_off, y.qrow_off, sizeof(int64_t) * (size_t)(R + 1)) ||
        memcmp(x.col_off, y.col_off, sizeof(int64_t) * (size_t)(R + 1)))
        return 0;
    return memcmp(x.qrows, y.qrows, sizeof(int32_t) * (size_t)x.qrow_off[R]) == 0 &&
           memcmp(x.col_idx, y.col_idx, sizeof(int32_t) * (size_t)x.col_off[R]) == 0;
}

typedef struct bcase {
    int B, Hq, Hkv, nq, nk, d, causal;
    int C, window, window_k, share, norm, given, init;
    ak_dtype dt;
} bcase;

static void group_brute(ak_ctx *ctx) {
    const int L2 = AK_ROUTING_NORM_L2, LN = AK_ROUTING_NORM_LAYER;
    static bcase cases[] = {
        /* B Hq Hkv nq nk d causal | C window window_k share norm given init dt */
        {1, 1, 1, 1, 1, 8, 1, 0, 0, 0, 0, 0, 0, 0, AK_F32},
        {1, 3, 1, 17, 17, 16, 1, 0, 0, 0, 0, 0, 0, 0, AK_F32},
        {2, 4, 1, 113, 113, 16, 1, 7, 0, 0, 0, 1, 1, 0, AK_BF16},
        {1, 4, 4, 300, 300, 24, 1, 0, 0, 0, 1, 0, 0, 0, AK_F32},
        {1, 3, 3, 1023, 1023, 16, 1, 32, 0, 0, 0, 0, 1, 0, AK_F32},
        {1, 2, 1, 50, 113, 12, 1, 5, 0, 0, 0, 0, 0, 0, AK_F32},
        {1, 2, 2, 70, 40, 8, 1, 0, 9, 0, 0, 1, 0, 1, AK_F32},
        {1, 2, 2, 70, 40, 8, 1, 3, 50, 0, 0, 0, 1, 0, AK_F32},
        {1, 2, 1, 50, 113, 12, 0, 4, 80, 0, 0, 0, 0, 0, AK_F32},
        {1, 2, 1, 40, 40, 8, 0, 50, 0, 0, 0, 0, 0, 0, AK_F32},
        {2, 6, 2, 200, 200, 20, 1, 9, 30, 11, 0, 1, 0, 0, AK_F32},
        {1, 1, 1, 17, 17, 4, 1, 3, 22, 0, 0, 0, 1, 0, AK_F32},
        {1, 4, 1, 113, 113, 32, 0, 0, 0, 0, 0, 0, 0, 1, AK_BF16},
        {1, 3, 1, 301, 301, 40, 1, 11, 0, 0, 1, 1, 0, 0, AK_F32},
    };
    (void)L2, (void)LN;
    int nc = (int)(sizeof cases / sizeof cases[0]);
    rng r = rng_seed(31);
    int64_t diffs = 0, members = 0;
    for (int k = 0; k < nc; k++) {
        const bcase *c = &cases[k];
        if (g_quick && c->nq > 400) continue;
        problem p;
        if (make_problem(&p, c->B, c->Hq, c->Hkv, c->nq, c->nk, c->d, c->dt, c->causal, &r) != 0) {
            CHECK(0, "problem_create");
            continue;
        }
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = c->C, rp.window = c->window, rp.window_k = c->window_k, rp.share_qk = c->share,
        rp.norm = c->norm;
        rp.init = c->init;
        bsize z = bf_sizes(&rp, c->nq, c->nk);
        int per_batch = !c->given;
        size_t ncent = (size_t)(c->B * c->Hkv) * (size_t)z.C * (size_t)c->d;
        float *cent = (float *)malloc(sizeof(float) * (ncent + 1));
        char tag[200];
        snprintf(tag, sizeof tag,
                 "brute case %d (B%d Hq%d Hkv%d nq%d nk%d d%d causal%d C%lld wq%lld wk%lld share%d %s %s %s)", k, c->B,
                 c->Hq, c->Hkv, c->nq, c->nk, c->d, c->causal, (long long)z.C, (long long)z.wq, (long long)z.wk,
                 c->share, c->norm ? "ln" : "l2",
                 c->given  ? "given"
                 : c->init ? "fit-even"
                           : "fit-farthest",
                 tu_dtype_short(c->dt));
        if (c->given) {
            for (size_t x = 0; x < ncent; x++) cent[x] = (float)rng_range(&r, -1, 1);
            rp.centroids = cent;
        } else {
            ak_routing_params fp = rp;
            fp.n_clusters = (int32_t)z.C;
            ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
            ak_status st = ak_routing_fit(ctx, &p.d, &t, &fp, cent);
            CHECK(st == AK_OK, "%s: ak_routing_fit: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        }
        ak_sparse *sp = plan_of(ctx, &p, &rp, NULL, tag);
        if (sp) {
            diffs += check_members(&p, sp, &rp, cent, per_batch, tag);
            members += (int64_t)c->B * c->Hq * z.C * (z.wq + z.wk);
            if (!c->given) { /* the fitted centroids passed back give the same plan */
                ak_routing_params gp = rp;
                gp.centroids = cent, gp.centroids_per_batch = 1, gp.n_clusters = (int32_t)z.C;
                ak_sparse *sp2 = plan_of(ctx, &p, &gp, NULL, tag);
                if (sp2) {
                    CHECK(same_lists(sp, sp2), "%s: fitted centroids passed back give other lists", tag);
                    ak_sparse_destroy(sp2);
                }
            }
            ak_sparse_destroy(sp);
        }
        free(cent);
        problem_destroy(&p);
    }
    printf("brute: %lld of %lld members differ from the double top-w (near-ties)\n", (long long)diffs,
           (long long)members);
    CHECK(diffs * 1000 <= members, "brute: %lld near-tie differences of %lld members: too many", (long long)diffs,
          (long long)members);
}

/* ---- scatter-mean ----------------------------------------------------------------------------- */

/* CSR lists of one head from per-cluster member arrays (w each). */
static void csr_of(const int32_t *mem, int64_t C, int64_t w, int64_t *off) {
    (void)mem;
    for (int64_t c = 0; c <= C; c++) off[c] = c * w;
}

/* Brute-force members (double) of query head h / KV head h / G of sequence b with centroids cent [Hkv][C][d]. */
static void bf_members(const problem *p, const ak_routing_params *rp, const float *cent, int64_t b, int64_t h,
                       int32_t *mq, int32_t *mk) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, g = h / (p->d.num_heads_q / p->d.num_heads_kv);
    bsize z = bf_sizes(rp, nq, nk);
    double *Q = norm_rows(&p->q, b, h, nq, d, rp->norm), *K = norm_rows(&p->k, b, g, nk, d, rp->norm);
    double *s = (double *)malloc(sizeof(double) * (size_t)(nq + nk + 1));
    for (int64_t c = 0; c < z.C; c++) {
        const float *mu = cent + (g * z.C + c) * d;
        bf_sims(Q, nq, d, mu, s);
        bf_topw(s, nq, z.wq, mq + c * z.wq);
        if (rp->share_qk)
            memcpy(mk + c * z.wk, mq + c * z.wq, sizeof(int32_t) * (size_t)z.wq);
        else
            bf_sims(K, nk, d, mu, s), bf_topw(s, nk, z.wk, mk + c * z.wk);
    }
    free(Q), free(K), free(s);
}

/* Set row / key t of head (0, 0) to amp * (a e0 + b e1) + noise 0.05 on dims >= 2. */
static void set_type(const ak_tensor *X, int64_t t, int64_t d, double a, double b, double amp, rng *r) {
    for (int64_t c = 0; c < d; c++)
        ten_set4(X, 0, 0, t, c, c == 0 ? amp * a : c == 1 ? amp * b : 0.05 * rng_range(r, -1, 1));
}

static void group_mean(ak_ctx *ctx) {
    rng r = rng_seed(61);
    /* token types: A (e0) -> cluster 0, B (e1) -> cluster 1, M ((e0 + e1)/sqrt2) -> both, D (-M) -> none */
    static const double ta[4][2] = {{1, 0}, {0, 1}, {0.70710678, 0.70710678}, {-0.70710678, -0.70710678}};
    for (int causal = 0; causal <= 1; causal++) {
        const int N = 12, d = 8, C = 2, w = 6;
        problem p;
        if (make_problem(&p, 1, 1, 1, N, N, d, AK_F32, causal, &r) != 0) continue;
        int qt[12], kt[12];
        for (int t = 0; t < N; t++) qt[t] = kt[t] = t / 3;
        for (int t = N - 1; t > 0; t--) {
            int u = rng_int(&r, t + 1), x = qt[t];
            qt[t] = qt[u], qt[u] = x;
            u = rng_int(&r, t + 1), x = kt[t], kt[t] = kt[u], kt[u] = x;
        }
        for (int t = 0; t < N; t++) {
            set_type(&p.q.t, t, d, ta[qt[t]][0], ta[qt[t]][1], 3.0, &r);
            set_type(&p.k.t, t, d, ta[kt[t]][0], ta[kt[t]][1], 3.0, &r);
        }
        float cent[2 * 8] = {0};
        cent[0] = 1.0f, cent[8 + 1] = 1.0f; /* mu0 = e0, mu1 = e1 */
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = C, rp.window = w, rp.centroids = cent;
        int32_t mq[12], mk[12];
        int64_t off[3];
        bf_members(&p, &rp, cent, 0, 0, mq, mk);
        csr_of(mq, C, w, off);
        int cnt[12] = {0};
        for (int x = 0; x < C * w; x++) cnt[mq[x]]++;
        for (int t = 0; t < N; t++)
            CHECK(cnt[t] == (qt[t] == 2   ? 2
                             : qt[t] == 3 ? 0
                                          : 1),
                  "mean: construction: row %d (type %d) in %d clusters", t, qt[t], cnt[t]);
        char tag[64];
        snprintf(tag, sizeof tag, "mean (causal %d)", causal);
        ak_sparse *sp = plan_of(ctx, &p, &rp, NULL, tag);
        if (!sp) {
            problem_destroy(&p);
            continue;
        }
        ak_sparse_desc sd;
        ak_sparse_get_desc(sp, &sd);
        CHECK(memcmp(sd.qrows, mq, sizeof mq) == 0 && memcmp(sd.col_idx, mk, sizeof mk) == 0,
              "%s: lists differ from the brute force", tag);
        double O[12 * 8], L[12], oc[2 * 12 * 8];
        bf_attend(&p, 0, 0, off, mq, off, mk, 0, C, O, L, oc);
        if (run_exec(ctx, &p, sp, tag)) {
            check_outputs(&p, O, L, tag);
            for (int t = 0; t < N; t++)
                for (int c = 0; c < d; c++) {
                    double o = ten_get4(&p.o.t, 0, 0, t, c), e;
                    if (qt[t] == 2)
                        e = 0.5 * (oc[(0 * N + t) * d + c] + oc[(1 * N + t) * d + c]);
                    else if (qt[t] == 3)
                        e = 0.0;
                    else
                        e = oc[((qt[t] == 1) * N + t) * d + c];
                    CHECK(fabs(o - e) <= 1e-5 * (1.0 + fabs(e)) && (qt[t] != 3 || o == 0.0),
                          "%s: row %d (type %d) c%d: O = %g, expected %g", tag, t, qt[t], c, o, e);
                }
            for (int t = 0; t < N; t++)
                if (qt[t] == 3)
                    CHECK(isinf(ten_get3(&p.lse.t, 0, 0, t)) && ten_get3(&p.lse.t, 0, 0, t) < 0,
                          "%s: row %d in no cluster: LSE %g", tag, t, ten_get3(&p.lse.t, 0, 0, t));
        }
        ak_sparse_destroy(sp);
        problem_destroy(&p);
    }
    /* random overlapping clusters: the executor vs the double computation on the plan's lists */
    for (int k = 0; k < 4; k++) {
        problem p;
        int N = 60 + 13 * k;
        if (make_problem(&p, 1 + (k == 3), 2, 1 + (k % 2), N, N, 16, k == 2 ? AK_BF16 : AK_F32, k != 1, &r) != 0)
            continue;
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = 5, rp.window = N / 3, rp.share_qk = k == 3;
        char tag[64];
        snprintf(tag, sizeof tag, "mean random %d (N %d)", k, N);
        ak_sparse *sp = plan_of(ctx, &p, &rp, NULL, tag);
        if (sp) {
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            int *cnt = (int *)calloc((size_t)N, sizeof(int)), none = 0, multi = 0;
            for (int64_t x = 0; x < sd.qrow_off[sd.n_qblocks]; x++) cnt[sd.qrows[x]]++;
            for (int t = 0; t < N; t++) none += cnt[t] == 0, multi += cnt[t] > 1;
            if (g_verbose) printf("%s: head 0: %d rows in no cluster, %d in several\n", tag, none, multi);
            CHECK(multi > 0, "%s: no row in several clusters (5 x %d slots for %d rows)", tag, N / 3, N);
            free(cnt);
            exec_vs_bf(ctx, &p, sp, tag);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
}

/* ---- position causality ----------------------------------------------------------------------- */

/* Position-causal mask of one head from CSR lists (r0 .. r0 + C - 1): m[i * nk + j]. */
static void pos_mask(const problem *p, const int64_t *qoff, const int32_t *qrows, const int64_t *coff,
                     const int32_t *cols, int64_t r0, int64_t C, uint8_t *m) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k;
    memset(m, 0, (size_t)(nq * nk));
    for (int64_t c = 0; c < C; c++)
        for (int64_t e = qoff[r0 + c]; e < qoff[r0 + c + 1]; e++)
            for (int64_t x = coff[r0 + c]; x < coff[r0 + c + 1]; x++) {
                int64_t i = qrows[e], j = cols[x];
                if (!p->d.causal || j <= pos_of(p, i)) m[i * nk + j] = 1;
            }
}

static void group_causal(ak_ctx *ctx) {
    rng r = rng_seed(71);
    {
        /* cluster 0: queries {4,5,6,7}, keys {0,1,6,7}; cluster 1: queries {0,1,2,3}, keys {2,3,4,5} */
        const int N = 8, d = 4, C = 2, w = 4;
        problem p;
        if (make_problem(&p, 1, 1, 1, N, N, d, AK_F32, 1, &r) == 0) {
            for (int t = 0; t < N; t++) {
                int qc = t >= 4 ? 0 : 1, kc = (t <= 1 || t >= 6) ? 0 : 1;
                set_type(&p.q.t, t, d, qc == 0, qc == 1, 2.0, &r);
                set_type(&p.k.t, t, d, kc == 0, kc == 1, 2.0, &r);
            }
            float cent[8] = {1, 0, 0, 0, 0, 1, 0, 0};
            ak_routing_params rp;
            ak_routing_params_init(&rp);
            rp.n_clusters = C, rp.window = w, rp.centroids = cent;
            const int32_t mq[8] = {4, 5, 6, 7, 0, 1, 2, 3}, mk[8] = {0, 1, 6, 7, 2, 3, 4, 5};
            int64_t off[3] = {0, 4, 8};
            ak_sparse *sp = plan_of(ctx, &p, &rp, NULL, "causal construction");
            if (sp) {
                ak_sparse_desc sd;
                ak_sparse_get_desc(sp, &sd);
                CHECK(memcmp(sd.qrows, mq, sizeof mq) == 0 && memcmp(sd.col_idx, mk, sizeof mk) == 0,
                      "causal: construction lists");
                uint8_t mp[64], ml[64], mr[64];
                pos_mask(&p, off, mq, off, mk, 0, C, mp);
                memset(mr, 0, sizeof mr); /* the TF rule: query rank a sees key rank b <= a */
                for (int c = 0; c < C; c++)
                    for (int a = 0; a < w; a++)
                        for (int b = 0; b <= a; b++) mr[mq[c * w + a] * N + mk[c * w + b]] = 1;
                CHECK(memcmp(mp, mr, sizeof mp) != 0 && mr[0 * N + 2] && !mp[0 * N + 2] && mp[4 * N + 1] &&
                          !mr[4 * N + 1],
                      "causal: the construction does not separate rank- and position-causality");
                CHECK_STATUS(ak_sparse_mask(sp, 0, 0, ml), AK_OK);
                CHECK(memcmp(ml, mp, sizeof mp) == 0, "causal: the plan's mask is not position-causal");
                double O[8 * 4], L[8];
                bf_attend(&p, 0, 0, off, mq, off, mk, 0, C, O, L, NULL);
                if (run_exec(ctx, &p, sp, "causal construction")) {
                    check_outputs(&p, O, L, "causal construction");
                    for (int t = 0; t <= 1; t++) /* rows 0, 1: every key of their cluster lies in the future */
                        CHECK(ten_get4(&p.o.t, 0, 0, t, 0) == 0.0 && isinf(ten_get3(&p.lse.t, 0, 0, t)),
                              "causal: row %d sees only future keys: O %g, LSE %g", t, ten_get4(&p.o.t, 0, 0, t, 0),
                              ten_get3(&p.lse.t, 0, 0, t));
                }
                ak_sparse_destroy(sp);
            }
            problem_destroy(&p);
        }
    }
    /* random cases: the mask = the position-causal mask of the plan's lists; output vs the double computation */
    static const int shapes[][4] = {{200, 200, 6, 16}, {50, 120, 4, 8}, {90, 60, 5, 8}, {131, 131, 9, 24}};
    for (int k = 0; k < 4; k++) {
        const int *S = shapes[k];
        problem p;
        if (make_problem(&p, 1, 2, 1, S[0], S[1], S[3], AK_F32, 1, &r) != 0) continue;
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = S[2];
        char tag[64];
        snprintf(tag, sizeof tag, "causal random (nq %d nk %d C %d)", S[0], S[1], S[2]);
        ak_sparse *sp = plan_of(ctx, &p, &rp, NULL, tag);
        if (sp) {
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            uint8_t *m1 = (uint8_t *)malloc((size_t)(S[0] * S[1])), *m2 = (uint8_t *)malloc((size_t)(S[0] * S[1]));
            for (int h = 0; h < 2; h++) {
                pos_mask(&p, sd.qrow_off, sd.qrows, sd.col_off, sd.col_idx, (int64_t)h * sd.n_qblocks, sd.n_qblocks,
                         m1);
                CHECK_STATUS(ak_sparse_mask(sp, 0, h, m2), AK_OK);
                CHECK(memcmp(m1, m2, (size_t)(S[0] * S[1])) == 0, "%s: h%d: mask is not the position-causal mask", tag,
                      h);
            }
            free(m1), free(m2);
            exec_vs_bf(ctx, &p, sp, tag);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
}

/* ---- executor vs ak_attention_ref_sparse ------------------------------------------------------- */

static void group_exec(ak_ctx *ctx) {
    static const bcase cases[] = {
        /* B Hq Hkv nq nk d causal | C window window_k share norm given init dt */
        {1, 2, 1, 300, 300, 64, 1, 0, 0, 0, 0, 0, 0, 0, AK_F32},
        {2, 3, 1, 129, 129, 40, 1, 6, 0, 0, 0, 1, 0, 0, AK_BF16},
        {1, 4, 4, 150, 333, 16, 1, 7, 0, 0, 0, 0, 0, 1, AK_F32},
        {1, 2, 2, 90, 60, 7, 1, 4, 30, 0, 0, 0, 0, 0, AK_F32},
        {2, 4, 2, 117, 117, 32, 0, 0, 0, 0, 0, 0, 0, 0, AK_F32},
        {1, 2, 1, 200, 200, 24, 1, 10, 0, 0, 1, 0, 0, 0, AK_BF16},
        {1, 1, 1, 1, 1, 8, 1, 0, 0, 0, 0, 0, 0, 0, AK_F32},
    };
    rng r = rng_seed(81);
    for (int k = 0; k < (int)(sizeof cases / sizeof cases[0]); k++) {
        const bcase *c = &cases[k];
        problem p;
        if (make_problem(&p, c->B, c->Hq, c->Hkv, c->nq, c->nk, c->d, c->dt, c->causal, &r) != 0) continue;
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = c->C, rp.window = c->window, rp.share_qk = c->share, rp.norm = c->norm, rp.init = c->init;
        char tag[128];
        snprintf(tag, sizeof tag, "exec case %d (B%d Hq%d Hkv%d nq%d nk%d causal%d %s)", k, c->B, c->Hq, c->Hkv, c->nq,
                 c->nk, c->causal, tu_dtype_short(c->dt));
        ak_sparse *sp = plan_of(ctx, &p, &rp, NULL, tag);
        if (!sp) {
            problem_destroy(&p);
            continue;
        }
        int64_t rows = (int64_t)c->B * c->Hq * c->nq;
        double *ro = (double *)malloc(sizeof(double) * (size_t)(rows * p.dv + 1)),
               *rl = (double *)malloc(sizeof(double) * (size_t)(rows + 1));
        double *bo = (double *)malloc(sizeof(double) * (size_t)(rows * p.dv + 1)),
               *bl = (double *)malloc(sizeof(double) * (size_t)(rows + 1));
        for (int64_t x = 0; x < rows * p.dv; x++) ro[x] = NAN;
        for (int64_t x = 0; x < rows; x++) rl[x] = NAN;
        ak_attn_desc dr = p.d;
        dr.dtype_o = AK_F64;
        ak_attn_tensors tr = problem_tensors(&p, &p.o, &p.lse);
        tr.o = ak_tensor_4d(ro, AK_F64, c->B, c->Hq, c->nq, p.dv);
        tr.lse = ak_tensor_3d(rl, AK_F64, c->B, c->Hq, c->nq);
        CHECK_STATUS(ak_attention_ref_sparse(ctx, &dr, sp, &tr), AK_OK);
        bf_attend_plan(&p, sp, bo, bl); /* the oracle check of the reference */
        double e = 0.0;
        for (int64_t x = 0; x < rows * p.dv; x++) e = fmax(e, isnan(ro[x]) ? INFINITY : fabs(ro[x] - bo[x]));
        for (int64_t x = 0; x < rows; x++)
            e = fmax(e, isinf(bl[x]) ? (rl[x] == bl[x] ? 0.0 : INFINITY) : fabs(rl[x] - bl[x]));
        CHECK(e <= 1e-6, "%s: ak_attention_ref_sparse vs the double computation here: max err %g", tag, e);
        if (run_exec(ctx, &p, sp, tag)) check_outputs(&p, ro, rl, tag);
        free(ro), free(rl), free(bo), free(bl);
        ak_sparse_destroy(sp);
        problem_destroy(&p);
    }
}

/* ---- k-means ---------------------------------------------------------------------------------- */

/* The k-means of attnkit.h in double on the normalised pool X [P][d]: init (farthest / even), then up to iters
 * Lloyd steps (stop when no assignment changes). Returns the smallest decision margin met (relative for the
 * farthest-point picks, absolute for the assignments), to detect near-ties. */
static double bf_kmeans(const double *X, int64_t P, int64_t d, int64_t C, int init, int iters, int mode, double *mu) {
    double margin = INFINITY;
    if (init == AK_ROUTING_INIT_EVEN) {
        for (int64_t c = 0; c < C; c++) memcpy(mu + c * d, X + (c * P / C) * d, sizeof(double) * (size_t)d);
    } else {
        double *mind = (double *)malloc(sizeof(double) * (size_t)P);
        int64_t pick = 0;
        for (int64_t c = 0; c < C; c++) {
            memcpy(mu + c * d, X + pick * d, sizeof(double) * (size_t)d);
            if (c + 1 == C) break;
            double best = -1.0, second = -1.0;
            for (int64_t t = 0; t < P; t++) {
                double dd = 0.0;
                for (int64_t k = 0; k < d; k++) dd += (X[t * d + k] - mu[c * d + k]) * (X[t * d + k] - mu[c * d + k]);
                mind[t] = c == 0 || dd < mind[t] ? dd : mind[t];
            }
            for (int64_t t = 0; t < P; t++) {
                if (mind[t] > best)
                    second = best, best = mind[t], pick = t;
                else if (mind[t] > second)
                    second = mind[t];
            }
            if (second >= 0.0 && best > 0.0) margin = fmin(margin, (best - second) / best);
        }
        free(mind);
    }
    int64_t *a = (int64_t *)malloc(sizeof(int64_t) * (size_t)(P + 1));
    double *acc = (double *)malloc(sizeof(double) * (size_t)(C * d));
    int64_t *cnt = (int64_t *)malloc(sizeof(int64_t) * (size_t)C);
    for (int64_t t = 0; t < P; t++) a[t] = -1;
    for (int it = 0; it < iters; it++) {
        int64_t changed = 0;
        for (int64_t t = 0; t < P; t++) {
            int64_t bc = 0;
            double bs = -INFINITY, s2 = -INFINITY;
            for (int64_t c = 0; c < C; c++) {
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) s += X[t * d + k] * mu[c * d + k];
                if (s > bs)
                    s2 = bs, bs = s, bc = c;
                else if (s > s2)
                    s2 = s;
            }
            if (C > 1) margin = fmin(margin, bs - s2);
            changed += a[t] != bc;
            a[t] = bc;
        }
        if (!changed) break;
        memset(acc, 0, sizeof(double) * (size_t)(C * d));
        memset(cnt, 0, sizeof(int64_t) * (size_t)C);
        for (int64_t t = 0; t < P; t++) {
            cnt[a[t]]++;
            for (int64_t k = 0; k < d; k++) acc[a[t] * d + k] += X[t * d + k];
        }
        for (int64_t c = 0; c < C; c++) {
            if (!cnt[c]) continue;
            double s = 0.0;
            for (int64_t k = 0; k < d; k++) acc[c * d + k] /= (double)cnt[c], s += acc[c * d + k] * acc[c * d + k];
            for (int64_t k = 0; k < d; k++)
                mu[c * d + k] = mode == AK_ROUTING_NORM_L2 && s > 0.0 ? acc[c * d + k] / sqrt(s) : acc[c * d + k];
        }
    }
    free(a), free(acc), free(cnt);
    return margin;
}

static int near(double x, double y, double tol) { return fabs(x - y) <= tol; }

static void kmeans_hand(ak_ctx *ctx) {
    ak_routing_params rp;
    ak_routing_params_init(&rp);
    /* 1. L2, decay 0.9; head 1 = head 0 with x scaled by 5 (the normalisation removes it).
     *    x^ = (1,0), (0.6,0.8), (0.8,0.6), (0,-1); mu0 = (1,0), mu1 = (0,1)
     *    sims: (1,0) (0.6,0.8) (0.8,0.6) (0,-1) -> clusters 0, 1, 0, 0 (for (0,-1): 0 > -1)
     *    cluster 0: mean (0.6, -0.4/3), |mean| = sqrt(0.36 + 0.16/9) = 0.61464; m0 = (0.97619, -0.21693)
     *      mu0' = 0.9 (1,0) + 0.1 m0 = (0.99761871, -0.02169305)
     *    cluster 1: m1 = (0.6, 0.8): mu1' = 0.9 (0,1) + 0.1 (0.6,0.8) = (0.06, 0.98) */
    {
        float x[2][4][2] = {{{2, 0}, {0.6f, 0.8f}, {0.8f, 0.6f}, {0, -3}}, {{10, 0}, {3, 4}, {4, 3}, {0, -15}}};
        float mu[2][2][2] = {{{1, 0}, {0, 1}}, {{1, 0}, {0, 1}}};
        int32_t a[2][4];
        rp.n_clusters = 2, rp.decay = 0.9f;
        CHECK_STATUS(ak_routing_kmeans_update(ctx, &rp, 2, 4, 2, &x[0][0][0], &mu[0][0][0], &a[0][0]), AK_OK);
        double nm = sqrt(0.36 + 0.16 / 9.0);
        double e0[2] = {0.9 + 0.1 * 0.6 / nm, 0.1 * (-0.4 / 3.0) / nm}, e1[2] = {0.06, 0.98};
        CHECK(near(e0[0], 0.99761871, 1e-8) && near(e0[1], -0.02169305, 1e-8), "kmeans hand 1: the hand values");
        for (int h = 0; h < 2; h++) {
            CHECK(a[h][0] == 0 && a[h][1] == 1 && a[h][2] == 0 && a[h][3] == 0, "kmeans hand 1 h%d: assign %d %d %d %d",
                  h, a[h][0], a[h][1], a[h][2], a[h][3]);
            CHECK(near(mu[h][0][0], e0[0], 1e-6) && near(mu[h][0][1], e0[1], 1e-6) && near(mu[h][1][0], e1[0], 1e-6) &&
                      near(mu[h][1][1], e1[1], 1e-6),
                  "kmeans hand 1 h%d: mu0 (%.8f, %.8f) expected (%.8f, %.8f), mu1 (%.8f, %.8f) expected (0.06, 0.98)",
                  h, mu[h][0][0], mu[h][0][1], e0[0], e0[1], mu[h][1][0], mu[h][1][1]);
        }
    }
    /* 2. LayerNorm, decay 0.5, C = 3 with mu0 = mu1 (a tie: the lower cluster wins, cluster 1 stays empty):
     *    x = (1,2,3) -> s (-1,0,1), s = 1/sqrt(2/3 + 1e-6); (3,2,1) -> s (1,0,-1);
     *    (0,0,6) -> u (-2,-2,4), u = 1/sqrt(8 + 1e-6)
     *    mu0 = mu1 = (-1,0,1), mu2 = (1,0,-1): sims 2s / 2s / -2s, -2s / -2s / 2s, 6u / 6u / -6u -> clusters 0, 2, 0
     *    cluster 0: mean ((-s - 2u)/2, -u, (s + 4u)/2) (no renormalisation): mu0' = 0.5 (-1,0,1) + 0.5 mean
     *    cluster 1: empty, unchanged; cluster 2: mean s (1,0,-1): mu2' = (0.5 + 0.5 s) (1,0,-1) */
    {
        float x[3][3] = {{1, 2, 3}, {3, 2, 1}, {0, 0, 6}}, mu[3][3] = {{-1, 0, 1}, {-1, 0, 1}, {1, 0, -1}};
        int32_t a[3];
        rp.n_clusters = 3, rp.decay = 0.5f, rp.norm = AK_ROUTING_NORM_LAYER;
        CHECK_STATUS(ak_routing_kmeans_update(ctx, &rp, 1, 3, 3, &x[0][0], &mu[0][0], a), AK_OK);
        double s = 1.0 / sqrt(2.0 / 3.0 + 1e-6), u = 1.0 / sqrt(8.0 + 1e-6);
        double e[3][3] = {{-0.5 + 0.25 * (-s - 2 * u), 0.5 * -u, 0.5 + 0.25 * (s + 4 * u)},
                          {-1, 0, 1},
                          {0.5 + 0.5 * s, 0, -0.5 - 0.5 * s}};
        CHECK(a[0] == 0 && a[1] == 2 && a[2] == 0, "kmeans hand 2: assign %d %d %d (expected 0 2 0)", a[0], a[1], a[2]);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 3; k++)
                CHECK(near(mu[c][k], e[c][k], 1e-6), "kmeans hand 2: mu[%d][%d] = %.8f, expected %.8f", c, k, mu[c][k],
                      e[c][k]);
        rp.norm = AK_ROUTING_NORM_L2;
    }
    /* 3. L2, a mean of 0: x^ = (0,1), (0,-1) both tie between mu0 = (1,0) and mu1 = (-1,0) -> cluster 0,
     *    mean 0 (kept 0):
     *    mu0' = 0.9 (1,0) = (0.9, 0); mu1 unchanged */
    {
        float x[2][2] = {{0, 1}, {0, -1}}, mu[2][2] = {{1, 0}, {-1, 0}};
        int32_t a[2];
        rp.n_clusters = 2, rp.decay = 0.9f;
        CHECK_STATUS(ak_routing_kmeans_update(ctx, &rp, 1, 2, 2, &x[0][0], &mu[0][0], a), AK_OK);
        CHECK(a[0] == 0 && a[1] == 0 && near(mu[0][0], 0.9, 1e-7) && mu[0][1] == 0.0f && mu[1][0] == -1.0f &&
                  mu[1][1] == 0.0f,
              "kmeans hand 3: assign %d %d, mu0 (%g, %g), mu1 (%g, %g)", a[0], a[1], mu[0][0], mu[0][1], mu[1][0],
              mu[1][1]);
    }
    /* 4. n = 0: nothing changes */
    {
        float mu[2] = {0.25f, -0.5f};
        rp.n_clusters = 1;
        CHECK_STATUS(ak_routing_kmeans_update(ctx, &rp, 1, 0, 2, NULL, mu, NULL), AK_OK);
        CHECK(mu[0] == 0.25f && mu[1] == -0.5f, "kmeans n = 0 changed the centroid");
    }
}

/* EMA steps on well-separated data (4 clusters on the axes of R^16, fresh noisy samples every step): the
 * assignments are the planted labels at every step and the centroids move toward the cluster directions. */
static void kmeans_stable(ak_ctx *ctx) {
    const int C = 4, d = 16, n = 200, steps = 20;
    rng r = rng_seed(91);
    float mu[4 * 16], *x = (float *)malloc(sizeof(float) * n * d);
    int32_t a[200], lab[200];
    double d0 = 0.0, d1 = 0.0;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < d; k++)
            mu[c * d + k] = (float)((k == c) + 0.3 * rng_range(&r, -1, 1)), d0 += pow(mu[c * d + k] - (k == c), 2);
    ak_routing_params rp;
    ak_routing_params_init(&rp);
    rp.n_clusters = C, rp.decay = 0.9f;
    int stable = 1;
    for (int s = 0; s < steps; s++) {
        for (int t = 0; t < n; t++) {
            lab[t] = rng_int(&r, C);
            for (int k = 0; k < d; k++) x[t * d + k] = (float)(5.0 * (k == lab[t]) + 0.5 * rng_range(&r, -1, 1));
        }
        CHECK_STATUS(ak_routing_kmeans_update(ctx, &rp, 1, n, d, x, mu, a), AK_OK);
        for (int t = 0; t < n; t++) stable &= a[t] == lab[t];
    }
    for (int c = 0; c < C; c++)
        for (int k = 0; k < d; k++) d1 += pow(mu[c * d + k] - (k == c), 2);
    CHECK(stable, "kmeans: assignments left the planted labels on well-separated data");
    CHECK(sqrt(d1) < 0.3 * sqrt(d0), "kmeans: centroids did not approach the clusters (distance %.4f -> %.4f)",
          sqrt(d0), sqrt(d1));
    free(x);
}

/* ak_routing_fit vs the double k-means of this file. */
static void kmeans_fit(ak_ctx *ctx) {
    rng r = rng_seed(93);
    const int nq = 60, d = 12, C = 5;
    problem p;
    if (make_problem(&p, 2, 2, 1, nq, nq, d, AK_F32, 1, &r) != 0) return;
    int skipped = 0, ran = 0;
    for (int cs = 0; cs < 24; cs++) {
        int init = cs % 2, iters = (int[]){0, 1, 3}[cs / 2 % 3], mode = cs / 6 % 2, share = cs / 12;
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        rp.n_clusters = C, rp.init = init, rp.iters = iters, rp.norm = mode, rp.share_qk = share;
        float *cent = (float *)malloc(sizeof(float) * 2 * C * d);
        ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
        CHECK_STATUS(ak_routing_fit(ctx, &p.d, &t, &rp, cent), AK_OK);
        for (int b = 0; b < 2; b++) {
            int64_t P = 2 * nq + (share ? 0 : nq);
            double *X = (double *)malloc(sizeof(double) * (size_t)(P * d)), mu[5 * 12];
            for (int h = 0; h < 2 + !share; h++) {
                double *R = norm_rows(h < 2 ? &p.q : &p.k, b, h < 2 ? h : 0, nq, d, mode);
                memcpy(X + (int64_t)h * nq * d, R, sizeof(double) * (size_t)(nq * d));
                free(R);
            }
            double margin = bf_kmeans(X, P, d, C, init, iters, mode, mu);
            free(X);
            if (margin < 1e-5) {
                skipped++;
                continue;
            }
            ran++;
            double e = 0.0;
            for (int x = 0; x < C * d; x++) e = fmax(e, fabs(mu[x] - cent[(int64_t)b * C * d + x]));
            CHECK(e <= 1e-4,
                  "kmeans fit (init %d, iters %d, %s, share %d, b%d): centroids differ from the double k-means by %g",
                  init, iters, mode ? "ln" : "l2", share, b, e);
        }
        free(cent);
    }
    printf("kmeans fit: %d cases vs the double k-means, %d skipped at near-ties\n", ran, skipped);
    CHECK(skipped * 4 <= ran, "kmeans fit: too many near-ties (%d of %d)", skipped, ran + skipped);
    problem_destroy(&p);
}

/* Farthest-point ties go to the first vector of the pool: pool (L2) = q0 (1,0), q1 (0,1), k0 (0,-1), k1 (1,0);
 * after mu0 = q0 the distances are 0, 2, 2, 0 (exact in f32): mu1 = q1 = (0,1), not k0. */
static void kmeans_tie(ak_ctx *ctx) {
    rng r = rng_seed(95);
    problem p;
    if (make_problem(&p, 1, 1, 1, 2, 2, 2, AK_F32, 1, &r) != 0) return;
    static const double qv[2][2] = {{1, 0}, {0, 1}}, kv[2][2] = {{0, -1}, {1, 0}};
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < 2; c++) ten_set4(&p.q.t, 0, 0, t, c, qv[t][c]), ten_set4(&p.k.t, 0, 0, t, c, kv[t][c]);
    ak_routing_params rp;
    ak_routing_params_init(&rp);
    rp.n_clusters = 2, rp.iters = 0;
    float cent[4];
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    CHECK_STATUS(ak_routing_fit(ctx, &p.d, &t, &rp, cent), AK_OK);
    CHECK(cent[0] == 1.0f && cent[1] == 0.0f && cent[2] == 0.0f && cent[3] == 1.0f,
          "kmeans farthest tie: mu0 (%g, %g), mu1 (%g, %g); "
          "expected (1, 0), (0, 1)",
          cent[0], cent[1], cent[2], cent[3]);
    problem_destroy(&p);
}

static void group_kmeans(ak_ctx *ctx) {
    kmeans_hand(ctx);
    kmeans_tie(ctx);
    kmeans_stable(ctx);
    kmeans_fit(ctx);
}

/* ---- threads ---------------------------------------------------------------------------------- */

static void group_threads(ak_ctx *ctx) {
    rng r = rng_seed(101);
    int N = g_quick ? 300 : 700;
    problem p;
    if (make_problem(&p, 2, 4, 2, N, N, 32, AK_F32, 1, &r) != 0) return;
    float *cent = (float *)malloc(sizeof(float) * 2 * 9 * 32);
    for (int x = 0; x < 2 * 9 * 32; x++) cent[x] = (float)rng_range(&r, -1, 1);
    for (int cs = 0; cs < 3; cs++) {
        ak_routing_params rp;
        ak_routing_params_init(&rp);
        if (cs == 1) rp.n_clusters = 9, rp.centroids = cent, rp.norm = AK_ROUTING_NORM_LAYER;
        if (cs == 2) rp.share_qk = 1, rp.init = AK_ROUTING_INIT_EVEN, rp.window = 50;
        char *first = NULL, ex1[sizeof(((ak_dyn_info *)0)->explain)];
        for (int nt = 1; nt <= 3; nt++) {
            ak_ctx_set_num_threads(ctx, nt);
            ak_dyn_info info;
            ak_sparse *sp = plan_of(ctx, &p, &rp, &info, "threads");
            if (!sp) continue;
            char *js = NULL;
            size_t len = 0;
            CHECK_STATUS(ak_sparse_to_json(ctx, sp, &js, &len), AK_OK);
            if (nt == 1) {
                first = js;
                memcpy(ex1, info.explain, sizeof ex1);
            } else {
                CHECK(js && first && strcmp(js, first) == 0,
                      "threads: case %d: the plan on %d threads differs from 1 thread", cs, nt);
                CHECK(strcmp(info.explain, ex1) == 0, "threads: case %d: explain differs on %d threads", cs, nt);
                ak_free(ctx, js);
            }
            CHECK(info.size == sizeof info && info.est_seconds >= 0.0 && info.density > 0.0 && info.density <= 1.0 &&
                      info.explain[0],
                  "threads: info size %zu, est %g s, density %g", info.size, info.est_seconds, info.density);
            if (g_verbose && nt == 1) printf("%s", info.explain);
            ak_sparse_destroy(sp);
        }
        ak_free(ctx, first);
    }
    ak_ctx_set_num_threads(ctx, 2);
    free(cent);
    problem_destroy(&p);
}

/* ---- invalid arguments ------------------------------------------------------------------------ */

#define EXPECT_FAIL(call, want, needle)                                                                            \
    do {                                                                                                           \
        out = (ak_sparse *)&sentinel;                                                                              \
        ak_status st_ = (call);                                                                                    \
        CHECK(st_ == (want), "%s returned %s, expected %s", #call, ak_status_string(st_), ak_status_string(want)); \
        CHECK(out == NULL, "%s: *out not cleared", #call);                                                         \
        if (st_ == AK_OK && out && out != (ak_sparse *)&sentinel)                                                  \
            ak_sparse_destroy(out);                                                                                \
        else if ((needle)[0])                                                                                      \
            CHECK(strstr(ak_ctx_last_error(ctx), (needle)) != NULL, "%s: message \"%s\" does not name %s", #call,  \
                  ak_ctx_last_error(ctx), (needle));                                                               \
    } while (0)

/* ak_routing_kmeans_update must fail with `want`, name `needle` and leave the centroids alone. */
static void expect_update_fail(ak_ctx *ctx, const ak_routing_params *rp, int nh, int n, int dim, const float *x,
                               float *mu, int nmu, ak_status want, const char *needle) {
    float *copy = (float *)malloc(sizeof(float) * (size_t)(nmu + 1));
    if (mu) memcpy(copy, mu, sizeof(float) * (size_t)nmu);
    ak_status st = ak_routing_kmeans_update(ctx, rp, nh, n, dim, x, mu, NULL);
    CHECK(st == want, "kmeans_update (%s): %s, expected %s", needle, ak_status_string(st), ak_status_string(want));
    CHECK(strstr(ak_ctx_last_error(ctx), needle) != NULL, "kmeans_update: message \"%s\" does not name %s",
          ak_ctx_last_error(ctx), needle);
    if (mu)
        CHECK(memcmp(copy, mu, sizeof(float) * (size_t)nmu) == 0, "kmeans_update (%s): centroids written on failure",
              needle);
    free(copy);
}

static void group_invalid(ak_ctx *ctx) {
    ak_sparse *out;
    int sentinel = 0;
    const ak_status INV = AK_ERR_INVALID_ARGUMENT;
    ak_routing_params d0;
    ak_routing_params_init(&d0);
    CHECK(d0.n_clusters == 0 && d0.window == 0 && d0.window_k == 0 && d0.share_qk == 0 &&
              d0.norm == AK_ROUTING_NORM_L2 && d0.centroids == NULL && d0.centroids_per_batch == 0 && d0.iters == 10 &&
              d0.init == AK_ROUTING_INIT_FARTHEST && d0.decay == 0.999f,
          "defaults");
    ak_routing_params_init(NULL);
    rng r = rng_seed(111);
    problem p, p2;
    if (make_problem(&p, 1, 2, 1, 70, 70, 8, AK_F32, 1, &r) != 0) return;
    if (make_problem(&p2, 1, 2, 1, 30, 70, 8, AK_F32, 1, &r) != 0) {
        problem_destroy(&p);
        return;
    }
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse), t2 = problem_tensors(&p2, &p2.o, &p2.lse);
    ak_attn_desc d = p.d;
    ak_routing_params rp = d0;
    float cent[4 * 8];
    for (int x = 0; x < 32; x++) cent[x] = (float)rng_range(&r, -1, 1);
    /* the valid calls, params NULL = defaults */
    out = NULL;
    CHECK_STATUS(ak_routing_plan(ctx, &d, &t, NULL, &out, NULL), AK_OK);
    ak_sparse_destroy(out);
    /* parameters */
    rp = d0, rp.n_clusters = -1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "n_clusters");
    rp = d0, rp.n_clusters = AK_ROUTING_MAX_CLUSTERS + 1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "n_clusters");
    rp = d0, rp.window = -1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "window");
    rp = d0, rp.window_k = -2;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "window_k");
    rp = d0, rp.share_qk = 2;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "share_qk");
    rp = d0, rp.share_qk = 1, rp.window_k = 5;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "window_k");
    rp = d0, rp.share_qk = 1;
    EXPECT_FAIL(ak_routing_plan(ctx, &p2.d, &t2, &rp, &out, NULL), INV, "share_qk");
    rp = d0, rp.norm = 2;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "norm");
    rp = d0, rp.init = -1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "init");
    rp = d0, rp.iters = -1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "iters");
    rp = d0, rp.iters = 1001;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "iters");
    static const float bad_decay[] = {0.0f, 1.0f, 1.5f, -0.1f, NAN, INFINITY};
    for (int k = 0; k < 6; k++) {
        rp = d0, rp.decay = bad_decay[k];
        EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "decay");
    }
    rp = d0, rp.centroids_per_batch = 2, rp.centroids = cent, rp.n_clusters = 4;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "centroids_per_batch");
    rp = d0, rp.centroids_per_batch = 1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "centroids_per_batch");
    rp = d0, rp.centroids = cent;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "n_clusters");
    rp = d0, rp.centroids = cent, rp.n_clusters = 4;
    out = NULL;
    CHECK_STATUS(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), AK_OK);
    ak_sparse_destroy(out);
    cent[13] = NAN;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "centroids[0][1][5]");
    cent[13] = INFINITY;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "centroids[0][1][5]");
    cent[13] = 0.5f;
    /* the problem */
    rp = d0;
    d = p.d, d.window_left = 10;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "window");
    d = p.d, d.softcap = 5.0f;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "softcap");
    d = p.d, d.has_sinks = 1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "sinks");
    d = p.d, d.has_alibi = 1;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "ALiBi");
    int32_t cu[2] = {0, 70};
    d = p.d, d.cu_seqlens_q = cu, d.cu_seqlens_k = cu;
    EXPECT_FAIL(ak_routing_plan(ctx, &d, &t, &rp, &out, NULL), INV, "ragged");
    d = p.d;
    EXPECT_FAIL(ak_routing_plan(ctx, NULL, &t, &rp, &out, NULL), AK_ERR_NULL_POINTER, "desc");
    EXPECT_FAIL(ak_routing_plan(ctx, &d, NULL, &rp, &out, NULL), AK_ERR_NULL_POINTER, "tensors");
    CHECK_STATUS(ak_routing_plan(NULL, &d, &t, &rp, &out, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_routing_plan(ctx, &d, &t, &rp, NULL, NULL), AK_ERR_NULL_POINTER);
    {
        ak_attn_tensors tb = t;
        tb.k.shape[2] = 69;
        EXPECT_FAIL(ak_routing_plan(ctx, &d, &tb, &rp, &out, NULL), AK_ERR_SHAPE_MISMATCH, "k");
    }
    /* B * Hq * C * w >= 2^31 (a 32768-token problem of head dim 1: nothing large is allocated before the check) */
    {
        problem pb;
        if (make_problem(&pb, 1, 1, 1, 32768, 32768, 1, AK_F32, 1, &r) == 0) {
            ak_attn_tensors tb = problem_tensors(&pb, &pb.o, &pb.lse);
            rp = d0, rp.n_clusters = AK_ROUTING_MAX_CLUSTERS, rp.window = 32768;
            EXPECT_FAIL(ak_routing_plan(ctx, &pb.d, &tb, &rp, &out, NULL), INV, "n_clusters * window");
            problem_destroy(&pb);
        }
    }
    /* ak_routing_fit */
    {
        float *fc = (float *)malloc(sizeof(float) * 4 * 8);
        rp = d0;
        CHECK_STATUS(ak_routing_fit(ctx, &d, &t, &rp, fc), INV);
        CHECK(strstr(ak_ctx_last_error(ctx), "n_clusters") != NULL, "fit n_clusters 0: \"%s\"", ak_ctx_last_error(ctx));
        rp.n_clusters = 4, rp.centroids = cent;
        CHECK_STATUS(ak_routing_fit(ctx, &d, &t, &rp, fc), INV);
        CHECK(strstr(ak_ctx_last_error(ctx), "centroids") != NULL, "fit with centroids: \"%s\"",
              ak_ctx_last_error(ctx));
        rp.centroids = NULL;
        CHECK_STATUS(ak_routing_fit(ctx, &d, &t, &rp, NULL), AK_ERR_NULL_POINTER);
        rp.decay = 2.0f;
        CHECK_STATUS(ak_routing_fit(ctx, &d, &t, &rp, fc), INV);
        rp.decay = d0.decay;
        CHECK_STATUS(ak_routing_fit(ctx, &d, &t, &rp, fc), AK_OK);
        CHECK(first_bad(fc, 32) < 0, "fit: non-finite centroid");
        free(fc);
    }
    /* ak_routing_kmeans_update: nothing written on failure */
    {
        float x[3 * 2] = {1, 0, 0, 1, 1, 1}, mu[2 * 2] = {1, 0, 0, 1};
        rp = d0, rp.n_clusters = 2, rp.decay = 0.5f;
        expect_update_fail(ctx, &d0, 1, 3, 2, x, mu, 4, INV, "n_clusters");
        expect_update_fail(ctx, &rp, 0, 3, 2, x, mu, 4, INV, "n_heads");
        expect_update_fail(ctx, &rp, 1, -1, 2, x, mu, 4, INV, "n = ");
        expect_update_fail(ctx, &rp, 1, 3, 0, x, mu, 4, INV, "dim");
        expect_update_fail(ctx, &rp, 1, 3, AK_MAX_HEAD_DIM + 1, x, mu, 4, INV, "dim");
        for (int k = 0; k < 6; k++) {
            ak_routing_params q = rp;
            q.decay = bad_decay[k];
            expect_update_fail(ctx, &q, 1, 3, 2, x, mu, 4, INV, "decay");
        }
        ak_routing_params q = rp;
        q.norm = 3;
        expect_update_fail(ctx, &q, 1, 3, 2, x, mu, 4, INV, "norm");
        x[3] = NAN;
        expect_update_fail(ctx, &rp, 1, 3, 2, x, mu, 4, INV, "x[0][1][1]");
        x[3] = 1.0f, mu[2] = -INFINITY;
        expect_update_fail(ctx, &rp, 1, 3, 2, x, mu, 4, INV, "centroids[0][1][0]");
        mu[2] = 0.0f;
        expect_update_fail(ctx, &rp, 1, 3, 2, NULL, mu, 4, AK_ERR_NULL_POINTER, "x");
        expect_update_fail(ctx, &rp, 1, 3, 2, x, NULL, 0, AK_ERR_NULL_POINTER, "centroids");
        CHECK_STATUS(ak_routing_kmeans_update(NULL, &rp, 1, 3, 2, x, mu, NULL), AK_ERR_NULL_POINTER);
        CHECK_STATUS(ak_routing_kmeans_update(ctx, &rp, 1, 3, 2, x, mu, NULL), AK_OK);
    }
    problem_destroy(&p);
    problem_destroy(&p2);
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_DYN_ROUTING_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_DYN_ROUTING_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_routing: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    double t0 = tu_now();
    int any = 0;
#define GROUP(name, call)                                        \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) { \
        double tg_ = tu_now();                                   \
        call;                                                    \
        any = 1;                                                 \
        printf("group %s: %.2f s\n", name, tu_now() - tg_);      \
    }
    GROUP("dense", group_dense(ctx))
    GROUP("planted", group_planted(ctx))
    GROUP("brute", group_brute(ctx))
    GROUP("mean", group_mean(ctx))
    GROUP("causal", group_causal(ctx))
    GROUP("exec", group_exec(ctx))
    GROUP("kmeans", group_kmeans(ctx))
    GROUP("threads", group_threads(ctx))
    GROUP("invalid", group_invalid(ctx))
#undef GROUP
    ak_ctx_destroy(ctx);
    if (!any) {
        fprintf(stderr,
                "test_dyn_routing: unknown group '%s' (dense, planted, brute, mean, causal, exec, kmeans, threads, "
                "invalid, all)\n",
                group);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "test_dyn_routing %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
