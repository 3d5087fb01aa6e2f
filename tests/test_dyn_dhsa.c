/*
 * test_dyn_dhsa.c — the DHSA planner (src/dynamic/dhsa.c; rules in attnkit.h, docs/dynamic/dhsa.md).
 *
 * Groups (`test_dyn_dhsa <group>`, no argument = all):
 *   dense     budget >= nk -> the plan is dense causal (masks), in every chunking / overwrite / per-KV-head
 *             mode, chunked prefill and decode; executor output = ak_attention_ref (dense)
 *   identity  ak_dhsa_scores = (sum q)(sum k) / sqrt(|B||C|) of the head means (double, this file);
 *             splitting a chunk in two halves leaves the other chunks' scores and ranking unchanged and
 *             gives a constant chunk's halves score / sqrt(2); pad_dilution scales the tail block by
 *             |B| / block and never changes the plan; upsampling: a budget of whole chunks selects whole
 *             chunks, any budget cuts at most one chunk per block, to its lowest keys
 *   select    the plan against a brute-force re-implementation written plainly here (double, token-level
 *             sort, per block) over odd sizes (1, 17, 113, 300, 1023), blocks that do not divide the
 *             length, chunked prefill, GQA 1/3/4, B 1/2, fixed and given chunks, overwrite, per KV head;
 *             plus the plan's invariants: sorted, no duplicates, every key < end(B), local and global
 *             keys present, spans / cols split as documented (span_min)
 *   boundary  ak_dhsa_select_boundaries on hand-made ratio vectors (theta, NMS, max_chunks, forced
 *             instruction boundary, ties, cap); ak_dhsa_label_ratios on a synthetic block-structured
 *             attention (peaks at the true boundaries, ~1 inside segments); the ORACLE planner on
 *             segment-structured Q/K finds the true boundaries; FIXED boundaries incl. the forced one
 *   recall    planted structure (each query block attends to 3 chunks) is found: attention-mass recall
 *             (dense softmax in double, here) >= 0.99 on every row of every head
 *   exec      the executor on DHSA plans (all modes) against ak_attention_ref_sparse (f64), outputs
 *             NaN-poisoned, strided layouts, f32 and bf16 inputs, GQA, B = 2, nq < nk
 *   threads   the plan (its JSON) is identical for 1, 2 and 3 threads
 *   invalid   every invalid parameter / argument returns its status, names the field, *out = NULL; the
 *             named form "dhsa:key=value,..." (every params key) gives the struct's plan
 *
 * AK_DHSA_QUICK=1 (sanitizer builds) runs fewer cases; AK_DHSA_VERBOSE=1 prints per case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"

static int g_quick, g_verbose;

/* ---- contiguous f32 inputs ------------------------------------------------------------------ */

typedef struct inp {
    ak_attn_desc d;
    int B, Hq, Hkv, nq, nk, hd;
    float *q, *k, *v;
    ak_attn_tensors t;
} inp;

static void inp_make(inp *x, int B, int Hq, int Hkv, int nq, int nk, int hd) {
    memset(x, 0, sizeof *x);
    ak_attn_desc_init(&x->d);
    x->d.batch = B, x->d.num_heads_q = Hq, x->d.num_heads_kv = Hkv, x->d.seqlen_q = nq, x->d.seqlen_k = nk;
    x->d.head_dim = hd, x->d.causal = 1;
    x->B = B, x->Hq = Hq, x->Hkv = Hkv, x->nq = nq, x->nk = nk, x->hd = hd;
    x->q = (float *)calloc((size_t)B * Hq * nq * hd + 1, sizeof(float));
    x->k = (float *)calloc((size_t)B * Hkv * nk * hd + 1, sizeof(float));
    x->v = (float *)calloc((size_t)B * Hkv * nk * hd + 1, sizeof(float));
    ak_attn_tensors_init(&x->t);
    x->t.q = ak_tensor_4d(x->q, AK_F32, B, Hq, nq, hd);
    x->t.k = ak_tensor_4d(x->k, AK_F32, B, Hkv, nk, hd);
    x->t.v = ak_tensor_4d(x->v, AK_F32, B, Hkv, nk, hd);
}

static void inp_free(inp *x) {
    free(x->q), free(x->k), free(x->v);
    memset(x, 0, sizeof *x);
}

static float *QP(const inp *x, int b, int h, int i) { return x->q + (((size_t)b * x->Hq + h) * x->nq + i) * x->hd; }
static float *KP(const inp *x, int b, int h, int j) { return x->k + (((size_t)b * x->Hkv + h) * x->nk + j) * x->hd; }
static float *VP(const inp *x, int b, int h, int j) { return x->v + (((size_t)b * x->Hkv + h) * x->nk + j) * x->hd; }

static void inp_random(inp *x, rng *r, double amp) {
    size_t nq = (size_t)x->B * x->Hq * x->nq * x->hd, nk = (size_t)x->B * x->Hkv * x->nk * x->hd;
    for (size_t e = 0; e < nq; e++) x->q[e] = (float)rng_range(r, -amp, amp);
    for (size_t e = 0; e < nk; e++) x->k[e] = (float)rng_range(r, -amp, amp), x->v[e] = (float)rng_range(r, -1, 1);
}

static int plan_heads(const inp *x, const ak_dhsa_params *p) { return p->per_kv_head ? x->Hkv : 1; }

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* The boundaries this file expects for FIXED / GIVEN (count in *nb; out has room for nk + 3). */
static void my_bounds(const inp *x, const ak_dhsa_params *p, int32_t *out, int *nb) {
    int nk = x->nk, n = 0, ninstr = (int)imin(p->instruction_tokens, x->nq);
    out[n++] = 0;
    if (p->chunking == AK_DHSA_FIXED) {
        int f = ninstr > 0 ? nk - ninstr : -1;
        for (int c = 1; c <= nk; c++)
            if ((c % p->chunk == 0 || c == f || c == nk) && c < nk + 1 && c > out[n - 1]) out[n++] = c;
    } else {
        for (int i = 0; i < p->n_boundaries; i++)
            if (p->boundaries[i] > out[n - 1]) out[n++] = p->boundaries[i];
        if (out[n - 1] != nk) out[n++] = nk;
    }
    *nb = n;
}

/* ---- the brute force: the rules of attnkit.h, token by token, in double ---------------------- */

typedef struct bf {
    const inp *x;
    const ak_dhsa_params *p;
    int b, ph, q0, q1, k0, k1, S, ninstr, nqb;
    const int32_t *bnd;
    int nc;
    double *csum; /* [nc][hd] chunk sums of the mean keys */
} bf;

static void bf_init(bf *f, const inp *x, const ak_dhsa_params *p, int b, int ph, const int32_t *bnd, int nb) {
    memset(f, 0, sizeof *f);
    f->x = x, f->p = p, f->b = b, f->ph = ph, f->bnd = bnd, f->nc = nb - 1;
    int G = x->Hq / x->Hkv;
    f->q0 = p->per_kv_head ? ph * G : 0, f->q1 = p->per_kv_head ? (ph + 1) * G : x->Hq;
    f->k0 = p->per_kv_head ? ph : 0, f->k1 = p->per_kv_head ? ph + 1 : x->Hkv;
    f->ninstr = (int)imin(p->instruction_tokens, x->nq);
    f->S = x->nq - f->ninstr;
    f->nqb = (f->S + p->block - 1) / p->block;
    f->csum = (double *)calloc((size_t)(f->nc + 1) * x->hd, sizeof(double));
    for (int c = 0; c < f->nc; c++)
        for (int j = bnd[c]; j < bnd[c + 1]; j++)
            for (int h = f->k0; h < f->k1; h++)
                for (int e = 0; e < x->hd; e++) f->csum[c * x->hd + e] += KP(x, b, h, j)[e] / (double)(f->k1 - f->k0);
}

static void bf_free(bf *f) { free(f->csum); }

/* End of block m's allowed keys (j < e), clipped to nk. */
static int64_t bf_end(const bf *f, int m) {
    int64_t rend = imin((int64_t)(m + 1) * f->p->block, f->S);
    return imin(rend + f->x->nk - f->x->nq, f->x->nk);
}

/* score[c] of block m, in double. */
static void bf_scores(const bf *f, int m, double *score) {
    const inp *x = f->x;
    int i0 = m * f->p->block, i1 = (int)imin(i0 + f->p->block, f->S), hd = x->hd;
    double *qs = (double *)calloc((size_t)hd, sizeof(double));
    for (int i = i0; i < i1; i++)
        for (int h = f->q0; h < f->q1; h++)
            for (int e = 0; e < hd; e++) qs[e] += QP(x, f->b, h, i)[e] / (double)(f->q1 - f->q0);
    for (int c = 0; c < f->nc; c++) {
        double dot = 0;
        for (int e = 0; e < hd; e++) dot += qs[e] * f->csum[c * hd + e];
        score[c] = dot / sqrt((double)(i1 - i0) * (double)(f->bnd[c + 1] - f->bnd[c]));
    }
    free(qs);
}

static const double *g_sort_sc;
static int cmp_cand(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_sort_sc[i] != g_sort_sc[j]) return g_sort_sc[i] > g_sort_sc[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* The key set of block m into sel[nk]; *ambiguous = 1 when two keys of different chunks on both sides of
 * the budget cut score within 1e-4 of the block's largest |score| (f32 products may order them either
 * way). *gend / *lloc: ends of the global range and start of the local range. */
static void bf_keys(const bf *f, int m, uint8_t *sel, int *ambiguous, int64_t *gend, int64_t *lloc) {
    const ak_dhsa_params *p = f->p;
    int nk = f->x->nk;
    memset(sel, 0, (size_t)nk + 1);
    *ambiguous = 0, *gend = 0, *lloc = 0;
    int64_t e = bf_end(f, m);
    if (e <= 0) return;
    double *score = (double *)malloc(sizeof(double) * (size_t)(f->nc + 1)), *sc = (double *)malloc(sizeof(double) * (size_t)nk);
    int *chunk = (int *)malloc(sizeof(int) * (size_t)nk), *cand = (int *)malloc(sizeof(int) * (size_t)nk);
    bf_scores(f, m, score);
    double smax = 0;
    for (int c = 0; c < f->nc; c++) {
        smax = fmax(smax, fabs(score[c]));
        for (int j = f->bnd[c]; j < f->bnd[c + 1]; j++) sc[j] = score[c], chunk[j] = c;
    }
    int64_t K = imin(p->budget, nk), l = imin(imin(p->local, K), e), g = imin(p->global_tokens, e);
    for (int64_t j = e - l; j < e; j++) sel[j] = 1;
    int nc = 0;
    for (int j = 0; j < e - l; j++)
        if (p->global_overwrite || j >= g) cand[nc++] = j;
    g_sort_sc = sc;
    qsort(cand, (size_t)nc, sizeof(int), cmp_cand);
    int64_t take = imin(K - l, nc);
    for (int64_t u = 0; u < take; u++) sel[cand[u]] = 1;
    if (take > 0 && take < nc) {
        double tol = 1e-4 * fmax(smax, 1e-30);
        for (int64_t a = take - 1; a >= 0 && sc[cand[a]] <= sc[cand[take]] + tol; a--)
            for (int64_t z = take; z < nc && sc[cand[z]] >= sc[cand[take - 1]] - tol; z++)
                if (chunk[cand[a]] != chunk[cand[z]] && sc[cand[a]] != sc[cand[z]] && fabs(sc[cand[a]] - sc[cand[z]]) <= tol)
                    *ambiguous = 1; /* exact ties (equal chunk contents) are no ambiguity: lower index */
    }
    *lloc = e - l;
    if (!p->global_overwrite) {
        for (int64_t j = 0; j < g; j++) sel[j] = 1;
        *gend = g;
    } else if (p->global_tokens >= K) {
        memset(sel, 0, (size_t)nk);
        for (int64_t j = 0; j < imin(K, e); j++) sel[j] = 1;
        *gend = imin(K, e);
    } else {
        int64_t drop = p->global_tokens;
        for (int j = 0; j < nk && drop > 0; j++)
            if (sel[j]) sel[j] = 0, drop--;
        for (int64_t j = 0; j < g; j++) sel[j] = 1;
        *gend = g;
    }
    free(score), free(sc), free(chunk), free(cand);
}

/* ---- plan helpers ----------------------------------------------------------------------------- */

static ak_sparse *plan_of(ak_ctx *ctx, const inp *x, const ak_dhsa_params *p, const char *tag) {
    ak_sparse *sp = NULL;
    ak_dyn_info info;
    ak_status st = ak_dhsa_plan(ctx, &x->d, &x->t, p, &sp, &info);
    CHECK(st == AK_OK && sp, "%s: ak_dhsa_plan: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    if (st == AK_OK) {
        CHECK(info.size == sizeof info && info.est_seconds >= 0 && info.density >= 0 && info.density <= 1.0 + 1e-9,
              "%s: info size %zu, est %g, density %g", tag, info.size, info.est_seconds, info.density);
        CHECK(strstr(info.explain, "h0:") != NULL, "%s: explain text '%s'", tag, info.explain);
        if (g_verbose) printf("%s: %s", tag, info.explain);
    }
    return sp;
}

static char *plan_json(ak_ctx *ctx, const ak_sparse *sp) {
    char *s = NULL;
    size_t len = 0;
    if (!sp || ak_sparse_to_json(ctx, sp, &s, &len) != AK_OK) return NULL;
    return s;
}

/* Every row of plan (b, ph) sees exactly its causal keys. Returns 1 if so. */
static int mask_is_causal(const ak_sparse *sp, const inp *x, int b, int ph, const char *tag) {
    uint8_t *mask = (uint8_t *)malloc((size_t)x->nq * x->nk + 1);
    CHECK_STATUS(ak_sparse_mask(sp, b, ph, mask), AK_OK);
    int ok = 1;
    for (int i = 0; i < x->nq && ok; i++)
        for (int j = 0; j < x->nk && ok; j++) {
            int want = j <= i + x->nk - x->nq;
            if (mask[(size_t)i * x->nk + j] != want) {
                CHECK(0, "%s: (b %d, h %d) row %d key %d: mask %d, causal %d", tag, b, ph, i, j, mask[(size_t)i * x->nk + j], want);
                ok = 0;
            }
        }
    free(mask);
    return ok;
}

/* Max |executor - ak_attention_ref| (f64 outputs) on the inputs x with plan sp; -1 on NaN / failure. */
static double exec_vs_dense(ak_ctx *ctx, const inp *x, const ak_sparse *sp) {
    size_t no = (size_t)x->B * x->Hq * x->nq * x->hd;
    float *o = (float *)malloc(sizeof(float) * (no + 1));
    double *ro = (double *)malloc(sizeof(double) * (no + 1));
    for (size_t e = 0; e < no; e++) o[e] = NAN, ro[e] = NAN;
    ak_attn_tensors t = x->t, tr = x->t;
    t.o = ak_tensor_4d(o, AK_F32, x->B, x->Hq, x->nq, x->hd);
    ak_attn_desc dr = x->d;
    dr.dtype_o = AK_F64;
    tr.o = ak_tensor_4d(ro, AK_F64, x->B, x->Hq, x->nq, x->hd);
    double worst = -1;
    ak_plan *pl = NULL;
    if (ak_attention_ref(ctx, &dr, &tr) == AK_OK && ak_plan_create_sparse(ctx, &x->d, sp, &pl) == AK_OK &&
        ak_attention_run(pl, &t, NULL, 0) == AK_OK) {
        worst = 0;
        for (size_t e = 0; e < no; e++) worst = isnan(o[e]) ? INFINITY : fmax(worst, fabs(o[e] - ro[e]));
    }
    ak_plan_destroy(pl);
    free(o), free(ro);
    return worst;
}

/* ---- dense ------------------------------------------------------------------------------------ */

static void group_dense(ak_ctx *ctx) {
    int32_t given[] = {5, 40, 41, 90};
    for (int c = 0; c < 12; c++) {
        rng r = rng_seed(100 + (uint64_t)c);
        int nk = c < 10 ? 97 + 13 * c : 130, nq = c == 7 ? 40 : c == 8 ? 1 : nk, Hkv = 1 + c % 2, G = c % 3 == 0 ? 3 : 1 + c % 2;
        inp x;
        inp_make(&x, 1 + c % 2, Hkv * G, Hkv, nq, nk, 8 + c);
        inp_random(&x, &r, 1.0);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.budget = c % 4 == 0 ? nk : nk + 1000 * c;
        p.block = 16 + 5 * c;
        p.chunking = c % 3;
        p.chunk = 1 + c;
        p.boundaries = given, p.n_boundaries = 4;
        p.global_overwrite = c % 2;
        p.per_kv_head = c % 5 == 1;
        p.local = c % 3 == 1 ? 0 : 7 * c;
        p.global_tokens = c % 4 == 2 ? 0 : 3 * c;
        p.instruction_tokens = c % 3 == 2 ? 0 : 64;
        char tag[64];
        snprintf(tag, sizeof tag, "dense case %d", c);
        ak_sparse *sp = plan_of(ctx, &x, &p, tag);
        if (!sp) {
            inp_free(&x);
            continue;
        }
        ak_sparse_stats st;
        CHECK_STATUS(ak_sparse_get_stats(sp, &st), AK_OK);
        CHECK(fabs(st.density - 1.0) < 1e-12 || x.nq == 0, "%s: density %g", tag, st.density);
        for (int b = 0; b < x.B; b++)
            for (int h = 0; h < plan_heads(&x, &p); h++) mask_is_causal(sp, &x, b, h, tag);
        if (c < 4) {
            double err = exec_vs_dense(ctx, &x, sp);
            CHECK(err >= 0 && err <= 2e-5, "%s: executor vs ak_attention_ref: %g", tag, err);
        }
        ak_sparse_destroy(sp);
        inp_free(&x);
    }
}

/* ---- identity, splitting, pad dilution, upsampling --------------------------------------------- */

/* ak_dhsa_scores against the double formula; returns the worst relative error. */
static double scores_vs_formula(ak_ctx *ctx, const inp *x, const ak_dhsa_params *p, int b, int ph, const int32_t *bnd, int nb,
                                float *out) {
    bf f;
    bf_init(&f, x, p, b, ph, bnd, nb);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x->d, &x->t, p, b, ph, bnd, nb, out), AK_OK);
    double worst = 0, *s = (double *)malloc(sizeof(double) * (size_t)nb);
    for (int m = 0; m < f.nqb; m++) {
        bf_scores(&f, m, s);
        double mx = 1e-30;
        for (int c = 0; c < nb - 1; c++) mx = fmax(mx, fabs(s[c]));
        for (int c = 0; c < nb - 1; c++) worst = fmax(worst, fabs(out[m * (nb - 1) + c] - s[c]) / mx);
    }
    free(s);
    bf_free(&f);
    return worst;
}

/* For every block of plan (b, ph): chunks of bnd taken partially (among keys below the local range and
 * above the globals); *cut_ok = 0 when a partial chunk's keys are not its lowest candidate keys. */
static int partial_chunks(const ak_sparse *sp, const inp *x, const ak_dhsa_params *p, int b, int ph, const int32_t *bnd, int nb,
                          int *max_partial, int *cut_ok) {
    uint8_t *mask = (uint8_t *)malloc((size_t)x->nq * x->nk + 1);
    ak_sparse_mask(sp, b, ph, mask);
    int ninstr = (int)imin(p->instruction_tokens, x->nq), S = x->nq - ninstr, total = 0;
    *max_partial = 0, *cut_ok = 1;
    for (int m = 0; m * p->block < S; m++) {
        int last = (int)imin((m + 1) * p->block, S) - 1, e = last + x->nk - x->nq + 1, np = 0;
        int l = (int)imin(imin(p->local, p->budget), e), g = (int)imin(p->global_tokens, e - l);
        const uint8_t *row = mask + (size_t)last * x->nk;
        for (int c = 0; c + 1 < nb; c++) {
            int a = bnd[c] > g ? bnd[c] : g, z = bnd[c + 1] < e - l ? bnd[c + 1] : e - l, n = 0;
            if (a >= z) continue;
            for (int j = a; j < z; j++) n += row[j];
            if (n > 0 && n < z - a) {
                np++;
                for (int j = a; j < a + n; j++)
                    if (!row[j]) *cut_ok = 0;
            }
        }
        *max_partial = np > *max_partial ? np : *max_partial;
        total += np;
    }
    free(mask);
    return total;
}

static void group_identity(ak_ctx *ctx) {
    /* 1. the formula, GQA 3 shared and per KV head, random given boundaries */
    for (int c = 0; c < 4; c++) {
        rng r = rng_seed(200 + (uint64_t)c);
        inp x;
        inp_make(&x, 2, 6, c < 2 ? 2 : 1, 150 + 31 * c, 170 + 31 * c, 24 + c);
        inp_random(&x, &r, 1.0);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.block = 32 + 7 * c, p.instruction_tokens = 20 * c, p.per_kv_head = c % 2, p.chunking = AK_DHSA_GIVEN;
        int32_t bnd[400];
        int nb = 0;
        bnd[nb++] = 0;
        for (int j = 1; j < x.nk; j++)
            if (rng_chance(&r, 0.12)) bnd[nb++] = j;
        bnd[nb++] = x.nk;
        int nqb = (x.nq - (int)imin(p.instruction_tokens, x.nq) + p.block - 1) / p.block;
        float *sc = (float *)malloc(sizeof(float) * (size_t)(nqb * nb + 1)), *sc2 = (float *)malloc(sizeof(float) * (size_t)(nqb * (nb + 1) + 1));
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < plan_heads(&x, &p); h++) {
                double err = scores_vs_formula(ctx, &x, &p, b, h, bnd, nb, sc);
                CHECK(err <= 1e-5, "identity case %d b %d h %d: scores vs formula: %g", c, b, h, err);
            }
        /* 2. split the longest chunk but the last (made even, its keys constant) into halves */
        int cs = -1;
        for (int u = 0; u + 2 < nb; u++)
            if (cs < 0 || bnd[u + 1] - bnd[u] > bnd[cs + 1] - bnd[cs]) cs = u;
        if (cs < 0 || bnd[cs + 1] - bnd[cs] < 3) {
            CHECK(0, "identity case %d: no chunk to split", c);
            free(sc), free(sc2), inp_free(&x);
            continue;
        }
        if ((bnd[cs + 1] - bnd[cs]) % 2) bnd[cs + 1]--; /* the next chunk grows by one key */
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < x.Hkv; h++)
                for (int j = bnd[cs]; j < bnd[cs + 1]; j++) memcpy(KP(&x, b, h, j), KP(&x, b, h, bnd[cs]), sizeof(float) * (size_t)x.hd);
        int32_t bnd2[401];
        memcpy(bnd2, bnd, sizeof(int32_t) * (size_t)(cs + 1));
        bnd2[cs + 1] = (bnd[cs] + bnd[cs + 1]) / 2;
        memcpy(bnd2 + cs + 2, bnd + cs + 1, sizeof(int32_t) * (size_t)(nb - cs - 1));
        int nb2 = nb + 1, ok = 1;
        CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p, 0, 0, bnd, nb, sc), AK_OK);
        CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p, 0, 0, bnd2, nb2, sc2), AK_OK);
        for (int m = 0; m < nqb && ok; m++) {
            const float *a = sc + m * (nb - 1), *z = sc2 + m * (nb2 - 1);
            double mx = 1e-30;
            for (int u = 0; u + 1 < nb; u++) mx = fmax(mx, fabs(a[u]));
            for (int u = 0; u + 1 < nb; u++) {
                int u2 = u < cs ? u : u + 1;
                if (u == cs) {
                    ok &= fabs(z[cs] - a[cs] / sqrt(2.0)) <= 1e-5 * mx && fabs(z[cs + 1] - a[cs] / sqrt(2.0)) <= 1e-5 * mx;
                    continue;
                }
                ok &= fabs(z[u2] - a[u]) <= 1e-6 * mx;
                for (int v = 0; v + 1 < nb; v++) { /* ranking of the other chunks */
                    int v2 = v < cs ? v : v + 1;
                    if (v != cs && (a[u] > a[v]) != (z[u2] > z[v2]) && fabs(a[u] - a[v]) > 1e-5 * mx) ok = 0;
                }
            }
        }
        CHECK(ok, "identity case %d: splitting chunk %d [%d, %d) changed other scores / the halves are not score/sqrt(2)", c,
              cs, bnd[cs], bnd[cs + 1]);
        free(sc), free(sc2);
        inp_free(&x);
    }
    /* 3. pad dilution: the tail block's scores scale by |B| / block; the plan does not change */
    {
        rng r = rng_seed(300);
        inp x;
        inp_make(&x, 1, 2, 1, 300, 300, 16);
        inp_random(&x, &r, 1.0);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.block = 64, p.budget = 70, p.local = 16, p.global_tokens = 8, p.instruction_tokens = 10, p.chunk = 8;
        int32_t bnd[400];
        int nb;
        my_bounds(&x, &p, bnd, &nb);
        int nqb = (300 - 10 + 63) / 64, tail = 290 - 64 * (nqb - 1);
        float *s0 = (float *)malloc(sizeof(float) * (size_t)(nqb * nb)), *s1 = (float *)malloc(sizeof(float) * (size_t)(nqb * nb));
        CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p, 0, 0, bnd, nb, s0), AK_OK);
        ak_sparse *a = plan_of(ctx, &x, &p, "pad_dilution 0");
        p.pad_dilution = 1;
        CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p, 0, 0, bnd, nb, s1), AK_OK);
        ak_sparse *z = plan_of(ctx, &x, &p, "pad_dilution 1");
        double worst = 0;
        for (int m = 0; m < nqb; m++) {
            double f = m == nqb - 1 ? (double)tail / 64.0 : 1.0, mx = 1e-30;
            for (int c = 0; c + 1 < nb; c++) mx = fmax(mx, fabs(s0[m * (nb - 1) + c] * f));
            for (int c = 0; c + 1 < nb; c++) worst = fmax(worst, fabs(s1[m * (nb - 1) + c] - s0[m * (nb - 1) + c] * f) / mx);
        }
        CHECK(worst <= 1e-5, "pad_dilution: tail scores not scaled by %d/64 (err %g)", tail, worst);
        char *ja = plan_json(ctx, a), *jz = plan_json(ctx, z);
        CHECK(ja && jz && strcmp(ja, jz) == 0, "pad_dilution changed the plan");
        ak_free(ctx, ja), ak_free(ctx, jz);
        ak_sparse_destroy(a), ak_sparse_destroy(z);
        free(s0), free(s1);
        inp_free(&x);
    }
    /* 4. upsampling: whole chunks when the budget is whole chunks; else at most one cut chunk per block,
     *    cut to its lowest keys */
    for (int c = 0; c < 6; c++) {
        rng r = rng_seed(400 + (uint64_t)c);
        inp x;
        inp_make(&x, 1, 4, 2, 512, 512, 16);
        inp_random(&x, &r, 1.0);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.block = 64, p.chunk = 16, p.local = 32, p.global_tokens = c % 2 ? 0 : 32, p.instruction_tokens = 64;
        p.per_kv_head = c >= 4;
        p.chunking = c % 3 == 2 ? AK_DHSA_GIVEN : AK_DHSA_FIXED;
        int32_t given[64];
        for (int u = 0; u < 32; u++) given[u] = 16 * (u + 1);
        p.boundaries = given, p.n_boundaries = 31;
        p.budget = c < 2 ? 32 + 5 * 16 : 32 + 5 * 16 + 7 + c;
        int32_t bnd[600];
        int nb;
        my_bounds(&x, &p, bnd, &nb);
        ak_sparse *sp = plan_of(ctx, &x, &p, "upsampling");
        if (!sp) {
            inp_free(&x);
            continue;
        }
        for (int h = 0; h < plan_heads(&x, &p); h++) {
            int maxp, cut_ok, total = partial_chunks(sp, &x, &p, 0, h, bnd, nb, &maxp, &cut_ok);
            if (c < 2)
                CHECK(total == 0, "upsampling case %d: budget of whole chunks, %d chunks taken partially", c, total);
            else
                CHECK(maxp <= 1 && cut_ok, "upsampling case %d: %d partial chunks in a block (cut to lowest keys: %d)", c, maxp, cut_ok);
            if (c >= 2) CHECK(total > 0, "upsampling case %d: no partial chunk with a budget of %d", c, p.budget);
        }
        ak_sparse_destroy(sp);
        inp_free(&x);
    }
}

/* ---- select: the brute force over odd sizes ---------------------------------------------------- */

/* The plan's lists of (b, ph): normal form, keys < e, spans / cols as documented. */
static void check_lists(const ak_sparse *sp, const bf *f, const char *tag) {
    ak_sparse_desc d;
    if (ak_sparse_get_desc(sp, &d) != AK_OK) return;
    const ak_dhsa_params *p = f->p;
    int nlists = d.n_qblocks, ok = 1;
    for (int qb = 0; qb < f->nqb && ok; qb++) {
        int64_t rr = ((int64_t)f->b * d.n_heads + f->ph) * nlists + qb;
        int64_t e = bf_end(f, qb), s0 = d.span_off[rr], s1 = d.span_off[rr + 1], c0 = d.col_off ? d.col_off[rr] : 0,
                c1 = d.col_off ? d.col_off[rr + 1] : 0;
        uint8_t sel[1100];
        int amb;
        int64_t gend, lloc;
        bf_keys(f, qb, sel, &amb, &gend, &lloc);
        for (int64_t s = s0; s < s1; s++) {
            int lo = d.span_lo[s], hi = d.span_hi[s];
            ok &= lo < hi && hi <= e && (s == s0 || d.span_lo[s] > d.span_hi[s - 1]);
            ok &= lo < gend || hi > lloc || hi - lo >= p->span_min;
        }
        for (int64_t u = c0; u < c1; u++) {
            int j = d.col_idx[u];
            ok &= j < e && (u == c0 || j > d.col_idx[u - 1]) && j >= gend && j < lloc;
            for (int64_t s = s0; s < s1; s++) ok &= !(j >= d.span_lo[s] - 1 && j <= d.span_hi[s]); /* never touches a span */
            if (u == c0 || d.col_idx[u - 1] != j - 1) {                                          /* a run of cols */
                int64_t n = 1;
                while (u + n < c1 && d.col_idx[u + n] == j + n) n++;
                ok &= n < p->span_min;
            }
        }
        if (!ok) CHECK(0, "%s: (b %d, h %d) block %d: list not in the documented form", tag, f->b, f->ph, qb);
    }
}

/* Compare plan (b, ph) with the brute force; returns the number of ambiguous blocks. */
static int compare_bf(const ak_sparse *sp, const bf *f, const char *tag) {
    const inp *x = f->x;
    int nk = x->nk, amb_blocks = 0;
    uint8_t *mask = (uint8_t *)malloc((size_t)x->nq * nk + 1), *sel = (uint8_t *)malloc((size_t)nk + 1);
    CHECK_STATUS(ak_sparse_mask(sp, f->b, f->ph, mask), AK_OK);
    for (int m = 0; m < f->nqb; m++) {
        int amb;
        int64_t gend, lloc, e = bf_end(f, m);
        bf_keys(f, m, sel, &amb, &gend, &lloc);
        amb_blocks += amb;
        int i0 = m * f->p->block, i1 = (int)imin(i0 + f->p->block, f->S), bad = 0;
        for (int i = i0; i < i1 && !bad; i++) {
            int64_t pos = i + nk - x->nq;
            const uint8_t *row = mask + (size_t)i * nk;
            if (!amb) {
                for (int j = 0; j < nk && !bad; j++)
                    if (row[j] != (sel[j] && j <= pos)) {
                        CHECK(0, "%s: (b %d, h %d) block %d row %d key %d: plan %d, brute force %d", tag, f->b, f->ph, m, i, j,
                              row[j], sel[j] && j <= pos);
                        bad = 1;
                    }
            } else if (i == i1 - 1) { /* a near tie at the cut: the count, locals and globals */
                int n0 = 0, n1 = 0;
                for (int j = 0; j < nk; j++) n0 += row[j], n1 += sel[j];
                for (int64_t j = lloc; j < e; j++) bad |= !row[j];
                for (int64_t j = 0; j < gend && !f->p->global_overwrite; j++) bad |= !row[j];
                CHECK(n0 == n1 && !bad, "%s: ambiguous block %d: %d keys vs %d", tag, m, n0, n1);
            }
        }
    }
    for (int i = f->S; i < x->nq; i++) /* instruction rows: dense causal */
        for (int j = 0; j < nk; j++)
            if (mask[(size_t)i * nk + j] != (j <= i + nk - x->nq)) {
                CHECK(0, "%s: instruction row %d key %d not dense", tag, i, j);
                j = nk, i = x->nq;
            }
    free(mask), free(sel);
    return amb_blocks;
}

static void group_select(ak_ctx *ctx) {
    static const int lens[] = {1, 17, 113, 300, 1023}, Gs[] = {1, 3, 4}, dims[] = {3, 16, 40};
    static const int blocks[] = {1, 7, 16, 24, 64, 128}, budgets[] = {1, 10, 24, 50, 100, 300, 2048};
    static const int locals[] = {0, 1, 8, 20, 128}, globs[] = {0, 3, 16, 128}, instrs[] = {0, 5, 64};
    static const int chunks[] = {1, 3, 7, 16}, spanmins[] = {1, 4, 64, 1000};
    int ncase = g_quick ? 24 : 90, amb_total = 0, blocks_total = 0;
    for (int c = 0; c < ncase; c++) {
        rng r = rng_seed(5000 + (uint64_t)c);
        int nk = c < 5 ? lens[c] : rng_pick(&r, lens, 5);
        if (g_quick && nk > 300) nk = 300;
        int nq = rng_chance(&r, 0.25) ? 1 + rng_int(&r, nk) : nk, G = rng_pick(&r, Gs, 3), Hkv = 1 + rng_int(&r, 2);
        inp x;
        inp_make(&x, 1 + rng_int(&r, 2), G * Hkv, Hkv, nq, nk, rng_pick(&r, dims, 3));
        inp_random(&x, &r, 1.0);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.chunk = rng_pick(&r, chunks, 4);
        if (c % 10 == 9) /* all keys 0: every score ties, the lowest indices win */
            memset(x.k, 0, sizeof(float) * (size_t)x.B * x.Hkv * nk * x.hd);
        if (c % 10 == 8) /* keys periodic with the chunk: equal chunks tie exactly */
            for (int b = 0; b < x.B; b++)
                for (int h = 0; h < x.Hkv; h++)
                    for (int j = p.chunk; j < nk; j++) memcpy(KP(&x, b, h, j), KP(&x, b, h, j % p.chunk), sizeof(float) * (size_t)x.hd);
        p.block = nk > 500 && rng_chance(&r, 0.7) ? 64 : rng_pick(&r, blocks, 6);
        p.budget = rng_pick(&r, budgets, 7);
        p.local = rng_pick(&r, locals, 5);
        p.global_tokens = rng_pick(&r, globs, 4);
        p.instruction_tokens = rng_pick(&r, instrs, 3);
        p.global_overwrite = rng_chance(&r, 0.25);
        p.per_kv_head = rng_chance(&r, 0.3);
        p.span_min = rng_pick(&r, spanmins, 4);
        int32_t given[1100];
        int ng = 0;
        if (rng_chance(&r, 0.4) && c % 10 != 8) {
            p.chunking = AK_DHSA_GIVEN;
            for (int j = 0; j <= nk; j++)
                if (rng_chance(&r, 0.1) || (j == 0 && rng_chance(&r, 0.5))) given[ng++] = j;
            p.boundaries = given, p.n_boundaries = ng;
        }
        char tag[160];
        snprintf(tag, sizeof tag, "select case %d (B%d Hq%d Hkv%d nq%d nk%d d%d block %d budget %d local %d global %d instr %d %s:%d%s%s)",
                 c, x.B, x.Hq, x.Hkv, nq, nk, x.hd, p.block, p.budget, p.local, p.global_tokens, p.instruction_tokens,
                 p.chunking ? "given" : "fixed", p.chunking ? ng : p.chunk, p.global_overwrite ? " overwrite" : "",
                 p.per_kv_head ? " per-kv" : "");
        ak_sparse *sp = plan_of(ctx, &x, &p, tag);
        if (sp) {
            int32_t bnd[1100], got[1100];
            int nb, ngot = 0;
            my_bounds(&x, &p, bnd, &nb);
            for (int b = 0; b < x.B; b++)
                for (int h = 0; h < plan_heads(&x, &p); h++) {
                    CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p, b, h, got, 1100, &ngot), AK_OK);
                    CHECK(ngot == nb && memcmp(got, bnd, sizeof(int32_t) * (size_t)nb) == 0, "%s: boundaries differ (%d vs %d)", tag,
                          ngot, nb);
                    bf f;
                    bf_init(&f, &x, &p, b, h, bnd, nb);
                    amb_total += compare_bf(sp, &f, tag);
                    blocks_total += f.nqb;
                    check_lists(sp, &f, tag);
                    bf_free(&f);
                }
            if (g_verbose) printf("%s: ok\n", tag);
        }
        ak_sparse_destroy(sp);
        inp_free(&x);
    }
    printf("select: %d cases, %d blocks compared, %d with a near tie at the cut (checked by count)\n", ncase, blocks_total,
           amb_total);
    CHECK(amb_total * 20 <= blocks_total + 20, "select: too many ambiguous blocks (%d of %d)", amb_total, blocks_total);
}

/* ---- boundary selection and the oracle ------------------------------------------------------------ */

static int expect_bounds(ak_ctx *ctx, const float *ratio, int n, float theta, int nms, int maxc, int instr, const int32_t *want,
                         int nwant, const char *tag) {
    int32_t got[128];
    int32_t ng = -1;
    ak_status st = ak_dhsa_select_boundaries(ctx, ratio, n, theta, nms, maxc, instr, got, 128, &ng);
    int ok = st == AK_OK && ng == nwant && memcmp(got, want, sizeof(int32_t) * (size_t)nwant) == 0;
    if (!ok) {
        char buf[512];
        int off = 0;
        for (int i = 0; i < ng && i < 40 && off < 400; i++) off += snprintf(buf + off, sizeof buf - (size_t)off, " %d", got[i]);
        buf[off] = 0;
        CHECK(0, "%s: status %s, got [%s ] (%d)", tag, ak_status_string(st), buf, ng);
    }
    return ok;
}

/* A block-structured head-averaged attention: row i spreads 1 - eps over the keys of its segment up to
 * i and eps over all keys 0..i. */
static void segment_attention(float *A, int n, const int *seg_start, int nseg, double eps) {
    for (int i = 0; i < n; i++) {
        int s = 0;
        while (s + 1 < nseg && seg_start[s + 1] <= i) s++;
        int a = seg_start[s];
        for (int j = 0; j < n; j++) {
            double v = 0;
            if (j <= i) v = eps / (i + 1) + (j >= a ? (1 - eps) / (i - a + 1) : 0);
            A[(size_t)i * n + j] = (float)v;
        }
    }
}

static void group_boundary(ak_ctx *ctx) {
    /* 1. hand-made ratios, n = 50: peaks at gaps 9 (3.0), 11 (2.5), 20 (2.0), 30 (theta exactly), 35 (1.5), 44 (5.0) */
    float ratio[50] = {0};
    ratio[9] = 3.0f, ratio[11] = 2.5f, ratio[20] = 2.0f, ratio[30] = 1.1f, ratio[35] = 1.5f, ratio[44] = 5.0f;
    {
        const int32_t w1[] = {0, 10, 21, 42, 50}; /* forced 42; 45 beyond it; 12 within 8 of 10; 36 within 8 of 42 */
        expect_bounds(ctx, ratio, 50, 1.1f, 8, 100, 8, w1, 5, "forced + nms");
        const int32_t w2[] = {0, 10, 42, 50}; /* max_chunks 2: the forced one counts */
        expect_bounds(ctx, ratio, 50, 1.1f, 8, 2, 8, w2, 4, "max_chunks 2");
        const int32_t w3[] = {0, 42, 50}; /* max_chunks 0: only the forced one */
        expect_bounds(ctx, ratio, 50, 1.1f, 8, 0, 8, w3, 3, "max_chunks 0");
        const int32_t w4[] = {0, 10, 12, 21, 36, 42, 50}; /* nms 0 */
        expect_bounds(ctx, ratio, 50, 1.1f, 0, 100, 8, w4, 7, "nms 0");
        const int32_t w5[] = {0, 10, 21, 36, 45, 50}; /* no instruction: 45 first, 36 is 9 away */
        expect_bounds(ctx, ratio, 50, 1.1f, 8, 100, 0, w5, 6, "no forced boundary");
        const int32_t w7[] = {0, 45, 50}; /* theta 4: only gap 44 */
        expect_bounds(ctx, ratio, 50, 4.0f, 8, 100, 0, w7, 3, "theta 4");
        const int32_t w8[] = {0, 10, 45, 50}; /* max_chunks 2 without forced: the two best */
        expect_bounds(ctx, ratio, 50, 1.1f, 8, 2, 0, w8, 4, "max_chunks 2, no forced");
        const int32_t w9[] = {0, 45, 50}; /* instruction_tokens >= n: no forced boundary, no cut of candidates */
        expect_bounds(ctx, ratio, 50, 4.0f, 8, 100, 50, w9, 3, "instruction covers all");
        float tie[20] = {0};
        tie[5] = tie[15] = 2.0f;
        const int32_t w10[] = {0, 6, 20};
        expect_bounds(ctx, tie, 20, 1.1f, 0, 1, 0, w10, 3, "tie -> lower index");
        const int32_t w11[] = {0, 50}; /* theta exactly: ratio 1.1 at gap 30 is not > 1.1 */
        float one[50] = {0};
        one[30] = 1.1f;
        expect_bounds(ctx, one, 50, 1.1f, 8, 100, 0, w11, 2, "ratio == theta excluded");
        int32_t small[2], ns = 0;
        CHECK_STATUS(ak_dhsa_select_boundaries(ctx, ratio, 50, 1.1f, 8, 100, 8, small, 2, &ns), AK_ERR_INVALID_ARGUMENT);
        CHECK(ns == 5 && strstr(ak_ctx_last_error(ctx), "cap"), "cap too small: n %d, '%s'", ns, ak_ctx_last_error(ctx));
        /* many candidates with NMS rejecting most of the first top-k batch */
        float dense[600];
        for (int t = 0; t < 600; t++) dense[t] = 2.0f + (float)(600 - t) * 1e-3f;
        int32_t got[700], ng = 0;
        CHECK_STATUS(ak_dhsa_select_boundaries(ctx, dense, 600, 1.1f, 8, 60, 0, got, 700, &ng), AK_OK);
        int okd = ng == 62;
        for (int i = 1; i < ng - 1 && okd; i++) okd = got[i] == 1 + 9 * (i - 1);
        CHECK(okd, "NMS over a long ramp: %d boundaries (want 60 spaced 9 apart from 1)", ng - 2);
    }
    /* 2. the label oracle on a synthetic block-structured attention */
    {
        const int n = 100, seg[] = {0, 20, 45, 70};
        float *A = (float *)malloc(sizeof(float) * n * n), r2[100];
        segment_attention(A, n, seg, 4, 0.02);
        CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, n, n, 4, 0, r2), AK_OK);
        for (int s = 1; s < 4; s++) {
            int t = seg[s] - 1, peak = 1;
            for (int u = t - 4; u <= t + 4; u++) peak &= u == t || r2[u] < r2[t];
            CHECK(peak && r2[t] > 10.0f, "label ratios: gap %d (boundary %d) = %g is not the local peak", t, seg[s], r2[t]);
        }
        int flat = 1;
        for (int t = 3; t < n - 4; t++) {
            int near = 0;
            for (int s = 1; s < 4; s++) near |= abs(t - (seg[s] - 1)) <= 4;
            if (!near) flat &= fabsf(r2[t] - 1.0f) < 0.05f;
        }
        CHECK(flat, "label ratios: gaps inside segments not ~1");
        CHECK(r2[0] == 0 && r2[2] == 0 && r2[n - 4] == 0 && r2[n - 1] == 0, "label ratios: invalid gaps not 0");
        const int32_t want[] = {0, 20, 45, 70, 100};
        expect_bounds(ctx, r2, n, 1.1f, 8, 48, 0, want, 5, "oracle on segments");
        CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, n, n, 4, 1, r2), AK_OK);
        CHECK(r2[6] == 0 && r2[7] > 0 && r2[n - 9] > 0 && r2[n - 8] == 0, "smooth_ends range [7, 92)");
        free(A);
    }
    /* 2b. exact values: the header's formula, plainly, on random matrices */
    for (int c = 0; c < 4; c++) {
        rng r = rng_seed(650 + (uint64_t)c);
        int n = 13 + 7 * c, w = 1 + c % 3, sm = c / 2, ok = 1;
        float *A = (float *)malloc(sizeof(float) * (size_t)n * (n + 3)), *rt = (float *)malloc(sizeof(float) * (size_t)n);
        for (int e = 0; e < n * (n + 3); e++) A[e] = (float)rng_unif(&r);
        CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, n, n + 3, w, sm, rt), AK_OK);
        for (int t = 0; t < n; t++) {
            int lo = sm ? 2 * w - 1 : w - 1, hi = sm ? n - 2 * w : n - w;
            double want = 0;
            if (t >= lo && t < hi) {
                double a = 0, f = 0;
                for (int i = t + w; i < n; i++)
                    for (int u = 1; u <= w; u++) a += A[i * (n + 3) + t - w + u], f += A[i * (n + 3) + t + u];
                want = (fmax(a, f) + 1e-6) / (fmin(a, f) + 1e-6);
            }
            ok &= fabs(rt[t] - want) <= 1e-5 * fmax(1, want);
        }
        CHECK(ok, "label ratios case %d (n %d, w %d, smooth %d) differ from the formula", c, n, w, sm);
        free(A), free(rt);
    }
    /* 3. the ORACLE planner on segment-structured Q/K finds the true boundaries (+ the forced one) */
    for (int c = 0; c < 2; c++) {
        rng r = rng_seed(700 + (uint64_t)c);
        const int n = 100, hd = 32, seg[] = {0, 20, 45, 70};
        inp x;
        inp_make(&x, 1, 4, c ? 2 : 1, n, n, hd);
        double u[4][32];
        for (int s = 0; s < 4; s++) {
            double nn = 0;
            for (int e = 0; e < hd; e++) u[s][e] = rng_range(&r, -1, 1), nn += u[s][e] * u[s][e];
            for (int e = 0; e < hd; e++) u[s][e] /= sqrt(nn);
        }
        for (int i = 0; i < n; i++) {
            int s = i >= 70 ? 3 : i >= 45 ? 2 : i >= 20 ? 1 : 0;
            for (int h = 0; h < x.Hq; h++)
                for (int e = 0; e < hd; e++) QP(&x, 0, h, i)[e] = (float)(5.0 * u[s][e] + rng_range(&r, -0.05, 0.05));
            for (int h = 0; h < x.Hkv; h++)
                for (int e = 0; e < hd; e++)
                    KP(&x, 0, h, i)[e] = (float)(5.0 * u[s][e] + rng_range(&r, -0.05, 0.05)), VP(&x, 0, h, i)[e] = (float)rng_unif(&r);
        }
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.chunking = AK_DHSA_ORACLE, p.block = 16, p.instruction_tokens = 10, p.per_kv_head = c;
        int32_t got[120], ng = 0;
        for (int h = 0; h < plan_heads(&x, &p); h++) {
            CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p, 0, h, got, 120, &ng), AK_OK);
            const int32_t want[] = {0, 20, 45, 70, 90, 100};
            CHECK(ng == 6 && memcmp(got, want, sizeof want) == 0, "oracle planner case %d h %d: %d boundaries [%d %d %d %d ...]", c, h,
                  ng, got[0], got[1], got[2], ng > 3 ? got[3] : -1);
        }
        ak_sparse *sp = plan_of(ctx, &x, &p, "oracle plan");
        ak_sparse_destroy(sp);
        /* chunked prefill: the last 60 rows (positions 40..99); the oracle of this file: the head-averaged
         * softmax in double at the rows' positions -> ak_dhsa_label_ratios -> ak_dhsa_select_boundaries */
        inp y;
        inp_make(&y, 1, x.Hq, x.Hkv, 60, n, hd);
        memcpy(y.k, x.k, sizeof(float) * (size_t)x.Hkv * n * hd);
        for (int h = 0; h < x.Hq; h++) memcpy(QP(&y, 0, h, 0), QP(&x, 0, h, 40), sizeof(float) * 60 * hd);
        for (int h = 0; h < plan_heads(&y, &p); h++) {
            float *A = (float *)calloc((size_t)n * n, sizeof(float)), rt[100];
            int G = y.Hq / y.Hkv, hq0 = p.per_kv_head ? h * G : 0, hq1 = p.per_kv_head ? (h + 1) * G : y.Hq;
            for (int i = 40; i < n; i++)
                for (int hq = hq0; hq < hq1; hq++) {
                    double lg[100], mx = -INFINITY, z = 0;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int e = 0; e < hd; e++) dot += (double)QP(&y, 0, hq, i - 40)[e] * KP(&y, 0, hq / G, j)[e];
                        lg[j] = dot / sqrt((double)hd), mx = fmax(mx, lg[j]);
                    }
                    for (int j = 0; j <= i; j++) z += exp(lg[j] - mx);
                    for (int j = 0; j <= i; j++) A[i * n + j] += (float)(exp(lg[j] - mx) / z / (hq1 - hq0));
                }
            int32_t want[120], nw = 0;
            CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, n, n, p.window, p.smooth_ends, rt), AK_OK);
            CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rt, n, p.theta, p.nms, (n / p.block) * p.beta, p.instruction_tokens, want,
                                                   120, &nw),
                         AK_OK);
            CHECK_STATUS(ak_dhsa_boundaries(ctx, &y.d, &y.t, &p, 0, h, got, 120, &ng), AK_OK);
            CHECK(ng == nw && memcmp(got, want, sizeof(int32_t) * (size_t)nw) == 0 && nw >= 5,
                  "oracle planner, chunked prefill, case %d h %d: %d boundaries vs %d from this file's attention", c, h, ng, nw);
            free(A);
        }
        inp_free(&y);
        (void)seg;
        inp_free(&x);
    }
    /* 4. FIXED boundaries with the forced instruction boundary; chunked prefill moves it with the rows */
    {
        inp x;
        inp_make(&x, 1, 1, 1, 100, 100, 4);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.instruction_tokens = 10;
        int32_t got[120], ng = 0;
        const int32_t want[] = {0, 16, 32, 48, 64, 80, 90, 96, 100};
        CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p, 0, 0, got, 120, &ng), AK_OK);
        CHECK(ng == 9 && memcmp(got, want, sizeof want) == 0, "fixed boundaries with the forced one: %d", ng);
        p.instruction_tokens = 20; /* 80 is already a multiple */
        CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p, 0, 0, got, 120, &ng), AK_OK);
        CHECK(ng == 8 && got[5] == 80 && got[6] == 96, "forced boundary on a multiple: %d", ng);
        p.instruction_tokens = 0;
        CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p, 0, 0, got, 120, &ng), AK_OK);
        CHECK(ng == 8 && got[6] == 96 && got[7] == 100, "no instruction tokens: %d", ng);
        inp_free(&x);
    }
}

/* ---- recall on planted structure ------------------------------------------------------------------ */

static void group_recall(ak_ctx *ctx) {
    const int N = 1024, hd = 64, block = 64, chunk = 16;
    for (int c = 0; c < (g_quick ? 1 : 2); c++) {
        rng r = rng_seed(900 + (uint64_t)c);
        inp x;
        inp_make(&x, 1, 4, c ? 1 : 2, N, N, hd);
        for (size_t e = 0; e < (size_t)x.Hq * N * hd; e++) x.q[e] = (float)rng_range(&r, -0.3, 0.3);
        for (size_t e = 0; e < (size_t)x.Hkv * N * hd; e++) x.k[e] = (float)rng_range(&r, -0.3, 0.3), x.v[e] = (float)rng_range(&r, -1, 1);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.block = block, p.budget = 256, p.local = 32, p.global_tokens = 16, p.chunk = chunk, p.instruction_tokens = 64;
        p.per_kv_head = c;
        /* each sparse block m >= 2 attends to up to 3 chunks of its own below its local range, unused by others */
        uint8_t used[64] = {0};
        int S = N - 64, planted = 0;
        for (int m = 2; m * block < S; m++) {
            double u[64], nn = 0;
            for (int e = 0; e < hd; e++) u[e] = rng_range(&r, -1, 1), nn += u[e] * u[e];
            for (int e = 0; e < hd; e++) u[e] /= sqrt(nn);
            int hi = (m * block - 32) / chunk, got = 0;
            for (int tries = 0; tries < 50 && got < 3; tries++) {
                int ch = 1 + rng_int(&r, hi - 1);
                if (used[ch]) continue;
                used[ch] = 1, got++;
                for (int j = ch * chunk; j < (ch + 1) * chunk; j++)
                    for (int h = 0; h < x.Hkv; h++)
                        for (int e = 0; e < hd; e++) KP(&x, 0, h, j)[e] = (float)(12.0 * u[e] + rng_range(&r, -0.05, 0.05));
            }
            planted += got;
            for (int i = m * block; i < (m + 1) * block && i < S; i++)
                for (int h = 0; h < x.Hq; h++)
                    for (int e = 0; e < hd; e++) QP(&x, 0, h, i)[e] = (float)(12.0 * u[e] + rng_range(&r, -0.05, 0.05));
        }
        ak_sparse *sp = plan_of(ctx, &x, &p, "recall");
        if (!sp) {
            inp_free(&x);
            continue;
        }
        uint8_t *mask = (uint8_t *)malloc((size_t)N * N);
        double *lg = (double *)malloc(sizeof(double) * N), worst = 1, sum = 0;
        ak_sparse_stats st;
        ak_sparse_get_stats(sp, &st);
        for (int h = 0; h < x.Hq; h++) {
            CHECK_STATUS(ak_sparse_mask(sp, 0, p.per_kv_head ? h / (x.Hq / x.Hkv) : 0, mask), AK_OK);
            const float *kb = KP(&x, 0, h / (x.Hq / x.Hkv), 0);
            for (int i = 0; i < N; i++) {
                double mx = -INFINITY, z = 0, in = 0;
                const float *qi = QP(&x, 0, h, i);
                for (int j = 0; j <= i; j++) {
                    double dot = 0;
                    for (int e = 0; e < hd; e++) dot += (double)qi[e] * kb[(size_t)j * hd + e];
                    lg[j] = dot / sqrt((double)hd);
                    mx = fmax(mx, lg[j]);
                }
                for (int j = 0; j <= i; j++) {
                    double pj = exp(lg[j] - mx);
                    z += pj;
                    if (mask[(size_t)i * N + j]) in += pj;
                }
                worst = fmin(worst, in / z);
                sum += in / z;
            }
        }
        printf("recall case %d: %d planted chunks, density %.3f, recall min %.6f mean %.6f\n", c, planted, st.density, worst,
               sum / (x.Hq * N));
        CHECK(worst >= 0.99, "recall case %d: min recall %g < 0.99", c, worst);
        CHECK(st.density < 0.6, "recall case %d: density %g: the plan is not sparse", c, st.density);
        free(mask), free(lg);
        ak_sparse_destroy(sp);
        inp_free(&x);
    }
}

/* ---- exec: executor vs ak_attention_ref_sparse ---------------------------------------------------- */

static void exec_case(ak_ctx *ctx, rng *r, int c) {
    static const tlayout lays[] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};
    static const int lens[] = {17, 113, 211};
    int nk = lens[c % 3], nq = c % 4 == 3 ? nk / 2 + 1 : nk, G = c % 3 == 0 ? 1 : c % 3 == 1 ? 3 : 4, Hkv = 1 + c % 2;
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = 1 + (c % 5 == 0), d.num_heads_q = G * Hkv, d.num_heads_kv = Hkv, d.seqlen_q = nq, d.seqlen_k = nk;
    d.head_dim = 16 + 8 * (c % 3), d.head_dim_v = c % 4 == 1 ? 24 : 0, d.causal = 1, d.return_lse = 1;
    d.dtype_q = d.dtype_kv = c % 3 == 2 ? AK_BF16 : AK_F32;
    d.dtype_o = AK_F32;
    problem_opts po;
    problem_opts_default(&po);
    po.lay_q = lays[rng_int(r, 4)], po.lay_k = lays[rng_int(r, 4)], po.lay_v = lays[rng_int(r, 4)];
    po.lay_o = rng_chance(r, 0.5) ? LAY_PADDED : LAY_CONTIG;
    problem p;
    if (problem_create(&p, &d, 0, 0, &po, r) != 0) {
        CHECK(0, "exec case %d: problem_create", c);
        return;
    }
    ak_dhsa_params prm;
    ak_dhsa_params_init(&prm);
    prm.block = c % 2 ? 16 : 24, prm.budget = 20 + 7 * c, prm.local = 8, prm.global_tokens = c % 3 ? 4 : 0;
    prm.instruction_tokens = c % 4 ? 10 : 0, prm.chunk = 1 + c % 7, prm.chunking = c % 3, prm.per_kv_head = c % 2;
    prm.global_overwrite = c % 5 == 2, prm.span_min = c % 2 ? 4 : 64;
    int32_t given[] = {3, 9, 10, 15, 40, 90, 111};
    prm.boundaries = given, prm.n_boundaries = nk >= 111 ? 7 : 4;
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    ak_sparse *sp = NULL;
    char tag[160], repro[128];
    problem_repro(&p, repro, sizeof repro);
    snprintf(tag, sizeof tag, "exec case %d (%s)", c, repro);
    ak_status st = ak_dhsa_plan(ctx, &p.d, &t, &prm, &sp, NULL);
    CHECK(st == AK_OK, "%s: plan: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    size_t rows = (size_t)d.batch * d.num_heads_q * nq, dv = (size_t)p.dv;
    double *ro = (double *)malloc(sizeof(double) * (rows * dv + 1)), *rl = (double *)malloc(sizeof(double) * (rows + 1));
    for (size_t e = 0; e < rows * dv; e++) ro[e] = NAN;
    for (size_t e = 0; e < rows; e++) rl[e] = NAN;
    ak_plan *pl = NULL;
    if (sp) {
        ak_attn_desc dr = p.d;
        dr.dtype_o = AK_F64;
        ak_attn_tensors tr = t;
        tr.o = ak_tensor_4d(ro, AK_F64, d.batch, d.num_heads_q, nq, (int64_t)dv);
        tr.lse = ak_tensor_3d(rl, AK_F64, d.batch, d.num_heads_q, nq);
        CHECK_STATUS(ak_attention_ref_sparse(ctx, &dr, sp, &tr), AK_OK);
        CHECK_STATUS(ak_plan_create_sparse(ctx, &p.d, sp, &pl), AK_OK);
    }
    if (pl) {
        CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
        double worst = 0, wl = 0, mx = 1;
        for (size_t e = 0; e < rows * dv; e++) mx = fmax(mx, fabs(ro[e]));
        for (int b = 0; b < d.batch; b++)
            for (int h = 0; h < d.num_heads_q; h++)
                for (int i = 0; i < nq; i++) {
                    size_t row = ((size_t)b * d.num_heads_q + h) * nq + i;
                    for (size_t e = 0; e < dv; e++) {
                        double v = ten_get4(&p.o.t, b, h, i, (int64_t)e), ref = ro[row * dv + e];
                        worst = isnan(v) || isnan(ref) ? INFINITY : fmax(worst, fabs(v - ref));
                    }
                    double lv = ten_get3(&p.lse.t, b, h, i), lr = rl[row];
                    if (isinf(lr) || isinf(lv)) wl = lv == lr ? wl : INFINITY;
                    else wl = isnan(lv) ? INFINITY : fmax(wl, fabs(lv - lr) / fmax(1, fabs(lr)));
                }
        CHECK(worst <= 2e-5 * mx && wl <= 1e-5, "%s: executor vs ak_attention_ref_sparse: O err %g, LSE err %g", tag, worst, wl);
        CHECK(tbuf_outside_untouched(&p.o) && tbuf_outside_untouched(&p.lse), "%s: memory outside the outputs written", tag);
        if (g_verbose) printf("%s: O err %g, LSE err %g\n", tag, worst, wl);
    }
    ak_plan_destroy(pl);
    ak_sparse_destroy(sp);
    free(ro), free(rl);
    problem_destroy(&p);
}

static void group_exec(ak_ctx *ctx) {
    int n = g_quick ? 8 : 24;
    for (int c = 0; c < n; c++) {
        rng r = rng_seed(8000 + (uint64_t)c);
        exec_case(ctx, &r, c);
    }
}

/* ---- threads --------------------------------------------------------------------------------------- */

static void group_threads(ak_ctx *ctx) {
    for (int c = 0; c < 5; c++) {
        rng r = rng_seed(1200 + (uint64_t)c);
        int n = c == 2 ? 300 : 777;
        inp x;
        inp_make(&x, 1 + (c == 1), 6, c == 3 ? 2 : 3, n, n, 24);
        inp_random(&x, &r, 1.0);
        ak_dhsa_params p;
        ak_dhsa_params_init(&p);
        p.block = 16, p.budget = 120, p.local = 16, p.global_tokens = 8, p.chunk = 5;
        p.chunking = c == 2 ? AK_DHSA_ORACLE : c == 4 ? AK_DHSA_GIVEN : AK_DHSA_FIXED;
        int32_t given[] = {10, 100, 333, 500, 501};
        p.boundaries = given, p.n_boundaries = 5;
        p.per_kv_head = c == 3, p.global_overwrite = c == 4;
        char *ref = NULL;
        static const int nts[] = {1, 2, 3, 2, 3}; /* repeated: thread timing varies between runs */
        for (int u = 0; u < 5; u++) {
            int nt = nts[u];
            ak_ctx_set_num_threads(ctx, nt);
            ak_sparse *sp = plan_of(ctx, &x, &p, "threads");
            char *js = plan_json(ctx, sp);
            CHECK(js != NULL, "threads case %d: no JSON", c);
            if (u == 0) ref = js;
            else {
                CHECK(js && ref && strcmp(js, ref) == 0, "threads case %d: plan with %d threads differs from 1 thread", c, nt);
                ak_free(ctx, js);
            }
            ak_sparse_destroy(sp);
        }
        ak_free(ctx, ref);
        ak_ctx_set_num_threads(ctx, 2);
        inp_free(&x);
    }
}

/* ---- invalid ---------------------------------------------------------------------------------------- */

#define EXPECT_PLAN(prm, want, needle)                                                                             \
    do {                                                                                                          \
        out = (ak_sparse *)&sentinel;                                                                             \
        ak_status st_ = ak_dhsa_plan(ctx, &x.d, &x.t, (prm), &out, NULL);                                          \
        CHECK(st_ == (want), "%s: returned %s, expected %s", needle, ak_status_string(st_), ak_status_string(want)); \
        CHECK(out == NULL, "%s: *out not NULL", needle);                                                          \
        CHECK(strstr(ak_ctx_last_error(ctx), needle) != NULL, "message '%s' does not name %s", ak_ctx_last_error(ctx), \
              needle);                                                                                            \
        if (st_ == AK_OK) ak_sparse_destroy(out);                                                                 \
    } while (0)

static void group_invalid(ak_ctx *ctx) {
    ak_sparse *out;
    int sentinel = 0;
    const ak_status INV = AK_ERR_INVALID_ARGUMENT;
    ak_dhsa_params p0, p;
    ak_dhsa_params_init(&p0);
    CHECK(p0.block == 128 && p0.budget == 2048 && p0.local == 128 && p0.global_tokens == 128 && p0.instruction_tokens == 64 &&
              p0.chunking == AK_DHSA_FIXED && p0.chunk == 16 && fabsf(p0.theta - 1.1f) < 1e-7f && p0.nms == 8 && p0.beta == 8 &&
              p0.window == 4 && p0.smooth_ends == 0 && p0.per_kv_head == 0 && p0.pad_dilution == 0 && p0.global_overwrite == 0 &&
              p0.span_min == 64 && p0.boundaries == NULL && p0.n_boundaries == 0,
          "defaults");
    ak_dhsa_params_init(NULL);
    inp x;
    inp_make(&x, 1, 2, 1, 40, 40, 8);
    rng r = rng_seed(1);
    inp_random(&x, &r, 1.0);
#define FIELD(f, v, name)                                                                                         \
    do {                                                                                                          \
        p = p0;                                                                                                   \
        p.f = v;                                                                                                  \
        EXPECT_PLAN(&p, INV, name);                                                                               \
    } while (0)
    FIELD(block, 0, "block");
    FIELD(budget, 0, "budget");
    FIELD(local, -1, "local");
    FIELD(global_tokens, -1, "global_tokens");
    FIELD(instruction_tokens, -3, "instruction_tokens");
    FIELD(chunking, 3, "chunking");
    FIELD(chunking, -1, "chunking");
    FIELD(chunk, 0, "chunk");
    FIELD(n_boundaries, -1, "n_boundaries");
    FIELD(theta, -0.5f, "theta");
    FIELD(theta, NAN, "theta");
    FIELD(theta, INFINITY, "theta");
    FIELD(nms, -1, "nms");
    FIELD(beta, 0, "beta");
    FIELD(window, 0, "window");
    FIELD(smooth_ends, 2, "smooth_ends");
    FIELD(per_kv_head, -1, "per_kv_head");
    FIELD(pad_dilution, 2, "pad_dilution");
    FIELD(global_overwrite, 7, "global_overwrite");
    FIELD(span_min, 0, "span_min");
    int32_t b1[] = {5, 5}, b2[] = {10, 41}, b3[] = {-1, 4}, b4[] = {0, 20, 40};
    p = p0, p.chunking = AK_DHSA_GIVEN, p.boundaries = b1, p.n_boundaries = 2;
    EXPECT_PLAN(&p, INV, "boundaries[1]");
    p.boundaries = b2;
    EXPECT_PLAN(&p, INV, "boundaries[1]");
    p.boundaries = b3;
    EXPECT_PLAN(&p, INV, "boundaries[0]");
    p.boundaries = NULL;
    EXPECT_PLAN(&p, AK_ERR_NULL_POINTER, "boundaries");
    p.boundaries = b4, p.n_boundaries = 3; /* valid, with 0 and nk */
    out = NULL;
    CHECK_STATUS(ak_dhsa_plan(ctx, &x.d, &x.t, &p, &out, NULL), AK_OK);
    ak_sparse_destroy(out);
    /* the problem */
    x.d.causal = 0;
    EXPECT_PLAN(&p0, INV, "causal");
    x.d.causal = 1, x.d.window_left = 8;
    EXPECT_PLAN(&p0, INV, "window");
    x.d.window_left = -1, x.d.softcap = 5;
    EXPECT_PLAN(&p0, INV, "softcap");
    x.d.softcap = 0;
    ak_attn_tensors tt = x.t;
    tt.k = ak_tensor_4d(x.k, AK_F32, 1, 1, 39, 8);
    out = (ak_sparse *)&sentinel;
    CHECK_STATUS(ak_dhsa_plan(ctx, &x.d, &tt, &p0, &out, NULL), AK_ERR_SHAPE_MISMATCH);
    CHECK(out == NULL, "shape mismatch: *out not NULL");
    out = (ak_sparse *)&sentinel;
    CHECK_STATUS(ak_dhsa_plan(ctx, NULL, &x.t, &p0, &out, NULL), AK_ERR_NULL_POINTER);
    CHECK(out == NULL, "NULL desc: *out not NULL");
    CHECK_STATUS(ak_dhsa_plan(ctx, &x.d, &x.t, &p0, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_dhsa_plan(NULL, &x.d, &x.t, &p0, &out, NULL), AK_ERR_NULL_POINTER);
    out = NULL;
    CHECK_STATUS(ak_dhsa_plan(ctx, &x.d, &x.t, NULL, &out, NULL), AK_OK); /* NULL params = defaults */
    CHECK(out && strstr(ak_sparse_name(out), "dhsa(block=128,budget=2048") != NULL, "name '%s'", out ? ak_sparse_name(out) : "");
    ak_sparse_destroy(out);
    /* boundaries / scores */
    int32_t bb[64], nb = 0;
    CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p0, 1, 0, bb, 64, &nb), INV);
    CHECK(strstr(ak_ctx_last_error(ctx), "batch") != NULL, "batch message");
    CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p0, 0, 1, bb, 64, &nb), INV);
    CHECK(strstr(ak_ctx_last_error(ctx), "head") != NULL, "head message");
    CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p0, 0, 0, bb, 2, &nb), INV);
    CHECK(nb == 4 && strstr(ak_ctx_last_error(ctx), "cap") != NULL, "cap: %d", nb);
    CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p0, 0, 0, NULL, 64, &nb), AK_ERR_NULL_POINTER);
    p = p0, p.block = 0;
    CHECK_STATUS(ak_dhsa_boundaries(ctx, &x.d, &x.t, &p, 0, 0, bb, 64, &nb), INV);
    float sc[64];
    int32_t bad1[] = {0, 10, 39}, bad2[] = {0, 10, 10, 40}, bad3[] = {1, 40}, good[] = {0, 40};
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 0, bad1, 3, sc), INV);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 0, bad2, 4, sc), INV);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 0, bad3, 2, sc), INV);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 0, good, 1, sc), INV);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 0, good, 2, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 3, good, 2, sc), INV);
    CHECK_STATUS(ak_dhsa_scores(ctx, &x.d, &x.t, &p0, 0, 0, good, 2, sc), AK_OK);
    /* label ratios / select */
    float A[16] = {0}, rr[4];
    CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, 4, 3, 1, 0, rr), INV);
    CHECK(strstr(ak_ctx_last_error(ctx), "ld") != NULL, "ld message");
    CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, 4, 4, 0, 0, rr), INV);
    CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, 4, 4, 1, 2, rr), INV);
    CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, -1, 4, 1, 0, rr), INV);
    CHECK_STATUS(ak_dhsa_label_ratios(ctx, NULL, 4, 4, 1, 0, rr), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_dhsa_label_ratios(ctx, A, 4, 4, 1, 0, rr), AK_OK);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rr, 4, -1.0f, 0, 4, 0, bb, 64, &nb), INV);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rr, 4, 1.0f, -1, 4, 0, bb, 64, &nb), INV);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rr, 4, 1.0f, 0, -1, 0, bb, 64, &nb), INV);
    CHECK(strstr(ak_ctx_last_error(ctx), "max_chunks") != NULL, "max_chunks message");
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rr, 4, 1.0f, 0, 4, -1, bb, 64, &nb), INV);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rr, -4, 1.0f, 0, 4, 0, bb, 64, &nb), INV);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, NULL, 4, 1.0f, 0, 4, 0, bb, 64, &nb), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, rr, 4, 1.0f, 0, 4, 0, NULL, 64, &nb), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_dhsa_select_boundaries(ctx, NULL, 0, 1.0f, 0, 4, 0, bb, 64, &nb), AK_OK);
    CHECK(nb == 1 && bb[0] == 0, "n = 0: [0]");
#ifdef AK_TEST_NAMED /* full builds only: single-method builds (build-dhsa*) have no ak_dyn_plan_named */
    /* by name: every key of ak_dhsa_params (ak__dhsa_opt) gives the same plan as the struct */
    {
        const char *spec = "dhsa:block=8,budget=20,local=4,global_tokens=2,instruction_tokens=5,chunking=oracle,chunk=3,"
                           "theta=1.05,nms=2,beta=3,window=2,smooth_ends=1,per_kv_head=0,pad_dilution=1,global_overwrite=1,span_min=2";
        p = p0;
        p.block = 8, p.budget = 20, p.local = 4, p.global_tokens = 2, p.instruction_tokens = 5, p.chunking = AK_DHSA_ORACLE;
        p.chunk = 3, p.theta = 1.05f, p.nms = 2, p.beta = 3, p.window = 2, p.smooth_ends = 1, p.pad_dilution = 1;
        p.global_overwrite = 1, p.span_min = 2;
        ak_sparse *a = NULL, *z = NULL;
        CHECK_STATUS(ak_dyn_plan_named(ctx, spec, &x.d, &x.t, &a, NULL), AK_OK);
        CHECK_STATUS(ak_dhsa_plan(ctx, &x.d, &x.t, &p, &z, NULL), AK_OK);
        char *ja = plan_json(ctx, a), *jz = plan_json(ctx, z);
        CHECK(ja && jz && strcmp(ja, jz) == 0, "named spec and struct give different plans");
        ak_free(ctx, ja), ak_free(ctx, jz);
        ak_sparse_destroy(a), ak_sparse_destroy(z);
        const char *bad[] = {"dhsa:bogus=1", "dhsa:block=x", "dhsa:chunking=sometimes", "dhsa:theta=1.1.1", "dhsa:block=0"};
        for (int i = 0; i < 5; i++) {
            out = (ak_sparse *)&sentinel;
            CHECK_STATUS(ak_dyn_plan_named(ctx, bad[i], &x.d, &x.t, &out, NULL), INV);
            CHECK(out == NULL, "%s: *out not NULL", bad[i]);
        }
    }
#endif
    inp_free(&x);
    /* empty and tiny problems are valid */
    for (int nk = 0; nk <= 2; nk++) {
        inp y;
        inp_make(&y, 1, 1, 1, nk, nk, 4);
        ak_dhsa_params q;
        ak_dhsa_params_init(&q);
        q.chunking = nk % 3;
        out = NULL;
        CHECK_STATUS(ak_dhsa_plan(ctx, &y.d, &y.t, &q, &out, NULL), AK_OK);
        ak_sparse_destroy(out);
        inp_free(&y);
    }
#undef FIELD
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_DHSA_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_DHSA_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_dhsa: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    double t0 = tu_now();
    int any = 0;
#define GROUP(name, call)                                                                                         \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                                  \
        double tg_ = tu_now();                                                                                    \
        call;                                                                                                     \
        any = 1;                                                                                                  \
        printf("group %s: %.2f s\n", name, tu_now() - tg_);                                                       \
    }
    GROUP("dense", group_dense(ctx))
    GROUP("identity", group_identity(ctx))
    GROUP("select", group_select(ctx))
    GROUP("boundary", group_boundary(ctx))
    GROUP("recall", group_recall(ctx))
    GROUP("exec", group_exec(ctx))
    GROUP("threads", group_threads(ctx))
    GROUP("invalid", group_invalid(ctx))
#undef GROUP
    ak_ctx_destroy(ctx);
    if (!any) {
        fprintf(stderr, "test_dyn_dhsa: unknown group '%s' (dense, identity, select, boundary, recall, exec, threads, invalid)\n",
                group);
        return 2;
    }
    char name[80];
    snprintf(name, sizeof name, "test_dyn_dhsa %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
