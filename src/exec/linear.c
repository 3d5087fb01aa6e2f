/*
 * Linear attention, fp32: the chunked form (Lightning Attention-2) and the recurrent form, one
 * (sequence, head) per thread at a time (OpenMP dynamic over the pairs; each pair computed start to
 * finish by one thread, so the result does not depend on the thread count).
 *
 * Chunked, for a block of L rows starting at b0 (state S = the state after row b0 - 1):
 *   o_i = lambda^(i+1) S^T (c q_i) + sum_{j <= i} lambda^(i-j) (c q_i . k_j) v_j     (inter + intra)
 *   S  <- lambda^L S + sum_j lambda^(L-1-j) k_j v_j^T
 * Powers are exp(log_decay * m) with m >= 0 (never a negative power: no overflow for tiny lambda).
 */
#include "exec/linear.h"

#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

/* Row r (packed) of head h of a [B][H][L][n] view, converted to f32, times mul. */
static void load_row(const ak_tensor *t, int64_t bi, int64_t h, int64_t r, int n, float mul, float *dst) {
    int64_t off = bi * t->stride[0] + h * t->stride[1] + r * t->stride[2];
    if (t->stride[3] == 1 && t->dtype == AK_F32) {
        const float *src = (const float *)t->data + off;
        for (int c = 0; c < n; c++) dst[c] = src[c] * mul;
        return;
    }
    if (t->stride[3] == 1 && t->dtype == AK_BF16) {
        const uint16_t *src = (const uint16_t *)t->data + off;
        for (int c = 0; c < n; c++) {
            uint32_t u = (uint32_t)src[c] << 16;
            float f;
            memcpy(&f, &u, sizeof f);
            dst[c] = f * mul;
        }
        return;
    }
    for (int c = 0; c < n; c++) dst[c] = ak__load(t->data, t->dtype, off + c * t->stride[3]) * mul;
}

static void store_row(const ak_tensor *t, int64_t bi, int64_t h, int64_t r, int n, const float *src) {
    int64_t off = bi * t->stride[0] + h * t->stride[1] + r * t->stride[2];
    if (t->stride[3] == 1 && t->dtype == AK_F32) {
        memcpy((float *)t->data + off, src, sizeof(float) * (size_t)n);
        return;
    }
    for (int c = 0; c < n; c++) ak__store(t->data, t->dtype, off + c * t->stride[3], (double)src[c]);
}

/* state [d][e] of (b, h) from / to a [B][H][d][e] f32 view */
static void state_io(const ak_tensor *t, int64_t b, int64_t h, int d, int e, float *S, int store) {
    float *base = (float *)t->data;
    for (int r = 0; r < d; r++)
        for (int c = 0; c < e; c++) {
            int64_t off = b * t->stride[0] + h * t->stride[1] + r * t->stride[2] + c * t->stride[3];
            if (store) base[off] = S[r * e + c];
            else S[r * e + c] = base[off];
        }
}

typedef struct la_scratch {
    float *S, *q, *k, *v, *o, *pw;
} la_scratch;

/* rows = rows of q/k/v held at once (1 for the recurrent form) */
static size_t la_scratch_floats(const ak_laproblem *p, int rows) {
    size_t B = (size_t)rows, d = (size_t)p->d, e = (size_t)p->e;
    return d * e + B * d * 2 + B * e * 2 + (B + 1);
}

static la_scratch la_carve(const ak_laproblem *p, float *base) {
    size_t B = 1, d = (size_t)p->d, e = (size_t)p->e; /* the recurrent form: one row */
    la_scratch s;
    s.S = base;
    s.q = s.S + d * e;
    s.k = s.q + B * d;
    s.v = s.k + B * d;
    s.o = s.v + B * e;
    s.pw = s.o + B * e;
    return s;
}

/* Scratch of the chunked form (leading dimensions padded by 16 floats against 4 KiB set aliasing):
 *   S [d][ldS], qt / qts [d][ldb] (c q^T, and scaled by lambda^(i+1) per column), kb [blk][ldk],
 *   vb [blk][ldS] (columns past e zero), st [blk][ldb] (the masked, decayed K.Q^T), ot [e][ldb] (O^T). */
typedef struct la_kdims {
    int64_t ldS, ldb, ldk;
} la_kdims;

static la_kdims la_kdims_of(const ak_laproblem *p) {
    la_kdims x;
    x.ldS = ((int64_t)p->e + 15) / 16 * 16 + 16;
    x.ldb = ((int64_t)p->blk + 15) / 16 * 16 + 16;
    x.ldk = ((int64_t)p->d + 15) / 16 * 16 + 16;
    return x;
}

static size_t la_kscratch_floats(const ak_laproblem *p) {
    la_kdims x = la_kdims_of(p);
    size_t d = (size_t)p->d, e = (size_t)p->e, B = (size_t)p->blk;
    return d * (size_t)x.ldS + 2 * d * (size_t)x.ldb + B * (size_t)x.ldk + B * (size_t)x.ldS + B * (size_t)x.ldb +
           e * (size_t)x.ldb + B + 2 + 16 * 8;
}

/*
 * One (sequence b, head h) in the chunked form, on the f32 micro-kernels of the dense kernel
 * (transposed formulation, the block's queries along the SIMD lanes):
 *   St[j][i] = k_j . (c q_i)                 qk
 *   St[j][i] *= lambda^(i-j) for j <= i, else 0
 *   O^T  = V^T St   +   S^T Qts              pv twice (intra, then inter: Qts[x][i] = lambda^(i+1) c q_i[x])
 *   S   <- lambda^L S + (lambda^(L-1-j) k_j)^T v_j    pv (value columns on the lanes)
 */
static void chunked_head(const ak_laproblem *p, const ak_fwd_kernels *kern, const ak_la_tensors *t, int64_t b,
                         int64_t h, float *ws) {
    const int d = p->d, e = p->e, blk = p->blk;
    const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
    const la_kdims x = la_kdims_of(p);
    const int epad = (e + 15) / 16 * 16;
    const float c = p->desc.scale;
    const double ld = p->desc.has_decay ? ((const float *)t->log_decay.data)[h * t->log_decay.stride[0]] : 0.0;
    float *S = ws, *qt = S + (size_t)d * x.ldS, *qts = qt + (size_t)d * x.ldb, *kb = qts + (size_t)d * x.ldb;
    float *vb = kb + (size_t)blk * x.ldk, *st = vb + (size_t)blk * x.ldS, *ot = st + (size_t)blk * x.ldb;
    float *pw = ot + (size_t)e * x.ldb, *row = pw + blk + 2;
    for (int m = 0; m <= blk; m++) pw[m] = (float)exp(ld * m); /* lambda^m, m >= 0 */
    memset(S, 0, sizeof(float) * (size_t)d * x.ldS);
    if (p->desc.has_initial_state)
        for (int r = 0; r < d; r++)
            for (int y = 0; y < e; y++)
                S[(size_t)r * x.ldS + y] = ((const float *)t->state_in.data)[b * t->state_in.stride[0] + h * t->state_in.stride[1] +
                                                                              r * t->state_in.stride[2] + y * t->state_in.stride[3]];
    memset(vb, 0, sizeof(float) * (size_t)blk * x.ldS);
    for (int64_t b0 = 0; b0 < n; b0 += blk) {
        const int L = (int)(n - b0 < blk ? n - b0 : blk), Lpad = (L + 15) / 16 * 16;
        for (int i = 0; i < Lpad; i++) { /* Q^T (scaled by c) and its decayed copy; zero columns past L */
            if (i < L) load_row(&t->q, bi, h, r0 + b0 + i, d, c, row);
            for (int r = 0; r < d; r++) {
                float v = i < L ? row[r] : 0.0f;
                qt[(size_t)r * x.ldb + i] = v;
                qts[(size_t)r * x.ldb + i] = i < L ? v * pw[i + 1] : 0.0f;
            }
        }
        for (int j = 0; j < L; j++) {
            load_row(&t->k, bi, h, r0 + b0 + j, d, 1.0f, kb + (size_t)j * x.ldk);
            load_row(&t->v, bi, h, r0 + b0 + j, e, 1.0f, vb + (size_t)j * x.ldS);
        }
        kern->qk(L, d, Lpad, kb, x.ldk, qt, x.ldb, 1.0f, st, x.ldb);
        for (int j = 0; j < L; j++) { /* causal mask and decay inside the block */
            float *sr = st + (size_t)j * x.ldb;
            for (int i = 0; i < Lpad; i++) sr[i] = (i >= j && i < L) ? sr[i] * pw[i - j] : 0.0f;
        }
        memset(ot, 0, sizeof(float) * (size_t)e * x.ldb);
        kern->pv(L, e, Lpad, vb, x.ldS, st, x.ldb, ot, x.ldb);
        kern->pv(d, e, Lpad, S, x.ldS, qts, x.ldb, ot, x.ldb);
        for (int i = 0; i < L; i++) {
            for (int y = 0; y < e; y++) row[y] = ot[(size_t)y * x.ldb + i];
            store_row(&t->o, bi, h, r0 + b0 + i, e, row);
        }
        /* state: S <- lambda^L S + sum_j (lambda^(L-1-j) k_j) v_j^T */
        for (int r = 0; r < d; r++)
            for (int y = 0; y < epad; y++) S[(size_t)r * x.ldS + y] *= pw[L];
        for (int j = 0; j < L; j++)
            for (int r = 0; r < d; r++) kb[(size_t)j * x.ldk + r] *= pw[L - 1 - j];
        kern->pv(L, d, epad, kb, x.ldk, vb, x.ldS, S, x.ldS);
        for (int j = 0; j < L; j++) /* zero the value rows again for a shorter last block */
            for (int y = 0; y < e; y++) vb[(size_t)j * x.ldS + y] = 0.0f;
    }
    if (p->desc.return_final_state)
        for (int r = 0; r < d; r++)
            for (int y = 0; y < e; y++)
                ((float *)t->state_out.data)[b * t->state_out.stride[0] + h * t->state_out.stride[1] + r * t->state_out.stride[2] +
                                             y * t->state_out.stride[3]] = S[(size_t)r * x.ldS + y];
}

/* One (sequence b, head h) in the recurrent form: S = lambda S + k v^T; o = S^T (c q). */
static void recurrent_head(const ak_laproblem *p, const ak_la_tensors *t, int64_t b, int64_t h, la_scratch *s) {
    const int d = p->d, e = p->e;
    const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
    /* lambda - 1 = expm1(log_decay): lambda near 1 (log_decay ~ -4e-8 in real models) rounds to 1 or to a
     * decay ~50% too strong in float; S + (lambda - 1) S keeps the small decrement exact per token */
    const float lm1 = p->desc.has_decay ? (float)expm1((double)((const float *)t->log_decay.data)[h * t->log_decay.stride[0]]) : 0.0f;
    if (p->desc.has_initial_state) state_io(&t->state_in, b, h, d, e, s->S, 0);
    else memset(s->S, 0, sizeof(float) * (size_t)d * e);
    for (int64_t i = 0; i < n; i++) {
        load_row(&t->q, bi, h, r0 + i, d, p->desc.scale, s->q);
        load_row(&t->k, bi, h, r0 + i, d, 1.0f, s->k);
        load_row(&t->v, bi, h, r0 + i, e, 1.0f, s->v);
        for (int x = 0; x < d; x++) {
            float *Srow = s->S + (size_t)x * e;
            for (int y = 0; y < e; y++) Srow[y] = Srow[y] + lm1 * Srow[y] + s->k[x] * s->v[y];
        }
        for (int y = 0; y < e; y++) s->o[y] = 0.0f;
        for (int x = 0; x < d; x++) {
            const float *Srow = s->S + (size_t)x * e;
            for (int y = 0; y < e; y++) s->o[y] += s->q[x] * Srow[y];
        }
        store_row(&t->o, bi, h, r0 + i, e, s->o);
    }
    if (p->desc.return_final_state) state_io(&t->state_out, b, h, d, e, s->S, 1);
}

ak_status ak__la_run(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, int recurrent) {
    const int64_t pairs = (int64_t)p->B * p->H;
    const ak_fwd_kernels *kern = ak__kernel_for(ctx->isa);
    size_t need = recurrent ? la_scratch_floats(p, 1) : la_kscratch_floats(p);
    const size_t per = (need + 15) / 16 * 16;
    int nt = ctx->n_threads < pairs ? ctx->n_threads : (int)(pairs > 0 ? pairs : 1);
    float *ws = (float *)ak__alloc(ctx, sizeof(float) * per * (size_t)nt);
    if (!ws) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention scratch (%zu floats per thread)", per);
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        float *mine = ws + per * (size_t)tid;
        la_scratch s = la_carve(p, mine);
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t x = 0; x < pairs; x++) {
            if (recurrent) recurrent_head(p, t, x / p->H, x % p->H, &s);
            else chunked_head(p, kern, t, x / p->H, x % p->H, mine);
        }
    }
    ak__free(ctx, ws);
    return AK_OK;
}

/* ---- backward (chunked), per (sequence, head); q' = c q ----
 * forward sweep:  dq_i = c (lambda^(i+1) S g_i + sum_{j<=i} lambda^(i-j) (g_i . v_j) k_j), S rebuilt per block
 * reverse sweep (R = sum over later rows t of lambda^(t - first row of the next block) q'_t g_t^T):
 *   dk_j = lambda^(L-j) R v_j + sum_{i>=j} lambda^(i-j) (g_i . v_j) q'_i
 *   dv_j = lambda^(L-j) R^T k_j + sum_{i>=j} lambda^(i-j) (q'_i . k_j) g_i
 *   R <- lambda^L R + sum_i lambda^i q'_i g_i^T;   d_state_in = lambda R  (+ lambda^n dS_f)
 * A gradient of the final state adds lambda^(n-1-s) dS_f v_s to dk_s and lambda^(n-1-s) dS_f^T k_s to dv_s. */

typedef struct la_bscratch {
    float *S, *R, *Sf, *q, *k, *v, *g, *out, *pw;
} la_bscratch;

static size_t la_bscratch_floats(const ak_laproblem *p) {
    size_t B = (size_t)p->blk, d = (size_t)p->d, e = (size_t)p->e;
    return 3 * d * e + 2 * B * d + 2 * B * e + B * (d > e ? d : e) + B + 1;
}

static la_bscratch la_bcarve(const ak_laproblem *p, float *base) {
    size_t B = (size_t)p->blk, d = (size_t)p->d, e = (size_t)p->e;
    la_bscratch s;
    s.S = base;
    s.R = s.S + d * e;
    s.Sf = s.R + d * e;
    s.q = s.Sf + d * e;
    s.k = s.q + B * d;
    s.v = s.k + B * d;
    s.g = s.v + B * e;
    s.out = s.g + B * e;
    s.pw = s.out + B * (d > e ? d : e);
    return s;
}

static void load_block(const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *gr, int64_t bi, int64_t h,
                       int64_t r, int L, la_bscratch *s) {
    for (int i = 0; i < L; i++) {
        load_row(&t->q, bi, h, r + i, p->d, p->desc.scale, s->q + (size_t)i * p->d);
        load_row(&t->k, bi, h, r + i, p->d, 1.0f, s->k + (size_t)i * p->d);
        load_row(&t->v, bi, h, r + i, p->e, 1.0f, s->v + (size_t)i * p->e);
        load_row(&gr->d_o, bi, h, r + i, p->e, 1.0f, s->g + (size_t)i * p->e);
    }
}

static float dotf(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int x = 0; x < n; x++) acc += a[x] * b[x];
    return acc;
}

static void bwd_head(const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *gr, int64_t b, int64_t h,
                     la_bscratch *s) {
    const int d = p->d, e = p->e, blk = p->blk;
    const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
    const float c = p->desc.scale;
    const double ld = p->desc.has_decay ? ((const float *)t->log_decay.data)[h * t->log_decay.stride[0]] : 0.0;
    for (int m = 0; m <= blk; m++) s->pw[m] = (float)exp(ld * m);
    if (gr->has_d_state_out) state_io(&gr->d_state_out, b, h, d, e, s->Sf, 0);

    /* forward sweep: dq */
    if (p->desc.has_initial_state) state_io(&t->state_in, b, h, d, e, s->S, 0);
    else memset(s->S, 0, sizeof(float) * (size_t)d * e);
    for (int64_t b0 = 0; b0 < n; b0 += blk) {
        const int L = (int)(n - b0 < blk ? n - b0 : blk);
        load_block(p, t, gr, bi, h, r0 + b0, L, s);
        for (int i = 0; i < L; i++) {
            float *dq = s->out;
            const float *gi = s->g + (size_t)i * e;
            for (int x = 0; x < d; x++) dq[x] = s->pw[i + 1] * dotf(s->S + (size_t)x * e, gi, e);
            for (int j = 0; j <= i; j++) {
                float w = s->pw[i - j] * dotf(gi, s->v + (size_t)j * e, e);
                for (int x = 0; x < d; x++) dq[x] += w * s->k[(size_t)j * d + x];
            }
            for (int x = 0; x < d; x++) dq[x] *= c;
            store_row(&gr->dq, bi, h, r0 + b0 + i, d, dq);
        }
        for (size_t z = 0; z < (size_t)d * e; z++) s->S[z] *= s->pw[L];
        for (int j = 0; j < L; j++)
            for (int x = 0; x < d; x++) {
                float kx = s->k[(size_t)j * d + x] * s->pw[L - 1 - j];
                for (int y = 0; y < e; y++) s->S[(size_t)x * e + y] += kx * s->v[(size_t)j * e + y];
            }
    }

    /* reverse sweep: dk, dv */
    memset(s->R, 0, sizeof(float) * (size_t)d * e);
    for (int64_t b0 = n > 0 ? (n - 1) / blk * blk : -1; b0 >= 0; b0 -= blk) {
        const int L = (int)(n - b0 < blk ? n - b0 : blk);
        load_block(p, t, gr, bi, h, r0 + b0, L, s);
        for (int j = 0; j < L; j++) {
            const float *vj = s->v + (size_t)j * e, *kj = s->k + (size_t)j * d;
            const float wf = gr->has_d_state_out ? (float)exp(ld * (double)(n - 1 - (b0 + j))) : 0.0f;
            float *dk = s->out;
            for (int x = 0; x < d; x++) {
                dk[x] = s->pw[L - j] * dotf(s->R + (size_t)x * e, vj, e);
                if (gr->has_d_state_out) dk[x] += wf * dotf(s->Sf + (size_t)x * e, vj, e);
            }
            for (int i = j; i < L; i++) {
                float w = s->pw[i - j] * dotf(s->g + (size_t)i * e, vj, e);
                for (int x = 0; x < d; x++) dk[x] += w * s->q[(size_t)i * d + x];
            }
            store_row(&gr->dk, bi, h, r0 + b0 + j, d, dk);
            float *dv = s->out;
            for (int y = 0; y < e; y++) {
                float acc = 0.0f, accf = 0.0f;
                for (int x = 0; x < d; x++) {
                    acc += s->R[(size_t)x * e + y] * kj[x];
                    if (gr->has_d_state_out) accf += s->Sf[(size_t)x * e + y] * kj[x];
                }
                dv[y] = s->pw[L - j] * acc + wf * accf;
            }
            for (int i = j; i < L; i++) {
                float w = s->pw[i - j] * dotf(s->q + (size_t)i * d, kj, d);
                for (int y = 0; y < e; y++) dv[y] += w * s->g[(size_t)i * e + y];
            }
            store_row(&gr->dv, bi, h, r0 + b0 + j, e, dv);
        }
        for (size_t z = 0; z < (size_t)d * e; z++) s->R[z] *= s->pw[L];
        for (int i = 0; i < L; i++)
            for (int x = 0; x < d; x++) {
                float qx = s->q[(size_t)i * d + x] * s->pw[i];
                for (int y = 0; y < e; y++) s->R[(size_t)x * e + y] += qx * s->g[(size_t)i * e + y];
            }
    }
    if (p->desc.has_initial_state) {
        const float lam = s->pw[1], lamn = (float)exp(ld * (double)n);
        for (size_t z = 0; z < (size_t)d * e; z++)
            s->S[z] = lam * s->R[z] + (gr->has_d_state_out ? lamn * s->Sf[z] : 0.0f);
        state_io(&gr->d_state_in, b, h, d, e, s->S, 1);
    }
}

ak_status ak__la_bwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g) {
    const int64_t pairs = (int64_t)p->B * p->H;
    const size_t per = (la_bscratch_floats(p) + 15) / 16 * 16;
    int nt = ctx->n_threads < pairs ? ctx->n_threads : (int)(pairs > 0 ? pairs : 1);
    float *ws = (float *)ak__alloc(ctx, sizeof(float) * per * (size_t)nt);
    if (!ws) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention backward scratch (%zu floats per thread)", per);
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        la_bscratch s = la_bcarve(p, ws + per * (size_t)tid);
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t x = 0; x < pairs; x++) bwd_head(p, t, g, x / p->H, x % p->H, &s);
    }
    ak__free(ctx, ws);
    return AK_OK;
}
