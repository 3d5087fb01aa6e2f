/* Internal: the kernel table of ak_qgemm (src/model/qgemm.c), one per ISA (src/kernels/<isa>/qgemm_<isa>.c).
 *
 * Two ways through a product y[m][n_out] = x[m][n_in] * W[n_out][n_in]^T:
 *   gemv  (m <= AK_QG_GEMV_MAX rows of x, decode): every weight row is decoded in registers and multiplied
 *         with the m activation rows at once; memory-bound, the weights are read exactly once.
 *   gemm  (larger m, prefill): a panel of nr weight rows x kc inputs is dequantized once into f32,
 *         k-major ([kc][nr], `pack`), and a register-blocked mr x nr micro-kernel (`tile`) runs it against
 *         every row of x.
 * Numerics (what makes the result independent of the thread count and the blocking):
 *   - the weights are the exact values of ak_dequantize (same roundings as ggml's dequantize_row_*);
 *   - gemv: each output is a function of its own weight row and x only (16-lane partial sums in a fixed
 *     pattern, reduced in a fixed order), whichever rows a thread computes next to it;
 *   - gemm: each output is one FMA chain over k in increasing order (the chain is stored to y and reloaded
 *     between k blocks, which is exact), whatever tile or thread computes it.
 */
#ifndef AK_MODEL_QGEMM_H
#define AK_MODEL_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "attnkit.h"

/* m at or below this runs the fused gemv (decode); above it the packed-panel gemm. */
#define AK_QG_GEMV_MAX 4
/* gemv of types without a fused decoder: rows are dequantized into scratch this many elements at a time
 * (a multiple of every block size) */
#define AK_QG_GEMV_CHUNK 4096

typedef struct ak_qgemm_kernels {
    const char *name;   /* e.g. "ak_k_qgemm_f32_12x32__avx512" */
    ak_isa isa;
    int mr, nr;         /* micro-tile: mr rows of x by nr weight rows (nr is the packed panel width) */
    /* y[i * ldy + r] = sum_k x[i * ldx + k] * W_r[k] for r < n_rows, i < m (1 <= m <= AK_QG_GEMV_MAX), where
     * W_r is the row at w + r * row_bytes (n_in elements of `type`). scratch: min(n_in, AK_QG_GEMV_CHUNK) floats,
     * 64-byte aligned, for types without a fused decoder (their rows go through ak__dequant_row). */
    void (*gemv)(int32_t type, const uint8_t *w, size_t row_bytes, int64_t n_rows, int64_t n_in, const float *x,
                 int64_t ldx, int m, float *y, int64_t ldy, float *scratch);
    /* 1 if gemv needs its scratch row for this type (0: it may be NULL) */
    int (*gemv_scratch)(int32_t type);
    /* Pack elements [k0, k0 + kc) (block-aligned) of nrows (1..nr) weight rows: dst[k * nr + r] = W_r[k0 + k];
     * dst[k * nr + r] = 0 for nrows <= r < nr. scratch: nr * kc floats, 64-byte aligned. */
    void (*pack)(int32_t type, const uint8_t *w, size_t row_bytes, int nrows, int64_t k0, int64_t kc, float *dst,
                 float *scratch);
    /* One micro-tile: for i < mr_eff (1..mr), j < nr_eff (1..nr):
     * y[i * ldy + j] = (accumulate ? y[i * ldy + j] : 0) + sum_{k < kc} x[i * ldx + k] * p[k * nr + j],
     * one FMA (or multiply-add) chain per element in increasing k. p: a packed panel as above. */
    void (*tile)(int mr_eff, int nr_eff, int64_t kc, const float *x, int64_t ldx, const float *p, float *y,
                 int64_t ldy, int accumulate);
} ak_qgemm_kernels;

extern const ak_qgemm_kernels ak_qgemm_kernels_scalar;
#ifdef AK_HAVE_AVX2_KERNELS
extern const ak_qgemm_kernels ak_qgemm_kernels_avx2;
#endif
#ifdef AK_HAVE_AVX512_KERNELS
extern const ak_qgemm_kernels ak_qgemm_kernels_avx512;
#endif

/* The table for an ISA (the best built one at or below it). */
const ak_qgemm_kernels *ak__qgemm_kernels_for(ak_isa isa);

#endif
