/*
 * attnkit eval ppl | passkey | speed: a GGUF model on long inputs, with dense attention and the methods given by
 * --attn side by side (dense always first, the others on the layers of --attn-layers, default the global ones).
 *
 *   ppl      llama-perplexity's protocol (docs/CLI.md): chunks of CTX tokens, the first replaced by BOS, a fresh
 *            cache per chunk, the second half of each chunk scored; PPL +/- error, and per method the top-1
 *            agreement with dense and the mean |nll - nll_dense| over the same tokens.
 *   passkey  llama-passkey's synthetic prompt (or a natural haystack from a file) with the needle at a depth;
 *            greedy answer; accuracy table per method (rows depths, columns lengths), PNG heat map.
 *   speed    prefill and decode tokens/s (median of R repetitions) and the attention share of the time.
 *
 * One session serves every method: before each run it is reset and its layers are set to dense, then to the
 * method, so the KV cache exists once whatever the number of methods. Uses only the public header.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "model_cli.h"

#define EV_MAX_METHODS 16
#define EV_MAX_LENGTHS 32
#define EV_PASSKEY_GEN 8

enum { SUB_PPL = 1, SUB_PASSKEY = 2, SUB_SPEED = 4 };

typedef struct ev {
    int sub;
    const char *subname;
    const char *model, *layers, *file, *haystack, *png, *nll_out;
    const char *methods[EV_MAX_METHODS];
    int n_methods;
    int threads, json, quiet, chunk;
    ak_dtype kv;
    int ctx_len, chunks;
    int32_t lengths[EV_MAX_LENGTHS];
    int n_lengths;
    int32_t depths[101];
    int n_depths;
    int trials, gen, reps;
    long seed;
    /* runtime */
    ak_ctx *ctx;
    ak_model *m;
    ak_model_info in;
    const ak_tokenizer *tok;
    ak_vocab_info vi;
    ak_session *s;
} ev;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *kv_name(ak_dtype t) { return t == AK_BF16 ? "bf16" : t == AK_F16 ? "f16" : "f32"; }

/* ---- argument parsing ---- */

/* Integer in [lo, hi]; a trailing k multiplies by 1024 ("32k"). 0 on success. */
static int ev_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return 1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno) return 1;
    if (*end == 'k' || *end == 'K') {
        if (v > (1L << 40) || v < -(1L << 40)) return 1;
        v *= 1024;
        end++;
    }
    if (*end || v < lo || v > hi) return 1;
    *out = v;
    return 0;
}

/* "a,b,c" -> up to cap integers in [lo, hi]; the count, or -1. */
static int ev_list(const char *s, int32_t *out, int cap, long lo, long hi) {
    char buf[1024];
    if (strlen(s) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long v;
        if (n >= cap || ev_int(t, lo, hi, &v)) return -1;
        out[n++] = (int32_t)v;
    }
    return n > 0 ? n : -1;
}

static void usage_main(FILE *f) {
    fprintf(f,
            "usage: attnkit eval ppl|passkey|speed [options]   (attnkit eval SUBCOMMAND --help)\n"
            "  ppl      -f FILE -c CTX [--chunks K]: perplexity with llama-perplexity's protocol\n"
            "  passkey  [--lengths 1024,...] [--depths 0,10,...,100] [--trials T] [--haystack FILE] [--png FILE]:\n"
            "           llama-passkey's needle retrieval; accuracy per (depth, length), PNG heat map\n"
            "  speed    [--lengths 1024,8192,32768] [--gen N] [--reps R] [-f FILE]: prefill / decode tokens/s\n"
            "common options:\n"
            "  -m, --model FILE     GGUF model (default $AK_MODEL_GGUF)\n"
            "  --attn SPEC          a method to compare with dense (repeatable; dense always runs first):\n"
            "                       streaming[:sinks=S,window=W] | kinetics[:block=,topk=,sink=,local=] |\n"
            "                       flexprefill|minference|mminference|anchor|dhsa|routing|dma[:key=value,...]\n"
            "  --attn-layers L      layers the methods apply to: comma list, 'global' (default) or 'all'\n"
            "  --kv f32|bf16|f16    KV cache type (default f32)\n"
            "  --chunk N            prefill chunk in tokens (default 512)\n"
            "  -t, --threads N      threads (default: AK_NUM_THREADS or all cores)\n"
            "  -o human|json        output: tables (default) or JSON lines for scripts\n"
            "  -q, --quiet          no progress on stderr\n");
}

static void usage_sub(int sub, FILE *f) {
    if (sub == SUB_PPL)
        fprintf(
            f,
            "usage: attnkit eval ppl -f FILE -c CTX [--chunks K] [common options]\n"
            "  tokenize FILE with BOS; chunk i = tokens [i*CTX, (i+1)*CTX) with its first token set to BOS, fresh\n"
            "  cache per chunk; positions CTX/2 .. CTX-2 scored (predicting the next token). Needs >= 2*CTX tokens.\n"
            "  --chunks K: at most K chunks (default: all). Prints the running [i]ppl and PPL = x +/- err per method,\n"
            "  with each method's top-1 agreement with dense and mean |nll - nll_dense|.\n"
            "  --nll-out F: every scored position to F (tab-separated: chunk, pos, next token, then nll and\n"
            "  argmax per method), e.g. to compare with bench/llama_cpp_ppl.py --nll-out position by position.\n");
    else if (sub == SUB_PASSKEY)
        fprintf(f,
                "usage: attnkit eval passkey [--lengths L,...] [--depths D,...] [--trials T] [--seed S]\n"
                "                            [--haystack FILE] [--png FILE] [common options]\n"
                "  --lengths   prompt lengths in tokens (default 1024,2048,4096,8192,16384,32768; 'k' = *1024; capped\n"
                "              at the model's context minus the %d answer tokens)\n"
                "  --depths    needle depth in %% of the haystack (default 0,10,...,100)\n"
                "  --trials    keys per (length, depth) (default 1); --seed S (default 1) makes the keys\n"
                "  --haystack  natural haystack: text of FILE cut to the length (default: llama-passkey's junk)\n"
                "  --png       heat map, one panel per method (green found, red missed)\n",
                EV_PASSKEY_GEN);
    else
        fprintf(f, "usage: attnkit eval speed [--lengths L,...] [--gen N] [--reps R] [-f FILE] [common options]\n"
                   "  --lengths   prompt lengths (default 1024,8192,32768; capped at the model's context minus N)\n"
                   "  --gen N     decoded tokens after each prompt (default 32)\n"
                   "  --reps R    repetitions; the median is reported (default 3)\n"
                   "  -f FILE     prompt text (default: a deterministic synthetic text)\n");
    fprintf(f, "common options: -m MODEL, --attn SPEC (repeatable), --attn-layers L, --kv f32|bf16|f16, --chunk N,\n"
               "  -t N, -o human|json, -q (attnkit eval --help)\n");
}

static int bad(const ev *e, const char *fmt, const char *arg) {
    fprintf(stderr, "attnkit eval %s: ", e->subname);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (attnkit eval %s --help)\n", e->subname);
    return 2;
}

static int add_method(ev *e, const char *spec) {
    if (!*spec) return bad(e, "--attn: empty method%s", "");
    for (int i = 0; i < e->n_methods; i++)
        if (!strcmp(e->methods[i], spec)) return 0;
    if (e->n_methods >= EV_MAX_METHODS) return bad(e, "at most 16 methods%s", "");
    e->methods[e->n_methods++] = spec;
    return 0;
}

/* Does argument a name this option (n1, or n2 when not NULL)? Consumes the value when val; a known option that
 * does not apply to the subcommand, or lacks its value, sets *err to 2 (message printed) and answers no. */
static int opt(ev *e, const char *a, const char *n1, const char *n2, int mask, int val, const char *v, int *i,
               int *err) {
    if (strcmp(a, n1) && (!n2 || strcmp(a, n2))) return 0;
    if (!(e->sub & mask)) {
        *err = bad(e, "option %s does not apply to this subcommand", a);
        return 0;
    }
    if (val && !v) {
        *err = bad(e, "%s needs a value", a);
        return 0;
    }
    if (val) (*i)++;
    return 1;
}

/* 0 = parsed, 1 = help printed, 2 = usage error (message printed). */
static int parse_args(ev *e, int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        int err = 0;
        const int ALL = SUB_PPL | SUB_PASSKEY | SUB_SPEED;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_sub(e->sub, stdout);
            return 1;
        } else if (opt(e, a, "-m", "--model", ALL, 1, v, &i, &err)) {
            e->model = v;
        } else if (opt(e, a, "--attn", NULL, ALL, 1, v, &i, &err)) {
            if (add_method(e, v)) return 2;
        } else if (opt(e, a, "--attn-layers", NULL, ALL, 1, v, &i, &err)) {
            e->layers = v;
        } else if (opt(e, a, "--kv", NULL, ALL, 1, v, &i, &err)) {
            if (!strcmp(v, "f32")) e->kv = AK_F32;
            else if (!strcmp(v, "bf16")) e->kv = AK_BF16;
            else if (!strcmp(v, "f16")) e->kv = AK_F16;
            else return bad(e, "--kv '%s': f32, bf16 or f16", v);
        } else if (opt(e, a, "--chunk", NULL, ALL, 1, v, &i, &err)) {
            if (ev_int(v, 1, 1 << 20, &x)) return bad(e, "--chunk '%s': an integer >= 1", v);
            e->chunk = (int)x;
        } else if (opt(e, a, "-t", "--threads", ALL, 1, v, &i, &err)) {
            if (ev_int(v, 1, 4096, &x)) return bad(e, "--threads '%s': an integer >= 1", v);
            e->threads = (int)x;
        } else if (opt(e, a, "-o", "--output", ALL, 1, v, &i, &err)) {
            if (!strcmp(v, "human")) e->json = 0;
            else if (!strcmp(v, "json") || !strcmp(v, "jsonl")) e->json = 1;
            else return bad(e, "-o '%s': human or json", v);
        } else if (opt(e, a, "-q", "--quiet", ALL, 0, v, &i, &err)) {
            e->quiet = 1;
        } else if (opt(e, a, "-f", "--file", SUB_PPL | SUB_SPEED, 1, v, &i, &err)) {
            e->file = v;
        } else if (opt(e, a, "-c", "--ctx", SUB_PPL, 1, v, &i, &err)) {
            if (ev_int(v, 16, 1 << 24, &x)) return bad(e, "-c '%s': a context of at least 16 tokens", v);
            e->ctx_len = (int)x;
        } else if (opt(e, a, "--nll-out", NULL, SUB_PPL, 1, v, &i, &err)) {
            e->nll_out = v;
        } else if (opt(e, a, "--chunks", NULL, SUB_PPL, 1, v, &i, &err)) {
            if (ev_int(v, 1, 1 << 30, &x)) return bad(e, "--chunks '%s': an integer >= 1", v);
            e->chunks = (int)x;
        } else if (opt(e, a, "--lengths", NULL, SUB_PASSKEY | SUB_SPEED, 1, v, &i, &err)) {
            e->n_lengths = ev_list(v, e->lengths, EV_MAX_LENGTHS, 64, 1 << 24);
            if (e->n_lengths < 0)
                return bad(e, "--lengths '%s': up to 32 comma-separated lengths >= 64 ('32k' = 32768)", v);
        } else if (opt(e, a, "--depths", NULL, SUB_PASSKEY, 1, v, &i, &err)) {
            e->n_depths = ev_list(v, e->depths, 101, 0, 100);
            if (e->n_depths < 0) return bad(e, "--depths '%s': comma-separated percentages in [0, 100]", v);
        } else if (opt(e, a, "--trials", NULL, SUB_PASSKEY, 1, v, &i, &err)) {
            if (ev_int(v, 1, 100000, &x)) return bad(e, "--trials '%s': an integer >= 1", v);
            e->trials = (int)x;
        } else if (opt(e, a, "--seed", NULL, SUB_PASSKEY, 1, v, &i, &err)) {
            if (ev_int(v, 0, 1L << 40, &x)) return bad(e, "--seed '%s': an integer >= 0", v);
            e->seed = x;
        } else if (opt(e, a, "--haystack", NULL, SUB_PASSKEY, 1, v, &i, &err)) {
            e->haystack = v;
        } else if (opt(e, a, "--png", NULL, SUB_PASSKEY, 1, v, &i, &err)) {
            e->png = v;
        } else if (opt(e, a, "--gen", NULL, SUB_SPEED, 1, v, &i, &err)) {
            if (ev_int(v, 0, 1 << 20, &x)) return bad(e, "--gen '%s': an integer >= 0", v);
            e->gen = (int)x;
        } else if (opt(e, a, "--reps", NULL, SUB_SPEED, 1, v, &i, &err)) {
            if (ev_int(v, 1, 1000, &x)) return bad(e, "--reps '%s': an integer >= 1", v);
            e->reps = (int)x;
        } else if (err) {
            return err;
        } else {
            return bad(e, "unknown option '%s'", a);
        }
    }
    if (!e->model || !*e->model) return bad(e, "no model: give -m FILE or set AK_MODEL_GGUF%s", "");
    if (e->sub == SUB_PPL && !e->file) return bad(e, "-f FILE is required%s", "");
    if (e->sub == SUB_PPL && !e->ctx_len) return bad(e, "-c CTX is required%s", "");
    return 0;
}

/* ---- shared runtime ---- */

static int ev_load(ev *e) {
    ak_status st = ak_ctx_create(&e->ctx);
    if (st != AK_OK) return mc_fail(NULL, st, "context");
    if (e->threads > 0 && (st = ak_ctx_set_num_threads(e->ctx, e->threads)) != AK_OK)
        return mc_fail(e->ctx, st, "--threads");
    if ((st = ak_model_load(e->ctx, e->model, &e->m)) != AK_OK) return mc_fail(e->ctx, st, e->model);
    ak_model_get_info(e->m, &e->in);
    e->tok = ak_model_tokenizer(e->m);
    if ((st = ak_tokenizer_info(e->tok, &e->vi)) != AK_OK) return mc_fail(e->ctx, st, "tokenizer");
    if (e->layers) {
        int32_t ls[256];
        if (mc_parse_layers(e->m, e->layers, ls, 256) <= 0) {
            fprintf(
                stderr,
                "attnkit eval %s: --attn-layers '%s': a comma list of layer numbers in [0, %d), 'global' or 'all'\n",
                e->subname, e->layers, e->in.n_layer);
            return 2;
        }
    }
    return 0;
}

/* Put method k on the session: a fresh cache, dense everywhere, then the method on its layers. */
static int use_method(ev *e, int k) {
    ak_status st = ak_session_reset(e->s);
    if (st == AK_OK) st = ak_session_set_attn(e->s, AK_LAYERS_ALL, "dense");
    if (st != AK_OK) return mc_fail(e->ctx, st, "session");
    return mc_set_attn(e->ctx, e->s, e->m, e->methods[k], e->layers);
}

typedef struct {
    const char *label;
    double t0;
} progress_state;

static void progress(void *user, int32_t done, int32_t total) {
    progress_state *ps = (progress_state *)user;
    if (total < 4096) return;
    double dt = now_s() - ps->t0;
    fprintf(stderr, "\r  %s: %d/%d tokens, %.0f tok/s   ", ps->label, done, total, dt > 0 ? done / dt : 0.0);
    if (done == total) fprintf(stderr, "\r%*s\r", 70, "");
}

/* Session of n_ctx tokens; every method is tried once so that a bad spec fails before any long run. */
static int ev_session(ev *e, int32_t n_ctx) {
    ak_session_config cfg;
    ak_session_config_init(&cfg);
    cfg.n_ctx = n_ctx;
    cfg.kv_dtype = e->kv;
    if (e->chunk) cfg.n_chunk = e->chunk;
    ak_status st = ak_session_create(e->m, &cfg, &e->s);
    if (st != AK_OK) return mc_fail(e->ctx, st, "session");
    for (int k = 0; k < e->n_methods; k++)
        if (use_method(e, k)) return 1;
    return 0;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* Fields every JSON row starts with. */
static void json_head(const ev *e, FILE *f, int k) {
    fprintf(f, "{\"cmd\":\"%s\",\"engine\":\"attnkit\",\"model\":", e->subname);
    json_str(f, e->in.name);
    fprintf(f, ",\"method\":");
    json_str(f, e->methods[k]);
    fprintf(f, ",\"attn_layers\":");
    json_str(f, k == 0 ? "all" : e->layers ? e->layers : "global");
    fprintf(f, ",\"kv\":\"%s\",\"threads\":%d", kv_name(e->kv), ak_ctx_get_num_threads(e->ctx));
}

static int ev_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double ev_median(double *v, int n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, ev_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Fail now, not after hours of runs, when an output file cannot be written (a file left empty is removed). */
static int out_check(const ev *e, const char *opt, const char *path) {
    int existed = access(path, F_OK) == 0;
    FILE *f = fopen(path, "ab");
    if (!f) {
        fprintf(stderr, "attnkit eval %s: %s %s: %s\n", e->subname, opt, path, strerror(errno));
        return 1;
    }
    fclose(f);
    if (!existed) remove(path);
    return 0;
}

/* ---- ppl ---- */

typedef struct {
    double s1, s2, absd, secs;
    long cnt, agree, toks;
} ppl_acc;

static int run_ppl(ev *e) {
    const int32_t C = e->ctx_len;
    if (C > e->in.n_ctx_train) {
        fprintf(stderr, "attnkit eval ppl: -c %d exceeds the model's context of %d tokens\n", C, e->in.n_ctx_train);
        return 2;
    }
    if (e->nll_out && out_check(e, "--nll-out", e->nll_out)) return 1;
    size_t len;
    char *text = mc_read_file(e->file, &len);
    if (!text) return 1;
    int32_t *ids = NULL, n = 0;
    int rc = mc_tokenize(e->ctx, e->tok, text, len, 0, &ids, &n);
    free(text);
    if (rc) return 1;
    if ((int64_t)n < 2 * (int64_t)C) {
        fprintf(stderr,
                "attnkit eval ppl: %s has %d tokens; a context of %d needs at least 2*%d = %d tokens (as "
                "llama-perplexity)\n",
                e->file, n, C, C, 2 * C);
        free(ids);
        return 1;
    }
    int n_chunk = n / C;
    if (e->chunks > 0 && e->chunks < n_chunk) n_chunk = e->chunks;
    const int32_t first = C / 2, ns = C - 1 - first;
    const int M = e->n_methods;
    double *nll = (double *)malloc(sizeof(double) * (size_t)M * (size_t)ns);
    int32_t *top1 = (int32_t *)malloc(sizeof(int32_t) * (size_t)M * (size_t)ns);
    int32_t *chunk = (int32_t *)malloc(sizeof(int32_t) * (size_t)C);
    ppl_acc acc[EV_MAX_METHODS];
    memset(acc, 0, sizeof acc);
    FILE *fo = NULL;
    rc = 1;
    if (!nll || !top1 || !chunk) {
        fprintf(stderr, "attnkit eval ppl: out of memory\n");
        goto done;
    }
    if (e->nll_out) {
        if (!(fo = fopen(e->nll_out, "w"))) {
            fprintf(stderr, "attnkit eval ppl: --nll-out %s: %s\n", e->nll_out, strerror(errno));
            goto done;
        }
        fprintf(fo, "chunk\tpos\tnext");
        for (int k = 0; k < M; k++) fprintf(fo, "\tnll:%s\ttop1:%s", e->methods[k], e->methods[k]);
        fprintf(fo, "\n");
    }
    if (ev_session(e, C)) goto done;
    if (!e->json) {
        printf("perplexity: %s, %d tokens, context %d, %d chunk%s, %d scored tokens per chunk (positions %d..%d)\n",
               e->file, n, C, n_chunk, n_chunk == 1 ? "" : "s", ns, first, C - 2);
        printf("model %s, %d threads, KV %s; methods:", e->in.name, ak_ctx_get_num_threads(e->ctx), kv_name(e->kv));
        for (int k = 0; k < M; k++) printf(" %s%s", k ? "| " : "", e->methods[k]);
        printf("%s%s\n", M > 1 ? " on layers " : "", M > 1 ? (e->layers ? e->layers : "global") : "");
        fflush(stdout);
    }
    for (int c = 0; c < n_chunk; c++) {
        memcpy(chunk, ids + (int64_t)c * C, sizeof(int32_t) * (size_t)C);
        if (e->vi.add_bos && e->vi.bos >= 0) chunk[0] = e->vi.bos;
        for (int k = 0; k < M; k++) {
            if (use_method(e, k)) goto done;
            char label[96];
            snprintf(label, sizeof label, "chunk %d/%d, %.60s", c + 1, n_chunk, e->methods[k]);
            progress_state ps = {label, now_s()};
            ak_session_set_progress(e->s, e->quiet ? NULL : progress, &ps);
            double t0 = now_s();
            ak_status st = ak_session_eval_nll(e->s, chunk, C, first, nll + (size_t)k * ns, top1 + (size_t)k * ns);
            double dt = now_s() - t0;
            if (st != AK_OK) {
                rc = mc_fail(e->ctx, st, "eval");
                goto done;
            }
            ppl_acc *a = &acc[k];
            a->secs += dt;
            a->toks += C;
            for (int32_t j = 0; j < ns; j++) {
                double v = nll[(size_t)k * ns + j];
                a->s1 += v;
                a->s2 += v * v;
                a->cnt++;
                a->agree += top1[(size_t)k * ns + j] == top1[j];
                a->absd += fabs(v - nll[j]);
            }
        }
        for (int32_t j = 0; fo && j < ns; j++) {
            fprintf(fo, "%d\t%d\t%d", c, first + j, chunk[first + j + 1]);
            for (int k = 0; k < M; k++) fprintf(fo, "\t%.6f\t%d", nll[(size_t)k * ns + j], top1[(size_t)k * ns + j]);
            fprintf(fo, "\n");
        }
        if (e->json) {
            for (int k = 0; k < M; k++) {
                json_head(e, stdout, k);
                printf(",\"file\":");
                json_str(stdout, e->file);
                printf(",\"ctx\":%d,\"chunk\":%d,\"n_chunks\":%d,\"ppl\":%.6f}\n", C, c + 1, n_chunk,
                       exp(acc[k].s1 / (double)acc[k].cnt));
            }
        } else {
            printf("[%d]", c + 1);
            for (int k = 0; k < M; k++)
                printf("%s%.4f%s%s", k ? " " : "", exp(acc[k].s1 / (double)acc[k].cnt), M > 1 ? " " : "",
                       M > 1 ? e->methods[k] : "");
            printf("\n");
        }
        fflush(stdout);
    }
    if (!e->json) printf("\n");
    for (int k = 0; k < M; k++) {
        ppl_acc *a = &acc[k];
        double mean = a->s1 / (double)a->cnt, ppl = exp(mean), var = a->s2 / (double)a->cnt - mean * mean;
        /* llama-perplexity's error: the standard error of the mean nll, carried through exp */
        double err = var > 0 && a->cnt > 1 ? ppl * sqrt(var / (double)(a->cnt - 1)) : 0.0;
        double agree = (double)a->agree / (double)a->cnt, absd = a->absd / (double)a->cnt, tps = a->toks / a->secs;
        if (e->json) {
            json_head(e, stdout, k);
            printf(",\"file\":");
            json_str(stdout, e->file);
            printf(
                ",\"ctx\":%d,\"n_chunks\":%d,\"tokens\":%d,\"scored\":%ld,\"final\":true,\"ppl\":%.6f,\"ppl_err\":%.6f,"
                "\"nll_mean\":%.8f,\"top1_agree\":%.6f,\"mean_abs_dnll\":%.8f,\"tok_s\":%.2f,\"seconds\":%.3f}\n",
                C, n_chunk, n, a->cnt, ppl, err, mean, agree, absd, tps, a->secs);
        } else {
            if (k == 0) {
                printf("Final estimate: PPL = %.4f +/- %.5f   (%s)\n\n", ppl, err, e->methods[0]);
                printf("%-36s %22s %10s %12s %10s\n", "method", "PPL", "top1=dense", "mean|dnll|", "tok/s");
            }
            char p[64], ag[32], ad[32];
            snprintf(p, sizeof p, "%.4f +/- %.5f", ppl, err);
            snprintf(ag, sizeof ag, k ? "%.2f%%" : "-", 100.0 * agree);
            snprintf(ad, sizeof ad, k ? "%.5f" : "-", absd);
            printf("%-36.36s %22s %10s %12s %10.1f\n", e->methods[k], p, ag, ad, tps);
        }
    }
    if (!e->json && M > 1)
        printf("(top1=dense: share of scored positions whose argmax equals dense's; mean|dnll|: mean over the same\n"
               " positions of |nll - nll_dense|, natural log; tok/s: chunk tokens through the model per second)\n");
    rc = 0;
done:
    if (fo && fclose(fo) && rc == 0) {
        fprintf(stderr, "attnkit eval ppl: --nll-out %s: write error\n", e->nll_out);
        rc = 1;
    }
    free(ids);
    free(nll);
    free(top1);
    free(chunk);
    return rc;
}

/* ---- passkey ---- */

static const char PK_PREFIX[] =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there.";
static const char PK_JUNK[] =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char PK_SUFFIX[] = " What is the pass key? The pass key is";

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->n + n + 1) c *= 2;
        char *q = (char *)realloc(b->p, c);
        if (!q) return 1;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static int sb_str(sbuf *b, const char *s) { return sb_add(b, s, strlen(s)); }

/* The key of (length, depth, trial): 1 .. 50000, as llama-passkey draws it, from a hash so any cell can be rerun. */
static int32_t pk_key(long seed, int32_t len, int32_t depth, int trial) {
    uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(uint32_t)len << 20) ^
                 ((uint64_t)(uint32_t)depth << 8) ^ (uint64_t)(uint32_t)trial * 0xD1B54A32D192ED03ULL;
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return (int32_t)(x % 50000) + 1;
}

typedef struct {
    const char *hay;     /* natural haystack text, or NULL for the junk sentence */
    size_t hay_len;
    int32_t n_junk;      /* synthetic: repetitions */
    size_t hay_bytes;    /* natural: bytes of the haystack used */
} pk_shape;

/* The prompt for a shape, the needle at depth% of the haystack. */
static int pk_build(sbuf *b, const pk_shape *sh, int32_t depth, int32_t key) {
    char needle[160];
    snprintf(needle, sizeof needle, " The pass key is %d. Remember it. %d is the pass key.", key, key);
    b->n = 0;
    int err = sb_str(b, PK_PREFIX);
    if (!sh->hay) {
        int32_t at = (int32_t)((int64_t)sh->n_junk * depth / 100);
        for (int32_t i = 0; i <= sh->n_junk && !err; i++) {
            if (i == at) err |= sb_str(b, needle);
            if (i < sh->n_junk) err |= sb_add(b, PK_JUNK, sizeof PK_JUNK - 1);
        }
    } else {
        size_t hb = sh->hay_bytes, at = (size_t)((double)hb * depth / 100.0);
        /* the needle goes before a space (it starts with one), so no word is cut */
        while (at > 0 && at < hb && sh->hay[at] != ' ' && sh->hay[at] != '\n') at++;
        err |= sb_str(b, " ");
        err |= sb_add(b, sh->hay, at);
        err |= sb_str(b, needle);
        err |= sb_add(b, sh->hay + at, hb - at);
    }
    err |= sb_str(b, PK_SUFFIX);
    return err;
}

/* Tokens of text (BOS included, parse_special off as llama-passkey); -1 on failure (message printed). */
static int32_t pk_count(ev *e, const char *text, size_t len, int32_t **ids_out) {
    int32_t *ids = NULL, n = 0;
    if (mc_tokenize(e->ctx, e->tok, text, len, 0, &ids, &n)) return -1;
    if (ids_out) *ids_out = ids;
    else free(ids);
    return n;
}

/* Choose the haystack size for a prompt of at most max_tok tokens (close to it). 0 on success. */
static int pk_fit(ev *e, pk_shape *sh, int32_t max_tok, int32_t len_label) {
    sbuf b = {0};
    int rc = 1;
    if (!sh->hay) {
        sh->n_junk = 0;
        if (pk_build(&b, sh, 0, 50000)) goto oom;
        int32_t n0 = pk_count(e, b.p, b.n, NULL);
        sh->n_junk = 64;
        if (n0 < 0 || pk_build(&b, sh, 0, 50000)) goto out;
        int32_t n64 = pk_count(e, b.p, b.n, NULL);
        if (n64 < 0) goto out;
        double per = (n64 - n0) / 64.0;
        sh->n_junk = per > 0 ? (int32_t)((max_tok - n0) / per) : 0;
        /* the estimate may be off by a repetition or two: step to the largest count that fits */
        int32_t nt = 0;
        for (; sh->n_junk >= 1; sh->n_junk--) {
            if (pk_build(&b, sh, 0, 50000)) goto oom;
            if ((nt = pk_count(e, b.p, b.n, NULL)) < 0) goto out;
            if (nt <= max_tok) break;
        }
        for (int it = 0; it < 8 && sh->n_junk >= 1; it++) {
            sh->n_junk++;
            if (pk_build(&b, sh, 0, 50000)) goto oom;
            if ((nt = pk_count(e, b.p, b.n, NULL)) < 0) goto out;
            if (nt > max_tok) {
                sh->n_junk--;
                break;
            }
        }
        if (sh->n_junk < 1) {
            fprintf(stderr, "attnkit eval passkey: length %d is too short for the prompt (%d tokens without junk)\n",
                    len_label, n0);
            goto out;
        }
    } else {
        /* bytes per token from a sample, then proportional corrections */
        size_t sample = sh->hay_len < 65536 ? sh->hay_len : 65536;
        int32_t ns = pk_count(e, sh->hay, sample, NULL);
        if (ns < 0) goto out;
        double bpt = ns > 1 ? (double)sample / (ns - 1) : 4.0;
        int32_t fixed = pk_count(e, PK_PREFIX, strlen(PK_PREFIX), NULL) + 20 + 12;
        int32_t target = max_tok - fixed;
        size_t hb = (size_t)(bpt * target);
        for (int it = 0; it < 6; it++) {
            if (hb > sh->hay_len) hb = sh->hay_len;
            int32_t nh = pk_count(e, sh->hay, hb, NULL);
            if (nh < 0) goto out;
            nh--;   /* BOS */
            if (hb == sh->hay_len && nh < target) {
                if (nh < target * 9 / 10) {
                    fprintf(
                        stderr,
                        "attnkit eval passkey: the haystack %s has %d tokens, too short for a prompt of %d tokens\n",
                        e->haystack, nh, max_tok);
                    goto out;
                }
                break;
            }
            if (nh <= target && nh >= target - 8) break;
            hb = (size_t)((double)hb * target / (nh > 0 ? nh : 1));
        }
        while (hb > 0 && hb < sh->hay_len && sh->hay[hb] != ' ' && sh->hay[hb] != '\n') hb--;
        sh->hay_bytes = hb;
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "attnkit eval passkey: out of memory\n");
out:
    free(b.p);
    return rc;
}

/* Shrink the haystack by about `over` tokens (a prompt came out too long). */
static void pk_shrink(pk_shape *sh, int32_t over) {
    if (!sh->hay) {
        sh->n_junk -= 1 + over / 20;
        if (sh->n_junk < 0) sh->n_junk = 0;
    } else {
        size_t cut = (size_t)(over + 4) * 4;
        sh->hay_bytes = sh->hay_bytes > cut ? sh->hay_bytes - cut : 0;
        while (sh->hay_bytes > 0 && sh->hay[sh->hay_bytes] != ' ' && sh->hay[sh->hay_bytes] != '\n') sh->hay_bytes--;
    }
}

/* ---- a tiny 3x5 bitmap font for the heat map labels (rows top to bottom, '1' = ink) ---- */

static const char *glyph(char c) {
    static const char *const letters[26] = {
        "010101111101101", "110101110101110", "011100100100011", "110101101101110", "111100110100111",
        "111100110100100", "011100101101011", "101101111101101", "111010010010111", "001001001101010",
        "101101110101101", "100100100100111", "101111111101101", "110101101101101", "010101101101010",
        "110101110100100", "010101101110011", "110101110101101", "011100010001110", "111010010010010",
        "101101101101111", "101101101101010", "101101111111101", "101101010101101", "101101010010010",
        "111001010100111"};
    static const char *const digits[10] = {"111101101101111", "010110010010111", "111001111100111", "111001111001111",
                                           "101101111001001", "111100111001111", "111100111101111", "111001001001001",
                                           "111101111101111", "111101111001111"};
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    if (c >= 'A' && c <= 'Z') return letters[c - 'A'];
    if (c >= '0' && c <= '9') return digits[c - '0'];
    switch (c) {
    case ':': return "000010000010000";
    case '=': return "000111000111000";
    case '.': return "000000000000010";
    case ',': return "000000000010010";
    case '-': return "000000111000000";
    case '_': return "000000000000111";
    case '%': return "101001010100101";
    case '/': return "001001010100100";
    case '(': return "010100100100010";
    case ')': return "010001001001010";
    default: return NULL;   /* space and the rest: blank */
    }
}

typedef struct {
    unsigned char *px;
    int w, h;
} canvas;

static void put(canvas *cv, int x, int y, const unsigned char *c) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    memcpy(cv->px + 3 * ((size_t)y * cv->w + x), c, 3);
}

static void fill(canvas *cv, int x0, int y0, int w, int h, const unsigned char *c) {
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) put(cv, x, y, c);
}

/* Text at scale 2 (6x10 glyphs, 8 px advance), at most max_chars characters. */
static void draw_text(canvas *cv, int x, int y, const char *s, int max_chars, const unsigned char *c) {
    for (int i = 0; s[i] && i < max_chars; i++, x += 8) {
        const char *g = glyph(s[i]);
        if (!g) continue;
        for (int r = 0; r < 5; r++)
            for (int k = 0; k < 3; k++)
                if (g[r * 3 + k] == '1') fill(cv, x + 2 * k, y + 2 * r, 2, 2, c);
    }
}

static int heat_png(const ev *e, const int32_t *lens, int nl, const int *found, const int *runs, char *err,
                    size_t errlen) {
    const int M = e->n_methods, nd = e->n_depths;
    const int cw = 40, chh = 18, left = 40, top = 38, gap = 24;
    int pw = left + nl * cw;
    if (pw < left + 8 * 15) pw = left + 8 * 15;   /* room for the axis title */
    for (int k = 0; k < M; k++) {
        int tw = 8 * (int)strlen(e->methods[k]);
        if (tw > pw && tw <= 400) pw = tw;
    }
    const int W = 12 + M * pw + (M - 1) * gap + 12, H = top + nd * chh + 58;
    canvas cv = {(unsigned char *)malloc((size_t)W * H * 3), W, H};
    if (!cv.px) return snprintf(err, errlen, "out of memory"), -1;
    memset(cv.px, 255, (size_t)W * H * 3);
    const unsigned char ink[3] = {0, 0, 0}, grey[3] = {200, 200, 200}, red[3] = {214, 39, 40}, green[3] = {44, 160, 44};
    for (int k = 0; k < M; k++) {
        int x0 = 12 + k * (pw + gap);
        draw_text(&cv, x0, 6, e->methods[k], (pw + gap - 8) / 8, ink);   /* long specs are cut */
        draw_text(&cv, x0, 22, "DEPTH %", 7, ink);
        for (int d = 0; d < nd; d++) {
            char lab[8];
            snprintf(lab, sizeof lab, "%d", e->depths[d]);
            draw_text(&cv, x0 + left - 8 - 8 * (int)strlen(lab), top + d * chh + 4, lab, 4, ink);
            for (int l = 0; l < nl; l++) {
                size_t ix = ((size_t)k * nd + d) * nl + l;
                unsigned char c[3];
                if (runs[ix] == 0) memcpy(c, grey, 3);
                else {
                    double a = (double)found[ix] / runs[ix];
                    for (int j = 0; j < 3; j++) c[j] = (unsigned char)lrint(red[j] + a * (green[j] - red[j]));
                }
                fill(&cv, x0 + left + l * cw, top + d * chh, cw - 1, chh - 1, c);
            }
        }
        for (int l = 0; l < nl; l++) {
            char lab[16];
            if (lens[l] % 1024 == 0) snprintf(lab, sizeof lab, "%dK", lens[l] / 1024);
            else snprintf(lab, sizeof lab, "%d", lens[l]);
            int tw = 8 * (int)strlen(lab);
            draw_text(&cv, x0 + left + l * cw + (cw - tw) / 2, top + nd * chh + 4, lab, 5, ink);
        }
        draw_text(&cv, x0 + left, top + nd * chh + 20, "LENGTH (TOKENS)", 15, ink);
    }
    int ly = H - 18;
    fill(&cv, 12, ly, 12, 10, green);
    draw_text(&cv, 28, ly, "FOUND", 5, ink);
    fill(&cv, 84, ly, 12, 10, red);
    draw_text(&cv, 100, ly, "MISSED", 6, ink);
    fill(&cv, 164, ly, 12, 10, grey);
    draw_text(&cv, 180, ly, "NOT RUN", 7, ink);
    int rc = png_write(e->png, W, H, 3, cv.px, err, errlen);
    free(cv.px);
    return rc;
}

static int greedy_answer(ev *e, float *logits, int n_gen, char *out, size_t cap) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n_gen; i++) {
        int32_t t = 0;
        ak_sampler_params sp = {0.0f, 1.0f, 0};
        uint64_t rng = 1;
        ak_status st = ak_sample(e->ctx, logits, e->in.n_vocab, &sp, &rng, &t);
        if (st != AK_OK) return mc_fail(e->ctx, st, "sample");
        if (ak_token_is_eog(e->tok, t)) break;
        char piece[128];
        size_t pl = 0;
        if (ak_token_to_piece(e->tok, t, 0, piece, sizeof piece, &pl) == AK_OK && used + pl < cap) {
            memcpy(out + used, piece, pl);
            used += pl;
            out[used] = 0;
        }
        if (i + 1 == n_gen) break;
        if ((st = ak_session_eval(e->s, &t, 1, logits, 1)) != AK_OK) return mc_fail(e->ctx, st, "decode");
    }
    return 0;
}

static int run_passkey(ev *e) {
    static const int32_t def_len[] = {1024, 2048, 4096, 8192, 16384, 32768};
    if (!e->n_lengths) {
        e->n_lengths = 6;
        memcpy(e->lengths, def_len, sizeof def_len);
    }
    if (!e->n_depths) {
        e->n_depths = 11;
        for (int d = 0; d <= 10; d++) e->depths[d] = 10 * d;
    }
    const int M = e->n_methods, NL = e->n_lengths, ND = e->n_depths;
    const int32_t cap_tok = e->in.n_ctx_train - EV_PASSKEY_GEN;
    int32_t maxlen = 0;
    for (int l = 0; l < NL; l++) {
        if (e->lengths[l] > cap_tok) e->lengths[l] = cap_tok;
        if (e->lengths[l] > maxlen) maxlen = e->lengths[l];
    }
    char *hay = NULL;
    size_t hay_len = 0;
    if (e->haystack && !(hay = mc_read_file(e->haystack, &hay_len))) return 1;
    size_t cells = (size_t)M * ND * NL;
    int *found = (int *)calloc(cells, sizeof(int)), *runs = (int *)calloc(cells, sizeof(int));
    int *same = (int *)calloc((size_t)M * NL, sizeof(int)), *cmp = (int *)calloc((size_t)M * NL, sizeof(int));
    double *pf_s = (double *)calloc((size_t)M * NL, sizeof(double)),
           *pf_t = (double *)calloc((size_t)M * NL, sizeof(double));
    int32_t *ptoks = (int32_t *)calloc((size_t)NL, sizeof(int32_t));
    float *logits = (float *)malloc(sizeof(float) * (size_t)e->in.n_vocab);
    pk_shape shapes[EV_MAX_LENGTHS];
    sbuf b = {0};
    int rc = 1;
    char (*answers)[256] = (char (*)[256])malloc(sizeof(char[256]) * (size_t)M);
    if (!found || !runs || !same || !cmp || !pf_s || !pf_t || !ptoks || !logits || !answers) {
        fprintf(stderr, "attnkit eval passkey: out of memory\n");
        goto done;
    }
    /* every failure that does not need the model to run comes first: PNG path, methods, haystack sizes */
    if (e->png && out_check(e, "--png", e->png)) goto done;
    if (ev_session(e, maxlen + EV_PASSKEY_GEN)) goto done;
    for (int l = 0; l < NL; l++) {
        shapes[l] = (pk_shape){hay, hay_len, 0, 0};
        if (pk_fit(e, &shapes[l], e->lengths[l], e->lengths[l])) goto done;
    }
    if (!e->json && !e->quiet)
        fprintf(stderr, "passkey: %d lengths x %d depths x %d trial(s) x %d method(s)\n", NL, ND, e->trials, M);
    for (int l = 0; l < NL; l++) {
        const pk_shape sh0 = shapes[l];
        for (int d = 0; d < ND; d++) {
            for (int tr = 0; tr < e->trials; tr++) {
                int32_t key = pk_key(e->seed, e->lengths[l], e->depths[d], tr);
                pk_shape sh = sh0;
                int32_t *ids = NULL, n = 0;
                for (int tries = 0;; tries++) {
                    if (pk_build(&b, &sh, e->depths[d], key)) {
                        fprintf(stderr, "attnkit eval passkey: out of memory\n");
                        goto done;
                    }
                    if ((n = pk_count(e, b.p, b.n, &ids)) < 0) goto done;
                    if (n <= e->lengths[l] || tries > 50) break;
                    free(ids);
                    ids = NULL;
                    pk_shrink(&sh, n - e->lengths[l]);
                }
                if (n > e->lengths[l]) {
                    fprintf(stderr, "attnkit eval passkey: cannot fit the prompt into %d tokens\n", e->lengths[l]);
                    free(ids);
                    goto done;
                }
                if (n > ptoks[l]) ptoks[l] = n;
                char kstr[16];
                snprintf(kstr, sizeof kstr, "%d", key);
                for (int k = 0; k < M; k++) {
                    if (use_method(e, k)) {
                        free(ids);
                        goto done;
                    }
                    char label[96];
                    snprintf(label, sizeof label, "L=%d depth %d%% %.50s", e->lengths[l], e->depths[d], e->methods[k]);
                    progress_state ps = {label, now_s()};
                    ak_session_set_progress(e->s, e->quiet ? NULL : progress, &ps);
                    double t0 = now_s();
                    ak_status st = ak_session_eval(e->s, ids, n, logits, 1);
                    double dt = now_s() - t0;
                    if (st != AK_OK) {
                        rc = mc_fail(e->ctx, st, "prefill");
                        free(ids);
                        goto done;
                    }
                    if (greedy_answer(e, logits, EV_PASSKEY_GEN, answers[k], sizeof answers[k])) {
                        free(ids);
                        goto done;
                    }
                    int ok = strstr(answers[k], kstr) != NULL;
                    size_t ix = ((size_t)k * ND + d) * NL + l;
                    found[ix] += ok;
                    runs[ix]++;
                    pf_s[(size_t)k * NL + l] += dt;
                    pf_t[(size_t)k * NL + l] += n;
                    int sm = !strcmp(answers[k], answers[0]);
                    same[(size_t)k * NL + l] += sm;
                    cmp[(size_t)k * NL + l]++;
                    if (e->json) {
                        json_head(e, stdout, k);
                        printf(",\"haystack\":");
                        json_str(stdout, e->haystack ? e->haystack : "synthetic");
                        printf(",\"L\":%d,\"prompt_tokens\":%d,\"depth\":%d,\"trial\":%d,\"key\":%d,\"found\":%s,"
                               "\"answer\":",
                               e->lengths[l], n, e->depths[d], tr, key, ok ? "true" : "false");
                        json_str(stdout, answers[k]);
                        printf(",\"same_as_dense\":%s,\"prefill_s\":%.4f,\"prefill_tok_s\":%.2f}\n",
                               sm ? "true" : "false", dt, n / dt);
                        fflush(stdout);
                    } else if (!e->quiet) {
                        fprintf(stderr, "  L=%-6d depth %3d%% key %5d  %-28.28s %-6s %6.0f tok/s  answer:%s\n", n,
                                e->depths[d], key, e->methods[k], ok ? "found" : "MISSED", n / dt, answers[k]);
                    }
                }
                free(ids);
            }
        }
    }
    if (e->json) {
        for (int k = 0; k < M; k++)
            for (int l = 0; l < NL; l++) {
                int f = 0, r = 0;
                for (int d = 0; d < ND; d++) {
                    f += found[((size_t)k * ND + d) * NL + l];
                    r += runs[((size_t)k * ND + d) * NL + l];
                }
                json_head(e, stdout, k);
                printf(",\"summary\":true,\"L\":%d,\"prompt_tokens_max\":%d,\"found\":%d,\"runs\":%d,\"accuracy\":%.4f,"
                       "\"prefill_tok_s\":%.2f,\"same_as_dense\":%d,\"compared\":%d}\n",
                       e->lengths[l], ptoks[l], f, r, r ? (double)f / r : 0.0,
                       pf_t[(size_t)k * NL + l] / pf_s[(size_t)k * NL + l], same[(size_t)k * NL + l],
                       cmp[(size_t)k * NL + l]);
            }
    } else {
        printf("passkey retrieval: model %s, haystack %s, %d trial(s) per cell, greedy answer of up to %d tokens\n",
               e->in.name, e->haystack ? e->haystack : "synthetic (llama-passkey junk)", e->trials, EV_PASSKEY_GEN);
        printf(
            "rows: needle depth in %% of the haystack (0 = right after the instructions, 100 = right before the\n"
            "question); columns: prompt length in tokens (requested; actual <= it); cell: keys found / keys asked\n");
        for (int k = 0; k < M; k++) {
            printf("\n%s%s%s\n", e->methods[k], k ? " on layers " : "", k ? (e->layers ? e->layers : "global") : "");
            printf("%-12s", "depth\\len");
            for (int l = 0; l < NL; l++) printf(" %8d", e->lengths[l]);
            printf("\n");
            for (int d = 0; d < ND; d++) {
                printf("%3d%%        ", e->depths[d]);
                for (int l = 0; l < NL; l++) {
                    size_t ix = ((size_t)k * ND + d) * NL + l;
                    char c[24];
                    snprintf(c, sizeof c, "%d/%d", found[ix], runs[ix]);
                    printf(" %8s", c);
                }
                printf("\n");
            }
            printf("%-12s", "accuracy");
            for (int l = 0; l < NL; l++) {
                int f = 0, r = 0;
                for (int d = 0; d < ND; d++) {
                    f += found[((size_t)k * ND + d) * NL + l];
                    r += runs[((size_t)k * ND + d) * NL + l];
                }
                printf(" %7.0f%%", r ? 100.0 * f / r : 0.0);
            }
            printf("\n%-12s", "prefill t/s");
            for (int l = 0; l < NL; l++) printf(" %8.0f", pf_t[(size_t)k * NL + l] / pf_s[(size_t)k * NL + l]);
            printf("\n");
            if (k) {
                printf("%-12s", "same answer");
                for (int l = 0; l < NL; l++) {
                    char c[24];
                    snprintf(c, sizeof c, "%d/%d", same[(size_t)k * NL + l], cmp[(size_t)k * NL + l]);
                    printf(" %8s", c);
                }
                printf("   (answers identical to dense's)\n");
            }
        }
    }
    if (e->png) {
        char err[256];
        if (heat_png(e, e->lengths, NL, found, runs, err, sizeof err)) {
            fprintf(stderr, "attnkit eval passkey: --png %s: %s\n", e->png, err);
            goto done;
        }
        if (!e->json) printf("\nheat map: %s\n", e->png);
    }
    rc = 0;
done:
    free(hay);
    free(found);
    free(runs);
    free(same);
    free(cmp);
    free(pf_s);
    free(pf_t);
    free(ptoks);
    free(logits);
    free(answers);
    free(b.p);
    return rc;
}

/* ---- speed ---- */

/* A deterministic English-like text of at least `bytes` bytes (the same on every run and machine). */
static char *synthetic_text(size_t bytes, size_t *len) {
    static const char *const words[] = {
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
        "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
        "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
        "who", "so", "no", "time", "people", "water", "river", "mountain", "city", "garden", "letter", "morning",
        "window", "number", "system", "history", "question", "answer"};
    const int nw = (int)(sizeof words / sizeof words[0]);
    sbuf b = {0};
    uint64_t r = 0x2545F4914F6CDD1DULL;
    int in_sentence = 0;
    while (b.n < bytes) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        const char *w = words[r % (uint64_t)nw];
        char tmp[32];
        if (in_sentence == 0) {
            snprintf(tmp, sizeof tmp, "%s%c%s", b.n ? " " : "", w[0] - 'a' + 'A', w + 1);
        } else {
            snprintf(tmp, sizeof tmp, " %s", w);
        }
        in_sentence++;
        if (in_sentence > 6 && (r >> 20) % 6 == 0) {
            size_t tl = strlen(tmp);
            tmp[tl] = '.';
            tmp[tl + 1] = 0;
            in_sentence = 0;
        }
        if (sb_str(&b, tmp)) {
            free(b.p);
            return NULL;
        }
    }
    *len = b.n;
    return b.p;
}

static int run_speed(ev *e) {
    static const int32_t def_len[] = {1024, 8192, 32768};
    if (!e->n_lengths) {
        e->n_lengths = 3;
        memcpy(e->lengths, def_len, sizeof def_len);
    }
    const int M = e->n_methods, NL = e->n_lengths, R = e->reps, G = e->gen;
    const int32_t cap_tok = e->in.n_ctx_train - G;
    if (cap_tok < 2) {
        fprintf(stderr, "attnkit eval speed: --gen %d leaves no room for a prompt in the context of %d\n", G,
                e->in.n_ctx_train);
        return 2;
    }
    int32_t maxlen = 0;
    for (int l = 0; l < NL; l++) {
        if (e->lengths[l] > cap_tok) e->lengths[l] = cap_tok;
        if (e->lengths[l] > maxlen) maxlen = e->lengths[l];
    }
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL, n = 0;
    if (e->file) {
        if (!(text = mc_read_file(e->file, &len))) return 1;
        if (mc_tokenize(e->ctx, e->tok, text, len, 0, &ids, &n)) {
            free(text);
            return 1;
        }
        if (n < maxlen) {
            fprintf(stderr, "attnkit eval speed: %s has %d tokens, fewer than the longest prompt (%d)\n", e->file, n,
                    maxlen);
            free(text);
            free(ids);
            return 1;
        }
    } else {
        for (size_t bytes = (size_t)maxlen * 6 + 1024;; bytes *= 2) {
            free(text);
            free(ids);
            ids = NULL;
            if (!(text = synthetic_text(bytes, &len))) {
                fprintf(stderr, "attnkit eval speed: out of memory\n");
                return 1;
            }
            if (mc_tokenize(e->ctx, e->tok, text, len, 0, &ids, &n)) {
                free(text);
                return 1;
            }
            if (n >= maxlen) break;
        }
    }
    free(text);
    int rc = 1;
    size_t nres = (size_t)M * NL * R;
    double *pf = (double *)calloc(nres, sizeof(double)), *dc = (double *)calloc(nres, sizeof(double));
    double *ap = (double *)calloc(nres, sizeof(double)), *ad = (double *)calloc(nres, sizeof(double));
    double *dens = (double *)calloc((size_t)M * NL, sizeof(double)), *plan = (double *)calloc(nres, sizeof(double));
    float *logits = (float *)malloc(sizeof(float) * (size_t)e->in.n_vocab);
    if (!pf || !dc || !ap || !ad || !dens || !plan || !logits) {
        fprintf(stderr, "attnkit eval speed: out of memory\n");
        goto done;
    }
    if (ev_session(e, maxlen + (G > 0 ? G : 0))) goto done;
    /* warm-up: touch the weights once */
    {
        int32_t w = maxlen < 64 ? maxlen : 64;
        ak_status st = ak_session_eval(e->s, ids, w, logits, 1);
        if (st != AK_OK) {
            rc = mc_fail(e->ctx, st, "warm-up");
            goto done;
        }
    }
    if (!e->json) {
        printf("speed: model %s, %d threads, KV %s, prefill chunk %d, prompt %s, decode %d tokens, median of %d\n",
               e->in.name, ak_ctx_get_num_threads(e->ctx), kv_name(e->kv), e->chunk ? e->chunk : 512,
               e->file ? e->file : "synthetic", G, R);
        fflush(stdout);
    }
    for (int l = 0; l < NL; l++) {
        const int32_t L = e->lengths[l];
        for (int r = 0; r < R; r++)
            for (int k = 0; k < M; k++) {   /* methods interleaved, so a slow phase of the machine hits them all */
                if (use_method(e, k)) goto done;
                char label[96];
                snprintf(label, sizeof label, "L=%d rep %d/%d %.50s", L, r + 1, R, e->methods[k]);
                progress_state ps = {label, now_s()};
                ak_session_set_progress(e->s, e->quiet || e->json ? NULL : progress, &ps);
                ak_session_stats s0, s1, s2;
                ak_session_get_stats(e->s, &s0);
                double t0 = now_s();
                ak_status st = ak_session_eval(e->s, ids, L, logits, 1);
                double tp = now_s() - t0;
                if (st != AK_OK) {
                    rc = mc_fail(e->ctx, st, "prefill");
                    goto done;
                }
                ak_session_get_stats(e->s, &s1);
                double td = 0;
                for (int g = 0; g < G; g++) {
                    int32_t t = 0;
                    ak_sampler_params sp = {0.0f, 1.0f, 0};
                    uint64_t rng = 1;
                    if ((st = ak_sample(e->ctx, logits, e->in.n_vocab, &sp, &rng, &t)) != AK_OK) {
                        rc = mc_fail(e->ctx, st, "sample");
                        goto done;
                    }
                    double t1 = now_s();
                    st = ak_session_eval(e->s, &t, 1, logits, 1);
                    td += now_s() - t1;
                    if (st != AK_OK) {
                        rc = mc_fail(e->ctx, st, "decode");
                        goto done;
                    }
                }
                ak_session_get_stats(e->s, &s2);
                size_t ix = ((size_t)k * NL + l) * R + r;
                pf[ix] = L / tp;
                dc[ix] = G > 0 ? G / td : 0;
                ap[ix] =
                    (s1.seconds_attention - s0.seconds_attention) / (s1.seconds_prefill - s0.seconds_prefill + 1e-12);
                ad[ix] = G > 0 ? (s2.seconds_attention - s1.seconds_attention) /
                                     (s2.seconds_decode - s1.seconds_decode + 1e-12)
                               : 0;
                plan[ix] = s1.seconds_planning - s0.seconds_planning;
                dens[(size_t)k * NL + l] = k ? s1.sparse_density : 0.0;
            }
        for (int k = 0; k < M; k++) {
            size_t ix = ((size_t)k * NL + l) * R;
            double p = ev_median(pf + ix, R), dd = ev_median(dc + ix, R), sp = ev_median(ap + ix, R),
                   sd = ev_median(ad + ix, R);
            double pl = ev_median(plan + ix, R);
            double dn = dens[(size_t)k * NL + l];
            if (e->json) {
                json_head(e, stdout, k);
                printf(",\"text\":");
                json_str(stdout, e->file ? e->file : "synthetic");
                printf(
                    ",\"L\":%d,\"prompt_tokens\":%d,\"gen\":%d,\"reps\":%d,\"chunk\":%d,\"prefill_tok_s\":%.3f,"
                    "\"prefill_s\":%.5f,\"decode_tok_s\":%.3f,\"decode_ms_per_tok\":%.4f,\"attn_share_prefill\":%.4f,"
                    "\"attn_share_decode\":%.4f,\"planning_s\":%.5f,\"sparse_density\":%.5f}\n",
                    L, L, G, R, e->chunk ? e->chunk : 512, p, L / p, dd, dd > 0 ? 1000.0 / dd : 0.0, sp, sd, pl, dn);
            } else {
                if (k == 0)
                    printf("\n%-32s %8s %12s %10s %12s %10s %9s\n", "method", "L", "prefill t/s", "attn %",
                           "decode t/s", "attn %", "density");
                char ds[16];
                snprintf(ds, sizeof ds, dn > 0 ? "%.3f" : "-", dn);
                printf("%-32.32s %8d %12.1f %9.0f%% %12.1f %9.0f%% %9s\n", e->methods[k], L, p, 100 * sp, dd, 100 * sd,
                       ds);
            }
        }
        fflush(stdout);
    }
    if (!e->json)
        printf("\n(attn %%: share of the eval time spent inside attention, planning included; density: the sparse\n"
               " methods' mean share of causal pairs computed at the last prefill; tokens/s are medians)\n");
    rc = 0;
done:
    free(ids);
    free(pf);
    free(dc);
    free(ap);
    free(ad);
    free(dens);
    free(plan);
    free(logits);
    return rc;
}

int mode_model_eval(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage_main(stdout);
        return 0;
    }
    ev e;
    memset(&e, 0, sizeof e);
    e.subname = argv[1];
    if (!strcmp(argv[1], "ppl")) e.sub = SUB_PPL;
    else if (!strcmp(argv[1], "passkey")) e.sub = SUB_PASSKEY;
    else if (!strcmp(argv[1], "speed")) e.sub = SUB_SPEED;
    else {
        fprintf(stderr, "attnkit eval: unknown subcommand '%s': ppl, passkey or speed (attnkit eval --help)\n",
                argv[1]);
        return 2;
    }
    e.model = getenv("AK_MODEL_GGUF");
    e.methods[0] = "dense";
    e.n_methods = 1;
    e.kv = AK_F32;
    e.trials = 1;
    e.gen = 32;
    e.reps = 3;
    e.seed = 1;
    int rc = parse_args(&e, argc, argv);
    if (rc == 1) return 0;
    if (rc) return rc;
    rc = ev_load(&e);
    if (rc == 0) {
        if (e.sub == SUB_PPL) rc = run_ppl(&e);
        else if (e.sub == SUB_PASSKEY) rc = run_passkey(&e);
        else rc = run_speed(&e);
    }
    ak_session_free(e.s);
    ak_model_free(e.m);
    ak_ctx_destroy(e.ctx);
    return rc;
}
