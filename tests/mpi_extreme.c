/* mpi_extreme: under mpirun, the swiftmoe policy on the most skewed routing
 * there is: a selection bias sends every token to expert 0 (K = 1). A few
 * training steps through the engine's own pieces must drop nothing, give
 * expert 0 a replica on every rank, and keep the busiest rank within 10% of
 * the mean (static would put all tokens on one rank: imbalance G).
 * Prints "N passed, M failed"; exit 1 on any failure. */
#include <string.h>

#include "comm.h"
#include "config.h"
#include "data.h"
#include "model.h"
#include "moe.h"
#include "optim.h"
#include "policy.h"
#include "shards.h"

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
  smoe_model_t m;
  if (smoe_model_init_dist(&m, &cfg, B, c, &err) != 0) {
    fprintf(stderr, "mpi_extreme: %s\n", err.msg);
    smoe_comm_abort(c, 1);
  }
  for (int l = 0; l < L; l++) m.expert_bias[(size_t)l * E] = 100; /* every token to expert 0 */
  smoe_shards_t sh;
  smoe_shards_init(&sh, L, E, smoe_expert_numel(cfg.dim, cfg.expert_dim), m.S, c, 0);
  smoe_shards_load(&sh, m.experts_full);
  smoe_policy_t pol;
  smoe_policy_init(&pol, "swiftmoe", L, E, G, m.S, 1, 0, &err);
  smoe_placement_t next;
  smoe_placement_init(&next, L, E, G, m.S);
  int32_t *tokens = xmalloc(sizeof(int32_t) * B * (T + 1));
  int failed = 0;
  double imbalance = 0;
  int64_t dropped = 0;
  for (int step = 0; step < 4; step++) {
    for (int i = 0; i < B * (T + 1); i++)
      tokens[i] = (int32_t)(smoe_mix64((uint64_t)(step * 1000 + rank * 100 + i)) % 64);
    smoe_model_forward(&m, tokens, B);
    smoe_model_zero_grad(&m);
    smoe_model_backward(&m);
    smoe_shards_grads(&sh, c, &m.placement, m.experts_grad);
    smoe_adamw_t o = {1e-3, 0.9, 0.95, 1e-8, 0.0};
    smoe_adamw_step(sh.master, sh.grad, sh.exp_avg, sh.exp_avg_sq, sh.n, &o, step + 1);
    for (int l = 0; l < L; l++) {
      dropped += m.dropped[l];
      int64_t rows = m.plans[l].rows_recv, mx = rows, sum = rows;
      smoe_comm_allreduce_max_i64(c, &mx, 1, SMOE_PHASE_OTHER);
      smoe_comm_allreduce_i64(c, &sum, 1, SMOE_PHASE_OTHER);
      if (step > 0) imbalance = (double)mx * G / (double)sum > imbalance ? (double)mx * G / (double)sum : imbalance;
      if (m.expert_counts[(size_t)l * E] != (int64_t)G * B * T) failed |= 1;
    }
    smoe_policy_next(&pol, m.expert_counts, m.src_counts, step + 1, &m.placement, &next);
    smoe_shards_weights(&sh, c, &next, m.experts);
    smoe_model_set_placement(&m, &next);
  }
  int replicas_all = 1;
  for (int l = 0; l < L; l++) replicas_all &= m.placement.replicas[(size_t)l * E] == G;
  int pass = 0;
  pass += !(failed & 1), pass += dropped == 0, pass += replicas_all, pass += imbalance <= 1.10;
  if (rank == 0) {
    printf("all %d tokens per step to expert 0; expert 0 replicas %d of %d ranks; worst "
           "imbalance after the first plan %.3f; dropped %lld\n",
           G * B * T, m.placement.replicas[0], G, imbalance, (long long)dropped);
    printf("%d passed, %d failed\n", pass, 4 - pass);
  }
  smoe_placement_free(&next);
  smoe_policy_free(&pol);
  smoe_shards_free(&sh);
  smoe_model_free(&m);
  free(tokens);
  smoe_comm_finalize(c);
  return pass == 4 ? 0 : 1;
}
