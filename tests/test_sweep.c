/*
 * test_sweep.c — random differential sweep of ak_attention against the double oracle.
 *
 * ACCURACY CONTRACT (also in tests/README.md). For every case and every output tensor:
 *   err(x)  = max_abs(x - O_ref64)      O_ref64 = ak_attention_ref() writing AK_F64, on the very
 *                                        same (half-rounded, if bf16/f16) input tensors
 *   pass iff err(opt) <= 2 * err(naive32) + floor
 *     naive32   = naive_attention32 (naive32.h): float accumulation in index order; for bf16/f16
 *                 inputs S and P rounded to the input dtype as PyTorch's math SDPA does
 *     floor(O)  = 1e-6 * max(1, max|O_ref|)                for an f32 output
 *               = 2 ulp of the output dtype at max|O_ref|   for a bf16/f16 output
 *     floor(LSE)= 1e-5 * max(1, max|LSE_ref|)
 *   exact: LSE = -inf iff LSE_ref = -inf; fully-masked rows and ragged padding rows have O == 0
 *   (LSE -inf); no NaN/inf in O (outputs are NaN-poisoned before each run, so an unwritten element
 *   fails); nothing outside the output views is written; n_threads 1 and 2 give identical bytes.
 * The oracle itself must agree with the independent naive_attention64 (1e-6 relative).
 *
 * Environment:
 *   AK_SWEEP_N      number of cases (default: argv[1], else 300)
 *   AK_SWEEP_FIRST  first case index (default 0); case i uses seed i
 *   AK_SWEEP_VERBOSE=1  print every case
 *   AK_MAX_ISA      scalar|avx2|avx512|avx512bf16: the ISA the library must use (honoured by
 *                   ak_ctx_create); exit 77 (skip) if this CPU lacks it
 *   AK_FORCE_REF=1  the library routes ak_attention through its reference
 * Reproduce case i:  AK_SWEEP_FIRST=i AK_SWEEP_N=1 AK_SWEEP_VERBOSE=1 AK_MAX_ISA=... ./test_sweep
 * Coverage of the first N cases (nothing run):  ./test_sweep --stats N
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "harness.h"
#include "naive32.h"

#define MAXB_RAGGED 5

static const int D_LIST[] = {1, 3, 40, 59, 64, 80, 96, 111, 128, 160, 256, 512};
static const int L_LIST[] = {1, 2, 17, 113, 203, 1023};
static const int L_WEIGHT[] = {15, 15, 25, 20, 15, 10}; /* percent */
static const int G_LIST[] = {1, 1, 2, 3, 4, 5, 6, 7, 8, 16};
static const int WL_LIST[] = {-1, 0, 1, 5, 16, 100, 5000};
static const int WR_LIST[] = {-1, 0, 3, 50, 5000};
static const float CAP_LIST[] = {5.0f, 30.0f, 50.0f};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Cost cap: B * Hq * Lq * Lk * (d + dv) for one case (keeps the whole sweep within minutes). */
#define WORK_CAP 4.0e7

static int draw_len(rng *r) {
    int x = rng_int(r, 100), acc = 0;
    for (int i = 0; i < COUNT(L_LIST); i++) {
        acc += L_WEIGHT[i];
        if (x < acc)
            return L_LIST[i];
    }
    return L_LIST[0];
}

static ak_dtype draw_dtype(rng *r) {
    static const ak_dtype dts[] = {AK_F32, AK_BF16, AK_F16};
    return dts[rng_int(r, 3)];
}

static tlayout draw_layout(rng *r, int is_input) {
    int x = rng_int(r, 100);
    if (x < 35) return LAY_CONTIG;
    if (x < 55) return LAY_BSHD;
    if (x < 75) return LAY_PADDED;
    if (x < 92 || !is_input) return LAY_PERMUTED;
    return LAY_BCAST0;
}

/* The case's random problem: descriptor, ragged metadata and tensor layouts. */
typedef struct sweep_case {
    ak_attn_desc d;
    int32_t cu_q[MAXB_RAGGED + 1], cu_k[MAXB_RAGGED + 1], used[MAXB_RAGGED];
    int64_t total_q, total_k;
    problem_opts po;
} sweep_case;

static double case_work(const ak_attn_desc *d, double lq, double lk) {
    int dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    return (double)d->batch * d->num_heads_q * lq * lk * (double)(d->head_dim + dv);
}

/* Shrink the problem until it fits WORK_CAP: batch, then heads, then head dims, then lengths. */
static void fit_budget(ak_attn_desc *d, rng *r) {
    while (case_work(d, d->seqlen_q, d->seqlen_k) > WORK_CAP) {
        if (d->batch > 1)
            d->batch = 1;
        else if (d->num_heads_q > d->num_heads_kv && d->num_heads_q > 2)
            d->num_heads_q = d->num_heads_kv * (d->num_heads_q / d->num_heads_kv > 2 ? 2 : 1);
        else if (d->num_heads_kv > 1)
            d->num_heads_q = d->num_heads_q / d->num_heads_kv, d->num_heads_kv = 1;
        else if (d->head_dim > 128 || d->head_dim_v > 128)
            d->head_dim = rng_pick(r, D_LIST, 7), d->head_dim_v = 0;
        else if (d->seqlen_q >= d->seqlen_k && d->seqlen_q > 17)
            d->seqlen_q = d->seqlen_q == 1023 ? 203 : 17;
        else if (d->seqlen_k > 17)
            d->seqlen_k = d->seqlen_k == 1023 ? 203 : 17;
        else
            break;
    }
}

/* Ragged variant: B sequences with lengths from the list (incl. empty), padding rows after. */
static void draw_ragged(sweep_case *c, rng *r) {
    ak_attn_desc *d = &c->d;
    static const int RL[] = {0, 1, 2, 17, 113, 203};
    d->batch = 1 + rng_int(r, MAXB_RAGGED);
    int maxq = 0, maxk = 0, use_used = rng_chance(r, 0.35);
    c->cu_q[0] = c->cu_k[0] = 0;
    for (int b = 0; b < d->batch; b++) {
        int lq = rng_pick(r, RL, COUNT(RL)), lk = rng_pick(r, RL, COUNT(RL));
        if (rng_chance(r, 0.3))
            lk = lq; /* self-attention-like */
        while (case_work(d, lq, lk) > WORK_CAP / MAXB_RAGGED && (lq > 17 || lk > 17))
            lq = lq > 17 ? 17 : lq, lk = lk > 17 ? 17 : lk;
        c->cu_q[b + 1] = c->cu_q[b] + lq;
        c->cu_k[b + 1] = c->cu_k[b] + lk;
        c->used[b] = use_used ? rng_int(r, lk + 1) : lk;
        maxq = lq > maxq ? lq : maxq;
        maxk = lk > maxk ? lk : maxk;
    }
    c->total_q = c->cu_q[d->batch] + (rng_chance(r, 0.5) ? rng_int(r, 4) : 0);
    c->total_k = c->cu_k[d->batch] + (rng_chance(r, 0.5) ? rng_int(r, 4) : 0);
    d->cu_seqlens_q = c->cu_q;
    d->cu_seqlens_k = c->cu_k;
    d->seqused_k = use_used ? c->used : NULL;
    int bound = rng_int(r, 3); /* 0 = derive, 1 = exact max, 2 = a larger upper bound */
    d->seqlen_q = bound == 0 ? 0 : maxq + (bound == 2 ? 7 : 0);
    d->seqlen_k = bound == 0 ? 0 : maxk + (bound == 2 ? 7 : 0);
}

static void draw_case(long idx, sweep_case *c) {
    rng r = rng_seed((uint64_t)idx);
    ak_attn_desc *d = &c->d;
    memset(c, 0, sizeof *c);
    ak_attn_desc_init(d);
    d->num_heads_kv = 1 + rng_int(&r, 3);
    d->num_heads_q = d->num_heads_kv * rng_pick(&r, G_LIST, COUNT(G_LIST));
    d->head_dim = rng_pick(&r, D_LIST, COUNT(D_LIST));
    d->head_dim_v = rng_chance(&r, 0.25) ? rng_pick(&r, D_LIST, COUNT(D_LIST)) : 0;
    int mix = rng_int(&r, 100); /* 40% f32, 20% bf16, 15% f16, 25% mixed */
    ak_dtype one = mix < 40 ? AK_F32 : mix < 60 ? AK_BF16 : AK_F16;
    d->dtype_q = d->dtype_kv = d->dtype_o = one;
    if (mix >= 75)
        d->dtype_q = draw_dtype(&r), d->dtype_kv = draw_dtype(&r), d->dtype_o = draw_dtype(&r);
    if (rng_chance(&r, 0.15))
        d->scale = (float)rng_range(&r, 0.05, 1.5);
    d->causal = rng_chance(&r, 0.5);
    if (rng_chance(&r, 0.3)) {
        d->window_left = rng_pick(&r, WL_LIST, COUNT(WL_LIST));
        d->window_right = rng_pick(&r, WR_LIST, COUNT(WR_LIST));
    }
    if (rng_chance(&r, 0.2))
        d->softcap = CAP_LIST[rng_int(&r, COUNT(CAP_LIST))];
    d->has_alibi = rng_chance(&r, 0.2);
    d->has_sinks = rng_chance(&r, 0.2);
    d->return_lse = rng_chance(&r, 0.7);
    problem_opts_default(&c->po);
    c->po.alibi_2d = rng_chance(&r, 0.5);
    c->po.amp_qk = rng_chance(&r, 0.3) ? 3.0 : 1.0;
    c->po.lay_q = draw_layout(&r, 1), c->po.lay_k = draw_layout(&r, 1);
    c->po.lay_v = draw_layout(&r, 1), c->po.lay_o = draw_layout(&r, 0);
    c->po.lay_lse = rng_chance(&r, 0.5) ? LAY_CONTIG : LAY_PERMUTED;
    c->po.lay_alibi = c->po.lay_sinks = rng_chance(&r, 0.7) ? LAY_CONTIG : LAY_PADDED;
    if (rng_chance(&r, 0.3)) {
        if (c->po.lay_q == LAY_BCAST0) /* the packed tensors have B = 1: broadcast means nothing */
            c->po.lay_q = LAY_PADDED;
        draw_ragged(c, &r);
    } else {
        d->batch = 1 + rng_int(&r, 3);
        d->seqlen_q = draw_len(&r);
        d->seqlen_k = rng_chance(&r, 0.3) ? d->seqlen_q : draw_len(&r);
        fit_budget(d, &r);
    }
}

/* Parse AK_MAX_ISA the way the header names the levels; -1 if unset, -2 if unknown. */
static int requested_isa(void) {
    const char *s = getenv("AK_MAX_ISA");
    if (!s || !*s)
        return -1;
    for (int i = AK_ISA_SCALAR; i <= AK_ISA_AVX512BF16; i++)
        if (strcmp(s, ak_isa_name((ak_isa)i)) == 0)
            return i;
    return -2;
}

/* A kernel name must not mention an ISA above the cap ("avx2" < "avx512" < "avx512bf16"). */
static int kernel_name_within_cap(const char *name, ak_isa cap) {
    if (!name)
        return 0;
    if (cap == AK_ISA_SCALAR)
        return strstr(name, "avx") == NULL;
    if (cap == AK_ISA_AVX2)
        return strstr(name, "avx512") == NULL;
    if (cap == AK_ISA_AVX512) /* the emulated bf16-dot kernel (AK_EMULATE_BF16DOT=1) is plain AVX-512 */
        return strstr(name, "avx512bf16") == NULL || strstr(name, "avx512bf16emu") != NULL;
    return 1;
}

typedef struct sweep_ctx {
    ak_ctx *c1, *c2; /* n_threads 1 and 2 */
    ak_isa isa;
    int verbose;
    char kernels[16][96]; /* distinct kernel names seen */
    int n_kernels;
} sweep_ctx;

static void note_kernel(sweep_ctx *s, const char *name) {
    for (int i = 0; i < s->n_kernels; i++)
        if (strcmp(s->kernels[i], name) == 0)
            return;
    if (s->n_kernels < 16)
        snprintf(s->kernels[s->n_kernels++], sizeof s->kernels[0], "%s", name);
}

/* Run one case; returns 1 if it passed. */
static int run_case(sweep_ctx *s, long idx) {
    sweep_case c;
    problem p;
    naive_out n32, n64, ref;
    tbuf o2, lse2;
    char msg[512] = "", repro[1024];
    int ok = 1;
    draw_case(idx, &c);
    rng r = rng_seed((uint64_t)idx ^ 0xA5A5A5A5ull);
    if (problem_create(&p, &c.d, c.total_q, c.total_k, &c.po, &r)) {
        fprintf(stderr, "case %ld: test out of memory\n", idx);
        return 0;
    }
    problem_repro(&p, repro, sizeof repro);
    if (s->verbose)
        printf("case %ld: %s\n", idx, repro);
    ak_attn_tensors t = problem_tensors(&p, &p.o, p.d.return_lse ? &p.lse : NULL);
    memset(&o2, 0, sizeof o2), memset(&lse2, 0, sizeof lse2);
    if (naive_alloc(&n32, &p.d, &t) || naive_alloc(&n64, &p.d, &t) || naive_alloc(&ref, &p.d, &t) ||
        tbuf_make_like(&o2, &p.o) || (p.d.return_lse && tbuf_make_like(&lse2, &p.lse))) {
        snprintf(msg, sizeof msg, "test out of memory");
        ok = 0;
        goto done;
    }
    naive_attention32(&p.d, &t, &n32);
    naive_attention64(&p.d, &t, &n64);
    ak_status st = run_ref64(s->c1, &p, &ref, &n64);
    if (st != AK_OK) {
        snprintf(msg, sizeof msg, "ak_attention_ref: %s (%s)", ak_status_string(st),
                 ak_ctx_last_error(s->c1));
        ok = 0;
        goto done;
    }
    if (!check_oracle(&ref, &n64, msg, sizeof msg)) {
        ok = 0;
        goto done;
    }
    /* run 1: one-shot ak_attention with 1 thread */
    st = ak_attention(s->c1, &p.d, &t);
    if (st != AK_OK) {
        snprintf(msg, sizeof msg, "ak_attention: %s (%s)", ak_status_string(st),
                 ak_ctx_last_error(s->c1));
        ok = 0;
        goto done;
    }
    if (!check_rule(&p, &p.o, p.d.return_lse ? &p.lse : NULL, &ref, &n32, msg, sizeof msg)) {
        ok = 0;
        goto done;
    }
    if (s->verbose)
        printf("  %s\n", msg);
    /* run 2: plan + run with 2 threads; must be bitwise identical to run 1 */
    ak_plan *plan = NULL;
    st = ak_plan_create(s->c2, &p.d, &plan);
    if (st == AK_OK) {
        ak_attn_tensors t2 = problem_tensors(&p, &o2, p.d.return_lse ? &lse2 : NULL);
        const char *kn = ak_plan_kernel_name(plan);
        note_kernel(s, kn ? kn : "(null)");
        if (!kernel_name_within_cap(kn, s->isa)) {
            snprintf(msg, sizeof msg, "kernel %s is above the ISA cap %s", kn ? kn : "(null)",
                     ak_isa_name(s->isa));
            ok = 0;
        }
        st = ak_attention_run(plan, &t2, NULL, 0);
        ak_plan_destroy(plan);
    }
    if (ok && st != AK_OK) {
        snprintf(msg, sizeof msg, "n_threads=2 plan/run: %s (%s)", ak_status_string(st),
                 ak_ctx_last_error(s->c2));
        ok = 0;
    }
    if (ok && (!tbuf_same_bytes(&p.o, &o2) || (p.d.return_lse && !tbuf_same_bytes(&p.lse, &lse2)))) {
        snprintf(msg, sizeof msg, "n_threads 1 and 2 give different bytes (%s differs)",
                 tbuf_same_bytes(&p.o, &o2) ? "LSE" : "O");
        ok = 0;
    }
done:
    if (!ok)
        fprintf(stderr,
                "FAIL case %ld (seed %ld): %s\n  %s\n  rerun: AK_SWEEP_FIRST=%ld AK_SWEEP_N=1 "
                "AK_SWEEP_VERBOSE=1 AK_MAX_ISA=%s AK_FORCE_REF=%s ./test_sweep\n",
                idx, idx, msg, repro, idx, ak_isa_name(s->isa),
                getenv("AK_FORCE_REF") ? getenv("AK_FORCE_REF") : "0");
    naive_free(&n32), naive_free(&n64), naive_free(&ref);
    tbuf_free(&o2), tbuf_free(&lse2);
    problem_destroy(&p);
    return ok;
}

/* `test_sweep --stats [N]`: how often each feature occurs in cases 0..N-1 (nothing is run). */
static int print_stats(long n) {
    long c_ragged = 0, c_used = 0, c_empty = 0, c_pad = 0, c_causal = 0, c_qgtk = 0, c_win = 0, c_cap = 0;
    long c_alibi = 0, c_alibi2 = 0, c_sinks = 0, c_lse = 0, c_mixed = 0, c_dv = 0, c_scale = 0, c_1023 = 0;
    long c_d[COUNT(D_LIST)] = {0}, c_g[17] = {0}, c_dt[3][3] = {{0}}, c_lay[LAY_COUNT] = {0};
    for (long i = 0; i < n; i++) {
        sweep_case c;
        draw_case(i, &c);
        const ak_attn_desc *d = &c.d;
        int dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
        c_ragged += d->cu_seqlens_q != NULL, c_used += d->seqused_k != NULL;
        c_causal += d->causal, c_win += d->window_left >= 0 || d->window_right >= 0;
        c_cap += d->softcap > 0, c_alibi += d->has_alibi, c_alibi2 += d->has_alibi && c.po.alibi_2d;
        c_sinks += d->has_sinks, c_lse += d->return_lse, c_dv += dv != d->head_dim, c_scale += !isnan(d->scale);
        c_mixed += d->dtype_q != d->dtype_kv || d->dtype_kv != d->dtype_o;
        c_dt[0][d->dtype_q]++, c_dt[1][d->dtype_kv]++, c_dt[2][d->dtype_o]++;
        c_g[d->num_heads_q / d->num_heads_kv]++;
        c_lay[c.po.lay_q]++, c_lay[c.po.lay_k]++, c_lay[c.po.lay_v]++, c_lay[c.po.lay_o]++;
        for (int k = 0; k < COUNT(D_LIST); k++)
            c_d[k] += d->head_dim == D_LIST[k];
        if (d->cu_seqlens_q) {
            int empty = 0;
            for (int b = 0; b < d->batch; b++)
                empty |= c.cu_q[b + 1] == c.cu_q[b] || c.cu_k[b + 1] == c.cu_k[b];
            c_empty += empty, c_pad += c.total_q > c.cu_q[d->batch];
        } else {
            c_qgtk += d->causal && d->seqlen_q > d->seqlen_k;
            c_1023 += d->seqlen_q == 1023 || d->seqlen_k == 1023;
        }
    }
    printf("cases %ld: ragged %ld (seqused_k %ld, empty sequence %ld, padding rows %ld), causal %ld "
           "(dense Lq > Lk %ld), window %ld, softcap %ld, alibi %ld ([B][Hq] %ld), sinks %ld, lse %ld, "
           "dv != d %ld, scale %ld, mixed dtypes %ld, L = 1023 %ld\n",
           n, c_ragged, c_used, c_empty, c_pad, c_causal, c_qgtk, c_win, c_cap, c_alibi, c_alibi2, c_sinks,
           c_lse, c_dv, c_scale, c_mixed, c_1023);
    printf("head_dim:");
    for (int k = 0; k < COUNT(D_LIST); k++)
        printf(" %d:%ld", D_LIST[k], c_d[k]);
    printf("\ngroup size:");
    for (int g = 1; g <= 16; g++)
        if (c_g[g])
            printf(" %d:%ld", g, c_g[g]);
    printf("\ndtypes (f32/bf16/f16): q %ld/%ld/%ld kv %ld/%ld/%ld o %ld/%ld/%ld\nlayouts (q,k,v,o):", c_dt[0][0],
           c_dt[0][1], c_dt[0][2], c_dt[1][0], c_dt[1][1], c_dt[1][2], c_dt[2][0], c_dt[2][1], c_dt[2][2]);
    for (int l = 0; l < LAY_COUNT; l++)
        printf(" %s:%ld", tlayout_name((tlayout)l), c_lay[l]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--stats") == 0)
        return print_stats(argc > 2 ? strtol(argv[2], NULL, 10) : 300);
    long n = tu_env_long("AK_SWEEP_N", argc > 1 ? strtol(argv[1], NULL, 10) : 300);
    long first = tu_env_long("AK_SWEEP_FIRST", 0);
    int want = requested_isa();
    sweep_ctx s;
    memset(&s, 0, sizeof s);
    s.verbose = (int)tu_env_long("AK_SWEEP_VERBOSE", 0);
    if (want == -2) {
        fprintf(stderr, "test_sweep: unknown AK_MAX_ISA=%s\n", getenv("AK_MAX_ISA"));
        return 1;
    }
    if (want >= 0 && (int)ak_isa_detect() < want) {
        printf("test_sweep: SKIP: AK_MAX_ISA=%s but this CPU/OS supports only %s\n",
               getenv("AK_MAX_ISA"), ak_isa_name(ak_isa_detect()));
        return 77;
    }
    if (ak_ctx_create(&s.c1) != AK_OK || ak_ctx_create(&s.c2) != AK_OK ||
        ak_ctx_set_num_threads(s.c1, 1) != AK_OK || ak_ctx_set_num_threads(s.c2, 2) != AK_OK) {
        fprintf(stderr, "test_sweep: context setup failed\n");
        ak_ctx_destroy(s.c1), ak_ctx_destroy(s.c2);
        return 1;
    }
    s.isa = ak_ctx_get_isa(s.c1);
    if (want >= 0 && ((int)s.isa != want || (int)ak_ctx_get_isa(s.c2) != want)) {
        fprintf(stderr, "test_sweep: FAIL: AK_MAX_ISA=%s but the context uses %s\n",
                getenv("AK_MAX_ISA"), ak_isa_name(s.isa));
        ak_ctx_destroy(s.c1), ak_ctx_destroy(s.c2);
        return 1;
    }
    double t0 = tu_now();
    long failed = 0;
    for (long i = first; i < first + n; i++)
        failed += !run_case(&s, i);
    printf("test_sweep: isa %s (detected %s)%s, cases %ld..%ld: %ld failed, %.1f s\n",
           ak_isa_name(s.isa), ak_isa_name(ak_isa_detect()),
           getenv("AK_FORCE_REF") ? ", AK_FORCE_REF" : "", first, first + n - 1, failed,
           tu_now() - t0);
    printf("kernels used:");
    for (int i = 0; i < s.n_kernels; i++)
        printf(" %s", s.kernels[i]);
    printf("\n");
    ak_ctx_destroy(s.c1), ak_ctx_destroy(s.c2);
    return failed ? 1 : 0;
}
