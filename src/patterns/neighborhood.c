/*
 * Neighborhood Attention (NATTEN: NA, dilated NA, causal NA, GNA strided) as a sparse plan.
 *
 * The element rule lives with the plan (ak__na_window in core/sparse.h, applied per row by the mask
 * and by the executor's neighborhood walk); this builder only decides which queries share a block.
 * Every dilation group (coordinate mod dilation, on every axis) is an independent grid of in-group
 * coordinates; it is cut into query tiles of at most q_tile[axis] in-group coordinates per axis, one
 * gather list per tile, each flagged with the per-row neighborhood. The executor takes the union box
 * of a list's windows, so a tile costs (tile + kernel - 1) per axis for stride 1.
 *
 * Tile boundaries follow the stride groups: with stride s, the s consecutive in-group coordinates
 * [m*s, (m+1)*s) share one window (non-causal; causal: one window start). A tile of q_tile >= s
 * coordinates takes floor(q_tile / s) whole stride groups; with q_tile < s every stride group is split
 * into ceil(len / q_tile) near-equal pieces. So no tile straddles a stride-group border unless it holds
 * the groups entirely, and when q_tile divides s (or q_tile <= s, or the default tile and a larger
 * stride) every query of a tile shares one window: the union box is that window and the executor
 * computes only useful pairs (GNA's perfectly block-sparse case, waste 1).
 * Rows of a tile are listed row-major (the executor computes, per key row of the box, only the 16-column
 * groups between the first and last column that see it; row-major keeps those columns contiguous).
 *
 * Default tiles (in-group coordinates, clamped to the group length): 1-D 64, 2-D 8 x 8, 3-D 4 x 4 x 4.
 * Measured (1 thread, CPU time, min of 3..8 runs on a loaded 2-core AVX-512 machine, noise ~10 %) on
 * 2-D 128 x 128, kernel 13 x 13, d = 128, f32, Hq = 8: useful GFLOP/s and waste (computed / useful pairs)
 *   q_tile      4x4    4x8    8x4    8x8    6x6   12x12   4x16   8x16   16x16   2x32
 *   Hkv = 8    16-22  18-26  21-26  21-27   18     22    21-24  20-25   20      12
 *     waste    1.46   1.58   1.46   1.58   1.56   1.87   2.04   2.04    2.04    3.15
 *   Hkv = 2    29-34  24-32  24-32  28-32   28    23-27  19-21  18-27   21      14
 *     waste    1.21   1.48   1.21   1.48   1.36   1.75   2.04   2.04    2.04    3.15
 * 8 x 8, 8 x 4 and 4 x 8 are within the noise of each other; 4 x 4 runs the micro-kernels on too few
 * columns, long thin tiles (2 x 32, 4 x 16) and large ones waste more. 1-D L = 8192, k = 256: tiles
 * 64 .. 256 equal (49 GFLOP/s useful), 32: 45, 16: 37. 3-D 16 x 32 x 32, k = 7: 4 x 4 x 4 at least as
 * fast as 4 x 4 x 8, 2 x 4 x 4, 2 x 8 x 8, 1 x 8 x 8, 8 x 8 x 8.
 */
#include <stdio.h>
#include <string.h>

#include "core/sparse.h"

void ak_na_params_init(ak_na_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    for (int a = 0; a < 3; a++) {
        p->geom.dilation[a] = 1;
        p->geom.stride[a] = 1;
        p->geom.causal[a] = 0;
        p->q_tile[a] = 0;
    }
}

static const int32_t k_default_tile[3][3] = {{64, 0, 0}, {8, 8, 0}, {4, 4, 4}};

/* Tiles of one axis of a dilation group of length Lg: [st[i], st[i + 1]) for i < count, st[count] = Lg.
 * st may be NULL (count only). */
static int32_t axis_tiles(int32_t Lg, int32_t t, int32_t s, int32_t *st) {
    if (t > Lg) t = Lg;
    int32_t n = 0;
    if (t >= s) {
        int32_t unit = (t / s) * s;
        for (int32_t a = 0; a < Lg; a += unit) {
            if (st) st[n] = a;
            n++;
        }
    } else {
        for (int32_t a = 0; a < Lg; a += s) {
            int32_t len = Lg - a < s ? Lg - a : s;
            int32_t pieces = (len + t - 1) / t;
            for (int32_t i = 0; i < pieces; i++) {
                if (st) st[n] = a + (int32_t)((int64_t)i * len / pieces);
                n++;
            }
        }
    }
    if (st) st[n] = Lg;
    return n;
}

static int32_t group_len(int32_t L, int32_t d, int32_t g) { return (L - g + d - 1) / d; }

static void join3(char *buf, size_t len, const int32_t *v, int nd) {
    size_t k = 0;
    buf[0] = 0;
    for (int a = 0; a < nd && k < len; a++) k += (size_t)snprintf(buf + k, len - k, a ? "x%d" : "%d", v[a]);
}

ak_status ak_sparse_neighborhood(ak_ctx *ctx, const ak_na_params *p, ak_sparse **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "neighborhood: out is NULL");
    *out = NULL;
    if (!p) return ak__fail(ctx, AK_ERR_NULL_POINTER, "neighborhood: params is NULL");
    const ak_sparse_na *in = &p->geom;
    const int nd = in->ndim;
    if (nd < 1 || nd > 3) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: ndim = %d, must be 1, 2 or 3", nd);
    ak_sparse_na g;
    memset(&g, 0, sizeof g);
    g.ndim = nd;
    int32_t tile[3] = {1, 1, 1};
    int64_t n = 1;
    for (int a = 0; a < nd; a++) {
        int32_t L = in->extent[a], k = in->kernel[a], dl = in->dilation[a], s = in->stride[a], c = in->causal[a], t = p->q_tile[a];
        if (L < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: extent[%d] = %d, must be >= 1", a, L);
        if (dl < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: dilation[%d] = %d, must be >= 1", a, dl);
        if (k < 1 || k > L)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: kernel[%d] = %d, must be in [1, extent[%d] = %d]", a, k, a, L);
        if ((int64_t)k * dl > L)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT,
                            "neighborhood: kernel[%d] * dilation[%d] = %d * %d = %lld exceeds extent[%d] = %d", a, a, k, dl,
                            (long long)k * dl, a, L);
        if (s < 1 || s > k)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: stride[%d] = %d, must be in [1, kernel[%d] = %d]", a, s, a, k);
        if (c != 0 && c != 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: causal[%d] = %d, must be 0 or 1", a, c);
        if (t < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: q_tile[%d] = %d, must be >= 0 (0 = default)", a, t);
        n *= L;
        if (n > INT32_MAX)
            return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: the grid has more than 2^31 - 1 tokens");
        g.extent[a] = L;
        g.kernel[a] = k;
        g.dilation[a] = dl;
        g.stride[a] = s;
        g.causal[a] = c;
        tile[a] = t ? t : k_default_tile[nd - 1][a];
    }
    for (int a = nd; a < 3; a++) { /* unused axes: one coordinate, so the loops below need no cases */
        g.extent[a] = g.kernel[a] = g.dilation[a] = g.stride[a] = 1;
        tile[a] = 1;
    }

    /* count the tiles: per dilation group the product of the axes' tile counts */
    int64_t nblk = 0;
    int32_t maxrows = 1;
    for (int32_t g0 = 0; g0 < g.dilation[0]; g0++)
        for (int32_t g1 = 0; g1 < g.dilation[1]; g1++)
            for (int32_t g2 = 0; g2 < g.dilation[2]; g2++) {
                int32_t gg[3] = {g0, g1, g2};
                int64_t m = 1;
                for (int a = 0; a < 3; a++) m *= axis_tiles(group_len(g.extent[a], g.dilation[a], gg[a]), tile[a], g.stride[a], NULL);
                nblk += m;
            }
    if (nblk > INT32_MAX) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "neighborhood: %lld query tiles, at most 2^31 - 1", (long long)nblk);
    {
        int64_t r = 1;
        for (int a = 0; a < 3; a++) r *= tile[a] < g.extent[a] ? tile[a] : g.extent[a];
        maxrows = r > INT32_MAX ? INT32_MAX : (int32_t)r;
    }

    /* the plan's CSR arrays directly: tiles partition the rows, rows ascending within a tile */
    int64_t *qoff = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(nblk + 1));
    int32_t *rows = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    uint8_t *na = (uint8_t *)ak__alloc(ctx, (size_t)nblk + 1);
    int32_t *ts[3] = {NULL, NULL, NULL}; /* tile starts of one group's axes (at most Lg + 1 entries) */
    ak_status st = AK_OK;
    for (int a = 0; a < 3; a++) ts[a] = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * ((size_t)g.extent[a] + 2));
    if (!qoff || !rows || !na || !ts[0] || !ts[1] || !ts[2]) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "neighborhood: plan arrays (%lld rows, %lld tiles)", (long long)n, (long long)nblk);
        goto done;
    }
    int64_t qb = 0, e = 0;
    for (int32_t g0 = 0; g0 < g.dilation[0]; g0++)
        for (int32_t g1 = 0; g1 < g.dilation[1]; g1++)
            for (int32_t g2 = 0; g2 < g.dilation[2]; g2++) {
                int32_t gg[3] = {g0, g1, g2}, nt[3];
                for (int a = 0; a < 3; a++) nt[a] = axis_tiles(group_len(g.extent[a], g.dilation[a], gg[a]), tile[a], g.stride[a], ts[a]);
                for (int32_t i0 = 0; i0 < nt[0]; i0++)
                    for (int32_t i1 = 0; i1 < nt[1]; i1++)
                        for (int32_t i2 = 0; i2 < nt[2]; i2++, qb++) {
                            qoff[qb] = e;
                            na[qb] = 1;
                            for (int32_t u0 = ts[0][i0]; u0 < ts[0][i0 + 1]; u0++)
                                for (int32_t u1 = ts[1][i1]; u1 < ts[1][i1 + 1]; u1++)
                                    for (int32_t u2 = ts[2][i2]; u2 < ts[2][i2 + 1]; u2++) {
                                        int64_t x0 = g0 + (int64_t)g.dilation[0] * u0, x1 = g1 + (int64_t)g.dilation[1] * u1,
                                                x2 = g2 + (int64_t)g.dilation[2] * u2;
                                        rows[e++] = (int32_t)((x0 * g.extent[1] + x1) * g.extent[2] + x2);
                                    }
                        }
            }
    qoff[qb] = e;

    char name[320], ex[48], kk[48], dd[48], ss[48], cc[48]; /* 5 x 47 + the rest: never truncated */
    join3(ex, sizeof ex, g.extent, nd);
    join3(kk, sizeof kk, g.kernel, nd);
    join3(dd, sizeof dd, g.dilation, nd);
    join3(ss, sizeof ss, g.stride, nd);
    join3(cc, sizeof cc, g.causal, nd);
    int any_causal = 0;
    for (int a = 0; a < nd; a++) any_causal |= g.causal[a];
    snprintf(name, sizeof name, "na%dd(%s,k=%s,d=%s,s=%s%s%s)", nd, ex, kk, dd, ss, any_causal ? ",causal=" : "", any_causal ? cc : "");

    ak_sparse_desc desc;
    ak_sparse_desc_init(&desc);
    desc.n_batch = 1;
    desc.n_heads = 1;
    desc.nq = desc.nk = (int32_t)n;
    desc.causal = 0;
    desc.block_q = maxrows; /* the largest tile's row count (informational with gather lists) */
    desc.n_qblocks = (int32_t)nblk;
    desc.qrow_off = qoff;
    desc.qrows = rows;
    desc.na = na;
    desc.na_geom = g;
    for (int a = nd; a < 3; a++) { /* the plan keeps only the used axes */
        desc.na_geom.extent[a] = desc.na_geom.kernel[a] = desc.na_geom.dilation[a] = 0;
        desc.na_geom.stride[a] = desc.na_geom.causal[a] = 0;
    }
    desc.name = name;
    st = ak_sparse_create(ctx, &desc, out);
done:
    for (int a = 0; a < 3; a++) ak__free(ctx, ts[a]);
    ak__free(ctx, qoff);
    ak__free(ctx, rows);
    ak__free(ctx, na);
    return st;
}
