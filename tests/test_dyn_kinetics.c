/*
 * test_dyn_kinetics.c — Kinetics block top-k sparse decoding (ak_kinetics_decode / _select / _index_*).
 *
 * Groups (`test_dyn_kinetics <group>`; no group = all):
 *   dense      L <= n_full for every sequence: counts are -1 and the output equals ak_decode_ref (f64)
 *   select     the selection against a brute-force re-implementation in double written here (compressed
 *              keys = mean of the block's keys, score = mean over the G heads of scale q . kbar, candidates,
 *              top-k, ties to the lower id): exactly topk blocks whenever L > n_full, ascending, inside the
 *              candidate range; odd lengths, block sizes that do not divide them, GQA 1, 3, 4, 5, 12
 *   linearity  AK_KINETICS_MEAN_LOGIT (mean of the exact logits) chooses the same blocks as AK_KINETICS_MEAN_KEY,
 *              with the index and on the fly (the last two bitwise equal)
 *   exec [N]   N random cases (default 80): output == masked dense softmax in double over the selected set
 *              (sink, chosen blocks, local window, partial block; the same set for the G heads), outputs NaN-poisoned,
 *              contiguous (BHSD / BSHD) and paged caches (NHD / HND, random page tables, block table or CSR),
 *              f32 / bf16 / f16 / i8 KV, f32 / bf16 / f16 queries and outputs, sinks, LSE, empty and dense
 *              sequences in the batch; cache slots no sequence owns hold NaN
 *   index      the index updated after every random-sized ak_kv_append == one built from scratch (bitwise)
 *              == the means in double; slots, reset, stale index refused
 *   planted    keys of a few planted blocks aligned with the queries: those blocks are chosen and the
 *              attention-mass recall (double dense softmax) of the attended set is >= 0.99
 *   threads    O, LSE and the selection bitwise identical for 1, 2, 3 threads
 *   invalid    every invalid argument returns its status; the outputs stay untouched
 * Environment: AK_KINETICS_QUICK=1 (fewer random cases: sanitizer builds), AK_KINETICS_VERBOSE=1.
 * The library honours AK_MAX_ISA and AK_DECODE_QK=keys|lanes (CTest runs exec under both formulations).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

#define MAXB 4
#define MAXD 160

static int g_quick = 0;
static int g_verbose = 0;

/* ================================================================================================
 * A KV cache with owned memory: every slot no sequence owns holds NaN (int8: a NaN scale).
 * ============================================================================================== */

typedef struct tcache {
    int B, Hkv, d, dv, ps, cap, maxp, num_pages, csr, bshd;
    ak_dtype dt;
    ak_kv_layout layout;
    int32_t len[MAXB];
    int32_t *bt; /* [B][maxp] */
    int32_t indptr[MAXB + 1], last[MAXB], *indices;
    unsigned char *kmem, *vmem;
    float *ksm, *vsm;
    ak_kv_desc desc;
    ak_kv_tensors t;
} tcache;

static size_t esz(ak_dtype dt) { return dt == AK_F32 ? 4 : dt == AK_I8 ? 1 : 2; }

static void put(void *base, ak_dtype dt, int64_t off, double v) {
    switch (dt) {
    case AK_F32:
        ((float *)base)[off] = (float)v;
        break;
    case AK_BF16:
        ((uint16_t *)base)[off] = tu_f32_to_bf16((float)v);
        break;
    case AK_F16:
        ((uint16_t *)base)[off] = tu_f32_to_f16((float)v);
        break;
    case AK_I8:
        ((int8_t *)base)[off] = (int8_t)v;
        break;
    default:
        break;
    }
}

static double get(const void *base, ak_dtype dt, int64_t off) {
    switch (dt) {
    case AK_F32:
        return ((const float *)base)[off];
    case AK_BF16:
        return tu_bf16_to_f32(((const uint16_t *)base)[off]);
    case AK_F16:
        return tu_f16_to_f32(((const uint16_t *)base)[off]);
    case AK_I8:
        return ((const int8_t *)base)[off];
    default:
        return NAN;
    }
}

static void poison(ak_dtype dt, void *mem, size_t n) {
    for (size_t i = 0; i < n; i++) put(mem, dt, (int64_t)i, dt == AK_I8 ? 0.0 : NAN);
}

static void tc_free(tcache *c) {
    free(c->bt), free(c->indices), free(c->kmem), free(c->vmem), free(c->ksm), free(c->vsm);
    memset(c, 0, sizeof *c);
}

/* Row-major 4-d view (or BSHD-like contiguous cache: dims 1 and 2 swapped in memory). */
static ak_tensor view4(void *data, ak_dtype dt, int64_t n0, int64_t n1, int64_t n2, int64_t n3, int swap12) {
    ak_tensor t = ak_tensor_4d(data, dt, n0, n1, n2, n3);
    if (swap12) {
        t.stride[1] = n3;
        t.stride[2] = n1 * n3;
    }
    return t;
}

/* Allocate a cache for up to `cap` tokens per sequence (lengths 0); pages randomly assigned. */
static int tc_create(tcache *c, int B, int Hkv, int d, int dv, ak_dtype dt, int ps, ak_kv_layout layout, int bshd,
                     int csr, int cap, rng *r) {
    memset(c, 0, sizeof *c);
    c->B = B, c->Hkv = Hkv, c->d = d, c->dv = dv, c->dt = dt, c->ps = ps, c->layout = layout;
    c->bshd = bshd && ps == 0, c->csr = csr && ps > 0, c->cap = cap > 0 ? cap : 1;
    int64_t n0, n1, n2;
    if (ps == 0) {
        n0 = B, n1 = Hkv, n2 = c->cap;
    } else {
        c->maxp = (c->cap + ps - 1) / ps;
        c->num_pages = B * c->maxp + 3;
        c->bt = (int32_t *)malloc(sizeof(int32_t) * (size_t)(B * c->maxp));
        c->indices = (int32_t *)malloc(sizeof(int32_t) * (size_t)(B * c->maxp + 1));
        int32_t *perm = (int32_t *)malloc(sizeof(int32_t) * (size_t)c->num_pages);
        if (!c->bt || !c->indices || !perm) return -1;
        for (int i = 0; i < c->num_pages; i++) perm[i] = i;
        for (int i = c->num_pages - 1; i > 0; i--) {
            int j = rng_int(r, i + 1), x = perm[i];
            perm[i] = perm[j], perm[j] = x;
        }
        memcpy(c->bt, perm, sizeof(int32_t) * (size_t)(B * c->maxp));
        free(perm);
        n0 = c->num_pages;
        n1 = layout == AK_KV_NHD ? ps : Hkv;
        n2 = layout == AK_KV_NHD ? Hkv : ps;
    }
    size_t nk = (size_t)(n0 * n1 * n2 * d), nv = (size_t)(n0 * n1 * n2 * dv), ns = (size_t)(n0 * n1 * n2);
    c->kmem = (unsigned char *)malloc(nk * esz(dt));
    c->vmem = (unsigned char *)malloc(nv * esz(dt));
    if (!c->kmem || !c->vmem) return -1;
    poison(dt, c->kmem, nk);
    poison(dt, c->vmem, nv);
    ak_kv_tensors_init(&c->t);
    c->t.k = view4(c->kmem, dt, n0, n1, n2, d, c->bshd);
    c->t.v = view4(c->vmem, dt, n0, n1, n2, dv, c->bshd);
    if (dt == AK_I8) {
        c->ksm = (float *)malloc(ns * sizeof(float));
        c->vsm = (float *)malloc(ns * sizeof(float));
        if (!c->ksm || !c->vsm) return -1;
        for (size_t i = 0; i < ns; i++) c->ksm[i] = c->vsm[i] = NAN;
        c->t.k_scale = ak_tensor_3d(c->ksm, AK_F32, n0, n1, n2);
        c->t.v_scale = ak_tensor_3d(c->vsm, AK_F32, n0, n1, n2);
    }
    return 0;
}

/* The description of the cache with its current lengths. */
static void tc_desc(tcache *c) {
    ak_kv_desc *k = &c->desc;
    ak_kv_desc_init(k);
    k->batch = c->B, k->num_heads_kv = c->Hkv, k->head_dim = c->d, k->head_dim_v = c->dv, k->dtype = c->dt;
    k->page_size = c->ps, k->layout = c->layout;
    if (c->ps == 0) {
        k->capacity = c->cap;
        k->seqlens = c->len;
        return;
    }
    k->num_pages = c->num_pages;
    if (!c->csr) {
        k->seqlens = c->len, k->block_table = c->bt, k->max_pages_per_seq = c->maxp;
        return;
    }
    ak_ctx *ctx = NULL;
    ak_ctx_create(&ctx);
    ak_status st = ak_kv_block_table_to_csr(ctx, c->B, c->ps, c->num_pages, c->len, c->bt, c->maxp, c->indptr,
                                            c->indices, c->B * c->maxp + 1, c->last);
    if (st != AK_OK) fprintf(stderr, "tc_desc: ak_kv_block_table_to_csr: %s\n", ak_status_string(st));
    ak_ctx_destroy(ctx);
    k->kv_indptr = c->indptr, k->kv_indices = c->indices, k->kv_last_page_len = c->last;
}

/* Element offset of (b, h, tok, col) in a cache tensor (nd = 3: the scales). */
static int64_t tc_off(const tcache *c, const ak_tensor *t, int b, int h, int64_t tok, int col, int nd) {
    int64_t i0, i1, i2;
    if (c->ps == 0) {
        i0 = b, i1 = h, i2 = tok;
    } else {
        i0 = c->bt[b * c->maxp + tok / c->ps];
        int64_t slot = tok % c->ps;
        i1 = c->layout == AK_KV_NHD ? slot : h;
        i2 = c->layout == AK_KV_NHD ? h : slot;
    }
    return i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + (nd == 4 ? col * t->stride[3] : 0);
}

/* The value the cache holds (int8: q * scale), in double. */
static double tc_get(const tcache *c, int is_v, int b, int h, int64_t tok, int col) {
    const ak_tensor *t = is_v ? &c->t.v : &c->t.k;
    double x = get(t->data, c->dt, tc_off(c, t, b, h, tok, col, 4));
    if (c->dt == AK_I8) {
        const ak_tensor *s = is_v ? &c->t.v_scale : &c->t.k_scale;
        x *= ((const float *)s->data)[tc_off(c, s, b, h, tok, 0, 3)];
    }
    return x;
}

/* Random contents for tokens [0, len[b]): uniform [-amp, amp]; int8: q in [-127, 127], scale in [0.3, 1] / 127. */
static void tc_fill(tcache *c, rng *r, double amp) {
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hkv; h++)
            for (int64_t tok = 0; tok < c->len[b]; tok++)
                for (int is_v = 0; is_v < 2; is_v++) {
                    const ak_tensor *t = is_v ? &c->t.v : &c->t.k;
                    int n = is_v ? c->dv : c->d;
                    for (int col = 0; col < n; col++) {
                        double x = c->dt == AK_I8 ? (double)(rng_int(r, 255) - 127) : amp * rng_range(r, -1.0, 1.0);
                        put(t->data, c->dt, tc_off(c, t, b, h, tok, col, 4), x);
                    }
                    if (c->dt == AK_I8) {
                        const ak_tensor *s = is_v ? &c->t.v_scale : &c->t.k_scale;
                        ((float *)s->data)[tc_off(c, s, b, h, tok, 0, 3)] =
                            (float)(amp * rng_range(r, 0.3, 1.0) / 127.0);
                    }
                }
}

/* ================================================================================================
 * A problem: cache + q / o / lse / sinks
 * ============================================================================================== */

typedef struct kcase {
    uint64_t seed;
    int B, Hkv, G, d, dv;
    ak_dtype dkv, dq, dout;
    int ps, csr, bshd;
    ak_kv_layout layout;
    int32_t len[MAXB];
    int sinks, lse, use_index;
    float scale;
    ak_kinetics_params prm;
} kcase;

typedef struct kenv {
    kcase c;
    tcache kv;
    tbuf q, o, lse, sinks;
    ak_decode_desc desc;
    ak_decode_tensors t;
    double scale;                /* the float scale the library uses, in double */
    double *kd[MAXB], *vd[MAXB]; /* the cache's values in double: [Hkv][len][d] / [Hkv][len][dv] */
} kenv;

/* (Re)read the cache's values into the double copies (after the cache was filled or changed). */
static void kenv_snapshot(kenv *e) {
    const kcase *c = &e->c;
    for (int b = 0; b < c->B; b++) {
        free(e->kd[b]), free(e->vd[b]);
        size_t n = (size_t)c->Hkv * (size_t)(c->len[b] > 0 ? c->len[b] : 1);
        e->kd[b] = (double *)malloc(sizeof(double) * n * (size_t)c->d);
        e->vd[b] = (double *)malloc(sizeof(double) * n * (size_t)c->dv);
        for (int h = 0; h < c->Hkv; h++)
            for (int64_t j = 0; j < c->len[b]; j++) {
                for (int col = 0; col < c->d; col++)
                    e->kd[b][((size_t)h * c->len[b] + j) * c->d + col] = tc_get(&e->kv, 0, b, h, j, col);
                for (int col = 0; col < c->dv; col++)
                    e->vd[b][((size_t)h * c->len[b] + j) * c->dv + col] = tc_get(&e->kv, 1, b, h, j, col);
            }
    }
}

static const double *krow(const kenv *e, int b, int h, int64_t j) {
    return e->kd[b] + ((size_t)h * e->c.len[b] + j) * e->c.d;
}
static const double *vrow(const kenv *e, int b, int h, int64_t j) {
    return e->vd[b] + ((size_t)h * e->c.len[b] + j) * e->c.dv;
}

static void kenv_free(kenv *e) {
    for (int b = 0; b < MAXB; b++) free(e->kd[b]), free(e->vd[b]);
    tc_free(&e->kv);
    tbuf_free(&e->q), tbuf_free(&e->o), tbuf_free(&e->lse), tbuf_free(&e->sinks);
}

static int kenv_make(kenv *e, const kcase *c) {
    memset(e, 0, sizeof *e);
    e->c = *c;
    rng r = rng_seed(c->seed);
    int cap = 1;
    for (int b = 0; b < c->B; b++) cap = c->len[b] > cap ? c->len[b] : cap;
    if (tc_create(&e->kv, c->B, c->Hkv, c->d, c->dv, c->dkv, c->ps, c->layout, c->bshd, c->csr, cap + 3, &r)) return -1;
    memcpy(e->kv.len, c->len, sizeof(int32_t) * (size_t)c->B);
    tc_fill(&e->kv, &r, 1.0);
    tc_desc(&e->kv);
    const int Hq = c->Hkv * c->G;
    int64_t qs[4] = {c->B, Hq, 1, c->d}, os[4] = {c->B, Hq, 1, c->dv}, ls[3] = {c->B, Hq, 1}, ss[1] = {Hq};
    if (tbuf_make(&e->q, c->dq, 4, qs, rng_chance(&r, 0.3) ? LAY_PADDED : LAY_CONTIG, &r) ||
        tbuf_make(&e->o, c->dout, 4, os, rng_chance(&r, 0.3) ? LAY_PADDED : LAY_CONTIG, &r) ||
        tbuf_make(&e->lse, AK_F32, 3, ls, LAY_CONTIG, &r) || tbuf_make(&e->sinks, AK_F32, 1, ss, LAY_CONTIG, &r))
        return -1;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < Hq; h++)
            for (int col = 0; col < c->d; col++) ten_set4(&e->q.t, b, h, 0, col, rng_range(&r, -1.0, 1.0));
    for (int h = 0; h < Hq; h++) {
        int64_t i = h;
        ten_set(&e->sinks.t, &i, rng_range(&r, -2.0, 2.0));
    }
    ak_decode_desc_init(&e->desc);
    e->desc.num_heads_q = Hq;
    e->desc.q_len = 1;
    e->desc.dtype_q = c->dq;
    e->desc.dtype_o = c->dout;
    e->desc.scale = c->scale;
    e->desc.has_sinks = c->sinks;
    e->desc.return_lse = c->lse;
    e->desc.kv = e->kv.desc;
    e->scale = isnan(c->scale) ? (double)(float)(1.0 / sqrt((double)c->d)) : (double)c->scale;
    ak_decode_tensors_init(&e->t);
    e->t.q = e->q.t;
    e->t.o = e->o.t;
    if (c->lse) e->t.lse = e->lse.t;
    if (c->sinks) e->t.sinks = e->sinks.t;
    e->t.kv = e->kv.t;
    kenv_snapshot(e);
    return 0;
}

static double qval(const kenv *e, int b, int h, int col) { return ten_get4(&e->q.t, b, h, 0, col); }

/* ================================================================================================
 * The rule, written plainly (no code shared with the library)
 * ============================================================================================== */

static int64_t n_full_of(const ak_kinetics_params *p) {
    int64_t s = (int64_t)p->sink + p->local + (int64_t)p->topk * p->block;
    return (s + p->block - 1) / p->block * p->block;
}

static void cand_range(int64_t L, const ak_kinetics_params *p, int64_t *c0, int64_t *c1) {
    int64_t bs = p->block, C = L / bs, e = (L - p->local + bs - 1) / bs;
    *c0 = p->sink / bs;
    *c1 = e < C ? e : C;
}

/* mask[j] = 1 iff key j is attended, given the library's selection (cnt = -1: dense). */
static void attended(int64_t L, const ak_kinetics_params *p, int cnt, const int32_t *blk, uint8_t *mask) {
    for (int64_t j = 0; j < L; j++) mask[j] = cnt < 0;
    if (cnt < 0) return;
    for (int64_t j = 0; j < L && j < p->sink; j++) mask[j] = 1;
    for (int i = 0; i < cnt; i++)
        for (int64_t j = (int64_t)blk[i] * p->block; j < (int64_t)(blk[i] + 1) * p->block && j < L; j++) mask[j] = 1;
    for (int64_t j = L - p->local > 0 ? L - p->local : 0; j < L; j++) mask[j] = 1;
    for (int64_t j = L / p->block * p->block; j < L; j++) mask[j] = 1;
}

/* Block scores in double: score[p - c0] = mean_g scale * q_g . mean(keys of block p). */
static void brute_scores(const kenv *e, int b, int hk, int64_t c0, int64_t c1, double *score) {
    const kcase *c = &e->c;
    const int bs = c->prm.block;
    double kbar[MAXD];
    for (int64_t p = c0; p < c1; p++) {
        for (int col = 0; col < c->d; col++) {
            double a = 0.0;
            for (int j = 0; j < bs; j++) a += krow(e, b, hk, p * bs + j)[col];
            kbar[col] = a / bs;
        }
        double s = 0.0;
        for (int g = 0; g < c->G; g++) {
            double dot = 0.0;
            for (int col = 0; col < c->d; col++) dot += qval(e, b, hk * c->G + g, col) * kbar[col];
            s += e->scale * dot;
        }
        score[p - c0] = s / c->G;
    }
}

static int cmp_desc(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a < b) - (a > b);
}

/* Check the library's selection of (b, hk) against the rule; returns the number of failed checks. */
static int check_selection(const kenv *e, int b, int hk, int cnt, const int32_t *blk, const char *what) {
    const kcase *c = &e->c;
    const ak_kinetics_params *p = &c->prm;
    const int64_t L = c->len[b];
    int f0 = tc_failures;
    if (L <= n_full_of(p)) {
        CHECK(cnt == -1, "%s b=%d hk=%d L=%lld <= n_full=%lld: count %d, expected -1 (dense)", what, b, hk,
              (long long)L, (long long)n_full_of(p), cnt);
        return tc_failures - f0;
    }
    int64_t c0, c1;
    cand_range(L, p, &c0, &c1);
    CHECK(c1 - c0 >= p->topk, "%s: rule: %lld candidates < topk %d", what, (long long)(c1 - c0), p->topk);
    CHECK(cnt == p->topk, "%s b=%d hk=%d L=%lld: %d blocks chosen, expected exactly topk=%d", what, b, hk, (long long)L,
          cnt, p->topk);
    if (cnt != p->topk) return tc_failures - f0;
    for (int i = 0; i < cnt; i++) {
        CHECK(blk[i] >= c0 && blk[i] < c1, "%s b=%d hk=%d: block %d outside the candidates [%lld, %lld)", what, b, hk,
              blk[i], (long long)c0, (long long)c1);
        if (i) CHECK(blk[i] > blk[i - 1], "%s b=%d hk=%d: blocks not ascending at %d", what, b, hk, i);
    }
    for (int i = cnt; i < p->topk; i++)
        CHECK(blk[i] == -1, "%s: entry %d past the count is %d, not -1", what, i, blk[i]);
    if (tc_failures != f0) return tc_failures - f0;
    int64_t n = c1 - c0;
    double *sc = (double *)malloc(sizeof(double) * (size_t)n), *srt = (double *)malloc(sizeof(double) * (size_t)n);
    brute_scores(e, b, hk, c0, c1, sc);
    memcpy(srt, sc, sizeof(double) * (size_t)n);
    qsort(srt, (size_t)n, sizeof(double), cmp_desc);
    double kth = srt[p->topk - 1], tol = 1e-5 * (1.0 + fabs(srt[0]));
    uint8_t *in = (uint8_t *)calloc((size_t)n, 1);
    for (int i = 0; i < cnt; i++) {
        in[blk[i] - c0] = 1;
        CHECK(sc[blk[i] - c0] >= kth - tol, "%s b=%d hk=%d: chosen block %d scores %.9g below the k-th best %.9g", what,
              b, hk, blk[i], sc[blk[i] - c0], kth);
    }
    for (int64_t q = 0; q < n; q++)
        if (sc[q] > kth + tol)
            CHECK(in[q], "%s b=%d hk=%d: block %lld (score %.9g > k-th %.9g) not chosen", what, b, hk,
                  (long long)(q + c0), sc[q], kth);
    /* ties: with exactly equal scores the lower id must win (checked on the planted group's exact ties) */
    free(sc), free(srt), free(in);
    return tc_failures - f0;
}

/* Reference output of (b, h) over the keys of mask (double): o[dv], lse. */
static void ref_row(const kenv *e, int b, int h, const uint8_t *mask, double *o, double *lse) {
    const kcase *c = &e->c;
    const int64_t L = c->len[b];
    const int hk = h / c->G;
    double *s = (double *)malloc(sizeof(double) * (size_t)(L > 0 ? L : 1)), q[MAXD];
    for (int col = 0; col < c->d; col++) q[col] = qval(e, b, h, col);
    double mx = c->sinks ? ten_get(&e->sinks.t, (int64_t[]){h}) : -INFINITY;
    for (int64_t j = 0; j < L; j++) {
        s[j] = -INFINITY;
        if (!mask[j]) continue;
        double dot = 0.0;
        const double *k = krow(e, b, hk, j);
        for (int col = 0; col < c->d; col++) dot += q[col] * k[col];
        s[j] = e->scale * dot;
        if (s[j] > mx) mx = s[j];
    }
    for (int col = 0; col < c->dv; col++) o[col] = 0.0;
    if (mx == -INFINITY) {
        *lse = -INFINITY;
        free(s);
        return;
    }
    double den = c->sinks ? exp(ten_get(&e->sinks.t, (int64_t[]){h}) - mx) : 0.0;
    for (int64_t j = 0; j < L; j++) {
        if (s[j] == -INFINITY) continue;
        double w = exp(s[j] - mx);
        den += w;
        const double *v = vrow(e, b, hk, j);
        for (int col = 0; col < c->dv; col++) o[col] += w * v[col];
    }
    for (int col = 0; col < c->dv; col++) o[col] /= den;
    *lse = mx + log(den);
    free(s);
}

static double out_tol(ak_dtype dt, double maxabs) {
    double t = 2e-5 * (maxabs > 1.0 ? maxabs : 1.0);
    if (dt != AK_F32) t += 2.0 * tu_ulp(dt, maxabs);
    return t;
}

/* Compare the run's O / LSE with the masked-dense reference over the library's selection. */
static void check_output(const kenv *e, const int32_t *blocks, const int32_t *counts, const char *what) {
    const kcase *c = &e->c;
    const int Hq = c->Hkv * c->G;
    int64_t maxL = 1;
    for (int b = 0; b < c->B; b++) maxL = c->len[b] > maxL ? c->len[b] : maxL;
    uint8_t *mask = (uint8_t *)malloc((size_t)maxL);
    double o[MAXD], lse;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < Hq; h++) {
            int it = b * c->Hkv + h / c->G;
            attended(c->len[b], &c->prm, counts[it], blocks + (size_t)it * c->prm.topk, mask);
            ref_row(e, b, h, mask, o, &lse);
            double mref = 0.0, err = 0.0;
            for (int col = 0; col < c->dv; col++) mref = fabs(o[col]) > mref ? fabs(o[col]) : mref;
            for (int col = 0; col < c->dv; col++) {
                double x = ten_get4(&e->o.t, b, h, 0, col), dlt = fabs(x - o[col]);
                if (!(dlt <= err)) err = isnan(x) ? INFINITY : dlt > err ? dlt : err;
            }
            CHECK(err <= out_tol(c->dout, mref), "%s b=%d h=%d L=%d: |O - ref| = %.3g > %.3g", what, b, h, c->len[b],
                  err, out_tol(c->dout, mref));
            if (mref == 0.0 && lse == -INFINITY)
                for (int col = 0; col < c->dv; col++)
                    CHECK(ten_get4(&e->o.t, b, h, 0, col) == 0.0, "%s b=%d h=%d: empty row, O != 0", what, b, h);
            if (c->lse) {
                double x = ten_get3(&e->lse.t, b, h, 0);
                if (lse == -INFINITY)
                    CHECK(x == -INFINITY, "%s b=%d h=%d: LSE %g, expected -inf", what, b, h, x);
                else
                    CHECK(fabs(x - lse) <= 1e-5 * (fabs(lse) > 1.0 ? fabs(lse) : 1.0), "%s b=%d h=%d: LSE %.9g vs %.9g",
                          what, b, h, x, lse);
            }
        }
    CHECK(tbuf_outside_untouched(&e->o), "%s: O memory outside the view was written", what);
    if (c->lse) CHECK(tbuf_outside_untouched(&e->lse), "%s: LSE memory outside the view was written", what);
    free(mask);
}

/* An index for the problem (all sequences updated once), or NULL. */
static ak_kinetics_index *make_index(ak_ctx *ctx, const kenv *e) {
    ak_kinetics_index *ix = NULL;
    CHECK_STATUS(ak_kinetics_index_create(ctx, e->c.B, e->c.Hkv, e->c.d, e->c.prm.block, &ix), AK_OK);
    if (!ix) return NULL;
    CHECK_STATUS(ak_kinetics_index_update(ix, &e->kv.desc, &e->kv.t, NULL), AK_OK);
    return ix;
}

static const char *dname(ak_dtype t) { return t == AK_I8 ? "i8" : tu_dtype_short(t); }

static void describe(const kcase *c, char *buf, size_t n) {
    snprintf(buf, n,
             "seed=%llu B=%d Hkv=%d G=%d d=%d dv=%d kv=%s q=%s o=%s ps=%d%s%s%s bs=%d k=%d sink=%d local=%d %s%s "
             "len=%d,%d,%d,%d",
             (unsigned long long)c->seed, c->B, c->Hkv, c->G, c->d, c->dv, dname(c->dkv), dname(c->dq), dname(c->dout),
             c->ps, c->ps ? (c->layout == AK_KV_NHD ? " NHD" : " HND") : "", c->csr ? " csr" : "",
             c->bshd ? " bshd" : "", c->prm.block, c->prm.topk, c->prm.sink, c->prm.local,
             c->prm.scoring ? "logit" : "key", c->use_index ? " index" : "", c->len[0], c->B > 1 ? c->len[1] : -1,
             c->B > 2 ? c->len[2] : -1, c->B > 3 ? c->len[3] : -1);
}

/* A random case; `dense` forces every length to <= n_full. */
static void random_case(kcase *c, uint64_t seed, int dense) {
    static const int Gs[] = {1, 3, 4, 5, 8, 12}, ds[] = {16, 40, 59, 64, 80, 128, 160}, pss[] = {0, 0, 1, 3, 16, 64};
    static const int bss[] = {1, 3, 7, 16, 16, 32}, ks[] = {1, 2, 5, 16}, sinks[] = {0, 4, 5, 20},
                     locs[] = {0, 1, 16, 33};
    static const ak_dtype kdt[] = {AK_F32, AK_BF16, AK_F16, AK_I8}, qdt[] = {AK_F32, AK_BF16, AK_F16};
    rng r = rng_seed(seed * 7919 + 13);
    memset(c, 0, sizeof *c);
    c->seed = seed;
    c->B = 1 + rng_int(&r, 3);
    c->Hkv = 1 + rng_int(&r, 2);
    c->G = rng_pick(&r, Gs, 6);
    c->d = rng_pick(&r, ds, 7);
    c->dv = rng_chance(&r, 0.7) ? c->d : rng_pick(&r, ds, 7);
    c->dkv = kdt[rng_int(&r, 4)];
    c->dq = qdt[rng_int(&r, 3)];
    c->dout = rng_chance(&r, 0.7) ? AK_F32 : qdt[rng_int(&r, 3)];
    c->ps = rng_pick(&r, pss, 6);
    c->layout = rng_chance(&r, 0.5) ? AK_KV_NHD : AK_KV_HND;
    c->csr = rng_chance(&r, 0.5);
    c->bshd = rng_chance(&r, 0.5);
    c->sinks = rng_chance(&r, 0.3);
    c->lse = rng_chance(&r, 0.7);
    c->use_index = rng_chance(&r, 0.5);
    c->scale = rng_chance(&r, 0.8) ? NAN : (float)rng_range(&r, 0.05, 0.5);
    ak_kinetics_params_init(&c->prm);
    c->prm.block = rng_pick(&r, bss, 6);
    c->prm.topk = rng_pick(&r, ks, 4);
    c->prm.sink = rng_pick(&r, sinks, 4);
    c->prm.local = rng_pick(&r, locs, 4);
    c->prm.scoring = rng_chance(&r, 0.3) ? AK_KINETICS_MEAN_LOGIT : AK_KINETICS_MEAN_KEY;
    int64_t nf = n_full_of(&c->prm);
    for (int b = 0; b < c->B; b++) {
        int64_t L;
        if (dense)
            L = rng_int(&r, (int)nf + 1);
        else if (rng_chance(&r, 0.15))
            L = rng_chance(&r, 0.5) ? 0 : 1 + rng_int(&r, (int)nf); /* empty or dense */
        else
            L = nf + 1 + rng_int(&r, (int)(nf * 3 + 400));
        if (L > 2500) L = 2500 - rng_int(&r, 7);
        if (!dense && L <= nf && rng_chance(&r, 0.5)) L = nf + 1;
        c->len[b] = (int32_t)L;
    }
}

/* ================================================================================================
 * Groups
 * ============================================================================================== */

/* Select + decode one case and check both; returns 0 if the environment could not be built. */
static int run_case(ak_ctx *ctx, const kcase *c, int vs_decode_ref) {
    char what[320];
    describe(c, what, sizeof what);
    if (g_verbose) printf("%s\n", what);
    kenv e;
    if (kenv_make(&e, c)) {
        CHECK(0, "%s: allocation", what);
        kenv_free(&e);
        return 0;
    }
    ak_kinetics_index *ix = c->use_index ? make_index(ctx, &e) : NULL;
    const int n_items = c->B * c->Hkv;
    int32_t *blocks = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n_items * c->prm.topk));
    int32_t counts[MAXB * 8];
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &c->prm, ix, NULL, blocks, counts), AK_OK);
    for (int b = 0; b < c->B; b++)
        for (int hk = 0; hk < c->Hkv; hk++)
            check_selection(&e, b, hk, counts[b * c->Hkv + hk], blocks + (size_t)(b * c->Hkv + hk) * c->prm.topk, what);
    ak_dyn_info info;
    ak_status st = ak_kinetics_decode(ctx, &e.desc, &e.t, &c->prm, ix, NULL, &info);
    CHECK(st == AK_OK, "%s: ak_kinetics_decode: %s (%s)", what, ak_status_string(st), ak_ctx_last_error(ctx));
    if (st == AK_OK) {
        check_output(&e, blocks, counts, what);
        CHECK(info.size == sizeof info && info.density > 0.0 && info.density <= 1.0 && strlen(info.explain) > 0,
              "%s: info (density %g)", what, info.density);
    }
    if (vs_decode_ref) { /* dense: the decode reference itself */
        tbuf o64, l64;
        int64_t os[4] = {c->B, c->Hkv * c->G, 1, c->dv}, ls[3] = {c->B, c->Hkv * c->G, 1};
        tbuf_make(&o64, AK_F64, 4, os, LAY_CONTIG, NULL);
        tbuf_make(&l64, AK_F64, 3, ls, LAY_CONTIG, NULL);
        ak_decode_tensors t2 = e.t;
        t2.o = o64.t;
        t2.lse = l64.t;
        ak_decode_desc d2 = e.desc;
        d2.dtype_o = AK_F64;
        d2.return_lse = 1;
        CHECK_STATUS(ak_decode_ref(ctx, &d2, &t2), AK_OK);
        for (int b = 0; b < c->B; b++) {
            CHECK(counts[b * c->Hkv] == -1, "%s: b=%d not dense", what, b);
            for (int h = 0; h < c->Hkv * c->G; h++) {
                double mref = 0.0, err = 0.0;
                for (int col = 0; col < c->dv; col++) {
                    double r = ten_get4(&o64.t, b, h, 0, col), x = ten_get4(&e.o.t, b, h, 0, col);
                    mref = fabs(r) > mref ? fabs(r) : mref;
                    err = !(fabs(x - r) <= err) ? (isnan(x) ? INFINITY : fabs(x - r)) : err;
                }
                CHECK(err <= out_tol(c->dout, mref), "%s: dense b=%d h=%d: |O - ak_decode_ref| = %.3g", what, b, h,
                      err);
                if (c->lse) {
                    double r = ten_get3(&l64.t, b, h, 0), x = ten_get3(&e.lse.t, b, h, 0);
                    CHECK(r == x || fabs(r - x) <= 1e-5 * (fabs(r) > 1.0 ? fabs(r) : 1.0), "%s: dense LSE %g vs %g",
                          what, x, r);
                }
            }
        }
        tbuf_free(&o64), tbuf_free(&l64);
    }
    free(blocks);
    ak_kinetics_index_destroy(ix);
    kenv_free(&e);
    return 1;
}

static void group_dense(ak_ctx *ctx) {
    int n = g_quick ? 8 : 30;
    for (int i = 0; i < n; i++) {
        kcase c;
        random_case(&c, 1000 + i, 1);
        run_case(ctx, &c, 1);
    }
    /* the budget at its maximum: a topk covering every block -> dense for every length */
    kcase c;
    random_case(&c, 77, 0);
    c.prm.topk = 2600;
    c.prm.block = 1;
    run_case(ctx, &c, 1);
}

static void group_exec(ak_ctx *ctx, int n_arg) {
    int n = n_arg > 0 ? n_arg : g_quick ? 25 : 80;
    for (int i = 0; i < n; i++) {
        kcase c;
        random_case(&c, 5000 + i, 0);
        run_case(ctx, &c, 0);
    }
}

static void group_select(ak_ctx *ctx) {
    /* explicit odd shapes: lengths 1, 17, 113, 300, 1023 with blocks that do not divide them, G 1, 3, 4 */
    static const int Ls[] = {1, 17, 113, 300, 1023}, Gs[] = {1, 3, 4}, bss[] = {3, 7, 16};
    int k = 0;
    for (int li = 0; li < 5; li++)
        for (int gi = 0; gi < 3; gi++)
            for (int bi = 0; bi < 3; bi++, k++) {
                if (g_quick && k % 3) continue;
                kcase c;
                random_case(&c, 9000 + k, 0);
                c.B = 2;
                c.G = Gs[gi];
                c.prm.block = bss[bi];
                c.prm.topk = 1 + k % 4;
                c.prm.sink = k % 2 ? 4 : 0;
                c.prm.local = k % 3 == 0 ? 5 : 16;
                c.len[0] = Ls[li];
                c.len[1] = Ls[li] + 1 + bss[bi];
                run_case(ctx, &c, 0);
            }
}

static void group_linearity(ak_ctx *ctx) {
    int n = g_quick ? 10 : 40;
    for (int i = 0; i < n; i++) {
        kcase c;
        random_case(&c, 20000 + i, 0);
        char what[320];
        describe(&c, what, sizeof what);
        kenv e;
        if (kenv_make(&e, &c)) {
            kenv_free(&e);
            continue;
        }
        ak_kinetics_index *ix = make_index(ctx, &e);
        const size_t nb = (size_t)(c.B * c.Hkv * c.prm.topk);
        int32_t *b0 = (int32_t *)malloc(4 * nb), *b1 = (int32_t *)malloc(4 * nb), *b2 = (int32_t *)malloc(4 * nb);
        int32_t n0[MAXB * 8], n1[MAXB * 8], n2[MAXB * 8];
        ak_kinetics_params p = c.prm;
        p.scoring = AK_KINETICS_MEAN_KEY;
        CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &p, NULL, NULL, b0, n0), AK_OK);
        CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &p, ix, NULL, b1, n1), AK_OK);
        p.scoring = AK_KINETICS_MEAN_LOGIT;
        CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &p, NULL, NULL, b2, n2), AK_OK);
        size_t ni = (size_t)(c.B * c.Hkv);
        CHECK(memcmp(b0, b1, 4 * nb) == 0 && memcmp(n0, n1, 4 * ni) == 0, "%s: index vs on-the-fly selection differ",
              what);
        CHECK(memcmp(b0, b2, 4 * nb) == 0 && memcmp(n0, n2, 4 * ni) == 0, "%s: mean-logit vs mean-key selection differ",
              what);
        free(b0), free(b1), free(b2);
        ak_kinetics_index_destroy(ix);
        kenv_free(&e);
    }
}

/* Incremental index (updates after random appends through ak_kv_append) vs one built at the end. */
static void index_case(ak_ctx *ctx, uint64_t seed, ak_dtype dt, int ps, ak_kv_layout layout, int bs, int use_slots) {
    rng r = rng_seed(seed);
    const int B = 3, Hkv = 2, d = 40, final_len[3] = {0, 37 + rng_int(&r, 40), 300 + rng_int(&r, 200)};
    char what[160];
    snprintf(what, sizeof what, "index seed=%llu %s ps=%d bs=%d slots=%d", (unsigned long long)seed, dname(dt), ps, bs,
             use_slots);
    tcache c;
    if (tc_create(&c, B, Hkv, d, d, dt, ps, layout, 0, 0, 520, &r)) {
        CHECK(0, "%s: allocation", what);
        tc_free(&c);
        return;
    }
    int32_t slots[3] = {2, 0, 4}; /* index slots of batch positions 0..2 */
    const int nslots = use_slots ? 5 : 3;
    ak_kinetics_index *inc = NULL, *full = NULL;
    CHECK_STATUS(ak_kinetics_index_create(ctx, nslots, Hkv, d, bs, &inc), AK_OK);
    float *kn = (float *)malloc(sizeof(float) * B * Hkv * 64 * d),
          *vn = (float *)malloc(sizeof(float) * B * Hkv * 64 * d);
    int done = 0;
    while (!done && inc) {
        int32_t nn[3];
        done = 1;
        int n = 1 + rng_int(&r, rng_chance(&r, 0.5) ? 3 : 64);
        for (int b = 0; b < B; b++) {
            int left = final_len[b] - c.len[b];
            nn[b] = left < n ? left : n;
            if (nn[b] > 0 && rng_chance(&r, 0.2)) nn[b] = 0;
            done &= c.len[b] + nn[b] == final_len[b];
        }
        for (int i = 0; i < B * Hkv * n * d; i++)
            kn[i] = (float)rng_range(&r, -1.0, 1.0), vn[i] = (float)rng_range(&r, -1, 1);
        ak_tensor kt = ak_tensor_4d(kn, AK_F32, B, Hkv, n, d), vt = ak_tensor_4d(vn, AK_F32, B, Hkv, n, d);
        tc_desc(&c);
        if (ps > 0)
            c.desc.kv_indptr = NULL, c.desc.seqlens = c.len, c.desc.block_table = c.bt,
            c.desc.max_pages_per_seq = c.maxp;
        CHECK_STATUS(ak_kv_append(ctx, &c.desc, &c.t, &kt, &vt, nn), AK_OK);
        for (int b = 0; b < B; b++) c.len[b] += nn[b];
        tc_desc(&c);
        CHECK_STATUS(ak_kinetics_index_update(inc, &c.desc, &c.t, use_slots ? slots : NULL), AK_OK);
    }
    CHECK_STATUS(ak_kinetics_index_create(ctx, nslots, Hkv, d, bs, &full), AK_OK);
    if (full) CHECK_STATUS(ak_kinetics_index_update(full, &c.desc, &c.t, use_slots ? slots : NULL), AK_OK);
    for (int b = 0; b < B && inc && full; b++) {
        int32_t s = use_slots ? slots[b] : b, n1 = -1, n2 = -2;
        CHECK_STATUS(ak_kinetics_index_blocks(inc, s, &n1), AK_OK);
        CHECK_STATUS(ak_kinetics_index_blocks(full, s, &n2), AK_OK);
        CHECK(n1 == c.len[b] / bs && n2 == n1, "%s b=%d: blocks %d / %d, expected %d", what, b, n1, n2, c.len[b] / bs);
        for (int h = 0; h < Hkv; h++)
            for (int p = 0; p < n1 && n2 == n1; p++) {
                float m1[MAXD], m2[MAXD];
                CHECK_STATUS(ak_kinetics_index_mean(inc, s, h, p, m1), AK_OK);
                CHECK_STATUS(ak_kinetics_index_mean(full, s, h, p, m2), AK_OK);
                CHECK(memcmp(m1, m2, sizeof(float) * d) == 0, "%s b=%d h=%d block %d: incremental != recomputed", what,
                      b, h, p);
                for (int col = 0; col < d; col++) {
                    double a = 0.0, mx = 0.0;
                    for (int j = 0; j < bs; j++) {
                        double x = tc_get(&c, 0, b, h, (int64_t)p * bs + j, col);
                        a += x;
                        mx = fabs(x) > mx ? fabs(x) : mx;
                    }
                    CHECK(fabs(m1[col] - a / bs) <= 1e-6 * (mx + 1e-30),
                          "%s b=%d h=%d block %d col %d: mean %.9g vs %.9g", what, b, h, p, col, m1[col], a / bs);
                }
            }
    }
    /* decode with the index (slots) == on the fly; a stale index is refused */
    if (inc) {
        const int Hq = Hkv * 2;
        tbuf q, o1, o2;
        int64_t qs[4] = {B, Hq, 1, d};
        tbuf_make(&q, AK_F32, 4, qs, LAY_CONTIG, NULL);
        tbuf_make(&o1, AK_F32, 4, qs, LAY_CONTIG, NULL);
        tbuf_make(&o2, AK_F32, 4, qs, LAY_CONTIG, NULL);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < Hq; h++)
                for (int col = 0; col < d; col++) ten_set4(&q.t, b, h, 0, col, rng_range(&r, -1, 1));
        ak_decode_desc dd;
        ak_decode_desc_init(&dd);
        dd.num_heads_q = Hq;
        dd.kv = c.desc;
        ak_decode_tensors t;
        ak_decode_tensors_init(&t);
        t.q = q.t, t.o = o1.t, t.kv = c.t;
        ak_kinetics_params p;
        ak_kinetics_params_init(&p);
        p.block = bs, p.topk = 3, p.local = 8;
        CHECK_STATUS(ak_kinetics_decode(ctx, &dd, &t, &p, inc, use_slots ? slots : NULL, NULL), AK_OK);
        t.o = o2.t;
        CHECK_STATUS(ak_kinetics_decode(ctx, &dd, &t, &p, NULL, NULL, NULL), AK_OK);
        CHECK(tbuf_same_bytes(&o1, &o2), "%s: decode with the index != on the fly", what);
        /* one more token in sequence 2 without an update: stale */
        int32_t nn[3] = {0, 0, bs};
        ak_tensor kt = ak_tensor_4d(kn, AK_F32, B, Hkv, bs, d), vt = ak_tensor_4d(vn, AK_F32, B, Hkv, bs, d);
        tc_desc(&c);
        if (ps > 0)
            c.desc.kv_indptr = NULL, c.desc.seqlens = c.len, c.desc.block_table = c.bt,
            c.desc.max_pages_per_seq = c.maxp;
        CHECK_STATUS(ak_kv_append(ctx, &c.desc, &c.t, &kt, &vt, nn), AK_OK);
        c.len[2] += bs;
        tc_desc(&c);
        dd.kv = c.desc;
        t.o = o1.t;
        CHECK_STATUS(ak_kinetics_decode(ctx, &dd, &t, &p, inc, use_slots ? slots : NULL, NULL),
                     AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_kinetics_index_update(inc, &c.desc, &c.t, use_slots ? slots : NULL), AK_OK);
        CHECK_STATUS(ak_kinetics_decode(ctx, &dd, &t, &p, inc, use_slots ? slots : NULL, NULL), AK_OK);
        /* a shorter sequence in a slot: refused until the slot is reset */
        c.len[2] -= 2 * bs;
        tc_desc(&c);
        CHECK_STATUS(ak_kinetics_index_update(inc, &c.desc, &c.t, use_slots ? slots : NULL), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_kinetics_index_reset(inc, use_slots ? slots[2] : 2), AK_OK);
        CHECK_STATUS(ak_kinetics_index_update(inc, &c.desc, &c.t, use_slots ? slots : NULL), AK_OK);
        int32_t nb = -1;
        CHECK_STATUS(ak_kinetics_index_blocks(inc, use_slots ? slots[2] : 2, &nb), AK_OK);
        CHECK(nb == c.len[2] / bs, "%s: blocks after reset %d, expected %d", what, nb, c.len[2] / bs);
        tbuf_free(&q), tbuf_free(&o1), tbuf_free(&o2);
    }
    free(kn), free(vn);
    ak_kinetics_index_destroy(inc);
    ak_kinetics_index_destroy(full);
    tc_free(&c);
}

static void group_index(ak_ctx *ctx) {
    static const ak_dtype dts[] = {AK_F32, AK_BF16, AK_F16, AK_I8};
    static const int pss[] = {0, 1, 3, 16}, bss[] = {1, 3, 16};
    int k = 0;
    for (int di = 0; di < 4; di++)
        for (int pi = 0; pi < 4; pi++, k++) {
            if (g_quick && k % 2) continue;
            index_case(ctx, 300 + k, dts[di], pss[pi], k % 2 ? AK_KV_HND : AK_KV_NHD, bss[k % 3], k % 3 == 1);
        }
}

/* Planted blocks: their keys point along the group's mean query; they must be chosen and carry the mass. */
static void group_planted(ak_ctx *ctx) {
    int n = g_quick ? 4 : 12;
    for (int i = 0; i < n; i++) {
        kcase c;
        random_case(&c, 40000 + i, 0);
        c.dkv = i % 2 ? AK_BF16 : AK_F32;
        c.prm.scoring = i % 3 == 0 ? AK_KINETICS_MEAN_LOGIT : AK_KINETICS_MEAN_KEY;
        c.prm.topk = 4;
        c.sinks = 0;
        for (int b = 0; b < c.B; b++) c.len[b] = 1500 + 97 * b;
        char what[320];
        describe(&c, what, sizeof what);
        kenv e;
        if (kenv_make(&e, &c)) {
            kenv_free(&e);
            continue;
        }
        rng r = rng_seed(c.seed);
        int32_t planted[MAXB][8][4];
        for (int b = 0; b < c.B; b++)
            for (int hk = 0; hk < c.Hkv; hk++) {
                /* the group's queries share a direction u; the planted keys are A u with scale * A |u|^2 = 16 */
                int64_t c0, c1;
                cand_range(c.len[b], &c.prm, &c0, &c1);
                double u[MAXD], nrm = 0.0;
                for (int col = 0; col < c.d; col++) {
                    u[col] = rng_range(&r, -1.0, 1.0);
                    nrm += u[col] * u[col];
                }
                for (int g = 0; g < c.G; g++)
                    for (int col = 0; col < c.d; col++)
                        ten_set4(&e.q.t, b, hk * c.G + g, 0, col, u[col] + 0.1 * rng_range(&r, -1.0, 1.0));
                const double A = 16.0 / (e.scale * nrm);
                int np = 1 + rng_int(&r, 3);
                for (int t = 0; t < 4; t++) planted[b][hk][t] = -1;
                for (int t = 0; t < np; t++) {
                    int32_t p;
                    int dup;
                    do {
                        p = (int32_t)(c0 + rng_int(&r, (int)(c1 - c0)));
                        dup = 0;
                        for (int v = 0; v < t; v++) dup |= planted[b][hk][v] == p;
                    } while (dup);
                    planted[b][hk][t] = p;
                    for (int64_t j = (int64_t)p * c.prm.block; j < (int64_t)(p + 1) * c.prm.block; j++) {
                        double a = A * (1.0 + 0.05 * rng_unif(&r));
                        for (int col = 0; col < c.d; col++)
                            put(e.kv.t.k.data, c.dkv, tc_off(&e.kv, &e.kv.t.k, b, hk, j, col, 4), a * u[col]);
                    }
                }
            }
        kenv_snapshot(&e);
        const int n_items = c.B * c.Hkv;
        int32_t *blocks = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n_items * c.prm.topk)), counts[MAXB * 8];
        ak_kinetics_index *ix = c.use_index ? make_index(ctx, &e) : NULL;
        CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &c.prm, ix, NULL, blocks, counts), AK_OK);
        for (int b = 0; b < c.B; b++)
            for (int hk = 0; hk < c.Hkv; hk++) {
                int it = b * c.Hkv + hk;
                for (int t = 0; t < 4 && planted[b][hk][t] >= 0; t++) {
                    int found = 0;
                    for (int u = 0; u < counts[it]; u++) found |= blocks[it * c.prm.topk + u] == planted[b][hk][t];
                    CHECK(found, "%s b=%d hk=%d: planted block %d not chosen", what, b, hk, planted[b][hk][t]);
                }
                /* recall of the attended set under the dense softmax, per query head */
                int64_t L = c.len[b];
                uint8_t *mask = (uint8_t *)malloc((size_t)L);
                attended(L, &c.prm, counts[it], blocks + (size_t)it * c.prm.topk, mask);
                for (int g = 0; g < c.G; g++) {
                    int h = hk * c.G + g;
                    double *s = (double *)malloc(sizeof(double) * (size_t)L), mx = -INFINITY, tot = 0.0, in = 0.0;
                    for (int64_t j = 0; j < L; j++) {
                        double dot = 0.0;
                        for (int col = 0; col < c.d; col++) dot += qval(&e, b, h, col) * krow(&e, b, hk, j)[col];
                        s[j] = e.scale * dot;
                        mx = s[j] > mx ? s[j] : mx;
                    }
                    for (int64_t j = 0; j < L; j++) {
                        double w = exp(s[j] - mx);
                        tot += w;
                        if (mask[j]) in += w;
                    }
                    CHECK(in / tot >= 0.99, "%s b=%d h=%d: recall %.4f < 0.99", what, b, h, in / tot);
                    free(s);
                }
                free(mask);
            }
        /* the selection itself against the brute force (exact ties included) */
        for (int b = 0; b < c.B; b++)
            for (int hk = 0; hk < c.Hkv; hk++)
                check_selection(&e, b, hk, counts[b * c.Hkv + hk], blocks + (size_t)(b * c.Hkv + hk) * c.prm.topk,
                                what);
        free(blocks);
        ak_kinetics_index_destroy(ix);
        kenv_free(&e);
    }
    /* exact ties: all keys equal -> every score equal -> the lowest candidate ids win */
    kcase c;
    random_case(&c, 41000, 0);
    c.dkv = AK_F32, c.B = 1, c.len[0] = 700, c.prm.scoring = AK_KINETICS_MEAN_KEY, c.use_index = 0;
    kenv e;
    rng r = rng_seed(5);
    if (kenv_make(&e, &c) == 0) {
        for (int h = 0; h < c.Hkv * c.G; h++) /* dyadic values: every sum is exact in any order */
            for (int col = 0; col < c.d; col++) ten_set4(&e.q.t, 0, h, 0, col, (double)(rng_int(&r, 17) - 8) / 8.0);
        for (int hk = 0; hk < c.Hkv; hk++)
            for (int64_t j = 0; j < c.len[0]; j++)
                for (int col = 0; col < c.d; col++)
                    put(e.kv.t.k.data, AK_F32, tc_off(&e.kv, &e.kv.t.k, 0, hk, j, col, 4), 0.25);
        int32_t *blocks = (int32_t *)malloc(sizeof(int32_t) * (size_t)(c.Hkv * c.prm.topk)), counts[8];
        CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &c.prm, NULL, NULL, blocks, counts), AK_OK);
        int64_t c0, c1;
        cand_range(c.len[0], &c.prm, &c0, &c1);
        for (int hk = 0; hk < c.Hkv; hk++)
            for (int u = 0; u < c.prm.topk && u < counts[hk]; u++)
                CHECK(blocks[hk * c.prm.topk + u] == c0 + u, "ties: block %d chosen at %d, expected %lld",
                      blocks[hk * c.prm.topk + u], u, (long long)(c0 + u));
        free(blocks);
    }
    kenv_free(&e);
}

static void group_threads(ak_ctx *ctx) {
    int n = g_quick ? 3 : 8;
    for (int i = 0; i < n; i++) {
        kcase c;
        random_case(&c, 60000 + i, 0);
        c.B = 3, c.Hkv = 2;
        c.len[2] = 2000 - i;
        c.prm.scoring = i % 2 ? AK_KINETICS_MEAN_LOGIT : AK_KINETICS_MEAN_KEY;
        c.lse = 1;
        kenv e;
        if (kenv_make(&e, &c)) {
            kenv_free(&e);
            continue;
        }
        ak_kinetics_index *ix = i % 3 == 0 ? make_index(ctx, &e) : NULL;
        tbuf o0, l0;
        int32_t *b0 = (int32_t *)malloc(sizeof(int32_t) * (size_t)(6 * c.prm.topk)), n0[6];
        int32_t *b1 = (int32_t *)malloc(sizeof(int32_t) * (size_t)(6 * c.prm.topk)), n1[6];
        for (int nt = 1; nt <= 3; nt++) {
            ak_ctx_set_num_threads(ctx, nt);
            tbuf_poison(&e.o), tbuf_poison(&e.lse);
            CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, ix, NULL, NULL), AK_OK);
            CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &c.prm, ix, NULL, nt == 1 ? b0 : b1, nt == 1 ? n0 : n1),
                         AK_OK);
            if (nt == 1) {
                tbuf_make_like(&o0, &e.o), tbuf_make_like(&l0, &e.lse);
                memcpy(o0.mem, e.o.mem, o0.mem_elems * o0.esize);
                memcpy(l0.mem, e.lse.mem, l0.mem_elems * l0.esize);
            } else {
                CHECK(tbuf_same_bytes(&o0, &e.o) && tbuf_same_bytes(&l0, &e.lse),
                      "seed %llu: O / LSE differ at %d threads", (unsigned long long)c.seed, nt);
                CHECK(memcmp(b0, b1, sizeof(int32_t) * (size_t)(6 * c.prm.topk)) == 0 && memcmp(n0, n1, sizeof n0) == 0,
                      "seed %llu: selection differs at %d threads", (unsigned long long)c.seed, nt);
            }
        }
        ak_ctx_set_num_threads(ctx, 2);
        tbuf_free(&o0), tbuf_free(&l0);
        free(b0), free(b1);
        ak_kinetics_index_destroy(ix);
        kenv_free(&e);
    }
}

static void group_invalid(ak_ctx *ctx) {
    kcase c;
    random_case(&c, 70000, 0);
    c.B = 2, c.Hkv = 2, c.G = 2, c.d = c.dv = 16, c.dkv = AK_F32, c.dq = c.dout = AK_F32, c.len[0] = 400, c.len[1] = 90;
    c.lse = 1, c.sinks = 0;
    ak_kinetics_params_init(&c.prm);
    c.prm.block = 16, c.prm.topk = 3, c.prm.local = 16;
    kenv e;
    if (kenv_make(&e, &c)) {
        CHECK(0, "invalid: allocation");
        kenv_free(&e);
        return;
    }
    int32_t blocks[64], counts[8];
    ak_kinetics_params p;
#define BAD_PARAM(field, value)                                                                                        \
    p = c.prm;                                                                                                         \
    p.field = value;                                                                                                   \
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &p, NULL, NULL, NULL), AK_ERR_INVALID_ARGUMENT);               \
    CHECK(strstr(ak_ctx_last_error(ctx), #field) != NULL, "message '%s' does not name %s", ak_ctx_last_error(ctx),     \
          #field);                                                                                                     \
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &p, NULL, NULL, blocks, counts), AK_ERR_INVALID_ARGUMENT)
    BAD_PARAM(topk, 0);
    BAD_PARAM(topk, -3);
    BAD_PARAM(block, 0);
    BAD_PARAM(block, -16);
    BAD_PARAM(sink, -1);
    BAD_PARAM(local, -1);
    BAD_PARAM(scoring, 2);
    BAD_PARAM(scoring, -1);
#undef BAD_PARAM
    CHECK(tbuf_outside_untouched(&e.o), "invalid: O memory touched");
    for (int h = 0; h < 4; h++) CHECK(isnan(ten_get4(&e.o.t, 0, h, 0, 0)), "invalid params: O written");
    /* descriptor options the method does not define */
    ak_decode_desc d;
#define BAD_DESC(stmt, status)                                                                                         \
    d = e.desc;                                                                                                        \
    stmt;                                                                                                              \
    CHECK_STATUS(ak_kinetics_decode(ctx, &d, &e.t, &c.prm, NULL, NULL, NULL), status)
    BAD_DESC(d.q_len = 2, AK_ERR_INVALID_ARGUMENT);
    int32_t qo[3] = {0, 1, 2};
    BAD_DESC(d.qo_indptr = qo, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.prefix = &e.kv.desc, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.window_left = 5, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.window_right = 0, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.softcap = 30.0f, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.has_alibi = 1, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.num_heads_q = 3, AK_ERR_GQA_RATIO);
    BAD_DESC(d.size = 0, AK_ERR_INVALID_ARGUMENT);
    BAD_DESC(d.kv.seqlens = NULL, AK_ERR_BAD_METADATA);
    BAD_DESC(d.dtype_q = AK_BF16, AK_ERR_PLAN_MISMATCH);
    BAD_DESC(d.causal = 1, AK_OK); /* no effect at q_len 1 */
#undef BAD_DESC
    CHECK_STATUS(ak_kinetics_decode(NULL, &e.desc, &e.t, &c.prm, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_decode(ctx, NULL, &e.t, &c.prm, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, NULL, &c.prm, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &c.prm, NULL, NULL, NULL, counts), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &e.t, &c.prm, NULL, NULL, blocks, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, NULL, NULL, NULL, NULL), AK_OK); /* defaults */
    /* tensors */
    ak_decode_tensors t = e.t;
    t.o.shape[3] = 7;
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &t, &c.prm, NULL, NULL, NULL), AK_ERR_SHAPE_MISMATCH);
    t = e.t;
    t.q.shape[2] = 2;
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &t, &c.prm, NULL, NULL, blocks, counts), AK_ERR_SHAPE_MISMATCH);
    t = e.t;
    t.kv.k.dtype = AK_BF16;
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &t, &c.prm, NULL, NULL, blocks, counts), AK_ERR_PLAN_MISMATCH);
    t = e.t;
    t.size = 0;
    CHECK_STATUS(ak_kinetics_select(ctx, &e.desc, &t, &c.prm, NULL, NULL, blocks, counts), AK_ERR_INVALID_ARGUMENT);
    /* the index */
    ak_kinetics_index *ix = NULL;
    CHECK_STATUS(ak_kinetics_index_create(ctx, 0, 2, 16, 16, &ix), AK_ERR_INVALID_ARGUMENT);
    CHECK(ix == NULL, "index: *out not NULL after a failure");
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 0, 16, 16, &ix), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 2, 0, 16, &ix), AK_ERR_HEAD_DIM);
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 2, 16, 0, &ix), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 2, 16, 16, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_index_create(NULL, 2, 2, 16, 16, &ix), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_index_update(NULL, &e.kv.desc, &e.kv.t, NULL), AK_ERR_NULL_POINTER);
    ak_kinetics_index *i8 = NULL, *wrong_bs = NULL, *wrong_h = NULL;
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 2, 16, 16, &ix), AK_OK);
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 2, 16, 8, &wrong_bs), AK_OK);
    CHECK_STATUS(ak_kinetics_index_create(ctx, 2, 1, 16, 16, &wrong_h), AK_OK);
    CHECK_STATUS(ak_kinetics_index_create(ctx, 1, 2, 16, 16, &i8), AK_OK);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, ix, NULL, NULL), AK_ERR_INVALID_ARGUMENT); /* stale */
    CHECK_STATUS(ak_kinetics_index_update(ix, &e.kv.desc, &e.kv.t, NULL), AK_OK);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, ix, NULL, NULL), AK_OK);
    CHECK_STATUS(ak_kinetics_index_update(wrong_h, &e.kv.desc, &e.kv.t, NULL), AK_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(ak_kinetics_index_update(wrong_bs, &e.kv.desc, &e.kv.t, NULL), AK_OK);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, wrong_bs, NULL, NULL), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, wrong_h, NULL, NULL), AK_ERR_INVALID_ARGUMENT);
    p = c.prm;
    p.scoring = AK_KINETICS_MEAN_LOGIT; /* ignores the index */
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &p, wrong_bs, NULL, NULL), AK_OK);
    CHECK_STATUS(ak_kinetics_index_update(i8, &e.kv.desc, &e.kv.t, NULL), AK_ERR_INVALID_ARGUMENT); /* slot 1 >= 1 */
    int32_t dup[2] = {1, 1}, neg[2] = {0, -1}, okslots[2] = {1, 0};
    CHECK_STATUS(ak_kinetics_index_update(ix, &e.kv.desc, &e.kv.t, dup), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_update(ix, &e.kv.desc, &e.kv.t, neg), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, ix, neg, NULL), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_decode(ctx, &e.desc, &e.t, &c.prm, ix, okslots, NULL),
                 AK_ERR_INVALID_ARGUMENT); /* swapped */
    CHECK_STATUS(ak_kinetics_index_reset(ix, 2), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_reset(NULL, 0), AK_ERR_NULL_POINTER);
    int32_t nb;
    float mean[16];
    CHECK_STATUS(ak_kinetics_index_blocks(ix, 5, &nb), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_blocks(ix, 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_index_mean(ix, 0, 0, 400 / 16, mean), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_mean(ix, 0, 2, 0, mean), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kinetics_index_mean(ix, 0, 0, 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kinetics_index_mean(ix, 0, 0, 400 / 16 - 1, mean), AK_OK);
    ak_kinetics_index_destroy(ix);
    ak_kinetics_index_destroy(wrong_bs);
    ak_kinetics_index_destroy(wrong_h);
    ak_kinetics_index_destroy(i8);
    ak_kinetics_index_destroy(NULL);
    kenv_free(&e);
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_KINETICS_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_KINETICS_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_kinetics: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    int any = 0;
#define GROUP(name, call)                                                                                              \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                                       \
        double t0_ = tu_now();                                                                                         \
        call;                                                                                                          \
        any = 1;                                                                                                       \
        printf("group %s: %.2f s\n", name, tu_now() - t0_);                                                            \
    }
    GROUP("dense", group_dense(ctx))
    GROUP("select", group_select(ctx))
    GROUP("linearity", group_linearity(ctx))
    GROUP("exec", group_exec(ctx, argc > 2 ? atoi(argv[2]) : 0))
    GROUP("index", group_index(ctx))
    GROUP("planted", group_planted(ctx))
    GROUP("threads", group_threads(ctx))
    GROUP("invalid", group_invalid(ctx))
#undef GROUP
    ak_ctx_destroy(ctx);
    if (!any) {
        fprintf(stderr, "unknown group '%s'\n", group);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "test_dyn_kinetics %s", group);
    return tc_finish(name);
}
