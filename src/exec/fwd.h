/* The plan of a dense forward attention problem and its executor. */
#ifndef AK_EXEC_FWD_H
#define AK_EXEC_FWD_H

#include "core/internal.h"

/* One work item: the query rows [i0, i0+nq) of query heads [h0, h0+nh) (one KV head's group, or a
 * part of it) of sequence b. Its columns in the tile are col = (h - h0) * nq + (i - i0). */
typedef struct ak_work {
    int32_t b, hkv, h0, nh;
    int64_t i0, nq;
    int64_t cost;
} ak_work;

struct ak_dplan;

struct ak_plan {
    ak_ctx *ctx;
    struct ak_dplan *dec;       /* a decode plan (src/exec/decode.h), or NULL for dense attention */
    ak_problem p;
    const ak_fwd_kernels *kern; /* NULL when the reference runs */
    const ak_fwd_bf16_kernels *kbf16; /* bf16-pair products (bf16 Q/K/V on AVX512_BF16), else NULL */
    int n_threads;
    int bq, bc, nh;             /* query positions per item, keys per tile, heads per item */
    int mpad_max;               /* widest tile: roundup(nh * bq, 16) */
    ak_work *items;
    int64_t n_items;
    size_t ws_per_thread;       /* bytes, multiple of 64 */
    char kernel_name[96];
    char explain[1024];
};

/* Bytes of scratch for one thread. */
size_t ak__fwd_thread_ws(int d, int dv, int mpad, int bc);
/* Run every work item of the plan. */
ak_status ak__fwd_execute(const ak_plan *pl, const ak_attn_tensors *t, void *ws);

#endif
