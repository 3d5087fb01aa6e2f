/* JSON: a small reader (numbers, strings without escapes, arrays, objects, true/false/null) for sparse
 * plan files and MoA plans, and the plan's own JSON form (ak_sparse_to_json / ak_sparse_from_json). */
#include "core/sparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jparser {
    ak_ctx *ctx;
    const char *s;
    size_t n, i;
    ak_json *j;
    ak_status st;
    int depth;
} jparser;

static ak_status jfail(jparser *p, const char *what) {
    if (p->st == AK_OK) p->st = ak__fail(p->ctx, AK_ERR_BAD_PLAN, "JSON: %s at byte %zu", what, p->i);
    return p->st;
}

static void skip_ws(jparser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int32_t new_node(jparser *p, ak_jtype t) {
    ak_json *j = p->j;
    if (j->n == j->cap) {
        int32_t nc = j->cap ? j->cap * 2 : 256;
        if (nc < 0 || nc > (1 << 28)) {
            jfail(p, "too many values");
            return -1;
        }
        ak_jval *nv = (ak_jval *)ak__alloc(p->ctx, sizeof(ak_jval) * (size_t)nc);
        if (!nv) {
            p->st = ak__fail(p->ctx, AK_ERR_OUT_OF_MEMORY, "JSON nodes");
            return -1;
        }
        if (j->n) memcpy(nv, j->v, sizeof(ak_jval) * (size_t)j->n);
        ak__free(p->ctx, j->v);
        j->v = nv;
        j->cap = nc;
    }
    ak_jval *v = &j->v[j->n];
    memset(v, 0, sizeof *v);
    v->type = t;
    v->first = -1;
    v->next = -1;
    return j->n++;
}

static int32_t parse_value(jparser *p);

static int parse_string(jparser *p, const char **str, int32_t *len) {
    if (p->i >= p->n || p->s[p->i] != '"') return jfail(p, "expected a string"), 0;
    size_t a = ++p->i;
    while (p->i < p->n && p->s[p->i] != '"') {
        if (p->s[p->i] == '\\') return jfail(p, "escape sequences are not supported in strings"), 0;
        if ((unsigned char)p->s[p->i] < 0x20) return jfail(p, "control character in a string"), 0;
        p->i++;
    }
    if (p->i >= p->n) return jfail(p, "unterminated string"), 0;
    *str = p->s + a;
    *len = (int32_t)(p->i - a);
    p->i++;
    return 1;
}

static int32_t parse_value(jparser *p) {
    if (++p->depth > 64) {
        jfail(p, "nesting deeper than 64");
        return -1;
    }
    skip_ws(p);
    if (p->i >= p->n) {
        jfail(p, "unexpected end of input");
        return -1;
    }
    char c = p->s[p->i];
    int32_t id = -1;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        id = new_node(p, obj ? AK_J_OBJ : AK_J_ARR);
        if (id < 0) return -1;
        p->i++;
        skip_ws(p);
        int32_t last = -1;
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
            p->i++;
        } else {
            for (;;) {
                const char *key = NULL;
                int32_t klen = 0;
                if (obj) {
                    skip_ws(p);
                    if (!parse_string(p, &key, &klen)) return -1;
                    skip_ws(p);
                    if (p->i >= p->n || p->s[p->i] != ':') {
                        jfail(p, "expected ':'");
                        return -1;
                    }
                    p->i++;
                }
                int32_t child = parse_value(p);
                if (child < 0) return -1;
                p->j->v[child].key = key;
                p->j->v[child].key_len = klen;
                if (last < 0) p->j->v[id].first = child;
                else p->j->v[last].next = child;
                last = child;
                p->j->v[id].n++;
                skip_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
                    p->i++;
                    break;
                }
                jfail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
                return -1;
            }
        }
    } else if (c == '"') {
        id = new_node(p, AK_J_STR);
        if (id < 0) return -1;
        const char *str;
        int32_t len;
        if (!parse_string(p, &str, &len)) return -1;
        p->j->v[id].str = str;
        p->j->v[id].str_len = len;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t k = 0;
        while (p->i < p->n && k < sizeof buf - 1 && strchr("+-0123456789.eE", p->s[p->i])) buf[k++] = p->s[p->i++];
        buf[k] = 0;
        char *end;
        double x = strtod(buf, &end);
        if (*end || k == 0 || k == sizeof buf - 1) {
            jfail(p, "malformed number");
            return -1;
        }
        id = new_node(p, AK_J_NUM);
        if (id < 0) return -1;
        p->j->v[id].num = x;
    } else if (p->n - p->i >= 4 && !strncmp(p->s + p->i, "true", 4)) {
        id = new_node(p, AK_J_BOOL);
        if (id >= 0) p->j->v[id].num = 1;
        p->i += 4;
    } else if (p->n - p->i >= 5 && !strncmp(p->s + p->i, "false", 5)) {
        id = new_node(p, AK_J_BOOL);
        p->i += 5;
    } else if (p->n - p->i >= 4 && !strncmp(p->s + p->i, "null", 4)) {
        id = new_node(p, AK_J_NULL);
        p->i += 4;
    } else {
        jfail(p, "unexpected character");
        return -1;
    }
    p->depth--;
    return id;
}

ak_status ak__json_parse(ak_ctx *ctx, const char *text, size_t len, ak_json *out) {
    memset(out, 0, sizeof *out);
    if (!text) return ak__fail(ctx, AK_ERR_NULL_POINTER, "JSON text is NULL");
    jparser p = {ctx, text, len, 0, out, AK_OK, 0};
    int32_t root = parse_value(&p);
    if (root >= 0) {
        skip_ws(&p);
        if (p.i < p.n && p.s[p.i] != '\0') jfail(&p, "trailing characters after the value");
    }
    if (p.st != AK_OK || root < 0) {
        ak__json_free(ctx, out);
        return p.st != AK_OK ? p.st : ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON: no value");
    }
    return AK_OK;
}

void ak__json_free(ak_ctx *ctx, ak_json *j) {
    if (j && j->v) ak__free(ctx, j->v);
    if (j) memset(j, 0, sizeof *j);
}

int32_t ak__json_get(const ak_json *j, int32_t obj, const char *key) {
    if (obj < 0 || obj >= j->n || j->v[obj].type != AK_J_OBJ) return -1;
    size_t kl = strlen(key);
    for (int32_t c = j->v[obj].first; c >= 0; c = j->v[c].next)
        if ((size_t)j->v[c].key_len == kl && !strncmp(j->v[c].key, key, kl)) return c;
    return -1;
}

/* ---- writing ---- */

typedef struct sbuf {
    ak_ctx *ctx;
    char *s;
    size_t n, cap;
    int fail;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->fail) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->fail = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *ns = (char *)ak__alloc(b->ctx, nc);
        if (!ns) {
            b->fail = 1;
            return;
        }
        if (b->n) memcpy(ns, b->s, b->n);
        ak__free(b->ctx, b->s);
        b->s = ns;
        b->cap = nc;
    }
}

ak_status ak_sparse_to_json(ak_ctx *ctx, const ak_sparse *sp, char **out, size_t *len) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!sp || !out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "sp or out is NULL");
    *out = NULL;
    sbuf b = {ctx, NULL, 0, 0, 0};
    sb_add(&b, "{\"format\": \"attnkit-sparse\", \"version\": 1, \"n_batch\": %d, \"n_heads\": %d, \"nq\": %d, \"nk\": %d, "
               "\"causal\": %d, \"block_q\": %d, \"n_qblocks\": %d, \"gather\": %d, \"name\": \"",
           sp->n_batch, sp->n_heads, sp->nq, sp->nk, sp->causal, sp->block_q, sp->n_qblocks, sp->qrow_off ? 1 : 0);
    for (const char *c = sp->name; *c; c++) sb_add(&b, "%c", (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) ? '_' : *c);
    sb_add(&b, "\"");
    if (sp->na_geom.ndim) {
        const ak_sparse_na *g = &sp->na_geom;
        const char *nm[5] = {"extent", "kernel", "dilation", "stride", "causal"};
        const int32_t *arr[5] = {g->extent, g->kernel, g->dilation, g->stride, g->causal};
        sb_add(&b, ",\n \"na\": {\"ndim\": %d", g->ndim);
        for (int f = 0; f < 5; f++) {
            sb_add(&b, ", \"%s\": [", nm[f]);
            for (int a = 0; a < g->ndim; a++) sb_add(&b, "%s%d", a ? ", " : "", arr[f][a]);
            sb_add(&b, "]");
        }
        sb_add(&b, "}");
    }
    sb_add(&b, ",\n \"lists\": [");
    int firstl = 1;
    for (int64_t r = 0; r < sp->n_lists; r++) {
        int64_t nr = sp->qrow_off ? sp->qrow_off[r + 1] - sp->qrow_off[r] : 0;
        int64_t ns = sp->span_off[r + 1] - sp->span_off[r], nc = sp->col_off[r + 1] - sp->col_off[r],
                nb = sp->band_off[r + 1] - sp->band_off[r];
        if (!nr && !ns && !nc && !nb && !sp->na[r]) continue;
        int64_t qb = r % sp->n_qblocks, bh = r / sp->n_qblocks;
        sb_add(&b, "%s\n  {\"b\": %lld, \"h\": %lld, \"qb\": %lld", firstl ? "" : ",", (long long)(bh / sp->n_heads),
               (long long)(bh % sp->n_heads), (long long)qb);
        firstl = 0;
        if (nr) {
            sb_add(&b, ", \"rows\": [");
            for (int64_t e = 0; e < nr; e++) sb_add(&b, "%s%d", e ? "," : "", sp->qrows[sp->qrow_off[r] + e]);
            sb_add(&b, "]");
        }
        if (ns) {
            sb_add(&b, ", \"spans\": [");
            for (int64_t e = sp->span_off[r]; e < sp->span_off[r + 1]; e++)
                sb_add(&b, "%s[%d,%d]", e > sp->span_off[r] ? "," : "", sp->span_lo[e], sp->span_hi[e]);
            sb_add(&b, "]");
        }
        if (nc) {
            sb_add(&b, ", \"cols\": [");
            for (int64_t e = sp->col_off[r]; e < sp->col_off[r + 1]; e++) sb_add(&b, "%s%d", e > sp->col_off[r] ? "," : "", sp->col_idx[e]);
            sb_add(&b, "]");
        }
        if (nb) {
            sb_add(&b, ", \"bands\": [");
            for (int64_t e = sp->band_off[r]; e < sp->band_off[r + 1]; e++)
                sb_add(&b, "%s[%d,%d]", e > sp->band_off[r] ? "," : "", sp->band_lo[e], sp->band_hi[e]);
            sb_add(&b, "]");
        }
        if (sp->na[r]) sb_add(&b, ", \"na\": 1");
        sb_add(&b, "}");
    }
    sb_add(&b, "\n ]");
    if (sp->combine) sb_add(&b, ",\n \"combine\": %d", sp->combine);
    const float *farr[3] = {sp->key_bias, sp->key_score, sp->row_thresh};
    const char *fname[3] = {"key_bias", "key_score", "row_thresh"};
    for (int f = 0; f < 3; f++) {
        if (!farr[f]) continue;
        int64_t n = f == 2 ? sp->nq : sp->nk, BH = (int64_t)sp->n_batch * sp->n_heads;
        sb_add(&b, ",\n \"%s\": [", fname[f]);
        for (int64_t bh = 0; bh < BH; bh++) {
            sb_add(&b, "%s[", bh ? ",\n  " : "");
            for (int64_t x = 0; x < n; x++) {
                float y = farr[f][bh * n + x];
                if (isinf(y)) sb_add(&b, "%s\"%sinf\"", x ? "," : "", y < 0 ? "-" : "");
                else sb_add(&b, "%s%.9g", x ? "," : "", (double)y);
            }
            sb_add(&b, "]");
        }
        sb_add(&b, "]");
    }
    sb_add(&b, "}\n");
    if (b.fail) {
        ak__free(ctx, b.s);
        return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "JSON text");
    }
    *out = b.s;
    if (len) *len = b.n;
    return AK_OK;
}

/* An integer member (required unless dflt_ok), in [lo, hi]. */
static ak_status get_int(ak_ctx *ctx, const ak_json *j, int32_t obj, const char *key, int64_t lo, int64_t hi, int required,
                         int64_t dflt, int64_t *out) {
    int32_t v = ak__json_get(j, obj, key);
    if (v < 0) {
        if (required) return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: missing \"%s\"", key);
        *out = dflt;
        return AK_OK;
    }
    double x = j->v[v].num;
    if (j->v[v].type != AK_J_NUM || x != (double)(int64_t)x || x < (double)lo || x > (double)hi)
        return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: \"%s\" must be an integer in [%lld, %lld]", key, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return AK_OK;
}

/* Integer array elements: n numbers (pairs = 1: n [a, b] pairs flattened into out[2n]). */
static ak_status get_ints(ak_ctx *ctx, const ak_json *j, int32_t arr, int pairs, int32_t *out, const char *what, int64_t r) {
    int64_t k = 0;
    for (int32_t c = j->v[arr].first; c >= 0; c = j->v[c].next) {
        if (pairs) {
            if (j->v[c].type != AK_J_ARR || j->v[c].n != 2)
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: list %lld: %s entries must be [lo, hi] pairs", (long long)r, what);
            for (int32_t d = j->v[c].first; d >= 0; d = j->v[d].next) {
                double x = j->v[d].num;
                if (j->v[d].type != AK_J_NUM || x != (double)(int32_t)x)
                    return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: list %lld: %s holds a non-integer", (long long)r, what);
                out[k++] = (int32_t)x;
            }
        } else {
            double x = j->v[c].num;
            if (j->v[c].type != AK_J_NUM || x != (double)(int32_t)x)
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: list %lld: %s holds a non-integer", (long long)r, what);
            out[k++] = (int32_t)x;
        }
    }
    return AK_OK;
}

/* Optional member `key`: an array of BH arrays of n numbers (or "inf" / "-inf" strings when allow_inf) ->
 * *out (allocated [BH][n]); absent -> *out = NULL. */
static ak_status get_floats(ak_ctx *ctx, const ak_json *j, const char *key, int64_t BH, int64_t n, int allow_inf, float **out) {
    *out = NULL;
    int32_t a = ak__json_get(j, 0, key);
    if (a < 0) return AK_OK;
    if (j->v[a].type != AK_J_ARR || j->v[a].n != BH)
        return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: \"%s\" must be an array of n_batch * n_heads = %lld arrays", key,
                        (long long)BH);
    float *x = (float *)ak__alloc(ctx, sizeof(float) * (size_t)(BH * n + 1));
    if (!x) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "JSON plan");
    int64_t k = 0;
    for (int32_t c = j->v[a].first; c >= 0; c = j->v[c].next) {
        if (j->v[c].type != AK_J_ARR || j->v[c].n != n) {
            ak__free(ctx, x);
            return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: \"%s\" rows must hold %lld numbers", key, (long long)n);
        }
        for (int32_t e = j->v[c].first; e >= 0; e = j->v[e].next) {
            const ak_jval *v = &j->v[e];
            if (v->type == AK_J_NUM) {
                x[k++] = (float)v->num;
            } else if (allow_inf && v->type == AK_J_STR && v->str_len == 3 && !strncmp(v->str, "inf", 3)) {
                x[k++] = INFINITY;
            } else if (allow_inf && v->type == AK_J_STR && v->str_len == 4 && !strncmp(v->str, "-inf", 4)) {
                x[k++] = -INFINITY;
            } else {
                ak__free(ctx, x);
                return ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: \"%s\" holds a value that is not a number%s", key,
                                allow_inf ? " or \"inf\" / \"-inf\"" : "");
            }
        }
    }
    *out = x;
    return AK_OK;
}

ak_status ak_sparse_from_json(ak_ctx *ctx, const char *text, size_t len, ak_sparse **out) {
    if (!ctx) return AK_ERR_NULL_POINTER;
    ak__clear_error(ctx);
    if (!out || !text) return ak__fail(ctx, AK_ERR_NULL_POINTER, "json or out is NULL");
    *out = NULL;
    ak_json j;
    ak_status st = ak__json_parse(ctx, text, len, &j);
    if (st != AK_OK) return st;
    ak_sparse_desc d;
    ak_sparse_desc_init(&d);
    int64_t v[9];
    int64_t *off[4] = {NULL, NULL, NULL, NULL};
    int32_t *arr[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    uint8_t *na = NULL;
    float *fl[3] = {NULL, NULL, NULL};
    char name[256] = "";
    int32_t fmt = ak__json_get(&j, 0, "format"), lists = ak__json_get(&j, 0, "lists");
    if (j.v[0].type != AK_J_OBJ || fmt < 0 || j.v[fmt].type != AK_J_STR || j.v[fmt].str_len != 14 ||
        strncmp(j.v[fmt].str, "attnkit-sparse", 14)) {
        st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: not an object with \"format\": \"attnkit-sparse\"");
        goto done;
    }
    if ((st = get_int(ctx, &j, 0, "version", 1, 1, 0, 1, &v[0])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "n_batch", 1, INT32_MAX, 0, 1, &v[1])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "n_heads", 1, INT32_MAX, 0, 1, &v[2])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "nq", 0, INT32_MAX, 1, 0, &v[3])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "nk", 0, INT32_MAX, 1, 0, &v[4])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "causal", 0, 1, 0, 0, &v[5])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "block_q", 1, INT32_MAX, 1, 64, &v[6])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "n_qblocks", 0, INT32_MAX, 1, 0, &v[7])) != AK_OK) goto done;
    if ((st = get_int(ctx, &j, 0, "gather", 0, 1, 0, 0, &v[8])) != AK_OK) goto done;
    d.n_batch = (int32_t)v[1];
    d.n_heads = (int32_t)v[2];
    d.nq = (int32_t)v[3];
    d.nk = (int32_t)v[4];
    d.causal = (int32_t)v[5];
    d.block_q = (int32_t)v[6];
    d.n_qblocks = (int32_t)v[7];
    int32_t nm = ak__json_get(&j, 0, "name");
    if (nm >= 0 && j.v[nm].type == AK_J_STR) snprintf(name, sizeof name, "%.*s", (int)j.v[nm].str_len, j.v[nm].str);
    d.name = name;
    int32_t g = ak__json_get(&j, 0, "na");
    if (g >= 0) {
        int64_t nd;
        if ((st = get_int(ctx, &j, g, "ndim", 1, 3, 1, 0, &nd)) != AK_OK) goto done;
        d.na_geom.ndim = (int32_t)nd;
        const char *fn[5] = {"extent", "kernel", "dilation", "stride", "causal"};
        int32_t *dst[5] = {d.na_geom.extent, d.na_geom.kernel, d.na_geom.dilation, d.na_geom.stride, d.na_geom.causal};
        for (int f = 0; f < 5; f++) {
            int32_t a = ak__json_get(&j, g, fn[f]);
            if (a < 0 || j.v[a].type != AK_J_ARR || j.v[a].n != nd) {
                st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: na.%s must be an array of ndim = %lld integers", fn[f], (long long)nd);
                goto done;
            }
            if ((st = get_ints(ctx, &j, a, 0, dst[f], "na", -1)) != AK_OK) goto done;
        }
    }
    if (lists < 0 || j.v[lists].type != AK_J_ARR) {
        st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: missing \"lists\" array");
        goto done;
    }
    int64_t R = v[1] * v[2] * v[7];
    if (R > ((int64_t)1 << 31)) {
        st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: %lld lists, at most 2^31", (long long)R);
        goto done;
    }
    /* count the entries per list (lists in the file must be in (b, h, qb) order, each at most once) */
    for (int k = 0; k < 4; k++) {
        off[k] = (int64_t *)ak__alloc(ctx, sizeof(int64_t) * (size_t)(R + 1));
        if (!off[k]) {
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "JSON plan");
            goto done;
        }
        memset(off[k], 0, sizeof(int64_t) * (size_t)(R + 1));
    }
    na = (uint8_t *)ak__alloc(ctx, (size_t)R + 1);
    if (!na) {
        st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "JSON plan");
        goto done;
    }
    memset(na, 0, (size_t)R + 1);
    const char *keys[4] = {"rows", "spans", "cols", "bands"};
    int64_t prev = -1;
    for (int32_t l = j.v[lists].first; l >= 0; l = j.v[l].next) {
        int64_t b, h, qb, nflag;
        if (j.v[l].type != AK_J_OBJ) {
            st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: a list entry is not an object");
            goto done;
        }
        if ((st = get_int(ctx, &j, l, "b", 0, v[1] - 1, 1, 0, &b)) != AK_OK) goto done;
        if ((st = get_int(ctx, &j, l, "h", 0, v[2] - 1, 1, 0, &h)) != AK_OK) goto done;
        if ((st = get_int(ctx, &j, l, "qb", 0, v[7] - 1, 1, 0, &qb)) != AK_OK) goto done;
        if ((st = get_int(ctx, &j, l, "na", 0, 1, 0, 0, &nflag)) != AK_OK) goto done;
        int64_t r = (b * v[2] + h) * v[7] + qb;
        if (r <= prev) {
            st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: list (b %lld, h %lld, qb %lld) is out of order or repeated", (long long)b,
                          (long long)h, (long long)qb);
            goto done;
        }
        prev = r;
        na[r] = (uint8_t)nflag;
        for (int k = 0; k < 4; k++) {
            int32_t a = ak__json_get(&j, l, keys[k]);
            if (a < 0) continue;
            if (j.v[a].type != AK_J_ARR) {
                st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: list %lld: \"%s\" is not an array", (long long)r, keys[k]);
                goto done;
            }
            off[k][r + 1] = j.v[a].n;
        }
    }
    for (int k = 0; k < 4; k++)
        for (int64_t r = 0; r < R; r++) off[k][r + 1] += off[k][r];
    for (int k = 0; k < 4; k++) {
        size_t m = (size_t)off[k][R];
        arr[k] = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (m + 1));
        if (k == 1 || k == 3) arr[k + (k == 1 ? 3 : 2)] = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (m + 1));
    }
    for (int k = 0; k < 6; k++)
        if (!arr[k]) {
            st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "JSON plan");
            goto done;
        }
    /* arr: 0 rows, 1 span_lo, 2 cols, 3 band_lo, 4 span_hi, 5 band_hi */
    int32_t *pairbuf = NULL;
    for (int32_t l = j.v[lists].first; l >= 0; l = j.v[l].next) {
        int64_t b = 0, h = 0, qb = 0;
        get_int(ctx, &j, l, "b", 0, v[1] - 1, 1, 0, &b);
        get_int(ctx, &j, l, "h", 0, v[2] - 1, 1, 0, &h);
        get_int(ctx, &j, l, "qb", 0, v[7] - 1, 1, 0, &qb);
        int64_t r = (b * v[2] + h) * v[7] + qb;
        for (int k = 0; k < 4; k++) {
            int32_t a = ak__json_get(&j, l, keys[k]);
            if (a < 0) continue;
            int pairs = k == 1 || k == 3;
            if (pairs) {
                pairbuf = (int32_t *)ak__alloc(ctx, sizeof(int32_t) * (size_t)(2 * j.v[a].n + 1));
                if (!pairbuf) {
                    st = ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "JSON plan");
                    goto done;
                }
                st = get_ints(ctx, &j, a, 1, pairbuf, keys[k], r);
                if (st == AK_OK)
                    for (int32_t e = 0; e < j.v[a].n; e++) {
                        arr[k][off[k][r] + e] = pairbuf[2 * e];
                        arr[k == 1 ? 4 : 5][off[k][r] + e] = pairbuf[2 * e + 1];
                    }
                ak__free(ctx, pairbuf);
                pairbuf = NULL;
            } else {
                st = get_ints(ctx, &j, a, 0, arr[k] + off[k][r], keys[k], r);
            }
            if (st != AK_OK) goto done;
        }
    }
    if (v[8]) {
        d.qrow_off = off[0];
        d.qrows = arr[0];
    } else if (off[0][R] > 0) {
        st = ak__fail(ctx, AK_ERR_BAD_PLAN, "JSON plan: lists give \"rows\" but \"gather\" is 0");
        goto done;
    }
    d.span_off = off[1];
    d.span_lo = arr[1];
    d.span_hi = arr[4];
    d.col_off = off[2];
    d.col_idx = arr[2];
    d.band_off = off[3];
    d.band_lo = arr[3];
    d.band_hi = arr[5];
    d.na = na;
    int64_t comb, BH = v[1] * v[2];
    if ((st = get_int(ctx, &j, 0, "combine", 0, 1, 0, 0, &comb)) != AK_OK) goto done;
    d.combine = (int32_t)comb;
    if ((st = get_floats(ctx, &j, "key_bias", BH, v[4], 0, &fl[0])) != AK_OK ||
        (st = get_floats(ctx, &j, "key_score", BH, v[4], 1, &fl[1])) != AK_OK ||
        (st = get_floats(ctx, &j, "row_thresh", BH, v[3], 1, &fl[2])) != AK_OK)
        goto done;
    d.key_bias = fl[0];
    d.key_score = fl[1];
    d.row_thresh = fl[2];
    st = ak_sparse_create(ctx, &d, out);
done:
    for (int k = 0; k < 3; k++) ak__free(ctx, fl[k]);
    for (int k = 0; k < 4; k++) ak__free(ctx, off[k]);
    for (int k = 0; k < 6; k++) ak__free(ctx, arr[k]);
    ak__free(ctx, na);
    ak__json_free(ctx, &j);
    return st;
}
