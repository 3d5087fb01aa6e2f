/*
 * common.h — small helpers shared by the attnkit tests: a seeded PRNG, independent bf16/f16
 * conversions, owned strided tensor buffers with guard zones, and a tiny check/report framework.
 *
 * Everything here uses only the public header; nothing in the tests depends on library internals.
 * The conversions are written independently of the library's ak_f32_to_bf16() & co., so that a
 * bug in one is caught by comparing with the other (test_api checks them against each other).
 */
#ifndef AK_TEST_COMMON_H
#define AK_TEST_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "attnkit.h"

/* ---- PRNG: splitmix64, seeded by case index ------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

rng rng_seed(uint64_t seed);
uint64_t rng_u64(rng *r);
double rng_unif(rng *r);                     /* [0, 1) */
double rng_range(rng *r, double lo, double hi); /* [lo, hi) */
int rng_int(rng *r, int n);                  /* [0, n); n >= 1 */
int rng_pick(rng *r, const int *vals, int n);   /* one of vals[0..n) */
int rng_chance(rng *r, double p);            /* 1 with probability p */

/* ---- Independent dtype conversions (round to nearest even; NaN stays NaN) -------------------- */

/* The bits of a float and back (memcpy, no aliasing games). */
uint32_t tu_f32_bits(float x);
float tu_bits_f32(uint32_t u);
uint16_t tu_f32_to_bf16(float x);
float tu_bf16_to_f32(uint16_t h);
uint16_t tu_f32_to_f16(float x);
float tu_f16_to_f32(uint16_t h);
/* Round a value to what `dt` can store (f32/bf16/f16 go through float; f64 unchanged). */
double tu_round_to(ak_dtype dt, double x);
/* Unit in the last place of `dt` at magnitude |x| (the spacing of representable values there). */
double tu_ulp(ak_dtype dt, double x);
/* max |x[i]| over n values; max |x[i] - ref[i]|, or INFINITY as soon as an x[i] is NaN (an unwritten,
 * poisoned element) or Inf */
double tu_max_abs(const double *x, int64_t n);
double tu_max_err(const double *x, const double *ref, int64_t n);
const char *tu_dtype_short(ak_dtype dt);    /* "f32", "bf16", "f16", "f64" */

/* ---- Strided tensor views with owned memory ------------------------------------------------- */

/* Memory layouts a test can ask for. All describe the same logical [n0][n1][n2][n3] tensor. */
typedef enum tlayout {
    LAY_CONTIG = 0,   /* row-major, like ak_tensor_4d */
    LAY_BSHD,         /* 4-d only: ak_tensor_bshd ([B][L][H][D] in memory) */
    LAY_PADDED,       /* row-major order, random padding after every dim (strides > extents) */
    LAY_PERMUTED,     /* random memory order of the dims, random padding, innermost stride 1 or 2 */
    LAY_BCAST0,       /* like LAY_CONTIG but stride[0] = 0: one copy broadcast over dim 0 (inputs only) */
    LAY_COUNT
} tlayout;

const char *tlayout_name(tlayout lay);

#define TBUF_GUARD 16 /* poisoned elements before and after the view's span */

/* An ak_tensor plus its allocation: [GUARD elements][span of the view][GUARD elements]. */
typedef struct tbuf {
    ak_tensor t;
    unsigned char *mem;
    size_t mem_elems;
    size_t esize;
} tbuf;

/* Allocate a view of logical shape `shape[ndim]` with layout `lay` (random parts drawn from r,
 * which may be NULL for LAY_CONTIG/LAY_BSHD). Every byte of the allocation holds the poison
 * (a NaN bit pattern of the dtype). Returns 0 on success. */
int tbuf_make(tbuf *b, ak_dtype dt, int ndim, const int64_t *shape, tlayout lay, rng *r);
/* Same dtype, shape and strides as `like`, freshly poisoned. */
int tbuf_make_like(tbuf *b, const tbuf *like);
void tbuf_free(tbuf *b);
void tbuf_poison(tbuf *b);
/* 1 if every element of the allocation that is not part of the view still holds the poison. */
int tbuf_outside_untouched(const tbuf *b);
/* Number of logical elements (product of the shape). */
int64_t tbuf_numel(const tbuf *b);
/* Copy the logical elements, row-major, into dense[numel] as doubles. */
void tbuf_to_f64(const tbuf *b, double *dense);
/* 1 if the two allocations are byte-identical (same layout assumed). */
int tbuf_same_bytes(const tbuf *a, const tbuf *b);

/* Element access through any ak_tensor view (ndim 1..4; idx has ndim entries). */
int64_t ten_offset(const ak_tensor *t, const int64_t *idx);
double ten_get(const ak_tensor *t, const int64_t *idx);
void ten_set(const ak_tensor *t, const int64_t *idx, double v); /* rounds to the dtype (RNE) */
/* 4-d shortcuts (ndim must be 4) and 3-d (ndim 3). */
double ten_get4(const ak_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d);
void ten_set4(const ak_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d, double v);
double ten_get3(const ak_tensor *t, int64_t a, int64_t b, int64_t c);
void ten_set3(const ak_tensor *t, int64_t a, int64_t b, int64_t c, double v);

/* ---- Checks --------------------------------------------------------------------------------- */

extern int tc_failures; /* failed CHECKs so far in this process */
extern int tc_checks;

/* CHECK(cond, fmt, ...): count, and on failure print file:line and the message. */
#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        tc_checks++;                                                                              \
        if (!(cond)) {                                                                            \
            tc_failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

/* CHECK_STATUS(call, expected): the call must return exactly `expected`. */
#define CHECK_STATUS(call, expected)                                                              \
    do {                                                                                          \
        ak_status st_ = (call);                                                                   \
        tc_checks++;                                                                              \
        if (st_ != (expected)) {                                                                  \
            tc_failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__,      \
                    #call, ak_status_string(st_), ak_status_string(expected));                    \
        }                                                                                         \
    } while (0)

/* Print a summary line and return the process exit code (0 iff no failure). */
int tc_finish(const char *test_name);

/* Wall-clock seconds (monotonic). */
double tu_now(void);
/* Integer from the environment, or `dflt` when unset/empty. */
long tu_env_long(const char *name, long dflt);

#endif /* AK_TEST_COMMON_H */
