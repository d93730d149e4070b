/* dispatch_bench: under mpirun, the time of one MoE layer's token exchange
 * (plan + dispatch + combine, forward) against the local expert compute
 * (the slots' MLPs, forward) for several token counts, with uniform random
 * routing. Rank 0 prints one markdown row per token count: the medians over
 * repeats of the slowest rank's times.
 *
 * usage: mpirun -np G dispatch_bench [D F E K] */
#include <string.h>

#include "comm.h"
#include "dispatch.h"
#include "moe.h"
#include "train.h"

static smoe_arena_t scratch; /* the planner's, split's and dispatch's temporary arrays */

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  smoe_comm_t *c = smoe_comm_init(&argc, &argv);
  const int G = smoe_comm_size(c), rank = smoe_comm_rank(c);
  const int D = argc > 1 ? atoi(argv[1]) : 128, F = argc > 2 ? atoi(argv[2]) : 256,
            E = argc > 3 ? atoi(argv[3]) : 8, K = argc > 4 ? atoi(argv[4]) : 2;
  if (E % G) {
    if (rank == 0) fprintf(stderr, "dispatch_bench: E = %d not divisible by %d ranks\n", E, G);
    smoe_comm_abort(c, 2);
  }
  smoe_set_threads(1);
  const int S = E / G, reps = 15;
  const size_t P = smoe_expert_numel(D, F);
  int *expert_slot = xmalloc(sizeof(int) * E);
  for (int e = 0; e < E; e++) expert_slot[e] = e;
  real *w = xmalloc(sizeof(real) * S * P);
  for (size_t i = 0; i < S * P; i++) w[i] = (real)(0.01 * ((i * 7919) % 13 - 6));
  if (rank == 0) {
    printf("| ranks | tokens per rank | dispatch+combine ms | expert compute ms | ratio |\n");
    printf("|---|---|---|---|---|\n");
  }
  for (int N = 512; N <= 8192; N *= 4) {
    const int NK = N * K;
    const int64_t R = (int64_t)G * NK;
    int32_t *idx = xmalloc(sizeof(int32_t) * NK);
    int *pos = xmalloc(sizeof(int) * NK);
    real *x = xmalloc(sizeof(real) * N * D), *send = xmalloc(sizeof(real) * NK * D);
    real *recv = xmalloc(sizeof(real) * R * D), *xe = xmalloc(sizeof(real) * R * D);
    real *ys = xmalloc(sizeof(real) * R * D), *h13 = xmalloc(sizeof(real) * R * 2 * F);
    real *act = xmalloc(sizeof(real) * R * F), *back = xmalloc(sizeof(real) * NK * D);
    for (size_t i = 0; i < (size_t)N * D; i++) x[i] = (real)((i % 17) * 0.01);
    smoe_dispatch_t d;
    smoe_dispatch_init(&d, &smoe_ops_cpu, G, S, rank, R, NK);
    double tx[reps], tc[reps];
    for (int r = 0; r < reps; r++) {
      uint64_t seed = smoe_mix64(1234 + r * 100 + rank);
      for (int n = 0; n < N; n++) { /* K distinct experts, uniform */
        int e0 = (int)(smoe_mix64(seed + n) % E);
        for (int k = 0; k < K; k++) idx[n * K + k] = (e0 + k) % E;
      }
      smoe_comm_barrier(c);
      double t0 = smoe_now();
      smoe_dispatch_plan(&d, c, pos, idx, NULL, expert_slot, E, NK, &scratch);
      smoe_moe_gather(send, x, pos, N, K, D);
      smoe_dispatch_to_slots(&d, c, send, recv, xe, D, SMOE_PHASE_DISPATCH);
      double t1 = smoe_now();
      smoe_experts_forward(ys, h13, act, xe, w, d.slot_offsets, S, D, F);
      double t2 = smoe_now();
      smoe_dispatch_from_slots(&d, c, ys, recv, back, D, SMOE_PHASE_COMBINE);
      double t3 = smoe_now();
      double times[2] = {(t1 - t0) + (t3 - t2), t2 - t1};
      /* the slowest rank sets the step: max over ranks */
      int64_t us[2] = {(int64_t)(times[0] * 1e6), (int64_t)(times[1] * 1e6)};
      smoe_comm_allreduce_max_i64(c, us, 2, SMOE_PHASE_OTHER);
      tx[r] = (double)us[0] / 1e3, tc[r] = (double)us[1] / 1e3;
    }
    qsort(tx, reps, sizeof(double), cmp);
    qsort(tc, reps, sizeof(double), cmp);
    if (rank == 0)
      printf("| %d | %d | %.3f | %.3f | %.2f |\n", G, N, tx[reps / 2], tc[reps / 2],
             tc[reps / 2] > 0 ? tx[reps / 2] / tc[reps / 2] : 0);
    smoe_dispatch_free(&d);
    free(idx), free(pos), free(x), free(send), free(recv), free(xe), free(ys), free(h13);
    free(act), free(back);
  }
  free(expert_slot), free(w);
  smoe_comm_finalize(c);
  return 0;
}
