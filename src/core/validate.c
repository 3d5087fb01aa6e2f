/* Validation of descriptors, metadata and tensor views. Every check names what failed. */
#include "core/internal.h"

#include <limits.h>
#include <string.h>

#define AK_UNBOUNDED ((int64_t)1 << 40)

void ak_attn_desc_init(ak_attn_desc *d) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->size = sizeof *d;
    d->batch = 1;
    d->num_heads_q = 1;
    d->num_heads_kv = 1;
    d->dtype_q = d->dtype_kv = d->dtype_o = AK_F32;
    d->scale = NAN;
    d->window_left = -1;
    d->window_right = -1;
}

void ak_attn_tensors_init(ak_attn_tensors *t) {
    if (!t) return;
    memset(t, 0, sizeof *t);
    t->size = sizeof *t;
}

static int valid_in_dtype(ak_dtype t) { return t == AK_F32 || t == AK_BF16 || t == AK_F16; }

static ak_status check_cu(const ak_ctx *ctx, const char *name, const int32_t *cu, int32_t B, int32_t bound,
                          int32_t *maxlen) {
    if (cu[0] != 0) return ak__fail(ctx, AK_ERR_BAD_METADATA, "%s[0] = %d, must be 0", name, cu[0]);
    *maxlen = 0;
    for (int32_t b = 0; b < B; b++) {
        if (cu[b + 1] < cu[b])
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "%s decreases at %d: %d -> %d", name, b, cu[b], cu[b + 1]);
        int32_t len = cu[b + 1] - cu[b];
        if (bound > 0 && len > bound)
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "%s: sequence %d has length %d above the max_seqlen %d",
                            name, b, len, bound);
        if (len > *maxlen) *maxlen = len;
    }
    return AK_OK;
}

ak_status ak__problem_init(const ak_ctx *ctx, const ak_attn_desc *desc, int allow_f64_out, ak_problem *p) {
    memset(p, 0, sizeof *p);
    if (!desc) return ak__fail(ctx, AK_ERR_NULL_POINTER, "desc is NULL");
    if (desc->size != sizeof(ak_attn_desc))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "desc.size = %zu, expected %zu (call ak_attn_desc_init)",
                        desc->size, sizeof(ak_attn_desc));
    const ak_attn_desc *d = desc;
    if (d->batch < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "batch = %d, must be >= 1", d->batch);
    if (d->num_heads_q < 1 || d->num_heads_kv < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "num_heads_q = %d, num_heads_kv = %d, both must be >= 1",
                        d->num_heads_q, d->num_heads_kv);
    if (d->num_heads_q % d->num_heads_kv != 0)
        return ak__fail(ctx, AK_ERR_GQA_RATIO, "num_heads_q = %d is not a multiple of num_heads_kv = %d",
                        d->num_heads_q, d->num_heads_kv);
    int32_t dv = d->head_dim_v == 0 ? d->head_dim : d->head_dim_v;
    if (d->head_dim < 1 || d->head_dim > AK_MAX_HEAD_DIM || dv < 1 || dv > AK_MAX_HEAD_DIM)
        return ak__fail(ctx, AK_ERR_HEAD_DIM, "head_dim = %d, head_dim_v = %d, each must be in [1, %d]",
                        d->head_dim, d->head_dim_v, AK_MAX_HEAD_DIM);
    if (!valid_in_dtype(d->dtype_q) || !valid_in_dtype(d->dtype_kv))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "dtype_q = %d, dtype_kv = %d: inputs must be f32, bf16 or f16",
                        (int)d->dtype_q, (int)d->dtype_kv);
    if (!valid_in_dtype(d->dtype_o) && !(allow_f64_out && d->dtype_o == AK_F64))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "dtype_o = %d: output must be f32, bf16 or f16%s",
                        (int)d->dtype_o, allow_f64_out ? " (or f64 for the reference)" : "");
    if (d->seqlen_q < 0 || d->seqlen_k < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "seqlen_q = %d, seqlen_k = %d, must be >= 0", d->seqlen_q,
                        d->seqlen_k);
    if (d->window_left < -1 || d->window_right < -1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "window = (%d, %d): each side must be >= -1 (-1 = unbounded)",
                        d->window_left, d->window_right);
    if (!(d->softcap >= 0.0f) || isinf(d->softcap))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "softcap = %g, must be finite and >= 0", (double)d->softcap);
    if (isinf(d->scale)) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "scale is infinite");
    if ((d->cu_seqlens_q == NULL) != (d->cu_seqlens_k == NULL))
        return ak__fail(ctx, AK_ERR_BAD_METADATA, "cu_seqlens_q and cu_seqlens_k must be given together");

    p->desc = *d;
    p->B = d->batch;
    p->Hq = d->num_heads_q;
    p->Hkv = d->num_heads_kv;
    p->g = d->num_heads_q / d->num_heads_kv;
    p->d = d->head_dim;
    p->dv = dv;
    p->desc.head_dim_v = dv;
    p->scale = isnan(d->scale) ? (float)(1.0 / sqrt((double)d->head_dim)) : d->scale;
    p->win_left = d->window_left < 0 ? AK_UNBOUNDED : d->window_left;
    p->win_right = d->causal ? 0 : (d->window_right < 0 ? AK_UNBOUNDED : d->window_right);
    p->ragged = d->cu_seqlens_q != NULL;
    p->desc.cu_seqlens_q = p->desc.cu_seqlens_k = p->desc.seqused_k = NULL;

    ak_status st;
    if (p->ragged) {
        int32_t mq, mk;
        if ((st = check_cu(ctx, "cu_seqlens_q", d->cu_seqlens_q, p->B, d->seqlen_q, &mq)) != AK_OK) return st;
        if ((st = check_cu(ctx, "cu_seqlens_k", d->cu_seqlens_k, p->B, d->seqlen_k, &mk)) != AK_OK) return st;
        p->desc.seqlen_q = mq;
        p->desc.seqlen_k = mk;
        p->cu_q = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * 2 * ((size_t)p->B + 1));
        if (!p->cu_q) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "metadata copy");
        p->cu_k = p->cu_q + p->B + 1;
        memcpy(p->cu_q, d->cu_seqlens_q, sizeof(int32_t) * ((size_t)p->B + 1));
        memcpy(p->cu_k, d->cu_seqlens_k, sizeof(int32_t) * ((size_t)p->B + 1));
        p->total_q = p->cu_q[p->B];
        p->total_k = p->cu_k[p->B];
    } else {
        p->total_q = d->seqlen_q;
        p->total_k = d->seqlen_k;
    }
    if (d->seqused_k) {
        for (int32_t b = 0; b < p->B; b++) {
            int64_t len = p->ragged ? (int64_t)d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b] : d->seqlen_k;
            if (d->seqused_k[b] < 0 || d->seqused_k[b] > len) {
                ak__problem_free(ctx, p);
                return ak__fail(ctx, AK_ERR_BAD_METADATA, "seqused_k[%d] = %d, must be in [0, %lld]", b,
                                d->seqused_k[b], (long long)len);
            }
        }
        p->used_k = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)p->B);
        if (!p->used_k) {
            ak__problem_free(ctx, p);
            return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "metadata copy");
        }
        memcpy(p->used_k, d->seqused_k, sizeof(int32_t) * (size_t)p->B);
    }
    return AK_OK;
}

void ak__problem_free(const ak_ctx *ctx, ak_problem *p) {
    if (!p) return;
    if (ctx) {
        ak__free(ctx, p->cu_q);
        ak__free(ctx, p->used_k);
    }
    p->cu_q = p->cu_k = p->used_k = NULL;
}

/* ---- tensor views ---- */

/* Lowest and one-past-highest byte address touched by a view (0,0 if it has no element). */
static void byte_range(const ak_tensor *t, uintptr_t *lo, uintptr_t *hi) {
    int64_t last = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) {
            *lo = *hi = 0;
            return;
        }
        last += (t->shape[i] - 1) * t->stride[i];
    }
    size_t es = ak_dtype_size(t->dtype);
    *lo = (uintptr_t)t->data;
    *hi = (uintptr_t)t->data + (uintptr_t)(last + 1) * es;
}

int ak__ranges_overlap(const ak_tensor *a, const ak_tensor *b) {
    uintptr_t alo, ahi, blo, bhi;
    byte_range(a, &alo, &ahi);
    byte_range(b, &blo, &bhi);
    if (alo == ahi || blo == bhi) return 0;
    return alo < bhi && blo < ahi;
}

static int64_t numel(const ak_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

ak_status ak__check_view(const ak_ctx *ctx, const char *name, const ak_tensor *t, int ndim) {
    if (t->ndim != ndim)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.ndim = %d, expected %d", name, t->ndim, ndim);
    for (int i = 0; i < ndim; i++) {
        if (t->shape[i] < 0)
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld is negative", name, i,
                            (long long)t->shape[i]);
        if (t->stride[i] < 0)
            return ak__fail(ctx, AK_ERR_BAD_STRIDE, "%s.stride[%d] = %lld is negative", name, i,
                            (long long)t->stride[i]);
    }
    if (!t->data && numel(t) > 0) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s.data is NULL", name);
    size_t es = ak_dtype_size(t->dtype);
    if (es > 1 && (uintptr_t)t->data % es != 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.data = %p is not aligned to its element size (%zu bytes)", name,
                        t->data, es);
    return AK_OK;
}

/* Output views: positive strides on every dimension of extent > 1 and no two elements aliasing. */
ak_status ak__check_out_tensor(const ak_ctx *ctx, const char *name, const ak_tensor *t) {
    int idx[AK_MAX_DIMS], n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return AK_OK; /* no element: nothing is written, any strides will do */
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] > 1) {
            if (t->stride[i] == 0)
                return ak__fail(ctx, AK_ERR_BAD_STRIDE, "%s.stride[%d] = 0 on an output of extent %lld", name, i,
                                (long long)t->shape[i]);
            idx[n++] = i;
        }
    }
    /* sort the dims by stride; each stride must step over the whole extent of the smaller ones */
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && t->stride[idx[b]] < t->stride[idx[b - 1]]; b--) {
            int tmp = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = tmp;
        }
    int64_t span = 1;
    for (int a = 0; a < n; a++) {
        int i = idx[a];
        if (t->stride[i] < span)
            return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "%s: stride[%d] = %lld makes output elements overlap", name,
                            i, (long long)t->stride[i]);
        span = t->stride[i] * (t->shape[i] - 1) + span;
    }
    return AK_OK;
}

static ak_status check_shape4(const ak_ctx *ctx, const char *name, const ak_tensor *t, int64_t n0, int64_t n1,
                              int64_t n2, int64_t n3, const char *what) {
    if (t->shape[0] != n0 || t->shape[1] != n1 || t->shape[2] != n2 || t->shape[3] != n3)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape = [%lld][%lld][%lld][%lld], expected %s = [%lld][%lld][%lld][%lld]",
                        name, (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2],
                        (long long)t->shape[3], what, (long long)n0, (long long)n1, (long long)n2, (long long)n3);
    return AK_OK;
}

static ak_status check_dtype(const ak_ctx *ctx, const char *name, const ak_tensor *t, ak_dtype want, int is_out,
                             int allow_f64) {
    int valid = valid_in_dtype(t->dtype) || (is_out && allow_f64 && t->dtype == AK_F64);
    if (!valid) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype = %d is not supported here", name, (int)t->dtype);
    if (t->dtype != want)
        return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "%s.dtype = %s but the descriptor says %s", name,
                        ak_dtype_name(t->dtype), ak_dtype_name(want));
    return AK_OK;
}

ak_status ak__check_tensors(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t, int allow_f64) {
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "tensors is NULL");
    if (t->size != sizeof(ak_attn_tensors))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "tensors.size = %zu, expected %zu (call ak_attn_tensors_init)",
                        t->size, sizeof(ak_attn_tensors));
    const ak_attn_desc *d = &p->desc;
    ak_status st;
    if ((st = ak__check_view(ctx, "q", &t->q, 4)) || (st = ak__check_view(ctx, "k", &t->k, 4)) ||
        (st = ak__check_view(ctx, "v", &t->v, 4)) || (st = ak__check_view(ctx, "o", &t->o, 4)))
        return st;
    if ((st = check_dtype(ctx, "q", &t->q, d->dtype_q, 0, 0)) || (st = check_dtype(ctx, "k", &t->k, d->dtype_kv, 0, 0)) ||
        (st = check_dtype(ctx, "v", &t->v, d->dtype_kv, 0, 0)) ||
        (st = check_dtype(ctx, "o", &t->o, d->dtype_o, 1, allow_f64)))
        return st;
    int64_t B = p->ragged ? 1 : p->B;
    int64_t Lq = t->q.shape[2], Lk = t->k.shape[2];
    if (p->ragged) {
        if (Lq < p->total_q)
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "cu_seqlens_q[batch] = %lld exceeds the packed q length %lld",
                            (long long)p->total_q, (long long)Lq);
        if (Lk < p->total_k)
            return ak__fail(ctx, AK_ERR_BAD_METADATA, "cu_seqlens_k[batch] = %lld exceeds the packed k length %lld",
                            (long long)p->total_k, (long long)Lk);
    } else {
        Lq = d->seqlen_q;
        Lk = d->seqlen_k;
    }
    const char *ws = p->ragged ? "[1][Hq][total_q][d]" : "[B][Hq][Lq][d]";
    if ((st = check_shape4(ctx, "q", &t->q, B, p->Hq, Lq, p->d, ws)) ||
        (st = check_shape4(ctx, "k", &t->k, B, p->Hkv, Lk, p->d, "[B][Hkv][Lk][d]")) ||
        (st = check_shape4(ctx, "v", &t->v, B, p->Hkv, Lk, p->dv, "[B][Hkv][Lk][dv]")) ||
        (st = check_shape4(ctx, "o", &t->o, B, p->Hq, Lq, p->dv, "[B][Hq][Lq][dv]")))
        return st;
    if ((st = ak__check_out_tensor(ctx, "o", &t->o))) return st;
    if (ak__ranges_overlap(&t->o, &t->q) || ak__ranges_overlap(&t->o, &t->k) || ak__ranges_overlap(&t->o, &t->v))
        return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "o overlaps the memory of q, k or v");
    if (d->return_lse) {
        if ((st = ak__check_view(ctx, "lse", &t->lse, 3))) return st;
        if (!(t->lse.dtype == AK_F32 || (allow_f64 && t->lse.dtype == AK_F64)))
            return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "lse.dtype = %s, must be f32", ak_dtype_name(t->lse.dtype));
        if (t->lse.shape[0] != B || t->lse.shape[1] != p->Hq || t->lse.shape[2] != Lq)
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "lse.shape = [%lld][%lld][%lld], expected [%lld][%d][%lld]",
                            (long long)t->lse.shape[0], (long long)t->lse.shape[1], (long long)t->lse.shape[2],
                            (long long)B, p->Hq, (long long)Lq);
        if ((st = ak__check_out_tensor(ctx, "lse", &t->lse))) return st;
        if (ak__ranges_overlap(&t->lse, &t->o) || ak__ranges_overlap(&t->lse, &t->q) ||
            ak__ranges_overlap(&t->lse, &t->k) || ak__ranges_overlap(&t->lse, &t->v))
            return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "lse overlaps o, q, k or v");
    }
    return ak__check_head_inputs(ctx, d->has_alibi, &t->alibi_slopes, d->has_sinks, &t->sinks, p->B, p->Hq);
}

/* The optional per-head inputs: alibi_slopes [Hq] or [B][Hq] and sinks [Hq], f32 (when in use). */
ak_status ak__check_head_inputs(const ak_ctx *ctx, int has_alibi, const ak_tensor *a, int has_sinks,
                                const ak_tensor *s, int32_t B, int32_t Hq) {
    ak_status st;
    if (has_alibi) {
        if (a->ndim != 1 && a->ndim != 2)
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "alibi_slopes.ndim = %d, expected 1 ([Hq]) or 2 ([B][Hq])", a->ndim);
        if ((st = ak__check_view(ctx, "alibi_slopes", a, a->ndim))) return st;
        if (a->dtype != AK_F32) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "alibi_slopes must be f32");
        if (a->shape[a->ndim - 1] != Hq || (a->ndim == 2 && a->shape[0] != B))
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "alibi_slopes shape must be [%d] or [%d][%d]", Hq, B, Hq);
    }
    if (has_sinks) {
        if ((st = ak__check_view(ctx, "sinks", s, 1))) return st;
        if (s->dtype != AK_F32) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "sinks must be f32");
        if (s->shape[0] != Hq)
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "sinks.shape = [%lld], expected [%d]", (long long)s->shape[0], Hq);
    }
    return AK_OK;
}

/* Ragged padding rows [cu_q[B], packed length): O = 0, LSE = -inf. */
void ak__zero_padding_rows(const ak_problem *p, const ak_attn_tensors *t) {
    if (!p->ragged) return;
    int64_t Lpacked = t->o.shape[2];
    for (int64_t h = 0; h < p->Hq; h++)
        for (int64_t i = p->total_q; i < Lpacked; i++) {
            int64_t ob = h * t->o.stride[1] + i * t->o.stride[2];
            for (int64_t c = 0; c < p->dv; c++) ak__store(t->o.data, t->o.dtype, ob + c * t->o.stride[3], 0.0);
            if (p->desc.return_lse)
                ak__store(t->lse.data, t->lse.dtype, h * t->lse.stride[1] + i * t->lse.stride[2], -INFINITY);
        }
}
