/* Context, status strings, version, errors and allocation. */
#include "core/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif
#include <unistd.h>

const char *ak_status_string(ak_status s) {
    switch (s) {
    case AK_OK: return "AK_OK: success";
    case AK_ERR_NULL_POINTER: return "AK_ERR_NULL_POINTER: a required pointer is NULL";
    case AK_ERR_INVALID_ARGUMENT: return "AK_ERR_INVALID_ARGUMENT: an argument is out of range";
    case AK_ERR_SHAPE_MISMATCH: return "AK_ERR_SHAPE_MISMATCH: tensor shapes disagree";
    case AK_ERR_UNSUPPORTED_DTYPE: return "AK_ERR_UNSUPPORTED_DTYPE: dtype not supported here";
    case AK_ERR_BAD_STRIDE: return "AK_ERR_BAD_STRIDE: negative stride, or zero output stride";
    case AK_ERR_OUTPUT_OVERLAP: return "AK_ERR_OUTPUT_OVERLAP: output overlaps itself or an input";
    case AK_ERR_GQA_RATIO: return "AK_ERR_GQA_RATIO: num_heads_q is not a multiple of num_heads_kv";
    case AK_ERR_HEAD_DIM: return "AK_ERR_HEAD_DIM: head dim is 0 or above AK_MAX_HEAD_DIM";
    case AK_ERR_BAD_METADATA: return "AK_ERR_BAD_METADATA: invalid lengths, offsets or page-table metadata";
    case AK_ERR_WORKSPACE_TOO_SMALL: return "AK_ERR_WORKSPACE_TOO_SMALL: workspace below ak_plan_workspace_size()";
    case AK_ERR_OUT_OF_MEMORY: return "AK_ERR_OUT_OF_MEMORY: allocation failed";
    case AK_ERR_UNSUPPORTED_ISA: return "AK_ERR_UNSUPPORTED_ISA: ISA not available on this CPU/OS";
    case AK_ERR_PLAN_MISMATCH: return "AK_ERR_PLAN_MISMATCH: tensors do not match the plan";
    case AK_ERR_INTERNAL: return "AK_ERR_INTERNAL: internal error";
    case AK_ERR_PAGE_OUT_OF_RANGE: return "AK_ERR_PAGE_OUT_OF_RANGE: page id outside [0, num_pages)";
    case AK_ERR_CAPACITY: return "AK_ERR_CAPACITY: KV cache capacity exceeded";
    case AK_ERR_BAD_PLAN: return "AK_ERR_BAD_PLAN: malformed sparse plan (bounds, order, duplicates, overlaps)";
    case AK_ERR_BAD_FILE: return "AK_ERR_BAD_FILE: malformed model file (magic, version, sizes, offsets, types)";
    case AK_ERR_IO: return "AK_ERR_IO: a file cannot be opened, mapped, read or written";
    }
    return "AK_ERR_UNKNOWN: not an ak_status value";
}

const char *ak_version(void) { return AK_VERSION_STRING; }

#include "ak_commit.h" /* generated at build time: AK_GIT_COMMIT */
#ifndef AK_GIT_COMMIT
#define AK_GIT_COMMIT "unknown"
#endif
#ifndef AK_BUILD_TYPE
#define AK_BUILD_TYPE "unknown"
#endif

const char *ak_build_info(void) {
    return "attnkit " AK_VERSION_STRING " commit " AK_GIT_COMMIT " build " AK_BUILD_TYPE
#if defined(__clang__)
           " compiler clang " __clang_version__
#elif defined(__GNUC__)
           " compiler gcc " __VERSION__
#else
           " compiler unknown"
#endif
#ifdef AK_USE_OPENMP
           " openmp"
#endif
        ;
}

ak_status ak__fail(const ak_ctx *ctx, ak_status s, const char *fmt, ...) {
    if (ctx) {
        ak_ctx *c = (ak_ctx *)ctx; /* the error buffer is the one mutable part of a const ctx */
        int n = snprintf(c->last_error, sizeof c->last_error, "%s: ", ak_status_string(s));
        if (n < 0 || n >= (int)sizeof c->last_error) n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->last_error + n, sizeof c->last_error - (size_t)n, fmt, ap);
        va_end(ap);
        if (c->verbose) fprintf(stderr, "attnkit: %s\n", c->last_error);
    }
    return s;
}

void ak__clear_error(const ak_ctx *ctx) {
    if (ctx) ((ak_ctx *)ctx)->last_error[0] = '\0';
}

static void *default_alloc(void *user, size_t size, size_t align) {
    (void)user;
    void *p = NULL;
    if (size == 0) size = align;
    size = (size + align - 1) / align * align;
    if (posix_memalign(&p, align, size) != 0) return NULL;
    return p;
}
static void default_free(void *user, void *p) {
    (void)user;
    free(p);
}

void *ak__alloc(const ak_ctx *ctx, size_t size) { return ctx->alloc.alloc(ctx->alloc.user, size, AK_CACHELINE); }
void ak__free(const ak_ctx *ctx, void *p) {
    if (p) ctx->alloc.free(ctx->alloc.user, p);
}

static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 1 << 20) return dflt;
    return (int)v;
}

static int online_cpus(void) {
#ifdef AK_USE_OPENMP
    int n = omp_get_num_procs();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? (int)n : 1;
}

ak_status ak_ctx_create(ak_ctx **out) {
    if (!out) return AK_ERR_NULL_POINTER;
    *out = NULL;
    ak_ctx *c = (ak_ctx *)calloc(1, sizeof *c);
    if (!c) return AK_ERR_OUT_OF_MEMORY;
    int nt = env_int("AK_NUM_THREADS", 0);
    c->n_threads = nt > 0 ? nt : online_cpus();
    c->isa = ak__isa_from_env(ak_isa_detect());
    c->deterministic = 1;
    c->force_ref = env_int("AK_FORCE_REF", 0) != 0;
    c->verbose = env_int("AK_VERBOSE", 0) != 0;
    c->alloc.alloc = default_alloc;
    c->alloc.free = default_free;
    c->alloc.user = NULL;
    *out = c;
    return AK_OK;
}

void ak_ctx_destroy(ak_ctx *ctx) { free(ctx); }

ak_status ak_ctx_set_num_threads(ak_ctx *ctx, int n) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (n < 1 || n > 4096) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "n_threads = %d, must be in [1, 4096]", n);
    ctx->n_threads = n;
    return AK_OK;
}
int ak_ctx_get_num_threads(const ak_ctx *ctx) { return ctx ? ctx->n_threads : 0; }

ak_status ak_ctx_set_max_isa(ak_ctx *ctx, ak_isa isa) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    if ((int)isa < AK_ISA_SCALAR || (int)isa > AK_ISA_AVX512BF16)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "isa = %d is not an ak_isa value", (int)isa);
    ak_isa det = ak_isa_detect();
    if (isa > det)
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_ISA, "requested %s but this CPU/OS supports at most %s",
                        ak_isa_name(isa), ak_isa_name(det));
    ctx->isa = isa;
    return AK_OK;
}
ak_isa ak_ctx_get_isa(const ak_ctx *ctx) { return ctx ? ctx->isa : AK_ISA_SCALAR; }

ak_status ak_ctx_set_deterministic(ak_ctx *ctx, int d) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ctx->deterministic = d != 0;
    return AK_OK;
}
ak_status ak_ctx_set_force_ref(ak_ctx *ctx, int f) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ctx->force_ref = f != 0;
    return AK_OK;
}
ak_status ak_ctx_set_verbose(ak_ctx *ctx, int v) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ctx->verbose = v != 0;
    return AK_OK;
}
ak_status ak_ctx_set_allocator(ak_ctx *ctx, const ak_allocator *a) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!a) {
        ctx->alloc.alloc = default_alloc;
        ctx->alloc.free = default_free;
        ctx->alloc.user = NULL;
        return AK_OK;
    }
    if (!a->alloc || !a->free) return ak__fail(ctx, AK_ERR_NULL_POINTER, "allocator alloc/free is NULL");
    ctx->alloc = *a;
    return AK_OK;
}
const char *ak_ctx_last_error(const ak_ctx *ctx) { return ctx ? ctx->last_error : ""; }
