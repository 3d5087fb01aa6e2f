/*
 * AnchorAttention (Zhang et al. 2025; dynamic-sparse.md §5; docs/dynamic/anchor.md): per query row the
 * anchor = max scaled logit over an anchor region (init + local); per block the mean anchor and the mean
 * query; per superblock of step blocks, the stripes = earlier keys whose pooled logit comes within theta
 * of the pooled anchor of at least one block. Exact rule in attnkit.h.
 *
 * Estimation per (sequence b, KV head): K rows as f32 once, then one task per (query head of the group,
 * superblock) in parallel (largest superblocks first); each task writes its own stripe list, so the plan
 * is the same for every thread count. Both products run on the context's f32 micro-kernel (qk) directly,
 * which leaves the scores key-major ([keys][rows]): anchors = row tiles (up to RM rows, transposed once)
 * x region keys in tiles of TN, a running max down the tile; stripes = the step pooled queries x the
 * candidate keys in tiles of TN, then compare-and-OR per key. No score matrix is kept. (ak__dyn_scores
 * returns row-major scores through a strided copy that cost as much as the products here.)
 *
 * Choices (also in docs/dynamic/anchor.md):
 *  - candidates = [init_end, m*S): every earlier key outside the init region (the v4 kernels scan
 *    [bs, m*S - bs): keys of the init region selected again were counted twice, and the block just
 *    before the superblock was never a candidate -- dynamic-sparse.md §5.8 quirk 1); the plan has set
 *    semantics anyway.
 *  - superblocks aligned at row 0 (v4), also with region 1 (the PyTorch reference starts at block 1).
 *  - tail rows (N % S), N < S and nq != nk: dense causal (the reference wrapper runs FlashAttention on
 *    the tail; its N % S == 0 zero-row bug, §5.8 quirk 3, cannot happen here).
 */
#include "dynamic/dyn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TN 64  /* keys per micro-kernel call */
#define RM 256 /* query rows per transposed tile */

void ak_anchor_params_init(ak_anchor_params *p) {
    if (!p) return;
    p->bs = 128;
    p->step = 16;
    p->theta = 12.0f;
    p->region = 0;
    p->superblock_lists = 0;
}

int ak__anchor_opt(void *params, const char *key, const char *val) {
    ak_anchor_params *p = (ak_anchor_params *)params;
    if (!strcmp(key, "bs")) return ak__dyn_int(val, &p->bs);
    if (!strcmp(key, "step")) return ak__dyn_int(val, &p->step);
    if (!strcmp(key, "theta")) return ak__dyn_float(val, &p->theta);
    if (!strcmp(key, "region")) {
        if (!strcmp(val, "v4") || !strcmp(val, "paper")) {
            p->region = val[0] == 'p';
            return 1;
        }
        return ak__dyn_int(val, &p->region);
    }
    if (!strcmp(key, "superblock_lists")) return ak__dyn_int(val, &p->superblock_lists);
    return 0;
}

/* Geometry of one problem (N = nq = nk when the method applies). */
typedef struct ageo {
    int64_t N, bs, step, S;
    int64_t n_sb;     /* full superblocks */
    int64_t n_full;   /* n_sb * S: rows below use the sparse rule */
    int64_t init_end; /* S (region 0) or bs (region 1) */
    int region;
    float theta;
} ageo;

static void geo_init(ageo *g, const ak_anchor_params *p, int64_t N) {
    g->N = N;
    g->bs = p->bs;
    g->step = p->step;
    g->S = (int64_t)p->bs * p->step;
    g->n_sb = N / g->S;
    g->n_full = g->n_sb * g->S;
    g->region = p->region;
    g->init_end = p->region == 0 ? g->S : g->bs;
    g->theta = p->theta;
}

static ak_status check_params(ak_ctx *ctx, const char *fn, const ak_anchor_params *p) {
    if (p->bs < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: bs = %d, must be >= 1", fn, p->bs);
    if (p->step < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: step = %d, must be >= 1", fn, p->step);
    if ((int64_t)p->bs * p->step > INT32_MAX)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: bs * step = %lld, must be <= %d", fn,
                        (long long)p->bs * p->step, INT32_MAX);
    if (p->theta != p->theta) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: theta is NaN", fn);
    if (p->region != 0 && p->region != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: region = %d, must be 0 (v4) or 1 (paper)", fn, p->region);
    if (p->superblock_lists != 0 && p->superblock_lists != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: superblock_lists = %d, must be 0 or 1", fn,
                        p->superblock_lists);
    return AK_OK;
}

/* Scratch of one task (one thread). */
typedef struct ascratch {
    float *q;    /* [bs][d] block rows */
    float *qt;   /* [d][RM] a row tile transposed (micro-kernel layout), or [d][mpad(step)] pooled queries */
    float *st;   /* [TN][max(RM, mpad(step))] scores of a key tile, key-major */
    float *xa;   /* [bs] row anchors */
    float *qbar; /* [step][d] pooled queries */
    float *thr;  /* [step] a_B - theta */
} ascratch;

static int64_t pad16(int64_t x) { return (x + 15) / 16 * 16; }

static void scratch_free(const ak_ctx *ctx, ascratch *s) {
    ak__free(ctx, s->q);
    ak__free(ctx, s->qt);
    ak__free(ctx, s->st);
    ak__free(ctx, s->xa);
    ak__free(ctx, s->qbar);
    ak__free(ctx, s->thr);
    memset(s, 0, sizeof *s);
}

/* Scratch for blocks of up to `rows` rows and `step` pooled queries (step 0: no pooling). */
static int scratch_alloc(const ak_ctx *ctx, int64_t rows, int64_t step, int d, ascratch *s) {
    memset(s, 0, sizeof *s);
    int64_t w = pad16(rows < RM ? rows : RM), ws = pad16(step);
    w = w > ws ? w : ws;
    s->q = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(rows * d));
    s->qt = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(w * d));
    s->st = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(w * TN));
    s->xa = (float *)ak__alloc(ctx, sizeof(float) * (size_t)rows);
    s->qbar = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(step * d + 1));
    s->thr = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(step + 1));
    if (s->q && s->qt && s->st && s->xa && s->qbar && s->thr) return 1;
    scratch_free(ctx, s);
    return 0;
}

/* qt[c][r] = a[r][c] for r < n, 0 for n <= r < mpad (c < d). */
static void transpose_rows(const float *a, int64_t n, int d, int64_t mpad, float *qt) {
    for (int c = 0; c < d; c++)
        for (int64_t r = 0; r < mpad; r++) qt[c * mpad + r] = r < n ? a[r * d + c] : 0.0f;
}

/* Row anchors xa[r] of rows [i0, i0 + n) of one block (q = their f32 rows [n][d]) over Kf ([keys][d] f32):
 * the context's micro-kernel on tiles of RM rows x TN keys; the max runs over the key-major score tile. */
static void anchor_rows(const ak_dyn_in *in, const ageo *g, const float *Kf, const float *q, int64_t i0, int64_t n,
                        ascratch *s, float *xa) {
    const int d = in->d;
    int64_t qb = i0 / g->bs, m = i0 / g->S;
    int64_t l0 = g->region == 0 ? m * g->S : qb * g->bs;           /* local part [l0, i], causal */
    int64_t a1 = g->init_end < l0 ? g->init_end : l0, l1 = i0 + n; /* init part [0, a1), all below l0 */
    for (int64_t r0 = 0; r0 < n; r0 += RM) {
        int64_t nr = n - r0 < RM ? n - r0 : RM, mpad = pad16(nr);
        float *x = xa + r0;
        transpose_rows(q + r0 * d, nr, d, mpad, s->qt);
        for (int64_t r = 0; r < nr; r++) x[r] = -INFINITY;
        for (int part = 0; part < 2; part++) {
            int64_t lo = part ? l0 : 0, hi = part ? (l1 < i0 + r0 + nr ? l1 : i0 + r0 + nr) : a1;
            for (int64_t j0 = lo; j0 < hi; j0 += TN) {
                int nk = (int)(hi - j0 < TN ? hi - j0 : TN);
                in->kern->qk(nk, d, (int)mpad, Kf + (size_t)j0 * d, d, s->qt, mpad, in->scale, s->st, mpad);
                for (int j = 0; j < nk; j++) {
                    const float *row = s->st + (size_t)j * mpad;
                    int64_t rs = part ? j0 + j - (i0 + r0) : 0; /* causal: rows r >= key - first row */
                    for (int64_t r = rs < 0 ? 0 : rs; r < nr; r++) x[r] = row[r] > x[r] ? row[r] : x[r];
                }
            }
        }
    }
}

/* Stripes of superblock m of query head h (sequence b): the selected candidate keys, ascending, into
 * sel (room for the candidate count); *count = their number. */
static void stripes(const ak_dyn_in *in, const ageo *g, const float *Kf, int64_t b, int32_t h, int64_t m, ascratch *s,
                    int32_t *sel, int64_t *count) {
    const int d = in->d;
    int64_t c0 = g->init_end, c1 = m * g->S, n = 0, step = g->step, mp = pad16(step);
    *count = 0;
    if (c1 <= c0 || g->theta == -INFINITY) return;
    if (g->theta == INFINITY) {
        for (int64_t j = c0; j < c1; j++) sel[n++] = (int32_t)j;
        *count = n;
        return;
    }
    for (int64_t B = 0; B < step; B++) { /* pooled anchor and pooled query of each block */
        int64_t i0 = m * g->S + B * g->bs;
        ak__dyn_rows(in, &in->t->q, b, h, i0, g->bs, d, s->q, d);
        anchor_rows(in, g, Kf, s->q, i0, g->bs, s, s->xa);
        double asum = 0.0;
        for (int64_t r = 0; r < g->bs; r++) asum += s->xa[r];
        for (int c = 0; c < d; c++) {
            double qs = 0.0;
            for (int64_t r = 0; r < g->bs; r++) qs += s->q[r * d + c];
            s->qbar[B * d + c] = (float)(qs / (double)g->bs);
        }
        s->thr[B] = (float)(asum / (double)g->bs) - g->theta;
    }
    transpose_rows(s->qbar, step, d, mp, s->qt);
    for (int64_t j0 = c0; j0 < c1; j0 += TN) { /* pooled queries x candidate keys, then compare-and-OR */
        int nk = (int)(c1 - j0 < TN ? c1 - j0 : TN);
        in->kern->qk(nk, d, (int)mp, Kf + (size_t)j0 * d, d, s->qt, mp, in->scale, s->st, mp);
        for (int j = 0; j < nk; j++) {
            const float *row = s->st + (size_t)j * mp;
            for (int64_t B = 0; B < step; B++)
                if (row[B] >= s->thr[B]) {
                    sel[n++] = (int32_t)(j0 + j);
                    break;
                }
        }
    }
    *count = n;
}

/* K rows [0, n) of (b, kvh) as f32 [n][d], loaded in parallel chunks. */
static float *load_keys(const ak_dyn_in *in, int64_t b, int32_t kvh, int64_t n) {
    const int d = in->d;
    float *Kf = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(n * d > 0 ? n * d : 1));
    if (!Kf) return NULL;
    const int64_t LC = 1024, nch = (n + LC - 1) / LC;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(static)
#endif
    for (int64_t c = 0; c < nch; c++) {
        int64_t j0 = c * LC, cnt = n - j0 < LC ? n - j0 : LC;
        ak__dyn_rows(in, &in->t->k, b, kvh, j0, cnt, d, Kf + (size_t)j0 * d, d);
    }
    return Kf;
}

/* The stripe lists of every (b, h, m >= 0): lists[(b * Hq + h) * n_sb + m] (NULL when empty), counts alike. */
static ak_status estimate(const ak_dyn_in *in, const ageo *g, int32_t **lists, int64_t *counts) {
    ak_ctx *ctx = in->ctx;
    const int64_t n_sb = g->n_sb, G = in->G, ntask = G * n_sb;
    int need_scores = g->theta != INFINITY && g->theta != -INFINITY && n_sb * g->S > g->init_end;
    for (int32_t b = 0; b < in->B; b++)
        for (int32_t kvh = 0; kvh < in->Hkv; kvh++) {
            float *Kf = NULL;
            if (need_scores && !(Kf = load_keys(in, b, kvh, g->n_full)))
                return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_anchor_plan: %lld key rows", (long long)g->n_full);
            int failed = 0;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic)
#endif
            for (int64_t tk = 0; tk < ntask; tk++) {
                int64_t m = n_sb - 1 - tk / G; /* largest superblocks first */
                int32_t h = (int32_t)(kvh * G + tk % G);
                int64_t slot = ((int64_t)b * in->Hq + h) * n_sb + m, ncand = m * g->S - g->init_end, cnt = 0;
                lists[slot] = NULL;
                counts[slot] = 0;
                if (ncand <= 0 || g->theta == -INFINITY) continue;
                ascratch s;
                memset(&s, 0, sizeof s);
                int32_t *sel = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)ncand), *keep = NULL;
                int ok = sel && (!need_scores || scratch_alloc(ctx, g->bs, g->step, in->d, &s));
                if (ok) {
                    stripes(in, g, Kf, b, h, m, &s, sel, &cnt);
                    scratch_free(ctx, &s);
                    if (cnt > 0 && (keep = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)cnt)))
                        memcpy(keep, sel, sizeof(int32_t) * (size_t)cnt);
                    ok = cnt == 0 || keep;
                }
                ak__free(ctx, sel);
                if (!ok) {
#ifdef AK_USE_OPENMP
#pragma omp atomic write
#endif
                    failed = 1;
                    continue;
                }
                lists[slot] = keep;
                counts[slot] = cnt;
            }
            ak__free(ctx, Kf);
            if (failed) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_anchor_plan: stripe lists");
        }
    return AK_OK;
}

/* The plan's CSR arrays from the stripe lists (lists == NULL: every row dense). */
typedef struct acsr {
    int64_t *soff, *coff;
    int32_t *slo, *shi, *cidx;
} acsr;

/* Spans of the rows [r0, r1) (one block or superblock): dense -> [0, last position + 1); else
 * [0, init_end) and [m*S, r1), cut at r1 and merged. Returns the count written to lo/hi. */
static int list_spans(const ageo *g, int dense, int64_t r0, int64_t r1, int64_t off, int64_t nk, int32_t *lo,
                      int32_t *hi) {
    int64_t top = r1 + off < nk ? r1 + off : nk; /* one past the last row's position, clipped to nk */
    if (dense) {
        if (top <= 0) return 0;
        lo[0] = 0, hi[0] = (int32_t)top;
        return 1;
    }
    int64_t m = r0 / g->S, a = g->init_end < top ? g->init_end : top, l0 = m * g->S;
    if (a >= l0) {
        lo[0] = 0, hi[0] = (int32_t)top;
        return 1;
    }
    lo[0] = 0, hi[0] = (int32_t)a;
    lo[1] = (int32_t)l0, hi[1] = (int32_t)top;
    return 2;
}

static ak_status assemble(ak_ctx *ctx, const ageo *g, int32_t B, int32_t Hq, int32_t nq, int32_t nk, int dense_all,
                          int sb_lists, int32_t *const *lists, const int64_t *counts, const char *name,
                          ak_sparse **out) {
    int64_t bq = sb_lists ? g->S : g->bs, nqb = ((int64_t)nq + bq - 1) / bq, R = (int64_t)B * Hq * nqb;
    int64_t off = (int64_t)nk - nq, ncols = 0;
    for (int64_t r = 0; r < R && !dense_all; r++) {
        int64_t r0 = (r % nqb) * bq, bh = r / nqb;
        if (r0 < g->n_full) ncols += counts[bh * g->n_sb + r0 / g->S];
    }
    acsr c;
    c.soff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(R + 1));
    c.coff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(R + 1));
    c.slo = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(2 * R + 1));
    c.shi = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(2 * R + 1));
    c.cidx = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(ncols + 1));
    ak_status st = AK_OK;
    if (!c.soff || !c.coff || !c.slo || !c.shi || !c.cidx) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_anchor_plan: plan arrays (%lld lists, %lld cols)", (long long)R,
                      (long long)ncols);
        goto done;
    }
    int64_t ns = 0, nc = 0;
    for (int64_t r = 0; r < R; r++) {
        int64_t r0 = (r % nqb) * bq, r1 = r0 + bq < nq ? r0 + bq : nq, bh = r / nqb;
        int dense = dense_all || r0 >= g->n_full;
        c.soff[r] = ns;
        c.coff[r] = nc;
        ns += list_spans(g, dense, r0, r1, off, nk, c.slo + ns, c.shi + ns);
        if (!dense) {
            int64_t slot = bh * g->n_sb + r0 / g->S;
            if (counts[slot] > 0) memcpy(c.cidx + nc, lists[slot], sizeof(int32_t) * (size_t)counts[slot]);
            nc += counts[slot];
        }
    }
    c.soff[R] = ns;
    c.coff[R] = nc;
    ak_sparse_desc d;
    ak_sparse_desc_init(&d);
    d.n_batch = B;
    d.n_heads = Hq;
    d.nq = nq;
    d.nk = nk;
    d.causal = 1;
    d.block_q = (int32_t)bq;
    d.n_qblocks = (int32_t)nqb;
    d.span_off = c.soff;
    d.span_lo = c.slo;
    d.span_hi = c.shi;
    d.col_off = c.coff;
    d.col_idx = c.cidx;
    d.name = name;
    st = ak_sparse_create(ctx, &d, out);
done:
    ak__free(ctx, c.soff);
    ak__free(ctx, c.coff);
    ak__free(ctx, c.slo);
    ak__free(ctx, c.shi);
    ak__free(ctx, c.cidx);
    return st;
}

/* Common entry checks: *params resolved (defaults when NULL), desc causal. */
static ak_status begin(ak_ctx *ctx, const char *fn, const ak_attn_desc *desc, const ak_attn_tensors *t,
                       const ak_anchor_params *params, ak_anchor_params *p, ak_dyn_in *in) {
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, fn, in);
    if (st != AK_OK) return st;
    if (params)
        *p = *params;
    else
        ak_anchor_params_init(p);
    if ((st = check_params(ctx, fn, p)) == AK_OK && !desc->causal)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: desc.causal = 0: AnchorAttention is causal only", fn);
    if (st != AK_OK) ak__dyn_end(in);
    return st;
}

static void explain(ak_dyn_info *info, const ak_dyn_in *in, const ageo *g, const int64_t *counts) {
    int64_t cand = 0;
    for (int64_t m = 0; m < g->n_sb; m++) cand += m * g->S > g->init_end ? m * g->S - g->init_end : 0;
    for (int32_t b = 0; b < in->B; b++)
        for (int32_t h = 0; h < in->Hq; h++) {
            int64_t tot = 0, mn = INT64_MAX, mx = 0, nsel = 0;
            for (int64_t m = 0; m < g->n_sb; m++) {
                int64_t c = counts[((int64_t)b * in->Hq + h) * g->n_sb + m];
                tot += c;
                if (m * g->S <= g->init_end) continue;
                nsel++;
                mn = c < mn ? c : mn;
                mx = c > mx ? c : mx;
            }
            ak__dyn_explain(
                info,
                "b%d h%d: %lld superblocks, %lld stripes = %.2f%% of %lld candidates (per superblock %lld..%lld), "
                "%lld tail rows dense\n",
                b, h, (long long)g->n_sb, (long long)tot, cand ? 100.0 * (double)tot / (double)cand : 0.0,
                (long long)cand, (long long)(nsel ? mn : 0), (long long)mx, (long long)(g->N - g->n_full));
        }
}

/* Active pairs / causal pairs of the plan, counted from the rule (exact; the same number as
 * ak_sparse_get_stats, without its row-by-row bitmaps): a sparse row i of superblock m sees
 * |[0, init_end) U [m*S, i]| keys plus the stripes of m (all in [init_end, m*S)). */
static double plan_density(const ageo *g, int32_t B, int32_t Hq, int64_t nq, int64_t nk, const int64_t *counts) {
    double pairs = 0.0, causal = 0.0;
    for (int64_t bh = 0; bh < (int64_t)B * Hq; bh++)
        for (int64_t i = 0; i < nq; i++) {
            int64_t pos = i + nk - nq, vis = pos + 1 < 0 ? 0 : pos + 1 > nk ? nk : pos + 1;
            causal += (double)vis;
            if (i >= g->n_full) {
                pairs += (double)vis;
                continue;
            }
            int64_t m = i / g->S, a = g->init_end < i + 1 ? g->init_end : i + 1;
            pairs += (double)(a >= m * g->S ? i + 1 : a + (i - m * g->S + 1)) + (double)counts[bh * g->n_sb + m];
        }
    return causal > 0.0 ? pairs / causal : 0.0;
}

ak_status ak_anchor_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                         const ak_anchor_params *params, ak_sparse **out, ak_dyn_info *info) {
    const char *fn = "ak_anchor_plan";
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: out is NULL", fn);
    if (info) memset(info, 0, sizeof *info);
    ak_anchor_params p;
    ak_dyn_in in;
    ak_status st = begin(ctx, fn, desc, t, params, &p, &in);
    if (st != AK_OK) return st;
    char name[128];
    snprintf(name, sizeof name, "anchor(bs=%d,step=%d,theta=%g,region=%s%s)", p.bs, p.step, (double)p.theta,
             p.region ? "paper" : "v4", p.superblock_lists ? ",sb_lists" : "");
    ageo g;
    geo_init(&g, &p, in.nq);
    int dense_all = in.nq != in.nk || g.n_sb == 0;
    if (dense_all) g.n_sb = 0, g.n_full = 0;
    int64_t nslot = (int64_t)in.B * in.Hq * g.n_sb;
    int32_t **lists = (int32_t **)ak__alloc(ctx, sizeof(int32_t *) * (size_t)(nslot + 1));
    int64_t *counts = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(nslot + 1));
    if (!lists || !counts) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: %lld stripe lists", fn, (long long)nslot);
    } else {
        for (int64_t x = 0; x < nslot; x++) lists[x] = NULL, counts[x] = 0;
        if (nslot > 0) st = estimate(&in, &g, lists, counts);
        if (st == AK_OK)
            st = assemble(ctx, &g, in.B, in.Hq, in.nq, in.nk, dense_all, p.superblock_lists, lists, counts, name, out);
    }
    if (st == AK_OK) {
        if (dense_all) {
            ak__dyn_explain(info, "all %d heads dense: %s\n", in.Hq,
                            in.nq != in.nk ? "nq != nk (decode / chunked prefill)" : "N < step * bs");
            if (info) info->n_dense_heads = in.Hq;
        } else {
            explain(info, &in, &g, counts);
        }
        ak__dyn_info_finish(&in, NULL, info);
        if (info) info->density = plan_density(&g, in.B, in.Hq, in.nq, in.nk, counts);
    }
    for (int64_t x = 0; lists && x < nslot; x++) ak__free(ctx, lists[x]);
    ak__free(ctx, lists);
    ak__free(ctx, counts);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_anchor_row_anchors(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                const ak_anchor_params *params, float *anchor) {
    const char *fn = "ak_anchor_row_anchors";
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak_anchor_params p;
    ak_dyn_in in;
    ak_status st = begin(ctx, fn, desc, t, params, &p, &in);
    if (st != AK_OK) return st;
    if (!anchor)
        st = ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: anchor is NULL", fn);
    else if (in.nq != in.nk)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: nq = %d != nk = %d", fn, in.nq, in.nk);
    ageo g;
    geo_init(&g, &p, in.nq);
    const int64_t N = in.nq, nqb = (N + g.bs - 1) / g.bs, ntask = (int64_t)in.G * nqb;
    for (int32_t b = 0; b < in.B && st == AK_OK; b++)
        for (int32_t kvh = 0; kvh < in.Hkv && st == AK_OK; kvh++) {
            float *Kf = load_keys(&in, b, kvh, N);
            if (!Kf) {
                st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: %lld key rows", fn, (long long)N);
                break;
            }
            int failed = 0;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic)
#endif
            for (int64_t tk = 0; tk < ntask; tk++) {
                int32_t h = (int32_t)(kvh * in.G + tk % in.G);
                int64_t i0 = tk / in.G * g.bs, n = N - i0 < g.bs ? N - i0 : g.bs;
                ascratch s;
                if (scratch_alloc(ctx, n, 0, in.d, &s)) {
                    ak__dyn_rows(&in, &in.t->q, b, h, i0, n, in.d, s.q, in.d);
                    anchor_rows(&in, &g, Kf, s.q, i0, n, &s, anchor + ((int64_t)b * in.Hq + h) * N + i0);
                    scratch_free(ctx, &s);
                } else {
#ifdef AK_USE_OPENMP
#pragma omp atomic write
#endif
                    failed = 1;
                }
            }
            ak__free(ctx, Kf);
            if (failed) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s: scratch", fn);
        }
    ak__dyn_end(&in);
    return st;
}
