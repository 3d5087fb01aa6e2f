/* Linear attention: decay conventions, descriptor and tensor validation, entry points. */
#include "exec/linear.h"

#include <string.h>

#define AK_LA_DEFAULT_BLOCK 64
#define AK_LA_MAX_BLOCK 4096

void ak_la_desc_init(ak_la_desc *d) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->size = sizeof *d;
    d->batch = 1;
    d->num_heads = 1;
    d->dtype_qkv = d->dtype_o = AK_F32;
    d->scale = 1.0f;
    d->norm = AK_LA_NORM_NONE;
    d->norm_eps = 1e-6f;
}

void ak_la_tensors_init(ak_la_tensors *t) {
    if (!t) return;
    memset(t, 0, sizeof *t);
    t->size = sizeof *t;
}

/* ALiBi slopes as the official code builds them: 2^(-8h/n) for a power of two n; otherwise the slopes
 * of the next lower power of two P, then every other slope of the 2P list (the first H - P of them). */
static double official_slope(int32_t H, int32_t h /* 0-based */) {
    int32_t P = 1;
    while (P * 2 <= H) P *= 2;
    if (h < P) return pow(2.0, -8.0 * (h + 1) / P);
    int32_t k = h - P;                          /* every other slope of the 2P list: indices 0, 2, 4, ... */
    return pow(2.0, -8.0 * (2 * k + 1) / (2.0 * P));
}

ak_status ak_la_log_decay(ak_ctx *ctx, ak_la_decay_mode mode, int32_t H, int32_t layer, int32_t n_layers,
                          float *log_decay) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!log_decay) return ak__fail(ctx, AK_ERR_NULL_POINTER, "log_decay is NULL");
    if (H < 1 || n_layers < 1 || layer < 0 || layer >= n_layers)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "num_heads = %d, n_layers = %d must be >= 1 and layer = %d in [0, %d)",
                        H, n_layers, layer, n_layers);
    double f;
    switch (mode) {
    case AK_LA_DECAY_OFFICIAL: f = (n_layers > 1 ? 1.0 - (double)layer / (n_layers - 1) : 1.0) + 1e-5; break;
    case AK_LA_DECAY_MINIMAX: f = 1.0 - (double)layer / (n_layers - 1 + 1e-5) + 1e-5; break;
    case AK_LA_DECAY_PAPER: f = 1.0 - (double)layer / n_layers; break;
    default: return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "mode = %d is not an ak_la_decay_mode", (int)mode);
    }
    for (int32_t h = 0; h < H; h++) {
        double s = mode == AK_LA_DECAY_OFFICIAL ? official_slope(H, h)
                 : mode == AK_LA_DECAY_MINIMAX  ? pow(2.0, -8.0 * (h + 1) / H)
                                                : 8.0 * h / H;
        log_decay[h] = (float)(-s * f);
    }
    return AK_OK;
}

static int valid_in(ak_dtype t) { return t == AK_F32 || t == AK_BF16 || t == AK_F16; }

static void la_free(const ak_ctx *ctx, ak_laproblem *p) {
    ak__free(ctx, p->cu);
    p->cu = NULL;
}

static ak_status la_init(const ak_ctx *ctx, const ak_la_desc *d, int allow_f64, ak_laproblem *p) {
    memset(p, 0, sizeof *p);
    if (!d) return ak__fail(ctx, AK_ERR_NULL_POINTER, "desc is NULL");
    if (d->size != sizeof(ak_la_desc))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "desc.size = %zu, expected %zu (call ak_la_desc_init)", d->size,
                        sizeof(ak_la_desc));
    if (d->batch < 1 || d->num_heads < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "batch = %d, num_heads = %d, both must be >= 1", d->batch,
                        d->num_heads);
    if (d->seqlen < 0 && !d->cu_seqlens)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "seqlen = %d, must be >= 0", d->seqlen);
    int32_t e = d->head_dim_v ? d->head_dim_v : d->head_dim;
    if (d->head_dim < 1 || d->head_dim > AK_MAX_HEAD_DIM || e < 1 || e > AK_MAX_HEAD_DIM)
        return ak__fail(ctx, AK_ERR_HEAD_DIM, "head_dim = %d, head_dim_v = %d, each must be in [1, %d]", d->head_dim,
                        d->head_dim_v, AK_MAX_HEAD_DIM);
    if (!valid_in(d->dtype_qkv))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "dtype_qkv = %d: must be f32, bf16 or f16", (int)d->dtype_qkv);
    if (!valid_in(d->dtype_o) && !(allow_f64 && d->dtype_o == AK_F64))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "dtype_o = %d: must be f32, bf16 or f16", (int)d->dtype_o);
    if (!isfinite(d->scale)) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "scale = %g, must be finite", (double)d->scale);
    if (d->block < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "block = %d, must be >= 0 (0 = auto)", d->block);
    if (d->norm != AK_LA_NORM_NONE && d->norm != AK_LA_NORM_SRMS)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "norm = %d is not an ak_la_norm", (int)d->norm);
    if (d->norm == AK_LA_NORM_SRMS && !(d->norm_eps > 0.0f && isfinite(d->norm_eps)))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "norm_eps = %g, must be finite and > 0", (double)d->norm_eps);
    if (d->has_gate != 0 && d->has_gate != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "has_gate = %d, must be 0 or 1", d->has_gate);
    p->desc = *d;
    p->desc.cu_seqlens = NULL;
    p->B = d->batch;
    p->H = d->num_heads;
    p->d = d->head_dim;
    p->e = e;
    p->blk = d->block ? d->block : AK_LA_DEFAULT_BLOCK;
    p->total = d->seqlen;
    if (!d->cu_seqlens && p->blk > d->seqlen) p->blk = d->seqlen > 0 ? d->seqlen : 1; /* one block at most */
    if (d->cu_seqlens) {
        const int32_t *cu = d->cu_seqlens;
        int64_t longest = 0;
        for (int32_t b = 0; b < p->B && cu[0] == 0; b++)
            if ((int64_t)cu[b + 1] - cu[b] > longest) longest = (int64_t)cu[b + 1] - cu[b];
        if (p->blk > longest) p->blk = longest > 0 ? (int32_t)longest : 1;
        if (cu[0] != 0) return ak__fail(ctx, AK_ERR_BAD_METADATA, "cu_seqlens[0] = %d, must be 0", cu[0]);
        for (int32_t b = 0; b < p->B; b++)
            if (cu[b + 1] < cu[b])
                return ak__fail(ctx, AK_ERR_BAD_METADATA, "cu_seqlens decreases at %d: %d -> %d", b, cu[b], cu[b + 1]);
        p->cu = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * ((size_t)p->B + 1));
        if (!p->cu) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "cu_seqlens copy");
        memcpy(p->cu, cu, sizeof(int32_t) * ((size_t)p->B + 1));
        p->total = cu[p->B];
    }
    if (p->blk > AK_LA_MAX_BLOCK) {
        la_free(ctx, p);
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "block = %d (after capping at the longest sequence), must be <= %d",
                        p->blk, AK_LA_MAX_BLOCK);
    }
    return AK_OK;
}

/* A view of nd dims with the wanted shape (-1: any extent) and dtype dt. The f32-only tensors
 * (log_decay, states) take AK_F32 with f32_only set: any other dtype is invalid in that role. */
static ak_status check_t(const ak_ctx *ctx, const char *name, const ak_tensor *t, int nd, const int64_t *want,
                         int out, int allow_f64, ak_dtype dt, int f32_only) {
    ak_status st = ak__check_view(ctx, name, t, nd);
    if (st) return st;
    int ok = f32_only ? t->dtype == AK_F32 : (valid_in(t->dtype) || (out && allow_f64 && t->dtype == AK_F64));
    if (!ok) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype = %s is not supported here", name, ak_dtype_name(t->dtype));
    if (t->dtype != dt && !(out && allow_f64 && t->dtype == AK_F64))
        return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "%s.dtype = %s but the descriptor says %s", name,
                        ak_dtype_name(t->dtype), ak_dtype_name(dt));
    for (int i = 0; i < nd; i++)
        if (want[i] >= 0 && t->shape[i] != want[i])
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld, expected %lld", name, i,
                            (long long)t->shape[i], (long long)want[i]);
    return out ? ak__check_out_tensor(ctx, name, t) : AK_OK;
}

static int same_view(const ak_tensor *a, const ak_tensor *b) {
    return a->data == b->data && a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, sizeof a->shape) == 0 && memcmp(a->stride, b->stride, sizeof a->stride) == 0;
}

/* fwd = 1: the forward's tensors (o, state_out as the flags say); 0: the inputs only (backward). */
static ak_status la_check(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, int allow_f64, int fwd) {
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "tensors is NULL");
    if (t->size != sizeof(ak_la_tensors))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "tensors.size = %zu, expected %zu (call ak_la_tensors_init)", t->size,
                        sizeof(ak_la_tensors));
    const ak_la_desc *d = &p->desc;
    int64_t B = p->cu ? 1 : p->B, L = p->cu ? t->q.shape[2] : d->seqlen;
    if (p->cu && L < p->total)
        return ak__fail(ctx, AK_ERR_BAD_METADATA, "cu_seqlens[batch] = %lld exceeds the packed length %lld",
                        (long long)p->total, (long long)L);
    int64_t qs[4] = {B, p->H, L, p->d}, vs[4] = {B, p->H, L, p->e}, ss[4] = {p->B, p->H, p->d, p->e}, hs[1] = {p->H};
    ak_status st;
    if ((st = check_t(ctx, "q", &t->q, 4, qs, 0, 0, d->dtype_qkv, 0)) || (st = check_t(ctx, "k", &t->k, 4, qs, 0, 0, d->dtype_qkv, 0)) ||
        (st = check_t(ctx, "v", &t->v, 4, vs, 0, 0, d->dtype_qkv, 0)))
        return st;
    if (fwd && (st = check_t(ctx, "o", &t->o, 4, vs, 1, allow_f64, d->dtype_o, 0))) return st;
    if (d->has_decay) {
        if ((st = check_t(ctx, "log_decay", &t->log_decay, 1, hs, 0, 0, AK_F32, 1))) return st;
        for (int32_t h = 0; h < p->H; h++) {
            float x = ((const float *)t->log_decay.data)[h * t->log_decay.stride[0]];
            if (!(x <= 0.0f) || isinf(x))
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "log_decay[%d] = %g, must be finite and <= 0", h, (double)x);
        }
    }
    if (d->has_initial_state && (st = check_t(ctx, "state_in", &t->state_in, 4, ss, 0, 0, AK_F32, 1))) return st;
    if (d->has_gate && (st = check_t(ctx, "gate", &t->gate, 4, vs, 0, 0, d->dtype_qkv, 0))) return st;
    if (!fwd) return AK_OK;
    if (d->return_final_state && (st = check_t(ctx, "state_out", &t->state_out, 4, ss, 1, 0, AK_F32, 1))) return st;
    const ak_tensor *ins[6] = {&t->q, &t->k, &t->v, d->has_decay ? &t->log_decay : NULL,
                               d->has_initial_state ? &t->state_in : NULL, d->has_gate ? &t->gate : NULL};
    for (int i = 0; i < 6; i++) {
        if (!ins[i]) continue;
        if (ak__ranges_overlap(&t->o, ins[i])) return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "o overlaps an input");
        if (d->return_final_state && ak__ranges_overlap(&t->state_out, ins[i]) &&
            !(i == 4 && same_view(&t->state_out, &t->state_in)))
            return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "state_out overlaps an input (it may only be state_in itself)");
    }
    if (d->return_final_state && ak__ranges_overlap(&t->state_out, &t->o))
        return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "state_out overlaps o");
    return AK_OK;
}

/* A contiguous [n0][H][n2][e] buffer of dtype xt for the pre-norm output x (freed by the caller). */
static ak_status la_xbuf(const ak_ctx *ctx, const ak_laproblem *p, const ak_tensor *like, ak_dtype xt, ak_tensor *x) {
    memset(x, 0, sizeof *x);
    x->dtype = xt;
    x->ndim = 4;
    x->shape[0] = like->shape[0];
    x->shape[1] = p->H;
    x->shape[2] = like->shape[2];
    x->shape[3] = p->e;
    x->stride[3] = 1;
    x->stride[2] = p->e;
    x->stride[1] = x->shape[2] * p->e;
    x->stride[0] = p->H * x->stride[1];
    const size_t n = (size_t)x->shape[0] * (size_t)x->stride[0];
    x->data = ak__alloc(ctx, (n ? n : 1) * ak_dtype_size(xt));
    if (!x->data) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention: pre-norm output buffer (%zu values)", n);
    return AK_OK;
}

/* The forward, with the norm / gate applied to an fp32 (reference: f64) pre-norm output. */
static ak_status la_forward_run(ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, int form) {
    const int ref = form == 2 || ctx->force_ref;
    if (p->desc.norm == AK_LA_NORM_NONE && !p->desc.has_gate) return ref ? ak__la_ref(ctx, p, t) : ak__la_run(ctx, p, t, form);
    const ak_dtype xt = ref ? AK_F64 : AK_F32;
    ak_la_tensors t2 = *t;
    ak_tensor xb;
    ak_status st = AK_OK;
    int own = t->o.dtype != xt;
    if (own && (st = la_xbuf(ctx, p, &t->o, xt, &xb)) != AK_OK) return st;
    if (own) t2.o = xb;
    st = ref ? ak__la_ref(ctx, p, &t2) : ak__la_run(ctx, p, &t2, form);
    const ak_tensor *gate = p->desc.has_gate ? &t->gate : NULL;
    if (st == AK_OK) st = ref ? ak__la_norm_fwd_ref(p, &t2.o, gate, &t->o) : ak__la_norm_fwd(ctx, p, &t2.o, gate, &t->o);
    if (own) ak__free(ctx, xb.data);
    return st;
}

static ak_status la_entry(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t, int form /* 0, 1, 2 = ref */) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    ak_laproblem p;
    ak_status st = la_init(ctx, desc, form == 2, &p);
    if (st != AK_OK) return st;
    st = la_check(ctx, &p, t, form == 2, 1);
    if (st == AK_OK) {
        /* packed rows beyond the last sequence are padding: zero outputs */
        if (p.cu)
            for (int64_t h = 0; h < p.H; h++)
                for (int64_t i = p.total; i < t->o.shape[2]; i++)
                    for (int64_t c = 0; c < p.e; c++)
                        ak__store(t->o.data, t->o.dtype, h * t->o.stride[1] + i * t->o.stride[2] + c * t->o.stride[3], 0.0);
        st = la_forward_run(ctx, &p, t, form);
    }
    la_free(ctx, &p);
    return st;
}

ak_status ak_la_forward(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t) { return la_entry(ctx, desc, t, 0); }
ak_status ak_la_recurrent(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t) { return la_entry(ctx, desc, t, 1); }
ak_status ak_la_forward_ref(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t) { return la_entry(ctx, desc, t, 2); }

void ak_la_grads_init(ak_la_grads *g) {
    if (!g) return;
    memset(g, 0, sizeof *g);
    g->size = sizeof *g;
}

/* Gradient tensors: d_o, d_state_out (inputs), dq, dk, dv, d_state_in (outputs), no output overlapping
 * any input or another output. */
static ak_status grads_check(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g,
                             int allow_f64) {
    if (!g) return ak__fail(ctx, AK_ERR_NULL_POINTER, "grads is NULL");
    if (g->size != sizeof(ak_la_grads))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "grads.size = %zu, expected %zu (call ak_la_grads_init)", g->size,
                        sizeof(ak_la_grads));
    int64_t B = p->cu ? 1 : p->B, L = t->q.shape[2];
    int64_t qs[4] = {B, p->H, L, p->d}, vs[4] = {B, p->H, L, p->e}, ss[4] = {p->B, p->H, p->d, p->e};
    ak_status st;
    if ((st = check_t(ctx, "d_o", &g->d_o, 4, vs, 0, 0, g->d_o.dtype, 0))) return st;
    if (g->has_d_state_out && (st = check_t(ctx, "d_state_out", &g->d_state_out, 4, ss, 0, 0, AK_F32, 1))) return st;
    if ((st = check_t(ctx, "dq", &g->dq, 4, qs, 1, allow_f64, g->dq.dtype, 0)) ||
        (st = check_t(ctx, "dk", &g->dk, 4, qs, 1, allow_f64, g->dk.dtype, 0)) ||
        (st = check_t(ctx, "dv", &g->dv, 4, vs, 1, allow_f64, g->dv.dtype, 0)))
        return st;
    if (p->desc.has_initial_state && (st = check_t(ctx, "d_state_in", &g->d_state_in, 4, ss, 1, 0, AK_F32, 1))) return st;
    if (p->desc.has_gate && (st = check_t(ctx, "d_gate", &g->d_gate, 4, vs, 1, allow_f64, g->d_gate.dtype, 0))) return st;
    const ak_tensor *ins[8] = {&t->q, &t->k, &t->v, &g->d_o, p->desc.has_decay ? &t->log_decay : NULL,
                               p->desc.has_initial_state ? &t->state_in : NULL, g->has_d_state_out ? &g->d_state_out : NULL,
                               p->desc.has_gate ? &t->gate : NULL};
    const ak_tensor *outs[5] = {&g->dq, &g->dk, &g->dv, p->desc.has_initial_state ? &g->d_state_in : NULL,
                                p->desc.has_gate ? &g->d_gate : NULL};
    for (int i = 0; i < 5; i++) {
        if (!outs[i]) continue;
        for (int j = 0; j < 8; j++)
            if (ins[j] && ak__ranges_overlap(outs[i], ins[j]))
                return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "a gradient output overlaps an input");
        for (int j = i + 1; j < 5; j++)
            if (outs[j] && ak__ranges_overlap(outs[i], outs[j]))
                return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "two gradient outputs overlap");
    }
    return AK_OK;
}

/* The backward; with a norm or gate: recompute the pre-norm output x, turn d_o into dx, then the plain backward. */
static ak_status la_backward_run(ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g, int ref) {
    if (p->desc.norm == AK_LA_NORM_NONE && !p->desc.has_gate) return ref ? ak__la_bwd_ref(ctx, p, t, g) : ak__la_bwd(ctx, p, t, g);
    ak_tensor xb;
    ak_status st = la_xbuf(ctx, p, &t->q, ref ? AK_F64 : AK_F32, &xb);
    if (st != AK_OK) return st;
    ak_laproblem p2 = *p;
    p2.desc.return_final_state = 0;
    ak_la_tensors t2 = *t;
    t2.o = xb;
    st = ref ? ak__la_ref(ctx, &p2, &t2) : ak__la_run(ctx, &p2, &t2, 0);
    const ak_tensor *gate = p->desc.has_gate ? &t->gate : NULL, *dgate = p->desc.has_gate ? &g->d_gate : NULL;
    if (st == AK_OK) st = ref ? ak__la_norm_bwd_ref(p, &xb, gate, &g->d_o, dgate) : ak__la_norm_bwd(ctx, p, &xb, gate, &g->d_o, dgate);
    if (st == AK_OK) {
        ak_la_grads g2 = *g;
        g2.d_o = xb;
        st = ref ? ak__la_bwd_ref(ctx, p, t, &g2) : ak__la_bwd(ctx, p, t, &g2);
    }
    ak__free(ctx, xb.data);
    return st;
}

static ak_status la_bwd_entry(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t, const ak_la_grads *g, int ref) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    ak_laproblem p;
    ak_status st = la_init(ctx, desc, ref, &p);
    if (st != AK_OK) return st;
    if ((st = la_check(ctx, &p, t, ref, 0)) == AK_OK && (st = grads_check(ctx, &p, t, g, ref)) == AK_OK) {
        if (p.cu) /* padding rows of the gradients */
            for (int64_t h = 0; h < p.H; h++)
                for (int64_t i = p.total; i < t->q.shape[2]; i++) {
                    const ak_tensor *o3[4] = {&g->dq, &g->dk, &g->dv, &g->d_gate};
                    for (int w = 0; w < (p.desc.has_gate ? 4 : 3); w++)
                        for (int64_t c = 0; c < o3[w]->shape[3]; c++)
                            ak__store(o3[w]->data, o3[w]->dtype, h * o3[w]->stride[1] + i * o3[w]->stride[2] + c * o3[w]->stride[3], 0.0);
                }
        st = la_backward_run(ctx, &p, t, g, ref || ctx->force_ref);
    }
    la_free(ctx, &p);
    return st;
}

ak_status ak_la_backward(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t, const ak_la_grads *g) {
    return la_bwd_entry(ctx, desc, t, g, 0);
}
ak_status ak_la_backward_ref(ak_ctx *ctx, const ak_la_desc *desc, const ak_la_tensors *t, const ak_la_grads *g) {
    return la_bwd_entry(ctx, desc, t, g, 1);
}
