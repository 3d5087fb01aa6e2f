/*
 * peak_scalar.c — portable C loops for ak_measure_peak() (see src/core/peak.h).
 * Without -mfma the compiler emits a multiply and an add per step: 2 FLOP either way.
 */
#include "core/peak.h"

/* 12 independent chains a_i = a_i * x + y, 4 steps per iteration: 96 FLOP per iteration.
 * (a multiply and an add per step that cannot be hoisted; a_i converges to y / (1 - x) = 1.) */
double ak_peak_fma_scalar(int64_t iters, float *sink) {
    volatile float vx = 0.9999f, vy = 1.0e-4f;
    float x = vx, y = vy;
    float a0 = 1.0f, a1 = 1.1f, a2 = 1.2f, a3 = 1.3f, a4 = 1.4f, a5 = 1.5f;
    float a6 = 1.6f, a7 = 1.7f, a8 = 1.8f, a9 = 1.9f, a10 = 2.0f, a11 = 2.1f;
    for (int64_t it = 0; it < iters; it++) {
        for (int u = 0; u < 4; u++) {
            a0 = a0 * x + y; a1 = a1 * x + y; a2 = a2 * x + y;    a3 = a3 * x + y;
            a4 = a4 * x + y; a5 = a5 * x + y; a6 = a6 * x + y;    a7 = a7 * x + y;
            a8 = a8 * x + y; a9 = a9 * x + y; a10 = a10 * x + y; a11 = a11 * x + y;
        }
    }
    *sink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    return (double)iters * 4.0 * 12.0 * 2.0;
}

/* Streaming sum with 8 independent accumulators. */
float ak_peak_sum_scalar(const float *x, size_t n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[u] += x[i + u];
    for (; i < n; i++) s[0] += x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}
