/*
 * attnkit run: load a GGUF model, tokenize a prompt, prefill it (chunked, with a progress line on long prompts),
 * then generate with streaming output. Attention per layer: dense, or a method given with --attn on the layers of
 * --attn-layers (default: the global layers). Uses only the public header.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model_cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mc_fail(ak_ctx *ctx, ak_status st, const char *what) {
    /* the context's message already starts with the status name */
    const char *msg = ctx ? ak_ctx_last_error(ctx) : NULL;
    fprintf(stderr, "attnkit: %s: %s\n", what, msg && *msg ? msg : ak_status_string(st));
    return 1;
}

char *mc_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "attnkit: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *nb = (char *)realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "attnkit: out of memory reading %s\n", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int mc_tokenize(ak_ctx *ctx, const ak_tokenizer *tok, const char *text, size_t len, int special, int32_t **ids,
                int32_t *n) {
    int32_t cap = (int32_t)(len < 1000 ? 1000 : (len > 0x7fffff00 ? 0x7fffff00 : len + 16));
    *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)cap);
    if (!*ids) return 1;
    ak_status st = ak_tokenize(tok, text, len, 1, special, *ids, cap, n);
    if (st == AK_ERR_CAPACITY) {
        free(*ids);
        cap = *n;
        *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)cap);
        if (!*ids) return 1;
        st = ak_tokenize(tok, text, len, 1, special, *ids, cap, n);
    }
    if (st != AK_OK) {
        free(*ids);
        *ids = NULL;
        return mc_fail(ctx, st, "tokenize");
    }
    return 0;
}

/* "5,11,17" -> layer list; "global" / "all" -> the layers of that kind. Returns the count or -1. */
int mc_parse_layers(const ak_model *m, const char *s, int32_t *out, int cap) {
    ak_model_info in;
    ak_model_get_info(m, &in);
    int n = 0;
    if (!strcmp(s, "global") || !strcmp(s, "all")) {
        for (int l = 0; l < in.n_layer && n < cap; l++)
            if (!strcmp(s, "all") || !ak_model_layer_is_local(m, l)) out[n++] = l;
        return n;
    }
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= in.n_layer || n >= cap) return -1;
        out[n++] = (int32_t)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

int mc_set_attn(ak_ctx *ctx, ak_session *s, const ak_model *m, const char *spec, const char *layers) {
    if (!spec || !strcmp(spec, "dense")) return 0;
    int32_t ls[256];
    int n = mc_parse_layers(m, layers ? layers : "global", ls, 256);
    if (n <= 0) {
        fprintf(stderr, "attnkit: --attn-layers '%s': a comma list of layer numbers, 'global' or 'all'\n", layers);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        ak_status st = ak_session_set_attn(s, ls[i], spec);
        if (st != AK_OK) return mc_fail(ctx, st, "--attn");
    }
    return 0;
}

typedef struct {
    double t0;
    int shown;
} progress_state;

static void progress(void *user, int32_t done, int32_t total) {
    progress_state *ps = (progress_state *)user;
    if (total < 2048) return;
    double dt = now_s() - ps->t0;
    fprintf(stderr, "\rprefill %d/%d tokens (%3.0f%%), %.0f tok/s ", done, total, 100.0 * done / total,
            dt > 0 ? done / dt : 0.0);
    if (done == total) fprintf(stderr, "\n");
    ps->shown = 1;
}

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: attnkit run -m MODEL (-p PROMPT | -f FILE) [options]\n"
            "  -m, --model FILE     GGUF model (default $AK_MODEL_GGUF)\n"
            "  -p, --prompt TEXT    prompt text;  -f, --file FILE: prompt from a file\n"
            "  -n, --n-predict N    tokens to generate (default 64; 0 = prefill only)\n"
            "  --attn SPEC          attention on --attn-layers: dense | streaming[:sinks=S,window=W] |\n"
            "                       kinetics[:block=,topk=,sink=,local=] | flexprefill|minference|anchor|dhsa|...[:k=v,...]\n"
            "  --attn-layers L      comma list of layers, 'global' (default) or 'all'\n"
            "  -c, --ctx N          context (cache) size (default: prompt + n, at most the model's)\n"
            "  --chunk N            prefill chunk (default 512)\n"
            "  --kv f32|bf16|f16    KV cache type (default f32)\n"
            "  --temp T             temperature (default 0 = greedy);  --top-p P (default 1);  --top-k K (default 0)\n"
            "  --seed S             sampling seed (default 1)\n"
            "  --special            parse special-token texts in the prompt (<start_of_turn> ...)\n"
            "  --ids                print the prompt's token ids (BOS first) and exit\n"
            "  -t, --threads N      threads (default: AK_NUM_THREADS or all cores)\n"
            "  --dump DIR           write Q/K/V of --dump-layers for --dump-pos A:B to DIR/layerNN/{q,k,v}.npy\n"
            "  --dump-layers L      (default: global)   --dump-pos A:B (default: the whole prompt)\n"
            "  -q, --quiet          only the generated text on stdout (no statistics on stderr)\n");
}

int mode_run(int argc, char **argv) {
    const char *model = getenv("AK_MODEL_GGUF"), *prompt = NULL, *file = NULL, *attn = NULL, *layers = NULL;
    const char *dump = NULL, *dump_layers = NULL, *dump_pos = NULL;
    int n_predict = 64, n_ctx = 0, chunk = 0, threads = 0, special = 0, quiet = 0, top_k = 0, print_ids = 0;
    float temp = 0.0f, top_p = 1.0f;
    long seed = 1;
    ak_dtype kv = AK_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                          \
    do {                                                                 \
        if (!v) {                                                        \
            fprintf(stderr, "attnkit run: %s needs a value\n", a);       \
            return 2;                                                    \
        }                                                                \
        i++;                                                             \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { run_usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV(); model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEEDV(); prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEEDV(); file = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { NEEDV(); n_predict = atoi(v); }
        else if (!strcmp(a, "--attn")) { NEEDV(); attn = v; }
        else if (!strcmp(a, "--attn-layers")) { NEEDV(); layers = v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { NEEDV(); n_ctx = atoi(v); }
        else if (!strcmp(a, "--chunk")) { NEEDV(); chunk = atoi(v); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { NEEDV(); threads = atoi(v); }
        else if (!strcmp(a, "--temp")) { NEEDV(); temp = strtof(v, NULL); }
        else if (!strcmp(a, "--top-p")) { NEEDV(); top_p = strtof(v, NULL); }
        else if (!strcmp(a, "--top-k")) { NEEDV(); top_k = atoi(v); }
        else if (!strcmp(a, "--seed")) { NEEDV(); seed = strtol(v, NULL, 10); }
        else if (!strcmp(a, "--special")) special = 1;
        else if (!strcmp(a, "--ids")) print_ids = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--dump")) { NEEDV(); dump = v; }
        else if (!strcmp(a, "--dump-layers")) { NEEDV(); dump_layers = v; }
        else if (!strcmp(a, "--dump-pos")) { NEEDV(); dump_pos = v; }
        else if (!strcmp(a, "--kv")) {
            NEEDV();
            if (!strcmp(v, "f32")) kv = AK_F32;
            else if (!strcmp(v, "bf16")) kv = AK_BF16;
            else if (!strcmp(v, "f16")) kv = AK_F16;
            else { fprintf(stderr, "attnkit run: --kv f32|bf16|f16\n"); return 2; }
        } else {
            fprintf(stderr, "attnkit run: unknown option '%s' (attnkit run --help)\n", a);
            return 2;
        }
#undef NEEDV
    }
    if (!model || !*model) {
        fprintf(stderr, "attnkit run: no model: give -m FILE or set AK_MODEL_GGUF\n");
        return 2;
    }
    if (!prompt == !file) {
        fprintf(stderr, "attnkit run: give exactly one of -p PROMPT and -f FILE\n");
        return 2;
    }
    if (n_predict < 0 || n_ctx < 0 || chunk < 0 || threads < 0 || top_k < 0 || seed <= 0) {
        fprintf(stderr, "attnkit run: -n, -c, --chunk, -t, --top-k must be >= 0 and --seed > 0\n");
        return 2;
    }
    ak_ctx *ctx = NULL;
    ak_model *m = NULL;
    ak_session *s = NULL;
    char *text = NULL;
    int32_t *ids = NULL, n_ids = 0;
    float *logits = NULL;
    int rc = 1;
    ak_status st = ak_ctx_create(&ctx);
    if (st != AK_OK) return mc_fail(NULL, st, "context");
    if (threads > 0 && (st = ak_ctx_set_num_threads(ctx, threads)) != AK_OK) { rc = mc_fail(ctx, st, "--threads"); goto done; }
    double t_load = now_s();
    if ((st = ak_model_load(ctx, model, &m)) != AK_OK) { rc = mc_fail(ctx, st, model); goto done; }
    t_load = now_s() - t_load;
    ak_model_info in;
    ak_model_get_info(m, &in);
    size_t len;
    if (file) {
        if (!(text = mc_read_file(file, &len))) goto done;
    } else {
        len = strlen(prompt);
    }
    if (mc_tokenize(ctx, ak_model_tokenizer(m), file ? text : prompt, len, special, &ids, &n_ids)) goto done;
    if (print_ids) {   /* like llama-tokenize --ids */
        printf("[");
        for (int32_t i = 0; i < n_ids; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("]\n");
        rc = 0;
        goto done;
    }
    if (n_ctx == 0) {
        long want = (long)n_ids + n_predict;
        n_ctx = want > in.n_ctx_train ? in.n_ctx_train : (int)want;
    }
    if (n_ids > n_ctx) {
        fprintf(stderr, "attnkit run: the prompt has %d tokens, more than the context of %d\n", n_ids, n_ctx);
        goto done;
    }
    ak_session_config cfg;
    ak_session_config_init(&cfg);
    cfg.n_ctx = n_ctx;
    if (chunk) cfg.n_chunk = chunk;
    cfg.kv_dtype = kv;
    if ((st = ak_session_create(m, &cfg, &s)) != AK_OK) { rc = mc_fail(ctx, st, "session"); goto done; }
    if (mc_set_attn(ctx, s, m, attn, layers)) goto done;
    if (dump) {
        int32_t dl[256];
        int nd = mc_parse_layers(m, dump_layers ? dump_layers : "global", dl, 256);
        int a = 0, b = n_ids;
        if (dump_pos && sscanf(dump_pos, "%d:%d", &a, &b) != 2) {
            fprintf(stderr, "attnkit run: --dump-pos A:B\n");
            goto done;
        }
        if (nd <= 0) {
            fprintf(stderr, "attnkit run: bad --dump-layers\n");
            goto done;
        }
        if ((st = ak_session_set_dump(s, dump, dl, nd, a, b)) != AK_OK) { rc = mc_fail(ctx, st, "--dump"); goto done; }
    }
    progress_state ps = {now_s(), 0};
    if (!quiet) ak_session_set_progress(s, progress, &ps);
    logits = (float *)malloc(sizeof(float) * (size_t)in.n_vocab);
    if (!logits) goto done;
    double t0 = now_s();
    if ((st = ak_session_eval(s, ids, n_ids, logits, 1)) != AK_OK) { rc = mc_fail(ctx, st, "prefill"); goto done; }
    double t_prefill = now_s() - t0;
    if (!quiet) {
        fprintf(stderr, "model %s (%s), %d layers, %d threads; prompt %d tokens; attention %s on %s\n", in.name, in.arch,
                in.n_layer, ak_ctx_get_num_threads(ctx), n_ids, attn ? attn : "dense", attn ? (layers ? layers : "global") : "all");
    }
    if (file == NULL && !quiet) fputs(prompt, stdout);
    ak_sampler_params sp = {temp, top_p, top_k};
    uint64_t rng = (uint64_t)seed * 0x9E3779B97F4A7C15ULL;
    int generated = 0;
    double t1 = now_s();
    char piece[256];
    for (int i = 0; i < n_predict && ak_session_pos(s) < n_ctx; i++) {
        int32_t t;
        if ((st = ak_sample(ctx, logits, in.n_vocab, &sp, &rng, &t)) != AK_OK) { rc = mc_fail(ctx, st, "sample"); goto done; }
        if (ak_token_is_eog(ak_model_tokenizer(m), t)) break;
        size_t pl = 0;
        if (ak_token_to_piece(ak_model_tokenizer(m), t, 0, piece, sizeof piece, &pl) == AK_OK) {
            fwrite(piece, 1, pl, stdout);
            fflush(stdout);
        }
        generated++;
        if (i + 1 == n_predict || ak_session_pos(s) + 1 > n_ctx) break;
        if ((st = ak_session_eval(s, &t, 1, logits, 1)) != AK_OK) { rc = mc_fail(ctx, st, "decode"); goto done; }
    }
    double t_gen = now_s() - t1;
    fputc('\n', stdout);
    fflush(stdout);
    if (!quiet) {
        ak_session_stats ss;
        ak_session_get_stats(s, &ss);
        fprintf(stderr, "load %.2f s | prefill %d tokens in %.2f s = %.1f tok/s (attention %.0f%%",
                t_load, n_ids, t_prefill, n_ids / t_prefill, 100.0 * ss.seconds_attention / (ss.seconds_prefill + ss.seconds_decode + 1e-12));
        if (ss.sparse_density > 0) fprintf(stderr, ", sparse density %.3f, planning %.2f s", ss.sparse_density, ss.seconds_planning);
        fprintf(stderr, ") | generated %d tokens in %.2f s = %.1f tok/s\n", generated, t_gen,
                generated > 1 && ss.tokens_decode > 0 ? ss.tokens_decode / ss.seconds_decode : 0.0);
    }
    rc = 0;
done:
    free(logits);
    free(ids);
    free(text);
    ak_session_free(s);
    ak_model_free(m);
    ak_ctx_destroy(ctx);
    return rc;
}
