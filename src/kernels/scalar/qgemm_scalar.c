/*
 * Portable kernels of ak_qgemm (src/model/qgemm.h): every type goes through ak__dequant_row, then plain C.
 * The reference path for AK_MAX_ISA=scalar and for CPUs without AVX2; also the model of what the SIMD
 * tables compute (same weights, same per-element FMA chains in the gemm).
 */
#include <string.h>

#include "core/internal.h"
#include "model/qgemm.h"
#include "model/quant.h"

#define SC_MR 4
#define SC_NR 8
#define SC_LANES 8

/* y[i][r] = x_i . W_r: the row dequantized into scratch (AK_QG_GEMV_CHUNK elements at a time), 8 interleaved
 * partial sums (lane = k mod 8), reduced pairwise. */
static void gemv_scalar(int32_t type, const uint8_t *w, size_t rb, int64_t n_rows, int64_t n_in, const float *x,
                        int64_t ldx, int m, float *y, int64_t ldy, float *scratch) {
    const int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    for (int64_t r = 0; r < n_rows; r++) {
        float acc[AK_QG_GEMV_MAX][SC_LANES] = {{0}};
        for (int64_t c0 = 0; c0 < n_in; c0 += AK_QG_GEMV_CHUNK) {   /* chunks keep the lane pattern (8 | chunk) */
            const int64_t cn = n_in - c0 < AK_QG_GEMV_CHUNK ? n_in - c0 : AK_QG_GEMV_CHUNK;
            ak__dequant_row(type, w + (size_t)r * rb + (size_t)(c0 / be) * (size_t)bb, scratch, cn);
            for (int i = 0; i < m; i++) {
                const float *xi = x + (size_t)i * (size_t)ldx + (size_t)c0;
                float *a = acc[i];
                int64_t k = 0;
                for (; k + SC_LANES <= cn; k += SC_LANES)
                    for (int l = 0; l < SC_LANES; l++) a[l] += scratch[k + l] * xi[k + l];
                for (int l = 0; k < cn; k++, l++) a[l] += scratch[k] * xi[k];
            }
        }
        for (int i = 0; i < m; i++) {
            const float *a = acc[i];
            y[(size_t)i * (size_t)ldy + (size_t)r] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        }
    }
}

static int gemv_scratch_scalar(int32_t type) {
    (void)type;
    return 1;
}

static void pack_scalar(int32_t type, const uint8_t *w, size_t rb, int nrows, int64_t k0, int64_t kc, float *dst,
                        float *scratch) {
    int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    size_t off = (size_t)(k0 / be) * (size_t)bb;
    for (int r = 0; r < nrows; r++) ak__dequant_row(type, w + (size_t)r * rb + off, scratch + (size_t)r * (size_t)kc, kc);
    for (int64_t k = 0; k < kc; k++) {
        float *d = dst + (size_t)k * SC_NR;
        for (int r = 0; r < nrows; r++) d[r] = scratch[(size_t)r * (size_t)kc + (size_t)k];
        for (int r = nrows; r < SC_NR; r++) d[r] = 0.0f;
    }
}

static void tile_scalar(int mr, int nr, int64_t kc, const float *x, int64_t ldx, const float *p, float *y, int64_t ldy,
                        int accumulate) {
    float c[SC_MR][SC_NR];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < SC_NR; j++) c[i][j] = accumulate && j < nr ? y[(size_t)i * (size_t)ldy + (size_t)j] : 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        const float *pk = p + (size_t)k * SC_NR;
        for (int i = 0; i < mr; i++) {
            float a = x[(size_t)i * (size_t)ldx + (size_t)k];
            for (int j = 0; j < SC_NR; j++) c[i][j] += a * pk[j];
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) y[(size_t)i * (size_t)ldy + (size_t)j] = c[i][j];
}

const ak_qgemm_kernels ak_qgemm_kernels_scalar = {
    "ak_k_qgemm_f32_4x8__scalar", AK_ISA_SCALAR, SC_MR, SC_NR, gemv_scalar, gemv_scratch_scalar, pack_scalar, tile_scalar,
};
