#define _POSIX_C_SOURCE 200809L
/* test_cuda_ops: the CUDA flat-buffer kernels (cuda/cuda_ops.h) against their
 * CPU references (optim.h, the CPU op table) on random inputs of awkward
 * sizes (0, 1, 4095, 4097 and a few hundred thousand elements): fill, add,
 * scale, AdamW (three steps, with weight decay), the sum of squares and
 * SwiGLU forward and backward (rows x F of 1 x 1, 3 x 1408, 257 x 96), and
 * the MoE block's gather, combine (and their backwards) and row permutes
 * (N x K x D of 1 x 1 x 1, 64 x 2 x 128, 300 x 8 x 33, with dropped
 * assignments) must give the same bits. Without a usable device it prints why and exits 77,
 * which ctest reports as skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda_ops.h"
#include "elem.h"
#include "moe.h"
#include "optim.h"

static char err[256];
static int failed;

#define CUDA_OK(call)                                                         \
  do {                                                                        \
    if ((call) != 0) {                                                        \
      fprintf(stderr, "test_cuda_ops: %s:%d: %s\n", __FILE__, __LINE__, err); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

static float *device_copy(const float *x, size_t n) {
  void *d;
  CUDA_OK(smoe_cuda_alloc(&d, n * sizeof(float), err, sizeof err));
  CUDA_OK(smoe_cuda_to_device(d, x, n * sizeof(float), err, sizeof err));
  return d;
}

/* d (device, n) equals want (host) bit for bit */
static void same(const char *what, size_t n, const float *d, const float *want) {
  float *got = malloc(n * sizeof(float) + 1);
  CUDA_OK(smoe_cuda_to_host(got, d, n * sizeof(float), err, sizeof err));
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; i++)
    if (memcmp(got + i, want + i, sizeof(float)) != 0 && bad++ == 0) first = i;
  printf("%-6s n = %-7zu %s", what, n, bad ? "FAIL" : "bitwise equal");
  if (bad)
    printf(": %zu differ, first [%zu] %.9g vs CPU %.9g", bad, first, got[first], want[first]);
  printf("\n");
  failed += bad > 0;
  free(got);
}

static void randomize(float *x, size_t n, unsigned *seed, float scale) {
  for (size_t i = 0; i < n; i++) x[i] = scale * ((float)rand_r(seed) / RAND_MAX - 0.5f);
}

static void check_size(size_t n, unsigned seed) {
  float *p = malloc(n * sizeof(float) + 1), *g = malloc(n * sizeof(float) + 1),
        *m = calloc(n + 1, sizeof(float)), *v = calloc(n + 1, sizeof(float));
  randomize(p, n, &seed, 0.2f);
  randomize(g, n, &seed, 2.0f);
  float *dp = device_copy(p, n), *dg = device_copy(g, n), *dm = device_copy(m, n),
        *dv = device_copy(v, n);
  /* AdamW: three steps, the CPU's on the same buffers */
  smoe_adamw_t o = {3e-3, 0.9, 0.95, 1e-8, 0.1};
  for (int64_t t = 1; t <= 3; t++) {
    smoe_adamw_step(p, g, m, v, n, &o, t);
    CUDA_OK(smoe_cuda_adamw(dp, dg, dm, dv, n, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, t,
                            err, sizeof err));
  }
  same("adamw", n, dp, p);
  same("exp_avg", n, dm, m);
  same("exp_avg_sq", n, dv, v);
  double want = smoe_sumsq(g, n), got;
  CUDA_OK(smoe_cuda_sumsq(dg, n, &got, err, sizeof err));
  printf("sumsq  n = %-7zu %s (%.17g)\n", n,
         memcmp(&got, &want, sizeof got) ? "FAIL" : "bitwise equal", got);
  failed += memcmp(&got, &want, sizeof got) != 0;
  smoe_ops_cpu.scale(g, n, 0.37f);
  CUDA_OK(smoe_cuda_scale(dg, n, 0.37f, err, sizeof err));
  same("scale", n, dg, g);
  smoe_ops_cpu.add(p, g, n);
  CUDA_OK(smoe_cuda_add(dp, dg, n, err, sizeof err));
  same("add", n, dp, p);
  smoe_ops_cpu.fill(m, -1.5f, n);
  CUDA_OK(smoe_cuda_fill(dm, -1.5f, n, err, sizeof err));
  same("fill", n, dm, m);
  smoe_cuda_free(dp), smoe_cuda_free(dg), smoe_cuda_free(dm), smoe_cuda_free(dv);
  free(p), free(g), free(m), free(v);
}

/* SwiGLU forward and backward on rows x F, against the CPU's element (elem.h,
 * what smoe_experts_forward/_backward compute between their GEMMs) */
static void check_swiglu(int64_t rows, int F, unsigned seed) {
  const size_t n = (size_t)rows * F;
  float *h13 = malloc(2 * n * sizeof(float) + 1), *g = malloc(n * sizeof(float) + 1),
        *act = malloc(n * sizeof(float) + 1), *dh = malloc(2 * n * sizeof(float) + 1);
  randomize(h13, 2 * n, &seed, 12.0f); /* saturates the sigmoid at both ends too */
  randomize(g, n, &seed, 2.0f);
  for (int64_t r = 0; r < rows; r++)
    for (int i = 0; i < F; i++) {
      const float *h1 = h13 + (size_t)r * 2 * F + i;
      float *d1 = dh + (size_t)r * 2 * F + i;
      act[(size_t)r * F + i] = smoe_swiglu_f32(h1[0], h1[F]);
      smoe_swiglu_backward_f32(g[(size_t)r * F + i], h1[0], h1[F], d1, d1 + F);
    }
  float *d_h13 = device_copy(h13, 2 * n), *d_g = device_copy(g, n), *d_act, *d_dh;
  CUDA_OK(smoe_cuda_alloc((void **)&d_act, n * sizeof(float), err, sizeof err));
  CUDA_OK(smoe_cuda_alloc((void **)&d_dh, 2 * n * sizeof(float), err, sizeof err));
  CUDA_OK(smoe_cuda_swiglu(d_act, d_h13, rows, F, err, sizeof err));
  CUDA_OK(smoe_cuda_swiglu_backward(d_dh, d_g, d_h13, rows, F, err, sizeof err));
  same("swiglu", n, d_act, act);
  same("swiglu'", 2 * n, d_dh, dh);
  smoe_cuda_free(d_h13), smoe_cuda_free(d_g), smoe_cuda_free(d_act), smoe_cuda_free(d_dh);
  free(h13), free(g), free(act), free(dh);
}

static int *device_ints(const int *x, size_t n) {
  void *d;
  CUDA_OK(smoe_cuda_alloc(&d, n * sizeof(int), err, sizeof err));
  CUDA_OK(smoe_cuda_to_device(d, x, n * sizeof(int), err, sizeof err));
  return d;
}

/* The MoE block's row moves on N tokens x K choices (every 5th assignment
 * dropped, the rest sent in a shuffled order) and a row permutation, against
 * moe.h's and the CPU table's */
static void check_moe(int N, int K, int D, unsigned seed) {
  const size_t NK = (size_t)N * K, ND = (size_t)N * D;
  int *pos = malloc(NK * sizeof(int) + 1), rows = 0;
  for (size_t a = 0; a < NK; a++) pos[a] = a % 5 == 4 ? -1 : rows++;
  for (size_t a = NK; a-- > 1;) { /* shuffle the kept rows' order */
    size_t b = (size_t)rand_r(&seed) % (a + 1);
    if (pos[a] >= 0 && pos[b] >= 0) {
      int t = pos[a];
      pos[a] = pos[b], pos[b] = t;
    }
  }
  const size_t RD = (size_t)rows * D;
  float *x = malloc(ND * sizeof(float) + 1), *gw = malloc(NK * sizeof(float) + 1),
        *xe = calloc(RD + 1, sizeof(float)), *dx = malloc(ND * sizeof(float) + 1),
        *out = malloc(ND * sizeof(float) + 1), *dye = calloc(RD + 1, sizeof(float)),
        *dgw = malloc(NK * sizeof(float) + 1), *perm = calloc(RD + 1, sizeof(float));
  randomize(x, ND, &seed, 2.0f), randomize(gw, NK, &seed, 1.0f);
  randomize(dx, ND, &seed, 1.0f), randomize(out, ND, &seed, 1.0f);
  float *d_x = device_copy(x, ND), *d_gw = device_copy(gw, NK), *d_xe = device_copy(xe, RD),
        *d_dx = device_copy(dx, ND), *d_out = device_copy(out, ND), *d_dye = device_copy(dye, RD),
        *d_dgw = device_copy(dgw, NK), *d_perm = device_copy(perm, RD);
  int *d_pos = device_ints(pos, NK);
  int *map = malloc((size_t)rows * sizeof(int) + 1); /* row r -> row (r * 7 + 3) mod rows */
  for (int r = 0; r < rows; r++) map[r] = (int)(((int64_t)r * 7 + 3) % rows);
  int *d_map = device_ints(map, (size_t)rows);
  smoe_moe_gather(xe, x, pos, N, K, D);
  CUDA_OK(smoe_cuda_moe_gather(d_xe, d_x, d_pos, N, K, D, err, sizeof err));
  same("gather", RD, d_xe, xe);
  smoe_moe_gather_backward(dx, xe, pos, N, K, D);
  CUDA_OK(smoe_cuda_moe_gather_backward(d_dx, d_xe, d_pos, N, K, D, err, sizeof err));
  same("gather'", ND, d_dx, dx);
  smoe_moe_combine(out, xe, gw, pos, N, K, D);
  CUDA_OK(smoe_cuda_moe_combine(d_out, d_xe, d_gw, d_pos, N, K, D, err, sizeof err));
  same("combine", ND, d_out, out);
  smoe_moe_combine_backward(dye, dgw, x, xe, gw, pos, N, K, D);
  CUDA_OK(smoe_cuda_moe_combine_backward(d_dye, d_dgw, d_x, d_xe, d_gw, d_pos, N, K, D, err,
                                         sizeof err));
  same("dye", RD, d_dye, dye);
  same("dgw", NK, d_dgw, dgw);
  for (int scatter = 0; scatter < 2; scatter++) {
    smoe_ops_cpu.permute_rows(perm, xe, map, rows, D, scatter);
    CUDA_OK(smoe_cuda_permute_rows(d_perm, d_xe, d_map, rows, D, scatter, err, sizeof err));
    same(scatter ? "scatter" : "permute", RD, d_perm, perm);
  }
  float *dev[] = {d_x, d_gw, d_xe, d_dx, d_out, d_dye, d_dgw, d_perm};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) smoe_cuda_free(dev[i]);
  smoe_cuda_free(d_pos), smoe_cuda_free(d_map);
  free(pos), free(map), free(x), free(gw), free(xe), free(dx), free(out), free(dye), free(dgw);
  free(perm);
}

int main(void) {
  char why[256];
  if (!smoe_cuda_available(why, sizeof why)) {
    printf("test_cuda_ops: skipped: %s\n", why);
    return 77;
  }
  const size_t sizes[] = {0, 1, 4095, 4097, 300007};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    check_size(sizes[i], 1234u + (unsigned)i);
  check_swiglu(1, 1, 7u);
  check_swiglu(3, 1408, 8u);
  check_swiglu(257, 96, 9u);
  check_moe(1, 1, 1, 10u);
  check_moe(64, 2, 128, 11u);
  check_moe(300, 8, 33, 12u);
  printf("test_cuda_ops: %s\n", failed ? "FAILED" : "all bitwise equal to the CPU");
  return failed ? 1 : 0;
}
