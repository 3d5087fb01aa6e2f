/*
 * test_dyn_dma.c — Dynamic Mask Attention planner (src/dynamic/dma.c, spec dynamic-sparse.md §8, attnkit.h).
 *
 * The scores u = a * softplus(w_dt . V + dt_bias) are recomputed here in double from the tensors; the selection
 * rules are re-implemented plainly (per row: the visible keys sorted by qsort on (u desc, index asc), the first
 * `window` kept; ReLU: u > 0), on the library's float u (exact ties) after checking it against the double one.
 * Groups (test_dyn_dma <group>, no argument = all):
 *   dense    window >= nk: the causal mask, no cut, output = dense softmax with the bias (naive double here);
 *            a = 0: plain dense attention (vs ak_attention_ref) in both bias forms; a = 0 with a small window:
 *            the first keys (ties by index); info fields
 *   select   per-row top-w mask (ak_sparse_mask) = the brute force, active count = min(w, pos + 1); odd lengths
 *            (1 .. 1023), block sizes that do not divide them, GQA 1/3/4, B 1-2, nq = nk / < nk / = 1 / > nk,
 *            causal or not, continuous values, many exact ties, a = 0, both bias forms, bf16 values
 *   thresh   key_score is the rank encoding of (u desc, index asc); row_thresh = the window-th best key score of
 *            the row's prefix (-inf below window keys) and non-decreasing; listed keys per block <= window + bq - 1
 *   relu     ReLU mask = {u > 0} (incl. softplus underflow to 0; heads with a > 0, a < 0), empty rows give O = 0
 *            and LSE = -inf; same set in the exp form; window >= nk gives dense
 *   exec     executor (NaN-poisoned O and LSE, 2 threads) vs a naive double masked softmax with the bias, and
 *            ak_attention_ref_sparse vs the same naive; GQA query heads read their KV head's mask and bias
 *   skip     the plan's block lists vs every block listing all keys with the same cut: the same masks, the same
 *            output (spec §8.7.4: skipping keys outside the mask changes nothing)
 *   threads  the same plan (JSON text, incl. bias / scores / thresholds) for 1, 2 and 3 threads
 *   invalid  each invalid argument: its status, *out NULL
 *   planted  keys with the largest values are selected in every row that sees them (set recall 1), and the
 *            plan keeps >= 0.99 of the dense attention mass (with the bias) when Q.K favours them
 * AK_DMA_QUICK=1 (sanitizer builds) runs fewer and smaller cases; AK_DMA_VERBOSE=1 prints every case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

static int g_quick, g_verbose;

/* ---- a problem: tensors as floats (already rounded to the dtype), the layer's parameters --------- */

typedef struct dcase {
    int B, Hq, Hkv, nq, nk, d, dv, causal, bf16;
    float *q, *k, *v;          /* contiguous [B][H][L][d | dv], the values the library reads */
    uint16_t *qh, *kh, *vh;    /* bf16 storage (bf16 = 1) */
    float *w_dt, *dt_bias, *a; /* [Hkv][Hkv * dv], NULL or [Hkv], [Hkv] */
    ak_dma_params p;
} dcase;

enum { FILL_RANDOM = 0, FILL_TIES = 1, FILL_ZERO_A = 2 };

static size_t nq_el(const dcase *c) { return (size_t)c->B * c->Hq * c->nq * c->d; }
static size_t nk_el(const dcase *c) { return (size_t)c->B * c->Hkv * c->nk * c->d; }
static size_t nv_el(const dcase *c) { return (size_t)c->B * c->Hkv * c->nk * c->dv; }
static float *vrow(const dcase *c, int b, int h, int j) {
    return c->v + (((size_t)b * c->Hkv + h) * c->nk + j) * c->dv;
}

static void case_free(dcase *c) {
    free(c->q), free(c->k), free(c->v), free(c->qh), free(c->kh), free(c->vh);
    free(c->w_dt), free(c->dt_bias), free(c->a);
    memset(c, 0, sizeof *c);
}

/* Allocate and fill; the geometry fields must be set. */
static void case_fill(dcase *c, int fill, rng *r) {
    c->q = malloc(sizeof(float) * (nq_el(c) + 1));
    c->k = malloc(sizeof(float) * (nk_el(c) + 1));
    c->v = malloc(sizeof(float) * (nv_el(c) + 1));
    c->w_dt = malloc(sizeof(float) * ((size_t)c->Hkv * c->Hkv * c->dv));
    c->a = malloc(sizeof(float) * (size_t)c->Hkv);
    c->dt_bias = rng_int(r, 2) ? malloc(sizeof(float) * (size_t)c->Hkv) : NULL;
    for (size_t x = 0; x < nq_el(c); x++) c->q[x] = (float)rng_range(r, -1, 1);
    for (size_t x = 0; x < nk_el(c); x++) c->k[x] = (float)rng_range(r, -1, 1);
    static const float vq[3] = {-0.5f, 0.0f, 0.5f}, wq[4] = {-0.25f, 0.0f, 0.25f, 0.5f};
    for (size_t x = 0; x < nv_el(c); x++) c->v[x] = fill == FILL_TIES ? vq[rng_int(r, 3)] : (float)rng_range(r, -1, 1);
    for (int x = 0; x < c->Hkv * c->Hkv * c->dv; x++)
        c->w_dt[x] =
            fill == FILL_TIES ? (rng_chance(r, 0.8) ? 0.0f : wq[rng_int(r, 4)]) : (float)rng_range(r, -0.4, 0.4);
    for (int h = 0; h < c->Hkv; h++) {
        c->a[h] = fill == FILL_ZERO_A ? 0.0f
                  : fill == FILL_TIES ? (float)(0.5 * (1 + rng_int(r, 3)))
                                      : (float)rng_range(r, -2, 3);
        if (c->dt_bias) c->dt_bias[h] = fill == FILL_TIES ? 0.25f * rng_int(r, 3) : (float)rng_range(r, -1, 1);
    }
    if (c->bf16) { /* store bf16, keep the rounded values as floats */
        c->qh = malloc(sizeof(uint16_t) * (nq_el(c) + 1));
        c->kh = malloc(sizeof(uint16_t) * (nk_el(c) + 1));
        c->vh = malloc(sizeof(uint16_t) * (nv_el(c) + 1));
        for (size_t x = 0; x < nq_el(c); x++) c->q[x] = tu_bf16_to_f32(c->qh[x] = tu_f32_to_bf16(c->q[x]));
        for (size_t x = 0; x < nk_el(c); x++) c->k[x] = tu_bf16_to_f32(c->kh[x] = tu_f32_to_bf16(c->k[x]));
        for (size_t x = 0; x < nv_el(c); x++) c->v[x] = tu_bf16_to_f32(c->vh[x] = tu_f32_to_bf16(c->v[x]));
    }
    ak_dma_params_init(&c->p);
    c->p.num_heads_kv = c->Hkv;
    c->p.head_dim_v = c->dv;
    c->p.w_dt = c->w_dt;
    c->p.a = c->a;
    c->p.dt_bias = c->dt_bias;
}

static void case_desc(const dcase *c, ak_attn_desc *de) {
    ak_attn_desc_init(de);
    de->batch = c->B, de->num_heads_q = c->Hq, de->num_heads_kv = c->Hkv;
    de->seqlen_q = c->nq, de->seqlen_k = c->nk, de->head_dim = c->d, de->head_dim_v = c->dv;
    de->dtype_q = de->dtype_kv = c->bf16 ? AK_BF16 : AK_F32;
    de->dtype_o = AK_F32;
    de->causal = c->causal;
    de->return_lse = 1;
}

static ak_attn_tensors case_tensors(const dcase *c, void *o, void *lse, int f64) {
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    ak_dtype dt = c->bf16 ? AK_BF16 : AK_F32;
    t.q = ak_tensor_4d(c->bf16 ? (void *)c->qh : (void *)c->q, dt, c->B, c->Hq, c->nq, c->d);
    t.k = ak_tensor_4d(c->bf16 ? (void *)c->kh : (void *)c->k, dt, c->B, c->Hkv, c->nk, c->d);
    t.v = ak_tensor_4d(c->bf16 ? (void *)c->vh : (void *)c->v, dt, c->B, c->Hkv, c->nk, c->dv);
    ak_dtype od = f64 ? AK_F64 : AK_F32;
    t.o = ak_tensor_4d(o, od, c->B, c->Hq, c->nq, c->dv);
    t.lse = ak_tensor_3d(lse, od, c->B, c->Hq, c->nq);
    return t;
}

static ak_sparse *case_plan(ak_ctx *ctx, const dcase *c, ak_dyn_info *info, const char *tag) {
    if (g_verbose) printf("%s\n", tag);
    ak_attn_desc de;
    case_desc(c, &de);
    ak_attn_tensors t = case_tensors(c, NULL, NULL, 0);
    ak_sparse *sp = NULL;
    ak_status st = ak_dma_plan(ctx, &de, &t, &c->p, &sp, info);
    CHECK(st == AK_OK && sp, "%s: ak_dma_plan: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    return st == AK_OK ? sp : NULL;
}

/* The library's u and bias of (b, h). */
static int lib_scores(ak_ctx *ctx, const dcase *c, int b, int h, float *u, float *bias) {
    ak_attn_desc de;
    case_desc(c, &de);
    ak_attn_tensors t = case_tensors(c, NULL, NULL, 0);
    ak_status st = ak_dma_scores(ctx, &de, &t, &c->p, b, h, u, bias);
    CHECK(st == AK_OK, "ak_dma_scores: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    return st == AK_OK;
}

/* ---- the rules, plainly ------------------------------------------------------------------------- */

/* u of key j of (b, h) in double, from the definition. */
static double u_double(const dcase *c, int b, int h, int j) {
    double z = 0.0, A = 1.0;
    if (c->p.untrained) {
        for (int x = 0; x < c->dv; x++) z += vrow(c, b, h, j)[x];
        z /= sqrt((double)c->dv);
    } else {
        A = c->a[h];
        z = c->dt_bias ? c->dt_bias[h] : 0.0;
        for (int g = 0; g < c->Hkv; g++)
            for (int x = 0; x < c->dv; x++)
                z += (double)c->w_dt[((size_t)h * c->Hkv + g) * c->dv + x] * vrow(c, b, g, j)[x];
    }
    double sp = (z > 0 ? z : 0.0) + log(1.0 + exp(-fabs(z))); /* softplus */
    return A * sp;
}

/* u (library) vs the double definition, and the bias vs the bias form. */
static void check_scores(const dcase *c, int b, int h, const float *u, const float *bias, const char *tag) {
    for (int j = 0; j < c->nk; j++) {
        double ud = u_double(c, b, h, j);
        CHECK(fabs(u[j] - ud) <= 1e-6 * fmax(1.0, fabs(ud)), "%s: u[%d][%d][%d] = %.9g, double %.12g", tag, b, h, j,
              (double)u[j], ud);
        double want = c->p.bias_form == AK_DMA_BIAS_EXP ? exp((double)u[j]) : (double)u[j];
        CHECK(fabs(bias[j] - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s: bias[%d] = %.9g, want %.9g", tag, j,
              (double)bias[j], want);
    }
}

typedef struct ukey {
    float u;
    int j;
} ukey;

static int ukey_cmp(const void *x, const void *y) {
    const ukey *a = (const ukey *)x, *b = (const ukey *)y;
    if (a->u != b->u) return a->u > b->u ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

static int float_desc(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

static int pos_of(const dcase *c, int i) { return i + c->nk - c->nq; }

/* The active keys of row i by the rules: row[j] = 1 / 0; returns the count. tmp: [nk]. */
static int brute_row(const dcase *c, const float *u, int i, uint8_t *row, ukey *tmp) {
    int hi = c->causal ? pos_of(c, i) : c->nk - 1, n = 0;
    memset(row, 0, (size_t)c->nk);
    if (c->nk <= c->p.window) { /* dense */
        for (int j = 0; j <= hi; j++) row[j] = 1, n++;
        return n;
    }
    if (c->p.mask_type == AK_DMA_RELU) {
        for (int j = 0; j <= hi; j++)
            if (u[j] > 0.0f) row[j] = 1, n++;
        return n;
    }
    int m = 0;
    for (int j = 0; j <= hi; j++) tmp[m].u = u[j], tmp[m].j = j, m++;
    qsort(tmp, (size_t)m, sizeof *tmp, ukey_cmp);
    for (int x = 0; x < m && x < c->p.window; x++) row[tmp[x].j] = 1, n++;
    return n;
}

/* All masks of the plan vs the brute force (and the GQA sharing: n_heads = Hkv). Returns mismatching rows. */
static int check_masks(ak_ctx *ctx, const dcase *c, const ak_sparse *sp, const char *tag) {
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    CHECK(sd.n_batch == c->B && sd.n_heads == c->Hkv && sd.nq == c->nq && sd.nk == c->nk && sd.causal == c->causal &&
              sd.block_q == c->p.block_q,
          "%s: plan geometry %d x %d, %d x %d, causal %d, bq %d", tag, sd.n_batch, sd.n_heads, sd.nq, sd.nk, sd.causal,
          sd.block_q);
    uint8_t *mask = malloc((size_t)c->nq * c->nk + 1), *row = malloc((size_t)c->nk + 1);
    float *u = malloc(sizeof(float) * (c->nk + 1)), *bias = malloc(sizeof(float) * (c->nk + 1));
    ukey *tmp = malloc(sizeof(ukey) * (c->nk + 1));
    int bad_rows = 0;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hkv; h++) {
            if (!lib_scores(ctx, c, b, h, u, bias)) continue;
            check_scores(c, b, h, u, bias, tag);
            if (sd.key_bias) /* the plan's bias is the score bias */
                CHECK(!memcmp(sd.key_bias + ((size_t)b * c->Hkv + h) * c->nk, bias, sizeof(float) * c->nk),
                      "%s: key_bias differs", tag);
            CHECK(ak_sparse_mask(sp, b, h, mask) == AK_OK, "%s: mask", tag);
            for (int i = 0; i < c->nq; i++) {
                int n = brute_row(c, u, i, row, tmp), pos = pos_of(c, i),
                    vis = c->causal ? (pos < 0 ? 0 : pos + 1) : c->nk;
                int want_n =
                    c->nk <= c->p.window || c->p.mask_type == AK_DMA_RELU ? n : (vis < c->p.window ? vis : c->p.window);
                int diff = memcmp(mask + (size_t)i * c->nk, row, (size_t)c->nk) != 0;
                if ((diff || n != want_n) && bad_rows++ < 3)
                    CHECK(0,
                          "%s: b %d kvh %d row %d (pos %d): plan mask differs from the brute force (count %d, want %d)",
                          tag, b, h, i, pos, n, want_n);
            }
        }
    CHECK(bad_rows == 0, "%s: %d rows differ", tag, bad_rows);
    free(mask), free(row), free(u), free(bias), free(tmp);
    return bad_rows;
}

/* ---- naive attention in double with the plan's rules -------------------------------------------- */

/* o [B][Hq][nq][dv], lse [B][Hq][nq]: softmax over the brute-force active keys of the query head's KV head, logits
 * scale * q.k + bias: the bias from the double scores here (own_bias = 1) or the library's float bias (0). */
static void naive_dma(ak_ctx *ctx, const dcase *c, int own_bias, double *o, double *lse) {
    const int G = c->Hq / c->Hkv;
    const double scale = (double)(float)(1.0 / sqrt((double)c->d));
    float *u = malloc(sizeof(float) * (c->nk + 1)), *bias = malloc(sizeof(float) * (c->nk + 1));
    uint8_t *row = malloc((size_t)c->nk + 1);
    ukey *tmp = malloc(sizeof(ukey) * (c->nk + 1));
    double *s = malloc(sizeof(double) * (c->nk + 1)), *bd = malloc(sizeof(double) * (c->nk + 1));
    for (int b = 0; b < c->B; b++)
        for (int hq = 0; hq < c->Hq; hq++) {
            int hk = hq / G;
            lib_scores(ctx, c, b, hk, u, bias);
            for (int j = 0; j < c->nk; j++) {
                double ud = u_double(c, b, hk, j);
                bd[j] = !own_bias ? (double)bias[j] : c->p.bias_form == AK_DMA_BIAS_EXP ? exp(ud) : ud;
            }
            for (int i = 0; i < c->nq; i++) {
                brute_row(c, u, i, row, tmp);
                const float *qi = c->q + (((size_t)b * c->Hq + hq) * c->nq + i) * c->d;
                double mx = -INFINITY, den = 0.0;
                for (int j = 0; j < c->nk; j++) {
                    s[j] = -INFINITY;
                    if (!row[j]) continue;
                    const float *kj = c->k + (((size_t)b * c->Hkv + hk) * c->nk + j) * c->d;
                    double dot = 0.0;
                    for (int x = 0; x < c->d; x++) dot += (double)qi[x] * kj[x];
                    s[j] = scale * dot + bd[j];
                    mx = s[j] > mx ? s[j] : mx;
                }
                double *oi = o + (((size_t)b * c->Hq + hq) * c->nq + i) * c->dv;
                for (int x = 0; x < c->dv; x++) oi[x] = 0.0;
                size_t li = ((size_t)b * c->Hq + hq) * c->nq + i;
                if (mx == -INFINITY) {
                    lse[li] = -INFINITY;
                    continue;
                }
                for (int j = 0; j < c->nk; j++)
                    if (row[j]) {
                        double e = exp(s[j] - mx);
                        den += e;
                        for (int x = 0; x < c->dv; x++) oi[x] += e * vrow(c, b, hk, j)[x];
                    }
                for (int x = 0; x < c->dv; x++) oi[x] /= den;
                lse[li] = mx + log(den);
            }
        }
    free(u), free(bias), free(row), free(tmp), free(s), free(bd);
}

/* Run the plan (executor, f32 outputs poisoned with NaN) into o/lse. */
static ak_status run_plan(ak_ctx *ctx, const dcase *c, const ak_sparse *sp, float *o, float *lse) {
    ak_attn_desc de;
    case_desc(c, &de);
    for (size_t x = 0; x < (size_t)c->B * c->Hq * c->nq * c->dv; x++) o[x] = NAN;
    for (size_t x = 0; x < (size_t)c->B * c->Hq * c->nq; x++) lse[x] = NAN;
    ak_attn_tensors t = case_tensors(c, o, lse, 0);
    ak_plan *plan = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &de, sp, &plan);
    if (st == AK_OK) st = ak_attention_run(plan, &t, NULL, 0);
    ak_plan_destroy(plan);
    return st;
}

/* max |x - ref| over n (INFINITY on NaN, or on a -inf mismatch); f: float x or double x. */
static double max_err_f(const float *x, const double *ref, size_t n) {
    double e = 0.0;
    for (size_t k = 0; k < n; k++) {
        if (x[k] != x[k]) return INFINITY;
        if (isinf(ref[k]) || isinf(x[k])) {
            if ((double)x[k] != ref[k]) return INFINITY;
            continue;
        }
        e = fmax(e, fabs(x[k] - ref[k]));
    }
    return e;
}

static double max_err_d(const double *x, const double *ref, size_t n) {
    double e = 0.0;
    for (size_t k = 0; k < n; k++) {
        if (x[k] != x[k]) return INFINITY;
        if (isinf(ref[k]) || isinf(x[k])) {
            if (x[k] != ref[k]) return INFINITY;
            continue;
        }
        e = fmax(e, fabs(x[k] - ref[k]));
    }
    return e;
}

/* Executor and ak_attention_ref_sparse vs the naive double. */
static void check_exec(ak_ctx *ctx, const dcase *c, const ak_sparse *sp, const char *tag) {
    size_t no = (size_t)c->B * c->Hq * c->nq * c->dv, nl = (size_t)c->B * c->Hq * c->nq;
    double *o64 = malloc(sizeof(double) * (no + 1)), *l64 = malloc(sizeof(double) * (nl + 1));
    double * or = malloc(sizeof(double) * (no + 1)), *lr = malloc(sizeof(double) * (nl + 1));
    float *oe = malloc(sizeof(float) * (no + 1)), *le = malloc(sizeof(float) * (nl + 1));
    naive_dma(ctx, c, 1, o64, l64);
    ak_status st = run_plan(ctx, c, sp, oe, le);
    CHECK(st == AK_OK, "%s: run: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    double eo = max_err_f(oe, o64, no), el = max_err_f(le, l64, nl);
    double lmax = 1.0;
    for (size_t x = 0; x < nl; x++)
        if (isfinite(l64[x])) lmax = fmax(lmax, fabs(l64[x]));
    CHECK(eo <= 2e-5 && el <= 2e-6 * lmax, "%s: executor vs naive: O err %.3g, LSE err %.3g", tag, eo, el);
    /* the double reference of the plan */
    ak_attn_desc de;
    case_desc(c, &de);
    de.dtype_o = AK_F64;
    for (size_t x = 0; x < no; x++) or [x] = NAN;
    for (size_t x = 0; x < nl; x++) lr[x] = NAN;
    ak_attn_tensors t = case_tensors(c, or, lr, 1);
    st = ak_attention_ref_sparse(ctx, &de, sp, &t);
    naive_dma(ctx, c, 0, o64, l64); /* with the library's float bias: the double reference must agree closely */
    CHECK(st == AK_OK, "%s: ref_sparse: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    eo = max_err_d(or, o64, no), el = max_err_d(lr, l64, nl);
    CHECK(eo <= 1e-9 && el <= 1e-9 * lmax, "%s: ak_attention_ref_sparse vs naive: O err %.3g, LSE err %.3g", tag, eo,
          el);
    free(o64), free(l64), free(or), free(lr), free(oe), free(le);
}

/* ---- random cases ----------------------------------------------------------------------------- */

static void random_case(dcase *c, rng *r, int max_nk) {
    static const int lens[] = {1, 2, 17, 64, 113, 300, 1023};
    static const int bqs[] = {1, 7, 13, 64, 100};
    static const int gs[] = {1, 3, 4};
    memset(c, 0, sizeof *c);
    do c->nk = rng_pick(r, lens, 7);
    while (c->nk > max_nk);
    int form = rng_int(r, 10);
    c->nq = form < 6 ? c->nk : form < 8 ? 1 + rng_int(r, c->nk) : form < 9 ? 1 : c->nk + 1 + rng_int(r, 20);
    c->Hkv = 1 + rng_int(r, 2);
    c->Hq = c->Hkv * rng_pick(r, gs, 3);
    c->B = 1 + rng_int(r, 2);
    c->d = 8 + 8 * rng_int(r, 3);
    c->dv = rng_chance(r, 0.7) ? c->d : 5 + rng_int(r, 20);
    c->causal = rng_chance(r, 0.85);
    c->bf16 = rng_chance(r, 0.1);
    int fill = rng_int(r, 10);
    case_fill(c, fill < 5 ? FILL_RANDOM : fill < 9 ? FILL_TIES : FILL_ZERO_A, r);
    int wsel = rng_int(r, 8);
    c->p.window = wsel == 0   ? 1
                  : wsel == 1 ? 2
                  : wsel == 2 ? 16
                  : wsel == 3 ? (c->nk > 1 ? c->nk - 1 : 1)
                  : wsel == 4 ? c->nk + rng_int(r, 3)
                              : 1 + rng_int(r, c->nk);
    c->p.block_q = rng_pick(r, bqs, 5);
    c->p.bias_form = rng_chance(r, 0.3) ? AK_DMA_BIAS_EXP : AK_DMA_BIAS_LOG;
    if (rng_chance(r, 0.1)) { /* the parameter-free form */
        c->p.untrained = 1;
        c->p.w_dt = c->p.a = c->p.dt_bias = NULL;
    }
}

static void case_tag(const dcase *c, int ci, char *tag, size_t n) {
    snprintf(tag, n, "case %d (B%d Hq%d Hkv%d nq%d nk%d d%d dv%d %s w%d bq%d %s%s%s%s)", ci, c->B, c->Hq, c->Hkv, c->nq,
             c->nk, c->d, c->dv, c->causal ? "causal" : "full", c->p.window, c->p.block_q,
             c->p.mask_type == AK_DMA_RELU ? "relu" : "topk", c->p.bias_form == AK_DMA_BIAS_EXP ? " exp" : "",
             c->bf16 ? " bf16" : "", c->p.untrained ? " untrained" : "");
}

/* ---- groups ----------------------------------------------------------------------------------- */

static void group_dense(ak_ctx *ctx) {
    for (int ci = 0; ci < (g_quick ? 6 : 16); ci++) {
        rng r = rng_seed(100 + ci);
        dcase c;
        random_case(&c, &r, 300);
        c.p.window = ci % 3 == 0 ? 2048 : c.nk + ci % 4; /* >= nk */
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        ak_dyn_info info;
        ak_sparse *sp = case_plan(ctx, &c, &info, tag);
        if (sp) {
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            CHECK(sd.key_score == NULL && sd.row_thresh == NULL, "%s: a cut in a dense plan", tag);
            CHECK(info.n_dense_heads == c.Hkv && info.size == sizeof info, "%s: info n_dense_heads %d", tag,
                  info.n_dense_heads);
            CHECK(c.nq > c.nk && c.causal ? 1 : fabs(info.density - 1.0) < 1e-12, "%s: density %g", tag, info.density);
            check_masks(ctx, &c, sp, tag);
            check_exec(ctx, &c, sp, tag);
        }
        ak_sparse_destroy(sp);
        case_free(&c);
    }
    /* a = 0: the bias is constant (0, or 1 in the exp form): plain dense attention */
    for (int form = 0; form < 2; form++) {
        rng r = rng_seed(150 + form);
        dcase c = {.B = 2, .Hq = 6, .Hkv = 2, .nq = 113, .nk = 113, .d = 16, .dv = 16, .causal = 1};
        case_fill(&c, FILL_ZERO_A, &r);
        c.p.bias_form = form;
        c.p.window = 113;
        char tag[64];
        snprintf(tag, sizeof tag, "a = 0, %s form", form ? "exp" : "log");
        ak_sparse *sp = case_plan(ctx, &c, NULL, tag);
        size_t no = (size_t)c.B * c.Hq * c.nq * c.dv, nl = (size_t)c.B * c.Hq * c.nq;
        float *oe = malloc(sizeof(float) * no), *le = malloc(sizeof(float) * nl);
        double *o64 = malloc(sizeof(double) * no), *l64 = malloc(sizeof(double) * nl);
        if (sp && run_plan(ctx, &c, sp, oe, le) == AK_OK) {
            ak_attn_desc de;
            case_desc(&c, &de);
            de.dtype_o = AK_F64;
            ak_attn_tensors t = case_tensors(&c, o64, l64, 1);
            CHECK(ak_attention_ref(ctx, &de, &t) == AK_OK, "%s: ak_attention_ref", tag);
            if (form) /* the constant bias 1 shifts the LSE by 1 */
                for (size_t x = 0; x < nl; x++) l64[x] += 1.0;
            CHECK(max_err_f(oe, o64, no) <= 2e-6 && max_err_f(le, l64, nl) <= 2e-5,
                  "%s: differs from dense attention (O %.3g, LSE %.3g)", tag, max_err_f(oe, o64, no),
                  max_err_f(le, l64, nl));
        } else {
            CHECK(0, "%s: no plan or run", tag);
        }
        free(oe), free(le), free(o64), free(l64);
        ak_sparse_destroy(sp);
        /* with a small window all keys tie: the first `window` keys (ties go to the smaller index) */
        c.p.window = 10;
        sp = case_plan(ctx, &c, NULL, tag);
        uint8_t *mask = malloc((size_t)c.nq * c.nk);
        int bad_rows = 0;
        if (sp && ak_sparse_mask(sp, 1, 1, mask) == AK_OK)
            for (int i = 0; i < c.nq; i++)
                for (int j = 0; j < c.nk; j++) bad_rows += mask[(size_t)i * c.nk + j] != (j <= i && j < 10);
        CHECK(sp && bad_rows == 0, "%s, window 10: %d elements are not the first keys", tag, bad_rows);
        free(mask);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
}

static void group_select(ak_ctx *ctx) {
    int n = g_quick ? 25 : 90;
    for (int ci = 0; ci < n; ci++) {
        rng r = rng_seed(1000 + ci);
        dcase c;
        random_case(&c, &r, ci % 8 == 0 && !g_quick ? 1023 : 300);
        if (ci % 7 == 3) c.p.mask_type = AK_DMA_RELU;
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        ak_sparse *sp = case_plan(ctx, &c, NULL, tag);
        if (sp) check_masks(ctx, &c, sp, tag);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
}

/* Listed keys of list r (spans + cols). */
static int64_t listed_count(const ak_sparse_desc *sd, int64_t r) {
    int64_t n = sd->col_off ? sd->col_off[r + 1] - sd->col_off[r] : 0;
    for (int64_t e = sd->span_off ? sd->span_off[r] : 0; sd->span_off && e < sd->span_off[r + 1]; e++)
        n += sd->span_hi[e] - sd->span_lo[e];
    return n;
}

static void group_thresh(ak_ctx *ctx) {
    int n = g_quick ? 12 : 40, checked = 0;
    for (int ci = 0; ci < n; ci++) {
        rng r = rng_seed(2000 + ci);
        dcase c;
        random_case(&c, &r, ci % 8 == 0 && !g_quick ? 1023 : 300);
        c.causal = 1;
        if (c.nk < 3) { /* no window below nk worth a cut */
            case_free(&c);
            continue;
        }
        c.p.window = 1 + rng_int(&r, c.nk - 1); /* < nk: the cut */
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        ak_sparse *sp = case_plan(ctx, &c, NULL, tag);
        if (!sp) {
            case_free(&c);
            continue;
        }
        ak_sparse_desc sd;
        ak_sparse_get_desc(sp, &sd);
        CHECK(sd.key_score && sd.row_thresh, "%s: no cut", tag);
        float *u = malloc(sizeof(float) * c.nk), *bias = malloc(sizeof(float) * c.nk),
              *ks = malloc(sizeof(float) * c.nk);
        ukey *o = malloc(sizeof(ukey) * c.nk);
        for (int b = 0; b < c.B && sd.key_score; b++)
            for (int h = 0; h < c.Hkv; h++) {
                const float *score = sd.key_score + ((size_t)b * c.Hkv + h) * c.nk,
                            *th = sd.row_thresh + ((size_t)b * c.Hkv + h) * c.nq;
                lib_scores(ctx, &c, b, h, u, bias);
                /* the rank encoding: the key at rank x of (u desc, index asc) has score nk - x */
                for (int j = 0; j < c.nk; j++) o[j].u = u[j], o[j].j = j;
                qsort(o, (size_t)c.nk, sizeof *o, ukey_cmp);
                int bad = 0;
                for (int x = 0; x < c.nk; x++) bad += score[o[x].j] != (float)(c.nk - x);
                CHECK(bad == 0, "%s: b %d h %d: %d key scores are not the rank encoding", tag, b, h, bad);
                /* thresholds: the window-th largest score up to pos(i), by sorting the prefix */
                float prev = -INFINITY;
                for (int i = 0; i < c.nq; i++) {
                    int pos = pos_of(&c, i), m = 0;
                    if (pos < 0) continue;
                    for (int j = 0; j <= pos; j++) ks[m++] = score[j];
                    float want = -INFINITY;
                    if (m > c.p.window) { /* more keys than the window: the window-th largest */
                        qsort(ks, (size_t)m, sizeof *ks, float_desc);
                        want = ks[c.p.window - 1];
                    }
                    if (th[i] != want && bad++ < 3)
                        CHECK(0, "%s: b %d h %d row %d: row_thresh %g, brute force %g", tag, b, h, i, (double)th[i],
                              (double)want);
                    CHECK(th[i] >= prev, "%s: row_thresh decreases at row %d", tag, i);
                    prev = th[i];
                }
                /* the lists: at most window + block_q - 1 keys */
                for (int qb = 0; qb < sd.n_qblocks; qb++) {
                    int64_t rr = ((int64_t)b * c.Hkv + h) * sd.n_qblocks + qb, cnt = listed_count(&sd, rr);
                    int64_t cap = (int64_t)c.p.window + c.p.block_q - 1;
                    CHECK(cnt <= cap && cnt <= c.nk, "%s: block %d lists %lld keys > %lld", tag, qb, (long long)cnt,
                          (long long)cap);
                }
                checked++;
            }
        check_masks(ctx, &c, sp, tag);
        free(u), free(bias), free(ks), free(o);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
    CHECK(checked > 0, "no threshold checked");
}

static void group_relu(ak_ctx *ctx) {
    for (int ci = 0; ci < (g_quick ? 4 : 10); ci++) {
        rng r = rng_seed(3000 + ci);
        dcase c = {.B = 1 + ci % 2,
                   .Hq = 6,
                   .Hkv = 3,
                   .nq = ci % 3 ? 113 : 40,
                   .nk = 113,
                   .d = 16,
                   .dv = 8,
                   .causal = ci % 4 != 3};
        case_fill(&c, FILL_RANDOM, &r);
        c.a[0] = 1.5f, c.a[1] = -0.7f, c.a[2] = 0.0f; /* keep all, keep none, keep none */
        for (int x = 0; x < c.Hkv * c.Hkv * c.dv; x++) c.w_dt[x] *= 0.1f;
        for (int h = 0; h < c.Hkv; h++) c.w_dt[((size_t)h * c.Hkv + h) * c.dv] = 1.0f;
        for (int b = 0; b < c.B; b++) /* softplus(-200 + ...) underflows: u = 0, dropped */
            for (int j = 0; j < c.nk; j++)
                if (rng_chance(&r, 0.3)) vrow(&c, b, 0, j)[0] = -200.0f;
        c.p.mask_type = AK_DMA_RELU;
        c.p.bias_form = ci % 2 ? AK_DMA_BIAS_EXP : AK_DMA_BIAS_LOG;
        c.p.window = ci == 0 ? 113 : 16; /* window >= nk: dense */
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        ak_sparse *sp = case_plan(ctx, &c, NULL, tag);
        if (sp) {
            check_masks(ctx, &c, sp, tag);
            /* the rule by the double scores: kept iff (float) u > 0 */
            uint8_t *mask = malloc((size_t)c.nq * c.nk);
            int bad = 0, kept = 0;
            for (int b = 0; b < c.B; b++)
                for (int h = 0; h < c.Hkv; h++) {
                    ak_sparse_mask(sp, b, h, mask);
                    for (int i = 0; i < c.nq; i++)
                        for (int j = 0; j < c.nk; j++) {
                            int vis = !c.causal || j <= pos_of(&c, i);
                            int want = vis && (c.p.window >= c.nk || (float)u_double(&c, b, h, j) > 0.0f);
                            bad += mask[(size_t)i * c.nk + j] != want;
                            kept += want;
                        }
                }
            CHECK(bad == 0 && kept > 0, "%s: %d elements differ from u > 0 (%d kept)", tag, bad, kept);
            free(mask);
            check_exec(ctx, &c, sp, tag); /* heads 1 and 2: every row empty -> O = 0, LSE = -inf */
        }
        ak_sparse_destroy(sp);
        case_free(&c);
    }
}

static void group_exec(ak_ctx *ctx) {
    ak_ctx_set_num_threads(ctx, 2);
    for (int ci = 0; ci < (g_quick ? 8 : 30); ci++) {
        rng r = rng_seed(4000 + ci);
        dcase c;
        random_case(&c, &r, ci == 0 ? 1023 : 300);
        if (ci % 5 == 4) c.p.mask_type = AK_DMA_RELU;
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        ak_sparse *sp = case_plan(ctx, &c, NULL, tag);
        if (sp) check_exec(ctx, &c, sp, tag);
        ak_sparse_destroy(sp);
        case_free(&c);
    }
}

/* Every block lists all keys [0, nk), with the plan's own bias and cut. */
static ak_sparse *full_lists(ak_ctx *ctx, const ak_sparse *sp) {
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    ak_sparse_builder *bld = NULL;
    if (ak_sparse_builder_create(ctx, &sd, &bld) != AK_OK) return NULL;
    for (int b = 0; b < sd.n_batch; b++)
        for (int h = 0; h < sd.n_heads; h++) {
            size_t bh = (size_t)b * sd.n_heads + h;
            for (int qb = 0; qb < sd.n_qblocks && sd.nk > 0; qb++) ak_sparse_builder_add_span(bld, b, h, qb, 0, sd.nk);
            if (sd.key_bias) ak_sparse_builder_set_key_bias(bld, b, h, sd.key_bias + bh * sd.nk);
            if (sd.key_score)
                ak_sparse_builder_set_row_thresh(bld, b, h, sd.key_score + bh * sd.nk, sd.row_thresh + bh * sd.nq);
        }
    ak_sparse *out = NULL;
    ak_sparse_builder_finish(bld, &out);
    ak_sparse_builder_destroy(bld);
    return out;
}

static void group_skip(ak_ctx *ctx) {
    int done = 0;
    for (int ci = 0; ci < (g_quick ? 6 : 20); ci++) {
        rng r = rng_seed(5000 + ci);
        dcase c;
        random_case(&c, &r, 1023);
        c.causal = 1;
        c.p.mask_type = AK_DMA_TOPK;
        if (c.nk < 17) {
            case_free(&c);
            continue;
        }
        c.p.window = 1 + rng_int(&r, c.nk / 2);
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        ak_sparse *sp = case_plan(ctx, &c, NULL, tag), *full = sp ? full_lists(ctx, sp) : NULL;
        CHECK(!sp || full, "%s: the full-list plan", tag);
        if (sp && full) {
            uint8_t *m1 = malloc((size_t)c.nq * c.nk), *m2 = malloc((size_t)c.nq * c.nk);
            for (int b = 0; b < c.B; b++)
                for (int h = 0; h < c.Hkv; h++) {
                    ak_sparse_mask(sp, b, h, m1);
                    ak_sparse_mask(full, b, h, m2);
                    CHECK(!memcmp(m1, m2, (size_t)c.nq * c.nk), "%s: b %d h %d: masks differ from the full lists", tag,
                          b, h);
                }
            size_t no = (size_t)c.B * c.Hq * c.nq * c.dv, nl = (size_t)c.B * c.Hq * c.nq;
            float *o1 = malloc(sizeof(float) * no), *l1 = malloc(sizeof(float) * nl), *o2 = malloc(sizeof(float) * no),
                  *l2 = malloc(sizeof(float) * nl);
            CHECK(run_plan(ctx, &c, sp, o1, l1) == AK_OK && run_plan(ctx, &c, full, o2, l2) == AK_OK, "%s: runs", tag);
            double e = 0.0;
            for (size_t x = 0; x < no; x++)
                e = o1[x] == o1[x] && o2[x] == o2[x] ? fmax(e, fabs(o1[x] - o2[x])) : INFINITY;
            for (size_t x = 0; x < nl; x++)
                e = (isinf(l1[x]) || isinf(l2[x])) ? (l1[x] == l2[x] ? e : INFINITY)
                                                   : fmax(e, fabs(l1[x] - l2[x]) / fmax(1.0, fabs(l2[x])));
            CHECK(e <= 1e-5, "%s: skipping changes the output by %.3g", tag, e);
            free(m1), free(m2), free(o1), free(l1), free(o2), free(l2);
            done++;
        }
        ak_sparse_destroy(sp);
        ak_sparse_destroy(full);
        case_free(&c);
    }
    CHECK(done > 0, "no skip case ran");
}

static void group_threads(ak_ctx *ctx) {
    for (int ci = 0; ci < (g_quick ? 3 : 6); ci++) {
        rng r = rng_seed(6000 + ci);
        /* large enough for the parallel paths (scores: nk * Hkv^2 * dv >= 2^20 multiply-adds; selection) */
        dcase c = {.B = 2,
                   .Hq = 8,
                   .Hkv = 4,
                   .nq = ci % 4 == 1 ? 300 : 4096,
                   .nk = 4096,
                   .d = 16,
                   .dv = 64,
                   .causal = ci % 4 != 2};
        if (g_quick) c.nq = c.nq > 1200 ? 1200 : c.nq, c.nk = 1200;
        case_fill(&c, ci % 3 == 1 ? FILL_TIES : FILL_RANDOM, &r);
        c.p.window = 1 + rng_int(&r, 400);
        c.p.block_q = ci % 2 ? 64 : 37;
        c.p.mask_type = ci % 4 == 3 ? AK_DMA_RELU : AK_DMA_TOPK;
        char tag[256];
        case_tag(&c, ci, tag, sizeof tag);
        char *js[3] = {NULL, NULL, NULL};
        size_t len[3] = {0, 0, 0};
        for (int th = 1; th <= 3; th++) {
            ak_ctx_set_num_threads(ctx, th);
            ak_sparse *sp = case_plan(ctx, &c, NULL, tag);
            if (sp) CHECK(ak_sparse_to_json(ctx, sp, &js[th - 1], &len[th - 1]) == AK_OK, "%s: to_json", tag);
            ak_sparse_destroy(sp);
        }
        for (int th = 2; th <= 3; th++)
            CHECK(js[0] && js[th - 1] && len[0] == len[th - 1] && !memcmp(js[0], js[th - 1], len[0]),
                  "%s: %d threads give another plan", tag, th);
        CHECK(js[0] && strstr(js[0], "key_bias") &&
                  (c.p.mask_type == AK_DMA_RELU || !c.causal || strstr(js[0], "row_thresh")),
              "%s: the JSON lacks the refinements", tag);
        for (int k = 0; k < 3; k++) ak_free(ctx, js[k]);
        case_free(&c);
    }
    ak_ctx_set_num_threads(ctx, 2);
}

/* One invalid call: status `want`, *out NULL afterwards. */
static void expect_fail(ak_ctx *ctx, const dcase *c, const ak_attn_desc *de, const ak_attn_tensors *t,
                        const ak_dma_params *p, ak_status want, const char *what) {
    ak_sparse *sp = (ak_sparse *)(uintptr_t)1; /* not NULL: the planner must clear it */
    ak_status st = ak_dma_plan(ctx, de, t, p, &sp, NULL);
    CHECK(st == want && (want == AK_OK) == (sp != NULL), "%s: got %s, want %s (%s)", what, ak_status_string(st),
          ak_status_string(want), ak_ctx_last_error(ctx));
    if (st == AK_OK) ak_sparse_destroy(sp);
    (void)c;
}

static void group_invalid(ak_ctx *ctx) {
    rng r = rng_seed(7000);
    dcase c = {.B = 1, .Hq = 4, .Hkv = 2, .nq = 40, .nk = 40, .d = 8, .dv = 8, .causal = 1};
    case_fill(&c, FILL_RANDOM, &r);
    ak_attn_desc de;
    case_desc(&c, &de);
    ak_attn_tensors t = case_tensors(&c, NULL, NULL, 0);
    ak_dma_params p;
    struct {
        const char *what;
        ak_status want;
    } k[] = {{"window 0", AK_ERR_INVALID_ARGUMENT},
             {"window -5", AK_ERR_INVALID_ARGUMENT},
             {"bias_form 2", AK_ERR_INVALID_ARGUMENT},
             {"mask_type -1", AK_ERR_INVALID_ARGUMENT},
             {"block_q 0", AK_ERR_INVALID_ARGUMENT},
             {"untrained 2", AK_ERR_INVALID_ARGUMENT},
             {"untrained with parameters", AK_ERR_INVALID_ARGUMENT},
             {"w_dt NULL", AK_ERR_NULL_POINTER},
             {"a NULL", AK_ERR_NULL_POINTER},
             {"num_heads_kv 3", AK_ERR_SHAPE_MISMATCH},
             {"head_dim_v 16", AK_ERR_SHAPE_MISMATCH},
             {"head_dim_v 0", AK_ERR_SHAPE_MISMATCH},
             {"a NaN", AK_ERR_INVALID_ARGUMENT},
             {"a inf", AK_ERR_INVALID_ARGUMENT},
             {"dt_bias -inf", AK_ERR_INVALID_ARGUMENT},
             {"w_dt NaN", AK_ERR_INVALID_ARGUMENT},
             {"exp(u) overflows", AK_ERR_INVALID_ARGUMENT},
             {"a = 200 in the log form is fine", AK_OK}};
    float a_bad[2] = {1.0f, NAN}, a_inf[2] = {INFINITY, 1.0f}, b_bad[2] = {0.0f, -INFINITY};
    float a_big[2] = {200.0f, 200.0f}, bias_big[2] = {5.0f, 5.0f}; /* u > 1000: exp(u) = inf */
    float *w_bad = malloc(sizeof(float) * 2 * 16);
    memcpy(w_bad, c.w_dt, sizeof(float) * 2 * 16);
    w_bad[23] = NAN;
    for (size_t x = 0; x < sizeof k / sizeof k[0]; x++) {
        p = c.p;
        switch (x) {
        case 0: p.window = 0; break;
        case 1: p.window = -5; break;
        case 2: p.bias_form = 2; break;
        case 3: p.mask_type = -1; break;
        case 4: p.block_q = 0; break;
        case 5: p.untrained = 2; break;
        case 6: p.untrained = 1; break;
        case 7: p.w_dt = NULL; break;
        case 8: p.a = NULL; break;
        case 9: p.num_heads_kv = 3; break;
        case 10: p.head_dim_v = 16; break;
        case 11: p.head_dim_v = 0; break;
        case 12: p.a = a_bad; break;
        case 13: p.a = a_inf; break;
        case 14: p.dt_bias = b_bad; break;
        case 15: p.w_dt = w_bad; break;
        case 16: p.a = a_big, p.dt_bias = bias_big, p.bias_form = AK_DMA_BIAS_EXP; break;
        default: p.a = a_big, p.dt_bias = bias_big, p.bias_form = AK_DMA_BIAS_LOG; break;
        }
        expect_fail(ctx, &c, &de, &t, &p, k[x].want, k[x].what);
    }
    free(w_bad);
    /* NaN in V */
    float keep = c.v[17];
    c.v[17] = NAN;
    expect_fail(ctx, &c, &de, &t, &c.p, AK_ERR_INVALID_ARGUMENT, "NaN value");
    c.v[17] = keep;
    /* the descriptor and tensors */
    ak_attn_desc d2 = de;
    d2.window_left = 8;
    expect_fail(ctx, &c, &d2, &t, &c.p, AK_ERR_INVALID_ARGUMENT, "desc window");
    d2 = de;
    d2.softcap = 30.0f;
    expect_fail(ctx, &c, &d2, &t, &c.p, AK_ERR_INVALID_ARGUMENT, "desc softcap");
    ak_attn_tensors t2 = t;
    t2.v = ak_tensor_4d(c.v, AK_F32, 1, 2, 39, 8);
    expect_fail(ctx, &c, &de, &t2, &c.p, AK_ERR_SHAPE_MISMATCH, "v shape");
    t2 = t;
    t2.v.data = NULL;
    ak_sparse *sp = (ak_sparse *)(uintptr_t)1;
    CHECK(ak_dma_plan(ctx, &de, &t2, &c.p, &sp, NULL) != AK_OK && sp == NULL, "v NULL");
    sp = (ak_sparse *)(uintptr_t)1;
    CHECK(ak_dma_plan(ctx, NULL, &t, &c.p, &sp, NULL) == AK_ERR_NULL_POINTER && sp == NULL, "desc NULL");
    CHECK(ak_dma_plan(ctx, &de, &t, &c.p, NULL, NULL) == AK_ERR_NULL_POINTER, "out NULL");
    CHECK(ak_dma_plan(NULL, &de, &t, &c.p, &sp, NULL) == AK_ERR_NULL_POINTER, "ctx NULL");
    /* params NULL = defaults: w_dt NULL -> refused */
    sp = (ak_sparse *)(uintptr_t)1;
    CHECK(ak_dma_plan(ctx, &de, &t, NULL, &sp, NULL) == AK_ERR_NULL_POINTER && sp == NULL,
          "params NULL (defaults have no w_dt)");
    /* ak_dma_scores: (b, h) out of range */
    float u[40];
    CHECK(ak_dma_scores(ctx, &de, &t, &c.p, 1, 0, u, NULL) == AK_ERR_INVALID_ARGUMENT, "scores b = 1");
    CHECK(ak_dma_scores(ctx, &de, &t, &c.p, 0, 2, u, NULL) == AK_ERR_INVALID_ARGUMENT, "scores h = 2");
    CHECK(ak_dma_scores(ctx, &de, &t, &c.p, 0, -1, NULL, u) == AK_ERR_INVALID_ARGUMENT, "scores h = -1");
    /* the parameter-free form works without parameters */
    p = c.p;
    p.untrained = 1, p.w_dt = p.a = p.dt_bias = NULL;
    sp = NULL;
    CHECK(ak_dma_plan(ctx, &de, &t, &p, &sp, NULL) == AK_OK && sp, "untrained: %s", ak_ctx_last_error(ctx));
    ak_sparse_destroy(sp);
    case_free(&c);
}

static void group_planted(ak_ctx *ctx) {
    const int N = g_quick ? 300 : 1023, W = 64, G = 4;
    rng r = rng_seed(8000);
    dcase c = {.B = 1, .Hq = 2 * G, .Hkv = 2, .nq = N, .nk = N, .d = 32, .dv = 16, .causal = 1};
    case_fill(&c, FILL_RANDOM, &r);
    /* z = 1 * V[h][t][0] (+ small noise from the others); planted keys get V[..][0] = 6, others |.| <= 0.1 */
    for (int x = 0; x < c.Hkv * c.Hkv * c.dv; x++) c.w_dt[x] = (float)rng_range(&r, -0.01, 0.01);
    for (int h = 0; h < c.Hkv; h++) c.w_dt[((size_t)h * c.Hkv + h) * c.dv] = 1.0f, c.a[h] = 1.0f;
    for (size_t x = 0; x < nv_el(&c); x++) c.v[x] *= 0.1f;
    uint8_t *planted = calloc((size_t)c.Hkv * N, 1);
    const float amp = 3.0f * sqrtf((float)c.d);
    for (int h = 0; h < c.Hkv; h++) {
        int m = 0;
        for (int j = 3 + 5 * h; j < N && m < W / 2; j += N / 16 + h, m++) {
            planted[(size_t)h * N + j] = 1;
            vrow(&c, 0, h, j)[0] = 6.0f;
            float *kj = c.k + (((size_t)h) * N + j) * c.d; /* Q.K favours them too: k = 3 e_h */
            for (int x = 0; x < c.d; x++) kj[x] = x == h ? 3.0f : 0.05f * kj[x];
        }
        for (int g = 0; g < G; g++) /* queries along e_h */
            for (int i = 0; i < N; i++) {
                float *qi = c.q + (((size_t)h * G + g) * N + i) * c.d;
                for (int x = 0; x < c.d; x++) qi[x] = x == h ? amp : 0.1f * qi[x];
            }
    }
    c.p.window = W;
    ak_sparse *sp = case_plan(ctx, &c, NULL, "planted");
    if (!sp) goto done;
    check_masks(ctx, &c, sp, "planted");
    uint8_t *mask = malloc((size_t)N * N);
    float *u = malloc(sizeof(float) * N), *bias = malloc(sizeof(float) * N);
    double *pr = malloc(sizeof(double) * N), min_recall = 1.0;
    int missed = 0;
    const double scale = 1.0 / sqrt((double)c.d);
    for (int h = 0; h < c.Hkv; h++) {
        ak_sparse_mask(sp, 0, h, mask);
        lib_scores(ctx, &c, 0, h, u, bias);
        for (int i = 0; i < N; i++)
            for (int j = 0; j <= i; j++) missed += planted[(size_t)h * N + j] && !mask[(size_t)i * N + j];
        for (int g = 0; g < G; g++) /* attention-mass recall of the dense softmax with the bias */
            for (int i = 0; i < N; i++) {
                const float *qi = c.q + (((size_t)h * G + g) * N + i) * c.d;
                double mx = -INFINITY, den = 0.0, kept = 0.0;
                for (int j = 0; j <= i; j++) {
                    const float *kj = c.k + ((size_t)h * N + j) * c.d;
                    double dot = 0.0;
                    for (int x = 0; x < c.d; x++) dot += (double)qi[x] * kj[x];
                    pr[j] = scale * dot + bias[j];
                    mx = fmax(mx, pr[j]);
                }
                for (int j = 0; j <= i; j++) {
                    double e = exp(pr[j] - mx);
                    den += e;
                    if (mask[(size_t)i * N + j]) kept += e;
                }
                min_recall = fmin(min_recall, kept / den);
            }
    }
    CHECK(missed == 0, "planted: %d (row, planted key) pairs not selected", missed);
    CHECK(min_recall >= 0.99, "planted: attention-mass recall %.5f < 0.99", min_recall);
    free(mask), free(u), free(bias), free(pr);
    ak_sparse_destroy(sp);
done:
    free(planted);
    case_free(&c);
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_DMA_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_DMA_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_dma: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    double t0 = tu_now();
    int any = 0;
    struct {
        const char *name;
        void (*fn)(ak_ctx *);
    } groups[] = {{"dense", group_dense},     {"select", group_select},   {"thresh", group_thresh},
                  {"relu", group_relu},       {"exec", group_exec},       {"skip", group_skip},
                  {"threads", group_threads}, {"invalid", group_invalid}, {"planted", group_planted}};
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
                "test_dyn_dma: unknown group '%s' (dense, select, thresh, relu, exec, skip, threads, invalid, planted, "
                "all)\n",
                group);
        return 2;
    }
    char name[80];
    snprintf(name, sizeof name, "test_dyn_dma %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
