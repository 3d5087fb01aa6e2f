/*
 * test_linear_bwd.c — the gradients of linear attention (Lightning Attention): ak_la_backward (chunked,
 * fp32) and ak_la_backward_ref (double, the materialised form).
 *
 * Groups (`test_linear_bwd <group>`; no group = all):
 *   fd        ak_la_backward_ref vs central finite differences of
 *               L = sum(O .* G) + sum(S_final .* G_S)
 *             with O from ak_la_forward_ref (AK_F64) and S_final from the test's own double recurrence
 *             (ak_la_forward_ref's state_out is f32; it is checked against the double recurrence to f32
 *             precision). L is linear in each of q, k, v and state_in separately, and every input sits
 *             on a grid of 2^-10 in [-1, 1], so x +- 2^-6 is exact in f32 and the central difference
 *             is the exact derivative up to the double rounding of L: asserted to 1e-9 relative, on
 *             single elements and on random {-1,0,1} directions over the whole tensor.
 *             lambda in {1 (has_decay 0), 0.9, 9e-4}, T in {1, 5, 17, 64}, d != e, with and without
 *             state_in and the gradient of the final state, scale 1 and 0.5, some ragged batches.
 *   chunked   ak_la_backward vs ak_la_backward_ref (dq, dk, dv as AK_F64) for block sizes
 *             {1, 3, 16, 64, >= T} and T in {1, B-1, B, B+1, 7B+3}, lambda as above (the other heads get
 *             the other decays), d != e, heads 1..3, batch 1..2, f32/bf16/f16 for q/k/v, d_o and each
 *             gradient output, strided views, ragged batches with an empty sequence and padding rows
 *             (which must be written as 0). Accuracy rule of tests/README.md per gradient tensor:
 *             err(opt) <= 2 * err(naive32) + floor, naive32 = the materialised formulas in float (below).
 *   threads   1, 2, 3 threads give identical bytes; a sequence alone == the same sequence in a ragged batch
 *   invalid   every invalid input, one at a time, with its status; outputs untouched after a refusal
 *   long      T = 20000, d = e = 8, lambda 1 and 0.5: finite; block 64 == block 7 to 1e-4 relative; a few
 *             rows (and the whole d_state_in) against the test's own O(T) double formulas
 *
 * Environment: AK_LB_FIRST / AK_LB_N (chunked cases), AK_LB_VERBOSE=1 (print every case and its errors),
 * AK_LB_QUICK=1 (sanitizer builds: every other chunked case, fewer finite-difference samples).
 * Reproduce chunked case i:  AK_LB_FIRST=i AK_LB_N=1 AK_LB_VERBOSE=1 ./test_linear_bwd chunked
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

#define MAXSEQ 4
#define MAXH 4
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int g_verbose = 0;
static int g_quick = 0;

/* ================================================================================================
 * One problem: inputs (owned, strided, poisoned outside the valid rows) and the descriptor.
 * ============================================================================================== */

typedef struct lb_spec {
    int B, H, T, d, e, block;
    int ragged;                     /* B sequences of lengths lens[], packed, then `pad` padding rows */
    int lens[MAXSEQ], pad;
    int has_decay;
    double lam[MAXH];               /* per-head decay (used when has_decay) */
    int init, dso;                  /* has_initial_state, has_d_state_out */
    float scale;
    ak_dtype dt_qkv, dt_do;
    tlayout lay_q, lay_k, lay_v, lay_g, lay_s0, lay_gs, lay_ld;
    int grid;                       /* values k / 1024, k in [-1024, 1024] (exact under +- 2^-6) */
} lb_spec;

typedef struct lb_case {
    lb_spec s;
    ak_la_desc d;
    int32_t cu[MAXSEQ + 1];
    int64_t Bt, Lt;                 /* tensor dims 0 and 2 */
    tbuf q, k, v, g, ld, s0, gs;
} lb_case;

static void spec_default(lb_spec *s) {
    memset(s, 0, sizeof *s);
    s->B = s->H = 1;
    s->d = 3;
    s->e = 5;
    s->scale = 1.0f;
    s->dt_qkv = s->dt_do = AK_F32;
    for (int h = 0; h < MAXH; h++)
        s->lam[h] = 1.0;
}

static int64_t seq_len(const lb_case *c, int b) { return c->s.ragged ? c->cu[b + 1] - c->cu[b] : c->s.T; }
static int64_t seq_off(const lb_case *c, int b) { return c->s.ragged ? c->cu[b] : 0; }
static int64_t seq_bi(const lb_case *c, int b) { return c->s.ragged ? 0 : b; }
static double case_ld(const lb_case *c, int h) {
    int64_t i = h;
    return c->s.has_decay ? ten_get(&c->ld.t, &i) : 0.0;
}

static double draw(rng *r, int grid) {
    return grid ? (double)(rng_int(r, 2049) - 1024) / 1024.0 : rng_range(r, -1.0, 1.0);
}

static void fill_rows(const lb_case *c, tbuf *b, int ncols, rng *r) {
    for (int sq = 0; sq < c->s.B; sq++)
        for (int h = 0; h < c->s.H; h++)
            for (int64_t i = 0; i < seq_len(c, sq); i++)
                for (int x = 0; x < ncols; x++)
                    ten_set4(&b->t, seq_bi(c, sq), h, seq_off(c, sq) + i, x, draw(r, c->s.grid));
}

static void fill_state(const lb_case *c, tbuf *b, rng *r) {
    for (int sq = 0; sq < c->s.B; sq++)
        for (int h = 0; h < c->s.H; h++)
            for (int x = 0; x < c->s.d; x++)
                for (int y = 0; y < c->s.e; y++)
                    ten_set4(&b->t, sq, h, x, y, draw(r, c->s.grid));
}

/* Allocate and fill; returns 0 on success. */
static int lb_create(lb_case *c, const lb_spec *s, rng *r) {
    memset(c, 0, sizeof *c);
    c->s = *s;
    ak_la_desc_init(&c->d);
    c->d.batch = s->B;
    c->d.num_heads = s->H;
    c->d.head_dim = s->d;
    c->d.head_dim_v = s->e;
    c->d.dtype_qkv = s->dt_qkv;
    c->d.dtype_o = AK_F32;
    c->d.scale = s->scale;
    c->d.has_decay = s->has_decay;
    c->d.has_initial_state = s->init;
    c->d.block = s->block;
    if (s->ragged) {
        c->cu[0] = 0;
        for (int b = 0; b < s->B; b++)
            c->cu[b + 1] = c->cu[b] + s->lens[b];
        c->Bt = 1;
        c->Lt = c->cu[s->B] + s->pad;
        c->d.seqlen = 7777; /* ignored when ragged */
        c->d.cu_seqlens = c->cu;
    } else {
        c->Bt = s->B;
        c->Lt = s->T;
        c->d.seqlen = s->T;
    }
    int64_t qs[4] = {c->Bt, s->H, c->Lt, s->d}, vs[4] = {c->Bt, s->H, c->Lt, s->e};
    int64_t ss[4] = {s->B, s->H, s->d, s->e}, hs[1] = {s->H};
    int bad = tbuf_make(&c->q, s->dt_qkv, 4, qs, s->lay_q, r) | tbuf_make(&c->k, s->dt_qkv, 4, qs, s->lay_k, r) |
              tbuf_make(&c->v, s->dt_qkv, 4, vs, s->lay_v, r) | tbuf_make(&c->g, s->dt_do, 4, vs, s->lay_g, r);
    if (s->has_decay) bad |= tbuf_make(&c->ld, AK_F32, 1, hs, s->lay_ld, r);
    if (s->init) bad |= tbuf_make(&c->s0, AK_F32, 4, ss, s->lay_s0, r);
    if (s->dso) bad |= tbuf_make(&c->gs, AK_F32, 4, ss, s->lay_gs, r);
    if (bad) return -1;
    fill_rows(c, &c->q, s->d, r);
    fill_rows(c, &c->k, s->d, r);
    fill_rows(c, &c->v, s->e, r);
    fill_rows(c, &c->g, s->e, r);
    if (s->has_decay)
        for (int64_t h = 0; h < s->H; h++)
            ten_set(&c->ld.t, &h, (double)(float)log(s->lam[h]));
    if (s->init) fill_state(c, &c->s0, r);
    if (s->dso) fill_state(c, &c->gs, r);
    return 0;
}

static void lb_free(lb_case *c) {
    tbuf_free(&c->q), tbuf_free(&c->k), tbuf_free(&c->v), tbuf_free(&c->g);
    tbuf_free(&c->ld), tbuf_free(&c->s0), tbuf_free(&c->gs);
}

static ak_la_desc lb_desc(const lb_case *c) {
    ak_la_desc d = c->d;
    if (c->s.ragged) d.cu_seqlens = c->cu;
    return d;
}

static ak_la_tensors lb_tensors(const lb_case *c) {
    ak_la_tensors t;
    ak_la_tensors_init(&t);
    t.q = c->q.t;
    t.k = c->k.t;
    t.v = c->v.t;
    if (c->s.has_decay) t.log_decay = c->ld.t;
    if (c->s.init) t.state_in = c->s0.t;
    return t;
}

/* Gradient outputs. dsi is always allocated (f32); it must stay untouched when !init. */
typedef struct lb_out {
    tbuf dq, dk, dv, dsi;
} lb_out;

static int lb_out_make(lb_out *o, const lb_case *c, const ak_dtype dt[3], const tlayout lay[4], rng *r) {
    int64_t qs[4] = {c->Bt, c->s.H, c->Lt, c->s.d}, vs[4] = {c->Bt, c->s.H, c->Lt, c->s.e};
    int64_t ss[4] = {c->s.B, c->s.H, c->s.d, c->s.e};
    return tbuf_make(&o->dq, dt[0], 4, qs, lay[0], r) | tbuf_make(&o->dk, dt[1], 4, qs, lay[1], r) |
           tbuf_make(&o->dv, dt[2], 4, vs, lay[2], r) | tbuf_make(&o->dsi, AK_F32, 4, ss, lay[3], r);
}

static void lb_out_free(lb_out *o) { tbuf_free(&o->dq), tbuf_free(&o->dk), tbuf_free(&o->dv), tbuf_free(&o->dsi); }

static void lb_out_poison(lb_out *o) { tbuf_poison(&o->dq), tbuf_poison(&o->dk), tbuf_poison(&o->dv), tbuf_poison(&o->dsi); }

static ak_la_grads lb_grads(const lb_case *c, const lb_out *o) {
    ak_la_grads g;
    ak_la_grads_init(&g);
    g.d_o = c->g.t;
    g.has_d_state_out = c->s.dso;
    if (c->s.dso) g.d_state_out = c->gs.t;
    g.dq = o->dq.t;
    g.dk = o->dk.t;
    g.dv = o->dv.t;
    if (c->s.init) g.d_state_in = o->dsi.t;
    return g;
}

static void case_tag(const lb_case *c, char *buf, size_t n) {
    const lb_spec *s = &c->s;
    int w = snprintf(buf, n, "blk=%d T=%d B=%d H=%d d=%d e=%d lam=", s->block, s->T, s->B, s->H, s->d, s->e);
    for (int h = 0; h < s->H && w < (int)n; h++)
        w += snprintf(buf + w, n - (size_t)w, "%s%g", h ? "," : "", s->has_decay ? s->lam[h] : 1.0);
    if (s->ragged && w < (int)n) {
        w += snprintf(buf + w, n - (size_t)w, " ragged(");
        for (int b = 0; b < s->B && w < (int)n; b++)
            w += snprintf(buf + w, n - (size_t)w, "%s%d", b ? "," : "", s->lens[b]);
        if (w < (int)n) w += snprintf(buf + w, n - (size_t)w, " +%d pad)", s->pad);
    }
    if (w < (int)n)
        snprintf(buf + w, n - (size_t)w, "%s%s scale=%g qkv=%s do=%s lay(q,k,v,g)=%s,%s,%s,%s", s->init ? " init" : "",
                 s->dso ? " dso" : "", (double)s->scale, tu_dtype_short(s->dt_qkv), tu_dtype_short(s->dt_do),
                 tlayout_name(s->lay_q), tlayout_name(s->lay_k), tlayout_name(s->lay_v), tlayout_name(s->lay_g));
}

/* ================================================================================================
 * naive32: the materialised formulas of ak_la_backward_ref's header comment, in float, accumulated in
 * index order (q' = fl(c q), lambda^m = fl(exp(log_decay * m)) rounded once from double):
 *   dP[t][s] = fl(lambda^(t-s) * dot32(g_t, v_s)), s <= t
 *   dQ_t  = c * (sum_s dP[t][s] k_s + lambda^(t+1) * (S0 g_t))
 *   dK_s  = sum_{t>=s} dP[t][s] q'_t + lambda^(n-1-s) * (dS_f v_s)
 *   dV_s  = sum_{t>=s} fl(lambda^(t-s) * dot32(q'_t, k_s)) g_t + lambda^(n-1-s) * (dS_f^T k_s)
 *   dS0   = sum_t (lambda^(t+1) * q'_t[x]) * g_t[y] + lambda^n * dS_f
 * written to outputs of the optimised run's dtypes (rounded once, like the library's store).
 * ============================================================================================== */

static float dot32(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++)
        acc += a[i] * b[i];
    return acc;
}

static int naive32_bwd(const lb_case *c, const lb_out *o) {
    const int d = c->s.d, e = c->s.e;
    int64_t nmax = 0;
    for (int b = 0; b < c->s.B; b++)
        if (seq_len(c, b) > nmax) nmax = seq_len(c, b);
    size_t N = (size_t)nmax + 1;
    float *q = malloc(sizeof(float) * N * (size_t)d), *k = malloc(sizeof(float) * N * (size_t)d);
    float *v = malloc(sizeof(float) * N * (size_t)e), *g = malloc(sizeof(float) * N * (size_t)e);
    float *dP = malloc(sizeof(float) * N * N), *pw = malloc(sizeof(float) * (N + 1));
    float *S0 = malloc(sizeof(float) * (size_t)(d * e)), *Sf = malloc(sizeof(float) * (size_t)(d * e));
    float *acc = malloc(sizeof(float) * (size_t)(d > e ? d : e));
    if (!q || !k || !v || !g || !dP || !pw || !S0 || !Sf || !acc) {
        free(q), free(k), free(v), free(g), free(dP), free(pw), free(S0), free(Sf), free(acc);
        return -1;
    }
    const float cs = c->s.scale;
    for (int b = 0; b < c->s.B; b++)
        for (int h = 0; h < c->s.H; h++) {
            const int64_t n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bi(c, b);
            const double ld = case_ld(c, h);
            for (int64_t m = 0; m <= n; m++)
                pw[m] = (float)exp(ld * (double)m);
            for (int64_t i = 0; i < n; i++) {
                for (int x = 0; x < d; x++) {
                    q[i * d + x] = cs * (float)ten_get4(&c->q.t, bi, h, r0 + i, x);
                    k[i * d + x] = (float)ten_get4(&c->k.t, bi, h, r0 + i, x);
                }
                for (int y = 0; y < e; y++) {
                    v[i * e + y] = (float)ten_get4(&c->v.t, bi, h, r0 + i, y);
                    g[i * e + y] = (float)ten_get4(&c->g.t, bi, h, r0 + i, y);
                }
            }
            for (int x = 0; x < d; x++)
                for (int y = 0; y < e; y++) {
                    S0[x * e + y] = c->s.init ? (float)ten_get4(&c->s0.t, b, h, x, y) : 0.0f;
                    Sf[x * e + y] = c->s.dso ? (float)ten_get4(&c->gs.t, b, h, x, y) : 0.0f;
                }
            for (int64_t t = 0; t < n; t++)
                for (int64_t s = 0; s <= t; s++)
                    dP[t * N + s] = pw[t - s] * dot32(g + t * e, v + s * e, e);
            for (int64_t t = 0; t < n; t++) { /* dQ */
                for (int x = 0; x < d; x++) {
                    float a = 0.0f;
                    for (int64_t s = 0; s <= t; s++)
                        a += dP[t * N + s] * k[s * d + x];
                    a += pw[t + 1] * dot32(S0 + x * e, g + t * e, e);
                    ten_set4(&o->dq.t, bi, h, r0 + t, x, cs * a);
                }
            }
            for (int64_t s = 0; s < n; s++) { /* dK, dV */
                for (int x = 0; x < d; x++) {
                    float a = 0.0f;
                    for (int64_t t = s; t < n; t++)
                        a += dP[t * N + s] * q[t * d + x];
                    a += pw[n - 1 - s] * dot32(Sf + x * e, v + s * e, e);
                    ten_set4(&o->dk.t, bi, h, r0 + s, x, a);
                }
                for (int y = 0; y < e; y++)
                    acc[y] = 0.0f;
                for (int64_t t = s; t < n; t++) {
                    float w = pw[t - s] * dot32(q + t * d, k + s * d, d);
                    for (int y = 0; y < e; y++)
                        acc[y] += w * g[t * e + y];
                }
                for (int y = 0; y < e; y++) {
                    float f = 0.0f;
                    for (int x = 0; x < d; x++)
                        f += Sf[x * e + y] * k[s * d + x];
                    ten_set4(&o->dv.t, bi, h, r0 + s, y, acc[y] + pw[n - 1 - s] * f);
                }
            }
            if (c->s.init)
                for (int x = 0; x < d; x++)
                    for (int y = 0; y < e; y++) {
                        float a = 0.0f;
                        for (int64_t t = 0; t < n; t++)
                            a += (pw[t + 1] * q[t * d + x]) * g[t * e + y];
                        ten_set4(&o->dsi.t, b, h, x, y, a + pw[n] * Sf[x * e + y]);
                    }
        }
    free(q), free(k), free(v), free(g), free(dP), free(pw), free(S0), free(Sf), free(acc);
    return 0;
}

/* ================================================================================================
 * The accuracy rule per gradient tensor (tests/README.md):
 *   err(x) = max|x - ref| over the valid elements;  pass iff err(opt) <= 2 err(naive32) + floor,
 *   floor = 1e-6 max(1, max|ref|) for f32 outputs, 2 ulp of the output dtype at max|ref| for bf16/f16.
 * Exactly: no NaN/Inf; padding rows of dq/dk/dv == 0; memory around and between elements untouched.
 * ============================================================================================== */

typedef struct gstat {
    double err_opt, err_naive, maxref, floor;
} gstat;

/* which: 0 dq, 1 dk, 2 dv, 3 dsi. ref / nv may be NULL (then only the exact checks). */
static int check_grad(const lb_case *c, int which, const tbuf *opt, const tbuf *ref, const tbuf *nv, gstat *st,
                      const char *tag) {
    static const char *names[4] = {"dq", "dk", "dv", "d_state_in"};
    const int ncols = which == 2 ? c->s.e : c->s.d;
    gstat z = {0, 0, 0, 0};
    int64_t bad_finite = 0, bad_pad = 0;
    double first_bad = 0.0;
    if (which < 3) {
        for (int b = 0; b < c->s.B; b++)
            for (int h = 0; h < c->s.H; h++)
                for (int64_t i = 0; i < seq_len(c, b); i++)
                    for (int x = 0; x < ncols; x++) {
                        int64_t bi = seq_bi(c, b), r = seq_off(c, b) + i;
                        double a = ten_get4(&opt->t, bi, h, r, x);
                        if (!isfinite(a)) {
                            if (!bad_finite++) first_bad = a;
                            continue;
                        }
                        if (!ref) continue;
                        double rf = ten_get4(&ref->t, bi, h, r, x);
                        if (fabs(rf) > z.maxref) z.maxref = fabs(rf);
                        if (fabs(a - rf) > z.err_opt) z.err_opt = fabs(a - rf);
                        if (nv) {
                            double nn = ten_get4(&nv->t, bi, h, r, x);
                            if (!(fabs(nn - rf) <= z.err_naive)) z.err_naive = fabs(nn - rf);
                        }
                    }
        if (c->s.ragged)
            for (int h = 0; h < c->s.H; h++)
                for (int64_t r = c->cu[c->s.B]; r < c->Lt; r++)
                    for (int x = 0; x < ncols; x++)
                        if (ten_get4(&opt->t, 0, h, r, x) != 0.0) bad_pad++;
    } else {
        for (int b = 0; b < c->s.B; b++)
            for (int h = 0; h < c->s.H; h++)
                for (int x = 0; x < c->s.d; x++)
                    for (int y = 0; y < c->s.e; y++) {
                        double a = ten_get4(&opt->t, b, h, x, y);
                        if (!isfinite(a)) {
                            if (!bad_finite++) first_bad = a;
                            continue;
                        }
                        if (!ref) continue;
                        double rf = ten_get4(&ref->t, b, h, x, y);
                        if (fabs(rf) > z.maxref) z.maxref = fabs(rf);
                        if (fabs(a - rf) > z.err_opt) z.err_opt = fabs(a - rf);
                        if (nv) {
                            double nn = ten_get4(&nv->t, b, h, x, y);
                            if (!(fabs(nn - rf) <= z.err_naive)) z.err_naive = fabs(nn - rf);
                        }
                    }
    }
    ak_dtype dt = opt->t.dtype;
    z.floor = dt == AK_F32 || dt == AK_F64 ? 1e-6 * (z.maxref > 1.0 ? z.maxref : 1.0) : 2.0 * tu_ulp(dt, z.maxref);
    int ok = 1;
    CHECK(bad_finite == 0, "%s: %s has %lld non-finite elements (first %g)", tag, names[which], (long long)bad_finite,
          first_bad);
    ok &= bad_finite == 0;
    CHECK(bad_pad == 0, "%s: %s has %lld non-zero padding elements", tag, names[which], (long long)bad_pad);
    ok &= bad_pad == 0;
    int untouched = tbuf_outside_untouched(opt);
    CHECK(untouched, "%s: %s wrote outside its view", tag, names[which]);
    ok &= untouched;
    if (ref && nv) {
        /* the oracle itself: the independent naive32 must agree with it (a wrong reference would otherwise
         * widen the rule's own tolerance): within 1e-4 max(1, max|ref|) (f32), one ulp of the dtype more
         * for bf16/f16 outputs (measured over the 75 cases: 9.2e-7 relative resp. half an ulp) */
        double nbound = 1e-4 * (z.maxref > 1.0 ? z.maxref : 1.0) + (dt == AK_F32 || dt == AK_F64 ? 0.0 : tu_ulp(dt, z.maxref));
        CHECK(z.err_naive <= nbound, "%s: %s: naive32 and the reference disagree by %.3g (bound %.3g, max|ref| %.3g)", tag,
              names[which], z.err_naive, nbound, z.maxref);
        ok &= z.err_naive <= nbound;
        int pass = z.err_opt <= 2.0 * z.err_naive + z.floor;
        CHECK(pass, "%s: %s (%s) err %.3g > 2 * naive32 %.3g + floor %.3g (max|ref| %.3g)", tag, names[which],
              tu_dtype_short(dt), z.err_opt, z.err_naive, z.floor, z.maxref);
        ok &= pass;
    }
    if (st) *st = z;
    return ok;
}

/* ================================================================================================
 * fd: ak_la_backward_ref against central finite differences of L.
 * ============================================================================================== */

/* L = sum(O .* G) over the valid rows (O from ak_la_forward_ref, AK_F64) + sum(S_final .* G_S) (S_final
 * by the double recurrence). o64 is a scratch [Bt][H][Lt][e] f64 tbuf. Returns NAN on a failure. */
static double fd_loss(ak_ctx *ctx, const lb_case *c, tbuf *o64) {
    ak_la_desc d = lb_desc(c);
    d.dtype_o = AK_F64;
    d.return_final_state = 0;
    ak_la_tensors t = lb_tensors(c);
    t.o = o64->t;
    ak_status st = ak_la_forward_ref(ctx, &d, &t);
    if (st != AK_OK) {
        CHECK(st == AK_OK, "ak_la_forward_ref: %s (%s)", ak_status_string(st), ak_ctx_last_error(ctx));
        return NAN;
    }
    double L = 0.0;
    const int dd = c->s.d, e = c->s.e;
    double *S = malloc(sizeof(double) * (size_t)(dd * e));
    if (!S) return NAN;
    for (int b = 0; b < c->s.B; b++)
        for (int h = 0; h < c->s.H; h++) {
            const int64_t n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bi(c, b);
            for (int64_t i = 0; i < n; i++)
                for (int y = 0; y < e; y++)
                    L += ten_get4(&o64->t, bi, h, r0 + i, y) * ten_get4(&c->g.t, bi, h, r0 + i, y);
            if (!c->s.dso) continue;
            const double lam = exp(case_ld(c, h));
            for (int x = 0; x < dd * e; x++)
                S[x] = c->s.init ? ten_get4(&c->s0.t, b, h, x / e, x % e) : 0.0;
            for (int64_t i = 0; i < n; i++)
                for (int x = 0; x < dd; x++)
                    for (int y = 0; y < e; y++)
                        S[x * e + y] = lam * S[x * e + y] +
                                       ten_get4(&c->k.t, bi, h, r0 + i, x) * ten_get4(&c->v.t, bi, h, r0 + i, y);
            for (int x = 0; x < dd; x++)
                for (int y = 0; y < e; y++)
                    L += S[x * e + y] * ten_get4(&c->gs.t, b, h, x, y);
        }
    free(S);
    return L;
}

/* The forward reference's own f32 final state against the double recurrence (to f32 rounding). */
static void fd_check_state_out(ak_ctx *ctx, const lb_case *c, tbuf *o64, const char *tag) {
    int64_t ss[4] = {c->s.B, c->s.H, c->s.d, c->s.e};
    tbuf so;
    if (tbuf_make(&so, AK_F32, 4, ss, LAY_CONTIG, NULL)) return;
    ak_la_desc d = lb_desc(c);
    d.dtype_o = AK_F64;
    d.return_final_state = 1;
    ak_la_tensors t = lb_tensors(c);
    t.o = o64->t;
    t.state_out = so.t;
    CHECK_STATUS(ak_la_forward_ref(ctx, &d, &t), AK_OK);
    const int dd = c->s.d, e = c->s.e;
    double *S = malloc(sizeof(double) * (size_t)(dd * e));
    int bad = 0;
    for (int b = 0; b < c->s.B && S; b++)
        for (int h = 0; h < c->s.H; h++) {
            const int64_t n = seq_len(c, b), r0 = seq_off(c, b), bi = seq_bi(c, b);
            const double lam = exp(case_ld(c, h));
            for (int x = 0; x < dd * e; x++)
                S[x] = c->s.init ? ten_get4(&c->s0.t, b, h, x / e, x % e) : 0.0;
            for (int64_t i = 0; i < n; i++)
                for (int x = 0; x < dd; x++)
                    for (int y = 0; y < e; y++)
                        S[x * e + y] = lam * S[x * e + y] +
                                       ten_get4(&c->k.t, bi, h, r0 + i, x) * ten_get4(&c->v.t, bi, h, r0 + i, y);
            for (int x = 0; x < dd * e; x++) {
                double got = ten_get4(&so.t, b, h, x / e, x % e);
                if (!(fabs(got - S[x]) <= 0.5 * tu_ulp(AK_F32, S[x]) + 1e-12 * (1.0 + fabs(S[x])))) bad++;
            }
        }
    CHECK(bad == 0, "%s: ak_la_forward_ref state_out differs from the double recurrence in %d elements", tag, bad);
    free(S);
    tbuf_free(&so);
}

static void group_fd(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) {
        CHECK(0, "ak_ctx_create failed");
        return;
    }
    static const double lams[3] = {1.0, 0.9, 9e-4};
    static const int Ts[4] = {1, 5, 17, 64};
    static const float scales[2] = {1.0f, 0.5f};
    const double hstep = 1.0 / 64.0;
    const int n_single = g_quick ? 2 : 4, n_dir = g_quick ? 1 : 2;
    int cfg = 0, n_evals = 0;
    double worst = 0.0;
    for (int li = 0; li < 3; li++)
        for (int ti = 0; ti < 4; ti++)
            for (int init = 0; init < 2; init++)
                for (int dso = 0; dso < 2; dso++)
                    for (int si = 0; si < 2; si++, cfg++) {
                        rng r = rng_seed(0xFD00u + (uint64_t)cfg);
                        lb_spec s;
                        spec_default(&s);
                        s.T = Ts[ti];
                        s.B = 1 + cfg % 2;
                        s.H = 1 + (cfg / 2) % 2;
                        s.d = cfg % 2 ? 3 : 6;
                        s.e = cfg % 2 ? 5 : 4;
                        s.has_decay = li > 0;
                        for (int h = 0; h < MAXH; h++)
                            s.lam[h] = lams[li];
                        if (s.has_decay && s.H > 1) s.lam[1] = lams[3 - li]; /* the other decay on head 1 */
                        s.init = init;
                        s.dso = dso;
                        s.scale = scales[si];
                        s.grid = 1;
                        static const tlayout lays[4] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};
                        s.lay_q = lays[rng_int(&r, 4)];
                        s.lay_k = lays[rng_int(&r, 4)];
                        s.lay_v = lays[rng_int(&r, 4)];
                        s.lay_g = lays[rng_int(&r, 4)];
                        s.lay_s0 = s.lay_gs = rng_chance(&r, 0.5) ? LAY_PADDED : LAY_CONTIG;
                        s.lay_ld = rng_chance(&r, 0.5) ? LAY_PADDED : LAY_CONTIG;
                        if (ti >= 2 && cfg % 4 == 3) { /* ragged: the T sequence, an empty one, a short one */
                            s.ragged = 1;
                            s.B = 3;
                            s.lens[0] = s.T;
                            s.lens[1] = 0;
                            s.lens[2] = 3;
                            s.pad = 2;
                        }
                        lb_case c;
                        char tag[400];
                        if (lb_create(&c, &s, &r)) {
                            CHECK(0, "fd: allocation failed");
                            continue;
                        }
                        {
                            char t2[300];
                            case_tag(&c, t2, sizeof t2);
                            snprintf(tag, sizeof tag, "fd cfg %d [%s]", cfg, t2);
                        }
                        /* gradients from the reference: dq, dk, dv in f64 (strided), d_state_in f32 */
                        lb_out o;
                        static const ak_dtype f64s[3] = {AK_F64, AK_F64, AK_F64};
                        tlayout ol[4] = {lays[rng_int(&r, 4)], lays[rng_int(&r, 4)], lays[rng_int(&r, 4)], LAY_PADDED};
                        tbuf o64;
                        int64_t vs[4] = {c.Bt, s.H, c.Lt, s.e};
                        if (lb_out_make(&o, &c, f64s, ol, &r) || tbuf_make(&o64, AK_F64, 4, vs, LAY_CONTIG, NULL)) {
                            CHECK(0, "fd: allocation failed");
                            lb_free(&c);
                            continue;
                        }
                        ak_la_desc d = lb_desc(&c);
                        ak_la_tensors t = lb_tensors(&c);
                        ak_la_grads g = lb_grads(&c, &o);
                        ak_status st = ak_la_backward_ref(ctx, &d, &t, &g);
                        CHECK(st == AK_OK, "%s: ak_la_backward_ref: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
                        int ok = st == AK_OK;
                        for (int w = 0; w < 3 + init && ok; w++)
                            ok &= check_grad(&c, w, w == 0 ? &o.dq : w == 1 ? &o.dk : w == 2 ? &o.dv : &o.dsi, NULL, NULL,
                                             NULL, tag);
                        if (!init) {
                            tbuf fresh;
                            if (!tbuf_make_like(&fresh, &o.dsi)) {
                                CHECK(tbuf_same_bytes(&fresh, &o.dsi), "%s: d_state_in written without has_initial_state", tag);
                                tbuf_free(&fresh);
                            }
                        }
                        if (dso && ok) fd_check_state_out(ctx, &c, &o64, tag);
                        /* finite differences, tensor by tensor: q, k, v, state_in */
                        for (int w = 0; w < 3 + init && ok; w++) {
                            tbuf *in = w == 0 ? &c.q : w == 1 ? &c.k : w == 2 ? &c.v : &c.s0;
                            const tbuf *gr = w == 0 ? &o.dq : w == 1 ? &o.dk : w == 2 ? &o.dv : &o.dsi;
                            const int ncols = w == 2 ? s.e : s.d;
                            /* enumerate the valid elements: (tensor idx0, h, row, col) */
                            int64_t nel = 0;
                            if (w < 3)
                                for (int b = 0; b < s.B; b++)
                                    nel += seq_len(&c, b) * s.H * ncols;
                            else
                                nel = (int64_t)s.B * s.H * s.d * s.e;
                            if (nel == 0) continue;
                            int64_t(*idx)[4] = malloc(sizeof *idx * (size_t)nel);
                            signed char *u = malloc((size_t)nel);
                            if (!idx || !u) {
                                free(idx), free(u);
                                continue;
                            }
                            int64_t m = 0;
                            if (w < 3) {
                                for (int b = 0; b < s.B; b++)
                                    for (int h = 0; h < s.H; h++)
                                        for (int64_t i = 0; i < seq_len(&c, b); i++)
                                            for (int x = 0; x < ncols; x++, m++) {
                                                idx[m][0] = seq_bi(&c, b), idx[m][1] = h;
                                                idx[m][2] = seq_off(&c, b) + i, idx[m][3] = x;
                                            }
                            } else {
                                for (int b = 0; b < s.B; b++)
                                    for (int h = 0; h < s.H; h++)
                                        for (int x = 0; x < s.d; x++)
                                            for (int y = 0; y < s.e; y++, m++)
                                                idx[m][0] = b, idx[m][1] = h, idx[m][2] = x, idx[m][3] = y;
                            }
                            double gmax = 0.0;
                            for (int64_t j = 0; j < nel; j++) {
                                double gv = ten_get(&gr->t, idx[j]);
                                if (fabs(gv) > gmax) gmax = fabs(gv);
                            }
                            for (int smp = 0; smp < n_single + n_dir; smp++) {
                                /* direction: one element (+1), or random {-1, 0, 1} over the whole tensor */
                                if (smp < n_single) {
                                    memset(u, 0, (size_t)nel);
                                    u[rng_int(&r, (int)nel)] = 1;
                                } else {
                                    for (int64_t j = 0; j < nel; j++)
                                        u[j] = (signed char)(rng_int(&r, 3) - 1);
                                }
                                double an = 0.0, mag = 0.0, rnd = 0.0;
                                for (int64_t j = 0; j < nel; j++) {
                                    if (!u[j]) continue;
                                    double gv = ten_get(&gr->t, idx[j]);
                                    an += u[j] * gv;
                                    mag += fabs(gv);
                                    if (w == 3) rnd += 0.5 * tu_ulp(AK_F32, gv); /* d_state_in is f32 */
                                }
                                for (int64_t j = 0; j < nel; j++)
                                    if (u[j]) ten_set(&in->t, idx[j], ten_get(&in->t, idx[j]) + hstep * u[j]);
                                double Lp = fd_loss(ctx, &c, &o64);
                                for (int64_t j = 0; j < nel; j++)
                                    if (u[j]) ten_set(&in->t, idx[j], ten_get(&in->t, idx[j]) - 2.0 * hstep * u[j]);
                                double Lm = fd_loss(ctx, &c, &o64);
                                for (int64_t j = 0; j < nel; j++)
                                    if (u[j]) ten_set(&in->t, idx[j], ten_get(&in->t, idx[j]) + hstep * u[j]);
                                n_evals += 2;
                                double fd = (Lp - Lm) / (2.0 * hstep);
                                double tol = 1e-9 * (1.0 > gmax ? 1.0 : gmax) + 1e-9 * mag + rnd;
                                double err = fabs(fd - an);
                                double rel = err / (1.0 > gmax ? 1.0 : gmax);
                                if (rel > worst && w < 3) worst = rel;
                                CHECK(err <= tol, "%s: d%s %s: finite difference %.17g, gradient %.17g (err %.3g > tol %.3g)",
                                      tag, w == 0 ? "q" : w == 1 ? "k" : w == 2 ? "v" : "_state_in",
                                      smp < n_single ? "element" : "direction", fd, an, err, tol);
                            }
                            /* the inputs are restored exactly (grid values) */
                            free(idx), free(u);
                        }
                        if (g_verbose) printf("%s: ok\n", tag);
                        lb_out_free(&o);
                        tbuf_free(&o64);
                        lb_free(&c);
                    }
    if (g_verbose)
        printf("fd: %d configurations, %d loss evaluations, worst |fd - grad| / max(1, max|grad|) (q, k, v) = %.3g\n",
               cfg, n_evals, worst);
    ak_ctx_destroy(ctx);
}

/* ================================================================================================
 * chunked: ak_la_backward vs ak_la_backward_ref under the accuracy rule.
 * ============================================================================================== */

#define NBLK 5
#define NT 5

/* Case i of the chunked group (i in [0, NBLK * NT * 3)): block, T and lambda from i, the rest drawn. */
static void chunked_spec(int i, lb_spec *s, rng *r) {
    static const int blocks[NBLK - 1] = {1, 3, 16, 64};
    static const double lams[3] = {1.0, 0.9, 9e-4};
    static const tlayout lays[4] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};
    static const ak_dtype dts[3] = {AK_F32, AK_BF16, AK_F16};
    int bi = i / (NT * 3), ti = (i / 3) % NT, li = i % 3;
    spec_default(s);
    int T;
    if (bi < NBLK - 1) {
        int B = blocks[bi];
        int Tl[NT] = {1, B - 1, B, B + 1, 7 * B + 3};
        T = Tl[ti];
        s->block = B;
    } else { /* block >= T */
        static const int Tl[NT] = {1, 17, 64, 100, 300};
        T = Tl[ti];
        s->block = ti % 3 == 0 ? T : ti % 3 == 1 ? T + 1 : 512;
    }
    s->T = T;
    s->B = 1 + rng_int(r, 2);
    s->H = 1 + rng_int(r, 3);
    /* d != e; the big pair only where the O(T^2 d e) reference stays cheap (T^2 B H d e <= 2.5e7) */
    static const int de_small[4][2] = {{5, 7}, {7, 5}, {1, 3}, {8, 3}};
    /* block 64, T = 63, 64, 65, lambda 1 and 0.9: d, e = 64, 32 (one sequence, one head: the reference's cost) */
    const int force_big = bi == 3 && ti >= 1 && ti <= 3 && li < 2;
    if (force_big) s->B = s->H = 1;
    if (force_big || ((double)T * T * s->B * s->H * 2048.0 <= 2.5e7 && rng_chance(r, 0.4))) {
        s->d = rng_chance(r, 0.5) ? 64 : 32;
        s->e = s->d == 64 ? 32 : 64;
    } else {
        int k = rng_int(r, 4);
        s->d = de_small[k][0];
        s->e = de_small[k][1];
    }
    s->has_decay = li > 0;
    for (int h = 0; h < MAXH; h++)
        s->lam[h] = lams[(li + h) % 3]; /* head 0: this case's decay; others: the other two */
    s->init = rng_chance(r, 0.5);
    s->dso = rng_chance(r, 0.5);
    s->scale = rng_chance(r, 0.5) ? 1.0f : rng_chance(r, 0.5) ? 0.5f : 0.3f;
    s->dt_qkv = dts[i % 3 == 0 ? (i / 3) % 3 : rng_int(r, 3)];
    s->dt_do = dts[rng_int(r, 3)];
    s->lay_q = lays[rng_int(r, 4)];
    s->lay_k = lays[rng_int(r, 4)];
    s->lay_v = lays[rng_int(r, 4)];
    s->lay_g = lays[rng_int(r, 4)];
    if (s->B > 1 && rng_chance(r, 0.2)) s->lay_k = LAY_BCAST0; /* one copy of k for every sequence */
    static const tlayout slays[4] = {LAY_CONTIG, LAY_PADDED, LAY_PERMUTED, LAY_BCAST0};
    s->lay_s0 = slays[rng_int(r, s->B > 1 ? 4 : 3)];
    s->lay_gs = slays[rng_int(r, s->B > 1 ? 4 : 3)];
    s->lay_ld = rng_chance(r, 0.5) ? LAY_PADDED : LAY_CONTIG;
    if (rng_chance(r, 0.35) && !force_big) { /* ragged: T, an empty sequence, another length; padding rows */
        s->ragged = 1;
        s->B = 3;
        int other = 1 + rng_int(r, T > 1 ? T : 1);
        int order = rng_int(r, 3);
        s->lens[order] = T;
        s->lens[(order + 1) % 3] = 0;
        s->lens[(order + 2) % 3] = other;
        s->pad = rng_int(r, 4);
        if (s->lay_k == LAY_BCAST0) s->lay_k = LAY_CONTIG;
    }
}

static int g_n_cases = NBLK * NT * 3;

static void group_chunked(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) {
        CHECK(0, "ak_ctx_create failed");
        return;
    }
    long first = tu_env_long("AK_LB_FIRST", 0), count = tu_env_long("AK_LB_N", g_n_cases);
    static const tlayout lays[4] = {LAY_CONTIG, LAY_BSHD, LAY_PADDED, LAY_PERMUTED};
    static const ak_dtype dts[3] = {AK_F32, AK_BF16, AK_F16};
    double worst_ratio = 0.0, worst_naive_f32 = 0.0, worst_naive_ulp = 0.0;
    int run = 0;
    for (long i = first; i < first + count && i < g_n_cases; i++) {
        if (g_quick && i % 2) continue;
        rng r = rng_seed(0xC0DE0000u + (uint64_t)i);
        double tc0 = tu_now();
        lb_spec s;
        chunked_spec((int)i, &s, &r);
        lb_case c;
        if (lb_create(&c, &s, &r)) {
            CHECK(0, "chunked: allocation failed");
            continue;
        }
        char tag[512], t2[360];
        case_tag(&c, t2, sizeof t2);
        ak_dtype odt[3];
        for (int w = 0; w < 3; w++)
            odt[w] = rng_chance(&r, 0.5) ? AK_F32 : dts[rng_int(&r, 3)];
        tlayout ol[4] = {lays[rng_int(&r, 4)], lays[rng_int(&r, 4)], lays[rng_int(&r, 4)],
                         rng_chance(&r, 0.5) ? LAY_PADDED : LAY_PERMUTED};
        snprintf(tag, sizeof tag, "chunked case %ld [%s out=%s,%s,%s]", i, t2, tu_dtype_short(odt[0]),
                 tu_dtype_short(odt[1]), tu_dtype_short(odt[2]));
        static const ak_dtype f64s[3] = {AK_F64, AK_F64, AK_F64};
        static const tlayout contig4[4] = {LAY_CONTIG, LAY_CONTIG, LAY_CONTIG, LAY_CONTIG};
        lb_out opt, ref, nv;
        int alloc_bad = lb_out_make(&opt, &c, odt, ol, &r);
        alloc_bad |= lb_out_make(&ref, &c, f64s, contig4, NULL);
        alloc_bad |= lb_out_make(&nv, &c, odt, contig4, NULL);
        /* copies of the inputs: must be unmodified */
        tbuf cq, ck, cv, cg;
        alloc_bad |= tbuf_make_like(&cq, &c.q) | tbuf_make_like(&ck, &c.k) | tbuf_make_like(&cv, &c.v) |
                     tbuf_make_like(&cg, &c.g);
        if (alloc_bad) {
            CHECK(0, "chunked: allocation failed");
            lb_free(&c);
            continue;
        }
        memcpy(cq.mem, c.q.mem, c.q.mem_elems * c.q.esize);
        memcpy(ck.mem, c.k.mem, c.k.mem_elems * c.k.esize);
        memcpy(cv.mem, c.v.mem, c.v.mem_elems * c.v.esize);
        memcpy(cg.mem, c.g.mem, c.g.mem_elems * c.g.esize);

        ak_la_desc d = lb_desc(&c);
        ak_la_tensors t = lb_tensors(&c);
        ak_la_grads gref = lb_grads(&c, &ref), gopt = lb_grads(&c, &opt);
        ak_status st = ak_la_backward_ref(ctx, &d, &t, &gref);
        CHECK(st == AK_OK, "%s: ak_la_backward_ref: %s (%s)", tag, ak_status_string(st), ak_ctx_last_error(ctx));
        lb_out_poison(&opt);
        ak_status st2 = ak_la_backward(ctx, &d, &t, &gopt);
        CHECK(st2 == AK_OK, "%s: ak_la_backward: %s (%s)", tag, ak_status_string(st2), ak_ctx_last_error(ctx));
        CHECK(naive32_bwd(&c, &nv) == 0, "chunked: naive32 allocation failed");
        if (st == AK_OK && st2 == AK_OK) {
            const tbuf *O[4] = {&opt.dq, &opt.dk, &opt.dv, &opt.dsi}, *R[4] = {&ref.dq, &ref.dk, &ref.dv, &ref.dsi},
                       *N[4] = {&nv.dq, &nv.dk, &nv.dv, &nv.dsi};
            gstat gs[4];
            int ok = 1;
            for (int w = 0; w < 3 + s.init; w++) {
                ok &= check_grad(&c, w, O[w], R[w], N[w], &gs[w], tag);
                double ratio = gs[w].err_opt / (2.0 * gs[w].err_naive + gs[w].floor);
                if (ratio > worst_ratio) worst_ratio = ratio;
                double m1 = gs[w].maxref > 1.0 ? gs[w].maxref : 1.0;
                if (w == 3 || (w == 0 ? O[0] : w == 1 ? O[1] : O[2])->t.dtype == AK_F32) {
                    if (gs[w].err_naive / m1 > worst_naive_f32) worst_naive_f32 = gs[w].err_naive / m1;
                } else if (gs[w].maxref > 0) {
                    double u = gs[w].err_naive / tu_ulp(O[w]->t.dtype, gs[w].maxref);
                    if (u > worst_naive_ulp) worst_naive_ulp = u;
                }
            }
            if (!s.init) {
                tbuf fresh;
                if (!tbuf_make_like(&fresh, &opt.dsi)) {
                    CHECK(tbuf_same_bytes(&fresh, &opt.dsi), "%s: d_state_in written without has_initial_state", tag);
                    tbuf_free(&fresh);
                }
            }
            CHECK(tbuf_same_bytes(&cq, &c.q) && tbuf_same_bytes(&ck, &c.k) && tbuf_same_bytes(&cv, &c.v) &&
                      tbuf_same_bytes(&cg, &c.g),
                  "%s: an input was modified", tag);
            if (g_verbose || !ok) {
                printf("%s (%.2f s)\n ", tag, tu_now() - tc0);
                for (int w = 0; w < 3 + s.init; w++)
                    printf(" %s err %.2e naive %.2e floor %.1e max %.2e;", w == 0 ? "dq" : w == 1 ? "dk" : w == 2 ? "dv" : "dsi",
                           gs[w].err_opt, gs[w].err_naive, gs[w].floor, gs[w].maxref);
                printf("\n");
            }
            if (!ok)
                fprintf(stderr, "  rerun: AK_LB_FIRST=%ld AK_LB_N=1 AK_LB_VERBOSE=1 ./test_linear_bwd chunked\n", i);
        }
        run++;
        tbuf_free(&cq), tbuf_free(&ck), tbuf_free(&cv), tbuf_free(&cg);
        lb_out_free(&opt), lb_out_free(&ref), lb_out_free(&nv);
        lb_free(&c);
    }
    if (g_verbose)
        printf("chunked: %d cases, worst err / (2 naive32 + floor) = %.3f; worst naive32 vs ref: %.3g relative (f32 "
               "outputs), %.3g ulp (bf16/f16 outputs)\n", run, worst_ratio, worst_naive_f32, worst_naive_ulp);
    ak_ctx_destroy(ctx);
}

/* ================================================================================================
 * threads: identical bytes for 1, 2, 3 threads; a sequence alone == inside a ragged batch.
 * ============================================================================================== */

static void group_threads(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) {
        CHECK(0, "ak_ctx_create failed");
        return;
    }
    for (int cs = 0; cs < 6; cs++) {
        rng r = rng_seed(0x7A7A00u + (uint64_t)cs);
        lb_spec s;
        spec_default(&s);
        s.B = 2;
        s.H = 3;
        s.T = cs == 3 ? 200 : 37 + cs;
        s.d = cs == 1 ? 16 : 5;
        s.e = cs == 1 ? 8 : 6;
        s.block = cs == 2 ? 7 : 0;
        s.has_decay = cs != 0;
        s.lam[0] = 0.9, s.lam[1] = 1.0, s.lam[2] = 9e-4;
        s.init = s.dso = cs != 1;
        s.scale = 0.5f;
        s.dt_qkv = cs == 1 ? AK_BF16 : AK_F32;
        s.dt_do = cs == 2 ? AK_F16 : AK_F32;
        s.lay_q = LAY_PADDED;
        if (cs == 2) {
            s.ragged = 1;
            s.B = 3;
            s.lens[0] = 20, s.lens[1] = 0, s.lens[2] = 45;
            s.pad = 3;
        }
        if (cs >= 4) { /* many blocks: the 3-phase form over several windows (one head; three heads on 2 threads) */
            s.B = 1;
            s.H = cs == 4 ? 1 : 3;
            s.T = cs == 4 ? 600 : 301;
            s.block = cs == 4 ? 4 : 5;
            s.d = 13;
            s.e = 7;
            s.lam[0] = 0.97, s.lam[1] = 0.5, s.lam[2] = 1.0;
            s.init = s.dso = 1;
        }
        lb_case c;
        if (lb_create(&c, &s, &r)) continue;
        char tag[512], t2[360];
        case_tag(&c, t2, sizeof t2);
        snprintf(tag, sizeof tag, "threads case %d [%s]", cs, t2);
        static const tlayout lay[4] = {LAY_PADDED, LAY_PERMUTED, LAY_BSHD, LAY_CONTIG};
        ak_dtype odt[3] = {AK_F32, cs == 1 ? AK_BF16 : AK_F32, cs == 2 ? AK_F16 : AK_F32};
        lb_out o[4];
        ak_la_desc d = lb_desc(&c);
        ak_la_tensors t = lb_tensors(&c);
        static const int nts[4] = {1, 2, 3, 7};
        int made = 0;
        for (int k = 0; k < 4; k++) {
            rng rl = rng_seed(99); /* same strides for every run */
            if (lb_out_make(&o[k], &c, odt, lay, &rl)) break;
            made++;
            ak_la_grads g = lb_grads(&c, &o[k]);
            CHECK_STATUS(ak_ctx_set_num_threads(ctx, nts[k]), AK_OK);
            CHECK_STATUS(ak_la_backward(ctx, &d, &t, &g), AK_OK);
        }
        for (int k = 1; k < made; k++)
            CHECK(tbuf_same_bytes(&o[0].dq, &o[k].dq) && tbuf_same_bytes(&o[0].dk, &o[k].dk) &&
                      tbuf_same_bytes(&o[0].dv, &o[k].dv) && tbuf_same_bytes(&o[0].dsi, &o[k].dsi),
                  "%s: %d threads differ from 1 thread", tag, nts[k]);
        if (cs >= 4) { /* the forward too: o and the final state, same bytes for 1, 2, 3, 7 threads */
            const int64_t no = (int64_t)s.B * s.H * s.T * s.e, ns = (int64_t)s.B * s.H * s.d * s.e;
            float *fo[4], *fs[4];
            for (int k = 0; k < 4; k++) {
                fo[k] = (float *)malloc(sizeof(float) * (size_t)(no + ns));
                fs[k] = fo[k] ? fo[k] + no : NULL;
                if (!fo[k]) continue;
                for (int64_t z = 0; z < no + ns; z++) fo[k][z] = NAN;
                ak_la_desc df = d;
                df.return_final_state = 1;
                ak_la_tensors tf = t;
                tf.o = ak_tensor_4d(fo[k], AK_F32, s.B, s.H, s.T, s.e);
                tf.state_out = ak_tensor_4d(fs[k], AK_F32, s.B, s.H, s.d, s.e);
                CHECK_STATUS(ak_ctx_set_num_threads(ctx, nts[k]), AK_OK);
                CHECK_STATUS(ak_la_forward(ctx, &df, &tf), AK_OK);
            }
            for (int k = 1; k < 4; k++)
                if (fo[0] && fo[k])
                    CHECK(memcmp(fo[0], fo[k], sizeof(float) * (size_t)(no + ns)) == 0,
                          "%s: forward on %d threads differs from 1 thread", tag, nts[k]);
            for (int k = 0; k < 4; k++) free(fo[k]);
        }
        if (made >= 3) {
            for (int w = 0; w < 3 + s.init; w++)
                check_grad(&c, w, w == 0 ? &o[0].dq : w == 1 ? &o[0].dk : w == 2 ? &o[0].dv : &o[0].dsi, NULL, NULL, NULL, tag);
        }
        /* batch composition: each sequence alone (dense B = 1, same values) gives the same bytes */
        if (s.ragged && made >= 3) {
            CHECK_STATUS(ak_ctx_set_num_threads(ctx, 2), AK_OK);
            for (int b = 0; b < s.B; b++) {
                lb_spec s1 = s;
                s1.ragged = 0;
                s1.B = 1;
                s1.T = s.lens[b];
                s1.lay_q = LAY_CONTIG;
                lb_case c1;
                if (lb_create(&c1, &s1, &r)) continue;
                const int64_t r0 = c.cu[b];
                for (int h = 0; h < s.H; h++) {
                    for (int64_t i = 0; i < s1.T; i++) {
                        for (int x = 0; x < s.d; x++) {
                            ten_set4(&c1.q.t, 0, h, i, x, ten_get4(&c.q.t, 0, h, r0 + i, x));
                            ten_set4(&c1.k.t, 0, h, i, x, ten_get4(&c.k.t, 0, h, r0 + i, x));
                        }
                        for (int y = 0; y < s.e; y++) {
                            ten_set4(&c1.v.t, 0, h, i, y, ten_get4(&c.v.t, 0, h, r0 + i, y));
                            ten_set4(&c1.g.t, 0, h, i, y, ten_get4(&c.g.t, 0, h, r0 + i, y));
                        }
                    }
                    for (int x = 0; x < s.d; x++)
                        for (int y = 0; y < s.e; y++) {
                            if (s.init) ten_set4(&c1.s0.t, 0, h, x, y, ten_get4(&c.s0.t, b, h, x, y));
                            if (s.dso) ten_set4(&c1.gs.t, 0, h, x, y, ten_get4(&c.gs.t, b, h, x, y));
                        }
                }
                lb_out o1;
                static const tlayout c4[4] = {LAY_CONTIG, LAY_CONTIG, LAY_CONTIG, LAY_CONTIG};
                if (!lb_out_make(&o1, &c1, odt, c4, NULL)) {
                    ak_la_desc d1 = lb_desc(&c1);
                    ak_la_tensors t1 = lb_tensors(&c1);
                    ak_la_grads g1 = lb_grads(&c1, &o1);
                    CHECK_STATUS(ak_la_backward(ctx, &d1, &t1, &g1), AK_OK);
                    int64_t diff = 0;
                    for (int h = 0; h < s.H; h++) {
                        for (int64_t i = 0; i < s1.T; i++) {
                            for (int x = 0; x < s.d; x++)
                                diff += ten_get4(&o1.dq.t, 0, h, i, x) != ten_get4(&o[0].dq.t, 0, h, r0 + i, x);
                            for (int x = 0; x < s.d; x++)
                                diff += ten_get4(&o1.dk.t, 0, h, i, x) != ten_get4(&o[0].dk.t, 0, h, r0 + i, x);
                            for (int y = 0; y < s.e; y++)
                                diff += ten_get4(&o1.dv.t, 0, h, i, y) != ten_get4(&o[0].dv.t, 0, h, r0 + i, y);
                        }
                        if (s.init)
                            for (int x = 0; x < s.d; x++)
                                for (int y = 0; y < s.e; y++)
                                    diff += ten_get4(&o1.dsi.t, 0, h, x, y) != ten_get4(&o[0].dsi.t, b, h, x, y);
                    }
                    CHECK(diff == 0, "%s: sequence %d alone differs from inside the ragged batch in %lld elements", tag, b,
                          (long long)diff);
                    lb_out_free(&o1);
                }
                lb_free(&c1);
            }
        }
        for (int k = 0; k < made; k++)
            lb_out_free(&o[k]);
        lb_free(&c);
    }
    ak_ctx_destroy(ctx);
}

/* ================================================================================================
 * invalid: every invalid input, one at a time, with its status; the outputs stay untouched.
 * ============================================================================================== */

#define ARENA 8192

typedef struct inv {
    ak_ctx *ctx;
    ak_la_desc d;
    int32_t cu[4];
    float *mem[12]; /* q k v do ld s0 dso dq dk dv dsi spare */
    ak_la_tensors t;
    ak_la_grads g;
    float *outs[4];
} inv;

static const int64_t IB = 2, IH = 2, IT = 5, ID = 3, IE = 4;

static void inv_base(inv *p) {
    ak_la_desc_init(&p->d);
    p->d.batch = (int32_t)IB;
    p->d.num_heads = (int32_t)IH;
    p->d.seqlen = (int32_t)IT;
    p->d.head_dim = (int32_t)ID;
    p->d.head_dim_v = (int32_t)IE;
    p->d.has_decay = 1;
    p->d.has_initial_state = 1;
    p->d.block = 2;
    ak_la_tensors_init(&p->t);
    p->t.q = ak_tensor_4d(p->mem[0], AK_F32, IB, IH, IT, ID);
    p->t.k = ak_tensor_4d(p->mem[1], AK_F32, IB, IH, IT, ID);
    p->t.v = ak_tensor_4d(p->mem[2], AK_F32, IB, IH, IT, IE);
    p->t.log_decay = ak_tensor_1d(p->mem[4], AK_F32, IH);
    p->t.state_in = ak_tensor_4d(p->mem[5], AK_F32, IB, IH, ID, IE);
    ak_la_grads_init(&p->g);
    p->g.d_o = ak_tensor_4d(p->mem[3], AK_F32, IB, IH, IT, IE);
    p->g.has_d_state_out = 1;
    p->g.d_state_out = ak_tensor_4d(p->mem[6], AK_F32, IB, IH, ID, IE);
    p->g.dq = ak_tensor_4d(p->mem[7], AK_F32, IB, IH, IT, ID);
    p->g.dk = ak_tensor_4d(p->mem[8], AK_F32, IB, IH, IT, ID);
    p->g.dv = ak_tensor_4d(p->mem[9], AK_F32, IB, IH, IT, IE);
    p->g.d_state_in = ak_tensor_4d(p->mem[10], AK_F32, IB, IH, ID, IE);
}

static void inv_poison_outs(inv *p) {
    for (int w = 7; w <= 10; w++)
        for (int i = 0; i < ARENA; i++)
            p->mem[w][i] = tu_bits_f32(0x7fa5a5a5u);
}

static int inv_outs_untouched(const inv *p) {
    for (int w = 7; w <= 10; w++)
        for (int i = 0; i < ARENA; i++)
            if (tu_f32_bits(p->mem[w][i]) != 0x7fa5a5a5u) return 0;
    return 1;
}

/* Run both entry points on a modified copy; both must return `want` (ref_want for the reference). */
static void inv_expect(inv *p, const ak_la_desc *d, const ak_la_tensors *t, const ak_la_grads *g, ak_status want,
                       ak_status ref_want, const char *what, int line) {
    for (int ref = 0; ref < 2; ref++) {
        inv_poison_outs(p);
        ak_status st = ref ? ak_la_backward_ref(p->ctx, d, t, g) : ak_la_backward(p->ctx, d, t, g);
        ak_status w = ref ? ref_want : want;
        tc_checks++;
        if (st != w) {
            tc_failures++;
            fprintf(stderr, "FAIL %s:%d: invalid '%s' through %s returned %s, expected %s (%s)\n", __FILE__, line, what,
                    ref ? "ak_la_backward_ref" : "ak_la_backward", ak_status_string(st), ak_status_string(w),
                    ak_ctx_last_error(p->ctx));
        }
        if (st != AK_OK && p->ctx) {
            CHECK(inv_outs_untouched(p), "invalid '%s' (line %d): outputs written although refused", what, line);
            CHECK(strlen(ak_ctx_last_error(p->ctx)) > 0, "invalid '%s' (line %d): no last-error message", what, line);
        }
    }
}

/* EXPECT(status, statement modifying d / t / g): on fresh copies of the base. */
#define EXPECT2(want, ref_want, stmt)                                                                      \
    do {                                                                                                   \
        ak_la_desc d = P.d;                                                                                \
        ak_la_tensors t = P.t;                                                                             \
        ak_la_grads g = P.g;                                                                               \
        (void)d, (void)t, (void)g;                                                                         \
        stmt;                                                                                              \
        inv_expect(&P, &d, &t, &g, want, ref_want, #stmt, __LINE__);                                      \
    } while (0)
#define EXPECT(want, stmt) EXPECT2(want, want, stmt)

static void group_invalid(void) {
    inv P;
    memset(&P, 0, sizeof P);
    if (ak_ctx_create(&P.ctx) != AK_OK) {
        CHECK(0, "ak_ctx_create failed");
        return;
    }
    int ok = 1;
    for (int w = 0; w < 12; w++) {
        P.mem[w] = (float *)malloc(sizeof(float) * ARENA);
        ok &= P.mem[w] != NULL;
    }
    if (!ok) goto done;
    {
        rng r = rng_seed(4242);
        for (int w = 0; w < 12; w++)
            for (int i = 0; i < ARENA; i++)
                P.mem[w][i] = (float)rng_range(&r, -1, 1);
        for (int h = 0; h < 4; h++)
            P.mem[4][h] = -0.1f * (float)(h + 1);
    }
    inv_base(&P);
    EXPECT(AK_OK, (void)0);
    EXPECT(AK_OK, g.has_d_state_out = 0; g.d_state_out.ndim = 7);             /* ignored when not flagged */
    EXPECT(AK_OK, d.has_initial_state = 0; g.d_state_in.ndim = 0);            /* ignored without init */
    EXPECT(AK_OK, d.has_decay = 0; t.log_decay.data = NULL);
    EXPECT2(AK_ERR_UNSUPPORTED_DTYPE, AK_OK, g.dq.dtype = AK_F64);            /* f64 only for the reference */
    EXPECT2(AK_ERR_UNSUPPORTED_DTYPE, AK_OK, g.dk.dtype = AK_F64);
    EXPECT2(AK_ERR_UNSUPPORTED_DTYPE, AK_OK, g.dv.dtype = AK_F64);
    EXPECT(AK_OK, g.dq.dtype = AK_BF16; g.dk.dtype = AK_F16; g.d_o.dtype = AK_BF16);

    /* NULL pointers and sizes */
    {
        ak_la_desc d = P.d;
        CHECK_STATUS(ak_la_backward(NULL, &d, &P.t, &P.g), AK_ERR_NULL_POINTER);
        CHECK_STATUS(ak_la_backward_ref(NULL, &d, &P.t, &P.g), AK_ERR_NULL_POINTER);
        inv_expect(&P, NULL, &P.t, &P.g, AK_ERR_NULL_POINTER, AK_ERR_NULL_POINTER, "desc NULL", __LINE__);
        inv_expect(&P, &d, NULL, &P.g, AK_ERR_NULL_POINTER, AK_ERR_NULL_POINTER, "tensors NULL", __LINE__);
        inv_expect(&P, &d, &P.t, NULL, AK_ERR_NULL_POINTER, AK_ERR_NULL_POINTER, "grads NULL", __LINE__);
    }
    EXPECT(AK_ERR_INVALID_ARGUMENT, g.size = 0);
    EXPECT(AK_ERR_INVALID_ARGUMENT, g.size = sizeof(ak_la_grads) - 1);
    EXPECT(AK_ERR_INVALID_ARGUMENT, g.size = sizeof(ak_la_grads) + 8);
    EXPECT(AK_ERR_INVALID_ARGUMENT, t.size = 0);
    EXPECT(AK_ERR_INVALID_ARGUMENT, d.size = 0);

    /* d_o */
    for (int k = 0; k < 4; k++) {
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_o.shape[k] += 1);
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_o.shape[k] -= 1);
    }
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_o.ndim = 3);
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_o.shape[3] = IE + 1; g.d_o.stride[2] = IE + 1); /* e + 1 columns */
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_o.dtype = AK_F64);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_o.dtype = AK_I8);
    EXPECT(AK_ERR_NULL_POINTER, g.d_o.data = NULL);
    EXPECT(AK_ERR_BAD_STRIDE, g.d_o.stride[1] = -1);
    EXPECT(AK_ERR_INVALID_ARGUMENT, g.d_o.data = (char *)g.d_o.data + 1); /* not element-aligned */
    EXPECT(AK_OK, g.d_o.stride[0] = 0);                                  /* broadcast input: fine */

    /* d_state_out (only when flagged) */
    for (int k = 0; k < 4; k++)
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_state_out.shape[k] += 1);
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_state_out.ndim = 0);
    EXPECT(AK_ERR_NULL_POINTER, g.d_state_out.data = NULL);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_state_out.dtype = AK_F64);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_state_out.dtype = AK_I8);
    EXPECT(AK_ERR_BAD_STRIDE, g.d_state_out.stride[3] = -1);

    /* dq, dk, dv */
    for (int k = 0; k < 4; k++) {
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.dq.shape[k] += 1);
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.dk.shape[k] -= 1);
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.dv.shape[k] += 1);
    }
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.dq.shape[3] = IE; g.dq.stride[2] = IE);  /* dq with dv's width */
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.dv.shape[3] = ID; g.dv.stride[2] = ID);  /* dv with dq's width */
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.dk.ndim = 3);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.dq.dtype = AK_I8);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.dk.dtype = AK_I8);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.dv.dtype = AK_I8);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.dv.dtype = (ak_dtype)77);
    EXPECT(AK_ERR_NULL_POINTER, g.dq.data = NULL);
    EXPECT(AK_ERR_NULL_POINTER, g.dk.data = NULL);
    EXPECT(AK_ERR_NULL_POINTER, g.dv.data = NULL);
    EXPECT(AK_ERR_BAD_STRIDE, g.dq.stride[2] = 0);                        /* rows aliasing */
    EXPECT(AK_ERR_BAD_STRIDE, g.dk.stride[0] = -1);
    EXPECT(AK_ERR_OUTPUT_OVERLAP, g.dv.stride[2] = IE - 1);                /* rows overlap each other */
    EXPECT(AK_ERR_OUTPUT_OVERLAP, g.dq.stride[1] = 1);

    /* d_state_in: required with has_initial_state */
    EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_state_in.ndim = 0);
    EXPECT(AK_ERR_SHAPE_MISMATCH, memset(&g.d_state_in, 0, sizeof g.d_state_in));
    EXPECT(AK_ERR_NULL_POINTER, g.d_state_in.data = NULL);
    for (int k = 0; k < 4; k++)
        EXPECT(AK_ERR_SHAPE_MISMATCH, g.d_state_in.shape[k] -= 1);
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_state_in.dtype = AK_F64); /* f32 even for the reference */
    EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_state_in.dtype = AK_I8);
    EXPECT(AK_ERR_BAD_STRIDE, g.d_state_in.stride[3] = 0);
    EXPECT(AK_ERR_OUTPUT_OVERLAP, g.d_state_in.stride[2] = 1);
    /* the forward inputs of the backward */
    EXPECT(AK_ERR_SHAPE_MISMATCH, memset(&t.state_in, 0, sizeof t.state_in));
    EXPECT(AK_ERR_SHAPE_MISMATCH, t.q.shape[2] += 1);
    EXPECT(AK_ERR_SHAPE_MISMATCH, t.v.shape[3] += 1);
    EXPECT(AK_ERR_PLAN_MISMATCH, t.k.dtype = AK_BF16);
    EXPECT(AK_ERR_INVALID_ARGUMENT, t.log_decay.data = P.mem[11]; P.mem[11][1] = 0.5f);     /* a positive log decay */
    EXPECT(AK_ERR_SHAPE_MISMATCH, t.log_decay.shape[0] = IH + 1);

    /* the f32-only tensors (states, log_decay) given another valid dtype: invalid in that role */
    {
        static const ak_dtype other[3] = {AK_BF16, AK_F16, AK_F64};
        for (int k = 0; k < 3; k++) {
            EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_state_out.dtype = other[k]);
            EXPECT(AK_ERR_UNSUPPORTED_DTYPE, g.d_state_in.dtype = other[k]);
            EXPECT(AK_ERR_UNSUPPORTED_DTYPE, t.state_in.dtype = other[k]);
            EXPECT(AK_ERR_UNSUPPORTED_DTYPE, t.log_decay.dtype = other[k]);
        }
    }

    /* gradient outputs overlapping inputs or each other */
    {
        const char *onames[4] = {"dq", "dk", "dv", "d_state_in"};
        for (int o = 0; o < 4; o++) {
            /* an input's memory: q k v d_o log_decay state_in d_state_out */
            for (int in = 0; in < 7; in++) {
                ak_la_tensors t = P.t;
                ak_la_grads g = P.g;
                ak_tensor *out = o == 0 ? &g.dq : o == 1 ? &g.dk : o == 2 ? &g.dv : &g.d_state_in;
                const ak_tensor *src = in == 0 ? &t.q : in == 1 ? &t.k : in == 2 ? &t.v : in == 3 ? &g.d_o
                                     : in == 4 ? &t.log_decay : in == 5 ? &t.state_in : &g.d_state_out;
                float *base = (float *)src->data;
                out->data = base + (in == 4 ? 1 : 3); /* inside the input's span */
                char what[96];
                snprintf(what, sizeof what, "%s overlapping input %d", onames[o], in);
                /* the input arenas are not poisoned by inv_expect; outputs elsewhere must stay untouched */
                inv_expect(&P, &P.d, &t, &g, AK_ERR_OUTPUT_OVERLAP, AK_ERR_OUTPUT_OVERLAP, what, __LINE__);
            }
            for (int o2 = 0; o2 < 4; o2++) {
                if (o2 == o) continue;
                ak_la_grads g = P.g;
                ak_tensor *out = o == 0 ? &g.dq : o == 1 ? &g.dk : o == 2 ? &g.dv : &g.d_state_in;
                const ak_tensor *other = o2 == 0 ? &g.dq : o2 == 1 ? &g.dk : o2 == 2 ? &g.dv : &g.d_state_in;
                out->data = (float *)other->data + 5;
                char what[96];
                snprintf(what, sizeof what, "%s overlapping %s", onames[o], onames[o2]);
                inv_expect(&P, &P.d, &P.t, &g, AK_ERR_OUTPUT_OVERLAP, AK_ERR_OUTPUT_OVERLAP, what, __LINE__);
            }
        }
        /* adjacent but disjoint: fine */
        EXPECT(AK_OK, g.dk.data = (float *)g.dq.data + IB * IH * IT * ID);
        /* d_state_out is an input: d_state_in may not share it (no in-place state gradient) */
        EXPECT(AK_ERR_OUTPUT_OVERLAP, g.d_state_in.data = g.d_state_out.data);
        /* unflagged tensors do not count */
        EXPECT(AK_OK, g.has_d_state_out = 0; g.d_state_out.data = g.dq.data);
        EXPECT(AK_OK, d.has_initial_state = 0; g.d_state_in.data = g.dq.data);
    }

    /* empty outputs (T = 0) in the library's own BSHD view: ak_tensor_bshd gives stride[0] = L H D = 0;
     * an output without elements cannot alias, so it must be accepted like ak_tensor_4d's view */
    EXPECT(AK_OK, d.seqlen = 0; t.q.shape[2] = t.k.shape[2] = t.v.shape[2] = g.d_o.shape[2] = 0;
           g.dq = ak_tensor_4d(g.dq.data, AK_F32, IB, IH, 0, ID); g.dk = ak_tensor_4d(g.dk.data, AK_F32, IB, IH, 0, ID);
           g.dv = ak_tensor_4d(g.dv.data, AK_F32, IB, IH, 0, IE));
    EXPECT(AK_OK, d.seqlen = 0; t.q.shape[2] = t.k.shape[2] = t.v.shape[2] = g.d_o.shape[2] = 0;
           g.dq = ak_tensor_bshd(g.dq.data, AK_F32, IB, 0, IH, ID); g.dk = ak_tensor_bshd(g.dk.data, AK_F32, IB, 0, IH, ID);
           g.dv = ak_tensor_bshd(g.dv.data, AK_F32, IB, 0, IH, IE));

    /* ragged */
    {
        P.cu[0] = 0, P.cu[1] = 3, P.cu[2] = 3, P.cu[3] = 6;
        ak_la_desc dr = P.d;
        dr.batch = 3;
        dr.cu_seqlens = P.cu;
        const int64_t L = 8;
        ak_la_tensors tr = P.t;
        tr.q = ak_tensor_4d(P.mem[0], AK_F32, 1, IH, L, ID);
        tr.k = ak_tensor_4d(P.mem[1], AK_F32, 1, IH, L, ID);
        tr.v = ak_tensor_4d(P.mem[2], AK_F32, 1, IH, L, IE);
        tr.state_in = ak_tensor_4d(P.mem[5], AK_F32, 3, IH, ID, IE);
        ak_la_grads gr = P.g;
        gr.d_o = ak_tensor_4d(P.mem[3], AK_F32, 1, IH, L, IE);
        gr.d_state_out = ak_tensor_4d(P.mem[6], AK_F32, 3, IH, ID, IE);
        gr.dq = ak_tensor_4d(P.mem[7], AK_F32, 1, IH, L, ID);
        gr.dk = ak_tensor_4d(P.mem[8], AK_F32, 1, IH, L, ID);
        gr.dv = ak_tensor_4d(P.mem[9], AK_F32, 1, IH, L, IE);
        gr.d_state_in = ak_tensor_4d(P.mem[10], AK_F32, 3, IH, ID, IE);
#define EXPECTR(want, stmt)                                                                                \
    do {                                                                                                   \
        ak_la_desc d = dr;                                                                                 \
        ak_la_tensors t = tr;                                                                              \
        ak_la_grads g = gr;                                                                                \
        int32_t cu_[4];                                                                                    \
        memcpy(cu_, P.cu, sizeof cu_);                                                                     \
        d.cu_seqlens = cu_;                                                                                \
        (void)t, (void)g;                                                                                  \
        stmt;                                                                                              \
        inv_expect(&P, &d, &t, &g, want, want, "ragged: " #stmt, __LINE__);                               \
    } while (0)
        EXPECTR(AK_OK, (void)0);
        EXPECTR(AK_ERR_SHAPE_MISMATCH, g.d_o.shape[2] = L - 1);
        EXPECTR(AK_ERR_SHAPE_MISMATCH, g.dq.shape[2] = L + 1);
        EXPECTR(AK_ERR_SHAPE_MISMATCH, g.dv.shape[0] = 3);
        EXPECTR(AK_ERR_SHAPE_MISMATCH, g.d_state_in.shape[0] = 1);  /* one state per sequence */
        EXPECTR(AK_ERR_SHAPE_MISMATCH, g.d_state_out.shape[0] = 1);
        EXPECTR(AK_ERR_BAD_METADATA, cu_[3] = (int32_t)L + 1);
        EXPECTR(AK_ERR_BAD_METADATA, cu_[2] = 2);
        EXPECTR(AK_ERR_BAD_METADATA, cu_[0] = 1);
#undef EXPECTR
    }
done:
    for (int w = 0; w < 12; w++)
        free(P.mem[w]);
    ak_ctx_destroy(P.ctx);
}

/* ================================================================================================
 * long: T = 20000, d = e = 8, head 0 lambda = 1, head 1 lambda = 0.5.
 * ============================================================================================== */

static void group_long(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) {
        CHECK(0, "ak_ctx_create failed");
        return;
    }
    rng r = rng_seed(20000);
    lb_spec s;
    spec_default(&s);
    s.B = 1;
    s.H = 2;
    s.T = 20000;
    s.d = s.e = 8;
    s.has_decay = 1;
    s.lam[0] = 1.0, s.lam[1] = 0.5;
    s.init = s.dso = 1;
    s.scale = 1.0f;
    lb_case c;
    if (lb_create(&c, &s, &r)) {
        CHECK(0, "long: allocation failed");
        ak_ctx_destroy(ctx);
        return;
    }
    static const ak_dtype f32s[3] = {AK_F32, AK_F32, AK_F32};
    static const tlayout c4[4] = {LAY_CONTIG, LAY_CONTIG, LAY_CONTIG, LAY_CONTIG};
    lb_out o64, o7;
    if (lb_out_make(&o64, &c, f32s, c4, NULL) || lb_out_make(&o7, &c, f32s, c4, NULL)) {
        CHECK(0, "long: allocation failed");
        lb_free(&c);
        ak_ctx_destroy(ctx);
        return;
    }
    ak_la_tensors t = lb_tensors(&c);
    ak_la_desc d = lb_desc(&c);
    d.block = 64;
    ak_la_grads g = lb_grads(&c, &o64);
    CHECK_STATUS(ak_la_backward(ctx, &d, &t, &g), AK_OK);
    d.block = 7;
    g = lb_grads(&c, &o7);
    CHECK_STATUS(ak_la_backward(ctx, &d, &t, &g), AK_OK);
    const char *tag = "long T=20000 d=e=8";
    for (int w = 0; w < 4; w++) {
        check_grad(&c, w, w == 0 ? &o64.dq : w == 1 ? &o64.dk : w == 2 ? &o64.dv : &o64.dsi, NULL, NULL, NULL, tag);
        check_grad(&c, w, w == 0 ? &o7.dq : w == 1 ? &o7.dk : w == 2 ? &o7.dv : &o7.dsi, NULL, NULL, NULL, tag);
    }
    /* block 64 vs block 7, per tensor and head, relative to the tensor's largest element */
    const int n = s.T, D = s.d, E = s.e;
    for (int w = 0; w < 4; w++) {
        const tbuf *a = w == 0 ? &o64.dq : w == 1 ? &o64.dk : w == 2 ? &o64.dv : &o64.dsi;
        const tbuf *b = w == 0 ? &o7.dq : w == 1 ? &o7.dk : w == 2 ? &o7.dv : &o7.dsi;
        for (int h = 0; h < s.H; h++) {
            double mx = 0.0, df = 0.0;
            int rows = w < 3 ? n : D, cols = w == 2 || w == 3 ? E : D;
            for (int i = 0; i < rows; i++)
                for (int x = 0; x < cols; x++) {
                    double va = ten_get4(&a->t, 0, h, i, x), vb = ten_get4(&b->t, 0, h, i, x);
                    if (fabs(va) > mx) mx = fabs(va);
                    if (!(fabs(va - vb) <= df)) df = fabs(va - vb);
                }
            if (g_verbose) printf("long: %s head %d: max %.3g, |block64 - block7| %.3g (%.2e rel)\n",
                                  w == 0 ? "dq" : w == 1 ? "dk" : w == 2 ? "dv" : "dsi", h, mx, df, df / mx);
            CHECK(df <= 1e-4 * mx, "%s: %s head %d: block 64 vs block 7 differ by %.3g (max %.3g)", tag,
                  w == 0 ? "dq" : w == 1 ? "dk" : w == 2 ? "dv" : "d_state_in", h, df, mx);
        }
    }
    /* a few rows against the test's own O(T) double formulas; the whole d_state_in too */
    {
        double *q = malloc(sizeof(double) * (size_t)n * D), *k = malloc(sizeof(double) * (size_t)n * D);
        double *v = malloc(sizeof(double) * (size_t)n * E), *gg = malloc(sizeof(double) * (size_t)n * E);
        static const int rows[6] = {0, 1, 63, 10007, 19998, 19999};
        for (int h = 0; h < s.H && q && k && v && gg; h++) {
            const double ld = case_ld(&c, h);
            for (int i = 0; i < n; i++) {
                for (int x = 0; x < D; x++) {
                    q[(size_t)i * D + x] = s.scale * ten_get4(&c.q.t, 0, h, i, x);
                    k[(size_t)i * D + x] = ten_get4(&c.k.t, 0, h, i, x);
                }
                for (int y = 0; y < E; y++) {
                    v[(size_t)i * E + y] = ten_get4(&c.v.t, 0, h, i, y);
                    gg[(size_t)i * E + y] = ten_get4(&c.g.t, 0, h, i, y);
                }
            }
            double mx[4] = {0, 0, 0, 0}, df[4] = {0, 0, 0, 0};
            for (int ri = 0; ri < 6; ri++) {
                const int t0 = rows[ri];
                double dq[8] = {0}, dk[8] = {0}, dv[8] = {0};
                for (int ss = 0; ss <= t0; ss++) { /* dq_t */
                    double gv = 0.0;
                    for (int y = 0; y < E; y++)
                        gv += gg[(size_t)t0 * E + y] * v[(size_t)ss * E + y];
                    double w = exp(ld * (t0 - ss)) * gv;
                    for (int x = 0; x < D; x++)
                        dq[x] += w * k[(size_t)ss * D + x];
                }
                for (int x = 0; x < D; x++) {
                    double a = 0.0;
                    for (int y = 0; y < E; y++)
                        a += ten_get4(&c.s0.t, 0, h, x, y) * gg[(size_t)t0 * E + y];
                    dq[x] = s.scale * (dq[x] + exp(ld * (t0 + 1)) * a);
                }
                for (int tt = t0; tt < n; tt++) { /* dk_s, dv_s with s = t0 */
                    double gv = 0.0, qk = 0.0;
                    for (int y = 0; y < E; y++)
                        gv += gg[(size_t)tt * E + y] * v[(size_t)t0 * E + y];
                    for (int x = 0; x < D; x++)
                        qk += q[(size_t)tt * D + x] * k[(size_t)t0 * D + x];
                    double p = exp(ld * (tt - t0));
                    for (int x = 0; x < D; x++)
                        dk[x] += p * gv * q[(size_t)tt * D + x];
                    for (int y = 0; y < E; y++)
                        dv[y] += p * qk * gg[(size_t)tt * E + y];
                }
                const double pf = exp(ld * (n - 1 - t0));
                for (int x = 0; x < D; x++)
                    for (int y = 0; y < E; y++) {
                        double gs = ten_get4(&c.gs.t, 0, h, x, y);
                        dk[x] += pf * gs * v[(size_t)t0 * E + y];
                        dv[y] += pf * gs * k[(size_t)t0 * D + x];
                    }
                for (int x = 0; x < D; x++) {
                    double a = ten_get4(&o64.dq.t, 0, h, t0, x), b = ten_get4(&o64.dk.t, 0, h, t0, x);
                    if (fabs(dq[x]) > mx[0]) mx[0] = fabs(dq[x]);
                    if (fabs(dk[x]) > mx[1]) mx[1] = fabs(dk[x]);
                    if (!(fabs(a - dq[x]) <= df[0])) df[0] = fabs(a - dq[x]);
                    if (!(fabs(b - dk[x]) <= df[1])) df[1] = fabs(b - dk[x]);
                }
                for (int y = 0; y < E; y++) {
                    double a = ten_get4(&o64.dv.t, 0, h, t0, y);
                    if (fabs(dv[y]) > mx[2]) mx[2] = fabs(dv[y]);
                    if (!(fabs(a - dv[y]) <= df[2])) df[2] = fabs(a - dv[y]);
                }
            }
            for (int x = 0; x < D; x++) /* d_state_in = sum_t lambda^(t+1) q'_t g_t^T + lambda^n dS_f */
                for (int y = 0; y < E; y++) {
                    double a = exp(ld * n) * ten_get4(&c.gs.t, 0, h, x, y);
                    for (int tt = 0; tt < n; tt++)
                        a += exp(ld * (tt + 1)) * q[(size_t)tt * D + x] * gg[(size_t)tt * E + y];
                    double b = ten_get4(&o64.dsi.t, 0, h, x, y);
                    if (fabs(a) > mx[3]) mx[3] = fabs(a);
                    if (!(fabs(a - b) <= df[3])) df[3] = fabs(a - b);
                }
            for (int w = 0; w < 4; w++) {
                const double m1 = mx[w] > 1.0 ? mx[w] : 1.0;
                if (g_verbose) printf("long: head %d %s rows vs double: err %.3g (max %.3g, %.2e rel)\n", h,
                                      w == 0 ? "dq" : w == 1 ? "dk" : w == 2 ? "dv" : "dsi", df[w], mx[w], df[w] / m1);
                CHECK(df[w] <= 1e-4 * m1, "%s: head %d %s vs the double formula: err %.3g (max %.3g)", tag, h,
                      w == 0 ? "dq" : w == 1 ? "dk" : w == 2 ? "dv" : "d_state_in", df[w], mx[w]);
            }
        }
        free(q), free(k), free(v), free(gg);
    }
    lb_out_free(&o64), lb_out_free(&o7);
    lb_free(&c);
    ak_ctx_destroy(ctx);
}

/* ================================================================================================
 * accuracy: many blocks at d = 64 with a moderate decay (lambda 0.94 and 0.9), uniform(-1, 1) data. The
 * chunked form's inter-block term is a right product through the state; its rounding must stay within
 * 2x the error of the naive fp32 left product (sequential sums, powf decay), for O, dq, dk and dv.
 * (Multiplying the operand Q by lambda^i and accumulating onto the intra term gave 2.7x here; the power
 * now multiplies the finished product.)
 * ============================================================================================== */

static double acc_uniform(uint64_t *st) {
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*st >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

/* naive fp32: out_i = sum_{j <= i} lam^(i-j) (a_i . b_j) c_j, or with j >= i (rev) */
static void acc_naive(int T, int d, const float *a, const float *b, const float *c, float lam, int rev, float *out) {
    for (int i = 0; i < T; i++) {
        float acc[64] = {0};
        for (int j = rev ? i : 0; rev ? j < T : j <= i; j++) {
            float s = 0.0f;
            for (int y = 0; y < d; y++) s += a[i * d + y] * b[j * d + y];
            const float w = powf(lam, (float)(rev ? j - i : i - j)) * s;
            for (int x = 0; x < d; x++) acc[x] += w * c[j * d + x];
        }
        memcpy(out + (size_t)i * d, acc, sizeof(float) * (size_t)d);
    }
}


/* max |x - ref|, INFINITY as soon as an x is NaN (an unwritten, poisoned element) or Inf */
static double acc_err(const float *x, const double *ref, size_t n) {
    double e = 0.0;
    for (size_t z = 0; z < n; z++) {
        if (!isfinite(x[z])) return INFINITY;
        e = fmax(e, fabs((double)x[z] - ref[z]));
    }
    return e;
}

static void group_accuracy(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) {
        CHECK(0, "ak_ctx_create failed");
        return;
    }
    const int T = 300, d = 64;
    const size_t n = (size_t)T * d;
    float *buf = (float *)malloc(sizeof(float) * n * 9);
    double *ref = (double *)malloc(sizeof(double) * n * 4);
    if (!buf || !ref) {
        CHECK(0, "accuracy: allocation failed");
        free(buf), free(ref), ak_ctx_destroy(ctx);
        return;
    }
    float *q = buf, *k = q + n, *v = k + n, *g = v + n, *o = g + n, *dq = o + n, *dk = dq + n, *dv = dk + n, *nv = dv + n;
    static const double lams[2] = {0.9394, 0.9};
    for (int li = 0; li < 2; li++) {
        uint64_t st = 42 + (uint64_t)li;
        for (size_t z = 0; z < n; z++) {
            q[z] = (float)acc_uniform(&st), k[z] = (float)acc_uniform(&st);
            v[z] = (float)acc_uniform(&st), g[z] = (float)acc_uniform(&st);
        }
        float ld = (float)log(lams[li]);
        const float lf = expf(ld);
        ak_la_desc D;
        ak_la_desc_init(&D);
        D.seqlen = T, D.head_dim = d, D.has_decay = 1, D.block = 64;
        ak_la_tensors t;
        ak_la_tensors_init(&t);
        t.q = ak_tensor_4d(q, AK_F32, 1, 1, T, d), t.k = ak_tensor_4d(k, AK_F32, 1, 1, T, d);
        t.v = ak_tensor_4d(v, AK_F32, 1, 1, T, d), t.log_decay = ak_tensor_1d(&ld, AK_F32, 1);
        ak_la_grads G;
        ak_la_grads_init(&G);
        G.d_o = ak_tensor_4d(g, AK_F32, 1, 1, T, d);
        for (int nt = 1; nt <= 2; nt++) {
            CHECK_STATUS(ak_ctx_set_num_threads(ctx, nt), AK_OK);
            for (size_t z = 0; z < n * 4; z++) o[z] = NAN; /* o, dq, dk, dv */
            ak_la_tensors to = t;
            to.o = ak_tensor_4d(o, AK_F32, 1, 1, T, d);
            ak_la_grads Go = G;
            Go.dq = ak_tensor_4d(dq, AK_F32, 1, 1, T, d), Go.dk = ak_tensor_4d(dk, AK_F32, 1, 1, T, d);
            Go.dv = ak_tensor_4d(dv, AK_F32, 1, 1, T, d);
            CHECK_STATUS(ak_la_forward(ctx, &D, &to), AK_OK);
            CHECK_STATUS(ak_la_backward(ctx, &D, &t, &Go), AK_OK);
            if (nt == 1) {
                ak_la_tensors tr = t;
                tr.o = ak_tensor_4d(ref, AK_F64, 1, 1, T, d);
                ak_la_grads Gr = G;
                Gr.dq = ak_tensor_4d(ref + n, AK_F64, 1, 1, T, d), Gr.dk = ak_tensor_4d(ref + 2 * n, AK_F64, 1, 1, T, d);
                Gr.dv = ak_tensor_4d(ref + 3 * n, AK_F64, 1, 1, T, d);
                CHECK_STATUS(ak_la_forward_ref(ctx, &D, &tr), AK_OK);
                CHECK_STATUS(ak_la_backward_ref(ctx, &D, &t, &Gr), AK_OK);
            }
            /* naive fp32: o = fwd(q, k, v); dq = fwd(g, v, k); dk = rev(v, g, q); dv = rev(k, q, g) */
            static const char *names[4] = {"o", "dq", "dk", "dv"};
            const float *got[4] = {o, dq, dk, dv};
            const float *A[4] = {q, g, v, k}, *Bm[4] = {k, v, g, q}, *Cm[4] = {v, k, q, g};
            for (int w = 0; w < 4; w++) {
                acc_naive(T, d, A[w], Bm[w], Cm[w], lf, w >= 2, nv);
                const double e = acc_err(got[w], ref + (size_t)w * n, n), en = acc_err(nv, ref + (size_t)w * n, n);
                CHECK(e <= 2.0 * en, "accuracy lambda %g, %d thread(s): %s err %.3g > 2 x naive32 %.3g", lams[li], nt,
                      names[w], e, en);
                if (g_verbose) printf("  accuracy lambda %g nt %d %s: err %.3g naive32 %.3g\n", lams[li], nt, names[w], e, en);
            }
        }
    }
    /* the recurrent form with a strong decay (lambda = 9e-4): S + (lambda - 1) S cancels; it must be lambda S
     * (row 1: o = lambda + 1e-4 = 0.0009999999..., reference in double) */
    {
        float rq[2] = {1.0f, 1.0f}, rk[2] = {1.0f, 0.01f}, rv[2] = {1.0f, 0.01f}, ro[2] = {NAN, NAN}, ldr = (float)log(9e-4);
        double rr[2];
        ak_la_desc D;
        ak_la_desc_init(&D);
        D.seqlen = 2, D.head_dim = 1, D.has_decay = 1;
        ak_la_tensors t;
        ak_la_tensors_init(&t);
        t.q = ak_tensor_4d(rq, AK_F32, 1, 1, 2, 1), t.k = ak_tensor_4d(rk, AK_F32, 1, 1, 2, 1);
        t.v = ak_tensor_4d(rv, AK_F32, 1, 1, 2, 1), t.log_decay = ak_tensor_1d(&ldr, AK_F32, 1);
        t.o = ak_tensor_4d(ro, AK_F32, 1, 1, 2, 1);
        CHECK_STATUS(ak_la_recurrent(ctx, &D, &t), AK_OK);
        ak_la_tensors tr = t;
        tr.o = ak_tensor_4d(rr, AK_F64, 1, 1, 2, 1);
        CHECK_STATUS(ak_la_forward_ref(ctx, &D, &tr), AK_OK);
        for (int i = 0; i < 2; i++)
            CHECK(fabs(ro[i] - rr[i]) <= 4.0 * 5.96e-8 * fabs(rr[i]), "recurrent, lambda 9e-4, row %d: %.9g vs %.9g (> 4 ulp)",
                  i, (double)ro[i], rr[i]);
    }
    free(buf), free(ref);
    ak_ctx_destroy(ctx);
}

int main(int argc, char **argv) {
    g_verbose = (int)tu_env_long("AK_LB_VERBOSE", 0);
    g_quick = (int)tu_env_long("AK_LB_QUICK", 0) != 0;
    const char *group = argc > 1 ? argv[1] : "all";
    double t0 = tu_now();
    int any = 0;
#define GROUP(name, fn)                                                                  \
    if (strcmp(group, "all") == 0 || strcmp(group, name) == 0) {                         \
        double tg_ = tu_now();                                                           \
        fn();                                                                            \
        any = 1;                                                                         \
        if (g_verbose) printf("group %s: %.2f s\n", name, tu_now() - tg_);               \
    }
    GROUP("fd", group_fd)
    GROUP("chunked", group_chunked)
    GROUP("threads", group_threads)
    GROUP("invalid", group_invalid)
    GROUP("long", group_long)
    GROUP("accuracy", group_accuracy)
#undef GROUP
    if (!any) {
        fprintf(stderr, "test_linear_bwd: unknown group '%s' (fd, chunked, threads, invalid, long, accuracy)\n", group);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "test_linear_bwd %s (%.1f s)", group, tu_now() - t0);
    return tc_finish(name);
}
