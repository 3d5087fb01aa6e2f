/*
 * test_sparse_refine.c — the sparse plan's refinements for the content-aware methods (attnkit.h,
 * ak_sparse_desc): per-key bias (key_bias), per-row cut of the listed keys (key_score >= row_thresh) and
 * mean-combined gathered rows (AK_SPARSE_MEAN, routing attention).
 *
 * Groups (`test_sparse_refine <group>`, no argument = all):
 *   exec     random plans (fixed blocks and gathered rows, WRITE and MEAN, bias / cut / both / neither,
 *            GQA 1..4 with plan heads 1, Hkv or Hq, B 1..2, causal or not, odd sizes) run by the executor,
 *            NaN-poisoned outputs, against a naive computation written here from the header's rules, in
 *            double (the oracle) and in float (the accuracy yardstick: executor error <= 2x the float
 *            naive's error + 1e-6); ak_attention_ref_sparse against the same double oracle (1e-9);
 *            threads 1 and 2 bitwise identical; ak_sparse_mask = the union of each row's blocks, and
 *            ak_sparse_row_mask = its rows
 *   json     to_json -> from_json -> to_json is the identical text, and the reloaded plan runs bitwise equal
 *   invalid  each malformed refinement returns its status and leaves *out NULL
 *
 * AK_SPARSE_QUICK=1 (sanitizer builds) runs fewer cases.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

typedef struct kase {
    int B, Hq, Hkv, nq, nk, d, causal, heads_mode, gather, mean, bias, cut, nqb, bq;
    ak_sparse *sp;
    float *q, *k, *v;
} kase;

/* The plan the case describes: random spans / cols per list, rows gathered at random (MEAN: a row in
 * 0..3 blocks), random bias and cut. Also returns the plan's lists in plain arrays for the oracle. */
typedef struct plist {
    int nspan, ncol, nrow;
    int span[4][2], col[6], rows[400];
} plist;

static int plan_heads(const kase *c) { return c->heads_mode == 0 ? 1 : c->heads_mode == 1 ? c->Hkv : c->Hq; }

static ak_sparse *make_plan(ak_ctx *ctx, kase *c, rng *r, plist *pl, float *bias, float *score, float *thresh) {
    int PH = plan_heads(c), PB = rng_int(r, 2) ? c->B : 1;
    ak_sparse_desc g;
    ak_sparse_desc_init(&g);
    g.n_batch = PB;
    g.n_heads = PH;
    g.nq = c->nq;
    g.nk = c->nk;
    g.causal = c->causal;
    g.block_q = c->bq;
    g.n_qblocks = c->gather ? c->nqb : 0;
    g.combine = c->mean ? AK_SPARSE_MEAN : AK_SPARSE_WRITE;
    ak_sparse_builder *b = NULL;
    if (ak_sparse_builder_create(ctx, &g, &b) != AK_OK) return NULL;
    int nqb = c->gather ? c->nqb : (c->nq + c->bq - 1) / c->bq;
    c->nqb = nqb;
    for (int bh = 0; bh < PB * PH; bh++) {
        int owner[400];
        for (int i = 0; i < c->nq; i++) owner[i] = c->gather && !c->mean ? rng_int(r, nqb + 1) - 1 : -1;
        for (int qb = 0; qb < nqb; qb++) {
            plist *L = &pl[bh * nqb + qb];
            memset(L, 0, sizeof *L);
            L->nspan = rng_int(r, 3);
            for (int e = 0; e < L->nspan; e++) {
                int lo = rng_int(r, c->nk), hi = lo + 1 + rng_int(r, c->nk - lo);
                L->span[e][0] = lo;
                L->span[e][1] = hi;
                ak_sparse_builder_add_span(b, bh / PH, bh % PH, qb, lo, hi);
            }
            L->ncol = rng_int(r, 6);
            for (int e = 0; e < L->ncol; e++) {
                L->col[e] = rng_int(r, c->nk);
                ak_sparse_builder_add_col(b, bh / PH, bh % PH, qb, L->col[e]);
            }
            if (c->gather)
                for (int i = 0; i < c->nq; i++) {
                    int in = c->mean ? rng_chance(r, 0.45) : owner[i] == qb;
                    if (in) {
                        L->rows[L->nrow++] = i;
                        ak_sparse_builder_add_row(b, bh / PH, bh % PH, qb, i);
                    }
                }
            else
                for (int i = qb * c->bq; i < c->nq && i < (qb + 1) * c->bq; i++) L->rows[L->nrow++] = i;
        }
        float *kb = bias + (size_t)bh * c->nk, *ks = score + (size_t)bh * c->nk, *th = thresh + (size_t)bh * c->nq;
        for (int j = 0; j < c->nk; j++) {
            kb[j] = c->bias ? (float)rng_range(r, -2.0, 2.0) : 0.0f;
            ks[j] = c->cut ? (float)rng_int(r, 8) : 0.0f;
        }
        for (int i = 0; i < c->nq; i++) th[i] = c->cut ? (rng_chance(r, 0.1) ? -INFINITY : (float)rng_int(r, 9)) : -INFINITY;
        if (c->bias) ak_sparse_builder_set_key_bias(b, bh / PH, bh % PH, kb);
        if (c->cut) ak_sparse_builder_set_row_thresh(b, bh / PH, bh % PH, ks, th);
    }
    int added = 0;
    for (int x = 0; x < PB * PH * nqb; x++) added += pl[x].nrow;
    if (c->gather && added == 0) { /* a gather builder needs some row (else it checks fixed blocks) */
        pl[0].rows[pl[0].nrow++] = 0;
        ak_sparse_builder_add_row(b, 0, 0, 0, 0);
    }
    ak_sparse *sp = NULL;
    ak_status st = ak_sparse_builder_finish(b, &sp);
    ak_sparse_builder_destroy(b);
    CHECK(st == AK_OK, "builder finish: %s", ak_status_string(st));
    return sp;
}

/* Does list L give row i key j (before causality and the cut)? */
static int listed(const plist *L, int j) {
    for (int e = 0; e < L->nspan; e++)
        if (j >= L->span[e][0] && j < L->span[e][1]) return 1;
    for (int e = 0; e < L->ncol; e++)
        if (L->col[e] == j) return 1;
    return 0;
}

/* The oracle, from the header's rules, in double (D = 1) or float (D = 0): o [B][Hq][nq][d], lse [B][Hq][nq]. */
static void naive(const kase *c, const plist *pl, int PB, const float *bias, const float *score, const float *thresh, int D,
                  double *o, double *lse) {
    int PH = plan_heads(c), G = c->Hq / c->Hkv;
    double scale = (double)(float)(1.0 / sqrt((double)c->d)); /* the library's scale is a float */
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            int ph = PH == 1 ? 0 : PH == c->Hq ? h : h / G, bh = (PB == 1 ? 0 : b) * PH + ph, hk = h / G;
            const float *q = c->q + ((size_t)(b * c->Hq + h) * c->nq) * c->d;
            const float *k = c->k + ((size_t)(b * c->Hkv + hk) * c->nk) * c->d;
            const float *v = c->v + ((size_t)(b * c->Hkv + hk) * c->nk) * c->d;
            double *ob = o + ((size_t)(b * c->Hq + h) * c->nq) * c->d, *lb = lse + (size_t)(b * c->Hq + h) * c->nq;
            int cnt[400];
            for (int i = 0; i < c->nq; i++) {
                cnt[i] = 0;
                lb[i] = -INFINITY;
                for (int x = 0; x < c->d; x++) ob[i * c->d + x] = 0;
            }
            for (int qb = 0; qb < c->nqb; qb++) {
                const plist *L = &pl[bh * c->nqb + qb];
                for (int e = 0; e < L->nrow; e++) {
                    int i = L->rows[e], pos = i + c->nk - c->nq;
                    double s[400], mx = -INFINITY, den = 0;
                    for (int j = 0; j < c->nk; j++) {
                        int vis = listed(L, j) && (!c->causal || j <= pos) && score[bh * c->nk + j] >= thresh[bh * c->nq + i];
                        double dot = 0;
                        float dotf = 0;
                        for (int x = 0; x < c->d; x++) {
                            dot += (double)q[i * c->d + x] * k[j * c->d + x];
                            dotf += q[i * c->d + x] * k[j * c->d + x];
                        }
                        double lg = D ? scale * dot + bias[bh * c->nk + j] : (double)((float)scale * dotf + bias[bh * c->nk + j]);
                        s[j] = vis ? lg : -INFINITY;
                        if (s[j] > mx) mx = s[j];
                    }
                    cnt[i]++;
                    if (mx == -INFINITY) continue;
                    for (int j = 0; j < c->nk; j++) {
                        s[j] = D ? exp(s[j] - mx) : (double)expf((float)(s[j] - mx));
                        den += s[j];
                    }
                    for (int x = 0; x < c->d; x++) {
                        double a = 0;
                        for (int j = 0; j < c->nk; j++) a += s[j] * v[j * c->d + x];
                        ob[i * c->d + x] += D ? a / den : (double)(float)(a / den);
                    }
                    double l = mx + log(den), m = l > lb[i] ? l : lb[i];
                    lb[i] = m + log(exp(lb[i] - m) + exp(l - m));
                }
            }
            for (int i = 0; i < c->nq; i++)
                for (int x = 0; x < c->d; x++) ob[i * c->d + x] = cnt[i] ? ob[i * c->d + x] / cnt[i] : 0.0;
        }
}

static int run_exec(ak_ctx *ctx, const kase *c, const ak_sparse *sp, int f64, void *o, void *lse) {
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = c->B;
    d.num_heads_q = c->Hq;
    d.num_heads_kv = c->Hkv;
    d.seqlen_q = c->nq;
    d.seqlen_k = c->nk;
    d.head_dim = c->d;
    d.causal = 0; /* the plan carries causality */
    d.return_lse = 1;
    if (f64) d.dtype_o = AK_F64;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = ak_tensor_4d(c->q, AK_F32, c->B, c->Hq, c->nq, c->d);
    t.k = ak_tensor_4d(c->k, AK_F32, c->B, c->Hkv, c->nk, c->d);
    t.v = ak_tensor_4d(c->v, AK_F32, c->B, c->Hkv, c->nk, c->d);
    t.o = ak_tensor_4d(o, f64 ? AK_F64 : AK_F32, c->B, c->Hq, c->nq, c->d);
    t.lse = ak_tensor_3d(lse, f64 ? AK_F64 : AK_F32, c->B, c->Hq, c->nq);
    if (f64) return ak_attention_ref_sparse(ctx, &d, sp, &t);
    ak_plan *plan = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &d, sp, &plan);
    if (st == AK_OK) st = ak_attention_run(plan, &t, NULL, 0);
    ak_plan_destroy(plan);
    return st;
}

static void group_exec(ak_ctx *ctx, int n_cases) {
    for (int ci = 0; ci < n_cases; ci++) {
        rng r = rng_seed(7000 + ci);
        kase c;
        memset(&c, 0, sizeof c);
        static const int lens[] = {1, 2, 17, 40, 113, 130};
        static const int dims[] = {1, 3, 16, 59};
        c.B = 1 + rng_int(&r, 2);
        c.Hkv = 1 + rng_int(&r, 2);
        c.Hq = c.Hkv * (1 + rng_int(&r, 4));
        c.nk = rng_pick(&r, lens, 6);
        c.nq = rng_chance(&r, 0.7) ? c.nk : 1 + rng_int(&r, c.nk);
        c.d = rng_pick(&r, dims, 4);
        c.causal = rng_int(&r, 2);
        c.heads_mode = rng_int(&r, 3);
        c.gather = rng_int(&r, 2);
        c.mean = c.gather && rng_int(&r, 2);
        c.bias = rng_int(&r, 2);
        c.cut = rng_int(&r, 2);
        c.bq = 1 + rng_int(&r, 40);
        c.nqb = 1 + rng_int(&r, 5);
        size_t nqe = (size_t)c.B * c.Hq * c.nq * c.d, nke = (size_t)c.B * c.Hkv * c.nk * c.d;
        c.q = malloc(sizeof(float) * nqe);
        c.k = malloc(sizeof(float) * nke);
        c.v = malloc(sizeof(float) * nke);
        for (size_t x = 0; x < nqe; x++) c.q[x] = (float)rng_range(&r, -1.5, 1.5);
        for (size_t x = 0; x < nke; x++) {
            c.k[x] = (float)rng_range(&r, -1.5, 1.5);
            c.v[x] = (float)rng_range(&r, -1, 1);
        }
        int PH = plan_heads(&c), nqb_max = c.gather ? c.nqb : (c.nq + c.bq - 1) / c.bq;
        plist *pl = calloc((size_t)2 * PH * nqb_max, sizeof(plist));
        float *bias = malloc(sizeof(float) * 2 * PH * c.nk), *score = malloc(sizeof(float) * 2 * PH * c.nk),
              *thresh = malloc(sizeof(float) * 2 * PH * c.nq);
        ak_sparse *sp = make_plan(ctx, &c, &r, pl, bias, score, thresh);
        if (!sp) {
            CHECK(0, "case %d: no plan: %s", ci, ak_ctx_last_error(ctx));
            goto next;
        }
        ak_sparse_desc sd;
        ak_sparse_get_desc(sp, &sd);
        int PB = sd.n_batch;
        size_t no = (size_t)c.B * c.Hq * c.nq * c.d, nl = (size_t)c.B * c.Hq * c.nq;
        double *o64 = malloc(sizeof(double) * no), *l64 = malloc(sizeof(double) * nl), *o32 = malloc(sizeof(double) * no),
               *l32 = malloc(sizeof(double) * nl), *or = malloc(sizeof(double) * no), *lr = malloc(sizeof(double) * nl);
        float *oe = malloc(sizeof(float) * no), *le = malloc(sizeof(float) * nl), *oe2 = malloc(sizeof(float) * no),
              *le2 = malloc(sizeof(float) * nl);
        naive(&c, pl, PB, bias, score, thresh, 1, o64, l64);
        naive(&c, pl, PB, bias, score, thresh, 0, o32, l32);
        for (size_t x = 0; x < no; x++) oe[x] = oe2[x] = NAN;
        for (size_t x = 0; x < nl; x++) le[x] = le2[x] = NAN;
        ak_ctx_set_num_threads(ctx, 1);
        CHECK_STATUS(run_exec(ctx, &c, sp, 0, oe, le), AK_OK);
        ak_ctx_set_num_threads(ctx, 2);
        CHECK_STATUS(run_exec(ctx, &c, sp, 0, oe2, le2), AK_OK);
        CHECK(!memcmp(oe, oe2, sizeof(float) * no) && !memcmp(le, le2, sizeof(float) * nl), "case %d: threads 1 vs 2 differ", ci);
        double e_exec = 0, e_naive = 0, e_ref = 0;
        for (size_t x = 0; x < no; x++) {
            double a = fabs(oe[x] - o64[x]);
            e_exec = a > e_exec || a != a ? a : e_exec;
            e_naive = fmax(e_naive, fabs(o32[x] - o64[x]));
        }
        for (size_t x = 0; x < nl; x++) {
            int both_inf = isinf(le[x]) && isinf(l64[x]) && (le[x] < 0) == (l64[x] < 0);
            double a = both_inf ? 0 : fabs(le[x] - l64[x]);
            CHECK(a <= 1e-4 * (1 + fabs(l64[x])), "case %d: lse[%zu] = %g, oracle %g", ci, x, (double)le[x], l64[x]);
        }
        CHECK(e_exec <= 2 * e_naive + 1e-6, "case %d (B %d Hq %d Hkv %d nq %d nk %d d %d causal %d heads %d gather %d mean %d bias %d cut %d): "
              "executor error %.3g, naive fp32 %.3g", ci, c.B, c.Hq, c.Hkv, c.nq, c.nk, c.d, c.causal, c.heads_mode, c.gather, c.mean,
              c.bias, c.cut, e_exec, e_naive);
        CHECK_STATUS(run_exec(ctx, &c, sp, 1, or, lr), AK_OK);
        for (size_t x = 0; x < no; x++) e_ref = fmax(e_ref, fabs(or[x] - o64[x]));
        CHECK(e_ref <= 1e-9, "case %d: reference vs oracle %.3g", ci, e_ref);
        /* mask = union over the row's blocks */
        uint8_t *mask = malloc((size_t)c.nq * c.nk);
        for (int bh = 0; bh < PB * PH; bh++) {
            CHECK_STATUS(ak_sparse_mask(sp, bh / PH, bh % PH, mask), AK_OK);
            int bad = 0;
            for (int i = 0; i < c.nq; i++)
                for (int j = 0; j < c.nk; j++) {
                    int want = 0, pos = i + c.nk - c.nq;
                    for (int qb = 0; qb < c.nqb; qb++) {
                        const plist *L = &pl[bh * c.nqb + qb];
                        for (int e = 0; e < L->nrow; e++)
                            if (L->rows[e] == i && listed(L, j) && (!c.causal || j <= pos) &&
                                score[bh * c.nk + j] >= thresh[bh * c.nq + i])
                                want = 1;
                    }
                    bad += mask[(size_t)i * c.nk + j] != want;
                }
            CHECK(bad == 0, "case %d bh %d: %d mask elements differ", ci, bh, bad);
            uint8_t rowm[400];
            int badrow = 0;
            for (int i = 0; i < c.nq; i++) {
                CHECK_STATUS(ak_sparse_row_mask(sp, bh / PH, bh % PH, i, rowm), AK_OK);
                badrow += memcmp(rowm, mask + (size_t)i * c.nk, (size_t)c.nk) != 0;
            }
            CHECK(badrow == 0, "case %d bh %d: %d rows of ak_sparse_row_mask differ from ak_sparse_mask", ci, bh, badrow);
        }
        free(mask);
        free(o64), free(l64), free(o32), free(l32), free(or), free(lr), free(oe), free(le), free(oe2), free(le2);
        ak_sparse_destroy(sp);
    next:
        free(pl), free(bias), free(score), free(thresh), free(c.q), free(c.k), free(c.v);
    }
}

static void group_json(ak_ctx *ctx, int n_cases) {
    for (int ci = 0; ci < n_cases; ci++) {
        rng r = rng_seed(9100 + ci);
        kase c;
        memset(&c, 0, sizeof c);
        c.B = 1;
        c.Hkv = 1;
        c.Hq = 2;
        c.nq = c.nk = 1 + rng_int(&r, 60);
        c.d = 8;
        c.causal = 1;
        c.heads_mode = 2;
        c.gather = 1;
        c.mean = rng_int(&r, 2);
        c.bias = 1;
        c.cut = 1;
        c.bq = 8;
        c.nqb = 3;
        plist *pl = calloc((size_t)2 * 2 * 3, sizeof(plist));
        float bias[2 * 2 * 64], score[2 * 2 * 64], thresh[2 * 2 * 64];
        ak_sparse *sp = make_plan(ctx, &c, &r, pl, bias, score, thresh), *sp2 = NULL;
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        CHECK_STATUS(ak_sparse_to_json(ctx, sp, &a, &la), AK_OK);
        CHECK_STATUS(ak_sparse_from_json(ctx, a, la, &sp2), AK_OK);
        if (sp2) CHECK_STATUS(ak_sparse_to_json(ctx, sp2, &b, &lb), AK_OK);
        CHECK(a && b && la == lb && !memcmp(a, b, la), "case %d: JSON round trip differs", ci);
        CHECK(a && strstr(a, "\"row_thresh\"") && strstr(a, "\"key_bias\""), "case %d: refinements missing from the JSON", ci);
        uint8_t *m1 = malloc((size_t)c.nq * c.nk), *m2 = malloc((size_t)c.nq * c.nk);
        if (sp2) {
            CHECK_STATUS(ak_sparse_mask(sp, 0, 1, m1), AK_OK);
            CHECK_STATUS(ak_sparse_mask(sp2, 0, 1, m2), AK_OK);
            CHECK(!memcmp(m1, m2, (size_t)c.nq * c.nk), "case %d: reloaded mask differs", ci);
        }
        free(m1), free(m2);
        ak_free(ctx, a);
        ak_free(ctx, b);
        ak_sparse_destroy(sp);
        ak_sparse_destroy(sp2);
        free(pl);
    }
}

static void group_invalid(ak_ctx *ctx) {
    int32_t lo[1] = {0}, hi[1] = {4}, rows[3] = {1, 1, 2};
    int64_t off[3] = {0, 1, 1}, roff[3] = {0, 2, 3}, roff2[3] = {0, 1, 2};
    float bias[4] = {0, 1, NAN, 0}, score[4] = {0, 0, 0, 0}, th[4] = {0, 0, 0, 0};
    ak_sparse_desc d;
    ak_sparse *sp = (ak_sparse *)&d;
    ak_sparse_desc_init(&d);
    d.nq = d.nk = 4;
    d.block_q = 2;
    d.n_qblocks = 2;
    d.span_off = off;
    d.span_lo = lo;
    d.span_hi = hi;
    d.key_bias = bias;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_BAD_PLAN); /* NaN bias */
    CHECK(sp == NULL, "out not NULL");
    bias[2] = INFINITY;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_BAD_PLAN); /* infinite bias */
    bias[2] = 0;
    d.key_score = score;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_NULL_POINTER); /* score without thresholds */
    d.row_thresh = th;
    th[3] = NAN;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_BAD_PLAN); /* NaN threshold */
    th[3] = INFINITY;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_OK);
    ak_sparse_destroy(sp);
    d.combine = 2;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_INVALID_ARGUMENT);
    d.combine = AK_SPARSE_MEAN;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_INVALID_ARGUMENT); /* MEAN with fixed blocks */
    d.qrow_off = roff;
    d.qrows = rows;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_BAD_PLAN); /* row 1 twice in block 0 */
    d.qrow_off = roff2;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_OK); /* row 1 in blocks 0 and 1: fine for MEAN */
    ak_sparse_destroy(sp);
    d.combine = AK_SPARSE_WRITE;
    CHECK_STATUS(ak_sparse_create(ctx, &d, &sp), AK_ERR_BAD_PLAN); /* ... but not for WRITE */
    CHECK(sp == NULL, "out not NULL");
    /* builder setters */
    ak_sparse_desc g;
    ak_sparse_desc_init(&g);
    g.nq = g.nk = 4;
    g.block_q = 2;
    ak_sparse_builder *b = NULL;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_OK);
    float kb[4] = {0, INFINITY, 0, 0};
    CHECK_STATUS(ak_sparse_builder_set_key_bias(b, 0, 0, kb), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_builder_set_key_bias(b, 0, 1, NULL), AK_ERR_INVALID_ARGUMENT); /* head out of range */
    CHECK_STATUS(ak_sparse_builder_set_row_thresh(b, 0, 0, score, NULL), AK_ERR_NULL_POINTER);
    float ns[4] = {0, NAN, 0, 0};
    CHECK_STATUS(ak_sparse_builder_set_row_thresh(b, 0, 0, ns, th), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_builder_set_row_thresh(b, 1, 0, score, th), AK_ERR_INVALID_ARGUMENT);
    ak_sparse_builder_destroy(b);
    const char *bad[] = {
        "{\"format\": \"attnkit-sparse\", \"nq\": 2, \"nk\": 2, \"block_q\": 2, \"n_qblocks\": 1, \"lists\": [], \"key_bias\": [[0]]}",
        "{\"format\": \"attnkit-sparse\", \"nq\": 2, \"nk\": 2, \"block_q\": 2, \"n_qblocks\": 1, \"lists\": [], \"key_bias\": [[0, \"inf\"]]}",
        "{\"format\": \"attnkit-sparse\", \"nq\": 2, \"nk\": 2, \"block_q\": 2, \"n_qblocks\": 1, \"lists\": [], \"key_score\": [[0, 1]]}",
        "{\"format\": \"attnkit-sparse\", \"nq\": 2, \"nk\": 2, \"block_q\": 2, \"n_qblocks\": 1, \"lists\": [], \"combine\": 3}",
    };
    const ak_status want[] = {AK_ERR_BAD_PLAN, AK_ERR_BAD_PLAN, AK_ERR_NULL_POINTER, AK_ERR_BAD_PLAN};
    for (int x = 0; x < 4; x++) {
        sp = (ak_sparse *)&d;
        CHECK_STATUS(ak_sparse_from_json(ctx, bad[x], strlen(bad[x]), &sp), want[x]);
        CHECK(sp == NULL, "json %d: out not NULL", x);
    }
}

int main(int argc, char **argv) {
    const char *group = argc > 1 ? argv[1] : "all";
    int quick = (int)tu_env_long("AK_SPARSE_QUICK", 0);
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) return 1;
    int all = !strcmp(group, "all");
    if (all || !strcmp(group, "exec")) group_exec(ctx, quick ? 60 : 300);
    if (all || !strcmp(group, "json")) group_json(ctx, quick ? 10 : 40);
    if (all || !strcmp(group, "invalid")) group_invalid(ctx);
    ak_ctx_destroy(ctx);
    return tc_finish("test_sparse_refine");
}
