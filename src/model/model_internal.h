/* Internal: the model and session structs shared by src/model/model.c (loading, forward), attn.c (attention per
 * layer, dumps) and sample.c. */
#ifndef AK_MODEL_INTERNAL_H
#define AK_MODEL_INTERNAL_H

#include <stdint.h>

#include "attnkit.h"

/* A weight matrix as stored: n_out rows of n_in elements of `type`. */
typedef struct ak__wmat {
    int32_t type;
    const void *data;
    int64_t n_in, n_out;
} ak__wmat;

typedef struct ak__layer {
    float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;   /* owned f32 copies */
    ak__wmat wq, wk, wv, wo, wgate, wup, wdown;
    int local;   /* sliding-window layer */
} ak__layer;

struct ak_model {
    ak_ctx *ctx;
    ak_gguf *g;
    ak_tokenizer *tok;
    ak_model_info info;
    ak__wmat embd, head;      /* head == embd when tied */
    float *out_norm;
    float rope_scale_global;  /* 1 / linear scaling factor of the global layers */
    float final_softcap;      /* 0 = none */
    ak__layer *L;
};

typedef enum ak__attn_kind {
    AK__ATTN_DENSE = 0,
    AK__ATTN_DYN = 1,        /* content-aware planner by name, prompt prefill only */
    AK__ATTN_STREAMING = 2,  /* sinks + window, prefill and decode */
    AK__ATTN_KINETICS = 3    /* dense prefill, block top-k decode */
} ak__attn_kind;

typedef struct ak__attn_cfg {
    ak__attn_kind kind;
    char spec[256];
    int32_t sinks, window;               /* streaming */
    ak_kinetics_params kin;              /* kinetics */
    ak_kinetics_index *kindex;           /* kinetics with mean keys */
    double last_density;                 /* density of the last sparse prefill of this layer */
} ak__attn_cfg;

#define AK__NBUF 9   /* X, A, Q, K, V, O, Y, G, U */

struct ak_session {
    ak_model *m;
    ak_ctx *ctx;
    ak_session_config cfg;
    int32_t pos;            /* tokens in the cache */
    int32_t eval_start;     /* position of the first token of the running eval */
    void **kc, **vc;        /* per layer [n_ctx][Hkv][d] of cfg.kv_dtype */
    ak__attn_cfg *attn;     /* per layer */
    float *buf[AK__NBUF];
    int32_t cap;            /* tokens the buffers hold */
    void (*progress)(void *, int32_t, int32_t);
    void *progress_user;
    ak_session_stats stats;
    /* Q/K/V dump */
    char *dump_dir;
    int32_t *dump_layers, n_dump_layers, dump_begin, dump_end;
    float **dump_q, **dump_k, **dump_v;   /* per dump layer [H][L][d] */
    int dump_written;
};

void ak__rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
void ak__rope_angles(float *cs, int32_t d, int64_t pos, float base, float scale);
void ak__rope_neox(float *x, int32_t d, const float *cs);

/* attn.c */
int ak__session_has_prompt_method(const ak_session *s);
ak_status ak__session_attention(ak_session *s, int layer, int32_t n, const float *q, const float *k, const float *v,
                                float *o);
void ak__session_dump_rows(ak_session *s, int layer, int32_t n, const float *q, const float *k, const float *v);
ak_status ak__session_dump_flush(ak_session *s);
void ak__session_dump_free(ak_session *s);

#endif
