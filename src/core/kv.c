/* KV cache descriptions: validation of lengths and page tables (both vocabularies), tensor views. */
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

void ak_kv_desc_init(ak_kv_desc *kv) {
    if (!kv) return;
    memset(kv, 0, sizeof *kv);
    kv->size = sizeof *kv;
    kv->batch = 1;
    kv->num_heads_kv = 1;
    kv->dtype = AK_F32;
    kv->layout = AK_KV_NHD;
}

void ak_kv_tensors_init(ak_kv_tensors *t) {
    if (!t) return;
    memset(t, 0, sizeof *t);
    t->size = sizeof *t;
}

void ak__kvmeta_free(const ak_ctx *ctx, ak_kvmeta *m) {
    ak__free(ctx, m->len);
    ak__free(ctx, m->page_off);
    ak__free(ctx, m->pages);
    m->len = NULL;
    m->page_off = NULL;
    m->pages = NULL;
}

static int valid_kv_dtype(ak_dtype t) { return t == AK_F32 || t == AK_BF16 || t == AK_F16 || t == AK_I8; }

/* Validate a cache description and resolve every sequence's length and page list. */
ak_status ak__kvmeta_init(const ak_ctx *ctx, const ak_kv_desc *kv, const char *what, ak_kvmeta *m) {
    memset(m, 0, sizeof *m);
    if (!kv) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s is NULL", what);
    if (kv->size != sizeof(ak_kv_desc))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.size = %zu, expected %zu (call ak_kv_desc_init)", what,
                        kv->size, sizeof(ak_kv_desc));
    if (kv->batch < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.batch = %d, must be >= 1", what, kv->batch);
    if (kv->num_heads_kv < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.num_heads_kv = %d, must be >= 1", what, kv->num_heads_kv);
    int32_t dv = kv->head_dim_v == 0 ? kv->head_dim : kv->head_dim_v;
    if (kv->head_dim < 1 || kv->head_dim > AK_MAX_HEAD_DIM || dv < 1 || dv > AK_MAX_HEAD_DIM)
        return ak__fail(ctx, AK_ERR_HEAD_DIM, "%s: head_dim = %d, head_dim_v = %d, each must be in [1, %d]", what,
                        kv->head_dim, kv->head_dim_v, AK_MAX_HEAD_DIM);
    if (!valid_kv_dtype(kv->dtype))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype = %d: a KV cache holds f32, bf16, f16 or i8", what,
                        (int)kv->dtype);
    if (kv->page_size < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.page_size = %d, must be >= 0 (0 = contiguous)", what,
                        kv->page_size);
    if (kv->layout != AK_KV_NHD && kv->layout != AK_KV_HND)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.layout = %d is neither AK_KV_NHD nor AK_KV_HND", what,
                        (int)kv->layout);
    const int32_t B = kv->batch, ps = kv->page_size;
    const int has_ft = kv->seqlens != NULL, has_fi = kv->kv_indptr != NULL;
    m->B = B;
    m->Hkv = kv->num_heads_kv;
    m->d = kv->head_dim;
    m->dv = dv;
    m->ps = ps;
    m->dtype = kv->dtype;
    m->dtype_size = ak_dtype_size(kv->dtype);
    m->layout = kv->layout;
    m->capacity = kv->capacity;
    m->num_pages = kv->num_pages;
    if (ps == 0) {
        if (!has_ft || has_fi || kv->block_table)
            return ak__fail(ctx, AK_ERR_BAD_METADATA,
                            "%s: a contiguous cache (page_size 0) takes seqlens only (no block_table / kv_indptr)", what);
        if (kv->capacity < 0)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.capacity = %d, must be >= 0", what, kv->capacity);
    } else {
        if (has_ft == has_fi)
            return ak__fail(ctx, AK_ERR_BAD_METADATA,
                            "%s: a paged cache takes exactly one vocabulary: seqlens + block_table, or kv_indptr + "
                            "kv_indices + kv_last_page_len",
                            what);
        if (has_ft && !kv->block_table)
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "%s: a paged cache with seqlens needs a block_table", what);
        if (has_fi && (!kv->kv_indices || !kv->kv_last_page_len))
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "%s: kv_indptr needs kv_indices and kv_last_page_len", what);
        if (kv->num_pages < 1)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.num_pages = %d, must be >= 1", what, kv->num_pages);
        if (has_ft && kv->max_pages_per_seq < 0)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.max_pages_per_seq = %d, must be >= 0", what,
                            kv->max_pages_per_seq);
    }
    m->len = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)B);
    m->page_off = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * ((size_t)B + 1));
    if (!m->len || !m->page_off) {
        ak__kvmeta_free(ctx, m);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s metadata", what);
    }
    ak_status st = AK_OK;
    int64_t total_pages = 0;
    m->page_off[0] = 0;
    for (int32_t b = 0; b < B && st == AK_OK; b++) {
        int64_t len = 0, np = 0;
        if (has_fi) {
            if (b == 0 && kv->kv_indptr[0] != 0) {
                st = ak__fail(ctx, AK_ERR_BAD_METADATA, "%s.kv_indptr[0] = %d, must be 0", what, kv->kv_indptr[0]);
                break;
            }
            np = (int64_t)kv->kv_indptr[b + 1] - kv->kv_indptr[b];
            if (np < 0) {
                st = ak__fail(ctx, AK_ERR_BAD_METADATA, "%s.kv_indptr decreases at sequence %d: %d -> %d", what, b,
                              kv->kv_indptr[b], kv->kv_indptr[b + 1]);
                break;
            }
            if (np > 0) {
                int32_t last = kv->kv_last_page_len[b];
                if (last < 1 || last > ps) {
                    st = ak__fail(ctx, AK_ERR_BAD_METADATA,
                                  "%s.kv_last_page_len[%d] = %d, must be in [1, page_size = %d] for a sequence with pages",
                                  what, b, last, ps);
                    break;
                }
                len = (np - 1) * ps + last;
            }
        } else {
            len = kv->seqlens[b];
            if (len < 0) {
                st = ak__fail(ctx, AK_ERR_BAD_METADATA, "%s.seqlens[%d] = %lld is negative", what, b, (long long)len);
                break;
            }
            if (ps == 0) {
                if (len > kv->capacity) {
                    st = ak__fail(ctx, AK_ERR_BAD_METADATA, "%s.seqlens[%d] = %lld exceeds the capacity %d", what, b,
                                  (long long)len, kv->capacity);
                    break;
                }
            } else {
                np = (len + ps - 1) / ps;
                if (np > kv->max_pages_per_seq) {
                    st = ak__fail(ctx, AK_ERR_BAD_METADATA,
                                  "%s: sequence %d has %lld tokens = %lld pages of %d, but its block_table row has %d "
                                  "entries",
                                  what, b, (long long)len, (long long)np, ps, kv->max_pages_per_seq);
                    break;
                }
            }
        }
        if (len > INT32_MAX) {
            st = ak__fail(ctx, AK_ERR_BAD_METADATA, "%s: sequence %d has more than 2^31-1 tokens", what, b);
            break;
        }
        m->len[b] = (int32_t)len;
        if (len > m->max_len) m->max_len = len;
        total_pages += np;
        m->page_off[b + 1] = total_pages;
    }
    if (st == AK_OK && ps > 0) {
        m->pages = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(total_pages > 0 ? total_pages : 1));
        if (!m->pages) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "%s page list (%lld pages)", what, (long long)total_pages);
        for (int32_t b = 0; b < B && st == AK_OK; b++) {
            int64_t np = m->page_off[b + 1] - m->page_off[b];
            const int32_t *src = has_fi ? kv->kv_indices + kv->kv_indptr[b]
                                        : kv->block_table + (int64_t)b * kv->max_pages_per_seq;
            for (int64_t i = 0; i < np; i++) {
                int32_t pg = src[i];
                if (pg < 0 || pg >= kv->num_pages) {
                    if (has_fi)
                        st = ak__fail(ctx, AK_ERR_PAGE_OUT_OF_RANGE,
                                      "%s.kv_indices[%lld] = %d (page %lld of sequence %d), outside [0, num_pages = %d)",
                                      what, (long long)(kv->kv_indptr[b] + i), pg, (long long)i, b, kv->num_pages);
                    else
                        st = ak__fail(ctx, AK_ERR_PAGE_OUT_OF_RANGE,
                                      "%s.block_table[%d][%lld] = %d (page %lld of sequence %d), outside [0, num_pages = %d)",
                                      what, b, (long long)i, pg, (long long)i, b, kv->num_pages);
                    break;
                }
                m->pages[m->page_off[b] + i] = pg;
            }
        }
    }
    if (st != AK_OK) ak__kvmeta_free(ctx, m);
    return st;
}

ak_status ak_kv_seqlen(ak_ctx *ctx, const ak_kv_desc *kv, int32_t b, int32_t *len) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!len) return ak__fail(ctx, AK_ERR_NULL_POINTER, "len is NULL");
    ak_kvmeta m;
    ak_status st = ak__kvmeta_init(ctx, kv, "kv", &m);
    if (st != AK_OK) return st;
    if (b < 0 || b >= m.B) {
        ak__kvmeta_free(ctx, &m);
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "sequence %d outside [0, %d)", b, m.B);
    }
    *len = m.len[b];
    ak__kvmeta_free(ctx, &m);
    return AK_OK;
}

/* A cache tensor: ndim 4 (k, v) or 3 (scales), last dim unit stride for k/v; resolve its strides. */
static ak_status check_kv_tensor(const ak_ctx *ctx, const ak_kvmeta *m, const ak_tensor *t, const char *what,
                                 const char *name, int is_scale, int cols, int64_t *s_outer, int64_t *s_pos,
                                 int64_t *s_head) {
    int nd = is_scale ? 3 : 4;
    char full[64];
    snprintf(full, sizeof full, "%s.%s", what, name);
    ak_status st = ak__check_view(ctx, full, t, nd);
    if (st) return st;
    ak_dtype want = is_scale ? AK_F32 : m->dtype;
    if (is_scale ? t->dtype != AK_F32 : !valid_kv_dtype(t->dtype))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype = %s: %s", full, ak_dtype_name(t->dtype),
                        is_scale ? "scales are f32" : "a KV cache holds f32, bf16, f16 or i8");
    if (t->dtype != want)
        return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "%s.dtype = %s but the cache is described as %s", full,
                        ak_dtype_name(t->dtype), ak_dtype_name(want));
    int64_t e[4];
    if (m->ps == 0) {
        e[0] = m->B;
        e[1] = m->Hkv;
        e[2] = m->capacity;
    } else if (m->layout == AK_KV_NHD) {
        e[0] = m->num_pages;
        e[1] = m->ps;
        e[2] = m->Hkv;
    } else {
        e[0] = m->num_pages;
        e[1] = m->Hkv;
        e[2] = m->ps;
    }
    e[3] = cols;
    for (int i = 0; i < nd; i++)
        if (t->shape[i] != e[i]) {
            const char *form = m->ps == 0 ? "[B][Hkv][capacity]" : m->layout == AK_KV_NHD ? "[pages][page_size][Hkv]" : "[pages][Hkv][page_size]";
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld, expected %lld (%s%s)", full, i,
                            (long long)t->shape[i], (long long)e[i], form, is_scale ? "" : "[d]");
        }
    if (!is_scale && t->stride[3] != 1 && cols > 1)
        return ak__fail(ctx, AK_ERR_BAD_STRIDE, "%s.stride[3] = %lld: the head dimension of a cache must be contiguous",
                        full, (long long)t->stride[3]);
    *s_outer = t->stride[0];
    if (m->ps > 0 && m->layout == AK_KV_HND) {
        *s_head = t->stride[1];
        *s_pos = t->stride[2];
    } else if (m->ps > 0) {
        *s_pos = t->stride[1];
        *s_head = t->stride[2];
    } else {
        *s_head = t->stride[1];
        *s_pos = t->stride[2];
    }
    return AK_OK;
}

ak_status ak__kv_check_tensors(const ak_ctx *ctx, const ak_kvmeta *m, const ak_kv_tensors *t, const char *what,
                               ak_kvview *v) {
    memset(v, 0, sizeof *v);
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s tensors are NULL", what);
    if (t->size != sizeof(ak_kv_tensors))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s tensors.size = %zu, expected %zu (call ak_kv_tensors_init)",
                        what, t->size, sizeof(ak_kv_tensors));
    ak_status st;
    if ((st = check_kv_tensor(ctx, m, &t->k, what, "k", 0, m->d, &v->k_outer, &v->k_pos, &v->k_head)) ||
        (st = check_kv_tensor(ctx, m, &t->v, what, "v", 0, m->dv, &v->v_outer, &v->v_pos, &v->v_head)))
        return st;
    v->k = (const char *)t->k.data;
    v->v = (const char *)t->v.data;
    v->es = ak_dtype_size(m->dtype);
    if (m->dtype == AK_I8) {
        if ((st = check_kv_tensor(ctx, m, &t->k_scale, what, "k_scale", 1, 0, &v->ks_outer, &v->ks_pos, &v->ks_head)) ||
            (st = check_kv_tensor(ctx, m, &t->v_scale, what, "v_scale", 1, 0, &v->vs_outer, &v->vs_pos, &v->vs_head)))
            return st;
        v->ks = (const float *)t->k_scale.data;
        v->vs = (const float *)t->v_scale.data;
    }
    return AK_OK;
}

ak_status ak_kv_block_table_to_csr(ak_ctx *ctx, int32_t batch, int32_t page_size, int32_t num_pages,
                                   const int32_t *seqlens, const int32_t *block_table, int32_t max_pages_per_seq,
                                   int32_t *kv_indptr, int32_t *kv_indices, int32_t max_indices,
                                   int32_t *kv_last_page_len) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!seqlens || !block_table || !kv_indptr || !kv_last_page_len || (!kv_indices && max_indices > 0))
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "seqlens, block_table, kv_indptr, kv_indices and kv_last_page_len are required");
    if (batch < 1 || page_size < 1 || num_pages < 1 || max_pages_per_seq < 0 || max_indices < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "batch = %d, page_size = %d, num_pages = %d must be >= 1; max_pages_per_seq = %d, max_indices = %d >= 0",
                        batch, page_size, num_pages, max_pages_per_seq, max_indices);
    /* validate everything first, so nothing is written on failure */
    int64_t total = 0;
    for (int32_t b = 0; b < batch; b++) {
        if (seqlens[b] < 0) return ak__fail(ctx, AK_ERR_BAD_METADATA, "seqlens[%d] = %d is negative", b, seqlens[b]);
        int64_t np = ((int64_t)seqlens[b] + page_size - 1) / page_size;
        if (np > max_pages_per_seq)
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "sequence %d needs %lld pages, its block_table row has %d", b,
                            (long long)np, max_pages_per_seq);
        for (int64_t i = 0; i < np; i++) {
            int32_t pg = block_table[(int64_t)b * max_pages_per_seq + i];
            if (pg < 0 || pg >= num_pages)
                return ak__fail(ctx, AK_ERR_PAGE_OUT_OF_RANGE, "block_table[%d][%lld] = %d, outside [0, %d)", b,
                                (long long)i, pg, num_pages);
        }
        total += np;
    }
    if (total > max_indices)
        return ak__fail(ctx, AK_ERR_CAPACITY, "the tables hold %lld pages, kv_indices has room for %d", (long long)total,
                        max_indices);
    kv_indptr[0] = 0;
    int32_t at = 0;
    for (int32_t b = 0; b < batch; b++) {
        int32_t np = (int32_t)(((int64_t)seqlens[b] + page_size - 1) / page_size);
        memcpy(kv_indices + at, block_table + (int64_t)b * max_pages_per_seq, sizeof(int32_t) * (size_t)np);
        at += np;
        kv_indptr[b + 1] = at;
        kv_last_page_len[b] = np > 0 ? seqlens[b] - (np - 1) * page_size : 0;
    }
    return AK_OK;
}
