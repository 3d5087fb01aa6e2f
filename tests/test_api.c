/*
 * test_api.c — the public API contract outside the numerics: version and names, context
 * settings, allocator hooks, every invalid input with its own status (one defect at a time on an
 * otherwise valid problem), the last-error message, plans, and the bf16/f16 conversions.
 *
 * Where the header leaves the exact status open (e.g. a tensor whose dtype disagrees with the
 * descriptor), the test accepts the documented alternatives and says so in a comment.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

/* CHECK_STATUS2: the call must return one of two statuses. */
#define CHECK_STATUS2(call, e1, e2)                                                               \
    do {                                                                                          \
        ak_status s2_ = (call);                                                                   \
        CHECK(s2_ == (e1) || s2_ == (e2), "%s returned %s, expected %s or %s", #call,             \
              ak_status_string(s2_), ak_status_string(e1), ak_status_string(e2));                 \
    } while (0)

/* ---- names, versions ---------------------------------------------------------------------------- */

static void test_names(void) {
    CHECK(strcmp(ak_version(), AK_VERSION_STRING) == 0, "ak_version() = %s, header %s", ak_version(),
          AK_VERSION_STRING);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", AK_VERSION_MAJOR, AK_VERSION_MINOR, AK_VERSION_PATCH);
    CHECK(strcmp(v, AK_VERSION_STRING) == 0, "version macros %s vs string %s", v, AK_VERSION_STRING);
    CHECK(ak_build_info() && strstr(ak_build_info(), AK_VERSION_STRING), "ak_build_info lacks the version");
    const char *names[AK_ERR_INTERNAL + 1];
    for (int s = AK_OK; s <= AK_ERR_INTERNAL; s++) {
        names[s] = ak_status_string((ak_status)s);
        CHECK(names[s] && *names[s], "ak_status_string(%d) is NULL or empty", s);
        for (int t = 0; t < s && names[s]; t++)
            CHECK(!names[t] || strcmp(names[s], names[t]) != 0, "statuses %d and %d share the name %s", t, s,
                  names[s]);
    }
    CHECK(strstr(ak_status_string(AK_ERR_GQA_RATIO), "AK_ERR_GQA_RATIO") != NULL,
          "ak_status_string(AK_ERR_GQA_RATIO) = %s does not name the status", ak_status_string(AK_ERR_GQA_RATIO));
    CHECK(ak_status_string((ak_status)99) != NULL, "ak_status_string(99) is NULL");
    CHECK(ak_status_string((ak_status)-1) != NULL, "ak_status_string(-1) is NULL");
    static const char *isa[4] = {"scalar", "avx2", "avx512", "avx512bf16"};
    for (int i = 0; i < 4; i++)
        CHECK(ak_isa_name((ak_isa)i) && strcmp(ak_isa_name((ak_isa)i), isa[i]) == 0, "ak_isa_name(%d) = %s", i,
              ak_isa_name((ak_isa)i) ? ak_isa_name((ak_isa)i) : "(null)");
    CHECK(ak_isa_name((ak_isa)42) != NULL, "ak_isa_name(42) is NULL");
    static const size_t sz[4] = {4, 2, 2, 8};
    for (int i = 0; i < 4; i++) {
        CHECK(ak_dtype_size((ak_dtype)i) == sz[i], "ak_dtype_size(%d) = %zu", i, ak_dtype_size((ak_dtype)i));
        CHECK(ak_dtype_name((ak_dtype)i) && *ak_dtype_name((ak_dtype)i), "ak_dtype_name(%d)", i);
    }
    CHECK(ak_dtype_name((ak_dtype)42) != NULL, "ak_dtype_name(42) is NULL");
}

/* ---- tensor constructors ---------------------------------------------------------------------- */

static void test_tensor_views(void) {
    float buf[1];
    ak_tensor t = ak_tensor_4d(buf, AK_BF16, 2, 3, 5, 7);
    CHECK(t.data == buf && t.dtype == AK_BF16 && t.ndim == 4, "ak_tensor_4d header fields");
    CHECK(t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 5 && t.shape[3] == 7, "ak_tensor_4d shape");
    CHECK(t.stride[0] == 105 && t.stride[1] == 35 && t.stride[2] == 7 && t.stride[3] == 1, "ak_tensor_4d strides");
    t = ak_tensor_bshd(buf, AK_F32, 2, 5, 3, 7); /* memory [B=2][L=5][H=3][D=7], logical [B][H][L][D] */
    CHECK(t.ndim == 4 && t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 5 && t.shape[3] == 7,
          "ak_tensor_bshd shape [%lld][%lld][%lld][%lld]", (long long)t.shape[0], (long long)t.shape[1],
          (long long)t.shape[2], (long long)t.shape[3]);
    CHECK(t.stride[0] == 105 && t.stride[1] == 7 && t.stride[2] == 21 && t.stride[3] == 1,
          "ak_tensor_bshd strides %lld %lld %lld %lld", (long long)t.stride[0], (long long)t.stride[1],
          (long long)t.stride[2], (long long)t.stride[3]);
    t = ak_tensor_3d(buf, AK_F32, 2, 3, 4);
    CHECK(t.ndim == 3 && t.stride[0] == 12 && t.stride[1] == 4 && t.stride[2] == 1, "ak_tensor_3d");
    t = ak_tensor_2d(buf, AK_F32, 3, 4);
    CHECK(t.ndim == 2 && t.stride[0] == 4 && t.stride[1] == 1 && t.shape[0] == 3, "ak_tensor_2d");
    t = ak_tensor_1d(buf, AK_F16, 9);
    CHECK(t.ndim == 1 && t.stride[0] == 1 && t.shape[0] == 9 && t.dtype == AK_F16, "ak_tensor_1d");
    ak_attn_desc d;
    memset(&d, 0x5a, sizeof d);
    ak_attn_desc_init(&d);
    CHECK(d.size == sizeof d && d.batch == 1 && d.num_heads_q == 1 && d.num_heads_kv == 1 && d.head_dim == 0,
          "ak_attn_desc_init defaults");
    CHECK(isnan(d.scale) && d.window_left == -1 && d.window_right == -1 && d.softcap == 0 && !d.causal &&
              !d.cu_seqlens_q && !d.cu_seqlens_k && !d.seqused_k && d.dtype_q == AK_F32 && !d.return_lse,
          "ak_attn_desc_init defaults (scale NaN, no window, no masks, f32)");
    ak_attn_tensors ts;
    memset(&ts, 0x5a, sizeof ts);
    ak_attn_tensors_init(&ts);
    CHECK(ts.size == sizeof ts && ts.q.data == NULL && ts.lse.data == NULL, "ak_attn_tensors_init");
}

/* ---- context ---------------------------------------------------------------------------------- */

typedef struct count_alloc {
    long live, total, bad_align;
} count_alloc;

static void *ca_alloc(void *user, size_t size, size_t align) {
    count_alloc *c = (count_alloc *)user;
    if (align < 64 || (align & (align - 1)))
        c->bad_align++;
    size_t a = align < 64 ? 64 : align;
    void *p = aligned_alloc(a, (size + a - 1) / a * a + a);
    if (p)
        c->live++, c->total++;
    return p;
}

static void ca_free(void *user, void *ptr) {
    count_alloc *c = (count_alloc *)user;
    if (ptr)
        c->live--;
    free(ptr);
}

static void test_ctx(void) {
    ak_ctx *ctx = NULL;
    CHECK_STATUS(ak_ctx_create(NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_ctx_create(&ctx), AK_OK);
    if (!ctx)
        return;
    CHECK(ak_ctx_last_error(ctx) != NULL && ak_ctx_last_error(ctx)[0] == '\0',
          "last error of a fresh context should be \"\"");
    CHECK(ak_ctx_get_num_threads(ctx) >= 1, "default n_threads %d", ak_ctx_get_num_threads(ctx));
    CHECK_STATUS(ak_ctx_set_num_threads(ctx, 0), AK_ERR_INVALID_ARGUMENT);
    CHECK(strlen(ak_ctx_last_error(ctx)) > 0, "no last-error message after set_num_threads(0)");
    CHECK_STATUS(ak_ctx_set_num_threads(ctx, -3), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_ctx_set_num_threads(NULL, 2), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_ctx_set_num_threads(ctx, 3), AK_OK);
    CHECK(ak_ctx_get_num_threads(ctx) == 3, "get_num_threads after set(3) = %d", ak_ctx_get_num_threads(ctx));
    /* ISA cap */
    ak_isa det = ak_isa_detect();
    CHECK(det >= AK_ISA_SCALAR && det <= AK_ISA_AVX512BF16, "ak_isa_detect() = %d", (int)det);
    CHECK(ak_ctx_get_isa(ctx) <= det, "context ISA %s above detected %s", ak_isa_name(ak_ctx_get_isa(ctx)),
          ak_isa_name(det));
    if (det < AK_ISA_AVX512BF16) {
        CHECK_STATUS(ak_ctx_set_max_isa(ctx, (ak_isa)(det + 1)), AK_ERR_UNSUPPORTED_ISA);
        CHECK(strlen(ak_ctx_last_error(ctx)) > 0, "no last-error message after set_max_isa above detected");
    }
    /* the header leaves an invalid enum open: refused either way */
    CHECK_STATUS2(ak_ctx_set_max_isa(ctx, (ak_isa)42), AK_ERR_UNSUPPORTED_ISA, AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS2(ak_ctx_set_max_isa(ctx, (ak_isa)-1), AK_ERR_UNSUPPORTED_ISA, AK_ERR_INVALID_ARGUMENT);
    for (int i = AK_ISA_SCALAR; i <= (int)det; i++) {
        CHECK_STATUS(ak_ctx_set_max_isa(ctx, (ak_isa)i), AK_OK);
        CHECK(ak_ctx_get_isa(ctx) == (ak_isa)i, "set_max_isa(%s) but get_isa = %s", ak_isa_name((ak_isa)i),
              ak_isa_name(ak_ctx_get_isa(ctx)));
    }
    CHECK_STATUS(ak_ctx_set_max_isa(NULL, AK_ISA_SCALAR), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_ctx_set_deterministic(ctx, 1), AK_OK);
    CHECK_STATUS(ak_ctx_set_deterministic(NULL, 1), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_ctx_set_force_ref(NULL, 1), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_ctx_set_verbose(NULL, 1), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_ctx_set_allocator(NULL, NULL), AK_ERR_NULL_POINTER);
    ak_peak pk;
    CHECK_STATUS(ak_measure_peak(NULL, &pk), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_measure_peak(ctx, NULL), AK_ERR_NULL_POINTER);
    ak_ctx_destroy(ctx);
    ak_ctx_destroy(NULL); /* like free(NULL) */
}

/* Allocator hooks: every plan/run allocation goes through them, aligned >= 64, and is freed. */
static void test_allocator(void) {
    ak_ctx *ctx = NULL;
    count_alloc ca = {0, 0, 0};
    ak_allocator al = {ca_alloc, ca_free, &ca};
    float q[2 * 16 * 8], kv[2 * 16 * 8], o[2 * 16 * 8];
    for (int i = 0; i < 256; i++)
        q[i] = kv[i] = (float)(i % 7) * 0.1f;
    if (ak_ctx_create(&ctx) != AK_OK)
        return;
    CHECK_STATUS(ak_ctx_set_allocator(ctx, &al), AK_OK);
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.num_heads_q = d.num_heads_kv = 2, d.seqlen_q = d.seqlen_k = 16, d.head_dim = 8;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = ak_tensor_4d(q, AK_F32, 1, 2, 16, 8), t.k = t.v = ak_tensor_4d(kv, AK_F32, 1, 2, 16, 8);
    t.o = ak_tensor_4d(o, AK_F32, 1, 2, 16, 8);
    ak_plan *plan = NULL;
    CHECK_STATUS(ak_plan_create(ctx, &d, &plan), AK_OK);
    CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_OK); /* NULL workspace: from the allocator */
    CHECK(ca.total > 0, "the custom allocator was never called (plan + run with NULL workspace)");
    ak_plan_destroy(plan);
    CHECK(ca.live == 0, "%ld allocations from the custom allocator not freed after plan_destroy", ca.live);
    CHECK(ca.bad_align == 0, "%ld allocations asked for an alignment < 64 or not a power of two", ca.bad_align);
    CHECK_STATUS(ak_ctx_set_allocator(ctx, NULL), AK_OK); /* back to the default */
    long before = ca.total;
    CHECK_STATUS(ak_attention(ctx, &d, &t), AK_OK);
    CHECK(ca.total == before, "the allocator was used after being reset with NULL");
    ak_ctx_destroy(ctx);
    CHECK(ca.live == 0, "%ld custom allocations live after ak_ctx_destroy", ca.live);
}

/* ---- invalid inputs to ak_attention ------------------------------------------------------------ */

/* A valid problem: B=2 Hq=4 Hkv=2 Lq=5 Lk=7 d=8 dv=6, f32, LSE, ALiBi [Hq], sinks. Every buffer
 * is large, so that a view changed by a test stays inside its allocation. */
#define BIG 65536
typedef struct base {
    ak_attn_desc d;
    ak_attn_tensors t;
    float *q, *k, *v, *o, *lse, *al, *sk;
} base;

static void base_init(base *b) {
    float **bufs[7] = {&b->q, &b->k, &b->v, &b->o, &b->lse, &b->al, &b->sk};
    for (int i = 0; i < 7; i++) {
        *bufs[i] = (float *)calloc(BIG, sizeof(float));
        for (int j = 0; j < BIG && i < 3; j++)
            (*bufs[i])[j] = (float)((j * 37) % 11) * 0.1f - 0.5f;
    }
    ak_attn_desc_init(&b->d);
    b->d.batch = 2, b->d.num_heads_q = 4, b->d.num_heads_kv = 2, b->d.seqlen_q = 5, b->d.seqlen_k = 7;
    b->d.head_dim = 8, b->d.head_dim_v = 6, b->d.return_lse = 1, b->d.has_alibi = 1, b->d.has_sinks = 1;
    ak_attn_tensors_init(&b->t);
    b->t.q = ak_tensor_4d(b->q, AK_F32, 2, 4, 5, 8);
    b->t.k = ak_tensor_4d(b->k, AK_F32, 2, 2, 7, 8);
    b->t.v = ak_tensor_4d(b->v, AK_F32, 2, 2, 7, 6);
    b->t.o = ak_tensor_4d(b->o, AK_F32, 2, 4, 5, 6);
    b->t.lse = ak_tensor_3d(b->lse, AK_F32, 2, 4, 5);
    b->t.alibi_slopes = ak_tensor_1d(b->al, AK_F32, 4);
    b->t.sinks = ak_tensor_1d(b->sk, AK_F32, 4);
}

static void base_free(base *b) {
    free(b->q), free(b->k), free(b->v), free(b->o), free(b->lse), free(b->al), free(b->sk);
}

/* Apply `modify` (statements on d and t) to a copy of the base problem; expect `status` from
 * ak_attention and, on failure, a last-error message. */
#define EXPECT(ctx, B, status, modify)                                                            \
    do {                                                                                          \
        ak_attn_desc d = (B)->d;                                                                  \
        ak_attn_tensors t = (B)->t;                                                               \
        modify;                                                                                   \
        ak_status st_ = ak_attention((ctx), &d, &t);                                              \
        tc_checks++;                                                                              \
        if (st_ != (status)) {                                                                    \
            tc_failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: {%s} returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                    #modify, ak_status_string(st_), ak_status_string(status),                     \
                    ak_ctx_last_error(ctx));                                                      \
        } else if (st_ != AK_OK) {                                                                \
            CHECK(strlen(ak_ctx_last_error(ctx)) > 0, "no last-error message after {%s}", #modify); \
        }                                                                                         \
    } while (0)

/* The same, accepting any of the statuses in the array `ok_set` (where the header allows them). */
#define EXPECT_ANY(ctx, B, ok_set, modify)                                                        \
    do {                                                                                          \
        ak_attn_desc d = (B)->d;                                                                  \
        ak_attn_tensors t = (B)->t;                                                               \
        modify;                                                                                   \
        ak_status st_ = ak_attention((ctx), &d, &t);                                              \
        int hit_ = 0;                                                                             \
        for (size_t i_ = 0; i_ < sizeof(ok_set) / sizeof(ok_set[0]); i_++)                       \
            hit_ |= st_ == ok_set[i_];                                                            \
        CHECK(hit_, "{%s} returned %s", #modify, ak_status_string(st_));                          \
    } while (0)

static void test_invalid_pointers(ak_ctx *ctx, base *b) {
    EXPECT(ctx, b, AK_OK, (void)0); /* the baseline is valid */
    CHECK_STATUS(ak_attention(NULL, &b->d, &b->t), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attention(ctx, NULL, &b->t), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attention(ctx, &b->d, NULL), AK_ERR_NULL_POINTER);
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.q.data = NULL);
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.k.data = NULL);
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.v.data = NULL);
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.o.data = NULL);
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.lse.data = NULL);          /* return_lse set */
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.alibi_slopes.data = NULL); /* has_alibi set */
    EXPECT(ctx, b, AK_ERR_NULL_POINTER, t.sinks.data = NULL);        /* has_sinks set */
    EXPECT(ctx, b, AK_OK, d.return_lse = 0; t.lse.data = NULL);      /* not requested: ignored */
    EXPECT(ctx, b, AK_OK, d.has_alibi = 0; d.has_sinks = 0; memset(&t.alibi_slopes, 0, sizeof t.sinks);
           memset(&t.sinks, 0, sizeof t.sinks));
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.size = 0);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.size = sizeof d - 1);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, t.size = 0);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, t.size = sizeof t + 8);
}

static void test_invalid_desc(ak_ctx *ctx, base *b) {
    static const ak_status inv_or_gqa[2] = {AK_ERR_INVALID_ARGUMENT, AK_ERR_GQA_RATIO};
    static const ak_status inv_or_shape[2] = {AK_ERR_INVALID_ARGUMENT, AK_ERR_SHAPE_MISMATCH};
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.batch = 0; t.q.shape[0] = t.k.shape[0] = t.v.shape[0] = 0;
           t.o.shape[0] = t.lse.shape[0] = 0);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.num_heads_q = 0);
    EXPECT_ANY(ctx, b, inv_or_gqa, d.num_heads_kv = 0);
    EXPECT_ANY(ctx, b, inv_or_shape, d.seqlen_q = -1);
    /* GQA: tensors consistent with the descriptor, only the ratio is wrong */
    EXPECT(ctx, b, AK_ERR_GQA_RATIO, d.num_heads_kv = 3; t.k.shape[1] = t.v.shape[1] = 3;
           t.k = ak_tensor_4d(b->k, AK_F32, 2, 3, 7, 8); t.v = ak_tensor_4d(b->v, AK_F32, 2, 3, 7, 6));
    EXPECT(ctx, b, AK_ERR_GQA_RATIO, d.num_heads_q = 2; d.num_heads_kv = 4;
           t.q = ak_tensor_4d(b->q, AK_F32, 2, 2, 5, 8); t.k = ak_tensor_4d(b->k, AK_F32, 2, 4, 7, 8);
           t.v = ak_tensor_4d(b->v, AK_F32, 2, 4, 7, 6); t.o = ak_tensor_4d(b->o, AK_F32, 2, 2, 5, 6);
           t.lse = ak_tensor_3d(b->lse, AK_F32, 2, 2, 5); t.alibi_slopes.shape[0] = t.sinks.shape[0] = 2);
    /* head dims, tensors matching */
    EXPECT(ctx, b, AK_ERR_HEAD_DIM, d.head_dim = 0; t.q.shape[3] = t.k.shape[3] = 0);
    EXPECT(ctx, b, AK_ERR_HEAD_DIM, d.head_dim = 513; t.q = ak_tensor_4d(b->q, AK_F32, 2, 4, 5, 513);
           t.k = ak_tensor_4d(b->k, AK_F32, 2, 2, 7, 513));
    EXPECT(ctx, b, AK_ERR_HEAD_DIM, d.head_dim_v = 513; t.v = ak_tensor_4d(b->v, AK_F32, 2, 2, 7, 513);
           t.o = ak_tensor_4d(b->o, AK_F32, 2, 4, 5, 513));
    EXPECT(ctx, b, AK_ERR_HEAD_DIM, d.head_dim = -1);
    EXPECT(ctx, b, AK_ERR_HEAD_DIM, d.head_dim_v = -2);
    EXPECT(ctx, b, AK_OK, d.head_dim = 512; t.q = ak_tensor_4d(b->q, AK_F32, 2, 4, 5, 512);
           t.k = ak_tensor_4d(b->k, AK_F32, 2, 2, 7, 512));
    EXPECT(ctx, b, AK_OK, d.head_dim_v = 0; d.head_dim = 6; t.q = ak_tensor_4d(b->q, AK_F32, 2, 4, 5, 6);
           t.k = ak_tensor_4d(b->k, AK_F32, 2, 2, 7, 6)); /* dv = 0: same as d */
    /* dtypes (descriptor and tensor agree) */
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, d.dtype_q = AK_F64; t.q.dtype = AK_F64);
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, d.dtype_kv = (ak_dtype)42; t.k.dtype = t.v.dtype = (ak_dtype)42);
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, d.dtype_o = AK_F64; t.o.dtype = AK_F64);
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, d.dtype_o = (ak_dtype)-1; t.o.dtype = (ak_dtype)-1);
    /* scalar options */
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.window_left = -2);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.window_right = -7);
    EXPECT(ctx, b, AK_OK, d.window_left = 0; d.window_right = 0);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.softcap = -1.0f);
    EXPECT(ctx, b, AK_ERR_INVALID_ARGUMENT, d.softcap = NAN);
    EXPECT(ctx, b, AK_OK, d.softcap = 0.5f);
}

static void test_invalid_tensors(ak_ctx *ctx, base *b) {
    /* a valid dtype that differs from the descriptor's: PLAN_MISMATCH (header, ak_attention_run) */
    EXPECT(ctx, b, AK_ERR_PLAN_MISMATCH, t.q.dtype = AK_BF16);
    EXPECT(ctx, b, AK_ERR_PLAN_MISMATCH, t.v.dtype = AK_F16);
    EXPECT(ctx, b, AK_ERR_PLAN_MISMATCH, t.o.dtype = AK_BF16);
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, t.k.dtype = AK_F64); /* invalid in that role */
    /* shapes, one dimension at a time */
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.q.shape[0] = 1);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.q.shape[1] = 3);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.q.shape[2] = 6);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.q.shape[3] = 7);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.q.ndim = 3);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.q.shape[2] = -5);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.k.shape[1] = 1);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.k.shape[2] = 6);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.v.shape[2] = 6);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.v.shape[3] = 5);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.o.shape[3] = 5);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.o.shape[2] = 4);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.o.shape[1] = 2);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.lse.shape[2] = 4);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.lse = ak_tensor_4d(b->lse, AK_F32, 2, 4, 5, 1));
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, t.lse.dtype = AK_BF16);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.alibi_slopes.shape[0] = 5);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.alibi_slopes = ak_tensor_2d(b->al, AK_F32, 3, 4));
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.alibi_slopes = ak_tensor_3d(b->al, AK_F32, 2, 4, 1));
    EXPECT(ctx, b, AK_OK, t.alibi_slopes = ak_tensor_2d(b->al, AK_F32, 2, 4)); /* [B][Hq] */
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, t.alibi_slopes.dtype = AK_BF16);
    EXPECT(ctx, b, AK_ERR_SHAPE_MISMATCH, t.sinks.shape[0] = 3);
    EXPECT(ctx, b, AK_ERR_UNSUPPORTED_DTYPE, t.sinks.dtype = AK_F16);
    /* strides: negative anywhere; 0 only on inputs (data in the middle: safe if not refused) */
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.q.data = b->q + 4000; t.q.stride[3] = -1);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.k.data = b->k + 4000; t.k.stride[0] = -224);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.v.data = b->v + 4000; t.v.stride[2] = -6);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.o.data = b->o + 4000; t.o.stride[3] = -1);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.lse.data = b->lse + 4000; t.lse.stride[1] = -5);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.alibi_slopes.data = b->al + 100; t.alibi_slopes.stride[0] = -1);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.o.stride[1] = 0);
    EXPECT(ctx, b, AK_ERR_BAD_STRIDE, t.lse.stride[2] = 0);
    EXPECT(ctx, b, AK_OK, t.q.stride[0] = 0; t.k.stride[1] = 0; t.v.stride[3] = 0); /* broadcast inputs */
    /* overlapping outputs */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.o.stride[2] = 1);     /* rows alias each other */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.o.stride[2] = 5);     /* dv - 1 */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.o.stride[0] = 100);   /* batches overlap (needs 120) */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.lse.stride[1] = 4);   /* heads overlap (needs 5) */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.o.data = b->q);       /* O aliases Q */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.o.data = b->k + 100); /* O inside K */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.o.data = b->v + 167); /* last element of V */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.lse.data = b->o + 239); /* LSE on O's last element */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.lse.data = b->q + 10);  /* LSE inside Q */
    EXPECT(ctx, b, AK_OK, t.o.data = b->q + 320; t.lse.data = b->o + 240); /* adjacent, disjoint */
    /* O and LSE interleaved in one buffer [B][H][L][7]: disjoint elements. The header says "O may
     * not overlap ... LSE" without saying whether ranges or elements count: accept both answers. */
    static const ak_status ok_or_overlap[2] = {AK_OK, AK_ERR_OUTPUT_OVERLAP};
    EXPECT_ANY(ctx, b, ok_or_overlap, t.o.stride[0] = 140; t.o.stride[1] = 35; t.o.stride[2] = 7;
               t.lse.data = b->o + 6; t.lse.stride[0] = 140; t.lse.stride[1] = 35; t.lse.stride[2] = 7);
    /* an output interleaved inside an input buffer is refused (docs/API.md: memory ranges) */
    EXPECT(ctx, b, AK_ERR_OUTPUT_OVERLAP, t.q.stride[0] = t.o.stride[0] = 640; t.q.stride[1] = t.o.stride[1] = 160;
           t.q.stride[2] = t.o.stride[2] = 32; t.q.stride[3] = t.o.stride[3] = 2; t.o.data = b->q + 1);
}

/* Ragged problems: B=2, cu_q = {0,2,5}, cu_k = {0,3,7}, tensors [1][H][total][D]. */
static void test_invalid_metadata(ak_ctx *ctx, base *b) {
    static const ak_status meta_or_shape[2] = {AK_ERR_BAD_METADATA, AK_ERR_SHAPE_MISMATCH};
    int32_t cu_q[3] = {0, 2, 5}, cu_k[3] = {0, 3, 7}, used[2] = {3, 1};
    int32_t bad0[3] = {1, 2, 5}, dec[3] = {0, 4, 3}, neg[3] = {0, -1, 5}, long_q[3] = {0, 2, 6};
    int32_t long_k[3] = {0, 3, 8}, used_big[2] = {4, 1}, used_neg[2] = {-1, 2};
    base r = *b;
    r.d.cu_seqlens_q = cu_q, r.d.cu_seqlens_k = cu_k, r.d.seqlen_q = r.d.seqlen_k = 0;
    r.t.q = ak_tensor_4d(b->q, AK_F32, 1, 4, 5, 8), r.t.k = ak_tensor_4d(b->k, AK_F32, 1, 2, 7, 8);
    r.t.v = ak_tensor_4d(b->v, AK_F32, 1, 2, 7, 6), r.t.o = ak_tensor_4d(b->o, AK_F32, 1, 4, 5, 6);
    r.t.lse = ak_tensor_3d(b->lse, AK_F32, 1, 4, 5);
    r.t.alibi_slopes = ak_tensor_2d(b->al, AK_F32, 2, 4); /* [B][Hq] with B = number of sequences */
    EXPECT(ctx, &r, AK_OK, (void)0);
    EXPECT(ctx, &r, AK_OK, d.seqused_k = used);
    EXPECT(ctx, &r, AK_OK, d.seqlen_q = 3; d.seqlen_k = 4); /* exact upper bounds */
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_q = bad0);
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_k = bad0);
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_k = dec);
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_q = neg);
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_q = long_q); /* 6 > packed length 5 */
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_k = long_k); /* 8 > packed length 7 */
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_k = NULL);   /* only one of the two */
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.cu_seqlens_q = NULL);
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.seqused_k = used_big);  /* 4 > length 3 */
    EXPECT(ctx, &r, AK_ERR_BAD_METADATA, d.seqused_k = used_neg);
    EXPECT_ANY(ctx, &r, meta_or_shape, d.seqlen_q = 2);             /* max length 3 > bound 2 */
    EXPECT_ANY(ctx, &r, meta_or_shape, d.seqlen_k = 3);             /* max length 4 > bound 3 */
    EXPECT(ctx, &r, AK_ERR_SHAPE_MISMATCH, t.q = ak_tensor_4d(b->q, AK_F32, 2, 4, 5, 8)); /* B must be 1 */
}

/* Plans: NULL arguments, *out = NULL on failure, names, and tensors that do not match the plan. */
static void test_plans(ak_ctx *ctx, base *b) {
    ak_plan *plan = (ak_plan *)b; /* garbage: must be set to NULL on failure */
    ak_attn_desc bad = b->d;
    bad.num_heads_kv = 3;
    CHECK_STATUS(ak_plan_create(ctx, &bad, &plan), AK_ERR_GQA_RATIO);
    CHECK(plan == NULL, "ak_plan_create failed but did not set *out = NULL");
    CHECK(strstr(ak_ctx_last_error(ctx), "num_heads") != NULL, "last error \"%s\" does not say what was wrong",
          ak_ctx_last_error(ctx));
    CHECK_STATUS(ak_plan_create(NULL, &b->d, &plan), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_plan_create(ctx, NULL, &plan), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_plan_create(ctx, &b->d, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_plan_create(ctx, &b->d, &plan), AK_OK);
    if (!plan)
        return;
    CHECK(ak_plan_kernel_name(plan) && *ak_plan_kernel_name(plan), "ak_plan_kernel_name empty");
    CHECK(ak_plan_explain(plan) && strlen(ak_plan_explain(plan)) > 0, "ak_plan_explain empty");
    CHECK_STATUS(ak_attention_run(NULL, &b->t, NULL, 0), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attention_run(plan, NULL, NULL, 0), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attention_run(plan, &b->t, NULL, 0), AK_OK);
    ak_attn_tensors t = b->t;
    t.q = ak_tensor_4d(b->q, AK_F32, 2, 4, 6, 8), t.o = ak_tensor_4d(b->o, AK_F32, 2, 4, 6, 6);
    t.lse = ak_tensor_3d(b->lse, AK_F32, 2, 4, 6); /* consistent tensors, but Lq = 6, plan says 5 */
    /* header (ak_attention_run): shape disagreeing with the plan -> SHAPE_MISMATCH, a valid dtype
     * other than the descriptor's -> PLAN_MISMATCH */
    CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_ERR_SHAPE_MISMATCH);
    t = b->t, t.k = ak_tensor_4d(b->k, AK_F32, 2, 2, 9, 8), t.v = ak_tensor_4d(b->v, AK_F32, 2, 2, 9, 6);
    CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_ERR_SHAPE_MISMATCH);
    t = b->t, t.o.dtype = AK_BF16;
    CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_ERR_PLAN_MISMATCH);
    t = b->t, t.q.dtype = AK_F16;
    CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_ERR_PLAN_MISMATCH);
    t = b->t, t.lse.data = NULL;
    CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_ERR_NULL_POINTER);
    ak_plan_destroy(plan);
    ak_plan_destroy(NULL);
    /* the reference validates too */
    ak_attn_desc d = b->d;
    CHECK_STATUS(ak_attention_ref(ctx, &bad, &b->t), AK_ERR_GQA_RATIO);
    CHECK_STATUS(ak_attention_ref(ctx, NULL, &b->t), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_attention_ref(ctx, &d, NULL), AK_ERR_NULL_POINTER);
    d.dtype_o = AK_F64; /* f64 outputs: accepted by the reference only */
    t = b->t;
    t.o = ak_tensor_4d(b->o, AK_F64, 2, 4, 5, 6), t.lse = ak_tensor_3d(b->lse + 1000, AK_F64, 2, 4, 5);
    CHECK_STATUS(ak_attention_ref(ctx, &d, &t), AK_OK);
    CHECK_STATUS(ak_attention(ctx, &d, &t), AK_ERR_UNSUPPORTED_DTYPE);
}

/* The plan copies the metadata: the caller may overwrite and free it after ak_plan_create. */
static void test_metadata_copied(ak_ctx *ctx, base *b) {
    int32_t *cu_q = (int32_t *)malloc(3 * sizeof(int32_t)), *cu_k = (int32_t *)malloc(3 * sizeof(int32_t));
    cu_q[0] = 0, cu_q[1] = 2, cu_q[2] = 5, cu_k[0] = 0, cu_k[1] = 3, cu_k[2] = 7;
    ak_attn_desc d = b->d;
    d.cu_seqlens_q = cu_q, d.cu_seqlens_k = cu_k, d.seqlen_q = d.seqlen_k = 0, d.has_alibi = 0;
    ak_attn_tensors t = b->t;
    t.q = ak_tensor_4d(b->q, AK_F32, 1, 4, 5, 8), t.k = ak_tensor_4d(b->k, AK_F32, 1, 2, 7, 8);
    t.v = ak_tensor_4d(b->v, AK_F32, 1, 2, 7, 6), t.o = ak_tensor_4d(b->o, AK_F32, 1, 4, 5, 6);
    t.lse = ak_tensor_3d(b->lse, AK_F32, 1, 4, 5);
    float expect_o[120], expect_l[20];
    CHECK_STATUS(ak_attention(ctx, &d, &t), AK_OK);
    memcpy(expect_o, b->o, sizeof expect_o), memcpy(expect_l, b->lse, sizeof expect_l);
    ak_plan *plan = NULL;
    CHECK_STATUS(ak_plan_create(ctx, &d, &plan), AK_OK);
    cu_q[1] = 4, cu_k[1] = 1, cu_k[2] = 99; /* garbage, then gone */
    free(cu_q), free(cu_k);
    memset(b->o, 0, 120 * sizeof(float)), memset(b->lse, 0, 20 * sizeof(float));
    if (plan) {
        CHECK_STATUS(ak_attention_run(plan, &t, NULL, 0), AK_OK);
        CHECK(memcmp(expect_o, b->o, sizeof expect_o) == 0 && memcmp(expect_l, b->lse, sizeof expect_l) == 0,
              "plan output changed after the caller's cu_seqlens were modified and freed");
    }
    ak_plan_destroy(plan);
}

/* Packed QKV ([B][L][3][H][D], H = Hq = Hkv): q, k, v are views into one buffer. */
static void test_packed_qkv(ak_ctx *ctx) {
    enum { B = 2, L = 9, H = 3, D = 16 };
    float *qkv = (float *)malloc(sizeof(float) * B * L * 3 * H * D), o[B * H * L * D];
    double o64[B * H * L * D];
    for (int i = 0; i < B * L * 3 * H * D; i++)
        qkv[i] = (float)((i * 29) % 13) * 0.15f - 0.9f;
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.batch = B, d.num_heads_q = d.num_heads_kv = H, d.seqlen_q = d.seqlen_k = L, d.head_dim = D, d.causal = 1;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    for (int w = 0; w < 3; w++) {
        ak_tensor *x = w == 0 ? &t.q : w == 1 ? &t.k : &t.v;
        *x = ak_tensor_4d(qkv + w * H * D, AK_F32, B, H, L, D);
        x->stride[0] = L * 3 * H * D, x->stride[1] = D, x->stride[2] = 3 * H * D, x->stride[3] = 1;
    }
    t.o = ak_tensor_4d(o, AK_F32, B, H, L, D);
    CHECK_STATUS(ak_attention(ctx, &d, &t), AK_OK);
    ak_attn_desc d64 = d;
    d64.dtype_o = AK_F64;
    t.o = ak_tensor_4d(o64, AK_F64, B, H, L, D);
    CHECK_STATUS(ak_attention_ref(ctx, &d64, &t), AK_OK);
    double err = 0;
    for (int i = 0; i < B * H * L * D; i++)
        err = fmax(err, fabs(o[i] - o64[i]));
    CHECK(err < 1e-5, "packed QKV views: max error %g", err);
    free(qkv);
}

/* ---- bf16 / f16 conversions --------------------------------------------------------------------- */

static int h_is_nan(uint16_t h, int f16) {
    return f16 ? (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) : (h & 0x7f80u) == 0x7f80u && (h & 0x7fu);
}

/* One f32 value through both library conversions, compared with the independent ones. */
static int conv_agrees(float x) {
    uint16_t b = ak_f32_to_bf16(x), f = ak_f32_to_f16(x);
    if (isnan(x))
        return h_is_nan(b, 0) && h_is_nan(f, 1);
    return b == tu_f32_to_bf16(x) && f == tu_f32_to_f16(x);
}

static void test_conversions(void) {
    /* every 16-bit pattern decodes like the independent decoder and re-encodes to itself */
    int bad_b = 0, bad_f = 0;
    for (uint32_t h = 0; h <= 0xffffu; h++) {
        float xb = ak_bf16_to_f32((uint16_t)h), xf = ak_f16_to_f32((uint16_t)h);
        if (h_is_nan((uint16_t)h, 0) ? !isnan(xb) || !h_is_nan(ak_f32_to_bf16(xb), 0)
                                      : tu_f32_bits(xb) != tu_f32_bits(tu_bf16_to_f32((uint16_t)h)) ||
                                            ak_f32_to_bf16(xb) != h)
            bad_b++;
        if (h_is_nan((uint16_t)h, 1) ? !isnan(xf) || !h_is_nan(ak_f32_to_f16(xf), 1)
                                      : tu_f32_bits(xf) != tu_f32_bits(tu_f16_to_f32((uint16_t)h)) ||
                                            ak_f32_to_f16(xf) != h)
            bad_f++;
    }
    CHECK(bad_b == 0, "%d bf16 patterns do not round-trip (bf16 -> f32 -> bf16)", bad_b);
    CHECK(bad_f == 0, "%d f16 patterns do not round-trip (f16 -> f32 -> f16, subnormals included)", bad_f);
    /* hand-checked values: ties to even, overflow, subnormals, NaN with a low payload, -0 */
    CHECK(ak_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16(1 + 2^-8) tie should round to even 1.0");
    CHECK(ak_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16(1 + 3*2^-8) tie should round up to even");
    CHECK(ak_f32_to_bf16(tu_bits_f32(0x7f7fffffu)) == 0x7f80, "bf16(FLT_MAX) should round to inf");
    CHECK(ak_f32_to_bf16(tu_bits_f32(0x00010000u)) == 0x0001, "bf16 keeps f32 subnormals");
    CHECK(h_is_nan(ak_f32_to_bf16(tu_bits_f32(0x7f800001u)), 0), "bf16 of a NaN with only low payload bits "
          "became 0x%04x (truncation turns it into inf)", ak_f32_to_bf16(tu_bits_f32(0x7f800001u)));
    CHECK(ak_f32_to_bf16(-0.0f) == 0x8000 && ak_f32_to_f16(-0.0f) == 0x8000, "-0 keeps its sign");
    CHECK(ak_f32_to_f16(65520.0f) == 0x7c00, "f16(65520) tie should round to inf");
    CHECK(ak_f32_to_f16(65519.0f) == 0x7bff, "f16(65519) should be 65504");
    CHECK(ak_f32_to_f16(0x1p-24f) == 0x0001, "f16(2^-24) = smallest subnormal");
    CHECK(ak_f32_to_f16(0x1p-25f) == 0x0000, "f16(2^-25) tie should round to even 0");
    CHECK(ak_f32_to_f16(3 * 0x1p-25f) == 0x0002, "f16(1.5 * 2^-24) tie should round to even 2^-23");
    CHECK(ak_f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400, "f16 rounding up into the smallest normal");
    CHECK(ak_f32_to_f16(1e-10f) == 0x0000 && ak_f32_to_f16(-1e-10f) == 0x8000, "f16 underflow to +-0");
    CHECK(ak_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "f16(1 + 2^-11) tie should round to even 1.0");
    CHECK(ak_f32_to_f16(INFINITY) == 0x7c00 && ak_f32_to_f16(-INFINITY) == 0xfc00, "f16 infinities");
    CHECK(h_is_nan(ak_f32_to_f16(tu_bits_f32(0x7f800001u)), 1), "f16 of a NaN with only low payload bits "
          "became 0x%04x", ak_f32_to_f16(tu_bits_f32(0x7f800001u)));
    CHECK(ak_f16_to_f32(0x0001) == 0x1p-24f && ak_f16_to_f32(0x7bff) == 65504.0f, "f16 decode");
    /* f32 -> half against the independent converters: every exponent, random mantissas */
    rng g = rng_seed(7);
    int bad = 0;
    for (uint32_t e = 0; e < 256; e++)
        for (int i = 0; i < 4096; i++) {
            uint32_t m = (uint32_t)rng_u64(&g) & 0x7fffffu;
            if (i < 8) /* the tie and near-tie mantissas of both formats */
                m = (uint32_t[]){0x8000u, 0x18000u, 0x7fffu, 0x1000u, 0x3000u, 0xfffu, 0x7fffffu, 0}[i];
            uint32_t u = ((uint32_t)rng_u64(&g) & 0x80000000u) | (e << 23) | m;
            if (!conv_agrees(tu_bits_f32(u)) && bad++ < 5)
                fprintf(stderr, "  conversion of 0x%08x: lib bf16 0x%04x f16 0x%04x, expected 0x%04x 0x%04x\n", u,
                        ak_f32_to_bf16(tu_bits_f32(u)), ak_f32_to_f16(tu_bits_f32(u)), tu_f32_to_bf16(tu_bits_f32(u)),
                        tu_f32_to_f16(tu_bits_f32(u)));
        }
    CHECK(bad == 0, "%d of 1M f32 values convert differently from the independent RNE converters", bad);
}

int main(void) {
    ak_ctx *ctx = NULL;
    test_names();
    test_tensor_views();
    test_ctx();
    test_allocator();
    test_conversions();
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_api: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    base b;
    base_init(&b);
    test_invalid_pointers(ctx, &b);
    test_invalid_desc(ctx, &b);
    test_invalid_tensors(ctx, &b);
    test_invalid_metadata(ctx, &b);
    test_plans(ctx, &b);
    test_metadata_copied(ctx, &b);
    test_packed_qkv(ctx);
    base_free(&b);
    ak_ctx_destroy(ctx);
    return tc_finish("test_api");
}
