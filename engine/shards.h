/* shards.h: the decoupled expert optimizer (DESIGN.md, "The idea").
 *
 * Every logical expert's parameters are one flat vector of P values, cut into
 * G slices of chunk = ceil(P / G) (the last padded with zeros). Rank g owns
 * slice g of every expert of every layer: master weights, Adam exp_avg and
 * exp_avg_sq, in one contiguous buffer, 3 * L * E * chunk values, whatever the
 * placement. These shards never move. Each step:
 *   grads to shards   every replica's slot gradient, slice g to rank g,
 *                     summed over the expert's replicas (one all-to-all-v);
 *   AdamW             on the shards (a flat loop, as for dense parameters);
 *   weights to slots  slice g of each expert to every slot of it in the
 *                     NEXT placement (one all-to-all-v): the same bytes
 *                     whether or not the placement changed.
 * The `replicated` mode is the baseline the benchmark compares with: every
 * rank keeps all experts' optimizer state, expert gradients are all-reduced. */
#ifndef SMOE_SHARDS_H
#define SMOE_SHARDS_H

#include "backend.h"
#include "comm.h"
#include "placement.h"

typedef struct {
  const smoe_ops_t *ops; /* the backend of every buffer below but counts */
  int L, E, G, S, rank;
  int replicated;      /* baseline: chunk = P, every rank owns every expert */
  size_t P, chunk;     /* elements per expert, per slice */
  size_t n;            /* L * E * chunk: elements of each state buffer */
  real *state;         /* one allocation: master | exp_avg | exp_avg_sq */
  real *master;        /* (L, E, chunk) this rank's slice of every expert */
  real *exp_avg;       /* (L, E, chunk) */
  real *exp_avg_sq;    /* (L, E, chunk) */
  real *grad;          /* (L, E, chunk) gradient slices (not optimizer state) */
  real *send, *recv;   /* exchange scratch, (L * G * S * chunk) each */
  int64_t *counts;     /* (4, G) an exchange's counts and offsets */
  real *gathered;      /* host: (chunk) this rank's slice, then on rank 0 (G * chunk)
                        * every rank's: gather_one's (replicated: rank 0's chunk = P) */
  size_t bytes;        /* what init allocated: state, grad, send, recv, counts, gathered */
  size_t exchange_bytes; /* of which send, recv, counts and gathered */
} smoe_shards_t;

void smoe_shards_init(smoe_shards_t *sh, const smoe_ops_t *ops, int L, int E, size_t P, int S,
                      smoe_comm_t *c, int replicated);
/* What init allocates on rank `rank`, without allocating: n (elements of
 * each state buffer), the state and gradient slices (state_bytes) and the
 * exchange buffers (exchange_bytes); sh->bytes is their sum. */
void smoe_shards_plan(int L, int E, size_t P, int S, int G, int rank, int replicated,
                      size_t *n, size_t *state_bytes, size_t *exchange_bytes);
void smoe_shards_free(smoe_shards_t *sh);


/* Values [lo, lo + n) of expert (l, e)'s vector into out. */
typedef void (*smoe_expert_init_fn)(const void *arg, int l, int e, size_t lo, size_t n,
                                    real *out);
/* master <- this rank's slice of every expert, from fn (moments untouched). */
void smoe_shards_fill(smoe_shards_t *sh, smoe_expert_init_fn fn, const void *arg);
/* Values [off, off + n) of expert (l, e), x in host memory: the part inside
 * this rank's slice into master (a tensor read from a file, one at a time). */
void smoe_shards_put(smoe_shards_t *sh, int l, int e, size_t off, const real *x, size_t n);
/* Expert (l, e)'s P values gathered from every rank's slice to rank 0: all
 * ranks call it; rank 0 gets them in host memory (valid until the next
 * call), the others NULL. */
const real *smoe_shards_gather_one(smoe_shards_t *sh, smoe_comm_t *c, int l, int e);

/* grad <- the sum over replicas of the slot gradients slot_grad (L, S, P) of
 * placement p, this rank's slice (phase grad_to_shards). */
void smoe_shards_grads(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                       const real *slot_grad);
/* slots (L, S, P) <- the weights of the experts placement next gives this
 * rank, assembled from every rank's master slices (phase weights_to_slots). */
void smoe_shards_weights(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *next,
                         real *slots);
/* The same within a step for layer l's slots s >= s0 (its shadow slots,
 * shadow.h) of placement p (phase shadow): every rank sends its slice of
 * each shadow's expert to the shadow's rank. Collective; every rank holds
 * the same p. */
void smoe_shards_shadow_weights(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                                real *slots, int l, int s0);

#endif
