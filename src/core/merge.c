/* Merge of two partial attention results over disjoint key sets (LSE-weighted). */
#include "core/internal.h"

#include <string.h>

static int valid_o_dtype(ak_dtype t) { return t == AK_F32 || t == AK_BF16 || t == AK_F16; }

static ak_status check_o(const ak_ctx *ctx, const char *name, const ak_tensor *t, const ak_tensor *ref) {
    if (t->ndim != 4) return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.ndim = %d, expected 4 ([B][H][L][dv])", name, t->ndim);
    if (!valid_o_dtype(t->dtype)) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype must be f32, bf16 or f16", name);
    int64_t n = 1;
    for (int i = 0; i < 4; i++) {
        if (t->stride[i] < 0) return ak__fail(ctx, AK_ERR_BAD_STRIDE, "%s.stride[%d] is negative", name, i);
        if (ref && t->shape[i] != ref->shape[i])
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld differs from o_a's %lld", name, i,
                            (long long)t->shape[i], (long long)ref->shape[i]);
        if (t->shape[i] < 0) return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] is negative", name, i);
        n *= t->shape[i];
    }
    if (!t->data && n > 0) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s.data is NULL", name);
    if ((uintptr_t)t->data % ak_dtype_size(t->dtype) != 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.data is not aligned to its element size", name);
    return AK_OK;
}

static ak_status check_lse(const ak_ctx *ctx, const char *name, const ak_tensor *t, const ak_tensor *o) {
    if (t->ndim != 3) return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.ndim = %d, expected 3 ([B][H][L])", name, t->ndim);
    if (t->dtype != AK_F32) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype must be f32", name);
    int64_t n = 1;
    for (int i = 0; i < 3; i++) {
        if (t->stride[i] < 0) return ak__fail(ctx, AK_ERR_BAD_STRIDE, "%s.stride[%d] is negative", name, i);
        if (t->shape[i] != o->shape[i])
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld, expected %lld", name, i,
                            (long long)t->shape[i], (long long)o->shape[i]);
        n *= t->shape[i];
    }
    if (!t->data && n > 0) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s.data is NULL", name);
    if ((uintptr_t)t->data % ak_dtype_size(t->dtype) != 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s.data is not aligned to its element size", name);
    return AK_OK;
}

static int same_view(const ak_tensor *a, const ak_tensor *b) {
    return a->data == b->data && a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, sizeof a->shape) == 0 && memcmp(a->stride, b->stride, sizeof a->stride) == 0;
}

/* An output may be the very same view as the first input (in place), or disjoint from every input. */
static ak_status check_alias(const ak_ctx *ctx, const char *name, const ak_tensor *out, const ak_tensor *in_a,
                             const ak_tensor *const *others, int n_others) {
    if (!same_view(out, in_a) && ak__ranges_overlap(out, in_a))
        return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "%s partially overlaps its first input", name);
    for (int i = 0; i < n_others; i++)
        if (others[i] && ak__ranges_overlap(out, others[i]))
            return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "%s overlaps another input or output", name);
    return AK_OK;
}

/* LSE weights of two partials: w_a = e^(la - lse), w_b = e^(lb - lse); both 0 and lse = -inf when
 * neither has mass. */
static void merge_weights(float la, float lb, float *wa, float *wb, float *lse) {
    float mx = la > lb ? la : lb;
    *wa = *wb = 0.0f;
    *lse = -INFINITY;
    if (mx != -INFINITY) {
        float ea = expf(la - mx), eb = expf(lb - mx); /* exp(-inf) = 0 */
        float s = ea + eb;
        *wa = ea / s;
        *wb = eb / s;
        *lse = mx + logf(s);
    }
}

ak_status ak_attn_merge(ak_ctx *ctx, const ak_tensor *o_a, const ak_tensor *lse_a, const ak_tensor *o_b,
                        const ak_tensor *lse_b, const ak_tensor *o_out, const ak_tensor *lse_out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!o_a || !lse_a || !o_b || !lse_b || !o_out)
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "o_a, lse_a, o_b, lse_b and o_out are required");
    ak_status st;
    if ((st = check_o(ctx, "o_a", o_a, NULL)) || (st = check_o(ctx, "o_b", o_b, o_a)) ||
        (st = check_o(ctx, "o_out", o_out, o_a)) || (st = check_lse(ctx, "lse_a", lse_a, o_a)) ||
        (st = check_lse(ctx, "lse_b", lse_b, o_a)))
        return st;
    if ((st = ak__check_out_tensor(ctx, "o_out", o_out))) return st;
    const ak_tensor *oth1[4] = {o_b, lse_a, lse_b, lse_out};
    if ((st = check_alias(ctx, "o_out", o_out, o_a, oth1, 4))) return st;
    if (lse_out) {
        if ((st = check_lse(ctx, "lse_out", lse_out, o_a))) return st;
        if ((st = ak__check_out_tensor(ctx, "lse_out", lse_out))) return st;
        const ak_tensor *oth2[3] = {o_b, lse_b, o_a};
        if ((st = check_alias(ctx, "lse_out", lse_out, lse_a, oth2, 3))) return st;
    }
    int64_t B = o_a->shape[0], H = o_a->shape[1], L = o_a->shape[2], D = o_a->shape[3];
    int64_t rows = B * H * L;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
#endif
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / (H * L), h = (r / L) % H, i = r % L;
        float la = ((const float *)lse_a->data)[b * lse_a->stride[0] + h * lse_a->stride[1] + i * lse_a->stride[2]];
        float lb = ((const float *)lse_b->data)[b * lse_b->stride[0] + h * lse_b->stride[1] + i * lse_b->stride[2]];
        float wa, wb, lse;
        merge_weights(la, lb, &wa, &wb, &lse);
        int64_t ao = b * o_a->stride[0] + h * o_a->stride[1] + i * o_a->stride[2];
        int64_t bo = b * o_b->stride[0] + h * o_b->stride[1] + i * o_b->stride[2];
        int64_t oo = b * o_out->stride[0] + h * o_out->stride[1] + i * o_out->stride[2];
        for (int64_t c = 0; c < D; c++) {
            float va = wa != 0.0f ? ak__load(o_a->data, o_a->dtype, ao + c * o_a->stride[3]) : 0.0f;
            float vb = wb != 0.0f ? ak__load(o_b->data, o_b->dtype, bo + c * o_b->stride[3]) : 0.0f;
            ak__store(o_out->data, o_out->dtype, oo + c * o_out->stride[3], (double)(wa * va + wb * vb));
        }
        if (lse_out)
            ((float *)lse_out->data)[b * lse_out->stride[0] + h * lse_out->stride[1] + i * lse_out->stride[2]] = lse;
    }
    return AK_OK;
}
