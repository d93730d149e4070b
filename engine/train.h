/* train.h: a training run on one process, start to finish. */
#ifndef SMOE_TRAIN_H
#define SMOE_TRAIN_H

#include "comm.h"
#include "config.h"
#include "data.h"
#include "model.h"

typedef struct {
  int64_t steps;
  double first_val_loss; /* before the first step */
  double final_val_loss, final_train_loss;
  double wall_s;        /* whole run, data loading included */
  double train_s;       /* time inside training steps */
  double tokens_per_s;  /* training tokens / train_s */
  double model_flops_per_s;
  int ranks;
  double mean_imbalance;  /* tokens computed per rank, max / mean, over layers and steps */
  double static_imbalance; /* the same for the static placement replayed on the run's loads */
  int64_t dropped_tokens; /* assignments dropped by the capacity policy, all steps */
  size_t expert_optimizer_bytes; /* this rank's expert AdamW state (master, m, v), allocated */
  size_t optimizer_bytes;        /* the same plus the dense parameters' m and v */
} smoe_train_result_t;

/* Trains per the (validated) config on the ranks of comm (every rank calls
 * it; rank 0 writes the run folder), writing config.ini, metrics.jsonl,
 * model.safetensors (the final weights, HF names, F32; F64 in the double
 * build) and summary.json into out_dir (created if missing). init_hf: NULL,
 * or a folder of HF Mixtral weights to start from (the config must already
 * match it: see smoe_hf_read_config). Returns 0 or -1 with err. */
int smoe_train(const smoe_config_t *c, const char *out_dir, const char *init_hf,
               smoe_comm_t *comm, smoe_train_result_t *res, smoe_err_t *err);

/* Sets OpenMP and BLAS threads (0 = all cores); returns the count. */
int smoe_set_threads(int threads);

#endif
