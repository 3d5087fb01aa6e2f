/*
 * sparse.c — sparse patterns on dense problems: the sp-<kind>-<param>... token of a problem string
 * (parse, check against the problem's shape, print back) and the ak_sparse it builds for the problem.
 * The grammar (every kind, parameter and default) is in problem.c's header comment and docs/CLI.md.
 *
 * A parameter is a name (letters) followed by its value: w512, density0.25, k13x13 (one value per axis,
 * or one for every axis), c1x0; a flag is the name alone (homo, rel, exact); a bare value has no name
 * (na's extent 64x64, doc's lengths 512+1000+3000). Parameters may come in any order, each at most once;
 * the canonical form prints them in the order of the tables below, the main ones always and the others
 * only when they differ from their default. Defaults are the library's own (ak_*_params_init).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct sp_param {
    const char *name;   /* the letters before the value; "" = a bare value */
    char type;          /* 'i' int, 'f' float, 'b' flag (no value), 'x' one int per axis ("13x13" or "13"), 'l' '+' list */
    size_t off;         /* offsetof(sp_spec, field) */
    long lo, hi;        /* range of every value (floats: lo <= x <= hi) */
    int always;         /* printed even at its default */
} sp_param;

#define O(f) offsetof(sp_spec, f)
#define BIG INT_MAX

static const sp_param p_window[] = {{"w", 'i', O(w), 1, BIG, 1},      {"sink", 'i', O(sink), 0, BIG, 1},
                                    {"dil", 'i', O(dil), 1, BIG, 0},  {"blk", 'i', O(blk), 0, BIG, 0},
                                    {"bq", 'i', O(bq), 1, BIG, 0}};
static const sp_param p_strided[] = {{"l", 'i', O(local), 1, BIG, 1}, {"s", 'i', O(stride), 1, BIG, 1},
                                     {"sink", 'i', O(sink), 0, BIG, 0}, {"bq", 'i', O(bq), 1, BIG, 0}};
static const sp_param p_power[] = {{"bs", 'i', O(bs), 1, BIG, 1}, {"w", 'i', O(w), 1, BIG, 1}};
static const sp_param p_na[] = {{"", 'x', O(ext), 1, BIG, 1},    {"k", 'x', O(ker), 1, BIG, 1},
                                {"d", 'x', O(ndil), 1, BIG, 0},  {"s", 'x', O(nstr), 1, BIG, 0},
                                {"c", 'x', O(ncau), 0, 1, 0},    {"t", 'x', O(tile), 0, BIG, 0}};
static const sp_param p_s2[] = {{"bs", 'i', O(bs), 1, BIG, 1},      {"local", 'i', O(s2local), 1, BIG, 1},
                                {"vs", 'i', O(vs), 1, BIG, 1},      {"homo", 'b', O(homo), 0, 1, 0},
                                {"dense", 'i', O(ndense), 0, BIG, 0}, {"off", 'i', O(off), 0, BIG, 0},
                                {"rel", 'b', O(rel), 0, 1, 0},      {"lr", 'i', O(lr), 0, BIG, 0},
                                {"nofix", 'b', O(nofix), 0, 1, 0}};
static const sp_param p_moa_inline[] = {{"a", 'f', O(alpha), 0, BIG, 1}, {"b", 'f', O(beta), 0, BIG, 1},
                                        {"new", 'i', O(newtok), 0, BIG, 0}, {"exact", 'b', O(exact), 0, 1, 0}};
static const sp_param p_moa_file[] = {{"layer", 'i', O(layer), 0, BIG, 1}, {"new", 'i', O(newtok), 0, BIG, 0},
                                      {"exact", 'b', O(exact), 0, 1, 0}};
static const sp_param p_sfattn[] = {{"g", 'i', O(group), 2, BIG, 1},  {"sink", 'i', O(sink), 0, BIG, 1},
                                    {"slo", 'i', O(slo), 0, BIG, 0},  {"shi", 'i', O(shi), 0, BIG, 0}};
static const sp_param p_doc[] = {{"", 'l', O(doc), 1, BIG, 1}, {"bq", 'i', O(bq), 1, BIG, 0}};
static const sp_param p_blocks[] = {{"bs", 'i', O(bs), 1, BIG, 1}, {"density", 'f', O(density), 0, 1, 1},
                                    {"seed", 'i', O(seed), 0, BIG, 1}};
static const sp_param p_dense[] = {{"bs", 'i', O(bs), 1, BIG, 1}};

#define N_OF(a) (int)(sizeof(a) / sizeof((a)[0]))

static const struct sp_kind_info {
    const char *name;
    int kind, ndim;
    const sp_param *params;
    int n_params;
    const char *usage;   /* for error messages */
} kinds[] = {
    {"window", SP_WINDOW, 0, p_window, N_OF(p_window), "sp-window-w<tokens>-sink<n>[-dil<d>][-blk<b>][-bq<rows>]"},
    {"strided", SP_STRIDED, 0, p_strided, N_OF(p_strided), "sp-strided-l<local>-s<stride>[-sink<n>][-bq<rows>]"},
    {"na1d", SP_NA, 1, p_na, N_OF(p_na), "sp-na1d[-<extent>]-k<kernel>[-d<dil>][-s<stride>][-c<0|1>][-t<tile>]"},
    {"na2d", SP_NA, 2, p_na, N_OF(p_na), "sp-na2d-<E0>x<E1>-k<K0>x<K1>[-d..][-s..][-c..][-t..]"},
    {"na3d", SP_NA, 3, p_na, N_OF(p_na), "sp-na3d-<E0>x<E1>x<E2>-k<K0>x<K1>x<K2>[-d..][-s..][-c..][-t..]"},
    {"power", SP_POWER, 0, p_power, N_OF(p_power), "sp-power-bs<block>-w<blocks>"},
    {"s2", SP_S2, 0, p_s2, N_OF(p_s2), "sp-s2-bs<block>-local<blocks>-vs<stride>[-homo][-dense<n>][-off<n>][-rel][-lr<n>][-nofix]"},
    {"moa", SP_MOA, 0, p_moa_inline, N_OF(p_moa_inline), "sp-moa-a<alpha>-b<beta>[-new<n>][-exact] or sp-moa-FILE[-layer<n>][-new<n>][-exact]"},
    {"sfattn", SP_SFATTN, 0, p_sfattn, N_OF(p_sfattn), "sp-sfattn-g<group>-sink<n>[-slo<h>][-shi<h>]"},
    {"doc", SP_DOC, 0, p_doc, N_OF(p_doc), "sp-doc-<len>[+<len>...][-bq<rows>]"},
    {"blocks", SP_BLOCKS, 0, p_blocks, N_OF(p_blocks), "sp-blocks-bs<block>-density<x>-seed<n>"},
    {"dense", SP_DENSE, 0, p_dense, N_OF(p_dense), "sp-dense-bs<block>"},
    {"json", SP_JSON, 0, NULL, 0, "sp-json-FILE"},
};

static const struct sp_kind_info *kind_info(const sp_spec *s) {
    for (int i = 0; i < N_OF(kinds); i++)
        if (kinds[i].kind == s->kind && (s->kind != SP_NA || kinds[i].ndim == s->ndim)) return &kinds[i];
    return NULL;
}

/* The library's defaults for a kind (every field the kind does not use stays 0). */
static void sp_defaults(int kind, int ndim, sp_spec *d) {
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->ndim = ndim;
    switch (kind) {
    case SP_WINDOW: {
        ak_window_params wp;
        ak_window_params_init(&wp);
        d->w = wp.window; d->sink = wp.n_sink; d->dil = wp.dilation; d->blk = wp.block; d->bq = wp.block_q;
        break;
    }
    case SP_STRIDED: {
        ak_strided_params sp;
        ak_strided_params_init(&sp);
        d->local = sp.local; d->stride = sp.stride; d->sink = sp.n_sink; d->bq = sp.block_q;
        break;
    }
    case SP_POWER: {
        ak_power_params pp;
        ak_power_params_init(&pp);
        d->bs = pp.block; d->w = pp.window;
        break;
    }
    case SP_NA: {
        ak_na_params np;
        ak_na_params_init(&np);
        for (int a = 0; a < 3; a++) {
            d->ndil[a] = np.geom.dilation[a] > 0 ? np.geom.dilation[a] : 1;
            d->nstr[a] = np.geom.stride[a] > 0 ? np.geom.stride[a] : 1;
            d->ncau[a] = np.geom.causal[a];
            d->tile[a] = np.q_tile[a];
        }
        break;
    }
    case SP_S2: {
        ak_s2_params s2;
        ak_s2_params_init(&s2);
        d->bs = s2.block; d->s2local = s2.local_blocks; d->vs = s2.vert_stride; d->homo = s2.homo_head;
        d->ndense = s2.num_dense_heads; d->off = s2.head_sliding_offset; d->rel = s2.relative; d->lr = s2.local_right;
        d->nofix = !s2.fix_coverage;
        break;
    }
    case SP_MOA: {
        ak_moa_params mp;
        ak_moa_params_init(&mp);
        d->newtok = mp.max_new_tokens; d->exact = mp.token_exact;
        break;
    }
    case SP_SFATTN: {
        ak_sfattn_params fp;
        ak_sfattn_params_init(&fp);
        d->group = fp.group; d->sink = fp.n_sink; d->slo = fp.shift_lo; d->shi = fp.shift_hi;
        break;
    }
    case SP_DOC: d->bq = 64; break;
    case SP_BLOCKS: d->bs = 64; d->density = 0.25f; d->seed = 1; break;
    case SP_DENSE: d->bs = 64; break;
    default: break;
    }
}

/* Parse "13x13" (or "13" = every axis) into v[0..ndim); 0 = ok. */
static int parse_dims(const char *s, int ndim, long lo, long hi, int *v) {
    char buf[64];
    int n = 0;
    if (strlen(s) >= sizeof(buf)) return -1;
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, "x", &save); t; t = strtok_r(NULL, "x", &save)) {
        if (n == ndim || parse_int(t, lo, hi, &v[n]) != 0) return -1;
        n++;
    }
    if (s[0] == 'x' || s[strlen(s) - 1] == 'x' || strstr(s, "xx")) return -1;
    if (n == 1)
        for (int a = 1; a < ndim; a++) v[a] = v[0];
    else if (n != ndim) return -1;
    return 0;
}

/* Parse a '+' list of lengths into s->doc; 0 = ok. */
static int parse_list(const char *v, sp_spec *s, char *err, size_t errlen) {
    char buf[1024];
    s->n_doc = 0;
    if (strlen(v) >= sizeof(buf) || v[0] == '+' || v[strlen(v) - 1] == '+' || strstr(v, "++")) goto bad;
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
        if (s->n_doc == SP_MAX_DOCS) {
            snprintf(err, errlen, "sp-doc: at most %d lengths (they repeat over the tokens)", SP_MAX_DOCS);
            return -1;
        }
        if (parse_int(t, 1, BIG, &s->doc[s->n_doc]) != 0) goto bad;
        s->n_doc++;
    }
    if (s->n_doc > 0) return 0;
bad:
    snprintf(err, errlen, "sp-doc: bad document lengths '%s' (positive integers joined by '+', e.g. 512+1000+3000)", v);
    return -1;
}

/* Apply one parameter piece ("w512", "homo", "64x64") of kind `ki` to s. 0 = ok; else -1 with a message. */
static int apply_param(const struct sp_kind_info *ki, const sp_param *tab, int n_tab, const char *piece, int *seen,
                       sp_spec *s, char *err, size_t errlen) {
    size_t nl = 0;
    while (piece[nl] >= 'a' && piece[nl] <= 'z') nl++;
    const char *val = piece + nl;
    for (int i = 0; i < n_tab; i++) {
        const sp_param *pa = &tab[i];
        if (strlen(pa->name) != nl || strncmp(pa->name, piece, nl) != 0) continue;
        if (seen[i]) {
            snprintf(err, errlen, "sp-%s: parameter '%s' given twice", ki->name, *pa->name ? pa->name : piece);
            return -1;
        }
        seen[i] = 1;
        char *base = (char *)s;
        int ok;
        switch (pa->type) {
        case 'b':
            ok = *val == '\0';
            if (ok) *(int *)(base + pa->off) = 1;
            break;
        case 'i':
            ok = parse_int(val, pa->lo, pa->hi, (int *)(base + pa->off)) == 0;
            break;
        case 'f': {
            float x;
            ok = parse_float(val, &x) == 0 && x >= (float)pa->lo && x <= (float)pa->hi;
            if (ok) *(float *)(base + pa->off) = x;
            break;
        }
        case 'x':
            ok = parse_dims(val, s->ndim, pa->lo, pa->hi, (int *)(base + pa->off)) == 0;
            break;
        default:   /* 'l' */
            return parse_list(val, s, err, errlen);
        }
        if (!ok) {
            const char *want = pa->type == 'b' ? "a flag: no value"
                             : pa->type == 'f' ? (pa->hi == 1 ? "a number in [0, 1]" : "a number >= 0")
                             : pa->type == 'x' ? (s->ndim == 1 ? "an integer" : s->ndim == 2 ? "<n>x<n> or <n>" : "<n>x<n>x<n> or <n>")
                             : pa->lo > 0 ? "an integer >= 1" : "an integer >= 0";
            if (pa->type == 'x' && pa->hi == 1) want = s->ndim == 1 ? "0 or 1" : "0 or 1 per axis (e.g. 1x0)";
            snprintf(err, errlen, "sp-%s: bad value in '%s' (%s%s: %s)", ki->name, piece, pa->name,
                     pa->type == 'b' ? "" : "<value>", want);
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "sp-%s: unknown parameter '%s' (%s)", ki->name, piece, ki->usage);
    return -1;
}

/* moa's file form: "FILE[-layer<n>][-new<n>][-exact]", the parameters peeled off the end. */
static int parse_moa_file(const struct sp_kind_info *ki, const char *rest, sp_spec *s, char *err, size_t errlen) {
    char buf[1024], msg[256];
    int seen[N_OF(p_moa_file)] = {0};
    if (strlen(rest) >= sizeof(buf)) { snprintf(err, errlen, "sp-moa: file name too long"); return -1; }
    snprintf(buf, sizeof(buf), "%s", rest);
    for (;;) {
        char *dash = strrchr(buf, '-');
        if (!dash || dash == buf) break;
        if (apply_param(ki, p_moa_file, N_OF(p_moa_file), dash + 1, seen, s, msg, sizeof(msg)) != 0) {
            /* a piece named like a parameter (layerX, a repeat) is a mistake, anything else part of the file name */
            size_t nl = 0;
            while (dash[1 + nl] >= 'a' && dash[1 + nl] <= 'z') nl++;
            for (int i = 0; i < N_OF(p_moa_file); i++)
                if (strlen(p_moa_file[i].name) == nl && strncmp(p_moa_file[i].name, dash + 1, nl) == 0) {
                    snprintf(err, errlen, "%s", msg);
                    return -1;
                }
            break;
        }
        *dash = '\0';
    }
    if (buf[0] == '\0' || strlen(buf) >= sizeof(s->file)) {
        snprintf(err, errlen, "sp-moa: %s file name (%s)", buf[0] ? "too long a" : "missing", ki->usage);
        return -1;
    }
    memcpy(s->file, buf, strlen(buf) + 1);   /* fits: checked above */
    s->moa_file = 1;
    return 0;
}

/* The moa token's inline form starts with a<number>: "a1024-b0.25". */
static int moa_inline(const char *rest) {
    return rest[0] == 'a' && ((rest[1] >= '0' && rest[1] <= '9') || rest[1] == '.');
}

int sp_is_file_token(const char *tok) {
    if (strncmp(tok, "sp-json-", 8) == 0) return 1;
    return strncmp(tok, "sp-moa-", 7) == 0 && !moa_inline(tok + 7);
}

int sp_parse(const char *tok, sp_spec *s, char *err, size_t errlen) {
    char buf[1024];
    const char *rest = tok + 3;
    size_t kl = strcspn(rest, "-");
    const struct sp_kind_info *ki = NULL;
    for (int i = 0; i < N_OF(kinds); i++)
        if (strlen(kinds[i].name) == kl && strncmp(kinds[i].name, rest, kl) == 0) ki = &kinds[i];
    if (!ki) {
        snprintf(err, errlen, "unknown sparse pattern '%.*s' in '%s' (window, strided, na1d, na2d, na3d, power, s2, moa, "
                 "sfattn, doc, blocks, dense, json)", (int)kl, rest, tok);
        return -1;
    }
    sp_defaults(ki->kind, ki->ndim, s);
    rest += kl;
    if (*rest == '-' && rest[1] == '\0' && ki->kind != SP_JSON && ki->kind != SP_MOA) {
        snprintf(err, errlen, "sp-%s: empty parameter in '%s' (%s)", ki->name, tok, ki->usage);
        return -1;
    }
    if (*rest == '-') rest++;
    if (ki->kind == SP_JSON) {
        if (*rest == '\0' || strlen(rest) >= sizeof(s->file)) {
            snprintf(err, errlen, "sp-json: %s file name (sp-json-FILE)", *rest ? "too long a" : "missing");
            return -1;
        }
        memcpy(s->file, rest, strlen(rest) + 1);   /* fits: checked above */
        return 0;
    }
    if (ki->kind == SP_MOA && !moa_inline(rest)) {
        if (*rest == '\0') {
            snprintf(err, errlen, "sp-moa: needs a<alpha>[-b<beta>] or a MoA plan file (%s)", ki->usage);
            return -1;
        }
        return parse_moa_file(ki, rest, s, err, errlen);
    }
    if (strlen(rest) >= sizeof(buf)) { snprintf(err, errlen, "sparse token too long"); return -1; }
    snprintf(buf, sizeof(buf), "%s", rest);
    int seen[16] = {0};
    if (rest[0] == '-' || (rest[0] != '\0' && rest[strlen(rest) - 1] == '-') || strstr(rest, "--")) {
        snprintf(err, errlen, "sp-%s: empty parameter in '%s' (%s)", ki->name, tok, ki->usage);
        return -1;
    }
    for (char *save = NULL, *piece = strtok_r(buf, "-", &save); piece; piece = strtok_r(NULL, "-", &save))
        if (apply_param(ki, ki->params, ki->n_params, piece, seen, s, err, errlen) != 0) return -1;
    /* required parameters (no library default) */
    if (ki->kind == SP_NA && !seen[1]) {
        snprintf(err, errlen, "sp-%s needs the kernel size k<K> (%s)", ki->name, ki->usage);
        return -1;
    }
    if (ki->kind == SP_NA && ki->ndim > 1 && !seen[0]) {
        snprintf(err, errlen, "sp-%s needs the grid extent first, e.g. sp-%s-%s (%s)", ki->name, ki->name,
                 ki->ndim == 2 ? "64x64-k13" : "16x16x16-k5", ki->usage);
        return -1;
    }
    if (ki->kind == SP_DOC && s->n_doc == 0) {
        snprintf(err, errlen, "sp-doc needs the document lengths, e.g. sp-doc-512+1000+3000 (%s)", ki->usage);
        return -1;
    }
    return 0;
}

/* Check the pattern against the problem (p is parsed); resolves defaults that depend on it. */
int sp_validate(problem *p, char *err, size_t errlen) {
    sp_spec *s = &p->sp;
    const struct sp_kind_info *ki = kind_info(s);
    const char *kn = ki ? ki->name : "?";
    if (p->varlen) {
        snprintf(err, errlen, "a sparse pattern takes a fixed-length batch (no varlen; sp-doc packs documents)");
        return -1;
    }
    int needs_causal = s->kind == SP_WINDOW || s->kind == SP_STRIDED || s->kind == SP_POWER || s->kind == SP_MOA ||
                       s->kind == SP_SFATTN;
    if (needs_causal && !p->causal) {
        snprintf(err, errlen, "sp-%s is a causal pattern: add 'causal' to the problem (bench compares with the dense "
                 "kernel under the problem's own mask)", kn);
        return -1;
    }
    switch (s->kind) {
    case SP_WINDOW:
        if (s->blk > 0 && s->w % s->blk != 0) {
            snprintf(err, errlen, "sp-window: w%d must be a multiple of blk%d (block-granular window)", s->w, s->blk);
            return -1;
        }
        if (s->blk > 0 && s->dil > 1) {
            snprintf(err, errlen, "sp-window: dil%d is token-exact only (no blk)", s->dil);
            return -1;
        }
        break;
    case SP_NA: {
        long long prod = 1;
        if (s->ext[0] == 0) s->ext[0] = p->Lq;   /* na1d without an extent: the whole sequence */
        for (int a = 0; a < s->ndim; a++) prod *= s->ext[a];
        if (p->Lq != p->Lk || prod != p->Lq) {
            snprintf(err, errlen, "sp-%s: the grid has %lld tokens; the problem needs q = k = %lld (has q%d k%d)", kn, prod,
                     prod, p->Lq, p->Lk);
            return -1;
        }
        for (int a = 0; a < s->ndim; a++) {
            const char *why = s->ker[a] > s->ext[a] ? "kernel above the extent"
                            : (long long)s->ker[a] * s->ndil[a] > s->ext[a] ? "kernel x dilation above the extent"
                            : s->nstr[a] > s->ker[a] ? "stride above the kernel" : NULL;
            if (why) {
                snprintf(err, errlen, "sp-%s, axis %d: %s (extent %d, kernel %d, dilation %d, stride %d)", kn, a, why,
                         s->ext[a], s->ker[a], s->ndil[a], s->nstr[a]);
                return -1;
            }
        }
        break;
    }
    case SP_S2:
        if (s->homo && s->ndense > 0) {
            snprintf(err, errlen, "sp-s2: homo with dense%d (a homogeneous pattern has no dense heads)", s->ndense);
            return -1;
        }
        if (s->ndense > p->Hkv) {
            snprintf(err, errlen, "sp-s2: dense%d is above the problem's %d KV heads", s->ndense, p->Hkv);
            return -1;
        }
        if (s->lr > 0 && (!s->rel || p->causal)) {
            snprintf(err, errlen, "sp-s2: lr%d (right local blocks) needs rel and a problem without causal", s->lr);
            return -1;
        }
        break;
    case SP_SFATTN: {
        int lo = s->slo >= 0 ? s->slo : p->Hq / 2, hi = s->shi >= 0 ? s->shi : p->Hq;
        if (s->group == 0) {
            snprintf(err, errlen, "sp-sfattn needs the group size g<tokens> (%s)", ki->usage);
            return -1;
        }
        if (p->Lq != p->Lk) {
            snprintf(err, errlen, "sp-sfattn is self-attention over one sequence: the problem needs q = k (has q%d k%d)",
                     p->Lq, p->Lk);
            return -1;
        }
        if (s->group % 2 != 0 || p->Lk % s->group != 0) {
            snprintf(err, errlen, "sp-sfattn: g%d must be even and divide k = %d", s->group, p->Lk);
            return -1;
        }
        if (lo > hi || hi > p->Hq) {
            snprintf(err, errlen, "sp-sfattn: the shifted heads [slo, shi) = [%d, %d) must satisfy 0 <= slo <= shi <= h = %d "
                     "(defaults: h/2, h)", lo, hi, p->Hq);
            return -1;
        }
        break;
    }
    case SP_DOC:
        if (p->Lq != p->Lk) {
            snprintf(err, errlen, "sp-doc packs documents into one sequence: the problem needs q = k (has q%d k%d)", p->Lq,
                     p->Lk);
            return -1;
        }
        break;
    default: break;
    }
    if (s->kind == SP_JSON || (s->kind == SP_MOA && s->moa_file)) {
        FILE *f = fopen(s->file, "rb");
        if (!f) {
            snprintf(err, errlen, "sp-%s: cannot read '%s': %s", kn, s->file, strerror(errno));
            return -1;
        }
        fclose(f);
    }
    return 0;
}

/* The canonical token, without the leading '_'. */
void sp_format(const sp_spec *s, char *buf, size_t len) {
    const struct sp_kind_info *ki = kind_info(s);
    size_t n;
    if (!ki) { snprintf(buf, len, "sp-?"); return; }
    n = (size_t)snprintf(buf, len, "sp-%s", ki->name);
    if (s->kind == SP_JSON) {
        if (n < len) snprintf(buf + n, len - n, "-%s", s->file);
        return;
    }
    const sp_param *tab = ki->params;
    int n_tab = ki->n_params;
    if (s->kind == SP_MOA && s->moa_file) {
        if (n < len) n += (size_t)snprintf(buf + n, len - n, "-%s", s->file);
        tab = p_moa_file;
        n_tab = N_OF(p_moa_file);
    }
    sp_spec def;
    sp_defaults(s->kind, s->ndim, &def);
    for (int i = 0; i < n_tab && n < len; i++) {
        const sp_param *pa = &tab[i];
        const char *a = (const char *)s + pa->off, *b = (const char *)&def + pa->off;
        char v[512];
        size_t m = 0;
        v[0] = '\0';
        int differs;
        switch (pa->type) {
        case 'b':
            differs = *(const int *)a != *(const int *)b;
            if (!*(const int *)a) continue;
            break;
        case 'i':
            differs = *(const int *)a != *(const int *)b;
            snprintf(v, sizeof(v), "%d", *(const int *)a);
            break;
        case 'f':
            differs = *(const float *)a != *(const float *)b;
            format_float(*(const float *)a, v, sizeof(v));
            break;
        case 'x':
            differs = memcmp(a, b, sizeof(int) * (size_t)s->ndim) != 0;
            for (int ax = 0; ax < s->ndim && m < sizeof(v); ax++)
                m += (size_t)snprintf(v + m, sizeof(v) - m, "%s%d", ax ? "x" : "", ((const int *)a)[ax]);
            break;
        default:   /* 'l' */
            differs = 1;
            for (int d = 0; d < s->n_doc && m < sizeof(v); d++)
                m += (size_t)snprintf(v + m, sizeof(v) - m, "%s%d", d ? "+" : "", s->doc[d]);
            break;
        }
        if (!differs && !pa->always) continue;
        n += (size_t)snprintf(buf + n, len - n, "-%s%s", pa->name, v);
    }
}

int sp_plan_head(int n_heads, int Hq, int Hkv, int h) {
    if (n_heads == 1) return 0;
    if (n_heads == Hq) return h;
    return h / (Hq / Hkv);
}

/* ---- building the pattern for the problem's shape ---- */

/* A random block mask: among the eligible blocks (causal: not entirely in the future of the query block's last
 * row), round(density x eligible) chosen uniformly (seeded), the diagonal blocks always kept when causal. */
static uint8_t *random_blocks(const problem *p, int bs, float density, int seed, int all, int *n_qb, int *n_kb) {
    int64_t nq = p->Lq, nk = p->Lk;
    int qb = (int)((nq + bs - 1) / bs), kb = (int)((nk + bs - 1) / bs);
    size_t cells = (size_t)qb * (size_t)kb;
    uint8_t *mask = calloc(cells ? cells : 1, 1);
    int64_t *free_cells = malloc(sizeof(int64_t) * (cells ? cells : 1));
    if (!mask || !free_cells) {
        free(mask);
        free(free_cells);
        return NULL;
    }
    int64_t eligible = 0, forced = 0, n_free = 0;
    for (int m = 0; m < qb; m++) {
        int64_t pos0 = (int64_t)m * bs + nk - nq, r1 = (int64_t)(m + 1) * bs;
        if (r1 > nq) r1 = nq;
        int64_t pos1 = r1 - 1 + nk - nq;
        for (int k = 0; k < kb; k++) {
            int64_t c = (int64_t)m * kb + k, j0 = (int64_t)k * bs;
            if (all) { mask[c] = 1; continue; }
            if (p->causal && j0 > pos1) continue;
            eligible++;
            int64_t d0 = pos0 < 0 ? 0 : pos0;
            if (p->causal && pos1 >= 0 && k >= d0 / bs && k <= pos1 / bs) {
                mask[c] = 1;
                forced++;
            } else {
                free_cells[n_free++] = c;
            }
        }
    }
    if (!all) {
        int64_t want = (int64_t)llround((double)density * (double)eligible) - forced;
        uint64_t rng = (uint64_t)seed ^ 0xB10C5EEDull;
        for (int64_t i = 0; i < want && i < n_free; i++) {   /* partial Fisher-Yates */
            int64_t j = i + (int64_t)(rng_next(&rng) % (uint64_t)(n_free - i));
            int64_t t = free_cells[i];
            free_cells[i] = free_cells[j];
            free_cells[j] = t;
            mask[free_cells[i]] = 1;
        }
    }
    free(free_cells);
    *n_qb = qb;
    *n_kb = kb;
    return mask;
}

static int lib_fail(ak_ctx *ctx, ak_status st, const char *fn, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: %s", fn, error_text(ctx, st));
    return -1;
}

int sp_build(ak_ctx *ctx, const problem *p, ak_sparse **out, char *err, size_t errlen) {
    const sp_spec *s = &p->sp;
    ak_status st = AK_OK;
    const char *fn = "?";
    *out = NULL;
    switch (s->kind) {
    case SP_WINDOW: {
        ak_window_params wp;
        ak_window_params_init(&wp);
        wp.window = s->w; wp.n_sink = s->sink; wp.dilation = s->dil; wp.block = s->blk; wp.block_q = s->bq;
        fn = "ak_sparse_window";
        st = ak_sparse_window(ctx, p->Lq, p->Lk, &wp, out);
        break;
    }
    case SP_STRIDED: {
        ak_strided_params sp;
        ak_strided_params_init(&sp);
        sp.local = s->local; sp.stride = s->stride; sp.n_sink = s->sink; sp.block_q = s->bq;
        fn = "ak_sparse_strided";
        st = ak_sparse_strided(ctx, p->Lq, p->Lk, &sp, out);
        break;
    }
    case SP_POWER: {
        ak_power_params pp;
        ak_power_params_init(&pp);
        pp.block = s->bs; pp.window = s->w;
        fn = "ak_sparse_power";
        st = ak_sparse_power(ctx, p->Lq, p->Lk, &pp, out);
        break;
    }
    case SP_NA: {
        ak_na_params np;
        ak_na_params_init(&np);
        np.geom.ndim = s->ndim;
        for (int a = 0; a < s->ndim; a++) {
            np.geom.extent[a] = s->ext[a];
            np.geom.kernel[a] = s->ker[a];
            np.geom.dilation[a] = s->ndil[a];
            np.geom.stride[a] = s->nstr[a];
            np.geom.causal[a] = s->ncau[a];
            np.q_tile[a] = s->tile[a];
        }
        fn = "ak_sparse_neighborhood";
        st = ak_sparse_neighborhood(ctx, &np, out);
        break;
    }
    case SP_S2: {
        ak_s2_params s2;
        ak_s2_params_init(&s2);
        s2.num_heads_q = p->Hq; s2.num_heads_kv = p->Hkv; s2.block = s->bs; s2.local_blocks = s->s2local;
        s2.vert_stride = s->vs; s2.homo_head = s->homo; s2.num_dense_heads = s->ndense; s2.head_sliding_offset = s->off;
        s2.relative = s->rel; s2.local_right = s->lr; s2.causal = p->causal; s2.fix_coverage = !s->nofix;
        fn = "ak_sparse_s2";
        st = ak_sparse_s2(ctx, p->Lq, p->Lk, &s2, out);
        break;
    }
    case SP_MOA: {
        enum { MAX_H = 4096 };
        float *alpha = malloc(sizeof(float) * MAX_H), *beta = malloc(sizeof(float) * MAX_H);
        int32_t nh = 1;
        if (!alpha || !beta) {
            free(alpha);
            free(beta);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        alpha[0] = s->alpha;
        beta[0] = s->beta;
        if (s->moa_file) {
            size_t len = 0;
            char *text = read_file(s->file, &len);
            if (!text) {
                snprintf(err, errlen, "sp-moa: cannot read '%s': %s", s->file, strerror(errno));
                free(alpha);
                free(beta);
                return -1;
            }
            fn = "ak_moa_load";
            st = ak_moa_load(ctx, text, len, s->layer, MAX_H, alpha, beta, &nh);
            free(text);
            if (st == AK_OK && (nh < 1 || nh > MAX_H)) {
                snprintf(err, errlen, "sp-moa: '%s' layer %d has %d heads (1 .. %d supported)", s->file, s->layer, nh, MAX_H);
                free(alpha);
                free(beta);
                return -1;
            }
        }
        if (st == AK_OK) {
            ak_moa_params mp;
            ak_moa_params_init(&mp);
            mp.n_heads = nh; mp.alpha = alpha; mp.beta = beta; mp.max_new_tokens = s->newtok; mp.token_exact = s->exact;
            fn = "ak_sparse_moa";
            st = ak_sparse_moa(ctx, p->Lq, p->Lk, &mp, out);
        }
        free(alpha);
        free(beta);
        break;
    }
    case SP_SFATTN: {
        ak_sfattn_params fp;
        ak_sfattn_params_init(&fp);
        fp.num_heads_q = p->Hq; fp.group = s->group; fp.n_sink = s->sink; fp.shift_lo = s->slo; fp.shift_hi = s->shi;
        fn = "ak_sparse_sfattn";
        st = ak_sparse_sfattn(ctx, p->Lq, p->Lk, &fp, out);
        break;
    }
    case SP_DOC: {
        int64_t n = p->Lq, n_docs = 0;
        for (int64_t pos = 0, i = 0; pos < n; i++, n_docs++) pos += s->doc[i % s->n_doc];
        int32_t *off = malloc(sizeof(int32_t) * (size_t)(n_docs + 1));
        if (!off) { snprintf(err, errlen, "out of memory"); return -1; }
        off[0] = 0;
        for (int64_t i = 0; i < n_docs; i++) {
            int64_t e = off[i] + (int64_t)s->doc[i % s->n_doc];
            off[i + 1] = (int32_t)(e > n ? n : e);
        }
        fn = "ak_sparse_document";
        st = ak_sparse_document(ctx, (int32_t)n, off, (int32_t)n_docs, p->causal, s->bq, out);
        free(off);
        break;
    }
    case SP_BLOCKS:
    case SP_DENSE: {
        int n_qb = 0, n_kb = 0;
        uint8_t *mask = random_blocks(p, s->bs, s->density, s->seed, s->kind == SP_DENSE, &n_qb, &n_kb);
        if (!mask) { snprintf(err, errlen, "out of memory"); return -1; }
        fn = "ak_sparse_block_mask";
        st = ak_sparse_block_mask(ctx, p->Lq, p->Lk, 1, s->bs, s->bs, mask, p->causal, out);
        free(mask);
        break;
    }
    case SP_JSON: {
        size_t len = 0;
        char *text = read_file(s->file, &len);
        if (!text) {
            snprintf(err, errlen, "sp-json: cannot read '%s': %s", s->file, strerror(errno));
            return -1;
        }
        fn = "ak_sparse_from_json";
        st = ak_sparse_from_json(ctx, text, len, out);
        free(text);
        break;
    }
    default:
        snprintf(err, errlen, "internal: no sparse pattern");
        return -1;
    }
    if (st != AK_OK) {
        ak_sparse_destroy(*out);
        *out = NULL;
        return lib_fail(ctx, st, fn, err, errlen);
    }
    return 0;
}
