/*
 * test_sparse.c — sparse plans (ak_sparse: builder, raw CSR form, element mask, statistics, density
 * grid) and the sparse executor (ak_plan_create_sparse + ak_attention_run) against
 * ak_attention_ref_sparse.
 *
 * THE ORACLES ARE THE TEST'S OWN. A plan is described by the entries the test adds (pspec: spans,
 * cols, bands, na flags, gather rows, any order, duplicates and overlaps included); own_masks() turns
 * them into the element mask by the header's set semantics (union of spans, cols, band keys
 * pos(i) - delta, the NATTEN neighborhood by the formulas of ak_sparse_na, intersected with
 * 0 <= j < nk and the plan's causal flag; pos(i) = i + nk - nq; rows in no block see nothing) without
 * any library code. Then, per case:
 *   - ak_sparse_mask of every (plan batch, plan head) must equal that mask byte for byte;
 *   - the plan's normalised arrays (ak_sparse_get_desc) must be in normal form and describe the very
 *     same mask;
 *   - ak_sparse_get_stats: pairs, dense / causal pairs and density recomputed from the mask;
 *     ak_plan_sparse_stats: useful_flops = 2 (d + dv) x the active pairs of every query head and
 *     sequence (pattern and the descriptor's own masks), waste >= 1, exec_pairs >= active pairs,
 *     balance >= 1 (= 1 on one thread);
 *   - masked_naive() (in this file: naive32.c's arithmetic restricted to the mask) in float is the
 *     baseline of the accuracy rule, in double it checks ak_attention_ref_sparse itself (1e-6
 *     relative, as check_oracle does for the dense oracle);
 *   - the executor (outputs NaN-poisoned) passes the rule of tests/README.md against
 *     ak_attention_ref_sparse writing AK_F64:  err(opt) <= 2 * err(naive32) + floor;  rows with no
 *     visible key have O == 0 exactly and LSE == -inf or exactly the sink;
 *   - the plan made on 1, 2 and 3 threads gives identical bytes.
 *
 * Groups (`test_sparse <group>`, default all):
 *   hand      worked examples whose masks are written literally (spans / cols / bands, causal with
 *             nq < nk, 1-D / 2-D neighborhoods incl. dilation, stride and causal axes) and closed-form
 *             outputs (d = 1, softmax weights j + 1)
 *   builder   the builder's normalisation seen through ak_sparse_get_desc (merged spans, dropped cols,
 *             merged bands, deduplicated rows), gather geometries with any n_qblocks, round trip
 *   sweep     random plans (seed = case index; AK_SWEEP_N cases, default argv[2] or 150;
 *             AK_SWEEP_FIRST; AK_SWEEP_VERBOSE=1)
 *   dtypes    every (q, kv, o) dtype combination with the descriptor's masks, softcap, ALiBi, sinks,
 *             LSE and strided layouts rotating
 *   masked    fully-masked rows: empty lists, rows in no block, patterns outside the visible range,
 *             nq > nk causal, nk = 0 / nq = 0
 *   threads   larger plans: identical bytes for 1, 2, 3 and 7 threads, plan reuse, caller workspace
 *   stats     statistics and the density grid
 *   invalid   every invalid input with its status and a last-error message
 * AK_MAX_ISA caps the library's ISA (exit 77 when the CPU lacks it); with AK_EMULATE_BF16DOT=1 and
 * AVX-512 every bf16 q / kv case must run the emulated bf16-pair kernel. AK_SPARSE_QUICK=1 (sanitizer
 * builds) shrinks the dtypes / threads groups.
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

static int g_verbose, g_quick;
static ak_ctx *g_ctx[3];      /* 1, 2 and 3 threads */
static ak_isa g_isa;
static int g_emu;             /* AK_EMULATE_BF16DOT=1 on AVX-512: bf16 q/kv must run the emulated bf16-pair kernel */
static char g_kernels[16][96]; /* distinct kernel names the executor's plans reported */
static int g_n_kernels;

static void note_kernel(const char *name) {
    for (int i = 0; i < g_n_kernels; i++)
        if (strcmp(g_kernels[i], name) == 0)
            return;
    if (g_n_kernels < 16)
        snprintf(g_kernels[g_n_kernels++], sizeof g_kernels[0], "%s", name);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_sparse: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}
static void *xcalloc(size_t n, size_t s) {
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) {
        fprintf(stderr, "test_sparse: out of memory\n");
        exit(1);
    }
    return p;
}
static int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- plan specifications: the entries the test adds, kept for the test's own mask ---------------- */

enum { E_SPAN, E_COL, E_BAND, E_NA, E_ROW };

typedef struct pent {
    int32_t kind, b, h, qb, x, y;
} pent;

typedef struct pspec {
    ak_sparse_desc geom; /* geometry only (arrays NULL) */
    pent *e;
    int64_t n, cap;
} pspec;

static void ps_init(pspec *ps, int32_t n_batch, int32_t n_heads, int32_t nq, int32_t nk, int32_t causal, int32_t block_q,
                    int32_t n_qblocks) {
    memset(ps, 0, sizeof *ps);
    ak_sparse_desc_init(&ps->geom);
    ps->geom.n_batch = n_batch, ps->geom.n_heads = n_heads, ps->geom.nq = nq, ps->geom.nk = nk;
    ps->geom.causal = causal, ps->geom.block_q = block_q, ps->geom.n_qblocks = n_qblocks;
}
/* Fixed blocks of block_q rows. */
static void ps_init_fixed(pspec *ps, int32_t n_batch, int32_t n_heads, int32_t nq, int32_t nk, int32_t causal, int32_t block_q) {
    ps_init(ps, n_batch, n_heads, nq, nk, causal, block_q, (nq + block_q - 1) / block_q);
}
static void ps_free(pspec *ps) {
    free(ps->e);
    ps->e = NULL, ps->n = ps->cap = 0;
}
static void ps_add(pspec *ps, int32_t kind, int32_t b, int32_t h, int32_t qb, int32_t x, int32_t y) {
    if (ps->n == ps->cap) {
        int64_t nc = ps->cap ? 2 * ps->cap : 256;
        pent *ne = (pent *)realloc(ps->e, sizeof(pent) * (size_t)nc);
        if (!ne) {
            fprintf(stderr, "test_sparse: out of memory\n");
            exit(1);
        }
        ps->e = ne, ps->cap = nc;
    }
    pent *p = &ps->e[ps->n++];
    p->kind = kind, p->b = b, p->h = h, p->qb = qb, p->x = x, p->y = y;
}
static int ps_gather(const pspec *ps) {
    for (int64_t k = 0; k < ps->n; k++)
        if (ps->e[k].kind == E_ROW)
            return 1;
    return 0;
}
static void ps_shuffle(pspec *ps, rng *r) {
    for (int64_t k = ps->n - 1; k > 0; k--) {
        int64_t j = (int64_t)(rng_u64(r) % (uint64_t)(k + 1));
        pent t = ps->e[k];
        ps->e[k] = ps->e[j], ps->e[j] = t;
    }
}

/* Make the plan through the builder; every add must succeed. */
static ak_status ps_build(ak_ctx *ctx, const pspec *ps, ak_sparse **out) {
    ak_sparse_builder *b = NULL;
    *out = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &ps->geom, &b);
    if (st != AK_OK)
        return st;
    for (int64_t k = 0; k < ps->n && st == AK_OK; k++) {
        const pent *x = &ps->e[k];
        switch (x->kind) {
        case E_SPAN: st = ak_sparse_builder_add_span(b, x->b, x->h, x->qb, x->x, x->y); break;
        case E_COL: st = ak_sparse_builder_add_col(b, x->b, x->h, x->qb, x->x); break;
        case E_BAND: st = ak_sparse_builder_add_band(b, x->b, x->h, x->qb, x->x, x->y); break;
        case E_NA: st = ak_sparse_builder_set_na(b, x->b, x->h, x->qb); break;
        default: st = ak_sparse_builder_add_row(b, x->b, x->h, x->qb, x->x); break;
        }
    }
    if (st == AK_OK)
        st = ak_sparse_builder_finish(b, out);
    ak_sparse_builder_destroy(b);
    return st;
}

/* The arrays of a plan (normalised form) as entries again. */
static void ps_from_desc(pspec *ps, const ak_sparse_desc *d) {
    ps_init(ps, d->n_batch, d->n_heads, d->nq, d->nk, d->causal, d->block_q, d->n_qblocks);
    ps->geom.na_geom = d->na_geom;
    int64_t R = (int64_t)d->n_batch * d->n_heads * d->n_qblocks;
    for (int64_t r = 0; r < R; r++) {
        int32_t qb = (int32_t)(r % d->n_qblocks), h = (int32_t)(r / d->n_qblocks % d->n_heads);
        int32_t b = (int32_t)(r / d->n_qblocks / d->n_heads);
        if (d->qrow_off)
            for (int64_t e = d->qrow_off[r]; e < d->qrow_off[r + 1]; e++)
                ps_add(ps, E_ROW, b, h, qb, d->qrows[e], 0);
        if (d->span_off)
            for (int64_t e = d->span_off[r]; e < d->span_off[r + 1]; e++)
                ps_add(ps, E_SPAN, b, h, qb, d->span_lo[e], d->span_hi[e]);
        if (d->col_off)
            for (int64_t e = d->col_off[r]; e < d->col_off[r + 1]; e++)
                ps_add(ps, E_COL, b, h, qb, d->col_idx[e], 0);
        if (d->band_off)
            for (int64_t e = d->band_off[r]; e < d->band_off[r + 1]; e++)
                ps_add(ps, E_BAND, b, h, qb, d->band_lo[e], d->band_hi[e]);
        if (d->na && d->na[r])
            ps_add(ps, E_NA, b, h, qb, 0, 0);
    }
}

/* ---- the test's own element mask ----------------------------------------------------------------- */

/* Does token i see token j in the neighborhood geometry g?  The header's rules, axis by axis. */
static int na_sees(const ak_sparse_na *g, int64_t i, int64_t j) {
    int64_t ti = i, tj = j;
    for (int a = g->ndim - 1; a >= 0; a--) {
        int64_t L = g->extent[a], xi = ti % L, xj = tj % L;
        ti /= L, tj /= L;
        int64_t dil = g->dilation[a], k = g->kernel[a], s = g->stride[a];
        if (xi % dil != xj % dil)
            return 0; /* another dilation group */
        int64_t grp = xi % dil, u = xi / dil, v = xj / dil;
        int64_t Lg = (L - grp + dil - 1) / dil; /* ceil((extent - g) / dilation) */
        int64_t left = k / 2, right = k - 1 - left, lo, hi;
        if (!g->causal[a]) {
            int64_t leader = imin64((u / s) * s + s / 2, Lg - 1);
            int64_t c = leader < left ? left : leader;
            if (c > Lg - 1 - right)
                c = Lg - 1 - right;
            lo = c - left, hi = c + right;
        } else {
            int64_t leader = imin64((u / s) * s + s - 1, Lg - 1);
            lo = imax64(leader - k + 1, 0), hi = u;
        }
        if (v < lo || v > hi)
            return 0;
    }
    return 1;
}

/* mask[(pb * n_heads + ph) * nq * nk + i * nk + j] for every plan (batch, head), from the entries. */
static void own_masks(const pspec *ps, uint8_t *mask) {
    const ak_sparse_desc *g = &ps->geom;
    int64_t nq = g->nq, nk = g->nk, nqb = g->n_qblocks;
    int64_t R = (int64_t)g->n_batch * g->n_heads * nqb;
    int gather = ps_gather(ps);
    memset(mask, 0, (size_t)g->n_batch * (size_t)g->n_heads * (size_t)nq * (size_t)nk);
    if (R == 0 || nk == 0)
        return;
    /* entries bucketed by list */
    int64_t *off = (int64_t *)xcalloc((size_t)R + 2, sizeof(int64_t)), *cur = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)(R + 1));
    int64_t *ord = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)(ps->n + 1));
    for (int64_t k = 0; k < ps->n; k++)
        off[((int64_t)ps->e[k].b * g->n_heads + ps->e[k].h) * nqb + ps->e[k].qb + 1]++;
    for (int64_t r = 0; r < R; r++)
        off[r + 1] += off[r], cur[r] = off[r];
    for (int64_t k = 0; k < ps->n; k++)
        ord[cur[((int64_t)ps->e[k].b * g->n_heads + ps->e[k].h) * nqb + ps->e[k].qb]++] = k;
    uint8_t *row = (uint8_t *)xmalloc((size_t)nk);
    for (int64_t r = 0; r < R; r++) {
        uint8_t *mb = mask + (size_t)(r / nqb) * (size_t)nq * (size_t)nk;
        int64_t qb = r % nqb, a = qb * g->block_q, z = imin64(nq, a + g->block_q);
        int64_t n_rows = gather ? off[r + 1] - off[r] : z - a;
        for (int64_t t = 0; t < n_rows; t++) {
            int64_t i;
            if (gather) {
                const pent *x = &ps->e[ord[off[r] + t]];
                if (x->kind != E_ROW)
                    continue;
                i = x->x;
            } else {
                i = a + t;
            }
            int64_t pos = i + nk - nq;
            memset(row, 0, (size_t)nk);
            for (int64_t k = off[r]; k < off[r + 1]; k++) {
                const pent *x = &ps->e[ord[k]];
                if (x->kind == E_SPAN) {
                    for (int64_t j = imax64(x->x, 0); j < imin64(x->y, nk); j++)
                        row[j] = 1;
                } else if (x->kind == E_COL) {
                    if (x->x >= 0 && x->x < nk)
                        row[x->x] = 1;
                } else if (x->kind == E_BAND) { /* key pos - delta for delta in [x, y] */
                    for (int64_t j = imax64(0, pos - x->y); j <= imin64(nk - 1, pos - x->x); j++)
                        row[j] = 1;
                } else if (x->kind == E_NA) {
                    for (int64_t j = 0; j < nk; j++)
                        row[j] |= (uint8_t)na_sees(&g->na_geom, i, j);
                }
            }
            if (g->causal)
                for (int64_t j = imax64(pos + 1, 0); j < nk; j++)
                    row[j] = 0;
            memcpy(mb + (size_t)i * (size_t)nk, row, (size_t)nk);
        }
    }
    free(off), free(cur), free(ord), free(row);
}

/* Normal form of ak_sparse_create (header): returns 1 if d satisfies it, else 0 with a reason. */
static int normal_form(const ak_sparse_desc *d, char *msg, size_t n) {
    int64_t R = (int64_t)d->n_batch * d->n_heads * d->n_qblocks;
    uint8_t *seen = (uint8_t *)xcalloc((size_t)d->nq + 1, 1);
    int ok = 1;
    for (int64_t r = 0; r < R && ok; r++) {
        if (r % (d->n_qblocks ? d->n_qblocks : 1) == 0)
            memset(seen, 0, (size_t)d->nq + 1);
        if (d->qrow_off)
            for (int64_t e = d->qrow_off[r]; e < d->qrow_off[r + 1] && ok; e++) {
                int32_t i = d->qrows[e];
                if (i < 0 || i >= d->nq || seen[i])
                    snprintf(msg, n, "list %lld: row %d out of range or twice", (long long)r, i), ok = 0;
                else
                    seen[i] = 1;
            }
        for (int64_t e = d->span_off[r]; e < d->span_off[r + 1] && ok; e++)
            if (d->span_lo[e] < 0 || d->span_hi[e] > d->nk || d->span_lo[e] >= d->span_hi[e] ||
                (e > d->span_off[r] && d->span_lo[e] < d->span_hi[e - 1]))
                snprintf(msg, n, "list %lld: span [%d, %d) not in normal form", (long long)r, d->span_lo[e], d->span_hi[e]), ok = 0;
        for (int64_t e = d->col_off[r]; e < d->col_off[r + 1] && ok; e++) {
            int32_t j = d->col_idx[e];
            int inside = 0;
            for (int64_t s = d->span_off[r]; s < d->span_off[r + 1]; s++)
                inside |= d->span_lo[s] <= j && j < d->span_hi[s];
            if (j < 0 || j >= d->nk || inside || (e > d->col_off[r] && j <= d->col_idx[e - 1]))
                snprintf(msg, n, "list %lld: col %d not in normal form", (long long)r, j), ok = 0;
        }
        for (int64_t e = d->band_off[r]; e < d->band_off[r + 1] && ok; e++)
            if (d->band_lo[e] > d->band_hi[e] || (e > d->band_off[r] && d->band_lo[e] <= d->band_hi[e - 1]))
                snprintf(msg, n, "list %lld: band [%d, %d] not in normal form", (long long)r, d->band_lo[e], d->band_hi[e]), ok = 0;
        if (ok && d->na && d->na[r] > 1)
            snprintf(msg, n, "list %lld: na = %d", (long long)r, d->na[r]), ok = 0;
    }
    free(seen);
    return ok;
}

/* ---- the masked naive references ----------------------------------------------------------------- */

typedef struct maskset {
    int32_t n_batch, n_heads, Hq, Hkv;
    int64_t nq, nk;
    const uint8_t *m; /* [n_batch][n_heads][nq][nk] */
} maskset;

static int32_t plan_head_of(const maskset *ms, int32_t h) {
    if (ms->n_heads == 1)
        return 0;
    if (ms->n_heads == ms->Hq)
        return h;
    return h / (ms->Hq / ms->Hkv);
}
static const uint8_t *mask_of(const maskset *ms, int32_t b, int32_t h) {
    int64_t pb = ms->n_batch == 1 ? 0 : b;
    return ms->m + (size_t)(pb * ms->n_heads + plan_head_of(ms, h)) * (size_t)ms->nq * (size_t)ms->nk;
}

static ak_dtype compute_dtype(const ak_attn_desc *d) {
    if (d->dtype_q == AK_BF16 || d->dtype_kv == AK_BF16)
        return AK_BF16;
    if (d->dtype_q == AK_F16 || d->dtype_kv == AK_F16)
        return AK_F16;
    return AK_F32;
}

/* naive32.c's two row computations (float as PyTorch's math path / plain double), over the keys that
 * the descriptor's masks AND the plan's mask let through. nvis = the number of such keys. */
static void masked_naive(const problem *p, const maskset *ms, int prec64, naive_out *out) {
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
            double slope = 0, sink = -INFINITY;
            if (d->has_alibi) {
                int64_t i2[2] = {b, h}, i1[1] = {h};
                slope = ten_get(&p->alibi.t, p->alibi.t.ndim == 2 ? i2 : i1);
            }
            if (d->has_sinks) {
                int64_t i1[1] = {h};
                sink = ten_get(&p->sinks.t, i1);
            }
            const uint8_t *mk = mask_of(ms, b, h);
            for (int64_t i = 0; i < Lq; i++) {
                int64_t r = ((int64_t)b * Hq + h) * Lq + i, n = 0;
                double *o_row = out->o + r * dv;
                for (int64_t c = 0; c < dv; c++)
                    o_row[c] = 0.0;
                out->lse[r] = -INFINITY;
                for (int64_t c = 0; c < hd; c++)
                    q[c] = ten_get4(&p->q.t, b, h, i, c);
                const uint8_t *mr = mk + (size_t)i * (size_t)Lk;
                if (!prec64) {
                    float scale = isnan(d->scale) ? (float)(1.0 / sqrt((double)hd)) : d->scale;
                    float fs = (float)slope, fsink = (float)sink, m = fsink;
                    for (int64_t j = 0; j < Lk; j++) {
                        if (!mr[j] || !naive_visible(d, i, j, Lq, Lk)) {
                            sc[j] = -INFINITY;
                            continue;
                        }
                        float dot = 0.0f;
                        for (int64_t c = 0; c < hd; c++)
                            dot += (float)q[c] * (float)kk[j * hd + c];
                        float x = (float)tu_round_to(cdt, scale * dot);
                        if (d->softcap > 0)
                            x = (float)tu_round_to(cdt, d->softcap * tanhf(x / d->softcap));
                        if (d->has_alibi)
                            x = (float)tu_round_to(cdt, x - fs * fabsf((float)(i + Lk - Lq - j)));
                        sc[j] = x;
                        m = x > m ? x : m;
                        n++;
                    }
                    out->nvis[r] = (int32_t)n;
                    if (n == 0 && fsink == -INFINITY)
                        continue;
                    float sum = fsink == -INFINITY ? 0.0f : expf(fsink - m);
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
                    double scale = isnan(d->scale) ? 1.0 / sqrt((double)hd) : (double)d->scale, m = sink;
                    for (int64_t j = 0; j < Lk; j++) {
                        if (!mr[j] || !naive_visible(d, i, j, Lq, Lk)) {
                            sc[j] = -INFINITY;
                            continue;
                        }
                        double dot = 0.0;
                        for (int64_t c = 0; c < hd; c++)
                            dot += q[c] * kk[j * hd + c];
                        double x = scale * dot;
                        if (d->softcap > 0)
                            x = d->softcap * tanh(x / d->softcap);
                        if (d->has_alibi)
                            x -= slope * fabs((double)(i + Lk - Lq - j));
                        sc[j] = x;
                        m = x > m ? x : m;
                        n++;
                    }
                    out->nvis[r] = (int32_t)n;
                    if (n == 0 && sink == -INFINITY)
                        continue;
                    double sum = sink == -INFINITY ? 0.0 : exp(sink - m);
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
static ak_status run_ref_sparse64(ak_ctx *ctx, const problem *p, const ak_sparse *sp, naive_out *ref, const naive_out *nvis_from) {
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
    ak_status st = ak_attention_ref_sparse(ctx, &d, sp, &t);
    memcpy(ref->nvis, nvis_from->nvis, sizeof(int32_t) * (size_t)ref->n_rows);
    return st;
}

/* ---- ISA ----------------------------------------------------------------------------------------- */

static int requested_isa(void) {
    const char *s = getenv("AK_MAX_ISA");
    if (!s || !*s)
        return -1;
    for (int i = AK_ISA_SCALAR; i <= AK_ISA_AVX512BF16; i++)
        if (strcmp(s, ak_isa_name((ak_isa)i)) == 0)
            return i;
    return -2;
}

static int kernel_within_cap(const char *name, ak_isa cap) {
    if (!name)
        return 0;
    if (cap == AK_ISA_SCALAR)
        return strstr(name, "avx") == NULL;
    if (cap == AK_ISA_AVX2)
        return strstr(name, "avx512") == NULL;
    if (cap == AK_ISA_AVX512)
        return strstr(name, "avx512bf16") == NULL || strstr(name, "avx512bf16emu") != NULL;
    return 1;
}

/* ---- one case: plan + problem, every check ------------------------------------------------------- */

typedef struct spcase {
    ak_attn_desc d;
    problem_opts po;
    pspec ps;
    int tile_m;             /* AK_TILE_M while the executor's plans are made (0: unset) */
    int raw_shuffle;        /* gather plans: run the plan re-made by ak_sparse_create with each block's rows shuffled */
    int64_t rows_gathered;  /* distinct (plan batch, plan head, row) the test put in blocks */
} spcase;

/* Create a sparse attention plan with AK_TILE_M = tile_m (0: the library's default). */
static ak_status plan_with_tile(ak_ctx *ctx, const ak_attn_desc *d, const ak_sparse *sp, int tile_m, ak_plan **pl) {
    if (tile_m) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", tile_m);
        setenv("AK_TILE_M", buf, 1);
    }
    ak_status st = ak_plan_create_sparse(ctx, d, sp, pl);
    if (tile_m)
        unsetenv("AK_TILE_M");
    return st;
}

static void describe(const spcase *c, char *buf, size_t n, const problem *p) {
    const ak_sparse_desc *g = &c->ps.geom;
    size_t k = 0;
    char repro[768];
    problem_repro(p, repro, sizeof repro);
    k += (size_t)snprintf(buf + k, n - k, "%s | plan nb%d nh%d q%d k%d%s bq%d nqb%d%s", repro, g->n_batch, g->n_heads, g->nq,
                          g->nk, g->causal ? " causal" : "", g->block_q, g->n_qblocks, ps_gather(&c->ps) ? " gather" : "");
    if (g->na_geom.ndim && k < n) {
        k += (size_t)snprintf(buf + k, n - k, " na%dd", g->na_geom.ndim);
        for (int a = 0; a < g->na_geom.ndim && k < n; a++)
            k += (size_t)snprintf(buf + k, n - k, " [L%d k%d d%d s%d%s]", g->na_geom.extent[a], g->na_geom.kernel[a],
                                  g->na_geom.dilation[a], g->na_geom.stride[a], g->na_geom.causal[a] ? " c" : "");
    }
    if (c->tile_m && k < n)
        k += (size_t)snprintf(buf + k, n - k, " AK_TILE_M=%d", c->tile_m);
    if (c->raw_shuffle && ps_gather(&c->ps) && k < n)
        snprintf(buf + k, n - k, " (raw plan, rows shuffled)");
}

/* The mask of the whole problem's (b, h), descriptor masks included: active pairs. */
static double active_pairs(const ak_attn_desc *d, const maskset *ms) {
    double n = 0;
    for (int32_t b = 0; b < d->batch; b++)
        for (int32_t h = 0; h < d->num_heads_q; h++) {
            const uint8_t *m = mask_of(ms, b, h);
            for (int64_t i = 0; i < ms->nq; i++)
                for (int64_t j = 0; j < ms->nk; j++)
                    n += m[(size_t)i * (size_t)ms->nk + (size_t)j] && naive_visible(d, i, j, ms->nq, ms->nk);
        }
    return n;
}

/* Pattern statistics recomputed from the test's masks. */
static void check_pattern_stats(const ak_sparse_stats *s, const pspec *ps, const uint8_t *own, const ak_sparse_desc *nd,
                                const char *who, const char *label) {
    const ak_sparse_desc *g = &ps->geom;
    int64_t nq = g->nq, nk = g->nk, nbh = (int64_t)g->n_batch * g->n_heads;
    double pairs = 0, causal = 0;
    size_t total = (size_t)nbh * (size_t)nq * (size_t)nk;
    for (size_t x = 0; x < total; x++)
        pairs += own[x];
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nk; j++)
            causal += j <= i + nk - nq;
    causal *= (double)nbh;
    double dense = (double)nbh * (double)nq * (double)nk, den = g->causal ? causal : dense;
    double density = den > 0 ? pairs / den : 0.0;
    int64_t R = nbh * g->n_qblocks, n_na = 0;
    for (int64_t r = 0; r < R; r++)
        n_na += nd->na ? nd->na[r] : 0;
    CHECK(s->pairs == pairs, "%s: %s pairs = %.0f, the test's mask has %.0f", label, who, s->pairs, pairs);
    CHECK(s->dense_pairs == dense, "%s: %s dense_pairs = %.0f, expected %.0f", label, who, s->dense_pairs, dense);
    CHECK(s->causal_pairs == causal, "%s: %s causal_pairs = %.0f, expected %.0f", label, who, s->causal_pairs, causal);
    CHECK(fabs(s->density - density) <= 1e-12 * fmax(1.0, density), "%s: %s density = %.15g, expected %.15g (%s plan)", label, who,
          s->density, density, g->causal ? "causal" : "non-causal");
    CHECK(s->n_lists == R, "%s: %s n_lists = %lld, expected %lld", label, who, (long long)s->n_lists, (long long)R);
    CHECK(s->n_spans == nd->span_off[R] && s->n_cols == nd->col_off[R] && s->n_bands == nd->band_off[R],
          "%s: %s n_spans/n_cols/n_bands = %lld/%lld/%lld, the plan's arrays hold %lld/%lld/%lld", label, who, (long long)s->n_spans,
          (long long)s->n_cols, (long long)s->n_bands, (long long)nd->span_off[R], (long long)nd->col_off[R],
          (long long)nd->band_off[R]);
    CHECK(s->n_na == n_na, "%s: %s n_na = %lld, expected %lld", label, who, (long long)s->n_na, (long long)n_na);
}

/* Everything about one case. Returns the number of rows (over b, h) with no visible key; -1 on failure. */
static int64_t verify_case(spcase *c, const char *label, uint64_t data_seed) {
    int fails0 = tc_failures;
    int64_t masked_rows = -1;
    ak_sparse *sp = NULL;
    ak_status st = ps_build(g_ctx[0], &c->ps, &sp);
    CHECK(st == AK_OK, "%s: building the plan: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx[0]));
    if (st != AK_OK)
        return -1;
    ak_sparse *sp_run = sp; /* the plan the reference and the executor run (2b may replace it) */
    const ak_sparse_desc *g = &c->ps.geom;
    int64_t nq = g->nq, nk = g->nk, nbh = (int64_t)g->n_batch * g->n_heads;
    size_t plane = (size_t)nq * (size_t)nk;
    uint8_t *own = (uint8_t *)xmalloc((size_t)nbh * plane), *lib = (uint8_t *)xmalloc(plane);
    uint8_t *norm = (uint8_t *)xmalloc((size_t)nbh * plane);
    own_masks(&c->ps, own);

    /* 1. ak_sparse_mask == the test's mask */
    for (int32_t pb = 0; pb < g->n_batch; pb++)
        for (int32_t ph = 0; ph < g->n_heads; ph++) {
            memset(lib, 0xAB, plane);
            st = ak_sparse_mask(sp, pb, ph, lib);
            CHECK(st == AK_OK, "%s: ak_sparse_mask(%d, %d): %s", label, pb, ph, ak_status_string(st));
            const uint8_t *mine = own + (size_t)(pb * g->n_heads + ph) * plane;
            if (st == AK_OK && memcmp(lib, mine, plane) != 0) {
                size_t x = 0;
                while (lib[x] == mine[x])
                    x++;
                CHECK(0, "%s: ak_sparse_mask(b %d, h %d) row %lld key %lld = %d, the test's mask says %d", label, pb, ph,
                      (long long)(x / (size_t)nk), (long long)(x % (size_t)nk), lib[x], mine[x]);
            }
        }

    /* 2. the normalised arrays: normal form, same geometry, same mask */
    ak_sparse_desc nd;
    st = ak_sparse_get_desc(sp, &nd);
    CHECK(st == AK_OK, "%s: ak_sparse_get_desc: %s", label, ak_status_string(st));
    if (st != AK_OK)
        goto out_sp;
    {
        char why[256] = "";
        CHECK(nd.n_batch == g->n_batch && nd.n_heads == g->n_heads && nd.nq == g->nq && nd.nk == g->nk && nd.causal == g->causal &&
                  nd.n_qblocks == g->n_qblocks && (nd.qrow_off != NULL) == ps_gather(&c->ps) &&
                  memcmp(&nd.na_geom, &g->na_geom, sizeof nd.na_geom) == 0,
              "%s: ak_sparse_get_desc's geometry differs from the builder's", label);
        CHECK(normal_form(&nd, why, sizeof why), "%s: the builder's arrays are not in normal form: %s", label, why);
        pspec back;
        ps_from_desc(&back, &nd);
        own_masks(&back, norm);
        ps_free(&back);
        CHECK(memcmp(norm, own, (size_t)nbh * plane) == 0, "%s: the builder's normalised arrays describe another mask", label);
        ak_sparse_stats s;
        st = ak_sparse_get_stats(sp, &s);
        CHECK(st == AK_OK, "%s: ak_sparse_get_stats: %s", label, ak_status_string(st));
        check_pattern_stats(&s, &c->ps, own, &nd, "ak_sparse_get_stats", label);
        CHECK(s.n_rows_gathered == c->rows_gathered, "%s: n_rows_gathered = %lld, the test put %lld rows in blocks", label,
              (long long)s.n_rows_gathered, (long long)c->rows_gathered);
    }

    /* 2b. gather plans: the same plan from raw arrays with every block's rows in random order (the
     *     builder sorts them); the arrays are freed right after ak_sparse_create (it copies them) */
    if (c->raw_shuffle && nd.qrow_off) {
        int64_t R = nbh * g->n_qblocks, nr = nd.qrow_off[R];
        int32_t *rows = (int32_t *)xmalloc(sizeof(int32_t) * (size_t)(nr + 1));
        memcpy(rows, nd.qrows, sizeof(int32_t) * (size_t)nr);
        rng rs = rng_seed(data_seed ^ 0x77ull);
        for (int64_t x = 0; x < R; x++)
            for (int64_t e = nd.qrow_off[x + 1] - 1; e > nd.qrow_off[x]; e--) {
                int64_t f = nd.qrow_off[x] + (int64_t)(rng_u64(&rs) % (uint64_t)(e - nd.qrow_off[x] + 1));
                int32_t tmp = rows[e];
                rows[e] = rows[f], rows[f] = tmp;
            }
        ak_sparse_desc d2 = nd;
        d2.qrows = rows;
        d2.name = "shuffled rows";
        ak_sparse *sp2 = NULL;
        ak_status st2 = ak_sparse_create(g_ctx[0], &d2, &sp2);
        free(rows);
        CHECK(st2 == AK_OK, "%s: ak_sparse_create of the normalised arrays with shuffled rows: %s (%s)", label, ak_status_string(st2),
              ak_ctx_last_error(g_ctx[0]));
        if (st2 == AK_OK) {
            CHECK(strcmp(ak_sparse_name(sp2), "shuffled rows") == 0, "%s: ak_sparse_name = \"%s\"", label, ak_sparse_name(sp2));
            for (int32_t pb = 0; pb < g->n_batch; pb++)
                for (int32_t ph = 0; ph < g->n_heads; ph++) {
                    st2 = ak_sparse_mask(sp2, pb, ph, lib);
                    CHECK(st2 == AK_OK && memcmp(lib, own + (size_t)(pb * g->n_heads + ph) * plane, plane) == 0,
                          "%s: the plan with shuffled rows has another mask (b %d, h %d)", label, pb, ph);
                }
            sp_run = sp2;
        }
    }

    /* 3. the problem, the references */
    problem p;
    rng r = rng_seed(data_seed);
    if (problem_create(&p, &c->d, 0, 0, &c->po, &r)) {
        CHECK(0, "%s: problem_create failed", label);
        goto out_sp;
    }
    char info[1536];
    describe(c, info, sizeof info, &p);
    if (g_verbose)
        printf("%s: %s\n", label, info);
    maskset ms = {g->n_batch, g->n_heads, c->d.num_heads_q, c->d.num_heads_kv, nq, nk, own};
    ak_attn_tensors t0 = problem_tensors(&p, &p.o, c->d.return_lse ? &p.lse : NULL);
    naive_out n32, n64, ref;
    if (naive_alloc(&n32, &p.d, &t0) || naive_alloc(&n64, &p.d, &t0) || naive_alloc(&ref, &p.d, &t0)) {
        CHECK(0, "%s: out of memory", label);
        naive_free(&n32), naive_free(&n64), naive_free(&ref);
        problem_destroy(&p);
        goto out_sp;
    }
    masked_naive(&p, &ms, 0, &n32);
    masked_naive(&p, &ms, 1, &n64);
    masked_rows = 0;
    for (int64_t x = 0; x < n64.n_rows; x++)
        masked_rows += n64.nvis[x] == 0;
    char msg[512];
    st = run_ref_sparse64(g_ctx[0], &p, sp_run, &ref, &n64);
    CHECK(st == AK_OK, "%s: ak_attention_ref_sparse: %s (%s)\n  %s", label, ak_status_string(st), ak_ctx_last_error(g_ctx[0]), info);
    int ref_ok = st == AK_OK && check_oracle(&ref, &n64, msg, sizeof msg);
    CHECK(st != AK_OK || ref_ok, "%s: ak_attention_ref_sparse vs the test's masked double reference: %s\n  %s", label, msg, info);

    /* 4. the executor on 1, 2, 3 threads */
    tbuf o[3], l[3];
    memset(o, 0, sizeof o), memset(l, 0, sizeof l);
    o[0] = p.o, l[0] = p.lse;
    for (int k = 1; k < 3; k++)
        if (tbuf_make_like(&o[k], &p.o) || (c->d.return_lse && tbuf_make_like(&l[k], &p.lse)))
            CHECK(0, "%s: out of memory", label);
    double active = active_pairs(&c->d, &ms);
    for (int k = 0; k < 3 && ref_ok; k++) {
        ak_plan *pl = NULL;
        st = plan_with_tile(g_ctx[k], &c->d, sp_run, c->tile_m, &pl);
        CHECK(st == AK_OK, "%s: ak_plan_create_sparse (%d threads): %s (%s)\n  %s", label, k + 1, ak_status_string(st),
              ak_ctx_last_error(g_ctx[k]), info);
        if (st != AK_OK)
            break;
        const char *kn = ak_plan_kernel_name(pl);
        note_kernel(kn ? kn : "(null)");
        CHECK(kernel_within_cap(kn, g_isa), "%s: kernel %s is above the ISA cap %s", label, kn ? kn : "(null)", ak_isa_name(g_isa));
        if (g_emu && c->d.dtype_q == AK_BF16 && c->d.dtype_kv == AK_BF16)
            CHECK(kn && strstr(kn, "bf16emu"), "%s: AK_EMULATE_BF16DOT=1 with bf16 q/kv but the plan runs %s", label, kn ? kn : "(null)");
        if (k == 0) {
            ak_sparse_stats s;
            st = ak_plan_sparse_stats(pl, &s);
            CHECK(st == AK_OK, "%s: ak_plan_sparse_stats: %s", label, ak_status_string(st));
            if (st == AK_OK) {
                check_pattern_stats(&s, &c->ps, own, &nd, "ak_plan_sparse_stats", label);
                double dv = (double)p.dv, uf = 2.0 * ((double)c->d.head_dim + dv) * active;
                CHECK(s.useful_flops == uf, "%s: useful_flops = %.0f, expected 2 (d + dv) x %.0f active pairs = %.0f", label,
                      s.useful_flops, active, uf);
                CHECK(s.exec_pairs >= active, "%s: exec_pairs = %.0f < %.0f active pairs", label, s.exec_pairs, active);
                CHECK(s.waste >= 1.0, "%s: waste = %g < 1", label, s.waste);
                if (active > 0)
                    CHECK(fabs(s.waste - s.exec_pairs / active) <= 1e-12 * s.waste, "%s: waste = %g, exec_pairs / active = %g", label,
                          s.waste, s.exec_pairs / active);
                CHECK(s.balance == 1.0, "%s: balance = %g on one thread, must be 1", label, s.balance);
            }
        } else {
            ak_sparse_stats s;
            st = ak_plan_sparse_stats(pl, &s);
            CHECK(st == AK_OK && s.balance >= 1.0 - 1e-12, "%s: balance = %g on %d threads, must be >= 1", label, s.balance, k + 1);
        }
        ak_attn_tensors t = problem_tensors(&p, &o[k], c->d.return_lse ? &l[k] : NULL);
        st = ak_attention_run(pl, &t, NULL, 0);
        ak_plan_destroy(pl);
        CHECK(st == AK_OK, "%s: ak_attention_run (%d threads): %s (%s)\n  %s", label, k + 1, ak_status_string(st),
              ak_ctx_last_error(g_ctx[k]), info);
        if (st != AK_OK)
            break;
        if (k == 0) {
            int ok = check_rule(&p, &o[0], c->d.return_lse ? &l[0] : NULL, &ref, &n32, msg, sizeof msg);
            CHECK(ok, "%s: %s\n  %s", label, msg, info);
            if (g_verbose > 1 && ok)
                printf("  %s\n", msg);
            if (ok && c->d.return_lse) { /* fully-masked rows: LSE exactly -inf or the sink */
                for (int32_t b = 0; b < c->d.batch; b++)
                    for (int32_t h = 0; h < c->d.num_heads_q; h++) {
                        double sink = -INFINITY;
                        if (c->d.has_sinks) {
                            int64_t i1[1] = {h};
                            sink = ten_get(&p.sinks.t, i1);
                        }
                        for (int64_t i = 0; i < nq; i++) {
                            int64_t row = ((int64_t)b * c->d.num_heads_q + h) * nq + i;
                            if (n64.nvis[row] != 0)
                                continue;
                            double x = ten_get3(&l[0].t, b, h, i);
                            CHECK(x == sink, "%s: fully-masked row (b %d, h %d, i %lld): LSE = %g, expected exactly %g", label, b, h,
                                  (long long)i, x, sink);
                        }
                    }
            }
        } else {
            int same = tbuf_same_bytes(&o[0], &o[k]) && (!c->d.return_lse || tbuf_same_bytes(&l[0], &l[k]));
            CHECK(same, "%s: 1 and %d threads give different bytes\n  %s", label, k + 1, info);
        }
    }
    if (tc_failures != fails0)
        fprintf(stderr, "  case: %s\n", info);
    for (int k = 1; k < 3; k++)
        tbuf_free(&o[k]), tbuf_free(&l[k]);
    naive_free(&n32), naive_free(&n64), naive_free(&ref);
    problem_destroy(&p);
out_sp:
    if (sp_run != sp)
        ak_sparse_destroy(sp_run);
    ak_sparse_destroy(sp);
    free(own), free(lib), free(norm);
    return tc_failures == fails0 ? masked_rows : -1;
}

/* ---- random plans -------------------------------------------------------------------------------- */

static const int D_LIST[] = {1, 3, 16, 59, 64, 111, 128};
static const int L_LIST[] = {1, 17, 113, 203, 1023};
static const int L_WEIGHT[] = {10, 30, 25, 20, 15};
static const int G_LIST[] = {1, 1, 2, 3, 4, 5, 6, 7, 8, 16};
static const int BQ_LIST[] = {1, 3, 16, 17, 64, 100, 128, 1024};
static const int WL_LIST[] = {-1, 0, 1, 5, 16, 100};
static const int WR_LIST[] = {-1, 0, 3, 50};
static const int TILE_LIST[] = {16, 32, 48, 256};
#define WORK_CAP 1.0e7 /* B * Hq * nq * nk * (d + dv) of one case */

static int draw_len(rng *r) {
    int x = rng_int(r, 100), acc = 0;
    for (int i = 0; i < COUNT(L_LIST); i++) {
        acc += L_WEIGHT[i];
        if (x < acc)
            return L_LIST[i];
    }
    return L_LIST[0];
}

static tlayout draw_layout(rng *r, int is_input) {
    int x = rng_int(r, 100);
    if (x < 40)
        return LAY_CONTIG;
    if (x < 60)
        return LAY_BSHD;
    if (x < 75)
        return LAY_PADDED;
    if (x < 92 || !is_input)
        return LAY_PERMUTED;
    return LAY_BCAST0;
}

static void draw_na(rng *r, ak_sparse_na *g) {
    memset(g, 0, sizeof *g);
    g->ndim = 1 + rng_int(r, 3);
    static const int E1[] = {5, 17, 64, 113, 203, 400};
    int64_t prod = 1;
    for (int a = 0; a < g->ndim; a++) {
        int L = g->ndim == 1 ? rng_pick(r, E1, COUNT(E1)) : g->ndim == 2 ? 2 + rng_int(r, 21) : 2 + rng_int(r, 8);
        while (prod * L > 500 && L > 2)
            L = L / 2 + 1;
        g->extent[a] = L;
        prod *= L;
        int dil = rng_chance(r, 0.55) ? 1 : 2 + rng_int(r, 2);
        if (dil > L)
            dil = 1;
        g->dilation[a] = dil;
        int kmax = L / dil;
        g->kernel[a] = rng_chance(r, 0.6) ? 1 + rng_int(r, kmax < 7 ? kmax : 7) : 1 + rng_int(r, kmax);
        g->stride[a] = rng_chance(r, 0.6) ? 1 : 1 + rng_int(r, g->kernel[a]);
        g->causal[a] = rng_chance(r, 0.25);
    }
}

/* Random entries of list (b, h, qb). light: few entries (many lists). */
static void gen_list(rng *r, pspec *ps, int32_t b, int32_t h, int32_t qb, int light, int na_ok) {
    int32_t nk = ps->geom.nk, nq = ps->geom.nq;
    if (rng_chance(r, 0.1))
        return; /* an empty list: its rows see nothing */
    int ns = rng_int(r, light ? 2 : 4), nc = nk > 0 ? rng_int(r, light ? 2 : 6) : 0, nb = rng_int(r, light ? 2 : 3);
    int32_t plo = 0, phi = -1;
    for (int k = 0; k < ns; k++) {
        int x = rng_int(r, 10);
        int32_t lo, len;
        if (x < 2 && phi >= 0)
            lo = phi; /* touching the previous span */
        else if (x < 4 && phi > plo)
            lo = plo + rng_int(r, phi - plo); /* overlapping it */
        else
            lo = rng_int(r, nk + 5) - 2; /* any alignment, sometimes partly outside [0, nk) */
        len = rng_chance(r, 0.15) ? 1 + rng_int(r, nk + 3) : 1 + rng_int(r, nk / 6 > 1 ? nk / 6 : 1);
        int32_t hi = rng_chance(r, 0.04) ? lo - rng_int(r, 3) : lo + len; /* an empty span: ignored */
        ps_add(ps, E_SPAN, b, h, qb, lo, hi);
        if (hi > lo)
            plo = lo, phi = hi;
    }
    int32_t pc = -1;
    for (int k = 0; k < nc; k++) {
        int x = rng_int(r, 10);
        int32_t j;
        if (x < 2 && pc >= 0)
            j = pc; /* duplicate */
        else if (x < 4 && phi > plo)
            j = (int32_t)imin64(nk - 1, imax64(0, plo + rng_int(r, phi - plo))); /* inside a span */
        else if (x < 5 && phi >= 0 && phi < nk)
            j = phi; /* right after a span */
        else
            j = rng_int(r, nk);
        ps_add(ps, E_COL, b, h, qb, j, 0);
        pc = j;
    }
    int32_t pdlo = 0, pdhi = 0, have = 0;
    for (int k = 0; k < nb; k++) {
        int x = rng_int(r, 20);
        int32_t dlo, dhi;
        if (x < 4 && have) { /* overlapping the previous band */
            dlo = pdlo + rng_int(r, pdhi - pdlo + 1);
            dhi = dlo + rng_int(r, 6);
        } else if (x < 6 && have) { /* adjacent: [.., pdhi] then [pdhi + 1, ..] */
            dlo = pdhi + 1;
            dhi = dlo + rng_int(r, 4);
        } else if (x < 9) { /* a causal sliding window of w keys */
            dlo = 0;
            dhi = rng_int(r, 1 + (nk < 40 ? nk : 40));
        } else if (x < 10) { /* huge: clipped by the builder to +-(nq + nk) */
            dlo = -(nq + nk) - 5 - rng_int(r, 3);
            dhi = -dlo + rng_int(r, 3);
        } else { /* any diagonal, negative deltas (future keys) included */
            dlo = rng_int(r, nq + nk + 1) - nq;
            dhi = dlo + (rng_chance(r, 0.3) ? 0 : rng_int(r, 1 + nk / 8));
        }
        ps_add(ps, E_BAND, b, h, qb, dlo, dhi);
        pdlo = dlo, pdhi = dhi, have = 1;
    }
    if (na_ok && rng_chance(r, 0.6)) {
        ps_add(ps, E_NA, b, h, qb, 0, 0);
        if (rng_chance(r, 0.1))
            ps_add(ps, E_NA, b, h, qb, 0, 0); /* twice: still one flag */
    }
}

/* Group of the last axis of token i (neighborhood geometry g), or 0 without dilation. */
static int32_t last_group(const ak_sparse_na *g, int64_t i) {
    if (!g->ndim)
        return 0;
    int a = g->ndim - 1;
    return (int32_t)((i % g->extent[a]) % g->dilation[a]);
}

/* Blocks and entries of a random plan on geometry ps->geom (nq, nk, n_batch, n_heads, causal, na_geom set).
 * gather: explicit row lists; nqb_want: their number. */
static void gen_plan(rng *r, spcase *c, int gather, int32_t block_q, int32_t nqb_want) {
    pspec *ps = &c->ps;
    ak_sparse_desc *g = &ps->geom;
    const ak_sparse_na *na = &g->na_geom;
    int32_t nq = g->nq, dl = na->ndim ? na->dilation[na->ndim - 1] : 1;
    c->rows_gathered = 0;
    g->block_q = block_q;
    g->n_qblocks = gather ? nqb_want : (nq + block_q - 1) / block_q; /* gather: any count */
    int32_t nqb = g->n_qblocks;
    int64_t R = (int64_t)g->n_batch * g->n_heads * nqb;
    int32_t *grp = (int32_t *)xmalloc(sizeof(int32_t) * (size_t)(R + 1)); /* -1: no rows yet, -2: mixed groups */
    for (int64_t x = 0; x < R; x++)
        grp[x] = -1;
    int32_t *perm = (int32_t *)xmalloc(sizeof(int32_t) * (size_t)(nq + 1));
    for (int32_t pb = 0; pb < g->n_batch; pb++)
        for (int32_t ph = 0; ph < g->n_heads; ph++) {
            int64_t r0 = ((int64_t)pb * g->n_heads + ph) * nqb;
            if (!gather) {
                for (int32_t qb = 0; qb < nqb; qb++)
                    for (int64_t i = (int64_t)qb * block_q; i < imin64(nq, (int64_t)(qb + 1) * block_q); i++) {
                        int32_t gg = last_group(na, i);
                        grp[r0 + qb] = grp[r0 + qb] == -1 || grp[r0 + qb] == gg ? gg : -2;
                    }
                continue;
            }
            if (nqb == 0)
                continue;
            static const double KEEP[] = {1.0, 1.0, 1.0, 0.9, 0.5, 0.0};
            double keep = KEEP[rng_int(r, COUNT(KEEP))];
            int chunks = rng_chance(r, 0.5), by_group = dl > 1 && nqb >= dl && rng_chance(r, 0.8);
            for (int32_t i = 0; i < nq; i++)
                perm[i] = i;
            for (int32_t i = nq - 1; i > 0; i--) {
                int32_t j = rng_int(r, i + 1), t = perm[i];
                perm[i] = perm[j], perm[j] = t;
            }
            for (int32_t x = 0; x < nq; x++) {
                if (keep < 1.0 && rng_unif(r) >= keep && (pb || ph || x))
                    continue; /* a row in no block (the first (b, h) keeps one row: a gather plan has rows) */
                int32_t row = perm[x], gg = last_group(na, row), qb;
                if (by_group) /* blocks gg, gg + dl, ...: one dilation group per block */
                    qb = gg + dl * rng_int(r, (nqb - gg + dl - 1) / dl);
                else
                    qb = chunks ? (int32_t)((int64_t)x * nqb / nq) : rng_int(r, nqb);
                ps_add(ps, E_ROW, pb, ph, qb, row, 0);
                if (rng_chance(r, 0.04))
                    ps_add(ps, E_ROW, pb, ph, qb, row, 0); /* the same row twice in one block: one row */
                c->rows_gathered++;
                grp[r0 + qb] = grp[r0 + qb] == -1 || grp[r0 + qb] == gg ? gg : -2;
            }
        }
    int light = R > 400;
    for (int32_t pb = 0; pb < g->n_batch; pb++)
        for (int32_t ph = 0; ph < g->n_heads; ph++)
            for (int32_t qb = 0; qb < nqb; qb++) {
                int64_t x = ((int64_t)pb * g->n_heads + ph) * nqb + qb;
                gen_list(r, ps, pb, ph, qb, light && rng_chance(r, 0.8), na->ndim > 0 && grp[x] != -2);
            }
    free(grp), free(perm);
    ps_shuffle(ps, r); /* the builder takes entries in any order */
}

static double case_work(const ak_attn_desc *d) {
    int dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    return (double)d->batch * d->num_heads_q * (double)d->seqlen_q * (double)d->seqlen_k * (double)(d->head_dim + dv);
}

static void draw_case(long idx, spcase *c) {
    rng r = rng_seed((uint64_t)idx);
    ak_attn_desc *d = &c->d;
    memset(c, 0, sizeof *c);
    ak_attn_desc_init(d);
    d->num_heads_kv = 1 + rng_int(&r, 3);
    d->num_heads_q = d->num_heads_kv * rng_pick(&r, G_LIST, COUNT(G_LIST));
    d->batch = 1 + rng_int(&r, 3);
    d->head_dim = rng_pick(&r, D_LIST, COUNT(D_LIST));
    d->head_dim_v = rng_chance(&r, 0.25) ? rng_pick(&r, D_LIST, COUNT(D_LIST)) : 0;
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    int mix = rng_int(&r, 100);
    ak_dtype one = mix < 50 ? AK_F32 : mix < 65 ? AK_BF16 : AK_F16;
    d->dtype_q = d->dtype_kv = d->dtype_o = one;
    if (mix >= 80)
        d->dtype_q = DT[rng_int(&r, 3)], d->dtype_kv = DT[rng_int(&r, 3)], d->dtype_o = DT[rng_int(&r, 3)];
    if (rng_chance(&r, 0.15))
        d->scale = (float)rng_range(&r, 0.05, 1.5);
    d->causal = rng_chance(&r, 0.3);
    if (rng_chance(&r, 0.15))
        d->window_left = rng_pick(&r, WL_LIST, COUNT(WL_LIST)), d->window_right = rng_pick(&r, WR_LIST, COUNT(WR_LIST));
    if (rng_chance(&r, 0.1))
        d->softcap = rng_chance(&r, 0.5) ? 5.0f : 30.0f;
    d->has_alibi = rng_chance(&r, 0.1);
    d->has_sinks = rng_chance(&r, 0.2);
    d->return_lse = rng_chance(&r, 0.75);
    problem_opts_default(&c->po);
    c->po.alibi_2d = rng_chance(&r, 0.5);
    c->po.amp_qk = rng_chance(&r, 0.3) ? 3.0 : 1.0;
    c->po.lay_q = draw_layout(&r, 1), c->po.lay_k = draw_layout(&r, 1), c->po.lay_v = draw_layout(&r, 1);
    c->po.lay_o = draw_layout(&r, 0);
    c->po.lay_lse = rng_chance(&r, 0.5) ? LAY_CONTIG : LAY_PERMUTED;
    ak_sparse_na na;
    memset(&na, 0, sizeof na);
    if (rng_chance(&r, 0.22)) {
        draw_na(&r, &na);
        int64_t n = 1;
        for (int a = 0; a < na.ndim; a++)
            n *= na.extent[a];
        d->seqlen_q = d->seqlen_k = (int32_t)n;
    } else {
        d->seqlen_q = draw_len(&r);
        d->seqlen_k = rng_chance(&r, 0.3) ? d->seqlen_q : draw_len(&r);
    }
    while (case_work(d) > WORK_CAP) { /* batch, heads, head dims, then lengths (not with a grid) */
        if (d->batch > 1)
            d->batch--;
        else if (d->num_heads_q > d->num_heads_kv && d->num_heads_q > 2)
            d->num_heads_q = d->num_heads_kv * (d->num_heads_q / d->num_heads_kv > 2 ? d->num_heads_q / d->num_heads_kv / 2 : 1);
        else if (d->num_heads_kv > 1)
            d->num_heads_q /= d->num_heads_kv, d->num_heads_kv = 1;
        else if (d->head_dim > 16 || d->head_dim_v > 16)
            d->head_dim = d->head_dim > 16 ? 16 : d->head_dim, d->head_dim_v = d->head_dim_v > 16 ? 16 : d->head_dim_v;
        else if (!na.ndim && d->seqlen_q >= d->seqlen_k && d->seqlen_q > 17)
            d->seqlen_q = d->seqlen_q == 1023 ? 203 : 17;
        else if (!na.ndim && d->seqlen_k > 17)
            d->seqlen_k = d->seqlen_k == 1023 ? 203 : 17;
        else
            break;
    }
    int32_t Hq = d->num_heads_q, Hkv = d->num_heads_kv;
    int32_t heads[3] = {1, Hkv, Hq};
    int32_t n_heads = heads[rng_int(&r, 3)], n_batch = rng_chance(&r, 0.5) ? 1 : d->batch;
    ps_init(&c->ps, n_batch, n_heads, d->seqlen_q, d->seqlen_k, rng_chance(&r, 0.4), 1, 1);
    c->ps.geom.na_geom = na;
    int32_t dl = na.ndim ? na.dilation[na.ndim - 1] : 1;
    int gather = dl > 1 ? rng_chance(&r, 0.8) : rng_chance(&r, 0.3);
    int32_t bq = rng_pick(&r, BQ_LIST, COUNT(BQ_LIST));
    if (bq > d->seqlen_q && rng_chance(&r, 0.5))
        bq = d->seqlen_q > 0 ? d->seqlen_q : 1;
    int32_t nqb = d->seqlen_q == 0 ? 0 : 1 + rng_int(&r, d->seqlen_q < 12 ? d->seqlen_q : 12);
    if (dl > 1 && nqb < dl && d->seqlen_q >= dl)
        nqb = dl * (1 + rng_int(&r, 3));
    gen_plan(&r, c, gather, bq, nqb);
    c->tile_m = rng_chance(&r, 0.2) ? rng_pick(&r, TILE_LIST, COUNT(TILE_LIST)) : 0;
    c->raw_shuffle = rng_chance(&r, 0.5);
}

/* How often each feature occurs in the cases run (printed after the sweep). */
typedef struct coverage {
    long n, na[4], na_dil, gather, gather_holes, gather_raw, causal_plan, q_ne_k, q_gt_k, heads1, headskv, headsq, nbatch_b, tile, mixed;
    long dcausal, window, softcap, alibi, sinks, lse, g[17], d[COUNT(D_LIST)], span, col, band, neg_band, len1, len1023;
} coverage;

static void cover(coverage *cv, const spcase *c) {
    const ak_attn_desc *d = &c->d;
    const ak_sparse_desc *g = &c->ps.geom;
    int gq = d->num_heads_q / d->num_heads_kv, kinds[5] = {0};
    cv->n++;
    cv->na[g->na_geom.ndim]++;
    cv->na_dil += g->na_geom.ndim && g->na_geom.dilation[g->na_geom.ndim - 1] > 1;
    cv->gather += ps_gather(&c->ps), cv->gather_raw += ps_gather(&c->ps) && c->raw_shuffle;
    cv->gather_holes += ps_gather(&c->ps) && c->rows_gathered < (int64_t)g->n_batch * g->n_heads * g->nq;
    cv->causal_plan += g->causal, cv->q_ne_k += g->nq != g->nk, cv->q_gt_k += g->nq > g->nk;
    cv->heads1 += g->n_heads == 1, cv->headskv += g->n_heads == d->num_heads_kv && d->num_heads_kv > 1;
    cv->headsq += g->n_heads == d->num_heads_q && gq > 1, cv->nbatch_b += g->n_batch > 1, cv->tile += c->tile_m != 0;
    cv->mixed += d->dtype_q != d->dtype_kv || d->dtype_kv != d->dtype_o;
    cv->dcausal += d->causal, cv->window += d->window_left >= 0 || d->window_right >= 0, cv->softcap += d->softcap > 0;
    cv->alibi += d->has_alibi, cv->sinks += d->has_sinks, cv->lse += d->return_lse;
    cv->g[gq]++;
    cv->len1 += g->nq == 1 || g->nk == 1, cv->len1023 += g->nq == 1023 || g->nk == 1023;
    for (int k = 0; k < COUNT(D_LIST); k++)
        cv->d[k] += d->head_dim == D_LIST[k];
    int neg = 0;
    for (int64_t k = 0; k < c->ps.n; k++) {
        kinds[c->ps.e[k].kind] = 1;
        neg |= c->ps.e[k].kind == E_BAND && c->ps.e[k].x < 0;
    }
    cv->span += kinds[E_SPAN], cv->col += kinds[E_COL], cv->band += kinds[E_BAND], cv->neg_band += neg;
}

static void group_sweep(long n_default) {
    long n = tu_env_long("AK_SWEEP_N", n_default), first = tu_env_long("AK_SWEEP_FIRST", 0), failed = 0, masked = 0;
    double t0 = tu_now();
    coverage cv;
    memset(&cv, 0, sizeof cv);
    for (long i = first; i < first + n; i++) {
        spcase c;
        char label[64];
        draw_case(i, &c);
        cover(&cv, &c);
        snprintf(label, sizeof label, "sweep case %ld", i);
        int64_t m = verify_case(&c, label, (uint64_t)i ^ 0x5A5A5A5Aull);
        if (m < 0) {
            failed++;
            fprintf(stderr, "  rerun: AK_SWEEP_FIRST=%ld AK_SWEEP_N=1 AK_SWEEP_VERBOSE=1 AK_MAX_ISA=%s ./test_sparse sweep\n", i,
                    ak_isa_name(g_isa));
        } else {
            masked += m;
        }
        ps_free(&c.ps);
    }
    printf("sweep: cases %ld..%ld, %ld failed, %ld fully-masked rows seen, %.1f s\n", first, first + n - 1, failed, masked,
           tu_now() - t0);
    printf("sweep coverage: na 1-D/2-D/3-D %ld/%ld/%ld (dilated last axis %ld), gather %ld (rows left out %ld, raw plan with shuffled rows %ld), plan causal %ld, "
           "nq != nk %ld (nq > nk %ld), n_heads 1 / Hkv / Hq %ld/%ld/%ld, n_batch = B > 1 %ld, AK_TILE_M %ld, mixed dtypes %ld, "
           "desc causal %ld window %ld softcap %ld alibi %ld sinks %ld lse %ld; cases with spans %ld cols %ld bands %ld "
           "(negative deltas %ld); a length 1 %ld, 1023 %ld\n  group sizes:",
           cv.na[1], cv.na[2], cv.na[3], cv.na_dil, cv.gather, cv.gather_holes, cv.gather_raw, cv.causal_plan, cv.q_ne_k, cv.q_gt_k, cv.heads1,
           cv.headskv, cv.headsq, cv.nbatch_b, cv.tile, cv.mixed, cv.dcausal, cv.window, cv.softcap, cv.alibi, cv.sinks, cv.lse,
           cv.span, cv.col, cv.band, cv.neg_band, cv.len1, cv.len1023);
    for (int k = 1; k <= 16; k++)
        if (cv.g[k])
            printf(" %d:%ld", k, cv.g[k]);
    printf("; head dims:");
    for (int k = 0; k < COUNT(D_LIST); k++)
        printf(" %d:%ld", D_LIST[k], cv.d[k]);
    printf("\n");
}

/* ---- dtypes: every (q, kv, o) combination with masks, softcap, ALiBi, sinks, LSE, layouts -------- */

static void group_dtypes(void) {
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    static const tlayout LQ[] = {LAY_BSHD, LAY_PADDED, LAY_PERMUTED, LAY_CONTIG, LAY_BCAST0};
    int n = 0;
    for (int iq = 0; iq < 3; iq++)
        for (int ik = 0; ik < 3; ik++)
            for (int io = 0; io < 3; io++, n++) {
                if (g_quick && n % 3 != 0)
                    continue;
                spcase c;
                memset(&c, 0, sizeof c);
                rng r = rng_seed(1000 + (uint64_t)n);
                ak_attn_desc *d = &c.d;
                ak_attn_desc_init(d);
                d->batch = 1 + n % 2, d->num_heads_kv = 2, d->num_heads_q = 6;
                d->head_dim = n % 9 == 0 ? 128 : n % 2 ? 59 : 24, d->head_dim_v = n % 5 == 1 ? 40 : 0;
                d->dtype_q = DT[iq], d->dtype_kv = DT[ik], d->dtype_o = DT[io];
                d->causal = n % 2;
                if (n % 3 == 0)
                    d->window_left = 40, d->window_right = 7;
                if (n % 4 == 1)
                    d->softcap = 20.0f;
                d->has_alibi = n % 5 == 2;
                d->has_sinks = n % 3 == 1;
                d->return_lse = n % 4 != 3;
                if (n % 7 == 3)
                    d->scale = 0.3f;
                problem_opts_default(&c.po);
                c.po.alibi_2d = n % 2;
                c.po.lay_q = LQ[n % 5], c.po.lay_k = LQ[(n + 1) % 5], c.po.lay_v = LQ[(n + 2) % 5];
                c.po.lay_o = n % 3 == 0 ? LAY_BSHD : n % 3 == 1 ? LAY_PERMUTED : LAY_PADDED;
                c.po.lay_lse = n % 2 ? LAY_PERMUTED : LAY_CONTIG;
                c.po.lay_alibi = c.po.lay_sinks = n % 2 ? LAY_PADDED : LAY_CONTIG;
                int32_t heads[3] = {1, 2, 6};
                int32_t nh = heads[n % 3], nb = n % 4 == 1 ? 2 : 1;
                if (n % 4 == 2) { /* a 2-D neighborhood plan on an 11 x 13 grid, dilation 2 on the last axis */
                    d->seqlen_q = d->seqlen_k = 143;
                    ps_init(&c.ps, nb, nh, 143, 143, n % 3 == 0, 1, 1);
                    ak_sparse_na *na = &c.ps.geom.na_geom;
                    na->ndim = 2, na->extent[0] = 11, na->extent[1] = 13;
                    na->kernel[0] = 5, na->kernel[1] = 3, na->dilation[0] = 1, na->dilation[1] = 2;
                    na->stride[0] = 2, na->stride[1] = 1, na->causal[0] = n % 8 == 2, na->causal[1] = 0;
                    gen_plan(&r, &c, 1, 16, 6);
                } else {
                    d->seqlen_q = 113, d->seqlen_k = 203;
                    ps_init(&c.ps, nb, nh, 113, 203, n % 3 == 2, 1, 1);
                    gen_plan(&r, &c, n % 5 == 4, n % 2 ? 17 : 64, 5);
                }
                char label[96];
                snprintf(label, sizeof label, "dtypes q %s kv %s o %s", tu_dtype_short(DT[iq]), tu_dtype_short(DT[ik]),
                         tu_dtype_short(DT[io]));
                verify_case(&c, label, 77 + (uint64_t)n);
                ps_free(&c.ps);
            }
}

/* ---- fully-masked rows --------------------------------------------------------------------------- */

static void masked_case(const char *name, spcase *c, int64_t want_min) {
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    for (int k = 0; k < 3; k++)
        for (int sinks = 0; sinks < 2; sinks++) {
            char label[128];
            snprintf(label, sizeof label, "masked %s (o %s%s)", name, tu_dtype_short(DT[k]), sinks ? ", sinks" : "");
            c->d.dtype_o = DT[k];
            c->d.dtype_q = c->d.dtype_kv = k == 1 ? AK_BF16 : AK_F32;
            c->d.has_sinks = sinks;
            c->d.return_lse = 1;
            int64_t m = verify_case(c, label, 31 + (uint64_t)k);
            CHECK(m < 0 || m >= want_min, "%s: %lld fully-masked rows, expected at least %lld", label, (long long)m, (long long)want_min);
        }
}

static void masked_desc(spcase *c, int B, int Hq, int Hkv, int nq, int nk, int d) {
    memset(c, 0, sizeof *c);
    ak_attn_desc_init(&c->d);
    c->d.batch = B, c->d.num_heads_q = Hq, c->d.num_heads_kv = Hkv, c->d.seqlen_q = nq, c->d.seqlen_k = nk, c->d.head_dim = d;
    problem_opts_default(&c->po);
}

static void group_masked(void) {
    spcase c;
    /* 1. lists with no entries: blocks 1 and 3 of 4 (rows 16..31, 48..63), per KV head */
    masked_desc(&c, 2, 4, 2, 70, 90, 32);
    ps_init_fixed(&c.ps, 1, 2, 70, 90, 0, 16);
    for (int h = 0; h < 2; h++) {
        ps_add(&c.ps, E_SPAN, 0, h, 0, 10, 30);
        ps_add(&c.ps, E_BAND, 0, h, 2, 0, 5);
        ps_add(&c.ps, E_COL, 0, h, 4, 89, 0);
    }
    masked_case("empty lists", &c, 2 * 4 * 32);
    ps_free(&c.ps);

    /* 2. gather: rows in no block (odd rows), per query head, n_batch = B */
    masked_desc(&c, 2, 3, 1, 41, 41, 8);
    ps_init(&c.ps, 2, 3, 41, 41, 0, 11, 4);
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 3; h++)
            for (int i = 0; i < 41; i += 2) {
                ps_add(&c.ps, E_ROW, b, h, (i / 2) % 4, i, 0);
                c.rows_gathered++;
            }
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 3; h++)
            for (int qb = 0; qb < 4; qb++)
                ps_add(&c.ps, E_SPAN, b, h, qb, qb * 3, qb * 3 + 9);
    masked_case("rows in no block", &c, 2 * 3 * 20);
    ps_free(&c.ps);

    /* 3. causal plan, only future keys (a col and a negative band): every row but the last sees nothing */
    masked_desc(&c, 1, 2, 2, 30, 30, 16);
    ps_init_fixed(&c.ps, 1, 1, 30, 30, 1, 8);
    for (int qb = 0; qb < 4; qb++) {
        ps_add(&c.ps, E_COL, 0, 0, qb, 29, 0);
        ps_add(&c.ps, E_BAND, 0, 0, qb, -5, -1);
    }
    masked_case("only future keys", &c, 2 * 29);
    ps_free(&c.ps);

    /* 4. causal, nq > nk: rows 0..nq-nk-1 have pos < 0; also the descriptor's causal flag */
    masked_desc(&c, 2, 2, 1, 50, 20, 8);
    c.d.causal = 1;
    ps_init_fixed(&c.ps, 1, 1, 50, 20, 1, 7);
    for (int qb = 0; qb < 8; qb++)
        ps_add(&c.ps, E_SPAN, 0, 0, qb, 0, 20), ps_add(&c.ps, E_BAND, 0, 0, qb, 0, 3);
    masked_case("nq > nk causal", &c, 2 * 2 * 30);
    ps_free(&c.ps);

    /* 5. the descriptor's window excludes every key of the pattern */
    masked_desc(&c, 1, 2, 1, 40, 40, 8);
    c.d.window_left = 2, c.d.window_right = 2;
    ps_init_fixed(&c.ps, 1, 1, 40, 40, 0, 40);
    ps_add(&c.ps, E_BAND, 0, 0, 0, 10, 12);
    ps_add(&c.ps, E_BAND, 0, 0, 0, -20, -15);
    masked_case("window excludes the pattern", &c, 2 * 40);
    ps_free(&c.ps);

    /* 6. nk = 0 (bands only) and nq = 0 */
    masked_desc(&c, 2, 2, 1, 9, 0, 8);
    ps_init_fixed(&c.ps, 1, 1, 9, 0, 0, 4);
    ps_add(&c.ps, E_BAND, 0, 0, 1, -3, 3);
    masked_case("nk = 0", &c, 2 * 2 * 9);
    ps_free(&c.ps);
    masked_desc(&c, 2, 2, 1, 0, 9, 8);
    ps_init_fixed(&c.ps, 1, 1, 0, 9, 0, 4);
    masked_case("nq = 0", &c, 0);
    ps_free(&c.ps);
}

/* ---- threads ------------------------------------------------------------------------------------- */

/* Bitwise identical outputs for 1, 2, 3 and 7 threads (and AK_TILE_M variants), plan reuse and an
 * exact caller workspace. No reference (larger plans). */
static void threads_case(const char *name, spcase *c) {
    ak_sparse *sp = NULL;
    ak_status st = ps_build(g_ctx[0], &c->ps, &sp);
    CHECK(st == AK_OK, "threads %s: building the plan: %s", name, ak_status_string(st));
    if (st != AK_OK)
        return;
    problem p;
    rng r = rng_seed(4242);
    if (problem_create(&p, &c->d, 0, 0, &c->po, &r)) {
        CHECK(0, "threads %s: problem_create", name);
        ak_sparse_destroy(sp);
        return;
    }
    ak_ctx *c7 = NULL;
    if (ak_ctx_create(&c7) != AK_OK || ak_ctx_set_num_threads(c7, 7) != AK_OK)
        CHECK(0, "threads: context with 7 threads");
    ak_ctx *ctxs[4] = {g_ctx[0], g_ctx[1], g_ctx[2], c7};
    int nthr[4] = {1, 2, 3, 7};
    for (int k = 0; k < 4 && ctxs[k]; k++) {
        tbuf o, l;
        memset(&l, 0, sizeof l);
        if (tbuf_make_like(&o, &p.o) || tbuf_make_like(&l, &p.lse)) {
            CHECK(0, "threads: out of memory");
            tbuf_free(&o), tbuf_free(&l);
            break;
        }
        ak_plan *pl = NULL;
        st = plan_with_tile(ctxs[k], &c->d, sp, c->tile_m, &pl);
        CHECK(st == AK_OK, "threads %s: plan on %d threads: %s", name, nthr[k], ak_status_string(st));
        if (st == AK_OK) {
            ak_attn_tensors t = problem_tensors(&p, k == 0 ? &p.o : &o, k == 0 ? &p.lse : &l);
            st = ak_attention_run(pl, &t, NULL, 0);
            CHECK(st == AK_OK, "threads %s: run on %d threads: %s", name, nthr[k], ak_status_string(st));
            if (k > 0) {
                CHECK(tbuf_same_bytes(&o, &p.o) && tbuf_same_bytes(&l, &p.lse), "threads %s: 1 and %d threads give different bytes",
                      name, nthr[k]);
            } else {
                int finite = 1;
                double *oo = (double *)xmalloc(sizeof(double) * (size_t)tbuf_numel(&p.o));
                tbuf_to_f64(&p.o, oo);
                for (int64_t x = 0; x < tbuf_numel(&p.o); x++)
                    finite &= isfinite(oo[x]) != 0;
                free(oo);
                CHECK(finite, "threads %s: O has unwritten or non-finite elements", name);
            }
            if (k == 2) { /* plan reuse and a caller workspace of exactly the announced size, at an odd address */
                size_t ws = ak_plan_workspace_size(pl);
                unsigned char *buf = (unsigned char *)xmalloc(ws + 2);
                tbuf_poison(&o), tbuf_poison(&l);
                ak_attn_tensors t2 = problem_tensors(&p, &o, &l);
                st = ak_attention_run(pl, &t2, buf + 1, ws);
                CHECK(st == AK_OK && tbuf_same_bytes(&o, &p.o) && tbuf_same_bytes(&l, &p.lse),
                      "threads %s: plan reuse with a caller workspace of %zu bytes: %s / different bytes", name, ws, ak_status_string(st));
                if (ws > 0) {
                    tbuf_poison(&o);
                    st = ak_attention_run(pl, &t2, buf + 1, ws - 1);
                    CHECK(st == AK_ERR_WORKSPACE_TOO_SMALL, "threads %s: workspace one byte short: %s", name, ak_status_string(st));
                }
                free(buf);
            }
            ak_plan_destroy(pl);
        }
        tbuf_free(&o), tbuf_free(&l);
    }
    ak_ctx_destroy(c7);
    problem_destroy(&p);
    ak_sparse_destroy(sp);
}

static void group_threads(void) {
    int nl = g_quick ? 300 : 1023;
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    for (int v = 0; v < 4; v++) {
        spcase c;
        memset(&c, 0, sizeof c);
        rng r = rng_seed(900 + (uint64_t)v);
        ak_attn_desc_init(&c.d);
        c.d.batch = 2, c.d.num_heads_kv = 2, c.d.num_heads_q = v == 3 ? 32 : 8;
        c.d.seqlen_q = nl, c.d.seqlen_k = v == 1 ? nl + 77 : nl, c.d.head_dim = 64, c.d.head_dim_v = v == 2 ? 96 : 0;
        c.d.dtype_q = c.d.dtype_kv = DT[v % 3], c.d.dtype_o = DT[(v + 1) % 3];
        c.d.causal = v == 0, c.d.has_sinks = v == 2, c.d.return_lse = 1;
        if (v == 1)
            c.d.window_left = 300;
        problem_opts_default(&c.po);
        c.po.lay_q = v == 1 ? LAY_BSHD : LAY_CONTIG;
        int32_t nh = v == 0 ? 2 : v == 1 ? 1 : v == 2 ? 8 : 32;
        ps_init(&c.ps, v == 2 ? 2 : 1, nh, c.d.seqlen_q, c.d.seqlen_k, v != 1, 1, 1);
        if (v == 3) { /* a 2-D neighborhood on 31 x 33 (= 1023), GQA 16 */
            c.d.seqlen_q = c.d.seqlen_k = 1023;
            c.ps.geom.nq = c.ps.geom.nk = 1023;
            ak_sparse_na *na = &c.ps.geom.na_geom;
            na->ndim = 2, na->extent[0] = 31, na->extent[1] = 33, na->kernel[0] = 7, na->kernel[1] = 9;
            na->dilation[0] = na->dilation[1] = 1, na->stride[0] = na->stride[1] = 1;
            c.d.num_heads_q = 32, c.ps.geom.n_heads = 1;
            if (g_quick)
                c.d.num_heads_q = 4;
        }
        gen_plan(&r, &c, v == 2, v == 0 ? 64 : 33, 9);
        c.tile_m = v == 1 ? 16 : v == 2 ? 48 : 0;
        char name[32];
        snprintf(name, sizeof name, "variant %d", v);
        threads_case(name, &c);
        ps_free(&c.ps);
    }
}

/* ---- worked examples ----------------------------------------------------------------------------- */

/* Compare the library's and the test's masks of (0, 0) with rows written literally ("1" = visible). */
static void check_literal(const char *name, const pspec *ps, ak_sparse *sp, const char *const *rows, const int *which, int n_rows) {
    int64_t nq = ps->geom.nq, nk = ps->geom.nk;
    uint8_t *own = (uint8_t *)xmalloc((size_t)(ps->geom.n_batch * ps->geom.n_heads) * (size_t)(nq * nk));
    uint8_t *lib = (uint8_t *)xmalloc((size_t)(nq * nk));
    own_masks(ps, own);
    CHECK(ak_sparse_mask(sp, 0, 0, lib) == AK_OK, "%s: ak_sparse_mask", name);
    for (int t = 0; t < n_rows; t++) {
        int64_t i = which ? which[t] : t;
        char got[128], mine[128];
        for (int64_t j = 0; j < nk; j++) {
            got[j] = (char)('0' + lib[i * nk + j]);
            mine[j] = (char)('0' + own[i * nk + j]);
        }
        got[nk] = mine[nk] = 0;
        CHECK(strcmp(got, rows[t]) == 0, "%s: row %lld: ak_sparse_mask %s, expected %s", name, (long long)i, got, rows[t]);
        CHECK(strcmp(mine, rows[t]) == 0, "%s: row %lld: the test's own mask %s, expected %s", name, (long long)i, mine, rows[t]);
    }
    free(own), free(lib);
}

/* d = 1, q = 1, scale 1, k_j = log(j + 1), v_j = j - 2: O_i = sum w_j v_j / sum w_j over the literal
 * mask, LSE = log sum w_j (w_j = exp(fl32(log(j + 1)))). Executor (one and three threads) and the
 * reference, Hq = 2 (GQA 2), B = 1; the plan is destroyed before the run (the plan keeps a copy). */
static void check_closed_form(const char *name, ak_sparse *sp, int32_t nq, int32_t nk, const char *const *rows) {
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.num_heads_q = 2, d.num_heads_kv = 1, d.seqlen_q = nq, d.seqlen_k = nk, d.head_dim = 1, d.scale = 1.0f, d.return_lse = 1;
    float q[2 * 16], k[16], v[16], o[2 * 16], lse[2 * 16];
    double o64[2 * 16], l64[2 * 16];
    for (int i = 0; i < 2 * nq; i++)
        q[i] = 1.0f;
    for (int j = 0; j < nk; j++)
        k[j] = logf((float)(j + 1)), v[j] = (float)(j - 2);
    ak_plan *pl[2] = {NULL, NULL};
    CHECK(ak_plan_create_sparse(g_ctx[0], &d, sp, &pl[0]) == AK_OK && ak_plan_create_sparse(g_ctx[2], &d, sp, &pl[1]) == AK_OK,
          "%s: ak_plan_create_sparse", name);
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = ak_tensor_4d(q, AK_F32, 1, 2, nq, 1), t.k = ak_tensor_4d(k, AK_F32, 1, 1, nk, 1), t.v = ak_tensor_4d(v, AK_F32, 1, 1, nk, 1);
    ak_attn_desc d64 = d;
    d64.dtype_o = AK_F64;
    t.o = ak_tensor_4d(o64, AK_F64, 1, 2, nq, 1), t.lse = ak_tensor_3d(l64, AK_F64, 1, 2, nq);
    CHECK(ak_attention_ref_sparse(g_ctx[0], &d64, sp, &t) == AK_OK, "%s: ak_attention_ref_sparse", name);
    ak_sparse_destroy(sp); /* the plans keep their own copies */
    float o1[2 * 16], l1[2 * 16];
    for (int x = 0; x < 2; x++) {
        for (int i = 0; i < 2 * nq; i++)
            o[i] = lse[i] = NAN;
        t.o = ak_tensor_4d(o, AK_F32, 1, 2, nq, 1), t.lse = ak_tensor_3d(lse, AK_F32, 1, 2, nq);
        CHECK(pl[x] && ak_attention_run(pl[x], &t, NULL, 0) == AK_OK, "%s: ak_attention_run", name);
        if (x == 0)
            memcpy(o1, o, sizeof o1), memcpy(l1, lse, sizeof l1);
        else
            CHECK(memcmp(o1, o, sizeof(float) * (size_t)(2 * nq)) == 0 && memcmp(l1, lse, sizeof(float) * (size_t)(2 * nq)) == 0,
                  "%s: 1 and 3 threads give different bytes", name);
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < nq; i++) {
            double sw = 0, swv = 0;
            for (int j = 0; j < nk; j++)
                if (rows[i][j] == '1') {
                    double w = exp((double)k[j]);
                    sw += w, swv += w * v[j];
                }
            double eo = sw > 0 ? swv / sw : 0.0, el = sw > 0 ? log(sw) : -INFINITY;
            int x = h * nq + i;
            CHECK(fabs(o[x] - eo) <= 1e-5 * fmax(1.0, fabs(eo)) && (sw > 0 || o[x] == 0.0f), "%s: O[h %d][%d] = %.8g, expected %.8g", name,
                  h, i, o[x], eo);
            CHECK(sw > 0 ? fabs(lse[x] - el) <= 1e-5 * fmax(1.0, fabs(el)) : lse[x] == -INFINITY, "%s: LSE[h %d][%d] = %.8g, expected %.8g",
                  name, h, i, lse[x], el);
            CHECK(fabs(o64[x] - eo) <= 1e-6 * fmax(1.0, fabs(eo)), "%s: reference O[h %d][%d] = %.10g, expected %.10g", name, h, i, o64[x], eo);
            CHECK(sw > 0 ? fabs(l64[x] - el) <= 1e-6 * fmax(1.0, fabs(el)) : l64[x] == -INFINITY,
                  "%s: reference LSE[h %d][%d] = %.10g, expected %.10g", name, h, i, l64[x], el);
        }
    ak_plan_destroy(pl[0]), ak_plan_destroy(pl[1]);
}

static void group_hand(void) {
    ak_sparse *sp;
    pspec ps;
    /* 1. nq = nk = 8, blocks of 4. Block 0: span [5, 7), col 0, band [0, 1] (keys i, i - 1).
     *    Block 1: span [0, 2), col 7, band [-1, -1] (key i + 1). */
    static const char *const H1[8] = {"10000110", "11000110", "11100110", "10110110",
                                      "11000101", "11000011", "11000001", "11000001"};
    ps_init_fixed(&ps, 1, 1, 8, 8, 0, 4);
    ps_add(&ps, E_SPAN, 0, 0, 0, 5, 7), ps_add(&ps, E_COL, 0, 0, 0, 0, 0), ps_add(&ps, E_BAND, 0, 0, 0, 0, 1);
    ps_add(&ps, E_SPAN, 0, 0, 1, 0, 2), ps_add(&ps, E_COL, 0, 0, 1, 7, 0), ps_add(&ps, E_BAND, 0, 0, 1, -1, -1);
    CHECK(ps_build(g_ctx[0], &ps, &sp) == AK_OK, "hand 1: build");
    if (sp) {
        check_literal("hand 1", &ps, sp, H1, NULL, 8);
        ak_sparse_stats s;
        CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.pairs == 31 && s.density == 31.0 / 64.0 && s.dense_pairs == 64 &&
                  s.causal_pairs == 36,
              "hand 1: pairs %g (31), density %g (31/64), dense %g (64), causal %g (36)", s.pairs, s.density, s.dense_pairs,
              s.causal_pairs);
        float grid[4];
        /* 2 x 2 cells of 4 x 4: counts 3+4+4+3 ... rows 0-3 keys 0-3: 1+2+3+3 = 9; keys 4-7: 2+2+2+2 = 8;
         * rows 4-7 keys 0-3: 2+2+2+2 = 8; keys 4-7: 2+2+1+1 = 6 */
        CHECK(ak_sparse_density_grid(sp, 0, 0, 2, 2, grid) == AK_OK && grid[0] == 9.0f / 16 && grid[1] == 8.0f / 16 &&
                  grid[2] == 8.0f / 16 && grid[3] == 6.0f / 16,
              "hand 1: density grid %g %g %g %g, expected 9/16 8/16 8/16 6/16", grid[0], grid[1], grid[2], grid[3]);
        check_closed_form("hand 1", sp, 8, 8, H1);
    }
    ps_free(&ps);

    /* 2. causal plan, nq = 4 < nk = 8 (pos(i) = i + 4): span [0, 2), band [0, 0], col 6. */
    static const char *const H2[4] = {"11001000", "11000100", "11000010", "11000011"};
    ps_init_fixed(&ps, 1, 1, 4, 8, 1, 4);
    ps_add(&ps, E_SPAN, 0, 0, 0, 0, 2), ps_add(&ps, E_BAND, 0, 0, 0, 0, 0), ps_add(&ps, E_COL, 0, 0, 0, 6, 0);
    CHECK(ps_build(g_ctx[0], &ps, &sp) == AK_OK, "hand 2: build");
    if (sp) {
        check_literal("hand 2", &ps, sp, H2, NULL, 4);
        ak_sparse_stats s;
        /* causal pairs: 5 + 6 + 7 + 8 = 26; pairs 3 + 3 + 3 + 4 = 13 */
        CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.pairs == 13 && s.causal_pairs == 26 && s.density == 0.5,
              "hand 2: pairs %g (13), causal %g (26), density %g (0.5)", s.pairs, s.causal_pairs, s.density);
        check_closed_form("hand 2", sp, 4, 8, H2);
    }
    ps_free(&ps);

    /* 3..6: 1-D neighborhoods on 8 tokens, kernel 3 */
    static const char *const N1[8] = {"11100000", "11100000", "01110000", "00111000",
                                      "00011100", "00001110", "00000111", "00000111"};
    static const char *const N2[8] = {"10101000", "01010100", "10101000", "01010100",
                                      "00101010", "00010101", "00101010", "00010101"}; /* dilation 2 */
    static const char *const N3[8] = {"10000000", "11000000", "11100000", "01110000",
                                      "00111000", "00011100", "00001110", "00000111"}; /* causal */
    static const char *const N4[8] = {"11100000", "11100000", "00111000", "00111000",
                                      "00001110", "00001110", "00000111", "00000111"}; /* stride 2 */
    const char *const *NS[4] = {N1, N2, N3, N4};
    for (int v = 0; v < 4; v++) {
        char name[32];
        snprintf(name, sizeof name, "hand na 1-D #%d", v + 1);
        ps_init_fixed(&ps, 1, 1, 8, 8, 0, 4);
        ak_sparse_na *na = &ps.geom.na_geom;
        na->ndim = 1, na->extent[0] = 8, na->kernel[0] = 3, na->dilation[0] = v == 1 ? 2 : 1;
        na->stride[0] = v == 3 ? 2 : 1, na->causal[0] = v == 2;
        if (v == 1) /* dilation 2: gather rows by group, block 0 = even rows, block 1 = odd rows */
            for (int i = 0; i < 8; i++)
                ps_add(&ps, E_ROW, 0, 0, i % 2, i, 0);
        ps_add(&ps, E_NA, 0, 0, 0, 0, 0), ps_add(&ps, E_NA, 0, 0, 1, 0, 0);
        CHECK(ps_build(g_ctx[0], &ps, &sp) == AK_OK, "%s: build (%s)", name, ak_ctx_last_error(g_ctx[0]));
        if (sp) {
            check_literal(name, &ps, sp, NS[v], NULL, 8);
            check_closed_form(name, sp, 8, 8, NS[v]);
        }
        ps_free(&ps);
    }

    /* 7. 2-D 4 x 4, kernel 3 x 3: rows 0, 6, 15; kernel (2, 3) with a causal first axis: row 8 */
    static const char *const M1[3] = {"1110111011100000", "0111011101110000", "0000011101110111"};
    static const int W1[3] = {0, 6, 15};
    static const char *const M2[1] = {"0000111011100000"};
    static const int W2[1] = {8};
    for (int v = 0; v < 2; v++) {
        ps_init_fixed(&ps, 1, 1, 16, 16, 0, 16);
        ak_sparse_na *na = &ps.geom.na_geom;
        na->ndim = 2, na->extent[0] = na->extent[1] = 4, na->kernel[0] = v ? 2 : 3, na->kernel[1] = 3;
        na->dilation[0] = na->dilation[1] = na->stride[0] = na->stride[1] = 1, na->causal[0] = v;
        ps_add(&ps, E_NA, 0, 0, 0, 0, 0);
        CHECK(ps_build(g_ctx[0], &ps, &sp) == AK_OK, "hand na 2-D: build");
        if (sp) {
            check_literal(v ? "hand na 2-D causal axis 0" : "hand na 2-D", &ps, sp, v ? M2 : M1, v ? W2 : W1, v ? 1 : 3);
            ak_sparse_destroy(sp);
        }
        ps_free(&ps);
    }
}

/* ---- the builder's normalisation ----------------------------------------------------------------- */

static void group_builder(void) {
    ak_ctx *ctx = g_ctx[0];
    ak_sparse_desc g, nd;
    ak_sparse_builder *b = NULL;
    ak_sparse *sp = NULL;
    /* nq = 8, nk = 30, blocks of 4: list 0 gets everything, list 1 one col */
    ak_sparse_desc_init(&g);
    g.nq = 8, g.nk = 30, g.block_q = 4;
    CHECK(ak_sparse_builder_create(ctx, &g, &b) == AK_OK, "builder: create");
    if (!b)
        return;
    /* spans: [5, 8) + [2, 4) + [3, 6) overlap -> [2, 8); [20, 20) and [28, 25) empty: ignored;
     * [-5, 1) clipped to [0, 1); [27, 40) clipped to [27, 30); [12, 15) + [13, 14) -> [12, 15) */
    ak_sparse_builder_add_span(b, 0, 0, 0, 5, 8), ak_sparse_builder_add_span(b, 0, 0, 0, 2, 4);
    ak_sparse_builder_add_span(b, 0, 0, 0, 3, 6), ak_sparse_builder_add_span(b, 0, 0, 0, 20, 20);
    ak_sparse_builder_add_span(b, 0, 0, 0, 28, 25), ak_sparse_builder_add_span(b, 0, 0, 0, -5, 1);
    ak_sparse_builder_add_span(b, 0, 0, 0, 27, 40), ak_sparse_builder_add_span(b, 0, 0, 0, 13, 14);
    ak_sparse_builder_add_span(b, 0, 0, 0, 12, 15);
    /* cols: 9, 9, 3 (inside), 16, 4 (inside), 8 (right after [2, 8)), 13 (inside), 29 (inside [27, 30)), 16 */
    static const int32_t cols[] = {9, 9, 3, 16, 4, 8, 13, 29, 16};
    for (int k = 0; k < COUNT(cols); k++)
        ak_sparse_builder_add_col(b, 0, 0, 0, cols[k]);
    /* bands: [0, 2] + [1, 4] -> [0, 4]; [-3, -2]; [7, 9] + [8, 8] -> [7, 9]; [20, 22] + [21, 30] -> [20, 30] */
    ak_sparse_builder_add_band(b, 0, 0, 0, 7, 9), ak_sparse_builder_add_band(b, 0, 0, 0, 1, 4);
    ak_sparse_builder_add_band(b, 0, 0, 0, -3, -2), ak_sparse_builder_add_band(b, 0, 0, 0, 0, 2);
    ak_sparse_builder_add_band(b, 0, 0, 0, 8, 8), ak_sparse_builder_add_band(b, 0, 0, 0, 21, 30);
    ak_sparse_builder_add_band(b, 0, 0, 0, 20, 22);
    ak_sparse_builder_add_col(b, 0, 0, 1, 11);
    CHECK(ak_sparse_builder_finish(b, &sp) == AK_OK, "builder: finish: %s", ak_ctx_last_error(ctx));
    ak_sparse_builder_destroy(b);
    if (sp && ak_sparse_get_desc(sp, &nd) == AK_OK) {
        CHECK(nd.n_qblocks == 2 && nd.qrow_off == NULL && nd.span_off && nd.col_off && nd.band_off, "builder: geometry");
        /* spans: [0, 1), [2, 8), [12, 15), [27, 30): [0, 1) and [2, 8) do not touch */
        int64_t ns = nd.span_off[1] - nd.span_off[0];
        CHECK(ns == 4 && nd.span_lo[0] == 0 && nd.span_hi[0] == 1 && nd.span_lo[1] == 2 && nd.span_hi[1] == 8 && nd.span_lo[2] == 12 &&
                  nd.span_hi[2] == 15 && nd.span_lo[3] == 27 && nd.span_hi[3] == 30,
              "builder: spans of list 0 should be [0,1) [2,8) [12,15) [27,30), got %lld spans starting [%d, %d)", (long long)ns,
              ns ? nd.span_lo[0] : -1, ns ? nd.span_hi[0] : -1);
        int64_t nc = nd.col_off[1] - nd.col_off[0];
        CHECK(nc == 3 && nd.col_idx[0] == 8 && nd.col_idx[1] == 9 && nd.col_idx[2] == 16,
              "builder: cols of list 0 should be 8 9 16, got %lld cols", (long long)nc);
        CHECK(nd.col_off[2] - nd.col_off[1] == 1 && nd.col_idx[nd.col_off[1]] == 11, "builder: list 1 keeps its own col 11");
        int64_t nb = nd.band_off[1] - nd.band_off[0];
        CHECK(nb == 4 && nd.band_lo[0] == -3 && nd.band_hi[0] == -2 && nd.band_lo[1] == 0 && nd.band_hi[1] == 4 && nd.band_lo[2] == 7 &&
                  nd.band_hi[2] == 9 && nd.band_lo[3] == 20 && nd.band_hi[3] == 30,
              "builder: bands of list 0 should be [-3,-2] [0,4] [7,9] [20,30], got %lld bands", (long long)nb);
        CHECK(nd.span_off[2] == nd.span_off[1] && nd.band_off[2] == nd.band_off[1], "builder: list 1 has no spans or bands");
        CHECK(strcmp(ak_sparse_name(sp), "") == 0, "builder: unnamed plan has name \"%s\"", ak_sparse_name(sp));
        /* round trip: the normalised arrays are a valid raw plan with the same masks */
        ak_sparse *sp2 = NULL;
        CHECK(ak_sparse_create(ctx, &nd, &sp2) == AK_OK, "builder: ak_sparse_create(ak_sparse_get_desc(plan)): %s", ak_ctx_last_error(ctx));
        if (sp2) {
            uint8_t m1[8 * 30], m2[8 * 30];
            CHECK(ak_sparse_mask(sp, 0, 0, m1) == AK_OK && ak_sparse_mask(sp2, 0, 0, m2) == AK_OK && memcmp(m1, m2, sizeof m1) == 0,
                  "builder: round trip changes the mask");
            ak_sparse_destroy(sp2);
        }
    }
    ak_sparse_destroy(sp);
    sp = NULL;

    /* touching spans / adjacent bands: the same set whether merged or not (normal form allows both) */
    ak_sparse_desc_init(&g);
    g.nq = 4, g.nk = 20, g.block_q = 4;
    if (ak_sparse_builder_create(ctx, &g, &b) == AK_OK) {
        ak_sparse_builder_add_span(b, 0, 0, 0, 3, 6), ak_sparse_builder_add_span(b, 0, 0, 0, 6, 9);
        ak_sparse_builder_add_band(b, 0, 0, 0, 0, 1), ak_sparse_builder_add_band(b, 0, 0, 0, 2, 3);
        CHECK(ak_sparse_builder_finish(b, &sp) == AK_OK, "builder: touching entries");
        ak_sparse_builder_destroy(b);
        if (sp && ak_sparse_get_desc(sp, &nd) == AK_OK) {
            char why[128];
            CHECK(normal_form(&nd, why, sizeof why), "builder: touching entries: %s", why);
            int64_t cover = 0;
            for (int64_t e = nd.span_off[0]; e < nd.span_off[1]; e++)
                cover += nd.span_hi[e] - nd.span_lo[e];
            CHECK(cover == 6 && nd.span_lo[0] == 3, "builder: spans [3,6) [6,9) cover %lld keys from %d", (long long)cover, nd.span_lo[0]);
        }
        ak_sparse_destroy(sp);
        sp = NULL;
    }

    /* gather rows: duplicates in one block collapse; na set twice is one flag; n_rows_gathered */
    ak_sparse_desc_init(&g);
    g.nq = 10, g.nk = 10, g.block_q = 4; /* ceil(10 / 4) = 3 blocks */
    g.na_geom.ndim = 1, g.na_geom.extent[0] = 10, g.na_geom.kernel[0] = 3, g.na_geom.dilation[0] = 1, g.na_geom.stride[0] = 1;
    if (ak_sparse_builder_create(ctx, &g, &b) == AK_OK) {
        ak_sparse_builder_add_row(b, 0, 0, 2, 5), ak_sparse_builder_add_row(b, 0, 0, 2, 1);
        ak_sparse_builder_add_row(b, 0, 0, 2, 5), ak_sparse_builder_add_row(b, 0, 0, 0, 3);
        ak_sparse_builder_set_na(b, 0, 0, 2), ak_sparse_builder_set_na(b, 0, 0, 2);
        CHECK(ak_sparse_builder_finish(b, &sp) == AK_OK, "builder: gather rows: %s", ak_ctx_last_error(ctx));
        ak_sparse_builder_destroy(b);
        if (sp && ak_sparse_get_desc(sp, &nd) == AK_OK) {
            CHECK(nd.qrow_off && nd.qrow_off[3] == 3 && nd.qrow_off[1] == 1 && nd.qrows[0] == 3 && nd.qrow_off[2] == 1,
                  "builder: gather rows: expected block 0 = {3}, block 1 = {}, block 2 = {1, 5}");
            if (nd.qrow_off && nd.qrow_off[3] == 3) {
                int32_t a = nd.qrows[1], c = nd.qrows[2];
                CHECK((a == 1 && c == 5) || (a == 5 && c == 1), "builder: block 2 rows %d %d, expected 1 and 5", a, c);
            }
            CHECK(nd.na && nd.na[0] == 0 && nd.na[1] == 0 && nd.na[2] == 1, "builder: na flags should be 0 0 1");
            ak_sparse_stats s;
            CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.n_rows_gathered == 3 && s.n_na == 1,
                  "builder: n_rows_gathered %lld (3), n_na %lld (1)", (long long)s.n_rows_gathered, (long long)s.n_na);
        }
        ak_sparse_destroy(sp);
        sp = NULL;
    }

    /* gather geometry with any number of blocks (header: "any count >= 0 with qrows"; the builder's
     * geometry "must then give n_qblocks") */
    ak_sparse_desc_init(&g);
    g.nq = 10, g.nk = 10, g.block_q = 4, g.n_qblocks = 5;
    b = NULL;
    ak_status st = ak_sparse_builder_create(ctx, &g, &b);
    CHECK(st == AK_OK, "builder: gather geometry nq 10, block_q 4, n_qblocks 5: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    if (b) {
        for (int i = 0; i < 10; i++)
            ak_sparse_builder_add_row(b, 0, 0, i % 5, 9 - i);
        ak_sparse_builder_add_span(b, 0, 0, 4, 0, 3);
        st = ak_sparse_builder_finish(b, &sp);
        CHECK(st == AK_OK, "builder: gather with 5 blocks: finish %s", ak_status_string(st));
        ak_sparse_builder_destroy(b);
        if (sp) {
            ak_sparse_stats s;
            CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.n_lists == 5 && s.pairs == 6, "builder: 5 gather blocks: lists %lld, pairs %g",
                  (long long)s.n_lists, s.pairs);
            ak_sparse_destroy(sp);
            sp = NULL;
        }
    }

    /* entries refused by the builder leave it usable and add nothing */
    ak_sparse_desc_init(&g);
    g.n_batch = 2, g.n_heads = 3, g.nq = 6, g.nk = 7, g.block_q = 3;
    if (ak_sparse_builder_create(ctx, &g, &b) == AK_OK) {
        CHECK_STATUS(ak_sparse_builder_add_col(b, 0, 0, 0, 7), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_band(b, 1, 2, 1, 3, 2), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_span(b, 2, 0, 0, 0, 3), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_span(b, 0, 3, 0, 0, 3), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_span(b, 0, 0, 2, 0, 3), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_span(b, 1, 2, 1, 0, 2), AK_OK);
        CHECK(ak_sparse_builder_finish(b, &sp) == AK_OK, "builder: finish after refused entries");
        ak_sparse_builder_destroy(b);
        if (sp) {
            ak_sparse_stats s;
            CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.pairs == 6 && s.n_lists == 12, "builder: pairs %g (6), lists %lld (12)", s.pairs,
                  (long long)s.n_lists);
            ak_sparse_destroy(sp);
        }
    }
}

/* ---- statistics and the density grid -------------------------------------------------------------- */

/* Cell of item x (of n) among k cells: mode 0 = floor(x k / n) (the header's "scaled by"),
 * mode 1 = the c with floor(c n / k) <= x < floor((c + 1) n / k). */
static int64_t cell_of(int64_t x, int64_t n, int64_t k, int mode) {
    int64_t c = x * k / n;
    if (mode == 1) {
        while (c > 0 && c * n / k > x)
            c--;
        while (c + 1 < k && (c + 1) * n / k <= x)
            c++;
    }
    return c;
}

static void check_grid(const char *name, const ak_sparse *sp, const uint8_t *mask, int64_t nq, int64_t nk, int32_t rows, int32_t cols) {
    float *grid = (float *)xmalloc(sizeof(float) * (size_t)rows * (size_t)cols);
    ak_status st = ak_sparse_density_grid(sp, 0, 0, rows, cols, grid);
    CHECK(st == AK_OK, "%s: density grid %d x %d: %s", name, rows, cols, ak_status_string(st));
    double *num = (double *)xmalloc(sizeof(double) * (size_t)rows * (size_t)cols);
    double *den = (double *)xmalloc(sizeof(double) * (size_t)rows * (size_t)cols);
    int any = 0;
    double worst = 0, exp_literal = 0, got_literal = 0;
    int64_t wr = 0, wc = 0;
    for (int mode = 0; mode < 4 && st == AK_OK && !any; mode++) {
        memset(num, 0, sizeof(double) * (size_t)rows * (size_t)cols);
        memset(den, 0, sizeof(double) * (size_t)rows * (size_t)cols);
        for (int64_t i = 0; i < nq; i++) {
            int64_t ci = cell_of(i, nq, rows, mode & 1);
            for (int64_t j = 0; j < nk; j++) {
                int64_t cj = cell_of(j, nk, cols, mode >> 1), x = ci * cols + cj;
                num[x] += mask[i * nk + j];
                den[x] += 1;
            }
        }
        int ok = 1;
        for (int64_t x = 0; x < (int64_t)rows * cols; x++) {
            double e = den[x] > 0 ? num[x] / den[x] : 0.0, d = fabs(grid[x] - e);
            if (!(d <= 1e-6)) {
                ok = 0;
                if (mode == 0 && d > worst)
                    worst = d, wr = x / cols, wc = x % cols, exp_literal = e, got_literal = grid[x];
            }
        }
        any = ok;
    }
    CHECK(st != AK_OK || any,
          "%s: density grid %d x %d (nq %lld, nk %lld) is not the mask averaged over any partition of the rows and keys into cells; "
          "e.g. cell (%lld, %lld) = %.6g, the header's mapping (row * rows / nq, key * cols / nk) gives %.6g",
          name, rows, cols, (long long)nq, (long long)nk, (long long)wr, (long long)wc, got_literal, exp_literal);
    free(grid), free(num), free(den);
}

static void group_stats(void) {
    /* pattern statistics and useful_flops on several shapes (verify_case checks them all) */
    for (int v = 0; v < 6; v++) {
        spcase c;
        memset(&c, 0, sizeof c);
        rng r = rng_seed(500 + (uint64_t)v);
        ak_attn_desc_init(&c.d);
        int32_t nq = v == 1 ? 50 : v == 2 ? 120 : 100, nk = v == 1 ? 120 : v == 2 ? 50 : 100;
        c.d.batch = 2, c.d.num_heads_q = 6, c.d.num_heads_kv = 2, c.d.seqlen_q = nq, c.d.seqlen_k = nk, c.d.head_dim = 24;
        c.d.head_dim_v = v == 3 ? 40 : 0, c.d.causal = v == 4, c.d.return_lse = 1;
        if (v == 5)
            c.d.window_left = 10, c.d.window_right = 3;
        problem_opts_default(&c.po);
        int32_t heads[3] = {1, 2, 6};
        ps_init(&c.ps, v % 2 ? 2 : 1, heads[v % 3], nq, nk, v != 1 && v != 3, 1, 1);
        gen_plan(&r, &c, v == 3, 16, 7);
        char label[32];
        snprintf(label, sizeof label, "stats %d", v);
        verify_case(&c, label, 600 + (uint64_t)v);
        /* the density grid against the test's mask of (0, 0) */
        ak_sparse *sp = NULL;
        if (ps_build(g_ctx[0], &c.ps, &sp) == AK_OK) {
            size_t plane = (size_t)nq * (size_t)nk;
            uint8_t *own = (uint8_t *)xmalloc((size_t)c.ps.geom.n_batch * (size_t)c.ps.geom.n_heads * plane);
            own_masks(&c.ps, own);
            int32_t sizes[][2] = {{1, 1}, {nq, nk}, {3, 7}, {7, 3}, {nq / 2, nk / 3}, {13, 17}, {nq, 1}, {1, nk}, {10, 10}};
            for (int k = 0; k < COUNT(sizes); k++)
                check_grid(label, sp, own, nq, nk, sizes[k][0], sizes[k][1]);
            free(own);
            ak_sparse_destroy(sp);
        }
        ps_free(&c.ps);
    }
    /* a full plan: density 1, useful_flops = 2 (d + dv) B Hq nq nk; one col: pairs = nq */
    ak_sparse *sp = NULL;
    pspec ps;
    ps_init_fixed(&ps, 1, 1, 30, 40, 0, 8);
    for (int qb = 0; qb < 4; qb++)
        ps_add(&ps, E_SPAN, 0, 0, qb, 0, 40);
    if (ps_build(g_ctx[0], &ps, &sp) == AK_OK) {
        ak_sparse_stats s;
        CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.pairs == 1200 && s.density == 1.0, "stats: full plan pairs %g density %g",
              s.pairs, s.density);
        ak_attn_desc d;
        ak_attn_desc_init(&d);
        d.batch = 3, d.num_heads_q = 4, d.num_heads_kv = 2, d.seqlen_q = 30, d.seqlen_k = 40, d.head_dim = 8, d.head_dim_v = 5;
        ak_plan *pl = NULL;
        CHECK(ak_plan_create_sparse(g_ctx[1], &d, sp, &pl) == AK_OK, "stats: full plan");
        if (pl) {
            CHECK(ak_plan_sparse_stats(pl, &s) == AK_OK && s.useful_flops == 2.0 * 13 * 3 * 4 * 1200 && s.waste >= 1.0 && s.balance >= 1.0,
                  "stats: full plan useful_flops %g (expected %g), waste %g, balance %g", s.useful_flops, 2.0 * 13 * 3 * 4 * 1200, s.waste,
                  s.balance);
            ak_plan_destroy(pl);
        }
        float grid[12];
        CHECK(ak_sparse_density_grid(sp, 0, 0, 3, 4, grid) == AK_OK, "stats: full grid");
        for (int k = 0; k < 12; k++)
            CHECK(grid[k] == 1.0f, "stats: full plan grid cell %d = %g, expected 1", k, grid[k]);
        CHECK(ak_sparse_density_grid(sp, 0, 0, 7, 9, NULL) == AK_ERR_NULL_POINTER, "stats: NULL grid");
        ak_sparse_destroy(sp);
    }
    ps_free(&ps);
    /* the whole picture is one cell: the density of a non-causal plan */
    ps_init_fixed(&ps, 1, 1, 7, 11, 0, 7);
    ps_add(&ps, E_COL, 0, 0, 0, 4, 0);
    if (ps_build(g_ctx[0], &ps, &sp) == AK_OK) {
        float grid[1];
        ak_sparse_stats s;
        CHECK(ak_sparse_get_stats(sp, &s) == AK_OK && s.pairs == 7 && s.density == 7.0 / 77.0, "stats: one col pairs %g density %g",
              s.pairs, s.density);
        CHECK(ak_sparse_density_grid(sp, 0, 0, 1, 1, grid) == AK_OK && fabs(grid[0] - 7.0 / 77.0) < 1e-7, "stats: 1 x 1 grid %g", grid[0]);
        ak_sparse_destroy(sp);
    }
    ps_free(&ps);
}

/* ---- invalid input ------------------------------------------------------------------------------ */

/* A small valid raw plan: nq 6, nk 10, blocks of 3 (2 lists); gather / na variants below. */
typedef struct rawplan {
    ak_sparse_desc d;
    int64_t qoff[16], soff[16], coff[16], boff[16];
    int32_t qrows[16], slo[8], shi[8], cidx[8], blo[8], bhi[8];
    uint8_t na[16];
} rawplan;

static void raw_init(rawplan *p) {
    memset(p, 0, sizeof *p);
    ak_sparse_desc_init(&p->d);
    p->d.nq = 6, p->d.nk = 10, p->d.block_q = 3, p->d.n_qblocks = 2;
    int64_t so[3] = {0, 2, 3}, co[3] = {0, 2, 3}, bo[3] = {0, 2, 3};
    int32_t slo[3] = {0, 4, 1}, shi[3] = {2, 6, 3}, ci[3] = {7, 9, 5}, blo[3] = {-1, 2, 0}, bhi[3] = {0, 3, 0};
    memcpy(p->soff, so, sizeof so), memcpy(p->coff, co, sizeof co), memcpy(p->boff, bo, sizeof bo);
    memcpy(p->slo, slo, sizeof slo), memcpy(p->shi, shi, sizeof shi), memcpy(p->cidx, ci, sizeof ci);
    memcpy(p->blo, blo, sizeof blo), memcpy(p->bhi, bhi, sizeof bhi);
    p->d.span_off = p->soff, p->d.span_lo = p->slo, p->d.span_hi = p->shi;
    p->d.col_off = p->coff, p->d.col_idx = p->cidx;
    p->d.band_off = p->boff, p->d.band_lo = p->blo, p->d.band_hi = p->bhi;
}
/* gather: block 0 = rows {0, 2, 4}, block 1 = rows {1, 5}; row 3 in no block */
static void raw_gather(rawplan *p) {
    raw_init(p);
    int64_t qo[3] = {0, 3, 5};
    int32_t qr[5] = {0, 2, 4, 1, 5};
    memcpy(p->qoff, qo, sizeof qo), memcpy(p->qrows, qr, sizeof qr);
    p->d.qrow_off = p->qoff, p->d.qrows = p->qrows;
}
/* na: nq = nk = 12 on a 1-D grid of 12 (kernel 3), fixed blocks of 4, list 1 with na */
static void raw_na(rawplan *p) {
    raw_init(p);
    p->d.nq = p->d.nk = 12, p->d.block_q = 4, p->d.n_qblocks = 3;
    int64_t z[4] = {0, 0, 0, 0};
    memcpy(p->soff, z, sizeof z), memcpy(p->coff, z, sizeof z), memcpy(p->boff, z, sizeof z);
    p->na[1] = 1;
    p->d.na = p->na;
    ak_sparse_na *g = &p->d.na_geom;
    g->ndim = 1, g->extent[0] = 12, g->kernel[0] = 3, g->dilation[0] = 1, g->stride[0] = 1;
}

/* ak_sparse_create must return `want`, leave *out NULL and set a message (when it fails). */
static void expect_create(const char *what, const rawplan *p, ak_status want) {
    ak_sparse *sp = (ak_sparse *)(uintptr_t)1;
    ak_status st = ak_sparse_create(g_ctx[0], &p->d, &sp);
    CHECK(st == want, "ak_sparse_create (%s) returned %s, expected %s (%s)", what, ak_status_string(st), ak_status_string(want),
          ak_ctx_last_error(g_ctx[0]));
    if (st != AK_OK) {
        CHECK(sp == NULL, "ak_sparse_create (%s): *out not NULL after a failure", what);
        const char *e = ak_ctx_last_error(g_ctx[0]);
        CHECK(e && *e, "ak_sparse_create (%s): empty last error", what);
    } else {
        ak_sparse_destroy(sp);
    }
}

static void expect_msg(ak_ctx *ctx, const char *what) {
    const char *e = ak_ctx_last_error(ctx);
    CHECK(e && *e, "%s: empty last error", what);
}

static void group_invalid(void) {
    ak_ctx *ctx = g_ctx[0];
    rawplan p;
    raw_init(&p);
    expect_create("the valid base plan", &p, AK_OK);
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_sparse_create(NULL, &p.d, &sp), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_create(ctx, NULL, &sp), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_create(ctx, &p.d, NULL), AK_ERR_NULL_POINTER);
    raw_init(&p), p.d.size = 0, expect_create("size 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.n_batch = 0, expect_create("n_batch 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.n_heads = -1, expect_create("n_heads -1", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.nq = -1, expect_create("nq -1", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.nk = -2, expect_create("nk -2", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.causal = 2, expect_create("causal 2", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.block_q = 0, expect_create("block_q 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_init(&p), p.d.n_qblocks = 3, expect_create("n_qblocks 3 for 6 rows in blocks of 3", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.d.n_qblocks = 1, expect_create("n_qblocks 1 for 6 rows in blocks of 3", &p, AK_ERR_BAD_PLAN);
    /* offsets */
    raw_init(&p), p.soff[0] = 1, expect_create("span_off[0] = 1", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.soff[2] = 1, expect_create("span_off decreasing", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.coff[0] = -1, expect_create("col_off[0] = -1", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.boff[1] = 4, expect_create("band_off decreasing", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.d.span_lo = NULL, expect_create("span_lo NULL", &p, AK_ERR_NULL_POINTER);
    raw_init(&p), p.d.col_idx = NULL, expect_create("col_idx NULL", &p, AK_ERR_NULL_POINTER);
    raw_init(&p), p.d.band_hi = NULL, expect_create("band_hi NULL", &p, AK_ERR_NULL_POINTER);
    raw_init(&p), p.d.span_off = NULL, p.cidx[0] = 0, p.cidx[1] = 1, expect_create("no spans at all", &p, AK_OK);
    /* spans */
    raw_init(&p), p.slo[0] = 4, p.shi[0] = 6, p.slo[1] = 0, p.shi[1] = 2, expect_create("spans unsorted", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.shi[0] = 5, expect_create("spans overlapping", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.shi[0] = 4, expect_create("spans touching", &p, AK_OK);
    raw_init(&p), p.shi[0] = 0, expect_create("span empty [0, 0)", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.slo[2] = 3, p.shi[2] = 2, expect_create("span reversed [3, 2)", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.shi[1] = 11, expect_create("span beyond nk", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.shi[1] = 10, p.cidx[0] = 2, p.cidx[1] = 3, expect_create("span up to nk", &p, AK_OK);
    raw_init(&p), p.slo[0] = -1, expect_create("span below 0", &p, AK_ERR_BAD_PLAN);
    /* cols */
    raw_init(&p), p.cidx[1] = 7, expect_create("cols equal", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.cidx[0] = 9, p.cidx[1] = 7, expect_create("cols decreasing", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.cidx[0] = 5, expect_create("col inside a span", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.cidx[0] = 1, expect_create("col inside the first span", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.cidx[1] = 10, expect_create("col = nk", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.cidx[2] = -1, expect_create("col -1", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.cidx[0] = 6, expect_create("col right after a span", &p, AK_OK);
    raw_init(&p), p.cidx[0] = 2, p.cidx[1] = 3, expect_create("cols between spans", &p, AK_OK);
    /* bands */
    raw_init(&p), p.blo[2] = 1, expect_create("band [1, 0]", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.blo[1] = 0, expect_create("bands overlapping", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.blo[0] = 2, p.bhi[0] = 3, p.blo[1] = -1, p.bhi[1] = 0, expect_create("bands unsorted", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.blo[1] = 1, expect_create("bands touching ([-1, 0], [1, 3])", &p, AK_OK);
    raw_init(&p), p.bhi[1] = 17, expect_create("band beyond nq + nk", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.blo[0] = -17, expect_create("band below -(nq + nk)", &p, AK_ERR_BAD_PLAN);
    raw_init(&p), p.blo[0] = -16, p.bhi[1] = 16, expect_create("bands at +-(nq + nk)", &p, AK_OK);
    /* gather rows */
    raw_gather(&p), expect_create("gather base", &p, AK_OK);
    raw_gather(&p), p.qrows[3] = 2, expect_create("a row in two blocks of one (b, h)", &p, AK_ERR_BAD_PLAN);
    raw_gather(&p), p.qrows[2] = 0, expect_create("a row twice in one block", &p, AK_ERR_BAD_PLAN);
    raw_gather(&p), p.qrows[4] = 6, expect_create("row = nq", &p, AK_ERR_BAD_PLAN);
    raw_gather(&p), p.qrows[0] = -1, expect_create("row -1", &p, AK_ERR_BAD_PLAN);
    raw_gather(&p), p.qoff[0] = 1, expect_create("qrow_off[0] = 1", &p, AK_ERR_BAD_PLAN);
    raw_gather(&p), p.qoff[1] = 6, expect_create("qrow_off decreasing", &p, AK_ERR_BAD_PLAN);
    raw_gather(&p), p.d.qrows = NULL, expect_create("qrows NULL", &p, AK_ERR_NULL_POINTER);
    raw_gather(&p), p.d.qrow_off = NULL, expect_create("qrows without qrow_off", &p, AK_ERR_NULL_POINTER);
    raw_gather(&p), p.d.n_qblocks = -1, expect_create("gather n_qblocks -1", &p, AK_ERR_BAD_PLAN);
    { /* gather with 4 blocks (any count), two batches: a row may recur in another (b, h) */
        raw_gather(&p);
        int64_t qo[9] = {0, 2, 3, 3, 4, 7, 7, 7, 9};
        int32_t qr[9] = {0, 1, 2, 3, 5, 4, 3, 0, 1};
        int64_t z[9] = {0};
        memcpy(p.qoff, qo, sizeof qo), memcpy(p.qrows, qr, sizeof qr);
        memcpy(p.soff, z, sizeof z), memcpy(p.coff, z, sizeof z), memcpy(p.boff, z, sizeof z);
        p.d.n_batch = 2, p.d.n_qblocks = 4;
        expect_create("gather, 4 blocks, 2 batches", &p, AK_OK);
    }
    /* na flags and geometry */
    raw_na(&p), expect_create("na base", &p, AK_OK);
    raw_na(&p), p.na[0] = 2, expect_create("na flag 2", &p, AK_ERR_BAD_PLAN);
    raw_na(&p), p.d.na_geom.ndim = 0, expect_create("na without geometry", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.ndim = 4, expect_create("na ndim 4", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.kernel[0] = 13, expect_create("na kernel > extent", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.kernel[0] = 0, expect_create("na kernel 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.kernel[0] = 5, p.d.na_geom.dilation[0] = 3, expect_create("na kernel * dilation > extent", &p,
                                                                                       AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.kernel[0] = 4, p.d.na_geom.dilation[0] = 3, p.d.block_q = 1, p.d.n_qblocks = 12,
                p.na[1] = 0, p.na[4] = 1, expect_create("na kernel * dilation = extent", &p, AK_OK);
    raw_na(&p), p.d.na_geom.stride[0] = 0, expect_create("na stride 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.stride[0] = 4, expect_create("na stride > kernel", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.dilation[0] = 0, expect_create("na dilation 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.causal[0] = 2, expect_create("na causal 2", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.extent[0] = 11, expect_create("na grid of 11 tokens, nq = 12", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.extent[0] = 0, expect_create("na extent 0", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.ndim = 2, p.d.na_geom.extent[0] = 3, p.d.na_geom.extent[1] = 4, p.d.na_geom.kernel[1] = 3,
                p.d.na_geom.dilation[1] = 1, p.d.na_geom.stride[1] = 1, expect_create("na 3 x 4 grid", &p, AK_OK);
    raw_na(&p), p.d.na_geom.ndim = 2, p.d.na_geom.extent[0] = 3, p.d.na_geom.extent[1] = 5, p.d.na_geom.kernel[1] = 3,
                p.d.na_geom.dilation[1] = 1, p.d.na_geom.stride[1] = 1, expect_create("na 3 x 5 grid, nq = 12", &p,
                                                                                       AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.nk = 13, expect_create("na with nq != nk", &p, AK_ERR_INVALID_ARGUMENT);
    raw_na(&p), p.d.na_geom.dilation[0] = 2, expect_create("na list with rows of two dilation groups", &p, AK_ERR_BAD_PLAN);

    /* the builder */
    ak_sparse_desc g;
    ak_sparse_builder *b = NULL;
    ak_sparse_desc_init(&g);
    g.nq = 6, g.nk = 10, g.block_q = 3;
    CHECK_STATUS(ak_sparse_builder_create(NULL, &g, &b), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_create(ctx, NULL, &b), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, NULL), AK_ERR_NULL_POINTER);
    g.size = 1, b = (ak_sparse_builder *)(uintptr_t)1;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_ERR_INVALID_ARGUMENT);
    CHECK(b == NULL, "builder create: *out not NULL after a failure");
    expect_msg(ctx, "builder size 1");
    g.size = sizeof g, g.n_heads = 0;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_ERR_INVALID_ARGUMENT);
    g.n_heads = 1, g.block_q = 0;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_ERR_INVALID_ARGUMENT);
    g.block_q = 3, g.nq = g.nk = 12, g.na_geom.ndim = 1, g.na_geom.extent[0] = 12, g.na_geom.kernel[0] = 13;
    g.na_geom.dilation[0] = g.na_geom.stride[0] = 1;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_ERR_INVALID_ARGUMENT);
    expect_msg(ctx, "builder na kernel 13");
    g.na_geom.kernel[0] = 3, g.na_geom.stride[0] = 5;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_ERR_INVALID_ARGUMENT);
    g.na_geom.stride[0] = 1, g.na_geom.extent[0] = 10;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &b), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_builder_add_span(NULL, 0, 0, 0, 0, 1), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_add_col(NULL, 0, 0, 0, 0), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_add_band(NULL, 0, 0, 0, 0, 1), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_set_na(NULL, 0, 0, 0), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_add_row(NULL, 0, 0, 0, 0), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_builder_finish(NULL, &sp), AK_ERR_NULL_POINTER);
    ak_sparse_builder_destroy(NULL);
    ak_sparse_desc_init(&g);
    g.nq = 6, g.nk = 10, g.block_q = 3;
    if (ak_sparse_builder_create(ctx, &g, &b) == AK_OK) {
        CHECK_STATUS(ak_sparse_builder_add_span(b, -1, 0, 0, 0, 1), AK_ERR_INVALID_ARGUMENT);
        expect_msg(ctx, "builder batch -1");
        CHECK_STATUS(ak_sparse_builder_add_col(b, 0, 1, 0, 0), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_band(b, 0, 0, -1, 0, 1), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_col(b, 0, 0, 0, 10), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_col(b, 0, 0, 0, -1), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_band(b, 0, 0, 0, 1, 0), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_set_na(b, 0, 0, 0), AK_ERR_INVALID_ARGUMENT);
        expect_msg(ctx, "builder set_na without geometry");
        CHECK_STATUS(ak_sparse_builder_add_row(b, 0, 0, 0, 6), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_add_row(b, 0, 0, 0, -1), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_sparse_builder_finish(b, NULL), AK_ERR_NULL_POINTER);
        /* a row in two blocks of one (b, h) */
        ak_sparse_builder_add_row(b, 0, 0, 0, 2), ak_sparse_builder_add_row(b, 0, 0, 1, 2);
        sp = (ak_sparse *)(uintptr_t)1;
        CHECK_STATUS(ak_sparse_builder_finish(b, &sp), AK_ERR_BAD_PLAN);
        CHECK(sp == NULL, "builder finish: *out not NULL after a failure");
        expect_msg(ctx, "builder finish, a row twice");
        ak_sparse_builder_destroy(b);
    }
    /* na with rows of two dilation groups through the builder */
    ak_sparse_desc_init(&g);
    g.nq = g.nk = 12, g.block_q = 4, g.na_geom.ndim = 1, g.na_geom.extent[0] = 12, g.na_geom.kernel[0] = 3;
    g.na_geom.dilation[0] = 2, g.na_geom.stride[0] = 1;
    if (ak_sparse_builder_create(ctx, &g, &b) == AK_OK) {
        ak_sparse_builder_set_na(b, 0, 0, 1);
        CHECK_STATUS(ak_sparse_builder_finish(b, &sp), AK_ERR_BAD_PLAN);
        ak_sparse_builder_destroy(b);
    }

    /* masks, grid, stats, desc of a valid plan */
    raw_init(&p);
    CHECK(ak_sparse_create(ctx, &p.d, &sp) == AK_OK, "invalid: base plan");
    uint8_t mask[60];
    float grid[60];
    ak_sparse_stats s;
    ak_sparse_desc dd;
    CHECK_STATUS(ak_sparse_mask(NULL, 0, 0, mask), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_mask(sp, 0, 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_mask(sp, 1, 0, mask), AK_ERR_INVALID_ARGUMENT);
    expect_msg(ctx, "ak_sparse_mask batch 1");
    CHECK_STATUS(ak_sparse_mask(sp, 0, -1, mask), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_density_grid(NULL, 0, 0, 1, 1, grid), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_density_grid(sp, 0, 0, 0, 1, grid), AK_ERR_INVALID_ARGUMENT);
    expect_msg(ctx, "density grid rows 0");
    CHECK_STATUS(ak_sparse_density_grid(sp, 0, 0, 1, 0, grid), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_density_grid(sp, 0, 0, 7, 1, grid), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_density_grid(sp, 0, 0, 1, 11, grid), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_density_grid(sp, 0, 1, 1, 1, grid), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_sparse_density_grid(sp, 0, 0, 6, 10, grid), AK_OK);
    CHECK_STATUS(ak_sparse_get_stats(NULL, &s), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_get_stats(sp, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_get_desc(NULL, &dd), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_get_desc(sp, NULL), AK_ERR_NULL_POINTER);
    CHECK(strcmp(ak_sparse_name(NULL), "") == 0, "ak_sparse_name(NULL)");
    ak_sparse_destroy(NULL);

    /* plans of the executor */
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = 3, d.num_heads_q = 4, d.num_heads_kv = 2, d.seqlen_q = 6, d.seqlen_k = 10, d.head_dim = 8;
    ak_plan *pl = (ak_plan *)(uintptr_t)1;
    CHECK_STATUS(ak_plan_create_sparse(ctx, &d, sp, &pl), AK_OK);
    ak_plan_destroy(pl);
    CHECK_STATUS(ak_plan_create_sparse(NULL, &d, sp, &pl), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_plan_create_sparse(ctx, NULL, sp, &pl), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_plan_create_sparse(ctx, &d, NULL, &pl), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_plan_create_sparse(ctx, &d, sp, NULL), AK_ERR_NULL_POINTER);
    struct {
        const char *what;
        int32_t nq, nk, n_heads, n_batch, ragged, hd, hq;
        ak_status want;
    } pc[] = {
        {"seqlen_q 7 vs nq 6", 7, 10, 1, 1, 0, 8, 4, AK_ERR_SHAPE_MISMATCH},
        {"seqlen_k 9 vs nk 10", 6, 9, 1, 1, 0, 8, 4, AK_ERR_SHAPE_MISMATCH},
        {"n_heads 3 (Hq 4, Hkv 2)", 6, 10, 3, 1, 0, 8, 4, AK_ERR_SHAPE_MISMATCH},
        {"n_heads 8 (Hq 4, Hkv 2)", 6, 10, 8, 1, 0, 8, 4, AK_ERR_SHAPE_MISMATCH},
        {"n_heads 2 = Hkv", 6, 10, 2, 1, 0, 8, 4, AK_OK},
        {"n_heads 4 = Hq", 6, 10, 4, 1, 0, 8, 4, AK_OK},
        {"n_batch 2 (B 3)", 6, 10, 1, 2, 0, 8, 4, AK_ERR_SHAPE_MISMATCH},
        {"n_batch 3 = B", 6, 10, 1, 3, 0, 8, 4, AK_OK},
        {"ragged descriptor", 6, 10, 1, 1, 1, 8, 4, AK_ERR_INVALID_ARGUMENT},
        {"head_dim 0", 6, 10, 1, 1, 0, 0, 4, AK_ERR_HEAD_DIM},
        {"Hq 3 with Hkv 2", 6, 10, 1, 1, 0, 8, 3, AK_ERR_GQA_RATIO},
    };
    int32_t cu_q[4] = {0, 2, 4, 6}, cu_k[4] = {0, 3, 7, 10};
    for (int k = 0; k < COUNT(pc); k++) {
        ak_sparse *sp2 = NULL;
        rawplan q;
        raw_init(&q);
        q.d.n_heads = pc[k].n_heads, q.d.n_batch = pc[k].n_batch;
        int64_t zz[40] = {0};
        q.d.span_off = q.d.col_off = q.d.band_off = zz; /* R may exceed the struct's arrays: all-empty offsets */
        CHECK(ak_sparse_create(ctx, &q.d, &sp2) == AK_OK, "plan case %s: make the pattern", pc[k].what);
        ak_attn_desc dk = d;
        dk.seqlen_q = pc[k].nq, dk.seqlen_k = pc[k].nk, dk.head_dim = pc[k].hd, dk.num_heads_q = pc[k].hq;
        if (pc[k].ragged)
            dk.cu_seqlens_q = cu_q, dk.cu_seqlens_k = cu_k;
        pl = (ak_plan *)(uintptr_t)1;
        ak_status st = ak_plan_create_sparse(ctx, &dk, sp2, &pl);
        CHECK(st == pc[k].want, "ak_plan_create_sparse (%s) returned %s, expected %s (%s)", pc[k].what, ak_status_string(st),
              ak_status_string(pc[k].want), ak_ctx_last_error(ctx));
        if (st != AK_OK) {
            CHECK(pl == NULL, "ak_plan_create_sparse (%s): *out not NULL after a failure", pc[k].what);
            expect_msg(ctx, pc[k].what);
        } else {
            ak_plan_destroy(pl);
        }
        /* the reference takes the same checks (tensors of the right shape for dk) */
        if (pc[k].hd > 0 && dk.num_heads_q % dk.num_heads_kv == 0 && !pc[k].ragged) {
            int64_t nq = dk.seqlen_q, nk = dk.seqlen_k;
            float *buf = (float *)xcalloc((size_t)(3 * 4 * (nq + 2 * nk + nq) * 8 + 3 * 4 * nq), sizeof(float));
            ak_attn_tensors t;
            ak_attn_tensors_init(&t);
            float *q0 = buf, *k0 = q0 + 3 * 4 * nq * 8, *v0 = k0 + 3 * 2 * nk * 8, *o0 = v0 + 3 * 2 * nk * 8;
            t.q = ak_tensor_4d(q0, AK_F32, 3, 4, nq, 8), t.k = ak_tensor_4d(k0, AK_F32, 3, 2, nk, 8);
            t.v = ak_tensor_4d(v0, AK_F32, 3, 2, nk, 8), t.o = ak_tensor_4d(o0, AK_F32, 3, 4, nq, 8);
            st = ak_attention_ref_sparse(ctx, &dk, sp2, &t);
            CHECK(st == pc[k].want, "ak_attention_ref_sparse (%s) returned %s, expected %s", pc[k].what, ak_status_string(st),
                  ak_status_string(pc[k].want));
            free(buf);
        }
        ak_sparse_destroy(sp2);
    }
    /* run-time checks of a sparse plan, stats of a dense plan */
    {
        float q0[3 * 4 * 6 * 8], k0[3 * 2 * 10 * 8], v0[3 * 2 * 10 * 8], o0[3 * 4 * 6 * 8];
        uint16_t o16[3 * 4 * 6 * 8];
        for (size_t x = 0; x < sizeof q0 / sizeof q0[0]; x++)
            q0[x] = 0.01f * (float)(x % 17);
        for (size_t x = 0; x < sizeof k0 / sizeof k0[0]; x++)
            k0[x] = 0.02f * (float)(x % 13), v0[x] = 0.5f - 0.03f * (float)(x % 11);
        ak_attn_tensors t;
        ak_attn_tensors_init(&t);
        t.q = ak_tensor_4d(q0, AK_F32, 3, 4, 6, 8), t.k = ak_tensor_4d(k0, AK_F32, 3, 2, 10, 8);
        t.v = ak_tensor_4d(v0, AK_F32, 3, 2, 10, 8), t.o = ak_tensor_4d(o0, AK_F32, 3, 4, 6, 8);
        pl = NULL;
        CHECK_STATUS(ak_plan_create_sparse(ctx, &d, sp, &pl), AK_OK);
        if (pl) {
            CHECK_STATUS(ak_attention_run(pl, &t, NULL, 0), AK_OK);
            ak_attn_tensors t2 = t;
            t2.o = ak_tensor_4d(o0, AK_F32, 3, 4, 5, 8);
            CHECK_STATUS(ak_attention_run(pl, &t2, NULL, 0), AK_ERR_SHAPE_MISMATCH);
            expect_msg(ctx, "run with a short O");
            t2 = t, t2.k = ak_tensor_4d(k0, AK_F32, 3, 2, 9, 8);
            CHECK_STATUS(ak_attention_run(pl, &t2, NULL, 0), AK_ERR_SHAPE_MISMATCH);
            t2 = t, t2.o = ak_tensor_4d(o16, AK_BF16, 3, 4, 6, 8);
            CHECK_STATUS(ak_attention_run(pl, &t2, NULL, 0), AK_ERR_PLAN_MISMATCH);
            t2 = t, t2.o = ak_tensor_4d(q0, AK_F32, 3, 4, 6, 8);
            CHECK_STATUS(ak_attention_run(pl, &t2, NULL, 0), AK_ERR_OUTPUT_OVERLAP);
            size_t ws = ak_plan_workspace_size(pl);
            if (ws > 0) {
                unsigned char *w = (unsigned char *)xmalloc(ws);
                CHECK_STATUS(ak_attention_run(pl, &t, w, ws - 1), AK_ERR_WORKSPACE_TOO_SMALL);
                free(w);
            }
            CHECK_STATUS(ak_plan_sparse_stats(pl, NULL), AK_ERR_NULL_POINTER);
            ak_plan_destroy(pl);
        }
        CHECK_STATUS(ak_plan_sparse_stats(NULL, &s), AK_ERR_NULL_POINTER);
        ak_plan *dense = NULL;
        CHECK_STATUS(ak_plan_create(ctx, &d, &dense), AK_OK);
        if (dense) {
            CHECK_STATUS(ak_plan_sparse_stats(dense, &s), AK_ERR_PLAN_MISMATCH);
            expect_msg(ctx, "ak_plan_sparse_stats of a dense plan");
            ak_plan_destroy(dense);
        }
        CHECK_STATUS(ak_attention_ref_sparse(NULL, &d, sp, &t), AK_ERR_NULL_POINTER);
        CHECK_STATUS(ak_attention_ref_sparse(ctx, &d, NULL, &t), AK_ERR_NULL_POINTER);
        ak_attn_tensors t3 = t;
        t3.o = ak_tensor_4d(o0, AK_F32, 3, 4, 6, 7);
        CHECK_STATUS(ak_attention_ref_sparse(ctx, &d, sp, &t3), AK_ERR_SHAPE_MISMATCH);
        expect_msg(ctx, "reference with a narrow O");
    }
    ak_sparse_destroy(sp);
    ak_plan_destroy(NULL);
}

/* ---- main ---------------------------------------------------------------------------------------- */

/* ---- json: ak_sparse_to_json / ak_sparse_from_json --------------------------------------------- */

/* Load `text`; expect `want` (and, for a failure, *out NULL and a message). */
static void json_expect(const char *what, const char *text, ak_status want) {
    ak_sparse *sp = (ak_sparse *)&sp;
    ak_status st = ak_sparse_from_json(g_ctx[0], text, strlen(text), &sp);
    CHECK(st == want, "json %s: status %s, expected %s (%s)", what, ak_status_string(st), ak_status_string(want),
          ak_ctx_last_error(g_ctx[0]));
    if (want != AK_OK) {
        CHECK(sp == NULL, "json %s: *out not NULL after a failure", what);
        CHECK(ak_ctx_last_error(g_ctx[0])[0] != 0, "json %s: no error message", what);
    }
    ak_sparse_destroy(st == AK_OK ? sp : NULL);
}

static void group_json(void) {
    /* round trip: random plans of the sweep (gather lists, neighborhoods, every primitive) */
    int n = g_quick ? 40 : 150;
    for (int idx = 0; idx < n; idx++) {
        spcase c;
        draw_case(5000 + idx, &c);
        ak_sparse *sp = NULL, *sp2 = NULL;
        ak_status st = ps_build(g_ctx[0], &c.ps, &sp);
        CHECK(st == AK_OK, "json case %d: build: %s", idx, ak_ctx_last_error(g_ctx[0]));
        char *text = NULL;
        size_t len = 0;
        if (st == AK_OK) st = ak_sparse_to_json(g_ctx[0], sp, &text, &len);
        CHECK(st == AK_OK && text && len == strlen(text), "json case %d: to_json: %s", idx, ak_ctx_last_error(g_ctx[0]));
        if (st == AK_OK) st = ak_sparse_from_json(g_ctx[0], text, len, &sp2);
        CHECK(st == AK_OK, "json case %d: from_json: %s", idx, ak_ctx_last_error(g_ctx[0]));
        if (st == AK_OK) {
            ak_sparse_desc a, b;
            ak_sparse_get_desc(sp, &a);
            ak_sparse_get_desc(sp2, &b);
            int64_t R = (int64_t)a.n_batch * a.n_heads * a.n_qblocks;
            int same = a.n_batch == b.n_batch && a.n_heads == b.n_heads && a.nq == b.nq && a.nk == b.nk && a.causal == b.causal &&
                       a.block_q == b.block_q && a.n_qblocks == b.n_qblocks && (a.qrow_off == NULL) == (b.qrow_off == NULL) &&
                       memcmp(&a.na_geom, &b.na_geom, sizeof a.na_geom) == 0 && strcmp(a.name, b.name) == 0;
            for (int64_t r = 0; r < R && same; r++) {
                same = a.span_off[r + 1] == b.span_off[r + 1] && a.col_off[r + 1] == b.col_off[r + 1] &&
                       a.band_off[r + 1] == b.band_off[r + 1] && a.na[r] == b.na[r] &&
                       (!a.qrow_off || a.qrow_off[r + 1] == b.qrow_off[r + 1]);
            }
            int64_t R1 = R;
            if (same && a.span_off[R1])
                same = !memcmp(a.span_lo, b.span_lo, 4 * (size_t)a.span_off[R1]) && !memcmp(a.span_hi, b.span_hi, 4 * (size_t)a.span_off[R1]);
            if (same && a.col_off[R1]) same = !memcmp(a.col_idx, b.col_idx, 4 * (size_t)a.col_off[R1]);
            if (same && a.band_off[R1])
                same = !memcmp(a.band_lo, b.band_lo, 4 * (size_t)a.band_off[R1]) && !memcmp(a.band_hi, b.band_hi, 4 * (size_t)a.band_off[R1]);
            if (same && a.qrow_off && a.qrow_off[R1]) same = !memcmp(a.qrows, b.qrows, 4 * (size_t)a.qrow_off[R1]);
            CHECK(same, "json case %d: the loaded plan differs from the saved one", idx);
            /* and the element masks agree */
            size_t cells = (size_t)a.nq * (size_t)a.nk;
            uint8_t *m1 = (uint8_t *)xmalloc(cells + 1), *m2 = (uint8_t *)xmalloc(cells + 1);
            for (int32_t bb = 0; bb < a.n_batch; bb++)
                for (int32_t h = 0; h < a.n_heads; h++) {
                    ak_sparse_mask(sp, bb, h, m1);
                    ak_sparse_mask(sp2, bb, h, m2);
                    CHECK(memcmp(m1, m2, cells) == 0, "json case %d: masks differ (b %d, h %d)", idx, bb, h);
                }
            free(m1);
            free(m2);
        }
        ak_free(g_ctx[0], text);
        ak_sparse_destroy(sp);
        ak_sparse_destroy(sp2);
        ps_free(&c.ps);
    }
    /* hand-written files: valid, and each rule of the normal form violated once */
    const char *head = "{\"format\": \"attnkit-sparse\", \"version\": 1, \"n_batch\": 1, \"n_heads\": 1, \"nq\": 8, \"nk\": 8, "
                       "\"causal\": 1, \"block_q\": 4, \"n_qblocks\": 2, \"lists\": [";
    struct { const char *what, *lists; ak_status want; } cases[] = {
        {"valid", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[0,2],[2,4]],\"cols\":[6],\"bands\":[[0,1]]},{\"b\":0,\"h\":0,\"qb\":1}", AK_OK},
        {"overlapping spans", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[0,3],[2,4]]}", AK_ERR_BAD_PLAN},
        {"unsorted spans", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[4,6],[0,2]]}", AK_ERR_BAD_PLAN},
        {"empty span", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[3,3]]}", AK_ERR_BAD_PLAN},
        {"span beyond nk", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[4,9]]}", AK_ERR_BAD_PLAN},
        {"col inside a span", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[0,4]],\"cols\":[2]}", AK_ERR_BAD_PLAN},
        {"duplicate cols", "{\"b\":0,\"h\":0,\"qb\":0,\"cols\":[5,5]}", AK_ERR_BAD_PLAN},
        {"overlapping bands", "{\"b\":0,\"h\":0,\"qb\":0,\"bands\":[[0,2],[2,3]]}", AK_ERR_BAD_PLAN},
        {"list out of order", "{\"b\":0,\"h\":0,\"qb\":1},{\"b\":0,\"h\":0,\"qb\":0}", AK_ERR_BAD_PLAN},
        {"list repeated", "{\"b\":0,\"h\":0,\"qb\":0},{\"b\":0,\"h\":0,\"qb\":0}", AK_ERR_BAD_PLAN},
        {"qb out of range", "{\"b\":0,\"h\":0,\"qb\":2}", AK_ERR_BAD_PLAN},
        {"rows without gather", "{\"b\":0,\"h\":0,\"qb\":0,\"rows\":[1]}", AK_ERR_BAD_PLAN},
        {"span not a pair", "{\"b\":0,\"h\":0,\"qb\":0,\"spans\":[[0,1,2]]}", AK_ERR_BAD_PLAN},
        {"non-integer col", "{\"b\":0,\"h\":0,\"qb\":0,\"cols\":[1.5]}", AK_ERR_BAD_PLAN},
        {"na without geometry", "{\"b\":0,\"h\":0,\"qb\":0,\"na\":1}", AK_ERR_INVALID_ARGUMENT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s]}", head, cases[k].lists);
        json_expect(cases[k].what, text, cases[k].want);
    }
    char text[1024];
    snprintf(text, sizeof text, "%s]}", head);
    text[strlen(text) - 5] = 0; /* truncated */
    json_expect("truncated", text, AK_ERR_BAD_PLAN);
    json_expect("trailing garbage", "{\"format\": \"attnkit-sparse\", \"nq\": 0, \"nk\": 0, \"block_q\": 1, \"n_qblocks\": 0, \"lists\": []} x",
                AK_ERR_BAD_PLAN);
    json_expect("empty plan", "{\"format\": \"attnkit-sparse\", \"nq\": 0, \"nk\": 0, \"block_q\": 1, \"n_qblocks\": 0, \"lists\": []}",
                AK_OK);
    json_expect("wrong format", "{\"format\": \"other\", \"nq\": 0, \"nk\": 0, \"block_q\": 1, \"n_qblocks\": 0, \"lists\": []}",
                AK_ERR_BAD_PLAN);
    json_expect("wrong n_qblocks", "{\"format\": \"attnkit-sparse\", \"nq\": 8, \"nk\": 8, \"block_q\": 4, \"n_qblocks\": 3, \"lists\": []}",
                AK_ERR_BAD_PLAN);
    json_expect("missing nq", "{\"format\": \"attnkit-sparse\", \"nk\": 8, \"block_q\": 4, \"n_qblocks\": 2, \"lists\": []}", AK_ERR_BAD_PLAN);
    json_expect("not an object", "[1, 2]", AK_ERR_BAD_PLAN);
    json_expect("deep nesting", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                AK_ERR_BAD_PLAN);
    json_expect("string escape", "{\"format\": \"attnkit-sp\\arse\"}", AK_ERR_BAD_PLAN);
    /* NULL arguments */
    ak_sparse *sp = NULL;
    CHECK_STATUS(ak_sparse_from_json(g_ctx[0], NULL, 0, &sp), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_sparse_to_json(g_ctx[0], NULL, NULL, NULL), AK_ERR_NULL_POINTER);
}

int main(int argc, char **argv) {
    g_verbose = (int)tu_env_long("AK_SWEEP_VERBOSE", 0);
    g_quick = (int)tu_env_long("AK_SPARSE_QUICK", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    int want = requested_isa();
    if (want == -2) {
        fprintf(stderr, "test_sparse: unknown AK_MAX_ISA=%s\n", getenv("AK_MAX_ISA"));
        return 1;
    }
    if (want >= 0 && (int)ak_isa_detect() < want) {
        printf("test_sparse: SKIP: AK_MAX_ISA=%s but this CPU/OS supports only %s\n", getenv("AK_MAX_ISA"), ak_isa_name(ak_isa_detect()));
        return 77;
    }
    for (int k = 0; k < 3; k++)
        if (ak_ctx_create(&g_ctx[k]) != AK_OK || ak_ctx_set_num_threads(g_ctx[k], k + 1) != AK_OK) {
            fprintf(stderr, "test_sparse: context setup failed\n");
            return 1;
        }
    g_isa = ak_ctx_get_isa(g_ctx[0]);
    if (want >= 0 && (int)g_isa != want) {
        fprintf(stderr, "test_sparse: FAIL: AK_MAX_ISA=%s but the context uses %s\n", getenv("AK_MAX_ISA"), ak_isa_name(g_isa));
        return 1;
    }
    const char *emu = getenv("AK_EMULATE_BF16DOT");
    g_emu = emu && strcmp(emu, "1") == 0 && g_isa == AK_ISA_AVX512;
    if (emu && strcmp(emu, "1") == 0 && g_isa < AK_ISA_AVX512) {
        printf("test_sparse: SKIP: AK_EMULATE_BF16DOT=1 needs AVX-512 (this context: %s)\n", ak_isa_name(g_isa));
        for (int k = 0; k < 3; k++)
            ak_ctx_destroy(g_ctx[k]);
        return 77;
    }
    double t0 = tu_now();
    int any = 0;
#define GROUP(name, call)                                                                                                       \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                                                 \
        double tg_ = tu_now();                                                                                                   \
        int f_ = tc_failures;                                                                                                    \
        call;                                                                                                                    \
        any = 1;                                                                                                                 \
        printf("group %-8s %s (%.1f s)\n", name, tc_failures == f_ ? "ok" : "FAILED", tu_now() - tg_);                           \
        fflush(stdout);                                                                                                          \
    }
    GROUP("hand", group_hand())
    GROUP("builder", group_builder())
    GROUP("invalid", group_invalid())
    GROUP("stats", group_stats())
    GROUP("masked", group_masked())
    GROUP("dtypes", group_dtypes())
    GROUP("threads", group_threads())
    GROUP("json", group_json())
    GROUP("sweep", group_sweep(argc > 2 ? strtol(argv[2], NULL, 10) : 150))
#undef GROUP
    if (g_n_kernels) {
        printf("kernels used:");
        for (int i = 0; i < g_n_kernels; i++)
            printf(" %s", g_kernels[i]);
        printf("\n");
    }
    for (int k = 0; k < 3; k++)
        ak_ctx_destroy(g_ctx[k]);
    if (!any) {
        fprintf(stderr, "test_sparse: unknown group '%s' (hand, builder, invalid, stats, masked, dtypes, threads, json, sweep)\n", group);
        return 2;
    }
    char name[96];
    snprintf(name, sizeof name, "test_sparse %s, isa %s%s (%.1f s)", group, ak_isa_name(g_isa), g_emu ? " + bf16 emulation" : "",
             tu_now() - t0);
    return tc_finish(name);
}
