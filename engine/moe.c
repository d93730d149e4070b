/* moe.c: router, dispatch plan, expert MLPs and combine on the CPU. */
#include "moe.h"

#include <math.h>
#include <string.h>

#include "ops.h"

#ifdef SMOE_REAL_DOUBLE
#define router_row smoe_router_row_f64
#define router_backward_row smoe_router_backward_row_f64
#else
#define router_row smoe_router_row_f32
#define router_backward_row smoe_router_backward_row_f32
#endif

/* one row at a time through elem.h's row functions (the CUDA kernels call
 * the same) */
void smoe_router_forward(real *probs, real *lse, int32_t *idx, real *gw, const real *bias, int N, int E,
                    int K) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    router_row(probs + (size_t)n * E, lse + n, idx + (size_t)n * K, gw + (size_t)n * K, bias, E,
               K);
}

void smoe_router_stats(int64_t *choice_counts, double *prob_sum, double *z_sum, const real *probs,
                  const real *lse, const int32_t *idx, int N, int E, int K) {
  memset(choice_counts, 0, sizeof(int64_t) * (size_t)K * E);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) choice_counts[(size_t)k * E + idx[(size_t)n * K + k]]++;
  for (int e = 0; e < E; e++) prob_sum[e] = 0;
  double z = 0;
  for (int n = 0; n < N; n++) {
    for (int e = 0; e < E; e++) prob_sum[e] += probs[(size_t)n * E + e];
    z += (double)lse[n] * lse[n];
  }
  *z_sum = z;
}

double smoe_router_aux_loss(const int64_t *choice_counts, const double *prob_sum, int64_t n_tokens,
                       int E, int K) {
  double s = 0;
  for (int k = 0; k < K; k++)
    for (int e = 0; e < E; e++) s += (double)choice_counts[(size_t)k * E + e] * prob_sum[e];
  return E * s / ((double)n_tokens * (double)n_tokens);
}

void smoe_router_backward(real *dlogits, const real *probs, const real *lse, const int32_t *idx,
                     const real *gw, const real *dgw, const real *aux_dp, real z_scale, int N,
                     int E, int K) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    router_backward_row(dlogits + (size_t)n * E, probs + (size_t)n * E, lse[n], idx + (size_t)n * K,
                        gw + (size_t)n * K, dgw + (size_t)n * K, aux_dp, z_scale, E, K);
}

void smoe_moe_gather(real *xe, const real *x, const int *pos, int N, int K, int D) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++)
      if (pos[(size_t)n * K + k] >= 0)
        memcpy(xe + (size_t)pos[(size_t)n * K + k] * D, x + (size_t)n * D, sizeof(real) * (size_t)D);
}

void smoe_moe_gather_backward(real *dx, const real *dxe, const int *pos, int N, int K, int D) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      if (pos[(size_t)n * K + k] < 0) continue;
      const real *src = dxe + (size_t)pos[(size_t)n * K + k] * D;
      real *dst = dx + (size_t)n * D;
      for (int i = 0; i < D; i++) dst[i] += src[i];
    }
}

void smoe_moe_combine(real *out, const real *ye, const real *gw, const int *pos, int N, int K, int D) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      if (pos[(size_t)n * K + k] < 0) continue;
      const real *src = ye + (size_t)pos[(size_t)n * K + k] * D;
      real *dst = out + (size_t)n * D, w = gw[(size_t)n * K + k];
      for (int i = 0; i < D; i++) dst[i] += w * src[i];
    }
}

void smoe_moe_combine_backward(real *dye, real *dgw, const real *dout, const real *ye, const real *gw,
                          const int *pos, int N, int K, int D) {
#pragma omp parallel for
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      size_t a = (size_t)n * K + k;
      if (pos[a] < 0) { /* dropped: no output, no gate gradient */
        dgw[a] = 0;
        continue;
      }
      const real *go = dout + (size_t)n * D, *y = ye + (size_t)pos[a] * D;
      real *dy = dye + (size_t)pos[a] * D, w = gw[a], s = 0;
      for (int i = 0; i < D; i++) {
        dy[i] = w * go[i];
        s += go[i] * y[i];
      }
      dgw[a] = s;
    }
}

#ifdef SMOE_REAL_DOUBLE
#define swiglu smoe_swiglu_f64
#define swiglu_backward smoe_swiglu_backward_f64
#else
#define swiglu smoe_swiglu_f32
#define swiglu_backward smoe_swiglu_backward_f32
#endif

void smoe_experts_forward(real *ye, real *h13, real *act, const real *xe, const real *experts,
                     const int *offsets, int E, int D, int F) {
  const size_t P = smoe_expert_numel(D, F);
  for (int e = 0; e < E; e++) {
    int r0 = offsets[e], n = offsets[e + 1] - r0;
    if (n == 0) continue;
    const real *w13 = experts + e * P, *w2 = w13 + 2 * (size_t)F * D;
    real *h = h13 + (size_t)r0 * 2 * F, *a = act + (size_t)r0 * F;
    smoe_matmul_forward(h, xe + (size_t)r0 * D, w13, n, D, 2 * F);
#pragma omp parallel for
    for (int r = 0; r < n; r++) {
      const real *h1 = h + (size_t)r * 2 * F, *h3 = h1 + F;
      real *ar = a + (size_t)r * F;
      for (int i = 0; i < F; i++) ar[i] = swiglu(h1[i], h3[i]);
    }
    smoe_matmul_forward(ye + (size_t)r0 * D, a, w2, n, F, D);
  }
}

void smoe_experts_backward(real *dxe, real *dexperts, real *dh13, real *dact, const real *dye,
                      const real *xe, const real *h13, const real *act, const real *experts,
                      const int *offsets, int E, int D, int F) {
  const size_t P = smoe_expert_numel(D, F);
  for (int e = 0; e < E; e++) {
    int r0 = offsets[e], n = offsets[e + 1] - r0;
    if (n == 0) continue;
    const real *w13 = experts + e * P, *w2 = w13 + 2 * (size_t)F * D;
    real *dw13 = dexperts + e * P, *dw2 = dw13 + 2 * (size_t)F * D;
    const real *h = h13 + (size_t)r0 * 2 * F, *dy = dye + (size_t)r0 * D;
    real *da = dact + (size_t)r0 * F, *dh = dh13 + (size_t)r0 * 2 * F;
    /* ye = act w2^T: dact = dye w2 (written), dw2 += dye^T act */
    smoe_gemm(0, 0, n, F, D, 1, dy, D, w2, F, 0, da, F);
    smoe_matmul_backward(NULL, dw2, dy, act + (size_t)r0 * F, w2, n, F, D);
    /* act = silu(h1) h3: dh1 = dact h3 silu'(h1), dh3 = dact silu(h1) */
#pragma omp parallel for
    for (int r = 0; r < n; r++) {
      const real *h1 = h + (size_t)r * 2 * F, *h3 = h1 + F, *g = da + (size_t)r * F;
      real *d1 = dh + (size_t)r * 2 * F, *d3 = d1 + F;
      for (int i = 0; i < F; i++) swiglu_backward(g[i], h1[i], h3[i], d1 + i, d3 + i);
    }
    /* h13 = xe w13^T: dxe = dh13 w13 (written), dw13 += dh13^T xe */
    smoe_gemm(0, 0, n, D, 2 * F, 1, dh, 2 * F, w13, D, 0, dxe + (size_t)r0 * D, D);
    smoe_matmul_backward(NULL, dw13, dh, xe + (size_t)r0 * D, w13, n, D, 2 * F);
  }
}
