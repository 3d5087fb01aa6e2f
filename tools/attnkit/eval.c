/*
 * eval.c — `attnkit sparse-eval`: the accuracy / speed trade-off of the content-aware sparse methods.
 *
 * For one attention problem and one input (synthetic Q/K/V with planted structure, or Q/K/V loaded from
 * .npy files), runs our dense kernel once (timed, with LSE), then every method spec given
 * (ak_dyn_plan_named syntax; "a/b/c" in a value sweeps it): the planner (timed: estimation), the sparse
 * plan's creation (timed) and its run (timed, with LSE), and reports per method
 *   recall     attention-mass recall: the fraction of the dense softmax mass on the pairs the plan computes,
 *              per (head, row) = exp(LSE_sparse - LSE_dense) (exact: both are log-sums of the same logits);
 *              mean, min and 1st percentile over every (sequence, head, row). Mean-combined (routing) plans
 *              and plans with a key bias are measured on sampled rows instead, from explicit dense
 *              probabilities in double over the row's key set (ak_sparse_row_mask).
 *   rel_err    ||O_sparse - O_dense||_F / ||O_dense||_F over everything
 *   est_ms, plan_ms, compute_ms, total_ms = their sum; dense_ms; speedup = dense_ms / total_ms; density
 * as a table (human / md / csv / json / jsonl) and, with --png, a picture of speedup (log2) against recall.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- inputs: planted structure ---- */

/* Store x at element (b, h, i, c) of view t. */
static void put(const ak_tensor *t, int64_t b, int64_t h, int64_t i, int64_t c, float x) {
    int64_t off = b * t->stride[0] + h * t->stride[1] + i * t->stride[2] + c * t->stride[3];
    if (t->dtype == AK_F32) ((float *)t->data)[off] = x;
    else if (t->dtype == AK_BF16) ((uint16_t *)t->data)[off] = ak_f32_to_bf16(x);
    else ((uint16_t *)t->data)[off] = ak_f32_to_f16(x);
}

/*
 * Planted inputs (kinds: lines, needle, local, mix). Head dimensions split into a rotary part (the first
 * d - G dims, G = min(16, d / 4)) and a global part (the last G). The rotary pairs are half "sharp" (random
 * frequencies in (pi/2, pi): q . k peaks on one offset) and half "wide" (frequencies about pi/64: a window of
 * a few dozen keys). Query row i carries rot(pos - delta) u on its pairs and key j carries rot(j) u, so q . k
 * peaks where pos - j = delta: a "slash" at offset delta (delta = 0: the diagonal). Global: every query
 * carries g, the planted "vertical" keys (16 random ones and the first 4, the sinks) carry 0.9 g (4 of them
 * 1.1 g). The peak adds +20 to the scaled logit, the verticals +18: the planted pairs hold almost all of the
 * softmax mass even at 64k keys. Per query head: lines = sharp slashes {0, delta_h} + verticals; needle =
 * the sharp diagonal at 0.7 strength + verticals at 1.3; local = the wide window + verticals (sinks);
 * mix cycles the three over the query heads. Values random.
 */
static int plant(inputs *in, const char *kind, uint64_t seed, char *err, size_t errlen) {
    const problem *p = &in->p;
    int d = p->d, G = d / 4 < 16 ? d / 4 : 16, M = (d - G) / 2, Ms = M / 2, R = 2 * M;
    int kid = !strcmp(kind, "lines") ? 0 : !strcmp(kind, "needle") ? 1 : !strcmp(kind, "local") ? 2 : !strcmp(kind, "mix") ? 3 : -1;
    if (kid < 0) {
        snprintf(err, errlen, "unknown synthetic input '%s' (lines, needle, local, mix, random)", kind);
        return -1;
    }
    if (G < 1 || Ms < 1) {
        snprintf(err, errlen, "planted inputs need head_dim >= 8");
        return -1;
    }
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 12345;
    enum { NV = 16 };
    double *w = malloc(sizeof(double) * M);
    int32_t vert[NV];
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int m = 0; m < M; m++)
        w[m] = m < Ms ? 3.14159265 * (0.75 + 0.25 * rng_uniform(&rng)) : 3.14159265 / 64.0 * (0.75 + 0.25 * rng_uniform(&rng));
    for (int v = 0; v < NV; v++) vert[v] = (int32_t)(rng_next(&rng) % (uint64_t)p->Lk);
    double scale = isnan(p->scale) ? 1.0 / sqrt((double)d) : p->scale;
    double peak = 20.0 / scale, as = sqrt(peak / Ms), aw = sqrt(peak / (M - Ms)), ag = sqrt(peak / G);
    for (int b = 0; b < in->Bt; b++) {
        for (int h = 0; h < p->Hq; h++) {
            int k = kid == 3 ? h % 3 : kid;
            int64_t delta = 16 + (int64_t)((uint64_t)(h * 7919 + 31) % (uint64_t)(p->Lk / 8 + 1));
            for (int64_t i = 0; i < p->Lq; i++) {
                int64_t pos = i + p->Lk - p->Lq;
                for (int m = 0; m < M; m++) {
                    int sharp = m < Ms;
                    double x = 0, y = 0;
                    if (sharp && k != 2) { /* the diagonal (needle: weaker), and the second slash (lines) */
                        double a = as * (k == 1 ? 0.7 : 1.0);
                        x = a * cos(w[m] * pos) + (k == 0 ? a * cos(w[m] * (pos - delta)) : 0.0);
                        y = a * sin(w[m] * pos) + (k == 0 ? a * sin(w[m] * (pos - delta)) : 0.0);
                    } else if (!sharp && k == 2) {
                        x = aw * cos(w[m] * pos);
                        y = aw * sin(w[m] * pos);
                    }
                    put(&in->t.q, b, h, i, 2 * m, (float)x);
                    put(&in->t.q, b, h, i, 2 * m + 1, (float)y);
                }
                for (int c = R; c < d; c++) put(&in->t.q, b, h, i, c, (float)(ag * (k == 1 ? 1.3 : 1.0)));
            }
        }
        for (int hk = 0; hk < p->Hkv; hk++)
            for (int64_t j = 0; j < p->Lk; j++) {
                for (int m = 0; m < M; m++) {
                    double a = m < Ms ? as : aw;
                    put(&in->t.k, b, hk, j, 2 * m, (float)(a * cos(w[m] * j)));
                    put(&in->t.k, b, hk, j, 2 * m + 1, (float)(a * sin(w[m] * j)));
                }
                int is_v = j < 4, strong = 0;
                for (int v = 0; v < NV; v++)
                    if (vert[v] == j) is_v = 1, strong = v < 4;
                double gv = is_v ? (strong ? 1.1 : 0.9) * ag : 0.0;
                for (int c = R; c < d; c++) put(&in->t.k, b, hk, j, c, (float)(gv + 0.05 * rng_uniform(&rng)));
                for (int c = 0; c < p->dv; c++) put(&in->t.v, b, hk, j, c, rng_uniform(&rng));
            }
    }
    free(w);
    return 0;
}

/* ---- inputs: .npy files ---- */

/* Load DIR/name.npy (little-endian f4 / f2, C order, shape [H][L][D] or [B][H][L][D]) into view t. */
static int load_npy(const char *dir, const char *name, const ak_tensor *t, char *err, size_t errlen) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    size_t len = 0;
    char *buf = read_file(path, &len);
    if (!buf) {
        snprintf(err, errlen, "cannot read %s", path);
        return -1;
    }
    int rc = -1;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        snprintf(err, errlen, "%s: not a .npy file", path);
        goto out;
    }
    size_t hlen = (unsigned char)buf[6] == 1 ? (size_t)(unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8
                                              : (size_t)(unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8 |
                                                    (size_t)(unsigned char)buf[10] << 16 | (size_t)(unsigned char)buf[11] << 24;
    size_t hoff = (unsigned char)buf[6] == 1 ? 10 : 12;
    if (hoff + hlen > len) {
        snprintf(err, errlen, "%s: truncated header", path);
        goto out;
    }
    char *hdr = buf + hoff, save = hdr[hlen - 1];
    hdr[hlen - 1] = 0;
    int f2 = strstr(hdr, "'<f2'") != NULL, f4 = strstr(hdr, "'<f4'") != NULL;
    char *sh = strstr(hdr, "'shape': (");
    int fortran = strstr(hdr, "'fortran_order': True") != NULL;
    long dims[4] = {0, 0, 0, 0};
    int nd = 0;
    if (sh) {
        char *s = sh + 10;
        while (nd < 4 && *s && *s != ')') {
            dims[nd++] = strtol(s, &s, 10);
            while (*s == ',' || *s == ' ') s++;
        }
    }
    hdr[hlen - 1] = save;
    if ((!f2 && !f4) || fortran || !sh || (nd != 3 && nd != 4)) {
        snprintf(err, errlen, "%s: need dtype <f4 or <f2, C order, 3 or 4 dims", path);
        goto out;
    }
    long B = nd == 4 ? dims[0] : 1, H = dims[nd - 3], L = dims[nd - 2], D = dims[nd - 1];
    if (B != t->shape[0] || H != t->shape[1] || L != t->shape[2] || D != t->shape[3]) {
        snprintf(err, errlen, "%s: shape (%ld, %ld, %ld, %ld), the problem needs (%lld, %lld, %lld, %lld)", path, B, H, L, D,
                 (long long)t->shape[0], (long long)t->shape[1], (long long)t->shape[2], (long long)t->shape[3]);
        goto out;
    }
    size_t es = f4 ? 4 : 2, n = (size_t)B * H * L * D;
    if (hoff + hlen + n * es > len) {
        snprintf(err, errlen, "%s: %zu bytes of data, expected %zu", path, len - hoff - hlen, n * es);
        goto out;
    }
    const unsigned char *data = (const unsigned char *)buf + hoff + hlen;
    size_t x = 0;
    for (long b = 0; b < B; b++)
        for (long h = 0; h < H; h++)
            for (long i = 0; i < L; i++)
                for (long c = 0; c < D; c++, x++) {
                    float v;
                    if (f4) memcpy(&v, data + 4 * x, 4);
                    else v = ak_f16_to_f32((uint16_t)(data[2 * x] | data[2 * x + 1] << 8));
                    put(t, b, h, i, c, v);
                }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* ---- runs ---- */

typedef struct run_out {
    float *o;          /* [B][Hq][Lq][dv] as f32 */
    float *lse;        /* [B][Hq][Lq] */
    double ms;         /* median run time */
} run_out;

/* Copy the run's O (any dtype, the problem's layout) and LSE out as dense f32. */
static void grab(const inputs *in, run_out *r) {
    const problem *p = &in->p;
    size_t x = 0;
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < p->Hq; h++)
            for (int64_t i = 0; i < p->Lq; i++) {
                for (int c = 0; c < p->dv; c++) r->o[x * p->dv + c] = (float)tensor_get(&in->t.o, b, h, i, c);
                r->lse[x] = ((const float *)in->t.lse.data)[b * in->t.lse.stride[0] + h * in->t.lse.stride[1] + i * in->t.lse.stride[2]];
                x++;
            }
}

/* Run plan `plan` warmup + reps times; median time; outputs into r. */
static ak_status run_plan(ak_plan *plan, inputs *in, const options *o, run_out *r) {
    size_t ws_size = ak_plan_workspace_size(plan);
    void *ws = ws_size ? xalloc(ws_size) : NULL;
    double *ms = malloc(sizeof(double) * (size_t)o->reps);
    ak_status st = (ws_size && !ws) || !ms ? AK_ERR_OUT_OF_MEMORY : AK_OK;
    for (int w = 0; st == AK_OK && w < o->warmup; w++) st = ak_attention_run(plan, &in->t, ws, ws_size);
    for (int k = 0; st == AK_OK && k < o->reps; k++) {
        double t0 = now_seconds();
        st = ak_attention_run(plan, &in->t, ws, ws_size);
        ms[k] = (now_seconds() - t0) * 1e3;
    }
    if (st == AK_OK) {
        r->ms = median_of(ms, o->reps);
        grab(in, r);
    }
    free(ws);
    free(ms);
    return st;
}

/* Expand "a/b/c" alternatives of values in a method spec into separate specs (at most 64). */
static int expand_spec(const char *spec, char out[][256], int max) {
    int n = 1;
    snprintf(out[0], 256, "%s", spec);
    for (;;) {
        int grew = 0;
        for (int s = 0; s < n && !grew; s++) {
            char *sl = strchr(out[s], '/');
            if (!sl) continue;
            /* the alternatives run from after the last '=' or ',' before sl to the next ',' */
            char *a = sl;
            while (a > out[s] && a[-1] != '=' && a[-1] != ',') a--;
            char *z = strchr(sl, ',');
            size_t pre = (size_t)(a - out[s]);
            char alts[256], rest[256], base[256];
            snprintf(base, sizeof base, "%.*s", (int)pre, out[s]);
            snprintf(alts, sizeof alts, "%.*s", z ? (int)(z - a) : (int)strlen(a), a);
            snprintf(rest, sizeof rest, "%s", z ? z : "");
            char tmp[64][256];
            int k = 0;
            for (char *tok = strtok(alts, "/"); tok && k < 64; tok = strtok(NULL, "/")) {
                if (strlen(base) + strlen(tok) + strlen(rest) >= 256) return -1;
                memcpy(tmp[k], base, strlen(base) + 1);
                strcat(tmp[k], tok);
                strcat(tmp[k], rest);
                k++;
            }
            if (n - 1 + k > max) return -1;
            for (int x = n - 1; x > s; x--) memcpy(out[x + k - 1], out[x], 256);
            for (int x = 0; x < k; x++) memcpy(out[s + x], tmp[x], 256);
            n += k - 1;
            grew = 1;
        }
        if (!grew) break;
    }
    return n;
}

/* Exact recall on sampled rows from explicit probabilities (double): mean/min over the samples. */
static int sampled_recall(const inputs *in, const ak_sparse *sp, int n_samples, double *mean, double *mn) {
    const problem *p = &in->p;
    ak_sparse_desc sd;
    ak_sparse_get_desc(sp, &sd);
    uint8_t *keys = malloc((size_t)p->Lk);
    double *s = malloc(sizeof(double) * (size_t)p->Lk);
    if (!keys || !s) {
        free(keys), free(s);
        return -1;
    }
    double sum = 0, lo = 1;
    int cnt = 0;
    uint64_t rng = 99;
    for (int k = 0; k < n_samples; k++) {
        int b = (int)(rng_next(&rng) % (uint64_t)p->B), h = (int)(rng_next(&rng) % (uint64_t)p->Hq);
        int64_t i = (int64_t)(rng_next(&rng) % (uint64_t)p->Lq), pos = i + p->Lk - p->Lq;
        int pb = sd.n_batch == 1 ? 0 : b, ph = sp_plan_head(sd.n_heads, p->Hq, p->Hkv, h), hk = h / (p->Hq / p->Hkv);
        if (ak_sparse_row_mask(sp, pb, ph, (int32_t)i, keys) != AK_OK) break;
        double scale = isnan(p->scale) ? 1.0 / sqrt((double)p->d) : p->scale, mx = -INFINITY, den = 0, in_set = 0;
        for (int64_t j = 0; j < p->Lk; j++) {
            if (p->causal && j > pos) {
                s[j] = -INFINITY;
                continue;
            }
            double dot = 0;
            for (int c = 0; c < p->d; c++) dot += tensor_get(&in->t.q, b, h, i, c) * tensor_get(&in->t.k, b, hk, j, c);
            s[j] = scale * dot;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int64_t j = 0; j < p->Lk; j++) {
            double e = s[j] == -INFINITY ? 0 : exp(s[j] - mx);
            den += e;
            if (keys[j]) in_set += e;
        }
        double r = den > 0 ? in_set / den : 1;
        sum += r;
        lo = r < lo ? r : lo;
        cnt++;
    }
    free(keys), free(s);
    *mean = cnt ? sum / cnt : NAN;
    *mn = cnt ? lo : NAN;
    return 0;
}

/* ---- the picture: speedup (log2, y) against recall (x), one colour per method ---- */

static const char *const font3x5[] = {"111101101101111", "010110010010111", "111001111100111", "111001111001111",
                                      "101101111001001", "111100111001111", "111100111101111", "111001001001001",
                                      "111101111101111", "111101111001111"};

static void px(unsigned char *img, int W, int H, int x, int y, const unsigned char *c) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    memcpy(img + 3 * ((size_t)y * W + x), c, 3);
}

static void text(unsigned char *img, int W, int H, int x, int y, const char *s, const unsigned char *c) {
    for (; *s; s++, x += 4) {
        if (*s == '.') {
            px(img, W, H, x, y + 4, c);
            x -= 2;
            continue;
        }
        if (*s < '0' || *s > '9') continue;
        const char *g = font3x5[*s - '0'];
        for (int r = 0; r < 5; r++)
            for (int k = 0; k < 3; k++)
                if (g[r * 3 + k] == '1') px(img, W, H, x + k, y + r, c);
    }
}

static void line(unsigned char *img, int W, int H, int x0, int y0, int x1, int y1, const unsigned char *c) {
    int n = abs(x1 - x0) > abs(y1 - y0) ? abs(x1 - x0) : abs(y1 - y0);
    for (int k = 0; k <= n; k++) px(img, W, H, x0 + (n ? (x1 - x0) * k / n : 0), y0 + (n ? (y1 - y0) * k / n : 0), c);
}

typedef struct point {
    double recall, speedup;
    int method;
} point;

static const unsigned char palette[8][3] = {{214, 39, 40}, {31, 119, 180}, {44, 160, 44}, {148, 103, 189},
                                            {255, 127, 14}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};
static const char *const color_name[8] = {"red", "blue", "green", "purple", "orange", "brown", "pink", "cyan"};

static int picture(const char *path, const point *pt, int n, char *err, size_t errlen) {
    const int W = 720, H = 480, L = 40, Rm = 20, T = 20, Bm = 30;
    unsigned char *img = malloc((size_t)W * H * 3);
    if (!img) return snprintf(err, errlen, "out of memory"), -1;
    memset(img, 255, (size_t)W * H * 3);
    double xmin = 1, ymax = 1;
    for (int k = 0; k < n; k++) {
        if (pt[k].recall < xmin) xmin = pt[k].recall;
        if (pt[k].speedup > ymax) ymax = pt[k].speedup;
    }
    xmin = floor((xmin - 0.02) * 20) / 20;
    if (xmin < 0) xmin = 0;
    if (xmin > 0.9) xmin = 0.9;
    double y0 = -2, y1 = ceil(log2(ymax > 1 ? ymax : 1)) + 1;
    const unsigned char grid[3] = {225, 225, 225}, axis[3] = {0, 0, 0}, one[3] = {150, 150, 150};
    int pw = W - L - Rm, ph = H - T - Bm;
    for (double x = xmin; x <= 1.0001; x += 0.05) {
        int X = L + (int)((x - xmin) / (1 - xmin) * pw);
        line(img, W, H, X, T, X, T + ph, grid);
        char lab[16];
        snprintf(lab, sizeof lab, "%.2f", x);
        text(img, W, H, X - 6, T + ph + 6, lab, axis);
    }
    for (double y = y0; y <= y1; y += 1) {
        int Y = T + ph - (int)((y - y0) / (y1 - y0) * ph);
        line(img, W, H, L, Y, L + pw, Y, y == 0 ? one : grid);
        char lab[16];
        snprintf(lab, sizeof lab, y >= 0 ? "%.0f" : "%.2f", pow(2, y));
        text(img, W, H, 4, Y - 2, lab, axis);
    }
    line(img, W, H, L, T, L, T + ph, axis);
    line(img, W, H, L, T + ph, L + pw, T + ph, axis);
    int prev = -1, px0 = 0, py0 = 0;
    for (int k = 0; k < n; k++) {
        double y = log2(pt[k].speedup > 0 ? pt[k].speedup : 1e-3);
        int X = L + (int)((pt[k].recall - xmin) / (1 - xmin) * pw), Y = T + ph - (int)((y - y0) / (y1 - y0) * ph);
        const unsigned char *c = palette[pt[k].method % 8];
        if (prev == pt[k].method) line(img, W, H, px0, py0, X, Y, c);
        for (int a = -3; a <= 3; a++)
            for (int b = -3; b <= 3; b++) px(img, W, H, X + a, Y + b, c);
        prev = pt[k].method, px0 = X, py0 = Y;
    }
    int rc = png_write(path, W, H, 3, img, err, errlen);
    free(img);
    return rc;
}

/* ---- the mode ---- */

static void usage_eval(void) {
    fprintf(stderr, "usage: attnkit sparse-eval [--input syn:lines|syn:needle|syn:local|syn:mix|syn:random|npy:DIR] "
                    "[--png FILE] [-r reps] [-o fmt] <problem> <method[:key=value,...]>...\n"
                    "  problem: a dense causal problem string without varlen (e.g. b1_h8_hkv2_q32768_d128_causal_bf16)\n"
                    "  method: flexprefill, minference, mminference, anchor, dhsa, routing, dma with options\n"
                    "  (docs/DYNAMIC.md); 'a/b/c' in a value sweeps it: flexprefill:gamma=0.8/0.9/0.95\n");
}

int mode_eval(const options *o, char **args, int n_args) {
    if (n_args < 2) {
        usage_eval();
        return 2;
    }
    problem p;
    char err[2048];
    if (problem_parse(args[0], &p, err, sizeof err) != 0) {
        fprintf(stderr, "attnkit: %s\n", err);
        return 2;
    }
    if (p.decode || p.linear || p.varlen || p.sp.kind != SP_NONE || !p.causal) {
        fprintf(stderr, "attnkit: sparse-eval takes a dense causal problem without varlen or a pattern\n");
        return 2;
    }
    p.lse = 1;
    setvbuf(stdout, NULL, _IOLBF, 0); /* a row per line as it is measured: long runs can be cut short */
    const char *input = o->input ? o->input : "syn:mix";
    inputs in;
    if (inputs_create(&p, o->seed, &in, err, sizeof err) != 0) {
        fprintf(stderr, "attnkit: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (!strncmp(input, "syn:", 4)) {
        if (strcmp(input + 4, "random") != 0) rc = plant(&in, input + 4, o->seed, err, sizeof err);
    } else if (!strncmp(input, "npy:", 4)) {
        rc = load_npy(input + 4, "q", &in.t.q, err, sizeof err);
        if (rc == 0) rc = load_npy(input + 4, "k", &in.t.k, err, sizeof err);
        if (rc == 0) rc = load_npy(input + 4, "v", &in.t.v, err, sizeof err);
    } else {
        snprintf(err, sizeof err, "--input %s: syn:<kind> or npy:<dir>", input);
        rc = -1;
    }
    if (rc != 0) {
        fprintf(stderr, "attnkit: %s\n", err);
        inputs_free(&in);
        return 2;
    }
    ak_ctx *ctx = NULL;
    if (ctx_from_options(o, 0, &ctx) != 0) {
        inputs_free(&in);
        return 1;
    }
    size_t no = (size_t)p.B * p.Hq * p.Lq * p.dv, nl = (size_t)p.B * p.Hq * p.Lq;
    run_out dense = {malloc(sizeof(float) * no), malloc(sizeof(float) * nl), 0}, sp_out = {malloc(sizeof(float) * no),
                                                                                       malloc(sizeof(float) * nl), 0};
    point *pts = calloc(64 * (size_t)n_args, sizeof(point));
    ak_plan *plan = NULL, *dplan = NULL;
    ak_status st = !dense.o || !dense.lse || !sp_out.o || !sp_out.lse || !pts ? AK_ERR_OUT_OF_MEMORY
                                                                              : ak_plan_create(ctx, &in.desc, &dplan);
    if (st == AK_OK) st = run_plan(dplan, &in, o, &dense);
    double dense_prev = dense.ms;
    if (st != AK_OK) {
        fprintf(stderr, "attnkit: dense run: %s\n", error_text(ctx, st));
        rc = 1;
        goto done;
    }
    double dn = 0;
    for (size_t x = 0; x < no; x++) dn += (double)dense.o[x] * dense.o[x];
    char name[1024];
    problem_format(&p, name, sizeof name);
    if (o->out == OUT_HUMAN)
        printf("attnkit sparse-eval: %s, input %s, %d threads, isa %s, dense %.1f ms (median of %d)\n"
               "%-44s %7s %7s %7s %9s %8s %8s %10s %10s %8s %7s\n",
               name, input, ak_ctx_get_num_threads(ctx), ak_isa_name(ak_ctx_get_isa(ctx)), dense.ms, o->reps, "method",
               "recall", "min", "p1", "rel_err", "density", "est_ms", "compute_ms", "total_ms", "speedup", "color");
    if (o->out == OUT_HUMAN && o->dense_every) printf("(--dense-every: each speedup against the mean of the dense runs before and after it)\n");
    int rows = 0, n_pts = 0;
    static bench_row br;
    for (int a = 1; a < n_args; a++) {
        char specs[64][256];
        int ns = expand_spec(args[a], specs, 64);
        if (ns < 0) {
            fprintf(stderr, "attnkit: %s: too many alternatives\n", args[a]);
            rc = 2;
            continue;
        }
        for (int s = 0; s < ns; s++) {
            double *est = malloc(sizeof(double) * (size_t)o->reps);
            ak_sparse *sp = NULL;
            ak_dyn_info info;
            st = est ? AK_OK : AK_ERR_OUT_OF_MEMORY;
            /* timed without info (whose plan statistics cost a pass over every row), then once with it */
            for (int k = 0; st == AK_OK && k <= o->reps; k++) {
                ak_sparse_destroy(sp);
                sp = NULL;
                double t0 = now_seconds();
                st = ak_dyn_plan_named(ctx, specs[s], &in.desc, &in.t, &sp, k == o->reps ? &info : NULL);
                if (k < o->reps) est[k] = (now_seconds() - t0) * 1e3;
            }
            double t0 = now_seconds();
            if (st == AK_OK) st = ak_plan_create_sparse(ctx, &in.desc, sp, &plan);
            double plan_ms = (now_seconds() - t0) * 1e3;
            for (size_t x = 0; x < no; x++) sp_out.o[x] = NAN;
            if (st == AK_OK) st = run_plan(plan, &in, o, &sp_out);
            ak_plan_destroy(plan);
            plan = NULL;
            if (st != AK_OK) {
                fprintf(stderr, "attnkit: %s: %s\n", specs[s], error_text(ctx, st));
                rc = 1;
                ak_sparse_destroy(sp);
                free(est);
                continue;
            }
            double est_ms = median_of(est, o->reps), dense_ms = dense.ms;
            if (o->dense_every) { /* the host changes speed: dense timed again after each method, the mean of
                                   * the runs before and after it is its comparison */
                double t1 = now_seconds();
                if (ak_attention_run(dplan, &in.t, NULL, 0) == AK_OK) {
                    double now_ms = (now_seconds() - t1) * 1e3;
                    dense_ms = 0.5 * (dense_prev + now_ms);
                    dense_prev = now_ms;
                }
            }
            free(est);
            ak_sparse_desc sd;
            ak_sparse_get_desc(sp, &sd);
            ak_sparse_stats sst;
            ak_sparse_get_stats(sp, &sst);
            double rmean = 0, rmin = 1, p1 = 1, err2 = 0;
            int sampled = sd.combine == AK_SPARSE_MEAN || sd.key_bias != NULL;
            if (sampled) {
                sampled_recall(&in, sp, 256, &rmean, &rmin);
                p1 = NAN;
            } else {
                double *r = malloc(sizeof(double) * nl);
                size_t cnt = 0;
                for (size_t x = 0; x < nl && r; x++) {
                    if (!isfinite(dense.lse[x])) continue;
                    double v = sp_out.lse[x] == -INFINITY ? 0.0 : exp((double)sp_out.lse[x] - dense.lse[x]);
                    r[cnt++] = v > 1 ? 1 : v;
                }
                for (size_t x = 0; x < cnt; x++) {
                    rmean += r[x];
                    rmin = r[x] < rmin ? r[x] : rmin;
                }
                rmean = cnt ? rmean / cnt : NAN;
                if (cnt) { /* 1st percentile: sorted sample of at most 1M values (every stp-th row) */
                    size_t m = cnt < 1000000 ? cnt : 1000000, stp = cnt / m;
                    double *sm = malloc(sizeof(double) * m);
                    if (sm) {
                        for (size_t x = 0; x < m; x++) sm[x] = r[x * stp];
                        qsort(sm, m, sizeof(double), cmp_double);
                        p1 = sm[m / 100];
                        free(sm);
                    }
                }
                free(r);
            }
            for (size_t x = 0; x < no; x++) {
                double e = (double)sp_out.o[x] - dense.o[x];
                err2 += e * e;
            }
            double rel = dn > 0 ? sqrt(err2 / dn) : sqrt(err2);
            double total = est_ms + plan_ms + sp_out.ms, speedup = dense_ms / total;
            pts[n_pts].recall = rmean;
            pts[n_pts].speedup = speedup;
            pts[n_pts].method = a - 1;
            n_pts++;
            if (o->out == OUT_HUMAN) {
                printf("%-44s %7.4f %7.4f %7.4f %9.2e %8.4f %8.1f %10.1f %10.1f %7.2fx %7s\n", specs[s], rmean, rmin, p1, rel,
                       sst.density, est_ms, sp_out.ms, total, speedup, color_name[(a - 1) % 8]);
            } else {
                br.n = 0;
                add_str(&br, "problem", name);
                add_str(&br, "input", input);
                add_str(&br, "method", specs[s]);
                add_str(&br, "plan", ak_sparse_name(sp));
                add_num(&br, "recall_mean", rmean);
                add_num(&br, "recall_min", rmin);
                add_num(&br, "recall_p1", p1);
                add_str(&br, "recall_from", sampled ? "256 sampled rows" : "every row (LSE)");
                add_num(&br, "rel_err", rel);
                add_num(&br, "density", sst.density);
                add_num(&br, "est_ms", est_ms);
                add_num(&br, "plan_ms", plan_ms);
                add_num(&br, "compute_ms", sp_out.ms);
                add_num(&br, "total_ms", total);
                add_num(&br, "dense_ms", dense_ms);
                add_num(&br, "speedup", speedup);
                add_num(&br, "est_fraction", est_ms / total);
                add_int(&br, "threads", ak_ctx_get_num_threads(ctx));
                add_str(&br, "isa", ak_isa_name(ak_ctx_get_isa(ctx)));
                add_str(&br, "color", color_name[(a - 1) % 8]);
                add_str(&br, "explain", info.explain);
                write_header(stdout, &br, o->out, rows == 0);
                write_row(stdout, &br, o->out, rows);
                rows++;
            }
            ak_sparse_destroy(sp);
        }
    }
    if (o->out == OUT_JSON) printf(rows ? "\n]\n" : "[]\n");
    if (o->png && n_pts && picture(o->png, pts, n_pts, err, sizeof err) != 0) {
        fprintf(stderr, "attnkit: %s\n", err);
        rc = 1;
    }
done:
    ak_plan_destroy(dplan);
    free(dense.o), free(dense.lse), free(sp_out.o), free(sp_out.lse), free(pts);
    inputs_free(&in);
    ak_ctx_destroy(ctx);
    return rc;
}

