/*
 * problem.c — problem strings: parse, print back, expand comma lists into a sweep.
 *
 * A problem string is tokens joined by '_', e.g. b2_h32_hkv8_q4096_k4096_d128_causal_bf16.
 *   b<B> h<Hq> hkv<Hkv> q<Lq> k<Lk> d<d> dv<dv>           sizes (q and d are required)
 *   causal  win<L>  wr<R>  softcap<x>  alibi  sinks  lse  scale<x>
 *   f32|bf16|f16 (q, and kv/o unless given)   kv<dtype>   o<dtype>
 *   bshd | bhsd (memory layout)   varlen (ragged batch)
 *   k=q  hkv=h  dv=d   (the defaults, written out)
 *   no<name>  resets a field to its default: nocausal, nowin, nowr, nosoftcap, noalibi, nosinks,
 *             nolse, noscale, novarlen
 * Every field may be set once; an unknown token is an error.
 *
 * A decode problem starts with the token `decode` (decode.c builds its inputs):
 *   decode_b4_h32_hkv8_k131072_d128_bf16_page16
 *   k<N> keys in each sequence's cache (required)   q<N> query rows per sequence [1]
 *   page<N> paged cache with that page size [0 = contiguous]   hnd | nhd [nhd]   csr (FlashInfer
 *   vocabulary instead of seqlens + block_table)   kv<dtype> also takes i8; `i8` alone = f32 Q/O with
 *   an i8 cache   ragged | ragged<lo> (lengths lo + (k - lo) * b / (B - 1), lo = k/16 by default)
 *   prefix<N> shared prefix (cascade)   workers<N> tile<N> (num_workers, tile_n; 0 = auto)
 *   nopage nocsr noragged noprefix: the defaults. Layout (bshd/bhsd), varlen and k=q are dense only.
 *
 * A linear-attention problem starts with the token `linear` (linear.c builds and runs it):
 *   linear_b1_h8_q4096_d128_e64_bf16_decay_state_blk64
 *   q<T> tokens per sequence (required)   d<d> (required)   e<e> = dv<e> [d]   f32|bf16|f16 (q, k, v; and o
 *   unless o<dtype>)   scale<x> [1]   decay | decay<official|minimax|paper> (ak_la_log_decay, layer 0 of 1)
 *   state (random initial state, final state returned)   blk<N> [0 = auto]   ragged | ragged<lo> (as decode)
 *   srms (output SRMSNorm over the heads of a token, ak_la_desc.norm)   gate (a random output gate,
 *   has_gate; backward: d_gate)   rec (the recurrent form)   bwd (the backward pass)
 *   nodecay nostate nosrms nogate norec nobwd noragged: the defaults.
 *   Not for linear problems: hkv, k, causal (always), masks, softcap, alibi, sinks, lse, kv<dtype>, layouts, varlen.
 * A sparse problem is a dense problem (not varlen) plus one pattern token, sp-<kind>-<param>-<param>...
 * (sparse.c parses it; ak_plan_create_sparse runs it), e.g.
 *   b1_h8_hkv2_q4096_k4096_d128_causal_bf16_sp-power-bs256-w5
 * A parameter is its name and value (w512, density0.25, k13x13), a flag its name alone (homo); parameters
 * come in any order, each once; [default] = the library's (ak_*_params_init). The canonical form prints the
 * main parameters always and the others when they differ from the default, and puts the token last.
 *   sp-window   w<tokens> [512]  sink<n> [4]  dil<d> [1]  blk<b> [0 = token-exact; w a multiple of b]
 *               bq<rows> [64]                                       (ak_sparse_window; causal)
 *   sp-strided  l<local> [256]  s<stride> [256]  sink<n> [0]  bq<rows> [64]   (ak_sparse_strided; causal)
 *   sp-power    bs<block> [256]  w<blocks> [5]                      (ak_sparse_power; causal)
 *   sp-na1d / sp-na2d / sp-na3d  <extent> (E, ExE, ExExE; na1d: [q])  k<kernel> (required)  d<dilation> [1]
 *               s<stride> [1]  c<causal 0|1> [0]  t<query tile> [0 = the library's]; a per-axis value is
 *               AxB(xC) or one number for every axis; q = k = the grid's tokens (ak_sparse_neighborhood)
 *   sp-s2       bs<block> [64]  local<blocks> [16]  vs<vert_stride> [8]  homo  dense<n> [0]  off<n> [0]
 *               rel  lr<blocks> [0; rel, not causal]  nofix (fix_coverage 0); heads and causal from the
 *               problem (ak_sparse_s2, one pattern per KV head)
 *   sp-moa      a<alpha> (first)  b<beta> [0]: the same span for every head; or FILE (a MoA plan
 *               {"alphas": [L][H], "betas": [L][H]}, ak_moa_load) then layer<n> [0]; both: new<n>
 *               max_new_tokens [1024]  exact (token_exact) (ak_sparse_moa; causal)
 *   sp-sfattn   g<group> (required: even, divides k; q = k)  sink<n> [4]  slo<h> [Hq/2]  shi<h> [Hq]
 *               (ak_sparse_sfattn, one pattern per query head; causal)
 *   sp-doc      <len>[+<len>...] (required) document lengths, repeated until q tokens are covered (the
 *               last one cut); q = k  bq<rows> [64] (ak_sparse_document; causal from the problem)
 *   sp-blocks   bs<block> [64]  density<x> [0.25]  seed<n> [1]: a random block mask of bs x bs blocks:
 *               of the eligible blocks (causal: those not wholly above the diagonal), round(x * eligible)
 *               chosen uniformly (seeded), the diagonal blocks always kept when causal
 *               (ak_sparse_block_mask, one head; causal from the problem)
 *   sp-dense    bs<block> [64]: every block (the sparse executor on the full mask)
 *   sp-json     FILE: a saved pattern (ak_sparse_from_json; attnkit plan --json writes one)
 *   nosp        no pattern (the default; for sweeps)
 * FILE (sp-json-FILE, sp-moa-FILE...) runs to the end of the problem string, so it may hold '_', '-' or ',';
 * moa's layer/new/exact are peeled off its end; the inline moa form starts with a<number>.
 * Window, strided, power, moa and sfattn are causal patterns: the problem must say causal (bench times the
 * dense kernel with the problem's own masks). The problem's masks (window, softcap, ALiBi, sinks, LSE) apply
 * on top of the pattern.
 *
 * A sweep spec puts comma lists in tokens: hkv8,2 = hkv8 | hkv2 ("hkv" carries over to an
 * alternative that starts with a digit, '.' or '-'); causal,nocausal; f32,bf16. Every
 * combination of alternatives is one problem, the first token varying slowest. In a sparse token a
 * numeric alternative (digit or '.') replaces the value of the last parameter (sp-window-sink4-w256,512;
 * sp-doc-512,1024), any other is a whole token (sp-power-bs256,sp-window-w512,nosp); a file token is
 * split only when every later alternative is numeric (sp-moa-FILE-layer0,1,2).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define ALT_LEN 320   /* one alternative of a sweep token (a sparse file token holds a path) */

enum field {
    F_B, F_H, F_HKV, F_Q, F_K, F_D, F_DV, F_CAUSAL, F_WIN, F_WR, F_SOFTCAP, F_ALIBI, F_SINKS, F_LSE,
    F_SCALE, F_DTYPE, F_KVDTYPE, F_ODTYPE, F_LAYOUT, F_VARLEN, F_SPARSE,
    F_DECODE, F_PAGE, F_PLAYOUT, F_VOCAB, F_RAGGED, F_PREFIX, F_WORKERS, F_TILE,
    F_LINEAR, F_DECAY, F_STATE, F_BLK, F_REC, F_BWD, F_NORM, F_GATE, F_COUNT
};

/* The kinds of problem a field applies to. */
enum { K_DENSE = 1, K_DECODE = 2, K_LINEAR = 4 };

static int field_kinds(int f) {
    if (f >= F_LINEAR) return K_LINEAR;
    if (f == F_RAGGED) return K_DECODE | K_LINEAR;
    if (f >= F_DECODE) return K_DECODE;
    switch (f) {
    case F_B: case F_H: case F_Q: case F_D: case F_DV: case F_SCALE: case F_DTYPE: case F_ODTYPE:
        return K_DENSE | K_DECODE | K_LINEAR;
    case F_LAYOUT: case F_VARLEN: case F_SPARSE: return K_DENSE;
    default: return K_DENSE | K_DECODE;
    }
}

static const char *field_name[F_COUNT] = {
    "b", "h", "hkv", "q", "k", "d", "dv", "causal", "win", "wr", "softcap", "alibi", "sinks", "lse",
    "scale", "dtype", "kv<dtype>", "o<dtype>", "layout", "varlen", "the sparse pattern (sp-...)",
    "decode", "page", "page layout", "csr", "ragged", "prefix", "workers", "tile",
    "linear", "decay", "state", "blk", "rec", "bwd", "norm", "gate"};

/* Integer-valued prefixed tokens, in match order ("hkv" before "h", "dv" before "d", "blk" before "b"). */
static const struct { const char *prefix; enum field f; long lo; } int_tokens[] = {
    {"hkv", F_HKV, 1}, {"h", F_H, 1}, {"dv", F_DV, 1}, {"d", F_D, 1}, {"e", F_DV, 1}, {"blk", F_BLK, 0}, {"b", F_B, 1},
    {"q", F_Q, 0},     {"k", F_K, 0}, {"win", F_WIN, 0}, {"wr", F_WR, 0},
    {"page", F_PAGE, 0}, {"prefix", F_PREFIX, 0}, {"workers", F_WORKERS, 0}, {"tile", F_TILE, 0},
    {"ragged", F_RAGGED, 0}};

/* "no<name>" tokens: reset the field to its default. */
static const struct { const char *name; enum field f; } no_tokens[] = {
    {"nocausal", F_CAUSAL}, {"nowin", F_WIN},   {"nowr", F_WR},       {"nosoftcap", F_SOFTCAP},
    {"noalibi", F_ALIBI},   {"nosinks", F_SINKS}, {"nolse", F_LSE},   {"noscale", F_SCALE},
    {"novarlen", F_VARLEN}, {"nopage", F_PAGE}, {"nocsr", F_VOCAB}, {"noragged", F_RAGGED},
    {"noprefix", F_PREFIX}, {"nodecay", F_DECAY}, {"nostate", F_STATE}, {"norec", F_REC}, {"nobwd", F_BWD},
    {"nosrms", F_NORM},     {"nogate", F_GATE},   {"nosp", F_SPARSE}};

static int parse_dtype(const char *s, ak_dtype *out) {
    if (strcmp(s, "f32") == 0) *out = AK_F32;
    else if (strcmp(s, "bf16") == 0) *out = AK_BF16;
    else if (strcmp(s, "f16") == 0) *out = AK_F16;
    else return -1;
    return 0;
}

/* K/V dtypes: those of Q plus i8 (decode caches only; checked in problem_parse). */
static int parse_kv_dtype(const char *s, ak_dtype *out) {
    if (strcmp(s, "i8") == 0) { *out = AK_I8; return 0; }
    return parse_dtype(s, out);
}

static void problem_defaults(problem *p) {
    memset(p, 0, sizeof(*p));
    p->B = 1;
    p->Hq = 1;
    p->win_left = p->win_right = -1;
    p->scale = NAN;
    p->dt_q = p->dt_kv = p->dt_o = AK_F32;
    p->ragged_lo = -1;
    p->decay = -1;
}

/* Apply one token; returns the field it sets, or -1 (message in err). */
static int apply_token(const char *tok, problem *p, int *seen_rel, char *err, size_t errlen) {
    if (strncmp(tok, "sp-", 3) == 0) return sp_parse(tok, &p->sp, err, errlen) == 0 ? F_SPARSE : -1;
    if (strcmp(tok, "causal") == 0) { p->causal = 1; return F_CAUSAL; }
    if (strcmp(tok, "alibi") == 0) { p->alibi = 1; return F_ALIBI; }
    if (strcmp(tok, "sinks") == 0) { p->sinks = 1; return F_SINKS; }
    if (strcmp(tok, "lse") == 0) { p->lse = 1; return F_LSE; }
    if (strcmp(tok, "varlen") == 0) { p->varlen = 1; return F_VARLEN; }
    if (strcmp(tok, "bshd") == 0) { p->bshd = 1; return F_LAYOUT; }
    if (strcmp(tok, "bhsd") == 0) { p->bshd = 0; return F_LAYOUT; }
    if (strcmp(tok, "decode") == 0) { p->decode = 1; return F_DECODE; }
    if (strcmp(tok, "nhd") == 0) { p->hnd = 0; return F_PLAYOUT; }
    if (strcmp(tok, "hnd") == 0) { p->hnd = 1; return F_PLAYOUT; }
    if (strcmp(tok, "csr") == 0) { p->csr = 1; return F_VOCAB; }
    if (strcmp(tok, "ragged") == 0) { p->ragged = 1; return F_RAGGED; }
    if (strcmp(tok, "linear") == 0) { p->linear = 1; return F_LINEAR; }
    if (strcmp(tok, "state") == 0) { p->state = 1; return F_STATE; }
    if (strcmp(tok, "rec") == 0) { p->rec = 1; return F_REC; }
    if (strcmp(tok, "bwd") == 0) { p->bwd = 1; return F_BWD; }
    if (strcmp(tok, "srms") == 0) { p->norm = AK_LA_NORM_SRMS; return F_NORM; }
    if (strcmp(tok, "gate") == 0) { p->gate = 1; return F_GATE; }
    if (strncmp(tok, "decay", 5) == 0) {
        static const char *modes[] = {"", "official", "minimax", "paper"};   /* "" = official */
        for (int m = 0; m < 4; m++)
            if (strcmp(tok + 5, modes[m]) == 0) { p->decay = m ? m - 1 : AK_LA_DECAY_OFFICIAL; return F_DECAY; }
        snprintf(err, errlen, "unknown decay '%.200s' (decay, decayofficial, decayminimax, decaypaper)", tok);
        return -1;
    }
    if (strcmp(tok, "i8") == 0) { p->dt_q = AK_F32; p->dt_kv = AK_I8; seen_rel[3] = 1; return F_DTYPE; }
    if (parse_dtype(tok, &p->dt_q) == 0) return F_DTYPE;
    if (strcmp(tok, "k=q") == 0) { seen_rel[0] = 1; return F_K; }
    if (strcmp(tok, "hkv=h") == 0) { seen_rel[1] = 1; return F_HKV; }
    if (strcmp(tok, "dv=d") == 0) { seen_rel[2] = 1; return F_DV; }
    for (size_t i = 0; i < sizeof(no_tokens) / sizeof(no_tokens[0]); i++)
        if (strcmp(tok, no_tokens[i].name) == 0) return no_tokens[i].f;   /* defaults already set */
    if (strncmp(tok, "kv", 2) == 0 && parse_kv_dtype(tok + 2, &p->dt_kv) == 0) return F_KVDTYPE;
    if (tok[0] == 'o' && parse_dtype(tok + 1, &p->dt_o) == 0) return F_ODTYPE;
    if (strncmp(tok, "softcap", 7) == 0 && parse_float(tok + 7, &p->softcap) == 0) {
        if (p->softcap < 0) { snprintf(err, errlen, "softcap must be >= 0 in '%.200s'", tok); return -1; }
        return F_SOFTCAP;
    }
    if (strncmp(tok, "scale", 5) == 0 && parse_float(tok + 5, &p->scale) == 0) return F_SCALE;
    for (size_t i = 0; i < sizeof(int_tokens) / sizeof(int_tokens[0]); i++) {
        size_t n = strlen(int_tokens[i].prefix);
        int v;
        if (strncmp(tok, int_tokens[i].prefix, n) != 0) continue;
        if (parse_int(tok + n, int_tokens[i].lo, 2147483647L, &v) != 0) continue;
        int *dst[F_COUNT] = {0};
        dst[F_B] = &p->B; dst[F_H] = &p->Hq; dst[F_HKV] = &p->Hkv; dst[F_Q] = &p->Lq;
        dst[F_K] = &p->Lk; dst[F_D] = &p->d; dst[F_DV] = &p->dv; dst[F_WIN] = &p->win_left;
        dst[F_WR] = &p->win_right; dst[F_PAGE] = &p->page; dst[F_PREFIX] = &p->prefix;
        dst[F_WORKERS] = &p->workers; dst[F_TILE] = &p->tile; dst[F_RAGGED] = &p->ragged_lo;
        dst[F_BLK] = &p->blk;
        *dst[int_tokens[i].f] = v;
        if (int_tokens[i].f == F_RAGGED) p->ragged = 1;
        return int_tokens[i].f;
    }
    snprintf(err, errlen, "unknown token '%.200s'", tok);
    return -1;
}

/*
 * The next '_'-separated token of *cur (NULL at the end; empty tokens are skipped, as strtok does). A file token
 * (sp-json-FILE, sp-moa-FILE...) runs to the end of the string, so FILE may hold '_', '-' and ','.
 */
static char *next_token(char **cur) {
    char *t = *cur;
    while (t && *t == '_') t++;
    if (!t || !*t) { *cur = NULL; return NULL; }
    if (sp_is_file_token(t)) { *cur = NULL; return t; }
    char *u = strchr(t, '_');
    if (u) { *u = '\0'; *cur = u + 1; }
    else *cur = NULL;
    return t;
}

/* Parse one problem string (no comma lists). 0 = ok; else -1 with a message in err. */
int problem_parse(const char *s, problem *p, char *err, size_t errlen) {
    char buf[1024];
    int seen[F_COUNT] = {0}, rel[4] = {0, 0, 0, 0}, n_tok = 0;
    if (strlen(s) >= sizeof(buf)) { snprintf(err, errlen, "problem string too long"); return -1; }
    snprintf(buf, sizeof(buf), "%s", s);
    problem_defaults(p);
    p->Hkv = p->Lk = p->dv = -1;    /* -1 = "same as" until resolved below */
    char *cur = buf;
    for (char *tok = next_token(&cur); tok; tok = next_token(&cur), n_tok++) {
        char msg[512];
        int f = apply_token(tok, p, rel, msg, sizeof(msg));
        if (f < 0) { snprintf(err, errlen, "%s in problem '%s'", msg, s); return -1; }
        if (seen[f] && f == F_SPARSE) {
            snprintf(err, errlen, "token '%s': a problem has one sparse pattern, in problem '%s'", tok, s);
            return -1;
        }
        if (seen[f]) {
            snprintf(err, errlen, "token '%s' sets %s a second time in problem '%s'", tok, field_name[f], s);
            return -1;
        }
        if ((f == F_DECODE || f == F_LINEAR) && n_tok > 0) {
            snprintf(err, errlen, "'%s' must be the first token, in problem '%s'", tok, s);
            return -1;
        }
        int kind = p->decode ? K_DECODE : p->linear ? K_LINEAR : K_DENSE, kinds = field_kinds(f);
        if (kind == K_LINEAR && !(kinds & K_LINEAR)) {
            const char *why = f == F_VARLEN ? " (ragged lengths: ragged)" : f == F_CAUSAL ? " (always causal)"
                            : f == F_KVDTYPE ? " (q, k and v share one dtype)" : f == F_K ? " (k = q)"
                            : f == F_HKV ? " (one k/v head per head)" : "";
            snprintf(err, errlen, "token '%s' does not apply to linear-attention problems%s, in problem '%s'", tok, why, s);
            return -1;
        }
        if (kind != K_LINEAR && kinds == K_LINEAR) {
            snprintf(err, errlen, "token '%s' is for linear-attention problems only (linear_...), in problem '%s'", tok, s);
            return -1;
        }
        if (kind == K_DENSE && !(kinds & K_DENSE)) {
            snprintf(err, errlen, "token '%s' is for decode%s problems only (decode_...%s), in problem '%s'", tok,
                     kinds & K_LINEAR ? " and linear" : "", kinds & K_LINEAR ? ", linear_..." : "", s);
            return -1;
        }
        if (p->decode && (f == F_LAYOUT || f == F_VARLEN || f == F_SPARSE || (f == F_K && rel[0]))) {
            snprintf(err, errlen, "token '%s' does not apply to decode problems%s, in problem '%s'", tok,
                     f == F_VARLEN ? " (ragged lengths: ragged)" : "", s);
            return -1;
        }
        seen[f] = 1;
    }
    if (p->decode ? !seen[F_K] || !seen[F_D] : !seen[F_Q] || !seen[F_D]) {
        snprintf(err, errlen, p->decode ? "decode problem '%s' needs k<cache length> and d<head_dim>"
                            : p->linear ? "linear-attention problem '%s' needs q<tokens> and d<head_dim>"
                                        : "problem '%s' needs q<Lq> and d<head_dim>", s);
        return -1;
    }
    if (p->linear && rel[3]) {
        snprintf(err, errlen, "i8 does not apply to linear-attention problems (f32, bf16, f16), in problem '%s'", s);
        return -1;
    }
    if (p->linear && p->rec && p->bwd) {
        snprintf(err, errlen, "'rec' and 'bwd' together: the backward pass has the chunked form only, in problem '%s'", s);
        return -1;
    }
    if (rel[3] && seen[F_KVDTYPE]) {
        snprintf(err, errlen, "'i8' already sets the KV dtype (write f32_kv<dtype>), in problem '%s'", s);
        return -1;
    }
    if (p->Hkv < 0 || rel[1]) p->Hkv = p->Hq;
    if (p->decode && !seen[F_Q]) p->Lq = 1;
    if (p->Lk < 0 || rel[0]) p->Lk = p->Lq;
    if (p->dv < 0 || rel[2]) p->dv = p->d;
    if (!seen[F_KVDTYPE] && !rel[3]) p->dt_kv = p->dt_q;
    if (!seen[F_ODTYPE]) p->dt_o = p->dt_q;
    if (p->dt_kv == AK_I8 && !p->decode) {
        snprintf(err, errlen, "i8 K/V is for decode problems only (KV caches), in problem '%s'", s);
        return -1;
    }
    if (p->dt_o == AK_I8) {
        snprintf(err, errlen, "o<dtype> must be f32, bf16 or f16, in problem '%s'", s);
        return -1;
    }
    if (p->decode && p->page == 0 && (p->hnd || p->csr)) {
        snprintf(err, errlen, "'%s' needs a paged cache (page<N>), in problem '%s'", p->hnd ? "hnd" : "csr", s);
        return -1;
    }
    if (p->ragged && p->ragged_lo > p->Lk) {
        snprintf(err, errlen, "ragged%d: the shortest length is above %s%d, in problem '%s'", p->ragged_lo,
                 p->linear ? "q" : "k", p->Lk, s);
        return -1;
    }
    if (p->sp.kind != SP_NONE) {
        char msg[512];
        if (sp_validate(p, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s, in problem '%s'", msg, s);
            return -1;
        }
    }
    return 0;
}

/* Canonical string of a linear-attention problem: linear_b h q d [e] [scale] dtype [o<dtype>] [decay] [state]
 * [srms] [gate] [blk] [ragged] [rec] [bwd]. */
static void linear_format(const problem *p, char *buf, size_t len) {
    static const char *decay[] = {"decay", "decayminimax", "decaypaper"};
    char x[64];
    size_t n = (size_t)snprintf(buf, len, "linear_b%d_h%d_q%d_d%d", p->B, p->Hq, p->Lq, p->d);
    if (p->dv != p->d && n < len) n += (size_t)snprintf(buf + n, len - n, "_e%d", p->dv);
    if (!isnan(p->scale) && n < len) {
        format_float(p->scale, x, sizeof(x));
        n += (size_t)snprintf(buf + n, len - n, "_scale%s", x);
    }
    if (n < len) n += (size_t)snprintf(buf + n, len - n, "_%s", ak_dtype_name(p->dt_q));
    if (p->dt_o != p->dt_q && n < len) n += (size_t)snprintf(buf + n, len - n, "_o%s", ak_dtype_name(p->dt_o));
    if (p->decay >= 0 && p->decay <= 2 && n < len) n += (size_t)snprintf(buf + n, len - n, "_%s", decay[p->decay]);
    if (p->state && n < len) n += (size_t)snprintf(buf + n, len - n, "_state");
    if (p->norm == AK_LA_NORM_SRMS && n < len) n += (size_t)snprintf(buf + n, len - n, "_srms");
    if (p->gate && n < len) n += (size_t)snprintf(buf + n, len - n, "_gate");
    if (p->blk && n < len) n += (size_t)snprintf(buf + n, len - n, "_blk%d", p->blk);
    if (p->ragged && p->ragged_lo < 0 && n < len) n += (size_t)snprintf(buf + n, len - n, "_ragged");
    if (p->ragged && p->ragged_lo >= 0 && n < len) n += (size_t)snprintf(buf + n, len - n, "_ragged%d", p->ragged_lo);
    if (p->rec && n < len) n += (size_t)snprintf(buf + n, len - n, "_rec");
    if (p->bwd && n < len) snprintf(buf + n, len - n, "_bwd");
}

/* The canonical problem string; parsing it gives back the same problem. */
void problem_format(const problem *p, char *buf, size_t len) {
    char x[64];
    size_t n = 0;
    if (p->linear) {
        linear_format(p, buf, len);
        return;
    }
    n += (size_t)snprintf(buf + n, len - n, "%sb%d_h%d_hkv%d_q%d_k%d_d%d", p->decode ? "decode_" : "", p->B,
                          p->Hq, p->Hkv, p->Lq, p->Lk, p->d);
    if (p->dv != p->d && n < len) n += (size_t)snprintf(buf + n, len - n, "_dv%d", p->dv);
    if (p->causal && n < len) n += (size_t)snprintf(buf + n, len - n, "_causal");
    if (p->win_left >= 0 && n < len) n += (size_t)snprintf(buf + n, len - n, "_win%d", p->win_left);
    if (p->win_right >= 0 && n < len) n += (size_t)snprintf(buf + n, len - n, "_wr%d", p->win_right);
    if (p->softcap != 0 && n < len) {
        format_float(p->softcap, x, sizeof(x));
        n += (size_t)snprintf(buf + n, len - n, "_softcap%s", x);
    }
    if (p->alibi && n < len) n += (size_t)snprintf(buf + n, len - n, "_alibi");
    if (p->sinks && n < len) n += (size_t)snprintf(buf + n, len - n, "_sinks");
    if (p->lse && n < len) n += (size_t)snprintf(buf + n, len - n, "_lse");
    if (!isnan(p->scale) && n < len) {
        format_float(p->scale, x, sizeof(x));
        n += (size_t)snprintf(buf + n, len - n, "_scale%s", x);
    }
    if (n < len) n += (size_t)snprintf(buf + n, len - n, "_%s", ak_dtype_name(p->dt_q));
    if (p->dt_kv != p->dt_q && n < len) n += (size_t)snprintf(buf + n, len - n, "_kv%s", ak_dtype_name(p->dt_kv));
    if (p->dt_o != p->dt_q && n < len) n += (size_t)snprintf(buf + n, len - n, "_o%s", ak_dtype_name(p->dt_o));
    if (p->bshd && n < len) n += (size_t)snprintf(buf + n, len - n, "_bshd");
    if (p->varlen && n < len) n += (size_t)snprintf(buf + n, len - n, "_varlen");
    if (p->sp.kind != SP_NONE && n < len) {   /* last: a file token runs to the end of the string */
        char t[1024];
        sp_format(&p->sp, t, sizeof(t));
        n += (size_t)snprintf(buf + n, len - n, "_%s", t);
    }
    if (!p->decode) return;
    if (p->page && n < len) n += (size_t)snprintf(buf + n, len - n, "_page%d", p->page);
    if (p->hnd && n < len) n += (size_t)snprintf(buf + n, len - n, "_hnd");
    if (p->csr && n < len) n += (size_t)snprintf(buf + n, len - n, "_csr");
    if (p->ragged && p->ragged_lo < 0 && n < len) n += (size_t)snprintf(buf + n, len - n, "_ragged");
    if (p->ragged && p->ragged_lo >= 0 && n < len) n += (size_t)snprintf(buf + n, len - n, "_ragged%d", p->ragged_lo);
    if (p->prefix && n < len) n += (size_t)snprintf(buf + n, len - n, "_prefix%d", p->prefix);
    if (p->workers && n < len) n += (size_t)snprintf(buf + n, len - n, "_workers%d", p->workers);
    if (p->tile && n < len) snprintf(buf + n, len - n, "_tile%d", p->tile);
}

void problem_list_free(char **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

/* The sweep prefix of a sparse token: everything before the value of its last parameter
 * ("sp-blocks-bs64-density0.25" -> "sp-blocks-bs64-density", "sp-doc-512" -> "sp-doc-"). */
static size_t sp_prefix_len(const char *first, size_t len) {
    size_t dash = len;
    while (dash > 0 && first[dash - 1] != '-') dash--;
    size_t p = dash;
    while (p < len && first[p] >= 'a' && first[p] <= 'z') p++;
    return p;
}

static int is_numeric_alt(const char *s) { return (s[0] >= '0' && s[0] <= '9') || s[0] == '.'; }

/* Alternatives of one sweep token: "hkv8,2" -> {"hkv8", "hkv2"}. Returns the count, or -1.
 * A sparse token's numeric alternative replaces the value of its last parameter (sp-window-sink4-w512,1024);
 * a file token (sp-json-FILE, sp-moa-FILE...) splits only when every later alternative is numeric. */
static int split_alternatives(const char *tok, char alts[][ALT_LEN], int max, char *err, size_t errlen) {
    size_t plen = strcspn(tok, "0123456789.-");   /* prefix of the first alternative */
    int n = 0, sparse = strncmp(tok, "sp-", 3) == 0;
    if (sparse) {
        size_t first = strcspn(tok, ",");
        plen = sp_prefix_len(tok, first);
        if (sp_is_file_token(tok))
            for (const char *c = strchr(tok, ','); c; c = strchr(c + 1, ','))
                if (!is_numeric_alt(c + 1)) {   /* a ',' of the file name: one alternative */
                    if (strlen(tok) >= ALT_LEN) { snprintf(err, errlen, "token too long: '%s'", tok); return -1; }
                    snprintf(alts[0], ALT_LEN, "%s", tok);
                    return 1;
                }
    }
    const char *s = tok;
    for (;;) {
        size_t len = strcspn(s, ",");
        if (len == 0) { snprintf(err, errlen, "empty alternative in '%s'", tok); return -1; }
        if (n == max) { snprintf(err, errlen, "too many alternatives in '%s'", tok); return -1; }
        int numeric = sparse ? is_numeric_alt(s) : (s[0] >= '0' && s[0] <= '9') || s[0] == '.' || s[0] == '-';
        if ((numeric && n > 0 ? plen : 0) + len >= ALT_LEN) {
            snprintf(err, errlen, "token too long: '%s'", tok);
            return -1;
        }
        if (numeric && n > 0)
            snprintf(alts[n], ALT_LEN, "%.*s%.*s", (int)plen, tok, (int)len, s);
        else
            snprintf(alts[n], ALT_LEN, "%.*s", (int)len, s);
        n++;
        if (s[len] == '\0') break;
        s += len + 1;
    }
    return n;
}

/*
 * Expand a sweep spec into problem strings (each still to be parsed). The first token varies
 * slowest. *out is a malloc'ed array of malloc'ed strings. 0 = ok; else -1 with a message.
 */
int problem_expand(const char *spec, char ***out, int *n_out, char *err, size_t errlen) {
    enum { MAX_TOK = 32, MAX_ALT = 32, MAX_COMBOS = 100000 };
    static char alts[MAX_TOK][MAX_ALT][ALT_LEN];
    int n_alt[MAX_TOK], n_tok = 0;
    char buf[1024];
    *out = NULL;
    *n_out = 0;
    if (strlen(spec) >= sizeof(buf)) { snprintf(err, errlen, "problem spec too long"); return -1; }
    snprintf(buf, sizeof(buf), "%s", spec);
    char *cur = buf;
    long combos = 1;
    for (char *tok = next_token(&cur); tok; tok = next_token(&cur)) {
        if (n_tok == MAX_TOK) { snprintf(err, errlen, "too many tokens in '%s'", spec); return -1; }
        n_alt[n_tok] = split_alternatives(tok, alts[n_tok], MAX_ALT, err, errlen);
        if (n_alt[n_tok] < 0) return -1;
        combos *= n_alt[n_tok];
        if (combos > MAX_COMBOS) { snprintf(err, errlen, "'%s' expands to more than %d problems", spec, MAX_COMBOS); return -1; }
        n_tok++;
    }
    if (n_tok == 0) { snprintf(err, errlen, "empty problem string"); return -1; }
    char **list = calloc((size_t)combos, sizeof(char *));
    if (!list) { snprintf(err, errlen, "out of memory"); return -1; }
    for (long c = 0; c < combos; c++) {
        char s[1024];
        size_t n = 0;
        long rest = c;
        int pick[MAX_TOK];
        for (int t = n_tok - 1; t >= 0; t--) {   /* last token varies fastest */
            pick[t] = (int)(rest % n_alt[t]);
            rest /= n_alt[t];
        }
        s[0] = '\0';
        for (int t = 0; t < n_tok && n < sizeof(s); t++)
            n += (size_t)snprintf(s + n, sizeof(s) - n, "%s%s", t ? "_" : "", alts[t][pick[t]]);
        list[c] = strdup(s);
        if (!list[c]) { problem_list_free(list, (int)c); snprintf(err, errlen, "out of memory"); return -1; }
    }
    *out = list;
    *n_out = (int)combos;
    return 0;
}

/*
 * Expand and parse every problem spec of the command line. On success *out holds n problems
 * (malloc'ed); on error the message is printed and -1 returned (nothing is run: exit 2).
 */
int problems_from_args(char **specs, int n_specs, problem **out, int *n_out) {
    problem *all = NULL;
    int n = 0;
    for (int s = 0; s < n_specs; s++) {
        char err[512], **list = NULL;
        int m = 0;
        if (problem_expand(specs[s], &list, &m, err, sizeof(err)) != 0) {
            fprintf(stderr, "attnkit: %s\n", err);
            free(all);
            return -1;
        }
        problem *grown = realloc(all, sizeof(problem) * (size_t)(n + m));
        if (!grown) { problem_list_free(list, m); free(all); fprintf(stderr, "attnkit: out of memory\n"); return -1; }
        all = grown;
        for (int i = 0; i < m; i++)
            if (problem_parse(list[i], &all[n + i], err, sizeof(err)) != 0) {
                fprintf(stderr, "attnkit: %s\n", err);
                problem_list_free(list, m);
                free(all);
                return -1;
            }
        n += m;
        problem_list_free(list, m);
    }
    *out = all;
    *n_out = n;
    return 0;
}
