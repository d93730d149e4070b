/* step_parts: where a training step's time goes, on the configured device
 * (training.device: cpu, cuda or guard), one process:
 *   fwd+bwd    the model's forward and backward (each MoE layer's router,
 *              counts, plan, dispatch, experts, combine; attention; loss)
 *   optimizer  the two AdamWs alone: the expert shards and the dense
 *              parameters (this rank's slices)
 *   step       the whole step (smoe_step: adds gradients to shards,
 *              clipping, the optimizers, the next plan, weights to slots)
 * Each is the median over --iters runs after one warm-up, the device
 * synchronised around it (a 1-byte copy to the host). The expert GEMMs'
 * share of fwd+bwd is reported as their FLOPs (18 N K D F per layer, no
 * drops) over the fwd+bwd time: a lower bound of their rate, since the time
 * includes everything else. Random tokens; one markdown table on stdout.
 *   step_parts [--config FILE] [--set SECTION.KEY=VALUE ...] [--iters N]  */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "config.h"
#include "step.h"

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void sync(const smoe_model_t *m) {
  char b;
  m->ops->to_host(&b, m->experts, 1);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmpd);
  return t[n / 2];
}

int main(int argc, char **argv) {
  smoe_config_t c;
  smoe_err_t err;
  smoe_config_defaults(&c);
  int iters = 10;
  for (int i = 1; i < argc; i++) {
    int rc = 0;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      rc = smoe_config_load(&c, argv[++i], &err);
    else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
      rc = smoe_config_set(&c, argv[++i], &err);
    else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
      iters = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: step_parts [--config FILE] [--set SECTION.KEY=VALUE ...] [--iters N]\n");
      return 2;
    }
    if (rc != 0) {
      fprintf(stderr, "step_parts: %s\n", err.msg);
      return 2;
    }
  }
  if (iters < 1 || iters > 1000 || smoe_config_validate(&c, &err) != 0) {
    fprintf(stderr, "step_parts: %s\n", iters < 1 || iters > 1000 ? "--iters: 1 to 1000" : err.msg);
    return 2;
  }
  smoe_comm_t *comm = smoe_comm_local();
  smoe_step_ctx_t x;
  const int B = c.global_batch_size, T = c.seq_len;
  if (smoe_step_init(&x, &c, B, comm, NULL, &err) != 0) {
    fprintf(stderr, "step_parts: %s\n", err.msg);
    return 1;
  }
  smoe_model_t *m = &x.m;
  int32_t *batch = xmalloc(sizeof(int32_t) * (size_t)B * (T + 1));
  uint64_t r = 0x5eed;
  for (size_t i = 0; i < (size_t)B * (T + 1); i++)
    batch[i] = (int32_t)((r = smoe_mix64(r)) % (uint64_t)c.vocab_size);
  double *t_fb = xmalloc(sizeof(double) * iters), *t_opt = xmalloc(sizeof(double) * iters),
         *t_step = xmalloc(sizeof(double) * iters);
  smoe_adamw_t o = {1e-4, c.beta1, c.beta2, c.adam_eps, c.weight_decay};
  const real *dg = m->dense_sharded ? m->dense_grad_shard : m->dense_grad_mem;
  const size_t nd = m->dense_sharded ? m->dense_len : m->n_dense;
  for (int i = -1; i < iters; i++) { /* i = -1: the warm-up (arenas, cuBLAS) */
    double t0 = smoe_now();
    smoe_model_forward(m, batch, B);
    smoe_model_zero_grad(m);
    smoe_model_backward(m);
    sync(m);
    double t1 = smoe_now();
    m->ops->adamw(x.sh.master, x.sh.grad, x.sh.exp_avg, x.sh.exp_avg_sq, x.sh.n, &o, 1);
    m->ops->adamw(m->dense_mem + (m->dense_sharded ? m->dense_lo : 0), dg, x.dm, x.dv, nd, &o, 1);
    sync(m);
    double t2 = smoe_now();
    smoe_step_out_t out;
    if (smoe_step(&x, batch, i + 1, NULL, &out, &err) != 0) {
      fprintf(stderr, "step_parts: %s\n", err.msg);
      return 1;
    }
    sync(m);
    double t3 = smoe_now();
    if (i >= 0) t_fb[i] = t1 - t0, t_opt[i] = t2 - t1, t_step[i] = t3 - t2;
  }
  const double fb = median(t_fb, iters), opt = median(t_opt, iters), st = median(t_step, iters);
  const double gemm = 18.0 * B * T * c.top_k * (double)c.dim * c.expert_dim * c.n_layers;
  printf("step_parts: device %s, GEMM operands %s, %s; L %d, D %d, E %d, K %d, F %d, "
         "batch %d x %d; median of %d\n\n",
         c.device, c.dtype, SMOE_REAL_NAME, c.n_layers, c.dim, c.num_experts, c.top_k,
         c.expert_dim, B, T, iters);
  printf("| part | median ms | note |\n|---|---|---|\n");
  printf("| fwd+bwd | %.2f | expert GEMMs at >= %.2f TFLOP/s (their FLOPs / this time) |\n",
         fb * 1e3, gemm / fb / 1e12);
  printf("| optimizer | %.2f | AdamW over %zu expert-shard and %zu dense values |\n", opt * 1e3,
         x.sh.n, nd);
  printf("| step | %.2f | the whole step; %.0f tokens/s |\n", st * 1e3, B * (double)T / st);
  free(batch), free(t_fb), free(t_opt), free(t_step);
  smoe_step_free(&x);
  smoe_comm_finalize(comm);
  return 0;
}
