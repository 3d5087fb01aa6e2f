/* Linear attention (Lightning Attention): the validated problem, the chunked and recurrent forms. */
#ifndef AK_EXEC_LINEAR_H
#define AK_EXEC_LINEAR_H

#include "core/internal.h"

typedef struct ak_laproblem {
    ak_la_desc desc;     /* copy; cu_seqlens cleared (see cu) */
    int32_t B, H, d, e, blk;
    int32_t *cu;         /* [B+1] owned copy when ragged, else NULL */
    int64_t total;       /* packed rows (ragged) or T */
} ak_laproblem;

/* Rows of sequence b: count, first packed row, batch index of the tensors. */
static inline int64_t ak__la_len(const ak_laproblem *p, int64_t b) { return p->cu ? p->cu[b + 1] - p->cu[b] : p->desc.seqlen; }
static inline int64_t ak__la_off(const ak_laproblem *p, int64_t b) { return p->cu ? p->cu[b] : 0; }
static inline int64_t ak__la_bidx(const ak_laproblem *p, int64_t b) { return p->cu ? 0 : b; }

/* Run one form over every (sequence, head): 0 = chunked, 1 = recurrent. */
ak_status ak__la_run(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, int recurrent);
ak_status ak__la_ref(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t);
ak_status ak__la_bwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g);
/* NormAttention around the kernel, per token over all heads: o = x r (. gate) (x f32 or, for the
 * references, f64); backward: x <- dx = r (dy - y mean(y . dy)) with dy = d_o (. gate), d_gate = d_o . y. */
ak_status ak__la_norm_fwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate, const ak_tensor *o);
ak_status ak__la_norm_bwd(const ak_ctx *ctx, const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate,
                          const ak_tensor *d_o, const ak_tensor *d_gate);
ak_status ak__la_norm_fwd_ref(const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate, const ak_tensor *o);
ak_status ak__la_norm_bwd_ref(const ak_laproblem *p, const ak_tensor *x, const ak_tensor *gate, const ak_tensor *d_o,
                              const ak_tensor *d_gate);
ak_status ak__la_bwd_ref(const ak_ctx *ctx, const ak_laproblem *p, const ak_la_tensors *t, const ak_la_grads *g);

#endif
