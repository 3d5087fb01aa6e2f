/*
 * test_merge.c — ak_attn_merge:
 *  - split the keys of a random problem into two disjoint ranges, run ak_attention on each with
 *    return_lse, merge, compare with the oracle of the full problem (f32 and mixed dtypes,
 *    strided views, in place, lse_out NULL, an empty range);
 *  - hand-made partials with -inf LSE rows (weight 0; both -inf -> O = 0, LSE = -inf) and large
 *    LSE gaps, against the formula lse = logaddexp(a, b), o = e^(a-lse) o_a + e^(b-lse) o_b;
 *  - invalid inputs, each with its status.
 * Tolerance: 2e-6 * max(1, max|O|) plus 2 ulp of the coarsest dtype involved at max|O|;
 * LSE 1e-5 * max(1, |LSE|); -inf exactly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

/* Coarsest of three dtypes (f32 < f16 < bf16 in ulp size). */
static ak_dtype coarsest(ak_dtype a, ak_dtype b, ak_dtype c) {
    ak_dtype ds[3] = {a, b, c}, w = AK_F32;
    for (int i = 0; i < 3; i++)
        if (ds[i] == AK_BF16 || (ds[i] == AK_F16 && w == AK_F32))
            w = ds[i];
    return w;
}

/* Compare O (dense, [n][dv]) and LSE ([n]) with expectations; exact on -inf rows. */
static void compare(const char *label, const tbuf *o, const tbuf *lse, const double *o_exp,
                    const double *lse_exp, ak_dtype coarse) {
    int64_t n = o->t.shape[0] * o->t.shape[1] * o->t.shape[2], dv = o->t.shape[3];
    double *oo = (double *)malloc((size_t)(n * dv + 1) * sizeof(double));
    double *ll = (double *)malloc((size_t)(n + 1) * sizeof(double));
    double omax = 0, err = 0;
    tbuf_to_f64(o, oo);
    if (lse)
        tbuf_to_f64(lse, ll);
    for (int64_t i = 0; i < n * dv; i++)
        omax = fmax(omax, fabs(o_exp[i]));
    double tol = 2e-6 * fmax(1.0, omax) + (coarse == AK_F32 ? 0.0 : 2.0 * tu_ulp(coarse, omax));
    int bad_inf = 0, bad_lse = 0, bad_zero = 0;
    for (int64_t r = 0; r < n; r++) {
        for (int64_t c = 0; c < dv; c++) {
            double x = oo[r * dv + c], e = o_exp[r * dv + c];
            err = fmax(err, isfinite(x) ? fabs(x - e) : INFINITY);
            if (lse_exp[r] == -INFINITY && x != 0.0)
                bad_zero++;
        }
        if (!lse)
            continue;
        if ((lse_exp[r] == -INFINITY) != (ll[r] == -INFINITY))
            bad_inf++;
        else if (isfinite(lse_exp[r]) && !(fabs(ll[r] - lse_exp[r]) <= 1e-5 * fmax(1.0, fabs(lse_exp[r]))))
            bad_lse++;
    }
    CHECK(err <= tol, "%s: max|O - expected| = %.3g > %.3g", label, err, tol);
    CHECK(bad_zero == 0, "%s: %d elements of rows with both LSE -inf are not exactly 0", label, bad_zero);
    CHECK(bad_inf == 0, "%s: %d rows where LSE = -inf does not match", label, bad_inf);
    CHECK(bad_lse == 0, "%s: %d rows with a wrong LSE", label, bad_lse);
    CHECK(tbuf_outside_untouched(o), "%s: O written outside its view", label);
    CHECK(!lse || tbuf_outside_untouched(lse), "%s: LSE written outside its view", label);
    free(oo), free(ll);
}

/* Attention over keys [k0, k0+n) of problem p: views into p's K/V, outputs (o, lse). */
static ak_status run_part(ak_ctx *ctx, const problem *p, int64_t k0, int64_t n, tbuf *o, tbuf *lse) {
    ak_attn_desc d = p->d;
    ak_attn_tensors t = problem_tensors(p, o, lse);
    d.seqlen_k = (int32_t)n, d.return_lse = 1, d.dtype_o = o->t.dtype;
    t.k.shape[2] = n, t.v.shape[2] = n;
    t.k.data = (unsigned char *)t.k.data + k0 * t.k.stride[2] * (int64_t)ak_dtype_size(t.k.dtype);
    t.v.data = (unsigned char *)t.v.data + k0 * t.v.stride[2] * (int64_t)ak_dtype_size(t.v.dtype);
    return ak_attention(ctx, &d, &t);
}

/* Split at `split`, run both parts with output dtypes da/db, merge into dout, compare with the
 * oracle of the full problem. inplace: o_out = o_a, lse_out = lse_a (dout must equal da). */
static void split_merge(ak_ctx *ctx, int split, ak_dtype da, ak_dtype db, ak_dtype dout, int inplace,
                        int strided, int lse_out_null, uint64_t seed) {
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = 2, d.num_heads_q = 4, d.num_heads_kv = 2, d.seqlen_q = 37, d.seqlen_k = 150;
    d.head_dim = 64, d.head_dim_v = 48, d.softcap = 20.0f, d.return_lse = 1;
    problem p;
    problem_opts po;
    problem_opts_default(&po);
    rng g = rng_seed(seed);
    char label[160];
    snprintf(label, sizeof label, "merge split %d/%d o_a %s o_b %s o_out %s%s%s%s", split, 150,
             tu_dtype_short(da), tu_dtype_short(db), tu_dtype_short(dout), inplace ? " in-place" : "",
             strided ? " strided" : "", lse_out_null ? " lse_out=NULL" : "");
    if (problem_create(&p, &d, 0, 0, &po, &g))
        return;
    ak_attn_tensors t = problem_tensors(&p, &p.o, &p.lse);
    naive_out ref, n64;
    naive_alloc(&ref, &p.d, &t), naive_alloc(&n64, &p.d, &t);
    naive_attention64(&p.d, &t, &n64);
    CHECK_STATUS(run_ref64(ctx, &p, &ref, &n64), AK_OK);
    int64_t so[4] = {2, 4, 37, 48}, sl[3] = {2, 4, 37};
    tbuf oa, ob, oo, la, lb, lo;
    tbuf_make(&oa, da, 4, so, strided ? LAY_BSHD : LAY_CONTIG, &g);
    tbuf_make(&ob, db, 4, so, strided ? LAY_PERMUTED : LAY_CONTIG, &g);
    tbuf_make(&oo, dout, 4, so, strided ? LAY_PADDED : LAY_CONTIG, &g);
    tbuf_make(&la, AK_F32, 3, sl, strided ? LAY_PERMUTED : LAY_CONTIG, &g);
    tbuf_make(&lb, AK_F32, 3, sl, strided ? LAY_PADDED : LAY_CONTIG, &g);
    tbuf_make(&lo, AK_F32, 3, sl, strided ? LAY_PERMUTED : LAY_CONTIG, &g);
    CHECK_STATUS(run_part(ctx, &p, 0, split, &oa, &la), AK_OK);
    CHECK_STATUS(run_part(ctx, &p, split, 150 - split, &ob, &lb), AK_OK);
    const tbuf *out = inplace ? &oa : &oo, *lout = inplace ? &la : &lo;
    ak_status st = ak_attn_merge(ctx, &oa.t, &la.t, &ob.t, &lb.t, &out->t, lse_out_null ? NULL : &lout->t);
    CHECK(st == AK_OK, "%s: %s (%s)", label, ak_status_string(st), ak_ctx_last_error(ctx));
    if (st == AK_OK)
        compare(label, out, lse_out_null ? NULL : lout, ref.o, ref.lse, coarsest(da, db, dout));
    tbuf_free(&oa), tbuf_free(&ob), tbuf_free(&oo), tbuf_free(&la), tbuf_free(&lb), tbuf_free(&lo);
    naive_free(&ref), naive_free(&n64);
    problem_destroy(&p);
}

static void group_split(ak_ctx *ctx) {
    split_merge(ctx, 60, AK_F32, AK_F32, AK_F32, 0, 0, 0, 1);
    split_merge(ctx, 1, AK_F32, AK_F32, AK_F32, 0, 1, 0, 2);
    split_merge(ctx, 0, AK_F32, AK_F32, AK_F32, 0, 0, 0, 3);   /* part A empty: LSE -inf */
    split_merge(ctx, 150, AK_F32, AK_F32, AK_F32, 0, 0, 0, 4); /* part B empty */
    split_merge(ctx, 77, AK_F32, AK_F32, AK_F32, 1, 0, 0, 5);  /* in place */
    split_merge(ctx, 77, AK_BF16, AK_BF16, AK_BF16, 1, 1, 0, 6);
    split_merge(ctx, 99, AK_F32, AK_F32, AK_F32, 0, 1, 1, 7);  /* lse_out NULL */
    split_merge(ctx, 64, AK_BF16, AK_F16, AK_F32, 0, 0, 0, 8); /* mixed dtypes */
    split_merge(ctx, 64, AK_F32, AK_F32, AK_BF16, 0, 1, 0, 9);
    split_merge(ctx, 13, AK_F16, AK_BF16, AK_F16, 0, 1, 0, 10);
}

/* Hand-made partials: rows with -inf LSE (finite garbage in their O), big LSE gaps. */
static void group_inf(ak_ctx *ctx) {
    const ak_dtype dts[3] = {AK_F32, AK_BF16, AK_F16};
    for (int di = 0; di < 3; di++) {
        enum { N = 8, DV = 5 };
        int64_t so[4] = {1, 2, 4, DV}, sl[3] = {1, 2, 4};
        /* row r: (lse_a, lse_b) */
        const double la_v[N] = {-INFINITY, 0.5, -INFINITY, 1e4, -1e4, 3.0, 0.0, -INFINITY};
        const double lb_v[N] = {1.25, -INFINITY, -INFINITY, -1e4, 1e4, 3.0, 88.0, -INFINITY};
        tbuf oa, ob, oo, la, lb, lo;
        rng g = rng_seed(100 + (uint64_t)di);
        tbuf_make(&oa, dts[di], 4, so, LAY_CONTIG, NULL), tbuf_make(&ob, dts[(di + 1) % 3], 4, so, LAY_CONTIG, NULL);
        tbuf_make(&oo, dts[(di + 2) % 3], 4, so, LAY_CONTIG, NULL);
        tbuf_make(&la, AK_F32, 3, sl, LAY_CONTIG, NULL), tbuf_make(&lb, AK_F32, 3, sl, LAY_CONTIG, NULL);
        tbuf_make(&lo, AK_F32, 3, sl, LAY_CONTIG, NULL);
        double o_exp[N * DV], l_exp[N];
        for (int r = 0; r < N; r++) {
            int64_t h = r / 4, i = r % 4;
            ten_set3(&la.t, 0, h, i, la_v[r]), ten_set3(&lb.t, 0, h, i, lb_v[r]);
            double a = la_v[r], b = lb_v[r], m = fmax(a, b);
            l_exp[r] = m == -INFINITY ? -INFINITY : m + log(exp(a - m) + exp(b - m));
            for (int c = 0; c < DV; c++) {
                ten_set4(&oa.t, 0, h, i, c, rng_range(&g, -7, 7)); /* garbage if lse_a = -inf */
                ten_set4(&ob.t, 0, h, i, c, rng_range(&g, -7, 7));
                double xa = ten_get4(&oa.t, 0, h, i, c), xb = ten_get4(&ob.t, 0, h, i, c);
                o_exp[r * DV + c] = m == -INFINITY ? 0.0 : exp(a - l_exp[r]) * xa + exp(b - l_exp[r]) * xb;
            }
        }
        char label[64];
        snprintf(label, sizeof label, "-inf partials (%s, %s -> %s)", tu_dtype_short(oa.t.dtype),
                 tu_dtype_short(ob.t.dtype), tu_dtype_short(oo.t.dtype));
        CHECK_STATUS(ak_attn_merge(ctx, &oa.t, &la.t, &ob.t, &lb.t, &oo.t, &lo.t), AK_OK);
        compare(label, &oo, &lo, o_exp, l_exp, coarsest(oa.t.dtype, ob.t.dtype, oo.t.dtype));
        tbuf_free(&oa), tbuf_free(&ob), tbuf_free(&oo), tbuf_free(&la), tbuf_free(&lb), tbuf_free(&lo);
    }
}

/* Every invalid input, one at a time, on an otherwise valid f32 merge [2][3][5][4]. */
static void group_invalid(ak_ctx *ctx) {
    int64_t so[4] = {2, 3, 5, 4}, sl[3] = {2, 3, 5};
    tbuf oa, ob, oo, la, lb, lo;
    tbuf_make(&oa, AK_F32, 4, so, LAY_CONTIG, NULL), tbuf_make(&ob, AK_F32, 4, so, LAY_CONTIG, NULL);
    tbuf_make(&oo, AK_F32, 4, so, LAY_CONTIG, NULL), tbuf_make(&la, AK_F32, 3, sl, LAY_CONTIG, NULL);
    tbuf_make(&lb, AK_F32, 3, sl, LAY_CONTIG, NULL), tbuf_make(&lo, AK_F32, 3, sl, LAY_CONTIG, NULL);
    for (int64_t i = 0; i < 30; i++) { /* valid values so that only the tested defect matters */
        ((float *)la.t.data)[i] = 0.5f, ((float *)lb.t.data)[i] = -0.5f;
        for (int c = 0; c < 4; c++)
            ((float *)oa.t.data)[i * 4 + c] = 1.0f, ((float *)ob.t.data)[i * 4 + c] = 2.0f;
    }
    ak_tensor A = oa.t, B = ob.t, O = oo.t, LA = la.t, LB = lb.t, LO = lo.t, x;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &LO), AK_OK); /* the valid baseline */
    CHECK_STATUS(ak_attn_merge(NULL, &A, &LA, &B, &LB, &O, &LO), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attn_merge(ctx, NULL, &LA, &B, &LB, &O, &LO), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attn_merge(ctx, &A, NULL, &B, &LB, &O, &LO), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, NULL, &LB, &O, &LO), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, NULL, &O, &LO), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, NULL, &LO), AK_ERR_NULL_POINTER);
    x = B, x.data = NULL;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &x, &LB, &O, &LO), AK_ERR_NULL_POINTER);
    x = LO, x.data = NULL;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &x), AK_ERR_NULL_POINTER);
    /* shapes */
    x = B, x.shape[3] = 3;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &x, &LB, &O, &LO), AK_ERR_SHAPE_MISMATCH);
    x = O, x.shape[2] = 4;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &x, &LO), AK_ERR_SHAPE_MISMATCH);
    x = LB, x.shape[1] = 2;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &x, &O, &LO), AK_ERR_SHAPE_MISMATCH);
    x = LO, x.shape[0] = 1;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &x), AK_ERR_SHAPE_MISMATCH);
    x = ak_tensor_3d(oa.t.data, AK_F32, 6, 5, 4); /* o with ndim 3 */
    CHECK_STATUS(ak_attn_merge(ctx, &x, &LA, &B, &LB, &O, &LO), AK_ERR_SHAPE_MISMATCH);
    x = ak_tensor_4d(la.t.data, AK_F32, 2, 3, 5, 1); /* lse with ndim 4 */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &x, &B, &LB, &O, &LO), AK_ERR_SHAPE_MISMATCH);
    /* dtypes */
    x = LA, x.dtype = AK_BF16;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &x, &B, &LB, &O, &LO), AK_ERR_UNSUPPORTED_DTYPE);
    x = A, x.dtype = AK_F64;
    CHECK_STATUS(ak_attn_merge(ctx, &x, &LA, &B, &LB, &O, &LO), AK_ERR_UNSUPPORTED_DTYPE);
    x = O, x.dtype = (ak_dtype)42;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &x, &LO), AK_ERR_UNSUPPORTED_DTYPE);
    /* strides */
    x = B, x.stride[3] = -1;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &x, &LB, &O, &LO), AK_ERR_BAD_STRIDE);
    x = O, x.stride[0] = 0;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &x, &LO), AK_ERR_BAD_STRIDE);
    x = LO, x.stride[2] = 0;
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &x), AK_ERR_BAD_STRIDE);
    /* overlap: only exactly o_a / lse_a may be the output */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &A, &LA), AK_OK);
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &B, &LO), AK_ERR_OUTPUT_OVERLAP);
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &LB), AK_ERR_OUTPUT_OVERLAP);
    x = A, x.data = (float *)A.data + 1; /* o_a shifted by one element */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &x, &LO), AK_ERR_OUTPUT_OVERLAP);
    x = A, x.stride[2] = 1, x.stride[3] = 5; /* same memory as o_a, another view */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &x, &LO), AK_ERR_OUTPUT_OVERLAP);
    x = O, x.stride[2] = 1; /* rows of o_out alias each other */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &x, &LO), AK_ERR_OUTPUT_OVERLAP);
    x = ak_tensor_3d(ob.t.data, AK_F32, 2, 3, 5); /* lse_out inside o_b's memory */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &x), AK_ERR_OUTPUT_OVERLAP);
    x = ak_tensor_3d((float *)oo.t.data + 60, AK_F32, 2, 3, 5); /* lse_out inside o_out */
    CHECK_STATUS(ak_attn_merge(ctx, &A, &LA, &B, &LB, &O, &x), AK_ERR_OUTPUT_OVERLAP);
    CHECK(strlen(ak_ctx_last_error(ctx)) > 0, "merge: no last-error message after a failure");
    tbuf_free(&oa), tbuf_free(&ob), tbuf_free(&oo), tbuf_free(&la), tbuf_free(&lb), tbuf_free(&lo);
}

int main(void) {
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_merge: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    group_split(ctx);
    group_inf(ctx);
    group_invalid(ctx);
    ak_ctx_destroy(ctx);
    return tc_finish("test_merge");
}
