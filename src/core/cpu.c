/* ISA detection: cpuid feature bits AND the OS's XSAVE state (XGETBV), resolved once. */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <cpuid.h>
#define AK_X86 1
#endif

const char *ak_isa_name(ak_isa isa) {
    switch (isa) {
    case AK_ISA_SCALAR: return "scalar";
    case AK_ISA_AVX2: return "avx2";
    case AK_ISA_AVX512: return "avx512";
    case AK_ISA_AVX512BF16: return "avx512bf16";
    }
    return "unknown";
}

#ifdef AK_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static ak_isa detect_x86(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return AK_ISA_SCALAR;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return AK_ISA_SCALAR;
    uint64_t xcr0 = xgetbv0();
    int os_ymm = (xcr0 & 0x6) == 0x6;            /* SSE + AVX state */
    int os_zmm = (xcr0 & 0xE6) == 0xE6;          /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!os_ymm) return AK_ISA_SCALAR;
    if (__get_cpuid_max(0, NULL) < 7) return AK_ISA_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    int avx512bf16 = (a1 >> 5) & 1;
    if (!(avx2 && fma && f16c)) return AK_ISA_SCALAR;
    if (!(os_zmm && avx512f && avx512dq && avx512bw && avx512vl)) return AK_ISA_AVX2;
    if (!avx512bf16) return AK_ISA_AVX512;
    return AK_ISA_AVX512BF16;
}
#endif

static ak_isa g_detected;
static int g_detected_init;

ak_isa ak_isa_detect(void) {
    /* Racing first callers all compute and store the same value. */
    if (!__atomic_load_n(&g_detected_init, __ATOMIC_ACQUIRE)) {
#ifdef AK_X86
        ak_isa isa = detect_x86();
#else
        ak_isa isa = AK_ISA_SCALAR;
#endif
        /* Never report an ISA whose kernels were not built. */
#ifndef AK_HAVE_AVX512BF16_KERNELS
        if (isa > AK_ISA_AVX512) isa = AK_ISA_AVX512;
#endif
#ifndef AK_HAVE_AVX512_KERNELS
        if (isa > AK_ISA_AVX2) isa = AK_ISA_AVX2;
#endif
#ifndef AK_HAVE_AVX2_KERNELS
        if (isa > AK_ISA_SCALAR) isa = AK_ISA_SCALAR;
#endif
        __atomic_store_n(&g_detected, isa, __ATOMIC_RELAXED);
        __atomic_store_n(&g_detected_init, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&g_detected, __ATOMIC_RELAXED);
}

/* AK_MAX_ISA=scalar|avx2|avx512|avx512bf16 caps the detected ISA; unknown values are ignored. */
ak_isa ak__isa_from_env(ak_isa detected) {
    const char *s = getenv("AK_MAX_ISA");
    if (!s || !*s) return detected;
    for (int i = AK_ISA_SCALAR; i <= AK_ISA_AVX512BF16; i++)
        if (strcmp(s, ak_isa_name((ak_isa)i)) == 0) return (ak_isa)i < detected ? (ak_isa)i : detected;
    return detected;
}
