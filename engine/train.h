/* train.h: a training run on one process, start to finish. */
#ifndef SMOE_TRAIN_H
#define SMOE_TRAIN_H

#include "comm.h"
#include "config.h"
#include "data.h"
#include "model.h"
#include "step.h"

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
  size_t expert_optimizer_bytes; /* allocated for the expert shards on this rank: master, m, v,
                                    gradient slices, exchange buffers (smoe_shards_t.bytes) */
  size_t optimizer_bytes;        /* the same plus the dense parameters' m and v */
  smoe_mem_t memory;             /* this rank's allocations by kind (step.h), after the run */
  int checkpoints;        /* written (started) by this run */
  double ckpt_stall_s;    /* time the step loop was blocked by checkpoints, all of them */
  double resume_s;        /* agreeing on and restoring the checkpoint (resumed runs) */
  int64_t replayed;       /* gradient-log records replayed onto it (resumed runs) */
  int64_t log_records;    /* gradient log: records this rank wrote */
  uint64_t log_raw_bytes, log_stored_bytes; /* their gradient bytes, and as stored */
  double log_write_s;     /* the writer thread's time on them */
  double log_stall_s;     /* time the steps spent staging them, all of them */
  double first_step_s;    /* from the start of smoe_train to the end of its first step */
  int preempted;          /* stopped by SIGTERM/SIGINT after a checkpoint */
  int refused;            /* 1 or 2: every rank refused the run folder alike (err says why);
                             exit with this code, nothing was changed */
} smoe_train_result_t;

/* smoe_train's resume argument: a step number, or one of these. */
#define SMOE_RESUME_NONE (-2)      /* a fresh run: the run folder must hold no earlier run */
#define SMOE_RESUME_OVERWRITE (-3) /* a fresh run replacing the folder's earlier run */
#define SMOE_RESUME_AUTO (-1) /* the newest checkpoint every rank completed, if any */

/* Trains per the (validated) config on the ranks of comm (every rank calls
 * it; rank 0 writes the run folder), writing config.ini, metrics.jsonl,
 * model.safetensors (the final weights, HF names, F32; F64 in the double
 * build) and summary.json into out_dir (created if missing), and each rank's
 * checkpoints into its state store (checkpoint.dir, default out_dir/state).
 * init_hf: NULL, or a folder of HF Mixtral weights to start from (the config
 * must already match it: see smoe_hf_read_config). resume: SMOE_RESUME_NONE,
 * SMOE_RESUME_AUTO or a checkpoint's step. A SIGTERM/SIGINT ends the run
 * after the current step and a synchronous checkpoint (res->preempted; no
 * final weights). Returns 0 or -1 with err. */
int smoe_train(const smoe_config_t *c, const char *out_dir, const char *init_hf, int64_t resume,
               smoe_comm_t *comm, smoe_train_result_t *res, smoe_err_t *err);

/* Sets OpenMP and BLAS threads (0 = all cores); returns the count. */
int smoe_set_threads(int threads);

#endif
