/* naive32.c — see naive32.h. One screen per function; shapes in comments. */
#include "naive32.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* One sequence of the batch: where its rows and keys live in the tensors. */
typedef struct seqinfo {
    int64_t tb;     /* tensor batch index (b when dense, 0 when ragged) */
    int64_t q0, lq; /* first row (in the tensor's L dim) and number of query rows */
    int64_t k0, lk; /* first key and number of keys used (seqused_k when given) */
    int64_t b;      /* sequence index: selects [B][Hq] ALiBi slopes */
} seqinfo;

static seqinfo get_seq(const ak_attn_desc *d, const ak_attn_tensors *t, int b) {
    seqinfo s;
    s.b = b;
    if (d->cu_seqlens_q) { /* ragged: tensors are [1][H][total][D] */
        s.tb = 0;
        s.q0 = d->cu_seqlens_q[b];
        s.lq = d->cu_seqlens_q[b + 1] - s.q0;
        s.k0 = d->cu_seqlens_k[b];
        s.lk = d->cu_seqlens_k[b + 1] - s.k0;
    } else {
        s.tb = b;
        s.q0 = s.k0 = 0;
        s.lq = t->q.shape[2];
        s.lk = t->k.shape[2];
    }
    if (d->seqused_k)
        s.lk = d->seqused_k[b];
    return s;
}

int naive_visible(const ak_attn_desc *d, int64_t i, int64_t j, int64_t lq, int64_t lk) {
    int64_t pos = i + lk - lq; /* bottom-right alignment */
    if (j < 0 || j >= lk)
        return 0;
    if (d->causal && j > pos)
        return 0;
    if (d->window_left >= 0 && j < pos - d->window_left)
        return 0;
    if (d->window_right >= 0 && j > pos + d->window_right)
        return 0;
    return 1;
}

/* The coarser of the two input dtypes: S and P are rounded to it (PyTorch math on half tensors). */
static ak_dtype compute_dtype(const ak_attn_desc *d) {
    if (d->dtype_q == AK_BF16 || d->dtype_kv == AK_BF16)
        return AK_BF16;
    if (d->dtype_q == AK_F16 || d->dtype_kv == AK_F16)
        return AK_F16;
    return AK_F32;
}

static double slope_of(const ak_attn_desc *d, const ak_attn_tensors *t, const seqinfo *s, int h) {
    if (!d->has_alibi)
        return 0.0;
    if (t->alibi_slopes.ndim == 2) {
        int64_t idx[2] = {s->b, h};
        return ten_get(&t->alibi_slopes, idx);
    }
    int64_t idx[1] = {h};
    return ten_get(&t->alibi_slopes, idx);
}

static double sink_of(const ak_attn_desc *d, const ak_attn_tensors *t, int h) {
    int64_t idx[1] = {h};
    return d->has_sinks ? ten_get(&t->sinks, idx) : -INFINITY;
}

int naive_alloc(naive_out *out, const ak_attn_desc *d, const ak_attn_tensors *t) {
    memset(out, 0, sizeof *out);
    out->dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    out->n_rows = t->q.shape[0] * d->num_heads_q * t->q.shape[2];
    size_t nr = (size_t)out->n_rows + 1;
    out->o = (double *)calloc(nr * (size_t)out->dv, sizeof(double));
    out->lse = (double *)calloc(nr, sizeof(double));
    out->nvis = (int32_t *)calloc(nr, sizeof(int32_t));
    return (out->o && out->lse && out->nvis) ? 0 : -1;
}

void naive_free(naive_out *out) {
    free(out->o);
    free(out->lse);
    free(out->nvis);
    memset(out, 0, sizeof *out);
}

/* Every row starts as a padding row: O = 0, LSE = -inf, nvis = -1. */
static void mark_all_padding(naive_out *out) {
    memset(out->o, 0, (size_t)out->n_rows * (size_t)out->dv * sizeof(double));
    for (int64_t r = 0; r < out->n_rows; r++) {
        out->lse[r] = -INFINITY;
        out->nvis[r] = -1;
    }
}

/* Load K[tb][kvh][k0 .. k0+lk)[0..d) and V likewise into dense double arrays kk[lk][d], vv[lk][dv]. */
static void load_kv(const ak_attn_tensors *t, const seqinfo *s, int kvh, int64_t d, int64_t dv,
                    double *kk, double *vv) {
    for (int64_t j = 0; j < s->lk; j++) {
        for (int64_t c = 0; c < d; c++)
            kk[j * d + c] = ten_get4(&t->k, s->tb, kvh, s->k0 + j, c);
        for (int64_t c = 0; c < dv; c++)
            vv[j * dv + c] = ten_get4(&t->v, s->tb, kvh, s->k0 + j, c);
    }
}

/* Shared driver: for every sequence, KV head and query row call `row` with the loaded K/V. */
typedef void (*row_fn)(const ak_attn_desc *d, const ak_attn_tensors *t, const seqinfo *s, int h,
                       int64_t i, const double *kk, const double *vv, double *scratch,
                       double *o_row, double *lse, int32_t *nvis);

static int naive_drive(const ak_attn_desc *d, const ak_attn_tensors *t, naive_out *out, row_fn row) {
    int64_t hd = d->head_dim, dv = out->dv, Lt = t->q.shape[2], maxlk = 1;
    int Hq = d->num_heads_q, g = d->num_heads_q / d->num_heads_kv;
    for (int b = 0; b < d->batch; b++) {
        seqinfo s = get_seq(d, t, b);
        if (s.lk > maxlk)
            maxlk = s.lk;
    }
    double *kk = (double *)malloc((size_t)(maxlk * hd) * sizeof(double));
    double *vv = (double *)malloc((size_t)(maxlk * dv) * sizeof(double));
    double *scratch = (double *)malloc((size_t)(maxlk + hd + dv) * sizeof(double));
    if (!kk || !vv || !scratch) {
        free(kk), free(vv), free(scratch);
        return -1;
    }
    mark_all_padding(out);
    for (int b = 0; b < d->batch; b++) {
        seqinfo s = get_seq(d, t, b);
        for (int h = 0; h < Hq; h++) {
            if (h % g == 0)
                load_kv(t, &s, h / g, hd, dv, kk, vv);
            for (int64_t i = 0; i < s.lq; i++) {
                int64_t r = (s.tb * Hq + h) * Lt + s.q0 + i;
                row(d, t, &s, h, i, kk, vv, scratch, out->o + r * dv, out->lse + r, out->nvis + r);
            }
        }
    }
    free(kk), free(vv), free(scratch);
    return 0;
}

/* One row in float, rounding S and P to the compute dtype (see naive32.h). scratch: [lk+d+dv]. */
static void row32(const ak_attn_desc *d, const ak_attn_tensors *t, const seqinfo *s, int h, int64_t i,
                  const double *kk, const double *vv, double *scratch, double *o_row, double *lse,
                  int32_t *nvis) {
    int64_t hd = d->head_dim, dv = d->head_dim_v ? d->head_dim_v : hd, n = 0;
    ak_dtype cdt = compute_dtype(d);
    float scale = isnan(d->scale) ? (float)(1.0 / sqrt((double)hd)) : d->scale;
    float slope = (float)slope_of(d, t, s, h), sink = (float)sink_of(d, t, h), m = sink;
    double *sc = scratch, *q = scratch + s->lk, *acc = q + hd; /* sc[lk] scores, q[d], acc[dv] */
    for (int64_t c = 0; c < hd; c++)
        q[c] = ten_get4(&t->q, s->tb, h, s->q0 + i, c);
    for (int64_t j = 0; j < s->lk; j++) {
        if (!naive_visible(d, i, j, s->lq, s->lk)) {
            sc[j] = -INFINITY;
            continue;
        }
        float dot = 0.0f;
        for (int64_t c = 0; c < hd; c++)
            dot += (float)q[c] * (float)kk[j * hd + c];
        float x = (float)tu_round_to(cdt, scale * dot);
        if (d->softcap > 0)
            x = (float)tu_round_to(cdt, d->softcap * tanhf(x / d->softcap));
        if (d->has_alibi)
            x = (float)tu_round_to(cdt, x - slope * fabsf((float)(i + s->lk - s->lq - j)));
        sc[j] = x;
        m = x > m ? x : m;
        n++;
    }
    *nvis = (int32_t)n;
    if (n == 0 && sink == -INFINITY)
        return; /* fully-masked row (no sink, or a -inf one): O = 0, LSE = -inf (already set) */
    float sum = sink == -INFINITY ? 0.0f : expf(sink - m);
    for (int64_t j = 0; j < s->lk; j++)
        if (sc[j] != -INFINITY)
            sum += expf((float)sc[j] - m);
    for (int64_t j = 0; j < s->lk; j++) /* P, rounded to the compute dtype; -1 marks masked keys */
        sc[j] = sc[j] == -INFINITY ? -1.0 : tu_round_to(cdt, expf((float)sc[j] - m) / sum);
    for (int64_t c = 0; c < dv; c++)
        acc[c] = 0.0;
    for (int64_t j = 0; j < s->lk; j++) /* O = P V, float accumulation in key order */
        if (sc[j] >= 0)
            for (int64_t c = 0; c < dv; c++)
                acc[c] = (float)acc[c] + (float)sc[j] * (float)vv[j * dv + c];
    for (int64_t c = 0; c < dv; c++)
        o_row[c] = tu_round_to(d->dtype_o, acc[c]);
    *lse = (double)(m + logf(sum));
}

/* The same row in double, no intermediate rounding, output unrounded. */
static void row64(const ak_attn_desc *d, const ak_attn_tensors *t, const seqinfo *s, int h, int64_t i,
                  const double *kk, const double *vv, double *scratch, double *o_row, double *lse,
                  int32_t *nvis) {
    int64_t hd = d->head_dim, dv = d->head_dim_v ? d->head_dim_v : hd, n = 0;
    double scale = isnan(d->scale) ? 1.0 / sqrt((double)hd) : (double)d->scale;
    double cap = d->softcap, slope = slope_of(d, t, s, h), sink = sink_of(d, t, h), m = sink;
    double *sc = scratch, *q = scratch + s->lk;
    for (int64_t c = 0; c < hd; c++)
        q[c] = ten_get4(&t->q, s->tb, h, s->q0 + i, c);
    for (int64_t j = 0; j < s->lk; j++) {
        if (!naive_visible(d, i, j, s->lq, s->lk)) {
            sc[j] = -INFINITY;
            continue;
        }
        double dot = 0.0;
        for (int64_t c = 0; c < hd; c++)
            dot += q[c] * kk[j * hd + c];
        double x = scale * dot;
        if (cap > 0)
            x = cap * tanh(x / cap);
        if (d->has_alibi)
            x -= slope * fabs((double)(i + s->lk - s->lq - j));
        sc[j] = x;
        m = x > m ? x : m;
        n++;
    }
    *nvis = (int32_t)n;
    if (n == 0 && sink == -INFINITY)
        return;
    double sum = sink == -INFINITY ? 0.0 : exp(sink - m);
    for (int64_t j = 0; j < s->lk; j++)
        if (sc[j] != -INFINITY)
            sum += exp(sc[j] - m);
    for (int64_t c = 0; c < dv; c++)
        o_row[c] = 0.0;
    for (int64_t j = 0; j < s->lk; j++)
        if (sc[j] != -INFINITY) {
            double p = exp(sc[j] - m) / sum;
            for (int64_t c = 0; c < dv; c++)
                o_row[c] += p * vv[j * dv + c];
        }
    *lse = m + log(sum);
}

int naive_attention32(const ak_attn_desc *d, const ak_attn_tensors *t, naive_out *out) {
    return naive_drive(d, t, out, row32);
}

int naive_attention64(const ak_attn_desc *d, const ak_attn_tensors *t, naive_out *out) {
    return naive_drive(d, t, out, row64);
}
