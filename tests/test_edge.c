/*
 * test_edge.c — edge cases of ak_attention: fully-masked rows, extreme logits, sinks with empty KV,
 * windows beyond bounds, decode-causal, seqused_k, bitwise determinism (thread count and batch
 * composition), plan reuse, caller workspace (exact size with canaries; one byte short), inputs
 * broadcast with stride 0, unaligned data pointers.
 *
 * Results are judged by the accuracy rule of harness.h against ak_attention_ref, plus the exact
 * requirements (O == 0 and LSE == -inf or sink on fully-masked rows).
 *
 * Usage: test_edge [group]   (no argument = every group except "unaligned_bytes", which is its
 * own CTest, edge_unaligned, so that a sanitizer abort there is reported on its own)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

static ak_attn_desc desc_dense(int B, int Hq, int Hkv, int Lq, int Lk, int d, int dv, ak_dtype dt) {
    ak_attn_desc x;
    ak_attn_desc_init(&x);
    x.batch = B, x.num_heads_q = Hq, x.num_heads_kv = Hkv, x.seqlen_q = Lq, x.seqlen_k = Lk;
    x.head_dim = d, x.head_dim_v = dv, x.dtype_q = x.dtype_kv = x.dtype_o = dt;
    x.return_lse = 1;
    return x;
}

/* Reference results of a problem: naive32 (rule), naive64 (oracle check) and the oracle. */
typedef struct refs {
    naive_out n32, n64, ref;
} refs;

static int refs_compute(ak_ctx *ctx, const problem *p, refs *r, const char *label) {
    ak_attn_tensors t = problem_tensors(p, &p->o, p->d.return_lse ? &p->lse : NULL);
    char msg[512];
    memset(r, 0, sizeof *r);
    if (naive_alloc(&r->n32, &p->d, &t) || naive_alloc(&r->n64, &p->d, &t) ||
        naive_alloc(&r->ref, &p->d, &t))
        return 0;
    naive_attention32(&p->d, &t, &r->n32);
    naive_attention64(&p->d, &t, &r->n64);
    ak_status st = run_ref64(ctx, p, &r->ref, &r->n64);
    CHECK(st == AK_OK, "%s: ak_attention_ref: %s", label, ak_status_string(st));
    int ok = st == AK_OK && check_oracle(&r->ref, &r->n64, msg, sizeof msg);
    CHECK(st != AK_OK || ok, "%s: %s", label, msg);
    return ok;
}

static void refs_free(refs *r) {
    naive_free(&r->n32), naive_free(&r->n64), naive_free(&r->ref);
}

/* Run ak_attention into (o, lse) and apply the rule against `r`. Returns 1 on pass. */
static int run_check_into(ak_ctx *ctx, const problem *p, const refs *r, tbuf *o, tbuf *lse,
                          const char *label) {
    char msg[512];
    ak_attn_tensors t = problem_tensors(p, o, p->d.return_lse ? lse : NULL);
    ak_status st = ak_attention(ctx, &p->d, &t);
    CHECK(st == AK_OK, "%s: ak_attention: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(ctx));
    if (st != AK_OK)
        return 0;
    int ok = check_rule(p, o, p->d.return_lse ? lse : NULL, &r->ref, &r->n32, msg, sizeof msg);
    CHECK(ok, "%s: %s", label, msg);
    return ok;
}

/* Build, compute references, run, check; returns the number of fully-masked rows seen. */
static int full_check(ak_ctx *ctx, const ak_attn_desc *d, int64_t Lqt, int64_t Lkt,
                      const problem_opts *po, uint64_t seed, const char *label) {
    problem p;
    refs r;
    rng g = rng_seed(seed);
    int masked = 0;
    if (problem_create(&p, d, Lqt, Lkt, po, &g)) {
        CHECK(0, "%s: problem_create failed", label);
        return 0;
    }
    if (refs_compute(ctx, &p, &r, label)) {
        run_check_into(ctx, &p, &r, &p.o, &p.lse, label);
        for (int64_t i = 0; i < r.n64.n_rows; i++)
            masked += r.n64.nvis[i] == 0;
    }
    refs_free(&r);
    problem_destroy(&p);
    return masked;
}

/* ---- fully-masked rows ------------------------------------------------------------------------ */

static void group_fully_masked(ak_ctx *ctx) {
    problem_opts po;
    problem_opts_default(&po);
    const ak_dtype dts[3] = {AK_F32, AK_BF16, AK_F16};
    for (int i = 0; i < 3; i++) {
        ak_attn_desc d = desc_dense(2, 4, 2, 7, 3, 16, 16, dts[i]); /* causal Lq > Lk: rows 0..3 */
        d.causal = 1;
        CHECK(full_check(ctx, &d, 0, 0, &po, 1, "causal Lq=7 > Lk=3") == 2 * 4 * 4,
              "causal Lq>Lk: expected 32 fully-masked rows (%s)", tu_dtype_short(dts[i]));
        d.has_sinks = 1; /* with sinks: O = 0 and LSE = sink on those rows */
        full_check(ctx, &d, 0, 0, &po, 2, "causal Lq>Lk + sinks");
    }
    ak_attn_desc d = desc_dense(1, 3, 1, 12, 4, 8, 5, AK_F32); /* window (1,1): rows 0..6 see none */
    d.window_left = 1, d.window_right = 1;
    CHECK(full_check(ctx, &d, 0, 0, &po, 3, "window excludes rows") == 3 * 7,
          "window (1,1) Lq=12 Lk=4: expected 21 fully-masked rows");
    d = desc_dense(2, 2, 2, 5, 0, 8, 8, AK_F32); /* Lk = 0: every row fully masked */
    CHECK(full_check(ctx, &d, 0, 0, &po, 4, "Lk=0") == 2 * 2 * 5, "Lk=0: all rows fully masked");
    d = desc_dense(2, 2, 1, 0, 9, 8, 8, AK_F32); /* Lq = 0: nothing to do, must succeed */
    full_check(ctx, &d, 0, 0, &po, 5, "Lq=0");
    /* ragged: seq 1 has no keys, seq 3 no queries, 2 padding rows after cu_q[B] */
    int32_t cu_q[5] = {0, 3, 7, 9, 9}, cu_k[5] = {0, 5, 5, 12, 15};
    d = desc_dense(4, 4, 2, 0, 0, 24, 24, AK_BF16);
    d.cu_seqlens_q = cu_q, d.cu_seqlens_k = cu_k, d.causal = 1;
    CHECK(full_check(ctx, &d, 11, 16, &po, 6, "ragged empty sequences") >= 4 * 4,
          "ragged: expected the 4 rows of seq 1 fully masked in every head");
    d.has_sinks = 1, d.dtype_o = AK_F32;
    full_check(ctx, &d, 11, 16, &po, 7, "ragged empty sequences + sinks");
}

/* ---- extreme logits --------------------------------------------------------------------------- */

/* q, k entries: sign_mode 0 = +-mag with random signs (d = 128, mag = 300: |s| ~ 1e5, every
 * q.k an exact integer in f32, ties between keys common), 2 = uniform in [-mag, mag],
 * +1 / -1 = that constant sign. */
static void fill_pm(const tbuf *b, double mag, rng *g, int sign_mode) {
    const ak_tensor *t = &b->t;
    for (int64_t i0 = 0; i0 < t->shape[0]; i0++)
        for (int64_t i1 = 0; i1 < t->shape[1]; i1++)
            for (int64_t i2 = 0; i2 < t->shape[2]; i2++)
                for (int64_t i3 = 0; i3 < t->shape[3]; i3++) {
                    double s = sign_mode == 0   ? (rng_chance(g, 0.5) ? 1 : -1)
                               : sign_mode == 2 ? rng_range(g, -1.0, 1.0)
                                                : sign_mode;
                    ten_set4(t, i0, i1, i2, i3, s * mag);
                }
}

static void extreme_case(ak_ctx *ctx, ak_dtype dt, float softcap, int qsign, int ksign, int sinks,
                         const char *label) {
    ak_attn_desc d = desc_dense(1, 4, 2, 33, 77, 128, 64, dt);
    problem p;
    refs r;
    problem_opts po;
    problem_opts_default(&po);
    po.sink_lo = 1e4, po.sink_hi = 2e4; /* sinks bigger than most logits */
    d.softcap = softcap, d.has_sinks = sinks, d.causal = 1;
    rng g = rng_seed(11);
    if (problem_create(&p, &d, 0, 0, &po, &g))
        return;
    fill_pm(&p.q, 300.0, &g, qsign);
    fill_pm(&p.k, 300.0, &g, ksign);
    if (refs_compute(ctx, &p, &r, label))
        if (!run_check_into(ctx, &p, &r, &p.o, &p.lse, label))
            fprintf(stderr, "  (extreme case above: dtype %s, softcap %g)\n", tu_dtype_short(dt), softcap);
    refs_free(&r);
    problem_destroy(&p);
}

static void group_extreme(ak_ctx *ctx) {
    const ak_dtype dts[3] = {AK_F32, AK_BF16, AK_F16};
    for (int i = 0; i < 3; i++) {
        extreme_case(ctx, dts[i], 0.0f, 0, 0, 0, "extreme logits |s|~1e5 (+-300 entries)");
        extreme_case(ctx, dts[i], 0.0f, 2, 2, 0, "extreme logits (uniform +-300 entries)");
        extreme_case(ctx, dts[i], 30.0f, 0, 0, 0, "extreme logits + softcap 30");
        extreme_case(ctx, dts[i], 0.0f, 1, -1, 0, "all logits -1e6 (q=300, k=-300)");
        extreme_case(ctx, dts[i], 0.0f, 1, 1, 0, "all logits +1e6 (q=k=300)");
        extreme_case(ctx, dts[i], 0.0f, 0, 0, 1, "extreme logits + sinks 1e4");
    }
}

/* ---- masks that change nothing ---------------------------------------------------------------- */

/* `d` and the same problem with `mod` applied must give the same result (checked against the
 * oracle of the unmodified problem, on the same input data). */
static void same_as(ak_ctx *ctx, ak_attn_desc d, ak_attn_desc mod, const char *label) {
    problem p;
    refs r;
    problem_opts po;
    problem_opts_default(&po);
    rng g = rng_seed(21);
    if (problem_create(&p, &d, 0, 0, &po, &g))
        return;
    if (refs_compute(ctx, &p, &r, label)) {
        run_check_into(ctx, &p, &r, &p.o, &p.lse, label); /* the unmodified problem */
        tbuf o2, l2;
        tbuf_make_like(&o2, &p.o), tbuf_make_like(&l2, &p.lse);
        ak_attn_tensors t = problem_tensors(&p, &o2, &l2);
        ak_status st = ak_attention(ctx, &mod, &t);
        CHECK(st == AK_OK, "%s: %s", label, ak_status_string(st));
        char msg[512];
        if (st == AK_OK)
            CHECK(check_rule(&p, &o2, &l2, &r.ref, &r.n32, msg, sizeof msg), "%s: %s", label, msg);
        tbuf_free(&o2), tbuf_free(&l2);
    }
    refs_free(&r);
    problem_destroy(&p);
}

static void group_masks(ak_ctx *ctx) {
    ak_attn_desc d = desc_dense(2, 4, 2, 37, 100, 64, 64, AK_F32), m;
    m = d, m.window_left = 5000, m.window_right = 5000;
    same_as(ctx, d, m, "window (5000,5000) == no window");
    m = d, m.window_left = 137, m.window_right = 137; /* exactly Lq + Lk: still beyond */
    same_as(ctx, d, m, "window (137,137) == no window");
    d.causal = 1;
    m = d, m.window_left = 100000;
    same_as(ctx, d, m, "causal + window (100000,-1) == causal");
    m = d, m.window_right = 7; /* causal forces right = 0 */
    same_as(ctx, d, m, "causal + window (-1,7) == causal");
    d = desc_dense(3, 8, 2, 1, 113, 128, 128, AK_BF16); /* decode: Lq = 1 sees every key */
    m = d, m.causal = 1;
    same_as(ctx, d, m, "decode Lq=1 causal == non-causal");
    d.dtype_q = d.dtype_kv = d.dtype_o = AK_F32, d.seqlen_k = 1023;
    m = d, m.causal = 1;
    same_as(ctx, d, m, "decode Lq=1 Lk=1023 causal == non-causal");
}

/* ---- unusual but valid parameters -------------------------------------------------------------- */

/* Build a problem, let `tweak` edit its inputs, then check it like full_check. */
static void tweaked_check(ak_ctx *ctx, const ak_attn_desc *d, int64_t Lqt, int64_t Lkt, const problem_opts *po,
                          uint64_t seed, void (*tweak)(problem *), const char *label) {
    problem p;
    refs r;
    rng g = rng_seed(seed);
    if (problem_create(&p, d, Lqt, Lkt, po, &g))
        return;
    if (tweak)
        tweak(&p);
    if (refs_compute(ctx, &p, &r, label))
        run_check_into(ctx, &p, &r, &p.o, &p.lse, label);
    refs_free(&r);
    problem_destroy(&p);
}

static void sinks_minus_inf(problem *p) { /* heads 0 and 2: a -inf sink, the same as no sink */
    int64_t i0[1] = {0}, i2[1] = {2};
    ten_set(&p->sinks.t, i0, -INFINITY), ten_set(&p->sinks.t, i2, -INFINITY);
}

static void slopes_signed(problem *p) { /* negative slopes: a bias growing with the distance */
    for (int64_t h = 0; h < p->alibi.t.shape[0]; h++) {
        int64_t idx[1] = {h};
        ten_set(&p->alibi.t, idx, h % 2 ? -0.05 * (double)h : 0.3);
    }
}

static void group_params(ak_ctx *ctx) {
    problem_opts po;
    problem_opts_default(&po);
    ak_attn_desc base = desc_dense(2, 6, 3, 41, 57, 48, 40, AK_F32), d;
    d = base, d.scale = 0.0f; /* every logit 0: uniform weights */
    full_check(ctx, &d, 0, 0, &po, 201, "scale 0");
    d = base, d.scale = -0.7f, d.causal = 1;
    full_check(ctx, &d, 0, 0, &po, 202, "negative scale");
    d = base, d.softcap = 1e-3f;
    full_check(ctx, &d, 0, 0, &po, 203, "softcap 1e-3");
    d = base, d.softcap = 1e6f;
    full_check(ctx, &d, 0, 0, &po, 204, "softcap 1e6");
    d = base, d.has_sinks = 1, d.causal = 1, d.seqlen_q = 70; /* incl. fully-masked rows */
    tweaked_check(ctx, &d, 0, 0, &po, 205, sinks_minus_inf, "sinks = -inf on some heads");
    d = base, d.has_alibi = 1;
    tweaked_check(ctx, &d, 0, 0, &po, 206, slopes_signed, "negative ALiBi slopes");
    /* 64 short sequences, many empty, GQA 2, window + causal + sinks, bf16 */
    int32_t cu_q[65], cu_k[65];
    rng g = rng_seed(207);
    cu_q[0] = cu_k[0] = 0;
    for (int b = 0; b < 64; b++) {
        cu_q[b + 1] = cu_q[b] + rng_int(&g, 10);
        cu_k[b + 1] = cu_k[b] + (rng_chance(&g, 0.2) ? 0 : rng_int(&g, 14));
    }
    d = desc_dense(64, 6, 3, 0, 0, 40, 40, AK_BF16);
    d.cu_seqlens_q = cu_q, d.cu_seqlens_k = cu_k, d.causal = 1, d.window_left = 3, d.has_sinks = 1;
    full_check(ctx, &d, cu_q[64] + 2, cu_k[64], &po, 208, "64 short ragged sequences");
}

/* ---- seqused_k -------------------------------------------------------------------------------- */

/* A ragged batch with seqused_k must equal the batch whose key ranges are cut to seqused_k
 * (seqused_k also defines Lk for the causal alignment). The keys beyond it are NaN. */
static void group_seqused(ak_ctx *ctx) {
    int32_t cu_q[4] = {0, 20, 20, 61}, cu_k[4] = {0, 50, 53, 153}, used[3] = {31, 0, 64};
    int32_t cut_k[4] = {0, 31, 31, 95};
    for (int causal = 0; causal < 2; causal++) {
        ak_attn_desc d = desc_dense(3, 6, 3, 0, 0, 40, 40, AK_F32), dc;
        d.cu_seqlens_q = cu_q, d.cu_seqlens_k = cu_k, d.seqused_k = used, d.causal = causal;
        dc = d, dc.cu_seqlens_k = cut_k, dc.seqused_k = NULL;
        problem p, pc;
        refs rc;
        problem_opts po;
        problem_opts_default(&po);
        rng g = rng_seed(31);
        if (problem_create(&p, &d, 61, 153, &po, &g) || problem_create(&pc, &dc, 61, 95, &po, &g))
            return;
        for (int b = 0; b < 3; b++) /* same used keys in both layouts */
            for (int64_t h = 0; h < 3; h++)
                for (int64_t j = 0; j < used[b]; j++)
                    for (int64_t c = 0; c < 40; c++) {
                        ten_set4(&pc.k.t, 0, h, cut_k[b] + j, c, ten_get4(&p.k.t, 0, h, cu_k[b] + j, c));
                        ten_set4(&pc.v.t, 0, h, cut_k[b] + j, c, ten_get4(&p.v.t, 0, h, cu_k[b] + j, c));
                    }
        for (int64_t h = 0; h < 6; h++)
            for (int64_t i = 0; i < 61; i++)
                for (int64_t c = 0; c < 40; c++)
                    ten_set4(&pc.q.t, 0, h, i, c, ten_get4(&p.q.t, 0, h, i, c));
        if (refs_compute(ctx, &pc, &rc, "seqused_k: cut problem")) {
            ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
            ak_status st = ak_attention(ctx, &p.d, &t);
            CHECK(st == AK_OK, "seqused_k: %s", ak_status_string(st));
            char msg[512];
            if (st == AK_OK)
                CHECK(check_rule(&p, &p.o, &p.lse, &rc.ref, &rc.n32, msg, sizeof msg),
                      "seqused_k (causal=%d) vs keys cut to seqused_k: %s", causal, msg);
        }
        refs_free(&rc);
        problem_destroy(&p), problem_destroy(&pc);
    }
    /* seqused_k on a dense batch (FlashAttention 3 accepts it there too): keys beyond are NaN */
    int32_t dused[3] = {17, 0, 40};
    problem_opts po;
    problem_opts_default(&po);
    for (int causal = 0; causal < 2; causal++) {
        ak_attn_desc d = desc_dense(3, 4, 2, 23, 40, 32, 32, AK_F32);
        d.seqused_k = dused, d.causal = causal, d.has_sinks = causal;
        full_check(ctx, &d, 0, 0, &po, 32, "dense batch with seqused_k");
    }
}

/* ---- determinism ------------------------------------------------------------------------------ */

/* The same problem with n_threads in {1, 2, 3, 7} must give identical bytes. */
static void group_threads(ak_ctx *ctx) {
    static const int threads[4] = {1, 2, 3, 7};
    int32_t cu_q[4] = {0, 130, 131, 300}, cu_k[4] = {0, 200, 200, 401};
    for (int v = 0; v < 3; v++) {
        ak_attn_desc d = desc_dense(2, 8, 2, 300, 300, 64, 64, v == 1 ? AK_BF16 : AK_F32);
        int64_t Lqt = 0, Lkt = 0;
        d.causal = 1;
        if (v == 2) { /* ragged, window, sinks */
            d.batch = 3, d.cu_seqlens_q = cu_q, d.cu_seqlens_k = cu_k;
            d.window_left = 50, d.has_sinks = 1, Lqt = 303, Lkt = 401;
        }
        problem p;
        problem_opts po;
        problem_opts_default(&po);
        rng g = rng_seed(41);
        if (problem_create(&p, &d, Lqt, Lkt, &po, &g))
            return;
        tbuf o[4], l[4];
        for (int i = 0; i < 4; i++) {
            tbuf_make_like(&o[i], &p.o), tbuf_make_like(&l[i], &p.lse);
            ak_attn_tensors t = problem_tensors(&p, &o[i], &l[i]);
            CHECK_STATUS(ak_ctx_set_num_threads(ctx, threads[i]), AK_OK);
            CHECK_STATUS(ak_attention(ctx, &p.d, &t), AK_OK);
            if (i > 0)
                CHECK(tbuf_same_bytes(&o[0], &o[i]) && tbuf_same_bytes(&l[0], &l[i]),
                      "variant %d: n_threads=1 and n_threads=%d differ", v, threads[i]);
        }
        for (int i = 0; i < 4; i++)
            tbuf_free(&o[i]), tbuf_free(&l[i]);
        problem_destroy(&p);
    }
    ak_ctx_set_num_threads(ctx, 2);
}

/* Element bits equal (== on the decoded value plus the sign of zero; no NaN expected). */
static int same_elem(double a, double b) { return a == b && signbit(a) == signbit(b); }

/* Sequence 1 of a ragged batch run alone (dense B=1, and ragged B=1) and inside the batch. */
static void group_batch_composition(ak_ctx *ctx) {
    int32_t cu_q[4] = {0, 50, 127, 158}, cu_k[4] = {0, 64, 194, 214};
    int32_t one_q[2] = {0, 77}, one_k[2] = {0, 130};
    const ak_dtype dts[2] = {AK_F32, AK_BF16};
    for (int di = 0; di < 2; di++)
        for (int nt = 1; nt <= 3; nt++) {
            ak_attn_desc d = desc_dense(3, 6, 2, 0, 0, 96, 96, dts[di]);
            d.cu_seqlens_q = cu_q, d.cu_seqlens_k = cu_k, d.causal = 1;
            ak_attn_desc ds = desc_dense(1, 6, 2, 77, 130, 96, 96, dts[di]), dr;
            ds.causal = 1;
            dr = ds, dr.cu_seqlens_q = one_q, dr.cu_seqlens_k = one_k, dr.seqlen_q = dr.seqlen_k = 0;
            problem p, ps, pr;
            problem_opts po, pob;
            problem_opts_default(&po);
            pob = po, pob.lay_q = pob.lay_k = pob.lay_v = pob.lay_o = LAY_BSHD;
            rng g = rng_seed(51);
            if (problem_create(&p, &d, 158, 214, &pob, &g) || problem_create(&ps, &ds, 0, 0, &po, &g) ||
                problem_create(&pr, &dr, 77, 130, &pob, &g))
                return;
            for (int64_t h = 0; h < 6; h++) /* copy sequence 1 into the single-sequence problems */
                for (int64_t c = 0; c < 96; c++) {
                    for (int64_t i = 0; i < 77; i++) {
                        double x = ten_get4(&p.q.t, 0, h, 50 + i, c);
                        ten_set4(&ps.q.t, 0, h, i, c, x), ten_set4(&pr.q.t, 0, h, i, c, x);
                    }
                    for (int64_t j = 0; h < 2 && j < 130; j++) {
                        double x = ten_get4(&p.k.t, 0, h, 64 + j, c), y = ten_get4(&p.v.t, 0, h, 64 + j, c);
                        ten_set4(&ps.k.t, 0, h, j, c, x), ten_set4(&pr.k.t, 0, h, j, c, x);
                        ten_set4(&ps.v.t, 0, h, j, c, y), ten_set4(&pr.v.t, 0, h, j, c, y);
                    }
                }
            ak_ctx_set_num_threads(ctx, nt);
            ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
            ak_attn_tensors ts = problem_tensors(&ps, &ps.o, &ps.lse);
            ak_attn_tensors tr = problem_tensors(&pr, &pr.o, &pr.lse);
            CHECK_STATUS(ak_attention(ctx, &p.d, &t), AK_OK);
            CHECK_STATUS(ak_attention(ctx, &ps.d, &ts), AK_OK);
            CHECK_STATUS(ak_attention(ctx, &pr.d, &tr), AK_OK);
            int64_t bad_s = 0, bad_r = 0;
            for (int64_t h = 0; h < 6; h++)
                for (int64_t i = 0; i < 77; i++) {
                    double lb = ten_get3(&p.lse.t, 0, h, 50 + i);
                    bad_s += !same_elem(lb, ten_get3(&ps.lse.t, 0, h, i));
                    bad_r += !same_elem(lb, ten_get3(&pr.lse.t, 0, h, i));
                    for (int64_t c = 0; c < 96; c++) {
                        double ob = ten_get4(&p.o.t, 0, h, 50 + i, c);
                        bad_s += !same_elem(ob, ten_get4(&ps.o.t, 0, h, i, c));
                        bad_r += !same_elem(ob, ten_get4(&pr.o.t, 0, h, i, c));
                    }
                }
            CHECK(bad_s == 0, "%s n_threads=%d: sequence alone (dense) vs in a ragged batch: %lld "
                  "elements differ", tu_dtype_short(dts[di]), nt, (long long)bad_s);
            CHECK(bad_r == 0, "%s n_threads=%d: sequence alone (ragged B=1) vs in a ragged batch: "
                  "%lld elements differ", tu_dtype_short(dts[di]), nt, (long long)bad_r);
            problem_destroy(&p), problem_destroy(&ps), problem_destroy(&pr);
        }
    ak_ctx_set_num_threads(ctx, 2);
}

/* ---- plans and workspace ---------------------------------------------------------------------- */

/* One plan, several runs with different data and layouts; re-running the first data reproduces
 * the first output bytes. */
static void group_plan_reuse(ak_ctx *ctx) {
    ak_attn_desc d = desc_dense(2, 4, 2, 100, 100, 64, 64, AK_F32);
    ak_plan *plan = NULL;
    d.causal = 1, d.has_alibi = 1;
    CHECK_STATUS(ak_plan_create(ctx, &d, &plan), AK_OK);
    if (!plan)
        return;
    tbuf first_o;
    memset(&first_o, 0, sizeof first_o);
    for (int run = 0; run < 4; run++) {
        problem p;
        refs r;
        problem_opts po;
        problem_opts_default(&po);
        if (run == 1 || run == 2) /* another layout: the plan depends on the descriptor only */
            po.lay_q = po.lay_k = po.lay_v = po.lay_o = run == 1 ? LAY_BSHD : LAY_PADDED;
        rng g = rng_seed(run == 3 ? 61 : 61 + (uint64_t)run);
        if (problem_create(&p, &d, 0, 0, &po, &g))
            break;
        if (refs_compute(ctx, &p, &r, "plan reuse")) {
            ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
            char msg[512];
            CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_OK);
            CHECK(check_rule(&p, &p.o, &p.lse, &r.ref, &r.n32, msg, sizeof msg), "plan reuse run %d: %s",
                  run, msg);
            if (run == 0)
                tbuf_make_like(&first_o, &p.o), memcpy(first_o.mem, p.o.mem, p.o.mem_elems * p.o.esize);
            if (run == 3)
                CHECK(tbuf_same_bytes(&first_o, &p.o), "plan reuse: same data, different output bytes");
        }
        refs_free(&r);
        problem_destroy(&p);
    }
    tbuf_free(&first_o);
    ak_plan_destroy(plan);
}

#define CANARY 0xA5

static int canary_intact(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != CANARY)
            return 0;
    return 1;
}

/* Workspace of exactly ak_plan_workspace_size bytes at an odd address between canaries; one byte
 * less is refused; the size does not grow with the sequence length. */
static void group_workspace(ak_ctx *ctx) {
    ak_attn_desc d = desc_dense(1, 8, 2, 300, 300, 128, 96, AK_BF16);
    problem p;
    refs r;
    memset(&r, 0, sizeof r);
    problem_opts po;
    problem_opts_default(&po);
    rng g = rng_seed(71);
    d.causal = 1;
    ak_ctx_set_num_threads(ctx, 2);
    if (problem_create(&p, &d, 0, 0, &po, &g))
        return;
    ak_plan *plan = NULL;
    CHECK_STATUS(ak_plan_create(ctx, &d, &plan), AK_OK);
    if (plan && refs_compute(ctx, &p, &r, "workspace")) {
        size_t ws = ak_plan_workspace_size(plan), pre = 1, post = 64;
        unsigned char *buf = (unsigned char *)malloc(pre + ws + post);
        memset(buf, CANARY, pre + ws + post);
        ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
        char msg[512];
        CHECK_STATUS(ak_attention_run(plan, &t, buf + pre, ws), AK_OK);
        CHECK(check_rule(&p, &p.o, &p.lse, &r.ref, &r.n32, msg, sizeof msg), "caller workspace: %s", msg);
        CHECK(canary_intact(buf, pre) && canary_intact(buf + pre + ws, post),
              "caller workspace of %zu bytes: bytes outside it were written", ws);
        /* One byte short (or none) is refused before anything is written: outputs keep the poison. */
        tbuf fresh_o, fresh_l;
        tbuf_make_like(&fresh_o, &p.o), tbuf_make_like(&fresh_l, &p.lse);
        tbuf_poison(&p.o), tbuf_poison(&p.lse);
        CHECK(ws > 0, "the optimised plan reports a workspace of 0 bytes");
        if (ws > 0) {
            CHECK_STATUS(ak_attention_run(plan, &t, buf + pre, ws - 1), AK_ERR_WORKSPACE_TOO_SMALL);
            CHECK_STATUS(ak_attention_run(plan, &t, buf + pre, 0), AK_ERR_WORKSPACE_TOO_SMALL);
        }
        CHECK(tbuf_same_bytes(&fresh_o, &p.o) && tbuf_same_bytes(&fresh_l, &p.lse),
              "WORKSPACE_TOO_SMALL, but the outputs were written");
        tbuf_free(&fresh_o), tbuf_free(&fresh_l);
        /* A plan keeps the thread count the context had at creation: its workspace still does. */
        ak_ctx_set_num_threads(ctx, 7);
        memset(buf, CANARY, pre + ws + post);
        CHECK_STATUS(ak_attention_run(plan, &t, buf + pre, ws), AK_OK);
        CHECK(canary_intact(buf, pre) && canary_intact(buf + pre + ws, post),
              "plan made with 2 threads, run after set_num_threads(7) with its %zu-byte workspace: "
              "bytes after the workspace were written (overflow)", ws);
        CHECK(check_rule(&p, &p.o, &p.lse, &r.ref, &r.n32, msg, sizeof msg),
              "workspace after set_num_threads(7): %s", msg);
        ak_ctx_set_num_threads(ctx, 2);
        free(buf);
    }
    refs_free(&r);
    ak_plan_destroy(plan);
    problem_destroy(&p);
}

/* The header's formula: 64 + T * W with, per thread,
 *   W = A(4dP) + A(4dvP) + A(4NP) + 4A(4M) + 3A(8M) + 2A(4M) + A(4N max(d,dv)) + A(4N dv) + A(4 ceil(N/2) P),
 *   A(x) = x rounded up to 64, M = query-tile width (<= 128, multiple of 16), P = M + 16, N = 64.
 * M is the plan's choice, so the size must match the formula for one of the allowed M. */
static size_t a64(size_t x) { return (x + 63) / 64 * 64; }

static size_t r16(size_t x) { return (x + 15) / 16 * 16; }

static int ws_formula_matches(size_t ws, size_t T, size_t d, size_t dv) {
    const size_t N = 64;
    for (size_t M = 16; M <= 128; M += 16) {
        size_t P = M + 16, W = a64(4 * d * P) + a64(4 * dv * P) + a64(4 * N * P) + 4 * a64(4 * M) +
                              3 * a64(8 * M) + 2 * a64(4 * M) + a64(4 * N * (r16(d > dv ? d : dv) + 16)) +
                              a64(4 * N * (r16(dv) + 16)) + a64(4 * ((N + 1) / 2) * P) + a64(4 * M) + a64(8 * M) +
                              a64(4 * N);
        if (ws == 64 + T * W)
            return 1;
    }
    return 0;
}

static void group_workspace_formula(ak_ctx *ctx) {
    static const int cfg[][6] = {/* threads, Hq, Hkv, d, dv, L */
                                 {1, 8, 2, 128, 128, 1000}, {2, 8, 2, 128, 96, 300}, {3, 16, 1, 3, 511, 77},
                                 {2, 4, 4, 64, 64, 16000},  {1, 1, 1, 1, 1, 1},      {2, 32, 2, 512, 512, 5000}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        ak_attn_desc d = desc_dense(1, cfg[i][1], cfg[i][2], cfg[i][5], cfg[i][5], cfg[i][3], cfg[i][4], AK_F32);
        ak_plan *plan = NULL;
        ak_ctx_set_num_threads(ctx, cfg[i][0]);
        CHECK_STATUS(ak_plan_create(ctx, &d, &plan), AK_OK);
        if (plan) {
            size_t ws = ak_plan_workspace_size(plan);
            CHECK(ws_formula_matches(ws, (size_t)cfg[i][0], (size_t)cfg[i][3], (size_t)cfg[i][4]),
                  "workspace %zu bytes (threads %d, d %d, dv %d) matches the header's formula for no M", ws,
                  cfg[i][0], cfg[i][3], cfg[i][4]);
            ak_plan *p2 = NULL; /* O(tile): the same with 8x longer sequences */
            d.seqlen_q = d.seqlen_k = 8 * cfg[i][5];
            CHECK_STATUS(ak_plan_create(ctx, &d, &p2), AK_OK);
            CHECK(p2 && ak_plan_workspace_size(p2) == ws, "workspace depends on the sequence length");
            ak_plan_destroy(p2);
        }
        ak_plan_destroy(plan);
    }
    /* a plan that runs the reference needs no workspace */
    ak_attn_desc d = desc_dense(1, 2, 1, 9, 9, 16, 16, AK_F32);
    ak_plan *plan = NULL;
    CHECK_STATUS(ak_ctx_set_force_ref(ctx, 1), AK_OK);
    CHECK_STATUS(ak_plan_create(ctx, &d, &plan), AK_OK);
    CHECK(plan && ak_plan_workspace_size(plan) == 0, "force_ref plan: workspace %zu, header says 0",
          plan ? ak_plan_workspace_size(plan) : (size_t)0);
    ak_plan_destroy(plan);
    ak_ctx_set_force_ref(ctx, 0);
    ak_ctx_set_num_threads(ctx, 2);
}

/* ---- input views ------------------------------------------------------------------------------ */

/* K and V broadcast over heads and batch with stride 0 (read-only inputs may alias). */
static void group_broadcast(ak_ctx *ctx) {
    ak_attn_desc d = desc_dense(3, 6, 3, 40, 70, 32, 48, AK_F32);
    problem p;
    refs r;
    problem_opts po;
    problem_opts_default(&po);
    po.lay_k = po.lay_v = LAY_BCAST0;
    rng g = rng_seed(81);
    if (problem_create(&p, &d, 0, 0, &po, &g))
        return;
    p.k.t.stride[1] = 0; /* every KV head is the same head */
    p.v.t.stride[1] = 0;
    problem_refill(&p, &po, &g);
    if (refs_compute(ctx, &p, &r, "stride-0 K/V"))
        run_check_into(ctx, &p, &r, &p.o, &p.lse, "stride-0 K/V");
    refs_free(&r);
    problem_destroy(&p);
}

/* Data pointers shifted by one element of each tensor's dtype (element aligned, not vector
 * aligned; bytes = 0): must work. Shifted by `bytes` bytes, not a multiple of the element size: the
 * header requires element alignment, so the run must be refused with AK_ERR_INVALID_ARGUMENT. */
static void unaligned_case(ak_ctx *ctx, int bytes, ak_dtype dt) {
    ak_attn_desc d = desc_dense(1, 4, 2, 29, 45, 64, 64, dt);
    problem p;
    refs r;
    problem_opts po;
    problem_opts_default(&po);
    rng g = rng_seed(91);
    char label[64];
    if (bytes)
        snprintf(label, sizeof label, "data pointers at +%d byte(s), %s", bytes, tu_dtype_short(dt));
    else
        snprintf(label, sizeof label, "data pointers at +1 element, %s", tu_dtype_short(dt));
    if (problem_create(&p, &d, 0, 0, &po, &g))
        return;
    if (refs_compute(ctx, &p, &r, label)) {
        /* copy each tensor into a buffer at the wanted misalignment, same strides */
        tbuf *ts[5] = {&p.q, &p.k, &p.v, &p.o, &p.lse};
        unsigned char *bufs[5];
        ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
        ak_tensor *views[5] = {&t.q, &t.k, &t.v, &t.o, &t.lse};
        for (int i = 0; i < 5; i++) {
            size_t n = ts[i]->mem_elems * ts[i]->esize, shift = bytes ? (size_t)bytes : ts[i]->esize;
            bufs[i] = (unsigned char *)malloc(n + 128);
            unsigned char *base = bufs[i] + (64 - ((uintptr_t)bufs[i] % 64)) % 64 + shift;
            memcpy(base, ts[i]->mem, n);
            views[i]->data = base + ((unsigned char *)ts[i]->t.data - ts[i]->mem);
        }
        ak_status st = ak_attention(ctx, &p.d, &t);
        if (bytes % (int)ak_dtype_size(dt) != 0) {
            CHECK(st == AK_ERR_INVALID_ARGUMENT, "%s: %s, expected AK_ERR_INVALID_ARGUMENT", label,
                  ak_status_string(st));
            for (int i = 0; i < 5; i++)
                free(bufs[i]);
            refs_free(&r);
            problem_destroy(&p);
            return;
        }
        CHECK(st == AK_OK, "%s: %s", label, ak_status_string(st));
        memcpy(p.o.mem, (unsigned char *)t.o.data - TBUF_GUARD * p.o.esize, p.o.mem_elems * p.o.esize);
        memcpy(p.lse.mem, (unsigned char *)t.lse.data - TBUF_GUARD * 4, p.lse.mem_elems * 4);
        char msg[512];
        if (st == AK_OK)
            CHECK(check_rule(&p, &p.o, &p.lse, &r.ref, &r.n32, msg, sizeof msg), "%s: %s", label, msg);
        for (int i = 0; i < 5; i++)
            free(bufs[i]);
    }
    refs_free(&r);
    problem_destroy(&p);
}

static void group_unaligned_elems(ak_ctx *ctx) {
    unaligned_case(ctx, 0, AK_F32);
    unaligned_case(ctx, 0, AK_BF16);
    unaligned_case(ctx, 0, AK_F16);
}

static void group_unaligned_bytes(ak_ctx *ctx) {
    unaligned_case(ctx, 1, AK_F32);
    unaligned_case(ctx, 1, AK_BF16);
    unaligned_case(ctx, 3, AK_F16);
}

typedef struct group {
    const char *name;
    void (*fn)(ak_ctx *);
    int in_default;
} group;

static const group GROUPS[] = {
    {"fully_masked", group_fully_masked, 1},   {"extreme", group_extreme, 1},
    {"masks", group_masks, 1},                 {"params", group_params, 1},
    {"seqused", group_seqused, 1},
    {"threads", group_threads, 1},             {"batch_composition", group_batch_composition, 1},
    {"plan_reuse", group_plan_reuse, 1},       {"workspace", group_workspace, 1},
    {"workspace_formula", group_workspace_formula, 1},
    {"broadcast", group_broadcast, 1},         {"unaligned_elems", group_unaligned_elems, 1},
    {"unaligned_bytes", group_unaligned_bytes, 0},
};

int main(int argc, char **argv) {
    ak_ctx *ctx = NULL;
    int found = 0;
    if (ak_ctx_create(&ctx) != AK_OK || ak_ctx_set_num_threads(ctx, 2) != AK_OK) {
        fprintf(stderr, "test_edge: context setup failed\n");
        ak_ctx_destroy(ctx);
        return 1;
    }
    for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) {
        if (argc > 1 ? strcmp(argv[1], GROUPS[i].name) != 0 : !GROUPS[i].in_default)
            continue;
        int before = tc_failures;
        double t0 = tu_now();
        GROUPS[i].fn(ctx);
        found = 1;
        printf("  %-18s %s (%.2f s)\n", GROUPS[i].name, tc_failures == before ? "ok" : "FAILED",
               tu_now() - t0);
    }
    ak_ctx_destroy(ctx);
    if (!found) {
        fprintf(stderr, "test_edge: unknown group %s\n", argv[1]);
        return 1;
    }
    return tc_finish(argc > 1 ? argv[1] : "test_edge");
}
