/* Decode attention: descriptor validation, the Lean (stream-K) schedule, run and reference entry points. */
#include "exec/decode.h"
#include "exec/fwd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AK_UNBOUNDED ((int64_t)1 << 40)
#define AK_DEC_MAX_ROWS 128       /* rows of one tile (query heads x query rows) */
#define AK_DEC_MAX_Q 16           /* query rows per sequence */
#define AK_DEC_DET_WORKERS 64     /* Lean runs in deterministic mode (independent of the thread count) */
#define AK_DEC_MIN_RUN 4          /* tiles per run at least, when the run count is automatic */
#define AK_DEC_KEYS_BELOW 12      /* segments with fewer rows put keys on the SIMD lanes for Q.K */

void ak_decode_desc_init(ak_decode_desc *d) {
    if (!d) return;
    memset(d, 0, sizeof *d);
    d->size = sizeof *d;
    d->num_heads_q = 1;
    d->q_len = 1;
    d->dtype_q = d->dtype_o = AK_F32;
    d->scale = NAN;
    d->window_left = d->window_right = -1;
    ak_kv_desc_init(&d->kv);
}

void ak_decode_tensors_init(ak_decode_tensors *t) {
    if (!t) return;
    memset(t, 0, sizeof *t);
    t->size = sizeof *t;
    ak_kv_tensors_init(&t->kv);
    ak_kv_tensors_init(&t->prefix);
}

static int valid_io(ak_dtype t) { return t == AK_F32 || t == AK_BF16 || t == AK_F16; }

void ak__dproblem_free(const ak_ctx *ctx, ak_dproblem *p) {
    ak__kvmeta_free(ctx, &p->kv);
    ak__kvmeta_free(ctx, &p->pre);
    ak__free(ctx, p->qo);
    p->qo = NULL;
}

ak_status ak__dproblem_init(const ak_ctx *ctx, const ak_decode_desc *desc, int allow_f64_out, ak_dproblem *p) {
    memset(p, 0, sizeof *p);
    if (!desc) return ak__fail(ctx, AK_ERR_NULL_POINTER, "desc is NULL");
    if (desc->size != sizeof(ak_decode_desc))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "desc.size = %zu, expected %zu (call ak_decode_desc_init)",
                        desc->size, sizeof(ak_decode_desc));
    const ak_decode_desc *d = desc;
    if (d->num_heads_q < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "num_heads_q = %d, must be >= 1", d->num_heads_q);
    if (d->q_len < 1 || d->q_len > AK_DEC_MAX_Q)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "q_len = %d, must be in [1, %d] (use ak_attention for longer queries)",
                        d->q_len, AK_DEC_MAX_Q);
    if (!valid_io(d->dtype_q))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "dtype_q = %d: must be f32, bf16 or f16", (int)d->dtype_q);
    if (!valid_io(d->dtype_o) && !(allow_f64_out && d->dtype_o == AK_F64))
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "dtype_o = %d: must be f32, bf16 or f16", (int)d->dtype_o);
    if (d->window_left < -1 || d->window_right < -1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "window = (%d, %d): each side must be >= -1 (-1 = unbounded)",
                        d->window_left, d->window_right);
    if (!(d->softcap >= 0.0f) || isinf(d->softcap))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "softcap = %g, must be finite and >= 0", (double)d->softcap);
    if (isinf(d->scale)) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "scale is infinite");
    if (d->tile_n < 0 || d->tile_n > 4096)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "tile_n = %d, must be in [1, 4096] (0 = auto)", d->tile_n);
    if (d->num_workers < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "num_workers = %d, must be >= 0 (0 = auto)", d->num_workers);
    ak_status st = ak__kvmeta_init(ctx, &d->kv, "kv", &p->kv);
    if (st != AK_OK) return st;
    p->desc = *d;
    p->desc.qo_indptr = NULL;
    p->desc.prefix = NULL;
    p->desc.kv.seqlens = p->desc.kv.block_table = NULL;
    p->desc.kv.kv_indptr = p->desc.kv.kv_indices = p->desc.kv.kv_last_page_len = NULL;
    p->B = p->kv.B;
    p->Hq = d->num_heads_q;
    p->Hkv = p->kv.Hkv;
    p->d = p->kv.d;
    p->dv = p->kv.dv;
    p->nq_max = d->q_len;
    if (p->Hq % p->Hkv != 0) {
        ak__dproblem_free(ctx, p);
        return ak__fail(ctx, AK_ERR_GQA_RATIO, "num_heads_q = %d is not a multiple of kv.num_heads_kv = %d", p->Hq, p->Hkv);
    }
    p->g = p->Hq / p->Hkv;
    p->scale = isnan(d->scale) ? (float)(1.0 / sqrt((double)p->d)) : d->scale;
    p->win_left = d->window_left < 0 ? AK_UNBOUNDED : d->window_left;
    p->win_right = d->causal ? 0 : (d->window_right < 0 ? AK_UNBOUNDED : d->window_right);
    if (d->prefix) {
        st = ak__kvmeta_init(ctx, d->prefix, "prefix", &p->pre);
        if (st == AK_OK && (p->pre.B != 1 || p->pre.Hkv != p->Hkv || p->pre.d != p->d || p->pre.dv != p->dv))
            st = ak__fail(ctx, AK_ERR_SHAPE_MISMATCH,
                          "prefix: batch %d, Hkv %d, d %d, dv %d; expected batch 1 and the Hkv, d, dv of kv (%d, %d, %d)",
                          p->pre.B, p->pre.Hkv, p->pre.d, p->pre.dv, p->Hkv, p->d, p->dv);
        if (st != AK_OK) {
            ak__dproblem_free(ctx, p);
            return st;
        }
        p->has_prefix = 1;
        p->P = p->pre.len[0];
    }
    if (d->qo_indptr) {
        const int32_t *qo = d->qo_indptr;
        st = AK_OK;
        if (qo[0] != 0) st = ak__fail(ctx, AK_ERR_BAD_METADATA, "qo_indptr[0] = %d, must be 0", qo[0]);
        for (int32_t b = 0; b < p->B && st == AK_OK; b++) {
            int64_t n = (int64_t)qo[b + 1] - qo[b];
            if (n < 0)
                st = ak__fail(ctx, AK_ERR_BAD_METADATA, "qo_indptr decreases at sequence %d: %d -> %d", b, qo[b], qo[b + 1]);
            else if (n > d->q_len)
                st = ak__fail(ctx, AK_ERR_BAD_METADATA, "sequence %d has %lld query rows, above q_len = %d", b,
                              (long long)n, d->q_len);
        }
        if (st == AK_OK) {
            p->qo = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * ((size_t)p->B + 1));
            if (!p->qo) st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "qo_indptr copy");
            else memcpy(p->qo, qo, sizeof(int32_t) * ((size_t)p->B + 1));
        }
        if (st != AK_OK) {
            ak__dproblem_free(ctx, p);
            return st;
        }
        p->total_q = p->qo[p->B];
    } else {
        p->total_q = d->q_len;
    }
    return AK_OK;
}

static ak_status check_io(const ak_ctx *ctx, const char *name, const ak_tensor *t, int nd, const int64_t *shape,
                          ak_dtype want, int is_out, int allow_f64) {
    ak_status st = ak__check_view(ctx, name, t, nd);
    if (st) return st;
    int ok = nd == 3 ? t->dtype == AK_F32 || (allow_f64 && t->dtype == AK_F64) /* lse */
                     : valid_io(t->dtype) || (is_out && allow_f64 && t->dtype == AK_F64);
    if (!ok) return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s.dtype = %s is not supported here", name, ak_dtype_name(t->dtype));
    if (t->dtype != want && !(allow_f64 && is_out && t->dtype == AK_F64))
        return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "%s.dtype = %s but the descriptor says %s", name,
                        ak_dtype_name(t->dtype), ak_dtype_name(want));
    for (int i = 0; i < nd; i++)
        if (t->shape[i] != shape[i])
            return ak__fail(ctx, AK_ERR_SHAPE_MISMATCH, "%s.shape[%d] = %lld, expected %lld", name, i,
                            (long long)t->shape[i], (long long)shape[i]);
    if (is_out) return ak__check_out_tensor(ctx, name, t);
    return AK_OK;
}

ak_status ak__dcheck_tensors(const ak_ctx *ctx, const ak_dproblem *p, const ak_decode_tensors *t, int allow_f64,
                             ak_kvview *kv, ak_kvview *pre) {
    if (!t) return ak__fail(ctx, AK_ERR_NULL_POINTER, "tensors is NULL");
    if (t->size != sizeof(ak_decode_tensors))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "tensors.size = %zu, expected %zu (call ak_decode_tensors_init)",
                        t->size, sizeof(ak_decode_tensors));
    const ak_decode_desc *d = &p->desc;
    int64_t B = p->qo ? 1 : p->B;
    int64_t L = p->qo ? t->q.shape[2] : d->q_len;
    if (p->qo && (L < p->total_q || t->o.shape[2] != L))
        return ak__fail(ctx, AK_ERR_BAD_METADATA, "qo_indptr[batch] = %lld; q and o need that many rows (have %lld, %lld)",
                        (long long)p->total_q, (long long)t->q.shape[2], (long long)t->o.shape[2]);
    int64_t qs[4] = {B, p->Hq, L, p->d}, os[4] = {B, p->Hq, L, p->dv}, ls[3] = {B, p->Hq, L};
    ak_status st;
    if ((st = check_io(ctx, "q", &t->q, 4, qs, d->dtype_q, 0, 0)) ||
        (st = check_io(ctx, "o", &t->o, 4, os, d->dtype_o, 1, allow_f64)))
        return st;
    if ((st = ak__kv_check_tensors(ctx, &p->kv, &t->kv, "kv", kv))) return st;
    if (p->has_prefix && (st = ak__kv_check_tensors(ctx, &p->pre, &t->prefix, "prefix", pre))) return st;
    if (d->return_lse && (st = check_io(ctx, "lse", &t->lse, 3, ls, AK_F32, 1, allow_f64))) return st;
    /* outputs may not overlap any input (q, every cache tensor read) nor each other */
    const ak_tensor *ins[9] = {&t->q, &t->kv.k, &t->kv.v, NULL, NULL, NULL, NULL, NULL, NULL};
    const char *names[9] = {"q", "kv.k", "kv.v", "kv.k_scale", "kv.v_scale", "prefix.k", "prefix.v", "prefix.k_scale",
                            "prefix.v_scale"};
    if (p->kv.dtype == AK_I8) {
        ins[3] = &t->kv.k_scale;
        ins[4] = &t->kv.v_scale;
    }
    if (p->has_prefix) {
        ins[5] = &t->prefix.k;
        ins[6] = &t->prefix.v;
        if (p->pre.dtype == AK_I8) {
            ins[7] = &t->prefix.k_scale;
            ins[8] = &t->prefix.v_scale;
        }
    }
    for (int i = 0; i < 9; i++) {
        if (!ins[i]) continue;
        if (ak__ranges_overlap(&t->o, ins[i]))
            return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "o overlaps the memory of %s", names[i]);
        if (d->return_lse && ak__ranges_overlap(&t->lse, ins[i]))
            return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "lse overlaps the memory of %s", names[i]);
    }
    if (d->return_lse && ak__ranges_overlap(&t->lse, &t->o))
        return ak__fail(ctx, AK_ERR_OUTPUT_OVERLAP, "lse overlaps o");
    return ak__check_head_inputs(ctx, d->has_alibi, &t->alibi_slopes, d->has_sinks, &t->sinks, p->B, p->Hq);
}

/* ---- the Lean schedule ---- */

void ak__dplan_free(const ak_ctx *ctx, ak_dplan *dp) {
    if (!dp) return;
    ak__dproblem_free(ctx, &dp->p);
    ak__free(ctx, dp->segs);
    ak__free(ctx, dp->pieces);
    ak__free(ctx, dp->worker_first);
    ak__free(ctx, dp->groups);
    ak__free(ctx, dp);
}

static int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    char *end;
    long v = strtol(e, &end, 10);
    return *end == '\0' && v >= 0 && v < 1000000 ? (int)v : dflt;
}

/* Key range [lo, hi) of a source that the rows of sequences [b0, b1) can see (empty: lo >= hi). */
static void seg_keys(const ak_dproblem *p, int src, int32_t b0, int32_t b1, int64_t *klo, int64_t *khi) {
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int32_t b = b0; b < b1; b++) {
        int64_t off = src ? 0 : p->P, n = src ? p->P : p->kv.len[b];
        int64_t nq = ak__dnq(p, b);
        for (int64_t i = 0; i < nq; i++) {
            int64_t pos, l, h;
            ak__drow_range(p, b, i, &pos, &l, &h);
            l -= off;
            h -= off;
            if (l < 0) l = 0;
            if (h > n - 1) h = n - 1;
            if (l > h) continue;
            if (l < lo) lo = l;
            if (h + 1 > hi) hi = h + 1;
        }
    }
    if (lo >= hi) lo = hi = 0;
    *klo = lo;
    *khi = hi;
}

static ak_status build_schedule(const ak_ctx *ctx, ak_dplan *dp) {
    const ak_dproblem *p = &dp->p;
    const int32_t nh_chunk = (int32_t)(AK_DEC_MAX_ROWS / p->nq_max) < p->g ? (int32_t)(AK_DEC_MAX_ROWS / p->nq_max) : p->g;
    const int32_t hchunks = (p->g + nh_chunk - 1) / nh_chunk;
    const int32_t gstride = p->Hkv * hchunks; /* groups per sequence */
    dp->heads_per_group = nh_chunk;
    dp->n_groups = p->B * gstride;
    int64_t max_segs = (int64_t)dp->n_groups * (p->has_prefix ? 2 : 1);
    dp->groups = (ak_dgroup *)ak__alloc(ctx, sizeof(ak_dgroup) * (size_t)dp->n_groups);
    dp->segs = (ak_dseg *)ak__alloc(ctx, sizeof(ak_dseg) * (size_t)max_segs);
    if (!dp->groups || !dp->segs) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "decode plan (%d groups)", dp->n_groups);
    int32_t ns = 0;
    int64_t T = 0;
    dp->mmax = 1;
    for (int32_t gi = 0; gi < dp->n_groups; gi++) {
        dp->groups[gi].seg_own = dp->groups[gi].seg_pre = -1;
        dp->groups[gi].own_row0 = dp->groups[gi].pre_row0 = 0;
    }
    for (int32_t b = 0; b < p->B; b++)
        for (int32_t hkv = 0; hkv < p->Hkv; hkv++)
            for (int32_t c = 0; c < hchunks; c++) {
                int32_t gi = b * gstride + hkv * hchunks + c;
                ak_dgroup *g = &dp->groups[gi];
                g->b = b;
                g->hkv = hkv;
                g->h0 = hkv * p->g + c * nh_chunk;
                g->nh = p->g - c * nh_chunk < nh_chunk ? p->g - c * nh_chunk : nh_chunk;
                g->n_parts = 0;
                int64_t klo, khi;
                seg_keys(p, 0, b, b + 1, &klo, &khi);
                /* one segment per run of heads_per_seg KV heads (whole groups: hchunks is 1 then) */
                if (khi > klo && ak__dnq(p, b) > 0 && hkv % dp->heads_per_seg == 0) {
                    int32_t nkv = p->Hkv - hkv < dp->heads_per_seg ? p->Hkv - hkv : dp->heads_per_seg;
                    int32_t rows_per_head = (int32_t)(g->nh * ak__dnq(p, b));
                    ak_dseg *s = &dp->segs[ns];
                    memset(s, 0, sizeof *s);
                    s->src = 0;
                    s->b0 = b;
                    s->b1 = b + 1;
                    s->hkv = hkv;
                    s->nkv = nkv;
                    s->h0 = g->h0;
                    s->nh = g->nh;
                    s->M = nkv * rows_per_head;
                    s->klo = klo;
                    s->khi = khi;
                    s->n_tiles = (int32_t)((khi - klo + dp->tile_n - 1) / dp->tile_n);
                    s->g0 = gi;
                    s->ng = nkv;
                    s->gstep = hchunks;
                    for (int32_t k = 0; k < nkv; k++) {
                        dp->groups[gi + k * hchunks].seg_own = ns;
                        dp->groups[gi + k * hchunks].own_row0 = k * rows_per_head;
                    }
                    ns++;
                    T += s->n_tiles;
                }
            }
    if (p->has_prefix) {
        /* sequences batched into tiles of at most AK_DEC_MAX_ROWS rows, per (KV head, head chunk) */
        for (int32_t hkv = 0; hkv < p->Hkv; hkv++)
            for (int32_t c = 0; c < hchunks; c++) {
                int32_t nh = p->g - c * nh_chunk < nh_chunk ? p->g - c * nh_chunk : nh_chunk;
                int32_t b0 = 0;
                while (b0 < p->B) {
                    int32_t b1 = b0, rows = 0;
                    while (b1 < p->B && rows + nh * ak__dnq(p, b1) <= AK_DEC_MAX_ROWS) rows += (int32_t)(nh * ak__dnq(p, b1++));
                    int64_t klo, khi;
                    seg_keys(p, 1, b0, b1, &klo, &khi);
                    if (khi > klo && rows > 0) {
                        ak_dseg *s = &dp->segs[ns];
                        memset(s, 0, sizeof *s);
                        s->src = 1;
                        s->b0 = b0;
                        s->b1 = b1;
                        s->hkv = hkv;
                        s->nkv = 1;
                        s->h0 = hkv * p->g + c * nh_chunk;
                        s->nh = nh;
                        s->M = rows;
                        s->klo = klo;
                        s->khi = khi;
                        s->n_tiles = (int32_t)((khi - klo + dp->tile_n - 1) / dp->tile_n);
                        s->g0 = b0 * gstride + hkv * hchunks + c;
                        s->ng = b1 - b0;
                        s->gstep = gstride;
                        int32_t r0 = 0;
                        for (int32_t b = b0; b < b1; b++) {
                            ak_dgroup *g = &dp->groups[b * gstride + hkv * hchunks + c];
                            g->seg_pre = ns;
                            g->pre_row0 = r0;
                            r0 += (int32_t)(nh * ak__dnq(p, b));
                        }
                        ns++;
                        T += s->n_tiles;
                    }
                    b0 = b1;
                }
            }
    }
    dp->n_segs = ns;
    for (int32_t s = 0; s < ns; s++)
        if (dp->segs[s].M > dp->mmax) dp->mmax = dp->segs[s].M;

    /* stream-K: T tiles in W equal contiguous runs (lengths differ by at most one). Chosen
     * automatically, a run gets at least AK_DEC_MIN_RUN tiles: a split costs a query-tile setup and a
     * merge, worth it only over several tiles (this depends on T only, not on the thread count). */
    int64_t W = dp->workers < T ? dp->workers : T;
    if (p->desc.num_workers == 0 && W > (T + AK_DEC_MIN_RUN - 1) / AK_DEC_MIN_RUN)
        W = (T + AK_DEC_MIN_RUN - 1) / AK_DEC_MIN_RUN;
    if (W < 1) W = 1;
    dp->workers = (int)W;
    int64_t q = T > 0 ? (T + W - 1) / W : 0, high = T > 0 ? T - (q - 1) * W : 0;
    dp->worker_first = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(W + 1));
    dp->pieces = (ak_dpiece *)ak__alloc(ctx, sizeof(ak_dpiece) * (size_t)(W + ns + 1));
    if (!dp->worker_first || !dp->pieces) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "decode plan pieces");
    int32_t np = 0, s = 0;
    int64_t seg_start = 0; /* global index of segs[s]'s first tile */
    for (int64_t w = 0; w < W; w++) {
        dp->worker_first[w] = np;
        int64_t start = w < high ? w * q : high * q + (w - high) * (q - 1);
        int64_t end = start + (w < high ? q : q - 1);
        for (int64_t at = start; at < end;) {
            while (s < ns && seg_start + dp->segs[s].n_tiles <= at) seg_start += dp->segs[s++].n_tiles;
            if (s >= ns) break;
            int64_t stop = seg_start + dp->segs[s].n_tiles < end ? seg_start + dp->segs[s].n_tiles : end;
            ak_dpiece *pc = &dp->pieces[np];
            pc->seg = s;
            pc->t0 = (int32_t)(at - seg_start);
            pc->t1 = (int32_t)(stop - seg_start);
            pc->idx = dp->segs[s].n_pieces++;
            if (pc->idx == 0) dp->segs[s].first_piece = np;
            pc->slot = -1;
            np++;
            at = stop;
        }
    }
    dp->worker_first[W] = np;
    dp->n_pieces = np;
    /* pieces per output group; who writes directly; partial slots for the rest */
    for (int32_t si = 0; si < ns; si++) {
        ak_dseg *sg = &dp->segs[si];
        for (int32_t k = 0; k < sg->ng; k++) dp->groups[sg->g0 + k * sg->gstep].n_parts += sg->n_pieces;
    }
    int64_t off = 0;
    for (int32_t si = 0; si < ns; si++) {
        ak_dseg *sg = &dp->segs[si];
        sg->direct = 1; /* every group it covers has this single piece as its only part */
        for (int32_t k = 0; k < sg->ng; k++) sg->direct &= dp->groups[sg->g0 + k * sg->gstep].n_parts == 1;
        if (sg->direct) continue;
        for (int32_t k = 0; k < sg->n_pieces; k++) {
            dp->pieces[sg->first_piece + k].slot = off;
            off += (int64_t)sg->M * (p->dv + 1);
            off = (off + 15) / 16 * 16;
        }
    }
    dp->part_floats = off;
    return AK_OK;
}

static void explain_decode(ak_plan *pl, const ak_fwd_kernels *kern) {
    const ak_dplan *dp = pl->dec;
    const ak_dproblem *p = &dp->p;
    if (!kern) {
        snprintf(pl->kernel_name, sizeof pl->kernel_name, "ak_ref_decode_f64");
        snprintf(pl->explain, sizeof pl->explain, "chosen: %s (AK_FORCE_REF / ak_ctx_set_force_ref)\n", pl->kernel_name);
        return;
    }
    snprintf(pl->kernel_name, sizeof pl->kernel_name, "ak_k_decode_f32__%s", ak_isa_name(kern->isa));
    int lanes = 0, keys = 0;
    for (int32_t s = 0; s < dp->n_segs; s++) {
        if (dp->segs[s].M / dp->segs[s].nkv < dp->qk_keys_below) keys++;
        else lanes++;
    }
    snprintf(pl->explain, sizeof pl->explain,
             "chosen: %s (micro-kernels %s; ISA cap %s, detected %s; kv %s%s, page_size %d; B=%d Hq=%d Hkv=%d "
             "q_len<=%d d=%d dv=%d)\n"
             "schedule: LeanAttention stream-K: %d segments (%d with keys on the SIMD lanes for Q.K, rows < %d; %d "
             "with queries on the lanes; %d KV heads per segment), tile %d keys, %d runs (%s), %d pieces, %d output "
             "groups of <= %d heads; K/V of a KV head read once per group of query heads\n"
             "rejected: the dense prefill kernel: it pads the query tile to 16 lanes (up to 16x the FLOPs at q_len = 1)\n",
             pl->kernel_name, kern->name, ak_isa_name(pl->ctx->isa), ak_isa_name(ak_isa_detect()),
             ak_dtype_name(p->kv.dtype), p->has_prefix ? " + shared prefix" : "", p->kv.ps, p->B, p->Hq, p->Hkv,
             p->nq_max, p->d, p->dv, dp->n_segs, keys, dp->qk_keys_below, lanes, dp->heads_per_seg, dp->tile_n, dp->workers,
             p->desc.num_workers ? "from the descriptor" : pl->ctx->deterministic ? "deterministic: fixed count" : "one per thread",
             dp->n_pieces, dp->n_groups, dp->heads_per_group);
}

ak_status ak_decode_plan_create(ak_ctx *ctx, const ak_decode_desc *desc, ak_plan **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    ak_plan *pl = (ak_plan *)ak__alloc(ctx, sizeof *pl);
    ak_dplan *dp = (ak_dplan *)ak__alloc(ctx, sizeof *dp);
    if (!pl || !dp) {
        ak__free(ctx, pl);
        ak__free(ctx, dp);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "plan");
    }
    memset(pl, 0, sizeof *pl);
    memset(dp, 0, sizeof *dp);
    pl->ctx = ctx;
    pl->dec = dp;
    ak_status st = ak__dproblem_init(ctx, desc, 0, &dp->p);
    if (st != AK_OK) {
        ak_plan_destroy(pl);
        return st;
    }
    const ak_dproblem *p = &dp->p;
    pl->n_threads = ctx->n_threads;
    pl->kern = ctx->force_ref ? NULL : ak__kernel_for(ctx->isa);
    dp->tile_n = desc->tile_n ? desc->tile_n : (p->d > 128 || p->dv > 128 ? 128 : 256);
    dp->tile_n = env_int("AK_DECODE_TILE_N", dp->tile_n);
    if (dp->tile_n < 1) dp->tile_n = 1;
    dp->workers = desc->num_workers ? desc->num_workers : ctx->deterministic ? AK_DEC_DET_WORKERS : ctx->n_threads;
    const char *e = getenv("AK_DECODE_QK");
    dp->qk_keys_below = AK_DEC_KEYS_BELOW;
    if (e && strcmp(e, "keys") == 0) dp->qk_keys_below = AK_DEC_MAX_ROWS + 1;
    if (e && strcmp(e, "lanes") == 0) dp->qk_keys_below = 0;
    /* Token-major pages (NHD) hold the K/V rows of all heads of a token side by side: a segment then
     * takes every KV head of its sequence (as many as fit 128 rows), so that a tile reads pages
     * sequentially instead of 256 B out of every token's row (the hardware prefetcher then streams). */
    dp->heads_per_seg = 1;
    if (pl->kern && pl->kern->dec_qk && p->kv.ps > 0 && p->kv.layout == AK_KV_NHD && p->Hkv > 1 &&
        (int64_t)p->g * p->nq_max < dp->qk_keys_below) {
        int32_t per = (int32_t)(AK_DEC_MAX_ROWS / (p->g * p->nq_max));
        per = env_int("AK_DECODE_HEADS_PER_SEG", per); /* experiments: 1 = one KV head per segment */
        if (per < 1) per = 1;
        dp->heads_per_seg = per < p->Hkv ? per : p->Hkv;
    }
    if (dp->heads_per_seg > 1 && desc->tile_n == 0 && getenv("AK_DECODE_TILE_N") == NULL) {
        /* a tile reads every head's rows: keep its K (or V) within 128 KiB of L2 */
        int t = 256 / dp->heads_per_seg;
        dp->tile_n = t < 64 ? 64 : t;
    }
    if (pl->kern) {
        st = build_schedule(ctx, dp);
        if (st != AK_OK) {
            ak_plan_destroy(pl);
            return st;
        }
        dp->ws_per_thread = ak__dec_thread_ws(dp);
    }
    explain_decode(pl, pl->kern);
    if (ctx->verbose) fprintf(stderr, "attnkit: decode plan\n%s", pl->explain);
    *out = pl;
    return AK_OK;
}

size_t ak__dplan_workspace(const ak_plan *pl) {
    const ak_dplan *dp = pl->dec;
    if (!pl->kern) return 0;
    size_t part = ((size_t)dp->part_floats * sizeof(float) + 63) / 64 * 64;
    size_t cnt = ((size_t)dp->n_groups * sizeof(int) + 63) / 64 * 64;
    return AK_CACHELINE + part + cnt + (size_t)pl->n_threads * dp->ws_per_thread;
}

/* Rows past qo_indptr[B]: O = 0, LSE = -inf. */
static void zero_padding(const ak_dproblem *p, const ak_decode_tensors *t) {
    if (!p->qo) return;
    for (int64_t h = 0; h < p->Hq; h++)
        for (int64_t i = p->total_q; i < t->o.shape[2]; i++) {
            int64_t ob = h * t->o.stride[1] + i * t->o.stride[2];
            for (int64_t c = 0; c < p->dv; c++) ak__store(t->o.data, t->o.dtype, ob + c * t->o.stride[3], 0.0);
            if (p->desc.return_lse)
                ak__store(t->lse.data, t->lse.dtype, h * t->lse.stride[1] + i * t->lse.stride[2], -INFINITY);
        }
}

ak_status ak_decode_run(ak_plan *pl, const ak_decode_tensors *t, void *workspace, size_t ws_size) {
    if (!pl) return AK_ERR_NULL_POINTER;
    const ak_ctx *ctx = pl->ctx;
    ak__clear_error(ctx);
    if (!pl->dec) return ak__fail(ctx, AK_ERR_PLAN_MISMATCH, "this is a dense attention plan: run it with ak_attention_run");
    const ak_dplan *dp = pl->dec;
    ak_kvview kv, pre;
    memset(&pre, 0, sizeof pre);
    ak_status st = ak__dcheck_tensors(ctx, &dp->p, t, 0, &kv, &pre);
    if (st != AK_OK) return st;
    if (!pl->kern) {
        zero_padding(&dp->p, t);
        return ak__ref_decode(ctx, &dp->p, t, &kv, &pre);
    }
    size_t need = ak_plan_workspace_size(pl);
    void *own = NULL;
    if (workspace == NULL) {
        own = ak__alloc(ctx, need);
        if (!own) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "workspace of %zu bytes", need);
        workspace = own;
    } else if (ws_size < need) {
        return ak__fail(ctx, AK_ERR_WORKSPACE_TOO_SMALL, "workspace has %zu bytes, the plan needs %zu", ws_size, need);
    }
    zero_padding(&dp->p, t);
    st = ak__dec_execute(dp, pl->kern, pl->n_threads, t, &kv, &pre, workspace);
    ak__free(ctx, own);
    return st;
}

ak_status ak_decode(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t) {
    ak_plan *pl = NULL;
    ak_status st = ak_decode_plan_create(ctx, desc, &pl);
    if (st != AK_OK) return st;
    st = ak_decode_run(pl, t, NULL, 0);
    ak_plan_destroy(pl);
    return st;
}

ak_status ak_decode_ref(ak_ctx *ctx, const ak_decode_desc *desc, const ak_decode_tensors *t) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    ak_dproblem p;
    ak_status st = ak__dproblem_init(ctx, desc, 1, &p);
    if (st != AK_OK) return st;
    ak_kvview kv, pre;
    memset(&pre, 0, sizeof pre);
    st = ak__dcheck_tensors(ctx, &p, t, 1, &kv, &pre);
    if (st == AK_OK) {
        zero_padding(&p, t);
        st = ak__ref_decode(ctx, &p, t, &kv, &pre);
    }
    ak__dproblem_free(ctx, &p);
    return st;
}
