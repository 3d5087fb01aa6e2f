/*
 * test_oracle.c — hand-made problems whose answers are known in closed form, so that the oracle
 * (ak_attention_ref), the optimised path (ak_attention) and the test's own references
 * (naive_attention32/64) are all checked against arithmetic done by hand.
 *
 * Most cases use d = 1, q = 1 and scale = 1, so the logit of key j is simply k_j; with
 * k_j = log(w_j) the softmax weights are w_j / sum(w): O and LSE = log(sum w) follow exactly.
 * Tolerances: 1e-6 (inputs are f32-rounded logs); O must be exactly 0 and LSE exactly -inf on
 * fully-masked and padding rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"
#include "naive32.h"

/* One hand-made problem with contiguous f32 inputs [Bt][H][L][D] and its expected result. */
typedef struct hand {
    const char *name;
    ak_attn_desc d;
    int64_t Bt, Lqt, Lkt;         /* tensor dims 0 and 2 (packed totals when ragged) */
    float *q, *k, *v;             /* contiguous inputs */
    float *alibi, *sinks;         /* [Hq] or [B][Hq] (alibi_2d), [Hq] */
    int alibi_2d;
    const double *o_exp;          /* [Bt][Hq][Lqt][dv] */
    const double *lse_exp;        /* [Bt][Hq][Lqt] */
} hand;

static float dummy_buf[16]; /* a valid pointer for empty tensors */

static ak_attn_tensors hand_tensors(const hand *h) {
    const ak_attn_desc *d = &h->d;
    int64_t dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = ak_tensor_4d(h->q ? h->q : dummy_buf, AK_F32, h->Bt, d->num_heads_q, h->Lqt, d->head_dim);
    t.k = ak_tensor_4d(h->k ? h->k : dummy_buf, AK_F32, h->Bt, d->num_heads_kv, h->Lkt, d->head_dim);
    t.v = ak_tensor_4d(h->v ? h->v : dummy_buf, AK_F32, h->Bt, d->num_heads_kv, h->Lkt, dv);
    if (d->has_alibi)
        t.alibi_slopes = h->alibi_2d ? ak_tensor_2d(h->alibi, AK_F32, d->batch, d->num_heads_q)
                                     : ak_tensor_1d(h->alibi, AK_F32, d->num_heads_q);
    if (d->has_sinks)
        t.sinks = ak_tensor_1d(h->sinks, AK_F32, d->num_heads_q);
    return t;
}

/* Compare one result with the expectation; `who` names the implementation. */
static void expect(const hand *h, const char *who, const double *o, const double *lse, double tol) {
    const ak_attn_desc *d = &h->d;
    int64_t dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    int64_t rows = h->Bt * d->num_heads_q * h->Lqt;
    for (int64_t r = 0; r < rows; r++) {
        double le = h->lse_exp[r];
        if (isinf(le))
            CHECK(lse[r] == le, "%s/%s: row %lld LSE %g, expected %g", h->name, who, (long long)r,
                  lse[r], le);
        else
            CHECK(fabs(lse[r] - le) <= tol * fmax(1.0, fabs(le)),
                  "%s/%s: row %lld LSE %.9g, expected %.9g", h->name, who, (long long)r, lse[r], le);
        for (int64_t c = 0; c < dv; c++) {
            double x = o[r * dv + c], e = h->o_exp[r * dv + c];
            if (e == 0.0 && isinf(le))
                CHECK(x == 0.0, "%s/%s: row %lld col %lld = %g, expected exactly 0", h->name, who,
                      (long long)r, (long long)c, x);
            else
                CHECK(fabs(x - e) <= tol * fmax(1.0, fabs(e)), "%s/%s: O[%lld][%lld] = %.9g, expected %.9g",
                      h->name, who, (long long)r, (long long)c, x, e);
        }
    }
}

/* Run the oracle, the optimised path and both naive references on `h`, check all four. */
static void check_hand(ak_ctx *ctx, hand *h) {
    ak_attn_desc d = h->d;
    int64_t dv = d.head_dim_v ? d.head_dim_v : d.head_dim, rows = h->Bt * d.num_heads_q * h->Lqt;
    size_t no = (size_t)(rows * dv) + 1, nl = (size_t)rows + 1;
    double *o64 = (double *)malloc(no * sizeof(double)), *l64 = (double *)malloc(nl * sizeof(double));
    float *o32 = (float *)malloc(no * sizeof(float)), *l32 = (float *)malloc(nl * sizeof(float));
    double *o32d = (double *)malloc(no * sizeof(double)), *l32d = (double *)malloc(nl * sizeof(double));
    for (size_t i = 0; i < no; i++)
        o64[i] = NAN, o32[i] = NAN;
    for (size_t i = 0; i < nl; i++)
        l64[i] = NAN, l32[i] = NAN;
    d.return_lse = 1;
    ak_attn_tensors t = hand_tensors(h);
    /* the oracle, f64 outputs */
    d.dtype_o = AK_F64;
    t.o = ak_tensor_4d(o64, AK_F64, h->Bt, d.num_heads_q, h->Lqt, dv);
    t.lse = ak_tensor_3d(l64, AK_F64, h->Bt, d.num_heads_q, h->Lqt);
    CHECK_STATUS(ak_attention_ref(ctx, &d, &t), AK_OK);
    expect(h, "ak_attention_ref", o64, l64, 1e-6);
    /* the optimised path, f32 outputs */
    d.dtype_o = AK_F32;
    t.o = ak_tensor_4d(o32, AK_F32, h->Bt, d.num_heads_q, h->Lqt, dv);
    t.lse = ak_tensor_3d(l32, AK_F32, h->Bt, d.num_heads_q, h->Lqt);
    CHECK_STATUS(ak_attention(ctx, &d, &t), AK_OK);
    for (int64_t i = 0; i < rows * dv; i++)
        o32d[i] = o32[i];
    for (int64_t i = 0; i < rows; i++)
        l32d[i] = l32[i];
    expect(h, "ak_attention", o32d, l32d, 2e-6);
    /* the test's own references */
    naive_out n;
    if (naive_alloc(&n, &d, &t) == 0) {
        naive_attention64(&d, &t, &n);
        expect(h, "naive64", n.o, n.lse, 1e-6);
        naive_attention32(&d, &t, &n);
        expect(h, "naive32", n.o, n.lse, 2e-6);
    }
    naive_free(&n);
    free(o64), free(l64), free(o32), free(l32), free(o32d), free(l32d);
}

/* A dense problem with B=1 (unless changed), given heads, lengths and dims, scale 1. */
static hand dense(const char *name, int hq, int hkv, int lq, int lk, int dd, int dv) {
    hand h;
    memset(&h, 0, sizeof h);
    h.name = name;
    ak_attn_desc_init(&h.d);
    h.d.num_heads_q = hq, h.d.num_heads_kv = hkv, h.d.seqlen_q = lq, h.d.seqlen_k = lk;
    h.d.head_dim = dd, h.d.head_dim_v = dv, h.d.scale = 1.0f;
    h.Bt = 1, h.Lqt = lq, h.Lkt = lk;
    return h;
}

#define L(x) ((float)log(x))
#define NINF (-INFINITY)

/* Lq=3, Lk=5, causal bottom-right: row i sees keys 0..i+2 with weights 1..5. */
static void case_causal(ak_ctx *ctx) {
    float q[3] = {1, 1, 1}, k[5] = {L(1), L(2), L(3), L(4), L(5)};
    float v[10] = {0, 1, 1, 1, 2, 1, 3, 1, 4, 1}; /* v_j = (j, 1) */
    hand h = dense("causal_3x5", 1, 1, 3, 5, 1, 2);
    h.q = q, h.k = k, h.v = v, h.d.causal = 1;
    h.o_exp = (const double[]){8.0 / 6, 1, 20.0 / 10, 1, 40.0 / 15, 1};
    h.lse_exp = (const double[]){log(6.0), log(10.0), log(15.0)};
    check_hand(ctx, &h);
    h.name = "noncausal_3x5", h.d.causal = 0; /* every row sees all five keys */
    h.o_exp = (const double[]){40.0 / 15, 1, 40.0 / 15, 1, 40.0 / 15, 1};
    h.lse_exp = (const double[]){log(15.0), log(15.0), log(15.0)};
    check_hand(ctx, &h);
}

/* Lq=4 > Lk=2 causal: rows 0,1 fully masked; row 2 sees key 0; row 3 sees keys 0,1 (w 1,3). */
static void case_causal_lq_gt_lk(ak_ctx *ctx) {
    float q[4] = {1, 1, 1, 1}, k[2] = {0, L(3)}, v[2] = {1, 2};
    hand h = dense("causal_lq4_lk2", 1, 1, 4, 2, 1, 1);
    h.q = q, h.k = k, h.v = v, h.d.causal = 1;
    h.o_exp = (const double[]){0, 0, 1, 7.0 / 4};
    h.lse_exp = (const double[]){NINF, NINF, 0, log(4.0)};
    check_hand(ctx, &h);
}

/* Sinks: empty KV gives O = 0, LSE = sink; one key with w=3 and sink 0 gives O = 3/4 v. */
static void case_sinks(ak_ctx *ctx) {
    float q[8] = {1, 2, 3, 4, 5, 6, 7, 8}, sinks[2] = {0.5f, -2.0f};
    hand h = dense("sinks_empty_kv", 2, 1, 1, 0, 4, 3);
    h.q = q, h.sinks = sinks, h.d.has_sinks = 1;
    h.o_exp = (const double[]){0, 0, 0, 0, 0, 0};
    h.lse_exp = (const double[]){0.5, -2.0};
    check_hand(ctx, &h);
    h.name = "no_sinks_empty_kv", h.d.has_sinks = 0;
    h.lse_exp = (const double[]){NINF, NINF};
    check_hand(ctx, &h);
    float q1[1] = {1}, k1[1] = {L(3)}, v1[1] = {2}, s1[1] = {0};
    hand g = dense("sink_one_key", 1, 1, 1, 1, 1, 1);
    g.q = q1, g.k = k1, g.v = v1, g.sinks = s1, g.d.has_sinks = 1;
    g.o_exp = (const double[]){1.5};
    g.lse_exp = (const double[]){log(4.0)};
    check_hand(ctx, &g);
}

/* Windows on Lq=Lk=4 with equal logits: O is the mean of the visible v_j = j+1. */
static void case_window(ak_ctx *ctx) {
    float q[8] = {0}, k[8] = {0}, v[4] = {1, 2, 3, 4};
    hand h = dense("window_1_0", 1, 1, 4, 4, 2, 1);
    h.q = q, h.k = k, h.v = v, h.d.window_left = 1, h.d.window_right = 0;
    h.o_exp = (const double[]){1, 1.5, 2.5, 3.5};
    h.lse_exp = (const double[]){0, log(2.0), log(2.0), log(2.0)};
    check_hand(ctx, &h);
    h.name = "window_1_2_causal", h.d.window_right = 2, h.d.causal = 1; /* causal forces right=0 */
    check_hand(ctx, &h);
    h.name = "window_0_1", h.d.causal = 0, h.d.window_left = 0, h.d.window_right = 1;
    h.o_exp = (const double[]){1.5, 2.5, 3.5, 4};
    h.lse_exp = (const double[]){log(2.0), log(2.0), log(2.0), 0};
    check_hand(ctx, &h);
}

/* GQA grouping is contiguous: q heads 0,1 read kv head 0 (v = 10), heads 2,3 kv head 1 (v = 20). */
static void case_gqa(ak_ctx *ctx) {
    float q[4 * 3 * 2], k[2 * 3 * 2], v[2 * 3] = {10, 10, 10, 20, 20, 20};
    for (int i = 0; i < 24; i++)
        q[i] = (float)((i * 7) % 5) - 2.0f;
    for (int i = 0; i < 12; i++)
        k[i] = (float)((i * 3) % 4) - 1.5f;
    hand h = dense("gqa_4_2", 4, 2, 3, 3, 2, 1);
    h.q = q, h.k = k, h.v = v;
    static double o[12], lse[12];
    for (int i = 0; i < 12; i++)
        o[i] = i < 6 ? 10 : 20;
    for (int hq = 0; hq < 4; hq++) /* LSE = log sum_j exp(q_i . k_j) */
        for (int i = 0; i < 3; i++) {
            double s = 0;
            for (int j = 0; j < 3; j++) {
                const float *qi = q + (hq * 3 + i) * 2, *kj = k + ((hq / 2) * 3 + j) * 2;
                s += exp((double)qi[0] * kj[0] + (double)qi[1] * kj[1]);
            }
            lse[hq * 3 + i] = log(s);
        }
    h.o_exp = o, h.lse_exp = lse;
    check_hand(ctx, &h);
}

/* ALiBi: q = 0, so s_j = -slope * |pos - j|; slope log 2 gives weights 1/4, 1/2, 1. [B][Hq] slopes
 * give batch 1 slope log 4: weights 1/16, 1/4, 1. Then softcap before ALiBi. */
static void case_alibi_softcap(ak_ctx *ctx) {
    float q[2] = {0, 0}, k[6] = {0}, v[6] = {1, 2, 3, 1, 2, 3}, slopes[2] = {L(2), L(4)};
    hand h = dense("alibi_1d", 1, 1, 1, 3, 1, 1);
    h.q = q, h.k = k, h.v = v, h.alibi = slopes, h.d.has_alibi = 1;
    h.o_exp = (const double[]){17.0 / 7};
    h.lse_exp = (const double[]){log(7.0 / 4)};
    check_hand(ctx, &h);
    h.name = "alibi_2d", h.d.batch = 2, h.Bt = 2, h.alibi_2d = 1;
    h.o_exp = (const double[]){17.0 / 7, 57.0 / 21};
    h.lse_exp = (const double[]){log(7.0 / 4), log(21.0 / 16)};
    check_hand(ctx, &h);
    /* softcap 1 then ALiBi slope 1: s = tanh(100) - |1 - j| = (0, 1); wrong order gives (1, 1) */
    float q1[1] = {1}, k1[2] = {100, 100}, v1[2] = {0, 1}, sl1[1] = {1};
    hand g = dense("softcap_then_alibi", 1, 1, 1, 2, 1, 1);
    g.q = q1, g.k = k1, g.v = v1, g.alibi = sl1, g.d.has_alibi = 1, g.d.softcap = 1.0f;
    g.o_exp = (const double[]){exp(1.0) / (1 + exp(1.0))};
    g.lse_exp = (const double[]){log(1 + exp(1.0))};
    check_hand(ctx, &g);
}

/* Scale: explicit log 3 gives weights 3:1; the default 1/sqrt(d) with d = 4 halves the dot. */
static void case_scale(ak_ctx *ctx) {
    float q[2] = {1, 1}, k[4] = {1, 0, 0, 0}, v[2] = {1, 0};
    hand h = dense("scale_log3", 1, 1, 1, 2, 2, 1);
    h.q = q, h.k = k, h.v = v, h.d.scale = L(3);
    h.o_exp = (const double[]){0.75};
    h.lse_exp = (const double[]){log(4.0)};
    check_hand(ctx, &h);
    float q4[4] = {1, 1, 1, 1}, k4[8] = {L(5) / 2, L(5) / 2, L(5) / 2, L(5) / 2, 0, 0, 0, 0};
    float v4[2] = {6, 0};
    hand g = dense("scale_default", 1, 1, 1, 2, 4, 1);
    g.q = q4, g.k = k4, g.v = v4, g.d.scale = NAN;
    g.o_exp = (const double[]){5.0};
    g.lse_exp = (const double[]){log(6.0)};
    check_hand(ctx, &g);
}

/* Ragged: seq 0 has 2 rows and 3 keys, seq 1 has 1 row and no key, row 3 is padding. q = 0. */
static void case_ragged(ak_ctx *ctx) {
    float q[4] = {0}, k[4] = {0}, v[4] = {1, 2, 3, 99};
    int32_t cu_q[3] = {0, 2, 3}, cu_k[3] = {0, 3, 3}, used[2] = {2, 0};
    hand h = dense("ragged", 1, 1, 0, 0, 1, 1);
    h.d.batch = 2, h.d.cu_seqlens_q = cu_q, h.d.cu_seqlens_k = cu_k;
    h.Lqt = 4, h.Lkt = 4, h.q = q, h.k = k, h.v = v;
    h.o_exp = (const double[]){2, 2, 0, 0};
    h.lse_exp = (const double[]){log(3.0), log(3.0), NINF, NINF};
    check_hand(ctx, &h);
    h.name = "ragged_causal", h.d.causal = 1; /* seq 0: row 0 at pos 1 sees keys 0,1 */
    h.o_exp = (const double[]){1.5, 2, 0, 0};
    h.lse_exp = (const double[]){log(2.0), log(3.0), NINF, NINF};
    check_hand(ctx, &h);
    h.name = "ragged_seqused_causal", h.d.seqused_k = used; /* Lk = 2 aligns causal */
    h.o_exp = (const double[]){1, 1.5, 0, 0};
    h.lse_exp = (const double[]){0, log(2.0), NINF, NINF};
    check_hand(ctx, &h);
    h.name = "ragged_seqused", h.d.causal = 0;
    h.o_exp = (const double[]){1.5, 1.5, 0, 0};
    h.lse_exp = (const double[]){log(2.0), log(2.0), NINF, NINF};
    check_hand(ctx, &h);
}

int main(void) {
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_oracle: ak_ctx_create failed\n");
        return 1;
    }
    case_causal(ctx);
    case_causal_lq_gt_lk(ctx);
    case_sinks(ctx);
    case_window(ctx);
    case_gqa(ctx);
    case_alibi_softcap(ctx);
    case_scale(ctx);
    case_ragged(ctx);
    ak_ctx_destroy(ctx);
    return tc_finish("test_oracle");
}
