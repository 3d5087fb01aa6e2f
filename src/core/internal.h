/* Internal declarations shared by core, ref, exec and the kernels. Not installed. */
#ifndef AK_INTERNAL_H
#define AK_INTERNAL_H

#include "attnkit.h"
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define AK_CACHELINE 64

/* ---- context ---- */
struct ak_ctx {
    int n_threads;
    ak_isa isa;            /* detected, capped */
    int deterministic;
    int force_ref;
    int verbose;
    ak_allocator alloc;
    char last_error[512];
};

/* Record a failure on ctx (may be NULL) and return the status. printf-style message. */
ak_status ak__fail(const ak_ctx *ctx, ak_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void ak__clear_error(const ak_ctx *ctx);
void *ak__alloc(const ak_ctx *ctx, size_t size);
void ak__free(const ak_ctx *ctx, void *p);

/* ---- element access ---- */
/* f32 -> bf16, round to nearest even, NaN stays a quiet NaN (ak_f32_to_bf16 is this). */
static inline uint16_t ak__f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float ak__load(const void *base, ak_dtype t, int64_t off) {
    switch (t) {
    case AK_F32: return ((const float *)base)[off];
    case AK_BF16: return ak_bf16_to_f32(((const uint16_t *)base)[off]);
    case AK_F16: return ak_f16_to_f32(((const uint16_t *)base)[off]);
    case AK_F64: return (float)((const double *)base)[off];
    case AK_I8: return (float)((const int8_t *)base)[off];
    }
    return 0.0f;
}
static inline double ak__load_f64(const void *base, ak_dtype t, int64_t off) {
    if (t == AK_F64) return ((const double *)base)[off];
    return (double)ak__load(base, t, off);
}
static inline void ak__store(void *base, ak_dtype t, int64_t off, double x) {
    switch (t) {
    case AK_F32: ((float *)base)[off] = (float)x; break;
    case AK_BF16: ((uint16_t *)base)[off] = ak_f32_to_bf16((float)x); break;
    case AK_F16: ((uint16_t *)base)[off] = ak_f32_to_f16((float)x); break;
    case AK_F64: ((double *)base)[off] = x; break;
    case AK_I8: ((int8_t *)base)[off] = (int8_t)(x > 127.0 ? 127 : x < -127.0 ? -127 : (int)lrint(x)); break;
    }
}

/* ---- a validated, resolved problem ---- */
typedef struct ak_problem {
    ak_attn_desc desc;       /* copy; metadata pointers point into the arrays below */
    int32_t B, Hq, Hkv, g, d, dv;
    float scale;
    int64_t win_left, win_right;  /* resolved: unbounded = INT64_MAX/4; causal forces right = 0 */
    int ragged;
    int32_t *cu_q, *cu_k, *used_k;  /* owned copies (ragged / seqused_k), else NULL */
    int64_t total_q, total_k;       /* ragged: cu_q[B], cu_k[B]; else Lq, Lk */
} ak_problem;

/* Per-sequence geometry. */
typedef struct ak_seq {
    int64_t bidx;    /* index into the tensors' batch dimension (0 when ragged) */
    int64_t q_off;   /* first packed row of this sequence in the L dimension */
    int64_t k_off;
    int64_t Lq, Lk;  /* Lk = keys used (seqused_k applied) */
} ak_seq;

static inline ak_seq ak__seq(const ak_problem *p, int64_t b) {
    ak_seq s;
    if (p->ragged) {
        s.bidx = 0;
        s.q_off = p->cu_q[b];
        s.k_off = p->cu_k[b];
        s.Lq = p->cu_q[b + 1] - p->cu_q[b];
        s.Lk = p->cu_k[b + 1] - p->cu_k[b];
    } else {
        s.bidx = b;
        s.q_off = 0;
        s.k_off = 0;
        s.Lq = p->desc.seqlen_q;
        s.Lk = p->desc.seqlen_k;
    }
    if (p->used_k) s.Lk = p->used_k[b];
    return s;
}

/* Visible key range [lo, hi] (inclusive, may be empty: lo > hi) of row i in a sequence. */
static inline void ak__row_range(const ak_problem *p, const ak_seq *s, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t c = i + s->Lk - s->Lq;   /* bottom-right aligned absolute position */
    int64_t l = c - p->win_left, h = c + p->win_right;
    if (l < 0) l = 0;
    if (h > s->Lk - 1) h = s->Lk - 1;
    *lo = l;
    *hi = h;
}

ak_status ak__problem_init(const ak_ctx *ctx, const ak_attn_desc *desc, int allow_f64_out, ak_problem *p);
void ak__problem_free(const ak_ctx *ctx, ak_problem *p);
ak_status ak__check_tensors(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t, int allow_f64_out);
ak_status ak__check_out_tensor(const ak_ctx *ctx, const char *name, const ak_tensor *t);
/* ndim, non-negative shapes and strides, data non-NULL when non-empty, element alignment */
ak_status ak__check_view(const ak_ctx *ctx, const char *name, const ak_tensor *t, int ndim);
/* alibi_slopes ([Hq] or [B][Hq]) and sinks ([Hq]), f32, each checked only when in use */
ak_status ak__check_head_inputs(const ak_ctx *ctx, int has_alibi, const ak_tensor *a, int has_sinks,
                                const ak_tensor *s, int32_t B, int32_t Hq);
int ak__ranges_overlap(const ak_tensor *a, const ak_tensor *b);

/* Write O = 0, LSE = -inf for the padding rows of a ragged problem. */
void ak__zero_padding_rows(const ak_problem *p, const ak_attn_tensors *t);

/* ---- ISA ---- */
ak_isa ak__isa_from_env(ak_isa detected);

/* ---- micro-kernels (one table per ISA) ----
 * Layouts (all f32, leading dimensions in elements):
 *   qt  [d][mpad]     the query tile, transposed (unscaled); mpad % 16 == 0
 *   st  [nk][mpad]    scores S^T of the key tile (key-major), then P^T in place
 *   ot  [dv][mpad]    the output accumulator O^T
 *   k   [nk][d]       key rows (row stride ldk, unit column stride); v [nk][dv] likewise
 */
typedef struct ak_fwd_kernels {
    const char *name;    /* e.g. "ak_k_fwd_f32_6x64__avx512" */
    ak_isa isa;
    /* st[j][q] = scale * sum_c k[j][c] * qt[c][q]  (the scale multiplies the fp32 dot product, as
     * the naive computation does: folding it into Q loses accuracy for large scales) */
    void (*qk)(int nk, int d, int mpad, const float *k, int64_t ldk, const float *qt, int64_t ldqt, float scale,
               float *st, int64_t ldst);
    /* ot[c][q] += sum_j v[j][c] * pt[j][q] */
    void (*pv)(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt,
               float *ot, int64_t ldot);
    /* Online softmax over a key tile: m_new = max(m, max_j st[j][.]); alpha = e^(m - m_new);
     * st <- e^(st - m_new) (0 where st or m_new is -inf); l = l*alpha + sum_j st; m = m_new.
     * alpha = 1 where m_new is -inf. */
    void (*softmax)(int nk, int mpad, float *st, int64_t ldst, float *m, float *l, float *alpha);
    /* ot[c][q] *= alpha[q] */
    void (*rescale)(int dv, int mpad, float *ot, int64_t ldot, const float *alpha);
    /* st[j][q] = -inf where j < lo[q] or j > hi[q] (key offsets within the tile) */
    void (*mask)(int nk, int mpad, float *st, int64_t ldst, const int32_t *lo, const int32_t *hi);
    /* st[j][q] = cap * tanh(st[j][q] / cap) for j < nk, q < mpad (Cephes-accurate tanh) */
    void (*softcap)(int nk, int mpad, float *st, int64_t ldst, float cap);
    /* dst[i] = (float)src[i], src contiguous of dtype t */
    void (*to_f32)(ak_dtype t, const void *src, float *dst, int64_t n);
    /* Decode tile loads from a KV cache (rows[j]: n row pointers of dtype t, unit stride; scales[j]
     * the per-row scale when t is AK_I8, else unused):
     * rows_f32: dst[j][c] = rows[j][c] (* scales[j]) for c < cols; columns [cols, roundup16(cols)) = 0 */
    void (*rows_f32)(ak_dtype t, int n, int cols, const void *const *rows, const float *scales, float *dst, int64_t ld);
    /* kt_pack: kt[c][j] = rows[j][c] (* scales[j]) for c < d, j < n; lanes [n, roundup16(n)) = 0
     * (used only by tables without dec_qk: the portable version serves) */
    void (*kt_pack)(ak_dtype t, int n, int d, const void *const *rows, const float *scales, float *kt, int64_t ldkt);
    /* Optional (NULL: the framework packs tiles with kt_pack / rows_f32 instead): decode products for
     * a few rows (1 <= M <= AK_DEC_DIRECT_ROWS) that read K and V in the cache dtype, no tile copies.
     * Vectors q and o live in the kernel's own element order ("layout"), see dec_layout.
     *   dec_qk: s[m][j] = scale * kscale_j * sum_c q[m][c] k_j[c]   (kscale_j = 1 unless t is AK_I8)
     *   dec_pv: o[m][.] += sum_j p[m][j] * v_j[.]   (o: M rows, leading dim ldo; for AK_I8 the caller
     *           has folded the per-row value scale into p)
     *   softmax_rows: the online softmax of `softmax` along rows of s[M][n] (keys contiguous)
     *   dec_layout: n elements x (r16(n) + 16 floats) from natural order to the kernel order (dir = 1)
     *   or back (dir = -1), in place */
    void (*dec_qk)(ak_dtype t, int M, int nk, int d, const float *q, int64_t ldq, const void *const *krows,
                   const float *kscale, float scale, float *s, int64_t lds);
    void (*dec_pv)(ak_dtype t, int M, int nk, int dv, const float *p, int64_t ldp, const void *const *vrows, float *o,
                   int64_t ldo);
    void (*dec_layout)(ak_dtype t, int n, float *x, int dir);
    void (*softmax_rows)(int M, int n, float *s, int64_t lds, float *m, float *l, float *alpha);
    /* Linear attention's block transpose: dst[c][i] = src[i][c] for i < n, c < m (src [n][lds], unit column
     * stride); lanes [n, roundup16(n)) of dst are set to 0. */
    void (*tpose)(int n, int m, const float *src, int64_t lds, float *dst, int64_t ldd);
    /* pv with a scaled start: ot[c][q] = beta * ot[c][q] + sum_j v[j][c] * pt[j][q]; beta = 0 does not read
     * ot (overwrite); beta = 1 is pv exactly. Each element: one product for beta, then the FMAs in j order. */
    void (*pvb)(int nk, int dv, int mpad, const float *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
                int64_t ldot, float beta);
} ak_fwd_kernels;

#define AK_DEC_DIRECT_ROWS 7

/* Portable versions of the decode loads (any ISA table may use them). */
void ak__rows_f32_c(ak_dtype t, int n, int cols, const void *const *rows, const float *scales, float *dst, int64_t ld);
void ak__kt_pack_c(ak_dtype t, int n, int d, const void *const *rows, const float *scales, float *kt, int64_t ldkt);
void ak__tpose_c(int n, int m, const float *src, int64_t lds, float *dst, int64_t ldd);

extern const ak_fwd_kernels ak_fwd_kernels_scalar;
#ifdef AK_HAVE_AVX2_KERNELS
extern const ak_fwd_kernels ak_fwd_kernels_avx2;
#endif
#ifdef AK_HAVE_AVX512_KERNELS
extern const ak_fwd_kernels ak_fwd_kernels_avx512;
#endif

/* bf16-pair kernels (vdpbf16ps) for bf16 Q/K/V. Operands:
 *   qt2 [ceil(d/2)][ldq] dwords: (q[2c2][col], q[2c2+1][col]) bf16 bits, unscaled; the odd tail pairs with 0
 *   k, v: bf16 rows with unit column stride (row strides ldk, ldv)
 *   pbuf: >= ceil(nk/2) * (mpad + 16) dwords, vbuf: >= ceil(nk/2) * dv dwords of scratch */
typedef struct ak_fwd_bf16_kernels {
    const char *name;
    void (*qk)(int nk, int d, int mpad, const uint16_t *k, int64_t ldk, const uint32_t *qt2, int64_t ldq, float scale,
               float *st, int64_t ldst);
    void (*pv)(int nk, int dv, int mpad, const uint16_t *v, int64_t ldv, const float *pt, int64_t ldpt, float *ot,
               int64_t ldot, uint32_t *pbuf, uint32_t *vbuf);
} ak_fwd_bf16_kernels;

#ifdef AK_HAVE_AVX512BF16_KERNELS
extern const ak_fwd_bf16_kernels ak_fwd_bf16_kernels_avx512bf16;
#endif
#ifdef AK_HAVE_AVX512_KERNELS
extern const ak_fwd_bf16_kernels ak_fwd_bf16_kernels_emu;
#endif

/* ---- KV caches (src/core/kv.c) ----
 * A validated cache description: per-sequence lengths and the pages actually in use. */
typedef struct ak_kvmeta {
    int32_t B, Hkv, d, dv, ps;     /* ps = page size, 0 = contiguous */
    ak_dtype dtype;
    size_t dtype_size;
    ak_kv_layout layout;
    int32_t capacity, num_pages;
    int32_t *len;                  /* [B] tokens per sequence (owned) */
    int64_t *page_off;             /* [B+1] offsets into pages (paged; owned) */
    int32_t *pages;                /* the ceil(len/ps) page ids of each sequence, concatenated (owned) */
    int64_t max_len;
} ak_kvmeta;

/* Where a cache tensor's row (token, head) lives: off = outer*s_outer + pos*s_pos + h*s_head, with
 * outer = the sequence (contiguous) or the page (paged) and pos = the token or the slot in the page. */
typedef struct ak_kvview {
    const char *k, *v;             /* data */
    const float *ks, *vs;          /* scales (I8) or NULL */
    int64_t k_outer, k_pos, k_head, v_outer, v_pos, v_head;
    int64_t ks_outer, ks_pos, ks_head, vs_outer, vs_pos, vs_head;
    size_t es;                     /* element size of k/v */
} ak_kvview;

ak_status ak__kvmeta_init(const ak_ctx *ctx, const ak_kv_desc *kv, const char *what, ak_kvmeta *m);
void ak__kvmeta_free(const ak_ctx *ctx, ak_kvmeta *m);
/* Validate the tensors of a cache against its description and resolve the view. */
ak_status ak__kv_check_tensors(const ak_ctx *ctx, const ak_kvmeta *m, const ak_kv_tensors *t, const char *what,
                               ak_kvview *view);
/* (outer, pos) of token `tok` of sequence b */
static inline void ak__kv_locate(const ak_kvmeta *m, int32_t b, int64_t tok, int64_t *outer, int64_t *pos) {
    if (m->ps == 0) {
        *outer = b;
        *pos = tok;
    } else {
        *outer = m->pages[m->page_off[b] + tok / m->ps];
        *pos = tok % m->ps;
    }
}

/* The f32 kernel table for an ISA (the best built one at or below it). */
const ak_fwd_kernels *ak__kernel_for(ak_isa isa);

/* The bf16-pair kernel for the problem (bf16 Q, K and V), or NULL. */
const ak_fwd_bf16_kernels *ak__bf16_kernel_for(const ak_ctx *c, const ak_problem *p);

/* ---- reference ---- */
ak_status ak__ref_run(const ak_ctx *ctx, const ak_problem *p, const ak_attn_tensors *t);

#endif
