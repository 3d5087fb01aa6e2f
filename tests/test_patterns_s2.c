/*
 * test_patterns_s2.c — the S2-Attention (DKernel), MoA and SF-Attn (SinkLoRA) plan builders:
 * ak_sparse_s2 / ak_s2_coverage, ak_sparse_moa / ak_moa_load, ak_sparse_sfattn.
 *
 * Every element mask (ak_sparse_mask) is compared with a mask function written here from the formulas of
 * structured-sparse.md (S2 4.3, MoA 5.2, SF-Attn 6.2) and the header, over random shapes (nq = nk, chunked
 * nq < nk with block-aligned and unaligned offsets, nq > nk, decode nq = 1); small worked examples have
 * literal expected masks; the spec's unit tests (S2 4.6-1..4, MoA 5.7-1, 2, 3, 7, SF-Attn 6.6-3) are
 * checked; the sparse executor (ak_plan_create_sparse + ak_attention_run) is compared with
 * ak_attention_ref_sparse (f64 outputs) under the accuracy rule of tests/README.md, with a masked naive
 * fp32 reference written here as the baseline, f32 and bf16, GQA, 1 and 2 threads (identical bytes),
 * NaN-poisoned outputs; invalid parameters return their statuses.
 *
 *   test_patterns_s2 [s2|moa|sfattn|exec|invalid|all]
 * Environment: AK_SWEEP_VERBOSE=1 prints each group's time and each executor case's errors; AK_PATTERNS_QUICK=1
 * (set by CTest in sanitizer builds) runs each executor case with one dtype (f32 or bf16, alternating).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

static ak_ctx *g_ctx;  /* default threads: builders, references */
static ak_ctx *g_ctx1; /* 1 thread */
static ak_ctx *g_ctx2; /* 2 threads */
static int g_verbose;
static int g_quick; /* AK_PATTERNS_QUICK=1 (sanitizer builds): one dtype per executor case */

static int64_t fdiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t pmod(int64_t a, int64_t b) { return ((a % b) + b) % b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- the independent masks ------------------------------------------------------------------ */

/* S2 (spec 4.3 and the header's contract), block level: does query block m of KV head h see key block k? */
static int s2_attend(const ak_s2_params *p, int h, int64_t m, int64_t k) {
    int64_t vs = p->vert_stride, local = p->local_blocks, nsp = p->num_heads_kv - p->num_dense_heads;
    int64_t step = p->fix_coverage ? (nsp > 0 ? imax(1, vs / nsp) : 1) : imax(1, vs / p->num_heads_q);
    int64_t hh = p->homo_head ? 0 : h;
    int dense = h >= p->num_heads_kv - p->num_dense_heads;
    int64_t right = p->causal ? 1 : (p->local_right > 0 ? p->local_right : local);
    if (p->causal && k > m)
        return 0;
    if (!p->relative) {
        int vert = dense || pmod(k + hh * step + p->head_sliding_offset, vs) == 0;
        int loc = (m - k < local) && (k - m < right);
        return vert || loc;
    }
    int64_t L = imax(0, m - k - local + 1), R = imax(0, k - m - right + 1);
    return dense || (L + R) % vs == 0;
}

/* Element level: row i at position i + nk - nq, block index = position / block. */
static int s2_visible(const ak_s2_params *p, int32_t nq, int32_t nk, int h, int64_t i, int64_t j) {
    int64_t pos = i + nk - nq;
    if (j < 0 || j >= nk || (p->causal && j > pos))
        return 0;
    return s2_attend(p, h, fdiv(pos, p->block), j / p->block);
}

/* MoA span S_h (spec 5.2). */
static int64_t moa_S(double alpha, double beta, int64_t n_plan) {
    double s = alpha + beta * (double)n_plan;
    s = s < 0 ? ceil(s) : floor(s); /* Python int(): toward zero */
    if (s > (double)n_plan)
        s = (double)n_plan;
    if (s < 128)
        s = 128;
    return 64 * (int64_t)ceil(s / 64.0);
}

static int moa_visible(const ak_moa_params *p, int32_t nq, int32_t nk, int h, int64_t i, int64_t j) {
    int64_t pos = i + nk - nq, S = moa_S(p->alpha[h], p->beta[h], (int64_t)nk + p->max_new_tokens);
    int64_t sink = S < 64 ? S : 64, band = S - sink;
    if (j < 0 || j >= nk || j > pos)
        return 0;
    if (p->token_exact)
        return j < sink || j >= pos - band + 1;
    int64_t m = fdiv(pos, 64), k = j / 64;
    return k < sink / 64 || (k >= m + 1 - band / 64 && k <= m);
}

/* SF-Attn (spec 6.2): j <= i && (j < g || gid_h(i) == gid_h(j)). */
static int sf_visible(const ak_sfattn_params *p, int32_t n, int h, int64_t i, int64_t j) {
    int32_t Hq = p->num_heads_q, G = p->group;
    int32_t lo = p->shift_lo < 0 ? Hq / 2 : p->shift_lo, hi = p->shift_hi < 0 ? Hq : p->shift_hi;
    int shifted = h >= lo && h < hi;
    if (j < 0 || j >= n || j > i)
        return 0;
    if (j < p->n_sink)
        return 1;
    int64_t gi = shifted ? (i + G / 2) / G : i / G, gj = shifted ? (j + G / 2) / G : j / G;
    return gi == gj;
}

typedef int (*vis_fn)(const void *p, int32_t nq, int32_t nk, int h, int64_t i, int64_t j);
static int vis_s2(const void *p, int32_t nq, int32_t nk, int h, int64_t i, int64_t j) {
    return s2_visible((const ak_s2_params *)p, nq, nk, h, i, j);
}
static int vis_moa(const void *p, int32_t nq, int32_t nk, int h, int64_t i, int64_t j) {
    return moa_visible((const ak_moa_params *)p, nq, nk, h, i, j);
}
static int vis_sf(const void *p, int32_t nq, int32_t nk, int h, int64_t i, int64_t j) {
    (void)nk;
    return sf_visible((const ak_sfattn_params *)p, nq, h, i, j);
}

/* Compare every plan head's ak_sparse_mask with the independent mask. Returns the mismatches. */
static int64_t compare_masks(const ak_sparse *sp, int n_heads, int32_t nq, int32_t nk, vis_fn fn, const void *p, const char *what) {
    ak_sparse_desc d;
    ak_sparse_desc_init(&d);
    CHECK(ak_sparse_get_desc(sp, &d) == AK_OK, "%s: get_desc", what);
    CHECK(d.n_heads == n_heads && d.nq == nq && d.nk == nk && d.n_batch == 1,
          "%s: plan geometry %d heads %d x %d (batch %d), expected %d heads %d x %d", what, d.n_heads, d.nq, d.nk, d.n_batch, n_heads,
          nq, nk);
    if (d.n_heads != n_heads)
        return 1;
    uint8_t *mask = (uint8_t *)malloc((size_t)nq * (size_t)nk + 1);
    int64_t bad = 0;
    for (int h = 0; h < n_heads; h++) {
        memset(mask, 0xAB, (size_t)nq * (size_t)nk + 1);
        CHECK(ak_sparse_mask(sp, 0, h, mask) == AK_OK, "%s: ak_sparse_mask head %d", what, h);
        int64_t first_i = -1, first_j = -1, nb = 0;
        for (int64_t i = 0; i < nq; i++)
            for (int64_t j = 0; j < nk; j++) {
                int want = fn(p, nq, nk, h, i, j);
                if (mask[i * nk + j] != want) {
                    if (!nb)
                        first_i = i, first_j = j;
                    nb++;
                }
            }
        CHECK(nb == 0, "%s: head %d: %lld elements differ from the formula (first at row %lld key %lld: plan %d, formula %d)", what, h,
              (long long)nb, (long long)first_i, (long long)first_j, nb ? mask[first_i * nk + first_j] : 0,
              nb ? fn(p, nq, nk, h, first_i, first_j) : 0);
        bad += nb;
    }
    free(mask);
    return bad;
}

/* The mask of plan head h must be the literal rows ("1" = visible). */
static void expect_mask(const ak_sparse *sp, int h, int32_t nq, int32_t nk, const char *const *rows, const char *what) {
    uint8_t *mask = (uint8_t *)malloc((size_t)nq * (size_t)nk + 1);
    CHECK(ak_sparse_mask(sp, 0, h, mask) == AK_OK, "%s: mask", what);
    for (int32_t i = 0; i < nq; i++) {
        char got[256];
        for (int32_t j = 0; j < nk; j++)
            got[j] = mask[(size_t)i * nk + j] ? '1' : '0';
        got[nk] = 0;
        CHECK(strcmp(got, rows[i]) == 0, "%s: head %d row %d = %s, expected %s", what, h, i, got, rows[i]);
    }
    free(mask);
}

/* 1 iff plan head h's mask is exactly the causal (bottom-right) one. */
static int is_dense_causal(const ak_sparse *sp, int h, int32_t nq, int32_t nk) {
    uint8_t *mask = (uint8_t *)malloc((size_t)nq * (size_t)nk + 1);
    int ok = ak_sparse_mask(sp, 0, h, mask) == AK_OK;
    for (int64_t i = 0; i < nq && ok; i++)
        for (int64_t j = 0; j < nk && ok; j++)
            ok = mask[i * nk + j] == (j <= i + nk - nq);
    free(mask);
    return ok;
}

/* Block mask of plan head h (square blocks of bs over nq = nk = M * bs): any element set. */
static void block_mask(const ak_sparse *sp, int h, int32_t n, int32_t bs, uint8_t *bm) {
    int32_t M = n / bs;
    uint8_t *mask = (uint8_t *)malloc((size_t)n * (size_t)n + 1);
    CHECK(ak_sparse_mask(sp, 0, h, mask) == AK_OK, "block mask");
    memset(bm, 0, (size_t)M * M);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            if (mask[i * n + j])
                bm[(i / bs) * M + j / bs] = 1;
    free(mask);
}

/* dkernel's is_kv_cache_efficient (spec 4.4), written here: below the diagonal a column may go 1 -> 0 down
 * the rows, never 0 -> 1 (block_m = block_n = the sparse block). */
static int kv_efficient(const uint8_t *bm, int32_t M) {
    for (int32_t m = 1; m < M; m++)
        for (int32_t k = 0; k < m; k++)
            if (bm[m * M + k] > bm[(m - 1) * M + k] && m - 1 > k)
                return 0;
    return 1;
}

/* ---- S2 ------------------------------------------------------------------------------------- */

static void s2_random_params(rng *r, ak_s2_params *p) {
    static const int kv_vals[] = {1, 2, 3, 4, 8};
    static const int bs_vals[] = {1, 2, 3, 4, 8, 16, 64};
    ak_s2_params_init(p);
    p->num_heads_kv = rng_pick(r, kv_vals, 5);
    p->num_heads_q = p->num_heads_kv * (1 + rng_int(r, 4));
    p->block = rng_pick(r, bs_vals, 7);
    p->local_blocks = 1 + rng_int(r, 6);
    p->vert_stride = 1 + rng_int(r, 9);
    p->relative = rng_chance(r, 0.35);
    p->causal = rng_chance(r, 0.75);
    p->homo_head = rng_chance(r, 0.2);
    p->num_dense_heads = p->homo_head ? 0 : (rng_chance(r, 0.3) ? rng_int(r, p->num_heads_kv + 1) : 0);
    p->head_sliding_offset = rng_chance(r, 0.5) ? rng_int(r, 21) - 10 : 0;
    p->fix_coverage = rng_chance(r, 0.5);
    p->local_right = rng_chance(r, 0.5) ? rng_int(r, 5) : 0;
}

static void random_lengths(rng *r, int bs, int32_t *nq, int32_t *nk) {
    int maxn = bs >= 16 ? 420 : 160;
    *nk = rng_int(r, maxn + 1);
    int kind = rng_int(r, 10);
    if (kind < 4)
        *nq = *nk;
    else if (kind < 6) /* chunked prefill, block-aligned offset when possible */
        *nq = *nk - (*nk >= bs ? bs * rng_int(r, *nk / bs + 1) : 0);
    else if (kind < 8)
        *nq = rng_int(r, *nk + 1); /* any offset (gathered rows when unaligned) */
    else if (kind < 9)
        *nq = *nk > 0 ? 1 : 0; /* decode */
    else
        *nq = *nk + 1 + rng_int(r, 40); /* more queries than keys: the first rows see nothing when causal */
}

static void s2_case_desc(const ak_s2_params *p, int32_t nq, int32_t nk, char *buf, size_t n) {
    snprintf(buf, n, "s2 nq=%d nk=%d hq=%d hkv=%d bs=%d local=%d vs=%d rel=%d causal=%d homo=%d dense=%d off=%d fix=%d right=%d", nq,
             nk, p->num_heads_q, p->num_heads_kv, p->block, p->local_blocks, p->vert_stride, p->relative, p->causal, p->homo_head,
             p->num_dense_heads, p->head_sliding_offset, p->fix_coverage, p->local_right);
}

static void group_s2_examples(void) {
    ak_sparse *sp = NULL;
    ak_s2_params p;
    /* bs = 1 (block mask = element mask), 8 x 8, local 2, vs 3, two KV heads: step 1 either way */
    ak_s2_params_init(&p);
    p.num_heads_q = 2, p.num_heads_kv = 2, p.block = 1, p.local_blocks = 2, p.vert_stride = 3;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 8, 8, &p, &sp), AK_OK);
    if (sp) {
        static const char *h0[] = {"10000000", "11000000", "11100000", "10110000", "10011000", "10011100", "10010110", "10010011"};
        static const char *h1[] = {"10000000", "11000000", "01100000", "00110000", "00111000", "00101100", "00100110", "00100111"};
        expect_mask(sp, 0, 8, 8, h0, "s2 example absolute");
        expect_mask(sp, 1, 8, 8, h1, "s2 example absolute");
        CHECK(strcmp(ak_sparse_name(sp), "s2(bs=1,local=2,vs=3)") == 0, "name %s", ak_sparse_name(sp));
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* relative, causal: kept iff L = max(0, m - k - 1) is a multiple of 3: m - k in {0, 1, 4, 7} */
    p.relative = 1;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 8, 8, &p, &sp), AK_OK);
    if (sp) {
        static const char *hr[] = {"10000000", "11000000", "01100000", "00110000", "10011000", "01001100", "00100110", "10010011"};
        expect_mask(sp, 0, 8, 8, hr, "s2 example relative");
        expect_mask(sp, 1, 8, 8, hr, "s2 example relative (no per-head rotation)");
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* bs = 2 with the token-causal diagonal: blocks {0, 2} vertical (vs 2), local 1 */
    ak_s2_params_init(&p);
    p.num_heads_q = 1, p.num_heads_kv = 1, p.block = 2, p.local_blocks = 1, p.vert_stride = 2;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 6, 6, &p, &sp), AK_OK);
    if (sp) {
        static const char *e[] = {"100000", "110000", "111000", "111100", "110010", "110011"};
        expect_mask(sp, 0, 6, 6, e, "s2 example bs=2");
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* the same with nq = 3 < nk = 6 (offset 3, not a multiple of 2: rows gathered by query block) */
    CHECK_STATUS(ak_sparse_s2(g_ctx, 3, 6, &p, &sp), AK_OK);
    if (sp) {
        static const char *e[] = {"111100", "110010", "110011"};
        expect_mask(sp, 0, 3, 6, e, "s2 example chunk");
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* dense head (the last), offset 1: head 0 verticals where (k + 1) % 2 == 0 -> odd blocks */
    ak_s2_params_init(&p);
    p.num_heads_q = 2, p.num_heads_kv = 2, p.block = 1, p.local_blocks = 1, p.vert_stride = 2, p.num_dense_heads = 1;
    p.head_sliding_offset = 1;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 5, 5, &p, &sp), AK_OK);
    if (sp) {
        static const char *h0[] = {"10000", "01000", "01100", "01010", "01011"};
        static const char *h1[] = {"10000", "11000", "11100", "11110", "11111"};
        expect_mask(sp, 0, 5, 5, h0, "s2 example offset");
        expect_mask(sp, 1, 5, 5, h1, "s2 example dense head");
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* default parameters: the Phi-3-small name */
    ak_s2_params_init(&p);
    CHECK(p.block == 64 && p.local_blocks == 16 && p.vert_stride == 8 && p.relative == 0 && p.causal == 1 && p.fix_coverage == 1 &&
              p.num_dense_heads == 0 && p.head_sliding_offset == 0 && p.homo_head == 0,
          "s2 defaults");
    CHECK_STATUS(ak_sparse_s2(g_ctx, 128, 128, &p, &sp), AK_OK);
    if (sp) {
        CHECK(strcmp(ak_sparse_name(sp), "s2(bs=64,local=16,vs=8)") == 0, "default name %s", ak_sparse_name(sp));
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* spec 4.5: Phi-3-small at 8K (M = 128): the last row has 30 blocks (16 local + 14 vertical) per head,
     * and about 21 of 64.5 blocks per row on average (density ~ 0.326 of causal) */
    CHECK_STATUS(ak_sparse_s2(g_ctx, 1, 8192, &p, &sp), AK_OK);
    if (sp) {
        uint8_t *m = (uint8_t *)malloc(8192);
        for (int h = 0; h < 8; h++) {
            int64_t cnt = 0;
            ak_sparse_mask(sp, 0, h, m);
            for (int j = 0; j < 8192; j++)
                cnt += m[j];
            CHECK(cnt == 30 * 64, "Phi-3-small 8K, head %d: the last row sees %lld keys, expected 30 blocks", h, (long long)cnt);
        }
        free(m);
        ak_sparse_destroy(sp), sp = NULL;
    }
    CHECK_STATUS(ak_sparse_s2(g_ctx, 8192, 8192, &p, &sp), AK_OK);
    if (sp) {
        ak_sparse_stats s;
        CHECK_STATUS(ak_sparse_get_stats(sp, &s), AK_OK);
        CHECK(fabs(s.density - 21.0 / 64.5) < 0.01, "Phi-3-small 8K density %.4f, spec 4.5 ~ 21 / 64.5", s.density);
        ak_sparse_destroy(sp), sp = NULL;
    }
}

/* Spec 4.6-2: union coverage; the step quirk of 4.3. */
static void group_s2_coverage(void) {
    ak_s2_params p;
    int32_t cov = -1;
    for (int fix = 0; fix <= 1; fix++) {
        ak_s2_params_init(&p); /* Phi-3-small: Hq 32, Hkv 8, vs 8, local 16; 8K tokens = 128 blocks */
        p.fix_coverage = fix;
        CHECK(p.num_heads_q == 32 && p.num_heads_kv == 8, "Phi-3-small heads by default");
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 128, &cov), AK_OK);
        CHECK(cov == 1, "Phi-3-small (fix %d): covered = %d", fix, cov);
        /* spec 4.3's quirk shapes: Hq 32 / Hkv 4 / vs 8 and Hq 4 / Hkv 4 / vs 8. With fix_coverage = 0 the
         * reference's step leaves residues uncovered; with fix_coverage = 1 too: 4 sparse KV heads cannot
         * cover 8 residues whatever the step (coverage needs n_sparse >= vs, and then both steps are 1). */
        p.num_heads_q = 32, p.num_heads_kv = 4;
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 128, &cov), AK_OK);
        CHECK(cov == 0, "Hq 32, Hkv 4, vs 8 (fix %d): covered = %d, expected 0", fix, cov);
        p.num_heads_q = 4, p.num_heads_kv = 4;
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 128, &cov), AK_OK);
        CHECK(cov == 0, "Hq 4, Hkv 4, vs 8 (fix %d): covered = %d, expected 0", fix, cov);
        /* enough sparse heads: 12 sparse of 16 (4 dense), MHA with 8 heads, vs 8 */
        p.num_heads_q = 16, p.num_heads_kv = 16, p.num_dense_heads = 4;
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 128, &cov), AK_OK);
        CHECK(cov == 1, "16 KV heads, 4 dense (fix %d): covered = %d", fix, cov);
        p.num_heads_q = 8, p.num_heads_kv = 8, p.num_dense_heads = 0;
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 128, &cov), AK_OK);
        CHECK(cov == 1, "8 KV heads, vs 8 (fix %d): covered = %d", fix, cov);
        /* homo_head: one residue only */
        p.homo_head = 1;
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 128, &cov), AK_OK);
        CHECK(cov == 0, "homo_head (fix %d): covered = %d", fix, cov);
        /* a context within the local window is always covered */
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 16, &cov), AK_OK);
        CHECK(cov == 1, "n_blocks = local (fix %d): covered = %d", fix, cov);
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 0, &cov), AK_OK);
        CHECK(cov == 1, "n_blocks = 0: covered = %d", cov);
    }
    /* What fix_coverage changes in the quirk shape Hq 32, Hkv 4, vs 8: the residues of the 4 KV heads,
     * reference step 1: {0, 7, 6, 5}; fixed step 8 / 4 = 2: {0, 6, 4, 2} (evenly spread). Read from the
     * plan: bs 1, local 1, the last row of 24 keys sees its own key and the verticals. */
    static const char *want[2][4] = {{"100000001000000010000001", "000000010000000100000001", "000000100000001000000011",
                                      "000001000000010000000101"},
                                     {"100000001000000010000001", "000000100000001000000011", "000010000000100000001001",
                                      "001000000010000000100001"}};
    for (int fix = 0; fix <= 1; fix++) {
        ak_s2_params_init(&p);
        p.num_heads_q = 32, p.num_heads_kv = 4, p.block = 1, p.local_blocks = 1, p.fix_coverage = fix;
        ak_sparse *sp = NULL;
        CHECK_STATUS(ak_sparse_s2(g_ctx, 1, 24, &p, &sp), AK_OK);
        for (int h = 0; sp && h < 4; h++) {
            const char *row[1] = {want[fix][h]};
            expect_mask(sp, h, 1, 24, row, fix ? "s2 residues, fixed step" : "s2 residues, reference step");
        }
        ak_sparse_destroy(sp);
        /* coverage of a short context needing the residues {0, 1} (n_blocks - local = 2): neither */
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 3, &cov), AK_OK);
        CHECK(cov == 0, "short context, fix %d: covered = %d", fix, cov);
        /* ... and {0, 2} (offset 0, n_blocks - local = 1 needs {0} only): both */
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 2, &cov), AK_OK);
        CHECK(cov == 1, "n_blocks 2, fix %d: covered = %d", fix, cov);
    }
    /* Differential: ak_s2_coverage against the union of the plan's block masks (bs 1, nq = nk = n_blocks). */
    rng r = rng_seed(4242);
    int n_true = 0, n_false = 0;
    for (int c = 0; c < 120; c++) {
        s2_random_params(&r, &p);
        p.block = 1;
        int32_t n = 1 + rng_int(&r, 40);
        ak_sparse *sp = NULL;
        CHECK_STATUS(ak_sparse_s2(g_ctx, n, n, &p, &sp), AK_OK);
        CHECK_STATUS(ak_s2_coverage(g_ctx, &p, n, &cov), AK_OK);
        if (!sp)
            continue;
        uint8_t *u = (uint8_t *)calloc((size_t)n * n, 1), *mask = (uint8_t *)malloc((size_t)n * n);
        for (int h = 0; h < p.num_heads_kv; h++) {
            ak_sparse_mask(sp, 0, h, mask);
            for (int64_t e = 0; e < (int64_t)n * n; e++)
                u[e] |= mask[e];
        }
        int all = 1;
        for (int64_t i = 0; i < n && all; i++)
            for (int64_t j = 0; j <= i && all; j++)
                all = u[i * n + j];
        char desc[256];
        s2_case_desc(&p, n, n, desc, sizeof desc);
        CHECK(all == cov, "%s: ak_s2_coverage %d, union of the heads %d", desc, cov, all);
        all ? n_true++ : n_false++;
        free(u), free(mask);
        ak_sparse_destroy(sp);
    }
    CHECK(n_true > 10 && n_false > 10, "coverage cases: %d covered, %d not", n_true, n_false);
}

/* Spec 4.6-3 (vs 1 and local >= M give dense causal) and 4.6-4 (KV-efficiency). */
static void group_s2_dense_kv(void) {
    ak_s2_params p;
    for (int rel = 0; rel <= 1; rel++)
        for (int which = 0; which < 2; which++) {
            ak_s2_params_init(&p);
            p.num_heads_q = 8, p.num_heads_kv = 4, p.block = 4, p.relative = rel;
            int32_t n = 4 * 13 + 3; /* M = 14 blocks, the last partial */
            if (which == 0)
                p.vert_stride = 1, p.local_blocks = 2;
            else
                p.local_blocks = 14;
            ak_sparse *sp = NULL;
            CHECK_STATUS(ak_sparse_s2(g_ctx, n, n, &p, &sp), AK_OK);
            for (int h = 0; sp && h < 4; h++)
                CHECK(is_dense_causal(sp, h, n, n), "rel %d %s: head %d is not dense causal", rel, which ? "local >= M" : "vs = 1", h);
            ak_sparse_destroy(sp);
            /* chunked: nq = 21 of nk = 55 */
            CHECK_STATUS(ak_sparse_s2(g_ctx, 21, n, &p, &sp), AK_OK);
            for (int h = 0; sp && h < 4; h++)
                CHECK(is_dense_causal(sp, h, 21, n), "rel %d %s chunked: head %d is not dense causal", rel, which ? "local >= M" : "vs = 1",
                      h);
            ak_sparse_destroy(sp);
        }
    /* all heads dense */
    ak_s2_params_init(&p);
    p.num_heads_q = 4, p.num_heads_kv = 2, p.block = 3, p.num_dense_heads = 2, p.local_blocks = 1, p.vert_stride = 5;
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 40, 40, &p, &sp), AK_OK);
    for (int h = 0; sp && h < 2; h++)
        CHECK(is_dense_causal(sp, h, 40, 40), "num_dense_heads = Hkv: head %d", h);
    ak_sparse_destroy(sp);

    /* KV-efficiency: absolute true, relative false (vs > 1 and more than local + vs blocks) */
    rng r = rng_seed(777);
    for (int c = 0; c < 40; c++) {
        s2_random_params(&r, &p);
        p.causal = 1;
        p.block = 1 + rng_int(&r, 4);
        p.vert_stride = 2 + rng_int(&r, 6);
        p.num_dense_heads = 0;
        int32_t M = p.local_blocks + p.vert_stride + 2 + rng_int(&r, 10), n = M * p.block;
        CHECK_STATUS(ak_sparse_s2(g_ctx, n, n, &p, &sp), AK_OK);
        if (!sp)
            continue;
        uint8_t *bm = (uint8_t *)malloc((size_t)M * M);
        for (int h = 0; h < p.num_heads_kv; h++) {
            block_mask(sp, h, n, p.block, bm);
            char desc[256];
            s2_case_desc(&p, n, n, desc, sizeof desc);
            CHECK(kv_efficient(bm, M) == !p.relative, "%s: head %d kv_efficient = %d", desc, h, kv_efficient(bm, M));
        }
        free(bm);
        ak_sparse_destroy(sp);
    }
}

static void group_s2(void) {
    group_s2_examples();
    group_s2_coverage();
    group_s2_dense_kv();
    /* 4.6-1: the mask equals the formula, random shapes */
    rng r = rng_seed(2024);
    int n_gather = 0;
    for (int c = 0; c < 160; c++) {
        ak_s2_params p;
        s2_random_params(&r, &p);
        int32_t nq, nk;
        random_lengths(&r, p.block, &nq, &nk);
        char desc[256];
        s2_case_desc(&p, nq, nk, desc, sizeof desc);
        ak_sparse *sp = NULL;
        ak_status st = ak_sparse_s2(g_ctx, nq, nk, &p, &sp);
        CHECK(st == AK_OK, "%s: %s (%s)", desc, ak_status_string(st), ak_ctx_last_error(g_ctx));
        if (!sp)
            continue;
        ak_sparse_desc d;
        ak_sparse_desc_init(&d);
        ak_sparse_get_desc(sp, &d);
        n_gather += d.qrow_off != NULL;
        CHECK(d.causal == p.causal, "%s: plan causal %d", desc, d.causal);
        compare_masks(sp, p.num_heads_kv, nq, nk, vis_s2, &p, desc);
        ak_sparse_destroy(sp);
    }
    CHECK(n_gather > 5, "only %d cases with gathered rows", n_gather);
}

/* ---- MoA ------------------------------------------------------------------------------------ */

static void group_moa(void) {
    /* 5.7-1: size conversion, against the spec's rule by hand (N_plan = 1000 + 24 = 1024) */
    static const struct {
        float a, b;
        int64_t S;
    } conv[] = {{0, 0.5f, 512},   {-1024, 0, 128}, {100, 0, 128},   {130, 0, 192},  {5000, 1, 1024},
                {0, 0.1f, 128},   {0, 0.3f, 320},  {-1024, 1, 128}, {1024, 0, 1024}, {64, 0.125f, 192},
                {0, 1, 1024},     {2048, 0, 1024}, {200, 0, 256},   {192, 0, 192},  {-100, 0.25f, 192}};
    int nconv = (int)(sizeof conv / sizeof conv[0]);
    float al[16], be[16];
    for (int i = 0; i < nconv; i++) {
        al[i] = conv[i].a, be[i] = conv[i].b;
        CHECK(moa_S(conv[i].a, conv[i].b, 1024) == conv[i].S, "test's S(%g, %g) = %lld, expected %lld", (double)conv[i].a, (double)conv[i].b,
              (long long)moa_S(conv[i].a, conv[i].b, 1024), (long long)conv[i].S);
    }
    ak_moa_params p;
    ak_moa_params_init(&p);
    CHECK(p.max_new_tokens == 1024 && p.token_exact == 0, "moa defaults");
    p.n_heads = nconv, p.alpha = al, p.beta = be, p.max_new_tokens = 24, p.token_exact = 1;
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_sparse_moa(g_ctx, 1, 1000, &p, &sp), AK_OK); /* decode row: sees min(S, nk) keys */
    if (sp) {
        uint8_t mask[1000];
        for (int h = 0; h < nconv; h++) {
            ak_sparse_mask(sp, 0, h, mask);
            int64_t cnt = 0;
            for (int j = 0; j < 1000; j++)
                cnt += mask[j];
            int64_t want = conv[h].S < 1000 ? conv[h].S : 1000;
            CHECK(cnt == want, "moa head %d (alpha %g beta %g): the decode row sees %lld keys, expected %lld", h, (double)al[h],
                  (double)be[h], (long long)cnt, (long long)want);
        }
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* 5.7-2: alpha 0, beta 1 is dense causal (block and token modes, aligned and unaligned chunks) */
    float a0 = 0, b1 = 1;
    for (int te = 0; te <= 1; te++) {
        ak_moa_params_init(&p);
        p.n_heads = 1, p.alpha = &a0, p.beta = &b1, p.token_exact = te;
        const int32_t shapes[][2] = {{700, 700}, {100, 700}, {128, 700}, {1, 700}, {65, 65}};
        for (int s = 0; s < 5; s++) {
            CHECK_STATUS(ak_sparse_moa(g_ctx, shapes[s][0], shapes[s][1], &p, &sp), AK_OK);
            if (sp)
                CHECK(is_dense_causal(sp, 0, shapes[s][0], shapes[s][1]), "alpha 0 beta 1 (token_exact %d, %d x %d) is not dense causal", te,
                      shapes[s][0], shapes[s][1]);
            ak_sparse_destroy(sp), sp = NULL;
        }
    }
    /* worked example: 256 x 256 (4 blocks), max_new_tokens 0: S = 128 -> blocks {0, m}; S = 256 -> {0} + [m-2, m] */
    {
        float a[2] = {128, 200}, b[2] = {0, 0};
        ak_moa_params_init(&p);
        p.n_heads = 2, p.alpha = a, p.beta = b, p.max_new_tokens = 0;
        CHECK_STATUS(ak_sparse_moa(g_ctx, 256, 256, &p, &sp), AK_OK);
        if (sp) {
            uint8_t bm[16];
            static const char *want[2] = {"1000110010101001", "1000110011101111"};
            for (int h = 0; h < 2; h++) {
                block_mask(sp, h, 256, 64, bm);
                char got[17];
                for (int e = 0; e < 16; e++)
                    got[e] = bm[e] ? '1' : '0';
                got[16] = 0;
                CHECK(strcmp(got, want[h]) == 0, "moa example head %d: blocks %s, expected %s", h, got, want[h]);
            }
            CHECK(!is_dense_causal(sp, 0, 256, 256) && is_dense_causal(sp, 1, 256, 256), "moa example: S = 256 = N is dense, S = 128 not");
            CHECK(strncmp(ak_sparse_name(sp), "moa(", 4) == 0, "moa name %s", ak_sparse_name(sp));
            ak_sparse_destroy(sp), sp = NULL;
        }
    }
    /* 5.7-3: the mask equals the oracle's block sink + band (and the token rule), random shapes */
    rng r = rng_seed(5150);
    static const int avals[] = {-1024, 0, 37, 100, 200, 300, 1024, 4096};
    static const int mnt[] = {0, 17, 64, 1024};
    static const float bvals[] = {0.0f, 0.125f, 0.25f, 0.5f, 1.0f, 0.3f, 0.05f};
    for (int c = 0; c < 80; c++) {
        float a[8], b[8];
        ak_moa_params_init(&p);
        p.n_heads = 1 + rng_int(&r, 4);
        for (int h = 0; h < p.n_heads; h++)
            a[h] = (float)rng_pick(&r, avals, 8), b[h] = bvals[rng_int(&r, 7)];
        p.alpha = a, p.beta = b;
        p.max_new_tokens = rng_pick(&r, mnt, 4);
        p.token_exact = rng_chance(&r, 0.4);
        int32_t nq, nk;
        random_lengths(&r, 64, &nq, &nk);
        nk = nk * 2, nq = nq * 2 - (nq > 0 && rng_chance(&r, 0.5)); /* up to 840 keys, odd offsets too */
        if (nq < 0)
            nq = 0;
        char desc[160];
        snprintf(desc, sizeof desc, "moa nq=%d nk=%d heads=%d new=%d token=%d", nq, nk, p.n_heads, p.max_new_tokens, p.token_exact);
        ak_status st = ak_sparse_moa(g_ctx, nq, nk, &p, &sp);
        CHECK(st == AK_OK, "%s: %s (%s)", desc, ak_status_string(st), ak_ctx_last_error(g_ctx));
        if (!sp)
            continue;
        compare_masks(sp, p.n_heads, nq, nk, vis_moa, &p, desc);
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* 5.7-7: plan file parsing (a small literal file), then the sparse plan's own JSON round trip */
    static const char plan_json[] =
        "{\n  \"alphas\": [[1024, 0, -1024], [2048.0, 512, 0]],\n  \"betas\": [[0, 0.5, 1], [0.125, 0.25e0, 1E-1]],\n"
        "  \"comment\": \"layer 1 is read\"\n}\n";
    float la[4] = {-7, -7, -7, -7}, lb[4] = {-7, -7, -7, -7};
    int32_t nh = -1;
    CHECK_STATUS(ak_moa_load(g_ctx, plan_json, strlen(plan_json), 1, 4, la, lb, &nh), AK_OK);
    CHECK(nh == 3, "moa_load: n_heads = %d", nh);
    CHECK(la[0] == 2048.0f && la[1] == 512.0f && la[2] == 0.0f && la[3] == -7, "moa_load alphas %g %g %g %g", (double)la[0], (double)la[1],
          (double)la[2], (double)la[3]);
    CHECK(lb[0] == 0.125f && lb[1] == 0.25f && lb[2] == 0.1f && lb[3] == -7, "moa_load betas %g %g %g %g", (double)lb[0], (double)lb[1],
          (double)lb[2], (double)lb[3]);
    CHECK_STATUS(ak_moa_load(g_ctx, plan_json, strlen(plan_json), 0, 3, la, lb, &nh), AK_OK);
    CHECK(nh == 3 && la[0] == 1024.0f && la[2] == -1024.0f && lb[1] == 0.5f && lb[2] == 1.0f, "moa_load layer 0");
    ak_moa_params_init(&p);
    p.n_heads = nh, p.alpha = la, p.beta = lb;
    CHECK_STATUS(ak_sparse_moa(g_ctx, 300, 300, &p, &sp), AK_OK);
    if (sp) {
        char *js = NULL;
        size_t jl = 0;
        ak_sparse *back = NULL;
        CHECK_STATUS(ak_sparse_to_json(g_ctx, sp, &js, &jl), AK_OK);
        if (js)
            CHECK_STATUS(ak_sparse_from_json(g_ctx, js, jl, &back), AK_OK);
        if (back) {
            compare_masks(back, 3, 300, 300, vis_moa, &p, "moa JSON round trip");
            CHECK(strcmp(ak_sparse_name(back), ak_sparse_name(sp)) == 0, "round trip name %s vs %s", ak_sparse_name(back),
                  ak_sparse_name(sp));
        }
        ak_sparse_destroy(back);
        ak_free(g_ctx, js);
        ak_sparse_destroy(sp), sp = NULL;
    }
}

/* ---- SF-Attn -------------------------------------------------------------------------------- */

static void group_sfattn(void) {
    ak_sfattn_params p;
    ak_sparse *sp = NULL;
    ak_sfattn_params_init(&p);
    CHECK(p.n_sink == 4 && p.shift_lo == -1 && p.shift_hi == -1, "sfattn defaults");
    /* worked example: N 8, G 4, one sink, Hq 2 (head 1 shifted by default) */
    p.num_heads_q = 2, p.group = 4, p.n_sink = 1;
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 8, 8, &p, &sp), AK_OK);
    if (sp) {
        static const char *h0[] = {"10000000", "11000000", "11100000", "11110000", "10001000", "10001100", "10001110", "10001111"};
        static const char *h1[] = {"10000000", "11000000", "10100000", "10110000", "10111000", "10111100", "10000010", "10000011"};
        expect_mask(sp, 0, 8, 8, h0, "sfattn example unshifted");
        expect_mask(sp, 1, 8, 8, h1, "sfattn example shifted");
        CHECK(strcmp(ak_sparse_name(sp), "sfattn(G=4,sink=1,shift=[1,2))") == 0, "sfattn name %s", ak_sparse_name(sp));
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* 6.6-3: G = N and g = 0 with no shifted head is causal dense; the default set keeps the first half dense */
    ak_sfattn_params_init(&p);
    p.num_heads_q = 4, p.group = 96, p.n_sink = 0, p.shift_lo = 0, p.shift_hi = 0;
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 96, 96, &p, &sp), AK_OK);
    for (int h = 0; sp && h < 4; h++)
        CHECK(is_dense_causal(sp, h, 96, 96), "G = N, g = 0, no shift: head %d not dense causal", h);
    ak_sparse_destroy(sp), sp = NULL;
    p.shift_lo = p.shift_hi = -1;
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 96, 96, &p, &sp), AK_OK);
    for (int h = 0; sp && h < 4; h++)
        CHECK(is_dense_causal(sp, h, 96, 96) == (h < 2), "G = N, g = 0, default shift: head %d dense = %d", h, is_dense_causal(sp, h, 96, 96));
    ak_sparse_destroy(sp), sp = NULL;
    /* random shapes against the formula, plus the properties of 6.6-3 read from the plan */
    rng r = rng_seed(66);
    static const int gvals[] = {2, 4, 6, 8, 10, 16, 24, 34, 64, 128, 134, 256};
    for (int c = 0; c < 60; c++) {
        ak_sfattn_params_init(&p);
        p.num_heads_q = 1 + rng_int(&r, 6);
        p.group = rng_pick(&r, gvals, 12);
        int32_t n = p.group * (rng_int(&r, 5) + (rng_chance(&r, 0.1) ? 0 : 1));
        if (n > 700)
            n = p.group * (700 / p.group);
        p.n_sink = rng_chance(&r, 0.2) ? 0 : rng_int(&r, 9);
        if (rng_chance(&r, 0.5)) {
            p.shift_lo = rng_int(&r, p.num_heads_q + 1);
            p.shift_hi = p.shift_lo + rng_int(&r, p.num_heads_q - p.shift_lo + 1);
        }
        char desc[160];
        snprintf(desc, sizeof desc, "sfattn n=%d hq=%d G=%d g=%d shift=[%d,%d)", n, p.num_heads_q, p.group, p.n_sink, p.shift_lo, p.shift_hi);
        ak_status st = ak_sparse_sfattn(g_ctx, n, n, &p, &sp);
        CHECK(st == AK_OK, "%s: %s (%s)", desc, ak_status_string(st), ak_ctx_last_error(g_ctx));
        if (!sp)
            continue;
        compare_masks(sp, p.num_heads_q, n, n, vis_sf, &p, desc);
        uint8_t *mask = (uint8_t *)malloc((size_t)n * n + 1);
        int32_t lo = p.shift_lo < 0 ? p.num_heads_q / 2 : p.shift_lo, hi = p.shift_hi < 0 ? p.num_heads_q : p.shift_hi;
        for (int h = 0; h < p.num_heads_q; h++) {
            ak_sparse_mask(sp, 0, h, mask);
            int64_t future = 0, sink_miss = 0, win_bad = 0;
            int shifted = h >= lo && h < hi;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) {
                    int v = mask[i * n + j];
                    future += v && j > i;
                    sink_miss += !v && j < p.n_sink && j <= i;
                    /* window of row i beyond the sinks: [ws, i] with ws the start of its (shifted) group */
                    int64_t ws = shifted ? (i < p.group / 2 ? 0 : (i - p.group / 2) / p.group * p.group + p.group / 2) : i / p.group * p.group;
                    int in_win = j >= ws && j <= i;
                    if (j >= p.n_sink)
                        win_bad += v != in_win;
                }
            CHECK(future == 0, "%s: head %d sees %lld future keys", desc, h, (long long)future);
            CHECK(sink_miss == 0, "%s: head %d misses %lld sink pairs", desc, h, (long long)sink_miss);
            CHECK(win_bad == 0, "%s: head %d: %lld pairs off its %s windows", desc, h, (long long)win_bad, shifted ? "shifted" : "plain");
        }
        free(mask);
        ak_sparse_destroy(sp), sp = NULL;
    }
}

/* ---- the executor against the reference ------------------------------------------------------ */

/* The masked naive fp32 reference (tests/README.md, naive32): per row, scores fl32(scale * dot_f32),
 * rounded to the compute dtype for bf16 inputs, softmax in float, P rounded, O = P V in float, then
 * rounded to dtype_o. Visible = the plan's element mask (of the query head's plan head) and desc.causal. */
static void naive_sparse32(const problem *pb, const ak_sparse *sp, int32_t plan_heads, naive_out *out) {
    const ak_attn_desc *d = &pb->d;
    int64_t Hq = d->num_heads_q, Hkv = d->num_heads_kv, g = Hq / Hkv, lq = d->seqlen_q, lk = d->seqlen_k, hd = d->head_dim, dv = pb->dv;
    ak_dtype cdt = (d->dtype_q == AK_BF16 || d->dtype_kv == AK_BF16) ? AK_BF16 : AK_F32;
    float scale = (float)(1.0 / sqrt((double)hd));
    /* the inputs as stored, dense row-major [B][H][L][D] (exact in double, so exact back in float) */
    double *q = (double *)malloc(sizeof(double) * (size_t)(tbuf_numel(&pb->q) + 1));
    double *k = (double *)malloc(sizeof(double) * (size_t)(tbuf_numel(&pb->k) + 1));
    double *v = (double *)malloc(sizeof(double) * (size_t)(tbuf_numel(&pb->v) + 1));
    tbuf_to_f64(&pb->q, q), tbuf_to_f64(&pb->k, k), tbuf_to_f64(&pb->v, v);
    uint8_t *mask = (uint8_t *)malloc((size_t)(lq * lk) + 1);
    double *sc = (double *)malloc(sizeof(double) * (size_t)(lk + 1));
    float *acc = (float *)malloc(sizeof(float) * (size_t)dv);
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < Hq; h++) {
            int32_t ph = plan_heads == 1 ? 0 : plan_heads == Hq ? (int32_t)h : (int32_t)(h / g);
            const double *kh = k + ((b * Hkv + h / g) * lk) * hd, *vh = v + ((b * Hkv + h / g) * lk) * dv;
            ak_sparse_mask(sp, 0, ph, mask);
            for (int64_t i = 0; i < lq; i++) {
                int64_t row = (b * Hq + h) * lq + i, n = 0, pos = i + lk - lq;
                const double *qi = q + row * hd;
                float m = -INFINITY;
                for (int64_t j = 0; j < lk; j++) {
                    if (!mask[i * lk + j] || (d->causal && j > pos)) {
                        sc[j] = -INFINITY;
                        continue;
                    }
                    float dot = 0.0f;
                    for (int64_t c = 0; c < hd; c++)
                        dot += (float)qi[c] * (float)kh[j * hd + c];
                    float x = (float)tu_round_to(cdt, scale * dot);
                    sc[j] = x;
                    m = x > m ? x : m;
                    n++;
                }
                out->nvis[row] = (int32_t)n;
                for (int64_t c = 0; c < dv; c++)
                    out->o[row * dv + c] = 0.0;
                out->lse[row] = -INFINITY;
                if (n == 0)
                    continue;
                float sum = 0.0f;
                for (int64_t j = 0; j < lk; j++)
                    if (sc[j] != -INFINITY)
                        sum += expf((float)sc[j] - m);
                for (int64_t c = 0; c < dv; c++)
                    acc[c] = 0.0f;
                for (int64_t j = 0; j < lk; j++) {
                    if (sc[j] == -INFINITY)
                        continue;
                    float pj = (float)tu_round_to(cdt, expf((float)sc[j] - m) / sum);
                    for (int64_t c = 0; c < dv; c++)
                        acc[c] += pj * (float)vh[j * dv + c];
                }
                for (int64_t c = 0; c < dv; c++)
                    out->o[row * dv + c] = tu_round_to(d->dtype_o, acc[c]);
                out->lse[row] = (double)(m + logf(sum));
            }
        }
    free(q), free(k), free(v), free(mask), free(sc), free(acc);
}

/* One executor case: plan sp (plan_heads heads) on a random problem; 1 and 2 threads identical, the rule
 * against ak_attention_ref_sparse with f64 outputs. */
static void exec_case(const char *what, const ak_sparse *sp, int32_t plan_heads, int32_t B, int32_t Hq, int32_t Hkv, int32_t nq, int32_t nk,
                      int32_t hd, int32_t dv, ak_dtype dt_in, ak_dtype dt_o, int causal, uint64_t seed) {
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = B, d.num_heads_q = Hq, d.num_heads_kv = Hkv, d.seqlen_q = nq, d.seqlen_k = nk;
    d.head_dim = hd, d.head_dim_v = dv, d.dtype_q = dt_in, d.dtype_kv = dt_in, d.dtype_o = dt_o;
    d.causal = causal, d.return_lse = 1;
    problem pb;
    problem_opts po;
    problem_opts_default(&po);
    rng r = rng_seed(seed);
    if (problem_create(&pb, &d, 0, 0, &po, &r) != 0) {
        CHECK(0, "%s: problem_create failed", what);
        return;
    }
    tbuf o2, l2;
    tbuf_make_like(&o2, &pb.o);
    tbuf_make_like(&l2, &pb.lse);
    ak_plan *p1 = NULL, *p2 = NULL;
    ak_status s1 = ak_plan_create_sparse(g_ctx1, &d, sp, &p1), s2 = ak_plan_create_sparse(g_ctx2, &d, sp, &p2);
    CHECK(s1 == AK_OK && s2 == AK_OK, "%s: plan %s / %s (%s)", what, ak_status_string(s1), ak_status_string(s2), ak_ctx_last_error(g_ctx1));
    ak_attn_tensors t1 = problem_tensors(&pb, &pb.o, &pb.lse), t2 = problem_tensors(&pb, &o2, &l2);
    if (p1 && p2) {
        CHECK_STATUS(ak_attention_run(p1, &t1, NULL, 0), AK_OK);
        CHECK_STATUS(ak_attention_run(p2, &t2, NULL, 0), AK_OK);
        CHECK(tbuf_same_bytes(&pb.o, &o2) && tbuf_same_bytes(&pb.lse, &l2), "%s: 1 and 2 threads differ", what);
        naive_out ref, n32;
        naive_alloc(&ref, &d, &t1);
        naive_alloc(&n32, &d, &t1);
        ak_attn_desc d64 = d;
        d64.dtype_o = AK_F64;
        ak_attn_tensors tr = t1;
        tr.o = ak_tensor_4d(ref.o, AK_F64, B, Hq, nq, pb.dv);
        tr.lse = ak_tensor_3d(ref.lse, AK_F64, B, Hq, nq);
        for (int64_t e = 0; e < ref.n_rows; e++) {
            ref.lse[e] = NAN;
            for (int64_t c = 0; c < ref.dv; c++)
                ref.o[e * ref.dv + c] = NAN;
        }
        CHECK_STATUS(ak_attention_ref_sparse(g_ctx, &d64, sp, &tr), AK_OK);
        naive_sparse32(&pb, sp, plan_heads, &n32);
        memcpy(ref.nvis, n32.nvis, sizeof(int32_t) * (size_t)ref.n_rows);
        int64_t empty = 0;
        for (int64_t e = 0; e < ref.n_rows; e++)
            empty += n32.nvis[e] == 0;
        char msg[512];
        int ok = check_rule(&pb, &pb.o, &pb.lse, &ref, &n32, msg, sizeof msg);
        CHECK(ok, "%s: %s", what, msg);
        if (g_verbose)
            printf("%-60s %s (%lld empty rows)\n", what, msg, (long long)empty);
        naive_free(&ref), naive_free(&n32);
    }
    ak_plan_destroy(p1), ak_plan_destroy(p2);
    tbuf_free(&o2), tbuf_free(&l2);
    problem_destroy(&pb);
}

static void group_exec(void) {
    ak_sparse *sp = NULL;
    char what[160];
    /* S2 */
    struct {
        int32_t Hq, Hkv, nq, nk, bs, local, vs, rel, causal, homo, dense, off, fix, right;
    } s2c[] = {
        {4, 2, 200, 200, 16, 3, 4, 0, 1, 0, 0, 1, 1, 0},     /* absolute, GQA */
        {6, 3, 37, 211, 16, 2, 3, 0, 1, 0, 1, 0, 0, 0},      /* chunk at an unaligned offset (gathered rows), a dense head */
        {4, 4, 160, 160, 8, 2, 3, 1, 0, 0, 0, 0, 1, 2},      /* relative, bidirectional */
        {8, 2, 130, 130, 16, 1, 2, 1, 1, 0, 1, 0, 1, 0},     /* relative causal, a dense head */
        {2, 1, 150, 120, 16, 2, 3, 0, 1, 1, 0, 0, 1, 0},     /* nq > nk: the first rows see nothing */
        {4, 2, 96, 96, 16, 2, 4, 0, 0, 0, 0, 3, 1, 0},       /* absolute, bidirectional */
    };
    for (int c = 0; c < (int)(sizeof s2c / sizeof s2c[0]); c++) {
        ak_s2_params p;
        ak_s2_params_init(&p);
        p.num_heads_q = s2c[c].Hq, p.num_heads_kv = s2c[c].Hkv, p.block = s2c[c].bs, p.local_blocks = s2c[c].local;
        p.vert_stride = s2c[c].vs, p.relative = s2c[c].rel, p.causal = s2c[c].causal, p.homo_head = s2c[c].homo;
        p.num_dense_heads = s2c[c].dense, p.head_sliding_offset = s2c[c].off, p.fix_coverage = s2c[c].fix, p.local_right = s2c[c].right;
        CHECK_STATUS(ak_sparse_s2(g_ctx, s2c[c].nq, s2c[c].nk, &p, &sp), AK_OK);
        if (!sp)
            continue;
        for (int dt = 0; dt < 2; dt++) {
            if (g_quick && dt != (c & 1))
                continue;
            snprintf(what, sizeof what, "exec %s %s nq=%d nk=%d hq=%d hkv=%d", ak_sparse_name(sp), dt ? "bf16" : "f32", s2c[c].nq, s2c[c].nk,
                     s2c[c].Hq, s2c[c].Hkv);
            exec_case(what, sp, s2c[c].Hkv, 1 + (c & 1), s2c[c].Hq, s2c[c].Hkv, s2c[c].nq, s2c[c].nk, dt ? 64 : 40, dt ? 64 : 24,
                      dt ? AK_BF16 : AK_F32, dt ? AK_BF16 : AK_F32, s2c[c].causal, 100 + (uint64_t)c * 2 + (uint64_t)dt);
        }
        ak_sparse_destroy(sp), sp = NULL;
    }
    /* MoA: one rule per KV head and one per query head, block and token bands, a chunk */
    {
        float a[4] = {-1024, 128, 0, 300}, b[4] = {0, 0, 0.25f, 0.125f};
        ak_moa_params p;
        ak_moa_params_init(&p);
        p.alpha = a, p.beta = b, p.max_new_tokens = 0;
        const struct {
            int32_t heads, Hq, Hkv, nq, nk, token;
        } mc[] = {{2, 4, 2, 420, 420, 0}, {4, 4, 2, 333, 333, 1}, {2, 6, 2, 70, 333, 0}, {4, 4, 4, 1, 500, 0}, {1, 2, 1, 129, 400, 1}};
        for (int c = 0; c < 5; c++) {
            p.n_heads = mc[c].heads, p.token_exact = mc[c].token;
            CHECK_STATUS(ak_sparse_moa(g_ctx, mc[c].nq, mc[c].nk, &p, &sp), AK_OK);
            if (!sp)
                continue;
            for (int dt = 0; dt < 2; dt++) {
                if (g_quick && dt != (c & 1))
                    continue;
                snprintf(what, sizeof what, "exec %s %s nq=%d nk=%d hq=%d hkv=%d", ak_sparse_name(sp), dt ? "bf16" : "f32", mc[c].nq,
                         mc[c].nk, mc[c].Hq, mc[c].Hkv);
                exec_case(what, sp, mc[c].heads, 1, mc[c].Hq, mc[c].Hkv, mc[c].nq, mc[c].nk, 32, 32, dt ? AK_BF16 : AK_F32,
                          AK_F32, 1, 200 + (uint64_t)c * 2 + (uint64_t)dt);
            }
            ak_sparse_destroy(sp), sp = NULL;
        }
    }
    /* SF-Attn: per query head plans under GQA */
    {
        const struct {
            int32_t Hq, Hkv, n, G, g;
        } fc[] = {{4, 2, 192, 64, 4}, {6, 3, 120, 24, 0}, {2, 1, 136, 68, 4}};
        for (int c = 0; c < 3; c++) {
            ak_sfattn_params p;
            ak_sfattn_params_init(&p);
            p.num_heads_q = fc[c].Hq, p.group = fc[c].G, p.n_sink = fc[c].g;
            CHECK_STATUS(ak_sparse_sfattn(g_ctx, fc[c].n, fc[c].n, &p, &sp), AK_OK);
            if (!sp)
                continue;
            for (int dt = 0; dt < 2; dt++) {
                if (g_quick && dt != (c & 1))
                    continue;
                snprintf(what, sizeof what, "exec %s %s n=%d hq=%d hkv=%d", ak_sparse_name(sp), dt ? "bf16" : "f32", fc[c].n, fc[c].Hq,
                         fc[c].Hkv);
                exec_case(what, sp, fc[c].Hq, 1 + (c & 1), fc[c].Hq, fc[c].Hkv, fc[c].n, fc[c].n, 48, 48, dt ? AK_BF16 : AK_F32,
                          dt ? AK_BF16 : AK_F32, 1, 300 + (uint64_t)c * 2 + (uint64_t)dt);
            }
            ak_sparse_destroy(sp), sp = NULL;
        }
    }
}

/* ---- invalid parameters ---------------------------------------------------------------------- */

/* Expect `st` from a builder call, *out left NULL, and a last-error message. */
#define CHECK_BUILD(call, expected, outp)                                                                                  \
    do {                                                                                                                   \
        outp = (ak_sparse *)(uintptr_t)1;                                                                                  \
        CHECK_STATUS(call, expected);                                                                                      \
        CHECK(outp == NULL, "%s: *out not cleared", #call);                                                               \
        CHECK(ak_ctx_last_error(g_ctx)[0] != 0, "%s: no last-error message", #call);                                       \
        if (outp && outp != (ak_sparse *)(uintptr_t)1)                                                                     \
            ak_sparse_destroy(outp);                                                                                       \
        outp = NULL;                                                                                                       \
    } while (0)

static void group_invalid(void) {
    ak_sparse *sp = NULL;
    ak_s2_params p, q;
    ak_s2_params_init(&p);
    p.num_heads_q = 4, p.num_heads_kv = 2;
    int32_t cov = 0;
    CHECK_STATUS(ak_sparse_s2(NULL, 8, 8, &p, &sp), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_s2(g_ctx, 8, 8, &p, NULL), AK_ERR_NULL_POINTER);
    CHECK_BUILD(ak_sparse_s2(g_ctx, 8, 8, NULL, &sp), AK_ERR_NULL_POINTER, sp);
    CHECK_BUILD(ak_sparse_s2(g_ctx, -1, 8, &p, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    CHECK_BUILD(ak_sparse_s2(g_ctx, 8, -1, &p, &sp), AK_ERR_INVALID_ARGUMENT, sp);
#define S2_BAD(field, value, status)                                                                                       \
    do {                                                                                                                   \
        q = p;                                                                                                             \
        q.field = value;                                                                                                   \
        CHECK_BUILD(ak_sparse_s2(g_ctx, 64, 64, &q, &sp), status, sp);                                                     \
        CHECK_STATUS(ak_s2_coverage(g_ctx, &q, 4, &cov), status);                                                          \
    } while (0)
    S2_BAD(vert_stride, 0, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(vert_stride, -3, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(block, 0, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(local_blocks, 0, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(num_dense_heads, 3, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(num_dense_heads, -1, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(num_heads_q, 3, AK_ERR_GQA_RATIO);
    S2_BAD(num_heads_q, 0, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(num_heads_kv, 0, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(homo_head, 2, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(relative, -1, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(causal, 2, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(fix_coverage, 5, AK_ERR_INVALID_ARGUMENT);
    S2_BAD(local_right, -1, AK_ERR_INVALID_ARGUMENT);
    q = p;
    q.homo_head = 1, q.num_dense_heads = 1;
    CHECK_BUILD(ak_sparse_s2(g_ctx, 64, 64, &q, &sp), AK_ERR_INVALID_ARGUMENT, sp);
#undef S2_BAD
    CHECK_STATUS(ak_s2_coverage(NULL, &p, 4, &cov), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_s2_coverage(g_ctx, NULL, 4, &cov), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_s2_coverage(g_ctx, &p, 4, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_s2_coverage(g_ctx, &p, -1, &cov), AK_ERR_INVALID_ARGUMENT);
    /* valid edge values */
    q = p;
    q.num_dense_heads = 2, q.head_sliding_offset = -2147483647;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 0, 0, &q, &sp), AK_OK);
    ak_sparse_destroy(sp), sp = NULL;
    q.num_dense_heads = 0, q.block = 2147483647, q.local_blocks = 2147483647, q.vert_stride = 2147483647;
    CHECK_STATUS(ak_sparse_s2(g_ctx, 5, 9, &q, &sp), AK_OK);
    if (sp)
        compare_masks(sp, 2, 5, 9, vis_s2, &q, "s2 huge parameters");
    ak_sparse_destroy(sp), sp = NULL;

    /* MoA */
    float a[3] = {0, 128, 1024}, b[3] = {0.5f, 0, 0};
    ak_moa_params m, n;
    ak_moa_params_init(&m);
    m.n_heads = 3, m.alpha = a, m.beta = b;
    CHECK_STATUS(ak_sparse_moa(NULL, 8, 8, &m, &sp), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_moa(g_ctx, 8, 8, &m, NULL), AK_ERR_NULL_POINTER);
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, NULL, &sp), AK_ERR_NULL_POINTER, sp);
    CHECK_BUILD(ak_sparse_moa(g_ctx, -2, 8, &m, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    n = m, n.n_heads = 0;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    n = m, n.alpha = NULL;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_NULL_POINTER, sp);
    n = m, n.beta = NULL;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_NULL_POINTER, sp);
    n = m, n.max_new_tokens = -1;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    n = m, n.token_exact = 2;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    float bad[3] = {0, NAN, 0}, inf[3] = {INFINITY, 0, 0};
    n = m, n.alpha = bad;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    n = m, n.beta = inf;
    CHECK_BUILD(ak_sparse_moa(g_ctx, 8, 8, &n, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    float big[3] = {3e38f, -3e38f, 0}, bigb[3] = {3e38f, -3e38f, 1};
    n = m, n.alpha = big, n.beta = bigb, n.max_new_tokens = 2147483647; /* valid: clipped to [128, N_plan] */
    CHECK_STATUS(ak_sparse_moa(g_ctx, 100, 300, &n, &sp), AK_OK);
    if (sp)
        compare_masks(sp, 3, 100, 300, vis_moa, &n, "moa extreme alpha/beta");
    ak_sparse_destroy(sp), sp = NULL;

    /* MoA plan files */
    float la[4], lb[4];
    int32_t nh = 0;
    const char *good = "{\"alphas\": [[1, 2]], \"betas\": [[0.5, 0.25]]}";
#define LOAD(text, layer, maxh, status)                                                                                    \
    do {                                                                                                                   \
        const char *t_ = (text);                                                                                           \
        CHECK_STATUS(ak_moa_load(g_ctx, t_, strlen(t_), layer, maxh, la, lb, &nh), status);                                \
        if ((status) != AK_OK)                                                                                             \
            CHECK(ak_ctx_last_error(g_ctx)[0] != 0, "moa_load %s: no message", t_);                                      \
    } while (0)
    LOAD(good, 0, 4, AK_OK);
    CHECK(nh == 2 && la[1] == 2.0f && lb[1] == 0.25f, "moa_load good");
    LOAD(good, 1, 4, AK_ERR_BAD_PLAN);                                                  /* absent layer */
    LOAD(good, -1, 4, AK_ERR_BAD_PLAN);                                                 /* negative layer */
    LOAD(good, 0, 1, AK_ERR_INVALID_ARGUMENT);                                          /* more heads than max_heads */
    CHECK(nh == 2, "moa_load: n_heads = %d reported when max_heads is too small", nh);
    LOAD("{\"alphas\": [[1, 2]], \"betas\": [[0.5, 0.25]", 0, 4, AK_ERR_BAD_PLAN);      /* truncated */
    LOAD("{\"alphas\": [[1, 2]]}", 0, 4, AK_ERR_BAD_PLAN);                              /* no betas */
    LOAD("{\"alphas\": [[1, 2], [3]], \"betas\": [[0, 0], [0]]}", 0, 4, AK_ERR_BAD_PLAN); /* ragged rows */
    LOAD("{\"alphas\": [[1, 2]], \"betas\": [[0, 0, 0]]}", 0, 4, AK_ERR_BAD_PLAN);      /* betas' rows differ */
    LOAD("{\"alphas\": [[1, 2]], \"betas\": [[0, 0], [0, 0]]}", 0, 4, AK_ERR_BAD_PLAN); /* layer counts differ */
    LOAD("{\"alphas\": [[1, \"2\"]], \"betas\": [[0, 0]]}", 0, 4, AK_ERR_BAD_PLAN);     /* not a number */
    LOAD("{\"alphas\": [[1, 1e999]], \"betas\": [[0, 0]]}", 0, 4, AK_ERR_BAD_PLAN);     /* not finite */
    LOAD("{\"alphas\": [[1, 1e39]], \"betas\": [[0, 0]]}", 0, 4, AK_ERR_BAD_PLAN);      /* beyond float */
    LOAD("{\"alphas\": [1, 2], \"betas\": [[0, 0]]}", 0, 4, AK_ERR_BAD_PLAN);           /* rows not arrays */
    LOAD("{\"alphas\": {}, \"betas\": [[0, 0]]}", 0, 4, AK_ERR_BAD_PLAN);               /* not an array */
    LOAD("[[1, 2]]", 0, 4, AK_ERR_BAD_PLAN);                                            /* root not an object */
    LOAD("{\"alphas\": [[]], \"betas\": [[]]}", 0, 4, AK_ERR_BAD_PLAN);                 /* no heads */
    LOAD("", 0, 4, AK_ERR_BAD_PLAN);
    CHECK_STATUS(ak_moa_load(NULL, good, strlen(good), 0, 4, la, lb, &nh), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_moa_load(g_ctx, NULL, 5, 0, 4, la, lb, &nh), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_moa_load(g_ctx, good, strlen(good), 0, 4, NULL, lb, &nh), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_moa_load(g_ctx, good, strlen(good), 0, 4, la, NULL, &nh), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_moa_load(g_ctx, good, strlen(good), 0, 4, la, lb, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_moa_load(g_ctx, good, strlen(good), 0, -1, la, lb, &nh), AK_ERR_INVALID_ARGUMENT);
#undef LOAD

    /* SF-Attn */
    ak_sfattn_params f, e;
    ak_sfattn_params_init(&f);
    f.num_heads_q = 4, f.group = 8;
    CHECK_STATUS(ak_sparse_sfattn(NULL, 16, 16, &f, &sp), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 16, 16, &f, NULL), AK_ERR_NULL_POINTER);
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, 16, 16, NULL, &sp), AK_ERR_NULL_POINTER, sp);
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, 8, 16, &f, &sp), AK_ERR_INVALID_ARGUMENT, sp);  /* nq != nk */
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, 12, 12, &f, &sp), AK_ERR_INVALID_ARGUMENT, sp); /* N % G */
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, -8, -8, &f, &sp), AK_ERR_INVALID_ARGUMENT, sp);
#define SF_BAD(field, value)                                                                                               \
    do {                                                                                                                   \
        e = f;                                                                                                             \
        e.field = value;                                                                                                   \
        CHECK_BUILD(ak_sparse_sfattn(g_ctx, 16, 16, &e, &sp), AK_ERR_INVALID_ARGUMENT, sp);                                \
    } while (0)
    SF_BAD(group, 7);
    SF_BAD(group, 0);
    SF_BAD(group, -8);
    SF_BAD(group, 32); /* does not divide N = 16 */
    SF_BAD(num_heads_q, 0);
    SF_BAD(n_sink, -1);
    SF_BAD(shift_lo, -2);
    SF_BAD(shift_hi, 5);
    e = f;
    e.shift_lo = 3, e.shift_hi = 2;
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, 16, 16, &e, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    e.shift_lo = 3, e.shift_hi = -1; /* [3, Hq) */
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 16, 16, &e, &sp), AK_OK);
    ak_sparse_destroy(sp), sp = NULL;
    e.shift_lo = -1, e.shift_hi = 1; /* [2, 1): invalid once resolved */
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, 16, 16, &e, &sp), AK_ERR_INVALID_ARGUMENT, sp);
#undef SF_BAD
    ak_sfattn_params_init(&e); /* heads and group unset */
    CHECK_BUILD(ak_sparse_sfattn(g_ctx, 16, 16, &e, &sp), AK_ERR_INVALID_ARGUMENT, sp);
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 0, 0, &f, &sp), AK_OK); /* empty */
    ak_sparse_destroy(sp), sp = NULL;
    e = f, e.n_sink = 100; /* more sinks than tokens: every causal pair */
    CHECK_STATUS(ak_sparse_sfattn(g_ctx, 16, 16, &e, &sp), AK_OK);
    for (int h = 0; sp && h < 4; h++)
        CHECK(is_dense_causal(sp, h, 16, 16), "sfattn n_sink > N: head %d", h);
    ak_sparse_destroy(sp), sp = NULL;
}

int main(int argc, char **argv) {
    g_verbose = (int)tu_env_long("AK_SWEEP_VERBOSE", 0);
    g_quick = (int)tu_env_long("AK_PATTERNS_QUICK", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    if (ak_ctx_create(&g_ctx) != AK_OK || ak_ctx_create(&g_ctx1) != AK_OK || ak_ctx_create(&g_ctx2) != AK_OK) {
        fprintf(stderr, "test_patterns_s2: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(g_ctx1, 1);
    ak_ctx_set_num_threads(g_ctx2, 2);
    int any = 0;
#define GROUP(name, call)                                                                                                  \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                                           \
        double t0_ = tu_now();                                                                                             \
        call;                                                                                                              \
        any = 1;                                                                                                           \
        if (g_verbose)                                                                                                     \
            printf("group %s: %.2f s\n", name, tu_now() - t0_);                                                            \
    }
    GROUP("s2", group_s2())
    GROUP("moa", group_moa())
    GROUP("sfattn", group_sfattn())
    GROUP("exec", group_exec())
    GROUP("invalid", group_invalid())
#undef GROUP
    ak_ctx_destroy(g_ctx), ak_ctx_destroy(g_ctx1), ak_ctx_destroy(g_ctx2);
    if (!any) {
        fprintf(stderr, "test_patterns_s2: unknown group %s (s2, moa, sfattn, exec, invalid, all)\n", group);
        return 2;
    }
    return tc_finish("test_patterns_s2");
}
