/* ak_dyn_plan_named: the content-aware planners by name ("method:key=value,..."), for tools and sweeps. */
#include "dynamic/dyn.h"

#include <stdio.h>

typedef ak_status (*named_fn)(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                              ak_sparse **out, ak_dyn_info *info);

static ak_status named_flexprefill(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                   ak_sparse **out, ak_dyn_info *info) {
    ak_flexprefill_params p;
    ak_flexprefill_params_init(&p);
    ak_status st = ak__dyn_parse_opts(ctx, "flexprefill", opts, ak__flexprefill_opt, &p);
    return st != AK_OK ? st : ak_flexprefill_plan(ctx, desc, t, &p, out, info);
}

static ak_status named_minference(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                  ak_sparse **out, ak_dyn_info *info) {
    ak_minference_params p;
    ak_minference_params_init(&p);
    ak_status st = ak__dyn_parse_opts(ctx, "minference", opts, ak__minference_opt, &p);
    return st != AK_OK ? st : ak_minference_plan(ctx, desc, t, &p, out, info);
}

static ak_status named_mminference(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                                   ak_sparse **out, ak_dyn_info *info) {
    ak_mminference_params p;
    ak_mminference_params_init(&p);
    ak_status st = ak__dyn_parse_opts(ctx, "mminference", opts, ak__mminference_opt, &p);
    return st != AK_OK ? st : ak_mminference_plan(ctx, desc, t, &p, out, info);
}

static ak_status named_anchor(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                              ak_sparse **out, ak_dyn_info *info) {
    ak_anchor_params p;
    ak_anchor_params_init(&p);
    ak_status st = ak__dyn_parse_opts(ctx, "anchor", opts, ak__anchor_opt, &p);
    return st != AK_OK ? st : ak_anchor_plan(ctx, desc, t, &p, out, info);
}

static ak_status named_dhsa(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                            ak_sparse **out, ak_dyn_info *info) {
    ak_dhsa_params p;
    ak_dhsa_params_init(&p);
    ak_status st = ak__dyn_parse_opts(ctx, "dhsa", opts, ak__dhsa_opt, &p);
    return st != AK_OK ? st : ak_dhsa_plan(ctx, desc, t, &p, out, info);
}

static ak_status named_routing(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                               ak_sparse **out, ak_dyn_info *info) {
    ak_routing_params p;
    ak_routing_params_init(&p);
    ak_status st = ak__dyn_parse_opts(ctx, "routing", opts, ak__routing_opt, &p);
    return st != AK_OK ? st : ak_routing_plan(ctx, desc, t, &p, out, info);
}

static ak_status named_dma(ak_ctx *ctx, const char *opts, const ak_attn_desc *desc, const ak_attn_tensors *t,
                           ak_sparse **out, ak_dyn_info *info) {
    ak_dma_params p;
    ak_dma_params_init(&p);
    p.untrained = 1; /* no learned weights by name: the documented untrained form (docs/dynamic/dma.md) */
    ak_status st = ak__dyn_parse_opts(ctx, "dma", opts, ak__dma_opt, &p);
    return st != AK_OK ? st : ak_dma_plan(ctx, desc, t, &p, out, info);
}

static const struct {
    const char *name;
    named_fn fn;
} methods[] = {
    {"flexprefill", named_flexprefill}, {"minference", named_minference}, {"mminference", named_mminference},
    {"anchor", named_anchor},           {"dhsa", named_dhsa},             {"routing", named_routing},
    {"dma", named_dma},
};

ak_status ak_dyn_plan_named(ak_ctx *ctx, const char *spec, const ak_attn_desc *desc, const ak_attn_tensors *t,
                            ak_sparse **out, ak_dyn_info *info) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (!spec) return ak__fail(ctx, AK_ERR_NULL_POINTER, "spec is NULL");
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++)
        if (strlen(methods[m].name) == n && !strncmp(spec, methods[m].name, n)) {
            if (info) memset(info, 0, sizeof *info);
            return methods[m].fn(ctx, colon ? colon + 1 : NULL, desc, t, out, info);
        }
    return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                    "unknown method '%.*s' (flexprefill, minference, mminference, anchor, dhsa, routing, dma)", (int)n, spec);
}
