/* Shared pieces of the content-aware sparse planners (see dyn.h). */
#include "dynamic/dyn.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

double ak__dyn_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ak_status check_input(const ak_ctx *ctx, const char *method, const char *name, const ak_tensor *x, ak_dtype want,
                             int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    ak_status st = ak__check_view(ctx, name, x, 4);
    if (st != AK_OK) return st;
    if (x->dtype != AK_F32 && x->dtype != AK_BF16 && x->dtype != AK_F16)
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s: %s.dtype = %s, must be f32, bf16 or f16", method, name,
                        ak_dtype_name(x->dtype));
    if (x->dtype != want)
        return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "%s: %s.dtype = %s, the descriptor says %s", method, name,
                        ak_dtype_name(x->dtype), ak_dtype_name(want));
    if (x->shape[0] != n0 || x->shape[1] != n1 || x->shape[2] != n2 || x->shape[3] != n3)
        return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s: %s.shape = [%lld][%lld][%lld][%lld], expected [%lld][%lld][%lld][%lld]",
                        method, name, (long long)x->shape[0], (long long)x->shape[1], (long long)x->shape[2],
                        (long long)x->shape[3], (long long)n0, (long long)n1, (long long)n2, (long long)n3);
    return AK_OK;
}

ak_status ak__dyn_begin(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, int need_v, int allow_masks,
                        const char *method, ak_dyn_in *in) {
    memset(in, 0, sizeof *in);
    in->t0 = ak__dyn_now();
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!desc) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: desc is NULL", method);
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "%s: tensors is NULL", method);
    if (t->size != sizeof(ak_attn_tensors))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: tensors.size = %zu, expected %zu (call ak_attn_tensors_init)",
                        method, t->size, sizeof(ak_attn_tensors));
    ak_status st = ak__problem_init(ctx, desc, 0, &in->p);
    if (st != AK_OK) return st;
    in->ctx = ctx;
    const ak_problem *p = &in->p;
    if (p->ragged) {
        ak__problem_free(ctx, &in->p);
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: ragged descriptors are not supported (one plan per sequence length)",
                        method);
    }
    if (!allow_masks && (desc->window_left >= 0 || desc->window_right >= 0 || desc->softcap > 0.0f || desc->has_alibi ||
                         desc->has_sinks || desc->seqused_k)) {
        ak__problem_free(ctx, &in->p);
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "%s: the estimation does not model windows, softcap, ALiBi, sinks or seqused_k; clear them in desc", method);
    }
    in->t = t;
    in->B = p->B;
    in->Hq = p->Hq;
    in->Hkv = p->Hkv;
    in->G = p->g;
    in->nq = desc->seqlen_q;
    in->nk = desc->seqlen_k;
    in->d = p->d;
    in->dv = p->dv;
    in->scale = p->scale;
    in->kern = ak__kernel_for(ctx->force_ref ? AK_ISA_SCALAR : ctx->isa);
    if ((st = check_input(ctx, method, "q", &t->q, desc->dtype_q, p->B, p->Hq, in->nq, p->d)) ||
        (st = check_input(ctx, method, "k", &t->k, desc->dtype_kv, p->B, p->Hkv, in->nk, p->d)) ||
        (need_v && (st = check_input(ctx, method, "v", &t->v, desc->dtype_kv, p->B, p->Hkv, in->nk, p->dv)))) {
        ak__problem_free(ctx, &in->p);
        return st;
    }
    return AK_OK;
}

void ak__dyn_end(ak_dyn_in *in) {
    if (in->ctx) ak__problem_free(in->ctx, &in->p);
    in->ctx = NULL;
}

void ak__dyn_info_finish(const ak_dyn_in *in, const ak_sparse *sp, ak_dyn_info *info) {
    if (!info) return;
    info->size = sizeof *info;
    info->est_seconds = ak__dyn_now() - in->t0;
    ak_sparse_stats st;
    if (sp && ak_sparse_get_stats(sp, &st) == AK_OK) info->density = st.density;
}

void ak__dyn_explain(ak_dyn_info *info, const char *fmt, ...) {
    if (!info) return;
    size_t n = strlen(info->explain), cap = sizeof info->explain;
    if (n + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->explain + n, cap - n, fmt, ap);
    va_end(ap);
}

void ak__dyn_rows(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int64_t h, int64_t i0, int64_t n, int cols,
                  float *out, int64_t ld) {
    const size_t es = ak_dtype_size(X->dtype);
    for (int64_t r = 0; r < n; r++) {
        int64_t off = b * X->stride[0] + h * X->stride[1] + (i0 + r) * X->stride[2];
        float *o = out + r * ld;
        if (X->stride[3] == 1) {
            in->kern->to_f32(X->dtype, (const char *)X->data + (size_t)off * es, o, cols);
        } else {
            for (int c = 0; c < cols; c++) o[c] = ak__load(X->data, X->dtype, off + c * X->stride[3]);
        }
    }
}

ak_status ak__dyn_scores(const ak_dyn_in *in, int m, int64_t n, int d, const float *A, int64_t lda, const float *Bm,
                         int64_t ldb, float scale, float *S, int64_t lds) {
    const int TN = 64, mpad = (m + 15) / 16 * 16;
    float *qt = (float *)ak__alloc(in->ctx, sizeof(float) * ((size_t)d * mpad + (size_t)TN * mpad));
    if (!qt) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "score products: %d x %d floats", d, mpad);
    float *st = qt + (size_t)d * mpad;
    for (int c = 0; c < d; c++)
        for (int r = 0; r < mpad; r++) qt[(size_t)c * mpad + r] = r < m ? A[(size_t)r * lda + c] : 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += TN) {
        int nk = (int)(n - j0 < TN ? n - j0 : TN);
        in->kern->qk(nk, d, mpad, Bm + (size_t)j0 * ldb, ldb, qt, mpad, scale, st, mpad);
        for (int j = 0; j < nk; j++)
            for (int r = 0; r < m; r++) S[(size_t)r * lds + j0 + j] = st[(size_t)j * mpad + r];
    }
    ak__free(in->ctx, qt);
    return AK_OK;
}

/* Softmax of each row of P[L][nk] over keys j <= lim[r] (all when lim < 0 ... handled by caller). */
static void softmax_rows(float *P, int32_t L, int32_t nk, const int64_t *lim) {
    for (int32_t r = 0; r < L; r++) {
        float *x = P + (size_t)r * nk;
        int64_t hi = lim[r] < nk - 1 ? lim[r] : nk - 1;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= hi; j++)
            if (x[j] > mx) mx = x[j];
        double sum = 0.0;
        for (int64_t j = 0; j <= hi; j++) {
            float e = mx == -INFINITY ? 0.0f : expf(x[j] - mx);
            x[j] = e;
            sum += e;
        }
        float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
        for (int64_t j = 0; j <= hi; j++) x[j] *= inv;
        for (int64_t j = hi + 1 < 0 ? 0 : hi + 1; j < nk; j++) x[j] = 0.0f;
    }
}

ak_status ak__dyn_rows_probs(const ak_dyn_in *in, int64_t b, int32_t h, int32_t kvh, const int32_t *rows, int32_t L,
                             int causal, float *P) {
    const int d = in->d;
    const int64_t nk = in->nk, CH = 1024;
    float *q = (float *)ak__alloc(in->ctx, sizeof(float) * ((size_t)L * d + (size_t)CH * d));
    int64_t *lim = (int64_t *)ak__alloc(in->ctx, sizeof(int64_t) * (size_t)(L > 0 ? L : 1));
    if (!q || !lim) {
        ak__free(in->ctx, q);
        ak__free(in->ctx, lim);
        return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "estimation rows");
    }
    float *kc = q + (size_t)L * d;
    for (int32_t r = 0; r < L; r++) {
        ak__dyn_rows(in, &in->t->q, b, h, rows[r], 1, d, q + (size_t)r * d, d);
        lim[r] = causal ? rows[r] + (int64_t)in->nk - in->nq : nk - 1;
    }
    ak_status st = AK_OK;
    for (int64_t j0 = 0; j0 < nk && st == AK_OK; j0 += CH) {
        int64_t n = nk - j0 < CH ? nk - j0 : CH;
        ak__dyn_rows(in, &in->t->k, b, kvh, j0, n, d, kc, d);
        st = ak__dyn_scores(in, L, n, d, q, d, kc, d, in->scale, P + j0, nk);
    }
    if (st == AK_OK) softmax_rows(P, L, (int32_t)nk, lim);
    ak__free(in->ctx, q);
    ak__free(in->ctx, lim);
    return st;
}

ak_status ak__dyn_last_probs(const ak_dyn_in *in, int64_t b, int32_t h, int32_t kvh, int32_t L, int causal, float *P) {
    if (L > in->nq) L = in->nq;
    int32_t *rows = (int32_t *)ak__alloc(in->ctx, sizeof(int32_t) * (size_t)(L > 0 ? L : 1));
    if (!rows) return ak__fail(in->ctx, AK_ERR_OUT_OF_MEMORY, "estimation rows");
    for (int32_t r = 0; r < L; r++) rows[r] = in->nq - L + r;
    ak_status st = ak__dyn_rows_probs(in, b, h, kvh, rows, L, causal, P);
    ak__free(in->ctx, rows);
    return st;
}

void ak__dyn_vs_sums(const float *P, int32_t L, int32_t nk, int64_t pos0, double *vs, double *ss) {
    if (vs)
        for (int32_t j = 0; j < nk; j++) vs[j] = 0.0;
    if (ss)
        for (int32_t t = 0; t < nk; t++) ss[t] = 0.0;
    for (int32_t r = 0; r < L; r++) {
        const float *x = P + (size_t)r * nk;
        int64_t pos = pos0 + r;
        for (int32_t j = 0; j < nk; j++) {
            if (vs) vs[j] += x[j];
            int64_t delta = pos - j;
            if (ss && delta >= 0 && delta < nk) ss[delta] += x[j];
        }
    }
}

/* Selection of the k best (value desc, index asc) by quickselect over an index array. */
typedef struct topk_key {
    double v;
    int32_t i;
} topk_key;

static int better(const topk_key *a, const topk_key *b) { /* a before b */
    if (a->v != b->v) return a->v > b->v;
    return a->i < b->i;
}

static void select_k(topk_key *a, int64_t n, int64_t k) { /* a[0..k) = the k best, any order */
    int64_t lo = 0, hi = n - 1;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    while (lo < hi) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t pi = lo + (int64_t)((seed >> 33) % (uint64_t)(hi - lo + 1));
        topk_key piv = a[pi];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (better(&a[i], &piv)) i++;
            while (better(&piv, &a[j])) j--;
            if (i <= j) {
                topk_key tmp = a[i];
                a[i] = a[j];
                a[j] = tmp;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static int cmp_idx(const void *x, const void *y) {
    const topk_key *a = (const topk_key *)x, *b = (const topk_key *)y;
    return (a->i > b->i) - (a->i < b->i);
}
static int cmp_val(const void *x, const void *y) {
    const topk_key *a = (const topk_key *)x, *b = (const topk_key *)y;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static int64_t topk_keys(const ak_ctx *ctx, topk_key *a, int64_t n, int64_t k, int by_value, int32_t *idx) {
    if (k > n) k = n;
    if (k < 0) k = 0;
    if (k > 0 && k < n) select_k(a, n, k);
    qsort(a, (size_t)k, sizeof *a, by_value ? cmp_val : cmp_idx);
    for (int64_t t = 0; t < k; t++) idx[t] = a[t].i;
    ak__free(ctx, a);
    return k;
}

int64_t ak__dyn_topk(const ak_ctx *ctx, const double *x, int64_t n, int64_t k, int by_value, int32_t *idx) {
    topk_key *a = (topk_key *)ak__alloc(ctx, sizeof(topk_key) * (size_t)(n > 0 ? n : 1));
    if (!a) return -1;
    for (int64_t t = 0; t < n; t++) {
        a[t].v = x[t] != x[t] ? -INFINITY : x[t];
        a[t].i = (int32_t)t;
    }
    return topk_keys(ctx, a, n, k, by_value, idx);
}

int64_t ak__dyn_topk_f(const ak_ctx *ctx, const float *x, int64_t n, int64_t k, int by_value, int32_t *idx) {
    topk_key *a = (topk_key *)ak__alloc(ctx, sizeof(topk_key) * (size_t)(n > 0 ? n : 1));
    if (!a) return -1;
    for (int64_t t = 0; t < n; t++) {
        a[t].v = x[t] != x[t] ? -INFINITY : (double)x[t];
        a[t].i = (int32_t)t;
    }
    return topk_keys(ctx, a, n, k, by_value, idx);
}

void ak__dyn_block_sums(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int64_t h, int64_t n, int32_t bs,
                        int cols, float *sums, int32_t *cnt) {
    int64_t nb = (n + bs - 1) / bs;
    float row[AK_MAX_HEAD_DIM];
    double acc[AK_MAX_HEAD_DIM];
    for (int64_t c = 0; c < nb; c++) {
        int64_t a = c * bs, z = a + bs < n ? a + bs : n;
        for (int k = 0; k < cols; k++) acc[k] = 0.0;
        for (int64_t i = a; i < z; i++) {
            ak__dyn_rows(in, X, b, h, i, 1, cols, row, cols);
            for (int k = 0; k < cols; k++) acc[k] += row[k];
        }
        for (int k = 0; k < cols; k++) sums[c * cols + k] = (float)acc[k];
        if (cnt) cnt[c] = (int32_t)(z - a);
    }
}

ak_status ak__dyn_parse_opts(ak_ctx *ctx, const char *method, const char *opts,
                             int (*set)(void *user, const char *key, const char *val), void *user) {
    if (!opts) return AK_OK;
    const char *s = opts;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        char buf[256];
        if (n >= sizeof buf) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: option too long: %.40s...", method, s);
        memcpy(buf, s, n);
        buf[n] = 0;
        if (n > 0) {
            char *eq = strchr(buf, '=');
            if (!eq || eq == buf || !eq[1])
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: option '%s' is not key=value", method, buf);
            *eq = 0;
            if (!set(user, buf, eq + 1))
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: unknown option or bad value '%s=%s'", method, buf, eq + 1);
        }
        s += n;
        if (*s == ',') s++;
    }
    return AK_OK;
}

int ak__dyn_int(const char *val, int32_t *out) {
    char *end;
    long v = strtol(val, &end, 10);
    if (end == val || *end || v < INT32_MIN || v > INT32_MAX) return 0;
    *out = (int32_t)v;
    return 1;
}

int ak__dyn_float(const char *val, float *out) {
    char *end;
    double v = strtod(val, &end);
    if (end == val || *end) return 0;
    *out = (float)v;
    return 1;
}
