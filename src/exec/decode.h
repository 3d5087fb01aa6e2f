/* Decode attention: the validated problem, the Lean (stream-K) plan and its executor. */
#ifndef AK_EXEC_DECODE_H
#define AK_EXEC_DECODE_H

#include "core/internal.h"

/* A validated decode problem. */
typedef struct ak_dproblem {
    ak_decode_desc desc;        /* copy; metadata pointers cleared (use the arrays below) */
    ak_kvmeta kv;               /* the sequences' caches */
    ak_kvmeta pre;              /* the shared prefix (valid iff has_prefix) */
    int has_prefix;
    int32_t B, Hq, Hkv, g, d, dv, nq_max;
    int64_t P;                  /* prefix length (0 without one) */
    float scale;
    int64_t win_left, win_right;  /* resolved: unbounded = 2^40; causal forces right = 0 */
    int32_t *qo;                /* [B+1] owned copy of qo_indptr, or NULL */
    int64_t total_q;            /* qo[B], or q_len */
} ak_dproblem;

/* Query rows of sequence b: count, first packed row, batch index in Q/O/LSE. */
static inline int64_t ak__dnq(const ak_dproblem *p, int64_t b) { return p->qo ? p->qo[b + 1] - p->qo[b] : p->desc.q_len; }
static inline int64_t ak__dqoff(const ak_dproblem *p, int64_t b) { return p->qo ? p->qo[b] : 0; }
static inline int64_t ak__dbidx(const ak_dproblem *p, int64_t b) { return p->qo ? 0 : b; }

/* Visible absolute key positions [lo, hi] (empty if lo > hi) of query row i of sequence b; keys are
 * the prefix [0, P) followed by the sequence's own [P, P + n_b). */
static inline void ak__drow_range(const ak_dproblem *p, int64_t b, int64_t i, int64_t *pos, int64_t *lo, int64_t *hi) {
    int64_t lk = p->P + p->kv.len[b];
    int64_t c = lk - ak__dnq(p, b) + i;
    int64_t l = c - p->win_left, h = c + p->win_right;
    if (l < 0) l = 0;
    if (h > lk - 1) h = lk - 1;
    *pos = c;
    *lo = l;
    *hi = h;
}

ak_status ak__dproblem_init(const ak_ctx *ctx, const ak_decode_desc *desc, int allow_f64_out, ak_dproblem *p);
void ak__dproblem_free(const ak_ctx *ctx, ak_dproblem *p);
ak_status ak__dcheck_tensors(const ak_ctx *ctx, const ak_dproblem *p, const ak_decode_tensors *t, int allow_f64,
                             ak_kvview *kv, ak_kvview *pre);
ak_status ak__ref_decode(const ak_ctx *ctx, const ak_dproblem *p, const ak_decode_tensors *t, const ak_kvview *kv,
                         const ak_kvview *pre);

/* One row tile against one key source: for sequences [b0, b1) (own cache: b1 = b0 + 1; prefix:
 * several sequences share the tile) and KV heads [hkv, hkv + nkv) (nkv > 1 only for token-major
 * paged caches, where the heads of a token are adjacent in memory), the rows of query heads
 * h0 + k*g + [0, nh) of KV head hkv + k, against keys [klo, khi) of the source, in tiles of tile_n
 * keys. Rows are ordered b, then KV head, then query head, then i; each KV head's rows form one
 * block of M / nkv rows. The segment covers output groups g0 + k * gstep, k < ng. */
typedef struct ak_dseg {
    int32_t src;                /* 0 = the sequence's own cache, 1 = the shared prefix */
    int32_t b0, b1, hkv, nkv, h0, nh;
    int32_t M;                  /* rows */
    int32_t n_tiles;
    int64_t klo, khi;
    int32_t first_piece, n_pieces;
    int32_t g0, ng, gstep;      /* output groups covered */
    int32_t direct;             /* 1: a single piece that writes the output itself */
} ak_dseg;

/* A contiguous run of one segment's tiles done by one worker. */
typedef struct ak_dpiece {
    int32_t seg, t0, t1, idx;   /* idx = position among the segment's pieces (merge order) */
    int64_t slot;               /* float offset of its partial (rows x (dv + 1)) in the partial area, or -1 */
} ak_dpiece;

/* An output unit: the rows of query heads [h0, h0+nh) of sequence b. */
typedef struct ak_dgroup {
    int32_t b, hkv, h0, nh;
    int32_t seg_own, seg_pre;   /* segment indices or -1 */
    int32_t own_row0, pre_row0; /* first row of this group inside seg_own / seg_pre */
    int32_t n_parts;            /* pieces contributing (own + prefix) */
} ak_dgroup;

typedef struct ak_dplan {
    ak_dproblem p;
    int tile_n, workers, qk_keys_below;   /* key-lanes QK when a segment has fewer rows than this */
    int heads_per_seg;          /* KV heads per own segment (> 1: token-major pages, direct products) */
    ak_dseg *segs;
    int32_t n_segs;
    ak_dpiece *pieces;
    int32_t n_pieces;
    int32_t *worker_first;      /* [workers+1] piece ranges per worker */
    ak_dgroup *groups;
    int32_t n_groups, heads_per_group;
    int64_t part_floats;        /* size of the partial area */
    int mmax;                   /* widest segment (rows) */
    size_t ws_per_thread;
} ak_dplan;

size_t ak__dec_thread_ws(const ak_dplan *dp);
void ak__dplan_free(const ak_ctx *ctx, ak_dplan *dp);
size_t ak__dplan_workspace(const struct ak_plan *pl);
ak_status ak__dec_execute(const ak_dplan *dp, const ak_fwd_kernels *kern, int n_threads, const ak_decode_tensors *t,
                          const ak_kvview *kv, const ak_kvview *pre, void *ws);

#endif
