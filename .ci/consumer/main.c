/* Installed-package check: links against an installed attnkit and runs one tiny attention. */
#include <attnkit.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (strcmp(ak_version(), AK_VERSION_STRING) != 0) return 1;
    ak_ctx *ctx;
    if (ak_ctx_create(&ctx) != AK_OK) return 1;
    float q[4] = {1, 0, 0, 1}, k[4] = {1, 0, 0, 1}, v[4] = {1, 2, 3, 4}, o[4];
    ak_attn_desc d;
    ak_attn_desc_init(&d);
    d.seqlen_q = d.seqlen_k = 2;
    d.head_dim = 2;
    d.causal = 1;
    ak_attn_tensors t;
    ak_attn_tensors_init(&t);
    t.q = ak_tensor_4d(q, AK_F32, 1, 1, 2, 2);
    t.k = ak_tensor_4d(k, AK_F32, 1, 1, 2, 2);
    t.v = ak_tensor_4d(v, AK_F32, 1, 1, 2, 2);
    t.o = ak_tensor_4d(o, AK_F32, 1, 1, 2, 2);
    ak_status st = ak_attention(ctx, &d, &t);
    ak_ctx_destroy(ctx);
    /* row 0 sees only key 0: o = v[0] */
    if (st != AK_OK || fabsf(o[0] - 1) > 1e-6f || fabsf(o[1] - 2) > 1e-6f) {
        printf("consumer: FAILED (%s)\n", ak_status_string(st));
        return 1;
    }
    printf("consumer: attnkit %s OK\n", ak_version());
    return 0;
}
