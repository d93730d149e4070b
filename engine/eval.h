/* eval.h: the loss of a model on a token stream, the number users compare
 * across tools: mean cross-entropy (nats per token) over every consecutive
 * non-overlapping window of seq_len + 1 tokens, in order (a window predicts
 * its last seq_len tokens from the ones before; a final partial window is
 * not scored). */
#ifndef SMOE_EVAL_H
#define SMOE_EVAL_H

#include "config.h"
#include "model.h"

typedef struct {
  double loss;        /* mean cross-entropy, nats per token */
  int64_t windows;    /* windows scored */
  int64_t tokens;     /* predictions scored = windows * seq_len */
} smoe_eval_result_t;

/* Uses the model's seq_len (m->dims.T) and batches of up to m->B windows per
 * rank; every rank of the model's world calls it with the same tokens. */
void smoe_eval_tokens(smoe_model_t *m, const int32_t *tokens, size_t n, smoe_eval_result_t *r);


/* Opens a trained model for inference: dir is a run folder (config.ini +
 * model.safetensors) or an HF Mixtral folder (config.json + safetensors).
 * seq_len > 0 replaces model.seq_len (the window length); batch sequences per
 * forward; device (or NULL: the config's) replaces training.device. On
 * success c holds the config and m the model. Returns 0 or -1. */
int smoe_model_open(smoe_model_t *m, smoe_config_t *c, const char *dir, int seq_len, int batch,
                    const char *device, smoe_err_t *err);

#endif
