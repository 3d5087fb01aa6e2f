/*
 * Kinetics block top-k sparse decoding (Sadhukhan et al. 2025; spec dynamic-sparse.md §9,
 * docs/dynamic/kinetics.md). Decode only: one query row per sequence against its KV cache.
 *
 * Per work item (sequence b, KV head hk), with L keys and blocks of bs tokens aligned at token 0:
 *   n_full = round_up(sink + local + topk * bs, bs); L <= n_full -> every key (dense).
 *   candidates: completed blocks not inside the sink or the local window, p in [c0, c1),
 *     c0 = floor(sink / bs), c1 = min(floor(L / bs), ceil((L - local) / bs))   (>= topk of them)
 *   score_p = mean over the G query heads of scale * q_h . kbar_p   (AK_KINETICS_MEAN_KEY: kbar_p from
 *     an ak_kinetics_index or computed on the fly) or of the mean logit over the block's keys
 *     (AK_KINETICS_MEAN_LOGIT, LiteSys's oracle); the topk best (ties: lower id, ak__dyn_topk).
 *   attended: [0, sink) U chosen blocks U [L - local, L) U [floor(L / bs) * bs, L), merged into disjoint
 *     ranges; exact softmax over them in fp32 (online, tiles of tn keys), the same set for the G heads.
 *
 * Attention over the selected set: the rows of the selected keys are gathered as POINTERS into the cache
 * (any layout, page size or dtype) and fed to the decode micro-kernels of the context's ISA
 * (ak_fwd_kernels: dec_qk / softmax_rows / dec_pv reading the cache dtype directly when the table has
 * them and G < 12, else rows_f32 + qk / softmax / pv with the queries on the lanes), as
 * src/exec/decode.c does for a contiguous key range. Running ak_decode on a reduced page list was
 * rejected: the set is token-exact (sink, local, partial block are not page-aligned), differs per KV
 * head while a page table is per sequence, and a contiguous cache with arbitrary strides cannot be
 * re-viewed as pages; the reduced budget also needs no stream-K split. One work item per (b, hk),
 * each done by one thread in a fixed order: results are bitwise identical for every thread count.
 */
#include "dynamic/dyn.h"
#include "exec/decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef AK_USE_OPENMP
#include <omp.h>
#endif

#define KIN_KEYS_BELOW 12 /* G below this uses the direct decode products (as the decode executor) */

static int64_t r16(int64_t x) { return (x + 15) / 16 * 16; }
static int64_t r32(int64_t x) { return (x + 31) / 32 * 32; }
static size_t a64(size_t x) { return (x + 63) / 64 * 64; }

void ak_kinetics_params_init(ak_kinetics_params *p) {
    if (!p) return;
    p->block = 16;
    p->topk = 64;
    p->sink = 4;
    p->local = 64;
    p->scoring = AK_KINETICS_MEAN_KEY;
}

static ak_status check_params(const ak_ctx *ctx, const ak_kinetics_params *p) {
    const char *fn = "kinetics";
    if (p->block < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: block = %d, must be >= 1", fn, p->block);
    if (p->topk < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: topk = %d, must be >= 1", fn, p->topk);
    if (p->sink < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: sink = %d, must be >= 0", fn, p->sink);
    if (p->local < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "%s: local = %d, must be >= 0", fn, p->local);
    if (p->scoring != AK_KINETICS_MEAN_KEY && p->scoring != AK_KINETICS_MEAN_LOGIT)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "%s: scoring = %d, must be AK_KINETICS_MEAN_KEY (0) or AK_KINETICS_MEAN_LOGIT (1)", fn,
                        p->scoring);
    return AK_OK;
}

/* Row pointers (and I8 scales) of tokens [j0, j0 + n) of KV head hk of sequence b (K or V). */
static void gather(const ak_kvmeta *m, const ak_kvview *w, int is_v, int32_t b, int32_t hk, int64_t j0, int n,
                   const void **rows, float *sc) {
    const char *base = is_v ? w->v : w->k;
    const float *sb = is_v ? w->vs : w->ks;
    int64_t so = is_v ? w->v_outer : w->k_outer, sp = is_v ? w->v_pos : w->k_pos, sh = is_v ? w->v_head : w->k_head;
    int64_t sso = is_v ? w->vs_outer : w->ks_outer, ssp = is_v ? w->vs_pos : w->ks_pos;
    int64_t ssh = is_v ? w->vs_head : w->ks_head;
    for (int j = 0; j < n; j++) {
        int64_t outer, pos;
        ak__kv_locate(m, b, j0 + j, &outer, &pos);
        rows[j] = base + (size_t)(outer * so + pos * sp + hk * sh) * w->es;
        if (sb) sc[j] = sb[outer * sso + pos * ssp + hk * ssh];
    }
}

/* kbar = mean of the bs keys [tok0, tok0 + bs) of (b, hk): rows converted by the kernel table (exact for
 * f32/bf16/f16; int8 times its scale), summed in double in token order, divided, rounded to f32. The index
 * and the stateless path both call this, so their means are bitwise equal. Scratch: kb [tn][ldk]. */
static void block_mean(const ak_fwd_kernels *kern, const ak_kvmeta *m, const ak_kvview *w, int32_t b, int32_t hk,
                       int64_t tok0, int32_t bs, int tn, float *kb, int64_t ldk, const void **rows, float *sc,
                       float *out) {
    double acc[AK_MAX_HEAD_DIM];
    const int d = m->d;
    for (int c = 0; c < (d + 7) / 8 * 8; c++) acc[c] = 0.0;
    for (int64_t j0 = 0; j0 < bs; j0 += tn) {
        int n = (int)(bs - j0 < tn ? bs - j0 : tn);
        gather(m, w, 0, b, hk, tok0 + j0, n, rows, sc);
        kern->rows_f32(m->dtype, n, d, rows, sc, kb, ldk);
        /* 8 columns at a time, sums in registers (rows_f32 zeroes the columns up to r16(d)); each column
         * still adds its rows in token order */
        for (int c0 = 0; c0 < d; c0 += 8) {
            double a[8];
            for (int u = 0; u < 8; u++) a[u] = acc[c0 + u];
            for (int j = 0; j < n; j++) {
                const float *x = kb + (size_t)j * ldk + c0;
                for (int u = 0; u < 8; u++) a[u] += x[u];
            }
            for (int u = 0; u < 8; u++) acc[c0 + u] = a[u];
        }
    }
    for (int c = 0; c < d; c++) out[c] = (float)(acc[c] / bs);
}

/* ================================================================================================
 * The compressed-key index
 * ============================================================================================== */

struct ak_kinetics_index {
    ak_ctx *ctx;
    int32_t max_seqs, Hkv, d, bs;
    int32_t *nblk; /* [max_seqs] completed blocks held */
    int32_t *cap;  /* [max_seqs] capacity (blocks) */
    float **kbar;  /* [max_seqs] -> [Hkv][cap][d]: each head's means contiguous */
};

ak_status ak_kinetics_index_create(ak_ctx *ctx, int32_t max_seqs, int32_t num_heads_kv, int32_t head_dim, int32_t block,
                                   ak_kinetics_index **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_kinetics_index_create: out is NULL");
    *out = NULL;
    if (max_seqs < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_kinetics_index_create: max_seqs = %d, must be >= 1",
                        max_seqs);
    if (num_heads_kv < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_kinetics_index_create: num_heads_kv = %d, must be >= 1",
                        num_heads_kv);
    if (head_dim < 1 || head_dim > AK_MAX_HEAD_DIM)
        return ak__fail(ctx, AK_ERR_HEAD_DIM, "ak_kinetics_index_create: head_dim = %d, must be in [1, %d]", head_dim,
                        AK_MAX_HEAD_DIM);
    if (block < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_kinetics_index_create: block = %d, must be >= 1", block);
    ak_kinetics_index *x = (ak_kinetics_index *)ak__alloc(ctx, sizeof *x);
    if (!x) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kinetics index");
    memset(x, 0, sizeof *x);
    x->ctx = ctx;
    x->max_seqs = max_seqs;
    x->Hkv = num_heads_kv;
    x->d = head_dim;
    x->bs = block;
    x->nblk = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)max_seqs);
    x->cap = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)max_seqs);
    x->kbar = (float **)ak__alloc(ctx, sizeof(float *) * (size_t)max_seqs);
    if (!x->nblk || !x->cap || !x->kbar) {
        ak_kinetics_index_destroy(x);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kinetics index tables (%d sequences)", max_seqs);
    }
    for (int32_t s = 0; s < max_seqs; s++) {
        x->nblk[s] = x->cap[s] = 0;
        x->kbar[s] = NULL;
    }
    *out = x;
    return AK_OK;
}

void ak_kinetics_index_destroy(ak_kinetics_index *x) {
    if (!x) return;
    ak_ctx *ctx = x->ctx;
    if (x->kbar)
        for (int32_t s = 0; s < x->max_seqs; s++) ak__free(ctx, x->kbar[s]);
    ak__free(ctx, x->kbar);
    ak__free(ctx, x->nblk);
    ak__free(ctx, x->cap);
    ak__free(ctx, x);
}

ak_status ak_kinetics_index_reset(ak_kinetics_index *x, int32_t slot) {
    if (!x) return AK_ERR_NULL_POINTER;
    ak__clear_error(x->ctx);
    if (slot < 0 || slot >= x->max_seqs)
        return ak__fail(x->ctx, AK_ERR_INVALID_ARGUMENT, "ak_kinetics_index_reset: slot %d outside [0, %d)", slot,
                        x->max_seqs);
    x->nblk[slot] = 0; /* the storage is kept for the next sequence in this slot */
    return AK_OK;
}

ak_status ak_kinetics_index_blocks(const ak_kinetics_index *x, int32_t slot, int32_t *n_blocks) {
    if (!x) return AK_ERR_NULL_POINTER;
    ak__clear_error(x->ctx);
    if (!n_blocks) return ak__fail(x->ctx, AK_ERR_NULL_POINTER, "ak_kinetics_index_blocks: n_blocks is NULL");
    if (slot < 0 || slot >= x->max_seqs)
        return ak__fail(x->ctx, AK_ERR_INVALID_ARGUMENT, "ak_kinetics_index_blocks: slot %d outside [0, %d)", slot,
                        x->max_seqs);
    *n_blocks = x->nblk[slot];
    return AK_OK;
}

ak_status ak_kinetics_index_mean(const ak_kinetics_index *x, int32_t slot, int32_t head, int32_t block, float *out) {
    if (!x) return AK_ERR_NULL_POINTER;
    ak__clear_error(x->ctx);
    if (!out) return ak__fail(x->ctx, AK_ERR_NULL_POINTER, "ak_kinetics_index_mean: out is NULL");
    if (slot < 0 || slot >= x->max_seqs || head < 0 || head >= x->Hkv || block < 0 || block >= x->nblk[slot])
        return ak__fail(x->ctx, AK_ERR_INVALID_ARGUMENT,
                        "ak_kinetics_index_mean: (slot %d, head %d, block %d) outside [0, %d) x [0, %d) x [0, %d)",
                        slot, head, block, x->max_seqs, x->Hkv, slot >= 0 && slot < x->max_seqs ? x->nblk[slot] : 0);
    memcpy(out, x->kbar[slot] + ((size_t)head * x->cap[slot] + block) * x->d, sizeof(float) * (size_t)x->d);
    return AK_OK;
}

/* Room for `need` blocks in slot s (copies each head's rows to the new layout). */
static ak_status index_grow(ak_kinetics_index *x, int32_t s, int32_t need) {
    if (need <= x->cap[s]) return AK_OK;
    int64_t nc = (int64_t)x->cap[s] * 2;
    if (nc < need) nc = need;
    if (nc < 16) nc = 16;
    if (nc > INT32_MAX) nc = INT32_MAX;
    float *nb = (float *)ak__alloc(x->ctx, sizeof(float) * (size_t)nc * (size_t)x->Hkv * (size_t)x->d);
    if (!nb) return ak__fail(x->ctx, AK_ERR_OUT_OF_MEMORY, "kinetics index: %lld blocks for slot %d", (long long)nc, s);
    for (int32_t h = 0; h < x->Hkv && x->kbar[s]; h++)
        memcpy(nb + (size_t)h * (size_t)nc * x->d, x->kbar[s] + (size_t)h * x->cap[s] * x->d,
               sizeof(float) * (size_t)x->nblk[s] * x->d);
    ak__free(x->ctx, x->kbar[s]);
    x->kbar[s] = nb;
    x->cap[s] = (int32_t)nc;
    return AK_OK;
}

ak_status ak_kinetics_index_update(ak_kinetics_index *x, const ak_kv_desc *kvd, const ak_kv_tensors *t,
                                   const int32_t *slots) {
    if (!x) return AK_ERR_NULL_POINTER;
    ak_ctx *ctx = x->ctx;
    ak__clear_error(ctx);
    ak_kvmeta m;
    ak_status st = ak__kvmeta_init(ctx, kvd, "kv", &m);
    if (st != AK_OK) return st;
    ak_kvview w;
    int32_t *seen = NULL;
    uint8_t *mark = NULL;
    char *ws = NULL;
    if ((st = ak__kv_check_tensors(ctx, &m, t, "kv", &w)) != AK_OK) goto done;
    if (m.Hkv != x->Hkv || m.d != x->d) {
        st = ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "ak_kinetics_index_update: kv has Hkv %d, d %d; the index %d, %d",
                      m.Hkv, m.d, x->Hkv, x->d);
        goto done;
    }
    mark = (uint8_t *)ak__alloc(ctx, (size_t)x->max_seqs);
    seen = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)m.B);
    if (!mark || !seen) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kinetics index update");
        goto done;
    }
    memset(mark, 0, (size_t)x->max_seqs);
    for (int32_t b = 0; b < m.B; b++) { /* validate everything before changing anything */
        int32_t s = slots ? slots[b] : b;
        if (s < 0 || s >= x->max_seqs || mark[s]) {
            st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_kinetics_index_update: slot %d of sequence %d is %s", s, b,
                          s < 0 || s >= x->max_seqs ? "outside [0, max_seqs)" : "given twice");
            goto done;
        }
        mark[s] = 1;
        seen[b] = s;
        if (m.len[b] / x->bs < x->nblk[s]) {
            st = ak__fail(
                ctx, AK_ERR_INVALID_ARGUMENT,
                "ak_kinetics_index_update: sequence %d has %d tokens, fewer than the %d blocks of %d the index "
                "holds for slot %d (call ak_kinetics_index_reset for a new sequence)",
                b, m.len[b], x->nblk[s], x->bs, s);
            goto done;
        }
    }
    for (int32_t b = 0; b < m.B && st == AK_OK; b++) st = index_grow(x, seen[b], m.len[b] / x->bs);
    if (st != AK_OK) goto done;
    {
        const ak_fwd_kernels *kern = ak__kernel_for(ctx->force_ref ? AK_ISA_SCALAR : ctx->isa);
        const int tn = 256;
        const int64_t ldk = r16(x->d) + 16;
        const size_t per = a64(sizeof(float) * (size_t)tn * ldk) + a64(sizeof(void *) * tn) + a64(sizeof(float) * tn);
        const int64_t n_items = (int64_t)m.B * x->Hkv;
        int nt = ctx->n_threads < n_items ? ctx->n_threads : (int)n_items;
        if (nt < 1) nt = 1;
        ws = (char *)ak__alloc(ctx, per * (size_t)nt);
        if (!ws) {
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kinetics index update scratch");
            goto done;
        }
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic)
#endif
        for (int64_t it = 0; it < n_items; it++) {
#ifdef AK_USE_OPENMP
            int tid = omp_get_thread_num();
#else
            int tid = 0;
#endif
            char *base = ws + per * (size_t)tid;
            float *kb = (float *)base;
            const void **rows = (const void **)(base + a64(sizeof(float) * (size_t)tn * ldk));
            float *sc = (float *)((char *)rows + a64(sizeof(void *) * tn));
            int32_t b = (int32_t)(it / x->Hkv), h = (int32_t)(it % x->Hkv), s = seen[b];
            int32_t have = x->nblk[s], want = m.len[b] / x->bs;
            float *dst = x->kbar[s] + (size_t)h * x->cap[s] * x->d;
            for (int32_t p = have; p < want; p++)
                block_mean(kern, &m, &w, b, h, (int64_t)p * x->bs, x->bs, tn, kb, ldk, rows, sc,
                           dst + (size_t)p * x->d);
        }
        for (int32_t b = 0; b < m.B; b++) x->nblk[seen[b]] = m.len[b] / x->bs;
    }
done:
    ak__free(ctx, ws);
    ak__free(ctx, mark);
    ak__free(ctx, seen);
    ak__kvmeta_free(ctx, &m);
    return st;
}

/* ================================================================================================
 * Selection and attention
 * ============================================================================================== */

typedef struct kin_run {
    ak_ctx *ctx;
    const ak_fwd_kernels *kern;
    ak_dproblem p;
    ak_kvview kv;
    const ak_decode_tensors *t;
    ak_kinetics_params prm;
    const ak_kinetics_index *idx; /* NULL: compressed keys on the fly */
    const int32_t *slots;
    int attend; /* 0: selection only */
    int direct; /* dec_qk / dec_pv on the cache rows, else the lanes formulation */
    int tn;     /* keys per tile */
    int64_t n_full;
    int64_t ncand_max;
    int64_t ldq, ldk, ldv, mpad, ld, ldt;
    size_t ws_per;
    int32_t *sel;   /* [B * Hkv * topk] chosen block ids ascending, -1 past the count */
    int32_t *cnt;   /* [B * Hkv]: chosen blocks; -1 = dense */
    int64_t *keys;  /* [B * Hkv]: attended keys */
    ak_status *ist; /* [B * Hkv] */
} kin_run;

typedef struct kin_scr {
    float *qn, *qd, *qf, *qt, *S, *st, *kb, *kbt, *vb, *o, *m, *l, *alpha;
    const void **kr, **vr;
    float *ks, *vs;
    double *tsum, *score;
    int64_t *rlo, *rhi;
} kin_scr;

static void *carve1(char *base, size_t *off, size_t bytes) {
    void *r = base ? base + *off : NULL;
    *off += a64(bytes);
    return r;
}

static size_t carve(const kin_run *r, char *base, kin_scr *s) {
    const int64_t G = r->p.g, d = r->p.d, tn = r->tn;
    const size_t f = sizeof(float);
    size_t o = 0;
    kin_scr x;
    x.qn = (float *)carve1(base, &o, (size_t)(G * r->ldq) * f);
    x.qd = (float *)carve1(base, &o, (size_t)(G * r->ldq) * f);
    x.qf = (float *)carve1(base, &o, (size_t)(G * r->ldq) * f);
    x.qt = (float *)carve1(base, &o, (size_t)(d * r->ld) * f);
    x.S = (float *)carve1(base, &o, (size_t)(G * r->ldt) * f);
    x.st = (float *)carve1(base, &o, (size_t)(tn * r->ld) * f);
    x.kb = (float *)carve1(base, &o, (size_t)(tn * r->ldk) * f);
    x.kbt = (float *)carve1(base, &o, (size_t)(tn * r->ldk) * f);
    x.vb = (float *)carve1(base, &o, (size_t)(tn * r->ldv) * f);
    x.o = (float *)carve1(base, &o, (size_t)(G * r->ldv) * f);
    x.m = (float *)carve1(base, &o, (size_t)r->mpad * f);
    x.l = (float *)carve1(base, &o, (size_t)r->mpad * f);
    x.alpha = (float *)carve1(base, &o, (size_t)r->mpad * f);
    x.kr = (const void **)carve1(base, &o, (size_t)tn * sizeof(void *));
    x.vr = (const void **)carve1(base, &o, (size_t)tn * sizeof(void *));
    x.ks = (float *)carve1(base, &o, (size_t)tn * f);
    x.vs = (float *)carve1(base, &o, (size_t)tn * f);
    x.tsum = (double *)carve1(base, &o, (size_t)tn * sizeof(double));
    x.score = (double *)carve1(base, &o, (size_t)(r->ncand_max > 0 ? r->ncand_max : 1) * sizeof(double));
    x.rlo = (int64_t *)carve1(base, &o, (size_t)(r->prm.topk + 3) * sizeof(int64_t));
    x.rhi = (int64_t *)carve1(base, &o, (size_t)(r->prm.topk + 3) * sizeof(int64_t));
    if (s) *s = x;
    return o;
}

/* Rows per block of the direct products: the fewest blocks of at most AK_DEC_DIRECT_ROWS, balanced. */
static int row_block(int G) {
    int nblk = (G + AK_DEC_DIRECT_ROWS - 1) / AK_DEC_DIRECT_ROWS;
    return (G + nblk - 1) / nblk;
}

/* The G query rows of (b, hk): natural f32 (qn), in the kernel order of the cache dtype (qd) and of f32 (qf)
 * for the direct products, transposed (qt) for the lanes formulation. */
static void load_q(const kin_run *r, kin_scr *s, int32_t b, int32_t hk) {
    const ak_tensor *Q = &r->t->q;
    const int G = r->p.g, d = r->p.d;
    for (int g = 0; g < G; g++) {
        int64_t off = (int64_t)b * Q->stride[0] + (int64_t)(hk * G + g) * Q->stride[1];
        float *q = s->qn + (size_t)g * r->ldq;
        if (Q->stride[3] == 1)
            r->kern->to_f32(Q->dtype, (const char *)Q->data + (size_t)off * ak_dtype_size(Q->dtype), q, d);
        else
            for (int c = 0; c < d; c++) q[c] = ak__load(Q->data, Q->dtype, off + c * Q->stride[3]);
        for (int64_t c = d; c < r->ldq; c++) q[c] = 0.0f;
        if (r->direct) {
            float *qd = s->qd + (size_t)g * r->ldq, *qf = s->qf + (size_t)g * r->ldq;
            memcpy(qd, q, sizeof(float) * (size_t)r->ldq);
            memcpy(qf, q, sizeof(float) * (size_t)r->ldq);
            r->kern->dec_layout(r->p.kv.dtype, d, qd, 1);
            r->kern->dec_layout(AK_F32, d, qf, 1);
        } else {
            for (int c = 0; c < d; c++) s->qt[(size_t)c * r->ld + g] = q[c];
        }
    }
    if (!r->direct)
        for (int c = 0; c < d; c++)
            for (int64_t g = G; g < r->mpad; g++) s->qt[(size_t)c * r->ld + g] = 0.0f;
}

/* tsum[j] = sum over the G rows of scale * q_g . row_j, j < n (rows of dtype dt; f32 = compressed keys). */
static void tile_rowsum(const kin_run *r, kin_scr *s, ak_dtype dt, int n, const void **rows, const float *sc) {
    const ak_fwd_kernels *k = r->kern;
    const int G = r->p.g, d = r->p.d;
    if (r->direct) {
        const float *q = dt == AK_F32 ? s->qf : s->qd;
        const int rb = row_block(G);
        for (int m0 = 0; m0 < G; m0 += rb)
            k->dec_qk(dt, G - m0 < rb ? G - m0 : rb, n, d, q + (size_t)m0 * r->ldq, r->ldq, rows, sc, r->p.scale,
                      s->S + (size_t)m0 * r->ldt, r->ldt);
        for (int j = 0; j < n; j++) {
            double a = 0.0;
            for (int g = 0; g < G; g++) a += s->S[(size_t)g * r->ldt + j];
            s->tsum[j] = a;
        }
    } else {
        k->rows_f32(dt, n, d, rows, sc, s->kb, r->ldk);
        k->qk(n, d, (int)r->mpad, s->kb, r->ldk, s->qt, r->ld, r->p.scale, s->st, r->ld);
        for (int j = 0; j < n; j++) {
            double a = 0.0;
            for (int g = 0; g < G; g++) a += s->st[(size_t)j * r->ld + g];
            s->tsum[j] = a;
        }
    }
}

/* score[p - c0] for candidates p in [c0, c1). */
static void score_blocks(const kin_run *r, kin_scr *s, int32_t b, int32_t hk, int64_t c0, int64_t c1) {
    const int64_t bs = r->prm.block, G = r->p.g;
    const ak_kvmeta *m = &r->p.kv;
    if (r->prm.scoring == AK_KINETICS_MEAN_LOGIT) { /* LiteSys oracle: every logit of the candidate blocks */
        for (int64_t p = c0; p < c1; p++) s->score[p - c0] = 0.0;
        for (int64_t j0 = c0 * bs; j0 < c1 * bs; j0 += r->tn) {
            int n = (int)(c1 * bs - j0 < r->tn ? c1 * bs - j0 : r->tn);
            gather(m, &r->kv, 0, b, hk, j0, n, s->kr, s->ks);
            tile_rowsum(r, s, m->dtype, n, s->kr, s->ks);
            for (int j = 0; j < n; j++) s->score[(j0 + j) / bs - c0] += s->tsum[j];
        }
        for (int64_t p = c0; p < c1; p++) s->score[p - c0] /= (double)(G * bs);
        return;
    }
    for (int64_t p0 = c0; p0 < c1; p0 += r->tn) {
        int n = (int)(c1 - p0 < r->tn ? c1 - p0 : r->tn);
        if (r->idx) {
            int32_t slot = r->slots ? r->slots[b] : b;
            const float *kb = r->idx->kbar[slot] + (size_t)hk * r->idx->cap[slot] * r->p.d;
            for (int j = 0; j < n; j++) s->vr[j] = kb + (size_t)(p0 + j) * r->p.d;
        } else {
            for (int j = 0; j < n; j++) {
                float *dst = s->kbt + (size_t)j * r->ldk;
                block_mean(r->kern, m, &r->kv, b, hk, (p0 + j) * bs, (int32_t)bs, r->tn, s->kb, r->ldk, s->kr, s->ks,
                           dst);
                s->vr[j] = dst;
            }
        }
        tile_rowsum(r, s, AK_F32, n, s->vr, NULL);
        for (int j = 0; j < n; j++) s->score[p0 + j - c0] = s->tsum[j] / (double)G;
    }
}

/* Sort ranges by start (insertion: few) and merge overlapping or touching ones; returns the count. */
static int merge_ranges(int64_t *lo, int64_t *hi, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && lo[j - 1] > lo[j]; j--) {
            int64_t a = lo[j], z = hi[j];
            lo[j] = lo[j - 1], hi[j] = hi[j - 1];
            lo[j - 1] = a, hi[j - 1] = z;
        }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (hi[i] <= lo[i]) continue;
        if (k > 0 && lo[i] <= hi[k - 1]) {
            if (hi[i] > hi[k - 1]) hi[k - 1] = hi[i];
        } else {
            lo[k] = lo[i], hi[k] = hi[i];
            k++;
        }
    }
    return k;
}

/* Output row h of sequence b: O = o (normalised, no sink) re-weighted for the sink; LSE includes it. */
static void write_row(const kin_run *r, int32_t b, int32_t h, const float *o, double lse) {
    const ak_decode_tensors *t = r->t;
    double w = 1.0;
    if (r->p.desc.has_sinks) {
        double sink = ((const float *)t->sinks.data)[h * t->sinks.stride[0]];
        if (lse == -INFINITY) {
            lse = sink;
            w = 0.0;
        } else {
            double mx = lse > sink ? lse : sink, tot = mx + log(exp(lse - mx) + exp(sink - mx));
            w = exp(lse - tot);
            lse = tot;
        }
    } else if (lse == -INFINITY) {
        w = 0.0;
    }
    const ak_tensor *O = &t->o;
    const int64_t off = (int64_t)b * O->stride[0] + (int64_t)h * O->stride[1];
    const float fw = (float)w;
    for (int c = 0; c < r->p.dv; c++)
        ak__store(O->data, O->dtype, off + c * O->stride[3], o ? (double)(o[c] * fw) : 0.0);
    if (r->p.desc.return_lse)
        ((float *)t->lse.data)[(int64_t)b * t->lse.stride[0] + (int64_t)h * t->lse.stride[1]] = (float)lse;
}

/* Exact softmax attention of the G rows over the keys of the ranges, online over tiles of tn keys. */
static void attend(const kin_run *r, kin_scr *s, int32_t b, int32_t hk, int nr) {
    const ak_fwd_kernels *k = r->kern;
    const ak_kvmeta *m = &r->p.kv;
    const ak_dtype dt = m->dtype;
    const int G = r->p.g, d = r->p.d, dv = r->p.dv, dvpad = (int)r16(dv);
    const int ocols = r->direct ? (int)r32(dv) : dvpad, rb = row_block(G);
    for (int64_t g = 0; g < r->mpad; g++) {
        s->m[g] = -INFINITY;
        s->l[g] = 0.0f;
    }
    memset(s->o, 0, sizeof(float) * (size_t)G * r->ldv);
    int ri = 0;
    int64_t pos = nr > 0 ? s->rlo[0] : 0;
    while (ri < nr) {
        int nk = 0;
        while (nk < r->tn && ri < nr) { /* fill the tile from the ranges */
            int n = (int)(s->rhi[ri] - pos < r->tn - nk ? s->rhi[ri] - pos : r->tn - nk);
            gather(m, &r->kv, 0, b, hk, pos, n, s->kr + nk, s->ks + nk);
            gather(m, &r->kv, 1, b, hk, pos, n, s->vr + nk, s->vs + nk);
            nk += n;
            pos += n;
            if (pos == s->rhi[ri] && ++ri < nr) pos = s->rlo[ri];
        }
        if (r->direct) {
            for (int m0 = 0; m0 < G; m0 += rb)
                k->dec_qk(dt, G - m0 < rb ? G - m0 : rb, nk, d, s->qd + (size_t)m0 * r->ldq, r->ldq, s->kr, s->ks,
                          r->p.scale, s->S + (size_t)m0 * r->ldt, r->ldt);
            k->softmax_rows(G, nk, s->S, r->ldt, s->m, s->l, s->alpha);
        } else {
            k->rows_f32(dt, nk, d, s->kr, s->ks, s->kb, r->ldk);
            k->qk(nk, d, (int)r->mpad, s->kb, r->ldk, s->qt, r->ld, r->p.scale, s->st, r->ld);
            k->softmax(nk, (int)r->mpad, s->st, r->ld, s->m, s->l, s->alpha);
        }
        for (int g = 0; g < G; g++)
            if (s->alpha[g] != 1.0f) {
                float a = s->alpha[g], *orow = s->o + (size_t)g * r->ldv;
                for (int c = 0; c < ocols; c++) orow[c] *= a;
            }
        if (r->direct) {
            if (dt == AK_I8) /* fold the value scales into P */
                for (int g = 0; g < G; g++)
                    for (int j = 0; j < nk; j++) s->S[(size_t)g * r->ldt + j] *= s->vs[j];
            for (int m0 = 0; m0 < G; m0 += rb)
                k->dec_pv(dt, G - m0 < rb ? G - m0 : rb, nk, dv, s->S + (size_t)m0 * r->ldt, r->ldt, s->vr,
                          s->o + (size_t)m0 * r->ldv, r->ldv);
        } else {
            k->rows_f32(dt, nk, dv, s->vr, s->vs, s->vb, r->ldv);
            k->pv(nk, G, dvpad, s->st, r->ld, s->vb, r->ldv, s->o, r->ldv);
        }
    }
    for (int g = 0; g < G; g++) {
        float *orow = s->o + (size_t)g * r->ldv;
        if (r->direct) k->dec_layout(dt, dv, orow, -1);
        double lse = s->m[g] == -INFINITY ? -INFINITY : (double)s->m[g] + log((double)s->l[g]);
        float inv = lse == -INFINITY ? 0.0f : 1.0f / s->l[g];
        for (int c = 0; c < dv; c++) orow[c] *= inv;
        write_row(r, b, hk * G + g, lse == -INFINITY ? NULL : orow, lse);
    }
}

/* One (sequence, KV head): selection, then (if r->attend) the attention over the selected keys. */
static ak_status run_item(const kin_run *r, kin_scr *s, int64_t it) {
    const int32_t Hkv = r->p.Hkv, b = (int32_t)(it / Hkv), hk = (int32_t)(it % Hkv);
    const int64_t L = r->p.kv.len[b], bs = r->prm.block, K = r->prm.topk;
    int32_t *sel = r->sel + it * K;
    for (int64_t i = 0; i < K; i++) sel[i] = -1;
    int nr = 0;
    if (L <= r->n_full) { /* dense */
        r->cnt[it] = -1;
        if (L > 0) {
            s->rlo[0] = 0;
            s->rhi[0] = L;
            nr = 1;
        }
    } else {
        const int64_t C = L / bs, c0 = r->prm.sink / bs;
        int64_t c1 = (L - r->prm.local + bs - 1) / bs;
        if (c1 > C) c1 = C;
        load_q(r, s, b, hk);
        score_blocks(r, s, b, hk, c0, c1);
        int64_t n = ak__dyn_topk(r->ctx, s->score, c1 - c0, K, 0, sel);
        if (n < 0) return AK_ERR_OUT_OF_MEMORY;
        r->cnt[it] = (int32_t)n;
        s->rlo[nr] = 0, s->rhi[nr++] = r->prm.sink < L ? r->prm.sink : L;
        for (int64_t i = 0; i < n; i++) {
            sel[i] += (int32_t)c0;
            s->rlo[nr] = sel[i] * bs, s->rhi[nr++] = sel[i] * bs + bs;
        }
        s->rlo[nr] = L - r->prm.local > 0 ? L - r->prm.local : 0, s->rhi[nr++] = L;
        s->rlo[nr] = C * bs, s->rhi[nr++] = L; /* the current partial block (may be empty) */
        nr = merge_ranges(s->rlo, s->rhi, nr);
    }
    int64_t keys = 0;
    for (int i = 0; i < nr; i++) keys += s->rhi[i] - s->rlo[i];
    r->keys[it] = keys;
    if (!r->attend) return AK_OK;
    if (nr == 0) {
        for (int g = 0; g < r->p.g; g++) write_row(r, b, hk * r->p.g + g, NULL, -INFINITY);
        return AK_OK;
    }
    if (L <= r->n_full) load_q(r, s, b, hk);
    attend(r, s, b, hk, nr);
    return AK_OK;
}

/* q: [B][Hq][1][d] of dtype_q (the selection reads nothing else of the query side). */
static ak_status check_q(const ak_ctx *ctx, const ak_dproblem *p, const ak_tensor *q) {
    ak_status st = ak__check_view(ctx, "q", q, 4);
    if (st != AK_OK) return st;
    if (q->dtype != AK_F32 && q->dtype != AK_BF16 && q->dtype != AK_F16)
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "q.dtype = %s: must be f32, bf16 or f16",
                        ak_dtype_name(q->dtype));
    if (q->dtype != p->desc.dtype_q)
        return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "q.dtype = %s but the descriptor says %s", ak_dtype_name(q->dtype),
                        ak_dtype_name(p->desc.dtype_q));
    int64_t e[4] = {p->B, p->Hq, 1, p->d};
    for (int i = 0; i < 4; i++)
        if (q->shape[i] != e[i])
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "q.shape[%d] = %lld, expected %lld", i, (long long)q->shape[i],
                            (long long)e[i]);
    return AK_OK;
}

/* Validate everything and size the run. */
static ak_status setup(kin_run *r, ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t,
                       const ak_kinetics_params *params, const ak_kinetics_index *idx, const int32_t *slots,
                       int attend) {
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->t = t;
    r->attend = attend;
    if (!desc) return ak__fail(ctx, AK_ERR_NULL_POINTER, "kinetics: desc is NULL");
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "kinetics: tensors is NULL");
    if (params)
        r->prm = *params;
    else
        ak_kinetics_params_init(&r->prm);
    ak_status st = check_params(ctx, &r->prm);
    if (st != AK_OK) return st;
    if (desc->size == sizeof(ak_decode_desc)) { /* (a wrong size is reported by the decode validation) */
        const char *why = desc->q_len != 1  ? "q_len must be 1 (one new token per sequence)"
                          : desc->qo_indptr ? "qo_indptr is not supported (one query row per sequence)"
                          : desc->prefix    ? "a shared prefix is not supported"
                          : desc->window_left != -1 || desc->window_right != -1 ? "windows are not supported"
                          : desc->softcap != 0.0f ? "softcap is not supported (the block scores are on raw logits)"
                          : desc->has_alibi       ? "ALiBi is not supported"
                                                  : NULL;
        if (why) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "kinetics: %s", why);
    }
    if ((st = ak__dproblem_init(ctx, desc, 0, &r->p)) != AK_OK) return st;
    if (attend)
        st = ak__dcheck_tensors(ctx, &r->p, t, 0, &r->kv, NULL);
    else if (t->size != sizeof(ak_decode_tensors))
        st = ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "tensors.size = %zu, expected %zu (call ak_decode_tensors_init)",
                      t->size, sizeof(ak_decode_tensors));
    else if ((st = check_q(ctx, &r->p, &t->q)) == AK_OK)
        st = ak__kv_check_tensors(ctx, &r->p.kv, &t->kv, "kv", &r->kv);
    if (st != AK_OK) return st;
    if (idx && r->prm.scoring == AK_KINETICS_MEAN_KEY) {
        if (idx->bs != r->prm.block || idx->Hkv != r->p.Hkv || idx->d != r->p.d)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                            "kinetics: the index has block %d, Hkv %d, d %d; the problem block %d, Hkv %d, d %d",
                            idx->bs, idx->Hkv, idx->d, r->prm.block, r->p.Hkv, r->p.d);
        for (int32_t b = 0; b < r->p.B; b++) {
            int32_t s = slots ? slots[b] : b;
            if (s < 0 || s >= idx->max_seqs)
                return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "kinetics: slot %d of sequence %d outside [0, %d)", s, b,
                                idx->max_seqs);
            if (idx->nblk[s] != r->p.kv.len[b] / r->prm.block)
                return ak__fail(
                    ctx, AK_ERR_INVALID_ARGUMENT,
                    "kinetics: the index holds %d blocks for slot %d, sequence %d has %d tokens = %d completed "
                    "blocks (call ak_kinetics_index_update after appending)",
                    idx->nblk[s], s, b, r->p.kv.len[b], r->p.kv.len[b] / r->prm.block);
        }
        r->idx = idx;
        r->slots = slots;
    }
    r->kern = ak__kernel_for(ctx->force_ref ? AK_ISA_SCALAR : ctx->isa);
    const char *e = getenv("AK_DECODE_QK");
    int below = KIN_KEYS_BELOW;
    if (e && strcmp(e, "keys") == 0) below = INT32_MAX;
    if (e && strcmp(e, "lanes") == 0) below = 0;
    r->direct = r->kern->dec_qk != NULL && r->p.g < below;
    r->tn = r->p.d > 128 || r->p.dv > 128 ? 128 : 256;
    const int64_t bs = r->prm.block, span = (int64_t)r->prm.sink + r->prm.local + (int64_t)r->prm.topk * bs;
    r->n_full = (span + bs - 1) / bs * bs;
    r->ncand_max = r->p.kv.max_len / bs + 1;
    r->ldq = r->ldk = r16(r->p.d) + 16;
    r->ldv = r16(r->p.dv) + 16;
    r->mpad = r16(r->p.g);
    r->ld = r->mpad + 16;
    r->ldt = r16(r->tn) + 16;
    r->ws_per = carve(r, NULL, NULL);
    return AK_OK;
}

/* Every item, in parallel; per-item results in r->sel / cnt / keys. */
static ak_status run_all(kin_run *r) {
    ak_ctx *ctx = r->ctx;
    const int64_t n_items = (int64_t)r->p.B * r->p.Hkv;
    int nt = ctx->n_threads < n_items ? ctx->n_threads : (int)n_items;
    if (nt < 1) nt = 1;
    r->sel = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(n_items * r->prm.topk));
    r->cnt = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)n_items);
    r->keys = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)n_items);
    r->ist = (ak_status *)ak__alloc(ctx, sizeof(ak_status) * (size_t)n_items);
    char *ws = (char *)ak__alloc(ctx, r->ws_per * (size_t)nt);
    if (!r->sel || !r->cnt || !r->keys || !r->ist || !ws) {
        ak__free(ctx, ws);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "kinetics: work arrays and scratch (%zu bytes per thread)",
                        r->ws_per);
    }
#ifdef AK_USE_OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic)
#endif
    for (int64_t it = 0; it < n_items; it++) {
#ifdef AK_USE_OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        kin_scr s;
        carve(r, ws + r->ws_per * (size_t)tid, &s);
        r->ist[it] = run_item(r, &s, it);
    }
    ak__free(ctx, ws);
    for (int64_t it = 0; it < n_items; it++)
        if (r->ist[it] != AK_OK)
            return ak__fail(ctx, r->ist[it], "kinetics: block selection scratch (item %lld)", (long long)it);
    return AK_OK;
}

static void run_free(kin_run *r) {
    ak__free(r->ctx, r->sel);
    ak__free(r->ctx, r->cnt);
    ak__free(r->ctx, r->keys);
    ak__free(r->ctx, r->ist);
    ak__dproblem_free(r->ctx, &r->p);
}

ak_status ak_kinetics_select(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t,
                             const ak_kinetics_params *params, const ak_kinetics_index *index, const int32_t *slots,
                             int32_t *blocks, int32_t *counts) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!blocks || !counts)
        return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_kinetics_select: blocks and counts are required");
    kin_run r;
    ak_status st = setup(&r, ctx, desc, t, params, index, slots, 0);
    if (st == AK_OK) st = run_all(&r);
    if (st == AK_OK) {
        const int64_t n_items = (int64_t)r.p.B * r.p.Hkv;
        memcpy(blocks, r.sel, sizeof(int32_t) * (size_t)(n_items * r.prm.topk));
        memcpy(counts, r.cnt, sizeof(int32_t) * (size_t)n_items);
    }
    run_free(&r);
    return st;
}

ak_status ak_kinetics_decode(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t,
                             const ak_kinetics_params *params, const ak_kinetics_index *index, const int32_t *slots,
                             ak_dyn_info *info) {
    ak_dyn_in clock;
    memset(&clock, 0, sizeof clock);
    clock.t0 = ak__dyn_now();
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (info) memset(info, 0, sizeof *info);
    kin_run r;
    ak_status st = setup(&r, ctx, desc, t, params, index, slots, 1);
    if (st == AK_OK) st = run_all(&r);
    if (st == AK_OK && info) {
        ak__dyn_info_finish(&clock, NULL, info);
        double keys = 0.0, dense = 0.0;
        for (int64_t it = 0; it < (int64_t)r.p.B * r.p.Hkv; it++) {
            int32_t b = (int32_t)(it / r.p.Hkv), L = r.p.kv.len[b];
            keys += (double)r.keys[it];
            dense += (double)L;
            if (r.cnt[it] < 0) {
                info->n_dense_heads++;
                ak__dyn_explain(info, "b=%d kv=%d L=%d: dense (L <= n_full = %lld)\n", b, (int)(it % r.p.Hkv), L,
                                (long long)r.n_full);
                continue;
            }
            ak__dyn_explain(info, "b=%d kv=%d L=%d: %d blocks of %d {", b, (int)(it % r.p.Hkv), L, r.cnt[it],
                            r.prm.block);
            for (int32_t i = 0; i < r.cnt[it] && i < 8; i++)
                ak__dyn_explain(info, "%s%d", i ? "," : "", r.sel[it * r.prm.topk + i]);
            ak__dyn_explain(info, "%s}, %lld keys attended\n", r.cnt[it] > 8 ? ",..." : "", (long long)r.keys[it]);
        }
        info->density = dense > 0.0 ? keys / dense : 1.0;
    }
    run_free(&r);
    return st;
}
