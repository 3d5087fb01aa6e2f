/* Tensor views, dtypes and scalar conversions. */
#include "core/internal.h"

#include <string.h>

const char *ak_dtype_name(ak_dtype t) {
    switch (t) {
    case AK_F32: return "f32";
    case AK_BF16: return "bf16";
    case AK_F16: return "f16";
    case AK_F64: return "f64";
    case AK_I8: return "i8";
    }
    return "unknown";
}

size_t ak_dtype_size(ak_dtype t) {
    switch (t) {
    case AK_F32: return 4;
    case AK_BF16: return 2;
    case AK_F16: return 2;
    case AK_F64: return 8;
    case AK_I8: return 1;
    }
    return 0;
}

static ak_tensor make(void *data, ak_dtype dtype, int ndim, const int64_t *n) {
    ak_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.shape[i] = n[i];
        t.stride[i] = s;
        s *= n[i] > 0 ? n[i] : 1;
    }
    return t;
}

ak_tensor ak_tensor_4d(void *data, ak_dtype dtype, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    int64_t n[4] = {n0, n1, n2, n3};
    return make(data, dtype, 4, n);
}
ak_tensor ak_tensor_3d(void *data, ak_dtype dtype, int64_t n0, int64_t n1, int64_t n2) {
    int64_t n[3] = {n0, n1, n2};
    return make(data, dtype, 3, n);
}
ak_tensor ak_tensor_2d(void *data, ak_dtype dtype, int64_t n0, int64_t n1) {
    int64_t n[2] = {n0, n1};
    return make(data, dtype, 2, n);
}
ak_tensor ak_tensor_1d(void *data, ak_dtype dtype, int64_t n0) {
    int64_t n[1] = {n0};
    return make(data, dtype, 1, n);
}

/* Memory [B][L][H][D], logical [B][H][L][D]. */
ak_tensor ak_tensor_bshd(void *data, ak_dtype dtype, int64_t B, int64_t L, int64_t H, int64_t D) {
    ak_tensor t = ak_tensor_4d(data, dtype, B, H, L, D);
    t.stride[3] = 1;
    t.stride[2] = H * D;
    t.stride[1] = D;
    t.stride[0] = L * H * D;
    return t;
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t ak_f32_to_bf16(float x) { return ak__f32_to_bf16(x); }

float ak_bf16_to_f32(uint16_t x) { return bits_f32((uint32_t)x << 16); }

uint16_t ak_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                         /* below 2^-14: subnormal or 0 */
        if (a < 0x33000000u) return (uint16_t)sign;                /* < 2^-25 rounds to 0 */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        int shift = 113 - (int)(a >> 23) + 13;                     /* 126 - exp + 13 */
        uint32_t half = 1u << (shift - 1);
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);                    /* RNE at bit 13 */
    r = (r - 0x38000000u) >> 13;                                   /* rebias 127 -> 15 */
    return (uint16_t)(sign | r);
}

float ak_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        float f = (float)m * (1.0f / 16777216.0f); /* m * 2^-24 */
        return sign ? -f : f;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}
