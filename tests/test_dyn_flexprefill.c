/*
 * test_dyn_flexprefill.c — the FlexPrefill planner (ak_flexprefill_plan, dynamic-sparse.md §2, attnkit.h).
 *
 * Groups (`test_dyn_flexprefill <group>`, no argument = all):
 *   dense    the budget at its maximum is dense causal attention: min_budget >= N (and gamma = 1) gives the
 *            causal mask, and the executor's output equals ak_attention_ref (dense causal) under the accuracy rule;
 *            gamma = 1 alone is dense in PAPER mode (any block) and in REF mode for block >= 128; short inputs
 *            (N <= 2 bs, N <= min_budget, N = 0, 1) are dense with every head reported dense
 *   planted  synthetic Q/K with planted structure (sink + vertical lines, block-aligned slashes, block-local + sink,
 *            query-aware block targets): attention-mass recall of the plan (this file's double dense softmax)
 *            >= 0.99 on average (and >= 0.95 on every row) where the structure is within budget
 *   brute    the whole selection rule re-implemented plainly here in double (sorts, per row / per block) for odd
 *            sizes (N = 1, 17, 113, 300, 515, 1023; blocks 8..128 that do not divide N), GQA ratios 1, 3, 4,
 *            both modes, gqa_interleave, budgets, f32 and bf16: the plan's block sets and the per-head decisions
 *            (kind, nvb, nsb, query-aware count) must be identical; a case whose decision lies within rounding of a
 *            threshold (f32 estimation vs double) is skipped and counted, and most cases must be exact
 *   exec     the executor (ak_plan_create_sparse + ak_attention_run, NaN-poisoned outputs) on FlexPrefill plans vs
 *            ak_attention_ref_sparse (f64, itself checked against this file's masked double reference) under the
 *            accuracy rule of tests/README.md, f32 and bf16, GQA, batch 2
 *   threads  the plan (ak_sparse_to_json) and the decisions identical for 1, 2 and 3 threads
 *   invalid  every invalid parameter / problem returns its status with a message naming it, *out stays NULL
 *   unit     spec §2.7: JS distance (identical -> 0, disjoint -> sqrt(ln 2), symmetric, in range), the decision
 *            flips at tau, vert and slash each sum to 1 and the slash bin t = N-1 is the main diagonal (a planted
 *            offset lights up bin N-1-delta), coverage >= gamma of the representative rows' vertical / slash
 *            distributions on every vertical-slash head in PAPER mode (exact) and for most heads in REF mode
 *            (statistical, bs = 128, minb = 1), the query-aware cut (REF kept mass <= gamma*nb, PAPER >= gamma*nb),
 *            plans well formed (block 0 and the diagonal in every row, nothing above the diagonal, aligned spans)
 *
 * AK_DYN_FLEXPREFILL_QUICK=1 (sanitizer builds) runs fewer cases; AK_DYN_FLEXPREFILL_VERBOSE=1 prints per case.
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

/* ak_dyn_plan_named lives in src/dynamic/named.c, which the per-method development builds (build-flexprefill*)
 * leave out: referenced weakly, and its checks are skipped when it is absent (NULL). */
#if defined(__GNUC__)
#pragma weak ak_dyn_plan_named
#define HAVE_NAMED() (ak_dyn_plan_named != NULL)
#else
#define HAVE_NAMED() 1
#endif

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- a problem with Q/K kept as doubles (the values as stored in the tensors) ---------------------- */

typedef struct fcase {
    problem p;
    int B, Hq, Hkv, N, d;
    double *Q, *K, *V; /* [B][Hq][N][d], [B][Hkv][N][d], [B][Hkv][N][d] */
} fcase;

static int case_make(fcase *c, int B, int Hq, int Hkv, int N, int d, ak_dtype dt, rng *r) {
    memset(c, 0, sizeof *c);
    ak_attn_desc ds;
    ak_attn_desc_init(&ds);
    ds.batch = B, ds.num_heads_q = Hq, ds.num_heads_kv = Hkv, ds.seqlen_q = ds.seqlen_k = N, ds.head_dim = d;
    ds.dtype_q = ds.dtype_kv = dt, ds.dtype_o = AK_F32, ds.causal = 1, ds.return_lse = 1;
    problem_opts po;
    problem_opts_default(&po);
    if (problem_create(&c->p, &ds, 0, 0, &po, r) != 0)
        return -1;
    c->B = B, c->Hq = Hq, c->Hkv = Hkv, c->N = N, c->d = d;
    c->Q = (double *)calloc((size_t)B * Hq * N * d + 1, sizeof(double));
    c->K = (double *)calloc((size_t)B * Hkv * N * d + 1, sizeof(double));
    c->V = (double *)calloc((size_t)B * Hkv * N * d + 1, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int i = 0; i < N; i++)
                for (int k = 0; k < d; k++)
                    c->Q[(((size_t)b * Hq + h) * N + i) * d + k] = ten_get4(&c->p.q.t, b, h, i, k);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hkv; h++)
            for (int i = 0; i < N; i++)
                for (int k = 0; k < d; k++) {
                    c->K[(((size_t)b * Hkv + h) * N + i) * d + k] = ten_get4(&c->p.k.t, b, h, i, k);
                    c->V[(((size_t)b * Hkv + h) * N + i) * d + k] = ten_get4(&c->p.v.t, b, h, i, k);
                }
    return 0;
}

static double *qrow(const fcase *c, int b, int h, int i) { return c->Q + (((size_t)b * c->Hq + h) * c->N + i) * c->d; }
static double *krow(const fcase *c, int b, int h, int i) { return c->K + (((size_t)b * c->Hkv + h) * c->N + i) * c->d; }
static double *vrow(const fcase *c, int b, int h, int i) { return c->V + (((size_t)b * c->Hkv + h) * c->N + i) * c->d; }

/* Write the double Q/K into the tensors and read back what the dtype stores. */
static void case_store(fcase *c) {
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < c->N; i++)
                for (int k = 0; k < c->d; k++) {
                    ten_set4(&c->p.q.t, b, h, i, k, qrow(c, b, h, i)[k]);
                    qrow(c, b, h, i)[k] = ten_get4(&c->p.q.t, b, h, i, k);
                }
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hkv; h++)
            for (int i = 0; i < c->N; i++)
                for (int k = 0; k < c->d; k++) {
                    ten_set4(&c->p.k.t, b, h, i, k, krow(c, b, h, i)[k]);
                    krow(c, b, h, i)[k] = ten_get4(&c->p.k.t, b, h, i, k);
                }
}

static void case_free(fcase *c) {
    problem_destroy(&c->p);
    free(c->Q);
    free(c->K);
    free(c->V);
    memset(c, 0, sizeof *c);
}

static double case_scale(const fcase *c) {
    return isnan(c->p.d.scale) ? 1.0 / sqrt((double)c->d) : (double)c->p.d.scale;
}

static ak_attn_tensors case_tensors(const fcase *c) { return problem_tensors(&c->p, &c->p.o, &c->p.lse); }

static ak_status plan_case(ak_ctx *ctx, const fcase *c, const ak_flexprefill_params *prm, ak_sparse **sp,
                           ak_dyn_info *info) {
    ak_attn_tensors t = case_tensors(c);
    return ak_flexprefill_plan(ctx, &c->p.d, &t, prm, sp, info);
}

/* ---- planted structure -------------------------------------------------------------------------------------------- *
 * Keys: e0 on the "vertical" keys (dimension 0), plus a unit code in dimensions [1, d): a position code g_j
 * (random +-1 / sqrt(d-1)) or a block code w_{j / bs}. A query's planted target gets logit T = scale * q.k; other
 * keys only see the codes' random overlaps (std about T / sqrt(d-1)). */

typedef struct plant {
    int nvert, vert[16]; /* keys with e0 (sinks first); rows with use_vert attend them */
    int use_vert;
    int nslash, slash[4]; /* offsets: row i attends key i - delta (position codes) */
    int local;            /* block codes: rows of block r attend key blocks r and r-1 */
    int qa;               /* block codes: rows of block r attend key block target[r] */
    int target[4096];
} plant;

static void code_vec(rng *r, double *v, int m) {
    for (int k = 0; k < m; k++)
        v[k] = (rng_unif(r) < 0.5 ? -1.0 : 1.0) / sqrt((double)m);
}

/* Fill Q (heads of pl[h]) and K of sequence 0.. for every b. block codes use bs; T = the planted logit. */
static void plant_fill(fcase *c, const plant *pl, int bs, double T, rng *r) {
    const int N = c->N, d = c->d, m = d - 1, nb = (int)cdiv(N, bs);
    double *pos = (double *)malloc(sizeof(double) * (size_t)N * m),
           *blk = (double *)malloc(sizeof(double) * (size_t)nb * m);
    const double a = T / case_scale(c);
    for (int b = 0; b < c->B; b++) {
        for (int j = 0; j < N; j++)
            code_vec(r, pos + (size_t)j * m, m);
        for (int q = 0; q < nb; q++)
            code_vec(r, blk + (size_t)q * m, m);
        for (int kh = 0; kh < c->Hkv; kh++)
            for (int j = 0; j < N; j++) {
                double *k = krow(c, b, kh, j);
                const plant *p0 = &pl[kh * (c->Hq / c->Hkv)];
                int usepos = p0->nslash > 0;
                k[0] = 0.0;
                for (int t = 0; t < p0->nvert; t++)
                    if (p0->vert[t] == j)
                        k[0] = 1.0;
                for (int t = 0; t < m; t++)
                    k[1 + t] = usepos ? pos[(size_t)j * m + t] : blk[(size_t)(j / bs) * m + t];
            }
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < N; i++) {
                const plant *P = &pl[h];
                double *q = qrow(c, b, h, i);
                int rb = i / bs;
                q[0] = P->use_vert ? a : 0.0;
                for (int t = 0; t < m; t++) {
                    double s = 0.0;
                    for (int u = 0; u < P->nslash; u++)
                        if (i - P->slash[u] >= 0)
                            s += pos[(size_t)(i - P->slash[u]) * m + t];
                    if (P->local) {
                        s += blk[(size_t)rb * m + t];
                        if (rb > 0)
                            s += blk[(size_t)(rb - 1) * m + t];
                    }
                    if (P->qa)
                        s += blk[(size_t)P->target[rb] * m + t];
                    q[1 + t] = a * s;
                }
            }
    }
    free(pos);
    free(blk);
    case_store(c);
}

/* ---- the plan at block level ------------------------------------------------------------------------------------ */

/* blk[r * nb + c] = 1 iff query block r of (b, h) lists key block c. Also checks the geometry and that every span
 * is block aligned, below the diagonal and well formed; returns 0 (and CHECK failures) otherwise. */
static int plan_blocks(const ak_sparse *sp, int b, int h, int N, int bs, uint8_t *blk, const char *tag) {
    ak_sparse_desc sd;
    if (ak_sparse_get_desc(sp, &sd) != AK_OK)
        return 0;
    const int nb = (int)cdiv(N, bs);
    int ok = 1;
    ok &= sd.causal == 1 && sd.block_q == bs && sd.nq == N && sd.nk == N && sd.qrow_off == NULL && sd.n_qblocks == nb;
    CHECK(ok, "%s: plan geometry causal %d block_q %d nq %d nk %d gather %d n_qblocks %d (bs %d N %d)", tag, sd.causal,
          sd.block_q, sd.nq, sd.nk, sd.qrow_off != NULL, sd.n_qblocks, bs, N);
    if (!ok)
        return 0;
    memset(blk, 0, (size_t)nb * nb);
    for (int r = 0; r < nb; r++) {
        int64_t L = ((int64_t)b * sd.n_heads + h) * sd.n_qblocks + r;
        if ((sd.col_off && sd.col_off[L + 1] != sd.col_off[L]) ||
            (sd.band_off && sd.band_off[L + 1] != sd.band_off[L])) {
            CHECK(0, "%s: list %lld has cols or bands", tag, (long long)L);
            return 0;
        }
        for (int64_t s = sd.span_off ? sd.span_off[L] : 0; sd.span_off && s < sd.span_off[L + 1]; s++) {
            int lo = sd.span_lo[s], hi = sd.span_hi[s];
            if (lo % bs != 0 || (hi % bs != 0 && hi != N) || lo >= hi || hi > (r + 1) * bs) {
                CHECK(0, "%s: row block %d span [%d, %d) not block aligned below the diagonal (bs %d N %d)", tag, r, lo,
                      hi, bs, N);
                return 0;
            }
            for (int cb = lo / bs; cb < (int)cdiv(hi, bs); cb++)
                blk[(size_t)r * nb + cb] = 1;
        }
    }
    return 1;
}

/* ---- double dense softmax, recall -------------------------------------------------------------------------------- */

/* P[j] = softmax_j(scale q_i . k_j) over j <= i (0 beyond). */
static void dense_row(const fcase *c, int b, int h, int kvh, int i, double *P) {
    const double *q = qrow(c, b, h, i), sc = case_scale(c);
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j <= i; j++) {
        const double *k = krow(c, b, kvh, j);
        double s = 0.0;
        for (int t = 0; t < c->d; t++)
            s += q[t] * k[t];
        P[j] = sc * s;
        mx = P[j] > mx ? P[j] : mx;
    }
    for (int j = 0; j <= i; j++)
        sum += (P[j] = exp(P[j] - mx));
    for (int j = 0; j <= i; j++)
        P[j] /= sum;
    for (int j = i + 1; j < c->N; j++)
        P[j] = 0.0;
}

/* Recall of the plan's (b, h) mask over every other row (and the last one): mean and minimum. */
static void recall(ak_ctx *ctx, const fcase *c, const ak_sparse *sp, int b, int h, double *mean, double *mn) {
    const int N = c->N;
    uint8_t *mask = (uint8_t *)malloc((size_t)N * N + 1);
    double *P = (double *)malloc(sizeof(double) * (size_t)N + 8);
    CHECK_STATUS(ak_sparse_mask(sp, b, h, mask), AK_OK);
    *mean = 0.0, *mn = 1.0;
    int cnt = 0;
    for (int i = 0; i < N; i += (i + 2 < N ? 2 : 1)) {
        dense_row(c, b, h, h / (c->Hq / c->Hkv), i, P);
        double rc = 0.0;
        for (int j = 0; j <= i; j++)
            if (mask[(size_t)i * N + j])
                rc += P[j];
        *mean += rc;
        *mn = rc < *mn ? rc : *mn;
        cnt++;
    }
    *mean /= cnt;
    free(mask);
    free(P);
}

/* ---- brute force: the rule of attnkit.h written plainly, double precision, full sorts -------------------------- */

typedef struct ord {
    double v;
    int i;
} ord;

static int ord_cmp(const void *x, const void *y) {
    const ord *a = (const ord *)x, *b = (const ord *)y;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* x sorted descending (ties: lower index first) with x[forced] (if >= 0) first. */
static ord *bf_order(const double *x, int n, int forced) {
    ord *o = (ord *)malloc(sizeof(ord) * (size_t)(n + 1));
    for (int t = 0; t < n; t++)
        o[t].v = t == forced ? INFINITY : x[t], o[t].i = t;
    qsort(o, (size_t)n, sizeof(ord), ord_cmp);
    return o;
}

/* Walk o with the real values x: inclusive = 0: #{k : cumsum_k <= target}; 1: min k with cumsum_k >= target (n). */
static int bf_cut(const ord *o, int n, const double *x, double target, int inclusive) {
    double s = 0.0;
    int k = 0;
    for (int t = 0; t < n; t++) {
        s += x[o[t].i];
        if (inclusive && s >= target)
            return t + 1;
        if (!inclusive && s <= target)
            k = t + 1;
    }
    return inclusive ? n : k;
}

static double bf_js(const double *p, const double *q, int n) {
    double s = 0.0;
    for (int t = 0; t < n; t++) {
        double m = (p[t] + q[t]) / 2;
        if (p[t] > 0)
            s += 0.5 * p[t] * log(p[t] / m);
        if (q[t] > 0)
            s += 0.5 * q[t] * log(q[t] / m);
    }
    return sqrt(s > 0 ? s : 0);
}

typedef struct bf_res {
    int kind; /* ak_flexprefill_kind */
    double js;
    int nvb, nsb;
    int64_t n_qa;
    uint8_t *blk;                       /* [nb][nb] */
    int fragile;                        /* some decision lies within rounding of its threshold */
    double *vert, *slash, *vblk, *sblk; /* [N], [N], [nb], [nb] */
} bf_res;

static void bf_free(bf_res *r) {
    free(r->blk), free(r->vert), free(r->slash), free(r->vblk), free(r->sblk);
    memset(r, 0, sizeof *r);
}

static int near(double a, double b) { return fabs(a - b) <= 1e-5 * (fabs(a) + fabs(b)) + 1e-9; }

/* Steps 1-3: the distributions of the last L rows and D. */
static void bf_estimate(const fcase *c, int b, int h, int kvh, int bs, bf_res *R) {
    const int N = c->N, d = c->d, nb = (int)cdiv(N, bs), L = bs < N ? bs : N;
    const double sc = case_scale(c);
    double *P = (double *)malloc(sizeof(double) * (size_t)N + 8);
    for (int r = 0; r < L; r++) {
        int i = N - L + r;
        dense_row(c, b, h, kvh, i, P);
        for (int j = 0; j <= i; j++) {
            R->vert[j] += P[j] / L;
            R->slash[N - 1 - (i - j)] += P[j] / L;
        }
    }
    for (int t = 0; t < N; t++) {
        R->vblk[t / bs] += R->vert[t];
        R->sblk[t / bs] += R->slash[t];
    }
    double *kbar = (double *)calloc((size_t)nb * d + 1, sizeof(double)),
           *qbar = (double *)calloc((size_t)d + 1, sizeof(double));
    double *est = (double *)malloc(sizeof(double) * (size_t)nb + 8), mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < N; j++)
        for (int t = 0; t < d; t++)
            kbar[(size_t)(j / bs) * d + t] += krow(c, b, kvh, j)[t] / (j / bs == nb - 1 ? N - (nb - 1) * bs : bs);
    for (int i = N - L; i < N; i++)
        for (int t = 0; t < d; t++)
            qbar[t] += sc * qrow(c, b, h, i)[t] / L;
    for (int cb = 0; cb < nb; cb++) {
        est[cb] = 0.0;
        for (int t = 0; t < d; t++)
            est[cb] += qbar[t] * kbar[(size_t)cb * d + t];
        mx = est[cb] > mx ? est[cb] : mx;
    }
    for (int cb = 0; cb < nb; cb++)
        sum += (est[cb] = exp(est[cb] - mx));
    for (int cb = 0; cb < nb; cb++)
        est[cb] /= sum;
    R->js = bf_js(est, R->vblk, nb);
    free(P), free(kbar), free(qbar), free(est);
}

/* Budget of one distribution: ref token count // 128 + 1, or paper block count; flags fragility. */
static int bf_budget(const double *tok, int N, const double *blkm, int nb, int forced, const ak_flexprefill_params *p,
                     int *frag) {
    const double eps = 2e-5, g = p->gamma;
    if (p->mode == AK_FLEXPREFILL_REF) {
        if (g >= 1.0)
            return N / 128 + 1;
        ord *o = bf_order(tok, N, -1);
        int k = bf_cut(o, N, tok, g, 0), lo = bf_cut(o, N, tok, g - eps, 0), hi = bf_cut(o, N, tok, g + eps, 0);
        free(o);
        *frag |= (lo + 1) / 128 != (hi + 1) / 128;
        return (k + 1) / 128 + 1;
    }
    if (g >= 1.0)
        return nb;
    ord *o = bf_order(blkm, nb, forced);
    int k = bf_cut(o, nb, blkm, g, 1), lo = bf_cut(o, nb, blkm, g - eps, 1), hi = bf_cut(o, nb, blkm, g + eps, 1);
    free(o);
    *frag |= lo != hi;
    return k;
}

/* The best n of x with x[forced] first; fragile if the cut separates two near-equal values. */
static void bf_top(const double *x, int nb, int forced, int n, int *sel, int *frag) {
    ord *o = bf_order(x, nb, forced);
    for (int t = 0; t < n; t++)
        sel[t] = o[t].i;
    if (n > 1 && n < nb && near(o[n - 1].v, o[n].v))
        *frag = 1;
    free(o);
}

/* Step 6: the query-aware entries, marked in blk. */
static void bf_query_aware(const fcase *c, int b, int h, int kvh, int bs, const ak_flexprefill_params *p, bf_res *R) {
    const int N = c->N, d = c->d, nb = (int)cdiv(N, bs);
    const double sc = case_scale(c);
    double *qb = (double *)calloc((size_t)nb * d + 1, sizeof(double)),
           *kb = (double *)calloc((size_t)nb * d + 1, sizeof(double));
    for (int j = 0; j < N; j++) {
        int cnt = j / bs == nb - 1 ? N - (nb - 1) * bs : bs;
        for (int t = 0; t < d; t++) {
            qb[(size_t)(j / bs) * d + t] += qrow(c, b, h, j)[t] / cnt;
            kb[(size_t)(j / bs) * d + t] += krow(c, b, kvh, j)[t] / cnt;
        }
    }
    int64_t n = (int64_t)nb * (nb + 1) / 2, e = 0;
    ord *a = (ord *)malloc(sizeof(ord) * (size_t)n);
    double *row = (double *)malloc(sizeof(double) * (size_t)nb);
    for (int r = 0; r < nb; r++) {
        double mx = -INFINITY, sum = 0.0;
        for (int cb = 0; cb <= r; cb++) {
            row[cb] = 0.0;
            for (int t = 0; t < d; t++)
                row[cb] += sc * qb[(size_t)r * d + t] * kb[(size_t)cb * d + t];
            mx = row[cb] > mx ? row[cb] : mx;
        }
        for (int cb = 0; cb <= r; cb++)
            sum += exp(row[cb] - mx);
        for (int cb = 0; cb <= r; cb++)
            a[e].v = exp(row[cb] - mx) / sum, a[e++].i = r * nb + cb;
    }
    qsort(a, (size_t)n, sizeof(ord), ord_cmp);
    double target = p->gamma * nb, s = 0.0, eps = 2e-5 * nb;
    int64_t k = 0, klo = 0, khi = 0;
    int paper = p->mode == AK_FLEXPREFILL_PAPER;
    if (p->gamma >= 1.0f) {
        k = n;
    } else {
        int64_t cut[3] = {paper ? n : 0, paper ? n : 0, paper ? n : 0};
        double tg[3] = {target, target - eps, target + eps};
        for (int w = 0; w < 3; w++) {
            s = 0.0;
            for (int64_t t = 0; t < n; t++) {
                s += a[t].v;
                if (paper && s >= tg[w]) {
                    cut[w] = t + 1;
                    break;
                }
                if (!paper && s <= tg[w])
                    cut[w] = t + 1;
            }
        }
        k = cut[0], klo = cut[1], khi = cut[2];
        R->fragile |= klo != khi;
        if (k > 0 && k < n && near(a[k - 1].v, a[k].v))
            R->fragile = 1;
    }
    for (int64_t t = 0; t < k; t++)
        R->blk[a[t].i] = 1;
    R->n_qa = k;
    free(qb), free(kb), free(a), free(row);
}

static void bf_head(const fcase *c, int b, int h, int bs, const ak_flexprefill_params *p, bf_res *R) {
    const int N = c->N, nb = (int)cdiv(N, bs), G = c->Hq / c->Hkv;
    const int kvh = p->gqa_interleave ? h % c->Hkv : h / G;
    int minb = (int)cdiv(p->min_budget, bs), maxb = nb;
    minb = minb < 1 ? 1 : minb;
    if (p->max_budget > 0 && cdiv(p->max_budget, bs) < nb)
        maxb = (int)cdiv(p->max_budget, bs);
    memset(R, 0, sizeof *R);
    R->blk = (uint8_t *)calloc((size_t)nb * nb + 1, 1);
    R->vert = (double *)calloc((size_t)N + 1, sizeof(double));
    R->slash = (double *)calloc((size_t)N + 1, sizeof(double));
    R->vblk = (double *)calloc((size_t)nb + 1, sizeof(double));
    R->sblk = (double *)calloc((size_t)nb + 1, sizeof(double));
    if (N <= (2 * bs > minb * bs ? 2 * bs : minb * bs)) {
        R->kind = AK_FLEXPREFILL_DENSE;
        for (int r = 0; r < nb; r++)
            for (int cb = 0; cb <= r; cb++)
                R->blk[(size_t)r * nb + cb] = 1;
        return;
    }
    bf_estimate(c, b, h, kvh, bs, R);
    R->kind = R->js < p->tau ? AK_FLEXPREFILL_QUERY_AWARE : AK_FLEXPREFILL_VERTICAL_SLASH;
    R->fragile |= fabs(R->js - p->tau) < 1e-4;
    int nv = bf_budget(R->vert, N, R->vblk, nb, 0, p, &R->fragile);
    int ns = bf_budget(R->slash, N, R->sblk, nb, nb - 1, p, &R->fragile);
    nv = nv < minb ? minb : nv > maxb ? maxb : nv;
    ns = ns < minb ? minb : ns > maxb ? maxb : ns;
    if (R->kind == AK_FLEXPREFILL_QUERY_AWARE)
        nv = ns = p->mode == AK_FLEXPREFILL_PAPER ? 1 : minb;
    R->nvb = nv, R->nsb = ns;
    int *vs = (int *)malloc(sizeof(int) * (size_t)nb), *ss = (int *)malloc(sizeof(int) * (size_t)nb);
    bf_top(R->vblk, nb, 0, nv, vs, &R->fragile);
    bf_top(R->sblk, nb, nb - 1, ns, ss, &R->fragile);
    for (int r = 0; r < nb; r++) {
        for (int t = 0; t < nv; t++)
            if (vs[t] <= r)
                R->blk[(size_t)r * nb + vs[t]] = 1;
        for (int t = 0; t < ns; t++) {
            int o = nb - 1 - ss[t];
            if (o <= r)
                R->blk[(size_t)r * nb + r - o] = 1;
        }
    }
    free(vs), free(ss);
    if (R->kind == AK_FLEXPREFILL_QUERY_AWARE)
        bf_query_aware(c, b, h, kvh, bs, p, R);
}

/* ---- group dense ------------------------------------------------------------------------------------------------ */

/* Executor output of sp vs ak_attention_ref (dense causal) under the accuracy rule. */
static void exec_vs_dense(ak_ctx *ctx, fcase *c, const ak_sparse *sp, const char *tag) {
    ak_attn_tensors t = case_tensors(c);
    naive_out n32, ref;
    naive_alloc(&n32, &c->p.d, &t), naive_alloc(&ref, &c->p.d, &t);
    naive_attention32(&c->p.d, &t, &n32);
    CHECK_STATUS(run_ref64(ctx, &c->p, &ref, &n32), AK_OK);
    ak_plan *pl = NULL;
    CHECK_STATUS(ak_plan_create_sparse(ctx, &c->p.d, sp, &pl), AK_OK);
    tbuf_poison(&c->p.o), tbuf_poison(&c->p.lse);
    if (pl)
        CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
    char msg[512];
    CHECK(check_rule(&c->p, &c->p.o, &c->p.lse, &ref, &n32, msg, sizeof msg), "%s: %s", tag, msg);
    if (g_verbose)
        printf("%s: %s\n", tag, msg);
    ak_plan_destroy(pl);
    naive_free(&n32), naive_free(&ref);
}

/* Every (b, h) of sp is the causal block triangle. */
static int is_dense_plan(const ak_sparse *sp, const fcase *c, int bs, const char *tag) {
    int nb = (int)cdiv(c->N, bs), ok = 1;
    uint8_t *blk = (uint8_t *)malloc((size_t)nb * nb + 1);
    for (int b = 0; b < c->B && ok; b++)
        for (int h = 0; h < c->Hq && ok; h++) {
            ok &= plan_blocks(sp, b, h, c->N, bs, blk, tag);
            for (int r = 0; r < nb && ok; r++)
                for (int cb = 0; cb <= r; cb++)
                    ok &= blk[(size_t)r * nb + cb];
        }
    free(blk);
    return ok;
}

static void group_dense(ak_ctx *ctx) {
    static const int Ns[] = {300, 515, 1023, 777};
    static const int bss[] = {16, 24, 64, 128};
    rng r = rng_seed(11);
    for (int it = 0; it < (g_quick ? 4 : 8); it++) {
        int N = Ns[it % 4], bs = bss[(it / 2) % 4], G = 1 + (it % 3), d = it % 2 ? 16 : 40;
        ak_dtype dt = it % 3 == 2 ? AK_BF16 : AK_F32;
        fcase c;
        if (case_make(&c, 1 + (it % 4 == 1), G * (1 + (it % 4 == 2)), 1 + (it % 4 == 2), N, d, dt, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        for (int v = 0; v < 3; v++) {
            ak_flexprefill_params p;
            ak_flexprefill_params_init(&p);
            ak_flexprefill_head heads[64];
            p.heads = heads;
            p.block = v == 2 ? 128 : bs;
            p.gamma = 1.0f;
            p.tau = v == 1 ? 0.5f : 0.1f;
            if (v == 0)
                p.min_budget = N + (it % 2) * 100; /* the spec's "min_budget >= N" */
            p.mode = v == 1 ? AK_FLEXPREFILL_PAPER : AK_FLEXPREFILL_REF;
            char tag[160];
            snprintf(tag, sizeof tag, "dense N=%d bs=%d G=%d v=%d %s", N, p.block, G, v, tu_dtype_short(dt));
            ak_sparse *sp = NULL;
            ak_status st = plan_case(ctx, &c, &p, &sp, NULL);
            CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
            if (!sp)
                continue;
            CHECK(is_dense_plan(sp, &c, p.block, tag), "%s: plan is not dense causal", tag);
            for (int x = 0; x < c.B * c.Hq; x++)
                CHECK(v == 0 ? heads[x].kind == AK_FLEXPREFILL_DENSE : heads[x].kind != AK_FLEXPREFILL_DENSE,
                      "%s: head %d kind %d", tag, x, heads[x].kind);
            ak_sparse_stats ss;
            CHECK_STATUS(ak_sparse_get_stats(sp, &ss), AK_OK);
            CHECK(ss.density == 1.0, "%s: density %g", tag, ss.density);
            if (v == 0 && N <= 515) /* the executor once per small case (the double reference is O(N^2)) */
                exec_vs_dense(ctx, &c, sp, tag);
            ak_sparse_destroy(sp);
        }
        case_free(&c);
    }
    /* short inputs: N <= 2 bs, N = 0, 1, and N <= min_budget are dense; decisions say so; info filled */
    static const int shortN[][3] = {{0, 128, 0},   {1, 128, 0},    {17, 8, 0},    {16, 8, 0},
                                    {256, 128, 0}, {257, 64, 300}, {200, 64, 256}};
    for (int s = 0; s < 7; s++) {
        fcase c;
        int N = shortN[s][0];
        if (case_make(&c, 1, 3, 1, N, 8, AK_F32, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        ak_flexprefill_params p;
        ak_flexprefill_params_init(&p);
        ak_flexprefill_head heads[3];
        p.heads = heads;
        p.block = shortN[s][1];
        p.min_budget = shortN[s][2];
        ak_dyn_info info;
        ak_sparse *sp = NULL;
        CHECK_STATUS(plan_case(ctx, &c, &p, &sp, &info), AK_OK);
        int expect_dense = N <= 2 * p.block || N <= (int)cdiv(p.min_budget, p.block) * p.block;
        if (sp) {
            CHECK(!expect_dense || N == 0 || is_dense_plan(sp, &c, p.block, "short"), "short N=%d bs=%d: not dense", N,
                  p.block);
            if (N == 17) /* N = 17 > 2 bs = 16: estimated, not the dense path */
                CHECK(heads[0].kind != AK_FLEXPREFILL_DENSE, "N=17 bs=8 must be estimated");
            for (int h = 0; h < 3 && expect_dense; h++)
                CHECK(heads[h].kind == AK_FLEXPREFILL_DENSE && isnan(heads[h].js), "short N=%d: head %d kind %d", N, h,
                      heads[h].kind);
            CHECK(info.size == sizeof info && (expect_dense ? info.n_dense_heads == 3 : info.n_dense_heads == 0),
                  "short N=%d: info size %zu n_dense %d", N, info.size, info.n_dense_heads);
            CHECK(strstr(info.explain, "b0 h2:") != NULL, "short N=%d: explain '%s'", N, info.explain);
            if (N > 0 && expect_dense)
                exec_vs_dense(ctx, &c, sp, "short");
        }
        ak_sparse_destroy(sp);
        case_free(&c);
    }
}

/* ---- group planted ------------------------------------------------------------------------------------------------
 */

typedef struct pcase {
    const char *name;
    int mode, min_budget;
    float gamma, tau;
} pcase;

static void planted_run(ak_ctx *ctx, fcase *c, const plant *pl, const pcase *pc, int bs, const char *name) {
    ak_flexprefill_params p;
    ak_flexprefill_params_init(&p);
    ak_flexprefill_head heads[8];
    p.heads = heads;
    p.block = bs, p.mode = pc->mode, p.min_budget = pc->min_budget, p.gamma = pc->gamma, p.tau = pc->tau;
    ak_sparse *sp = NULL;
    ak_dyn_info info;
    ak_status st = plan_case(ctx, c, &p, &sp, &info);
    CHECK(st == AK_OK, "%s: %s (%s)", name, ak_status_string(st), ak_ctx_last_error(ctx));
    if (!sp)
        return;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            double mean, mn;
            recall(ctx, c, sp, b, h, &mean, &mn);
            const ak_flexprefill_head *hd = &heads[b * c->Hq + h];
            int want = pl[h].qa ? AK_FLEXPREFILL_QUERY_AWARE : AK_FLEXPREFILL_VERTICAL_SLASH;
            CHECK(mean >= 0.99 && mn >= 0.95,
                  "%s b%d h%d: recall mean %.5f min %.5f (kind %d js %.3f nvb %d nsb %d qa %lld)", name, b, h, mean, mn,
                  hd->kind, hd->js, hd->nvb, hd->nsb, (long long)hd->n_qa);
            CHECK(hd->kind == want, "%s b%d h%d: kind %d, planted %d (js %.4f)", name, b, h, hd->kind, want, hd->js);
            if (g_verbose)
                printf("%s b%d h%d: recall mean %.5f min %.5f kind %d js %.3f nvb %d nsb %d qa %lld blocks %lld "
                       "density %.3f\n",
                       name, b, h, mean, mn, hd->kind, hd->js, hd->nvb, hd->nsb, (long long)hd->n_qa,
                       (long long)hd->n_blocks, info.density);
        }
    CHECK(info.density < 0.7, "%s: density %.3f: the structure should make the plan sparse", name, info.density);
    ak_sparse_stats ss;
    CHECK_STATUS(ak_sparse_get_stats(sp, &ss), AK_OK);
    CHECK(fabs(ss.density - info.density) < 1e-12 && info.est_seconds > 0 && info.size == sizeof info,
          "%s: info density %.9f, plan stats %.9f; est_seconds %g", name, info.density, ss.density, info.est_seconds);
    ak_sparse_destroy(sp);
}

static void group_planted(ak_ctx *ctx) {
    const int N = 2048, bs = 64, nb = N / bs, d = 64;
    const double T = 16.0;
    rng r = rng_seed(23);
    /* per-head structures; K is shared by the two heads of a KV head, so heads of one KV head use one code type */
    for (int kind = 0; kind < 4; kind++) {
        plant pl[2];
        memset(pl, 0, sizeof pl);
        for (int h = 0; h < 2; h++) {
            plant *P = &pl[h];
            P->nvert = 4;
            for (int t = 0; t < 4; t++)
                P->vert[t] = t; /* sinks */
            if (kind == 0) {    /* sink + vertical lines anywhere (position codes unused by the queries) */
                P->use_vert = 1;
                for (int t = 0; t < 6; t++)
                    P->vert[P->nvert++] = 100 + rng_int(&r, N - 200);
                P->nslash = 1, P->slash[0] = N + 5; /* never reached: position codes in K only */
            } else if (kind == 1) {                 /* sink + block-aligned slashes (multiples of bs), per head */
                P->use_vert = 1;
                P->nslash = 2;
                P->slash[0] = bs * (2 + h), P->slash[1] = bs * (7 + 3 * h);
            } else if (kind == 2) { /* block-local (own and previous block) + sink */
                P->use_vert = 1;
                P->local = 1;
            } else { /* query-aware block targets */
                P->qa = 1;
                for (int q = 0; q < nb; q++)
                    P->target[q] = q == nb - 1 ? rng_int(&r, nb - 1) : rng_int(&r, q + 1);
            }
        }
        if (kind == 0) /* both heads of a KV head see the same verticals */
            pl[1] = pl[0];
        fcase c;
        if (case_make(&c, 1, 2, 1, N, d, AK_F32, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        plant_fill(&c, pl, bs, T, &r);
        static const char *const names[] = {"vertical", "slash", "local+sink", "query-aware"};
        char name[96];
        /* within budget: REF needs min_budget for the // 128 rule at bs = 64; PAPER covers by mass */
        pcase ref = {"ref", AK_FLEXPREFILL_REF, 8 * bs, 0.9f, 0.1f};
        pcase paper = {"paper", AK_FLEXPREFILL_PAPER, 0, 0.95f, 0.1f};
        if (kind == 3) /* a peaked query-aware head: tau above its D; the cut needs (almost) every row's block */
            paper.gamma = 0.999f, paper.tau = 0.3f;
        if (kind != 3) {
            snprintf(name, sizeof name, "planted %s ref", names[kind]);
            planted_run(ctx, &c, pl, &ref, bs, name);
        }
        snprintf(name, sizeof name, "planted %s paper", names[kind]);
        planted_run(ctx, &c, pl, &paper, bs, name);
        case_free(&c);
    }
}

/* ---- group brute --------------------------------------------------------------------------------------------------
 */

static void random_params(rng *r, int N, ak_flexprefill_params *p) {
    static const int bss[] = {8, 16, 24, 32, 48, 64, 100, 128};
    static const float gammas[] = {0.5f, 0.8f, 0.9f, 0.9f, 0.95f, 0.99f, 1.0f};
    static const float taus[] = {0.0f, 0.05f, 0.1f, 0.1f, 0.2f, 0.3f, 0.7f};
    ak_flexprefill_params_init(p);
    do
        p->block = bss[rng_int(r, 8)];
    while (N > 2 * p->block ? 0 : rng_chance(r, 0.8));
    p->gamma = gammas[rng_int(r, 7)];
    p->tau = taus[rng_int(r, 7)];
    p->mode = rng_int(r, 2);
    p->gqa_interleave = rng_chance(r, 0.3);
    int u = rng_int(r, 6);
    p->min_budget = u == 0 ? p->block - 1 : u == 1 ? 2 * p->block + 5 : u == 2 ? 300 : 0;
    if (rng_chance(r, 0.3))
        p->max_budget = (int)cdiv(p->min_budget, p->block) * p->block + rng_int(r, 4 * p->block);
    if (p->max_budget > 0 && cdiv(p->max_budget, p->block) < cdiv(p->min_budget > 0 ? p->min_budget : 1, p->block))
        p->max_budget = 0;
}

/* Random Q/K with optional planted sinks / a vertical column / a slash, so that both head kinds occur. */
static void random_data(fcase *c, rng *r) {
    double amp = rng_chance(r, 0.5) ? 0.3 : rng_chance(r, 0.5) ? 1.0 : 2.5;
    int sink = rng_chance(r, 0.5), col = rng_int(r, c->N), delta = rng_int(r, c->N);
    double big = rng_range(r, 1.0, 4.0);
    for (int b = 0; b < c->B; b++) {
        for (int h = 0; h < c->Hkv; h++)
            for (int j = 0; j < c->N; j++)
                for (int t = 0; t < c->d; t++)
                    krow(c, b, h, j)[t] =
                        rng_range(r, -amp, amp) + (t == 0 && ((sink && j < 4) || j == col) ? big : 0.0);
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < c->N; i++)
                for (int t = 0; t < c->d; t++) {
                    double v = rng_range(r, -amp, amp) + (t == 0 && h % 2 ? big : 0.0);
                    if (h % 3 == 2 && i - delta >= 0) /* a slash: q_i follows k_{i - delta} */
                        v += 2.0 * krow(c, b, h / (c->Hq / c->Hkv), i - delta)[t];
                    qrow(c, b, h, i)[t] = v;
                }
    }
    case_store(c);
}

static void group_brute(ak_ctx *ctx) {
    static const int Ns[] = {1, 17, 113, 300, 515, 1023, 300, 113};
    static const int Gs[] = {1, 3, 4};
    static const int ds[] = {3, 8, 16, 40};
    rng r = rng_seed(31);
    int ncase = g_quick ? 40 : 120, exact = 0, fragile = 0, heads_total = 0, kinds[3] = {0, 0, 0};
    for (int it = 0; it < ncase; it++) {
        int N = Ns[rng_int(&r, 8)], G = Gs[rng_int(&r, 3)], Hkv = 1 + rng_int(&r, 2), B = 1 + rng_chance(&r, 0.25);
        int d = ds[rng_int(&r, 4)];
        ak_dtype dt = rng_chance(&r, 0.3) ? AK_BF16 : AK_F32;
        ak_flexprefill_params p;
        random_params(&r, N, &p);
        fcase c;
        if (case_make(&c, B, G * Hkv, Hkv, N, d, dt, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        if (rng_chance(&r, 0.2))
            c.p.d.scale = (float)rng_range(&r, 0.05, 0.6);
        random_data(&c, &r);
        char tag[256];
        snprintf(tag, sizeof tag,
                 "brute #%d N=%d B=%d Hq=%d Hkv=%d d=%d %s bs=%d gamma=%g tau=%g mode=%d inter=%d minb=%d maxb=%d", it,
                 N, B, c.Hq, Hkv, d, tu_dtype_short(dt), p.block, (double)p.gamma, (double)p.tau, p.mode,
                 p.gqa_interleave, p.min_budget, p.max_budget);
        ak_flexprefill_head heads[32];
        p.heads = heads;
        ak_sparse *sp = NULL;
        ak_dyn_info info;
        ak_status st = plan_case(ctx, &c, &p, &sp, &info);
        CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        ak_sparse_stats ss;
        if (sp && ak_sparse_get_stats(sp, &ss) == AK_OK)
            CHECK(fabs(ss.density - info.density) < 1e-12, "%s: info density %.12f, plan stats %.12f", tag,
                  info.density, ss.density);
        const int nb = (int)cdiv(N, p.block);
        uint8_t *blk = (uint8_t *)malloc((size_t)nb * nb + 1);
        for (int b = 0; b < B && sp; b++)
            for (int h = 0; h < c.Hq; h++) {
                bf_res R;
                bf_head(&c, b, h, p.block, &p, &R);
                const ak_flexprefill_head *hd = &heads[b * c.Hq + h];
                heads_total++;
                kinds[R.kind]++;
                if (!plan_blocks(sp, b, h, N, p.block, blk, tag)) {
                    bf_free(&R);
                    continue;
                }
                if (R.fragile) {
                    fragile++;
                    bf_free(&R);
                    continue;
                }
                exact++;
                int diff = 0, first = -1;
                for (int x = 0; x < nb * nb; x++)
                    if (blk[x] != R.blk[x]) {
                        diff++;
                        first = first < 0 ? x : first;
                    }
                CHECK(diff == 0,
                      "%s b%d h%d: %d blocks differ from the brute force (first (%d, %d): plan %d); kind %d/%d js "
                      "%.6f/%.6f",
                      tag, b, h, diff, first / nb, first % nb, first >= 0 ? blk[first] : 0, hd->kind, R.kind, hd->js,
                      R.js);
                CHECK(hd->kind == R.kind, "%s b%d h%d: kind %d, brute %d", tag, b, h, hd->kind, R.kind);
                if (R.kind != AK_FLEXPREFILL_DENSE) {
                    CHECK(fabs(hd->js - R.js) < 1e-4, "%s b%d h%d: js %.7f, brute %.7f", tag, b, h, hd->js, R.js);
                    CHECK(hd->nvb == R.nvb && hd->nsb == R.nsb, "%s b%d h%d: nvb/nsb %d/%d, brute %d/%d", tag, b, h,
                          hd->nvb, hd->nsb, R.nvb, R.nsb);
                }
                if (R.kind == AK_FLEXPREFILL_QUERY_AWARE)
                    CHECK(hd->n_qa == R.n_qa, "%s b%d h%d: %lld query-aware entries, brute %lld", tag, b, h,
                          (long long)hd->n_qa, (long long)R.n_qa);
                int64_t nblk = 0;
                for (int x = 0; x < nb * nb; x++)
                    nblk += blk[x];
                CHECK(hd->n_blocks == nblk, "%s b%d h%d: n_blocks %lld, plan has %lld", tag, b, h,
                      (long long)hd->n_blocks, (long long)nblk);
                bf_free(&R);
            }
        free(blk);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
    if (g_verbose)
        printf("brute: %d heads, %d compared exactly, %d skipped as fragile; kinds dense %d vslash %d qaware %d\n",
               heads_total, exact, fragile, kinds[0], kinds[1], kinds[2]);
    CHECK(exact >= 0.85 * heads_total, "brute: only %d of %d heads compared (%d fragile)", exact, heads_total, fragile);
    CHECK(kinds[0] > 0 && kinds[1] > 10 && kinds[2] > 10, "brute: kinds dense %d vslash %d qaware %d: too few of one",
          kinds[0], kinds[1], kinds[2]);
}

/* ---- group exec ----------------------------------------------------------------------------------------------- */

/* Masked naive attention in float (like naive32.c: S and P rounded to the coarser input dtype) with the plan's
 * element masks masks[(b * Hq + h)][i][j] (plan heads = Hq, n_batch = B). Rows (b*Hq + h)*N + i. */
static void naive_masked32(const fcase *c, const uint8_t *masks, naive_out *out) {
    const int N = c->N, d = c->d, Hq = c->Hq, G = Hq / c->Hkv;
    const ak_dtype cdt = c->p.d.dtype_q == AK_BF16 ? AK_BF16 : AK_F32;
    const float sc = (float)case_scale(c);
    float *s = (float *)malloc(sizeof(float) * (size_t)N + 4), *acc = (float *)malloc(sizeof(float) * (size_t)d);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < Hq; h++)
            for (int i = 0; i < N; i++) {
                int64_t row = ((int64_t)b * Hq + h) * N + i;
                const uint8_t *m = masks + (((size_t)b * Hq + h) * N + i) * N;
                float mx = -INFINITY;
                int n = 0;
                for (int j = 0; j <= i; j++) {
                    s[j] = -INFINITY;
                    if (!m[j])
                        continue;
                    float dot = 0.0f;
                    for (int t = 0; t < d; t++)
                        dot += (float)qrow(c, b, h, i)[t] * (float)krow(c, b, h / G, j)[t];
                    s[j] = (float)tu_round_to(cdt, sc * dot);
                    mx = s[j] > mx ? s[j] : mx;
                    n++;
                }
                out->nvis[row] = n;
                for (int t = 0; t < d; t++)
                    acc[t] = 0.0f;
                out->lse[row] = -INFINITY;
                if (n > 0) {
                    float sum = 0.0f;
                    for (int j = 0; j <= i; j++)
                        if (s[j] != -INFINITY)
                            sum += expf(s[j] - mx);
                    for (int j = 0; j <= i; j++)
                        if (s[j] != -INFINITY) {
                            float pj = (float)tu_round_to(cdt, expf(s[j] - mx) / sum);
                            for (int t = 0; t < d; t++)
                                acc[t] += pj * (float)vrow(c, b, h / G, j)[t];
                        }
                    out->lse[row] = mx + logf(sum);
                }
                for (int t = 0; t < d; t++)
                    out->o[row * d + t] = acc[t];
            }
    free(s), free(acc);
}

/* The same in double (the oracle check of ak_attention_ref_sparse). */
static void naive_masked64(const fcase *c, const uint8_t *masks, naive_out *out) {
    const int N = c->N, d = c->d, Hq = c->Hq, G = Hq / c->Hkv;
    double *lg = (double *)malloc(sizeof(double) * (size_t)N + 8);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < Hq; h++)
            for (int i = 0; i < N; i++) {
                int64_t row = ((int64_t)b * Hq + h) * N + i;
                const uint8_t *m = masks + (((size_t)b * Hq + h) * N + i) * N;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    double s = 0.0;
                    for (int t = 0; t < d; t++)
                        s += qrow(c, b, h, i)[t] * krow(c, b, h / G, j)[t];
                    lg[j] = m[j] ? case_scale(c) * s : -INFINITY;
                    mx = lg[j] > mx ? lg[j] : mx;
                }
                for (int t = 0; t < d; t++)
                    out->o[row * d + t] = 0.0;
                for (int j = 0; j <= i; j++)
                    if (lg[j] != -INFINITY)
                        sum += exp(lg[j] - mx);
                for (int j = 0; j <= i; j++)
                    if (lg[j] != -INFINITY)
                        for (int t = 0; t < d; t++)
                            out->o[row * d + t] += exp(lg[j] - mx) / sum * vrow(c, b, h / G, j)[t];
                out->lse[row] = sum > 0 ? mx + log(sum) : -INFINITY;
            }
    free(lg);
}

static void group_exec(ak_ctx *ctx) {
    rng r = rng_seed(41);
    for (int it = 0; it < (g_quick ? 3 : 6); it++) {
        static const int Ns[] = {300, 515, 433, 611};
        int N = Ns[it % 4], G = 1 + it % 3, B = 1 + (G == 1), d = it % 2 ? 16 : 33;
        ak_dtype dt = it % 2 ? AK_BF16 : AK_F32;
        fcase c;
        if (case_make(&c, B, G, 1, N, d, dt, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        random_data(&c, &r);
        ak_flexprefill_params p;
        ak_flexprefill_params_init(&p);
        p.block = it % 2 ? 32 : 48;
        p.mode = it % 2;
        p.tau = it % 3 == 0 ? 0.3f : 0.1f;
        char tag[160];
        snprintf(tag, sizeof tag, "exec N=%d B=%d G=%d d=%d %s bs=%d mode=%d", N, B, G, d, tu_dtype_short(dt), p.block,
                 p.mode);
        ak_sparse *sp = NULL;
        ak_status st = plan_case(ctx, &c, &p, &sp, NULL);
        CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        if (!sp) {
            case_free(&c);
            continue;
        }
        size_t nn = (size_t)N * N;
        uint8_t *masks = (uint8_t *)malloc(nn * B * G + 1);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < G; h++)
                CHECK_STATUS(ak_sparse_mask(sp, b, h, masks + nn * ((size_t)b * G + h)), AK_OK);
        ak_attn_tensors t = case_tensors(&c);
        naive_out n32, n64, ref;
        naive_alloc(&n32, &c.p.d, &t), naive_alloc(&n64, &c.p.d, &t), naive_alloc(&ref, &c.p.d, &t);
        naive_masked32(&c, masks, &n32);
        naive_masked64(&c, masks, &n64);
        ak_attn_desc dr = c.p.d;
        dr.dtype_o = AK_F64;
        ak_attn_tensors tr = t;
        tr.o = ak_tensor_4d(ref.o, AK_F64, B, G, N, d);
        tr.lse = ak_tensor_3d(ref.lse, AK_F64, B, G, N);
        for (int64_t x = 0; x < ref.n_rows; x++) {
            ref.lse[x] = NAN;
            for (int k = 0; k < d; k++)
                ref.o[x * d + k] = NAN;
        }
        CHECK_STATUS(ak_attention_ref_sparse(ctx, &dr, sp, &tr), AK_OK);
        memcpy(ref.nvis, n32.nvis, sizeof(int32_t) * (size_t)ref.n_rows);
        memcpy(n64.nvis, n32.nvis, sizeof(int32_t) * (size_t)ref.n_rows);
        char msg[512];
        CHECK(check_oracle(&ref, &n64, msg, sizeof msg), "%s: ak_attention_ref_sparse vs masked double: %s", tag, msg);
        ak_plan *pl = NULL;
        CHECK_STATUS(ak_plan_create_sparse(ctx, &c.p.d, sp, &pl), AK_OK);
        tbuf_poison(&c.p.o), tbuf_poison(&c.p.lse);
        if (pl)
            CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
        CHECK(check_rule(&c.p, &c.p.o, &c.p.lse, &ref, &n32, msg, sizeof msg), "%s: %s", tag, msg);
        if (g_verbose)
            printf("%s: %s\n", tag, msg);
        ak_plan_destroy(pl);
        naive_free(&n32), naive_free(&n64), naive_free(&ref);
        free(masks);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
}

static int dbl_cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* ---- group threads -------------------------------------------------------------------------------------------- */

static void group_threads(ak_ctx *ctx) {
    rng r = rng_seed(53);
    fcase c;
    int N = g_quick ? 900 : 1500;
    if (case_make(&c, 2, 6, 2, N, 24, AK_BF16, &r) != 0) {
        CHECK(0, "case_make");
        return;
    }
    random_data(&c, &r);
    /* tau between the heads' JS distances, so that both head kinds occur */
    ak_flexprefill_params p0;
    ak_flexprefill_head h0[12];
    ak_flexprefill_params_init(&p0);
    p0.block = 40, p0.tau = 0.0f, p0.heads = h0;
    ak_sparse *s0 = NULL;
    CHECK_STATUS(plan_case(ctx, &c, &p0, &s0, NULL), AK_OK);
    ak_sparse_destroy(s0);
    double js[12];
    for (int x = 0; x < 12; x++)
        js[x] = h0[x].js;
    qsort(js, 12, sizeof(double), dbl_cmp);
    float tau = (float)(0.5 * (js[5] + js[6]));
    for (int mode = 0; mode < 2; mode++) {
        char *json[3] = {NULL, NULL, NULL};
        ak_flexprefill_head heads[3][12];
        int kinds = 0;
        for (int nt = 1; nt <= 3; nt++) {
            ak_ctx_set_num_threads(ctx, nt);
            ak_flexprefill_params p;
            ak_flexprefill_params_init(&p);
            p.block = 40, p.mode = mode, p.tau = tau;
            p.heads = heads[nt - 1];
            ak_sparse *sp = NULL;
            CHECK_STATUS(plan_case(ctx, &c, &p, &sp, NULL), AK_OK);
            size_t len = 0;
            if (sp)
                CHECK_STATUS(ak_sparse_to_json(ctx, sp, &json[nt - 1], &len), AK_OK);
            ak_sparse_destroy(sp);
        }
        for (int x = 0; x < 12; x++)
            kinds |= 1 << heads[0][x].kind;
        CHECK(kinds == 6, "threads: the case should hold both head kinds (mask %d)", kinds);
        for (int nt = 2; nt <= 3; nt++) {
            CHECK(json[0] && json[nt - 1] && !strcmp(json[0], json[nt - 1]),
                  "threads mode %d: plan JSON differs for 1 and %d threads", mode, nt);
            CHECK(!memcmp(heads[0], heads[nt - 1], sizeof heads[0]),
                  "threads mode %d: decisions differ for 1 and %d threads", mode, nt);
        }
        /* the same plan by name (every key of the params) */
        char spec[256], *jn = NULL;
        if (!HAVE_NAMED()) {
            for (int nt = 0; nt < 3; nt++)
                ak_free(ctx, json[nt]);
            continue;
        }
        snprintf(spec, sizeof spec,
                 "flexprefill:block=40,gamma=0.9,tau=%.9g,min_budget=0,max_budget=0,gqa_interleave=0,mode=%s",
                 (double)tau, mode ? "paper" : "ref");
        ak_attn_tensors t = case_tensors(&c);
        ak_sparse *sn = NULL;
        ak_status st = ak_dyn_plan_named(ctx, spec, &c.p.d, &t, &sn, NULL);
        CHECK(st == AK_OK, "%s: %s (%s)", spec, ak_status_string(st), ak_ctx_last_error(ctx));
        size_t len = 0;
        if (sn)
            CHECK_STATUS(ak_sparse_to_json(ctx, sn, &jn, &len), AK_OK);
        CHECK(jn && json[0] && !strcmp(jn, json[0]), "%s: plan differs from the direct call", spec);
        ak_free(ctx, jn);
        ak_sparse_destroy(sn);
        for (int nt = 0; nt < 3; nt++)
            ak_free(ctx, json[nt]);
    }
    ak_ctx_set_num_threads(ctx, 2);
    case_free(&c);
}

/* ---- group invalid -------------------------------------------------------------------------------------------- */

static void expect_invalid(ak_ctx *ctx, const fcase *c, const ak_attn_desc *d, const ak_flexprefill_params *p,
                           ak_status want, const char *field) {
    ak_attn_tensors t = case_tensors(c);
    ak_sparse *sp = NULL;
    ak_status st = ak_flexprefill_plan(ctx, d, &t, p, &sp, NULL);
    CHECK(st == want, "%s: %s, expected %s (%s)", field, ak_status_string(st), ak_status_string(want),
          ak_ctx_last_error(ctx));
    CHECK(sp == NULL, "%s: *out not NULL", field);
    CHECK(strstr(ak_ctx_last_error(ctx), field) != NULL, "%s: message '%s' does not name it", field,
          ak_ctx_last_error(ctx));
    ak_sparse_destroy(sp);
    double v[8], s[8];
    st = ak_flexprefill_distributions(ctx, d, &t, p, 0, 0, v, s);
    CHECK(st == want, "%s (distributions): %s, expected %s", field, ak_status_string(st), ak_status_string(want));
}

static void group_invalid(ak_ctx *ctx) {
    rng r = rng_seed(61);
    fcase c;
    if (case_make(&c, 1, 2, 1, 8, 4, AK_F32, &r) != 0) {
        CHECK(0, "case_make");
        return;
    }
    ak_flexprefill_params p0, p;
    ak_flexprefill_params_init(&p0);
    const ak_attn_desc *d = &c.p.d;
    static const float bad_gamma[] = {0.0f, -0.1f, 1.01f, NAN, INFINITY};
    for (int x = 0; x < 5; x++)
        p = p0, p.gamma = bad_gamma[x], expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "gamma");
    static const float bad_tau[] = {-0.1f, -INFINITY, NAN};
    for (int x = 0; x < 3; x++)
        p = p0, p.tau = bad_tau[x], expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "tau");
    static const int bad_block[] = {0, -128, 1, 7, 2049, 1 << 20};
    for (int x = 0; x < 6; x++)
        p = p0, p.block = bad_block[x], expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "block");
    p = p0, p.min_budget = -1, expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "min_budget");
    p = p0, p.max_budget = -5, expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "max_budget");
    p = p0, p.min_budget = 1024, p.max_budget = 512,
    expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "max_budget");
    p = p0, p.gqa_interleave = 2, expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "gqa_interleave");
    p = p0, p.mode = 2, expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "mode");
    p = p0, p.mode = -1, expect_invalid(ctx, &c, d, &p, AK_ERR_INVALID_ARGUMENT, "mode");
    /* problems FlexPrefill does not define */
    ak_attn_desc dd = *d;
    dd.causal = 0;
    expect_invalid(ctx, &c, &dd, NULL, AK_ERR_INVALID_ARGUMENT, "causal");
    dd = *d;
    dd.window_left = 4;
    expect_invalid(ctx, &c, &dd, NULL, AK_ERR_INVALID_ARGUMENT, "window");
    /* nq != nk: a problem with 8 query rows and 12 keys */
    {
        fcase c2;
        if (case_make(&c2, 1, 2, 1, 12, 4, AK_F32, &r) == 0) {
            ak_attn_desc d2 = c2.p.d;
            d2.seqlen_q = 8;
            ak_attn_tensors t2 = case_tensors(&c2);
            int64_t sq[4] = {1, 2, 8, 4};
            tbuf q8;
            tbuf_make(&q8, AK_F32, 4, sq, LAY_CONTIG, NULL);
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 8; i++)
                    for (int k = 0; k < 4; k++)
                        ten_set4(&q8.t, 0, h, i, k, 0.5);
            t2.q = q8.t;
            ak_sparse *sp = NULL;
            CHECK_STATUS(ak_flexprefill_plan(ctx, &d2, &t2, NULL, &sp, NULL), AK_ERR_INVALID_ARGUMENT);
            CHECK(sp == NULL && strstr(ak_ctx_last_error(ctx), "seqlen_q == seqlen_k"), "nq != nk: '%s'",
                  ak_ctx_last_error(ctx));
            tbuf_free(&q8);
            case_free(&c2);
        }
    }
    /* too many blocks for the query-aware grid: N = 140000, block 8 (nb = 17500 > 16384), d = 1 */
    {
        fcase c3;
        if (case_make(&c3, 1, 1, 1, 140000, 1, AK_F32, &r) == 0) {
            p = p0, p.block = 8;
            expect_invalid(ctx, &c3, &c3.p.d, &p, AK_ERR_INVALID_ARGUMENT, "block");
            case_free(&c3);
        }
    }
    /* NULL pointers */
    ak_attn_tensors t = case_tensors(&c);
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_flexprefill_plan(NULL, d, &t, NULL, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_flexprefill_plan(ctx, NULL, &t, NULL, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_flexprefill_plan(ctx, d, NULL, NULL, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_flexprefill_plan(ctx, d, &t, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL args: *out set");
    double v[8], s[8];
    CHECK_STATUS(ak_flexprefill_distributions(ctx, d, &t, NULL, 0, 0, NULL, s), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_flexprefill_distributions(ctx, d, &t, NULL, 0, 2, v, s), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_flexprefill_distributions(ctx, d, &t, NULL, 1, 0, v, s), AK_ERR_INVALID_ARGUMENT);
    CHECK(isnan(ak_flexprefill_js(NULL, v, 3)) && isnan(ak_flexprefill_js(v, v, 0)), "js of NULL / n = 0 must be NaN");
    /* by name: unknown key, unparsable value, a value the planner refuses */
    static const char *const bad_spec[] = {"flexprefill:gama=0.9", "flexprefill:mode=fast", "flexprefill:block=12x",
                                           "flexprefill:gamma=1.5"};
    for (int x = 0; x < 4 && HAVE_NAMED(); x++) {
        sp = NULL;
        CHECK_STATUS(ak_dyn_plan_named(ctx, bad_spec[x], d, &t, &sp, NULL), AK_ERR_INVALID_ARGUMENT);
        CHECK(sp == NULL, "%s: *out set", bad_spec[x]);
    }
    if (HAVE_NAMED()) {
        CHECK_STATUS(ak_dyn_plan_named(ctx, "flexprefill:mode=paper,block=8", d, &t, &sp, NULL), AK_OK);
        ak_sparse_destroy(sp);
    } else if (g_verbose) {
        printf("ak_dyn_plan_named absent in this build: by-name checks skipped\n");
    }
    /* the defaults */
    CHECK(p0.block == 128 && p0.gamma == 0.9f && p0.tau == 0.1f && p0.min_budget == 0 && p0.max_budget == 0 &&
              p0.gqa_interleave == 0 && p0.mode == AK_FLEXPREFILL_REF && p0.heads == NULL,
          "params_init defaults");
    case_free(&c);
}

/* ---- group unit ---------------------------------------------------------------------------------------------- */

static void unit_js(void) {
    double p[6] = {0.1, 0.2, 0.3, 0.4, 0.0, 0.0}, q[6] = {0.0, 0.0, 0.0, 0.0, 0.5, 0.5}, u[6], w[6];
    CHECK(ak_flexprefill_js(p, p, 6) == 0.0, "js(p, p) = %g", ak_flexprefill_js(p, p, 6));
    CHECK(fabs(ak_flexprefill_js(p, q, 6) - sqrt(log(2.0))) < 1e-12, "js disjoint = %.15f, want %.15f",
          ak_flexprefill_js(p, q, 6), sqrt(log(2.0)));
    rng r = rng_seed(5);
    for (int it = 0; it < 200; it++) {
        double su = 0, sw = 0;
        for (int t = 0; t < 6; t++)
            su += (u[t] = rng_unif(&r) * (rng_chance(&r, 0.2) ? 0 : 1)), sw += (w[t] = rng_unif(&r));
        if (su == 0)
            continue;
        for (int t = 0; t < 6; t++)
            u[t] /= su, w[t] /= sw;
        double a = ak_flexprefill_js(u, w, 6), b = ak_flexprefill_js(w, u, 6);
        CHECK(fabs(a - b) < 1e-15 && a >= 0 && a <= sqrt(log(2.0)) + 1e-12 && fabs(a - bf_js(u, w, 6)) < 1e-12,
              "js(u, w) = %g / %g / %g", a, b, bf_js(u, w, 6));
    }
}

/* vert and slash sum to 1; a planted offset lights up slash bin N-1-delta; the main diagonal is bin N-1. */
static void unit_distributions(ak_ctx *ctx) {
    rng r = rng_seed(7);
    static const int Ns[] = {1, 5, 17, 300, 1023};
    for (int it = 0; it < 10; it++) {
        int N = Ns[it % 5], bs = it % 2 ? 16 : 128, delta = it < 5 ? 0 : N / 3;
        fcase c;
        if (case_make(&c, 1, 2, 1, N, 32, AK_F32, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        /* only the pair (i, i - delta) has a large logit; rows with i < delta see random small logits */
        plant pl[2];
        memset(pl, 0, sizeof pl);
        pl[0].nslash = pl[1].nslash = 1;
        pl[0].slash[0] = pl[1].slash[0] = delta;
        plant_fill(&c, pl, bs, 20.0, &r);
        ak_flexprefill_params p;
        ak_flexprefill_params_init(&p);
        p.block = bs;
        double *v = (double *)malloc(sizeof(double) * (size_t)N + 8),
               *s = (double *)malloc(sizeof(double) * (size_t)N + 8);
        ak_attn_tensors t = case_tensors(&c);
        CHECK_STATUS(ak_flexprefill_distributions(ctx, &c.p.d, &t, &p, 0, 1, v, s), AK_OK);
        double sv = 0, ssum = 0, vmax = 0;
        int arg = -1;
        for (int j = 0; j < N; j++) {
            sv += v[j], ssum += s[j];
            if (s[j] > vmax)
                vmax = s[j], arg = j;
        }
        CHECK(fabs(sv - 1) < 1e-5 && fabs(ssum - 1) < 1e-5, "distributions N=%d: sums %.8f %.8f", N, sv, ssum);
        int L = bs < N ? bs : N, lit = N - 1 - delta;
        /* rows that reach the planted key carry nearly all their mass on it */
        double expect = (double)(L - (delta > N - L ? delta - (N - L) : 0)) / L;
        CHECK(arg == lit && s[lit] > 0.98 * expect,
              "distributions N=%d delta=%d: slash peak at %d (%.4f), want bin %d (%.4f)", N, delta, arg, vmax, lit,
              expect);
        /* the test's own distributions agree */
        bf_res R;
        memset(&R, 0, sizeof R);
        int nb = (int)cdiv(N, bs);
        R.vert = (double *)calloc((size_t)N + 1, sizeof(double)),
        R.slash = (double *)calloc((size_t)N + 1, sizeof(double));
        R.vblk = (double *)calloc((size_t)nb + 1, sizeof(double)),
        R.sblk = (double *)calloc((size_t)nb + 1, sizeof(double));
        bf_estimate(&c, 0, 1, 0, bs, &R);
        double e = 0;
        for (int j = 0; j < N; j++)
            e = fmax(e, fmax(fabs(R.vert[j] - v[j]), fabs(R.slash[j] - s[j])));
        CHECK(e < 1e-5, "distributions N=%d: differ from the double re-computation by %g", N, e);
        bf_free(&R);
        free(v), free(s);
        case_free(&c);
    }
}

/* The decision flips exactly at tau: tau just above D -> query-aware, tau = D or below -> vertical-slash. */
static void unit_tau_flip(ak_ctx *ctx) {
    rng r = rng_seed(9);
    fcase c;
    if (case_make(&c, 1, 3, 1, 700, 16, AK_F32, &r) != 0) {
        CHECK(0, "case_make");
        return;
    }
    random_data(&c, &r);
    ak_flexprefill_params p;
    ak_flexprefill_params_init(&p);
    ak_flexprefill_head hd[3], h2[3];
    p.block = 64;
    p.heads = hd;
    ak_sparse *sp = NULL;
    CHECK_STATUS(plan_case(ctx, &c, &p, &sp, NULL), AK_OK);
    ak_sparse_destroy(sp);
    for (int h = 0; h < 3; h++) {
        double D = hd[h].js;
        CHECK(D >= 0 && D <= sqrt(log(2.0)) + 1e-9, "head %d: D = %g", h, D);
        float above = nextafterf((float)D, INFINITY), at = (float)D;
        while ((double)at > D)
            at = nextafterf(at, -INFINITY); /* the largest float <= D */
        for (int w = 0; w < 2; w++) {
            p.tau = w ? above : at;
            p.heads = h2;
            sp = NULL;
            CHECK_STATUS(plan_case(ctx, &c, &p, &sp, NULL), AK_OK);
            CHECK(h2[h].kind == (w ? AK_FLEXPREFILL_QUERY_AWARE : AK_FLEXPREFILL_VERTICAL_SLASH) && h2[h].js == D,
                  "head %d: D = %.9g, tau = %.9g: kind %d", h, D, (double)p.tau, h2[h].kind);
            ak_sparse_destroy(sp);
        }
    }
    case_free(&c);
}

/* Blocks d of (b, h) present in every row r >= c: vertical (all (r, c)) and slash (all (r, r - o)) candidates. */
static void derived_sets(const uint8_t *blk, int nb, uint8_t *vset, uint8_t *sset) {
    for (int c = 0; c < nb; c++) {
        vset[c] = sset[c] = 1;
        for (int r = c; r < nb; r++)
            vset[c] &= blk[(size_t)r * nb + c];
        for (int r = c; r < nb; r++)
            sset[c] &= blk[(size_t)r * nb + r - c]; /* c is an offset here */
    }
}

/* Coverage of the representative rows' distributions (spec §2.7 items 6-7) and plan well-formedness. */
static void unit_coverage(ak_ctx *ctx) {
    rng r = rng_seed(13);
    int ncase = g_quick ? 20 : 28, vs_heads[2] = {0, 0}, covered[2] = {0, 0}, qa_heads[2] = {0, 0};
    double excess[2] = {0.0, 0.0}; /* sum over vertical-slash heads of (vertical coverage - gamma) */
    for (int it = 0; it < ncase; it++) {
        int mode = it % 2, bs = mode ? (it % 4 == 1 ? 24 : 64) : 128,
            N = bs * (6 + rng_int(&r, 8)) + (mode ? rng_int(&r, bs) : 0);
        fcase c;
        if (case_make(&c, 1, 4, 2, N, 16, AK_F32, &r) != 0) {
            CHECK(0, "case_make");
            return;
        }
        random_data(&c, &r);
        ak_flexprefill_params p;
        ak_flexprefill_params_init(&p);
        ak_flexprefill_head hd[4];
        p.block = bs, p.mode = mode, p.heads = hd;
        p.gamma = it % 3 == 0 ? 0.95f : 0.9f;
        p.tau = (float)rng_range(&r, 0.0, 0.4);
        ak_sparse *sp = NULL;
        CHECK_STATUS(plan_case(ctx, &c, &p, &sp, NULL), AK_OK);
        const int nb = (int)cdiv(N, bs);
        uint8_t *blk = (uint8_t *)malloc((size_t)nb * nb), vset[256], sset[256];
        for (int h = 0; h < 4 && sp; h++) {
            char tag[96];
            snprintf(tag, sizeof tag, "coverage N=%d bs=%d mode=%d h%d", N, bs, mode, h);
            if (!plan_blocks(sp, 0, h, N, bs, blk, tag))
                continue;
            for (int rb = 0; rb < nb; rb++)
                CHECK(blk[(size_t)rb * nb] && blk[(size_t)rb * nb + rb],
                      "%s: row block %d lacks block 0 or its diagonal", tag, rb);
            bf_res R;
            bf_head(&c, 0, h, bs, &p, &R);
            derived_sets(blk, nb, vset, sset);
            double mv = 0, ms = 0;
            for (int x = 0; x < nb; x++)
                mv += vset[x] ? R.vblk[x] : 0, ms += sset[x] ? R.sblk[nb - 1 - x] : 0;
            if (hd[h].kind == AK_FLEXPREFILL_VERTICAL_SLASH) {
                vs_heads[mode]++;
                if (mode == AK_FLEXPREFILL_PAPER) /* exact: the blocks chosen by mass carry >= gamma */
                    CHECK(mv >= p.gamma - 1e-5 && ms >= p.gamma - 1e-5 && hd[h].v_mass >= p.gamma &&
                              hd[h].s_mass >= p.gamma,
                          "%s: paper coverage vert %.6f slash %.6f (library %.6f %.6f) < gamma %.2f", tag, mv, ms,
                          hd[h].v_mass, hd[h].s_mass, (double)p.gamma);
                covered[mode] += mv >= p.gamma - 1e-5;
                excess[mode] += mv - p.gamma;
                if (g_verbose > 1)
                    printf("%s: VS vert cover %.4f slash cover %.4f gamma %.2f nvb %d nsb %d\n", tag, mv, ms,
                           (double)p.gamma, hd[h].nvb, hd[h].nsb);
                CHECK(fabs(hd[h].v_mass - mv) < 1e-4 || mv > hd[h].v_mass, "%s: library v_mass %.6f vs %.6f", tag,
                      hd[h].v_mass, mv);
            } else if (hd[h].kind == AK_FLEXPREFILL_QUERY_AWARE) {
                qa_heads[mode]++;
                double tg = p.gamma * nb;
                if (mode == AK_FLEXPREFILL_REF)
                    CHECK(hd[h].qa_mass <= tg + 1e-4, "%s: REF kept query-aware mass %.6f > gamma*nb %.4f", tag,
                          hd[h].qa_mass, tg);
                else
                    CHECK(hd[h].qa_mass >= tg - 1e-4 || hd[h].n_qa == (int64_t)nb * (nb + 1) / 2,
                          "%s: PAPER kept query-aware mass %.6f < gamma*nb %.4f", tag, hd[h].qa_mass, tg);
                CHECK(hd[h].qa_mass <= nb + 1e-4 && hd[h].n_qa <= (int64_t)nb * (nb + 1) / 2, "%s: qa mass %.4f n %lld",
                      tag, hd[h].qa_mass, (long long)hd[h].n_qa);
            }
            bf_free(&R);
        }
        free(blk);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
    if (g_verbose)
        printf("coverage: vslash heads ref %d (covered %d) paper %d (covered %d); query-aware ref %d paper %d\n",
               vs_heads[0], covered[0], vs_heads[1], covered[1], qa_heads[0], qa_heads[1]);
    CHECK(vs_heads[0] >= 4 && vs_heads[1] >= 4 && qa_heads[0] >= 2 && qa_heads[1] >= 2,
          "coverage: too few heads of a kind");
    /* REF, bs = 128, aligned N, minb = 1: not guaranteed (the // 128 budget quirk: a head whose covering tokens
     * are spread over many blocks gets too few blocks), but most heads reach gamma and the mean is near it */
    CHECK(covered[0] >= 0.7 * vs_heads[0] && excess[0] / vs_heads[0] >= -0.05,
          "coverage REF: %d of %d vertical-slash heads reach gamma, mean coverage - gamma %.4f", covered[0],
          vs_heads[0], excess[0] / vs_heads[0]);
}

static void group_unit(ak_ctx *ctx) {
    unit_js();
    unit_distributions(ctx);
    unit_tau_flip(ctx);
    unit_coverage(ctx);
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_DYN_FLEXPREFILL_QUICK", 0);
    g_verbose = (int)tu_env_long("AK_DYN_FLEXPREFILL_VERBOSE", 0);
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    static const struct {
        const char *name;
        void (*fn)(ak_ctx *);
    } groups[] = {{"dense", group_dense},     {"planted", group_planted}, {"brute", group_brute}, {"exec", group_exec},
                  {"threads", group_threads}, {"invalid", group_invalid}, {"unit", group_unit}};
    const char *want = argc > 1 ? argv[1] : NULL;
    int ran = 0;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        if (!want || !strcmp(want, groups[g].name)) {
            double t0 = tu_now();
            groups[g].fn(ctx);
            ran++;
            if (g_verbose)
                printf("group %s: %.2f s\n", groups[g].name, tu_now() - t0);
        }
    ak_ctx_destroy(ctx);
    if (!ran) {
        fprintf(stderr, "unknown group '%s'\n", want);
        return 2;
    }
    return tc_finish("dyn_flexprefill");
}
