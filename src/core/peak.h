/*
 * peak.h — inner loops of ak_measure_peak() (src/core/peak.c), one set per ISA.
 *
 * Each loop runs on the calling thread only; peak.c runs one copy per OpenMP thread and times them.
 *  - ak_peak_fma_<isa>(iters, sink): `iters` iterations of 12 independent accumulator chains of
 *    FMAs (x4 unrolled); returns the number of floating-point operations performed (an FMA on one
 *    lane = 2 FLOP) and stores a value derived from every accumulator in *sink so nothing is dead.
 *  - ak_peak_dot_avx512bf16(iters, sink): same with vdpbf16ps (one zmm instruction = 32 bf16 pairs =
 *    64 FLOP).
 *  - ak_peak_sum_<isa>(x, n): sum of x[0..n) with several independent vector accumulators (a pure
 *    streaming read). x must be 64-byte aligned; any n.
 * Only the loops whose ISA folder is built exist: guard their use with AK_HAVE_<ISA>_KERNELS.
 */
#ifndef AK_CORE_PEAK_H
#define AK_CORE_PEAK_H

#include <stddef.h>
#include <stdint.h>

double ak_peak_fma_scalar(int64_t iters, float *sink);
float ak_peak_sum_scalar(const float *x, size_t n);

#if defined(AK_HAVE_AVX2_KERNELS)
double ak_peak_fma_avx2(int64_t iters, float *sink);
float ak_peak_sum_avx2(const float *x, size_t n);
#endif

#if defined(AK_HAVE_AVX512_KERNELS)
double ak_peak_fma_avx512(int64_t iters, float *sink);
float ak_peak_sum_avx512(const float *x, size_t n);
#endif

#if defined(AK_HAVE_AVX512BF16_KERNELS)
double ak_peak_dot_avx512bf16(int64_t iters, float *sink);
#endif

#endif /* AK_CORE_PEAK_H */
