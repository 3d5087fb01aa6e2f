/* common.c — see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int tc_failures = 0;
int tc_checks = 0;

/* ---- PRNG ----------------------------------------------------------------------------------- */

rng rng_seed(uint64_t seed) {
    /* Start each stream at a hashed point of the Weyl sequence: with a plain linear start, seed
     * i+1's stream would be seed i's stream shifted by one draw (correlated neighbouring cases). */
    rng r;
    r.s = seed ^ 0x632BE59BD9B4E019ull;
    r.s = rng_u64(&r);
    return r;
}

uint64_t rng_u64(rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double rng_unif(rng *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
double rng_range(rng *r, double lo, double hi) { return lo + (hi - lo) * rng_unif(r); }
int rng_int(rng *r, int n) { return (int)(rng_u64(r) % (uint64_t)n); }
int rng_pick(rng *r, const int *vals, int n) { return vals[rng_int(r, n)]; }
int rng_chance(rng *r, double p) { return rng_unif(r) < p; }

/* ---- Conversions ---------------------------------------------------------------------------- */

uint32_t tu_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
float tu_bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t tu_f32_to_bf16(float x) {
    uint32_t u = tu_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even (overflow -> inf) */
    return (uint16_t)(u >> 16);
}

float tu_bf16_to_f32(uint16_t h) { return tu_bits_f32((uint32_t)h << 16); }

uint16_t tu_f32_to_f16(float x) {
    uint32_t u = tu_f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 (the tie above 65504 rounds to even = 65536): inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal f16 (>= 2^-14): rebias the exponent, RNE on 13 bits */
        a += 0xfffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
    }
    /* subnormal f16 (or zero): count units of 2^-24, exact scaling then RNE (default mode) */
    float units = tu_bits_f32(a) * 16777216.0f;
    return (uint16_t)(sign | (uint16_t)nearbyintf(units)); /* 1024 units = smallest normal */
}

float tu_f16_to_f32(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31)
        return tu_bits_f32(sign | 0x7f800000u | (m << 13));
    return tu_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

double tu_round_to(ak_dtype dt, double x) {
    switch (dt) {
    case AK_F32: return (double)(float)x;
    case AK_BF16: return tu_bf16_to_f32(tu_f32_to_bf16((float)x));
    case AK_F16: return tu_f16_to_f32(tu_f32_to_f16((float)x));
    default: return x;
    }
}

double tu_max_abs(const double *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

double tu_max_err(const double *x, const double *ref, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double dlt = fabs(x[i] - ref[i]);
        if (!(dlt <= INFINITY) || !isfinite(x[i])) return INFINITY;
        m = fmax(m, dlt);
    }
    return m;
}

double tu_ulp(ak_dtype dt, double x) {
    int mant_bits, min_exp; /* explicit mantissa bits, exponent of the smallest normal */
    switch (dt) {
    case AK_F32: mant_bits = 23; min_exp = -126; break;
    case AK_BF16: mant_bits = 7; min_exp = -126; break;
    case AK_F16: mant_bits = 10; min_exp = -14; break;
    default: mant_bits = 52; min_exp = -1022; break;
    }
    x = fabs(x);
    int e = min_exp;
    if (x > 0 && isfinite(x)) {
        int ex;
        frexp(x, &ex); /* x = f * 2^ex, f in [0.5, 1) */
        if (ex - 1 > e)
            e = ex - 1;
    }
    return ldexp(1.0, e - mant_bits);
}

const char *tu_dtype_short(ak_dtype dt) {
    switch (dt) {
    case AK_F32: return "f32";
    case AK_BF16: return "bf16";
    case AK_F16: return "f16";
    case AK_F64: return "f64";
    default: return "bad";
    }
}

/* ---- Tensor views --------------------------------------------------------------------------- */

static size_t esize_of(ak_dtype dt) { return dt == AK_F32 ? 4 : dt == AK_F64 ? 8 : 2; }

const char *tlayout_name(tlayout lay) {
    static const char *names[] = {"contig", "bshd", "padded", "permuted", "bcast0"};
    return (unsigned)lay < LAY_COUNT ? names[lay] : "bad";
}

int64_t ten_offset(const ak_tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int k = 0; k < t->ndim; k++)
        off += idx[k] * t->stride[k];
    return off;
}

static double load_elem(ak_dtype dt, const void *p) {
    switch (dt) {
    case AK_F32: { float f; memcpy(&f, p, 4); return f; }
    case AK_BF16: { uint16_t h; memcpy(&h, p, 2); return tu_bf16_to_f32(h); }
    case AK_F16: { uint16_t h; memcpy(&h, p, 2); return tu_f16_to_f32(h); }
    case AK_F64: { double v; memcpy(&v, p, 8); return v; }
    default: return NAN;
    }
}

static void store_elem(ak_dtype dt, void *p, double v) {
    switch (dt) {
    case AK_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
    case AK_BF16: { uint16_t h = tu_f32_to_bf16((float)v); memcpy(p, &h, 2); break; }
    case AK_F16: { uint16_t h = tu_f32_to_f16((float)v); memcpy(p, &h, 2); break; }
    case AK_F64: memcpy(p, &v, 8); break;
    default: break;
    }
}

double ten_get(const ak_tensor *t, const int64_t *idx) {
    const unsigned char *p = (const unsigned char *)t->data;
    return load_elem(t->dtype, p + ten_offset(t, idx) * (int64_t)esize_of(t->dtype));
}

void ten_set(const ak_tensor *t, const int64_t *idx, double v) {
    unsigned char *p = (unsigned char *)t->data;
    store_elem(t->dtype, p + ten_offset(t, idx) * (int64_t)esize_of(t->dtype), v);
}

double ten_get4(const ak_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t idx[4] = {a, b, c, d};
    return ten_get(t, idx);
}
void ten_set4(const ak_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d, double v) {
    int64_t idx[4] = {a, b, c, d};
    ten_set(t, idx, v);
}
double ten_get3(const ak_tensor *t, int64_t a, int64_t b, int64_t c) {
    int64_t idx[3] = {a, b, c};
    return ten_get(t, idx);
}
void ten_set3(const ak_tensor *t, int64_t a, int64_t b, int64_t c, double v) {
    int64_t idx[3] = {a, b, c};
    ten_set(t, idx, v);
}

/* Poison element pattern: a NaN of the dtype with a recognisable payload. */
static void poison_bytes(ak_dtype dt, unsigned char *p) {
    static const uint32_t f32 = 0x7fa5a5a5u;
    static const uint16_t bf16 = 0x7fa5u, f16 = 0x7e5au;
    static const uint64_t f64 = 0x7ff4a5a5a5a5a5a5ull;
    switch (dt) {
    case AK_F32: memcpy(p, &f32, 4); break;
    case AK_BF16: memcpy(p, &bf16, 2); break;
    case AK_F16: memcpy(p, &f16, 2); break;
    default: memcpy(p, &f64, 8); break;
    }
}

/* Span of the view in elements: 1 + max offset (0 if any dim is empty). */
static int64_t view_span(const ak_tensor *t) {
    int64_t span = 1;
    for (int k = 0; k < t->ndim; k++) {
        if (t->shape[k] == 0)
            return 0;
        span += (t->shape[k] - 1) * t->stride[k];
    }
    return span;
}

static void layout_strides(ak_tensor *t, tlayout lay, rng *r) {
    int nd = t->ndim, order[AK_MAX_DIMS];
    int64_t pad[AK_MAX_DIMS] = {0, 0, 0, 0}, inner = 1;
    for (int k = 0; k < nd; k++)
        order[k] = k; /* order[0] = outermost dim in memory */
    if (lay == LAY_BSHD && nd == 4) { /* the library's own constructor: [B][L][H][D] in memory */
        ak_tensor v = ak_tensor_bshd(NULL, t->dtype, t->shape[0], t->shape[2], t->shape[1], t->shape[3]);
        memcpy(t->stride, v.stride, sizeof t->stride);
        return;
    }
    if (lay == LAY_PADDED || lay == LAY_PERMUTED) {
        for (int k = 0; k < nd; k++)
            pad[k] = rng_chance(r, 0.5) ? rng_int(r, 5) : 0;
    }
    if (lay == LAY_PERMUTED) {
        for (int k = nd - 1; k > 0; k--) { /* Fisher-Yates */
            int j = rng_int(r, k + 1), tmp = order[k];
            order[k] = order[j];
            order[j] = tmp;
        }
        inner = rng_chance(r, 0.25) ? 2 : 1;
    }
    int64_t s = inner;
    for (int k = nd - 1; k >= 0; k--) {
        int dim = order[k];
        t->stride[dim] = s;
        int64_t ext = t->shape[dim] + pad[dim];
        s *= ext > 0 ? ext : 1;
    }
    if (lay == LAY_BCAST0)
        t->stride[0] = 0;
}

int tbuf_make(tbuf *b, ak_dtype dt, int ndim, const int64_t *shape, tlayout lay, rng *r) {
    memset(b, 0, sizeof *b);
    b->t.dtype = dt;
    b->t.ndim = ndim;
    for (int k = 0; k < ndim; k++)
        b->t.shape[k] = shape[k];
    layout_strides(&b->t, lay, r);
    b->esize = esize_of(dt);
    b->mem_elems = (size_t)view_span(&b->t) + 2 * TBUF_GUARD;
    b->mem = (unsigned char *)malloc(b->mem_elems * b->esize);
    if (!b->mem)
        return -1;
    b->t.data = b->mem + TBUF_GUARD * b->esize;
    tbuf_poison(b);
    return 0;
}

int tbuf_make_like(tbuf *b, const tbuf *like) {
    *b = *like;
    b->mem = (unsigned char *)malloc(b->mem_elems * b->esize);
    if (!b->mem)
        return -1;
    b->t.data = b->mem + TBUF_GUARD * b->esize;
    tbuf_poison(b);
    return 0;
}

void tbuf_free(tbuf *b) {
    free(b->mem);
    memset(b, 0, sizeof *b);
}

void tbuf_poison(tbuf *b) {
    for (size_t i = 0; i < b->mem_elems; i++)
        poison_bytes(b->t.dtype, b->mem + i * b->esize);
}

int64_t tbuf_numel(const tbuf *b) {
    int64_t n = 1;
    for (int k = 0; k < b->t.ndim; k++)
        n *= b->t.shape[k];
    return n;
}

/* Visit every logical index in row-major order; returns the number visited. */
#define FOR_EACH_INDEX(t, idx, body)                                                              \
    do {                                                                                          \
        int64_t n_ = 1;                                                                           \
        for (int k_ = 0; k_ < (t)->ndim; k_++)                                                    \
            n_ *= (t)->shape[k_];                                                                 \
        for (int64_t lin_ = 0; lin_ < n_; lin_++) {                                               \
            int64_t rem_ = lin_;                                                                  \
            for (int k_ = (t)->ndim - 1; k_ >= 0; k_--) {                                         \
                idx[k_] = rem_ % (t)->shape[k_];                                                  \
                rem_ /= (t)->shape[k_];                                                           \
            }                                                                                     \
            body;                                                                                 \
        }                                                                                         \
    } while (0)

int tbuf_outside_untouched(const tbuf *b) {
    unsigned char *inview = (unsigned char *)calloc(b->mem_elems, 1);
    unsigned char pz[8];
    int ok = 1;
    int64_t idx[AK_MAX_DIMS];
    if (!inview)
        return 0;
    FOR_EACH_INDEX(&b->t, idx, inview[TBUF_GUARD + ten_offset(&b->t, idx)] = 1);
    poison_bytes(b->t.dtype, pz);
    for (size_t i = 0; i < b->mem_elems && ok; i++)
        if (!inview[i] && memcmp(b->mem + i * b->esize, pz, b->esize) != 0)
            ok = 0;
    free(inview);
    return ok;
}

void tbuf_to_f64(const tbuf *b, double *dense) {
    int64_t idx[AK_MAX_DIMS], i = 0;
    FOR_EACH_INDEX(&b->t, idx, dense[i++] = ten_get(&b->t, idx));
}

int tbuf_same_bytes(const tbuf *a, const tbuf *b) {
    return a->mem_elems == b->mem_elems && a->esize == b->esize &&
           memcmp(a->mem, b->mem, a->mem_elems * a->esize) == 0;
}

/* ---- Misc ----------------------------------------------------------------------------------- */

int tc_finish(const char *test_name) {
    if (tc_failures)
        fprintf(stderr, "%s: %d of %d checks FAILED\n", test_name, tc_failures, tc_checks);
    else
        printf("%s: all %d checks passed\n", test_name, tc_checks);
    return tc_failures ? 1 : 0;
}

double tu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long tu_env_long(const char *name, long dflt) {
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    return strtol(s, NULL, 10);
}
