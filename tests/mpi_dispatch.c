/* mpi_dispatch: run under mpirun (any number of ranks). Checks on real MPI:
 *  - dispatch then combine with identity experts returns every kept token
 *    row exactly, and each slot sees its rows in global token order;
 *  - the capacity rule on a routing skewed on purpose drops exactly the hand
 *    computed count, summed over ranks;
 *  - the byte counters count what was sent to other ranks.
 * Prints "N passed, M failed"; exit 1 on any failure. */
#include <string.h>

#include "comm.h"
#include "dispatch.h"
#include "moe.h"
#include "placement.h"

static smoe_arena_t scratch; /* the planner's, split's and dispatch's temporary arrays */

static int passed, failed;
#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (cond) {                                           \
      passed++;                                           \
    } else {                                              \
      failed++;                                           \
      fprintf(stderr, "[rank %d] FAIL: ", rank);          \
      fprintf(stderr, __VA_ARGS__);                       \
      fputc('\n', stderr);                                \
    }                                                     \
  } while (0)

int main(int argc, char **argv) {
  smoe_comm_t *c = smoe_comm_init(&argc, &argv);
  const int G = smoe_comm_size(c), rank = smoe_comm_rank(c);
  const int N = 37, K = 2, D = 3, S = 2, E = G * S, NK = N * K;
  int32_t *idx = xmalloc(sizeof(int32_t) * NK);
  int *pos = xmalloc(sizeof(int) * NK), *expert_slot = xmalloc(sizeof(int) * E);
  for (int e = 0; e < E; e++) expert_slot[e] = e; /* static: expert e in global slot e */
  for (int n = 0; n < N; n++) { /* two distinct experts per token, varied by rank */
    idx[n * K] = (int32_t)((n * 7 + rank * 3) % E);
    idx[n * K + 1] = (int32_t)((idx[n * K] + 1 + n % (E - 1)) % E);
  }
  /* row of (rank, n): values encode where it came from */
  real *x = xmalloc(sizeof(real) * N * D), *send = xmalloc(sizeof(real) * NK * D);
  real *recv = xmalloc(sizeof(real) * (size_t)G * NK * D), *xe = xmalloc(sizeof(real) * (size_t)G * NK * D);
  real *back = xmalloc(sizeof(real) * NK * D);
  for (int n = 0; n < N; n++)
    for (int i = 0; i < D; i++) x[n * D + i] = (real)(rank * 1000 + n + 0.25 * i);

  smoe_dispatch_t d;
  smoe_dispatch_init(&d, &smoe_ops_cpu, G, S, rank, (int64_t)G * NK, NK);
  uint8_t *keep = xmalloc((size_t)NK);
  for (int a = 0; a < NK; a++) keep[a] = (a % 5) != 3; /* drop some, to exercise pos = -1 */
  smoe_comm_reset_bytes(c);
  smoe_dispatch_plan(&d, c, pos, idx, keep, expert_slot, E, NK, &scratch);
  smoe_moe_gather(send, x, pos, N, K, D);
  smoe_dispatch_to_slots(&d, c, send, recv, xe, D, SMOE_PHASE_DISPATCH);
  /* slot order: within each local slot, sources in rank order, tokens in order */
  for (int s = 0; s < S; s++) {
    double prev = -1;
    int ordered = 1;
    for (int r = d.slot_offsets[s]; r < d.slot_offsets[s + 1]; r++) {
      ordered &= xe[(size_t)r * D] > prev;
      prev = xe[(size_t)r * D];
    }
    CHECK(ordered, "slot %d rows are not in global token order", s);
  }
  smoe_dispatch_from_slots(&d, c, xe, recv, back, D, SMOE_PHASE_COMBINE); /* identity experts */
  int exact = 1, kept = 0;
  for (int a = 0; a < NK; a++) {
    if (!keep[a]) {
      exact &= pos[a] == -1;
      continue;
    }
    kept++;
    exact &= memcmp(back + (size_t)pos[a] * D, x + (size_t)(a / K) * D, sizeof(real) * D) == 0;
  }
  CHECK(exact, "dispatch + combine with identity experts did not return the input exactly");
  CHECK(d.rows_send == kept, "rows_send %lld, kept %d", (long long)d.rows_send, kept);
  int64_t bytes[SMOE_PHASE_COUNT], to_others = 0;
  smoe_comm_bytes(c, bytes);
  for (int g = 0; g < G; g++)
    if (g != rank) to_others += d.send_counts[g] * (int64_t)(sizeof(real) * D);
  CHECK(bytes[SMOE_PHASE_DISPATCH] == to_others, "dispatch bytes %lld, want %lld",
        (long long)bytes[SMOE_PHASE_DISPATCH], (long long)to_others);
  int64_t total_rows[2] = {d.rows_send, d.rows_recv};
  smoe_comm_allreduce_i64(c, total_rows, 2, SMOE_PHASE_OTHER);
  CHECK(total_rows[0] == total_rows[1], "rows sent %lld != rows received %lld",
        (long long)total_rows[0], (long long)total_rows[1]);

  /* capacity on a skewed routing: every token picks experts (0, 1) */
  for (int n = 0; n < N; n++) idx[n * K] = 0, idx[n * K + 1] = 1;
  real *gw = xmalloc(sizeof(real) * NK);
  for (int a = 0; a < NK; a++) gw[a] = 0.5;
  int64_t cap = smoe_capacity(1.0, 0, K, N, E); /* ceil(2 N / E) */
  int64_t *caps = xmalloc(sizeof(int64_t) * E);
  for (int e = 0; e < E; e++) caps[e] = cap;
  int64_t dropped = smoe_capacity_keep(keep, idx, gw, N, K, E, caps, 0, &scratch);
  free(caps);
  smoe_comm_allreduce_i64(c, &dropped, 1, SMOE_PHASE_OTHER);
  int64_t want = (int64_t)G * 2 * (N > cap ? N - cap : 0);
  CHECK(dropped == want, "capacity %lld dropped %lld, hand count %lld", (long long)cap,
        (long long)dropped, (long long)want);

  int64_t sums[2] = {passed, failed};
  smoe_comm_allreduce_i64(c, sums, 2, SMOE_PHASE_OTHER);
  if (rank == 0) printf("%lld passed, %lld failed\n", (long long)sums[0], (long long)sums[1]);
  smoe_dispatch_free(&d);
  free(idx), free(pos), free(expert_slot), free(x), free(send), free(recv), free(xe), free(back);
  free(keep), free(gw);
  smoe_comm_finalize(c);
  return sums[1] ? 1 : 0;
}
