/*
 * decode.c — the inputs of decode problems (decode_...): seeded random Q, NaN-poisoned O and LSE,
 * and the KV caches (the per-sequence one and the optional shared prefix), built like a serving
 * engine builds them: buffers (contiguous, or page pools in NHD / HND) plus metadata (seqlens, a
 * block table, or FlashInfer CSR), filled through ak_kv_append from random f32 rows (the library
 * converts or quantises them to the cache dtype), pages handed out in a seeded shuffled order so
 * that consecutive pages of a sequence are not adjacent in memory.
 *
 * Lengths: sequence b holds k keys, or with `ragged` lo + floor((k - lo) * b / (B - 1)) keys
 * (lo = floor(k / 16) unless given as ragged<lo>; B = 1: k). The prefix has `prefix` keys.
 *
 * For `check`: one (sequence, KV head) as a problem of its own (views into the same buffers) for
 * ak_decode_ref, and the K or V rows of that pair gathered to dense f32 for the naive baseline.
 * For `bench`: the KV bytes a call must read and the visible (row, key) pairs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Rows of random data are appended in chunks of about this many f32 elements (K + V). */
#define FILL_CHUNK_ELEMS (4L << 20)

/* Keys of sequence b's own cache (the formula of the header comment; linear problems' ragged lengths too). */
int64_t ragged_len(const problem *p, int b) {
    if (!p->ragged || p->B == 1) return p->Lk;
    int64_t lo = p->ragged_lo >= 0 ? p->ragged_lo : p->Lk / 16;
    return lo + (p->Lk - lo) * (int64_t)b / (p->B - 1);
}

int64_t dinputs_len(const dinputs *in, int b) { return in->kv.lens[b]; }

/* Element (i0, i1, i2) of the cache tensors of token `tok` of sequence b, KV head hk (my own page map). */
static void locate(const problem *p, const dcache *c, int b, int hk, int64_t tok, int64_t idx[3]) {
    if (p->page == 0) {
        idx[0] = b; idx[1] = hk; idx[2] = tok;
        return;
    }
    int64_t page = c->table[(int64_t)b * c->max_pages + tok / p->page], slot = tok % p->page;
    idx[0] = page;
    idx[1] = p->hnd ? hk : slot;
    idx[2] = p->hnd ? slot : hk;
}

/* Two uniform values in [-sqrt(3), sqrt(3)) (unit variance) from one draw. */
static void random_pair(uint64_t *rng, float *a, float *b) {
    uint64_t z = rng_next(rng);
    *a = 1.7320508f * ((float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
    *b = 1.7320508f * ((float)((z >> 16) & 0xFFFFFFu) * (2.0f / 16777216.0f) - 1.0f);
}

static void random_rows(float *x, size_t n, uint64_t *rng) {
    size_t i = 0;
    for (; i + 1 < n; i += 2) random_pair(rng, &x[i], &x[i + 1]);
    if (i < n) {
        float dummy;
        random_pair(rng, &x[i], &dummy);
    }
}

static void cache_free(dcache *c) {
    free(c->lens);
    free(c->table);
    free(c->indptr);
    free(c->indices);
    free(c->last);
    free(c->k);
    free(c->v);
    free(c->ks);
    free(c->vs);
    memset(c, 0, sizeof(*c));
}

/* NaN in every float / half element (i8: -1) and every scale, so that a key read past a sequence's
 * length (tail of its last page, capacity past its length) shows in O. */
static void cache_poison(dcache *c) {
    if (!c->k) return;
    size_t es = ak_dtype_size(c->desc.dtype);
    int64_t rows = c->desc.page_size ? (int64_t)c->desc.num_pages * c->desc.page_size : (int64_t)c->B * c->desc.capacity;
    rows *= c->desc.num_heads_kv;
    memset(c->k, 0xff, (size_t)rows * (size_t)c->desc.head_dim * es);
    memset(c->v, 0xff, (size_t)rows * (size_t)c->desc.head_dim_v * es);
    if (c->ks) memset(c->ks, 0xff, (size_t)rows * sizeof(float));
    if (c->vs) memset(c->vs, 0xff, (size_t)rows * sizeof(float));
}

/* Append lens[b] random rows to every sequence of c through ak_kv_append (block table vocabulary). */
static int cache_fill(ak_ctx *ctx, const problem *p, dcache *c, uint64_t *rng, char *err, size_t errlen) {
    int64_t maxlen = 0;
    for (int b = 0; b < c->B; b++)
        if (c->lens[b] > maxlen) maxlen = c->lens[b];
    if (maxlen == 0) return 0;
    int64_t per_token = (int64_t)c->B * p->Hkv * (p->d + p->dv);
    int64_t chunk = FILL_CHUNK_ELEMS / per_token;
    if (chunk < 1) chunk = 1;
    if (chunk > maxlen) chunk = maxlen;
    size_t nk = (size_t)c->B * (size_t)p->Hkv * (size_t)chunk;
    float *kn = xalloc(nk * (size_t)p->d * sizeof(float)), *vn = xalloc(nk * (size_t)p->dv * sizeof(float));
    int32_t *filled = calloc((size_t)c->B, sizeof(int32_t)), *n_new = calloc((size_t)c->B, sizeof(int32_t));
    int rc = -1;
    if (!kn || !vn || !filled || !n_new) {
        snprintf(err, errlen, "out of memory filling the KV cache");
        goto done;
    }
    ak_tensor kt = ak_tensor_4d(kn, AK_F32, c->B, p->Hkv, chunk, p->d);
    ak_tensor vt = ak_tensor_4d(vn, AK_F32, c->B, p->Hkv, chunk, p->dv);
    ak_kv_desc fd = c->desc;   /* the cache before each append: block table vocabulary */
    fd.kv_indptr = fd.kv_indices = fd.kv_last_page_len = NULL;
    if (p->page) {
        fd.block_table = c->table;
        fd.max_pages_per_seq = c->max_pages;
    }
    fd.seqlens = filled;
    for (;;) {
        int any = 0;
        for (int b = 0; b < c->B; b++) {
            int64_t n = c->lens[b] - filled[b];
            n_new[b] = (int32_t)(n < chunk ? n : chunk);
            any |= n_new[b] > 0;
            for (int h = 0; h < p->Hkv; h++) {
                size_t row = ((size_t)b * (size_t)p->Hkv + (size_t)h) * (size_t)chunk;
                random_rows(kn + row * (size_t)p->d, (size_t)n_new[b] * (size_t)p->d, rng);
                random_rows(vn + row * (size_t)p->dv, (size_t)n_new[b] * (size_t)p->dv, rng);
            }
        }
        if (!any) break;
        ak_status st = ak_kv_append(ctx, &fd, &c->t, &kt, &vt, n_new);
        if (st != AK_OK) {
            snprintf(err, errlen, "ak_kv_append: %s", error_text(ctx, st));
            goto done;
        }
        for (int b = 0; b < c->B; b++) filled[b] += n_new[b];
    }
    rc = 0;
done:
    free(kn);
    free(vn);
    free(filled);
    free(n_new);
    return rc;
}

/*
 * Buffers and metadata of a cache of B sequences with lengths lens (copied); not yet filled.
 * Paged: exactly the pages the lengths need, in a shuffled order (seeded); block_table entries past a
 * sequence's pages are -1 (never read); CSR arrays derived with ak_kv_block_table_to_csr.
 */
static int cache_create(ak_ctx *ctx, const problem *p, int B, const int64_t *lens, uint64_t seed, dcache *c,
                        char *err, size_t errlen) {
    memset(c, 0, sizeof(*c));
    c->B = B;
    ak_kv_desc *kd = &c->desc;
    ak_kv_desc_init(kd);
    kd->batch = B;
    kd->num_heads_kv = p->Hkv;
    kd->head_dim = p->d;
    kd->head_dim_v = p->dv;
    kd->dtype = p->dt_kv;
    ak_kv_tensors_init(&c->t);
    c->lens = malloc(sizeof(int32_t) * (size_t)B);
    if (!c->lens) goto oom;
    int64_t maxlen = 0, pages = 0, maxp = 0;
    for (int b = 0; b < B; b++) {
        c->lens[b] = (int32_t)lens[b];
        if (lens[b] > maxlen) maxlen = lens[b];
        if (p->page) {
            int64_t np = (lens[b] + p->page - 1) / p->page;
            pages += np;
            if (np > maxp) maxp = np;
        }
    }
    /* sizes: refuse what cannot be allocated before any product can overflow */
    double rows = p->page ? (double)(pages > 0 ? pages : 1) * p->page : (double)B * (double)(maxlen > 0 ? maxlen : 1);
    double bytes = rows * p->Hkv * ((double)(p->d + p->dv) * (double)ak_dtype_size(p->dt_kv) + 8.0);
    if (bytes > 1e14 || pages > 2147483647LL || (double)B * (double)maxp > 1e10) {
        snprintf(err, errlen, "KV cache too large (%.3g bytes)", bytes);
        cache_free(c);
        return -1;
    }
    size_t es = ak_dtype_size(p->dt_kv), nrows = (size_t)rows * (size_t)p->Hkv;
    c->k = xalloc(nrows * (size_t)p->d * es);
    c->v = xalloc(nrows * (size_t)p->dv * es);
    if (!c->k || !c->v) goto oom;
    if (p->dt_kv == AK_I8) {
        c->ks = xalloc(nrows * sizeof(float));
        c->vs = xalloc(nrows * sizeof(float));
        if (!c->ks || !c->vs) goto oom;
    }
    if (p->page == 0) {
        int64_t cap = maxlen > 0 ? maxlen : 1;
        kd->capacity = (int32_t)cap;
        kd->seqlens = c->lens;
        c->t.k = ak_tensor_4d(c->k, p->dt_kv, B, p->Hkv, cap, p->d);
        c->t.v = ak_tensor_4d(c->v, p->dt_kv, B, p->Hkv, cap, p->dv);
        if (c->ks) {
            c->t.k_scale = ak_tensor_3d(c->ks, AK_F32, B, p->Hkv, cap);
            c->t.v_scale = ak_tensor_3d(c->vs, AK_F32, B, p->Hkv, cap);
        }
    } else {
        int64_t np = pages > 0 ? pages : 1;
        c->n_pages = (int32_t)pages;
        c->max_pages = (int32_t)(maxp > 0 ? maxp : 1);
        kd->page_size = p->page;
        kd->num_pages = (int32_t)np;
        kd->layout = p->hnd ? AK_KV_HND : AK_KV_NHD;
        int64_t d1 = p->hnd ? p->Hkv : p->page, d2 = p->hnd ? p->page : p->Hkv;
        c->t.k = ak_tensor_4d(c->k, p->dt_kv, np, d1, d2, p->d);
        c->t.v = ak_tensor_4d(c->v, p->dt_kv, np, d1, d2, p->dv);
        if (c->ks) {
            c->t.k_scale = ak_tensor_3d(c->ks, AK_F32, np, d1, d2);
            c->t.v_scale = ak_tensor_3d(c->vs, AK_F32, np, d1, d2);
        }
        /* a seeded permutation of the page ids (Fisher-Yates), handed out in sequence order */
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)np);
        c->table = malloc(sizeof(int32_t) * (size_t)B * (size_t)c->max_pages);
        if (!perm || !c->table) { free(perm); goto oom; }
        uint64_t rng = seed ^ 0x9A6E5ull;
        for (int64_t i = 0; i < np; i++) perm[i] = (int32_t)i;
        for (int64_t i = np - 1; i > 0; i--) {
            int64_t j = (int64_t)(rng_next(&rng) % (uint64_t)(i + 1));
            int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        int64_t at = 0;
        for (int b = 0; b < B; b++)
            for (int64_t i = 0; i < c->max_pages; i++)
                c->table[(int64_t)b * c->max_pages + i] = i < (lens[b] + p->page - 1) / p->page ? perm[at++] : -1;
        free(perm);
        kd->seqlens = c->lens;
        kd->block_table = c->table;
        kd->max_pages_per_seq = c->max_pages;
        if (p->csr) {
            c->indptr = malloc(sizeof(int32_t) * ((size_t)B + 1));
            c->indices = malloc(sizeof(int32_t) * (size_t)np);
            c->last = malloc(sizeof(int32_t) * (size_t)B);
            if (!c->indptr || !c->indices || !c->last) goto oom;
            ak_status st = ak_kv_block_table_to_csr(ctx, B, p->page, (int32_t)np, c->lens, c->table, c->max_pages,
                                                    c->indptr, c->indices, (int32_t)np, c->last);
            if (st != AK_OK) {
                snprintf(err, errlen, "ak_kv_block_table_to_csr: %s", error_text(ctx, st));
                cache_free(c);
                return -1;
            }
            kd->seqlens = kd->block_table = NULL;
            kd->max_pages_per_seq = 0;
            kd->kv_indptr = c->indptr;
            kd->kv_indices = c->indices;
            kd->kv_last_page_len = c->last;
        }
    }
    return 0;
oom:
    cache_free(c);
    snprintf(err, errlen, "out of memory allocating the KV cache");
    return -1;
}

void dinputs_free(dinputs *in) {
    ak_plan_destroy(in->plan);
    cache_free(&in->kv);
    cache_free(&in->pre);
    free(in->q);
    free(in->o);
    free(in->lse);
    free(in->slopes);
    free(in->sinks);
    memset(in, 0, sizeof(*in));
}

void dinputs_poison(dinputs *in) {
    memset(in->o, 0xff, in->o_bytes);
    memset(in->lse, 0xff, in->lse_bytes);
}

static void fill_ddesc(dinputs *in) {
    const problem *p = &in->p;
    ak_decode_desc *d = &in->desc;
    ak_decode_desc_init(d);
    d->num_heads_q = p->Hq;
    d->q_len = p->Lq;
    d->dtype_q = p->dt_q;
    d->dtype_o = p->dt_o;
    d->scale = p->scale;
    d->causal = p->causal;
    d->window_left = p->win_left;
    d->window_right = p->win_right;
    d->softcap = p->softcap;
    d->has_alibi = p->alibi;
    d->has_sinks = p->sinks;
    d->return_lse = p->lse;
    d->kv = in->kv.desc;
    d->prefix = p->prefix ? &in->pre.desc : NULL;
    d->tile_n = p->tile;
    d->num_workers = p->workers;
}

/*
 * Everything for decode problem p: caches and metadata, then the plan (ak_decode_plan_create on ctx:
 * a bad shape fails here, before the slow fill), then the random K/V through ak_kv_append.
 * 0 = ok; else -1 with a message in err (in is freed).
 */
int dinputs_create(ak_ctx *ctx, const problem *p, uint64_t seed, dinputs *in, char *err, size_t errlen) {
    memset(in, 0, sizeof(*in));
    in->p = *p;
    int64_t *lens = malloc(sizeof(int64_t) * (size_t)p->B), plen = p->prefix;
    if (!lens) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int b = 0; b < p->B; b++) lens[b] = ragged_len(p, b);
    double nq = (double)p->B * p->Hq * p->Lq;
    if (nq * (p->d + p->dv + 1) * 8.0 > 1e13) {
        free(lens);
        snprintf(err, errlen, "Q/O too large");
        return -1;
    }
    int rc = cache_create(ctx, p, p->B, lens, seed, &in->kv, err, errlen);
    free(lens);
    if (rc != 0) return -1;
    if (p->prefix && cache_create(ctx, p, 1, &plen, seed ^ 0x5EEDull, &in->pre, err, errlen) != 0) {
        dinputs_free(in);
        return -1;
    }
    size_t rows = (size_t)p->B * (size_t)p->Hq * (size_t)p->Lq;
    uint64_t rng = seed;
    in->q = random_buffer(p->dt_q, rows * (size_t)p->d, &rng);
    in->o_bytes = rows * (size_t)p->dv * ak_dtype_size(p->dt_o);
    in->lse_bytes = rows * sizeof(float);
    in->o = xalloc(in->o_bytes);
    in->lse = xalloc(in->lse_bytes);
    in->slopes = xalloc(sizeof(float) * (size_t)p->Hq);
    in->sinks = xalloc(sizeof(float) * (size_t)p->Hq);
    if (!in->q || !in->o || !in->lse || !in->slopes || !in->sinks) {
        dinputs_free(in);
        snprintf(err, errlen, "out of memory allocating the inputs");
        return -1;
    }
    for (int h = 0; h < p->Hq; h++) {   /* as the dense inputs: standard ALiBi slopes, random sinks */
        ((float *)in->slopes)[h] = powf(2.0f, -8.0f * (float)(h + 1) / (float)p->Hq);
        ((float *)in->sinks)[h] = 1.7320508f * rng_uniform(&rng);
    }
    dinputs_poison(in);
    fill_ddesc(in);
    ak_decode_tensors_init(&in->t);
    in->t.q = ak_tensor_4d(in->q, p->dt_q, p->B, p->Hq, p->Lq, p->d);
    in->t.o = ak_tensor_4d(in->o, p->dt_o, p->B, p->Hq, p->Lq, p->dv);
    if (p->lse) in->t.lse = ak_tensor_3d(in->lse, AK_F32, p->B, p->Hq, p->Lq);
    if (p->alibi) in->t.alibi_slopes = ak_tensor_1d(in->slopes, AK_F32, p->Hq);
    if (p->sinks) in->t.sinks = ak_tensor_1d(in->sinks, AK_F32, p->Hq);
    in->t.kv = in->kv.t;
    if (p->prefix) in->t.prefix = in->pre.t;
    ak_status st = ak_decode_plan_create(ctx, &in->desc, &in->plan);
    if (st != AK_OK) {
        snprintf(err, errlen, "%s", error_text(ctx, st));
        dinputs_free(in);
        return -1;
    }
    cache_poison(&in->kv);
    cache_poison(&in->pre);
    uint64_t krng = seed ^ 0xCAC4Eull;
    if (cache_fill(ctx, p, &in->kv, &krng, err, errlen) != 0 ||
        (p->prefix && cache_fill(ctx, p, &in->pre, &krng, err, errlen) != 0)) {
        dinputs_free(in);
        return -1;
    }
    return 0;
}

/*
 * Visible key range [lo, hi] (absolute: prefix first) of all query rows of sequence b together, or
 * lo > hi when they see nothing. The rows' ranges move together, so their union is one interval.
 */
static void seq_visible(const dinputs *in, int b, int64_t *lo, int64_t *hi) {
    const problem *p = &in->p;
    int64_t lk = p->prefix + in->kv.lens[b];
    *lo = INT64_MAX;
    *hi = -1;
    for (int64_t i = 0; i < p->Lq; i++) {
        int64_t l, h;
        visible_range(p, p->Lq, lk, i, &l, &h);
        if (h < l) continue;
        if (l < *lo) *lo = l;
        if (h > *hi) *hi = h;
    }
}

/*
 * Bytes a call must read from the caches: the keys some query row of a sequence can see (all of its
 * keys unless a window cuts them), K and V rows of every KV head, plus the two f32 scales per token and
 * head of an i8 cache; the visible prefix keys count once (they are read once for the whole batch).
 */
double dinputs_kv_bytes(const dinputs *in) {
    const problem *p = &in->p;
    double own = 0.0;
    int64_t plo = INT64_MAX, phi = -1;
    for (int b = 0; b < p->B; b++) {
        int64_t lo, hi;
        seq_visible(in, b, &lo, &hi);
        if (hi < lo) continue;
        int64_t olo = lo > p->prefix ? lo : p->prefix;
        if (hi >= olo) own += (double)(hi - olo + 1);
        int64_t phi_b = hi < p->prefix - 1 ? hi : p->prefix - 1;
        if (phi_b >= lo) {
            if (lo < plo) plo = lo;
            if (phi_b > phi) phi = phi_b;
        }
    }
    double tokens = own + (phi >= plo ? (double)(phi - plo + 1) : 0.0);
    double per_token = (double)(p->d + p->dv) * (double)ak_dtype_size(p->dt_kv) + (p->dt_kv == AK_I8 ? 8.0 : 0.0);
    return tokens * per_token * p->Hkv;
}

/* Visible (query row, key) pairs of one query head, summed over the batch. */
double dinputs_visible_pairs(const dinputs *in) {
    const problem *p = &in->p;
    double total = 0.0;
    for (int b = 0; b < p->B; b++) {
        int64_t lk = p->prefix + in->kv.lens[b];
        for (int64_t i = 0; i < p->Lq; i++) {
            int64_t lo, hi;
            visible_range(p, p->Lq, lk, i, &lo, &hi);
            if (hi >= lo) total += (double)(hi - lo + 1);
        }
    }
    return total;
}

/* The view t with index `idx` of dimension `dim` only (shape 1 there). */
static ak_tensor pick(ak_tensor t, int dim, int64_t idx) {
    t.data = (char *)t.data + idx * t.stride[dim] * (int64_t)ak_dtype_size(t.dtype);
    t.shape[dim] = 1;
    return t;
}

/* Cache c restricted to sequence b and KV head hk: a batch-1, one-head cache over the same memory. */
static void cache_sub(const problem *p, const dcache *c, int b, int hk, ak_kv_desc *d, ak_kv_tensors *t,
                      int32_t indptr[2]) {
    *d = c->desc;
    *t = c->t;
    d->batch = 1;
    d->num_heads_kv = 1;
    int i8 = p->dt_kv == AK_I8;
    if (p->page == 0) {
        t->k = pick(pick(t->k, 0, b), 1, hk);
        t->v = pick(pick(t->v, 0, b), 1, hk);
        if (i8) {
            t->k_scale = pick(pick(t->k_scale, 0, b), 1, hk);
            t->v_scale = pick(pick(t->v_scale, 0, b), 1, hk);
        }
        d->seqlens = c->lens + b;
        return;
    }
    int hd = p->hnd ? 1 : 2;   /* the head dimension of the pools */
    t->k = pick(t->k, hd, hk);
    t->v = pick(t->v, hd, hk);
    if (i8) {
        t->k_scale = pick(t->k_scale, hd, hk);
        t->v_scale = pick(t->v_scale, hd, hk);
    }
    if (p->csr) {
        indptr[0] = 0;
        indptr[1] = c->indptr[b + 1] - c->indptr[b];
        d->kv_indptr = indptr;
        d->kv_indices = c->indices + c->indptr[b];
        d->kv_last_page_len = c->last + b;
    } else {
        d->seqlens = c->lens + b;
        d->block_table = c->table + (int64_t)b * c->max_pages;
    }
}

/*
 * Sequence b, KV head hk as a decode problem of its own for ak_decode_ref: Hq/Hkv query heads, one KV
 * head, batch 1; O and LSE in double into o_ref [g][q][dv] and lse_ref [g][q].
 */
void dinputs_sub(const dinputs *in, int b, int hk, double *o_ref, double *lse_ref, dsub *s) {
    const problem *p = &in->p;
    int g = p->Hq / p->Hkv;
    s->desc = in->desc;
    s->desc.num_heads_q = g;
    s->desc.dtype_o = AK_F64;
    ak_decode_tensors_init(&s->t);
    cache_sub(p, &in->kv, b, hk, &s->desc.kv, &s->t.kv, s->indptr);
    if (p->prefix) {
        cache_sub(p, &in->pre, 0, hk, &s->pre, &s->t.prefix, s->pre_indptr);
        s->desc.prefix = &s->pre;
    }
    s->t.q = pick(pick(in->t.q, 0, b), 1, (int64_t)hk * g);
    s->t.q.shape[1] = g;
    s->t.o = ak_tensor_4d(o_ref, AK_F64, 1, g, p->Lq, p->dv);
    if (p->lse) s->t.lse = ak_tensor_3d(lse_ref, AK_F64, 1, g, p->Lq);
    if (p->alibi) s->t.alibi_slopes = ak_tensor_1d((float *)in->slopes + (int64_t)hk * g, AK_F32, g);
    if (p->sinks) s->t.sinks = ak_tensor_1d((float *)in->sinks + (int64_t)hk * g, AK_F32, g);
}

/*
 * The K (is_v = 0) or V rows of sequence b, KV head hk, dequantised to f32 in key order (prefix
 * first): out [prefix + len_b][d or dv]. Read through the tool's own page map, not the library's.
 */
void dinputs_gather(const dinputs *in, int b, int hk, int is_v, float *out) {
    const problem *p = &in->p;
    int cols = is_v ? p->dv : p->d;
    int64_t n = p->prefix + in->kv.lens[b];
    for (int64_t j = 0; j < n; j++) {
        const dcache *c = j < p->prefix ? &in->pre : &in->kv;
        int64_t idx[3];
        locate(p, c, j < p->prefix ? 0 : b, hk, j < p->prefix ? j : j - p->prefix, idx);
        const ak_tensor *t = is_v ? &c->t.v : &c->t.k;
        double scale = 1.0;
        if (p->dt_kv == AK_I8) scale = tensor_get(is_v ? &c->t.v_scale : &c->t.k_scale, idx[0], idx[1], idx[2], 0);
        for (int col = 0; col < cols; col++)
            out[j * cols + col] = (float)(scale * tensor_get(t, idx[0], idx[1], idx[2], col));
    }
}
