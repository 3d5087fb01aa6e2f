/*
 * S2-Attention / DKernel (Lin et al. 2024; reference linxihui/dkernel, utils.get_sparse_attn_mask) as a
 * sparse plan: one plan head per KV head (the G query heads of a group share its pattern and its K/V
 * tiles), block-aligned key spans.
 *
 * Block indices are positions: query row i sits at pos(i) = i + nk - nq and belongs to query block
 * m = floor(pos(i) / block); key j belongs to key block j / block (dkernel: past_len / q_start_position).
 * When every fixed block of `block` rows lies in one query block (nk - nq a multiple of the block, in
 * particular nq = nk, or a single short block such as decode), the plan uses fixed blocks; otherwise
 * the rows are gathered by query block (one list per query block, in order; block_q = block).
 *
 * Per KV head h (h = 0 for every head with homo_head), vert_stride vs, local_blocks `local`:
 *   dense(h)        = h >= Hkv - num_dense_heads
 *   vertical_h(k)   = dense(h) || (k + h*step + head_sliding_offset) mod vs == 0  (mod >= 0)
 *   absolute        : attend(m, k) = vertical_h(k) || (m - k < local && k - m < right)
 *   relative        : L = max(0, m - k - local + 1), R = max(0, k - m - right + 1),
 *                     attend(m, k) = dense(h) || (L + R) mod vs == 0   (no per-head rotation)
 *   causal          : additionally k <= m at block level, and the plan's token-level causal mask.
 * step = max(1, vs / num_heads_q) with fix_coverage = 0 (the reference: computed from the query heads,
 * applied to KV-head indices, spec 4.3), max(1, vs / (Hkv - num_dense_heads)) with fix_coverage = 1.
 *
 * Choices where the header leaves room (reported with the builder):
 *  - right: 1 (the own block only) when causal, as dkernel's (local_blocks, 1). Non-causal: local_right
 *    when > 0, else local_blocks (dkernel's symmetric default for an int local_blocks). local_right counts
 *    the own block, like local_blocks, so the relative formula keeps the diagonal block; the header's
 *    literal default 0 would drop it. Absolute non-causal uses the same right extent and keeps vertical
 *    blocks on both sides of the diagonal (dkernel's absolute mask without the causal cut).
 *  - homo_head with num_dense_heads > 0 is refused (dkernel asserts it): "every head uses h = 0" would
 *    make the dense test read h = 0 too.
 *  - num_heads_q % num_heads_kv != 0 -> AK_ERR_GQA_RATIO (the library's status for that condition).
 *  - head_sliding_offset may be any int32 (negative too); the residue is taken modulo vs.
 *  - The plan always has n_heads = num_heads_kv (also with homo_head, where all heads are equal).
 *  - ak_s2_params_init also sets the Phi-3-small head counts, num_heads_q = 32 and num_heads_kv = 8.
 *
 * Coverage (ak_s2_coverage, spec 4.3 "Sharding / union"): pairs with m - k < local are covered by every
 * head's local window; the others need key block k in the union of the vertical sets, which is periodic
 * in k, so only k < min(n_blocks - local, vs) are checked. Note: both step rules give step 1 whenever
 * n_sparse_kv_heads >= vs (then Hq >= Hkv >= vs, so vs / Hq <= 1), so both cover every block in exactly the same shapes
 * once n_blocks - local >= vs; fix_coverage only changes which residues a too-small set of sparse heads
 * takes (evenly spread: {0, 6, 4, 2} instead of {0, 7, 6, 5} for Hq = 32, Hkv = 4, vs = 8), which matters
 * for the coverage of short contexts (n_blocks - local < vs) and for the spread of the vertical lines.
 */
#include <stdio.h>
#include <string.h>

#include "core/sparse.h"

void ak_s2_params_init(ak_s2_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->num_heads_q = 32; /* Phi-3-small */
    p->num_heads_kv = 8;
    p->block = 64;
    p->local_blocks = 16;
    p->vert_stride = 8;
    p->homo_head = 0;
    p->num_dense_heads = 0;
    p->head_sliding_offset = 0;
    p->relative = 0;
    p->local_right = 0;
    p->causal = 1;
    p->fix_coverage = 1;
}

static int64_t floordiv64(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static ak_status check_params(const ak_ctx *ctx, const ak_s2_params *p) {
    if (p->num_heads_q < 1 || p->num_heads_kv < 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: num_heads_q = %d, num_heads_kv = %d, both must be >= 1", p->num_heads_q,
                        p->num_heads_kv);
    if (p->num_heads_q % p->num_heads_kv != 0)
        return ak__fail(ctx, AK_ERR_GQA_RATIO, "s2: num_heads_q = %d is not a multiple of num_heads_kv = %d", p->num_heads_q,
                        p->num_heads_kv);
    if (p->block < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: block = %d, must be >= 1", p->block);
    if (p->local_blocks < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: local_blocks = %d, must be >= 1", p->local_blocks);
    if (p->vert_stride < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: vert_stride = %d, must be >= 1", p->vert_stride);
    if (p->num_dense_heads < 0 || p->num_dense_heads > p->num_heads_kv)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: num_dense_heads = %d, must be in [0, num_heads_kv = %d]", p->num_dense_heads,
                        p->num_heads_kv);
    if (p->homo_head != 0 && p->homo_head != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: homo_head = %d, must be 0 or 1", p->homo_head);
    if (p->homo_head && p->num_dense_heads > 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                        "s2: homo_head = 1 with num_dense_heads = %d (a homogeneous pattern has no dense heads, as in dkernel)",
                        p->num_dense_heads);
    if (p->relative != 0 && p->relative != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: relative = %d, must be 0 (absolute) or 1 (relative)", p->relative);
    if (p->causal != 0 && p->causal != 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: causal = %d, must be 0 or 1", p->causal);
    if (p->fix_coverage != 0 && p->fix_coverage != 1)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: fix_coverage = %d, must be 0 or 1", p->fix_coverage);
    if (p->local_right < 0)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: local_right = %d, must be >= 0 (0 = local_blocks)", p->local_right);
    return AK_OK;
}

/* The derived per-pattern constants. */
typedef struct s2c {
    int64_t vs, local, right, step, off;
    int32_t hkv, n_sparse, homo, relative, causal;
} s2c;

static void derive(const ak_s2_params *p, s2c *c) {
    c->vs = p->vert_stride;
    c->local = p->local_blocks;
    c->right = p->causal ? 1 : (p->local_right > 0 ? p->local_right : p->local_blocks);
    c->hkv = p->num_heads_kv;
    c->n_sparse = p->num_heads_kv - p->num_dense_heads;
    if (p->fix_coverage) c->step = c->n_sparse > 0 && p->vert_stride / c->n_sparse > 1 ? p->vert_stride / c->n_sparse : 1;
    else c->step = p->vert_stride / p->num_heads_q > 1 ? p->vert_stride / p->num_heads_q : 1;
    c->off = p->head_sliding_offset;
    c->homo = p->homo_head;
    c->relative = p->relative;
    c->causal = p->causal;
}

static int is_dense(const s2c *c, int32_t h) { return h >= c->n_sparse; }

/* The key-block residue r of head h's vertical lines: vertical_h(k) iff k mod vs == r. */
static int64_t residue(const s2c *c, int32_t h) {
    int64_t hh = c->homo ? 0 : h;
    int64_t x = (hh * c->step + c->off) % c->vs;
    if (x < 0) x += c->vs;
    return (c->vs - x) % c->vs;
}

/* Add key blocks [k0, k1] (inclusive; clipped to [0, kmax]) of list t as one span. */
static ak_status add_blocks(ak_sparse_builder *b, int32_t h, int32_t t, int64_t k0, int64_t k1, int64_t kmax, int64_t bs, int64_t nk) {
    if (k0 < 0) k0 = 0;
    if (k1 > kmax) k1 = kmax;
    if (k0 > k1) return AK_OK;
    int64_t lo = k0 * bs, hi = (k1 + 1) * bs;
    if (hi > nk) hi = nk;
    if (lo >= hi) return AK_OK;
    return ak_sparse_builder_add_span(b, 0, h, t, (int32_t)lo, (int32_t)hi);
}

/* Every key block query block m of head h attends, as spans of list t. nkb = key blocks. */
static ak_status emit_list(ak_sparse_builder *b, const s2c *c, int32_t h, int32_t t, int64_t m, int64_t nkb, int64_t bs, int64_t nk) {
    int64_t kmax = nkb - 1;
    if (c->causal && m < kmax) kmax = m;
    if (kmax < 0) return AK_OK;
    if (is_dense(c, h) || c->vs == 1) return add_blocks(b, h, t, 0, kmax, kmax, bs, nk);
    int64_t w0 = m - c->local + 1, w1 = m + c->right - 1; /* the local band [w0, w1] */
    ak_status st = add_blocks(b, h, t, w0, w1, kmax, bs, nk);
    if (st != AK_OK) return st;
    if (!c->relative) {
        int64_t r = residue(c, h);
        for (int64_t k = r; k <= kmax && st == AK_OK; k += c->vs)
            if (k < w0 || k > w1) st = add_blocks(b, h, t, k, k, kmax, bs, nk);
    } else {
        /* L = w0 - k for k < w0, R = k - w1 for k > w1; kept when a multiple of vs */
        for (int64_t k = w0 - c->vs; k >= 0 && st == AK_OK; k -= c->vs) st = add_blocks(b, h, t, k, k, kmax, bs, nk);
        for (int64_t k = w1 + c->vs; k <= kmax && st == AK_OK; k += c->vs) st = add_blocks(b, h, t, k, k, kmax, bs, nk);
    }
    return st;
}

/* Query blocks by position (see the top of the file). List t is query block m0 + t and holds the rows
 * qgeom_rows(t): fixed blocks of bs rows when every one lies in one query block, else gathered rows. */
typedef struct qgeom {
    int gather;
    int32_t block_q, n_qblocks;
    int64_t m0, n_pos, D, bs;
} qgeom;

static void qgeom_init(qgeom *g, int32_t nq, int32_t nk, int32_t bs) {
    g->bs = bs;
    g->D = (int64_t)nk - nq;
    g->m0 = floordiv64(g->D, bs);
    int64_t r = g->D - g->m0 * bs, fixed_n = ((int64_t)nq + bs - 1) / bs;
    g->n_pos = nq > 0 ? floordiv64(g->D + nq - 1, bs) - g->m0 + 1 : 0;
    g->gather = !(r == 0 || nq <= bs - r);
    g->block_q = bs; /* with gathered rows: the largest block's size */
    g->n_qblocks = (int32_t)(g->gather ? g->n_pos : fixed_n);
}

static void qgeom_rows(const qgeom *g, int32_t nq, int64_t t, int64_t *lo, int64_t *hi) {
    int64_t m = g->m0 + t;
    *lo = m * g->bs - g->D;
    *hi = (m + 1) * g->bs - g->D;
    if (*lo < 0) *lo = 0;
    if (*hi > nq) *hi = nq;
}

ak_status ak_sparse_s2(ak_ctx *ctx, int32_t nq, int32_t nk, const ak_s2_params *p, ak_sparse **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "s2: out is NULL");
    *out = NULL;
    if (!p) return ak__fail(ctx, AK_ERR_NULL_POINTER, "s2: params is NULL");
    if (nq < 0 || nk < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2: nq = %d, nk = %d, must be >= 0", nq, nk);
    ak_status st = check_params(ctx, p);
    if (st != AK_OK) return st;
    s2c c;
    derive(p, &c);
    qgeom q;
    qgeom_init(&q, nq, nk, p->block);

    ak_sparse_desc geom;
    ak_sparse_desc_init(&geom);
    geom.n_batch = 1;
    geom.n_heads = p->num_heads_kv;
    geom.nq = nq;
    geom.nk = nk;
    geom.causal = p->causal;
    geom.block_q = q.block_q;
    geom.n_qblocks = q.n_qblocks;
    ak_sparse_builder *b = NULL;
    if ((st = ak_sparse_builder_create(ctx, &geom, &b)) != AK_OK) return st;
    int64_t bs = p->block, nkb = ((int64_t)nk + bs - 1) / bs;
    for (int32_t h = 0; h < p->num_heads_kv && st == AK_OK; h++)
        for (int64_t t = 0; t < q.n_pos && st == AK_OK; t++) {
            if (q.gather) {
                int64_t lo, hi;
                qgeom_rows(&q, nq, t, &lo, &hi);
                for (int64_t i = lo; i < hi && st == AK_OK; i++) st = ak_sparse_builder_add_row(b, 0, h, (int32_t)t, (int32_t)i);
            }
            if (st == AK_OK) st = emit_list(b, &c, h, (int32_t)t, q.m0 + t, nkb, bs, nk);
        }
    if (st == AK_OK) {
        char name[256];
        int n = snprintf(name, sizeof name, "s2(bs=%d,local=%d,vs=%d", p->block, p->local_blocks, p->vert_stride);
#define S2_APPEND(...)                                                                                                       \
    do {                                                                                                                     \
        if (n >= 0 && (size_t)n < sizeof name) n += snprintf(name + n, sizeof name - (size_t)n, __VA_ARGS__);                \
    } while (0)
        if (p->relative) S2_APPEND(",relative");
        if (!p->causal) S2_APPEND(",noncausal,right=%lld", (long long)c.right);
        if (p->homo_head) S2_APPEND(",homo");
        if (p->num_dense_heads) S2_APPEND(",dense=%d", p->num_dense_heads);
        if (p->head_sliding_offset) S2_APPEND(",offset=%d", p->head_sliding_offset);
        if (!p->fix_coverage && !p->relative) S2_APPEND(",ref_step=%lld", (long long)c.step);
        S2_APPEND(")");
#undef S2_APPEND
        st = ak__sparse_finish_named(b, name, out);
    }
    ak_sparse_builder_destroy(b);
    return st;
}

ak_status ak_s2_coverage(ak_ctx *ctx, const ak_s2_params *p, int32_t n_blocks, int32_t *covered) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!p || !covered) return ak__fail(ctx, AK_ERR_NULL_POINTER, "s2 coverage: params or covered is NULL");
    if (n_blocks < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "s2 coverage: n_blocks = %d, must be >= 0", n_blocks);
    ak_status st = check_params(ctx, p);
    if (st != AK_OK) return st;
    s2c c;
    derive(p, &c);
    /* pairs (m, k), k <= m < n_blocks, outside every local window: m - k >= local, i.e. k < n_blocks - local */
    int64_t need = (int64_t)n_blocks - c.local;
    int ok = 1;
    if (need > 0 && c.n_sparse == c.hkv && c.vs > 1) {
        if (c.relative) {
            ok = 0; /* L = m - k - local + 1 takes the value 1 there, never a multiple of vs > 1 */
        } else {
            int64_t lim = need < c.vs ? need : c.vs;
            for (int64_t k = 0; k < lim && ok; k++) {
                int hit = 0;
                for (int32_t h = 0; h < c.hkv && !hit; h++) hit = residue(&c, h) == k;
                ok = hit;
            }
        }
    }
    *covered = ok;
    return AK_OK;
}
