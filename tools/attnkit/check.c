/*
 * check.c — the `check` and `bitwise` modes.
 *
 * check:   O (and LSE) of ak_attention_run vs the double reference (ak_attention_ref with f64
 *          outputs), next to the error of a naive fp32 attention vs the same reference. PASS iff
 *          err <= 2 * err_naive32 + 1e-6 (+ 2 ulp of the output dtype at max|O| for bf16/f16 O).
 * bitwise: two runs on N threads and one on 1 thread (2 if N = 1); O and LSE must be memcmp-equal.
 * Decode problems (decode_...): ak_decode_run on the whole batch; the reference (ak_decode_ref) and the
 *          naive fp32 baseline per (sequence, KV head) pair, on the pairs within DECODE_REF_CAP of
 *          reference work unless --full; any NaN left in O / LSE fails. Same rule and output.
 * Linear-attention problems (linear_...): linear.c, with the same rule (report_items) and pair order.
 * Sparse problems (..._sp-<kind>...): the pattern is built for the problem (sparse.c); the run is
 *          ak_plan_create_sparse + ak_attention_run, the reference ak_attention_ref_sparse, and the naive
 *          fp32 baseline applies the pattern's element mask (ak_sparse_mask); same rule and output, the line
 *          ends with the pattern's density. bitwise: the same sparse plan on N threads and on 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* |a - b|, 0 when equal (both -inf included), +inf when either is NaN. */
static double abs_diff(double a, double b) {
    if (a == b) return 0.0;
    double d = fabs(a - b);
    return isnan(d) ? INFINITY : d;
}

/* Spacing of dtype t's values at magnitude x (0 for f32: no rounding term). */
static double ulp_at(ak_dtype t, double x) {
    int mant = t == AK_BF16 ? 7 : t == AK_F16 ? 10 : -1, e = 0;
    if (mant < 0) return 0.0;
    frexp(x > 0 ? x : 1e-30, &e);   /* x = m * 2^e, m in [0.5, 1) */
    double u = ldexp(1.0, e - 1 - mant);
    double smallest = t == AK_F16 ? ldexp(1.0, -24) : ldexp(1.0, -133);
    return u > smallest ? u : smallest;
}

typedef struct errors {
    double err, err32, max_ref;   /* O: max |opt - ref|, max |naive32 - ref|, max |ref| */
    double lerr, lerr32;          /* LSE: the same */
} errors;

/* Fold one output element into the maxima: opt (optimized), ref (f64 reference), n32 (naive fp32). */
static void add_o(errors *e, double opt, double ref, double n32) {
    double d = abs_diff(opt, ref), d32 = abs_diff(n32, ref);
    if (d > e->err) e->err = d;
    if (d32 > e->err32) e->err32 = d32;
    if (fabs(ref) > e->max_ref) e->max_ref = fabs(ref);
}

static void add_lse(errors *e, double opt, double ref, double n32) {
    double d = abs_diff(opt, ref), d32 = abs_diff(n32, ref);
    if (d > e->lerr) e->lerr = d;
    if (d32 > e->lerr32) e->lerr32 = d32;
}

/* Compare the optimized output (in->t), the f64 reference and the naive fp32 result. */
static errors compare(const inputs *in, const double *o_ref, const double *l_ref, const float *o32,
                      const float *l32) {
    errors e = {0, 0, 0, 0, 0};
    const problem *p = &in->p;
    for (int64_t b = 0; b < in->Bt; b++)
        for (int64_t h = 0; h < p->Hq; h++)
            for (int64_t r = 0; r < in->Tq; r++) {
                size_t row = ((size_t)b * p->Hq + h) * in->Tq + r;
                for (int64_t c = 0; c < p->dv; c++)
                    add_o(&e, tensor_get(&in->t.o, b, h, r, c), o_ref[row * p->dv + c], o32[row * p->dv + c]);
                if (p->lse) add_lse(&e, ((const float *)in->lse)[row], l_ref[row], l32[row]);
            }
    return e;
}

static void print_ratio(double err, double err32) {
    if (err32 > 0) printf("  ratio %5.2f", err / err32);
    else printf("  ratio %5s", err > 0 ? "inf" : "0");
}

/* Fold one element of a compared output into q (opt, f64 reference, naive fp32). */
void qerr_add(qerr *q, double opt, double ref, double n32) {
    double d = abs_diff(opt, ref), d32 = abs_diff(n32, ref);
    if (d > q->err) q->err = d;
    if (d32 > q->err32) q->err32 = d32;
    if (fabs(ref) > q->max_ref) q->max_ref = fabs(ref);
}

/*
 * The verdict on the compared outputs of one problem (the rule at the top of this file: each output on its
 * own, tolerance 2 * naive32 + 1e-6 + 2 ulp of its dtype at its max |ref|), printed on the current line
 * after the kernel name: the first output with its tolerance, the others as "| name err .. naive32 ..
 * ratio .." (and "> tol .." when that one fails). `extra` (or NULL) is appended, extra_fail forces FAIL.
 * 0 = PASS, 1 = FAIL.
 */
int report_items(const char *kernel, const qerr *q, int n, int extra_fail, const char *extra) {
    int pass = !extra_fail;
    double tol[16];
    for (int i = 0; i < n && i < 16; i++) {
        tol[i] = 2.0 * q[i].err32 + 1e-6 + 2.0 * ulp_at(q[i].dt, q[i].max_ref);
        pass &= q[i].err <= tol[i];
    }
    printf("%s %-28s ", pass ? "PASS" : "FAIL", kernel);
    for (int i = 0; i < n && i < 16; i++) {
        if (i) printf("  | ");
        if (q[i].name) printf("%s ", q[i].name);
        printf("err %.2e  naive32 %.2e", q[i].err, q[i].err32);
        print_ratio(q[i].err, q[i].err32);
        if (i == 0) printf("  tol %.2e", tol[i]);
        else if (!(q[i].err <= tol[i])) printf("  > tol %.2e", tol[i]);
    }
    printf("%s\n", extra ? extra : "");
    return pass ? 0 : 1;
}

/* The verdict on O (and LSE) of a dense or decode problem: report_items. */
static int report(const problem *p, const char *kernel, const errors *e, int extra_fail, const char *extra) {
    qerr q[2];
    memset(q, 0, sizeof(q));
    q[0].err = e->err;
    q[0].err32 = e->err32;
    q[0].max_ref = e->max_ref;
    q[0].dt = p->dt_o;
    q[1].name = "lse";
    q[1].err = e->lerr;
    q[1].err32 = e->lerr32;
    q[1].dt = AK_F32;   /* no rounding term */
    return report_items(kernel, q, p->lse ? 2 : 1, extra_fail, extra);
}

/* Reference (f64 outputs) and naive fp32 results for the inputs; 0 = ok. */
static int reference_results(ak_ctx *ctx, const inputs *in, double *o_ref, double *l_ref, float *o32,
                             float *l32) {
    const problem *p = &in->p;
    ak_attn_desc d = in->desc;
    ak_attn_tensors t = in->t;
    d.dtype_o = AK_F64;
    t.o = ak_tensor_4d(o_ref, AK_F64, in->Bt, p->Hq, in->Tq, p->dv);
    if (p->lse) t.lse = ak_tensor_3d(l_ref, AK_F64, in->Bt, p->Hq, in->Tq);
    ak_status st = in->sp ? ak_attention_ref_sparse(ctx, &d, in->sp, &t) : ak_attention_ref(ctx, &d, &t);
    if (st != AK_OK) {
        printf("ERROR %s: %s\n", in->sp ? "ak_attention_ref_sparse" : "ak_attention_ref", error_text(ctx, st));
        return -1;
    }
    if (naive_f32(in, o32, l32) != 0) {
        printf("ERROR out of memory in the naive fp32 attention\n");
        return -1;
    }
    return 0;
}

/* Run the plan on the inputs; prints the error. 0 = ok. */
static int run_plan(ak_ctx *ctx, const options *o, inputs *in, ak_plan **plan_out) {
    ak_plan *plan = NULL;
    ak_status st = in->sp ? ak_plan_create_sparse(ctx, &in->desc, in->sp, &plan) : ak_plan_create(ctx, &in->desc, &plan);
    if (st == AK_OK && o->explain) printf("%s\n", ak_plan_explain(plan));
    if (st == AK_OK) st = ak_attention_run(plan, &in->t, NULL, 0);
    if (st != AK_OK) {
        printf("ERROR %s\n", error_text(ctx, st));
        ak_plan_destroy(plan);
        return -1;
    }
    *plan_out = plan;
    return 0;
}

/* Check one problem; prints one line. 0 = PASS, 1 = FAIL or error. */
static int check_one(ak_ctx *ctx, const options *o, const problem *p) {
    char name[512], err[512];
    problem_format(p, name, sizeof(name));
    printf("%-52s ", name);
    fflush(stdout);
    inputs in;
    if (inputs_create(p, o->seed, &in, err, sizeof(err)) != 0) { printf("ERROR %s\n", err); return 1; }
    if (p->sp.kind != SP_NONE && sp_build(ctx, p, &in.sp, err, sizeof(err)) != 0) {
        printf("ERROR %s\n", err);
        inputs_free(&in);
        return 1;
    }
    size_t n_o = in.o_bytes / ak_dtype_size(p->dt_o), n_l = in.lse_bytes / sizeof(float);
    double *o_ref = xalloc(n_o * sizeof(double)), *l_ref = xalloc(n_l * sizeof(double));
    float *o32 = xalloc(n_o * sizeof(float)), *l32 = xalloc(n_l * sizeof(float));
    ak_plan *plan = NULL;
    int rc = 1;
    if (!o_ref || !l_ref || !o32 || !l32) printf("ERROR out of memory\n");
    else if (run_plan(ctx, o, &in, &plan) == 0 && reference_results(ctx, &in, o_ref, l_ref, o32, l32) == 0) {
        errors e = compare(&in, o_ref, l_ref, o32, l32);
        char extra[128] = "";
        ak_sparse_stats sst;
        if (in.sp && ak_plan_sparse_stats(plan, &sst) == AK_OK)
            snprintf(extra, sizeof(extra), "  | sparse density %.4f", sst.density);
        rc = report(p, ak_plan_kernel_name(plan), &e, 0, extra);
    }
    ak_plan_destroy(plan);
    free(o_ref);
    free(l_ref);
    free(o32);
    free(l32);
    inputs_free(&in);
    return rc;
}

/* ---- decode problems ---- */

/* Reference work (multiply-adds) above which `check` compares a subset of (sequence, KV head) pairs. */
#define DECODE_REF_CAP (1L << 27)

/* Reference work of pair (b, hk): g x q rows against prefix + len_b keys of d + dv columns. */
static double pair_cost(const dinputs *in, int b) {
    const problem *p = &in->p;
    return (double)(p->Hq / p->Hkv) * p->Lq * (double)(p->prefix + dinputs_len(in, b)) * (p->d + p->dv);
}

/* The order in which `check` compares the n (sequence, head) pairs of a problem: 0, n - 1 (the last
 * sequence: the longest when ragged), then the others in a shuffle seeded by `seed`. */
void pair_order(int n, uint64_t seed, int *pairs) {
    for (int i = 0; i < n; i++) pairs[i] = i;
    if (n > 1) {
        pairs[1] = n - 1;
        pairs[n - 1] = 1;
    }
    uint64_t rng = seed ^ 0xC4EC5ull;
    for (int i = n - 1; i > 2; i--) {   /* shuffle pairs[2..n) */
        int j = 2 + (int)(rng_next(&rng) % (uint64_t)(i - 1));
        int t = pairs[i];
        pairs[i] = pairs[j];
        pairs[j] = t;
    }
}

/*
 * The (sequence, KV head) pairs to compare, in order: (0, 0), (B-1, Hkv-1), then the others in a
 * seeded shuffle; all of them with --full, else those that fit in DECODE_REF_CAP (the first always).
 * Returns the count; pairs[i] = b * Hkv + hk.
 */
static int pick_pairs(const dinputs *in, const options *o, int *pairs) {
    const problem *p = &in->p;
    int n = p->B * p->Hkv, m = 0;
    pair_order(n, o->seed, pairs);
    double used = 0.0;
    for (int i = 0; i < n; i++) {
        double c = pair_cost(in, pairs[i] / p->Hkv);
        if (!o->full_check && m > 0 && used + c > (double)DECODE_REF_CAP) continue;
        used += c;
        pairs[m++] = pairs[i];
    }
    return m;
}

/* Reference and naive fp32 for pair (b, hk), folded into e. 0 = ok (else the error is printed). */
static int check_pair(ak_ctx *ctx, const dinputs *in, int b, int hk, errors *e) {
    const problem *p = &in->p;
    int g = p->Hq / p->Hkv, rc = -1;
    int64_t lk = p->prefix + dinputs_len(in, b);
    size_t rows = (size_t)g * (size_t)p->Lq;
    double *o_ref = xalloc(rows * (size_t)p->dv * sizeof(double)), *l_ref = xalloc(rows * sizeof(double));
    float *o32 = xalloc(rows * (size_t)p->dv * sizeof(float)), *l32 = xalloc(rows * sizeof(float));
    float *kf = xalloc((size_t)lk * (size_t)p->d * sizeof(float)), *vf = xalloc((size_t)lk * (size_t)p->dv * sizeof(float));
    dsub *s = malloc(sizeof(dsub));
    if (!o_ref || !l_ref || !o32 || !l32 || !kf || !vf || !s) {
        printf("ERROR out of memory\n");
        goto done;
    }
    dinputs_sub(in, b, hk, o_ref, l_ref, s);
    ak_status st = ak_decode_ref(ctx, &s->desc, &s->t);
    if (st != AK_OK) {
        printf("ERROR ak_decode_ref (sequence %d, KV head %d): %s\n", b, hk, error_text(ctx, st));
        goto done;
    }
    /* the naive baseline: this pair's keys gathered to a dense batch-1, one-KV-head problem */
    dinputs_gather(in, b, hk, 0, kf);
    dinputs_gather(in, b, hk, 1, vf);
    inputs nin;
    memset(&nin, 0, sizeof(nin));
    nin.p = *p;
    nin.p.decode = 0;
    nin.p.B = 1;
    nin.p.Hq = g;
    nin.p.Hkv = 1;
    nin.p.Lk = (int)lk;
    nin.Bt = 1;
    nin.Tq = p->Lq;
    nin.Tk = lk;
    nin.t.q = s->t.q;
    nin.t.k = ak_tensor_4d(kf, AK_F32, 1, 1, lk, p->d);
    nin.t.v = ak_tensor_4d(vf, AK_F32, 1, 1, lk, p->dv);
    nin.slopes = (float *)in->slopes + (int64_t)hk * g;
    nin.sinks = (float *)in->sinks + (int64_t)hk * g;
    if (naive_f32(&nin, o32, l32) != 0) {
        printf("ERROR out of memory in the naive fp32 attention\n");
        goto done;
    }
    for (int hh = 0; hh < g; hh++)
        for (int64_t i = 0; i < p->Lq; i++) {
            size_t r = (size_t)hh * (size_t)p->Lq + (size_t)i;
            int64_t h = (int64_t)hk * g + hh;
            for (int64_t c = 0; c < p->dv; c++)
                add_o(e, tensor_get(&in->t.o, b, h, i, c), o_ref[r * p->dv + c], o32[r * p->dv + c]);
            if (p->lse) add_lse(e, ((const float *)in->lse)[((size_t)b * p->Hq + h) * p->Lq + i], l_ref[r], l32[r]);
        }
    rc = 0;
done:
    free(o_ref);
    free(l_ref);
    free(o32);
    free(l32);
    free(kf);
    free(vf);
    free(s);
    return rc;
}

/* NaN elements left in O (and LSE): outputs the run did not write. */
static size_t count_nan(const dinputs *in) {
    const problem *p = &in->p;
    size_t n = 0, no = in->o_bytes / ak_dtype_size(p->dt_o);
    for (size_t i = 0; i < no; i++) {
        double x = p->dt_o == AK_F32 ? ((const float *)in->o)[i]
                 : p->dt_o == AK_BF16 ? ak_bf16_to_f32(((const uint16_t *)in->o)[i])
                                      : ak_f16_to_f32(((const uint16_t *)in->o)[i]);
        n += isnan(x) != 0;
    }
    for (size_t i = 0; p->lse && i < in->lse_bytes / sizeof(float); i++) n += isnan(((const float *)in->lse)[i]) != 0;
    return n;
}

/* Check one decode problem: ak_decode_run on the whole batch, reference and naive on chosen pairs. */
static int check_decode_one(ak_ctx *ctx, const options *o, const problem *p) {
    char name[512], err[256], extra[160];
    problem_format(p, name, sizeof(name));
    printf("%-52s ", name);
    fflush(stdout);
    dinputs in;
    if (dinputs_create(ctx, p, o->seed, &in, err, sizeof(err)) != 0) { printf("ERROR %s\n", err); return 1; }
    if (o->explain) printf("\n%s", ak_plan_explain(in.plan));
    int rc = 1, n_pairs = p->B * p->Hkv;
    int *pairs = malloc(sizeof(int) * (size_t)n_pairs);
    ak_status st = pairs ? ak_decode_run(in.plan, &in.t, NULL, 0) : AK_ERR_OUT_OF_MEMORY;
    if (st != AK_OK) {
        printf("ERROR %s\n", error_text(ctx, st));
    } else {
        errors e = {0, 0, 0, 0, 0};
        int m = pick_pairs(&in, o, pairs), ok = 1;
        for (int i = 0; i < m && ok; i++) ok = check_pair(ctx, &in, pairs[i] / p->Hkv, pairs[i] % p->Hkv, &e) == 0;
        if (ok) {
            size_t nan = count_nan(&in);
            size_t n = 0;
            extra[0] = '\0';
            if (m < n_pairs)
                n += (size_t)snprintf(extra + n, sizeof(extra) - n, "  | %d of %d (seq, kv head) pairs (--full: all)",
                                      m, n_pairs);
            if (nan) snprintf(extra + n, sizeof(extra) - n, "  | %zu outputs NaN (unwritten)", nan);
            rc = report(p, ak_plan_kernel_name(in.plan), &e, nan != 0, extra);
        }
    }
    free(pairs);
    dinputs_free(&in);
    return rc;
}

int mode_check(const options *o, char **specs, int n_specs) {
    problem *probs = NULL;
    int n = 0, failed = 0;
    if (problems_from_args(specs, n_specs, &probs, &n) != 0) return 2;
    ak_ctx *ctx = NULL;
    if (ctx_from_options(o, 0, &ctx) != 0) { free(probs); return 1; }
    printf("attnkit check: isa %s, %d threads, seed %llu; PASS iff err <= 2*naive32 + 1e-6 "
           "(+ 2 ulp of max|O| for bf16/f16 O)\n", ak_isa_name(ak_ctx_get_isa(ctx)),
           ak_ctx_get_num_threads(ctx), (unsigned long long)o->seed);
    for (int i = 0; i < n; i++)
        failed += probs[i].linear ? linear_check_one(ctx, o, &probs[i])
                : probs[i].decode ? check_decode_one(ctx, o, &probs[i]) : check_one(ctx, o, &probs[i]);
    printf("check: %d passed, %d failed\n", n - failed, failed);
    ak_ctx_destroy(ctx);
    free(probs);
    return failed ? 1 : 0;
}

/* Run a fresh plan of ctx on the inputs (outputs NaN-poisoned first); copy O and LSE out. */
static int run_copy(ak_ctx *ctx, const options *o, inputs *in, unsigned char *o_out,
                    unsigned char *l_out, char *kernel, size_t klen) {
    ak_plan *plan = NULL;
    memset(in->o, 0xff, in->o_bytes);
    memset(in->lse, 0xff, in->lse_bytes);
    if (run_plan(ctx, o, in, &plan) != 0) return -1;
    snprintf(kernel, klen, "%s", ak_plan_kernel_name(plan));
    memcpy(o_out, in->o, in->o_bytes);
    memcpy(l_out, in->lse, in->lse_bytes);
    ak_plan_destroy(plan);
    return 0;
}

/* Differing bytes of two buffers; *first = offset of the first (or -1). */
size_t count_diff(const unsigned char *a, const unsigned char *b, size_t n, long long *first) {
    size_t d = 0;
    *first = -1;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            if (*first < 0) *first = (long long)i;
            d++;
        }
    return d;
}

/* Compare two results; prints what differs. 0 = identical. */
static int same_bits(const char *what, size_t o_bytes, size_t lse_bytes, ak_dtype dt_o, const unsigned char *oa,
                     const unsigned char *la, const unsigned char *ob, const unsigned char *lb) {
    long long f1, f2;
    size_t d1 = count_diff(oa, ob, o_bytes, &f1), d2 = count_diff(la, lb, lse_bytes, &f2);
    if (d1 == 0 && d2 == 0) return 0;
    printf("\n      %s: O differs in %zu bytes (first at element %lld of the buffer)", what, d1,
           f1 < 0 ? -1 : f1 / (long long)ak_dtype_size(dt_o));
    if (d2) printf(", LSE in %zu bytes (first at element %lld)", d2, f2 / 4);
    return 1;
}

/* Run a decode plan (fresh = 0: the inputs' own, made on ctx; 1: a new one on ctx) with poisoned
 * outputs; copy O and LSE out. Prints the error. 0 = ok. */
static int run_copy_decode(ak_ctx *ctx, int fresh, const options *o, dinputs *in, unsigned char *o_out,
                           unsigned char *l_out, char *kernel, size_t klen) {
    ak_plan *plan = in->plan;
    ak_status st = AK_OK;
    if (fresh) st = ak_decode_plan_create(ctx, &in->desc, &plan);
    if (st == AK_OK && fresh && o->explain) printf("%s", ak_plan_explain(plan));
    dinputs_poison(in);
    if (st == AK_OK) st = ak_decode_run(plan, &in->t, NULL, 0);
    if (st == AK_OK) {
        snprintf(kernel, klen, "%s", ak_plan_kernel_name(plan));
        memcpy(o_out, in->o, in->o_bytes);
        memcpy(l_out, in->lse, in->lse_bytes);
    } else {
        printf("ERROR %s\n", error_text(ctx, st));
    }
    if (fresh) ak_plan_destroy(plan);
    return st == AK_OK ? 0 : -1;
}

/* Bitwise check of one problem on ctx_n (N threads) and ctx_1 (1 or 2 threads). */
static int bitwise_one(ak_ctx *ctx_n, ak_ctx *ctx_1, const options *o, const problem *p) {
    char name[512], err[512], kernel[128];
    problem_format(p, name, sizeof(name));
    printf("%-52s ", name);
    fflush(stdout);
    inputs in;
    dinputs din;
    memset(&in, 0, sizeof(in));
    if (p->decode) {
        if (dinputs_create(ctx_n, p, o->seed, &din, err, sizeof(err)) != 0) { printf("ERROR %s\n", err); return 1; }
        if (o->explain) printf("\n%s", ak_plan_explain(din.plan));
        in.o_bytes = din.o_bytes;
        in.lse_bytes = din.lse_bytes;
    } else if (inputs_create(p, o->seed, &in, err, sizeof(err)) != 0) {
        printf("ERROR %s\n", err);
        return 1;
    } else if (p->sp.kind != SP_NONE && sp_build(ctx_n, p, &in.sp, err, sizeof(err)) != 0) {
        printf("ERROR %s\n", err);
        inputs_free(&in);
        return 1;
    }
    unsigned char *oa = xalloc(in.o_bytes), *ob = xalloc(in.o_bytes), *oc = xalloc(in.o_bytes);
    unsigned char *la = xalloc(in.lse_bytes), *lb = xalloc(in.lse_bytes), *lc = xalloc(in.lse_bytes);
    int rc = 1, ran;
    if (!oa || !ob || !oc || !la || !lb || !lc) {
        printf("ERROR out of memory\n");
        ran = 0;
    } else if (p->decode) {
        ran = run_copy_decode(ctx_n, 0, o, &din, oa, la, kernel, sizeof(kernel)) == 0 &&
              run_copy_decode(ctx_n, 0, o, &din, ob, lb, kernel, sizeof(kernel)) == 0 &&
              run_copy_decode(ctx_1, 1, o, &din, oc, lc, kernel, sizeof(kernel)) == 0;
    } else {
        ran = run_copy(ctx_n, o, &in, oa, la, kernel, sizeof(kernel)) == 0 &&
              run_copy(ctx_n, o, &in, ob, lb, kernel, sizeof(kernel)) == 0 &&
              run_copy(ctx_1, o, &in, oc, lc, kernel, sizeof(kernel)) == 0;
    }
    if (ran) {
        char what[64];
        printf("%-28s", kernel);
        snprintf(what, sizeof(what), "run 1 vs run 2 (%d threads)", ak_ctx_get_num_threads(ctx_n));
        int d = same_bits(what, in.o_bytes, in.lse_bytes, p->dt_o, oa, la, ob, lb);
        snprintf(what, sizeof(what), "%d vs %d threads", ak_ctx_get_num_threads(ctx_n), ak_ctx_get_num_threads(ctx_1));
        d |= same_bits(what, in.o_bytes, in.lse_bytes, p->dt_o, oa, la, oc, lc);
        printf("%s%s (2 runs x %d threads, 1 run x %d)\n", d ? "\n      " : " ", d ? "DIFFER" : "IDENTICAL",
               ak_ctx_get_num_threads(ctx_n), ak_ctx_get_num_threads(ctx_1));
        rc = d;
    }
    free(oa); free(ob); free(oc);
    free(la); free(lb); free(lc);
    if (p->decode) dinputs_free(&din);
    else inputs_free(&in);
    return rc;
}

int mode_bitwise(const options *o, char **specs, int n_specs) {
    problem *probs = NULL;
    int n = 0, failed = 0;
    if (problems_from_args(specs, n_specs, &probs, &n) != 0) return 2;
    ak_ctx *ctx_n = NULL, *ctx_1 = NULL;
    if (ctx_from_options(o, 0, &ctx_n) != 0) { free(probs); return 1; }
    int other = ak_ctx_get_num_threads(ctx_n) == 1 ? 2 : 1;
    if (ctx_from_options(o, other, &ctx_1) != 0) { ak_ctx_destroy(ctx_n); free(probs); return 1; }
    printf("attnkit bitwise: isa %s, seed %llu\n", ak_isa_name(ak_ctx_get_isa(ctx_n)), (unsigned long long)o->seed);
    for (int i = 0; i < n; i++)
        failed += probs[i].linear ? linear_bitwise_one(ctx_n, ctx_1, o, &probs[i]) : bitwise_one(ctx_n, ctx_1, o, &probs[i]);
    printf("bitwise: %d passed, %d failed\n", n - failed, failed);
    ak_ctx_destroy(ctx_1);
    ak_ctx_destroy(ctx_n);
    free(probs);
    return failed ? 1 : 0;
}
