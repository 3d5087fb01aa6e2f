/*
 * png.c — a minimal PNG writer for `attnkit plan --png`: 8-bit grayscale (color type 0) or RGB (color
 * type 2), no interlace, every row with filter 0, and the zlib stream made of "stored" (uncompressed)
 * deflate blocks of at most 65535 bytes, followed by its Adler-32; every chunk carries its CRC-32
 * (ISO 3309 polynomial, as PNG specifies). No external library.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

/* Running CRC-32: start with 0xffffffff, finish by inverting. */
static uint32_t crc_update(uint32_t c, const unsigned char *buf, size_t n) {
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ buf[i]) & 0xff] ^ (c >> 8);
    return c;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One chunk: length, type, data, CRC over type and data. 0 = ok. */
static int write_chunk(FILE *f, const char *type, const unsigned char *data, size_t n) {
    unsigned char hdr[8], tail[4];
    put32(hdr, (uint32_t)n);
    memcpy(hdr + 4, type, 4);
    uint32_t c = crc_update(0xffffffffu, hdr + 4, 4);
    c = crc_update(c, data, n) ^ 0xffffffffu;
    put32(tail, c);
    return fwrite(hdr, 1, 8, f) != 8 || (n && fwrite(data, 1, n, f) != n) || fwrite(tail, 1, 4, f) != 4 ? -1 : 0;
}

int png_write(const char *path, int width, int height, int channels, const unsigned char *pixels, char *err,
              size_t errlen) {
    if (width < 1 || height < 1 || (channels != 1 && channels != 3)) {
        snprintf(err, errlen, "png: bad image %d x %d x %d", width, height, channels);
        return -1;
    }
    crc_init();
    size_t row = (size_t)width * (size_t)channels + 1;     /* filter byte + pixels */
    size_t raw = row * (size_t)height;
    size_t blocks = raw / 65535 + 1;                       /* stored blocks (the last may be short or empty) */
    size_t zlen = 2 + raw + 5 * blocks + 4;
    if ((double)zlen > 2147483647.0) {
        snprintf(err, errlen, "png: image %d x %d too large", width, height);
        return -1;
    }
    unsigned char *z = malloc(zlen);
    if (!z) {
        snprintf(err, errlen, "png: out of memory");
        return -1;
    }
    size_t o = 0;
    z[o++] = 0x78;   /* CMF: deflate, 32 KiB window */
    z[o++] = 0x01;   /* FLG: no dictionary, fastest; (0x78 * 256 + 0x01) % 31 == 0 */
    uint32_t a = 1, b = 0;   /* Adler-32 of the raw (filtered) data */
    size_t done = 0, r = 0, c = 0;   /* raw bytes emitted; current row and column within it */
    for (size_t k = 0; k < blocks; k++) {
        size_t n = raw - done < 65535 ? raw - done : 65535;
        z[o++] = k + 1 == blocks ? 1 : 0;   /* BFINAL, BTYPE = 00 (stored) */
        z[o++] = (unsigned char)(n & 0xff);
        z[o++] = (unsigned char)(n >> 8);
        z[o++] = (unsigned char)(~n & 0xff);
        z[o++] = (unsigned char)((~n >> 8) & 0xff);
        for (size_t i = 0; i < n; i++) {
            unsigned char v = c == 0 ? 0 : pixels[r * (row - 1) + c - 1];
            z[o++] = v;
            a = (a + v) % 65521u;
            b = (b + a) % 65521u;
            if (++c == row) { c = 0; r++; }
        }
        done += n;
    }
    put32(z + o, (b << 16) | a);
    o += 4;
    unsigned char ihdr[13];
    put32(ihdr, (uint32_t)width);
    put32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;                              /* bit depth */
    ihdr[9] = channels == 1 ? 0 : 2;          /* color type: grayscale / RGB */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;       /* deflate, adaptive filtering (all 0 here), no interlace */
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
        free(z);
        return -1;
    }
    int bad = fwrite(sig, 1, 8, f) != 8 || write_chunk(f, "IHDR", ihdr, 13) || write_chunk(f, "IDAT", z, o) ||
              write_chunk(f, "IEND", NULL, 0);
    bad |= fclose(f) != 0;
    free(z);
    if (bad) {
        snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
