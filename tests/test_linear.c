/*
 * test_linear.c — Lightning Attention (causal linear attention with per-head decay, TNL):
 * ak_la_forward (chunked, fp32), ak_la_recurrent (token by token, fp32), ak_la_forward_ref (double)
 * and ak_la_log_decay, written only from the contract in include/attnkit.h and
 * the spec linear-arch-analysis.md §1.
 *
 * Oracles (in this file, sharing no code with the library):
 *  - naive64: the O(T^2) masked left product in double, o_t = sum_{s<=t} lambda^(t-s) (c q_t . k_s) v_s
 *    + lambda^(t+1) S0^T (c q_t), lambda^m = exp(log_decay * m); the final state by the recurrence
 *    S = lambda S + k v^T in double. ak_la_forward_ref (AK_F64 output) must agree with it to
 *    1e-12 relative (relative to the largest sum of |terms| of an element; the state, stored as f32 by
 *    the reference, to half an f32 ulp plus that).
 *  - naive32: the recurrence in float (S in float, lambda = expf(log_decay), S = lambda*S + k v^T,
 *    o_t = S^T (c q_t) accumulated in float in index order, rounded to dtype_o). It is the baseline of
 *    the accuracy rule of tests/README.md: for every output tensor (O and the final state)
 *        err(x) = max|x - ref64|,   pass iff err(lib) <= 2 * err(naive32) + floor,
 *    floor = 1e-6 * max(1, max|ref|) for f32, 2 ulp of the output dtype at max|ref| for bf16 / f16.
 *    ref64 is ak_la_forward_ref's f64 output (O) and naive64's double state (checked against each other).
 *  - naive64r: the recurrence in double (O(T d e)), the oracle of the long (T = 1e5) group.
 *
 * Every run gets freshly NaN-poisoned outputs (O, state_out); the memory around every output view must
 * stay poisoned; inputs (including view padding, state_in / log_decay when their flag is off) are NaN
 * wherever they must not be read; inputs must be unmodified; ak_la_forward and ak_la_recurrent on 1 and
 * 3 threads must give identical bytes; state_out is left untouched when return_final_state = 0.
 *
 * Groups (test_linear <group> [N]): grid (spec §1.10 test 1), sweep (random: AK_SWEEP_N cases from
 * AK_SWEEP_FIRST, seed = case index; AK_SWEEP_VERBOSE=1), split (§1.10 tests 2 and 4), ragged
 * (cu_seqlens == separate runs), long (T = 1e5 and extreme decays), decay (ak_la_log_decay, §1.2),
 * invalid (every invalid input, one at a time, with its status). "all" runs every group.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define MAXH 8
#define MAXSEQ 8

static int g_verbose = 0;
static int g_quick = 0; /* sanitizer builds: fewer / smaller cases */
static ak_ctx *g_ctx = NULL;  /* reference and default runs */
static ak_ctx *g_ctx1 = NULL; /* 1 thread */
static ak_ctx *g_ctx3 = NULL; /* 3 threads */

typedef ak_status (*la_fn)(ak_ctx *, const ak_la_desc *, const ak_la_tensors *);

/* ---- A problem --------------------------------------------------------------------------------- */

typedef struct lcase {
    int B, H, T, d, e;       /* B = sequences; T = length of each (dense) */
    int ragged;              /* cu_seqlens: tensors [1][H][cu[B]][.] */
    int32_t cu[MAXSEQ + 1];
    int e_zero;              /* pass head_dim_v = 0 (then e must equal d) */
    ak_dtype dq, dout;
    float scale;
    int has_decay, state_in, ret_state, inplace; /* inplace: state_out is the very view of state_in */
    int block;
    float log_decay[MAXH];
    tlayout lq, lk, lv, lo, ls, lld;
    double amp, mean;        /* inputs: mean + amp * U(-1, 1) (q, k, v); state_in: amp * U(-1, 1) */
    uint64_t seed;
} lcase;

static void lcase_default(lcase *c) {
    memset(c, 0, sizeof *c);
    c->B = 1, c->H = 1, c->T = 1, c->d = 4, c->e = 4;
    c->dq = c->dout = AK_F32;
    c->scale = 1.0f, c->ret_state = 1;
    c->amp = 1.0;
    c->lq = c->lk = c->lv = c->lo = c->ls = c->lld = LAY_CONTIG;
}

static int lcase_nb(const lcase *c) { return c->ragged ? 1 : c->B; }
static int lcase_rows(const lcase *c) { return c->ragged ? c->cu[c->B] : c->T; }
static int seq_len(const lcase *c, int b) { return c->ragged ? c->cu[b + 1] - c->cu[b] : c->T; }
static int seq_off(const lcase *c, int b) { return c->ragged ? c->cu[b] : 0; }
static int seq_bidx(const lcase *c, int b) { return c->ragged ? 0 : b; }

static void lcase_str(const lcase *c, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "b%d_h%d_", c->B, c->H);
    if (c->ragged) {
        k += (size_t)snprintf(buf + k, n - k, "cu[");
        for (int b = 0; b <= c->B && k < n; b++)
            k += (size_t)snprintf(buf + k, n - k, b ? ",%d" : "%d", c->cu[b]);
        k += (size_t)snprintf(buf + k, n - k, "]");
    } else {
        k += (size_t)snprintf(buf + k, n - k, "t%d", c->T);
    }
    if (k < n)
        k += (size_t)snprintf(buf + k, n - k, "_d%d_e%d%s_%s_o%s_scale%g_block%d%s%s%s lay q/k/v/o/s %s/%s/%s/%s/%s",
                              c->d, c->e, c->e_zero ? "(0)" : "", tu_dtype_short(c->dq), tu_dtype_short(c->dout),
                              (double)c->scale, c->block, c->state_in ? "_h0" : "", c->ret_state ? "_hT" : "",
                              c->inplace ? "(inplace)" : "", tlayout_name(c->lq), tlayout_name(c->lk),
                              tlayout_name(c->lv), tlayout_name(c->lo), tlayout_name(c->ls));
    if (c->has_decay && k < n) {
        k += (size_t)snprintf(buf + k, n - k, " log_decay[");
        for (int h = 0; h < c->H && k < n; h++)
            k += (size_t)snprintf(buf + k, n - k, h ? ",%.9g" : "%.9g", (double)c->log_decay[h]);
        if (k < n)
            snprintf(buf + k, n - k, "]");
    }
}

typedef struct lprob {
    lcase c;
    int nb, rows;           /* tensor dims 0 and 2 */
    tbuf q, k, v, ld, si;   /* inputs (ld, si poisoned and never filled when their flag is off) */
    double *Q, *K, *V;      /* dense copies [nb][H][rows][d|e] of what the tensors hold */
    double *S0;             /* [B][H][d][e] (zeros without state_in) */
    double LD[MAXH];        /* log_decay as the library reads it (f32), 0 without decay */
} lprob;

static int64_t idx4(int64_t n1, int64_t n2, int64_t n3, int64_t a, int64_t b, int64_t c, int64_t d) {
    return ((a * n1 + b) * n2 + c) * n3 + d;
}

static void fill_random(tbuf *b, rng *r, double amp, double mean) {
    int64_t *s = b->t.shape;
    for (int64_t a = 0; a < s[0]; a++)
        for (int64_t h = 0; h < s[1]; h++)
            for (int64_t i = 0; i < s[2]; i++)
                for (int64_t j = 0; j < s[3]; j++)
                    ten_set4(&b->t, a, h, i, j, mean + amp * rng_range(r, -1.0, 1.0));
}

/* Write the dense S0 into a state view. */
static void put_state(const lprob *p, const tbuf *s) {
    const lcase *c = &p->c;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < c->d; i++)
                for (int j = 0; j < c->e; j++)
                    ten_set4(&s->t, b, h, i, j, p->S0[idx4(c->H, c->d, c->e, b, h, i, j)]);
}

static double *dense_of(const tbuf *b) {
    double *x = (double *)malloc((size_t)(tbuf_numel(b) + 1) * sizeof(double));
    if (x)
        tbuf_to_f64(b, x);
    return x;
}

static int lprob_create(lprob *p, const lcase *c) {
    memset(p, 0, sizeof *p);
    p->c = *c;
    p->nb = lcase_nb(c), p->rows = lcase_rows(c);
    rng r = rng_seed(c->seed * 7919u + 17u);
    int64_t sq[4] = {p->nb, c->H, p->rows, c->d}, sv[4] = {p->nb, c->H, p->rows, c->e};
    int64_t ss[4] = {c->B, c->H, c->d, c->e}, sh[1] = {c->H};
    if (tbuf_make(&p->q, c->dq, 4, sq, c->lq, &r) || tbuf_make(&p->k, c->dq, 4, sq, c->lk, &r) ||
        tbuf_make(&p->v, c->dq, 4, sv, c->lv, &r) || tbuf_make(&p->ld, AK_F32, 1, sh, c->lld, &r) ||
        tbuf_make(&p->si, AK_F32, 4, ss, c->ls == LAY_BCAST0 ? LAY_CONTIG : c->ls, &r))
        return -1;
    fill_random(&p->q, &r, c->amp, c->mean);
    fill_random(&p->k, &r, c->amp, c->mean);
    fill_random(&p->v, &r, c->amp, c->mean);
    p->Q = dense_of(&p->q), p->K = dense_of(&p->k), p->V = dense_of(&p->v);
    p->S0 = (double *)calloc((size_t)c->B * c->H * c->d * c->e + 1, sizeof(double));
    if (!p->Q || !p->K || !p->V || !p->S0)
        return -1;
    for (int h = 0; h < c->H; h++) {
        if (c->has_decay) {
            int64_t ih = h;
            ten_set(&p->ld.t, &ih, (double)c->log_decay[h]);
            p->LD[h] = ten_get(&p->ld.t, &ih);
        }
    }
    if (c->state_in) {
        int64_t n = (int64_t)c->B * c->H * c->d * c->e;
        for (int64_t i = 0; i < n; i++)
            p->S0[i] = (double)(float)(c->amp * rng_range(&r, -1.0, 1.0));
        put_state(p, &p->si);
    }
    return 0;
}

static void lprob_free(lprob *p) {
    tbuf_free(&p->q), tbuf_free(&p->k), tbuf_free(&p->v), tbuf_free(&p->ld), tbuf_free(&p->si);
    free(p->Q), free(p->K), free(p->V), free(p->S0);
    memset(p, 0, sizeof *p);
}

static ak_la_desc lprob_desc(const lprob *p) {
    const lcase *c = &p->c;
    ak_la_desc d;
    ak_la_desc_init(&d);
    d.batch = c->B, d.num_heads = c->H, d.seqlen = c->ragged ? 0 : c->T;
    d.head_dim = c->d, d.head_dim_v = c->e_zero ? 0 : c->e;
    d.dtype_qkv = c->dq, d.dtype_o = c->dout, d.scale = c->scale;
    d.has_decay = c->has_decay, d.has_initial_state = c->state_in, d.return_final_state = c->ret_state;
    d.block = c->block;
    d.cu_seqlens = c->ragged ? p->c.cu : NULL;
    return d;
}

static ak_la_tensors lprob_tensors(const lprob *p, const ak_tensor *o, const ak_tensor *sin, const ak_tensor *sout) {
    ak_la_tensors t;
    ak_la_tensors_init(&t);
    t.q = p->q.t, t.k = p->k.t, t.v = p->v.t, t.o = *o, t.log_decay = p->ld.t;
    t.state_in = sin ? *sin : p->si.t;
    if (sout)
        t.state_out = *sout;
    return t;
}

/* ---- Independent references --------------------------------------------------------------------- */

/* lambda^m = exp(log_decay * m), m >= 0 (lambda^0 = 1 also for log_decay = -inf). */
static double powd(double ld, int64_t m) { return m == 0 ? 1.0 : exp(ld * (double)m); }

typedef struct refout {
    double *O;     /* [nb][H][rows][e] */
    double *S;     /* [B][H][d][e] */
    double o_abs;  /* largest sum of |terms| of an O element */
    double s_abs;  /* largest sum of |terms| of a state element */
} refout;

static int refout_alloc(refout *r, const lprob *p) {
    const lcase *c = &p->c;
    memset(r, 0, sizeof *r);
    r->O = (double *)calloc((size_t)p->nb * c->H * p->rows * c->e + 1, sizeof(double));
    r->S = (double *)calloc((size_t)c->B * c->H * c->d * c->e + 1, sizeof(double));
    return r->O && r->S ? 0 : -1;
}
static void refout_free(refout *r) { free(r->O), free(r->S); }

/* The final state of every (sequence, head) by the recurrence in double (shared by naive64/naive64r). */
static void state64(const lprob *p, int b, int h, double *S, double *SA) {
    const lcase *c = &p->c;
    const int d = c->d, e = c->e, n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bidx(c, b);
    const double lam = powd(p->LD[h], 1);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < e; j++)
            S[i * e + j] = p->S0[idx4(c->H, d, e, b, h, i, j)], SA[i * e + j] = fabs(S[i * e + j]);
    for (int t = 0; t < n; t++) {
        const double *k = p->K + idx4(c->H, p->rows, d, bi, h, r0 + t, 0);
        const double *v = p->V + idx4(c->H, p->rows, e, bi, h, r0 + t, 0);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < e; j++) {
                S[i * e + j] = lam * S[i * e + j] + k[i] * v[j];
                SA[i * e + j] = lam * SA[i * e + j] + fabs(k[i] * v[j]);
            }
    }
}

/* recurrent = 0: the masked left product (O(T^2)); 1: o_t = S_t^T (c q_t) by the recurrence (O(T d e)). */
static int naive64(const lprob *p, refout *r, int recurrent) {
    const lcase *c = &p->c;
    const int d = c->d, e = c->e;
    double *cq = (double *)malloc(sizeof(double) * (size_t)d), *acc = (double *)malloc(sizeof(double) * (size_t)e);
    double *ab = (double *)malloc(sizeof(double) * (size_t)e);
    double *S = (double *)malloc(sizeof(double) * (size_t)d * e), *SA = (double *)malloc(sizeof(double) * (size_t)d * e);
    if (!cq || !acc || !ab || !S || !SA) {
        free(cq), free(acc), free(ab), free(S), free(SA);
        return -1;
    }
    r->o_abs = r->s_abs = 0;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++) {
            const int n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bidx(c, b);
            const double ld = p->LD[h], lam = powd(ld, 1);
            const double *S0 = p->S0 + idx4(c->H, d, e, b, h, 0, 0);
            if (recurrent)
                for (int i = 0; i < d * e; i++)
                    S[i] = S0[i], SA[i] = fabs(S0[i]);
            for (int t = 0; t < n; t++) {
                const double *q = p->Q + idx4(c->H, p->rows, d, bi, h, r0 + t, 0);
                for (int i = 0; i < d; i++)
                    cq[i] = (double)c->scale * q[i];
                for (int j = 0; j < e; j++)
                    acc[j] = ab[j] = 0.0;
                if (recurrent) {
                    const double *k = p->K + idx4(c->H, p->rows, d, bi, h, r0 + t, 0);
                    const double *v = p->V + idx4(c->H, p->rows, e, bi, h, r0 + t, 0);
                    for (int i = 0; i < d; i++)
                        for (int j = 0; j < e; j++) {
                            S[i * e + j] = lam * S[i * e + j] + k[i] * v[j];
                            SA[i * e + j] = lam * SA[i * e + j] + fabs(k[i] * v[j]);
                        }
                    for (int i = 0; i < d; i++)
                        for (int j = 0; j < e; j++)
                            acc[j] += S[i * e + j] * cq[i], ab[j] += SA[i * e + j] * fabs(cq[i]);
                } else {
                    for (int s = 0; s <= t; s++) {
                        const double *k = p->K + idx4(c->H, p->rows, d, bi, h, r0 + s, 0);
                        const double *v = p->V + idx4(c->H, p->rows, e, bi, h, r0 + s, 0);
                        double dot = 0, dabs = 0;
                        for (int i = 0; i < d; i++)
                            dot += cq[i] * k[i], dabs += fabs(cq[i] * k[i]);
                        const double w = powd(ld, t - s);
                        for (int j = 0; j < e; j++)
                            acc[j] += w * dot * v[j], ab[j] += w * dabs * fabs(v[j]);
                    }
                    if (c->state_in) {
                        const double w = powd(ld, t + 1);
                        for (int j = 0; j < e; j++) {
                            double x = 0, xa = 0;
                            for (int i = 0; i < d; i++)
                                x += S0[i * e + j] * cq[i], xa += fabs(S0[i * e + j] * cq[i]);
                            acc[j] += w * x, ab[j] += w * xa;
                        }
                    }
                }
                for (int j = 0; j < e; j++) {
                    r->O[idx4(c->H, p->rows, e, bi, h, r0 + t, j)] = acc[j];
                    r->o_abs = fmax(r->o_abs, ab[j]);
                }
            }
            if (!recurrent) /* (the recurrent loop above already left the final state in S) */
                state64(p, b, h, S, SA);
            for (int i = 0; i < d * e; i++) {
                r->S[(size_t)(b * c->H + h) * d * e + i] = S[i];
                r->s_abs = fmax(r->s_abs, SA[i]);
            }
        }
    free(cq), free(acc), free(ab), free(S), free(SA);
    return 0;
}

/* The naive fp32 recurrence (the baseline of the accuracy rule). O rounded to dtype_o. */
static int naive32(const lprob *p, refout *r) {
    const lcase *c = &p->c;
    const int d = c->d, e = c->e;
    float *S = (float *)malloc(sizeof(float) * (size_t)d * e), *cq = (float *)malloc(sizeof(float) * (size_t)d);
    float *k = (float *)malloc(sizeof(float) * (size_t)d), *v = (float *)malloc(sizeof(float) * (size_t)e);
    if (!S || !cq || !k || !v) {
        free(S), free(cq), free(k), free(v);
        return -1;
    }
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++) {
            const int n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bidx(c, b);
            const float lam = c->has_decay ? expf((float)p->LD[h]) : 1.0f;
            for (int i = 0; i < d * e; i++)
                S[i] = (float)p->S0[(size_t)(b * c->H + h) * d * e + i];
            for (int t = 0; t < n; t++) {
                const double *q = p->Q + idx4(c->H, p->rows, d, bi, h, r0 + t, 0);
                const double *kk = p->K + idx4(c->H, p->rows, d, bi, h, r0 + t, 0);
                const double *vv = p->V + idx4(c->H, p->rows, e, bi, h, r0 + t, 0);
                for (int i = 0; i < d; i++)
                    cq[i] = c->scale * (float)q[i], k[i] = (float)kk[i];
                for (int j = 0; j < e; j++)
                    v[j] = (float)vv[j];
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < e; j++)
                        S[i * e + j] = lam * S[i * e + j] + k[i] * v[j];
                for (int j = 0; j < e; j++) {
                    float acc = 0.0f;
                    for (int i = 0; i < d; i++)
                        acc += S[i * e + j] * cq[i];
                    r->O[idx4(c->H, p->rows, e, bi, h, r0 + t, j)] = tu_round_to(c->dout, acc);
                }
            }
            for (int i = 0; i < d * e; i++)
                r->S[(size_t)(b * c->H + h) * d * e + i] = S[i];
        }
    free(S), free(cq), free(k), free(v);
    return 0;
}

/* ---- Comparisons -------------------------------------------------------------------------------- */



/* The accuracy rule: err(x) <= 2 err(naive) + floor. Returns the margin ratio err / allowed. */
static double check_rule(const char *label, const char *what, const double *x, const double *ref, const double *nv,
                         int64_t n, ak_dtype dt) {
    const double mref = tu_max_abs(ref, n);
    const double floor_ = dt == AK_F32 ? 1e-6 * fmax(1.0, mref) : 2.0 * tu_ulp(dt, mref);
    const double e_x = tu_max_err(x, ref, n), e_nv = tu_max_err(nv, ref, n), allowed = 2.0 * e_nv + floor_;
    CHECK(e_x <= allowed, "%s: %s: max err %.3g > 2 x naive32 %.3g + floor %.3g (max|ref| %.3g)", label, what, e_x,
          e_nv, floor_, mref);
    if (g_verbose > 1)
        printf("  %s: err %.3g naive32 %.3g floor %.3g\n", what, e_x, e_nv, floor_);
    return e_x / allowed;
}

/* A state tensor's values as a dense [B][H][d][e] array. */
static double *state_dense(const tbuf *s) { return dense_of(s); }

static int all_poison(const tbuf *b) {
    tbuf fresh;
    if (tbuf_make_like(&fresh, b))
        return 0;
    int same = tbuf_same_bytes(&fresh, b);
    tbuf_free(&fresh);
    return same;
}

/* Copy of an input tbuf's bytes, to verify that a run left it unmodified. */
static int snapshot(tbuf *dst, const tbuf *src) {
    if (tbuf_make_like(dst, src))
        return -1;
    memcpy(dst->mem, src->mem, src->mem_elems * src->esize);
    return 0;
}

/* Run fn with fresh poisoned outputs o and so (so: a state-shaped tbuf laid out like p->si). In-place
 * cases first write S0 into so and pass it as both state_in and state_out. */
static ak_status run_la(ak_ctx *ctx, la_fn fn, const lprob *p, tbuf *o, tbuf *so) {
    tbuf_poison(o);
    tbuf_poison(so);
    ak_la_desc d = lprob_desc(p);
    ak_la_tensors t;
    if (p->c.inplace) {
        put_state(p, so);
        t = lprob_tensors(p, &o->t, &so->t, &so->t);
    } else {
        t = lprob_tensors(p, &o->t, NULL, &so->t);
    }
    return fn(ctx, &d, &t);
}

typedef struct verify_stats {
    double worst_ratio;  /* largest err / allowed of the fp32 forms */
    int cases;
} verify_stats;

static verify_stats g_stats = {0, 0};

/* Everything about one problem: reference vs naive64, forward and recurrent vs the rule, thread-count
 * determinism, untouched memory, unmodified inputs. Returns 0 if every check passed. */
static int verify_case(const lcase *c, const char *label_in) {
    const int fails0 = tc_failures;
    char desc[512], label[700];
    lcase_str(c, desc, sizeof desc);
    snprintf(label, sizeof label, "%s [%s]", label_in, desc);
    lprob p;
    if (lprob_create(&p, c)) {
        CHECK(0, "%s: allocation failed", label);
        lprob_free(&p);
        return 1;
    }
    refout n64 = {0}, n32 = {0};
    if (refout_alloc(&n64, &p) || refout_alloc(&n32, &p) || naive64(&p, &n64, 0) || naive32(&p, &n32)) {
        CHECK(0, "%s: allocation failed", label);
        refout_free(&n64), refout_free(&n32), lprob_free(&p);
        return 1;
    }
    const int64_t no = (int64_t)p.nb * c->H * p.rows * c->e, ns = (int64_t)c->B * c->H * c->d * c->e;
    tbuf snap[5];
    const tbuf *ins[5] = {&p.q, &p.k, &p.v, &p.ld, &p.si};
    for (int i = 0; i < 5; i++)
        snapshot(&snap[i], ins[i]);

    /* 1. the reference (f64 O) against naive64 */
    int64_t so_shape[4] = {c->B, c->H, c->d, c->e};
    tbuf o64, s_ref, o_a, o_b, s_a, s_b;
    int64_t o_shape[4] = {p.nb, c->H, p.rows, c->e};
    rng r = rng_seed(c->seed + 99);
    tbuf_make(&o64, AK_F64, 4, o_shape, LAY_CONTIG, NULL);
    tbuf_make(&o_a, c->dout, 4, o_shape, c->lo, &r);
    tbuf_make_like(&o_b, &o_a);
    tbuf_make(&s_a, AK_F32, 4, so_shape, c->inplace ? LAY_CONTIG : c->ls == LAY_BCAST0 ? LAY_PADDED : c->ls, &r);
    if (c->inplace) { /* in place: the state buffer must be laid out exactly like state_in */
        tbuf_free(&s_a);
        tbuf_make_like(&s_a, &p.si);
    }
    tbuf_make_like(&s_b, &s_a);
    tbuf_make_like(&s_ref, &s_a);

    lcase c64 = *c;
    c64.dout = AK_F64;
    lprob p64 = p;
    p64.c = c64;
    ak_status st = run_la(g_ctx, ak_la_forward_ref, &p64, &o64, &s_ref);
    CHECK(st == AK_OK, "%s: ak_la_forward_ref: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx));
    double *ref_o = dense_of(&o64), *ref_s = state_dense(&s_ref);
    if (st == AK_OK && ref_o && ref_s) {
        double err = tu_max_err(ref_o, n64.O, no), tol = 1e-12 * fmax(n64.o_abs, 1e-300);
        CHECK(err <= tol, "%s: ak_la_forward_ref O vs naive64: err %.3g > %.3g (1e-12 x max sum|terms|)", label, err, tol);
        CHECK(tbuf_outside_untouched(&o64), "%s: ak_la_forward_ref wrote outside O", label);
        if (c->ret_state) {
            int bad = 0;
            double worst = 0;
            for (int64_t i = 0; i < ns; i++) {
                double dlt = fabs(ref_s[i] - n64.S[i]);
                if (!(dlt <= 6e-8 * fabs(n64.S[i]) + 1e-12 * n64.s_abs))
                    bad++, worst = fmax(worst, dlt);
            }
            CHECK(bad == 0, "%s: ak_la_forward_ref state: %d elements off the double recurrence (worst %.3g)", label, bad,
                  worst);
            CHECK(tbuf_outside_untouched(&s_ref), "%s: ak_la_forward_ref wrote outside state_out", label);
        } else {
            CHECK(all_poison(&s_ref), "%s: ak_la_forward_ref wrote state_out with return_final_state = 0", label);
        }
    }

    /* 2. forward and recurrent, 1 thread (rule) and 3 threads (identical bytes) */
    const char *names[2] = {"ak_la_forward", "ak_la_recurrent"};
    la_fn fns[2] = {ak_la_forward, ak_la_recurrent};
    for (int f = 0; f < 2 && st == AK_OK && ref_o; f++) {
        char what[64];
        ak_status s1 = run_la(g_ctx1, fns[f], &p, &o_a, &s_a);
        CHECK(s1 == AK_OK, "%s: %s: %s (%s)", label, names[f], ak_status_string(s1), ak_ctx_last_error(g_ctx1));
        if (s1 != AK_OK)
            continue;
        double *xo = dense_of(&o_a), *xs = state_dense(&s_a);
        snprintf(what, sizeof what, "%s O", names[f]);
        double ratio = check_rule(label, what, xo, ref_o, n32.O, no, c->dout);
        if (c->dout == AK_F32)
            g_stats.worst_ratio = fmax(g_stats.worst_ratio, ratio);
        CHECK(tbuf_outside_untouched(&o_a), "%s: %s wrote outside O", label, names[f]);
        if (c->ret_state) {
            snprintf(what, sizeof what, "%s final state", names[f]);
            ratio = check_rule(label, what, xs, n64.S, n32.S, ns, AK_F32);
            g_stats.worst_ratio = fmax(g_stats.worst_ratio, ratio);
            CHECK(tbuf_outside_untouched(&s_a), "%s: %s wrote outside state_out", label, names[f]);
        } else {
            CHECK(all_poison(&s_a), "%s: %s wrote state_out with return_final_state = 0", label, names[f]);
        }
        free(xo), free(xs);
        ak_status s3 = run_la(g_ctx3, fns[f], &p, &o_b, &s_b);
        CHECK(s3 == AK_OK, "%s: %s on 3 threads: %s", label, names[f], ak_status_string(s3));
        CHECK(s3 != AK_OK || (tbuf_same_bytes(&o_a, &o_b) && tbuf_same_bytes(&s_a, &s_b)),
              "%s: %s: 1 and 3 threads give different bytes", label, names[f]);
    }
    const char *in_names[5] = {"q", "k", "v", "log_decay", "state_in"};
    for (int i = 0; i < 5; i++) {
        CHECK(tbuf_same_bytes(&snap[i], ins[i]), "%s: input %s was modified", label, in_names[i]);
        tbuf_free(&snap[i]);
    }
    free(ref_o), free(ref_s);
    tbuf_free(&o64), tbuf_free(&s_ref), tbuf_free(&o_a), tbuf_free(&o_b), tbuf_free(&s_a), tbuf_free(&s_b);
    refout_free(&n64), refout_free(&n32), lprob_free(&p);
    g_stats.cases++;
    if (g_verbose)
        printf("%s %s\n", tc_failures == fails0 ? "ok  " : "FAIL", label);
    return tc_failures != fails0;
}

/* ---- Group grid: spec §1.10 test 1 -------------------------------------------------------------- */

static const double GRID_LAMBDA[4] = {1.0, 0.9, 0.6065306597126334 /* e^-0.5 */, 9e-4};

static void grid_case(int blk, int T, int li, int dims, int h0, int idx) {
    static const int DD[2][2] = {{5, 7}, {64, 32}};
    lcase c;
    lcase_default(&c);
    c.seed = 1000 + (uint64_t)idx;
    c.B = T > 100 ? 1 : 2, c.H = 2, c.T = T, c.d = DD[dims][0], c.e = DD[dims][1]; /* B 1: O(T^2) oracles */
    c.block = blk, c.state_in = h0, c.ret_state = 1;
    c.scale = idx % 2 ? 0.088f : 1.0f;
    c.has_decay = li != 0;
    if (c.has_decay) {
        c.log_decay[0] = (float)log(GRID_LAMBDA[li]);
        /* head 1: another decay of the list (lambda = 1 through has_decay = 1 for li = 3) */
        c.log_decay[1] = li == 3 ? 0.0f : (float)log(GRID_LAMBDA[li % 3 + 1]);
    }
    char label[96];
    snprintf(label, sizeof label, "grid block %d T %d lambda %g%s", blk, T, GRID_LAMBDA[li], h0 ? " h0" : "");
    verify_case(&c, label);
}

static void group_grid(void) {
    static const int BLOCKS[4] = {1, 3, 16, 64};
    int idx = 0;
    for (int li = 0; li < 4; li++)
        for (int h0 = 0; h0 < 2; h0++)
            for (int dims = 0; dims < 2; dims++) {
                for (int bi = 0; bi < 4; bi++) {
                    const int B = BLOCKS[bi], Ts[5] = {1, B - 1, B, B + 1, 7 * B + 3};
                    for (int ti = 0; ti < 5; ti++) {
                        if (g_quick && Ts[ti] > 100 && (dims == 1 || (li + h0) % 2))
                            continue;
                        grid_case(B, Ts[ti], li, dims, h0, idx++);
                    }
                }
                /* block >= T: one block holds the whole sequence (4096; exactly T; T + 1) */
                const int big[4][2] = {{4096, 1}, {4096, 65}, {200, 200}, {201, 200}};
                for (int i = 0; i < 4; i++) {
                    if (g_quick && big[i][1] > 100 && (dims == 1 || (li + h0) % 2))
                        continue;
                    grid_case(big[i][0], big[i][1], li, dims, h0, idx++);
                }
                /* block 0 = auto (64) */
                const int autoT[3] = {63, 65, 300};
                for (int i = 0; i < 3; i++)
                    if (!(g_quick && autoT[i] > 100 && (dims == 1 || (li + h0) % 2)))
                        grid_case(0, autoT[i], li, dims, h0, idx++);
            }
}

/* ---- Group sweep -------------------------------------------------------------------------------- */

static const int SW_DIMS[5] = {1, 3, 59, 111, 128};
static const int SW_BLOCKS[8] = {0, 1, 3, 16, 64, 100, 1000, 37};

static float random_log_decay(rng *r) {
    switch (rng_int(r, 8)) {
    case 0: return 0.0f;                     /* lambda = 1 with has_decay on */
    case 1: return (float)log(0.9);
    case 2: return -0.5f;
    case 3: return (float)log(9e-4);
    case 4: return -200.0f;                  /* lambda -> 0 */
    case 5: return -1e-7f;
    case 6: return (float)-pow(2.0, -8.0 * (1 + rng_int(r, 8)) / 8.0); /* official slopes, layer factor 1 */
    default: return (float)rng_range(r, -3.0, 0.0);
    }
}

static void sweep_gen(lcase *c, uint64_t seed) {
    rng r = rng_seed(seed);
    lcase_default(c);
    c->seed = seed;
    c->H = 1 + rng_int(&r, 5);
    c->d = rng_pick(&r, SW_DIMS, 5);
    c->e = rng_chance(&r, 0.5) ? c->d : rng_pick(&r, SW_DIMS, 5);
    c->e_zero = c->e == c->d && rng_chance(&r, 0.3);
    c->block = rng_pick(&r, SW_BLOCKS, COUNT(SW_BLOCKS));
    const int blk = c->block ? c->block : 64;
    const int LENS[7] = {0, 1, blk - 1 > 0 ? blk - 1 : 2, blk, blk + 1, 2 + rng_int(&r, 200), 2 * blk + 3};
    const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    c->dq = DT[rng_int(&r, 3)];
    c->dout = DT[rng_int(&r, 3)];
    c->scale = rng_chance(&r, 0.5) ? 1.0f : 0.088f;
    c->has_decay = rng_chance(&r, 0.8);
    for (int h = 0; h < c->H; h++)
        c->log_decay[h] = c->has_decay ? random_log_decay(&r) : 0.0f;
    c->state_in = rng_chance(&r, 0.5);
    c->ret_state = rng_chance(&r, 0.7);
    c->inplace = c->state_in && c->ret_state && rng_chance(&r, 0.3);
    c->ragged = rng_chance(&r, 0.25);
    if (c->ragged) {
        c->B = 1 + rng_int(&r, 4);
        c->cu[0] = 0;
        for (int b = 0; b < c->B; b++)
            c->cu[b + 1] = c->cu[b] + (rng_chance(&r, 0.2) ? 0 : LENS[rng_int(&r, 7)]);
    } else {
        c->B = 1 + rng_int(&r, 3);
        c->T = rng_chance(&r, 0.05) ? 0 : LENS[1 + rng_int(&r, 6)];
    }
    static const tlayout IN_LAYS[5] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED, LAY_BCAST0};
    static const tlayout OUT_LAYS[4] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};
    static const tlayout ST_LAYS[3] = {LAY_CONTIG, LAY_PADDED, LAY_PERMUTED};
    c->lq = IN_LAYS[rng_int(&r, 5)], c->lk = IN_LAYS[rng_int(&r, 5)], c->lv = IN_LAYS[rng_int(&r, 5)];
    c->lo = OUT_LAYS[rng_int(&r, 4)], c->ls = ST_LAYS[rng_int(&r, 3)];
    if (!c->ragged && c->T == 0 && c->lo == LAY_BSHD) /* a BSHD view of T = 0 has stride[0] = 0: see group invalid */
        c->lo = LAY_CONTIG;
    c->lld = rng_chance(&r, 0.5) ? LAY_CONTIG : LAY_PADDED;
    c->amp = rng_chance(&r, 0.2) ? 4.0 : 1.0;
    /* cap the O(T^2) references: sum over sequences of H * len^2 * (d + e) */
    const double cap = g_quick ? 4e6 : 1.5e7;
    for (;;) {
        double w = 0;
        for (int b = 0; b < c->B; b++)
            w += (double)c->H * seq_len(c, b) * seq_len(c, b) * (c->d + c->e);
        if (w <= cap)
            break;
        if (c->ragged) {
            int lens[MAXSEQ];
            for (int b = 0; b < c->B; b++)
                lens[b] = (c->cu[b + 1] - c->cu[b] + 1) / 2;
            for (int b = 0; b < c->B; b++)
                c->cu[b + 1] = c->cu[b] + lens[b];
        } else
            c->T = (c->T + 1) / 2;
    }
}

static void group_sweep(long n) {
    const long first = tu_env_long("AK_SWEEP_FIRST", 0);
    n = tu_env_long("AK_SWEEP_N", n);
    for (long i = first; i < first + n; i++) {
        lcase c;
        sweep_gen(&c, (uint64_t)i);
        char label[64];
        snprintf(label, sizeof label, "sweep case %ld", i);
        if (verify_case(&c, label))
            fprintf(stderr, "  rerun: AK_SWEEP_FIRST=%ld AK_SWEEP_N=1 AK_SWEEP_VERBOSE=2 ./test_linear sweep\n", i);
    }
}

/* ---- Group split: [0, m) then [m, T) with the state handed over; prefill then decode ------------- */

/* A view of rows [r0, r0 + n) of a [B][H][L][.] tensor. */
static ak_tensor rows_view(ak_tensor t, int64_t r0, int64_t n) {
    t.data = (unsigned char *)t.data + r0 * t.stride[2] * (int64_t)ak_dtype_size(t.dtype);
    t.shape[2] = n;
    return t;
}

/* Compare a composed output (o, final state s) with the one-run oracle of p by the rule. */
static void compare_full(const char *label, const lprob *p, const tbuf *o, const tbuf *s) {
    const lcase *c = &p->c;
    refout n64 = {0}, n32 = {0};
    refout_alloc(&n64, p), refout_alloc(&n32, p);
    naive64(p, &n64, 0), naive32(p, &n32);
    const int64_t no = (int64_t)p->nb * c->H * p->rows * c->e, ns = (int64_t)c->B * c->H * c->d * c->e;
    double *xo = dense_of(o), *xs = dense_of(s);
    check_rule(label, "O", xo, n64.O, n32.O, no, c->dout);
    check_rule(label, "final state", xs, n64.S, n32.S, ns, AK_F32);
    CHECK(tbuf_outside_untouched(o), "%s: wrote outside O", label);
    CHECK(tbuf_outside_untouched(s), "%s: wrote outside the state", label);
    free(xo), free(xs);
    refout_free(&n64), refout_free(&n32);
}

/* Run [0, m) with fn_a, hand the state over, run [m, T) with fn_b (inplace: state_out = state_in). */
static void split_case(const lcase *c0, int m, la_fn fn_a, la_fn fn_b, int inplace, const char *tag) {
    lprob p;
    char label[600], desc[400];
    lcase_str(c0, desc, sizeof desc);
    snprintf(label, sizeof label, "split %s m %d%s [%s]", tag, m, inplace ? " in place" : "", desc);
    if (lprob_create(&p, c0)) {
        CHECK(0, "%s: allocation failed", label);
        lprob_free(&p);
        return;
    }
    const lcase *c = &p.c;
    int64_t so_shape[4] = {c->B, c->H, c->d, c->e}, o_shape[4] = {c->B, c->H, c->T, c->e};
    tbuf o, mid, fin;
    rng r = rng_seed(c->seed + 5);
    tbuf_make(&o, c->dout, 4, o_shape, c->lo, &r);
    tbuf_make(&mid, AK_F32, 4, so_shape, LAY_PADDED, &r);
    tbuf_make(&fin, AK_F32, 4, so_shape, LAY_PERMUTED, &r);
    ak_la_desc d = lprob_desc(&p);
    ak_la_tensors t = lprob_tensors(&p, &o.t, NULL, &mid.t);
    d.seqlen = m, d.return_final_state = 1;
    t.q = rows_view(p.q.t, 0, m), t.k = rows_view(p.k.t, 0, m), t.v = rows_view(p.v.t, 0, m);
    t.o = rows_view(o.t, 0, m);
    ak_status st = fn_a(g_ctx, &d, &t);
    CHECK(st == AK_OK, "%s: first piece: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx));
    d = lprob_desc(&p);
    d.seqlen = c->T - m, d.has_initial_state = 1, d.return_final_state = 1;
    t.q = rows_view(p.q.t, m, c->T - m), t.k = rows_view(p.k.t, m, c->T - m), t.v = rows_view(p.v.t, m, c->T - m);
    t.o = rows_view(o.t, m, c->T - m);
    t.state_in = mid.t, t.state_out = inplace ? mid.t : fin.t;
    st = fn_b(g_ctx, &d, &t);
    CHECK(st == AK_OK, "%s: second piece: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx));
    compare_full(label, &p, &o, inplace ? &mid : &fin);
    tbuf_free(&o), tbuf_free(&mid), tbuf_free(&fin);
    lprob_free(&p);
}

/* ak_la_forward over [0, m) (m = 0: nothing), then ak_la_recurrent one token per call for [m, T), the
 * state in place (or ping-pong between two buffers), against the one-run oracle. */
static void decode_case(const lcase *c0, int m, int inplace) {
    lprob p;
    char label[600], desc[400];
    lcase_str(c0, desc, sizeof desc);
    snprintf(label, sizeof label, "prefill %d + decode%s [%s]", m, inplace ? " in place" : " ping-pong", desc);
    if (lprob_create(&p, c0)) {
        CHECK(0, "%s: allocation failed", label);
        lprob_free(&p);
        return;
    }
    const lcase *c = &p.c;
    int64_t so_shape[4] = {c->B, c->H, c->d, c->e}, o_shape[4] = {c->B, c->H, c->T, c->e};
    tbuf o, sb[2];
    rng r = rng_seed(c->seed + 6);
    tbuf_make(&o, c->dout, 4, o_shape, c->lo, &r);
    tbuf_make(&sb[0], AK_F32, 4, so_shape, LAY_PADDED, &r);
    tbuf_make_like(&sb[1], &sb[0]);
    int cur = 0, ok = 1, have_state = c->state_in;
    if (c->state_in)
        put_state(&p, &sb[0]);
    if (m > 0) {
        ak_la_desc d = lprob_desc(&p);
        ak_la_tensors t = lprob_tensors(&p, &o.t, NULL, &sb[1].t);
        d.seqlen = m, d.return_final_state = 1;
        t.q = rows_view(p.q.t, 0, m), t.k = rows_view(p.k.t, 0, m), t.v = rows_view(p.v.t, 0, m);
        t.o = rows_view(o.t, 0, m);
        ak_status st = ak_la_forward(g_ctx, &d, &t);
        CHECK(st == AK_OK, "%s: prefill: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx));
        ok = st == AK_OK;
        cur = 1, have_state = 1;
    }
    for (int tok = m; tok < c->T && ok; tok++) {
        ak_la_desc d = lprob_desc(&p);
        ak_la_tensors t = lprob_tensors(&p, &o.t, &sb[cur].t, inplace ? &sb[cur].t : &sb[1 - cur].t);
        d.seqlen = 1, d.has_initial_state = have_state, d.return_final_state = 1, d.block = 0;
        t.q = rows_view(p.q.t, tok, 1), t.k = rows_view(p.k.t, tok, 1), t.v = rows_view(p.v.t, tok, 1);
        t.o = rows_view(o.t, tok, 1);
        ak_status st = ak_la_recurrent(g_ctx, &d, &t);
        CHECK(st == AK_OK, "%s: decode step %d: %s (%s)", label, tok, ak_status_string(st), ak_ctx_last_error(g_ctx));
        ok = st == AK_OK;
        if (!inplace)
            cur = 1 - cur;
        have_state = 1;
    }
    if (ok)
        compare_full(label, &p, &o, &sb[cur]);
    tbuf_free(&o), tbuf_free(&sb[0]), tbuf_free(&sb[1]);
    lprob_free(&p);
}

static void group_split(void) {
    lcase c;
    lcase_default(&c);
    c.seed = 31, c.B = 2, c.H = 3, c.T = 100, c.d = 12, c.e = 9, c.block = 16, c.has_decay = 1;
    c.log_decay[0] = (float)log(0.9), c.log_decay[1] = -0.5f, c.log_decay[2] = 0.0f;
    c.lq = LAY_BSHD, c.lk = LAY_PADDED, c.lv = LAY_BSHD, c.lo = LAY_BSHD;
    const int ms[5] = {1, 5, 17, 40, 99};
    for (int h0 = 0; h0 < 2; h0++) {
        c.state_in = h0;
        for (int i = 0; i < 5; i++) {
            split_case(&c, ms[i], ak_la_forward, ak_la_forward, 0, "fwd+fwd");
            split_case(&c, ms[i], ak_la_forward, ak_la_forward, 1, "fwd+fwd");
            split_case(&c, ms[i], ak_la_recurrent, ak_la_forward, i % 2, "rec+fwd");
            split_case(&c, ms[i], ak_la_forward, ak_la_recurrent, 1 - i % 2, "fwd+rec");
        }
    }
    /* the auto block (64), bf16 inputs, f16 output, no decay on a longer sequence */
    lcase c2 = c;
    c2.seed = 32, c2.T = 300, c2.block = 0, c2.dq = AK_BF16, c2.dout = AK_F16, c2.scale = 0.088f;
    for (int i = 0; i < 3; i++) {
        const int m = (int[]){70, 129, 250}[i];
        split_case(&c2, m, ak_la_forward, ak_la_forward, i == 1, "fwd+fwd auto block");
    }
    c2.has_decay = 0;
    split_case(&c2, 100, ak_la_forward, ak_la_forward, 0, "fwd+fwd no decay");
    /* prefill then decode (m = 0: decode only, from the zero state or h0) */
    lcase c3 = c;
    c3.seed = 33, c3.T = 80, c3.block = 16;
    const int pm[5] = {0, 1, 17, 64, 70};
    for (int i = 0; i < 5; i++) {
        c3.state_in = i % 2;
        decode_case(&c3, pm[i], 1);
        decode_case(&c3, pm[i], 0);
    }
    c3.dq = AK_BF16, c3.dout = AK_BF16, c3.block = 0, c3.state_in = 1;
    decode_case(&c3, 33, 1);
}

/* ---- Group ragged ------------------------------------------------------------------------------- */

/* The packed problem, and every sequence run alone (B = 1, views into the packed tensors and states),
 * both against the oracle; an empty sequence's final state must be exactly its initial state (or 0). */
static void ragged_case(const int *lens, int nseq, int h0, ak_dtype dq, ak_dtype dout, int block, la_fn fn,
                        uint64_t seed) {
    lcase c;
    lcase_default(&c);
    c.seed = seed, c.B = nseq, c.H = 2, c.d = 16, c.e = 8, c.ragged = 1, c.block = block;
    c.dq = dq, c.dout = dout, c.state_in = h0, c.has_decay = 1, c.scale = 0.5f;
    c.log_decay[0] = -0.05f, c.log_decay[1] = (float)log(0.9);
    c.lq = LAY_BSHD, c.lk = LAY_PERMUTED, c.lv = LAY_BSHD, c.lo = LAY_BSHD, c.ls = LAY_PADDED;
    for (int b = 0; b < nseq; b++)
        c.cu[b + 1] = c.cu[b] + lens[b];
    char label[200];
    snprintf(label, sizeof label, "ragged %s (%d sequences)", fn == ak_la_forward ? "forward" : "recurrent", nseq);
    if (fn == ak_la_forward)
        verify_case(&c, label); /* packed: reference, forward and recurrent against the oracles */
    lprob p;
    if (lprob_create(&p, &c)) {
        lprob_free(&p);
        return;
    }
    /* each sequence alone, outputs written into the matching rows / state of packed-shaped buffers */
    int64_t o_shape[4] = {1, c.H, p.rows, c.e}, s_shape[4] = {c.B, c.H, c.d, c.e};
    tbuf o, s;
    tbuf_make(&o, dout, 4, o_shape, LAY_CONTIG, NULL);
    tbuf_make(&s, AK_F32, 4, s_shape, LAY_CONTIG, NULL);
    for (int b = 0; b < nseq; b++) {
        ak_la_desc d = lprob_desc(&p);
        d.batch = 1, d.seqlen = lens[b], d.cu_seqlens = NULL;
        ak_la_tensors t = lprob_tensors(&p, &o.t, NULL, &s.t);
        t.q = rows_view(p.q.t, c.cu[b], lens[b]), t.k = rows_view(p.k.t, c.cu[b], lens[b]);
        t.v = rows_view(p.v.t, c.cu[b], lens[b]), t.o = rows_view(o.t, c.cu[b], lens[b]);
        t.state_in.data = (float *)p.si.t.data + b * p.si.t.stride[0], t.state_in.shape[0] = 1;
        t.state_out.data = (float *)s.t.data + b * s.t.stride[0], t.state_out.shape[0] = 1;
        ak_status st = fn(g_ctx, &d, &t);
        CHECK(st == AK_OK, "%s: sequence %d alone: %s (%s)", label, b, ak_status_string(st), ak_ctx_last_error(g_ctx));
    }
    char l2[240];
    snprintf(l2, sizeof l2, "%s, every sequence alone", label);
    compare_full(l2, &p, &o, &s);
    /* the packed run again, to compare with the separate runs and check empty sequences exactly */
    tbuf o2, s2;
    tbuf_make_like(&o2, &o), tbuf_make_like(&s2, &s);
    ak_la_desc d = lprob_desc(&p);
    ak_la_tensors t = lprob_tensors(&p, &o2.t, NULL, &s2.t);
    CHECK_STATUS(fn(g_ctx, &d, &t), AK_OK);
    int identical = tbuf_same_bytes(&o, &o2) && tbuf_same_bytes(&s, &s2);
    if (g_verbose)
        printf("  %s: packed and separate runs %s\n", label, identical ? "bitwise identical" : "differ in bits");
    double *xs = dense_of(&s2);
    const int64_t de = (int64_t)c.d * c.e;
    for (int b = 0; b < nseq; b++) {
        if (lens[b] != 0)
            continue;
        int bad = 0;
        for (int64_t i = 0; i < (int64_t)c.H * de; i++)
            bad += xs[b * c.H * de + i] != p.S0[b * c.H * de + i];
        CHECK(bad == 0, "%s: empty sequence %d: %d state elements differ from the initial state%s", label, b, bad,
              h0 ? "" : " (zero)");
    }
    free(xs);
    tbuf_free(&o), tbuf_free(&s), tbuf_free(&o2), tbuf_free(&s2);
    lprob_free(&p);
}

static void group_ragged(void) {
    const int lens_a[5] = {37, 0, 1, 64, 130};
    const int lens_b[4] = {0, 16, 17, 0};
    const int lens_c[3] = {0, 0, 0};
    const int lens_d[1] = {200};
    for (int h0 = 0; h0 < 2; h0++) {
        ragged_case(lens_a, 5, h0, AK_F32, AK_F32, 16, ak_la_forward, 41);
        ragged_case(lens_a, 5, h0, AK_F32, AK_F32, 16, ak_la_recurrent, 41);
        ragged_case(lens_b, 4, h0, AK_BF16, AK_F32, 0, ak_la_forward, 42);
        ragged_case(lens_b, 4, h0, AK_F16, AK_BF16, 3, ak_la_recurrent, 43);
        ragged_case(lens_c, 3, h0, AK_F32, AK_F32, 16, ak_la_forward, 44);
        ragged_case(lens_d, 1, h0, AK_F32, AK_F16, 64, ak_la_forward, 45);
    }
}

/* ---- Group long: T = 1e5 and extreme decays ------------------------------------------------------ */

static void long_case(double log_decay, int has_decay, double mean, int T, const char *tag) {
    lcase c;
    lcase_default(&c);
    c.seed = 51, c.B = 1, c.H = 1, c.T = T, c.d = 16, c.e = 16, c.has_decay = has_decay, c.state_in = 1;
    c.log_decay[0] = (float)log_decay, c.mean = mean, c.amp = 1.0;
    char label[160];
    snprintf(label, sizeof label, "long T %d %s (log_decay %.9g, input mean %g)", T, tag, (double)c.log_decay[0], mean);
    lprob p;
    refout n64 = {0}, n32 = {0};
    if (lprob_create(&p, &c) || refout_alloc(&n64, &p) || refout_alloc(&n32, &p) || naive64(&p, &n64, 1) ||
        naive32(&p, &n32)) {
        CHECK(0, "%s: allocation failed", label);
        lprob_free(&p);
        return;
    }
    const int64_t no = (int64_t)T * c.e, ns = (int64_t)c.d * c.e;
    int64_t o_shape[4] = {1, 1, T, c.e}, s_shape[4] = {1, 1, c.d, c.e};
    tbuf o, s;
    tbuf_make(&o, AK_F32, 4, o_shape, LAY_CONTIG, NULL), tbuf_make(&s, AK_F32, 4, s_shape, LAY_CONTIG, NULL);
    const char *names[2] = {"ak_la_forward", "ak_la_recurrent"};
    la_fn fns[2] = {ak_la_forward, ak_la_recurrent};
    for (int f = 0; f < 2; f++) {
        ak_status st = run_la(g_ctx, fns[f], &p, &o, &s);
        CHECK(st == AK_OK, "%s: %s: %s (%s)", label, names[f], ak_status_string(st), ak_ctx_last_error(g_ctx));
        if (st != AK_OK)
            continue;
        double *xo = dense_of(&o), *xs = dense_of(&s);
        int nonfinite = 0;
        for (int64_t i = 0; i < no; i++)
            nonfinite += !isfinite(xo[i]);
        for (int64_t i = 0; i < ns; i++)
            nonfinite += !isfinite(xs[i]);
        CHECK(nonfinite == 0, "%s: %s: %d Inf/NaN values", label, names[f], nonfinite);
        char what[80];
        snprintf(what, sizeof what, "%s O", names[f]);
        check_rule(label, what, xo, n64.O, n32.O, no, AK_F32);
        snprintf(what, sizeof what, "%s final state", names[f]);
        check_rule(label, what, xs, n64.S, n32.S, ns, AK_F32);
        if (g_verbose)
            printf("  %s %s: max|O| %.3g err %.3g (naive32 %.3g)\n", label, names[f], tu_max_abs(n64.O, no),
                   tu_max_err(xo, n64.O, no), tu_max_err(n32.O, n64.O, no));
        free(xo), free(xs);
    }
    tbuf_free(&o), tbuf_free(&s);
    refout_free(&n64), refout_free(&n32), lprob_free(&p);
}

/* log_decay = -inf (lambda = 0 exactly): the header only requires <= 0; either refused with
 * AK_ERR_INVALID_ARGUMENT, or accepted and then o_t = c (q_t . k_t) v_t, state = k_{T-1} v_{T-1}^T. */
static void minus_inf_case(void) {
    lcase c;
    lcase_default(&c);
    c.seed = 52, c.B = 1, c.H = 2, c.T = 70, c.d = 5, c.e = 3, c.has_decay = 1, c.state_in = 1, c.block = 16;
    c.log_decay[0] = -INFINITY, c.log_decay[1] = -0.5f;
    lprob p;
    if (lprob_create(&p, &c)) {
        lprob_free(&p);
        return;
    }
    int64_t o_shape[4] = {1, 2, 70, 3}, s_shape[4] = {1, 2, 5, 3};
    tbuf o, s;
    tbuf_make(&o, AK_F32, 4, o_shape, LAY_CONTIG, NULL), tbuf_make(&s, AK_F32, 4, s_shape, LAY_CONTIG, NULL);
    la_fn fns[3] = {ak_la_forward, ak_la_recurrent, ak_la_forward_ref};
    ak_status first = AK_OK;
    for (int f = 0; f < 3; f++) {
        ak_status st = run_la(g_ctx, fns[f], &p, &o, &s);
        CHECK(st == AK_OK || st == AK_ERR_INVALID_ARGUMENT, "log_decay = -inf: function %d returned %s", f,
              ak_status_string(st));
        if (f == 0)
            first = st;
        CHECK(st == first, "log_decay = -inf: function %d returned %s, ak_la_forward %s", f, ak_status_string(st),
              ak_status_string(first));
        if (st == AK_OK) {
            refout n64 = {0}, n32 = {0};
            refout_alloc(&n64, &p), refout_alloc(&n32, &p);
            naive64(&p, &n64, 0), naive32(&p, &n32);
            double *xo = dense_of(&o), *xs = dense_of(&s);
            check_rule("log_decay = -inf", "O", xo, n64.O, n32.O, 2 * 70 * 3, AK_F32);
            check_rule("log_decay = -inf", "final state", xs, n64.S, n32.S, 2 * 5 * 3, AK_F32);
            free(xo), free(xs);
            refout_free(&n64), refout_free(&n32);
        }
    }
    if (g_verbose)
        printf("  log_decay = -inf: %s\n", ak_status_string(first));
    tbuf_free(&o), tbuf_free(&s);
    lprob_free(&p);
}

static void group_long(void) {
    const int T = g_quick ? 25000 : 100000; /* sanitizer builds: 4x shorter */
    long_case(0.0, 0, 0.0, T, "lambda 1 (no decay)");
    long_case(0.0, 0, 0.5, T, "lambda 1, positive inputs (linear growth)");
    long_case(log(0.5), 1, 0.0, T, "lambda 0.5");
    long_case(-1e-7, 1, 0.0, T, "lambda 1 - 1e-7");
    long_case(-1e-7, 1, 0.5, T, "lambda 1 - 1e-7, positive inputs");
    long_case(-200.0, 1, 0.0, T, "lambda -> 0 (log_decay -200)");
    if (!g_quick) { /* the 1M tokens: no decay with growing inputs, and lambda near 1 */
        long_case(0.0, 0, 0.5, 1 << 20, "1M tokens, lambda 1, positive inputs");
        long_case(-1e-7, 1, 0.0, 1 << 20, "1M tokens, lambda 1 - 1e-7");
    }
    minus_inf_case();
    /* a block far beyond the sequence: one block, and nothing O(block^2) must be allocated */
    lcase c;
    lcase_default(&c);
    c.seed = 53, c.B = 1, c.H = 2, c.T = 70, c.d = 8, c.e = 4, c.has_decay = 1, c.block = 1 << 30;
    c.log_decay[0] = -0.1f, c.log_decay[1] = -0.01f;
    verify_case(&c, "block 2^30");
}

/* ---- Group decay: ak_la_log_decay ---------------------------------------------------------------- */

/* Independent slope formulas (spec §1.2), h 0-based. */
static double slope_official(int H, int h) {
    int P = 1;
    while (P * 2 <= H)
        P *= 2;
    if (h < P)
        return pow(2.0, -8.0 * (h + 1) / P); /* the power-of-2 list 2^(-8/P), 2^(-16/P), ... */
    /* the 2P list is 2^(-8 j / 2P), j = 1..2P; every other one starting with the first: j = 1, 3, 5, ... */
    const int j = 2 * (h - P) + 1;
    return pow(2.0, -8.0 * j / (2.0 * P));
}
static double layer_factor(ak_la_decay_mode mode, int l, int L) {
    switch (mode) {
    case AK_LA_DECAY_OFFICIAL: return (L == 1 ? 1.0 : 1.0 - (double)l / (L - 1)) + 1e-5;
    case AK_LA_DECAY_MINIMAX: return 1.0 - (double)l / (L - 1 + 1e-5) + 1e-5;
    default: return 1.0 - (double)l / L;
    }
}
static double slope_of(ak_la_decay_mode mode, int H, int h) {
    switch (mode) {
    case AK_LA_DECAY_OFFICIAL: return slope_official(H, h);
    case AK_LA_DECAY_MINIMAX: return pow(2.0, -8.0 * (h + 1) / H);
    default: return 8.0 * h / H;
    }
}

static int rel_close(double x, double y, double tol) { return fabs(x - y) <= tol * fmax(fabs(y), 1e-300); }
/* A spec value printed with 6 decimals (or 6 significant digits): 1e-5 relative, or half a unit of its
 * last printed decimal for the small ones (0.000912 stands for 0.00091188). */
static int spec_close(double x, double spec) { return rel_close(x, spec, 1e-5) || fabs(x - spec) <= 5e-7; }

/* Call ak_la_log_decay with canaries after the H entries. */
static ak_status log_decay_call(ak_la_decay_mode mode, int H, int l, int L, float *out) {
    float buf[70];
    for (int i = 0; i < 70; i++)
        buf[i] = 12345.0f;
    ak_status st = ak_la_log_decay(g_ctx, mode, H, l, L, buf);
    int canary = 1;
    for (int i = H; i < 70; i++)
        canary &= buf[i] == 12345.0f;
    CHECK(canary, "ak_la_log_decay(mode %d, H %d, layer %d of %d) wrote past its %d entries", (int)mode, H, l, L, H);
    memcpy(out, buf, sizeof(float) * (size_t)H);
    return st;
}

static void group_decay(void) {
    float ld[64];
    /* OFFICIAL, H = 8: slopes and layer-0 lambdas (f_0 = 1 + 1e-5 for any L) */
    static const double off8_s[8] = {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625};
    static const double off8_l[8] = {0.606528, 0.778799, 0.882496, 0.939412, 0.969233, 0.984496, 0.992218, 0.996101};
    const int Ls[3] = {1, 4, 24};
    for (int li = 0; li < 3; li++) {
        CHECK_STATUS(log_decay_call(AK_LA_DECAY_OFFICIAL, 8, 0, Ls[li], ld), AK_OK);
        for (int h = 0; h < 8; h++) {
            CHECK(spec_close(exp(ld[h]), off8_l[h]), "OFFICIAL H 8 L %d layer 0 head %d: lambda %.9g, spec %.6g",
                  Ls[li], h, exp(ld[h]), off8_l[h]);
            CHECK(rel_close(-ld[h] / (1.0 + 1e-5), off8_s[h], 1e-5), "OFFICIAL H 8 head %d: slope %.9g, spec %.9g", h,
                  -ld[h] / (1.0 + 1e-5), off8_s[h]);
            CHECK(ld[h] <= 0.0f, "log_decay > 0");
        }
    }
    /* OFFICIAL, L = 4, last layer: f = 1e-5, lambda = 0.999995 .. 1 */
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_OFFICIAL, 8, 3, 4, ld), AK_OK);
    for (int h = 0; h < 8; h++)
        CHECK(rel_close(-ld[h], off8_s[h] * 1e-5, 1e-4) && exp(ld[h]) >= 0.999994 && exp(ld[h]) <= 1.0,
              "OFFICIAL H 8 L 4 layer 3 head %d: log_decay %.9g, expected %.9g", h, (double)ld[h], -off8_s[h] * 1e-5);
    /* OFFICIAL, H = 12 and H = 16 slopes */
    static const double off12[12] = {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
                                     0.707107, 0.353553, 0.176777, 0.0883883};
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_OFFICIAL, 12, 0, 1, ld), AK_OK);
    for (int h = 0; h < 12; h++)
        CHECK(spec_close(-ld[h] / (1.0 + 1e-5), off12[h]), "OFFICIAL H 12 head %d: slope %.9g, spec %.6g", h,
              -ld[h] / (1.0 + 1e-5), off12[h]);
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_OFFICIAL, 16, 0, 1, ld), AK_OK);
    for (int h = 0; h < 16; h++)
        CHECK(rel_close(-ld[h] / (1.0 + 1e-5), pow(2.0, -(h + 1) / 2.0), 1e-5),
              "OFFICIAL H 16 head %d: slope %.9g, spec 2^(-%d/2)", h, -ld[h] / (1.0 + 1e-5), h + 1);
    CHECK(rel_close(-ld[0] / (1.0 + 1e-5), 0.707107, 1e-5) && rel_close(-ld[15] / (1.0 + 1e-5), 0.00390625, 1e-5),
          "OFFICIAL H 16: first / last slope %.9g / %.9g", -ld[0] / (1.0 + 1e-5), -ld[15] / (1.0 + 1e-5));
    /* PAPER_LITERAL, H = 8, L = 4, layer 0 */
    static const double pap8[8] = {1.0, 0.367879, 0.135335, 0.049787, 0.018316, 0.006738, 0.002479, 0.000912};
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_PAPER, 8, 0, 4, ld), AK_OK);
    for (int h = 0; h < 8; h++)
        CHECK(spec_close(exp(ld[h]), pap8[h]) || (h == 0 && ld[0] == 0.0f),
              "PAPER H 8 L 4 layer 0 head %d: lambda %.9g, spec %.6g", h, exp(ld[h]), pap8[h]);
    CHECK(ld[0] == 0.0f, "PAPER head 0 must have no decay (log_decay %g)", (double)ld[0]);
    /* PAPER layer 2 of 4: f = 0.5 */
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_PAPER, 8, 2, 4, ld), AK_OK);
    for (int h = 0; h < 8; h++)
        CHECK(rel_close(-ld[h], 0.5 * h, 1e-6) || (h == 0 && ld[0] == 0.0f), "PAPER H 8 layer 2 of 4 head %d: %.9g", h,
              (double)ld[h]);
    /* MINIMAX: s_h = 2^(-8h/H) for any H (no power-of-2 trick); H = 12 differs from OFFICIAL */
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_MINIMAX, 12, 0, 1, ld), AK_OK);
    for (int h = 0; h < 12; h++)
        CHECK(rel_close(-ld[h] / (1.0 + 1e-5), pow(2.0, -8.0 * (h + 1) / 12.0), 1e-5), "MINIMAX H 12 head %d: %.9g", h,
              (double)ld[h]);
    CHECK_STATUS(log_decay_call(AK_LA_DECAY_MINIMAX, 8, 3, 4, ld), AK_OK); /* f = 1 - 3/3.00001 + 1e-5 */
    for (int h = 0; h < 8; h++) {
        const double f = 1.0 - 3.0 / (3.0 + 1e-5) + 1e-5;
        CHECK(rel_close(-ld[h], off8_s[h] * f, 1e-4), "MINIMAX H 8 L 4 layer 3 head %d: %.9g, expected %.9g", h,
              (double)ld[h], -off8_s[h] * f);
    }
    /* every mode, many (H, l, L) against the formulas above (float rounding: 1e-6 relative) */
    const ak_la_decay_mode modes[3] = {AK_LA_DECAY_OFFICIAL, AK_LA_DECAY_MINIMAX, AK_LA_DECAY_PAPER};
    const int Hs[10] = {1, 2, 3, 5, 6, 8, 12, 20, 40, 64};
    const int LL[4][2] = {{0, 1}, {0, 2}, {1, 2}, {5, 12}};
    for (int mi = 0; mi < 3; mi++)
        for (int hi = 0; hi < 10; hi++)
            for (int li = 0; li < 4; li++) {
                const int H = Hs[hi], l = LL[li][0], L = LL[li][1];
                CHECK_STATUS(log_decay_call(modes[mi], H, l, L, ld), AK_OK);
                int bad = 0;
                for (int h = 0; h < H; h++) {
                    const double want = -slope_of(modes[mi], H, h) * layer_factor(modes[mi], l, L);
                    bad += !(rel_close(ld[h], want, 1e-6) || fabs(ld[h] - want) < 1e-30);
                }
                CHECK(bad == 0, "ak_la_log_decay(mode %d, H %d, layer %d of %d): %d heads off the formula", (int)mi, H,
                      l, L, bad);
            }
    /* invalid arguments */
    CHECK_STATUS(ak_la_log_decay(NULL, AK_LA_DECAY_OFFICIAL, 8, 0, 4, ld), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_OFFICIAL, 8, 0, 4, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_OFFICIAL, 8, 4, 4, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_OFFICIAL, 8, -1, 4, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_MINIMAX, 8, 0, 0, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_PAPER, 8, 1, 1, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_OFFICIAL, 0, 0, 4, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, AK_LA_DECAY_OFFICIAL, -3, 0, 4, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, (ak_la_decay_mode)3, 8, 0, 4, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_la_log_decay(g_ctx, (ak_la_decay_mode)-1, 8, 0, 4, ld), AK_ERR_INVALID_ARGUMENT);
    CHECK(strlen(ak_ctx_last_error(g_ctx)) > 0, "ak_la_log_decay: no last-error message after a failure");
}

/* ---- Group invalid -------------------------------------------------------------------------------- */

/* Every call of the three forward functions on (dd, t) must return `status` (or `status2`). */
static void expect3(int line, const char *what, ak_ctx *ctx, const ak_la_desc *dd, const ak_la_tensors *t,
                    ak_status status, ak_status status2) {
    const char *names[3] = {"ak_la_forward", "ak_la_recurrent", "ak_la_forward_ref"};
    la_fn fns[3] = {ak_la_forward, ak_la_recurrent, ak_la_forward_ref};
    for (int f = 0; f < 3; f++) {
        ak_status st = fns[f](ctx, dd, t);
        tc_checks++;
        if (st != status && st != status2) {
            tc_failures++;
            fprintf(stderr, "FAIL %s:%d: %s {%s} returned %s, expected %s (%s)\n", __FILE__, line, names[f], what,
                    ak_status_string(st), ak_status_string(status), ctx ? ak_ctx_last_error(ctx) : "");
        } else if (st != AK_OK && ctx) {
            CHECK(strlen(ak_ctx_last_error(ctx)) > 0, "%s: no last-error message after {%s}", names[f], what);
        }
    }
}

/* EXPECTL(status, mutation...): a copy of the base (desc dd, tensors t, ctx cx, pointers pd / pt) mutated. */
#define EXPECTL2(status, status2, ...)                                                                     \
    do {                                                                                                   \
        ak_la_desc dd = B_d;                                                                               \
        ak_la_tensors t = B_t;                                                                             \
        ak_ctx *cx = g_ctx;                                                                                \
        const ak_la_desc *pd = &dd;                                                                        \
        const ak_la_tensors *pt = &t;                                                                      \
        __VA_ARGS__;                                                                                       \
        expect3(__LINE__, #__VA_ARGS__, cx, pd, pt, (status), (status2));                                  \
    } while (0)
#define EXPECTL(status, ...) EXPECTL2(status, status, __VA_ARGS__)

static void group_invalid(void) {
    /* base: B 2, H 3, T 10, d 4, e 5, f32, decay, state in and out */
    enum { NB = 2, NH = 3, NT = 10, ND = 4, NE = 5 };
    static float q[NB * NH * NT * ND], k[NB * NH * NT * ND], v[NB * NH * NT * NE], o[NB * NH * NT * NE];
    static float si[3 * NH * ND * NE], so[3 * NH * ND * NE], big[4096]; /* 3: the ragged base below */
    static double o64[NB * NH * NT * NE];
    static uint16_t q16[NB * NH * NT * ND];
    float ld[NH] = {-0.1f, -0.2f, 0.0f};
    for (int i = 0; i < NB * NH * NT * ND; i++)
        q[i] = k[i] = 0.25f, q16[i] = 0x3e80;
    for (int i = 0; i < NB * NH * NT * NE; i++)
        v[i] = 0.5f;
    for (int i = 0; i < NB * NH * ND * NE; i++)
        si[i] = 0.125f;
    ak_la_desc B_d;
    ak_la_desc_init(&B_d);
    B_d.batch = NB, B_d.num_heads = NH, B_d.seqlen = NT, B_d.head_dim = ND, B_d.head_dim_v = NE;
    B_d.has_decay = 1, B_d.has_initial_state = 1, B_d.return_final_state = 1, B_d.block = 4;
    ak_la_tensors B_t;
    ak_la_tensors_init(&B_t);
    B_t.q = ak_tensor_4d(q, AK_F32, NB, NH, NT, ND), B_t.k = ak_tensor_4d(k, AK_F32, NB, NH, NT, ND);
    B_t.v = ak_tensor_4d(v, AK_F32, NB, NH, NT, NE), B_t.o = ak_tensor_4d(o, AK_F32, NB, NH, NT, NE);
    B_t.log_decay = ak_tensor_1d(ld, AK_F32, NH);
    B_t.state_in = ak_tensor_4d(si, AK_F32, NB, NH, ND, NE), B_t.state_out = ak_tensor_4d(so, AK_F32, NB, NH, ND, NE);
    const ak_tensor zero_t = {0};

    /* defaults of the init functions */
    {
        ak_la_desc d0;
        memset(&d0, 0x5a, sizeof d0);
        ak_la_desc_init(&d0);
        CHECK(d0.size == sizeof d0 && d0.scale == 1.0f && d0.block == 0 && d0.cu_seqlens == NULL && d0.has_decay == 0 &&
                  d0.has_initial_state == 0 && d0.return_final_state == 0 && d0.head_dim_v == 0,
              "ak_la_desc_init defaults (size, scale 1, block 0, no flags, cu_seqlens NULL, head_dim_v 0)");
        ak_la_tensors t0;
        memset(&t0, 0x5a, sizeof t0);
        ak_la_tensors_init(&t0);
        CHECK(t0.size == sizeof t0 && t0.q.data == NULL && t0.state_out.data == NULL, "ak_la_tensors_init");
    }
    EXPECTL(AK_OK, (void)0); /* the valid baseline */
    /* NULL pointers */
    EXPECTL(AK_ERR_NULL_POINTER, cx = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, pd = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, pt = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.q.data = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.k.data = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.v.data = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.o.data = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.log_decay.data = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.state_in.data = NULL);
    EXPECTL(AK_ERR_NULL_POINTER, t.state_out.data = NULL);
    /* missing tensors when the flag is set (a zero tensor: no data, ndim 0) */
    EXPECTL2(AK_ERR_NULL_POINTER, AK_ERR_SHAPE_MISMATCH, t.log_decay = zero_t);
    EXPECTL2(AK_ERR_NULL_POINTER, AK_ERR_SHAPE_MISMATCH, t.state_in = zero_t);
    EXPECTL2(AK_ERR_NULL_POINTER, AK_ERR_SHAPE_MISMATCH, t.state_out = zero_t);
    /* ... and ignored when it is not */
    EXPECTL(AK_OK, dd.has_decay = 0; t.log_decay = zero_t);
    EXPECTL(AK_OK, dd.has_initial_state = 0; t.state_in = zero_t);
    EXPECTL(AK_OK, dd.return_final_state = 0; t.state_out = zero_t);
    EXPECTL(AK_OK, dd.has_decay = 0; float bad = 1.0f; t.log_decay = ak_tensor_1d(&bad, AK_F32, 1));
    EXPECTL(AK_OK, dd.return_final_state = 0; t.state_out = t.o); /* overlapping, but unused */
    /* size fields */
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.size = 0);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.size = sizeof dd + 8);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.size = sizeof t - 1);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.size = 0);
    /* scalar fields */
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.batch = 0);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.batch = -1);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.num_heads = 0);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.num_heads = -2);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.seqlen = -1);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, dd.block = -1);
    EXPECTL(AK_ERR_HEAD_DIM, dd.head_dim = 0);
    EXPECTL(AK_ERR_HEAD_DIM, dd.head_dim = 513);
    EXPECTL(AK_ERR_HEAD_DIM, dd.head_dim = -4);
    EXPECTL(AK_ERR_HEAD_DIM, dd.head_dim_v = 513);
    EXPECTL(AK_ERR_HEAD_DIM, dd.head_dim_v = -1);
    EXPECTL(AK_ERR_SHAPE_MISMATCH, dd.head_dim_v = 0); /* = d = 4, but v and o have e = 5 */
    /* log_decay values: > 0 or NaN (or +inf) */
    EXPECTL(AK_ERR_INVALID_ARGUMENT, float bad[NH] = {-0.1f, 0.1f, -0.3f}; t.log_decay.data = bad);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, float bad[NH] = {-0.1f, -0.2f, 1e-30f}; t.log_decay.data = bad);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, float bad[NH] = {NAN, -0.2f, -0.3f}; t.log_decay.data = bad);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, float bad[NH] = {-0.1f, -0.2f, INFINITY}; t.log_decay.data = bad);
    EXPECTL(AK_OK, float ok_[NH] = {-0.0f, -1e-30f, -1e30f}; t.log_decay.data = ok_);
    /* dtypes of the descriptor */
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, dd.dtype_qkv = AK_F64);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, dd.dtype_qkv = AK_I8);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, dd.dtype_qkv = (ak_dtype)42);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, dd.dtype_o = AK_I8);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, dd.dtype_o = (ak_dtype)-1);
    /* dtypes of the tensors: invalid in the role, or valid but not the descriptor's */
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.q.dtype = AK_I8);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.v.dtype = (ak_dtype)42);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.o.dtype = AK_I8);
    EXPECTL2(AK_ERR_PLAN_MISMATCH, AK_ERR_UNSUPPORTED_DTYPE, t.q = ak_tensor_4d(q16, AK_BF16, NB, NH, NT, ND));
    EXPECTL2(AK_ERR_PLAN_MISMATCH, AK_ERR_UNSUPPORTED_DTYPE, t.k.dtype = AK_F16);
    EXPECTL2(AK_ERR_PLAN_MISMATCH, AK_ERR_UNSUPPORTED_DTYPE, t.o.dtype = AK_BF16);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.log_decay.dtype = AK_BF16);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.state_in.dtype = AK_F16);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.state_out.dtype = AK_BF16);
    EXPECTL(AK_ERR_UNSUPPORTED_DTYPE, t.state_out.dtype = AK_F64);
    /* F64 output: the reference only */
    {
        ak_la_desc dd = B_d;
        ak_la_tensors t = B_t;
        dd.dtype_o = AK_F64, t.o = ak_tensor_4d(o64, AK_F64, NB, NH, NT, NE);
        CHECK_STATUS(ak_la_forward(g_ctx, &dd, &t), AK_ERR_UNSUPPORTED_DTYPE);
        CHECK_STATUS(ak_la_recurrent(g_ctx, &dd, &t), AK_ERR_UNSUPPORTED_DTYPE);
        CHECK_STATUS(ak_la_forward_ref(g_ctx, &dd, &t), AK_OK);
    }
    /* shapes of every tensor, every dimension */
    for (int dim = 0; dim < 4; dim++) {
        EXPECTL(AK_ERR_SHAPE_MISMATCH, t.q.shape[dim] -= 1);
        EXPECTL(AK_ERR_SHAPE_MISMATCH, t.k.shape[dim] -= 1);
        EXPECTL(AK_ERR_SHAPE_MISMATCH, t.v.shape[dim] -= 1);
        EXPECTL(AK_ERR_SHAPE_MISMATCH, t.o.shape[dim] -= 1);
        EXPECTL(AK_ERR_SHAPE_MISMATCH, t.state_in.shape[dim] -= 1);
        EXPECTL(AK_ERR_SHAPE_MISMATCH, t.state_out.shape[dim] -= 1);
    }
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.log_decay.shape[0] = NH - 1);
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.log_decay = ak_tensor_2d(ld, AK_F32, 1, NH));
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.q = ak_tensor_3d(q, AK_F32, NB * NH, NT, ND));
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.o = ak_tensor_3d(o, AK_F32, NB * NH, NT, NE));
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.state_in = ak_tensor_3d(si, AK_F32, NB * NH, ND, NE));
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.state_out = ak_tensor_4d(so, AK_F32, NB, NH, NE, ND)); /* [e][d] */
    EXPECTL(AK_ERR_SHAPE_MISMATCH, dd.seqlen = NT - 1);
    EXPECTL(AK_ERR_SHAPE_MISMATCH, dd.num_heads = NH + 1; float l4[4] = {-1, -1, -1, -1};
            t.log_decay = ak_tensor_1d(l4, AK_F32, 4));
    /* strides */
    EXPECTL(AK_ERR_BAD_STRIDE, t.q.stride[3] = -1);
    EXPECTL(AK_ERR_BAD_STRIDE, t.v.stride[0] = -60);
    EXPECTL(AK_ERR_BAD_STRIDE, t.state_in.stride[2] = -5);
    EXPECTL(AK_ERR_BAD_STRIDE, t.o.stride[2] = 0);
    EXPECTL(AK_ERR_BAD_STRIDE, t.state_out.stride[3] = 0);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.stride[2] = 1);          /* rows of o alias each other */
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out.stride[2] = 2); /* rows of state_out alias */
    EXPECTL(AK_OK, t.q.stride[0] = 0);                         /* inputs may broadcast */
    EXPECTL(AK_OK, t.state_in.stride[0] = 0);
    /* alignment: data pointers must be aligned to the element size */
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.q.data = (unsigned char *)q + 1);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.o.data = (unsigned char *)o + 2);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.state_in.data = (unsigned char *)si + 1);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.state_out.data = (unsigned char *)so + 3);
    EXPECTL(AK_ERR_INVALID_ARGUMENT, t.log_decay.data = (unsigned char *)ld + 2);
    /* overlaps: o with every input; state_out with every input (except state_in itself) and with o */
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.data = q);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.data = q + 5);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.data = k);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.data = v);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.data = si);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o = ak_tensor_4d(big, AK_F32, NB, NH, NT, NE); t.log_decay.data = big + 17);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out.data = q);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out.data = v + 7);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out.data = o);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out.data = o + NB * NH * NT * NE - 1);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out.data = si + 1);            /* state_in shifted */
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out = t.state_in; t.state_out.stride[2] = 1; t.state_out.stride[3] = ND);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.state_out = ak_tensor_4d(big, AK_F32, NB, NH, ND, NE); t.log_decay.data = big);
    EXPECTL(AK_OK, t.state_out = t.state_in);                           /* exactly state_in: in place */
    EXPECTL(AK_OK, dd.has_initial_state = 0; t.state_in = t.o);         /* unused state_in may be anything */
    EXPECTL(AK_OK, dd.block = 0);
    EXPECTL(AK_OK, dd.seqlen = 0; t.q.shape[2] = t.k.shape[2] = t.v.shape[2] = t.o.shape[2] = 0);
    /* T = 0 with the library's own BSHD views: stride[0] = T * H * D = 0, but the view has no element */
    EXPECTL(AK_OK, dd.seqlen = 0; t.q = ak_tensor_bshd(q, AK_F32, NB, 0, NH, ND); t.k = ak_tensor_bshd(k, AK_F32, NB, 0, NH, ND);
            t.v = ak_tensor_bshd(v, AK_F32, NB, 0, NH, NE); t.o = ak_tensor_bshd(o, AK_F32, NB, 0, NH, NE));

    /* ragged base: 3 sequences of 4, 0, 6 rows, tensors [1][H][10][.], states [3][H][d][e] */
    int32_t cu[4] = {0, 4, 4, 10};
    B_d.batch = 3, B_d.cu_seqlens = cu, B_d.seqlen = 0;
    B_t.q = ak_tensor_4d(q, AK_F32, 1, NH, NT, ND), B_t.k = ak_tensor_4d(k, AK_F32, 1, NH, NT, ND);
    B_t.v = ak_tensor_4d(v, AK_F32, 1, NH, NT, NE), B_t.o = ak_tensor_4d(o, AK_F32, 1, NH, NT, NE);
    B_t.state_in = ak_tensor_4d(si, AK_F32, 3, NH, ND, NE);
    B_t.state_out = ak_tensor_4d(so, AK_F32, 3, NH, ND, NE);
    EXPECTL(AK_OK, (void)0);
    EXPECTL(AK_OK, dd.seqlen = -5);    /* ignored when ragged */
    EXPECTL(AK_OK, dd.seqlen = 12345); /* ignored when ragged */
    EXPECTL(AK_ERR_BAD_METADATA, int32_t c2[4] = {1, 4, 4, 10}; dd.cu_seqlens = c2);
    EXPECTL(AK_ERR_BAD_METADATA, int32_t c2[4] = {-1, 4, 4, 10}; dd.cu_seqlens = c2);
    EXPECTL(AK_ERR_BAD_METADATA, int32_t c2[4] = {0, 5, 4, 10}; dd.cu_seqlens = c2);
    EXPECTL(AK_ERR_BAD_METADATA, int32_t c2[4] = {0, 4, 4, 3}; dd.cu_seqlens = c2);
    EXPECTL(AK_ERR_BAD_METADATA, int32_t c2[4] = {0, 4, 4, 11}; dd.cu_seqlens = c2); /* beyond the packed rows */
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.q.shape[0] = 2);                                   /* ragged: batch dim 1 */
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.o.shape[0] = 3);
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.state_in.shape[0] = 1); /* states: one per sequence */
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.state_out.shape[0] = 2);
    EXPECTL(AK_ERR_SHAPE_MISMATCH, t.k.shape[2] = NT - 1);
    EXPECTL(AK_ERR_OUTPUT_OVERLAP, t.o.data = q);

    /* last (an implementation that allocates O(block^2) asks for exabytes here): a block far beyond the
     * sequence is valid, one block then holds each sequence */
    B_d.block = 1 << 30;
    EXPECTL(AK_OK, (void)0);
    EXPECTL(AK_OK, dd.block = INT32_MAX);
}

/* ---- main ------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    g_verbose = (int)tu_env_long("AK_SWEEP_VERBOSE", 0);
    g_quick = (int)tu_env_long("AK_LINEAR_QUICK", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    const long sweep_n = argc > 2 ? strtol(argv[2], NULL, 10) : (g_quick ? 40 : 100);
    if (ak_ctx_create(&g_ctx) != AK_OK || ak_ctx_create(&g_ctx1) != AK_OK || ak_ctx_create(&g_ctx3) != AK_OK) {
        fprintf(stderr, "test_linear: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(g_ctx1, 1);
    ak_ctx_set_num_threads(g_ctx3, 3);
    double t0 = tu_now();
    int any = 0;
#define GROUP(name, call)                                                                               \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                        \
        double tg_ = tu_now();                                                                          \
        call;                                                                                           \
        any = 1;                                                                                        \
        if (g_verbose)                                                                                  \
            printf("group %s: %.2f s\n", name, tu_now() - tg_);                                         \
    }
    GROUP("decay", group_decay())
    GROUP("invalid", group_invalid())
    GROUP("grid", group_grid())
    GROUP("split", group_split())
    GROUP("ragged", group_ragged())
    GROUP("long", group_long())
    GROUP("sweep", group_sweep(sweep_n))
#undef GROUP
    ak_ctx_destroy(g_ctx), ak_ctx_destroy(g_ctx1), ak_ctx_destroy(g_ctx3);
    if (!any) {
        fprintf(stderr, "test_linear: unknown group '%s' (grid, sweep, split, ragged, long, decay, invalid, all)\n", group);
        return 2;
    }
    if (g_stats.cases && g_verbose)
        printf("%d verified cases; worst fp32 err / allowed = %.3f\n", g_stats.cases, g_stats.worst_ratio);
    char name[64];
    snprintf(name, sizeof name, "test_linear %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
