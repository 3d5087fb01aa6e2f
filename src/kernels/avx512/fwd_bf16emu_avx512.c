/* The AVX-512-BF16 attention kernels with vdpbf16ps emulated by fp32 FMAs (AVX-512F only): lets the
 * tests exercise the bf16-pair code path on CPUs without AVX512_BF16 (AK_EMULATE_BF16DOT=1). */
#define AK_BF16_EMULATE 1
#include "../avx512bf16/fwd_avx512bf16.c"
