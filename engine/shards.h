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

#include "comm.h"
#include "placement.h"

typedef struct {
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
  size_t bytes;        /* what init allocated: state, grad, send, recv and counts */
  size_t exchange_bytes; /* of which send, recv and counts */
} smoe_shards_t;

void smoe_shards_init(smoe_shards_t *sh, int L, int E, size_t P, int S, smoe_comm_t *c,
                      int replicated);
void smoe_shards_free(smoe_shards_t *sh);


/* master <- this rank's slices of full (L, E, P). */
void smoe_shards_load(smoe_shards_t *sh, const real *full);
/* full (L, E, P) on rank 0 <- every rank's master slices, gathered one
 * expert at a time (all ranks call it; full is not touched elsewhere, except
 * in the replicated mode, where every rank holds every expert). */
void smoe_shards_gather(smoe_shards_t *sh, smoe_comm_t *c, real *full);

/* grad <- the sum over replicas of the slot gradients slot_grad (L, S, P) of
 * placement p, this rank's slice (phase grad_to_shards). */
void smoe_shards_grads(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *p,
                       const real *slot_grad);
/* slots (L, S, P) <- the weights of the experts placement next gives this
 * rank, assembled from every rank's master slices (phase weights_to_slots). */
void smoe_shards_weights(smoe_shards_t *sh, smoe_comm_t *c, const smoe_placement_t *next,
                         real *slots);

#endif
