/* Shared by the model commands of the CLI: run.c (attnkit run) and model_eval.c (attnkit eval). */
#ifndef ATTNKIT_MODEL_CLI_H
#define ATTNKIT_MODEL_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "attnkit.h"

int mode_run(int argc, char **argv);
int mode_model_eval(int argc, char **argv);

/* Print "attnkit: what: STATUS (message)" and return 1. */
int mc_fail(ak_ctx *ctx, ak_status st, const char *what);
/* Whole file, NUL-terminated (malloc'd); NULL with a message on failure. */
char *mc_read_file(const char *path, size_t *len);
/* Tokenize with BOS (add_special) into a malloc'd array; 0 on success. */
int mc_tokenize(ak_ctx *ctx, const ak_tokenizer *tok, const char *text, size_t len, int special, int32_t **ids,
                int32_t *n);
/* "5,11,17" | "global" | "all" -> layer numbers; the count or -1. */
int mc_parse_layers(const ak_model *m, const char *s, int32_t *out, int cap);
/* ak_session_set_attn(spec) on the listed layers ("global" when NULL); "dense"/NULL = nothing. 0 on success. */
int mc_set_attn(ak_ctx *ctx, ak_session *s, const ak_model *m, const char *spec, const char *layers);

#endif
