/*
 * test_dyn_mminference.c — the MMInference planner (ak_mminference_plan; spec dynamic-sparse.md §4.7).
 *
 * Groups (`test_dyn_mminference <group>`, no argument = all):
 *   dense     budgets at their maximum (VS v = s = nk, A-shape n_local >= nk, grid stride 1, every boundary
 *             type, GQA, nq != nk, decode): every head's mask is the causal mask and the executor's output
 *             equals ak_attention_ref (dense causal)
 *   select    the selection rules against this file's plain double-precision re-implementation of the
 *             header's rules (groups, estimation rows, VS top-k, A-shape, grid search with column and row
 *             profiles, fallbacks, 2D parts), mask for mask, on odd sizes (1 .. 1023, nq < nk, nq > nk),
 *             block sizes that do not divide the length, GQA 1 / 3 / 4; cases where a top-k or the stride
 *             score is within rounding of a tie are skipped (counted); list sizes <= block
 *   grid      synthetic grids: keys on (j - phase) % stride == 0 made heavy (vertical lines), and query rows
 *             on such positions made broad (horizontal lines): the search recovers (stride, phase); strides
 *             list; no grid -> VS fallback; too short -> no candidate
 *   perm      permutation invariance: a grid plan whose grid rows sit in their own gather lists vs the same
 *             active set in original order (one list per row): identical masks, executor outputs equal, both
 *             against ak_attention_ref_sparse; lists hold only grid rows or only other rows
 *   boundary  Q-boundary with a single modality == the inner pattern alone (and K-boundary == none);
 *             2D-boundary: mask == the union of this file's per-pair masks, executor output == a masked
 *             dense softmax (double, this file) with that union mask
 *   recall    planted structure (vertical grid lines + local, horizontal lines + local, vertical-slash,
 *             mixed text / video with Q-boundary): attention-mass recall >= 0.99 (double dense softmax here)
 *   exec      executor vs ak_attention_ref_sparse on several plans (f32 and bf16 inputs), outputs
 *             NaN-poisoned first
 *   threads   the plan (ak_sparse_to_json) is identical for 1, 2 and 3 threads
 *   invalid   every invalid parameter: AK_ERR_INVALID_ARGUMENT (or the right status), a message naming it,
 *             *out NULL
 *   named     ak_dyn_plan_named("mminference:key=value,...") gives the plan of the same C parameters; bad keys
 *             and values are refused
 *
 * AK_MMI_QUICK=1 (sanitizer builds) runs fewer and smaller cases; AK_MMI_VERBOSE=1 prints per case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

static int g_quick, g_verbose, g_skipped;

/* ak_dyn_plan_named lives in src/dynamic/named.c, which the single-method development builds
 * (build-mminference*) leave out: referenced weakly, the "named" group is skipped there. */
#if defined(__GNUC__)
#pragma weak ak_dyn_plan_named
#endif

/* ---- problems: contiguous f32 Q [B][Hq][nq][d], K, V [B][Hkv][nk][d] ---- */

typedef struct tcase {
    int B, Hq, Hkv, nq, nk, d;
    float *q, *k, *v;
    ak_attn_desc desc;
    ak_attn_tensors t;
} tcase;

static void tcase_init(tcase *c, int B, int Hq, int Hkv, int nq, int nk, int d) {
    memset(c, 0, sizeof *c);
    c->B = B, c->Hq = Hq, c->Hkv = Hkv, c->nq = nq, c->nk = nk, c->d = d;
    size_t nqe = (size_t)B * Hq * nq * d + 1, nke = (size_t)B * Hkv * nk * d + 1;
    c->q = (float *)calloc(nqe, sizeof(float));
    c->k = (float *)calloc(nke, sizeof(float));
    c->v = (float *)calloc(nke, sizeof(float));
    ak_attn_desc_init(&c->desc);
    c->desc.batch = B;
    c->desc.num_heads_q = Hq;
    c->desc.num_heads_kv = Hkv;
    c->desc.seqlen_q = nq;
    c->desc.seqlen_k = nk;
    c->desc.head_dim = d;
    c->desc.causal = 1;
    ak_attn_tensors_init(&c->t);
    c->t.q = ak_tensor_4d(c->q, AK_F32, B, Hq, nq, d);
    c->t.k = ak_tensor_4d(c->k, AK_F32, B, Hkv, nk, d);
    c->t.v = ak_tensor_4d(c->v, AK_F32, B, Hkv, nk, d);
}

static void tcase_free(tcase *c) {
    free(c->q), free(c->k), free(c->v);
    memset(c, 0, sizeof *c);
}

static float *QR(const tcase *c, int b, int h, int i) { return c->q + (((size_t)b * c->Hq + h) * c->nq + i) * c->d; }
static float *KR(const tcase *c, int b, int h, int j) { return c->k + (((size_t)b * c->Hkv + h) * c->nk + j) * c->d; }
static float *VR(const tcase *c, int b, int h, int j) { return c->v + (((size_t)b * c->Hkv + h) * c->nk + j) * c->d; }

static void tcase_random(tcase *c, rng *r, double amp) {
    for (size_t x = 0; x < (size_t)c->B * c->Hq * c->nq * c->d; x++) c->q[x] = (float)rng_range(r, -amp, amp);
    for (size_t x = 0; x < (size_t)c->B * c->Hkv * c->nk * c->d; x++) {
        c->k[x] = (float)rng_range(r, -amp, amp);
        c->v[x] = (float)rng_range(r, -1, 1);
    }
}

static double gauss(rng *r) {
    double u = rng_unif(r), v = rng_unif(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* ---- this file's reference of the selection rules (double precision, written from attnkit.h) ---- */

static double rdot(const tcase *c, int b, int h, int i, int j) {
    const float *q = QR(c, b, h, i), *k = KR(c, b, h / (c->Hq / c->Hkv), j);
    double s = 0.0;
    for (int x = 0; x < c->d; x++) s += (double)q[x] * (double)k[x];
    return s / sqrt((double)c->d);
}

static int rmod(const ak_mminference_params *p, int pos) { return p->modality ? p->modality[pos] : 0; }
static int rin(const ak_mminference_params *p, int kb, int j) { return kb < 0 || rmod(p, j) == kb; }

/* P[r][j]: causal softmax over all keys of query rows rows[r]. */
static void ref_probs(const tcase *c, int b, int h, const int *rows, int L, double *P) {
    for (int r = 0; r < L; r++) {
        int pos = rows[r] + c->nk - c->nq;
        double *x = P + (size_t)r * c->nk, mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < c->nk; j++) {
            x[j] = j <= pos ? rdot(c, b, h, rows[r], j) : -INFINITY;
            if (x[j] > mx) mx = x[j];
        }
        for (int j = 0; j < c->nk; j++) {
            x[j] = j <= pos ? exp(x[j] - mx) : 0.0;
            sum += x[j];
        }
        for (int j = 0; j < c->nk; j++) x[j] /= sum;
    }
}

/* sel[i] = 1 for the k largest x (ties -> lower index); *amb = 1 when the k-th and (k+1)-th values are
 * within rounding of each other (the library's f32 estimate may then pick the other one). */
static const double *g_topk_x;
static int cmp_topk(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_topk_x[i] != g_topk_x[j]) return g_topk_x[i] > g_topk_x[j] ? -1 : 1;
    return i - j;
}
static void ref_topk(const double *x, int n, int k, uint8_t *sel, int *amb) {
    int *ix = (int *)malloc(sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) ix[i] = i, sel[i] = 0;
    g_topk_x = x;
    qsort(ix, (size_t)n, sizeof(int), cmp_topk);
    for (int t = 0; t < k && t < n; t++) sel[ix[t]] = 1;
    if (k > 0 && k < n) {
        double a = x[ix[k - 1]], z = x[ix[k]];
        if (isfinite(a) && isfinite(z) && (a != z || a != 0.0) && fabs(a - z) <= 1e-4 * fabs(a) + 1e-12) *amb = 1;
    }
    free(ix);
}

typedef struct rgrid {
    int found, s, ph;
    double score;
} rgrid;

/* One folded profile value set: positions pos[0..n), values x. */
static void ref_fold(const int *pos, const double *x, int n, int s, int cap, double *ex, int *cnt) {
    double T = 0.0, tc = 0.0;
    for (int k = 0; k < n; k++) T += x[k];
    for (int r = 0; r < s; r++) ex[r] = 0.0, cnt[r] = 0;
    for (int k = 0; k < n; k++) {
        double cv = T * s / n, v = cap && x[k] > cv ? cv : x[k];
        ex[pos[k] % s] += v;
        cnt[pos[k] % s]++;
        tc += v;
    }
    for (int r = 0; r < s; r++) ex[r] = tc > 0.0 ? ex[r] / tc - (double)cnt[r] / n : 0.0;
}

/* The stride search of a grid part (rows: the group's rows; er: its estimation rows, P their probabilities). */
static rgrid ref_grid(const tcase *c, const ak_mminference_params *p, int b, int h, const int *rows, int n,
                      const int *er, int L, const double *P, int kb, int *amb) {
    rgrid best = {0, 0, 0, 0.0};
    const int off = c->nk - c->nq, plast = er[L - 1] + off, vhi = plast - p->n_local;
    int *pv = (int *)malloc(sizeof(int) * (size_t)(c->nk + 1)), *ph = (int *)malloc(sizeof(int) * (size_t)(n + 1));
    double *xv = (double *)malloc(sizeof(double) * (size_t)(c->nk + 1)),
           *xh = (double *)malloc(sizeof(double) * (size_t)(n + 1));
    int nv = 0, nh = 0;
    for (int j = p->n_sink; j <= vhi; j++) {
        if (!rin(p, kb, j)) continue;
        double m = 0.0;
        for (int r = 0; r < L; r++)
            if (j <= er[r] + off - p->n_local) m += P[(size_t)r * c->nk + j];
        pv[nv] = j, xv[nv++] = m;
    }
    if (nv > 0 && p->row_probe > 0) {
        int np = nv < p->row_probe ? nv : p->row_probe;
        int *probe = (int *)malloc(sizeof(int) * (size_t)np);
        for (int t = 0; t < np; t++) probe[t] = pv[(int)((t + 0.5) * nv / np)];
        for (int i = 0; i < n; i++) {
            int pos = rows[i] + off, lim = pos - p->n_local, nvis = 0,
                l0 = pos - p->row_ref + 1 < 0 ? 0 : pos - p->row_ref + 1;
            double mx = -INFINITY;
            for (int t = 0; t < np; t++)
                if (probe[t] <= lim) nvis++, mx = fmax(mx, rdot(c, b, h, rows[i], probe[t]));
            if (!nvis) continue;
            for (int j = l0; j <= pos; j++) mx = fmax(mx, rdot(c, b, h, rows[i], j));
            double fs = 0.0, ls = 0.0;
            for (int t = 0; t < np; t++)
                if (probe[t] <= lim) fs += exp(rdot(c, b, h, rows[i], probe[t]) - mx);
            for (int j = l0; j <= pos; j++) ls += exp(rdot(c, b, h, rows[i], j) - mx);
            int nfar = 0;
            for (int j = p->n_sink; j <= lim; j++) nfar += rin(p, kb, j);
            double far = nfar * fs / nvis;
            ph[nh] = pos, xh[nh++] = far / (far + ls);
        }
        free(probe);
    }
    int ncand = p->strides ? p->n_strides : p->stride_max - p->stride_min + 1, smax = 1;
    for (int ci = 0; ci < ncand; ci++) {
        int s = p->strides ? p->strides[ci] : p->stride_min + ci;
        if (s > smax && s <= c->nk) smax = s;
    }
    double *ev = (double *)malloc(sizeof(double) * smax * 2), *eh = ev + smax;
    int *cv = (int *)malloc(sizeof(int) * smax * 2), *ch = cv + smax;
    double second = -INFINITY;
    for (int ci = 0; nv > 0 && ci < ncand; ci++) {
        int s = p->strides ? p->strides[ci] : p->stride_min + ci;
        if (s > c->nk) continue;
        ref_fold(pv, xv, nv, s, p->grid_cap, ev, cv);
        ref_fold(ph, xh, nh, s, p->grid_cap, eh, ch);
        for (int r = 0; r < s; r++) {
            if (cv[r] < p->grid_min_lines || (nh > 0 && ch[r] < p->grid_min_lines)) continue;
            double sc = ev[r] + (nh > 0 ? p->row_weight * eh[r] : 0.0);
            int better =
                !best.found || sc > best.score || (sc == best.score && (s < best.s || (s == best.s && r < best.ph)));
            if (better) {
                if (best.found) second = fmax(second, best.score);
                best.found = 1, best.s = s, best.ph = r, best.score = sc;
            } else {
                second = fmax(second, sc);
            }
        }
    }
    if (best.found && (best.score - second < 2e-5 || fabs(best.score - p->grid_min_score) < 2e-5)) *amb = 1;
    free(pv), free(ph), free(xv), free(xh), free(ev), free(cv);
    return best;
}

/* VS of a part: marks, for every row of the group, its vertical and slash keys in mask. */
static void ref_vs(const tcase *c, const ak_mminference_params *p, int slot, const int *rows, int n, const int *er,
                   int L, const double *P, int kb, uint8_t *mask, int *amb) {
    const int off = c->nk - c->nq, plast = er[L - 1] + off, m = plast + 1;
    double *vs = (double *)calloc((size_t)m * 2, sizeof(double)), *ss = vs + m;
    uint8_t *V = (uint8_t *)malloc((size_t)m * 2), *S = V + m;
    int ncand = 0;
    for (int j = 0; j < m; j++) {
        ncand += rin(p, kb, j);
        if (!rin(p, kb, j)) {
            vs[j] = -INFINITY;
            continue;
        }
        for (int r = 0; r < L; r++)
            if (j <= er[r] + off) vs[j] += P[(size_t)r * c->nk + j], ss[er[r] + off - j] += P[(size_t)r * c->nk + j];
    }
    for (int j = 0; j < m && j < p->forced_v; j++)
        if (rin(p, kb, j)) vs[j] = INFINITY;
    for (int t = 0; t < m && t < p->forced_s; t++) ss[t] = INFINITY;
    ss[0] = INFINITY;
    ref_topk(vs, m, ncand < p->vertical_size[slot] ? ncand : p->vertical_size[slot], V, amb);
    ref_topk(ss, m, m < p->slash_size[slot] ? m : p->slash_size[slot], S, amb);
    for (int k = 0; k < n; k++) {
        int pos = rows[k] + off;
        for (int j = 0; j <= pos; j++)
            if (V[j] || S[pos - j]) mask[(size_t)rows[k] * c->nk + j] = 1;
    }
    free(vs), free(V);
}

/* The expected mask of (b, h) ([nq][nk]); *amb = 1 when a selection is within rounding of a tie; the
 * scores of the searched grid parts, in order, into scores (may be NULL). */
static void ref_mask(const tcase *c, const ak_mminference_params *p, int b, int h, uint8_t *mask, int *amb,
                     double *scores, int *nscores) {
    const int nq = c->nq, nk = c->nk, off = nk - nq, M = p->n_modalities;
    memset(mask, 0, (size_t)nq * nk);
    if (nq == 1) {
        for (int j = 0; j <= off && j < nk; j++) mask[j] = 1;
        return;
    }
    const int by_mod = p->boundary == AK_MMI_Q_BOUNDARY || p->boundary == AK_MMI_2D_BOUNDARY;
    int *rows = (int *)malloc(sizeof(int) * (size_t)(nq + 1));
    for (int a = 0; a < (by_mod ? M : 1); a++) {
        int n = 0;
        for (int i = 0; i < nq; i++)
            if (i + off >= 0 && (!by_mod || rmod(p, i + off) == a)) rows[n++] = i;
        if (!n) continue;
        int L = n < p->last_q ? n : p->last_q, plast = rows[n - 1] + off;
        const int *er = rows + n - L;
        double *P = (double *)malloc(sizeof(double) * (size_t)L * nk);
        ref_probs(c, b, h, er, L, P);
        for (int kb = (p->boundary == AK_MMI_2D_BOUNDARY ? 0 : -1); kb < (p->boundary == AK_MMI_2D_BOUNDARY ? M : 0);
             kb++) {
            int any = 0;
            for (int j = 0; j <= plast; j++) any |= rin(p, kb, j);
            if (!any) continue;
            int pat = p->pattern[a];
            if (kb >= 0 && p->pair_pattern && p->pair_pattern[a * M + kb] >= 0) pat = p->pair_pattern[a * M + kb];
            rgrid g = {1, p->stride, p->phase, 0.0};
            if (pat == AK_MMI_GRID && p->stride == 0) {
                g = ref_grid(c, p, b, h, rows, n, er, L, P, kb, amb);
                if (g.found && scores) scores[(*nscores)++] = g.score;
                if (!g.found || g.score < p->grid_min_score) pat = AK_MMI_VS;
            }
            if (pat == AK_MMI_VS) {
                ref_vs(c, p, a, rows, n, er, L, P, kb, mask, amb);
                continue;
            }
            for (int k = 0; k < n; k++) {
                int pos = rows[k] + off;
                for (int j = 0; j <= pos; j++) {
                    int on = pos - j < p->n_local || (rin(p, kb, j) && j < p->n_sink);
                    if (pat == AK_MMI_GRID)
                        on |= rin(p, kb, j) && (j % g.s == g.ph || (p->grid_rows && pos % g.s == g.ph));
                    if (on) mask[(size_t)rows[k] * nk + j] = 1;
                }
            }
        }
        free(P);
    }
    free(rows);
}

/* ---- plans, masks, the executor ---- */

static ak_sparse *make_plan(ak_ctx *ctx, const tcase *c, const ak_mminference_params *p, ak_dyn_info *info,
                            const char *tag) {
    ak_sparse *sp = NULL;
    ak_status st = ak_mminference_plan(ctx, &c->desc, &c->t, p, &sp, info);
    CHECK(st == AK_OK && sp, "%s: ak_mminference_plan: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
    return sp;
}

static uint8_t *plan_mask(const ak_sparse *sp, int b, int h, int nq, int nk) {
    uint8_t *m = (uint8_t *)malloc((size_t)nq * nk + 1);
    ak_status st = ak_sparse_mask(sp, b, h, m);
    CHECK(st == AK_OK, "ak_sparse_mask(%d, %d): %s", b, h, ak_status_string(st));
    return m;
}

/* First difference of two masks, or -1. */
static long mask_diff(const uint8_t *a, const uint8_t *b, int nq, int nk) {
    for (long x = 0; x < (long)nq * nk; x++)
        if (a[x] != b[x]) return x;
    return -1;
}

static void poison_f(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}
static void poison_d(double *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* Executor run of (c, sp) into o [B][Hq][nq][d] and lse, NaN-poisoned first. 1 on success. */
static int run_exec(ak_ctx *ctx, const tcase *c, const ak_attn_tensors *tin, const ak_sparse *sp, float *o,
                    float *lse) {
    size_t nr = (size_t)c->B * c->Hq * c->nq;
    poison_f(o, nr * c->d + 1);
    poison_f(lse, nr + 1);
    ak_attn_desc d = c->desc;
    d.return_lse = 1;
    d.dtype_q = tin->q.dtype;
    d.dtype_kv = tin->k.dtype;
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create_sparse(ctx, &d, sp, &pl);
    CHECK(st == AK_OK, "ak_plan_create_sparse: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    if (st != AK_OK) return 0;
    ak_attn_tensors t = *tin;
    t.o = ak_tensor_4d(o, AK_F32, c->B, c->Hq, c->nq, c->d);
    t.lse = ak_tensor_3d(lse, AK_F32, c->B, c->Hq, c->nq);
    st = ak_attention_run(pl, &t, NULL, 0);
    CHECK(st == AK_OK, "ak_attention_run: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    ak_plan_destroy(pl);
    return st == AK_OK;
}

/* ak_attention_ref_sparse (sp) or ak_attention_ref (sp NULL: dense) with f64 outputs, NaN-poisoned first. */
static int run_ref(ak_ctx *ctx, const tcase *c, const ak_attn_tensors *tin, const ak_sparse *sp, double *o,
                   double *lse) {
    size_t nr = (size_t)c->B * c->Hq * c->nq;
    poison_d(o, nr * c->d + 1);
    poison_d(lse, nr + 1);
    ak_attn_desc d = c->desc;
    d.return_lse = 1;
    d.dtype_o = AK_F64;
    d.dtype_q = tin->q.dtype;
    d.dtype_kv = tin->k.dtype;
    ak_attn_tensors t = *tin;
    t.o = ak_tensor_4d(o, AK_F64, c->B, c->Hq, c->nq, c->d);
    t.lse = ak_tensor_3d(lse, AK_F64, c->B, c->Hq, c->nq);
    ak_status st = sp ? ak_attention_ref_sparse(ctx, &d, sp, &t) : ak_attention_ref(ctx, &d, &t);
    CHECK(st == AK_OK, "reference: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
    return st == AK_OK;
}

/* Outputs vs a double reference: every element written and finite, |o - ref| <= 2e-5 max(1, max|ref|),
 * LSE -inf exactly where the reference has it, else within 2e-5 max(1, |ref|). */
static int compare_out(const tcase *c, const float *o, const float *lse, const double *ro, const double *rl,
                       const char *tag) {
    size_t nr = (size_t)c->B * c->Hq * c->nq, ne = nr * c->d;
    double mx = 1.0, err = 0.0;
    for (size_t x = 0; x < ne; x++) mx = fmax(mx, fabs(ro[x]));
    for (size_t x = 0; x < ne; x++) {
        if (!isfinite(o[x])) {
            CHECK(0, "%s: O[%zu] = %g not written or not finite", tag, x, (double)o[x]);
            return 0;
        }
        err = fmax(err, fabs(o[x] - ro[x]));
    }
    CHECK(err <= 2e-5 * mx, "%s: max |O - ref| = %.3g (max |ref| %.3g)", tag, err, mx);
    for (size_t x = 0; x < nr; x++) {
        int ok = isinf(rl[x]) ? (isinf(lse[x]) && lse[x] < 0) : fabs(lse[x] - rl[x]) <= 2e-5 * fmax(1.0, fabs(rl[x]));
        if (!ok) {
            CHECK(0, "%s: LSE[%zu] = %g, reference %g", tag, x, (double)lse[x], rl[x]);
            return 0;
        }
    }
    return err <= 2e-5 * mx;
}

/* Executor vs the reference of the same plan (or dense when dense = 1). */
static int exec_check(ak_ctx *ctx, const tcase *c, const ak_sparse *sp, int dense, const char *tag) {
    size_t nr = (size_t)c->B * c->Hq * c->nq;
    float *o = (float *)malloc(sizeof(float) * (nr * c->d + 1)), *l = (float *)malloc(sizeof(float) * (nr + 1));
    double *ro = (double *)malloc(sizeof(double) * (nr * c->d + 1)), *rl = (double *)malloc(sizeof(double) * (nr + 1));
    int ok = run_exec(ctx, c, &c->t, sp, o, l) && run_ref(ctx, c, &c->t, dense ? NULL : sp, ro, rl) &&
             compare_out(c, o, l, ro, rl, tag);
    free(o), free(l), free(ro), free(rl);
    return ok;
}

/* The (stride, phase) of part `part` ("all:", "m1:", "m1>1:") in head line `head` of the explain text. */
static int explain_grid(const ak_dyn_info *info, int b, int h, const char *part, int *s, int *ph) {
    char key[32];
    snprintf(key, sizeof key, "b%d h%d ", b, h);
    const char *line = strstr(info->explain, key);
    if (!line) return 0;
    const char *end = strchr(line, '\n'), *at = strstr(line, part);
    if (!at || (end && at > end)) return 0;
    at += strlen(part);
    return sscanf(at, "grid(s=%d,p=%d", s, ph) == 2;
}

/* Random modality ids in runs (segments) of random length; M ids. */
static void random_modality(rng *r, int32_t *mod, int n, int M) {
    int a = rng_int(r, M);
    for (int j = 0; j < n; j++) {
        if (rng_chance(r, 0.08)) a = rng_int(r, M);
        mod[j] = a;
    }
}

/* The "score=" values of head line (b, h) of the explain text, in order; returns their count. */
static int explain_scores(const ak_dyn_info *info, int b, int h, double *sc, int max) {
    char key[32];
    snprintf(key, sizeof key, "b%d h%d ", b, h);
    const char *at = strstr(info->explain, key), *end = at ? strchr(at, '\n') : NULL;
    int n = 0;
    while (at && (at = strstr(at, "score=")) && (!end || at < end) && n < max) {
        sc[n++] = atof(at + 6);
        at += 6;
    }
    return n;
}

/* ---- dense: budgets at their maximum ---- */

static void dense_case(ak_ctx *ctx, tcase *c, const ak_mminference_params *p, const char *tag) {
    ak_dyn_info info;
    ak_sparse *sp = make_plan(ctx, c, p, &info, tag);
    if (!sp) return;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            uint8_t *m = plan_mask(sp, b, h, c->nq, c->nk);
            long bad = -1;
            for (long x = 0; x < (long)c->nq * c->nk && bad < 0; x++)
                if (m[x] != (x % c->nk <= x / c->nk + c->nk - c->nq)) bad = x;
            CHECK(bad < 0, "%s: b%d h%d: mask differs from causal at row %ld key %ld", tag, b, h, bad / c->nk,
                  bad % c->nk);
            free(m);
        }
    if (c->nq > 0 && c->nq <= c->nk)
        CHECK(fabs(info.density - 1.0) < 1e-12, "%s: density %.17g, expected 1", tag, info.density);
    exec_check(ctx, c, sp, 1, tag);
    ak_sparse_destroy(sp);
}

static void group_dense(ak_ctx *ctx) {
    static const int shapes[][5] = {/* nq, nk, Hq, Hkv, d */
                                    {1, 1, 1, 1, 8},    {17, 17, 3, 1, 16},  {113, 113, 4, 2, 8}, {300, 300, 1, 1, 32},
                                    {50, 300, 3, 3, 8}, {300, 200, 2, 1, 8}, {1, 77, 4, 1, 16},   {129, 129, 2, 2, 40}};
    rng r = rng_seed(11);
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < nshapes; si++) {
        const int *S = shapes[si];
        tcase c;
        tcase_init(&c, si % 3 == 2 ? 2 : 1, S[2], S[3], S[0], S[1], S[4]);
        tcase_random(&c, &r, 1.0);
        int32_t *mod = (int32_t *)malloc(sizeof(int32_t) * (size_t)S[1] + 4);
        random_modality(&r, mod, S[1], 3);
        int32_t pairs[9] = {AK_MMI_VS,   AK_MMI_GRID, AK_MMI_ASHAPE, -1, AK_MMI_ASHAPE,
                            AK_MMI_GRID, AK_MMI_GRID, AK_MMI_VS,     -1};
        for (int cfg = 0; cfg < 6; cfg++) {
            ak_mminference_params p;
            ak_mminference_params_init(&p);
            for (int m = 0; m < AK_MMI_MAX_MODALITIES; m++) p.vertical_size[m] = p.slash_size[m] = S[1];
            p.n_local = S[1];
            p.stride = 1; /* grid stride 1: every key a vertical line, every row a grid row */
            p.last_q = 1 + rng_int(&r, 70);
            p.block = 1 + rng_int(&r, 80);
            char tag[160];
            const char *what = "";
            switch (cfg) {
            case 0: what = "vs v=s=nk"; break;
            case 1: p.pattern[0] = AK_MMI_GRID, what = "grid stride 1"; break;
            case 2: p.pattern[0] = AK_MMI_ASHAPE, p.n_sink = 0, what = "ashape n_local=nk"; break;
            case 3:
                p.modality = mod, p.n_modalities = 3, p.boundary = AK_MMI_Q_BOUNDARY, p.pattern[1] = AK_MMI_ASHAPE;
                what = "q-boundary vs/ashape/grid at max";
                break;
            case 4:
                p.modality = mod, p.n_modalities = 3, p.boundary = AK_MMI_2D_BOUNDARY, p.pair_pattern = pairs;
                what = "2d-boundary pairs at max";
                break;
            default:
                p.pattern[0] = AK_MMI_GRID, p.stride = 0, p.n_local = 1, p.vertical_size[0] = 1, p.slash_size[0] = 1;
                what = "smallest budgets (dense only when decode)";
                if (S[0] != 1) continue;
                break;
            }
            snprintf(tag, sizeof tag, "dense %s nq=%d nk=%d Hq=%d Hkv=%d", what, S[0], S[1], S[2], S[3]);
            dense_case(ctx, &c, &p, tag);
        }
        free(mod);
        tcase_free(&c);
    }
}

/* ---- select: the rules against this file's re-implementation ---- */

static void random_params(rng *r, int nk, int32_t *mod, int32_t *pairs, int32_t *strides, ak_mminference_params *p) {
    ak_mminference_params_init(p);
    p->n_modalities = 1 + rng_int(r, 3);
    p->boundary = rng_int(r, 4);
    if (rng_chance(r, 0.8)) {
        random_modality(r, mod, nk, p->n_modalities);
        p->modality = mod;
    }
    for (int m = 0; m < AK_MMI_MAX_MODALITIES; m++) {
        p->pattern[m] = rng_int(r, 3);
        p->vertical_size[m] = 1 + rng_int(r, nk / 4 + 2);
        p->slash_size[m] = 1 + rng_int(r, nk / 4 + 2);
    }
    if (p->boundary == AK_MMI_2D_BOUNDARY && rng_chance(r, 0.5)) {
        for (int x = 0; x < p->n_modalities * p->n_modalities; x++) pairs[x] = rng_int(r, 4) - 1;
        p->pair_pattern = pairs;
    }
    p->forced_v = rng_int(r, 4);
    p->forced_s = rng_int(r, 6);
    p->n_sink = rng_pick(r, (const int[]){0, 1, 3, 8}, 4);
    p->n_local = rng_pick(r, (const int[]){1, 2, 5, 16}, 4);
    if (rng_chance(r, 0.3)) {
        p->stride = 1 + rng_int(r, 40);
        p->phase = rng_int(r, p->stride);
    }
    p->stride_min = 1 + rng_int(r, 4);
    p->stride_max = p->stride_min + rng_int(r, 48);
    if (rng_chance(r, 0.2)) {
        p->n_strides = 1 + rng_int(r, 4);
        for (int k = 0; k < p->n_strides; k++) strides[k] = 1 + rng_int(r, 64);
        p->strides = strides;
    }
    p->grid_rows = rng_int(r, 2);
    p->grid_cap = rng_chance(r, 0.8);
    p->grid_min_score = (float)rng_pick(r, (const int[]){-10, 0, 1, 25}, 4) / 100.0f;
    p->grid_min_lines = rng_pick(r, (const int[]){1, 2, 4}, 3);
    p->row_probe = rng_pick(r, (const int[]){0, 1, 5, 32}, 4);
    p->row_ref = rng_pick(r, (const int[]){1, 3, 16}, 3);
    p->row_weight = (float)rng_pick(r, (const int[]){0, 1, 2}, 3) / 2.0f;
    p->last_q = rng_pick(r, (const int[]){1, 3, 17, 64}, 4);
    p->block = rng_pick(r, (const int[]){1, 7, 64, 100}, 4);
}

static void group_select(ak_ctx *ctx) {
    static const int lens[] = {1, 2, 17, 113, 300, 1023};
    static const int gqa[][2] = {{1, 1}, {3, 1}, {4, 1}, {4, 2}, {3, 3}};
    const int ncases = g_quick ? 40 : 120;
    int skipped = 0, compared = 0;
    for (int ci = 0; ci < ncases; ci++) {
        rng r = rng_seed(1000 + ci);
        int nk = lens[rng_int(&r, 6)];
        if (nk == 1023 && (g_quick || ci % 4)) nk = 300;
        int nq = rng_pick(&r, (const int[]){0, 0, 0, 1, 2}, 5);
        nq = nq == 0 ? nk : nq == 1 ? nk / 2 + 1 : nk + 5;
        int gi = rng_int(&r, 5), d = rng_pick(&r, (const int[]){3, 16, 40}, 3);
        tcase c;
        tcase_init(&c, 1 + (ci % 5 == 0), gqa[gi][0], gqa[gi][1], nq, nk, d);
        tcase_random(&c, &r, rng_chance(&r, 0.5) ? 1.0 : 2.5);
        int32_t *mod = (int32_t *)malloc(sizeof(int32_t) * (size_t)nk + 4), pairs[9], strides[4];
        ak_mminference_params p;
        random_params(&r, nk, mod, pairs, strides, &p);
        char tag[200];
        snprintf(tag, sizeof tag, "select case %d: B=%d Hq=%d Hkv=%d nq=%d nk=%d d=%d bd=%d M=%d", ci, c.B, c.Hq, c.Hkv,
                 nq, nk, d, p.boundary, p.n_modalities);
        ak_dyn_info info;
        ak_sparse *sp = make_plan(ctx, &c, &p, &info, tag);
        if (g_verbose) printf("%s\n%s%s\n", tag, info.explain, sp ? ak_sparse_name(sp) : "");
        uint8_t *want = (uint8_t *)malloc((size_t)nq * nk + 1);
        for (int b = 0; sp && b < c.B; b++)
            for (int h = 0; h < c.Hq; h++) {
                int amb = 0, nsc = 0;
                double sc[AK_MMI_MAX_MODALITIES * AK_MMI_MAX_MODALITIES];
                ref_mask(&c, &p, b, h, want, &amb, sc, &nsc);
                if (amb) {
                    skipped++;
                    continue;
                }
                compared++;
                double got_sc[AK_MMI_MAX_MODALITIES * AK_MMI_MAX_MODALITIES];
                int ngot = explain_scores(&info, b, h, got_sc, AK_MMI_MAX_MODALITIES * AK_MMI_MAX_MODALITIES);
                CHECK(ngot == nsc, "%s: b%d h%d: %d searched grid parts in the explain, %d in the rule\n%s", tag, b, h,
                      ngot, nsc, info.explain);
                for (int k = 0; k < nsc && k < ngot; k++)
                    CHECK(fabs(got_sc[k] - sc[k]) <= 3e-5, "%s: b%d h%d: grid part %d: score %.6f, rule %.6f", tag, b,
                          h, k, got_sc[k], sc[k]);
                uint8_t *got = plan_mask(sp, b, h, nq, nk);
                long x = mask_diff(got, want, nq, nk);
                CHECK(x < 0, "%s: b%d h%d: row %ld key %ld: plan %d, rule %d\n%s", tag, b, h, x / (nk ? nk : 1),
                      x % (nk ? nk : 1), x < 0 ? 0 : got[x], x < 0 ? 0 : want[x], info.explain);
                free(got);
            }
        if (sp) { /* gather lists of at most `block` rows */
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            int64_t R = (int64_t)sd.n_batch * sd.n_heads * sd.n_qblocks, worst = 0;
            for (int64_t x = 0; sd.qrow_off && x < R; x++)
                worst = sd.qrow_off[x + 1] - sd.qrow_off[x] > worst ? sd.qrow_off[x + 1] - sd.qrow_off[x] : worst;
            CHECK(worst <= p.block, "%s: a list holds %lld rows, block = %d", tag, (long long)worst, p.block);
            CHECK(sd.causal == 1 && sd.n_heads == c.Hq && sd.n_batch == c.B, "%s: plan geometry", tag);
            CHECK(strncmp(ak_sparse_name(sp), "mminference(", 12) == 0, "%s: name %s", tag, ak_sparse_name(sp));
        }
        free(want), free(mod);
        ak_sparse_destroy(sp);
        tcase_free(&c);
    }
    printf("select: %d heads compared, %d skipped (a selection within rounding of a tie)\n", compared, skipped);
    CHECK(skipped * 10 <= compared, "select: too many ambiguous heads (%d of %d)", skipped, compared + skipped);
}

/* ---- grid: synthetic recovery of (stride, phase) ---- */

/* A random unit vector u (the planted direction) and keys / queries around it; see plant_* below. */
static void unit(rng *r, float *u, int d) {
    double n = 0.0;
    for (int x = 0; x < d; x++) u[x] = (float)gauss(r), n += (double)u[x] * u[x];
    for (int x = 0; x < d; x++) u[x] = (float)(u[x] / sqrt(n));
}

/* Vertical lines: keys at positions j % s == ph carry A * u, every query carries A * u: those keys get a
 * logit A^2 / sqrt(d) higher than the rest (noise amplitude 0.5). */
static void plant_vertical(tcase *c, rng *r, int s, int ph, double A) {
    float u[256];
    unit(r, u, c->d);
    tcase_random(c, r, 0.5);
    for (int b = 0; b < c->B; b++)
        for (int hk = 0; hk < c->Hkv; hk++)
            for (int j = 0; j < c->nk; j++)
                for (int x = 0; x < c->d && j % s == ph; x++) KR(c, b, hk, j)[x] += (float)(A * u[x]);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < c->nq; i++)
                for (int x = 0; x < c->d; x++) QR(c, b, h, i)[x] += (float)(A * u[x]);
}

/* Horizontal lines: gaussian keys; a query at position p % s == ph is 0 (uniform attention: broad), any
 * other query is beta * (k_p + k_{p-1}) (local). */
static void plant_horizontal(tcase *c, rng *r, int s, int ph, double beta) {
    for (size_t x = 0; x < (size_t)c->B * c->Hkv * c->nk * c->d; x++)
        c->k[x] = (float)gauss(r), c->v[x] = (float)rng_range(r, -1, 1);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < c->nq; i++) {
                int pos = i + c->nk - c->nq, hk = h / (c->Hq / c->Hkv);
                float *q = QR(c, b, h, i);
                for (int x = 0; x < c->d; x++)
                    q[x] = pos % s == ph
                               ? 0.0f
                               : (float)(beta * (KR(c, b, hk, pos)[x] + (pos > 0 ? KR(c, b, hk, pos - 1)[x] : 0.0f)));
            }
}

static void expect_grid(ak_ctx *ctx, tcase *c, const ak_mminference_params *p, int s, int ph, const char *tag) {
    ak_dyn_info info;
    ak_sparse *sp = make_plan(ctx, c, p, &info, tag);
    if (!sp) return;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            int gs = 0, gp = 0, found = explain_grid(&info, b, h, "all:", &gs, &gp);
            CHECK(found && gs == s && gp == ph, "%s: b%d h%d: found %d (s=%d, p=%d), planted (s=%d, p=%d)\n%s", tag, b,
                  h, found, gs, gp, s, ph, info.explain);
        }
    if (g_verbose) printf("%s: %s", tag, info.explain);
    ak_sparse_destroy(sp);
}

static void group_grid(ak_ctx *ctx) {
    static const int planted[][2] = {{16, 3}, {32, 5}, {37, 0}, {50, 49}, {7, 6}, {100, 41}};
    const int N = g_quick ? 768 : 1536, np = g_quick ? 3 : 6;
    rng r = rng_seed(5);
    for (int k = 0; k < np; k++) {
        const int s = planted[k][0], ph = planted[k][1];
        tcase c;
        tcase_init(&c, 1, 2, 1, N, N, 64);
        ak_mminference_params p;
        ak_mminference_params_init(&p);
        p.pattern[0] = AK_MMI_GRID;
        p.n_sink = 4;
        p.n_local = 64;
        p.stride_max = 256;
        char tag[128];
        plant_vertical(&c, &r, s, ph, 6.0);
        snprintf(tag, sizeof tag, "grid vertical lines s=%d p=%d", s, ph);
        expect_grid(ctx, &c, &p, s, ph, tag);
        p.row_probe = 0; /* the column profile alone sees vertical lines */
        snprintf(tag, sizeof tag, "grid vertical lines s=%d p=%d, row_probe=0", s, ph);
        expect_grid(ctx, &c, &p, s, ph, tag);
        p.row_probe = 32;
        plant_horizontal(&c, &r, s, ph, 2.5);
        snprintf(tag, sizeof tag, "grid horizontal lines s=%d p=%d", s, ph);
        expect_grid(ctx, &c, &p, s, ph, tag);
        int32_t list[4] = {s * 2, s, s + 1, 3};
        p.strides = list;
        p.n_strides = 4;
        snprintf(tag, sizeof tag, "grid horizontal lines s=%d p=%d, strides list", s, ph);
        expect_grid(ctx, &c, &p, s, ph, tag);
        /* the row profile is what finds horizontal lines: without it no stride passes the threshold */
        p.strides = NULL;
        p.n_strides = 0;
        p.row_probe = 0;
        ak_dyn_info info;
        ak_sparse *sp = make_plan(ctx, &c, &p, &info, "grid horizontal, row_probe=0");
        CHECK(sp && strstr(info.explain, "grid->vs(score=") != NULL,
              "horizontal lines s=%d without the row profile: %s", s, info.explain);
        ak_sparse_destroy(sp);
        tcase_free(&c);
    }
    /* grid_cap: one column holding most of the mass does not hide the grid (capped at a line's share);
     * uncapped, that column's residue wins */
    {
        tcase c;
        tcase_init(&c, 1, 1, 1, N, N, 64);
        plant_vertical(&c, &r, 16, 3, 6.0);
        float u[64];
        for (int x = 0; x < 64; x++) u[x] = QR(&c, 0, 0, 0)[x] / 6.0f; /* the planted direction (+ noise / 6) */
        for (int x = 0; x < 64; x++) KR(&c, 0, 0, N / 2 + 1)[x] += 13.0f * u[x];
        ak_mminference_params p;
        ak_mminference_params_init(&p);
        p.pattern[0] = AK_MMI_GRID;
        p.n_sink = 4;
        p.n_local = 64;
        p.stride_max = 256;
        expect_grid(ctx, &c, &p, 16, 3, "grid lines + one heavy column, capped");
        p.grid_cap = 0;
        ak_dyn_info info;
        ak_sparse *sp = make_plan(ctx, &c, &p, &info, "grid lines + one heavy column, uncapped");
        int s = 0, ph = 0;
        CHECK(sp && explain_grid(&info, 0, 0, "all:", &s, &ph) && s != 16 && (N / 2 + 1) % s == ph,
              "uncapped: expected the heavy column's residue to win: %s", info.explain);
        if (g_verbose) printf("heavy column: %s", info.explain);
        ak_sparse_destroy(sp);
        tcase_free(&c);
    }
    /* no structure: VS fallback; too short for a column support: no candidate */
    tcase c;
    tcase_init(&c, 1, 1, 1, 600, 600, 32);
    tcase_random(&c, &r, 1.0);
    ak_mminference_params p;
    ak_mminference_params_init(&p);
    p.pattern[0] = AK_MMI_GRID;
    p.n_local = 32;
    ak_dyn_info info;
    ak_sparse *sp = make_plan(ctx, &c, &p, &info, "grid on noise");
    CHECK(sp && strstr(info.explain, "all:grid->vs(score=") && strstr(info.explain, ")vs(v="), "noise: %s",
          info.explain);
    ak_sparse_destroy(sp);
    p.n_local = 512;
    p.n_sink = 100;
    sp = make_plan(ctx, &c, &p, &info, "grid, no support");
    CHECK(sp && strstr(info.explain, "grid->vs(no candidate)"), "no support: %s", info.explain);
    ak_sparse_destroy(sp);
    p.n_sink = 64;
    p.stride_min = p.stride_max = 601; /* every candidate > nk */
    sp = make_plan(ctx, &c, &p, &info, "grid, candidates > nk");
    CHECK(sp && strstr(info.explain, "grid->vs(no candidate)"), "candidates > nk: %s", info.explain);
    ak_sparse_destroy(sp);
    tcase_free(&c);
}

/* ---- perm: gather lists vs the same active set in original order ---- */

/* The plan with one fixed list per row (block_q = 1) holding that row's keys of `sp` as cols. */
static ak_sparse *original_order(ak_ctx *ctx, const tcase *c, const ak_sparse *sp) {
    ak_sparse_desc g;
    ak_sparse_desc_init(&g);
    g.n_batch = c->B;
    g.n_heads = c->Hq;
    g.nq = c->nq;
    g.nk = c->nk;
    g.causal = 1;
    g.block_q = 1;
    ak_sparse_builder *bd = NULL;
    ak_sparse *out = NULL;
    CHECK_STATUS(ak_sparse_builder_create(ctx, &g, &bd), AK_OK);
    for (int b = 0; bd && b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            uint8_t *m = plan_mask(sp, b, h, c->nq, c->nk);
            for (int i = 0; i < c->nq; i++)
                for (int j = 0; j < c->nk; j++)
                    if (m[(size_t)i * c->nk + j]) CHECK_STATUS(ak_sparse_builder_add_col(bd, b, h, i, j), AK_OK);
            free(m);
        }
    if (bd) CHECK_STATUS(ak_sparse_builder_finish(bd, &out), AK_OK);
    ak_sparse_builder_destroy(bd);
    return out;
}

static void perm_case(ak_ctx *ctx, tcase *c, const ak_mminference_params *p, const char *tag) {
    ak_dyn_info info;
    ak_sparse *sp = make_plan(ctx, c, p, &info, tag), *orig = sp ? original_order(ctx, c, sp) : NULL;
    if (!sp || !orig) {
        ak_sparse_destroy(sp);
        return;
    }
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    CHECK(sd.qrow_off != NULL, "%s: the plan has no gather lists", tag);
    /* lists hold only grid rows or only other rows (no-boundary grid: one part, "all:") */
    int64_t R = (int64_t)sd.n_batch * sd.n_heads * sd.n_qblocks, n_grid_lists = 0;
    for (int64_t x = 0; sd.qrow_off && x < R; x++) {
        int h = (int)(x / sd.n_qblocks % sd.n_heads), b = (int)(x / sd.n_qblocks / sd.n_heads), s = 0, ph = 0,
            mixed = 0, any = 0;
        if (!explain_grid(&info, b, h, "all:", &s, &ph)) continue;
        int first = -1;
        for (int64_t e = sd.qrow_off[x]; e < sd.qrow_off[x + 1]; e++) {
            int g = (sd.qrows[e] + c->nk - c->nq) % s == ph;
            if (first < 0) first = g;
            mixed |= g != first;
            any |= g;
        }
        n_grid_lists += any;
        CHECK(!mixed, "%s: list %lld mixes grid rows and other rows", tag, (long long)x);
    }
    CHECK(n_grid_lists > 0, "%s: no list of grid rows\n%s", tag, info.explain);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            uint8_t *m1 = plan_mask(sp, b, h, c->nq, c->nk), *m2 = plan_mask(orig, b, h, c->nq, c->nk);
            CHECK(mask_diff(m1, m2, c->nq, c->nk) < 0, "%s: b%d h%d: masks differ", tag, b, h);
            free(m1), free(m2);
        }
    size_t nr = (size_t)c->B * c->Hq * c->nq;
    float *o1 = (float *)malloc(sizeof(float) * (nr * c->d + 1)), *l1 = (float *)malloc(sizeof(float) * (nr + 1));
    float *o2 = (float *)malloc(sizeof(float) * (nr * c->d + 1)), *l2 = (float *)malloc(sizeof(float) * (nr + 1));
    double *ro = (double *)malloc(sizeof(double) * (nr * c->d + 1)), *rl = (double *)malloc(sizeof(double) * (nr + 1));
    char t2[200];
    if (run_exec(ctx, c, &c->t, sp, o1, l1) && run_exec(ctx, c, &c->t, orig, o2, l2) &&
        run_ref(ctx, c, &c->t, orig, ro, rl)) {
        snprintf(t2, sizeof t2, "%s: gather plan vs ref of the original-order plan", tag);
        compare_out(c, o1, l1, ro, rl, t2);
        snprintf(t2, sizeof t2, "%s: original-order plan vs its ref", tag);
        compare_out(c, o2, l2, ro, rl, t2);
    }
    free(o1), free(l1), free(o2), free(l2), free(ro), free(rl);
    ak_sparse_destroy(sp);
    ak_sparse_destroy(orig);
}

static void group_perm(ak_ctx *ctx) {
    rng r = rng_seed(17);
    static const int cases[][6] = {/* N, nq, Hq, Hkv, stride (0 = search, planted 12/5), block */
                                   {300, 300, 2, 1, 7, 16},
                                   {257, 100, 3, 1, 5, 9},
                                   {300, 300, 1, 1, 0, 64},
                                   {200, 200, 4, 2, 13, 64},
                                   {241, 241, 2, 2, 0, 10}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *C = cases[k];
        tcase c;
        tcase_init(&c, 1 + (k == 1), C[2], C[3], C[1], C[0], 16);
        ak_mminference_params p;
        ak_mminference_params_init(&p);
        p.pattern[0] = AK_MMI_GRID;
        p.n_sink = 2;
        p.n_local = 8;
        p.block = C[5];
        if (C[4]) {
            tcase_random(&c, &r, 1.0);
            p.stride = C[4];
            p.phase = C[4] / 2;
        } else {
            plant_vertical(&c, &r, 12, 5, 4.0);
            p.stride_max = 40;
        }
        char tag[128];
        snprintf(tag, sizeof tag, "perm N=%d nq=%d Hq=%d Hkv=%d stride=%d block=%d", C[0], C[1], C[2], C[3], C[4],
                 C[5]);
        perm_case(ctx, &c, &p, tag);
        tcase_free(&c);
    }
}

/* ---- boundary: Q-boundary with one modality, K-boundary, 2D union ---- */

static int same_masks(const tcase *c, const ak_sparse *a, const ak_sparse *b) {
    int same = 1;
    for (int bb = 0; bb < c->B; bb++)
        for (int h = 0; h < c->Hq; h++) {
            uint8_t *m1 = plan_mask(a, bb, h, c->nq, c->nk), *m2 = plan_mask(b, bb, h, c->nq, c->nk);
            same &= mask_diff(m1, m2, c->nq, c->nk) < 0;
            free(m1), free(m2);
        }
    return same;
}

/* Masked dense softmax (double) of every (b, h) with the masks of sp: o [B][Hq][nq][d]. */
static void masked_dense(const tcase *c, const uint8_t *const *masks, double *o) {
    double *w = (double *)malloc(sizeof(double) * (size_t)(c->nk + 1));
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++)
            for (int i = 0; i < c->nq; i++) {
                const uint8_t *m = masks[b * c->Hq + h] + (size_t)i * c->nk;
                double mx = -INFINITY, sum = 0.0, *out = o + (((size_t)b * c->Hq + h) * c->nq + i) * c->d;
                for (int j = 0; j < c->nk; j++)
                    if (m[j]) mx = fmax(mx, rdot(c, b, h, i, j));
                for (int j = 0; j < c->nk; j++) sum += w[j] = m[j] ? exp(rdot(c, b, h, i, j) - mx) : 0.0;
                for (int x = 0; x < c->d; x++) out[x] = 0.0;
                for (int j = 0; j < c->nk && sum > 0.0; j++)
                    for (int x = 0; x < c->d && w[j] > 0.0; x++)
                        out[x] += w[j] / sum * VR(c, b, h / (c->Hq / c->Hkv), j)[x];
            }
    free(w);
}

static void group_boundary(ak_ctx *ctx) {
    rng r = rng_seed(23);
    /* Q-boundary with a single modality (NULL, or every id 0 with 3 modalities) == the inner pattern alone;
     * K-boundary == no boundary */
    for (int k = 0; k < (g_quick ? 4 : 8); k++) {
        int N = rng_pick(&r, (const int[]){17, 113, 300, 520}, 4), nq = k % 3 == 2 ? N / 2 : N;
        tcase c;
        tcase_init(&c, 1, 3, 1, nq, N, 16);
        if (k % 2)
            plant_vertical(&c, &r, 9, 4, 3.0);
        else
            tcase_random(&c, &r, 1.5);
        int32_t *zeros = (int32_t *)calloc((size_t)N + 1, sizeof(int32_t));
        ak_mminference_params p, q;
        ak_mminference_params_init(&p);
        p.pattern[0] = k % 3;
        p.vertical_size[0] = N / 5 + 1;
        p.slash_size[0] = N / 7 + 1;
        p.n_local = 6;
        p.n_sink = 2;
        p.stride_max = 64;
        p.block = 1 + rng_int(&r, 70);
        ak_sparse *alone = make_plan(ctx, &c, &p, NULL, "boundary: inner pattern alone");
        for (int v = 0; v < 3; v++) {
            q = p;
            q.boundary = v == 2 ? AK_MMI_K_BOUNDARY : AK_MMI_Q_BOUNDARY;
            if (v == 1) q.modality = zeros, q.n_modalities = 3, q.pattern[1] = AK_MMI_ASHAPE;
            ak_sparse *sp = make_plan(ctx, &c, &q, NULL, "boundary: q / k");
            CHECK(sp && alone && same_masks(&c, sp, alone),
                  "boundary: %s (pattern %d, N=%d nq=%d) differs from the inner pattern alone",
                  v == 0   ? "Q-boundary, modality NULL"
                  : v == 1 ? "Q-boundary, 3 modalities, all 0"
                           : "K-boundary",
                  p.pattern[0], N, nq);
            ak_sparse_destroy(sp);
        }
        ak_sparse_destroy(alone);
        free(zeros);
        tcase_free(&c);
    }
    /* 2D-boundary: mask == union of this file's per-pair masks; output == masked dense with it */
    for (int k = 0; k < (g_quick ? 3 : 6); k++) {
        int N = rng_pick(&r, (const int[]){64, 150, 301}, 3), nq = k == 4 ? N - 20 : N, M = 2 + k % 2;
        tcase c;
        tcase_init(&c, 1, 2, 1, nq, N, 16);
        tcase_random(&c, &r, 1.5);
        int32_t *mod = (int32_t *)malloc(sizeof(int32_t) * (size_t)N), pairs[9];
        for (int j = 0; j < N; j++) mod[j] = (j / 23 + (j % 23 > 17)) % M; /* interleaved segments */
        for (int x = 0; x < M * M; x++) pairs[x] = (x + k) % 3;
        ak_mminference_params p;
        ak_mminference_params_init(&p);
        p.modality = mod;
        p.n_modalities = M;
        p.boundary = AK_MMI_2D_BOUNDARY;
        p.pair_pattern = pairs;
        for (int m = 0; m < M; m++) p.vertical_size[m] = 5 + 3 * m, p.slash_size[m] = 4 + m;
        p.forced_v = 1;
        p.forced_s = 1;
        p.n_sink = 3;
        p.n_local = 5;
        if (k % 2)
            p.stride = 7, p.phase = 3;
        else
            p.stride_max = 30, p.grid_min_score = -1.0f;
        char tag[128];
        snprintf(tag, sizeof tag, "2d union N=%d nq=%d M=%d", N, nq, M);
        ak_dyn_info info;
        ak_sparse *sp = make_plan(ctx, &c, &p, &info, tag);
        uint8_t *masks[2] = {NULL, NULL};
        int amb = 0;
        for (int h = 0; h < 2; h++) {
            masks[h] = (uint8_t *)malloc((size_t)nq * N);
            ref_mask(&c, &p, 0, h, masks[h], &amb, NULL, NULL);
        }
        if (sp && !amb) {
            for (int h = 0; h < 2; h++) {
                uint8_t *got = plan_mask(sp, 0, h, nq, N);
                long x = mask_diff(got, masks[h], nq, N);
                CHECK(x < 0, "%s: h%d: row %ld key %ld differs from the union of the pair masks\n%s", tag, h, x / N,
                      x % N, info.explain);
                free(got);
            }
            size_t nr = (size_t)2 * nq;
            float *o = (float *)malloc(sizeof(float) * (nr * c.d + 1)), *l = (float *)malloc(sizeof(float) * (nr + 1));
            double *ro = (double *)malloc(sizeof(double) * (nr * c.d + 1));
            if (run_exec(ctx, &c, &c.t, sp, o, l)) {
                masked_dense(&c, (const uint8_t *const *)masks, ro);
                double err = 0.0;
                for (size_t x = 0; x < nr * c.d; x++) err = fmax(err, fabs(o[x] - ro[x]));
                CHECK(err <= 2e-5, "%s: executor vs masked dense with the union mask: %.3g", tag, err);
            }
            free(o), free(l), free(ro);
        }
        CHECK(!amb, "%s: ambiguous selection (change the seed)", tag);
        free(masks[0]), free(masks[1]), free(mod);
        ak_sparse_destroy(sp);
        tcase_free(&c);
    }
}

/* ---- recall on planted structure ---- */

/* Mean and minimum attention-mass recall of sp over every row with a visible key (double dense softmax). */
static double recall_of(const tcase *c, const ak_sparse *sp, int row_lo, int row_hi, double *mn) {
    double *w = (double *)malloc(sizeof(double) * (size_t)(c->nk + 1)), tot = 0.0;
    long n = 0;
    *mn = 1.0;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hq; h++) {
            uint8_t *m = plan_mask(sp, b, h, c->nq, c->nk);
            for (int i = row_lo; i < row_hi; i++) {
                int pos = i + c->nk - c->nq;
                if (pos < 0) continue;
                double mx = -INFINITY, sum = 0.0, in = 0.0;
                for (int j = 0; j <= pos; j++) mx = fmax(mx, w[j] = rdot(c, b, h, i, j));
                for (int j = 0; j <= pos; j++) {
                    double e = exp(w[j] - mx);
                    sum += e;
                    in += m[(size_t)i * c->nk + j] ? e : 0.0;
                }
                tot += in / sum;
                if (in / sum < *mn && g_verbose) printf("  recall: new minimum %.4f at b%d h%d row %d\n", in / sum, b, h, i);
                *mn = fmin(*mn, in / sum);
                n++;
            }
            free(m);
        }
    free(w);
    return n ? tot / n : 1.0;
}

static void expect_recall(ak_ctx *ctx, const tcase *c, const ak_mminference_params *p, double max_density,
                          const char *tag) {
    ak_dyn_info info;
    ak_sparse *sp = make_plan(ctx, c, p, &info, tag);
    if (!sp) return;
    double mn, mean = recall_of(c, sp, 0, c->nq, &mn);
    CHECK(mean >= 0.99, "%s: mean recall %.4f < 0.99 (min %.4f, density %.3f)\n%s", tag, mean, mn, info.density,
          info.explain);
    CHECK(info.density <= max_density, "%s: density %.3f > %.3f\n%s", tag, info.density, max_density, info.explain);
    if (g_verbose) printf("%s: recall mean %.5f min %.5f density %.3f\n%s", tag, mean, mn, info.density, info.explain);
    ak_sparse_destroy(sp);
}

/* Text / video layout of the mixed case: text [0, 64), 16 frames of 40 tokens, text [704, 800). */
static int mixed_mod(int j) { return j >= 64 && j < 704; }

static void plant_mixed(tcase *c, rng *r, int32_t *mod) {
    float ut[256], uv[256];
    unit(r, ut, c->d);
    unit(r, uv, c->d);
    for (int j = 0; j < c->nk; j++) mod[j] = mixed_mod(j);
    for (size_t x = 0; x < (size_t)c->B * c->Hkv * c->nk * c->d; x++)
        c->k[x] = (float)gauss(r), c->v[x] = (float)rng_range(r, -1, 1);
    for (int hk = 0; hk < c->Hkv; hk++)
        for (int j = 0; j < c->nk; j++)
            for (int x = 0; x < c->d; x++) {
                if (j < 4) KR(c, 0, hk, j)[x] += 12.0f * ut[x];                              /* text verticals */
                if (mixed_mod(j) && (j - 64) % 40 == 7) KR(c, 0, hk, j)[x] += 12.0f * uv[x]; /* video grid lines */
            }
    for (int h = 0; h < c->Hq; h++)
        for (int i = 0; i < c->nq; i++) {
            int hk = h / (c->Hq / c->Hkv);
            for (int x = 0; x < c->d; x++)
                QR(c, 0, h, i)
                [x] = (mixed_mod(i) ? 12.0f * uv[x] : 12.0f * ut[x]) +
                      2.5f * (KR(c, 0, hk, i)[x] + (i > 0 ? KR(c, 0, hk, i - 1)[x] : 0.0f));
        }
}

static void group_recall(ak_ctx *ctx) {
    rng r = rng_seed(31);
    const int N = g_quick ? 512 : 1024;
    tcase c;
    ak_mminference_params p;
    /* vertical grid lines (stride 16, phase 9) over noise */
    tcase_init(&c, 1, 2, 1, N, N, 64);
    plant_vertical(&c, &r, 16, 9, 9.0);
    ak_mminference_params_init(&p);
    p.pattern[0] = AK_MMI_GRID;
    p.n_sink = 4;
    p.n_local = 32;
    p.stride_max = 128;
    expect_recall(ctx, &c, &p, 0.25, "recall: vertical grid lines");
    /* horizontal lines (stride 32, phase 17) + local */
    plant_horizontal(&c, &r, 32, 17, 2.5);
    expect_recall(ctx, &c, &p, 0.25, "recall: horizontal grid lines + local");
    tcase_free(&c);
    /* vertical-slash: verticals {0, 1, 2} u 5 random keys, slashes {0, 1, 9, 33} */
    tcase_init(&c, 1, 3, 3, N, N, 128);
    float u[256];
    unit(&r, u, c.d);
    int V[8] = {0, 1, 2, 0, 0, 0, 0, 0}, S[4] = {0, 1, 9, 33};
    for (int k = 3; k < 8; k++) V[k] = 3 + rng_int(&r, N - 3);
    for (size_t x = 0; x < (size_t)c.Hkv * N * c.d; x++)
        c.k[x] = (float)gauss(&r), c.v[x] = (float)rng_range(&r, -1, 1);
    for (int h = 0; h < c.Hq; h++) {
        for (int k = 0; k < 8; k++)
            for (int x = 0; x < c.d; x++) KR(&c, 0, h, V[k])[x] += 13.4f * u[x];
        for (int i = 0; i < N; i++)
            for (int x = 0; x < c.d; x++) {
                double a = 13.4 * u[x];
                for (int t = 0; t < 4; t++) a += i >= S[t] ? 1.4 * KR(&c, 0, h, i - S[t])[x] : 0.0;
                QR(&c, 0, h, i)[x] = (float)a;
            }
    }
    ak_mminference_params_init(&p);
    p.vertical_size[0] = 16;
    p.slash_size[0] = 16;
    p.forced_v = 1;
    p.forced_s = 1;
    expect_recall(ctx, &c, &p, 0.1, "recall: vertical-slash");
    tcase_free(&c);
    /* text + video, Q-boundary: text rows VS, video rows grid (found from the last video rows) */
    tcase_init(&c, 1, 2, 1, 800, 800, 64);
    int32_t *mod = (int32_t *)malloc(sizeof(int32_t) * 800);
    plant_mixed(&c, &r, mod);
    ak_mminference_params_init(&p);
    p.modality = mod;
    p.n_modalities = 2;
    p.boundary = AK_MMI_Q_BOUNDARY;
    p.vertical_size[0] = p.slash_size[0] = 32;
    p.forced_v = p.forced_s = 4;
    p.n_sink = 4;
    p.n_local = 32;
    p.stride_max = 128;
    expect_recall(ctx, &c, &p, 0.2, "recall: text + video, Q-boundary");
    ak_dyn_info info;
    ak_sparse *sp = make_plan(ctx, &c, &p, &info, "mixed");
    int s = 0, ph = 0;
    CHECK(sp && explain_grid(&info, 0, 0, "m1:", &s, &ph) && s == 40 && ph == (64 + 7) % 40,
          "mixed: video grid (%d, %d)\n%s", s, ph, info.explain);
    double mn, q_rec = sp ? recall_of(&c, sp, 64, 704, &mn) : 0.0;
    ak_sparse_destroy(sp);
    p.boundary = AK_MMI_NO_BOUNDARY; /* one estimate from the last (text) rows misses the video grid */
    sp = make_plan(ctx, &c, &p, &info, "mixed, no boundary");
    double n_rec = sp ? recall_of(&c, sp, 64, 704, &mn) : 1.0;
    CHECK(q_rec > n_rec + 0.05, "mixed: video-row recall with Q-boundary %.4f vs without %.4f", q_rec, n_rec);
    if (g_verbose) printf("mixed: video rows recall %.4f (Q-boundary) vs %.4f (none)\n", q_rec, n_rec);
    ak_sparse_destroy(sp);
    free(mod);
    tcase_free(&c);
}

/* ---- exec: executor vs ak_attention_ref_sparse ---- */

static void group_exec(ak_ctx *ctx) {
    rng r = rng_seed(41);
    for (int k = 0; k < (g_quick ? 5 : 10); k++) {
        int N = rng_pick(&r, (const int[]){33, 129, 257, 400}, 4), nq = k % 4 == 3 ? N + 7 : k % 4 == 2 ? N / 3 + 1 : N;
        tcase c;
        tcase_init(&c, 1 + k % 2, 3, 1, nq, N, rng_pick(&r, (const int[]){8, 24, 64}, 3));
        if (k % 3 == 0)
            plant_vertical(&c, &r, 11, 2, 3.0);
        else
            tcase_random(&c, &r, 1.5);
        int32_t *mod = (int32_t *)malloc(sizeof(int32_t) * (size_t)N), pairs[9], strides[4];
        ak_mminference_params p;
        random_params(&r, N, mod, pairs, strides, &p);
        char tag[160];
        snprintf(tag, sizeof tag, "exec case %d: B=%d nq=%d nk=%d d=%d bd=%d", k, c.B, nq, N, c.d, p.boundary);
        ak_sparse *sp = make_plan(ctx, &c, &p, NULL, tag);
        if (sp) exec_check(ctx, &c, sp, 0, tag);
        ak_sparse_destroy(sp);
        if (k < 3) { /* the same problem with bf16 Q / K / V: planner and executor read the half tensors */
            size_t nqe = (size_t)c.B * c.Hq * nq * c.d, nke = (size_t)c.B * c.Hkv * N * c.d;
            uint16_t *q16 = (uint16_t *)malloc(2 * nqe + 2), *k16 = (uint16_t *)malloc(2 * nke + 2),
                     *v16 = (uint16_t *)malloc(2 * nke + 2);
            for (size_t x = 0; x < nqe; x++) q16[x] = ak_f32_to_bf16(c.q[x]);
            for (size_t x = 0; x < nke; x++) k16[x] = ak_f32_to_bf16(c.k[x]), v16[x] = ak_f32_to_bf16(c.v[x]);
            tcase cb = c;
            cb.desc.dtype_q = cb.desc.dtype_kv = AK_BF16;
            cb.t.q = ak_tensor_4d(q16, AK_BF16, c.B, c.Hq, nq, c.d);
            cb.t.k = ak_tensor_4d(k16, AK_BF16, c.B, c.Hkv, N, c.d);
            cb.t.v = ak_tensor_4d(v16, AK_BF16, c.B, c.Hkv, N, c.d);
            strcat(tag, " bf16");
            sp = make_plan(ctx, &cb, &p, NULL, tag);
            if (sp) exec_check(ctx, &cb, sp, 0, tag);
            ak_sparse_destroy(sp);
            free(q16), free(k16), free(v16);
        }
        free(mod);
        tcase_free(&c);
    }
}

/* ---- threads: the same plan for 1, 2, 3 threads ---- */

static void group_threads(ak_ctx *ctx) {
    rng r = rng_seed(53);
    for (int k = 0; k < (g_quick ? 3 : 5); k++) {
        int N = k < 2 ? 480 : 257;
        tcase c;
        tcase_init(&c, 2, 4, 2, N, N, 32);
        if (k % 2)
            plant_vertical(&c, &r, 13, 6, 3.0);
        else
            tcase_random(&c, &r, 1.5);
        int32_t *mod = (int32_t *)malloc(sizeof(int32_t) * (size_t)N), pairs[9], strides[4];
        ak_mminference_params p;
        random_params(&r, N, mod, pairs, strides, &p);
        if (k < 3) p.boundary = k == 0 ? AK_MMI_Q_BOUNDARY : k == 1 ? AK_MMI_2D_BOUNDARY : AK_MMI_NO_BOUNDARY;
        if (k < 3) p.pattern[0] = p.pattern[1] = AK_MMI_GRID, p.stride = p.phase = 0, p.row_probe = 16;
        char *json[3] = {NULL, NULL, NULL};
        for (int nt = 1; nt <= 3; nt++) {
            ak_ctx_set_num_threads(ctx, nt);
            ak_sparse *sp = make_plan(ctx, &c, &p, NULL, "threads");
            size_t len = 0;
            if (sp) CHECK_STATUS(ak_sparse_to_json(ctx, sp, &json[nt - 1], &len), AK_OK);
            ak_sparse_destroy(sp);
        }
        for (int nt = 2; nt <= 3; nt++)
            CHECK(json[0] && json[nt - 1] && strcmp(json[0], json[nt - 1]) == 0,
                  "threads case %d: plan with %d threads differs from 1", k, nt);
        for (int x = 0; x < 3; x++) ak_free(ctx, json[x]);
        ak_ctx_set_num_threads(ctx, 2);
        free(mod);
        tcase_free(&c);
    }
}

/* ---- invalid parameters ---- */

static void expect_invalid(ak_ctx *ctx, const tcase *c, const ak_attn_desc *d, const ak_mminference_params *p,
                           ak_status want, const char *needle, const char *what) {
    ak_sparse *sp = (ak_sparse *)(uintptr_t)0x10; /* must come back NULL */
    ak_status st = ak_mminference_plan(ctx, d ? d : &c->desc, &c->t, p, &sp, NULL);
    CHECK(st == want, "invalid %s: %s, expected %s (%s)", what, ak_status_string(st), ak_status_string(want),
          ak_ctx_last_error(ctx));
    CHECK(sp == NULL, "invalid %s: *out not NULL", what);
    CHECK(!needle || strstr(ak_ctx_last_error(ctx), needle), "invalid %s: message '%s' does not name '%s'", what,
          ak_ctx_last_error(ctx), needle);
    if (sp && sp != (ak_sparse *)(uintptr_t)0x10) ak_sparse_destroy(sp);
}

static void group_invalid(ak_ctx *ctx) {
    rng r = rng_seed(61);
    tcase c;
    tcase_init(&c, 1, 2, 1, 40, 40, 8);
    tcase_random(&c, &r, 1.0);
    int32_t mod[40] = {0}, pairs[4] = {-1, -1, -1, -1}, strides[2] = {4, 8};
    ak_mminference_params p0, p;
    ak_mminference_params_init(&p0);
    p0.n_modalities = 2;
    p0.modality = mod;
    struct {
        const char *field;
        int what;
    } cases[] = {{"n_modalities", 0},     {"n_modalities", 1},    {"boundary", 2},         {"boundary", 3},
                 {"modality[17]", 4},     {"modality[0]", 5},     {"pattern[0]", 6},       {"pattern[1]", 7},
                 {"vertical_size[0]", 8}, {"slash_size[1]", 9},   {"pair_pattern[3]", 10}, {"pair_pattern[0]", 11},
                 {"forced_v", 12},        {"forced_s", 13},       {"n_sink", 14},          {"n_local", 15},
                 {"stride", 16},          {"phase", 17},          {"phase", 18},           {"phase", 19},
                 {"stride_min", 20},      {"stride_max", 21},     {"n_strides", 22},       {"n_strides", 23},
                 {"strides[1]", 24},      {"grid_rows", 25},      {"grid_cap", 26},        {"grid_min_score", 27},
                 {"grid_min_score", 28},  {"grid_min_lines", 29}, {"row_probe", 30},       {"row_ref", 31},
                 {"row_weight", 32},      {"row_weight", 33},     {"last_q", 34},          {"block", 35}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        p = p0;
        memset(mod, 0, sizeof mod);
        switch (cases[k].what) {
        case 0: p.n_modalities = 0; break;
        case 1: p.n_modalities = AK_MMI_MAX_MODALITIES + 1; break;
        case 2: p.boundary = -1; break;
        case 3: p.boundary = 4; break;
        case 4: mod[17] = 2; break;
        case 5: mod[0] = -1; break;
        case 6: p.pattern[0] = 3; break;
        case 7: p.pattern[1] = -1; break;
        case 8: p.vertical_size[0] = 0; break;
        case 9: p.slash_size[1] = -5; break;
        case 10: pairs[3] = 3, p.pair_pattern = pairs; break;
        case 11: pairs[3] = -1, pairs[0] = -2, p.pair_pattern = pairs; break;
        case 12: p.forced_v = -1; break;
        case 13: p.forced_s = -1; break;
        case 14: p.n_sink = -1; break;
        case 15: p.n_local = 0; break;
        case 16: p.stride = -1; break;
        case 17: p.stride = 4, p.phase = 4; break;
        case 18: p.stride = 4, p.phase = -1; break;
        case 19: p.stride = 0, p.phase = 2; break;
        case 20: p.stride_min = 0; break;
        case 21: p.stride_min = 9, p.stride_max = 8; break;
        case 22: p.strides = NULL, p.n_strides = 2; break;
        case 23: p.strides = strides, p.n_strides = 0; break;
        case 24: strides[1] = 0, p.strides = strides, p.n_strides = 2; break;
        case 25: p.grid_rows = 2; break;
        case 26: p.grid_cap = -1; break;
        case 27: p.grid_min_score = NAN; break;
        case 28: p.grid_min_score = INFINITY; break;
        case 29: p.grid_min_lines = 0; break;
        case 30: p.row_probe = -1; break;
        case 31: p.row_ref = 0; break;
        case 32: p.row_weight = -0.5f; break;
        case 33: p.row_weight = NAN; break;
        case 34: p.last_q = 0; break;
        default: p.block = 0; break;
        }
        expect_invalid(ctx, &c, NULL, &p, AK_ERR_INVALID_ARGUMENT, cases[k].field, cases[k].field);
        strides[1] = 8;
        pairs[0] = pairs[3] = -1;
    }
    /* the problem itself */
    ak_attn_desc d = c.desc;
    d.causal = 0;
    expect_invalid(ctx, &c, &d, &p0, AK_ERR_INVALID_ARGUMENT, "causal", "non-causal desc");
    d = c.desc;
    d.window_left = 8;
    expect_invalid(ctx, &c, &d, &p0, AK_ERR_INVALID_ARGUMENT, "window", "window in desc");
    d = c.desc;
    d.seqlen_q = 41;
    expect_invalid(ctx, &c, &d, &p0, AK_ERR_SHAPE_MISMATCH, "q", "q shape");
    ak_sparse *sp = (ak_sparse *)(uintptr_t)0x10;
    CHECK_STATUS(ak_mminference_plan(NULL, &c.desc, &c.t, &p0, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL ctx: *out not NULL");
    sp = (ak_sparse *)(uintptr_t)0x10;
    CHECK_STATUS(ak_mminference_plan(ctx, NULL, &c.t, &p0, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL desc: *out not NULL");
    sp = (ak_sparse *)(uintptr_t)0x10;
    CHECK_STATUS(ak_mminference_plan(ctx, &c.desc, NULL, &p0, &sp, NULL), AK_ERR_NULL_POINTER);
    CHECK(sp == NULL, "NULL tensors: *out not NULL");
    CHECK_STATUS(ak_mminference_plan(ctx, &c.desc, &c.t, &p0, NULL, NULL), AK_ERR_NULL_POINTER);
    /* params NULL = defaults; every valid boundary / pattern passes */
    sp = NULL;
    CHECK_STATUS(ak_mminference_plan(ctx, &c.desc, &c.t, NULL, &sp, NULL), AK_OK);
    ak_sparse_destroy(sp);
    tcase_free(&c);
}

/* ---- named: ak_dyn_plan_named("mminference:key=value,...") == the same params set in C ---- */

static char *plan_json(ak_ctx *ctx, const ak_sparse *sp) {
    char *js = NULL;
    size_t len = 0;
    if (sp) CHECK_STATUS(ak_sparse_to_json(ctx, sp, &js, &len), AK_OK);
    return js;
}

static void group_named(ak_ctx *ctx) {
    if (!ak_dyn_plan_named) {
        printf("named: ak_dyn_plan_named is not in this build (single-method build): skipped\n");
        g_skipped = 1;
        return;
    }
    rng r = rng_seed(71);
    tcase c;
    tcase_init(&c, 1, 2, 1, 300, 300, 16);
    plant_vertical(&c, &r, 9, 4, 3.0);
    static const char *const specs[] = {
        "mminference:boundary=q,n_modalities=2,pattern=grid,pattern0=vs,vertical_size=40,slash_size1=30,forced_v=3,"
        "forced_s=7,n_sink=8,n_local=16,stride_min=3,stride_max=50,grid_rows=0,grid_cap=1,grid_min_score=0.1,"
        "grid_min_lines=3,row_probe=8,row_ref=4,row_weight=0.5,last_q=32,block=48",
        "mminference:boundary=none,pattern0=grid,stride=9,phase=4,n_local=8",
        "mminference:boundary=2d,n_modalities=3,pattern=ashape,pattern2=grid,vertical_size2=7", "mminference"};
    for (int k = 0; k < 4; k++) {
        ak_mminference_params p;
        ak_mminference_params_init(&p);
        if (k == 0) {
            p.boundary = AK_MMI_Q_BOUNDARY, p.n_modalities = 2;
            for (int m = 0; m < AK_MMI_MAX_MODALITIES; m++)
                p.pattern[m] = m ? AK_MMI_GRID : AK_MMI_VS, p.vertical_size[m] = 40;
            p.slash_size[1] = 30, p.forced_v = 3, p.forced_s = 7, p.n_sink = 8, p.n_local = 16, p.stride_min = 3;
            p.stride_max = 50, p.grid_rows = 0, p.grid_cap = 1, p.grid_min_score = 0.1f, p.grid_min_lines = 3,
            p.row_probe = 8;
            p.row_ref = 4, p.row_weight = 0.5f, p.last_q = 32, p.block = 48;
        } else if (k == 1) {
            p.pattern[0] = AK_MMI_GRID, p.stride = 9, p.phase = 4, p.n_local = 8;
        } else if (k == 2) {
            p.boundary = AK_MMI_2D_BOUNDARY, p.n_modalities = 3;
            for (int m = 0; m < AK_MMI_MAX_MODALITIES; m++) p.pattern[m] = m == 2 ? AK_MMI_GRID : AK_MMI_ASHAPE;
            p.vertical_size[2] = 7;
        }
        ak_sparse *a = make_plan(ctx, &c, &p, NULL, specs[k]), *b = NULL;
        ak_status st = ak_dyn_plan_named(ctx, specs[k], &c.desc, &c.t, &b, NULL);
        CHECK(st == AK_OK, "named %s: %s (%s)", specs[k], ak_status_string(st), ak_ctx_last_error(ctx));
        char *ja = plan_json(ctx, a), *jb = plan_json(ctx, b);
        CHECK(ja && jb && strcmp(ja, jb) == 0, "named %s: plan differs from the C parameters", specs[k]);
        ak_free(ctx, ja), ak_free(ctx, jb);
        ak_sparse_destroy(a), ak_sparse_destroy(b);
    }
    static const char *const bad[] = {
        "mminference:bogus=1",   "mminference:pattern=hexagon",  "mminference:pattern8=vs",   "mminference:boundary=3d",
        "mminference:n_local=0", "mminference:vertical_size1=x", "mminference:row_weight=abc"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ak_sparse *sp = NULL;
        CHECK_STATUS(ak_dyn_plan_named(ctx, bad[k], &c.desc, &c.t, &sp, NULL), AK_ERR_INVALID_ARGUMENT);
        CHECK(sp == NULL, "named %s: *out not NULL", bad[k]);
    }
    tcase_free(&c);
}

int main(int argc, char **argv) {
    g_quick = (int)tu_env_long("AK_MMI_QUICK", 0) != 0;
    g_verbose = (int)tu_env_long("AK_MMI_VERBOSE", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_dyn_mminference: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    double t0 = tu_now();
    int any = 0;
    static const struct {
        const char *name;
        void (*fn)(ak_ctx *);
    } groups[] = {{"dense", group_dense}, {"select", group_select},     {"grid", group_grid},
                  {"perm", group_perm},   {"boundary", group_boundary}, {"recall", group_recall},
                  {"exec", group_exec},   {"threads", group_threads},   {"invalid", group_invalid},
                  {"named", group_named}};
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
                "test_dyn_mminference: unknown group '%s' (dense, select, grid, perm, boundary, recall, exec, threads, "
                "invalid, named, all)\n",
                group);
        return 2;
    }
    char name[80];
    snprintf(name, sizeof name, "test_dyn_mminference %s (%.1f s)", group, tu_now() - t0);
    int rc = tc_finish(name);
    return rc == 0 && g_skipped && strcmp(group, "named") == 0 ? 77 : rc;
}
