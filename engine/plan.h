/* plan.h: the planner of adaptive replication, for one MoE layer: how many
 * replicas each expert gets (counts) and which slot holds which replica
 * (slots). Pure functions over arrays: no MPI, no I/O, no globals, no
 * randomness; the same inputs give the same placement on every rank.
 *
 * Sizes: E experts, G ranks of S slots each, G*S >= E. A placement is
 * slot_expert (G*S): the expert of slot s of rank g at [g*S + s], -1 = empty.
 * Every function takes its scratch from the caller's arena (arena.h) and gives
 * it back before returning; the caller owns every array it passes. Loads are compared and summed as
 * doubles in a fixed order: ranks running the same build get the same plan
 * (builds that differ in floating-point contraction, e.g. FMA, might not). */
#ifndef SMOE_PLAN_H
#define SMOE_PLAN_H

#include "arena.h"
#include "common.h"

typedef enum { SMOE_COUNTS_PROPORTIONAL = 0, SMOE_COUNTS_GREEDY } smoe_count_rule_t;
typedef enum { SMOE_SLOTS_CONTIGUOUS = 0, SMOE_SLOTS_EPLB, SMOE_SLOTS_BALANCED } smoe_slot_rule_t;

/* Replica counts for one layer: loads (E) >= 0 (token counts or an EMA of
 * them); G ranks of S slots. Output replicas (E): each in [1, G], summing to
 * min(G*S, G*E). Requires G*S >= E (assert).
 *
 * SMOE_COUNTS_PROPORTIONAL, the SwiftMoE paper's Alg. 1: goal_e = load share x
 * total slots (all loads zero: total / E each), r_e = floor(goal_e) clamped to
 * [1, G]; then, one slot at a time, while too few: +1 to the expert with the
 * largest goal_e - r_e that is below G (ties: lower index); while too many:
 * -1 from the expert with the smallest goal_e - r_e that is above 1 (ties:
 * higher index).
 *
 * SMOE_COUNTS_GREEDY (DeepSeek EPLB): every expert 1, then each spare slot to
 * the expert with the highest load per current replica, never above G. Ties:
 * fewer current replicas, then the lower index (so that equal loads, e.g. all
 * zero before the first step, share the slots round-robin instead of piling
 * onto expert 0). This minimises max_e load_e / r_e. */
void smoe_plan_counts(smoe_count_rule_t rule, const double *loads, int E, int G, int S,
                      int *replicas, smoe_arena_t *scratch);

/* Slots for one layer: replicas (E) from smoe_plan_counts (each in [1, G],
 * sum <= G*S); output slot_expert (G*S), -1 only where G*S > sum(replicas);
 * the replicas of an expert always on distinct ranks, every expert placed.
 * src (G*E) = last iteration's tokens each rank sent to each expert, or NULL:
 * where a rule has a choice between ranks it rates equal, the expert goes to
 * the rank that sent it the most tokens, so tokens stay local (only its top
 * r_e + 2 senders count, found in one pass over src; then the lower rank).
 * Within a rank, slots fill in order (slot 0 first).
 *
 * SMOE_SLOTS_CONTIGUOUS, the paper's: experts in index order, each replica in
 * the first free slot, rank by rank, on a rank that does not hold the expert
 * yet (src is not used).
 * SMOE_SLOTS_EPLB, DeepSeek's packing: experts by load per replica, heaviest
 * first; each replica onto the least-loaded rank (load = sum of load/replica
 * of the replicas it holds) with a free slot and no replica of the expert.
 * SMOE_SLOTS_BALANCED, ours, aware that the split moves the load of a
 * multi-replica expert between its replicas (and only that): the
 * multi-replica experts first, most replicas (then highest load) first, each
 * with all but one replica on the lowest-level ranks that hold no
 * multi-replica expert yet and one on the lowest-level rank that does, so
 * that together they cover every rank they can and form one connected graph
 * over which the split moves load; each one's load poured over its ranks to
 * a common level (water-filling, as the split does). Then the single-replica
 * experts (fixed load), heaviest first, each onto the lowest-level rank whose
 * free slot the experts still to place do not need (Gale-Ryser). With one
 * slot per rank every free rank is empty: each expert in that order takes
 * its top senders, then the lowest free ranks. Under +-30% noise at
 * S = E/G + 1 its split is 5-25% less imbalanced than eplb's (tools/bench).
 *
 * Never fails: when a greedy step finds fewer eligible ranks than replicas
 * (distinct-rank constraint), a swap with an already placed replica makes
 * room. */
void smoe_plan_slots(smoe_slot_rule_t rule, const double *loads, const int *replicas,
                     const int64_t *src, int E, int G, int S, int *slot_expert,
                     smoe_arena_t *scratch);

#endif
