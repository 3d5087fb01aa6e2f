/* harness.c — see harness.h. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void problem_opts_default(problem_opts *po) {
    memset(po, 0, sizeof *po);
    po->lay_q = po->lay_k = po->lay_v = po->lay_o = po->lay_lse = LAY_CONTIG;
    po->lay_alibi = po->lay_sinks = LAY_CONTIG;
    po->amp_qk = 1.0;
    po->amp_v = 1.0;
    po->sink_lo = -2.0;
    po->sink_hi = 2.0;
}

static int is_ragged(const problem *p) { return p->d.cu_seqlens_q != NULL; }

/* Sequence b's used key range in the K/V tensors' L dim: [*k0, *k0 + *lk). */
static void seq_keys(const problem *p, int64_t b, int64_t *k0, int64_t *lk) {
    if (is_ragged(p)) {
        *k0 = p->cu_k[b];
        *lk = p->cu_k[b + 1] - p->cu_k[b];
    } else {
        *k0 = 0;
        *lk = p->Lkt;
    }
    if (p->d.seqused_k)
        *lk = p->used[b];
}

/* Fill the logical elements of every real row / used key with random values; padding stays NaN. */
void problem_refill(problem *p, const problem_opts *po, rng *r) {
    const ak_attn_desc *d = &p->d;
    int64_t hd = d->head_dim, nq = is_ragged(p) ? p->cu_q[d->batch] : p->Lqt;
    for (int64_t tb = 0; tb < p->Bt; tb++)
        for (int64_t h = 0; h < d->num_heads_q; h++)
            for (int64_t l = 0; l < nq; l++)
                for (int64_t c = 0; c < hd; c++)
                    ten_set4(&p->q.t, tb, h, l, c, rng_range(r, -po->amp_qk, po->amp_qk));
    for (int64_t b = 0; b < d->batch; b++) {
        int64_t k0, lk, tb = is_ragged(p) ? 0 : b;
        seq_keys(p, b, &k0, &lk);
        for (int64_t h = 0; h < d->num_heads_kv; h++)
            for (int64_t l = k0; l < k0 + lk; l++) {
                for (int64_t c = 0; c < hd; c++)
                    ten_set4(&p->k.t, tb, h, l, c, rng_range(r, -po->amp_qk, po->amp_qk));
                for (int64_t c = 0; c < p->dv; c++)
                    ten_set4(&p->v.t, tb, h, l, c, rng_range(r, -po->amp_v, po->amp_v));
            }
    }
    if (d->has_alibi) { /* slopes in [0, 1), like the standard 2^(-8h/H) ones */
        const ak_tensor *a = &p->alibi.t;
        for (int64_t b = 0; b < (a->ndim == 2 ? a->shape[0] : 1); b++)
            for (int64_t h = 0; h < d->num_heads_q; h++) {
                int64_t idx2[2] = {b, h}, idx1[1] = {h};
                ten_set(a, a->ndim == 2 ? idx2 : idx1, rng_range(r, 0.0, 1.0));
            }
    }
    if (d->has_sinks)
        for (int64_t h = 0; h < d->num_heads_q; h++) {
            int64_t idx[1] = {h};
            ten_set(&p->sinks.t, idx, rng_range(r, po->sink_lo, po->sink_hi));
        }
}

int problem_create(problem *p, const ak_attn_desc *d, int64_t Lqt, int64_t Lkt,
                   const problem_opts *po, rng *r) {
    memset(p, 0, sizeof *p);
    p->d = *d;
    if (d->batch > PB_MAXB && d->cu_seqlens_q)
        return -1;
    if (d->cu_seqlens_q) {
        memcpy(p->cu_q, d->cu_seqlens_q, (size_t)(d->batch + 1) * sizeof(int32_t));
        memcpy(p->cu_k, d->cu_seqlens_k, (size_t)(d->batch + 1) * sizeof(int32_t));
        p->d.cu_seqlens_q = p->cu_q;
        p->d.cu_seqlens_k = p->cu_k;
        p->Bt = 1, p->Lqt = Lqt, p->Lkt = Lkt;
    } else {
        p->Bt = d->batch, p->Lqt = d->seqlen_q, p->Lkt = d->seqlen_k;
    }
    if (d->seqused_k) {
        memcpy(p->used, d->seqused_k, (size_t)d->batch * sizeof(int32_t));
        p->d.seqused_k = p->used;
    }
    p->dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    int64_t Hq = d->num_heads_q, Hkv = d->num_heads_kv;
    int64_t sq[4] = {p->Bt, Hq, p->Lqt, d->head_dim}, sk[4] = {p->Bt, Hkv, p->Lkt, d->head_dim};
    int64_t sv[4] = {p->Bt, Hkv, p->Lkt, p->dv}, so[4] = {p->Bt, Hq, p->Lqt, p->dv};
    int64_t sl[3] = {p->Bt, Hq, p->Lqt}, sa[2] = {d->batch, Hq}, sh[1] = {Hq};
    int rc = 0;
    rc |= tbuf_make(&p->q, d->dtype_q, 4, sq, po->lay_q, r);
    rc |= tbuf_make(&p->k, d->dtype_kv, 4, sk, po->lay_k, r);
    rc |= tbuf_make(&p->v, d->dtype_kv, 4, sv, po->lay_v, r);
    rc |= tbuf_make(&p->o, d->dtype_o, 4, so, po->lay_o, r);
    if (d->return_lse)
        rc |= tbuf_make(&p->lse, AK_F32, 3, sl, po->lay_lse, r);
    if (d->has_alibi)
        rc |= po->alibi_2d ? tbuf_make(&p->alibi, AK_F32, 2, sa, po->lay_alibi, r)
                           : tbuf_make(&p->alibi, AK_F32, 1, sh, po->lay_alibi, r);
    if (d->has_sinks)
        rc |= tbuf_make(&p->sinks, AK_F32, 1, sh, po->lay_sinks, r);
    if (rc)
        return -1;
    problem_refill(p, po, r);
    return 0;
}

void problem_destroy(problem *p) {
    tbuf_free(&p->q), tbuf_free(&p->k), tbuf_free(&p->v), tbuf_free(&p->o);
    tbuf_free(&p->lse), tbuf_free(&p->alibi), tbuf_free(&p->sinks);
}

ak_attn_tensors problem_tensors(const problem *p, const tbuf *o, const tbuf *lse) {
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = p->q.t, t.k = p->k.t, t.v = p->v.t, t.o = o->t;
    if (lse)
        t.lse = lse->t;
    if (p->d.has_alibi)
        t.alibi_slopes = p->alibi.t;
    if (p->d.has_sinks)
        t.sinks = p->sinks.t;
    return t;
}

ak_status run_ref64(ak_ctx *ctx, const problem *p, naive_out *ref, const naive_out *nvis_from) {
    ak_attn_desc d = p->d;
    int64_t Hq = d.num_heads_q;
    ak_attn_tensors t = problem_tensors(p, &p->o, NULL);
    d.dtype_o = AK_F64;
    d.return_lse = 1;
    t.o = ak_tensor_4d(ref->o, AK_F64, p->Bt, Hq, p->Lqt, p->dv);
    t.lse = ak_tensor_3d(ref->lse, AK_F64, p->Bt, Hq, p->Lqt);
    for (int64_t r = 0; r < ref->n_rows; r++) { /* poison: every element must be written */
        ref->lse[r] = NAN;
        for (int64_t c = 0; c < ref->dv; c++)
            ref->o[r * ref->dv + c] = NAN;
    }
    ak_status st = ak_attention_ref(ctx, &d, &t);
    if (nvis_from)
        memcpy(ref->nvis, nvis_from->nvis, (size_t)ref->n_rows * sizeof(int32_t));
    return st;
}

/* |a - b| with equal infinities at distance 0 and NaN at infinite distance. */
static double dist(double a, double b) {
    if (isnan(a) || isnan(b))
        return INFINITY;
    if (a == b)
        return 0.0;
    return fabs(a - b);
}

int check_oracle(const naive_out *ref, const naive_out *n64, char *msg, size_t msglen) {
    double emax = 0, omax = 0, lerr = 0, lmax = 0;
    int64_t worst = -1;
    for (int64_t r = 0; r < ref->n_rows; r++) {
        for (int64_t c = 0; c < ref->dv; c++) {
            double e = dist(ref->o[r * ref->dv + c], n64->o[r * ref->dv + c]);
            if (e > emax || (isinf(e) && worst < 0))
                emax = e, worst = r;
            omax = fmax(omax, fabs(n64->o[r * ref->dv + c]));
        }
        if (isinf(n64->lse[r]) != isinf(ref->lse[r]) || isnan(ref->lse[r])) {
            snprintf(msg, msglen, "oracle: row %lld LSE ref=%g, independent double ref=%g",
                     (long long)r, ref->lse[r], n64->lse[r]);
            return 0;
        }
        if (isfinite(n64->lse[r])) {
            lerr = fmax(lerr, dist(ref->lse[r], n64->lse[r]));
            lmax = fmax(lmax, fabs(n64->lse[r]));
        }
    }
    if (!(emax <= 1e-6 * fmax(1.0, omax)) || !(lerr <= 1e-6 * fmax(1.0, lmax))) {
        snprintf(msg, msglen,
                 "oracle: ak_attention_ref differs from the independent double reference: "
                 "max|dO| = %.3g (row %lld), max|dLSE| = %.3g",
                 emax, (long long)worst, lerr);
        return 0;
    }
    return 1;
}

/* The floor of the rule for O (see harness.h). */
static double o_floor(ak_dtype dt, double max_ref) {
    if (dt == AK_F32)
        return 1e-6 * fmax(1.0, max_ref);
    return 2.0 * tu_ulp(dt, max_ref);
}

int check_rule(const problem *p, const tbuf *o, const tbuf *lse, const naive_out *ref,
               const naive_out *naive, char *msg, size_t msglen) {
    int64_t nr = ref->n_rows, dv = ref->dv;
    double *oo = (double *)malloc((size_t)(nr * dv + 1) * sizeof(double));
    double *ll = (double *)malloc((size_t)(nr + 1) * sizeof(double));
    double eo = 0, en = 0, omax = 0, le = 0, ln = 0, lmax = 0;
    int64_t worst = -1, lworst = -1;
    int ok = 1;
    if (!oo || !ll) {
        snprintf(msg, msglen, "out of memory in the test");
        free(oo), free(ll);
        return 0;
    }
    tbuf_to_f64(o, oo);
    if (lse)
        tbuf_to_f64(lse, ll);
    for (int64_t r = 0; r < nr && ok; r++) {
        for (int64_t c = 0; c < dv; c++) {
            double x = oo[r * dv + c], e = dist(x, ref->o[r * dv + c]);
            if (!isfinite(x)) {
                snprintf(msg, msglen, "O row %lld col %lld is %g (unwritten or overflow)",
                         (long long)r, (long long)c, x);
                ok = 0;
                break;
            }
            if (ref->nvis[r] <= 0 && x != 0.0) {
                snprintf(msg, msglen, "O row %lld (%s) col %lld = %g, expected exactly 0",
                         (long long)r, ref->nvis[r] < 0 ? "padding row" : "fully masked",
                         (long long)c, x);
                ok = 0;
                break;
            }
            if (e > eo)
                eo = e, worst = r;
            en = fmax(en, dist(naive->o[r * dv + c], ref->o[r * dv + c]));
            omax = fmax(omax, fabs(ref->o[r * dv + c]));
        }
        if (!ok || !lse)
            continue;
        double x = ll[r], y = ref->lse[r];
        if (isnan(x) || (y == -INFINITY) != (x == -INFINITY) || isinf(x) != isinf(y)) {
            snprintf(msg, msglen, "LSE row %lld = %g, reference %g (%s)", (long long)r, x, y,
                     ref->nvis[r] < 0 ? "padding row" : ref->nvis[r] == 0 ? "fully masked" : "");
            ok = 0;
            break;
        }
        if (isfinite(y)) {
            double e = dist(x, y);
            if (e > le)
                le = e, lworst = r;
            ln = fmax(ln, dist(naive->lse[r], y));
            lmax = fmax(lmax, fabs(y));
        }
    }
    double of = o_floor(p->d.dtype_o, omax), lf = 1e-5 * fmax(1.0, lmax);
    if (ok && !(eo <= 2.0 * en + of)) {
        snprintf(msg, msglen,
                 "O error %.3g > 2 * naive error %.3g + floor %.3g (worst row %lld, max|O| %.3g)",
                 eo, en, of, (long long)worst, omax);
        ok = 0;
    }
    if (ok && lse && !(le <= 2.0 * ln + lf)) {
        snprintf(msg, msglen, "LSE error %.3g > 2 * naive error %.3g + floor %.3g (worst row %lld)",
                 le, ln, lf, (long long)lworst);
        ok = 0;
    }
    if (ok) /* a summary for verbose output */
        snprintf(msg, msglen, "O err %.3g (naive %.3g, floor %.3g)  LSE err %.3g (naive %.3g)", eo,
                 en, of, le, ln);
    if (ok && !tbuf_outside_untouched(o)) {
        snprintf(msg, msglen, "O: an element outside the view (padding/guard) was written");
        ok = 0;
    }
    if (ok && lse && !tbuf_outside_untouched(lse)) {
        snprintf(msg, msglen, "LSE: an element outside the view (padding/guard) was written");
        ok = 0;
    }
    free(oo), free(ll);
    return ok;
}

void problem_repro(const problem *p, char *buf, size_t n) {
    const ak_attn_desc *d = &p->d;
    size_t k = 0;
#define APP(...) (k += (size_t)snprintf(buf + k, k < n ? n - k : 0, __VA_ARGS__))
    APP("b%d_h%d_hkv%d_q%d_k%d_d%d", d->batch, d->num_heads_q, d->num_heads_kv, d->seqlen_q,
        d->seqlen_k, d->head_dim);
    if (p->dv != d->head_dim)
        APP("_dv%lld", (long long)p->dv);
    if (d->causal)
        APP("_causal");
    if (d->window_left >= 0 || d->window_right >= 0)
        APP("_win%d,%d", d->window_left, d->window_right);
    if (d->softcap > 0)
        APP("_cap%g", d->softcap);
    if (d->has_alibi)
        APP("_alibi%s", p->alibi.t.ndim == 2 ? "2d" : "");
    if (d->has_sinks)
        APP("_sinks");
    if (d->return_lse)
        APP("_lse");
    if (!isnan(d->scale))
        APP("_scale%g", d->scale);
    if (d->dtype_q == d->dtype_kv && d->dtype_kv == d->dtype_o)
        APP("_%s", tu_dtype_short(d->dtype_q));
    else
        APP("_q%s_kv%s_o%s", tu_dtype_short(d->dtype_q), tu_dtype_short(d->dtype_kv),
            tu_dtype_short(d->dtype_o));
    if (d->cu_seqlens_q) {
        APP(" ragged cu_q=");
        for (int b = 0; b <= d->batch; b++)
            APP("%s%d", b ? "," : "", p->cu_q[b]);
        APP(" cu_k=");
        for (int b = 0; b <= d->batch; b++)
            APP("%s%d", b ? "," : "", p->cu_k[b]);
        if (d->seqused_k) {
            APP(" seqused_k=");
            for (int b = 0; b < d->batch; b++)
                APP("%s%d", b ? "," : "", p->used[b]);
        }
        APP(" total_q=%lld total_k=%lld", (long long)p->Lqt, (long long)p->Lkt);
    }
    const tbuf *tb[4] = {&p->q, &p->k, &p->v, &p->o};
    const char *names = "qkvo";
    for (int i = 0; i < 4; i++)
        APP(" %c.stride=%lld,%lld,%lld,%lld", names[i], (long long)tb[i]->t.stride[0],
            (long long)tb[i]->t.stride[1], (long long)tb[i]->t.stride[2],
            (long long)tb[i]->t.stride[3]);
#undef APP
}
