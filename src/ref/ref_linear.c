/*
 * The double-precision reference for linear attention (the oracle of the tests): per (sequence, head)
 * the masked left product with explicit decay powers, materialised, plus the initial-state term; the
 * final state by the recurrence. Plain and slow on purpose.
 */
#include "exec/linear.h"

/* Element c of row r (packed) of head h of a [B][H][L][n] view, in double. */
static double ref_at(const ak_tensor *t, int64_t bi, int64_t h, int64_t r, int64_t c) {
    return ak__load_f64(t->data, t->dtype, bi * t->stride[0] + h * t->stride[1] + r * t->stride[2] + c * t->stride[3]);
}

/*
 * One (sequence b, head h), n rows:
 *   A[t][s] = lambda^(t-s) (c q_t . k_s) for s <= t, else 0          (n x n, materialised)
 *   O[t]    = sum_s A[t][s] v_s + lambda^(t+1) S0^T (c q_t)
 *   S_final = lambda^n S0 + sum_s lambda^(n-1-s) k_s v_s^T           (by the recurrence S = lambda S + k v^T)
 */
static ak_status ref_head(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, int64_t b, int64_t h) {
    const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b), d = p->d, e = p->e;
    const double c = p->desc.scale;
    const double ld = p->desc.has_decay ? ((const float *)t->log_decay.data)[h * t->log_decay.stride[0]] : 0.0;
    double *A = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(n * n + 1));
    double *S = (double *)ak__alloc(ctx, sizeof(double) * (size_t)(d * e));
    if (!A || !S) {
        ak__free(ctx, A);
        ak__free(ctx, S);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention reference (%lld x %lld)", (long long)n, (long long)n);
    }
    for (int64_t x = 0; x < d * e; x++)
        S[x] = p->desc.has_initial_state
                   ? ((const float *)t->state_in.data)[b * t->state_in.stride[0] + h * t->state_in.stride[1] +
                                                       (x / e) * t->state_in.stride[2] + (x % e) * t->state_in.stride[3]]
                   : 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double dot = 0.0;
            if (j <= i)
                for (int64_t x = 0; x < d; x++) dot += c * ref_at(&t->q, bi, h, r0 + i, x) * ref_at(&t->k, bi, h, r0 + j, x);
            A[i * n + j] = j <= i ? exp(ld * (double)(i - j)) * dot : 0.0;
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t y = 0; y < e; y++) {
            double acc = 0.0;
            for (int64_t j = 0; j <= i; j++) acc += A[i * n + j] * ref_at(&t->v, bi, h, r0 + j, y);
            double inter = 0.0;
            for (int64_t x = 0; x < d; x++) inter += S[x * e + y] * c * ref_at(&t->q, bi, h, r0 + i, x);
            acc += exp(ld * (double)(i + 1)) * inter;
            ak__store(t->o.data, t->o.dtype, bi * t->o.stride[0] + h * t->o.stride[1] + (r0 + i) * t->o.stride[2] + y * t->o.stride[3], acc);
        }
    if (p->desc.return_final_state) {
        const double lam = exp(ld);
        for (int64_t s = 0; s < n; s++)
            for (int64_t x = 0; x < d; x++)
                for (int64_t y = 0; y < e; y++)
                    S[x * e + y] = lam * S[x * e + y] + ref_at(&t->k, bi, h, r0 + s, x) * ref_at(&t->v, bi, h, r0 + s, y);
        for (int64_t x = 0; x < d * e; x++)
            ((float *)t->state_out.data)[b * t->state_out.stride[0] + h * t->state_out.stride[1] +
                                         (x / e) * t->state_out.stride[2] + (x % e) * t->state_out.stride[3]] = (float)S[x];
    }
    ak__free(ctx, A);
    ak__free(ctx, S);
    return AK_OK;
}

ak_status ak__la_ref(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t) {
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->H; h++) {
            ak_status st = ref_head(ctx, p, t, b, h);
            if (st != AK_OK) return st;
        }
    return AK_OK;
}

/* Element (x, y) of the [B][H][d][e] f32 view of (b, h). */
static double ref_state(const ak_tensor *t, int64_t b, int64_t h, int64_t x, int64_t y) {
    return ((const float *)t->data)[b * t->stride[0] + h * t->stride[1] + x * t->stride[2] + y * t->stride[3]];
}

/*
 * Analytic gradients of one (sequence b, head h) from the materialised form (q' = c q, G = dLoss/dO):
 *   dP[t][s] = lambda^(t-s) (g_t . v_s), s <= t
 *   dQ_t  = c (sum_s dP[t][s] k_s + lambda^(t+1) S0 g_t)
 *   dK_s  = sum_t dP[t][s] q'_t + lambda^(n-1-s) dS_f v_s
 *   dV_s  = sum_{t>=s} lambda^(t-s) (q'_t . k_s) g_t + lambda^(n-1-s) dS_f^T k_s
 *   dS0   = sum_t lambda^(t+1) q'_t g_t^T + lambda^n dS_f
 */
static void ref_bwd_head(const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g, int64_t b, int64_t h) {
    const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b), d = p->d, e = p->e;
    const double c = p->desc.scale;
    const double ld = p->desc.has_decay ? ((const float *)t->log_decay.data)[h * t->log_decay.stride[0]] : 0.0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t x = 0; x < d; x++) { /* dQ */
            double acc = 0.0;
            for (int64_t s = 0; s <= i; s++) {
                double gv = 0.0;
                for (int64_t y = 0; y < e; y++) gv += ref_at(&g->d_o, bi, h, r0 + i, y) * ref_at(&t->v, bi, h, r0 + s, y);
                acc += exp(ld * (double)(i - s)) * gv * ref_at(&t->k, bi, h, r0 + s, x);
            }
            if (p->desc.has_initial_state)
                for (int64_t y = 0; y < e; y++)
                    acc += exp(ld * (double)(i + 1)) * ref_state(&t->state_in, b, h, x, y) * ref_at(&g->d_o, bi, h, r0 + i, y);
            ak__store(g->dq.data, g->dq.dtype, bi * g->dq.stride[0] + h * g->dq.stride[1] + (r0 + i) * g->dq.stride[2] + x * g->dq.stride[3], c * acc);
        }
        for (int64_t x = 0; x < d; x++) { /* dK */
            double acc = 0.0;
            for (int64_t tt = i; tt < n; tt++) {
                double gv = 0.0;
                for (int64_t y = 0; y < e; y++) gv += ref_at(&g->d_o, bi, h, r0 + tt, y) * ref_at(&t->v, bi, h, r0 + i, y);
                acc += exp(ld * (double)(tt - i)) * gv * c * ref_at(&t->q, bi, h, r0 + tt, x);
            }
            if (g->has_d_state_out)
                for (int64_t y = 0; y < e; y++)
                    acc += exp(ld * (double)(n - 1 - i)) * ref_state(&g->d_state_out, b, h, x, y) * ref_at(&t->v, bi, h, r0 + i, y);
            ak__store(g->dk.data, g->dk.dtype, bi * g->dk.stride[0] + h * g->dk.stride[1] + (r0 + i) * g->dk.stride[2] + x * g->dk.stride[3], acc);
        }
        for (int64_t y = 0; y < e; y++) { /* dV */
            double acc = 0.0;
            for (int64_t tt = i; tt < n; tt++) {
                double qk = 0.0;
                for (int64_t x = 0; x < d; x++) qk += c * ref_at(&t->q, bi, h, r0 + tt, x) * ref_at(&t->k, bi, h, r0 + i, x);
                acc += exp(ld * (double)(tt - i)) * qk * ref_at(&g->d_o, bi, h, r0 + tt, y);
            }
            if (g->has_d_state_out)
                for (int64_t x = 0; x < d; x++)
                    acc += exp(ld * (double)(n - 1 - i)) * ref_state(&g->d_state_out, b, h, x, y) * ref_at(&t->k, bi, h, r0 + i, x);
            ak__store(g->dv.data, g->dv.dtype, bi * g->dv.stride[0] + h * g->dv.stride[1] + (r0 + i) * g->dv.stride[2] + y * g->dv.stride[3], acc);
        }
    }
    if (p->desc.has_initial_state)
        for (int64_t x = 0; x < d; x++)
            for (int64_t y = 0; y < e; y++) {
                double acc = g->has_d_state_out ? exp(ld * (double)n) * ref_state(&g->d_state_out, b, h, x, y) : 0.0;
                for (int64_t tt = 0; tt < n; tt++)
                    acc += exp(ld * (double)(tt + 1)) * c * ref_at(&t->q, bi, h, r0 + tt, x) * ref_at(&g->d_o, bi, h, r0 + tt, y);
                ((float *)g->d_state_in.data)[b * g->d_state_in.stride[0] + h * g->d_state_in.stride[1] +
                                              x * g->d_state_in.stride[2] + y * g->d_state_in.stride[3]] = (float)acc;
            }
}

ak_status ak__la_bwd_ref(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g) {
    (void)ctx;
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->H; h++) ref_bwd_head(p, t, g, b, h);
    return AK_OK;
}

/* ---- NormAttention in double: per token (sequence b, packed row r) all H heads x [H][e] ---- */
static double ref_x(const ak_tensor *t, int64_t bi, int64_t h, int64_t r, int64_t y) {
    return ak__load_f64(t->data, t->dtype, bi * t->stride[0] + h * t->stride[1] + r * t->stride[2] + y * t->stride[3]);
}

static void ref_put(const ak_tensor *t, int64_t bi, int64_t h, int64_t r, int64_t y, double v) {
    ak__store(t->data, t->dtype, bi * t->stride[0] + h * t->stride[1] + r * t->stride[2] + y * t->stride[3], v);
}

/* r = 1 / sqrt(mean over the token's H e values of x^2 + eps), or 1 without a norm */
static double ref_rs(const ak_laproblem *p, const ak_tensor *x, int64_t bi, int64_t r) {
    if (p->desc.norm != AK_LA_NORM_SRMS) return 1.0;
    double ss = 0.0;
    for (int64_t h = 0; h < p->H; h++)
        for (int64_t y = 0; y < p->e; y++) ss += ref_x(x, bi, h, r, y) * ref_x(x, bi, h, r, y);
    return 1.0 / sqrt(ss / ((double)p->H * p->e) + (double)p->desc.norm_eps);
}

/* o = x r (. gate) */
ak_status ak__la_norm_fwd_ref(const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate, const ak_tensor *o) {
    for (int64_t b = 0; b < p->B; b++) {
        const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
        for (int64_t r = r0; r < r0 + n; r++) {
            const double rs = ref_rs(p, x, bi, r);
            for (int64_t h = 0; h < p->H; h++)
                for (int64_t y = 0; y < p->e; y++)
                    ref_put(o, bi, h, r, y, ref_x(x, bi, h, r, y) * rs * (gate ? ref_x(gate, bi, h, r, y) : 1.0));
        }
    }
    return AK_OK;
}

/* dy = d_o (. gate); d_gate = d_o . y; x <- dx = r (dy - y mean(y . dy)), y = x r */
ak_status ak__la_norm_bwd_ref(const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate, const ak_tensor *d_o,
                              const ak_tensor *d_gate) {
    const double N = (double)p->H * p->e;
    for (int64_t b = 0; b < p->B; b++) {
        const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
        for (int64_t r = r0; r < r0 + n; r++) {
            const double rs = ref_rs(p, x, bi, r);
            double m = 0.0;
            for (int64_t h = 0; h < p->H; h++)
                for (int64_t y = 0; y < p->e; y++) {
                    double dy = ref_x(d_o, bi, h, r, y) * (gate ? ref_x(gate, bi, h, r, y) : 1.0);
                    m += ref_x(x, bi, h, r, y) * rs * dy;
                }
            m /= N;
            for (int64_t h = 0; h < p->H; h++)
                for (int64_t y = 0; y < p->e; y++) {
                    const double yv = ref_x(x, bi, h, r, y) * rs, go = ref_x(d_o, bi, h, r, y);
                    const double dy = go * (gate ? ref_x(gate, bi, h, r, y) : 1.0);
                    if (gate) ref_put(d_gate, bi, h, r, y, go * yv);
                    ref_put(x, bi, h, r, y, p->desc.norm == AK_LA_NORM_SRMS ? rs * (dy - yv * m) : dy);
                }
        }
    }
    return AK_OK;
}
