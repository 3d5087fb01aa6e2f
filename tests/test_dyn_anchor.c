/*
 * test_dyn_anchor.c — AnchorAttention planner (ak_anchor_plan, ak_anchor_row_anchors; attnkit.h,
 * dynamic-sparse.md §5, docs/dynamic/anchor.md).
 *
 * Everything is checked against a brute-force re-implementation written plainly in this file from the
 * rule in attnkit.h (double precision, row by row, nothing shared with the library). Where a double
 * margin lies within rounding of 0, that key is "don't care" (the library decides in f32).
 *
 * Groups (`test_dyn_anchor <group>`, no argument = all):
 *   anchor   §5.7.3: ak_anchor_row_anchors = brute-force row max over the anchor region, every row,
 *            both regions, odd sizes, GQA, bf16, strided layouts
 *   rule     the plan's element mask (ak_sparse_mask) = the brute-force mask for odd sizes (N = 1, 17,
 *            113, 300, 1023, ...; bs not dividing N; step 1..5), GQA 1/3/4, B = 1/2, both regions, both
 *            list layouts, theta from -inf to +inf; the plan's geometry (n_heads = Hq, block_q, causal);
 *            stripe lists strictly increasing, in [init_end, group start), equal for every block of a
 *            superblock, equal to the brute-force selection (§5.7.4); nq != nk: dense
 *   limits   §5.7.1/2/4/5/6: theta = +inf -> mask all causal and output = ak_attention_ref (dense);
 *            theta = -inf -> init + local only (mask and output vs the in-test double reference);
 *            selected sets monotone in theta (subset chain over 6 thetas); recall of the final set >=
 *            recall of init + local; N < S dense; tail rows dense; N % S == 0 computes every row
 *   quirks   §5.8 regressions, each against an in-test brute-force mask and double attention:
 *            (1a) a key of the init region that the v4 kernels would select again is counted once
 *            (theta = +inf at N = 2S and 3S equals dense attention; a planted init key enters once);
 *            (1b) the block just before the superblock is a candidate (planted key at m*S - 1);
 *            (3) N % S == 0: every row computed (no zero rows), N < S: dense
 *   recall   planted stripes (a sink plus strong keys at random positions) are recovered with
 *            attention-mass recall >= 0.99 with the default parameters (bs 128, step 16, theta 12),
 *            while init + local alone stays far below; also the paper region and small blocks;
 *            prints the recall / density curve over theta
 *   exec     the executor on the plan (NaN-poisoned outputs) vs ak_attention_ref_sparse (f64): f32 /
 *            bf16, GQA, B = 2, both list layouts, nq != nk (dense) incl. nq > nk, strided layouts
 *   threads  plan identical (ak_sparse_to_json) and info.explain identical for 1, 2 and 3 threads
 *   invalid  every invalid parameter / input returns its status, names the field, *out stays NULL; the
 *            option keys through ak_dyn_plan_named ("anchor:bs=16,...") give the direct call's plan
 *
 * AK_DYN_ANCHOR_QUICK=1 (sanitizer builds) runs fewer / smaller cases; AK_DYN_ANCHOR_VERBOSE=1 prints
 * per case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"

static int g_quick, g_verbose;

/* ---- the rule, written from attnkit.h ---------------------------------------------------------- */

typedef struct bgeo {
    int64_t nq, nk, bs, step, S, n_sb, n_full, init_end;
    int region, dense_all;
    double theta;
} bgeo;

static void bgeo_init(bgeo *g, const ak_anchor_params *p, int64_t nq, int64_t nk) {
    g->nq = nq, g->nk = nk;
    g->bs = p->bs, g->step = p->step, g->S = (int64_t)p->bs * p->step;
    g->region = p->region;
    g->theta = p->theta;
    g->dense_all = nq != nk || nq < g->S;
    g->n_sb = g->dense_all ? 0 : nq / g->S;
    g->n_full = g->n_sb * g->S;
    g->init_end = p->region == 0 ? g->S : g->bs;
}

/* Key j in the anchor region A(i) of row i (N = nq = nk)? */
static int in_anchor(const bgeo *g, int64_t i, int64_t j) {
    if (j > i)
        return 0;
    if (g->region == 0)
        return j < g->S || j >= (i / g->S) * g->S;
    return j < g->bs || j >= (i / g->bs) * g->bs;
}

/* Row i of a sparse superblock always sees [0, init_end) and [m*S, i]. */
static int in_spans(const bgeo *g, int64_t i, int64_t j) {
    return j <= i && (j < g->init_end || j >= (i / g->S) * g->S);
}

/* Rows of one (b, h) in double: Q [nq][d], K [nk][d], V [nk][dv]. */
typedef struct head {
    int64_t nq, nk, d, dv;
    double scale;
    double *Q, *K, *V;
} head;

static void head_load(const problem *p, int64_t b, int64_t h, head *H) {
    const ak_attn_desc *d = &p->d;
    int64_t G = d->num_heads_q / d->num_heads_kv;
    H->nq = d->seqlen_q, H->nk = d->seqlen_k, H->d = d->head_dim, H->dv = p->dv;
    H->scale = isnan(d->scale) ? 1.0 / sqrt((double)H->d) : (double)d->scale;
    H->Q = (double *)malloc(sizeof(double) * (size_t)(H->nq * H->d + 1));
    H->K = (double *)malloc(sizeof(double) * (size_t)(H->nk * H->d + 1));
    H->V = (double *)malloc(sizeof(double) * (size_t)(H->nk * H->dv + 1));
    for (int64_t i = 0; i < H->nq; i++)
        for (int64_t c = 0; c < H->d; c++)
            H->Q[i * H->d + c] = ten_get4(&p->q.t, b, h, i, c);
    for (int64_t j = 0; j < H->nk; j++) {
        for (int64_t c = 0; c < H->d; c++)
            H->K[j * H->d + c] = ten_get4(&p->k.t, b, h / G, j, c);
        for (int64_t c = 0; c < H->dv; c++)
            H->V[j * H->dv + c] = ten_get4(&p->v.t, b, h / G, j, c);
    }
}

static void head_free(head *H) { free(H->Q), free(H->K), free(H->V); }

static double logit(const head *H, const double *q, int64_t j) {
    double s = 0.0;
    for (int64_t c = 0; c < H->d; c++)
        s += q[c] * H->K[j * H->d + c];
    return H->scale * s;
}

/* xa(i) = max over A(i) of the scaled logit. */
static double bf_anchor(const bgeo *g, const head *H, int64_t i) {
    double mx = -INFINITY;
    for (int64_t j = 0; j <= i; j++)
        if (in_anchor(g, i, j)) {
            double s = logit(H, H->Q + i * H->d, j);
            mx = s > mx ? s : mx;
        }
    return mx;
}

/* Stripe decision of superblock m for every key: sel[j] (1 = stripe), care[j] (0 = the margin is within
 * rounding of 0: either answer is right). Keys outside the candidates [init_end, m*S): sel 0, care 1. */
static void bf_select(const bgeo *g, const head *H, int64_t m, uint8_t *sel, uint8_t *care) {
    int64_t d = H->d, c0 = g->init_end, c1 = m * g->S;
    for (int64_t j = 0; j < H->nk; j++)
        sel[j] = 0, care[j] = 1;
    if (c1 <= c0)
        return;
    double *qbar = (double *)calloc((size_t)(g->step * d), sizeof(double)),
           *abar = (double *)calloc((size_t)g->step, sizeof(double));
    for (int64_t B = 0; B < g->step; B++) {
        for (int64_t r = 0; r < g->bs; r++) {
            int64_t i = m * g->S + B * g->bs + r;
            abar[B] += bf_anchor(g, H, i) / (double)g->bs;
            for (int64_t c = 0; c < d; c++)
                qbar[B * d + c] += H->Q[i * d + c] / (double)g->bs;
        }
    }
    for (int64_t j = c0; j < c1; j++) {
        if (g->theta == INFINITY || g->theta == -INFINITY) {
            sel[j] = g->theta > 0;
            continue;
        }
        int s = 0, unsure = 0;
        for (int64_t B = 0; B < g->step; B++) {
            double x = logit(H, qbar + B * d, j), mag = 0.0;
            for (int64_t c = 0; c < d; c++)
                mag += fabs(qbar[B * d + c] * H->K[j * d + c]);
            double margin = x + g->theta - abar[B],
                   tol = 2e-5 * (1.0 + fabs(abar[B]) + fabs(g->theta) + H->scale * mag);
            if (margin >= tol)
                s = 1;
            else if (margin > -tol)
                unsure = 1;
        }
        sel[j] = (uint8_t)s;
        care[j] = (uint8_t)(s || !unsure);
    }
    free(qbar), free(abar);
}

/* Expected mask of (b, h): mask [nq][nk]; care [nq][nk] (0 = either). */
static void bf_mask(const bgeo *g, const head *H, uint8_t *mask, uint8_t *care) {
    int64_t nq = g->nq, nk = g->nk;
    uint8_t *sel = (uint8_t *)malloc((size_t)nk + 1), *sc = (uint8_t *)malloc((size_t)nk + 1);
    for (int64_t i = 0; i < nq; i++) {
        int64_t pos = i + nk - nq;
        for (int64_t j = 0; j < nk; j++)
            mask[i * nk + j] = j <= pos, care[i * nk + j] = 1;
    }
    for (int64_t m = 0; m < g->n_sb; m++) {
        bf_select(g, H, m, sel, sc);
        for (int64_t i = m * g->S; i < (m + 1) * g->S; i++)
            for (int64_t j = 0; j < nk; j++) {
                int cand = j >= g->init_end && j < m * g->S;
                mask[i * nk + j] = (uint8_t)(in_spans(g, i, j) || (cand && sel[j]));
                care[i * nk + j] = sc[j];
            }
    }
    free(sel), free(sc);
}

/* Double attention of row i of H over the keys with mrow[j] != 0: o [dv], returns LSE (-inf: none). */
static double bf_attend(const head *H, int64_t i, const uint8_t *mrow, double *o) {
    double mx = -INFINITY, sum = 0.0;
    double *s = (double *)malloc(sizeof(double) * (size_t)(H->nk + 1));
    for (int64_t c = 0; c < H->dv; c++)
        o[c] = 0.0;
    for (int64_t j = 0; j < H->nk; j++) {
        s[j] = mrow[j] ? logit(H, H->Q + i * H->d, j) : -INFINITY;
        mx = s[j] > mx ? s[j] : mx;
    }
    if (mx == -INFINITY) {
        free(s);
        return -INFINITY;
    }
    for (int64_t j = 0; j < H->nk; j++)
        if (mrow[j]) {
            double e = exp(s[j] - mx);
            sum += e;
            for (int64_t c = 0; c < H->dv; c++)
                o[c] += e * H->V[j * H->dv + c];
        }
    for (int64_t c = 0; c < H->dv; c++)
        o[c] /= sum;
    free(s);
    return mx + log(sum);
}

/* Dense causal probabilities of row i (N = nq = nk), p [nk]. */
static void bf_probs(const head *H, int64_t i, double *p) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < H->nk; j++) {
        p[j] = j <= i ? logit(H, H->Q + i * H->d, j) : -INFINITY;
        mx = p[j] > mx ? p[j] : mx;
    }
    for (int64_t j = 0; j < H->nk; j++) {
        p[j] = j <= i ? exp(p[j] - mx) : 0.0;
        sum += p[j];
    }
    for (int64_t j = 0; j < H->nk; j++)
        p[j] /= sum;
}

/* ---- problems ------------------------------------------------------------------------------------ */

typedef struct acase {
    int32_t nq, nk, B, Hkv, G, d, dv;
    ak_dtype dt_in, dt_out;
    tlayout lay;
    double amp;              /* q, k entries uniform in [-amp, amp] */
    int n_plant;             /* planted strong keys besides key 0 (0 = none, -1 = not even key 0) */
    double plant_q, plant_k; /* q_i[u] += plant_q, planted k_j[u] = plant_k (u = a per-(b, kv head) axis) */
    int32_t plant_at[8];     /* explicit planted keys (-1 = unused), in addition to the random ones */
    ak_anchor_params p;
} acase;

static void case_default(acase *c) {
    memset(c, 0, sizeof *c);
    c->B = 1, c->Hkv = 1, c->G = 1, c->d = 16;
    c->dt_in = c->dt_out = AK_F32;
    c->lay = LAY_CONTIG;
    c->amp = 1.0;
    c->n_plant = 0;
    for (int x = 0; x < 8; x++)
        c->plant_at[x] = -1;
    ak_anchor_params_init(&c->p);
}

static void case_desc(const acase *c, ak_attn_desc *d) {
    ak_attn_desc_init(d);
    d->batch = c->B, d->num_heads_kv = c->Hkv, d->num_heads_q = c->Hkv * c->G;
    d->seqlen_q = c->nq, d->seqlen_k = c->nk;
    d->head_dim = c->d, d->head_dim_v = c->dv;
    d->dtype_q = d->dtype_kv = c->dt_in;
    d->dtype_o = c->dt_out;
    d->causal = 1;
    d->return_lse = 1;
}

static int case_problem(const acase *c, rng *r, problem *p) {
    ak_attn_desc d;
    case_desc(c, &d);
    problem_opts po;
    problem_opts_default(&po);
    po.lay_q = po.lay_k = po.lay_v = c->lay;
    po.amp_qk = c->amp;
    if (problem_create(p, &d, 0, 0, &po, r) != 0)
        return -1;
    if (c->n_plant < 0 && c->plant_at[0] < 0)
        return 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t kh = 0; kh < c->Hkv; kh++) {
            int64_t u = (b * 7 + kh * 3) % c->d;
            for (int64_t g = 0; g < c->G; g++)
                for (int64_t i = 0; i < c->nq; i++) {
                    int64_t h = kh * c->G + g;
                    ten_set4(&p->q.t, b, h, i, u, ten_get4(&p->q.t, b, h, i, u) + c->plant_q);
                }
            if (c->n_plant >= 0 && c->nk > 0)
                ten_set4(&p->k.t, b, kh, 0, u, c->plant_k);
            for (int x = 0; x < c->n_plant && c->nk > 0; x++)
                ten_set4(&p->k.t, b, kh, rng_int(r, c->nk), u, c->plant_k);
            for (int x = 0; x < 8; x++)
                if (c->plant_at[x] >= 0 && c->plant_at[x] < c->nk)
                    ten_set4(&p->k.t, b, kh, c->plant_at[x], u, c->plant_k);
        }
    return 0;
}

static void case_str(const acase *c, char *buf, size_t n) {
    snprintf(buf, n,
             "nq=%d nk=%d B=%d Hkv=%d G=%d d=%d %s bs=%d step=%d theta=%g region=%d sb_lists=%d amp=%g plant=%d", c->nq,
             c->nk, c->B, c->Hkv, c->G, c->d, tu_dtype_short(c->dt_in), c->p.bs, c->p.step, (double)c->p.theta,
             c->p.region, c->p.superblock_lists, c->amp, c->n_plant);
}

static ak_status plan_of(ak_ctx *ctx, const problem *p, const ak_anchor_params *ap, ak_sparse **sp, ak_dyn_info *info) {
    ak_attn_tensors t = problem_tensors(p, &p->o, NULL);
    return ak_anchor_plan(ctx, &p->d, &t, ap, sp, info);
}

/* ---- checks ---------------------------------------------------------------------------------------- */

/* Plan mask of every (b, h) vs the brute-force one; returns the number of mismatching cared pairs. */
static int64_t check_mask(ak_ctx *ctx, const problem *p, const ak_sparse *sp, const bgeo *g, const char *tag) {
    int64_t nq = p->d.seqlen_q, nk = p->d.seqlen_k, bad = 0, dontcare = 0;
    size_t n = (size_t)(nq * nk) + 1;
    uint8_t *got = (uint8_t *)malloc(n), *want = (uint8_t *)malloc(n), *care = (uint8_t *)malloc(n);
    for (int64_t b = 0; b < p->d.batch; b++)
        for (int64_t h = 0; h < p->d.num_heads_q; h++) {
            head H;
            head_load(p, b, h, &H);
            bf_mask(g, &H, want, care);
            ak_status st = ak_sparse_mask(sp, (int32_t)b, (int32_t)h, got);
            CHECK(st == AK_OK, "%s: ak_sparse_mask: %s", tag, ak_status_string(st));
            int64_t first = -1;
            for (int64_t x = 0; x < nq * nk; x++) {
                dontcare += !care[x];
                if (care[x] && got[x] != want[x]) {
                    if (first < 0)
                        first = x;
                    bad++;
                }
            }
            if (first >= 0)
                CHECK(0,
                      "%s: b%lld h%lld: %lld pairs differ from the brute-force rule, first (row %lld, key %lld): plan "
                      "%d, rule %d",
                      tag, (long long)b, (long long)h, (long long)bad, (long long)(first / nk), (long long)(first % nk),
                      got[first], want[first]);
            head_free(&H);
        }
    if (g_verbose)
        printf("%s: %lld don't-care pairs\n", tag, (long long)dontcare);
    free(got), free(want), free(care);
    return bad;
}

/* Plan geometry and the stripe lists: strictly increasing, in [init_end, m*S), equal for every list of
 * one superblock; spans exactly the rule's. */
static void check_lists(const ak_sparse *sp, const bgeo *g, int32_t B, int32_t Hq, int sb_lists, const char *tag) {
    ak_sparse_desc sd;
    CHECK_STATUS(ak_sparse_get_desc(sp, &sd), AK_OK);
    int64_t bq = sb_lists ? g->S : g->bs;
    CHECK(sd.n_batch == B && sd.n_heads == Hq && sd.causal == 1 && sd.nq == g->nq && sd.nk == g->nk,
          "%s: plan geometry", tag);
    CHECK(sd.block_q == bq && sd.qrow_off == NULL, "%s: block_q = %d, expected %lld (fixed blocks)", tag, sd.block_q,
          (long long)bq);
    int64_t nqb = sd.n_qblocks;
    CHECK(nqb == (g->nq + bq - 1) / bq, "%s: n_qblocks = %lld", tag, (long long)nqb);
    if (!sd.col_off)
        return;
    for (int64_t r = 0; r < (int64_t)B * Hq * nqb; r++) {
        int64_t r0 = (r % nqb) * bq, m = r0 / g->S;
        const int32_t *cv = sd.col_idx + sd.col_off[r];
        int64_t nc = sd.col_off[r + 1] - sd.col_off[r];
        if (g->dense_all || r0 >= g->n_full) {
            CHECK(nc == 0, "%s: list %lld (dense rows) has %lld cols", tag, (long long)r, (long long)nc);
            continue;
        }
        for (int64_t x = 0; x < nc; x++) {
            CHECK(cv[x] >= g->init_end && cv[x] < m * g->S, "%s: list %lld: stripe %d outside [%lld, %lld)", tag,
                  (long long)r, cv[x], (long long)g->init_end, (long long)(m * g->S));
            if (x)
                CHECK(cv[x] > cv[x - 1], "%s: list %lld: stripes not strictly increasing", tag, (long long)r);
        }
        if (!sb_lists && r0 % g->S != 0) { /* same list as the superblock's first block */
            int64_t r1 = r - (r0 % g->S) / g->bs;
            int64_t n1 = sd.col_off[r1 + 1] - sd.col_off[r1];
            int same =
                n1 == nc && (nc == 0 || memcmp(cv, sd.col_idx + sd.col_off[r1], sizeof(int32_t) * (size_t)nc) == 0);
            CHECK(same, "%s: list %lld: stripes differ from block 0 of its superblock", tag, (long long)r);
        }
    }
}

/* Executor output (poisoned first) vs reference outputs ro [B][Hq][nq][dv], rl [B][Hq][nq] (f64).
 * Returns 1 on pass. */
static int check_outputs(const problem *p, const double *ro, const double *rl, const char *tag) {
    const ak_attn_desc *d = &p->d;
    int64_t B = d->batch, Hq = d->num_heads_q, nq = d->seqlen_q, dv = p->dv;
    double omax = 0.0, lmax = 0.0, eo = 0.0, el = 0.0;
    for (int64_t x = 0; x < B * Hq * nq * dv; x++)
        omax = fmax(omax, fabs(ro[x]));
    for (int64_t x = 0; x < B * Hq * nq; x++)
        if (isfinite(rl[x]))
            lmax = fmax(lmax, fabs(rl[x]));
    double tol_o = 5e-5 * fmax(1.0, omax) + (d->dtype_o == AK_F32 ? 0.0 : tu_ulp(d->dtype_o, omax));
    double tol_l = 5e-5 * fmax(1.0, lmax);
    int ok = 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < nq; i++) {
                int64_t row = (b * Hq + h) * nq + i;
                double l = ten_get3(&p->lse.t, b, h, i);
                if (isinf(rl[row]) != isinf(l) || (!isinf(l) && !(fabs(l - rl[row]) <= tol_l))) {
                    if (ok)
                        CHECK(0, "%s: LSE row (b%lld h%lld i%lld) = %g, reference %g", tag, (long long)b, (long long)h,
                              (long long)i, l, rl[row]);
                    ok = 0;
                }
                el = isinf(l) ? el : fmax(el, fabs(l - rl[row]));
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
    if (g_verbose)
        printf("%s: max err O %.3g (tol %.3g), LSE %.3g\n", tag, eo, tol_o, el);
    return ok;
}

/* Run the executor on sp (outputs poisoned first) and compare with ak_attention_ref_sparse (f64). */
static int exec_vs_ref(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    const ak_attn_desc *d = &p->d;
    int64_t nrow = (int64_t)d->batch * d->num_heads_q * d->seqlen_q;
    double *ro = (double *)malloc(sizeof(double) * (size_t)(nrow * p->dv + 1)),
           *rl = (double *)malloc(sizeof(double) * (size_t)(nrow + 1));
    for (int64_t x = 0; x < nrow * p->dv; x++)
        ro[x] = NAN;
    for (int64_t x = 0; x < nrow; x++)
        rl[x] = NAN;
    ak_attn_desc dr = *d;
    dr.dtype_o = AK_F64;
    ak_attn_tensors tr = problem_tensors(p, &p->o, &p->lse);
    tr.o = ak_tensor_4d(ro, AK_F64, d->batch, d->num_heads_q, d->seqlen_q, p->dv);
    tr.lse = ak_tensor_3d(rl, AK_F64, d->batch, d->num_heads_q, d->seqlen_q);
    ak_status st = ak_attention_ref_sparse(ctx, &dr, sp, &tr);
    CHECK(st == AK_OK, "%s: ak_attention_ref_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    tbuf_poison(&p->o);
    tbuf_poison(&p->lse);
    ak_plan *pl = NULL;
    st = ak_plan_create_sparse(ctx, d, sp, &pl);
    CHECK(st == AK_OK, "%s: ak_plan_create_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    int ok = 0;
    if (pl) {
        ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
        st = ak_attention_run(pl, &t, NULL, 0);
        CHECK(st == AK_OK, "%s: ak_attention_run: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        ok = st == AK_OK && check_outputs(p, ro, rl, tag);
        ak_plan_destroy(pl);
    }
    free(ro), free(rl);
    return ok;
}

/* Executor output vs in-test double attention with the brute-force mask (nothing from the plan). */
static int exec_vs_bruteforce(ak_ctx *ctx, problem *p, const ak_sparse *sp, const bgeo *g, const char *tag) {
    const ak_attn_desc *d = &p->d;
    int64_t nq = d->seqlen_q, nk = d->seqlen_k, Hq = d->num_heads_q, nrow = (int64_t)d->batch * Hq * nq;
    double *ro = (double *)malloc(sizeof(double) * (size_t)(nrow * p->dv + 1)),
           *rl = (double *)malloc(sizeof(double) * (size_t)(nrow + 1));
    uint8_t *mask = (uint8_t *)malloc((size_t)(nq * nk) + 1), *care = (uint8_t *)malloc((size_t)(nq * nk) + 1);
    int64_t unsure = 0;
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < Hq; h++) {
            head H;
            head_load(p, b, h, &H);
            bf_mask(g, &H, mask, care);
            for (int64_t x = 0; x < nq * nk; x++)
                unsure += !care[x];
            for (int64_t i = 0; i < nq; i++) {
                int64_t row = (b * Hq + h) * nq + i;
                rl[row] = bf_attend(&H, i, mask + i * nk, ro + row * p->dv);
            }
            head_free(&H);
        }
    CHECK(unsure == 0, "%s: the case has %lld undecided pairs (make the planted margins larger)", tag,
          (long long)unsure);
    tbuf_poison(&p->o);
    tbuf_poison(&p->lse);
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create_sparse(ctx, d, sp, &pl);
    CHECK(st == AK_OK, "%s: ak_plan_create_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    int ok = 0;
    if (pl) {
        ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
        st = ak_attention_run(pl, &t, NULL, 0);
        CHECK(st == AK_OK, "%s: ak_attention_run: %s", tag, ak_status_string(st));
        ok = st == AK_OK && check_outputs(p, ro, rl, tag);
        ak_plan_destroy(pl);
    }
    free(ro), free(rl), free(mask), free(care);
    return ok;
}

/* Mean / min attention-mass recall over rows [r0, r1) (every `stride`-th) of head (b, h) for the plan's
 * mask and for init + local alone. */
typedef struct recall_t {
    double mean, min, mean_il, min_il, density;
} recall_t;

static recall_t measure_recall(const problem *p, const ak_sparse *sp, const bgeo *g, int64_t b, int64_t h, int64_t r0,
                               int64_t r1, int64_t stride) {
    int64_t N = p->d.seqlen_q;
    recall_t R = {0.0, 1.0, 0.0, 1.0, 0.0};
    uint8_t *mask = (uint8_t *)malloc((size_t)(N * N) + 1);
    double *pr = (double *)malloc(sizeof(double) * (size_t)(N + 1));
    ak_sparse_mask(sp, (int32_t)b, (int32_t)h, mask);
    head H;
    head_load(p, b, h, &H);
    int64_t rows = 0;
    double pairs = 0.0, causal = 0.0;
    for (int64_t i = r0; i < r1; i += stride, rows++) {
        bf_probs(&H, i, pr);
        double rc = 0.0, ril = 0.0;
        for (int64_t j = 0; j <= i; j++) {
            rc += mask[i * N + j] ? pr[j] : 0.0;
            ril += in_spans(g, i, j) ? pr[j] : 0.0;
            pairs += mask[i * N + j];
        }
        causal += (double)(i + 1);
        R.mean += rc, R.mean_il += ril;
        R.min = fmin(R.min, rc), R.min_il = fmin(R.min_il, ril);
    }
    R.mean /= (double)(rows ? rows : 1), R.mean_il /= (double)(rows ? rows : 1);
    R.density = causal > 0 ? pairs / causal : 0.0;
    head_free(&H);
    free(mask), free(pr);
    return R;
}

/* ---- groups --------------------------------------------------------------------------------------- */

static const int k_lens[] = {1, 2, 17, 31, 64, 100, 113, 128, 129, 300, 333, 512, 1023};
#define NLENS ((int)(sizeof k_lens / sizeof k_lens[0]))
static const int k_bs[] = {1, 3, 7, 8, 16, 20};
static const double k_theta[] = {-INFINITY, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 12.0, INFINITY};

static void random_case(rng *r, acase *c, int32_t maxlen) {
    case_default(c);
    int32_t N = rng_pick(r, k_lens, NLENS);
    if (N > maxlen)
        N = 1 + rng_int(r, maxlen);
    c->nq = c->nk = N;
    c->p.bs = rng_pick(r, k_bs, 6);
    c->p.step = 1 + rng_int(r, 5);
    while (c->p.bs * c->p.step > N && rng_chance(r, 0.8) && c->p.bs > 1) /* mostly several superblocks */
        c->p.bs = c->p.bs / 2 > 0 ? c->p.bs / 2 : 1;
    c->p.theta = (float)k_theta[rng_int(r, 9)];
    c->p.region = rng_int(r, 2);
    c->p.superblock_lists = rng_chance(r, 0.3);
    static const int gs[] = {1, 3, 4};
    c->G = rng_pick(r, gs, 3);
    c->Hkv = 1 + rng_int(r, 2);
    c->B = 1 + rng_chance(r, 0.3);
    static const int ds[] = {1, 5, 16, 33};
    c->d = rng_pick(r, ds, 4);
    c->amp = rng_pick(r, (const int[]){1, 2, 3}, 3);
    c->dt_in = rng_chance(r, 0.25) ? AK_BF16 : AK_F32;
    c->lay = rng_chance(r, 0.3) ? LAY_PERMUTED : rng_chance(r, 0.3) ? LAY_PADDED : LAY_CONTIG;
    if (rng_chance(r, 0.5)) { /* planted structure: a sink and strong keys */
        c->n_plant = rng_int(r, 6);
        c->plant_q = 1.0 + rng_int(r, 3);
        c->plant_k = 2.0 + rng_int(r, 4);
    } else {
        c->n_plant = -1;
    }
}

static void group_anchor(ak_ctx *ctx) {
    int ncase = g_quick ? 12 : 40, fails = 0;
    for (int cs = 0; cs < ncase; cs++) {
        rng r = rng_seed(7100000u + (uint64_t)cs);
        acase c;
        random_case(&r, &c, 600);
        problem p;
        if (case_problem(&c, &r, &p) != 0) {
            CHECK(0, "anchor case %d: problem_create", cs);
            continue;
        }
        char desc[256], tag[320];
        case_str(&c, desc, sizeof desc);
        snprintf(tag, sizeof tag, "anchor case %d (%s)", cs, desc);
        int64_t N = c.nq, Hq = (int64_t)c.Hkv * c.G, n = (int64_t)c.B * Hq * N;
        float *an = (float *)malloc(sizeof(float) * (size_t)(n + 1));
        ak_attn_tensors t = problem_tensors(&p, &p.o, NULL);
        ak_status st = ak_anchor_row_anchors(ctx, &p.d, &t, &c.p, an);
        CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        bgeo g;
        bgeo_init(&g, &c.p, N, N);
        double worst = 0.0;
        for (int64_t b = 0; b < c.B && st == AK_OK; b++)
            for (int64_t h = 0; h < Hq; h++) {
                head H;
                head_load(&p, b, h, &H);
                for (int64_t i = 0; i < N; i++) {
                    double want = bf_anchor(&g, &H, i), got = an[(b * Hq + h) * N + i];
                    double e = fabs(got - want) / (1.0 + fabs(want));
                    worst = fmax(worst, isnan(e) ? INFINITY : e);
                }
                head_free(&H);
            }
        CHECK(worst <= 2e-5, "%s: row anchors differ from the brute-force max by %g (relative)", tag, worst);
        fails += worst > 2e-5;
        free(an);
        problem_destroy(&p);
    }
    printf("anchor: %d of %d cases passed\n", ncase - fails, ncase);
}

static void group_rule(ak_ctx *ctx) {
    int ncase = g_quick ? 16 : 45, fails = 0;
    for (int cs = 0; cs < ncase; cs++) {
        rng r = rng_seed(7200000u + (uint64_t)cs);
        acase c;
        random_case(&r, &c, 1023);
        if (cs % 10 == 9) { /* decode / chunked prefill / nq > nk: dense */
            c.nq = rng_chance(&r, 0.5) ? 1 : 1 + rng_int(&r, c.nk + 40);
            if (c.nq == c.nk)
                c.nq++;
        }
        problem p;
        if (case_problem(&c, &r, &p) != 0) {
            CHECK(0, "rule case %d: problem_create", cs);
            continue;
        }
        char desc[256], tag[320];
        case_str(&c, desc, sizeof desc);
        snprintf(tag, sizeof tag, "rule case %d (%s)", cs, desc);
        ak_sparse *sp = NULL;
        ak_dyn_info info;
        ak_status st = plan_of(ctx, &p, &c.p, &sp, &info);
        CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        if (sp) {
            bgeo g;
            bgeo_init(&g, &c.p, c.nq, c.nk);
            int64_t bad = check_mask(ctx, &p, sp, &g, tag);
            check_lists(sp, &g, c.B, c.Hkv * c.G, c.p.superblock_lists, tag);
            fails += bad > 0;
            CHECK(info.size == sizeof info && info.est_seconds >= 0.0 && info.explain[0] != 0, "%s: info not filled",
                  tag);
            CHECK(info.n_dense_heads == (g.dense_all ? c.Hkv * c.G : 0), "%s: n_dense_heads = %d", tag,
                  info.n_dense_heads);
            CHECK(strncmp(ak_sparse_name(sp), "anchor(", 7) == 0, "%s: name '%s'", tag, ak_sparse_name(sp));
            ak_sparse_stats sst;
            CHECK_STATUS(ak_sparse_get_stats(sp, &sst), AK_OK);
            CHECK(fabs(sst.density - info.density) <= 1e-12, "%s: info.density %.15g, plan stats %.15g", tag,
                  info.density, sst.density);
            if (g_verbose)
                printf("%s: density %.3f\n%s", tag, info.density, info.explain);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
    printf("rule: %d of %d cases passed\n", ncase - fails, ncase);
}

/* Plan of case c (with theta) on problem p; NULL on failure (reported). */
static ak_sparse *plan_theta(ak_ctx *ctx, const problem *p, const acase *c, double theta, const char *tag) {
    ak_anchor_params ap = c->p;
    ap.theta = (float)theta;
    ak_sparse *sp = NULL;
    ak_status st = plan_of(ctx, p, &ap, &sp, NULL);
    CHECK(st == AK_OK, "%s: theta %g: %s (%s)", tag, theta, ak_status_string(st), ak_ctx_last_error(ctx));
    return sp;
}

/* Dense causal output: ak_attention_ref of p into ro/rl (f64). */
static void dense_ref(ak_ctx *ctx, const problem *p, double *ro, double *rl) {
    const ak_attn_desc *d = &p->d;
    ak_attn_desc dr = *d;
    dr.dtype_o = AK_F64;
    ak_attn_tensors tr = problem_tensors(p, &p->o, &p->lse);
    tr.o = ak_tensor_4d(ro, AK_F64, d->batch, d->num_heads_q, d->seqlen_q, p->dv);
    tr.lse = ak_tensor_3d(rl, AK_F64, d->batch, d->num_heads_q, d->seqlen_q);
    CHECK_STATUS(ak_attention_ref(ctx, &dr, &tr), AK_OK);
}

/* Mask of sp for (b, h) equals causal. */
static int mask_is_causal(const ak_sparse *sp, int64_t b, int64_t h, int64_t nq, int64_t nk) {
    uint8_t *m = (uint8_t *)malloc((size_t)(nq * nk) + 1);
    ak_sparse_mask(sp, (int32_t)b, (int32_t)h, m);
    int ok = 1;
    for (int64_t i = 0; i < nq && ok; i++)
        for (int64_t j = 0; j < nk; j++)
            if (m[i * nk + j] != (j <= i + nk - nq)) {
                ok = 0;
                break;
            }
    free(m);
    return ok;
}

/* theta = +inf (or N < S): the plan is dense causal and the executor output equals ak_attention_ref. */
static void expect_dense(ak_ctx *ctx, problem *p, const ak_sparse *sp, const char *tag) {
    const ak_attn_desc *d = &p->d;
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < d->num_heads_q; h++)
            CHECK(mask_is_causal(sp, b, h, d->seqlen_q, d->seqlen_k), "%s: b%lld h%lld: mask is not all causal", tag,
                  (long long)b, (long long)h);
    int64_t nrow = (int64_t)d->batch * d->num_heads_q * d->seqlen_q;
    double *ro = (double *)malloc(sizeof(double) * (size_t)(nrow * p->dv + 1)),
           *rl = (double *)malloc(sizeof(double) * (size_t)(nrow + 1));
    dense_ref(ctx, p, ro, rl);
    tbuf_poison(&p->o);
    tbuf_poison(&p->lse);
    ak_plan *pl = NULL;
    CHECK_STATUS(ak_plan_create_sparse(ctx, d, sp, &pl), AK_OK);
    if (pl) {
        ak_attn_tensors t = problem_tensors(p, &p->o, &p->lse);
        CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
        check_outputs(p, ro, rl, tag);
        ak_plan_destroy(pl);
    }
    free(ro), free(rl);
}

/* cols of every list of a is a subset of b's. */
static int cols_subset(const ak_sparse *a, const ak_sparse *b) {
    ak_sparse_desc x, y;
    ak_sparse_get_desc(a, &x);
    ak_sparse_get_desc(b, &y);
    int64_t R = (int64_t)x.n_batch * x.n_heads * x.n_qblocks;
    for (int64_t r = 0; r < R; r++) {
        int64_t k = y.col_off[r];
        for (int64_t e = x.col_off[r]; e < x.col_off[r + 1]; e++) {
            while (k < y.col_off[r + 1] && y.col_idx[k] < x.col_idx[e])
                k++;
            if (k == y.col_off[r + 1] || y.col_idx[k] != x.col_idx[e])
                return 0;
        }
    }
    return 1;
}

static void group_limits(ak_ctx *ctx) {
    /* §5.7.1: theta = +inf -> dense causal, for both regions and list layouts, with a tail and N % S == 0 */
    static const int lens[] = {300, 256, 97};
    for (int cs = 0; cs < 6; cs += g_quick ? 2 : 1) {
        rng r = rng_seed(7300000u + (uint64_t)cs);
        acase c;
        case_default(&c);
        c.nq = c.nk = lens[cs % 3];
        c.p.bs = 16, c.p.step = 4, c.p.region = cs % 2, c.p.superblock_lists = cs / 3;
        c.Hkv = 2, c.G = 2, c.d = 24, c.n_plant = 3, c.plant_q = 2, c.plant_k = 3;
        c.dt_in = cs == 5 ? AK_BF16 : AK_F32;
        problem p;
        if (case_problem(&c, &r, &p) != 0)
            continue;
        char tag[96];
        snprintf(tag, sizeof tag, "limits +inf case %d (N=%d region %d)", cs, c.nq, c.p.region);
        ak_sparse *sp = plan_theta(ctx, &p, &c, INFINITY, tag);
        if (sp)
            expect_dense(ctx, &p, sp, tag);
        ak_sparse_destroy(sp);
        /* §5.7.2: theta = -inf -> exactly init + local (brute-force mask and double attention) */
        snprintf(tag, sizeof tag, "limits -inf case %d (N=%d region %d)", cs, c.nq, c.p.region);
        sp = plan_theta(ctx, &p, &c, -INFINITY, tag);
        if (sp) {
            bgeo g;
            c.p.theta = -INFINITY;
            bgeo_init(&g, &c.p, c.nq, c.nk);
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            CHECK(sd.col_off[(int64_t)sd.n_batch * sd.n_heads * sd.n_qblocks] == 0, "%s: stripes with theta = -inf",
                  tag);
            check_mask(ctx, &p, sp, &g, tag);
            exec_vs_bruteforce(ctx, &p, sp, &g, tag);
            ak_sparse_destroy(sp);
        }
        problem_destroy(&p);
    }
    /* §5.7.4/5: monotone in theta; recall(final) >= recall(init + local); the recall / density curve */
    for (int cs = 0; cs < (g_quick ? 2 : 4); cs++) {
        rng r = rng_seed(7310000u + (uint64_t)cs);
        acase c;
        case_default(&c);
        c.nq = c.nk = 400 + 37 * cs;
        c.p.bs = 8 + 4 * cs, c.p.step = 3, c.p.region = cs % 2;
        c.Hkv = 1, c.G = 2, c.d = 16, c.amp = 1.5, c.n_plant = 5, c.plant_q = 1.5, c.plant_k = 4;
        problem p;
        if (case_problem(&c, &r, &p) != 0)
            continue;
        static const double th[] = {-INFINITY, 0.0, 1.0, 2.0, 4.0, 12.0, INFINITY};
        ak_sparse *prev = NULL;
        double prev_rec = -1.0, prev_den = -1.0;
        bgeo g;
        bgeo_init(&g, &c.p, c.nq, c.nk);
        char tag[96];
        snprintf(tag, sizeof tag, "limits monotone case %d", cs);
        for (int k = 0; k < 7; k++) {
            ak_sparse *sp = plan_theta(ctx, &p, &c, th[k], tag);
            if (!sp)
                break;
            if (prev)
                CHECK(cols_subset(prev, sp), "%s: stripes(theta %g) not a subset of stripes(theta %g)", tag, th[k - 1],
                      th[k]);
            recall_t R = measure_recall(&p, sp, &g, 0, 1, 0, g.n_full, 1);
            CHECK(R.min >= R.min_il - 1e-12 && R.mean >= R.mean_il - 1e-12,
                  "%s: theta %g: recall %g below init+local %g", tag, th[k], R.mean, R.mean_il);
            if (k == 0)
                CHECK(fabs(R.mean - R.mean_il) < 1e-12, "%s: theta -inf: recall %g != init+local %g", tag, R.mean,
                      R.mean_il);
            CHECK(R.mean >= prev_rec - 1e-12 && R.density >= prev_den - 1e-12,
                  "%s: theta %g: recall / density decreased", tag, th[k]);
            if (k == 6)
                CHECK(fabs(R.mean - 1.0) < 1e-9 && fabs(R.density - 1.0) < 1e-12,
                      "%s: theta +inf: recall %g density %g", tag, R.mean, R.density);
            printf("  %s theta %5g: recall mean %.4f min %.4f (init+local %.4f), density %.3f\n", tag, th[k], R.mean,
                   R.min, R.mean_il, R.density);
            prev_rec = R.mean, prev_den = R.density;
            ak_sparse_destroy(prev);
            prev = sp;
        }
        ak_sparse_destroy(prev);
        problem_destroy(&p);
    }
    /* §5.7.6: N < S dense; tail rows dense; N % S == 0 computes every row (the rest is in quirks) */
    {
        rng r = rng_seed(7320000u);
        acase c;
        case_default(&c);
        c.nq = c.nk = 63, c.p.bs = 16, c.p.step = 4, c.p.theta = 0.0f, c.n_plant = 2, c.plant_q = 1, c.plant_k = 3;
        problem p;
        if (case_problem(&c, &r, &p) == 0) {
            ak_sparse *sp = NULL;
            ak_dyn_info info;
            CHECK_STATUS(plan_of(ctx, &p, &c.p, &sp, &info), AK_OK);
            if (sp) {
                expect_dense(ctx, &p, sp, "limits N < S");
                CHECK(info.n_dense_heads == 1 && fabs(info.density - 1.0) < 1e-12, "limits N < S: info %d %g",
                      info.n_dense_heads, info.density);
            }
            ak_sparse_destroy(sp);
            problem_destroy(&p);
        }
        c.nq = c.nk = 64 * 3 + 50; /* 50 tail rows */
        if (case_problem(&c, &r, &p) == 0) {
            ak_sparse *sp = plan_theta(ctx, &p, &c, -INFINITY, "limits tail");
            if (sp) {
                uint8_t *m = (uint8_t *)malloc((size_t)(c.nq * c.nk));
                ak_sparse_mask(sp, 0, 0, m);
                int ok = 1;
                for (int64_t i = 192; i < c.nq; i++)
                    for (int64_t j = 0; j < c.nk; j++)
                        ok &= m[i * c.nk + j] == (j <= i);
                CHECK(ok, "limits tail: tail rows are not dense causal");
                free(m);
                exec_vs_ref(ctx, &p, sp, "limits tail");
            }
            ak_sparse_destroy(sp);
            problem_destroy(&p);
        }
    }
}

/* Plan + brute-force mask + executor vs brute-force double attention for case c. */
static void quirk_case(ak_ctx *ctx, acase *c, uint64_t seed, const char *tag, int64_t must_key, int64_t must_sb) {
    rng r = rng_seed(seed);
    problem p;
    if (case_problem(c, &r, &p) != 0) {
        CHECK(0, "%s: problem_create", tag);
        return;
    }
    ak_sparse *sp = NULL;
    CHECK_STATUS(plan_of(ctx, &p, &c->p, &sp, NULL), AK_OK);
    if (sp) {
        bgeo g;
        bgeo_init(&g, &c->p, c->nq, c->nk);
        CHECK(check_mask(ctx, &p, sp, &g, tag) == 0, "%s: mask", tag);
        exec_vs_bruteforce(ctx, &p, sp, &g, tag);
        if (must_key >= 0) { /* every row of superblock must_sb sees key must_key, through a stripe */
            uint8_t *m = (uint8_t *)malloc((size_t)(c->nq * c->nk));
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            for (int64_t h = 0; h < (int64_t)c->Hkv * c->G; h++) {
                ak_sparse_mask(sp, 0, (int32_t)h, m);
                int ok = 1;
                for (int64_t i = must_sb * g.S; i < (must_sb + 1) * g.S; i++)
                    ok &= m[i * c->nk + must_key];
                CHECK(ok, "%s: h%lld: key %lld not seen by superblock %lld", tag, (long long)h, (long long)must_key,
                      (long long)must_sb);
                int64_t r0 = (h * sd.n_qblocks) + must_sb * g.S / sd.block_q, found = 0;
                for (int64_t e = sd.col_off[r0]; e < sd.col_off[r0 + 1]; e++)
                    found |= sd.col_idx[e] == must_key;
                CHECK(found, "%s: h%lld: key %lld is not a stripe of superblock %lld", tag, (long long)h,
                      (long long)must_key, (long long)must_sb);
            }
            free(m);
        }
        /* every row computed: LSE finite and O written (the executor run above poisoned them first) */
        int rows_ok = 1;
        for (int64_t h = 0; h < (int64_t)c->Hkv * c->G; h++)
            for (int64_t i = 0; i < c->nq; i++)
                rows_ok &= isfinite(ten_get3(&p.lse.t, 0, h, i));
        CHECK(rows_ok, "%s: a row was not computed", tag);
        ak_sparse_destroy(sp);
    }
    problem_destroy(&p);
}

static void group_quirks(ak_ctx *ctx) {
    acase c;
    /* (1a) theta = +inf at N = 2S (v4: every reference candidate lies in the init region) and N = 3S:
     * dense attention exactly, i.e. no key counted twice */
    for (int k = 2; k <= 3; k++) {
        rng r = rng_seed(7400000u + (uint64_t)k);
        case_default(&c);
        c.p.bs = 16, c.p.step = 4, c.nq = c.nk = 64 * k, c.G = 2, c.d = 16, c.n_plant = 4, c.plant_q = 2, c.plant_k = 4;
        problem p;
        if (case_problem(&c, &r, &p) == 0) {
            char tag[64];
            snprintf(tag, sizeof tag, "quirk 1a: theta +inf N = %dS", k);
            ak_sparse *sp = plan_theta(ctx, &p, &c, INFINITY, tag);
            if (sp)
                expect_dense(ctx, &p, sp, tag);
            ak_sparse_destroy(sp);
            problem_destroy(&p);
        }
    }
    /* (1a) a planted key inside the init region [bs, S), which the v4 kernels would select as a stripe
     * and add a second time: counted once (executor = double attention over the brute-force set) */
    case_default(&c);
    c.p.bs = 16, c.p.step = 4, c.nq = c.nk = 64 * 3 + 16, c.G = 2, c.d = 16, c.amp = 0.5;
    c.n_plant = 0, c.plant_q = 2, c.plant_k = 6, c.plant_at[0] = 40, c.plant_at[1] = 100, c.p.theta = 1.0f;
    quirk_case(ctx, &c, 7410000u, "quirk 1a: init key once", 100, 2);
    c.p.superblock_lists = 1;
    quirk_case(ctx, &c, 7410001u, "quirk 1a: init key once (superblock lists)", 100, 2);
    /* (1b) the block just before the superblock is a candidate: planted key at m*S - 1 (and m*S - bs) */
    case_default(&c);
    c.p.bs = 16, c.p.step = 4, c.nq = c.nk = 64 * 4, c.Hkv = 2, c.G = 1, c.d = 16, c.amp = 0.5;
    c.n_plant = 0, c.plant_q = 2, c.plant_k = 6, c.plant_at[0] = 127, c.plant_at[1] = 64 * 3 - 16, c.p.theta = 1.0f;
    quirk_case(ctx, &c, 7420000u, "quirk 1b: key m*S - 1", 127, 2);
    quirk_case(ctx, &c, 7420001u, "quirk 1b: key m*S - bs", 64 * 3 - 16, 3);
    c.p.region = 1;
    quirk_case(ctx, &c, 7420002u, "quirk 1b: key m*S - 1 (paper region)", 127, 2);
    /* the same with the default bs and step (S = 2048), paper region: key 2047 (just before superblock 1)
     * is a candidate of superblock 1 (the v4 kernels' range would be [128, 1920)) */
    case_default(&c);
    c.nq = c.nk = 2048 * 2, c.d = 8, c.amp = 0.5, c.p.region = 1;
    c.n_plant = 0, c.plant_q = 2, c.plant_k = 24, c.plant_at[0] = 2047;
    if (g_quick) /* bs 64: S = 1024, key 1023, superblock 1; N = 3S: also superblock 2 */
        c.p.bs = 64, c.plant_at[0] = 1023, c.nq = c.nk = 3072;
    quirk_case(ctx, &c, 7420003u, "quirk 1b: default bs, step (paper region)", c.plant_at[0], 1);
    /* (3) N % S == 0: every row computed and right; N < S and N = S: dense */
    static const int lens[] = {64, 128, 192, 63, 1};
    for (int k = 0; k < 5; k++) {
        case_default(&c);
        c.p.bs = 16, c.p.step = 4, c.p.theta = 1.0f, c.nq = c.nk = lens[k], c.G = 3, c.d = 16;
        c.n_plant = 3, c.plant_q = 1, c.plant_k = 8, c.amp = 0.5;
        char tag[64];
        snprintf(tag, sizeof tag, "quirk 3: N = %d", lens[k]);
        quirk_case(ctx, &c, 7430000u + (uint64_t)k, tag, -1, 0);
        if (lens[k] <= 64) {
            rng r = rng_seed(7430100u + (uint64_t)k);
            problem p;
            if (case_problem(&c, &r, &p) == 0) {
                ak_sparse *sp = plan_theta(ctx, &p, &c, 1.0, tag);
                if (sp)
                    expect_dense(ctx, &p, sp, tag);
                ak_sparse_destroy(sp);
                problem_destroy(&p);
            }
        }
    }
}

static void recall_case(ak_ctx *ctx, acase *c, uint64_t seed, const char *tag, int curve) {
    rng r = rng_seed(seed);
    problem p;
    if (case_problem(c, &r, &p) != 0) {
        CHECK(0, "%s: problem_create", tag);
        return;
    }
    bgeo g;
    bgeo_init(&g, &c->p, c->nq, c->nk);
    ak_sparse *sp = NULL;
    ak_dyn_info info;
    double t0 = tu_now();
    CHECK_STATUS(plan_of(ctx, &p, &c->p, &sp, &info), AK_OK);
    double tp = tu_now() - t0;
    if (sp) {
        int64_t r0 = (g.region == 0 ? 2 : 1) * g.S; /* the first superblock with candidates */
        int64_t stride = c->nq > 3000 ? 7 : 1;
        for (int64_t h = 0; h < (int64_t)c->Hkv * c->G; h++) {
            recall_t R = measure_recall(&p, sp, &g, 0, h, r0, g.n_full, stride);
            printf("  %s h%lld: recall mean %.5f min %.5f; init+local alone mean %.4f min %.4f; density %.3f (plan "
                   "%.3f s)\n",
                   tag, (long long)h, R.mean, R.min, R.mean_il, R.min_il, R.density, tp);
            CHECK(R.min >= 0.99, "%s: h%lld: recall min %g < 0.99", tag, (long long)h, R.min);
            CHECK(R.mean_il < 0.9, "%s: h%lld: init+local alone already has recall %g (the case tests nothing)", tag,
                  (long long)h, R.mean_il);
            CHECK(R.density < 0.9, "%s: h%lld: density %g: the plan is (nearly) dense", tag, (long long)h, R.density);
        }
        if (curve) {
            static const double th[] = {0.0, 8.0, 16.0, 20.0};
            for (int k = 0; k < 4; k++) {
                ak_sparse *s2 = plan_theta(ctx, &p, c, th[k], tag);
                if (!s2)
                    continue;
                recall_t R = measure_recall(&p, s2, &g, 0, 0, r0, g.n_full, stride * 3);
                printf("  %s curve: theta %4g recall mean %.5f min %.5f density %.4f\n", tag, th[k], R.mean, R.min,
                       R.density);
                ak_sparse_destroy(s2);
            }
        }
        ak_sparse_destroy(sp);
    }
    problem_destroy(&p);
}

static void group_recall(ak_ctx *ctx) {
    acase c;
    /* defaults (bs 128, step 16, theta 12), N = 3 superblocks + a tail; a sink at 0 and planted strong
     * keys (logit about 16 above the rest) anywhere */
    case_default(&c);
    c.nq = c.nk = g_quick ? 1024 * 3 + 100 : 2048 * 3 + 100;
    if (g_quick)
        c.p.bs = 64;
    c.Hkv = 1, c.G = 2, c.d = 64, c.amp = 0.5;
    c.n_plant = 24, c.plant_q = 4, c.plant_k = 32;
    recall_case(ctx, &c, 7500000u, "recall defaults", !g_quick);
    /* paper region, small blocks, GQA 3, bf16 */
    case_default(&c);
    c.nq = c.nk = 1200, c.p.bs = 16, c.p.step = 8, c.p.region = 1;
    c.Hkv = 1, c.G = 3, c.d = 32, c.amp = 0.5, c.dt_in = AK_BF16;
    c.n_plant = 12, c.plant_q = 4, c.plant_k = 23;
    recall_case(ctx, &c, 7500001u, "recall paper region", 0);
    /* superblock lists, step 1 */
    case_default(&c);
    c.nq = c.nk = 900, c.p.bs = 32, c.p.step = 1, c.p.superblock_lists = 1;
    c.Hkv = 2, c.G = 1, c.d = 32, c.amp = 0.5;
    c.n_plant = 10, c.plant_q = 4, c.plant_k = 23;
    recall_case(ctx, &c, 7500002u, "recall step 1", 0);
}

static void group_exec(ak_ctx *ctx) {
    int ncase = g_quick ? 8 : 18, fails = 0;
    for (int cs = 0; cs < ncase; cs++) {
        rng r = rng_seed(7600000u + (uint64_t)cs);
        acase c;
        random_case(&r, &c, 400);
        c.dv = rng_chance(&r, 0.3) ? 8 : 0;
        c.dt_out = c.dt_in == AK_BF16 && rng_chance(&r, 0.5) ? AK_BF16 : AK_F32;
        if (cs % 6 == 5) /* dense: decode, chunked prefill, nq > nk */
            c.nq = cs % 4 == 1 ? 1 : cs % 4 == 3 ? c.nk + 7 : (c.nk + 1) / 2;
        problem p;
        if (case_problem(&c, &r, &p) != 0) {
            CHECK(0, "exec case %d: problem_create", cs);
            continue;
        }
        char desc[256], tag[320];
        case_str(&c, desc, sizeof desc);
        snprintf(tag, sizeof tag, "exec case %d (%s)", cs, desc);
        ak_sparse *sp = NULL;
        ak_status st = plan_of(ctx, &p, &c.p, &sp, NULL);
        CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        if (sp)
            fails += !exec_vs_ref(ctx, &p, sp, tag);
        else
            fails++;
        ak_sparse_destroy(sp);
        problem_destroy(&p);
    }
    printf("exec: %d of %d cases passed\n", ncase - fails, ncase);
}

static void group_threads(ak_ctx *ctx) {
    for (int cs = 0; cs < 3; cs++) {
        rng r = rng_seed(7700000u + (uint64_t)cs);
        acase c;
        case_default(&c);
        c.nq = c.nk = cs == 2 ? 1024 * 3 + 300 : 700 + 77 * cs;
        c.p.bs = cs == 2 ? 64 : 8, c.p.step = cs == 2 ? 16 : 5, c.p.theta = cs == 2 ? 12.0f : 2.5f, c.p.region = cs % 2;
        c.B = 2, c.Hkv = 2, c.G = 2, c.d = 32, c.amp = 2.0, c.n_plant = 6, c.plant_q = 1.5, c.plant_k = 8;
        if (cs == 2) /* step 16, theta 12, with strong planted keys (logit about 16) */
            c.B = 1, c.Hkv = 1, c.amp = 0.5, c.n_plant = 40, c.plant_q = 3, c.plant_k = 30;
        problem p;
        if (case_problem(&c, &r, &p) != 0)
            continue;
        char *json[3] = {NULL, NULL, NULL};
        size_t len[3] = {0, 0, 0};
        static ak_dyn_info info[3];
        for (int nt = 1; nt <= 3; nt++) {
            ak_ctx_set_num_threads(ctx, nt);
            ak_sparse *sp = NULL;
            CHECK_STATUS(plan_of(ctx, &p, &c.p, &sp, &info[nt - 1]), AK_OK);
            if (sp)
                CHECK_STATUS(ak_sparse_to_json(ctx, sp, &json[nt - 1], &len[nt - 1]), AK_OK);
            ak_sparse_destroy(sp);
        }
        for (int k = 1; k < 3; k++) {
            CHECK(json[0] && json[k] && len[0] == len[k] && memcmp(json[0], json[k], len[0]) == 0,
                  "threads case %d: plan on %d threads "
                  "differs from 1 thread",
                  cs, k + 1);
            CHECK(strcmp(info[0].explain, info[k].explain) == 0, "threads case %d: explain differs on %d threads", cs,
                  k + 1);
        }
        if (g_verbose)
            printf("threads case %d: %zu bytes of JSON, est %.3f s\n%s", cs, len[0], info[0].est_seconds,
                   info[0].explain);
        for (int k = 0; k < 3; k++)
            ak_free(ctx, json[k]);
        problem_destroy(&p);
    }
    ak_ctx_set_num_threads(ctx, 2);
}

/* The call must return `want`, leave *out NULL and (ctx given) name `needle` in the message. */
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

static void group_invalid(ak_ctx *ctx) {
    ak_sparse *out;
    int sentinel = 0;
    const ak_status INV = AK_ERR_INVALID_ARGUMENT;
    ak_anchor_params d0;
    ak_anchor_params_init(&d0);
    CHECK(d0.bs == 128 && d0.step == 16 && d0.theta == 12.0f && d0.region == 0 && d0.superblock_lists == 0, "defaults");
    ak_anchor_params_init(NULL);
    acase c;
    case_default(&c);
    c.nq = c.nk = 70, c.p.bs = 8, c.p.step = 2, c.G = 2;
    rng r = rng_seed(7800000u);
    problem p;
    if (case_problem(&c, &r, &p) != 0) {
        CHECK(0, "invalid: problem_create");
        return;
    }
    ak_attn_tensors t = problem_tensors(&p, &p.o, NULL);
    ak_attn_desc d = p.d;
    ak_anchor_params ap = c.p;
    /* the valid call, and params NULL = defaults (N < 2048: dense) */
    out = NULL;
    CHECK_STATUS(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), AK_OK);
    ak_sparse_destroy(out);
    out = NULL;
    ak_status st = ak_anchor_plan(ctx, &d, &t, NULL, &out, NULL);
    CHECK(st == AK_OK && out && mask_is_causal(out, 0, 0, 70, 70), "params NULL: defaults (dense at N = 70)");
    ak_sparse_destroy(out);
    /* parameters */
    ap = c.p, ap.bs = 0;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "bs");
    ap = c.p, ap.bs = -3;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "bs");
    ap = c.p, ap.step = 0;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "step");
    ap = c.p, ap.step = -1;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "step");
    ap = c.p, ap.bs = 65536, ap.step = 65536;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "bs * step");
    ap = c.p, ap.theta = NAN;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "theta");
    ap = c.p, ap.region = 2;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "region");
    ap = c.p, ap.region = -1;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "region");
    ap = c.p, ap.superblock_lists = 2;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "superblock_lists");
    ap = c.p;
    /* the problem */
    d = p.d, d.causal = 0;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "causal");
    d = p.d, d.window_left = 10;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "window");
    d = p.d, d.softcap = 5.0f;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "softcap");
    d = p.d, d.has_sinks = 1;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "sinks");
    d = p.d, d.has_alibi = 1;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "ALiBi");
    int32_t cu[2] = {0, 70};
    d = p.d, d.cu_seqlens_q = cu, d.cu_seqlens_k = cu;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), INV, "ragged");
    d = p.d, d.num_heads_kv = 3;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), AK_ERR_GQA_RATIO, "");
    d = p.d, d.seqlen_q = 69;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), AK_ERR_SHAPE_MISMATCH, "q");
    d = p.d, d.dtype_q = d.dtype_kv = AK_BF16;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t, &ap, &out, NULL), AK_ERR_PLAN_MISMATCH, "dtype");
    d = p.d;
    ak_attn_tensors t2 = t;
    t2.size = 3;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t2, &ap, &out, NULL), INV, "size");
    t2 = t, t2.k.data = NULL;
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, &t2, &ap, &out, NULL), AK_ERR_NULL_POINTER, "k");
    EXPECT_FAIL(ak_anchor_plan(ctx, NULL, &t, &ap, &out, NULL), AK_ERR_NULL_POINTER, "desc");
    EXPECT_FAIL(ak_anchor_plan(ctx, &d, NULL, &ap, &out, NULL), AK_ERR_NULL_POINTER, "tensors");
    EXPECT_FAIL(ak_anchor_plan(NULL, &d, &t, &ap, &out, NULL), AK_ERR_NULL_POINTER, "");
    CHECK_STATUS(ak_anchor_plan(ctx, &d, &t, &ap, NULL, NULL), AK_ERR_NULL_POINTER);
    /* row anchors */
    float *an = (float *)malloc(sizeof(float) * 70 * 2);
    CHECK_STATUS(ak_anchor_row_anchors(ctx, &d, &t, &ap, an), AK_OK);
    CHECK_STATUS(ak_anchor_row_anchors(ctx, &d, &t, &ap, NULL), AK_ERR_NULL_POINTER);
    ap.theta = NAN;
    CHECK_STATUS(ak_anchor_row_anchors(ctx, &d, &t, &ap, an), INV);
    ap = c.p;
    d.causal = 0;
    CHECK_STATUS(ak_anchor_row_anchors(ctx, &d, &t, &ap, an), INV);
    CHECK_STATUS(ak_anchor_row_anchors(NULL, &d, &t, &ap, an), AK_ERR_NULL_POINTER);
    free(an);
    problem_destroy(&p);
#ifdef AK_TEST_HAVE_NAMED /* not in single-method builds (build-anchor*), which lack the other planners */
    /* by name: the option keys are the params fields (ak_dyn_plan_named) */
    c.nq = c.nk = 300;
    r = rng_seed(7800002u);
    if (case_problem(&c, &r, &p) == 0) {
        t = problem_tensors(&p, &p.o, NULL);
        ak_anchor_params np = c.p;
        np.bs = 16, np.step = 4, np.theta = 1.5f, np.region = 1, np.superblock_lists = 1;
        ak_sparse *a = NULL, *b = NULL;
        CHECK_STATUS(ak_anchor_plan(ctx, &p.d, &t, &np, &a, NULL), AK_OK);
        CHECK_STATUS(
            ak_dyn_plan_named(ctx, "anchor:bs=16,step=4,theta=1.5,region=paper,superblock_lists=1", &p.d, &t, &b, NULL),
            AK_OK);
        char *ja = NULL, *jb = NULL;
        size_t la = 0, lb = 0;
        if (a && b) {
            ak_sparse_to_json(ctx, a, &ja, &la);
            ak_sparse_to_json(ctx, b, &jb, &lb);
        }
        CHECK(ja && jb && la == lb && memcmp(ja, jb, la) == 0,
              "named: plan differs from the direct call with the same params");
        ak_free(ctx, ja), ak_free(ctx, jb);
        ak_sparse_destroy(a), ak_sparse_destroy(b);
        b = NULL;
        CHECK_STATUS(ak_dyn_plan_named(ctx, "anchor:bs=16,step=4,theta=inf,region=1", &p.d, &t, &b, NULL), AK_OK);
        CHECK(b && mask_is_causal(b, 0, 1, 300, 300), "named: theta=inf is not dense");
        ak_sparse_destroy(b);
        EXPECT_FAIL(ak_dyn_plan_named(ctx, "anchor:bogus=1", &p.d, &t, &out, NULL), INV, "bogus");
        EXPECT_FAIL(ak_dyn_plan_named(ctx, "anchor:bs=x", &p.d, &t, &out, NULL), INV, "bs");
        EXPECT_FAIL(ak_dyn_plan_named(ctx, "anchor:region=foo", &p.d, &t, &out, NULL), INV, "region");
        EXPECT_FAIL(ak_dyn_plan_named(ctx, "anchor:theta=nan", &p.d, &t, &out, NULL), INV, "theta");
        EXPECT_FAIL(ak_dyn_plan_named(ctx, "anchor:step=0", &p.d, &t, &out, NULL), INV, "step");
        problem_destroy(&p);
    }
#endif
    /* nq != nk: row anchors undefined; the plan is dense */
    c.nq = 20;
    r = rng_seed(7800001u);
    if (case_problem(&c, &r, &p) == 0) {
        t = problem_tensors(&p, &p.o, NULL);
        an = (float *)malloc(sizeof(float) * 20 * 2);
        CHECK_STATUS(ak_anchor_row_anchors(ctx, &p.d, &t, &c.p, an), INV);
        CHECK(strstr(ak_ctx_last_error(ctx), "nq") != NULL, "row anchors nq != nk: message '%s'",
              ak_ctx_last_error(ctx));
        free(an);
        problem_destroy(&p);
    }
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_DYN_ANCHOR_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_DYN_ANCHOR_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_anchor: ak_ctx_create failed\n");
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
    GROUP("anchor", group_anchor(ctx))
    GROUP("rule", group_rule(ctx))
    GROUP("limits", group_limits(ctx))
    GROUP("quirks", group_quirks(ctx))
    GROUP("recall", group_recall(ctx))
    GROUP("exec", group_exec(ctx))
    GROUP("threads", group_threads(ctx))
    GROUP("invalid", group_invalid(ctx))
#undef GROUP
    ak_ctx_destroy(ctx);
    if (!any) {
        fprintf(
            stderr,
            "test_dyn_anchor: unknown group '%s' (anchor, rule, limits, quirks, recall, exec, threads, invalid, all)\n",
            group);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "test_dyn_anchor %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
