/* rows.h: per-row and per-element math of the dense ops (ops.h) shared by
 * the CPU ops (ops.c) and the CUDA kernels (cuda/ops_dense.cu), as elem.h
 * is for the flat buffers: the same expressions in the same order, on the
 * engine's `real`, so that with --fmad=false on the CUDA side both round
 * alike and give the same bits (except where a libm call differs: the
 * double exp and log). Each function is one row or one element; the
 * caller chooses how rows are split over threads. */
#ifndef SMOE_ROWS_H
#define SMOE_ROWS_H

#include "common.h"

/* r_exp for host and device (common.h's r_exp is host-only) */
SMOE_HD real smoe_exp_real(real x) {
#ifdef SMOE_REAL_DOUBLE
  return smoe_exp_f64(x);
#else
  return smoe_exp_f32(x);
#endif
}

/* RMSNorm forward of one row x (D): r = 1 / sqrt(mean(x^2) + eps), the
 * statistics in double; then y_i = w_i (x_i r). */
SMOE_HD real smoe_rmsnorm_rstd(const real *x, int D, double eps) {
  double ss = 0;
  for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
  return (real)(1.0 / sqrt(ss / D + eps));
}
SMOE_HD real smoe_rmsnorm_y(real w, real x, real r) {
  return w * (x * r);
}

/* RMSNorm backward: per row c = r^3 / D * sum_j w_j dy_j x_j (in double),
 * then dx_i += r w_i dy_i - c x_i; dw_i gets sum over rows of dy_i x_i r,
 * each term rounded to real and then summed in double. */
SMOE_HD real smoe_rmsnorm_dcoef(const real *x, const real *dy, const real *w, real r, int D) {
  double dot = 0;
  for (int i = 0; i < D; i++) dot += (double)w[i] * dy[i] * x[i];
  return (real)(dot * r * r * r / D);
}
SMOE_HD real smoe_rmsnorm_dx(real r, real w, real dy, real c, real x) {
  return r * w * dy - c * x;
}
SMOE_HD double smoe_rmsnorm_dw_term(real dy, real x, real r) {
  return (double)(dy * x * r);
}
/* How many row blocks the CUDA rmsnorm backward splits dw's sums into: the
 * CPU's per-thread partial sums with that many OpenMP threads are the same
 * computation (each block summed in double, the blocks added in order). */
static inline int smoe_rmsnorm_dw_blocks(int N, int D) {
  int b = D > 0 ? 16384 / D : 1;
  b = b < 1 ? 1 : (b > 64 ? 64 : b);
  return b < N ? b : (N > 0 ? N : 1);
}

/* One RoPE pair (HF rotate-half: x1 is element j of the first half of a
 * head, x2 element j of the second): x1' = x1 c - x2 s', x2' = x2 c + x1 s'
 * with s' = sign s (sign -1: the inverse rotation, for backward). */
SMOE_HD void smoe_rope_pair(real *x1, real *x2, real c, real s, real sign) {
  real a = *x1, b = *x2, sj = sign * s;
  *x1 = a * c - b * sj;
  *x2 = b * c + a * sj;
}

/* Softmax cross-entropy of one row of logits x (V), in place: x becomes the
 * probabilities (the exps summed in double); returns -log p[target] in
 * double (0 for target < 0, which the caller does not count). */
SMOE_HD double smoe_xent_row(real *x, int V, int target) {
  real mx = x[0];
  for (int i = 1; i < V; i++)
    if (x[i] > mx) mx = x[i];
  double sum = 0;
  for (int i = 0; i < V; i++) {
    x[i] = smoe_exp_real(x[i] - mx);
    sum += x[i];
  }
  real inv = (real)(1.0 / sum);
  for (int i = 0; i < V; i++) x[i] *= inv;
  double p = target >= 0 ? x[target] : 1.0;
  return p > 0 ? -log(p) : -log(1e-300);
}

#endif
