/* Portable C micro-kernels of the fused forward attention (any head dim, any tile). */
#include "core/internal.h"

#include <string.h>

#include <math.h>

static void qk_scalar(int nk, int d, int mpad, const float *k, int64_t ldk, const float *qt, int64_t ldqt, float scale,
                      float *st, int64_t ldst) {
    for (int j = 0; j < nk; j++) {
        float *srow = st + (size_t)j * ldst;
        for (int q = 0; q < mpad; q++) srow[q] = 0.0f;
        for (int c = 0; c < d; c++) {
            float kv = k[(size_t)j * ldk + c];
            const float *qrow = qt + (size_t)c * ldqt;
            for (int q = 0; q < mpad; q++) srow[q] += kv * qrow[q];
        }
        for (int q = 0; q < mpad; q++) srow[q] *= scale;
    }
}

static void pv_scalar(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                      int64_t ldot) {
    for (int c = 0; c < dv; c++) {
        float *orow = ot + (size_t)c * ldot;
        for (int j = 0; j < nk; j++) {
            float vv = v[(size_t)j * ldv + c];
            const float *prow = pt + (size_t)j * ldpt;
            for (int q = 0; q < mpad; q++) orow[q] += vv * prow[q];
        }
    }
}

static void pvb_scalar(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                       int64_t ldot, float beta) {
    for (int c = 0; c < dv; c++) {
        float *orow = ot + (size_t)c * ldot;
        for (int q = 0; q < mpad; q++) orow[q] = beta == 1.0f ? orow[q] : beta == 0.0f ? 0.0f : beta * orow[q];
    }
    pv_scalar(nk, dv, mpad, v, ldv, pt, ldpt, ot, ldot);
}

static void softmax_scalar(int nk, int mpad, float *st, int64_t ldst, float *m, float *l, float *alpha) {
    for (int q = 0; q < mpad; q++) {
        float mx = m[q];
        for (int j = 0; j < nk; j++) mx = st[(size_t)j * ldst + q] > mx ? st[(size_t)j * ldst + q] : mx;
        if (mx == -INFINITY) { /* nothing visible yet: keep zeros, never compute (-inf) - (-inf) */
            alpha[q] = 1.0f;
            for (int j = 0; j < nk; j++) st[(size_t)j * ldst + q] = 0.0f;
            continue;
        }
        float a = expf(m[q] - mx), sum = 0.0f;
        for (int j = 0; j < nk; j++) {
            float e = expf(st[(size_t)j * ldst + q] - mx);
            st[(size_t)j * ldst + q] = e;
            sum += e;
        }
        alpha[q] = a;
        l[q] = l[q] * a + sum;
        m[q] = mx;
    }
}

static void rescale_scalar(int dv, int mpad, float *ot, int64_t ldot, const float *alpha) {
    for (int c = 0; c < dv; c++)
        for (int q = 0; q < mpad; q++) ot[(size_t)c * ldot + q] *= alpha[q];
}

static void mask_scalar(int nk, int mpad, float *st, int64_t ldst, const int32_t *lo, const int32_t *hi) {
    for (int j = 0; j < nk; j++)
        for (int q = 0; q < mpad; q++)
            if (j < lo[q] || j > hi[q]) st[(size_t)j * ldst + q] = -INFINITY;
}

static void softcap_scalar(int nk, int mpad, float *st, int64_t ldst, float cap) {
    float inv = 1.0f / cap;
    for (int j = 0; j < nk; j++)
        for (int q = 0; q < mpad; q++) st[(size_t)j * ldst + q] = cap * tanhf(st[(size_t)j * ldst + q] * inv);
}

static void to_f32_scalar(ak_dtype t, const void *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ak__load(src, t, i);
}

/* One cache row to f32: src row of dtype t (unit stride), times scale for AK_I8. */
static void row_f32(ak_dtype t, const void *src, float scale, float *dst, int n) {
    switch (t) {
    case AK_F32: memcpy(dst, src, sizeof(float) * (size_t)n); break;
    case AK_BF16:
        for (int c = 0; c < n; c++) dst[c] = ak_bf16_to_f32(((const uint16_t *)src)[c]);
        break;
    case AK_F16:
        for (int c = 0; c < n; c++) dst[c] = ak_f16_to_f32(((const uint16_t *)src)[c]);
        break;
    case AK_I8:
        for (int c = 0; c < n; c++) dst[c] = (float)((const int8_t *)src)[c] * scale;
        break;
    case AK_F64:
        for (int c = 0; c < n; c++) dst[c] = (float)((const double *)src)[c];
        break;
    }
}

void ak__rows_f32_c(ak_dtype t, int n, int cols, const void *const *rows, const float *scales, float *dst, int64_t ld) {
    int cpad = (cols + 15) / 16 * 16;
    for (int j = 0; j < n; j++) {
        float *d = dst + (size_t)j * ld;
        row_f32(t, rows[j], t == AK_I8 ? scales[j] : 1.0f, d, cols);
        for (int c = cols; c < cpad; c++) d[c] = 0.0f;
    }
}

void ak__kt_pack_c(ak_dtype t, int n, int d, const void *const *rows, const float *scales, float *kt, int64_t ldkt) {
    float buf[AK_MAX_HEAD_DIM];
    int npad = (n + 15) / 16 * 16;
    for (int j = 0; j < n; j++) {
        row_f32(t, rows[j], t == AK_I8 ? scales[j] : 1.0f, buf, d);
        for (int c = 0; c < d; c++) kt[(size_t)c * ldkt + j] = buf[c];
    }
    for (int c = 0; c < d; c++)
        for (int j = n; j < npad; j++) kt[(size_t)c * ldkt + j] = 0.0f;
}

/* 16 x 16 tiles (cache-friendly on both sides) */
void ak__tpose_c(int n, int m, const float *src, int64_t lds, float *dst, int64_t ldd) {
    const int npad = (n + 15) / 16 * 16;
    for (int i0 = 0; i0 < npad; i0 += 16)
        for (int c0 = 0; c0 < m; c0 += 16) {
            const int ie = i0 + 16 < n ? i0 + 16 : n, ce = c0 + 16 < m ? c0 + 16 : m;
            for (int c = c0; c < ce; c++) {
                float *d1 = dst + (size_t)c * ldd;
                int i = i0;
                for (; i < ie; i++) d1[i] = src[(size_t)i * lds + c];
                for (; i < i0 + 16; i++) d1[i] = 0.0f;
            }
        }
}

const ak_fwd_kernels ak_fwd_kernels_scalar = {
    "ak_k_fwd_f32_1x1__scalar", AK_ISA_SCALAR, qk_scalar, pv_scalar, softmax_scalar, rescale_scalar, mask_scalar, softcap_scalar, to_f32_scalar,
    ak__rows_f32_c, ak__kt_pack_c, NULL, NULL, NULL, NULL, ak__tpose_c, pvb_scalar,
};
