/*
 * plan.c — the `plan` mode: build the sparse pattern of each problem (..._sp-<kind>...) for its shape and
 * print what it is: the pattern's statistics (ak_sparse_get_stats), the statistics of a sparse plan with the
 * problem's heads and the context's threads (ak_plan_sparse_stats) and ak_plan_explain. --png FILE writes a
 * picture of the mask of one plan head (ak_sparse_density_grid: white = no active pair in the pixel, black =
 * every pair active, a 1-pixel gray frame), --json FILE the pattern as JSON (ak_sparse_to_json). Nothing is
 * computed on tensors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* path with "-<index>" before its extension when several problems share the option ("m.png" -> "m-2.png"). */
static void indexed_path(const char *path, int index, int n, char *buf, size_t len) {
    if (n <= 1) {
        snprintf(buf, len, "%s", path);
        return;
    }
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash) || dot == path || (slash && dot == slash + 1)) dot = path + strlen(path);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - path), path, index, dot);
}

/* The picture: at most grid x grid mask pixels (aspect kept), each the fraction of active pairs it covers. */
static int write_picture(ak_ctx *ctx, const ak_sparse *sp, const ak_sparse_desc *sd, int head, int grid,
                         const char *path) {
    char err[512];
    double scale = (double)grid / (double)(sd->nq > sd->nk ? sd->nq : sd->nk);
    if (scale > 1) scale = 1;
    int rows = (int)lround(sd->nq * scale), cols = (int)lround(sd->nk * scale);
    if (rows < 1) rows = 1;
    if (cols < 1) cols = 1;
    int W = cols + 2, H = rows + 2;
    float *g = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    unsigned char *px = malloc((size_t)W * (size_t)H);
    int rc = -1;
    if (!g || !px) {
        printf("  png        ERROR out of memory\n");
    } else {
        ak_status st = ak_sparse_density_grid(sp, 0, head, rows, cols, g);
        if (st != AK_OK) {
            printf("  png        ERROR ak_sparse_density_grid: %s\n", error_text(ctx, st));
        } else {
            memset(px, 128, (size_t)W * (size_t)H);   /* the frame */
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    float f = g[(size_t)r * cols + c];
                    f = f < 0 ? 0 : f > 1 ? 1 : f;
                    px[(size_t)(r + 1) * W + c + 1] = (unsigned char)lround(255.0 * (1.0 - f));
                }
            if (png_write(path, W, H, 1, px, err, sizeof(err)) != 0) {
                printf("  png        ERROR %s\n", err);
            } else {
                printf("  png        %s: %d x %d pixels, the mask of plan head %d of %d (batch 0) in %d x %d pixels of "
                       "%.4g x %.4g pairs, framed; white = no active pair, black = all active\n", path, W, H, head,
                       sd->n_heads, rows, cols, (double)sd->nq / rows, (double)sd->nk / cols);
                rc = 0;
            }
        }
    }
    free(g);
    free(px);
    return rc;
}

static int write_json(ak_ctx *ctx, const ak_sparse *sp, const char *path) {
    char *text = NULL;
    size_t len = 0;
    ak_status st = ak_sparse_to_json(ctx, sp, &text, &len);
    if (st != AK_OK) {
        printf("  json       ERROR ak_sparse_to_json: %s\n", error_text(ctx, st));
        return -1;
    }
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(text, 1, len, f) != len;
    if (f) bad |= fclose(f) != 0;
    ak_free(ctx, text);
    if (bad) {
        printf("  json       ERROR cannot write '%s'\n", path);
        return -1;
    }
    printf("  json       %s: %zu bytes (ak_sparse_to_json; reload with sp-json-%s)\n", path, len, path);
    return 0;
}

/* Print the explanation indented. */
static void print_explain(const char *text) {
    const char *s = text;
    printf("  explain\n");
    while (*s) {
        size_t n = strcspn(s, "\n");
        printf("    %.*s\n", (int)n, s);
        s += n;
        if (*s == '\n') s++;
    }
}

/* One problem. 0 = ok, 1 = a failure (printed), 2 = a usage error (printed). */
static int plan_one(ak_ctx *ctx, const options *o, const problem *p, int index, int n) {
    char name[1024], err[512], path[1024];
    ak_sparse *sp = NULL;
    ak_plan *plan = NULL;
    ak_sparse_desc sd;
    ak_sparse_stats st, ps;
    int rc = 1;
    problem_format(p, name, sizeof(name));
    printf("%s\n", name);
    if (sp_build(ctx, p, &sp, err, sizeof(err)) != 0) {
        printf("  ERROR %s\n", err);
        return 1;
    }
    ak_sparse_desc_init(&sd);
    ak_status s = ak_sparse_get_desc(sp, &sd);
    if (s == AK_OK) s = ak_sparse_get_stats(sp, &st);
    if (s != AK_OK) {
        printf("  ERROR %s\n", error_text(ctx, s));
        goto done;
    }
    printf("  pattern    %s: nq %d, nk %d, %s, %d batch x %d head%s, %d query block%s (%s)\n",
           *ak_sparse_name(sp) ? ak_sparse_name(sp) : "(unnamed)", sd.nq, sd.nk, sd.causal ? "causal" : "not causal",
           sd.n_batch, sd.n_heads, sd.n_heads == 1 ? "" : "s", sd.n_qblocks, sd.n_qblocks == 1 ? "" : "s",
           sd.qrow_off ? "gathered rows" : "fixed blocks");
    if (!sd.qrow_off) printf("             block_q %d\n", sd.block_q);
    printf("  lists      %lld: %lld spans, %lld cols, %lld bands, %lld with a neighborhood, %lld gathered rows\n",
           (long long)st.n_lists, (long long)st.n_spans, (long long)st.n_cols, (long long)st.n_bands, (long long)st.n_na,
           (long long)st.n_rows_gathered);
    printf("  pairs      %.0f active of %.0f %s pairs (every plan batch and head): density %.6f\n", st.pairs,
           sd.causal ? st.causal_pairs : st.dense_pairs, sd.causal ? "causal" : "dense", st.density);
    ak_attn_desc d;
    problem_desc(p, &d);
    s = ak_plan_create_sparse(ctx, &d, sp, &plan);
    if (s == AK_OK) s = ak_plan_sparse_stats(plan, &ps);
    if (s != AK_OK) {
        printf("  ERROR %s\n", error_text(ctx, s));
        goto done;
    }
    printf("  problem    B %d, Hq %d, Hkv %d, d %d, dv %d%s: %.0f executed (row, key) products for %.0f active "
           "(waste %.4f)\n", p->B, p->Hq, p->Hkv, p->d, p->dv, p->causal ? ", causal" : "", ps.exec_pairs,
           ps.useful_flops / (2.0 * (p->d + p->dv)), ps.waste);
    printf("             useful %.6g GFLOP; %lld work items, balance %.4f on %d threads; kernel %s\n",
           ps.useful_flops * 1e-9, (long long)ps.n_items, ps.balance, ak_ctx_get_num_threads(ctx),
           ak_plan_kernel_name(plan));
    print_explain(ak_plan_explain(plan));
    rc = 0;
    if (o->png) {
        if (o->head >= sd.n_heads) {
            printf("  png        ERROR --head %d: the pattern has %d plan head%s (0 .. %d)\n", o->head, sd.n_heads,
                   sd.n_heads == 1 ? "" : "s", sd.n_heads - 1);
            rc = 2;
        } else if (sd.nq < 1 || sd.nk < 1) {
            printf("  png        ERROR the pattern is empty (nq %d, nk %d)\n", sd.nq, sd.nk);
            rc = 1;
        } else {
            indexed_path(o->png, index, n, path, sizeof(path));
            if (write_picture(ctx, sp, &sd, o->head, o->grid, path) != 0) rc = 1;
        }
    }
    if (o->json) {
        indexed_path(o->json, index, n, path, sizeof(path));
        if (write_json(ctx, sp, path) != 0 && rc == 0) rc = 1;
    }
done:
    ak_plan_destroy(plan);
    ak_sparse_destroy(sp);
    return rc;
}

int mode_plan(const options *o, char **specs, int n_specs) {
    problem *probs = NULL;
    int n = 0, worst = 0;
    if (problems_from_args(specs, n_specs, &probs, &n) != 0) return 2;
    for (int i = 0; i < n; i++)
        if (probs[i].sp.kind == SP_NONE) {
            char name[1024];
            problem_format(&probs[i], name, sizeof(name));
            fprintf(stderr, "attnkit: plan needs a sparse problem (a dense problem plus _sp-<kind>...): '%s'\n"
                            "(attnkit --help lists the patterns)\n", name);
            free(probs);
            return 2;
        }
    ak_ctx *ctx = NULL;
    if (ctx_from_options(o, 0, &ctx) != 0) { free(probs); return 1; }
    for (int i = 0; i < n; i++) {
        int rc = plan_one(ctx, o, &probs[i], i, n);
        if (rc > worst) worst = rc;
    }
    ak_ctx_destroy(ctx);
    free(probs);
    return worst;
}
