/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (docs/model/gguf.md has the commands).
 *
 * Each input is opened with ak_gguf_open_memory from an allocation of exactly its size (libFuzzer's own
 * buffer), so ASan reports any read past the end. Whatever opens is walked completely: every key
 * through every getter (array elements at both ends), every tensor's info, lookup by name, the first
 * and last byte of its data, and the dequantization of its first and last block. The only acceptable
 * results are AK_OK and AK_ERR_BAD_FILE; anything else aborts (a finding).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attnkit.h"

static ak_ctx *ctx;

static void fail(const char *what, ak_status s) {
    fprintf(stderr, "fuzz_gguf: %s returned %s (%s)\n", what, ak_status_string(s), ak_ctx_last_error(ctx));
    abort();
}

/* A getter may refuse (wrong type, out of range) but never with a status outside this set. */
static void ok_or_refused(const char *what, ak_status s) {
    if (s != AK_OK && s != AK_ERR_UNSUPPORTED_DTYPE && s != AK_ERR_INVALID_ARGUMENT) fail(what, s);
}

static volatile uint64_t sink;

static void walk(const ak_gguf *g) {
    ak_gguf_header h;
    ak_status s = ak_gguf_get_header(g, &h);
    if (s != AK_OK) fail("get_header", s);
    uint64_t sum = 0;
    for (int64_t i = 0; i < h.n_kv; i++) {
        const char *name;
        ak_gguf_vtype t;
        int32_t et;
        int64_t count, iv;
        double dv;
        const char *str;
        size_t len;
        const void *data;
        if ((s = ak_gguf_key_info(g, i, &name, &t, &et, &count)) != AK_OK) fail("key_info", s);
        if (ak_gguf_find_key(g, name) != i) fail("find_key(own name)", AK_ERR_INTERNAL);
        sum += strlen(name);
        ok_or_refused("get_int", s = ak_gguf_get_int(g, name, &iv));
        if (s == AK_OK) sum += (uint64_t)iv;
        ok_or_refused("get_float", s = ak_gguf_get_float(g, name, &dv));
        if (s == AK_OK) sum += dv == dv;
        ok_or_refused("get_str", s = ak_gguf_get_str(g, name, &str, &len));
        if (s == AK_OK && strlen(str) > len) fail("get_str: NUL terminator", AK_ERR_INTERNAL);
        ok_or_refused("get_arr_data", s = ak_gguf_get_arr_data(g, name, NULL, NULL, &data));
        if (s == AK_OK && count > 0) {
            int es = et == AK_GGUF_U8 || et == AK_GGUF_I8 || et == AK_GGUF_BOOL ? 1
                     : et == AK_GGUF_U16 || et == AK_GGUF_I16 ? 2
                     : et == AK_GGUF_U32 || et == AK_GGUF_I32 || et == AK_GGUF_F32 ? 4 : 8;
            sum += ((const uint8_t *)data)[0] + ((const uint8_t *)data)[count * es - 1];
        }
        for (int64_t k = 0; k < count && k < 16; k++) {
            int64_t j = k < 8 ? k : count - 1 - (k - 8);
            ok_or_refused("get_arr_int", s = ak_gguf_get_arr_int(g, name, j, &iv));
            if (s == AK_OK) sum += (uint64_t)iv;
            ok_or_refused("get_arr_float", s = ak_gguf_get_arr_float(g, name, j, &dv));
            if (s == AK_OK) sum += dv == dv;
            ok_or_refused("get_arr_str", s = ak_gguf_get_arr_str(g, name, j, &str, &len));
            if (s == AK_OK) {
                if (str[len] != '\0') fail("get_arr_str: NUL terminator", AK_ERR_INTERNAL);
                sum += len;
            }
        }
    }
    float out[256];
    for (int64_t i = 0; i < h.n_tensors; i++) {
        ak_gguf_tensor t;
        if ((s = ak_gguf_tensor_info(g, i, &t)) != AK_OK) fail("tensor_info", s);
        if (ak_gguf_find_tensor(g, t.name) != i) fail("find_tensor(own name)", AK_ERR_INTERNAL);
        int32_t be = ak_qtype_block_elems(t.type), bb = ak_qtype_block_bytes(t.type);
        if (be <= 0 || bb <= 0 || t.nbytes < bb || t.nbytes % bb) fail("tensor type / size", AK_ERR_INTERNAL);
        const uint8_t *d = (const uint8_t *)t.data;
        if ((s = ak_dequantize(ctx, t.type, d, out, be)) != AK_OK) fail("dequantize first block", s);
        if ((s = ak_dequantize(ctx, t.type, d + t.nbytes - bb, out, be)) != AK_OK) fail("dequantize last block", s);
        sum += d[0] + d[t.nbytes - 1] + (out[0] == out[0]);
    }
    sink += sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ctx && ak_ctx_create(&ctx) != AK_OK) abort();
    ak_gguf *g = NULL;
    ak_status s = ak_gguf_open_memory(ctx, data, size, &g);
    if (s == AK_OK) {
        if (!g) fail("open_memory (no handle)", s);
        walk(g);
        ak_gguf_close(g);
    } else if (s != AK_ERR_BAD_FILE || g) {
        fail("open_memory", s);
    }
    return 0;
}
