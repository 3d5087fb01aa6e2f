/* Token sampling: greedy, temperature, top-k, top-p (nucleus), with a caller-held xorshift state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* xorshift64*: next value in (0, 1) from the state (advanced). */
static double next_unit(uint64_t *st) {
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return ((double)((x * 0x2545F4914F6CDD1DULL) >> 11) + 0.5) / 9007199254740992.0;
}

typedef struct {
    float p;
    int32_t id;
} cand;

/* higher probability first, then lower id */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = (const cand *)a, *y = (const cand *)b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

ak_status ak_sample(ak_ctx *ctx, const float *logits, int32_t n_vocab, const ak_sampler_params *p, uint64_t *rng,
                    int32_t *token) {
    if (!logits || !p || !token) return ak__fail(ctx, AK_ERR_NULL_POINTER, "ak_sample: logits, params and token are required");
    if (n_vocab < 1) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_sample: n_vocab = %d", n_vocab);
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_sample: temperature must be finite and >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1)) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_sample: top_p must be in (0, 1]");
    if (p->top_k < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_sample: top_k must be >= 0");
    int32_t best = -1;
    for (int32_t v = 0; v < n_vocab; v++)
        if (!isnan(logits[v]) && (best < 0 || logits[v] > logits[best])) best = v;
    if (best < 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_sample: every logit is NaN");
    if (p->temperature == 0 || p->top_k == 1) {
        *token = best;
        return AK_OK;
    }
    if (!rng || *rng == 0) return ak__fail(ctx, AK_ERR_INVALID_ARGUMENT, "ak_sample: a non-zero rng state is required");
    cand *c = (cand *)ak__alloc(ctx, sizeof(cand) * (size_t)n_vocab);
    if (!c) return ak__fail(ctx, AK_ERR_OUT_OF_MEMORY, "ak_sample: out of memory");
    double mx = logits[best], sum = 0.0;
    int32_t n = 0;
    for (int32_t v = 0; v < n_vocab; v++) {
        if (isnan(logits[v])) continue;
        double e = exp(((double)logits[v] - mx) / p->temperature);
        c[n].p = (float)e;
        c[n].id = v;
        sum += e;
        n++;
    }
    /* keep the candidates worth sorting: top_k, else those above a tiny fraction of the best */
    int32_t keep = n;
    if (p->top_k > 0 && p->top_k < n) keep = p->top_k;
    qsort(c, (size_t)n, sizeof(cand), cand_cmp);
    double mass = 0.0, kept = 0.0;
    int32_t m = 0;
    for (; m < keep; m++) kept += c[m].p;
    /* nucleus: the smallest prefix whose share of the kept mass reaches top_p */
    int32_t cut = keep;
    if (p->top_p < 1) {
        for (int32_t i = 0; i < keep; i++) {
            mass += c[i].p;
            if (mass >= p->top_p * kept) {
                cut = i + 1;
                break;
            }
        }
        kept = 0;
        for (int32_t i = 0; i < cut; i++) kept += c[i].p;
    }
    (void)sum;
    double u = next_unit(rng) * kept, acc = 0.0;
    int32_t pick = c[cut - 1].id;
    for (int32_t i = 0; i < cut; i++) {
        acc += c[i].p;
        if (u < acc) {
            pick = c[i].id;
            break;
        }
    }
    ak__free(ctx, c);
    *token = pick;
    return AK_OK;
}
