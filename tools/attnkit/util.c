/*
 * util.c — small helpers of the attnkit CLI: timer, random numbers, CPU model, strict number
 * parsing, JSON strings, median.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Monotonic wall clock in seconds. */
double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64: a tiny, seedable, well-mixed generator. */
uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) with 24 random bits. */
float rng_uniform(uint64_t *state) {
    return (float)(rng_next(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

/* "model name" of the first CPU in /proc/cpuinfo, or "unknown". */
void cpu_model(char *buf, size_t len) {
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\r\n")] = '\0';
        snprintf(buf, len, "%s", v);
        break;
    }
    fclose(f);
}

/* The git commit recorded in ak_build_info() ("... commit <hash> ..."), or "unknown". */
void build_commit(char *buf, size_t len) {
    snprintf(buf, len, "unknown");
    const char *info = ak_build_info();
    const char *c = info ? strstr(info, "commit ") : NULL;
    if (!c) return;
    c += 7;
    size_t n = strcspn(c, " ");
    if (n == 0) return;
    if (n >= len) n = len - 1;
    memcpy(buf, c, n);
    buf[n] = '\0';
}

/* 64-byte aligned allocation of at least `bytes` (>= 64) bytes; NULL on failure. */
void *xalloc(size_t bytes) {
    size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0) return NULL;
    return p;
}

/* Strict decimal integer in [lo, hi]: the whole string must be the number. 0 = ok. */
int parse_int(const char *s, long lo, long hi, int *out) {
    if (!s || !*s || !((*s >= '0' && *s <= '9') || *s == '-')) return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Strict finite float: the whole string must be the number. 0 = ok. */
int parse_float(const char *s, float *out) {
    if (!s || !*s || !((*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '+')) return -1;
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Shortest of %g / %.9g that reads back as the same float. */
void format_float(float x, char *buf, size_t len) {
    snprintf(buf, len, "%g", (double)x);
    if (strtof(buf, NULL) != x) snprintf(buf, len, "%.9g", (double)x);
}

/* s as a JSON string literal (quotes and escapes included). */
void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (n >= 1); v is not modified. */
double median_of(const double *v, int n) {
    double *c = malloc((size_t)n * sizeof(double));
    if (!c) return v[0];
    memcpy(c, v, (size_t)n * sizeof(double));
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = (n % 2) ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* The context's last error message (it names the status), else the status name. */
const char *error_text(const ak_ctx *ctx, ak_status st) {
    const char *m = ctx ? ak_ctx_last_error(ctx) : "";
    return (m && *m) ? m : ak_status_string(st);
}

/* The whole file, NUL-terminated (malloc'ed; *len without the NUL); NULL on failure, errno set. */
char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *grown = realloc(buf, cap * 2 + 1);
        if (!grown) { free(buf); buf = NULL; errno = ENOMEM; break; }
        buf = grown;
        cap *= 2;
    }
    int bad = buf && ferror(f);
    fclose(f);
    if (bad) { free(buf); errno = EIO; return NULL; }
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}
