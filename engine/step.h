/* step.h: one training iteration on a prepared context (DESIGN.md, "One
 * iteration, per MoE layer"):
 *   forward and backward of this rank's share of the batch (dense gradients
 *   reduce-scattered to their slices, or all-reduced when replicated),
 *   expert gradients to the shards, the global gradient norm and clipping,
 *   AdamW on this rank's dense slice (then the dense weights all-gathered)
 *   and on its expert shards, the balancing bias, the next placement, and the
 *   updated expert weights to its slots.
 * smoe_train runs it in its loop (resume, checkpoints, metrics and export
 * around it); the tests and benchmarks that train call the same function.
 * Every rank calls every function here (they are collective). */
#ifndef SMOE_STEP_H
#define SMOE_STEP_H

#include "model.h"
#include "policy.h"
#include "shards.h"

/* The control plane rides on the step's one small all-reduce: a caller may
 * agree on up to SMOE_STEP_MAX_CTL values (the max over ranks), read by
 * `read` just before it (after the step's compute, so they are fresh). */
#define SMOE_STEP_MAX_CTL 8
typedef struct {
  int n;
  int64_t v[SMOE_STEP_MAX_CTL]; /* in: this rank's (from read); out: the max over ranks */
  void (*read)(void *arg, int64_t *v);
  void *arg;
} smoe_step_ctl_t;

typedef struct {
  const smoe_config_t *c;
  smoe_comm_t *comm;
  smoe_model_t m;
  smoe_shards_t sh; /* the experts' optimizer state: this rank's slices */
  real *dm, *dv;    /* the dense AdamW moments: this rank's slice (dense_chunk) when
                       sharded, else all n_dense */
  real *dense_send; /* (dense_chunk) sharded: this rank's updated slice, to all-gather */
  size_t dense_opt_bytes; /* what the dense optimizer's state takes: the moments */
  smoe_policy_t policy;
  smoe_placement_t next; /* the plan being made for the next step */
  int *replicas;         /* (L, E) replicas of each expert in the step just run */
  /* When set, called in each step after clipping and before the optimizer,
   * with what the optimizer then applies: AdamW's scalars, the clip factor,
   * the norm before it, and the gradients, grads[0] this rank's expert slices
   * (sh.n) and grads[1] its slice of the dense ones (m.dense_len), in the
   * backend's memory (the gradient log: gradlog.h). */
  void (*on_grads)(void *arg, int64_t step, const smoe_adamw_t *o, double clip, double norm,
                   const real *const *grads);
  void *grads_arg;
} smoe_step_ctx_t;

typedef struct {
  double loss, ce, aux, z; /* the global batch's losses (model.h) */
  double lr;               /* the learning rate applied */
  double grad_norm;        /* the global norm, before clipping */
  double plan_s;           /* seconds planning the next placement */
  int64_t shadows;         /* same-step shadows placed in its forward, all layers */
} smoe_step_out_t;

/* Bytes a rank allocated, by kind: the sizes its allocations asked for.
 *   dense            dense parameters and their gradients (and the expert bias and,
 *                    sharded, this rank's slice of the summed gradients)
 *   expert_slots     this rank's slots: weights and gradients
 *   expert_shards    the expert shards: master, moments, gradient slices
 *   dense_optimizer  the dense AdamW moments
 *   activations      saved for backward; expert rows sized by the policy's bound
 *                    (smoe_drops_rows_bound)
 *   exchange         backward scratch, send/receive buffers, dispatch plans
 *   scratch          the arenas' blocks (their size after the steps so far)
 *   staging          the checkpoint's staging copy, delta base and output (the saver's) */
enum {
  SMOE_MEM_DENSE,
  SMOE_MEM_EXPERT_SLOTS,
  SMOE_MEM_EXPERT_SHARDS,
  SMOE_MEM_DENSE_OPTIMIZER,
  SMOE_MEM_ACTIVATIONS,
  SMOE_MEM_EXCHANGE,
  SMOE_MEM_SCRATCH,
  SMOE_MEM_STAGING,
  SMOE_MEM_KINDS
};
extern const char *const smoe_mem_names[SMOE_MEM_KINDS];
typedef struct {
  size_t bytes[SMOE_MEM_KINDS];
} smoe_mem_t;

/* x's allocations by kind; staging is left 0 (the caller's). */
void smoe_step_memory(const smoe_step_ctx_t *x, smoe_mem_t *mem);
/* The same for config c on rank `rank` of G, without allocating anything
 * (`swiftmoe memory`): every kind as smoe_step_memory and the saver would
 * report it, except scratch (the arenas grow in the first step: left 0).
 * Returns -1 with err for a world the config cannot use. */
int smoe_step_plan_memory(const smoe_config_t *c, int G, int rank, smoe_mem_t *mem,
                          smoe_err_t *err);

/* Model (B sequences per rank), shards, dense moments and policy for config
 * c on the ranks of comm; the weights from c's seed, or from an HF folder
 * init_hf (NULL: none). Returns 0, or -1 with err (nothing left allocated). */
int smoe_step_init(smoe_step_ctx_t *x, const smoe_config_t *c, int B, smoe_comm_t *comm,
                   const char *init_hf, smoe_err_t *err);
void smoe_step_free(smoe_step_ctx_t *x);

/* Optimizer step `step` (from 0) on batch (B, T+1) of this rank. ctl (may
 * be NULL) is agreed in the same all-reduce that checks that every rank
 * planned the same placement. Returns 0, or -1 with err when the ranks'
 * plans differ (an internal error: the slots were not changed). */
int smoe_step(smoe_step_ctx_t *x, const int32_t *batch, int64_t step, smoe_step_ctl_t *ctl,
              smoe_step_out_t *out, smoe_err_t *err);

#endif
