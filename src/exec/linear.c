/*
 * Linear attention, fp32 state: the chunked form (Lightning Attention-2) on the dense kernel's
 * micro-kernels, its backward as passes of the same code (a forward sweep and one dual reverse sweep), and
 * the recurrent form.
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
    float *S, *q, *k, *v, *o;
} la_scratch;

/* One (sequence b, head h) in the recurrent form: S = lambda S + k v^T; o = S^T (c q). */
static void recurrent_head(const ak_laproblem *p, const ak_la_tensors *t, int64_t b, int64_t h, la_scratch *s) {
    const int d = p->d, e = p->e;
    const int64_t n = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
    /* lambda - 1 = expm1(log_decay): lambda near 1 (log_decay ~ -4e-8 in real models) rounds to 1 or to a
     * decay ~50% too strong in float; S + (lambda - 1) S keeps the small decrement exact per token. For a
     * strong decay (lambda <= 1/2) S + (lambda - 1) S cancels: lambda S instead. */
    const double ldh = p->desc.has_decay ? (double)((const float *)t->log_decay.data)[h * t->log_decay.stride[0]] : 0.0;
    const int strong = ldh <= -0.6931471805599453;
    const float lm1 = (float)expm1(ldh), lam = (float)exp(ldh);
    if (p->desc.has_initial_state) state_io(&t->state_in, b, h, d, e, s->S, 0);
    else memset(s->S, 0, sizeof(float) * (size_t)d * e);
    for (int64_t i = 0; i < n; i++) {
        load_row(&t->q, bi, h, r0 + i, d, p->desc.scale, s->q);
        load_row(&t->k, bi, h, r0 + i, d, 1.0f, s->k);
        load_row(&t->v, bi, h, r0 + i, e, 1.0f, s->v);
        for (int x = 0; x < d; x++) {
            float *Srow = s->S + (size_t)x * e;
            if (strong)
                for (int y = 0; y < e; y++) Srow[y] = lam * Srow[y] + s->k[x] * s->v[y];
            else
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

/* ---------------------------------------------------------------------------------------------------
 * The chunked form as a "pass": one causal linear-attention sweep with named roles, so that the backward
 * runs on the same code (see ak__la_bwd). For each (sequence, head), rows read in order
 * (or in reverse order), block by block (L rows starting at b0, state S = after row b0 - 1):
 *   intra  O_b  = [(Q_b K_b^T) . M] V_b          M[i][j] = lambda^(i-j) for j <= i, else 0
 *   inter  O_b += diag(lambda^(i+e0)) Q_b S_{b-1}     (skipped while S is known to be zero)
 *   state  S_b  = lambda^(L-1+e0) S_{b-1} + sum_j lambda^(L-1-j) k_j v_j^T
 * e0 = 1, except for the first block of a pass whose seed state sits *at* row 0 (shift: the backward's
 * d_state_out seed, never divided by lambda). Every product runs on the dense kernel's f32 micro-kernels:
 *   qk:  st[j][i] = k_j . q_i                           (Q^T by tpose, the block's rows on the lanes)
 *   pvb: ob[i][.] = sum_j st[j][i] v_j                  (O row-major: the value columns on the lanes)
 *   pvb: ib[i][.] = sum_x qt[x][i] S[x][.],  then ob[i][.] += lambda^(i+e0) ib[i][.]
 *   pvb: S[x][.] = beta S[x][.] + sum_j k'_j[x] v_j      (beta = lambda^(L-1+e0), or 0 before any state)
 * The arithmetic of every output and state element does not depend on which thread computes it, nor on
 * whether the blocks of one head run one after another (many heads: one head per thread) or phase by
 * phase with all threads on one head (few heads: the 3-phase block-parallel form of spec section 1.4,
 * the state update split by state rows): results are bitwise identical for every thread count.
 * ------------------------------------------------------------------------------------------------- */

typedef struct la_pass {
    const ak_laproblem *p;
    const ak_tensor *q, *k, *v, *o; /* role views [B][H][T][.]; o written */
    float qmul, kmul, vmul, omul;    /* multipliers at load (q, k, v) and at store (o) */
    int dk, dv;                      /* widths of q and k, of v and o */
    int reverse;                     /* rows in reverse order within each sequence */
    ak_tensor s_in;                  /* seed state [B][H][dk][dv] f32 (data NULL: none) */
    int shift;                       /* the seed sits at row 0 (e0 = 0 for the first block) */
    ak_tensor s_out;                 /* final state [B][H][dk][dv] f32 (data NULL: none) */
    int s_out_lambda;                /* multiply the final state by lambda */
    const ak_tensor *log_decay;      /* NULL: lambda = 1 */
} la_pass;

/* leading dimensions (floats), padded by 16 against 4 KiB set aliasing */
typedef struct la_dims {
    int64_t ldb, ldk, ldv;
    int bpad, dvpad;
} la_dims;

static la_dims la_dims_of(const la_pass *ps) {
    la_dims x;
    x.bpad = (ps->p->blk + 15) / 16 * 16;
    x.dvpad = (ps->dv + 15) / 16 * 16;
    x.ldb = x.bpad + 16;
    x.ldk = ((int64_t)ps->dk + 15) / 16 * 16 + 16;
    x.ldv = x.dvpad + 16;
    return x;
}

/* per-thread scratch: qrow [blk][ldk], qt [dk][ldb], st [blk][ldb], pw [bpad + 32], tmp [ldv], row
 * pointers, ib [blk][ldv], and (one head per thread) kb [blk][ldk], vb, ob [blk][ldv], S [dk][ldv] */
typedef struct la_blk {
    float *qrow, *qt, *st, *pw, *tmp, *kb, *vb, *ob, *S, *ib;
    const void **rows;
} la_blk;

static size_t la_blk_floats(const la_pass *ps) {
    la_dims x = la_dims_of(ps);
    size_t B = (size_t)ps->p->blk, dk = (size_t)ps->dk;
    size_t n = B * (size_t)x.ldk + dk * (size_t)x.ldb + B * (size_t)x.ldb + (size_t)x.bpad + 32 + (size_t)x.ldv;
    n += B * (size_t)x.ldk + 3 * B * (size_t)x.ldv + dk * (size_t)x.ldv;
    n += (B * sizeof(void *) + sizeof(float) - 1) / sizeof(float) + 16; /* row pointers */
    return (n + 15) / 16 * 16;
}

static la_blk la_blk_carve(const la_pass *ps, float *base) {
    la_dims x = la_dims_of(ps);
    size_t B = (size_t)ps->p->blk, dk = (size_t)ps->dk;
    la_blk s;
    s.qrow = base;
    s.qt = s.qrow + B * (size_t)x.ldk;
    s.st = s.qt + dk * (size_t)x.ldb;
    s.pw = s.st + B * (size_t)x.ldb;
    s.tmp = s.pw + x.bpad + 32;
    s.kb = s.tmp + x.ldv;
    s.vb = s.kb + B * (size_t)x.ldk;
    s.ob = s.vb + B * (size_t)x.ldv;
    s.S = s.ob + B * (size_t)x.ldv;
    s.ib = s.S + dk * (size_t)x.ldv;
    s.rows = (const void **)(void *)(s.ib + B * (size_t)x.ldv);
    return s;
}

static double la_log_lambda(const la_pass *ps, int64_t h) {
    return ps->log_decay ? (double)((const float *)ps->log_decay->data)[h * ps->log_decay->stride[0]] : 0.0;
}

/* pw[m] = lambda^m for m = 0..blk (never a negative power) */
static void la_powers(const la_pass *ps, int64_t h, float *pw) {
    const double ld = la_log_lambda(ps, h);
    for (int m = 0; m <= ps->p->blk; m++) pw[m] = (float)exp(ld * m);
}

/* Rows i0 .. i0+L-1 (in pass order) of a role view, f32, times mul, into dst [L][ld] (columns past
 * n up to roundup16(n) zero). */
static void la_load(const la_pass *ps, const ak_fwd_kernels *kern, const ak_tensor *t, int64_t b, int64_t h,
                    int64_t i0, int L, int n, float mul, float *dst, int64_t ld, const void **rows) {
    const ak_laproblem *p = ps->p;
    const int64_t len = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
    const size_t es = ak_dtype_size(t->dtype);
    const int npad = (n + 15) / 16 * 16;
    if (t->stride[3] == 1) {
        for (int i = 0; i < L; i++) {
            int64_t r = r0 + (ps->reverse ? len - 1 - (i0 + i) : i0 + i);
            rows[i] = (const char *)t->data + (size_t)(bi * t->stride[0] + h * t->stride[1] + r * t->stride[2]) * es;
        }
        kern->rows_f32(t->dtype, L, n, rows, NULL, dst, ld);
    } else {
        for (int i = 0; i < L; i++) {
            int64_t r = r0 + (ps->reverse ? len - 1 - (i0 + i) : i0 + i);
            load_row(t, bi, h, r, n, 1.0f, dst + (size_t)i * ld);
            for (int c = n; c < npad; c++) dst[(size_t)i * ld + c] = 0.0f;
        }
    }
    if (mul != 1.0f)
        for (int i = 0; i < L; i++) {
            float *row = dst + (size_t)i * ld;
            for (int c = 0; c < n; c++) row[c] *= mul;
        }
}

/* Store rows of ob [L][ld] (times omul) to the output view, in pass order. */
static void la_store_to(const la_pass *ps, const ak_tensor *t, int n, int64_t b, int64_t h, int64_t i0, int L,
                        const float *ob, int64_t ld, float *tmp);

static void la_store(const la_pass *ps, int64_t b, int64_t h, int64_t i0, int L, const float *ob, int64_t ld, float *tmp) {
    la_store_to(ps, ps->o, ps->dv, b, h, i0, L, ob, ld, tmp);
}

static void la_store_to(const la_pass *ps, const ak_tensor *t, int n, int64_t b, int64_t h, int64_t i0, int L,
                        const float *ob, int64_t ld, float *tmp) {
    const ak_laproblem *p = ps->p;
    const int64_t len = ak__la_len(p, b), r0 = ak__la_off(p, b), bi = ak__la_bidx(p, b);
    for (int i = 0; i < L; i++) {
        const int64_t r = r0 + (ps->reverse ? len - 1 - (i0 + i) : i0 + i);
        const float *src = ob + (size_t)i * ld;
        if (ps->omul != 1.0f) {
            for (int c = 0; c < n; c++) tmp[c] = src[c] * ps->omul;
            src = tmp;
        }
        if (t->stride[3] == 1 && t->dtype == AK_BF16) {
            uint16_t *dst = (uint16_t *)t->data + bi * t->stride[0] + h * t->stride[1] + r * t->stride[2];
            for (int c = 0; c < n; c++) { /* ak__f32_to_bf16 without a branch (vectorises) */
                uint32_t u;
                memcpy(&u, src + c, sizeof u);
                const uint32_t rn = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, qn = (u >> 16) | 0x40u;
                dst[c] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? qn : rn);
            }
        } else {
            store_row(t, bi, h, r, n, src);
        }
    }
}

/* Q of a block, transposed: qt[x][i] = q_i[x] (columns L..bpad zero). */
static void la_load_q(const la_pass *ps, const ak_fwd_kernels *kern, int64_t b, int64_t h, int64_t b0, int L, la_blk *s) {
    const la_dims x = la_dims_of(ps);
    const int dk = ps->dk, Lpad = (L + 15) / 16 * 16;
    la_load(ps, kern, ps->q, b, h, b0, L, dk, ps->qmul, s->qrow, x.ldk, s->rows);
    kern->tpose(L, dk, s->qrow, x.ldk, s->qt, x.ldb);
    (void)Lpad;
}

/* Intra-block term: st[j][i] = k_j . q_i (qt: Q^T), masked and decayed, then ob[i] = sum_j st[j][i] v_j;
 * by chunks of 32 query lanes / output rows, chunk c needing keys j < 32(c+1) only (causal). */
static void la_intra(const ak_fwd_kernels *kern, int L, int dk, const float *kb, int64_t ldk, const float *qt,
                     float *st, int64_t ldb, const float *pw, const float *vb, int64_t ldv, int dvpad, float *ob,
                     int64_t ldo) {
    const int Lpad = (L + 15) / 16 * 16;
    for (int c0 = 0; c0 < Lpad; c0 += 32) {
        const int nk = c0 + 32 < L ? c0 + 32 : L, w = Lpad - c0 < 32 ? Lpad - c0 : 32;
        kern->qk(nk, dk, w, kb, ldk, qt + c0, ldb, 1.0f, st + c0, ldb);
    }
    for (int j = 0; j < L; j++) { /* causal mask and decay: st[j][i] *= lambda^(i-j) for i >= j, else 0 */
        float *sr = st + (size_t)j * ldb;
        const float *pj = pw - j;
        for (int i = 0; i < j; i++) sr[i] = 0.0f;
        for (int i = j; i < L; i++) sr[i] *= pj[i];
    }
    for (int c0 = 0; c0 < L; c0 += 32) {
        const int nk = c0 + 32 < L ? c0 + 32 : L, rows = L - c0 < 32 ? L - c0 : 32;
        kern->pvb(nk, rows, dvpad, st + c0, ldb, vb, ldv, ob + (size_t)c0 * ldo, ldo, 0.0f);
    }
}

/* k'_j = lambda^(L-1-j) k_j, in place */
static void la_decay_keys(float *kb, int64_t ldk, int L, int dk, const float *pw) {
    for (int j = 0; j < L; j++) {
        float *kr = kb + (size_t)j * ldk;
        const float w = pw[L - 1 - j];
        for (int c = 0; c < dk; c++) kr[c] *= w;
    }
}

/* Phase 1 of a block: Q^T (qt) left in s; ob = intra output; kb = k'_j = lambda^(L-1-j) k_j; vb = V. */
static void la_phase1(const la_pass *ps, const ak_fwd_kernels *kern, int64_t b, int64_t h, int64_t b0, int L, la_blk *s,
                      float *kb, float *vb, float *ob) {
    const la_dims x = la_dims_of(ps);
    la_load_q(ps, kern, b, h, b0, L, s);
    la_load(ps, kern, ps->k, b, h, b0, L, ps->dk, ps->kmul, kb, x.ldk, s->rows);
    la_load(ps, kern, ps->v, b, h, b0, L, ps->dv, ps->vmul, vb, x.ldv, s->rows);
    la_intra(kern, L, ps->dk, kb, x.ldk, s->qt, s->st, x.ldb, s->pw, vb, x.ldv, x.dvpad, ob, x.ldv);
    la_decay_keys(kb, x.ldk, L, ps->dk, s->pw);
}

/* Inter-block term: ib = Q_b S_{b-1} (from zero), then ob[i] += lambda^(i+e0) ib[i]. The decay power
 * multiplies the finished product (its rounding errors scale with it), and the product is not
 * accumulated on top of the intra term: deep in a block lambda^i is small and so is its error. */
static void la_inter(const la_pass *ps, const ak_fwd_kernels *kern, int L, int e0, const float *Sprev, float *ob,
                     la_blk *s) {
    const la_dims x = la_dims_of(ps);
    kern->pvb(ps->dk, L, x.dvpad, s->qt, x.ldb, Sprev, x.ldv, s->ib, x.ldv, 0.0f);
    for (int i = 0; i < L; i++) {
        const float w = s->pw[i + e0];
        float *restrict o = ob + (size_t)i * x.ldv;
        const float *restrict a = s->ib + (size_t)i * x.ldv;
        for (int y = 0; y < ps->dv; y++) o[y] += w * a[y];
    }
}

/* beta of the state update of the block at b0: lambda^(L-1+e0), or 0 while there is no state yet */
static float la_beta(const la_pass *ps, const la_blk *s, int64_t b0, int L, int e0) {
    return b0 == 0 && !ps->s_in.data ? 0.0f : s->pw[L - 1 + e0];
}

static void la_seed(const la_pass *ps, int64_t b, int64_t h, float *S) {
    const la_dims x = la_dims_of(ps);
    for (int r = 0; r < ps->dk; r++) {
        float *row = S + (size_t)r * x.ldv;
        memset(row, 0, sizeof(float) * (size_t)x.dvpad);
        if (ps->s_in.data)
            for (int y = 0; y < ps->dv; y++)
                row[y] = ((const float *)ps->s_in.data)[b * ps->s_in.stride[0] + h * ps->s_in.stride[1] + r * ps->s_in.stride[2] +
                                                        y * ps->s_in.stride[3]];
    }
}

static void la_final(const la_pass *ps, int64_t b, int64_t h, const float *S, int empty) {
    const la_dims x = la_dims_of(ps);
    if (!ps->s_out.data) return;
    /* with a shifted seed and no rows the state is the seed itself (lambda^n seed, n = 0) */
    const float mul = ps->s_out_lambda && !(empty && ps->shift) ? (float)exp(la_log_lambda(ps, h)) : 1.0f;
    for (int r = 0; r < ps->dk; r++)
        for (int y = 0; y < ps->dv; y++)
            ((float *)ps->s_out.data)[b * ps->s_out.stride[0] + h * ps->s_out.stride[1] + r * ps->s_out.stride[2] +
                                      y * ps->s_out.stride[3]] = mul * S[(size_t)r * x.ldv + y];
}

/* The dual pass (the backward's dv and dk in one reverse sweep): pass A = (q := k, k := c q, v := g),
 * pass B = (q := v, k := g, v := c q). B's keys are A's values and B's values are A's keys (loaded once),
 * and B's state is the transpose of A's (R^T, by `tpose` at the point of use): one state update per block
 * instead of two. Phase 1 of a block for both: A's and B's intra terms into oa, ob2, then A's keys decayed. */
static void la_dual_phase1(const la_pass *A, const la_pass *B, const ak_fwd_kernels *kern, int64_t b, int64_t h,
                           int64_t b0, int L, la_blk *sa, la_blk *sb, float *kb, float *vb, float *oa, float *ob2) {
    const la_dims xa = la_dims_of(A), xb = la_dims_of(B);
    la_load_q(A, kern, b, h, b0, L, sa);
    la_load_q(B, kern, b, h, b0, L, sb);
    la_load(A, kern, A->k, b, h, b0, L, A->dk, A->kmul, kb, xa.ldk, sa->rows);
    la_load(A, kern, A->v, b, h, b0, L, A->dv, A->vmul, vb, xa.ldv, sa->rows);
    la_intra(kern, L, A->dk, kb, xa.ldk, sa->qt, sa->st, xa.ldb, sa->pw, vb, xa.ldv, xa.dvpad, oa, xa.ldv);
    /* B: keys = vb (width e = B->dk, leading dim xa.ldv = xb.ldk), values = kb (width d, xa.ldk = xb.ldv) */
    la_intra(kern, L, B->dk, vb, xb.ldk, sb->qt, sb->st, xb.ldb, sa->pw, kb, xb.ldv, xb.dvpad, ob2, xb.ldv);
    la_decay_keys(kb, xa.ldk, L, A->dk, sa->pw);
}

/* Phase 3 of a block of the dual pass: both inter terms from S_{b-1} (R for A, R^T for B), both stores. */
static void la_dual_phase3(const la_pass *A, const la_pass *B, const ak_fwd_kernels *kern, int64_t b, int64_t h,
                           int64_t b0, int L, int e0, const float *Sprev, la_blk *sa, la_blk *sb, float *oa, float *ob2) {
    const la_dims xa = la_dims_of(A), xb = la_dims_of(B);
    if (Sprev) {
        la_inter(A, kern, L, e0, Sprev, oa, sa);
        kern->tpose(A->dk, A->dv, Sprev, xa.ldv, sb->S, xb.ldv); /* R^T [e][d] */
        la_inter(B, kern, L, e0, sb->S, ob2, sb);
    }
    la_store(A, b, h, b0, L, oa, xa.ldv, sa->tmp);
    la_store(B, b, h, b0, L, ob2, xb.ldv, sb->tmp);
}

/* One (sequence, head), start to finish, on one thread (B: the dual pass's second half, or NULL). */
static void la_pair_seq(const la_pass *ps, const la_pass *B, const ak_fwd_kernels *kern, int64_t b, int64_t h,
                        la_blk *s, la_blk *sb) {
    const la_dims x = la_dims_of(ps);
    const int64_t n = ak__la_len(ps->p, b);
    const int blk = ps->p->blk;
    la_powers(ps, h, s->pw);
    if (B) memcpy(sb->pw, s->pw, sizeof(float) * ((size_t)blk + 1));
    la_seed(ps, b, h, s->S);
    for (int64_t b0 = 0; b0 < n; b0 += blk) {
        const int L = (int)(n - b0 < blk ? n - b0 : blk), e0 = b0 == 0 && ps->shift ? 0 : 1;
        const float *Sprev = b0 == 0 && !ps->s_in.data ? NULL : s->S;
        if (B) {
            la_dual_phase1(ps, B, kern, b, h, b0, L, s, sb, s->kb, s->vb, s->ob, sb->ob);
            la_dual_phase3(ps, B, kern, b, h, b0, L, e0, Sprev, s, sb, s->ob, sb->ob);
        } else {
            la_phase1(ps, kern, b, h, b0, L, s, s->kb, s->vb, s->ob);
            if (Sprev) la_inter(ps, kern, L, e0, Sprev, s->ob, s);
        }
        kern->pvb(L, ps->dk, x.dvpad, s->kb, x.ldk, s->vb, x.ldv, s->S, x.ldv, la_beta(ps, s, b0, L, e0));
        if (!B) la_store(ps, b, h, b0, L, s->ob, x.ldv, s->tmp);
    }
    la_final(ps, b, h, s->S, n == 0);
}

/* the 3-phase form's window: blocks per window, and the floats of one window slot (k', v, o, S_{b-1}, and
 * the dual pass's second output) */
static size_t la_slot_floats(const la_pass *ps, const la_pass *B) {
    const la_dims x = la_dims_of(ps);
    const size_t bl = (size_t)ps->p->blk;
    return bl * (size_t)x.ldk + 2 * bl * (size_t)x.ldv + (size_t)ps->dk * (size_t)x.ldv + (B ? bl * (size_t)x.ldk : 0);
}

static int la_window(const la_pass *ps, const la_pass *B, int nt) {
    const size_t per = la_slot_floats(ps, B) * sizeof(float);
    int w = 4 * nt; /* 1, 2, 4 or 8 per thread measured within the noise (H = 1, T = 64k, 2 threads) */
    while (w > nt && (size_t)w * per > ((size_t)32 << 20)) w /= 2;
    return w;
}

/* Run a pass (B NULL) or the dual pass (ps = A, B) over every (sequence, head). */
static ak_status la_run_passes(const ak_ctx *ctx, const la_pass *ps, const la_pass *B) {
    const ak_laproblem *p = ps->p;
    const int64_t pairs = (int64_t)p->B * p->H;
    const ak_fwd_kernels *kern = ak__kernel_for(ctx->isa);
    const la_dims x = la_dims_of(ps);
    const int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    /* the first (pairs / nt) * nt pairs one per thread, the rest with all threads each */
    const int64_t seq_pairs = nt > 1 ? pairs / nt * nt : pairs;
    const int W = la_window(ps, B, nt);
    const size_t per = la_blk_floats(ps) + (B ? la_blk_floats(B) : 0), slot = la_slot_floats(ps, B);
    const size_t wfl = seq_pairs < pairs ? (size_t)W * slot + (size_t)ps->dk * (size_t)x.ldv + 64 : 0;
    float *ws = (float *)ak__alloc(ctx, sizeof(float) * (per * (size_t)nt + wfl));
    if (!ws)
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention scratch (%zu floats per thread, block %d)", per, p->blk);
    float *const Sg = ws + per * (size_t)nt, *const win = Sg + (size_t)ps->dk * x.ldv;
    /* state rows per thread in phase 2 (a multiple of 4, the micro-kernels' smaller row tile) */
    const int rchunk = ((ps->dk + nt - 1) / nt + 3) / 4 * 4;
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        la_blk s = la_blk_carve(ps, ws + per * (size_t)tid), sb = s;
        if (B) sb = la_blk_carve(B, ws + per * (size_t)tid + la_blk_floats(ps));
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t xq = 0; xq < seq_pairs; xq++) la_pair_seq(ps, B, kern, xq / p->H, xq % p->H, &s, &sb);
        for (int64_t xq = seq_pairs; xq < pairs; xq++) {
            const int64_t b = xq / p->H, h = xq % p->H, n = ak__la_len(p, b);
            const int blk = p->blk;
            const int64_t nb = (n + blk - 1) / blk;
            la_powers(ps, h, s.pw);
            if (B) memcpy(sb.pw, s.pw, sizeof(float) * ((size_t)blk + 1));
#ifdef AK_USE_OPENMP
#pragma omp single
#endif
            la_seed(ps, b, h, Sg);
            for (int64_t w0 = 0; w0 < nb; w0 += W) {
                const int nw = (int)(nb - w0 < W ? nb - w0 : W);
                /* phase 1 over the window's blocks: k', v, intra o into the slots */
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
                for (int wi = 0; wi < nw; wi++) {
                    const int64_t b0 = (w0 + wi) * blk;
                    const int L = (int)(n - b0 < blk ? n - b0 : blk);
                    float *kb = win + (size_t)wi * slot, *vb = kb + (size_t)blk * x.ldk, *ob = vb + (size_t)blk * x.ldv;
                    float *ob2 = ob + (size_t)blk * x.ldv + (size_t)ps->dk * x.ldv;
                    if (B) la_dual_phase1(ps, B, kern, b, h, b0, L, &s, &sb, kb, vb, ob, ob2);
                    else la_phase1(ps, kern, b, h, b0, L, &s, kb, vb, ob);
                }
                /* phase 2 over state rows: S_{b-1} kept in the slot, then the state update, block after block */
#ifdef AK_USE_OPENMP
#pragma omp for schedule(static, 1)
#endif
                for (int r0 = 0; r0 < ps->dk; r0 += rchunk) {
                    const int nr = ps->dk - r0 < rchunk ? ps->dk - r0 : rchunk;
                    for (int wi = 0; wi < nw; wi++) {
                        const int64_t b0 = (w0 + wi) * blk;
                        const int L = (int)(n - b0 < blk ? n - b0 : blk), e0 = b0 == 0 && ps->shift ? 0 : 1;
                        float *kb = win + (size_t)wi * slot, *vb = kb + (size_t)blk * x.ldk, *ob = vb + (size_t)blk * x.ldv;
                        float *sp = ob + (size_t)blk * x.ldv;
                        memcpy(sp + (size_t)r0 * x.ldv, Sg + (size_t)r0 * x.ldv, sizeof(float) * (size_t)nr * (size_t)x.ldv);
                        kern->pvb(L, nr, x.dvpad, kb + r0, x.ldk, vb, x.ldv, Sg + (size_t)r0 * x.ldv, x.ldv, la_beta(ps, &s, b0, L, e0));
                    }
                }
                /* phase 3 over the blocks: inter term from S_{b-1}, store */
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
                for (int wi = 0; wi < nw; wi++) {
                    const int64_t b0 = (w0 + wi) * blk;
                    const int L = (int)(n - b0 < blk ? n - b0 : blk), e0 = b0 == 0 && ps->shift ? 0 : 1;
                    float *kb = win + (size_t)wi * slot, *vb = kb + (size_t)blk * x.ldk, *ob = vb + (size_t)blk * x.ldv;
                    float *sp = ob + (size_t)blk * x.ldv, *ob2 = sp + (size_t)ps->dk * x.ldv;
                    const float *Sprev = b0 == 0 && !ps->s_in.data ? NULL : sp;
                    la_load_q(ps, kern, b, h, b0, L, &s);
                    if (B) {
                        la_load_q(B, kern, b, h, b0, L, &sb);
                        la_dual_phase3(ps, B, kern, b, h, b0, L, e0, Sprev, &s, &sb, ob, ob2);
                    } else {
                        if (Sprev) la_inter(ps, kern, L, e0, Sprev, ob, &s);
                        la_store(ps, b, h, b0, L, ob, x.ldv, s.tmp);
                    }
                }
            }
#ifdef AK_USE_OPENMP
#pragma omp single
#endif
            la_final(ps, b, h, Sg, n == 0);
        }
    }
    ak__free(ctx, ws);
    return AK_OK;
}

static ak_status ak__la_pass_run(const ak_ctx *ctx, const la_pass *ps) { return la_run_passes(ctx, ps, NULL); }

/* A pass over roles (q, k, v) -> o with load multipliers, widths and direction; no seed, no final state. */
static la_pass la_make(const ak_laproblem *p, const ak_tensor *q, const ak_tensor *k, const ak_tensor *v,
                       const ak_tensor *o, float qmul, float kmul, float vmul, float omul, int dk, int dv, int reverse,
                       const ak_tensor *log_decay) {
    la_pass ps;
    memset(&ps, 0, sizeof ps);
    ps.p = p;
    ps.q = q, ps.k = k, ps.v = v, ps.o = o;
    ps.qmul = qmul, ps.kmul = kmul, ps.vmul = vmul, ps.omul = omul;
    ps.dk = dk, ps.dv = dv;
    ps.reverse = reverse;
    ps.log_decay = log_decay;
    return ps;
}

static la_pass la_forward_pass(const ak_laproblem *p, const ak_la_tensors *t) {
    la_pass ps = la_make(p, &t->q, &t->k, &t->v, &t->o, p->desc.scale, 1.0f, 1.0f, 1.0f, p->d, p->e, 0,
                         p->desc.has_decay ? &t->log_decay : NULL);
    if (p->desc.has_initial_state) ps.s_in = t->state_in;
    if (p->desc.return_final_state) ps.s_out = t->state_out;
    return ps;
}

static ak_status la_recurrent_run(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t) {
    const int64_t pairs = (int64_t)p->B * p->H;
    const size_t per = ((size_t)p->d * p->e + 2 * (size_t)p->d + 2 * (size_t)p->e + 2 + 15) / 16 * 16;
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
        la_scratch s;
        s.S = mine;
        s.q = s.S + (size_t)p->d * p->e;
        s.k = s.q + p->d;
        s.v = s.k + p->d;
        s.o = s.v + p->e;
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t x = 0; x < pairs; x++) recurrent_head(p, t, x / p->H, x % p->H, &s);
    }
    ak__free(ctx, ws);
    return AK_OK;
}

ak_status ak__la_run(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, int recurrent) {
    if (recurrent) return la_recurrent_run(ctx, p, t);
    la_pass ps = la_forward_pass(p, t);
    return ak__la_pass_run(ctx, &ps);
}

/* ---- backward: passes of the forward code (q' = c q, g = dO, spec section 1.5) ----
 *   dq = c * forward(q := g, k := v, v := k; seed S_in^T)                       [o_i = S_i g_i + ...]
 *   dv = reverse(q := k, k := q', v := g; seed dS_f at row 0)                    [R, the reverse state]
 *   dk = reverse(q := v, k := g, v := q'; seed dS_f^T at row 0)                  [R^T]
 * In time-reversed order the anti-causal sums dv_s = sum_{t>=s} lambda^(t-s) (q'_t . k_s) g_t (+ the final
 * state term lambda^(n-1-s) dS_f^T k_s) are a causal linear attention whose seed sits at row 0; its final
 * state is sum_t lambda^t q'_t g_t^T + lambda^(n-1) dS_f, and d_state_in = lambda times it. dv and dk run as
 * one dual sweep (la_run_passes with B): dk's keys / values are dv's values / keys, its state dv's transposed. */
static ak_tensor la_transposed(const ak_tensor *t) {
    ak_tensor r = *t;
    r.shape[2] = t->shape[3];
    r.shape[3] = t->shape[2];
    r.stride[2] = t->stride[3];
    r.stride[3] = t->stride[2];
    return r;
}

ak_status ak__la_bwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g) {
    const float c = p->desc.scale;
    const ak_tensor *ld = p->desc.has_decay ? &t->log_decay : NULL;
    la_pass dq = la_make(p, &g->d_o, &t->v, &t->k, &g->dq, 1.0f, 1.0f, 1.0f, c, p->e, p->d, 0, ld);
    la_pass dv = la_make(p, &t->k, &t->q, &g->d_o, &g->dv, 1.0f, c, 1.0f, 1.0f, p->d, p->e, 1, ld);
    la_pass dk = la_make(p, &t->v, &g->d_o, &t->q, &g->dk, 1.0f, 1.0f, c, 1.0f, p->e, p->d, 1, ld);
    if (p->desc.has_initial_state) {
        dq.s_in = la_transposed(&t->state_in);
        dv.s_out = g->d_state_in; /* d_state_in = lambda R */
        dv.s_out_lambda = 1;
    }
    if (g->has_d_state_out) { /* the seeds sit at row 0 of the reverse sweep */
        dv.s_in = g->d_state_out;
        dk.s_in = la_transposed(&g->d_state_out);
        dv.shift = dk.shift = 1;
    }
    ak_status st = ak__la_pass_run(ctx, &dq);
    if (st == AK_OK) st = la_run_passes(ctx, &dv, &dk); /* dv and dk in one reverse sweep */
    return st;
}

/* ---- output normalization and gate (NormAttention), per token over all heads ----
 * Token k of the problem: sequence b, row i; its H rows of width e. Fast path: x in f32, sums in double. */
static void la_token(const ak_laproblem *p, int64_t k, int64_t *b, int64_t *r) {
    if (!p->cu) {
        *b = k / p->desc.seqlen;
        *r = k % p->desc.seqlen;
        return;
    }
    int64_t lo = 0, hi = p->B; /* the sequence holding packed row k: cu[lo] <= k < cu[lo + 1] */
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (p->cu[mid] <= k) lo = mid;
        else hi = mid;
    }
    *b = lo;
    *r = k;
}

static int64_t la_tokens(const ak_laproblem *p) { return p->cu ? p->total : (int64_t)p->B * p->desc.seqlen; }

ak_status ak__la_norm_fwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate,
                          const ak_tensor *o) {
    const int64_t ntok = la_tokens(p);
    const int H = p->H, e = p->e, nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    const size_t per = ((size_t)H * e * 2 + 15) / 16 * 16;
    float *ws = (float *)ak__alloc(ctx, sizeof(float) * per * (size_t)nt);
    if (!ws) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention norm scratch");
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        float *xs = ws + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
#else
        float *xs = ws;
#endif
        for (int64_t k = 0; k < ntok; k++) {
            int64_t b, r;
            la_token(p, k, &b, &r);
            const int64_t bi = ak__la_bidx(p, b);
            float *us = xs + (size_t)H * e;
            double ss = 0.0;
            for (int h = 0; h < H; h++) {
                load_row(x, bi, h, r, e, 1.0f, xs + (size_t)h * e);
                for (int y = 0; y < e; y++) ss += (double)xs[(size_t)h * e + y] * xs[(size_t)h * e + y];
            }
            const float rs = p->desc.norm == AK_LA_NORM_SRMS ? (float)(1.0 / sqrt(ss / ((double)H * e) + p->desc.norm_eps)) : 1.0f;
            for (int h = 0; h < H; h++) {
                float *row = xs + (size_t)h * e;
                if (gate) load_row(gate, bi, h, r, e, 1.0f, us);
                for (int y = 0; y < e; y++) row[y] = gate ? row[y] * rs * us[y] : row[y] * rs;
                store_row(o, bi, h, r, e, row);
            }
        }
    }
    ak__free(ctx, ws);
    return AK_OK;
}

/* x (f32, the pre-norm output) is overwritten by dx; d_gate written iff gate. */
ak_status ak__la_norm_bwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate,
                          const ak_tensor *d_o, const ak_tensor *d_gate) {
    const int64_t ntok = la_tokens(p);
    const int H = p->H, e = p->e, nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
    const size_t N = (size_t)H * e, per = (N * 3 + e + 15) / 16 * 16;
    float *ws = (float *)ak__alloc(ctx, sizeof(float) * per * (size_t)nt);
    if (!ws) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "linear attention norm scratch");
    const int srms = p->desc.norm == AK_LA_NORM_SRMS;
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        float *ys = ws + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
#else
        float *ys = ws;
#endif
        for (int64_t k = 0; k < ntok; k++) {
            int64_t b, r;
            la_token(p, k, &b, &r);
            const int64_t bi = ak__la_bidx(p, b);
            float *dys = ys + N, *us = dys + N, *tmp = us + N;
            double ss = 0.0;
            for (int h = 0; h < H; h++) {
                load_row(x, bi, h, r, e, 1.0f, ys + (size_t)h * e);
                load_row(d_o, bi, h, r, e, 1.0f, dys + (size_t)h * e);
                if (gate) load_row(gate, bi, h, r, e, 1.0f, us + (size_t)h * e);
            }
            for (size_t z = 0; z < N; z++) ss += (double)ys[z] * ys[z];
            const double rs = srms ? 1.0 / sqrt(ss / (double)N + p->desc.norm_eps) : 1.0;
            double m = 0.0;
            for (size_t z = 0; z < N; z++) {
                ys[z] = (float)(ys[z] * rs); /* y = x r */
                if (gate) {
                    const float g = dys[z];
                    dys[z] = g * us[z];
                    us[z] = g * ys[z]; /* d_gate */
                }
                m += (double)ys[z] * dys[z];
            }
            m /= (double)N;
            for (int h = 0; h < H; h++) {
                for (int y = 0; y < e; y++) {
                    const size_t z = (size_t)h * e + y;
                    tmp[y] = srms ? (float)(rs * (dys[z] - ys[z] * m)) : dys[z];
                }
                store_row(x, bi, h, r, e, tmp);
                if (gate) store_row(d_gate, bi, h, r, e, us + (size_t)h * e);
            }
        }
    }
    ak__free(ctx, ws);
    return AK_OK;
}
