/*
 * DHSA -- Dynamic Hierarchical Sparse Attention, paper v1 = the reference's legacy/ code
 * (dynamic-sparse.md §6; the exact rules are in attnkit.h, the choices in docs/dynamic/dhsa.md).
 *
 * Per (sequence b, plan head ph):
 *   1. chunk boundaries: fixed (every `chunk` keys + the forced instruction boundary), given by the
 *      caller, or the oracle (the reference's training label from the head-averaged attention);
 *   2. head-averaged block sums of Q (sparse query blocks) and chunk sums of K, length-normalised:
 *      Qn[m] = sum_B qbar / sqrt|B|, Kn[c] = sum_C kbar / sqrt|C|, so score(B, C) = Qn[m] . Kn[c];
 *   3. per group of DHSA_GROUP query blocks: scores on the micro-kernel (ak__dyn_scores), then per
 *      block the local range, the globals and the best whole chunks (a weighted quickselect on chunk
 *      scores; the boundary chunk is cut to its lowest keys) as merged key runs;
 *   4. runs -> builder (sequentially, group by group): spans for runs holding a global or local key or
 *      of >= span_min keys, cols for the others; the instruction rows get the span [0, nk).
 * Estimation in f32 products with double sums; the same plan for every thread count (each block and
 * each chunk is summed by one thread in a fixed order; the oracle sums a fixed row partition).
 */
#include "dynamic/dyn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DHSA_GROUP 16      /* query blocks per score product */
#define DHSA_PARTS 16      /* oracle: fixed partition of the query rows (independent of the threads) */
#define DHSA_ROWS 64       /* oracle: query rows per probability batch */
#define DHSA_EPS 1e-6      /* the reference's epsilon in the gap ratio */

void ak_dhsa_params_init(ak_dhsa_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->block = 128;
    p->budget = 2048;
    p->local = 128;
    p->global_tokens = 128;
    p->instruction_tokens = 64;
    p->chunking = AK_DHSA_FIXED;
    p->chunk = 16;
    p->boundaries = NULL;
    p->n_boundaries = 0;
    p->theta = 1.1f;
    p->nms = 8;
    p->beta = 8;
    p->window = 4;
    p->smooth_ends = 0;
    p->per_kv_head = 0;
    p->pad_dilution = 0;
    p->global_overwrite = 0;
    p->span_min = 64;
}

int ak__dhsa_opt(void *params, const char *key, const char *val) {
    static const struct {
        const char *key;
        size_t off;
    } ints[] = {
        {"block", offsetof(ak_dhsa_params, block)},
        {"budget", offsetof(ak_dhsa_params, budget)},
        {"local", offsetof(ak_dhsa_params, local)},
        {"global_tokens", offsetof(ak_dhsa_params, global_tokens)},
        {"instruction_tokens", offsetof(ak_dhsa_params, instruction_tokens)},
        {"chunk", offsetof(ak_dhsa_params, chunk)},
        {"nms", offsetof(ak_dhsa_params, nms)},
        {"beta", offsetof(ak_dhsa_params, beta)},
        {"window", offsetof(ak_dhsa_params, window)},
        {"smooth_ends", offsetof(ak_dhsa_params, smooth_ends)},
        {"per_kv_head", offsetof(ak_dhsa_params, per_kv_head)},
        {"pad_dilution", offsetof(ak_dhsa_params, pad_dilution)},
        {"global_overwrite", offsetof(ak_dhsa_params, global_overwrite)},
        {"span_min", offsetof(ak_dhsa_params, span_min)},
    };
    ak_dhsa_params *p = (ak_dhsa_params *)params;
    if (!p || !key || !val) return 0;
    if (strcmp(key, "chunking") == 0) {
        if (strcmp(val, "fixed") == 0) p->chunking = AK_DHSA_FIXED;
        else if (strcmp(val, "given") == 0) p->chunking = AK_DHSA_GIVEN;
        else if (strcmp(val, "oracle") == 0) p->chunking = AK_DHSA_ORACLE;
        else return ak__dyn_int(val, &p->chunking);
        return 1;
    }
    if (strcmp(key, "theta") == 0) return ak__dyn_float(val, &p->theta);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(key, ints[i].key) == 0) return ak__dyn_int(val, (int32_t *)((char *)p + ints[i].off));
    return 0;
}

/* ---- validation and geometry ---------------------------------------------------------------- */

static ak_status bad_int(const ak_ctx *ctx, const char *field, int32_t v, const char *need) {
    return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: %s = %d, %s", field, v, need);
}

static ak_status check_params(const ak_ctx *ctx, const ak_dhsa_params *p, int32_t nk) {
    if (p->block < 1) return bad_int(ctx, "block", p->block, "must be >= 1");
    if (p->budget < 1) return bad_int(ctx, "budget", p->budget, "must be >= 1 (a budget >= nk is dense)");
    if (p->local < 0) return bad_int(ctx, "local", p->local, "must be >= 0");
    if (p->global_tokens < 0) return bad_int(ctx, "global_tokens", p->global_tokens, "must be >= 0");
    if (p->instruction_tokens < 0) return bad_int(ctx, "instruction_tokens", p->instruction_tokens, "must be >= 0");
    if (p->chunking < AK_DHSA_FIXED || p->chunking > AK_DHSA_ORACLE)
        return bad_int(ctx, "chunking", p->chunking, "must be AK_DHSA_FIXED (0), AK_DHSA_GIVEN (1) or AK_DHSA_ORACLE (2)");
    if (p->chunk < 1) return bad_int(ctx, "chunk", p->chunk, "must be >= 1");
    if (p->n_boundaries < 0) return bad_int(ctx, "n_boundaries", p->n_boundaries, "must be >= 0");
    if (!(p->theta >= 0.0f) || isinf(p->theta))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: theta = %g, must be finite and >= 0", (double)p->theta);
    if (p->nms < 0) return bad_int(ctx, "nms", p->nms, "must be >= 0 (0 = no suppression)");
    if (p->beta < 1) return bad_int(ctx, "beta", p->beta, "must be >= 1");
    if (p->window < 1) return bad_int(ctx, "window", p->window, "must be >= 1");
    if (p->smooth_ends != 0 && p->smooth_ends != 1) return bad_int(ctx, "smooth_ends", p->smooth_ends, "must be 0 or 1");
    if (p->per_kv_head != 0 && p->per_kv_head != 1) return bad_int(ctx, "per_kv_head", p->per_kv_head, "must be 0 or 1");
    if (p->pad_dilution != 0 && p->pad_dilution != 1) return bad_int(ctx, "pad_dilution", p->pad_dilution, "must be 0 or 1");
    if (p->global_overwrite != 0 && p->global_overwrite != 1)
        return bad_int(ctx, "global_overwrite", p->global_overwrite, "must be 0 or 1");
    if (p->span_min < 1) return bad_int(ctx, "span_min", p->span_min, "must be >= 1");
    if (p->chunking == AK_DHSA_GIVEN) {
        if (p->n_boundaries > 0 && !p->boundaries)
            return ak__fail(ctx, AK_ERR_NULL_POINTER, "dhsa: boundaries is NULL with n_boundaries = %d", p->n_boundaries);
        for (int32_t i = 0; i < p->n_boundaries; i++) {
            if (p->boundaries[i] < 0 || p->boundaries[i] > nk)
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: boundaries[%d] = %d outside [0, nk = %d]", i,
                                p->boundaries[i], nk);
            if (i > 0 && p->boundaries[i] <= p->boundaries[i - 1])
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: boundaries[%d] = %d <= boundaries[%d] = %d (must increase)",
                                i, p->boundaries[i], i - 1, p->boundaries[i - 1]);
        }
    }
    return AK_OK;
}

/* The query-side geometry shared by every (sequence, plan head). */
typedef struct dgeo {
    int32_t S;          /* sparse rows [0, S) */
    int32_t ninstr;     /* dense rows [S, nq) */
    int32_t nqb, nib;   /* sparse blocks, instruction blocks */
    int32_t nph;        /* plan heads */
    int64_t off;        /* nk - nq: pos(i) = i + off */
    int fixed;          /* fixed query tiles (S % block == 0), else gather lists */
} dgeo;

static void geo_init(const ak_dyn_in *in, const ak_dhsa_params *p, dgeo *g) {
    g->ninstr = p->instruction_tokens < in->nq ? p->instruction_tokens : in->nq;
    g->S = in->nq - g->ninstr;
    g->nqb = (int32_t)(((int64_t)g->S + p->block - 1) / p->block);
    g->nib = (int32_t)(((int64_t)g->ninstr + p->block - 1) / p->block);
    g->nph = p->per_kv_head ? in->Hkv : 1;
    g->off = (int64_t)in->nk - in->nq;
    g->fixed = g->S % p->block == 0;
}

/* Query heads [*q0, *q1) and KV heads [*k0, *k1) averaged for plan head ph. */
static void heads_of(const ak_dyn_in *in, int per_kv, int32_t ph, int32_t *q0, int32_t *q1, int32_t *k0, int32_t *k1) {
    if (per_kv) {
        *q0 = ph * in->G;
        *q1 = *q0 + in->G;
        *k0 = ph;
        *k1 = ph + 1;
    } else {
        *q0 = 0;
        *q1 = in->Hq;
        *k0 = 0;
        *k1 = in->Hkv;
    }
}

/* Begin + the checks every entry point shares. On success call ak__dyn_end. */
static ak_status setup(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dhsa_params *p,
                       ak_dyn_in *in, dgeo *g) {
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, "dhsa", in);
    if (st != AK_OK) return st;
    if (!desc->causal)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: desc->causal = 0; DHSA is defined for causal attention only");
    else st = check_params(ctx, p, in->nk);
    if (st != AK_OK) {
        ak__dyn_end(in);
        return st;
    }
    geo_init(in, p, g);
    return AK_OK;
}

/* ---- boundaries ------------------------------------------------------------------------------ */

/* Gap range [*tlo, *thi) whose ratios the oracle computes (may be empty). */
static void gap_range(int64_t n, int32_t w, int smooth, int64_t *tlo, int64_t *thi) {
    *tlo = smooth ? 2 * (int64_t)w - 1 : (int64_t)w - 1;
    *thi = smooth ? n - 2 * (int64_t)w : n - w;
}

/* One attention row at position pos, as prefix sums P[x] = sum_{j < x} a[j] (x <= pos + 1 read): add its
 * mass on [t-w+1, t] to past[t] and on [t+1, t+w] to fut[t] for every gap t in [tlo, thi) with t + w <= pos. */
static void label_row(const double *P, int64_t pos, int32_t w, int64_t tlo, int64_t thi, double *past, double *fut) {
    int64_t hi = pos - w + 1 < thi ? pos - w + 1 : thi;
    for (int64_t t = tlo; t < hi; t++) {
        past[t] += P[t + 1] - P[t - w + 1];
        fut[t] += P[t + w + 1] - P[t + 1];
    }
}

static void finish_ratio(const double *past, const double *fut, double scale, int64_t tlo, int64_t thi, int64_t n,
                         float *ratio) {
    for (int64_t t = 0; t < n; t++) ratio[t] = 0.0f;
    for (int64_t t = tlo < 0 ? 0 : tlo; t < thi; t++) {
        double a = past[t] * scale, f = fut[t] * scale;
        double mx = a > f ? a : f, mn = a > f ? f : a;
        ratio[t] = (float)((mx + DHSA_EPS) / (mn + DHSA_EPS));
    }
}

/* The oracle's ratios for (b, query heads [q0, q1)) over the nk gaps: head-averaged causal softmax of
 * the query rows (their positions), rows with no qualifying gap skipped. Rows are summed in DHSA_PARTS
 * fixed parts (row batch gi goes to part gi % DHSA_PARTS), reduced in part order: deterministic. */
static ak_status oracle_ratios(const ak_dyn_in *in, const ak_dhsa_params *p, int64_t b, int32_t q0, int32_t q1,
                               float *ratio) {
    const int64_t nk = in->nk, nq = in->nq, off = (int64_t)in->nk - in->nq;
    const int32_t w = p->window;
    int64_t tlo, thi;
    gap_range(nk, w, p->smooth_ends, &tlo, &thi);
    double *acc = (double *)ak__alloc(in->ctx, sizeof(double) * 2 * DHSA_PARTS * (size_t)(nk + 1));
    if (!acc) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: oracle sums (%lld keys)", (long long)nk);
    memset(acc, 0, sizeof(double) * 2 * DHSA_PARTS * (size_t)(nk + 1));
    int64_t r_first = tlo + w - off < 0 ? 0 : tlo + w - off; /* first row with pos - w >= tlo */
    int64_t nrows = thi > tlo && nq > r_first ? nq - r_first : 0, ngr = (nrows + DHSA_ROWS - 1) / DHSA_ROWS;
    ak_status pst[DHSA_PARTS];
    int part;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic)
#endif
    for (part = 0; part < DHSA_PARTS; part++) {
        pst[part] = AK_OK;
        if (part >= ngr) continue;
        double *past = acc + (size_t)part * 2 * (size_t)(nk + 1), *fut = past + nk + 1;
        float *P = (float *)ak__alloc(in->ctx, sizeof(float) * DHSA_ROWS * (size_t)nk);
        double *A = (double *)ak__alloc(in->ctx, sizeof(double) * (DHSA_ROWS * (size_t)nk + (size_t)nk + 1));
        if (!P || !A) {
            pst[part] = AK_ERR_OUT_OF_MEMORY;
        } else {
            double *pre = A + DHSA_ROWS * (size_t)nk;
            int32_t rows[DHSA_ROWS];
            for (int64_t gi = part; gi < ngr && pst[part] == AK_OK; gi += DHSA_PARTS) {
                int64_t r0 = r_first + gi * DHSA_ROWS;
                int32_t n = (int32_t)(nq - r0 < DHSA_ROWS ? nq - r0 : DHSA_ROWS);
                for (int32_t i = 0; i < n; i++) rows[i] = (int32_t)(r0 + i);
                memset(A, 0, sizeof(double) * (size_t)n * (size_t)nk);
                for (int32_t h = q0; h < q1 && pst[part] == AK_OK; h++) {
                    pst[part] = ak__dyn_rows_probs(in, b, h, h / in->G, rows, n, 1, P);
                    for (size_t x = 0; x < (size_t)n * (size_t)nk; x++) A[x] += P[x];
                }
                for (int32_t i = 0; i < n && pst[part] == AK_OK; i++) {
                    int64_t pos = r0 + i + off, lim = pos + 1 < nk ? pos + 1 : nk;
                    const double *a = A + (size_t)i * (size_t)nk;
                    pre[0] = 0.0;
                    for (int64_t j = 0; j < lim; j++) pre[j + 1] = pre[j] + a[j];
                    label_row(pre, pos, w, tlo, thi, past, fut);
                }
            }
        }
        ak__free(in->ctx, P);
        ak__free(in->ctx, A);
    }
    ak_status st = AK_OK;
    for (part = 0; part < DHSA_PARTS; part++)
        if (pst[part] != AK_OK && st == AK_OK) st = pst[part];
    if (st == AK_OK) {
        double *past = acc, *fut = acc + nk + 1; /* part 0 accumulates the others, in part order */
        for (part = 1; part < DHSA_PARTS; part++) {
            const double *pp = acc + (size_t)part * 2 * (size_t)(nk + 1), *pf = pp + nk + 1;
            for (int64_t t = 0; t < nk; t++) {
                past[t] += pp[t];
                fut[t] += pf[t];
            }
        }
        finish_ratio(past, fut, 1.0 / (double)(q1 - q0), tlo, thi, nk, ratio);
    } else if (st == AK_ERR_OUT_OF_MEMORY) {
        st = ak__fail(in->ctx, st, "dhsa: oracle attention rows (%lld keys)", (long long)nk);
    }
    ak__free(in->ctx, acc);
    return st;
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* The reference's boundary selection (attnkit.h, ak_dhsa_select_boundaries) into out[n + 2]; *n_out
 * entries. Candidates in (ratio desc, index asc) order come from top-k selections of growing k (the
 * greedy pass restarts on a longer prefix of the same order only when NMS rejected too many). */
static ak_status select_bounds(const ak_ctx *ctx, const float *ratio, int32_t n, float theta, int32_t nms,
                               int64_t max_chunks, int32_t instr, int32_t *out, int32_t *n_out) {
    if (n <= 0) {
        out[0] = 0;
        *n_out = 1;
        return AK_OK;
    }
    int32_t f = instr > 0 && instr < n ? n - instr : -1;
    float *vals = (float *)ak__alloc(ctx, sizeof(float) * (size_t)n);
    int32_t *idx = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)n);
    uint8_t *blocked = (uint8_t *)ak__alloc(ctx, (size_t)n + 1);
    ak_status st = AK_OK;
    if (!vals || !idx || !blocked) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: boundary selection (%d gaps)", n);
        goto done;
    }
    int64_t cnt = 0;
    for (int32_t t = 0; t < n; t++) {
        int64_t bb = (int64_t)t + 1;
        int ok = ratio[t] > theta && bb < n && (f < 0 || bb < f);
        vals[t] = ok ? ratio[t] : NAN;
        cnt += ok;
    }
    int64_t k = 4 * max_chunks > 64 ? 4 * max_chunks : 64, ns = 0;
    if (k > cnt) k = cnt;
    for (;;) {
        memset(blocked, 0, (size_t)n + 1);
        ns = 0;
        if (f > 0) out[1 + ns++] = f;
        int64_t got = ak__dyn_topk_f(ctx, vals, n, k, 1, idx);
        if (got < 0) {
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: boundary selection (%d gaps)", n);
            goto done;
        }
        for (int64_t s = 0; s < ns && nms > 0; s++)
            for (int64_t x = out[1 + s] - nms; x <= out[1 + s] + nms; x++)
                if (x >= 0 && x <= n) blocked[x] = 1;
        for (int64_t u = 0; u < got && ns < max_chunks; u++) {
            int32_t bb = idx[u] + 1;
            if (nms > 0 && blocked[bb]) continue;
            out[1 + ns++] = bb;
            for (int64_t x = (int64_t)bb - nms; nms > 0 && x <= (int64_t)bb + nms; x++)
                if (x >= 0 && x <= n) blocked[x] = 1;
        }
        if (ns >= max_chunks || k >= cnt) break;
        k = 2 * k < cnt ? 2 * k : cnt;
    }
    qsort(out + 1, (size_t)ns, sizeof(int32_t), cmp_i32);
    out[0] = 0;
    out[1 + ns] = n;
    *n_out = (int32_t)ns + 2;
done:
    ak__free(ctx, vals);
    ak__free(ctx, idx);
    ak__free(ctx, blocked);
    return st;
}

/* The boundaries of (b, ph): *out (ak__alloc, n + 2 entries at least) holds 0 = b_0 < ... < b_C = nk,
 * *nb = C + 1 (1 when nk = 0). */
static ak_status make_bounds(const ak_dyn_in *in, const ak_dhsa_params *p, const dgeo *g, int64_t b, int32_t ph,
                             int32_t **out, int32_t *nb) {
    const int32_t nk = in->nk;
    int64_t cap = (int64_t)nk + 3;
    if (p->chunking == AK_DHSA_GIVEN && (int64_t)p->n_boundaries + 3 > cap) cap = (int64_t)p->n_boundaries + 3;
    int32_t *bnd = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)cap);
    *out = NULL;
    *nb = 0;
    if (!bnd) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: boundaries (%d keys)", nk);
    int32_t n = 0;
    ak_status st = AK_OK;
    bnd[n++] = 0;
    if (p->chunking == AK_DHSA_FIXED) {
        int64_t f = g->ninstr > 0 ? (int64_t)nk - g->ninstr : -1;
        for (int64_t x = p->chunk; x < nk; x += p->chunk) {
            if (f > bnd[n - 1] && f < x) bnd[n++] = (int32_t)f;
            bnd[n++] = (int32_t)x;
        }
        if (f > bnd[n - 1] && f < nk) bnd[n++] = (int32_t)f;
        if (nk > 0) bnd[n++] = nk;
    } else if (p->chunking == AK_DHSA_GIVEN) {
        for (int32_t i = 0; i < p->n_boundaries; i++)
            if (p->boundaries[i] > bnd[n - 1]) bnd[n++] = p->boundaries[i];
        if (bnd[n - 1] != nk) bnd[n++] = nk;
    } else {
        int32_t q0, q1, k0, k1;
        heads_of(in, p->per_kv_head, ph, &q0, &q1, &k0, &k1);
        float *ratio = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(nk > 0 ? nk : 1));
        if (!ratio) {
            st = ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: oracle ratios (%d keys)", nk);
        } else {
            st = oracle_ratios(in, p, b, q0, q1, ratio);
            int64_t maxc = (int64_t)(nk / p->block) * p->beta;
            if (st == AK_OK) st = select_bounds(in->ctx, ratio, nk, p->theta, p->nms, maxc, g->ninstr, bnd, &n);
        }
        ak__free(in->ctx, ratio);
    }
    if (st != AK_OK) {
        ak__free(in->ctx, bnd);
        return st;
    }
    *out = bnd;
    *nb = n;
    return AK_OK;
}

/* ---- representations and scores -------------------------------------------------------------- */

/* acc[c] = sum over heads [h0, h1) and rows [i0, i0 + n) of X[b][h][i][c] (double, fixed order). */
static void sum_rows(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int32_t h0, int32_t h1, int64_t i0, int64_t n,
                     double *acc) {
    float row[AK_MAX_HEAD_DIM];
    const int d = in->d;
    for (int c = 0; c < d; c++) acc[c] = 0.0;
    for (int32_t h = h0; h < h1; h++)
        for (int64_t i = 0; i < n; i++) {
            ak__dyn_rows(in, X, b, h, i0 + i, 1, d, row, d);
            for (int c = 0; c < d; c++) acc[c] += row[c];
        }
}

/* Qn[m][.] = sum_{i in B_m} qbar_i / sqrt|B_m|   (pad_dilution: * |B_m| / block) over the nqb sparse blocks. */
static void block_reprs(const ak_dyn_in *in, const ak_dhsa_params *p, const dgeo *g, int64_t b, int32_t q0, int32_t q1,
                        float *Qn) {
    const int d = in->d;
    int64_t m;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic, 4)
#endif
    for (m = 0; m < g->nqb; m++) {
        double acc[AK_MAX_HEAD_DIM];
        int64_t i0 = m * p->block, n = g->S - i0 < p->block ? g->S - i0 : p->block;
        sum_rows(in, &in->t->q, b, q0, q1, i0, n, acc);
        double f = 1.0 / sqrt((double)n);
        if (p->pad_dilution) f *= (double)n / (double)p->block;
        f /= (double)(q1 - q0);
        for (int c = 0; c < d; c++) Qn[m * d + c] = (float)(acc[c] * f);
    }
}

/* Kn[c][.] = sum_{j in C_c} kbar_j / sqrt|C_c|. */
static void chunk_reprs(const ak_dyn_in *in, int64_t b, int32_t k0, int32_t k1, const int32_t *bnd, int32_t nc, float *Kn) {
    const int d = in->d;
    int64_t c;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic, 16)
#endif
    for (c = 0; c < nc; c++) {
        double acc[AK_MAX_HEAD_DIM];
        int64_t n = bnd[c + 1] - bnd[c];
        sum_rows(in, &in->t->k, b, k0, k1, bnd[c], n, acc);
        double f = 1.0 / (sqrt((double)n) * (double)(k1 - k0));
        for (int e = 0; e < d; e++) Kn[c * d + e] = (float)(acc[e] * f);
    }
}

/* ---- per-block selection ----------------------------------------------------------------------- */

typedef struct citem { /* a candidate chunk, cut to the candidate range */
    float s;
    int32_t lo, n;
} citem;

typedef struct krun {
    int32_t lo, hi;
} krun;

static int cbetter(const citem *a, const citem *b) { /* score desc, then index asc */
    if (a->s != b->s) return a->s > b->s;
    return a->lo < b->lo;
}

static void cswap(citem *a, citem *b) {
    citem t = *a;
    *a = *b;
    *b = t;
}

/* Weighted quickselect: reorders it[0..n) so that it[0..*p) are the chunks taken whole and it[*p] the
 * chunk of which the lowest *part keys are taken; together the r best keys by (score desc, index asc)
 * (chunks are disjoint and contiguous, so chunk order = key order). Requires 1 <= r <= total keys.
 * Expected O(n); the pivots come from a fixed sequence (deterministic). */
static void wselect(citem *it, int64_t n, int64_t r, int64_t *p, int32_t *part) {
    int64_t lo = 0, hi = n, need = r;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (;;) {
        if (hi - lo == 1) {
            *p = lo;
            *part = (int32_t)need;
            return;
        }
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t pi = lo + (int64_t)((seed >> 33) % (uint64_t)(hi - lo));
        cswap(&it[pi], &it[hi - 1]);
        const citem piv = it[hi - 1];
        int64_t i = lo, w = 0;
        for (int64_t j = lo; j < hi - 1; j++)
            if (cbetter(&it[j], &piv)) {
                cswap(&it[i], &it[j]);
                w += it[i].n;
                i++;
            }
        cswap(&it[i], &it[hi - 1]);
        if (need <= w) {
            hi = i;
        } else if (need <= w + it[i].n) {
            *p = i;
            *part = (int32_t)(need - w);
            return;
        } else {
            need -= w + it[i].n;
            lo = i + 1;
        }
    }
}

static int cmp_run(const void *x, const void *y) {
    const krun *a = (const krun *)x, *b = (const krun *)y;
    return (a->lo > b->lo) - (a->lo < b->lo);
}

/* Sort runs by lo and merge overlapping or touching ones; returns the count. */
static int64_t merge_runs(krun *r, int64_t n) {
    if (n <= 1) return n;
    qsort(r, (size_t)n, sizeof *r, cmp_run);
    int64_t m = 0;
    for (int64_t t = 1; t < n; t++) {
        if (r[t].lo <= r[m].hi) {
            if (r[t].hi > r[m].hi) r[m].hi = r[t].hi;
        } else {
            r[++m] = r[t];
        }
    }
    return m + 1;
}

/* Largest c in [0, nc) with bnd[c] <= j. */
static int64_t chunk_of(const int32_t *bnd, int32_t nc, int64_t j) {
    int64_t lo = 0, hi = nc - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (bnd[mid] <= j) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

typedef struct bsel {
    const int32_t *bnd;
    int32_t nc;
    int64_t K, local, G;
    int overwrite;
} bsel;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The keys of a block whose allowed keys are [0, e), as sorted disjoint runs (runs: room for nc + 4);
 * s = its chunk scores. *gend = end of its global range, *lloc = start of its local range (for the
 * span / col decision). it: scratch of nc items. */
static int64_t block_keys(const bsel *x, const float *s, int64_t e, citem *it, krun *runs, int64_t *gend, int64_t *lloc) {
    *gend = 0;
    *lloc = e;
    if (e <= 0) return 0;
    int64_t l = min64(min64(x->local, x->K), e), lo_loc = e - l, g = min64(x->G, e);
    int64_t c0 = x->overwrite ? 0 : min64(g, lo_loc), c1 = lo_loc, take = min64(x->K - l, c1 - c0), n = 0;
    *lloc = lo_loc;
    if (l > 0) runs[n++] = (krun){(int32_t)lo_loc, (int32_t)e};
    if (take > 0 && take == c1 - c0) {
        runs[n++] = (krun){(int32_t)c0, (int32_t)c1};
    } else if (take > 0) {
        int64_t ca = chunk_of(x->bnd, x->nc, c0), cb = chunk_of(x->bnd, x->nc, c1 - 1), ni = 0, p;
        for (int64_t c = ca; c <= cb; c++) {
            int64_t a = x->bnd[c] > c0 ? x->bnd[c] : c0, z = x->bnd[c + 1] < c1 ? x->bnd[c + 1] : c1;
            float sc = s[c] != s[c] ? -INFINITY : s[c];
            it[ni++] = (citem){sc, (int32_t)a, (int32_t)(z - a)};
        }
        int32_t part;
        wselect(it, ni, take, &p, &part);
        for (int64_t t = 0; t < p; t++) runs[n++] = (krun){it[t].lo, it[t].lo + it[t].n};
        runs[n++] = (krun){it[p].lo, it[p].lo + part};
    }
    if (!x->overwrite) {
        if (g > 0) runs[n++] = (krun){0, (int32_t)g};
        *gend = g;
        return merge_runs(runs, n);
    }
    /* the reference: globals overwrite the lowest entries of the sorted list */
    n = merge_runs(runs, n);
    if (x->G >= x->K) {
        runs[0] = (krun){0, (int32_t)min64(x->K, e)};
        *gend = runs[0].hi;
        return 1;
    }
    int64_t drop = x->G, m = 0;
    for (int64_t t = 0; t < n; t++) {
        krun r = runs[t];
        if (drop > 0) {
            int64_t len = r.hi - r.lo;
            if (len <= drop) {
                drop -= len;
                continue;
            }
            r.lo += (int32_t)drop;
            drop = 0;
        }
        runs[m++] = r;
    }
    if (g > 0) runs[m++] = (krun){0, (int32_t)g};
    *gend = g;
    return merge_runs(runs, m);
}

/* ---- planning of one (sequence, plan head) ----------------------------------------------------- */

typedef struct orun { /* one lowered run of a block */
    int32_t qb, lo, hi, span;
} orun;

typedef struct gout { /* the runs of one group of query blocks */
    orun *r;
    int64_t n, cap;
    ak_status st;
} gout;

static int gout_push(const ak_ctx *ctx, gout *o, orun r) {
    if (o->n == o->cap) {
        int64_t nc = o->cap ? 2 * o->cap : 256;
        orun *nr = (orun *)ak__alloc(ctx, sizeof(orun) * (size_t)nc);
        if (!nr) return 0;
        if (o->n) memcpy(nr, o->r, sizeof(orun) * (size_t)o->n);
        ak__free(ctx, o->r);
        o->r = nr;
        o->cap = nc;
    }
    o->r[o->n++] = r;
    return 1;
}

/* Scores and selection of the query blocks of group grp into o; nkeys[m] = keys of block m. */
static void run_group(const ak_dyn_in *in, const ak_dhsa_params *p, const dgeo *g, const bsel *x, const float *Qn,
                      const float *Kn, int64_t grp, gout *o, int64_t *nkeys) {
    const int d = in->d;
    const int32_t nc = x->nc;
    int64_t m0 = grp * DHSA_GROUP, mb = min64(DHSA_GROUP, g->nqb - m0);
    float *S = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(mb * (nc > 0 ? nc : 1)));
    citem *it = (citem *)ak__alloc(in->ctx, sizeof(citem) * (size_t)(nc + 1));
    krun *runs = (krun *)ak__alloc(in->ctx, sizeof(krun) * (size_t)(nc + 4));
    o->st = AK_OK;
    if (!S || !it || !runs) {
        o->st = AK_ERR_OUT_OF_MEMORY;
        goto done;
    }
    if (nc > 0 && (o->st = ak__dyn_scores(in, (int)mb, nc, d, Qn + m0 * d, d, Kn, d, 1.0f, S, nc)) != AK_OK) goto done;
    for (int64_t m = m0; m < m0 + mb; m++) {
        int64_t rend = min64((m + 1) * p->block, g->S), e = min64(rend + g->off, in->nk), gend, lloc, cnt = 0;
        int64_t n = block_keys(x, S + (m - m0) * nc, e, it, runs, &gend, &lloc);
        for (int64_t t = 0; t < n; t++) {
            int span = runs[t].lo < gend || runs[t].hi > lloc || runs[t].hi - runs[t].lo >= p->span_min;
            if (!gout_push(in->ctx, o, (orun){(int32_t)m, runs[t].lo, runs[t].hi, span})) {
                o->st = AK_ERR_OUT_OF_MEMORY;
                goto done;
            }
            cnt += runs[t].hi - runs[t].lo;
        }
        nkeys[m] = cnt;
    }
done:
    ak__free(in->ctx, S);
    ak__free(in->ctx, it);
    ak__free(in->ctx, runs);
}

/* Chunk representations and block representations of (b, ph) for the chunks bnd[0..nb). Qn [nqb][d],
 * Kn [nc][d] allocated here (free with ak__free). */
static ak_status reprs(const ak_dyn_in *in, const ak_dhsa_params *p, const dgeo *g, int64_t b, int32_t ph,
                       const int32_t *bnd, int32_t nb, float **Qn, float **Kn) {
    int32_t q0, q1, k0, k1, nc = nb - 1;
    heads_of(in, p->per_kv_head, ph, &q0, &q1, &k0, &k1);
    *Qn = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)in->d * (size_t)(g->nqb + 1));
    *Kn = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)in->d * (size_t)(nc + 1));
    if (!*Qn || !*Kn) {
        ak__free(in->ctx, *Qn);
        ak__free(in->ctx, *Kn);
        *Qn = *Kn = NULL;
        return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: representations (%d blocks, %d chunks)", g->nqb, nc);
    }
    block_reprs(in, p, g, b, q0, q1, *Qn);
    chunk_reprs(in, b, k0, k1, bnd, nc, *Kn);
    return AK_OK;
}

static const char *chunking_name(int32_t c) {
    return c == AK_DHSA_FIXED ? "fixed" : c == AK_DHSA_GIVEN ? "given" : "oracle";
}

/* Estimate and lower (b, ph) into the builder; *all_dense = no block of it is sparse. */
static ak_status plan_head(const ak_dyn_in *in, const ak_dhsa_params *p, const dgeo *g, int64_t b, int32_t ph,
                           ak_sparse_builder *bld, ak_dyn_info *info, int *all_dense) {
    int32_t *bnd = NULL, nb = 0;
    float *Qn = NULL, *Kn = NULL;
    gout *go = NULL;
    int64_t *nkeys = NULL, ng = ((int64_t)g->nqb + DHSA_GROUP - 1) / DHSA_GROUP;
    ak_status st = make_bounds(in, p, g, b, ph, &bnd, &nb);
    if (st == AK_OK) st = reprs(in, p, g, b, ph, bnd, nb, &Qn, &Kn);
    if (st != AK_OK) goto done;
    go = (gout *)ak__alloc(in->ctx, sizeof(gout) * (size_t)(ng + 1));
    nkeys = (int64_t *)ak__alloc(in->ctx, sizeof(int64_t) * (size_t)(g->nqb + 1));
    if (!go || !nkeys) {
        st = ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: %d query blocks", g->nqb);
        goto done;
    }
    memset(go, 0, sizeof(gout) * (size_t)(ng + 1));
    bsel x = {bnd, nb - 1, min64(p->budget, in->nk), p->local, p->global_tokens, p->global_overwrite};
    int64_t grp;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads) schedule(dynamic)
#endif
    for (grp = 0; grp < ng; grp++) run_group(in, p, g, &x, Qn, Kn, grp, &go[grp], nkeys);
    for (grp = 0; grp < ng && st == AK_OK; grp++)
        if (go[grp].st != AK_OK)
            st = go[grp].st == AK_ERR_OUT_OF_MEMORY ? ak__fail(in->ctx, go[grp].st, "dhsa: selection of %d query blocks", g->nqb)
                                                    : go[grp].st;
    /* lowering, group by group in order (the builder is not thread-safe) */
    for (grp = 0; grp < ng && st == AK_OK; grp++)
        for (int64_t u = 0; u < go[grp].n && st == AK_OK; u++) {
            const orun *r = &go[grp].r[u];
            if (r->span) st = ak_sparse_builder_add_span(bld, (int32_t)b, ph, r->qb, r->lo, r->hi);
            else
                for (int32_t j = r->lo; j < r->hi && st == AK_OK; j++) st = ak_sparse_builder_add_col(bld, (int32_t)b, ph, r->qb, j);
        }
    for (int32_t q = 0; q < g->nib && st == AK_OK; q++)
        st = ak_sparse_builder_add_span(bld, (int32_t)b, ph, g->nqb + q, 0, in->nk);
    if (st != AK_OK) goto done;
    /* the explain line */
    int64_t nsparse = 0, ndense = 0, kmin = INT64_MAX, kmax = 0;
    double ksum = 0.0;
    for (int64_t m = 0; m < g->nqb; m++) {
        int64_t e = min64(min64((m + 1) * p->block, g->S) + g->off, in->nk);
        if (e <= 0) continue;
        if (nkeys[m] >= e) {
            ndense++;
            continue;
        }
        nsparse++;
        ksum += (double)nkeys[m];
        kmin = nkeys[m] < kmin ? nkeys[m] : kmin;
        kmax = nkeys[m] > kmax ? nkeys[m] : kmax;
    }
    *all_dense = nsparse == 0;
    ak__dyn_explain(info, "b%lld h%d: %d chunks (%s), %d query blocks: %lld sparse (keys mean %.0f, min %lld, max %lld), "
                    "%lld dense (budget >= allowed); %d instruction rows dense\n",
                    (long long)b, ph, nb - 1, chunking_name(p->chunking), g->nqb, (long long)nsparse,
                    nsparse ? ksum / (double)nsparse : 0.0, (long long)(nsparse ? kmin : 0), (long long)kmax,
                    (long long)ndense, g->ninstr);
done:
    if (go)
        for (grp = 0; grp < ng; grp++) ak__free(in->ctx, go[grp].r);
    ak__free(in->ctx, go);
    ak__free(in->ctx, nkeys);
    ak__free(in->ctx, Qn);
    ak__free(in->ctx, Kn);
    ak__free(in->ctx, bnd);
    return st;
}

/* The builder with the plan's geometry, and in gather mode the rows of every list. */
static ak_status make_builder(const ak_dyn_in *in, const ak_dhsa_params *p, const dgeo *g, ak_sparse_builder **bld) {
    ak_sparse_desc geom;
    ak_sparse_desc_init(&geom);
    geom.n_batch = in->B;
    geom.n_heads = g->nph;
    geom.nq = in->nq;
    geom.nk = in->nk;
    geom.causal = 1;
    geom.block_q = p->block;
    geom.n_qblocks = g->fixed ? 0 : g->nqb + g->nib;
    ak_status st = ak_sparse_builder_create(in->ctx, &geom, bld);
    if (st != AK_OK || g->fixed) return st;
    for (int32_t b = 0; b < in->B && st == AK_OK; b++)
        for (int32_t h = 0; h < g->nph && st == AK_OK; h++) {
            for (int32_t i = 0; i < g->S && st == AK_OK; i++) st = ak_sparse_builder_add_row(*bld, b, h, i / p->block, i);
            for (int32_t i = g->S; i < in->nq && st == AK_OK; i++)
                st = ak_sparse_builder_add_row(*bld, b, h, g->nqb + (i - g->S) / p->block, i);
        }
    return st;
}

ak_status ak_dhsa_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dhsa_params *params,
                       ak_sparse **out, ak_dyn_info *info) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (info) {
        memset(info, 0, sizeof *info);
        info->size = sizeof *info;
    }
    if (!out) {
        ak__clear_error(ctx);
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "dhsa: out is NULL");
    }
    ak_dhsa_params dflt;
    if (!params) {
        ak_dhsa_params_init(&dflt);
        params = &dflt;
    }
    ak_dyn_in in;
    dgeo g;
    ak_status st = setup(ctx, desc, t, params, &in, &g);
    if (st != AK_OK) return st;
    ak_sparse_builder *bld = NULL;
    st = make_builder(&in, params, &g, &bld);
    int n_dense = 0;
    for (int32_t b = 0; b < in.B && st == AK_OK; b++)
        for (int32_t h = 0; h < g.nph && st == AK_OK; h++) {
            int all_dense = 0;
            st = plan_head(&in, params, &g, b, h, bld, info, &all_dense);
            n_dense += all_dense;
        }
    if (st == AK_OK) {
        char chunks[32], name[256];
        if (params->chunking == AK_DHSA_FIXED) snprintf(chunks, sizeof chunks, "fixed:%d", params->chunk);
        else snprintf(chunks, sizeof chunks, "%s", chunking_name(params->chunking));
        snprintf(name, sizeof name, "dhsa(block=%d,budget=%d,local=%d,global=%d,instr=%d,%s%s%s)", params->block,
                 params->budget, params->local, params->global_tokens, params->instruction_tokens, chunks,
                 params->per_kv_head ? ",per_kv_head" : "", params->global_overwrite ? ",overwrite" : "");
        st = ak__sparse_finish_named(bld, name, out);
    }
    ak_sparse_builder_destroy(bld);
    if (st == AK_OK && info) {
        ak__dyn_info_finish(&in, *out, info);
        info->n_dense_heads = n_dense;
    }
    ak__dyn_end(&in);
    return st;
}

/* ---- the public pieces ------------------------------------------------------------------------- */

static ak_status check_bh(const ak_dyn_in *in, const dgeo *g, int32_t batch, int32_t head) {
    if (batch < 0 || batch >= in->B)
        return ak__fail(in->ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: batch = %d outside [0, %d)", batch, in->B);
    if (head < 0 || head >= g->nph)
        return ak__fail(in->ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: head = %d outside [0, %d) (plan heads)", head, g->nph);
    return AK_OK;
}

ak_status ak_dhsa_boundaries(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                             const ak_dhsa_params *params, int32_t batch, int32_t head, int32_t *boundaries,
                             int32_t cap, int32_t *n_boundaries) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak_dhsa_params dflt;
    if (!params) {
        ak_dhsa_params_init(&dflt);
        params = &dflt;
    }
    ak_dyn_in in;
    dgeo g;
    ak_status st = setup(ctx, desc, t, params, &in, &g);
    if (st != AK_OK) return st;
    int32_t *bnd = NULL, nb = 0;
    if (!boundaries || !n_boundaries) st = ak__fail(ctx, AK_ERR_NULL_POINTER, "dhsa: boundaries or n_boundaries is NULL");
    else st = check_bh(&in, &g, batch, head);
    if (st == AK_OK) st = make_bounds(&in, params, &g, batch, head, &bnd, &nb);
    if (st == AK_OK) {
        *n_boundaries = nb;
        if (nb > cap) st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: cap = %d, the boundaries need %d entries", cap, nb);
        else memcpy(boundaries, bnd, sizeof(int32_t) * (size_t)nb);
    }
    ak__free(ctx, bnd);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_dhsa_scores(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dhsa_params *params,
                         int32_t batch, int32_t head, const int32_t *boundaries, int32_t n, float *scores) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak_dhsa_params dflt;
    if (!params) {
        ak_dhsa_params_init(&dflt);
        params = &dflt;
    }
    ak_dyn_in in;
    dgeo g;
    ak_status st = setup(ctx, desc, t, params, &in, &g);
    if (st != AK_OK) return st;
    if (!boundaries || !scores) st = ak__fail(ctx, AK_ERR_NULL_POINTER, "dhsa: boundaries or scores is NULL");
    else st = check_bh(&in, &g, batch, head);
    if (st == AK_OK && (n < 2 || boundaries[0] != 0 || boundaries[n - 1] != in.nk))
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: boundaries must run from 0 to nk = %d (n = %d >= 2 entries)", in.nk, n);
    for (int32_t i = 1; i < n && st == AK_OK; i++)
        if (boundaries[i] <= boundaries[i - 1])
            st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: boundaries[%d] = %d <= boundaries[%d] = %d (must increase)", i,
                          boundaries[i], i - 1, boundaries[i - 1]);
    float *Qn = NULL, *Kn = NULL;
    if (st == AK_OK) st = reprs(&in, params, &g, batch, head, boundaries, n, &Qn, &Kn);
    if (st == AK_OK && g.nqb > 0) st = ak__dyn_scores(&in, g.nqb, n - 1, in.d, Qn, in.d, Kn, in.d, 1.0f, scores, n - 1);
    ak__free(ctx, Qn);
    ak__free(ctx, Kn);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_dhsa_label_ratios(ak_ctx *ctx, const float *attn, int32_t n, int64_t ld, int32_t window, int32_t smooth_ends,
                               float *ratio) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (n < 0) return bad_int(ctx, "n", n, "must be >= 0");
    if (n == 0) return AK_OK;
    if (!attn || !ratio) return ak__fail(ctx, AK_ERR_NULL_POINTER, "dhsa: attn or ratio is NULL");
    if (ld < n) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: ld = %lld, must be >= n = %d", (long long)ld, n);
    if (window < 1) return bad_int(ctx, "window", window, "must be >= 1");
    if (smooth_ends != 0 && smooth_ends != 1) return bad_int(ctx, "smooth_ends", smooth_ends, "must be 0 or 1");
    double *buf = (double *)ak__alloc(ctx, sizeof(double) * (3 * (size_t)n + 2));
    if (!buf) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: label ratios (n = %d)", n);
    double *past = buf, *fut = buf + n, *pre = buf + 2 * (size_t)n;
    memset(buf, 0, sizeof(double) * 2 * (size_t)n);
    int64_t tlo, thi;
    gap_range(n, window, smooth_ends, &tlo, &thi);
    for (int64_t i = 0; i < n && thi > tlo; i++) {
        if (i - window < tlo) continue;
        const float *a = attn + i * ld;
        pre[0] = 0.0;
        for (int64_t j = 0; j <= i; j++) pre[j + 1] = pre[j] + a[j];
        label_row(pre, i, window, tlo, thi, past, fut);
    }
    finish_ratio(past, fut, 1.0, tlo, thi, n, ratio);
    ak__free(ctx, buf);
    return AK_OK;
}

ak_status ak_dhsa_select_boundaries(ak_ctx *ctx, const float *ratio, int32_t n, float theta, int32_t nms,
                                    int32_t max_chunks, int32_t instruction_tokens, int32_t *boundaries, int32_t cap,
                                    int32_t *n_boundaries) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!boundaries || !n_boundaries || (n > 0 && !ratio))
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "dhsa: ratio, boundaries or n_boundaries is NULL");
    if (n < 0) return bad_int(ctx, "n", n, "must be >= 0");
    if (!(theta >= 0.0f) || isinf(theta))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: theta = %g, must be finite and >= 0", (double)theta);
    if (nms < 0) return bad_int(ctx, "nms", nms, "must be >= 0");
    if (max_chunks < 0) return bad_int(ctx, "max_chunks", max_chunks, "must be >= 0");
    if (instruction_tokens < 0) return bad_int(ctx, "instruction_tokens", instruction_tokens, "must be >= 0");
    int32_t *tmp = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * ((size_t)n + 3)), nb = 0;
    if (!tmp) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "dhsa: boundaries (n = %d)", n);
    ak_status st = select_bounds(ctx, ratio, n, theta, nms, max_chunks, instruction_tokens, tmp, &nb);
    if (st == AK_OK) {
        *n_boundaries = nb;
        if (nb > cap) st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dhsa: cap = %d, the boundaries need %d entries", cap, nb);
        else memcpy(boundaries, tmp, sizeof(int32_t) * (size_t)nb);
    }
    ak__free(ctx, tmp);
    return st;
}
