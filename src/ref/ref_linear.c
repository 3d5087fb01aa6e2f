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
