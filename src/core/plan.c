/* Planner for dense attention: choose the kernel for the context's ISA, size the tiles, and cut the
 * problem into work items (sequence x KV-head group x query block), costliest first. */
#include "exec/fwd.h"
#include "exec/decode.h"
#include "exec/sparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AK_TILE_M_TARGET 128  /* query-tile width (rows of all heads in a group) */
#define AK_TILE_N 64          /* keys per tile */

/* Tuning overrides for experiments: AK_TILE_M (16..256) and AK_TILE_N (8..256). */
static int tile_env(const char *name, int dflt, int lo, int hi) {
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    char *end;
    long v = strtol(e, &end, 10);
    return (*end == '\0' && v >= lo && v <= hi) ? (int)v : dflt;
}

const ak_fwd_kernels *ak__kernel_for(ak_isa isa) {
#ifdef AK_HAVE_AVX512_KERNELS
    if (isa >= AK_ISA_AVX512) return &ak_fwd_kernels_avx512;
#endif
#ifdef AK_HAVE_AVX2_KERNELS
    if (isa >= AK_ISA_AVX2) return &ak_fwd_kernels_avx2;
#endif
    (void)isa;
    return &ak_fwd_kernels_scalar;
}

/* The bf16-pair kernel, for bf16 Q, K and V: the real one on AVX512_BF16, or (tests only,
 * AK_EMULATE_BF16DOT=1) the same code with vdpbf16ps emulated, on AVX-512. */
const ak_fwd_bf16_kernels *ak__bf16_kernel_for(const ak_ctx *c, const ak_problem *p) {
    if (p->desc.dtype_q != AK_BF16 || p->desc.dtype_kv != AK_BF16) return NULL;
#ifdef AK_HAVE_AVX512BF16_KERNELS
    if (c->isa >= AK_ISA_AVX512BF16) return &ak_fwd_bf16_kernels_avx512bf16;
#endif
#ifdef AK_HAVE_AVX512_KERNELS
    const char *e = getenv("AK_EMULATE_BF16DOT");
    if (c->isa >= AK_ISA_AVX512 && e && strcmp(e, "1") == 0) return &ak_fwd_bf16_kernels_emu;
#endif
    (void)c;
    return NULL;
}

static void explain_choice(ak_plan *pl) {
    const ak_ctx *c = pl->ctx;
    char *e = pl->explain;
    size_t n = sizeof pl->explain;
    int k = 0;
    if (!pl->kern) {
        snprintf(pl->kernel_name, sizeof pl->kernel_name, "ak_ref_fwd_f64");
        k += snprintf(e + k, n - (size_t)k, "chosen: %s (AK_FORCE_REF / ak_ctx_set_force_ref)\n", pl->kernel_name);
        k += snprintf(e + k, n - (size_t)k, "rejected: every fused kernel: the reference was forced\n");
        return;
    }
    snprintf(pl->kernel_name, sizeof pl->kernel_name, "%s", pl->kbf16 ? pl->kbf16->name : pl->kern->name);
    k += snprintf(e + k, n - (size_t)k,
                  "chosen: %s (ISA cap %s, detected %s; q %s, kv %s, o %s; d=%d dv=%d; tile %d query positions x %d heads, %d keys; %lld work items, %d threads)\n",
                  pl->kernel_name, ak_isa_name(c->isa), ak_isa_name(ak_isa_detect()), ak_dtype_name(pl->p.desc.dtype_q),
                  ak_dtype_name(pl->p.desc.dtype_kv), ak_dtype_name(pl->p.desc.dtype_o), pl->p.d, pl->p.dv, pl->bq,
                  pl->nh, pl->bc, (long long)pl->n_items, pl->n_threads);
    struct { ak_isa isa; const char *name; } all[] = {
        {AK_ISA_AVX512BF16, "avx512bf16 (vdpbf16ps)"}, {AK_ISA_AVX512, "avx512"}, {AK_ISA_AVX2, "avx2"}, {AK_ISA_SCALAR, "scalar"}};
    int bf16_in = pl->p.desc.dtype_q == AK_BF16 && pl->p.desc.dtype_kv == AK_BF16;
    for (int i = 0; i < 4; i++) {
        if (all[i].isa == (pl->kbf16 ? AK_ISA_AVX512BF16 : pl->kern->isa)) continue;
        const char *why;
        if (all[i].isa > ak_isa_detect()) why = "not supported by this CPU/OS (cpuid/XGETBV) or not built";
        else if (all[i].isa > c->isa) why = "above the ISA cap (AK_MAX_ISA / ak_ctx_set_max_isa)";
        else if (all[i].isa == AK_ISA_AVX512BF16 && !bf16_in) why = "needs bf16 Q, K and V (these inputs are widened to f32 at tile load)";
        else why = "a higher ISA is available";
        k += snprintf(e + k, n - (size_t)k, "rejected: %s kernel: %s\n", all[i].name, why);
        if (k >= (int)n) break;
    }
    if (k < (int)n) snprintf(e + k, n - (size_t)k, "rejected: reference: AK_FORCE_REF not set\n");
}

static int cmp_cost(const void *a, const void *b) {
    const ak_work *x = (const ak_work *)a, *y = (const ak_work *)b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    if (x->b != y->b) return x->b - y->b;
    if (x->hkv != y->hkv) return x->hkv - y->hkv;
    if (x->h0 != y->h0) return x->h0 - y->h0;
    return x->i0 < y->i0 ? -1 : (x->i0 > y->i0);
}

static ak_status build_items(ak_plan *pl) {
    const ak_problem *p = &pl->p;
    int mt = tile_env("AK_TILE_M", AK_TILE_M_TARGET, 16, 256);
    int nh_max = p->g < mt ? p->g : mt;
    int bq = mt / nh_max;
    if (bq < 1) bq = 1;
    int64_t maxq = 1;
    for (int64_t b = 0; b < p->B; b++) {
        ak_seq s = ak__seq(p, b);
        if (s.Lq > maxq) maxq = s.Lq;
    }
    if (bq > maxq) bq = (int)maxq;
    pl->bq = bq;
    pl->bc = tile_env("AK_TILE_N", AK_TILE_N, 8, 256);
    pl->nh = nh_max;
    pl->mpad_max = (nh_max * bq + 15) / 16 * 16;

    int64_t count = 0;
    int64_t hchunks = (p->g + nh_max - 1) / nh_max;
    for (int64_t b = 0; b < p->B; b++) {
        ak_seq s = ak__seq(p, b);
        count += (s.Lq + bq - 1) / bq * p->Hkv * hchunks;
    }
    pl->items = (ak_work *)ak__alloc(pl->ctx, sizeof(ak_work) * (size_t)(count + 1));
    if (!pl->items) return ak__fail(pl->ctx, AK_ERR_OUT_OF_MEMORY, "plan work list (%lld items)", (long long)count);
    int64_t n = 0;
    for (int32_t b = 0; b < p->B; b++) {
        ak_seq s = ak__seq(p, b);
        for (int64_t i0 = 0; i0 < s.Lq; i0 += bq) {
            int64_t nq = s.Lq - i0 < bq ? s.Lq - i0 : bq;
            int64_t lo, hi, lo2, hi2;
            ak__row_range(p, &s, i0, &lo, &hi);
            ak__row_range(p, &s, i0 + nq - 1, &lo2, &hi2);
            int64_t keys = hi2 >= lo ? hi2 - lo + 1 : 0;
            for (int32_t hkv = 0; hkv < p->Hkv; hkv++)
                for (int32_t h0 = 0; h0 < p->g; h0 += nh_max) {
                    ak_work *w = &pl->items[n++];
                    w->b = b;
                    w->hkv = hkv;
                    w->h0 = hkv * p->g + h0;
                    w->nh = p->g - h0 < nh_max ? p->g - h0 : nh_max;
                    w->i0 = i0;
                    w->nq = nq;
                    w->cost = (keys + 16) * nq * w->nh;
                }
        }
    }
    pl->n_items = n;
    qsort(pl->items, (size_t)n, sizeof(ak_work), cmp_cost);
    return AK_OK;
}

ak_status ak_plan_create(ak_ctx *ctx, const ak_attn_desc *desc, ak_plan **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    ak_plan *pl = (ak_plan *)ak__alloc(ctx, sizeof *pl);
    if (!pl) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "plan");
    memset(pl, 0, sizeof *pl);
    pl->ctx = ctx;
    ak_status st = ak__problem_init(ctx, desc, 0, &pl->p);
    if (st != AK_OK) {
        ak__free(ctx, pl);
        return st;
    }
    pl->n_threads = ctx->n_threads;
    pl->kern = ctx->force_ref ? NULL : ak__kernel_for(ctx->isa);
    pl->kbf16 = pl->kern ? ak__bf16_kernel_for(ctx, &pl->p) : NULL;
    if (pl->kern) {
        st = build_items(pl);
        if (st != AK_OK) {
            ak_plan_destroy(pl);
            return st;
        }
        pl->ws_per_thread = ak__fwd_thread_ws(pl->p.d, pl->p.dv, pl->mpad_max, pl->bc);
    }
    explain_choice(pl);
    if (ctx->verbose) fprintf(stderr, "attnkit: plan\n%s", pl->explain);
    *out = pl;
    return AK_OK;
}

void ak_plan_destroy(ak_plan *pl) {
    if (!pl) return;
    if (pl->dec) ak__dplan_free(pl->ctx, pl->dec);
    if (pl->sparse) ak__splan_free(pl->ctx, pl->sparse);
    ak__problem_free(pl->ctx, &pl->p);
    ak__free(pl->ctx, pl->items);
    ak__free(pl->ctx, pl);
}

size_t ak_plan_workspace_size(const ak_plan *pl) {
    if (pl && pl->dec) return ak__dplan_workspace(pl);
    if (!pl || !pl->kern) return 0;
    return (size_t)pl->n_threads * pl->ws_per_thread + AK_CACHELINE;
}

const char *ak_plan_kernel_name(const ak_plan *pl) { return pl ? pl->kernel_name : ""; }
const char *ak_plan_explain(const ak_plan *pl) { return pl ? pl->explain : ""; }

ak_status ak_attention_run(ak_plan *pl, const ak_attn_tensors *t, void *workspace, size_t ws_size) {
    if (!pl) return AK_ERR_NULL_POINTER;
    const ak_ctx *ctx = pl->ctx;
    ak__clear_error(ctx);
    if (pl->dec) return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "this is a decode plan: run it with ak_decode_run");
    ak_status st = ak__check_tensors(ctx, &pl->p, t, 0);
    if (st != AK_OK) return st;
    if (!pl->kern) return pl->sparse ? ak__ref_run_masked(ctx, &pl->p, t, pl->sparse->sp) : ak__ref_run(ctx, &pl->p, t);
    size_t need = ak_plan_workspace_size(pl);
    void *own = NULL;
    if (workspace == NULL) {
        own = ak__alloc(ctx, need);
        if (!own) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "workspace of %zu bytes", need);
        workspace = own;
    } else if (ws_size < need) {
        return ak__fail(ctx, AK_ERR_WORKSPACE_TOO_SMALL, "workspace has %zu bytes, the plan needs %zu", ws_size, need);
    }
    ak__zero_padding_rows(&pl->p, t);
    st = pl->sparse ? ak__sparse_execute(pl, t, workspace) : ak__fwd_execute(pl, t, workspace);
    ak__free(ctx, own);
    return st;
}

ak_status ak_attention(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t) {
    ak_plan *pl = NULL;
    ak_status st = ak_plan_create(ctx, desc, &pl);
    if (st != AK_OK) return st;
    st = ak_attention_run(pl, t, NULL, 0);
    ak_plan_destroy(pl);
    return st;
}
