/*
 * The executor of decode attention (LeanAttention / stream-K over KV caches).
 *
 * The plan cut every (sequence or shared prefix) x (KV head, group of query heads) into a segment:
 * a tile of M rows (query heads x query rows, several sequences for the prefix) against the keys
 * [klo, khi) of one source, in tiles of tile_n keys; the list of all tiles was split into equal
 * contiguous runs, one per worker, cut into pieces at segment boundaries. A piece runs the online
 * softmax over its tiles:
 *
 *   Q.K  M <  qk_keys_below: Kt[d][n] = the key tile transposed (converted from the cache dtype),
 *                            S[M][n] = Q . Kt   (keys along the SIMD lanes; no padding of M),
 *                            St[n][M] = S^T
 *        M >= qk_keys_below: St[n][M] = K . Qt  (queries along the lanes, as the dense kernel)
 *   softcap, ALiBi, mask (boundary tiles), column online softmax on St (P^T in place)
 *   O[M][dv] = alpha * O + P . V   (micro-kernel pv with the roles swapped: value columns on the lanes)
 *
 * A segment done by one piece writes its rows' output; otherwise each piece writes a normalised
 * partial (O / l, m + log l) to its slot and counts itself done for every output group it covers;
 * the piece that completes a group merges that group's partials in a fixed order (LSE merge) and
 * writes it. No thread ever waits for another; the result depends on the plan only.
 */
#include "exec/decode.h"

#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }
static int64_t r16(int64_t x) { return (x + 15) / 16 * 16; }

typedef struct dscratch {
    float *qt, *qr, *st, *s, *kb, *vb, *o, *m, *l, *alpha, *slope;
    int64_t *lo, *hi, *pos;
    int32_t *rlo, *rhi, *rb, *rh, *ri;
    const void **rows;
    float *rscale;
} dscratch;

/* Leading dimensions: ld of Qt/St (mpad + 16), ldq of Q rows, ldk of a key tile (K rows or Kt),
 * ldv of V tiles and O rows. The +16 keeps 2-d tiles off the 4 KiB set-aliasing strides. */
typedef struct dims {
    int64_t mpad, ld, ldq, ldkr, ldkt, ldv;
} dims;

static dims dims_of(const ak_dplan *dp) {
    dims x;
    x.mpad = r16(dp->mmax);
    x.ld = x.mpad + 16;
    x.ldq = r16(dp->p.d) + 16;
    x.ldkr = r16(dp->p.d) + 16;
    x.ldkt = r16(dp->tile_n) + 16;
    x.ldv = r16(dp->p.dv) + 16;
    return x;
}

/* Next 64-byte-aligned block of `bytes` from the running offset (pointers only when base is set). */
static void *carve_one(char *base, size_t *off, size_t bytes) {
    void *r = base ? base + *off : NULL;
    *off += align64(bytes);
    return r;
}

/* Lays out one thread's scratch from base (or only measures it when base is NULL). */
static size_t carve(const ak_dplan *dp, char *base, dscratch *s) {
    dims x = dims_of(dp);
    const int64_t n = dp->tile_n, d = dp->p.d, M = dp->mmax, mp = x.mpad;
    size_t f = sizeof(float), i64 = sizeof(int64_t), i32 = sizeof(int32_t), o = 0;
    size_t kb = (size_t)(n * x.ldkr > d * x.ldkt ? n * x.ldkr : d * x.ldkt);
    dscratch t;
    t.qt = (float *)carve_one(base, &o, (size_t)(d * x.ld) * f);
    t.qr = (float *)carve_one(base, &o, (size_t)(M * x.ldq) * f);
    t.st = (float *)carve_one(base, &o, (size_t)(n * x.ld) * f);
    t.s = (float *)carve_one(base, &o, (size_t)(M * x.ldkt) * f);
    t.kb = (float *)carve_one(base, &o, kb * f);
    t.vb = (float *)carve_one(base, &o, (size_t)(n * x.ldv) * f);
    t.o = (float *)carve_one(base, &o, (size_t)(M * x.ldv) * f);
    t.m = (float *)carve_one(base, &o, (size_t)mp * f);
    t.l = (float *)carve_one(base, &o, (size_t)mp * f);
    t.alpha = (float *)carve_one(base, &o, (size_t)mp * f);
    t.slope = (float *)carve_one(base, &o, (size_t)mp * f);
    t.lo = (int64_t *)carve_one(base, &o, (size_t)mp * i64);
    t.hi = (int64_t *)carve_one(base, &o, (size_t)mp * i64);
    t.pos = (int64_t *)carve_one(base, &o, (size_t)mp * i64);
    t.rlo = (int32_t *)carve_one(base, &o, (size_t)mp * i32);
    t.rhi = (int32_t *)carve_one(base, &o, (size_t)mp * i32);
    t.rb = (int32_t *)carve_one(base, &o, (size_t)mp * i32);
    t.rh = (int32_t *)carve_one(base, &o, (size_t)mp * i32);
    t.ri = (int32_t *)carve_one(base, &o, (size_t)mp * i32);
    t.rows = (const void **)carve_one(base, &o, (size_t)(2 * n) * sizeof(void *));
    t.rscale = (float *)carve_one(base, &o, (size_t)(2 * n) * f);
    if (s) *s = t;
    return o;
}

size_t ak__dec_thread_ws(const ak_dplan *dp) { return carve(dp, NULL, NULL); }

/* Row pointers (and I8 scales) of tokens [j0, j0+nk) of KV head hk of sequence b in a cache. */
static void gather_rows(const ak_kvmeta *m, const ak_kvview *w, int is_v, int32_t b, int32_t hk, int64_t j0, int nk,
                        const void **rows, float *sc) {
    const char *base = is_v ? w->v : w->k;
    int64_t so = is_v ? w->v_outer : w->k_outer, sp = is_v ? w->v_pos : w->k_pos, sh = is_v ? w->v_head : w->k_head;
    const float *sbase = is_v ? w->vs : w->ks;
    int64_t sso = is_v ? w->vs_outer : w->ks_outer, ssp = is_v ? w->vs_pos : w->ks_pos, ssh = is_v ? w->vs_head : w->ks_head;
    if (m->ps == 0) {
        for (int j = 0; j < nk; j++) {
            rows[j] = base + (size_t)(b * so + (j0 + j) * sp + hk * sh) * w->es;
            if (sbase) sc[j] = sbase[b * sso + (j0 + j) * ssp + hk * ssh];
        }
        return;
    }
    int64_t pi = m->page_off[b] + j0 / m->ps, slot = j0 % m->ps;
    for (int j = 0; j < nk; j++) {
        int64_t page = m->pages[pi];
        rows[j] = base + (size_t)(page * so + slot * sp + hk * sh) * w->es;
        if (sbase) sc[j] = sbase[page * sso + slot * ssp + hk * ssh];
        if (++slot == m->ps) {
            slot = 0;
            pi++;
        }
    }
}

/* Output row: O = o (normalised, f32, no sink) re-weighted for the sink; LSE includes the sink. */
static void write_row(const ak_dproblem *p, const ak_decode_tensors *t, int32_t b, int32_t h, int32_t i,
                      const float *o, double lse) {
    double w = 1.0;
    if (p->desc.has_sinks) {
        double sink = ((const float *)t->sinks.data)[h * t->sinks.stride[0]];
        if (lse == -INFINITY) {
            lse = sink;
            w = 0.0;
        } else {
            double mx = lse > sink ? lse : sink;
            double tot = mx + log(exp(lse - mx) + exp(sink - mx));
            w = exp(lse - tot);
            lse = tot;
        }
    } else if (lse == -INFINITY) {
        w = 0.0;
    }
    const ak_tensor *O = &t->o;
    int64_t bi = ak__dbidx(p, b), row = ak__dqoff(p, b) + i;
    int64_t off = bi * O->stride[0] + (int64_t)h * O->stride[1] + row * O->stride[2];
    if (O->dtype == AK_F32 && O->stride[3] == 1) {
        float *dst = (float *)O->data + off;
        float fw = (float)w;
        for (int c = 0; c < p->dv; c++) dst[c] = o ? o[c] * fw : 0.0f;
    } else {
        for (int c = 0; c < p->dv; c++) ak__store(O->data, O->dtype, off + c * O->stride[3], o ? (double)(o[c] * (float)w) : 0.0);
    }
    if (p->desc.return_lse)
        ((float *)t->lse.data)[bi * t->lse.stride[0] + (int64_t)h * t->lse.stride[1] + row * t->lse.stride[2]] = (float)lse;
}

/* Merge every partial of output group gi and write it. The LSE merge of ak_attn_merge, applied
 * n-way in one pass: lse = mx + log sum_i e^(lse_i - mx), O = sum_i e^(lse_i - lse) O_i, accumulated
 * in double so that the error does not grow with the number of pieces; the order is fixed (the
 * group's own pieces, then the prefix's), so the result depends on the plan only. Partial slots hold
 * O[M][dv] then lse[M]; the result overwrites the first partial's row. */
static void merge_group(const ak_dplan *dp, const ak_decode_tensors *t, int32_t gi, float *part) {
    const ak_dproblem *p = &dp->p;
    const ak_dgroup *g = &dp->groups[gi];
    const int dv = p->dv;
    const int32_t nq = (int32_t)ak__dnq(p, g->b), rows = g->nh * nq;
    const int32_t segs[2] = {g->seg_own, g->seg_pre};
    double acc[AK_MAX_HEAD_DIM];
    for (int32_t r = 0; r < rows; r++) {
        double mx = -INFINITY;
        float *first = NULL;
        for (int pass = 0; pass < 2; pass++) { /* pass 0: the max; pass 1: the weighted sum */
            double wsum = 0.0;
            if (pass == 1) {
                if (mx == -INFINITY) break;
                for (int c = 0; c < dv; c++) acc[c] = 0.0;
            }
            for (int k = 0; k < 2; k++) {
                if (segs[k] < 0) continue;
                const ak_dseg *sg = &dp->segs[segs[k]];
                const int32_t row = (k == 0 ? g->own_row0 : g->pre_row0) + r;
                for (int32_t pi = 0; pi < sg->n_pieces; pi++) {
                    float *slot = part + dp->pieces[sg->first_piece + pi].slot;
                    float *o = slot + (size_t)row * dv;
                    double lse = slot[(size_t)sg->M * dv + row];
                    if (!first) first = o;
                    if (pass == 0) {
                        if (lse > mx) mx = lse;
                    } else if (lse != -INFINITY) {
                        double w = exp(lse - mx);
                        wsum += w;
                        for (int c = 0; c < dv; c++) acc[c] += w * o[c];
                    }
                }
            }
            if (pass == 1) {
                for (int c = 0; c < dv; c++) first[c] = (float)(acc[c] / wsum);
                mx += log(wsum);
            }
        }
        write_row(p, t, g->b, g->h0 + r / nq, r % nq, mx == -INFINITY ? NULL : first, mx);
    }
}

static void run_piece(const ak_dplan *dp, const ak_fwd_kernels *kern, const ak_decode_tensors *t, const ak_kvview *kvw,
                      const ak_kvview *prew, const ak_dpiece *pc, dscratch *s, float *part, int *count) {
    const ak_dproblem *p = &dp->p;
    const ak_dseg *sg = &dp->segs[pc->seg];
    const dims x = dims_of(dp);
    const int d = p->d, dv = p->dv, M = sg->M, mpad = (int)r16(M), dvpad = (int)r16(dv);
    const int64_t ld = x.ld;
    const int keys_mode = M / sg->nkv < dp->qk_keys_below; /* rows per KV head decide */
    /* direct: the ISA has decode products that read the cache itself (no tile copies) */
    const int direct = keys_mode && kern->dec_qk != NULL;
    /* rows per block of the direct products: the fewest blocks of at most AK_DEC_DIRECT_ROWS, balanced */
    const int mh = M / sg->nkv, nblk = (mh + AK_DEC_DIRECT_ROWS - 1) / AK_DEC_DIRECT_ROWS;
    const int rb = (mh + nblk - 1) / nblk; /* per KV head */
    const ak_kvmeta *meta = sg->src ? &p->pre : &p->kv;
    const ak_kvview *w = sg->src ? prew : kvw;
    const int64_t off = sg->src ? 0 : p->P, nsrc = sg->src ? p->P : 0;
    const ak_tensor *Q = &t->q;

    /* rows: sequences b0..b1-1, then heads, then query rows */
    int r = 0;
    for (int32_t b = sg->b0; b < sg->b1; b++)
        for (int32_t kk = 0; kk < sg->nkv; kk++)
            for (int32_t hh = 0; hh < sg->nh; hh++)
                for (int32_t i = 0; i < (int32_t)ak__dnq(p, b); i++) {
                    s->rb[r] = b;
                    s->rh[r] = sg->h0 + kk * p->g + hh;
                    s->ri[r] = i;
                    r++;
                }
    int64_t lo_max = INT64_MIN, hi_min = INT64_MAX;
    for (int col = 0; col < mpad; col++) {
        if (col >= M) {
            if (!keys_mode)
                for (int c = 0; c < d; c++) s->qt[(size_t)c * ld + col] = 0.0f;
            s->lo[col] = 0;
            s->hi[col] = INT64_MAX / 4;
            s->pos[col] = 0;
            s->slope[col] = 0.0f;
            continue;
        }
        int32_t b = s->rb[col], h = s->rh[col], i = s->ri[col];
        int64_t qoff = ak__dbidx(p, b) * Q->stride[0] + (int64_t)h * Q->stride[1] + (ak__dqoff(p, b) + i) * Q->stride[2];
        float *qrow = s->qr + (size_t)col * x.ldq;
        if (Q->stride[3] == 1) kern->to_f32(Q->dtype, (const char *)Q->data + (size_t)qoff * ak_dtype_size(Q->dtype), qrow, d);
        else
            for (int c = 0; c < d; c++) qrow[c] = ak__load(Q->data, Q->dtype, qoff + c * Q->stride[3]);
        if (!keys_mode)
            for (int c = 0; c < d; c++) s->qt[(size_t)c * ld + col] = qrow[c];
        if (direct) {
            for (int64_t c = d; c < x.ldq; c++) qrow[c] = 0.0f;
            kern->dec_layout(meta->dtype, d, qrow, 1);
        }
        int64_t pos, lo, hi;
        ak__drow_range(p, b, i, &pos, &lo, &hi);
        lo -= off;
        hi -= off;
        if (sg->src && hi > nsrc - 1) hi = nsrc - 1;
        if (lo > hi) {
            lo = 1;
            hi = 0;
        }
        s->lo[col] = lo;
        s->hi[col] = hi;
        s->pos[col] = pos - off;
        if (lo > lo_max) lo_max = lo;
        if (hi < hi_min) hi_min = hi;
        s->slope[col] = 0.0f;
        if (p->desc.has_alibi) {
            const ak_tensor *a = &t->alibi_slopes;
            s->slope[col] = ((const float *)a->data)[a->ndim == 2 ? b * a->stride[0] + h * a->stride[1] : h * a->stride[0]];
        }
    }
    for (int col = 0; col < mpad; col++) {
        s->m[col] = -INFINITY;
        s->l[col] = 0.0f;
    }
    memset(s->o, 0, sizeof(float) * (size_t)M * x.ldv);

    const int32_t bsrc = sg->src ? 0 : sg->b0;
    const float cap = p->desc.softcap;
    const int tn = dp->tile_n;
    const int ocols = direct ? (dv + 31) / 32 * 32 : dvpad; /* columns of O the products write */
    /* row pointers (and int8 scales) of the current tile, for one KV head at a time */
    const void **kr = s->rows, **vr = s->rows + tn;
    float *ks = s->rscale, *vs = s->rscale + tn;
    const int mb = M / sg->nkv; /* rows per KV head */
    for (int32_t tix = pc->t0; tix < pc->t1; tix++) {
        int64_t j0 = sg->klo + (int64_t)tix * tn;
        int nk = (int)(sg->khi - j0 < tn ? sg->khi - j0 : tn);
        if (!direct) { /* one KV head */
            gather_rows(meta, w, 0, bsrc, sg->hkv, j0, nk, kr, ks);
            gather_rows(meta, w, 1, bsrc, sg->hkv, j0, nk, vr, vs);
        }
        const int full = j0 >= lo_max && j0 + nk - 1 <= hi_min; /* every row sees the whole tile */
        if (direct) {
            /* S[M][nk], keys contiguous; the softmax runs along rows (no padding of M to the lanes) */
            const int64_t lds = x.ldkt;
            for (int kk = 0; kk < sg->nkv; kk++) { /* the KV heads of the segment, each with its mb rows */
                gather_rows(meta, w, 0, bsrc, sg->hkv + kk, j0, nk, kr, ks);
                for (int m0 = kk * mb; m0 < (kk + 1) * mb; m0 += rb) /* blocks of rows; the tile stays in L1/L2 */
                    kern->dec_qk(meta->dtype, (kk + 1) * mb - m0 < rb ? (kk + 1) * mb - m0 : rb, nk, d,
                                 s->qr + (size_t)m0 * x.ldq, x.ldq, kr, ks, p->scale, s->s + (size_t)m0 * lds, lds);
            }
            if (cap > 0.0f) kern->softcap(M, (int)r16(nk), s->s, lds, cap);
            for (int col = 0; col < M; col++) {
                float *row = s->s + (size_t)col * lds;
                if (p->desc.has_alibi)
                    for (int j = 0; j < nk; j++) {
                        int64_t dist = s->pos[col] - (j0 + j);
                        row[j] -= s->slope[col] * (float)(dist < 0 ? -dist : dist);
                    }
                if (!full) {
                    int64_t a = s->lo[col] - j0, b = s->hi[col] - j0;
                    for (int64_t j = 0; j < nk && j < a; j++) row[j] = -INFINITY;
                    for (int64_t j = b + 1 > 0 ? b + 1 : 0; j < nk; j++) row[j] = -INFINITY;
                }
            }
            kern->softmax_rows(M, nk, s->s, lds, s->m, s->l, s->alpha);
        } else {
            if (keys_mode) {
                int npad = (int)r16(nk);
                kern->kt_pack(meta->dtype, nk, d, kr, ks, s->kb, x.ldkt);
                kern->qk(M, d, npad, s->qr, x.ldq, s->kb, x.ldkt, p->scale, s->s, x.ldkt);
                for (int j = 0; j < nk; j++) {
                    float *dst = s->st + (size_t)j * ld;
                    for (int col = 0; col < M; col++) dst[col] = s->s[(size_t)col * x.ldkt + j];
                    for (int col = M; col < mpad; col++) dst[col] = 0.0f;
                }
            } else {
                kern->rows_f32(meta->dtype, nk, d, kr, ks, s->kb, x.ldkr);
                kern->qk(nk, d, mpad, s->kb, x.ldkr, s->qt, ld, p->scale, s->st, ld);
            }
            if (cap > 0.0f) kern->softcap(nk, mpad, s->st, ld, cap);
            if (p->desc.has_alibi)
                for (int j = 0; j < nk; j++)
                    for (int col = 0; col < M; col++) {
                        int64_t dist = s->pos[col] - (j0 + j);
                        s->st[(size_t)j * ld + col] -= s->slope[col] * (float)(dist < 0 ? -dist : dist);
                    }
            if (!full) {
                for (int col = 0; col < mpad; col++) {
                    int64_t a = s->lo[col] - j0, b = s->hi[col] - j0;
                    s->rlo[col] = (int32_t)(a < -1 ? -1 : a > nk ? nk : a);
                    s->rhi[col] = (int32_t)(b < -1 ? -1 : b > nk ? nk : b);
                }
                kern->mask(nk, mpad, s->st, ld, s->rlo, s->rhi);
            }
            kern->softmax(nk, mpad, s->st, ld, s->m, s->l, s->alpha);
        }
        if (tix != pc->t0)
            for (int col = 0; col < M; col++)
                if (s->alpha[col] != 1.0f) {
                    float a = s->alpha[col], *orow = s->o + (size_t)col * x.ldv;
                    for (int c = 0; c < ocols; c++) orow[c] *= a;
                }
        if (direct) {
            for (int kk = 0; kk < sg->nkv; kk++) {
                gather_rows(meta, w, 1, bsrc, sg->hkv + kk, j0, nk, vr, vs);
                if (meta->dtype == AK_I8) /* fold the value scales into P */
                    for (int col = kk * mb; col < (kk + 1) * mb; col++)
                        for (int j = 0; j < nk; j++) s->s[(size_t)col * x.ldkt + j] *= vs[j];
                for (int m0 = kk * mb; m0 < (kk + 1) * mb; m0 += rb)
                    kern->dec_pv(meta->dtype, (kk + 1) * mb - m0 < rb ? (kk + 1) * mb - m0 : rb, nk, dv,
                                 s->s + (size_t)m0 * x.ldkt, x.ldkt, vr, s->o + (size_t)m0 * x.ldv, x.ldv);
            }
        } else {
            kern->rows_f32(meta->dtype, nk, dv, vr, vs, s->vb, x.ldv);
            kern->pv(nk, M, dvpad, s->st, ld, s->vb, x.ldv, s->o, x.ldv);
        }
    }

    /* normalise: O / l, LSE = m + log l */
    for (int col = 0; col < M; col++) {
        float *orow = s->o + (size_t)col * x.ldv;
        if (direct) kern->dec_layout(meta->dtype, dv, orow, -1);
        double lse = s->m[col] == -INFINITY ? -INFINITY : (double)s->m[col] + log((double)s->l[col]);
        float inv = lse == -INFINITY ? 0.0f : 1.0f / s->l[col];
        for (int c = 0; c < dv; c++) orow[c] *= inv;
        s->m[col] = (float)lse; /* m now holds the row's LSE */
    }
    if (sg->direct) {
        for (int col = 0; col < M; col++)
            write_row(p, t, s->rb[col], s->rh[col], s->ri[col], s->o + (size_t)col * x.ldv, s->m[col]);
        return;
    }
    float *slot = part + pc->slot;
    for (int col = 0; col < M; col++) {
        memcpy(slot + (size_t)col * dv, s->o + (size_t)col * x.ldv, sizeof(float) * (size_t)dv);
        slot[(size_t)M * dv + col] = s->m[col];
    }
    /* count this piece done for every output group it covers; the last one merges */
    for (int32_t k = 0; k < sg->ng; k++) {
        int32_t gi = sg->g0 + k * sg->gstep;
        int done = __atomic_add_fetch(&count[gi], 1, __ATOMIC_ACQ_REL);
        if (done == dp->groups[gi].n_parts) merge_group(dp, t, gi, part);
    }
}

ak_status ak__dec_execute(const ak_dplan *dp, const ak_fwd_kernels *kern, int n_threads, const ak_decode_tensors *t,
                          const ak_kvview *kv, const ak_kvview *pre, void *ws) {
    char *base = (char *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    float *part = (float *)base;
    base += align64((size_t)dp->part_floats * sizeof(float));
    int *count = (int *)base;
    base += align64((size_t)dp->n_groups * sizeof(int));
    memset(count, 0, sizeof(int) * (size_t)dp->n_groups);
    int nt = n_threads < dp->workers ? n_threads : dp->workers;
    if (nt < 1) nt = 1;
#ifdef AK_USE_OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
#ifdef AK_USE_OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        dscratch s;
        carve(dp, base + (size_t)tid * dp->ws_per_thread, &s);
#ifdef AK_USE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int w = 0; w < dp->workers; w++)
            for (int32_t k = dp->worker_first[w]; k < dp->worker_first[w + 1]; k++)
                run_piece(dp, kern, t, kv, pre, &dp->pieces[k], &s, part, count);
    }
    /* output groups no piece covers (no visible key anywhere): O = 0, LSE = -inf (or the sink) */
    for (int32_t gi = 0; gi < dp->n_groups; gi++) {
        const ak_dgroup *g = &dp->groups[gi];
        if (g->n_parts > 0) continue;
        int32_t nq = (int32_t)ak__dnq(&dp->p, g->b);
        for (int32_t r = 0; r < g->nh * nq; r++) write_row(&dp->p, t, g->b, g->h0 + r / nq, r % nq, NULL, -INFINITY);
    }
    return AK_OK;
}
