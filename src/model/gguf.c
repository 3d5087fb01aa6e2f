/*
 * GGUF v2/v3 reader (spec: /work/shared/specs/gemma3-runner.md §2; docs/model/gguf.md).
 *
 * Everything in a GGUF file is attacker-controlled, so the parser is written around three rules:
 *   1. every read is bounded by the bytes left in the buffer (rd_* below check before touching memory);
 *   2. every count is bounded by the bytes it needs before anything proportional to it is allocated
 *      (n values of w bytes need n*w bytes left; a string needs at least its 8-byte length);
 *   3. all size arithmetic is unsigned 64-bit, with an explicit overflow check on every product (mul_ok)
 *      and sums compared as `a > size - b` rather than `a + b > size`.
 * Parsing is two passes over the header: pass 1 validates and records where every key, value and
 * tensor info lies and how many string bytes there are; then one arena receives NUL-terminated copies of
 * every key, string value, string-array element and tensor name (pass 2), so that the getters hand out
 * stable C strings in O(1) (the vocabulary is a string[262144]). Keys and tensors are looked up by binary
 * search in name-sorted index arrays, which also find duplicates in O(n log n).
 */
#include "core/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(_WIN32)
#define AK_GGUF_NO_MMAP 1
#else
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#define GGUF_MAX_COUNT (UINT64_C(1) << 20)   /* tensor_count and kv_count limits (header contract) */
#define GGUF_MAX_NAME 63                     /* tensor names are < 64 bytes (ggml GGML_MAX_NAME incl. NUL) */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_NE_LIMIT (UINT64_C(1) << 62)    /* the element count of a tensor must stay below this */
#define GGUF_MSG_NAME 80                     /* names quoted in error messages are cut to this many bytes */

/* ---- records ---------------------------------------------------------------------------------- */

typedef struct gguf_kv {
    uint64_t name_pos, name_len;  /* key bytes in the file */
    uint64_t entry_pos;           /* where the entry starts (for messages) */
    uint64_t val_pos;             /* scalar: the value; string: its bytes (after the length); array: the
                                     first element (strings: the first length field) */
    uint64_t count;               /* array element count; 1 for scalars */
    uint64_t slen;                /* string scalar: byte length */
    uint32_t type, elem_type;     /* elem_type: arrays only */
    const char *name;             /* arena copies */
    const char *str;              /* string scalar */
    uint64_t str_first;           /* string array: index of its first entry in g->str_off */
} gguf_kv;

typedef struct gguf_tensor {
    uint64_t name_pos, name_len, info_pos;
    const char *name;
    int32_t type, n_dims;
    int64_t ne[4];
    uint64_t offset, nbytes;
} gguf_tensor;

struct ak_gguf {
    ak_ctx *ctx;
    const uint8_t *base;
    uint64_t size;
    void *map;                  /* mmap'ed region (ak_gguf_open), else NULL */
    size_t map_size;
    void *owned_buf;            /* whole-file copy where there is no mmap */
    uint32_t version;
    uint64_t n_kv, n_tensors, alignment, data_offset;
    gguf_kv *kv;
    gguf_tensor *tn;
    int64_t *kv_sorted;         /* key indices sorted by name */
    int64_t *tn_sorted;         /* tensor indices sorted by name */
    uint64_t *str_off;          /* string-array elements: arena offsets, one sentinel after each array */
    char *arena;
};

/* ---- bounded little-endian reads -------------------------------------------------------------- */

typedef struct rd {
    const ak_ctx *ctx;
    const uint8_t *p;
    uint64_t size, pos;
} rd;

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static int mul_ok(uint64_t a, uint64_t b, uint64_t *r) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *r = a * b;
    return 1;
}
static uint64_t left(const rd *r) { return r->size - r->pos; }

/* Fail with the byte position unless n more bytes are available. */
static ak_status need(rd *r, uint64_t n, const char *what) {
    if (n > left(r))
        return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                        "gguf: byte %" PRIu64 ": %s needs %" PRIu64 " bytes but only %" PRIu64
                        " are left (file size %" PRIu64 ")",
                        r->pos, what, n, left(r), r->size);
    return AK_OK;
}
static ak_status rd_u32(rd *r, uint32_t *v, const char *what) {
    ak_status s = need(r, 4, what);
    if (s) return s;
    *v = le32(r->p + r->pos);
    r->pos += 4;
    return AK_OK;
}
static ak_status rd_u64(rd *r, uint64_t *v, const char *what) {
    ak_status s = need(r, 8, what);
    if (s) return s;
    *v = le64(r->p + r->pos);
    r->pos += 8;
    return AK_OK;
}
/* A string: u64 length, then that many bytes. Returns the position and length of the bytes. The field is
 * named "<what><idx><what2>" in messages (idx omitted when NO_IX); formatted only on failure, since this
 * runs once per vocabulary entry. */
#define NO_IX UINT64_MAX
static ak_status rd_str(rd *r, uint64_t *pos, uint64_t *len, const char *what, uint64_t idx, const char *what2) {
    char ix[24] = "";
    uint64_t at = r->pos;
    if (8 > left(r) || (*len = le64(r->p + r->pos)) > left(r) - 8) {
        if (idx != NO_IX) snprintf(ix, sizeof ix, "%" PRIu64, idx);
        if (8 > left(r))
            return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": %s%s%s: the string length needs 8 bytes but only %" PRIu64
                            " are left (file size %" PRIu64 ")",
                            at, what, ix, what2, left(r), r->size);
        return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                        "gguf: byte %" PRIu64 ": %s%s%s: string length %" PRIu64 " runs past the end of the file (%"
                        PRIu64 " bytes left)",
                        at, what, ix, what2, *len, left(r) - 8);
    }
    *pos = r->pos + 8;
    r->pos += 8 + *len;
    return AK_OK;
}

/* Byte size of one value of a fixed-size type; 0 for string/array (variable) and unknown ids. */
static uint64_t vtype_size(uint32_t t) {
    switch (t) {
    case AK_GGUF_U8: case AK_GGUF_I8: case AK_GGUF_BOOL: return 1;
    case AK_GGUF_U16: case AK_GGUF_I16: return 2;
    case AK_GGUF_U32: case AK_GGUF_I32: case AK_GGUF_F32: return 4;
    case AK_GGUF_U64: case AK_GGUF_I64: case AK_GGUF_F64: return 8;
    default: return 0;
    }
}
static const char *vtype_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                  "u64", "i64", "f64"};
    return t <= 12 ? names[t] : "?";
}
static int is_int_type(uint32_t t) {
    return t <= AK_GGUF_I32 || t == AK_GGUF_BOOL || t == AK_GGUF_U64 || t == AK_GGUF_I64;
}

/* A printable prefix length of a name for messages. */
static int msg_len(uint64_t len) { return len > GGUF_MSG_NAME ? GGUF_MSG_NAME : (int)len; }

static int has_nul(const uint8_t *p, uint64_t n) { return n > 0 && memchr(p, 0, (size_t)n) != NULL; }

/* ---- pass 1: keys ----------------------------------------------------------------------------- */

/* Parse the KV section; count the arena bytes and string-array elements needed. */
static ak_status parse_kvs(rd *r, ak_gguf *g, uint64_t *arena_bytes, uint64_t *n_str_elems, uint64_t *n_str_arrays) {
    ak_status s;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        kv->entry_pos = r->pos;
        if ((s = rd_str(r, &kv->name_pos, &kv->name_len, "key ", i, " name"))) return s;
        const uint8_t *nm = r->p + kv->name_pos;
        int nl = msg_len(kv->name_len);
        if (kv->name_len == 0)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": key %" PRIu64 " has an empty name",
                            kv->entry_pos, i);
        if (has_nul(nm, kv->name_len))
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": key %" PRIu64 " name contains a NUL byte",
                            kv->entry_pos, i);
        *arena_bytes += kv->name_len + 1;   /* bounded by the file size: no overflow */
        uint64_t tpos = r->pos;
        if ((s = rd_u32(r, &kv->type, "value type"))) return s;
        if (kv->type > AK_GGUF_F64)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": key '%.*s': unknown value type %" PRIu32,
                            tpos, nl, (const char *)nm, kv->type);
        kv->count = 1;
        if (kv->type == AK_GGUF_STRING) {
            if ((s = rd_str(r, &kv->val_pos, &kv->slen, "string value", NO_IX, ""))) return s;
            *arena_bytes += kv->slen + 1;
        } else if (kv->type == AK_GGUF_ARRAY) {
            uint64_t epos = r->pos;
            if ((s = rd_u32(r, &kv->elem_type, "array element type"))) return s;
            if (kv->elem_type == AK_GGUF_ARRAY)
                return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                                "gguf: byte %" PRIu64 ": key '%.*s': nested arrays are not supported", epos, nl,
                                (const char *)nm);
            if (kv->elem_type > AK_GGUF_F64)
                return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                                "gguf: byte %" PRIu64 ": key '%.*s': unknown array element type %" PRIu32, epos, nl,
                                (const char *)nm, kv->elem_type);
            uint64_t cpos = r->pos;
            if ((s = rd_u64(r, &kv->count, "array count"))) return s;
            kv->val_pos = r->pos;
            uint64_t es = kv->elem_type == AK_GGUF_STRING ? 8 : vtype_size(kv->elem_type);
            if (kv->count > left(r) / es)
                return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                                "gguf: byte %" PRIu64 ": key '%.*s': array count %" PRIu64 " of %s needs at least %" PRIu64
                                " bytes each, only %" PRIu64 " bytes are left",
                                cpos, nl, (const char *)nm, kv->count, vtype_name(kv->elem_type), es, left(r));
            if (kv->elem_type == AK_GGUF_STRING) {
                for (uint64_t j = 0; j < kv->count; j++) {
                    uint64_t sp, sl;
                    if ((s = rd_str(r, &sp, &sl, "array element ", j, ""))) return s;
                    *arena_bytes += sl + 1;
                }
                *n_str_elems += kv->count;
                *n_str_arrays += 1;
            } else {
                uint64_t nb = kv->count * es;   /* <= left(r): checked above */
                if (kv->elem_type == AK_GGUF_BOOL) {
                    for (uint64_t j = 0; j < nb; j++)
                        if (r->p[r->pos + j] > 1)
                            return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                                            "gguf: byte %" PRIu64 ": key '%.*s': bool element %" PRIu64
                                            " is %u (must be 0 or 1)",
                                            r->pos + j, nl, (const char *)nm, j, (unsigned)r->p[r->pos + j]);
                }
                r->pos += nb;
            }
        } else {
            uint64_t es = vtype_size(kv->type);
            if ((s = need(r, es, vtype_name(kv->type)))) return s;
            kv->val_pos = r->pos;
            if (kv->type == AK_GGUF_BOOL && r->p[r->pos] > 1)
                return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": key '%.*s': bool value %u (must be 0 or 1)",
                                r->pos, nl, (const char *)nm, (unsigned)r->p[r->pos]);
            r->pos += es;
        }
    }
    return AK_OK;
}

/* ---- pass 1: tensor infos --------------------------------------------------------------------- */

static ak_status parse_tensor_infos(rd *r, ak_gguf *g, uint64_t *arena_bytes) {
    ak_status s;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tn[i];
        t->info_pos = r->pos;
        if ((s = rd_str(r, &t->name_pos, &t->name_len, "tensor ", i, " name"))) return s;
        const uint8_t *nm = r->p + t->name_pos;
        int nl = msg_len(t->name_len);
        if (t->name_len == 0)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": tensor %" PRIu64 " has an empty name",
                            t->info_pos, i);
        if (t->name_len > GGUF_MAX_NAME)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": tensor %" PRIu64 " name '%.*s' is %" PRIu64
                            " bytes long (at most %d)",
                            t->info_pos, i, nl, (const char *)nm, t->name_len, GGUF_MAX_NAME);
        if (has_nul(nm, t->name_len))
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": tensor %" PRIu64 " name contains a NUL byte",
                            t->info_pos, i);
        *arena_bytes += t->name_len + 1;
        uint64_t dpos = r->pos;
        uint32_t nd;
        if ((s = rd_u32(r, &nd, "n_dims"))) return s;
        if (nd < 1 || nd > 4)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": tensor '%.*s': n_dims = %" PRIu32
                            " (must be 1..4)", dpos, nl, (const char *)nm, nd);
        t->n_dims = (int32_t)nd;
        uint64_t numel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t epos = r->pos, v;
            if ((s = rd_u64(r, &v, "ne"))) return s;
            if (v < 1 || v > (uint64_t)INT64_MAX)
                return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": tensor '%.*s': ne[%" PRIu32 "] = %" PRId64
                                " (must be >= 1)", epos, nl, (const char *)nm, d, (int64_t)v);
            if (!mul_ok(numel, v, &numel) || numel >= GGUF_NE_LIMIT)
                return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                                "gguf: byte %" PRIu64 ": tensor '%.*s': the element count overflows at ne[%" PRIu32
                                "] = %" PRIu64 " (the product must stay below 2^62)",
                                epos, nl, (const char *)nm, d, v);
            t->ne[d] = (int64_t)v;
        }
        uint64_t tpos = r->pos;
        uint32_t ty;
        if ((s = rd_u32(r, &ty, "ggml type"))) return s;
        int32_t be = ty <= INT32_MAX ? ak_qtype_block_elems((int32_t)ty) : 0;
        int32_t bb = ty <= INT32_MAX ? ak_qtype_block_bytes((int32_t)ty) : 0;
        if (be <= 0 || bb <= 0)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": tensor '%.*s': ggml type id %" PRIu32
                            " is unknown or not supported by attnkit",
                            tpos, nl, (const char *)nm, ty);
        t->type = (int32_t)ty;
        if ((uint64_t)t->ne[0] % (uint64_t)be != 0)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": tensor '%.*s': ne[0] = %" PRId64 " is not a multiple of the %s block"
                            " size %" PRId32, t->info_pos, nl, (const char *)nm, t->ne[0], ak_qtype_name(t->type), be);
        /* nbytes = numel / be * bb; numel < 2^62 and bb <= 4*be for every type in practice, but check anyway */
        if (!mul_ok(numel / (uint64_t)be, (uint64_t)bb, &t->nbytes) || t->nbytes > (uint64_t)INT64_MAX)
            return ak__fail(r->ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": tensor '%.*s': byte size overflows",
                            t->info_pos, nl, (const char *)nm);
        if ((s = rd_u64(r, &t->offset, "tensor offset"))) return s;
    }
    return AK_OK;
}

/* ---- sorting by name -------------------------------------------------------------------------- */

/* qsort has no context argument: sort (name, index) pairs instead. */
typedef struct name_ix {
    const char *name;
    int64_t ix;
} name_ix;

static int cmp_name_ix(const void *a, const void *b) {
    const name_ix *x = (const name_ix *)a, *y = (const name_ix *)b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->ix < y->ix ? -1 : x->ix > y->ix;
}

/* Sort n names; write the sorted indices; return the index of a later duplicate, or -1. */
static int64_t sort_names(const ak_ctx *ctx, const char *const *names, size_t stride, int64_t n, int64_t *sorted,
                          int *oom) {
    *oom = 0;
    if (n == 0) return -1;
    name_ix *tmp = (name_ix *)ak__alloc(ctx, (size_t)n * sizeof *tmp);
    if (!tmp) {
        *oom = 1;
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        tmp[i].name = *(const char *const *)((const char *)names + (size_t)i * stride);
        tmp[i].ix = i;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_name_ix);
    int64_t dup = -1;
    for (int64_t i = 0; i < n; i++) {
        sorted[i] = tmp[i].ix;
        if (i > 0 && dup < 0 && strcmp(tmp[i].name, tmp[i - 1].name) == 0) dup = tmp[i].ix;
    }
    ak__free(ctx, tmp);
    return dup;
}

typedef struct off_ix {
    uint64_t off, end;
    int64_t ix;
} off_ix;
static int cmp_off_ix(const void *a, const void *b) {
    const off_ix *x = (const off_ix *)a, *y = (const off_ix *)b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->ix < y->ix ? -1 : x->ix > y->ix;
}

/* ---- open ------------------------------------------------------------------------------------- */

static void gguf_free(ak_gguf *g) {
    if (!g) return;
    const ak_ctx *ctx = g->ctx;
    ak__free(ctx, g->kv);
    ak__free(ctx, g->tn);
    ak__free(ctx, g->kv_sorted);
    ak__free(ctx, g->tn_sorted);
    ak__free(ctx, g->str_off);
    ak__free(ctx, g->arena);
#if !defined(AK_GGUF_NO_MMAP)
    if (g->map) munmap(g->map, g->map_size);
#endif
    free(g->owned_buf);
    ak__free(ctx, g);
}

static void *alloc_array(const ak_ctx *ctx, uint64_t n, size_t elem) {
    uint64_t bytes;
    if (!mul_ok(n, (uint64_t)elem, &bytes) || bytes > (uint64_t)SIZE_MAX / 2) return NULL;
    void *p = ak__alloc(ctx, (size_t)(bytes ? bytes : 1));
    if (p) memset(p, 0, (size_t)bytes);
    return p;
}

static ak_status oom(const ak_ctx *ctx, const char *what, uint64_t n) {
    return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "gguf: cannot allocate %s (%" PRIu64 " entries)", what, n);
}

/* Parse and validate g->base[0..size); fills everything else in g. */
static ak_status gguf_parse(ak_gguf *g) {
    const ak_ctx *ctx = g->ctx;
    rd r = {ctx, g->base, g->size, 0};
    ak_status s;

    if ((s = need(&r, 4, "magic"))) return s;
    if (memcmp(g->base, "GGUF", 4) != 0)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte 0: bad magic %02x %02x %02x %02x (expected \"GGUF\")",
                        g->base[0], g->base[1], g->base[2], g->base[3]);
    r.pos = 4;
    if ((s = rd_u32(&r, &g->version, "version"))) return s;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte 4: version 1 is not supported (only 2 and 3)");
        if ((g->version & 0xffffu) == 0 && (g->version == 0x02000000u || g->version == 0x03000000u))
            return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte 4: version %" PRIu32 " (a big-endian file? only "
                            "little-endian GGUF v2/v3 is supported)", g->version);
        return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte 4: unsupported version %" PRIu32 " (only 2 and 3)",
                        g->version);
    }
    if ((s = rd_u64(&r, &g->n_tensors, "tensor_count"))) return s;
    if ((s = rd_u64(&r, &g->n_kv, "kv_count"))) return s;
    /* Each KV entry takes at least 8 (name length) + 1 (name) + 4 (type) + 1 (value) bytes; each tensor
     * info at least 8 + 1 + 4 (n_dims) + 8 (ne[0]) + 4 (type) + 8 (offset). Checking that first keeps the
     * record arrays proportional to the file, not to a count the file claims. */
    if (g->n_tensors > GGUF_MAX_COUNT)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte 8: tensor_count %" PRIu64 " is above the limit 2^20",
                        g->n_tensors);
    if (g->n_kv > GGUF_MAX_COUNT)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte 16: kv_count %" PRIu64 " is above the limit 2^20", g->n_kv);
    if (g->n_kv * 14 + g->n_tensors * 33 > left(&r))
        return ak__fail(ctx, AK_ERR_BAD_FILE,
                        "gguf: byte 8: tensor_count %" PRIu64 " and kv_count %" PRIu64 " need at least %" PRIu64
                        " bytes, the file has %" PRIu64 " left",
                        g->n_tensors, g->n_kv, g->n_kv * 14 + g->n_tensors * 33, left(&r));

    g->kv = (gguf_kv *)alloc_array(ctx, g->n_kv, sizeof(gguf_kv));
    g->tn = (gguf_tensor *)alloc_array(ctx, g->n_tensors, sizeof(gguf_tensor));
    g->kv_sorted = (int64_t *)alloc_array(ctx, g->n_kv, sizeof(int64_t));
    g->tn_sorted = (int64_t *)alloc_array(ctx, g->n_tensors, sizeof(int64_t));
    if (!g->kv || !g->tn || !g->kv_sorted || !g->tn_sorted) return oom(ctx, "key/tensor records", g->n_kv + g->n_tensors);

    uint64_t arena_bytes = 0, n_str_elems = 0, n_str_arrays = 0;
    if ((s = parse_kvs(&r, g, &arena_bytes, &n_str_elems, &n_str_arrays))) return s;
    if ((s = parse_tensor_infos(&r, g, &arena_bytes))) return s;
    uint64_t infos_end = r.pos;

    /* Pass 2: NUL-terminated copies in one arena. arena_bytes <= file size + number of strings. */
    g->arena = (char *)alloc_array(ctx, arena_bytes, 1);
    g->str_off = (uint64_t *)alloc_array(ctx, n_str_elems + n_str_arrays, sizeof(uint64_t));
    if (!g->arena || !g->str_off) return oom(ctx, "string arena", arena_bytes);
    uint64_t a = 0, so = 0;
#define ARENA_COPY(dst, pos, len)                                    \
    do {                                                             \
        memcpy(g->arena + a, g->base + (pos), (size_t)(len));        \
        g->arena[a + (len)] = '\0';                                  \
        (dst) = g->arena + a;                                        \
        a += (len) + 1;                                              \
    } while (0)
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        ARENA_COPY(kv->name, kv->name_pos, kv->name_len);
        if (kv->type == AK_GGUF_STRING) ARENA_COPY(kv->str, kv->val_pos, kv->slen);
        if (kv->type == AK_GGUF_ARRAY && kv->elem_type == AK_GGUF_STRING) {
            kv->str_first = so;
            uint64_t p = kv->val_pos;
            for (uint64_t j = 0; j < kv->count; j++) {
                uint64_t len = le64(g->base + p);   /* validated in pass 1 */
                const char *unused;
                g->str_off[so++] = a;
                ARENA_COPY(unused, p + 8, len);
                (void)unused;
                p += 8 + len;
            }
            g->str_off[so++] = a;   /* sentinel: element j spans [off[j], off[j+1] - 1) */
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) ARENA_COPY(g->tn[i].name, g->tn[i].name_pos, g->tn[i].name_len);
#undef ARENA_COPY

    /* Duplicate keys and tensor names. */
    int is_oom = 0;
    int64_t dup = g->n_kv ? sort_names(ctx, &g->kv[0].name, sizeof(gguf_kv), (int64_t)g->n_kv, g->kv_sorted, &is_oom)
                          : -1;
    if (is_oom) return oom(ctx, "key index", g->n_kv);
    if (dup >= 0)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": duplicate key '%.*s'", g->kv[dup].entry_pos,
                        msg_len(g->kv[dup].name_len), g->kv[dup].name);
    dup = g->n_tensors ? sort_names(ctx, &g->tn[0].name, sizeof(gguf_tensor), (int64_t)g->n_tensors, g->tn_sorted,
                                    &is_oom)
                       : -1;
    if (is_oom) return oom(ctx, "tensor index", g->n_tensors);
    if (dup >= 0)
        return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": duplicate tensor name '%s'",
                        g->tn[dup].info_pos, g->tn[dup].name);

    /* general.alignment: u32, a power of two; 32 when absent. */
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = ak_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &g->kv[ai];
        if (kv->type != AK_GGUF_U32)
            return ak__fail(ctx, AK_ERR_BAD_FILE, "gguf: byte %" PRIu64 ": general.alignment has type %s (must be u32)",
                            kv->entry_pos, vtype_name(kv->type));
        uint32_t al = le32(g->base + kv->val_pos);
        if (al == 0 || (al & (al - 1)) != 0)
            return ak__fail(ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": general.alignment = %" PRIu32 " is not a power of two",
                            kv->val_pos, al);
        g->alignment = al;
    }

    /* The data section starts at the next multiple of the alignment after the tensor infos. A file
     * without tensors may end before that (nothing would be read there). */
    uint64_t pad = (g->alignment - infos_end % g->alignment) % g->alignment;
    g->data_offset = infos_end + pad;   /* infos_end <= size < 2^63, pad < 2^32: no overflow */
    if (g->data_offset > g->size) {
        if (g->n_tensors > 0)
            return ak__fail(ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": the data section (aligned to %" PRIu64 ") would start at byte %"
                            PRIu64 ", past the end of the file (%" PRIu64 " bytes)",
                            infos_end, g->alignment, g->data_offset, g->size);
        g->data_offset = g->size;
    }

    /* Tensor data: aligned, inside the file, not overlapping (offsets need not be sequential). */
    uint64_t data_size = g->size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tn[i];
        uint64_t opos = t->name_pos + t->name_len + 4 + 8 * (uint64_t)t->n_dims + 4;
        if (t->offset % g->alignment != 0)
            return ak__fail(ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %"
                            PRIu64, opos, t->name, t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return ak__fail(ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") is outside the data "
                            "section (%" PRIu64 " bytes from byte %" PRIu64 ")",
                            opos, t->name, t->offset, t->nbytes, data_size, g->data_offset);
    }
    if (g->n_tensors > 1) {
        off_ix *o = (off_ix *)alloc_array(ctx, g->n_tensors, sizeof(off_ix));
        if (!o) return oom(ctx, "tensor offsets", g->n_tensors);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            o[i].off = g->tn[i].offset;
            o[i].end = g->tn[i].offset + g->tn[i].nbytes;
            o[i].ix = (int64_t)i;
        }
        qsort(o, (size_t)g->n_tensors, sizeof *o, cmp_off_ix);
        int64_t bad_a = -1, bad_b = -1;
        for (uint64_t i = 1; i < g->n_tensors && bad_a < 0; i++)
            if (o[i].off < o[i - 1].end) {
                bad_a = o[i - 1].ix;
                bad_b = o[i].ix;
            }
        ak__free(ctx, o);
        if (bad_a >= 0) {
            const gguf_tensor *ta = &g->tn[bad_a], *tb = &g->tn[bad_b];
            return ak__fail(ctx, AK_ERR_BAD_FILE,
                            "gguf: byte %" PRIu64 ": tensor '%s' data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' [%"
                            PRIu64 ", %" PRIu64 ")",
                            tb->info_pos, tb->name, tb->offset, tb->offset + tb->nbytes, ta->name, ta->offset,
                            ta->offset + ta->nbytes);
        }
    }
    return AK_OK;
}

static ak_status gguf_open_common(ak_ctx *ctx, ak_gguf *g, ak_gguf **out) {
    ak_status s = gguf_parse(g);
    if (s) {
        gguf_free(g);
        return s;
    }
    ak__clear_error(ctx);
    *out = g;
    return AK_OK;
}

static ak_gguf *gguf_new(ak_ctx *ctx) {
    ak_gguf *g = (ak_gguf *)ak__alloc(ctx, sizeof *g);
    if (g) {
        memset(g, 0, sizeof *g);
        g->ctx = ctx;
    }
    return g;
}

ak_status ak_gguf_open_memory(ak_ctx *ctx, const void *data, size_t size, ak_gguf **out) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_gguf_open_memory: out is NULL");
    if (!data) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_gguf_open_memory: data is NULL");
    if ((uint64_t)size > (uint64_t)INT64_MAX)
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_gguf_open_memory: size %zu is above INT64_MAX", size);
    ak_gguf *g = gguf_new(ctx);
    if (!g) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_gguf_open_memory: cannot allocate the handle");
    g->base = (const uint8_t *)data;
    g->size = size;
    return gguf_open_common(ctx, g, out);
}

ak_status ak_gguf_open(ak_ctx *ctx, const char *path, ak_gguf **out) {
    if (out) *out = NULL;
    if (!ctx) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_gguf_open: out is NULL");
    if (!path) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_gguf_open: path is NULL");
    ak_gguf *g = gguf_new(ctx);
    if (!g) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_gguf_open: cannot allocate the handle");
#if !defined(AK_GGUF_NO_MMAP)
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        gguf_free(g);
        return ak__fail(ctx, AK_ERR_IO, "ak_gguf_open: cannot open '%s': %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        gguf_free(g);
        return ak__fail(ctx, AK_ERR_IO, "ak_gguf_open: '%s' is not a regular file", path);
    }
    if (st.st_size > 0) {
        /* MAP_PRIVATE + PROT_READ: nothing can be written through the mapping. A file truncated by
         * someone else while mapped would raise SIGBUS on access; that is the usual mmap caveat. */
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            gguf_free(g);
            return ak__fail(ctx, AK_ERR_IO, "ak_gguf_open: cannot map '%s': %s", path, strerror(e));
        }
        g->map = m;
        g->map_size = (size_t)st.st_size;
        g->base = (const uint8_t *)m;
        g->size = (uint64_t)st.st_size;
    } else {
        static const uint8_t empty[1] = {0};
        g->base = empty;
        g->size = 0;
    }
    close(fd);
#else
    FILE *f = fopen(path, "rb");
    if (!f) {
        gguf_free(g);
        return ak__fail(ctx, AK_ERR_IO, "ak_gguf_open: cannot open '%s'", path);
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = (unsigned char *)malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) break;
        unsigned char *nb = (unsigned char *)realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        gguf_free(g);
        return ak__fail(ctx, AK_ERR_IO, "ak_gguf_open: cannot read '%s'", path);
    }
    g->owned_buf = buf;
    g->base = buf;
    g->size = n;
#endif
    return gguf_open_common(ctx, g, out);
}

void ak_gguf_close(ak_gguf *g) { gguf_free(g); }

/* ---- accessors -------------------------------------------------------------------------------- */

ak_status ak_gguf_get_header(const ak_gguf *g, ak_gguf_header *h) {
    if (!g) return AK_ERR_NULL_POINTER;
    if (!h) return ak__fail(g->ctx, AK_ERR_NULL_POINTER, "ak_gguf_get_header: h is NULL");
    h->version = g->version;
    h->n_tensors = (int64_t)g->n_tensors;
    h->n_kv = (int64_t)g->n_kv;
    h->alignment = (int64_t)g->alignment;
    h->data_offset = (int64_t)g->data_offset;
    h->file_size = (int64_t)g->size;
    return AK_OK;
}

int64_t ak_gguf_find_key(const ak_gguf *g, const char *key) {
    if (!g || !key) return -1;
    int64_t lo = 0, hi = (int64_t)g->n_kv - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2, ix = g->kv_sorted[mid];
        int c = strcmp(g->kv[ix].name, key);
        if (c == 0) return ix;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

ak_status ak_gguf_key_info(const ak_gguf *g, int64_t i, const char **name, ak_gguf_vtype *type, int32_t *elem_type,
                           int64_t *count) {
    if (!g) return AK_ERR_NULL_POINTER;
    if (i < 0 || (uint64_t)i >= g->n_kv)
        return ak__fail(g->ctx, AK_ERR_INVALID_ARGUMENT, "ak_gguf_key_info: index %" PRId64 " outside [0, %" PRIu64 ")",
                        i, g->n_kv);
    const gguf_kv *kv = &g->kv[i];
    if (name) *name = kv->name;
    if (type) *type = (ak_gguf_vtype)kv->type;
    if (elem_type) *elem_type = kv->type == AK_GGUF_ARRAY ? (int32_t)kv->elem_type : -1;
    if (count) *count = (int64_t)kv->count;
    return AK_OK;
}

/* The key's record, or a failure: absent -> AK_ERR_INVALID_ARGUMENT. */
static ak_status lookup(const ak_gguf *g, const char *fn, const char *key, const void *out, const gguf_kv **kv) {
    if (!g) return AK_ERR_NULL_POINTER;
    if (!key) return ak__fail(g->ctx, AK_ERR_NULL_POINTER, "%s: key is NULL", fn);
    if (!out) return ak__fail(g->ctx, AK_ERR_NULL_POINTER, "%s: output pointer is NULL", fn);
    int64_t i = ak_gguf_find_key(g, key);
    if (i < 0) return ak__fail(g->ctx, AK_ERR_INVALID_ARGUMENT, "%s: key '%s' not found", fn, key);
    *kv = &g->kv[i];
    return AK_OK;
}

/* Read an integer-typed (or bool) value at p. 0 ok; 1 = u64 above INT64_MAX. */
static int read_int(uint32_t t, const uint8_t *p, int64_t *out) {
    switch (t) {
    case AK_GGUF_U8: case AK_GGUF_BOOL: *out = p[0]; return 0;
    case AK_GGUF_I8: *out = (int8_t)p[0]; return 0;
    case AK_GGUF_U16: *out = le16(p); return 0;
    case AK_GGUF_I16: *out = (int16_t)le16(p); return 0;
    case AK_GGUF_U32: *out = le32(p); return 0;
    case AK_GGUF_I32: *out = (int32_t)le32(p); return 0;
    case AK_GGUF_I64: *out = (int64_t)le64(p); return 0;
    case AK_GGUF_U64: {
        uint64_t v = le64(p);
        if (v > (uint64_t)INT64_MAX) return 1;
        *out = (int64_t)v;
        return 0;
    }
    default: return 1;
    }
}
static double read_float(uint32_t t, const uint8_t *p) {
    if (t == AK_GGUF_F32) {
        uint32_t u = le32(p);
        float f;
        memcpy(&f, &u, 4);
        return (double)f;
    }
    uint64_t u = le64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

ak_status ak_gguf_get_int(const ak_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup(g, "ak_gguf_get_int", key, out, &kv);
    if (s) return s;
    if (!is_int_type(kv->type))
        return ak__fail(g->ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_gguf_get_int: key '%s' has type %s, not an integer",
                        key, vtype_name(kv->type));
    if (read_int(kv->type, g->base + kv->val_pos, out))
        return ak__fail(g->ctx, AK_ERR_INVALID_ARGUMENT, "ak_gguf_get_int: key '%s': u64 value %" PRIu64
                        " does not fit in int64", key, le64(g->base + kv->val_pos));
    return AK_OK;
}

ak_status ak_gguf_get_float(const ak_gguf *g, const char *key, double *out) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup(g, "ak_gguf_get_float", key, out, &kv);
    if (s) return s;
    if (kv->type != AK_GGUF_F32 && kv->type != AK_GGUF_F64)
        return ak__fail(g->ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_gguf_get_float: key '%s' has type %s, not f32/f64", key,
                        vtype_name(kv->type));
    *out = read_float(kv->type, g->base + kv->val_pos);
    return AK_OK;
}

ak_status ak_gguf_get_str(const ak_gguf *g, const char *key, const char **str, size_t *len) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup(g, "ak_gguf_get_str", key, str, &kv);
    if (s) return s;
    if (kv->type != AK_GGUF_STRING)
        return ak__fail(g->ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_gguf_get_str: key '%s' has type %s, not string", key,
                        vtype_name(kv->type));
    *str = kv->str;
    if (len) *len = (size_t)kv->slen;
    return AK_OK;
}

/* An array element lookup: the key must be an array whose element type passes ok(); i in range. */
static ak_status lookup_elem(const ak_gguf *g, const char *fn, const char *key, int64_t i, const void *out,
                             int (*ok)(uint32_t), const char *want, const gguf_kv **kv) {
    ak_status s = lookup(g, fn, key, out, kv);
    if (s) return s;
    if ((*kv)->type != AK_GGUF_ARRAY || !ok((*kv)->elem_type))
        return ak__fail(g->ctx, AK_ERR_UNSUPPORTED_DTYPE, "%s: key '%s' is %s%s%s, not an array of %s", fn, key,
                        (*kv)->type == AK_GGUF_ARRAY ? "an array of " : "a scalar ",
                        vtype_name((*kv)->type == AK_GGUF_ARRAY ? (*kv)->elem_type : (*kv)->type), "", want);
    if (i < 0 || (uint64_t)i >= (*kv)->count)
        return ak__fail(g->ctx, AK_ERR_INVALID_ARGUMENT, "%s: key '%s': index %" PRId64 " outside [0, %" PRIu64 ")", fn,
                        key, i, (*kv)->count);
    return AK_OK;
}
static int ok_int(uint32_t t) { return is_int_type(t); }
static int ok_float(uint32_t t) { return t == AK_GGUF_F32 || t == AK_GGUF_F64; }
static int ok_str(uint32_t t) { return t == AK_GGUF_STRING; }

ak_status ak_gguf_get_arr_int(const ak_gguf *g, const char *key, int64_t i, int64_t *out) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup_elem(g, "ak_gguf_get_arr_int", key, i, out, ok_int, "integers", &kv);
    if (s) return s;
    uint64_t es = vtype_size(kv->elem_type);
    const uint8_t *p = g->base + kv->val_pos + (uint64_t)i * es;
    if (read_int(kv->elem_type, p, out))
        return ak__fail(g->ctx, AK_ERR_INVALID_ARGUMENT, "ak_gguf_get_arr_int: key '%s' element %" PRId64
                        ": u64 value %" PRIu64 " does not fit in int64", key, i, le64(p));
    return AK_OK;
}

ak_status ak_gguf_get_arr_float(const ak_gguf *g, const char *key, int64_t i, double *out) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup_elem(g, "ak_gguf_get_arr_float", key, i, out, ok_float, "f32/f64", &kv);
    if (s) return s;
    *out = read_float(kv->elem_type, g->base + kv->val_pos + (uint64_t)i * vtype_size(kv->elem_type));
    return AK_OK;
}

ak_status ak_gguf_get_arr_str(const ak_gguf *g, const char *key, int64_t i, const char **str, size_t *len) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup_elem(g, "ak_gguf_get_arr_str", key, i, str, ok_str, "strings", &kv);
    if (s) return s;
    const uint64_t *o = g->str_off + kv->str_first + (uint64_t)i;
    *str = g->arena + o[0];
    if (len) *len = (size_t)(o[1] - o[0] - 1);
    return AK_OK;
}

ak_status ak_gguf_get_arr_data(const ak_gguf *g, const char *key, ak_gguf_vtype *elem_type, int64_t *count,
                               const void **data) {
    const gguf_kv *kv = NULL;
    ak_status s = lookup(g, "ak_gguf_get_arr_data", key, data, &kv);
    if (s) return s;
    if (kv->type != AK_GGUF_ARRAY || kv->elem_type == AK_GGUF_STRING)
        return ak__fail(g->ctx, AK_ERR_UNSUPPORTED_DTYPE, "ak_gguf_get_arr_data: key '%s' is %s, not a numeric array",
                        key, kv->type == AK_GGUF_ARRAY ? "an array of strings" : vtype_name(kv->type));
    if (elem_type) *elem_type = (ak_gguf_vtype)kv->elem_type;
    if (count) *count = (int64_t)kv->count;
    *data = g->base + kv->val_pos;
    return AK_OK;
}

int64_t ak_gguf_find_tensor(const ak_gguf *g, const char *name) {
    if (!g || !name) return -1;
    int64_t lo = 0, hi = (int64_t)g->n_tensors - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2, ix = g->tn_sorted[mid];
        int c = strcmp(g->tn[ix].name, name);
        if (c == 0) return ix;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

ak_status ak_gguf_tensor_info(const ak_gguf *g, int64_t i, ak_gguf_tensor *out) {
    if (!g) return AK_ERR_NULL_POINTER;
    if (!out) return ak__fail(g->ctx, AK_ERR_NULL_POINTER, "ak_gguf_tensor_info: out is NULL");
    if (i < 0 || (uint64_t)i >= g->n_tensors)
        return ak__fail(g->ctx, AK_ERR_INVALID_ARGUMENT,
                        "ak_gguf_tensor_info: index %" PRId64 " outside [0, %" PRIu64 ")", i, g->n_tensors);
    const gguf_tensor *t = &g->tn[i];
    out->name = t->name;
    out->type = t->type;
    out->n_dims = t->n_dims;
    for (int d = 0; d < 4; d++) out->ne[d] = t->ne[d];
    out->offset = (int64_t)t->offset;
    out->nbytes = (int64_t)t->nbytes;
    out->data = g->base + g->data_offset + t->offset;
    return AK_OK;
}
