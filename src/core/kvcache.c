/* KV cache writes: ak_kv_append into caller-owned caches (contiguous, block-table or CSR paged), and
 * ak_kv_cache, a paged cache attnkit owns (page pools, per-sequence page lists, a free list). */
#include "core/internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Below this many converted elements an append runs on the calling thread only. */
#define AK_KV_PAR_MIN 32768

/* ================================================================================================
 * Row conversion, shared by ak_kv_append and ak_kv_cache_append
 * ============================================================================================== */

/* New keys or values of one (sequence, head): element (r, c) at data[base + r*s_row + c*s_col]. */
typedef struct kv_src {
    const void *data;
    ak_dtype dt;
    int64_t base, s_row, s_col;
} kv_src;

/* A cache's row addressing (see ak_kvview) plus its dtype and row widths. */
typedef struct kv_dst {
    ak_kvview w;
    ak_dtype dt;
    int32_t d, dv;
} kv_dst;

/* Quantise one row to int8: scale = max|x| / 127, q = round(x / scale) in [-127, 127]; an all-zero
 * row (or one whose scale underflows to 0) gets scale 0 and q = 0. NaN elements give q = 0. */
static void put_row_i8(int8_t *dst, float *scale, const kv_src *s, int64_t off, int32_t cols) {
    float amax = 0.0f;
    for (int32_t c = 0; c < cols; c++) {
        float a = fabsf(ak__load(s->data, s->dt, off + c * s->s_col));
        if (a > amax) amax = a;
    }
    float sc = amax / 127.0f;
    *scale = sc;
    for (int32_t c = 0; c < cols; c++) {
        float y = sc > 0.0f ? ak__load(s->data, s->dt, off + c * s->s_col) / sc : 0.0f;
        if (y > 127.0f) y = 127.0f;
        if (y < -127.0f) y = -127.0f;
        dst[c] = (int8_t)(y == y ? lrintf(y) : 0); /* round to nearest even; NaN -> 0 */
    }
}

/* Convert row r of `s` (cols elements) into the cache row `dst` (unit column stride, dtype dt). */
static void put_row(ak_dtype dt, char *dst, float *scale, const kv_src *s, int64_t r, int32_t cols) {
    const int64_t off = s->base + r * s->s_row;
    switch (dt) {
    case AK_F32:
        if (s->dt == AK_F32 && s->s_col == 1) {
            memcpy(dst, (const float *)s->data + off, sizeof(float) * (size_t)cols);
            break;
        }
        for (int32_t c = 0; c < cols; c++) ((float *)dst)[c] = ak__load(s->data, s->dt, off + c * s->s_col);
        break;
    case AK_BF16:
        if (s->dt == AK_F32 && s->s_col == 1) { /* the common case, inlined */
            const float *src = (const float *)s->data + off;
            for (int32_t c = 0; c < cols; c++) ((uint16_t *)dst)[c] = ak__f32_to_bf16(src[c]);
            break;
        }
        for (int32_t c = 0; c < cols; c++)
            ((uint16_t *)dst)[c] = ak__f32_to_bf16(ak__load(s->data, s->dt, off + c * s->s_col));
        break;
    case AK_F16:
        for (int32_t c = 0; c < cols; c++)
            ((uint16_t *)dst)[c] = ak_f32_to_f16(ak__load(s->data, s->dt, off + c * s->s_col));
        break;
    case AK_I8: put_row_i8((int8_t *)dst, scale, s, off, cols); break;
    case AK_F64: break; /* never a cache dtype (validated) */
    }
}

/* Write row r of k / v (head h) at row (outer, pos) of the cache: off = outer*s_outer + pos*s_pos + h*s_head. */
static void put_token(const kv_dst *o, int64_t outer, int64_t pos, int64_t h, const kv_src *k, const kv_src *v,
                      int64_t r) {
    const ak_kvview *w = &o->w;
    char *kd = (char *)w->k + (outer * w->k_outer + pos * w->k_pos + h * w->k_head) * (int64_t)w->es;
    char *vd = (char *)w->v + (outer * w->v_outer + pos * w->v_pos + h * w->v_head) * (int64_t)w->es;
    float *ks = w->ks ? (float *)w->ks + outer * w->ks_outer + pos * w->ks_pos + h * w->ks_head : NULL;
    float *vs = w->vs ? (float *)w->vs + outer * w->vs_outer + pos * w->vs_pos + h * w->vs_head : NULL;
    put_row(o->dt, kd, ks, k, r, o->d);
    put_row(o->dt, vd, vs, v, r, o->dv);
}

static int valid_src_dtype(ak_dtype t) { return t == AK_F32 || t == AK_BF16 || t == AK_F16; }

/* New rows: ndim-d view (3 = [Hkv][n][cols], 4 = [B][Hkv][n][cols]) of f32/bf16/f16, any non-negative strides. */
static ak_status check_src(const ak_ctx *ctx, const char *name, const ak_tensor *t, int ndim, const int64_t *want) {
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s is NULL", name);
    if (!valid_src_dtype(t->dtype))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype = %s (%d): new rows must be f32, bf16 or f16", name,
                        ak_dtype_name(t->dtype), (int)t->dtype);
    ak_status st = ak__check_view(ctx, name, t, ndim);
    if (st) return st;
    for (int i = 0; i < ndim; i++)
        if (want[i] >= 0 && t->shape[i] != want[i])
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld, expected %lld (%s)", name, i,
                            (long long)t->shape[i], (long long)want[i],
                            ndim == 4 ? "[B][Hkv][n][d or dv]" : "[Hkv][n][d or dv]");
    return AK_OK;
}

/* The inputs may not share memory (first to last element) with anything the append writes. */
static ak_status check_no_overlap(const ak_ctx *ctx, const ak_tensor *k_new, const ak_tensor *v_new,
                                  const ak_kv_tensors *c, int has_scales) {
    const ak_tensor *in[2] = {k_new, v_new};
    const ak_tensor *out[4] = {&c->k, &c->v, &c->k_scale, &c->v_scale};
    static const char *in_name[2] = {"k_new", "v_new"}, *out_name[4] = {"k", "v", "k_scale", "v_scale"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < (has_scales ? 4 : 2); j++)
            if (ak__ranges_overlap(in[i], out[j]))
                return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "%s overlaps the memory of the cache's %s", in_name[i],
                                out_name[j]);
    return AK_OK;
}

/* ================================================================================================
 * ak_kv_append
 * ============================================================================================== */

/* Page row of sequence b in the caller's table (paged), NULL when contiguous. */
static const int32_t *page_row(const ak_kv_desc *kv, int32_t b) {
    if (kv->page_size == 0) return NULL;
    if (kv->kv_indptr) return kv->kv_indices + kv->kv_indptr[b];
    return kv->block_table + (int64_t)b * kv->max_pages_per_seq;
}

/* Room for n more tokens in sequence b (m validated by ak__kvmeta_init); checks the block-table
 * entries that the new tokens will use. */
static ak_status check_room(const ak_ctx *ctx, const ak_kv_desc *kv, const ak_kvmeta *m, int32_t b, int64_t n) {
    const int64_t len = m->len[b], ps = m->ps;
    if (n == 0) return AK_OK;
    if (n > INT32_MAX - len)
        return ak__fail(ctx, AK_ERR_CAPACITY, "kv: sequence %d holds %lld tokens + %lld new, above 2^31-1", b,
                        (long long)len, (long long)n);
    const int64_t end = len + n;
    if (ps == 0) {
        if (end > kv->capacity)
            return ak__fail(ctx, AK_ERR_CAPACITY, "kv: sequence %d holds %lld tokens + %lld new = %lld, above kv.capacity = %d",
                            b, (long long)len, (long long)n, (long long)end, kv->capacity);
        return AK_OK;
    }
    const int64_t used = m->page_off[b + 1] - m->page_off[b], need = (end + ps - 1) / ps;
    if (kv->kv_indptr) {
        if (end > used * ps)
            return ak__fail(ctx, AK_ERR_CAPACITY,
                            "kv: sequence %d holds %lld tokens + %lld new = %lld, above its %lld pages (kv_indptr) * "
                            "page_size %lld = %lld slots (kv_last_page_len[%d] = %d); new pages can only be given "
                            "through a block_table",
                            b, (long long)len, (long long)n, (long long)end, (long long)used, (long long)ps,
                            (long long)(used * ps), b, kv->kv_last_page_len[b]);
        return AK_OK;
    }
    if (need > kv->max_pages_per_seq)
        return ak__fail(ctx, AK_ERR_CAPACITY,
                        "kv: sequence %d holds %lld tokens + %lld new = %lld = %lld pages of %lld, above "
                        "kv.max_pages_per_seq = %d",
                        b, (long long)len, (long long)n, (long long)end, (long long)need, (long long)ps,
                        kv->max_pages_per_seq);
    const int32_t *row = page_row(kv, b);
    for (int64_t i = used; i < need; i++)
        if (row[i] < 0 || row[i] >= kv->num_pages)
            return ak__fail(ctx, AK_ERR_PAGE_OUT_OF_RANGE,
                            "kv.block_table[%d][%lld] = %d (a page the append needs) is outside [0, %d)", b,
                            (long long)i, row[i], kv->num_pages);
    return AK_OK;
}

/* A run of slots [lo, hi) of one page that sequence b writes. */
typedef struct kv_span {
    int32_t page, lo, hi, b;
} kv_span;

static int span_cmp(const void *pa, const void *pb) {
    const kv_span *a = (const kv_span *)pa, *b = (const kv_span *)pb;
    if (a->page != b->page) return a->page < b->page ? -1 : 1;
    if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
    return (a->b > b->b) - (a->b < b->b);
}

/* Paged: no slot may be written twice (two sequences sharing a partly filled page, or a page listed
 * twice in one row): the sequences are written in parallel. */
static ak_status check_disjoint_writes(const ak_ctx *ctx, const ak_kv_desc *kv, const ak_kvmeta *m,
                                       const int32_t *n_new, int64_t n) {
    const int64_t ps = m->ps;
    int64_t count = 0;
    for (int32_t b = 0; b < m->B; b++) {
        int64_t nb = n_new ? n_new[b] : n;
        if (nb > 0) count += (m->len[b] + nb - 1) / ps - m->len[b] / ps + 1;
    }
    if (count < 2) return AK_OK;
    kv_span *sp = (kv_span *)ak__alloc(ctx, sizeof(kv_span) * (size_t)count);
    if (!sp) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kv_append: %lld page spans", (long long)count);
    int64_t k = 0;
    for (int32_t b = 0; b < m->B; b++) {
        int64_t nb = n_new ? n_new[b] : n, tok = m->len[b], end = tok + nb;
        const int32_t *row = page_row(kv, b);
        while (tok < end) {
            int64_t pe = (tok / ps + 1) * ps < end ? (tok / ps + 1) * ps : end;
            sp[k].page = row[tok / ps];
            sp[k].lo = (int32_t)(tok % ps);
            sp[k].hi = (int32_t)((pe - 1) % ps + 1);
            sp[k].b = b;
            k++;
            tok = pe;
        }
    }
    qsort(sp, (size_t)count, sizeof *sp, span_cmp);
    ak_status st = AK_OK;
    for (int64_t i = 1; i < count && st == AK_OK; i++)
        if (sp[i].page == sp[i - 1].page && sp[i].lo < sp[i - 1].hi)
            st = ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP,
                          "kv: slot %d of page %d would be written twice (sequences %d and %d): the page tables share a "
                          "page that receives new tokens",
                          sp[i].lo, sp[i].page, sp[i - 1].b, sp[i].b);
    ak__free(ctx, sp);
    return st;
}

/* Everything ak_kv_append checks besides the description itself. */
static ak_status append_check(const ak_ctx *ctx, const ak_kv_desc *kv, const ak_kvmeta *m, const ak_kv_tensors *cache,
                              const ak_tensor *k_new, const ak_tensor *v_new, const int32_t *n_new, kv_dst *dst) {
    ak_status st = ak__kv_check_tensors(ctx, m, cache, "cache", &dst->w);
    if (st) return st;
    dst->dt = m->dtype;
    dst->d = m->d;
    dst->dv = m->dv;
    /* the cache is written: no stride 0 over an extent > 1, no aliased elements */
    if ((st = ak__check_out_tensor(ctx, "cache.k", &cache->k)) || (st = ak__check_out_tensor(ctx, "cache.v", &cache->v)))
        return st;
    if (m->dtype == AK_I8 && ((st = ak__check_out_tensor(ctx, "cache.k_scale", &cache->k_scale)) ||
                              (st = ak__check_out_tensor(ctx, "cache.v_scale", &cache->v_scale))))
        return st;
    int64_t wk[4] = {m->B, m->Hkv, -1, m->d};
    if ((st = check_src(ctx, "k_new", k_new, 4, wk))) return st;
    int64_t wv[4] = {m->B, m->Hkv, k_new->shape[2], m->dv};
    if ((st = check_src(ctx, "v_new", v_new, 4, wv))) return st;
    if ((st = check_no_overlap(ctx, k_new, v_new, cache, m->dtype == AK_I8))) return st;
    const int64_t n = k_new->shape[2];
    for (int32_t b = 0; b < m->B; b++) {
        int64_t nb = n_new ? n_new[b] : n;
        if (nb < 0 || nb > n)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "n_new[%d] = %lld, must be in [0, n = %lld] (k_new.shape[2])", b,
                            (long long)nb, (long long)n);
        if ((st = check_room(ctx, kv, m, b, nb))) return st;
    }
    if (m->ps > 0 && m->B > 1) return check_disjoint_writes(ctx, kv, m, n_new, n);
    return AK_OK;
}

/* Write rows [0, nb) of KV head h of sequence b at tokens len_b + r. */
static void append_head(const kv_dst *o, const ak_kv_desc *kv, const ak_kvmeta *m, int32_t b, int64_t h, int64_t nb,
                        const ak_tensor *kn, const ak_tensor *vn) {
    const int32_t *row = page_row(kv, b);
    kv_src ks = {kn->data, kn->dtype, b * kn->stride[0] + h * kn->stride[1], kn->stride[2], kn->stride[3]};
    kv_src vs = {vn->data, vn->dtype, b * vn->stride[0] + h * vn->stride[1], vn->stride[2], vn->stride[3]};
    for (int64_t r = 0; r < nb; r++) {
        const int64_t tok = m->len[b] + r;
        const int64_t outer = row ? row[tok / m->ps] : b, pos = row ? tok % m->ps : tok;
        put_token(o, outer, pos, h, &ks, &vs, r);
    }
}

ak_status ak_kv_append(ak_ctx *ctx, const ak_kv_desc *kv, const ak_kv_tensors *cache, const ak_tensor *k_new,
                       const ak_tensor *v_new, const int32_t *n_new) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!cache || !k_new || !v_new)
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "kv_append: cache, k_new and v_new are required");
    ak_kvmeta m;
    ak_status st = ak__kvmeta_init(ctx, kv, "kv", &m);
    if (st) return st;
    kv_dst dst;
    if ((st = append_check(ctx, kv, &m, cache, k_new, v_new, n_new, &dst))) {
        ak__kvmeta_free(ctx, &m);
        return st;
    }
    /* validated: write. (sequence, head) pairs write disjoint rows, so the result is independent of the
     * threads. */
    const int64_t n = k_new->shape[2], pairs = (int64_t)m.B * m.Hkv;
    const double work = (double)m.B * (double)n * m.Hkv * (m.d + m.dv);
    (void)work;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(dynamic, 1) if (work >= AK_KV_PAR_MIN && pairs > 1)
#endif
    for (int64_t idx = 0; idx < pairs; idx++) {
        int32_t b = (int32_t)(idx / m.Hkv);
        append_head(&dst, kv, &m, b, idx % m.Hkv, n_new ? n_new[b] : n, k_new, v_new);
    }
    ak__kvmeta_free(ctx, &m);
    return AK_OK;
}

/* ================================================================================================
 * ak_kv_cache: pools + page lists. Every page is on exactly one singly linked list (next[]): the
 * free list (LIFO) or the list of the sequence that holds it, in token order.
 * ============================================================================================== */

struct ak_kv_cache {
    const ak_ctx *ctx;           /* allocator and error messages; must outlive the cache */
    ak_kv_cache_config cfg;      /* copy; head_dim_v resolved */
    ak_kv_tensors pools;         /* k, v [num_pages][ps][Hkv][d] (NHD) or [num_pages][Hkv][ps][d] (HND); scales (I8) */
    kv_dst dst;                  /* resolved row addressing of the pools */
    int32_t *next;               /* [num_pages] next page on the same list, -1 = end */
    int32_t free_head, n_free;
    int32_t *len, *np, *head, *tail; /* [max_seqs]: tokens, pages, first / last page (-1 = none) */
    int32_t *v_indptr, *v_indices, *v_last; /* the arrays of the last view */
    int64_t v_cap_seqs, v_cap_pages;
};

void ak_kv_cache_config_init(ak_kv_cache_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->num_heads_kv = 1;
    cfg->dtype = AK_F32;
    cfg->page_size = 16;
    cfg->layout = AK_KV_NHD;
    cfg->max_seqs = 1;
}

/* a * b into *r, 0 on int64 overflow (a, b >= 0) */
static int mul_ok(int64_t a, int64_t b, int64_t *r) {
    if (b != 0 && a > INT64_MAX / b) return 0;
    *r = a * b;
    return 1;
}

static ak_status check_config(const ak_ctx *ctx, const ak_kv_cache_config *c) {
    if (!c) return ak__fail(ctx, AK_ERR_NULL_POINTER, "cfg is NULL");
    if (c->size != sizeof(ak_kv_cache_config))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "cfg.size = %zu, expected %zu (call ak_kv_cache_config_init)",
                        c->size, sizeof(ak_kv_cache_config));
    if (c->num_heads_kv < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "cfg.num_heads_kv = %d, must be >= 1", c->num_heads_kv);
    int32_t dv = c->head_dim_v == 0 ? c->head_dim : c->head_dim_v;
    if (c->head_dim < 1 || c->head_dim > AK_MAX_HEAD_DIM || dv < 1 || dv > AK_MAX_HEAD_DIM)
        return ak__fail(ctx, AK_ERR_HEAD_DIM, "cfg.head_dim = %d, cfg.head_dim_v = %d, each must be in [1, %d]",
                        c->head_dim, c->head_dim_v, AK_MAX_HEAD_DIM);
    if (c->dtype != AK_F32 && c->dtype != AK_BF16 && c->dtype != AK_F16 && c->dtype != AK_I8)
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "cfg.dtype = %s (%d): a KV cache holds f32, bf16, f16 or i8",
                        ak_dtype_name(c->dtype), (int)c->dtype);
    if (c->page_size < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "cfg.page_size = %d, must be >= 1", c->page_size);
    if (c->num_pages < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "cfg.num_pages = %d, must be >= 1", c->num_pages);
    if (c->layout != AK_KV_NHD && c->layout != AK_KV_HND)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "cfg.layout = %d is neither AK_KV_NHD nor AK_KV_HND",
                        (int)c->layout);
    if (c->max_seqs < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "cfg.max_seqs = %d, must be >= 1", c->max_seqs);
    int64_t rows, kb, vb;
    int64_t es = (int64_t)ak_dtype_size(c->dtype);
    if (!mul_ok((int64_t)c->num_pages * c->page_size, c->num_heads_kv, &rows) || !mul_ok(rows, c->head_dim * es, &kb) ||
        !mul_ok(rows, dv * es, &vb) || (uint64_t)kb > SIZE_MAX / 2 || (uint64_t)vb > SIZE_MAX / 2)
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "cfg: pools of %d pages x %d tokens x %d heads x %d/%d do not fit in memory",
                        c->num_pages, c->page_size, c->num_heads_kv, c->head_dim, dv);
    return AK_OK;
}

/* Pool tensor [num_pages][ps][Hkv][cols] (NHD) or [num_pages][Hkv][ps][cols] (HND); cols 0 = a scale pool (3-d). */
static ak_tensor pool_tensor(void *data, ak_dtype dt, const ak_kv_cache_config *c, int32_t cols) {
    int64_t a = c->layout == AK_KV_NHD ? c->page_size : c->num_heads_kv;
    int64_t b = c->layout == AK_KV_NHD ? c->num_heads_kv : c->page_size;
    return cols ? ak_tensor_4d(data, dt, c->num_pages, a, b, cols) : ak_tensor_3d(data, dt, c->num_pages, a, b);
}

static void *alloc_pool(const ak_ctx *ctx, const ak_kv_cache_config *c, int32_t cols, size_t es) {
    return ak__alloc(ctx, (size_t)c->num_pages * (size_t)c->page_size * (size_t)c->num_heads_kv * (size_t)cols * es);
}

/* Allocate pools and tables; resolve the row addressing through the same checks as caller-owned caches. */
static ak_status cache_init(ak_kv_cache *kc) {
    const ak_ctx *ctx = kc->ctx;
    const ak_kv_cache_config *c = &kc->cfg;
    const size_t es = ak_dtype_size(c->dtype);
    void *k = alloc_pool(ctx, c, c->head_dim, es), *v = alloc_pool(ctx, c, c->head_dim_v, es);
    kc->pools.k = pool_tensor(k, c->dtype, c, c->head_dim);
    kc->pools.v = pool_tensor(v, c->dtype, c, c->head_dim_v);
    int ok = k && v;
    if (c->dtype == AK_I8) {
        void *ks = alloc_pool(ctx, c, 1, sizeof(float)), *vs = alloc_pool(ctx, c, 1, sizeof(float));
        kc->pools.k_scale = pool_tensor(ks, AK_F32, c, 0);
        kc->pools.v_scale = pool_tensor(vs, AK_F32, c, 0);
        ok = ok && ks && vs;
    }
    kc->next = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)c->num_pages);
    kc->len = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * 4 * (size_t)c->max_seqs);
    if (!ok || !kc->next || !kc->len)
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kv_cache: pools of %d pages (%d tokens each)", c->num_pages,
                        c->page_size);
    kc->np = kc->len + c->max_seqs;
    kc->head = kc->np + c->max_seqs;
    kc->tail = kc->head + c->max_seqs;
    for (int32_t s = 0; s < c->max_seqs; s++) {
        kc->len[s] = kc->np[s] = 0;
        kc->head[s] = kc->tail[s] = -1;
    }
    for (int32_t p = 0; p < c->num_pages; p++) kc->next[p] = p + 1 < c->num_pages ? p + 1 : -1;
    kc->free_head = 0;
    kc->n_free = c->num_pages;
    ak_kvmeta m; /* only the fields ak__kv_check_tensors reads */
    memset(&m, 0, sizeof m);
    m.B = 1;
    m.Hkv = c->num_heads_kv;
    m.d = c->head_dim;
    m.dv = c->head_dim_v;
    m.ps = c->page_size;
    m.dtype = c->dtype;
    m.layout = c->layout;
    m.num_pages = c->num_pages;
    ak_status st = ak__kv_check_tensors(ctx, &m, &kc->pools, "kv_cache", &kc->dst.w);
    if (st) {
        char why[sizeof ctx->last_error];
        memcpy(why, ctx->last_error, sizeof why); /* not an argument of a write into the same buffer */
        return ak__fail(ctx, AK_ERR_INTERNAL, "kv_cache: its own pools fail validation: %s", why);
    }
    kc->dst.dt = c->dtype;
    kc->dst.d = c->head_dim;
    kc->dst.dv = c->head_dim_v;
    return AK_OK;
}

ak_status ak_kv_cache_create(ak_ctx *ctx, const ak_kv_cache_config *cfg, ak_kv_cache **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    ak_status st = check_config(ctx, cfg);
    if (st) return st;
    ak_kv_cache *kc = (ak_kv_cache *)ak__alloc(ctx, sizeof *kc);
    if (!kc) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kv_cache");
    memset(kc, 0, sizeof *kc);
    kc->ctx = ctx;
    kc->cfg = *cfg;
    if (kc->cfg.head_dim_v == 0) kc->cfg.head_dim_v = kc->cfg.head_dim;
    ak_kv_tensors_init(&kc->pools);
    if ((st = cache_init(kc))) {
        ak_kv_cache_destroy(kc);
        return st;
    }
    *out = kc;
    return AK_OK;
}

void ak_kv_cache_destroy(ak_kv_cache *kc) {
    if (!kc) return;
    const ak_ctx *ctx = kc->ctx;
    ak__free(ctx, kc->pools.k.data);
    ak__free(ctx, kc->pools.v.data);
    ak__free(ctx, kc->pools.k_scale.data);
    ak__free(ctx, kc->pools.v_scale.data);
    ak__free(ctx, kc->next);
    ak__free(ctx, kc->len);
    ak__free(ctx, kc->v_indptr);
    ak__free(ctx, kc->v_indices);
    ak__free(ctx, kc->v_last);
    ak__free(ctx, kc);
}

static ak_status check_seq(const ak_kv_cache *kc, int32_t seq) {
    if (seq < 0 || seq >= kc->cfg.max_seqs)
        return ak__fail(kc->ctx, AK_ERR_INVALID_ARGUMENT, "kv_cache: sequence id %d outside [0, max_seqs = %d)", seq,
                        kc->cfg.max_seqs);
    return AK_OK;
}

/* Move `count` pages from the free list to the end of seq's list (count <= n_free). */
static void take_pages(ak_kv_cache *kc, int32_t seq, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        int32_t p = kc->free_head;
        kc->free_head = kc->next[p];
        kc->next[p] = -1;
        if (kc->tail[seq] < 0) kc->head[seq] = p;
        else kc->next[kc->tail[seq]] = p;
        kc->tail[seq] = p;
    }
    kc->n_free -= (int32_t)count;
    kc->np[seq] += (int32_t)count;
}

/* Write rows [0, n) of head h at tokens start + r of a sequence, from page `pg` (the page of token start). */
static void cache_write_head(const ak_kv_cache *kc, int32_t pg, int64_t start, int64_t n, int64_t h,
                             const ak_tensor *kn, const ak_tensor *vn) {
    const int64_t ps = kc->cfg.page_size;
    kv_src ks = {kn->data, kn->dtype, h * kn->stride[0], kn->stride[1], kn->stride[2]};
    kv_src vs = {vn->data, vn->dtype, h * vn->stride[0], vn->stride[1], vn->stride[2]};
    for (int64_t r = 0; r < n; r++) {
        int64_t slot = (start + r) % ps;
        if (slot == 0 && r > 0) pg = kc->next[pg];
        put_token(&kc->dst, pg, slot, h, &ks, &vs, r);
    }
}

ak_status ak_kv_cache_append(ak_kv_cache *kc, int32_t seq, const ak_tensor *k_new, const ak_tensor *v_new) {
    if (!kc) return AK_ERR_NULL_POINTER;
    const ak_ctx *ctx = kc->ctx;
    ak__clear_error(ctx);
    ak_status st = check_seq(kc, seq);
    if (st) return st;
    const ak_kv_cache_config *c = &kc->cfg;
    int64_t wk[3] = {c->num_heads_kv, -1, c->head_dim};
    if ((st = check_src(ctx, "k_new", k_new, 3, wk))) return st;
    int64_t wv[3] = {c->num_heads_kv, k_new->shape[1], c->head_dim_v};
    if ((st = check_src(ctx, "v_new", v_new, 3, wv))) return st;
    if ((st = check_no_overlap(ctx, k_new, v_new, &kc->pools, c->dtype == AK_I8))) return st;
    const int64_t n = k_new->shape[1], len = kc->len[seq], ps = c->page_size;
    if (n == 0) return AK_OK;
    if (n > INT32_MAX - len)
        return ak__fail(ctx, AK_ERR_CAPACITY, "kv_cache: sequence %d holds %lld tokens + %lld new, above 2^31-1", seq,
                        (long long)len, (long long)n);
    const int64_t end = len + n;
    const int64_t more = (end + ps - 1) / ps - kc->np[seq];
    if (more > kc->n_free)
        return ak__fail(ctx, AK_ERR_CAPACITY,
                        "kv_cache: sequence %d (%lld tokens) + %lld new needs %lld more pages of %lld, only %d are free",
                        seq, (long long)len, (long long)n, (long long)more, (long long)ps, kc->n_free);
    const int32_t old_tail = kc->tail[seq];
    take_pages(kc, seq, more);
    /* the page of token `len`: the partly filled last page, else the first new one */
    const int32_t pg = len % ps != 0 ? old_tail : old_tail < 0 ? kc->head[seq] : kc->next[old_tail];
    const double work = (double)n * c->num_heads_kv * (c->head_dim + c->head_dim_v);
    (void)work;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (work >= AK_KV_PAR_MIN && c->num_heads_kv > 1)
#endif
    for (int32_t h = 0; h < c->num_heads_kv; h++) cache_write_head(kc, pg, len, n, h, k_new, v_new);
    kc->len[seq] = (int32_t)end;
    return AK_OK;
}

ak_status ak_kv_cache_reset(ak_kv_cache *kc, int32_t seq) {
    if (!kc) return AK_ERR_NULL_POINTER;
    ak__clear_error(kc->ctx);
    ak_status st = check_seq(kc, seq);
    if (st) return st;
    if (kc->np[seq] > 0) { /* splice the whole list onto the front of the free list */
        kc->next[kc->tail[seq]] = kc->free_head;
        kc->free_head = kc->head[seq];
        kc->n_free += kc->np[seq];
    }
    kc->head[seq] = kc->tail[seq] = -1;
    kc->np[seq] = 0;
    kc->len[seq] = 0;
    return AK_OK;
}

ak_status ak_kv_cache_seqlen(const ak_kv_cache *kc, int32_t seq, int32_t *len) {
    if (!kc) return AK_ERR_NULL_POINTER;
    ak__clear_error(kc->ctx);
    if (!len) return ak__fail(kc->ctx, AK_ERR_NULL_POINTER, "kv_cache_seqlen: len is NULL");
    ak_status st = check_seq(kc, seq);
    if (st) return st;
    *len = kc->len[seq];
    return AK_OK;
}

int32_t ak_kv_cache_free_pages(const ak_kv_cache *kc) { return kc ? kc->n_free : 0; }

/* Make room for a view of n sequences and `pages` page ids (the old arrays stay on failure). */
static ak_status view_reserve(ak_kv_cache *kc, int64_t n, int64_t pages) {
    const ak_ctx *ctx = kc->ctx;
    if (pages < 1) pages = 1; /* kv_indices is never NULL */
    if (n <= kc->v_cap_seqs && pages <= kc->v_cap_pages) return AK_OK;
    int64_t ns = n > kc->v_cap_seqs ? (n > 2 * kc->v_cap_seqs ? n : 2 * kc->v_cap_seqs) : kc->v_cap_seqs;
    int64_t npg = pages > kc->v_cap_pages ? (pages > 2 * kc->v_cap_pages ? pages : 2 * kc->v_cap_pages) : kc->v_cap_pages;
    if (npg > INT32_MAX) npg = pages;
    int32_t *ip = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(ns + 1));
    int32_t *ix = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)npg);
    int32_t *la = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)ns);
    if (!ip || !ix || !la) {
        ak__free(ctx, ip);
        ak__free(ctx, ix);
        ak__free(ctx, la);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kv_cache_view: metadata for %lld sequences, %lld pages",
                        (long long)n, (long long)pages);
    }
    ak__free(ctx, kc->v_indptr);
    ak__free(ctx, kc->v_indices);
    ak__free(ctx, kc->v_last);
    kc->v_indptr = ip;
    kc->v_indices = ix;
    kc->v_last = la;
    kc->v_cap_seqs = ns;
    kc->v_cap_pages = npg;
    return AK_OK;
}

ak_status ak_kv_cache_view(ak_kv_cache *kc, const int32_t *seqs, int32_t n, ak_kv_desc *kv, ak_kv_tensors *t) {
    if (!kc) return AK_ERR_NULL_POINTER;
    const ak_ctx *ctx = kc->ctx;
    ak__clear_error(ctx);
    if (!seqs || !kv || !t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "kv_cache_view: seqs, kv and t are required");
    if (n < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "kv_cache_view: n = %d, must be >= 1", n);
    int64_t pages = 0;
    for (int32_t i = 0; i < n; i++) {
        if (seqs[i] < 0 || seqs[i] >= kc->cfg.max_seqs)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "kv_cache_view: seqs[%d] = %d outside [0, max_seqs = %d)", i,
                            seqs[i], kc->cfg.max_seqs);
        pages += kc->np[seqs[i]];
    }
    if (pages > INT32_MAX)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "kv_cache_view: %lld pages in all, above the int32 kv_indptr limit",
                        (long long)pages);
    ak_status st = view_reserve(kc, n, pages);
    if (st) return st;
    const int32_t ps = kc->cfg.page_size;
    int32_t at = 0;
    kc->v_indptr[0] = 0;
    for (int32_t i = 0; i < n; i++) { /* CSR: pages in token order; last page holds len - (np-1)*ps */
        const int32_t s = seqs[i];
        for (int32_t p = kc->head[s]; p >= 0; p = kc->next[p]) kc->v_indices[at++] = p;
        kc->v_indptr[i + 1] = at;
        kc->v_last[i] = kc->np[s] > 0 ? kc->len[s] - (kc->np[s] - 1) * ps : 0;
    }
    ak_kv_desc_init(kv);
    kv->batch = n;
    kv->num_heads_kv = kc->cfg.num_heads_kv;
    kv->head_dim = kc->cfg.head_dim;
    kv->head_dim_v = kc->cfg.head_dim_v;
    kv->dtype = kc->cfg.dtype;
    kv->page_size = ps;
    kv->num_pages = kc->cfg.num_pages;
    kv->layout = kc->cfg.layout;
    kv->kv_indptr = kc->v_indptr;
    kv->kv_indices = kc->v_indices;
    kv->kv_last_page_len = kc->v_last;
    *t = kc->pools;
    return AK_OK;
}
