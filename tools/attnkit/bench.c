/*
 * bench.c — the `bench` mode: time ak_attention_run on every problem of a sweep.
 *
 * Per problem: inputs allocated and filled once, one plan and one workspace, `warmup` untimed runs,
 * then `reps` timed runs of ak_attention_run alone. Useful FLOPs = 2 (d + dv) x visible pairs x Hq
 * (pairs counted exactly from the masks), GFLOP/s from the median time, and % of the ceiling that
 * ak_measure_peak() measured at the start of the same run: the fp32 FMA peak for f32 inputs, the
 * bf16 dot peak for bf16/f16 inputs (the fp32 FMA peak when the CPU has no bf16 dot).
 * Output: a human table (default), -o csv|json|jsonl with every field on every row, or -o md with
 * the problem string (all shape parameters), build, CPU, ISA, threads, kernel, times and % of peak.
 *
 * Decode problems (decode_...): caches filled once (decode.c), the plan made before the fill, one
 * workspace; the timed call is ak_decode_run. KV bytes = what a call must read from the caches (K and
 * V rows of the visible keys of every KV head, plus the i8 scales; the shared prefix once); GB/s from
 * the median time; % of peak against the DRAM read bandwidth ak_measure_peak measured in this run.
 * Their rows have their own fields, so md and csv start a new table when the kind of problem changes.
 *
 * Linear-attention problems (linear_...): linear.c (bench_linear) times ak_la_forward / ak_la_recurrent /
 * ak_la_backward with the row machinery below; their rows have their own fields too.
 *
 * Sparse problems (..._sp-<kind>...): the pattern built once (sparse.c); on the same inputs, the sparse plan
 * (ak_plan_create_sparse) and then the dense plan of the same descriptor (same causal flag and masks) are timed
 * the same way. Rows carry both times, the pattern's density and the plan's statistics (ak_plan_sparse_stats):
 * speedup = dense / sparse median time; ideal = dense useful FLOPs / sparse useful FLOPs (= 1 / density when the
 * problem's masks are the pattern's causal flag); speedup / ideal; waste; balance; useful GFLOP/s and % of the peak.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- a row: ordered key/value fields, written by every output format (types in cli.h) ---- */
void add_str(bench_row *r, const char *key, const char *v) {
    row_field *f = &r->f[r->n++];
    f->key = key;
    f->kind = K_STR;
    snprintf(f->s, sizeof(f->s), "%s", v);
}

void add_int(bench_row *r, const char *key, long long v) {
    row_field *f = &r->f[r->n++];
    f->key = key;
    f->kind = K_INT;
    f->x = (double)v;
}

/* A real number; NaN or inf is written as null (JSON) / empty (CSV) / "-" (md). */
void add_num(bench_row *r, const char *key, double v) {
    row_field *f = &r->f[r->n++];
    f->key = key;
    f->kind = isfinite(v) ? K_NUM : K_NULL;
    f->x = v;
}

static void write_value(FILE *out, const row_field *f, out_format fmt) {
    if (f->kind == K_INT) fprintf(out, "%.0f", f->x);
    else if (f->kind == K_NUM) fprintf(out, "%.6g", f->x);
    else if (f->kind == K_NULL) fprintf(out, "%s", fmt == OUT_CSV ? "" : fmt == OUT_MD ? "-" : "null");
    else if (fmt == OUT_JSON || fmt == OUT_JSONL) json_string(out, f->s);
    else if (fmt == OUT_CSV) {
        fputc('"', out);
        for (const char *c = f->s; *c; c++) {
            if (*c == '"') fputc('"', out);
            fputc(*c, out);
        }
        fputc('"', out);
    } else fprintf(out, "%s", f->s);
}

static void write_json_row(FILE *out, const bench_row *r) {
    fputc('{', out);
    for (int i = 0; i < r->n; i++) {
        fprintf(out, "%s\"%s\": ", i ? ", " : "", r->f[i].key);
        write_value(out, &r->f[i], OUT_JSON);
    }
    fputc('}', out);
}

/* The md table keeps it readable: the problem string carries every shape parameter. */
static int in_md(const char *key) {
    static const char *keys[] = {"problem", "build_commit", "cpu", "isa", "threads", "kernel", "reps",
                                 "median_ms", "min_ms", "stddev_ms", "dense_median_ms", "density", "speedup", "ideal",
                                 "speedup_over_ideal", "waste", "balance", "ms_per_token", "tokens_per_s_per_head",
                                 "gflops", "kv_mb", "gbs", "ceiling", "pct_peak"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0) return 1;
    return 0;
}

void write_header(FILE *out, const bench_row *r, out_format fmt, int first) {
    if (fmt == OUT_JSON && first) fprintf(out, "[\n");
    if (!first && (fmt == OUT_CSV || fmt == OUT_MD)) fprintf(out, "\n");
    if (fmt == OUT_CSV) {
        for (int i = 0; i < r->n; i++) fprintf(out, "%s%s", i ? "," : "", r->f[i].key);
        fprintf(out, "\n");
    }
    if (fmt != OUT_MD) return;
    for (int i = 0; i < r->n; i++)
        if (in_md(r->f[i].key)) fprintf(out, "| %s ", r->f[i].key);
    fprintf(out, "|\n");
    for (int i = 0; i < r->n; i++)
        if (in_md(r->f[i].key)) fprintf(out, "|%s", r->f[i].kind == K_STR ? "---" : "---:");
    fprintf(out, "|\n");
}

void write_row(FILE *out, const bench_row *r, out_format fmt, int index) {
    if (fmt == OUT_JSON || fmt == OUT_JSONL) {
        if (fmt == OUT_JSON) fprintf(out, "%s  ", index ? ",\n" : "");
        write_json_row(out, r);
        if (fmt == OUT_JSONL) fputc('\n', out);
    } else {
        for (int i = 0; i < r->n; i++) {
            if (fmt == OUT_MD && !in_md(r->f[i].key)) continue;
            fprintf(out, fmt == OUT_MD ? "| " : i ? "," : "");
            write_value(out, &r->f[i], fmt);
            if (fmt == OUT_MD) fputc(' ', out);
        }
        fprintf(out, fmt == OUT_MD ? "|\n" : "\n");
    }
    fflush(out);
}

/* The ceiling for a problem: its name and GFLOP/s (0 when not measured). */
static double ceiling_for(const bench_env *env, const problem *p, const char **name) {
    int half = p->dt_q != AK_F32 || p->dt_kv != AK_F32;
    if (half && env->peak.dot_bf16_gflops > 0) {
        *name = "dot_bf16";
        return env->have_peak ? env->peak.dot_bf16_gflops : 0.0;
    }
    *name = "fma_f32";
    return env->have_peak ? env->peak.fma_f32_gflops : 0.0;
}

/* All fields of one result row, in output order. */
static void make_row(bench_row *r, const bench_env *env, const options *o, const problem *p, const inputs *in,
                     const timing *t) {
    char name[512], x[64];
    const char *ceil_name;
    double ceil = ceiling_for(env, p, &ceil_name);
    double gflops = t->flops / (t->median_ms * 1e-3) * 1e-9;
    r->n = 0;
    problem_format(p, name, sizeof(name));
    add_str(r, "problem", name);
    add_int(r, "batch", p->B);
    add_int(r, "heads_q", p->Hq);
    add_int(r, "heads_kv", p->Hkv);
    add_int(r, "seqlen_q", p->Lq);
    add_int(r, "seqlen_k", p->Lk);
    add_int(r, "head_dim", p->d);
    add_int(r, "head_dim_v", p->dv);
    add_int(r, "causal", p->causal);
    add_int(r, "window_left", p->win_left);
    add_int(r, "window_right", p->win_right);
    add_num(r, "softcap", p->softcap);
    add_int(r, "alibi", p->alibi);
    add_int(r, "sinks", p->sinks);
    add_int(r, "lse", p->lse);
    format_float(isnan(p->scale) ? (float)(1.0 / sqrt((double)p->d)) : p->scale, x, sizeof(x));
    add_num(r, "scale", strtod(x, NULL));
    add_str(r, "dtype_q", ak_dtype_name(p->dt_q));
    add_str(r, "dtype_kv", ak_dtype_name(p->dt_kv));
    add_str(r, "dtype_o", ak_dtype_name(p->dt_o));
    add_str(r, "layout", p->bshd ? "bshd" : "bhsd");
    add_int(r, "varlen", p->varlen);
    add_str(r, "build_commit", env->commit);
    add_str(r, "cpu", env->cpu);
    add_str(r, "isa", env->isa);
    add_int(r, "threads", env->threads);
    add_str(r, "kernel", t->kernel);
    add_int(r, "reps", o->reps);
    add_int(r, "warmup", o->warmup);
    add_num(r, "median_ms", t->median_ms);
    add_num(r, "min_ms", t->min_ms);
    add_num(r, "mean_ms", t->mean_ms);
    add_num(r, "stddev_ms", t->stddev_ms);
    add_num(r, "visible_pairs", visible_pairs(in));
    add_num(r, "gflop", t->flops * 1e-9);
    add_num(r, "gflops", gflops);
    add_str(r, "ceiling", env->have_peak ? ceil_name : "none");
    add_num(r, "ceiling_gflops", env->have_peak ? ceil : NAN);
    add_num(r, "pct_peak", env->have_peak && ceil > 0 ? 100.0 * gflops / ceil : NAN);
    add_num(r, "peak_fma_f32_gflops", env->have_peak ? env->peak.fma_f32_gflops : NAN);
    add_num(r, "peak_dot_bf16_gflops", env->have_peak ? env->peak.dot_bf16_gflops : NAN);
    add_num(r, "peak_dram_gbs", env->have_peak ? env->peak.dram_read_gbs : NAN);
}

/* Median, min, mean and sample stddev of n times. */
void time_stats(const double *ms, int n, timing *t) {
    double sum = 0, sq = 0;
    t->min_ms = ms[0];
    for (int r = 0; r < n; r++) {
        sum += ms[r];
        if (ms[r] < t->min_ms) t->min_ms = ms[r];
    }
    t->mean_ms = sum / n;
    for (int r = 0; r < n; r++) sq += (ms[r] - t->mean_ms) * (ms[r] - t->mean_ms);
    t->stddev_ms = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
    t->median_ms = median_of(ms, n);
}

/* Time one problem: the dense plan (sp NULL) or the sparse plan of sp, whose statistics go to *sst.
 * 0 = ok; else the error is printed to stderr. */
static int time_problem(ak_ctx *ctx, const options *o, inputs *in, const ak_sparse *sp, timing *t, ak_sparse_stats *sst) {
    ak_plan *plan = NULL;
    void *ws = NULL;
    double *ms = malloc(sizeof(double) * (size_t)o->reps);
    ak_status st = !ms ? AK_ERR_OUT_OF_MEMORY
                 : sp ? ak_plan_create_sparse(ctx, &in->desc, sp, &plan) : ak_plan_create(ctx, &in->desc, &plan);
    if (st == AK_OK && sp) st = ak_plan_sparse_stats(plan, sst);
    size_t ws_size = st == AK_OK ? ak_plan_workspace_size(plan) : 0;
    if (st == AK_OK && ws_size > 0 && !(ws = xalloc(ws_size))) st = AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK && o->explain) fprintf(stderr, "%s\n", ak_plan_explain(plan));
    for (int w = 0; st == AK_OK && w < o->warmup; w++) st = ak_attention_run(plan, &in->t, ws, ws_size);
    for (int r = 0; st == AK_OK && r < o->reps; r++) {
        double t0 = now_seconds();
        st = ak_attention_run(plan, &in->t, ws, ws_size);
        ms[r] = (now_seconds() - t0) * 1e3;
    }
    if (st == AK_OK) {
        time_stats(ms, o->reps, t);
        t->flops = sp ? sst->useful_flops : useful_flops(in);
        snprintf(t->kernel, sizeof(t->kernel), "%s", ak_plan_kernel_name(plan));
    } else {
        fprintf(stderr, "attnkit: %s\n", error_text(ctx, st));
    }
    free(ws);
    free(ms);
    ak_plan_destroy(plan);
    return st == AK_OK ? 0 : -1;
}

/* ---- decode problems ---- */

/* All fields of one decode row, in output order. */
static void make_drow(bench_row *r, const bench_env *env, const options *o, const dinputs *in, const timing *t) {
    const problem *p = &in->p;
    char name[512], x[64];
    double gflops = t->flops / (t->median_ms * 1e-3) * 1e-9, gbs = t->kv_bytes / (t->median_ms * 1e-3) * 1e-9;
    int64_t lmin = INT64_MAX, lmax = 0, ltot = 0;
    for (int b = 0; b < p->B; b++) {
        int64_t l = dinputs_len(in, b);
        ltot += l;
        if (l < lmin) lmin = l;
        if (l > lmax) lmax = l;
    }
    r->n = 0;
    problem_format(p, name, sizeof(name));
    add_str(r, "problem", name);
    add_int(r, "batch", p->B);
    add_int(r, "heads_q", p->Hq);
    add_int(r, "heads_kv", p->Hkv);
    add_int(r, "q_len", p->Lq);
    add_int(r, "kv_len", p->Lk);
    add_int(r, "kv_len_min", lmin);
    add_int(r, "kv_len_max", lmax);
    add_int(r, "kv_tokens", ltot);
    add_int(r, "prefix", p->prefix);
    add_int(r, "head_dim", p->d);
    add_int(r, "head_dim_v", p->dv);
    add_int(r, "causal", p->causal);
    add_int(r, "window_left", p->win_left);
    add_int(r, "window_right", p->win_right);
    add_num(r, "softcap", p->softcap);
    add_int(r, "alibi", p->alibi);
    add_int(r, "sinks", p->sinks);
    add_int(r, "lse", p->lse);
    format_float(isnan(p->scale) ? (float)(1.0 / sqrt((double)p->d)) : p->scale, x, sizeof(x));
    add_num(r, "scale", strtod(x, NULL));
    add_str(r, "dtype_q", ak_dtype_name(p->dt_q));
    add_str(r, "dtype_kv", ak_dtype_name(p->dt_kv));
    add_str(r, "dtype_o", ak_dtype_name(p->dt_o));
    add_int(r, "page_size", p->page);
    add_str(r, "page_layout", p->page == 0 ? "contiguous" : p->hnd ? "hnd" : "nhd");
    add_str(r, "metadata", p->page == 0 ? "seqlens" : p->csr ? "csr" : "block_table");
    add_int(r, "ragged", p->ragged);
    add_int(r, "num_workers", p->workers);
    add_int(r, "tile_n", p->tile);
    add_str(r, "build_commit", env->commit);
    add_str(r, "cpu", env->cpu);
    add_str(r, "isa", env->isa);
    add_int(r, "threads", env->threads);
    add_str(r, "kernel", t->kernel);
    add_int(r, "reps", o->reps);
    add_int(r, "warmup", o->warmup);
    add_num(r, "median_ms", t->median_ms);
    add_num(r, "min_ms", t->min_ms);
    add_num(r, "mean_ms", t->mean_ms);
    add_num(r, "stddev_ms", t->stddev_ms);
    add_num(r, "kv_bytes", t->kv_bytes);
    add_num(r, "kv_mb", t->kv_bytes * 1e-6);
    add_num(r, "gbs", gbs);
    add_num(r, "visible_pairs", dinputs_visible_pairs(in));
    add_num(r, "gflop", t->flops * 1e-9);
    add_num(r, "gflops", gflops);
    add_str(r, "ceiling", env->have_peak ? "dram_read" : "none");
    add_num(r, "ceiling_gbs", env->have_peak ? env->peak.dram_read_gbs : NAN);
    add_num(r, "pct_peak", env->have_peak && env->peak.dram_read_gbs > 0 ? 100.0 * gbs / env->peak.dram_read_gbs : NAN);
    add_num(r, "peak_fma_f32_gflops", env->have_peak ? env->peak.fma_f32_gflops : NAN);
    add_num(r, "peak_dot_bf16_gflops", env->have_peak ? env->peak.dot_bf16_gflops : NAN);
    add_num(r, "peak_dram_gbs", env->have_peak ? env->peak.dram_read_gbs : NAN);
}

/* Time one decode problem (its plan was made with the inputs). 0 = ok; else the error is printed. */
static int time_decode(ak_ctx *ctx, const options *o, dinputs *in, timing *t) {
    void *ws = NULL;
    double *ms = malloc(sizeof(double) * (size_t)o->reps);
    size_t ws_size = ak_plan_workspace_size(in->plan);
    ak_status st = ms ? AK_OK : AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK && ws_size > 0 && !(ws = xalloc(ws_size))) st = AK_ERR_OUT_OF_MEMORY;
    if (st == AK_OK && o->explain) fprintf(stderr, "%s", ak_plan_explain(in->plan));   /* -v: the library prints it */
    for (int w = 0; st == AK_OK && w < o->warmup; w++) st = ak_decode_run(in->plan, &in->t, ws, ws_size);
    for (int r = 0; st == AK_OK && r < o->reps; r++) {
        double t0 = now_seconds();
        st = ak_decode_run(in->plan, &in->t, ws, ws_size);
        ms[r] = (now_seconds() - t0) * 1e3;
    }
    if (st == AK_OK) {
        time_stats(ms, o->reps, t);
        t->flops = 2.0 * (double)(in->p.d + in->p.dv) * dinputs_visible_pairs(in) * (double)in->p.Hq;
        t->kv_bytes = dinputs_kv_bytes(in);
        snprintf(t->kernel, sizeof(t->kernel), "%s", ak_plan_kernel_name(in->plan));
    } else {
        fprintf(stderr, "attnkit: %s\n", error_text(ctx, st));
    }
    free(ws);
    free(ms);
    return st == AK_OK ? 0 : -1;
}

static void human_dheader(int name_w) {
    printf("%-*s  %-30s %10s %10s %8s %9s %8s %7s\n", name_w, "problem", "kernel", "median ms", "min ms",
           "stddev", "KV MB", "GB/s", "% DRAM");
}

static void human_drow(const bench_env *env, const dinputs *in, const timing *t, int name_w) {
    char name[512], pct[32];
    double gbs = t->kv_bytes / (t->median_ms * 1e-3) * 1e-9;
    problem_format(&in->p, name, sizeof(name));
    if (env->have_peak && env->peak.dram_read_gbs > 0) snprintf(pct, sizeof(pct), "%.1f%%", 100.0 * gbs / env->peak.dram_read_gbs);
    else snprintf(pct, sizeof(pct), "-");
    printf("%-*s  %-30s %10.3f %10.3f %8.3f %9.1f %8.2f %7s\n", name_w, name, t->kernel, t->median_ms, t->min_ms,
           t->stddev_ms, t->kv_bytes * 1e-6, gbs, pct);
    fflush(stdout);
}

/* Bench one decode problem: a row in the chosen format. 0 = ok. */
static int bench_decode(ak_ctx *ctx, const options *o, const bench_env *env, const problem *p, int name_w,
                        int *rows, int *last_kind) {
    static bench_row r;
    dinputs in;
    timing t;
    char err[256], name[512];
    memset(&t, 0, sizeof(t));
    problem_format(p, name, sizeof(name));
    if (dinputs_create(ctx, p, o->seed, &in, err, sizeof(err)) != 0) {
        fprintf(stderr, "attnkit: %s: %s\n", name, err);
        return -1;
    }
    int rc = time_decode(ctx, o, &in, &t);
    if (rc != 0) {
        fprintf(stderr, "attnkit: bench %s failed\n", name);
    } else if (o->out == OUT_HUMAN) {
        if (*last_kind != 1) human_dheader(name_w);
        human_drow(env, &in, &t, name_w);
        *last_kind = 1;
    } else {
        make_drow(&r, env, o, &in, &t);
        if (*last_kind != 1) write_header(stdout, &r, o->out, *rows == 0);
        write_row(stdout, &r, o->out, *rows);
        ++*rows;
        *last_kind = 1;
    }
    dinputs_free(&in);
    return rc;
}

/* ---- sparse problems ---- */

/* --interleave: time the sparse plan and the dense plan of the same problem in alternation (rep r runs
 * sparse then dense for even r, dense then sparse for odd r), so that a change of the host's speed
 * during the run affects both alike; each gets its own median. */
static int time_pair(ak_ctx *ctx, const options *o, inputs *in, const ak_sparse *sp, timing *ts, timing *td,
                     ak_sparse_stats *sst) {
    ak_plan *pl[2] = {NULL, NULL};
    void *ws = NULL;
    double *ms = malloc(sizeof(double) * 2 * (size_t)o->reps);
    ak_status st = !ms ? AK_ERR_OUT_OF_MEMORY : ak_plan_create_sparse(ctx, &in->desc, sp, &pl[0]);
    if (st == AK_OK) st = ak_plan_create(ctx, &in->desc, &pl[1]);
    if (st == AK_OK) st = ak_plan_sparse_stats(pl[0], sst);
    size_t w0 = st == AK_OK ? ak_plan_workspace_size(pl[0]) : 0, w1 = st == AK_OK ? ak_plan_workspace_size(pl[1]) : 0;
    size_t ws_size = w0 > w1 ? w0 : w1;
    if (st == AK_OK && ws_size > 0 && !(ws = xalloc(ws_size))) st = AK_ERR_OUT_OF_MEMORY;
    for (int w = 0; st == AK_OK && w < o->warmup; w++)
        for (int k = 0; k < 2 && st == AK_OK; k++) st = ak_attention_run(pl[k], &in->t, ws, ws_size);
    for (int r = 0; st == AK_OK && r < o->reps; r++)
        for (int kk = 0; kk < 2 && st == AK_OK; kk++) {
            int k = (r & 1) ? 1 - kk : kk;
            double t0 = now_seconds();
            st = ak_attention_run(pl[k], &in->t, ws, ws_size);
            ms[k * o->reps + r] = (now_seconds() - t0) * 1e3;
        }
    if (st == AK_OK) {
        time_stats(ms, o->reps, ts);
        time_stats(ms + o->reps, o->reps, td);
        ts->flops = sst->useful_flops;
        td->flops = useful_flops(in);
        snprintf(ts->kernel, sizeof(ts->kernel), "%s", ak_plan_kernel_name(pl[0]));
        snprintf(td->kernel, sizeof(td->kernel), "%s", ak_plan_kernel_name(pl[1]));
    } else {
        fprintf(stderr, "attnkit: %s\n", error_text(ctx, st));
    }
    free(ws);
    free(ms);
    ak_plan_destroy(pl[0]);
    ak_plan_destroy(pl[1]);
    return st == AK_OK ? 0 : -1;
}

/* All fields of one sparse row, in output order: ts = the sparse plan, td = the dense plan of the same descriptor. */
static void make_srow(bench_row *r, const bench_env *env, const options *o, const problem *p, const inputs *in,
                      const timing *ts, const timing *td, const ak_sparse_stats *st) {
    char pat[512];
    const char *ceil_name;
    double ceil = ceiling_for(env, p, &ceil_name);
    double gflops = ts->flops / (ts->median_ms * 1e-3) * 1e-9, dgflops = td->flops / (td->median_ms * 1e-3) * 1e-9;
    double ideal = ts->flops > 0 ? td->flops / ts->flops : NAN, speedup = td->median_ms / ts->median_ms;
    make_row(r, env, o, p, in, ts);   /* the dense fields, then replace the tail from build_commit on */
    while (r->n > 0 && strcmp(r->f[r->n - 1].key, "build_commit") != 0) r->n--;
    r->n--;
    sp_format(&p->sp, pat, sizeof(pat));
    add_str(r, "pattern", pat);
    add_str(r, "pattern_name", ak_sparse_name(in->sp));
    add_str(r, "build_commit", env->commit);
    add_str(r, "cpu", env->cpu);
    add_str(r, "isa", env->isa);
    add_int(r, "threads", env->threads);
    add_str(r, "kernel", ts->kernel);
    add_str(r, "dense_kernel", td->kernel);
    add_int(r, "reps", o->reps);
    add_int(r, "warmup", o->warmup);
    add_num(r, "median_ms", ts->median_ms);
    add_num(r, "min_ms", ts->min_ms);
    add_num(r, "mean_ms", ts->mean_ms);
    add_num(r, "stddev_ms", ts->stddev_ms);
    add_num(r, "dense_median_ms", td->median_ms);
    add_num(r, "dense_min_ms", td->min_ms);
    add_num(r, "dense_stddev_ms", td->stddev_ms);
    add_num(r, "density", st->density);
    add_num(r, "pattern_pairs", st->pairs);
    add_num(r, "active_fraction", td->flops > 0 ? ts->flops / td->flops : NAN);
    add_num(r, "speedup", speedup);
    add_num(r, "ideal", ideal);
    add_num(r, "speedup_over_ideal", speedup / ideal);
    add_num(r, "waste", st->waste);
    add_num(r, "balance", st->balance);
    add_int(r, "work_items", st->n_items);
    add_num(r, "exec_pairs", st->exec_pairs);
    add_num(r, "gflop", ts->flops * 1e-9);
    add_num(r, "gflops", gflops);
    add_num(r, "dense_gflop", td->flops * 1e-9);
    add_num(r, "dense_gflops", dgflops);
    add_str(r, "ceiling", env->have_peak ? ceil_name : "none");
    add_num(r, "ceiling_gflops", env->have_peak ? ceil : NAN);
    add_num(r, "pct_peak", env->have_peak && ceil > 0 ? 100.0 * gflops / ceil : NAN);
    add_num(r, "dense_pct_peak", env->have_peak && ceil > 0 ? 100.0 * dgflops / ceil : NAN);
    add_num(r, "peak_fma_f32_gflops", env->have_peak ? env->peak.fma_f32_gflops : NAN);
    add_num(r, "peak_dot_bf16_gflops", env->have_peak ? env->peak.dot_bf16_gflops : NAN);
    add_num(r, "peak_dram_gbs", env->have_peak ? env->peak.dram_read_gbs : NAN);
}

static void human_sheader(int name_w) {
    printf("%-*s  %-30s %10s %10s %8s %8s %8s %8s %7s %7s %9s %7s %s\n", name_w, "problem", "kernel", "sparse ms",
           "dense ms", "density", "speedup", "ideal", "sp/ideal", "waste", "balance", "GFLOP/s", "% peak", "ceiling");
}

static void human_srow(const bench_env *env, const problem *p, const timing *ts, const timing *td,
                       const ak_sparse_stats *st, int name_w) {
    char name[1024], pct[32];
    const char *ceil_name;
    double ceil = ceiling_for(env, p, &ceil_name);
    double gflops = ts->flops / (ts->median_ms * 1e-3) * 1e-9;
    double speedup = td->median_ms / ts->median_ms, ideal = ts->flops > 0 ? td->flops / ts->flops : NAN;
    problem_format(p, name, sizeof(name));
    if (ceil > 0) snprintf(pct, sizeof(pct), "%.1f%%", 100.0 * gflops / ceil);
    else snprintf(pct, sizeof(pct), "-");
    printf("%-*s  %-30s %10.3f %10.3f %8.4f %8.2f %8.2f %8.3f %7.3f %7.3f %9.1f %7s %s\n", name_w, name, ts->kernel,
           ts->median_ms, td->median_ms, st->density, speedup, ideal, speedup / ideal, st->waste, st->balance, gflops,
           pct, ceil > 0 ? ceil_name : "-");
    fflush(stdout);
}

/* Bench one sparse problem: the sparse plan, then the dense plan of the same descriptor; a row. 0 = ok. */
static int bench_sparse(ak_ctx *ctx, const options *o, const bench_env *env, const problem *p, int name_w, int *rows,
                        int *last_kind) {
    static bench_row r;
    inputs in;
    timing ts, td;
    ak_sparse_stats st;
    char err[512], name[1024];
    memset(&ts, 0, sizeof(ts));
    memset(&td, 0, sizeof(td));
    memset(&st, 0, sizeof(st));
    problem_format(p, name, sizeof(name));
    if (inputs_create(p, o->seed, &in, err, sizeof(err)) != 0) {
        fprintf(stderr, "attnkit: %s: %s\n", name, err);
        return -1;
    }
    int rc = sp_build(ctx, p, &in.sp, err, sizeof(err));
    if (rc != 0) fprintf(stderr, "attnkit: %s: %s\n", name, err);
    if (rc == 0 && o->interleave) {
        rc = time_pair(ctx, o, &in, in.sp, &ts, &td, &st);
        goto timed;
    }
    if (rc == 0) rc = time_problem(ctx, o, &in, in.sp, &ts, &st);
    /* The dense plan of the same problem is timed once per distinct dense problem and reused by the sparse
     * problems that follow it (a sweep over densities at 32k tokens would otherwise time the same
     * dense run for every density); --dense-every retimes it every time. */
    static char dense_key[1024];
    static timing dense_last;
    problem pd = *p;
    memset(&pd.sp, 0, sizeof pd.sp);
    char key[1024];
    problem_format(&pd, key, sizeof key);
    snprintf(key + strlen(key), sizeof key - strlen(key), "|t%d", ak_ctx_get_num_threads(ctx));
    if (rc == 0 && !o->dense_every && dense_key[0] && strcmp(key, dense_key) == 0) {
        td = dense_last;
    } else if (rc == 0) {
        rc = time_problem(ctx, o, &in, NULL, &td, NULL);
        if (rc == 0) {
            snprintf(dense_key, sizeof dense_key, "%s", key);
            dense_last = td;
        }
    }
timed:
    if (rc != 0) {
        fprintf(stderr, "attnkit: bench %s failed\n", name);
    } else if (o->out == OUT_HUMAN) {
        if (*last_kind != 3) human_sheader(name_w);
        human_srow(env, p, &ts, &td, &st, name_w);
        *last_kind = 3;
    } else {
        make_srow(&r, env, o, p, &in, &ts, &td, &st);
        if (*last_kind != 3) write_header(stdout, &r, o->out, *rows == 0);
        write_row(stdout, &r, o->out, *rows);
        ++*rows;
        *last_kind = 3;
    }
    inputs_free(&in);
    return rc;
}

static void human_preamble(const bench_env *env, const options *o, int any_dense, int any_decode, int any_linear,
                           int any_sparse) {
    printf("attnkit bench: %s | isa %s | %d threads | commit %s | %d reps after %d warm-up\n", env->cpu,
           env->isa, env->threads, env->commit, o->reps, o->warmup);
    if (env->have_peak) {
        printf("peak, measured in this run: fp32 FMA %.1f GFLOP/s | bf16 dot ", env->peak.fma_f32_gflops);
        if (env->peak.dot_bf16_gflops > 0) printf("%.1f GFLOP/s", env->peak.dot_bf16_gflops);
        else printf("n/a");
        printf(" | DRAM read %.1f GB/s\n", env->peak.dram_read_gbs);
        if (any_dense)
            printf("%% peak = useful GFLOP/s (causal/window: visible pairs only) / ceiling "
                   "(fma_f32 for f32 inputs, dot_bf16 for bf16/f16 inputs when the CPU has it)\n");
        if (any_decode)
            printf("%% DRAM = KV bytes a call must read (K+V of the visible keys, i8 scales) / median time / "
                   "DRAM read peak\n");
        if (any_sparse)
            printf("sparse: the pattern's plan, then the dense plan of the same problem; speedup = dense / sparse ms, "
                   "ideal = dense / sparse useful FLOPs (1/density), %% peak of the sparse run's useful GFLOP/s\n");
        if (any_linear)
            printf("linear: %% peak = useful GFLOP/s (chunked: 2T(B(d+e)/2 + 2de) per head, recurrent: 4Tde, "
                   "backward: 2T(B(3d+2e)/2 + 5de)) / fp32 FMA peak\n");
    }
}

static void human_header(int name_w) {
    printf("%-*s  %-30s %10s %10s %8s %9s %7s %s\n", name_w, "problem", "kernel", "median ms", "min ms",
           "stddev", "GFLOP/s", "% peak", "ceiling");
}

static void human_row(const bench_env *env, const problem *p, const timing *t, int name_w) {
    char name[512], pct[32];
    const char *ceil_name;
    double ceil = ceiling_for(env, p, &ceil_name);
    double gflops = t->flops / (t->median_ms * 1e-3) * 1e-9;
    problem_format(p, name, sizeof(name));
    if (ceil > 0) snprintf(pct, sizeof(pct), "%.1f%%", 100.0 * gflops / ceil);
    else snprintf(pct, sizeof(pct), "-");
    printf("%-*s  %-30s %10.3f %10.3f %8.3f %9.1f %7s %s\n", name_w, name, t->kernel, t->median_ms, t->min_ms,
           t->stddev_ms, gflops, pct, ceil > 0 ? ceil_name : "-");
    fflush(stdout);
}

int mode_bench(const options *o, char **specs, int n_specs) {
    problem *probs = NULL;
    int n = 0, failed = 0, rows = 0, name_w = 8, any_dense = 0, any_decode = 0, any_linear = 0, any_sparse = 0;
    int last_kind = -1;   /* 0 = dense, 1 = decode, 2 = linear, 3 = sparse: md/csv/human start a new table when it changes */
    if (problems_from_args(specs, n_specs, &probs, &n) != 0) return 2;
    ak_ctx *ctx = NULL;
    if (ctx_from_options(o, 0, &ctx) != 0) { free(probs); return 1; }
    bench_env env;
    memset(&env, 0, sizeof(env));
    cpu_model(env.cpu, sizeof(env.cpu));
    build_commit(env.commit, sizeof(env.commit));
    env.isa = ak_isa_name(ak_ctx_get_isa(ctx));
    env.threads = ak_ctx_get_num_threads(ctx);
    if (!o->no_peak) {
        ak_status st = ak_measure_peak(ctx, &env.peak);
        env.have_peak = st == AK_OK;
        if (st != AK_OK) fprintf(stderr, "attnkit: ak_measure_peak: %s; no %% of peak\n",
                                 error_text(ctx, st));
    }
    for (int i = 0; i < n; i++) {
        char name[1024];
        problem_format(&probs[i], name, sizeof(name));
        if ((int)strlen(name) > name_w) name_w = (int)strlen(name);
        any_decode |= probs[i].decode;
        any_linear |= probs[i].linear;
        any_sparse |= probs[i].sp.kind != SP_NONE;
        any_dense |= !probs[i].decode && !probs[i].linear;
    }
    if (o->out == OUT_HUMAN) human_preamble(&env, o, any_dense, any_decode, any_linear, any_sparse);
    static bench_row r;
    for (int i = 0; i < n; i++) {
        inputs in;
        timing t;
        char err[256];
        memset(&t, 0, sizeof(t));
        if (probs[i].decode) {
            failed += bench_decode(ctx, o, &env, &probs[i], name_w, &rows, &last_kind) != 0;
            continue;
        }
        if (probs[i].linear) {
            failed += bench_linear(ctx, o, &env, &probs[i], name_w, &rows, &last_kind) != 0;
            continue;
        }
        if (probs[i].sp.kind != SP_NONE) {
            failed += bench_sparse(ctx, o, &env, &probs[i], name_w, &rows, &last_kind) != 0;
            continue;
        }
        if (inputs_create(&probs[i], o->seed, &in, err, sizeof(err)) != 0) {
            fprintf(stderr, "attnkit: %s\n", err);
            failed++;
            continue;
        }
        if (time_problem(ctx, o, &in, NULL, &t, NULL) != 0) {
            char name[512];
            problem_format(&probs[i], name, sizeof(name));
            fprintf(stderr, "attnkit: bench %s failed\n", name);
            failed++;
        } else if (o->out == OUT_HUMAN) {
            if (last_kind != 0) human_header(name_w);
            human_row(&env, &probs[i], &t, name_w);
            last_kind = 0;
        } else {
            make_row(&r, &env, o, &probs[i], &in, &t);
            if (last_kind != 0) write_header(stdout, &r, o->out, rows == 0);
            write_row(stdout, &r, o->out, rows);
            rows++;
            last_kind = 0;
        }
        inputs_free(&in);
    }
    if (o->out == OUT_JSON) printf(rows ? "\n]\n" : "[]\n");
    ak_ctx_destroy(ctx);
    free(probs);
    return failed ? 1 : 0;
}
