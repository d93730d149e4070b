/* dispatch.h: moving token rows between the ranks that route them and the
 * slots that compute them (Megatron-Core's "dispatcher"), for one MoE layer.
 *
 * A plan is built once per layer per step from the routing: each kept
 * assignment (token n, choice k) goes to the global slot (rank g, slot s) of
 * its expert. Rows leave a rank in "send order" (by global slot, then by
 * assignment), arrive in "receive order" (by source rank, then slot) and are
 * computed in "slot order" (by local slot, then source rank, then position):
 * for a static placement that is global token order, exactly as one process
 * would compute it. The same plan carries the backward pass. */
#ifndef SMOE_DISPATCH_H
#define SMOE_DISPATCH_H

#include "arena.h"
#include "backend.h"
#include "comm.h"

typedef struct {
  const smoe_ops_t *ops; /* the row ops (histogram, positions, permute) */
  int G, S, rank;
  int64_t *table;        /* (G, G*S) rows each source sends to each global slot */
  int64_t *send_counts;  /* (G) rows to each rank */
  int64_t *send_offsets; /* (G) */
  int64_t *recv_counts;  /* (G) rows from each rank */
  int64_t *recv_offsets; /* (G) */
  int *slot_offsets;     /* (S+1) rows of each local slot in slot order */
  int *recv_to_slot;     /* (rows_max) slot-order row of each received row (host) */
  int *recv_to_slot_dev; /* (rows_max) the same, in the backend's memory, for permute_rows */
  int32_t *slot_of;      /* (nk_max) each assignment's global slot (backend memory) */
  int64_t rows_send, rows_recv, rows_max, nk_max;
  size_t bytes; /* what init allocated */
} smoe_dispatch_t;

/* Allocates a plan for G ranks of S slots routing at most nk_max
 * assignments and receiving at most rows_max rows, whose per-assignment and
 * per-row work runs on ops. */
void smoe_dispatch_init(smoe_dispatch_t *d, const smoe_ops_t *ops, int G, int S, int rank,
                        int64_t rows_max, int64_t nk_max);
void smoe_dispatch_free(smoe_dispatch_t *d);
/* What init allocates for such a plan (d->bytes). */
size_t smoe_dispatch_bytes(int G, int S, int64_t rows_max, int64_t nk_max);

/* Builds the plan: assignment a of idx (N*K experts) goes to global slot
 * expert_slot[idx[a]] (E experts) unless keep (may be NULL) says 0. pos (N*K) gets each
 * assignment's send-order row, -1 when dropped. All-gathers the counts
 * (phase counts): every rank must call it. */
void smoe_dispatch_plan(smoe_dispatch_t *d, smoe_comm_t *c, int *pos, const int32_t *idx,
                        const uint8_t *keep, const int *expert_slot, int E, int NK,
                        smoe_arena_t *scratch);

/* The same with the load-aware split: this rank's assignments to expert e
 * fill e's slots (slot_expert (G*S)) in global slot order, each up to
 * quota[gs] tokens (this rank's row of the split; quotas must cover every
 * kept assignment). */
void smoe_dispatch_plan_split(smoe_dispatch_t *d, smoe_comm_t *c, int *pos, const int32_t *idx,
                              const uint8_t *keep, const int64_t *quota, const int *slot_expert,
                              int E, int NK, smoe_arena_t *scratch);

/* send (rows_send, D), send order -> out (rows_recv, D), slot order. */
void smoe_dispatch_to_slots(const smoe_dispatch_t *d, smoe_comm_t *c, const real *send,
                            real *scratch, real *out, int D, smoe_phase_t phase);
/* in (rows_recv, D), slot order -> out (rows_send, D), send order, at the source. */
void smoe_dispatch_from_slots(const smoe_dispatch_t *d, smoe_comm_t *c, const real *in,
                              real *scratch, real *out, int D, smoe_phase_t phase);

#endif
