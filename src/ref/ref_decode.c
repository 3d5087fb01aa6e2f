/*
 * The double-precision reference for decode attention over KV caches: the oracle of the tests and of
 * `attnkit check decode_...`. One (sequence, query head) at a time, the full score matrix of its
 * query rows against every key (the shared prefix, then the sequence's own) materialised, every mask
 * applied explicitly, accumulated in double. Keys are read through the page tables one element at a
 * time -- slow and plain on purpose.
 */
#include "exec/decode.h"

#include <math.h>

/* Element c of the K (is_v = 0) or V row of token `tok` (absolute: prefix first), KV head hk, in double. */
static double ref_kv(const ak_dproblem *p, const ak_kvview *kv, const ak_kvview *pre, int is_v, int64_t b, int64_t hk,
                     int64_t tok, int64_t c) {
    const ak_kvmeta *m = &p->kv;
    const ak_kvview *w = kv;
    int64_t seq = b;
    if (tok < p->P) {
        m = &p->pre;
        w = pre;
        seq = 0;
    } else {
        tok -= p->P;
    }
    int64_t outer, pos;
    ak__kv_locate(m, (int32_t)seq, tok, &outer, &pos);
    int64_t off = is_v ? outer * w->v_outer + pos * w->v_pos + hk * w->v_head
                       : outer * w->k_outer + pos * w->k_pos + hk * w->k_head;
    double x = ak__load_f64(is_v ? w->v : w->k, m->dtype, off + c);
    if (m->dtype == AK_I8) {
        const float *s = is_v ? w->vs : w->ks;
        int64_t so = is_v ? outer * w->vs_outer + pos * w->vs_pos + hk * w->vs_head
                          : outer * w->ks_outer + pos * w->ks_pos + hk * w->ks_head;
        x *= (double)s[so];
    }
    return x;
}

/* Is absolute key j visible from query row i of sequence b? */
static int ref_dvisible(const ak_dproblem *p, int64_t b, int64_t i, int64_t j) {
    int64_t lk = p->P + p->kv.len[b];
    if (j < 0 || j >= lk) return 0;
    int64_t pos = lk - ak__dnq(p, b) + i;
    if (p->desc.causal && j > pos) return 0;
    if (p->desc.window_left >= 0 && j < pos - p->desc.window_left) return 0;
    if (p->desc.window_right >= 0 && j > pos + p->desc.window_right) return 0;
    return 1;
}

/*
 * One (sequence b, query head h):  S[nq][Lk] = scale * Q K^T, softcapped, ALiBi-biased, masked;
 *   O[i] = softmax(S[i]) V (denominator includes e^sink);  LSE[i] = log(e^sink + sum_j e^S[i][j]).
 */
static void ref_dhead(const ak_dproblem *p, const ak_decode_tensors *t, const ak_kvview *kv, const ak_kvview *pre,
                      int64_t b, int64_t h, double *S) {
    const int64_t nq = ak__dnq(p, b), lk = p->P + p->kv.len[b], hk = h / p->g;
    const int64_t bi = ak__dbidx(p, b), q0 = ak__dqoff(p, b);
    const ak_tensor *Q = &t->q, *O = &t->o;
    double cap = p->desc.softcap, slope = 0.0;
    double sink = p->desc.has_sinks ? ((const float *)t->sinks.data)[h * t->sinks.stride[0]] : -INFINITY;
    if (p->desc.has_alibi) {
        const ak_tensor *a = &t->alibi_slopes;
        slope = ((const float *)a->data)[a->ndim == 2 ? b * a->stride[0] + h * a->stride[1] : h * a->stride[0]];
    }
    for (int64_t i = 0; i < nq; i++) {
        int64_t qoff = bi * Q->stride[0] + h * Q->stride[1] + (q0 + i) * Q->stride[2];
        for (int64_t j = 0; j < lk; j++) {
            double x = 0.0;
            for (int64_t c = 0; c < p->d; c++)
                x += ak__load_f64(Q->data, Q->dtype, qoff + c * Q->stride[3]) * ref_kv(p, kv, pre, 0, b, hk, j, c);
            x *= (double)p->scale;
            if (cap > 0) x = cap * tanh(x / cap);
            x -= slope * fabs((double)(lk - nq + i - j));
            S[i * lk + j] = ref_dvisible(p, b, i, j) ? x : -INFINITY;
        }
    }
    for (int64_t i = 0; i < nq; i++) {
        double *row = S + i * lk, mx = sink, denom = 0.0;
        for (int64_t j = 0; j < lk; j++) mx = row[j] > mx ? row[j] : mx;
        if (mx != -INFINITY) {
            denom = exp(sink - mx);
            for (int64_t j = 0; j < lk; j++) {
                row[j] = exp(row[j] - mx);
                denom += row[j];
            }
        }
        int64_t ooff = bi * O->stride[0] + h * O->stride[1] + (q0 + i) * O->stride[2];
        for (int64_t c = 0; c < p->dv; c++) {
            double acc = 0.0;
            if (mx != -INFINITY)
                for (int64_t j = 0; j < lk; j++)
                    if (row[j] != 0.0) acc += row[j] * ref_kv(p, kv, pre, 1, b, hk, j, c);
            ak__store(O->data, O->dtype, ooff + c * O->stride[3], denom > 0 ? acc / denom : 0.0);
        }
        if (p->desc.return_lse) {
            int64_t loff = bi * t->lse.stride[0] + h * t->lse.stride[1] + (q0 + i) * t->lse.stride[2];
            ak__store(t->lse.data, t->lse.dtype, loff, mx == -INFINITY ? -INFINITY : mx + log(denom));
        }
    }
}

ak_status ak__ref_decode(const ak_ctx *ctx, const ak_dproblem *p, const ak_decode_tensors *t, const ak_kvview *kv,
                         const ak_kvview *pre) {
    int64_t maxk = p->P + p->kv.max_len;
    double *S = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(p->nq_max * maxk + 1));
    if (!S) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "reference score rows %d x %lld", p->nq_max, (long long)maxk);
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->Hq; h++) ref_dhead(p, t, kv, pre, b, h, S);
    ak__free(ctx, S);
    return AK_OK;
}
