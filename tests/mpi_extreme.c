/* mpi_extreme: under mpirun, the swiftmoe policy on the most skewed routing
 * there is: a selection bias sends every token to expert 0 (K = 1). A few
 * training steps of the engine's own step (step.h) must drop nothing, give
 * expert 0 a replica on every rank, and keep the busiest rank within 10% of
 * the mean (static would put all tokens on one rank: imbalance G).
 * Prints "N passed, M failed"; exit 1 on any failure. */
#include <string.h>

#include "comm.h"
#include "config.h"
#include "step.h"

int main(int argc, char **argv) {
  smoe_comm_t *c = smoe_comm_init(&argc, &argv);
  const int G = smoe_comm_size(c), rank = smoe_comm_rank(c);
  smoe_config_t cfg;
  smoe_config_defaults(&cfg);
  cfg.dim = 16, cfg.n_layers = 2, cfg.n_heads = 2, cfg.n_kv_heads = 1, cfg.seq_len = 16;
  cfg.num_experts = 8, cfg.top_k = 1, cfg.expert_dim = 16, cfg.vocab_size = 64;
  snprintf(cfg.policy, sizeof cfg.policy, "swiftmoe");
  const int B = 4, T = cfg.seq_len, L = cfg.n_layers, E = cfg.num_experts;
  smoe_err_t err;
  smoe_step_ctx_t x;
  if (smoe_step_init(&x, &cfg, B, c, NULL, &err) != 0) {
    fprintf(stderr, "mpi_extreme: %s\n", err.msg);
    smoe_comm_abort(c, 1);
  }
  smoe_model_t *m = &x.m;
  for (int l = 0; l < L; l++) m->expert_bias[(size_t)l * E] = 100; /* every token to expert 0 */
  int32_t *tokens = xmalloc(sizeof(int32_t) * B * (T + 1));
  int failed = 0;
  double imbalance = 0;
  int64_t dropped = 0;
  for (int step = 0; step < 4; step++) {
    for (int i = 0; i < B * (T + 1); i++)
      tokens[i] = (int32_t)(smoe_mix64((uint64_t)(step * 1000 + rank * 100 + i)) % 64);
    smoe_step_out_t so;
    if (smoe_step(&x, tokens, step, NULL, &so, &err) != 0) {
      fprintf(stderr, "mpi_extreme: %s\n", err.msg);
      smoe_comm_abort(c, 1);
    }
    for (int l = 0; l < L; l++) { /* the step's forward: its plans and counts */
      dropped += m->dropped[l];
      int64_t rows = m->plans[l].rows_recv, mx = rows, sum = rows;
      smoe_comm_allreduce_max_i64(c, &mx, 1, SMOE_PHASE_OTHER);
      smoe_comm_allreduce_i64(c, &sum, 1, SMOE_PHASE_OTHER);
      double imb = (double)mx * G / (double)sum;
      if (step > 0 && imb > imbalance) imbalance = imb;
      if (m->expert_counts[(size_t)l * E] != (int64_t)G * B * T) failed |= 1;
    }
  }
  int replicas_all = 1;
  for (int l = 0; l < L; l++) replicas_all &= m->placement.replicas[(size_t)l * E] == G;
  int pass = 0;
  pass += !(failed & 1), pass += dropped == 0, pass += replicas_all, pass += imbalance <= 1.10;
  if (rank == 0) {
    printf("all %d tokens per step to expert 0; expert 0 replicas %d of %d ranks; worst "
           "imbalance after the first plan %.3f; dropped %lld\n",
           G * B * T, m->placement.replicas[0], G, imbalance, (long long)dropped);
    printf("%d passed, %d failed\n", pass, 4 - pass);
  }
  smoe_step_free(&x);
  free(tokens);
  smoe_comm_finalize(c);
  return pass == 4 ? 0 : 1;
}
