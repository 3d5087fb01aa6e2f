/*
 * test_model_qgemm.c — ak_qgemm (y[m][n_out] = x[m][n_in] * W^T, W in a GGUF weight type) against a plain
 * double-precision reference written here. No model file needed: the weights are random block bytes.
 *
 *   test_model_qgemm <scalar|avx2|avx512>   the sweep below with the context capped at that ISA (exit 77 when
 *                                           the CPU lacks it)
 *   test_model_qgemm args                   every invalid argument, one at a time, with its status; y untouched
 *   test_model_qgemm edge                   the model's shapes (and rows longer than the gemv's 4096-element
 *                                           dequantization chunk) through every ISA, both paths
 *
 * Sweep (per ISA): for every type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K), every m in
 * {1,2,3,4,5,7,17,64,113,300} and n_out in {1,3,31,33,100,257}, one n_in drawn from {1 block, 2 blocks, 640,
 * 1024, 2048} (n_in of F32/F16/BF16 may also be odd), random padding of ldx and ldy:
 *   - weights: random bytes per block (every quant bit pattern), the fp16 scales finite (mostly 2^-7..2^1,
 *     one in ten any finite fp16 pattern including zero and subnormals); F16 / BF16 / F32 elements finite;
 *   - x: uniform in [-1, 1], its padding columns NaN (must not be read); y: NaN before the call;
 *   - reference: W from ak_dequantize, y_ref = sum_k (double) w * (double) x;
 *     naive32 = the same sum in float, k in order, one rounding per product and per addition;
 *   - pass iff  max|y - y_ref| <= 2 * max|naive32 - y_ref| + floor,  floor = 2^-20 * max_o sum_k |w x|
 *     (about 16 float ulps of the largest magnitude sum; it only matters where naive32 is exact by luck);
 *   - every y[i][o] finite; the padding columns of y and the 16 floats behind the last row still NaN
 *     (bit pattern compared);
 *   - the same call with 1, 2 and 3 threads: identical bytes;
 *   - for the gemm path (m > 4), again with the blocking forced small (AK_QG_NC=32, AK_QG_KC=64: more panels,
 *     k cut into slices accumulated through y): identical bytes (each output is one FMA chain in k order).
 * Exact dequantization (per ISA, every type): x = identity rows (m = n_in: the gemm path; then m = 1..4
 * unit vectors: the gemv path) gives y[i][o] = W[o][i] exactly: the kernels' SIMD decoders must produce
 * bit for bit the values of ak_dequantize.
 * QUICK=1 (sanitizer builds) runs every third sweep case.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

#define CHECK_MSG(ctx, text)                                                                                   \
    CHECK(strstr(ak_ctx_last_error(ctx), (text)) != NULL, "last error \"%s\" does not mention \"%s\"",       \
          ak_ctx_last_error(ctx), (text))

static const int32_t TYPES[] = {AK_Q_F32, AK_Q_F16, AK_Q_BF16, AK_Q_Q8_0, AK_Q_Q4_0, AK_Q_Q4_1,
                                AK_Q_Q5_0, AK_Q_Q5_1, AK_Q_Q4_K, AK_Q_Q5_K, AK_Q_Q6_K};
#define N_TYPES ((int)(sizeof TYPES / sizeof TYPES[0]))
static const int MS[] = {1, 2, 3, 4, 5, 7, 17, 64, 113, 300};
static const int NOUTS[] = {1, 3, 31, 33, 100, 257};

static const uint32_t NAN_BITS = 0x7fc0dead;

static float nanpoison(void) { return tu_bits_f32(NAN_BITS); }

/* ---- random weights ---- */

/* A finite fp16: mostly a moderate scale 2^-7 .. 2^1 (random sign and mantissa), one in ten any finite
 * pattern (zero, subnormals, up to 65504). */
static uint16_t rand_scale(rng *r) {
    uint16_t s = (uint16_t)(rng_u64(r) & 0x83ffu);
    if (rng_chance(r, 0.1)) return (uint16_t)(s | (uint16_t)(rng_int(r, 31) << 10));
    return (uint16_t)(s | (uint16_t)((8 + rng_int(r, 9)) << 10));
}
static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* n_rows rows of n_in elements of `type`, row after row */
static uint8_t *rand_weights(rng *r, int32_t type, int64_t n_rows, int64_t n_in, size_t *bytes) {
    int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    int64_t nblocks = n_rows * (n_in / be);
    *bytes = (size_t)(nblocks * bb);
    uint8_t *w = (uint8_t *)malloc(*bytes + 1);
    for (int64_t q = 0; q < nblocks; q++) {
        uint8_t *b = w + q * bb;
        for (int64_t j = 0; j < bb; j++) b[j] = (uint8_t)rng_u64(r);
        switch (type) {
        case AK_Q_F32: {
            float v = (float)rng_range(r, -2.0, 2.0);
            memcpy(b, &v, 4);
            break;
        }
        case AK_Q_F16: put16(b, rand_scale(r)); break;
        case AK_Q_BF16: {
            uint16_t h = tu_f32_to_bf16((float)rng_range(r, -2.0, 2.0));
            put16(b, h);
            break;
        }
        case AK_Q_Q8_0: case AK_Q_Q4_0: case AK_Q_Q5_0: put16(b, rand_scale(r)); break;
        case AK_Q_Q4_1: case AK_Q_Q5_1: put16(b, rand_scale(r)); put16(b + 2, rand_scale(r)); break;
        case AK_Q_Q4_K: case AK_Q_Q5_K: put16(b, rand_scale(r)); put16(b + 2, rand_scale(r)); break;
        case AK_Q_Q6_K: put16(b + 208, rand_scale(r)); break;
        }
    }
    return w;
}

/* ---- one product, checked ---- */

typedef struct qcase {
    int32_t type;
    int64_t m, n_out, n_in, ldx, ldy;
    int xoff, yoff;   /* float offsets of x and y in their allocations (4-byte, not vector, alignment) */
} qcase;

static const char *case_str(const qcase *c) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s m=%lld n_out=%lld n_in=%lld ldx=%lld ldy=%lld", ak_qtype_name(c->type),
             (long long)c->m, (long long)c->n_out, (long long)c->n_in, (long long)c->ldx, (long long)c->ldy);
    return buf;
}

/* y buffer: [yoff floats][m rows of ldy][16 guard floats], all NaN */
static float *alloc_y(const qcase *c, size_t *n) {
    *n = (size_t)c->yoff + (size_t)(c->m * c->ldy) + 16;
    float *buf = (float *)malloc(*n * sizeof(float));
    for (size_t i = 0; i < *n; i++) buf[i] = nanpoison();
    return buf;
}

/* every element outside y's n_out columns still holds the poison */
static int y_outside_untouched(const qcase *c, const float *buf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int64_t rel = (int64_t)i - c->yoff;
        int inside = rel >= 0 && rel < c->m * c->ldy && rel % c->ldy < c->n_out;
        if (!inside && tu_f32_bits(buf[i]) != NAN_BITS) return 0;
    }
    return 1;
}

static int g_quick = 0;
static long g_cases = 0;
static double g_worst_ratio = 0.0;   /* max over cases of err / (2 naive + floor) */

/* Runs one case on ctx (ISA already capped): accuracy, poison, thread and blocking determinism. */
static void run_case(ak_ctx *ctx, rng *r, const qcase *c) {
    size_t wbytes;
    uint8_t *w = rand_weights(r, c->type, c->n_out, c->n_in, &wbytes);
    size_t xn = (size_t)c->xoff + (size_t)(c->m * c->ldx);
    float *xbuf = (float *)malloc(xn * sizeof(float));
    for (size_t i = 0; i < xn; i++) xbuf[i] = nanpoison();
    float *x = xbuf + c->xoff;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t k = 0; k < c->n_in; k++) x[i * c->ldx + k] = (float)rng_range(r, -1.0, 1.0);

    /* reference */
    float *wf = (float *)malloc((size_t)(c->n_out * c->n_in) * sizeof(float));
    CHECK_STATUS(ak_dequantize(ctx, c->type, w, wf, c->n_out * c->n_in), AK_OK);
    double err_naive = 0.0, smax = 0.0;
    double *ref = (double *)malloc((size_t)(c->m * c->n_out) * sizeof(double));
    for (int64_t i = 0; i < c->m; i++) {
        const float *xi = x + i * c->ldx;
        for (int64_t o = 0; o < c->n_out; o++) {
            const float *wo = wf + o * c->n_in;
            double s = 0.0, a = 0.0;
            float nv = 0.0f;
            for (int64_t k = 0; k < c->n_in; k++) {
                double p = (double)wo[k] * (double)xi[k];
                s += p;
                a += fabs(p);
                volatile float pf = wo[k] * xi[k];   /* volatile: no contraction into an FMA */
                nv = nv + pf;
            }
            ref[i * c->n_out + o] = s;
            if (fabs((double)nv - s) > err_naive) err_naive = fabs((double)nv - s);
            if (a > smax) smax = a;
        }
    }
    double floor_ = ldexp(smax, -20);

    /* the product with 1 thread */
    size_t yn;
    float *ybuf = alloc_y(c, &yn), *y = ybuf + c->yoff;
    CHECK_STATUS(ak_ctx_set_num_threads(ctx, 1), AK_OK);
    ak_status st = ak_qgemm(ctx, c->type, w, c->n_out, c->n_in, x, c->m, c->ldx, y, c->ldy);
    CHECK(st == AK_OK, "%s: %s (%s)", case_str(c), ak_status_string(st), ak_ctx_last_error(ctx));
    double err = 0.0;
    int finite = 1;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t o = 0; o < c->n_out; o++) {
            float v = y[i * c->ldy + o];
            if (!isfinite(v)) finite = 0;
            double e = fabs((double)v - ref[i * c->n_out + o]);
            if (!(e <= err)) err = e;   /* NaN propagates */
        }
    CHECK(finite, "%s: a non-finite (unwritten?) output", case_str(c));
    double bound = 2.0 * err_naive + floor_;
    CHECK(err <= bound, "%s: max error %.3g > 2 * naive32 %.3g + floor %.3g", case_str(c), err, err_naive, floor_);
    if (bound > 0 && err / bound > g_worst_ratio) g_worst_ratio = err / bound;
    CHECK(y_outside_untouched(c, ybuf, yn), "%s: y written outside its n_out columns", case_str(c));

    /* 2 and 3 threads, then the gemm path with a small blocking: the same bytes */
    float *y2buf = alloc_y(c, &yn), *y2 = y2buf + c->yoff;
    for (int nt = 2; nt <= 4; nt++) {
        int small = nt == 4;
        if (small && c->m <= 4) break;
        for (size_t i = 0; i < yn; i++) y2buf[i] = nanpoison();
        if (small) {
            setenv("AK_QG_NC", "32", 1);
            setenv("AK_QG_KC", "64", 1);
        }
        CHECK_STATUS(ak_ctx_set_num_threads(ctx, small ? 2 : nt), AK_OK);
        CHECK_STATUS(ak_qgemm(ctx, c->type, w, c->n_out, c->n_in, x, c->m, c->ldx, y2, c->ldy), AK_OK);
        if (small) {
            unsetenv("AK_QG_NC");
            unsetenv("AK_QG_KC");
        }
        CHECK(memcmp(ybuf, y2buf, yn * sizeof(float)) == 0, "%s: %s differs from 1 thread", case_str(c),
              small ? "the small blocking" : nt == 2 ? "2 threads" : "3 threads");
    }
    g_cases++;
    free(y2buf);
    free(ybuf);
    free(ref);
    free(wf);
    free(xbuf);
    free(w);
}

/* y = W via identity activations, through both paths; compared exactly with ak_dequantize. */
static void check_exact(ak_ctx *ctx, rng *r, int32_t type) {
    int64_t be = ak_qtype_block_elems(type);
    int64_t n_in = be == 1 ? 37 : be == 32 ? 64 : 256, n_out = 35;
    size_t wbytes;
    uint8_t *w = rand_weights(r, type, n_out, n_in, &wbytes);
    float *wf = (float *)malloc((size_t)(n_out * n_in) * sizeof(float));
    CHECK_STATUS(ak_dequantize(ctx, type, w, wf, n_out * n_in), AK_OK);
    float *eye = (float *)calloc((size_t)(n_in * n_in), sizeof(float));
    for (int64_t k = 0; k < n_in; k++) eye[k * n_in + k] = 1.0f;
    float *y = (float *)malloc((size_t)(n_in * n_out) * sizeof(float));
    CHECK_STATUS(ak_ctx_set_num_threads(ctx, 2), AK_OK);
    /* gemm: all n_in unit rows at once */
    CHECK_STATUS(ak_qgemm(ctx, type, w, n_out, n_in, eye, n_in, n_in, y, n_out), AK_OK);
    int bad = 0;
    for (int64_t k = 0; k < n_in && !bad; k++)
        for (int64_t o = 0; o < n_out; o++)
            if (y[k * n_out + o] != wf[o * n_in + k]) {   /* == : +0 and -0 both fine */
                CHECK(0, "%s gemm: W[%lld][%lld] = %.9g, dequantized %.9g", ak_qtype_name(type), (long long)o,
                      (long long)k, y[k * n_out + o], wf[o * n_in + k]);
                bad = 1;
                break;
            }
    /* gemv: 1..4 unit rows per call, every k */
    bad = 0;
    for (int64_t k0 = 0, mm = 1; k0 < n_in && !bad; k0 += mm, mm = mm % 4 + 1) {
        int64_t m = n_in - k0 < mm ? n_in - k0 : mm;
        CHECK_STATUS(ak_qgemm(ctx, type, w, n_out, n_in, eye + k0 * n_in, m, n_in, y, n_out), AK_OK);
        for (int64_t i = 0; i < m && !bad; i++)
            for (int64_t o = 0; o < n_out; o++)
                if (y[i * n_out + o] != wf[o * n_in + k0 + i]) {
                    CHECK(0, "%s gemv m=%lld: W[%lld][%lld] = %.9g, dequantized %.9g", ak_qtype_name(type),
                          (long long)m, (long long)o, (long long)(k0 + i), y[i * n_out + o], wf[o * n_in + k0 + i]);
                    bad = 1;
                    break;
                }
    }
    free(y);
    free(eye);
    free(wf);
    free(w);
}

static int group_isa(ak_isa isa) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) return 1;
    if (ak_ctx_set_max_isa(ctx, isa) != AK_OK) {
        printf("SKIP: this CPU lacks %s\n", ak_isa_name(isa));
        ak_ctx_destroy(ctx);
        return 77;
    }
    CHECK(ak_ctx_get_isa(ctx) == isa, "context ISA %s, wanted %s", ak_isa_name(ak_ctx_get_isa(ctx)), ak_isa_name(isa));
    rng r = rng_seed(1000 + (uint64_t)isa);
    for (int t = 0; t < N_TYPES; t++) check_exact(ctx, &r, TYPES[t]);
    long idx = 0;
    for (int t = 0; t < N_TYPES; t++) {
        int32_t type = TYPES[t];
        int64_t be = ak_qtype_block_elems(type);
        for (size_t mi = 0; mi < sizeof MS / sizeof MS[0]; mi++)
            for (size_t ni = 0; ni < sizeof NOUTS / sizeof NOUTS[0]; ni++, idx++) {
                rng cr = rng_seed((uint64_t)idx * 7919u + (uint64_t)isa);
                if (g_quick && idx % 3 != 0) continue;
                qcase c;
                c.type = type;
                c.m = MS[mi];
                c.n_out = NOUTS[ni];
                static const int64_t nins[] = {0, 0, 640, 1024, 2048};
                int64_t n_in = nins[rng_int(&cr, 5)];
                if (n_in == 0) n_in = be * (1 + rng_int(&cr, 2));
                if (be == 1 && rng_chance(&cr, 0.5)) n_in = 1 + rng_int(&cr, 70);   /* odd lengths */
                if (be == 256 && n_in == 640) n_in = 768;
                /* keep the double reference affordable: at most ~6M products per case */
                while (n_in > be && c.m * c.n_out * n_in > 6000000) n_in = (n_in / 2 / be) * be;
                c.n_in = n_in;
                c.ldx = n_in + (rng_chance(&cr, 0.5) ? rng_int(&cr, 9) : 0);
                c.ldy = c.n_out + (rng_chance(&cr, 0.5) ? 1 + rng_int(&cr, 9) : 0);
                c.xoff = rng_int(&cr, 4);
                c.yoff = rng_int(&cr, 4);
                run_case(ctx, &cr, &c);
            }
    }
    printf("%s: %ld cases, worst error / bound = %.3f\n", ak_isa_name(isa), g_cases, g_worst_ratio);
    ak_ctx_destroy(ctx);
    return tc_finish(ak_isa_name(isa));
}

/* ---- invalid arguments ---- */

static void group_args(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) return;
    rng r = rng_seed(7);
    size_t wbytes;
    uint8_t *w = rand_weights(&r, AK_Q_Q8_0, 4, 64, &wbytes);
    float x[2 * 64], y[2 * 8];
    for (int i = 0; i < 128; i++) x[i] = 1.0f;
    for (int i = 0; i < 16; i++) y[i] = nanpoison();
    float ysave[16];
    memcpy(ysave, y, sizeof y);

    CHECK_STATUS(ak_qgemm(NULL, AK_Q_Q8_0, w, 4, 64, x, 2, 64, y, 8), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, NULL, 4, 64, x, 2, 64, y, 8), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, NULL, 2, 64, y, 8), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 2, 64, NULL, 8), AK_ERR_NULL_POINTER);
    static const int32_t bad_types[] = {-1, 4, 5, 9, 10, 11, 15, 16, 20, 29, 31, 1000};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        CHECK_STATUS(ak_qgemm(ctx, bad_types[i], w, 4, 64, x, 2, 64, y, 8), AK_ERR_UNSUPPORTED_DTYPE);
        CHECK_MSG(ctx, "type");
    }
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, -1, 64, x, 2, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "n_out");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, -1, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 0, x, 2, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "n_in");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, -32, x, 2, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 48, x, 2, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "block");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q4_K, w, 1, 64, x, 2, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q6_K, w, 1, 384, x, 1, 384, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 2, 63, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "ldx");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 2, 64, y, 3), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "ldy");
    /* byte counts that overflow int64 / the address space */
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, INT64_MAX / 2, 64, x, 1, 64, y, INT64_MAX / 2), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "overflow");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, (int64_t)1 << 40, 32 << 20, x, 1, 32 << 20, y, (int64_t)1 << 40),
                 AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, INT64_MAX / 64, 64, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 2, INT64_MAX / 2, y, 8), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_F32, w, 4, INT64_MAX / 2, x, 1, INT64_MAX / 2, y, 8), AK_ERR_INVALID_ARGUMENT);
    /* x, y not float-aligned */
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, (const float *)(const void *)((const char *)x + 1), 1, 64, y, 8),
                 AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "aligned");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 1, 64, (float *)(void *)((char *)y + 2), 8),
                 AK_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(y, ysave, sizeof y) == 0, "y written by a refused call");
    /* y overlapping x or W */
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 1, 64, x + 60, 8), AK_ERR_OUTPUT_OVERLAP);
    CHECK_MSG(ctx, "overlaps x");
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x + 2, 1, 64, x, 8), AK_ERR_OUTPUT_OVERLAP);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 2, 64, x + 124, 4), AK_ERR_OUTPUT_OVERLAP);
    {
        /* W and y in one buffer: y right after the last weight byte is fine, one float earlier is not */
        size_t wb = wbytes;   /* 4 rows x 2 blocks x 34 = 272 bytes, a multiple of 4 */
        float *buf = (float *)malloc(wb + 64);
        memcpy(buf, w, wb);
        float *yy = (float *)(void *)((char *)buf + wb);
        CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, buf, 4, 64, x, 1, 64, yy, 4), AK_OK);
        CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, buf, 4, 64, x, 1, 64, yy - 1, 4), AK_ERR_OUTPUT_OVERLAP);
        CHECK_MSG(ctx, "weights");
        free(buf);
    }
    CHECK(memcmp(y, ysave, sizeof y) == 0, "y written by a refused call");
    /* one row: any ldx / ldy >= the row (nothing beyond row 0 is addressed), through both paths */
    {
        float ya[4], yb[4];
        CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 1, 64, ya, 4), AK_OK);
        CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 1, INT64_MAX, yb, INT64_MAX), AK_OK);
        CHECK(memcmp(ya, yb, sizeof ya) == 0, "m = 1 with ldx = ldy = INT64_MAX differs");
        setenv("AK_QG_GEMV_MAX", "0", 1);   /* m = 1 through the gemm path */
        CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, w, 4, 64, x, 1, INT64_MAX, yb, INT64_MAX), AK_OK);
        unsetenv("AK_QG_GEMV_MAX");
        for (int o = 0; o < 4; o++) CHECK(fabsf(ya[o] - yb[o]) <= 1e-4f * (1.0f + fabsf(ya[o])), "gemm m = 1: %g vs %g", yb[o], ya[o]);
    }
    /* empty problems: AK_OK, nothing read or written, pointers may be NULL */
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, NULL, 0, 64, NULL, 2, 64, NULL, 0), AK_OK);
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q4_K, NULL, 5, 256, NULL, 0, 256, NULL, 5), AK_OK);
    /* ... but the other arguments are still checked */
    CHECK_STATUS(ak_qgemm(ctx, AK_Q_Q8_0, NULL, 0, 33, NULL, 0, 64, NULL, 0), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_qgemm(ctx, 99, NULL, 0, 64, NULL, 0, 64, NULL, 0), AK_ERR_UNSUPPORTED_DTYPE);
    ak_ctx_destroy(ctx);
    free(w);
}

/* ---- edge cases that the sweep does not reach ---- */

static void group_edge(void) {
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) return;
    rng r = rng_seed(11);
    /* Every ISA on shapes of the model (Q8_0 LM head slice, Q5_0 ffn_up, Q4_K ffn_down, Q6_K ffn_down) with
     * both paths, 2 threads; y and x at odd float offsets (already in the sweep; here with the real widths). */
    struct { int32_t t; int64_t n_out, n_in, m; } shapes[] = {
        {AK_Q_Q8_0, 4099, 640, 1}, {AK_Q_Q8_0, 1000, 640, 13}, {AK_Q_Q5_0, 2048, 640, 2},
        {AK_Q_Q5_0, 256, 640, 40}, {AK_Q_Q4_K, 640, 2048, 3}, {AK_Q_Q4_K, 640, 1024, 29}, {AK_Q_Q6_K, 640, 2048, 1},
        {AK_Q_Q6_K, 640, 2048, 6},
        /* rows longer than the gemv's dequantization chunk (4096): F16 / BF16 everywhere, a K-quant on scalar */
        {AK_Q_F16, 5, 9000, 2}, {AK_Q_BF16, 3, 4133, 1}, {AK_Q_Q4_K, 3, 8448, 3},
    };
    for (int isa = AK_ISA_SCALAR; isa <= AK_ISA_AVX512; isa++) {
        if (ak_ctx_set_max_isa(ctx, (ak_isa)isa) != AK_OK) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            qcase c = {shapes[s].t, shapes[s].m, shapes[s].n_out, shapes[s].n_in, shapes[s].n_in + 1, shapes[s].n_out + 3, 1, 3};
            run_case(ctx, &r, &c);
        }
    }
    ak_ctx_destroy(ctx);
}

int main(int argc, char **argv) {
    const char *g = argc > 1 ? argv[1] : "avx512";
    g_quick = tu_env_long("QUICK", 0) != 0;
    if (strcmp(g, "scalar") == 0) return group_isa(AK_ISA_SCALAR);
    if (strcmp(g, "avx2") == 0) return group_isa(AK_ISA_AVX2);
    if (strcmp(g, "avx512") == 0) return group_isa(AK_ISA_AVX512);
    if (strcmp(g, "args") == 0) group_args();
    else if (strcmp(g, "edge") == 0) group_edge();
    else {
        fprintf(stderr, "usage: test_model_qgemm scalar|avx2|avx512|args|edge\n");
        return 2;
    }
    return tc_finish(g);
}
