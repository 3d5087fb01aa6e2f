/*
 * harness.h — one attention problem with owned, poisoned, strided tensors, the double oracle run,
 * and the accuracy rule every test applies (see README.md "Accuracy contract"):
 *
 *   per output tensor:  err(x) = max_abs(x - O_ref64) over all its elements
 *   pass  iff  err(opt) <= 2 * err(naive32) + floor
 *     floor(O)   = 1e-6 * max(1, max|O_ref|)             f32 output
 *                = 2 ulp of the output dtype at max|O_ref|  bf16 / f16 output
 *     floor(LSE) = 1e-5 * max(1, max|LSE_ref|)
 *   and exactly: LSE_ref = -inf  <=>  LSE_opt = -inf;  fully-masked and padding rows have O == 0;
 *   no NaN/inf in O; elements outside the output views untouched (still the poison).
 *
 * O_ref64 comes from ak_attention_ref() writing AK_F64; it is itself checked against the
 * independent naive_attention64() (tolerance 1e-6 relative to the largest value: only the default
 * scale's precision may legitimately differ between two double references).
 */
#ifndef AK_TEST_HARNESS_H
#define AK_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "attnkit.h"
#include "common.h"
#include "naive32.h"

#define PB_MAXB 64 /* most sequences in a ragged problem */

typedef struct problem_opts {
    tlayout lay_q, lay_k, lay_v, lay_o, lay_lse, lay_alibi, lay_sinks;
    double amp_qk;     /* q and k entries uniform in [-amp_qk, amp_qk] (default 1) */
    double amp_v;      /* v entries uniform in [-amp_v, amp_v] (default 1) */
    double sink_lo, sink_hi; /* sink logits uniform in [lo, hi) (default -2, 2) */
    int alibi_2d;      /* ALiBi slopes as [B][Hq] instead of [Hq] */
} problem_opts;

typedef struct problem {
    ak_attn_desc d; /* metadata pointers point at the copies below */
    int32_t cu_q[PB_MAXB + 1], cu_k[PB_MAXB + 1], used[PB_MAXB];
    int64_t Bt, Lqt, Lkt; /* tensor dims 0 and 2: (B, Lq, Lk) or (1, total_q, total_k) */
    int64_t dv;
    tbuf q, k, v, alibi, sinks; /* inputs; unused rows/keys (padding) stay NaN-poisoned */
    tbuf o, lse;                /* outputs, poisoned; lse only if d.return_lse */
} problem;

void problem_opts_default(problem_opts *po);

/* Allocate and fill a problem. `d` may be ragged (cu_seqlens_q/k, seqused_k are copied). For a
 * dense problem Lqt/Lkt are ignored (seqlen_q/k are used); for a ragged one they are the packed
 * totals (>= cu[B]; rows beyond are padding and stay NaN). Returns 0 on success. */
int problem_create(problem *p, const ak_attn_desc *d, int64_t Lqt, int64_t Lkt,
                   const problem_opts *po, rng *r);
void problem_destroy(problem *p);
/* Refill q/k/v (and slopes/sinks) with new random values, same layout. */
void problem_refill(problem *p, const problem_opts *po, rng *r);
/* The tensors of the problem with the given outputs (lse may be NULL). */
ak_attn_tensors problem_tensors(const problem *p, const tbuf *o, const tbuf *lse);

/* ak_attention_ref() with AK_F64 outputs (always with LSE), into a naive_out (nvis copied from
 * `nvis_from` if given). Returns the status of ak_attention_ref. */
ak_status run_ref64(ak_ctx *ctx, const problem *p, naive_out *ref, const naive_out *nvis_from);

/* Compare the oracle with the independent double reference. Returns 1 if they agree. */
int check_oracle(const naive_out *ref, const naive_out *n64, char *msg, size_t msglen);

/* Apply the accuracy rule to outputs o (dtype_o) and lse (NULL = not requested).
 * Returns 1 on pass; writes a one-line reason (failure) or the measured errors (pass) into msg. */
int check_rule(const problem *p, const tbuf *o, const tbuf *lse, const naive_out *ref,
               const naive_out *naive, char *msg, size_t msglen);

/* Repro string in the CLI's format, e.g. "b2_h32_hkv8_q17_k113_d59_causal_bf16". */
void problem_repro(const problem *p, char *buf, size_t n);

#endif /* AK_TEST_HARNESS_H */
