/* Weight storage types of GGUF files: block geometry and dequantization to f32.
 *
 * Layouts follow ggml's block structs (facts from ggml-common.h / ggml-quants.c, written in our words in
 * ../shared/specs/gemma3-runner.md §3). Every product is computed in the same order as ggml's reference
 * dequantizers (d * q, or d * sc * q - dmin * m with d * sc and dmin * m formed first) so the results are
 * bitwise equal to gguf-py's numpy dequantizers (tests/test_model_gguf.c checks this on real tensors).
 */
#include "model/quant.h"

#include <string.h>

#include "core/internal.h"

static float q_f16(const uint8_t *p) { return ak_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

const char *ak_qtype_name(int32_t type) {
    switch (type) {
    case AK_Q_F32: return "f32";
    case AK_Q_F16: return "f16";
    case AK_Q_Q4_0: return "q4_0";
    case AK_Q_Q4_1: return "q4_1";
    case AK_Q_Q5_0: return "q5_0";
    case AK_Q_Q5_1: return "q5_1";
    case AK_Q_Q8_0: return "q8_0";
    case AK_Q_Q4_K: return "q4_K";
    case AK_Q_Q5_K: return "q5_K";
    case AK_Q_Q6_K: return "q6_K";
    case AK_Q_BF16: return "bf16";
    }
    return NULL;
}

int32_t ak_qtype_block_elems(int32_t type) {
    switch (type) {
    case AK_Q_F32: case AK_Q_F16: case AK_Q_BF16: return 1;
    case AK_Q_Q4_0: case AK_Q_Q4_1: case AK_Q_Q5_0: case AK_Q_Q5_1: case AK_Q_Q8_0: return 32;
    case AK_Q_Q4_K: case AK_Q_Q5_K: case AK_Q_Q6_K: return 256;
    }
    return 0;
}

int32_t ak_qtype_block_bytes(int32_t type) {
    switch (type) {
    case AK_Q_F32: return 4;
    case AK_Q_F16: case AK_Q_BF16: return 2;
    case AK_Q_Q4_0: return 18;
    case AK_Q_Q4_1: return 20;
    case AK_Q_Q5_0: return 22;
    case AK_Q_Q5_1: return 24;
    case AK_Q_Q8_0: return 34;
    case AK_Q_Q4_K: return 144;
    case AK_Q_Q5_K: return 176;
    case AK_Q_Q6_K: return 210;
    }
    return 0;
}

/* 6-bit scale and min of sub-block s (0..7) of a Q4_K / Q5_K block, from the 12 packed bytes. */
static void k_scale_min(const uint8_t *sc, int s, int *scale, int *min) {
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4);
        *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
}

/* One block of `type` at b into y (block_elems floats). */
void ak__dequant_block(int32_t type, const uint8_t *b, float *y) {
    switch (type) {
    case AK_Q_F32: memcpy(y, b, 4); return;
    case AK_Q_F16: y[0] = q_f16(b); return;
    case AK_Q_BF16: y[0] = ak_bf16_to_f32((uint16_t)(b[0] | (b[1] << 8))); return;
    case AK_Q_Q8_0: {
        float d = q_f16(b);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
        return;
    }
    case AK_Q_Q4_0: {
        float d = q_f16(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((qs[j] & 0xF) - 8);
            y[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
        return;
    }
    case AK_Q_Q4_1: {
        float d = q_f16(b), m = q_f16(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(qs[j] & 0xF) + m;
            y[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
        return;
    }
    case AK_Q_Q5_0: case AK_Q_Q5_1: {
        int one = type == AK_Q_Q5_1;
        float d = q_f16(b), m = one ? q_f16(b + 2) : 0.0f;
        const uint8_t *hp = b + (one ? 4 : 2);
        uint32_t qh = (uint32_t)hp[0] | ((uint32_t)hp[1] << 8) | ((uint32_t)hp[2] << 16) | ((uint32_t)hp[3] << 24);
        const uint8_t *qs = hp + 4;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            int x0 = (qs[j] & 0xF) | h0, x1 = (qs[j] >> 4) | h1;
            if (one) {
                y[j] = d * (float)x0 + m;
                y[j + 16] = d * (float)x1 + m;
            } else {
                y[j] = d * (float)(x0 - 16);
                y[j + 16] = d * (float)(x1 - 16);
            }
        }
        return;
    }
    case AK_Q_Q4_K: case AK_Q_Q5_K: {
        int five = type == AK_Q_Q5_K;
        float d = q_f16(b), dmin = q_f16(b + 2);
        const uint8_t *sc = b + 4;
        const uint8_t *qh = five ? b + 16 : NULL;
        const uint8_t *qs = b + (five ? 48 : 16);
        for (int g = 0; g < 4; g++) {
            int s0, m0, s1, m1;
            k_scale_min(sc, 2 * g, &s0, &m0);
            k_scale_min(sc, 2 * g + 1, &s1, &m1);
            float d0 = d * (float)s0, mm0 = dmin * (float)m0, d1 = d * (float)s1, mm1 = dmin * (float)m1;
            for (int l = 0; l < 32; l++) {
                int lo = qs[32 * g + l] & 0xF, hi = qs[32 * g + l] >> 4;
                if (five) {
                    lo += ((qh[l] >> (2 * g)) & 1) << 4;
                    hi += ((qh[l] >> (2 * g + 1)) & 1) << 4;
                }
                y[64 * g + l] = d0 * (float)lo - mm0;
                y[64 * g + 32 + l] = d1 * (float)hi - mm1;
            }
        }
        return;
    }
    case AK_Q_Q6_K: {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = q_f16(b + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *l8 = ql + 64 * h, *h8 = qh + 32 * h;
            const int8_t *s8 = sc + 8 * h;
            float *o = y + 128 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((l8[l] & 0xF) | ((h8[l] >> 0) & 3) << 4) - 32;
                int q2 = (int)((l8[l + 32] & 0xF) | ((h8[l] >> 2) & 3) << 4) - 32;
                int q3 = (int)((l8[l] >> 4) | ((h8[l] >> 4) & 3) << 4) - 32;
                int q4 = (int)((l8[l + 32] >> 4) | ((h8[l] >> 6) & 3) << 4) - 32;
                o[l] = d * (float)s8[is] * (float)q1;
                o[l + 32] = d * (float)s8[is + 2] * (float)q2;
                o[l + 64] = d * (float)s8[is + 4] * (float)q3;
                o[l + 96] = d * (float)s8[is + 6] * (float)q4;
            }
        }
        return;
    }
    }
}

void ak__dequant_row(int32_t type, const void *src, float *dst, int64_t n) {
    if (type == AK_Q_F32) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    int64_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    const uint8_t *p = (const uint8_t *)src;
    for (int64_t i = 0; i < n / be; i++) ak__dequant_block(type, p + i * bb, dst + i * be);
}

ak_status ak_dequantize(ak_ctx *ctx, int32_t type, const void *src, float *dst, int64_t n) {
    if (!src || !dst) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_dequantize: src and dst are required");
    int32_t be = ak_qtype_block_elems(type);
    if (be == 0) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_dequantize: unknown weight type id %d", (int)type);
    if (n < 0 || n % be != 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_dequantize: n = %lld is not a non-negative multiple of %s's block of %d",
                        (long long)n, ak_qtype_name(type), (int)be);
    ak__dequant_row(type, src, dst, n);
    return AK_OK;
}
