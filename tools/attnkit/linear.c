/*
 * linear.c — linear-attention problems (linear_...): Lightning Attention (TransNormerLLM) through
 * ak_la_forward (chunked), ak_la_recurrent (`rec`) and ak_la_backward (`bwd`), in the check, bitwise
 * and bench modes. The grammar is in problem.c; the rule, the report and the row writers are shared with
 * the other kinds of problem (check.c, bench.c).
 *
 * Inputs: Q, K [Bt][H][Tt][d] and V [Bt][H][Tt][e] random (unit variance, seeded) in the problem's dtype;
 * `ragged`: Bt = 1, Tt = the packed total, cu_seqlens from the decode formula (ragged_len); `decay`:
 * log_decay from ak_la_log_decay(mode, H, layer 0, 1 layer); `state`: a random f32 initial state
 * [B][H][d][e] and a final-state output; `srms`: ak_la_desc.norm = AK_LA_NORM_SRMS (default norm_eps); `gate`:
 * has_gate with a random gate [Bt][H][Tt][e] in the input dtype (drawn after every other input, so a seed
 * gives the other inputs of the problem without it). Backward: dO random in the output dtype, with `state`
 * also a random f32 gradient of the final state; dQ, dK, dV (and d_gate) in the input dtype (dS0 f32).
 * Outputs NaN-poisoned.
 *
 * check: the optimized call on the whole problem, then per (sequence, head) pair, as a problem of its own
 * (batch 1, one head, views into the same buffers), ak_la_forward_ref / ak_la_backward_ref in double and
 * a naive fp32 baseline (forward: the recurrence S = lambda S + k v^T, o = S^T (c q), token by token;
 * backward: the materialised gradients, fp32), with the rule of check.c on every output separately.
 * The references are O(T^2) (the backward one O(T^2 d e)), so pairs are compared while their reference
 * work fits in LINEAR_REF_CAP multiply-adds (--full: all pairs, whole). When even the first pair does not
 * fit, a part of it that does is compared, exactly: the forward's rows [0, m) (row t depends on rows <= t
 * only, so the prefix is a problem of its own); the backward's dQ rows [0, m) (prefix, likewise) and its
 * dK, dV rows [n - m, n) (dK_s, dV_s depend on rows >= s and the final-state gradient only: the suffix,
 * without the initial state, is a problem of its own); the final state / dS0 of such a pair is not compared.
 * The naive baseline applies the norm / gate in float too (backward: the pre-norm output by the naive forward,
 * then dx = r (dy - y mean(y . dy)) and d_gate = dO . y per token, then the materialised gradients with dx).
 * With `srms` the norm mixes the heads of a token, so the unit compared is a sequence with all its heads
 * (batch 1, H heads) instead of a (sequence, head) pair; everything above holds per unit. d_gate rows [0, m)
 * come from the prefix, like dQ. With `srms` the backward suffix's dK, dV need the pre-norm output of the
 * suffix rows, which depends on the rows before: the state before the suffix is computed by the tool (the
 * recurrence in double, rounded to f32, for the reference; in float for the naive baseline) and given as the
 * suffix's initial state; that costs (T - m) d e H multiply-adds, and when it does not fit in the cap the
 * part's dK, dV are not compared (said on the line).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Reference work (multiply-adds) above which `check` compares a subset of the pairs, or part of one. */
#define LINEAR_REF_CAP (1L << 28)

/* Block length of the chunked form when desc.block = 0 (attnkit.h: "0 = auto (64)"). */
#define LINEAR_AUTO_BLOCK 64

typedef struct linputs {
    problem p;
    ak_la_desc desc;
    ak_la_tensors t;
    ak_la_grads g;
    int Bt;                      /* batch dimension of the tensors: 1 when ragged */
    int64_t Tt;                  /* their L dimension: the packed total when ragged */
    int32_t *cu;                 /* ragged: [B + 1] */
    void *q, *k, *v, *o, *d_o, *dq, *dk, *dv, *gate, *dgate;
    float *log_decay, *s_in, *s_out, *ds_out, *ds_in;
} linputs;

/* Most outputs of one call: dq, dk, dv, d_gate, dS0. */
#define LOUT_MAX 5

/* The outputs of the problem's call: buffers, sizes, names, dtypes. Returns their count (<= LOUT_MAX). */
static int louts(const linputs *in, void **buf, size_t *bytes, const char **name, ak_dtype *dt) {
    const problem *p = &in->p;
    size_t rows = (size_t)in->Bt * (size_t)p->Hq * (size_t)in->Tt, ns = (size_t)p->B * p->Hq * p->d * p->dv;
    int n = 0;
    if (p->bwd) {
        buf[n] = in->dq; bytes[n] = rows * p->d * ak_dtype_size(p->dt_q); name[n] = "dq"; dt[n++] = p->dt_q;
        buf[n] = in->dk; bytes[n] = rows * p->d * ak_dtype_size(p->dt_q); name[n] = "dk"; dt[n++] = p->dt_q;
        buf[n] = in->dv; bytes[n] = rows * p->dv * ak_dtype_size(p->dt_q); name[n] = "dv"; dt[n++] = p->dt_q;
        if (p->gate) { buf[n] = in->dgate; bytes[n] = rows * p->dv * ak_dtype_size(p->dt_q); name[n] = "d_gate"; dt[n++] = p->dt_q; }
        if (p->state) { buf[n] = in->ds_in; bytes[n] = ns * sizeof(float); name[n] = "dS0"; dt[n++] = AK_F32; }
    } else {
        buf[n] = in->o; bytes[n] = rows * p->dv * ak_dtype_size(p->dt_o); name[n] = "O"; dt[n++] = p->dt_o;
        if (p->state) { buf[n] = in->s_out; bytes[n] = ns * sizeof(float); name[n] = "state"; dt[n++] = AK_F32; }
    }
    return n;
}

static void linputs_poison(linputs *in) {
    void *buf[LOUT_MAX];
    size_t bytes[LOUT_MAX];
    const char *name[LOUT_MAX];
    ak_dtype dt[LOUT_MAX];
    int n = louts(in, buf, bytes, name, dt);
    for (int i = 0; i < n; i++) memset(buf[i], 0xff, bytes[i]);
}

static void linputs_free(linputs *in) {
    free(in->cu);
    free(in->q); free(in->k); free(in->v); free(in->o);
    free(in->d_o); free(in->dq); free(in->dk); free(in->dv); free(in->gate); free(in->dgate);
    free(in->log_decay); free(in->s_in); free(in->s_out); free(in->ds_out); free(in->ds_in);
    memset(in, 0, sizeof(*in));
}

/* n random f32 values (unit variance), or NULL. */
static float *random_f32(size_t n, uint64_t *rng) { return random_buffer(AK_F32, n, rng); }

/*
 * n random values (unit variance, seeded) in dtype t, or NULL: random_buffer; above 4 Mi elements (a T = 1M
 * layer holds 3 x 1 Gi), chunks of FILL_CHUNK values copied from a seeded pool of FILL_POOL random values at
 * seeded offsets, a fill at memory speed instead of ~5 ns per element. check compares far fewer rows.
 */
#define FILL_POOL (1 << 20)
#define FILL_CHUNK 4096

static void *random_fill(ak_dtype t, size_t n, uint64_t *rng) {
    if (n <= 4 * (size_t)FILL_POOL) return random_buffer(t, n, rng);
    size_t es = ak_dtype_size(t);
    unsigned char *pool = random_buffer(t, FILL_POOL + FILL_CHUNK, rng), *buf = xalloc(n * es);
    if (pool && buf)
        for (size_t i = 0; i < n; i += FILL_CHUNK) {
            size_t len = n - i < FILL_CHUNK ? n - i : FILL_CHUNK, off = (size_t)(rng_next(rng) % FILL_POOL);
            memcpy(buf + i * es, pool + off * es, len * es);
        }
    free(pool);
    if (!pool) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* Everything for linear problem p (ctx: ak_la_log_decay). 0 = ok; else -1 with a message (in is freed). */
static int linputs_create(ak_ctx *ctx, const problem *p, uint64_t seed, linputs *in, char *err, size_t errlen) {
    memset(in, 0, sizeof(*in));
    in->p = *p;
    in->Bt = p->ragged ? 1 : p->B;
    in->Tt = p->Lq;
    if (p->ragged) {
        in->cu = malloc(sizeof(int32_t) * ((size_t)p->B + 1));
        if (!in->cu) goto oom;
        int64_t total = 0;
        in->cu[0] = 0;
        for (int b = 0; b < p->B; b++) {
            total += ragged_len(p, b);
            if (total > 2147483647LL) {
                snprintf(err, errlen, "ragged: %lld tokens in all, more than cu_seqlens (int32) holds", (long long)total);
                linputs_free(in);
                return -1;
            }
            in->cu[b + 1] = (int32_t)total;
        }
        in->Tt = total;
    }
    double rows = (double)in->Bt * p->Hq * (double)in->Tt, sz_q = (double)ak_dtype_size(p->dt_q);
    double bytes = rows * (2.0 * p->d + p->dv) * sz_q + (double)p->B * p->Hq * p->d * p->dv * 8.0;
    bytes += p->bwd ? rows * ((2.0 * p->d + p->dv) * sz_q + p->dv * (double)ak_dtype_size(p->dt_o))
                    : rows * p->dv * (double)ak_dtype_size(p->dt_o);
    if (p->gate) bytes += rows * p->dv * sz_q * (p->bwd ? 2.0 : 1.0);
    if (bytes > 1e13) {
        snprintf(err, errlen, "inputs too large (%.3g bytes)", bytes);
        linputs_free(in);
        return -1;
    }
    size_t nq = (size_t)rows * (size_t)p->d, nv = (size_t)rows * (size_t)p->dv;
    size_t ns = (size_t)p->B * (size_t)p->Hq * (size_t)p->d * (size_t)p->dv;
    uint64_t rng = seed;
    if (!(in->q = random_fill(p->dt_q, nq, &rng)) || !(in->k = random_fill(p->dt_q, nq, &rng)) ||
        !(in->v = random_fill(p->dt_q, nv, &rng)))
        goto oom;
    if (p->state && !(in->s_in = random_f32(ns, &rng))) goto oom;
    if (p->bwd) {
        if (!(in->d_o = random_fill(p->dt_o, nv, &rng))) goto oom;
        if (p->state && (!(in->ds_out = random_f32(ns, &rng)) || !(in->ds_in = xalloc(ns * sizeof(float))))) goto oom;
        if (!(in->dq = xalloc(nq * ak_dtype_size(p->dt_q))) || !(in->dk = xalloc(nq * ak_dtype_size(p->dt_q))) ||
            !(in->dv = xalloc(nv * ak_dtype_size(p->dt_q))))
            goto oom;
    } else {
        if (!(in->o = xalloc(nv * ak_dtype_size(p->dt_o)))) goto oom;
        if (p->state && !(in->s_out = xalloc(ns * sizeof(float)))) goto oom;
    }
    /* the gate last: the other inputs of a seed stay those of the problem without it */
    if (p->gate && !(in->gate = random_fill(p->dt_q, nv, &rng))) goto oom;
    if (p->gate && p->bwd && !(in->dgate = xalloc(nv * ak_dtype_size(p->dt_q)))) goto oom;
    if (!(in->log_decay = xalloc(sizeof(float) * (size_t)p->Hq))) goto oom;
    memset(in->log_decay, 0, sizeof(float) * (size_t)p->Hq);
    if (p->decay >= 0) {
        ak_status st = ak_la_log_decay(ctx, (ak_la_decay_mode)p->decay, p->Hq, 0, 1, in->log_decay);
        if (st != AK_OK) {
            snprintf(err, errlen, "ak_la_log_decay: %s", error_text(ctx, st));
            linputs_free(in);
            return -1;
        }
    }
    linputs_poison(in);
    ak_la_desc *d = &in->desc;
    ak_la_desc_init(d);
    d->batch = p->B;
    d->num_heads = p->Hq;
    d->seqlen = p->ragged ? 0 : p->Lq;
    d->head_dim = p->d;
    d->head_dim_v = p->dv;
    d->dtype_qkv = p->dt_q;
    d->dtype_o = p->dt_o;
    d->scale = isnan(p->scale) ? 1.0f : p->scale;
    d->has_decay = p->decay >= 0;
    d->has_initial_state = p->state;
    d->return_final_state = p->state && !p->bwd;
    d->block = p->blk;
    d->cu_seqlens = in->cu;
    d->norm = p->norm;
    d->has_gate = p->gate;
    ak_la_tensors *t = &in->t;
    ak_la_tensors_init(t);
    t->q = ak_tensor_4d(in->q, p->dt_q, in->Bt, p->Hq, in->Tt, p->d);
    t->k = ak_tensor_4d(in->k, p->dt_q, in->Bt, p->Hq, in->Tt, p->d);
    t->v = ak_tensor_4d(in->v, p->dt_q, in->Bt, p->Hq, in->Tt, p->dv);
    if (in->o) t->o = ak_tensor_4d(in->o, p->dt_o, in->Bt, p->Hq, in->Tt, p->dv);
    if (p->decay >= 0) t->log_decay = ak_tensor_1d(in->log_decay, AK_F32, p->Hq);
    if (p->state) t->state_in = ak_tensor_4d(in->s_in, AK_F32, p->B, p->Hq, p->d, p->dv);
    if (in->s_out) t->state_out = ak_tensor_4d(in->s_out, AK_F32, p->B, p->Hq, p->d, p->dv);
    if (p->gate) t->gate = ak_tensor_4d(in->gate, p->dt_q, in->Bt, p->Hq, in->Tt, p->dv);
    ak_la_grads *g = &in->g;
    ak_la_grads_init(g);
    if (p->bwd) {
        g->d_o = ak_tensor_4d(in->d_o, p->dt_o, in->Bt, p->Hq, in->Tt, p->dv);
        g->has_d_state_out = p->state;
        if (p->state) {
            g->d_state_out = ak_tensor_4d(in->ds_out, AK_F32, p->B, p->Hq, p->d, p->dv);
            g->d_state_in = ak_tensor_4d(in->ds_in, AK_F32, p->B, p->Hq, p->d, p->dv);
        }
        g->dq = ak_tensor_4d(in->dq, p->dt_q, in->Bt, p->Hq, in->Tt, p->d);
        g->dk = ak_tensor_4d(in->dk, p->dt_q, in->Bt, p->Hq, in->Tt, p->d);
        g->dv = ak_tensor_4d(in->dv, p->dt_q, in->Bt, p->Hq, in->Tt, p->dv);
        if (p->gate) g->d_gate = ak_tensor_4d(in->dgate, p->dt_q, in->Bt, p->Hq, in->Tt, p->dv);
    }
    return 0;
oom:
    linputs_free(in);
    snprintf(err, errlen, "out of memory allocating the inputs");
    return -1;
}

/* The problem's call and its name. */
static ak_status lrun(ak_ctx *ctx, const linputs *in) {
    if (in->p.bwd) return ak_la_backward(ctx, &in->desc, &in->t, &in->g);
    return in->p.rec ? ak_la_recurrent(ctx, &in->desc, &in->t) : ak_la_forward(ctx, &in->desc, &in->t);
}

static const char *lkernel(const problem *p) {
    return p->bwd ? "ak_la_backward" : p->rec ? "ak_la_recurrent" : "ak_la_forward";
}

/* Sequence b: length, first packed row, tensor batch index. */
static int64_t llen(const linputs *in, int b) { return in->cu ? in->cu[b + 1] - in->cu[b] : in->p.Lq; }
static int64_t loff(const linputs *in, int b) { return in->cu ? in->cu[b] : 0; }
static int64_t lbidx(const linputs *in, int b) { return in->cu ? 0 : b; }

/* ---- check ---- */

/*
 * The unit of comparison: one (sequence, head) pair, or with `srms` one sequence with all its heads (the norm
 * mixes the heads of a token). Unit u: sequence u / (H / nh), heads [h0, h0 + nh).
 */
static int lunit_heads(const problem *p) { return p->norm != AK_LA_NORM_NONE ? p->Hq : 1; }

/* Rows [r, r + m) of heads [h, h + nh), batch index bi of a 4-d view: a [1][nh][m][n] view of the same memory. */
static ak_tensor rows_view(ak_tensor t, int64_t bi, int64_t h, int nh, int64_t r, int64_t m) {
    t.data = (char *)t.data + (bi * t.stride[0] + h * t.stride[1] + r * t.stride[2]) * (int64_t)ak_dtype_size(t.dtype);
    t.shape[0] = 1;
    t.shape[1] = nh;
    t.shape[2] = m;
    return t;
}

/* One unit restricted to rows [t0, t0 + m), as a problem of its own, with the reference's outputs (f64 O or
 * dQ/dK/dV/d_gate, f32 state / dS0) in the caller's buffers. naive_s0: the naive baseline's initial state
 * [nh][d][e] instead of t.state_in (the suffix of a norm's backward, below). */
typedef struct lsub {
    ak_la_desc desc;
    ak_la_tensors t;
    ak_la_grads g;
    int64_t m;
    int nh;
    const float *naive_s0;
} lsub;

/*
 * The sub-problem of unit (b, heads [h0, h0 + nh)), rows [t0, t0 + m). init: the unit's initial state is used
 * (only at t0 = 0); fin: the final state (forward: returned; backward: its gradient used). s0_ref / s0_naive
 * (or NULL): an initial state [nh][d][e] of the reference / the naive baseline instead (the state before row
 * t0). Reference outputs, each [nh][m][.]: out[0] (forward O; backward dQ), out[1] dK, out[2] dV, out[3] d_gate;
 * st [nh][d][e] (final state or dS0).
 */
static void lsub_make(const linputs *in, int b, int h0, int64_t t0, int64_t m, int init, int fin, double *const *out,
                      float *st, float *s0_ref, const float *s0_naive, lsub *s) {
    const problem *p = &in->p;
    const int nh = lunit_heads(p);
    int64_t bi = lbidx(in, b), r = loff(in, b) + t0;
    memset(s, 0, sizeof(*s));
    s->m = m;
    s->nh = nh;
    s->naive_s0 = s0_ref ? s0_naive : NULL;
    s->desc = in->desc;
    s->desc.batch = 1;
    s->desc.num_heads = nh;
    s->desc.seqlen = (int32_t)m;
    s->desc.cu_seqlens = NULL;
    s->desc.dtype_o = AK_F64;
    s->desc.has_initial_state = (p->state && init) || s0_ref;
    s->desc.return_final_state = p->state && fin && !p->bwd;
    ak_la_tensors_init(&s->t);
    s->t.q = rows_view(in->t.q, bi, h0, nh, r, m);
    s->t.k = rows_view(in->t.k, bi, h0, nh, r, m);
    s->t.v = rows_view(in->t.v, bi, h0, nh, r, m);
    if (p->gate) s->t.gate = rows_view(in->t.gate, bi, h0, nh, r, m);
    if (p->decay >= 0) {
        s->t.log_decay = in->t.log_decay;
        s->t.log_decay.data = in->log_decay + h0;
        s->t.log_decay.shape[0] = nh;
    }
    if (s0_ref) s->t.state_in = ak_tensor_4d(s0_ref, AK_F32, 1, nh, p->d, p->dv);
    else if (s->desc.has_initial_state) s->t.state_in = rows_view(in->t.state_in, b, h0, nh, 0, p->d);
    ak_la_grads_init(&s->g);
    if (!p->bwd) {
        s->t.o = ak_tensor_4d(out[0], AK_F64, 1, nh, m, p->dv);
        if (s->desc.return_final_state) s->t.state_out = ak_tensor_4d(st, AK_F32, 1, nh, p->d, p->dv);
        return;
    }
    s->g.d_o = rows_view(in->g.d_o, bi, h0, nh, r, m);
    s->g.has_d_state_out = p->state && fin;
    if (s->g.has_d_state_out) s->g.d_state_out = rows_view(in->g.d_state_out, b, h0, nh, 0, p->d);
    s->g.dq = ak_tensor_4d(out[0], AK_F64, 1, nh, m, p->d);
    s->g.dk = ak_tensor_4d(out[1], AK_F64, 1, nh, m, p->d);
    s->g.dv = ak_tensor_4d(out[2], AK_F64, 1, nh, m, p->dv);
    if (p->gate) s->g.d_gate = ak_tensor_4d(out[3], AK_F64, 1, nh, m, p->dv);
    if (s->desc.has_initial_state) s->g.d_state_in = ak_tensor_4d(st, AK_F32, 1, nh, p->d, p->dv);
}

/* Rows [0, m) of head hh of a [1][nh][m][n] view (times mul) as contiguous float [m][n]; NULL if out of memory. */
static float *rows_f32(const ak_tensor *t, int hh, int64_t m, int n, float mul) {
    float *f = xalloc((size_t)(m > 0 ? m : 1) * (size_t)n * sizeof(float));
    if (!f) return NULL;
    for (int64_t i = 0; i < m; i++)
        for (int c = 0; c < n; c++) f[i * n + c] = (float)tensor_get(t, 0, hh, i, c) * mul;
    return f;
}

static float sub_log_decay(const lsub *s, int hh) {
    return s->desc.has_decay ? ((const float *)s->t.log_decay.data)[hh * s->t.log_decay.stride[0]] : 0.0f;
}

/* The naive baseline's initial state of head hh of s, [d][e] float (zeros without one); NULL if out of memory. */
static float *naive_state0(const lsub *s, int hh) {
    const int d = s->desc.head_dim, e = s->desc.head_dim_v;
    if (s->naive_s0) {
        float *f = xalloc((size_t)d * e * sizeof(float));
        if (f) memcpy(f, s->naive_s0 + (size_t)hh * d * e, (size_t)d * e * sizeof(float));
        return f;
    }
    if (s->desc.has_initial_state) return rows_f32(&s->t.state_in, hh, d, e, 1.0f);
    float *f = xalloc((size_t)d * e * sizeof(float));
    if (f) memset(f, 0, (size_t)d * e * sizeof(float));
    return f;
}

/* Naive fp32 forward of sub-problem s before the norm and gate: per head hh, token by token
 * S = lambda S + k v^T, o = S^T (c q), all in float. o [nh][m][e], S [nh][d][e] (the final states).
 * 0 = ok, -1 = out of memory. */
static int naive_fwd32(const lsub *s, float *o, float *S) {
    const int d = s->desc.head_dim, e = s->desc.head_dim_v;
    const float c = s->desc.scale;
    float *q = xalloc((size_t)d * sizeof(float)), *k = xalloc((size_t)d * sizeof(float));
    float *v = xalloc((size_t)e * sizeof(float));
    int ok = q && k && v;
    for (int hh = 0; ok && hh < s->nh; hh++) {
        const float lam = expf(sub_log_decay(s, hh));
        float *Sh = S + (size_t)hh * d * e, *s0 = naive_state0(s, hh);
        if (!(ok = s0 != NULL)) break;
        memcpy(Sh, s0, (size_t)d * e * sizeof(float));
        free(s0);
        for (int64_t i = 0; i < s->m; i++) {
            for (int x = 0; x < d; x++) {
                q[x] = c * (float)tensor_get(&s->t.q, 0, hh, i, x);
                k[x] = (float)tensor_get(&s->t.k, 0, hh, i, x);
            }
            for (int y = 0; y < e; y++) v[y] = (float)tensor_get(&s->t.v, 0, hh, i, y);
            for (int x = 0; x < d; x++)
                for (int y = 0; y < e; y++) Sh[x * e + y] = lam * Sh[x * e + y] + k[x] * v[y];
            float *oi = o + ((size_t)hh * s->m + i) * e;
            for (int y = 0; y < e; y++) oi[y] = 0.0f;
            for (int x = 0; x < d; x++)
                for (int y = 0; y < e; y++) oi[y] += Sh[x * e + y] * q[x];
        }
    }
    free(q);
    free(k);
    free(v);
    return ok ? 0 : -1;
}

/* 1 / sqrt(mean over the token's nh e values of x^2 + eps) in float (1 without a norm); x [nh][m][e]. */
static float naive_rs(const lsub *s, const float *x, int64_t i) {
    const int e = s->desc.head_dim_v;
    if (s->desc.norm == AK_LA_NORM_NONE) return 1.0f;
    float ss = 0.0f;
    for (int hh = 0; hh < s->nh; hh++)
        for (int y = 0; y < e; y++) {
            float v = x[((size_t)hh * s->m + i) * e + y];
            ss += v * v;
        }
    return 1.0f / sqrtf(ss / (float)(s->nh * e) + s->desc.norm_eps);
}

/* In place, float: o = o r (. gate), per token over its nh heads (the forward's norm and gate). */
static void naive_norm_fwd32(const lsub *s, float *o) {
    const int e = s->desc.head_dim_v;
    for (int64_t i = 0; i < s->m; i++) {
        const float rs = naive_rs(s, o, i);
        for (int hh = 0; hh < s->nh; hh++)
            for (int y = 0; y < e; y++) {
                float *v = &o[((size_t)hh * s->m + i) * e + y];
                *v *= rs;
                if (s->desc.has_gate) *v *= (float)tensor_get(&s->t.gate, 0, hh, i, y);
            }
    }
}

/* Float, per token: dy = d_o (. gate); dg = d_o . y (iff has_gate); g = r (dy - y mean(y . dy)) with y = x r
 * (without a norm: g = dy, y = x). x, g, dg [nh][m][e]. */
static void naive_norm_bwd32(const lsub *s, const float *x, float *g, float *dg) {
    const int e = s->desc.head_dim_v, gate = s->desc.has_gate, norm = s->desc.norm != AK_LA_NORM_NONE;
    for (int64_t i = 0; i < s->m; i++) {
        const float rs = naive_rs(s, x, i);
        float mean = 0.0f;
        for (int hh = 0; hh < s->nh; hh++)
            for (int y = 0; y < e; y++) {
                float dy = (float)tensor_get(&s->g.d_o, 0, hh, i, y) * (gate ? (float)tensor_get(&s->t.gate, 0, hh, i, y) : 1.0f);
                mean += x[((size_t)hh * s->m + i) * e + y] * rs * dy;
            }
        mean /= (float)(s->nh * e);
        for (int hh = 0; hh < s->nh; hh++)
            for (int y = 0; y < e; y++) {
                const size_t j = ((size_t)hh * s->m + i) * e + y;
                const float yv = x[j] * rs, go = (float)tensor_get(&s->g.d_o, 0, hh, i, y);
                const float dy = go * (gate ? (float)tensor_get(&s->t.gate, 0, hh, i, y) : 1.0f);
                if (gate) dg[j] = go * yv;
                g[j] = norm ? rs * (dy - yv * mean) : dy;
            }
    }
}

/*
 * Naive fp32 backward of head hh of sub-problem s, materialised (q' = c q, G = dO or gin [m][e] (the gradient
 * of the pre-norm output), powers expf(log_decay * m)):
 *   A[t][s] = lambda^(t-s) q'_t . k_s,  P[t][s] = lambda^(t-s) g_t . v_s   (s <= t)
 *   dq_t = c (sum_s P[t][s] k_s + lambda^(t+1) S0 g_t)      dk_s = sum_t P[t][s] q'_t + lambda^(m-1-s) dSf v_s
 *   dv_s = sum_t A[t][s] g_t + lambda^(m-1-s) dSf^T k_s     dS0 = sum_t lambda^(t+1) q'_t g_t^T + lambda^m dSf
 * dq, dk [m][d], dv [m][e], ds0 [d][e]. 0 = ok, -1 = out of memory.
 */
static int naive_bwd32(const lsub *s, int hh, const float *gin, float *dq, float *dk, float *dv, float *ds0) {
    const int d = s->desc.head_dim, e = s->desc.head_dim_v;
    const int64_t m = s->m;
    const float ld = sub_log_decay(s, hh), c = s->desc.scale;
    const int init = s->desc.has_initial_state, fin = s->g.has_d_state_out;
    float *q = rows_f32(&s->t.q, hh, m, d, c), *k = rows_f32(&s->t.k, hh, m, d, 1.0f), *v = rows_f32(&s->t.v, hh, m, e, 1.0f);
    float *gbuf = gin ? NULL : rows_f32(&s->g.d_o, hh, m, e, 1.0f);
    const float *g = gin ? gin : gbuf;
    float *A = xalloc((size_t)(m > 0 ? m * m : 1) * sizeof(float)), *P = xalloc((size_t)(m > 0 ? m * m : 1) * sizeof(float));
    float *S0 = init ? naive_state0(s, hh) : NULL, *Sf = fin ? rows_f32(&s->g.d_state_out, hh, d, e, 1.0f) : NULL;
    int ok = q && k && v && g && A && P && (!init || S0) && (!fin || Sf);
    for (int64_t t = 0; ok && t < m; t++)
        for (int64_t j = 0; j <= t; j++) {
            float qk = 0.0f, gv = 0.0f, w = expf(ld * (float)(t - j));
            for (int x = 0; x < d; x++) qk += q[t * d + x] * k[j * d + x];
            for (int y = 0; y < e; y++) gv += g[t * e + y] * v[j * e + y];
            A[t * m + j] = w * qk;
            P[t * m + j] = w * gv;
        }
    for (int64_t t = 0; ok && t < m; t++) {
        for (int x = 0; x < d; x++) {
            float acc = 0.0f;
            for (int64_t j = 0; j <= t; j++) acc += P[t * m + j] * k[j * d + x];
            if (init) {
                float sg = 0.0f;
                for (int y = 0; y < e; y++) sg += S0[x * e + y] * g[t * e + y];
                acc += expf(ld * (float)(t + 1)) * sg;
            }
            dq[t * d + x] = c * acc;
        }
        float wf = expf(ld * (float)(m - 1 - t));
        for (int x = 0; x < d; x++) {
            float acc = 0.0f;
            for (int64_t i = t; i < m; i++) acc += P[i * m + t] * q[i * d + x];
            if (fin) {
                float sv = 0.0f;
                for (int y = 0; y < e; y++) sv += Sf[x * e + y] * v[t * e + y];
                acc += wf * sv;
            }
            dk[t * d + x] = acc;
        }
        for (int y = 0; y < e; y++) {
            float acc = 0.0f;
            for (int64_t i = t; i < m; i++) acc += A[i * m + t] * g[i * e + y];
            if (fin) {
                float sk = 0.0f;
                for (int x = 0; x < d; x++) sk += Sf[x * e + y] * k[t * d + x];
                acc += wf * sk;
            }
            dv[t * e + y] = acc;
        }
    }
    for (int x = 0; ok && init && x < d; x++)
        for (int y = 0; y < e; y++) {
            float acc = fin ? expf(ld * (float)m) * Sf[x * e + y] : 0.0f;
            for (int64_t t = 0; t < m; t++) acc += expf(ld * (float)(t + 1)) * q[t * d + x] * g[t * e + y];
            ds0[x * e + y] = acc;
        }
    free(q); free(k); free(v); free(gbuf); free(A); free(P); free(S0); free(Sf);
    return ok ? 0 : -1;
}

/* Reference multiply-adds of a sub-problem of m rows of one head (what ak_la_forward_ref / ak_la_backward_ref
 * loop over; with a norm or gate the backward reference runs the forward one first); times the unit's heads. */
static double ref_cost(const problem *p, double m) {
    double de = (double)p->d * p->dv;
    double fwd = 0.5 * m * (m + 1.0) * (p->d + p->dv) + m * de * (p->state ? 2.0 : 1.0);
    double c = !p->bwd ? fwd : 1.5 * m * (m + 1.0) * de + (p->state ? m * de : 0.0) + (p->norm || p->gate ? fwd : 0.0);
    return c * lunit_heads(p);
}

/* Multiply-adds of the state before row `rows` of a unit (the suffix of a norm's backward, below). */
static double state_cost(const problem *p, double rows) { return rows * p->d * p->dv * lunit_heads(p); }

/* Largest m in [0, n] with cost(m) (times `subs` sub-problems) <= budget. */
static int64_t rows_within(const problem *p, int64_t n, int subs, double budget) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (subs * ref_cost(p, (double)mid) <= budget) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Compared outputs: forward O, state; backward dq, dk, dv, d_gate, dS0. */
enum { Q_O = 0, Q_STATE = 1, Q_DQ = 0, Q_DK = 1, Q_DV = 2, Q_DG = 3, Q_DS0 = 4, Q_COUNT = 5 };

/* Fold rows [0, m) of heads [0, nh) of a reference [nh][m][n] (f64) and naive [nh][m][n] (f32) into q against
 * the optimized output rows [r, r + m) of heads [h0, h0 + nh), batch index bi of view t. */
static void fold_rows(qerr *q, const ak_tensor *t, int64_t bi, int h0, int nh, int64_t r, int64_t m, int n,
                      const double *ref, const float *n32) {
    for (int hh = 0; hh < nh; hh++)
        for (int64_t i = 0; i < m; i++) {
            size_t row = (size_t)hh * (size_t)m + (size_t)i;
            for (int c = 0; c < n; c++)
                qerr_add(q, tensor_get(t, bi, h0 + hh, r + i, c), ref[row * n + c], n32[row * n + c]);
        }
}

/* The [d][e] states of heads [h0, h0 + nh) of sequence b of view t against the reference (f32) and the naive
 * [nh][d][e]. */
static void fold_state(qerr *q, const ak_tensor *t, int b, int h0, int nh, int d, int e, const float *ref, const float *n32) {
    for (int hh = 0; hh < nh; hh++)
        for (int x = 0; x < d; x++)
            for (int y = 0; y < e; y++) {
                size_t j = ((size_t)hh * d + x) * e + y;
                qerr_add(q, tensor_get(t, b, h0 + hh, x, y), ref[j], n32[j]);
            }
}

/* Per-unit scratch of check: reference outputs (f64, states f32) and naive fp32 outputs, for up to m rows of
 * nh heads; sr, sn: the initial states of a suffix (reference, naive). */
typedef struct lscratch {
    double *r[4];
    float *n[4], *rs, *ns, *sr, *sn;
} lscratch;

static void lscratch_free(lscratch *w) {
    for (int i = 0; i < 4; i++) {
        free(w->r[i]);
        free(w->n[i]);
    }
    free(w->rs); free(w->ns); free(w->sr); free(w->sn);
    memset(w, 0, sizeof(*w));
}

static int lscratch_alloc(const problem *p, int64_t m, lscratch *w) {
    size_t nh = (size_t)lunit_heads(p), rows = (size_t)(m > 0 ? m : 1) * nh;
    size_t dmax = (size_t)(p->d > p->dv ? p->d : p->dv), ns = (size_t)p->d * p->dv * nh;
    int ok = 1;
    memset(w, 0, sizeof(*w));
    for (int i = 0; i < 4; i++) {
        w->r[i] = xalloc(rows * dmax * sizeof(double));
        w->n[i] = xalloc(rows * dmax * sizeof(float));
        ok &= w->r[i] && w->n[i];
    }
    w->rs = xalloc(ns * sizeof(float));
    w->ns = xalloc(ns * sizeof(float));
    w->sr = xalloc(ns * sizeof(float));
    w->sn = xalloc(ns * sizeof(float));
    if (ok && w->rs && w->ns && w->sr && w->sn) return 0;
    lscratch_free(w);
    return -1;
}

/* Naive fp32 backward of sub-problem s (all its heads): with a norm or gate, the pre-norm output x by the naive
 * forward, then dx (and d_gate) per token, then the materialised gradients per head. 0 = ok. */
static int naive_bwd_unit(const lsub *s, lscratch *w) {
    const int d = s->desc.head_dim, e = s->desc.head_dim_v;
    const size_t me = (size_t)s->m * e, md = (size_t)s->m * d, de = (size_t)d * e;
    float *x = NULL, *gx = NULL, *S = NULL;
    int ok = 1;
    if (s->desc.norm != AK_LA_NORM_NONE || s->desc.has_gate) {
        x = xalloc((me ? me : 1) * s->nh * sizeof(float));
        gx = xalloc((me ? me : 1) * s->nh * sizeof(float));
        S = xalloc(de * s->nh * sizeof(float));
        ok = x && gx && S && naive_fwd32(s, x, S) == 0;
        if (ok) naive_norm_bwd32(s, x, gx, w->n[3]);
    }
    for (int hh = 0; ok && hh < s->nh; hh++)
        ok = naive_bwd32(s, hh, gx ? gx + hh * me : NULL, w->n[0] + hh * md, w->n[1] + hh * md, w->n[2] + hh * me,
                         w->ns + hh * de) == 0;
    free(x);
    free(gx);
    free(S);
    return ok ? 0 : -1;
}

/* Reference (on ctx) and naive fp32 of sub-problem s into w; prints the error. 0 = ok. */
static int lsub_run(ak_ctx *ctx, const lsub *s, lscratch *w, int b, int h0) {
    const int bwd = s->g.dq.data != NULL;
    ak_status st = bwd ? ak_la_backward_ref(ctx, &s->desc, &s->t, &s->g) : ak_la_forward_ref(ctx, &s->desc, &s->t);
    if (st != AK_OK) {
        printf("ERROR %s (sequence %d, head %d%s): %s\n", bwd ? "ak_la_backward_ref" : "ak_la_forward_ref", b, h0,
               s->nh > 1 ? " on" : "", error_text(ctx, st));
        return -1;
    }
    int rc;
    if (bwd) rc = naive_bwd_unit(s, w);
    else {
        rc = naive_fwd32(s, w->n[0], w->ns);
        if (rc == 0) naive_norm_fwd32(s, w->n[0]);
    }
    if (rc != 0) printf("ERROR out of memory in the naive fp32 baseline\n");
    return rc;
}

/* The states of heads [h0, h0 + nh) of sequence b before its row `rows` (the initial state, if any, then rows
 * [0, rows)): in double, rounded to f32 (sr: the reference's), and in float (sn: the naive baseline's). */
static void suffix_state(const linputs *in, int b, int h0, int64_t rows, float *sr, float *sn) {
    const problem *p = &in->p;
    const int nh = lunit_heads(p), d = p->d, e = p->dv;
    const int64_t bi = lbidx(in, b), r0 = loff(in, b);
    double *S = xalloc((size_t)d * e * sizeof(double));
    for (int hh = 0; S && hh < nh; hh++) {
        const int h = h0 + hh;
        const double lam = exp((double)in->log_decay[h]);   /* zeros without decay: lambda = 1 */
        const float lamf = expf(in->log_decay[h]);
        float *Sn = sn + (size_t)hh * d * e;
        for (int x = 0; x < d; x++)
            for (int y = 0; y < e; y++) {
                double v = p->state ? tensor_get(&in->t.state_in, b, h, x, y) : 0.0;
                S[x * e + y] = v;
                Sn[x * e + y] = (float)v;
            }
        for (int64_t i = 0; i < rows; i++)
            for (int x = 0; x < d; x++) {
                const double k = tensor_get(&in->t.k, bi, h, r0 + i, x);
                for (int y = 0; y < e; y++) {
                    const double v = tensor_get(&in->t.v, bi, h, r0 + i, y);
                    S[x * e + y] = lam * S[x * e + y] + k * v;
                    Sn[x * e + y] = lamf * Sn[x * e + y] + (float)k * (float)v;
                }
            }
        for (size_t j = 0; j < (size_t)d * e; j++) sr[(size_t)hh * d * e + j] = (float)S[j];
    }
    free(S);
}

/*
 * Compare unit (b, heads from h0): whole (m = n) or, when m < n, the exact parts described at the top of this
 * file (dkdv = 0: the part's dK, dV are not compared). Folds into q. 0 = ok (else the error is printed).
 */
static int check_lpair(ak_ctx *ctx, const linputs *in, int b, int h0, int64_t m, int dkdv, qerr *q) {
    const problem *p = &in->p;
    const int d = p->d, e = p->dv, nh = lunit_heads(p);
    const int64_t n = llen(in, b), r0 = loff(in, b), bi = lbidx(in, b);
    const int whole = m == n;
    lscratch w;
    lsub s;
    if (lscratch_alloc(p, m, &w) != 0) {
        printf("ERROR out of memory\n");
        return -1;
    }
    int rc = -1;
    if (!p->bwd) {
        lsub_make(in, b, h0, 0, m, 1, whole, w.r, w.rs, NULL, NULL, &s);
        if (lsub_run(ctx, &s, &w, b, h0) != 0) goto done;
        fold_rows(&q[Q_O], &in->t.o, bi, h0, nh, r0, m, e, w.r[0], w.n[0]);
        if (p->state && whole) fold_state(&q[Q_STATE], &in->t.state_out, b, h0, nh, d, e, w.rs, w.ns);
    } else {
        /* dq, d_gate (and, whole, everything) from the prefix [0, m) */
        lsub_make(in, b, h0, 0, m, 1, whole, w.r, w.rs, NULL, NULL, &s);
        if (lsub_run(ctx, &s, &w, b, h0) != 0) goto done;
        fold_rows(&q[Q_DQ], &in->g.dq, bi, h0, nh, r0, m, d, w.r[0], w.n[0]);
        if (p->gate) fold_rows(&q[Q_DG], &in->g.d_gate, bi, h0, nh, r0, m, e, w.r[3], w.n[3]);
        if (whole && p->state) fold_state(&q[Q_DS0], &in->g.d_state_in, b, h0, nh, d, e, w.rs, w.ns);
        if (!whole && dkdv) {   /* dk, dv from the suffix [n - m, n), without the initial state (norm: with the state before it) */
            if (p->norm != AK_LA_NORM_NONE) suffix_state(in, b, h0, n - m, w.sr, w.sn);
            lsub_make(in, b, h0, n - m, m, 0, 1, w.r, w.rs, p->norm != AK_LA_NORM_NONE ? w.sr : NULL, w.sn, &s);
            if (lsub_run(ctx, &s, &w, b, h0) != 0) goto done;
        }
        if (whole || dkdv) {
            fold_rows(&q[Q_DK], &in->g.dk, bi, h0, nh, r0 + n - m, m, d, w.r[1], w.n[1]);
            fold_rows(&q[Q_DV], &in->g.dv, bi, h0, nh, r0 + n - m, m, e, w.r[2], w.n[2]);
        }
    }
    rc = 0;
done:
    lscratch_free(&w);
    return rc;
}

/* Element i of a buffer of dtype t (f32, bf16, f16) as double. */
static double elem(const void *buf, ak_dtype t, size_t i) {
    if (t == AK_F32) return ((const float *)buf)[i];
    return t == AK_BF16 ? ak_bf16_to_f32(((const uint16_t *)buf)[i]) : ak_f16_to_f32(((const uint16_t *)buf)[i]);
}

/* NaN elements left in the outputs (ones the call did not write). */
static size_t lcount_nan(const linputs *in) {
    void *buf[LOUT_MAX];
    size_t bytes[LOUT_MAX], n = 0;
    const char *name[LOUT_MAX];
    ak_dtype dt[LOUT_MAX];
    int k = louts(in, buf, bytes, name, dt);
    for (int i = 0; i < k; i++)
        for (size_t j = 0; j < bytes[i] / ak_dtype_size(dt[i]); j++) n += isnan(elem(buf[i], dt[i], j)) != 0;
    return n;
}

/* Check one linear problem: the optimized call on the whole problem, reference and naive on chosen units. */
int linear_check_one(ak_ctx *ctx, const options *o, const problem *p) {
    char name[512], err[256], extra[400];
    problem_format(p, name, sizeof(name));
    printf("%-52s ", name);
    fflush(stdout);
    linputs in;
    if (linputs_create(ctx, p, o->seed, &in, err, sizeof(err)) != 0) { printf("ERROR %s\n", err); return 1; }
    const int nh = lunit_heads(p), per_seq = p->Hq / nh, norm = p->norm != AK_LA_NORM_NONE;
    const char *units = norm ? "sequences (all heads: srms)" : "(seq, head) pairs";
    int n_pairs = p->B * per_seq, rc = 1;
    int *pairs = malloc(sizeof(int) * (size_t)n_pairs);
    ak_status st = pairs ? lrun(ctx, &in) : AK_ERR_OUT_OF_MEMORY;
    if (st != AK_OK) {
        printf("ERROR %s\n", error_text(ctx, st));
        goto done;
    }
    qerr q[Q_COUNT], items[Q_COUNT];
    memset(q, 0, sizeof(q));
    if (p->bwd) {
        q[Q_DQ].name = "dq"; q[Q_DK].name = "dk"; q[Q_DV].name = "dv"; q[Q_DG].name = "d_gate"; q[Q_DS0].name = "dS0";
        q[Q_DQ].dt = q[Q_DK].dt = q[Q_DV].dt = q[Q_DG].dt = p->dt_q;
        q[Q_DS0].dt = AK_F32;
    } else {
        q[Q_STATE].name = "state";
        q[Q_O].dt = p->dt_o;
        q[Q_STATE].dt = AK_F32;
    }
    pair_order(n_pairs, o->seed, pairs);
    double used = 0.0;
    int checked = 0, part_b = -1, part_dkdv = 1;
    int64_t part_m = 0, part_n = 0;
    for (int i = 0; i < n_pairs; i++) {
        int b = pairs[i] / per_seq, h0 = (pairs[i] % per_seq) * nh, dkdv = 1;
        int64_t n = llen(&in, b), m = n;
        double c = ref_cost(p, (double)n);
        if (!o->full_check && used + c > (double)LINEAR_REF_CAP) {
            if (part_b >= 0) continue;   /* one part at most */
            /* a part of a backward unit takes two references (prefix, suffix); with a norm the suffix also
             * needs the state before it, or its dk/dv are left out */
            double avail = (double)LINEAR_REF_CAP - used, sc = p->bwd && norm ? state_cost(p, (double)n) : 0.0;
            if (!p->bwd) m = rows_within(p, n, 1, avail);
            else if (!norm || avail - sc >= 2.0 * ref_cost(p, 1.0)) m = rows_within(p, n, 2, avail - sc);
            else {
                dkdv = 0;
                m = rows_within(p, n, 1, avail);
            }
            if (m < 1 && checked > 0) continue;
            if (m < 1) m = n > 0 ? 1 : 0;
            if (m < n) {
                part_b = b;
                part_m = m;
                part_n = n;
                part_dkdv = dkdv;
                c = (p->bwd && dkdv ? 2 : 1) * ref_cost(p, (double)m) + (dkdv && sc > 0 ? state_cost(p, (double)(n - m)) : 0.0);
            } else {
                dkdv = 1;
            }
        }
        if (check_lpair(ctx, &in, b, h0, m, dkdv, q) != 0) goto done;
        used += c;
        checked++;
    }
    size_t nan = lcount_nan(&in), len = 0;
    extra[0] = '\0';
    if (checked < n_pairs || part_b >= 0)
        len += (size_t)snprintf(extra + len, sizeof(extra) - len, "  | %d of %d %s", checked, n_pairs, units);
    if (part_b >= 0 && !p->bwd)
        len += (size_t)snprintf(extra + len, sizeof(extra) - len, ", one on rows [0, %lld) of %lld%s", (long long)part_m,
                                (long long)part_n, p->state ? " (no final state)" : "");
    if (part_b >= 0 && p->bwd && part_dkdv)
        len += (size_t)snprintf(extra + len, sizeof(extra) - len, ", one on dq%s rows [0, %lld), dk/dv rows [%lld, %lld)%s",
                                p->gate ? "/d_gate" : "", (long long)part_m, (long long)(part_n - part_m),
                                (long long)part_n, p->state ? " (no dS0)" : "");
    if (part_b >= 0 && p->bwd && !part_dkdv)
        len += (size_t)snprintf(extra + len, sizeof(extra) - len, ", one on dq%s rows [0, %lld) of %lld (no dk/dv: the state "
                                "before their suffix is over the cap%s)", p->gate ? "/d_gate" : "", (long long)part_m,
                                (long long)part_n, p->state ? "; no dS0" : "");
    if (checked < n_pairs || part_b >= 0) len += (size_t)snprintf(extra + len, sizeof(extra) - len, " (--full: all)");
    if (nan) snprintf(extra + len, sizeof(extra) - len, "  | %zu outputs NaN (unwritten)", nan);
    /* the final state / dS0 only when some unit was compared whole; dk/dv unless only a part without them was */
    int whole = checked > (part_b >= 0), n_items = 0;
    if (!p->bwd) {
        items[n_items++] = q[Q_O];
        if (p->state && whole) items[n_items++] = q[Q_STATE];
    } else {
        items[n_items++] = q[Q_DQ];
        if (whole || part_dkdv) {
            items[n_items++] = q[Q_DK];
            items[n_items++] = q[Q_DV];
        }
        if (p->gate) items[n_items++] = q[Q_DG];
        if (p->state && whole) items[n_items++] = q[Q_DS0];
    }
    rc = report_items(lkernel(p), items, n_items, nan != 0, extra);
done:
    free(pairs);
    linputs_free(&in);
    return rc;
}

/* ---- bitwise ---- */

/* The problem's call on ctx with poisoned outputs, the outputs copied to out (concatenated). 0 = ok. */
static int lrun_copy(ak_ctx *ctx, linputs *in, unsigned char *out) {
    void *buf[LOUT_MAX];
    size_t bytes[LOUT_MAX];
    const char *name[LOUT_MAX];
    ak_dtype dt[LOUT_MAX];
    int k = louts(in, buf, bytes, name, dt);
    linputs_poison(in);
    ak_status st = lrun(ctx, in);
    if (st != AK_OK) {
        printf("ERROR %s\n", error_text(ctx, st));
        return -1;
    }
    for (int i = 0; i < k; i++) {
        memcpy(out, buf[i], bytes[i]);
        out += bytes[i];
    }
    return 0;
}

/* Compare two concatenated results output by output; prints what differs. 0 = identical. */
static int lsame_bits(const linputs *in, const char *what, const unsigned char *a, const unsigned char *b) {
    void *buf[LOUT_MAX];
    size_t bytes[LOUT_MAX], off = 0;
    const char *name[LOUT_MAX];
    ak_dtype dt[LOUT_MAX];
    int k = louts(in, buf, bytes, name, dt), differ = 0;
    for (int i = 0; i < k; i++) {
        long long first;
        size_t nd = count_diff(a + off, b + off, bytes[i], &first);
        if (nd) {
            printf("%s%s: %s differs in %zu bytes (first at element %lld of the buffer)", differ ? ", " : "\n      ", what,
                   name[i], nd, first / (long long)ak_dtype_size(dt[i]));
            differ = 1;
        }
        off += bytes[i];
    }
    return differ;
}

/* Bitwise check of one linear problem: twice on ctx_n (N threads), once on ctx_1 (1 or 2 threads). */
int linear_bitwise_one(ak_ctx *ctx_n, ak_ctx *ctx_1, const options *o, const problem *p) {
    char name[512], err[256];
    problem_format(p, name, sizeof(name));
    printf("%-52s ", name);
    fflush(stdout);
    linputs in;
    if (linputs_create(ctx_n, p, o->seed, &in, err, sizeof(err)) != 0) { printf("ERROR %s\n", err); return 1; }
    void *buf[LOUT_MAX];
    size_t bytes[LOUT_MAX], total = 0;
    const char *bname[LOUT_MAX];
    ak_dtype dt[LOUT_MAX];
    int k = louts(&in, buf, bytes, bname, dt), rc = 1;
    for (int i = 0; i < k; i++) total += bytes[i];
    unsigned char *ra = xalloc(total), *rb = xalloc(total), *rc1 = xalloc(total);
    if (!ra || !rb || !rc1) printf("ERROR out of memory\n");
    else if (lrun_copy(ctx_n, &in, ra) == 0 && lrun_copy(ctx_n, &in, rb) == 0 && lrun_copy(ctx_1, &in, rc1) == 0) {
        char what[64];
        int tn = ak_ctx_get_num_threads(ctx_n), t1 = ak_ctx_get_num_threads(ctx_1);
        printf("%-28s", lkernel(p));
        snprintf(what, sizeof(what), "run 1 vs run 2 (%d threads)", tn);
        int d = lsame_bits(&in, what, ra, rb);
        snprintf(what, sizeof(what), "%d vs %d threads", tn, t1);
        d |= lsame_bits(&in, what, ra, rc1);
        printf("%s%s (2 runs x %d threads, 1 run x %d)\n", d ? "\n      " : " ", d ? "DIFFER" : "IDENTICAL", tn, t1);
        rc = d;
    }
    free(ra);
    free(rb);
    free(rc1);
    linputs_free(&in);
    return rc;
}

/* ---- bench ---- */

/* Useful FLOPs of the problem's call: per head and token, with B the block (chunked forms); `srms` and `gate`
 * (O(H e) per token) are not counted:
 *   chunked forward 2 (B (d + e) / 2 + 2 d e)     (intra: about B/2 keys per query for q.k and p.v;
 *                                                  inter and the state update: d e each)
 *   recurrent       2 (2 d e)                     (state update, o = S^T q)
 *   backward        2 (B (3d + 2e) / 2 + 5 d e)   (intra: q.k, g.v, dP K, dP^T Q', A^T G; inter: S g, R v,
 *                                                  R^T k and the updates of S and R) */
static double lflops(const linputs *in, double *tokens) {
    const problem *p = &in->p;
    double B = p->blk ? p->blk : LINEAR_AUTO_BLOCK, d = p->d, e = p->dv;
    double per = p->bwd ? 2.0 * (B * (3.0 * d + 2.0 * e) / 2.0 + 5.0 * d * e)
               : p->rec ? 2.0 * (2.0 * d * e)
                        : 2.0 * (B * (d + e) / 2.0 + 2.0 * d * e);
    *tokens = (double)in->Bt * (double)in->Tt;
    return per * *tokens * p->Hq;
}

static void make_lrow(bench_row *r, const bench_env *env, const options *o, const linputs *in, const timing *t) {
    static const char *decay[] = {"official", "minimax", "paper"};
    const problem *p = &in->p;
    char name[512], x[64];
    double tokens, flops = lflops(in, &tokens), sec = t->median_ms * 1e-3;
    double gflops = flops / sec * 1e-9, ceil = env->have_peak ? env->peak.fma_f32_gflops : 0.0;
    int64_t lmin = INT64_MAX, lmax = 0;
    for (int b = 0; b < p->B; b++) {
        int64_t l = llen(in, b);
        if (l < lmin) lmin = l;
        if (l > lmax) lmax = l;
    }
    r->n = 0;
    problem_format(p, name, sizeof(name));
    add_str(r, "problem", name);
    add_int(r, "batch", p->B);
    add_int(r, "heads", p->Hq);
    add_int(r, "seqlen", p->Lq);
    add_int(r, "seqlen_min", lmin);
    add_int(r, "seqlen_max", lmax);
    add_num(r, "tokens", tokens);
    add_int(r, "head_dim", p->d);
    add_int(r, "head_dim_v", p->dv);
    add_int(r, "block", p->rec ? 0 : p->blk ? p->blk : LINEAR_AUTO_BLOCK);
    format_float(in->desc.scale, x, sizeof(x));
    add_num(r, "scale", strtod(x, NULL));
    add_str(r, "dtype_qkv", ak_dtype_name(p->dt_q));
    add_str(r, "dtype_o", ak_dtype_name(p->dt_o));
    add_str(r, "decay", p->decay >= 0 && p->decay <= 2 ? decay[p->decay] : "none");
    add_int(r, "state", p->state);
    add_int(r, "ragged", p->ragged);
    add_str(r, "form", p->rec ? "recurrent" : "chunked");
    add_str(r, "pass", p->bwd ? "backward" : "forward");
    add_str(r, "norm", p->norm == AK_LA_NORM_SRMS ? "srms" : "none");
    add_int(r, "gate", p->gate);
    add_str(r, "build_commit", env->commit);
    add_str(r, "cpu", env->cpu);
    add_str(r, "isa", env->isa);
    add_int(r, "threads", env->threads);
    add_str(r, "kernel", t->kernel);
    add_int(r, "reps", o->reps);
    add_int(r, "warmup", o->warmup);
    add_num(r, "median_ms", t->median_ms);
    add_num(r, "min_ms", t->min_ms);
    add_num(r, "mean_ms", t->mean_ms);
    add_num(r, "stddev_ms", t->stddev_ms);
    add_num(r, "ms_per_token", tokens > 0 ? t->median_ms / tokens : NAN);
    add_num(r, "tokens_per_s_per_head", tokens * p->Hq / sec);
    add_num(r, "gflop", flops * 1e-9);
    add_num(r, "gflops", gflops);
    add_str(r, "ceiling", env->have_peak ? "fma_f32" : "none");
    add_num(r, "ceiling_gflops", env->have_peak ? ceil : NAN);
    add_num(r, "pct_peak", ceil > 0 ? 100.0 * gflops / ceil : NAN);
    add_num(r, "peak_fma_f32_gflops", env->have_peak ? env->peak.fma_f32_gflops : NAN);
    add_num(r, "peak_dot_bf16_gflops", env->have_peak ? env->peak.dot_bf16_gflops : NAN);
    add_num(r, "peak_dram_gbs", env->have_peak ? env->peak.dram_read_gbs : NAN);
}

static void human_lheader(int name_w) {
    printf("%-*s  %-16s %10s %10s %8s %10s %12s %9s %7s\n", name_w, "problem", "kernel", "median ms", "min ms",
           "stddev", "ms/token", "Mtok/s/head", "GFLOP/s", "% peak");
}

static void human_lrow(const bench_env *env, const linputs *in, const timing *t, int name_w) {
    char name[512], pct[32];
    double tokens, flops = lflops(in, &tokens), sec = t->median_ms * 1e-3, gflops = flops / sec * 1e-9;
    problem_format(&in->p, name, sizeof(name));
    if (env->have_peak && env->peak.fma_f32_gflops > 0) snprintf(pct, sizeof(pct), "%.1f%%", 100.0 * gflops / env->peak.fma_f32_gflops);
    else snprintf(pct, sizeof(pct), "-");
    printf("%-*s  %-16s %10.3f %10.3f %8.3f %10.3e %12.3f %9.1f %7s\n", name_w, name, t->kernel, t->median_ms,
           t->min_ms, t->stddev_ms, tokens > 0 ? t->median_ms / tokens : 0.0, tokens * in->p.Hq / sec * 1e-6, gflops, pct);
    fflush(stdout);
}

/* Bench one linear problem: `warmup` untimed calls, `reps` timed ones; a row in the chosen format. 0 = ok. */
int bench_linear(ak_ctx *ctx, const options *o, const bench_env *env, const problem *p, int name_w, int *rows,
                 int *last_kind) {
    static bench_row r;
    linputs in;
    timing t;
    char err[256], name[512];
    memset(&t, 0, sizeof(t));
    problem_format(p, name, sizeof(name));
    if (linputs_create(ctx, p, o->seed, &in, err, sizeof(err)) != 0) {
        fprintf(stderr, "attnkit: %s: %s\n", name, err);
        return -1;
    }
    double *ms = malloc(sizeof(double) * (size_t)o->reps);
    ak_status st = ms ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    for (int w = 0; st == AK_OK && w < o->warmup; w++) st = lrun(ctx, &in);
    for (int i = 0; st == AK_OK && i < o->reps; i++) {
        double t0 = now_seconds();
        st = lrun(ctx, &in);
        ms[i] = (now_seconds() - t0) * 1e3;
    }
    if (st != AK_OK) {
        fprintf(stderr, "attnkit: %s\nattnkit: bench %s failed\n", error_text(ctx, st), name);
    } else {
        double tokens;
        time_stats(ms, o->reps, &t);
        t.flops = lflops(&in, &tokens);
        snprintf(t.kernel, sizeof(t.kernel), "%s", lkernel(p));
        if (o->out == OUT_HUMAN) {
            if (*last_kind != 2) human_lheader(name_w);
            human_lrow(env, &in, &t, name_w);
        } else {
            make_lrow(&r, env, o, &in, &t);
            if (*last_kind != 2) write_header(stdout, &r, o->out, *rows == 0);
            write_row(stdout, &r, o->out, *rows);
            ++*rows;
        }
        *last_kind = 2;
    }
    free(ms);
    linputs_free(&in);
    return st == AK_OK ? 0 : -1;
}
