/* weights.h: a run's model as a checkpoint holds it, read from every rank's
 * state store without a training process (`swiftmoe export --step`,
 * `swiftmoe sample --step`). Each expert's master weights are spread over the
 * G ranks that wrote the checkpoint (rank g holds slice g of every expert,
 * shards.h), the dense weights likewise (rank g's 1/G slice): they are read
 * piece by piece (ckpt.h's reader: one decoded chunk per rank in memory) and
 * put back together one expert at a time. */
#ifndef SMOE_WEIGHTS_H
#define SMOE_WEIGHTS_H

#include "ckpt.h"
#include "config.h"
#include "model.h"

typedef struct {
  int G;                      /* ranks that wrote the checkpoint */
  int64_t step;
  smoe_store_t **s;           /* (G) read-only */
  smoe_ckpt_reader_t **r;     /* (G) */
  int L, E;
  size_t P, chunk;            /* elements per expert, per rank's slice */
  real *expert;               /* (P) host: the last expert read */
} smoe_ckpt_weights_t;

/* Opens checkpoint `step` (-1: the newest one every rank completed, as
 * a resume takes it) of the stores in dir (a run folder's state/ or a
 * checkpoint.dir) for a model of config c. Errors name what is wrong: a
 * missing rank store, a step absent or incomplete on some rank, shapes that
 * differ from c's. Returns 0 or -1. */
int smoe_ckpt_weights_open(smoe_ckpt_weights_t *w, const char *dir, int64_t step,
                           const smoe_config_t *c, smoe_err_t *err);
void smoe_ckpt_weights_close(smoe_ckpt_weights_t *w);
/* m's dense weights and selection bias from the checkpoint (m: the same
 * config, any world). */
int smoe_ckpt_weights_dense(smoe_ckpt_weights_t *w, smoe_model_t *m, smoe_err_t *err);
/* Expert (l, e)'s P master weights (host, w->expert; valid until the next
 * call), or NULL with err. */
const real *smoe_ckpt_weights_expert(smoe_ckpt_weights_t *w, int l, int e, smoe_err_t *err);
/* A world-of-one model with every weight from the checkpoint: dense, bias and
 * each expert into its slot. */
int smoe_ckpt_weights_load(smoe_ckpt_weights_t *w, smoe_model_t *m, smoe_err_t *err);

#endif
