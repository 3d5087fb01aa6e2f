/*
 * The SentencePiece-style tokenizer of a GGUF vocabulary (tokenizer.ggml.model = "llama"), producing the
 * token ids of llama.cpp's SPM path (spec: /work/shared/specs/gemma3-runner.md §4; docs/model/tokenizer.md).
 *
 * Semantics (llama.cpp, as vendored by llama-cpp-python 0.3.36):
 *   load      token attributes from tokenizer.ggml.token_type; text -> id over every id (a later id wins on
 *             duplicate texts; an empty text is renamed "[EMPTY_<i>]"); special ids from the keys over the
 *             SPM defaults (BOS 1, EOS 2, UNK 0); EOT / EOM / FIM / end-of-generation tokens detected by
 *             text and forced CONTROL (so "<end_of_turn>" and, in this llama.cpp, "</s>" are CONTROL).
 *   partition the special candidates (CONTROL, USER_DEFINED, UNKNOWN; with parse_special off only those
 *             that are neither CONTROL nor UNKNOWN) are taken in the order (text length desc, id asc); each
 *             one cuts its leftmost non-overlapping occurrences out of the raw fragments left by the ones
 *             before it.
 *   merge     per raw fragment: optional space prefix, ' ' -> U+2581, UTF-8 characters by lead byte, then
 *             bigram merges from a max-heap (score desc, left index asc); a final symbol is its vocabulary
 *             id, or one <0xHH> token per byte.
 *
 * Speed. The plain partition costs O(candidates x text) (Gemma 3 has 6414 candidates). Here one scan walks
 * a trie of the candidate texts from every position whose first byte can start one, recording only the
 * longest candidate that matches there. Those (candidate, position) pairs go into a min-heap ordered
 * exactly as the plain rule visits them (length desc, id asc, position asc). A popped occurrence whose
 * bytes are all still raw is cut; one that overlaps a cut token moves down to the next shorter candidate
 * matching at the same position (the nearest terminal ancestor in the trie), which comes later in the
 * order. The result is the plain rule's (tests/test_model_tokenizer.c checks it against a re-implementation)
 * at the cost of O(text + matches x log), independent of the number of candidates.
 */
#include "core/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* llama.cpp's token attribute bits (llama_token_attr), plus our end-of-generation mark. */
enum {
    A_UNKNOWN = 1,
    A_UNUSED = 2,
    A_NORMAL = 4,
    A_CONTROL = 8,
    A_USER = 16,
    A_BYTE = 32,
    A_EOG = 64
};

/* Texts up to this length: every offset into the escaped copy of a fragment (3 bytes per space, plus a
 * prefix) stays below 2^31. */
#define TOK_MAX_TEXT ((size_t)1 << 29)

typedef struct trie {
    int32_t n_nodes;          /* node 0 is the root */
    uint64_t *ekey;           /* edge hash: (parent << 8 | byte) + 1, 0 = empty slot */
    int32_t *echild;
    uint64_t emask;
    int32_t *depth;           /* text length of the node */
    int32_t *tok[2];          /* the token a match ending here emits with parse_special = m, or -1 */
    int32_t *up[2];           /* nearest proper ancestor with tok[m] >= 0, or -1 */
    uint8_t first[2][256];    /* some candidate active with parse_special = m starts with this byte */
    uint8_t one[2][256];      /* ... is this one byte */
    uint8_t two[2][8192];     /* bit b0 << 8 | b1: ... of two bytes or more starts with b0 b1 */
} trie;

struct ak_tokenizer {
    const ak_ctx *ctx;
    int32_t n_vocab;
    int32_t max_len;          /* longest token text */
    char *blob;               /* all texts back to back */
    uint64_t *off;            /* [n_vocab + 1] */
    float *score;
    uint8_t *attr;
    uint64_t *slot;           /* text -> id: (hash >> 32) << 32 | (id + 1), 0 = empty */
    uint64_t smask;
    int32_t byte_id[256];     /* <0xHH>, else the one-byte text, else -1 */
    /* text -> id without hashing for the commonest lookups of natural text: one byte, two bytes, and one
     * byte next to an escaped space (U+2581 + b, b + U+2581); -1 = no such token */
    int32_t *id1, *id2, *id_sp_b, *id_b_sp;
    trie st;
    int32_t bos, eos, eot, eom, unk, pad;
    int32_t add_bos, add_eos, add_space_prefix;
};

/* ---- hashing ---------------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n) memcpy(&w, p, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static int32_t vocab_find_h(const ak_tokenizer *t, const char *s, size_t n, uint64_t h) {
    uint64_t tag = h >> 32;
    for (uint64_t i = h & t->smask;; i = (i + 1) & t->smask) {
        uint64_t e = t->slot[i];
        if (!e) return -1;
        if ((e >> 32) == tag) {
            int32_t id = (int32_t)(uint32_t)e - 1;
            if (t->off[id + 1] - t->off[id] == n && memcmp(t->blob + t->off[id], s, n) == 0) return id;
        }
    }
}

static int32_t vocab_find(const ak_tokenizer *t, const char *s, size_t n) {
    if (n == 0 || n > (size_t)t->max_len) return -1;
    return vocab_find_h(t, s, n, hash_bytes((const unsigned char *)s, n));
}

/* Insert id; an earlier id with the same text is replaced (llama.cpp: token_to_id[text] = id). */
static void vocab_insert(ak_tokenizer *t, int32_t id) {
    const char *s = t->blob + t->off[id];
    size_t n = (size_t)(t->off[id + 1] - t->off[id]);
    uint64_t h = hash_bytes((const unsigned char *)s, n);
    uint64_t tag = h >> 32, e_new = (tag << 32) | (uint64_t)(uint32_t)(id + 1);
    for (uint64_t i = h & t->smask;; i = (i + 1) & t->smask) {
        uint64_t e = t->slot[i];
        if (!e) {
            t->slot[i] = e_new;
            return;
        }
        if ((e >> 32) == tag) {
            int32_t o = (int32_t)(uint32_t)e - 1;
            if (t->off[o + 1] - t->off[o] == n && memcmp(t->blob + t->off[o], s, n) == 0) {
                t->slot[i] = e_new;
                return;
            }
        }
    }
}

static int32_t vocab_find_str(const ak_tokenizer *t, const char *s) { return vocab_find(t, s, strlen(s)); }

/* ---- special-token trie ------------------------------------------------------------------------------ */

static int32_t trie_child(const trie *tr, int32_t node, unsigned char b) {
    uint64_t key = (((uint64_t)node << 8) | b) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (uint64_t i = (h >> 20) & tr->emask;; i = (i + 1) & tr->emask) {
        uint64_t k = tr->ekey[i];
        if (k == key) return tr->echild[i];
        if (k == 0) return -1;
    }
}

static void trie_add_edge(trie *tr, int32_t node, unsigned char b, int32_t child) {
    uint64_t key = (((uint64_t)node << 8) | b) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint64_t i = (h >> 20) & tr->emask;
    while (tr->ekey[i]) i = (i + 1) & tr->emask;
    tr->ekey[i] = key;
    tr->echild[i] = child;
}

static void trie_free(const ak_ctx *ctx, trie *tr) {
    ak__free(ctx, tr->ekey);
    ak__free(ctx, tr->echild);
    ak__free(ctx, tr->depth);
    for (int m = 0; m < 2; m++) {
        ak__free(ctx, tr->tok[m]);
        ak__free(ctx, tr->up[m]);
    }
    memset(tr, 0, sizeof *tr);
}

/* Build the trie of every candidate text (attribute CONTROL, USER_DEFINED or UNKNOWN). A node's token in
 * mode m is the smallest candidate id with that text active in m: with equal texts (equal lengths) the
 * plain rule visits the smaller id first, and it takes every occurrence. */
static ak_status trie_build(ak_tokenizer *t) {
    const ak_ctx *ctx = t->ctx;
    trie *tr = &t->st;
    uint64_t total = 1;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (A_CONTROL | A_USER | A_UNKNOWN)) total += t->off[id + 1] - t->off[id];
    if (total > (uint64_t)INT32_MAX / 2)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: special token texts total %" PRIu64
                        " bytes, too many", total);
    uint64_t cap = 16;
    while (cap < 2 * total) cap <<= 1;
    size_t nn = (size_t)total;
    int32_t *parent = (int32_t *)ak__alloc(ctx, nn * sizeof(int32_t));
    tr->ekey = (uint64_t *)ak__alloc(ctx, (size_t)cap * sizeof(uint64_t));
    tr->echild = (int32_t *)ak__alloc(ctx, (size_t)cap * sizeof(int32_t));
    tr->depth = (int32_t *)ak__alloc(ctx, nn * sizeof(int32_t));
    int ok = parent && tr->ekey && tr->echild && tr->depth;
    for (int m = 0; m < 2; m++) {
        tr->tok[m] = (int32_t *)ak__alloc(ctx, nn * sizeof(int32_t));
        tr->up[m] = (int32_t *)ak__alloc(ctx, nn * sizeof(int32_t));
        ok = ok && tr->tok[m] && tr->up[m];
    }
    if (!ok) {
        ak__free(ctx, parent);
        trie_free(ctx, tr);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenizer_create: special-token trie (%" PRIu64 " nodes)",
                        total);
    }
    memset(tr->ekey, 0, (size_t)cap * sizeof(uint64_t));
    tr->emask = cap - 1;
    tr->n_nodes = 1;
    parent[0] = -1;
    tr->depth[0] = 0;
    for (int m = 0; m < 2; m++) tr->tok[m][0] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t a = t->attr[id];
        if (!(a & (A_CONTROL | A_USER | A_UNKNOWN))) continue;
        const unsigned char *s = (const unsigned char *)t->blob + t->off[id];
        size_t n = (size_t)(t->off[id + 1] - t->off[id]);
        int32_t node = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t c = trie_child(tr, node, s[i]);
            if (c < 0) {
                c = tr->n_nodes++;
                parent[c] = node;
                tr->depth[c] = tr->depth[node] + 1;
                tr->tok[0][c] = tr->tok[1][c] = -1;
                trie_add_edge(tr, node, s[i], c);
            }
            node = c;
        }
        /* ids ascending: the first one to reach a node is the smallest */
        if (tr->tok[1][node] < 0) tr->tok[1][node] = id;
        for (int m = 0; m < 2; m++) {
            if (m == 0 && (a & (A_CONTROL | A_UNKNOWN))) continue;
            if (m == 0 && tr->tok[0][node] < 0) tr->tok[0][node] = id;
            tr->first[m][s[0]] = 1;
            if (n == 1) tr->one[m][s[0]] = 1;
            else tr->two[m][s[0] << 5 | s[1] >> 3] |= (uint8_t)(1u << (s[1] & 7));
        }
    }
    /* parents are created before their children, so one pass in index order sees every parent done */
    for (int m = 0; m < 2; m++) {
        tr->up[m][0] = -1;
        for (int32_t v = 1; v < tr->n_nodes; v++) {
            int32_t p = parent[v];
            tr->up[m][v] = tr->tok[m][p] >= 0 ? p : tr->up[m][p];
        }
    }
    ak__free(ctx, parent);
    return AK_OK;
}

/* ---- creation ---------------------------------------------------------------------------------------- */

/* Texts llama.cpp recognises (src/llama-vocab.cpp, load()); each found one is forced CONTROL. */
static const char *const EOT_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                                        "<end_of_utterance>", NULL};
static const char *const EOM_TEXTS[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_TEXTS[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                            "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                                            "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const FIM_SUF_TEXTS[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                            "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>",
                                            "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const FIM_MID_TEXTS[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                            "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                                            "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const FIM_PAD_TEXTS[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const FIM_REP_TEXTS[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
                                            NULL};
static const char *const FIM_SEP_TEXTS[] = {"<|file_sep|>", NULL};
static const char *const EOG_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                        "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
                                        "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
                                        "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                                        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                                        "[e~[", NULL};
static const char *const RENDER_TEXTS[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

/* The smallest id whose text is in the list (the one the text -> id map holds). llama.cpp takes the first
 * match in unordered_map order, which is unspecified; it only matters for a vocabulary with two of them. */
static int32_t find_listed(const ak_tokenizer *t, const char *const *list) {
    int32_t best = -1;
    for (int i = 0; list[i]; i++) {
        int32_t id = vocab_find_str(t, list[i]);
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

/* An optional special-id key: absent keeps the default; a value outside [0, n_vocab) keeps it too (llama.cpp
 * warns "bad special token" and does the same). */
static ak_status key_token_id(const ak_tokenizer *t, const ak_gguf *g, const char *key, int32_t *id) {
    if (ak_gguf_find_key(g, key) < 0) return AK_OK;
    int64_t v;
    ak_status s = ak_gguf_get_int(g, key, &v);
    if (s) return ak__fail(t->ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: %s is not an integer", key);
    if (v >= 0 && v < t->n_vocab) *id = (int32_t)v;
    return AK_OK;
}

static ak_status key_bool(const ak_tokenizer *t, const ak_gguf *g, const char *key, int32_t *flag) {
    if (ak_gguf_find_key(g, key) < 0) return AK_OK;
    int64_t v;
    if (ak_gguf_get_int(g, key, &v)) return ak__fail(t->ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: %s is not a bool", key);
    *flag = v != 0;
    return AK_OK;
}

/* A numeric per-token array (scores / token_type): element type and data, with count >= n. */
static ak_status key_array(const ak_tokenizer *t, const ak_gguf *g, const char *key, int64_t n, int want_float,
                           ak_gguf_vtype *et, const unsigned char **data) {
    *data = NULL;
    int64_t k = ak_gguf_find_key(g, key);
    if (k < 0) return AK_OK;
    ak_gguf_vtype type;
    int32_t elem;
    int64_t count;
    if (ak_gguf_key_info(g, k, NULL, &type, &elem, &count))
        return ak__fail(t->ctx, AK_ERR_INTERNAL, "ak_tokenizer_create: key info of %s", key);
    int elem_ok = elem == AK_GGUF_I32 || (want_float && elem == AK_GGUF_F32);
    if (type != AK_GGUF_ARRAY || !elem_ok)
        return ak__fail(t->ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: %s must be an array of %s", key,
                        want_float ? "f32 or i32" : "i32");
    if (count < n)
        return ak__fail(t->ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: %s has %" PRId64 " elements for %" PRId64
                        " tokens", key, count, n);
    const void *p;
    if (ak_gguf_get_arr_data(g, key, et, &count, &p))
        return ak__fail(t->ctx, AK_ERR_INTERNAL, "ak_tokenizer_create: array data of %s", key);
    *data = (const unsigned char *)p;
    return AK_OK;
}

static uint32_t rd_le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

ak_status ak_tokenizer_create(ak_ctx *ctx, const ak_gguf *g, ak_tokenizer **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!g) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_tokenizer_create: g is NULL");
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_tokenizer_create: out is NULL");
    *out = NULL;

    const char *model = NULL;
    size_t model_len = 0;
    if (ak_gguf_find_key(g, "tokenizer.ggml.model") < 0 ||
        ak_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len) != AK_OK)
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_tokenizer_create: no string tokenizer.ggml.model");
    if (model_len != 5 || memcmp(model, "llama", 5) != 0)
        return ak__fail(ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_tokenizer_create: tokenizer.ggml.model '%.40s' is not "
                        "supported (only 'llama', the SentencePiece path)", model);

    int64_t kt = ak_gguf_find_key(g, "tokenizer.ggml.tokens");
    ak_gguf_vtype type;
    int32_t elem;
    int64_t n = 0;
    if (kt < 0) return ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: no tokenizer.ggml.tokens");
    if (ak_gguf_key_info(g, kt, NULL, &type, &elem, &n) || type != AK_GGUF_ARRAY || elem != AK_GGUF_STRING)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: tokenizer.ggml.tokens is not a string array");
    if (n >= INT32_MAX)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: %" PRId64 " tokens, too many", n);

    ak_tokenizer *t = (ak_tokenizer *)ak__alloc(ctx, sizeof *t);
    if (!t) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenizer_create");
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->n_vocab = (int32_t)n;
    ak_status st = AK_OK;

    /* texts: lengths first (one blob), "[EMPTY_<i>]" for empty ones */
    t->off = (uint64_t *)ak__alloc(ctx, ((size_t)n + 1) * sizeof(uint64_t));
    t->score = (float *)ak__alloc(ctx, ((size_t)n + 1) * sizeof(float));
    t->attr = (uint8_t *)ak__alloc(ctx, (size_t)n + 1);
    if (!t->off || !t->score || !t->attr) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenizer_create: %" PRId64 " tokens", n);
        goto fail;
    }
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (ak_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len)) {
            st = ak__fail(ctx, AK_ERR_INTERNAL, "ak_tokenizer_create: token %" PRId64, i);
            goto fail;
        }
        if (len == 0) len = (size_t)snprintf(NULL, 0, "[EMPTY_%" PRId64 "]", i);
        t->off[i] = total;
        total += len;
        if (len > (size_t)INT32_MAX / 4) {
            st = ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: token %" PRId64 " is %zu bytes long", i, len);
            goto fail;
        }
        if ((int32_t)len > t->max_len) t->max_len = (int32_t)len;
    }
    t->off[n] = total;
    t->blob = (char *)ak__alloc(ctx, (size_t)total + 16);
    if (!t->blob) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenizer_create: %" PRIu64 " bytes of token text", total);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        ak_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len);
        if (len == 0) {
            char tmp[40];
            len = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%" PRId64 "]", i);
            memcpy(t->blob + t->off[i], tmp, len);
        } else {
            memcpy(t->blob + t->off[i], s, len);
        }
    }

    /* scores (f32 or i32; absent: 0) and types (absent: NORMAL) */
    {
        ak_gguf_vtype set, tet;
        const unsigned char *sd, *td;
        if ((st = key_array(t, g, "tokenizer.ggml.scores", n, 1, &set, &sd))) goto fail;
        if ((st = key_array(t, g, "tokenizer.ggml.token_type", n, 0, &tet, &td))) goto fail;
        for (int64_t i = 0; i < n; i++) {
            float sc = 0.0f;
            if (sd) {
                uint32_t u = rd_le32(sd + 4 * i);
                if (set == AK_GGUF_F32) memcpy(&sc, &u, 4);
                else sc = (float)(int32_t)u;
            }
            t->score[i] = sc;
            uint8_t a = A_NORMAL;
            if (td) {
                switch ((int32_t)rd_le32(td + 4 * i)) {
                case 1: a = A_NORMAL; break;
                case 2: a = A_UNKNOWN; break;
                case 3: a = A_CONTROL; break;
                case 4: a = A_USER; break;
                case 5: a = A_UNUSED; break;
                case 6: a = A_BYTE; break;
                default: a = 0; break;   /* UNDEFINED */
                }
            }
            t->attr[i] = a;
        }
    }

    /* text -> id */
    {
        uint64_t cap = 16;
        while (cap < 2 * (uint64_t)n + 2) cap <<= 1;
        t->slot = (uint64_t *)ak__alloc(ctx, (size_t)cap * sizeof(uint64_t));
        if (!t->slot) {
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenizer_create: text table");
            goto fail;
        }
        memset(t->slot, 0, (size_t)cap * sizeof(uint64_t));
        t->smask = cap - 1;
        for (int32_t i = 0; i < t->n_vocab; i++) vocab_insert(t, i);
    }

    /* special ids: SPM defaults, dropped when outside the vocabulary, then the keys */
    t->bos = 1 < t->n_vocab ? 1 : -1;
    t->eos = 2 < t->n_vocab ? 2 : -1;
    t->unk = 0 < t->n_vocab ? 0 : -1;
    t->eot = t->eom = t->pad = -1;
    int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    if ((st = key_token_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.eom_token_id", &t->eom)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.fim_pre_token_id", &fim_pre)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.fim_suf_token_id", &fim_suf)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.fim_mid_token_id", &fim_mid)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.fim_pad_token_id", &fim_pad)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.fim_rep_token_id", &fim_rep)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.fim_sep_token_id", &fim_sep)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.prefix_token_id", &fim_pre)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.suffix_token_id", &fim_suf)) ||
        (st = key_token_id(t, g, "tokenizer.ggml.middle_token_id", &fim_mid)))
        goto fail;
    t->add_bos = 1;
    t->add_eos = 0;
    t->add_space_prefix = 1;
    if ((st = key_bool(t, g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)) ||
        (st = key_bool(t, g, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
        (st = key_bool(t, g, "tokenizer.ggml.add_eos_token", &t->add_eos)))
        goto fail;
    if (t->add_bos && t->bos < 0) {
        st = ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: add_bos_token is true, but there is no BOS id");
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        st = ak__fail(ctx, AK_ERR_BAD_FILE, "ak_tokenizer_create: add_eos_token is true, but there is no EOS id");
        goto fail;
    }

    /* special tokens detected by text (each forced CONTROL), then the end-of-generation set */
    {
        int32_t *roles[] = {&t->eot, &t->eom, &fim_pre, &fim_suf, &fim_mid, &fim_pad, &fim_rep, &fim_sep};
        const char *const *lists[] = {EOT_TEXTS, EOM_TEXTS, FIM_PRE_TEXTS, FIM_SUF_TEXTS,
                                      FIM_MID_TEXTS, FIM_PAD_TEXTS, FIM_REP_TEXTS, FIM_SEP_TEXTS};
        for (int r = 0; r < 8; r++) {
            if (*roles[r] >= 0) continue;
            int32_t id = find_listed(t, lists[r]);
            if (id >= 0) {
                *roles[r] = id;
                t->attr[id] |= A_CONTROL;
            }
        }
        if (fim_pad >= 0) t->attr[fim_pad] |= A_EOG;
        if (fim_rep >= 0) t->attr[fim_rep] |= A_EOG;
        if (fim_sep >= 0) t->attr[fim_sep] |= A_EOG;
        for (int i = 0; EOG_TEXTS[i]; i++) {
            int32_t id = vocab_find_str(t, EOG_TEXTS[i]);
            if (id >= 0) t->attr[id] |= A_EOG | A_CONTROL;
        }
        for (int i = 0; RENDER_TEXTS[i]; i++) {   /* gpt-oss: always rendered */
            int32_t id = vocab_find_str(t, RENDER_TEXTS[i]);
            if (id >= 0) t->attr[id] = (uint8_t)((t->attr[id] & A_EOG) | A_USER);
        }
        if (t->eos >= 0) t->attr[t->eos] |= A_EOG;
        if (t->eot >= 0) t->attr[t->eot] |= A_EOG;
        if (t->eom >= 0) t->attr[t->eom] |= A_EOG;
        /* o200k_harmony / solar-open: "<|end|>" is not end-of-generation there */
        int32_t ret = vocab_find_str(t, "<|return|>"), call = vocab_find_str(t, "<|call|>");
        int32_t calls = vocab_find_str(t, "<|calls|>"), flush = vocab_find_str(t, "<|flush|>");
        int32_t end = vocab_find_str(t, "<|end|>");
#define IS_EOG(id) ((id) >= 0 && (t->attr[id] & A_EOG))
        int has_call = IS_EOG(call) || IS_EOG(calls);
        if (IS_EOG(end) && ((IS_EOG(ret) && has_call) || (has_call && IS_EOG(flush)))) t->attr[end] = A_USER;
        /* gemma4 / plamo: "</s>" is a normal token there */
        int32_t s_end = vocab_find_str(t, "</s>");
        if (IS_EOG(s_end) && (IS_EOG(vocab_find_str(t, "<|tool_response>")) ||
                              IS_EOG(vocab_find_str(t, "<|plamo:eos|>"))))
            t->attr[s_end] = A_NORMAL;
#undef IS_EOG
    }

    /* byte fallback ids */
    for (int b = 0; b < 256; b++) {
        char hx[8];
        snprintf(hx, sizeof hx, "<0x%02X>", b);
        int32_t id = vocab_find_str(t, hx);
        if (id < 0) {
            char one = (char)b;
            id = vocab_find(t, &one, 1);
        }
        t->byte_id[b] = id;
    }

    t->id1 = (int32_t *)ak__alloc(ctx, 256 * sizeof(int32_t));
    t->id2 = (int32_t *)ak__alloc(ctx, 65536 * sizeof(int32_t));
    t->id_sp_b = (int32_t *)ak__alloc(ctx, 256 * sizeof(int32_t));
    t->id_b_sp = (int32_t *)ak__alloc(ctx, 256 * sizeof(int32_t));
    if (!t->id1 || !t->id2 || !t->id_sp_b || !t->id_b_sp) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenizer_create: lookup tables");
        goto fail;
    }
    for (int i = 0; i < 65536; i++) t->id2[i] = -1;
    for (int b = 0; b < 256; b++) {
        char s1[4] = {(char)b, 0, 0, 0}, s4[4] = {'\xE2', '\x96', '\x81', (char)b};
        t->id1[b] = vocab_find(t, s1, 1);
        t->id_sp_b[b] = vocab_find(t, s4, 4);
        s4[0] = (char)b;
        s4[1] = '\xE2';
        s4[2] = '\x96';
        s4[3] = '\x81';
        t->id_b_sp[b] = vocab_find(t, s4, 4);
    }
    for (int32_t id = 0; id < t->n_vocab; id++)   /* the two-byte texts (the map's id: a later duplicate) */
        if (t->off[id + 1] - t->off[id] == 2) {
            const unsigned char *p2 = (const unsigned char *)t->blob + t->off[id];
            t->id2[p2[0] << 8 | p2[1]] = vocab_find(t, (const char *)p2, 2);
        }

    if ((st = trie_build(t))) goto fail;
    *out = t;
    return AK_OK;

fail:
    ak_tokenizer_destroy(t);
    return st;
}

void ak_tokenizer_destroy(ak_tokenizer *t) {
    if (!t) return;
    const ak_ctx *ctx = t->ctx;
    trie_free(ctx, &t->st);
    ak__free(ctx, t->blob);
    ak__free(ctx, t->off);
    ak__free(ctx, t->score);
    ak__free(ctx, t->attr);
    ak__free(ctx, t->slot);
    ak__free(ctx, t->id1);
    ak__free(ctx, t->id2);
    ak__free(ctx, t->id_sp_b);
    ak__free(ctx, t->id_b_sp);
    ak__free(ctx, t);
}

ak_status ak_tokenizer_info(const ak_tokenizer *t, ak_vocab_info *info) {
    if (!t) return AK_ERR_NULL_POINTER;
    if (!info) return ak__fail(t->ctx, AK_ERR_NULL_POINTER, "ak_tokenizer_info: info is NULL");
    info->n_vocab = t->n_vocab;
    info->bos = t->bos;
    info->eos = t->eos;
    info->eot = t->eot;
    info->unk = t->unk;
    info->pad = t->pad;
    info->add_bos = t->add_bos;
    info->add_eos = t->add_eos;
    info->add_space_prefix = t->add_space_prefix;
    return AK_OK;
}

int ak_token_is_eog(const ak_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    return (t->attr[id] & A_EOG) != 0;
}

/* ---- tokenize ---------------------------------------------------------------------------------------- */

typedef struct sink {
    int32_t *ids;
    int64_t cap, n;
} sink;

static inline void put(sink *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* A direct-mapped cache of text -> id lookups (hits and misses) for short texts, private to one call:
 * natural text repeats the same few thousand pairs, and the cache stays in L2 where the 262144-entry
 * table and the token texts do not. Half the tokenize time otherwise goes to those cache misses. */
#define LC_TEXT 22
typedef struct lcache {
    uint32_t h32;
    int32_t id;
    uint8_t len;   /* 0: empty (lookups are never empty) */
    char text[LC_TEXT + 1];
} lcache;

typedef struct sym {
    int32_t off, n, prev, next, id;   /* id: the token of a merged symbol, -1 before any merge */
} sym;

typedef struct bigram {
    float score;
    int32_t left, size, id;
} bigram;

/* Scratch of one ak_tokenize call, grown to the largest raw fragment. */
typedef struct work {
    const ak_ctx *ctx;
    char *buf;
    sym *sy;
    bigram *hp;
    size_t cap_buf, cap_sy, cap_hp;   /* elements */
    struct lcache *lc;                /* text -> id lookups of this call, or NULL */
    uint64_t lc_mask;
} work;

/* Make *p hold at least n elements of size es (contents are not kept). */
static int grow(const ak_ctx *ctx, void **p, size_t *cap, size_t n, size_t es) {
    if (n <= *cap && *p) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < n) c += c / 2;
    ak__free(ctx, *p);
    *p = ak__alloc(ctx, c * es);
    *cap = *p ? c : 0;
    return *p != NULL;
}

/* Max-heap order: higher score first, then the smaller left index (llama.cpp's llm_bigram_spm). */
static inline int bg_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void bg_sift_down(bigram *h, size_t n, size_t i) {
    bigram x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&h[c + 1], &h[c])) c++;
        if (!bg_before(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void bg_push(bigram *h, size_t *n, bigram x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static int32_t lookup(const ak_tokenizer *t, work *w, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (n <= 2) return n == 2 ? t->id2[u[0] << 8 | u[1]] : n == 1 ? t->id1[u[0]] : -1;
    if (n == 4) {
        if (u[0] == 0xE2 && u[1] == 0x96 && u[2] == 0x81) return t->id_sp_b[u[3]];
        if (u[1] == 0xE2 && u[2] == 0x96 && u[3] == 0x81) return t->id_b_sp[u[0]];
    }
    if (n > (size_t)t->max_len) return -1;
    uint64_t h = hash_bytes((const unsigned char *)s, n);
    if (!w->lc || n > LC_TEXT) return vocab_find_h(t, s, n, h);
    lcache *e = &w->lc[(h >> 7) & w->lc_mask];
    if (e->len == n && e->h32 == (uint32_t)h && memcmp(e->text, s, n) == 0) return e->id;
    int32_t id = vocab_find_h(t, s, n, h);
    e->h32 = (uint32_t)h;
    e->id = id;
    e->len = (uint8_t)n;
    memcpy(e->text, s, n);
    return id;
}

/* The bigram (l, r) if its text is a token. */
static inline int bg_make(const ak_tokenizer *t, work *w, int32_t l, int32_t r, bigram *out) {
    if (l < 0 || r < 0) return 0;
    const sym *a = &w->sy[l], *b = &w->sy[r];
    int32_t size = a->n + b->n;
    int32_t id = lookup(t, w, w->buf + a->off, (size_t)size);
    if (id < 0) return 0;
    out->score = t->score[id];
    out->left = l;
    out->size = size;
    out->id = id;
    return 1;
}

static ak_status emit_bytes(const ak_tokenizer *t, const char *s, int32_t n, sink *o) {
    for (int32_t j = 0; j < n; j++) {
        unsigned char b = (unsigned char)s[j];
        int32_t id = t->byte_id[b];
        if (id < 0)
            return ak__fail(t->ctx, AK_ERR_INVALID_ARGUMENT, "ak_tokenize: byte 0x%02X is in no token and the "
                            "vocabulary has neither <0x%02X> nor a one-byte token for it", b, b);
        put(o, id);
    }
    return AK_OK;
}

/* Room for two more heap entries, keeping the heap. */
static int hp_room(work *w, size_t nh) {
    if (nh + 2 <= w->cap_hp) return 1;
    size_t c = w->cap_hp + w->cap_hp / 2 + 16;
    bigram *nhp = (bigram *)ak__alloc(w->ctx, c * sizeof(bigram));
    if (!nhp) return 0;
    if (nh) memcpy(nhp, w->hp, nh * sizeof(bigram));
    ak__free(w->ctx, w->hp);
    w->hp = nhp;
    w->cap_hp = c;
    return 1;
}

/* One raw fragment through the bigram merges (llama.cpp llm_tokenizer_spm_session). */
static ak_status spm_fragment(const ak_tokenizer *t, work *w, const char *text, size_t len, int prefix, sink *o) {
    static const uint8_t clen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    if (!grow(w->ctx, (void **)&w->buf, &w->cap_buf, 3 * len + 3, 1))
        return ak__fail(t->ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenize: fragment of %zu bytes", len);
    /* escape: optional leading space, ' ' -> U+2581 */
    char *buf = w->buf;
    size_t m = 0;
    if (prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            buf[m++] = text[i];
        }
    }
    /* UTF-8 characters by lead byte, clamped at the end. A lead byte may swallow part of an escaped space,
     * so there can be more characters than input bytes: count them first. */
    size_t ns = 0;
    for (size_t p = 0; p < m; ns++) p += clen[(unsigned char)buf[p] >> 4];
    if (!grow(w->ctx, (void **)&w->sy, &w->cap_sy, ns, sizeof(sym)) ||
        !grow(w->ctx, (void **)&w->hp, &w->cap_hp, ns + 2, sizeof(bigram)))
        return ak__fail(t->ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenize: fragment of %zu characters", ns);
    sym *sy = w->sy;
    int32_t k = 0;
    for (size_t p = 0; p < m; k++) {
        size_t l = clen[(unsigned char)buf[p] >> 4];
        if (l > m - p) l = m - p;
        sy[k].off = (int32_t)p;
        sy[k].n = (int32_t)l;
        sy[k].prev = k - 1;
        sy[k].id = -1;
        p += l;
        sy[k].next = p == m ? -1 : k + 1;
    }
    /* seed with every adjacent pair, heapify, merge */
    size_t nh = 0;
    for (int32_t i = 1; i < k; i++)
        if (bg_make(t, w, i - 1, i, &w->hp[nh])) nh++;
    for (size_t i = nh / 2; i-- > 0;) bg_sift_down(w->hp, nh, i);
    while (nh > 0) {
        bigram *hp = w->hp;
        bigram b = hp[0];
        hp[0] = hp[--nh];
        if (nh) bg_sift_down(hp, nh, 0);
        sym *L = &sy[b.left];
        /* stale: the left symbol was merged away or grew, or its right neighbour grew */
        if (L->n == 0 || L->next < 0) continue;
        sym *R = &sy[L->next];
        if (L->n + R->n != b.size) continue;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) sy[R->next].prev = b.left;
        L->id = b.id;
        if (!hp_room(w, nh)) return ak__fail(t->ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenize: merge queue");
        bigram nb;
        if (bg_make(t, w, L->prev, b.left, &nb)) bg_push(w->hp, &nh, nb);
        if (bg_make(t, w, b.left, L->next, &nb)) bg_push(w->hp, &nh, nb);
    }
    /* each symbol: its token (a merged one has it), else one byte token per byte */
    for (int32_t i = 0; i != -1; i = sy[i].next) {
        int32_t id = sy[i].id >= 0 ? sy[i].id : lookup(t, w, buf + sy[i].off, (size_t)sy[i].n);
        if (id >= 0) {
            put(o, id);
        } else {
            ak_status s = emit_bytes(t, buf + sy[i].off, sy[i].n, o);
            if (s) return s;
        }
    }
    return AK_OK;
}

/* ---- special-token partition ---- */

typedef struct occ {
    int32_t node, pos;
} occ;

typedef struct cut {
    int32_t pos, len, id;
} cut;

/* Visiting order of the plain rule: longer text first, then the smaller token id, then the position. */
static inline int occ_before(const trie *tr, int m, occ a, occ b) {
    int32_t da = tr->depth[a.node], db = tr->depth[b.node];
    if (da != db) return da > db;
    int32_t ta = tr->tok[m][a.node], tb = tr->tok[m][b.node];
    if (ta != tb) return ta < tb;
    return a.pos < b.pos;
}

static void occ_sift_down(const trie *tr, int m, occ *h, size_t n, size_t i) {
    occ x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && occ_before(tr, m, h[c + 1], h[c])) c++;
        if (!occ_before(tr, m, h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static int cut_cmp(const void *a, const void *b) {
    int32_t x = ((const cut *)a)->pos, y = ((const cut *)b)->pos;
    return (x > y) - (x < y);
}

/* Find the special tokens the plain rule cuts out of text[0..n): *cuts (sorted by position), *n_cuts. */
static ak_status partition(const ak_tokenizer *t, const unsigned char *text, int32_t n, int m, cut **cuts_out,
                           size_t *n_cuts) {
    const ak_ctx *ctx = t->ctx;
    const trie *tr = &t->st;
    *cuts_out = NULL;
    *n_cuts = 0;
    occ *h = NULL;
    size_t nh = 0, caph = 0;
    for (int32_t s = 0; s < n; s++) {
        unsigned char b0 = text[s];
        if (!tr->first[m][b0]) continue;
        /* most hits of the first byte (spaces in prose) end at the second: filter on the pair */
        if (!tr->one[m][b0] && (s + 1 >= n || !(tr->two[m][b0 << 5 | text[s + 1] >> 3] & (1u << (text[s + 1] & 7)))))
            continue;
        int32_t node = 0, best = -1;
        for (int32_t i = s; i < n; i++) {
            int32_t c = trie_child(tr, node, text[i]);
            if (c < 0) break;
            node = c;
            if (tr->tok[m][node] >= 0) best = node;
        }
        if (best < 0) continue;
        if (nh == caph) {
            size_t nc = caph ? 2 * caph : 64;
            occ *nhp = (occ *)ak__alloc(ctx, nc * sizeof(occ));
            if (!nhp) {
                ak__free(ctx, h);
                return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenize: %zu special-token matches", nc);
            }
            if (nh) memcpy(nhp, h, nh * sizeof(occ));
            ak__free(ctx, h);
            h = nhp;
            caph = nc;
        }
        h[nh].node = best;
        h[nh].pos = s;
        nh++;
    }
    if (nh == 0) return AK_OK;

    unsigned char *cov = (unsigned char *)ak__alloc(ctx, (size_t)n);
    cut *cuts = (cut *)ak__alloc(ctx, nh * sizeof(cut));   /* at most one cut per matching position */
    if (!cov || !cuts) {
        ak__free(ctx, h);
        ak__free(ctx, cov);
        ak__free(ctx, cuts);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_tokenize: partition of %" PRId32 " bytes", n);
    }
    memset(cov, 0, (size_t)n);
    size_t nc = 0;
    for (size_t i = nh / 2; i-- > 0;) occ_sift_down(tr, m, h, nh, i);
    while (nh > 0) {
        occ e = h[0];
        if (cov[e.pos]) {   /* inside a cut token: nothing can start here any more */
            h[0] = h[--nh];
            if (nh) occ_sift_down(tr, m, h, nh, 0);
            continue;
        }
        int32_t len = tr->depth[e.node];
        if (!memchr(cov + e.pos, 1, (size_t)len)) {
            memset(cov + e.pos, 1, (size_t)len);
            cuts[nc].pos = e.pos;
            cuts[nc].len = len;
            cuts[nc].id = tr->tok[m][e.node];
            nc++;
            h[0] = h[--nh];
            if (nh) occ_sift_down(tr, m, h, nh, 0);
            continue;
        }
        /* overlaps an earlier cut: the next shorter candidate matching here, visited later */
        int32_t up = tr->up[m][e.node];
        if (up > 0) {   /* (the root is never a terminal, so up is a real candidate node or -1) */
            h[0].node = up;
        } else {
            h[0] = h[--nh];
        }
        if (nh) occ_sift_down(tr, m, h, nh, 0);
    }
    ak__free(ctx, h);
    ak__free(ctx, cov);
    qsort(cuts, nc, sizeof(cut), cut_cmp);
    *cuts_out = cuts;
    *n_cuts = nc;
    return AK_OK;
}

ak_status ak_tokenize(const ak_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                      int32_t *ids, int32_t cap, int32_t *n_out) {
    if (!t) return AK_ERR_NULL_POINTER;
    const ak_ctx *ctx = t->ctx;
    if (!n_out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_tokenize: n_out is NULL");
    *n_out = 0;
    if (!text && len > 0) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_tokenize: text is NULL (len %zu)", len);
    if (cap < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_tokenize: cap = %" PRId32 " < 0", cap);
    if (!ids && cap > 0) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_tokenize: ids is NULL (cap %" PRId32 ")", cap);
    if (len >= TOK_MAX_TEXT)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_tokenize: text of %zu bytes; at most %zu per call", len,
                        TOK_MAX_TEXT - 1);
    int m = parse_special != 0;
    sink o = {ids, cap, 0};
    work w;
    memset(&w, 0, sizeof w);
    w.ctx = ctx;
    cut *cuts = NULL;
    size_t nc = 0;
    ak_status st = AK_OK;

    if (len >= 4096) {   /* short texts: not worth clearing a cache */
        size_t c = 1024;
        while (c < len / 16 && c < 65536) c *= 2;
        w.lc = (lcache *)ak__alloc(ctx, c * sizeof(lcache));
        if (w.lc) {   /* an optimisation only: go on without it */
            memset(w.lc, 0, c * sizeof(lcache));
            w.lc_mask = c - 1;
        }
    }
    if (add_special && t->add_bos) put(&o, t->bos);
    if (len > 0) {
        st = partition(t, (const unsigned char *)text, (int32_t)len, m, &cuts, &nc);
        size_t pos = 0;
        int prev_special = 1;   /* llama.cpp: the first raw fragment counts as following a special token */
        for (size_t k = 0; st == AK_OK && k <= nc; k++) {
            size_t end = k < nc ? (size_t)cuts[k].pos : len;
            if (end > pos) {
                st = spm_fragment(t, &w, text + pos, end - pos, t->add_space_prefix && prev_special, &o);
                prev_special = 0;
            }
            if (k < nc) {
                put(&o, cuts[k].id);
                prev_special = 1;
                pos = end + (size_t)cuts[k].len;
            }
        }
    }
    if (st == AK_OK && add_special && t->add_eos) put(&o, t->eos);

    ak__free(ctx, cuts);
    ak__free(ctx, w.buf);
    ak__free(ctx, w.sy);
    ak__free(ctx, w.hp);
    ak__free(ctx, w.lc);
    if (st) return st;
    if (o.n > INT32_MAX) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_tokenize: %" PRId64 " tokens", o.n);
    *n_out = (int32_t)o.n;
    if (o.n > cap)
        return ak__fail(ctx, AK_ERR_CAPACITY, "ak_tokenize: the text has %" PRId64 " tokens, ids holds %" PRId32,
                        o.n, cap);
    return AK_OK;
}

/* ---- detokenize -------------------------------------------------------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

ak_status ak_token_to_piece(const ak_tokenizer *t, int32_t id, int special, char *buf, size_t cap, size_t *len) {
    if (!t) return AK_ERR_NULL_POINTER;
    const ak_ctx *ctx = t->ctx;
    if (!len) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_token_to_piece: len is NULL");
    *len = 0;
    if (!buf && cap > 0) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_token_to_piece: buf is NULL (cap %zu)", cap);
    if (id < 0 || id >= t->n_vocab)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_token_to_piece: id %" PRId32 " outside [0, %" PRId32 ")",
                        id, t->n_vocab);
    uint8_t a = t->attr[id];
    const char *s = t->blob + t->off[id];
    size_t n = (size_t)(t->off[id + 1] - t->off[id]);
    size_t need = 0;
    int mode = 0;   /* 0 nothing, 1 text as stored, 2 text with U+2581 -> ' ', 3 one byte */
    unsigned char byte = 0;
    if (!special && (a & (A_UNKNOWN | A_CONTROL))) {
        mode = 0;
    } else if (a & (A_UNKNOWN | A_CONTROL | A_USER)) {
        mode = 1;
        need = n;
    } else if (a & A_NORMAL) {
        mode = 2;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) i += 2;
            need++;
        }
    } else if (a & A_BYTE) {
        /* llama.cpp: strtol(text.substr(3, 2), 16) */
        mode = 3;
        need = 1;
        int v = 0;
        for (size_t i = 3; i < 5 && i < n && hexval(s[i]) >= 0; i++) v = v * 16 + hexval(s[i]);
        byte = (unsigned char)v;
    }
    *len = need;
    if (need > cap)
        return ak__fail(ctx, AK_ERR_CAPACITY, "ak_token_to_piece: token %" PRId32 " needs %zu bytes, buf holds %zu", id,
                        need, cap);
    if (mode == 1) {
        memcpy(buf, s, n);
    } else if (mode == 2) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                buf[k++] = ' ';
                i += 2;
            } else {
                buf[k++] = s[i];
            }
        }
    } else if (mode == 3) {
        buf[0] = (char)byte;
    }
    return AK_OK;
}
