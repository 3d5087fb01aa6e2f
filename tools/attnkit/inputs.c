/*
 * inputs.c — the buffers of one problem: seeded random Q, K, V (stored in their dtypes), output
 * buffers, ragged metadata, tensor views; plus the exact count of visible (query, key) pairs and a
 * naive fp32 attention used by `check` as the error yardstick.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Store x into element i of a buffer of dtype t. */
static void store_elem(void *buf, ak_dtype t, size_t i, float x) {
    if (t == AK_F32) ((float *)buf)[i] = x;
    else if (t == AK_BF16) ((uint16_t *)buf)[i] = ak_f32_to_bf16(x);
    else ((uint16_t *)buf)[i] = ak_f32_to_f16(x);
}

/* n random values in [-sqrt(3), sqrt(3)) (unit variance) stored as dtype t. */
void *random_buffer(ak_dtype t, size_t n, uint64_t *rng) {
    void *buf = xalloc(n * ak_dtype_size(t));
    if (!buf) return NULL;
    for (size_t i = 0; i < n; i++) store_elem(buf, t, i, 1.7320508f * rng_uniform(rng));
    return buf;
}

/* A [Bt][H][L][D] view of buf in the problem's memory layout. */
static ak_tensor view(const inputs *in, void *buf, ak_dtype t, int H, int64_t L, int D) {
    if (in->p.bshd) return ak_tensor_bshd(buf, t, in->Bt, L, H, D);
    return ak_tensor_4d(buf, t, in->Bt, H, L, D);
}

/*
 * Ragged lengths: per sequence uniform in [0, Lq] and [0, Lk] from the seed (an empty sequence is
 * possible); when Lq == Lk one length serves both (self-attention prefill).
 */
static int make_varlen(inputs *in, uint64_t seed) {
    const problem *p = &in->p;
    in->cu_q = malloc(sizeof(int32_t) * (size_t)(p->B + 1));
    in->cu_k = malloc(sizeof(int32_t) * (size_t)(p->B + 1));
    if (!in->cu_q || !in->cu_k) return -1;
    uint64_t rng = seed ^ 0x5EC1E5ull;
    in->cu_q[0] = in->cu_k[0] = 0;
    for (int b = 0; b < p->B; b++) {
        int64_t lq = (int64_t)(rng_next(&rng) % (uint64_t)(p->Lq + 1));
        int64_t lk = p->Lq == p->Lk ? lq : (int64_t)(rng_next(&rng) % (uint64_t)(p->Lk + 1));
        if (in->cu_q[b] + lq > 2147483647LL || in->cu_k[b] + lk > 2147483647LL) return -1;
        in->cu_q[b + 1] = in->cu_q[b] + (int32_t)lq;
        in->cu_k[b + 1] = in->cu_k[b] + (int32_t)lk;
    }
    in->Tq = in->cu_q[p->B];
    in->Tk = in->cu_k[p->B];
    return 0;
}

/* The descriptor of problem p (cu_seqlens left NULL). */
void problem_desc(const problem *p, ak_attn_desc *d) {
    ak_attn_desc_init(d);
    d->batch = p->B;
    d->num_heads_q = p->Hq;
    d->num_heads_kv = p->Hkv;
    d->seqlen_q = p->Lq;
    d->seqlen_k = p->Lk;
    d->head_dim = p->d;
    d->head_dim_v = p->dv;
    d->dtype_q = p->dt_q;
    d->dtype_kv = p->dt_kv;
    d->dtype_o = p->dt_o;
    d->scale = p->scale;
    d->causal = p->causal;
    d->window_left = p->win_left;
    d->window_right = p->win_right;
    d->softcap = p->softcap;
    d->has_alibi = p->alibi;
    d->has_sinks = p->sinks;
    d->return_lse = p->lse;
}

static void fill_desc(inputs *in) {
    problem_desc(&in->p, &in->desc);
    in->desc.cu_seqlens_q = in->p.varlen ? in->cu_q : NULL;
    in->desc.cu_seqlens_k = in->p.varlen ? in->cu_k : NULL;
}

/* Allocate and fill everything for problem p; 0 = ok, else -1 with a message (in is freed). */
int inputs_create(const problem *p, uint64_t seed, inputs *in, char *err, size_t errlen) {
    memset(in, 0, sizeof(*in));
    if (p->decode) {   /* decode problems: dinputs_create (decode.c) */
        snprintf(err, errlen, "internal: a decode problem reached the dense inputs");
        return -1;
    }
    in->p = *p;
    in->Bt = p->varlen ? 1 : p->B;
    in->Tq = p->Lq;
    in->Tk = p->Lk;
    if (p->varlen && make_varlen(in, seed) != 0) goto oom;
    fill_desc(in);
    size_t nq = (size_t)in->Bt * (size_t)p->Hq * (size_t)in->Tq * (size_t)p->d;
    size_t nk = (size_t)in->Bt * (size_t)p->Hkv * (size_t)in->Tk * (size_t)p->d;
    size_t nv = (size_t)in->Bt * (size_t)p->Hkv * (size_t)in->Tk * (size_t)p->dv;
    size_t no = (size_t)in->Bt * (size_t)p->Hq * (size_t)in->Tq * (size_t)p->dv;
    size_t nl = (size_t)in->Bt * (size_t)p->Hq * (size_t)in->Tq;
    uint64_t rng = seed;
    in->q = random_buffer(p->dt_q, nq, &rng);
    in->k = random_buffer(p->dt_kv, nk, &rng);
    in->v = random_buffer(p->dt_kv, nv, &rng);
    in->o_bytes = no * ak_dtype_size(p->dt_o);
    in->lse_bytes = nl * sizeof(float);
    in->o = xalloc(in->o_bytes);
    in->lse = xalloc(in->lse_bytes);
    in->slopes = xalloc(sizeof(float) * (size_t)p->Hq);
    in->sinks = xalloc(sizeof(float) * (size_t)p->Hq);
    if (!in->q || !in->k || !in->v || !in->o || !in->lse || !in->slopes || !in->sinks) goto oom;
    for (int h = 0; h < p->Hq; h++) {   /* the standard ALiBi slopes 2^(-8(h+1)/Hq) */
        ((float *)in->slopes)[h] = powf(2.0f, -8.0f * (float)(h + 1) / (float)p->Hq);
        ((float *)in->sinks)[h] = 1.7320508f * rng_uniform(&rng);
    }
    memset(in->o, 0xff, in->o_bytes);    /* NaN-poisoned: an unwritten element shows */
    memset(in->lse, 0xff, in->lse_bytes);
    ak_attn_tensors_init(&in->t);
    in->t.q = view(in, in->q, p->dt_q, p->Hq, in->Tq, p->d);
    in->t.k = view(in, in->k, p->dt_kv, p->Hkv, in->Tk, p->d);
    in->t.v = view(in, in->v, p->dt_kv, p->Hkv, in->Tk, p->dv);
    in->t.o = view(in, in->o, p->dt_o, p->Hq, in->Tq, p->dv);
    if (p->lse) in->t.lse = ak_tensor_3d(in->lse, AK_F32, in->Bt, p->Hq, in->Tq);
    if (p->alibi) in->t.alibi_slopes = ak_tensor_1d(in->slopes, AK_F32, p->Hq);
    if (p->sinks) in->t.sinks = ak_tensor_1d(in->sinks, AK_F32, p->Hq);
    return 0;
oom:
    inputs_free(in);
    snprintf(err, errlen, "out of memory allocating the inputs");
    return -1;
}

void inputs_free(inputs *in) {
    ak_sparse_destroy(in->sp);
    free(in->cu_q);
    free(in->cu_k);
    free(in->q);
    free(in->k);
    free(in->v);
    free(in->o);
    free(in->lse);
    free(in->slopes);
    free(in->sinks);
    memset(in, 0, sizeof(*in));
}

seq_geom inputs_seq(const inputs *in, int b) {
    seq_geom g;
    if (in->p.varlen) {
        g.bidx = 0;
        g.q_off = in->cu_q[b];
        g.k_off = in->cu_k[b];
        g.lq = in->cu_q[b + 1] - in->cu_q[b];
        g.lk = in->cu_k[b + 1] - in->cu_k[b];
    } else {
        g.bidx = b;
        g.q_off = g.k_off = 0;
        g.lq = in->p.Lq;
        g.lk = in->p.Lk;
    }
    return g;
}

/* Visible keys [lo, hi] of row i (bottom-right aligned masks, conventions.md §1); may be empty. */
void visible_range(const problem *p, int64_t lq, int64_t lk, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t pos = i + lk - lq;
    *lo = p->win_left >= 0 ? pos - p->win_left : 0;
    *hi = lk - 1;
    if (p->causal) *hi = pos;
    if (p->win_right >= 0 && pos + p->win_right < *hi) *hi = pos + p->win_right;
    if (*lo < 0) *lo = 0;
    if (*hi > lk - 1) *hi = lk - 1;
}

/* Exact number of visible (query row, key) pairs of one head, summed over the batch. */
double visible_pairs(const inputs *in) {
    double total = 0.0;
    int n_seq = in->p.varlen ? in->p.B : 1;   /* dense: every sequence has the same shape */
    for (int b = 0; b < n_seq; b++) {
        seq_geom g = inputs_seq(in, b);
        for (int64_t i = 0; i < g.lq; i++) {
            int64_t lo, hi;
            visible_range(&in->p, g.lq, g.lk, i, &lo, &hi);
            if (hi >= lo) total += (double)(hi - lo + 1);
        }
    }
    return in->p.varlen ? total : total * in->p.B;
}

/* Useful FLOPs: 2 (d + dv) per visible pair per query head (QK^T and PV). */
double useful_flops(const inputs *in) {
    return 2.0 * (double)(in->p.d + in->p.dv) * visible_pairs(in) * (double)in->p.Hq;
}

/* Element (i0, i1, i2, i3) of any view, as double. */
double tensor_get(const ak_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    int64_t off = i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
    switch (t->dtype) {
    case AK_F32: return ((const float *)t->data)[off];
    case AK_BF16: return ak_bf16_to_f32(((const uint16_t *)t->data)[off]);
    case AK_F16: return ak_f16_to_f32(((const uint16_t *)t->data)[off]);
    case AK_F64: return ((const double *)t->data)[off];
    case AK_I8: return ((const int8_t *)t->data)[off];
    }
    return NAN;
}

/* A contiguous float copy of a 4-d view, logical order [n0][n1][n2][n3]; NULL if out of memory. */
static float *to_f32(const ak_tensor *t) {
    size_t n = (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]);
    float *f = xalloc(n * sizeof(float));
    if (!f) return NULL;
    size_t i = 0;
    for (int64_t a = 0; a < t->shape[0]; a++)
        for (int64_t b = 0; b < t->shape[1]; b++)
            for (int64_t c = 0; c < t->shape[2]; c++)
                for (int64_t e = 0; e < t->shape[3]; e++) f[i++] = (float)tensor_get(t, a, b, c, e);
    return f;
}

/* Round to the coarser input dtype when the inputs are half precision (bf16 before f16), as PyTorch's
 * math attention on half tensors rounds S and P; f32 inputs: unchanged. */
static float round_like_inputs(const problem *p, float x) {
    if (p->dt_q == AK_BF16 || p->dt_kv == AK_BF16) return ak_bf16_to_f32(ak_f32_to_bf16(x));
    if (p->dt_q == AK_F16 || p->dt_kv == AK_F16) return ak_f16_to_f32(ak_f32_to_f16(x));
    return x;
}

/*
 * One row i of query head h in sequence g, all in float, in the order of a textbook ("math")
 * implementation: logits over the visible keys, max, exp, sum, then P.V / sum. With bf16/f16 inputs
 * S and the normalised P are rounded to that dtype, as PyTorch's math path does on half tensors.
 * s has room for g.lk floats, acc for dv floats. Writes o[dv] and *lse.
 */
static void naive_row(const inputs *in, const float *qf, const float *kf, const float *vf, seq_geom g, int h,
                      int64_t i, const uint8_t *mrow, float *s, float *acc, float *o, float *lse) {
    const problem *p = &in->p;
    int hk = h / (p->Hq / p->Hkv);
    float scale = isnan(p->scale) ? (float)(1.0 / sqrt((double)p->d)) : p->scale;
    float slope = p->alibi ? ((const float *)in->slopes)[h] : 0.0f;
    float sink = p->sinks ? ((const float *)in->sinks)[h] : -INFINITY;
    const float *q = qf + (((size_t)g.bidx * p->Hq + h) * in->Tq + g.q_off + i) * p->d;
    int64_t lo, hi;
    visible_range(p, g.lq, g.lk, i, &lo, &hi);
    float m = sink;
    for (int64_t j = lo; j <= hi; j++) {
        if (mrow && !mrow[j]) { s[j] = -INFINITY; continue; }   /* outside the sparse pattern */
        const float *k = kf + (((size_t)g.bidx * p->Hkv + hk) * in->Tk + g.k_off + j) * p->d;
        float dot = 0.0f;
        for (int c = 0; c < p->d; c++) dot += q[c] * k[c];
        float x = dot * scale;
        if (p->softcap > 0) x = p->softcap * tanhf(x / p->softcap);
        x -= slope * fabsf((float)(i + g.lk - g.lq - j));
        x = round_like_inputs(p, x);
        s[j] = x;
        if (x > m) m = x;
    }
    for (int c = 0; c < p->dv; c++) acc[c] = 0.0f;
    if (m == -INFINITY) {   /* no visible key and no sink: O = 0, LSE = -inf */
        for (int c = 0; c < p->dv; c++) o[c] = 0.0f;
        *lse = -INFINITY;
        return;
    }
    float l = p->sinks ? expf(sink - m) : 0.0f;
    for (int64_t j = lo; j <= hi; j++) l += expf(s[j] - m);
    for (int64_t j = lo; j <= hi; j++) {
        if (s[j] == -INFINITY) continue;
        const float *v = vf + (((size_t)g.bidx * p->Hkv + hk) * in->Tk + g.k_off + j) * p->dv;
        float pj = round_like_inputs(p, expf(s[j] - m) / l);
        for (int c = 0; c < p->dv; c++) acc[c] += pj * v[c];
    }
    for (int c = 0; c < p->dv; c++) o[c] = acc[c];
    *lse = m + logf(l);
}

/*
 * Naive fp32 attention: o is contiguous [Bt][Hq][Tq][dv], lse [Bt][Hq][Tq] (rows of no sequence
 * stay as given). Single-threaded; O(Lk) scratch per row. With a sparse pattern (in->sp) a key is
 * visible iff the problem's masks and the pattern's element mask (ak_sparse_mask of the plan batch and
 * head serving the row) both admit it; the mask costs Lq x Lk bytes. 0 = ok, -1 = out of memory.
 */
int naive_f32(const inputs *in, float *o, float *lse) {
    const problem *p = &in->p;
    int ok = 0;
    float *qf = to_f32(&in->t.q), *kf = to_f32(&in->t.k), *vf = to_f32(&in->t.v);
    float *s = xalloc(sizeof(float) * (size_t)(in->Tk + 1));
    float *acc = xalloc(sizeof(float) * (size_t)p->dv);
    ak_sparse_desc sd;
    uint8_t *mask = NULL;
    int mb = -1, mh = -1;
    if (in->sp) {
        ak_sparse_desc_init(&sd);
        if (ak_sparse_get_desc(in->sp, &sd) == AK_OK) mask = xalloc((size_t)sd.nq * (size_t)sd.nk + 1);
    }
    if (qf && kf && vf && s && acc && (!in->sp || mask)) {
        ok = 1;
        for (int b = 0; b < p->B && ok; b++) {
            seq_geom g = inputs_seq(in, b);
            for (int h = 0; h < p->Hq && ok; h++) {
                if (in->sp) {
                    int pb = sd.n_batch == 1 ? 0 : b, ph = sp_plan_head(sd.n_heads, p->Hq, p->Hkv, h);
                    if ((pb != mb || ph != mh) && ak_sparse_mask(in->sp, pb, ph, mask) != AK_OK) ok = 0;
                    mb = pb;
                    mh = ph;
                }
                for (int64_t i = 0; i < g.lq && ok; i++) {
                    size_t row = ((size_t)g.bidx * p->Hq + h) * in->Tq + g.q_off + i;
                    naive_row(in, qf, kf, vf, g, h, i, mask ? mask + (size_t)i * (size_t)g.lk : NULL, s, acc,
                              o + row * p->dv, lse + row);
                }
            }
        }
    }
    free(mask);
    free(qf);
    free(kf);
    free(vf);
    free(s);
    free(acc);
    return ok ? 0 : -1;
}
