/* Gemma 3 forward pass on attnkit: weights from a GGUF mapping, linear layers through ak_qgemm, attention through
 * the public attention API (dense prefill plans, decode plans on the KV cache, sparse plans of the content-aware
 * planners and of the sink+window pattern, Kinetics block top-k decode).
 *
 * Order of operations per layer (llama.cpp's gemma3 graph; ../shared/specs/gemma3-runner.md §1):
 *   a = rmsnorm(x) * attn_norm;  q = Wq a, k = Wk a, v = Wv a;  per-head rmsnorm(q) * q_norm, rmsnorm(k) * k_norm;
 *   RoPE NEOX (base 1e4 local / freq_base global);  o = attention(q, k, v) * (scale 1/sqrt(d));
 *   x += rmsnorm(Wo o) * post_attention_norm;  f = rmsnorm(x) * ffn_norm;
 *   x += rmsnorm(Wdown (gelu_tanh(Wgate f) * Wup f)) * post_ffw_norm.
 *   logits = token_embd . (rmsnorm(x) * output_norm)   (tied head).
 * Activations are f32 everywhere; rmsnorm sums squares in double as llama.cpp does.
 */
#include "model/model_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/internal.h"

#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------------------------------- */

static ak_status get_u32_key(ak_model *m, const char *key, int32_t *out, int required, int32_t dflt) {
    int64_t v;
    if (ak_gguf_find_key(m->g, key) < 0) {
        if (required) return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: key %s is missing", key);
        *out = dflt;
        return AK_OK;
    }
    ak_status st = ak_gguf_get_int(m->g, key, &v);
    if (st != AK_OK) return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: key %s is not an integer", key);
    if (v < 1 || v > (1 << 24)) return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: key %s = %lld is out of range", key, (long long)v);
    *out = (int32_t)v;
    return AK_OK;
}

static ak_status get_f32_key(ak_model *m, const char *key, float *out, float dflt) {
    double v;
    if (ak_gguf_find_key(m->g, key) < 0) {
        *out = dflt;
        return AK_OK;
    }
    if (ak_gguf_get_float(m->g, key, &v) != AK_OK || !(v > 0) || !isfinite(v))
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: key %s must be a positive float", key);
    *out = (float)v;
    return AK_OK;
}

/* Find tensor `name` with shape [ne0][ne1] (ne1 = 1 for vectors) and remember it as a weight matrix. */
static ak_status get_mat(ak_model *m, const char *name, int64_t ne0, int64_t ne1, ak__wmat *w) {
    int64_t i = ak_gguf_find_tensor(m->g, name);
    if (i < 0) return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: tensor %s is missing", name);
    ak_gguf_tensor t;
    ak_status st = ak_gguf_tensor_info(m->g, i, &t);
    if (st != AK_OK) return st;
    if (t.ne[0] != ne0 || t.ne[1] != ne1 || t.ne[2] != 1 || t.ne[3] != 1)
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        name, (long long)t.ne[0], (long long)t.ne[1], (long long)t.ne[2], (long long)t.ne[3],
                        (long long)ne0, (long long)ne1);
    if (ak_qtype_block_elems(t.type) == 0)
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: tensor %s has unsupported type %d", name, (int)t.type);
    w->type = t.type;
    w->data = t.data;
    w->n_in = ne0;
    w->n_out = ne1;
    m->info.n_params += ne0 * ne1;
    m->info.weight_bytes += t.nbytes;
    return AK_OK;
}

/* A norm vector: any float type, copied to an owned f32 array. */
static ak_status get_vec(ak_model *m, const char *name, int64_t n, float **out) {
    ak__wmat w = {0, NULL, 0, 0};
    ak_status st = get_mat(m, name, n, 1, &w);
    if (st != AK_OK) return st;
    if (w.type != AK_Q_F32 && w.type != AK_Q_F16 && w.type != AK_Q_BF16)
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: norm tensor %s must be f32/f16/bf16, is %s", name,
                        ak_qtype_name(w.type));
    float *v = (float *)ak__alloc(m->ctx, (size_t)n * sizeof(float));
    if (!v) return ak__fail(m->ctx, AK_ERR_OUT_OF_MEMORY, "model: out of memory");
    st = ak_dequantize(m->ctx, w.type, w.data, v, n);
    if (st != AK_OK) {
        ak__free(m->ctx, v);
        return st;
    }
    *out = v;
    return AK_OK;
}

static ak_status model_read(ak_model *m) {
    const char *arch;
    size_t alen;
    ak_status st;
    if (ak_gguf_get_str(m->g, "general.architecture", &arch, &alen) != AK_OK)
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: general.architecture is missing or not a string");
    if (alen != 6 || memcmp(arch, "gemma3", 6) != 0)
        return ak__fail(m->ctx, AK_ERR_UNSUPPORTED_DTYPE, "model: architecture '%.*s' is not supported (gemma3 only)",
                        (int)(alen < 32 ? alen : 32), arch);
    ak_model_info *in = &m->info;
    memcpy(in->arch, "gemma3", 7);
    const char *name;
    size_t nlen;
    if (ak_gguf_get_str(m->g, "general.name", &name, &nlen) == AK_OK)
        snprintf(in->name, sizeof in->name, "%.*s", (int)(nlen < 95 ? nlen : 95), name);
    if ((st = get_u32_key(m, "gemma3.embedding_length", &in->n_embd, 1, 0)) ||
        (st = get_u32_key(m, "gemma3.block_count", &in->n_layer, 1, 0)) ||
        (st = get_u32_key(m, "gemma3.feed_forward_length", &in->n_ff, 1, 0)) ||
        (st = get_u32_key(m, "gemma3.attention.head_count", &in->n_head, 1, 0)) ||
        (st = get_u32_key(m, "gemma3.attention.head_count_kv", &in->n_head_kv, 0, in->n_head)) ||
        (st = get_u32_key(m, "gemma3.context_length", &in->n_ctx_train, 0, 32768)) ||
        (st = get_u32_key(m, "gemma3.attention.sliding_window", &in->sliding_window, 0, 512)))
        return st;
    int32_t kl = 0, vl = 0;
    if ((st = get_u32_key(m, "gemma3.attention.key_length", &kl, 0, in->n_embd / in->n_head)) ||
        (st = get_u32_key(m, "gemma3.attention.value_length", &vl, 0, kl)))
        return st;
    if (kl != vl || kl > AK_MAX_HEAD_DIM || kl % 2)
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: key_length %d / value_length %d unsupported (equal, even, <= %d)",
                        kl, vl, AK_MAX_HEAD_DIM);
    in->head_dim = kl;
    if (in->n_head % in->n_head_kv)
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: head_count %d is not a multiple of head_count_kv %d", in->n_head,
                        in->n_head_kv);
    int32_t nrot = 0;
    if ((st = get_u32_key(m, "gemma3.rope.dimension_count", &nrot, 0, kl))) return st;
    if (nrot != kl) return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: partial rotary (%d of %d) is not supported", nrot, kl);
    if (ak_gguf_find_key(m->g, "gemma3.rope.scaling.type") >= 0) {
        const char *t;
        size_t tl;
        if (ak_gguf_get_str(m->g, "gemma3.rope.scaling.type", &t, &tl) != AK_OK ||
            !((tl == 4 && !memcmp(t, "none", 4)) || (tl == 6 && !memcmp(t, "linear", 6))))
            return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: rope scaling type must be none or linear");
        if (tl == 6) {
            float f;
            if ((st = get_f32_key(m, "gemma3.rope.scaling.factor", &f, 1.0f))) return st;
            m->rope_scale_global = 1.0f / f;
        }
    }
    if (ak_gguf_find_key(m->g, "gemma3.final_logit_softcapping") >= 0 &&
        (st = get_f32_key(m, "gemma3.final_logit_softcapping", &m->final_softcap, 0.0f)))
        return st;
    if ((st = get_f32_key(m, "gemma3.attention.layer_norm_rms_epsilon", &in->rms_eps, 1e-6f)) ||
        (st = get_f32_key(m, "gemma3.rope.freq_base", &in->rope_base_global, 1e6f)))
        return st;
    in->rope_base_local = 10000.0f;   /* hard-coded for Gemma 3 in llama.cpp (rope_freq_base_train_swa) */
    in->swa_period = 6;
    in->embd_scale = sqrtf((float)in->n_embd);
    in->attn_scale = 1.0f / sqrtf((float)in->head_dim);

    const int64_t E = in->n_embd, D = in->head_dim, Hq = in->n_head, Hk = in->n_head_kv, F = in->n_ff;
    int64_t ti = ak_gguf_find_tensor(m->g, "token_embd.weight");
    if (ti < 0) return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: tensor token_embd.weight is missing");
    ak_gguf_tensor te;
    if ((st = ak_gguf_tensor_info(m->g, ti, &te))) return st;
    if (te.ne[1] < 1 || te.ne[1] > (1 << 24))
        return ak__fail(m->ctx, AK_ERR_BAD_FILE, "model: token_embd.weight has %lld rows", (long long)te.ne[1]);
    in->n_vocab = (int32_t)te.ne[1];
    if ((st = get_mat(m, "token_embd.weight", E, in->n_vocab, &m->embd))) return st;
    if (ak_gguf_find_tensor(m->g, "output.weight") >= 0) {
        if ((st = get_mat(m, "output.weight", E, in->n_vocab, &m->head))) return st;
    } else {
        m->head = m->embd;
    }
    if ((st = get_vec(m, "output_norm.weight", E, &m->out_norm))) return st;
    m->L = (ak__layer *)ak__alloc(m->ctx, sizeof(ak__layer) * (size_t)in->n_layer);
    if (!m->L) return ak__fail(m->ctx, AK_ERR_OUT_OF_MEMORY, "model: out of memory");
    memset(m->L, 0, sizeof(ak__layer) * (size_t)in->n_layer);
    for (int l = 0; l < in->n_layer; l++) {
        ak__layer *L = &m->L[l];
        char nm[96];
#define AK_T(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, l), nm)
        if ((st = get_vec(m, AK_T("attn_norm.weight"), E, &L->attn_norm)) ||
            (st = get_vec(m, AK_T("attn_q_norm.weight"), D, &L->q_norm)) ||
            (st = get_vec(m, AK_T("attn_k_norm.weight"), D, &L->k_norm)) ||
            (st = get_vec(m, AK_T("post_attention_norm.weight"), E, &L->post_attn_norm)) ||
            (st = get_vec(m, AK_T("ffn_norm.weight"), E, &L->ffn_norm)) ||
            (st = get_vec(m, AK_T("post_ffw_norm.weight"), E, &L->post_ffw_norm)) ||
            (st = get_mat(m, AK_T("attn_q.weight"), E, Hq * D, &L->wq)) ||
            (st = get_mat(m, AK_T("attn_k.weight"), E, Hk * D, &L->wk)) ||
            (st = get_mat(m, AK_T("attn_v.weight"), E, Hk * D, &L->wv)) ||
            (st = get_mat(m, AK_T("attn_output.weight"), Hq * D, E, &L->wo)) ||
            (st = get_mat(m, AK_T("ffn_gate.weight"), E, F, &L->wgate)) ||
            (st = get_mat(m, AK_T("ffn_up.weight"), E, F, &L->wup)) ||
            (st = get_mat(m, AK_T("ffn_down.weight"), F, E, &L->wdown)))
            return st;
#undef AK_T
        L->local = (l % in->swa_period) < in->swa_period - 1;
    }
    return ak_tokenizer_create(m->ctx, m->g, &m->tok);
}

ak_status ak_model_load(ak_ctx *ctx, const char *path, ak_model **out) {
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_model_load: out is NULL");
    *out = NULL;
    if (!ctx || !path) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_model_load: ctx and path are required");
    ak_model *m = (ak_model *)ak__alloc(ctx, sizeof *m);
    if (!m) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_model_load: out of memory");
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->rope_scale_global = 1.0f;
    ak_status st = ak_gguf_open(ctx, path, &m->g);
    if (st == AK_OK) st = model_read(m);
    if (st != AK_OK) {   /* the failing call recorded its message on ctx; freeing records nothing */
        ak_model_free(m);
        return st;
    }
    *out = m;
    return AK_OK;
}

void ak_model_free(ak_model *m) {
    if (!m) return;
    if (m->L) {
        for (int l = 0; l < m->info.n_layer; l++) {
            ak__layer *L = &m->L[l];
            ak__free(m->ctx, L->attn_norm);
            ak__free(m->ctx, L->q_norm);
            ak__free(m->ctx, L->k_norm);
            ak__free(m->ctx, L->post_attn_norm);
            ak__free(m->ctx, L->ffn_norm);
            ak__free(m->ctx, L->post_ffw_norm);
        }
        ak__free(m->ctx, m->L);
    }
    ak__free(m->ctx, m->out_norm);
    ak_tokenizer_destroy(m->tok);
    ak_gguf_close(m->g);
    ak__free(m->ctx, m);
}

ak_status ak_model_get_info(const ak_model *m, ak_model_info *info) {
    if (!m || !info) return ak__fail(m ? m->ctx : NULL, AK_ERR_NULL_POINTER, "ak_model_get_info: NULL argument");
    *info = m->info;
    return AK_OK;
}

int ak_model_layer_is_local(const ak_model *m, int32_t layer) {
    if (!m || layer < 0 || layer >= m->info.n_layer) return -1;
    return m->L[layer].local;
}

const ak_tokenizer *ak_model_tokenizer(const ak_model *m) { return m ? m->tok : NULL; }

/* ------------------------------------------------------------------------------------------------
 * Element-wise pieces (one screen each)
 * ---------------------------------------------------------------------------------------------- */

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], n elements; the sum of squares in double (llama.cpp's CPU op). */
void ak__rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static float gelu_tanh(float x) {
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

/* RoPE NEOX angles of position pos: cs[i] = cos, cs[h + i] = sin of pos * scale * base^(-2i/d), i < h = d/2. */
void ak__rope_angles(float *cs, int32_t d, int64_t pos, float base, float scale) {
    int32_t h = d / 2;
    for (int32_t i = 0; i < h; i++) {
        double theta = (double)pos * (double)scale * pow((double)base, -2.0 * i / (double)d);
        cs[i] = (float)cos(theta);
        cs[h + i] = (float)sin(theta);
    }
}

/* RoPE NEOX on one head vector x[d] with the angles of ak__rope_angles: pairs (i, i + d/2) rotated. */
void ak__rope_neox(float *x, int32_t d, const float *cs) {
    int32_t h = d / 2;
    for (int32_t i = 0; i < h; i++) {
        float a = x[i], b = x[i + h], c = cs[i], s = cs[h + i];
        x[i] = a * c - b * s;
        x[i + h] = a * s + b * c;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Sessions
 * ---------------------------------------------------------------------------------------------- */

void ak_session_config_init(ak_session_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->n_ctx = 4096;
    cfg->n_chunk = 512;
    cfg->kv_dtype = AK_F32;
}

ak_status ak_session_create(ak_model *m, const ak_session_config *cfg, ak_session **out) {
    if (!out) return ak__fail(m ? m->ctx : NULL, AK_ERR_NULL_POINTER, "ak_session_create: out is NULL");
    *out = NULL;
    if (!m) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_create: model is NULL");
    ak_session_config c;
    ak_session_config_init(&c);
    if (cfg) {
        if (cfg->size != sizeof *cfg)
            return ak__fail(m->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_create: cfg.size is wrong (use ak_session_config_init)");
        c = *cfg;
    }
    if (c.n_ctx < 1 || c.n_ctx > m->info.n_ctx_train)
        return ak__fail(m->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_create: n_ctx = %d outside [1, %d]", c.n_ctx,
                        m->info.n_ctx_train);
    if (c.n_chunk == 0) c.n_chunk = 512;
    if (c.n_chunk < 1 || c.n_chunk > (1 << 20))
        return ak__fail(m->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_create: n_chunk = %d must be >= 1", c.n_chunk);
    if (c.kv_dtype != AK_F32 && c.kv_dtype != AK_BF16 && c.kv_dtype != AK_F16)
        return ak__fail(m->ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_session_create: kv_dtype must be f32, bf16 or f16");
    ak_session *s = (ak_session *)ak__alloc(m->ctx, sizeof *s);
    if (!s) return ak__fail(m->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_create: out of memory");
    memset(s, 0, sizeof *s);
    s->m = m;
    s->ctx = m->ctx;
    s->cfg = c;
    int nl = m->info.n_layer;
    s->kc = (void **)ak__alloc(m->ctx, sizeof(void *) * (size_t)nl);
    s->vc = (void **)ak__alloc(m->ctx, sizeof(void *) * (size_t)nl);
    s->attn = (ak__attn_cfg *)ak__alloc(m->ctx, sizeof(ak__attn_cfg) * (size_t)nl);
    if (!s->kc || !s->vc || !s->attn) {
        ak_session_free(s);
        return ak__fail(m->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_create: out of memory");
    }
    memset(s->kc, 0, sizeof(void *) * (size_t)nl);
    memset(s->vc, 0, sizeof(void *) * (size_t)nl);
    memset(s->attn, 0, sizeof(ak__attn_cfg) * (size_t)nl);
    size_t row = (size_t)m->info.n_head_kv * (size_t)m->info.head_dim * ak_dtype_size(c.kv_dtype);
    for (int l = 0; l < nl; l++) {
        s->kc[l] = ak__alloc(m->ctx, row * (size_t)c.n_ctx);
        s->vc[l] = ak__alloc(m->ctx, row * (size_t)c.n_ctx);
        if (!s->kc[l] || !s->vc[l]) {
            ak_session_free(s);
            return ak__fail(m->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_create: out of memory for the KV cache (%d tokens)", c.n_ctx);
        }
        snprintf(s->attn[l].spec, sizeof s->attn[l].spec, "dense");
    }
    *out = s;
    return AK_OK;
}

static void free_bufs(ak_session *s) {
    for (int i = 0; i < AK__NBUF; i++) {
        ak__free(s->ctx, s->buf[i]);
        s->buf[i] = NULL;
    }
    s->cap = 0;
}

void ak_session_free(ak_session *s) {
    if (!s) return;
    for (int l = 0; s->kc && l < s->m->info.n_layer; l++) ak__free(s->ctx, s->kc[l]);
    for (int l = 0; s->vc && l < s->m->info.n_layer; l++) ak__free(s->ctx, s->vc[l]);
    for (int l = 0; s->attn && l < s->m->info.n_layer; l++) ak_kinetics_index_destroy(s->attn[l].kindex);
    ak__free(s->ctx, s->kc);
    ak__free(s->ctx, s->vc);
    ak__free(s->ctx, s->attn);
    free_bufs(s);
    ak__session_dump_free(s);
    ak__free(s->ctx, s);
}

int32_t ak_session_pos(const ak_session *s) { return s ? s->pos : -1; }

ak_status ak_session_reset(ak_session *s) {
    if (!s) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_reset: session is NULL");
    s->pos = 0;
    for (int l = 0; l < s->m->info.n_layer; l++)
        if (s->attn[l].kindex) ak_kinetics_index_reset(s->attn[l].kindex, 0);
    return AK_OK;
}

ak_status ak_session_set_progress(ak_session *s, void (*fn)(void *, int32_t, int32_t), void *user) {
    if (!s) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_set_progress: session is NULL");
    s->progress = fn;
    s->progress_user = user;
    return AK_OK;
}

ak_status ak_session_get_stats(const ak_session *s, ak_session_stats *st) {
    if (!s || !st) return ak__fail(s ? s->ctx : NULL, AK_ERR_NULL_POINTER, "ak_session_get_stats: NULL argument");
    *st = s->stats;
    return AK_OK;
}

/* Activation buffers for chunks of up to n tokens. */
static ak_status ensure_bufs(ak_session *s, int32_t n) {
    if (n <= s->cap) return AK_OK;
    free_bufs(s);
    const ak_model_info *in = &s->m->info;
    int64_t E = in->n_embd, Q = (int64_t)in->n_head * in->head_dim, K = (int64_t)in->n_head_kv * in->head_dim;
    int64_t w[AK__NBUF] = {E, E, Q, K, K, Q, E, in->n_ff, in->n_ff};
    for (int i = 0; i < AK__NBUF; i++) {
        s->buf[i] = (float *)ak__alloc(s->ctx, (size_t)n * (size_t)w[i] * sizeof(float));
        if (!s->buf[i]) {
            free_bufs(s);
            return ak__fail(s->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_eval: out of memory for %d tokens of activations", n);
        }
    }
    s->cap = n;
    return AK_OK;
}

static ak_status qgemm(ak_session *s, const ak__wmat *w, const float *x, int64_t m, float *y) {
    double t0 = now_s();
    ak_status st = ak_qgemm(s->ctx, w->type, w->data, w->n_out, w->n_in, x, m, w->n_in, y, w->n_out);
    s->stats.seconds_linear += now_s() - t0;
    return st;
}

static int nthreads(const ak_session *s) { return ak_ctx_get_num_threads(s->ctx); }

/* One chunk of n tokens at positions s->pos .. s->pos+n-1 through every layer; leaves x (buf X) holding the
 * final hidden states after the output norm. */
static ak_status forward_chunk(ak_session *s, const int32_t *tok, int32_t n) {
    const ak_model *m = s->m;
    const ak_model_info *in = &m->info;
    const int64_t E = in->n_embd, D = in->head_dim, Hq = in->n_head, Hk = in->n_head_kv, F = in->n_ff;
    float *X = s->buf[0], *A = s->buf[1], *Qb = s->buf[2], *Kb = s->buf[3], *Vb = s->buf[4], *O = s->buf[5];
    float *Y = s->buf[6], *G = s->buf[7], *U = s->buf[8];
    ak_status st;
    int nt = nthreads(s);
    (void)nt;

    /* embedding rows * sqrt(E) */
    int64_t rowb = (E / ak_qtype_block_elems(m->embd.type)) * ak_qtype_block_bytes(m->embd.type);
    for (int32_t i = 0; i < n; i++) {
        st = ak_dequantize(s->ctx, m->embd.type, (const uint8_t *)m->embd.data + (int64_t)tok[i] * rowb, X + i * E, E);
        if (st != AK_OK) return st;
        for (int64_t e = 0; e < E; e++) X[i * E + e] *= in->embd_scale;
    }
    for (int l = 0; l < in->n_layer; l++) {
        const ak__layer *L = &m->L[l];
        float base = L->local ? in->rope_base_local : in->rope_base_global;
        float rscale = L->local ? 1.0f : m->rope_scale_global;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 8)
#endif
        for (int32_t i = 0; i < n; i++) ak__rmsnorm(A + i * E, X + i * E, L->attn_norm, E, in->rms_eps);
        if ((st = qgemm(s, &L->wq, A, n, Qb)) || (st = qgemm(s, &L->wk, A, n, Kb)) || (st = qgemm(s, &L->wv, A, n, Vb)))
            return st;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 8)
#endif
        for (int32_t i = 0; i < n; i++) {
            float cs[AK_MAX_HEAD_DIM];   /* the angles once per token, shared by its query and key heads */
            ak__rope_angles(cs, (int32_t)D, (int64_t)s->pos + i, base, rscale);
            for (int64_t h = 0; h < Hq; h++) {
                float *q = Qb + (i * Hq + h) * D;
                ak__rmsnorm(q, q, L->q_norm, D, in->rms_eps);
                ak__rope_neox(q, (int32_t)D, cs);
            }
            for (int64_t h = 0; h < Hk; h++) {
                float *k = Kb + (i * Hk + h) * D;
                ak__rmsnorm(k, k, L->k_norm, D, in->rms_eps);
                ak__rope_neox(k, (int32_t)D, cs);
            }
        }
        ak__session_dump_rows(s, l, n, Qb, Kb, Vb);
        if ((st = ak__session_attention(s, l, n, Qb, Kb, Vb, O))) return st;
        if ((st = qgemm(s, &L->wo, O, n, Y))) return st;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 8)
#endif
        for (int32_t i = 0; i < n; i++) {
            float *y = Y + i * E, *x = X + i * E;
            ak__rmsnorm(y, y, L->post_attn_norm, E, in->rms_eps);
            for (int64_t e = 0; e < E; e++) x[e] += y[e];
            ak__rmsnorm(A + i * E, x, L->ffn_norm, E, in->rms_eps);
        }
        if ((st = qgemm(s, &L->wgate, A, n, G)) || (st = qgemm(s, &L->wup, A, n, U))) return st;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 8)
#endif
        for (int64_t j = 0; j < (int64_t)n * F; j++) G[j] = gelu_tanh(G[j]) * U[j];
        if ((st = qgemm(s, &L->wdown, G, n, Y))) return st;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (n >= 8)
#endif
        for (int32_t i = 0; i < n; i++) {
            float *y = Y + i * E, *x = X + i * E;
            ak__rmsnorm(y, y, L->post_ffw_norm, E, in->rms_eps);
            for (int64_t e = 0; e < E; e++) x[e] += y[e];
        }
    }
    for (int32_t i = 0; i < n; i++) ak__rmsnorm(X + i * E, X + i * E, m->out_norm, E, in->rms_eps);
    return AK_OK;
}

static ak_status head_rows(ak_session *s, const float *x, int64_t rows, float *logits) {
    ak_status st = qgemm(s, &s->m->head, x, rows, logits);
    if (st != AK_OK || s->m->final_softcap <= 0) return st;
    float c = s->m->final_softcap;
    for (int64_t j = 0; j < rows * s->m->info.n_vocab; j++) logits[j] = c * tanhf(logits[j] / c);
    return AK_OK;
}

/* Validate and run n tokens chunk by chunk; after each chunk `each(s, chunk_start, chunk_n, user)` consumes the
 * chunk's final hidden states (buf 0). */
typedef ak_status (*chunk_fn)(ak_session *s, int32_t off, int32_t n, void *user);

static ak_status run_tokens(ak_session *s, const int32_t *tokens, int32_t n, chunk_fn each, void *user) {
    if (!s) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_eval: session is NULL");
    if (!tokens) return ak__fail(s->ctx, AK_ERR_NULL_POINTER, "ak_session_eval: tokens is NULL");
    if (n < 1) return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_eval: n = %d, must be >= 1", n);
    if ((int64_t)s->pos + n > s->cfg.n_ctx)
        return ak__fail(s->ctx, AK_ERR_CAPACITY, "ak_session_eval: %d tokens at position %d exceed n_ctx = %d", n, s->pos,
                        s->cfg.n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->m->info.n_vocab)
            return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_eval: token %d at index %d outside [0, %d)",
                            tokens[i], i, s->m->info.n_vocab);
    /* A content-aware method plans the whole prompt at once: a prompt eval with one runs as a single chunk. */
    int32_t chunk = s->cfg.n_chunk;
    if (s->pos == 0 && ak__session_has_prompt_method(s)) chunk = n;
    if (chunk > n) chunk = n;
    ak_status st = ensure_bufs(s, chunk);
    if (st != AK_OK) return st;
    double t0 = now_s();
    s->eval_start = s->pos;
    for (int32_t off = 0; off < n; off += chunk) {
        int32_t c = n - off < chunk ? n - off : chunk;
        st = forward_chunk(s, tokens + off, c);
        if (st == AK_OK && each) st = each(s, off, c, user);
        if (st != AK_OK) return st;   /* the cache keeps the chunks that completed */
        s->pos += c;
        if (s->progress) s->progress(s->progress_user, off + c, n);
    }
    st = ak__session_dump_flush(s);
    if (st != AK_OK) return st;
    double dt = now_s() - t0;
    if (n > 1) {
        s->stats.tokens_prefill += n;
        s->stats.seconds_prefill += dt;
    } else {
        s->stats.tokens_decode += n;
        s->stats.seconds_decode += dt;
    }
    return AK_OK;
}

typedef struct {
    float *logits;
    int32_t rows, n;
} logits_job;

static ak_status logits_each(ak_session *s, int32_t off, int32_t c, void *user) {
    logits_job *j = (logits_job *)user;
    const int64_t E = s->m->info.n_embd, V = s->m->info.n_vocab;
    if (j->rows == 1) {
        if (off + c < j->n) return AK_OK;
        return head_rows(s, s->buf[0] + (int64_t)(c - 1) * E, 1, j->logits);
    }
    return head_rows(s, s->buf[0], c, j->logits + (int64_t)off * V);
}

ak_status ak_session_eval(ak_session *s, const int32_t *tokens, int32_t n, float *logits, int32_t rows) {
    if (s && logits && rows != 1 && rows != n)
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_eval: rows = %d, must be 1 or n = %d", rows, n);
    logits_job j = {logits, rows, n};
    return run_tokens(s, tokens, n, logits ? logits_each : NULL, &j);
}

typedef struct {
    const int32_t *tokens;
    int32_t n, first;
    double *nll;
    int32_t *top1;
    float *scratch;   /* [blk][V] */
    int32_t blk;
} nll_job;

static ak_status nll_each(ak_session *s, int32_t off, int32_t c, void *user) {
    nll_job *j = (nll_job *)user;
    const int64_t E = s->m->info.n_embd, V = s->m->info.n_vocab;
    for (int32_t r0 = 0; r0 < c; r0 += j->blk) {
        int32_t lo = r0, hi = r0 + j->blk < c ? r0 + j->blk : c;
        /* rows (off + r) scored iff first <= off + r < n - 1 */
        if (off + lo < j->first) lo = j->first - off;
        if (off + hi > j->n - 1) hi = j->n - 1 - off;
        if (lo >= hi) continue;
        ak_status st = head_rows(s, s->buf[0] + (int64_t)lo * E, hi - lo, j->scratch);
        if (st != AK_OK) return st;
        int nt = nthreads(s);
        (void)nt;
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (hi - lo >= 2)
#endif
        for (int32_t r = lo; r < hi; r++) {
            const float *z = j->scratch + (int64_t)(r - lo) * V;
            float mx = z[0];
            int32_t arg = 0;
            for (int64_t v = 1; v < V; v++)
                if (z[v] > mx) {
                    mx = z[v];
                    arg = (int32_t)v;
                }
            double sum = 0.0;
            for (int64_t v = 0; v < V; v++) sum += exp((double)z[v] - (double)mx);
            int32_t row = off + r;
            j->nll[row - j->first] = -((double)z[j->tokens[row + 1]] - (double)mx - log(sum));
            if (j->top1) j->top1[row - j->first] = arg;
        }
    }
    return AK_OK;
}

ak_status ak_session_eval_nll(ak_session *s, const int32_t *tokens, int32_t n, int32_t first, double *nll,
                              int32_t *top1) {
    if (!s) return ak__fail(NULL, AK_ERR_NULL_POINTER, "ak_session_eval_nll: session is NULL");
    if (!nll) return ak__fail(s->ctx, AK_ERR_NULL_POINTER, "ak_session_eval_nll: nll is NULL");
    if (first < 0 || first > n)
        return ak__fail(s->ctx, AK_ERR_INVALID_ARGUMENT, "ak_session_eval_nll: first = %d outside [0, n = %d]", first, n);
    nll_job j = {tokens, n, first, nll, top1, NULL, 64};
    j.scratch = (float *)ak__alloc(s->ctx, (size_t)j.blk * (size_t)s->m->info.n_vocab * sizeof(float));
    if (!j.scratch) return ak__fail(s->ctx, AK_ERR_OUT_OF_MEMORY, "ak_session_eval_nll: out of memory");
    ak_status st = run_tokens(s, tokens, n, nll_each, &j);
    ak__free(s->ctx, j.scratch);
    return st;
}
