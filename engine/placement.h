/* placement.h: where expert replicas live, and the `capacity` drop rule.
 * Pure functions over arrays: no MPI, no I/O, the same answer on every rank.
 *
 * Each rank has S slots per MoE layer; a slot holds one replica of one
 * logical expert. slot_expert (L, G, S) names the expert of every slot of
 * every rank, replicas (L, E) counts each expert's replicas. */
#ifndef SMOE_PLACEMENT_H
#define SMOE_PLACEMENT_H

#include "arena.h"
#include "common.h"

typedef struct {
  int L, E, G, S;
  int *slot_expert; /* (L, G, S) logical expert of each slot; -1 = empty */
  int *replicas;    /* (L, E) replicas per expert */
} smoe_placement_t;

/* Allocates an empty placement (every slot -1). */
void smoe_placement_init(smoe_placement_t *p, int L, int E, int G, int S);
void smoe_placement_free(smoe_placement_t *p);
void smoe_placement_copy(smoe_placement_t *dst, const smoe_placement_t *src);

/* Slots per rank for a policy: `requested` if > 0 (it must satisfy G*S >= E;
 * slots beyond E on a rank stay empty, a rank holding at most one replica of
 * each expert), else E/G for static and capacity, min(E, max(E/G + 1, 2E/G))
 * (E/G rounded up) for the adaptive policies. Returns S, or -1 with err. */
int smoe_slots_per_rank(const char *policy, int requested, int E, int G, smoe_err_t *err);

/* The `static` policy: one replica per expert, expert e in slot e % (E/G) of
 * rank e / (E/G); slots beyond E/G stay empty. E not divisible by G is an
 * error saying so. p must be initialised with S >= E/G. */
int smoe_placement_static(smoe_placement_t *p, smoe_err_t *err);

/* The `random` policy (for tests): a new placement per (seed, step), every
 * expert at least once, replicas of an expert on distinct ranks, the other
 * slots filled with random experts where a rank can take one more. */
void smoe_placement_random(smoe_placement_t *p, uint64_t seed, int64_t step,
                           smoe_arena_t *scratch);

/* replicas <- counted from slot_expert. */
void smoe_placement_count_replicas(smoe_placement_t *p);

/* Checks the invariants (every slot empty or an expert in 0..E-1, every
 * expert placed, replicas on distinct ranks, replica counts consistent).
 * Returns 0 or -1 with err naming the layer, rank, slot or expert. */
int smoe_placement_check(const smoe_placement_t *p, smoe_err_t *err);

/* route (L, G, E): the global slot (g * S + s) that rank q's tokens for
 * expert e go to: its replica on rank q if there is one (tokens stay
 * local), else its replicas in rank order, taken round-robin by q. */
void smoe_placement_routes(const smoe_placement_t *p, int *route, smoe_arena_t *scratch);

/* Capacity per expert on one rank (DeepSpeed/GShard):
 * max(min_capacity, ceil(capacity_factor * K * n_tokens / E)). */
int64_t smoe_capacity(double capacity_factor, int64_t min_capacity, int K, int64_t n_tokens,
                      int E);

/* Marks which of the N*K assignments (idx, gw: (N, K)) each expert e keeps
 * under its capacity[e] (E): keep[a] = 1 or 0. Priority: by position (all first choices in
 * token order, then all second choices, ... as DeepSpeed's top-k gating), or
 * with by_weight set, highest gate weight first (ties: position). Returns the
 * number dropped. */
int64_t smoe_capacity_keep(uint8_t *keep, const int32_t *idx, const real *gw, int N, int K, int E,
                           const int64_t *capacity, int by_weight, smoe_arena_t *scratch);

#endif
