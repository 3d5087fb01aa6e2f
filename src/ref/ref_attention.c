/*
 * The double-precision reference for dense attention: the oracle of the tests and of `attnkit check`.
 * Written to be read, not to be fast: one head at a time, the full score matrix materialised, every
 * mask applied explicitly, everything accumulated in double.
 */
#include "core/internal.h"
#include "core/sparse.h"
#include "exec/sparse.h"

#include <math.h>

/* Is key j visible from row i of sequence s?  The intersection of every active mask. */
static int ref_visible(const ak_problem *p, const ak_seq *s, int64_t i, int64_t j) {
    if (j < 0 || j >= s->Lk) return 0;            /* beyond the keys actually used */
    int64_t pos = i + s->Lk - s->Lq;               /* bottom-right alignment */
    if (p->desc.causal && j > pos) return 0;
    if (p->desc.window_left >= 0 && j < pos - p->desc.window_left) return 0;
    if (p->desc.window_right >= 0 && j > pos + p->desc.window_right) return 0;
    return 1;
}

/* q[d] . k[d] in double; the views carry their own dtypes and strides. */
static double ref_dot(const ak_tensor *q, int64_t qoff, const ak_tensor *k, int64_t koff, int d) {
    double acc = 0.0;
    for (int c = 0; c < d; c++)
        acc += ak__load_f64(q->data, q->dtype, qoff + c * q->stride[3]) *
               ak__load_f64(k->data, k->dtype, koff + c * k->stride[3]);
    return acc;
}

static double ref_alibi_slope(const ak_problem *p, const ak_attn_tensors *t, int64_t b, int64_t h) {
    const ak_tensor *a = &t->alibi_slopes;
    int64_t off = a->ndim == 2 ? b * a->stride[0] + h * a->stride[1] : h * a->stride[0];
    return ((const float *)a->data)[off];
}

/*
 * One (sequence b, query head h):
 *   S[Lq][Lk] = scale * Q_h K_h^T, softcapped, ALiBi-biased, masked with -inf (mask: the sparse
 *   pattern's element mask [Lq][Lk], or NULL)
 *   O[i] = sum_j softmax(S[i])_j V[j]   (denominator includes e^sink)
 *   LSE[i] = log(e^sink + sum_j e^S[i][j])
 */
static void ref_head(const ak_problem *p, const ak_attn_tensors *t, int64_t b, int64_t h, double *S, const uint8_t *mask,
                     const float *bias) {
    ak_seq s = ak__seq(p, b);
    int64_t hk = h / p->g;
    const ak_tensor *Q = &t->q, *K = &t->k, *V = &t->v, *O = &t->o;
    double cap = p->desc.softcap;
    double slope = p->desc.has_alibi ? ref_alibi_slope(p, t, b, h) : 0.0;
    double sink = p->desc.has_sinks ? ((const float *)t->sinks.data)[h * t->sinks.stride[0]] : -INFINITY;

    for (int64_t i = 0; i < s.Lq; i++) {
        int64_t qoff = s.bidx * Q->stride[0] + h * Q->stride[1] + (s.q_off + i) * Q->stride[2];
        for (int64_t j = 0; j < s.Lk; j++) {
            int64_t koff = s.bidx * K->stride[0] + hk * K->stride[1] + (s.k_off + j) * K->stride[2];
            double x = (double)p->scale * ref_dot(Q, qoff, K, koff, p->d);
            if (cap > 0) x = cap * tanh(x / cap);
            x -= slope * fabs((double)(i + s.Lk - s.Lq - j));
            if (bias) x += bias[j];   /* the sparse plan's per-key bias (DMA), after softcap */
            int vis = ref_visible(p, &s, i, j) && (!mask || mask[i * s.Lk + j]);
            S[i * s.Lk + j] = vis ? x : -INFINITY;
        }
    }
    for (int64_t i = 0; i < s.Lq; i++) {
        double *row = S + i * s.Lk;
        double mx = sink;
        for (int64_t j = 0; j < s.Lk; j++) mx = row[j] > mx ? row[j] : mx;
        double denom = 0.0;
        if (mx != -INFINITY) {
            denom = exp(sink - mx);
            for (int64_t j = 0; j < s.Lk; j++) {
                row[j] = exp(row[j] - mx); /* exp(-inf) = 0 */
                denom += row[j];
            }
        }
        int64_t ooff = s.bidx * O->stride[0] + h * O->stride[1] + (s.q_off + i) * O->stride[2];
        for (int64_t c = 0; c < p->dv; c++) {
            double acc = 0.0;
            if (mx != -INFINITY)
                for (int64_t j = 0; j < s.Lk; j++) {
                    if (row[j] == 0.0) continue;
                    int64_t voff = s.bidx * V->stride[0] + hk * V->stride[1] + (s.k_off + j) * V->stride[2];
                    acc += row[j] * ak__load_f64(V->data, V->dtype, voff + c * V->stride[3]);
                }
            ak__store(O->data, O->dtype, ooff + c * O->stride[3], denom > 0 ? acc / denom : 0.0);
        }
        if (p->desc.return_lse) {
            double lse = mx == -INFINITY ? -INFINITY : mx + log(denom);
            int64_t loff = s.bidx * t->lse.stride[0] + h * t->lse.stride[1] + (s.q_off + i) * t->lse.stride[2];
            ak__store(t->lse.data, t->lse.dtype, loff, lse);
        }
    }
}

ak_status ak__ref_run(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t) {
    int64_t maxq = 0, maxk = 0;
    for (int64_t b = 0; b < p->B; b++) {
        ak_seq s = ak__seq(p, b);
        if (s.Lq > maxq) maxq = s.Lq;
        if (s.Lk > maxk) maxk = s.Lk;
    }
    double *S = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(maxq * maxk + 1));
    if (!S) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "reference score matrix %lld x %lld", (long long)maxq, (long long)maxk);
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->Hq; h++) ref_head(p, t, b, h, S, NULL, NULL);
    ak__zero_padding_rows(p, t);
    ak__free(ctx, S);
    return AK_OK;
}

ak_status ak_attention_ref(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    ak_problem p;
    ak_status st = ak__problem_init(ctx, desc, 1, &p);
    if (st != AK_OK) return st;
    st = ak__check_tensors(ctx, &p, t, 1);
    if (st == AK_OK) st = ak__ref_run(ctx, &p, t);
    ak__problem_free(ctx, &p);
    return st;
}

/*
 * A mean-combined plan (AK_SPARSE_MEAN), one (sequence b, query head h): every block of the plan head attends
 * on its own (each of its rows over the keys the block gives it, with their own softmax); a row's output is the
 * mean of its blocks' outputs and its LSE log(sum of e^LSE_block). mask: one row of Lk bytes, o: [Lq][dv] doubles.
 */
static ak_status ref_mean_head(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t, const ak_sparse *sp,
                               int64_t b, int64_t h, double *S, double *o) {
    ak_seq s = ak__seq(p, b);
    int64_t Lq = s.Lq, Lk = s.Lk, words = (Lk + 63) / 64, hk = h / p->g;
    int64_t bh = (sp->n_batch == 1 ? 0 : b) * (int64_t)sp->n_heads + ak__sparse_plan_head(sp, p->Hq, p->Hkv, (int32_t)h);
    const float *bias = sp->key_bias ? sp->key_bias + bh * sp->nk : NULL;
    uint64_t *bits = (uint64_t *)ak__alloc(ctx, sizeof(uint64_t) * (size_t)(words + 1));
    double *lse = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(Lq + 1));
    int32_t *cnt = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(Lq + 1));
    if (!bits || !lse || !cnt) {
        ak__free(ctx, bits);
        ak__free(ctx, lse);
        ak__free(ctx, cnt);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "reference rows");
    }
    const ak_tensor *Q = &t->q, *K = &t->k, *V = &t->v, *O = &t->o;
    double slope = p->desc.has_alibi ? ref_alibi_slope(p, t, b, h) : 0.0;
    double sink = p->desc.has_sinks ? ((const float *)t->sinks.data)[h * t->sinks.stride[0]] : -INFINITY;
    for (int64_t i = 0; i < Lq; i++) {
        lse[i] = -INFINITY;
        cnt[i] = 0;
        for (int64_t c = 0; c < p->dv; c++) o[i * p->dv + c] = 0.0;
    }
    for (int64_t r = bh * sp->n_qblocks; r < (bh + 1) * sp->n_qblocks; r++)
        for (int64_t e = sp->qrow_off[r]; e < sp->qrow_off[r + 1]; e++) {
            int64_t i = sp->qrows[e];
            ak__sparse_row_bits(sp, r, i, bits);
            /* S[j] = the logits of row i over the block's keys for it, -inf elsewhere */
            int64_t qoff = s.bidx * Q->stride[0] + h * Q->stride[1] + i * Q->stride[2];
            double mx = sink, denom = 0.0;
            for (int64_t j = 0; j < Lk; j++) {
                int64_t koff = s.bidx * K->stride[0] + hk * K->stride[1] + j * K->stride[2];
                int vis = ref_visible(p, &s, i, j) && ((bits[j >> 6] >> (j & 63)) & 1);
                double x = (double)p->scale * ref_dot(Q, qoff, K, koff, p->d);
                if (p->desc.softcap > 0) x = p->desc.softcap * tanh(x / p->desc.softcap);
                x -= slope * fabs((double)(i + Lk - Lq - j));
                if (bias) x += bias[j];
                S[j] = vis ? x : -INFINITY;
                mx = S[j] > mx ? S[j] : mx;
            }
            cnt[i]++;
            if (mx == -INFINITY) continue; /* no key in this block (and no sink): contributes O = 0 */
            denom = exp(sink - mx);
            for (int64_t j = 0; j < Lk; j++) denom += (S[j] = exp(S[j] - mx));
            for (int64_t c = 0; c < p->dv; c++) {
                double acc = 0.0;
                for (int64_t j = 0; j < Lk; j++) {
                    if (S[j] == 0.0) continue;
                    int64_t voff = s.bidx * V->stride[0] + hk * V->stride[1] + j * V->stride[2];
                    acc += S[j] * ak__load_f64(V->data, V->dtype, voff + c * V->stride[3]);
                }
                o[i * p->dv + c] += acc / denom;
            }
            double l = mx + log(denom), m = l > lse[i] ? l : lse[i];
            lse[i] = m + log(exp(lse[i] - m) + exp(l - m));
        }
    for (int64_t i = 0; i < Lq; i++) {
        int64_t ooff = s.bidx * O->stride[0] + h * O->stride[1] + i * O->stride[2];
        for (int64_t c = 0; c < p->dv; c++)
            ak__store(O->data, O->dtype, ooff + c * O->stride[3], cnt[i] ? o[i * p->dv + c] / cnt[i] : 0.0);
        if (p->desc.return_lse) {
            int64_t loff = s.bidx * t->lse.stride[0] + h * t->lse.stride[1] + i * t->lse.stride[2];
            ak__store(t->lse.data, t->lse.dtype, loff, lse[i]);
        }
    }
    ak__free(ctx, bits);
    ak__free(ctx, lse);
    ak__free(ctx, cnt);
    return AK_OK;
}

/* Every (b, h) with the sparse plan's element mask of its plan batch and plan head (and its key bias). */
ak_status ak__ref_run_masked(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t, const ak_sparse *sp) {
    int64_t Lq = p->desc.seqlen_q, Lk = p->desc.seqlen_k;
    int mean = sp->combine == AK_SPARSE_MEAN && sp->qrow_off;
    double *S = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(Lq * Lk + Lq * p->dv + 1));
    uint8_t *mask = (uint8_t *)ak__alloc(ctx, (size_t)(Lq * Lk + 1));
    if (!S || !mask) {
        ak__free(ctx, S);
        ak__free(ctx, mask);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "reference score matrix %lld x %lld", (long long)Lq, (long long)Lk);
    }
    ak_status st = AK_OK;
    for (int64_t b = 0; b < p->B && st == AK_OK; b++)
        for (int64_t h = 0; h < p->Hq && st == AK_OK; h++) {
            int32_t pb = sp->n_batch == 1 ? 0 : (int32_t)b;
            int32_t ph = ak__sparse_plan_head(sp, p->Hq, p->Hkv, (int32_t)h);
            if (mean) {
                st = ref_mean_head(ctx, p, t, sp, b, h, S, S + Lk);
                continue;
            }
            const float *bias = sp->key_bias ? sp->key_bias + ((int64_t)pb * sp->n_heads + ph) * sp->nk : NULL;
            st = ak_sparse_mask(sp, pb, ph, mask);
            if (st == AK_OK) ref_head(p, t, b, h, S, mask, bias);
        }
    ak__free(ctx, S);
    ak__free(ctx, mask);
    return st;
}
