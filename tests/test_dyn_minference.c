/*
 * test_dyn_minference.c — MInference 1.0 planner (src/dynamic/minference.c, spec dynamic-sparse.md §3).
 *
 * Every selection rule is re-implemented here plainly in double precision (softmax of the last rows,
 * column / diagonal sums, forced sets, argsort by qsort, the [ref] range conversion, block means and
 * block argsort) without library code, and compared with the plan (ak_sparse_get_desc / ak_sparse_mask).
 * Selections may differ from the double re-implementation only at near-ties (f32 estimation): a differing
 * element must lie within a rounding tolerance of the k-th value. Groups (test_dyn_minference <group>):
 *   dense    maximal budgets (v, s >= N; n_local >= N; top-k >= blocks; n_last >= nq; dense kind; decode;
 *            starting_layer) give the causal mask and the dense output (vs ak_attention_ref, accuracy rule)
 *   planted  planted verticals / slashes / key blocks recovered: recall >= 0.99 in both VS modes and block mode
 *   brute    VS (exact and ref) and block-sparse selection vs the brute force; odd lengths, odd blocks, GQA 1/3/4,
 *            nq < nk and nq > nk, dilution switch
 *   exec     executor (NaN-poisoned outputs) vs ak_attention_ref_sparse under the accuracy rule
 *   threads  the same plan (JSON text) for 1, 2 and 3 threads
 *   invalid  every invalid argument: status, *out NULL, the field in the message
 *   spec     spec §3.7: converter properties, A-shape counts, min(100, r+1) blocks, forced sets, Tri-shape
 *   config   ak_minference_load_config on literal configs (valid and malformed), ratio, starting_layer, info,
 *            ak_dyn_plan_named option keys (full builds)
 *   search   ak_minference_search picks the candidate with the best recall (recomputed here) per head on
 *            planted structure; the reference's post-processing; default candidates; invalid arguments
 * AK_MINF_QUICK=1 (sanitizer builds) runs fewer and smaller cases.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

static int g_quick;

/* ---- problems and plans ---------------------------------------------------------------------- */

static int make_problem(problem *p, int B, int Hq, int Hkv, int nq, int nk, int d, ak_dtype dt, rng *r) {
    ak_attn_desc de;
    ak_attn_desc_init(&de);
    de.batch = B, de.num_heads_q = Hq, de.num_heads_kv = Hkv, de.seqlen_q = nq, de.seqlen_k = nk;
    de.head_dim = d, de.head_dim_v = d, de.dtype_q = dt, de.dtype_kv = dt, de.dtype_o = AK_F32;
    de.causal = 1, de.return_lse = 1;
    problem_opts po;
    problem_opts_default(&po);
    return problem_create(p, &de, 0, 0, &po, r);
}

static ak_sparse *plan_of(ak_ctx *ctx, const problem *p, const ak_minference_params *mp, ak_dyn_info *info,
                          const char *tag) {
    ak_sparse *sp = NULL;
    ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
    ak_status st = ak_minference_plan(ctx, &p->d, &t, mp, &sp, info);
    CHECK(st == AK_OK && sp, "%s: ak_minference_plan: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    return st == AK_OK ? sp : NULL;
}

static int64_t pos_of(const problem *p, int64_t i) { return i + p->d.seqlen_k - p->d.seqlen_q; }

/* Rows [0, n) of head h, sequence b of X as doubles [n][d]. */
static double *head_rows(const tbuf *X, int64_t b, int64_t h, int64_t n, int64_t d) {
    double *o = (double *)malloc(sizeof(double) * (size_t)(n * d + 1));
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++) o[i * d + c] = ten_get4(&X->t, b, h, i, c);
    return o;
}

/* Dense causal softmax of row i (double): P[nk] (0 for invisible keys); returns 0 if the row sees nothing. */
static int dense_row(const problem *p, const double *Q, const double *K, int64_t i, double *P) {
    int64_t nk = p->d.seqlen_k, d = p->d.head_dim, ps = pos_of(p, i);
    double scale = 1.0 / sqrt((double)d), mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < nk; j++) {
        P[j] = -INFINITY;
        if (j > ps) continue;
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) s += Q[i * d + c] * K[j * d + c];
        P[j] = scale * s;
        if (P[j] > mx) mx = P[j];
    }
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < nk; j++) P[j] = 0.0;
        return 0;
    }
    for (int64_t j = 0; j < nk; j++) sum += P[j] == -INFINITY ? 0.0 : exp(P[j] - mx);
    for (int64_t j = 0; j < nk; j++) P[j] = P[j] == -INFINITY ? 0.0 : exp(P[j] - mx) / sum;
    return 1;
}

/* Element mask of plan head (b, h): [nq][nk], malloc'd. */
static uint8_t *mask_of(const ak_sparse *sp, const problem *p, int b, int h) {
    size_t n = (size_t)p->d.seqlen_q * (size_t)p->d.seqlen_k;
    uint8_t *m = (uint8_t *)malloc(n + 1);
    ak_status st = ak_sparse_mask(sp, b, h, m);
    CHECK(st == AK_OK, "ak_sparse_mask(%d, %d): %s", b, h, ak_status_string(st));
    return m;
}

/* Every (b, h) mask of sp equals the causal mask. */
static void expect_causal(const ak_sparse *sp, const problem *p, const char *tag) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k;
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < p->d.num_heads_q; h++) {
            uint8_t *m = mask_of(sp, p, b, h);
            int64_t bad = -1;
            for (int64_t x = 0; x < nq * nk && bad < 0; x++)
                if (m[x] != (x % nk <= pos_of(p, x / nk))) bad = x;
            CHECK(bad < 0, "%s: b%d h%d: mask at row %lld key %lld is %d, causal says otherwise", tag, b, h,
                  (long long)(bad / (nk ? nk : 1)), (long long)(bad % (nk ? nk : 1)), bad >= 0 ? m[bad] : 0);
            free(m);
        }
}

/* Minimum (and mean) recall over the rows that see some key, over every (b, h). */
static double min_recall(const ak_sparse *sp, const problem *p, double *mean) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, G = p->d.num_heads_q / p->d.num_heads_kv, n = 0;
    double mn = 1.0, tot = 0.0, *P = (double *)malloc(sizeof(double) * (size_t)(nk + 1));
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < p->d.num_heads_q; h++) {
            double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d);
            uint8_t *m = mask_of(sp, p, b, h);
            for (int64_t i = 0; i < nq; i++) {
                if (!dense_row(p, Q, K, i, P)) continue;
                double rc = 0.0;
                for (int64_t j = 0; j < nk; j++) rc += m[i * nk + j] ? P[j] : 0.0;
                mn = rc < mn ? rc : mn;
                tot += rc, n++;
            }
            free(Q), free(K), free(m);
        }
    free(P);
    if (mean) *mean = n ? tot / (double)n : 1.0;
    return mn;
}

static ak_minference_params params_kind(int kind, int v, int s) {
    ak_minference_params mp;
    ak_minference_params_init(&mp);
    mp.default_head.kind = kind, mp.default_head.v = v, mp.default_head.s = s;
    return mp;
}

/* ---- dense: maximal budgets ------------------------------------------------------------------ */

/* The plan's executor output against the dense reference (the accuracy rule), outputs poisoned first. */
static void expect_dense_output(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    naive_out ref, n32;
    ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
    naive_alloc(&ref, &p->d, &t), naive_alloc(&n32, &p->d, &t);
    naive_attention32(&p->d, &t, &n32);
    CHECK_STATUS(run_ref64(ctx, p, &ref, &n32), AK_OK);
    tbuf_poison(&p->o), tbuf_poison(&p->lse);
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &p->d, sp, &pl);
    CHECK(st == AK_OK, "%s: ak_plan_create_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    if (pl) {
        CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
        char msg[512];
        int ok = check_rule(p, &p->o, &p->lse, &ref, &n32, msg, sizeof msg);
        CHECK(ok, "%s: sparse output vs dense reference: %s", tag, msg);
        ak_plan_destroy(pl);
    }
    naive_free(&ref), naive_free(&n32);
}

static void group_dense(ak_ctx *ctx) {
    static const int shapes[][6] = {/* B, Hq, Hkv, nq, nk, d */
                                    {1, 1, 1, 1, 1, 8},      {1, 3, 1, 17, 17, 16},  {2, 4, 1, 113, 113, 32},
                                    {1, 4, 4, 300, 300, 24}, {1, 2, 1, 50, 113, 16}, {1, 3, 3, 70, 40, 8}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    rng r = rng_seed(11);
    for (int c = 0; c < ns; c++) {
        const int *S = shapes[c];
        problem p;
        if (g_quick && S[3] >= 300) continue;
        if (make_problem(&p, S[0], S[1], S[2], S[3], S[4], S[5], c % 2 ? AK_BF16 : AK_F32, &r)) {
            CHECK(0, "problem_create");
            continue;
        }
        int N = S[4] > S[3] ? S[4] : S[3];
        ak_minference_params cases[9];
        const char *names[9] = {
            "vs exact v,s >= N", "vs ref v,s >= N",  "a-shape n_local >= N", "block top-k >= blocks",
            "block bs 7",        "tri n_last >= nq", "dense kind",           "starting_layer",
            "vs ref bs 5"};
        cases[0] = params_kind(AK_MINF_VS, N, N);
        cases[1] = params_kind(AK_MINF_VS, N + 5, N + 9), cases[1].exact = 0;
        cases[2] = params_kind(AK_MINF_ASHAPE, 0, N);
        cases[3] = params_kind(AK_MINF_BLOCK, (N + 63) / 64, 0);
        cases[4] = params_kind(AK_MINF_BLOCK, (N + 6) / 7, 0), cases[4].block = 7;
        cases[5] = params_kind(AK_MINF_TRI, 1, 1), cases[5].n_last = S[3];
        cases[6] = params_kind(AK_MINF_DENSE, 0, 0);
        cases[7] = params_kind(AK_MINF_ASHAPE, 1, 1), cases[7].layer = 2, cases[7].starting_layer = 3;
        cases[8] = params_kind(AK_MINF_VS, N, N), cases[8].exact = 0, cases[8].block = 5;
        for (int k = 0; k < 9; k++) {
            char tag[160];
            snprintf(tag, sizeof tag, "dense %s B%d Hq%d Hkv%d nq%d nk%d", names[k], S[0], S[1], S[2], S[3], S[4]);
            ak_sparse *sp = plan_of(ctx, &p, &cases[k], NULL, tag);
            if (!sp) continue;
            expect_causal(sp, &p, tag);
            if (k == 0 || k == 3 || k == 5 || k == 7) expect_dense_output(ctx, &p, sp, tag);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
    /* empty problems (nq = 0 or nk = 0): a plan with no pair, for every kind and both VS modes */
    static const int empty[3][2] = {{0, 5}, {3, 0}, {0, 0}};
    float zeros[64] = {0};
    for (int e = 0; e < 3; e++)
        for (int kind = AK_MINF_DENSE; kind <= AK_MINF_TRI; kind++)
            for (int exact = 0; exact <= 1; exact++) {
                ak_attn_desc de;
                ak_attn_desc_init(&de);
                de.num_heads_q = 2, de.num_heads_kv = 1, de.seqlen_q = empty[e][0], de.seqlen_k = empty[e][1];
                de.head_dim = 4, de.causal = 1;
                ak_attn_tensors t;
                ak_attn_tensors_init(&t);
                t.q = ak_tensor_4d(zeros, AK_F32, 1, 2, empty[e][0], 4);
                t.k = ak_tensor_4d(zeros, AK_F32, 1, 1, empty[e][1], 4);
                ak_minference_params mp = params_kind(kind, kind == AK_MINF_BLOCK ? 2 : 3, 3);
                mp.exact = exact;
                ak_sparse *sp = NULL;
                ak_sparse_stats ss;
                ak_status st = ak_minference_plan(ctx, &de, &t, &mp, &sp, NULL);
                CHECK(st == AK_OK && sp && ak_sparse_get_stats(sp, &ss) == AK_OK && ss.pairs == 0.0,
                      "empty nq %d nk %d kind %d exact %d: %s (%s)", empty[e][0], empty[e][1], kind, exact,
                      ak_status_string(st), ak_ctx_last_error(ctx));
                ak_sparse_destroy(sp);
            }
    /* decode (nq = 1): dense whatever the head kind */
    problem p;
    if (make_problem(&p, 1, 2, 1, 1, 200, 16, AK_F32, &r) == 0) {
        ak_minference_params mp = params_kind(AK_MINF_ASHAPE, 1, 1);
        ak_dyn_info info;
        ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
        ak_sparse *sp = NULL;
        CHECK_STATUS(ak_minference_plan(ctx, &p.d, &t, &mp, &sp, &info), AK_OK);
        if (sp) expect_causal(sp, &p, "decode"), ak_sparse_destroy(sp);
        CHECK(info.n_dense_heads == 2, "decode: n_dense_heads = %d, expected 2", info.n_dense_heads);
        problem_destroy(&p);
    }
}

/* ---- planted structure ------------------------------------------------------------------------ */

#define PL_AMP 10.6 /* planted logits a^2 / sqrt(64) = 14: the structure holds all but ~1e-4 of each row's mass */

/* Vertical-slash structure per KV head g: slashes at offsets delta0 + t*m (query code i mod m, key code
 * (j + delta0) mod m on dims [0, m)), verticals at keys vset (dim 63), noise 0.1. */
static void plant_vs(problem *p, int m, const int *vset, int nv, rng *r, int g_only) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, G = p->d.num_heads_q / p->d.num_heads_kv;
    for (int b = 0; b < p->d.batch; b++) {
        for (int g = 0; g < p->d.num_heads_kv; g++) {
            int64_t d0 = 7 + 13 * g;
            if (g_only >= 0 && g != g_only) continue;
            for (int64_t j = 0; j < nk; j++)
                for (int64_t c = 0; c < d; c++) {
                    double x = 0.1 * rng_range(r, -1, 1);
                    if (c == (j + d0) % m) x += PL_AMP;
                    for (int t = 0; t < nv && c == d - 1; t++) x += vset[t] == j ? PL_AMP : 0.0;
                    ten_set4(&p->k.t, b, g, j, c, x);
                }
        }
        for (int h = 0; h < p->d.num_heads_q; h++)
            for (int64_t i = 0; i < nq && (g_only < 0 || h / G == g_only); i++)
                for (int64_t c = 0; c < d; c++) {
                    int64_t ps = pos_of(p, i);
                    double x = 0.1 * rng_range(r, -1, 1) + (c == ps % m ? PL_AMP : 0.0) + (c == d - 1 ? PL_AMP : 0.0);
                    ten_set4(&p->q.t, b, h, i, c, x);
                }
    }
}

/* Key-block structure: key block c has code e_c; query block r wants T(r) = {r, r/2, 0, (r*7)/9}. */
static void plant_blocks(problem *p, int bs, rng *r, int g_only) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, G = p->d.num_heads_q / p->d.num_heads_kv;
    for (int b = 0; b < p->d.batch; b++) {
        for (int g = 0; g < p->d.num_heads_kv; g++)
            for (int64_t j = 0; j < nk && (g_only < 0 || g == g_only); j++)
                for (int64_t c = 0; c < d; c++)
                    ten_set4(&p->k.t, b, g, j, c, 0.1 * rng_range(r, -1, 1) + (c == j / bs ? PL_AMP : 0.0));
        for (int h = 0; h < p->d.num_heads_q; h++)
            for (int64_t i = 0; i < nq && (g_only < 0 || h / G == g_only); i++) {
                int64_t rb = i / bs;
                for (int64_t c = 0; c < d; c++) {
                    int want = c == rb || c == rb / 2 || c == 0 || c == rb * 7 / 9;
                    ten_set4(&p->q.t, b, h, i, c, 0.1 * rng_range(r, -1, 1) + (want ? PL_AMP : 0.0));
                }
            }
    }
}

static void group_planted(ak_ctx *ctx) {
    int N = g_quick ? 500 : 1023;
    static const int vset[] = {150, 333, 412, 420, 430};
    rng r = rng_seed(21);
    problem p;
    if (make_problem(&p, 1, 4, 2, N, N, 64, AK_F32, &r) == 0) {
        plant_vs(&p, 40, vset, 5, &r, -1);
        for (int exact = 1; exact >= 0; exact--) {
            ak_minference_params mp = params_kind(AK_MINF_VS, 40, 150);
            mp.exact = exact;
            ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, "planted vs");
            if (!sp) continue;
            double mean, mn = min_recall(sp, &p, &mean);
            ak_sparse_stats st;
            ak_sparse_get_stats(sp, &st);
            printf("planted vs (%s, N %d): recall min %.5f mean %.5f, density %.3f\n", exact ? "exact" : "ref", N, mn,
                   mean, st.density);
            CHECK(mn >= 0.99, "planted vs (%s): min recall %.5f < 0.99", exact ? "exact" : "ref", mn);
            /* ref mode: slashes 40 apart make block-wide ranges that merge into the whole causal triangle (spec 3.8) */
            /* exact mode: a row sees at most v + s + 1 keys (the +1: offset 0 when the top-s misses it) */
            double bound = (40.0 + 150.0 + 1.0) * N / (0.5 * N * (N + 1.0));
            CHECK(!exact || st.density <= bound, "planted vs (exact): density %.3f above the budget's %.3f", st.density,
                  bound);
            ak_sparse_destroy(sp);
        }
        /* below the budget the structure is lost: a control that the recall measure can fail */
        ak_minference_params mp = params_kind(AK_MINF_VS, 30, 10);
        mp.min_s = 0, mp.forced_s = 10;
        ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, "planted vs, small budget");
        if (sp) {
            double mn = min_recall(sp, &p, NULL);
            CHECK(mn < 0.9, "planted vs control: min recall %.5f with 30 forced verticals and 10 slashes", mn);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
    for (int dil = 0; dil <= 1; dil++) {
        int Nb = g_quick ? 400 : 1000;
        if (make_problem(&p, 2, 3, 1, Nb, Nb, 64, AK_F32, &r) != 0) continue;
        plant_blocks(&p, 64, &r, -1);
        ak_minference_params mp = params_kind(AK_MINF_BLOCK, 4, 0);
        mp.block_dilute = dil;
        ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, "planted blocks");
        if (sp) {
            double mean, mn = min_recall(sp, &p, &mean);
            ak_sparse_stats st;
            ak_sparse_get_stats(sp, &st);
            printf("planted blocks (dilute %d, N %d): recall min %.5f mean %.5f, density %.3f\n", dil, Nb, mn, mean,
                   st.density);
            CHECK(mn >= 0.99, "planted blocks (dilute %d): min recall %.5f < 0.99", dil, mn);
            ak_sparse_destroy(sp);
        }
        mp.default_head.v = 1; /* control: one block cannot hold four */
        sp = plan_of(ctx, &p, &mp, NULL, "planted blocks, top-1");
        if (sp) {
            double mn = min_recall(sp, &p, NULL);
            CHECK(mn < 0.9, "planted blocks control: min recall %.5f with top-1", mn);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
}

/* ---- brute force ------------------------------------------------------------------------------ */

typedef struct vsel {
    double v;
    int64_t i;
} vsel;

static int cmp_vsel(const void *a, const void *b) {
    const vsel *x = (const vsel *)a, *y = (const vsel *)b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* The k largest of x[0..n) (ties: lower index) by a full sort: chosen[i] = 1; returns the k-th value. */
static double brute_topk(const double *x, int64_t n, int64_t k, uint8_t *chosen) {
    vsel *a = (vsel *)malloc(sizeof(vsel) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) a[i].v = x[i], a[i].i = i, chosen[i] = 0;
    qsort(a, (size_t)n, sizeof *a, cmp_vsel);
    if (k > n) k = n;
    for (int64_t t = 0; t < k; t++) chosen[a[t].i] = 1;
    double kth = k > 0 ? a[k - 1].v : INFINITY;
    free(a);
    return kth;
}

/* Selections a (library) and b (brute force) over x[0..n) agree up to near-ties of the k-th value. */
static int same_selection(const double *x, int64_t n, const uint8_t *a, const uint8_t *b, double kth, const double *tol,
                          double tol0, const char *tag, const char *what) {
    int64_t na = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        na += a[i], nb += b[i];
        double t = tol ? tol[i] : isinf(kth) ? 0.0 : tol0 * (1.0 + fabs(kth));
        if (a[i] != b[i] && !(fabs(x[i] - kth) <= t)) {
            CHECK(0, "%s: %s %lld chosen by %s only; its value %.9g, the k-th %.9g", tag, what, (long long)i,
                  a[i] ? "the library" : "the brute force", x[i], kth);
            return 0;
        }
    }
    CHECK(na == nb, "%s: %s: the library chose %lld, the brute force %lld", tag, what, (long long)na, (long long)nb);
    return na == nb;
}

/* The list r of plan head (b, h), block qb. */
static int64_t list_id(const ak_sparse_desc *dd, int b, int h, int64_t qb) {
    return ((int64_t)b * dd->n_heads + h) * dd->n_qblocks + qb;
}

/* Vertical and slash sums of the last L rows (double), forced sets applied. */
static void brute_vs_sums(const problem *p, int b, int h, int L, int fv, int fs, double *vs, double *ss) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, G = p->d.num_heads_q / p->d.num_heads_kv;
    double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d),
           *P = (double *)malloc(sizeof(double) * (size_t)nk);
    for (int64_t j = 0; j < nk; j++) vs[j] = ss[j] = 0.0;
    if (L > nq) L = (int)nq;
    for (int64_t i = nq - L; i < nq; i++) {
        dense_row(p, Q, K, i, P);
        for (int64_t j = 0; j < nk; j++) {
            vs[j] += P[j];
            if (j <= pos_of(p, i) && pos_of(p, i) - j < nk) ss[pos_of(p, i) - j] += P[j];
        }
    }
    for (int64_t j = 0; j < nk && j < fv; j++) vs[j] = INFINITY;
    for (int64_t t = 0; t < nk && t < fs; t++) ss[t] = INFINITY;
    free(Q), free(K), free(P);
}

static int64_t eff_size(int32_t x, float ratio, int32_t mn, int64_t nk) {
    int64_t v = (int64_t)floor((double)x * (double)ratio);
    v = v < mn ? mn : v;
    return v < nk ? v : nk;
}

/* [ref] conversion, plainly: the key set keys[nk] of a query block whose first position is p0. */
static void brute_ref_keys(const uint8_t *inV, const uint8_t *inS, int64_t nk, int64_t p0, int64_t bs, uint8_t *keys) {
    int64_t E = p0 + bs, lo = -1, hi = -1;
    memset(keys, 0, (size_t)nk);
    for (int64_t delta = nk - 1; delta >= 0; delta--) {
        if (!inS[delta] || delta >= E) continue;
        int64_t e = E - delta < bs ? bs : E - delta;
        if (hi < 0) {
            lo = e - bs, hi = e;
        } else if (e > hi + bs) {
            for (int64_t j = lo; j < hi && j < nk; j++) keys[j] = 1;
            lo = e - bs, hi = e;
        } else if (e > hi) {
            hi = hi + bs;
        }
    }
    for (int64_t j = lo < 0 ? 0 : lo; j < hi && j < nk; j++) keys[j] = 1;
    for (int64_t j = 0; j < hi && j < nk; j++)
        if (inV[j]) keys[j] = 1;
}

/* VS of plan head (b, h) in both modes against the brute force. */
static void brute_vs_case(ak_ctx *ctx, problem *p, const ak_minference_params *mp, const char *tag0) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, bs = mp->block;
    ak_minference_params me = *mp, mr = *mp;
    me.exact = 1, mr.exact = 0;
    ak_sparse *se = plan_of(ctx, p, &me, NULL, tag0), *sr = plan_of(ctx, p, &mr, NULL, tag0);
    ak_sparse_desc dd;
    double *vs = (double *)malloc(sizeof(double) * (size_t)nk * 2), *ss = vs + nk;
    uint8_t *cv = (uint8_t *)calloc((size_t)nk * 4 + 1, 1), *cs = cv + nk, *lv = cs + nk, *ls = lv + nk,
            *keys = (uint8_t *)malloc((size_t)nk);
    if (!se || !sr) goto out;
    ak_sparse_get_desc(se, &dd);
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < p->d.num_heads_q; h++) {
            char tag[256];
            snprintf(tag, sizeof tag, "%s b%d h%d", tag0, b, h);
            const ak_minf_head *hd = mp->heads ? &mp->heads[h] : &mp->default_head;
            int64_t v = eff_size(hd->v, mp->ratio, mp->min_v, nk), s = eff_size(hd->s, mp->ratio, mp->min_s, nk);
            brute_vs_sums(p, b, h, mp->last_q, mp->forced_v, mp->forced_s, vs, ss);
            double kv = brute_topk(vs, nk, v, cv), ks = brute_topk(ss, nk, s, cs);
            cs[0] = 1; /* the diagonal is always kept */
            /* the library's sets: the last block's cols and bands */
            int64_t r = list_id(&dd, b, h, dd.n_qblocks - 1);
            memset(lv, 0, (size_t)nk * 2);
            for (int64_t e = dd.col_off ? dd.col_off[r] : 0; dd.col_off && e < dd.col_off[r + 1]; e++)
                lv[dd.col_idx[e]] = 1;
            for (int64_t e = dd.band_off ? dd.band_off[r] : 0; dd.band_off && e < dd.band_off[r + 1]; e++)
                for (int64_t t = dd.band_lo[e]; t <= dd.band_hi[e]; t++) ls[t] = 1;
            int ok = same_selection(vs, nk, lv, cv, kv, NULL, 4e-6, tag, "vertical");
            ls[0] = cs[0] = 0; /* offset 0 compared apart: added when the top-s misses it */
            ok &= same_selection(ss, nk, ls, cs, ks, NULL, 4e-6, tag, "slash");
            ls[0] = cs[0] = 1;
            if (!ok) continue;
            /* exact mask from the library's sets; ref mask from the conversion of the same sets */
            uint8_t *me_m = mask_of(se, p, b, h), *mr_m = mask_of(sr, p, b, h);
            int64_t bad_e = -1, bad_r = -1;
            for (int64_t qb = 0; qb * bs < nq; qb++) {
                brute_ref_keys(lv, ls, nk, qb * bs + nk - nq, bs, keys);
                for (int64_t i = qb * bs; i < nq && i < (qb + 1) * bs; i++)
                    for (int64_t j = 0; j < nk; j++) {
                        int64_t ps = pos_of(p, i);
                        int vis = j <= ps, want_e = vis && (lv[j] || ls[ps - j]), want_r = vis && keys[j];
                        if (me_m[i * nk + j] != want_e && bad_e < 0) bad_e = i * nk + j;
                        if (mr_m[i * nk + j] != want_r && bad_r < 0) bad_r = i * nk + j;
                    }
            }
            CHECK(bad_e < 0, "%s: exact mask differs at row %lld key %lld", tag, (long long)(bad_e / nk),
                  (long long)(bad_e % nk));
            CHECK(bad_r < 0, "%s: ref mask differs at row %lld key %lld", tag, (long long)(bad_r / nk),
                  (long long)(bad_r % nk));
            free(me_m), free(mr_m);
        }
out:
    free(vs), free(cv), free(keys);
    ak_sparse_destroy(se), ak_sparse_destroy(sr);
}

/* Block-sparse of every plan head against the brute force (means, scores, argsort, counts, mask). */
static void brute_block_case(ak_ctx *ctx, problem *p, const ak_minference_params *mp, const char *tag0) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, bs = mp->block,
            G = p->d.num_heads_q / p->d.num_heads_kv;
    int64_t nbq = (nq + bs - 1) / bs, nbk = (nk + bs - 1) / bs;
    ak_sparse *sp = plan_of(ctx, p, mp, NULL, tag0);
    if (!sp) return;
    ak_sparse_desc dd;
    ak_sparse_get_desc(sp, &dd);
    double *qm = (double *)calloc((size_t)(nbq * d + nbk * d + 2 * nbk + 1), sizeof(double)), *km = qm + nbq * d,
           *sc = km + nbk * d, *tol = sc + nbk;
    uint8_t *cb = (uint8_t *)malloc((size_t)nbk * 2 + 1), *lb = cb + nbk;
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < p->d.num_heads_q; h++) {
            char tag[256];
            int64_t k = (mp->heads ? mp->heads[h].v : mp->default_head.v), bad = -1;
            double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d);
            for (int side = 0; side < 2; side++) {
                int64_t n = side ? nk : nq;
                double *m = side ? km : qm;
                memset(m, 0, sizeof(double) * (size_t)(((n + bs - 1) / bs) * d));
                for (int64_t i = 0; i < n; i++)
                    for (int64_t c = 0; c < d; c++) m[(i / bs) * d + c] += (side ? K : Q)[i * d + c];
                for (int64_t c = 0; c * bs < n; c++) {
                    int64_t cnt = n - c * bs < bs ? n - c * bs : bs;
                    for (int64_t x = 0; x < d; x++) m[c * d + x] /= (double)(mp->block_dilute ? bs : cnt);
                }
            }
            uint8_t *mk = mask_of(sp, p, b, h);
            for (int64_t r = 0; r < nbq; r++) {
                snprintf(tag, sizeof tag, "%s b%d h%d qblock %lld", tag0, b, h, (long long)r);
                int64_t pl = (r + 1) * bs < nq ? (r + 1) * bs - 1 + nk - nq : nk - 1, nc = pl < 0 ? 0 : pl / bs + 1;
                nc = nc > nbk ? nbk : nc;
                for (int64_t c = 0; c < nc; c++) {
                    sc[c] = 0.0, tol[c] = 1e-12;
                    for (int64_t x = 0; x < d; x++)
                        sc[c] += qm[r * d + x] * km[c * d + x], tol[c] += 1e-5 * fabs(qm[r * d + x] * km[c * d + x]);
                }
                double kth = brute_topk(sc, nc, k, cb);
                int64_t lr = list_id(&dd, b, h, r);
                memset(lb, 0, (size_t)nbk);
                for (int64_t e = dd.span_off[lr]; e < dd.span_off[lr + 1]; e++) {
                    CHECK(dd.span_lo[e] % bs == 0 && (dd.span_hi[e] % bs == 0 || dd.span_hi[e] == nk),
                          "%s: span [%d, %d) off the blocks", tag, dd.span_lo[e], dd.span_hi[e]);
                    for (int64_t c = dd.span_lo[e] / bs; c * bs < dd.span_hi[e]; c++) lb[c] = 1;
                }
                int64_t nl = 0;
                for (int64_t c = 0; c < nbk; c++) nl += lb[c];
                CHECK(nl == (k < nc ? k : nc), "%s: %lld blocks, expected min(k = %lld, candidates = %lld)", tag,
                      (long long)nl, (long long)k, (long long)nc);
                for (int64_t c = nc; c < nbk; c++)
                    CHECK(!lb[c], "%s: key block %lld is not a candidate", tag, (long long)c);
                if (!same_selection(sc, nc, lb, cb, kth, tol, 0.0, tag, "key block")) continue;
                for (int64_t i = r * bs; i < nq && i < (r + 1) * bs; i++)
                    for (int64_t j = 0; j < nk; j++)
                        if (mk[i * nk + j] != (j <= pos_of(p, i) && lb[j / bs]) && bad < 0) bad = i * nk + j;
            }
            CHECK(bad < 0, "%s b%d h%d: block mask differs at row %lld key %lld", tag0, b, h, (long long)(bad / nk),
                  (long long)(bad % nk));
            free(mk), free(Q), free(K);
        }
    free(qm), free(cb);
    ak_sparse_destroy(sp);
}

static void group_brute(ak_ctx *ctx) {
    static const int lens[][2] = {{17, 17},  {113, 113}, {300, 300}, {1023, 1023}, {100, 301},
                                  {120, 77}, {2, 2},     {64, 64},   {65, 200}};
    static const int gqa[][2] = {{1, 1}, {3, 1}, {4, 1}, {6, 2}};
    static const int blocks[] = {64, 16, 48, 100, 7};
    int nl = (int)(sizeof lens / sizeof lens[0]), ncase = g_quick ? 10 : 36;
    rng r = rng_seed(31);
    for (int c = 0; c < ncase; c++) {
        const int *L = lens[c % nl], *G = gqa[(c / 2) % 4];
        if (g_quick && L[0] > 400) continue;
        int d = (int[]){8, 40, 64, 3}[c % 4], bs = blocks[(c / 3) % 5];
        ak_dtype dt = c % 5 == 4 ? AK_BF16 : AK_F32;
        problem p;
        if (make_problem(&p, 1 + (c % 7 == 3), G[0], G[1], L[0], L[1], d, dt, &r) != 0) {
            CHECK(0, "problem_create");
            continue;
        }
        ak_minference_params mp;
        ak_minference_params_init(&mp);
        mp.block = bs;
        mp.last_q = (int[]){64, 5, 200, 64}[c % 4];
        mp.forced_v = (int[]){30, 0, 3, 30}[(c / 4) % 4];
        mp.forced_s = (int[]){100, 1, 0, 7}[(c / 4) % 4];
        mp.min_v = (int[]){30, 0, 5}[c % 3], mp.min_s = (int[]){50, 0, 9}[c % 3];
        mp.ratio = (float[]){1.0f, 0.5f, 1.7f}[(c / 5) % 3];
        mp.default_head.v = 1 + rng_int(&r, L[1] + 4), mp.default_head.s = 1 + rng_int(&r, L[1] + 4);
        ak_minf_head heads[6];
        if (c % 3 == 1) { /* per-head sizes */
            for (int h = 0; h < G[0]; h++)
                heads[h].kind = AK_MINF_VS, heads[h].v = rng_int(&r, 80), heads[h].s = rng_int(&r, 200);
            mp.heads = heads, mp.n_heads = G[0];
        }
        char tag[200];
        snprintf(tag, sizeof tag, "brute vs case %d (B%d Hq%d Hkv%d nq%d nk%d d%d bs%d last_q %d %s)", c, p.d.batch,
                 G[0], G[1], L[0], L[1], d, bs, mp.last_q, tu_dtype_short(dt));
        if (L[0] > 1) brute_vs_case(ctx, &p, &mp, tag);
        ak_minference_params mb = params_kind(AK_MINF_BLOCK, 1 + rng_int(&r, 6), 0);
        mb.block = bs, mb.block_dilute = c % 2;
        snprintf(tag, sizeof tag, "brute block case %d (B%d Hq%d Hkv%d nq%d nk%d d%d bs%d top%d dilute %d)", c,
                 p.d.batch, G[0], G[1], L[0], L[1], d, bs, mb.default_head.v, mb.block_dilute);
        if (L[0] > 1) brute_block_case(ctx, &p, &mb, tag);
        problem_destroy(&p);
    }
}

/* ---- executor vs the sparse reference --------------------------------------------------------- */

static ak_dtype coarse_dt(const problem *p) {
    if (p->d.dtype_q == AK_BF16 || p->d.dtype_kv == AK_BF16) return AK_BF16;
    if (p->d.dtype_q == AK_F16 || p->d.dtype_kv == AK_F16) return AK_F16;
    return AK_F32;
}

/* Masked attention in float with naive32's rounding (S, P rounded to the coarser input dtype), and nvis. */
static void naive_masked32(const problem *p, const ak_sparse *sp, naive_out *out) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, dv = p->dv, Hq = p->d.num_heads_q,
            G = Hq / p->d.num_heads_kv;
    ak_dtype cdt = coarse_dt(p);
    float scale = (float)(1.0 / sqrt((double)d)), *sc = (float *)malloc(sizeof(float) * (size_t)(2 * nk + 1)),
          *pj = sc + nk;
    for (int b = 0; b < p->d.batch; b++)
        for (int h = 0; h < Hq; h++) {
            uint8_t *m = mask_of(sp, p, b, h);
            double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d),
                   *V = head_rows(&p->v, b, h / G, nk, dv);
            for (int64_t i = 0; i < nq; i++) {
                int64_t row = ((int64_t)b * Hq + h) * nq + i, n = 0;
                float mx = -INFINITY, sum = 0.0f;
                for (int64_t j = 0; j < nk; j++) {
                    sc[j] = -INFINITY;
                    if (!m[i * nk + j]) continue;
                    float dot = 0.0f;
                    for (int64_t c = 0; c < d; c++) dot += (float)Q[i * d + c] * (float)K[j * d + c];
                    sc[j] = (float)tu_round_to(cdt, scale * dot);
                    mx = sc[j] > mx ? sc[j] : mx;
                    n++;
                }
                out->nvis[row] = (int32_t)n;
                out->lse[row] = -INFINITY;
                for (int64_t c = 0; c < dv; c++) out->o[row * dv + c] = 0.0;
                if (!n) continue;
                for (int64_t j = 0; j < nk; j++) sum += sc[j] == -INFINITY ? 0.0f : expf(sc[j] - mx);
                for (int64_t j = 0; j < nk; j++)
                    pj[j] = sc[j] == -INFINITY ? 0.0f : (float)tu_round_to(cdt, expf(sc[j] - mx) / sum);
                for (int64_t c = 0; c < dv; c++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < nk; j++)
                        if (sc[j] != -INFINITY) acc += pj[j] * (float)V[j * dv + c];
                    out->o[row * dv + c] = tu_round_to(p->d.dtype_o, acc);
                }
                out->lse[row] = (double)(mx + logf(sum));
            }
            free(m), free(Q), free(K), free(V);
        }
    free(sc);
}

/* The executor (poisoned outputs) against ak_attention_ref_sparse (f64) under the accuracy rule. */
static void exec_check(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
    naive_out ref, n32;
    naive_alloc(&ref, &p->d, &t), naive_alloc(&n32, &p->d, &t);
    naive_masked32(p, sp, &n32);
    ak_attn_desc dr = p->d;
    dr.dtype_o = AK_F64;
    ak_attn_tensors tr = t;
    tr.o = ak_tensor_4d(ref.o, AK_F64, dr.batch, dr.num_heads_q, dr.seqlen_q, p->dv);
    tr.lse = ak_tensor_3d(ref.lse, AK_F64, dr.batch, dr.num_heads_q, dr.seqlen_q);
    for (int64_t x = 0; x < ref.n_rows * ref.dv; x++) ref.o[x] = NAN;
    CHECK_STATUS(ak_attention_ref_sparse(ctx, &dr, sp, &tr), AK_OK);
    memcpy(ref.nvis, n32.nvis, sizeof(int32_t) * (size_t)ref.n_rows);
    tbuf_poison(&p->o), tbuf_poison(&p->lse);
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &p->d, sp, &pl);
    CHECK(st == AK_OK, "%s: ak_plan_create_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    if (pl) {
        CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
        char msg[512];
        int ok = check_rule(p, &p->o, &p->lse, &ref, &n32, msg, sizeof msg);
        CHECK(ok, "%s: %s", tag, msg);
        CHECK(tbuf_outside_untouched(&p->o) && tbuf_outside_untouched(&p->lse), "%s: memory around the outputs written",
              tag);
        ak_plan_destroy(pl);
    }
    naive_free(&ref), naive_free(&n32);
}

static const ak_minf_head k_mix[6] = {{AK_MINF_VS, 50, 60}, {AK_MINF_ASHAPE, 4, 32}, {AK_MINF_BLOCK, 2, 0},
                                      {AK_MINF_TRI, 8, 40}, {AK_MINF_DENSE, 0, 0},   {AK_MINF_VS, 200, 10}};

static void group_exec(ak_ctx *ctx) {
    static const int shapes[][4] = {{300, 300, 64, 37}, {150, 333, 48, 20}, {129, 129, 16, 64}, {90, 60, 32, 5}};
    rng r = rng_seed(41);
    for (int c = 0; c < 8; c++) {
        const int *S = shapes[c % 4];
        if (g_quick && c != 0 && c != 3 && c != 5 && c != 6) continue; /* both modes, both dtypes, every shape */
        problem p;
        if (make_problem(&p, 1 + (c == 5), 6, 2, S[0], S[1], (int[]){16, 40, 64, 7}[c % 4], c % 2 ? AK_BF16 : AK_F32,
                         &r) != 0) {
            CHECK(0, "problem_create");
            continue;
        }
        ak_minference_params mp;
        ak_minference_params_init(&mp);
        mp.heads = k_mix, mp.n_heads = 6, mp.block = S[2], mp.n_last = S[3], mp.exact = (c / 4) == 0;
        char tag[160];
        snprintf(tag, sizeof tag, "exec case %d (nq %d nk %d bs %d n_last %d %s, %s)", c, S[0], S[1], S[2], S[3],
                 mp.exact ? "exact" : "ref", tu_dtype_short(p.d.dtype_q));
        ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, tag);
        if (sp) exec_check(ctx, &p, sp, tag), ak_sparse_destroy(sp);
        problem_destroy(&p);
    }
}

/* ---- threads ---------------------------------------------------------------------------------- */

static void group_threads(ak_ctx *ctx) {
    rng r = rng_seed(51);
    int N = g_quick ? 300 : 700;
    problem p;
    if (make_problem(&p, 2, 6, 2, N, N, 32, AK_F32, &r) != 0) return;
    for (int exact = 0; exact <= 1; exact++) {
        ak_minference_params mp;
        ak_minference_params_init(&mp);
        mp.heads = k_mix, mp.n_heads = 6, mp.exact = exact, mp.n_last = 33;
        char *first = NULL;
        for (int nt = 1; nt <= 3; nt++) {
            ak_ctx_set_num_threads(ctx, nt);
            ak_dyn_info info;
            ak_sparse *sp = plan_of(ctx, &p, &mp, &info, "threads");
            if (!sp) continue;
            char *js = NULL;
            size_t len = 0;
            CHECK_STATUS(ak_sparse_to_json(ctx, sp, &js, &len), AK_OK);
            if (nt == 1)
                first = js;
            else {
                CHECK(js && first && strcmp(js, first) == 0,
                      "threads: the plan on %d threads differs from 1 thread (exact %d)", nt, exact);
                ak_free(ctx, js);
            }
            CHECK(info.size == sizeof info && info.est_seconds >= 0.0 && info.density > 0.0 && info.density <= 1.0,
                  "threads: info size %zu, est %g s, density %g", info.size, info.est_seconds, info.density);
            ak_sparse_destroy(sp);
        }
        ak_free(ctx, first);
    }
    ak_ctx_set_num_threads(ctx, 2);
    problem_destroy(&p);
}

/* ---- invalid arguments ------------------------------------------------------------------------- */

static void expect_invalid(ak_ctx *ctx, const problem *p, const ak_attn_desc *de, const ak_attn_tensors *t,
                           const ak_minference_params *mp, ak_status want, const char *field, const char *tag) {
    ak_sparse *sp = (ak_sparse *)(uintptr_t)0x10; /* must come back NULL */
    ak_dyn_info info;
    ak_status st = ak_minference_plan(ctx, de ? de : &p->d, t, mp, &sp, &info);
    CHECK(st == want, "invalid %s: %s, expected %s (%s)", tag, ak_status_string(st), ak_status_string(want),
          ak_ctx_last_error(ctx));
    CHECK(sp == NULL, "invalid %s: *out not NULL", tag);
    if (st == AK_OK) ak_sparse_destroy(sp);
    CHECK(field == NULL || strstr(ak_ctx_last_error(ctx), field) != NULL, "invalid %s: message '%s' does not name '%s'",
          tag, ak_ctx_last_error(ctx), field);
}

static void group_invalid(ak_ctx *ctx) {
    rng r = rng_seed(61);
    problem p;
    if (make_problem(&p, 1, 4, 2, 40, 40, 8, AK_F32, &r) != 0) return;
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    ak_minference_params base, mp;
    ak_minference_params_init(&base);
    ak_minf_head heads[4] = {{AK_MINF_VS, 10, 10}, {AK_MINF_VS, 10, 10}, {AK_MINF_VS, 10, 10}, {AK_MINF_VS, 10, 10}};
#define BAD(stmt, field)                                                                                               \
    do {                                                                                                               \
        mp = base;                                                                                                     \
        stmt;                                                                                                          \
        expect_invalid(ctx, &p, NULL, &t, &mp, AK_ERR_INVALID_ARGUMENT, field, #stmt);                                 \
    } while (0)
    BAD(mp.exact = 2, "exact");
    BAD(mp.exact = -1, "exact");
    BAD(mp.last_q = 0, "last_q");
    BAD(mp.block = 0, "block");
    BAD(mp.block = -64, "block");
    BAD(mp.forced_v = -1, "forced_v");
    BAD(mp.forced_s = -1, "forced_s");
    BAD(mp.min_v = -1, "min_v");
    BAD(mp.min_s = -5, "min_s");
    BAD(mp.ratio = 0.0f, "ratio");
    BAD(mp.ratio = -1.0f, "ratio");
    BAD(mp.ratio = NAN, "ratio");
    BAD(mp.ratio = INFINITY, "ratio");
    BAD(mp.layer = -1, "layer");
    BAD(mp.starting_layer = -1, "starting_layer");
    BAD(mp.block_dilute = 2, "block_dilute");
    BAD(mp.n_last = -1, "n_last");
    BAD(mp.default_head.kind = 5, "default_head.kind");
    BAD(mp.default_head.kind = -1, "default_head.kind");
    BAD(mp.default_head.v = -1, "default_head.v");
    BAD(mp.default_head.s = -1, "default_head.s");
    BAD((mp.default_head.kind = AK_MINF_ASHAPE, mp.default_head.s = 0), "default_head.s");
    BAD((mp.default_head.kind = AK_MINF_ASHAPE, mp.default_head.v = -2), "default_head.v");
    BAD((mp.default_head.kind = AK_MINF_TRI, mp.default_head.s = 0), "default_head.s");
    BAD((mp.default_head.kind = AK_MINF_BLOCK, mp.default_head.v = 0), "default_head.v");
    BAD((mp.heads = heads, mp.n_heads = 3), "n_heads");
    BAD((mp.heads = heads, mp.n_heads = 0), "n_heads");
    heads[2].kind = 9;
    BAD((mp.heads = heads, mp.n_heads = 4), "heads[2].kind");
    heads[2].kind = AK_MINF_BLOCK, heads[2].v = 0;
    BAD((mp.heads = heads, mp.n_heads = 4), "heads[2].v");
    heads[2].v = 3, heads[3].kind = AK_MINF_ASHAPE, heads[3].s = 0;
    BAD((mp.heads = heads, mp.n_heads = 4), "heads[3].s");
#undef BAD
    /* pointers, descriptor, tensors */
    ak_sparse *sp = (ak_sparse *)(uintptr_t)0x10;
    CHECK_STATUS(ak_minference_plan(NULL, &p.d, &t, NULL, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL ctx: *out not NULL");
    CHECK_STATUS(ak_minference_plan(ctx, &p.d, &t, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    expect_invalid(ctx, &p, NULL, NULL, NULL, AK_ERR_NULL_POINTER, "tensors", "NULL tensors");
    sp = (ak_sparse *)(uintptr_t)0x10;
    CHECK_STATUS(ak_minference_plan(ctx, NULL, &t, NULL, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL desc: *out not NULL");
    ak_attn_desc de = p.d;
    de.causal = 0;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_INVALID_ARGUMENT, "causal", "non-causal");
    de = p.d, de.window_left = 5;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_INVALID_ARGUMENT, "window", "window");
    de = p.d, de.softcap = 30.0f;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_INVALID_ARGUMENT, "softcap", "softcap");
    de = p.d, de.has_sinks = 1;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_INVALID_ARGUMENT, "sinks", "sinks");
    int32_t cu[2] = {0, 40};
    de = p.d, de.cu_seqlens_q = cu, de.cu_seqlens_k = cu;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_INVALID_ARGUMENT, "ragged", "ragged");
    de = p.d, de.seqlen_k = 41;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_SHAPE_MISMATCH, "k", "k shape");
    de = p.d, de.dtype_kv = AK_BF16;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_PLAN_MISMATCH, "k", "k dtype");
    de = p.d, de.num_heads_kv = 3;
    expect_invalid(ctx, &p, &de, &t, NULL, AK_ERR_GQA_RATIO, NULL, "GQA ratio");
    ak_attn_tensors t2 = t;
    t2.size = 3;
    expect_invalid(ctx, &p, NULL, &t2, NULL, AK_ERR_INVALID_ARGUMENT, "size", "tensors.size");
    t2 = t, t2.q.data = NULL;
    expect_invalid(ctx, &p, NULL, &t2, NULL, AK_ERR_NULL_POINTER, NULL, "q data NULL");
    /* after all that, a valid call still works */
    ak_minference_params ok = base;
    ak_sparse *sp2 = plan_of(ctx, &p, &ok, NULL, "valid after invalid");
    ak_sparse_destroy(sp2);
    problem_destroy(&p);
}

/* ---- spec §3.7 ------------------------------------------------------------------------------- */

/* 3.7.2: ref mode is a superset of exact mode, nothing above the diagonal, cols outside spans, spans whole blocks. */
static void spec_converter(ak_ctx *ctx) {
    static const int cs[][5] = {/* nq, nk, block, v, s */ {200, 200, 64, 40, 60},
                                {513, 513, 64, 100, 300},
                                {1023, 1023, 64, 30, 50},
                                {300, 700, 64, 200, 120},
                                {257, 257, 32, 60, 90},
                                {100, 100, 7, 30, 50}};
    rng r = rng_seed(71);
    for (int c = 0; c < 6; c++) {
        const int *S = cs[c];
        if (g_quick && S[1] > 600) continue;
        problem p;
        if (make_problem(&p, 1, 2, 1, S[0], S[1], 16, AK_F32, &r) != 0) continue;
        ak_minference_params me = params_kind(AK_MINF_VS, S[3], S[4]), mr;
        me.block = S[2];
        mr = me, mr.exact = 0;
        char tag[96];
        snprintf(tag, sizeof tag, "converter nq %d nk %d bs %d v %d s %d", S[0], S[1], S[2], S[3], S[4]);
        ak_sparse *se = plan_of(ctx, &p, &me, NULL, tag), *sr = plan_of(ctx, &p, &mr, NULL, tag);
        if (se && sr) {
            int64_t nq = S[0], nk = S[1], bs = S[2], bad_sup = -1, bad_c = -1, ne = 0, nr = 0;
            for (int h = 0; h < 2; h++) {
                uint8_t *m1 = mask_of(se, &p, 0, h), *m2 = mask_of(sr, &p, 0, h);
                for (int64_t x = 0; x < nq * nk; x++) {
                    ne += m1[x], nr += m2[x];
                    if (m1[x] && !m2[x] && bad_sup < 0) bad_sup = x;
                    if (m2[x] && x % nk > pos_of(&p, x / nk) && bad_c < 0) bad_c = x;
                }
                free(m1), free(m2);
            }
            CHECK(bad_sup < 0, "%s: row %lld key %lld in the exact set, not in the ref set", tag,
                  (long long)(bad_sup / nk), (long long)(bad_sup % nk));
            CHECK(bad_c < 0, "%s: ref set has a future key", tag);
            CHECK(nr > ne, "%s: ref set (%lld) not larger than exact (%lld)", tag, (long long)nr, (long long)ne);
            ak_sparse_desc dd;
            ak_sparse_get_desc(sr, &dd);
            CHECK(dd.band_off == NULL || dd.band_off[dd.n_heads * dd.n_qblocks] == 0, "%s: ref mode has bands", tag);
            for (int64_t l = 0; l < (int64_t)dd.n_heads * dd.n_qblocks; l++) {
                for (int64_t e = dd.span_off[l]; e < dd.span_off[l + 1]; e++)
                    CHECK((dd.span_hi[e] - dd.span_lo[e]) % bs == 0 || dd.span_hi[e] == nk,
                          "%s: list %lld span [%d, %d) not whole blocks", tag, (long long)l, dd.span_lo[e],
                          dd.span_hi[e]);
                for (int64_t e = dd.col_off ? dd.col_off[l] : 0; dd.col_off && e < dd.col_off[l + 1]; e++)
                    for (int64_t f = dd.span_off[l]; f < dd.span_off[l + 1]; f++)
                        CHECK(dd.col_idx[e] < dd.span_lo[f] || dd.col_idx[e] >= dd.span_hi[f],
                              "%s: col %d inside span [%d, %d)", tag, dd.col_idx[e], dd.span_lo[f], dd.span_hi[f]);
            }
            printf("%s: pairs exact %lld, ref %lld (x%.2f)\n", tag, (long long)ne, (long long)nr,
                   (double)nr / (double)(ne ? ne : 1));
        }
        ak_sparse_destroy(se), ak_sparse_destroy(sr);
        problem_destroy(&p);
    }
}

/* 3.7.3 A-shape counts and set; Tri-shape (A-shape rows, then dense rows; gathered when unaligned). */
static void spec_ashape(ak_ctx *ctx) {
    static const int cs[][6] = {/* nq, nk, n_init, n_local, n_last (-1: A-shape), block */
                                {50, 50, 0, 1, -1, 64},     {300, 300, 4, 64, -1, 64}, {777, 777, 128, 100, -1, 64},
                                {300, 300, 300, 5, -1, 16}, {120, 260, 7, 20, -1, 64}, {300, 300, 4, 30, 37, 64},
                                {320, 320, 4, 30, 64, 64},  {300, 300, 2, 9, 0, 48},   {100, 100, 3, 10, 250, 64}};
    rng r = rng_seed(81);
    for (int c = 0; c < 9; c++) {
        const int *S = cs[c];
        problem p;
        if (make_problem(&p, 1, 2, 2, S[0], S[1], 8, AK_F32, &r) != 0) continue;
        int tri = S[4] >= 0;
        ak_minference_params mp = params_kind(tri ? AK_MINF_TRI : AK_MINF_ASHAPE, S[2], S[3]);
        mp.n_last = tri ? S[4] : 100, mp.block = S[5];
        char tag[96];
        snprintf(tag, sizeof tag, "%s nq %d nk %d n_init %d n_local %d n_last %d", tri ? "tri" : "a-shape", S[0], S[1],
                 S[2], S[3], S[4]);
        ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, tag);
        if (!sp) {
            problem_destroy(&p);
            continue;
        }
        int64_t nq = S[0], nk = S[1], ni = S[2], nl = S[3], rt = tri ? (nq - S[4] < 0 ? 0 : nq - S[4]) : nq;
        for (int h = 0; h < 2; h++) {
            uint8_t *m = mask_of(sp, &p, 0, h);
            for (int64_t i = 0; i < nq; i++) {
                int64_t ps = pos_of(&p, i), cnt = 0, want = ps + 1 < nl ? ps + 1 : nl, bad = -1;
                int64_t extra = (ps + 1 - nl < ni ? ps + 1 - nl : ni);
                want += extra > 0 ? extra : 0;
                if (i >= rt) want = ps + 1;
                for (int64_t j = 0; j < nk; j++) {
                    cnt += m[i * nk + j];
                    int w = j <= ps && (i >= rt || j < ni || ps - j < nl);
                    if (m[i * nk + j] != w && bad < 0) bad = j;
                }
                CHECK(cnt == want, "%s h%d row %lld: %lld keys, expected %lld", tag, h, (long long)i, (long long)cnt,
                      (long long)want);
                CHECK(bad < 0, "%s h%d row %lld: key %lld wrong", tag, h, (long long)i, (long long)bad);
                if (cnt != want || bad >= 0) break;
            }
            free(m);
        }
        ak_sparse_desc dd;
        ak_sparse_get_desc(sp, &dd);
        int gathered = tri && rt > 0 && rt < nq && rt % S[5] != 0;
        CHECK((dd.qrow_off != NULL) == gathered, "%s: gathered rows %d, expected %d", tag, dd.qrow_off != NULL,
              gathered);
        ak_sparse_destroy(sp);
        problem_destroy(&p);
    }
}

/* 3.7.4 min(100, r + 1) blocks with the reference's top-100, against the brute force. */
static void spec_block100(ak_ctx *ctx) {
    rng r = rng_seed(91);
    problem p;
    int N = g_quick ? 1650 : 1700;
    if (make_problem(&p, 1, 1, 1, N, N, 16, AK_F32, &r) != 0) return;
    ak_minference_params mp = params_kind(AK_MINF_BLOCK, 100, 0);
    mp.block = 16;
    brute_block_case(ctx, &p, &mp, "block top-100 (bs 16)");
    problem_destroy(&p);
}

/* 3.7.5 forced verticals 0..29 and slashes 0..99 present even where the mass is elsewhere (planted). */
static void spec_forced(ak_ctx *ctx) {
    static const int vset[] = {150, 333, 412, 420, 430};
    rng r = rng_seed(101);
    problem p;
    if (make_problem(&p, 1, 2, 1, 500, 500, 64, AK_F32, &r) != 0) return;
    plant_vs(&p, 40, vset, 5, &r, -1);
    ak_minference_params mp = params_kind(AK_MINF_VS, 35, 110);
    ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, "forced");
    if (sp) {
        ak_sparse_desc dd;
        ak_sparse_get_desc(sp, &dd);
        for (int h = 0; h < 2; h++) {
            int64_t l = list_id(&dd, 0, h, dd.n_qblocks - 1), nv = 0, ns = 0;
            uint8_t iv[500] = {0}, is[500] = {0};
            for (int64_t e = dd.col_off[l]; e < dd.col_off[l + 1]; e++) iv[dd.col_idx[e]] = 1, nv++;
            for (int64_t e = dd.band_off[l]; e < dd.band_off[l + 1]; e++)
                for (int64_t t = dd.band_lo[e]; t <= dd.band_hi[e]; t++) is[t] = 1, ns++;
            for (int j = 0; j < 30; j++) CHECK(iv[j], "forced: h%d: key %d is not a vertical", h, j);
            for (int t = 0; t < 100; t++) CHECK(is[t], "forced: h%d: offset %d is not a slash", h, t);
            for (int t = 0; t < 5; t++) CHECK(iv[vset[t]], "forced: h%d: planted key %d missed", h, vset[t]);
            CHECK(nv == 35 && ns == 110, "forced: h%d: %lld verticals, %lld slashes (expected 35, 110)", h,
                  (long long)nv, (long long)ns);
        }
        ak_sparse_destroy(sp);
    }
    problem_destroy(&p);
}

/* 3.7.6 the universal test in both modes is group exec; the recall on random data is reported here. */
static void spec_recall_report(ak_ctx *ctx) {
    rng r = rng_seed(111);
    problem p;
    int N = g_quick ? 300 : 1023;
    if (make_problem(&p, 1, 2, 1, N, N, 64, AK_F32, &r) != 0) return;
    for (int exact = 1; exact >= 0; exact--) {
        ak_minference_params mp = params_kind(AK_MINF_VS, 100, 200);
        mp.exact = exact;
        ak_sparse *sp = plan_of(ctx, &p, &mp, NULL, "recall report");
        if (!sp) continue;
        double mean, mn = min_recall(sp, &p, &mean);
        ak_sparse_stats st;
        ak_sparse_get_stats(sp, &st);
        printf("recall on uniform random q, k (N %d, v 100, s 200, %s): min %.4f mean %.4f, density %.3f\n", N,
               exact ? "exact" : "ref", mn, mean, st.density);
        CHECK(mn > 0.0 && mean <= 1.0 + 1e-9, "recall report: min %.4f mean %.4f", mn, mean);
        ak_sparse_destroy(sp);
    }
    problem_destroy(&p);
}

static void group_spec(ak_ctx *ctx) {
    spec_converter(ctx);
    spec_ashape(ctx);
    spec_block100(ctx);
    spec_forced(ctx);
    spec_recall_report(ctx);
}

/* ---- config ------------------------------------------------------------------------------------ */

static const char *k_config =
    "[{\"0\": [\"vertical_and_slash\", 1000, 6096, 0.33], \"1\": [\"stream_llm\", 16, 64, 0.96],\n"
    "  \"2\": [\"block_sparse\", 8, 1, 0.5]},\n"
    " {\"1\": [\"vertical_and_slash\", 30, 800, 0.87], \"3\": [\"vertical_and_slash\", 3500, 100]}]";

static int same_head(const ak_minf_head *a, int kind, int v, int s) {
    return a->kind == kind && a->v == v && a->s == s;
}

static void config_loader(ak_ctx *ctx) {
    ak_minf_head hd[4];
    int32_t nf = -1;
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), 0, 4, hd, &nf), AK_OK);
    CHECK(nf == 3 && same_head(&hd[0], AK_MINF_VS, 1000, 6096) && same_head(&hd[1], AK_MINF_ASHAPE, 16, 64) &&
              same_head(&hd[2], AK_MINF_BLOCK, 100, 0) && same_head(&hd[3], AK_MINF_VS, 1000, 6096),
          "config layer 0: found %d: {%d %d %d} {%d %d %d} {%d %d %d} {%d %d %d}", nf, hd[0].kind, hd[0].v, hd[0].s,
          hd[1].kind, hd[1].v, hd[1].s, hd[2].kind, hd[2].v, hd[2].s, hd[3].kind, hd[3].v, hd[3].s);
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), 1, 4, hd, &nf), AK_OK);
    CHECK(nf == 2 && same_head(&hd[0], AK_MINF_VS, 1000, 6096) && same_head(&hd[1], AK_MINF_VS, 30, 800) &&
              same_head(&hd[2], AK_MINF_VS, 1000, 6096) && same_head(&hd[3], AK_MINF_VS, 3500, 100),
          "config layer 1: found %d", nf);
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), 7, 4, hd, NULL), AK_OK);
    for (int h = 0; h < 4; h++)
        CHECK(same_head(&hd[h], AK_MINF_VS, 1000, 6096), "config layer 7 (absent): head %d not the default", h);
    /* malformed: status, heads untouched, a message */
    static const char *const bad[] = {"",
                                      "{}",
                                      "[1]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3]}",
                                      "[{\"x\": [\"vertical_and_slash\", 1, 2, 3]}]",
                                      "[{\"-1\": [\"vertical_and_slash\", 1, 2, 3]}]",
                                      "[{\"01\": [\"vertical_and_slash\", 1, 2, 3]}]",
                                      "[{\"4\": [\"vertical_and_slash\", 1, 2, 3]}]",
                                      "[{\"\": [\"vertical_and_slash\", 1, 2, 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3], \"0\": [\"stream_llm\", 1, 2, 3]}]",
                                      "[{\"0\": \"vertical_and_slash\"}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3, 4]}]",
                                      "[{\"0\": [\"dense\", 1, 2, 3]}]",
                                      "[{\"0\": [7, 1, 2, 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1.5, 2, 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", -1, 2, 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, \"2\", 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, \"x\"]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 3e9, 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3]}] x",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3]},",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3]}, {\"1\": [\"stream_ll\", 1, 2, 3]}]",
                                      "[{\"0\": [\"vertical_and_slash\", 1, 2, 3]}, 5]"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        for (int h = 0; h < 4; h++) hd[h].kind = 77, hd[h].v = hd[h].s = -7;
        nf = -3;
        ak_status st = ak_minference_load_config(ctx, bad[k], strlen(bad[k]), 0, 4, hd, &nf);
        CHECK(st == AK_ERR_BAD_PLAN, "config '%s': %s, expected AK_ERR_BAD_PLAN", bad[k], ak_status_string(st));
        CHECK(hd[0].kind == 77 && hd[3].s == -7 && nf == -3, "config '%s': outputs written on failure", bad[k]);
        CHECK(ak_ctx_last_error(ctx)[0] != 0, "config '%s': no message", bad[k]);
    }
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), -1, 4, hd, NULL), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), 0, 0, hd, NULL), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_minference_load_config(ctx, NULL, 5, 0, 4, hd, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), 0, 4, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_minference_load_config(NULL, k_config, strlen(k_config), 0, 4, hd, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, 40, 0, 4, hd, NULL), AK_ERR_BAD_PLAN); /* truncated by len */
}

/* The loaded layer drives the plan per head; ratio; starting_layer; info. */
static void config_plan(ak_ctx *ctx) {
    rng r = rng_seed(121);
    problem p;
    if (make_problem(&p, 1, 4, 2, 400, 400, 16, AK_F32, &r) != 0) return;
    ak_minf_head hd[4];
    CHECK_STATUS(ak_minference_load_config(ctx, k_config, strlen(k_config), 0, 4, hd, NULL), AK_OK);
    ak_minference_params mp;
    ak_minference_params_init(&mp);
    mp.heads = hd, mp.n_heads = 4;
    ak_dyn_info info;
    ak_sparse *sp = plan_of(ctx, &p, &mp, &info, "config plan");
    if (sp) {
        uint8_t *m = mask_of(sp, &p, 0, 1); /* stream_llm (16, 64) */
        int64_t bad = -1;
        for (int64_t i = 0; i < 400; i++)
            for (int64_t j = 0; j < 400; j++)
                if (m[i * 400 + j] != (j <= i && (j < 16 || i - j < 64)) && bad < 0) bad = i * 400 + j;
        CHECK(bad < 0, "config plan: head 1 (stream_llm 16, 64) is not the A-shape at row %lld key %lld",
              (long long)(bad / 400), (long long)(bad % 400));
        free(m);
        m = mask_of(sp, &p, 0, 0); /* vertical_and_slash (1000, 6096) clamped to N: dense */
        for (int64_t x = 0; x < 400 * 400; x++)
            if (m[x] != (x % 400 <= x / 400)) {
                CHECK(0, "config plan: head 0 (v, s >= N) not causal-dense at %lld", (long long)x);
                break;
            }
        free(m);
        int lines = 0;
        for (const char *c = info.explain; *c; c++) lines += *c == '\n';
        CHECK(lines == 4 && strstr(info.explain, "block_sparse") && strstr(info.explain, "a_shape"),
              "config plan: explain:\n%s", info.explain);
        CHECK(info.n_dense_heads == 0, "config plan: n_dense_heads %d", info.n_dense_heads);
        ak_sparse_destroy(sp);
    }
    /* ratio 0.5: v 200 -> 100, s 300 -> 150 */
    ak_minference_params mr = params_kind(AK_MINF_VS, 200, 300);
    mr.ratio = 0.5f;
    sp = plan_of(ctx, &p, &mr, NULL, "ratio");
    if (sp) {
        ak_sparse_desc dd;
        ak_sparse_get_desc(sp, &dd);
        int64_t l = list_id(&dd, 0, 2, dd.n_qblocks - 1), nv = dd.col_off[l + 1] - dd.col_off[l], ns = 0;
        for (int64_t e = dd.band_off[l]; e < dd.band_off[l + 1]; e++) ns += dd.band_hi[e] - dd.band_lo[e] + 1;
        CHECK(nv == 100 && ns == 150, "ratio 0.5: %lld verticals, %lld slashes (expected 100, 150)", (long long)nv,
              (long long)ns);
        ak_sparse_destroy(sp);
    }
    /* a huge (finite) ratio: sizes clamp to N, the plan is dense */
    mr.ratio = 1e30f;
    sp = plan_of(ctx, &p, &mr, NULL, "ratio 1e30");
    if (sp) expect_causal(sp, &p, "ratio 1e30"), ak_sparse_destroy(sp);
    /* starting_layer: layer 1 < 2 -> dense, counted and explained */
    mp.layer = 1, mp.starting_layer = 2;
    sp = plan_of(ctx, &p, &mp, &info, "starting_layer");
    if (sp) {
        expect_causal(sp, &p, "starting_layer");
        CHECK(info.n_dense_heads == 4 && strstr(info.explain, "starting_layer"),
              "starting_layer: n_dense %d, explain:\n%s", info.n_dense_heads, info.explain);
        ak_sparse_destroy(sp);
    }
    problem_destroy(&p);
}

/* ak_dyn_plan_named("minference:key=value,..."): the option keys reach the params. Single-method development
 * builds (build-minference*) leave src/dynamic/named.c out: the symbol is weak here and the part is skipped. */
#if defined(__GNUC__)
#pragma weak ak_dyn_plan_named
#endif
static void config_named(ak_ctx *ctx) {
    if (!ak_dyn_plan_named) {
        printf("config: ak_dyn_plan_named absent (single-method build): named options not checked\n");
        return;
    }
    rng r = rng_seed(131);
    problem p;
    if (make_problem(&p, 1, 2, 1, 150, 150, 16, AK_F32, &r) != 0) return;
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    static const char *const ashape[] = {
        "minference:kind=ashape,v=4,s=16", "minference:kind=stream_llm,v=4,s=16,block=32,exact=0",
        "minference:kind=2,v=8,s=32,ratio=0.5,last_q=9,forced_v=1,forced_s=2,min_v=0,min_s=0"};
    for (int k = 0; k < 3; k++) {
        ak_sparse *sp = NULL;
        ak_status st = ak_dyn_plan_named(ctx, ashape[k], &p.d, &t, &sp, NULL);
        CHECK(st == AK_OK && sp, "named '%s': %s (%s)", ashape[k], ak_status_string(st), ak_ctx_last_error(ctx));
        if (!sp) continue;
        uint8_t *m = mask_of(sp, &p, 0, 1);
        int64_t bad = -1;
        for (int64_t x = 0; x < 150 * 150; x++)
            if (m[x] != (x % 150 <= x / 150 && (x % 150 < 4 || x / 150 - x % 150 < 16)) && bad < 0) bad = x;
        CHECK(bad < 0, "named '%s': not the A-shape (4, 16) at row %lld key %lld", ashape[k], (long long)(bad / 150),
              (long long)(bad % 150));
        free(m);
        ak_sparse_destroy(sp);
    }
    static const char *const ok[] = {"minference", "minference:exact=0,kind=vs,v=30,s=60,layer=3,starting_layer=1",
                                     "minference:kind=block_sparse,v=2,block=16,block_dilute=1",
                                     "minference:kind=tri,v=4,s=8,n_last=33"};
    for (int k = 0; k < 4; k++) {
        ak_sparse *sp = NULL;
        ak_status st = ak_dyn_plan_named(ctx, ok[k], &p.d, &t, &sp, NULL);
        CHECK(st == AK_OK && sp, "named '%s': %s (%s)", ok[k], ak_status_string(st), ak_ctx_last_error(ctx));
        ak_sparse_destroy(sp);
    }
    static const char *const bad[] = {"minference:bogus=1", "minference:v=abc",   "minference:kind=foo",
                                      "minference:block=0", "minference:ratio=x", "minference:kind=7",
                                      "minference:exact=2"};
    for (int k = 0; k < 7; k++) {
        ak_sparse *sp = (ak_sparse *)(uintptr_t)0x10;
        ak_status st = ak_dyn_plan_named(ctx, bad[k], &p.d, &t, &sp, NULL);
        CHECK(st == AK_ERR_INVALID_ARGUMENT && sp == NULL,
              "named '%s': %s, expected AK_ERR_INVALID_ARGUMENT and *out NULL", bad[k], ak_status_string(st));
    }
    problem_destroy(&p);
}

static void group_config(ak_ctx *ctx) {
    config_loader(ctx);
    config_plan(ctx);
    config_named(ctx);
}

/* ---- offline pattern search ------------------------------------------------------------------ */

/* Mean recall of a plan over rows >= r0 of every sequence, for query head h (double). */
static double mean_recall_rows(const ak_sparse *sp, const problem *p, int h, int64_t r0) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, d = p->d.head_dim, G = p->d.num_heads_q / p->d.num_heads_kv, n = 0;
    double tot = 0.0, *P = (double *)malloc(sizeof(double) * (size_t)(nk + 1));
    for (int b = 0; b < p->d.batch; b++) {
        double *Q = head_rows(&p->q, b, h, nq, d), *K = head_rows(&p->k, b, h / G, nk, d);
        uint8_t *m = mask_of(sp, p, b, h);
        for (int64_t i = r0; i < nq; i++, n++) {
            dense_row(p, Q, K, i, P);
            for (int64_t j = 0; j < nk; j++) tot += m[i * nk + j] ? P[j] : 0.0;
        }
        free(Q), free(K), free(m);
    }
    free(P);
    return n ? tot / (double)n : 0.0;
}

static void group_search(ak_ctx *ctx) {
    static const int vset[] = {150, 333, 412, 420, 430};
    static const ak_minf_head cands[3] = {{AK_MINF_ASHAPE, 4, 16}, {AK_MINF_VS, 40, 150}, {AK_MINF_BLOCK, 4, 0}};
    rng r = rng_seed(141);
    problem p;
    int N = g_quick ? 320 : 500;
    if (make_problem(&p, 1, 4, 2, N, N, 64, AK_F32, &r) != 0) return;
    plant_vs(&p, 40, vset, 5, &r, 0); /* KV head 0 (query heads 0, 1): verticals and slashes */
    plant_blocks(&p, 64, &r, 1);      /* KV head 1 (query heads 2, 3): key blocks */
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    ak_minference_search_params sp;
    ak_minference_search_params_init(&sp);
    sp.cands = cands, sp.n_cands = 3, sp.row_start = 100;
    ak_minf_head best[4];
    float rec[4];
    ak_status st = ak_minference_search(ctx, &p.d, &t, NULL, &sp, best, rec);
    CHECK(st == AK_OK, "search: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    double mr[3][4] = {{0}};
    if (st == AK_OK) {
        for (int c = 0; c < 3; c++) {
            ak_minference_params mp = params_kind(cands[c].kind, cands[c].v, cands[c].s);
            ak_sparse *pl = plan_of(ctx, &p, &mp, NULL, "search candidate");
            for (int h = 0; h < 4; h++) mr[c][h] = pl ? mean_recall_rows(pl, &p, h, 100) : 0.0;
            ak_sparse_destroy(pl);
        }
        for (int h = 0; h < 4; h++) {
            int want = h < 2 ? 1 : 2, bc = 0;
            for (int c = 1; c < 3; c++) bc = mr[c][h] > mr[bc][h] + 1e-9 ? c : bc;
            printf("search h%d: recall A-shape %.4f, VS %.4f, block %.4f -> kind %d (%.4f)\n", h, mr[0][h], mr[1][h],
                   mr[2][h], best[h].kind, (double)rec[h]);
            CHECK(bc == want && same_head(&best[h], cands[want].kind, cands[want].v, cands[want].s),
                  "search h%d: chose kind %d (%d, %d), expected candidate %d (test's best %d)", h, best[h].kind,
                  best[h].v, best[h].s, want, bc);
            CHECK(fabs((double)rec[h] - mr[bc][h]) <= 1e-4, "search h%d: recall %.6f, the test computes %.6f", h,
                  (double)rec[h], mr[bc][h]);
            CHECK(rec[h] >= 0.99f, "search h%d: best recall %.4f < 0.99 on planted structure", h, (double)rec[h]);
        }
    }
    /* the reference's post-processing: block winners become VS (1000, 6096), A-shape winners VS */
    sp.ref_post = 1;
    CHECK_STATUS(ak_minference_search(ctx, &p.d, &t, NULL, &sp, best, NULL), AK_OK);
    CHECK(same_head(&best[0], AK_MINF_VS, 40, 150) && same_head(&best[3], AK_MINF_VS, 1000, 6096),
          "search ref_post: h0 {%d %d %d} h3 {%d %d %d}", best[0].kind, best[0].v, best[0].s, best[3].kind, best[3].v,
          best[3].s);
    static const ak_minf_head ash[1] = {{AK_MINF_ASHAPE, 4, 16}};
    sp.cands = ash, sp.n_cands = 1;
    CHECK_STATUS(ak_minference_search(ctx, &p.d, &t, NULL, &sp, best, rec), AK_OK);
    CHECK(same_head(&best[1], AK_MINF_VS, 4, 16), "search ref_post: A-shape winner stored as {%d %d %d}", best[1].kind,
          best[1].v, best[1].s);
    for (int h = 0; h < 4; h++)
        CHECK(fabs((double)rec[h] - mr[0][h]) <= 1e-4,
              "search (A-shape only) h%d: recall %.6f, the test computes %.6f over rows >= 100", h, (double)rec[h],
              mr[0][h]);
    /* the reference's default candidates */
    ak_minference_search_params_init(&sp);
    st = ak_minference_search(ctx, &p.d, &t, NULL, &sp, best, rec);
    CHECK(st == AK_OK, "search (default candidates): %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    for (int h = 0; h < 4 && st == AK_OK; h++)
        CHECK(best[h].kind >= AK_MINF_VS && best[h].kind <= AK_MINF_BLOCK && rec[h] > 0.0f && rec[h] <= 1.0f + 1e-6f,
              "search (default candidates) h%d: kind %d recall %g", h, best[h].kind, (double)rec[h]);
    /* invalid */
    ak_minf_head keep = {77, 7, 7}, badc[1] = {{AK_MINF_BLOCK, 0, 0}};
    for (int k = 0; k < 5; k++) {
        ak_minference_search_params_init(&sp);
        const char *field = k == 0   ? "row_start"
                            : k == 1 ? "ref_post"
                            : k == 2 ? "n_cands"
                            : k == 3 ? "cands[0].v"
                                     : "block";
        ak_minference_params mp;
        ak_minference_params_init(&mp);
        if (k == 0) sp.row_start = -1;
        if (k == 1) sp.ref_post = 2;
        if (k == 2) sp.cands = cands, sp.n_cands = 0;
        if (k == 3) sp.cands = badc, sp.n_cands = 1;
        if (k == 4) mp.block = 0;
        best[0] = keep;
        st = ak_minference_search(ctx, &p.d, &t, &mp, &sp, best, NULL);
        CHECK(st == AK_ERR_INVALID_ARGUMENT && strstr(ak_ctx_last_error(ctx), field) && best[0].kind == 77,
              "search invalid %s: %s (%s)", field, ak_status_string(st), ak_ctx_last_error(ctx));
    }
    CHECK_STATUS(ak_minference_search(ctx, &p.d, &t, NULL, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    problem_destroy(&p);
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_MINF_QUICK", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_minference: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    double t0 = tu_now();
    int any = 0;
    struct {
        const char *name;
        void (*fn)(ak_ctx *);
    } groups[] = {{"dense", group_dense}, {"planted", group_planted}, {"brute", group_brute},
                  {"exec", group_exec},   {"threads", group_threads}, {"invalid", group_invalid},
                  {"spec", group_spec},   {"config", group_config},   {"search", group_search}};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        if (strcmp(group, "all") && strcmp(group, groups[g].name)) continue;
        double tg = tu_now();
        groups[g].fn(ctx);
        any = 1;
        printf("group %s: %.2f s\n", groups[g].name, tu_now() - tg);
    }
    ak_ctx_destroy(ctx);
    if (!any) {
        fprintf(stderr,
                "test_dyn_minference: unknown group '%s' (dense, planted, brute, exec, threads, invalid, spec, config, "
                "search, all)\n",
                group);
        return 2;
    }
    char name[80];
    snprintf(name, sizeof name, "test_dyn_minference %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
