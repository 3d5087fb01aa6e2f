/* The plan of a dense forward attention problem and its executor; the tile step shared with the
 * sparse executor (src/exec/sparse.c). */
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
struct ak_splan;

struct ak_plan {
    ak_ctx *ctx;
    struct ak_dplan *dec;       /* a decode plan (src/exec/decode.h), or NULL for dense attention */
    struct ak_splan *sparse;    /* a sparse plan (src/exec/sparse.h), or NULL */
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

/* ---- the pieces of a work item, shared by the dense and the sparse executors ---- */

/* Scratch of one thread (carved from ak__fwd_thread_ws bytes). */
typedef struct ak_fwd_scratch {
    float *qt, *ot, *st, *m, *l, *alpha, *slope, *kbuf, *vbuf;
    uint32_t *pbuf;             /* bf16 path: P in key pairs */
    int64_t *lo, *hi, *pos;     /* per column: visible key range [lo, hi] of desc's masks, position */
    int32_t *rlo, *rhi;         /* per column: visible range as offsets within the current tile */
    int32_t *colh;              /* per column: query head */
    int64_t *coli;              /* per column: query row within the sequence */
    int32_t *jidx;              /* per tile row: the key (within the sequence) */
} ak_fwd_scratch;

ak_fwd_scratch ak__fwd_carve(void *base, int d, int dv, int mpad, int bc);

/* The M columns of an item (colh / coli filled by the caller; M <= mpad): pack Q^T, compute each
 * column's position, visible range (desc's causal/window; with extra_causal also j <= pos) and ALiBi
 * slope, and reset the online-softmax state. */
void ak__fwd_begin(const ak_plan *pl, const ak_attn_tensors *t, ak_fwd_scratch *s, int64_t b, int M, int extra_causal);

/* One key tile of nk <= bc keys: key r of the tile is s->jidx[r] (contiguous = jidx[r] = jidx[0] + r).
 * masked: s->rlo / s->rhi hold each column's visible tile rows; excl (may be NULL): tile rows to drop
 * for every column (excl[r] != 0); emask (may be NULL): called to mask single elements after that.
 * *first = 1 before the item's first tile. */
typedef void (*ak_fwd_emask)(void *user, const ak_fwd_scratch *s, int nk, int mpad, int64_t ld);
void ak__fwd_tile(const ak_plan *pl, const ak_attn_tensors *t, ak_fwd_scratch *s, int64_t b, int M, int nk, int contiguous,
                  int masked, const uint8_t *excl, ak_fwd_emask emask, void *user, int *first);

/* The columns [*c0, *c1) (multiples of 16) of a masked tile of nk keys that see some key of it, given
 * each column's visible tile rows [rlo, rhi]; 0 when no column sees one (the tile is skipped). */
static inline int ak__fwd_col_range(int M, int nk, const int32_t *rlo, const int32_t *rhi, int *c0, int *c1) {
    int lo = -1, hi = -1;
    for (int col = 0; col < M; col++)
        if (rlo[col] <= rhi[col] && rhi[col] >= 0 && rlo[col] < nk) {
            if (lo < 0) lo = col;
            hi = col;
        }
    if (lo < 0) return 0;
    *c0 = lo / 16 * 16;
    *c1 = (hi + 16) / 16 * 16;
    return 1;
}

/* O = Ot^T / l and LSE for the M columns. */
void ak__fwd_end(const ak_plan *pl, const ak_attn_tensors *t, ak_fwd_scratch *s, int64_t b, int M);

#endif
