/* placement.h: where expert replicas live, and the `capacity` drop rule.
 * Pure functions over arrays: no MPI, no I/O, the same answer on every rank.
 *
 * Each rank has S slots per MoE layer; a slot holds one replica of one
 * logical expert. slot_expert (L, G, S) names the expert of every slot of
 * every rank, replicas (L, E) counts each expert's replicas. */
#ifndef SMOE_PLACEMENT_H
#define SMOE_PLACEMENT_H

#include "common.h"

typedef struct {
  int L, E, G, S;
  int *slot_expert; /* (L, G, S) logical expert of each slot; -1 = empty */
  int *replicas;    /* (L, E) replicas per expert */
} smoe_placement_t;

/* The `static` policy: one replica per expert, expert e in slot e % S of rank
 * e / S, S = E / G. E not divisible by G is an error saying so. */
int smoe_placement_static(smoe_placement_t *p, int L, int E, int G, smoe_err_t *err);
void smoe_placement_free(smoe_placement_t *p);

/* Global slot (g * S + s) of expert e's first replica in layer l. */
int smoe_placement_slot_of(const smoe_placement_t *p, int l, int e);

/* Capacity per expert on one rank (DeepSpeed/GShard):
 * max(min_capacity, ceil(capacity_factor * K * n_tokens / E)). */
int64_t smoe_capacity(double capacity_factor, int64_t min_capacity, int K, int64_t n_tokens,
                      int E);

/* Marks which of the N*K assignments (idx, gw: (N, K)) an expert keeps under
 * `capacity`: keep[a] = 1 or 0. Priority: by position (all first choices in
 * token order, then all second choices, ... as DeepSpeed's top-k gating), or
 * with by_weight set, highest gate weight first (ties: position). Returns the
 * number dropped. */
int64_t smoe_capacity_keep(uint8_t *keep, const int32_t *idx, const real *gw, int N, int K, int E,
                           int64_t capacity, int by_weight);

#endif
