/* Internal: block dequantization shared by ak_dequantize, the GGUF reader and ak_qgemm. */
#ifndef AK_MODEL_QUANT_H
#define AK_MODEL_QUANT_H

#include <stdint.h>

#include "attnkit.h"

/* One block of `type` (ak_qtype) at b into y[ak_qtype_block_elems(type)]; type must be known. */
void ak__dequant_block(int32_t type, const uint8_t *b, float *y);
/* n elements (a multiple of the block) of `type` into dst; type must be known. */
void ak__dequant_row(int32_t type, const void *src, float *dst, int64_t n);

#endif
