/* ak_qgemm: y = x * W^T with W stored in a GGUF weight type (the linear layers and the LM head of the model
 * runner). This file is the framework: argument validation, the choice between the fused gemv (decode) and
 * the packed-panel gemm (prefill), blocking and threads. The arithmetic lives in the per-ISA kernel tables
 * (src/model/qgemm.h; src/kernels/<isa>/qgemm_<isa>.c). docs/model/qgemm.md has the design and the numbers.
 */
#include "model/qgemm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "model/quant.h"

#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

/* gemm blocking: a thread packs nc weight rows x kc inputs (a panel of at most QG_PANEL_BYTES, nc >= QG_NC: in
 * L2) and sweeps rows of x over it, mr rows at a time; the x rows of one sweep (mr * kc floats, 30 KiB at most)
 * stay in L1 while the nr-wide sub-panels stream past from L2. Rows longer than QG_KC_MAX are cut into
 * block-aligned slices of about QG_KC_TARGET inputs (y accumulates between slices). */
#define QG_NC 128
#define QG_PANEL_BYTES (384 << 10)
#define QG_KC_MAX 640
#define QG_KC_TARGET 512
/* below this many multiply-adds a call runs on one thread (a parallel region costs a few microseconds) */
#define QG_SERIAL_MACS (1 << 16)
/* gemm: an m slice of a work item has at least QG_MC_MIN rows (each slice re-packs its panel) when it is cut
 * for the threads, and at most QG_MC_MAX rows (x rows streamed per panel: 512 x 640 floats = 1.3 MB) */
#define QG_MC_MIN 96
#define QG_MC_MAX 512

const ak_qgemm_kernels *ak__qgemm_kernels_for(ak_isa isa) {
#ifdef AK_HAVE_AVX512_KERNELS
    if (isa >= AK_ISA_AVX512) return &ak_qgemm_kernels_avx512;
#endif
#ifdef AK_HAVE_AVX2_KERNELS
    if (isa >= AK_ISA_AVX2) return &ak_qgemm_kernels_avx2;
#endif
    (void)isa;
    return &ak_qgemm_kernels_scalar;
}

/* Tuning overrides for experiments (docs/model/qgemm.md): AK_QG_NC, AK_QG_KC, AK_QG_MC, AK_QG_COPY_X,
 * AK_QG_GEMV_MAX. Read at every call. */
static int64_t qg_env(const char *name, int64_t dflt, int64_t lo, int64_t hi) {
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    char *end;
    long long v = strtoll(e, &end, 10);
    return (*end == '\0' && v >= lo && v <= hi) ? (int64_t)v : dflt;
}

/* a * b + c as a byte count, or -1 when it does not fit in int64 (all inputs >= 0). */
static int64_t mul_add(int64_t a, int64_t b, int64_t c) {
    if (a != 0 && b > (INT64_MAX - c) / a) return -1;
    return a * b + c;
}

static int spans_overlap(uintptr_t a, uint64_t na, uintptr_t b, uint64_t nb) {
    return a < b + nb && b < a + na;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- decode: rows split into contiguous ranges (16-row granules), one per thread ---- */
static ak_status run_gemv(const ak_ctx *ctx, const ak_qgemm_kernels *k, int32_t type, const uint8_t *w, size_t rb,
                          int64_t n_out, int64_t n_in, const float *x, int64_t m, int64_t ldx, float *y,
                          int64_t ldy) {
    int nt = ctx->n_threads;
    int64_t granules = ceil_div(n_out, 16);
    if ((double)n_out * (double)n_in * (double)m < QG_SERIAL_MACS) nt = 1;
    if (nt > granules) nt = (int)granules;
    /* only the types without a fused decoder touch the scratch row; the rest never allocate */
    size_t per = ((size_t)(n_in < AK_QG_GEMV_CHUNK ? n_in : AK_QG_GEMV_CHUNK) + 15) & ~(size_t)15;
    float *ws_raw = NULL, *ws = NULL;
    if (k->gemv_scratch(type)) {
        ws_raw = (float *)ak__alloc(ctx, (per * (size_t)nt + 16) * sizeof(float));
        if (!ws_raw) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_qgemm: cannot allocate %lld bytes of scratch",
                                     (long long)(per * sizeof(float) * (size_t)nt));
        ws = (float *)(((uintptr_t)ws_raw + 63) & ~(uintptr_t)63);
    }
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int t = 0, n = 1;
#ifdef AK_USE_OPENMP
        t = omp_get_thread_num();
        n = omp_get_num_threads();
#endif
        int64_t g0 = granules * t / n, g1 = granules * (t + 1) / n;
        int64_t r0 = g0 * 16, r1 = g1 * 16 < n_out ? g1 * 16 : n_out;
        /* more than AK_QG_GEMV_MAX rows of x (only when AK_QG_GEMV_MAX is raised, for experiments): groups of
         * them over chunks of 32 weight rows, so that a chunk is decoded from L1 for every group */
        for (int64_t c0 = r0; c0 < r1; c0 += 32) {
            int64_t cn = r1 - c0 < 32 ? r1 - c0 : 32;
            for (int64_t i0 = 0; i0 < m; i0 += AK_QG_GEMV_MAX) {
                int mi = m - i0 < AK_QG_GEMV_MAX ? (int)(m - i0) : AK_QG_GEMV_MAX;
                k->gemv(type, w + (size_t)c0 * rb, rb, cn, n_in, x + (size_t)i0 * (size_t)ldx, ldx, mi,
                        y + (size_t)i0 * (size_t)ldy + (size_t)c0, ldy, ws ? ws + per * (size_t)t : NULL);
            }
        }
    }
    ak__free(ctx, ws_raw);
    return AK_OK;
}

/* 1 if mr rows at a stride of ldx floats would put more than 4 of them into one set of a 64-set L1 (the
 * remaining ways hold the weight panel). Env AK_QG_COPY_X=0/1 forces the answer (experiments, tests). */
static int x_rows_collide(int64_t ldx, int mr) {
    int64_t forced = qg_env("AK_QG_COPY_X", -1, 0, 1);
    if (forced >= 0) return (int)forced;
    int count[64] = {0};
    int64_t line = (ldx % 1024) * 4 / 64;   /* only the stride modulo 4 KiB picks the sets (and m = 1 allows any ldx) */
    for (int i = 0; i < mr; i++)
        if (++count[(line * i) % 64] > 4) return 1;
    return 0;
}

/* ---- prefill: work items = (panel of nc weight rows) x (slice of the rows of x) ---- */
static ak_status run_gemm(const ak_ctx *ctx, const ak_qgemm_kernels *k, int32_t type, const uint8_t *w, size_t rb,
                          int64_t n_out, int64_t n_in, const float *x, int64_t m, int64_t ldx, float *y,
                          int64_t ldy) {
    const int64_t be = ak_qtype_block_elems(type);
    const int mr = k->mr, nr = k->nr;
    int64_t kc_max = qg_env("AK_QG_KC", QG_KC_MAX, 1, 1 << 20), kc_target = kc_max < QG_KC_TARGET ? kc_max : QG_KC_TARGET;
    int64_t kc = n_in;
    if (n_in > kc_max) {
        int64_t kslices = ceil_div(n_in, kc_target);
        kc = ceil_div(ceil_div(n_in, kslices), be) * be;
    }
    if (kc > n_in) kc = n_in;
    int64_t nc = QG_PANEL_BYTES / (4 * kc) / nr * nr;
    if (nc < QG_NC) nc = QG_NC;
    nc = qg_env("AK_QG_NC", nc, 1, 1 << 16);
    nc = ceil_div(nc, nr) * nr;
    if (nc > ceil_div(n_out, nr) * nr) nc = ceil_div(n_out, nr) * nr;

    int nt = ctx->n_threads;
    int64_t panels = ceil_div(n_out, nc);
    int64_t slices = 1;
    if (nt > 1 && (panels < 4 * (int64_t)nt || panels % nt != 0)) {
        /* too few panels to keep every thread busy to the end: cut m as well (each slice packs its panel again) */
        slices = ceil_div(4 * (int64_t)nt, panels);
        int64_t most = m / QG_MC_MIN;
        if (slices > most) slices = most;
        if (slices < 1) slices = 1;
    }
    /* ... and never more than QG_MC_MAX rows of x per item, so that the x rows one pass over a panel streams
     * stay in L3 for the next panels (the threads run the panels of one m-block side by side, see `it`) */
    int64_t mc_max = qg_env("AK_QG_MC", QG_MC_MAX, 1, INT64_MAX / 2);
    if (slices < ceil_div(m, mc_max)) slices = ceil_div(m, mc_max);
    int64_t mc = ceil_div(ceil_div(m, slices), mr) * mr;
    slices = ceil_div(m, mc);
    int64_t items = panels * slices;
    if ((double)n_out * (double)n_in * (double)m < QG_SERIAL_MACS) nt = 1;
    if (nt > items) nt = (int)items;

    /* The mr rows of x that one micro-tile broadcasts from must not crowd into a few L1 sets (a row stride of
     * 4 or 8 KiB puts all of them into one 8-way set, and the tile loses a third of its speed). With such a
     * stride they are copied into a small buffer whose row stride is an odd number of cache lines. */
    int copy_x = x_rows_collide(ldx, mr);
    int64_t ldxb = ceil_div(kc, 16) * 16;
    if ((ldxb / 16) % 2 == 0) ldxb += 16;
    size_t pan = (size_t)nc * (size_t)kc, scr = (size_t)nr * (size_t)kc, xbn = (size_t)mr * (size_t)ldxb;
    size_t per = (pan + scr + xbn + 15) & ~(size_t)15;
    /* +16 floats: the workspace is aligned up to 64 bytes below */
    size_t bytes = (per * (size_t)nt + 16) * sizeof(float);
    float *ws_raw = (float *)ak__alloc(ctx, bytes);
    if (!ws_raw) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_qgemm: cannot allocate %zu bytes of workspace", bytes);
    float *ws = (float *)(((uintptr_t)ws_raw + 63) & ~(uintptr_t)63);

#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int t = 0;
#ifdef AK_USE_OPENMP
        t = omp_get_thread_num();
#endif
        float *panel = ws + per * (size_t)t, *scratch = panel + pan, *xb = scratch + scr;
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t it = 0; it < items; it++) {
            int64_t s = it / panels, p = it % panels;   /* m-block major: the x rows are shared while hot */
            int64_t o0 = p * nc, on = n_out - o0 < nc ? n_out - o0 : nc;
            int64_t i0 = s * mc, in = m - i0 < mc ? m - i0 : mc;
            for (int64_t k0 = 0; k0 < n_in; k0 += kc) {
                int64_t kn = n_in - k0 < kc ? n_in - k0 : kc;
                for (int64_t j = 0; j < on; j += nr) {
                    int nrows = on - j < nr ? (int)(on - j) : nr;
                    k->pack(type, w + (size_t)(o0 + j) * rb, rb, nrows, k0, kn, panel + (size_t)j * (size_t)kn, scratch);
                }
                for (int64_t i = i0; i < i0 + in; i += mr) {
                    int mre = i0 + in - i < mr ? (int)(i0 + in - i) : mr;
                    const float *xt = x + (size_t)i * (size_t)ldx + (size_t)k0;
                    int64_t ldt = ldx;
                    if (copy_x) {
                        for (int r = 0; r < mre; r++)
                            memcpy(xb + (size_t)r * (size_t)ldxb, xt + (size_t)r * (size_t)ldx, (size_t)kn * sizeof(float));
                        xt = xb;
                        ldt = ldxb;
                    }
                    for (int64_t j = 0; j < on; j += nr) {
                        int nre = on - j < nr ? (int)(on - j) : nr;
                        k->tile(mre, nre, kn, xt, ldt, panel + (size_t)j * (size_t)kn,
                                y + (size_t)i * (size_t)ldy + (size_t)(o0 + j), ldy, k0 > 0);
                    }
                }
            }
        }
    }
    ak__free(ctx, ws_raw);
    return AK_OK;
}

ak_status ak_qgemm(ak_ctx *ctx, int32_t type, const void *w, int64_t n_out, int64_t n_in, const float *x, int64_t m,
                   int64_t ldx, float *y, int64_t ldy) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    int32_t be = ak_qtype_block_elems(type), bb = ak_qtype_block_bytes(type);
    if (be == 0) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_qgemm: unknown weight type id %d", (int)type);
    if (n_out < 0 || m < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_qgemm: n_out = %lld and m = %lld must be >= 0",
                        (long long)n_out, (long long)m);
    if (n_in <= 0 || n_in % be != 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_qgemm: n_in = %lld is not a positive multiple of %s's block of %d",
                        (long long)n_in, ak_qtype_name(type), (int)be);
    if (ldx < n_in)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_qgemm: ldx = %lld is below n_in = %lld", (long long)ldx,
                        (long long)n_in);
    if (ldy < n_out)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_qgemm: ldy = %lld is below n_out = %lld", (long long)ldy,
                        (long long)n_out);
    if (m == 0 || n_out == 0) return AK_OK;
    if (!w || !x || !y) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_qgemm: w, x and y are required");
    /* byte extents of the three operands; each must be addressable */
    int64_t row_bytes = mul_add(n_in / be, bb, 0);
    int64_t wbytes = row_bytes < 0 ? -1 : mul_add(n_out, row_bytes, 0);
    int64_t xel = mul_add(m - 1, ldx, n_in), yel = mul_add(m - 1, ldy, n_out);
    int64_t xbytes = xel < 0 ? -1 : mul_add(xel, 4, 0), ybytes = yel < 0 ? -1 : mul_add(yel, 4, 0);
    if (row_bytes < 0 || wbytes < 0 || xbytes < 0 || ybytes < 0 || (uint64_t)wbytes > (uint64_t)PTRDIFF_MAX ||
        (uint64_t)xbytes > (uint64_t)PTRDIFF_MAX || (uint64_t)ybytes > (uint64_t)PTRDIFF_MAX)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "ak_qgemm: operand sizes overflow (n_out = %lld, n_in = %lld, m = %lld, ldx = %lld, ldy = %lld)",
                        (long long)n_out, (long long)n_in, (long long)m, (long long)ldx, (long long)ldy);
    uintptr_t wa = (uintptr_t)w, xa = (uintptr_t)x, ya = (uintptr_t)y;
    if (wa > UINTPTR_MAX - (uint64_t)wbytes || xa > UINTPTR_MAX - (uint64_t)xbytes || ya > UINTPTR_MAX - (uint64_t)ybytes)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_qgemm: an operand extends past the end of the address space");
    if (xa % 4 != 0 || ya % 4 != 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_qgemm: x and y must be 4-byte aligned (float elements)");
    if (spans_overlap(ya, (uint64_t)ybytes, xa, (uint64_t)xbytes))
        return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "ak_qgemm: y [%p, +%lld bytes) overlaps x [%p, +%lld bytes)",
                        (void *)y, (long long)ybytes, (const void *)x, (long long)xbytes);
    if (spans_overlap(ya, (uint64_t)ybytes, wa, (uint64_t)wbytes))
        return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "ak_qgemm: y [%p, +%lld bytes) overlaps the weights [%p, +%lld bytes)",
                        (void *)y, (long long)ybytes, w, (long long)wbytes);

    const ak_qgemm_kernels *k = ak__qgemm_kernels_for(ctx->isa);
    int64_t gemv_max = qg_env("AK_QG_GEMV_MAX", AK_QG_GEMV_MAX, 0, 64);
    if (ctx->verbose)
        fprintf(stderr, "[attnkit] ak_qgemm %s [%lld][%lld] x m=%lld: %s, %s\n", ak_qtype_name(type), (long long)n_out,
                (long long)n_in, (long long)m, m <= gemv_max ? "gemv" : "gemm", k->name);
    if (m <= gemv_max) return run_gemv(ctx, k, type, (const uint8_t *)w, (size_t)row_bytes, n_out, n_in, x, m, ldx, y, ldy);
    return run_gemm(ctx, k, type, (const uint8_t *)w, (size_t)row_bytes, n_out, n_in, x, m, ldx, y, ldy);
}
