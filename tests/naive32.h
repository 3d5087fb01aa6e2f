/*
 * naive32.h — two independent, readable attention references written only from the contract in
 * include/attnkit.h and conventions.md §1-2 (no library code is shared):
 *
 *  naive_attention32: the "naive low-precision" computation the tolerance rule is based on. It
 *    mirrors PyTorch's math SDPA on the given dtypes: for each (b, h, i)
 *      s_j = fl32(scale * dot_f32(q_i, k_j))      (dot accumulated in float, index order)
 *      s_j = cap * tanhf(s_j / cap)               (softcap, if set)
 *      s_j = s_j - slope_h * |i + Lk - Lq - j|    (ALiBi, if set)
 *      masked keys are dropped (causal / window / sequence length)
 *      p_j = expf(s_j - m) / (sum_j expf(s_j - m) + expf(sink - m))   (m = max incl. sink)
 *      O_i = sum_j p_j v_j (float accumulation, index order), rounded to dtype_o
 *      LSE_i = m + logf(sum)
 *    When q or k/v are bf16/f16 ("half" inputs) S is rounded to the coarser input dtype after
 *    each elementwise step (scale, softcap, ALiBi) and P is rounded to it after normalisation,
 *    as PyTorch does on half tensors. The inputs are read as stored (the same half values).
 *
 *  naive_attention64: the same loop in double with no intermediate rounding and an unrounded
 *    output — an independent double oracle used to check ak_attention_ref() itself.
 *
 * Results are dense, row-major over the tensors' own shapes: rows = Bt*Hq*Lt, where Bt/Lt are the
 * q tensor's dims 0 and 2 (B and Lq, or 1 and the packed total for ragged batches).
 * Padding rows (beyond cu_seqlens_q[B]) get O = 0, LSE = -inf and nvis = -1.
 */
#ifndef AK_TEST_NAIVE32_H
#define AK_TEST_NAIVE32_H

#include <stdint.h>

#include "attnkit.h"

typedef struct naive_out {
    int64_t n_rows; /* Bt * Hq * Lt, row index = (tb * Hq + h) * Lt + l */
    int64_t dv;
    double *o;      /* [n_rows][dv] */
    double *lse;    /* [n_rows], natural log; includes the sink term */
    int32_t *nvis;  /* [n_rows] number of visible keys; -1 for padding rows */
} naive_out;

/* Allocate for the problem (t->q gives Bt and Lt). Returns 0 on success. */
int naive_alloc(naive_out *out, const ak_attn_desc *d, const ak_attn_tensors *t);
void naive_free(naive_out *out);

/* Both return 0 on success, -1 on an allocation failure. desc/tensors must be valid. */
int naive_attention32(const ak_attn_desc *d, const ak_attn_tensors *t, naive_out *out);
int naive_attention64(const ak_attn_desc *d, const ak_attn_tensors *t, naive_out *out);

/* The mask rule of conventions.md §1: is key j visible from row i of a sequence (lq, lk)? */
int naive_visible(const ak_attn_desc *d, int64_t i, int64_t j, int64_t lq, int64_t lk);

#endif /* AK_TEST_NAIVE32_H */
