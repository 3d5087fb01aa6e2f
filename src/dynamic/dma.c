/*
 * Dynamic Mask Attention, inference form (Shi et al. 2025, arXiv 2508.02124; flash-dmattn; spec dynamic-sparse.md
 * §8; rules in attnkit.h, docs/dynamic/dma.md) as a sparse-plan planner.
 *
 * 1. Scores, per (sequence b, KV head h), from the values: z[t] = w_dt[h] . concat_h' V[b][h'][t] + dt_bias[h]
 *    (double sums), u[t] = (float)(a[h] * softplus(z[t])), bias[t] = u[t] (log form) or exp(u[t]) (exp form).
 *    Work items: (sequence, chunk of DMA_TOKENS tokens), every KV head at once (one read of the token's values).
 * 2. Selection, per (b, h):
 *    dense   (nk <= window): each query block lists [0, its last position]; no cut.
 *    cut     (TOPK, causal): key_score[j] = nk - rank(j) in the order (u desc, index asc) (a radix sort of 64-bit
 *            keys); one pass over the keys in index order with a window-sized min-heap of key scores gives every
 *            row's threshold (the heap minimum once it holds `window` keys, -inf before) and, at each query
 *            block's first row, the set of keys in the heap (kept sorted by index incrementally: the previous set
 *            filtered by "still in the heap" plus the new keys, which all have larger indices). The block lists
 *            that set plus its later keys (up to its last position) that reach the first row's threshold.
 *    shared  (TOPK not causal, RELU): one sorted key list ({top-window} or {u > 0}); each block lists its part up
 *            to the block's last position; no cut.
 * 3. Lowering: runs of >= DMA_SPAN_MIN consecutive keys become spans, shorter runs cols; builder calls in a fixed
 *    order after the parallel parts, so the plan is the same for every thread count.
 */
#include "dynamic/dyn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

#define DMA_SPAN_MIN 64       /* a run of at least this many listed keys is lowered to a span, shorter to cols */
#define DMA_TOKENS 256        /* tokens per score work item */
#define DMA_MAX_NK (1 << 24)  /* key_score = nk - rank is an exact float up to 2^24 */
#define DMA_PAR_MIN (1 << 20) /* multiply-adds below which the scores run on the calling thread */

enum { MODE_DENSE = 0, MODE_CUT = 1, MODE_SHARED = 2 };

void ak_dma_params_init(ak_dma_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->window = 2048;
    p->bias_form = AK_DMA_BIAS_LOG;
    p->mask_type = AK_DMA_TOPK;
    p->block_q = 64;
    p->num_heads_kv = 0;
    p->head_dim_v = 0;
    p->w_dt = NULL;
    p->dt_bias = NULL;
    p->a = NULL;
    p->untrained = 0;
}

/* ---- options ("key=value") ---- */

/* val is one of the names (-> its index) or an integer. */
static int parse_named(const char *val, const char *const *names, const int32_t *codes, int n, int32_t *out) {
    for (int k = 0; k < n; k++)
        if (!strcmp(val, names[k])) {
            *out = codes[k];
            return 1;
        }
    return ak__dyn_int(val, out);
}

int ak__dma_opt(void *params, const char *key, const char *val) {
    ak_dma_params *p = (ak_dma_params *)params;
    static const char *const forms[] = {"log", "linear", "current", "exp", "paper"};
    static const int32_t form_codes[] = {AK_DMA_BIAS_LOG, AK_DMA_BIAS_LOG, AK_DMA_BIAS_LOG, AK_DMA_BIAS_EXP,
                                         AK_DMA_BIAS_EXP};
    static const char *const masks[] = {"topk", "relu"};
    static const int32_t mask_codes[] = {AK_DMA_TOPK, AK_DMA_RELU};
    if (!strcmp(key, "window")) return ak__dyn_int(val, &p->window);
    if (!strcmp(key, "block_q")) return ak__dyn_int(val, &p->block_q);
    if (!strcmp(key, "untrained")) return ak__dyn_int(val, &p->untrained);
    if (!strcmp(key, "bias_form")) return parse_named(val, forms, form_codes, 5, &p->bias_form);
    if (!strcmp(key, "mask_type")) return parse_named(val, masks, mask_codes, 2, &p->mask_type);
    return 0;
}

/* ---- parameters ---- */

static ak_status bad(const ak_ctx *ctx, const char *field, long long v, const char *rule) {
    return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dma: params.%s = %lld, %s", field, v, rule);
}

/* The first non-finite entry of x[n] (-1 if none). */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(x[k])) return k;
    return -1;
}

static ak_status check_params(const ak_dyn_in *in, const ak_dma_params *p) {
    const ak_ctx *ctx = in->ctx;
    if (p->window < 1) return bad(ctx, "window", p->window, "must be >= 1");
    if (p->bias_form != AK_DMA_BIAS_LOG && p->bias_form != AK_DMA_BIAS_EXP)
        return bad(ctx, "bias_form", p->bias_form, "must be AK_DMA_BIAS_LOG (0) or AK_DMA_BIAS_EXP (1)");
    if (p->mask_type != AK_DMA_TOPK && p->mask_type != AK_DMA_RELU)
        return bad(ctx, "mask_type", p->mask_type, "must be AK_DMA_TOPK (0) or AK_DMA_RELU (1)");
    if (p->block_q < 1) return bad(ctx, "block_q", p->block_q, "must be >= 1");
    if (p->untrained != 0 && p->untrained != 1) return bad(ctx, "untrained", p->untrained, "must be 0 or 1");
    if (p->untrained) {
        if (p->w_dt || p->dt_bias || p->a)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                            "dma: params.untrained = 1 takes no w_dt, dt_bias or a (set them to NULL)");
        return AK_OK;
    }
    if (!p->w_dt)
        return ak__fail(ctx, AK_ERR_NULL_POINTER,
                        "dma: params.w_dt is NULL (the layer's dt_proj weight [Hkv][Hkv * dv]; "
                        "untrained = 1 for the parameter-free form)");
    if (!p->a)
        return ak__fail(ctx, AK_ERR_NULL_POINTER,
                        "dma: params.a is NULL (the layer's A [Hkv]; untrained = 1 for the "
                        "parameter-free form)");
    if (p->num_heads_kv != in->Hkv)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH,
                        "dma: params.num_heads_kv = %d, the descriptor has num_heads_kv = %d", (int)p->num_heads_kv,
                        (int)in->Hkv);
    if (p->head_dim_v != in->dv)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH,
                        "dma: params.head_dim_v = %d, the descriptor's value head dim is %d", (int)p->head_dim_v,
                        (int)in->dv);
    const int64_t H = in->Hkv, D = H * in->dv;
    int64_t k = first_nonfinite(p->a, H);
    if (k >= 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dma: params.a[%lld] = %g is not finite", (long long)k,
                        (double)p->a[k]);
    if (p->dt_bias && (k = first_nonfinite(p->dt_bias, H)) >= 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dma: params.dt_bias[%lld] = %g is not finite", (long long)k,
                        (double)p->dt_bias[k]);
    if ((k = first_nonfinite(p->w_dt, H * D)) >= 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dma: params.w_dt[%lld][%lld] = %g is not finite",
                        (long long)(k / D), (long long)(k % D), (double)p->w_dt[k]);
    return AK_OK;
}

/* ---- step 1: u and bias from the values ---- */

/* The learned map in double: W [Hkv][Hkv * dv] (NULL: untrained, z = the head's own values summed times inv),
 * wb, A [Hkv]. */
typedef struct dma_map {
    double *W, *wb, *A, inv;
    int form;
} dma_map;

static ak_status map_make(const ak_dyn_in *in, const ak_dma_params *p, dma_map *m) {
    const int64_t H = in->Hkv, D = H * in->dv;
    memset(m, 0, sizeof *m);
    m->form = p->bias_form;
    m->inv = 1.0 / sqrt((double)in->dv);
    m->wb = (double *)ak__alloc(in->ctx, sizeof(double) * (size_t)(2 * H + (p->untrained ? 0 : H * D)));
    if (!m->wb) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dma: parameters (%lld doubles)", (long long)(H * D));
    m->A = m->wb + H;
    for (int64_t h = 0; h < H; h++) {
        m->wb[h] = p->dt_bias ? (double)p->dt_bias[h] : 0.0;
        m->A[h] = p->untrained ? 1.0 : (double)p->a[h];
    }
    if (!p->untrained) {
        m->W = m->A + H;
        for (int64_t k = 0; k < H * D; k++) m->W[k] = (double)p->w_dt[k];
    }
    return AK_OK;
}

static double softplus(double z) { return z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

/* u and bias of tokens [t0, t0 + n) of sequence b for every KV head: u[h * nk + t] (u, bias: [Hkv][nk] of this
 * sequence); x: scratch [n][Hkv * dv]. Returns the first index h * nk + t whose u or bias is not finite, or -1. */
static int64_t scores_chunk(const ak_dyn_in *in, const dma_map *m, int64_t b, int64_t t0, int64_t n, float *x, float *u,
                            float *bias) {
    const int64_t H = in->Hkv, dv = in->dv, D = H * dv, nk = in->nk;
    for (int64_t h = 0; h < H; h++) ak__dyn_rows(in, &in->t->v, b, h, t0, n, (int)dv, x + h * dv, D);
    int64_t first_bad = -1;
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * D;
        for (int64_t h = 0; h < H; h++) {
            double z = m->wb[h];
            if (m->W) {
                const double *w = m->W + h * D;
                for (int64_t k = 0; k < D; k++) z += w[k] * (double)xr[k];
            } else {
                double s = 0.0;
                for (int64_t c = 0; c < dv; c++) s += (double)xr[h * dv + c];
                z += s * m->inv;
            }
            float uf = (float)(m->A[h] * softplus(z));
            if (uf == 0.0f) uf = 0.0f; /* -0 -> +0: one value, one rank */
            float bf = m->form == AK_DMA_BIAS_EXP ? (float)exp((double)uf) : uf;
            int64_t idx = h * nk + t0 + r;
            u[idx] = uf;
            bias[idx] = bf;
            if ((!isfinite(uf) || !isfinite(bf)) && (first_bad < 0 || idx < first_bad)) first_bad = idx;
        }
    }
    return first_bad;
}

/* u and bias [Hkv][nk] of sequence b, in work items of DMA_TOKENS tokens on the context's threads. */
static ak_status scores_seq(const ak_dyn_in *in, const dma_map *m, int64_t b, float *u, float *bias) {
    const int64_t nk = in->nk, nch = (nk + DMA_TOKENS - 1) / DMA_TOKENS, D = (int64_t)in->Hkv * in->dv;
    int64_t *bad_at = (int64_t *)ak__alloc(in->ctx, sizeof(int64_t) * (size_t)(nch + 1));
    if (!bad_at) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dma: score chunks");
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(in->ctx->n_threads)                                                               \
    schedule(dynamic) if (nch > 1 && nk * D * in->Hkv >= DMA_PAR_MIN)
#endif
    for (int64_t c = 0; c < nch; c++) {
        int64_t t0 = c * DMA_TOKENS, n = nk - t0 < DMA_TOKENS ? nk - t0 : DMA_TOKENS;
        float *x = (float *)ak__alloc(in->ctx, sizeof(float) * (size_t)(n * D));
        bad_at[c] = x ? scores_chunk(in, m, b, t0, n, x, u, bias) : -2;
        ak__free(in->ctx, x);
    }
    ak_status st = AK_OK;
    int64_t first = -1;
    for (int64_t c = 0; c < nch && st == AK_OK; c++) {
        if (bad_at[c] == -2)
            st = ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "dma: value rows");
        else if (bad_at[c] >= 0 && (first < 0 || bad_at[c] < first))
            first = bad_at[c];
    }
    ak__free(in->ctx, bad_at);
    if (st == AK_OK && first >= 0) {
        int64_t h = first / nk, t = first % nk;
        st = ak__fail(
            in->ctx, AK_ERR_INVALID_ARGUMENT,
            "dma: sequence %lld, KV head %lld, key %lld: u = %g, bias = %g is not finite (non-finite values, or "
            "exp(u) overflows in the exp form)",
            (long long)b, (long long)h, (long long)t, (double)u[first], (double)bias[first]);
    }
    return st;
}

/* ---- step 2: the selection of one (b, h) ---- */

typedef struct head_sel {
    float *score;  /* MODE_CUT: key_score [nk] */
    float *thresh; /* MODE_CUT: row_thresh [nq] */
    int64_t *off;  /* MODE_CUT: [n_qb + 1] into keys */
    int32_t *keys; /* MODE_CUT: the blocks' sorted lists; MODE_SHARED: one sorted list of n_keys */
    int64_t n_keys;
    ak_status st;
} head_sel;

static void sel_free(const ak_ctx *ctx, head_sel *s) {
    ak__free(ctx, s->score);
    ak__free(ctx, s->thresh);
    ak__free(ctx, s->off);
    ak__free(ctx, s->keys);
    memset(s, 0, sizeof *s);
}

/* Descending order of a float as an unsigned integer (u finite, no -0): smaller key = larger u. */
static uint32_t desc_key(float u) {
    uint32_t x;
    memcpy(&x, &u, sizeof x);
    x = (x & 0x80000000u) ? ~x : (x | 0x80000000u); /* ascending in u */
    return ~x;
}

/* LSD radix sort of a[n] (8-bit digits; digits equal across all keys skipped); tmp [n]. Result in a. */
static void radix_sort64(uint64_t *a, uint64_t *tmp, int64_t n) {
    uint64_t *src = a, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        int64_t cnt[257];
        memset(cnt, 0, sizeof cnt);
        for (int64_t k = 0; k < n; k++) cnt[((src[k] >> shift) & 255u) + 1]++;
        int same = 0;
        for (int d = 1; d <= 256; d++) same |= cnt[d] == n;
        if (same) continue;
        for (int d = 1; d <= 256; d++) cnt[d] += cnt[d - 1];
        for (int64_t k = 0; k < n; k++) dst[cnt[(src[k] >> shift) & 255u]++] = src[k];
        uint64_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != a) memcpy(a, src, sizeof(uint64_t) * (size_t)n);
}

/* score[j] = nk - rank of j in the order (u desc, index asc): distinct integers in [1, nk]. */
static int rank_scores(const ak_ctx *ctx, const float *u, int64_t nk, float *score) {
    uint64_t *a = (uint64_t *)ak__alloc(ctx, sizeof(uint64_t) * (size_t)(2 * nk + 1));
    if (!a) return 0;
    for (int64_t j = 0; j < nk; j++) a[j] = ((uint64_t)desc_key(u[j]) << 32) | (uint64_t)j;
    radix_sort64(a, a + nk, nk);
    for (int64_t r = 0; r < nk; r++) score[a[r] & 0xffffffffu] = (float)(nk - r);
    ak__free(ctx, a);
    return 1;
}

/* Min-heap of key ids by score (all scores distinct), capacity w; inh[j] = 1 while key j is in it. */
typedef struct kheap {
    int32_t *h;
    int64_t n, w;
    const float *s;
    uint8_t *inh;
} kheap;

static void heap_down(kheap *q, int64_t x) {
    for (;;) {
        int64_t l = 2 * x + 1, r = l + 1, m = x;
        if (l < q->n && q->s[q->h[l]] < q->s[q->h[m]]) m = l;
        if (r < q->n && q->s[q->h[r]] < q->s[q->h[m]]) m = r;
        if (m == x) return;
        int32_t t = q->h[x];
        q->h[x] = q->h[m];
        q->h[m] = t;
        x = m;
    }
}

static void heap_push(kheap *q, int32_t j) {
    if (q->n < q->w) {
        int64_t x = q->n++;
        q->h[x] = j;
        while (x > 0 && q->s[q->h[(x - 1) / 2]] > q->s[q->h[x]]) {
            int32_t t = q->h[x];
            q->h[x] = q->h[(x - 1) / 2];
            q->h[(x - 1) / 2] = t;
            x = (x - 1) / 2;
        }
    } else if (q->s[j] > q->s[q->h[0]]) {
        q->inh[q->h[0]] = 0;
        q->h[0] = j;
        heap_down(q, 0);
    } else {
        return;
    }
    q->inh[j] = 1;
}

/* MODE_CUT for one (b, h): thresholds of every row and the per-block lists (see the file comment). */
static ak_status select_cut(const ak_dyn_in *in, int64_t w, int64_t bs, const float *u, head_sel *s) {
    const ak_ctx *ctx = in->ctx;
    const int64_t nq = in->nq, nk = in->nk, shift = nk - nq, nqb = (nq + bs - 1) / bs;
    const int64_t per = w + bs - 1 < nk ? w + bs - 1 : nk;
    s->score = (float *)ak__alloc(ctx, sizeof(float) * (size_t)nk);
    s->thresh = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(nq > 0 ? nq : 1));
    s->off = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(nqb + 1));
    s->keys = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(nqb * per + 1));
    kheap q = {(int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)w), 0, w, s->score,
               (uint8_t *)ak__alloc(ctx, (size_t)nk)};
    int32_t *sel = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)w);
    ak_status st = AK_OK;
    if (!s->score || !s->thresh || !s->off || !s->keys || !q.h || !q.inh || !sel ||
        !rank_scores(ctx, u, nk, s->score)) {
        st = AK_ERR_OUT_OF_MEMORY;
        goto done;
    }
    memset(q.inh, 0, (size_t)nk);
    for (int64_t i = 0; i < nq; i++) s->thresh[i] = -INFINITY;
    int64_t j = 0, last = -1, nsel = 0, e = 0;
    for (int64_t qb = 0; qb < nqb; qb++) {
        s->off[qb] = e;
        int64_t r0 = qb * bs, r1 = r0 + bs < nq ? r0 + bs : nq;
        if (r0 < -shift) r0 = -shift; /* the first row that sees a key */
        if (r0 >= r1) continue;
        const int64_t P0 = r0 + shift, P1 = r1 - 1 + shift;
        for (; j <= P0; j++) {
            heap_push(&q, (int32_t)j);
            if (j - shift >= 0) s->thresh[j - shift] = j >= w ? s->score[q.h[0]] : -INFINITY;
        }
        /* the heap's keys, sorted: the previous ones still in it, then the new ones (all larger) */
        int64_t m = 0;
        for (int64_t x = 0; x < nsel; x++)
            if (q.inh[sel[x]]) sel[m++] = sel[x];
        for (int64_t k = last + 1; k <= P0; k++)
            if (q.inh[k]) sel[m++] = (int32_t)k;
        nsel = m;
        last = P0;
        const float T = s->thresh[r0];
        if (T == -INFINITY) { /* at most w keys up to P0: every key up to P1 */
            for (int64_t k = 0; k <= P1; k++) s->keys[e++] = (int32_t)k;
            continue;
        }
        memcpy(s->keys + e, sel, sizeof(int32_t) * (size_t)nsel);
        e += nsel;
        for (int64_t k = P0 + 1; k <= P1; k++)
            if (s->score[k] >= T) s->keys[e++] = (int32_t)k;
    }
    s->off[nqb] = e;
    for (; j < nk; j++) { /* the thresholds of the last block's later rows */
        heap_push(&q, (int32_t)j);
        if (j - shift >= 0) s->thresh[j - shift] = j >= w ? s->score[q.h[0]] : -INFINITY;
    }
    s->n_keys = e;
done:
    ak__free(ctx, q.h);
    ak__free(ctx, q.inh);
    ak__free(ctx, sel);
    return st;
}

/* MODE_SHARED for one (b, h): the sorted list of the top-w keys (TOPK, not causal) or of the keys with u > 0 (RELU). */
static ak_status select_shared(const ak_dyn_in *in, const ak_dma_params *p, const float *u, head_sel *s) {
    const int64_t nk = in->nk;
    s->keys = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(nk + 1));
    if (!s->keys) return AK_ERR_OUT_OF_MEMORY;
    if (p->mask_type == AK_DMA_RELU) {
        s->n_keys = 0;
        for (int64_t j = 0; j < nk; j++)
            if (u[j] > 0.0f) s->keys[s->n_keys++] = (int32_t)j;
        return AK_OK;
    }
    s->n_keys = ak__dyn_topk_f(in->ctx, u, nk, p->window, 0, s->keys);
    return s->n_keys < 0 ? AK_ERR_OUT_OF_MEMORY : AK_OK;
}

/* ---- step 3: lowering ---- */

/* Keys k[0..n) (sorted) of list (b, h, qb): runs of >= DMA_SPAN_MIN as spans, the rest as cols. */
static ak_status add_keys(ak_sparse_builder *bld, int32_t b, int32_t h, int32_t qb, const int32_t *k, int64_t n) {
    ak_status st = AK_OK;
    for (int64_t x = 0; x < n && st == AK_OK;) {
        int64_t y = x + 1;
        while (y < n && k[y] == k[y - 1] + 1) y++;
        if (y - x >= DMA_SPAN_MIN) st = ak_sparse_builder_add_span(bld, b, h, qb, k[x], k[y - 1] + 1);
        for (int64_t z = x; z < y && y - x < DMA_SPAN_MIN && st == AK_OK; z++)
            st = ak_sparse_builder_add_col(bld, b, h, qb, k[z]);
        x = y;
    }
    return st;
}

/* First index of sorted v[0..n) with v[x] > lim (n if none). */
static int64_t upper_bound(const int32_t *v, int64_t n, int64_t lim) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (v[mid] <= lim)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static ak_status lower_head(const ak_dyn_in *in, const ak_dma_params *p, int mode, int causal, int32_t b, int32_t h,
                            const head_sel *s, const float *bias, ak_sparse_builder *bld) {
    const int64_t nq = in->nq, nk = in->nk, bs = p->block_q, shift = nk - nq, nqb = (nq + bs - 1) / bs;
    ak_status st = nk > 0 ? ak_sparse_builder_set_key_bias(bld, b, h, bias) : AK_OK;
    if (st == AK_OK && mode == MODE_CUT && nk > 0 && nq > 0)
        st = ak_sparse_builder_set_row_thresh(bld, b, h, s->score, s->thresh);
    for (int64_t qb = 0; qb < nqb && st == AK_OK; qb++) {
        int64_t r1 = (qb + 1) * bs < nq ? (qb + 1) * bs : nq, P1 = causal ? r1 - 1 + shift : nk - 1;
        if (P1 < 0) continue; /* rows before the first key (nq > nk, causal) */
        if (mode == MODE_DENSE)
            st = ak_sparse_builder_add_span(bld, b, h, (int32_t)qb, 0, (int32_t)(P1 + 1));
        else if (mode == MODE_CUT)
            st = add_keys(bld, b, h, (int32_t)qb, s->keys + s->off[qb], s->off[qb + 1] - s->off[qb]);
        else
            st = add_keys(bld, b, h, (int32_t)qb, s->keys, upper_bound(s->keys, s->n_keys, P1));
    }
    return st;
}

/* ---- the planner ---- */

static int plan_mode(const ak_dyn_in *in, const ak_dma_params *p, int causal) {
    if (in->nk <= p->window) return MODE_DENSE;
    return p->mask_type == AK_DMA_TOPK && causal ? MODE_CUT : MODE_SHARED;
}

static void explain(const ak_dyn_in *in, const ak_dma_params *p, int mode, const head_sel *sel, const float *u,
                    const float *bias, const ak_sparse *sp, ak_dyn_info *info) {
    static const char *const form[2] = {"log", "exp"};
    for (int32_t h = 0; h < in->Hkv; h++) {
        const float *uh = u + (int64_t)h * in->nk, *bh = bias + (int64_t)h * in->nk;
        float ulo = INFINITY, uhi = -INFINITY, blo = INFINITY, bhi = -INFINITY;
        for (int64_t j = 0; j < in->nk; j++) {
            ulo = uh[j] < ulo ? uh[j] : ulo;
            uhi = uh[j] > uhi ? uh[j] : uhi;
            blo = bh[j] < blo ? bh[j] : blo;
            bhi = bh[j] > bhi ? bh[j] : bhi;
        }
        ak__dyn_explain(info, "kvh%d: u in [%g, %g], %s bias in [%g, %g]: ", (int)h, (double)ulo, (double)uhi,
                        form[p->bias_form], (double)blo, (double)bhi);
        const head_sel *s = &sel[h]; /* sequence 0 */
        int64_t nqb = ((int64_t)in->nq + p->block_q - 1) / p->block_q;
        if (mode == MODE_DENSE)
            ak__dyn_explain(info, "dense (nk = %d <= window = %d)\n", (int)in->nk, (int)p->window);
        else if (mode == MODE_CUT)
            ak__dyn_explain(info, "top-%d per row (causal), %.1f keys listed per block of %d rows\n", (int)p->window,
                            nqb ? (double)s->n_keys / (double)nqb : 0.0, (int)p->block_q);
        else if (p->mask_type == AK_DMA_RELU)
            ak__dyn_explain(info, "relu: %lld of %d keys with u > 0\n", (long long)s->n_keys, (int)in->nk);
        else
            ak__dyn_explain(info, "top-%d of all keys (not causal): one list for every row\n", (int)p->window);
    }
    if (mode == MODE_DENSE) info->n_dense_heads = in->Hkv;
    ak__dyn_info_finish(in, sp, info);
}

/* Begin: validate and make the learned map. */
static ak_status dma_begin(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dma_params *params,
                           ak_dyn_in *in, dma_map *m) {
    memset(m, 0, sizeof *m);
    ak_status st = ak__dyn_begin(ctx, desc, t, 1, 0, "dma", in);
    if (st != AK_OK) return st;
    if ((st = check_params(in, params)) == AK_OK) st = map_make(in, params, m);
    if (st != AK_OK) ak__dyn_end(in);
    return st;
}

ak_status ak_dma_plan(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dma_params *params,
                      ak_sparse **out, ak_dyn_info *info) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "dma: out is NULL");
    ak_dma_params defaults;
    if (!params) {
        ak_dma_params_init(&defaults);
        params = &defaults;
    }
    ak_dyn_in in;
    dma_map m;
    ak_status st = dma_begin(ctx, desc, t, params, &in, &m);
    if (st != AK_OK) return st;
    const int causal = desc->causal != 0, mode = plan_mode(&in, params, causal);
    const int64_t BH = (int64_t)in.B * in.Hkv, nk = in.nk;
    if (mode == MODE_CUT && nk > DMA_MAX_NK)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                      "dma: seqlen_k = %lld > 2^24 with a causal top-window mask: the per-row cut's "
                      "float key scores would not be exact",
                      (long long)nk);
    float *u = NULL, *bias = NULL;
    head_sel *sel = NULL;
    if (st == AK_OK) {
        u = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(BH * nk + 1));
        bias = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(BH * nk + 1));
        sel = (head_sel *)ak__alloc(ctx, sizeof(head_sel) * (size_t)BH);
        if (!u || !bias || !sel)
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "dma: scores of %lld heads x %lld keys", (long long)BH,
                          (long long)nk);
        else
            memset(sel, 0, sizeof(head_sel) * (size_t)BH);
    }
    for (int64_t b = 0; b < in.B && st == AK_OK; b++)
        st = scores_seq(&in, &m, b, u + b * in.Hkv * nk, bias + b * in.Hkv * nk);
    if (st == AK_OK && mode != MODE_DENSE) {
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic) if (BH > 1 && BH * nk >= DMA_PAR_MIN / 64)
#endif
        for (int64_t x = 0; x < BH; x++)
            sel[x].st = mode == MODE_CUT ? select_cut(&in, params->window, params->block_q, u + x * nk, &sel[x])
                                         : select_shared(&in, params, u + x * nk, &sel[x]);
        for (int64_t x = 0; x < BH && st == AK_OK; x++)
            if (sel[x].st != AK_OK)
                st = ak__fail(ctx, sel[x].st, "dma: selection of sequence %lld, KV head %lld", (long long)(x / in.Hkv),
                              (long long)(x % in.Hkv));
    }
    ak_sparse_builder *bld = NULL;
    if (st == AK_OK) {
        ak_sparse_desc g;
        ak_sparse_desc_init(&g);
        g.n_batch = in.B;
        g.n_heads = in.Hkv;
        g.nq = in.nq;
        g.nk = in.nk;
        g.causal = causal;
        g.block_q = params->block_q;
        st = ak_sparse_builder_create(ctx, &g, &bld);
    }
    for (int64_t x = 0; x < BH && st == AK_OK; x++)
        st = lower_head(&in, params, mode, causal, (int32_t)(x / in.Hkv), (int32_t)(x % in.Hkv), &sel[x], bias + x * nk,
                        bld);
    if (st == AK_OK) {
        char name[128];
        snprintf(name, sizeof name, "dma(%s,w=%d,%s,bq=%d%s)", params->mask_type == AK_DMA_RELU ? "relu" : "topk",
                 (int)params->window, params->bias_form == AK_DMA_BIAS_EXP ? "exp" : "log", (int)params->block_q,
                 params->untrained ? ",untrained" : "");
        st = ak__sparse_finish_named(bld, name, out);
    }
    ak_sparse_builder_destroy(bld);
    if (st == AK_OK && info) {
        memset(info, 0, sizeof *info);
        explain(&in, params, mode, sel, u, bias, *out, info);
    }
    for (int64_t x = 0; sel && x < BH; x++) sel_free(ctx, &sel[x]);
    ak__free(ctx, sel);
    ak__free(ctx, u);
    ak__free(ctx, bias);
    ak__free(ctx, m.wb);
    ak__dyn_end(&in);
    return st;
}

ak_status ak_dma_scores(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, const ak_dma_params *params,
                        int32_t b, int32_t h, float *u, float *bias) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak_dma_params defaults;
    if (!params) {
        ak_dma_params_init(&defaults);
        params = &defaults;
    }
    ak_dyn_in in;
    dma_map m;
    ak_status st = dma_begin(ctx, desc, t, params, &in, &m);
    if (st != AK_OK) return st;
    if (b < 0 || b >= in.B || h < 0 || h >= in.Hkv)
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "dma: (b, h) = (%d, %d) outside %d sequences x %d KV heads", (int)b,
                      (int)h, (int)in.B, (int)in.Hkv);
    const int64_t nk = in.nk, n = (int64_t)in.Hkv * nk;
    float *su = NULL, *sb = NULL;
    if (st == AK_OK) {
        su = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(2 * n + 1));
        if (!su)
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "dma: scores");
        else
            sb = su + n;
    }
    if (st == AK_OK) st = scores_seq(&in, &m, b, su, sb);
    if (st == AK_OK && u) memcpy(u, su + h * nk, sizeof(float) * (size_t)nk);
    if (st == AK_OK && bias) memcpy(bias, sb + h * nk, sizeof(float) * (size_t)nk);
    ak__free(ctx, su);
    ak__free(ctx, m.wb);
    ak__dyn_end(&in);
    return st;
}
