/*
 * test_na.c — Neighborhood Attention plans (ak_sparse_neighborhood: NA, dilated NA, causal NA, GNA
 * strided; 1-D / 2-D / 3-D) and their execution by the sparse executor.
 *
 * THE ORACLE IS THE TEST'S OWN. NATTEN's rules (spec structured-sparse.md §2.3) are written here
 * twice, without library code: the kernels' start/end form
 *     non-causal: start = max(leader - left, 0) + [leader + right >= Lg] * (Lg - right - leader - 1),
 *                 end = start + k
 *     causal:     start = max(leader - k + 1, 0), end = min(u + 1, Lg)
 * and the clamp form (c = clamp(leader, left, Lg - 1 - right), window [c - left, c + right]); group
 * lengths by NATTEN's formula Lg = L/d + 1 - (g + d - L%d)/d and by counting. The two forms must agree
 * (spec §2.7-7) and the library's element mask (ak_sparse_mask) must equal the start/end form's.
 *
 * Groups (`test_na <group>`, default all):
 *   rules     spec §2.7-7: both forms and both group-length formulas agree for every L <= 40, d, k, s and
 *             causal flag; the library's mask equals them for every such 1-D plan (q_tile drawn at random)
 *             and shows: exactly k neighbours in range including the query itself (non-causal), no key of
 *             another dilation group, causal: no future key, one window start per stride group, the
 *             leader sees min(k, leader + 1) keys; s = k: block diagonal (L % k == 0) or the last block
 *             shifted back; k * d = L: full attention inside each group
 *   mask      random 2-D / 3-D plans (odd and even kernels, dilation, stride, per-axis causal): the mask
 *             against the start/end form; the box size per query; the plan's structure (every row once,
 *             one dilation group per list on every axis, a list is a box of at most q_tile in-group
 *             coordinates per axis, stride groups never split unless whole, the name)
 *   hand      worked examples with literal neighbour sets (1-D L=7 k=3, even k, stride, causal + stride,
 *             dilation; 2-D 5x5 k=3) and closed-form outputs (all scores 0: O = the mean of the
 *             neighbours' values, LSE = log(count))
 *   dense     k = extent non-causal (1-D, 2-D, 3-D) equals dense attention; 1-D causal k = L equals
 *             causal attention (the executor and dense ak_attention, both by the accuracy rule against
 *             the dense double reference)
 *   exec      random geometries through ak_plan_create_sparse + ak_attention_run against
 *             ak_attention_ref_sparse (AK_F64) by the rule err <= 2 * err(naive32) + floor (tests/README.md),
 *             the reference itself against the test's double loop, f32 and bf16, GQA 1..7, outputs NaN-poisoned,
 *             1 and 2 threads identical bytes, random AK_TILE_M, the descriptor's causal flag and window
 *             intersecting the pattern (rows left without keys: O = 0, LSE = -inf); GNA perfectly
 *             block-sparse settings waste 1 (ak_plan_sparse_stats)
 *   invalid   every invalid parameter with its status, *out = NULL and a message naming the field
 * AK_NA_N: the number of exec cases (default argv[2] or 120); AK_NA_VERBOSE=1 prints every case.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static ak_ctx *g_ctx1, *g_ctx2; /* 1 and 2 threads */
static int g_verbose;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_na: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* ---- the independent NATTEN rules ---------------------------------------------------------------- */

/* Group length by NATTEN's formula, and by counting. */
static int grp_len_natten(int L, int d, int g) { return L / d + 1 - (g + d - L % d) / d; }
static int grp_len_count(int L, int d, int g) {
    int n = 0;
    for (int x = 0; x < L; x++)
        n += x % d == g;
    return n;
}

/* In-group window [*start, *end) of in-group index u, the kernels' start/end form. */
static void win_startend(int Lg, int k, int s, int causal, int u, int *start, int *end) {
    int left = k / 2, right = k - 1 - left;
    if (!causal) {
        int leader = imin((u / s) * s + s / 2, Lg - 1);
        *start = imax(leader - left, 0) + (leader + right >= Lg ? Lg - right - leader - 1 : 0);
        *end = *start + k;
    } else {
        int leader = imin((u / s) * s + s - 1, Lg - 1);
        *start = imax(leader - k + 1, 0);
        *end = imin(u + 1, Lg);
    }
}

/* The same window, the clamp form ([lo, hi] inclusive, returned as [lo, hi + 1)). */
static void win_clamp(int Lg, int k, int s, int causal, int u, int *start, int *end) {
    int left = k / 2, right = k - 1 - left;
    if (!causal) {
        int leader = (u / s) * s + s / 2;
        if (leader > Lg - 1)
            leader = Lg - 1;
        int c = leader < left ? left : leader;
        if (c > Lg - 1 - right)
            c = Lg - 1 - right;
        *start = c - left;
        *end = c + right + 1;
    } else {
        int leader = (u / s) * s + s - 1;
        if (leader > Lg - 1)
            leader = Lg - 1;
        *start = leader - k + 1 < 0 ? 0 : leader - k + 1;
        *end = u + 1;
    }
}

/* Does query coordinate x see key coordinate y on one axis (start/end form)? */
static int axis_sees(int L, int k, int d, int s, int causal, int x, int y) {
    if (x % d != y % d)
        return 0;
    int g = x % d, Lg = grp_len_natten(L, d, g), st, en;
    win_startend(Lg, k, s, causal, x / d, &st, &en);
    return y / d >= st && y / d < en;
}

static void coords(const ak_sparse_na *g, int64_t t, int *x) {
    for (int a = g->ndim - 1; a >= 0; a--) {
        x[a] = (int)(t % g->extent[a]);
        t /= g->extent[a];
    }
}

static int64_t grid_n(const ak_sparse_na *g) {
    int64_t n = 1;
    for (int a = 0; a < g->ndim; a++)
        n *= g->extent[a];
    return n;
}

/* The element mask by the start/end form: mask[i * N + j]. */
static void own_mask(const ak_sparse_na *g, uint8_t *mask) {
    int64_t N = grid_n(g);
    int xi[3], xj[3];
    for (int64_t i = 0; i < N; i++) {
        coords(g, i, xi);
        for (int64_t j = 0; j < N; j++) {
            coords(g, j, xj);
            int ok = 1;
            for (int a = 0; a < g->ndim && ok; a++)
                ok = axis_sees(g->extent[a], g->kernel[a], g->dilation[a], g->stride[a], g->causal[a], xi[a], xj[a]);
            mask[i * N + j] = (uint8_t)ok;
        }
    }
}

static void na_init(ak_na_params *p, int nd, const int *L, const int *k, const int *d, const int *s, const int *c) {
    ak_na_params_init(p);
    p->geom.ndim = nd;
    for (int a = 0; a < nd; a++) {
        p->geom.extent[a] = L[a];
        p->geom.kernel[a] = k[a];
        if (d)
            p->geom.dilation[a] = d[a];
        if (s)
            p->geom.stride[a] = s[a];
        if (c)
            p->geom.causal[a] = c[a];
    }
}

static void geom_str(const ak_na_params *p, char *buf, size_t n) {
    const ak_sparse_na *g = &p->geom;
    size_t k = 0;
#define APP(...) (k += (size_t)snprintf(buf + k, k < n ? n - k : 0, __VA_ARGS__))
    APP("%dd", g->ndim);
    const char *nm[6] = {"L", "k", "d", "s", "c", "qt"};
    const int32_t *v[6] = {g->extent, g->kernel, g->dilation, g->stride, g->causal, p->q_tile};
    for (int f = 0; f < 6; f++) {
        APP(" %s=", nm[f]);
        for (int a = 0; a < g->ndim; a++)
            APP("%s%d", a ? "x" : "", v[f][a]);
    }
#undef APP
}

/* Library mask of a plan (plan batch 0, head 0). */
static int lib_mask(const ak_sparse *sp, int64_t N, uint8_t *mask) {
    ak_status st = ak_sparse_mask(sp, 0, 0, mask);
    CHECK(st == AK_OK, "ak_sparse_mask: %s", ak_status_string(st));
    (void)N;
    return st == AK_OK;
}

/* ---- plan structure --------------------------------------------------------------------------- */

static const int DEFAULT_TILE[3][3] = {{64, 0, 0}, {8, 8, 0}, {4, 4, 4}};

/* Every row in exactly one list; each list with na set, in one dilation group on every axis, a full box
 * of in-group coordinates no larger than the (effective) q_tile per axis, stride groups split only
 * inside (q_tile < s) or taken whole; plan geometry and name. */
static void check_structure(const ak_sparse *sp, const ak_na_params *p, const char *what) {
    const ak_sparse_na *g = &p->geom;
    int nd = g->ndim;
    int64_t N = grid_n(g);
    ak_sparse_desc d;
    CHECK_STATUS(ak_sparse_get_desc(sp, &d), AK_OK);
    CHECK(d.n_batch == 1 && d.n_heads == 1 && d.nq == N && d.nk == N && d.causal == 0,
          "%s: plan geometry b=%d h=%d nq=%d nk=%d causal=%d", what, d.n_batch, d.n_heads, d.nq, d.nk, d.causal);
    CHECK(d.qrow_off != NULL && d.qrows != NULL && d.na != NULL, "%s: not a gather plan with na", what);
    if (!d.qrow_off || !d.qrows || !d.na)
        return;
    CHECK(d.na_geom.ndim == nd, "%s: na_geom.ndim = %d", what, d.na_geom.ndim);
    for (int a = 0; a < nd; a++)
        CHECK(d.na_geom.extent[a] == g->extent[a] && d.na_geom.kernel[a] == g->kernel[a] && d.na_geom.dilation[a] == g->dilation[a] &&
                  d.na_geom.stride[a] == g->stride[a] && d.na_geom.causal[a] == g->causal[a],
              "%s: na_geom axis %d differs from the parameters", what, a);
    uint8_t *seen = (uint8_t *)calloc((size_t)N + 1, 1);
    int bad = 0;
    for (int32_t r = 0; r < d.n_qblocks && !bad; r++) {
        int64_t e0 = d.qrow_off[r], e1 = d.qrow_off[r + 1];
        if (!d.na[r] || e1 <= e0) {
            CHECK(0, "%s: list %d has na = %d and %lld rows", what, r, d.na[r], (long long)(e1 - e0));
            bad = 1;
            break;
        }
        int grp[3] = {-1, -1, -1}, lo[3] = {1 << 30, 1 << 30, 1 << 30}, hi[3] = {-1, -1, -1};
        for (int64_t e = e0; e < e1 && !bad; e++) {
            int32_t row = d.qrows[e];
            if (row < 0 || row >= N || seen[row]) {
                CHECK(0, "%s: list %d: row %d out of range or seen twice", what, r, row);
                bad = 1;
                break;
            }
            seen[row] = 1;
            int x[3];
            coords(g, row, x);
            for (int a = 0; a < nd; a++) {
                int gg = x[a] % g->dilation[a], u = x[a] / g->dilation[a];
                if (grp[a] >= 0 && grp[a] != gg) {
                    CHECK(0, "%s: list %d mixes dilation groups %d and %d on axis %d", what, r, grp[a], gg, a);
                    bad = 1;
                }
                grp[a] = gg;
                lo[a] = imin(lo[a], u);
                hi[a] = imax(hi[a], u);
            }
        }
        if (bad)
            break;
        int64_t vol = 1;
        for (int a = 0; a < nd; a++) {
            int span = hi[a] - lo[a] + 1, Lg = grp_len_count(g->extent[a], g->dilation[a], grp[a]), s = g->stride[a];
            int qt = p->q_tile[a] ? p->q_tile[a] : DEFAULT_TILE[nd - 1][a];
            vol *= span;
            CHECK(span <= qt, "%s: list %d spans %d in-group coordinates on axis %d, q_tile %d", what, r, span, a, qt);
            int inside = lo[a] / s == hi[a] / s;
            int whole = lo[a] % s == 0 && ((hi[a] + 1) % s == 0 || hi[a] + 1 == Lg);
            CHECK(inside || whole, "%s: list %d covers in-group [%d, %d] on axis %d: splits a stride group (s = %d, Lg = %d)", what, r,
                  lo[a], hi[a], a, s, Lg);
        }
        CHECK(vol == e1 - e0, "%s: list %d has %lld rows but its box holds %lld", what, r, (long long)(e1 - e0), (long long)vol);
    }
    for (int64_t i = 0; i < N && !bad; i++)
        if (!seen[i]) {
            CHECK(0, "%s: row %lld in no list", what, (long long)i);
            break;
        }
    free(seen);
    ak_sparse_stats st;
    CHECK_STATUS(ak_sparse_get_stats(sp, &st), AK_OK);
    CHECK(st.n_na == st.n_lists && st.n_rows_gathered == N && st.n_spans == 0 && st.n_cols == 0 && st.n_bands == 0,
          "%s: stats n_na %lld of %lld lists, %lld rows gathered", what, (long long)st.n_na, (long long)st.n_lists,
          (long long)st.n_rows_gathered);
    /* name: na<nd>d(<extents>,k=..,d=..,s=..[,causal=..]) */
    char want[256], part[64];
    size_t k = 0;
    k += (size_t)snprintf(want + k, sizeof want - k, "na%dd(", nd);
    const char *lab[4] = {"", ",k=", ",d=", ",s="};
    const int32_t *v[4] = {g->extent, g->kernel, g->dilation, g->stride};
    for (int f = 0; f < 4; f++) {
        k += (size_t)snprintf(want + k, sizeof want - k, "%s", lab[f]);
        for (int a = 0; a < nd; a++) {
            snprintf(part, sizeof part, "%s%d", a ? "x" : "", v[f][a]);
            k += (size_t)snprintf(want + k, sizeof want - k, "%s", part);
        }
    }
    int anyc = 0;
    for (int a = 0; a < nd; a++)
        anyc |= g->causal[a];
    if (anyc) {
        k += (size_t)snprintf(want + k, sizeof want - k, ",causal=");
        for (int a = 0; a < nd; a++)
            k += (size_t)snprintf(want + k, sizeof want - k, "%s%d", a ? "x" : "", g->causal[a]);
    }
    snprintf(want + k, sizeof want - k, ")");
    CHECK(strcmp(ak_sparse_name(sp), want) == 0, "%s: name \"%s\", expected \"%s\"", what, ak_sparse_name(sp), want);
}

/* Properties of a mask (library's) for a geometry: neighbour count per query = product of the axes'
 * window sizes (k on a non-causal axis), the query itself included, no key of another group, no future
 * key on a causal axis. */
static void check_props(const ak_sparse_na *g, const uint8_t *mask, const char *what) {
    int64_t N = grid_n(g);
    int xi[3], xj[3], fails = 0;
    for (int64_t i = 0; i < N && fails < 3; i++) {
        coords(g, i, xi);
        int64_t want = 1;
        for (int a = 0; a < g->ndim; a++) {
            int d = g->dilation[a], Lg = grp_len_natten(g->extent[a], d, xi[a] % d), st, en;
            win_startend(Lg, g->kernel[a], g->stride[a], g->causal[a], xi[a] / d, &st, &en);
            if (!g->causal[a] && en - st != g->kernel[a]) {
                CHECK(0, "%s: own window of size %d on a non-causal axis", what, en - st);
                fails++;
            }
            want *= en - st;
        }
        int64_t cnt = 0;
        for (int64_t j = 0; j < N; j++) {
            if (!mask[i * N + j])
                continue;
            cnt++;
            coords(g, j, xj);
            for (int a = 0; a < g->ndim; a++) {
                if (xj[a] % g->dilation[a] != xi[a] % g->dilation[a]) {
                    CHECK(0, "%s: query %lld sees key %lld of another dilation group on axis %d", what, (long long)i, (long long)j, a);
                    fails++;
                }
                if (g->causal[a] && xj[a] > xi[a]) {
                    CHECK(0, "%s: query %lld sees the future key %lld on causal axis %d", what, (long long)i, (long long)j, a);
                    fails++;
                }
            }
        }
        if (cnt != want || !mask[i * N + i]) {
            CHECK(0, "%s: query %lld sees %lld keys (expected %lld), itself %s", what, (long long)i, (long long)cnt, (long long)want,
                  mask[i * N + i] ? "included" : "MISSING");
            fails++;
        }
    }
}

/* ---- group rules: spec 2.7-7 and the 1-D sweep ----------------------------------------------------- */

static void group_rules(void) {
    double t0 = tu_now();
    /* both forms and both group lengths, every L <= 40 (incl. group lengths down to 1) */
    int64_t nform = 0;
    for (int L = 1; L <= 40; L++)
        for (int d = 1; d <= L; d++)
            for (int g = 0; g < d; g++) {
                int Lg = grp_len_natten(L, d, g);
                CHECK(Lg == grp_len_count(L, d, g), "L=%d d=%d g=%d: NATTEN's group length %d, counted %d", L, d, g, Lg,
                      grp_len_count(L, d, g));
            }
    for (int L = 1; L <= 40; L++)
        for (int k = 1; k <= L; k++)
            for (int s = 1; s <= k; s++)
                for (int c = 0; c < 2; c++) {
                    int prev_s = -1, prev_e = -1;
                    for (int u = 0; u < L; u++) {
                        int s1, e1, s2, e2;
                        win_startend(L, k, s, c, u, &s1, &e1);
                        win_clamp(L, k, s, c, u, &s2, &e2);
                        nform++;
                        if (s1 != s2 || e1 != e2) {
                            CHECK(0, "L=%d k=%d s=%d causal=%d u=%d: start/end form [%d, %d), clamp form [%d, %d)", L, k, s, c, u, s1, e1, s2,
                                  e2);
                            continue;
                        }
                        /* in range, the query inside, start/end non-decreasing */
                        CHECK(s1 >= 0 && e1 <= L && s1 <= u && u < e1, "L=%d k=%d s=%d causal=%d u=%d: window [%d, %d)", L, k, s, c, u, s1,
                              e1);
                        CHECK(s1 >= prev_s && e1 >= prev_e, "L=%d k=%d s=%d causal=%d: window not monotone at u=%d", L, k, s, c, u);
                        prev_s = s1, prev_e = e1;
                    }
                }

    /* every 1-D plan with L <= 40 (all d, k, s, both causal flags): library mask vs the start/end form */
    rng r = rng_seed(7);
    int64_t nplans = 0;
    uint8_t *own = (uint8_t *)xmalloc(40 * 40), *lib = (uint8_t *)xmalloc(40 * 40);
    for (int L = 1; L <= 40; L++)
        for (int d = 1; d <= L; d++)
            for (int k = 1; k * d <= L; k++)
                for (int s = 1; s <= k; s++)
                    for (int c = 0; c < 2; c++) {
                        ak_na_params p;
                        na_init(&p, 1, &L, &k, &d, &s, &c);
                        if (rng_chance(&r, 0.6))
                            p.q_tile[0] = 1 + rng_int(&r, rng_chance(&r, 0.5) ? 8 : 45);
                        char what[160];
                        geom_str(&p, what, sizeof what);
                        ak_sparse *sp = NULL;
                        ak_status st = ak_sparse_neighborhood(g_ctx1, &p, &sp);
                        if (st != AK_OK) {
                            CHECK(0, "%s: ak_sparse_neighborhood: %s (%s)", what, ak_status_string(st), ak_ctx_last_error(g_ctx1));
                            continue;
                        }
                        nplans++;
                        own_mask(&p.geom, own);
                        if (lib_mask(sp, L, lib)) {
                            int same = memcmp(own, lib, (size_t)L * L) == 0;
                            CHECK(same, "%s: ak_sparse_mask differs from the start/end form", what);
                            check_props(&p.geom, lib, what);
                            /* causal: one window start per stride group; the leader sees min(k, leader + 1) keys */
                            if (c)
                                for (int x = 0; x < L; x++) {
                                    int g = x % d, u = x / d, Lg = grp_len_count(L, d, g), first = -1, cnt = 0;
                                    for (int j = 0; j < L; j++)
                                        if (lib[x * L + j]) {
                                            if (first < 0)
                                                first = j;
                                            cnt++;
                                        }
                                    int u0 = (u / s) * s, x0 = g + d * u0, first0 = -1;
                                    for (int j = 0; j < L && first0 < 0; j++)
                                        if (lib[x0 * L + j])
                                            first0 = j;
                                    CHECK(first == first0, "%s: query %d starts at key %d, its stride group's first query %d at %d", what, x,
                                          first, x0, first0);
                                    int leader = imin(u0 + s - 1, Lg - 1);
                                    if (u == leader)
                                        CHECK(cnt == imin(k, leader + 1), "%s: leader %d sees %d keys, expected min(k, leader + 1) = %d", what,
                                              x, cnt, imin(k, leader + 1));
                                }
                            /* s = k, d = 1, non-causal: blocked attention */
                            if (s == k && d == 1 && !c)
                                for (int x = 0; x < L; x++)
                                    for (int j = 0; j < L; j++) {
                                        int full_blocks = L / k * k, want;
                                        if (x < full_blocks)
                                            want = x / k == j / k;
                                        else
                                            want = j >= L - k; /* the last partial block: shifted back */
                                        if (lib[x * L + j] != want) {
                                            CHECK(0, "%s: s = k: query %d key %d is %d, blocked attention says %d", what, x, j, lib[x * L + j],
                                                  want);
                                            x = L;
                                            break;
                                        }
                                    }
                            /* k * d = L, non-causal: full attention inside each group */
                            if (k * d == L && !c)
                                for (int x = 0; x < L; x++)
                                    for (int j = 0; j < L; j++)
                                        if (lib[x * L + j] != (x % d == j % d)) {
                                            CHECK(0, "%s: k * d = L: query %d key %d is %d", what, x, j, lib[x * L + j]);
                                            x = L;
                                            break;
                                        }
                        }
                        check_structure(sp, &p, what);
                        ak_sparse_destroy(sp);
                    }
    free(own), free(lib);
    printf("rules: %lld windows in both forms, %lld 1-D plans (%.1f s)\n", (long long)nform, (long long)nplans, tu_now() - t0);
}

/* ---- group mask: random 2-D / 3-D -------------------------------------------------------------- */

static void draw_geom(rng *r, int nd, int maxL, ak_na_params *p) {
    ak_na_params_init(p);
    p->geom.ndim = nd;
    for (int a = 0; a < nd; a++) {
        int L = 1 + rng_int(r, maxL);
        int d = rng_chance(r, 0.6) ? 1 : 1 + rng_int(r, imax(1, L / 2));
        if (d > L)
            d = L;
        int kmax = L / d;
        int k = rng_chance(r, 0.15) ? kmax : 1 + rng_int(r, kmax);
        int s = rng_chance(r, 0.5) ? 1 : rng_chance(r, 0.3) ? k : 1 + rng_int(r, k);
        p->geom.extent[a] = L;
        p->geom.dilation[a] = d;
        p->geom.kernel[a] = k;
        p->geom.stride[a] = s;
        p->geom.causal[a] = rng_chance(r, 0.25);
        p->q_tile[a] = rng_chance(r, 0.4) ? 0 : 1 + rng_int(r, rng_chance(r, 0.7) ? 6 : 20);
    }
}

static void group_mask(void) {
    double t0 = tu_now();
    rng r = rng_seed(11);
    int n2 = 0, n3 = 0;
    for (int it = 0; it < 700; it++) {
        int nd = it < 400 ? 2 : 3;
        ak_na_params p;
        draw_geom(&r, nd, nd == 2 ? 22 : 8, &p);
        char what[200];
        geom_str(&p, what, sizeof what);
        int64_t N = grid_n(&p.geom);
        ak_sparse *sp = NULL;
        ak_status st = ak_sparse_neighborhood(g_ctx1, &p, &sp);
        if (st != AK_OK) {
            CHECK(0, "%s: ak_sparse_neighborhood: %s (%s)", what, ak_status_string(st), ak_ctx_last_error(g_ctx1));
            continue;
        }
        uint8_t *own = (uint8_t *)xmalloc((size_t)(N * N)), *lib = (uint8_t *)xmalloc((size_t)(N * N));
        own_mask(&p.geom, own);
        if (lib_mask(sp, N, lib)) {
            CHECK(memcmp(own, lib, (size_t)(N * N)) == 0, "%s: ak_sparse_mask differs from the start/end form", what);
            check_props(&p.geom, lib, what);
        }
        check_structure(sp, &p, what);
        ak_sparse_destroy(sp);
        free(own), free(lib);
        nd == 2 ? n2++ : n3++;
    }
    /* 2-D s = k with L % k == 0 on both axes: block diagonal (Swin windows) */
    {
        int L[2] = {12, 8}, k[2] = {4, 4}, s[2] = {4, 4};
        ak_na_params p;
        na_init(&p, 2, L, k, NULL, s, NULL);
        ak_sparse *sp;
        CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &p, &sp), AK_OK);
        uint8_t lib[96 * 96];
        if (lib_mask(sp, 96, lib))
            for (int i = 0; i < 96; i++)
                for (int j = 0; j < 96; j++) {
                    int want = (i / 8) / 4 == (j / 8) / 4 && (i % 8) / 4 == (j % 8) / 4;
                    if (lib[i * 96 + j] != want) {
                        CHECK(0, "2-D 12x8 k=s=4: query %d key %d is %d, block diagonal says %d", i, j, lib[i * 96 + j], want);
                        i = 96;
                        break;
                    }
                }
        ak_sparse_destroy(sp);
    }
    printf("mask: %d 2-D and %d 3-D plans (%.1f s)\n", n2, n3, tu_now() - t0);
}

/* ---- group hand ----------------------------------------------------------------------------------- */

/* The plan's neighbours of query q must be exactly the listed keys. */
static void expect_row(const ak_sparse *sp, int64_t N, int q, const int *keys, int nkeys, const char *what) {
    uint8_t *m = (uint8_t *)xmalloc((size_t)(N * N));
    if (lib_mask(sp, N, m)) {
        uint8_t *want = (uint8_t *)calloc((size_t)N, 1);
        for (int e = 0; e < nkeys; e++)
            want[keys[e]] = 1;
        char got[512];
        size_t k = 0;
        got[0] = 0;
        for (int j = 0; j < N; j++)
            if (m[(int64_t)q * N + j])
                k += (size_t)snprintf(got + k, k < sizeof got ? sizeof got - k : 0, " %d", j);
        CHECK(memcmp(want, m + (int64_t)q * N, (size_t)N) == 0, "%s: query %d sees {%s }", what, q, got);
        free(want);
    }
    free(m);
}

typedef struct hand1 {
    const char *what;
    int L, k, d, s, c;
    int keys[12][12]; /* per query, -1 terminated */
} hand1;

static void group_hand(void) {
    /* 1-D examples worked by hand from spec 2.3 */
    static const hand1 H[] = {
        {"L=7 k=3", 7, 3, 1, 1, 0,
         {{0, 1, 2, -1}, {0, 1, 2, -1}, {1, 2, 3, -1}, {2, 3, 4, -1}, {3, 4, 5, -1}, {4, 5, 6, -1}, {4, 5, 6, -1}}},
        /* even k: left = 2, right = 1 (the left side gets the extra token) */
        {"L=6 k=4", 6, 4, 1, 1, 0, {{0, 1, 2, 3, -1}, {0, 1, 2, 3, -1}, {0, 1, 2, 3, -1}, {1, 2, 3, 4, -1}, {2, 3, 4, 5, -1}, {2, 3, 4, 5, -1}}},
        /* stride 2: leader = 2m + 1, windows shared by pairs */
        {"L=8 k=4 s=2", 8, 4, 1, 2, 0,
         {{0, 1, 2, 3, -1}, {0, 1, 2, 3, -1}, {1, 2, 3, 4, -1}, {1, 2, 3, 4, -1}, {3, 4, 5, 6, -1}, {3, 4, 5, 6, -1}, {4, 5, 6, 7, -1},
          {4, 5, 6, 7, -1}}},
        /* causal: ends at the query, not shifted forward at the start */
        {"L=7 k=3 causal", 7, 3, 1, 1, 1,
         {{0, -1}, {0, 1, -1}, {0, 1, 2, -1}, {1, 2, 3, -1}, {2, 3, 4, -1}, {3, 4, 5, -1}, {4, 5, 6, -1}}},
        /* causal + stride 2: the stride group shares its start (leader = 2m + 1) */
        {"L=6 k=3 s=2 causal", 6, 3, 1, 2, 1, {{0, -1}, {0, 1, -1}, {1, 2, -1}, {1, 2, 3, -1}, {3, 4, -1}, {3, 4, 5, -1}}},
        /* dilation 3: groups {0,3,6}, {1,4}, {2,5}; k = 2 (left 1, right 0) */
        {"L=7 k=2 d=3", 7, 2, 3, 1, 0, {{0, 3, -1}, {1, 4, -1}, {2, 5, -1}, {0, 3, -1}, {1, 4, -1}, {2, 5, -1}, {3, 6, -1}}},
        /* s = k = 3, L = 8: blocks {0,1,2}, {3,4,5}, and the last partial block shifted back to {5,6,7} */
        {"L=8 k=3 s=3", 8, 3, 1, 3, 0,
         {{0, 1, 2, -1}, {0, 1, 2, -1}, {0, 1, 2, -1}, {3, 4, 5, -1}, {3, 4, 5, -1}, {3, 4, 5, -1}, {5, 6, 7, -1}, {5, 6, 7, -1}}},
    };
    for (int h = 0; h < COUNT(H); h++) {
        ak_na_params p;
        na_init(&p, 1, &H[h].L, &H[h].k, &H[h].d, &H[h].s, &H[h].c);
        ak_sparse *sp;
        ak_status st = ak_sparse_neighborhood(g_ctx1, &p, &sp);
        CHECK(st == AK_OK, "%s: %s", H[h].what, ak_status_string(st));
        if (st != AK_OK)
            continue;
        for (int q = 0; q < H[h].L; q++) {
            int n = 0;
            while (H[h].keys[q][n] >= 0)
                n++;
            expect_row(sp, H[h].L, q, H[h].keys[q], n, H[h].what);
        }
        ak_sparse_destroy(sp);
    }

    /* 2-D 5x5, k = 3: per axis u -> {0,1,2}, {0,1,2}, {1,2,3}, {2,3,4}, {2,3,4} */
    int L2[2] = {5, 5}, k2[2] = {3, 3};
    ak_na_params p;
    na_init(&p, 2, L2, k2, NULL, NULL, NULL);
    ak_sparse *sp;
    CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &p, &sp), AK_OK);
    static const int q00[] = {0, 1, 2, 5, 6, 7, 10, 11, 12};       /* (0,0) */
    static const int q13[] = {2, 3, 4, 7, 8, 9, 12, 13, 14};       /* (1,3) */
    static const int q23[] = {7, 8, 9, 12, 13, 14, 17, 18, 19};    /* (2,3) */
    static const int q44[] = {12, 13, 14, 17, 18, 19, 22, 23, 24}; /* (4,4) */
    static const int q40[] = {10, 11, 12, 15, 16, 17, 20, 21, 22}; /* (4,0) */
    expect_row(sp, 25, 0, q00, 9, "2-D 5x5 k=3");
    expect_row(sp, 25, 8, q13, 9, "2-D 5x5 k=3");
    expect_row(sp, 25, 13, q23, 9, "2-D 5x5 k=3");
    expect_row(sp, 25, 24, q44, 9, "2-D 5x5 k=3");
    expect_row(sp, 25, 20, q40, 9, "2-D 5x5 k=3");
    CHECK(strcmp(ak_sparse_name(sp), "na2d(5x5,k=3x3,d=1x1,s=1x1)") == 0, "name \"%s\"", ak_sparse_name(sp));

    /* closed form: q = 0 (every score 0), v_j = j: O_i = the mean of i's neighbours, LSE = log 9 */
    {
        const int N = 25, dv = 2;
        float q[25 * 4], kk[25 * 4], v[25 * 2], o[25 * 2], lse[25];
        for (int i = 0; i < N * 4; i++)
            q[i] = 0.0f, kk[i] = (float)(i % 7) - 3.0f;
        for (int j = 0; j < N; j++)
            v[j * dv] = (float)j, v[j * dv + 1] = (float)(j * j);
        ak_attn_desc d;
        ak_attn_desc_init(&d);
        d.seqlen_q = d.seqlen_k = N;
        d.head_dim = 4;
        d.head_dim_v = dv;
        d.return_lse = 1;
        ak_attn_tensors t;
        ak_attn_tensors_init(&t);
        t.q = ak_tensor_4d(q, AK_F32, 1, 1, N, 4);
        t.k = ak_tensor_4d(kk, AK_F32, 1, 1, N, 4);
        t.v = ak_tensor_4d(v, AK_F32, 1, 1, N, dv);
        t.o = ak_tensor_4d(o, AK_F32, 1, 1, N, dv);
        t.lse = ak_tensor_3d(lse, AK_F32, 1, 1, N);
        ak_plan *pl = NULL;
        CHECK_STATUS(ak_plan_create_sparse(g_ctx2, &d, sp, &pl), AK_OK);
        if (pl) {
            for (int i = 0; i < N * dv; i++)
                o[i] = NAN;
            CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
            static const int lo5[5] = {0, 0, 1, 2, 2};
            for (int i = 0; i < N; i++) {
                double s1 = 0, s2 = 0;
                for (int a = lo5[i / 5]; a < lo5[i / 5] + 3; a++)
                    for (int b = lo5[i % 5]; b < lo5[i % 5] + 3; b++)
                        s1 += a * 5 + b, s2 += (double)(a * 5 + b) * (a * 5 + b);
                CHECK(fabs(o[i * dv] - s1 / 9) <= 1e-5 * fmax(1, s1 / 9) && fabs(o[i * dv + 1] - s2 / 9) <= 1e-5 * fmax(1, s2 / 9),
                      "2-D 5x5 k=3 closed form: query %d O = (%g, %g), expected (%g, %g)", i, o[i * dv], o[i * dv + 1], s1 / 9, s2 / 9);
                CHECK(fabs(lse[i] - log(9.0)) <= 1e-6, "2-D 5x5 k=3 closed form: query %d LSE = %.9g, expected log 9", i, lse[i]);
            }
            ak_plan_destroy(pl);
        }
    }
    ak_sparse_destroy(sp);

    /* defaults of ak_na_params_init */
    ak_na_params z;
    memset(&z, 0x5a, sizeof z);
    ak_na_params_init(&z);
    int ok = z.geom.ndim == 0;
    for (int a = 0; a < 3; a++)
        ok = ok && z.geom.dilation[a] == 1 && z.geom.stride[a] == 1 && z.geom.causal[a] == 0 && z.q_tile[a] == 0 && z.geom.extent[a] == 0 &&
             z.geom.kernel[a] == 0;
    CHECK(ok, "ak_na_params_init: ndim %d, dilation %d/%d/%d, stride %d/%d/%d, causal %d, q_tile %d", z.geom.ndim, z.geom.dilation[0],
          z.geom.dilation[1], z.geom.dilation[2], z.geom.stride[0], z.geom.stride[1], z.geom.stride[2], z.geom.causal[0], z.q_tile[0]);
    ak_na_params_init(NULL); /* must not crash */
    printf("hand: done\n");
}

/* ---- execution helpers -------------------------------------------------------------------------- */

static ak_dtype compute_dtype(const ak_attn_desc *d) {
    if (d->dtype_q == AK_BF16 || d->dtype_kv == AK_BF16)
        return AK_BF16;
    if (d->dtype_q == AK_F16 || d->dtype_kv == AK_F16)
        return AK_F16;
    return AK_F32;
}

/* naive32.c's row computations (float as PyTorch's math path, or plain double) over the keys the NA
 * mask (shared by every sequence and head) and the descriptor's causal flag let through. */
static void masked_naive(const problem *p, const uint8_t *mask, int prec64, naive_out *out) {
    const ak_attn_desc *d = &p->d;
    int64_t hd = d->head_dim, dv = p->dv, Lq = d->seqlen_q, Lk = d->seqlen_k;
    int32_t Hq = d->num_heads_q, g = d->num_heads_q / d->num_heads_kv;
    double *kk = (double *)xmalloc(sizeof(double) * (size_t)(Lk * hd + 1));
    double *vv = (double *)xmalloc(sizeof(double) * (size_t)(Lk * dv + 1));
    double *q = (double *)xmalloc(sizeof(double) * (size_t)(hd + 1)), *sc = (double *)xmalloc(sizeof(double) * (size_t)(Lk + 1));
    double *acc = (double *)xmalloc(sizeof(double) * (size_t)(dv + 1));
    ak_dtype cdt = compute_dtype(d);
    for (int32_t b = 0; b < d->batch; b++)
        for (int32_t h = 0; h < Hq; h++) {
            if (h % g == 0)
                for (int64_t j = 0; j < Lk; j++) {
                    for (int64_t c = 0; c < hd; c++)
                        kk[j * hd + c] = ten_get4(&p->k.t, b, h / g, j, c);
                    for (int64_t c = 0; c < dv; c++)
                        vv[j * dv + c] = ten_get4(&p->v.t, b, h / g, j, c);
                }
            for (int64_t i = 0; i < Lq; i++) {
                int64_t r = ((int64_t)b * Hq + h) * Lq + i, n = 0;
                double *o_row = out->o + r * dv;
                for (int64_t c = 0; c < dv; c++)
                    o_row[c] = 0.0;
                out->lse[r] = -INFINITY;
                for (int64_t c = 0; c < hd; c++)
                    q[c] = ten_get4(&p->q.t, b, h, i, c);
                const uint8_t *mr = mask + (size_t)i * (size_t)Lk;
                if (!prec64) {
                    float scale = isnan(d->scale) ? (float)(1.0 / sqrt((double)hd)) : d->scale, m = -INFINITY;
                    for (int64_t j = 0; j < Lk; j++) {
                        if (!mr[j] || !naive_visible(d, i, j, Lq, Lk)) {
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
                    if (n == 0)
                        continue;
                    float sum = 0.0f;
                    for (int64_t j = 0; j < Lk; j++)
                        if (sc[j] != -INFINITY)
                            sum += expf((float)sc[j] - m);
                    for (int64_t j = 0; j < Lk; j++)
                        sc[j] = sc[j] == -INFINITY ? -1.0 : tu_round_to(cdt, expf((float)sc[j] - m) / sum);
                    for (int64_t c = 0; c < dv; c++)
                        acc[c] = 0.0;
                    for (int64_t j = 0; j < Lk; j++)
                        if (sc[j] >= 0)
                            for (int64_t c = 0; c < dv; c++)
                                acc[c] = (float)acc[c] + (float)sc[j] * (float)vv[j * dv + c];
                    for (int64_t c = 0; c < dv; c++)
                        o_row[c] = tu_round_to(d->dtype_o, acc[c]);
                    out->lse[r] = (double)(m + logf(sum));
                } else {
                    double scale = isnan(d->scale) ? 1.0 / sqrt((double)hd) : (double)d->scale, m = -INFINITY;
                    for (int64_t j = 0; j < Lk; j++) {
                        if (!mr[j] || !naive_visible(d, i, j, Lq, Lk)) {
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
                    if (n == 0)
                        continue;
                    double sum = 0.0;
                    for (int64_t j = 0; j < Lk; j++)
                        if (sc[j] != -INFINITY)
                            sum += exp(sc[j] - m);
                    for (int64_t j = 0; j < Lk; j++)
                        if (sc[j] != -INFINITY) {
                            double pj = exp(sc[j] - m) / sum;
                            for (int64_t c = 0; c < dv; c++)
                                o_row[c] += pj * vv[j * dv + c];
                        }
                    out->lse[r] = m + log(sum);
                }
            }
        }
    free(kk), free(vv), free(q), free(sc), free(acc);
}

/* ak_attention_ref_sparse writing AK_F64 O and LSE into `ref` (poisoned first); nvis copied. */
static ak_status run_ref_sparse64(const problem *p, const ak_sparse *sp, naive_out *ref, const naive_out *nvis_from) {
    ak_attn_desc d = p->d;
    ak_attn_tensors t = problem_tensors(p, &p->o, NULL);
    d.dtype_o = AK_F64;
    d.return_lse = 1;
    t.o = ak_tensor_4d(ref->o, AK_F64, p->Bt, d.num_heads_q, p->Lqt, p->dv);
    t.lse = ak_tensor_3d(ref->lse, AK_F64, p->Bt, d.num_heads_q, p->Lqt);
    for (int64_t r = 0; r < ref->n_rows; r++) {
        ref->lse[r] = NAN;
        for (int64_t c = 0; c < ref->dv; c++)
            ref->o[r * ref->dv + c] = NAN;
    }
    ak_status st = ak_attention_ref_sparse(g_ctx1, &d, sp, &t);
    memcpy(ref->nvis, nvis_from->nvis, sizeof(int32_t) * (size_t)ref->n_rows);
    return st;
}

/* Run the plan of (desc, sp) on ctx into fresh poisoned outputs o / lse. */
static ak_status run_exec(ak_ctx *ctx, const problem *p, const ak_sparse *sp, tbuf *o, tbuf *lse, ak_sparse_stats *stats) {
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &p->d, sp, &pl);
    if (st != AK_OK)
        return st;
    if (stats)
        ak_plan_sparse_stats(pl, stats);
    tbuf_poison(o);
    if (lse)
        tbuf_poison(lse);
    ak_attn_tensors t = problem_tensors(p, o, lse);
    st = ak_attention_run(pl, &t, NULL, 0);
    ak_plan_destroy(pl);
    return st;
}

/* ---- group dense: k = extent equals dense attention ------------------------------------------- */

static void dense_case(int nd, const int *L, int causal1d, ak_dtype dt, const char *what) {
    ak_na_params p;
    int c[3] = {causal1d, 0, 0};
    na_init(&p, nd, L, L, NULL, NULL, c);
    int64_t N = grid_n(&p.geom);
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &p, &sp), AK_OK);
    if (!sp)
        return;
    /* the mask: all ones, or (1-D causal) the lower triangle */
    uint8_t *m = (uint8_t *)xmalloc((size_t)(N * N));
    if (lib_mask(sp, N, m))
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++)
                if (m[i * N + j] != (causal1d ? j <= i : 1)) {
                    CHECK(0, "%s: mask[%lld][%lld] = %d", what, (long long)i, (long long)j, m[i * N + j]);
                    i = N;
                    break;
                }
    free(m);
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = 2;
    d.num_heads_q = 6;
    d.num_heads_kv = 2;
    d.seqlen_q = d.seqlen_k = (int32_t)N;
    d.head_dim = 40;
    d.dtype_q = d.dtype_kv = d.dtype_o = dt;
    d.return_lse = 1;
    /* the problem with the dense descriptor (causal for the 1-D causal case): reference and dense path */
    ak_attn_desc dd = d;
    dd.causal = causal1d;
    problem pb;
    problem_opts po;
    problem_opts_default(&po);
    rng r = rng_seed(1000 + (uint64_t)N);
    if (problem_create(&pb, &dd, 0, 0, &po, &r) != 0) {
        CHECK(0, "%s: problem_create", what);
        ak_sparse_destroy(sp);
        return;
    }
    naive_out ref, nv;
    ak_attn_tensors t0 = problem_tensors(&pb, &pb.o, &pb.lse);
    naive_alloc(&ref, &pb.d, &t0);
    naive_alloc(&nv, &pb.d, &t0);
    naive_attention32(&pb.d, &t0, &nv);
    CHECK_STATUS(run_ref64(g_ctx1, &pb, &ref, &nv), AK_OK);
    char msg[512];
    /* the dense path */
    tbuf_poison(&pb.o), tbuf_poison(&pb.lse);
    CHECK_STATUS(ak_attention(g_ctx2, &pb.d, &t0), AK_OK);
    CHECK(check_rule(&pb, &pb.o, &pb.lse, &ref, &nv, msg, sizeof msg), "%s: dense ak_attention: %s", what, msg);
    int64_t no = tbuf_numel(&pb.o), nl = tbuf_numel(&pb.lse);
    double *od = (double *)xmalloc(sizeof(double) * (size_t)no), *ld = (double *)xmalloc(sizeof(double) * (size_t)nl);
    double *on = (double *)xmalloc(sizeof(double) * (size_t)no), *ln = (double *)xmalloc(sizeof(double) * (size_t)nl);
    tbuf_to_f64(&pb.o, od), tbuf_to_f64(&pb.lse, ld);
    /* the NA plan on the non-causal descriptor: the same numbers */
    problem pn = pb;
    pn.d.causal = 0;
    CHECK_STATUS(run_exec(g_ctx2, &pn, sp, &pb.o, &pb.lse, NULL), AK_OK);
    CHECK(check_rule(&pb, &pb.o, &pb.lse, &ref, &nv, msg, sizeof msg), "%s: NA executor vs dense reference: %s", what, msg);
    /* and directly against the dense path's output: fp32 summation order only (bf16 O: 2 ulp) */
    tbuf_to_f64(&pb.o, on), tbuf_to_f64(&pb.lse, ln);
    double omax = tu_max_abs(od, no), tol = dt == AK_F32 || pb.d.dtype_o == AK_F32 ? 2e-6 * fmax(1.0, omax) : 2.0 * tu_ulp(pb.d.dtype_o, omax);
    double eo = tu_max_err(on, od, no), el = tu_max_err(ln, ld, nl);
    CHECK(eo <= tol && el <= 1e-5 * fmax(1.0, tu_max_abs(ld, nl)), "%s: NA executor vs dense ak_attention: max|dO| = %.3g (tol %.3g), max|dLSE| = %.3g",
          what, eo, tol, el);
    free(od), free(ld), free(on), free(ln);
    if (g_verbose)
        printf("dense %s: %s\n", what, msg);
    naive_free(&ref), naive_free(&nv);
    problem_destroy(&pb);
    ak_sparse_destroy(sp);
}

static void group_dense(void) {
    int a[1] = {37}, b[2] = {9, 7}, c[3] = {4, 5, 3}, e[1] = {50}, f[1] = {130};
    dense_case(1, a, 0, AK_F32, "1-D L=k=37");
    dense_case(2, b, 0, AK_F32, "2-D 9x7 k=9x7");
    dense_case(3, c, 0, AK_F32, "3-D 4x5x3 k=4x5x3");
    dense_case(2, b, 0, AK_BF16, "2-D 9x7 k=9x7 bf16");
    dense_case(1, e, 1, AK_F32, "1-D L=k=50 causal");
    dense_case(1, f, 1, AK_BF16, "1-D L=k=130 causal bf16");
    printf("dense: done\n");
}

/* ---- group exec: random geometries against the double reference -------------------------------- */

static const int D_LIST[] = {8, 16, 32, 59, 64};
static const int TILE_M[] = {0, 0, 16, 32, 48, 128};

static void exec_case(long idx) {
    rng r = rng_seed(0x4e41000 + (uint64_t)idx);
    int nd = 1 + rng_int(&r, 3);
    ak_na_params p;
    draw_geom(&r, nd, nd == 1 ? 300 : nd == 2 ? 24 : 9, &p);
    if (nd == 1 && rng_chance(&r, 0.5))
        p.q_tile[0] = rng_chance(&r, 0.5) ? 0 : 1 + rng_int(&r, 100);
    int64_t N = grid_n(&p.geom);
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = 1 + rng_chance(&r, 0.3);
    d.num_heads_kv = 1 + rng_chance(&r, 0.3);
    d.num_heads_q = d.num_heads_kv * (1 + rng_int(&r, 7));
    d.seqlen_q = d.seqlen_k = (int32_t)N;
    d.head_dim = D_LIST[rng_int(&r, COUNT(D_LIST))];
    d.head_dim_v = rng_chance(&r, 0.2) ? D_LIST[rng_int(&r, COUNT(D_LIST))] : 0;
    int bf = rng_chance(&r, 0.4);
    d.dtype_q = d.dtype_kv = bf ? AK_BF16 : AK_F32;
    d.dtype_o = bf && rng_chance(&r, 0.5) ? AK_BF16 : AK_F32;
    d.causal = rng_chance(&r, 0.1);
    if (rng_chance(&r, 0.1)) { /* the descriptor's sliding window intersects the pattern (flat positions) */
        d.window_left = rng_chance(&r, 0.2) ? -1 : rng_int(&r, (int)N + 1);
        d.window_right = rng_chance(&r, 0.2) ? -1 : rng_int(&r, (int)N + 1);
    }
    d.return_lse = 1;
    if (rng_chance(&r, 0.2))
        d.scale = (float)rng_range(&r, 0.05, 0.5);
    /* cap the work of the references: sequences x heads x N^2 x d */
    while ((double)d.batch * d.num_heads_q * (double)N * (double)N * (d.head_dim + (d.head_dim_v ? d.head_dim_v : d.head_dim)) > 4e7) {
        if (d.num_heads_q > d.num_heads_kv)
            d.num_heads_q -= d.num_heads_kv;
        else if (d.batch > 1)
            d.batch = 1;
        else if (d.head_dim > 8)
            d.head_dim = 8, d.head_dim_v = 0;
        else
            break;
    }
    int tile_m = TILE_M[rng_int(&r, COUNT(TILE_M))];
    problem_opts po;
    problem_opts_default(&po);
    tlayout lays[4] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};
    if (rng_chance(&r, 0.5)) {
        po.lay_q = lays[rng_int(&r, 4)];
        po.lay_k = lays[rng_int(&r, 4)];
        po.lay_v = lays[rng_int(&r, 4)];
        po.lay_o = lays[rng_int(&r, 4)];
    }
    if (rng_chance(&r, 0.2))
        po.amp_qk = 3.0;
    char what[400], rep[600];
    geom_str(&p, what, sizeof what);
    ak_sparse *sp = NULL;
    ak_status st = ak_sparse_neighborhood(g_ctx1, &p, &sp);
    if (st != AK_OK) {
        CHECK(0, "case %ld %s: ak_sparse_neighborhood: %s (%s)", idx, what, ak_status_string(st), ak_ctx_last_error(g_ctx1));
        return;
    }
    problem pb;
    if (problem_create(&pb, &d, 0, 0, &po, &r) != 0) {
        CHECK(0, "case %ld: problem_create", idx);
        ak_sparse_destroy(sp);
        return;
    }
    problem_repro(&pb, rep, sizeof rep);
    uint8_t *mask = (uint8_t *)xmalloc((size_t)(N * N));
    own_mask(&p.geom, mask);
    naive_out ref, nv, n64;
    ak_attn_tensors tq = problem_tensors(&pb, &pb.o, NULL);
    naive_alloc(&ref, &pb.d, &tq), naive_alloc(&nv, &pb.d, &tq), naive_alloc(&n64, &pb.d, &tq);
    masked_naive(&pb, mask, 0, &nv);
    masked_naive(&pb, mask, 1, &n64);
    char msg[512];
    st = run_ref_sparse64(&pb, sp, &ref, &nv);
    CHECK(st == AK_OK, "case %ld %s: ak_attention_ref_sparse: %s (%s)", idx, what, ak_status_string(st), ak_ctx_last_error(g_ctx1));
    CHECK(check_oracle(&ref, &n64, msg, sizeof msg), "case %ld %s [%s]: %s", idx, what, rep, msg);

    char tm[16];
    snprintf(tm, sizeof tm, "%d", tile_m);
    if (tile_m)
        setenv("AK_TILE_M", tm, 1);
    tbuf o2, l2;
    tbuf_make_like(&o2, &pb.o);
    tbuf_make_like(&l2, &pb.lse);
    ak_sparse_stats s1;
    memset(&s1, 0, sizeof s1);
    ak_status st1 = run_exec(g_ctx1, &pb, sp, &pb.o, &pb.lse, &s1);
    ak_status st2 = run_exec(g_ctx2, &pb, sp, &o2, &l2, NULL);
    unsetenv("AK_TILE_M");
    CHECK(st1 == AK_OK && st2 == AK_OK, "case %ld %s: run %s / %s (%s)", idx, what, ak_status_string(st1), ak_status_string(st2),
          ak_ctx_last_error(g_ctx1));
    if (st1 == AK_OK && st2 == AK_OK) {
        int ok = check_rule(&pb, &pb.o, &pb.lse, &ref, &nv, msg, sizeof msg);
        CHECK(ok, "case %ld %s tile_m %d [%s]: %s", idx, what, tile_m, rep, msg);
        if (g_verbose)
            printf("case %ld %s tile_m %d [%s]: %s\n", idx, what, tile_m, rep, msg);
        CHECK(tbuf_same_bytes(&pb.o, &o2) && tbuf_same_bytes(&pb.lse, &l2), "case %ld %s: 1 and 2 threads differ", idx, what);
        /* stats: active pairs = the mask's (with the descriptor's causal flag) x heads x sequences */
        double act = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++)
                act += mask[i * N + j] && naive_visible(&pb.d, i, j, N, N);
        act *= (double)pb.d.batch * pb.d.num_heads_q;
        int64_t dv = pb.dv;
        CHECK(fabs(s1.useful_flops - 2.0 * (pb.d.head_dim + dv) * act) <= 1e-9 * s1.useful_flops && s1.waste >= 1.0 &&
                  s1.exec_pairs >= act,
              "case %ld %s: stats useful_flops %.0f (expected %.0f), waste %.3f", idx, what, s1.useful_flops,
              2.0 * (pb.d.head_dim + dv) * act, s1.waste);
    }
    tbuf_free(&o2), tbuf_free(&l2);
    naive_free(&ref), naive_free(&nv), naive_free(&n64);
    free(mask);
    problem_destroy(&pb);
    ak_sparse_destroy(sp);
}

/* GNA: the query tile divides the stride (or is the default and the stride is larger; the builder then
 * splits every stride group into pieces): every query of a list shares one window, the list's union box
 * is that window, and the executor computes exactly the useful pairs (waste 1). */
static void gna_waste(void) {
    struct {
        int nd, L[3], k[3], s[3], qt[3];
    } C[] = {
        {1, {96}, {16}, {16}, {16}},          {1, {96}, {16}, {8}, {8}},         {1, {100}, {20}, {10}, {10}},
        {1, {512}, {128}, {128}, {0}},        {1, {300}, {40}, {20}, {5}},
        {2, {32, 32}, {8, 8}, {8, 8}, {8, 8}}, {2, {32, 40}, {8, 8}, {4, 8}, {4, 0}}, {2, {24, 24}, {8, 8}, {8, 8}, {0, 0}},
        {3, {8, 8, 8}, {4, 4, 4}, {4, 4, 4}, {0, 0, 0}},
    };
    for (int c = 0; c < COUNT(C); c++) {
        ak_na_params p;
        na_init(&p, C[c].nd, C[c].L, C[c].k, NULL, C[c].s, NULL);
        for (int a = 0; a < C[c].nd; a++)
            p.q_tile[a] = C[c].qt[a];
        char what[200];
        geom_str(&p, what, sizeof what);
        ak_sparse *sp = NULL;
        CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &p, &sp), AK_OK);
        if (!sp)
            continue;
        ak_attn_desc d;
        ak_attn_desc_init(&d);
        d.num_heads_q = d.num_heads_kv = 2;
        d.seqlen_q = d.seqlen_k = (int32_t)grid_n(&p.geom);
        d.head_dim = 16;
        ak_plan *pl = NULL;
        CHECK_STATUS(ak_plan_create_sparse(g_ctx2, &d, sp, &pl), AK_OK);
        if (pl) {
            ak_sparse_stats st;
            CHECK_STATUS(ak_plan_sparse_stats(pl, &st), AK_OK);
            CHECK(fabs(st.waste - 1.0) < 1e-12, "GNA %s: waste %.4f, expected 1 (perfectly block-sparse)", what, st.waste);
            ak_plan_destroy(pl);
        }
        ak_sparse_destroy(sp);
    }
}

static void group_exec(long n) {
    double t0 = tu_now();
    long first = tu_env_long("AK_NA_FIRST", 0);
    for (long i = first; i < first + n; i++) {
        int before = tc_failures;
        double tc = tu_now();
        exec_case(i);
        if (g_verbose)
            printf("  case %ld: %.2f s\n", i, tu_now() - tc);
        if (tc_failures > before)
            fprintf(stderr, "  rerun: AK_NA_FIRST=%ld AK_NA_N=1 AK_NA_VERBOSE=1 ./test_na exec\n", i);
    }
    gna_waste();
    printf("exec: %ld cases (%.1f s)\n", n, tu_now() - t0);
}

/* ---- group invalid -------------------------------------------------------------------------------- */

static void expect_invalid(const ak_na_params *p, ak_status want, const char *needle, const char *what) {
    ak_sparse *sp = (ak_sparse *)(uintptr_t)1;
    ak_status st = ak_sparse_neighborhood(g_ctx1, p, &sp);
    CHECK(st == want, "%s: status %s, expected %s", what, ak_status_string(st), ak_status_string(want));
    CHECK(sp == NULL, "%s: *out not NULL on failure", what);
    const char *m = ak_ctx_last_error(g_ctx1);
    CHECK(m && strstr(m, needle), "%s: message \"%s\" does not name \"%s\"", what, m ? m : "(null)", needle);
    if (st == AK_OK && sp && sp != (ak_sparse *)(uintptr_t)1)
        ak_sparse_destroy(sp);
}

static void group_invalid(void) {
    int L[3] = {10, 12, 9}, k[3] = {3, 5, 3};
    ak_na_params p, q;
    na_init(&p, 3, L, k, NULL, NULL, NULL);
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &p, &sp), AK_OK); /* the base is valid */
    ak_sparse_destroy(sp);

    CHECK_STATUS(ak_sparse_neighborhood(NULL, &p, &sp), AK_ERR_NULL_POINTER);
    sp = (ak_sparse *)(uintptr_t)1;
    CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, NULL, &sp), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL params: *out not cleared");
    CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &p, NULL), AK_ERR_NULL_POINTER);

    q = p, q.geom.ndim = 0;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "ndim", "ndim 0");
    q = p, q.geom.ndim = 4;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "ndim", "ndim 4");
    q = p, q.geom.ndim = -1;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "ndim", "ndim -1");
    q = p, q.geom.extent[1] = 0;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "extent[1]", "extent 0");
    q = p, q.geom.extent[2] = -5;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "extent[2]", "extent -5");
    q = p, q.geom.kernel[0] = 0;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "kernel[0]", "kernel 0");
    q = p, q.geom.kernel[1] = 13;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "kernel[1]", "kernel > extent");
    q = p, q.geom.dilation[1] = 3; /* 5 * 3 = 15 > 12 */
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "kernel[1] * dilation[1]", "kernel * dilation > extent");
    q = p, q.geom.dilation[0] = 0;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "dilation[0]", "dilation 0");
    q = p, q.geom.dilation[2] = -1;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "dilation[2]", "dilation -1");
    q = p, q.geom.stride[2] = 0;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "stride[2]", "stride 0");
    q = p, q.geom.stride[1] = 6; /* > kernel 5 */
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "stride[1]", "stride > kernel");
    q = p, q.geom.causal[0] = 2;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "causal[0]", "causal 2");
    q = p, q.q_tile[1] = -1;
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "q_tile[1]", "q_tile -1");
    /* more than 2^31 - 1 tokens: refused before any allocation */
    int big[3] = {2000, 2000, 2000}, k1[3] = {1, 1, 1};
    na_init(&q, 3, big, k1, NULL, NULL, NULL);
    expect_invalid(&q, AK_ERR_INVALID_ARGUMENT, "2^31", "grid too large");
    /* valid edges: kernel = extent, kernel * dilation = extent, stride = kernel, 1-token axes, unused axes ignored */
    int L2[2] = {1, 12}, k2[2] = {1, 4}, d2[2] = {1, 3}, s2[2] = {1, 4};
    na_init(&q, 2, L2, k2, d2, s2, NULL);
    q.geom.extent[2] = -7, q.geom.kernel[2] = 99, q.geom.dilation[2] = 0, q.geom.stride[2] = -3, q.geom.causal[2] = 5, q.q_tile[2] = -9;
    sp = NULL;
    CHECK_STATUS(ak_sparse_neighborhood(g_ctx1, &q, &sp), AK_OK);
    if (sp) {
        ak_sparse_desc dd;
        ak_sparse_get_desc(sp, &dd);
        CHECK(dd.na_geom.extent[2] == 0 && dd.na_geom.kernel[2] == 0, "unused axis kept in the plan: extent %d kernel %d", dd.na_geom.extent[2],
              dd.na_geom.kernel[2]);
        ak_sparse_destroy(sp);
    }
    printf("invalid: done\n");
}

/* ---- main ------------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *group = argc > 1 ? argv[1] : "all";
    long n_exec = tu_env_long("AK_NA_N", argc > 2 ? strtol(argv[2], NULL, 10) : 120);
    g_verbose = (int)tu_env_long("AK_NA_VERBOSE", 0);
    if (ak_ctx_create(&g_ctx1) != AK_OK || ak_ctx_create(&g_ctx2) != AK_OK) {
        fprintf(stderr, "test_na: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(g_ctx1, 1);
    ak_ctx_set_num_threads(g_ctx2, 2);
    int all = strcmp(group, "all") == 0, known = all;
    if (all || strcmp(group, "rules") == 0)
        group_rules(), known = 1;
    if (all || strcmp(group, "mask") == 0)
        group_mask(), known = 1;
    if (all || strcmp(group, "hand") == 0)
        group_hand(), known = 1;
    if (all || strcmp(group, "dense") == 0)
        group_dense(), known = 1;
    if (all || strcmp(group, "exec") == 0)
        group_exec(n_exec), known = 1;
    if (all || strcmp(group, "invalid") == 0)
        group_invalid(), known = 1;
    if (!known) {
        fprintf(stderr, "test_na: unknown group \"%s\" (rules, mask, hand, dense, exec, invalid, all)\n", group);
        return 2;
    }
    ak_ctx_destroy(g_ctx1);
    ak_ctx_destroy(g_ctx2);
    return tc_finish("test_na");
}
