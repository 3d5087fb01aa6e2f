/*
 * test_patterns.c — the structured sparse-pattern builders of attnkit.h: sliding window with sinks
 * (token-exact, dilated, block-granular), strided (Sparse Transformer), PowerAttention, document
 * (block-diagonal) and user block masks.
 *
 * Groups (`test_patterns <group>`, no argument = all):
 *   mask     every builder's ak_sparse_mask against a mask function written in this file straight from
 *            the spec formulas (structured-sparse.md §3.3, §6.4; attnkit.h), over random shapes: odd
 *            lengths, nq != nk (chunked prefill, decode, nq > nk), random parameters; plus the plan's
 *            geometry (heads, causal flag, block_q, name, block-aligned spans, merged block-mask
 *            spans) and, for the position-based patterns, rows of an (nq, nk) plan = the last nq rows
 *            of the (nk, nk) plan
 *   hand     small worked examples with literal masks (N = 12, a few nq != nk), checked by hand
 *   power    structured-sparse.md §3.7: N <= W*bs is dense causal; block count of every query block
 *            m < 4096 (exact count and the §3.5 bound); BFS over the plan's blocks: every earlier block
 *            reachable within ceil(log2 M) hops for every M <= 4096 (W = 1: within popcount(distance)
 *            hops); token-level receptive field: the last token of every sequence reaches every
 *            earlier token within ceil(log2(blocks)) layers; sinks visible to every query; decode row
 *            = last prefill row; also window >= N and strided local >= N equal causal
 *   exec     the sparse executor (ak_plan_create_sparse + ak_attention_run) on every pattern against
 *            ak_attention_ref_sparse (f64 outputs, itself checked against this file's double masked
 *            reference) with the accuracy rule of tests/README.md (err <= 2 * err(naive fp32, masked)
 *            + floor), NaN-poisoned outputs, f32 and bf16, GQA, sinks, desc masks intersected,
 *            threads 1 and 2 bitwise identical; decode output = last prefill row
 *   invalid  every invalid parameter returns its status with a message naming it, *out = NULL
 *
 * AK_PATTERNS_QUICK=1 (sanitizer builds) runs fewer cases; AK_PATTERNS_VERBOSE=1 prints per case.
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

/* ---- the patterns and their masks, from the spec ------------------------------------------ */

typedef enum pkind { K_WINDOW, K_STRIDED, K_POWER, K_DOCUMENT, K_BLOCKMASK, K_COUNT } pkind;
static const char *const kind_name[K_COUNT] = {"window", "strided", "power", "document", "block_mask"};

#define MAXDOCS 40

typedef struct pat {
    pkind kind;
    int32_t nq, nk;
    ak_window_params w;
    ak_strided_params s;
    ak_power_params pw;
    int32_t n_docs, doc_off[MAXDOCS + 1]; /* document (nq = nk) */
    int32_t causal, block_q;              /* document, block mask */
    int32_t n_heads, block_k;             /* block mask */
    uint8_t *bmask;                       /* block mask [n_heads][n_qb][n_kb], owned (free_pat) */
} pat;

static void free_pat(pat *P) {
    free(P->bmask);
    P->bmask = NULL;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int doc_of(const pat *P, int64_t t) {
    for (int d = 0; d < P->n_docs; d++)
        if (P->doc_off[d] <= t && t < P->doc_off[d + 1])
            return d;
    return -1;
}

/* Does row i (plan head h) see key j? Written from the formulas, nothing shared with the library. */
static int allowed(const pat *P, int h, int64_t i, int64_t j) {
    int64_t p = i + P->nk - P->nq; /* the row's absolute position (bottom-right) */
    switch (P->kind) {
    case K_WINDOW: { /* sinks + keys p-w+1..p; dilated: p - r*t; blocks: key blocks M-w/b+1..M */
        const ak_window_params *w = &P->w;
        if (j > p)
            return 0;
        if (j < w->n_sink)
            return 1;
        if (w->block > 0)
            return p / w->block - j / w->block < w->window / w->block;
        return (p - j) % w->dilation == 0 && (p - j) / w->dilation < w->window;
    }
    case K_STRIDED:
        return j <= p && (j < P->s.n_sink || p - j < P->s.local || (p - j) % P->s.stride == 0);
    case K_POWER: { /* structured-sparse.md §3.3 with i = the row's position */
        if (!(j <= p))
            return 0;
        int64_t bs = P->pw.block, D = p / bs - j / bs;
        return j < bs || D < P->pw.window || (D & (D - 1)) == 0;
    }
    case K_DOCUMENT:
        return doc_of(P, i) == doc_of(P, j) && (!P->causal || j <= i);
    case K_BLOCKMASK: {
        int64_t nqb = cdiv(P->nq, P->block_q), nkb = cdiv(P->nk, P->block_k);
        return P->bmask[((int64_t)h * nqb + i / P->block_q) * nkb + j / P->block_k] && (!P->causal || j <= p);
    }
    default:
        return 0;
    }
}

static int plan_heads(const pat *P) { return P->kind == K_BLOCKMASK ? P->n_heads : 1; }

static ak_status build(ak_ctx *ctx, const pat *P, ak_sparse **sp) {
    switch (P->kind) {
    case K_WINDOW: return ak_sparse_window(ctx, P->nq, P->nk, &P->w, sp);
    case K_STRIDED: return ak_sparse_strided(ctx, P->nq, P->nk, &P->s, sp);
    case K_POWER: return ak_sparse_power(ctx, P->nq, P->nk, &P->pw, sp);
    case K_DOCUMENT: return ak_sparse_document(ctx, P->nq, P->doc_off, P->n_docs, P->causal, P->block_q, sp);
    case K_BLOCKMASK:
        return ak_sparse_block_mask(ctx, P->nq, P->nk, P->n_heads, P->block_q, P->block_k, P->bmask, P->causal, sp);
    default: return AK_ERR_INTERNAL;
    }
}

static void expected_name(const pat *P, char *buf, size_t n) {
    switch (P->kind) {
    case K_WINDOW: {
        int k = snprintf(buf, n, "window(w=%d,sink=%d", P->w.window, P->w.n_sink);
        if (P->w.dilation > 1)
            k += snprintf(buf + k, n - (size_t)k, ",dil=%d", P->w.dilation);
        if (P->w.block > 0)
            k += snprintf(buf + k, n - (size_t)k, ",block=%d", P->w.block);
        snprintf(buf + k, n - (size_t)k, ")");
        break;
    }
    case K_STRIDED: snprintf(buf, n, "strided(local=%d,stride=%d,sink=%d)", P->s.local, P->s.stride, P->s.n_sink); break;
    case K_POWER: snprintf(buf, n, "power(bs=%d,w=%d)", P->pw.block, P->pw.window); break;
    case K_DOCUMENT: snprintf(buf, n, "document(docs=%d%s)", P->n_docs, P->causal ? ",causal" : ""); break;
    case K_BLOCKMASK:
        snprintf(buf, n, "block_mask(heads=%d,bq=%d,bk=%d%s)", P->n_heads, P->block_q, P->block_k, P->causal ? ",causal" : "");
        break;
    default: buf[0] = 0;
    }
}

static void describe(const pat *P, char *buf, size_t n) {
    char nm[160];
    expected_name(P, nm, sizeof nm);
    int k = snprintf(buf, n, "%s nq=%d nk=%d", nm, P->nq, P->nk);
    if (P->kind == K_WINDOW && P->w.block == 0)
        k += snprintf(buf + k, n - (size_t)k, " block_q=%d", P->w.block_q);
    if (P->kind == K_STRIDED)
        k += snprintf(buf + k, n - (size_t)k, " block_q=%d", P->s.block_q);
    if (P->kind == K_DOCUMENT) {
        k += snprintf(buf + k, n - (size_t)k, " block_q=%d doc_off={", P->block_q);
        for (int d = 0; d <= P->n_docs && k < (int)n - 8; d++)
            k += snprintf(buf + k, n - (size_t)k, "%s%d", d ? "," : "", P->doc_off[d]);
        snprintf(buf + k, n - (size_t)k, "}");
    }
}

/* ---- random patterns ----------------------------------------------------------------------- */

static const int k_lens[] = {0, 1, 2, 3, 5, 7, 12, 16, 17, 31, 32, 33, 64, 65, 100, 113, 127, 128, 129, 203, 256, 300};
#define NLENS ((int)(sizeof k_lens / sizeof k_lens[0]))

static void random_shape(rng *r, int32_t maxlen, int32_t *nq, int32_t *nk) {
    int32_t k = rng_chance(r, 0.7) ? rng_pick(r, k_lens, NLENS) : 1 + rng_int(r, 300);
    if (k > maxlen)
        k = rng_int(r, maxlen + 1);
    int32_t q;
    double u = rng_unif(r);
    if (u < 0.4)
        q = k; /* self-attention */
    else if (u < 0.5)
        q = 1; /* decode */
    else if (u < 0.85)
        q = rng_int(r, k + 1); /* chunked prefill */
    else
        q = 1 + rng_int(r, maxlen); /* anything, including nq > nk */
    *nq = q, *nk = k;
}

static void random_params(rng *r, pkind kind, pat *P) {
    static const int wins[] = {1, 2, 3, 5, 8, 16, 31, 64, 100, 1000};
    static const int sinks[] = {0, 0, 1, 2, 4, 7, 50};
    static const int dils[] = {2, 3, 5};
    static const int blocks[] = {1, 2, 3, 4, 5, 8, 16, 32, 64};
    static const int bqs[] = {1, 3, 16, 64, 128};
    switch (kind) {
    case K_WINDOW:
        ak_window_params_init(&P->w);
        P->w.window = rng_pick(r, wins, 10);
        P->w.n_sink = rng_pick(r, sinks, 7);
        P->w.block_q = rng_pick(r, bqs, 5);
        if (rng_chance(r, 0.4)) { /* block-granular */
            P->w.block = rng_pick(r, blocks, 9);
            P->w.window = P->w.block * (1 + rng_int(r, 6));
        } else if (rng_chance(r, 0.4)) {
            P->w.dilation = rng_pick(r, dils, 3);
        }
        break;
    case K_STRIDED: {
        static const int locs[] = {1, 2, 3, 8, 17, 64}, strides[] = {1, 2, 3, 4, 7, 16, 64};
        ak_strided_params_init(&P->s);
        P->s.local = rng_pick(r, locs, 6);
        P->s.stride = rng_pick(r, strides, 7);
        P->s.n_sink = rng_pick(r, sinks, 7);
        P->s.block_q = rng_pick(r, bqs, 5);
        break;
    }
    case K_POWER: {
        static const int pbs[] = {1, 2, 3, 4, 8, 16, 64}, pws[] = {1, 2, 3, 4, 5, 8};
        ak_power_params_init(&P->pw);
        P->pw.block = rng_pick(r, pbs, 7);
        P->pw.window = rng_pick(r, pws, 6);
        break;
    }
    case K_DOCUMENT: {
        static const int dbq[] = {1, 2, 4, 8, 16, 64};
        int32_t n = P->nq;
        P->causal = rng_int(r, 2);
        P->block_q = rng_pick(r, dbq, 6);
        P->n_docs = n == 0 ? rng_int(r, 3) : 1 + rng_int(r, 12);
        int aligned = rng_chance(r, 0.3);
        P->doc_off[0] = 0;
        for (int d = 1; d < P->n_docs; d++) {
            int32_t c = rng_int(r, n + 1);
            if (aligned)
                c = c / P->block_q * P->block_q;
            P->doc_off[d] = c;
        }
        P->doc_off[P->n_docs] = n;
        for (int a = 1; a < P->n_docs; a++) /* sort the cuts */
            for (int b = a; b > 0 && P->doc_off[b] < P->doc_off[b - 1]; b--) {
                int32_t t = P->doc_off[b];
                P->doc_off[b] = P->doc_off[b - 1], P->doc_off[b - 1] = t;
            }
        break;
    }
    case K_BLOCKMASK: {
        static const int hs[] = {1, 2, 3}, bq[] = {1, 3, 4, 16, 64}, bk[] = {1, 2, 5, 16, 64};
        P->n_heads = rng_pick(r, hs, 3);
        P->block_q = rng_pick(r, bq, 5);
        P->block_k = rng_pick(r, bk, 5);
        P->causal = rng_int(r, 2);
        int64_t n = (int64_t)P->n_heads * cdiv(P->nq, P->block_q) * cdiv(P->nk, P->block_k);
        double dens = rng_unif(r);
        P->bmask = (uint8_t *)malloc((size_t)n + 1);
        for (int64_t e = 0; e < n; e++)
            P->bmask[e] = (uint8_t)(rng_chance(r, dens) ? 1 + rng_int(r, 255) : 0); /* any nonzero allows */
        break;
    }
    default: break;
    }
}

static void random_pat(rng *r, pkind kind, int32_t maxlen, pat *P) {
    memset(P, 0, sizeof *P);
    P->kind = kind;
    random_shape(r, maxlen, &P->nq, &P->nk);
    if (kind == K_DOCUMENT)
        P->nq = P->nk;
    random_params(r, kind, P);
}

/* ---- mask comparison ------------------------------------------------------------------------ */

/* Compare every plan head's ak_sparse_mask with allowed(). Returns 1 if all agree. */
static int check_mask(const ak_sparse *sp, const pat *P, const char *tag) {
    size_t n = (size_t)P->nq * (size_t)P->nk;
    uint8_t *m = (uint8_t *)malloc(n + 1);
    int ok = 1;
    char desc[512];
    for (int h = 0; h < plan_heads(P) && ok; h++) {
        memset(m, 0xAB, n + 1);
        ak_status st = ak_sparse_mask(sp, 0, h, m);
        CHECK(st == AK_OK, "%s: ak_sparse_mask: %s", tag, ak_status_string(st));
        for (int64_t i = 0; i < P->nq && ok; i++)
            for (int64_t j = 0; j < P->nk; j++) {
                int want = allowed(P, h, i, j), got = m[i * P->nk + j];
                if (got != want) {
                    describe(P, desc, sizeof desc);
                    CHECK(got == want, "%s: %s head %d row %lld key %lld: plan %d, spec %d", tag, desc, h, (long long)i,
                          (long long)j, got, want);
                    ok = 0;
                    break;
                }
            }
    }
    if (ok)
        tc_checks++;
    free(m);
    return ok;
}

/* The plan's geometry and name. Returns 1 if the plan holds gather lists. */
static int check_geometry(const ak_sparse *sp, const pat *P, const char *tag) {
    ak_sparse_desc d;
    char desc[512], nm[160];
    describe(P, desc, sizeof desc);
    CHECK_STATUS(ak_sparse_get_desc(sp, &d), AK_OK);
    expected_name(P, nm, sizeof nm);
    CHECK(strcmp(ak_sparse_name(sp), nm) == 0, "%s: %s: name \"%s\", expected \"%s\"", tag, desc, ak_sparse_name(sp), nm);
    CHECK(d.n_batch == 1 && d.n_heads == plan_heads(P) && d.nq == P->nq && d.nk == P->nk,
          "%s: %s: geometry %d x %d x %d x %d", tag, desc, d.n_batch, d.n_heads, d.nq, d.nk);
    int causal = P->kind == K_DOCUMENT || P->kind == K_BLOCKMASK ? P->causal : 1;
    CHECK(d.causal == causal, "%s: %s: plan causal %d, expected %d", tag, desc, d.causal, causal);
    int bq = P->kind == K_WINDOW ? (P->w.block > 0 ? P->w.block : P->w.block_q)
             : P->kind == K_STRIDED ? P->s.block_q
             : P->kind == K_POWER   ? P->pw.block
                                    : P->block_q;
    int64_t R = (int64_t)d.n_batch * d.n_heads * d.n_qblocks;
    if (P->kind == K_WINDOW && P->w.block == 0 && P->w.dilation > 1 && P->nq == P->nk && P->nk > 0 &&
        (int64_t)P->w.window * P->w.dilation <= P->nk) {
        /* dilated window on self-attention: causal 1-D NA (kernel = window, dilation), rows gathered by
         * residue in tiles of 64 in-group rows, every list with the neighborhood */
        CHECK(d.qrow_off != NULL && d.na_geom.ndim == 1 && d.na_geom.extent[0] == P->nk && d.na_geom.kernel[0] == P->w.window &&
                  d.na_geom.dilation[0] == P->w.dilation && d.na_geom.stride[0] == 1 && d.na_geom.causal[0] == 1,
              "%s: %s: dilated window not lowered to causal 1-D NA", tag, desc);
        for (int64_t r = 0; r < R && d.qrow_off; r++) {
            CHECK(d.na[r] == 1 && d.qrow_off[r + 1] - d.qrow_off[r] <= 64, "%s: %s: list %lld: na %d, %lld rows", tag, desc,
                  (long long)r, d.na[r], (long long)(d.qrow_off[r + 1] - d.qrow_off[r]));
            for (int64_t e = d.qrow_off[r] + 1; e < d.qrow_off[r + 1]; e++)
                CHECK(d.qrows[e] == d.qrows[e - 1] + P->w.dilation, "%s: %s: list %lld: rows not one residue apart by dilation",
                      tag, desc, (long long)r);
        }
        return d.qrow_off != NULL;
    }
    CHECK(d.block_q == bq, "%s: %s: block_q %d, expected %d", tag, desc, d.block_q, bq);
    if (!d.qrow_off)
        CHECK(d.n_qblocks == cdiv(P->nq, bq), "%s: %s: %d fixed blocks, expected %lld", tag, desc, d.n_qblocks,
              (long long)cdiv(P->nq, bq));
    else /* gather lists: at most block_q rows each, consecutive rows */
        for (int64_t r = 0; r < R; r++) {
            int64_t a = d.qrow_off[r], b = d.qrow_off[r + 1];
            CHECK(b - a <= bq, "%s: %s: gather list %lld has %lld rows > block_q %d", tag, desc, (long long)r, (long long)(b - a), bq);
            for (int64_t e = a + 1; e < b; e++)
                CHECK(d.qrows[e] == d.qrows[e - 1] + 1, "%s: %s: gather list %lld not consecutive rows", tag, desc, (long long)r);
        }
    /* block-granular patterns: every span boundary on a block edge (or nk); sink spans excepted */
    int ab = P->kind == K_POWER ? P->pw.block : P->kind == K_WINDOW && P->w.block > 0 ? P->w.block : 0;
    if (P->kind == K_BLOCKMASK)
        ab = P->block_k;
    for (int64_t r = 0; r < R && ab > 0; r++)
        for (int64_t e = d.span_off[r]; e < d.span_off[r + 1]; e++) {
            int32_t lo = d.span_lo[e], hi = d.span_hi[e];
            int sink = P->kind == K_WINDOW && lo == 0 && hi <= P->w.n_sink;
            int edge = (lo % ab == 0 || (P->kind == K_WINDOW && lo < P->w.n_sink)) && (hi % ab == 0 || hi == P->nk || (P->kind == K_WINDOW && hi == P->w.n_sink));
            CHECK(sink || edge, "%s: %s: list %lld span [%d, %d) not on block edges of %d", tag, desc, (long long)r, lo, hi, ab);
            if (P->kind == K_BLOCKMASK && e > d.span_off[r])
                CHECK(lo > d.span_hi[e - 1], "%s: %s: list %lld adjacent spans [.., %d) [%d, ..) not merged", tag, desc, (long long)r,
                      d.span_hi[e - 1], lo);
        }
    return d.qrow_off != NULL;
}

/* Rows of the (nq, nk) plan = the last nq rows of the (nk, nk) plan (position-based patterns). */
static void check_suffix(ak_ctx *ctx, const ak_sparse *sp, const pat *P, const char *tag) {
    if (P->nq < 1 || P->nq > P->nk || P->nq == P->nk)
        return;
    pat F = *P;
    F.nq = P->nk;
    ak_sparse *full = NULL;
    CHECK_STATUS(build(ctx, &F, &full), AK_OK);
    if (!full)
        return;
    size_t n = (size_t)P->nk;
    uint8_t *a = (uint8_t *)malloc((size_t)P->nq * n + 1), *b = (uint8_t *)malloc(n * n + 1);
    ak_sparse_mask(sp, 0, 0, a);
    ak_sparse_mask(full, 0, 0, b);
    int64_t off = P->nk - P->nq;
    char desc[512];
    for (int64_t i = 0; i < P->nq; i++)
        if (memcmp(a + i * n, b + (i + off) * n, n) != 0) {
            describe(P, desc, sizeof desc);
            CHECK(0, "%s: %s: row %lld differs from row %lld of the (%d, %d) plan", tag, desc, (long long)i, (long long)(i + off),
                  P->nk, P->nk);
            break;
        }
    free(a), free(b);
    ak_sparse_destroy(full);
}

static void group_mask(ak_ctx *ctx) {
    int ncase = g_quick ? 120 : 400;
    for (int kind = 0; kind < K_COUNT; kind++) {
        int n_gather = 0, n_ok = 0;
        for (int c = 0; c < ncase; c++) {
            rng r = rng_seed((uint64_t)kind * 1000003u + (uint64_t)c);
            pat P;
            random_pat(&r, (pkind)kind, 300, &P);
            char tag[64];
            snprintf(tag, sizeof tag, "mask %s case %d", kind_name[kind], c);
            ak_sparse *sp = NULL;
            ak_status st = build(ctx, &P, &sp);
            char desc[512];
            describe(&P, desc, sizeof desc);
            CHECK(st == AK_OK, "%s: %s: %s (%s)", tag, desc, ak_status_string(st), ak_ctx_last_error(ctx));
            if (sp) {
                n_ok += check_mask(sp, &P, tag);
                n_gather += check_geometry(sp, &P, tag);
                if (kind != K_DOCUMENT && kind != K_BLOCKMASK)
                    check_suffix(ctx, sp, &P, tag);
                if (g_verbose)
                    printf("%s: %s ok\n", tag, desc);
            }
            ak_sparse_destroy(sp);
            free_pat(&P);
        }
        printf("mask %-10s %d cases, %d masks equal the spec, %d plans with gather lists\n", kind_name[kind], ncase, n_ok, n_gather);
        /* coverage: the position-aligned gather lists (window blocks, power) and document cuts were hit */
        if (kind == K_WINDOW || kind == K_POWER || kind == K_DOCUMENT)
            CHECK(n_gather >= 5, "mask %s: only %d plans used gather lists", kind_name[kind], n_gather);
        if (kind == K_DOCUMENT)
            CHECK(n_gather < ncase - 5, "mask document: only %d plans used fixed blocks", ncase - n_gather);
    }
}

/* ---- hand-checked examples ----------------------------------------------------------------- */

/* The plan's mask for plan head h must equal the literal rows ("1" = visible). */
static void expect_rows(ak_ctx *ctx, const ak_sparse *sp, int h, int nq, int nk, const char *const *rows, const char *tag) {
    uint8_t *m = (uint8_t *)malloc((size_t)nq * (size_t)nk + 1);
    CHECK_STATUS(ak_sparse_mask(sp, 0, h, m), AK_OK);
    for (int i = 0; i < nq; i++) {
        char got[512];
        for (int j = 0; j < nk; j++)
            got[j] = m[(size_t)i * nk + j] ? '1' : '0';
        got[nk] = 0;
        CHECK(strcmp(got, rows[i]) == 0, "%s (%s) head %d row %d: %s, expected %s", tag, ak_sparse_name(sp), h, i, got, rows[i]);
    }
    free(m);
    (void)ctx;
}

/* Build P, compare with the literal rows and with allowed(). */
static void hand_case(ak_ctx *ctx, pat *P, const char *const *rows, const char *tag) {
    ak_sparse *sp = NULL;
    ak_status st = build(ctx, P, &sp);
    CHECK(st == AK_OK, "%s: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    if (!sp)
        return;
    expect_rows(ctx, sp, 0, P->nq, P->nk, rows, tag);
    check_mask(sp, P, tag);
    check_geometry(sp, P, tag);
    ak_sparse_destroy(sp);
}

static void group_hand(ak_ctx *ctx) {
    pat P;
    /* window w = 3, sinks 2, N = 12: sinks 0,1 + keys i-2..i */
    static const char *const win[12] = {"100000000000", "110000000000", "111000000000", "111100000000",
                                        "111110000000", "110111000000", "110011100000", "110001110000",
                                        "110000111000", "110000011100", "110000001110", "110000000111"};
    memset(&P, 0, sizeof P);
    P.kind = K_WINDOW, P.nq = P.nk = 12;
    ak_window_params_init(&P.w);
    P.w.window = 3, P.w.n_sink = 2, P.w.block_q = 5;
    hand_case(ctx, &P, win, "hand window w3 s2");
    /* the same, decode-style chunk nq = 4 of nk = 12: rows 8..11 */
    P.nq = 4;
    hand_case(ctx, &P, win + 8, "hand window w3 s2 nq4");

    /* dilated: w = 3, r = 2, no sinks: keys i, i-2, i-4 */
    static const char *const dil[12] = {"100000000000", "010000000000", "101000000000", "010100000000",
                                        "101010000000", "010101000000", "001010100000", "000101010000",
                                        "000010101000", "000001010100", "000000101010", "000000010101"};
    memset(&P, 0, sizeof P);
    P.kind = K_WINDOW, P.nq = P.nk = 12;
    ak_window_params_init(&P.w);
    P.w.window = 3, P.w.n_sink = 0, P.w.dilation = 2, P.w.block_q = 4;
    hand_case(ctx, &P, dil, "hand window dilated");

    /* block-granular: w = 4 (2 blocks of 2), sink 1: row i (block M = i/2) sees key blocks M-1, M */
    static const char *const wblk[12] = {"100000000000", "110000000000", "111000000000", "111100000000",
                                         "101110000000", "101111000000", "100011100000", "100011110000",
                                         "100000111000", "100000111100", "100000001110", "100000001111"};
    memset(&P, 0, sizeof P);
    P.kind = K_WINDOW, P.nq = P.nk = 12;
    ak_window_params_init(&P.w);
    P.w.window = 4, P.w.n_sink = 1, P.w.block = 2;
    hand_case(ctx, &P, wblk, "hand window blocks");
    /* nq = 5 of nk = 12: positions 7..11, misaligned with the blocks of 2 (gather lists) */
    P.nq = 5;
    hand_case(ctx, &P, wblk + 7, "hand window blocks nq5");
    /* nq = 14 > nk = 12: rows 0, 1 at negative positions see nothing, then rows 0..11 */
    static const char *const wblk14[14] = {"000000000000", "000000000000", "100000000000", "110000000000", "111000000000",
                                           "111100000000", "101110000000", "101111000000", "100011100000", "100011110000",
                                           "100000111000", "100000111100", "100000001110", "100000001111"};
    P.nq = 14;
    hand_case(ctx, &P, wblk14, "hand window blocks nq14");
    P.nq = 13; /* odd offset: gather lists, row 0 in no block */
    hand_case(ctx, &P, wblk14 + 1, "hand window blocks nq13");

    /* strided: local 2, stride 4, sink 1: j <= i and (j < 1 or i-j < 2 or (i-j) % 4 == 0) */
    static const char *const str[12] = {"100000000000", "110000000000", "111000000000", "101100000000",
                                        "100110000000", "110011000000", "101001100000", "100100110000",
                                        "100010011000", "110001001100", "101000100110", "100100010011"};
    memset(&P, 0, sizeof P);
    P.kind = K_STRIDED, P.nq = P.nk = 12;
    ak_strided_params_init(&P.s);
    P.s.local = 2, P.s.stride = 4, P.s.n_sink = 1, P.s.block_q = 3;
    hand_case(ctx, &P, str, "hand strided");

    /* PowerAttention bs = 1, W = 3: sink 0, distances 0, 1, 2 and the powers 4, 8 */
    static const char *const pw1[12] = {"100000000000", "110000000000", "111000000000", "111100000000",
                                        "101110000000", "110111000000", "101011100000", "100101110000",
                                        "100010111000", "110001011100", "101000101110", "100100010111"};
    memset(&P, 0, sizeof P);
    P.kind = K_POWER, P.nq = P.nk = 12;
    P.pw.block = 1, P.pw.window = 3;
    hand_case(ctx, &P, pw1, "hand power bs1 w3");
    /* PowerAttention bs = 2, W = 2 (6 blocks): block m sees {0, m-1, m, m-2, m-4} */
    static const char *const pw2[12] = {"100000000000", "110000000000", "111000000000", "111100000000",
                                        "111110000000", "111111000000", "111111100000", "111111110000",
                                        "110011111000", "110011111100", "111100111110", "111100111111"};
    P.pw.block = 2, P.pw.window = 2;
    hand_case(ctx, &P, pw2, "hand power bs2 w2");
    P.nq = 3; /* positions 9..11: misaligned (gather) */
    hand_case(ctx, &P, pw2 + 9, "hand power bs2 w2 nq3");
    P.nq = 1; /* decode at position 11 */
    hand_case(ctx, &P, pw2 + 11, "hand power bs2 w2 decode");

    /* documents [0,3) [] [3,8) [8,12), block_q 4 (straddles at 3: cut blocks) */
    static const char *const docc[12] = {"100000000000", "110000000000", "111000000000", "000100000000",
                                         "000110000000", "000111000000", "000111100000", "000111110000",
                                         "000000001000", "000000001100", "000000001110", "000000001111"};
    static const char *const docn[12] = {"111000000000", "111000000000", "111000000000", "000111110000",
                                         "000111110000", "000111110000", "000111110000", "000111110000",
                                         "000000001111", "000000001111", "000000001111", "000000001111"};
    memset(&P, 0, sizeof P);
    P.kind = K_DOCUMENT, P.nq = P.nk = 12;
    P.n_docs = 4, P.block_q = 4, P.causal = 1;
    P.doc_off[0] = 0, P.doc_off[1] = 3, P.doc_off[2] = 3, P.doc_off[3] = 8, P.doc_off[4] = 12;
    hand_case(ctx, &P, docc, "hand document causal");
    P.causal = 0;
    hand_case(ctx, &P, docn, "hand document");
    /* documents [0,4) [4,8) [8,12) with block_q 4: fixed blocks, no gather */
    static const char *const doca[12] = {"111100000000", "111100000000", "111100000000", "111100000000",
                                         "000011110000", "000011110000", "000011110000", "000011110000",
                                         "000000001111", "000000001111", "000000001111", "000000001111"};
    P.n_docs = 3, P.doc_off[1] = 4, P.doc_off[2] = 8, P.doc_off[3] = 12;
    {
        ak_sparse *sp = NULL;
        CHECK_STATUS(build(ctx, &P, &sp), AK_OK);
        if (sp) {
            expect_rows(ctx, sp, 0, 12, 12, doca, "hand document aligned");
            CHECK(check_geometry(sp, &P, "hand document aligned") == 0, "aligned documents should use fixed blocks");
            ak_sparse_destroy(sp);
        }
    }

    /* block mask 12 x 12, blocks 4 x 4, mask {101; 010; 111} */
    static const uint8_t bm[9] = {1, 0, 1, 0, 1, 0, 1, 1, 1};
    static const char *const bmn[12] = {"111100001111", "111100001111", "111100001111", "111100001111",
                                        "000011110000", "000011110000", "000011110000", "000011110000",
                                        "111111111111", "111111111111", "111111111111", "111111111111"};
    static const char *const bmc[12] = {"100000000000", "110000000000", "111000000000", "111100000000",
                                        "000010000000", "000011000000", "000011100000", "000011110000",
                                        "111111111000", "111111111100", "111111111110", "111111111111"};
    memset(&P, 0, sizeof P);
    P.kind = K_BLOCKMASK, P.nq = P.nk = 12;
    P.n_heads = 1, P.block_q = 4, P.block_k = 4;
    P.bmask = (uint8_t *)malloc(9);
    memcpy(P.bmask, bm, 9);
    hand_case(ctx, &P, bmn, "hand block mask");
    P.causal = 1;
    hand_case(ctx, &P, bmc, "hand block mask causal");
    free_pat(&P);
    /* nq 3, nk 12, block_q 2, block_k 5 (key blocks [0,5) [5,10) [10,12)), two heads:
     * head 0: m0 {1,0,1}, m1 {0,1,1}; head 1: m0 {0,0,0}, m1 {1,1,1} */
    static const uint8_t bm2[12] = {1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1};
    static const char *const h0[3] = {"111110000011", "111110000011", "000001111111"};
    static const char *const h1[3] = {"000000000000", "000000000000", "111111111111"};
    memset(&P, 0, sizeof P);
    P.kind = K_BLOCKMASK, P.nq = 3, P.nk = 12;
    P.n_heads = 2, P.block_q = 2, P.block_k = 5;
    P.bmask = (uint8_t *)malloc(12);
    memcpy(P.bmask, bm2, 12);
    {
        ak_sparse *sp = NULL;
        CHECK_STATUS(build(ctx, &P, &sp), AK_OK);
        if (sp) {
            expect_rows(ctx, sp, 0, 3, 12, h0, "hand block mask 2 heads");
            expect_rows(ctx, sp, 1, 3, 12, h1, "hand block mask 2 heads");
            check_mask(sp, &P, "hand block mask 2 heads");
            check_geometry(sp, &P, "hand block mask 2 heads");
            ak_sparse_desc d;
            ak_sparse_get_desc(sp, &d);
            /* list (h0, m1) = r 1: one merged span [5, 12); list (h1, m0) = r 2: empty */
            CHECK(d.span_off[2] - d.span_off[1] == 1 && d.span_lo[d.span_off[1]] == 5 && d.span_hi[d.span_off[1]] == 12,
                  "block mask: key blocks 1, 2 of (head 0, block 1) should be one span [5, 12)");
            CHECK(d.span_off[3] == d.span_off[2], "block mask: (head 1, block 0) should have no span");
            ak_sparse_destroy(sp);
        }
    }
    free_pat(&P);
}

/* ---- PowerAttention unit tests (structured-sparse.md §3.7) and window/strided limits -------- */

static int ceil_log2(int64_t x) {
    int e = 0;
    while (((int64_t)1 << e) < x)
        e++;
    return e;
}
static int floor_log2(int64_t x) {
    int e = 0;
    while (((int64_t)2 << e) <= x)
        e++;
    return e;
}
static int is_pow2(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

/* Mask of a plan (plan head 0) into a fresh buffer (NULL on failure). */
static uint8_t *plan_mask(ak_ctx *ctx, const pat *P) {
    ak_sparse *sp = NULL;
    ak_status st = build(ctx, P, &sp);
    CHECK(st == AK_OK, "%s: %s (%s)", kind_name[P->kind], ak_status_string(st), ak_ctx_last_error(ctx));
    if (!sp)
        return NULL;
    uint8_t *m = (uint8_t *)malloc((size_t)P->nq * (size_t)P->nk + 1);
    CHECK_STATUS(ak_sparse_mask(sp, 0, 0, m), AK_OK);
    ak_sparse_destroy(sp);
    return m;
}

/* The plan equals causal attention (bottom-right). */
static void expect_causal(ak_ctx *ctx, const pat *P, const char *tag) {
    uint8_t *m = plan_mask(ctx, P);
    if (!m)
        return;
    int64_t off = P->nk - P->nq;
    for (int64_t i = 0; i < P->nq; i++)
        for (int64_t j = 0; j < P->nk; j++)
            if (m[i * P->nk + j] != (j <= i + off)) {
                char desc[512];
                describe(P, desc, sizeof desc);
                CHECK(0, "%s: %s: row %lld key %lld = %d, causal says %d", tag, desc, (long long)i, (long long)j, m[i * P->nk + j],
                      j <= i + off);
                i = P->nq;
                break;
            }
    tc_checks++;
    free(m);
}

/* §3.7.2 (N <= W*bs is dense causal) and the window / strided analogues. */
static void power_dense_limit(ak_ctx *ctx) {
    static const int bss[] = {1, 2, 3, 16, 64, 256}, ws[] = {1, 2, 3, 5, 8};
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 5; b++) {
            int bs = bss[a], W = ws[b], lim = bs * W;
            int Ns[4] = {1, lim > 1 ? lim - 1 : 1, lim, 1 + (bs * 7 + W * 13) % lim};
            for (int c = 0; c < 4; c++) {
                if (Ns[c] > 600)
                    Ns[c] = 600; /* still <= W*bs */
                pat P;
                memset(&P, 0, sizeof P);
                P.kind = K_POWER, P.pw.block = bs, P.pw.window = W;
                P.nq = P.nk = Ns[c];
                expect_causal(ctx, &P, "power N <= W*bs");
                P.nq = Ns[c] / 3 + 1; /* a chunk */
                expect_causal(ctx, &P, "power N <= W*bs chunk");
            }
        }
    /* sliding window >= N (any sinks, token-exact and block-granular) and strided local >= N: causal */
    static const int Ns[] = {1, 2, 17, 64, 100, 203};
    for (int c = 0; c < 6; c++) {
        int N = Ns[c];
        pat P;
        memset(&P, 0, sizeof P);
        P.kind = K_WINDOW, P.nq = P.nk = N;
        ak_window_params_init(&P.w);
        P.w.window = N + c, P.w.n_sink = c, P.w.block_q = 1 + 7 * c;
        expect_causal(ctx, &P, "window >= N");
        P.w.block = 1 + c, P.w.window = (N + c) / (1 + c) * (1 + c) + (1 + c);
        expect_causal(ctx, &P, "window blocks >= N");
        P.nq = N / 2 + 1;
        expect_causal(ctx, &P, "window blocks >= N chunk");
        memset(&P, 0, sizeof P);
        P.kind = K_STRIDED, P.nq = P.nk = N;
        ak_strided_params_init(&P.s);
        P.s.local = N, P.s.stride = 1 + c * 5, P.s.block_q = 3 + c;
        expect_causal(ctx, &P, "strided local >= N");
        P.s.local = 1, P.s.stride = 1; /* every distance */
        expect_causal(ctx, &P, "strided stride 1");
    }
}

/* §3.7.4: the block count of every query block m < 4096 (bs = 1: blocks are tokens; and bs = 3). */
static void power_block_count(ak_ctx *ctx) {
    static const int ws[] = {1, 2, 3, 5, 8, 64};
    for (int a = 0; a < 6; a++) {
        int W = ws[a];
        for (int bs = 1; bs <= 3; bs += 2) {
            int M = bs == 1 ? 4096 : 512;
            if (g_quick && bs == 1 && W != 5)
                continue;
            pat P;
            memset(&P, 0, sizeof P);
            P.kind = K_POWER, P.pw.block = bs, P.pw.window = W;
            P.nq = P.nk = M * bs;
            uint8_t *mk = plan_mask(ctx, &P);
            if (!mk)
                continue;
            int bad = 0;
            for (int64_t m = 0; m < M && !bad; m++) {
                const uint8_t *row = mk + (m * bs + bs - 1) * (int64_t)P.nk; /* the block's last row */
                int64_t cnt = 0;
                for (int64_t kb = 0; kb <= m; kb++) {
                    int any = 0, all = 1;
                    for (int64_t j = kb * bs; j < (kb + 1) * bs; j++)
                        any |= row[j], all &= row[j];
                    CHECK(any == all, "power W=%d bs=%d: block %lld sees part of key block %lld", W, bs, (long long)m, (long long)kb);
                    cnt += any;
                }
                int64_t pw = 0;
                for (int e = 0; e < 40; e++)
                    pw += ((int64_t)1 << e) >= W && ((int64_t)1 << e) <= m;
                int64_t expect = (m + 1 < W ? m + 1 : W) + pw + (m >= W && !is_pow2(m));
                if (cnt != expect) {
                    CHECK(cnt == expect, "power W=%d bs=%d: query block %lld sees %lld blocks, formula %lld", W, bs, (long long)m,
                          (long long)cnt, (long long)expect);
                    bad = 1;
                }
                if (m >= 1) { /* §3.5: at most 1 + W + (floor(log2 m) + 1 - ceil(log2 W)) */
                    int64_t bound = 1 + W + (floor_log2(m) + 1 - ceil_log2(W));
                    if (bound < 1 + W)
                        bound = 1 + W;
                    if (cnt > bound) {
                        CHECK(cnt <= bound, "power W=%d: block %lld sees %lld > bound %lld", W, (long long)m, (long long)cnt,
                              (long long)bound);
                        bad = 1;
                    }
                }
            }
            tc_checks++;
            free(mk);
        }
    }
}

/* §3.7.5: BFS over the plan's block graph (bs = 1, N = 4096): from the last block of every prefix of M
 * blocks, every block is reachable within ceil(log2 M) hops; with W = 1 within popcount(distance). */
static void power_bfs(ak_ctx *ctx) {
    const int N = 4096;
    static const int ws[] = {1, 2, 3, 4, 5, 8};
    int32_t *adj_off = (int32_t *)malloc(sizeof(int32_t) * (N + 1)), *dist = (int32_t *)malloc(sizeof(int32_t) * N),
            *queue = (int32_t *)malloc(sizeof(int32_t) * N);
    for (int a = 0; a < 6; a++) {
        int W = ws[a];
        if (g_quick && W != 5 && W != 1)
            continue;
        pat P;
        memset(&P, 0, sizeof P);
        P.kind = K_POWER, P.pw.block = 1, P.pw.window = W;
        P.nq = P.nk = N;
        uint8_t *mk = plan_mask(ctx, &P);
        if (!mk)
            continue;
        int64_t ne = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < i; j++)
                ne += mk[i * N + j];
        int32_t *adj = (int32_t *)malloc(sizeof(int32_t) * (size_t)(ne + 1));
        ne = 0;
        for (int64_t i = 0; i < N; i++) {
            adj_off[i] = (int32_t)ne;
            for (int64_t j = 0; j < i; j++)
                if (mk[i * N + j])
                    adj[ne++] = (int32_t)j;
        }
        adj_off[N] = (int32_t)ne;
        int worst = 0, bad = 0, hops128 = -1, hops512 = -1;
        int step = g_quick ? 7 : 1;
        for (int M = 1; M <= N && !bad; M++) {
            if (M > 64 && M % step && M != 128 && M != 512 && M != N)
                continue;
            int s = M - 1;
            for (int t = 0; t <= s; t++)
                dist[t] = -1;
            int qh = 0, qt = 0;
            dist[s] = 0, queue[qt++] = s;
            while (qh < qt) {
                int u = queue[qh++];
                for (int32_t e = adj_off[u]; e < adj_off[u + 1]; e++)
                    if (dist[adj[e]] < 0)
                        dist[adj[e]] = dist[u] + 1, queue[qt++] = adj[e];
            }
            int lim = ceil_log2(M), far = 0;
            for (int t = 0; t <= s; t++) {
                if (dist[t] < 0 || dist[t] > lim) {
                    CHECK(0, "power W=%d: M=%d blocks: block %d %s (limit ceil(log2 M) = %d hops)", W, M, t,
                          dist[t] < 0 ? "unreachable from the last block" : "too far", lim);
                    bad = 1;
                    break;
                }
                if (W == 1 && dist[t] > __builtin_popcount((unsigned)(s - t))) {
                    CHECK(0, "power W=1: from %d to %d: %d hops > popcount(%d)", s, t, dist[t], s - t);
                    bad = 1;
                    break;
                }
                if (dist[t] > far)
                    far = dist[t];
            }
            worst = far > worst ? far : worst;
            if (M == 128)
                hops128 = far;
            if (M == 512)
                hops512 = far;
        }
        tc_checks++;
        if (W == 5) /* §3.4: <= 6 hops at M = 128 (32K tokens), <= 8 at M = 512 (128K) */
            CHECK(hops128 <= 6 && hops512 <= 8, "power W=5: %d hops at M = 128, %d at M = 512 (spec: <= 6, <= 8)", hops128, hops512);
        if (g_verbose)
            printf("power W=%d: BFS over M <= %d blocks: at most %d hops\n", W, N, worst);
        free(adj);
        free(mk);
    }
    free(adj_off), free(dist), free(queue);
}

/* Token-level receptive field (bs = 3, W = 5, N up to 1536 tokens): after L = ceil(log2(blocks))
 * layers the last token of every sequence has reached every earlier token. Layer l+1's reach is the
 * union of what the tokens reached by layer l see (a prefix's plan = the first rows of a longer one). */
static void power_receptive_field(ak_ctx *ctx) {
    const int bs = 3, M = 512, N = bs * M, words = (N + 63) / 64;
    pat P;
    memset(&P, 0, sizeof P);
    P.kind = K_POWER, P.pw.block = bs, P.pw.window = 5;
    P.nq = P.nk = N;
    uint8_t *mk = plan_mask(ctx, &P);
    if (!mk)
        return;
    uint64_t *rows = (uint64_t *)calloc((size_t)N * words, sizeof(uint64_t));
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++)
            if (mk[i * N + j])
                rows[i * words + (j >> 6)] |= (uint64_t)1 << (j & 63);
    uint64_t *reach = (uint64_t *)malloc(sizeof(uint64_t) * words), *next = (uint64_t *)malloc(sizeof(uint64_t) * words);
    uint8_t *done = (uint8_t *)malloc((size_t)N);
    int step = g_quick ? 13 : 3;
    for (int n = 1; n <= N; n += (n < 40 ? 1 : step)) {
        int L = ceil_log2(cdiv(n, bs));
        if (L < 1) /* one block: the last token still needs its one layer to see the earlier ones */
            L = 1;
        memset(reach, 0, sizeof(uint64_t) * words);
        memset(done, 0, (size_t)N);
        reach[(n - 1) >> 6] |= (uint64_t)1 << ((n - 1) & 63);
        for (int l = 0; l < L; l++) {
            memcpy(next, reach, sizeof(uint64_t) * words);
            for (int t = 0; t < n; t++)
                if (!done[t] && ((reach[t >> 6] >> (t & 63)) & 1)) {
                    done[t] = 1;
                    for (int w = 0; w < words; w++)
                        next[w] |= rows[(int64_t)t * words + w];
                }
            memcpy(reach, next, sizeof(uint64_t) * words);
        }
        int missing = -1;
        for (int t = 0; t < n && missing < 0; t++)
            if (!((reach[t >> 6] >> (t & 63)) & 1))
                missing = t;
        if (missing >= 0) {
            CHECK(0, "power bs=3 W=5: sequence of %d tokens: token %d not reached from the last within %d layers", n, missing, L);
            break;
        }
        tc_checks++;
    }
    free(rows), free(reach), free(next), free(done), free(mk);
}

/* §3.7.6 (sinks visible to every query) and §3.7.3 (decode row = last prefill row), random shapes. */
static void power_sink_decode(ak_ctx *ctx) {
    int ncase = g_quick ? 40 : 150;
    for (int c = 0; c < ncase; c++) {
        rng r = rng_seed(777000u + (uint64_t)c);
        pat P;
        memset(&P, 0, sizeof P);
        P.kind = K_POWER;
        random_shape(&r, 400, &P.nq, &P.nk);
        random_params(&r, K_POWER, &P);
        uint8_t *mk = plan_mask(ctx, &P);
        if (!mk)
            continue;
        int64_t off = P.nk - P.nq, bad = 0;
        for (int64_t i = 0; i < P.nq && !bad; i++) {
            int64_t p = i + off;
            for (int64_t j = 0; j < P.pw.block && j <= p && j < P.nk; j++)
                if (!mk[i * P.nk + j]) {
                    CHECK(0, "power bs=%d W=%d nq=%d nk=%d: row %lld does not see sink key %lld", P.pw.block, P.pw.window, P.nq, P.nk,
                          (long long)i, (long long)j);
                    bad = 1;
                    break;
                }
        }
        tc_checks++;
        if (P.nk >= 1 && P.nq >= 1) { /* decode at position nk-1 = the last row of any prefill */
            pat D = P;
            D.nq = 1;
            uint8_t *md = plan_mask(ctx, &D);
            if (md)
                CHECK(memcmp(md, mk + (int64_t)(P.nq - 1) * P.nk, (size_t)P.nk) == 0,
                      "power bs=%d W=%d nk=%d: decode row differs from the last prefill row", P.pw.block, P.pw.window, P.nk);
            free(md);
        }
        free(mk);
    }
}

static void group_power(ak_ctx *ctx) {
    double t = tu_now();
    power_dense_limit(ctx);
    if (g_verbose)
        printf("dense limit %.2f s\n", tu_now() - t), t = tu_now();
    power_block_count(ctx);
    if (g_verbose)
        printf("block count %.2f s\n", tu_now() - t), t = tu_now();
    power_bfs(ctx);
    if (g_verbose)
        printf("bfs %.2f s\n", tu_now() - t), t = tu_now();
    power_receptive_field(ctx);
    if (g_verbose)
        printf("receptive field %.2f s\n", tu_now() - t), t = tu_now();
    power_sink_decode(ctx);
    if (g_verbose)
        printf("sinks/decode %.2f s\n", tu_now() - t);
}

/* ---- executor vs reference ------------------------------------------------------------------ */

static ak_dtype coarse_dtype(const ak_attn_desc *d) {
    if (d->dtype_q == AK_BF16 || d->dtype_kv == AK_BF16)
        return AK_BF16;
    if (d->dtype_q == AK_F16 || d->dtype_kv == AK_F16)
        return AK_F16;
    return AK_F32;
}

/* Naive attention with an explicit element mask per plan head (masks[ph][i][j]) intersected with the
 * descriptor's masks (naive_visible): in float like naive32.c (S and P rounded to the coarser input
 * dtype, O to dtype_o) when dbl = 0, in double without rounding when dbl = 1. Rows (b*Hq + h)*nq + i. */
static void naive_masked(const problem *p, const uint8_t *masks, int nph, int dbl, naive_out *out) {
    const ak_attn_desc *d = &p->d;
    int64_t B = d->batch, Hq = d->num_heads_q, G = Hq / d->num_heads_kv, nq = d->seqlen_q, nk = d->seqlen_k;
    int64_t hd = d->head_dim, dv = p->dv;
    ak_dtype cdt = coarse_dtype(d);
    double *kk = (double *)malloc(sizeof(double) * (size_t)(nk * hd + 1)), *vv = (double *)malloc(sizeof(double) * (size_t)(nk * dv + 1));
    double *sc = (double *)malloc(sizeof(double) * (size_t)(nk + 1)), *q = (double *)malloc(sizeof(double) * (size_t)hd),
           *acc = (double *)malloc(sizeof(double) * (size_t)dv);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++) {
            if (h % G == 0)
                for (int64_t j = 0; j < nk; j++) {
                    for (int64_t c = 0; c < hd; c++)
                        kk[j * hd + c] = ten_get4(&p->k.t, b, h / G, j, c);
                    for (int64_t c = 0; c < dv; c++)
                        vv[j * dv + c] = ten_get4(&p->v.t, b, h / G, j, c);
                }
            int64_t ph = nph == 1 ? 0 : nph == Hq ? h : h / G;
            int64_t sidx[1] = {h};
            double sink = d->has_sinks ? ten_get(&p->sinks.t, sidx) : -INFINITY;
            for (int64_t i = 0; i < nq; i++) {
                int64_t r = (b * Hq + h) * nq + i, n = 0;
                const uint8_t *mrow = masks + ((size_t)ph * (size_t)nq + (size_t)i) * (size_t)nk;
                double *o = out->o + r * dv;
                for (int64_t c = 0; c < hd; c++)
                    q[c] = ten_get4(&p->q.t, b, h, i, c);
                for (int64_t c = 0; c < dv; c++)
                    o[c] = 0.0;
                out->lse[r] = -INFINITY;
                if (!dbl) {
                    float scale = isnan(d->scale) ? (float)(1.0 / sqrt((double)hd)) : d->scale, m = (float)sink;
                    for (int64_t j = 0; j < nk; j++) {
                        if (!mrow[j] || !naive_visible(d, i, j, nq, nk)) {
                            sc[j] = -INFINITY;
                            continue;
                        }
                        float dot = 0.0f;
                        for (int64_t c = 0; c < hd; c++)
                            dot += (float)q[c] * (float)kk[j * hd + c];
                        float x = (float)tu_round_to(cdt, scale * dot);
                        sc[j] = x;
                        m = x > m ? x : m;
                        n++;
                    }
                    out->nvis[r] = (int32_t)n;
                    if (n == 0 && sink == -INFINITY)
                        continue;
                    float sum = sink == -INFINITY ? 0.0f : expf((float)sink - m);
                    for (int64_t j = 0; j < nk; j++)
                        if (sc[j] != -INFINITY)
                            sum += expf((float)sc[j] - m);
                    for (int64_t c = 0; c < dv; c++)
                        acc[c] = 0.0;
                    for (int64_t j = 0; j < nk; j++)
                        if (sc[j] != -INFINITY) {
                            float pj = (float)tu_round_to(cdt, expf((float)sc[j] - m) / sum);
                            for (int64_t c = 0; c < dv; c++)
                                acc[c] = (float)acc[c] + pj * (float)vv[j * dv + c];
                        }
                    for (int64_t c = 0; c < dv; c++)
                        o[c] = tu_round_to(d->dtype_o, acc[c]);
                    out->lse[r] = (double)(m + logf(sum));
                } else {
                    double scale = isnan(d->scale) ? 1.0 / sqrt((double)hd) : (double)d->scale, m = sink;
                    for (int64_t j = 0; j < nk; j++) {
                        if (!mrow[j] || !naive_visible(d, i, j, nq, nk)) {
                            sc[j] = -INFINITY;
                            continue;
                        }
                        double dot = 0.0;
                        for (int64_t c = 0; c < hd; c++)
                            dot += q[c] * kk[j * hd + c];
                        sc[j] = scale * dot;
                        m = sc[j] > m ? sc[j] : m;
                        n++;
                    }
                    out->nvis[r] = (int32_t)n;
                    if (n == 0 && sink == -INFINITY)
                        continue;
                    double sum = sink == -INFINITY ? 0.0 : exp(sink - m);
                    for (int64_t j = 0; j < nk; j++)
                        if (sc[j] != -INFINITY)
                            sum += exp(sc[j] - m);
                    for (int64_t j = 0; j < nk; j++)
                        if (sc[j] != -INFINITY)
                            for (int64_t c = 0; c < dv; c++)
                                o[c] += exp(sc[j] - m) / sum * vv[j * dv + c];
                    out->lse[r] = m + log(sum);
                }
            }
        }
    free(kk), free(vv), free(sc), free(q), free(acc);
}

/* One executor case: plan from P, problem d0 (seqlen_q/k = P's), the oracle against the masked double
 * reference, the rule against the masked naive fp32, threads 1 vs 2. Returns 1 on success. With keep,
 * the problem (holding the 1-thread outputs) is handed over instead of destroyed (keep->o.mem is NULL
 * if it could not be made). */
static int exec_case(ak_ctx *ctx, const pat *P, const ak_attn_desc *d0, rng *r, const char *tag, problem *keep) {
    ak_sparse *sp = NULL;
    if (keep)
        memset(keep, 0, sizeof *keep);
    ak_status st = build(ctx, P, &sp);
    char desc[512], repro[256], msg[512];
    describe(P, desc, sizeof desc);
    CHECK(st == AK_OK, "%s: %s: %s (%s)", tag, desc, ak_status_string(st), ak_ctx_last_error(ctx));
    if (!sp)
        return 0;
    problem p;
    problem_opts po;
    problem_opts_default(&po);
    if (problem_create(&p, d0, 0, 0, &po, r) != 0) {
        CHECK(0, "%s: problem_create failed", tag);
        ak_sparse_destroy(sp);
        return 0;
    }
    problem_repro(&p, repro, sizeof repro);
    int nph = plan_heads(P), ok = 1;
    size_t nqk = (size_t)P->nq * (size_t)P->nk;
    uint8_t *masks = (uint8_t *)malloc(nqk * (size_t)nph + 1);
    for (int h = 0; h < nph; h++)
        CHECK_STATUS(ak_sparse_mask(sp, 0, h, masks + nqk * (size_t)h), AK_OK);
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    naive_out n32, n64, ref;
    naive_alloc(&n32, &p.d, &t), naive_alloc(&n64, &p.d, &t), naive_alloc(&ref, &p.d, &t);
    naive_masked(&p, masks, nph, 0, &n32);
    naive_masked(&p, masks, nph, 1, &n64);
    /* the oracle: ak_attention_ref_sparse with f64 outputs (poisoned first) */
    ak_attn_desc dr = p.d;
    dr.dtype_o = AK_F64;
    dr.return_lse = 1;
    ak_attn_tensors tr = t;
    tr.o = ak_tensor_4d(ref.o, AK_F64, dr.batch, dr.num_heads_q, dr.seqlen_q, p.dv);
    tr.lse = ak_tensor_3d(ref.lse, AK_F64, dr.batch, dr.num_heads_q, dr.seqlen_q);
    for (int64_t x = 0; x < ref.n_rows; x++) {
        ref.lse[x] = NAN;
        for (int64_t c = 0; c < ref.dv; c++)
            ref.o[x * ref.dv + c] = NAN;
    }
    st = ak_attention_ref_sparse(ctx, &dr, sp, &tr);
    CHECK(st == AK_OK, "%s: %s %s: ak_attention_ref_sparse: %s (%s)", tag, desc, repro, ak_status_string(st), ak_ctx_last_error(ctx));
    memcpy(ref.nvis, n32.nvis, sizeof(int32_t) * (size_t)ref.n_rows);
    if (!check_oracle(&ref, &n64, msg, sizeof msg)) {
        CHECK(0, "%s: %s %s: ak_attention_ref_sparse vs the masked double reference: %s", tag, desc, repro, msg);
        ok = 0;
    }
    /* the executor on 1 thread, then on 2 (identical bytes) */
    tbuf o2, l2;
    tbuf_make_like(&o2, &p.o);
    tbuf_make_like(&l2, &p.lse);
    for (int nt = 1; nt <= 2; nt++) {
        ak_ctx_set_num_threads(ctx, nt);
        ak_plan *pl = NULL;
        st = ak_plan_create_sparse(ctx, &p.d, sp, &pl);
        CHECK(st == AK_OK, "%s: %s %s: ak_plan_create_sparse: %s (%s)", tag, desc, repro, ak_status_string(st), ak_ctx_last_error(ctx));
        if (!pl) {
            ok = 0;
            continue;
        }
        ak_attn_tensors tt = nt == 1 ? t : problem_tensors(&p, &o2, &l2);
        st = ak_attention_run(pl, &tt, NULL, 0);
        CHECK(st == AK_OK, "%s: %s %s: ak_attention_run: %s (%s)", tag, desc, repro, ak_status_string(st), ak_ctx_last_error(ctx));
        ak_plan_destroy(pl);
        if (nt == 1) {
            int pass = check_rule(&p, &p.o, &p.lse, &ref, &n32, msg, sizeof msg);
            CHECK(pass, "%s: %s %s: %s", tag, desc, repro, msg);
            ok &= pass;
            if (g_verbose)
                printf("%s: %s %s: %s\n", tag, desc, repro, msg);
        } else {
            int same = tbuf_same_bytes(&p.o, &o2) && tbuf_same_bytes(&p.lse, &l2);
            CHECK(same, "%s: %s %s: 1 and 2 threads differ", tag, desc, repro);
            ok &= same;
        }
    }
    ak_ctx_set_num_threads(ctx, 2);
    tbuf_free(&o2), tbuf_free(&l2);
    naive_free(&n32), naive_free(&n64), naive_free(&ref);
    free(masks);
    ak_sparse_destroy(sp);
    if (keep)
        *keep = p;
    else
        problem_destroy(&p);
    return ok;
}

static void random_desc(rng *r, const pat *P, ak_attn_desc *d) {
    static const int dims[] = {1, 3, 16, 40, 64};
    ak_attn_desc_init(d);
    int hkv = 1 + rng_int(r, 2), g = 1 + rng_int(r, 3);
    if (P->kind == K_BLOCKMASK) { /* plan heads: 1, Hkv or Hq */
        int nh = P->n_heads;
        if (nh > 1) {
            if (rng_chance(r, 0.5))
                hkv = nh; /* one plan per KV head */
            else
                hkv = 1, g = nh; /* one plan per query head (MQA) */
        }
    }
    d->batch = 1 + rng_int(r, 2);
    d->num_heads_kv = hkv;
    d->num_heads_q = hkv * g;
    d->seqlen_q = P->nq;
    d->seqlen_k = P->nk;
    d->head_dim = rng_pick(r, dims, 5);
    d->head_dim_v = rng_chance(r, 0.3) ? rng_pick(r, dims, 5) : 0;
    if (rng_chance(r, 0.35)) {
        d->dtype_q = d->dtype_kv = AK_BF16;
        d->dtype_o = rng_chance(r, 0.5) ? AK_BF16 : AK_F32;
    } else {
        d->dtype_q = d->dtype_kv = d->dtype_o = AK_F32;
    }
    d->causal = rng_chance(r, 0.3);
    if (rng_chance(r, 0.15))
        d->window_left = rng_int(r, 40); /* intersected with the pattern */
    d->has_sinks = rng_chance(r, 0.2);
    d->return_lse = 1;
}

static void group_exec(ak_ctx *ctx) {
    int ncase = g_quick ? 6 : 16, fails = 0, total = 0;
    for (int kind = 0; kind < K_COUNT; kind++)
        for (int c = 0; c < ncase; c++) {
            rng r = rng_seed(5550000u + (uint64_t)kind * 1000u + (uint64_t)c);
            pat P;
            random_pat(&r, (pkind)kind, 200, &P);
            if (c == 0 && kind == K_POWER) /* the default window with bigger blocks, misaligned chunk */
                P.pw.block = 32, P.pw.window = 5, P.nk = 300, P.nq = 131;
            ak_attn_desc d;
            random_desc(&r, &P, &d);
            char tag[64];
            snprintf(tag, sizeof tag, "exec %s case %d", kind_name[kind], c);
            total++;
            fails += !exec_case(ctx, &P, &d, &r, tag, NULL);
            free_pat(&P);
        }
    /* §3.7.3: decode output = the last row of prefill (same K/V and query row), PowerAttention */
    {
        rng r = rng_seed(99);
        pat P;
        memset(&P, 0, sizeof P);
        P.kind = K_POWER, P.pw.block = 8, P.pw.window = 3, P.nq = P.nk = 157;
        ak_attn_desc d;
        ak_attn_desc_init(&d);
        d.num_heads_q = 4, d.num_heads_kv = 2, d.seqlen_q = d.seqlen_k = 157, d.head_dim = 32;
        d.dtype_q = d.dtype_kv = d.dtype_o = AK_F32, d.return_lse = 1;
        problem full, dec;
        total++;
        int ok = exec_case(ctx, &P, &d, &r, "exec power prefill", &full);
        if (ok) {
            pat D = P;
            D.nq = 1;
            ak_attn_desc dd = d;
            dd.seqlen_q = 1;
            problem_opts po;
            problem_opts_default(&po);
            if (problem_create(&dec, &dd, 0, 0, &po, &r) == 0) {
                for (int h = 0; h < d.num_heads_q; h++)
                    for (int c = 0; c < d.head_dim; c++)
                        ten_set4(&dec.q.t, 0, h, 0, c, ten_get4(&full.q.t, 0, h, 156, c));
                for (int h = 0; h < d.num_heads_kv; h++)
                    for (int j = 0; j < 157; j++)
                        for (int c = 0; c < d.head_dim; c++) {
                            ten_set4(&dec.k.t, 0, h, j, c, ten_get4(&full.k.t, 0, h, j, c));
                            ten_set4(&dec.v.t, 0, h, j, c, ten_get4(&full.v.t, 0, h, j, c));
                        }
                ak_sparse *sp = NULL;
                CHECK_STATUS(build(ctx, &D, &sp), AK_OK);
                ak_plan *pl = NULL;
                if (sp)
                    CHECK_STATUS(ak_plan_create_sparse(ctx, &dd, sp, &pl), AK_OK);
                ak_attn_tensors t = problem_tensors(&dec, &dec.o, &dec.lse);
                if (pl)
                    CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
                double worst = 0;
                for (int h = 0; h < d.num_heads_q; h++) {
                    for (int c = 0; c < d.head_dim; c++)
                        worst = fmax(worst, fabs(ten_get4(&dec.o.t, 0, h, 0, c) - ten_get4(&full.o.t, 0, h, 156, c)));
                    worst = fmax(worst, fabs(ten_get3(&dec.lse.t, 0, h, 0) - ten_get3(&full.lse.t, 0, h, 156)));
                }
                CHECK(worst <= 1e-5, "power: decode output differs from the last prefill row by %g", worst);
                ak_plan_destroy(pl);
                ak_sparse_destroy(sp);
                problem_destroy(&dec);
            }
        } else {
            fails++;
        }
        problem_destroy(&full);
    }
    printf("exec: %d of %d cases passed\n", total - fails, total);
}

/* ---- invalid parameters --------------------------------------------------------------------- */

/* The call must return `want`, leave *out NULL and (ctx given) name `needle` in the message. */
#define EXPECT_FAIL(call, want, needle)                                                                     \
    do {                                                                                                    \
        out = (ak_sparse *)&sentinel;                                                                       \
        ak_status st_ = (call);                                                                             \
        CHECK(st_ == (want), "%s returned %s, expected %s", #call, ak_status_string(st_), ak_status_string(want)); \
        CHECK(out == NULL || st_ == AK_OK || strstr(#call, "NULL)"), "%s: *out not cleared", #call);                                  \
        if (st_ == AK_OK)                                                                                   \
            ak_sparse_destroy(out);                                                                         \
        else if ((needle)[0])                                                                               \
            CHECK(strstr(ak_ctx_last_error(ctx), (needle)) != NULL, "%s: message \"%s\" does not name %s", #call, \
                  ak_ctx_last_error(ctx), (needle));                                                        \
    } while (0)

static void group_invalid(ak_ctx *ctx) {
    ak_sparse *out;
    int sentinel = 0;
    const ak_status INV = AK_ERR_INVALID_ARGUMENT, NUL = AK_ERR_NULL_POINTER;
    /* defaults (attnkit.h) and NULL-safe init */
    ak_window_params w;
    ak_window_params_init(&w);
    CHECK(w.window == 512 && w.n_sink == 4 && w.dilation == 1 && w.block == 0 && w.block_q == 64, "window defaults");
    ak_strided_params s;
    ak_strided_params_init(&s);
    CHECK(s.local == 256 && s.stride == 256 && s.n_sink == 0 && s.block_q == 64, "strided defaults");
    ak_power_params pw;
    ak_power_params_init(&pw);
    CHECK(pw.block == 256 && pw.window == 5, "power defaults");
    ak_window_params_init(NULL);
    ak_strided_params_init(NULL);
    ak_power_params_init(NULL);
    /* the defaults build */
    EXPECT_FAIL(ak_sparse_window(ctx, 1000, 1000, &w, &out), AK_OK, "");
    EXPECT_FAIL(ak_sparse_strided(ctx, 1000, 1000, &s, &out), AK_OK, "");
    EXPECT_FAIL(ak_sparse_power(ctx, 1000, 1000, &pw, &out), AK_OK, "");

    /* window */
    EXPECT_FAIL(ak_sparse_window(NULL, 10, 10, &w, &out), NUL, "");
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, NULL), NUL, "out");
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, NULL, &out), NUL, "params");
    EXPECT_FAIL(ak_sparse_window(ctx, -1, 10, &w, &out), INV, "nq = -1");
    EXPECT_FAIL(ak_sparse_window(ctx, 10, -3, &w, &out), INV, "nk = -3");
    w.window = 0;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "window = 0");
    w.window = -5;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "window = -5");
    ak_window_params_init(&w);
    w.n_sink = -1;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "n_sink = -1");
    ak_window_params_init(&w);
    w.dilation = 0;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "dilation = 0");
    ak_window_params_init(&w);
    w.block = -2;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "block = -2");
    ak_window_params_init(&w);
    w.block_q = 0;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "block_q = 0");
    ak_window_params_init(&w);
    w.block = 64, w.window = 100;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "not a multiple of block");
    w.window = 128, w.dilation = 2;
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), INV, "dilation = 2");
    w.dilation = 1, w.block_q = 0; /* block_q is not used in the block-granular form */
    EXPECT_FAIL(ak_sparse_window(ctx, 10, 10, &w, &out), AK_OK, "");
    ak_window_params_init(&w);
    EXPECT_FAIL(ak_sparse_window(ctx, 0, 0, &w, &out), AK_OK, "");   /* empty problems are fine */
    EXPECT_FAIL(ak_sparse_window(ctx, 5, 0, &w, &out), AK_OK, "");
    w.block = 8, w.window = 16;
    EXPECT_FAIL(ak_sparse_window(ctx, 0, 7, &w, &out), AK_OK, "");
    EXPECT_FAIL(ak_sparse_window(ctx, 9, 4, &w, &out), AK_OK, "");

    /* strided */
    EXPECT_FAIL(ak_sparse_strided(NULL, 10, 10, &s, &out), NUL, "");
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, &s, NULL), NUL, "out");
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, NULL, &out), NUL, "params");
    EXPECT_FAIL(ak_sparse_strided(ctx, -1, 10, &s, &out), INV, "nq = -1");
    s.local = 0;
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, &s, &out), INV, "local = 0");
    ak_strided_params_init(&s);
    s.stride = 0;
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, &s, &out), INV, "stride = 0");
    s.stride = -4;
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, &s, &out), INV, "stride = -4");
    ak_strided_params_init(&s);
    s.n_sink = -1;
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, &s, &out), INV, "n_sink = -1");
    ak_strided_params_init(&s);
    s.block_q = 0;
    EXPECT_FAIL(ak_sparse_strided(ctx, 10, 10, &s, &out), INV, "block_q = 0");

    /* power */
    EXPECT_FAIL(ak_sparse_power(NULL, 10, 10, &pw, &out), NUL, "");
    EXPECT_FAIL(ak_sparse_power(ctx, 10, 10, &pw, NULL), NUL, "out");
    EXPECT_FAIL(ak_sparse_power(ctx, 10, 10, NULL, &out), NUL, "params");
    EXPECT_FAIL(ak_sparse_power(ctx, 10, -1, &pw, &out), INV, "nk = -1");
    pw.block = 0;
    EXPECT_FAIL(ak_sparse_power(ctx, 10, 10, &pw, &out), INV, "block = 0");
    pw.block = -256;
    EXPECT_FAIL(ak_sparse_power(ctx, 10, 10, &pw, &out), INV, "block = -256");
    ak_power_params_init(&pw);
    pw.window = 0;
    EXPECT_FAIL(ak_sparse_power(ctx, 10, 10, &pw, &out), INV, "window = 0");
    ak_power_params_init(&pw);
    EXPECT_FAIL(ak_sparse_power(ctx, 0, 0, &pw, &out), AK_OK, "");
    EXPECT_FAIL(ak_sparse_power(ctx, 300, 5, &pw, &out), AK_OK, "");

    /* document */
    const int32_t off_ok[4] = {0, 3, 3, 10}, off_start[3] = {1, 5, 10}, off_dec[4] = {0, 6, 4, 10}, off_end[3] = {0, 5, 9};
    EXPECT_FAIL(ak_sparse_document(NULL, 10, off_ok, 3, 1, 4, &out), NUL, "");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_ok, 3, 1, 4, NULL), NUL, "out");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, NULL, 3, 1, 4, &out), NUL, "doc_off");
    EXPECT_FAIL(ak_sparse_document(ctx, -1, off_ok, 3, 1, 4, &out), INV, "n = -1");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_ok, -1, 1, 4, &out), INV, "n_docs = -1");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_ok, 3, 2, 4, &out), INV, "causal = 2");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_ok, 3, 1, 0, &out), INV, "block_q = 0");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_start, 2, 1, 4, &out), INV, "doc_off[0] = 1");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_dec, 3, 1, 4, &out), INV, "decreases at entry 2");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_end, 2, 1, 4, &out), INV, "must equal n = 10");
    EXPECT_FAIL(ak_sparse_document(ctx, 11, off_ok, 3, 0, 4, &out), INV, "must equal n = 11");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_ok, 0, 0, 4, &out), INV, "must equal n = 10"); /* no document, 10 tokens */
    EXPECT_FAIL(ak_sparse_document(ctx, 0, off_ok, 0, 1, 4, &out), AK_OK, "");
    EXPECT_FAIL(ak_sparse_document(ctx, 10, off_ok, 3, 0, 4, &out), AK_OK, "");

    /* block mask */
    uint8_t bm[2 * 3 * 4] = {1};
    EXPECT_FAIL(ak_sparse_block_mask(NULL, 10, 13, 2, 4, 4, bm, 0, &out), NUL, "");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 2, 4, 4, bm, 0, NULL), NUL, "out");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 2, 4, 4, NULL, 0, &out), NUL, "mask");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, -1, 13, 2, 4, 4, bm, 0, &out), INV, "nq = -1");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, -2, 2, 4, 4, bm, 0, &out), INV, "nk = -2");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 0, 4, 4, bm, 0, &out), INV, "n_heads = 0");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 2, 0, 4, bm, 0, &out), INV, "block_q = 0");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 2, 4, -1, bm, 0, &out), INV, "block_k = -1");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 2, 4, 4, bm, 3, &out), INV, "causal = 3");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 10, 13, 2, 4, 4, bm, 1, &out), AK_OK, "");
    EXPECT_FAIL(ak_sparse_block_mask(ctx, 0, 13, 2, 4, 4, NULL, 1, &out), AK_OK, ""); /* no entries: NULL is fine */

    /* plans of the builders fit the executor's geometry rules: a plan of nq x nk against another problem */
    {
        ak_window_params_init(&w);
        ak_sparse *sp = NULL;
        CHECK_STATUS(ak_sparse_window(ctx, 16, 16, &w, &sp), AK_OK);
        ak_attn_desc d;
        ak_attn_desc_init(&d);
        d.seqlen_q = 16, d.seqlen_k = 17, d.head_dim = 8;
        ak_plan *pl = NULL;
        if (sp)
            CHECK_STATUS(ak_plan_create_sparse(ctx, &d, sp, &pl), AK_ERR_SHAPE_MISMATCH);
        ak_plan_destroy(pl);
        ak_sparse_destroy(sp);
    }
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_PATTERNS_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_PATTERNS_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_patterns: ak_ctx_create failed\n");
        return 1;
    }
    double t0 = tu_now();
    int any = 0;
#define GROUP(name, call)                                                                               \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                        \
        double tg_ = tu_now();                                                                          \
        call;                                                                                           \
        any = 1;                                                                                        \
        printf("group %s: %.2f s\n", name, tu_now() - tg_);                                             \
    }
    GROUP("mask", group_mask(ctx))
    GROUP("hand", group_hand(ctx))
    GROUP("power", group_power(ctx))
    GROUP("exec", group_exec(ctx))
    GROUP("invalid", group_invalid(ctx))
#undef GROUP
    ak_ctx_destroy(ctx);
    if (!any) {
        fprintf(stderr, "test_patterns: unknown group '%s' (mask, hand, power, exec, invalid, all)\n", group);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "test_patterns %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
