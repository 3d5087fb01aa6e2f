/* Attention of one layer for a chunk of tokens, through the public attention API, and the per-layer method
 * choice (ak_session_set_attn). Also the Q/K/V dump (ak_session_set_dump).
 *
 * Layouts: the chunk's q is [n][Hq][d], k and v [n][Hkv][d] (token-major, as the projections write them); the cache
 * of a layer is [n_ctx][Hkv][d]. Both are handed to attnkit as strided [1][H][L][d] views: nothing is transposed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/internal.h"
#include "model/model_internal.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* [1][H][L][d] view of a token-major [L][H][d] buffer. */
static ak_tensor view_lhd(void *data, ak_dtype t, int64_t H, int64_t L, int64_t d) {
    ak_tensor v = ak_tensor_4d(data, t, 1, H, L, d);
    v.stride[0] = L * H * d;
    v.stride[1] = d;
    v.stride[2] = H * d;
    v.stride[3] = 1;
    return v;
}

int ak__session_has_prompt_method(const ak_session *s) {
    for (int l = 0; l < s->m->info.n_layer; l++)
        if (s->attn[l].kind == AK__ATTN_DYN) return 1;
    return 0;
}

/* ---- method choice ---- */

/* "key=value,key=value" -> calls set(key, value) for each; returns 0 or the failing key's index + 1. */
static int parse_kv(const char *opts, int (*set)(ak__attn_cfg *, const char *, const char *), ak__attn_cfg *c,
                    char *bad, size_t badlen) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", opts);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(bad, badlen, "'%s' is not key=value", tok);
            return 1;
        }
        *eq = 0;
        if (!set(c, tok, eq + 1)) {
            snprintf(bad, badlen, "%s=%s", tok, eq + 1);
            return 1;
        }
    }
    return 0;
}

static int parse_int(const char *v, int32_t lo, int32_t *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > (1L << 30)) return 0;
    *out = (int32_t)x;
    return 1;
}

static int set_streaming(ak__attn_cfg *c, const char *k, const char *v) {
    if (!strcmp(k, "sinks")) return parse_int(v, 0, &c->sinks);
    if (!strcmp(k, "window")) return parse_int(v, 1, &c->window);
    return 0;
}

static int set_kinetics(ak__attn_cfg *c, const char *k, const char *v) {
    if (!strcmp(k, "block")) return parse_int(v, 1, &c->kin.block);
    if (!strcmp(k, "topk")) return parse_int(v, 1, &c->kin.topk);
    if (!strcmp(k, "sink")) return parse_int(v, 0, &c->kin.sink);
    if (!strcmp(k, "local")) return parse_int(v, 0, &c->kin.local);
    if (!strcmp(k, "scoring")) {
        if (!strcmp(v, "key")) c->kin.scoring = AK_KINETICS_MEAN_KEY;
        else if (!strcmp(v, "logit")) c->kin.scoring = AK_KINETICS_MEAN_LOGIT;
        else return 0;
        return 1;
    }
    return 0;
}

/* Check a content-aware spec by planning a tiny causal problem with it (unknown method / key / value fail). */
static ak_status check_dyn_spec(ak_session *s, const char *spec) {
    const ak_model_info *in = &s->m->info;
    const int32_t N = 64, D = in->head_dim;
    float *buf = (float *)ak__alloc(s->ctx, sizeof(float) * (size_t)N * (size_t)D * (size_t)(in->n_head + 2 * in->n_head_kv));
    if (!buf) return ak__fail(s->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_set_attn: out of memory");
    uint32_t r = 12345u;
    size_t tot = (size_t)N * (size_t)D * (size_t)(in->n_head + 2 * in->n_head_kv);
    for (size_t i = 0; i < tot; i++) {
        r = r * 1664525u + 1013904223u;
        buf[i] = (float)((r >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.num_heads_q = in->n_head;
    d.num_heads_kv = in->n_head_kv;
    d.seqlen_q = d.seqlen_k = N;
    d.head_dim = D;
    d.causal = 1;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = ak_tensor_4d(buf, AK_F32, 1, in->n_head, N, D);
    t.k = ak_tensor_4d(buf + (size_t)N * D * in->n_head, AK_F32, 1, in->n_head_kv, N, D);
    t.v = ak_tensor_4d(buf + (size_t)N * D * (in->n_head + in->n_head_kv), AK_F32, 1, in->n_head_kv, N, D);
    ak_sparse *sp = NULL;
    ak_status st = ak_dyn_plan_named(s->ctx, spec, &d, &t, &sp, NULL);
    ak_sparse_destroy(sp);
    ak__free(s->ctx, buf);
    return st;
}

static ak_status set_one(ak_session *s, int32_t l, const char *spec) {
    ak__attn_cfg c;
    memset(&c, 0, sizeof c);
    snprintf(c.spec, sizeof c.spec, "%s", spec);
    char bad[300];
    const char *colon = strchr(spec, ':');
    size_t mlen = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *opts = colon ? colon + 1 : "";
    if (mlen == 5 && !strncmp(spec, "dense", 5) && !colon) {
        c.kind = AK__ATTN_DENSE;
    } else if (s->m->L[l].local) {
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT,
                        "ak_session_set_attn: layer %d is a sliding-window layer: only \"dense\" applies there", l);
    } else if (mlen == 9 && !strncmp(spec, "streaming", 9)) {
        c.kind = AK__ATTN_STREAMING;
        c.sinks = 4;
        c.window = 1024;
        if (parse_kv(opts, set_streaming, &c, bad, sizeof bad))
            return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_attn: streaming: bad option %s (sinks>=0, window>=1)", bad);
    } else if (mlen == 8 && !strncmp(spec, "kinetics", 8)) {
        c.kind = AK__ATTN_KINETICS;
        ak_kinetics_params_init(&c.kin);
        if (parse_kv(opts, set_kinetics, &c, bad, sizeof bad))
            return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT,
                            "ak_session_set_attn: kinetics: bad option %s (block, topk >= 1, sink, local >= 0, scoring=key|logit)", bad);
        if (c.kin.scoring == AK_KINETICS_MEAN_KEY) {
            ak_status st = ak_kinetics_index_create(s->ctx, 1, s->m->info.n_head_kv, s->m->info.head_dim, c.kin.block, &c.kindex);
            if (st != AK_OK) return st;
        }
    } else {
        ak_status st = check_dyn_spec(s, spec);
        if (st != AK_OK) {   /* the planner's message names its own methods; add the runner's */
            char msg[400];
            const char *prev = ak_ctx_last_error(s->ctx), *name = ak_status_string(st);
            size_t nl = strlen(name);
            if (!strncmp(prev, name, nl) && !strncmp(prev + nl, ": ", 2)) prev += nl + 2;   /* ak__fail adds it again */
            snprintf(msg, sizeof msg, "%s", prev);   /* copied: ak__fail rewrites the context's message */
            return ak__fail(s->ctx, st, "%s (runner specs: dense, streaming, kinetics)", msg);
        }
        c.kind = AK__ATTN_DYN;
    }
    if (c.kindex && s->pos > 0) {
        /* index the tokens already cached */
        ak_kv_desc kv;
        ak_kv_tensors kt;
        int32_t len = s->pos;
        ak_kv_desc_init(&kv);
        kv.num_heads_kv = s->m->info.n_head_kv;
        kv.head_dim = s->m->info.head_dim;
        kv.dtype = s->cfg.kv_dtype;
        kv.capacity = s->cfg.n_ctx;
        kv.seqlens = &len;
        ak_kv_tensors_init(&kt);
        kt.k = view_lhd(s->kc[l], s->cfg.kv_dtype, s->m->info.n_head_kv, s->cfg.n_ctx, s->m->info.head_dim);
        kt.v = view_lhd(s->vc[l], s->cfg.kv_dtype, s->m->info.n_head_kv, s->cfg.n_ctx, s->m->info.head_dim);
        ak_status st = ak_kinetics_index_update(c.kindex, &kv, &kt, NULL);
        if (st != AK_OK) {
            ak_kinetics_index_destroy(c.kindex);
            return st;
        }
    }
    ak_kinetics_index_destroy(s->attn[l].kindex);
    s->attn[l] = c;
    return AK_OK;
}

ak_status ak_session_set_attn(ak_session *s, int32_t layer, const char *spec) {
    if (!s) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_set_attn: session is NULL");
    if (!spec) return ak__fail(s->ctx, AK_ERR_NULL_POINTER, "ak_session_set_attn: spec is NULL");
    if (strlen(spec) >= sizeof s->attn[0].spec)
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_attn: spec longer than %d bytes",
                        (int)sizeof s->attn[0].spec - 1);
    int nl = s->m->info.n_layer;
    if (layer >= 0) {
        if (layer >= nl) return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_attn: layer %d outside [0, %d)", layer, nl);
        return set_one(s, layer, spec);
    }
    if (layer != AK_LAYERS_GLOBAL && layer != AK_LAYERS_ALL)
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_attn: layer %d (use 0..%d, AK_LAYERS_GLOBAL or AK_LAYERS_ALL)",
                        layer, nl - 1);
    for (int l = 0; l < nl; l++) {
        if (layer == AK_LAYERS_GLOBAL && s->m->L[l].local) continue;
        ak_status st = set_one(s, l, spec);
        if (st != AK_OK) return st;
    }
    return AK_OK;
}

/* ---- attention of one chunk ---- */

static ak_status run_sparse(ak_session *s, const ak_attn_desc *d, const ak_attn_tensors *t, ak_sparse *sp,
                            ak__attn_cfg *c) {
    ak_plan *plan = NULL;
    ak_status st = ak_plan_create_sparse(s->ctx, d, sp, &plan);
    if (st == AK_OK) {
        ak_sparse_stats ss;
        if (ak_plan_sparse_stats(plan, &ss) == AK_OK) c->last_density = ss.density;
        st = ak_attention_run(plan, t, NULL, 0);
    }
    ak_plan_destroy(plan);
    return st;
}

ak_status ak__session_attention(ak_session *s, int l, int32_t n, const float *q, const float *k, const float *v,
                                float *o) {
    const ak_model_info *in = &s->m->info;
    const int64_t D = in->head_dim, Hq = in->n_head, Hk = in->n_head_kv;
    ak__attn_cfg *c = &s->attn[l];
    const int local = s->m->L[l].local;
    const int32_t pos = s->pos, nk = pos + n;
    double t0 = now_s();

    /* append the chunk's keys and values to the cache */
    ak_kv_desc kv;
    ak_kv_tensors kt;
    int32_t len = pos;
    ak_kv_desc_init(&kv);
    kv.num_heads_kv = (int32_t)Hk;
    kv.head_dim = (int32_t)D;
    kv.dtype = s->cfg.kv_dtype;
    kv.capacity = s->cfg.n_ctx;
    kv.seqlens = &len;
    ak_kv_tensors_init(&kt);
    kt.k = view_lhd(s->kc[l], s->cfg.kv_dtype, Hk, s->cfg.n_ctx, D);
    kt.v = view_lhd(s->vc[l], s->cfg.kv_dtype, Hk, s->cfg.n_ctx, D);
    ak_tensor kn = view_lhd((void *)k, AK_F32, Hk, n, D), vn = view_lhd((void *)v, AK_F32, Hk, n, D);
    ak_status st = ak_kv_append(s->ctx, &kv, &kt, &kn, &vn, NULL);
    if (st != AK_OK) return st;
    len = nk;
    if (c->kindex) {
        st = ak_kinetics_index_update(c->kindex, &kv, &kt, NULL);
        if (st != AK_OK) return st;
    }

    ak_tensor qv = view_lhd((void *)q, AK_F32, Hq, n, D), ov = view_lhd(o, AK_F32, Hq, n, D);
    const int32_t win = local ? in->sliding_window - 1 : -1;
    if (n == 1 && (c->kind == AK__ATTN_DENSE || c->kind == AK__ATTN_DYN || c->kind == AK__ATTN_KINETICS)) {
        ak_decode_desc dd;
        ak_decode_desc_init(&dd);
        dd.num_heads_q = (int32_t)Hq;
        dd.q_len = 1;
        dd.scale = in->attn_scale;
        dd.causal = 1;
        dd.window_left = win;
        dd.kv = kv;
        ak_decode_tensors dt;
        ak_decode_tensors_init(&dt);
        dt.q = qv;
        dt.o = ov;
        dt.kv = kt;
        if (c->kind == AK__ATTN_KINETICS) {
            ak_dyn_info info;
            st = ak_kinetics_decode(s->ctx, &dd, &dt, &c->kin, c->kindex, NULL, &info);
            if (st == AK_OK) c->last_density = info.density;
        } else {
            st = ak_decode(s->ctx, &dd, &dt);
        }
        s->stats.seconds_attention += now_s() - t0;
        return st;
    }

    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.num_heads_q = (int32_t)Hq;
    d.num_heads_kv = (int32_t)Hk;
    d.seqlen_q = n;
    d.seqlen_k = nk;
    d.head_dim = (int32_t)D;
    d.dtype_kv = s->cfg.kv_dtype;
    d.scale = in->attn_scale;
    d.causal = 1;
    d.window_left = win;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = qv;
    t.o = ov;
    t.k = view_lhd(s->kc[l], s->cfg.kv_dtype, Hk, nk, D);
    t.k.stride[0] = (int64_t)s->cfg.n_ctx * Hk * D;
    t.v = view_lhd(s->vc[l], s->cfg.kv_dtype, Hk, nk, D);
    t.v.stride[0] = t.k.stride[0];

    if (c->kind == AK__ATTN_DYN && pos == 0) {
        double tp = now_s();
        ak_sparse *sp = NULL;
        st = ak_dyn_plan_named(s->ctx, c->spec, &d, &t, &sp, NULL);
        s->stats.seconds_planning += now_s() - tp;
        if (st == AK_OK) st = run_sparse(s, &d, &t, sp, c);
        ak_sparse_destroy(sp);
    } else if (c->kind == AK__ATTN_STREAMING) {
        ak_window_params wp;
        ak_window_params_init(&wp);
        wp.window = c->window;
        wp.n_sink = c->sinks;
        double tp = now_s();
        ak_sparse *sp = NULL;
        st = ak_sparse_window(s->ctx, n, nk, &wp, &sp);
        s->stats.seconds_planning += now_s() - tp;
        if (st == AK_OK) st = run_sparse(s, &d, &t, sp, c);
        ak_sparse_destroy(sp);
    } else {
        ak_plan *plan = NULL;
        st = ak_plan_create(s->ctx, &d, &plan);
        if (st == AK_OK) st = ak_attention_run(plan, &t, NULL, 0);
        ak_plan_destroy(plan);
    }
    s->stats.seconds_attention += now_s() - t0;
    if (st == AK_OK && pos == 0 && n > 1) {
        double sum = 0;
        int cnt = 0;
        for (int j = 0; j < in->n_layer; j++)
            if (s->attn[j].kind == AK__ATTN_DYN || s->attn[j].kind == AK__ATTN_STREAMING) {
                sum += s->attn[j].last_density;
                cnt++;
            }
        s->stats.sparse_density = cnt ? sum / cnt : 0.0;
    }
    return st;
}

/* ---- Q/K/V dump ---- */

void ak__session_dump_free(ak_session *s) {
    for (int i = 0; i < s->n_dump_layers; i++) {
        if (s->dump_q) ak__free(s->ctx, s->dump_q[i]);
        if (s->dump_k) ak__free(s->ctx, s->dump_k[i]);
        if (s->dump_v) ak__free(s->ctx, s->dump_v[i]);
    }
    ak__free(s->ctx, s->dump_q);
    ak__free(s->ctx, s->dump_k);
    ak__free(s->ctx, s->dump_v);
    ak__free(s->ctx, s->dump_layers);
    ak__free(s->ctx, s->dump_dir);
    s->dump_q = s->dump_k = s->dump_v = NULL;
    s->dump_layers = NULL;
    s->dump_dir = NULL;
    s->n_dump_layers = 0;
}

ak_status ak_session_set_dump(ak_session *s, const char *dir, const int32_t *layers, int32_t n_layers, int32_t pos_begin,
                              int32_t pos_end) {
    if (!s) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_set_dump: session is NULL");
    ak__session_dump_free(s);
    if (!dir) return AK_OK;
    const ak_model_info *in = &s->m->info;
    if (!layers || n_layers < 1 || n_layers > in->n_layer)
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_dump: need 1..%d layers", in->n_layer);
    for (int i = 0; i < n_layers; i++) {
        if (layers[i] < 0 || layers[i] >= in->n_layer)
            return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_dump: layer %d outside [0, %d)", layers[i], in->n_layer);
        for (int j = 0; j < i; j++)
            if (layers[j] == layers[i])
                return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_dump: layer %d listed twice", layers[i]);
    }
    if (pos_begin < 0 || pos_end <= pos_begin || pos_end > s->cfg.n_ctx)
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_set_dump: positions [%d, %d) must be a non-empty part of [0, %d)",
                        pos_begin, pos_end, s->cfg.n_ctx);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ak__fail(s->ctx, AK_ERR_IO, "ak_session_set_dump: %s is not a directory", dir);
    size_t L = (size_t)(pos_end - pos_begin), D = (size_t)in->head_dim;
    s->dump_dir = (char *)ak__alloc(s->ctx, strlen(dir) + 1);
    s->dump_layers = (int32_t *)ak__alloc(s->ctx, sizeof(int32_t) * (size_t)n_layers);
    s->dump_q = (float **)ak__alloc(s->ctx, sizeof(float *) * (size_t)n_layers);
    s->dump_k = (float **)ak__alloc(s->ctx, sizeof(float *) * (size_t)n_layers);
    s->dump_v = (float **)ak__alloc(s->ctx, sizeof(float *) * (size_t)n_layers);
    if (!s->dump_dir || !s->dump_layers || !s->dump_q || !s->dump_k || !s->dump_v) {
        ak__session_dump_free(s);
        return ak__fail(s->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_set_dump: out of memory");
    }
    memset(s->dump_q, 0, sizeof(float *) * (size_t)n_layers);
    memset(s->dump_k, 0, sizeof(float *) * (size_t)n_layers);
    memset(s->dump_v, 0, sizeof(float *) * (size_t)n_layers);
    s->n_dump_layers = n_layers;
    for (int i = 0; i < n_layers; i++) {
        s->dump_q[i] = (float *)ak__alloc(s->ctx, sizeof(float) * L * D * (size_t)in->n_head);
        s->dump_k[i] = (float *)ak__alloc(s->ctx, sizeof(float) * L * D * (size_t)in->n_head_kv);
        s->dump_v[i] = (float *)ak__alloc(s->ctx, sizeof(float) * L * D * (size_t)in->n_head_kv);
        if (!s->dump_q[i] || !s->dump_k[i] || !s->dump_v[i]) {
            ak__session_dump_free(s);
            return ak__fail(s->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_set_dump: out of memory for %zu positions", L);
        }
    }
    memcpy(s->dump_dir, dir, strlen(dir) + 1);
    memcpy(s->dump_layers, layers, sizeof(int32_t) * (size_t)n_layers);
    s->dump_begin = pos_begin;
    s->dump_end = pos_end;
    s->dump_written = 0;
    return AK_OK;
}

/* Copy the rows of positions inside the dump range: [n][H][d] chunk rows -> [H][L][d]. */
void ak__session_dump_rows(ak_session *s, int layer, int32_t n, const float *q, const float *k, const float *v) {
    if (!s->dump_dir || s->dump_written) return;
    int i;
    for (i = 0; i < s->n_dump_layers; i++)
        if (s->dump_layers[i] == layer) break;
    if (i == s->n_dump_layers) return;
    const ak_model_info *in = &s->m->info;
    const int64_t D = in->head_dim, L = s->dump_end - s->dump_begin;
    for (int32_t r = 0; r < n; r++) {
        int64_t p = (int64_t)s->pos + r - s->dump_begin;
        if (p < 0 || p >= L) continue;
        for (int64_t h = 0; h < in->n_head; h++)
            memcpy(s->dump_q[i] + (h * L + p) * D, q + ((int64_t)r * in->n_head + h) * D, sizeof(float) * (size_t)D);
        for (int64_t h = 0; h < in->n_head_kv; h++) {
            memcpy(s->dump_k[i] + (h * L + p) * D, k + ((int64_t)r * in->n_head_kv + h) * D, sizeof(float) * (size_t)D);
            memcpy(s->dump_v[i] + (h * L + p) * D, v + ((int64_t)r * in->n_head_kv + h) * D, sizeof(float) * (size_t)D);
        }
    }
}

static int write_npy(const char *path, const float *data, int64_t a, int64_t b, int64_t c) {
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld, %lld), }",
                       (long long)a, (long long)b, (long long)c);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int hl = len + pad + 1;
    pre[8] = (unsigned char)(hl & 0xff);
    pre[9] = (unsigned char)(hl >> 8);
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)len, f) == (size_t)len;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    /* little-endian hosts only (x86-64, aarch64): the floats are written as they are in memory */
    size_t cnt = (size_t)(a * b * c);
    ok = ok && fwrite(data, sizeof(float), cnt, f) == cnt;
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

ak_status ak__session_dump_flush(ak_session *s) {
    if (!s->dump_dir || s->dump_written || s->pos < s->dump_end) return AK_OK;
    const ak_model_info *in = &s->m->info;
    int64_t L = s->dump_end - s->dump_begin;
    s->dump_written = 1;
    for (int i = 0; i < s->n_dump_layers; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/layer%02d", s->dump_dir, s->dump_layers[i]);
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return ak__fail(s->ctx, AK_ERR_IO, "dump: cannot create %s: %s", path, strerror(errno));
        size_t pl = strlen(path);
        int bad = 0;
        snprintf(path + pl, sizeof path - pl, "/q.npy");
        bad |= write_npy(path, s->dump_q[i], in->n_head, L, in->head_dim);
        snprintf(path + pl, sizeof path - pl, "/k.npy");
        bad |= write_npy(path, s->dump_k[i], in->n_head_kv, L, in->head_dim);
        snprintf(path + pl, sizeof path - pl, "/v.npy");
        bad |= write_npy(path, s->dump_v[i], in->n_head_kv, L, in->head_dim);
        if (bad) return ak__fail(s->ctx, AK_ERR_IO, "dump: writing %s failed", path);
    }
    return AK_OK;
}
