/* dispatch.c: the exchange plan and the two directions of one exchange. */
#include "dispatch.h"

#include <string.h>

void smoe_dispatch_init(smoe_dispatch_t *d, const smoe_ops_t *ops, int G, int S, int rank,
                        int64_t rows_max, int64_t nk_max) {
  memset(d, 0, sizeof *d);
  d->ops = ops;
  d->G = G, d->S = S, d->rank = rank, d->rows_max = rows_max, d->nk_max = nk_max;
  d->table = xcalloc((size_t)G * G * S, sizeof(int64_t));
  d->send_counts = xcalloc((size_t)G * 4, sizeof(int64_t));
  d->send_offsets = d->send_counts + G;
  d->recv_counts = d->send_counts + 2 * G;
  d->recv_offsets = d->send_counts + 3 * G;
  d->slot_offsets = xcalloc((size_t)S + 1, sizeof(int));
  d->recv_to_slot = xcalloc((size_t)(rows_max ? rows_max : 1), sizeof(int));
  d->recv_to_slot_dev = ops->alloc(sizeof(int) * (size_t)(rows_max ? rows_max : 1));
  d->slot_of = ops->alloc(sizeof(int32_t) * (size_t)(nk_max ? nk_max : 1));
  d->bytes = smoe_dispatch_bytes(G, S, rows_max, nk_max);
}

size_t smoe_dispatch_bytes(int G, int S, int64_t rows_max, int64_t nk_max) {
  return sizeof(int64_t) * ((size_t)G * G * S + 4 * (size_t)G) +
         sizeof(int) * ((size_t)S + 1 + 2 * (size_t)(rows_max ? rows_max : 1) +
                        (size_t)(nk_max ? nk_max : 1));
}

void smoe_dispatch_free(smoe_dispatch_t *d) {
  free(d->table);
  free(d->send_counts);
  free(d->slot_offsets);
  free(d->recv_to_slot);
  if (d->ops) d->ops->free(d->recv_to_slot_dev), d->ops->free(d->slot_of);
  memset(d, 0, sizeof *d);
}

/* The plan from each assignment's global slot (slot_of[a], -1 = dropped). */
static void build_plan(smoe_dispatch_t *d, smoe_comm_t *c, int *pos, const int32_t *slot_of,
                       int NK, smoe_arena_t *sa) {
  const int G = d->G, S = d->S, GS = G * S, r = d->rank;
  int64_t *local = smoe_arena_take(sa, sizeof(int64_t) * GS);
  int64_t *fill = smoe_arena_take(sa, sizeof(int64_t) * GS);
  d->ops->histogram(local, slot_of, NK, GS);
  /* send order: by global slot, assignments in order within a slot */
  int64_t at = 0;
  for (int gs = 0; gs < GS; gs++) fill[gs] = at, at += local[gs];
  d->rows_send = at;
  d->ops->positions(pos, slot_of, fill, NK, GS, sa);
  for (int g = 0; g < G; g++) {
    d->send_counts[g] = 0;
    for (int s = 0; s < S; s++) d->send_counts[g] += local[g * S + s];
    d->send_offsets[g] = g ? d->send_offsets[g - 1] + d->send_counts[g - 1] : 0;
  }
  smoe_comm_allgather(c, local, d->table, sizeof(int64_t) * GS, SMOE_PHASE_COUNTS);
  /* what arrives here: from each source q, its rows for my slots, slot by slot */
  const int64_t *col = d->table + (size_t)r * S; /* table[q][r*S + s] = col[q*GS + s] */
  d->rows_recv = 0;
  for (int q = 0; q < G; q++) {
    d->recv_counts[q] = 0;
    for (int s = 0; s < S; s++) d->recv_counts[q] += col[(size_t)q * GS + s];
    d->recv_offsets[q] = d->rows_recv;
    d->rows_recv += d->recv_counts[q];
  }
  if (d->rows_recv > d->rows_max) {
    fprintf(stderr, "swiftmoe: internal error: %lld rows for %lld buffered\n",
            (long long)d->rows_recv, (long long)d->rows_max);
    smoe_comm_abort(c, 1);
  }
  d->slot_offsets[0] = 0;
  for (int s = 0; s < S; s++) {
    int64_t n = 0;
    for (int q = 0; q < G; q++) n += col[(size_t)q * GS + s];
    d->slot_offsets[s + 1] = d->slot_offsets[s] + (int)n;
  }
  /* slot order: by slot, then source, then the source's order (from the
   * counts alone: the permutation the row ops apply) */
  for (int s = 0; s < S; s++) fill[s] = d->slot_offsets[s];
  for (int q = 0; q < G; q++) {
    int64_t row = d->recv_offsets[q];
    for (int s = 0; s < S; s++)
      for (int64_t i = 0; i < col[(size_t)q * GS + s]; i++) d->recv_to_slot[row++] = (int)fill[s]++;
  }
  d->ops->to_device(d->recv_to_slot_dev, d->recv_to_slot, sizeof(int) * (size_t)d->rows_recv);
}

/* the assignments a plan routes fit its buffer */
static void check_nk(const smoe_dispatch_t *d, smoe_comm_t *c, int NK) {
  if (NK <= d->nk_max) return;
  fprintf(stderr, "swiftmoe: internal error: %d assignments for a plan of %lld\n", NK,
          (long long)d->nk_max);
  smoe_comm_abort(c, 1);
}

void smoe_dispatch_plan(smoe_dispatch_t *d, smoe_comm_t *c, int *pos, const int32_t *idx,
                        const uint8_t *keep, const int *expert_slot, int E, int NK,
                        smoe_arena_t *scratch) {
  check_nk(d, c, NK);
  const size_t mark = smoe_arena_mark(scratch);
  d->ops->route_slots(d->slot_of, idx, keep, expert_slot, E, NK);
  build_plan(d, c, pos, d->slot_of, NK, scratch);
  smoe_arena_release(scratch, mark);
}

void smoe_dispatch_plan_split(smoe_dispatch_t *d, smoe_comm_t *c, int *pos, const int32_t *idx,
                              const uint8_t *keep, const int64_t *quota, const int *slot_expert,
                              int E, int NK, smoe_arena_t *scratch) {
  const int GS = d->G * d->S;
  check_nk(d, c, NK);
  const size_t mark = smoe_arena_mark(scratch);
  /* each expert's slots in global order, and how much each may still take */
  int *first = smoe_arena_take(scratch, sizeof(int) * (size_t)(E + 1));
  int *slots = smoe_arena_take(scratch, sizeof(int) * GS);
  int32_t *slot_of = d->slot_of;
  int64_t *left = smoe_arena_take(scratch, sizeof(int64_t) * GS);
  memcpy(left, quota, sizeof(int64_t) * GS);
  int n = 0;
  for (int e = 0; e < E; e++) {
    first[e] = n;
    for (int gs = 0; gs < GS; gs++)
      if (slot_expert[gs] == e) slots[n++] = gs;
  }
  first[E] = n;
  if (d->ops->split_slots(slot_of, idx, keep, first, slots, left, E, NK, scratch) != 0) {
    fprintf(stderr, "swiftmoe: internal error: the split gives an expert too few tokens\n");
    smoe_comm_abort(c, 1);
  }
  build_plan(d, c, pos, slot_of, NK, scratch);
  smoe_arena_release(scratch, mark);
}

void smoe_dispatch_to_slots(const smoe_dispatch_t *d, smoe_comm_t *c, const real *send,
                            real *scratch, real *out, int D, smoe_phase_t phase) {
  const size_t row = sizeof(real) * (size_t)D;
  smoe_comm_alltoallv(c, send, d->send_counts, d->send_offsets, scratch, d->recv_counts,
                      d->recv_offsets, row, phase);
  d->ops->permute_rows(out, scratch, d->recv_to_slot_dev, d->rows_recv, D, 1);
}

void smoe_dispatch_from_slots(const smoe_dispatch_t *d, smoe_comm_t *c, const real *in,
                              real *scratch, real *out, int D, smoe_phase_t phase) {
  const size_t row = sizeof(real) * (size_t)D;
  d->ops->permute_rows(scratch, in, d->recv_to_slot_dev, d->rows_recv, D, 0);
  smoe_comm_alltoallv(c, scratch, d->recv_counts, d->recv_offsets, out, d->send_counts,
                      d->send_offsets, row, phase);
}
