#define _POSIX_C_SOURCE 200809L
/* test_cuda_ops: the CUDA ops of cuda_ops.cu and ops_moe.cu against their
 * CPU references (the CPU op table, moe.h, optim.h, placement.h) on random
 * inputs with fixed seeds, edge shapes (n = 0, 1, 4095, 4097, 300007 for
 * flat ops; N = 1, K = 1, E = 1, empty experts and slots, dropped
 * assignments, failing splits) and a realistic MoE layer (N 512, E 8, K 2,
 * D 64, F 96). Ops that share the CPU's element code and order must give
 * the same bits: fill, copy, add, scale, AdamW, the sum of squares, row
 * permutes, gather/combine and their backwards, the router's statistics and
 * backward, and the float router forward. Integer outputs (choices, keep,
 * slots, positions, counts, quotas, return values) must be equal. The rest
 * is compared within a bound relative to the largest reference value,
 * stated per precision below (cuBLAS GEMMs in the expert MLPs; the double
 * router forward, whose exp and log come from CUDA's libm). Backward ops
 * that accumulate start from non-zero outputs. One line per op and shape
 * with PASS/FAIL and the largest difference; exit 1 on any failure, 77
 * (skipped) without a usable device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "backend.h"
#include "cuda_ops.h"
#include "moe.h"
#include "optim.h"
#include "placement.h"

#ifdef SMOE_REAL_DOUBLE
/* DGEMM vs OpenBLAS and CUDA's exp in SwiGLU: ~1e-15 relative; the GPU fp64
 * mode must match the CPU's double build to 1e-9 */
#define TOL_GEMM 1e-10
/* router forward: CUDA's double exp and log vs glibc's (an ulp or two) */
#define TOL_ROUTER 1e-12
#define TOL_LSE 1e-12
#else
/* float GEMMs of 64 to 192 terms in another order, then SwiGLU and a second
 * GEMM: ~1e-6 relative to the largest value; an index error is O(1) */
#define TOL_GEMM 1e-4
#define TOL_ROUTER -1 /* bitwise: elem.h's float exp, IEEE divisions */
/* lse = (float)(mx + log(sum)) with a double log that may differ from
 * glibc's by an ulp, which can flip the float rounding (about 1e-9 odds) */
#define TOL_LSE 2.4e-7
#endif

static int failed;
static smoe_arena_t arena;

static void *dev_copy(const void *h, size_t bytes) {
  void *d = smoe_cuda_alloc(bytes);
  smoe_cuda_to_device(d, h, bytes);
  return d;
}

static void *host_copy(const void *d, size_t bytes) {
  void *h = malloc(bytes + 1);
  smoe_cuda_to_host(h, d, bytes);
  return h;
}

static void *xmem(size_t bytes) {
  void *p = malloc(bytes + 1);
  if (!p) {
    fprintf(stderr, "test_cuda_ops: out of memory\n");
    exit(1);
  }
  return p;
}

static void report(const char *op, const char *shape, int ok, const char *fmt, double diff) {
  printf("%-22s %-26s %s  ", op, shape, ok ? "PASS" : "FAIL");
  printf(fmt, diff);
  printf("\n");
  failed += !ok;
}

/* device d (n reals) against want: bitwise when tol < 0, else max |d - want|
 * / max |want| <= tol */
static void check_real(const char *op, const char *shape, const real *d, const real *want, size_t n,
                       double tol) {
  real *got = host_copy(d, sizeof(real) * n);
  double diff = 0, big = 0;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - (double)want[i]);
    if (e > diff || e != e) diff = e;
    if (fabs((double)want[i]) > big) big = fabs((double)want[i]);
    bad += memcmp(got + i, want + i, sizeof(real)) != 0;
  }
  if (tol < 0) {
    report(op, shape, bad == 0, "bitwise, max diff %.3g", diff);
  } else {
    double rel = big > 0 ? diff / big : diff;
    report(op, shape, rel <= tol, "max diff %.3g relative to the largest", rel);
  }
  free(got);
}

/* integer or byte arrays: exactly equal (got is host memory) */
static void check_same(const char *op, const char *shape, const void *got, const void *want,
                       size_t n, size_t size) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    bad += memcmp((const char *)got + i * size, (const char *)want + i * size, size) != 0;
  report(op, shape, bad == 0, "%.0f elements differ", (double)bad);
}

static void check_dev_same(const char *op, const char *shape, const void *d, const void *want,
                           size_t n, size_t size) {
  void *got = host_copy(d, n * size);
  check_same(op, shape, got, want, n, size);
  free(got);
}

static real uniform(unsigned *seed, double scale) {
  return (real)(scale * ((double)rand_r(seed) / RAND_MAX - 0.5));
}

static void randomize(real *x, size_t n, unsigned *seed, double scale) {
  for (size_t i = 0; i < n; i++) x[i] = uniform(seed, scale);
}

/* ---- flat buffers ---------------------------------------------------- */

static void check_flat(size_t n, unsigned seed) {
  char shape[64];
  snprintf(shape, sizeof shape, "n=%zu", n);
  const size_t b = sizeof(real) * n;
  real *p = xmem(b), *g = xmem(b), *m = xmem(b), *v = xmem(b);
  randomize(p, n, &seed, 0.2);
  randomize(g, n, &seed, 2.0);
  memset(m, 0, b), memset(v, 0, b);
  real *dp = dev_copy(p, b), *dg = dev_copy(g, b), *dm = dev_copy(m, b), *dv = dev_copy(v, b);
  smoe_adamw_t o = {3e-3, 0.9, 0.95, 1e-8, 0.1};
  for (int64_t t = 1; t <= 3; t++) {
    smoe_ops_cpu.adamw(p, g, m, v, n, &o, t);
    smoe_cuda_adamw(dp, dg, dm, dv, n, &o, t);
  }
  check_real("adamw p", shape, dp, p, n, -1);
  check_real("adamw m", shape, dm, m, n, -1);
  check_real("adamw v", shape, dv, v, n, -1);
  double want = smoe_ops_cpu.sumsq(g, n), got = smoe_cuda_sumsq(dg, n);
  report("sumsq", shape, memcmp(&got, &want, sizeof got) == 0, "bitwise, diff %.3g",
         fabs(got - want));
  smoe_ops_cpu.scale(g, n, (real)0.37);
  smoe_cuda_scale(dg, n, (real)0.37);
  check_real("scale", shape, dg, g, n, -1);
  smoe_ops_cpu.add(p, g, n);
  smoe_cuda_add(dp, dg, n);
  check_real("add", shape, dp, p, n, -1);
  smoe_ops_cpu.copy(m, p, n);
  smoe_cuda_copy(dm, dp, n);
  check_real("copy", shape, dm, m, n, -1);
  if (n > 3) { /* overlapping, both directions (memmove) */
    smoe_ops_cpu.copy(m + 3, m, n - 3);
    smoe_cuda_copy(dm + 3, dm, n - 3);
    smoe_ops_cpu.copy(m, m + 1, n - 1);
    smoe_cuda_copy(dm, dm + 1, n - 1);
    check_real("copy overlapping", shape, dm, m, n, -1);
  }
  smoe_ops_cpu.fill(m, (real)-1.5, n);
  smoe_cuda_fill(dm, (real)-1.5, n);
  check_real("fill -1.5", shape, dm, m, n, -1);
  smoe_ops_cpu.fill(m, (real)-0.0, n); /* the CPU writes +0 */
  smoe_cuda_fill(dm, (real)-0.0, n);
  check_real("fill -0", shape, dm, m, n, -1);
  smoe_cuda_free(dp), smoe_cuda_free(dg), smoe_cuda_free(dm), smoe_cuda_free(dv);
  free(p), free(g), free(m), free(v);
}

static void shuffle(int *x, int n, unsigned *seed) {
  for (int i = n - 1; i > 0; i--) {
    int j = rand_r(seed) % (i + 1), t = x[i];
    x[i] = x[j], x[j] = t;
  }
}

static void check_permute(int rows, int D, unsigned seed) {
  char shape[64];
  snprintf(shape, sizeof shape, "rows=%d D=%d", rows, D);
  const size_t n = (size_t)rows * D, b = sizeof(real) * n;
  real *in = xmem(b), *out = xmem(b);
  int *map = xmem(sizeof(int) * (size_t)rows);
  for (int r = 0; r < rows; r++) map[r] = r;
  shuffle(map, rows, &seed);
  randomize(in, n, &seed, 2.0);
  randomize(out, n, &seed, 2.0);
  real *din = dev_copy(in, b), *dout = dev_copy(out, b);
  int *dmap = dev_copy(map, sizeof(int) * (size_t)rows);
  for (int scatter = 0; scatter < 2; scatter++) {
    smoe_ops_cpu.permute_rows(out, in, map, rows, D, scatter);
    smoe_cuda_permute_rows(dout, din, dmap, rows, D, scatter);
    check_real(scatter ? "permute_rows scatter" : "permute_rows gather", shape, dout, out, n, -1);
  }
  smoe_cuda_free(din), smoe_cuda_free(dout), smoe_cuda_free(dmap);
  free(in), free(out), free(map);
}

/* ---- router ---------------------------------------------------------- */

/* logits (N, E); with ties, each row's logits take few distinct values */
static void check_router(int N, int E, int K, int with_bias, int ties, unsigned seed) {
  char shape[80];
  snprintf(shape, sizeof shape, "N=%d E=%d K=%d%s%s", N, E, K, with_bias ? " bias" : "",
           ties ? " ties" : "");
  const size_t NE = (size_t)N * E, NK = (size_t)N * K;
  real *probs = xmem(sizeof(real) * NE), *lse = xmem(sizeof(real) * N),
       *gw = xmem(sizeof(real) * NK), *bias = xmem(sizeof(real) * E),
       *dgw = xmem(sizeof(real) * NK), *aux = xmem(sizeof(real) * E), *dl = xmem(sizeof(real) * NE);
  int32_t *idx = xmem(sizeof(int32_t) * NK);
  randomize(probs, NE, &seed, 8.0);
  if (ties)
    for (size_t i = 0; i < NE; i++) probs[i] = (real)(int)(probs[i] / 2);
  randomize(bias, (size_t)E, &seed, 0.3);
  real *d_probs = dev_copy(probs, sizeof(real) * NE), *d_lse = smoe_cuda_alloc(sizeof(real) * N),
       *d_gw = smoe_cuda_alloc(sizeof(real) * NK), *d_bias = dev_copy(bias, sizeof(real) * E);
  int32_t *d_idx = smoe_cuda_alloc(sizeof(int32_t) * NK);
  smoe_ops_cpu.router_forward(probs, lse, idx, gw, with_bias ? bias : NULL, N, E, K);
  smoe_cuda_router_forward(d_probs, d_lse, d_idx, d_gw, with_bias ? d_bias : NULL, N, E, K);
  check_real("router_forward probs", shape, d_probs, probs, NE, TOL_ROUTER);
  check_real("router_forward lse", shape, d_lse, lse, (size_t)N, TOL_LSE);
  check_dev_same("router_forward idx", shape, d_idx, idx, NK, sizeof(int32_t));
  check_real("router_forward gw", shape, d_gw, gw, NK, TOL_ROUTER);

  /* statistics and backward from the CPU's forward (the same inputs) */
  smoe_cuda_to_device(d_probs, probs, sizeof(real) * NE);
  smoe_cuda_to_device(d_lse, lse, sizeof(real) * N);
  smoe_cuda_to_device(d_idx, idx, sizeof(int32_t) * NK);
  smoe_cuda_to_device(d_gw, gw, sizeof(real) * NK);
  int64_t *cc = xmem(sizeof(int64_t) * K * E), *gcc = xmem(sizeof(int64_t) * K * E);
  double *ps = xmem(sizeof(double) * E), *gps = xmem(sizeof(double) * E), z, gz = -1;
  for (int i = 0; i < K * E; i++) gcc[i] = -7;
  smoe_ops_cpu.router_stats(cc, ps, &z, probs, lse, idx, N, E, K);
  smoe_cuda_router_stats(gcc, gps, &gz, d_probs, d_lse, d_idx, N, E, K);
  check_same("router_stats counts", shape, gcc, cc, (size_t)K * E, sizeof(int64_t));
  check_same("router_stats prob_sum", shape, gps, ps, (size_t)E, sizeof(double));
  check_same("router_stats z_sum", shape, &gz, &z, 1, sizeof(double));

  randomize(dgw, NK, &seed, 2.0);
  randomize(aux, (size_t)E, &seed, 0.1);
  real *d_dgw = dev_copy(dgw, sizeof(real) * NK), *d_aux = dev_copy(aux, sizeof(real) * E);
  randomize(dl, NE, &seed, 5.0); /* garbage: the op writes every element */
  real *d_dl = dev_copy(dl, sizeof(real) * NE);
  for (int with_aux = 0; with_aux < 2; with_aux++) {
    smoe_ops_cpu.router_backward(dl, probs, lse, idx, gw, dgw, with_aux ? aux : NULL, (real)0.003,
                                 N, E, K);
    smoe_cuda_router_backward(d_dl, d_probs, d_lse, d_idx, d_gw, d_dgw, with_aux ? d_aux : NULL,
                              (real)0.003, N, E, K);
    check_real(with_aux ? "router_backward aux" : "router_backward", shape, d_dl, dl, NE, -1);
  }
  void *dev[] = {d_probs, d_lse, d_gw, d_bias, d_idx, d_dgw, d_aux, d_dl};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) smoe_cuda_free(dev[i]);
  free(probs), free(lse), free(gw), free(bias), free(dgw), free(aux), free(dl), free(idx);
  free(cc), free(gcc), free(ps), free(gps);
}

/* ---- gather and combine ---------------------------------------------- */

/* N tokens x K choices, every 5th assignment dropped (pos -1), the rest
 * sent in a shuffled order */
static void check_moe(int N, int K, int D, unsigned seed) {
  char shape[64];
  snprintf(shape, sizeof shape, "N=%d K=%d D=%d", N, K, D);
  const size_t NK = (size_t)N * K, ND = (size_t)N * D;
  int *pos = xmem(NK * sizeof(int)), rows = 0;
  for (size_t a = 0; a < NK; a++) pos[a] = a % 5 == 4 ? -1 : rows++;
  int *order = xmem(sizeof(int) * (size_t)rows);
  for (int r = 0; r < rows; r++) order[r] = r;
  shuffle(order, rows, &seed);
  for (size_t a = 0; a < NK; a++)
    if (pos[a] >= 0) pos[a] = order[pos[a]];
  const size_t RD = (size_t)rows * D;
  real *x = xmem(ND * sizeof(real)), *gw = xmem(NK * sizeof(real)), *xe = xmem(RD * sizeof(real)),
       *dx = xmem(ND * sizeof(real)), *out = xmem(ND * sizeof(real)),
       *dye = xmem(RD * sizeof(real)), *dgw = xmem(NK * sizeof(real));
  randomize(x, ND, &seed, 2.0), randomize(gw, NK, &seed, 1.0), randomize(xe, RD, &seed, 1.0);
  randomize(dx, ND, &seed, 1.0), randomize(out, ND, &seed, 1.0), randomize(dye, RD, &seed, 1.0);
  randomize(dgw, NK, &seed, 1.0);
  real *d_x = dev_copy(x, ND * sizeof(real)), *d_gw = dev_copy(gw, NK * sizeof(real)),
       *d_xe = dev_copy(xe, RD * sizeof(real)), *d_dx = dev_copy(dx, ND * sizeof(real)),
       *d_out = dev_copy(out, ND * sizeof(real)), *d_dye = dev_copy(dye, RD * sizeof(real)),
       *d_dgw = dev_copy(dgw, NK * sizeof(real));
  int *d_pos = dev_copy(pos, NK * sizeof(int));
  smoe_ops_cpu.moe_gather(xe, x, pos, N, K, D);
  smoe_cuda_moe_gather(d_xe, d_x, d_pos, N, K, D);
  check_real("moe_gather", shape, d_xe, xe, RD, -1);
  smoe_ops_cpu.moe_gather_backward(dx, xe, pos, N, K, D); /* += onto random dx */
  smoe_cuda_moe_gather_backward(d_dx, d_xe, d_pos, N, K, D);
  check_real("moe_gather_backward", shape, d_dx, dx, ND, -1);
  smoe_ops_cpu.moe_combine(out, xe, gw, pos, N, K, D); /* += onto random out */
  smoe_cuda_moe_combine(d_out, d_xe, d_gw, d_pos, N, K, D);
  check_real("moe_combine", shape, d_out, out, ND, -1);
  smoe_ops_cpu.moe_combine_backward(dye, dgw, x, xe, gw, pos, N, K, D);
  smoe_cuda_moe_combine_backward(d_dye, d_dgw, d_x, d_xe, d_gw, d_pos, N, K, D);
  check_real("moe_combine_bwd dye", shape, d_dye, dye, RD, -1);
  check_real("moe_combine_bwd dgw", shape, d_dgw, dgw, NK, -1);
  void *dev[] = {d_x, d_gw, d_xe, d_dx, d_out, d_dye, d_dgw, d_pos};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) smoe_cuda_free(dev[i]);
  free(pos), free(order), free(x), free(gw), free(xe), free(dx), free(out), free(dye), free(dgw);
}

/* ---- expert MLPs ----------------------------------------------------- */

/* rows per expert given (count, E); the backward from the CPU's forward */
static void check_experts(const char *name, const int *count, int E, int D, int F, unsigned seed) {
  char shape[96];
  int *off = xmem(sizeof(int) * (size_t)(E + 1));
  off[0] = 0;
  for (int e = 0; e < E; e++) off[e + 1] = off[e] + count[e];
  const int rows = off[E];
  snprintf(shape, sizeof shape, "%s rows=%d E=%d D=%d F=%d", name, rows, E, D, F);
  const size_t P = smoe_expert_numel(D, F), RD = (size_t)rows * D, R2F = (size_t)rows * 2 * F,
               RF = (size_t)rows * F, EP = (size_t)E * P;
  real *xe = xmem(sizeof(real) * RD), *w = xmem(sizeof(real) * EP), *h13 = xmem(sizeof(real) * R2F),
       *act = xmem(sizeof(real) * RF), *ye = xmem(sizeof(real) * RD),
       *dye = xmem(sizeof(real) * RD), *dxe = xmem(sizeof(real) * RD),
       *dw = xmem(sizeof(real) * EP), *dh13 = xmem(sizeof(real) * R2F),
       *dact = xmem(sizeof(real) * RF);
  randomize(xe, RD, &seed, 2.0), randomize(w, EP, &seed, 0.5), randomize(dye, RD, &seed, 2.0);
  randomize(dw, EP, &seed, 1.0); /* += onto non-zero gradients */
  real *d_xe = dev_copy(xe, sizeof(real) * RD), *d_w = dev_copy(w, sizeof(real) * EP),
       *d_h13 = smoe_cuda_alloc(sizeof(real) * R2F), *d_act = smoe_cuda_alloc(sizeof(real) * RF),
       *d_ye = smoe_cuda_alloc(sizeof(real) * RD), *d_dye = dev_copy(dye, sizeof(real) * RD),
       *d_dxe = smoe_cuda_alloc(sizeof(real) * RD), *d_dw = dev_copy(dw, sizeof(real) * EP),
       *d_dh13 = smoe_cuda_alloc(sizeof(real) * R2F), *d_dact = smoe_cuda_alloc(sizeof(real) * RF);
  smoe_ops_cpu.experts_forward(ye, h13, act, xe, w, off, E, D, F);
  smoe_cuda_experts_forward(d_ye, d_h13, d_act, d_xe, d_w, off, E, D, F);
  check_real("experts_forward h13", shape, d_h13, h13, R2F, TOL_GEMM);
  check_real("experts_forward act", shape, d_act, act, RF, TOL_GEMM);
  check_real("experts_forward ye", shape, d_ye, ye, RD, TOL_GEMM);
  smoe_cuda_to_device(d_h13, h13, sizeof(real) * R2F);
  smoe_cuda_to_device(d_act, act, sizeof(real) * RF);
  smoe_ops_cpu.experts_backward(dxe, dw, dh13, dact, dye, xe, h13, act, w, off, E, D, F);
  smoe_cuda_experts_backward(d_dxe, d_dw, d_dh13, d_dact, d_dye, d_xe, d_h13, d_act, d_w, off, E, D,
                             F);
  check_real("experts_backward dxe", shape, d_dxe, dxe, RD, TOL_GEMM);
  check_real("experts_backward dexp", shape, d_dw, dw, EP, TOL_GEMM);
  check_real("experts_backward dh13", shape, d_dh13, dh13, R2F, TOL_GEMM);
  check_real("experts_backward dact", shape, d_dact, dact, RF, TOL_GEMM);
  void *dev[] = {d_xe, d_w, d_h13, d_act, d_ye, d_dye, d_dxe, d_dw, d_dh13, d_dact};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) smoe_cuda_free(dev[i]);
  free(off), free(xe), free(w), free(h13), free(act), free(ye), free(dye), free(dxe), free(dw);
  free(dh13), free(dact);
}

/* ---- routing rows ---------------------------------------------------- */

static void check_histogram(int n, int n_bins, unsigned seed) {
  char shape[64];
  snprintf(shape, sizeof shape, "n=%d bins=%d", n, n_bins);
  int32_t *x = xmem(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) x[i] = rand_r(&seed) % (n_bins + 1) - 1; /* -1: ignored */
  int64_t *want = xmem(sizeof(int64_t) * n_bins), *got = xmem(sizeof(int64_t) * n_bins);
  for (int i = 0; i < n_bins; i++) got[i] = 99;
  int32_t *d_x = dev_copy(x, sizeof(int32_t) * (size_t)n);
  smoe_ops_cpu.histogram(want, x, n, n_bins);
  smoe_cuda_histogram(got, d_x, n, n_bins);
  check_same("histogram", shape, got, want, (size_t)n_bins, sizeof(int64_t));
  smoe_cuda_free(d_x);
  free(x), free(want), free(got);
}

/* random choices skewed to expert 0, gate weights on a grid of 1/8 with
 * +0 and -0 among them (ties), capacities from 0 to more than needed */
static void check_capacity(int N, int K, int E, unsigned seed) {
  const int NK = N * K;
  int32_t *idx = xmem(sizeof(int32_t) * (size_t)NK);
  real *gw = xmem(sizeof(real) * (size_t)NK);
  for (int a = 0; a < NK; a++) {
    idx[a] = rand_r(&seed) % 3 == 0 ? 0 : rand_r(&seed) % E;
    int q = rand_r(&seed) % 10;
    gw[a] = q == 9 ? (real)-0.0 : (real)q / 8;
  }
  int64_t *cap = xmem(sizeof(int64_t) * E);
  for (int e = 0; e < E; e++) cap[e] = rand_r(&seed) % (2 * NK / E + 2);
  if (E > 1) cap[E - 1] = 0;
  if (E > 2) cap[1] = NK;
  int32_t *d_idx = dev_copy(idx, sizeof(int32_t) * (size_t)NK);
  real *d_gw = dev_copy(gw, sizeof(real) * (size_t)NK);
  uint8_t *keep = xmem((size_t)NK), *d_keep = smoe_cuda_alloc((size_t)NK);
  for (int by_weight = 0; by_weight < 2; by_weight++) {
    char shape[80];
    snprintf(shape, sizeof shape, "N=%d K=%d E=%d%s", N, K, E, by_weight ? " by weight" : "");
    int64_t want = smoe_ops_cpu.capacity_keep(keep, idx, gw, N, K, E, cap, by_weight, &arena);
    int64_t got = smoe_cuda_capacity_keep(d_keep, d_idx, d_gw, N, K, E, cap, by_weight, NULL);
    check_dev_same("capacity_keep keep", shape, d_keep, keep, (size_t)NK, 1);
    check_same("capacity_keep dropped", shape, &got, &want, 1, sizeof want);
  }
  smoe_cuda_free(d_idx), smoe_cuda_free(d_gw), smoe_cuda_free(d_keep);
  free(idx), free(gw), free(cap), free(keep);
}

static void check_route_slots(int NK, int E, unsigned seed) {
  int32_t *idx = xmem(sizeof(int32_t) * (size_t)NK), *want = xmem(sizeof(int32_t) * (size_t)NK);
  uint8_t *keep = xmem((size_t)NK);
  int *table = xmem(sizeof(int) * E);
  for (int a = 0; a < NK; a++) idx[a] = rand_r(&seed) % E, keep[a] = rand_r(&seed) % 4 != 0;
  for (int e = 0; e < E; e++) table[e] = rand_r(&seed) % 40;
  int32_t *d_idx = dev_copy(idx, sizeof(int32_t) * (size_t)NK),
          *d_slot = smoe_cuda_alloc(sizeof(int32_t) * (size_t)NK);
  uint8_t *d_keep = dev_copy(keep, (size_t)NK);
  for (int masked = 0; masked < 2; masked++) {
    char shape[64];
    snprintf(shape, sizeof shape, "NK=%d E=%d%s", NK, E, masked ? " keep" : "");
    smoe_ops_cpu.route_slots(want, idx, masked ? keep : NULL, table, E, NK);
    smoe_cuda_route_slots(d_slot, d_idx, masked ? d_keep : NULL, table, E, NK);
    check_dev_same("route_slots", shape, d_slot, want, (size_t)NK, sizeof(int32_t));
  }
  smoe_cuda_free(d_idx), smoe_cuda_free(d_slot), smoe_cuda_free(d_keep);
  free(idx), free(want), free(keep), free(table);
}

/* E experts over GS slots (shuffled, some experts with none kept, a slot
 * with quota 0 first); short = 1: one expert's quotas run out midway (the
 * split fails, later assignments untouched); negative = 1: a slot with a
 * negative quota (never runs out on the CPU) */
static void check_split(int NK, int E, int GS, int short_quota, int negative, unsigned seed) {
  char shape[96];
  snprintf(shape, sizeof shape, "NK=%d E=%d GS=%d%s%s", NK, E, GS, short_quota ? " short" : "",
           negative ? " negative" : "");
  int32_t *idx = xmem(sizeof(int32_t) * (size_t)NK), *want = xmem(sizeof(int32_t) * (size_t)NK),
          *got = xmem(sizeof(int32_t) * (size_t)NK);
  uint8_t *keep = xmem((size_t)NK);
  int *slot_expert = xmem(sizeof(int) * GS), *first = xmem(sizeof(int) * (E + 1)),
      *slots = xmem(sizeof(int) * GS);
  int64_t *quota = xmem(sizeof(int64_t) * GS), *gquota = xmem(sizeof(int64_t) * GS),
          *kept = calloc((size_t)E, sizeof(int64_t));
  for (int a = 0; a < NK; a++) {
    idx[a] = rand_r(&seed) % E, keep[a] = rand_r(&seed) % 8 != 0;
    kept[idx[a]] += keep[a];
  }
  for (int s = 0; s < GS; s++) slot_expert[s] = s % E; /* every expert has a slot when GS >= E */
  shuffle(slot_expert, GS, &seed);
  int n = 0;
  for (int e = 0; e < E; e++) {
    first[e] = n;
    for (int s = 0; s < GS; s++)
      if (slot_expert[s] == e) slots[n++] = s;
  }
  first[E] = n;
  for (int e = 0; e < E; e++) {
    const int m = first[e + 1] - first[e];
    int64_t left = kept[e] + (rand_r(&seed) % 3);
    if (short_quota && e == E / 2) left = kept[e] / 2;
    for (int j = 0; j < m; j++) {
      int64_t q = j == m - 1 ? left : (j == 0 && e % 2 ? 0 : left / 2);
      quota[slots[first[e] + j]] = q;
      left -= q;
    }
  }
  if (negative && first[1] > first[0]) quota[slots[first[0]]] = -1;
  memcpy(gquota, quota, sizeof(int64_t) * GS);
  for (int a = 0; a < NK; a++) want[a] = got[a] = 12345; /* untouched after a failure */
  int32_t *d_idx = dev_copy(idx, sizeof(int32_t) * (size_t)NK),
          *d_slot = dev_copy(got, sizeof(int32_t) * (size_t)NK);
  uint8_t *d_keep = dev_copy(keep, (size_t)NK);
  int rc = smoe_ops_cpu.split_slots(want, idx, keep, first, slots, quota, E, NK, &arena);
  int grc = smoe_cuda_split_slots(d_slot, d_idx, d_keep, first, slots, gquota, E, NK, NULL);
  smoe_cuda_to_host(got, d_slot, sizeof(int32_t) * (size_t)NK);
  check_same("split_slots slot_of", shape, got, want, (size_t)NK, sizeof(int32_t));
  check_same("split_slots quota", shape, gquota, quota, (size_t)GS, sizeof(int64_t));
  check_same("split_slots rc", shape, &grc, &rc, 1, sizeof rc);
  smoe_cuda_free(d_idx), smoe_cuda_free(d_slot), smoe_cuda_free(d_keep);
  free(idx), free(want), free(got), free(keep), free(slot_expert), free(first), free(slots);
  free(quota), free(gquota), free(kept);
}

/* slot_of in [-1, n_slots) avoiding the odd slots above 4 (empty slots) */
static void check_positions(int NK, int n_slots, unsigned seed) {
  char shape[64];
  snprintf(shape, sizeof shape, "NK=%d slots=%d", NK, n_slots);
  int32_t *slot_of = xmem(sizeof(int32_t) * (size_t)NK);
  int *want = xmem(sizeof(int) * (size_t)NK);
  for (int a = 0; a < NK; a++) {
    int s = rand_r(&seed) % (n_slots + 1) - 1;
    slot_of[a] = s > 4 && s % 2 ? -1 : s;
  }
  int64_t *start = xmem(sizeof(int64_t) * n_slots);
  for (int s = 0; s < n_slots; s++) start[s] = (int64_t)s * 1000 + rand_r(&seed) % 7;
  int32_t *d_slot = dev_copy(slot_of, sizeof(int32_t) * (size_t)NK);
  int *d_pos = smoe_cuda_alloc(sizeof(int) * (size_t)NK);
  smoe_ops_cpu.positions(want, slot_of, start, NK, n_slots, &arena);
  smoe_cuda_positions(d_pos, d_slot, start, NK, n_slots, NULL);
  check_dev_same("positions", shape, d_pos, want, (size_t)NK, sizeof(int));
  smoe_cuda_free(d_slot), smoe_cuda_free(d_pos);
  free(slot_of), free(want), free(start);
}

int main(void) {
  char why[256];
  if (!smoe_cuda_available(0, why, sizeof why)) {
    printf("test_cuda_ops: skipped: %s\n", why);
    return 77;
  }
  const int sizes[] = {0, 1, 4095, 4097, 300007};
  for (int i = 0; i < 5; i++) check_flat((size_t)sizes[i], 1234u + (unsigned)i);
  check_permute(1, 1, 5u), check_permute(300, 33, 6u), check_permute(4097, 64, 7u);

  check_router(0, 4, 2, 0, 0, 20u);
  check_router(1, 1, 1, 0, 0, 21u);
  check_router(1, 1, 1, 1, 0, 22u);
  check_router(5, 3, 3, 1, 1, 23u);
  check_router(512, 8, 2, 0, 0, 24u);
  check_router(512, 8, 2, 1, 0, 25u);
  check_router(4097, 16, 4, 1, 1, 26u);
  check_router(300, 64, 8, 0, 1, 27u);

  check_moe(1, 1, 1, 30u), check_moe(64, 2, 128, 31u), check_moe(300, 8, 33, 32u);
  check_moe(512, 2, 64, 33u);

  const int one[] = {5}, empty[] = {0, 0, 0}, mixed[] = {0, 100, 0, 37, 1, 0, 200, 174};
  check_experts("E=1", one, 1, 8, 12, 40u);
  check_experts("all empty", empty, 3, 16, 24, 41u);
  check_experts("empty experts", mixed, 8, 64, 96, 42u);
  { /* realistic: N 512, K 2 routed at random over E 8 */
    int count[8] = {0};
    unsigned s = 43u;
    for (int a = 0; a < 512 * 2; a++) count[rand_r(&s) % 8]++;
    check_experts("N=512 K=2", count, 8, 64, 96, 44u);
  }

  const int hn[] = {0, 1, 4097, 300007}, hb[] = {1, 8, 5000};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++) check_histogram(hn[i], hb[j], 50u + (unsigned)(3 * i + j));

  check_capacity(1, 1, 1, 60u);
  check_capacity(3, 2, 4, 61u);
  check_capacity(512, 2, 8, 62u);
  check_capacity(4097, 8, 64, 63u);
  check_capacity(40000, 2, 16, 64u);

  check_route_slots(0, 8, 70u), check_route_slots(1, 1, 71u);
  check_route_slots(4097, 8, 72u), check_route_slots(300007, 64, 73u);

  check_split(1, 1, 1, 0, 0, 80u);
  check_split(1024, 8, 16, 0, 0, 81u);
  check_split(1024, 8, 16, 1, 0, 82u);
  check_split(1024, 8, 16, 0, 1, 83u);
  check_split(40000, 16, 64, 0, 0, 84u);
  check_split(40000, 16, 64, 1, 0, 85u);
  check_split(300, 8, 6, 0, 0, 86u); /* experts without slots: nothing kept can go there */

  check_positions(0, 4, 90u), check_positions(1, 1, 91u), check_positions(4097, 16, 92u);
  check_positions(300007, 300, 93u);

  smoe_arena_free(&arena);
  printf("test_cuda_ops: %s\n", failed ? "FAILED" : "all PASS");
  return failed ? 1 : 0;
}
