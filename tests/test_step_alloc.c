/* test_step_alloc: after the first step, a training step allocates nothing.
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free, so
 * every allocation the engine's own code makes (the smoe library and this
 * test) goes through the counters below; the system libraries' own
 * allocations (MPI, OpenBLAS, OpenMP) are theirs and not counted. Under
 * mpirun, for each placement policy: a context, 10 steps, and the
 * allocations made during steps 2-10 (summed over ranks) must be 0. And
 * the memory the context reports by kind (from its allocations) equals what
 * smoe_step_plan_memory computes without allocating (`swiftmoe memory`),
 * on every rank, for each policy and both optimizer modes. And, with the
 * sharded dense optimizer, the overlap: every step's backward started all
 * 7 L + 2 dense reduce-scatter buckets, the first of them before its
 * compute ended.
 * Prints one line per policy and "N passed, M failed"; exit 1 on failure. */
#include <stdio.h>
#include <string.h>

#include "comm.h"
#include "config.h"
#include "step.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static int counting;
static long long allocs;

void *__wrap_malloc(size_t n) {
  allocs += counting;
  return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t s) {
  allocs += counting;
  return __real_calloc(n, s);
}
void *__wrap_realloc(void *p, size_t n) {
  allocs += counting;
  return __real_realloc(p, n);
}
void __wrap_free(void *p) {
  allocs += counting && p;
  __real_free(p);
}

int main(int argc, char **argv) {
  smoe_comm_t *c = smoe_comm_init(&argc, &argv);
  const int G = smoe_comm_size(c), rank = smoe_comm_rank(c);
  static const char *const policies[] = {"swiftmoe", "static", "capacity", "symi", "random"};
  int passed = 0, failed = 0;
  for (int p = 0; p < 5; p++) {
    smoe_config_t cfg;
    smoe_config_defaults(&cfg);
    cfg.dim = 16, cfg.n_layers = 2, cfg.n_heads = 2, cfg.n_kv_heads = 1, cfg.seq_len = 16;
    cfg.num_experts = 8, cfg.expert_dim = 16, cfg.vocab_size = 64, cfg.steps = 10;
    cfg.warmup_steps = 2, cfg.capacity_factor = 0.5, cfg.bias_update_rate = 1e-3;
    snprintf(cfg.policy, sizeof cfg.policy, "%s", policies[p]);
    if (p == 0) cfg.n_layers = 10; /* 72 buckets: more than one block of requests in flight */
    if (p == 1) snprintf(cfg.expert_optimizer, sizeof cfg.expert_optimizer, "replicated");
    if (p == 4) snprintf(cfg.dense_optimizer, sizeof cfg.dense_optimizer, "replicated");
    const int B = 4, T = cfg.seq_len;
    cfg.global_batch_size = B * G;
    smoe_err_t err;
    smoe_step_ctx_t x;
    if (smoe_step_init(&x, &cfg, B, c, NULL, &err) != 0) {
      fprintf(stderr, "test_step_alloc: %s\n", err.msg);
      smoe_comm_abort(c, 1);
    }
    int32_t tokens[4 * 17];
    long long during = 0;
    double early_ms = 0; /* summed over steps: the first bucket's start before the compute's end */
    int64_t late = 0;    /* steps where that did not hold */
    for (int step = 0; step < 10; step++) {
      for (int i = 0; i < B * (T + 1); i++) /* skewed: some experts hot, the plan moves */
        tokens[i] =
            (int32_t)(smoe_mix64((uint64_t)(step * 7919 + rank * 104729 + i)) % (8 + 8 * step));
      smoe_step_out_t so;
      allocs = 0;
      counting = step >= 1;
      int rc = smoe_step(&x, tokens, step, NULL, &so, &err);
      counting = 0;
      if (rc != 0) {
        fprintf(stderr, "test_step_alloc: %s\n", err.msg);
        smoe_comm_abort(c, 1);
      }
      during += allocs;
      const smoe_model_t *m = &x.m;
      if (m->dense_sharded) {
        early_ms += 1e3 * (m->t_backward_done - m->t_first_bucket);
        late += m->buckets_started != 7 * cfg.n_layers + 2 || m->t_first_bucket >= m->t_backward_done;
      }
    }
    smoe_mem_t got, planned;
    smoe_step_memory(&x, &got);
    if (smoe_step_plan_memory(&cfg, G, rank, &planned, &err) != 0) {
      fprintf(stderr, "test_step_alloc: %s\n", err.msg);
      smoe_comm_abort(c, 1);
    }
    int64_t differ = 0;
    for (int k = 0; k < SMOE_MEM_KINDS; k++) {
      if (k == SMOE_MEM_SCRATCH || k == SMOE_MEM_STAGING) continue; /* measured; the saver's */
      if (got.bytes[k] != planned.bytes[k]) {
        differ++;
        fprintf(stderr, "rank %d %s: %s allocated %zu bytes, planned %zu  FAIL\n", rank,
                policies[p], smoe_mem_names[k], got.bytes[k], planned.bytes[k]);
      }
    }
    int64_t total = during;
    smoe_comm_allreduce_i64(c, &total, 1, SMOE_PHASE_OTHER);
    smoe_comm_allreduce_i64(c, &differ, 1, SMOE_PHASE_OTHER);
    smoe_comm_allreduce_i64(c, &late, 1, SMOE_PHASE_OTHER);
    if (rank == 0 && x.m.dense_sharded)
      printf("%-8s G = %d: dense reduce-scatter in %d buckets per step, the first started %.2f ms "
             "(mean) before the backward's compute ended%s\n", policies[p], G,
             7 * cfg.n_layers + 2, early_ms / 10, late ? "; NOT on every step  FAIL" : "");
    if (rank == 0)
      printf("%-8s G = %d: %lld allocations and frees in steps 2-10 (all ranks)%s; memory by "
             "kind %s the plan\n", policies[p], G, (long long)total, total ? "  FAIL" : "",
             differ ? "differs from  FAIL" : "equals");
    total || differ || late ? failed++ : passed++;
    smoe_step_free(&x);
  }
  if (rank == 0) printf("%d passed, %d failed\n", passed, failed);
  smoe_comm_finalize(c);
  return failed ? 1 : 0;
}
