/*
 * MMInference (Li et al., ICML 2025; spec dynamic-sparse.md §4) as a sparse-plan planner: grid heads
 * with a stride/phase search and grid rows gathered into their own query lists (the "permutation"),
 * modality boundaries (query rows grouped by modality, each group with its own estimation and inner
 * pattern; 2D: one part per key modality), inner patterns vertical-slash, A-shape and grid.
 * The exact rules are in attnkit.h (MMInference block) and docs/dynamic/mminference.md.
 *
 * No public code exists; the [inferred] choices (all behind params fields, all in the plan name):
 *  - grid stride search: fold the column profile of the last rows (outside sink and local window) by
 *    residue for each candidate stride, each entry capped at the mass a line of a perfect grid would hold,
 *    score = excess of the best residue's capped mass fraction over its share of positions; plus the same
 *    on a row profile (each row's estimated attention fraction outside its local window, from strided
 *    probes), which finds horizontal lines the column profile cannot see;
 *  - grid active set: vertical lines + grid rows (all causal keys) + local band + sink, on original positions;
 *  - 2D-boundary parts restrict cols and spans to the key modality; bands stay diagonals of all keys.
 *
 * Flow: validate -> per (b, h) in parallel (one thread per head, results kept per head): per group,
 * estimation rows' probabilities (ak__dyn_rows_probs), each part's selection, rows split into classes
 * (same grid-row membership) -> sequentially, every class cut into gather lists of `block` rows in the
 * builder -> plan. Deterministic: each head is computed by one thread in a fixed order.
 */
#include "dynamic/dyn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MMI_RUN_SPAN 4   /* this many consecutive cols or more are lowered as one span */
#define MMI_ROW_CHUNK 16 /* rows per row-profile product */
#define MMI_EXPLAIN 1024 /* explain text kept per head */

static const char *const pattern_names[3] = {"vs", "ashape", "grid"};
static const char *const boundary_names[4] = {"none", "k", "q", "2d"};

void ak_mminference_params_init(ak_mminference_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->modality = NULL;
    p->n_modalities = 1;
    p->boundary = AK_MMI_NO_BOUNDARY;
    for (int m = 0; m < AK_MMI_MAX_MODALITIES; m++) {
        p->pattern[m] = m == 0 ? AK_MMI_VS : AK_MMI_GRID;
        p->vertical_size[m] = 1000;
        p->slash_size[m] = 6096;
    }
    p->pair_pattern = NULL;
    p->forced_v = 30;
    p->forced_s = 100;
    p->n_sink = 64;
    p->n_local = 512;
    p->stride = 0;
    p->phase = 0;
    p->stride_min = 2;
    p->stride_max = 1024;
    p->strides = NULL;
    p->n_strides = 0;
    p->grid_rows = 1;
    p->grid_cap = 1;
    p->grid_min_score = 0.25f;
    p->grid_min_lines = 4;
    p->row_probe = 32;
    p->row_ref = 16;
    p->row_weight = 1.0f;
    p->last_q = 64;
    p->block = 64;
}

/* ---- options ("key=value"; per-modality arrays: "pattern=grid" sets all, "pattern1=vs" one) ---- */

static int parse_named(const char *val, const char *const *names, int n, int32_t *out) {
    for (int k = 0; k < n; k++)
        if (!strcmp(val, names[k])) {
            *out = k;
            return 1;
        }
    return ak__dyn_int(val, out);
}

/* key = base or base<m>; sets *m = -1 (all) or the index. 0 if key is not of that form. */
static int indexed_key(const char *key, const char *base, int *m) {
    size_t n = strlen(base);
    if (strncmp(key, base, n)) return 0;
    if (!key[n]) {
        *m = -1;
        return 1;
    }
    if (key[n] < '0' || key[n] > '9' || key[n + 1]) return 0;
    *m = key[n] - '0';
    return *m < AK_MMI_MAX_MODALITIES;
}

static int set_array(int32_t *arr, int m, int32_t v) {
    for (int k = 0; k < AK_MMI_MAX_MODALITIES; k++)
        if (m < 0 || k == m) arr[k] = v;
    return 1;
}

int ak__mminference_opt(void *params, const char *key, const char *val) {
    ak_mminference_params *p = (ak_mminference_params *)params;
    static const char *const bnames[4] = {"none", "k", "q", "2d"};
    int32_t v;
    int m;
    if (!strcmp(key, "boundary")) {
        if (!strcmp(val, "no")) val = "none";
        return parse_named(val, bnames, 4, &p->boundary);
    }
    if (indexed_key(key, "pattern", &m)) return parse_named(val, pattern_names, 3, &v) && set_array(p->pattern, m, v);
    if (indexed_key(key, "vertical_size", &m)) return ak__dyn_int(val, &v) && set_array(p->vertical_size, m, v);
    if (indexed_key(key, "slash_size", &m)) return ak__dyn_int(val, &v) && set_array(p->slash_size, m, v);
    struct {
        const char *name;
        int32_t *field;
    } ints[] = {{"n_modalities", &p->n_modalities},
                {"forced_v", &p->forced_v},
                {"forced_s", &p->forced_s},
                {"n_sink", &p->n_sink},
                {"n_local", &p->n_local},
                {"stride", &p->stride},
                {"phase", &p->phase},
                {"stride_min", &p->stride_min},
                {"stride_max", &p->stride_max},
                {"grid_rows", &p->grid_rows},
                {"grid_cap", &p->grid_cap},
                {"grid_min_lines", &p->grid_min_lines},
                {"row_probe", &p->row_probe},
                {"row_ref", &p->row_ref},
                {"last_q", &p->last_q},
                {"block", &p->block}};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
        if (!strcmp(key, ints[k].name)) return ak__dyn_int(val, ints[k].field);
    if (!strcmp(key, "grid_min_score")) return ak__dyn_float(val, &p->grid_min_score);
    if (!strcmp(key, "row_weight")) return ak__dyn_float(val, &p->row_weight);
    return 0;
}

/* ---- parameter checks ---- */

/* AK_ERR_INVALID_ARGUMENT with "mminference: <message>". */
static ak_status bad(ak_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static ak_status bad(ak_ctx *ctx, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "mminference: %s", msg);
}

static ak_status check_params(ak_ctx *ctx, const ak_mminference_params *p, int32_t nk) {
    const int M = p->n_modalities;
    if (M < 1 || M > AK_MMI_MAX_MODALITIES)
        return bad(ctx, "n_modalities = %d, must be in [1, %d]", M, AK_MMI_MAX_MODALITIES);
    if (p->boundary < AK_MMI_NO_BOUNDARY || p->boundary > AK_MMI_2D_BOUNDARY)
        return bad(ctx, "boundary = %d, must be 0..3 (none, k, q, 2d)", (int)p->boundary);
    for (int32_t j = 0; p->modality && j < nk; j++)
        if (p->modality[j] < 0 || p->modality[j] >= M)
            return bad(ctx, "modality[%d] = %d (token %d) outside [0, n_modalities = %d)", (int)j, (int)p->modality[j],
                       (int)j, M);
    for (int m = 0; m < M; m++) {
        if (p->pattern[m] < AK_MMI_VS || p->pattern[m] > AK_MMI_GRID)
            return bad(ctx, "pattern[%d] = %d, must be 0 (vs), 1 (ashape) or 2 (grid)", m, (int)p->pattern[m]);
        if (p->vertical_size[m] < 1)
            return bad(ctx, "vertical_size[%d] = %d, must be >= 1", m, (int)p->vertical_size[m]);
        if (p->slash_size[m] < 1) return bad(ctx, "slash_size[%d] = %d, must be >= 1", m, (int)p->slash_size[m]);
    }
    for (int x = 0; p->pair_pattern && x < M * M; x++)
        if (p->pair_pattern[x] < -1 || p->pair_pattern[x] > AK_MMI_GRID)
            return bad(ctx, "pair_pattern[%d] = %d, must be -1 (the query modality's pattern), 0, 1 or 2", x,
                       (int)p->pair_pattern[x]);
    if (p->forced_v < 0) return bad(ctx, "forced_v = %d, must be >= 0", (int)p->forced_v);
    if (p->forced_s < 0) return bad(ctx, "forced_s = %d, must be >= 0", (int)p->forced_s);
    if (p->n_sink < 0) return bad(ctx, "n_sink = %d, must be >= 0", (int)p->n_sink);
    if (p->n_local < 1) return bad(ctx, "n_local = %d, must be >= 1", (int)p->n_local);
    if (p->stride < 0) return bad(ctx, "stride = %d, must be >= 0 (0 = search)", (int)p->stride);
    if (p->stride > 0 && (p->phase < 0 || p->phase >= p->stride))
        return bad(ctx, "phase = %d, must be in [0, stride = %d)", (int)p->phase, (int)p->stride);
    if (p->stride == 0 && p->phase != 0)
        return bad(ctx, "phase = %d given without a fixed stride (stride = 0)", (int)p->phase);
    if (p->stride_min < 1) return bad(ctx, "stride_min = %d, must be >= 1", (int)p->stride_min);
    if (p->stride_max < p->stride_min)
        return bad(ctx, "stride_max = %d, must be >= stride_min = %d", (int)p->stride_max, (int)p->stride_min);
    if (!p->strides && p->n_strides != 0) return bad(ctx, "n_strides = %d but strides is NULL", (int)p->n_strides);
    if (p->strides && p->n_strides < 1)
        return bad(ctx, "n_strides = %d, must be >= 1 when strides is given", (int)p->n_strides);
    for (int32_t k = 0; p->strides && k < p->n_strides; k++)
        if (p->strides[k] < 1) return bad(ctx, "strides[%d] = %d, must be >= 1", (int)k, (int)p->strides[k]);
    if (p->grid_rows != 0 && p->grid_rows != 1) return bad(ctx, "grid_rows = %d, must be 0 or 1", (int)p->grid_rows);
    if (p->grid_cap != 0 && p->grid_cap != 1) return bad(ctx, "grid_cap = %d, must be 0 or 1", (int)p->grid_cap);
    if (!isfinite(p->grid_min_score)) return bad(ctx, "grid_min_score = %g, must be finite", (double)p->grid_min_score);
    if (p->grid_min_lines < 1) return bad(ctx, "grid_min_lines = %d, must be >= 1", (int)p->grid_min_lines);
    if (p->row_probe < 0) return bad(ctx, "row_probe = %d, must be >= 0", (int)p->row_probe);
    if (p->row_ref < 1) return bad(ctx, "row_ref = %d, must be >= 1", (int)p->row_ref);
    if (!isfinite(p->row_weight) || p->row_weight < 0.0f)
        return bad(ctx, "row_weight = %g, must be finite and >= 0", (double)p->row_weight);
    if (p->last_q < 1) return bad(ctx, "last_q = %d, must be >= 1", (int)p->last_q);
    if (p->block < 1) return bad(ctx, "block = %d, must be >= 1", (int)p->block);
    return AK_OK;
}

/* ---- small growable int32 arrays (spans and bands as (lo, hi) pairs) ---- */

typedef struct ivec {
    int32_t *v;
    int64_t n, cap;
} ivec;

static int ivec_push(const ak_ctx *ctx, ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int64_t nc = a->cap ? 2 * a->cap : 16;
        int32_t *nv = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)nc);
        if (!nv) return 0;
        if (a->n) memcpy(nv, a->v, sizeof(int32_t) * (size_t)a->n);
        ak__free(ctx, a->v);
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 1;
}

static int ivec_pair(const ak_ctx *ctx, ivec *a, int32_t lo, int32_t hi) {
    return ivec_push(ctx, a, lo) && ivec_push(ctx, a, hi);
}

static int ivec_append(const ak_ctx *ctx, ivec *a, const ivec *b) {
    for (int64_t k = 0; k < b->n; k++)
        if (!ivec_push(ctx, a, b->v[k])) return 0;
    return 1;
}

static void ivec_free(const ak_ctx *ctx, ivec *a) {
    ak__free(ctx, a->v);
    memset(a, 0, sizeof *a);
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* ---- shared (read-only) state of one planner call ---- */

typedef struct mm_group {
    int32_t slot;  /* query modality: pattern / budget index */
    int32_t *rows; /* its rows, ascending */
    int64_t n;
    int32_t nparts;
    int32_t kb[AK_MMI_MAX_MODALITIES];  /* key modality of each part, -1 = all keys */
    int32_t pat[AK_MMI_MAX_MODALITIES]; /* configured pattern of each part */
} mm_group;

typedef struct mm_run {
    ak_dyn_in in;
    const ak_mminference_params *p;
    int32_t M;
    int64_t off;                      /* nk - nq: pos(i) = i + off */
    int32_t *prefix;                  /* [M][nk + 1]: keys of modality b in [0, p) */
    ivec runs[AK_MMI_MAX_MODALITIES]; /* maximal runs (lo, hi) of each modality's positions */
    mm_group groups[AK_MMI_MAX_MODALITIES];
    int32_t n_groups;
    int dense; /* decode: every head dense */
} mm_run;

static inline int in_k(const mm_run *R, int32_t kb, int64_t j) {
    return kb < 0 || (R->p->modality ? R->p->modality[j] : 0) == kb;
}

/* Keys of K (kb; -1 = all) in [lo, hi). */
static int64_t count_k(const mm_run *R, int32_t kb, int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > R->in.nk) hi = R->in.nk;
    if (hi <= lo) return 0;
    if (kb < 0) return hi - lo;
    const int32_t *c = R->prefix + (size_t)kb * ((size_t)R->in.nk + 1);
    return c[hi] - c[lo];
}

/* Spans of the keys of K inside [lo, hi). */
static int add_k_spans(const mm_run *R, int32_t kb, int64_t lo, int64_t hi, ivec *spans) {
    if (hi > R->in.nk) hi = R->in.nk;
    if (lo < 0) lo = 0;
    if (kb < 0) return lo >= hi || ivec_pair(R->in.ctx, spans, (int32_t)lo, (int32_t)hi);
    const ivec *r = &R->runs[kb];
    for (int64_t k = 0; k < r->n; k += 2) {
        int64_t a = r->v[k] > lo ? r->v[k] : lo, z = r->v[k + 1] < hi ? r->v[k + 1] : hi;
        if (a < z && !ivec_pair(R->in.ctx, spans, (int32_t)a, (int32_t)z)) return 0;
    }
    return 1;
}

/* ---- per-head results ---- */

typedef struct mm_class {
    int32_t *rows; /* ascending */
    int64_t n;
    ivec spans, cols, bands; /* cols sorted, unique, outside the run spans */
} mm_class;

typedef struct mm_head {
    mm_class *cls;
    int32_t ncls, cap;
    int dense;
    ak_status st;
    char explain[MMI_EXPLAIN];
} mm_head;

typedef struct mm_part {
    int32_t kb, pattern; /* pattern run (VS after a grid fallback) */
    ivec cols, spans, bands;
    int32_t stride, phase; /* > 0: grid rows pos % stride == phase see all keys of K */
} mm_part;

static void hexplain(mm_head *H, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void hexplain(mm_head *H, const char *fmt, ...) {
    size_t n = strlen(H->explain);
    if (n + 1 >= sizeof H->explain) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(H->explain + n, sizeof H->explain - n, fmt, ap);
    va_end(ap);
}

static mm_class *new_class(const ak_ctx *ctx, mm_head *H) {
    if (H->ncls == H->cap) {
        int32_t nc = H->cap ? 2 * H->cap : 8;
        mm_class *c = (mm_class *)ak__alloc(ctx, sizeof(mm_class) * (size_t)nc);
        if (!c) return NULL;
        if (H->ncls) memcpy(c, H->cls, sizeof(mm_class) * (size_t)H->ncls);
        ak__free(ctx, H->cls);
        H->cls = c;
        H->cap = nc;
    }
    mm_class *c = &H->cls[H->ncls++];
    memset(c, 0, sizeof *c);
    return c;
}

static void head_free(const ak_ctx *ctx, mm_head *H) {
    for (int32_t c = 0; c < H->ncls; c++) {
        ak__free(ctx, H->cls[c].rows);
        ivec_free(ctx, &H->cls[c].spans);
        ivec_free(ctx, &H->cls[c].cols);
        ivec_free(ctx, &H->cls[c].bands);
    }
    ak__free(ctx, H->cls);
    H->cls = NULL;
    H->ncls = H->cap = 0;
}

/* ---- vertical-slash of one part: P [L][nk] of the estimation rows at positions pos_r[0..L) ---- */

static ak_status vs_select(const mm_run *R, int32_t kb, int32_t slot, const float *P, const int64_t *pos_r, int32_t L,
                           mm_part *pt, mm_head *H) {
    const ak_ctx *ctx = R->in.ctx;
    const int64_t nk = R->in.nk, n = pos_r[L - 1] + 1; /* candidates: keys / offsets <= plast */
    double *vs = (double *)ak__alloc(ctx, sizeof(double) * (size_t)n * 2);
    int32_t *idx = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)n);
    if (!vs || !idx) {
        ak__free(ctx, vs);
        ak__free(ctx, idx);
        return AK_ERR_OUT_OF_MEMORY;
    }
    double *ss = vs + n;
    for (int64_t j = 0; j < n; j++) {
        vs[j] = in_k(R, kb, j) ? 0.0 : -INFINITY;
        ss[j] = 0.0;
    }
    for (int32_t r = 0; r < L; r++) { /* vertical and slash sums over the keys of K */
        const float *x = P + (size_t)r * (size_t)nk;
        for (int64_t j = 0; j <= pos_r[r]; j++)
            if (vs[j] != -INFINITY) {
                vs[j] += x[j];
                ss[pos_r[r] - j] += x[j];
            }
    }
    for (int64_t j = 0; j < n && j < R->p->forced_v; j++)
        if (vs[j] != -INFINITY) vs[j] = INFINITY;
    for (int64_t t = 0; t < n && t < R->p->forced_s; t++) ss[t] = INFINITY;
    ss[0] = INFINITY;
    int64_t kv = count_k(R, kb, 0, n), ks = n, ok = 1;
    if (kv > R->p->vertical_size[slot]) kv = R->p->vertical_size[slot];
    if (ks > R->p->slash_size[slot]) ks = R->p->slash_size[slot];
    int64_t gv = ak__dyn_topk(ctx, vs, n, kv, 0, idx);
    for (int64_t k = 0; k < gv && ok; k++) ok = ivec_push(ctx, &pt->cols, idx[k]);
    int64_t gs = ak__dyn_topk(ctx, ss, n, ks, 0, idx);
    for (int64_t k = 0; k < gs && ok; k++) { /* ascending offsets: merge consecutive ones into one band */
        if (pt->bands.n && pt->bands.v[pt->bands.n - 1] + 1 == idx[k])
            pt->bands.v[pt->bands.n - 1] = idx[k];
        else
            ok = ivec_pair(ctx, &pt->bands, idx[k], idx[k]);
    }
    ak__free(ctx, vs);
    ak__free(ctx, idx);
    if (gv < 0 || gs < 0 || !ok) return AK_ERR_OUT_OF_MEMORY;
    pt->pattern = AK_MMI_VS;
    hexplain(H, "vs(v=%lld,s=%lld)", (long long)gv, (long long)gs);
    return AK_OK;
}

/* Sink spans of K and the local band [0, n_local - 1] (A-shape, and the non-line part of a grid). */
static ak_status sink_local(const mm_run *R, int32_t kb, int64_t plast, mm_part *pt) {
    int64_t hi = R->p->n_sink < plast + 1 ? R->p->n_sink : plast + 1;
    if (!add_k_spans(R, kb, 0, hi, &pt->spans) || !ivec_pair(R->in.ctx, &pt->bands, 0, R->p->n_local - 1))
        return AK_ERR_OUT_OF_MEMORY;
    return AK_OK;
}

/* ---- grid: stride / phase search ---- */

typedef struct mm_grid {
    int found;
    int32_t stride, phase;
    double score, ex_v, ex_h;
} mm_grid;

/* A profile on the positions [lo, lo + len): x[u] (0 off the support), ind[u] = 1 on the support (n
 * positions, total T); heavy = the support offsets whose value may exceed a cap, by value descending. */
typedef struct mm_prof {
    int64_t lo, len, n, nheavy;
    double *x, *ind, T;
    int32_t *heavy;
} mm_prof;

typedef struct vi_pair {
    double v;
    int32_t i;
} vi_pair;

static int cmp_vi_desc(const void *x, const void *y) {
    const vi_pair *a = (const vi_pair *)x, *b = (const vi_pair *)y;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int prof_alloc(const ak_ctx *ctx, mm_prof *f, int64_t lo, int64_t len) {
    memset(f, 0, sizeof *f);
    f->lo = lo;
    f->len = len > 0 ? len : 0;
    f->x = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(2 * f->len + 1));
    f->heavy = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(f->len + 1));
    if (!f->x || !f->heavy) return 0;
    f->ind = f->x + f->len;
    memset(f->x, 0, sizeof(double) * (size_t)(2 * f->len));
    return 1;
}

static void prof_free(const ak_ctx *ctx, mm_prof *f) {
    ak__free(ctx, f->x);
    ak__free(ctx, f->heavy);
    memset(f, 0, sizeof *f);
}

/* n, T and the heavy list (entries above the smallest cap T * smin / n). */
static int prof_finish(const ak_ctx *ctx, mm_prof *f, int32_t smin) {
    f->n = 0;
    f->T = 0.0;
    for (int64_t u = 0; u < f->len; u++)
        if (f->ind[u] != 0.0) {
            f->n++;
            f->T += f->x[u];
        }
    if (f->n == 0) return 1;
    const double cmin = f->T * (double)smin / (double)f->n;
    vi_pair *a = (vi_pair *)ak__alloc(ctx, sizeof(vi_pair) * (size_t)f->n);
    if (!a) return 0;
    int64_t k = 0;
    for (int64_t u = 0; u < f->len; u++)
        if (f->ind[u] != 0.0 && f->x[u] > cmin) {
            a[k].v = f->x[u];
            a[k++].i = (int32_t)u;
        }
    qsort(a, (size_t)k, sizeof *a, cmp_vi_desc);
    for (int64_t t = 0; t < k; t++) f->heavy[t] = a[t].i;
    f->nheavy = k;
    ak__free(ctx, a);
    return 1;
}

/* The profile folded by residue mod s: ex[r] = capped mass fraction of the positions = r (mod s) minus
 * their share of the support, cnt[r] = their count (0 everywhere when the capped mass is 0). The sums run
 * over contiguous slices (vectorisable); the cap is applied afterwards from the heavy list. */
static void fold(const mm_prof *f, int32_t s, int cap, double *ex, double *cnt) {
    for (int32_t r = 0; r < s; r++) ex[r] = cnt[r] = 0.0;
    if (f->n == 0) return;
    const int64_t r0 = f->lo % s;
    for (int64_t base = 0; base < f->len; base += s) {
        const int64_t m = f->len - base < s ? f->len - base : s, a = s - r0 < m ? s - r0 : m;
        const double *x = f->x + base, *w = f->ind + base;
        double *e0 = ex + r0, *c0 = cnt + r0;
        for (int64_t t = 0; t < a; t++) {
            e0[t] += x[t];
            c0[t] += w[t];
        }
        for (int64_t t = a; t < m; t++) {
            ex[t - a] += x[t];
            cnt[t - a] += w[t];
        }
    }
    double tc = f->T;
    if (cap) {
        const double cv = f->T * (double)s / (double)f->n;
        for (int64_t k = 0; k < f->nheavy && f->x[f->heavy[k]] > cv; k++) {
            const double over = f->x[f->heavy[k]] - cv;
            ex[(f->lo + f->heavy[k]) % s] -= over;
            tc -= over;
        }
    }
    for (int32_t r = 0; r < s; r++) ex[r] = tc > 0.0 ? ex[r] / tc - cnt[r] / (double)f->n : 0.0;
}

/* Row profile of the group's rows against the keys of K (attnkit.h): fh->x[pos - lo] = the estimated
 * attention fraction outside the local window; probe: ascending key positions. */
static ak_status row_profile(const mm_run *R, int64_t b, int32_t h, int32_t kvh, const mm_group *g, int32_t kb,
                             const int32_t *probe, int32_t np, mm_prof *fh) {
    const ak_dyn_in *in = &R->in;
    const ak_ctx *ctx = in->ctx;
    const int d = in->d, C = MMI_ROW_CHUNK;
    const int64_t ref = R->p->row_ref < in->nk ? R->p->row_ref : in->nk, nloc = R->p->n_local;
    const int64_t nlmax = C + ref;
    float *kp = (float *)ak__alloc(
        ctx, sizeof(float) * ((size_t)np * d + (size_t)C * d + (size_t)nlmax * d + (size_t)C * np + (size_t)C * nlmax));
    if (!kp) return AK_ERR_OUT_OF_MEMORY;
    float *q = kp + (size_t)np * d, *kl = q + (size_t)C * d, *sp = kl + (size_t)nlmax * d, *sl = sp + (size_t)C * np;
    for (int32_t t = 0; t < np; t++) ak__dyn_rows(in, &in->t->k, b, kvh, probe[t], 1, d, kp + (size_t)t * d, d);
    ak_status st = AK_OK;
    for (int64_t i = 0; i < g->n && st == AK_OK;) {
        int64_t m = 1; /* a chunk: up to C rows at consecutive positions */
        while (i + m < g->n && m < C && g->rows[i + m] == g->rows[i + m - 1] + 1) m++;
        const int64_t p0 = g->rows[i] + R->off, p1 = p0 + m - 1;
        if (p1 - nloc < probe[0]) { /* no row of the chunk sees a probe */
            i += m;
            continue;
        }
        const int64_t lo = p0 - ref + 1 > 0 ? p0 - ref + 1 : 0, nl = p1 - lo + 1;
        ak__dyn_rows(in, &in->t->q, b, h, g->rows[i], m, d, q, d);
        ak__dyn_rows(in, &in->t->k, b, kvh, lo, nl, d, kl, d);
        st = ak__dyn_scores(in, (int)m, np, d, q, d, kp, d, in->scale, sp, np);
        if (st == AK_OK) st = ak__dyn_scores(in, (int)m, nl, d, q, d, kl, d, in->scale, sl, nl);
        for (int64_t r = 0; r < m && st == AK_OK; r++) {
            const int64_t pos = p0 + r, lim = pos - nloc, l0 = pos - ref + 1 > 0 ? pos - ref + 1 : 0;
            int32_t nv = 0;
            while (nv < np && probe[nv] <= lim) nv++;
            if (nv == 0) continue;
            const float *a = sp + r * np, *c = sl + r * nl;
            double mx = -INFINITY, fs = 0.0, ls = 0.0;
            for (int32_t t = 0; t < nv; t++) mx = a[t] > mx ? a[t] : mx;
            for (int64_t j = l0; j <= pos; j++) mx = c[j - lo] > mx ? c[j - lo] : mx;
            for (int32_t t = 0; t < nv; t++) fs += exp((double)a[t] - mx);
            for (int64_t j = l0; j <= pos; j++) ls += exp((double)c[j - lo] - mx);
            const double far = (double)count_k(R, kb, R->p->n_sink, lim + 1) * fs / nv, x = far / (far + ls);
            fh->x[pos - fh->lo] = x >= 0.0 && x <= 1.0 ? x : 0.0; /* NaN (non-finite inputs) -> 0 */
            fh->ind[pos - fh->lo] = 1.0;
        }
        i += m;
    }
    ak__free(ctx, kp);
    return st;
}

/* Candidate c of the search: the strides list, or the range. */
static int32_t candidate(const ak_mminference_params *p, int32_t c) {
    return p->strides ? p->strides[c] : p->stride_min + c;
}

/* Column profile of a part on [n_sink, plast - n_local]: each estimation row's mass outside its local window,
 * at the keys of K. */
static void col_profile(const mm_run *R, int32_t kb, const float *P, const int64_t *pos_r, int32_t L, mm_prof *fv) {
    const int64_t nk = R->in.nk, lo = fv->lo, nloc = R->p->n_local;
    for (int32_t r = 0; r < L; r++) {
        const float *x = P + (size_t)r * (size_t)nk;
        for (int64_t j = lo; j <= pos_r[r] - nloc; j++) fv->x[j - lo] += x[j];
    }
    for (int64_t u = 0; u < fv->len; u++) {
        if (in_k(R, kb, lo + u))
            fv->ind[u] = 1.0;
        else
            fv->x[u] = 0.0;
    }
}

/* Row profile of a part: np = min(row_probe, support) probes evenly spaced in the column support. */
static ak_status probe_rows(const mm_run *R, int64_t b, int32_t h, int32_t kvh, const mm_group *g, int32_t kb,
                            const mm_prof *fv, mm_prof *fh) {
    const ak_ctx *ctx = R->in.ctx;
    const int32_t np = fv->n < R->p->row_probe ? (int32_t)fv->n : R->p->row_probe;
    int32_t *sup = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)fv->n),
            *pr = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)np);
    ak_status st = sup && pr ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK) {
        int64_t k = 0;
        for (int64_t u = 0; u < fv->len; u++)
            if (fv->ind[u] != 0.0) sup[k++] = (int32_t)(fv->lo + u);
        for (int32_t t = 0; t < np; t++) pr[t] = sup[(int64_t)((t + 0.5) * (double)fv->n / np)];
        st = row_profile(R, b, h, kvh, g, kb, pr, np, fh);
    }
    ak__free(ctx, sup);
    ak__free(ctx, pr);
    return st;
}

/* The best (stride, phase) over the candidates (attnkit.h); buf holds 4 * (largest candidate) doubles. */
static void best_stride(const ak_mminference_params *p, int64_t nk, const mm_prof *fv, const mm_prof *fh, double *buf,
                        int32_t smax, mm_grid *out) {
    double *ev = buf, *cv = ev + smax, *eh = cv + smax, *ch = eh + smax;
    const int32_t nc = p->strides ? p->n_strides : p->stride_max - p->stride_min + 1;
    for (int32_t c = 0; c < nc; c++) {
        const int32_t s = candidate(p, c);
        if (s > nk) continue;
        fold(fv, s, p->grid_cap, ev, cv);
        fold(fh, s, p->grid_cap, eh, ch);
        for (int32_t ph = 0; ph < s; ph++) {
            if (cv[ph] < p->grid_min_lines || (fh->n > 0 && ch[ph] < p->grid_min_lines)) continue;
            const double sc = ev[ph] + (fh->n > 0 ? (double)p->row_weight * eh[ph] : 0.0);
            if (!out->found || sc > out->score ||
                (sc == out->score && (s < out->stride || (s == out->stride && ph < out->phase)))) {
                out->found = 1;
                out->stride = s;
                out->phase = ph;
                out->score = sc;
                out->ex_v = ev[ph];
                out->ex_h = fh->n > 0 ? eh[ph] : 0.0;
            }
        }
    }
}

/* Search (stride, phase) for part (g, kb) from the column profile of P and the row profile (attnkit.h). */
static ak_status grid_search(const mm_run *R, int64_t b, int32_t h, int32_t kvh, const mm_group *g, int32_t kb,
                             const float *P, const int64_t *pos_r, int32_t L, mm_grid *out) {
    const ak_mminference_params *p = R->p;
    const ak_ctx *ctx = R->in.ctx;
    const int64_t nk = R->in.nk, vlo = p->n_sink, vhi = pos_r[L - 1] - p->n_local; /* column support [vlo, vhi] in K */
    const int32_t nc = p->strides ? p->n_strides : p->stride_max - p->stride_min + 1;
    memset(out, 0, sizeof *out);
    int32_t smin = INT32_MAX, smax = 0;
    for (int32_t c = 0; c < nc; c++) {
        const int32_t s = candidate(p, c);
        if (s > nk) continue;
        smin = s < smin ? s : smin;
        smax = s > smax ? s : smax;
    }
    if (smax == 0 || count_k(R, kb, vlo, vhi + 1) == 0) return AK_OK; /* no candidate or no support: no grid */
    mm_prof fv, fh;
    const int64_t hlo = g->rows[0] + R->off, hhi = g->rows[g->n - 1] + R->off; /* row profile positions */
    int ok = prof_alloc(ctx, &fv, vlo, vhi - vlo + 1);
    ok = prof_alloc(ctx, &fh, hlo, p->row_probe > 0 ? hhi - hlo + 1 : 0) && ok;
    double *buf = (double *)ak__alloc(ctx, sizeof(double) * 4 * (size_t)smax);
    ak_status st = ok && buf ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK) {
        col_profile(R, kb, P, pos_r, L, &fv);
        if (!prof_finish(ctx, &fv, smin)) st = AK_ERR_OUT_OF_MEMORY;
    }
    if (st == AK_OK && p->row_probe > 0 && (st = probe_rows(R, b, h, kvh, g, kb, &fv, &fh)) == AK_OK &&
        !prof_finish(ctx, &fh, smin))
        st = AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK) best_stride(p, nk, &fv, &fh, buf, smax, out);
    prof_free(ctx, &fv);
    prof_free(ctx, &fh);
    ak__free(ctx, buf);
    return st;
}

/* Grid part: stride / phase fixed or searched (fallback: VS), then vertical lines, sink, local band. */
static ak_status grid_part(const mm_run *R, int64_t b, int32_t h, int32_t kvh, const mm_group *g, int32_t kb,
                           const float *P, const int64_t *pos_r, int32_t L, mm_part *pt, mm_head *H) {
    const ak_mminference_params *p = R->p;
    const int64_t plast = g->rows[g->n - 1] + R->off;
    mm_grid gr;
    memset(&gr, 0, sizeof gr);
    if (p->stride > 0) {
        gr.found = 1;
        gr.stride = p->stride;
        gr.phase = p->phase;
    } else {
        ak_status st = grid_search(R, b, h, kvh, g, kb, P, pos_r, L, &gr);
        if (st != AK_OK) return st;
        if (!gr.found || gr.score < (double)p->grid_min_score) {
            if (gr.found)
                hexplain(H, "grid->vs(score=%.5f,s=%d,p=%d)", gr.score, (int)gr.stride, (int)gr.phase);
            else
                hexplain(H, "grid->vs(no candidate)");
            return vs_select(R, kb, g->slot, P, pos_r, L, pt, H);
        }
    }
    for (int64_t j = gr.phase; j <= plast; j += gr.stride)
        if (in_k(R, kb, j) && !ivec_push(R->in.ctx, &pt->cols, (int32_t)j)) return AK_ERR_OUT_OF_MEMORY;
    ak_status st = sink_local(R, kb, plast, pt);
    if (st != AK_OK) return st;
    pt->pattern = AK_MMI_GRID;
    int64_t nrows = 0;
    if (p->grid_rows) {
        pt->stride = gr.stride;
        pt->phase = gr.phase;
        for (int64_t i = 0; i < g->n; i++) nrows += (g->rows[i] + R->off) % gr.stride == gr.phase;
    }
    if (p->stride > 0)
        hexplain(H, "grid(s=%d,p=%d,fixed,rows=%lld)", (int)gr.stride, (int)gr.phase, (long long)nrows);
    else
        hexplain(H, "grid(s=%d,p=%d,score=%.5f,ex_v=%.3f,ex_h=%.3f,rows=%lld)", (int)gr.stride, (int)gr.phase, gr.score,
                 gr.ex_v, gr.ex_h, (long long)nrows);
    return AK_OK;
}

/* ---- one group of one head: parts, then classes of rows ---- */

/* Key sources shared by every class of a group: cols (sorted, unique; runs of MMI_RUN_SPAN or more as spans),
 * sink / part spans, bands. */
static int common_sources(const ak_ctx *ctx, mm_part *parts, int32_t np, mm_class *base) {
    for (int32_t k = 0; k < np; k++)
        if (!ivec_append(ctx, &base->cols, &parts[k].cols) || !ivec_append(ctx, &base->spans, &parts[k].spans) ||
            !ivec_append(ctx, &base->bands, &parts[k].bands))
            return 0;
    ivec *c = &base->cols;
    if (c->n > 1) qsort(c->v, (size_t)c->n, sizeof(int32_t), cmp_i32);
    int64_t w = 0;
    for (int64_t k = 0; k < c->n;) { /* unique; a run of consecutive keys -> one span when long enough */
        int64_t e = k + 1;
        while (e < c->n && c->v[e] <= c->v[e - 1] + 1) e++;
        int32_t lo = c->v[k], hi = c->v[e - 1] + 1;
        if (hi - lo >= MMI_RUN_SPAN) {
            if (!ivec_pair(ctx, &base->spans, lo, hi)) return 0;
        } else {
            for (int32_t j = lo; j < hi; j++) c->v[w++] = j;
        }
        k = e;
    }
    c->n = w;
    return 1;
}

static ak_status assemble(const mm_run *R, const mm_group *g, mm_part *parts, int32_t np, mm_head *H) {
    const ak_ctx *ctx = R->in.ctx;
    const int64_t plast = g->rows[g->n - 1] + R->off;
    mm_class base;
    memset(&base, 0, sizeof base);
    uint8_t *sig = (uint8_t *)ak__alloc(ctx, (size_t)g->n);
    ak_status st = sig && common_sources(ctx, parts, np, &base) ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    int64_t count[256] = {0};
    for (int64_t i = 0; i < g->n && st == AK_OK; i++) { /* grid-row signature: the parts where row i is a grid row */
        int64_t pos = g->rows[i] + R->off;
        unsigned s = 0;
        for (int32_t k = 0; k < np; k++)
            if (parts[k].stride > 0 && pos % parts[k].stride == parts[k].phase) s |= 1u << k;
        sig[i] = (uint8_t)s;
        count[s]++;
    }
    for (unsigned s = 0; s < 256 && st == AK_OK; s++) {
        if (!count[s]) continue;
        mm_class *c = new_class(ctx, H);
        if (!c || !(c->rows = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)count[s]))) {
            st = AK_ERR_OUT_OF_MEMORY;
            break;
        }
        for (int64_t i = 0; i < g->n; i++)
            if (sig[i] == s) c->rows[c->n++] = g->rows[i];
        int ok = ivec_append(ctx, &c->spans, &base.spans) && ivec_append(ctx, &c->cols, &base.cols) &&
                 ivec_append(ctx, &c->bands, &base.bands);
        for (int32_t k = 0; k < np && ok; k++) /* grid rows of part k: every causal key of K */
            if (s & (1u << k)) ok = add_k_spans(R, parts[k].kb, 0, plast + 1, &c->spans);
        if (!ok) st = AK_ERR_OUT_OF_MEMORY;
    }
    ak__free(ctx, sig);
    ivec_free(ctx, &base.spans);
    ivec_free(ctx, &base.cols);
    ivec_free(ctx, &base.bands);
    return st;
}

static ak_status run_group(const mm_run *R, int64_t b, int32_t h, const mm_group *g, mm_head *H) {
    const ak_mminference_params *p = R->p;
    const ak_ctx *ctx = R->in.ctx;
    const int32_t kvh = h / R->in.G, L = g->n < p->last_q ? (int32_t)g->n : p->last_q;
    const int32_t *erows = g->rows + g->n - L;
    int need_p = 0;
    for (int32_t k = 0; k < g->nparts; k++)
        need_p |= g->pat[k] == AK_MMI_VS || (g->pat[k] == AK_MMI_GRID && p->stride == 0);
    int64_t *pos_r = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)L);
    float *P = need_p ? (float *)ak__alloc(ctx, sizeof(float) * (size_t)L * (size_t)R->in.nk) : NULL;
    mm_part parts[AK_MMI_MAX_MODALITIES];
    memset(parts, 0, sizeof parts);
    ak_status st = pos_r && (P || !need_p) ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    for (int32_t r = 0; r < L && st == AK_OK; r++) pos_r[r] = erows[r] + R->off;
    if (st == AK_OK && need_p) st = ak__dyn_rows_probs(&R->in, b, h, kvh, erows, L, 1, P);
    const int64_t plast = g->rows[g->n - 1] + R->off;
    for (int32_t k = 0; k < g->nparts && st == AK_OK; k++) {
        mm_part *pt = &parts[k];
        pt->kb = g->kb[k];
        if (g->kb[k] >= 0)
            hexplain(H, " m%d>%d:", (int)g->slot, (int)g->kb[k]);
        else if (p->boundary == AK_MMI_Q_BOUNDARY)
            hexplain(H, " m%d:", (int)g->slot);
        else
            hexplain(H, " all:");
        switch (g->pat[k]) {
        case AK_MMI_VS: st = vs_select(R, pt->kb, g->slot, P, pos_r, L, pt, H); break;
        case AK_MMI_ASHAPE:
            pt->pattern = AK_MMI_ASHAPE;
            st = sink_local(R, pt->kb, plast, pt);
            hexplain(H, "ashape(sink=%d,local=%d)", (int)p->n_sink, (int)p->n_local);
            break;
        default: st = grid_part(R, b, h, kvh, g, pt->kb, P, pos_r, L, pt, H); break;
        }
    }
    if (st == AK_OK) st = assemble(R, g, parts, g->nparts, H);
    for (int32_t k = 0; k < AK_MMI_MAX_MODALITIES; k++) {
        ivec_free(ctx, &parts[k].cols);
        ivec_free(ctx, &parts[k].spans);
        ivec_free(ctx, &parts[k].bands);
    }
    ak__free(ctx, pos_r);
    ak__free(ctx, P);
    return st;
}

static void plan_head(const mm_run *R, int64_t b, int32_t h, mm_head *H) {
    hexplain(H, "b%lld h%d %s", (long long)b, (int)h, boundary_names[R->p->boundary]);
    if (R->dense) { /* decode: dense, every row with a position */
        H->dense = 1;
        hexplain(H, " dense(decode)\n");
        const mm_group *g = &R->groups[0];
        mm_class *c = g->n ? new_class(R->in.ctx, H) : NULL;
        if (g->n && (!c || !(c->rows = (int32_t *)ak__alloc(R->in.ctx, sizeof(int32_t) * (size_t)g->n)) ||
                     !ivec_pair(R->in.ctx, &c->spans, 0, (int32_t)R->in.nk))) {
            H->st = AK_ERR_OUT_OF_MEMORY;
            return;
        }
        for (int64_t i = 0; i < g->n; i++) c->rows[c->n++] = g->rows[i];
        return;
    }
    for (int32_t k = 0; k < R->n_groups && H->st == AK_OK; k++) H->st = run_group(R, b, h, &R->groups[k], H);
    hexplain(H, "\n");
}

/* ---- setup: modality runs, prefix counts, groups ---- */

static ak_status setup(mm_run *R) {
    const ak_ctx *ctx = R->in.ctx;
    const ak_mminference_params *p = R->p;
    const int64_t nk = R->in.nk, nq = R->in.nq;
    R->M = p->n_modalities;
    R->off = nk - nq;
    R->prefix = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)R->M * (size_t)(nk + 1));
    if (!R->prefix) return AK_ERR_OUT_OF_MEMORY;
    for (int32_t m = 0; m < R->M; m++) {
        int32_t *c = R->prefix + (size_t)m * (size_t)(nk + 1);
        c[0] = 0;
        for (int64_t j = 0; j < nk; j++) {
            int in = (p->modality ? p->modality[j] : 0) == m;
            c[j + 1] = c[j] + in;
            if (!in) continue;
            ivec *r = &R->runs[m];
            if (r->n && r->v[r->n - 1] == j)
                r->v[r->n - 1] = (int32_t)j + 1;
            else if (!ivec_pair(ctx, r, (int32_t)j, (int32_t)j + 1))
                return AK_ERR_OUT_OF_MEMORY;
        }
    }
    const int64_t first = R->off < 0 ? -R->off : 0; /* rows with a position >= 0 */
    const int by_mod = p->boundary == AK_MMI_Q_BOUNDARY || p->boundary == AK_MMI_2D_BOUNDARY;
    R->dense = nq == 1;
    for (int32_t a = 0; a < (by_mod && !R->dense ? R->M : 1); a++) {
        mm_group *g = &R->groups[R->n_groups];
        int64_t n = 0;
        for (int64_t i = first; i < nq; i++)
            n += !by_mod || R->dense || (p->modality ? p->modality[i + R->off] : 0) == a;
        if (n == 0) continue;
        g->rows = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)n);
        if (!g->rows) return AK_ERR_OUT_OF_MEMORY;
        R->n_groups++;
        for (int64_t i = first; i < nq; i++)
            if (!by_mod || R->dense || (p->modality ? p->modality[i + R->off] : 0) == a) g->rows[g->n++] = (int32_t)i;
        g->slot = a;
        const int64_t plast = g->rows[n - 1] + R->off;
        if (p->boundary != AK_MMI_2D_BOUNDARY) {
            g->nparts = 1;
            g->kb[0] = -1;
            g->pat[0] = p->pattern[a];
            continue;
        }
        for (int32_t kb = 0; kb < R->M; kb++) { /* parts: key modalities with a key <= the group's last position */
            if (count_k(R, kb, 0, plast + 1) == 0) continue;
            int32_t pp = p->pair_pattern ? p->pair_pattern[a * R->M + kb] : -1;
            g->kb[g->nparts] = kb;
            g->pat[g->nparts++] = pp >= 0 ? pp : p->pattern[a];
        }
    }
    return AK_OK;
}

static void run_free(mm_run *R) {
    const ak_ctx *ctx = R->in.ctx;
    ak__free(ctx, R->prefix);
    for (int32_t m = 0; m < AK_MMI_MAX_MODALITIES; m++) {
        ivec_free(ctx, &R->runs[m]);
        ak__free(ctx, R->groups[m].rows);
    }
}

/* ---- plan name: every choice ---- */

static void append(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    if (n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

static void plan_name(const ak_mminference_params *p, char *buf, size_t cap) {
    buf[0] = 0;
    append(buf, cap, "mminference(bd=%s,M=%d,pat=", boundary_names[p->boundary], (int)p->n_modalities);
    for (int m = 0; m < p->n_modalities; m++) append(buf, cap, "%s%s", m ? "/" : "", pattern_names[p->pattern[m]]);
    append(buf, cap, "%s,v=", p->pair_pattern && p->boundary == AK_MMI_2D_BOUNDARY ? "+pairs" : "");
    for (int m = 0; m < p->n_modalities; m++) append(buf, cap, "%s%d", m ? "/" : "", (int)p->vertical_size[m]);
    append(buf, cap, ",s=");
    for (int m = 0; m < p->n_modalities; m++) append(buf, cap, "%s%d", m ? "/" : "", (int)p->slash_size[m]);
    append(buf, cap, ",f=%d/%d,sink=%d,local=%d,", (int)p->forced_v, (int)p->forced_s, (int)p->n_sink, (int)p->n_local);
    if (p->stride > 0)
        append(buf, cap, "grid=fixed(%d,%d)", (int)p->stride, (int)p->phase);
    else if (p->strides)
        append(buf, cap, "grid=list(%d)", (int)p->n_strides);
    else
        append(buf, cap, "grid=%d..%d", (int)p->stride_min, (int)p->stride_max);
    append(buf, cap, ",rows=%d,score=%s,min=%g/%d,probe=%d/%d/%g,lq=%d,bq=%d)", (int)p->grid_rows,
           p->grid_cap ? "capexcess" : "excess", (double)p->grid_min_score, (int)p->grid_min_lines, (int)p->row_probe,
           (int)p->row_ref, (double)p->row_weight, (int)p->last_q, (int)p->block);
}

/* ---- the builder: every head's classes cut into gather lists ---- */

static ak_status add_class_blocks(ak_sparse_builder *bd, const mm_run *R, int32_t b, int32_t h, const mm_class *c,
                                  int32_t *qb) {
    const int64_t bq = R->p->block;
    ak_status st = AK_OK;
    for (int64_t i0 = 0; i0 < c->n && st == AK_OK; i0 += bq, (*qb)++) {
        const int64_t i1 = i0 + bq < c->n ? i0 + bq : c->n, pmax = c->rows[i1 - 1] + R->off;
        for (int64_t i = i0; i < i1 && st == AK_OK; i++) st = ak_sparse_builder_add_row(bd, b, h, *qb, c->rows[i]);
        for (int64_t k = 0; k < c->spans.n && st == AK_OK; k += 2)
            if (c->spans.v[k] <= pmax) st = ak_sparse_builder_add_span(bd, b, h, *qb, c->spans.v[k], c->spans.v[k + 1]);
        for (int64_t k = 0; k < c->cols.n && c->cols.v[k] <= pmax && st == AK_OK; k++)
            st = ak_sparse_builder_add_col(bd, b, h, *qb, c->cols.v[k]);
        for (int64_t k = 0; k < c->bands.n && st == AK_OK; k += 2)
            if (c->bands.v[k] <= pmax) st = ak_sparse_builder_add_band(bd, b, h, *qb, c->bands.v[k], c->bands.v[k + 1]);
    }
    return st;
}

static ak_status build(const mm_run *R, mm_head *heads, ak_sparse **out) {
    const int32_t B = R->in.B, Hq = R->in.Hq;
    const int64_t bq = R->p->block;
    int64_t nqb = 0;
    for (int64_t x = 0; x < (int64_t)B * Hq; x++) {
        int64_t n = 0;
        for (int32_t c = 0; c < heads[x].ncls; c++) n += (heads[x].cls[c].n + bq - 1) / bq;
        nqb = n > nqb ? n : nqb;
    }
    if (nqb > INT32_MAX)
        return ak__fail(R->in.ctx, AK_ERR_INVALID_ARGUMENT, "mminference: %lld query lists", (long long)nqb);
    ak_sparse_desc geom;
    ak_sparse_desc_init(&geom);
    geom.n_batch = B;
    geom.n_heads = Hq;
    geom.nq = R->in.nq;
    geom.nk = R->in.nk;
    geom.causal = 1;
    geom.block_q = R->p->block;
    geom.n_qblocks = (int32_t)nqb;
    ak_sparse_builder *bd = NULL;
    ak_status st = ak_sparse_builder_create(R->in.ctx, &geom, &bd);
    for (int32_t b = 0; b < B && st == AK_OK; b++)
        for (int32_t h = 0; h < Hq && st == AK_OK; h++) {
            const mm_head *H = &heads[(int64_t)b * Hq + h];
            int32_t qb = 0;
            for (int32_t c = 0; c < H->ncls && st == AK_OK; c++) st = add_class_blocks(bd, R, b, h, &H->cls[c], &qb);
        }
    char name[256];
    plan_name(R->p, name, sizeof name);
    if (st == AK_OK) st = ak__sparse_finish_named(bd, name, out);
    ak_sparse_builder_destroy(bd);
    return st;
}

/* ---- the planner ---- */

ak_status ak_mminference_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t,
                              const ak_mminference_params *params, ak_sparse **out, ak_dyn_info *info) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "mminference: out is NULL");
    ak_mminference_params defaults;
    ak_mminference_params_init(&defaults);
    mm_run R;
    memset(&R, 0, sizeof R);
    R.p = params ? params : &defaults;
    ak_status st = ak__dyn_begin(ctx, desc, t, 0, 0, "mminference", &R.in);
    if (st != AK_OK) return st;
    if (!desc->causal)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "mminference: desc.causal = 0; the method is causal only");
    if (st == AK_OK) st = check_params(ctx, R.p, R.in.nk);
    if (st == AK_OK && (st = setup(&R)) != AK_OK) st = ak__fail(ctx, st, "mminference: out of memory (setup)");
    const int64_t nh = (int64_t)R.in.B * R.in.Hq;
    mm_head *heads = st == AK_OK ? (mm_head *)ak__alloc(ctx, sizeof(mm_head) * (size_t)(nh > 0 ? nh : 1)) : NULL;
    if (st == AK_OK && !heads) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "mminference: %lld heads", (long long)nh);
    if (st == AK_OK) {
        memset(heads, 0, sizeof(mm_head) * (size_t)nh);
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic)
#endif
        for (int64_t x = 0; x < nh; x++) plan_head(&R, x / R.in.Hq, (int32_t)(x % R.in.Hq), &heads[x]);
        for (int64_t x = 0; x < nh && st == AK_OK; x++)
            if (heads[x].st != AK_OK)
                st = ak__fail(ctx, heads[x].st, "mminference: estimation of head %lld: %s", (long long)x,
                              ak_status_string(heads[x].st));
        if (st == AK_OK) st = build(&R, heads, out);
    }
    if (st == AK_OK && info) {
        memset(info, 0, sizeof *info);
        ak__dyn_explain(info,
                        "%s\n[inferred] grid: stride/phase = best capped residue excess of the column%s profile; %s; "
                        "2d: bands are not clipped to the key modality\n",
                        ak_sparse_name(*out), R.p->row_probe > 0 ? " + row" : "",
                        R.p->grid_rows ? "grid rows see all causal keys" : "no grid rows");
        for (int64_t x = 0; x < nh; x++) {
            ak__dyn_explain(info, "%s", heads[x].explain);
            info->n_dense_heads += heads[x].dense;
        }
        ak__dyn_info_finish(&R.in, *out, info);
    }
    for (int64_t x = 0; heads && x < nh; x++) head_free(ctx, &heads[x]);
    ak__free(ctx, heads);
    run_free(&R);
    ak__dyn_end(&R.in);
    return st;
}
