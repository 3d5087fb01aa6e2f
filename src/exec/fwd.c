/*
 * The executor of dense forward attention (FlashAttention-2 style online softmax), in the transposed
 * formulation that suits CPU SIMD:
 *
 *   for each work item (sequence b, KV head, its group's query heads, a block of query positions):
 *     Qt[d][M]   = Q^T                  the item's M = heads x positions query rows, packed once
 *     for each key tile [j0, j0+nk) that some row of the item can see:
 *       St[nk][M] = scale * K_tile . Qt  micro-kernel qk (keys broadcast, queries along SIMD lanes)
 *       softcap, ALiBi; -inf outside the mask, only on tiles that cross a mask boundary
 *       online softmax down each column  micro-kernel softmax (column max/sum are vertical ops)
 *       Ot[dv][M] = alpha * Ot + V_tile^T . Pt     micro-kernels rescale and pv
 *     O = Ot^T / l,  LSE = m + log(l)    (sinks join l here)
 *
 * Every work item is computed by one thread, start to finish, in a fixed key order, so results do not
 * depend on the thread count or on the schedule. The query heads of a KV group share each K/V tile.
 */
#include "exec/fwd.h"

#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

static int64_t tile_ld(int cols);

/* Scratch of one thread, in this order: qt, ot, st, m, l, alpha, slope (floats), lo, hi, pos (int64),
 * rlo, rhi (int32), kbuf, vbuf, pbuf, colh (int32), coli (int64), jidx (int32). */
size_t ak__fwd_thread_ws(int d, int dv, int mpad, int bc) {
    size_t f = sizeof(float);
    size_t ld = (size_t)mpad + 16; /* padded leading dimension of the 2-d tiles: no 4 KiB set aliasing */
    return align64((size_t)d * ld * f) + align64((size_t)dv * ld * f) + align64((size_t)bc * ld * f) +
           4 * align64((size_t)mpad * f) + 3 * align64((size_t)mpad * sizeof(int64_t)) +
           2 * align64((size_t)mpad * sizeof(int32_t)) +
           align64((size_t)bc * tile_ld(d > dv ? d : dv) * f) + align64((size_t)bc * tile_ld(dv) * f) +
           align64((size_t)(bc + 1) / 2 * ld * f) + align64((size_t)mpad * sizeof(int32_t)) +
           align64((size_t)mpad * sizeof(int64_t)) + align64((size_t)bc * sizeof(int32_t));
}

ak_fwd_scratch ak__fwd_carve(void *base, int d, int dv, int mpad, int bc) {
    ak_fwd_scratch s;
    char *p = (char *)base;
    size_t f = sizeof(float);
    size_t ld = (size_t)mpad + 16;
    s.qt = (float *)p;    p += align64((size_t)d * ld * f);
    s.ot = (float *)p;    p += align64((size_t)dv * ld * f);
    s.st = (float *)p;    p += align64((size_t)bc * ld * f);
    s.m = (float *)p;     p += align64((size_t)mpad * f);
    s.l = (float *)p;     p += align64((size_t)mpad * f);
    s.alpha = (float *)p; p += align64((size_t)mpad * f);
    s.slope = (float *)p; p += align64((size_t)mpad * f);
    s.lo = (int64_t *)p;  p += align64((size_t)mpad * sizeof(int64_t));
    s.hi = (int64_t *)p;  p += align64((size_t)mpad * sizeof(int64_t));
    s.pos = (int64_t *)p; p += align64((size_t)mpad * sizeof(int64_t));
    s.rlo = (int32_t *)p; p += align64((size_t)mpad * sizeof(int32_t));
    s.rhi = (int32_t *)p; p += align64((size_t)mpad * sizeof(int32_t));
    s.kbuf = (float *)p;  p += align64((size_t)bc * tile_ld(d > dv ? d : dv) * f);
    s.vbuf = (float *)p;  p += align64((size_t)bc * tile_ld(dv) * f);
    s.pbuf = (uint32_t *)p; p += align64((size_t)(bc + 1) / 2 * ld * f);
    s.colh = (int32_t *)p; p += align64((size_t)mpad * sizeof(int32_t));
    s.coli = (int64_t *)p; p += align64((size_t)mpad * sizeof(int64_t));
    s.jidx = (int32_t *)p;
    return s;
}

/* Leading dimension of a copied K/V tile: a multiple of 16 floats that is not a multiple of 256
 * bytes' power of two, so rows spread over the L1 sets (a 512 B or 4 KiB row stride, as BHSD d=128 or
 * BSHD tensors have, maps every row to the same few sets). */
static int64_t tile_ld(int cols) { return (int64_t)(cols + 15) / 16 * 16 + 16; }

/* Key rows jidx[0..nk) of a K or V head, converted to f32 in buf with a padded leading dimension. The
 * copy costs about 1/(M/16) of the tile's FMAs and keeps the broadcasts of the micro-kernels in L1. */
static const float *kv_tile(const ak_fwd_kernels *kern, const ak_tensor *t, int64_t base, const int32_t *jidx, int nk,
                            int cols, float *buf, int64_t *ld) {
    size_t es = ak_dtype_size(t->dtype);
    int64_t ldb = tile_ld(cols);
    for (int j = 0; j < nk; j++) {
        int64_t row = base + (int64_t)jidx[j] * t->stride[2];
        float *dst = buf + (size_t)j * ldb;
        if (t->stride[3] == 1) {
            kern->to_f32(t->dtype, (const char *)t->data + (size_t)row * es, dst, cols);
        } else {
            for (int c = 0; c < cols; c++) dst[c] = ak__load(t->data, t->dtype, row + c * t->stride[3]);
        }
    }
    *ld = ldb;
    return buf;
}

/* Key rows jidx[0..nk) of a bf16 K or V head with unit column stride: the tensor itself when the rows
 * are contiguous and the row stride is not a multiple of 256 bytes, else copied with a padded leading
 * dimension (see tile_ld). */
static const uint16_t *kv_tile_bf16(const ak_tensor *t, int64_t base, const int32_t *jidx, int nk, int contiguous, int cols,
                                    uint16_t *buf, int64_t *ld) {
    const uint16_t *data = (const uint16_t *)t->data;
    if (contiguous && t->stride[3] == 1 && (t->stride[2] * 2) % 256 != 0) {
        *ld = t->stride[2];
        return data + base + (int64_t)jidx[0] * t->stride[2];
    }
    int64_t ldb = 2 * tile_ld(cols);
    for (int j = 0; j < nk; j++)
        for (int c = 0; c < cols; c++)
            buf[(size_t)j * ldb + c] = data[base + (int64_t)jidx[j] * t->stride[2] + c * t->stride[3]];
    *ld = ldb;
    return buf;
}

void ak__fwd_begin(const ak_plan *pl, const ak_attn_tensors *t, ak_fwd_scratch *s, int64_t b, int M, int extra_causal) {
    const ak_problem *p = &pl->p;
    const ak_fwd_kernels *kern = pl->kern;
    const int d = p->d, dv = p->dv;
    const ak_seq sq = ak__seq(p, b);
    const int mpad = (M + 15) / 16 * 16, ld = mpad + 16;
    const ak_tensor *Q = &t->q;
    const int bf16 = pl->kbf16 != NULL;

    /* Pack Qt[c][col] = q; per-column mask bounds, positions and ALiBi slopes. */
    for (int col = 0; col < mpad; col++) {
        if (col >= M) {
            for (int c = 0; c < d; c++) s->qt[(size_t)c * ld + col] = 0.0f;
            s->lo[col] = 0;
            s->hi[col] = INT64_MAX / 4;
            s->pos[col] = 0;
            s->slope[col] = 0.0f;
            continue;
        }
        int64_t h = s->colh[col], i = s->coli[col];
        int64_t qoff = sq.bidx * Q->stride[0] + h * Q->stride[1] + (sq.q_off + i) * Q->stride[2];
        if (bf16) {
            const uint16_t *qd = (const uint16_t *)Q->data;
            uint32_t *qt2 = (uint32_t *)s->qt;
            for (int c = 0; c < d; c += 2) {
                uint32_t lo = qd[qoff + c * Q->stride[3]];
                uint32_t hi = c + 1 < d ? qd[qoff + (c + 1) * Q->stride[3]] : 0u;
                qt2[(size_t)(c / 2) * ld + col] = lo | hi << 16;
            }
        } else if (Q->stride[3] == 1) {
            float *row = s->kbuf; /* free until the first key tile */
            kern->to_f32(Q->dtype, (const char *)Q->data + (size_t)qoff * ak_dtype_size(Q->dtype), row, d);
            for (int c = 0; c < d; c++) s->qt[(size_t)c * ld + col] = row[c];
        } else {
            for (int c = 0; c < d; c++) s->qt[(size_t)c * ld + col] = ak__load(Q->data, Q->dtype, qoff + c * Q->stride[3]);
        }
        ak__row_range(p, &sq, i, &s->lo[col], &s->hi[col]);
        s->pos[col] = i + sq.Lk - sq.Lq;
        if (extra_causal && s->hi[col] > s->pos[col]) s->hi[col] = s->pos[col];
        s->slope[col] = 0.0f;
        if (p->desc.has_alibi) {
            const ak_tensor *a = &t->alibi_slopes;
            int64_t off = a->ndim == 2 ? b * a->stride[0] + h * a->stride[1] : h * a->stride[0];
            s->slope[col] = ((const float *)a->data)[off];
        }
    }
    for (int col = 0; col < mpad; col++) {
        s->m[col] = -INFINITY;
        s->l[col] = 0.0f;
    }
    memset(s->ot, 0, sizeof(float) * (size_t)dv * ld);
}

void ak__fwd_tile(const ak_plan *pl, const ak_attn_tensors *t, ak_fwd_scratch *s, int64_t b, int M, int nk, int contiguous,
                  int masked, const uint8_t *excl, ak_fwd_emask emask, void *user, int *first) {
    const ak_problem *p = &pl->p;
    const ak_fwd_kernels *kern = pl->kern;
    const ak_fwd_bf16_kernels *kb = pl->kbf16;
    const int d = p->d, dv = p->dv;
    const ak_seq sq = ak__seq(p, b);
    const int mpad = (M + 15) / 16 * 16, ld = mpad + 16;
    const ak_tensor *K = &t->k, *V = &t->v;
    const int64_t hkv = s->colh[0] / p->g;
    int64_t kbase = sq.bidx * K->stride[0] + hkv * K->stride[1] + sq.k_off * K->stride[2];
    int64_t vbase = sq.bidx * V->stride[0] + hkv * V->stride[1] + sq.k_off * V->stride[2];
    const float cap = p->desc.softcap;
    /* Columns [c0, c1) (multiples of 16) that see some key of a masked tile: only they are computed;
     * the others keep their state (the diagonal tiles of causal rows, the edges of bands). */
    int c0 = 0, c1 = mpad;
    if (masked && !ak__fwd_col_range(M, nk, s->rlo, s->rhi, &c0, &c1)) return; /* no column sees a key of this tile */
    const int mw = c1 - c0;
    float *st = s->st + c0, *ot = s->ot + c0, *m = s->m + c0, *l = s->l + c0, *alpha = s->alpha + c0;
    int64_t ldk, ldv;
    if (kb) {
        const uint16_t *kt = kv_tile_bf16(K, kbase, s->jidx, nk, contiguous, d, (uint16_t *)s->kbuf, &ldk);
        kb->qk(nk, d, mw, kt, ldk, (const uint32_t *)s->qt + c0, ld, p->scale, st, ld);
    } else {
        const float *kt = kv_tile(kern, K, kbase, s->jidx, nk, d, s->kbuf, &ldk);
        kern->qk(nk, d, mw, kt, ldk, s->qt + c0, ld, p->scale, st, ld);
    }
    if (cap > 0.0f) kern->softcap(nk, mw, st, ld, cap);
    if (p->desc.has_alibi)
        for (int j = 0; j < nk; j++)
            for (int col = c0; col < M && col < c1; col++) {
                int64_t dist = s->pos[col] - s->jidx[j];
                s->st[(size_t)j * ld + col] -= s->slope[col] * (float)(dist < 0 ? -dist : dist);
            }
    if (masked) kern->mask(nk, mw, st, ld, s->rlo + c0, s->rhi + c0);
    if (excl)
        for (int j = 0; j < nk; j++)
            if (excl[j])
                for (int col = c0; col < c1; col++) s->st[(size_t)j * ld + col] = -INFINITY;
    if (emask) emask(user, s, nk, mpad, ld);
    kern->softmax(nk, mw, st, ld, m, l, alpha);
    if (!*first) kern->rescale(dv, mw, ot, ld, alpha);
    *first = 0;
    if (kb) {
        /* the bf16 copy of V (if its stride needs one) goes to kbuf: vbuf holds the key pairs */
        const uint16_t *vt = kv_tile_bf16(V, vbase, s->jidx, nk, contiguous, dv, (uint16_t *)s->kbuf, &ldv);
        kb->pv(nk, dv, mw, vt, ldv, st, ld, ot, ld, s->pbuf, (uint32_t *)s->vbuf);
    } else {
        const float *vt = kv_tile(kern, V, vbase, s->jidx, nk, dv, s->vbuf, &ldv);
        kern->pv(nk, dv, mw, vt, ldv, st, ld, ot, ld);
    }
}

void ak__fwd_end(const ak_plan *pl, const ak_attn_tensors *t, ak_fwd_scratch *s, int64_t b, int M) {
    const ak_problem *p = &pl->p;
    const int dv = p->dv;
    const ak_seq sq = ak__seq(p, b);
    const int mpad = (M + 15) / 16 * 16, ld = mpad + 16;
    const ak_tensor *O = &t->o;
    /* O = Ot^T / l; LSE = m + log(l), with the sink in the denominator. */
    for (int col = 0; col < M; col++) {
        int64_t h = s->colh[col], i = s->coli[col];
        double m = s->m[col], l = s->l[col], inv = 0.0, lse = -INFINITY;
        if (p->desc.has_sinks) {
            double sink = ((const float *)t->sinks.data)[h * t->sinks.stride[0]];
            if (m == -INFINITY) {
                lse = sink;
            } else {
                double mx = m > sink ? m : sink;
                double den = l * exp(m - mx) + exp(sink - mx);
                lse = mx + log(den);
                inv = exp(m - mx) / den;
            }
        } else if (m != -INFINITY) {
            lse = m + log(l);
            inv = 1.0 / l;
        }
        int64_t ooff = sq.bidx * O->stride[0] + h * O->stride[1] + (sq.q_off + i) * O->stride[2];
        if (O->dtype == AK_F32 && O->stride[3] == 1) {
            float *orow = (float *)O->data + ooff;
            float finv = (float)inv;
            for (int c = 0; c < dv; c++) orow[c] = s->ot[(size_t)c * ld + col] * finv;
        } else {
            for (int c = 0; c < dv; c++)
                ak__store(O->data, O->dtype, ooff + c * O->stride[3], (double)(s->ot[(size_t)c * ld + col] * (float)inv));
        }
        if (p->desc.return_lse) {
            int64_t loff = sq.bidx * t->lse.stride[0] + h * t->lse.stride[1] + (sq.q_off + i) * t->lse.stride[2];
            ((float *)t->lse.data)[loff] = (float)lse;
        }
    }
}

static void run_item(const ak_plan *pl, const ak_attn_tensors *t, const ak_work *w, ak_fwd_scratch *s) {
    const ak_problem *p = &pl->p;
    const int bc = pl->bc;
    const ak_seq sq = ak__seq(p, w->b);
    const int M = (int)(w->nh * w->nq), mpad = (M + 15) / 16 * 16;
    for (int col = 0; col < M; col++) {
        s->colh[col] = (int32_t)(w->h0 + col / w->nq);
        s->coli[col] = w->i0 + col % w->nq;
    }
    ak__fwd_begin(pl, t, s, w->b, M, 0);

    /* Keys some row of the item sees: rows' ranges are monotone in i. */
    int64_t jlo, jhi, lo_last, hi_first;
    ak__row_range(p, &sq, w->i0, &jlo, &hi_first);
    ak__row_range(p, &sq, w->i0 + w->nq - 1, &lo_last, &jhi);
    int first = 1;
    for (int64_t j0 = jlo; j0 <= jhi; j0 += bc) {
        int nk = (int)(jhi + 1 - j0 < bc ? jhi + 1 - j0 : bc);
        for (int j = 0; j < nk; j++) s->jidx[j] = (int32_t)(j0 + j);
        int full = j0 >= lo_last && j0 + nk - 1 <= hi_first;
        if (!full) {
            /* per-column visible range as key offsets within this tile, clamped to [-1, nk] */
            for (int col = 0; col < mpad; col++) {
                int64_t a = s->lo[col] - j0, b = s->hi[col] - j0;
                s->rlo[col] = (int32_t)(a < -1 ? -1 : a > nk ? nk : a);
                s->rhi[col] = (int32_t)(b < -1 ? -1 : b > nk ? nk : b);
            }
        }
        ak__fwd_tile(pl, t, s, w->b, M, nk, 1, !full, NULL, NULL, NULL, &first);
    }
    ak__fwd_end(pl, t, s, w->b, M);
}

ak_status ak__fwd_execute(const ak_plan *pl, const ak_attn_tensors *t, void *ws) {
    char *base = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    int nt = pl->n_threads;
    if ((int64_t)nt > pl->n_items) nt = pl->n_items > 0 ? (int)pl->n_items : 1;
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        ak_fwd_scratch s = ak__fwd_carve(base + (size_t)tid * pl->ws_per_thread, pl->p.d, pl->p.dv, pl->mpad_max, pl->bc);
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t it = 0; it < pl->n_items; it++) run_item(pl, t, &pl->items[it], &s);
    }
    return AK_OK;
}
