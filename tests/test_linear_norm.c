/*
 * test_linear_norm.c — the output normalization and gate of linear attention (TNL NormAttention):
 * desc.norm = AK_LA_NORM_SRMS (desc.norm_eps), desc.has_gate / tensors.gate, grads.d_gate, through
 * ak_la_forward, ak_la_recurrent, ak_la_forward_ref, ak_la_backward and ak_la_backward_ref. Written only
 * from the contract in include/attnkit.h (section "Linear attention"):
 *   x = the plain linear-attention output; per token (sequence b, packed row t), over all H heads (N = H e):
 *     o[b][h][t][.] = x[b][h][t][.] / sqrt(mean_{h', y} x[b][h'][t][y]^2 + eps)   (SRMS; r = that 1/sqrt)
 *     then o *= gate[b][h][t][.] iff has_gate (a gate without the norm: o = x gate)
 *   backward: y = x r, dy = d_o gate (or d_o), d_gate = d_o y, dx = r (dy - y mean(y dy)) (no norm: dx = dy),
 *     dq/dk/dv/d_state_in = the plain backward applied to dx. The state is not affected by the norm.
 *   Ragged batches normalize per packed token; padding rows are 0 in o and in dq/dk/dv/d_gate.
 *
 * Groups (test_linear_norm <group> [N]; no group = all):
 *   fwd      random cases (seed = case index; AK_SWEEP_N cases from AK_SWEEP_FIRST, default N 60, 16 with
 *            AK_LINEAR_QUICK=1), then 3 fixed ragged ones: H 1..6, d, e in {1,3,17,59,64,111,128},
 *            T in {0,1,17,63,64,65,200}, ragged (with empty sequences and padding rows) or dense, decay, initial
 *            state, f32/bf16/f16 q/k/v/gate, f32/bf16 o, strided views, random eps (also 0.5 and 1e-12) and
 *            input scales (0.05: mean x^2 ~ eps). Oracle O64 = the test's own double norm/gate (a plain
 *            function) applied to x from ak_la_forward_ref (norm NONE, o F64). Checks:
 *              ak_la_forward_ref with the norm (o F64):  max|o - O64| <= 1e-12 max|O64|
 *              ak_la_forward, ak_la_recurrent:  max|o - O64| <= 2 err(naive32) + 4 cond + floor,
 *                floor = 1e-6 max(1, max|O64|) (+ 2 ulp of o's dtype at max|O64| for bf16 o); naive32 = x by the
 *                fp32 recurrence, then the norm / gate in fp32 (sum of squares accumulated in float), rounded to
 *                dtype_o; cond = the largest change of the exact output when every input moves by one f32 ulp
 *                (two random draws; see verify_fwd: ~u max|o| unless the norm amplifies the error of x);
 *              padding rows exactly 0, no write outside the views, inputs unmodified, state_out bytes equal
 *              to a run without norm/gate (and untouched without return_final_state), 1 and 3 threads give
 *              identical bytes (forward and recurrent).
 *   bwd      small random cases (seed = case index; AK_SWEEP_N cases, default 150, 50 quick): norm and/or
 *            gate, with and without d_state_out / initial state / decay, ragged or dense, H 1..4, d, e 1..17,
 *            T 0..64, f32/bf16/f16 q/k/v/gate, d_o and gradient outputs, strided views.
 *              ak_la_backward vs ak_la_backward_ref (F64 outputs) per gradient (dq, dk, dv, d_state_in,
 *                d_gate): err <= 2 err(naive32) + 4 cond + 4 u bnd + floor (floor as above; see check_grad),
 *                naive32 = the test's own fp32 computation (x by the recurrence, the norm backward in fp32,
 *                dq by the forward recurrence, dk/dv/d_state_in by the reverse recurrence of dL/dS); the same
 *                code in double must agree with ak_la_backward_ref;
 *              ak_la_backward_ref vs central finite differences (f32 cases: inputs on the grid k/1024, so
 *                x +- 2^-12 and x +- 2^-13 are exact) of L = sum(o W) (+ sum(S_final G_S) with d_state_out;
 *                W = d_o, o from ak_la_forward_ref in F64, S_final by the test's double recurrence) for
 *                elements and random directions of q, k, v, gate and state_in; see fd_check for the tolerance;
 *              padding rows 0; d_gate / d_state_in untouched when unflagged; 1 and 3 threads identical.
 *   invalid  every invalid norm / gate input with its exact status (src/core/linear.c), outputs untouched
 *            after a refusal, a last-error message; block <= 4096 after capping at the longest sequence.
 *
 * Environment: AK_SWEEP_N / AK_SWEEP_FIRST (case count / first case of fwd and bwd), AK_SWEEP_VERBOSE=1
 * (every case), AK_LINEAR_QUICK=1 (sanitizer builds: fewer and smaller cases).
 * Reproduce case i:  AK_SWEEP_FIRST=i AK_SWEEP_N=1 AK_SWEEP_VERBOSE=1 ./test_linear_norm fwd   (or bwd)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define MAXH 6
#define MAXSEQ 4

static int g_verbose = 0;
static int g_quick = 0;
static ak_ctx *g_ctx = NULL;  /* references, default thread count */
static ak_ctx *g_ctx1 = NULL; /* 1 thread */
static ak_ctx *g_ctx3 = NULL; /* 3 threads */

typedef ak_status (*la_fn)(ak_ctx *, const ak_la_desc *, const ak_la_tensors *);

/* ================================================================================================
 * One problem
 * ============================================================================================== */

typedef struct ncase {
    int B, H, T, d, e;        /* B = sequences; T = the length of each (dense) */
    int ragged, pad;          /* ragged: cu_seqlens, tensors [1][H][cu[B] + pad][.] */
    int32_t cu[MAXSEQ + 1];
    ak_dtype dq, dout, ddo;   /* q/k/v/gate, o, d_o */
    float scale, eps;         /* eps 0: keep ak_la_desc_init's default */
    int has_decay, state_in, ret_state, dso;
    int norm, gate, block;
    float log_decay[MAXH];
    tlayout lq, lk, lv, lg, lo, lw;
    double amp, gmean;        /* q, k, v, state_in: amp U(-1, 1); gate: gmean + U(-1, 1) */
    int grid;                 /* every input value k / 1024, k in [-1024, 1024] */
    uint64_t seed;
} ncase;

static void ncase_default(ncase *c) {
    memset(c, 0, sizeof *c);
    c->B = c->H = 1;
    c->d = c->e = 4;
    c->dq = c->dout = c->ddo = AK_F32;
    c->scale = 1.0f;
    c->amp = 1.0;
    c->lq = c->lk = c->lv = c->lg = c->lo = c->lw = LAY_CONTIG;
}

static int seq_len(const ncase *c, int b) { return c->ragged ? c->cu[b + 1] - c->cu[b] : c->T; }
static int seq_off(const ncase *c, int b) { return c->ragged ? c->cu[b] : 0; }
static int seq_bidx(const ncase *c, int b) { return c->ragged ? 0 : b; }

static void ncase_str(const ncase *c, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "b%d_h%d_", c->B, c->H);
    if (c->ragged) {
        k += (size_t)snprintf(buf + k, n - k, "cu[");
        for (int b = 0; b <= c->B && k < n; b++)
            k += (size_t)snprintf(buf + k, n - k, b ? ",%d" : "%d", c->cu[b]);
        if (k < n) k += (size_t)snprintf(buf + k, n - k, "]+pad%d", c->pad);
    } else if (k < n) {
        k += (size_t)snprintf(buf + k, n - k, "t%d", c->T);
    }
    if (k < n)
        k += (size_t)snprintf(buf + k, n - k, "_d%d_e%d_%s_o%s_do%s_scale%g_block%d%s%s%s %s eps %g%s lay q/k/v/g/o/do %s/%s/%s/%s/%s/%s",
                              c->d, c->e, tu_dtype_short(c->dq), tu_dtype_short(c->dout), tu_dtype_short(c->ddo),
                              (double)c->scale, c->block, c->state_in ? "_h0" : "", c->ret_state ? "_hT" : "",
                              c->dso ? "_dso" : "", c->norm ? "SRMS" : "no-norm", c->eps > 0 ? (double)c->eps : 1e-6,
                              c->gate ? " gate" : "", tlayout_name(c->lq), tlayout_name(c->lk), tlayout_name(c->lv),
                              tlayout_name(c->lg), tlayout_name(c->lo), tlayout_name(c->lw));
    if (k < n) k += (size_t)snprintf(buf + k, n - k, " amp %g gmean %g%s", c->amp, c->gmean, c->grid ? " grid" : "");
    if (c->has_decay && k < n) {
        k += (size_t)snprintf(buf + k, n - k, " log_decay[");
        for (int h = 0; h < c->H && k < n; h++)
            k += (size_t)snprintf(buf + k, n - k, h ? ",%.9g" : "%.9g", (double)c->log_decay[h]);
        if (k < n) snprintf(buf + k, n - k, "]");
    }
}

typedef struct nprob {
    ncase c;
    int nb, rows;                 /* tensor dims 0 and 2 */
    tbuf q, k, v, g, ld, si;      /* forward inputs; g, ld, si NaN (never filled) when unflagged */
    tbuf w, gs;                   /* d_o (= W of the loss), d_state_out (NaN without dso) */
    double *Q, *K, *V, *G, *W;    /* dense copies [nb][H][rows][.] of what the tensors hold */
    double *S0, *GS;              /* [B][H][d][e] (zeros when unflagged) */
    double LD[MAXH];              /* log_decay as stored (f32), 0 without decay */
    float eps;                    /* the norm_eps the descriptor carries */
} nprob;

static int64_t idx4(int64_t n1, int64_t n2, int64_t n3, int64_t a, int64_t b, int64_t c, int64_t d) {
    return ((a * n1 + b) * n2 + c) * n3 + d;
}

static double draw(rng *r, const ncase *c, double amp, double mean) {
    if (c->grid) return (double)(rng_int(r, 2049) - 1024) / 1024.0;
    return mean + amp * rng_range(r, -1.0, 1.0);
}

/* Fill the valid rows of a [nb][H][rows][n] tensor; padding rows keep the NaN poison. */
static void fill_rows(const nprob *p, tbuf *b, int n, rng *r, double amp, double mean) {
    const ncase *c = &p->c;
    for (int s = 0; s < c->B; s++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < seq_len(c, s); i++)
                for (int x = 0; x < n; x++)
                    ten_set4(&b->t, seq_bidx(c, s), h, seq_off(c, s) + i, x, draw(r, c, amp, mean));
}

static void fill_state(const nprob *p, tbuf *b, rng *r, double amp) {
    const ncase *c = &p->c;
    for (int s = 0; s < c->B; s++)
        for (int h = 0; h < c->H; h++)
            for (int x = 0; x < c->d; x++)
                for (int y = 0; y < c->e; y++)
                    ten_set4(&b->t, s, h, x, y, draw(r, c, amp, 0.0));
}

static double *dense_of(const tbuf *b) {
    double *x = (double *)malloc((size_t)(tbuf_numel(b) + 1) * sizeof(double));
    if (x) tbuf_to_f64(b, x);
    return x;
}

static ak_la_desc nprob_desc(const nprob *p, int with_norm) {
    const ncase *c = &p->c;
    ak_la_desc d;
    ak_la_desc_init(&d);
    d.batch = c->B, d.num_heads = c->H, d.seqlen = c->ragged ? 0 : c->T;
    d.head_dim = c->d, d.head_dim_v = c->e;
    d.dtype_qkv = c->dq, d.dtype_o = c->dout, d.scale = c->scale;
    d.has_decay = c->has_decay, d.has_initial_state = c->state_in, d.return_final_state = c->ret_state;
    d.block = c->block;
    d.cu_seqlens = c->ragged ? p->c.cu : NULL;
    if (with_norm) {
        d.norm = c->norm ? AK_LA_NORM_SRMS : AK_LA_NORM_NONE;
        if (c->eps > 0) d.norm_eps = c->eps;
        d.has_gate = c->gate;
    }
    return d;
}

/* The tensors; the gate, log_decay and state_in views are always passed (NaN when their flag is off). */
static ak_la_tensors nprob_tensors(const nprob *p, const tbuf *o, const tbuf *so) {
    ak_la_tensors t;
    ak_la_tensors_init(&t);
    t.q = p->q.t, t.k = p->k.t, t.v = p->v.t, t.gate = p->g.t, t.log_decay = p->ld.t, t.state_in = p->si.t;
    if (o) t.o = o->t;
    if (so) t.state_out = so->t;
    return t;
}

static void nprob_free(nprob *p) {
    tbuf_free(&p->q), tbuf_free(&p->k), tbuf_free(&p->v), tbuf_free(&p->g), tbuf_free(&p->ld), tbuf_free(&p->si);
    tbuf_free(&p->w), tbuf_free(&p->gs);
    free(p->Q), free(p->K), free(p->V), free(p->G), free(p->W), free(p->S0), free(p->GS);
    memset(p, 0, sizeof *p);
}

static int nprob_create(nprob *p, const ncase *c) {
    memset(p, 0, sizeof *p);
    p->c = *c;
    p->nb = c->ragged ? 1 : c->B;
    p->rows = c->ragged ? c->cu[c->B] + c->pad : c->T;
    rng r = rng_seed(c->seed * 7919u + 17u);
    int64_t sq[4] = {p->nb, c->H, p->rows, c->d}, sv[4] = {p->nb, c->H, p->rows, c->e};
    int64_t ss[4] = {c->B, c->H, c->d, c->e}, sh[1] = {c->H};
    if (tbuf_make(&p->q, c->dq, 4, sq, c->lq, &r) || tbuf_make(&p->k, c->dq, 4, sq, c->lk, &r) ||
        tbuf_make(&p->v, c->dq, 4, sv, c->lv, &r) || tbuf_make(&p->g, c->dq, 4, sv, c->lg, &r) ||
        tbuf_make(&p->ld, AK_F32, 1, sh, rng_chance(&r, 0.5) ? LAY_PADDED : LAY_CONTIG, &r) ||
        tbuf_make(&p->si, AK_F32, 4, ss, rng_chance(&r, 0.5) ? LAY_PADDED : LAY_PERMUTED, &r) ||
        tbuf_make(&p->w, c->ddo, 4, sv, c->lw, &r) || tbuf_make(&p->gs, AK_F32, 4, ss, LAY_PADDED, &r))
        return -1;
    fill_rows(p, &p->q, c->d, &r, c->amp, 0.0);
    fill_rows(p, &p->k, c->d, &r, c->amp, 0.0);
    fill_rows(p, &p->v, c->e, &r, c->amp, 0.0);
    if (c->gate) fill_rows(p, &p->g, c->e, &r, 1.0, c->gmean);
    fill_rows(p, &p->w, c->e, &r, 1.0, 0.0);
    p->Q = dense_of(&p->q), p->K = dense_of(&p->k), p->V = dense_of(&p->v), p->G = dense_of(&p->g);
    p->W = dense_of(&p->w);
    const size_t ns = (size_t)c->B * c->H * c->d * c->e + 1;
    p->S0 = (double *)calloc(ns, sizeof(double));
    p->GS = (double *)calloc(ns, sizeof(double));
    if (!p->Q || !p->K || !p->V || !p->G || !p->W || !p->S0 || !p->GS) return -1;
    for (int h = 0; h < c->H && c->has_decay; h++) {
        int64_t ih = h;
        ten_set(&p->ld.t, &ih, (double)c->log_decay[h]);
        p->LD[h] = ten_get(&p->ld.t, &ih);
    }
    if (c->state_in) {
        fill_state(p, &p->si, &r, c->amp);
        free(p->S0);
        p->S0 = dense_of(&p->si);
    }
    if (c->dso) {
        fill_state(p, &p->gs, &r, 1.0);
        free(p->GS);
        p->GS = dense_of(&p->gs);
    }
    if (!p->S0 || !p->GS) return -1;
    p->eps = nprob_desc(p, 1).norm_eps;
    return 0;
}

/* ================================================================================================
 * The test's own computations (no library code), on the inputs as dense doubles: as stored, or every input
 * the library reads moved by one f32 ulp (the conditioning estimate)
 * ============================================================================================== */

#define U32 (1.0 / 16777216.0) /* 2^-24: the unit roundoff of f32 */

typedef struct dins {
    double *Q, *K, *V, *G, *W, *S0, *GS; /* as in nprob; owned only when `owned` */
    double LD[MAXH];
    int owned;
} dins;

static dins dins_of(const nprob *p) {
    dins d;
    memset(&d, 0, sizeof d);
    d.Q = p->Q, d.K = p->K, d.V = p->V, d.G = p->G, d.W = p->W, d.S0 = p->S0, d.GS = p->GS;
    memcpy(d.LD, p->LD, sizeof d.LD);
    return d;
}

static void dins_free(dins *d) {
    if (d->owned) free(d->Q), free(d->K), free(d->V), free(d->G), free(d->W), free(d->S0), free(d->GS);
    memset(d, 0, sizeof *d);
}

/* mode 1: x -> one of its two f32 neighbours (random); mode 2: |x|; NaN (padding rows) stays NaN */
static double *moved_copy(const double *src, int64_t n, int mode, rng *r) {
    double *x = (double *)malloc(sizeof(double) * (size_t)(n + 1));
    if (!x) return NULL;
    for (int64_t i = 0; i < n; i++)
        x[i] = !isfinite(src[i]) || mode == 0 ? src[i]
             : mode == 2                      ? fabs(src[i])
                                              : (double)nextafterf((float)src[i], rng_chance(r, 0.5) ? INFINITY : -INFINITY);
    return x;
}

/* perturb = 1: q, k, v, gate, d_o, state_in, d_state_out, log_decay each moved by one f32 ulp (those in use);
 * perturb = 0: absolute values of q, k, v, state_in and no d_state_out (the backward's error bound below). */
static int dins_make(const nprob *p, dins *d, int perturb, rng *r) {
    const ncase *c = &p->c;
    const int64_t nq = (int64_t)p->nb * c->H * p->rows * c->d, nv = (int64_t)p->nb * c->H * p->rows * c->e;
    const int64_t ns = (int64_t)c->B * c->H * c->d * c->e;
    const int m = perturb ? 1 : 2;
    memset(d, 0, sizeof *d);
    d->owned = 1;
    d->Q = moved_copy(p->Q, nq, m, r), d->K = moved_copy(p->K, nq, m, r), d->V = moved_copy(p->V, nv, m, r);
    d->G = moved_copy(p->G, nv, c->gate ? m : 0, r), d->W = moved_copy(p->W, nv, m, r);
    d->S0 = moved_copy(p->S0, ns, c->state_in ? m : 0, r);
    d->GS = moved_copy(p->GS, ns, c->dso && perturb ? 1 : 0, r);
    if (d->GS && !perturb) memset(d->GS, 0, sizeof(double) * (size_t)ns);
    for (int h = 0; h < MAXH; h++)
        d->LD[h] = perturb && c->has_decay ? (double)nextafterf((float)p->LD[h], rng_chance(r, 0.5) ? INFINITY : -INFINITY)
                                           : p->LD[h];
    return d->Q && d->K && d->V && d->G && d->W && d->S0 && d->GS ? 0 : -1;
}

/* x by the recurrence S = lambda S + k v^T, x_t = S^T (c q_t) (accumulated in index order) in REAL arithmetic:
 * float for naive32 (lambda = expf(log_decay)), double for the conditioning estimate. X: dense
 * [nb][H][rows][e], 0 in padding rows. */
#define DEF_XREC(NAME, REAL, EXPF)                                                                        \
    static int NAME(const nprob *p, const dins *in, double *X) {                                          \
        const ncase *c = &p->c;                                                                           \
        const int d = c->d, e = c->e, H = c->H, R = p->rows;                                              \
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(d * e + 1));                                     \
        if (!S) return -1;                                                                                \
        memset(X, 0, sizeof(double) * (size_t)p->nb * H * R * e);                                         \
        for (int b = 0; b < c->B; b++)                                                                    \
            for (int h = 0; h < H; h++) {                                                                 \
                const int n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bidx(c, b);                     \
                const REAL lam = c->has_decay ? EXPF((REAL)in->LD[h]) : (REAL)1;                          \
                for (int i = 0; i < d * e; i++)                                                           \
                    S[i] = (REAL)in->S0[(size_t)(b * H + h) * d * e + i];                                 \
                for (int t = 0; t < n; t++) {                                                             \
                    const double *q = in->Q + idx4(H, R, d, bi, h, r0 + t, 0);                            \
                    const double *k = in->K + idx4(H, R, d, bi, h, r0 + t, 0);                            \
                    const double *v = in->V + idx4(H, R, e, bi, h, r0 + t, 0);                            \
                    for (int i = 0; i < d; i++)                                                           \
                        for (int j = 0; j < e; j++)                                                       \
                            S[i * e + j] = lam * S[i * e + j] + (REAL)k[i] * (REAL)v[j];                  \
                    for (int j = 0; j < e; j++) {                                                         \
                        REAL acc = 0;                                                                     \
                        for (int i = 0; i < d; i++)                                                       \
                            acc += S[i * e + j] * ((REAL)c->scale * (REAL)q[i]);                          \
                        X[idx4(H, R, e, bi, h, r0 + t, j)] = (double)acc;                                 \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        free(S);                                                                                          \
        return 0;                                                                                         \
    }
DEF_XREC(xrec32, float, expf)
DEF_XREC(xrec64, double, exp)

/* The norm / gate on a dense x: per token r = 1 / sqrt(sum x^2 / N + eps) (sum in index order), o = x r (. gate),
 * in REAL arithmetic, rounded to `dt` (AK_F64: unrounded). 0 in padding rows. */
#define DEF_NORMF(NAME, REAL, SQRT)                                                                       \
    static void NAME(const nprob *p, const dins *in, const double *X, double *O, ak_dtype dt) {           \
        const ncase *c = &p->c;                                                                           \
        const int H = c->H, e = c->e, R = p->rows;                                                        \
        memset(O, 0, sizeof(double) * (size_t)p->nb * H * R * e);                                         \
        for (int b = 0; b < c->B; b++) {                                                                  \
            const int bi = seq_bidx(c, b);                                                                \
            for (int t = seq_off(c, b); t < seq_off(c, b) + seq_len(c, b); t++) {                         \
                REAL ss = 0;                                                                              \
                for (int h = 0; h < H; h++)                                                               \
                    for (int y = 0; y < e; y++) {                                                         \
                        const REAL x = (REAL)X[idx4(H, R, e, bi, h, t, y)];                               \
                        ss += x * x;                                                                      \
                    }                                                                                     \
                const REAL rs = c->norm ? (REAL)1 / SQRT(ss / (REAL)(H * e) + (REAL)p->eps) : (REAL)1;    \
                for (int h = 0; h < H; h++)                                                               \
                    for (int y = 0; y < e; y++) {                                                         \
                        const int64_t i = idx4(H, R, e, bi, h, t, y);                                     \
                        REAL o = (REAL)X[i] * rs;                                                         \
                        if (c->gate) o *= (REAL)in->G[i];                                                 \
                        O[i] = tu_round_to(dt, (double)o);                                                \
                    }                                                                                     \
            }                                                                                             \
        }                                                                                                 \
    }
DEF_NORMF(norm32, float, sqrtf)
DEF_NORMF(norm64, double, sqrt)

/* ================================================================================================
 * Comparisons
 * ============================================================================================== */



/* floor of the accuracy rule: 1e-6 max(1, max|ref|), plus 2 ulp of a bf16 / f16 output at max|ref| */
static double rule_floor(ak_dtype dt, double mref) {
    return 1e-6 * fmax(1.0, mref) + (dt == AK_BF16 || dt == AK_F16 ? 2.0 * tu_ulp(dt, mref) : 0.0);
}

static double g_worst_fwd = 0.0, g_worst_bwd = 0.0, g_worst_fd = 0.0, g_worst_step = 0.0;

/* err(x) <= 2 err(naive32) + 4 cond + floor over n dense elements (cond: the conditioning term, see verify_fwd). */
static void check_rule(const char *label, const char *what, const double *x, const double *ref, const double *nv,
                       int64_t n, ak_dtype dt, double cond) {
    const double mref = tu_max_abs(ref, n), floor_ = rule_floor(dt, mref);
    const double e_x = tu_max_err(x, ref, n), e_nv = tu_max_err(nv, ref, n), allowed = 2.0 * e_nv + 4.0 * cond + floor_;
    CHECK(e_x <= allowed, "%s: %s: max err %.3g > 2 x naive32 %.3g + 4 x cond %.3g + floor %.3g (max|ref| %.3g)", label,
          what, e_x, e_nv, cond, floor_, mref);
    if (dt == AK_F32) g_worst_fwd = fmax(g_worst_fwd, e_x / allowed);
    if (g_verbose > 1)
        printf("  %s: err %.3g naive32 %.3g cond %.3g floor %.3g max|ref| %.3g\n", what, e_x, e_nv, cond, floor_, mref);
}

/* Padding rows (ragged: packed rows >= cu[B]) of a [1][H][rows][n] view: all exactly 0. */
static int64_t nonzero_padding(const nprob *p, const tbuf *b) {
    int64_t bad = 0;
    if (!p->c.ragged) return 0;
    for (int h = 0; h < p->c.H; h++)
        for (int64_t r = p->c.cu[p->c.B]; r < p->rows; r++)
            for (int64_t x = 0; x < b->t.shape[3]; x++)
                bad += ten_get4(&b->t, 0, h, r, x) != 0.0;
    return bad;
}

static int all_poison(const tbuf *b) {
    tbuf fresh;
    if (tbuf_make_like(&fresh, b)) return 0;
    int same = tbuf_same_bytes(&fresh, b);
    tbuf_free(&fresh);
    return same;
}

static int snapshot(tbuf *dst, const tbuf *src) {
    if (tbuf_make_like(dst, src)) return -1;
    memcpy(dst->mem, src->mem, src->mem_elems * src->esize);
    return 0;
}

/* Run fn with freshly poisoned o and so. */
static ak_status run_fwd(ak_ctx *ctx, la_fn fn, const nprob *p, int with_norm, ak_dtype dout, tbuf *o, tbuf *so) {
    tbuf_poison(o);
    tbuf_poison(so);
    ak_la_desc d = nprob_desc(p, with_norm);
    d.dtype_o = dout;
    ak_la_tensors t = nprob_tensors(p, o, so);
    return fn(ctx, &d, &t);
}

/* ================================================================================================
 * Group fwd
 * ============================================================================================== */

static const int FW_DIMS[7] = {1, 3, 17, 59, 64, 111, 128};
static const int FW_T[7] = {0, 1, 17, 63, 64, 65, 200};
static const int FW_BLOCKS[7] = {0, 1, 3, 16, 64, 100, 37};

static float random_log_decay(rng *r) {
    switch (rng_int(r, 6)) {
    case 0: return 0.0f; /* lambda = 1 with has_decay on */
    case 1: return (float)log(0.9);
    case 2: return -0.5f;
    case 3: return (float)log(9e-4);
    case 4: return (float)-pow(2.0, -8.0 * (1 + rng_int(r, 8)) / 8.0);
    default: return (float)rng_range(r, -3.0, 0.0);
    }
}

static const tlayout IN_LAYS[5] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED, LAY_BCAST0};
static const tlayout OUT_LAYS[4] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};

/* the cost of the O(T^2) references: sum over sequences of H len^2 (d + e) */
static double ref_cost(const ncase *c) {
    double w = 0;
    for (int b = 0; b < c->B; b++)
        w += (double)c->H * seq_len(c, b) * seq_len(c, b) * (c->d + c->e);
    return w;
}

static void fwd_gen(ncase *c, uint64_t seed) {
    rng r = rng_seed(seed);
    ncase_default(c);
    c->seed = seed;
    c->H = 1 + rng_int(&r, 6);
    c->d = rng_pick(&r, FW_DIMS, 7);
    c->e = rng_chance(&r, 0.4) ? c->d : rng_pick(&r, FW_DIMS, 7);
    c->block = rng_pick(&r, FW_BLOCKS, 7);
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    c->dq = DT[rng_int(&r, 3)];
    c->dout = rng_chance(&r, 0.5) ? AK_F32 : AK_BF16;
    c->scale = rng_chance(&r, 0.5) ? 1.0f : 0.088f;
    c->has_decay = rng_chance(&r, 0.7);
    for (int h = 0; h < c->H; h++)
        c->log_decay[h] = c->has_decay ? random_log_decay(&r) : 0.0f;
    c->state_in = rng_chance(&r, 0.5);
    c->ret_state = rng_chance(&r, 0.6);
    c->norm = rng_chance(&r, 0.75);
    c->gate = rng_chance(&r, 0.6);
    if (!c->norm && !c->gate) c->norm = 1;
    if (rng_chance(&r, 0.4)) {
        static const float EPS[4] = {1e-5f, 1e-3f, 0.5f, 1e-12f};
        c->eps = EPS[rng_int(&r, 4)];
    }
    /* small inputs make mean(x^2) comparable with eps: the eps term matters */
    c->amp = rng_chance(&r, 0.15) ? 0.05 : rng_chance(&r, 0.1) ? 4.0 : 1.0;
    c->gmean = rng_chance(&r, 0.5) ? 0.0 : 0.5;
    c->ragged = rng_chance(&r, 0.3);
    if (c->ragged) {
        c->B = 1 + rng_int(&r, MAXSEQ);
        for (int b = 0; b < c->B; b++)
            c->cu[b + 1] = c->cu[b] + rng_pick(&r, FW_T, 7);
        c->pad = rng_int(&r, 4);
    } else {
        c->B = 1 + rng_int(&r, 3);
        c->T = rng_pick(&r, FW_T, 7);
    }
    c->lq = IN_LAYS[rng_int(&r, 5)], c->lk = IN_LAYS[rng_int(&r, 5)], c->lv = IN_LAYS[rng_int(&r, 5)];
    c->lg = IN_LAYS[rng_int(&r, 5)];
    c->lo = OUT_LAYS[rng_int(&r, 4)];
    if (!c->ragged && c->T == 0 && c->lo == LAY_BSHD) c->lo = LAY_CONTIG; /* T = 0 BSHD: stride[0] = 0 */
    /* cap the O(T^2) references: fewer sequences, then fewer heads, then narrower heads, then shorter */
    const double cap = g_quick ? 4e6 : 1.5e7;
    while (ref_cost(c) > cap) {
        if (!c->ragged && c->B > 1)
            c->B--;
        else if (c->H > 2)
            c->H--;
        else if (c->d + c->e > 80) {
            if (c->d >= c->e) c->d = c->d > 64 ? 64 : 17;
            else c->e = c->e > 64 ? 64 : 17;
        } else if (c->ragged) {
            for (int b = 0; b < c->B; b++) {
                int len = (seq_len(c, b) + 1) / 2;
                c->cu[b + 1] = c->cu[b] + len;
            }
        } else
            c->T = (c->T + 1) / 2;
    }
}

static int verify_fwd(const ncase *c, const char *label_in) {
    const int fails0 = tc_failures;
    char desc[700], label[800];
    ncase_str(c, desc, sizeof desc);
    snprintf(label, sizeof label, "%s [%s]", label_in, desc);
    nprob p;
    if (nprob_create(&p, c)) {
        CHECK(0, "%s: allocation failed", label);
        nprob_free(&p);
        return 1;
    }
    const int64_t no = (int64_t)p.nb * c->H * p.rows * c->e;
    int64_t o_shape[4] = {p.nb, c->H, p.rows, c->e}, s_shape[4] = {c->B, c->H, c->d, c->e};
    rng r = rng_seed(c->seed + 99);
    tbuf x64, o64, o_a, o_b, o_pl, s_ref0, s_ref, s_a, s_b, s_pl, snap[6];
    int bad = tbuf_make(&x64, AK_F64, 4, o_shape, LAY_CONTIG, NULL) | tbuf_make(&o64, AK_F64, 4, o_shape, c->lo, &r) |
              tbuf_make(&o_a, c->dout, 4, o_shape, c->lo, &r) | tbuf_make(&s_ref0, AK_F32, 4, s_shape, LAY_PADDED, &r);
    bad |= tbuf_make_like(&o_b, &o_a) | tbuf_make_like(&o_pl, &o_a) | tbuf_make_like(&s_ref, &s_ref0) |
           tbuf_make_like(&s_a, &s_ref0) | tbuf_make_like(&s_b, &s_ref0) | tbuf_make_like(&s_pl, &s_ref0);
    const tbuf *ins[6] = {&p.q, &p.k, &p.v, &p.g, &p.ld, &p.si};
    for (int i = 0; i < 6; i++)
        bad |= snapshot(&snap[i], ins[i]);
    double *O64 = (double *)calloc((size_t)no + 1, sizeof(double)), *N32 = (double *)calloc((size_t)no + 1, sizeof(double));
    double *XS = (double *)calloc((size_t)no + 1, sizeof(double)), *O64r = (double *)calloc((size_t)no + 1, sizeof(double));
    double *O64p = (double *)calloc((size_t)no + 1, sizeof(double));
    double *X = NULL, *xo = NULL, cond = 0.0;
    const dins in0 = dins_of(&p);
    if (bad || !O64 || !N32 || !XS || !O64r || !O64p) {
        CHECK(0, "%s: allocation failed", label);
        goto out;
    }

    /* 1. x in double (the reference without norm / gate); the test's own norm / gate on it */
    ak_status st = run_fwd(g_ctx, ak_la_forward_ref, &p, 0, AK_F64, &x64, &s_ref0);
    CHECK(st == AK_OK, "%s: ak_la_forward_ref (no norm): %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx));
    if (st != AK_OK || !(X = dense_of(&x64))) goto out;
    norm64(&p, &in0, X, O64, AK_F64);
    const double mref = tu_max_abs(O64, no);

    /* the conditioning term: the largest change of the exact output (the test's double recurrence, then the norm)
     * when every input (q, k, v, gate, state_in, log_decay) moves by one f32 ulp, over two random draws. With
     * little x in a token (mean x^2 near eps, or x the small difference of large terms) the norm turns the
     * absolute rounding error of x into a large relative one: an f32 algorithm as good as naive32 may then differ
     * from it by far more than 2x (measured: up to 9x at N = H e = 1), but stays within a few times this. */
    {
        rng rp = rng_seed(c->seed + 31);
        if (xrec64(&p, &in0, XS)) {
            CHECK(0, "%s: allocation failed", label);
            goto out;
        }
        norm64(&p, &in0, XS, O64r, AK_F64);
        const double e_own = tu_max_err(O64r, O64, no);
        for (int draw_ = 0; draw_ < 2; draw_++) {
            dins inp;
            if (dins_make(&p, &inp, 1, &rp) || xrec64(&p, &inp, XS)) {
                dins_free(&inp);
                goto out;
            }
            norm64(&p, &inp, XS, O64p, AK_F64);
            cond = fmax(cond, tu_max_err(O64p, O64r, no));
            dins_free(&inp);
        }
        /* the test's own double recurrence agrees with ak_la_forward_ref's x (through the same norm) */
        CHECK(e_own <= 1e-9 * fmax(1.0, mref) + 1e-6 * cond,
              "%s: the double recurrence + norm vs ak_la_forward_ref (no norm) + norm: err %.3g (cond %.3g, max|o| %.3g)",
              label, e_own, cond, mref);
    }

    /* 2. the reference with the norm / gate (o F64) */
    st = run_fwd(g_ctx, ak_la_forward_ref, &p, 1, AK_F64, &o64, &s_ref);
    CHECK(st == AK_OK, "%s: ak_la_forward_ref (norm): %s (%s)", label, ak_status_string(st), ak_ctx_last_error(g_ctx));
    if (st == AK_OK && (xo = dense_of(&o64))) {
        const double err = tu_max_err(xo, O64, no), tol = 1e-12 * mref;
        CHECK(err <= tol, "%s: ak_la_forward_ref with norm/gate vs the test's double norm of its x: err %.3g > %.3g (1e-12 max|o|)",
              label, err, tol);
        CHECK(nonzero_padding(&p, &o64) == 0, "%s: ak_la_forward_ref: non-zero padding rows", label);
        CHECK(tbuf_outside_untouched(&o64), "%s: ak_la_forward_ref wrote outside o", label);
        CHECK(tbuf_same_bytes(&s_ref, &s_ref0), "%s: ak_la_forward_ref: state_out differs from the run without norm/gate%s",
              label, c->ret_state ? "" : " (return_final_state = 0: must stay untouched)");
        if (!c->ret_state) CHECK(all_poison(&s_ref), "%s: ak_la_forward_ref wrote state_out without return_final_state", label);
        free(xo), xo = NULL;
    }

    /* 3. the naive fp32 computation; forward and recurrent: rule, padding, state, threads */
    if (xrec32(&p, &in0, XS)) {
        CHECK(0, "%s: allocation failed", label);
        goto out;
    }
    norm32(&p, &in0, XS, N32, c->dout);
    const char *names[2] = {"ak_la_forward", "ak_la_recurrent"};
    const la_fn fns[2] = {ak_la_forward, ak_la_recurrent};
    for (int f = 0; f < 2; f++) {
        char what[96];
        ak_status sp = run_fwd(g_ctx1, fns[f], &p, 0, c->dout, &o_pl, &s_pl);
        CHECK(sp == AK_OK, "%s: %s (no norm): %s (%s)", label, names[f], ak_status_string(sp), ak_ctx_last_error(g_ctx1));
        ak_status s1 = run_fwd(g_ctx1, fns[f], &p, 1, c->dout, &o_a, &s_a);
        CHECK(s1 == AK_OK, "%s: %s: %s (%s)", label, names[f], ak_status_string(s1), ak_ctx_last_error(g_ctx1));
        if (s1 != AK_OK) continue;
        if ((xo = dense_of(&o_a))) {
            snprintf(what, sizeof what, "%s o (%s)", names[f], tu_dtype_short(c->dout));
            check_rule(label, what, xo, O64, N32, no, c->dout, cond);
            free(xo), xo = NULL;
        }
        const int64_t npad = nonzero_padding(&p, &o_a);
        CHECK(npad == 0, "%s: %s: %lld non-zero padding elements of o", label, names[f], (long long)npad);
        CHECK(tbuf_outside_untouched(&o_a), "%s: %s wrote outside o", label, names[f]);
        CHECK(sp != AK_OK || tbuf_same_bytes(&s_a, &s_pl), "%s: %s: state_out differs from the run without norm/gate", label,
              names[f]);
        if (!c->ret_state) CHECK(all_poison(&s_a), "%s: %s wrote state_out without return_final_state", label, names[f]);
        ak_status s3 = run_fwd(g_ctx3, fns[f], &p, 1, c->dout, &o_b, &s_b);
        CHECK(s3 == AK_OK, "%s: %s on 3 threads: %s", label, names[f], ak_status_string(s3));
        CHECK(s3 != AK_OK || (tbuf_same_bytes(&o_a, &o_b) && tbuf_same_bytes(&s_a, &s_b)),
              "%s: %s: 1 and 3 threads give different bytes", label, names[f]);
    }
    {
        static const char *in_names[6] = {"q", "k", "v", "gate", "log_decay", "state_in"};
        for (int i = 0; i < 6; i++)
            CHECK(tbuf_same_bytes(&snap[i], ins[i]), "%s: input %s was modified", label, in_names[i]);
    }
out:
    for (int i = 0; i < 6; i++)
        tbuf_free(&snap[i]);
    tbuf_free(&x64), tbuf_free(&o64), tbuf_free(&o_a), tbuf_free(&o_b), tbuf_free(&o_pl);
    tbuf_free(&s_ref0), tbuf_free(&s_ref), tbuf_free(&s_a), tbuf_free(&s_b), tbuf_free(&s_pl);
    free(O64), free(N32), free(XS), free(O64r), free(O64p), free(X), free(xo);
    nprob_free(&p);
    if (g_verbose) printf("%s %s\n", tc_failures == fails0 ? "ok  " : "FAIL", label);
    return tc_failures != fails0;
}

static void group_fwd(long n) {
    const long first = tu_env_long("AK_SWEEP_FIRST", 0);
    n = tu_env_long("AK_SWEEP_N", n >= 0 ? n : g_quick ? 16 : 60);
    for (long i = first; i < first + n; i++) {
        ncase c;
        fwd_gen(&c, (uint64_t)i);
        char label[64];
        snprintf(label, sizeof label, "fwd case %ld", i);
        if (verify_fwd(&c, label))
            fprintf(stderr, "  rerun: AK_SWEEP_FIRST=%ld AK_SWEEP_N=1 AK_SWEEP_VERBOSE=2 ./test_linear_norm fwd\n", i);
    }
    /* a fixed case per branch on top: norm without gate, gate without norm, both; ragged with empty sequences */
    for (int k = 0; k < 3; k++) {
        ncase c;
        ncase_default(&c);
        c.seed = 900 + (uint64_t)k;
        c.B = 3, c.H = 4, c.d = 17, c.e = 59, c.ragged = 1, c.pad = 2;
        c.cu[0] = 0, c.cu[1] = 65, c.cu[2] = 65, c.cu[3] = 65 + 63;
        c.norm = k != 1, c.gate = k != 0, c.has_decay = 1, c.state_in = 1, c.ret_state = 1, c.block = 16;
        c.dq = k == 2 ? AK_BF16 : AK_F32, c.dout = k == 2 ? AK_BF16 : AK_F32;
        c.lo = LAY_PADDED, c.lg = LAY_PERMUTED;
        for (int h = 0; h < c.H; h++)
            c.log_decay[h] = (float)(-0.05 * h);
        char label[64];
        snprintf(label, sizeof label, "fwd fixed %d", k);
        verify_fwd(&c, label);
    }
}

/* ================================================================================================
 * Group bwd
 * ============================================================================================== */

typedef struct gset {
    tbuf dq, dk, dv, dsi, dg;
} gset;

static int gset_make(gset *o, const nprob *p, const ak_dtype dt[4] /* dq dk dv dg */, const tlayout lay[5], rng *r) {
    const ncase *c = &p->c;
    int64_t qs[4] = {p->nb, c->H, p->rows, c->d}, vs[4] = {p->nb, c->H, p->rows, c->e}, ss[4] = {c->B, c->H, c->d, c->e};
    memset(o, 0, sizeof *o);
    return tbuf_make(&o->dq, dt[0], 4, qs, lay[0], r) | tbuf_make(&o->dk, dt[1], 4, qs, lay[1], r) |
           tbuf_make(&o->dv, dt[2], 4, vs, lay[2], r) | tbuf_make(&o->dsi, AK_F32, 4, ss, lay[3], r) |
           tbuf_make(&o->dg, dt[3], 4, vs, lay[4], r);
}

static void gset_free(gset *o) {
    tbuf_free(&o->dq), tbuf_free(&o->dk), tbuf_free(&o->dv), tbuf_free(&o->dsi), tbuf_free(&o->dg);
}

static tbuf *gset_at(gset *o, int w) { return w == 0 ? &o->dq : w == 1 ? &o->dk : w == 2 ? &o->dv : w == 3 ? &o->dsi : &o->dg; }

/* The gradients; d_state_out, d_state_in and d_gate are always passed (unflagged: NaN / must stay untouched). */
static ak_la_grads gset_grads(const nprob *p, const gset *o) {
    ak_la_grads g;
    ak_la_grads_init(&g);
    g.d_o = p->w.t;
    g.has_d_state_out = p->c.dso;
    g.d_state_out = p->gs.t;
    g.dq = o->dq.t, g.dk = o->dk.t, g.dv = o->dv.t, g.d_state_in = o->dsi.t, g.d_gate = o->dg.t;
    return g;
}

static ak_status run_bwd(ak_ctx *ctx, int ref, const nprob *p, gset *o) {
    for (int w = 0; w < 5; w++)
        tbuf_poison(gset_at(o, w));
    ak_la_desc d = nprob_desc(p, 1);
    ak_la_tensors t = nprob_tensors(p, NULL, NULL);
    ak_la_grads g = gset_grads(p, o);
    return ref ? ak_la_backward_ref(ctx, &d, &t, &g) : ak_la_backward(ctx, &d, &t, &g);
}

/* The backward of the norm / gate in REAL arithmetic, per token: r = 1/sqrt(sum x^2 / N + eps), y = x r,
 * dy = d_o gate (or d_o), d_gate = d_o y, m = sum(y dy) / N, dx = r (dy - y m) (no norm: dx = dy).
 * DX, DG dense [nb][H][rows][e], 0 in padding rows. */
#define DEF_NORMB(NAME, REAL, SQRT)                                                                       \
    static void NAME(const nprob *p, const dins *in, const double *X, double *DX, double *DG) {           \
        const ncase *c = &p->c;                                                                           \
        const int H = c->H, e = c->e, R = p->rows;                                                        \
        const REAL N = (REAL)(H * e);                                                                     \
        memset(DX, 0, sizeof(double) * (size_t)p->nb * H * R * e);                                        \
        memset(DG, 0, sizeof(double) * (size_t)p->nb * H * R * e);                                        \
        for (int b = 0; b < c->B; b++) {                                                                  \
            const int bi = seq_bidx(c, b);                                                                \
            for (int t = seq_off(c, b); t < seq_off(c, b) + seq_len(c, b); t++) {                         \
                REAL ss = 0, m = 0;                                                                       \
                for (int h = 0; h < H; h++)                                                               \
                    for (int y = 0; y < e; y++) {                                                         \
                        const REAL x = (REAL)X[idx4(H, R, e, bi, h, t, y)];                               \
                        ss += x * x;                                                                      \
                    }                                                                                     \
                const REAL rs = c->norm ? (REAL)1 / SQRT(ss / N + (REAL)p->eps) : (REAL)1;                \
                for (int h = 0; h < H; h++)                                                               \
                    for (int y = 0; y < e; y++) {                                                         \
                        const int64_t i = idx4(H, R, e, bi, h, t, y);                                     \
                        const REAL yv = (REAL)X[i] * rs;                                                  \
                        const REAL dy = c->gate ? (REAL)in->W[i] * (REAL)in->G[i] : (REAL)in->W[i];       \
                        m += yv * dy;                                                                     \
                    }                                                                                     \
                m /= N;                                                                                   \
                for (int h = 0; h < H; h++)                                                               \
                    for (int y = 0; y < e; y++) {                                                         \
                        const int64_t i = idx4(H, R, e, bi, h, t, y);                                     \
                        const REAL yv = (REAL)X[i] * rs;                                                  \
                        const REAL dy = c->gate ? (REAL)in->W[i] * (REAL)in->G[i] : (REAL)in->W[i];       \
                        if (c->gate) DG[i] = (double)((REAL)in->W[i] * yv);                               \
                        DX[i] = (double)(c->norm ? rs * (dy - yv * m) : dy);                              \
                    }                                                                                     \
            }                                                                                             \
        }                                                                                                 \
    }
DEF_NORMB(normb32, float, sqrtf)
DEF_NORMB(normb64, double, sqrt)

/* The plain backward applied to DX, in REAL arithmetic, by recurrences (independent of the library's
 * materialised / chunked forms):
 *   dq_t = c S_t dx_t                                         (S_t by the forward recurrence)
 *   G = dS_final; for t = n-1 .. 0: G += (c q_t) dx_t^T, dk_t = G v_t, dv_t = G^T k_t, G *= lambda;  dS0 = G.
 * Outputs dense: DQ, DK [nb][H][rows][d], DV [nb][H][rows][e], DSI [B][H][d][e]. */
#define DEF_PLAINB(NAME, REAL, EXPF)                                                                      \
    static int NAME(const nprob *p, const dins *in, const double *DX, double *DQ, double *DK, double *DV, \
                    double *DSI) {                                                                        \
        const ncase *c = &p->c;                                                                           \
        const int d = c->d, e = c->e, H = c->H, R = p->rows;                                              \
        REAL *S = (REAL *)malloc(sizeof(REAL) * (size_t)(d * e + 1));                                     \
        REAL *G = (REAL *)malloc(sizeof(REAL) * (size_t)(d * e + 1));                                     \
        if (!S || !G) {                                                                                   \
            free(S), free(G);                                                                             \
            return -1;                                                                                    \
        }                                                                                                 \
        memset(DQ, 0, sizeof(double) * (size_t)p->nb * H * R * d);                                        \
        memset(DK, 0, sizeof(double) * (size_t)p->nb * H * R * d);                                        \
        memset(DV, 0, sizeof(double) * (size_t)p->nb * H * R * e);                                        \
        memset(DSI, 0, sizeof(double) * (size_t)c->B * H * d * e);                                        \
        for (int b = 0; b < c->B; b++)                                                                    \
            for (int h = 0; h < H; h++) {                                                                 \
                const int n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bidx(c, b);                     \
                const REAL lam = c->has_decay ? EXPF((REAL)in->LD[h]) : (REAL)1;                          \
                for (int i = 0; i < d * e; i++) {                                                         \
                    S[i] = (REAL)in->S0[(size_t)(b * H + h) * d * e + i];                                 \
                    G[i] = (REAL)in->GS[(size_t)(b * H + h) * d * e + i];                                 \
                }                                                                                         \
                for (int t = 0; t < n; t++) {                                                             \
                    const double *k = in->K + idx4(H, R, d, bi, h, r0 + t, 0);                            \
                    const double *v = in->V + idx4(H, R, e, bi, h, r0 + t, 0);                            \
                    const double *dx = DX + idx4(H, R, e, bi, h, r0 + t, 0);                              \
                    for (int i = 0; i < d; i++)                                                           \
                        for (int j = 0; j < e; j++)                                                       \
                            S[i * e + j] = lam * S[i * e + j] + (REAL)k[i] * (REAL)v[j];                  \
                    for (int i = 0; i < d; i++) {                                                         \
                        REAL acc = 0;                                                                     \
                        for (int j = 0; j < e; j++)                                                       \
                            acc += S[i * e + j] * (REAL)dx[j];                                            \
                        DQ[idx4(H, R, d, bi, h, r0 + t, i)] = (double)((REAL)c->scale * acc);             \
                    }                                                                                     \
                }                                                                                         \
                for (int t = n - 1; t >= 0; t--) {                                                        \
                    const double *q = in->Q + idx4(H, R, d, bi, h, r0 + t, 0);                            \
                    const double *k = in->K + idx4(H, R, d, bi, h, r0 + t, 0);                            \
                    const double *v = in->V + idx4(H, R, e, bi, h, r0 + t, 0);                            \
                    const double *dx = DX + idx4(H, R, e, bi, h, r0 + t, 0);                              \
                    for (int i = 0; i < d; i++) {                                                         \
                        const REAL cq = (REAL)c->scale * (REAL)q[i];                                      \
                        for (int j = 0; j < e; j++)                                                       \
                            G[i * e + j] += cq * (REAL)dx[j];                                             \
                    }                                                                                     \
                    for (int i = 0; i < d; i++) {                                                         \
                        REAL acc = 0;                                                                     \
                        for (int j = 0; j < e; j++)                                                       \
                            acc += G[i * e + j] * (REAL)v[j];                                             \
                        DK[idx4(H, R, d, bi, h, r0 + t, i)] = (double)acc;                                \
                    }                                                                                     \
                    for (int j = 0; j < e; j++) {                                                         \
                        REAL acc = 0;                                                                     \
                        for (int i = 0; i < d; i++)                                                       \
                            acc += G[i * e + j] * (REAL)k[i];                                             \
                        DV[idx4(H, R, e, bi, h, r0 + t, j)] = (double)acc;                                \
                    }                                                                                     \
                    for (int i = 0; i < d * e; i++)                                                       \
                        G[i] *= lam;                                                                      \
                }                                                                                         \
                for (int i = 0; i < d * e; i++)                                                           \
                    DSI[(size_t)(b * H + h) * d * e + i] = (double)G[i];                                  \
            }                                                                                             \
        free(S), free(G);                                                                                 \
        return 0;                                                                                         \
    }
DEF_PLAINB(plainb32, float, expf)
DEF_PLAINB(plainb64, double, exp)

/* Per element of dx, a bound of its f32 rounding error in units of u: r (|dy| + |y| (|m| + mean|y dy|)) (no
 * norm: |dy|). The component of dx along y is computed by cancellation (exactly it is r (y.dy) eps / (mean x^2
 * + eps), often ~0: N = 1, or dq for H = 1, d = 1), so this absolute error is no relative one. */
static void normb_bound(const nprob *p, const dins *in, const double *X, double *DXB) {
    const ncase *c = &p->c;
    const int H = c->H, e = c->e, R = p->rows;
    const double N = (double)H * e;
    memset(DXB, 0, sizeof(double) * (size_t)p->nb * H * R * e);
    for (int b = 0; b < c->B; b++) {
        const int bi = seq_bidx(c, b);
        for (int t = seq_off(c, b); t < seq_off(c, b) + seq_len(c, b); t++) {
            double ss = 0, m = 0, ma = 0;
            for (int h = 0; h < H; h++)
                for (int y = 0; y < e; y++)
                    ss += X[idx4(H, R, e, bi, h, t, y)] * X[idx4(H, R, e, bi, h, t, y)];
            const double rs = c->norm ? 1.0 / sqrt(ss / N + (double)p->eps) : 1.0;
            for (int h = 0; h < H; h++)
                for (int y = 0; y < e; y++) {
                    const int64_t i = idx4(H, R, e, bi, h, t, y);
                    const double yv = X[i] * rs, dy = in->W[i] * (c->gate ? in->G[i] : 1.0);
                    m += yv * dy, ma += fabs(yv * dy);
                }
            m /= N, ma /= N;
            for (int h = 0; h < H; h++)
                for (int y = 0; y < e; y++) {
                    const int64_t i = idx4(H, R, e, bi, h, t, y);
                    const double yv = X[i] * rs, dy = in->W[i] * (c->gate ? in->G[i] : 1.0);
                    DXB[i] = c->norm ? rs * (fabs(dy) + fabs(yv) * (fabs(m) + ma)) : fabs(dy);
                }
        }
    }
}

/* five dense gradients: dq, dk, dv, d_state_in, d_gate */
typedef struct dgrads {
    double *g[5];
} dgrads;

static int dgrads_alloc(dgrads *o, const nprob *p) {
    const ncase *c = &p->c;
    const size_t nq = (size_t)p->nb * c->H * p->rows * c->d + 1, nv = (size_t)p->nb * c->H * p->rows * c->e + 1;
    const size_t ns = (size_t)c->B * c->H * c->d * c->e + 1;
    const size_t n[5] = {nq, nq, nv, ns, nv};
    int bad = 0;
    for (int w = 0; w < 5; w++)
        bad |= !(o->g[w] = (double *)calloc(n[w], sizeof(double)));
    return bad ? -1 : 0;
}

static void dgrads_free(dgrads *o) {
    for (int w = 0; w < 5; w++)
        free(o->g[w]), o->g[w] = NULL;
}

/* The whole backward on `in`: x by the recurrence, the norm backward, the plain backward. X, DX: scratch. */
static int own_bwd(const nprob *p, const dins *in, int f32, double *X, double *DX, dgrads *o) {
    if (f32) {
        if (xrec32(p, in, X)) return -1;
        normb32(p, in, X, DX, o->g[4]);
        return plainb32(p, in, DX, o->g[0], o->g[1], o->g[2], o->g[3]);
    }
    if (xrec64(p, in, X)) return -1;
    normb64(p, in, X, DX, o->g[4]);
    return plainb64(p, in, DX, o->g[0], o->g[1], o->g[2], o->g[3]);
}

static const char *GNAMES[5] = {"dq", "dk", "dv", "d_state_in", "d_gate"};

/* Visit the valid elements of gradient w: (idx0, idx1, idx2, idx3). Returns their number; fills idx if given. */
static int64_t grad_elems(const nprob *p, int w, int64_t (*idx)[4]) {
    const ncase *c = &p->c;
    int64_t m = 0;
    if (w == 3) {
        for (int b = 0; b < c->B; b++)
            for (int h = 0; h < c->H; h++)
                for (int x = 0; x < c->d; x++)
                    for (int y = 0; y < c->e; y++, m++)
                        if (idx) idx[m][0] = b, idx[m][1] = h, idx[m][2] = x, idx[m][3] = y;
        return m;
    }
    const int ncols = w == 0 || w == 1 ? c->d : c->e;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < seq_len(c, b); i++)
                for (int x = 0; x < ncols; x++, m++)
                    if (idx) idx[m][0] = seq_bidx(c, b), idx[m][1] = h, idx[m][2] = seq_off(c, b) + i, idx[m][3] = x;
    return m;
}

/* The rule for gradient w of opt against ref (f64) with nv = naive32; exact checks (finite, padding zero). */
/* max |a - b| (b NULL: max |a|) over the valid elements of dense gradient w */
static int64_t grad_dense(const nprob *p, int w, const int64_t *ix);
static double grad_maxdiff(const nprob *p, int w, const double *a, const double *b) {
    const int64_t n = grad_elems(p, w, NULL);
    int64_t(*idx)[4] = (int64_t(*)[4])malloc(sizeof *idx * (size_t)(n + 1));
    double m = 0.0;
    if (!idx) return INFINITY;
    grad_elems(p, w, idx);
    for (int64_t j = 0; j < n; j++) {
        const int64_t di = grad_dense(p, w, idx[j]);
        const double dlt = fabs(a[di] - (b ? b[di] : 0.0));
        if (!(dlt <= m)) m = dlt;
    }
    free(idx);
    return m;
}

/* Dense index of element idx of gradient w. */
static int64_t grad_dense(const nprob *p, int w, const int64_t *ix) {
    const ncase *c = &p->c;
    if (w == 3) return idx4(c->H, c->d, c->e, ix[0], ix[1], ix[2], ix[3]);
    return idx4(c->H, p->rows, w < 2 ? c->d : c->e, ix[0], ix[1], ix[2], ix[3]);
}

/*
 * Gradient w of ak_la_backward (opt) against ak_la_backward_ref (ref, f64) under
 *   err(opt) <= 2 err(naive32) + 4 cond + 4 u bnd + floor
 * nv: naive32 (dense, rounded here to opt's dtype); own: the same computation in double (must agree with ref);
 * cond: the largest change of the exact gradient when every input moves by one f32 ulp (two draws; the rounding
 * of an f32 algorithm as good as naive32 may show up to a few times that, and naive32 may be lucky);
 * bnd: the SRMS backward's cancellation (normb_bound propagated through the plain backward with |inputs|),
 * an absolute error no perturbation of the inputs shows (N = 1: dx is all rounding noise; H = 1, d = 1: dq).
 * Exactly: no NaN / Inf; padding rows 0 (opt and ref); nothing written outside the view.
 */
static void check_grad(const nprob *p, int w, const tbuf *opt, const tbuf *ref, const double *nv, const double *own,
                       double cond, double bnd, const char *tag) {
    const int64_t n = grad_elems(p, w, NULL);
    int64_t(*idx)[4] = (int64_t(*)[4])malloc(sizeof *idx * (size_t)(n + 1));
    if (!idx) {
        CHECK(0, "%s: allocation failed", tag);
        return;
    }
    grad_elems(p, w, idx);
    const ak_dtype dt = opt->t.dtype;
    double e_opt = 0, e_nv = 0, e_own = 0, mref = 0;
    int64_t nonfinite = 0;
    for (int64_t j = 0; j < n; j++) {
        const double a = ten_get(&opt->t, idx[j]), rf = ten_get(&ref->t, idx[j]);
        const int64_t di = grad_dense(p, w, idx[j]);
        const double nn = tu_round_to(w == 3 ? AK_F32 : dt, nv[di]);
        if (!isfinite(a)) {
            nonfinite++;
            continue;
        }
        mref = fmax(mref, fabs(rf));
        e_opt = fmax(e_opt, fabs(a - rf));
        if (!(fabs(nn - rf) <= e_nv)) e_nv = fabs(nn - rf);
        if (!(fabs(own[di] - rf) <= e_own)) e_own = fabs(own[di] - rf);
    }
    free(idx);
    const double floor_ = rule_floor(dt, mref), extra = 4.0 * cond + 4.0 * U32 * bnd;
    const double allowed = 2.0 * e_nv + extra + floor_;
    CHECK(nonfinite == 0, "%s: %s has %lld non-finite elements", tag, GNAMES[w], (long long)nonfinite);
    CHECK(e_opt <= allowed, "%s: %s (%s) err %.3g > 2 x naive32 %.3g + 4 x cond %.3g + 4 u x bnd %.3g + floor %.3g (max|ref| %.3g)",
          tag, GNAMES[w], tu_dtype_short(dt), e_opt, e_nv, cond, bnd, floor_, mref);
    /* the oracles themselves: naive32 near the reference (a wrong reference would widen the rule), and the
     * test's double computation (recurrences) equal to the reference's (materialised form) up to double rounding */
    const double nbound = 1e-3 * fmax(1.0, mref) + extra + (dt == AK_F32 ? 0.0 : tu_ulp(dt, mref));
    CHECK(e_nv <= nbound, "%s: %s: naive32 and ak_la_backward_ref disagree by %.3g (bound %.3g, max|ref| %.3g)", tag,
          GNAMES[w], e_nv, nbound, mref);
    const double obound = (w == 3 ? 0.5 * tu_ulp(AK_F32, mref) : 0.0) + 1e-9 * (fmax(1.0, mref) + bnd) + 1e-6 * cond;
    CHECK(e_own <= obound, "%s: %s: the test's double backward and ak_la_backward_ref disagree by %.3g (bound %.3g)", tag,
          GNAMES[w], e_own, obound);
    if (dt == AK_F32) g_worst_bwd = fmax(g_worst_bwd, e_opt / allowed);
    if (g_verbose > 1)
        printf("  %s (%s): err %.3g naive32 %.3g cond %.3g bnd %.3g floor %.3g max|ref| %.3g own64 %.3g\n", GNAMES[w],
               tu_dtype_short(dt), e_opt, e_nv, cond, bnd, floor_, mref, e_own);
    if (w != 3) {
        CHECK(nonzero_padding(p, opt) == 0, "%s: %s: non-zero padding rows", tag, GNAMES[w]);
        CHECK(nonzero_padding(p, ref) == 0, "%s: ak_la_backward_ref %s: non-zero padding rows", tag, GNAMES[w]);
    }
    CHECK(tbuf_outside_untouched(opt), "%s: %s wrote outside its view", tag, GNAMES[w]);
}

/* L = sum over the valid rows of o W (o: ak_la_forward_ref with the norm / gate, F64) + sum(S_final G_S) with
 * d_state_out (S_final by the double recurrence on the tensors' current values). NAN on a failure. */
static double fd_loss(const nprob *p, tbuf *o64) {
    const ncase *c = &p->c;
    ak_la_desc d = nprob_desc(p, 1);
    d.dtype_o = AK_F64, d.return_final_state = 0;
    ak_la_tensors t = nprob_tensors(p, o64, NULL);
    ak_status st = ak_la_forward_ref(g_ctx, &d, &t);
    if (st != AK_OK) {
        CHECK(st == AK_OK, "fd: ak_la_forward_ref: %s (%s)", ak_status_string(st), ak_ctx_last_error(g_ctx));
        return NAN;
    }
    double L = 0.0;
    const int H = c->H, e = c->e, dd = c->d, R = p->rows;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++)
            for (int i = seq_off(c, b); i < seq_off(c, b) + seq_len(c, b); i++)
                for (int y = 0; y < e; y++)
                    L += ten_get4(&o64->t, seq_bidx(c, b), h, i, y) * p->W[idx4(H, R, e, seq_bidx(c, b), h, i, y)];
    if (!c->dso) return L;
    double *S = (double *)malloc(sizeof(double) * (size_t)dd * e);
    if (!S) return NAN;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++) {
            const int bi = seq_bidx(c, b);
            const double lam = c->has_decay ? exp(p->LD[h]) : 1.0;
            for (int x = 0; x < dd * e; x++)
                S[x] = c->state_in ? ten_get4(&p->si.t, b, h, x / e, x % e) : 0.0;
            for (int i = seq_off(c, b); i < seq_off(c, b) + seq_len(c, b); i++)
                for (int x = 0; x < dd; x++)
                    for (int y = 0; y < e; y++)
                        S[x * e + y] = lam * S[x * e + y] + ten_get4(&p->k.t, bi, h, i, x) * ten_get4(&p->v.t, bi, h, i, y);
            for (int x = 0; x < dd * e; x++)
                L += S[x] * p->GS[(size_t)(b * H + h) * dd * e + x];
        }
    free(S);
    return L;
}

/* Central difference of L along u over the elements idx of `in`, step hs; the inputs are restored exactly. */
static double fd_diff(const nprob *p, tbuf *in, int64_t (*idx)[4], const signed char *u, int64_t n, double hs, tbuf *o64) {
    for (int64_t j = 0; j < n; j++)
        if (u[j]) ten_set(&in->t, idx[j], ten_get(&in->t, idx[j]) + hs * u[j]);
    const double Lp = fd_loss(p, o64);
    for (int64_t j = 0; j < n; j++)
        if (u[j]) ten_set(&in->t, idx[j], ten_get(&in->t, idx[j]) - 2.0 * hs * u[j]);
    const double Lm = fd_loss(p, o64);
    for (int64_t j = 0; j < n; j++)
        if (u[j]) ten_set(&in->t, idx[j], ten_get(&in->t, idx[j]) + hs * u[j]);
    return (Lp - Lm) / (2.0 * hs);
}

/*
 * ak_la_backward_ref (gradients in ref) against finite differences of fd_loss, for q, k, v, gate and state_in:
 * a few single elements and one random {-1, 0, 1} direction over the whole tensor each. Inputs are on the grid
 * k/1024 in [-1, 1] (f32), so x +- h for h = 2^-12 and 2^-13 are exact and restored exactly. The estimate is the
 * Richardson extrapolation fd = (4 D(h/2) - D(h)) / 3 of the central differences D (truncation O(h^4)).
 * Tolerance: |fd - grad.u| <= 1e-8 (max(1, max|grad|) + sum|grad_j u_j|) + |D(h) - D(h/2)| (+ half an f32 ulp of
 * each d_state_in term: it is stored as f32 even by the reference). The last term is the observed change of the
 * difference quotient between the two steps: it bounds the truncation error where the loss is far from quadratic
 * at scale h (a token whose mean(x^2) is tiny); a wrong gradient is still caught, since both quotients approach
 * the true derivative. The roundoff of L (double, |L| <~ 1e3) divided by h is ~1e-9.
 */
static void fd_check(nprob *p, gset *ref, rng *r, const char *tag) {
    const ncase *c = &p->c;
    int64_t o_shape[4] = {p->nb, c->H, p->rows, c->e};
    tbuf o64;
    if (tbuf_make(&o64, AK_F64, 4, o_shape, LAY_CONTIG, NULL)) {
        CHECK(0, "%s: allocation failed", tag);
        return;
    }
    const int n_single = g_quick ? 1 : 2, n_dir = 1;
    const double hs = 1.0 / 4096.0;
    for (int w = 0; w < 5; w++) {
        /* input w: 0 q, 1 k, 2 v, 3 state_in, 4 gate, with the gradient of the same index */
        if ((w == 3 && !c->state_in) || (w == 4 && !c->gate)) continue;
        tbuf *in = w == 0 ? &p->q : w == 1 ? &p->k : w == 2 ? &p->v : w == 3 ? &p->si : &p->g;
        const tbuf *gr = gset_at(ref, w);
        const int64_t n = grad_elems(p, w, NULL);
        if (n == 0) continue;
        int64_t(*idx)[4] = (int64_t(*)[4])malloc(sizeof *idx * (size_t)n);
        signed char *u = (signed char *)malloc((size_t)n);
        if (!idx || !u) {
            free(idx), free(u);
            CHECK(0, "%s: allocation failed", tag);
            continue;
        }
        grad_elems(p, w, idx);
        double gmax = 0.0;
        for (int64_t j = 0; j < n; j++)
            gmax = fmax(gmax, fabs(ten_get(&gr->t, idx[j])));
        for (int smp = 0; smp < n_single + n_dir; smp++) {
            memset(u, 0, (size_t)n);
            if (smp < n_single)
                u[rng_int(r, (int)n)] = 1;
            else
                for (int64_t j = 0; j < n; j++)
                    u[j] = (signed char)(rng_int(r, 3) - 1);
            double an = 0.0, mag = 0.0, rnd = 0.0;
            for (int64_t j = 0; j < n; j++) {
                if (!u[j]) continue;
                const double gv = ten_get(&gr->t, idx[j]);
                an += u[j] * gv, mag += fabs(gv);
                if (w == 3) rnd += 0.5 * tu_ulp(AK_F32, gv);
            }
            const double D1 = fd_diff(p, in, idx, u, n, hs, &o64), D2 = fd_diff(p, in, idx, u, n, hs / 2, &o64);
            const double fd = (4.0 * D2 - D1) / 3.0, err = fabs(fd - an);
            const double tol = 1e-8 * (fmax(1.0, gmax) + mag) + fabs(D1 - D2) + rnd;
            g_worst_fd = fmax(g_worst_fd, (err - rnd - fabs(D1 - D2)) / (fmax(1.0, gmax) + mag));
            g_worst_step = fmax(g_worst_step, fabs(D1 - D2) / (fmax(1.0, gmax) + mag));
            CHECK(err <= tol, "%s: %s %s: finite difference %.17g, gradient %.17g (err %.3g > tol %.3g; D(h) %.17g D(h/2) %.17g)",
                  tag, GNAMES[w == 4 ? 4 : w], smp < n_single ? "element" : "direction", fd, an, err, tol, D1, D2);
        }
        free(idx), free(u);
    }
    tbuf_free(&o64);
}

static const int BW_DIMS[6] = {1, 2, 3, 5, 8, 17};
static const int BW_T[7] = {0, 1, 2, 5, 17, 33, 64};
static const int BW_BLOCKS[6] = {0, 1, 3, 16, 64, 1000};

static void bwd_gen(ncase *c, uint64_t seed) {
    rng r = rng_seed(0xB0D00000u + seed);
    ncase_default(c);
    c->seed = 0xB0D00000u + seed;
    c->H = 1 + rng_int(&r, 4);
    c->d = rng_pick(&r, BW_DIMS, 6);
    c->e = rng_pick(&r, BW_DIMS, 6);
    c->block = rng_pick(&r, BW_BLOCKS, 6);
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    c->dq = rng_chance(&r, 0.6) ? AK_F32 : DT[1 + rng_int(&r, 2)];
    c->grid = c->dq == AK_F32; /* the finite-difference cases */
    c->ddo = DT[rng_int(&r, 3)];
    c->dout = AK_F32;
    static const float SC[3] = {1.0f, 0.5f, 0.088f};
    c->scale = SC[rng_int(&r, 3)];
    c->has_decay = rng_chance(&r, 0.7);
    for (int h = 0; h < c->H; h++)
        c->log_decay[h] = c->has_decay ? random_log_decay(&r) : 0.0f;
    c->state_in = rng_chance(&r, 0.5);
    c->dso = rng_chance(&r, 0.5);
    c->norm = rng_chance(&r, 0.75);
    c->gate = c->norm ? rng_chance(&r, 0.6) : 1;
    if (rng_chance(&r, 0.4)) {
        static const float EPS[3] = {1e-5f, 1e-3f, 0.25f};
        c->eps = EPS[rng_int(&r, 3)];
    }
    c->gmean = rng_chance(&r, 0.5) ? 0.0 : 0.5;
    c->ragged = rng_chance(&r, 0.3);
    if (c->ragged) {
        c->B = 2 + rng_int(&r, 2);
        for (int b = 0; b < c->B; b++)
            c->cu[b + 1] = c->cu[b] + rng_pick(&r, BW_T, 7);
        c->pad = rng_int(&r, 4);
    } else {
        c->B = 1 + rng_int(&r, 2);
        c->T = rng_pick(&r, BW_T, 7);
    }
    c->lq = IN_LAYS[rng_int(&r, 4)], c->lk = IN_LAYS[rng_int(&r, 4)], c->lv = IN_LAYS[rng_int(&r, 4)];
    c->lg = IN_LAYS[rng_int(&r, 5)], c->lw = IN_LAYS[rng_int(&r, 5)];
    if (c->grid && c->lg == LAY_BCAST0) c->lg = LAY_PADDED; /* a perturbed element must not alias another */
}

static int verify_bwd(const ncase *c, const char *label_in, rng *r) {
    const int fails0 = tc_failures;
    char desc[700], tag[800];
    ncase_str(c, desc, sizeof desc);
    nprob p;
    if (nprob_create(&p, c)) {
        CHECK(0, "%s: allocation failed", label_in);
        nprob_free(&p);
        return 1;
    }
    static const ak_dtype DT[3] = {AK_F32, AK_BF16, AK_F16};
    ak_dtype odt[4];
    for (int w = 0; w < 4; w++)
        odt[w] = rng_chance(r, 0.5) ? AK_F32 : DT[rng_int(r, 3)];
    tlayout lay[5];
    for (int w = 0; w < 5; w++)
        lay[w] = w == 3 ? (rng_chance(r, 0.5) ? LAY_PADDED : LAY_PERMUTED) : OUT_LAYS[rng_int(r, 4)];
    if (p.rows == 0)
        for (int w = 0; w < 5; w++)
            if (lay[w] == LAY_BSHD) lay[w] = LAY_CONTIG;
    snprintf(tag, sizeof tag, "%s [%s out dq/dk/dv/dg %s/%s/%s/%s]", label_in, desc, tu_dtype_short(odt[0]),
             tu_dtype_short(odt[1]), tu_dtype_short(odt[2]), tu_dtype_short(odt[3]));
    static const ak_dtype F64S[4] = {AK_F64, AK_F64, AK_F64, AK_F64};
    static const tlayout CONTIG5[5] = {LAY_CONTIG, LAY_CONTIG, LAY_CONTIG, LAY_CONTIG, LAY_CONTIG};
    gset ref, o1, o3;
    dgrads nv = {{0}}, own = {{0}}, pert = {{0}}, bnd = {{0}};
    double cond[5] = {0, 0, 0, 0, 0}, bmax[5] = {0, 0, 0, 0, 0};
    const size_t nx = (size_t)p.nb * c->H * p.rows * c->e + 1;
    double *XS = (double *)calloc(nx, sizeof(double)), *DXS = (double *)calloc(nx, sizeof(double));
    rng rl1 = rng_seed(c->seed + 5), rl3 = rng_seed(c->seed + 5); /* same strides for 1 and 3 threads */
    int bad = gset_make(&ref, &p, F64S, CONTIG5, NULL) | gset_make(&o1, &p, odt, lay, &rl1) |
              gset_make(&o3, &p, odt, lay, &rl3);
    bad |= dgrads_alloc(&nv, &p) | dgrads_alloc(&own, &p) | dgrads_alloc(&pert, &p) | dgrads_alloc(&bnd, &p);
    bad |= !XS || !DXS;
    tbuf snap[8];
    const tbuf *ins[8] = {&p.q, &p.k, &p.v, &p.g, &p.ld, &p.si, &p.w, &p.gs};
    for (int i = 0; i < 8; i++)
        bad |= snapshot(&snap[i], ins[i]);
    if (bad) {
        CHECK(0, "%s: allocation failed", tag);
        goto out;
    }
    ak_status st = run_bwd(g_ctx, 1, &p, &ref);
    CHECK(st == AK_OK, "%s: ak_la_backward_ref: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(g_ctx));
    ak_status s1 = run_bwd(g_ctx1, 0, &p, &o1);
    CHECK(s1 == AK_OK, "%s: ak_la_backward: %s (%s)", tag, ak_status_string(s1), ak_ctx_last_error(g_ctx1));
    ak_status s3 = run_bwd(g_ctx3, 0, &p, &o3);
    CHECK(s3 == AK_OK, "%s: ak_la_backward on 3 threads: %s (%s)", tag, ak_status_string(s3), ak_ctx_last_error(g_ctx3));
    if (st != AK_OK || s1 != AK_OK) goto out;
    {
        /* naive32 and its double twin; the conditioning term (two draws of one-ulp moves of every input); the
         * bound of the norm backward's cancellation propagated with absolute values (see check_grad) */
        const dins in0 = dins_of(&p);
        dins ina;
        memset(&ina, 0, sizeof ina);
        rng rp = rng_seed(c->seed + 31);
        if (own_bwd(&p, &in0, 1, XS, DXS, &nv) || own_bwd(&p, &in0, 0, XS, DXS, &own)) {
            CHECK(0, "%s: allocation failed", tag);
            goto out;
        }
        for (int draw_ = 0; draw_ < 2; draw_++) {
            dins inp;
            int fail = dins_make(&p, &inp, 1, &rp) || own_bwd(&p, &inp, 0, XS, DXS, &pert);
            dins_free(&inp);
            if (fail) {
                CHECK(0, "%s: allocation failed", tag);
                goto out;
            }
            for (int w = 0; w < 5; w++)
                cond[w] = fmax(cond[w], grad_maxdiff(&p, w, pert.g[w], own.g[w]));
        }
        if (xrec64(&p, &in0, XS) || dins_make(&p, &ina, 0, NULL)) {
            dins_free(&ina);
            CHECK(0, "%s: allocation failed", tag);
            goto out;
        }
        normb_bound(&p, &in0, XS, DXS);
        const int pf = plainb64(&p, &ina, DXS, bnd.g[0], bnd.g[1], bnd.g[2], bnd.g[3]);
        dins_free(&ina);
        if (pf) {
            CHECK(0, "%s: allocation failed", tag);
            goto out;
        }
        for (int w = 0; w < 4; w++)
            bmax[w] = grad_maxdiff(&p, w, bnd.g[w], NULL);
    }
    for (int w = 0; w < 5; w++) {
        if ((w == 3 && !c->state_in) || (w == 4 && !c->gate)) {
            CHECK(all_poison(gset_at(&o1, w)), "%s: ak_la_backward wrote %s although unflagged", tag, GNAMES[w]);
            CHECK(all_poison(gset_at(&ref, w)), "%s: ak_la_backward_ref wrote %s although unflagged", tag, GNAMES[w]);
            continue;
        }
        check_grad(&p, w, gset_at(&o1, w), gset_at(&ref, w), nv.g[w], own.g[w], cond[w], bmax[w], tag);
    }
    if (s3 == AK_OK) {
        int same = 1;
        for (int w = 0; w < 5; w++)
            same &= tbuf_same_bytes(gset_at(&o1, w), gset_at(&o3, w));
        CHECK(same, "%s: ak_la_backward: 1 and 3 threads give different bytes", tag);
    }
    if (c->grid) fd_check(&p, &ref, r, tag);
    {
        static const char *in_names[8] = {"q", "k", "v", "gate", "log_decay", "state_in", "d_o", "d_state_out"};
        for (int i = 0; i < 8; i++)
            CHECK(tbuf_same_bytes(&snap[i], ins[i]), "%s: input %s was modified (or not restored by the test)", tag, in_names[i]);
    }
out:
    for (int i = 0; i < 8; i++)
        tbuf_free(&snap[i]);
    gset_free(&ref), gset_free(&o1), gset_free(&o3);
    dgrads_free(&nv), dgrads_free(&own), dgrads_free(&pert), dgrads_free(&bnd);
    free(XS), free(DXS);
    nprob_free(&p);
    if (g_verbose) printf("%s %s\n", tc_failures == fails0 ? "ok  " : "FAIL", tag);
    return tc_failures != fails0;
}

static void group_bwd(long n) {
    const long first = tu_env_long("AK_SWEEP_FIRST", 0);
    n = tu_env_long("AK_SWEEP_N", n >= 0 ? n : g_quick ? 50 : 150);
    for (long i = first; i < first + n; i++) {
        ncase c;
        bwd_gen(&c, (uint64_t)i);
        rng r = rng_seed(0xFD000000u + (uint64_t)i);
        char label[64];
        snprintf(label, sizeof label, "bwd case %ld", i);
        if (verify_bwd(&c, label, &r))
            fprintf(stderr, "  rerun: AK_SWEEP_FIRST=%ld AK_SWEEP_N=1 AK_SWEEP_VERBOSE=2 ./test_linear_norm bwd\n", i);
    }
}

/* ================================================================================================
 * Group invalid
 * ============================================================================================== */

typedef struct inv_out {
    void *p;
    size_t bytes;
} inv_out;

static inv_out g_fouts[2], g_bouts[5];

static void poison_bytes(const inv_out *o, int n) {
    for (int i = 0; i < n; i++)
        memset(o[i].p, 0xa5, o[i].bytes);
}

static int untouched(const inv_out *o, int n) {
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < o[i].bytes; j++)
            if (((const unsigned char *)o[i].p)[j] != 0xa5) return 0;
    return 1;
}

/* The three forward entry points: want (want_ref for ak_la_forward_ref); refused: outputs untouched, a message. */
static void fwd_expect(int line, const char *what, const ak_la_desc *d, const ak_la_tensors *t, ak_status want,
                       ak_status want_ref) {
    static const char *names[3] = {"ak_la_forward", "ak_la_recurrent", "ak_la_forward_ref"};
    static const la_fn fns[3] = {ak_la_forward, ak_la_recurrent, ak_la_forward_ref};
    for (int f = 0; f < 3; f++) {
        poison_bytes(g_fouts, 2);
        const ak_status st = fns[f](g_ctx, d, t), w = f == 2 ? want_ref : want;
        tc_checks++;
        if (st != w) {
            tc_failures++;
            fprintf(stderr, "FAIL %s:%d: %s {%s} returned %s, expected %s (%s)\n", __FILE__, line, names[f], what,
                    ak_status_string(st), ak_status_string(w), ak_ctx_last_error(g_ctx));
        }
        if (st != AK_OK) {
            CHECK(untouched(g_fouts, 2), "line %d: %s {%s}: outputs written although refused", line, names[f], what);
            CHECK(strlen(ak_ctx_last_error(g_ctx)) > 0, "line %d: %s {%s}: no last-error message", line, names[f], what);
        }
    }
}

static void bwd_expect(int line, const char *what, const ak_la_desc *d, const ak_la_tensors *t, const ak_la_grads *g,
                       ak_status want, ak_status want_ref) {
    for (int ref = 0; ref < 2; ref++) {
        poison_bytes(g_bouts, 5);
        const ak_status st = ref ? ak_la_backward_ref(g_ctx, d, t, g) : ak_la_backward(g_ctx, d, t, g);
        const ak_status w = ref ? want_ref : want;
        tc_checks++;
        if (st != w) {
            tc_failures++;
            fprintf(stderr, "FAIL %s:%d: %s {%s} returned %s, expected %s (%s)\n", __FILE__, line,
                    ref ? "ak_la_backward_ref" : "ak_la_backward", what, ak_status_string(st), ak_status_string(w),
                    ak_ctx_last_error(g_ctx));
        }
        if (st != AK_OK) {
            CHECK(untouched(g_bouts, 5), "line %d: backward%s {%s}: outputs written although refused", line, ref ? "_ref" : "", what);
            CHECK(strlen(ak_ctx_last_error(g_ctx)) > 0, "line %d: backward%s {%s}: no last-error message", line,
                  ref ? "_ref" : "", what);
        }
    }
}

/* EXF / EXB (status, mutation...): the forward / backward entry points on a mutated copy of the base. */
#define EXF2(want, want_ref, ...)                                                                                   \
    do {                                                                                                            \
        ak_la_desc dd = B_d;                                                                                        \
        ak_la_tensors t = B_t;                                                                                      \
        ak_la_grads g = B_g;                                                                                        \
        (void)dd, (void)t, (void)g;                                                                                 \
        __VA_ARGS__;                                                                                                \
        fwd_expect(__LINE__, #__VA_ARGS__, &dd, &t, (want), (want_ref));                                            \
    } while (0)
#define EXB2(want, want_ref, ...)                                                                                   \
    do {                                                                                                            \
        ak_la_desc dd = B_d;                                                                                        \
        ak_la_tensors t = B_t;                                                                                      \
        ak_la_grads g = B_g;                                                                                        \
        (void)dd, (void)t, (void)g;                                                                                 \
        __VA_ARGS__;                                                                                                \
        bwd_expect(__LINE__, #__VA_ARGS__, &dd, &t, &g, (want), (want_ref));                                        \
    } while (0)
#define EXF(want, ...) EXF2(want, want, __VA_ARGS__)
#define EXB(want, ...) EXB2(want, want, __VA_ARGS__)
#define EXFB(want, ...)                                                                                             \
    do {                                                                                                            \
        EXF(want, __VA_ARGS__);                                                                                     \
        EXB(want, __VA_ARGS__);                                                                                     \
    } while (0)

enum { NB = 2, NH = 3, NT = 10, ND = 4, NE = 5 };
#define NQ (NB * NH * NT * ND)
#define NV (NB * NH * NT * NE)
#define NS (3 * NH * ND * NE) /* 3: the ragged base */

/* block > 4096 after capping at the longest sequence: refused by all five entry points; otherwise fine */
static void block_case(int line, int64_t rows, int32_t block, const int32_t *cu, int32_t nseq, ak_status want, int refs) {
    float *buf = (float *)calloc((size_t)rows * 8 + 64, sizeof(float));
    if (!buf) {
        CHECK(0, "allocation failed");
        return;
    }
    for (int64_t i = 0; i < rows * 6; i++)
        buf[i] = 0.25f + 0.001f * (float)(i % 17);
    float *q = buf, *k = buf + rows, *v = buf + 2 * rows, *gt = buf + 3 * rows, *dO = buf + 4 * rows, *ld = buf + 6 * rows;
    float *o = buf + 5 * rows, *dq = buf + 6 * rows + 8, *dk = buf + 7 * rows + 8; /* outputs */
    ld[0] = -0.01f;
    float *dv = (float *)calloc((size_t)rows * 2 + 8, sizeof(float));
    if (!dv) {
        free(buf);
        CHECK(0, "allocation failed");
        return;
    }
    float *dg = dv + rows + 4;
    ak_la_desc d;
    ak_la_desc_init(&d);
    d.batch = cu ? nseq : 1, d.num_heads = 1, d.seqlen = cu ? 0 : (int32_t)rows, d.head_dim = 1, d.head_dim_v = 1;
    d.block = block, d.cu_seqlens = cu, d.has_decay = 1, d.norm = AK_LA_NORM_SRMS, d.has_gate = 1;
    ak_la_tensors t;
    ak_la_tensors_init(&t);
    t.q = ak_tensor_4d(q, AK_F32, 1, 1, rows, 1), t.k = ak_tensor_4d(k, AK_F32, 1, 1, rows, 1);
    t.v = ak_tensor_4d(v, AK_F32, 1, 1, rows, 1), t.gate = ak_tensor_4d(gt, AK_F32, 1, 1, rows, 1);
    t.o = ak_tensor_4d(o, AK_F32, 1, 1, rows, 1), t.log_decay = ak_tensor_1d(ld, AK_F32, 1);
    ak_la_grads g;
    ak_la_grads_init(&g);
    g.d_o = ak_tensor_4d(dO, AK_F32, 1, 1, rows, 1);
    g.dq = ak_tensor_4d(dq, AK_F32, 1, 1, rows, 1), g.dk = ak_tensor_4d(dk, AK_F32, 1, 1, rows, 1);
    g.dv = ak_tensor_4d(dv, AK_F32, 1, 1, rows, 1), g.d_gate = ak_tensor_4d(dg, AK_F32, 1, 1, rows, 1);
    static const char *names[5] = {"ak_la_forward", "ak_la_recurrent", "ak_la_backward", "ak_la_forward_ref",
                                   "ak_la_backward_ref"};
    for (int f = 0; f < (refs ? 5 : 3); f++) {
        const ak_status st = f == 0   ? ak_la_forward(g_ctx, &d, &t)
                             : f == 1 ? ak_la_recurrent(g_ctx, &d, &t)
                             : f == 2 ? ak_la_backward(g_ctx, &d, &t, &g)
                             : f == 3 ? ak_la_forward_ref(g_ctx, &d, &t)
                                      : ak_la_backward_ref(g_ctx, &d, &t, &g);
        CHECK(st == want, "line %d: block %d, %s %lld rows: %s returned %s, expected %s (%s)", line, block,
              cu ? "ragged" : "dense", (long long)rows, names[f], ak_status_string(st), ak_status_string(want),
              ak_ctx_last_error(g_ctx));
        if (st == AK_OK && f != 2 && f != 4) {
            int64_t nonfinite = 0;
            for (int64_t i = 0; i < rows; i++)
                nonfinite += !isfinite(o[i]);
            CHECK(nonfinite == 0, "line %d: block %d: %s: %lld non-finite outputs", line, block, names[f], (long long)nonfinite);
        }
    }
    free(buf), free(dv);
}

static void group_invalid(void) {
    static float q[NQ], k[NQ], v[NV], gate[NV], o[NV], si[NS], so[NS], arena[8 * NV];
    static float dO[NV], dq[NQ], dk[NQ], dv[NV], dg[NV], dsi[NS], dso[NS];
    static double o64[NV], dg64[NV];
    static uint16_t q16[NQ], k16[NQ], v16[NV], g16[NV], dg16[NV];
    float ld[NH] = {-0.1f, -0.2f, 0.0f};
    rng r = rng_seed(4242);
    for (int i = 0; i < NQ; i++)
        q[i] = (float)rng_range(&r, -1, 1), k[i] = (float)rng_range(&r, -1, 1), q16[i] = k16[i] = 0x3e80;
    for (int i = 0; i < NV; i++)
        v[i] = (float)rng_range(&r, -1, 1), gate[i] = (float)rng_range(&r, -1, 1), dO[i] = (float)rng_range(&r, -1, 1),
        v16[i] = g16[i] = 0x3f00;
    for (int i = 0; i < NS; i++)
        si[i] = (float)rng_range(&r, -1, 1), dso[i] = (float)rng_range(&r, -1, 1);
    g_fouts[0] = (inv_out){o, sizeof o}, g_fouts[1] = (inv_out){so, sizeof so};
    g_bouts[0] = (inv_out){dq, sizeof dq}, g_bouts[1] = (inv_out){dk, sizeof dk}, g_bouts[2] = (inv_out){dv, sizeof dv};
    g_bouts[3] = (inv_out){dsi, sizeof dsi}, g_bouts[4] = (inv_out){dg, sizeof dg};

    /* defaults of the init functions */
    {
        ak_la_desc d0;
        memset(&d0, 0x5a, sizeof d0);
        ak_la_desc_init(&d0);
        CHECK(d0.norm == AK_LA_NORM_NONE && d0.norm_eps == 1e-6f && d0.has_gate == 0,
              "ak_la_desc_init: norm %d (expected NONE), norm_eps %g (expected 1e-6), has_gate %d (expected 0)", d0.norm,
              (double)d0.norm_eps, d0.has_gate);
        ak_la_tensors t0;
        memset(&t0, 0x5a, sizeof t0);
        ak_la_tensors_init(&t0);
        CHECK(t0.gate.data == NULL && t0.gate.ndim == 0, "ak_la_tensors_init: gate not zeroed");
        ak_la_grads g0;
        memset(&g0, 0x5a, sizeof g0);
        ak_la_grads_init(&g0);
        CHECK(g0.d_gate.data == NULL && g0.d_gate.ndim == 0, "ak_la_grads_init: d_gate not zeroed");
    }

    /* base: B 2, H 3, T 10, d 4, e 5, f32, decay, state in and out, SRMS norm and gate */
    ak_la_desc B_d;
    ak_la_desc_init(&B_d);
    B_d.batch = NB, B_d.num_heads = NH, B_d.seqlen = NT, B_d.head_dim = ND, B_d.head_dim_v = NE;
    B_d.has_decay = 1, B_d.has_initial_state = 1, B_d.return_final_state = 1, B_d.block = 4;
    B_d.norm = AK_LA_NORM_SRMS, B_d.has_gate = 1;
    ak_la_tensors B_t;
    ak_la_tensors_init(&B_t);
    B_t.q = ak_tensor_4d(q, AK_F32, NB, NH, NT, ND), B_t.k = ak_tensor_4d(k, AK_F32, NB, NH, NT, ND);
    B_t.v = ak_tensor_4d(v, AK_F32, NB, NH, NT, NE), B_t.o = ak_tensor_4d(o, AK_F32, NB, NH, NT, NE);
    B_t.gate = ak_tensor_4d(gate, AK_F32, NB, NH, NT, NE);
    B_t.log_decay = ak_tensor_1d(ld, AK_F32, NH);
    B_t.state_in = ak_tensor_4d(si, AK_F32, NB, NH, ND, NE), B_t.state_out = ak_tensor_4d(so, AK_F32, NB, NH, ND, NE);
    ak_la_grads B_g;
    ak_la_grads_init(&B_g);
    B_g.d_o = ak_tensor_4d(dO, AK_F32, NB, NH, NT, NE);
    B_g.has_d_state_out = 1, B_g.d_state_out = ak_tensor_4d(dso, AK_F32, NB, NH, ND, NE);
    B_g.dq = ak_tensor_4d(dq, AK_F32, NB, NH, NT, ND), B_g.dk = ak_tensor_4d(dk, AK_F32, NB, NH, NT, ND);
    B_g.dv = ak_tensor_4d(dv, AK_F32, NB, NH, NT, NE), B_g.d_state_in = ak_tensor_4d(dsi, AK_F32, NB, NH, ND, NE);
    B_g.d_gate = ak_tensor_4d(dg, AK_F32, NB, NH, NT, NE);
    const ak_tensor zero_t = {0};

    EXFB(AK_OK, (void)0); /* the valid baseline */
    EXFB(AK_OK, dd.has_gate = 0);
    EXFB(AK_OK, dd.norm = AK_LA_NORM_NONE);
    EXFB(AK_OK, dd.norm = AK_LA_NORM_NONE; dd.has_gate = 0);
    /* norm: not an ak_la_norm */
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm = 2);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm = -1);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm = 2; dd.has_gate = 0);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm = INT32_MIN);
    /* norm_eps with SRMS: finite and > 0 */
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = 0.0f);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = -0.0f);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = -1.0f);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = NAN);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = INFINITY);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = -INFINITY);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = 0.0f; dd.has_gate = 0);
    EXFB(AK_OK, dd.norm_eps = 1e-30f);
    EXFB(AK_OK, dd.norm_eps = 1e30f);
    /* ... and ignored without the norm */
    EXFB(AK_OK, dd.norm = AK_LA_NORM_NONE; dd.norm_eps = 0.0f);
    EXFB(AK_OK, dd.norm = AK_LA_NORM_NONE; dd.norm_eps = NAN);
    EXFB(AK_OK, dd.norm = AK_LA_NORM_NONE; dd.norm_eps = -INFINITY);
    /* has_gate: 0 or 1 */
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.has_gate = 2);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.has_gate = -1);
    EXFB(AK_ERR_INVALID_ARGUMENT, dd.has_gate = 2; dd.norm = AK_LA_NORM_NONE);
    /* the gate tensor: missing */
    EXFB(AK_ERR_NULL_POINTER, t.gate.data = NULL);
    EXFB(AK_ERR_SHAPE_MISMATCH, t.gate = zero_t);
    EXFB(AK_OK, dd.has_gate = 0; t.gate = zero_t); /* ignored without has_gate */
    EXFB(AK_OK, dd.has_gate = 0; t.gate.data = NULL);
    EXFB(AK_OK, dd.has_gate = 0; t.gate.dtype = AK_I8; t.gate.shape[2] = 3);
    EXF(AK_OK, dd.has_gate = 0; t.gate = t.o); /* overlapping o, but unused */
    /* wrong shape, every dimension; wrong rank; d instead of e */
    for (int dim = 0; dim < 4; dim++) {
        EXFB(AK_ERR_SHAPE_MISMATCH, t.gate.shape[dim] -= 1);
        EXFB(AK_ERR_SHAPE_MISMATCH, t.gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE); t.gate.shape[dim] += 1);
    }
    EXFB(AK_ERR_SHAPE_MISMATCH, t.gate = ak_tensor_4d(gate, AK_F32, NB, NH, NT, ND));
    EXFB(AK_ERR_SHAPE_MISMATCH, t.gate = ak_tensor_3d(gate, AK_F32, NB * NH, NT, NE));
    /* wrong dtype: valid but not dtype_qkv (PLAN_MISMATCH), or invalid as an input (UNSUPPORTED_DTYPE) */
    EXFB(AK_ERR_PLAN_MISMATCH, t.gate = ak_tensor_4d(g16, AK_BF16, NB, NH, NT, NE));
    EXFB(AK_ERR_PLAN_MISMATCH, t.gate = ak_tensor_4d(g16, AK_F16, NB, NH, NT, NE));
    EXFB(AK_ERR_UNSUPPORTED_DTYPE, t.gate.dtype = AK_I8);
    EXFB(AK_ERR_UNSUPPORTED_DTYPE, t.gate.dtype = AK_F64);
    EXFB(AK_ERR_UNSUPPORTED_DTYPE, t.gate.dtype = (ak_dtype)42);
    /* bf16 q/k/v: a bf16 gate is right, an f32 one is not */
    EXFB(AK_OK, dd.dtype_qkv = AK_BF16; t.q = ak_tensor_4d(q16, AK_BF16, NB, NH, NT, ND);
         t.k = ak_tensor_4d(k16, AK_BF16, NB, NH, NT, ND); t.v = ak_tensor_4d(v16, AK_BF16, NB, NH, NT, NE);
         t.gate = ak_tensor_4d(g16, AK_BF16, NB, NH, NT, NE));
    EXFB(AK_ERR_PLAN_MISMATCH, dd.dtype_qkv = AK_BF16; t.q = ak_tensor_4d(q16, AK_BF16, NB, NH, NT, ND);
         t.k = ak_tensor_4d(k16, AK_BF16, NB, NH, NT, ND); t.v = ak_tensor_4d(v16, AK_BF16, NB, NH, NT, NE));
    /* strides and alignment */
    EXFB(AK_ERR_BAD_STRIDE, t.gate.stride[2] = -1);
    EXFB(AK_ERR_INVALID_ARGUMENT, t.gate.data = (unsigned char *)gate + 2);
    EXFB(AK_OK, t.gate.stride[0] = 0); /* an input may broadcast */
    EXFB(AK_OK, t.gate.data = v);      /* inputs may alias each other */
    /* overlaps of the forward: gate with o, gate with state_out (in an arena big enough for both views) */
    EXF(AK_ERR_OUTPUT_OVERLAP, t.gate.data = o);
    EXF(AK_ERR_OUTPUT_OVERLAP, t.o = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        t.gate = ak_tensor_4d(arena + NV - 1, AK_F32, NB, NH, NT, NE));
    EXF(AK_ERR_OUTPUT_OVERLAP, t.gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        t.o = ak_tensor_4d(arena + 7, AK_F32, NB, NH, NT, NE));
    EXF(AK_ERR_OUTPUT_OVERLAP, t.gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        t.state_out = ak_tensor_4d(arena + 11, AK_F32, NB, NH, ND, NE));
    EXF(AK_OK, t.gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE); t.o = ak_tensor_4d(arena + NV, AK_F32, NB, NH, NT, NE));
    EXB(AK_OK, t.gate.data = o); /* the backward has no o */
    /* d_gate: missing, shape, dtype, strides */
    EXB(AK_ERR_NULL_POINTER, g.d_gate.data = NULL);
    EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate = zero_t);
    EXB(AK_OK, dd.has_gate = 0; g.d_gate = zero_t); /* ignored without has_gate */
    EXB(AK_OK, dd.has_gate = 0; g.d_gate.data = dq);
    for (int dim = 0; dim < 4; dim++) {
        EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate.shape[dim] -= 1);
        EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE); g.d_gate.shape[dim] += 1);
    }
    EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate = ak_tensor_4d(dg, AK_F32, NB, NH, NT, ND));
    EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate = ak_tensor_3d(dg, AK_F32, NB * NH, NT, NE));
    EXB2(AK_ERR_UNSUPPORTED_DTYPE, AK_OK, g.d_gate = ak_tensor_4d(dg64, AK_F64, NB, NH, NT, NE)); /* f64: the reference only */
    EXB(AK_ERR_UNSUPPORTED_DTYPE, g.d_gate.dtype = AK_I8);
    EXB(AK_OK, g.d_gate = ak_tensor_4d(dg16, AK_BF16, NB, NH, NT, NE));
    EXB(AK_ERR_BAD_STRIDE, g.d_gate.stride[2] = 0);
    EXB(AK_ERR_BAD_STRIDE, g.d_gate.stride[3] = -1);
    EXB(AK_ERR_OUTPUT_OVERLAP, g.d_gate.stride[2] = 1); /* rows alias each other */
    EXB(AK_ERR_INVALID_ARGUMENT, g.d_gate.data = (unsigned char *)dg + 1);
    /* d_gate overlapping another output or an input (both views inside the arena) */
    EXB(AK_ERR_OUTPUT_OVERLAP, g.d_gate.data = dq);
    EXB(AK_ERR_OUTPUT_OVERLAP, g.dq = ak_tensor_4d(arena, AK_F32, NB, NH, NT, ND);
        g.d_gate = ak_tensor_4d(arena + 5, AK_F32, NB, NH, NT, NE));
    EXB(AK_ERR_OUTPUT_OVERLAP, g.d_gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        g.dq = ak_tensor_4d(arena + NV - 1, AK_F32, NB, NH, NT, ND));
    EXB(AK_ERR_OUTPUT_OVERLAP, g.dv = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        g.d_gate = ak_tensor_4d(arena + 3, AK_F32, NB, NH, NT, NE));
    EXB(AK_ERR_OUTPUT_OVERLAP, g.d_state_in = ak_tensor_4d(arena, AK_F32, NB, NH, ND, NE);
        g.d_gate = ak_tensor_4d(arena + 2, AK_F32, NB, NH, NT, NE));
    EXB(AK_ERR_OUTPUT_OVERLAP, t.gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        g.d_gate = ak_tensor_4d(arena + 9, AK_F32, NB, NH, NT, NE));
    EXB(AK_ERR_OUTPUT_OVERLAP, g.d_o = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        g.d_gate = ak_tensor_4d(arena + NV - 1, AK_F32, NB, NH, NT, NE));
    EXB(AK_ERR_OUTPUT_OVERLAP, t.q = ak_tensor_4d(arena, AK_F32, NB, NH, NT, ND);
        g.d_gate = ak_tensor_4d(arena + 1, AK_F32, NB, NH, NT, NE));
    EXB(AK_ERR_OUTPUT_OVERLAP, t.gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE);
        g.dk = ak_tensor_4d(arena + 4, AK_F32, NB, NH, NT, ND)); /* the gate is an input of the backward */
    EXB(AK_OK, g.d_gate = ak_tensor_4d(arena, AK_F32, NB, NH, NT, NE); g.dq = ak_tensor_4d(arena + NV, AK_F32, NB, NH, NT, ND));

    /* F64 o (the reference only) with the norm and gate */
    EXF2(AK_ERR_UNSUPPORTED_DTYPE, AK_OK, dd.dtype_o = AK_F64; t.o = ak_tensor_4d(o64, AK_F64, NB, NH, NT, NE));

    /* the ragged base (replaces the dense one): 3 sequences of 4, 0, 6 rows, packed [1][H][10][.] */
    {
        static int32_t cu[4] = {0, 4, 4, 10};
        B_d.batch = 3, B_d.cu_seqlens = cu, B_d.seqlen = 0;
        B_t.q = ak_tensor_4d(q, AK_F32, 1, NH, NT, ND), B_t.k = ak_tensor_4d(k, AK_F32, 1, NH, NT, ND);
        B_t.v = ak_tensor_4d(v, AK_F32, 1, NH, NT, NE), B_t.o = ak_tensor_4d(o, AK_F32, 1, NH, NT, NE);
        B_t.gate = ak_tensor_4d(gate, AK_F32, 1, NH, NT, NE);
        B_t.state_in = ak_tensor_4d(si, AK_F32, 3, NH, ND, NE), B_t.state_out = ak_tensor_4d(so, AK_F32, 3, NH, ND, NE);
        B_g.d_o = ak_tensor_4d(dO, AK_F32, 1, NH, NT, NE), B_g.d_state_out = ak_tensor_4d(dso, AK_F32, 3, NH, ND, NE);
        B_g.dq = ak_tensor_4d(dq, AK_F32, 1, NH, NT, ND), B_g.dk = ak_tensor_4d(dk, AK_F32, 1, NH, NT, ND);
        B_g.dv = ak_tensor_4d(dv, AK_F32, 1, NH, NT, NE), B_g.d_state_in = ak_tensor_4d(dsi, AK_F32, 3, NH, ND, NE);
        B_g.d_gate = ak_tensor_4d(dg, AK_F32, 1, NH, NT, NE);
        EXFB(AK_OK, (void)0);
        EXFB(AK_ERR_SHAPE_MISMATCH, t.gate.shape[0] = 2); /* ragged: batch dim 1 */
        EXFB(AK_ERR_SHAPE_MISMATCH, t.gate.shape[2] = NT - 1);
        EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate.shape[0] = 3);
        EXB(AK_ERR_SHAPE_MISMATCH, g.d_gate.shape[2] = NT + 1);
        EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm_eps = NAN);
        EXFB(AK_ERR_INVALID_ARGUMENT, dd.has_gate = 2);
        EXFB(AK_ERR_INVALID_ARGUMENT, dd.norm = 2);
    }

    /* block: at most 4096 after capping at the longest sequence */
    block_case(__LINE__, 6000, 5000, NULL, 1, AK_ERR_INVALID_ARGUMENT, 1);
    block_case(__LINE__, 4100, 4097, NULL, 1, AK_ERR_INVALID_ARGUMENT, 1);
    block_case(__LINE__, 6000, INT32_MAX, NULL, 1, AK_ERR_INVALID_ARGUMENT, 1);
    block_case(__LINE__, 100, 5000, NULL, 1, AK_OK, 1);      /* capped at T = 100 */
    block_case(__LINE__, 100, INT32_MAX, NULL, 1, AK_OK, 1);
    block_case(__LINE__, 4100, 4096, NULL, 1, AK_OK, 0);     /* the largest block (references skipped: O(T^2)) */
    {
        static const int32_t cu_long[3] = {0, 100, 6000}, cu_short[4] = {0, 100, 100, 250}, cu_empty[2] = {0, 0};
        block_case(__LINE__, 6000, 5000, cu_long, 2, AK_ERR_INVALID_ARGUMENT, 1); /* longest sequence 5900 */
        block_case(__LINE__, 6000, 5000, cu_short, 3, AK_OK, 1);                 /* longest 150, 5750 padding rows */
        block_case(__LINE__, 6000, 5000, cu_empty, 1, AK_OK, 1);                 /* nothing but padding */
    }
}

/* ================================================================================================
 * main
 * ============================================================================================== */

int main(int argc, char **argv) {
    g_verbose = (int)tu_env_long("AK_SWEEP_VERBOSE", 0);
    g_quick = (int)tu_env_long("AK_LINEAR_QUICK", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    const long n_arg = argc > 2 ? strtol(argv[2], NULL, 10) : -1;
    if (ak_ctx_create(&g_ctx) != AK_OK || ak_ctx_create(&g_ctx1) != AK_OK || ak_ctx_create(&g_ctx3) != AK_OK) {
        fprintf(stderr, "test_linear_norm: ak_ctx_create failed\n");
        return 1;
    }
    if (ak_ctx_set_num_threads(g_ctx1, 1) != AK_OK || ak_ctx_set_num_threads(g_ctx3, 3) != AK_OK) {
        fprintf(stderr, "test_linear_norm: ak_ctx_set_num_threads failed\n");
        return 1;
    }
    const double t0 = tu_now();
    int any = 0;
#define GROUP(name, call)                                                                               \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                                        \
        const double tg_ = tu_now();                                                                    \
        call;                                                                                           \
        any = 1;                                                                                        \
        if (g_verbose) printf("group %s: %.2f s\n", name, tu_now() - tg_);                              \
    }
    GROUP("invalid", group_invalid())
    GROUP("fwd", group_fwd(n_arg))
    GROUP("bwd", group_bwd(n_arg))
#undef GROUP
    ak_ctx_destroy(g_ctx), ak_ctx_destroy(g_ctx1), ak_ctx_destroy(g_ctx3);
    if (!any) {
        fprintf(stderr, "test_linear_norm: unknown group '%s' (fwd, bwd, invalid, all)\n", group);
        return 2;
    }
    if (g_verbose)
        printf("worst err / allowed (f32): fwd %.3f, bwd %.3f; worst finite-difference err / scale beyond the step "
               "term: %.3g; worst |D(h) - D(h/2)| / scale: %.3g\n", g_worst_fwd, g_worst_bwd, g_worst_fd, g_worst_step);
    char name[64];
    snprintf(name, sizeof name, "test_linear_norm %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
