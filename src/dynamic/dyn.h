/* Shared pieces of the content-aware (dynamic) sparse planners in src/dynamic/: input validation,
 * rows as f32, score products on the context's micro-kernel, the probabilities of the last query rows,
 * their vertical / slash sums, top-k selection, block sums, timing and the info text.
 * Every planner: estimate (f32) -> ak_sparse_builder -> plan; see docs/DYNAMIC.md. */
#ifndef AK_DYNAMIC_DYN_H
#define AK_DYNAMIC_DYN_H

#include "core/internal.h"
#include "core/sparse.h"

/* A validated planner input. */
typedef struct ak_dyn_in {
    ak_ctx *ctx;
    ak_problem p;                  /* the validated descriptor */
    const ak_attn_tensors *t;      /* q, k (and v when asked for) checked against it */
    int32_t B, Hq, Hkv, G;         /* G = Hq / Hkv */
    int32_t nq, nk, d, dv;         /* nq = seqlen_q, nk = seqlen_k */
    float scale;
    const ak_fwd_kernels *kern;    /* the context's f32 micro-kernels (scalar when force_ref) */
    double t0;                     /* ak__dyn_now() at ak__dyn_begin */
} ak_dyn_in;

/* Validate desc (not ragged; window/softcap/ALiBi/sinks allowed only if allow_masks) and the tensors
 * t->q, t->k (and t->v when need_v) against it; `method` names the caller in messages. Starts the
 * estimation clock. On success call ak__dyn_end. */
ak_status ak__dyn_begin(ak_ctx *ctx, const ak_attn_desc *desc, const ak_attn_tensors *t, int need_v, int allow_masks,
                        const char *method, ak_dyn_in *in);
void ak__dyn_end(ak_dyn_in *in);

/* Monotonic wall clock, seconds. */
double ak__dyn_now(void);

/* Fill the info (may be NULL): size, est_seconds = now - in->t0, and the plan's density. */
void ak__dyn_info_finish(const ak_dyn_in *in, const ak_sparse *sp, ak_dyn_info *info);
/* Append printf-style text to info->explain (truncates; info may be NULL). */
void ak__dyn_explain(ak_dyn_info *info, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Rows [i0, i0 + n) of head h, sequence b of X ([B][H][L][cols], any dtype, any strides) as f32:
 * out[r][c], leading dimension ld >= cols. */
void ak__dyn_rows(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int64_t h, int64_t i0, int64_t n, int cols,
                  float *out, int64_t ld);

/* S[r][j] = scale * A[r][.] . Bm[j][.] for r < m, j < n (A [m][lda], Bm [n][ldb], S [m][lds], all f32),
 * on the context's micro-kernel. Allocates O(d * m) scratch; returns AK_ERR_OUT_OF_MEMORY on failure. */
ak_status ak__dyn_scores(const ak_dyn_in *in, int m, int64_t n, int d, const float *A, int64_t lda, const float *Bm,
                         int64_t ldb, float scale, float *S, int64_t lds);

/* Probabilities of the last L query rows of query head h (sequence b) over all nk keys of its KV head
 * kvh: P[r][j] = softmax_j(scale * q_r . k_j), r = 0..L-1 for query rows nq - L + r, causal keys only
 * (j <= pos(row) when causal, bottom-right aligned) -- the estimation step of FlexPrefill, MInference
 * and MMInference. P is [L][nk] (ld = nk). Rows in f32; the softmax in double sums. */
ak_status ak__dyn_last_probs(const ak_dyn_in *in, int64_t b, int32_t h, int32_t kvh, int32_t L, int causal, float *P);

/* The same for an explicit list of query rows (rows[r], any order): P[r][j] over all keys, causal by
 * the rows' own positions. */
ak_status ak__dyn_rows_probs(const ak_dyn_in *in, int64_t b, int32_t h, int32_t kvh, const int32_t *rows, int32_t L,
                             int causal, float *P);

/* Column ("vertical") sums vs[j] = sum_r P[r][j] and diagonal ("slash") sums ss[delta] = sum over r of
 * P[r][pos(r) - delta] for delta = 0..nk-1 (delta = distance from the row's own position), where
 * pos(r) = pos0 + r (the rows are consecutive). Either output may be NULL. */
void ak__dyn_vs_sums(const float *P, int32_t L, int32_t nk, int64_t pos0, double *vs, double *ss);

/* Indices of the k largest x[0..n) (ties: the lower index wins), returned sorted by index ascending
 * (by_value = 0) or by value descending (by_value = 1). k is clamped to [0, n]; returns the count.
 * NaN counts as the smallest value. Allocates O(n) scratch (NULL return path: -1 on out of memory). */
int64_t ak__dyn_topk(const ak_ctx *ctx, const double *x, int64_t n, int64_t k, int by_value, int32_t *idx);
int64_t ak__dyn_topk_f(const ak_ctx *ctx, const float *x, int64_t n, int64_t k, int by_value, int32_t *idx);

/* Block sums of rows of X (head h, sequence b): for blocks c = 0..nb-1 of bs rows starting at row 0
 * (the last block may be short), sums[c][.] = sum of its rows (f32 rows, double accumulation, stored as
 * float [nb][cols]) and cnt[c] = its row count (may be NULL). Rows [0, n) only. */
void ak__dyn_block_sums(const ak_dyn_in *in, const ak_tensor *X, int64_t b, int64_t h, int64_t n, int32_t bs,
                        int cols, float *sums, int32_t *cnt);

/* Parse "key=value,key=value" method options (the CLI / ak_dyn_plan_named syntax): calls set(user,
 * key, value) for each pair; set returns 0 when the key is unknown or the value invalid. Returns
 * AK_ERR_INVALID_ARGUMENT naming the pair on the first failure. */
ak_status ak__dyn_parse_opts(ak_ctx *ctx, const char *method, const char *opts,
                             int (*set)(void *user, const char *key, const char *val), void *user);

/* Option setters for ak_dyn_plan_named ("key=value"), one per method, defined in the method's file:
 * params points to the method's params struct (already initialised); return 0 for an unknown key or a
 * value that does not parse (range checks are the planner's). */
int ak__flexprefill_opt(void *params, const char *key, const char *val);
int ak__minference_opt(void *params, const char *key, const char *val);
int ak__mminference_opt(void *params, const char *key, const char *val);
int ak__anchor_opt(void *params, const char *key, const char *val);
int ak__dhsa_opt(void *params, const char *key, const char *val);
int ak__routing_opt(void *params, const char *key, const char *val);
int ak__dma_opt(void *params, const char *key, const char *val);

/* Value parsers for the setters: whole string must parse; 1 on success. */
int ak__dyn_int(const char *val, int32_t *out);
int ak__dyn_float(const char *val, float *out);

#endif
