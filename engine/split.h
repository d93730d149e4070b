/* split.h: the load-aware token split for one MoE layer: how many of the
 * tokens each source rank routes to an expert go to each of that expert's
 * replicas. Pure functions over arrays: no MPI, no I/O, no globals; integer
 * arithmetic and fixed tie-breaks only, so every rank computes the identical
 * result from the all-gathered counts.
 *
 * Sizes: E experts, G ranks of S slots; global slot gs = g*S + s holds expert
 * slot_expert[gs] (-1 = empty; an expert's replicas on distinct ranks, as
 * smoe_plan_slots makes them). counts (G*E): this iteration's tokens from
 * each source rank q to each expert e at [q*E + e]. An expert with tokens but
 * no slot is a caller bug: a message on stderr and abort(). The caller owns
 * every array; the functions take their scratch from the caller's arena a
 * (arena.h) and give it back before returning. */
#ifndef SMOE_SPLIT_H
#define SMOE_SPLIT_H

#include "arena.h"
#include "common.h"

/* The load-aware split. Output take (G * G*S): take[q*(G*S) + gs] = tokens
 * source q sends to global slot gs. Guarantees:
 * (a) every token is sent: for each q, e, the sum of take over the slots of
 *     e is counts[q*E + e]; nothing goes to a slot of another expert;
 * (b) the largest number of tokens any rank computes is the optimum of the
 *     fractional problem (min over splits of max over ranks of received
 *     tokens) rounded up to a whole token: single-replica experts are fixed,
 *     the multi-replica ones are spread by a max-flow (Dinic) at the least
 *     feasible integer cap, found by exponential search and bisection;
 * (c) tokens go to a replica on their own rank first: the flow starts from
 *     the all-local split (capped at the first cap tried) and moves tokens
 *     off their rank only along augmenting paths (locality is preferred, not
 *     maximised: this is not a min-cost flow); per expert, each replica's
 *     quota serves its own rank's tokens before any other, the rest fill the
 *     remaining quotas in source order, replicas in slot order.
 * Cost: two passes over counts, the (G, G*S) table, and a few max-flows on
 * the multi-replica experts' graph (0.7 ms at G = 1024, E = 256, S = 1 on
 * one core, a third of it zeroing the table; see smoe_split_row). */
void smoe_split(const int64_t *counts, const int *slot_expert, int E, int G, int S, int64_t *take,
                smoe_arena_t *a);

/* Tokens each rank computes under take: rank_load (G). */
void smoe_split_rank_load(const int64_t *take, int G, int S, int64_t *rank_load);

/* The `symi` baseline split: each expert's tokens from each source split
 * evenly among its replicas in slot order, the remainder one each to the
 * first replicas; no balancing. Same output layout as smoe_split. */
void smoe_split_even(const int64_t *counts, const int *slot_expert, int E, int G, int S,
                     int64_t *take, smoe_arena_t *a);

/* Row q of the same splits alone: take_row (G*S) = take[q*(G*S) + gs], what
 * source rank q sends to each slot (a rank's own send counts), identical to
 * the row of the full table but without building it (one pass over counts;
 * 0.13 ms where smoe_split takes 0.7). */
void smoe_split_row(const int64_t *counts, const int *slot_expert, int E, int G, int S, int q,
                    int64_t *take_row, smoe_arena_t *a);
void smoe_split_even_row(const int64_t *counts, const int *slot_expert, int E, int G, int S, int q,
                         int64_t *take_row, smoe_arena_t *a);

/* Rows each slot computes (rows, G*S) from the experts' totals T (E) alone,
 * for a model without per-source counts (the cluster simulator, whatif.h):
 * even = 0: the load-aware split's quotas (the same least cap (b) as
 * smoe_split; its flow warm-started as if every source routed T_e / G);
 * even = 1: each expert's T_e over its replicas in slot order, the remainder
 * one each to the first. */
void smoe_split_slot_rows(const int64_t *T, const int *slot_expert, int E, int G, int S, int even,
                          int64_t *rows, smoe_arena_t *a);

#endif
