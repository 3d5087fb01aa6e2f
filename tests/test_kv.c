/*
 * test_kv.c — KV cache writes and metadata: ak_kv_append round trips (contiguous, block-table and
 * CSR paged caches; NHD and HND; page sizes 1, 3, 16, 256; f32/bf16/f16/i8 caches filled from
 * f32/bf16/f16 rows with arbitrary strides; per-sequence n_new including 0; appends across page
 * boundaries), ak_kv_block_table_to_csr, ak_kv_seqlen, the owned ak_kv_cache (create, append, view,
 * reset, free-page accounting, out of pages), and every invalid metadata field with its own status
 * and a message that names it.
 *
 * The cache contents are read back through the addressing the header documents (token p of
 * sequence b is slot p % page_size of page table[b][p / page_size]; NHD [page][slot][h][c], HND
 * [page][h][slot][c]; contiguous [b][h][p][c] through the tensor's strides), not through the
 * library. Every cache buffer starts as 0xA5 bytes, and every byte that holds no token must still
 * be 0xA5 afterwards (nothing is written outside the new rows, nothing at all on an error).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"
#include "common.h"

#define SENTINEL 0xA5

/* CHECK_MSG(ctx, text): the last error names `text`. */
#define CHECK_MSG(ctx, text)                                                                      \
    CHECK(strstr(ak_ctx_last_error(ctx), (text)) != NULL, "last error \"%s\" does not mention \"%s\"", \
          ak_ctx_last_error(ctx), (text))

/* ================================================================================================
 * A cache under test: k, v (and the i8 scales) in sentinel-filled buffers, plus a byte mask of
 * what holds tokens.
 * ============================================================================================== */

typedef struct tcache {
    int paged;              /* 0 = contiguous */
    ak_kv_layout lay;
    int ps, B, H, d, dv, cap, num_pages;
    ak_dtype dt;
    ak_kv_tensors t;
    unsigned char *mem[4];  /* k, v, k_scale, v_scale */
    unsigned char *mask[4];
    size_t bytes[4];
} tcache;

static ak_tensor *tc_tensor(tcache *c, int i) {
    return i == 0 ? &c->t.k : i == 1 ? &c->t.v : i == 2 ? &c->t.k_scale : &c->t.v_scale;
}

static size_t dt_size(ak_dtype dt) { return dt == AK_I8 ? 1 : ak_dtype_size(dt); }

/* Contiguous: k memory [B][cap][H][d] (BSHD), v [B][H][cap][dv], k_scale [B][H][cap], v_scale memory
 * [B][cap][H]. Paged: pools [pages][ps][H][cols] (NHD) or [pages][H][ps][cols] (HND), row-major. */
static void tcache_make(tcache *c, int paged, ak_kv_layout lay, int ps, ak_dtype dt, int B, int H, int d, int dv,
                        int cap, int num_pages) {
    memset(c, 0, sizeof *c);
    c->paged = paged;
    c->lay = lay;
    c->ps = ps;
    c->dt = dt;
    c->B = B;
    c->H = H;
    c->d = d;
    c->dv = dv;
    c->cap = cap;
    c->num_pages = num_pages;
    ak_kv_tensors_init(&c->t);
    int nt = dt == AK_I8 ? 4 : 2;
    for (int i = 0; i < nt; i++) {
        int cols = i == 0 ? d : i == 1 ? dv : 1;
        ak_dtype edt = i < 2 ? dt : AK_F32;
        size_t n = paged ? (size_t)num_pages * ps * H * cols : (size_t)B * cap * H * cols;
        c->bytes[i] = n * dt_size(edt);
        c->mem[i] = (unsigned char *)malloc(c->bytes[i] + 1);
        c->mask[i] = (unsigned char *)malloc(c->bytes[i] + 1);
        memset(c->mem[i], SENTINEL, c->bytes[i]);
        ak_tensor *t = tc_tensor(c, i);
        if (paged) {
            int64_t a = lay == AK_KV_NHD ? ps : H, b = lay == AK_KV_NHD ? H : ps;
            *t = i < 2 ? ak_tensor_4d(c->mem[i], edt, num_pages, a, b, cols) : ak_tensor_3d(c->mem[i], edt, num_pages, a, b);
        } else if (i == 0) {
            *t = ak_tensor_bshd(c->mem[i], edt, B, cap, H, cols);
        } else if (i == 1) {
            *t = ak_tensor_4d(c->mem[i], edt, B, H, cap, cols);
        } else if (i == 2) {
            *t = ak_tensor_3d(c->mem[i], edt, B, H, cap);
        } else {
            *t = ak_tensor_3d(c->mem[i], edt, B, H, cap);
            t->stride[0] = (int64_t)cap * H;
            t->stride[1] = 1;
            t->stride[2] = H;
        }
    }
}

static void tcache_free(tcache *c) {
    for (int i = 0; i < 4; i++) {
        free(c->mem[i]);
        free(c->mask[i]);
    }
    memset(c, 0, sizeof *c);
}

/* Snapshot / compare of all buffers (for "nothing changed on an error"). */
typedef struct snap {
    unsigned char *mem[4];
} snap;

static void snap_take(snap *s, const tcache *c) {
    for (int i = 0; i < 4; i++) {
        s->mem[i] = c->mem[i] ? (unsigned char *)malloc(c->bytes[i] + 1) : NULL;
        if (s->mem[i]) memcpy(s->mem[i], c->mem[i], c->bytes[i]);
    }
}
static int snap_same(const snap *s, const tcache *c) {
    for (int i = 0; i < 4; i++)
        if (c->mem[i] && memcmp(s->mem[i], c->mem[i], c->bytes[i]) != 0) return 0;
    return 1;
}
static void snap_free(snap *s) {
    for (int i = 0; i < 4; i++) free(s->mem[i]);
}

/* Logical index of (outer, pos, h, c) in a cache tensor (scales: the first three). */
static void cache_idx(const tcache *c, int64_t outer, int64_t pos, int64_t h, int64_t col, int64_t idx[4]) {
    idx[0] = outer;
    if (c->paged && c->lay == AK_KV_NHD) {
        idx[1] = pos;
        idx[2] = h;
    } else {
        idx[1] = h;
        idx[2] = pos;
    }
    idx[3] = col;
}

static void mark(tcache *c, int i, int64_t off) {
    size_t es = dt_size(tc_tensor(c, i)->dtype);
    memset(c->mask[i] + (size_t)off * es, 1, es);
}

/* Check one stored row (which = 0 for k, 1 for v) against the source values x[cols]; returns 1 if OK. */
static int check_row(tcache *c, int which, int64_t outer, int64_t pos, int64_t h, const float *x, int cols) {
    ak_tensor *t = tc_tensor(c, which);
    int64_t idx[4];
    int ok = 1;
    if (c->dt == AK_I8) {
        ak_tensor *st = tc_tensor(c, which + 2);
        cache_idx(c, outer, pos, h, 0, idx);
        int64_t soff = ten_offset(st, idx);
        float scale = ((const float *)st->data)[soff];
        mark(c, which + 2, soff);
        float amax = 0.0f;
        for (int k = 0; k < cols; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        float want = amax / 127.0f;
        if (!(fabsf(scale - want) <= 1e-6f * want)) ok = 0;
        int qmax = 0;
        for (int k = 0; k < cols; k++) {
            cache_idx(c, outer, pos, h, k, idx);
            int64_t off = ten_offset(t, idx);
            int q = ((const int8_t *)t->data)[off];
            mark(c, which, off);
            if (q < -127 || q > 127) ok = 0;
            if (abs(q) > qmax) qmax = abs(q);
            double err = fabs((double)scale * q - x[k]);
            if (amax == 0.0f ? q != 0 || scale != 0.0f : err > 0.5 * scale * (1 + 1e-5)) ok = 0;
        }
        if (amax > 0.0f && qmax != 127) ok = 0; /* the largest element maps to +-127 */
        if (!ok)
            fprintf(stderr, "  i8 row (outer %lld pos %lld h %lld %s): scale %g want %g\n", (long long)outer,
                    (long long)pos, (long long)h, which ? "v" : "k", (double)scale, (double)want);
        return ok;
    }
    for (int k = 0; k < cols; k++) {
        cache_idx(c, outer, pos, h, k, idx);
        int64_t off = ten_offset(t, idx);
        mark(c, which, off);
        if (c->dt == AK_F32) {
            float got = ((const float *)t->data)[off];
            if (tu_f32_bits(got) != tu_f32_bits(x[k])) ok = 0;
        } else {
            uint16_t got = ((const uint16_t *)t->data)[off];
            uint16_t want = c->dt == AK_BF16 ? ak_f32_to_bf16(x[k]) : ak_f32_to_f16(x[k]);
            uint16_t want2 = c->dt == AK_BF16 ? tu_f32_to_bf16(x[k]) : tu_f32_to_f16(x[k]);
            if (got != want || got != want2) ok = 0;
        }
    }
    if (!ok)
        fprintf(stderr, "  %s row (outer %lld pos %lld h %lld %s) differs\n", ak_dtype_name(c->dt), (long long)outer,
                (long long)pos, (long long)h, which ? "v" : "k");
    return ok;
}

/* Shadow of what every sequence holds: source values sk[b][tok][h][d], sv[b][tok][h][dv]. */
typedef struct shadow {
    int B, maxlen, H, d, dv;
    float *k, *v;
    int32_t *len;
} shadow;

static void shadow_make(shadow *s, int B, int maxlen, int H, int d, int dv) {
    s->B = B;
    s->maxlen = maxlen;
    s->H = H;
    s->d = d;
    s->dv = dv;
    s->k = (float *)calloc((size_t)B * maxlen * H * d + 1, sizeof(float));
    s->v = (float *)calloc((size_t)B * maxlen * H * dv + 1, sizeof(float));
    s->len = (int32_t *)calloc((size_t)B, sizeof(int32_t));
}
static void shadow_free(shadow *s) {
    free(s->k);
    free(s->v);
    free(s->len);
}
static float *sh_k(const shadow *s, int b, int64_t tok, int h) {
    return s->k + (((size_t)b * s->maxlen + tok) * s->H + h) * s->d;
}
static float *sh_v(const shadow *s, int b, int64_t tok, int h) {
    return s->v + (((size_t)b * s->maxlen + tok) * s->H + h) * s->dv;
}

/* Verify every token of every sequence; rows[b] = its page list (paged) or NULL. Also checks that
 * each byte not holding a token still holds the sentinel. Returns 1 if all is well. */
static int verify(tcache *c, const shadow *s, const int32_t *const *rows, const char *what) {
    for (int i = 0; i < 4; i++)
        if (c->mask[i]) memset(c->mask[i], 0, c->bytes[i]);
    int bad = 0;
    for (int b = 0; b < s->B; b++)
        for (int64_t tok = 0; tok < s->len[b]; tok++) {
            int64_t outer = c->paged ? rows[b][tok / c->ps] : b, pos = c->paged ? tok % c->ps : tok;
            for (int h = 0; h < s->H; h++) {
                bad += !check_row(c, 0, outer, pos, h, sh_k(s, b, tok, h), s->d);
                bad += !check_row(c, 1, outer, pos, h, sh_v(s, b, tok, h), s->dv);
            }
        }
    int stray = 0;
    for (int i = 0; i < 4; i++)
        for (size_t j = 0; c->mem[i] && j < c->bytes[i]; j++)
            if (!c->mask[i][j] && c->mem[i][j] != SENTINEL) stray++;
    CHECK(bad == 0, "%s: %d rows differ from what was appended", what, bad);
    CHECK(stray == 0, "%s: %d bytes outside the appended rows were written", what, stray);
    return bad == 0 && stray == 0;
}

/* Random source value rounded to dtype dt; a few exact zeros. */
static double src_val(rng *r, ak_dtype dt) { return tu_round_to(dt, rng_range(r, -3.0, 3.0)); }

/* Fill k_new [B][H][n][d] / v_new [B][H][n][dv] (some rows all zero) and record rows r < n_new[b] in the
 * shadow at tokens len_b + r. */
static void fill_src(rng *r, const tbuf *kb, const tbuf *vb, shadow *s, const int32_t *n_new) {
    const ak_tensor *kt = &kb->t, *vt = &vb->t;
    int64_t n = kt->shape[2];
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            for (int64_t i = 0; i < n; i++) {
                int zero_k = rng_chance(r, 0.1), zero_v = rng_chance(r, 0.1);
                for (int c = 0; c < s->d; c++)
                    ten_set4(kt, b, h, i, c, zero_k ? 0.0 : src_val(r, kt->dtype));
                for (int c = 0; c < s->dv; c++)
                    ten_set4(vt, b, h, i, c, zero_v ? 0.0 : src_val(r, vt->dtype));
                if (i < n_new[b]) {
                    for (int c = 0; c < s->d; c++) sh_k(s, b, s->len[b] + i, h)[c] = (float)ten_get4(kt, b, h, i, c);
                    for (int c = 0; c < s->dv; c++) sh_v(s, b, s->len[b] + i, h)[c] = (float)ten_get4(vt, b, h, i, c);
                }
            }
}

/* ================================================================================================
 * ak_kv_append round trips
 * ============================================================================================== */

typedef struct rt_cfg {
    int paged;
    ak_kv_layout lay;
    int ps;
    ak_dtype cdt, sdt;
    int B, H, d, dv;
    int steps, nmax;
    uint64_t seed;
} rt_cfg;

/* Fill a cache by successive appends (paged: even steps through the block table, odd steps through
 * the CSR form of the same pages, each within its own capacity rule) and verify it after each. */
static void run_roundtrip(ak_ctx *ctx, const rt_cfg *cf, tcache *out_cache) {
    char what[160];
    snprintf(what, sizeof what, "roundtrip %s %s ps=%d cache=%s src=%s B=%d H=%d d=%d dv=%d seed=%llu",
             cf->paged ? "paged" : "contiguous", cf->lay == AK_KV_NHD ? "NHD" : "HND", cf->ps,
             ak_dtype_name(cf->cdt), ak_dtype_name(cf->sdt), cf->B, cf->H, cf->d, cf->dv, (unsigned long long)cf->seed);
    rng r = rng_seed(cf->seed);
    const int B = cf->B, ps = cf->ps;
    const int maxlen = cf->paged ? 2 * ps + 5 : 23;
    const int pps = cf->paged ? (maxlen + ps - 1) / ps : 0;  /* pages per sequence */
    const int mpps = pps + 1;                                  /* the extra entry is -1: never read */
    const int num_pages = B * pps + 3;
    tcache c;
    tcache_make(&c, cf->paged, cf->lay, ps, cf->cdt, B, cf->H, cf->d, cf->dv, maxlen, num_pages);
    shadow s;
    shadow_make(&s, B, maxlen, cf->H, cf->d, cf->dv);
    /* a random permutation of the pages, dealt to the rows */
    int32_t *perm = (int32_t *)malloc(sizeof(int32_t) * (size_t)num_pages);
    for (int i = 0; i < num_pages; i++) perm[i] = i;
    for (int i = num_pages - 1; i > 0; i--) {
        int j = rng_int(&r, i + 1), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    int32_t *table = (int32_t *)malloc(sizeof(int32_t) * (size_t)(B * mpps + 1));
    const int32_t *rows[64];
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < pps; i++) table[b * mpps + i] = perm[b * pps + i];
        if (cf->paged) table[b * mpps + pps] = -1;
        rows[b] = table + b * mpps;
    }
    int32_t indptr[65], indices[64 * 64], last[64], n_new[64];
    for (int step = 0; step < cf->steps; step++) {
        int csr = cf->paged && (step % 2 == 1);
        ak_kv_desc kv;
        ak_kv_desc_init(&kv);
        kv.batch = B;
        kv.num_heads_kv = cf->H;
        kv.head_dim = cf->d;
        kv.head_dim_v = cf->dv;
        kv.dtype = cf->cdt;
        kv.page_size = cf->paged ? ps : 0;
        kv.capacity = cf->paged ? 0 : maxlen;
        kv.num_pages = cf->paged ? num_pages : 0;
        kv.layout = cf->lay;
        if (csr) {
            CHECK_STATUS(ak_kv_block_table_to_csr(ctx, B, ps, num_pages, s.len, table, mpps, indptr, indices,
                                                  64 * 64, last),
                         AK_OK);
            kv.kv_indptr = indptr;
            kv.kv_indices = indices;
            kv.kv_last_page_len = last;
        } else {
            kv.seqlens = s.len;
            kv.block_table = cf->paged ? table : NULL;
            kv.max_pages_per_seq = cf->paged ? mpps : 0;
        }
        for (int b = 0; b < B; b++) {
            int32_t len = -1;
            CHECK_STATUS(ak_kv_seqlen(ctx, &kv, b, &len), AK_OK);
            CHECK(len == s.len[b], "%s step %d: ak_kv_seqlen(%d) = %d, expected %d", what, step, b, len, s.len[b]);
        }
        int n = 1 + rng_int(&r, cf->nmax);
        int all_n = 1;
        for (int b = 0; b < B; b++) {
            int room = maxlen - s.len[b]; /* the shadow's size */
            int csr_room = csr ? (s.len[b] + ps - 1) / ps * ps - s.len[b] : room;
            if (csr_room < room) room = csr_room;
            int nb = rng_chance(&r, 0.5) ? n : rng_int(&r, n + 1);
            if (b == step % B && step % 3 == 2) nb = 0; /* an empty append in a busy batch */
            n_new[b] = nb < room ? nb : room;
            all_n &= n_new[b] == n;
        }
        int64_t shk[4] = {B, cf->H, n, cf->d}, shv[4] = {B, cf->H, n, cf->dv};
        tbuf kb, vb;
        tbuf_make(&kb, cf->sdt, 4, shk, LAY_PERMUTED, &r);
        tbuf_make(&vb, cf->sdt, 4, shv, rng_chance(&r, 0.5) ? LAY_PERMUTED : LAY_PADDED, &r);
        fill_src(&r, &kb, &vb, &s, n_new);
        CHECK_STATUS(ak_kv_append(ctx, &kv, &c.t, &kb.t, &vb.t, all_n && rng_chance(&r, 0.5) ? NULL : n_new), AK_OK);
        CHECK(tbuf_outside_untouched(&kb) && tbuf_outside_untouched(&vb), "%s: the sources were written", what);
        tbuf_free(&kb);
        tbuf_free(&vb);
        for (int b = 0; b < B; b++) s.len[b] += n_new[b];
        char w2[200];
        snprintf(w2, sizeof w2, "%s step %d%s", what, step, csr ? " (csr)" : "");
        if (!verify(&c, &s, rows, w2)) break;
    }
    free(perm);
    free(table);
    shadow_free(&s);
    if (out_cache) *out_cache = c;
    else tcache_free(&c);
}

static void test_roundtrips(ak_ctx *ctx) {
    static const int pss[4] = {1, 3, 16, 256};
    static const ak_dtype cdts[4] = {AK_F32, AK_BF16, AK_F16, AK_I8};
    static const ak_dtype sdts[3] = {AK_F32, AK_BF16, AK_F16};
    uint64_t seed = 1;
    for (int ci = 0; ci < 4; ci++)
        for (int si = 0; si < 3; si++) {
            rt_cfg cf = {0, AK_KV_NHD, 0, cdts[ci], sdts[si], 3, 2, 5, 3, 6, 6, seed++};
            run_roundtrip(ctx, &cf, NULL);
            for (int li = 0; li < 2; li++)
                for (int pi = 0; pi < 4; pi++) {
                    int ps = pss[pi];
                    rt_cfg pf = {1, li ? AK_KV_HND : AK_KV_NHD, ps, cdts[ci], sdts[si], 3, 2, 5, 3, 10,
                                 ps + 4, seed++};
                    run_roundtrip(ctx, &pf, NULL);
                }
        }
}

/* Larger appends take the parallel path: the bytes must not depend on the thread count. */
static void test_threads(ak_ctx *ctx) {
    static const ak_dtype cdts[2] = {AK_BF16, AK_I8};
    for (int ci = 0; ci < 2; ci++)
        for (int paged = 0; paged < 2; paged++) {
            tcache c1, c4;
            rt_cfg cf = {paged, AK_KV_HND, paged ? 16 : 0, cdts[ci], AK_F32, 8, 2, 64, 96, 4, 60, 777};
            ak_ctx_set_num_threads(ctx, 1);
            run_roundtrip(ctx, &cf, &c1);
            ak_ctx_set_num_threads(ctx, 4);
            run_roundtrip(ctx, &cf, &c4);
            int same = 1;
            for (int i = 0; i < 4; i++)
                if (c1.mem[i] && memcmp(c1.mem[i], c4.mem[i], c1.bytes[i]) != 0) same = 0;
            CHECK(same, "append %s %s: 1 and 4 threads give different bytes", paged ? "paged" : "contiguous",
                  ak_dtype_name(cdts[ci]));
            tcache_free(&c1);
            tcache_free(&c4);
        }
    ak_ctx_set_num_threads(ctx, 2);
}

/* Hand-made: page size 3, sequence 0 holds 2 tokens and gets 7 (slots 2 | 0 1 2 | 0 1 2 of three
 * pages), sequence 1 holds 0 and gets 0; i8 quantisation of a known row. */
static void test_append_by_hand(ak_ctx *ctx) {
    tcache c;
    tcache_make(&c, 1, AK_KV_NHD, 3, AK_F32, 2, 1, 2, 2, 0, 5);
    int32_t seqlens[2] = {2, 0}, table[2][3] = {{4, 0, 2}, {-7, -7, -7}}, n_new[2] = {7, 0};
    ak_kv_desc kv;
    ak_kv_desc_init(&kv);
    kv.batch = 2;
    kv.head_dim = 2;
    kv.page_size = 3;
    kv.num_pages = 5;
    kv.seqlens = seqlens;
    kv.block_table = &table[0][0];
    kv.max_pages_per_seq = 3;
    float kbuf[2][1][7][2], vbuf[2][1][7][2];
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 2; j++) {
            kbuf[0][0][i][j] = (float)(10 * i + j);
            vbuf[0][0][i][j] = (float)(-10 * i - j);
            kbuf[1][0][i][j] = vbuf[1][0][i][j] = 99.0f;
        }
    ak_tensor kn = ak_tensor_4d(kbuf, AK_F32, 2, 1, 7, 2), vn = ak_tensor_4d(vbuf, AK_F32, 2, 1, 7, 2);
    CHECK_STATUS(ak_kv_append(ctx, &kv, &c.t, &kn, &vn, n_new), AK_OK);
    const float *K = (const float *)c.mem[0], *V = (const float *)c.mem[1];
    /* token 2 + r -> page table[0][(2+r)/3], slot (2+r)%3; NHD element [page][slot][0][j] = page*6 + slot*2 + j */
    static const int want_page[7] = {4, 0, 0, 0, 2, 2, 2}, want_slot[7] = {2, 0, 1, 2, 0, 1, 2};
    int ok = 1;
    for (int r = 0; r < 7; r++)
        for (int j = 0; j < 2; j++) {
            int off = want_page[r] * 6 + want_slot[r] * 2 + j;
            if (K[off] != (float)(10 * r + j) || V[off] != (float)(-10 * r - j)) ok = 0;
        }
    CHECK(ok, "hand-made page-crossing append: rows not where the block table puts them");
    /* pages 1 and 3 untouched, and slots 0..1 of page 4 */
    const unsigned char *m = c.mem[0];
    int untouched = 1;
    for (int i = 0; i < 6 * 4; i++) {
        if (m[1 * 24 + i] != SENTINEL || m[3 * 24 + i] != SENTINEL) untouched = 0;
        if (i < 16 && m[4 * 24 + i] != SENTINEL) untouched = 0;
    }
    CHECK(untouched, "hand-made append wrote outside the new slots");
    tcache_free(&c);

    /* i8: row (0, 1, -2, 127, 0.5) -> scale = 1, q = (0, 1, -2, 127, 0 (0.5 rounds to even)) */
    tcache q;
    tcache_make(&q, 0, AK_KV_NHD, 0, AK_I8, 1, 1, 5, 1, 2, 0);
    int32_t len0 = 0;
    ak_kv_desc_init(&kv);
    kv.head_dim = 5;
    kv.head_dim_v = 1;
    kv.dtype = AK_I8;
    kv.capacity = 2;
    kv.seqlens = &len0;
    float kr[2][5] = {{0, 1, -2, 127, 0.5f}, {0, 0, 0, 0, 0}}, vr[2] = {-3.0f, 0.0f};
    ak_tensor kt = ak_tensor_4d(kr, AK_F32, 1, 1, 2, 5), vt = ak_tensor_4d(vr, AK_F32, 1, 1, 2, 1);
    CHECK_STATUS(ak_kv_append(ctx, &kv, &q.t, &kt, &vt, NULL), AK_OK);
    const int8_t *qk = (const int8_t *)q.mem[0], *qv = (const int8_t *)q.mem[1];
    float ks0, ks1, vs0, vs1;
    /* k memory BSHD [1][2][1][5]; k_scale [1][1][2]; v [1][1][2][1]; v_scale memory [1][2][1] */
    memcpy(&ks0, q.mem[2], 4);
    memcpy(&ks1, q.mem[2] + 4, 4);
    memcpy(&vs0, q.mem[3], 4);
    memcpy(&vs1, q.mem[3] + 4, 4);
    CHECK(ks0 == 1.0f && qk[0] == 0 && qk[1] == 1 && qk[2] == -2 && qk[3] == 127 && qk[4] == 0,
          "i8 row: scale %g q %d %d %d %d %d, expected 1 and 0 1 -2 127 0", (double)ks0, qk[0], qk[1], qk[2], qk[3], qk[4]);
    CHECK(ks1 == 0.0f && qk[5] == 0 && qk[9] == 0, "i8 all-zero row: scale %g, expected 0", (double)ks1);
    CHECK(vs0 == 3.0f / 127.0f && qv[0] == -127 && vs1 == 0.0f && qv[1] == 0, "i8 v rows: scale %g q %d, %g q %d",
          (double)vs0, qv[0], (double)vs1, qv[1]);
    tcache_free(&q);
}

/* n = 0 (empty sources, data NULL) and n_new all 0: legal, nothing written. */
static void test_append_empty(ak_ctx *ctx) {
    tcache c;
    tcache_make(&c, 1, AK_KV_HND, 4, AK_BF16, 2, 2, 3, 3, 0, 3);
    int32_t indptr[3] = {0, 1, 1}, indices[1] = {2}, last[2] = {4, 0};
    ak_kv_desc kv;
    ak_kv_desc_init(&kv);
    kv.batch = 2;
    kv.num_heads_kv = 2;
    kv.head_dim = 3;
    kv.dtype = AK_BF16;
    kv.page_size = 4;
    kv.num_pages = 3;
    kv.layout = AK_KV_HND;
    kv.kv_indptr = indptr;
    kv.kv_indices = indices;
    kv.kv_last_page_len = last;
    ak_tensor k0 = ak_tensor_4d(NULL, AK_F32, 2, 2, 0, 3), v0 = ak_tensor_4d(NULL, AK_F32, 2, 2, 0, 3);
    CHECK_STATUS(ak_kv_append(ctx, &kv, &c.t, &k0, &v0, NULL), AK_OK);
    float buf[2 * 2 * 1 * 3] = {0};
    ak_tensor k1 = ak_tensor_4d(buf, AK_F32, 2, 2, 1, 3), v1 = ak_tensor_4d(buf, AK_F32, 2, 2, 1, 3);
    int32_t zero[2] = {0, 0};
    CHECK_STATUS(ak_kv_append(ctx, &kv, &c.t, &k1, &v1, zero), AK_OK);
    CHECK_STATUS(ak_kv_append(ctx, &kv, &c.t, &k1, &v1, NULL), AK_ERR_CAPACITY); /* n = 1 everywhere: no room */
    /* a full sequence (CSR: no room) and an empty one (no pages, no room) with nothing to add: fine */
    int untouched = 1;
    for (int i = 0; i < 2; i++)
        for (size_t j = 0; j < c.bytes[i]; j++)
            if (c.mem[i][j] != SENTINEL) untouched = 0;
    CHECK(untouched, "an empty append wrote into the cache");
    tcache_free(&c);
}

/* ================================================================================================
 * ak_kv_block_table_to_csr
 * ============================================================================================== */

static void test_block_table_to_csr(ak_ctx *ctx) {
    /* worked example: page size 4, lengths 5, 0, 8, 1 -> 2, 0, 2, 1 pages */
    int32_t seqlens[4] = {5, 0, 8, 1};
    int32_t table[4][3] = {{7, 2, 9}, {-1, -1, -1}, {4, 0, 6}, {3, 99, 99}};
    int32_t indptr[5], indices[8], last[4];
    memset(indices, 0x7f, sizeof indices);
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 4, 10, seqlens, &table[0][0], 3, indptr, indices, 8, last), AK_OK);
    static const int32_t w_indptr[5] = {0, 2, 2, 4, 5}, w_indices[5] = {7, 2, 4, 0, 3}, w_last[4] = {1, 0, 4, 1};
    CHECK(memcmp(indptr, w_indptr, sizeof w_indptr) == 0, "indptr %d %d %d %d %d, expected 0 2 2 4 5", indptr[0],
          indptr[1], indptr[2], indptr[3], indptr[4]);
    CHECK(memcmp(indices, w_indices, sizeof w_indices) == 0, "indices %d %d %d %d %d, expected 7 2 4 0 3", indices[0],
          indices[1], indices[2], indices[3], indices[4]);
    CHECK(memcmp(last, w_last, sizeof w_last) == 0, "last_page_len %d %d %d %d, expected 1 0 4 1", last[0], last[1],
          last[2], last[3]);
    CHECK(indices[5] == 0x7f7f7f7f, "kv_indices written past kv_indptr[batch]");

    /* errors: nothing written */
    int32_t ip2[5] = {-5, -5, -5, -5, -5};
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 4, 10, seqlens, &table[0][0], 3, ip2, indices, 4, last),
                 AK_ERR_CAPACITY);
    CHECK(ip2[0] == -5 && ip2[4] == -5, "kv_indptr written on AK_ERR_CAPACITY");
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 4, 7, seqlens, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_PAGE_OUT_OF_RANGE);
    CHECK_MSG(ctx, "block_table[0][0]");
    CHECK(ip2[0] == -5, "kv_indptr written on AK_ERR_PAGE_OUT_OF_RANGE");
    int32_t neg[4] = {5, -1, 8, 1};
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 4, 10, neg, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_BAD_METADATA);
    CHECK_MSG(ctx, "seqlens[1]");
    int32_t longer[4] = {5, 0, 13, 1};
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 4, 10, longer, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_BAD_METADATA);
    CHECK_MSG(ctx, "block_table");
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 4, 10, NULL, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 0, 4, 10, seqlens, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_block_table_to_csr(ctx, 4, 0, 10, seqlens, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_block_table_to_csr(NULL, 4, 4, 10, seqlens, &table[0][0], 3, ip2, indices, 8, last),
                 AK_ERR_NULL_POINTER);

    /* round trip: random tables; both descriptions give the same lengths and, appended through, the same bytes */
    for (int cs = 0; cs < 40; cs++) {
        rng r = rng_seed(1000 + (uint64_t)cs);
        static const int pss[5] = {1, 2, 3, 16, 256};
        int B = 1 + rng_int(&r, 6), ps = pss[rng_int(&r, 5)], mp = 1 + rng_int(&r, 4), np = B * mp;
        int32_t sl[6], tb[6 * 4], ipt[7], ind[24], lst[6], nn[6];
        int32_t pg[24];
        for (int i = 0; i < np; i++) pg[i] = i;
        for (int i = np - 1; i > 0; i--) {
            int j = rng_int(&r, i + 1), t = pg[i];
            pg[i] = pg[j];
            pg[j] = t;
        }
        for (int b = 0; b < B; b++) {
            sl[b] = rng_int(&r, mp * ps + 1);
            for (int i = 0; i < mp; i++) tb[b * mp + i] = pg[b * mp + i];
        }
        CHECK_STATUS(ak_kv_block_table_to_csr(ctx, B, ps, np, sl, tb, mp, ipt, ind, 24, lst), AK_OK);
        ak_kv_desc a, c;
        ak_kv_desc_init(&a);
        a.batch = B;
        a.head_dim = 2;
        a.page_size = ps;
        a.num_pages = np;
        c = a;
        a.seqlens = sl;
        a.block_table = tb;
        a.max_pages_per_seq = mp;
        c.kv_indptr = ipt;
        c.kv_indices = ind;
        c.kv_last_page_len = lst;
        int ok = ipt[0] == 0;
        for (int b = 0; b < B; b++) {
            int32_t la = -1, lc = -2;
            ak_kv_seqlen(ctx, &a, b, &la);
            ak_kv_seqlen(ctx, &c, b, &lc);
            if (la != sl[b] || lc != sl[b]) ok = 0;
            int npb = (sl[b] + ps - 1) / ps;
            if (ipt[b + 1] - ipt[b] != npb) ok = 0;
            for (int i = 0; i < npb && ok; i++)
                if (ind[ipt[b] + i] != tb[b * mp + i]) ok = 0;
            /* within the CSR capacity (the last page's free slots) */
            nn[b] = npb * ps - sl[b];
        }
        CHECK(ok, "block_table_to_csr round trip case %d: lengths or pages differ", cs);
        tcache ca, cc;
        tcache_make(&ca, 1, AK_KV_NHD, ps, AK_F32, B, 1, 2, 2, 0, np);
        tcache_make(&cc, 1, AK_KV_NHD, ps, AK_F32, B, 1, 2, 2, 0, np);
        int64_t nmax = 0;
        for (int b = 0; b < B; b++) nmax = nn[b] > nmax ? nn[b] : nmax;
        float *src = (float *)malloc(sizeof(float) * (size_t)(B * (nmax > 0 ? nmax : 1) * 2));
        for (int64_t i = 0; i < B * nmax * 2; i++) src[i] = (float)rng_range(&r, -1, 1);
        ak_tensor kn = ak_tensor_4d(src, AK_F32, B, 1, nmax, 2);
        CHECK_STATUS(ak_kv_append(ctx, &a, &ca.t, &kn, &kn, nn), AK_OK);
        CHECK_STATUS(ak_kv_append(ctx, &c, &cc.t, &kn, &kn, nn), AK_OK);
        CHECK(memcmp(ca.mem[0], cc.mem[0], ca.bytes[0]) == 0 && memcmp(ca.mem[1], cc.mem[1], ca.bytes[1]) == 0,
              "block table and CSR appends differ (case %d)", cs);
        free(src);
        tcache_free(&ca);
        tcache_free(&cc);
    }
}

/* ================================================================================================
 * Invalid metadata and arguments, one defect at a time
 * ============================================================================================== */

/* Base: page size 4, 6 pages, f32 NHD [6][4][1][2]; sequence 0 holds 5 tokens (pages 0, 1), 1 holds 3 (page 3). */
typedef struct base {
    tcache c;
    int32_t seqlens[2], table[2][3];
    int32_t indptr[3], indices[3], last[2];
    float src[2 * 1 * 4 * 2];
    ak_tensor kn, vn;
} base;

static void base_make(base *b) {
    tcache_make(&b->c, 1, AK_KV_NHD, 4, AK_F32, 2, 1, 2, 2, 0, 6);
    b->seqlens[0] = 5;
    b->seqlens[1] = 3;
    static const int32_t tb[2][3] = {{0, 1, 2}, {3, 4, 5}};
    memcpy(b->table, tb, sizeof tb);
    b->indptr[0] = 0;
    b->indptr[1] = 2;
    b->indptr[2] = 3;
    b->indices[0] = 0;
    b->indices[1] = 1;
    b->indices[2] = 3;
    b->last[0] = 1;
    b->last[1] = 3;
    for (int i = 0; i < 16; i++) b->src[i] = (float)i;
    b->kn = ak_tensor_4d(b->src, AK_F32, 2, 1, 1, 2); /* n = 1 (fits every vocabulary) */
    b->vn = b->kn;
}

static ak_kv_desc desc_bt(base *b) {
    ak_kv_desc kv;
    ak_kv_desc_init(&kv);
    kv.batch = 2;
    kv.head_dim = 2;
    kv.page_size = 4;
    kv.num_pages = 6;
    kv.seqlens = b->seqlens;
    kv.block_table = &b->table[0][0];
    kv.max_pages_per_seq = 3;
    return kv;
}

static ak_kv_desc desc_csr(base *b) {
    ak_kv_desc kv = desc_bt(b);
    kv.seqlens = NULL;
    kv.block_table = NULL;
    kv.max_pages_per_seq = 0;
    kv.kv_indptr = b->indptr;
    kv.kv_indices = b->indices;
    kv.kv_last_page_len = b->last;
    return kv;
}

/* ak_kv_seqlen and ak_kv_append both refuse `kv` with `want` and a message naming `field`; the cache
 * is unchanged. */
static void expect_bad(ak_ctx *ctx, base *b, const ak_kv_desc *kv, const ak_kv_tensors *t, const ak_tensor *kn,
                       const ak_tensor *vn, const int32_t *n_new, ak_status want, const char *field, int line,
                       int also_seqlen) {
    snap s;
    snap_take(&s, &b->c);
    if (also_seqlen) {
        int32_t len = -12345;
        ak_status st = ak_kv_seqlen(ctx, kv, 0, &len);
        CHECK(st == want, "line %d: ak_kv_seqlen returned %s, expected %s", line, ak_status_string(st),
              ak_status_string(want));
        CHECK(strstr(ak_ctx_last_error(ctx), field) != NULL, "line %d: seqlen error \"%s\" does not mention \"%s\"",
              line, ak_ctx_last_error(ctx), field);
        CHECK(len == -12345, "line %d: len written on failure", line);
    }
    ak_status st = ak_kv_append(ctx, kv, t, kn, vn, n_new);
    CHECK(st == want, "line %d: ak_kv_append returned %s, expected %s (%s)", line, ak_status_string(st),
          ak_status_string(want), ak_ctx_last_error(ctx));
    CHECK(strstr(ak_ctx_last_error(ctx), field) != NULL, "line %d: append error \"%s\" does not mention \"%s\"", line,
          ak_ctx_last_error(ctx), field);
    CHECK(snap_same(&s, &b->c), "line %d: the cache changed although the append failed", line);
    snap_free(&s);
}

#define BAD_META(kvp, want, field) expect_bad(ctx, &b, (kvp), &b.c.t, &b.kn, &b.vn, NULL, (want), (field), __LINE__, 1)
#define BAD_APPEND(kvp, t, kn, vn, nn, want, field)                                                   \
    expect_bad(ctx, &b, (kvp), (t), (kn), (vn), (nn), (want), (field), __LINE__, 0)

static void test_invalid_metadata(ak_ctx *ctx) {
    base b;
    base_make(&b);
    ak_kv_desc kv;
    int32_t len = 0;
    /* both valid forms first */
    kv = desc_bt(&b);
    CHECK_STATUS(ak_kv_seqlen(ctx, &kv, 0, &len), AK_OK);
    CHECK(len == 5, "block table seqlen %d", len);
    kv = desc_csr(&b);
    CHECK_STATUS(ak_kv_seqlen(ctx, &kv, 1, &len), AK_OK);
    CHECK(len == 3, "csr seqlen %d", len);
    CHECK_STATUS(ak_kv_seqlen(ctx, &kv, 2, &len), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_seqlen(ctx, &kv, -1, &len), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_seqlen(ctx, &kv, 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_seqlen(ctx, NULL, 0, &len), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_seqlen(NULL, &kv, 0, &len), AK_ERR_NULL_POINTER);

    /* out-of-range page ids: the message names the field (with its index), the id and the sequence */
    kv = desc_csr(&b);
    b.indices[1] = 6;
    BAD_META(&kv, AK_ERR_PAGE_OUT_OF_RANGE, "sequence 0");
    BAD_META(&kv, AK_ERR_PAGE_OUT_OF_RANGE, "kv_indices[1] = 6");
    b.indices[1] = -1;
    BAD_META(&kv, AK_ERR_PAGE_OUT_OF_RANGE, "kv_indices[1] = -1");
    b.indices[1] = 1;
    kv = desc_bt(&b);
    b.table[1][0] = 6;
    BAD_META(&kv, AK_ERR_PAGE_OUT_OF_RANGE, "sequence 1");
    BAD_META(&kv, AK_ERR_PAGE_OUT_OF_RANGE, "block_table[1][0] = 6");
    b.table[1][0] = 3;
    b.table[1][1] = 77; /* beyond the length: never read */
    CHECK_STATUS(ak_kv_seqlen(ctx, &kv, 1, &len), AK_OK);
    b.table[1][1] = 4;

    /* CSR: non-monotone indptr, indptr[0] != 0, last_page_len 0 and > page_size */
    kv = desc_csr(&b);
    b.indptr[2] = 1;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "kv_indptr");
    b.indptr[2] = 3;
    b.indptr[0] = 1;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "kv_indptr[0]");
    b.indptr[0] = 0;
    b.last[1] = 0;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "kv_last_page_len[1]");
    b.last[1] = 5;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "kv_last_page_len[1]");
    b.last[1] = 3;

    /* block table too short for the length, negative length */
    kv = desc_bt(&b);
    kv.max_pages_per_seq = 1; /* sequence 0 needs 2 */
    BAD_META(&kv, AK_ERR_BAD_METADATA, "block_table");
    kv = desc_bt(&b);
    b.seqlens[1] = 13; /* 4 pages > 3 */
    BAD_META(&kv, AK_ERR_BAD_METADATA, "block_table");
    b.seqlens[1] = -1;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "seqlens[1]");
    b.seqlens[1] = 3;

    /* both or neither vocabulary, block_table missing */
    kv = desc_bt(&b);
    kv.kv_indptr = b.indptr;
    kv.kv_indices = b.indices;
    kv.kv_last_page_len = b.last;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "vocabulary");
    kv = desc_bt(&b);
    kv.seqlens = NULL;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "vocabulary");
    kv = desc_bt(&b);
    kv.block_table = NULL;
    BAD_META(&kv, AK_ERR_BAD_METADATA, "block_table");

    /* descriptor fields */
    kv = desc_bt(&b);
    kv.size = 0;
    BAD_META(&kv, AK_ERR_INVALID_ARGUMENT, "size");
    kv = desc_bt(&b);
    kv.num_pages = 0;
    BAD_META(&kv, AK_ERR_INVALID_ARGUMENT, "num_pages");
    kv = desc_bt(&b);
    kv.head_dim = 0;
    BAD_META(&kv, AK_ERR_HEAD_DIM, "head_dim");
    kv = desc_bt(&b);
    kv.dtype = AK_F64;
    BAD_META(&kv, AK_ERR_UNSUPPORTED_DTYPE, "dtype");
    kv = desc_bt(&b);
    kv.layout = (ak_kv_layout)5;
    BAD_META(&kv, AK_ERR_INVALID_ARGUMENT, "layout");

    /* contiguous: length above capacity */
    {
        tcache cc;
        tcache_make(&cc, 0, AK_KV_NHD, 0, AK_F32, 2, 1, 2, 2, 6, 0);
        int32_t sl[2] = {5, 7};
        ak_kv_desc k2;
        ak_kv_desc_init(&k2);
        k2.batch = 2;
        k2.head_dim = 2;
        k2.capacity = 6;
        k2.seqlens = sl;
        CHECK_STATUS(ak_kv_seqlen(ctx, &k2, 0, &len), AK_ERR_BAD_METADATA);
        CHECK_MSG(ctx, "capacity");
        CHECK_MSG(ctx, "seqlens[1]");
        CHECK_STATUS(ak_kv_append(ctx, &k2, &cc.t, &b.kn, &b.vn, NULL), AK_ERR_BAD_METADATA);
        CHECK_MSG(ctx, "capacity");
        /* append capacity: 5 + 2 > 6 */
        sl[1] = 1;
        float s2[2 * 2 * 2];
        memset(s2, 0, sizeof s2);
        ak_tensor k2n = ak_tensor_4d(s2, AK_F32, 2, 1, 2, 2);
        snap s;
        snap_take(&s, &cc);
        CHECK_STATUS(ak_kv_append(ctx, &k2, &cc.t, &k2n, &k2n, NULL), AK_ERR_CAPACITY);
        CHECK_MSG(ctx, "capacity");
        CHECK_MSG(ctx, "sequence 0");
        CHECK(snap_same(&s, &cc), "contiguous cache changed on AK_ERR_CAPACITY");
        int32_t nn[2] = {1, 2};
        CHECK_STATUS(ak_kv_append(ctx, &k2, &cc.t, &k2n, &k2n, nn), AK_OK); /* 6 and 3 tokens: fits */
        snap_free(&s);
        tcache_free(&cc);
    }

    /* append capacity, block table: 5 + 4 tokens = 3 pages > max_pages_per_seq 2 */
    float s4[2 * 1 * 4 * 2];
    for (int i = 0; i < 16; i++) s4[i] = (float)i;
    ak_tensor k4 = ak_tensor_4d(s4, AK_F32, 2, 1, 4, 2);
    kv = desc_bt(&b);
    int32_t tb2[2][2] = {{0, 1}, {3, 4}};
    kv.block_table = &tb2[0][0];
    kv.max_pages_per_seq = 2;
    BAD_APPEND(&kv, &b.c.t, &k4, &k4, NULL, AK_ERR_CAPACITY, "max_pages_per_seq");
    int32_t nn2[2] = {3, 4}; /* 8 and 7 tokens: fits in 2 pages each */
    kv = desc_bt(&b);
    b.table[0][2] = 99; /* not needed by 3 new tokens of sequence 0 */
    CHECK_STATUS(ak_kv_append(ctx, &kv, &b.c.t, &k4, &k4, nn2), AK_OK);
    /* ... but needed by 4: a page the append needs is out of range */
    tcache_free(&b.c);
    base_make(&b);
    kv = desc_bt(&b);
    b.table[0][2] = 99;
    BAD_APPEND(&kv, &b.c.t, &k4, &k4, NULL, AK_ERR_PAGE_OUT_OF_RANGE, "block_table[0][2]");
    b.table[0][2] = 2;

    /* append capacity, CSR: sequence 1 (3 tokens, 1 page) has room for 1 */
    kv = desc_csr(&b);
    int32_t nn3[2] = {0, 2};
    BAD_APPEND(&kv, &b.c.t, &k4, &k4, nn3, AK_ERR_CAPACITY, "kv_last_page_len[1]");
    CHECK_MSG(ctx, "sequence 1");
    int32_t nn4[2] = {3, 1}; /* sequence 0: 5 of 8 slots, room 3 */
    snap s0;
    snap_take(&s0, &b.c);
    CHECK_STATUS(ak_kv_append(ctx, &kv, &b.c.t, &k4, &k4, nn4), AK_OK);
    CHECK(!snap_same(&s0, &b.c), "a valid CSR append wrote nothing");
    snap_free(&s0);
    tcache_free(&b.c);
    base_make(&b);

    /* arguments */
    kv = desc_bt(&b);
    CHECK_STATUS(ak_kv_append(NULL, &kv, &b.c.t, &b.kn, &b.vn, NULL), AK_ERR_NULL_POINTER);
    BAD_APPEND(NULL, &b.c.t, &b.kn, &b.vn, NULL, AK_ERR_NULL_POINTER, "kv");
    BAD_APPEND(&kv, NULL, &b.kn, &b.vn, NULL, AK_ERR_NULL_POINTER, "cache");
    BAD_APPEND(&kv, &b.c.t, NULL, &b.vn, NULL, AK_ERR_NULL_POINTER, "k_new");
    BAD_APPEND(&kv, &b.c.t, &b.kn, NULL, NULL, AK_ERR_NULL_POINTER, "v_new");
    int32_t nbad[2] = {0, 2};
    BAD_APPEND(&kv, &b.c.t, &b.kn, &b.vn, nbad, AK_ERR_INVALID_ARGUMENT, "n_new[1]");
    nbad[1] = -1;
    BAD_APPEND(&kv, &b.c.t, &b.kn, &b.vn, nbad, AK_ERR_INVALID_ARGUMENT, "n_new[1]");

    ak_tensor t = b.kn;
    t.shape[3] = 3;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_SHAPE_MISMATCH, "k_new.shape[3]");
    t = b.kn;
    t.shape[0] = 1;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_SHAPE_MISMATCH, "k_new.shape[0]");
    t = ak_tensor_4d(b.src, AK_F32, 2, 1, 2, 2); /* v has n = 2, k n = 1 */
    BAD_APPEND(&kv, &b.c.t, &b.kn, &t, NULL, AK_ERR_SHAPE_MISMATCH, "v_new.shape[2]");
    t = ak_tensor_3d(b.src, AK_F32, 2, 1, 2);
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_SHAPE_MISMATCH, "k_new.ndim");
    t = b.kn;
    t.dtype = AK_I8;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_UNSUPPORTED_DTYPE, "k_new.dtype");
    t = b.kn;
    t.dtype = AK_F64;
    BAD_APPEND(&kv, &b.c.t, &b.kn, &t, NULL, AK_ERR_UNSUPPORTED_DTYPE, "v_new.dtype");
    t = b.kn;
    t.stride[2] = -2;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_BAD_STRIDE, "k_new.stride[2]");
    t = b.kn;
    t.data = (char *)b.src + 2;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_INVALID_ARGUMENT, "k_new.data");
    t = b.kn;
    t.data = NULL;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_NULL_POINTER, "k_new.data");
    /* a source inside the cache */
    t = b.kn;
    t.data = (float *)b.c.mem[0] + 40;
    BAD_APPEND(&kv, &b.c.t, &t, &b.vn, NULL, AK_ERR_OUTPUT_OVERLAP, "k_new");
    t = b.kn;
    t.data = (float *)b.c.mem[1];
    BAD_APPEND(&kv, &b.c.t, &b.kn, &t, NULL, AK_ERR_OUTPUT_OVERLAP, "v_new");

    /* cache tensors */
    ak_kv_tensors ct = b.c.t;
    ct.size = 0;
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_INVALID_ARGUMENT, "size");
    ct = b.c.t;
    ct.k.dtype = AK_BF16;
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_PLAN_MISMATCH, "cache.k.dtype");
    ct = b.c.t;
    ct.v.shape[0] = 5;
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_SHAPE_MISMATCH, "cache.v.shape[0]");
    ct = b.c.t;
    ct.k.stride[3] = 2;
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_BAD_STRIDE, "cache.k.stride[3]");
    ct = b.c.t;
    ct.k.stride[0] = 0; /* every page on the same memory */
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_BAD_STRIDE, "cache.k");
    ct = b.c.t;
    ct.v.stride[1] = 1; /* slots overlap each other */
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_OUTPUT_OVERLAP, "cache.v");
    ct = b.c.t;
    ct.k.data = NULL;
    BAD_APPEND(&kv, &ct, &b.kn, &b.vn, NULL, AK_ERR_NULL_POINTER, "cache.k.data");
    /* i8 described, no scales given */
    ak_kv_desc k8 = desc_bt(&b);
    k8.dtype = AK_I8;
    ct = b.c.t;
    ct.k.dtype = ct.v.dtype = AK_I8;
    BAD_APPEND(&k8, &ct, &b.kn, &b.vn, NULL, AK_ERR_SHAPE_MISMATCH, "k_scale");

    /* two sequences writing the same slots: a shared, partly filled last page */
    kv = desc_csr(&b);
    b.indices[2] = 1; /* sequence 1's only page is sequence 0's last page */
    b.last[1] = 1;
    BAD_APPEND(&kv, &b.c.t, &b.kn, &b.vn, NULL, AK_ERR_OUTPUT_OVERLAP, "page 1");
    int32_t only0[2] = {1, 0};
    CHECK_STATUS(ak_kv_append(ctx, &kv, &b.c.t, &b.kn, &b.vn, only0), AK_OK); /* one writer: fine */
    tcache_free(&b.c);
    base_make(&b);
    /* a row that lists the same page twice among the pages an append fills */
    kv = desc_bt(&b);
    b.table[0][2] = 1; /* tokens 5..7 and 8.. both in page 1 */
    float s8[2 * 1 * 7 * 2] = {0};
    ak_tensor k7 = ak_tensor_4d(s8, AK_F32, 2, 1, 7, 2);
    int32_t n70[2] = {7, 0};
    BAD_APPEND(&kv, &b.c.t, &k7, &k7, n70, AK_ERR_OUTPUT_OVERLAP, "page 1");
    tcache_free(&b.c);
}

/* ================================================================================================
 * ak_kv_cache
 * ============================================================================================== */

typedef struct count_alloc {
    long live, total, bad_align, fail_after;
} count_alloc;

static void *ca_alloc(void *user, size_t size, size_t align) {
    count_alloc *c = (count_alloc *)user;
    if (align < 64 || (align & (align - 1))) c->bad_align++;
    if (c->fail_after >= 0 && c->total >= c->fail_after) return NULL;
    size_t a = align < 64 ? 64 : align;
    void *p = aligned_alloc(a, (size + a - 1) / a * a + a);
    if (p) c->live++, c->total++;
    return p;
}
static void ca_free(void *user, void *ptr) {
    count_alloc *c = (count_alloc *)user;
    if (ptr) c->live--;
    free(ptr);
}

static void test_cache_config(ak_ctx *ctx) {
    ak_kv_cache_config cfg;
    ak_kv_cache_config_init(&cfg);
    CHECK(cfg.size == sizeof cfg && cfg.page_size == 16 && cfg.layout == AK_KV_NHD && cfg.dtype == AK_F32 &&
              cfg.num_heads_kv == 1 && cfg.head_dim == 0,
          "ak_kv_cache_config_init defaults");
    ak_kv_cache_config_init(NULL);
    ak_kv_cache *kc = (ak_kv_cache *)&cfg;
    CHECK_STATUS(ak_kv_cache_create(ctx, &cfg, &kc), AK_ERR_HEAD_DIM); /* d = 0 must be set */
    CHECK(kc == NULL, "*out not NULL after a failed create");
    ak_kv_cache_config good = cfg;
    good.head_dim = 8;
    good.num_pages = 4;
    good.max_seqs = 2;
#define BAD_CFG(field_stmt, want, text)                                                              \
    do {                                                                                          \
        ak_kv_cache_config c2 = good;                                                             \
        field_stmt;                                                                               \
        kc = (ak_kv_cache *)&cfg;                                                                 \
        CHECK_STATUS(ak_kv_cache_create(ctx, &c2, &kc), want);                                    \
        CHECK(kc == NULL, "*out not NULL after a failed create");                                 \
        CHECK_MSG(ctx, text);                                                                     \
    } while (0)
    BAD_CFG(c2.size = 0, AK_ERR_INVALID_ARGUMENT, "cfg.size");
    BAD_CFG(c2.num_heads_kv = 0, AK_ERR_INVALID_ARGUMENT, "cfg.num_heads_kv");
    BAD_CFG(c2.head_dim = AK_MAX_HEAD_DIM + 1, AK_ERR_HEAD_DIM, "cfg.head_dim");
    BAD_CFG(c2.head_dim_v = -1, AK_ERR_HEAD_DIM, "head_dim_v");
    BAD_CFG(c2.dtype = AK_F64, AK_ERR_UNSUPPORTED_DTYPE, "cfg.dtype");
    BAD_CFG(c2.page_size = 0, AK_ERR_INVALID_ARGUMENT, "cfg.page_size");
    BAD_CFG(c2.num_pages = 0, AK_ERR_INVALID_ARGUMENT, "cfg.num_pages");
    BAD_CFG(c2.layout = (ak_kv_layout)2, AK_ERR_INVALID_ARGUMENT, "cfg.layout");
    BAD_CFG(c2.max_seqs = 0, AK_ERR_INVALID_ARGUMENT, "cfg.max_seqs");
    BAD_CFG((c2.num_pages = INT32_MAX, c2.page_size = INT32_MAX, c2.num_heads_kv = INT32_MAX), AK_ERR_OUT_OF_MEMORY,
            "cfg");
#undef BAD_CFG
    CHECK_STATUS(ak_kv_cache_create(ctx, NULL, &kc), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_create(ctx, &good, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_create(NULL, &good, &kc), AK_ERR_NULL_POINTER);
    CHECK(ak_kv_cache_free_pages(NULL) == 0, "free_pages(NULL)");
    ak_kv_cache_destroy(NULL);
    int32_t len;
    CHECK_STATUS(ak_kv_cache_seqlen(NULL, 0, &len), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_reset(NULL, 0), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_append(NULL, 0, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_view(NULL, NULL, 1, NULL, NULL), AK_ERR_NULL_POINTER);

    /* the allocator: 64-byte alignment asked for, everything freed, allocation failures reported */
    ak_ctx *c2;
    ak_ctx_create(&c2);
    count_alloc ca = {0, 0, 0, -1};
    ak_allocator al = {ca_alloc, ca_free, &ca};
    ak_ctx_set_allocator(c2, &al);
    good.dtype = AK_I8;
    CHECK_STATUS(ak_kv_cache_create(c2, &good, &kc), AK_OK);
    ak_kv_desc kv;
    ak_kv_tensors t;
    int32_t seqs[2] = {0, 1};
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, 2, &kv, &t), AK_OK);
    CHECK((uintptr_t)t.k.data % 64 == 0 && (uintptr_t)t.v.data % 64 == 0 && (uintptr_t)t.k_scale.data % 64 == 0 &&
              (uintptr_t)t.v_scale.data % 64 == 0,
          "pools not 64-byte aligned");
    ak_kv_cache_destroy(kc);
    CHECK(ca.live == 0 && ca.bad_align == 0, "cache allocations: %ld live after destroy, %ld bad alignments", ca.live,
          ca.bad_align);
    for (long k = 0; k < 7; k++) { /* fail the k-th allocation of create */
        ca.total = 0;
        ca.fail_after = k;
        kc = (ak_kv_cache *)&cfg;
        ak_status st = ak_kv_cache_create(c2, &good, &kc);
        CHECK(st == AK_ERR_OUT_OF_MEMORY && kc == NULL, "allocation %ld failing: create returned %s", k,
              ak_status_string(st));
        CHECK(ca.live == 0, "allocation %ld failing: %ld blocks leaked", k, ca.live);
    }
    ca.fail_after = -1;
    ak_ctx_destroy(c2);
}

/* Verify the cache against the shadow through a view of every sequence (plus its bookkeeping). */
static void verify_cache(ak_ctx *ctx, ak_kv_cache *kc, const ak_kv_cache_config *cfg, tcache *tc, const shadow *s,
                         const char *what) {
    int32_t seqs[16];
    for (int i = 0; i < s->B; i++) seqs[i] = i;
    ak_kv_desc kv;
    ak_kv_tensors t;
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, s->B, &kv, &t), AK_OK);
    CHECK(kv.size == sizeof kv && kv.batch == s->B && kv.page_size == cfg->page_size && kv.num_pages == cfg->num_pages &&
              kv.layout == cfg->layout && kv.dtype == cfg->dtype && kv.seqlens == NULL && kv.kv_indptr && kv.kv_indices &&
              kv.kv_last_page_len && kv.head_dim == cfg->head_dim && kv.num_heads_kv == cfg->num_heads_kv,
          "%s: view descriptor fields", what);
    CHECK((kv.head_dim_v ? kv.head_dim_v : kv.head_dim) == cfg->head_dim_v, "%s: view head_dim_v %d, expected %d", what,
          kv.head_dim_v, cfg->head_dim_v);
    { /* the view's tensors match its descriptor: an empty append through ak_kv_append validates both */
        ak_tensor k0 = ak_tensor_4d(NULL, AK_F32, s->B, s->H, 0, s->d), v0 = ak_tensor_4d(NULL, AK_F32, s->B, s->H, 0, s->dv);
        CHECK_STATUS(ak_kv_append(ctx, &kv, &t, &k0, &v0, NULL), AK_OK);
    }
    int64_t used = 0;
    const int32_t *rows[16];
    char *seen = (char *)calloc((size_t)cfg->num_pages, 1);
    int dup = 0;
    for (int b = 0; b < s->B; b++) {
        int32_t len = -1, l2 = -1;
        CHECK_STATUS(ak_kv_cache_seqlen(kc, b, &len), AK_OK);
        CHECK_STATUS(ak_kv_seqlen(ctx, &kv, b, &l2), AK_OK);
        CHECK(len == s->len[b] && l2 == s->len[b], "%s: seq %d length %d / view %d, expected %d", what, b, len, l2,
              s->len[b]);
        int np = (s->len[b] + cfg->page_size - 1) / cfg->page_size;
        CHECK(kv.kv_indptr[b + 1] - kv.kv_indptr[b] == np, "%s: seq %d has %d pages, expected %d", what, b,
              kv.kv_indptr[b + 1] - kv.kv_indptr[b], np);
        used += np;
        rows[b] = kv.kv_indices + kv.kv_indptr[b];
        for (int i = 0; i < np; i++) {
            int32_t p = rows[b][i];
            if (p < 0 || p >= cfg->num_pages || seen[p]) dup++;
            else seen[p] = 1;
        }
    }
    free(seen);
    CHECK(dup == 0, "%s: %d page ids out of range or held twice", what, dup);
    CHECK(ak_kv_cache_free_pages(kc) == cfg->num_pages - used, "%s: %d free pages, expected %lld", what,
          ak_kv_cache_free_pages(kc), (long long)(cfg->num_pages - used));
    /* read through the documented addressing, on the view's tensors */
    tc->t = t;
    int nt = cfg->dtype == AK_I8 ? 4 : 2;
    for (int i = 0; i < nt; i++) {
        ak_tensor *x = tc_tensor(tc, i);
        tc->mem[i] = (unsigned char *)x->data;
        size_t n = dt_size(x->dtype);
        for (int k = 0; k < x->ndim; k++) n *= (size_t)x->shape[k];
        tc->bytes[i] = n;
        if (!tc->mask[i]) tc->mask[i] = (unsigned char *)malloc(n + 1);
    }
    /* the pools are not initialised: only the token rows are compared (the sentinel test is ak_kv_append's) */
    for (int i = 0; i < 4; i++)
        if (tc->mask[i]) memset(tc->mask[i], 0, tc->bytes[i]);
    int bad = 0;
    for (int b = 0; b < s->B; b++)
        for (int64_t tok = 0; tok < s->len[b]; tok++)
            for (int h = 0; h < s->H; h++) {
                int64_t outer = rows[b][tok / cfg->page_size], pos = tok % cfg->page_size;
                bad += !check_row(tc, 0, outer, pos, h, sh_k(s, b, tok, h), s->d);
                bad += !check_row(tc, 1, outer, pos, h, sh_v(s, b, tok, h), s->dv);
            }
    CHECK(bad == 0, "%s: %d rows differ", what, bad);
}

static void cache_append_rows(ak_ctx *ctx, rng *r, ak_kv_cache *kc, shadow *s, int seq, int n, ak_dtype sdt,
                              ak_status want) {
    int64_t shk[3] = {s->H, n, s->d}, shv[3] = {s->H, n, s->dv};
    tbuf kb, vb;
    tbuf_make(&kb, sdt, 3, shk, LAY_PERMUTED, r);
    tbuf_make(&vb, sdt, 3, shv, rng_chance(r, 0.5) ? LAY_PERMUTED : LAY_PADDED, r);
    for (int h = 0; h < s->H; h++)
        for (int i = 0; i < n; i++) {
            int zero = rng_chance(r, 0.1);
            for (int c = 0; c < s->d; c++) ten_set3(&kb.t, h, i, c, zero ? 0.0 : src_val(r, sdt));
            for (int c = 0; c < s->dv; c++) ten_set3(&vb.t, h, i, c, src_val(r, sdt));
        }
    ak_status st = ak_kv_cache_append(kc, seq, &kb.t, &vb.t);
    CHECK(st == want, "ak_kv_cache_append(seq %d, n %d) returned %s, expected %s (%s)", seq, n, ak_status_string(st),
          ak_status_string(want), ak_ctx_last_error(ctx));
    if (st == AK_OK && want == AK_OK) {
        for (int h = 0; h < s->H; h++)
            for (int i = 0; i < n; i++) {
                for (int c = 0; c < s->d; c++) sh_k(s, seq, s->len[seq] + i, h)[c] = (float)ten_get3(&kb.t, h, i, c);
                for (int c = 0; c < s->dv; c++) sh_v(s, seq, s->len[seq] + i, h)[c] = (float)ten_get3(&vb.t, h, i, c);
            }
        s->len[seq] += n;
    }
    tbuf_free(&kb);
    tbuf_free(&vb);
}

static void run_cache_case(ak_ctx *ctx, ak_dtype dt, ak_kv_layout lay, int ps, ak_dtype sdt, uint64_t seed) {
    char what[128];
    snprintf(what, sizeof what, "kv_cache %s %s ps=%d src=%s", ak_dtype_name(dt), lay == AK_KV_NHD ? "NHD" : "HND", ps,
             ak_dtype_name(sdt));
    rng r = rng_seed(seed);
    ak_kv_cache_config cfg;
    ak_kv_cache_config_init(&cfg);
    cfg.num_heads_kv = 2;
    cfg.head_dim = 5;
    cfg.head_dim_v = 3;
    cfg.dtype = dt;
    cfg.page_size = ps;
    cfg.layout = lay;
    cfg.max_seqs = 3;
    const int maxlen = 6 * ps + 4;
    cfg.num_pages = (3 * maxlen) / ps / 2 + 1; /* not enough for every sequence at maxlen */
    ak_kv_cache *kc = NULL;
    CHECK_STATUS(ak_kv_cache_create(ctx, &cfg, &kc), AK_OK);
    if (!kc) return;
    CHECK(ak_kv_cache_free_pages(kc) == cfg.num_pages, "%s: a new cache has %d free pages", what,
          ak_kv_cache_free_pages(kc));
    shadow s;
    shadow_make(&s, 3, maxlen, 2, 5, 3);
    tcache tc;
    memset(&tc, 0, sizeof tc);
    tc.paged = 1;
    tc.lay = lay;
    tc.ps = ps;
    tc.dt = dt;
    /* interleaved appends until one runs out of pages */
    int capacity_hit = 0;
    for (int step = 0; step < 40 && !capacity_hit; step++) {
        int seq = rng_int(&r, 3);
        int n = rng_int(&r, 2 * ps + 3);
        if (s.len[seq] + n > maxlen) n = maxlen - s.len[seq];
        int need = (s.len[seq] + n + ps - 1) / ps - (s.len[seq] + ps - 1) / ps;
        if (need > ak_kv_cache_free_pages(kc)) {
            /* out of pages: refused, nothing changes */
            int free0 = ak_kv_cache_free_pages(kc);
            snap sn;
            verify_cache(ctx, kc, &cfg, &tc, &s, what);
            snap_take(&sn, &tc);
            cache_append_rows(ctx, &r, kc, &s, seq, n, sdt, AK_ERR_CAPACITY);
            CHECK_MSG(ctx, "free");
            CHECK(ak_kv_cache_free_pages(kc) == free0, "%s: free pages changed on AK_ERR_CAPACITY", what);
            CHECK(snap_same(&sn, &tc), "%s: pools changed on AK_ERR_CAPACITY", what);
            snap_free(&sn);
            verify_cache(ctx, kc, &cfg, &tc, &s, what);
            capacity_hit = 1;
            break;
        }
        cache_append_rows(ctx, &r, kc, &s, seq, n, sdt, AK_OK);
        if (step % 5 == 0) verify_cache(ctx, kc, &cfg, &tc, &s, what);
    }
    CHECK(capacity_hit, "%s: never ran out of pages", what);
    verify_cache(ctx, kc, &cfg, &tc, &s, what);

    /* views: a subset in another order, with a duplicate; view arrays regrow */
    int32_t sub[4] = {2, 0, 2, 1};
    ak_kv_desc kv;
    ak_kv_tensors t;
    CHECK_STATUS(ak_kv_cache_view(kc, sub, 1, &kv, &t), AK_OK);
    CHECK_STATUS(ak_kv_cache_view(kc, sub, 4, &kv, &t), AK_OK);
    for (int i = 0; i < 4; i++) {
        int32_t len = -1;
        CHECK_STATUS(ak_kv_seqlen(ctx, &kv, i, &len), AK_OK);
        CHECK(len == s.len[sub[i]], "%s: view entry %d (seq %d) length %d, expected %d", what, i, sub[i], len,
              s.len[sub[i]]);
    }
    CHECK(memcmp(kv.kv_indices + kv.kv_indptr[0], kv.kv_indices + kv.kv_indptr[2],
                 sizeof(int32_t) * (size_t)(kv.kv_indptr[1] - kv.kv_indptr[0])) == 0 &&
              kv.kv_indptr[1] - kv.kv_indptr[0] == kv.kv_indptr[3] - kv.kv_indptr[2],
          "%s: a duplicated sequence has different pages in one view", what);

    /* reset: pages back, length 0, and reused by the next appends */
    for (int seq = 0; seq < 3; seq++) {
        int np = (s.len[seq] + ps - 1) / ps, free0 = ak_kv_cache_free_pages(kc);
        CHECK_STATUS(ak_kv_cache_reset(kc, seq), AK_OK);
        s.len[seq] = 0;
        CHECK(ak_kv_cache_free_pages(kc) == free0 + np, "%s: reset(%d) freed %d pages, expected %d", what, seq,
              ak_kv_cache_free_pages(kc) - free0, np);
        CHECK_STATUS(ak_kv_cache_reset(kc, seq), AK_OK); /* twice: nothing more */
        CHECK(ak_kv_cache_free_pages(kc) == free0 + np, "%s: a second reset changed the free pages", what);
        verify_cache(ctx, kc, &cfg, &tc, &s, what);
        if (seq == 0) { /* refill sequence 0 (2 pages) while the others still hold pages */
            int ok = ak_kv_cache_free_pages(kc) >= 2;
            cache_append_rows(ctx, &r, kc, &s, 0, ps + 1, sdt, ok ? AK_OK : AK_ERR_CAPACITY);
            verify_cache(ctx, kc, &cfg, &tc, &s, what);
        }
    }
    CHECK_STATUS(ak_kv_cache_reset(kc, 0), AK_OK);
    s.len[0] = 0;
    CHECK(ak_kv_cache_free_pages(kc) == cfg.num_pages, "%s: after resetting everything %d pages free, expected %d",
          what, ak_kv_cache_free_pages(kc), cfg.num_pages);
    /* one long append after everything went back to the free list */
    int all = cfg.num_pages * ps < maxlen ? cfg.num_pages * ps : maxlen;
    cache_append_rows(ctx, &r, kc, &s, 1, all, sdt, AK_OK);
    verify_cache(ctx, kc, &cfg, &tc, &s, what);
    for (int i = 0; i < 4; i++) free(tc.mask[i]);
    shadow_free(&s);
    ak_kv_cache_destroy(kc);
}

static void test_cache_invalid(ak_ctx *ctx) {
    ak_kv_cache_config cfg;
    ak_kv_cache_config_init(&cfg);
    cfg.num_heads_kv = 2;
    cfg.head_dim = 4;
    cfg.page_size = 3;
    cfg.num_pages = 4;
    cfg.max_seqs = 2;
    ak_kv_cache *kc = NULL;
    CHECK_STATUS(ak_kv_cache_create(ctx, &cfg, &kc), AK_OK);
    if (!kc) return;
    float buf[2 * 3 * 4];
    for (int i = 0; i < 24; i++) buf[i] = (float)i;
    ak_tensor k = ak_tensor_3d(buf, AK_F32, 2, 3, 4), t;
    int32_t len = 0;
    CHECK_STATUS(ak_kv_cache_append(kc, 2, &k, &k), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "sequence id 2");
    CHECK_STATUS(ak_kv_cache_append(kc, -1, &k, &k), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, NULL, &k), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &k, NULL), AK_ERR_NULL_POINTER);
    t = ak_tensor_3d(buf, AK_F32, 1, 3, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &k), AK_ERR_SHAPE_MISMATCH);
    CHECK_MSG(ctx, "k_new.shape[0]");
    t = ak_tensor_3d(buf, AK_F32, 2, 2, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &k, &t), AK_ERR_SHAPE_MISMATCH);
    CHECK_MSG(ctx, "v_new.shape[1]");
    t = ak_tensor_4d(buf, AK_F32, 1, 2, 3, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &k), AK_ERR_SHAPE_MISMATCH);
    t = k;
    t.dtype = AK_I8;
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &k), AK_ERR_UNSUPPORTED_DTYPE);
    t = k;
    t.stride[1] = -4;
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &k), AK_ERR_BAD_STRIDE);
    int32_t seqs[2] = {0, 1};
    ak_kv_desc kv;
    ak_kv_tensors kt;
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, 2, &kv, &kt), AK_OK);
    t = k;
    t.data = kt.k.data;
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &k), AK_ERR_OUTPUT_OVERLAP);
    for (int s = 0; s < 2; s++) {
        CHECK_STATUS(ak_kv_cache_seqlen(kc, s, &len), AK_OK);
        CHECK(len == 0, "a failed append changed sequence %d's length to %d", s, len);
    }
    CHECK(ak_kv_cache_free_pages(kc) == 4, "a failed append took pages");
    /* n = 0: nothing happens */
    t = ak_tensor_3d(NULL, AK_F32, 2, 0, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &t), AK_OK);
    CHECK(ak_kv_cache_free_pages(kc) == 4, "an empty append took pages");
    /* 13 tokens = 5 pages of 3 > 4: refused; 12 fit exactly */
    float big[2 * 13 * 4] = {0};
    t = ak_tensor_3d(big, AK_F32, 2, 13, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 1, &t, &t), AK_ERR_CAPACITY);
    CHECK_MSG(ctx, "sequence 1");
    CHECK(ak_kv_cache_free_pages(kc) == 4, "AK_ERR_CAPACITY took pages");
    t = ak_tensor_3d(big, AK_F32, 2, 12, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 1, &t, &t), AK_OK);
    CHECK(ak_kv_cache_free_pages(kc) == 0, "12 tokens of page size 3 left %d pages", ak_kv_cache_free_pages(kc));
    t = ak_tensor_3d(big, AK_F32, 2, 1, 4);
    CHECK_STATUS(ak_kv_cache_append(kc, 0, &t, &t), AK_ERR_CAPACITY);
    CHECK_STATUS(ak_kv_cache_seqlen(kc, 0, &len), AK_OK);
    CHECK(len == 0, "AK_ERR_CAPACITY changed the length to %d", len);

    CHECK_STATUS(ak_kv_cache_seqlen(kc, 2, &len), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_cache_seqlen(kc, 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_reset(kc, 2), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_cache_reset(kc, -1), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, 0, &kv, &kt), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "n = 0");
    CHECK_STATUS(ak_kv_cache_view(kc, NULL, 1, &kv, &kt), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, 1, NULL, &kt), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, 1, &kv, NULL), AK_ERR_NULL_POINTER);
    int32_t bad[2] = {1, 5};
    CHECK_STATUS(ak_kv_cache_view(kc, bad, 2, &kv, &kt), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(ctx, "seqs[1]");
    /* the view of an empty and a full sequence */
    CHECK_STATUS(ak_kv_cache_view(kc, seqs, 2, &kv, &kt), AK_OK);
    CHECK(kv.kv_indptr[0] == 0 && kv.kv_indptr[1] == 0 && kv.kv_indptr[2] == 4 && kv.kv_last_page_len[1] == 3,
          "view of (empty, 12 tokens): indptr %d %d %d last %d", kv.kv_indptr[0], kv.kv_indptr[1], kv.kv_indptr[2],
          kv.kv_last_page_len[1]);
    CHECK(kt.k.ndim == 4 && kt.k.shape[0] == 4 && kt.k.shape[1] == 3 && kt.k.shape[2] == 2 && kt.k.shape[3] == 4 &&
              kt.k_scale.data == NULL,
          "view tensors of an f32 NHD cache");
    ak_kv_cache_destroy(kc);
}

/* The view's arrays grow with the pages (same number of sequences, many more pages), and a
 * successful call clears the last error. */
static void test_cache_view_regrow(ak_ctx *ctx) {
    ak_kv_cache_config cfg;
    ak_kv_cache_config_init(&cfg);
    cfg.num_heads_kv = 1;
    cfg.head_dim = 2;
    cfg.head_dim_v = 2;
    cfg.page_size = 1;
    cfg.num_pages = 600;
    cfg.max_seqs = 2;
    ak_kv_cache *kc = NULL;
    CHECK_STATUS(ak_kv_cache_create(ctx, &cfg, &kc), AK_OK);
    if (!kc) return;
    rng r = rng_seed(99);
    shadow s;
    shadow_make(&s, 2, 600, 1, 2, 2);
    tcache tc;
    memset(&tc, 0, sizeof tc);
    tc.paged = 1;
    tc.lay = AK_KV_NHD;
    tc.ps = 1;
    tc.dt = AK_F32;
    cache_append_rows(ctx, &r, kc, &s, 0, 1, AK_F32, AK_OK);
    verify_cache(ctx, kc, &cfg, &tc, &s, "view regrow (1 page)");
    cache_append_rows(ctx, &r, kc, &s, 1, 300, AK_BF16, AK_OK);
    verify_cache(ctx, kc, &cfg, &tc, &s, "view regrow (301 pages)");
    cache_append_rows(ctx, &r, kc, &s, 0, 299, AK_F16, AK_OK);
    verify_cache(ctx, kc, &cfg, &tc, &s, "view regrow (600 pages)");
    CHECK(ak_kv_cache_free_pages(kc) == 0, "600 tokens of page size 1 left %d pages", ak_kv_cache_free_pages(kc));
    int32_t len = 0;
    CHECK_STATUS(ak_kv_cache_seqlen(kc, 5, &len), AK_ERR_INVALID_ARGUMENT);
    CHECK(ak_ctx_last_error(ctx)[0] != 0, "no message for a bad sequence id");
    CHECK_STATUS(ak_kv_cache_seqlen(kc, 1, &len), AK_OK);
    CHECK(ak_ctx_last_error(ctx)[0] == 0, "a successful ak_kv_cache_seqlen left the error \"%s\"", ak_ctx_last_error(ctx));
    CHECK_STATUS(ak_kv_cache_reset(kc, 7), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_kv_cache_reset(kc, 1), AK_OK);
    CHECK(ak_ctx_last_error(ctx)[0] == 0, "a successful ak_kv_cache_reset left an error");
    for (int i = 0; i < 4; i++) free(tc.mask[i]);
    shadow_free(&s);
    ak_kv_cache_destroy(kc);
}

static void test_cache(ak_ctx *ctx) {
    static const ak_dtype dts[4] = {AK_F32, AK_BF16, AK_F16, AK_I8};
    static const int pss[3] = {1, 3, 16};
    uint64_t seed = 5000;
    for (int di = 0; di < 4; di++)
        for (int li = 0; li < 2; li++)
            for (int pi = 0; pi < 3; pi++) {
                run_cache_case(ctx, dts[di], li ? AK_KV_HND : AK_KV_NHD, pss[pi], (ak_dtype)(seed % 3), seed);
                seed++;
            }
}

int main(void) {
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) {
        fprintf(stderr, "test_kv: ak_ctx_create failed\n");
        return 1;
    }
    ak_ctx_set_num_threads(ctx, 2);
    test_append_by_hand(ctx);
    test_append_empty(ctx);
    test_block_table_to_csr(ctx);
    test_invalid_metadata(ctx);
    test_roundtrips(ctx);
    test_threads(ctx);
    test_cache_config(ctx);
    test_cache_invalid(ctx);
    test_cache_view_regrow(ctx);
    test_cache(ctx);
    ak_ctx_destroy(ctx);
    return tc_finish("test_kv");
}
