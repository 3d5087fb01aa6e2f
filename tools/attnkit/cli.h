/*
 * cli.h — declarations shared by the files of the `attnkit` command-line tool.
 * The tool uses only the public header attnkit.h, like any other user of the library.
 */
#ifndef ATTNKIT_CLI_H
#define ATTNKIT_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "attnkit.h"

/* ---- a sparse pattern on a dense problem: the sp-<kind>-<param>... token (sparse.c, grammar in problem.c) ---- */
enum sp_kind { SP_NONE, SP_WINDOW, SP_STRIDED, SP_NA, SP_POWER, SP_S2, SP_MOA, SP_SFATTN, SP_DOC, SP_BLOCKS,
               SP_DENSE, SP_JSON, SP_KIND_COUNT };
#define SP_MAX_DOCS 64

typedef struct sp_spec {
    int kind;                         /* SP_NONE: a dense problem */
    int w, sink, dil, blk, bq;        /* window (w: tokens), power (w: blocks), strided (sink, bq), doc (bq) */
    int local, stride;                /* strided */
    int bs;                           /* power, s2, blocks, dense: block size */
    int ndim, ext[3], ker[3], ndil[3], nstr[3], ncau[3], tile[3];    /* na1d / na2d / na3d */
    int s2local, vs, homo, ndense, off, rel, lr, nofix;              /* s2 */
    float alpha, beta;                /* moa, inline form */
    int moa_file, layer, newtok, exact;                              /* moa */
    int group, slo, shi;              /* sfattn */
    int n_doc, doc[SP_MAX_DOCS];      /* doc: document lengths, cycled over the tokens */
    float density;                    /* blocks */
    int seed;                         /* blocks */
    char file[256];                   /* moa (file form), json */
} sp_spec;

/* ---- one attention problem, as typed on the command line (grammar in problem.c) ---- */
typedef struct problem {
    int B, Hq, Hkv, Lq, Lk, d, dv;
    int causal;
    int win_left, win_right;   /* -1 = unbounded */
    float softcap;             /* 0 = off */
    int alibi, sinks, lse;
    float scale;               /* NaN = 1/sqrt(d) */
    ak_dtype dt_q, dt_kv, dt_o;
    int bshd;                  /* memory layout [B][L][H][D] instead of [B][H][L][D] */
    int varlen;                /* ragged batch through cu_seqlens */
    /* decode problems (decode_...): Lq = query rows per sequence, Lk = keys per sequence's cache */
    int decode;
    int page;                  /* page size; 0 = contiguous cache */
    int hnd;                   /* paged: HND pages instead of NHD */
    int csr;                   /* paged: FlashInfer CSR metadata instead of seqlens + block_table */
    int ragged;                /* decode, linear: lengths spread from ragged_lo to Lk over the batch */
    int ragged_lo;             /* -1 = Lk / 16 */
    int prefix;                /* shared-prefix (cascade) tokens; 0 = none */
    int workers, tile;         /* ak_decode_desc num_workers / tile_n; 0 = auto */
    /* linear-attention problems (linear_...): Lq = Lk = tokens per sequence, dv = e, Hkv = Hq, dt_kv = dt_q */
    int linear;
    int decay;                 /* -1 = none (lambda = 1), else the ak_la_decay_mode (layer 0 of 1) */
    int state;                 /* random initial state in, final state out */
    int blk;                   /* ak_la_desc.block; 0 = auto */
    int rec;                   /* ak_la_recurrent instead of ak_la_forward */
    int bwd;                   /* ak_la_backward (gradients) instead of the forward */
    int norm;                  /* ak_la_desc.norm (ak_la_norm): output normalization, AK_LA_NORM_NONE = off */
    int gate;                  /* ak_la_desc.has_gate: a random output gate (backward: its gradient too) */
    /* dense problems only: a sparse pattern (sp-...), run through ak_plan_create_sparse */
    sp_spec sp;
} problem;

int problem_parse(const char *s, problem *p, char *err, size_t errlen);
void problem_format(const problem *p, char *buf, size_t len);
int problem_expand(const char *spec, char ***out, int *n_out, char *err, size_t errlen);
void problem_list_free(char **list, int n);
int problems_from_args(char **specs, int n_specs, problem **out, int *n_out);

/* ---- sparse patterns (sparse.c) ---- */
int sp_is_file_token(const char *tok);   /* sp-json-FILE / sp-moa-FILE...: the token runs to the end of the string */
int sp_parse(const char *tok, sp_spec *s, char *err, size_t errlen);
int sp_validate(problem *p, char *err, size_t errlen);
void sp_format(const sp_spec *s, char *buf, size_t len);
int sp_build(ak_ctx *ctx, const problem *p, ak_sparse **out, char *err, size_t errlen);
int sp_plan_head(int n_heads, int Hq, int Hkv, int h);

/* ---- inputs of one problem: buffers, views, metadata (inputs.c) ---- */
typedef struct inputs {
    problem p;
    ak_attn_desc desc;
    int Bt;                      /* batch dimension of the tensors: 1 when varlen, else B */
    int64_t Tq, Tk;              /* L dimension of the tensors: packed totals when varlen */
    ak_sparse *sp;               /* sparse problems: the pattern (sp_build; inputs_free destroys it) */
    int32_t *cu_q, *cu_k;        /* varlen: [B + 1] */
    void *q, *k, *v, *o, *lse, *slopes, *sinks;
    size_t o_bytes, lse_bytes;
    ak_attn_tensors t;
} inputs;

/* Geometry of sequence b: tensor batch index, first row/key in L, and its lengths. */
typedef struct seq_geom {
    int64_t bidx, q_off, k_off, lq, lk;
} seq_geom;

int inputs_create(const problem *p, uint64_t seed, inputs *in, char *err, size_t errlen);
void problem_desc(const problem *p, ak_attn_desc *d);   /* the descriptor of a problem without varlen */
void inputs_free(inputs *in);
seq_geom inputs_seq(const inputs *in, int b);
double visible_pairs(const inputs *in);
double useful_flops(const inputs *in);
double tensor_get(const ak_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
int naive_f32(const inputs *in, float *o, float *lse);
void *random_buffer(ak_dtype t, size_t n, uint64_t *rng);
void visible_range(const problem *p, int64_t lq, int64_t lk, int64_t i, int64_t *lo, int64_t *hi);

/* ---- inputs of a decode problem (decode.c) ---- */
/* One KV cache (the per-sequence caches, or the batch-1 shared prefix) and its metadata. */
typedef struct dcache {
    ak_kv_desc desc;             /* final: seqlens (+ block_table), or CSR */
    ak_kv_tensors t;
    int B;
    int32_t max_pages, n_pages;  /* paged: block_table row length, pages in use */
    int32_t *lens, *table;       /* [B], [B][max_pages] (kept for CSR too: the tool's own page map) */
    int32_t *indptr, *indices, *last;   /* CSR */
    void *k, *v, *ks, *vs;
} dcache;

typedef struct dinputs {
    problem p;
    ak_decode_desc desc;
    ak_decode_tensors t;
    ak_plan *plan;               /* created before the caches were filled */
    dcache kv, pre;
    void *q, *o, *lse, *slopes, *sinks;
    size_t o_bytes, lse_bytes;
} dinputs;

/* One (sequence, KV head) of a decode problem as a problem of its own, for ak_decode_ref. */
typedef struct dsub {
    ak_decode_desc desc;         /* desc.prefix points at pre: do not copy a dsub */
    ak_decode_tensors t;
    ak_kv_desc pre;
    int32_t indptr[2], pre_indptr[2];   /* CSR of the one sequence (of the prefix) */
} dsub;

/* Length of sequence b: Lk, or with `ragged` lo + (Lk - lo) * b / (B - 1) (decode and linear problems). */
int64_t ragged_len(const problem *p, int b);
int dinputs_create(ak_ctx *ctx, const problem *p, uint64_t seed, dinputs *in, char *err, size_t errlen);
void dinputs_free(dinputs *in);
int64_t dinputs_len(const dinputs *in, int b);
double dinputs_kv_bytes(const dinputs *in);
double dinputs_visible_pairs(const dinputs *in);
void dinputs_sub(const dinputs *in, int b, int hk, double *o_ref, double *lse_ref, dsub *s);
void dinputs_gather(const dinputs *in, int b, int hk, int is_v, float *out);
void dinputs_poison(dinputs *in);

/* ---- options shared by every mode (main.c) ---- */
typedef enum out_format { OUT_HUMAN, OUT_MD, OUT_CSV, OUT_JSON, OUT_JSONL } out_format;

typedef struct options {
    int threads;        /* 0 = library default (AK_NUM_THREADS or all cores) */
    int reps;           /* bench repetitions after the warm-up */
    int warmup;
    out_format out;
    int isa;            /* -1 = best detected (or AK_MAX_ISA) */
    int force_ref;
    int verbose;
    int explain;
    int no_peak;
    int deterministic;  /* -1 = library default */
    uint64_t seed;
    int interleave;     /* bench, sparse problems: sparse and dense runs alternate (implies timing dense every time) */
    int dense_every;    /* bench, sparse problems: time the dense comparison for every problem (not once per dense shape) */
    int full_check;     /* check: no cap on the reference work of decode and linear problems */
    const char *png;    /* plan: picture of the mask (PNG) */
    const char *json;   /* plan: the pattern as JSON (ak_sparse_to_json) */
    const char *input;  /* sparse-eval: syn:<kind> or npy:<dir> [syn:mix] */
    int grid;           /* plan: the picture's size, at most grid x grid mask pixels */
    int head;           /* plan: the plan head pictured */
} options;

int ctx_from_options(const options *o, int n_threads, ak_ctx **out);

/* ---- modes ---- */
int mode_check(const options *o, char **problems, int n);
int mode_bitwise(const options *o, char **problems, int n);
int mode_bench(const options *o, char **problems, int n);
int mode_plan(const options *o, char **problems, int n);
int mode_eval(const options *o, char **args, int n);

/* ---- PNG writer (png.c): 8-bit grayscale (channels 1) or RGB (3), rows top to bottom, stored deflate ---- */
int png_write(const char *path, int width, int height, int channels, const unsigned char *pixels, char *err,
              size_t errlen);

/* ---- check helpers shared by the kinds of problem (check.c) ---- */
/* One compared output: max |opt - ref|, max |naive32 - ref|, max |ref|; dt = the optimized output's dtype
 * (its rounding, 2 ulp at max |ref|, is allowed; none for f32); name NULL = printed without a name. */
typedef struct qerr {
    const char *name;
    double err, err32, max_ref;
    ak_dtype dt;
} qerr;

void qerr_add(qerr *q, double opt, double ref, double n32);
int report_items(const char *kernel, const qerr *q, int n, int extra_fail, const char *extra);
void pair_order(int n, uint64_t seed, int *pairs);
size_t count_diff(const unsigned char *a, const unsigned char *b, size_t n, long long *first);

/* ---- bench rows and timings (bench.c) ---- */
enum field_kind { K_STR, K_INT, K_NUM, K_NULL };

typedef struct row_field {
    const char *key;
    enum field_kind kind;
    char s[512];
    double x;
} row_field;

typedef struct bench_row {
    row_field f[64];
    int n;
} bench_row;

/* What every row shares. */
typedef struct bench_env {
    ak_peak peak;
    int have_peak;
    char cpu[256], commit[64];
    const char *isa;
    int threads;
} bench_env;

/* Timings of one problem. */
typedef struct timing {
    double median_ms, min_ms, mean_ms, stddev_ms, flops;
    double kv_bytes;      /* decode: cache bytes one call must read */
    char kernel[128];
} timing;

void add_str(bench_row *r, const char *key, const char *v);
void add_int(bench_row *r, const char *key, long long v);
void add_num(bench_row *r, const char *key, double v);
void write_header(FILE *out, const bench_row *r, out_format fmt, int first);
void write_row(FILE *out, const bench_row *r, out_format fmt, int index);
void time_stats(const double *ms, int n, timing *t);

/* ---- linear-attention problems in each mode (linear.c) ---- */
int linear_check_one(ak_ctx *ctx, const options *o, const problem *p);
int linear_bitwise_one(ak_ctx *ctx_n, ak_ctx *ctx_1, const options *o, const problem *p);
int bench_linear(ak_ctx *ctx, const options *o, const bench_env *env, const problem *p, int name_w, int *rows,
                 int *last_kind);
/* ---- text files (util.c) ---- */
char *read_file(const char *path, size_t *len);   /* malloc'ed, NUL-terminated; NULL on failure (errno set) */

/* ---- utilities (util.c) ---- */
double now_seconds(void);
uint64_t rng_next(uint64_t *state);
float rng_uniform(uint64_t *state);   /* in [-1, 1) */
void cpu_model(char *buf, size_t len);
void build_commit(char *buf, size_t len);
void *xalloc(size_t bytes);           /* 64-byte aligned, NULL on failure */
int parse_int(const char *s, long lo, long hi, int *out);
int parse_float(const char *s, float *out);
void format_float(float x, char *buf, size_t len);
void json_string(FILE *f, const char *s);
double median_of(const double *v, int n);
const char *error_text(const ak_ctx *ctx, ak_status st);

#endif /* ATTNKIT_CLI_H */
